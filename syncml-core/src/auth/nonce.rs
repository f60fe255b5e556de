//! Nonces: raw bytes, carried base64-encoded in NextNonce.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::{AuthProblem, Error, Result};

/// A nonce, as raw bytes (what the digests are computed over).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Nonce(Vec<u8>);

impl Nonce {
    /// The length of the nonces this crate issues: 16 bytes, the length the DM
    /// security specification recommends.
    pub const LEN: usize = 16;

    /// A nonce of these bytes.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Nonce {
        Nonce(bytes.into())
    }

    /// The nonce a NextNonce value carries (surrounding white space is ignored).
    pub fn from_b64(s: &str) -> Result<Nonce> {
        STANDARD
            .decode(s.trim())
            .map(Nonce)
            .map_err(|_| Error::Auth(AuthProblem::NotBase64 { what: "the nonce" }))
    }

    /// A fresh random nonce of [`Nonce::LEN`] bytes.
    pub fn generate(source: &mut dyn NonceSource) -> Result<Nonce> {
        let mut buf = vec![0u8; Nonce::LEN];
        source.fill(&mut buf)?;
        Ok(Nonce(buf))
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The value to put in NextNonce.
    pub fn to_b64(&self) -> String {
        STANDARD.encode(&self.0)
    }

    /// The nonce a peer that base64-encodes nonces twice (libdmclient) ends up
    /// using: the bytes of this nonce's base64 text. For interop only.
    pub fn b64_text(&self) -> Nonce {
        Nonce(self.to_b64().into_bytes())
    }
}

impl std::fmt::Debug for Nonce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nonce({})", self.to_b64())
    }
}

/// Where fresh nonces come from. Nonces must be unpredictable, so production code
/// uses [`OsRandom`]; tests may pass a deterministic source.
pub trait NonceSource {
    /// Fills `buf` with random bytes.
    fn fill(&mut self, buf: &mut [u8]) -> Result<()>;
}

/// The operating system's cryptographically secure generator (`getrandom`).
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl NonceSource for OsRandom {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        getrandom::fill(buf).map_err(|e| Error::Auth(AuthProblem::Random(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn b64_round_trip_and_errors() {
        let n = Nonce::from_b64(" Tm9uY2U= ").unwrap();
        assert_eq!(n.as_bytes(), b"Nonce");
        assert_eq!(n.to_b64(), "Tm9uY2U=");
        assert_eq!(n.b64_text().as_bytes(), b"Tm9uY2U=");
        assert!(matches!(
            Nonce::from_b64("%%%"),
            Err(Error::Auth(AuthProblem::NotBase64 { .. }))
        ));
    }

    #[test]
    fn os_nonces_are_fresh() {
        let a = Nonce::generate(&mut OsRandom).unwrap();
        let b = Nonce::generate(&mut OsRandom).unwrap();
        assert_eq!(a.as_bytes().len(), Nonce::LEN);
        assert_ne!(a, b);
    }
}
