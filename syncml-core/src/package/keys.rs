//! Ed25519 keys for signing packages, as raw bytes or standard base64 text.

use super::error::PackageError;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ed25519_dalek::{Signature, Signer};

/// A secret signing key (the 32-byte Ed25519 seed). Its `Debug` output hides the
/// secret; the inner key wipes itself on drop.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A fresh key from the operating system's secure random generator.
    pub fn generate() -> Result<Self, PackageError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| PackageError::Random(e.to_string()))?;
        let key = Self::from_seed(&seed);
        seed.fill(0);
        Ok(key)
    }

    /// The key with this 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// Reads a seed written by [`SigningKey::to_b64`] (surrounding whitespace is
    /// ignored).
    pub fn from_b64(text: &str) -> Result<Self, PackageError> {
        let seed: [u8; 32] = decode_32(text, "signing key")?;
        Ok(Self::from_seed(&seed))
    }

    /// The seed in standard base64.
    pub fn to_b64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The Ed25519 signature of `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SigningKey(public {})", self.public().to_b64())
    }
}

/// A public key that package signatures are checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Reads a key written by [`PublicKey::to_b64`] (surrounding whitespace is
    /// ignored).
    pub fn from_b64(text: &str) -> Result<Self, PackageError> {
        let bytes: [u8; 32] = decode_32(text, "public key")?;
        Self::from_bytes(&bytes)
    }

    /// The key in standard base64.
    pub fn to_b64(&self) -> String {
        STANDARD.encode(self.0.to_bytes())
    }

    /// Reads the 32-byte compressed Edwards point.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PackageError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| {
            PackageError::BadKey(format!("a public key has 32 bytes, not {}", bytes.len()))
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&arr)
            .map(PublicKey)
            .map_err(|_| PackageError::BadKey("not a valid Ed25519 public key".into()))
    }

    /// The 32 key bytes.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Strict verification: refuses weak keys and malleable signatures.
    pub(crate) fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        self.0.verify_strict(msg, sig).is_ok()
    }
}

fn decode_32(text: &str, what: &str) -> Result<[u8; 32], PackageError> {
    let mut bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| PackageError::BadKey(format!("{what} is not base64: {e}")))?;
    let key = <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| PackageError::BadKey(format!("{what} has 32 bytes, not {}", bytes.len())));
    // The text may be a secret seed: leave no copy behind.
    bytes.fill(0);
    key
}
