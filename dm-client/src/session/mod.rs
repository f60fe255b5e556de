//! The sans-IO session engine (filled in by its own change).
