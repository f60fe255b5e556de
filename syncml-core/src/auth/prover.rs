//! The side that supplies credentials: a device proving itself to its server, or a
//! server proving itself to a device.

use super::{AuthType, HmacHeader, Nonce, UserKey};
use crate::{AuthProblem, Chal, Cred, Error, Result, Status, StatusCode};

/// What a [`Prover`] makes of the Status for its SyncHdr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProverStep {
    /// 200: carry on, sending the same kind of credentials with the next message.
    Continue,
    /// 212: authenticated for the rest of the session.
    Authenticated,
    /// 401 or 407 before the session was ever accepted: resend package 1 with the
    /// new credentials (to RespURI if one was given).
    ResendPackage1,
    /// 401 or 407 later in the session (an HMAC that failed, say): resend the
    /// refused message with the new credentials.
    ResendMessage,
    /// Refused too often, or the header failed for another reason: end the session.
    GiveUp,
}

/// What a [`Prover`] remembers between messages, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProverState {
    pub auth_type: AuthType,
    pub nonce: Nonce,
    /// A challenge of another type, kept for the next session.
    pub next_session: Option<(AuthType, Nonce)>,
    pub authenticated: bool,
    pub accepted_once: bool,
    pub retries: u32,
}

/// The side that supplies credentials, for one session with one account.
///
/// Create one per session with the type and nonce stored for the account. After the
/// session, store [`Prover::next_auth_type`] and [`Prover::next_nonce`] if the peer
/// authenticated itself: a nonce from an unauthenticated peer is used but not stored
/// (DM security 5.1.3.4), so a stranger cannot overwrite a good nonce.
#[derive(Clone)]
pub struct Prover {
    password: String,
    key: UserKey,
    /// The configured type: challenges to a weaker one are refused.
    minimum: AuthType,
    auth_type: AuthType,
    /// The nonce of this session's credentials (for HMAC, of the next message).
    nonce: Nonce,
    /// A challenge of another type received with 200/212: for the next session.
    next_session: Option<(AuthType, Nonce)>,
    authenticated: bool,
    /// Set once the peer accepted our credentials: the type is then fixed.
    accepted_once: bool,
    retries: u32,
    max_retries: u32,
}

impl Prover {
    /// Refusals after which [`ProverStep::GiveUp`] is returned.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// A prover for `user` / `password` with the configured type and the stored
    /// nonce. A peer may challenge it to a stronger type, never a weaker one.
    pub fn new(user: &str, password: &str, auth_type: AuthType, stored_nonce: Nonce) -> Prover {
        Prover {
            password: password.to_owned(),
            key: UserKey::new(user, password),
            minimum: auth_type,
            auth_type,
            nonce: stored_nonce,
            next_session: None,
            authenticated: false,
            accepted_once: false,
            retries: 0,
            max_retries: Self::DEFAULT_MAX_RETRIES,
        }
    }

    /// A prover continuing a session from its saved [`Prover::state`], for a side
    /// that keeps nothing in memory between messages (a server behind a store).
    pub fn resume(user: &str, password: &str, minimum: AuthType, state: ProverState) -> Prover {
        Prover {
            password: password.to_owned(),
            key: UserKey::new(user, password),
            minimum,
            auth_type: state.auth_type,
            nonce: state.nonce,
            next_session: state.next_session,
            authenticated: state.authenticated,
            accepted_once: state.accepted_once,
            retries: state.retries,
            max_retries: Self::DEFAULT_MAX_RETRIES,
        }
    }

    /// Everything to save between messages.
    pub fn state(&self) -> ProverState {
        ProverState {
            auth_type: self.auth_type,
            nonce: self.nonce.clone(),
            next_session: self.next_session.clone(),
            authenticated: self.authenticated,
            accepted_once: self.accepted_once,
            retries: self.retries,
        }
    }

    /// The user name (to put in SyncHdr Source/LocName with MD5).
    pub fn user(&self) -> &str {
        self.key.name()
    }

    /// The type in use in this session.
    pub fn auth_type(&self) -> AuthType {
        self.auth_type
    }

    /// Whether 212 was received in this session.
    pub fn is_authenticated(&self) -> bool {
        self.authenticated
    }

    /// The type to store for the next session.
    pub fn next_auth_type(&self) -> AuthType {
        self.next_session
            .as_ref()
            .map_or(self.auth_type, |(t, _)| *t)
    }

    /// The nonce to store for the next session.
    pub fn next_nonce(&self) -> &Nonce {
        self.next_session.as_ref().map_or(&self.nonce, |(_, n)| n)
    }

    /// The Cred for the next message's SyncHdr: none for HMAC, none once the session
    /// is authenticated.
    pub fn cred(&self) -> Option<Cred> {
        if self.authenticated {
            return None;
        }
        match self.auth_type {
            AuthType::Basic => Some(super::basic_cred(self.key.name(), &self.password)),
            AuthType::Md5 => Some(super::md5_cred(&self.key, &self.nonce)),
            AuthType::Hmac => None,
        }
    }

