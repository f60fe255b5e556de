//! Recorded sessions (`dm-client --record DIR`): every exchange the device takes
//! part in is written to a folder of DIR in the recorded-session format
//! (`fixtures/sessions/README.md`, [`syncml_core::transcript`]).
//!
//! An exchange is one [`Device::run`](crate::device::Device::run): its sessions,
//! numbered from 1, in a folder named `<device id>-<unix ms>`. It holds the package
//! #0 that started the first session (when a notification did), every message both
//! ways with its headers and HTTP status, and every download the run fetched (when
//! under [`MAX_DOWNLOAD`] bytes). `[device]` holds the device's identity, account
//! and profile as they were when the exchange began.
//!
//! Recording never breaks a session: a failure is logged and the rest of the
//! exchange goes on unrecorded.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use dm_tree::DmTree;
use syncml_core::auth::AuthType;
use syncml_core::notify::Package0;
use syncml_core::transcript::{Profile, Recorder, Side, TranscriptError};

pub use syncml_core::transcript::MAX_DOWNLOAD;

use crate::session::{Reply, Transmit};

/// What `recorded_by` says.
const RECORDED_BY: &str = concat!("dm-client ", env!("CARGO_PKG_VERSION"));

/// What the device is, for `[device]`.
#[derive(Debug, Clone, Default)]
pub struct DeviceFacts {
    /// The ServerID of the account sessions are opened with.
    pub server_id: String,
    /// `xml` or `wbxml`: package 1's encoding.
    pub encoding: String,
    pub firmware_version: String,
    /// Components other than the firmware, with their versions.
    pub components: Vec<(String, String)>,
}

/// One exchange being recorded.
#[derive(Debug)]
pub struct Recording {
    rec: Option<Recorder>,
    /// The session messages go to (0 before the first).
    session: u32,
}

impl Recording {
    /// Starts an exchange's folder in `dir`, with `[device]` filled from the tree and
    /// `facts`. Fails only when the folder cannot be made.
    pub fn start(
        dir: &Path,
        dm: &DmTree,
        facts: &DeviceFacts,
    ) -> Result<Recording, TranscriptError> {
        let profile = profile(dm, facts);
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let id = if profile.id.is_empty() {
            "device"
        } else {
            profile.id.as_str()
        };
        let mut rec = Recorder::create(dir, &format!("{id}-{ms}"), RECORDED_BY)?;
        *rec.profile_mut() = profile;
        rec.save()?;
        Ok(Recording {
            rec: Some(rec),
            session: 0,
        })
    }

    /// The exchange's folder (none once a failure stopped the recording).
    pub fn dir(&self) -> Option<&Path> {
        self.rec.as_ref().map(Recorder::dir)
    }

    /// The sessions begun so far.
    pub fn sessions(&self) -> u32 {
        self.session
    }

    /// The next session starts.
    pub fn begin_session(&mut self) {
        self.session += 1;
    }

    /// The package #0 that starts the next session.
    pub fn notification(&mut self, package0: &[u8]) {
        let session = self.session + 1;
        match Package0::parse(package0) {
            Ok(p) => self.write(|r| r.notification(session, &p.notification)),
            Err(e) => tracing::warn!(error = %e, "recording: the notification does not parse"),
        }
    }

    /// A message posted to the server.
    pub fn sent(&mut self, t: &Transmit) {
        let session = self.session.max(1);
        self.write(|r| {
            r.message(
                Side::Client,
                session,
                Some(&t.body),
                Some(t.content_type),
                t.hmac.as_deref(),
                None,
            )
        });
    }

    /// The server's reply.
    pub fn received(&mut self, reply: &Reply) {
        let session = self.session.max(1);
        let body = (!reply.body.is_empty()).then_some(reply.body.as_slice());
        self.write(|r| {
            r.message(
                Side::Server,
                session,
                body,
                reply.content_type.as_deref(),
                reply.hmac.as_deref(),
                Some(reply.status),
            )
        });
    }

