//! What the end-to-end tests share: `dm-server` and `dm-client` processes, an HTTP
//! client for the admin API, PostgreSQL schemas of their own, polling.

// Each test binary uses its own part of these helpers.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The bootstrap admin token every server is started with.
pub const ADMIN: &str = "e2e-admin-secret-0123456789";
/// How long anything may take on a loaded machine before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(45);

const SERVER_BIN: &str = env!("CARGO_BIN_EXE_dm-server");

/// The workspace root (dm-server's parent).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("dm-server sits in the workspace")
        .to_owned()
}

/// The newest modification time of the files under `dir`.
fn newest(dir: &Path) -> Option<std::time::SystemTime> {
    let meta = std::fs::metadata(dir).ok()?;
    if !meta.is_dir() {
        return meta.modified().ok();
    }
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| newest(&e.ok()?.path()))
        .max()
}

/// The `dm-client` binary of this build profile, next to this test's directory.
pub fn dm_client_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("dm-client", "dm-client", &["dm-tree"]))
}

/// The `dm-conformance` binary of this build profile.
pub fn dm_conformance_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("dm-conformance", "conformance", &[]))
}

/// The binary `name` of the workspace package of that name (in folder `dir`, also
/// made of `deps`' folders and syncml-core), next to this test's directory.
///
/// Built with `cargo build -p <name> --bin <name>` when it is missing or older than
/// the sources it is made of (building it every time would not be free: that build
/// and `cargo test -p dm-server` resolve features differently and rebuild each
/// other's crates).
fn workspace_bin(name: &str, dir: &str, deps: &[&str]) -> PathBuf {
    // target/<profile>/deps/e2e-<hash> -> target/<profile>/<name>
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let built = std::fs::metadata(&bin).and_then(|m| m.modified()).ok();
    let root = root();
    let sources = [dir, "syncml-core", "Cargo.lock"]
        .iter()
        .chain(deps)
        .filter_map(|d| newest(&root.join(d)))
        .max();
    let stale = match (built, sources) {
        (Some(b), Some(s)) => b < s,
        (Some(_), None) => false,
        (None, _) => true,
    };
    if stale {
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root).args(["build", "-p", name, "--bin", name]);
        if profile_dir.file_name().is_some_and(|n| n == "release") {
            cmd.arg("--release");
        }
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running cargo build -p {name}: {e}"));
        assert!(
            out.status.success(),
            "cargo build -p {name} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(bin.exists(), "cargo built no {}", bin.display());
    }
    bin
}

/// Polls `f` until it gives `Some`, or panics with `what` after [`PATIENCE`].
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    let mut pause = Duration::from_millis(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(250));
    }
}

/// Runs a command to its end, killing it after `limit`; stdout and stderr are kept.
pub fn run_limited(cmd: &mut Command, limit: Duration) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("waiting for a child"),
        Err(_) => {
            // Only the child started above, by its own id.
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let out = rx.recv_timeout(Duration::from_secs(10));
            panic!(
                "{cmd:?} did not finish within {limit:?}; killed. Output: {:?}",
                out.ok()
                    .and_then(Result::ok)
                    .map(|o| text(&o))
                    .unwrap_or_default()
            );
        }
    }
}

