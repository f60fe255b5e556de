//! The challenge rules of a session, for both sides.
//!
//! [`Verifier`] is the side that demands credentials; it says what to answer in the
//! Status for the SyncHdr (212, 200, 401 or 407, with a Chal) and what to accept.
//! [`Prover`] is the side that supplies them; it says what Cred or HMAC header to send
//! and what to do with the Status it gets back.
//!
//! Rules (DM 1.2 protocol 2.4 and security 5.1.3):
//! - a refusal (401 bad credentials, 407 none) carries a Chal with a fresh nonce;
//! - 212 authenticates the rest of the session, and for MD5 and HMAC its Chal carries
//!   a fresh nonce, so every session uses a nonce issued for it alone;
//! - the authentication type is fixed for the whole session once chosen;
//! - HMAC covers every message, not only the first.

use super::cred::{cred_type, verify_cred_nonces};
use super::{AuthType, HmacHeader, Nonce, NonceSource, UserKey};
use crate::{AuthProblem, Chal, Cred, Error, Meta, Result, Status, StatusCode, SyncHdr};

/// The proof one incoming message offers.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The SyncHdr Cred.
    pub cred: Option<&'a Cred>,
    /// The SyncHdr Source/LocName (the MD5 user name).
    pub loc_name: Option<&'a str>,
    /// The value of the `x-syncml-hmac` transport header.
    pub hmac: Option<&'a str>,
    /// The exact bytes received (what an HMAC covers).
    pub body: &'a [u8],
}

impl<'a> Incoming<'a> {
    /// The proof in a decoded header plus its transport header and raw bytes.
    pub fn new(hdr: &'a SyncHdr, hmac: Option<&'a str>, body: &'a [u8]) -> Incoming<'a> {
        Incoming {
            cred: hdr.cred.as_ref(),
            loc_name: hdr.source.loc_name.as_deref(),
            hmac,
            body,
        }
    }
}

/// What a [`Verifier`] answers for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// 212 (accepted for the session), 200 (still authenticated), 401 or 407.
    pub status: StatusCode,
    /// The challenge to put in that Status.
    pub chal: Option<Chal>,
    /// Why the credentials were refused, for the log.
    pub problem: Option<AuthProblem>,
    /// Too many refusals: answer this message, then end the session.
    pub give_up: bool,
}

impl Verdict {
    /// Whether the message may be processed.
    pub fn accepted(&self) -> bool {
        matches!(
            self.status,
            StatusCode::Ok | StatusCode::AuthenticationAccepted
        )
    }
}

/// A challenge of type `t`, with `nonce` when the type uses one.
pub fn challenge(t: AuthType, nonce: &Nonce) -> Chal {
    let mut meta = Meta::format_type(Some("b64"), Some(t.meta_type()));
    if t.uses_nonce() {
        meta.next_nonce = Some(nonce.to_b64());
    }
    Chal {
        meta: Box::new(meta),
    }
}

/// The side that demands credentials, for one session with one peer account.
///
/// Create one per session with the nonce stored for the account; after the session,
/// store [`Verifier::next_nonce`] for the next one.
#[derive(Debug, Clone)]
pub struct Verifier {
    required: AuthType,
    key: UserKey,
    /// The nonce the peer must use now: the last one issued (or the stored one).
    nonce: Nonce,
    /// The nonce the session was authenticated with; a peer may keep using it for
    /// HMAC or a repeated Cred until it adopts the fresh one.
    session_nonce: Option<Nonce>,
    /// Fixed by the first accepted credentials.
    session_type: Option<AuthType>,
    authenticated: bool,
    refusals: u32,
    max_refusals: u32,
    double_b64_nonce: bool,
}

impl Verifier {
    /// Refusals after which [`Verdict::give_up`] is set.
    pub const DEFAULT_MAX_REFUSALS: u32 = 3;

    /// A verifier demanding at least `required` (stronger types are accepted too:
    /// Basic < MD5 < HMAC) from the user of `key`, who holds `stored_nonce`.
    pub fn new(required: AuthType, key: UserKey, stored_nonce: Nonce) -> Verifier {
        Verifier {
            required,
            key,
            nonce: stored_nonce,
            session_nonce: None,
            session_type: None,
            authenticated: false,
            refusals: 0,
            max_refusals: Self::DEFAULT_MAX_REFUSALS,
            double_b64_nonce: false,
        }
    }

    /// Sets how many refusals end the session.
    pub fn max_refusals(mut self, n: u32) -> Verifier {
        self.max_refusals = n.max(1);
        self
    }

