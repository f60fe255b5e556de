//! Many independent devices in one process, for load tests of a server.
//!
//! Each simulated device has its own tree (in memory), account, firmware slots and
//! package directory, and runs complete client-initiated sessions (with the
//! downloads and updates a server asks for). Worker threads take devices in turn,
//! so `concurrency` bounds the sessions in flight. A device may run rounds
//! periodically (`interval`), for ever (`sessions_per_device` 0), and be kept in a
//! directory across simulations (`keep`: a fleet that goes offline and comes back).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::firmware::AutoAccept;
use crate::session::Trigger;

use super::{new_session_id, Device, DeviceConfig, DeviceError, InitSpec, Simulation};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Options {
    pub server_url: String,
    pub server_id: String,
    pub devices: usize,
    /// Sessions in flight at once.
    pub concurrency: usize,
    /// Rounds each device runs, one after the other (each a [`Device::run`]: a
    /// session and the ones its work calls for). 0: until the process is killed.
    pub sessions_per_device: usize,
    /// The pause between the end of a device's round and the start of its next.
    pub interval: Duration,
    /// Device ids are this prefix and a number (`sim-000001`).
    pub id_prefix: String,
    /// The number of the first device (the others follow).
    pub first: usize,
    pub auth_type: String,
    /// Every device's password (its user name is its device id).
    pub password: String,
    pub server_password: Option<String>,
    pub model: String,
    pub firmware_version: String,
    pub firmware_keys: Vec<String>,
    /// Components other than the firmware, with their first versions.
    pub components: Vec<(String, String)>,
    /// Where the devices live, each in `dir/<device id>`.
    pub dir: PathBuf,
    /// Keep the devices in `dir` and take up those already there (see
    /// [`Simulation::keep`]).
    pub keep: bool,
    /// Each device's first this many updates fail (see [`Simulation::fail_updates`]).
    pub fail_updates: u64,
    pub config: DeviceConfig,
    /// Record each device's rounds into this folder (see [`crate::record`]).
    pub record: Option<PathBuf>,
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

/// Devices waiting for their next round, by due time, and how many rounds are
/// being run (a device being run is in neither).
struct Schedule {
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    running: usize,
}

/// One simulated device between its rounds.
struct Slot {
    device: Option<Device>,
    rounds: usize,
}

struct Shared<'a> {
    opts: &'a Options,
    schedule: Mutex<Schedule>,
    wake: Condvar,
    slots: Vec<Mutex<Slot>>,
    report: Mutex<Report>,
    span: Mutex<Option<(Instant, Instant)>>,
}

impl Shared<'_> {
    /// The next device due, once it is due; `None` when no device has rounds left.
    fn next(&self) -> Option<usize> {
        let mut s = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            match s.queue.peek().copied() {
                Some(Reverse((due, i))) => {
                    let now = Instant::now();
                    if due <= now {
                        s.queue.pop();
                        s.running += 1;
                        return Some(i);
                    }
                    s = self
                        .wake
                        .wait_timeout(s, due - now)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                // A device being run may come back to the queue.
                None if s.running > 0 => {
                    s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
                }
                None => return None,
            }
        }
    }

    /// A round of device `i` ended; `again` is when its next is due, if any.
    fn done(&self, i: usize, again: Option<Instant>) {
        let mut s = self.schedule.lock().unwrap_or_else(|p| p.into_inner());
        s.running -= 1;
        if let Some(due) = again {
            s.queue.push(Reverse((due, i)));
        }
        self.wake.notify_all();
    }
}

/// Runs the simulation: worker threads (`concurrency` of them) take the devices
/// whose round is due, earliest first. A device runs its rounds `interval` apart;
/// with no interval and a bounded number of rounds, a worker runs all the rounds
/// of a device back to back (only `concurrency` devices are alive at once).
pub fn run(opts: &Options) -> Result<Report, DeviceError> {
    std::fs::create_dir_all(&opts.dir).map_err(|e| DeviceError::io(&opts.dir, e))?;
    let start = Instant::now();
    let shared = Shared {
        opts,
        schedule: Mutex::new(Schedule {
            queue: (0..opts.devices).map(|i| Reverse((start, i))).collect(),
            running: 0,
        }),
        wake: Condvar::new(),
        slots: (0..opts.devices)
            .map(|_| {
                Mutex::new(Slot {
                    device: None,
                    rounds: 0,
                })
            })
            .collect(),
        report: Mutex::new(Report::default()),
        span: Mutex::new(None),
    };
    std::thread::scope(|scope| {
        for _ in 0..opts.concurrency.clamp(1, opts.devices.max(1)) {
            scope.spawn(|| {
                while let Some(i) = shared.next() {
                    let again = simulate_one(&shared, i);
                    shared.done(i, again);
                }
            });
        }
    });
    let mut r = shared
        .report
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    if let Some((first, last)) = shared.span.into_inner().unwrap_or_else(|p| p.into_inner()) {
        r.elapsed = last - first;
    }
    Ok(r)
}

/// The id of the `i`-th device of the run.
pub fn device_id(opts: &Options, i: usize) -> String {
    format!("{}{:06}", opts.id_prefix, opts.first + i)
}

/// Runs the due round(s) of device `i`; returns when its next round is due.
fn simulate_one(shared: &Shared<'_>, i: usize) -> Option<Instant> {
    let opts = shared.opts;
    let id = device_id(opts, i);
    let record = |ok: bool, took: Option<Duration>, err: Option<String>| {
        let mut r = shared.report.lock().unwrap_or_else(|p| p.into_inner());
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
    let mut slot = shared.slots[i].lock().unwrap_or_else(|p| p.into_inner());
    let slot = &mut *slot;
    if slot.device.is_none() {
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
            components: opts.components.clone(),
            config: opts.config.clone(),
        };
        let sim = Simulation {
            keep: opts.keep,
            fail_updates: opts.fail_updates,
        };
        match Device::simulated(&opts.dir.join(&id), &spec, Box::new(AutoAccept), &sim) {
            Ok(mut d) => {
                d.record_into(opts.record.as_deref());
                slot.device = Some(d)
            }
            Err(e) => {
                record(false, None, Some(e.to_string()));
                return None;
            }
        }
    }
    let forever = opts.sessions_per_device == 0;
    let dev = slot.device.as_mut()?;
    loop {
        let t0 = Instant::now();
        let result = dev.run(Trigger::Client {
            session_id: new_session_id(),
        });
        let t1 = Instant::now();
        slot.rounds += 1;
        {
            let mut s = shared.span.lock().unwrap_or_else(|p| p.into_inner());
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
        let more = forever || slot.rounds < opts.sessions_per_device;
        if !more {
            // Its files stay (with `keep`) or go with the run's directory.
            slot.device = None;
            return None;
        }
        if forever || !opts.interval.is_zero() {
            return Some(Instant::now() + opts.interval);
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
