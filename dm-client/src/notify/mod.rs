//! Server-initiated sessions: package #0 verification and the channels that carry it.
//!
//! - [`verify`] checks a package #0 against the device's DM accounts and returns the
//!   [`Notice`] the daemon acts on (open a session with Alert 1200 and the notice's
//!   SessionID). Anything that does not verify is an error: the caller drops the
//!   message and logs the reason.
//! - [`ReplayFilter`] recognises a notification accepted once already.
//! - [`UdpListener`] receives package #0 datagrams, bare or wrapped in a WSP push
//!   PDU ([`wsp`]).
//! - `LongPoll` (feature `http`) holds an HTTP request open to the server for devices
//!   behind NAT that no datagram can reach; its small protocol is described in the
//!   `longpoll` module.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use dm_tree::accounts::account_for;
use dm_tree::Tree;
use syncml_core::auth::{Nonce, UserKey};
use syncml_core::notify::{Initiator, NonceUsed, Package0, UiMode};
use syncml_core::NotificationProblem;

#[cfg(feature = "http")]
pub mod longpoll;
mod udp;
pub mod wsp;

#[cfg(feature = "http")]
pub use longpoll::LongPoll;
pub use udp::UdpListener;

/// Why a notification was not accepted, or a long-poll failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotifyError {
    /// The bytes are not a package #0 (truncated, wrong version, reserved bits...).
    #[error("malformed package #0: {0}")]
    Malformed(syncml_core::Error),
    /// No DM account has this ServerID.
    #[error("no DM account for server id {0:?}")]
    UnknownServer(String),
    /// The account holds no server password, so no digest can be checked.
    #[error("the account of {0:?} holds no server password to check a notification with")]
    NoServerSecret(String),
    /// The server password is not UTF-8 text (the key is built from text).
    #[error("the server password of {0:?} is not UTF-8 text")]
    SecretNotText(String),
    /// The digest verifies neither with the stored nonce nor with the reset nonce.
    #[error("the digest of a notification from {0:?} does not verify")]
    BadDigest(String),
    /// The long-poll URL is unusable.
    #[error("bad long-poll URL: {0}")]
    BadUrl(String),
    /// A root certificate given for the long-poll connection is not PEM.
    #[error("bad root certificate: {0}")]
    BadRootCert(String),
    /// The long-poll got no answer within the wait plus the grace time.
    #[error("long-poll timed out")]
    Timeout,
    /// The connection failed or broke.
    #[error("long-poll network failure: {0}")]
    Network(String),
    /// The server answered with a status other than 200 or 204.
    #[error("long-poll server answered HTTP {0}")]
    Status(u16),
    /// A 200 reply whose content type is not a package #0.
    #[error("long-poll reply of type {0:?} is not application/vnd.syncml.notification")]
    ContentType(Option<String>),
    /// A 200 reply larger than a package #0 can be.
    #[error("long-poll reply exceeds {limit} bytes")]
    TooLarge { limit: usize },
}

/// A verified notification: what the daemon needs to open the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// The ServerID of the account the session is opened with.
    pub server_id: String,
    pub session_id: u16,
    /// The SessionID of package 1: upper-case hex without leading zeros.
    pub session_id_hex: String,
    pub ui_mode: UiMode,
    pub initiator: Initiator,
    /// The digest verified only with the reset nonce: the stored nonce has drifted
    /// from the server's, and the session that follows re-synchronises it. Such a
    /// notification never expires, so the daemon should rate-limit what it triggers.
    pub nonce_reset: bool,
    /// Vendor-specific bytes after the server id.
    pub vendor: Vec<u8>,
    /// The digest of the message, which identifies it for [`ReplayFilter`].
    pub digest: [u8; 16],
}

