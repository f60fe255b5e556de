//! The side that demands credentials: a server checking a device, or a device
//! checking its server.
//!
//! Rules (DM 1.2 protocol 2.4, security 5.1.3, PROTOCOL.md section 5):
//! - a refusal (401 bad credentials, 407 none) carries a Chal with Type, Format b64
//!   and a fresh NextNonce;
//! - 212 authenticates the rest of the session; for MD5 and HMAC its Chal carries a
//!   fresh nonce, so every session uses a nonce issued for it alone;
//! - the authentication type is fixed for the whole session once accepted;
//! - HMAC covers every message, not only the first.

use super::cred::{cred_type, cred_user, verify_cred_nonces};
use super::{AuthType, HmacHeader, Nonce, NonceSource, UserKey};
use crate::{AuthProblem, Chal, Cred, Error, Meta, Result, StatusCode, SyncHdr};

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

    /// The user the message claims to come from, to look up the account before
    /// checking: the HMAC header's username, the name inside Basic Cred Data, or the
    /// LocName that goes with an MD5 Cred.
    pub fn claimed_user(&self) -> Option<String> {
        if let Some(h) = self.hmac {
            return HmacHeader::parse(h).ok().map(|h| h.username);
        }
        cred_user(self.cred?, self.loc_name)
    }
}

/// What a [`Verifier`] answers for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// 212 (accepted for the session), 200 (still authenticated), 401 or 407.
    pub status: StatusCode,
    /// The challenge to put in the Status for the SyncHdr.
    pub chal: Option<Chal>,
    /// The nonce this answer issues. Store it for the account *before* sending the
    /// answer: if the connection drops after, the old nonce must not stay valid.
    pub issued_nonce: Option<Nonce>,
    /// Why the credentials were refused, for the log.
    pub problem: Option<AuthProblem>,
    /// Too many refusals: answer this message, then end the session. Every later
    /// message of the session is refused too.
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

/// A challenge of type `t` carrying `nonce` in NextNonce (for Basic too, so that
/// every challenge has the same shape and the peer can use it for MD5 later).
pub fn challenge(t: AuthType, nonce: &Nonce) -> Chal {
    let mut meta = Meta::format_type(Some("b64"), Some(t.meta_type()));
    meta.next_nonce = Some(nonce.to_b64());
    Chal {
        meta: Box::new(meta),
    }
}

/// Everything a [`Verifier`] remembers between messages, as plain data, so that a
/// server that keeps nothing in memory between requests can store it with the
/// session and [`Verifier::resume`] from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierState {
    /// The nonce the peer must use now: the last one issued (or the stored one).
    pub nonce: Nonce,
    /// The nonce the session was authenticated with. A peer may keep using it for
    /// HMAC or a repeated Cred until it adopts the fresh one; refusing a replayed
    /// message (same MsgID) is the session engine's job.
    pub session_nonce: Option<Nonce>,
    /// Fixed by the first accepted credentials.
    pub session_type: Option<AuthType>,
    pub authenticated: bool,
    pub refusals: u32,
}

/// The side that demands credentials, for one session with one peer account.
///
/// Create one per session with the nonce stored for the account, and store every
/// [`Verdict::issued_nonce`] before answering.
#[derive(Debug, Clone)]
pub struct Verifier {
    required: AuthType,
    accept_stronger: bool,
    max_refusals: u32,
    double_b64_nonce: bool,
    key: UserKey,
    state: VerifierState,
}

impl Verifier {
    /// Refusals after which [`Verdict::give_up`] is set.
    pub const DEFAULT_MAX_REFUSALS: u32 = 3;

    /// A verifier demanding at least `required` (stronger types are accepted too:
    /// Basic < MD5 < HMAC) from the user of `key`, who holds `stored_nonce`.
    pub fn new(required: AuthType, key: UserKey, stored_nonce: Nonce) -> Verifier {
        let state = VerifierState {
            nonce: stored_nonce,
            session_nonce: None,
            session_type: None,
            authenticated: false,
            refusals: 0,
        };
        Verifier::resume(required, key, state)
    }

    /// A verifier continuing a session from its saved [`Verifier::state`]. Options
    /// (`only`, `max_refusals`, ...) are policy, not state: set them again.
    pub fn resume(required: AuthType, key: UserKey, state: VerifierState) -> Verifier {
        Verifier {
            required,
            accept_stronger: true,
            max_refusals: Self::DEFAULT_MAX_REFUSALS,
            double_b64_nonce: false,
            key,
            state,
        }
    }

