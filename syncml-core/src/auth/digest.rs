//! The keyed MD5 digest every DM authentication scheme is built on.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

use crate::{AuthProblem, Error, Result};

/// MD5 over the concatenation of `parts`.
pub(crate) fn md5(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// `B64(MD5(bytes))`, 24 characters.
pub(crate) fn b64_md5(bytes: &[u8]) -> String {
    STANDARD.encode(md5(&[bytes]))
}

/// Compares secrets in time that does not depend on where they differ.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

/// A user's key: the name and `B64(MD5(name:password))`.
///
/// This is all a verifier needs for every scheme, so a server can store it in place
/// of the password. (Basic credentials carry the password; they are checked by hashing
/// what arrives.) `Debug` does not print the key, and `==` compares it in constant
/// time.
#[derive(Clone)]
pub struct UserKey {
    name: String,
    key: String,
}

impl UserKey {
    /// The key of `name` with `password`.
    pub fn new(name: &str, password: &str) -> UserKey {
        let key = b64_md5(format!("{name}:{password}").as_bytes());
        UserKey {
            name: name.to_owned(),
            key,
        }
    }

    /// A key stored earlier with [`UserKey::key_b64`].
    pub fn from_stored(name: &str, key_b64: &str) -> Result<UserKey> {
        let key_b64 = key_b64.trim();
        match STANDARD.decode(key_b64) {
            Ok(raw) if raw.len() == 16 => Ok(UserKey {
                name: name.to_owned(),
                key: STANDARD.encode(raw),
            }),
            _ => Err(Error::Auth(AuthProblem::BadStoredKey)),
        }
    }

    /// The user name (for a server's key, the server id).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key, `B64(MD5(name:password))`, to store in place of the password.
    pub fn key_b64(&self) -> &str {
        &self.key
    }

    /// `MD5(key ":" nonce)`, or `MD5(key ":" nonce ":" B64(MD5(covered)))` when the
    /// digest also covers a message (HMAC) or a trigger (package #0).
    pub fn digest(&self, nonce: &[u8], covered: Option<&[u8]>) -> [u8; 16] {
        self.digest_over(nonce, covered.map(b64_md5).as_deref())
    }

    /// [`UserKey::digest`] given `B64(MD5(covered))`, for callers that check one
    /// message under several nonces.
    pub(crate) fn digest_over(&self, nonce: &[u8], covered_b64_md5: Option<&str>) -> [u8; 16] {
        match covered_b64_md5 {
            None => md5(&[self.key.as_bytes(), b":", nonce]),
            Some(d) => md5(&[self.key.as_bytes(), b":", nonce, b":", d.as_bytes()]),
        }
    }

    /// Whether `digest` is [`UserKey::digest`] of these inputs, in constant time.
    pub fn verifies(&self, digest: &[u8], nonce: &[u8], covered: Option<&[u8]>) -> bool {
        ct_eq(&self.digest(nonce, covered), digest)
    }

    /// Whether `password` is this user's password (constant time in the key).
    pub fn matches_password(&self, password: &str) -> bool {
        let other = UserKey::new(&self.name, password);
        ct_eq(self.key.as_bytes(), other.key.as_bytes())
    }
}

impl PartialEq for UserKey {
    fn eq(&self, other: &UserKey) -> bool {
        ct_eq(self.key.as_bytes(), other.key.as_bytes()) & (self.name == other.name)
    }
}

impl Eq for UserKey {}

impl std::fmt::Debug for UserKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserKey")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_b64_md5_of_name_colon_password() {
        // MD5("Bruce2:OhBehave"), checked with `printf 'Bruce2:OhBehave' | md5sum`.
        let k = UserKey::new("Bruce2", "OhBehave");
        let raw = STANDARD.decode(k.key_b64()).unwrap();
        assert_eq!(raw, md5(&[b"Bruce2:OhBehave"]));
        assert_eq!(UserKey::from_stored("Bruce2", k.key_b64()).unwrap(), k);
    }

    #[test]
    fn stored_key_must_be_a_digest() {
        for bad in ["", "abc", "QnJ1Y2UyOk9oQmVoYXZl", "not base64 at all!!!!!!"] {
            assert_eq!(
                UserKey::from_stored("u", bad),
                Err(Error::Auth(AuthProblem::BadStoredKey)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn password_check() {
        let k = UserKey::new("u", "secret");
        assert!(k.matches_password("secret"));
        assert!(!k.matches_password("secreT"));
        assert!(!format!("{k:?}").contains(k.key_b64()));
    }
}
