//! OMA Download OTA 1.0 download descriptors (media type
//! `application/vnd.oma.dd+xml`): a small XML document whose root
//! `<media xmlns="http://www.openmobilealliance.org/xmlns/dd">` describes one media
//! object (`objectURI`, `size`, `type` are mandatory) and where to report the outcome
//! (`installNotifyURI`).
//!
//! The parser reads untrusted bytes: the document size, nesting depth and text length
//! are bounded, a DOCTYPE is refused and no entity other than the five predefined ones
//! and character references is expanded. Unknown elements are skipped, as DLOTA asks.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;

use super::DownloadError;

/// The media type of a download descriptor.
pub const MEDIA_TYPE: &str = "application/vnd.oma.dd+xml";
/// The XML namespace of a download descriptor.
pub const NAMESPACE: &str = "http://www.openmobilealliance.org/xmlns/dd";

/// Bounds for [`parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest document accepted, in bytes.
    pub max_bytes: usize,
    /// The deepest element nesting accepted (the root is depth 1).
    pub max_depth: usize,
    /// The longest text value of one element, in bytes.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 64 * 1024,
            max_depth: 8,
            max_text: 8 * 1024,
        }
    }
}

/// A parsed download descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Descriptor {
    /// `DDVersion`, when given (DLOTA 1.0 assumes "1.0").
    pub dd_version: Option<String>,
    /// `objectURI`: where the media object is (may be relative to the descriptor).
    pub object_uri: String,
    /// `size`: the media object's length in bytes.
    pub size: u64,
    /// `type`: the media types of the object, at least one.
    pub types: Vec<String>,
    /// `name`: a name for the user.
    pub name: Option<String>,
    /// `vendor`: who provides the object.
    pub vendor: Option<String>,
    /// `description`: a short text for the user.
    pub description: Option<String>,
    /// `installNotifyURI`: where to POST the install status report.
    pub install_notify_uri: Option<String>,
    /// `nextURL`: where a browser would go afterwards.
    pub next_url: Option<String>,
    /// `infoURL`: more information about the object.
    pub info_url: Option<String>,
    /// `iconURI`: an icon for the object.
    pub icon_uri: Option<String>,
    /// `installParam`: an opaque parameter for the installer.
    pub install_param: Option<String>,
}