    /// A download fetched from `url` into `file` (kept when under [`MAX_DOWNLOAD`]).
    pub fn download(&mut self, url: &str, file: &Path) {
        let len = std::fs::metadata(file).map(|m| m.len()).unwrap_or(u64::MAX);
        if len >= MAX_DOWNLOAD as u64 {
            tracing::info!(url, len, "recording: download too large to keep, left out");
            return;
        }
        let bytes = match std::fs::read(file) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "recording: cannot read the download");
                return;
            }
        };
        let path = url_path(url);
        self.write(|r| r.download(&path, &bytes));
    }

    fn write(&mut self, f: impl FnOnce(&mut Recorder) -> Result<(), TranscriptError>) {
        let Some(rec) = self.rec.as_mut() else { return };
        if let Err(e) = f(rec) {
            tracing::warn!(folder = %rec.dir().display(), error = %e, "recording failed: the rest of this exchange is not recorded");
            self.rec = None;
        }
    }
}

/// The path (and query) of a URL, as the server serves it.
pub fn url_path(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) => match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_owned(),
        },
        Err(_) => url.to_owned(),
    }
}

fn leaf(dm: &DmTree, path: &str) -> Option<String> {
    let v = dm.tree.get(path)?.value()?;
    Some(String::from_utf8_lossy(v).trim().to_owned())
}

