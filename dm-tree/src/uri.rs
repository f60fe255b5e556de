//! Management tree URIs: `./A/B`, `A/B?prop=ACL`, `./A?list=TNDS+Value+ACL`.
//!
//! A URI is checked against the limits the device publishes in `./DevDetail/URI`
//! before anything is looked up, so that an over-long URI gets 414 rather than 404.
//! Paths are kept in one canonical form, `.` for the root and `./A/B` below it,
//! whichever of `A/B` and `./A/B` the server sent.

use std::borrow::Cow;
use std::fmt;

use syncml_core::StatusCode as Status;

/// The URI limits of a device (`./DevDetail/URI/MaxDepth`, `MaxTotLen`, `MaxSegLen`).
/// Zero means "no limit", as in DevDetail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UriLimits {
    /// The most segments below the root.
    pub max_depth: usize,
    /// The most bytes in a whole URI, query excluded.
    pub max_tot_len: usize,
    /// The most bytes in one segment.
    pub max_seg_len: usize,
}

impl Default for UriLimits {
    /// The limits a tree publishes unless told otherwise. They are finite so that a
    /// server cannot grow the tree without bound through one URI.
    fn default() -> Self {
        UriLimits {
            max_depth: 32,
            max_tot_len: 1024,
            max_seg_len: 128,
        }
    }
}

impl UriLimits {
    /// No limits at all (for trusted local tools).
    pub const NONE: UriLimits = UriLimits {
        max_depth: 0,
        max_tot_len: 0,
        max_seg_len: 0,
    };

    fn exceeded(limit: usize, n: usize) -> bool {
        limit != 0 && n > limit
    }
}

/// The run-time properties of a node (TND section 8.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Prop {
    Acl,
    Format,
    Name,
    Size,
    Title,
    TStamp,
    Type,
    VerNo,
}

impl Prop {
    pub const ALL: [Prop; 8] = [
        Prop::Acl,
        Prop::Format,
        Prop::Name,
        Prop::Size,
        Prop::Title,
        Prop::TStamp,
        Prop::Type,
        Prop::VerNo,
    ];

    /// The property name as written in `?prop=`.
    pub fn name(self) -> &'static str {
        match self {
            Prop::Acl => "ACL",
            Prop::Format => "Format",
            Prop::Name => "Name",
            Prop::Size => "Size",
            Prop::Title => "Title",
            Prop::TStamp => "TStamp",
            Prop::Type => "Type",
            Prop::VerNo => "VerNo",
        }
    }

    /// The property of this name (exact case, as the spec spells them).
    pub fn from_name(s: &str) -> Option<Prop> {
        Prop::ALL.into_iter().find(|p| p.name() == s)
    }

    /// Whether a server may Replace the property (ACL, Name, Title); the others
    /// are kept by the device.
    pub fn is_replaceable(self) -> bool {
        matches!(self, Prop::Acl | Prop::Name | Prop::Title)
    }
}

/// What a TNDS listing includes besides the structure (`?list=TNDS+Value+ACL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TndsFields {
    pub value: bool,
    pub acl: bool,
    pub format: bool,
    pub type_: bool,
    pub size: bool,
    pub title: bool,
    pub tstamp: bool,
    pub verno: bool,
}

impl TndsFields {
    /// Every field.
    pub fn all() -> TndsFields {
        TndsFields {
            value: true,
            acl: true,
            format: true,
            type_: true,
            size: true,
            title: true,
            tstamp: true,
            verno: true,
        }
    }

    fn set(&mut self, name: &str) -> bool {
        let f = match name {
            "Value" => &mut self.value,
            "ACL" => &mut self.acl,
            "Format" => &mut self.format,
            "Type" => &mut self.type_,
            "Size" => &mut self.size,
            "Title" => &mut self.title,
            "TStamp" => &mut self.tstamp,
            "VerNo" => &mut self.verno,
            _ => return false,
        };
        *f = true;
        true
    }
}

/// The query part of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The node itself.
    None,
    /// `?prop=...`: one property of the node.
    Prop(Prop),
    /// `?list=Struct`: the URIs of the subtree.
    Struct,
    /// `?list=StructData`: the URIs and leaf values of the subtree.
    StructData,
    /// `?list=TNDS+...`: the subtree as a TNDS document.
    Tnds(TndsFields),
}

/// A parsed, validated URI. It borrows the text it was parsed from when that is
/// already canonical (`./A/B`, with or without a query), which is what servers send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    path: Cow<'a, str>,
    query: Query,
}