/// stdout then stderr, as text.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// How the server stores its data.
#[derive(Clone, Debug)]
pub enum StoreArg {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreArg {
    fn args(&self) -> Vec<String> {
        match self {
            StoreArg::Sqlite(dir) => vec!["--data".into(), dir.display().to_string()],
            StoreArg::Postgres(url) => vec!["--database".into(), url.clone()],
        }
    }
}

/// Runs a `dm-server` store command (device, command, token) to its end.
pub fn server_cli(store: &StoreArg, args: &[&str]) -> Output {
    run_limited(
        Command::new(SERVER_BIN)
            .args(store.args())
            .args(args)
            .env_remove("DM_SERVER_ADMIN_TOKEN")
            .env_remove("DM_DEVICE_PASSWORD")
            .env_remove("DM_SERVER_PASSWORD")
            .env_remove("DM_SERVER_CONFIG")
            .env_remove("DM_SERVER_DATABASE"),
        PATIENCE,
    )
}

/// A `dm-server serve` process, killed when dropped; its log lines are kept.
pub struct ServerProc {
    child: Child,
    pub url: String,
    logs: Arc<Mutex<String>>,
    agent: ureq::Agent,
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// An HTTP response: status, content type, body.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Resp {
    /// The ids of the commands a queue request answered with, in order.
    pub fn command_ids(&self) -> Vec<i64> {
        self.json()["commands"]
            .as_array()
            .expect("a list of queued commands")
            .iter()
            .map(|c| c["id"].as_i64().expect("a command id"))
            .collect()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "HTTP {}: not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

pub fn finish(resp: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Resp {
    let mut resp = resp.expect("an HTTP exchange");
    Resp {
        status: resp.status().as_u16(),
        content_type: resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .expect("a response body"),
    }
}

impl ServerProc {
    /// Starts `dm-server serve` on a free loopback port on `store` with `extra`
    /// serve flags (and `global` flags before `serve`, e.g. `--config`).
    ///
    /// The port is picked here rather than with `--listen 127.0.0.1:0` because a
    /// server listening on port 0 without `--public-url` puts port 0 in its RespURI
    /// (see `resp_uri_names_the_bound_port_when_listening_on_port_0`).
    pub fn start(store: &StoreArg, global: &[&str], extra: &[&str]) -> ServerProc {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let listen = format!("127.0.0.1:{port}");
            match ServerProc::try_start(store, global, &listen, extra) {
                Ok(p) => return p,
                // Someone took the port in between: another one.
                Err(logs) if attempt < 5 && logs.to_lowercase().contains("in use") => {}
                Err(logs) => panic!("dm-server serve did not start; its log:\n{logs}"),
            }
        }
    }

    /// Starts `dm-server serve --listen <listen>`; the server's log when it fails.
    pub fn start_on(store: &StoreArg, listen: &str, extra: &[&str]) -> ServerProc {
        ServerProc::start_with(store, &[], listen, extra)
    }

    /// [`ServerProc::start_on`] with `global` flags before `serve` (`--config`).
    pub fn start_with(
        store: &StoreArg,
        global: &[&str],
        listen: &str,
        extra: &[&str],
    ) -> ServerProc {
        ServerProc::try_start(store, global, listen, extra)
            .unwrap_or_else(|logs| panic!("dm-server serve did not start; its log:\n{logs}"))
    }

    fn try_start(
        store: &StoreArg,
        global: &[&str],
        listen: &str,
        extra: &[&str],
    ) -> Result<ServerProc, String> {
        let mut child = Command::new(SERVER_BIN)
            .args(store.args())
            .args(global)
            .args(["serve", "--listen", listen])
            .args(extra)
            .env("DM_SERVER_ADMIN_TOKEN", ADMIN)
            .env("RUST_LOG", "info")
            .env_remove("DM_SERVER_CONFIG")
            .env_remove("DM_SERVER_DATABASE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting dm-server serve");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let sink = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut line = String::new();
            while let Ok(n) = stderr.read_line(&mut line) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let (tx, rx) = mpsc::channel();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = stdout.read_line(&mut line);
            let _ = tx.send(line);
            // Drain whatever else comes, so the server never blocks on a pipe.
            let _ = std::io::copy(&mut stdout.by_ref(), &mut std::io::sink());
        });
        let line = rx.recv_timeout(PATIENCE).unwrap_or_default();
        let mut proc = ServerProc {
            child,
            url: String::new(),
            logs,
            agent: agent(),
        };
        match line.trim().strip_prefix("dm-server listening on ") {
            Some(url) => {
                proc.url = url.to_owned();
                Ok(proc)
            }
            None => {
                let _ = proc.child.kill();
                let _ = proc.child.wait();
                // The log thread reads to the end of the closed pipe.
                std::thread::sleep(Duration::from_millis(200));
                Err(format!("(stdout {line:?})\n{}", proc.logs()))
            }
        }
    }

