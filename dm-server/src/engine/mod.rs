//! The sans-IO server session engine.
//!
//! One DM message in, one reply out: [`Server::handle_dm`] decodes the message,
//! loads the session and the device from the store, runs the protocol, writes
//! everything the message changed in one store commit, and only then returns the
//! reply. Nothing is kept in memory between messages, so the next message of the
//! session may reach another server process sharing the store.
//!
//! No sockets here: the HTTP layer (or a test) passes the body, the content type, the
//! `x-syncml-hmac` header and the session token of the request URL.

mod state;
mod turn;

use std::sync::Arc;

use sha2::{Digest, Sha256};
use syncml_core::auth::{AuthType, Incoming, Nonce, OsRandom, Verifier};
use syncml_core::{
    decode_with, encode, Command, Encoding, Limits, MessageBuilder, StatusCode, SyncMl,
};

use self::state::{EngineState, LastReply};
use self::turn::{Reads, Turn};
use crate::config::Registration;
use crate::events::Bus;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::{Device, EndSession, Millis, SessionRecord, SessionStatus, Store, StoreError};
use crate::Config;

pub use self::turn::command_json;

/// A request refused before any session work: the HTTP status and the log note.
struct Refusal {
    status: u16,
    note: String,
}

impl Refusal {
    fn new(status: u16, note: String) -> Refusal {
        Refusal { status, note }
    }

    fn store(e: StoreError) -> Refusal {
        if let StoreError::Conflict(what) = e {
            // Two messages of one session at once: the later commit lost, nothing of
            // it was applied; the device may send it again.
            return Refusal::new(409, what);
        }
        tracing::error!(error = %e, "store failure");
        Refusal::new(503, format!("store unavailable: {e}"))
    }
}

/// The media type to answer with: the one the device used (DM or DS), else the DM
/// type of the encoding.
fn media_type(requested: Option<&str>, enc: Encoding) -> String {
    let essence = requested
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim().to_ascii_lowercase())
        .unwrap_or_default();
    match essence.as_str() {
        "application/vnd.syncml.dm+xml"
        | "application/vnd.syncml.dm+wbxml"
        | "application/vnd.syncml+xml"
        | "application/vnd.syncml+wbxml" => essence,
        _ => enc.media_type().to_owned(),
    }
}

fn has_alert(msg: &SyncMl, code: u16) -> bool {
    msg.body
        .commands
        .iter()
        .any(|c| matches!(c, Command::Alert(a) if a.data.map(u16::from) == Some(code)))
}

