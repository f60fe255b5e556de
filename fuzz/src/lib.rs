//! Shared pieces of the fuzz targets: the multi-message input format, and the
//! server and client rigs the session targets drive.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use dm_client::account::{provision, AccountSpec};
use dm_client::download::DownloadError;
use dm_client::session::{ClientSession, Config as ClientConfig, Reply, Step, Trigger};
use dm_server::spec::CommandSpec;
use dm_server::store::{ClientAuth, Device, NewCommand, SqliteStore, Store};
use dm_server::{Config, DmRequest, Server};
use dm_tree::DmTree;
use syncml_core::auth::UserKey;

/// Separates the messages of one input of the session targets. Bytes that cannot
/// occur in UTF-8 text, so an XML message never contains it by chance; the seed
/// script joins recorded messages with it, and `syncml.dict` gives it to libFuzzer.
pub const SEPARATOR: &[u8] = b"\xFF\xFEnext\xFE\xFF";

/// Most messages taken from one input (the engines bound sessions themselves; this
/// only keeps one input's run short).
pub const MAX_MESSAGES: usize = 8;

/// Splits an input into messages at [`SEPARATOR`].
pub fn split_messages(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < MAX_MESSAGES {
        match find(rest, SEPARATOR) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => {
                out.push(rest);
                break;
            }
        }
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The device id of the fixtures (fixtures/messages, the aosp-dm11 vectors use
/// others; both are provisioned on the server and the first is the client's).
pub const DEVICE: &str = "IMEI:493005100592800";
/// Other device ids seen in the seeds, provisioned with other credentials.
const OTHER_DEVICES: &[(&str, &str)] = &[
    ("IMEI:490154203237518", "basic"),
    ("IMEI:1", "md5"),
    ("IMEI:493005100592801", "hmac"),
];
/// The server URL the fixtures' device talks to.
pub const SERVER_URL: &str = "https://dm.example.com/dm";
const BASE: &str = "https://dm.example.com";

/// The server of the `server_session` target: one per process, on a SQLite store
/// in a fresh temporary directory (in /dev/shm when there is one).
pub struct ServerRig {
    pub server: Server,
    now: std::sync::atomic::AtomicI64,
    _dir: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The commands queued for the device whenever its queue is empty, so that every
/// session has commands to send and package 3's statuses and results to match.
const QUEUED: &[&str] = &[
    r#"{"cmd":"Replace","target":"./DevDetail/Ext/Note","data":"hello"}"#,
    r#"{"cmd":"Add","target":"./Vendor","format":"node"}"#,
    r#"{"cmd":"Get","target":"./DevDetail/FwV"}"#,
    r#"{"cmd":"Get","target":"./DevInfo/Mod"}"#,
    r#"{"cmd":"Delete","target":"./Vendor/Old"}"#,
];

impl ServerRig {
    pub fn get() -> &'static ServerRig {
        static RIG: OnceLock<ServerRig> = OnceLock::new();
        RIG.get_or_init(ServerRig::new)
    }

    fn new() -> ServerRig {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("syncml-dm-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temporary directory");
        let store = SqliteStore::open(&dir.join("dm.sqlite")).expect("SQLite store");
        let cfg = Config {
            server_id: "srv".into(),
            public_url: Some(BASE.into()),
            // Failed logins are the daily bread of a fuzzer: no lock-out.
            max_auth_failures: u32::MAX,
            ..Config::default()
        };
        let server = Server::new(Arc::new(store), cfg);
        let store = &*server.store;
        add_device(store, DEVICE, "none");
        for (id, auth) in OTHER_DEVICES {
            add_device(store, id, auth);
        }
        ServerRig {
            server,
            now: std::sync::atomic::AtomicI64::new(1_800_000_000_000),
            _dir: TempDir(dir),
        }
    }

    /// Starts an input: time moves past the session timeout and idle sessions are
    /// expired, so that what one input opened does not change how the next is
    /// answered; the device's queue is refilled when empty.
    pub fn begin(&self) -> i64 {
        let step = (self.server.config.session_timeout_secs as i64 + 1) * 1000;
        let now = self
            .now
            .fetch_add(step, std::sync::atomic::Ordering::Relaxed)
            + step;
        self.server.expire_idle(now);
        let store = &*self.server.store;
        if store
            .pending_commands(DEVICE, 1)
            .map(|p| p.is_empty())
            .unwrap_or(false)
        {
            let cmds: Vec<NewCommand> = QUEUED
                .iter()
                .map(|s| NewCommand {
                    device_id: DEVICE.into(),
                    request_id: None,
                    spec: serde_json::from_str::<CommandSpec>(s)
                        .expect("spec")
                        .normalized()
                        .expect("normalized spec"),
                    created_by: Some("fuzz".into()),
                })
                .collect();
            store.queue_commands(&cmds, 1).expect("queue");
        }
        now
    }

    /// Posts each message in turn, to the RespURI of the previous reply.
    pub fn run(&self, messages: &[&[u8]]) {
        let mut now = self.begin();
        let mut token: Option<String> = None;
        for body in messages {
            let req = DmRequest {
                body: body.to_vec(),
                content_type: None,
                hmac: None,
                token: token.clone(),
                remote_addr: Some("192.0.2.7".into()),
            };
            let resp = self.server.handle_dm(&req, now);
            now += 1000;
            if resp.status == 200 {
                // The reply must be a message our own decoder reads back.
                let reply = syncml_core::decode(&resp.body)
                    .unwrap_or_else(|e| panic!("the server's reply does not decode: {e}"));
                if let Some(t) = reply
                    .hdr
                    .resp_uri
                    .as_deref()
                    .and_then(|u| u.strip_prefix(&format!("{BASE}/dm/s/")))
                {
                    token = Some(t.to_owned());
                }
            }
        }
    }
}

fn add_device(store: &dyn Store, id: &str, auth: &str) {
    store
        .add_device(&Device {
            id: id.into(),
            auth: (auth != "none").then(|| ClientAuth {
                auth_type: auth.into(),
                username: "dev-user".into(),
                key: UserKey::new("dev-user", "devpw").key_b64().to_owned(),
            }),
            nonce: String::new(),
            server_auth: None,
            server_nonce: String::new(),
            tags: vec![],
            notify_addr: None,
            inventory: Default::default(),
            registered_by: "provisioned".into(),
            created_at: 0,
            last_seen: None,
            last_session: None,
        })
        .expect("device");
}

/// The device of the `client_session` target, built once and cloned per input.
pub fn client_tree() -> DmTree {
    let info: Vec<(String, String)> = [
        ("DevId", DEVICE),
        ("Man", "Acme"),
        ("Mod", "X1"),
        ("Lang", "en"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let mut dm = DmTree::in_memory(&info).expect("tree");
    provision(
        &mut dm,
        &AccountSpec {
            name: "srv".into(),
            server_id: "srv".into(),
            addr: SERVER_URL.into(),
            auth_type: "BASIC".into(),
            user: "dev-user".into(),
            password: "devpw".into(),
            server_auth: None,
        },
    )
    .expect("account");
    dm
}

/// Runs one client session: package 1, then each message as the server's reply.
/// A download the session asks for fails (no network here).
pub fn run_client(messages: &[&[u8]]) {
    let mut dm = client_tree();
    let t0 = Instant::now();
    let cfg = ClientConfig {
        max_messages: 32,
        ..ClientConfig::default()
    };
    let (mut s, mut step) = ClientSession::start(
        &dm,
        cfg,
        "srv",
        Trigger::Client {
            session_id: "1".into(),
        },
        vec![],
        t0,
    )
    .expect("session start");
    let mut next = messages.iter();
    let mut now = t0;
    for _ in 0..(4 * MAX_MESSAGES) {
        now += Duration::from_millis(10);
        step = match step {
            Step::Send(t) => {
                // What the device sends must decode (it is our own encoder's output).
                if let Err(e) = syncml_core::decode(&t.body) {
                    panic!("the client's message does not decode: {e}");
                }
                match next.next() {
                    Some(body) => s.receive(
                        &mut dm,
                        &mut dm_tree::Headless,
                        Reply {
                            status: 200,
                            content_type: None,
                            hmac: None,
                            body: body.to_vec(),
                        },
                        now,
                    ),
                    None => return,
                }
            }
            Step::Download(_) => s.download_done(
                &mut dm,
                &mut dm_tree::Headless,
                Err(DownloadError::Timeout),
                now,
            ),
            Step::Done(_) => return,
        };
    }
}

/// The `Debug` text of a value with every element namespace replaced by `_`.
///
/// WBXML has no way to carry the namespace URI of an element outside its code pages
/// (SyncML, MetInf, DDF): such an element is written as a LITERAL tag and reads back
/// in the namespace of its parent. A message holding foreign elements therefore
/// changes in exactly that way on a trip through WBXML; this is what is compared
/// then, so that any other change is still caught.
pub fn without_namespaces(v: &impl std::fmt::Debug) -> String {
    let s = format!("{v:?}");
    let mut out = String::with_capacity(s.len());
    let mut rest = s.as_str();
    while let Some(i) = rest.find("ns: ") {
        out.push_str(&rest[..i + 4]);
        rest = &rest[i + 4..];
        // The value runs to the next ", name: " (element fields are in that order).
        match rest.find(", name: ") {
            Some(j) => {
                out.push('_');
                rest = &rest[j..];
            }
            None => break,
        }
    }
    out.push_str(rest);
    out
}

/// Whether a value holds generic elements (unknown commands, extensions, embedded
/// documents) whose namespace a trip through WBXML may change: a foreign namespace,
/// or a name with no token on its namespace's code page (written as a LITERAL tag,
/// it reads back in its parent's namespace).
pub fn has_foreign_namespace(v: &impl std::fmt::Debug) -> bool {
    format!("{v:?}").contains("Element {")
}

/// Lets the sanitizer's ODR check off for the binaries that link SQLite: its
/// amalgamation has two file-local arrays named `aiOff`, which AddressSanitizer
/// takes for one global defined twice (a false positive; rusqlite's bundled build).
#[macro_export]
macro_rules! asan_options {
    () => {
        #[no_mangle]
        pub extern "C" fn __asan_default_options() -> *const std::ffi::c_char {
            c"detect_odr_violation=0".as_ptr()
        }
    };
}
