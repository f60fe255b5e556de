//! The `x-syncml-hmac` transport header (`syncml:auth-MAC`).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use super::{Nonce, UserKey};
use crate::{AuthProblem, Error, Result};

/// The name of the HTTP header.
pub const HMAC_HEADER: &str = "x-syncml-hmac";

/// A parsed or computed `x-syncml-hmac` value. The only algorithm is MD5. `==`
/// compares the mac in constant time; [`HmacHeader::verify`] is the way to check one.
#[derive(Debug, Clone)]
pub struct HmacHeader {
    pub username: String,
    /// `MD5(key:nonce:B64(MD5(body)))`.
    pub mac: [u8; 16],
}

impl HmacHeader {
    /// The header for `body`, the exact bytes to be transported (XML or WBXML).
    pub fn compute(key: &UserKey, nonce: &Nonce, body: &[u8]) -> HmacHeader {
        HmacHeader {
            username: key.name().to_owned(),
            mac: key.digest(nonce.as_bytes(), Some(body)),
        }
    }

    /// Checks the header against `key` for `body` under `nonce` (constant time).
    pub fn verify(&self, key: &UserKey, nonce: &Nonce, body: &[u8]) -> Result<()> {
        self.verify_nonces(key, &[nonce], body)
    }

    /// [`HmacHeader::verify`] accepting any of `nonces`.
    pub(crate) fn verify_nonces(
        &self,
        key: &UserKey,
        nonces: &[&Nonce],
        body: &[u8],
    ) -> Result<()> {
        if self.username != key.name() {
            return Err(Error::Auth(AuthProblem::WrongUser {
                expected: key.name().to_owned(),
                got: self.username.clone(),
            }));
        }
        // The body digest is the same for every nonce: compute it once.
        let body_digest = super::b64_md5(body);
        let ok = nonces.iter().fold(false, |acc, n| {
            let mac = key.digest_over(n.as_bytes(), Some(&body_digest));
            super::ct_eq(&mac, &self.mac) | acc
        });
        if ok {
            Ok(())
        } else {
            Err(Error::Auth(AuthProblem::Mismatch))
        }
    }

    /// Parses a header value leniently: parameters in any order, spaces optional
    /// around `=` and `,`, parameter names and the algorithm in any case, the
    /// username quoted or bare, and `algorithm` optional (MD5). Anything else (an
    /// unknown or repeated parameter, another algorithm, a mac that is not the
    /// base64 of 16 bytes) is an error naming the problem.
    pub fn parse(value: &str) -> Result<HmacHeader> {
        let bad = |why: String| Error::Auth(AuthProblem::HmacHeader(why));
        let mut algorithm = None;
        let mut username = None;
        let mut mac = None;
        let mut rest = value.trim();
        if rest.is_empty() {
            return Err(bad("the value is empty".into()));
        }
        loop {
            let (name, value, tail) = param(rest).map_err(bad)?;
            let slot = match name.to_ascii_lowercase().as_str() {
                "algorithm" => &mut algorithm,
                "username" => &mut username,
                "mac" => &mut mac,
                _ => return Err(bad(format!("unknown parameter {name:?}"))),
            };
            if slot.replace(value).is_some() {
                return Err(bad(format!("{name} is given twice")));
            }
            rest = tail.trim_start();
            if rest.is_empty() {
                break;
            }
            rest = rest
                .strip_prefix(',')
                .ok_or_else(|| bad(format!("expected ',' before {rest:?}")))?
                .trim_start();
        }
        if let Some(a) = algorithm {
            if !a.eq_ignore_ascii_case("MD5") {
                return Err(bad(format!("unsupported algorithm {a:?} (only MD5)")));
            }
        }
        let username = username.ok_or_else(|| bad("no username".into()))?;
        let mac = mac.ok_or_else(|| bad("no mac".into()))?;
        let mac = STANDARD
            .decode(&mac)
            .ok()
            .and_then(|m| <[u8; 16]>::try_from(m).ok())
            .ok_or_else(|| bad(format!("mac {mac:?} is not the base64 of 16 bytes")))?;
        Ok(HmacHeader { username, mac })
    }
}

