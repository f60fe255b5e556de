//! The `dm-server` command: run the server, and manage its devices, command queues,
//! firmware packages and API tokens directly in its store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use dm_server::audit;
use dm_server::config::Registration;
use dm_server::ops::{self, ClientAuthInput, NewDevice, QueueRequest, ServerAuthInput};
use dm_server::spec::{CommandSpec, DataSpec};
use dm_server::store::{self, now_millis, CommandQuery, CommandState, DeviceQuery, Store};
use dm_server::{Config, Server};

#[path = "dm-server/audit.rs"]
mod audit_cmd;
#[path = "dm-server/campaign.rs"]
mod campaign;
#[path = "dm-server/device_state.rs"]
mod device_state;
#[path = "dm-server/package.rs"]
mod package;

use self::package::PackageCmd;

/// The reference OMA DM 1.2 server.
///
/// `dm-server serve` runs the server (the DM endpoint at /dm, long-poll at /poll,
/// the admin API at /api/v1, /metrics). The other commands work on the same store
/// directly, with the server running or not.
///
/// Quick start:
///
///   DM_SERVER_ADMIN_TOKEN=change-me-0123456789 dm-server serve &
///   dm-server device add IMEI:490154203237518 --auth md5 --password secret
///   dm-server command queue --device IMEI:490154203237518 --get ./DevDetail/FwV
///   dm-server command list
#[derive(Debug, Parser)]
#[command(name = "dm-server", version, verbatim_doc_comment)]
struct Cli {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    command: Cmd,
}

/// Where the store is (shared by every command).
#[derive(Debug, Args)]
struct StoreArgs {
    /// A TOML configuration file; flags override its values.
    #[arg(long, global = true, value_name = "FILE", env = "DM_SERVER_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory, holding the SQLite database [default: ./dm-data].
    #[arg(long, global = true, value_name = "DIR")]
    data: Option<PathBuf>,
    /// A PostgreSQL URL (postgres://user:pass@host/db) instead of SQLite.
    #[arg(long, global = true, value_name = "URL", env = "DM_SERVER_DATABASE")]
    database: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the server until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Provision and inspect devices.
    #[command(subcommand)]
    Device(DeviceCmd),
    /// Queue commands for devices and follow them.
    #[command(subcommand)]
    Command(CommandCmd),
    /// Manage the admin API's tokens.
    #[command(subcommand)]
    Token(TokenCmd),
    /// The firmware repository: add, list and delete update packages, build deltas.
    #[command(subcommand)]
    Package(PackageCmd),
    /// Update devices' firmware and follow the jobs.
    #[command(subcommand)]
    Fota(FotaCmd),
    /// Roll firmware out over fleets: campaigns with targets, schedules, waves.
    #[command(subcommand)]
    Campaign(campaign::CampaignCmd),
    /// The audit log: who changed what, and refused attempts.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCmd),
}