    /// Accepts exactly the required type, not stronger ones.
    pub fn only(mut self) -> Verifier {
        self.accept_stronger = false;
        self
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

    /// The state to save between messages.
    pub fn state(&self) -> &VerifierState {
        &self.state
    }

    /// The type the session is authenticated with, if it is.
    pub fn authenticated(&self) -> Option<AuthType> {
        self.state.session_type.filter(|_| self.state.authenticated)
    }

    /// The nonce the peer must use next (the one to have stored for the account).
    pub fn next_nonce(&self) -> &Nonce {
        &self.state.nonce
    }

    /// The answer to a message from a user with no account: the same 401 and
    /// challenge a wrong password gets, so that names cannot be probed.
    pub fn refuse_unknown_user(
        required: AuthType,
        user: &str,
        rng: &mut dyn NonceSource,
    ) -> Result<Verdict> {
        let nonce = Nonce::generate(rng)?;
        Ok(Verdict {
            status: StatusCode::InvalidCredentials,
            chal: Some(challenge(required, &nonce)),
            issued_nonce: None,
            problem: Some(AuthProblem::UnknownUser(user.to_owned())),
            give_up: false,
        })
    }

    /// Checks the proof of one message. Errors only if no nonce can be generated.
    pub fn check(&mut self, msg: &Incoming<'_>, rng: &mut dyn NonceSource) -> Result<Verdict> {
        let offered = match (msg.hmac, msg.cred) {
            (Some(_), _) => Ok(AuthType::Hmac),
            (None, Some(c)) => cred_type(c),
            (None, None) => Err(Error::Auth(AuthProblem::Missing)),
        };
        // Refusals challenge with the session's type, else the stronger of the one
        // required and the one offered: never push a peer to a weaker scheme.
        let chal_type = match (self.state.session_type, &offered) {
            (Some(t), _) => t,
            (None, Ok(t)) if self.accept_stronger => self.required.max(*t),
            _ => self.required,
        };
        if self.state.refusals >= self.max_refusals {
            let p = AuthProblem::TooManyAttempts;
            return self.refuse(StatusCode::InvalidCredentials, p, chal_type, rng);
        }
        if msg.hmac.is_none() && msg.cred.is_none() {
            if self.state.authenticated && self.state.session_type != Some(AuthType::Hmac) {
                return Ok(self.verdict(StatusCode::Ok, None, None));
            }
            let p = AuthProblem::Missing;
            return self.refuse(StatusCode::MissingCredentials, p, chal_type, rng);
        }
        // The type is checked before the proof, so a weaker one is refused as such.
        let offered = offered.and_then(|t| match self.state.session_type {
            Some(s) if s != t => Err(Error::Auth(AuthProblem::TypeChange {
                current: s.meta_type(),
                requested: t.meta_type(),
            })),
            None if t < self.required || (t > self.required && !self.accept_stronger) => {
                Err(Error::Auth(AuthProblem::WrongType {
                    expected: self.required.meta_type(),
                    got: t.meta_type(),
                }))
            }
            _ => Ok(t),
        });
        let mut nonces = vec![self.state.nonce.clone()];
        if self.state.authenticated {
            nonces.extend(self.state.session_nonce.clone());
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
            Err(Error::Auth(p)) => {
                return self.refuse(StatusCode::InvalidCredentials, p, chal_type, rng)
            }
            Err(e) => return Err(e),
        };
        if self.state.authenticated {
            return Ok(self.verdict(StatusCode::Ok, None, None));
        }
        // First acceptance: fix the type and issue the nonce for what follows.
        self.state.authenticated = true;
        self.state.session_type = Some(used);
        if !used.uses_nonce() {
            return Ok(self.verdict(StatusCode::AuthenticationAccepted, None, None));
        }
        let fresh = Nonce::generate(rng)?;
        self.state.session_nonce = Some(std::mem::replace(&mut self.state.nonce, fresh));
        let chal = challenge(used, &self.state.nonce);
        Ok(self.verdict(StatusCode::AuthenticationAccepted, Some(chal), None))
    }

    /// Refuses the message: the session is no longer authenticated, and a fresh nonce
    /// is issued in a challenge of type `t`.
    fn refuse(
        &mut self,
        status: StatusCode,
        problem: AuthProblem,
        t: AuthType,
        rng: &mut dyn NonceSource,
    ) -> Result<Verdict> {
        let fresh = Nonce::generate(rng)?;
        self.state.authenticated = false;
        self.state.session_nonce = None;
        self.state.refusals += 1;
        self.state.nonce = fresh;
        let chal = challenge(t, &self.state.nonce);
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
            issued_nonce: chal.as_ref().map(|_| self.state.nonce.clone()),
            chal,
            give_up: problem.is_some() && self.state.refusals >= self.max_refusals,
            problem,
        }
    }
}
