//! Recorded sessions: the folder format of `fixtures/sessions/README.md`, read and
//! written.
//!
//! A recording is a folder holding a manifest ([`MANIFEST`], TOML) and one file per
//! message body. [`Recorder`] writes one as the exchange happens (the manifest is
//! rewritten after every message, by write-to-temp and rename, so a crash leaves a
//! readable folder); [`Transcript::load`] reads one back and checks it.
//!
//! ```
//! use syncml_core::transcript::{Recorder, Side, Transcript};
//! use syncml_core::{encode, AlertCode, DmVersion, Encoding, MessageBuilder};
//!
//! let dir = std::env::temp_dir().join(format!("transcript-doc-{}", std::process::id()));
//! let msg = MessageBuilder::client(DmVersion::V1_2, "1", "IMEI:1", "http://dm/")
//!     .alert_code(AlertCode::ClientInitiated)
//!     .finish();
//! let wbxml = encode(&msg, Encoding::Wbxml).unwrap();
//!
//! let mut rec = Recorder::create(&dir, "IMEI:1-demo", "doc").unwrap();
//! rec.message(Side::Client, 1, Some(&wbxml), Some("application/vnd.syncml.dm+wbxml"), None, None)
//!     .unwrap();
//! let t = Transcript::load(rec.dir()).unwrap();
//! assert_eq!(t.manifest.messages[0].encoding.as_deref(), Some("wbxml"));
//! assert!(t.bodies[0].as_deref().unwrap().contains("<Alert>"));
//! let wire = t.wire(0).unwrap().unwrap();
//! assert_eq!(syncml_core::decode(&wire).unwrap(), msg);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! ```
//!
//! Message files are XML, indented for reading, re-emitted from the decoded message
//! (so Data content stays exactly as it was: the writer never adds white space inside
//! an element holding text). Two cases the XML form cannot carry are kept as they
//! came instead, and the file name says so:
//!
//! - a WBXML message with opaque Data that is not XML text (binary, Format `bin`):
//!   the WBXML bytes themselves, in `NN-<side>.wbxml`;
//! - a body that is not a readable message at all (what a broken or hostile peer
//!   sent): the bytes as received, in `NN-<side>.xml` when they look like XML,
//!   `NN-<side>.wbxml` when they look like WBXML, else `NN-<side>.bin`.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::codec::{decode_with, encode_with, EncodeOptions};
use crate::encoding::Encoding;
use crate::limits::Limits;
use crate::notify::{Initiator, Notification, UiMode};

/// The format version this module reads and writes.
pub const FORMAT: u32 = 1;
/// The manifest's file name inside a session folder.
pub const MANIFEST: &str = "session.toml";
/// The largest download a recorder is expected to keep (larger ones are left out by
/// the recording agents: a replay serves files from the folder).
pub const MAX_DOWNLOAD: usize = 16 * 1024 * 1024;

/// Errors reading or writing a recording.
#[derive(Debug, thiserror::Error)]
pub enum TranscriptError {
    /// A file could not be read or written (the message names the file).
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The manifest is not valid TOML for this format, or could not be written.
    #[error("manifest: {0}")]
    Toml(String),
    /// A message body does not decode or encode.
    #[error("message: {0}")]
    Codec(#[from] crate::Error),
    /// The recording is inconsistent (wrong format, a missing file, a bad value).
    #[error("{0}")]
    Invalid(String),
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Client,
    Server,
}

impl Side {
    /// `client` or `server`, as in the manifest and in file names.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Server => "server",
        }
    }

    /// The other side.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The manifest (`session.toml`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub name: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub recorded_by: String,
    /// The side the session tests, when only one: a hand-written side is not
    /// replayed against an implementation of that side (absent: both).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<Side>,
    /// Check keys a replay does not compare (a trailing `*` covers a prefix).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary: Vec<String>,
    #[serde(default)]
    pub device: Profile,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup: Vec<SetupStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub download: Vec<DownloadEntry>,
    #[serde(default, rename = "message")]
    pub messages: Vec<MessageEntry>,
}

/// The client's side: identity, credentials, profile (`[device]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// ./DevInfo/DevId, the Source of client messages.
    #[serde(default)]
    pub id: String,
    /// The client's user name towards the server.
    #[serde(default)]
    pub user: String,
    /// The client's password.
    #[serde(default)]
    pub password: String,
    /// none | basic | md5 | hmac
    #[serde(default)]
    pub auth: String,
    /// b64: the nonce the client's first credentials use.
    #[serde(default)]
    pub client_nonce: String,
    /// The server's ServerID.
    #[serde(default)]
    pub server_id: String,
    /// The server's password towards the client ("" = none).
    #[serde(default)]
    pub server_password: String,
    /// b64: the nonce the server's first credentials use.
    #[serde(default)]
    pub server_nonce: String,
    /// xml | wbxml: package 1's encoding.
    #[serde(default)]
    pub encoding: String,
    /// Any other profile value (model, manufacturer, firmware_version...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, String>,
}

