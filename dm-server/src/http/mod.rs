//! The HTTP front end (placeholder).
