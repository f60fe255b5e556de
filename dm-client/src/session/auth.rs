//! Both directions of authentication for one session, set up from the DMAcc
//! account: the device proving itself ([`Prover`]) and, when the account holds the
//! server's credentials, the server proving itself ([`Verifier`]).

use dm_tree::accounts::{Account, Credentials};
use dm_tree::DmTree;
use syncml_core::auth::{
    AuthType, Incoming, Nonce, NonceSource, OsRandom, Prover, UserKey, Verdict, Verifier,
};

use super::SessionError;

/// The scheme an account names: DM 1.2 AAuthType (`BASIC`, `DIGEST`, `HMAC`) or a
/// SyncML Meta Type (`syncml:auth-md5`), in any letter case. `None` for a scheme
/// this engine does not speak (a transport-level one such as X509).
pub fn scheme(name: &str) -> Option<AuthType> {
    match name.trim().to_ascii_uppercase().as_str() {
        "BASIC" => Some(AuthType::Basic),
        "DIGEST" | "MD5" => Some(AuthType::Md5),
        "HMAC" => Some(AuthType::Hmac),
        other => AuthType::from_meta_type(&other.to_ascii_lowercase()),
    }
}

/// The authentication state of a session.
pub struct Auth {
    /// The device's credentials; none when the account holds none (a server that
    /// does not authenticate devices).
    pub prover: Option<Prover>,
    /// The check of the server's credentials, when the account requires one.
    pub verifier: Option<Verifier>,
    client_nonce_path: Option<String>,
    server_nonce_path: Option<String>,
    rng: Box<dyn NonceSource + Send>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("prover", &self.prover)
            .field(
                "verifier",
                &self.verifier.as_ref().map(|v| v.authenticated()),
            )
            .finish()
    }
}

fn secret_text(c: &Credentials) -> String {
    String::from_utf8_lossy(&c.secret).into_owned()
}

impl Auth {
    /// The session's authentication from the account.
    pub fn from_account(acc: &Account) -> Result<Auth, SessionError> {
        let client = acc
            .client
            .as_ref()
            .filter(|c| !c.name.is_empty() || !c.secret.is_empty());
        let prover = match client {
            Some(c) => {
                // No type means Basic (SyncML's default); a type this engine does not
                // speak must not fall back to sending the password in clear.
                let t = if c.auth_type.trim().is_empty() {
                    AuthType::Basic
                } else {
                    scheme(&c.auth_type).ok_or_else(|| {
                        SessionError::ClientAuth(format!("unsupported auth type {:?}", c.auth_type))
                    })?
                };
                let name = if c.name.is_empty() {
                    acc.server_id.as_str()
                } else {
                    &c.name
                };
                Some(Prover::new(
                    name,
                    &secret_text(c),
                    t,
                    Nonce::from_bytes(c.nonce.clone()),
                ))
            }
            None => None,
        };
        // The server must authenticate itself when the account holds a secret for it.
        let server = acc.server.as_ref().filter(|c| !c.secret.is_empty());
        let verifier = match server {
            Some(c) => {
                let t = scheme(&c.auth_type).ok_or_else(|| {
                    SessionError::ClientAuth(format!(
                        "unsupported server auth type {:?}",
                        c.auth_type
                    ))
                })?;
                let name = if c.name.is_empty() {
                    acc.server_id.as_str()
                } else {
                    &c.name
                };
                let key = UserKey::new(name, &secret_text(c));
                Some(Verifier::new(t, key, Nonce::from_bytes(c.nonce.clone())))
            }
            None => None,
        };
        Ok(Auth {
            prover,
            verifier,
            client_nonce_path: client
                .map(|c| c.nonce_path.clone())
                .filter(|p| !p.is_empty()),
            server_nonce_path: server
                .map(|c| c.nonce_path.clone())
                .filter(|p| !p.is_empty()),
            rng: Box::new(OsRandom),
        })
    }

    /// Replaces the source of the nonces the device issues to the server (tests).
    pub fn set_rng(&mut self, rng: Box<dyn NonceSource + Send>) {
        self.rng = rng;
    }

    /// Checks the server's credentials on one message. `None` when the account
    /// requires none. A nonce the verdict issues is the caller's to store with
    /// [`Auth::store_issued`] when it sends the answer carrying it.
    pub fn check_server(
        &mut self,
        incoming: &Incoming<'_>,
    ) -> Result<Option<Verdict>, SessionError> {
        let Some(v) = self.verifier.as_mut() else {
            return Ok(None);
        };
        let verdict = v
            .check(incoming, self.rng.as_mut())
            .map_err(|e| SessionError::Protocol(e.to_string()))?;
        Ok(Some(verdict))
    }

    /// Keeps a nonce issued to the server (call just before sending it).
    pub fn store_issued(&self, dm: &mut DmTree, nonce: &Nonce) -> Result<(), SessionError> {
        match &self.server_nonce_path {
            Some(path) => store(dm, path, nonce.as_bytes()),
            None => Ok(()),
        }
    }

    /// Whether the server authenticated itself, or nothing was asked of it.
    pub fn server_trusted(&self) -> bool {
        self.verifier
            .as_ref()
            .is_none_or(|v| v.authenticated().is_some())
    }

    /// At the end of the session: keeps the nonce the server issued for the next
    /// one. Only a server that authenticated itself (or that the account does not
    /// ask to) may change it: a stranger must not overwrite a good nonce (DM security
    /// 5.1.3.4).
    pub fn store_next_nonce(&self, dm: &mut DmTree) -> Result<(), SessionError> {
        let (Some(p), Some(path)) = (&self.prover, &self.client_nonce_path) else {
            return Ok(());
        };
        if !self.server_trusted() {
            return Ok(());
        }
        let next = p.next_nonce().as_bytes();
        let stored = dm
            .tree
            .get(path)
            .and_then(|n| n.value().map(<[u8]>::to_vec));
        if stored.as_deref() != Some(next) {
            store(dm, path, next)?;
        }
        Ok(())
    }
}

fn store(dm: &mut DmTree, path: &str, value: &[u8]) -> Result<(), SessionError> {
    dm.set(path, value)
        .and_then(|()| dm.tree.commit())
        .map_err(|e| SessionError::Store(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_scheme_names_map_to_types() {
        assert_eq!(scheme("BASIC"), Some(AuthType::Basic));
        assert_eq!(scheme("digest"), Some(AuthType::Md5));
        assert_eq!(scheme("HMAC"), Some(AuthType::Hmac));
        assert_eq!(scheme("syncml:auth-md5"), Some(AuthType::Md5));
        assert_eq!(scheme("syncml:auth-MAC"), Some(AuthType::Hmac));
        assert_eq!(scheme("X509"), None);
    }
}
