//! Recorded sessions (`dm-server serve --record DIR`): every DM session the server
//! takes part in is written to a folder of DIR in the recorded-session format
//! (`fixtures/sessions/README.md`, [`syncml_core::transcript`]).
//!
//! One folder per DM session, named `<device id>-<first 8 characters of the session
//! token>`, created at the session's first message. Every request and its reply go
//! in as they are exchanged, a reply without a body (404, 429...) by its HTTP status
//! only. A session that a notification started gets that package #0 as its first
//! message (read back from the store, where the server keeps what it sent). Messages
//! the server answers before any session exists (an unknown device's challenge) go
//! to a folder named by the device and its SessionID, which the session then
//! continues when the device gets in.
//!
//! Requests refused before they reach the DM engine (a wrong media type, a body over
//! the size limit) are not recorded: they have no device to file them under.
//!
//! Recording never breaks a session: a failure is logged and the message is left
//! out of the recording.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use syncml_core::notify::Package0;
use syncml_core::transcript::{Recorder, Side};
use syncml_core::{decode_with, Command, Encoding, Limits, SyncMl};

use crate::engine::{DmRequest, DmResponse, Server};
use crate::store::{Device, Millis};

/// What `recorded_by` says.
const RECORDED_BY: &str = concat!("dm-server ", env!("CARGO_PKG_VERSION"));

/// The open recordings of one server.
pub struct Recordings {
    dir: PathBuf,
    /// A recording no message reached for this long is closed (its folder stays).
    idle: Duration,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    /// By session token.
    sessions: HashMap<String, Arc<Mutex<Folder>>>,
    /// By device id: messages answered outside any stored session.
    pending: HashMap<String, Arc<Mutex<Folder>>>,
}

struct Folder {
    rec: Recorder,
    last: Instant,
}

/// What is known of a request before the engine handles it.
struct Before {
    msg: Option<SyncMl>,
    /// The request's encoding (its media type, else its first bytes).
    encoding: Option<Encoding>,
    device: Option<Device>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while recording leaves data that is still usable (at worst a message
    // short): carry on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Recordings {
    /// Recordings into `dir` (created when the first session is recorded); a session
    /// quiet for `idle` is closed.
    pub fn new(dir: &Path, idle: Duration) -> Recordings {
        Recordings {
            dir: dir.to_path_buf(),
            idle,
            open: Mutex::new(Open::default()),
        }
    }

    /// The folder recordings go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Records one request and its reply. Never fails: problems are logged.
    fn exchange(&self, server: &Server, req: &DmRequest, before: Before, resp: &DmResponse) {
        let device = resp
            .device
            .clone()
            .or_else(|| {
                before
                    .msg
                    .as_ref()
                    .map(|m| m.hdr.source.loc_uri.trim().to_owned())
            })
            .filter(|d| !d.is_empty());
        let folder = match self.folder(server, req, &before, device.as_deref(), resp) {
            Ok(Some(f)) => f,
            Ok(None) => {
                tracing::debug!(note = %resp.note, "recording: a message of no device or session, not recorded");
                return;
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), error = %e, "recording: cannot open the session folder");
                return;
            }
        };
        let mut f = lock(&folder);
        f.last = Instant::now();
        let res = f
            .rec
            .message(
                Side::Client,
                1,
                Some(&req.body),
                req.content_type.as_deref(),
                req.hmac.as_deref(),
                None,
            )
            .and_then(|()| {
                let body = (!resp.body.is_empty()).then_some(resp.body.as_slice());
                f.rec.message(
                    Side::Server,
                    1,
                    body,
                    resp.content_type.as_deref(),
                    resp.hmac.as_deref(),
                    Some(resp.status),
                )
            });
        if let Err(e) = res {
            tracing::warn!(folder = %f.rec.dir().display(), error = %e, "recording: a message could not be written");
        }
    }

    /// The folder of a message: its session's, else the device's pending one; made
    /// when there is none.
    fn folder(
        &self,
        server: &Server,
        req: &DmRequest,
        before: &Before,
        device: Option<&str>,
        resp: &DmResponse,
    ) -> Result<Option<Arc<Mutex<Folder>>>, syncml_core::transcript::TranscriptError> {
        let mut open = lock(&self.open);
        let idle = self.idle;
        open.sessions.retain(|_, f| lock(f).last.elapsed() < idle);
        open.pending.retain(|_, f| lock(f).last.elapsed() < idle);

        let token = resp.session.as_deref().or(req.token.as_deref());
        if let Some(t) = token {
            if let Some(f) = open.sessions.get(t) {
                return Ok(Some(Arc::clone(f)));
            }
        }
        let Some(device) = device else {
            return Ok(None);
        };
        match resp.session.as_deref() {
            // A stored session: the device's pending folder becomes its folder.
            Some(t) => {
                let f = match open.pending.remove(device) {
                    Some(f) => f,
                    None => Arc::new(Mutex::new(self.create(
                        server,
                        before,
                        device,
                        &short(t),
                    )?)),
                };
                open.sessions.insert(t.to_owned(), Arc::clone(&f));
                Ok(Some(f))
            }
            None => {
                if let Some(f) = open.pending.get(device) {
                    return Ok(Some(Arc::clone(f)));
                }
                let sid = before
                    .msg
                    .as_ref()
                    .map(|m| format!("s{}", m.hdr.session_id.trim()))
                    .unwrap_or_else(|| "s".into());
                let f = Arc::new(Mutex::new(self.create(server, before, device, &sid)?));
                open.pending.insert(device.to_owned(), Arc::clone(&f));
                Ok(Some(f))
            }
        }
    }

    /// A new session folder with `[device]` filled and, for a session a notification
    /// asked for, that package #0 as its first message.
    fn create(
        &self,
        server: &Server,
        before: &Before,
        device_id: &str,
        suffix: &str,
    ) -> Result<Folder, syncml_core::transcript::TranscriptError> {
        let mut rec = Recorder::create(&self.dir, &format!("{device_id}-{suffix}"), RECORDED_BY)?;
        let cfg = &server.config;
        let p = rec.profile_mut();
        p.id = device_id.to_owned();
        p.server_id = cfg.server_id.clone();
        p.encoding = match before.encoding {
            Some(Encoding::Wbxml) => "wbxml",
            _ => "xml",
        }
        .into();
        match &before.device {
            Some(d) => {
                match &d.auth {
                    Some(a) => {
                        p.user = a.username.clone();
                        p.auth = a.auth_type.clone();
                    }
                    None => {
                        p.user = device_id.to_owned();
                        p.auth = "none".into();
                    }
                }
                p.client_nonce = d.nonce.clone();
                p.server_nonce = d.server_nonce.clone();
                if let Some(s) = &d.server_auth {
                    p.server_password = s.password.clone();
                    if s.auth_type != "md5" {
                        p.extra.insert("server_auth".into(), s.auth_type.clone());
                    }
                }
            }
            None => p.user = device_id.to_owned(),
        }
        rec.save()?;
        if let Some(msg) = &before.msg {
            if let Some(n) = notification_of(server, device_id, msg) {
                rec.notification(1, &n)?;
            }
        }
        Ok(Folder {
            rec,
            last: Instant::now(),
        })
    }
}