/// Why a descriptor was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DdError {
    /// The document exceeds [`Limits::max_bytes`].
    #[error("descriptor larger than {limit} bytes")]
    TooLarge { limit: usize },
    /// Elements nest deeper than [`Limits::max_depth`].
    #[error("elements nested deeper than {limit}")]
    TooDeep { limit: usize },
    /// A text value exceeds [`Limits::max_text`].
    #[error("a value longer than {limit} bytes")]
    TextTooLong { limit: usize },
    /// Not well-formed XML, not UTF-8, or a construct we refuse (DOCTYPE, entities).
    #[error("malformed XML at byte {offset}: {message}")]
    Xml { offset: u64, message: String },
    /// The root is not a DD `media` element.
    #[error("not a download descriptor (root element {0})")]
    NotDescriptor(String),
    /// A mandatory element is absent or empty.
    #[error("missing {0}")]
    Missing(&'static str),
    /// A single-valued element appears twice.
    #[error("{0} appears more than once")]
    Duplicate(&'static str),
    /// `size` is not a decimal byte count.
    #[error("bad size {0:?}")]
    BadSize(String),
    /// A known element has child elements instead of text.
    #[error("{0} must hold text only")]
    NotText(&'static str),
    /// `DDVersion` names a major version other than 1.
    #[error("unsupported DDVersion {0:?}")]
    UnsupportedVersion(String),
}

impl DdError {
    /// The install-notify status that reports this refusal.
    pub fn install_status(&self) -> InstallStatus {
        match self {
            Self::UnsupportedVersion(_) => InstallStatus::InvalidDdVersion,
            _ => InstallStatus::InvalidDescriptor,
        }
    }
}

impl From<DdError> for DownloadError {
    fn from(e: DdError) -> Self {
        DownloadError::Descriptor(e.to_string())
    }
}

/// The status codes a device reports to `installNotifyURI` (OMA DLOTA 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallStatus {
    /// 900: the object arrived whole.
    Success,
    /// 901: no room for the object.
    InsufficientMemory,
    /// 902: the user cancelled.
    UserCancelled,
    /// 903: the connection was lost.
    LossOfService,
    /// 905: the object does not match the descriptor (e.g. its size).
    AttributeMismatch,
    /// 906: the descriptor is invalid.
    InvalidDescriptor,
    /// 951: the descriptor's DDVersion is not supported.
    InvalidDdVersion,
    /// 952: the device gave up for another reason.
    DeviceAborted,
    /// 953: the object's type is not acceptable.
    NonAcceptableContent,
    /// 954: fetching the object failed at the server.
    LoaderError,
}

impl InstallStatus {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Self::Success => 900,
            Self::InsufficientMemory => 901,
            Self::UserCancelled => 902,
            Self::LossOfService => 903,
            Self::AttributeMismatch => 905,
            Self::InvalidDescriptor => 906,
            Self::InvalidDdVersion => 951,
            Self::DeviceAborted => 952,
            Self::NonAcceptableContent => 953,
            Self::LoaderError => 954,
        }
    }

    /// The status report as POSTed: the code and its standard text, e.g. `900 Success`.
    pub fn report(self) -> &'static str {
        match self {
            Self::Success => "900 Success",
            Self::InsufficientMemory => "901 Insufficient memory",
            Self::UserCancelled => "902 User Cancelled",
            Self::LossOfService => "903 Loss of Service",
            Self::AttributeMismatch => "905 Attribute mismatch",
            Self::InvalidDescriptor => "906 Invalid descriptor",
            Self::InvalidDdVersion => "951 Invalid DDVersion",
            Self::DeviceAborted => "952 Device Aborted",
            Self::NonAcceptableContent => "953 Non-Acceptable Content",
            Self::LoaderError => "954 Loader Error",
        }
    }

    /// The status that reports the outcome of fetching the media object.
    pub fn for_outcome<T>(outcome: &Result<T, DownloadError>) -> Self {
        let Err(e) = outcome else {
            return Self::Success;
        };
        match e {
            DownloadError::TooLarge { .. } | DownloadError::Storage(_) => Self::InsufficientMemory,
            DownloadError::Cancelled => Self::UserCancelled,
            DownloadError::Network(_) | DownloadError::Timeout => Self::LossOfService,
            DownloadError::SizeMismatch { .. } => Self::AttributeMismatch,
            DownloadError::Descriptor(_) => Self::InvalidDescriptor,
            DownloadError::BadUrl(_)
            | DownloadError::Auth(_)
            | DownloadError::Unavailable(_)
            | DownloadError::Server(_)
            | DownloadError::Refused(_)
            | DownloadError::Tls(_) => Self::LoaderError,
        }
    }
}

/// Whether `prefix` (the first bytes of a body) starts like a download descriptor:
/// after an optional BOM, XML declaration, comments and white space, a `media` root
/// that declares the DD namespace. Used when a server sends a descriptor with a
/// generic media type.
pub fn looks_like_descriptor(prefix: &[u8]) -> bool {
    let text = String::from_utf8_lossy(prefix);
    let mut rest = text.trim_start_matches('\u{feff}').trim_start();
    loop {
        if let Some(after) = rest.strip_prefix("<?") {
            match after.find("?>") {
                Some(end) => rest = after[end + 2..].trim_start(),
                None => return false,
            }
        } else if let Some(after) = rest.strip_prefix("<!--") {
            match after.find("-->") {
                Some(end) => rest = after[end + 3..].trim_start(),
                None => return false,
            }
        } else {
            break;
        }
    }
    let Some(tag) = rest.strip_prefix("<media") else {
        return false;
    };
    tag.starts_with(|c: char| c.is_whitespace()) && tag.contains(NAMESPACE)
}

