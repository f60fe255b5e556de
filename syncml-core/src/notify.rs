//! Package #0: the server-initiated session notification (OMA DM Notification 1.2,
//! "General Package #0"), carried by WAP Push, SMS or any other channel.
//!
//! ```text
//! digest (16 bytes, raw MD5)
//! header (64 bits, big-endian):
//!   version 10 | ui-mode 2 | initiator 1 | reserved 27 (zero) | session id 16 | id length 8
//! server id (id length bytes) | vendor data (the rest)
//! ```
//!
//! `digest = MD5(B64(MD5(serverid:password)) ":" nonce ":" B64(MD5(trigger)))` where
//! the trigger is every byte after the digest.
//!
//! **Reset nonce.** When the digest does not verify with the stored nonce, a client
//! may try the reset nonce, for a server and client whose nonces have drifted apart.
//! The specification writes it `0x00000000`, which could mean four zero bytes or that
//! ten-character text. This crate uses the **text** (the bytes of `"0x00000000"`),
//! as libdmclient, the deployed open-source client, does: see [`RESET_NONCE`].
//! The fallback is opt-in ([`Package0::verify_or_reset`]; [`Package0::verify`] never
//! tries it) because a notification signed with the fixed reset nonce never expires:
//! a captured one can be replayed to start sessions again. Those sessions still
//! authenticate both sides, and their challenges re-synchronise the nonces, so a
//! client that allows the fallback should only rate-limit the sessions it triggers.

use crate::auth::{Nonce, UserKey};
use crate::{Error, NotificationProblem, Result};

/// The media type of a package #0 (WSP content type code 0x44).
pub const MEDIA_TYPE: &str = "application/vnd.syncml.notification";

/// The version this crate writes. The notification specification mandates 11
/// (binary `0000001011`) for DM 1.2; some servers send 12, which is accepted too.
pub const VERSION: u16 = 11;

/// The versions accepted when parsing.
pub const ACCEPTED_VERSIONS: [u16; 2] = [11, 12];

/// The reset nonce: the bytes of the ASCII text `0x00000000` (see the module docs).
pub const RESET_NONCE: &[u8] = b"0x00000000";

/// The largest package #0 accepted. Real ones fit one or two SMS; the bound keeps
/// the vendor data of a hostile message from being copied without limit.
pub const MAX_SIZE: usize = 64 * 1024;

const DIGEST_LEN: usize = 16;
const HEADER_LEN: usize = 8;
/// A digest, a header and at least one byte of server id.
const MIN_LEN: usize = DIGEST_LEN + HEADER_LEN + 1;

/// The user-interaction mode the server recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UiMode {
    NotSpecified = 0,
    Background = 1,
    Informative = 2,
    UserInteraction = 3,
}

impl UiMode {
    /// The mode of a 2-bit field.
    fn from_bits(b: u64) -> UiMode {
        match b & 3 {
            1 => UiMode::Background,
            2 => UiMode::Informative,
            3 => UiMode::UserInteraction,
            _ => UiMode::NotSpecified,
        }
    }

    /// The name used by the `syncml` tool.
    pub fn name(self) -> &'static str {
        match self {
            UiMode::NotSpecified => "not-specified",
            UiMode::Background => "background",
            UiMode::Informative => "informative",
            UiMode::UserInteraction => "user-interaction",
        }
    }
}

/// Who caused the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// The end user asked for it.
    Client = 0,
    /// The server (operator, enterprise) has management actions.
    Server = 1,
}

/// The fields of a package #0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub version: u16,
    pub ui_mode: UiMode,
    pub initiator: Initiator,
    /// 1 to FFFF (the notification specification, 6.2.2.10, gives that range; 0 is
    /// refused); the client sends it back as the SessionID of package 1.
    pub session_id: u16,
    /// The server id (1 to 255 bytes), as in the device's DM account.
    pub server_id: String,
    /// Optional vendor-specific bytes after the server id.
    pub vendor: Vec<u8>,
}

