//! What a node holds: its kind (interior, or a leaf with its value) and its run-time
//! properties. A [`Record`] is also the unit the journal and the store carry, so
//! that an undo, a replay after a restart and a snapshot all restore the same bytes.

use crate::acl::Acl;
use crate::format::Format;

/// Interior node or leaf with its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Interior,
    Leaf(Vec<u8>),
}

/// The run-time properties a device keeps for every node (TND 8.3). Name and Size
/// are not stored: Name is the last segment of the path, Size the value's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Props {
    /// Empty means "inherit from the parent".
    pub acl: Acl,
    pub format: Format,
    /// The MIME type of a leaf, or the URN of the object an interior node roots.
    pub type_: String,
    pub title: String,
    /// Seconds since the Unix epoch of the last change (0: never set).
    pub tstamp: u64,
    /// Incremented at each change; wraps at 65535 to 0.
    pub verno: u16,
}

impl Props {
    /// The properties of a new node of this format.
    pub fn new(format: Format) -> Props {
        Props {
            acl: Acl::default(),
            format,
            type_: String::new(),
            title: String::new(),
            tstamp: 0,
            verno: 0,
        }
    }

    /// Marks a change at `now`: TStamp set, VerNo incremented (wrapping).
    pub fn touch(&mut self, now: u64) {
        self.tstamp = now;
        self.verno = self.verno.wrapping_add(1);
    }
}

/// A node's content and properties, without its place in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub props: Props,
}

impl Record {
    /// An interior node.
    pub fn interior() -> Record {
        Record {
            kind: Kind::Interior,
            props: Props::new(Format::Node),
        }
    }

    /// A leaf with a value of this format.
    pub fn leaf(format: Format, value: impl Into<Vec<u8>>) -> Record {
        Record {
            kind: Kind::Leaf(value.into()),
            props: Props::new(format),
        }
    }

    pub fn is_leaf(&self) -> bool {
        matches!(self.kind, Kind::Leaf(_))
    }

    /// The value of a leaf (`None` for an interior node).
    pub fn value(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Leaf(v) => Some(v),
            Kind::Interior => None,
        }
    }

    /// Sets the MIME type (builder style).
    pub fn with_type(mut self, t: &str) -> Record {
        self.props.type_ = t.to_owned();
        self
    }

    /// Sets the ACL (builder style).
    pub fn with_acl(mut self, acl: Acl) -> Record {
        self.props.acl = acl;
        self
    }
}

/// TStamp as TND wants it: ISO 8601 basic format, UTC (`20261121T093000Z`).
pub fn iso8601_basic(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the well-known
/// era-based conversion: 400-year eras of 146097 days).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tstamp_is_iso8601_basic_utc() {
        assert_eq!(iso8601_basic(0), "19700101T000000Z");
        // 2000-02-29 12:34:56 UTC, a leap day in a century leap year.
        assert_eq!(iso8601_basic(951_827_696), "20000229T123456Z");
        assert_eq!(iso8601_basic(1_795_251_600), "20261121T090000Z");
        // The last second of 2099 and the first of 2100 (not a leap year).
        assert_eq!(iso8601_basic(4_102_444_799), "20991231T235959Z");
        assert_eq!(iso8601_basic(4_107_542_400), "21000301T000000Z");
    }

    #[test]
    fn verno_wraps_and_tstamp_follows_the_clock() {
        let mut p = Props::new(Format::Chr);
        p.verno = u16::MAX;
        p.touch(42);
        assert_eq!((p.verno, p.tstamp), (0, 42));
        p.touch(43);
        assert_eq!((p.verno, p.tstamp), (1, 43));
    }
}