/// Reads `name = value` from the start of `s`; returns them and the rest.
fn param(s: &str) -> std::result::Result<(&str, String, &str), String> {
    let name_end = s
        .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
        .unwrap_or(s.len());
    let name = &s[..name_end];
    if name.is_empty() {
        return Err(format!("expected a parameter name at {s:?}"));
    }
    let rest = s[name_end..].trim_start();
    let rest = rest
        .strip_prefix('=')
        .ok_or_else(|| format!("parameter {name:?} has no '='"))?
        .trim_start();
    if let Some(quoted) = rest.strip_prefix('"') {
        // A quoted string; a backslash escapes the next character.
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => return Ok((name, value, &quoted[i + 1..])),
                '\\' => match chars.next() {
                    Some((_, e)) => value.push(e),
                    None => break,
                },
                c => value.push(c),
            }
        }
        Err(format!("the quoted value of {name} is not closed"))
    } else {
        let end = rest
            .find(|c: char| c == ',' || c.is_whitespace())
            .unwrap_or(rest.len());
        if end == 0 {
            return Err(format!("parameter {name:?} has no value"));
        }
        Ok((name, rest[..end].to_owned(), &rest[end..]))
    }
}

impl PartialEq for HmacHeader {
    fn eq(&self, other: &HmacHeader) -> bool {
        super::ct_eq(&self.mac, &other.mac) & (self.username == other.username)
    }
}

impl Eq for HmacHeader {}

impl std::fmt::Display for HmacHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("algorithm=MD5, username=\"")?;
        for c in self.username.chars() {
            if c == '"' || c == '\\' {
                f.write_str("\\")?;
            }
            write!(f, "{c}")?;
        }
        write!(f, "\", mac={}", STANDARD.encode(self.mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: &str = "Zz6EivR3yeaaENcRN6lpAQ==";

    fn parsed(s: &str) -> HmacHeader {
        HmacHeader::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }

    #[test]
    fn lenient_forms_parse_alike() {
        let want = parsed(&format!("algorithm=MD5, username=\"Bruce2\", mac={MAC}"));
        assert_eq!(want.username, "Bruce2");
        for s in [
            format!("algorithm=MD5,username=\"Bruce2\",mac={MAC}"),
            format!("  mac = {MAC} ,  username = \"Bruce2\" , algorithm = md5 "),
            format!("username=\"Bruce2\", mac={MAC}"),
            format!("username=Bruce2, mac=\"{MAC}\""),
            format!("Algorithm=MD5, UserName=\"Bruce2\", MAC={MAC}"),
            format!("username=\"Bruce2\",\tmac={MAC}"),
        ] {
            assert_eq!(parsed(&s), want, "{s}");
        }
    }

    #[test]
    fn anything_else_is_refused() {
        for s in [
            String::new(),
            "   ".into(),
            format!("algorithm=SHA1, username=\"u\", mac={MAC}"),
            "username=\"u\"".into(),
            format!("mac={MAC}"),
            format!("username=\"u\", username=\"v\", mac={MAC}"),
            format!("username=\"u\", mac={MAC}, realm=\"x\""),
            format!("username=\"u\" mac={MAC}"),
            "username=\"u\", mac=AAAA".into(),
            "username=\"u\", mac=!!!!".into(),
            format!("username=\"u, mac={MAC}"),
            format!("username=, mac={MAC}"),
            format!("username \"u\", mac={MAC}"),
            format!("username=\"u\", mac={MAC},"),
            format!(", username=\"u\", mac={MAC}"),
        ] {
            assert!(
                matches!(
                    HmacHeader::parse(&s),
                    Err(Error::Auth(AuthProblem::HmacHeader(_)))
                ),
                "{s:?} was accepted"
            );
        }
    }

    #[test]
    fn display_round_trips_awkward_names() {
        let key = UserKey::new("a \"b\", \\c", "pw");
        let h = HmacHeader::compute(&key, &Nonce::from_bytes(vec![1, 2]), b"<SyncML/>");
        let s = h.to_string();
        assert!(s.starts_with("algorithm=MD5, username=\"a \\\"b\\\", \\\\c\", mac="));
        assert_eq!(parsed(&s), h);
    }

    #[test]
    fn verify_checks_user_nonce_and_body() {
        let key = UserKey::new("srv", "pw");
        let n = Nonce::from_bytes(b"n1".to_vec());
        let h = HmacHeader::compute(&key, &n, b"body");
        assert_eq!(h.verify(&key, &n, b"body"), Ok(()));
        let mismatch = Err(Error::Auth(AuthProblem::Mismatch));
        assert_eq!(h.verify(&key, &n, b"bodY"), mismatch);
        assert_eq!(
            h.verify(&key, &Nonce::from_bytes(b"n2".to_vec()), b"body"),
            mismatch
        );
        assert_eq!(h.verify(&UserKey::new("srv", "pW"), &n, b"body"), mismatch);
        assert!(matches!(
            h.verify(&UserKey::new("other", "pw"), &n, b"body"),
            Err(Error::Auth(AuthProblem::WrongUser { .. }))
        ));
    }
}