impl<'a> Uri<'a> {
    /// Parses and validates a URI against the device's limits.
    ///
    /// Errors: 400 for a malformed URI (empty segment, `..`, `.` inside, a trailing
    /// `/`, an unknown query), 414 for a URI over a limit, 406 for an unknown property
    /// or TNDS field.
    pub fn parse(s: &'a str, limits: &UriLimits) -> Result<Uri<'a>, UriError> {
        let (path, query) = match s.as_bytes().iter().position(|&c| c == b'?') {
            Some(i) => (&s[..i], parse_query(&s[i + 1..])?),
            None => (s, Query::None),
        };
        Ok(Uri {
            path: canonical_path(path, limits)?,
            query,
        })
    }

    /// A path without a query (for URIs built by the device itself).
    pub fn path(s: &'a str) -> Result<Uri<'a>, UriError> {
        Ok(Uri {
            path: canonical_path(s, &UriLimits::NONE)?,
            query: Query::None,
        })
    }

    /// The canonical path (`.` or `./A/B`).
    pub fn as_str(&self) -> &str {
        &self.path
    }

    pub fn query(&self) -> Query {
        self.query
    }

    /// The same path without a query.
    pub fn without_query(&self) -> Uri<'a> {
        Uri {
            path: self.path.clone(),
            query: Query::None,
        }
    }

    pub fn is_root(&self) -> bool {
        self.path == "."
    }

    /// The last segment (`.` for the root).
    pub fn name(&self) -> &str {
        last_segment(&self.path)
    }

    /// The parent's path (`None` for the root).
    pub fn parent(&self) -> Option<&str> {
        parent_path(&self.path)
    }
}

impl fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)
    }
}

/// The last segment of a canonical path.
pub fn last_segment(path: &str) -> &str {
    path.rsplit_once('/').map_or(path, |(_, n)| n)
}

/// The parent of a canonical path (`None` for the root).
pub fn parent_path(path: &str) -> Option<&str> {
    path.rsplit_once('/').map(|(p, _)| p)
}

/// The canonical path of a child.
pub fn child_path(parent: &str, name: &str) -> String {
    let mut s = String::with_capacity(parent.len() + 1 + name.len());
    s.push_str(parent);
    s.push('/');
    s.push_str(name);
    s
}

/// Whether a node name is acceptable: not empty, no `/`, no `?`, not `.` or `..`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '?'])
}

fn canonical_path<'a>(s: &'a str, limits: &UriLimits) -> Result<Cow<'a, str>, UriError> {
    if s == "." {
        return Ok(Cow::Borrowed(s));
    }
    let rest = s.strip_prefix("./").unwrap_or(s);
    if rest.is_empty() {
        return Err(UriError::Malformed("an empty URI"));
    }
    if UriLimits::exceeded(limits.max_tot_len, rest.len() + 2) {
        return Err(UriError::TooLong("MaxTotLen"));
    }
    // One pass over the bytes: every URI a server sends goes through here.
    let b = rest.as_bytes();
    let (mut depth, mut start) = (0, 0);
    loop {
        let end = b[start..]
            .iter()
            .position(|&c| c == b'/')
            .map_or(b.len(), |i| start + i);
        match &b[start..end] {
            [] => {
                return Err(UriError::Malformed(
                    "an empty segment (`//` or a trailing `/`)",
                ))
            }
            [b'.'] | [b'.', b'.'] => return Err(UriError::Malformed("`.` or `..` inside a URI")),
            seg if UriLimits::exceeded(limits.max_seg_len, seg.len()) => {
                return Err(UriError::TooLong("MaxSegLen"))
            }
            _ => {}
        }
        depth += 1;
        if end == b.len() {
            break;
        }
        start = end + 1;
    }
    if UriLimits::exceeded(limits.max_depth, depth) {
        return Err(UriError::TooLong("MaxDepth"));
    }
    if rest.len() < s.len() {
        return Ok(Cow::Borrowed(s));
    }
    let mut p = String::with_capacity(rest.len() + 2);
    p.push_str("./");
    p.push_str(rest);
    Ok(Cow::Owned(p))
}

fn parse_query(q: &str) -> Result<Query, UriError> {
    if let Some(name) = q.strip_prefix("prop=") {
        return Prop::from_name(name)
            .map(Query::Prop)
            .ok_or(UriError::Unsupported("property"));
    }
    let Some(list) = q.strip_prefix("list=") else {
        return Err(UriError::Malformed("a query other than prop= or list="));
    };
    match list {
        "Struct" => Ok(Query::Struct),
        "StructData" => Ok(Query::StructData),
        _ => {
            let mut parts = list.split('+');
            if parts.next() != Some("TNDS") {
                return Err(UriError::Unsupported("list kind"));
            }
            let mut f = TndsFields::default();
            for p in parts {
                if !f.set(p) {
                    return Err(UriError::Unsupported("TNDS field"));
                }
            }
            Ok(Query::Tnds(f))
        }
    }
}

