//! The Format property of a node (TND 8.3.7.2, formats from OMA META) and the checks a
//! leaf value must pass before the tree stores it.
//!
//! Values arrive as raw bytes (already decoded from any transport Base64), so every
//! check works on bytes and never assumes UTF-8 unless the format requires it.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use quick_xml::events::Event;
use quick_xml::Reader;

/// How a node's value is to be interpreted; interior nodes always have [`Format::Node`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    B64,
    Bin,
    Bool,
    Chr,
    Int,
    Node,
    Null,
    Xml,
    Date,
    Time,
    Float,
}

/// Why a Format name or a value was refused, so the caller can pick a status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    #[error("unknown format {0:?}")]
    UnknownFormat(String),
    #[error("invalid {format} value: {reason}")]
    Invalid {
        format: Format,
        reason: &'static str,
    },
}

impl Format {
    /// Every format, for exhaustive tests and for advertising support.
    pub const ALL: [Format; 11] = [
        Format::B64,
        Format::Bin,
        Format::Bool,
        Format::Chr,
        Format::Int,
        Format::Node,
        Format::Null,
        Format::Xml,
        Format::Date,
        Format::Time,
        Format::Float,
    ];

    /// Reads a Meta Format / Format property value; names are lower case on the wire,
    /// but surrounding white space from pretty-printed XML is tolerated.
    pub fn from_name(s: &str) -> Option<Format> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The wire name, as sent in Meta Format and returned by `?prop=Format`.
    pub fn name(self) -> &'static str {
        match self {
            Format::B64 => "b64",
            Format::Bin => "bin",
            Format::Bool => "bool",
            Format::Chr => "chr",
            Format::Int => "int",
            Format::Node => "node",
            Format::Null => "null",
            Format::Xml => "xml",
            Format::Date => "date",
            Format::Time => "time",
            Format::Float => "float",
        }
    }

    /// Whether a node of this format may carry a value (only interior nodes cannot).
    pub fn is_leaf(self) -> bool {
        self != Format::Node
    }

    /// Checks a leaf value (the raw bytes as they arrived) against the format.
    pub fn validate(self, value: &[u8]) -> Result<(), FormatError> {
        let check = match self {
            Format::Bin => Ok(()),
            Format::Chr => std::str::from_utf8(value)
                .map(|_| ())
                .map_err(|_| "not valid UTF-8"),
            Format::Node => {
                if value.is_empty() {
                    Ok(())
                } else {
                    Err("an interior node has no value")
                }
            }
            Format::Null => {
                if value.iter().all(u8::is_ascii_whitespace) {
                    Ok(())
                } else {
                    Err("a null value must be empty")
                }
            }
            Format::B64 => check_b64(value),
            Format::Bool => trimmed_str(value).and_then(parse_bool).map(|_| ()),
            Format::Int => trimmed_str(value).and_then(parse_int).map(|_| ()),
            Format::Float => trimmed_str(value).and_then(check_float),
            Format::Date => check_date(trim_ascii(value)),
            Format::Time => check_time(trim_ascii(value)),
            Format::Xml => std::str::from_utf8(value)
                .map_err(|_| "not valid UTF-8")
                .and_then(check_xml),
        };
        check.map_err(|reason| FormatError::Invalid {
            format: self,
            reason,
        })
    }

    /// The canonical stored form of a value of this format, so that equal values compare
    /// equal and Get returns a tidy value. Only called after [`Format::validate`]
    /// succeeded; on an invalid value it still returns something rather than panic.
    pub fn normalize(self, value: &[u8]) -> Vec<u8> {
        match self {
            Format::Bin | Format::B64 | Format::Chr | Format::Xml => value.to_vec(),
            Format::Node | Format::Null => Vec::new(),
            Format::Bool => trim_ascii(value).to_ascii_lowercase(),
            // Drops a '+' sign and leading zeros so that "+007" and "7" store alike.
            Format::Int => match trimmed_str(value).and_then(parse_int) {
                Ok(n) => n.to_string().into_bytes(),
                Err(_) => trim_ascii(value).to_vec(),
            },
            Format::Float | Format::Date | Format::Time => trim_ascii(value).to_vec(),
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Format {
    type Err = FormatError;

    fn from_str(s: &str) -> Result<Format, FormatError> {
        Format::from_name(s).ok_or_else(|| FormatError::UnknownFormat(s.to_owned()))
    }
}

fn trim_ascii(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &value[start..end]
}

fn trimmed_str(value: &[u8]) -> Result<&str, &'static str> {
    std::str::from_utf8(trim_ascii(value)).map_err(|_| "not valid UTF-8")
}

fn parse_bool(s: &str) -> Result<bool, &'static str> {
    if s.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if s.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err("expected \"true\" or \"false\"")
    }
}

