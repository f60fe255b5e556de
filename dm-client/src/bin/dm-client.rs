//! `dm-client`: an OMA DM device agent for a state directory, and a simulator of
//! many devices for load tests.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use dm_client::device::{components, daemon, simulate, Device, DeviceConfig, InitSpec};
use dm_client::download::Progress;
use dm_client::firmware::{AutoAccept, DownloadOffer, Ui};
use dm_client::session::Trigger;

#[derive(Parser)]
#[command(
    name = "dm-client",
    version,
    about = "OMA DM 1.2 device agent with firmware updates (FUMO and the FWUpdate extension)"
)]
struct Cli {
    /// The device's state directory (tree, settings, packages, firmware slots).
    #[arg(
        long,
        global = true,
        default_value = "dm-client-state",
        env = "DM_CLIENT_STATE"
    )]
    state: PathBuf,
    /// Record every exchange (`run`, each session of `daemon`, each device's round in
    /// `simulate`) into a folder of DIR: the messages both ways with their headers,
    /// the notification that started it, the downloads it fetched, the device's
    /// profile; the format `dm-conformance replay` plays (fixtures/sessions/README.md).
    #[arg(long, global = true, value_name = "DIR", env = "DM_CLIENT_RECORD")]
    record: Option<PathBuf>,
    /// Log level (error, warn, info, debug, trace).
    #[arg(long, global = true, default_value = "warn", env = "DM_CLIENT_LOG")]
    log: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum Auth {
    Basic,
    Md5,
    Hmac,
}

