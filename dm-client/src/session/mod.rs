//! The sans-IO session engine: one DM session of a device with one server.
//!
//! The engine owns no socket and no clock. The driver feeds it the server's replies
//! and the current time, and it answers with a [`Step`]: bytes to post, a download
//! to run, or the end of the session.
//!
//! ```text
//! start ──► Send(pkg1) ──► driver posts, receive(reply) ──► Send(pkg3) ──► ... ──► Done
//!                                    │
//!                                    └─► Download(req) ──► driver fetches, download_done(result)
//! ```
//!
//! What it does (OMA DM 1.2 protocol, PROTOCOL.md sections 5 and 7):
//! - package 1: Alert 1201 (or 1200 after a notification), DevInfo, the reports the
//!   device owes (FUMO Alert 1226, ConfirmFirmwareUpdate, SIMCardChange);
//! - every later package: Status for every command, Results for every Get, executed
//!   on the device's `dm-tree`;
//! - multiple messages both ways (Alert 1222), outgoing messages split to the
//!   server's MaxMsgSize, large objects both ways, RespURI, abort (Alert 1223);
//! - XML or WBXML as configured, then the encoding the server answers in;
//! - authentication from the DMAcc account: basic, MD5 or HMAC credentials,
//!   challenges answered, and the server's own credentials checked when the account
//!   holds them: nothing from an unauthenticated server is executed.

mod auth;
mod engine;
mod execute;

use std::time::{Duration, Instant};

use dm_tree::{DmTree, Hooks};
use syncml_core::{Command, Encoding, Limits, StatusCode};

use crate::download;

pub use engine::ClientSession;

/// Settings of the engine that do not come from the tree.
#[derive(Debug, Clone)]
pub struct Config {
    /// The encoding of package 1. Later messages use the server's.
    pub encoding: Encoding,
    /// The largest message the device accepts (announced as MaxMsgSize).
    pub max_msg_size: u64,
    /// The largest message sent when the server announces no MaxMsgSize.
    pub default_out_size: u64,
    /// How long to wait for each reply.
    pub response_timeout: Duration,
    /// A session that takes more messages than this is ended (a runaway server).
    pub max_messages: u32,
    /// Decoder limits for the server's messages.
    pub limits: Limits,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            encoding: Encoding::Xml,
            max_msg_size: 64 * 1024,
            default_out_size: 1 << 20,
            response_timeout: Duration::from_secs(60),
            max_messages: 1000,
            limits: Limits::default(),
        }
    }
}

/// Why the session starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trigger {
    /// The device starts it (Alert 1201) with a SessionID of the driver's choice.
    Client { session_id: String },
    /// A package #0 asked for it (Alert 1200): its 16-bit session id becomes the
    /// SessionID, in upper-case hex without leading zeros.
    Server { session_id: u16 },
}

/// A message to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub url: String,
    pub content_type: &'static str,
    /// The `x-syncml-hmac` header value (HMAC authentication).
    pub hmac: Option<String>,
    pub body: Vec<u8>,
    /// When to give up waiting for the reply ([`ClientSession::timeout`]).
    pub deadline: Instant,
}

/// The server's HTTP reply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// The `x-syncml-hmac` response header.
    pub hmac: Option<String>,
    pub body: Vec<u8>,
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Post this and pass the reply to [`ClientSession::receive`].
    Send(Transmit),
    /// Run the download agent, then call [`ClientSession::download_done`]. The
    /// server's message is half executed until then.
    Download(download::Request),
    /// The session is over.
    Done(Outcome),
}

/// How a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub result: Result<(), SessionError>,
    pub messages_sent: u32,
    pub commands_executed: u32,
}

/// Why a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    #[error("no DM account for server {0:?} in the tree")]
    NoAccount(String),
    #[error("the account has no server address")]
    NoAddress,
    #[error("the server answered HTTP {0}")]
    Http(u16),
    #[error("undecodable message from the server: {0}")]
    Decode(String),
    #[error("protocol violation by the server: {0}")]
    Protocol(String),
    #[error("the server refused the device's credentials: {0}")]
    ClientAuth(String),
    #[error("the server did not authenticate itself")]
    ServerAuth,
    #[error("the server aborted the session")]
    Aborted,
    #[error("the device aborted the session")]
    Cancelled,
    #[error("no reply in time")]
    Timeout,
    #[error("transport failure: {0}")]
    Transport(String),
    #[error("the session exceeded {0} messages")]
    TooManyMessages(u32),
    #[error("cannot encode a message: {0}")]
    Encode(String),
    #[error("the tree could not be written: {0}")]
    Store(String),
}

/// Something that happened, for logs and user interfaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The server accepted the device's credentials (212).
    Authenticated,
    /// The server challenged the credentials; package 1 or the last message goes again.
    Challenged,
    /// The server's credentials were checked and accepted.
    ServerAuthenticated,
    /// The server's credentials were missing or wrong: its commands were refused.
    ServerRefused(StatusCode),
    /// A server command was executed.
    Executed { cmd: String, code: StatusCode },
    /// The server answered a report the device owed.
    ReportAnswered { id: String, code: StatusCode },
}

/// A report the device owes its server, sent in package 1 (a FUMO Alert 1226, a
/// ConfirmFirmwareUpdate, a SIMCardChange...). The id comes back in
/// [`Agent::report_answered`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub id: String,
    pub command: Command,
}

/// Whether a GetFirmwareUpdate or Download needs the download agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Answered without downloading (already stored, refused by the user...).
    Answer(StatusCode),
    /// Fetch this, then [`Agent::end_download`].
    Fetch(download::Request),
}

/// The device beside its tree: the user, the firmware agent. `dm_tree::Headless`
/// is a device with neither.
pub trait Agent: Hooks {
    /// A GetFirmwareUpdate or Download met at the top level of a message (or in a
    /// top-level Sequence). The default refuses: no firmware agent (406).
    fn begin_download(&mut self, _dm: &mut DmTree, _server_id: &str, _cmd: &Command) -> Begin {
        Begin::Answer(StatusCode::OptionalFeatureNotSupported)
    }

    /// The download asked for by [`begin_download`](Agent::begin_download) ended.
    fn end_download(
        &mut self,
        _dm: &mut DmTree,
        _server_id: &str,
        _cmd: &Command,
        _result: Result<download::Fetched, download::DownloadError>,
    ) -> StatusCode {
        StatusCode::CommandFailed
    }

    /// The server answered a [`Report`].
    fn report_answered(&mut self, _dm: &mut DmTree, _id: &str, _code: StatusCode) {}
}

impl Agent for dm_tree::Headless {}
