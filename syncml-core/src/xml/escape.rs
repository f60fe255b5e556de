//! Escaping and unescaping of XML character data, written for the quirks of deployed
//! SyncML peers.
//!
//! Reading accepts the five predefined entities and character references, refuses any
//! other entity reference (entities are never expanded), and keeps a bare `&` that does
//! not start a reference as a literal `&` (some servers send `MAXDT=15&DR=1`). Line ends
//! are normalised as XML requires (`\r\n` and a lone `\r` become `\n`).
//!
//! Writing escapes `&`, `<`, `>` and `\r` (as `&#13;` so that it survives line-end
//! normalisation) and refuses characters XML 1.0 cannot carry.

use std::borrow::Cow;

use crate::error::{EncodeProblem, Problem};

// ---------------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------------

/// Index of the first `&` or `\r` in `b`, from `from`. Eight bytes at a time.
#[inline]
fn find_amp_or_cr(b: &[u8], from: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const AMP: u64 = LO * b'&' as u64;
    const CR: u64 = LO * b'\r' as u64;
    let mut i = from;
    while i + 8 <= b.len() {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[i..i + 8]);
        let v = u64::from_le_bytes(w);
        let x = v ^ AMP;
        let y = v ^ CR;
        // A zero byte in x or y marks a match (exact test, no false positives after the
        // byte-wise check below).
        let hit = (x.wrapping_sub(LO) & !x & HI) | (y.wrapping_sub(LO) & !y & HI);
        if hit != 0 {
            for (k, &c) in b[i..i + 8].iter().enumerate() {
                if c == b'&' || c == b'\r' {
                    return Some(i + k);
                }
            }
        }
        i += 8;
    }
    b[i..]
        .iter()
        .position(|&c| c == b'&' || c == b'\r')
        .map(|k| i + k)
}

fn is_name_start_byte(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':' || c >= 0x80
}

fn is_name_byte(c: u8) -> bool {
    is_name_start_byte(c) || c.is_ascii_digit() || c == b'-' || c == b'.'
}

/// What an `&` at the start of `rest` begins.
enum Amp<'a> {
    /// A well-formed reference: the replacement and the length consumed.
    Char(char, usize),
    /// `&name;` with a name that is not predefined.
    Entity(&'a str),
    /// `&#...;` that is not a valid character.
    BadCharRef(&'a str),
    /// Not a reference: a literal `&`.
    Literal,
}

fn classify_amp(rest: &str) -> Amp<'_> {
    let b = rest.as_bytes();
    debug_assert_eq!(b.first(), Some(&b'&'));
    if b.get(1) == Some(&b'#') {
        // `&#` then alphanumerics then `;`
        let run = b[2..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric())
            .count();
        if b.get(2 + run) != Some(&b';') {
            return Amp::Literal;
        }
        let body = &rest[2..2 + run];
        let parsed = if let Some(hex) = body.strip_prefix(['x', 'X']) {
            if !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()) {
                u32::from_str_radix(hex, 16).ok()
            } else {
                None
            }
        } else if !body.is_empty() && body.bytes().all(|c| c.is_ascii_digit()) {
            body.parse::<u32>().ok()
        } else {
            None
        };
        // Only characters XML 1.0 allows (its Char production): NUL, the other C0
        // controls but tab, LF and CR, U+FFFE/U+FFFF, surrogates and values above
        // U+10FFFF are refused. C0 controls used to pass, which let a message in
        // that no XML writer can write back out (found by fuzzing the round trip).
        return match parsed.and_then(char::from_u32).filter(|&c| is_xml_char(c)) {
            Some(c) => Amp::Char(c, 3 + run),
            None => Amp::BadCharRef(body),
        };
    }
    match b.get(1) {
        Some(&c) if is_name_start_byte(c) => {}
        _ => return Amp::Literal,
    }
    let run = 1 + b[2..].iter().take_while(|&&c| is_name_byte(c)).count();
    if b.get(1 + run) != Some(&b';') {
        return Amp::Literal;
    }
    // The run ends before an ASCII `;`, so it ends on a char boundary.
    let name = &rest[1..1 + run];
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => return Amp::Entity(name),
    };
    Amp::Char(c, 2 + run)
}