    /// Also accepts digests computed over the nonce's base64 text, as a peer that
    /// base64-encodes nonces twice computes them. Off by default: only for a peer
    /// known to have this defect.
    pub fn accept_double_b64_nonce(mut self, on: bool) -> Verifier {
        self.double_b64_nonce = on;
        self
    }

    /// The type the session is authenticated with, if it is.
    pub fn authenticated(&self) -> Option<AuthType> {
        self.session_type.filter(|_| self.authenticated)
    }

    /// The nonce the peer must use next: store it for the account after the session.
    pub fn next_nonce(&self) -> &Nonce {
        &self.nonce
    }

    /// Checks the proof of one message. Errors only if no nonce can be generated.
    pub fn check(&mut self, msg: &Incoming<'_>, rng: &mut dyn NonceSource) -> Result<Verdict> {
        let offered = match (msg.hmac, msg.cred) {
            (Some(_), _) => Ok(AuthType::Hmac),
            (None, Some(c)) => cred_type(c),
            (None, None) if self.authenticated && self.session_type != Some(AuthType::Hmac) => {
                return Ok(self.verdict(StatusCode::Ok, None, None));
            }
            (None, None) => {
                return self.refuse(StatusCode::MissingCredentials, AuthProblem::Missing, rng)
            }
        };
        // The type is checked before the proof, so a weaker one is refused as such.
        let offered = offered.and_then(|t| match self.session_type {
            Some(s) if s != t => Err(Error::Auth(AuthProblem::TypeChange {
                current: s.meta_type(),
                requested: t.meta_type(),
            })),
            None if t < self.required => Err(Error::Auth(AuthProblem::WrongType {
                expected: self.required.meta_type(),
                got: t.meta_type(),
            })),
            _ => Ok(t),
        });
        let mut nonces = vec![self.nonce.clone()];
        if self.authenticated {
            nonces.extend(self.session_nonce.clone());
        }
        if self.double_b64_nonce {
            let quirk: Vec<Nonce> = nonces.iter().map(Nonce::b64_text).collect();
            nonces.extend(quirk);
        }
        let nonces: Vec<&Nonce> = nonces.iter().collect();
        let verified = offered.and_then(|t| match (msg.hmac, msg.cred) {
            (Some(h), _) => HmacHeader::parse(h)
                .and_then(|h| h.verify_nonces(&self.key, &nonces, msg.body))
                .map(|()| t),
            (None, Some(c)) => verify_cred_nonces(c, msg.loc_name, &self.key, &nonces),
            (None, None) => Err(Error::Auth(AuthProblem::Missing)),
        });
        let used = match verified {
            Ok(t) => t,
            Err(Error::Auth(p)) => return self.refuse(StatusCode::InvalidCredentials, p, rng),
            Err(e) => return Err(e),
        };
        if self.authenticated {
            return Ok(self.verdict(StatusCode::Ok, None, None));
        }
        // First acceptance: fix the type and issue the nonce for what follows.
        self.authenticated = true;
        self.session_type = Some(used);
        self.refusals = 0;
        let chal = if used.uses_nonce() {
            let fresh = Nonce::generate(rng)?;
            self.session_nonce = Some(std::mem::replace(&mut self.nonce, fresh));
            Some(challenge(used, &self.nonce))
        } else {
            None
        };
        Ok(self.verdict(StatusCode::AuthenticationAccepted, chal, None))
    }

    /// Refuses the message: the session is no longer authenticated, a fresh nonce is
    /// issued in a challenge of the session's type (or the required one).
    fn refuse(
        &mut self,
        status: StatusCode,
        problem: AuthProblem,
        rng: &mut dyn NonceSource,
    ) -> Result<Verdict> {
        self.authenticated = false;
        self.session_nonce = None;
        self.refusals += 1;
        self.nonce = Nonce::generate(rng)?;
        let t = self.session_type.unwrap_or(self.required);
        let chal = challenge(t, &self.nonce);
        Ok(self.verdict(status, Some(chal), Some(problem)))
    }

    fn verdict(
        &self,
        status: StatusCode,
        chal: Option<Chal>,
        problem: Option<AuthProblem>,
    ) -> Verdict {
        Verdict {
            status,
            chal,
            give_up: problem.is_some() && self.refusals >= self.max_refusals,
            problem,
        }
    }
}

/// What a [`Prover`] makes of the Status for its SyncHdr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProverStep {
    /// 200: carry on, sending the same kind of credentials with the next message.
    Continue,
    /// 212: authenticated for the rest of the session.
    Authenticated,
    /// 401 or 407: resend the first package with new credentials (to RespURI if
    /// one was given).
    Retry,
    /// Refused too often, or the header failed for another reason: end the session.
    GiveUp,
}