/// OMA META only says "32-bit integer"; we read it as signed (i32), the common device
/// reading, so negative values are valid and 2147483648 is out of range.
fn parse_int(s: &str) -> Result<i32, &'static str> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err("expected a decimal integer");
    }
    // The syntax is already known good, so any failure left is an overflow.
    s.parse::<i32>()
        .map_err(|_| "out of range for a signed 32-bit integer")
}

fn check_float(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    // Rust's parser also accepts these words, which are not decimal numbers.
    let word = s.strip_prefix(['+', '-']).unwrap_or(s);
    if ["inf", "infinity", "nan"]
        .iter()
        .any(|w| word.eq_ignore_ascii_case(w))
    {
        return Err("infinity and NaN are not decimal numbers");
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(()),
        Ok(_) => Err("out of range for a 64-bit float"),
        Err(_) => Err("expected a decimal floating-point number"),
    }
}

/// MIME-style Base64 (RFC 2045): the standard alphabet with padding, and line breaks or
/// other white space ignored wherever they fall.
fn check_b64(value: &[u8]) -> Result<(), &'static str> {
    let compact: Vec<u8> = value
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(&compact)
        .map(|_| ())
        .map_err(|e| match e {
            base64::DecodeError::InvalidByte(_, b'=') => "misplaced '=' padding",
            base64::DecodeError::InvalidByte(..) => "character outside the Base64 alphabet",
            base64::DecodeError::InvalidLength(_) => "length is not a multiple of 4",
            base64::DecodeError::InvalidLastSymbol(..) => "non-zero bits in the last symbol",
            base64::DecodeError::InvalidPadding => "missing or wrong '=' padding",
        })
}

/// Reads exactly `N` ASCII digits as a number.
fn digits<const N: usize>(s: &[u8]) -> Option<u32> {
    if s.len() != N || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, b| n * 10 + u32::from(b - b'0')))
}

// `%` rather than `is_multiple_of`, which is newer than the workspace's rust-version.
#[allow(clippy::manual_is_multiple_of)]
fn is_leap(year: u32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

/// ISO 8601 calendar date, complete representation only: `YYYY-MM-DD` or `YYYYMMDD`.
fn check_date(s: &[u8]) -> Result<(), &'static str> {
    const SHAPE: &str = "expected YYYY-MM-DD or YYYYMMDD";
    let (y, m, d) = match s {
        [y @ .., b'-', _, _, b'-', _, _] if y.len() == 4 => (&s[0..4], &s[5..7], &s[8..10]),
        _ if s.len() == 8 => (&s[0..4], &s[4..6], &s[6..8]),
        _ => return Err(SHAPE),
    };
    let (Some(year), Some(month), Some(day)) = (digits::<4>(y), digits::<2>(m), digits::<2>(d))
    else {
        return Err(SHAPE);
    };
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => return Err("month out of range 01-12"),
    };
    if day == 0 || day > days_in_month {
        return Err("day out of range for the month");
    }
    Ok(())
}