/// Why a URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    #[error("malformed URI: {0}")]
    Malformed(&'static str),
    #[error("URI over the device's {0}")]
    TooLong(&'static str),
    #[error("unsupported {0} in the URI query")]
    Unsupported(&'static str),
}

impl UriError {
    /// The Status a command on this URI gets.
    pub fn status(self) -> Status {
        match self {
            UriError::Malformed(_) => Status::BadRequest,
            UriError::TooLong(_) => Status::UriTooLong,
            UriError::Unsupported(_) => Status::OptionalFeatureNotSupported,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Uri<'_>, UriError> {
        Uri::parse(s, &UriLimits::default())
    }

    #[test]
    fn both_relative_forms_are_one_path() {
        assert_eq!(parse("./DevInfo/Mod").unwrap().as_str(), "./DevInfo/Mod");
        assert_eq!(parse("DevInfo/Mod").unwrap().as_str(), "./DevInfo/Mod");
        assert_eq!(parse(".").unwrap().as_str(), ".");
        assert!(parse(".").unwrap().is_root());
        let u = parse("./A/B").unwrap();
        assert_eq!((u.name(), u.parent()), ("B", Some("./A")));
        assert_eq!(parse("./A").unwrap().parent(), Some("."));
        assert_eq!(parse(".").unwrap().parent(), None);
    }

    #[test]
    fn malformed_uris_are_400() {
        for bad in [
            "", "./", "./A/", "./A//B", "./A/../B", "./A/./B", "../A", "/A",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status(), Status::BadRequest, "{bad}: {e}");
        }
    }

    #[test]
    fn limits_give_414_exactly_past_the_bound() {
        let l = UriLimits {
            max_depth: 3,
            max_tot_len: 12,
            max_seg_len: 4,
        };
        assert!(Uri::parse("./A/B/C", &l).is_ok());
        assert_eq!(
            Uri::parse("./A/B/C/D", &l).unwrap_err(),
            UriError::TooLong("MaxDepth")
        );
        assert!(Uri::parse("./ABCD", &l).is_ok());
        assert_eq!(
            Uri::parse("./ABCDE", &l).unwrap_err(),
            UriError::TooLong("MaxSegLen")
        );
        // "./" counts: 12 bytes pass, 13 do not, whichever form was sent.
        assert!(Uri::parse("./ABCD/EF/GH", &l).is_ok());
        assert!(Uri::parse("ABCD/EF/GH", &l).is_ok());
        assert_eq!(
            Uri::parse("ABCD/EF/GHI", &l).unwrap_err().status(),
            Status::UriTooLong
        );
        assert!(Uri::parse("./A/B/C/D/E/F/G", &UriLimits::NONE).is_ok());
    }

    #[test]
    fn queries() {
        assert_eq!(
            parse("./A?prop=ACL").unwrap().query(),
            Query::Prop(Prop::Acl)
        );
        assert_eq!(
            parse("A?prop=VerNo").unwrap().query(),
            Query::Prop(Prop::VerNo)
        );
        assert_eq!(
            parse("./A?prop=Color").unwrap_err().status(),
            Status::OptionalFeatureNotSupported
        );
        assert_eq!(parse("./A?list=Struct").unwrap().query(), Query::Struct);
        assert_eq!(
            parse("./A?list=StructData").unwrap().query(),
            Query::StructData
        );
        let Query::Tnds(f) = parse("./A?list=TNDS+Value+ACL").unwrap().query() else {
            panic!()
        };
        assert!(f.value && f.acl && !f.format && !f.verno);
        assert_eq!(
            parse("./A?list=TNDS").unwrap().query(),
            Query::Tnds(TndsFields::default())
        );
        assert_eq!(
            parse("./A?list=TNDS+Colour").unwrap_err().status(),
            Status::OptionalFeatureNotSupported
        );
        assert_eq!(parse("./A?x=1").unwrap_err().status(), Status::BadRequest);
        assert_eq!(
            parse("./A?prop=ACL").unwrap().without_query().query(),
            Query::None
        );
    }

    #[test]
    fn names() {
        assert!(valid_name("x1"));
        for bad in ["", ".", "..", "a/b", "a?b"] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(child_path(".", "A"), "./A");
        assert_eq!(last_segment("./A/B"), "B");
    }
}
