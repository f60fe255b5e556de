//! The transport floor for `scripts/bench-server.sh`: what the same client threads,
//! HTTP client (ureq 3, as `dm-client simulate`'s devices) and server HTTP layer
//! allow when the DM work is left out.
//!
//! Like `dm-client simulate --devices N --sessions S --concurrency C`, worker threads
//! take "devices" in turn; each device gets a fresh HTTP agent (a new keep-alive
//! connection, as a simulated device's transport) and runs S "sessions" of K
//! requests to `GET /healthz` (routing, the blocking-pool hop and one indexed store
//! read, as every DM message has, but no DM decoding, engine or commit). Prints the
//! same figures as `simulate`: sessions/s and latency percentiles of a session.
//!
//! ```sh
//! cargo run --release -p dm-server --example http_floor -- URL DEVICES SESSIONS CONCURRENCY [K]
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn arg(args: &[String], i: usize, default: Option<usize>) -> usize {
    match args.get(i) {
        Some(a) => a.parse().unwrap_or_else(|_| panic!("argument {i}: {a:?}")),
        None => default.unwrap_or_else(|| {
            eprintln!("usage: http_floor URL DEVICES SESSIONS CONCURRENCY [REQUESTS_PER_SESSION]");
            std::process::exit(2)
        }),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let url = format!(
        "{}/healthz",
        args.get(1)
            .map(|u| u.trim_end_matches('/'))
            .unwrap_or_else(|| {
                eprintln!("usage: http_floor URL DEVICES SESSIONS CONCURRENCY [K]");
                std::process::exit(2)
            })
    );
    let devices = arg(&args, 2, None);
    let sessions = arg(&args, 3, None).max(1);
    let concurrency = arg(&args, 4, None).clamp(1, devices.max(1));
    let per_session = arg(&args, 5, Some(2)).max(1);

    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let latencies = Mutex::new(Vec::with_capacity(devices * sessions));
    let span: Mutex<Option<(Instant, Instant)>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..concurrency {
            scope.spawn(|| {
                let mut mine = Vec::new();
                let (mut first, mut last) = (None, None);
                while next.fetch_add(1, Ordering::Relaxed) < devices {
                    let agent: ureq::Agent = ureq::Agent::config_builder()
                        .timeout_global(Some(Duration::from_secs(60)))
                        .http_status_as_error(false)
                        .build()
                        .into();
                    for _ in 0..sessions {
                        let t0 = Instant::now();
                        let mut ok = true;
                        for _ in 0..per_session {
                            match agent.get(&url).call() {
                                Ok(mut r) => {
                                    ok &= r.status() == 200;
                                    let _ = r.body_mut().read_to_vec();
                                }
                                Err(_) => ok = false,
                            }
                        }
                        let t1 = Instant::now();
                        first.get_or_insert(t0);
                        last = Some(t1);
                        if !ok {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        mine.push(t1 - t0);
                    }
                }
                latencies.lock().unwrap().extend(mine);
                if let (Some(a), Some(b)) = (first, last) {
                    let mut s = span.lock().unwrap();
                    let (x, y) = s.get_or_insert((a, b));
                    *x = (*x).min(a);
                    *y = (*y).max(b);
                }
            });
        }
    });
    let mut v = latencies.into_inner().unwrap();
    v.sort();
    let pct = |p: f64| -> String {
        if v.is_empty() {
            return "-".into();
        }
        let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
        format!(
            "{:.1} ms",
            v[rank.clamp(1, v.len()) - 1].as_secs_f64() * 1e3
        )
    };
    let elapsed = span
        .into_inner()
        .unwrap()
        .map_or(Duration::ZERO, |(a, b)| b - a);
    let failed = failed.into_inner();
    println!("sessions completed: {}", v.len() - failed);
    println!("failures: {failed}");
    println!(
        "latency: p50 {} p90 {} p99 {} max {}",
        pct(50.0),
        pct(90.0),
        pct(99.0),
        pct(100.0)
    );
    println!(
        "elapsed: {:.2} s ({:.1} sessions/s)",
        elapsed.as_secs_f64(),
        v.len() as f64 / elapsed.as_secs_f64().max(1e-9)
    );
}
