//! Heap footprint of one whole FOTA run, measured with a counting allocator.
//!
//! ```sh
//! cargo run --release -p dm-client --example footprint          # 4 KiB, 256 KiB, 1 MiB images
//! cargo run --release -p dm-client --example footprint -- 65536 # any image sizes
//! ```
//!
//! The run, entirely in process (no HTTP; the tree in memory, packages and firmware
//! slots in a temporary directory):
//! 1. session 1: the scripted server answers package 1 with Replace
//!    `./FUMO/1/DownloadAndUpdate/PkgURL` and Exec `./FUMO/1/DownloadAndUpdate`
//!    (with a Correlator), then answers the device's package 3 with its statuses;
//! 2. the driver work: `pending_work` gives the download, the package file is put
//!    where the request says (as the download agent would), `download_done`;
//!    then the update: `begin_update`, the reference slot agent's `stage`, `reboot`
//!    and `boot`, then `on_boot`;
//! 3. session 2: package 1 carries the Alert 1226 report, the server answers it 200.
//!
//! What is counted: every byte the client's code holds on the heap (requested
//! sizes, no allocator overhead), from just before session 1 to the end, including
//! the tree, account and firmware state built before it (the "baseline").
//!
//! What is not counted:
//! - the scripted server's own work (decoding the device's messages, building its
//!   replies): the peak is restored after each server turn, keeping only the reply
//!   body it hands over, which a transport would hold too;
//! - the package bytes on their way in: the package file is written before the
//!   measurement and copied file to file where the download agent would leave it;
//! - the HTTP stack and download agent (this run has none; the agent streams
//!   through a 16 KiB buffer).
//!
//! The reference update agent reads the package and rebuilds the image in memory,
//! and the verifier reads up to 64 KiB of a package's start in one buffer (beside
//! a fixed 64 KiB read buffer), so the peak grows with the package. Each phase's
//! peak is fitted on the two largest runs (both should be over 64 KiB): the slope
//! is heap bytes per image byte, the intercept the phase's peak without
//! package-sized buffers. The largest intercept is the `excluding_package` line.
//!
//! Output: one `footprint key=value ...` line per figure, for scripts.

use std::path::Path;
use std::time::Instant;

use dm_client::account::{provision, AccountSpec};
use dm_client::download::Fetched;
use dm_client::firmware::{state, AutoAccept, Firmware, FirmwareConfig, Work};
use dm_client::session::{Agent, ClientSession, Config, Reply, Report, Step, Trigger};
use dm_client::update::{SlotAgent, UpdateAgent};
use dm_tree::DmTree;
use fixtures::heap::{self, live, peak, reset_peak};
use syncml_core::package::{build_full, SigningKey, Spec};
use syncml_core::{decode, encode, Command, Encoding, Item, MessageBuilder, StatusCode, SyncMl};

// ----- the counting allocator -------------------------------------------------------

/// Live heap bytes (as requested) and the highest value since the last reset.
#[global_allocator]
static ALLOC: heap::Counting = heap::Counting;

/// Runs `f` without letting its temporaries raise the peak: afterwards the peak
/// is what it was, or the live heap if `f` left more behind (its result).
fn uncounted<T>(f: impl FnOnce() -> T) -> T {
    let before = peak();
    let out = f();
    heap::set_peak(before.max(live()));
    out
}

/// The process's peak resident set (VmHWM), in KiB.
fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ----- the device and the scripted server -------------------------------------------

const SERVER_ID: &str = "srv";
const SLOT: &str = "./FUMO/1";
const PKG_URL: &str = "http://fw.example/pkg-2.0";
const CORRELATOR: &str = "fota-1";
/// The verifier reads the first `MAX_HEADER_LEN` bytes of a package in one buffer;
/// packages at least this long show its full size.
const VERIFY_PREFIX: usize = syncml_core::package::MAX_HEADER_LEN;

/// The server's side of one session: what it adds to its first reply.
type Script = fn(&mut MessageBuilder);