impl Notification {
    /// A server-initiated notification with no UI recommendation and no vendor data.
    pub fn new(server_id: &str, session_id: u16) -> Notification {
        Notification {
            version: VERSION,
            ui_mode: UiMode::NotSpecified,
            initiator: Initiator::Server,
            session_id,
            server_id: server_id.to_owned(),
            vendor: Vec::new(),
        }
    }

    /// The SessionID the client puts in package 1: upper-case hex, no leading zeros.
    pub fn session_id_hex(&self) -> String {
        format!("{:X}", self.session_id)
    }

    /// The trigger: the header, the server id and the vendor data.
    pub fn trigger(&self) -> Result<Vec<u8>> {
        let id = self.server_id.as_bytes();
        if id.is_empty() {
            return Err(problem(NotificationProblem::EmptyServerId));
        }
        let id_len = u8::try_from(id.len())
            .map_err(|_| problem(NotificationProblem::ServerIdTooLong(id.len())))?;
        if !ACCEPTED_VERSIONS.contains(&self.version) {
            return Err(problem(NotificationProblem::UnknownVersion(self.version)));
        }
        if self.session_id == 0 {
            return Err(problem(NotificationProblem::ZeroSessionId));
        }
        let len = DIGEST_LEN + HEADER_LEN + id.len() + self.vendor.len();
        if len > MAX_SIZE {
            return Err(problem(NotificationProblem::TooLarge {
                len,
                limit: MAX_SIZE,
            }));
        }
        let header = (u64::from(self.version) << 54)
            | ((self.ui_mode as u64) << 52)
            | ((self.initiator as u64) << 51)
            | (u64::from(self.session_id) << 8)
            | u64::from(id_len);
        let mut out = Vec::with_capacity(len - DIGEST_LEN);
        out.extend_from_slice(&header.to_be_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&self.vendor);
        Ok(out)
    }

    /// The whole message, signed with the server's key (`server_id` and the server
    /// password the device holds) and the nonce the device expects.
    pub fn build(&self, key: &UserKey, nonce: &Nonce) -> Result<Vec<u8>> {
        let trigger = self.trigger()?;
        let digest = key.digest(nonce.as_bytes(), Some(&trigger));
        let mut out = Vec::with_capacity(DIGEST_LEN + trigger.len());
        out.extend_from_slice(&digest);
        out.extend_from_slice(&trigger);
        Ok(out)
    }
}

/// A parsed package #0, digest not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package0 {
    pub notification: Notification,
    pub digest: [u8; 16],
    trigger: Vec<u8>,
}

/// Which nonce a digest verified with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceUsed {
    /// The nonce stored for the server.
    Stored,
    /// [`RESET_NONCE`]: the client should expect to re-synchronise nonces in the
    /// session that follows.
    Reset,
}

