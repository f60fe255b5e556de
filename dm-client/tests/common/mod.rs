//! Helpers shared by the integration tests.

pub mod dm;
pub mod http;