fn fumo_commands(b: &mut MessageBuilder) {
    b.replace(vec![Item::target(format!(
        "{SLOT}/DownloadAndUpdate/PkgURL"
    ))
    .with_data(PKG_URL)]);
    b.exec(
        Item::target(format!("{SLOT}/DownloadAndUpdate")),
        Some(CORRELATOR),
    );
}

fn nothing(_: &mut MessageBuilder) {}

/// The server's reply to a device message: the header accepted (212 on the first
/// message), a 200 for each device command, and in its first reply what `script`
/// adds. A reply with only statuses ends the session.
fn server_reply(body: &[u8], first: bool, script: Script) -> Result<Vec<u8>, String> {
    let dev: SyncMl = decode(body).map_err(|e| format!("server: undecodable message: {e}"))?;
    let mut b = MessageBuilder::reply_to(&dev.hdr, dev.hdr.msg_id);
    b.status_for_header(if first {
        StatusCode::AuthenticationAccepted
    } else {
        StatusCode::Ok
    });
    for c in &dev.body.commands {
        if !matches!(c, Command::Status(_)) {
            b.status_for(c, StatusCode::Ok);
        }
    }
    if first {
        script(&mut b);
    }
    encode(&b.finish(), Encoding::Xml).map_err(|e| format!("server: cannot encode: {e}"))
}

/// One session against the scripted server; fails unless it ends normally.
fn session(
    dm: &mut DmTree,
    fw: &mut Firmware,
    reports: Vec<Report>,
    script: Script,
) -> Result<(), String> {
    let trigger = Trigger::Client {
        session_id: "1".into(),
    };
    let (mut s, mut step) = ClientSession::start(
        dm,
        Config::default(),
        SERVER_ID,
        trigger,
        reports,
        Instant::now(),
    )
    .map_err(|e| format!("session start: {e}"))?;
    let mut first = true;
    // A scripted session takes two round trips; the bound stops a loop.
    for _ in 0..10 {
        step = match step {
            Step::Send(t) => {
                let body = uncounted(|| server_reply(&t.body, first, script))?;
                first = false;
                let reply = Reply {
                    status: 200,
                    content_type: Some(t.content_type.into()),
                    hmac: None,
                    body,
                };
                drop(t);
                s.receive(dm, fw as &mut dyn Agent, reply, Instant::now())
            }
            Step::Download(req) => return Err(format!("unexpected download of {}", req.url)),
            Step::Done(outcome) => return outcome.result.map_err(|e| format!("session: {e}")),
        };
    }
    Err("the session did not end".into())
}

fn value(dm: &DmTree, path: &str) -> Option<String> {
    let v = dm.tree.get(path)?.value()?;
    Some(String::from_utf8_lossy(v).into_owned())
}

fn expect(what: &str, got: Option<String>, want: &str) -> Result<(), String> {
    match got {
        Some(g) if g == want => Ok(()),
        other => Err(format!("{what}: expected {want:?}, got {other:?}")),
    }
}

// ----- one measured run -------------------------------------------------------------

