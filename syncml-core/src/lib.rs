//! SyncML DM 1.2 / 1.1.2 messages: a typed model with XML and WBXML codecs, plus
//! authentication and server-initiated notifications.
//!
//! ```
//! use syncml_core::{decode, encode, AlertCode, DmVersion, Encoding, MessageBuilder};
//!
//! let msg = MessageBuilder::client(DmVersion::V1_2, "1", "IMEI:493005100592800", "https://dm.example.com/")
//!     .alert_code(AlertCode::ClientInitiated)
//!     .finish();
//! let wbxml = encode(&msg, Encoding::Wbxml).unwrap();
//! assert_eq!(decode(&wbxml).unwrap(), msg);
//! ```
//!
//! Layers, bottom up: [`event`] (the interface both encodings share), [`xml`] and
//! [`wbxml`] (readers and writers of events), [`model`] (the typed message, read
//! from and written to events), [`codec`] (whole-message entry points). Beside them,
//! over bytes only: [`auth`] (credentials, HMAC, nonces, the challenge rules) and
//! [`notify`] (package #0).

pub mod auth;
pub mod codec;
pub mod codes;
pub mod element;
pub mod encoding;
pub mod error;
pub mod event;
pub mod limits;
pub mod model;
pub mod notify;
pub mod outbox;
pub mod package;
pub mod tags;
#[cfg(feature = "transcript")]
pub mod transcript;
pub mod wbxml;
pub mod xml;

pub use codec::{decode, decode_with, encode, encode_with, transcode, EncodeOptions};
pub use codes::{AlertCode, StatusCode};
pub use element::{Element, Node};
pub use encoding::Encoding;
pub use error::{AuthProblem, EncodeProblem, Error, NotificationProblem, Problem, Result};
pub use event::{Attr, Namespace};
pub use limits::Limits;
pub use model::builder::MessageBuilder;
pub use model::*;

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