/// Unescapes character data (or, with `attr`, an attribute value, whose white space
/// characters are also normalised to spaces). On error, returns the byte offset within
/// `raw` and the problem.
pub(crate) fn unescape(raw: &str, attr: bool) -> Result<Cow<'_, str>, (usize, Problem)> {
    let b = raw.as_bytes();
    let first = if attr {
        b.iter()
            .position(|&c| matches!(c, b'&' | b'\r' | b'\n' | b'\t'))
    } else {
        find_amp_or_cr(b, 0)
    };
    let Some(mut i) = first else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = String::with_capacity(raw.len());
    let mut copied = 0;
    loop {
        // `i` is at `&`, `\r` (or, for attributes, `\n` / `\t`); all ASCII.
        out.push_str(&raw[copied..i]);
        match b[i] {
            b'&' => match classify_amp(&raw[i..]) {
                Amp::Char(c, len) => {
                    out.push(c);
                    i += len;
                }
                Amp::Literal => {
                    out.push('&');
                    i += 1;
                }
                Amp::Entity(name) => return Err((i, Problem::Entity(name.to_string()))),
                Amp::BadCharRef(text) => return Err((i, Problem::CharRef(text.to_string()))),
            },
            b'\r' => {
                out.push(if attr { ' ' } else { '\n' });
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            _ => {
                out.push(' ');
                i += 1;
            }
        }
        copied = i;
        let next = if attr {
            b[i..]
                .iter()
                .position(|&c| matches!(c, b'&' | b'\r' | b'\n' | b'\t'))
                .map(|k| i + k)
        } else {
            find_amp_or_cr(b, i)
        };
        match next {
            Some(n) => i = n,
            None => {
                out.push_str(&raw[copied..]);
                return Ok(Cow::Owned(out));
            }
        }
    }
}

/// Line-end normalisation of a CDATA section (`\r\n` and `\r` become `\n`).
pub(crate) fn normalize_newlines(raw: &str) -> Cow<'_, str> {
    let b = raw.as_bytes();
    let Some(first) = b.iter().position(|&c| c == b'\r') else {
        return Cow::Borrowed(raw);
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut i = first;
    let mut copied = first;
    while i < b.len() {
        if b[i] == b'\r' {
            out.push_str(&raw[copied..i]);
            out.push('\n');
            i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&raw[copied..]);
    Cow::Owned(out)
}

// ---------------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------------

/// Bytes that need attention in text.
const T: u8 = 1;
/// Bytes that need attention in attribute values.
const A: u8 = 2;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = T | A;
        i += 1;
    }
    t[b'\t' as usize] = A;
    t[b'\n' as usize] = A;
    t[b'&' as usize] = T | A;
    t[b'<' as usize] = T | A;
    t[b'>' as usize] = T | A;
    t[b'"' as usize] = A;
    // Lead byte of U+F000..U+FFFF, among them the non-characters U+FFFE / U+FFFF.
    t[0xEF] = T | A;
    t
};

/// Whether `c` may appear in an XML 1.0 document.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

fn escape(out: &mut Vec<u8>, s: &str, mask: u8) -> Result<(), EncodeProblem> {
    let b = s.as_bytes();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if CLASS[c as usize] & mask == 0 {
            i += 1;
            continue;
        }
        let rep: &[u8] = match c {
            b'&' => b"&amp;",
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'"' => b"&quot;",
            b'\r' => b"&#13;",
            b'\n' => b"&#10;",
            b'\t' => b"&#9;",
            0xEF => {
                if b.get(i + 1) == Some(&0xBF) {
                    match b.get(i + 2) {
                        Some(0xBE) => return Err(EncodeProblem::CharNotInXml(0xFFFE)),
                        Some(0xBF) => return Err(EncodeProblem::CharNotInXml(0xFFFF)),
                        _ => {}
                    }
                }
                i += 1;
                continue;
            }
            c => return Err(EncodeProblem::CharNotInXml(c as u32)),
        };
        out.extend_from_slice(&b[copied..i]);
        out.extend_from_slice(rep);
        i += 1;
        copied = i;
    }
    out.extend_from_slice(&b[copied..]);
    Ok(())
}

