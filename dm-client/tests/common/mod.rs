//! Helpers shared by the integration tests.

/// The scripted DM server lives in the library (`dm-client demo` runs it too).
pub mod dm {
    #[allow(unused_imports)]
    pub use dm_client::device::demo::DmServer;
}
pub mod http;

/// A small deterministic generator (xorshift*), so that a failing random test can
/// be replayed from its printed seed.
#[allow(dead_code)]
pub struct Rng(pub u64);

#[allow(dead_code)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The seed in the environment variable `var`, else one from the clock; printed,
/// so that a failure can be replayed.
#[allow(dead_code)]
pub fn seed(var: &str) -> u64 {
    let seed = std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        });
    eprintln!("{var}={seed}");
    seed | 1
}

/// Runs the `dm-client` binary on a state directory, stdin closed.
#[allow(dead_code)]
pub fn dm_client(state: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_dm-client"))
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("dm-client runs")
}

/// Standard output and error of a run, for assertions and messages.
#[allow(dead_code)]
pub fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