    /// Kills the server (SIGKILL: nothing gets to finish).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    pub fn dm_url(&self) -> String {
        format!("{}/dm", self.url)
    }

    pub fn get(&self, path: &str) -> Resp {
        finish(
            self.agent
                .get(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {ADMIN}"))
                .call(),
        )
    }

    pub fn post(&self, path: &str, body: &Value) -> Resp {
        finish(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {ADMIN}"))
                .send_json(body),
        )
    }

    /// POST raw bytes to an API path.
    pub fn post_raw(&self, path: &str, content_type: &str, body: &[u8]) -> Resp {
        finish(
            self.agent
                .post(format!("{}{path}", self.url))
                .header("Authorization", format!("Bearer {ADMIN}"))
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// GET an API path that must answer 200; its JSON.
    pub fn api(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(
            r.status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()
    }

    /// POST a DM message (raw bytes) to `url` with this content type.
    pub fn post_dm(&self, url: &str, content_type: &str, body: &[u8]) -> Resp {
        finish(
            self.agent
                .post(url)
                .header("Content-Type", content_type)
                .send(body),
        )
    }

    /// The value of an unlabelled Prometheus counter or gauge in /metrics.
    pub fn metric(&self, name: &str) -> f64 {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
            .parse()
            .unwrap()
    }

    /// `URL-encoded` device id for a path or query.
    pub fn enc(id: &str) -> String {
        id.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `dm-client` device in a state directory.
pub struct Client {
    pub state: PathBuf,
    pub id: String,
}

/// How a device is set up.
#[derive(Clone, Debug)]
pub struct ClientSpec<'a> {
    pub id: &'a str,
    /// The user name toward the server (default: the device id).
    pub user: Option<&'a str>,
    pub auth: &'a str,
    pub password: &'a str,
    pub encoding: &'a str,
    pub model: &'a str,
}

impl Client {
    /// `dm-client init` in `dir/<name>` toward `server_url`.
    pub fn init(dir: &Path, server_url: &str, spec: &ClientSpec<'_>) -> Client {
        Client::init_with(dir, server_url, spec, &[])
    }

    /// [`Client::init`] with more `dm-client init` flags (`--fw-key`...).
    pub fn init_with(
        dir: &Path,
        server_url: &str,
        spec: &ClientSpec<'_>,
        extra: &[&str],
    ) -> Client {
        let state = dir.join(spec.id.replace(':', "_"));
        let mut cmd = Command::new(dm_client_bin());
        cmd.arg("--state").arg(&state).args([
            "init",
            "--server",
            server_url,
            "--device-id",
            spec.id,
        ]);
        if let Some(u) = spec.user {
            cmd.args(["--user", u]);
        }
        let out = run_limited(
            cmd.args(["--auth", spec.auth, "--password", spec.password])
                .args(["--encoding", spec.encoding, "--model", spec.model])
                .args(extra)
                .env_remove("DM_CLIENT_STATE")
                .env_remove("DM_CLIENT_LOG"),
            PATIENCE,
        );
        assert!(out.status.success(), "dm-client init: {}", text(&out));
        Client {
            state,
            id: spec.id.to_owned(),
        }
    }

    /// `dm-client run`: one session; its output.
    pub fn run(&self) -> Output {
        run_limited(
            Command::new(dm_client_bin())
                .arg("--state")
                .arg(&self.state)
                .args(["--log", "info", "run"])
                .env_remove("DM_CLIENT_STATE")
                .env_remove("DM_CLIENT_LOG"),
            Duration::from_secs(90),
        )
    }

    /// `dm-client status`: the firmware version the device runs.
    pub fn firmware_version(&self) -> String {
        let out = run_limited(
            Command::new(dm_client_bin())
                .arg("--state")
                .arg(&self.state)
                .arg("status")
                .env_remove("DM_CLIENT_STATE")
                .env_remove("DM_CLIENT_LOG"),
            PATIENCE,
        );
        assert!(out.status.success(), "dm-client status: {}", text(&out));
        text(&out)
            .lines()
            .find_map(|l| l.strip_prefix("firmware version: "))
            .unwrap_or_else(|| panic!("no version in {}", text(&out)))
            .trim()
            .to_owned()
    }

    /// `dm-client run`, which must succeed.
    pub fn run_ok(&self) {
        let out = self.run();
        assert!(
            out.status.success() && text(&out).contains("session 1: ok"),
            "dm-client run for {}: {}",
            self.id,
            text(&out)
        );
    }
}

/// Runs `f` on each item in threads of their own, all at once; panics propagate.
pub fn all_at_once<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|s| {
        let handles: Vec<_> = items.iter().map(|it| s.spawn(|| f(it))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// A PostgreSQL schema of the test's own, dropped at the end.
pub struct PgSchema {
    pub name: String,
}

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432/test";

fn pg_connect() -> postgres::Client {
    postgres::Config::new()
        .host("127.0.0.1")
        .port(5432)
        .user("postgres")
        .dbname("test")
        .connect_timeout(Duration::from_secs(10))
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| {
            panic!(
                "these tests need PostgreSQL on 127.0.0.1:5432 (trust auth, database `test`, \
                 user `postgres`): start it (scripts/setup.sh sets up the machine). \
                 Connecting failed: {e}"
            )
        })
}

impl PgSchema {
    pub fn new(prefix: &str) -> PgSchema {
        let mut rnd = [0u8; 6];
        getrandom::fill(&mut rnd).unwrap();
        let suffix: String = rnd.iter().map(|b| format!("{b:02x}")).collect();
        let name = format!("e2e_{prefix}_{suffix}");
        pg_connect()
            .batch_execute(&format!("CREATE SCHEMA {name}"))
            .expect("CREATE SCHEMA");
        PgSchema { name }
    }

    /// The URL that makes a server use this schema (through search_path).
    pub fn url(&self) -> String {
        format!("{PG_BASE}?options=-csearch_path%3D{}", self.name)
    }

    /// Runs a query and returns the first column of each row as text.
    pub fn column(&self, sql: &str) -> Vec<String> {
        let sql = sql.replace("{schema}", &self.name);
        pg_connect()
            .query(sql.as_str(), &[])
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| {
                r.try_get::<_, String>(0)
                    .or_else(|_| r.try_get::<_, i64>(0).map(|v| v.to_string()))
                    .unwrap()
            })
            .collect()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut c) = std::panic::catch_unwind(pg_connect) {
            let _ = c.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
        }
    }
}

/// A `dm-server serve` on SQLite in a temporary directory, its configuration file
/// shared with the command line (its `public_url`, the server's own address, is
/// what download URLs start with, whichever process makes them), and the key
/// packages are signed with. Suites add their own methods.
pub struct Lab {
    pub dir: tempfile::TempDir,
    pub store: StoreArg,
    pub config: String,
    pub listen: String,
    pub server: ServerProc,
    pub key: syncml_core::package::SigningKey,
}

impl Lab {
    /// A lab whose configuration carries `extra` TOML after `listen` and
    /// `public_url` (top-level keys first, then tables).
    pub fn launch(extra: &str) -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreArg::Sqlite(dir.path().join("data"));
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let config = dir.path().join("dm-server.toml");
        std::fs::write(
            &config,
            format!("listen = \"{listen}\"\npublic_url = \"http://{listen}\"\n{extra}"),
        )
        .unwrap();
        let config = config.to_str().unwrap().to_owned();
        let server = ServerProc::start_with(&store, &["--config", &config], &listen, &[]);
        Lab {
            dir,
            store,
            config,
            listen,
            server,
            key: syncml_core::package::SigningKey::from_seed(&[7; 32]),
        }
    }

    /// A `dm-server` command-line run on the lab's store and configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut all = vec!["--config", self.config.as_str()];
        all.extend_from_slice(args);
        server_cli(&self.store, &all)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Kills the server and starts another on the same port and data.
    pub fn restart(&mut self) {
        self.server.stop();
        self.server =
            ServerProc::start_with(&self.store, &["--config", &self.config], &self.listen, &[]);
    }
}
