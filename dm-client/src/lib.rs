//! The device side of OMA DM: what a handset or IoT vendor embeds to be managed.
//!
//! - [`session`]: the sans-IO session engine (bytes and time in; bytes, jobs and
//!   events out).
//! - [`firmware`]: the firmware-update extension commands and FUMO, executed on the
//!   device's `dm-tree`.
//! - [`download`]: the download agent (HTTP/HTTPS with Range resume, download
//!   descriptors).
//! - [`update`]: the update agent trait and a reference two-slot agent.
//! - [`notify`]: package #0 verification, the UDP listener and HTTP long-poll.
//! - [`transport`]: the HTTP transport that drives a session.
//! - [`account`]: provisioning a server account in the tree.
//! - `device` (feature `device`): all of it wired together for a state directory.
//! - `record` (feature `device`): recorded sessions (`dm-client --record DIR`).

pub mod account;
#[cfg(feature = "device")]
pub mod device;
pub mod download;
pub mod firmware;
pub mod notify;
#[cfg(feature = "device")]
pub mod record;
pub mod session;
#[cfg(feature = "http")]
pub mod transport;
pub mod update;

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