    /// The `x-syncml-hmac` value for the next message's exact bytes (HMAC only;
    /// every message carries one).
    pub fn hmac_header(&self, body: &[u8]) -> Option<String> {
        (self.auth_type == AuthType::Hmac)
            .then(|| HmacHeader::compute(&self.key, &self.nonce, body).to_string())
    }

    /// Reads the Status the peer gave our SyncHdr.
    ///
    /// A challenge with 200 or 212 sets the nonce of what follows: the next messages
    /// of an HMAC session (DM protocol 2.4.1: the next nonce is used for the next
    /// request) and the next session. A challenge of another type with 200 or 212 is
    /// kept for the next session only; one weaker than configured is ignored.
    pub fn on_header_status(&mut self, status: &Status) -> Result<ProverStep> {
        let chal = status.chal.as_ref().map(read_challenge).transpose()?;
        match status.data {
            StatusCode::AuthenticationAccepted | StatusCode::Ok => {
                match chal {
                    Some((t, nonce)) if t == self.auth_type => {
                        self.nonce = nonce;
                        self.next_session = None;
                    }
                    Some((t, nonce)) if t >= self.minimum => self.next_session = Some((t, nonce)),
                    _ => {}
                }
                self.accepted_once = true;
                self.retries = 0;
                if status.data == StatusCode::AuthenticationAccepted {
                    self.authenticated = true;
                    Ok(ProverStep::Authenticated)
                } else {
                    Ok(ProverStep::Continue)
                }
            }
            StatusCode::InvalidCredentials | StatusCode::MissingCredentials => {
                self.authenticated = false;
                let (t, nonce) = chal.ok_or(Error::Auth(AuthProblem::NoChallenge))?;
                if t < self.minimum {
                    return Err(Error::Auth(AuthProblem::Downgrade {
                        configured: self.minimum.meta_type(),
                        requested: t.meta_type(),
                    }));
                }
                if self.accepted_once && t != self.auth_type {
                    return Err(Error::Auth(AuthProblem::TypeChange {
                        current: self.auth_type.meta_type(),
                        requested: t.meta_type(),
                    }));
                }
                self.auth_type = t;
                self.nonce = nonce;
                self.retries += 1;
                Ok(if self.retries > self.max_retries {
                    ProverStep::GiveUp
                } else if self.accepted_once {
                    ProverStep::ResendMessage
                } else {
                    ProverStep::ResendPackage1
                })
            }
            _ => Ok(ProverStep::GiveUp),
        }
    }
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prover")
            .field("user", &self.key.name())
            .field("auth_type", &self.auth_type)
            .field("nonce", &self.nonce)
            .field("authenticated", &self.authenticated)
            .finish_non_exhaustive()
    }
}

/// The type and nonce of a Chal. MD5 and HMAC challenges must carry a NextNonce; a
/// Basic one without gets an empty nonce.
fn read_challenge(chal: &Chal) -> Result<(AuthType, Nonce)> {
    let t = AuthType::of_meta(chal.meta.type_.as_deref())?;
    match chal.meta.next_nonce.as_deref() {
        Some(n) => Ok((t, Nonce::from_b64(n)?)),
        None if t.uses_nonce() => Err(Error::Auth(AuthProblem::NoNonce(t.meta_type()))),
        None => Ok((t, Nonce::default())),
    }
}

#[cfg(test)]
mod resume_tests {
    use super::*;
    use crate::auth::Verifier;

    #[test]
    fn a_resumed_prover_continues_where_the_saved_one_stopped() {
        let mut p = Prover::new("srv", "pw", AuthType::Md5, Nonce::from_bytes(*b"old"));
        let mut chal_meta = crate::Meta::format_type(Some("b64"), Some("syncml:auth-md5"));
        chal_meta.next_nonce = Some(Nonce::from_bytes(*b"fresh").to_b64());
        let st = Status {
            cmd_id: 1,
            msg_ref: Some(1),
            cmd_ref: 0,
            cmd: "SyncHdr".into(),
            target_ref: vec![],
            source_ref: vec![],
            cred: None,
            chal: Some(Chal {
                meta: Box::new(chal_meta),
            }),
            data: StatusCode::InvalidCredentials,
            items: vec![],
            extra: vec![],
        };
        assert_eq!(p.on_header_status(&st).unwrap(), ProverStep::ResendPackage1);
        let r = Prover::resume("srv", "pw", AuthType::Md5, p.state());
        assert_eq!(r.state(), p.state());
        assert_eq!(r.cred(), p.cred());
        // The resumed prover's credentials use the challenge's nonce.
        let mut v = Verifier::new(
            AuthType::Md5,
            UserKey::new("srv", "pw"),
            Nonce::from_bytes(*b"fresh"),
        );
        let hdr_cred = r.cred().unwrap();
        let msg = crate::auth::Incoming {
            cred: Some(&hdr_cred),
            loc_name: Some("srv"),
            hmac: None,
            body: b"",
        };
        assert!(v
            .check(&msg, &mut crate::auth::OsRandom)
            .unwrap()
            .accepted());
    }
}