/// ISO 8601 time of day: `hh:mm[:ss[.f]]` or `hhmm[ss[.f]]`, then an optional zone
/// `Z`, `±hh`, `±hh:mm` or `±hhmm`. Either zone form is accepted after either time form
/// (ISO asks for consistency; devices are not always careful). `24:00[:00]` is the end
/// of the day and second 60 is a leap second.
fn check_time(s: &[u8]) -> Result<(), &'static str> {
    const SHAPE: &str = "expected hh:mm[:ss[.sss]] or hhmm[ss[.sss]] with an optional zone";
    let zone_at = s
        .iter()
        .position(|&b| matches!(b, b'Z' | b'+' | b'-'))
        .unwrap_or(s.len());
    let (clock, zone) = s.split_at(zone_at);

    let (main, fraction) = match clock.iter().position(|&b| b == b'.') {
        Some(i) => (&clock[..i], Some(&clock[i + 1..])),
        None => (clock, None),
    };
    let extended = main.get(2) == Some(&b':');
    let parts: Vec<&[u8]> = if extended {
        main.split(|&b| b == b':').collect()
    } else if main.len() % 2 == 0 {
        main.chunks(2).collect()
    } else {
        return Err(SHAPE);
    };
    if !(2..=3).contains(&parts.len()) {
        return Err(SHAPE);
    }
    let mut fields = [0u32; 3];
    for (field, part) in fields.iter_mut().zip(&parts) {
        *field = digits::<2>(part).ok_or(SHAPE)?;
    }
    let [hour, minute, second] = fields;
    let fraction_is_zero = match fraction {
        None => true,
        // A fraction belongs to the seconds; ISO's fractional minutes are not accepted.
        Some(f) if parts.len() == 3 && !f.is_empty() && f.iter().all(u8::is_ascii_digit) => {
            f.iter().all(|&b| b == b'0')
        }
        Some(_) => return Err(SHAPE),
    };
    if hour > 24 {
        return Err("hour out of range 00-24");
    }
    if minute > 59 {
        return Err("minute out of range 00-59");
    }
    if second > 60 {
        return Err("second out of range 00-60");
    }
    if hour == 24 && (minute != 0 || second != 0 || !fraction_is_zero) {
        return Err("24 is only allowed as 24:00:00");
    }
    check_zone(zone)
}

fn check_zone(zone: &[u8]) -> Result<(), &'static str> {
    const SHAPE: &str = "expected a zone Z, ±hh, ±hh:mm or ±hhmm";
    let offset = match zone {
        [] | [b'Z'] => return Ok(()),
        [b'+' | b'-', rest @ ..] => rest,
        _ => return Err(SHAPE),
    };
    let (hh, mm) = match offset {
        [_, _] => (offset, None),
        [_, _, b':', _, _] | [_, _, _, _] => (&offset[..2], Some(&offset[offset.len() - 2..])),
        _ => return Err(SHAPE),
    };
    let hour = digits::<2>(hh).ok_or(SHAPE)?;
    let minute = mm.map_or(Some(0), digits::<2>).ok_or(SHAPE)?;
    if hour > 23 || minute > 59 {
        return Err("zone offset out of range");
    }
    Ok(())
}

/// Well-formed XML content as allowed inside an element: any mix of elements and text,
/// several top-level elements allowed. quick-xml checks tag balance and syntax; this adds
/// the checks it leaves to callers: legal characters, names, attribute values and
/// references (only the five predefined entities are known without a DTD).
fn check_xml(s: &str) -> Result<(), &'static str> {
    if let Some(c) = s.chars().find(|&c| !is_xml_char(c)) {
        return Err(if c.is_control() {
            "control character not allowed in XML"
        } else {
            "non-character not allowed in XML"
        });
    }
    let mut reader = Reader::from_str(s);
    let config = reader.config_mut();
    config.check_end_names = true;
    config.check_comments = true;
    let mut depth = 0usize;
    loop {
        match reader.read_event() {
            Err(_) => return Err("not well-formed XML"),
            Ok(Event::Eof) => break,
            Ok(Event::Start(e)) => {
                check_element(&e)?;
                depth += 1;
            }
            Ok(Event::Empty(e)) => check_element(&e)?,
            Ok(Event::End(_)) => depth = depth.checked_sub(1).ok_or("unmatched end tag")?,
            Ok(Event::Text(t)) => {
                if t.contains("]]>") {
                    return Err("\"]]>\" not allowed in text");
                }
            }
            Ok(Event::GeneralRef(r)) => match r.resolve_char_ref() {
                Ok(Some(c)) if is_xml_char(c) => {}
                Ok(Some(_)) | Err(_) => return Err("bad character reference"),
                Ok(None) if matches!(&*r, "amp" | "lt" | "gt" | "apos" | "quot") => {}
                Ok(None) => return Err("unknown entity reference"),
            },
            Ok(_) => {}
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err("unclosed element")
    }
}

