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

use std::sync::Arc;

use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::store::{Millis, Store};
use crate::Config;

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
}

/// The DM side of the server: configuration, store, metrics, rate limits.
pub struct Server {
    pub store: Arc<dyn Store>,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub(crate) limiter: RateLimiter,
}

impl Server {
    pub fn new(store: Arc<dyn Store>, config: Config) -> Server {
        let limiter = RateLimiter::new(
            config.max_auth_failures,
            (config.auth_failure_window_secs * 1000) as Millis,
        );
        Server {
            store,
            config: Arc::new(config),
            metrics: Arc::new(Metrics::default()),
            limiter,
        }
    }

    /// Handles one DM message.
    pub fn handle_dm(&self, req: &DmRequest, now: Millis) -> DmResponse {
        let _ = (req, now);
        DmResponse {
            status: 503,
            note: "not implemented yet".into(),
            ..DmResponse::default()
        }
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