/// The first message of a session carries Alert 1200 or 1201.
fn is_package1(msg: &SyncMl) -> bool {
    has_alert(msg, 1200) || has_alert(msg, 1201)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A device registering itself on first contact (open registration): no
/// credentials, a fresh nonce.
fn new_device(id: &str, now: Millis) -> Result<Device, String> {
    let nonce = Nonce::generate(&mut OsRandom).map_err(|e| e.to_string())?;
    Ok(Device {
        id: id.to_owned(),
        auth: None,
        nonce: nonce.to_b64(),
        server_auth: None,
        server_nonce: String::new(),
        tags: Vec::new(),
        notify_addr: None,
        inventory: Default::default(),
        registered_by: "first-contact".into(),
        created_at: now,
        last_seen: None,
        last_session: None,
    })
}

/// Whether an authenticated message changed something a firmware job waits on.
fn authenticated_activity(turn: &Turn) -> bool {
    turn.st.authenticated && (turn.answered_now > 0 || turn.ended().is_some() || turn.reported())
}

/// One POSTed DM message.
#[derive(Debug, Clone, Default)]
pub struct DmRequest {
    pub body: Vec<u8>,
    /// The Content-Type header.
    pub content_type: Option<String>,
    /// The `x-syncml-hmac` header.
    pub hmac: Option<String>,
    /// The session token of the URL (`/dm/s/<token>`, the RespURI the server gave).
    pub token: Option<String>,
    /// The client's address, for the rate limit and the logs.
    pub remote_addr: Option<String>,
}

/// The reply to send.
#[derive(Debug, Clone, Default)]
pub struct DmResponse {
    /// The HTTP status: 200 with a SyncML body, or 4xx/5xx with none.
    pub status: u16,
    pub content_type: Option<String>,
    /// The `x-syncml-hmac` header (the server's HMAC credentials).
    pub hmac: Option<String>,
    pub body: Vec<u8>,
    /// For the log line: the device and session the message belonged to.
    pub device: Option<String>,
    pub session: Option<String>,
    /// For the log line: what happened (`package 2 sent`, `bad credentials`...).
    pub note: String,
    /// The message answered commands, brought reports or ended the session: work
    /// waiting on the device (a firmware job) may move on.
    pub activity: bool,
}

/// The DM side of the server: configuration, store, metrics, rate limits.
pub struct Server {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    /// Server events: device reports and workflow steps, for streams and webhooks.
    pub events: Arc<Bus>,
    pub(crate) limiter: RateLimiter,
    /// Wakes the campaign scheduler before its next tick (a campaign's job ended).
    pub campaign_nudge: tokio::sync::Notify,
    /// The URL the HTTP layer actually listens on (port 0 resolved), used for
    /// RespURI when no `public_url` is configured.
    bound_url: std::sync::OnceLock<String>,
    /// Where sessions are recorded (`record_dir`), if anywhere.
    pub recordings: Option<Arc<crate::record::Recordings>>,
}

impl Server {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Server {
        let limiter = RateLimiter::new(
            config.max_auth_failures,
            (config.auth_failure_window_secs * 1000) as Millis,
        );
        let metrics = Arc::new(Metrics::default());
        let events = Arc::new(Bus::new(
            Arc::clone(&store),
            Arc::clone(&metrics),
            config.max_event_streams,
        ));
        let recordings = config.record_dir.as_deref().map(|d| {
            let idle = std::time::Duration::from_secs(config.session_timeout_secs.max(60) * 2);
            Arc::new(crate::record::Recordings::new(d, idle))
        });
        Server {
            store,
            config: Arc::new(config),
            metrics,
            events,
            limiter,
            campaign_nudge: tokio::sync::Notify::new(),
            bound_url: std::sync::OnceLock::new(),
            recordings,
        }
    }

    /// Tells the engine the address the server really listens on.
    pub fn set_bound_url(&self, url: String) {
        let _ = self.bound_url.set(url.trim_end_matches('/').to_owned());
    }

    /// The base URL of RespURI: `public_url`, else the bound address.
    pub fn base_url(&self) -> String {
        match (&self.config.public_url, self.bound_url.get()) {
            (None, Some(bound)) => bound.clone(),
            _ => self.config.base_url(),
        }
    }

    /// Handles one DM message.
    pub fn handle_dm(&self, req: &DmRequest, now: Millis) -> DmResponse {
        let t0 = std::time::Instant::now();
        Metrics::inc(&self.metrics.dm_messages);
        let resp = match self.dispatch(req, now) {
            Ok(r) => r,
            Err(Refusal { status, note }) => {
                if status < 500 {
                    Metrics::inc(&self.metrics.dm_bad_requests);
                }
                DmResponse {
                    status,
                    note,
                    ..DmResponse::default()
                }
            }
        };
        self.metrics.dm_micros.fetch_add(
            t0.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        resp
    }

    fn dispatch(&self, req: &DmRequest, now: Millis) -> Result<DmResponse, Refusal> {
        let cfg = &self.config;
        if req.body.len() > cfg.max_message_size {
            return Err(Refusal::new(
                413,
                format!("{} bytes: over the limit", req.body.len()),
            ));
        }
        let enc = match req.content_type.as_deref() {
            Some(ct) => Encoding::from_media_type(ct)
                .map_err(|_| Refusal::new(415, format!("media type {ct:?}")))?,
            None => Encoding::detect(&req.body)
                .map_err(|e| Refusal::new(400, format!("no media type, and {e}")))?,
        };
        let limits = Limits {
            max_message_size: cfg.max_message_size,
            ..Limits::DEFAULT
        };
        let msg = decode_with(&req.body, Some(enc), &limits)
            .map_err(|e| Refusal::new(400, format!("undecodable message: {e}")))?;
        let device_id = msg.hdr.source.loc_uri.trim().to_owned();
        if device_id.is_empty() {
            return Err(Refusal::new(400, "no Source LocURI in the header".into()));
        }
        let media_type = media_type(req.content_type.as_deref(), enc);
        if msg.version().is_none() {
            // A header we can answer, in a version we do not speak (505).
            let mut b = MessageBuilder::reply_to(&msg.hdr, 1);
            b.status_for_header(StatusCode::DtdVersionNotSupported);
            let reply = b.finish();
            return self.respond(
                reply,
                enc,
                &media_type,
                None,
                &device_id,
                None,
                "DTD version not supported",
            );
        }
        let addr = req.remote_addr.as_deref();
        if self.limiter.blocked(&device_id, addr, now) {
            Metrics::inc(&self.metrics.rate_limited);
            return Err(Refusal::new(
                429,
                format!("too many failed logins ({device_id})"),
            ));
        }

        // The session: by the token of the RespURI, else by device and SessionID.
        let store = &*self.store;
        let existing = match &req.token {
            Some(t) => match store.session(t).map_err(Refusal::store)? {
                Some(s)
                    if s.status == SessionStatus::Active
                        && s.device_id == device_id
                        && s.session_id == msg.hdr.session_id =>
                {
                    Some(s)
                }
                _ => return Err(Refusal::new(404, "unknown or ended session".into())),
            },
            None => store
                .active_session(&device_id, &msg.hdr.session_id)
                .map_err(Refusal::store)?,
        };
        let digest = state::b64(&Sha256::digest(&req.body));
        // The active session a restarted device's package 1 replaces (its token).
        let mut superseded = None;
        let (rec, st) = match existing {
            Some(rec) => {
                let st: EngineState = serde_json::from_str(&rec.engine)
                    .map_err(|e| Refusal::new(500, format!("stored session state: {e}")))?;
                if msg.hdr.msg_id <= st.last_in && st.last_reply.request == digest {
                    // The device lost our reply and sent the same message again.
                    return Ok(DmResponse {
                        status: 200,
                        content_type: Some(st.last_reply.content_type.clone()),
                        hmac: st.last_reply.hmac.clone(),
                        body: state::unb64(&st.last_reply.body),
                        device: Some(device_id),
                        session: Some(rec.token),
                        note: "repeated message: the same reply again".into(),
                        activity: false,
                    });
                }
                if req.token.is_none() && msg.hdr.msg_id == 1 && is_package1(&msg) {
                    // Not a repeat, yet the first message of a session: the device
                    // restarted and reuses its SessionID (a counter from boot, the id
                    // of a notification). A new session; the old one ends with its
                    // first message's commit, if that message authenticates.
                    superseded = Some(rec.token);
                    self.open_session(&msg, req, &device_id, &media_type, now)?
                } else if msg.hdr.msg_id <= st.last_in {
                    return Err(Refusal::new(
                        400,
                        format!("replayed MsgID {} (last {})", msg.hdr.msg_id, st.last_in),
                    ));
                } else {
                    (rec, st)
                }
            }
            None => {
                if !is_package1(&msg) {
                    return Err(Refusal::new(404, "unknown session".into()));
                }
                self.open_session(&msg, req, &device_id, &media_type, now)?
            }
        };
        let is_new = rec.messages == 0;
        let was_authenticated = st.authenticated;
        let mut st = st;
        if req.token.is_none() && was_authenticated {
            // Only the RespURI token, unguessable, ties a message to an
            // authenticated session; without it the device must prove itself again
            // (else anyone knowing a DevId and SessionID could speak in its name).
            if let Some(v) = st.verifier.as_mut() {
                v.authenticated = false;
            }
        }

        // The device: registered, registered now, or refused like a wrong password.
        let (device, register) = match store.device(&device_id).map_err(Refusal::store)? {
            Some(d) => (d, None),
            None if cfg.registration == Registration::Open => {
                let d = new_device(&device_id, now).map_err(|e| Refusal::new(500, e))?;
                (d.clone(), Some(d))
            }
            None => {
                let hmac = req.hmac.as_deref();
                return self.refuse_unknown(&msg, hmac, enc, &media_type, &device_id, addr, now);
            }
        };

        let token = rec.token.clone();
        // The reply to the previous message went out at its commit: the time since
        // is the device's round trip (network and its own handling).
        let rtt_ms = (!is_new).then(|| (now - rec.updated_at).max(0));
        let mut turn = Turn::new(cfg, now, device, st, rec, enc);
        turn.base_url = self.base_url();
        let mut pending = |n: usize| {
            store
                .pending_commands(&device_id, n)
                .map_err(|e| e.to_string())
        };
        let mut command = |id: i64| store.command(id).map_err(|e| e.to_string());
        let mut chunks = || store.session_chunks(&token).map_err(|e| e.to_string());
        let mut reads = Reads {
            pending: &mut pending,
            command: &mut command,
            chunks: &mut chunks,
        };
        let reply = turn
            .run(&msg, &req.body, req.hmac.as_deref(), &mut reads)
            .map_err(|e| Refusal::new(500, e))?;
        let body = encode(&reply, enc).map_err(|e| Refusal::new(500, e.to_string()))?;
        let hmac = turn.reply_hmac(&body);
        if let Some(why) = &turn.auth_failed {
            Metrics::inc(&self.metrics.auth_failures);
            // A device's first refusal in a session is usually only a nonce it
            // could not know yet (its first contact, a lost reply): the address
            // is charged from the second on, so many devices behind one NAT or
            // one load generator are not locked out by their first challenges.
            let refusals = turn.st.verifier.as_ref().map_or(0, |v| v.refusals);
            self.limiter.fail(&device_id, addr, refusals > 1, now);
            tracing::warn!(device = %device_id, remote = ?req.remote_addr, reason = %why, "device authentication failed");
        } else {
            self.limiter.succeeded(&device_id, addr);
        }
        turn.st.last_reply = LastReply {
            request: digest,
            content_type: media_type.clone(),
            hmac: hmac.clone(),
            body: state::b64(&body),
        };
        let ended = turn.ended();
        let activity = authenticated_activity(&turn);
        let (sent, answered) = (turn.sent_now, turn.answered_now);
        let authenticated = turn.st.authenticated;
        let mut commit = turn.into_commit().map_err(|e| Refusal::new(500, e))?;
        let mut stored = true;
        commit.register = register.clone();
        if let Some(d) = commit.device.as_mut() {
            d.rtt_ms = rtt_ms;
            d.factory = crate::firmware::matrix::versions_among(
                &self.config,
                d.inventory.iter().map(|(n, v)| (n, v)),
            );
        }
        if is_new && authenticated && has_alert(&msg, 1200) {
            if let Ok(sid) = u16::from_str_radix(msg.hdr.session_id.trim(), 16) {
                commit.answered_notification = Some((device_id.clone(), sid));
            }
        }
        if !authenticated {
            // An unauthenticated message changes nothing about the device but the
            // nonce its challenge carries.
            if let Some(d) = commit.device.as_mut() {
                d.inventory.clear();
                d.last_seen = None;
                d.last_session = None;
                d.rtt_ms = None;
                d.factory.clear();
            }
            commit.events.clear();
            commit.commands.clear();
            commit.register = None;
            if superseded.is_some()
                && commit
                    .session
                    .as_ref()
                    .is_some_and(|s| s.status == SessionStatus::Active)
            {
                // Until the device proves itself the old session keeps its
                // (device, SessionID), so a forger cannot end it: the new one is not
                // stored, only the challenge's nonce. A device resending package 1
                // with MsgID 1 and that nonce gets in; one that resends it with
                // MsgID 2 meets the old session (refused, or expired by then).
                commit.session = None;
                stored = false;
            }
        } else if let (Some(old), Some(d)) = (&superseded, commit.device.as_mut()) {
            d.end_session = Some(EndSession {
                token: old.clone(),
                error: "superseded by a new session of the device".into(),
                max_attempts: cfg.max_attempts,
                at: now,
            });
        }
        if was_authenticated && !authenticated {
            // A refused message in an authenticated session (a forgery, or a
            // device's failing HMAC) changes nothing: not its MsgID, not the nonce,
            // not the refusal count that would end the session.
        } else {
            store.commit(&commit).map_err(Refusal::store)?;
            self.events.publish_reports(&commit.events);
        }

        let m = &self.metrics;
        if authenticated && !was_authenticated {
            // A session counts as started once the device is in (after any
            // challenge).
            Metrics::inc(&m.sessions_started);
        }
        if register.is_some() && authenticated {
            Metrics::inc(&m.devices_registered);
        }
        m.commands_sent
            .fetch_add(sent as u64, std::sync::atomic::Ordering::Relaxed);
        m.commands_answered
            .fetch_add(answered as u64, std::sync::atomic::Ordering::Relaxed);
        if superseded.is_some() && authenticated {
            Metrics::inc(&m.sessions_aborted);
        }
        let note = match ended {
            Some(SessionStatus::Completed) => {
                Metrics::inc(&m.sessions_completed);
                "session completed".to_owned()
            }
            Some(SessionStatus::Aborted) => {
                Metrics::inc(&m.sessions_aborted);
                "session aborted".to_owned()
            }
            Some(SessionStatus::Refused) => {
                Metrics::inc(&m.sessions_refused);
                "session refused".to_owned()
            }
            _ if !authenticated => "credentials refused, challenged".to_owned(),
            _ => format!("message {} answered ({sent} commands sent)", msg.hdr.msg_id),
        };
        Ok(DmResponse {
            status: 200,
            content_type: Some(media_type),
            hmac,
            body,
            device: Some(device_id),
            session: stored.then_some(token),
            note,
            activity: activity && stored,
        })
    }

    /// A new session that `msg`, a package 1, opens (stored by its first commit).
    fn open_session(
        &self,
        msg: &SyncMl,
        req: &DmRequest,
        device_id: &str,
        media_type: &str,
        now: Millis,
    ) -> Result<(SessionRecord, EngineState), Refusal> {
        let token = Nonce::generate(&mut OsRandom)
            .map(|n| hex(n.as_bytes()))
            .map_err(|e| Refusal::new(500, e.to_string()))?;
        let rec = SessionRecord {
            token,
            device_id: device_id.to_owned(),
            session_id: msg.hdr.session_id.clone(),
            initiator: if has_alert(msg, 1200) {
                "server"
            } else {
                "client"
            }
            .into(),
            status: SessionStatus::Active,
            messages: 0,
            commands_sent: 0,
            error: None,
            remote_addr: req.remote_addr.clone(),
            started_at: now,
            updated_at: now,
            ended_at: None,
            engine: String::new(),
        };
        // Our MsgIDs follow the device's: a device resending package 1 after a
        // refusal the server did not keep (an unknown id, an ended session) never
        // sees a MsgID twice.
        let mut st = EngineState::new(msg, media_type);
        st.last_out = msg.hdr.msg_id.saturating_sub(1);
        Ok((rec, st))
    }

    /// A device that is not registered gets what a wrong password gets: 401 with a
    /// fresh challenge, and nothing is stored.
    #[allow(clippy::too_many_arguments)]
    fn refuse_unknown(
        &self,
        msg: &SyncMl,
        hmac: Option<&str>,
        enc: Encoding,
        media_type: &str,
        device_id: &str,
        addr: Option<&str>,
        now: Millis,
    ) -> Result<DmResponse, Refusal> {
        let incoming = Incoming::new(&msg.hdr, hmac, &[]);
        let offered = match incoming.hmac {
            Some(_) => Some(AuthType::Hmac),
            None => incoming
                .cred
                .and_then(|c| c.meta.as_deref())
                .and_then(|m| m.type_.as_deref())
                .and_then(AuthType::from_meta_type),
        };
        let t = offered.unwrap_or(AuthType::Md5).max(AuthType::Md5);
        let mut v = Verifier::refuse_unknown_user(t, device_id, &mut OsRandom)
            .map_err(|e| Refusal::new(500, e.to_string()))?;
        if msg.hdr.cred.is_none() && hmac.is_none() {
            // What a registered device sending no credentials gets.
            v.status = StatusCode::MissingCredentials;
        }
        let mut b = MessageBuilder::reply_to(&msg.hdr, msg.hdr.msg_id);
        for c in &msg.body.commands {
            if !matches!(c, Command::Status(_) | Command::Results(_)) {
                b.status_for(c, v.status);
            }
        }
        b.status_for_header_with(v.status, v.chal);
        Metrics::inc(&self.metrics.auth_failures);
        self.limiter.fail(device_id, addr, true, now);
        tracing::warn!(device = %device_id, "unknown device refused");
        self.respond(
            b.finish(),
            enc,
            media_type,
            None,
            device_id,
            None,
            "credentials refused, challenged",
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn respond(
        &self,
        reply: SyncMl,
        enc: Encoding,
        media_type: &str,
        hmac: Option<String>,
        device_id: &str,
        session: Option<String>,
        note: &str,
    ) -> Result<DmResponse, Refusal> {
        let body = encode(&reply, enc).map_err(|e| Refusal::new(500, e.to_string()))?;
        Ok(DmResponse {
            status: 200,
            content_type: Some(media_type.to_owned()),
            hmac,
            body,
            device: Some(device_id.to_owned()),
            session,
            note: note.to_owned(),
            activity: false,
        })
    }

    /// Ends sessions idle longer than the timeout. Returns how many.
    pub fn expire_idle(&self, now: Millis) -> usize {
        let idle = (self.config.session_timeout_secs * 1000) as Millis;
        match self
            .store
            .expire_sessions(now - idle, self.config.max_attempts, now)
        {
            Ok(t) => {
                for _ in &t {
                    Metrics::inc(&self.metrics.sessions_expired);
                }
                t.len()
            }
            Err(e) => {
                tracing::warn!(error = %e, "expiring idle sessions failed");
                0
            }
        }
    }
}
