//! Cred elements: `syncml:auth-basic` and `syncml:auth-md5`, either direction.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{AuthType, Nonce, UserKey};
use crate::{AuthProblem, Cred, Error, Meta, Result};

/// The Data of a Basic Cred: `B64(user:password)`.
pub fn basic_data(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

/// The Data of an MD5 Cred: `B64(MD5(B64(MD5(user:password)):nonce))`.
pub fn md5_data(key: &UserKey, nonce: &Nonce) -> String {
    STANDARD.encode(key.digest(nonce.as_bytes(), None))
}

/// A Basic Cred. The user name travels inside the Data.
pub fn basic_cred(user: &str, password: &str) -> Cred {
    cred(AuthType::Basic, basic_data(user, password))
}

/// An MD5 Cred. The sender must also put `key.name()` in its SyncHdr Source/LocName.
pub fn md5_cred(key: &UserKey, nonce: &Nonce) -> Cred {
    cred(AuthType::Md5, md5_data(key, nonce))
}

fn cred(t: AuthType, data: String) -> Cred {
    Cred {
        meta: Some(Box::new(Meta::format_type(
            Some("b64"),
            Some(t.meta_type()),
        ))),
        data,
    }
}

/// The scheme of a Cred (Basic when Meta gives no Type).
pub(crate) fn cred_type(cred: &Cred) -> Result<AuthType> {
    let meta = cred.meta.as_deref();
    if let Some(f) = meta.and_then(|m| m.format.as_deref()) {
        if !f.trim().eq_ignore_ascii_case("b64") {
            return Err(Error::Auth(AuthProblem::UnsupportedFormat(f.to_owned())));
        }
    }
    let type_ = meta.and_then(|m| m.type_.as_deref());
    match AuthType::of_meta(type_)? {
        // HMAC travels in a transport header, never in Cred.
        AuthType::Hmac => Err(Error::Auth(AuthProblem::UnsupportedType(
            type_.unwrap_or_default().to_owned(),
        ))),
        found => Ok(found),
    }
}

/// Splits the Data of a Basic Cred into user and password.
fn basic_parts(data: &str) -> Result<(String, String)> {
    let raw = STANDARD
        .decode(data.trim())
        .map_err(|_| Error::Auth(AuthProblem::NotBase64 { what: "Cred Data" }))?;
    let text = String::from_utf8(raw).map_err(|_| Error::Auth(AuthProblem::NotUserPassword))?;
    match text.split_once(':') {
        Some((u, p)) => Ok((u.to_owned(), p.to_owned())),
        None => Err(Error::Auth(AuthProblem::NotUserPassword)),
    }
}

/// The user a Cred claims to be: for Basic the name inside the Data, for MD5 the
/// SyncHdr Source/LocName.
pub(crate) fn cred_user(cred: &Cred, loc_name: Option<&str>) -> Option<String> {
    match cred_type(cred).ok()? {
        AuthType::Basic => basic_parts(&cred.data).ok().map(|(u, _)| u),
        _ => loc_name.map(|n| n.trim().to_owned()),
    }
}

/// Verifies a Cred against a user's key, returning its scheme.
///
/// `loc_name` is the SyncHdr Source/LocName of the message (the MD5 user name). When
/// it is absent the MD5 digest is checked for `key`'s user, since some engines omit
/// it when the receiver knows who they are; when present it must name that user.
/// Digests are compared in constant time.
pub fn verify_cred(
    cred: &Cred,
    loc_name: Option<&str>,
    key: &UserKey,
    nonce: &Nonce,
) -> Result<AuthType> {
    verify_cred_nonces(cred, loc_name, key, &[nonce])
}

/// [`verify_cred`] accepting any of `nonces` (the challenge rules accept more than one
/// in some states).
pub(crate) fn verify_cred_nonces(
    cred: &Cred,
    loc_name: Option<&str>,
    key: &UserKey,
    nonces: &[&Nonce],
) -> Result<AuthType> {
    let t = cred_type(cred)?;
    let check_user = |got: &str| {
        if got == key.name() {
            Ok(())
        } else {
            Err(Error::Auth(AuthProblem::WrongUser {
                expected: key.name().to_owned(),
                got: got.to_owned(),
            }))
        }
    };
    let ok = match t {
        AuthType::Basic => {
            let (user, password) = basic_parts(&cred.data)?;
            // `user:password` is ambiguous when the name holds a colon (an IMEI:
            // DevId): the expected name decides where the password starts.
            let (user, password) =
                match format!("{user}:{password}").strip_prefix(&format!("{}:", key.name())) {
                    Some(p) => (key.name().to_owned(), p.to_owned()),
                    None => (user, password),
                };
            check_user(&user)?;
            key.matches_password(&password)
        }
        _ => {
            if let Some(name) = loc_name {
                check_user(name.trim())?;
            }
            let digest = STANDARD
                .decode(cred.data.trim())
                .map_err(|_| Error::Auth(AuthProblem::NotBase64 { what: "Cred Data" }))?;
            // Every candidate is computed, so timing does not tell which one matched.
            nonces.iter().fold(false, |acc, n| {
                key.verifies(&digest, n.as_bytes(), None) | acc
            })
        }
    };
    if ok {
        Ok(t)
    } else {
        Err(Error::Auth(AuthProblem::Mismatch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The vectors of the DM security specification (PROTOCOL.md section 5).
    const BASIC: &str = "QnJ1Y2UyOk9oQmVoYXZl";
    const MD5: &str = "Zz6EivR3yeaaENcRN6lpAQ==";

    fn nonce() -> Nonce {
        Nonce::from_bytes(b"Nonce".to_vec())
    }

    #[test]
    fn spec_vectors() {
        assert_eq!(basic_data("Bruce2", "OhBehave"), BASIC);
        assert_eq!(md5_data(&UserKey::new("Bruce2", "OhBehave"), &nonce()), MD5);
    }

    #[test]
    fn built_creds_verify() {
        let key = UserKey::new("Bruce2", "OhBehave");
        let b = basic_cred("Bruce2", "OhBehave");
        assert_eq!(verify_cred(&b, None, &key, &nonce()), Ok(AuthType::Basic));
        let m = md5_cred(&key, &nonce());
        assert_eq!(m.data, MD5);
        assert_eq!(
            m.meta.as_ref().unwrap().type_.as_deref(),
            Some("syncml:auth-md5")
        );
        assert_eq!(
            verify_cred(&m, Some("Bruce2"), &key, &nonce()),
            Ok(AuthType::Md5)
        );
        assert_eq!(verify_cred(&m, None, &key, &nonce()), Ok(AuthType::Md5));
    }

    #[test]
    fn refusals() {
        let key = UserKey::new("Bruce2", "OhBehave");
        let m = md5_cred(&key, &nonce());
        let other = Nonce::from_bytes(b"Other".to_vec());
        let err = |r: Result<AuthType>| match r {
            Err(Error::Auth(p)) => p,
            other => panic!("expected an auth error, got {other:?}"),
        };
        assert_eq!(
            err(verify_cred(&m, None, &key, &other)),
            AuthProblem::Mismatch
        );
        assert!(matches!(
            err(verify_cred(&m, Some("Mallory"), &key, &nonce())),
            AuthProblem::WrongUser { .. }
        ));
        assert_eq!(
            err(verify_cred(
                &basic_cred("Bruce2", "wrong"),
                None,
                &key,
                &nonce()
            )),
            AuthProblem::Mismatch
        );
        assert!(matches!(
            err(verify_cred(
                &basic_cred("Bruce3", "OhBehave"),
                None,
                &key,
                &nonce()
            )),
            AuthProblem::WrongUser { .. }
        ));
        let no_colon = Cred {
            meta: None,
            data: STANDARD.encode("Bruce2"),
        };
        assert_eq!(
            err(verify_cred(&no_colon, None, &key, &nonce())),
            AuthProblem::NotUserPassword
        );
        let mut hex = m.clone();
        hex.meta.as_mut().unwrap().format = Some("hex".into());
        assert!(matches!(
            err(verify_cred(&hex, None, &key, &nonce())),
            AuthProblem::UnsupportedFormat(_)
        ));
        let mut mac = m.clone();
        mac.meta.as_mut().unwrap().type_ = Some("syncml:auth-MAC".into());
        assert!(matches!(
            err(verify_cred(&mac, None, &key, &nonce())),
            AuthProblem::UnsupportedType(_)
        ));
    }

    #[test]
    fn missing_meta_means_basic() {
        let key = UserKey::new("Bruce2", "OhBehave");
        let c = Cred {
            meta: None,
            data: BASIC.into(),
        };
        assert_eq!(verify_cred(&c, None, &key, &nonce()), Ok(AuthType::Basic));
    }
}