/// The package #0 a package 1 answers (Alert 1200, SessionID the notification's id
/// in hex), from the notifications the store keeps for the device.
fn notification_of(
    server: &Server,
    device_id: &str,
    msg: &SyncMl,
) -> Option<syncml_core::notify::Notification> {
    let server_initiated = msg
        .body
        .commands
        .iter()
        .any(|c| matches!(c, Command::Alert(a) if a.data.map(u16::from) == Some(1200)));
    if !server_initiated {
        return None;
    }
    let sid = u16::from_str_radix(msg.hdr.session_id.trim(), 16).ok()?;
    let stored = match server.store.notifications(device_id, 50) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(device = %device_id, error = %e, "recording: reading the device's notifications failed");
            return None;
        }
    };
    let n = stored
        .iter()
        .filter(|n| n.session_id == sid)
        .max_by_key(|n| n.created_at)?;
    Package0::parse(&n.package).ok().map(|p| p.notification)
}

fn short(token: &str) -> String {
    token.chars().take(8).collect()
}

/// Handles a DM message, recording it and its reply when the server records
/// sessions (the hook of the HTTP layer).
pub fn handle_dm(server: &Server, req: &DmRequest, now: Millis) -> DmResponse {
    let Some(rec) = server.recordings.as_deref() else {
        return server.handle_dm(req, now);
    };
    let before = before(server, req, rec);
    let resp = server.handle_dm(req, now);
    rec.exchange(server, req, before, &resp);
    resp
}

/// The request decoded, and the device as stored before the message changes it (the
/// nonces its first credentials use), when a new folder may be needed.
fn before(server: &Server, req: &DmRequest, rec: &Recordings) -> Before {
    let limits = Limits {
        max_message_size: server.config.max_message_size,
        ..Limits::DEFAULT
    };
    let enc = req
        .content_type
        .as_deref()
        .and_then(|c| Encoding::from_media_type(c).ok())
        .or_else(|| Encoding::detect(&req.body).ok());
    let msg = decode_with(&req.body, enc, &limits).ok();
    let known = req
        .token
        .as_deref()
        .is_some_and(|t| lock(&rec.open).sessions.contains_key(t));
    let device = match (&msg, known) {
        (Some(m), false) => server
            .store
            .device(m.hdr.source.loc_uri.trim())
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "recording: reading the device failed");
                None
            }),
        _ => None,
    };
    Before {
        msg,
        encoding: enc,
        device,
    }
}