/// Appends `s` escaped as character data.
pub(crate) fn escape_text(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeProblem> {
    escape(out, s, T)
}

/// Appends `s` escaped as a double-quoted attribute value.
pub(crate) fn escape_attr(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeProblem> {
    escape(out, s, A)
}

/// Appends `data` as CDATA. `]]>` is split across two sections and `\r` is written as
/// `&#13;` between sections (a CDATA section cannot protect it from line-end
/// normalisation).
pub(crate) fn write_cdata(out: &mut Vec<u8>, data: &[u8]) -> Result<(), EncodeProblem> {
    let s = std::str::from_utf8(data).map_err(|_| EncodeProblem::BinaryInXml)?;
    if let Some(c) = s.chars().find(|&c| !is_xml_char(c)) {
        return Err(EncodeProblem::CharNotInXml(c as u32));
    }
    if s.bytes().all(|b| b == b'\r') {
        // At least one section, so that the data still reads back as opaque.
        out.extend_from_slice(b"<![CDATA[]]>");
    }
    for (k, seg) in s.split('\r').enumerate() {
        if k > 0 {
            out.extend_from_slice(b"&#13;");
        }
        if seg.is_empty() {
            continue;
        }
        out.extend_from_slice(b"<![CDATA[");
        let mut rest = seg;
        while let Some(p) = rest.find("]]>") {
            // Close after `]]`, reopen for `>`.
            out.extend_from_slice(&rest.as_bytes()[..p + 2]);
            out.extend_from_slice(b"]]><![CDATA[");
            rest = &rest[p + 2..];
        }
        out.extend_from_slice(rest.as_bytes());
        out.extend_from_slice(b"]]>");
    }
    Ok(())
}

/// Whether `s` is an acceptable XML name. With `colon`, `:` is allowed (attribute
/// names keep their prefix); element names are local names and may not contain it.
pub(crate) fn is_name(s: &str, colon: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let start =
        |c: char| c.is_ascii_alphabetic() || c == '_' || (colon && c == ':') || !c.is_ascii();
    start(first)
        && chars.all(|c| start(c) || c.is_ascii_digit() || c == '-' || c == '.')
        && s.chars().all(is_xml_char)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn un(s: &str) -> Result<Cow<'_, str>, (usize, Problem)> {
        unescape(s, false)
    }

    #[test]
    fn borrowed_without_ampersand() {
        assert!(matches!(
            un("plain text here, long enough"),
            Ok(Cow::Borrowed(_))
        ));
        assert!(matches!(un(""), Ok(Cow::Borrowed(""))));
    }

    #[test]
    fn predefined_and_numeric() {
        assert_eq!(
            un("a &lt;b&gt; &amp; &quot;c&apos;").unwrap(),
            "a <b> & \"c'"
        );
        assert_eq!(un("&#65;&#x42;&#X43;&#x1F600;").unwrap(), "ABC\u{1F600}");
        assert_eq!(un("&#13;").unwrap(), "\r");
    }

    #[test]
    fn raw_ampersand_quirk() {
        assert_eq!(un("MAXDT=15&DR=1").unwrap(), "MAXDT=15&DR=1");
        assert_eq!(un("a & b").unwrap(), "a & b");
        assert_eq!(un("end&").unwrap(), "end&");
        assert_eq!(un("&&amp;").unwrap(), "&&");
        assert_eq!(un("x&DR=1;y").unwrap(), "x&DR=1;y");
        assert_eq!(un("&#zz").unwrap(), "&#zz");
        assert_eq!(un("&#").unwrap(), "&#");
        assert_eq!(un("&;").unwrap(), "&;");
    }

    #[test]
    fn other_entities_are_refused() {
        assert_eq!(
            un("ab&foo;").unwrap_err(),
            (2, Problem::Entity("foo".into()))
        );
        assert_eq!(
            un("&nbsp;").unwrap_err(),
            (0, Problem::Entity("nbsp".into()))
        );
        assert_eq!(
            un("&a:b.c-1;").unwrap_err(),
            (0, Problem::Entity("a:b.c-1".into()))
        );
    }

    #[test]
    fn bad_char_refs() {
        assert_eq!(un("&#0;").unwrap_err(), (0, Problem::CharRef("0".into())));
        // Found by fuzzing (fuzz/regressions/roundtrip_bytes): C0 controls and
        // the non-characters U+FFFE/U+FFFF cannot be written back as XML.
        assert_eq!(un("&#1;").unwrap_err(), (0, Problem::CharRef("1".into())));
        assert_eq!(
            un("a&#x1B;").unwrap_err(),
            (1, Problem::CharRef("x1B".into()))
        );
        assert_eq!(
            un("&#xFFFE;").unwrap_err(),
            (0, Problem::CharRef("xFFFE".into()))
        );
        assert_eq!(un("&#9;&#10;&#13;").unwrap(), "\t\n\r");
        assert_eq!(
            un("x&#xD800;").unwrap_err(),
            (1, Problem::CharRef("xD800".into()))
        );
        assert_eq!(
            un("&#x110000;").unwrap_err(),
            (0, Problem::CharRef("x110000".into()))
        );
        assert_eq!(
            un("&#12a;").unwrap_err(),
            (0, Problem::CharRef("12a".into()))
        );
        assert_eq!(un("&#;").unwrap_err(), (0, Problem::CharRef("".into())));
        assert_eq!(
            un("&#99999999999;").unwrap_err(),
            (0, Problem::CharRef("99999999999".into()))
        );
    }

    #[test]
    fn line_ends_are_normalised() {
        assert_eq!(un("a\r\nb\rc\n").unwrap(), "a\nb\nc\n");
        assert_eq!(
            un("0123456789abcdef\r\n0123456789").unwrap(),
            "0123456789abcdef\n0123456789"
        );
        assert_eq!(unescape("a\tb\r\nc\nd&#9;", true).unwrap(), "a b c d\t");
        assert_eq!(normalize_newlines("x\r\ny\r"), "x\ny\n");
    }

    #[test]
    fn finder_matches_naive_search() {
        let s = b"0123456789&abcdefgh\rijklmnopqrstuvwxyz&";
        let mut from = 0;
        while from <= s.len() {
            let naive = s[from..]
                .iter()
                .position(|&c| c == b'&' || c == b'\r')
                .map(|k| k + from);
            assert_eq!(find_amp_or_cr(s, from), naive, "from {from}");
            from += 1;
        }
        // Bytes that differ from '&' / '\r' only in the high bit.
        assert_eq!(
            find_amp_or_cr(&[0xA6, 0x8D, 0xA6, 0x8D, 0xA6, 0x8D, 0xA6, 0x8D, b'&'], 0),
            Some(8)
        );
    }

    fn esc(s: &str) -> Result<String, EncodeProblem> {
        let mut v = Vec::new();
        escape_text(&mut v, s)?;
        Ok(String::from_utf8(v).unwrap())
    }

    #[test]
    fn text_escaping() {
        assert_eq!(
            esc("a<b>&c\r\n\td\"'").unwrap(),
            "a&lt;b&gt;&amp;c&#13;\n\td\"'"
        );
        assert_eq!(esc("é\u{FFFD}").unwrap(), "é\u{FFFD}");
        assert_eq!(esc("a\u{1}"), Err(EncodeProblem::CharNotInXml(1)));
        assert_eq!(esc("\0"), Err(EncodeProblem::CharNotInXml(0)));
        assert_eq!(esc("x\u{FFFE}"), Err(EncodeProblem::CharNotInXml(0xFFFE)));
        assert_eq!(esc("\u{FFFF}"), Err(EncodeProblem::CharNotInXml(0xFFFF)));
    }

    #[test]
    fn attr_escaping() {
        let mut v = Vec::new();
        escape_attr(&mut v, "a\"b\t\n\r<&>").unwrap();
        assert_eq!(v, b"a&quot;b&#9;&#10;&#13;&lt;&amp;&gt;");
    }

    #[test]
    fn cdata_writing() {
        let mut v = Vec::new();
        write_cdata(&mut v, b"a]]>b").unwrap();
        assert_eq!(v, b"<![CDATA[a]]]]><![CDATA[>b]]>");
        v.clear();
        write_cdata(&mut v, b"x\r\ny").unwrap();
        assert_eq!(v, b"<![CDATA[x]]>&#13;<![CDATA[\ny]]>");
        v.clear();
        write_cdata(&mut v, b"").unwrap();
        assert_eq!(v, b"<![CDATA[]]>");
        assert_eq!(
            write_cdata(&mut v, &[0xFF, 0x00]),
            Err(EncodeProblem::BinaryInXml)
        );
        assert_eq!(
            write_cdata(&mut v, b"a\x01"),
            Err(EncodeProblem::CharNotInXml(1))
        );
    }

    #[test]
    fn names() {
        assert!(is_name("SyncML", false));
        assert!(is_name("_a-b.c1", false));
        assert!(is_name("Größe", false));
        assert!(is_name("xml:lang", true));
        assert!(!is_name("a:b", false));
        assert!(!is_name("", false));
        assert!(!is_name("1a", false));
        assert!(!is_name("a b", false));
        assert!(!is_name("a>", false));
    }
}
