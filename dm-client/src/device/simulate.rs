//! Many independent devices in one process, for load tests of a server.
//!
//! Each simulated device has its own tree (in memory), account, firmware slots and
//! package directory, and runs complete client-initiated sessions (with the
//! downloads and updates a server asks for). Worker threads take devices in turn,
//! so `concurrency` bounds the sessions in flight.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::firmware::AutoAccept;
use crate::session::Trigger;

use super::{new_session_id, Device, DeviceConfig, DeviceError, InitSpec};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    pub server_url: String,
    pub server_id: String,
    pub devices: usize,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Sessions each device runs, one after the other.
    pub sessions_per_device: usize,
    /// Device ids are this prefix and a number (`sim-000001`).
    pub id_prefix: String,
    pub auth_type: String,
    /// Every device's password (its user name is its device id).
    pub password: String,
    pub server_password: Option<String>,
    pub model: String,
    pub firmware_version: String,
    pub firmware_keys: Vec<String>,
    /// Where the devices keep their packages and slots.
    pub dir: PathBuf,
    pub config: DeviceConfig,
}

/// What the devices did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// DM sessions that ended normally.
    pub completed: usize,
    /// DM sessions that failed, and devices that could not be set up.
    pub failed: usize,
    /// The duration of every DM session, failed ones included.
    pub latencies: Vec<Duration>,
    /// From the first session's start to the last one's end (device set-up
    /// excluded).
    pub elapsed: Duration,
    /// The first few failures, for the operator.
    pub errors: Vec<String>,
}

impl Report {
    /// The `p`-th percentile (0-100) of the latencies, nearest rank.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        let mut v = self.latencies.clone();
        if v.is_empty() {
            return None;
        }
        v.sort();
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        v.get(rank.clamp(1, v.len()) - 1).copied()
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Option<Duration>| {
            d.map_or("-".to_owned(), |d| {
                format!("{:.1} ms", d.as_secs_f64() * 1e3)
            })
        };
        let total = self.completed + self.failed;
        let rate = total as f64 / self.elapsed.as_secs_f64().max(1e-9);
        writeln!(f, "sessions completed: {}", self.completed)?;
        writeln!(f, "failures: {}", self.failed)?;
        writeln!(
            f,
            "latency: p50 {} p90 {} p99 {} max {}",
            ms(self.percentile(50.0)),
            ms(self.percentile(90.0)),
            ms(self.percentile(99.0)),
            ms(self.percentile(100.0)),
        )?;
        write!(
            f,
            "elapsed: {:.2} s ({rate:.1} sessions/s)",
            self.elapsed.as_secs_f64()
        )?;
        for e in &self.errors {
            write!(f, "\nerror: {e}")?;
        }
        Ok(())
    }
}

/// Kept failure messages.
const MAX_ERRORS: usize = 5;

/// Runs the simulation.
pub fn run(opts: &Options) -> Result<Report, DeviceError> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| DeviceError::io(&opts.dir, e))?;
    let next = AtomicUsize::new(0);
    let report = Mutex::new(Report::default());
    let span: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..opts.concurrency.clamp(1, opts.devices.max(1)) {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= opts.devices {
                    return;
                }
                simulate_one(opts, i, &report, &span);
            });
        }
    });
    let mut r = report.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some((first, last)) = span.into_inner().unwrap_or_else(|p| p.into_inner()) {
        r.elapsed = last - first;
    }
    Ok(r)
}

fn simulate_one(
    opts: &Options,
    i: usize,
    report: &Mutex<Report>,
    span: &Mutex<Option<(Instant, Instant)>>,
) {
    let id = format!("{}{:06}", opts.id_prefix, i + 1);
    let spec = InitSpec {
        server_url: opts.server_url.clone(),
        server_id: opts.server_id.clone(),
        device_id: id.clone(),
        manufacturer: "dm-client-sim".into(),
        model: opts.model.clone(),
        firmware_version: opts.firmware_version.clone(),
        firmware_image: None,
        auth_type: opts.auth_type.clone(),
        user: id.clone(),
        password: opts.password.clone(),
        server_password: opts.server_password.clone(),
        firmware_keys: opts.firmware_keys.clone(),
        config: opts.config.clone(),
    };
    let record = |ok: bool, took: Option<Duration>, err: Option<String>| {
        let mut r = report.lock().unwrap_or_else(|p| p.into_inner());
        if ok {
            r.completed += 1;
        } else {
            r.failed += 1;
        }
        r.latencies.extend(took);
        if let Some(e) = err.filter(|_| r.errors.len() < MAX_ERRORS) {
            r.errors.push(format!("{id}: {e}"));
        }
    };
    let mut dev = match Device::in_memory(&opts.dir.join(&id), &spec, Box::new(AutoAccept)) {
        Ok(d) => d,
        Err(e) => return record(false, None, Some(e.to_string())),
    };
    for _ in 0..opts.sessions_per_device.max(1) {
        let t0 = Instant::now();
        let result = dev.run(Trigger::Client {
            session_id: new_session_id(),
        });
        let t1 = Instant::now();
        {
            let mut s = span.lock().unwrap_or_else(|p| p.into_inner());
            let (a, b) = s.get_or_insert((t0, t1));
            *a = (*a).min(t0);
            *b = (*b).max(t1);
        }
        match result {
            // Each DM session of the run counts, with its own duration.
            Ok(summary) => {
                for (o, took) in summary.sessions.iter().zip(&summary.session_times) {
                    let err = o.result.clone().err().map(|e| e.to_string());
                    record(err.is_none(), Some(*took), err);
                }
            }
            Err(e) => record(false, Some(t1 - t0), Some(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let r = Report {
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Report::default()
        };
        assert_eq!(r.percentile(50.0), Some(Duration::from_millis(50)));
        assert_eq!(r.percentile(99.0), Some(Duration::from_millis(99)));
        assert_eq!(r.percentile(100.0), Some(Duration::from_millis(100)));
        assert_eq!(Report::default().percentile(50.0), None);
    }
}