/// Parses a download descriptor with the default [`Limits`].
pub fn parse(bytes: &[u8]) -> Result<Descriptor, DdError> {
    parse_with(bytes, Limits::default())
}

/// The single-valued text elements of a descriptor, by local name.
const FIELDS: [&str; 11] = [
    "DDVersion",
    "objectURI",
    "size",
    "name",
    "vendor",
    "description",
    "installNotifyURI",
    "nextURL",
    "infoURL",
    "iconURI",
    "installParam",
];

/// Parses a download descriptor within `limits`.
pub fn parse_with(bytes: &[u8], limits: Limits) -> Result<Descriptor, DdError> {
    parse_or_notify_uri(bytes, limits).map_err(|(e, _)| e)
}

/// Like [`parse_with`], but a refusal also carries the `installNotifyURI` if one was
/// read before the problem, so the refusal can be reported there (906 or 951).
pub fn parse_or_notify_uri(
    bytes: &[u8],
    limits: Limits,
) -> Result<Descriptor, (DdError, Option<String>)> {
    let mut dd = Descriptor::default();
    let mut seen = [false; FIELDS.len()];
    match read(bytes, limits, &mut dd, &mut seen) {
        Ok(()) => {
            let uri = dd.install_notify_uri.clone();
            finish(dd, &seen).map_err(|e| (e, uri))
        }
        Err(e) => Err((e, dd.install_notify_uri)),
    }
}

/// Reads the fields of a descriptor into `dd`, checking syntax and limits.
fn read(
    bytes: &[u8],
    limits: Limits,
    dd: &mut Descriptor,
    seen: &mut [bool; FIELDS.len()],
) -> Result<(), DdError> {
    if bytes.len() > limits.max_bytes {
        return Err(DdError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| DdError::Xml {
        offset: e.valid_up_to() as u64,
        message: "not UTF-8".into(),
    })?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().check_end_names = true;

    let mut depth = 0usize;
    let mut root_seen = false;
    // The element whose text is being gathered: its index in FIELDS or usize::MAX
    // for `type`; `None` inside unknown elements or between elements.
    let mut field: Option<(usize, &'static str)> = None;
    let mut value = String::new();

    loop {
        let offset = reader.buffer_position();
        let xml_err = |message: String| DdError::Xml { offset, message };
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| xml_err(e.to_string()))?;
        let in_dd_ns = match ns {
            ResolveResult::Bound(n) => n.as_ref() == NAMESPACE,
            ResolveResult::Unbound => true,
            ResolveResult::Unknown(p) => return Err(xml_err(format!("unknown prefix {p}"))),
        };
        let empty = matches!(event, Event::Empty(_));
        match event {
            Event::Start(e) | Event::Empty(e) => {
                if let Some((_, name)) = field {
                    return Err(DdError::NotText(name));
                }
                let local = e.local_name();
                if depth == 0 {
                    if root_seen {
                        return Err(xml_err("a second root element".into()));
                    }
                    if local.as_ref() != "media" || !in_dd_ns {
                        return Err(DdError::NotDescriptor(e.name().as_ref().to_owned()));
                    }
                    root_seen = true;
                } else if depth == 1 && in_dd_ns {
                    field = known_field(local.as_ref());
                }
                if empty {
                    if let Some(f) = field.take() {
                        store(dd, seen, f, String::new())?;
                    }
                } else {
                    depth += 1;
                    if depth > limits.max_depth {
                        return Err(DdError::TooDeep {
                            limit: limits.max_depth,
                        });
                    }
                    value.clear();
                }
            }
            Event::End(_) => {
                // A field is open only between its own start and end tags.
                if let Some(f) = field.take() {
                    store(dd, seen, f, std::mem::take(&mut value))?;
                }
                depth = depth.saturating_sub(1);
            }
            Event::Text(t) => {
                if field.is_some() {
                    push_text(&mut value, &t.xml10_content(), limits)?;
                } else if depth == 0 && !t.xml10_content().trim().is_empty() {
                    return Err(xml_err("text outside the root element".into()));
                }
            }
            Event::CData(t) => {
                if field.is_some() {
                    push_text(&mut value, &t.xml10_content(), limits)?;
                }
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref() {
                    Ok(Some(c)) => c,
                    Ok(None) => match r.as_ref() {
                        "amp" => '&',
                        "lt" => '<',
                        "gt" => '>',
                        "apos" => '\'',
                        "quot" => '"',
                        other => return Err(xml_err(format!("unknown entity &{other};"))),
                    },
                    Err(e) => return Err(xml_err(e.to_string())),
                };
                if field.is_some() {
                    push_text(&mut value, c.encode_utf8(&mut [0; 4]), limits)?;
                }
            }
            Event::DocType(_) => return Err(xml_err("DOCTYPE is not allowed".into())),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) => {}
            Event::Eof => break,
        }
    }
    if !root_seen {
        return Err(DdError::NotDescriptor("none".into()));
    }
    if depth != 0 {
        return Err(DdError::Xml {
            offset: text.len() as u64,
            message: "unclosed element".into(),
        });
    }
    Ok(())
}

