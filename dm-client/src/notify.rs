//! Package #0 handling (filled in by its own change).