impl Auth {
    fn aauth_type(self) -> &'static str {
        match self {
            Auth::Basic => "BASIC",
            Auth::Md5 => "DIGEST",
            Auth::Hmac => "HMAC",
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Enc {
    Xml,
    Wbxml,
}

#[derive(clap::Args)]
struct DeviceArgs {
    /// Authentication scheme towards the server.
    #[arg(long, value_enum, default_value = "basic")]
    auth: Auth,
    /// The server's ServerID (the name its ACLs and notifications use).
    #[arg(long, default_value = "dm-server")]
    server_id: String,
    /// The server's password towards the device: when set, the server must
    /// authenticate itself before the device executes anything.
    #[arg(long)]
    server_password: Option<String>,
    /// Device model (./DevInfo/Mod): packages must be built for it.
    #[arg(long, default_value = "dmrs-sim")]
    model: String,
    /// Version of the firmware the device starts with (./DevDetail/FwV).
    #[arg(long, default_value = "1.0")]
    firmware_version: String,
    /// Ed25519 public key (b64, or a file holding it) that packages must be signed
    /// with; repeat for several. Without any, signatures are not checked.
    #[arg(long = "fw-key")]
    fw_keys: Vec<String>,
    /// Encoding of package 1 (later messages follow the server's).
    #[arg(long, value_enum, default_value = "xml")]
    encoding: Enc,
    /// Extra CA certificate (PEM) for an HTTPS server with a private CA.
    #[arg(long)]
    ca: Vec<PathBuf>,
    /// A component other than the firmware and its version, NAME=VERSION: the leaf
    /// ./DevDetail/Ext/Comp/NAME, which packages for component NAME update.
    /// Repeat for several.
    #[arg(long = "component", value_name = "NAME=VERSION", value_parser = components::parse)]
    components: Vec<(String, String)>,
    /// Throttle package downloads to about this many bytes per second (0: no limit).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 0)]
    download_rate: u64,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a device in the state directory.
    Init {
        /// The DM server's URL.
        #[arg(long)]
        server: String,
        /// The device id (./DevInfo/DevId), e.g. IMEI:490154203237518.
        #[arg(long)]
        device_id: String,
        /// User name towards the server (default: the device id).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "")]
        password: String,
        /// Manufacturer (./DevInfo/Man).
        #[arg(long, default_value = "dm-client")]
        manufacturer: String,
        /// The first firmware image (default: a small synthetic one).
        #[arg(long)]
        firmware_image: Option<PathBuf>,
        /// Listen for notifications (package #0) over UDP at this address.
        #[arg(long)]
        udp: Option<String>,
        /// Hold a long-poll for notifications at this URL.
        #[arg(long)]
        long_poll: Option<String>,
        /// Seconds between sessions in daemon mode (0: only on notifications).
        #[arg(long, default_value_t = 3600)]
        poll_interval: u64,
        /// The SIM's ICCID (a change between starts is reported to the server).
        #[arg(long)]
        iccid: Option<String>,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// Run one client-initiated session (and the downloads and updates it asks
    /// for, and the report that follows). Exit 0 when every session ended normally.
    Run {
        /// Accept downloads without asking (DL_Prompt). Without a terminal to ask
        /// on (cron, systemd), downloads are accepted as if this were given.
        #[arg(long)]
        yes: bool,
    },
    /// Wait for notifications and poll the server, running a session for each.
    Daemon {
        /// Stop after this many sessions.
        #[arg(long)]
        max_sessions: Option<usize>,
    },
    /// Show the device: firmware version, FUMO state, reports owed.
    Status,
    /// A whole firmware update against a scripted server on loopback, step by step
    /// (nothing to set up; the device lives in a temporary directory).
    Demo,
    /// Run N independent devices in this process against a server (load test).
    /// Their files live in /dev/shm (or in $TMPDIR when it is set) and are removed
    /// at the end, unless --keep gives them a directory.
    Simulate {
        #[arg(long)]
        devices: usize,
        #[arg(long)]
        server: String,
        /// Sessions in flight at once.
        #[arg(long, default_value_t = 16)]
        concurrency: usize,
        /// Sessions each device runs (each with the sessions its updates call for).
        /// 0: run until the process is killed.
        #[arg(long, default_value_t = 1)]
        sessions: usize,
        /// The pause between the end of a device's session and its next one.
        #[arg(long, value_name = "MS", default_value_t = 0)]
        interval_ms: u64,
        /// The number of the first device: ids are the prefix and a 6-digit number.
        #[arg(long, value_name = "N", default_value_t = 1)]
        first: usize,
        /// Keep each device in DIR/<device id> and take up the devices already
        /// there as they are (firmware, update state, reports owed); DIR stays.
        #[arg(long, value_name = "DIR")]
        keep: Option<PathBuf>,
        /// Each device's first N updates fail and roll back (the count is kept
        /// with --keep); `always` for devices whose updates always fail.
        #[arg(long, value_name = "N|always", default_value = "0", value_parser = parse_fail_updates)]
        fail_updates: u64,
        /// Every device's password (its user name is its device id).
        #[arg(long, default_value = "")]
        password: String,
        #[arg(long, default_value = "sim-")]
        id_prefix: String,
        #[command(flatten)]
        device: DeviceArgs,
    },
}

/// Asks on the terminal before a download the server wants confirmed.
struct Terminal;

impl Ui for Terminal {
    fn confirm_download(&mut self, offer: &DownloadOffer) -> bool {
        let size = offer
            .size
            .map(|s| format!(" ({s} bytes)"))
            .unwrap_or_default();
        eprint!(
            "Download firmware {}{size} from {}? [y/N] ",
            offer.name.as_deref().unwrap_or(""),
            offer.url
        );
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).is_ok() && line.trim().eq_ignore_ascii_case("y")
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dm-client: {e}");
            ExitCode::from(2)
        }
    }
}

fn keys(args: &DeviceArgs) -> Result<Vec<String>, String> {
    args.fw_keys
        .iter()
        .map(|k| match std::fs::read_to_string(k) {
            Ok(text) => Ok(text.trim().to_owned()),
            Err(_) if std::path::Path::new(k).exists() => Err(format!("cannot read key file {k}")),
            Err(_) => Ok(k.trim().to_owned()),
        })
        .collect()
}

fn config_of(args: &DeviceArgs) -> DeviceConfig {
    DeviceConfig {
        server_id: args.server_id.clone(),
        encoding: match args.encoding {
            Enc::Xml => "xml",
            Enc::Wbxml => "wbxml",
        }
        .into(),
        extra_ca: args.ca.clone(),
        download_rate: args.download_rate,
        ..DeviceConfig::default()
    }
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match cli.cmd {
        Cmd::Init {
            server,
            device_id,
            user,
            password,
            manufacturer,
            firmware_image,
            udp,
            long_poll,
            poll_interval,
            iccid,
            device,
        } => {
            let mut config = config_of(&device);
            config.udp_listen = udp;
            config.long_poll_url = long_poll;
            config.poll_interval_secs = poll_interval;
            config.sim_iccid = iccid;
            let image = match &firmware_image {
                Some(p) => Some(std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?),
                None => None,
            };
            let spec = InitSpec {
                server_url: server,
                server_id: device.server_id.clone(),
                user: user.unwrap_or_else(|| device_id.clone()),
                device_id,
                manufacturer,
                model: device.model.clone(),
                firmware_version: device.firmware_version.clone(),
                firmware_image: image,
                auth_type: device.auth.aauth_type().into(),
                password,
                server_password: device.server_password.clone(),
                firmware_keys: keys(&device)?,
                components: device.components.clone(),
                config,
            };
            Device::init(&cli.state, &spec)?;
            println!(
                "device created in {}: run `dm-client --state {} run`",
                cli.state.display(),
                cli.state.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { yes } => {
            let ui: Box<dyn Ui> = if yes || !std::io::stdin().is_terminal() {
                Box::new(AutoAccept)
            } else {
                Box::new(Terminal)
            };
            let mut dev = Device::open(&cli.state, ui)?;
            dev.record_into(cli.record.as_deref());
            if std::io::stderr().is_terminal() {
                dev.on_progress(Box::new(draw_progress));
            }
            let drawing = std::io::stderr().is_terminal();
            let summary = dev.run(Trigger::Client {
                session_id: dm_client::device::new_session_id(),
            })?;
            if drawing && summary.work_done > 0 {
                eprintln!();
            }
            for (i, o) in summary.sessions.iter().enumerate() {
                match &o.result {
                    Ok(()) => println!(
                        "session {}: ok ({} messages sent, {} commands executed)",
                        i + 1,
                        o.messages_sent,
                        o.commands_executed
                    ),
                    Err(e) => println!("session {}: failed: {e}", i + 1),
                }
            }
            if summary.rebooted {
                println!("firmware switched: now running {}", dev.firmware_version());
            }
            Ok(if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Daemon { max_sessions } => {
            let mut dev = Device::open(&cli.state, Box::new(AutoAccept))?;
            dev.record_into(cli.record.as_deref());
            let limits = daemon::Limits {
                max_sessions,
                ..daemon::Limits::default()
            };
            let n = daemon::run(&mut dev, &limits)?;
            println!("{n} sessions");
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Status => {
            let dev = Device::open(&cli.state, Box::new(AutoAccept))?;
            println!("firmware version: {}", dev.firmware_version());
            for slot in ["./FUMO/1/State", "./FWUpdate/1/State"] {
                if let Some(v) = dev
                    .dm
                    .tree
                    .get(slot)
                    .and_then(|n| n.value().map(|v| String::from_utf8_lossy(v).into_owned()))
                {
                    println!("{slot}: {v}");
                }
            }
            for c in dev.owed() {
                println!("owed to the server: {}", c.name());
            }
            for (name, version) in dev.components() {
                println!("component {name}: {version}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo => {
            let dir = std::env::temp_dir().join(format!("dm-client-demo-{}", std::process::id()));
            let ok = dm_client::device::demo::run(&dir, &mut std::io::stdout());
            let _ = std::fs::remove_dir_all(&dir);
            Ok(if ok? {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        Cmd::Simulate {
            devices,
            server,
            concurrency,
            sessions,
            interval_ms,
            first,
            keep,
            fail_updates,
            password,
            id_prefix,
            device,
        } => {
            if devices == 0 || concurrency == 0 {
                return Err("--devices and --concurrency must be at least 1".into());
            }
            let dir = match &keep {
                Some(d) => d.clone(),
                None => scratch_dir().join(format!("dm-client-sim-{}", std::process::id())),
            };
            let opts = simulate::Options {
                server_url: server,
                server_id: device.server_id.clone(),
                devices,
                concurrency,
                sessions_per_device: sessions,
                interval: std::time::Duration::from_millis(interval_ms),
                id_prefix,
                first,
                auth_type: device.auth.aauth_type().into(),
                password,
                server_password: device.server_password.clone(),
                model: device.model.clone(),
                firmware_version: device.firmware_version.clone(),
                firmware_keys: keys(&device)?,
                components: device.components.clone(),
                dir: dir.clone(),
                keep: keep.is_some(),
                fail_updates,
                config: config_of(&device),
                record: cli.record.clone(),
            };
            let report = simulate::run(&opts);
            if keep.is_none() {
                let _ = std::fs::remove_dir_all(&dir);
            }
            let report = report?;
            println!("{report}");
            Ok(if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `--fail-updates`: a count, or `always`.
fn parse_fail_updates(s: &str) -> Result<u64, String> {
    if s.eq_ignore_ascii_case("always") {
        return Ok(u64::MAX);
    }
    s.parse()
        .map_err(|_| format!("{s:?}: a number of updates or `always` expected"))
}

/// Where simulated devices keep their files: memory (`/dev/shm`) when the system has
/// it, since they are thrown away at the end and creating thousands of device
/// directories on a disk costs more than their sessions; else the temp directory.
fn scratch_dir() -> std::path::PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let writable = shm.is_dir()
        && std::fs::metadata(shm).is_ok_and(|m| !m.permissions().readonly())
        && std::env::var_os("TMPDIR").is_none();
    if writable {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    }
}

/// A one-line progress bar on standard error.
fn draw_progress(url: &str, p: Progress) {
    let (done, total) = match p {
        Progress::Started {
            resumed_from,
            total,
        } => (resumed_from, total),
        Progress::Received { done, total } => (done, total),
    };
    let name = url.rsplit('/').next().unwrap_or(url);
    let line = match total {
        Some(t) if t > 0 => {
            let pct = (done.min(t) * 100) / t;
            let bar = "#".repeat((pct / 5) as usize);
            format!("\r{name} [{bar:<20}] {pct:>3}% {done}/{t} bytes")
        }
        _ => format!("\r{name} {done} bytes"),
    };
    eprint!("{line}");
    // The line ends once the total is reached (without a total, `run` ends it).
    if total.is_some_and(|t| done >= t) {
        eprintln!();
    }
}