#[derive(Debug, Subcommand)]
enum FotaCmd {
    /// Start updating one device to a package of the repository. The running
    /// server carries the job on; the device is notified.
    Start {
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "device_prefix",
            conflicts_with = "device_prefix"
        )]
        device: Option<String>,
        /// Start a job on each generated device PREFIX000001... (those of `device
        /// import --generate`) instead; devices with a job under way are skipped.
        #[arg(long, value_name = "PREFIX")]
        device_prefix: Option<String>,
        /// How many generated devices (with --device-prefix).
        #[arg(
            long,
            value_name = "N",
            requires = "device_prefix",
            default_value_t = 1
        )]
        count: u64,
        #[arg(long)]
        package: String,
        /// Send the package inside the session (as a large object) instead of a URL.
        #[arg(long)]
        push: bool,
        /// Force the protocol instead of reading it from the device's tree.
        #[arg(long, value_parser = ["ext", "fumo"])]
        protocol: Option<String>,
        /// Follow the job until it ends (a progress line on a terminal).
        #[arg(long)]
        watch: bool,
    },
    /// The device's latest job, with its history.
    Status {
        #[arg(long)]
        device: String,
        /// Follow the job until it ends.
        #[arg(long)]
        watch: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job not over.
    Cancel { id: i64 },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RegistrationArg {
    Open,
    Closed,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address to listen on [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<std::net::SocketAddr>,
    /// The URL devices reach this server at (for RespURI), e.g. https://dm.example.com.
    #[arg(long, value_name = "URL")]
    public_url: Option<String>,
    /// Whether unknown devices may register themselves on first contact [default: closed].
    #[arg(long, value_enum)]
    registration: Option<RegistrationArg>,
    /// Log lines as text or JSON [default: text].
    #[arg(long, value_enum)]
    log_format: Option<LogFormat>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The server id (DMAcc ServerID, package #0 server id) [default: dm-server].
    #[arg(long, value_name = "ID")]
    server_id: Option<String>,
    /// Record every DM session into DIR, one folder per session (request and reply
    /// bodies, headers, HTTP statuses, the notification that started it), in the
    /// format `dm-conformance replay` plays back (see fixtures/sessions/README.md).
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// Makes sure an admin API token with this secret exists (named `bootstrap`).
    #[arg(
        long,
        env = "DM_SERVER_ADMIN_TOKEN",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    admin_token: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum AuthType {
    Basic,
    Md5,
    Hmac,
}

impl AuthType {
    fn name(self) -> &'static str {
        match self {
            AuthType::Basic => "basic",
            AuthType::Md5 => "md5",
            AuthType::Hmac => "hmac",
        }
    }
}

#[derive(Debug, Subcommand)]
enum DeviceCmd {
    /// Provision one device.
    Add {
        /// The device id, as the device sends it (e.g. IMEI:490154203237518).
        id: String,
        /// Credentials the device must present (the weakest accepted).
        #[arg(long, value_enum, requires = "password")]
        auth: Option<AuthType>,
        /// The user name the device authenticates as [default: the device id].
        #[arg(long)]
        username: Option<String>,
        /// The device's password (only its MD5 key is stored).
        #[arg(long, env = "DM_DEVICE_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// The password the server proves itself with; also signs notifications.
        #[arg(long, env = "DM_SERVER_PASSWORD", hide_env_values = true)]
        server_password: Option<String>,
        /// The server credentials' type [default: md5].
        #[arg(long, value_enum, requires = "server_password")]
        server_auth: Option<AuthType>,
        /// A label (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// Where to push notifications: udp://host:port.
        #[arg(long)]
        notify_addr: Option<String>,
    },
    /// List devices in id order.
    List {
        /// Only ids after this one (paging).
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Only devices with this tag.
        #[arg(long)]
        tag: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one device (JSON), with inventory and presence.
    Show { id: String },
    /// Delete a device with everything recorded about it.
    Delete { id: String },
    /// Provision many devices: from a file (CSV with a header, or JSON lines), or
    /// generated (`--generate 1000000 --prefix IMEI:`).
    Import {
        /// CSV (columns among id, auth_type, username, password, server_auth_type,
        /// server_password, tags, notify_addr) or JSON lines; `-` for stdin.
        #[arg(required_unless_present = "generate", conflicts_with = "generate")]
        file: Option<PathBuf>,
        /// Generate this many devices named PREFIX000001, PREFIX000002... (the ids
        /// `dm-client simulate --id-prefix PREFIX` uses)
        #[arg(long, value_name = "N")]
        generate: Option<u64>,
        #[arg(long, default_value = "dev-", requires = "generate")]
        prefix: String,
        /// The first number generated.
        #[arg(long, default_value_t = 1, requires = "generate")]
        start: u64,
        /// Generated devices authenticate with this password (md5).
        #[arg(long, requires = "generate")]
        password: Option<String>,
        /// Generated devices get these server credentials (md5).
        #[arg(long, requires = "generate")]
        server_password: Option<String>,
        /// A tag for every generated device (repeatable).
        #[arg(long = "tag", requires = "generate")]
        tags: Vec<String>,
    },
    /// Every package with its fit for the device (model, component versions) and,
    /// for an incompatible one, the updates that would make it fit.
    Packages {
        id: String,
        /// fits, incompatible, current or all.
        #[arg(long, default_value = "all")]
        fit: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Send a device a notification (package #0) so that it connects now.
    Notify {
        id: String,
        /// not-specified, background, informative or user-interaction.
        #[arg(long, default_value = "not-specified")]
        ui_mode: String,
    },
    #[command(flatten)]
    State(device_state::StateCmd),
}

#[derive(Debug, Subcommand)]
enum CommandCmd {
    /// Queue commands for devices (they go out in each device's next session).
    ///
    /// Commands are queued in this order: every --spec, then --get, --add,
    /// --replace, --delete, --exec (each in the order given).
    Queue(QueueArgs),
    /// List commands, newest first.
    List {
        #[arg(long)]
        device: Option<String>,
        /// queued, sent, done, failed or cancelled.
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        request_id: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one command with its results (JSON).
    Show { id: i64 },
    /// Cancel a command not sent yet.
    Cancel { id: i64 },
}

#[derive(Debug, Args)]
struct QueueArgs {
    /// A target device (repeatable).
    #[arg(
        long = "device",
        value_name = "ID",
        required_unless_present = "device_prefix",
        conflicts_with = "device_prefix"
    )]
    devices: Vec<String>,
    /// Target the generated devices PREFIX000001... instead (those of `device
    /// import --generate`), queuing in transactions of 10,000 devices and printing
    /// a summary instead of every command.
    #[arg(long, value_name = "PREFIX", requires = "count")]
    device_prefix: Option<String>,
    /// How many generated devices (with --device-prefix).
    #[arg(long, value_name = "N", requires = "device_prefix")]
    count: Option<u64>,
    /// The first generated device's number (with --device-prefix).
    #[arg(long, default_value_t = 1, requires = "device_prefix")]
    start: u64,
    /// Queuing again with the same request id changes nothing.
    #[arg(long)]
    request_id: Option<String>,
    /// A command as JSON, e.g. '{"cmd":"Exec","target":"./FUMO/1/Update"}' (repeatable).
    #[arg(long = "spec", value_name = "JSON")]
    specs: Vec<String>,
    /// Get a node (repeatable).
    #[arg(long = "get", value_name = "PATH")]
    gets: Vec<String>,
    /// Replace a node's value (repeatable).
    #[arg(long = "replace", value_name = "PATH=VALUE")]
    replaces: Vec<String>,
    /// Add a node with a value (repeatable).
    #[arg(long = "add", value_name = "PATH=VALUE")]
    adds: Vec<String>,
    /// Delete a node (repeatable).
    #[arg(long = "delete", value_name = "PATH")]
    deletes: Vec<String>,
    /// Execute a node (repeatable).
    #[arg(long = "exec", value_name = "PATH")]
    execs: Vec<String>,
    /// Also notify each device.
    #[arg(long)]
    notify: bool,
}

#[derive(Debug, Subcommand)]
enum TokenCmd {
    /// Create a token; its secret is printed once.
    Create {
        name: String,
        /// read-only, operator or admin.
        #[arg(long, default_value = "read-only")]
        role: String,
        /// Limit the token to the devices of these groups (device tags; not for
        /// admin tokens).
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
    },
    /// List tokens (names, roles, creation times, groups; never secrets).
    List,
    /// Delete a token.
    Delete { name: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Cmd::Serve(_)) {
        quiet_on_closed_pipe();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dm-server: {e}");
            ExitCode::FAILURE
        }
    }
}

type Fallible = Result<(), String>;

/// A command whose output goes to a pipe closed early (`... | head`) ends there,
/// as Unix tools do, instead of panicking on the failed write. Not for `serve`:
/// a peer closing its socket is an error to handle, not a reason to stop.
fn quiet_on_closed_pipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default, before any thread
    // is started; no handler runs Rust code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli) -> Fallible {
    let mut config = match &cli.store.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(d) = &cli.store.data {
        config.data_dir = d.clone();
    }
    if let Some(db) = &cli.store.database {
        config.database = Some(db.clone());
    }
    match cli.command {
        Cmd::Serve(args) => serve(config, args),
        Cmd::Device(cmd) => {
            init_logs("text", "warn");
            device(&open(&config)?, cmd, config)
        }
        Cmd::Command(cmd) => {
            init_logs("text", "warn");
            command(&open(&config)?, cmd, config)
        }
        Cmd::Token(cmd) => {
            init_logs("text", "warn");
            token(open(&config)?.as_ref(), cmd)
        }
        Cmd::Package(cmd) => {
            init_logs("text", "warn");
            package::run(cmd, &config)
        }
        Cmd::Fota(cmd) => {
            init_logs("text", "warn");
            fota_cmd(&open(&config)?, cmd, config)
        }
        Cmd::Campaign(cmd) => {
            init_logs("text", "warn");
            campaign::run(&open(&config)?, cmd, config)
        }
        Cmd::Audit(cmd) => {
            init_logs("text", "warn");
            audit_cmd::run(open(&config)?.as_ref(), cmd)
        }
    }
}

fn init_logs(format: &str, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Opens the configured store (creating the data directory for SQLite).
fn open(config: &Config) -> Result<Arc<dyn Store>, String> {
    if config.database.is_none() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
    }
    let url = config.store_url();
    store::open(&url)
        .map(Arc::from)
        .map_err(|e| format!("opening the store: {e}"))
}

fn serve(mut config: Config, args: ServeArgs) -> Fallible {
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(u) = args.public_url {
        config.public_url = Some(u);
    }
    if let Some(r) = args.registration {
        config.registration = match r {
            RegistrationArg::Open => Registration::Open,
            RegistrationArg::Closed => Registration::Closed,
        };
    }
    if let Some(f) = args.log_format {
        config.log_format = match f {
            LogFormat::Text => "text".into(),
            LogFormat::Json => "json".into(),
        };
    }
    if args.tls_cert.is_some() {
        config.tls_cert = args.tls_cert;
        config.tls_key = args.tls_key;
    }
    if let Some(id) = args.server_id {
        config.server_id = id;
    }
    if let Some(dir) = args.record {
        config.record_dir = Some(dir);
    }
    if !matches!(config.log_format.as_str(), "text" | "json") {
        return Err(format!(
            "log_format {:?} is not text or json",
            config.log_format
        ));
    }
    init_logs(&config.log_format, "info");
    let store = open(&config)?;
    if let Some(secret) = &args.admin_token {
        ops::ensure_admin_token(store.as_ref(), "bootstrap", secret, now_millis())
            .map_err(|e| format!("bootstrap admin token: {e}"))?;
    }
    let server = Arc::new(Server::new(store, config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    runtime.block_on(async {
        let running = dm_server::http::start(server)
            .await
            .map_err(|e| e.to_string())?;
        // On stdout, for people and scripts (the port when 0 was asked for).
        println!("dm-server listening on {}", running.url());
        dm_server::http::shutdown_signal().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok::<(), String>(())
    })
}

fn print_json<T: serde::Serialize>(v: &T) -> Fallible {
    let s = serde_json::to_string_pretty(v).map_err(|e| e.to_string())?;
    println!("{s}");
    Ok(())
}

fn server_for(store: &Arc<dyn Store>, config: Config) -> Server {
    Server::new(Arc::clone(store), config)
}

fn device(store: &Arc<dyn Store>, cmd: DeviceCmd, config: Config) -> Fallible {
    let now = now_millis();
    match cmd {
        DeviceCmd::Add {
            id,
            auth,
            username,
            password,
            server_password,
            server_auth,
            tags,
            notify_addr,
        } => {
            let input = NewDevice {
                auth: password.map(|password| ClientAuthInput {
                    auth_type: auth.unwrap_or(AuthType::Md5).name().into(),
                    username,
                    password,
                }),
                server_auth: server_password.map(|password| ServerAuthInput {
                    auth_type: server_auth.unwrap_or(AuthType::Md5).name().into(),
                    password,
                }),
                id,
                tags,
                notify_addr,
            };
            let added = ops::add_device(store.as_ref(), &input, now);
            let d = audit::cli(store.as_ref(), "device.add", Some(&input.id), added)
                .map_err(|e| e.to_string())?;
            print_json(&ops::device_view(&d, &config, None, now))
        }
        DeviceCmd::List {
            after,
            limit,
            tag,
            json,
        } => {
            let devices = store
                .devices(&DeviceQuery {
                    after,
                    limit,
                    tag,
                    tags_any: Vec::new(),
                })
                .map_err(|e| e.to_string())?;
            let views: Vec<_> = devices
                .iter()
                .map(|d| ops::device_view(d, &config, None, now))
                .collect();
            if json {
                return print_json(&views);
            }
            println!(
                "{:<32} {:<7} {:<10} {:<14} TAGS",
                "ID", "ONLINE", "AUTH", "LAST SEEN"
            );
            for v in views {
                println!(
                    "{:<32} {:<7} {:<10} {:<14} {}",
                    v.id,
                    if v.online { "yes" } else { "no" },
                    v.auth
                        .as_ref()
                        .map(|a| a.auth_type.as_str())
                        .unwrap_or("none"),
                    v.last_seen
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "never".into()),
                    v.tags.join(",")
                );
            }
            Ok(())
        }
        DeviceCmd::Show { id } => {
            let d = store
                .device(&id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no device {id:?}"))?;
            print_json(&ops::device_view(&d, &config, None, now))
        }
        DeviceCmd::Delete { id } => {
            let deleted = match store.delete_device(&id) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("no device {id:?}")),
                Err(e) => Err(e.to_string()),
            };
            audit::cli(store.as_ref(), "device.delete", Some(&id), deleted)?;
            println!("deleted {id}");
            Ok(())
        }
        DeviceCmd::Import {
            file,
            generate,
            prefix,
            start,
            password,
            server_password,
            tags,
        } => {
            let added = audit::cli(
                store.as_ref(),
                "device.import",
                None,
                (|| {
                    Ok::<_, String>(if let Some(count) = generate {
                        let spec = ops::Generate {
                            count,
                            prefix,
                            start,
                            auth_type: password.as_ref().map(|_| "md5".to_owned()),
                            password,
                            server_password,
                            tags,
                        };
                        let step = (count / 10).max(ops::BULK_BATCH as u64);
                        ops::generate_devices(store.as_ref(), &spec, now, |done| {
                            if done % step == 0 || done == count {
                                eprintln!("{done}/{count}");
                            }
                        })
                        .map_err(|e| e.to_string())?
                    } else {
                        let path = file.ok_or("a file or --generate is needed")?;
                        let text = if path.as_os_str() == "-" {
                            std::io::read_to_string(std::io::stdin()).map_err(|e| e.to_string())?
                        } else {
                            std::fs::read_to_string(&path)
                                .map_err(|e| format!("{}: {e}", path.display()))?
                        };
                        let inputs = ops::parse_device_file(&text).map_err(|e| e.to_string())?;
                        ops::add_devices(store.as_ref(), &inputs, now).map_err(|e| e.to_string())?
                    })
                })(),
            )?;
            println!("added {added} devices");
            Ok(())
        }
        DeviceCmd::Packages { id, fit, json } => package::device_packages(&config, &id, &fit, json),
        DeviceCmd::Notify { id, ui_mode } => {
            let mode = ops::parse_ui_mode(&ui_mode).map_err(|e| e.to_string())?;
            let server = server_for(store, config);
            let n = ops::notify(&server, None, &id, mode, now);
            let n = audit::cli(store.as_ref(), "device.notify", Some(&id), n)
                .map_err(|e| e.to_string())?;
            print_json(&n)
        }
        DeviceCmd::State(cmd) => device_state::run(store, cmd, config),
    }
}

/// Splits `PATH=VALUE`.
fn path_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(p, v)| (p.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not PATH=VALUE"))
}

fn simple(cmd: &str, target: String, data: Option<String>) -> CommandSpec {
    let mut spec = CommandSpec {
        cmd: cmd.into(),
        ..CommandSpec::default()
    };
    spec.item.target = Some(target);
    spec.item.data = data.map(DataSpec::One);
    spec
}

fn queue_specs(args: &QueueArgs) -> Result<Vec<CommandSpec>, String> {
    let mut specs = Vec::new();
    for s in &args.specs {
        specs.push(serde_json::from_str::<CommandSpec>(s).map_err(|e| format!("--spec {s}: {e}"))?);
    }
    for p in &args.gets {
        specs.push(simple("Get", p.clone(), None));
    }
    for r in &args.adds {
        let (p, v) = path_value(r)?;
        specs.push(simple("Add", p, Some(v)));
    }
    for r in &args.replaces {
        let (p, v) = path_value(r)?;
        specs.push(simple("Replace", p, Some(v)));
    }
    for p in &args.deletes {
        specs.push(simple("Delete", p.clone(), None));
    }
    for p in &args.execs {
        specs.push(simple("Exec", p.clone(), None));
    }
    if specs.is_empty() {
        return Err("no command: give --spec, --get, --replace, --add, --delete or --exec".into());
    }
    Ok(specs)
}

fn command(store: &Arc<dyn Store>, cmd: CommandCmd, config: Config) -> Fallible {
    let now = now_millis();
    match cmd {
        CommandCmd::Queue(args) => {
            let request = QueueRequest {
                devices: args.devices.clone(),
                request_id: args.request_id.clone(),
                commands: queue_specs(&args)?,
                notify: args.notify,
            };
            let server = server_for(store, config);
            if let (Some(prefix), Some(count)) = (args.device_prefix, args.count) {
                let range = ops::DeviceRange {
                    prefix,
                    start: args.start,
                    count,
                };
                let step = (count / 10).max(ops::MAX_QUEUE_DEVICES as u64);
                let target = format!("{}{}..", range.prefix, range.start);
                let queued = ops::queue_generated(
                    &server,
                    None,
                    &request,
                    &range,
                    Some("cli"),
                    now,
                    |done| {
                        if done % step == 0 || done == count {
                            eprintln!("{done}/{count} devices");
                        }
                    },
                );
                let queued = audit::cli(store.as_ref(), "command.queue", Some(&target), queued)
                    .map_err(|e| e.to_string())?;
                println!("queued {queued} commands for {count} devices");
                return Ok(());
            }
            let outcome = ops::queue(&server, None, &request, Some("cli"), now);
            let target = request.devices.join(",");
            let outcome = audit::cli(store.as_ref(), "command.queue", Some(&target), outcome)
                .map_err(|e| e.to_string())?;
            print_json(&outcome)
        }
        CommandCmd::List {
            device,
            state,
            request_id,
            limit,
            json,
        } => {
            let state = state
                .map(|s| CommandState::parse(&s).ok_or(format!("unknown state {s:?}")))
                .transpose()?;
            let commands = store
                .commands(&CommandQuery {
                    device_id: device,
                    state,
                    request_id,
                    before: None,
                    limit,
                })
                .map_err(|e| e.to_string())?;
            if json {
                return print_json(&commands);
            }
            println!(
                "{:<8} {:<28} {:<10} {:<7} {:<12} TARGET",
                "ID", "DEVICE", "STATE", "STATUS", "CMD"
            );
            for c in commands {
                let target = c
                    .spec
                    .items
                    .first()
                    .and_then(|i| i.target.clone())
                    .unwrap_or_default();
                println!(
                    "{:<8} {:<28} {:<10} {:<7} {:<12} {}",
                    c.id,
                    c.device_id,
                    c.state.as_str(),
                    c.status
                        .map(|s| s.to_string())
                        .unwrap_or_else(|| "-".into()),
                    c.spec.cmd,
                    target
                );
            }
            Ok(())
        }
        CommandCmd::Show { id } => {
            let c = store
                .command(id)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no command {id}"))?;
            print_json(&c)
        }
        CommandCmd::Cancel { id } => {
            let cancelled = store
                .cancel_command(id, now)
                .map_err(|e| e.to_string())
                .and_then(|c| c.ok_or_else(|| format!("no command {id}")))
                .and_then(|c| match c.state {
                    CommandState::Cancelled => Ok(c),
                    other => Err(format!(
                        "command {id} is {}: only a queued command can be cancelled",
                        other.as_str()
                    )),
                });
            let target = id.to_string();
            print_json(&audit::cli(
                store.as_ref(),
                "command.cancel",
                Some(&target),
                cancelled,
            )?)
        }
    }
}

fn token(store: &dyn Store, cmd: TokenCmd) -> Fallible {
    match cmd {
        TokenCmd::Create { name, role, groups } => {
            let created = ops::create_scoped_token(store, &name, &role, &groups, now_millis());
            let (t, secret) = audit::cli(store, "token.create", Some(&name), created)
                .map_err(|e| e.to_string())?;
            let scope = if t.groups.is_empty() {
                String::new()
            } else {
                format!(", limited to {}", t.groups.join(", "))
            };
            eprintln!(
                "token {:?} ({}{scope}) created; its secret (shown only now):",
                t.name, t.role
            );
            println!("{secret}");
            Ok(())
        }
        TokenCmd::List => {
            for t in store.tokens().map_err(|e| e.to_string())? {
                let groups = if t.groups.is_empty() {
                    "-".to_owned()
                } else {
                    t.groups.join(",")
                };
                println!(
                    "{:<24} {:<10} {:<14} {}",
                    t.name, t.role, t.created_at, groups
                );
            }
            Ok(())
        }
        TokenCmd::Delete { name } => {
            let deleted = match store.delete_token(&name) {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("no token {name:?}")),
                Err(e) => Err(e.to_string()),
            };
            audit::cli(store, "token.delete", Some(&name), deleted)?;
            println!("deleted {name}");
            Ok(())
        }
    }
}

fn fota_cmd(store: &Arc<dyn Store>, cmd: FotaCmd, config: Config) -> Fallible {
    let server = server_for(store, config);
    let now = now_millis();
    match cmd {
        FotaCmd::Start {
            device,
            device_prefix,
            count,
            package,
            push,
            protocol,
            watch,
        } => {
            if let Some(prefix) = device_prefix {
                let (mut started, mut skipped) = (0, 0);
                for n in 1..=count {
                    let request = dm_server::fota::StartRequest {
                        device: ops::generated_id(&prefix, n),
                        package: package.clone(),
                        protocol: protocol.clone(),
                        push,
                        install_at: None,
                    };
                    let job = dm_server::fota::start(&server, None, &request, Some("cli"), now);
                    let job = audit::cli(store.as_ref(), "fota.start", Some(&request.device), job);
                    match job {
                        Ok(_) => started += 1,
                        Err(ops::OpsError::Conflict(_)) => skipped += 1,
                        Err(e) => return Err(format!("{}: {e}", request.device)),
                    }
                }
                println!("started {started} jobs ({skipped} devices had one under way)");
                return Ok(());
            }
            let request = dm_server::fota::StartRequest {
                device: device.unwrap_or_default(),
                package,
                protocol,
                push,
                install_at: None,
            };
            let job = dm_server::fota::start(&server, None, &request, Some("cli"), now);
            let job = audit::cli(store.as_ref(), "fota.start", Some(&request.device), job)
                .map_err(|e| e.to_string())?;
            if watch {
                return watch_job(&server, job.id);
            }
            print_json(&job)
        }
        FotaCmd::Status {
            device,
            watch,
            json,
        } => {
            let jobs = dm_server::fota::jobs_of(&server, &device, 1).map_err(|e| e.to_string())?;
            let job = jobs
                .into_iter()
                .next()
                .ok_or_else(|| format!("no firmware job for {device}"))?;
            if watch {
                return watch_job(&server, job.id);
            }
            if json {
                return print_json(&job);
            }
            print_job(&job);
            Ok(())
        }
        FotaCmd::Cancel { id } => {
            let job = dm_server::fota::cancel(&server, id, now);
            let job = audit::cli(store.as_ref(), "fota.cancel", Some(&id.to_string()), job)
                .map_err(|e| e.to_string())?;
            print_json(&job)
        }
    }
}

/// A job for people: its state, then one line per step.
fn print_job(job: &dm_server::store::FotaJob) {
    println!(
        "job {} device {} package {} ({} {}): {}{}",
        job.id,
        job.device_id,
        job.package_id,
        if job.protocol.is_empty() {
            "protocol pending"
        } else {
            &job.protocol
        },
        job.delivery,
        job.state.as_str(),
        job.error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default()
    );
    for s in &job.history {
        let code = s.code.map(|c| format!(" [{c}]")).unwrap_or_default();
        println!("  {:<8}{code} {}", s.step, s.detail);
    }
}

/// Follows a job until it ends: one redrawn line on a terminal, a line per change
/// otherwise. Exits non-zero unless it succeeded.
fn watch_job(server: &Server, id: i64) -> Fallible {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let mut shown = None;
    loop {
        let job = server
            .store
            .job(id)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("job {id} vanished"))?;
        let last = job
            .history
            .last()
            .map(|s| s.step.clone())
            .unwrap_or_default();
        let line = format!(
            "job {id} {}: {} ({} steps, last {last})",
            job.device_id,
            job.state.as_str(),
            job.history.len()
        );
        if shown.as_ref() != Some(&line) {
            if tty {
                eprint!("\r\x1b[2K{line}");
                let _ = std::io::stderr().flush();
            } else {
                eprintln!("{line}");
            }
            shown = Some(line);
        }
        if job.state.is_final() {
            if tty {
                eprintln!();
            }
            print_job(&job);
            return match job.state {
                dm_server::store::JobState::Succeeded => Ok(()),
                s => Err(format!("job {id} {}", s.as_str())),
            };
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
