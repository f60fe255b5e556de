//! Authentication: credentials, the HMAC transport header, nonces and the challenge
//! rules of a session.
//!
//! Every scheme of DM 1.2 is built on one keyed digest (see [`UserKey`]):
//!
//! | scheme | sent as | value |
//! |---|---|---|
//! | `syncml:auth-basic` | Cred Data | `B64(user:password)` |
//! | `syncml:auth-md5` | Cred Data, user in SyncHdr Source/LocName | `B64(H(key:nonce))` |
//! | `syncml:auth-MAC` | `x-syncml-hmac` header | `B64(H(key:nonce:B64(H(body))))` |
//! | package #0 | first 16 bytes | `H(key:nonce:B64(H(trigger)))` |
//!
//! where `H` is MD5 and `key = B64(H(name:password))`. A verifier may store the key
//! instead of the password; all four schemes verify against it.
//!
//! [`Verifier`] and [`Prover`] are the two sides of the challenge rules: the side that
//! demands credentials (a server checking a device, or a device checking its server)
//! and the side that supplies them. Both are plain state machines: nothing here does
//! I/O except [`OsRandom`], the default source of nonces.

mod cred;
mod digest;
mod hmac;
mod nonce;
mod prover;
mod verifier;

pub use cred::{basic_cred, basic_data, md5_cred, md5_data, verify_cred};
pub use digest::UserKey;
pub use hmac::{HmacHeader, HMAC_HEADER};
pub use nonce::{Nonce, NonceSource, OsRandom};
pub use prover::{Prover, ProverState, ProverStep};
pub use verifier::{challenge, Incoming, Verdict, Verifier, VerifierState};

pub(crate) use digest::{b64_md5, ct_eq};

/// An application-level authentication scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthType {
    /// `syncml:auth-basic`: user and password in clear (base64) in Cred.
    Basic,
    /// `syncml:auth-md5`: a digest over a nonce in Cred.
    Md5,
    /// `syncml:auth-MAC`: a digest over nonce and message body in an HTTP header.
    Hmac,
}

impl AuthType {
    /// The Meta Type naming the scheme (in Cred and Chal).
    pub fn meta_type(self) -> &'static str {
        match self {
            AuthType::Basic => "syncml:auth-basic",
            AuthType::Md5 => "syncml:auth-md5",
            AuthType::Hmac => "syncml:auth-MAC",
        }
    }

    /// The scheme a Meta Type names, compared without regard to ASCII case
    /// (`syncml:auth-mac` and `syncml:auth-MAC` both occur).
    pub fn from_meta_type(s: &str) -> Option<AuthType> {
        [AuthType::Basic, AuthType::Md5, AuthType::Hmac]
            .into_iter()
            .find(|t| t.meta_type().eq_ignore_ascii_case(s.trim()))
    }

    /// The scheme of a Cred or Chal Meta Type: SyncML makes Basic the default when
    /// no Type is given; an unknown Type is refused.
    pub(crate) fn of_meta(type_: Option<&str>) -> crate::Result<AuthType> {
        match type_ {
            None => Ok(AuthType::Basic),
            Some(s) => AuthType::from_meta_type(s).ok_or_else(|| {
                crate::Error::Auth(crate::AuthProblem::UnsupportedType(s.to_owned()))
            }),
        }
    }

    /// Whether the scheme uses a nonce.
    pub fn uses_nonce(self) -> bool {
        self != AuthType::Basic
    }
}

impl std::fmt::Display for AuthType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.meta_type())
    }
}

impl std::str::FromStr for AuthType {
    type Err = crate::Error;

    /// Accepts a Meta Type or the short names `basic`, `md5`, `hmac`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "basic" => Ok(AuthType::Basic),
            "md5" => Ok(AuthType::Md5),
            "hmac" | "mac" => Ok(AuthType::Hmac),
            _ => AuthType::from_meta_type(s).ok_or_else(|| {
                crate::Error::Auth(crate::AuthProblem::UnsupportedType(s.to_owned()))
            }),
        }
    }
}