/// Parses a package #0 and checks its digest with the key of the server it names.
///
/// The key is `B64(MD5(name:server_password))` with the server password and nonce of
/// the account's server credentials (SRVCRED in DM 1.2, ServerPW/ServerNonce in
/// 1.1.2), trying the stored nonce first and then
/// [`RESET_NONCE`](syncml_core::notify::RESET_NONCE). The stored nonce is used as raw
/// bytes, as the session engine keeps the decoded NextNonce there. An account with
/// an empty server password is refused: anybody who knows the ServerID could sign
/// for it.
pub fn verify(tree: &Tree, bytes: &[u8]) -> Result<Notice, NotifyError> {
    let package = Package0::parse(bytes).map_err(NotifyError::Malformed)?;
    let n = &package.notification;
    let account = account_for(tree, &n.server_id)
        .ok_or_else(|| NotifyError::UnknownServer(n.server_id.clone()))?;
    let creds = account
        .server
        .filter(|c| !c.secret.is_empty())
        .ok_or_else(|| NotifyError::NoServerSecret(n.server_id.clone()))?;
    let password = std::str::from_utf8(&creds.secret)
        .map_err(|_| NotifyError::SecretNotText(n.server_id.clone()))?;
    // The specification signs with `server-identifier:password` (PROTOCOL.md section
    // 6 writes it `serverid:server_password`). The server's identifier for
    // authentication is the name in its credentials (SRVCRED AAuthName), which
    // normally equals the ServerID; 1.1.2 accounts have no such name and the ServerID
    // is what remains. Preferring the credentials name keeps this digest consistent
    // with the one the session engine checks for the same server.
    let name = if creds.name.is_empty() {
        n.server_id.as_str()
    } else {
        creds.name.as_str()
    };
    let key = UserKey::new(name, password);
    let used = match package.verify_or_reset(&key, &Nonce::from_bytes(creds.nonce)) {
        Ok(used) => used,
        Err(syncml_core::Error::Notification(NotificationProblem::DigestMismatch)) => {
            return Err(NotifyError::BadDigest(n.server_id.clone()))
        }
        Err(other) => return Err(NotifyError::Malformed(other)),
    };
    Ok(Notice {
        server_id: n.server_id.clone(),
        session_id: n.session_id,
        session_id_hex: n.session_id_hex(),
        ui_mode: n.ui_mode,
        initiator: n.initiator,
        nonce_reset: used == NonceUsed::Reset,
        vendor: n.vendor.clone(),
        digest: package.digest,
    })
}

/// Remembers the notifications accepted within a time window, so that the same
/// message received again (a retransmission, or a captured one replayed) starts no
/// second session.
///
/// Two notices are the same when server id, session id and digest are equal. The
/// filter holds at most `capacity` entries; when full, the oldest is forgotten.
#[derive(Debug, Clone)]
pub struct ReplayFilter {
    window: Duration,
    capacity: usize,
    seen: VecDeque<Seen>,
}

#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    server_id: String,
    session_id: u16,
    digest: [u8; 16],
}

impl ReplayFilter {
    /// A filter that remembers notices for `window`, at most `capacity` of them
    /// (at least one).
    pub fn new(window: Duration, capacity: usize) -> ReplayFilter {
        ReplayFilter {
            window,
            capacity: capacity.max(1),
            seen: VecDeque::new(),
        }
    }

    /// Whether `notice` is new at `now`; a new notice is remembered. Returns false
    /// for a replay of a notice admitted less than the window ago.
    pub fn admit(&mut self, notice: &Notice, now: Instant) -> bool {
        self.forget_before(now);
        let replay = self.seen.iter().any(|s| {
            s.session_id == notice.session_id
                && s.digest == notice.digest
                && s.server_id == notice.server_id
        });
        if replay {
            return false;
        }
        if self.seen.len() >= self.capacity {
            self.seen.pop_front();
        }
        self.seen.push_back(Seen {
            at: now,
            server_id: notice.server_id.clone(),
            session_id: notice.session_id,
            digest: notice.digest,
        });
        true
    }

    /// How many notices are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether no notice is remembered.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Drops the entries whose window has passed (entries are in admission order).
    fn forget_before(&mut self, now: Instant) {
        while let Some(first) = self.seen.front() {
            if now.saturating_duration_since(first.at) < self.window {
                break;
            }
            self.seen.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(session_id: u16, digest: u8) -> Notice {
        Notice {
            server_id: "srv".into(),
            session_id,
            session_id_hex: format!("{session_id:X}"),
            ui_mode: UiMode::NotSpecified,
            initiator: Initiator::Server,
            nonce_reset: false,
            vendor: Vec::new(),
            digest: [digest; 16],
        }
    }

    #[test]
    fn replay_filter_forgets_after_the_window_and_when_full() {
        let t0 = Instant::now();
        let mut f = ReplayFilter::new(Duration::from_secs(10), 2);
        assert!(f.admit(&notice(1, 1), t0));
        assert!(!f.admit(&notice(1, 1), t0 + Duration::from_secs(9)));
        // A different digest or session id is another notification.
        assert!(f.admit(&notice(1, 2), t0 + Duration::from_secs(1)));
        // Full: admitting a third forgets the first.
        assert!(f.admit(&notice(2, 1), t0 + Duration::from_secs(2)));
        assert_eq!(f.len(), 2);
        assert!(f.admit(&notice(1, 1), t0 + Duration::from_secs(3)));
        // Past the window everything is forgotten.
        assert!(f.admit(&notice(2, 1), t0 + Duration::from_secs(30)));
        assert_eq!(f.len(), 1);
    }
}