/// The figures of one run.
struct Figures {
    image_len: usize,
    package_len: usize,
    /// Live heap just before session 1 (tree, account, FUMO slot, agents).
    baseline: usize,
    /// The peak of each phase, as total live heap.
    phases: Vec<(&'static str, usize)>,
}

impl Figures {
    fn peak(&self) -> usize {
        self.phases
            .iter()
            .map(|p| p.1)
            .max()
            .unwrap_or(self.baseline)
    }
}

/// Runs `f` as a phase: its own peak of live heap is recorded.
fn phase<T>(
    phases: &mut Vec<(&'static str, usize)>,
    name: &'static str,
    f: impl FnOnce() -> Result<T, String>,
) -> Result<T, String> {
    reset_peak();
    let out = f()?;
    phases.push((name, peak()));
    Ok(out)
}

/// One FOTA with a firmware image of `image_len` bytes. Figures are counted from
/// the live heap at entry, so earlier runs and the driver's own output buffers
/// do not show.
fn run(image_len: usize) -> Result<Figures, String> {
    // The driver's record, allocated before counting starts.
    let mut phases = Vec::with_capacity(8);
    let floor = live();
    let tmp = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
    let info: Vec<(String, String)> = [
        ("DevId", "IMEI:490154203237518"),
        ("Man", "Acme"),
        ("Mod", "M1"),
        ("Lang", "en"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut dm = DmTree::in_memory(&info).map_err(|e| format!("tree: {e}"))?;
    provision(
        &mut dm,
        &AccountSpec {
            name: "1".into(),
            server_id: SERVER_ID.into(),
            addr: "http://dm.example/dm".into(),
            auth_type: "BASIC".into(),
            user: "IMEI:490154203237518".into(),
            password: "secret".into(),
            server_auth: None,
        },
    )
    .map_err(|e| format!("account: {e}"))?;
    // Packages must be signed with this key.
    let key = SigningKey::from_seed(&[7; 32]);
    dm.set("./DevDetail/Ext/FwKeys/k", key.public().to_b64().as_bytes())
        .and_then(|()| dm.tree.commit())
        .map_err(|e| format!("key: {e}"))?;
    let mut fw = Firmware::new(
        FirmwareConfig {
            packages_dir: tmp.path().join("packages"),
            max_package: 64 << 20,
            download_timeout: dm_client::firmware::DOWNLOAD_TIMEOUT,
        },
        Box::new(AutoAccept),
    );
    fw.install(&mut dm);
    Firmware::create_fumo(&mut dm, "1").map_err(|e| format!("FUMO slot: {e}"))?;
    let slots = tmp.path().join("slots");
    let old_image = vec![0x11; image_len];
    let agent = SlotAgent::init(&slots, &old_image, "1.0").map_err(|e| format!("slots: {e}"))?;
    drop(old_image);
    let new_image: Vec<u8> = (0..image_len).map(|i| (i % 251) as u8).collect();
    let spec = Spec {
        model: "M1".into(),
        component: "firmware".into(),
        from_version: "1.0".into(),
        to_version: "2.0".into(),
    };
    // The package as the server would serve it: built and written out before the
    // measurement starts, so its bytes are not on the heap during the run.
    let incoming = tmp.path().join("incoming.pkg");
    let package_len = {
        let package = build_full(&spec, &new_image, Some(&key));
        write_package(&incoming, &package)?;
        package.len()
    };
    drop(new_image);

    let baseline = live() - floor;
    phase(&mut phases, "session1", || {
        session(&mut dm, &mut fw, Vec::new(), fumo_commands)
    })?;
    expect(
        "state after session 1",
        value(&dm, &format!("{SLOT}/State")),
        &state::DOWNLOAD_PROGRESSING.to_string(),
    )?;
    phase(&mut phases, "download", || {
        let work = fw.pending_work(&dm);
        let [w @ Work::Download { request, .. }] = work.as_slice() else {
            return Err(format!("expected one download, got {work:?}"));
        };
        // The download agent streams to disk; copied file to file, the bytes
        // never reach this process's heap.
        uncounted(|| copy_package(&incoming, &request.dest))?;
        let fetched = Fetched {
            url: request.url.clone(),
            len: package_len as u64,
            content_type: None,
            resumed: false,
        };
        fw.download_done(&mut dm, w, Ok(fetched));
        Ok(())
    })?;
    let staged = phase(&mut phases, "begin_update", || {
        let work = fw.pending_work(&dm);
        let [w @ Work::Update { .. }] = work.as_slice() else {
            return Err(format!("expected one update, got {work:?}"));
        };
        fw.begin_update(&mut dm, w, &agent)
            .map_err(|()| "begin_update refused the package".to_string())
    })?;
    let mut agent = phase(&mut phases, "stage_reboot", move || {
        let mut agent = agent;
        agent
            .stage(&staged)
            .and_then(|()| agent.reboot())
            .map_err(|e| format!("stage: {e}"))?;
        Ok(agent)
    })?;
    phase(&mut phases, "boot", || {
        agent.boot().map_err(|e| format!("boot: {e}"))?;
        fw.on_boot(&mut dm, &mut agent)
            .map_err(|e| format!("on_boot: {e}"))
    })?;
    let reports = fw.reports(&dm, SERVER_ID);
    if reports.len() != 1 {
        return Err(format!("expected one report, got {}", reports.len()));
    }
    phase(&mut phases, "session2", || {
        session(&mut dm, &mut fw, reports, nothing)
    })?;

    // The run did what it should, or its figures mean nothing.
    expect("running firmware", Some(agent.current_version()), "2.0")?;
    expect("./DevDetail/FwV", value(&dm, "./DevDetail/FwV"), "2.0")?;
    expect(
        "final state",
        value(&dm, &format!("{SLOT}/State")),
        &state::UPDATE_SUCCESSFUL_NO_DATA.to_string(),
    )?;
    if !fw.reports(&dm, SERVER_ID).is_empty() {
        return Err("the report was not cleared by the server's answer".into());
    }
    for p in &mut phases {
        p.1 -= floor;
    }
    Ok(Figures {
        image_len,
        package_len,
        baseline,
        phases,
    })
}

/// Writes the package the server serves.
fn write_package(dest: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(dest, bytes).map_err(|e| format!("{}: {e}", dest.display()))
}

/// Copies the package file to where the download agent would leave it.
fn copy_package(from: &Path, dest: &Path) -> Result<(), String> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::copy(from, dest)
        .map(drop)
        .map_err(|e| format!("{}: {e}", dest.display()))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes: Vec<usize> = if args.is_empty() {
        vec![4 << 10, 256 << 10, 1 << 20]
    } else {
        args.iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| format!("image size {a:?} is not a byte count: {e}"))
            })
            .collect::<Result<_, _>>()?
    };
    let mut runs = Vec::new();
    for &n in &sizes {
        let f = run(n)?;
        for (name, p) in &f.phases {
            println!(
                "footprint image={} phase={name} peak_heap={p} above_baseline={}",
                f.image_len,
                p - f.baseline
            );
        }
        println!(
            "footprint image={} package={} baseline_heap={} peak_heap={} above_baseline={}",
            f.image_len,
            f.package_len,
            f.baseline,
            f.peak(),
            f.peak() - f.baseline
        );
        runs.push(f);
    }
    // Per phase, the line through the two largest runs: heap per image byte, and
    // the intercept, the phase's peak without package-sized buffers. The largest
    // intercept is the run's peak excluding the package.
    let mut by_size: Vec<&Figures> = runs.iter().collect();
    by_size.sort_by_key(|f| f.image_len);
    if let [.., s, l] = by_size.as_slice() {
        if l.image_len > s.image_len {
            if s.image_len < VERIFY_PREFIX {
                eprintln!(
                    "note: runs under {VERIFY_PREFIX} bytes read less than the verifier's \
                     prefix; the fit then understates the verification buffers"
                );
            }
            let mut excluding = 0f64;
            for ((name, ps), (_, pl)) in s.phases.iter().zip(&l.phases) {
                let slope = (*pl as f64 - *ps as f64) / (l.image_len - s.image_len) as f64;
                let intercept = *ps as f64 - slope * s.image_len as f64;
                excluding = excluding.max(intercept);
                println!(
                    "footprint fit phase={name} heap_per_image_byte={slope:.3} \
                     intercept_heap={intercept:.0}"
                );
            }
            println!(
                "footprint excluding_package peak_heap={excluding:.0} from_images={},{}",
                s.image_len, l.image_len
            );
        }
    }
    if let Some(kib) = vm_hwm_kib() {
        println!("footprint process vm_hwm_kib={kib}");
    }
    Ok(())
}
