//! Server settings: a TOML file (`--config`), every option also settable by flag.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Whether unknown devices may register themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Registration {
    /// Only pre-provisioned devices are served; an unknown one is refused exactly as
    /// a wrong password is (nothing reveals which ids exist).
    #[default]
    Closed,
    /// An unknown device is registered on its first session, without credentials.
    Open,
}

/// Every setting of the server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// Where the SQLite database lives (when `database` is not set).
    pub data_dir: PathBuf,
    /// A `postgres://` URL; SQLite in `data_dir` when unset.
    pub database: Option<String>,
    /// The URL devices reach this server at, for RespURI (`http://host:port`).
    /// Defaults to `http(s)://<listen>`. Give each node its own to pin sessions to
    /// nodes, or a shared one behind a load balancer.
    pub public_url: Option<String>,
    /// The server's identity (DMAcc ServerID; package #0 server id).
    pub server_id: String,
    pub registration: Registration,
    /// A session with no message for this long is ended (seconds).
    pub session_timeout_secs: u64,
    /// The largest request body accepted (bytes); also announced as MaxMsgSize.
    pub max_message_size: usize,
    /// The largest large object accepted from a device (bytes; MaxObjSize).
    pub max_object_size: u64,
    /// The message size used toward a device that announces no MaxMsgSize.
    pub default_client_message_size: u64,
    /// The most queued commands sent in one session.
    pub max_commands_per_session: usize,
    /// The most messages one session may take.
    pub max_session_messages: u32,
    /// Sessions a command may go out in before it is failed.
    pub max_attempts: u32,
    /// Nodes read from each device every session (one Get), for the inventory.
    pub inventory_nodes: Vec<String>,
    /// Component name -> the node its version is read from (`[components]`:
    /// `copier = "./DevDetail/Ext/Comp/copier"`). Every node here is read each
    /// session besides `inventory_nodes`. A component not listed is read from
    /// `./DevDetail/Ext/Comp/<NAME>` when the inventory has it (see
    /// `firmware::matrix`).
    pub components: std::collections::BTreeMap<String, String>,
    /// Authentication failures allowed per device and source address, and per
    /// source address, within `auth_failure_window_secs`, before further attempts
    /// are refused unread; a device from all addresses together gets ten times as
    /// many (see `ratelimit`).
    pub max_auth_failures: u32,
    pub auth_failure_window_secs: u64,
    /// A device is shown online for this long after its last message (seconds).
    pub presence_window_secs: u64,
    /// PEM certificate chain and key: serve HTTPS instead of HTTP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `text` or `json`.
    pub log_format: String,
    /// The longest a long-poll request waits (seconds).
    pub max_poll_wait_secs: u64,
    /// Accept nonces digested as their base64 text (the libdmclient defect).
    pub accept_double_b64_nonce: bool,
    /// How long a device's download URL of a package (`/dl/<token>`) stays valid
    /// (seconds).
    pub download_token_ttl_secs: u64,
    /// The largest update package accepted into the repository (bytes).
    pub max_package_size: u64,
    /// Events older than this are pruned from the event log (days; 0 keeps them).
    pub event_retention_days: u32,
    /// Event streams (`/api/v1/events/stream`) open at once; more get 503.
    pub max_event_streams: usize,
    /// An idle event stream gets a comment this often (seconds), so that proxies
    /// keep it open and clients notice a dead connection.
    pub event_keepalive_secs: u64,
    /// Where events are POSTed (`[[webhooks]]` tables).
    pub webhooks: Vec<crate::webhooks::WebhookConfig>,
    /// The longest a webhook request may take (seconds).
    pub webhook_timeout_secs: u64,
    /// The wait before retrying a failed delivery (milliseconds), doubled at each
    /// failure up to `webhook_retry_max_secs`.
    pub webhook_retry_initial_ms: u64,
    pub webhook_retry_max_secs: u64,
    /// How often campaigns are moved on: finished jobs recorded, devices started
    /// (milliseconds).
    pub campaign_tick_ms: u64,
    /// How often a campaign over groups or filters looks for devices that joined
    /// them (seconds).
    pub campaign_rescan_secs: u64,
    /// Jobs started to reach a device's desired state before it is given up
    /// (`desired.failed`).
    pub desired_max_attempts: u32,
    /// The wait before the next job after a failed one (seconds), doubled at each
    /// further failure.
    pub desired_retry_secs: u64,
    /// Record every DM session into this folder, one subfolder per session, in the
    /// recorded-session format (`fixtures/sessions/README.md`); unset: no recording.
    pub record_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("dm-data"),
            database: None,
            public_url: None,
            server_id: "dm-server".into(),
            registration: Registration::Closed,
            session_timeout_secs: 300,
            max_message_size: 1 << 20,
            max_object_size: 16 << 20,
            default_client_message_size: 64 * 1024,
            max_commands_per_session: 1000,
            max_session_messages: 1000,
            max_attempts: 3,
            inventory_nodes: [
                "./DevDetail/DevTyp",
                "./DevDetail/OEM",
                "./DevDetail/FwV",
                "./DevDetail/SwV",
                "./DevDetail/HwV",
                // Interior nodes: their children name the firmware slots.
                "./FWUpdate",
                "./FUMO",
            ]
            .map(String::from)
            .to_vec(),
            components: [("firmware".to_owned(), "./DevDetail/FwV".to_owned())].into(),
            max_auth_failures: 10,
            auth_failure_window_secs: 300,
            presence_window_secs: 600,
            tls_cert: None,
            tls_key: None,
            log_format: "text".into(),
            max_poll_wait_secs: 300,
            accept_double_b64_nonce: false,
            download_token_ttl_secs: 7 * 24 * 3600,
            max_package_size: 512 << 20,
            event_retention_days: 30,
            max_event_streams: 64,
            event_keepalive_secs: 15,
            webhooks: Vec::new(),
            webhook_timeout_secs: 10,
            webhook_retry_initial_ms: 1000,
            webhook_retry_max_secs: 300,
            campaign_tick_ms: 2000,
            campaign_rescan_secs: 60,
            desired_max_attempts: 3,
            desired_retry_secs: 300,
            record_dir: None,
        }
    }
}

impl Config {
    /// Reads a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The store URL: the PostgreSQL one, or the SQLite file in the data directory.
    pub fn store_url(&self) -> String {
        match &self.database {
            Some(url) => url.clone(),
            None => self.data_dir.join("dm-server.sqlite").display().to_string(),
        }
    }

    /// The nodes the inventory Gets each session: `inventory_nodes`, then the
    /// `components` nodes not among them.
    pub fn inventory_gets(&self) -> impl Iterator<Item = &str> {
        let listed = |n: &str| {
            let bare = n.trim().trim_start_matches("./");
            self.inventory_nodes
                .iter()
                .any(|i| i.trim().trim_start_matches("./") == bare)
        };
        self.inventory_nodes.iter().map(String::as_str).chain(
            self.components
                .values()
                .map(String::as_str)
                .filter(move |n| !listed(n)),
        )
    }

    /// The base URL devices reach this server at.
    pub fn base_url(&self) -> String {
        match &self.public_url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", self.listen)
            }
        }
    }
}
