//! The daemon: waits for notifications (UDP, HTTP long-poll) and polls the server
//! on a schedule, running a session for each.
//!
//! Listeners run on their own threads and hand raw package #0 bytes to the main
//! loop, which verifies them against the tree (a bad digest is dropped and
//! logged), filters replays, and runs the session the notification asks for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::notify::{self, LongPoll, ReplayFilter, UdpListener};
use crate::session::Trigger;

use super::{new_session_id, Device, DeviceError};

/// When the daemon stops.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Stop after this many sessions (tests, one-shot use).
    pub max_sessions: Option<usize>,
    /// Set from outside to stop at the next turn of the loop.
    pub stop: Arc<AtomicBool>,
}

/// The first and the longest wait before retrying a failed session that carried
/// reports.
const RETRY_FIRST: Duration = Duration::from_secs(30);
const RETRY_MAX: Duration = Duration::from_secs(3600);

/// How long a listener sleeps after an error before trying again.
const BACKOFF: Duration = Duration::from_secs(5);

/// Runs until stopped. Returns the number of sessions run.
pub fn run(device: &mut Device, limits: &Limits) -> Result<usize, DeviceError> {
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    if let Some(addr) = device.config.udp_listen.clone() {
        let udp = UdpListener::bind(addr.as_str())
            .map_err(|e| DeviceError::Config(format!("udp_listen {addr}: {e}")))?;
        tracing::info!(addr = %addr, "listening for notifications over UDP");
        let (tx, stop) = (tx.clone(), limits.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match udp.recv(Duration::from_secs(1)) {
                    Ok(Some(bytes)) => {
                        if tx.send(bytes).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "UDP listener");
                        std::thread::sleep(BACKOFF);
                    }
                }
            }
        });
    }
    if let Some(url) = device.config.long_poll_url.clone() {
        let devid = device
            .dm
            .tree
            .get("./DevInfo/DevId")
            .and_then(|n| n.value().map(|v| String::from_utf8_lossy(v).into_owned()))
            .unwrap_or_default();
        let wait = Duration::from_secs(device.config.long_poll_wait_secs.max(1));
        let poll = LongPoll::new(&url, &devid, wait)
            .with_root_certs_pem(&device.config.extra_ca_pem()?)
            .map_err(|e| DeviceError::Config(e.to_string()))?;
        let (tx, stop) = (tx.clone(), limits.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match poll.poll() {
                    Ok(Some(bytes)) => {
                        if tx.send(bytes).is_err() {
                            return;
                        }
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "long-poll");
                        std::thread::sleep(BACKOFF);
                    }
                }
            }
        });
    }
    // The main loop keeps a sender: with no listener configured, `recv_timeout` then
    // waits out its timeout instead of failing at once (which would spin).
    let _keep_open = tx;

    let mut replays = ReplayFilter::new(Duration::from_secs(600), 256);
    let interval = Duration::from_secs(device.config.poll_interval_secs);
    let mut sessions = 0;
    let mut retry = RETRY_FIRST;
    // A retry is due even when polling is off (interval 0).
    let mut forced_retry = false;
    // A first session at start delivers what the boot left to report.
    let mut next_poll = Instant::now();
    loop {
        if limits.stop.load(Ordering::Relaxed) || limits.max_sessions.is_some_and(|m| sessions >= m)
        {
            return Ok(sessions);
        }
        let now = Instant::now();
        let polling = !interval.is_zero() || sessions == 0 || forced_retry;
        let trigger = if polling && now >= next_poll {
            // An interval too large to add means "only on notifications".
            forced_retry = false;
            next_poll = now
                .checked_add(interval)
                .unwrap_or(now + Duration::from_secs(365 * 86_400));
            Some(Trigger::Client {
                session_id: new_session_id(),
            })
        } else {
            let wait = if polling {
                next_poll - now
            } else {
                Duration::from_secs(1)
            };
            match rx.recv_timeout(wait.min(Duration::from_secs(1))) {
                Ok(bytes) => {
                    let trigger = accept(device, &bytes, &mut replays);
                    if trigger.is_some() {
                        // For the recording of the run it starts.
                        device.notified(&bytes);
                    }
                    trigger
                }
                Err(_) => None,
            }
        };
        let Some(trigger) = trigger else { continue };
        sessions += 1;
        let failed = match device.run(trigger) {
            Ok(s) if s.ok() => {
                tracing::info!(
                    sessions = s.sessions.len(),
                    work = s.work_done,
                    "session run"
                );
                retry = RETRY_FIRST;
                false
            }
            Ok(s) => {
                let why = s.sessions.iter().find_map(|o| o.result.clone().err());
                tracing::warn!(error = ?why, "session failed");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "session run failed");
                true
            }
        };
        // What the device owes the server (an update's outcome, a SIM change) is
        // not left waiting a whole poll interval: a failed session is retried
        // sooner, backing off.
        if failed && !device.owed().is_empty() {
            let soon = Instant::now() + retry;
            next_poll = if interval.is_zero() {
                soon
            } else {
                next_poll.min(soon)
            };
            retry = (retry * 2).min(RETRY_MAX);
            forced_retry = true;
        }
    }
}

/// A verified, fresh notification's session; `None` (logged) for anything else.
fn accept(device: &Device, bytes: &[u8], replays: &mut ReplayFilter) -> Option<Trigger> {
    match notify::verify(&device.dm.tree, bytes) {
        Ok(n) if n.server_id != device.config.server_id => {
            tracing::warn!(server = %n.server_id, "notification for another account: dropped");
            None
        }
        Ok(n) if !replays.admit(&n, Instant::now()) => {
            tracing::warn!(session = %n.session_id_hex, "replayed notification: dropped");
            None
        }
        Ok(n) => {
            tracing::info!(session = %n.session_id_hex, reset = n.nonce_reset, "notification");
            Some(Trigger::Server {
                session_id: n.session_id,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "notification dropped");
            None
        }
    }
}