impl Package0 {
    /// Parses a package #0. Every field is checked; the digest is not (that needs the
    /// server's key: see [`Package0::verify`]).
    pub fn parse(bytes: &[u8]) -> Result<Package0> {
        if bytes.len() > MAX_SIZE {
            let p = NotificationProblem::TooLarge {
                len: bytes.len(),
                limit: MAX_SIZE,
            };
            return Err(problem(p));
        }
        let too_short = || {
            problem(NotificationProblem::Truncated {
                len: bytes.len(),
                min: MIN_LEN,
            })
        };
        if bytes.len() < MIN_LEN {
            return Err(too_short());
        }
        let (digest, trigger) = bytes
            .split_first_chunk::<DIGEST_LEN>()
            .ok_or_else(too_short)?;
        let (head, rest) = trigger
            .split_first_chunk::<HEADER_LEN>()
            .ok_or_else(too_short)?;
        let header = u64::from_be_bytes(*head);
        let version = (header >> 54) as u16;
        if !ACCEPTED_VERSIONS.contains(&version) {
            return Err(problem(NotificationProblem::UnknownVersion(version)));
        }
        let reserved = ((header >> 24) & 0x07FF_FFFF) as u32;
        if reserved != 0 {
            return Err(problem(NotificationProblem::ReservedBits(reserved)));
        }
        let session_id = ((header >> 8) & 0xFFFF) as u16;
        if session_id == 0 {
            return Err(problem(NotificationProblem::ZeroSessionId));
        }
        let id_len = (header & 0xFF) as usize;
        if id_len == 0 {
            return Err(problem(NotificationProblem::EmptyServerId));
        }
        if id_len > rest.len() {
            let p = NotificationProblem::LengthMismatch {
                declared: id_len,
                available: rest.len(),
            };
            return Err(problem(p));
        }
        let (id, vendor) = rest.split_at(id_len);
        let server_id = std::str::from_utf8(id)
            .map_err(|_| problem(NotificationProblem::ServerIdNotText))?
            .to_owned();
        let initiator = if (header >> 51) & 1 == 1 {
            Initiator::Server
        } else {
            Initiator::Client
        };
        Ok(Package0 {
            notification: Notification {
                version,
                ui_mode: UiMode::from_bits(header >> 52),
                initiator,
                session_id,
                server_id,
                vendor: vendor.to_vec(),
            },
            digest: *digest,
            trigger: trigger.to_vec(),
        })
    }

    /// Checks the digest with the server's key and `nonce` (constant time).
    pub fn verify(&self, key: &UserKey, nonce: &Nonce) -> Result<()> {
        if key.verifies(&self.digest, nonce.as_bytes(), Some(&self.trigger)) {
            Ok(())
        } else {
            Err(problem(NotificationProblem::DigestMismatch))
        }
    }

    /// Checks the digest with the stored nonce, then with [`RESET_NONCE`].
    pub fn verify_or_reset(&self, key: &UserKey, stored: &Nonce) -> Result<NonceUsed> {
        if self.verify(key, stored).is_ok() {
            return Ok(NonceUsed::Stored);
        }
        self.verify(key, &Nonce::from_bytes(RESET_NONCE))
            .map(|()| NonceUsed::Reset)
    }
}