/// The side that supplies credentials, for one session with one account.
///
/// Create one per session with the nonce stored for the account; after the session,
/// store [`Prover::next_nonce`] if the peer authenticated itself (a nonce from an
/// unauthenticated peer should be used, but not stored: DM security 5.1.3.4).
#[derive(Clone)]
pub struct Prover {
    password: String,
    key: UserKey,
    auth_type: AuthType,
    nonce: Nonce,
    session_authenticated: bool,
    type_fixed: bool,
    retries: u32,
    max_retries: u32,
}

impl Prover {
    /// Retries after which [`ProverStep::GiveUp`] is returned.
    pub const DEFAULT_MAX_RETRIES: u32 = 3;

    /// A prover for `user` / `password`, starting with `auth_type` and the stored nonce.
    pub fn new(user: &str, password: &str, auth_type: AuthType, stored_nonce: Nonce) -> Prover {
        Prover {
            password: password.to_owned(),
            key: UserKey::new(user, password),
            auth_type,
            nonce: stored_nonce,
            session_authenticated: false,
            type_fixed: false,
            retries: 0,
            max_retries: Self::DEFAULT_MAX_RETRIES,
        }
    }

    /// The user name (to put in SyncHdr Source/LocName with MD5).
    pub fn user(&self) -> &str {
        self.key.name()
    }

    /// The type in use.
    pub fn auth_type(&self) -> AuthType {
        self.auth_type
    }

    /// The nonce the next credentials use.
    pub fn next_nonce(&self) -> &Nonce {
        &self.nonce
    }

    /// Whether 212 was received in this session.
    pub fn is_authenticated(&self) -> bool {
        self.session_authenticated
    }

    /// The Cred for the next message's SyncHdr: none for HMAC, none once the session
    /// is authenticated.
    pub fn cred(&self) -> Option<Cred> {
        if self.session_authenticated {
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
    pub fn on_header_status(&mut self, status: &Status) -> Result<ProverStep> {
        let chal = status.chal.as_ref().map(read_challenge).transpose()?;
        match status.data {
            StatusCode::AuthenticationAccepted | StatusCode::Ok => {
                if let Some((t, nonce)) = chal {
                    if t != self.auth_type {
                        return Err(self.type_change(t));
                    }
                    self.nonce = nonce.unwrap_or_else(|| self.nonce.clone());
                }
                self.type_fixed = true;
                self.retries = 0;
                if status.data == StatusCode::AuthenticationAccepted {
                    self.session_authenticated = true;
                    Ok(ProverStep::Authenticated)
                } else {
                    Ok(ProverStep::Continue)
                }
            }
            StatusCode::InvalidCredentials | StatusCode::MissingCredentials => {
                self.session_authenticated = false;
                self.retries += 1;
                if let Some((t, nonce)) = chal {
                    if self.type_fixed && t != self.auth_type {
                        return Err(self.type_change(t));
                    }
                    self.auth_type = t;
                    if let Some(n) = nonce {
                        self.nonce = n;
                    }
                }
                if self.retries > self.max_retries {
                    Ok(ProverStep::GiveUp)
                } else {
                    Ok(ProverStep::Retry)
                }
            }
            _ => Ok(ProverStep::GiveUp),
        }
    }

    fn type_change(&self, requested: AuthType) -> Error {
        Error::Auth(AuthProblem::TypeChange {
            current: self.auth_type.meta_type(),
            requested: requested.meta_type(),
        })
    }
}

impl std::fmt::Debug for Prover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prover")
            .field("user", &self.key.name())
            .field("auth_type", &self.auth_type)
            .field("nonce", &self.nonce)
            .field("session_authenticated", &self.session_authenticated)
            .finish_non_exhaustive()
    }
}

/// The type and nonce of a Chal. MD5 and HMAC challenges must carry a NextNonce.
fn read_challenge(chal: &Chal) -> Result<(AuthType, Option<Nonce>)> {
    let t = match chal.meta.type_.as_deref() {
        None => AuthType::Basic,
        Some(s) => AuthType::from_meta_type(s)
            .ok_or_else(|| Error::Auth(AuthProblem::UnsupportedType(s.to_owned())))?,
    };
    let nonce = chal
        .meta
        .next_nonce
        .as_deref()
        .map(Nonce::from_b64)
        .transpose()?;
    if t.uses_nonce() && nonce.is_none() {
        return Err(Error::Auth(AuthProblem::NoNonce(t.meta_type())));
    }
    Ok((t, nonce))
}
