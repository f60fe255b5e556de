//! A managed device: the tree, the firmware side, the update agent and the HTTP
//! parts wired to the session engine. This is the driver the `dm-client` binary
//! and the simulator run; a vendor with its own transport drives
//! [`crate::session`] directly instead.
//!
//! A state directory holds:
//!
//! ```text
//! client.toml   settings (DeviceConfig)
//! tree/         the management tree (dm-tree store and DDFs)
//! packages/     firmware packages being downloaded or kept
//! slots/        the reference update agent's two firmware slots
//! components/   images of components other than the firmware (see components.rs)
//! ```

pub mod components;
mod config;
pub mod daemon;
pub mod demo;
pub mod simulate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use dm_tree::DmTree;
use syncml_core::Command;

use crate::account::{provision, AccountSpec};
use crate::download::{
    DownloadError, Downloader, Fetched, HttpConfig, HttpDownloader, Progress, Request,
};
use crate::firmware::{Firmware, FirmwareConfig, Ui, Work};
use crate::session::{self, ClientSession, Outcome, Step, Trigger};
use crate::transport::{HttpTransport, HttpTransportConfig};
use crate::update::{SlotAgent, UpdateAgent};

pub use config::DeviceConfig;

/// Why the device could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("configuration: {0}")]
    Config(String),
    #[error("tree: {0}")]
    Tree(#[from] dm_tree::Error),
    #[error("session: {0}")]
    Session(#[from] session::SessionError),
    #[error("firmware: {0}")]
    Firmware(#[from] crate::firmware::Error),
    #[error("update agent: {0}")]
    Update(#[from] crate::update::UpdateError),
    #[error("transport: {0}")]
    Transport(String),
}

impl DeviceError {
    fn io(path: &Path, e: impl std::fmt::Display) -> DeviceError {
        DeviceError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

/// What `dm-client init` sets up.
#[derive(Debug, Clone)]
pub struct InitSpec {
    pub server_url: String,
    pub server_id: String,
    pub device_id: String,
    pub manufacturer: String,
    pub model: String,
    pub firmware_version: String,
    /// The image in the first slot (a synthetic one when none is given).
    pub firmware_image: Option<Vec<u8>>,
    /// `BASIC`, `DIGEST` or `HMAC`.
    pub auth_type: String,
    pub user: String,
    pub password: String,
    pub server_password: Option<String>,
    /// Ed25519 public keys (b64) packages must be signed with.
    pub firmware_keys: Vec<String>,
    /// Components other than the firmware and their first versions
    /// (`./DevDetail/Ext/Comp/<name>`).
    pub components: Vec<(String, String)>,
    pub config: DeviceConfig,
}

/// How a simulated device lives (see [`Device::simulated`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Simulation {
    /// Keep the whole device (tree included) in its directory and take it up again
    /// as it is when the directory holds one; else the tree lives in memory.
    pub keep: bool,
    /// The first this many updates the device applies fail (and roll back); the
    /// count of failures is kept in the device's directory.
    pub fail_updates: u64,
}

/// The file of a simulated device that counts the updates failed on purpose.
pub const FAILED_UPDATES_FILE: &str = "failed-updates";

/// Refuses what would make a broken device: an account the tree cannot hold, a
/// server URL that is not HTTP(S), a signing key that is not one.
fn check_spec(spec: &InitSpec) -> Result<(), DeviceError> {
    let id = &spec.server_id;
    if id.is_empty() || dm_tree::Acl::parse(&format!("Get={id}")).is_err() {
        return Err(DeviceError::Config(format!(
            "server id {id:?}: use letters, digits and . - _ : (it names the server in ACLs)"
        )));
    }
    let url = spec.server_url.to_ascii_lowercase();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(DeviceError::Config(format!(
            "server URL {:?}: http:// or https:// expected",
            spec.server_url
        )));
    }
    for k in &spec.firmware_keys {
        syncml_core::package::PublicKey::from_b64(k)
            .map_err(|e| DeviceError::Config(format!("firmware key {k:?}: {e}")))?;
    }
    components::check(&spec.components)
}

/// The FUMO and FWUpdate slots every device gets.
const SLOT: &str = "1";

/// Writes the device's standard nodes, account, slots and keys into `dm`.
fn provision_device(dm: &mut DmTree, spec: &InitSpec) -> Result<(), DeviceError> {
    provision(
        dm,
        &AccountSpec {
            name: "1".into(),
            server_id: spec.server_id.clone(),
            addr: spec.server_url.clone(),
            auth_type: spec.auth_type.clone(),
            user: spec.user.clone(),
            password: spec.password.clone(),
            server_auth: spec
                .server_password
                .clone()
                .map(|p| (spec.server_id.clone(), p)),
        },
    )?;
    for (i, key) in spec.firmware_keys.iter().enumerate() {
        let path = format!("./DevDetail/Ext/FwKeys/k{i}");
        dm.tree.ensure_interior("./DevDetail/Ext/FwKeys")?;
        dm.set(&path, key.as_bytes())?;
    }
    dm.set("./DevDetail/FwV", spec.firmware_version.as_bytes())?;
    components::provision(dm, &spec.components)?;
    dm.tree.commit()?;
    Firmware::create_fumo(dm, SLOT)?;
    Firmware::create_fwupdate(dm, SLOT)?;
    Ok(())
}

fn devinfo(spec: &InitSpec) -> Vec<(String, String)> {
    vec![
        ("DevId".into(), spec.device_id.clone()),
        ("Man".into(), spec.manufacturer.clone()),
        ("Mod".into(), spec.model.clone()),
        ("DmV".into(), "1.2".into()),
        ("Lang".into(), "en-US".into()),
    ]
}

fn synthetic_image(spec: &InitSpec) -> Vec<u8> {
    spec.firmware_image.clone().unwrap_or_else(|| {
        format!("{} firmware {}\n", spec.model, spec.firmware_version).into_bytes()
    })
}

/// Where download progress goes: the URL and how far it got.
pub type ProgressSink = Box<dyn FnMut(&str, Progress) + Send>;

/// A device and everything it runs.
pub struct Device {
    pub dm: DmTree,
    pub firmware: Firmware,
    pub agent: Box<dyn UpdateAgent + Send>,
    pub config: DeviceConfig,
    transport: HttpTransport,
    downloader: HttpDownloader,
    /// Receives download progress (the binary draws a bar on a terminal).
    progress: Option<ProgressSink>,
    /// A pause after each durable step of an update, from `DM_CLIENT_STEP_PAUSE_MS`:
    /// lets power-loss tests land their kills inside every step, not only in the
    /// long download.
    step_pause: std::time::Duration,
    /// Where the images of components other than the firmware are kept.
    components_dir: PathBuf,
    /// Updates a simulated device fails on purpose.
    faults: Option<Arc<components::FailBudget>>,
    /// Where exchanges are recorded (`--record DIR`), and the one being recorded.
    record_dir: Option<PathBuf>,
    recording: Option<crate::record::Recording>,
    /// The package #0 behind the next server-initiated run, for its recording.
    package0: Option<Vec<u8>>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one [`Device::run`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub sessions: Vec<Outcome>,
    /// How long each session took, from package 1 to its end.
    pub session_times: Vec<std::time::Duration>,
    /// Downloads and updates run after the sessions.
    pub work_done: usize,
    /// Whether the firmware was switched (and the reboot played).
    pub rebooted: bool,
}

impl RunSummary {
    /// Whether every session ended normally.
    pub fn ok(&self) -> bool {
        self.sessions.iter().all(|o| o.result.is_ok())
    }
}

impl Device {
    /// Creates a device's state directory. Refuses a directory that holds one.
    pub fn init(dir: &Path, spec: &InitSpec) -> Result<(), DeviceError> {
        Device::init_with(dir, spec, true)
    }

    /// [`Device::init`]; `durable_slots` false leaves the firmware slots unsynced
    /// (a simulated device).
    fn init_with(dir: &Path, spec: &InitSpec, durable_slots: bool) -> Result<(), DeviceError> {
        if dir.join(config::FILE).exists() {
            return Err(DeviceError::Config(format!(
                "{} already holds a device",
                dir.display()
            )));
        }
        let mut cfg = spec.config.clone();
        cfg.server_id = spec.server_id.clone();
        check_spec(spec)?;
        // CA files are read now (a wrong path fails here, not at the first session)
        // and kept by absolute path (the device may be run from anywhere).
        cfg.extra_ca = cfg
            .extra_ca
            .iter()
            .map(|p| std::fs::canonicalize(p).map_err(|e| DeviceError::io(p, e)))
            .collect::<Result<_, _>>()?;
        cfg.extra_ca_pem()?;
        // Built beside, then renamed into place: a failed init leaves nothing that
        // would block the next one.
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.with_file_name(format!(".{name}.init-{}", std::process::id()));
        let built = (|| {
            std::fs::create_dir_all(&tmp).map_err(|e| DeviceError::io(&tmp, e))?;
            let mut dm = DmTree::init(&tmp.join("tree"), &[], &devinfo(spec))?;
            provision_device(&mut dm, spec)?;
            drop(dm);
            let slots = tmp.join("slots");
            if durable_slots {
                SlotAgent::init(slots, &synthetic_image(spec), &spec.firmware_version)?;
            } else {
                SlotAgent::init_volatile(slots, &synthetic_image(spec), &spec.firmware_version)?;
            }
            cfg.save(&tmp)
        })();
        if let Err(e) = built {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        // An existing directory must be empty (rename replaces an empty one only).
        if dir.exists() {
            std::fs::remove_dir(dir).map_err(|e| {
                let _ = std::fs::remove_dir_all(&tmp);
                DeviceError::io(dir, format!("not an empty directory: {e}"))
            })?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| DeviceError::io(dir, e))
    }

    /// Opens a device's state directory and boots it: a firmware switched before a
    /// power loss or reboot is checked, and its outcome recorded for the server.
    pub fn open(dir: &Path, ui: Box<dyn Ui>) -> Result<Device, DeviceError> {
        let config = DeviceConfig::load(dir)?;
        let dm = DmTree::open(&dir.join("tree"))?;
        let agent = SlotAgent::open(dir.join("slots"))?;
        Device::assemble(dm, Box::new(agent), config, dir, ui, None)
    }

    /// A device whose tree lives in memory (the simulator), with its packages and
    /// slots under `dir`.
    pub fn in_memory(dir: &Path, spec: &InitSpec, ui: Box<dyn Ui>) -> Result<Device, DeviceError> {
        Device::simulated(dir, spec, ui, &Simulation::default())
    }

    /// A simulated device in `dir`. Without [`Simulation::keep`], as
    /// [`Device::in_memory`]. With it, a directory that holds a device is opened as
    /// it is (its firmware, its update state, the reports it owes), else the device
    /// is created there; either way everything it does stays in `dir`, so that the
    /// next simulation takes it up again. Of `spec`, an existing device takes only
    /// the server URL, the download rate and the components it lacks. The firmware
    /// slots are never synced to disk (a simulated device survives its process,
    /// not a power loss).
    pub fn simulated(
        dir: &Path,
        spec: &InitSpec,
        ui: Box<dyn Ui>,
        sim: &Simulation,
    ) -> Result<Device, DeviceError> {
        let faults = (sim.fail_updates > 0).then(|| {
            Arc::new(components::FailBudget::open(
                dir.join(FAILED_UPDATES_FILE),
                sim.fail_updates,
            ))
        });
        let slots = dir.join("slots");
        let (dm, agent, cfg) = if sim.keep {
            if !dir.join(config::FILE).exists() {
                Device::init_with(dir, spec, false)?;
            }
            components::check(&spec.components)?;
            let mut cfg = DeviceConfig::load(dir)?;
            cfg.download_rate = spec.config.download_rate;
            let mut dm = DmTree::open(&dir.join("tree"))?;
            let addr = "./DMAcc/1/AppAddr/1/Addr";
            if leaf_text(&dm, addr).as_deref() != Some(&spec.server_url) {
                dm.set(addr, spec.server_url.as_bytes())?;
            }
            components::provision(&mut dm, &spec.components)?;
            dm.tree.commit()?;
            (dm, SlotAgent::open(&slots)?, cfg)
        } else {
            check_spec(spec)?;
            let mut dm = DmTree::in_memory(&devinfo(spec))?;
            provision_device(&mut dm, spec)?;
            let agent = match SlotAgent::open(&slots) {
                Ok(a) => a,
                Err(_) => SlotAgent::init_volatile(
                    &slots,
                    &synthetic_image(spec),
                    &spec.firmware_version,
                )?,
            };
            let mut cfg = spec.config.clone();
            cfg.server_id = spec.server_id.clone();
            (dm, agent, cfg)
        };
        let mut agent = agent.with_durability(false);
        if let Some(f) = &faults {
            let f = Arc::clone(f);
            agent = agent.with_health_check(Box::new(move |image: &[u8]| f.check(image)));
        }
        Device::assemble(dm, Box::new(agent), cfg, dir, ui, faults)
    }

    fn assemble(
        mut dm: DmTree,
        mut agent: Box<dyn UpdateAgent + Send>,
        config: DeviceConfig,
        dir: &Path,
        ui: Box<dyn Ui>,
        faults: Option<Arc<components::FailBudget>>,
    ) -> Result<Device, DeviceError> {
        let packages = &dir.join("packages");
        std::fs::create_dir_all(packages).map_err(|e| DeviceError::io(packages, e))?;
        let mut firmware = Firmware::new(
            FirmwareConfig {
                packages_dir: packages.to_owned(),
                max_package: config.max_package_bytes,
                download_timeout: std::time::Duration::from_secs(
                    config.download_timeout_secs.max(1),
                ),
            },
            ui,
        );
        firmware.install(&mut dm);
        agent.boot()?;
        firmware.on_boot(&mut dm, agent.as_mut())?;
        if let Some(iccid) = &config.sim_iccid {
            firmware.check_sim(&mut dm, iccid, config.sim_imsi.as_deref());
        }
        let ca = config.extra_ca_pem()?;
        let transport = HttpTransport::new(HttpTransportConfig {
            timeout: config.response_timeout(),
            extra_root_certs_pem: ca.clone(),
            ..HttpTransportConfig::default()
        })
        .map_err(|e| DeviceError::Transport(e.to_string()))?;
        let downloader = HttpDownloader::new(HttpConfig {
            timeout: std::time::Duration::from_secs(config.download_timeout_secs.max(1)),
            extra_root_certs_pem: ca,
            rate_limit: (config.download_rate > 0).then_some(config.download_rate),
            ..HttpConfig::default()
        })
        .map_err(|e| DeviceError::Transport(e.to_string()))?;
        Ok(Device {
            dm,
            firmware,
            agent,
            config,
            transport,
            downloader,
            progress: None,
            step_pause: step_pause_from_env(),
            components_dir: dir.join("components"),
            faults,
            record_dir: None,
            recording: None,
            package0: None,
        })
    }

    /// Sets the receiver of download progress.
    pub fn on_progress(&mut self, f: ProgressSink) {
        self.progress = Some(f);
    }

    /// Records every exchange ([`Device::run`]) from now on into a folder of `dir`
    /// (see [`crate::record`]); `None` stops recording.
    pub fn record_into(&mut self, dir: Option<&Path>) {
        self.record_dir = dir.map(Path::to_path_buf);
    }

    /// The package #0 that the next run (a [`Trigger::Server`] with its session id)
    /// answers: kept for the recording.
    pub fn notified(&mut self, package0: &[u8]) {
        self.package0 = Some(package0.to_vec());
    }

    /// A recording of the exchange that starts now, when recording is on.
    fn start_recording(&mut self, trigger: &Trigger) -> Option<crate::record::Recording> {
        let package0 = self.package0.take();
        let dir = self.record_dir.as_deref()?;
        let facts = crate::record::DeviceFacts {
            server_id: self.config.server_id.clone(),
            encoding: self.config.encoding.clone(),
            firmware_version: self.agent.current_version(),
            components: self.components(),
        };
        let mut r = match crate::record::Recording::start(dir, &self.dm, &facts) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "recording: cannot start the exchange's folder");
                return None;
            }
        };
        if let (Trigger::Server { session_id }, Some(p)) = (trigger, package0) {
            let same = syncml_core::notify::Package0::parse(&p)
                .is_ok_and(|p| p.notification.session_id == *session_id);
            if same {
                r.notification(&p);
            }
        }
        Some(r)
    }

    /// One session with the configured server, from package 1 to its end (recorded
    /// on its own when recording is on and no [`Device::run`] records it).
    pub fn session(&mut self, trigger: Trigger) -> Result<Outcome, DeviceError> {
        let own = self.recording.is_none();
        if own {
            self.recording = self.start_recording(&trigger);
        }
        let result = self.session_recorded(trigger);
        if own {
            self.recording = None;
        }
        result
    }

    fn session_recorded(&mut self, trigger: Trigger) -> Result<Outcome, DeviceError> {
        if let Some(r) = self.recording.as_mut() {
            r.begin_session();
        }
        let cfg = session::Config {
            encoding: self.config.encoding()?,
            response_timeout: self.config.response_timeout(),
            ..session::Config::default()
        };
        let server_id = self.config.server_id.clone();
        let reports = self.firmware.reports(&self.dm, &server_id);
        let (mut s, mut step) =
            ClientSession::start(&self.dm, cfg, &server_id, trigger, reports, Instant::now())?;
        loop {
            step = match step {
                Step::Send(t) => {
                    if let Some(rec) = self.recording.as_mut() {
                        rec.sent(&t);
                    }
                    match self
                        .transport
                        .post(&t.url, t.content_type, t.hmac.as_deref(), &t.body)
                    {
                        Ok(r) => {
                            let reply = session::Reply {
                                status: r.status,
                                content_type: r.content_type,
                                hmac: r.hmac,
                                body: r.body,
                            };
                            if let Some(rec) = self.recording.as_mut() {
                                rec.received(&reply);
                            }
                            s.receive(&mut self.dm, &mut self.firmware, reply, Instant::now())
                        }
                        Err(e) => s.transport_failed(&e.to_string()),
                    }
                }
                Step::Download(req) => {
                    let result = self.fetch(&req);
                    s.download_done(&mut self.dm, &mut self.firmware, result, Instant::now())
                }
                Step::Done(outcome) => {
                    for e in s.take_events() {
                        tracing::debug!(?e, "session event");
                    }
                    return Ok(outcome);
                }
            };
        }
    }

    fn fetch(&mut self, req: &Request) -> Result<Fetched, DownloadError> {
        let url = req.url.clone();
        let mut sink = |p: Progress| {
            if let Some(f) = self.progress.as_mut() {
                f(&url, p)
            }
        };
        let result = self.downloader.fetch(req, &mut sink);
        if let (Ok(f), Some(rec)) = (&result, self.recording.as_mut()) {
            rec.download(&f.url, &req.dest);
        }
        result
    }

    /// Runs the work sessions left behind: FUMO downloads, then updates (stage,
    /// reboot, and the boot that follows). Returns how many were run and whether
    /// the firmware was switched.
    pub fn work(&mut self) -> Result<(usize, bool), DeviceError> {
        let mut done = 0;
        let mut rebooted = false;
        // Each step moves a slot on (download, then update), so a few rounds end it;
        // the bound keeps a confused slot from looping.
        for _ in 0..8 {
            let work = self.firmware.pending_work(&self.dm);
            if work.is_empty() {
                break;
            }
            for w in work {
                done += 1;
                match &w {
                    Work::Download { request, .. } => {
                        let result = self.fetch(request);
                        self.firmware.download_done(&mut self.dm, &w, result);
                        self.pause();
                    }
                    Work::Update { .. } => {
                        let agent = self.agent.as_ref();
                        let Ok(package) = self.firmware.begin_update(&mut self.dm, &w, agent)
                        else {
                            // Refused (and recorded) or not startable now (another
                            // update, an unrecorded outcome): the next run retries.
                            return Ok((done, rebooted));
                        };
                        self.pause();
                        // Each step of the agent is bracketed in the tree, so that a
                        // restart tells a cut in the agent's work (an attempt) from
                        // one between the steps (nothing to count).
                        if let Err(e) = self.firmware.agent_working(&mut self.dm, &w, true) {
                            tracing::error!("{}: recording the update step: {e}", w.node());
                            return Ok((done, rebooted));
                        }
                        if let Some((name, from, to)) =
                            self.firmware.applying_component(&self.dm, &w)
                        {
                            let result = self.apply_component(&name, &from, &package);
                            self.firmware.component_done(&mut self.dm, &w, result);
                            let now = self.component_version(&name);
                            components::prune(&self.components_dir, &name, &now);
                            if now == to {
                                tracing::info!("component {name} updated to {to}");
                            }
                            continue;
                        }
                        if let Err(e) = self.agent.stage(&package) {
                            // Nothing was switched: a definite failure.
                            self.firmware.update_failed(&mut self.dm, &w, &e);
                            continue;
                        }
                        if let Err(e) = self.firmware.agent_working(&mut self.dm, &w, false) {
                            // Still marked working: a restart counts as an attempt,
                            // as it did before the marks.
                            tracing::warn!("{}: recording the staged update: {e}", w.node());
                        }
                        self.pause();
                        if let Err(e) = self.firmware.agent_working(&mut self.dm, &w, true) {
                            tracing::error!("{}: recording the update step: {e}", w.node());
                            return Ok((done, rebooted));
                        }
                        if let Err(e) = self.agent.reboot() {
                            // The agent may have committed the switch before failing:
                            // the boot decides, as after a power loss.
                            self.firmware.reboot_failed(&w, &e);
                        }
                        // The reference agent returns from reboot; the boot that a real
                        // device would do next is played here.
                        rebooted = true;
                        self.pause();
                        self.agent.boot()?;
                        self.pause();
                        self.firmware.on_boot(&mut self.dm, self.agent.as_mut())?;
                    }
                }
            }
        }
        Ok((done, rebooted))
    }

    fn pause(&self) {
        if !self.step_pause.is_zero() {
            std::thread::sleep(self.step_pause);
        }
    }

    /// What `dm-client run` does: a session, the work it left, and a further
    /// session when that work left a report for the server (at most three in all).
    /// With recording on, the run is one exchange (see [`crate::record`]).
    pub fn run(&mut self, trigger: Trigger) -> Result<RunSummary, DeviceError> {
        self.recording = self.start_recording(&trigger);
        let result = self.run_sessions(trigger);
        self.recording = None;
        result
    }

    fn run_sessions(&mut self, trigger: Trigger) -> Result<RunSummary, DeviceError> {
        let mut summary = RunSummary {
            sessions: Vec::new(),
            session_times: Vec::new(),
            work_done: 0,
            rebooted: false,
        };
        let mut trigger = trigger;
        for _ in 0..3 {
            let t0 = Instant::now();
            let outcome = self.session(trigger)?;
            summary.session_times.push(t0.elapsed());
            let failed = outcome.result.is_err();
            summary.sessions.push(outcome);
            if failed {
                break;
            }
            let (n, rebooted) = self.work()?;
            summary.work_done += n;
            summary.rebooted |= rebooted;
            // Another session only for what the work has just produced: a report the
            // server already refused stays for the next run, not for a loop.
            let nothing_new = n == 0 && !rebooted;
            if nothing_new
                || self
                    .firmware
                    .reports(&self.dm, &self.config.server_id)
                    .is_empty()
            {
                break;
            }
            trigger = Trigger::Client {
                session_id: new_session_id(),
            };
        }
        Ok(summary)
    }

    /// The firmware version the device runs.
    pub fn firmware_version(&self) -> String {
        self.agent.current_version()
    }

    /// The device's components other than the firmware, with their versions.
    pub fn components(&self) -> Vec<(String, String)> {
        crate::firmware::components(&self.dm.tree)
    }

    /// The version of component `name` (empty when the device has none).
    pub fn component_version(&self, name: &str) -> String {
        self.components()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .unwrap_or_default()
    }

    /// Installs a component package (no reboot: components are swapped in place).
    fn apply_component(
        &self,
        name: &str,
        from: &str,
        package: &Path,
    ) -> Result<(), crate::update::UpdateError> {
        let model = leaf_text(&self.dm, "./DevInfo/Mod").unwrap_or_default();
        let faults = self.faults.clone();
        let check = move |image: &[u8]| match &faults {
            Some(f) => f.check(image),
            None => crate::update::default_health_check(image),
        };
        components::apply(&self.components_dir, &model, name, from, package, &check)
    }

    /// The reports the device owes its server, for display.
    pub fn owed(&self) -> Vec<Command> {
        self.firmware
            .reports(&self.dm, &self.config.server_id)
            .into_iter()
            .map(|r| r.command)
            .collect()
    }
}

/// A leaf's value as text.
fn leaf_text(dm: &DmTree, path: &str) -> Option<String> {
    let v = dm.tree.get(path)?.value()?;
    Some(String::from_utf8_lossy(v).trim().to_owned())
}

fn step_pause_from_env() -> std::time::Duration {
    let ms = std::env::var("DM_CLIENT_STEP_PAUSE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    std::time::Duration::from_millis(ms)
}

/// A session id for a client-initiated session: the clock's low bits in hex. It only
/// has to differ from the last session's.
pub fn new_session_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{:X}", (now as u16).max(1))
}

/// The state directory's tree path, for tools.
pub fn tree_dir(dir: &Path) -> PathBuf {
    dir.join("tree")
}