fn known_field(local: &str) -> Option<(usize, &'static str)> {
    if local == "type" {
        return Some((usize::MAX, "type"));
    }
    FIELDS
        .iter()
        .position(|f| *f == local)
        .map(|i| (i, FIELDS[i]))
}

fn push_text(value: &mut String, more: &str, limits: Limits) -> Result<(), DdError> {
    if value.len() + more.len() > limits.max_text {
        return Err(DdError::TextTooLong {
            limit: limits.max_text,
        });
    }
    value.push_str(more);
    Ok(())
}

fn store(
    dd: &mut Descriptor,
    seen: &mut [bool; FIELDS.len()],
    (index, name): (usize, &'static str),
    value: String,
) -> Result<(), DdError> {
    let value = value.trim().to_owned();
    if index == usize::MAX {
        if !value.is_empty() {
            dd.types.push(value);
        }
        return Ok(());
    }
    if std::mem::replace(&mut seen[index], true) {
        return Err(DdError::Duplicate(name));
    }
    let opt = (!value.is_empty()).then(|| value.clone());
    match name {
        "DDVersion" => dd.dd_version = opt,
        "objectURI" => dd.object_uri = value,
        "size" => {
            if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                return Err(DdError::BadSize(value));
            }
            dd.size = value.parse().map_err(|_| DdError::BadSize(value.clone()))?;
        }
        "name" => dd.name = opt,
        "vendor" => dd.vendor = opt,
        "description" => dd.description = opt,
        "installNotifyURI" => dd.install_notify_uri = opt,
        "nextURL" => dd.next_url = opt,
        "infoURL" => dd.info_url = opt,
        "iconURI" => dd.icon_uri = opt,
        "installParam" => dd.install_param = opt,
        _ => {}
    }
    Ok(())
}

