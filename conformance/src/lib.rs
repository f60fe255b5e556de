//! The conformance runner: recorded DM exchanges (fixtures/sessions/README.md)
//! replayed against a live server (the replay plays the client) or a live client
//! (the replay plays the server), one line per check.
//!
//! Layers: [`checks`] (a message as the list of things that must match),
//! [`exchange`] (one replay: the replay's own messages rewritten for the live peer,
//! the peer's checked), then the two drivers [`as_client`] (HTTP to a server) and
//! [`as_server`] (an HTTP endpoint and the client's process), and [`report`].

pub mod as_client;
pub mod as_server;
pub mod bless;
pub mod checks;
pub mod exchange;
pub mod http_server;
pub mod report;
pub mod setup;