fn problem(p: NotificationProblem) -> Error {
    Error::Notification(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> UserKey {
        UserKey::new("dm.example.com", "server-secret")
    }

    #[test]
    fn header_bits_are_where_the_spec_puts_them() {
        let mut n = Notification::new("srv", 0xBEEF);
        n.ui_mode = UiMode::Informative;
        let t = n.trigger().unwrap();
        // version 11 = 0b0000001011, ui 10, initiator 1, then 27 zero bits.
        assert_eq!(t[..8], [0x02, 0xE8, 0x00, 0x00, 0x00, 0xBE, 0xEF, 0x03]);
        assert_eq!(&t[8..], b"srv");
        assert_eq!(n.session_id_hex(), "BEEF");
        assert_eq!(Notification::new("s", 0x00A1).session_id_hex(), "A1");
    }

    #[test]
    fn build_parse_verify() {
        let mut n = Notification::new("dm.example.com", 42);
        n.vendor = vec![0, 1, 2, 0xFF];
        let nonce = Nonce::from_bytes(vec![9; 16]);
        let bytes = n.build(&key(), &nonce).unwrap();
        let p = Package0::parse(&bytes).unwrap();
        assert_eq!(p.notification, n);
        assert_eq!(p.verify(&key(), &nonce), Ok(()));
        assert_eq!(p.verify_or_reset(&key(), &nonce), Ok(NonceUsed::Stored));
        let wrong = Nonce::from_bytes(vec![8; 16]);
        assert_eq!(
            p.verify(&key(), &wrong),
            Err(problem(NotificationProblem::DigestMismatch))
        );
        assert_eq!(
            p.verify(&UserKey::new("dm.example.com", "other"), &nonce),
            Err(problem(NotificationProblem::DigestMismatch))
        );
    }

    #[test]
    fn reset_nonce_is_the_ascii_text() {
        let n = Notification::new("dm.example.com", 7);
        let text = n
            .build(&key(), &Nonce::from_bytes(b"0x00000000".to_vec()))
            .unwrap();
        let zeros = n.build(&key(), &Nonce::from_bytes(vec![0; 4])).unwrap();
        let stale = Nonce::from_bytes(b"stale".to_vec());
        let p = Package0::parse(&text).unwrap();
        assert_eq!(p.verify_or_reset(&key(), &stale), Ok(NonceUsed::Reset));
        let p = Package0::parse(&zeros).unwrap();
        assert_eq!(
            p.verify_or_reset(&key(), &stale),
            Err(problem(NotificationProblem::DigestMismatch))
        );
    }

    #[test]
    fn malformed_messages_are_refused_with_their_reason() {
        let nonce = Nonce::from_bytes(vec![1]);
        let good = Notification::new("srv", 1).build(&key(), &nonce).unwrap();
        let err = |b: &[u8]| match Package0::parse(b) {
            Err(Error::Notification(p)) => p,
            other => panic!("expected a notification error, got {other:?}"),
        };
        assert_eq!(
            err(&good[..20]),
            NotificationProblem::Truncated { len: 20, min: 25 }
        );
        assert_eq!(err(&[]), NotificationProblem::Truncated { len: 0, min: 25 });
        let mut long_id = good.clone();
        long_id[23] = 4;
        assert_eq!(
            err(&long_id),
            NotificationProblem::LengthMismatch {
                declared: 4,
                available: 3
            }
        );
        let mut reserved = good.clone();
        reserved[19] = 0x01;
        assert_eq!(err(&reserved), NotificationProblem::ReservedBits(0x100));
        let mut version = good.clone();
        version[16] = 0x03; // 0b0000001111
        assert_eq!(err(&version), NotificationProblem::UnknownVersion(15));
        let mut v12 = good.clone();
        v12[16] = 0x03;
        v12[17] = 0x08; // 0b0000001100 = 12, then ui 00, initiator 1
        assert_eq!(Package0::parse(&v12).unwrap().notification.version, 12);
        let mut zero_sid = good.clone();
        zero_sid[21] = 0;
        zero_sid[22] = 0;
        assert_eq!(err(&zero_sid), NotificationProblem::ZeroSessionId);
        let mut zero_len = good.clone();
        zero_len[23] = 0;
        assert_eq!(err(&zero_len), NotificationProblem::EmptyServerId);
        let mut bad_utf8 = good.clone();
        bad_utf8[24] = 0xFF;
        assert_eq!(err(&bad_utf8), NotificationProblem::ServerIdNotText);
        assert!(matches!(
            err(&vec![0u8; MAX_SIZE + 1]),
            NotificationProblem::TooLarge { .. }
        ));
    }

    #[test]
    fn build_refuses_what_parse_would() {
        let k = key();
        let n = Nonce::default();
        let refuse = |m: Notification| match m.build(&k, &n) {
            Err(Error::Notification(p)) => p,
            other => panic!("built {other:?}"),
        };
        assert_eq!(
            refuse(Notification::new("", 1)),
            NotificationProblem::EmptyServerId
        );
        assert_eq!(
            refuse(Notification::new("s", 0)),
            NotificationProblem::ZeroSessionId
        );
        assert_eq!(
            refuse(Notification::new(&"x".repeat(256), 1)),
            NotificationProblem::ServerIdTooLong(256)
        );
        let mut v = Notification::new("s", 1);
        v.version = 10;
        assert_eq!(refuse(v), NotificationProblem::UnknownVersion(10));
        let mut big = Notification::new("s", 1);
        big.vendor = vec![0; MAX_SIZE];
        assert!(matches!(refuse(big), NotificationProblem::TooLarge { .. }));
    }
}