fn finish(dd: Descriptor, seen: &[bool; FIELDS.len()]) -> Result<Descriptor, DdError> {
    let was_seen = |name: &str| {
        FIELDS
            .iter()
            .position(|f| *f == name)
            .is_some_and(|i| seen[i])
    };
    if dd.object_uri.is_empty() {
        return Err(DdError::Missing("objectURI"));
    }
    if !was_seen("size") {
        return Err(DdError::Missing("size"));
    }
    if dd.types.is_empty() {
        return Err(DdError::Missing("type"));
    }
    if let Some(v) = &dd.dd_version {
        if v.split('.').next() != Some("1") {
            return Err(DdError::UnsupportedVersion(v.clone()));
        }
    }
    Ok(dd)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- served by the test -->
<media xmlns="http://www.openmobilealliance.org/xmlns/dd">
  <DDVersion>1.0</DDVersion>
  <name>Firmware 2.1</name>
  <size>1048576</size>
  <type>application/octet-stream</type>
  <type>application/vnd.example.fw</type>
  <objectURI>pkg/fw-2.1.bin?a=1&amp;b=2</objectURI>
  <installNotifyURI>https://dl.example.com/notify?id=7</installNotifyURI>
  <nextURL>https://example.com/done</nextURL>
  <vendor>Example &#x26; Co</vendor>
  <description><![CDATA[Fixes <everything>]]></description>
  <futureElement><nested>kept out</nested></futureElement>
</media>"#;

    #[test]
    fn parses_every_field() {
        let dd = parse(FULL.as_bytes()).unwrap();
        assert_eq!(dd.dd_version.as_deref(), Some("1.0"));
        assert_eq!(dd.name.as_deref(), Some("Firmware 2.1"));
        assert_eq!(dd.size, 1_048_576);
        assert_eq!(
            dd.types,
            ["application/octet-stream", "application/vnd.example.fw"]
        );
        assert_eq!(dd.object_uri, "pkg/fw-2.1.bin?a=1&b=2");
        assert_eq!(
            dd.install_notify_uri.as_deref(),
            Some("https://dl.example.com/notify?id=7")
        );
        assert_eq!(dd.next_url.as_deref(), Some("https://example.com/done"));
        assert_eq!(dd.vendor.as_deref(), Some("Example & Co"));
        assert_eq!(dd.description.as_deref(), Some("Fixes <everything>"));
        assert_eq!(dd.info_url, None);
    }

    #[test]
    fn accepts_a_prefixed_namespace_and_no_namespace() {
        let prefixed = r#"<dd:media xmlns:dd="http://www.openmobilealliance.org/xmlns/dd">
            <dd:objectURI>http://h/p</dd:objectURI><dd:size>3</dd:size><dd:type>a/b</dd:type>
            </dd:media>"#;
        assert_eq!(parse(prefixed.as_bytes()).unwrap().size, 3);
        let bare = "<media><objectURI>p</objectURI><size>0</size><type>a/b</type></media>";
        assert_eq!(parse(bare.as_bytes()).unwrap().object_uri, "p");
    }

    #[test]
    fn refuses_what_is_not_a_descriptor() {
        let docs = [
            "<SyncML/>",
            r#"<media xmlns="urn:other"><size>1</size></media>"#,
            "",
            "   ",
        ];
        for doc in docs {
            let err = parse(doc.as_bytes()).unwrap_err();
            assert!(matches!(err, DdError::NotDescriptor(_)), "{doc:?}: {err:?}");
        }
    }

    #[test]
    fn refuses_malformed_xml() {
        let docs = [
            "<media><size>1</size>",
            "<media><size>1</sizes></media>",
            "<media><size>1</size></media><media/>",
            "<media><size>1</size></media>trailing",
            "<media><name>&custom;</name></media>",
            "<media><name>&#xFFFFFFFF;</name></media>",
            "<!DOCTYPE media [<!ENTITY x \"boom\">]><media/>",
            "<x:media/>",
        ];
        for doc in docs {
            let err = parse(doc.as_bytes()).unwrap_err();
            assert!(matches!(err, DdError::Xml { .. }), "{doc:?}: {err:?}");
        }
        let err = parse(b"<media><name>\xff</name></media>").unwrap_err();
        assert!(matches!(err, DdError::Xml { offset: 13, .. }), "{err:?}");
    }

    #[test]
    fn refuses_missing_or_bad_mandatory_fields() {
        let missing = [
            ("<media><size>1</size><type>a/b</type></media>", "objectURI"),
            (
                "<media><objectURI>  </objectURI><size>1</size><type>a/b</type></media>",
                "objectURI",
            ),
            (
                "<media><objectURI>p</objectURI><type>a/b</type></media>",
                "size",
            ),
            (
                "<media><objectURI>p</objectURI><size>1</size></media>",
                "type",
            ),
            (
                "<media><objectURI>p</objectURI><size>1</size><type/></media>",
                "type",
            ),
        ];
        for (doc, field) in missing {
            assert_eq!(parse(doc.as_bytes()), Err(DdError::Missing(field)), "{doc}");
        }
        let bad_sizes = ["-1", "1e6", "", "99999999999999999999999", "0x10"];
        for size in bad_sizes {
            let doc =
                format!("<media><objectURI>p</objectURI><size>{size}</size><type>a</type></media>");
            assert!(
                matches!(parse(doc.as_bytes()), Err(DdError::BadSize(_))),
                "{size}"
            );
        }
        let twice = "<media><objectURI>p</objectURI><objectURI>q</objectURI><size>1</size><type>a</type></media>";
        assert_eq!(
            parse(twice.as_bytes()),
            Err(DdError::Duplicate("objectURI"))
        );
        let nested = "<media><objectURI><a>p</a></objectURI><size>1</size><type>a</type></media>";
        assert_eq!(parse(nested.as_bytes()), Err(DdError::NotText("objectURI")));
    }

    #[test]
    fn refuses_an_unsupported_version() {
        let doc = "<media><DDVersion>2.0</DDVersion><objectURI>p</objectURI><size>1</size><type>a</type></media>";
        let err = parse(doc.as_bytes()).unwrap_err();
        assert_eq!(err, DdError::UnsupportedVersion("2.0".into()));
        assert_eq!(err.install_status().report(), "951 Invalid DDVersion");
        assert_eq!(DdError::Missing("size").install_status().code(), 906);
    }

    #[test]
    fn enforces_limits() {
        let limits = Limits {
            max_bytes: 200,
            max_depth: 3,
            max_text: 10,
        };
        let big = format!("<media><name>{}</name></media>", "x".repeat(300));
        assert_eq!(
            parse_with(big.as_bytes(), limits),
            Err(DdError::TooLarge { limit: 200 })
        );
        let long = "<media><name>eleven char</name></media>";
        assert_eq!(
            parse_with(long.as_bytes(), limits),
            Err(DdError::TextTooLong { limit: 10 })
        );
        let deep = "<media><a><b><c>x</c></b></a></media>";
        assert_eq!(
            parse_with(deep.as_bytes(), limits),
            Err(DdError::TooDeep { limit: 3 })
        );
        // Within the limits the same shapes parse (unknown elements are skipped).
        let ok = "<media><a><b/></a><objectURI>p</objectURI><size>1</size><type>t</type></media>";
        assert!(parse_with(ok.as_bytes(), limits).is_ok());
    }

    #[test]
    fn sniffs_descriptors() {
        assert!(looks_like_descriptor(FULL.as_bytes()));
        assert!(looks_like_descriptor(
            b"\xEF\xBB\xBF<media xmlns=\"http://www.openmobilealliance.org/xmlns/dd\">"
        ));
        assert!(!looks_like_descriptor(b"<media>"));
        assert!(!looks_like_descriptor(
            b"<mediaX xmlns=\"http://www.openmobilealliance.org/xmlns/dd\">"
        ));
        assert!(!looks_like_descriptor(b"\x7fELF\x02\x01\x01"));
        assert!(!looks_like_descriptor(b"<?xml version=\"1.0\""));
        assert!(!looks_like_descriptor(b""));
    }

    #[test]
    fn install_status_reports() {
        let ok: Result<(), DownloadError> = Ok(());
        assert_eq!(InstallStatus::for_outcome(&ok).report(), "900 Success");
        let cases = [
            (DownloadError::TooLarge { limit: 1 }, 901),
            (DownloadError::Cancelled, 902),
            (DownloadError::Timeout, 903),
            (
                DownloadError::SizeMismatch {
                    expected: 1,
                    got: 2,
                },
                905,
            ),
            (DownloadError::Server(500), 954),
        ];
        for (err, code) in cases {
            let status = InstallStatus::for_outcome::<()>(&Err(err));
            assert_eq!(status.code(), code);
            assert!(status.report().starts_with(&code.to_string()));
        }
    }
}
