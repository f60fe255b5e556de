//! The HTTP transport (filled in by its own change).