/// The names [`Profile`] holds as fields (an `extra` key with one of them is refused
/// when the manifest is written).
const PROFILE_FIELDS: [&str; 9] = [
    "id",
    "user",
    "password",
    "auth",
    "client_nonce",
    "server_id",
    "server_password",
    "server_nonce",
    "encoding",
];

/// An operator step before the exchange (`[[setup]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SetupStep {
    pub method: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accept: Vec<u16>,
}

/// A file the server side serves during the exchange (`[[download]]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DownloadEntry {
    /// URL path as recorded.
    pub path: String,
    /// The file in the session folder.
    pub file: String,
    /// The HTTP status it was served with, when not 200 (a download server error):
    /// the file is then the error's body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
}

fn one() -> u32 {
    1
}

/// One message (`[[message]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MessageEntry {
    pub from: Side,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(default = "one")]
    pub session: u32,
    /// xml | wbxml: as sent on the wire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The x-syncml-hmac header as recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac: Option<String>,
    /// The HTTP status of a reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// A package #0, field by field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification: Option<NotificationEntry>,
}

impl MessageEntry {
    /// An entry of `from` in `session` with nothing else set.
    pub fn new(from: Side, session: u32) -> MessageEntry {
        MessageEntry {
            from,
            file: None,
            session,
            encoding: None,
            content_type: None,
            hmac: None,
            http_status: None,
            notification: None,
        }
    }
}

/// A package #0 written out field by field (`[message.notification]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationEntry {
    pub version: u16,
    /// not-specified | background | informative | user-interaction
    pub ui_mode: String,
    /// server | user
    pub initiator: String,
    pub session_id: u16,
    pub server_id: String,
    /// Vendor bytes, hex.
    #[serde(default)]
    pub vendor: String,
}

impl NotificationEntry {
    /// The entry of a notification.
    pub fn from_notification(n: &Notification) -> Self {
        NotificationEntry {
            version: n.version,
            ui_mode: n.ui_mode.name().to_owned(),
            initiator: match n.initiator {
                Initiator::Server => "server",
                Initiator::Client => "user",
            }
            .to_owned(),
            session_id: n.session_id,
            server_id: n.server_id.clone(),
            vendor: hex(&n.vendor),
        }
    }

    /// The notification of an entry (its fields are checked; the values a package #0
    /// cannot carry are refused when it is built).
    pub fn to_notification(&self) -> Result<Notification, TranscriptError> {
        let ui_mode = match self.ui_mode.as_str() {
            "not-specified" | "" => UiMode::NotSpecified,
            "background" => UiMode::Background,
            "informative" => UiMode::Informative,
            "user-interaction" => UiMode::UserInteraction,
            other => {
                return Err(TranscriptError::Invalid(format!(
                    "notification ui_mode {other:?}: expected not-specified, background, \
                     informative or user-interaction"
                )))
            }
        };
        let initiator = match self.initiator.as_str() {
            "server" | "" => Initiator::Server,
            "user" => Initiator::Client,
            other => {
                return Err(TranscriptError::Invalid(format!(
                    "notification initiator {other:?}: expected server or user"
                )))
            }
        };
        let vendor = unhex(&self.vendor).ok_or_else(|| {
            TranscriptError::Invalid(format!(
                "notification vendor {:?}: expected hex digits in pairs",
                self.vendor
            ))
        })?;
        Ok(Notification {
            version: self.version,
            ui_mode,
            initiator,
            session_id: self.session_id,
            server_id: self.server_id.clone(),
            vendor,
        })
    }
}

fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &c in b {
        s.push(DIGITS[usize::from(c >> 4)] as char);
        s.push(DIGITS[usize::from(c & 15)] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// An I/O error naming the file it happened on.
fn io_at(path: &Path, e: io::Error) -> TranscriptError {
    TranscriptError::Io(io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// Limits for recorded bodies: a recording holds what the peers exchanged, which
/// they bounded themselves; these only keep a hostile folder from exhausting memory.
const LIMITS: Limits = Limits::DEFAULT;

/// A session folder read back.
#[derive(Debug, Clone)]
pub struct Transcript {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// Per message: its XML text (None: no body, a package #0, or a body kept in the
    /// bytes it came in, `.wbxml` or `.bin`: see [`Transcript::wire`]).
    pub bodies: Vec<Option<String>>,
}

impl Transcript {
    /// Reads a session folder: the manifest (format [`FORMAT`] only) and every message
    /// file; each file named by the manifest must exist inside the folder.
    pub fn load(dir: &Path) -> Result<Transcript, TranscriptError> {
        let path = dir.join(MANIFEST);
        let text = fs::read_to_string(&path).map_err(|e| io_at(&path, e))?;
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|e| TranscriptError::Toml(format!("{}: {e}", path.display())))?;
        if manifest.format != FORMAT {
            return Err(TranscriptError::Invalid(format!(
                "{}: format {} (this reader knows format {FORMAT})",
                path.display(),
                manifest.format
            )));
        }
        let mut bodies = Vec::with_capacity(manifest.messages.len());
        for (i, m) in manifest.messages.iter().enumerate() {
            let at = || format!("{}: message {}", path.display(), i + 1);
            if m.session == 0 {
                return Err(TranscriptError::Invalid(format!(
                    "{}: session 0 (sessions count from 1)",
                    at()
                )));
            }
            if let Some(enc) = m.encoding.as_deref() {
                if enc != "xml" && enc != "wbxml" {
                    return Err(TranscriptError::Invalid(format!(
                        "{}: encoding {enc:?} (xml or wbxml)",
                        at()
                    )));
                }
            }
            if let Some(n) = &m.notification {
                if m.file.is_some() {
                    return Err(TranscriptError::Invalid(format!(
                        "{}: a notification has no file",
                        at()
                    )));
                }
                n.to_notification()
                    .map_err(|e| TranscriptError::Invalid(format!("{}: {e}", at())))?;
            }
            let body = match &m.file {
                None => None,
                Some(f) => {
                    let p = member(dir, f).map_err(|e| {
                        TranscriptError::Invalid(format!("{}: file {f:?}: {e}", at()))
                    })?;
                    let bytes = fs::read(&p).map_err(|e| io_at(&p, e))?;
                    if is_xml_file(f) {
                        let s = String::from_utf8(bytes).map_err(|_| {
                            TranscriptError::Invalid(format!("{}: not UTF-8", p.display()))
                        })?;
                        Some(s)
                    } else {
                        None
                    }
                }
            };
            bodies.push(body);
        }
        for d in &manifest.download {
            let p = member(dir, &d.file).map_err(|e| {
                TranscriptError::Invalid(format!(
                    "{}: download {:?}: file {:?}: {e}",
                    path.display(),
                    d.path,
                    d.file
                ))
            })?;
            if !p.is_file() {
                return Err(TranscriptError::Invalid(format!(
                    "{}: download {:?}: {} is missing",
                    path.display(),
                    d.path,
                    p.display()
                )));
            }
        }
        Ok(Transcript {
            dir: dir.to_path_buf(),
            manifest,
            bodies,
        })
    }

    /// The bytes of message `i` as they go on the wire (XML, or encoded to WBXML).
    /// `None` for a message without a body (an HTTP error reply, a package #0).
    pub fn wire(&self, i: usize) -> Result<Option<Vec<u8>>, TranscriptError> {
        let m = self.entry(i)?;
        let Some(file) = &m.file else {
            return Ok(None);
        };
        if !is_xml_file(file) {
            let p = member(&self.dir, file).map_err(TranscriptError::Invalid)?;
            return fs::read(&p).map(Some).map_err(|e| io_at(&p, e));
        }
        let text = match self.bodies.get(i) {
            Some(Some(t)) => t.clone().into_bytes(),
            _ => {
                let p = member(&self.dir, file).map_err(TranscriptError::Invalid)?;
                fs::read(&p).map_err(|e| io_at(&p, e))?
            }
        };
        match m.encoding.as_deref() {
            Some("wbxml") => {
                let msg = decode_with(&text, Some(Encoding::Xml), &LIMITS)?;
                Ok(Some(encode_with(
                    &msg,
                    Encoding::Wbxml,
                    &EncodeOptions::default(),
                )?))
            }
            _ => Ok(Some(text)),
        }
    }

    /// Message `i` decoded (`None` without a body).
    pub fn decoded(&self, i: usize) -> Result<Option<crate::SyncMl>, TranscriptError> {
        match self.wire(i)? {
            None => Ok(None),
            Some(b) => Ok(Some(decode_with(&b, None, &LIMITS)?)),
        }
    }

    /// The package #0 of message `i`, if it is one.
    pub fn notification(&self, i: usize) -> Result<Option<Notification>, TranscriptError> {
        match &self.entry(i)?.notification {
            None => Ok(None),
            Some(n) => n.to_notification().map(Some),
        }
    }

    /// The bytes of the download recorded for URL path `url_path`.
    pub fn download(&self, url_path: &str) -> Result<Option<Vec<u8>>, TranscriptError> {
        let Some(d) = self.manifest.download.iter().find(|d| d.path == url_path) else {
            return Ok(None);
        };
        let p = member(&self.dir, &d.file).map_err(TranscriptError::Invalid)?;
        fs::read(&p).map(Some).map_err(|e| io_at(&p, e))
    }

    fn entry(&self, i: usize) -> Result<&MessageEntry, TranscriptError> {
        self.manifest.messages.get(i).ok_or_else(|| {
            TranscriptError::Invalid(format!(
                "no message {i} (the recording has {})",
                self.manifest.messages.len()
            ))
        })
    }
}

fn is_xml_file(name: &str) -> bool {
    name.ends_with(".xml")
}

/// A file name of the manifest as a path inside `dir`: a plain name, never a path
/// out of the folder.
fn member(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\', '\0'])
        && name != MANIFEST;
    if !plain {
        return Err("not a plain file name inside the session folder".into());
    }
    Ok(dir.join(name))
}

/// A name usable as a folder or file name: ASCII letters, digits, `.`, `_` and `-`
/// kept, anything else (`:` of `IMEI:...`, `/`, spaces) becomes `-`; never empty,
/// never starting with `.`; at most 120 characters.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(120)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if s.starts_with('.') {
        s.replace_range(..1, "_");
    }
    if s.is_empty() {
        s.push_str("session");
    }
    s
}

/// Writes one exchange as it happens (crash-safe: the manifest is rewritten by
/// write-to-temp + rename after every message).
#[derive(Debug)]
pub struct Recorder {
    dir: PathBuf,
    manifest: Manifest,
}

impl Recorder {
    /// Creates DIR/<name>/ (name sanitized, see [`sanitize`], and made unique with a
    /// -2, -3... suffix if taken) and writes an empty manifest in it.
    pub fn create(dir: &Path, name: &str, recorded_by: &str) -> Result<Recorder, TranscriptError> {
        fs::create_dir_all(dir).map_err(|e| io_at(dir, e))?;
        let base = sanitize(name);
        let mut n = 1u32;
        let (path, name) = loop {
            let name = if n == 1 {
                base.clone()
            } else {
                format!("{base}-{n}")
            };
            let path = dir.join(&name);
            match fs::create_dir(&path) {
                Ok(()) => break (path, name),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && n < 100_000 => n += 1,
                Err(e) => return Err(io_at(&path, e)),
            }
        };
        let mut r = Recorder {
            dir: path,
            manifest: Manifest {
                format: FORMAT,
                name,
                recorded_by: recorded_by.to_owned(),
                ..Manifest::default()
            },
        };
        r.save()?;
        Ok(r)
    }

    /// The `[device]` table (call [`Recorder::save`] after changing it).
    pub fn profile_mut(&mut self) -> &mut Profile {
        &mut self.manifest.device
    }

    /// The whole manifest (call [`Recorder::save`] after changing it).
    pub fn manifest_mut(&mut self) -> &mut Manifest {
        &mut self.manifest
    }

    /// The manifest as written so far.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The session folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends a message: `body` as on the wire (XML or WBXML; WBXML is decoded and
    /// written as indented XML), headers as sent. Writes the file and the manifest.
    pub fn message(
        &mut self,
        from: Side,
        session: u32,
        body: Option<&[u8]>,
        content_type: Option<&str>,
        hmac: Option<&str>,
        http_status: Option<u16>,
    ) -> Result<(), TranscriptError> {
        let mut entry = MessageEntry::new(from, session.max(1));
        entry.content_type = content_type.map(str::to_owned);
        entry.hmac = hmac.map(str::to_owned);
        entry.http_status = http_status;
        if let Some(body) = body.filter(|b| !b.is_empty()) {
            let stem = self.stem(from);
            let (file, bytes, encoding) = render(&stem, body, content_type);
            let p = self.dir.join(&file);
            write_file(&p, &bytes)?;
            entry.file = Some(file);
            entry.encoding = encoding.map(|e| {
                match e {
                    Encoding::Xml => "xml",
                    Encoding::Wbxml => "wbxml",
                }
                .to_owned()
            });
        }
        self.manifest.messages.push(entry);
        self.save()
    }

    /// Appends a package #0 sent by the server to start `session`.
    pub fn notification(&mut self, session: u32, n: &Notification) -> Result<(), TranscriptError> {
        let mut entry = MessageEntry::new(Side::Server, session.max(1));
        entry.notification = Some(NotificationEntry::from_notification(n));
        self.manifest.messages.push(entry);
        self.save()
    }

    /// Writes the bytes of a download under a file name taken from the URL path's
    /// last segment and adds a `[[download]]` entry. The same path downloaded twice
    /// (a resumed download) keeps one entry, with the last bytes.
    pub fn download(&mut self, url_path: &str, bytes: &[u8]) -> Result<(), TranscriptError> {
        if let Some(d) = self.manifest.download.iter().find(|d| d.path == url_path) {
            let p = self.dir.join(&d.file);
            write_file(&p, bytes)?;
            return self.save();
        }
        let last = url_path
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .rsplit('/')
            .find(|s| !s.is_empty())
            .unwrap_or("download");
        let base = sanitize(last);
        let taken = |f: &str| {
            f == MANIFEST
                || self.manifest.download.iter().any(|d| d.file == f)
                || self
                    .manifest
                    .messages
                    .iter()
                    .any(|m| m.file.as_deref() == Some(f))
                || self.dir.join(f).exists()
        };
        let mut file = format!("dl-{base}");
        let mut n = 2;
        while taken(&file) {
            file = format!("dl-{base}-{n}");
            n += 1;
        }
        write_file(&self.dir.join(&file), bytes)?;
        self.manifest.download.push(DownloadEntry {
            path: url_path.to_owned(),
            file,
            status: None,
        });
        self.save()
    }

    /// Rewrites the manifest (to a temporary file, then renamed over the old one).
    pub fn save(&mut self) -> Result<(), TranscriptError> {
        if let Some(k) = self
            .manifest
            .device
            .extra
            .keys()
            .find(|k| PROFILE_FIELDS.contains(&k.as_str()))
        {
            return Err(TranscriptError::Invalid(format!(
                "[device] extra key {k:?} is one of the profile's own fields"
            )));
        }
        let text = toml::to_string(&self.manifest)
            .map_err(|e| TranscriptError::Toml(format!("{}: {e}", self.dir.display())))?;
        let tmp = self.dir.join(format!(".{MANIFEST}.tmp"));
        write_file(&tmp, text.as_bytes())?;
        let dst = self.dir.join(MANIFEST);
        fs::rename(&tmp, &dst).map_err(|e| io_at(&dst, e))
    }

    /// `NN-<side>` for the next message.
    fn stem(&self, from: Side) -> String {
        let n = self.manifest.messages.len() + 1;
        if n > 99 {
            format!("{n:03}-{from}")
        } else {
            format!("{n:02}-{from}")
        }
    }
}

/// A body's file name, file content and wire encoding.
fn render(
    stem: &str,
    body: &[u8],
    content_type: Option<&str>,
) -> (String, Vec<u8>, Option<Encoding>) {
    let encoding = Encoding::detect(body)
        .ok()
        .or_else(|| content_type.and_then(|c| Encoding::from_media_type(c).ok()));
    let Some(enc) = encoding else {
        return (format!("{stem}.bin"), body.to_vec(), None);
    };
    let raw_name = match enc {
        Encoding::Xml => format!("{stem}.xml"),
        Encoding::Wbxml => format!("{stem}.wbxml"),
    };
    let Ok(msg) = decode_with(body, Some(enc), &LIMITS) else {
        // Not a readable message: kept as it came (an XML file must at least be text).
        if enc == Encoding::Xml && std::str::from_utf8(body).is_err() {
            return (format!("{stem}.bin"), body.to_vec(), Some(enc));
        }
        return (raw_name, body.to_vec(), Some(enc));
    };
    match encode_with(&msg, Encoding::Xml, &EncodeOptions::indented()) {
        // The indented form must read back as the same message (it always should:
        // this guards the recording against a writer quirk).
        Ok(xml)
            if decode_with(&xml, Some(Encoding::Xml), &LIMITS)
                .ok()
                .as_ref()
                == Some(&msg) =>
        {
            (format!("{stem}.xml"), xml, Some(enc))
        }
        _ => (raw_name, body.to_vec(), Some(enc)),
    }
}

/// Writes a whole file and flushes it to disk.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), TranscriptError> {
    let res = (|| {
        let mut f = fs::File::create(path)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    res.map_err(|e| io_at(path, e))
}

#[cfg(test)]
mod tests;