/// The scheme an account names (as the session engine reads AAuthType).
fn scheme(name: &str) -> Option<AuthType> {
    match name.trim().to_ascii_uppercase().as_str() {
        "BASIC" => Some(AuthType::Basic),
        "DIGEST" | "MD5" => Some(AuthType::Md5),
        "HMAC" => Some(AuthType::Hmac),
        other => AuthType::from_meta_type(&other.to_ascii_lowercase()),
    }
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// `[device]` of the device's tree and facts.
pub fn profile(dm: &DmTree, facts: &DeviceFacts) -> Profile {
    let mut p = Profile {
        id: leaf(dm, "./DevInfo/DevId").unwrap_or_default(),
        server_id: facts.server_id.clone(),
        encoding: facts.encoding.to_ascii_lowercase(),
        auth: "none".into(),
        ..Profile::default()
    };
    if let Some(acc) = dm_tree::accounts::account_for(&dm.tree, &facts.server_id) {
        p.server_id = acc.server_id.clone();
        if let Some(c) = acc
            .client
            .as_ref()
            .filter(|c| !c.name.is_empty() || !c.secret.is_empty())
        {
            // As the session engine reads the account: no type is Basic, no name is
            // the server id.
            p.auth = if c.auth_type.trim().is_empty() {
                "basic".into()
            } else {
                match scheme(&c.auth_type) {
                    Some(AuthType::Basic) => "basic".into(),
                    Some(AuthType::Md5) => "md5".into(),
                    Some(AuthType::Hmac) => "hmac".into(),
                    None => c.auth_type.to_ascii_lowercase(),
                }
            };
            p.user = if c.name.is_empty() {
                acc.server_id.clone()
            } else {
                c.name.clone()
            };
            p.password = String::from_utf8_lossy(&c.secret).into_owned();
            p.client_nonce = b64(&c.nonce);
        }
        if let Some(s) = &acc.server {
            p.server_password = String::from_utf8_lossy(&s.secret).into_owned();
            p.server_nonce = b64(&s.nonce);
        }
    }
    let mut extra = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            p.extra.insert(k.to_owned(), v);
        }
    };
    extra("model", leaf(dm, "./DevInfo/Mod"));
    extra("manufacturer", leaf(dm, "./DevInfo/Man"));
    extra(
        "firmware_version",
        Some(facts.firmware_version.clone()).filter(|v| !v.is_empty()),
    );
    let comps = facts
        .components
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    extra("components", Some(comps));
    p
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::account::{provision, AccountSpec};
    use syncml_core::transcript::Transcript;

    fn tree(auth: &str, server_password: Option<&str>) -> DmTree {
        let mut dm = DmTree::in_memory(&[
            ("DevId".into(), "IMEI:42".into()),
            ("Man".into(), "Acme".into()),
            ("Mod".into(), "M1".into()),
        ])
        .unwrap();
        provision(
            &mut dm,
            &AccountSpec {
                name: "1".into(),
                server_id: "srv".into(),
                addr: "http://x/dm".into(),
                auth_type: auth.into(),
                user: "u1".into(),
                password: "p1".into(),
                server_auth: server_password.map(|p| ("srv".into(), p.into())),
            },
        )
        .unwrap();
        dm
    }

    fn facts() -> DeviceFacts {
        DeviceFacts {
            server_id: "srv".into(),
            encoding: "WBXML".into(),
            firmware_version: "1.0".into(),
            components: vec![("copier".into(), "2.1".into()), ("fax".into(), "1".into())],
        }
    }

    #[test]
    fn the_profile_holds_account_and_device() {
        let mut dm = tree("DIGEST", Some("sp"));
        dm.set("./DMAcc/1/AppAuth/1/AAuthData", b"\x01\x02\x03")
            .unwrap();
        let p = profile(&dm, &facts());
        assert_eq!(p.id, "IMEI:42");
        assert_eq!(p.user, "u1");
        assert_eq!(p.password, "p1");
        assert_eq!(p.auth, "md5");
        assert_eq!(p.client_nonce, "AQID");
        assert_eq!(p.server_id, "srv");
        assert_eq!(p.server_password, "sp");
        assert_eq!(p.server_nonce, "");
        assert_eq!(p.encoding, "wbxml");
        let get = |k: &str| p.extra.get(k).map(String::as_str);
        assert_eq!(get("model"), Some("M1"));
        assert_eq!(get("manufacturer"), Some("Acme"));
        assert_eq!(get("firmware_version"), Some("1.0"));
        assert_eq!(get("components"), Some("copier=2.1,fax=1"));

        let p = profile(&tree("HMAC", None), &DeviceFacts::default());
        // No account for an empty server id: identity only.
        assert_eq!((p.auth.as_str(), p.user.as_str()), ("none", ""));
        let f = DeviceFacts {
            server_id: "srv".into(),
            ..DeviceFacts::default()
        };
        let p = profile(&tree("HMAC", None), &f);
        assert_eq!(p.auth, "hmac");
        assert_eq!(p.server_password, "");
        assert!(!p.extra.contains_key("components"));
    }

    #[test]
    fn an_exchange_is_recorded_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let dm = tree("BASIC", Some("sp"));
        let mut r = Recording::start(tmp.path(), &dm, &facts()).unwrap();
        let name = r
            .dir()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with("IMEI-42-"), "{name}");
        let n = syncml_core::notify::Notification::new("srv", 0x42);
        let key = syncml_core::auth::UserKey::new("srv", "sp");
        let pkg = n
            .build(&key, &syncml_core::auth::Nonce::from_bytes(vec![0; 4]))
            .unwrap();
        r.notification(&pkg);
        r.begin_session();
        r.sent(&Transmit {
            url: "http://x/dm".into(),
            content_type: "application/vnd.syncml.dm+xml",
            hmac: Some("mac".into()),
            body: b"<SyncML/>".to_vec(),
            deadline: std::time::Instant::now(),
        });
        r.received(&Reply {
            status: 404,
            content_type: None,
            hmac: None,
            body: Vec::new(),
        });
        r.begin_session();
        let file = tmp.path().join("pkg");
        std::fs::write(&file, b"bytes").unwrap();
        r.download("http://x:1/dl/abc?t=1", &file);
        let t = Transcript::load(r.dir().unwrap()).unwrap();
        let m = &t.manifest;
        assert_eq!(m.messages.len(), 3);
        assert_eq!(
            m.messages[0].notification.as_ref().map(|n| n.session_id),
            Some(0x42)
        );
        assert_eq!(m.messages[0].session, 1);
        assert_eq!(m.messages[1].from, Side::Client);
        assert_eq!(m.messages[1].hmac.as_deref(), Some("mac"));
        assert_eq!(m.messages[2].http_status, Some(404));
        assert_eq!(m.download[0].path, "/dl/abc?t=1");
        assert_eq!(t.download("/dl/abc?t=1").unwrap().unwrap(), b"bytes");
        assert_eq!(r.sessions(), 2);
        assert_eq!(m.device.auth, "basic");
    }
}