fn check_element(e: &quick_xml::events::BytesStart<'_>) -> Result<(), &'static str> {
    if !is_xml_name(e.name().as_ref().as_bytes()) {
        return Err("bad element name");
    }
    for attr in e.attributes() {
        let attr = attr.map_err(|_| "bad attribute")?;
        if !is_xml_name(attr.key.as_ref().as_bytes()) {
            return Err("bad attribute name");
        }
        if attr.value.contains('<') {
            return Err("'<' not allowed in an attribute value");
        }
        let value = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| "bad reference in attribute value")?;
        // The raw text was checked already, so a bad character here came from a reference.
        if !value.chars().all(is_xml_char) {
            return Err("bad character reference in attribute value");
        }
    }
    Ok(())
}

/// XML 1.0 `Char`: tab, newline, carriage return and everything from U+0020 except the
/// two non-characters U+FFFE and U+FFFF (Rust chars already exclude surrogates).
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// An approximation of XML `Name` that is exact for ASCII: a letter, '_' or ':' first,
/// then also digits, '-' and '.'; any non-ASCII character is let through.
fn is_xml_name(name: &[u8]) -> bool {
    let start_ok = |b: &u8| b.is_ascii_alphabetic() || matches!(b, b'_' | b':') || !b.is_ascii();
    let rest_ok = |b: &u8| start_ok(b) || b.is_ascii_digit() || matches!(b, b'-' | b'.');
    match name.split_first() {
        Some((first, rest)) => start_ok(first) && rest.iter().all(rest_ok),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(f: Format, v: &str) {
        assert_eq!(f.validate(v.as_bytes()), Ok(()), "{f} should accept {v:?}");
    }

    fn bad(f: Format, v: &str) {
        assert!(
            matches!(f.validate(v.as_bytes()), Err(FormatError::Invalid { format, .. }) if format == f),
            "{f} should reject {v:?}"
        );
    }

    fn norm(f: Format, v: &str) -> String {
        String::from_utf8(f.normalize(v.as_bytes())).unwrap()
    }

    #[test]
    fn names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::from_name(f.name()), Some(f));
            assert_eq!(f.to_string(), f.name());
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        let mut names: Vec<_> = Format::ALL.iter().map(|f| f.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 11);
    }

    #[test]
    fn from_name_trims_but_is_case_sensitive() {
        assert_eq!(Format::from_name("  int \n"), Some(Format::Int));
        assert_eq!(Format::from_name("INT"), None);
        assert_eq!(Format::from_name("Chr"), None);
        assert_eq!(Format::from_name(""), None);
        assert_eq!(Format::from_name("string"), None);
        assert_eq!(
            "x".parse::<Format>(),
            Err(FormatError::UnknownFormat("x".into()))
        );
    }

    #[test]
    fn leaf_formats() {
        for f in Format::ALL {
            assert_eq!(f.is_leaf(), f != Format::Node);
        }
    }

    #[test]
    fn error_messages_name_the_format() {
        let e = Format::Int.validate(b"x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid int value: expected a decimal integer"
        );
        assert_eq!(
            FormatError::UnknownFormat("foo".into()).to_string(),
            "unknown format \"foo\""
        );
    }

    #[test]
    fn bin_accepts_anything() {
        assert_eq!(Format::Bin.validate(&[0, 0xff, 0xfe, b'<']), Ok(()));
        assert_eq!(Format::Bin.validate(b""), Ok(()));
        assert_eq!(Format::Bin.normalize(b" a "), b" a ");
    }

    #[test]
    fn chr_is_utf8() {
        ok(Format::Chr, "");
        ok(Format::Chr, " héllo ✓ ");
        assert!(Format::Chr.validate(&[b'a', 0xff]).is_err());
        assert!(Format::Chr.validate(&[0xc3]).is_err());
        assert_eq!(norm(Format::Chr, " a "), " a ");
    }

    #[test]
    fn node_and_null() {
        ok(Format::Node, "");
        bad(Format::Node, " ");
        bad(Format::Node, "x");
        ok(Format::Null, "");
        ok(Format::Null, " \r\n\t");
        bad(Format::Null, "0");
        bad(Format::Null, "null");
        assert_eq!(norm(Format::Null, "  "), "");
        assert_eq!(norm(Format::Node, ""), "");
    }

    #[test]
    fn bool_values() {
        for v in ["true", "false", "TRUE", "False", " true\n", "tRuE"] {
            ok(Format::Bool, v);
        }
        for v in ["", "1", "0", "yes", "truee", "t rue", "on"] {
            bad(Format::Bool, v);
        }
        assert_eq!(norm(Format::Bool, " TRUE "), "true");
        assert_eq!(norm(Format::Bool, "False"), "false");
    }

    #[test]
    fn int_bounds_and_syntax() {
        ok(Format::Int, "2147483647");
        ok(Format::Int, "-2147483648");
        bad(Format::Int, "2147483648");
        bad(Format::Int, "-2147483649");
        bad(Format::Int, "99999999999999999999");
        ok(Format::Int, "0");
        ok(Format::Int, "+5");
        ok(Format::Int, "-0");
        ok(Format::Int, "007");
        ok(Format::Int, " \t42\r\n");
        for v in [
            "", " ", "-", "+", "1.0", "1e3", "0x10", "--1", "+-1", "1 2", "١",
        ] {
            bad(Format::Int, v);
        }
        let e = Format::Int.validate(b"2147483648").unwrap_err();
        assert!(e.to_string().contains("out of range"), "{e}");
        assert_eq!(norm(Format::Int, " +007 "), "7");
        assert_eq!(norm(Format::Int, "-0"), "0");
        assert_eq!(norm(Format::Int, "-2147483648"), "-2147483648");
    }

    #[test]
    fn float_values() {
        for v in [
            "0", "1.5", "-1.5", "+2", ".5", "5.", "1e10", "1E-3", "-0.0", " 3.25 ",
        ] {
            ok(Format::Float, v);
        }
        for v in [
            "",
            " ",
            "inf",
            "-Infinity",
            "+INF",
            "NaN",
            "nan",
            "1e400",
            "-1e400",
            "1,5",
            "0x1p3",
            "1.2.3",
            "e5",
            "abc",
            "1 .5",
        ] {
            bad(Format::Float, v);
        }
        assert_eq!(norm(Format::Float, " 1.50 "), "1.50");
    }

    #[test]
    fn b64_values() {
        for v in [
            "",
            "QQ==",
            "QUI=",
            "QUJD",
            "QUJD\r\nREVG",
            " QUJD REVG\n",
            "QU JD",
        ] {
            ok(Format::B64, v);
        }
        for v in [
            "QQ", "QQ=", "QUI", "Q===", "QQ==QQ==", "=QQ=", "QUJ-", "QUJ_", "QR==", "QUJ*",
        ] {
            bad(Format::B64, v);
        }
        assert_eq!(norm(Format::B64, "QU JD\n"), "QU JD\n");
    }

    #[test]
    fn date_values() {
        for v in [
            "2024-02-29",
            "20240229",
            "2000-02-29",
            "1999-12-31",
            "0001-01-01",
            " 2023-01-31 ",
        ] {
            ok(Format::Date, v);
        }
        for v in [
            "2023-02-29",
            "1900-02-29",
            "19000229",
            "2024-02-30",
            "2023-04-31",
            "2023-13-01",
            "2023-00-10",
            "2023-01-00",
            "2023-1-01",
            "2023/01/01",
            "2023-0101",
            "202301-01",
            "230101",
            "2023-01-01T00:00",
            "",
            "abcd-ef-gh",
        ] {
            bad(Format::Date, v);
        }
        assert_eq!(norm(Format::Date, " 20240229\n"), "20240229");
    }

    #[test]
    fn time_values() {
        for v in [
            "00:00:00",
            "23:59:59",
            "235959",
            "12:30",
            "1230",
            "23:59:60",
            "24:00:00",
            "24:00",
            "2400",
            "24:00:00.000",
            "12:00:00.5",
            "120000.123456",
            "12:00:00Z",
            "120000Z",
            "12:00:00+02:00",
            "12:00:00-0530",
            "120000+0200",
            "12:00+01",
            " 12:00:00Z ",
        ] {
            ok(Format::Time, v);
        }
        for v in [
            "",
            "24:00:01",
            "24:01",
            "24:00:00.1",
            "25:00:00",
            "12:60:00",
            "12:00:61",
            "1:00:00",
            "12:0:00",
            "12:00:",
            "12",
            "12345",
            "12:00:00.",
            "12:00.5",
            "12:00:00,5",
            "12:00:00z",
            "12:00:00+2",
            "12:00:00+24:00",
            "12:00:00+02:60",
            "12:00:00+02:00Z",
            "12:00:00 Z",
            "12:0000",
            "12:00:00:00",
            "ab:cd:ef",
        ] {
            bad(Format::Time, v);
        }
        assert_eq!(norm(Format::Time, " 12:00Z\n"), "12:00Z");
    }

    #[test]
    fn xml_values() {
        for v in [
            "",
            "plain text",
            "<a/>",
            "<a>1</a><b x='1' y=\"&amp;\">t</b> tail",
            "<?xml version=\"1.0\"?><root><c/></root>",
            "<a><!-- c --><![CDATA[<&>]]>&lt;&gt;&amp;&apos;&quot;&#65;&#x42;</a>",
            "<ns:a xmlns:ns='urn:x'>é</ns:a>",
            "a > b",
        ] {
            ok(Format::Xml, v);
        }
        for v in [
            "<a>",
            "</a>",
            "<a></b>",
            "<a><b></a></b>",
            "<a",
            "a & b",
            "&unknown;",
            "&#0;",
            "&#xD800;",
            "&#1;",
            "<a x=1/>",
            "<a x='1' x='2'/>",
            "<a x='&bad;'/>",
            "<a x='&#1;'/>",
            "<a x='<'/>",
            "<1a/>",
            "<a>]]></a>",
            "<!-- a -- b -->",
            "\u{1}",
        ] {
            bad(Format::Xml, v);
        }
        assert!(Format::Xml.validate(&[b'<', b'a', b'>', 0xff]).is_err());
        assert_eq!(norm(Format::Xml, " <a/> "), " <a/> ");
    }

    proptest! {
        #[test]
        fn any_i32_validates_and_normalizes_to_itself(n: i32) {
            let s = n.to_string();
            prop_assert_eq!(Format::Int.validate(s.as_bytes()), Ok(()));
            prop_assert_eq!(Format::Int.normalize(s.as_bytes()), s.into_bytes());
        }

        #[test]
        fn padded_and_signed_i32_normalizes_to_canonical(n in 0..=i32::MAX, pad in " {0,3}") {
            let s = format!("{pad}+{n:012}{pad}");
            prop_assert_eq!(Format::Int.validate(s.as_bytes()), Ok(()));
            prop_assert_eq!(Format::Int.normalize(s.as_bytes()), n.to_string().into_bytes());
        }

        #[test]
        fn any_i64_outside_i32_is_rejected(n in prop_oneof![
            i64::MIN..i64::from(i32::MIN),
            (i64::from(i32::MAX) + 1)..=i64::MAX,
        ]) {
            prop_assert!(Format::Int.validate(n.to_string().as_bytes()).is_err());
        }

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            for f in Format::ALL {
                let _ = f.validate(&bytes);
                let _ = f.normalize(&bytes);
            }
        }

        #[test]
        fn any_text_never_panics(s in "[-+:.,0-9TZa-z<>/&;#=' \"!?\\[\\]]{0,40}") {
            for f in Format::ALL {
                if f.validate(s.as_bytes()).is_ok() {
                    // A normalized valid value stays valid.
                    prop_assert_eq!(f.validate(&f.normalize(s.as_bytes())), Ok(()));
                }
            }
        }

        #[test]
        fn any_base64_encoding_validates(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let text = base64::engine::general_purpose::STANDARD.encode(&bytes);
            prop_assert_eq!(Format::B64.validate(text.as_bytes()), Ok(()));
        }

        #[test]
        fn any_finite_f64_validates(v in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            prop_assert_eq!(Format::Float.validate(v.to_string().as_bytes()), Ok(()));
            prop_assert_eq!(Format::Float.validate(format!("{v:e}").as_bytes()), Ok(()));
        }
    }
}
