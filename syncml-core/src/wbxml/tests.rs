//! Tests of the WBXML codec.

use std::borrow::Cow;

use super::*;
use crate::error::{EncodeProblem, Error, Problem};
use crate::event::{Attr, Event, Namespace, Sink, Source, Start};
use crate::limits::Limits;

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/aosp-dm11"
);

/// A simplified event for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    S(Namespace, String, Vec<Attr>),
    T(String),
    O(Vec<u8>),
    E,
}

fn s(name: &str) -> Ev {
    Ev::S(Namespace::SyncMl, name.to_string(), vec![])
}
fn m(name: &str) -> Ev {
    Ev::S(Namespace::MetInf, name.to_string(), vec![])
}
fn t(text: &str) -> Ev {
    Ev::T(text.to_string())
}

/// Reads all events to Eof, merging adjacent text and opaque pieces.
fn read_all(bytes: &[u8]) -> Result<Vec<Ev>, Error> {
    let mut r = WbxmlReader::new(bytes, Limits::default())?;
    let mut out: Vec<Ev> = Vec::new();
    loop {
        match r.next()? {
            Event::Start(Start { ns, name, attrs }) => out.push(Ev::S(ns, name.into(), attrs)),
            Event::Text(x) => match out.last_mut() {
                Some(Ev::T(prev)) => prev.push_str(&x),
                _ => out.push(Ev::T(x.into_owned())),
            },
            Event::Opaque(x) => match out.last_mut() {
                Some(Ev::O(prev)) => prev.extend_from_slice(&x),
                _ => out.push(Ev::O(x.into_owned())),
            },
            Event::End => out.push(Ev::E),
            Event::Eof => break,
        }
    }
    assert_eq!(r.next().unwrap(), Event::Eof, "Eof repeats");
    Ok(out)
}

fn write_all(opts: WbxmlOptions, pid: PublicId, evs: &[Ev]) -> Result<Vec<u8>, Error> {
    let mut w = WbxmlWriter::new(opts, pid);
    for e in evs {
        match e {
            Ev::S(ns, n, a) => w.start(ns, n, a)?,
            Ev::T(x) => w.text(x)?,
            Ev::O(x) => w.opaque(x)?,
            Ev::E => w.end()?,
        }
    }
    w.finish()
}

fn no_table() -> WbxmlOptions {
    WbxmlOptions {
        version: 2,
        string_table: false,
    }
}

/// The error of reading `bytes` (header or body).
fn read_err(bytes: &[u8]) -> Error {
    read_all(bytes).expect_err("should fail")
}

fn assert_err(bytes: &[u8], offset: usize, problem: Problem) {
    let e = read_err(bytes);
    assert_eq!(e, Error::decode(offset, problem), "input {bytes:02X?}");
}

/// A header: WBXML 1.2, public id 0x1201, UTF-8, then the given table.
fn hdr(table: &[u8]) -> Vec<u8> {
    let mut v = vec![0x02, 0xA4, 0x01, 0x6A];
    mbint::write(&mut v, table.len() as u32);
    v.extend_from_slice(table);
    v
}

fn doc(table: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = hdr(table);
    v.extend_from_slice(body);
    v
}

// ---------------------------------------------------------------- real vectors

fn vector(name: &str) -> Vec<u8> {
    let p = format!("{VECTORS}/{name}");
    std::fs::read(&p).unwrap_or_else(|e| panic!("cannot read {p}: {e}"))
}

#[test]
fn every_aosp_vector_reads_to_eof() {
    let mut n = 0;
    for entry in std::fs::read_dir(VECTORS).expect("vector directory") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("wbxml") {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        let evs = read_all(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(evs.first(), Some(&s("SyncML")), "{}", path.display());
        assert_eq!(evs.last(), Some(&Ev::E));
        let starts = evs.iter().filter(|e| matches!(e, Ev::S(..))).count();
        let ends = evs.iter().filter(|e| matches!(e, Ev::E)).count();
        assert_eq!(starts, ends);
        n += 1;
    }
    assert_eq!(n, 4, "four .wbxml vectors");
}

#[test]
fn testreplace_events() {
    let bytes = vector("testreplace.wbxml");
    let r = WbxmlReader::new(&bytes, Limits::default()).unwrap();
    assert_eq!(
        r.header(),
        &Header {
            version: 2,
            public_id: PublicId::Numeric(0x0FD3),
            charset: 106
        }
    );
    assert_eq!(
        r.header().public_id.name(),
        Some("-//SYNCML//DTD SyncML 1.1//EN")
    );
    let evs = read_all(&bytes).unwrap();
    assert_eq!(
        &evs[..6],
        &[
            s("SyncML"),
            s("SyncHdr"),
            s("VerDTD"),
            t("1.1"),
            Ev::E,
            s("VerProto")
        ]
    );
    // SyncHdr/Source/LocURI comes from the string table (STR_T 0x0E).
    let pos = evs.iter().position(|e| *e == t("000000011234564")).unwrap();
    assert_eq!(&evs[pos - 2..pos], &[s("Source"), s("LocURI")]);
    // Meta > (page 1) Format "b64", Type "syncml:auth-basic"
    let f = evs.iter().position(|e| *e == m("Format")).unwrap();
    assert_eq!(evs[f + 1], t("b64"));
    assert_eq!(evs[f + 3], m("Type"));
    assert_eq!(evs[f + 4], t("syncml:auth-basic"));
    // The first OPAQUE Data: DevId.
    let o = evs.iter().find_map(|e| match e {
        Ev::O(d) => Some(d.clone()),
        _ => None,
    });
    assert_eq!(o.unwrap(), b"\r\n     000000011234564\r\n    ".to_vec());
    let opaques = evs.iter().filter(|e| matches!(e, Ev::O(_))).count();
    assert_eq!(opaques, 9);
    // Final is a bare token: Start, End.
    let fi = evs.iter().position(|e| *e == s("Final")).unwrap();
    assert_eq!(evs[fi + 1], Ev::E);
}

#[test]
fn metinf_elements_are_in_the_metinf_namespace_and_end_works_on_page_1() {
    let bytes = vector("testadd.wbxml");
    let evs = read_all(&bytes).unwrap();
    let meta = evs.iter().position(|e| *e == s("Meta")).unwrap();
    assert_eq!(evs[meta + 1], m("Format"));
    assert_eq!(evs[meta + 2], t("b64"));
    // After the MetInf page, SyncML elements come back on page 0.
    let data = evs.iter().position(|e| *e == s("Data")).unwrap();
    assert!(data > meta);
    assert!(evs.contains(&m("MaxMsgSize")));
    assert!(evs.contains(&t("./TestLeafNode")));
    // The RespURI string sits in the string table.
    assert!(evs.contains(&t("http://10.72.34.217/Scts?4ELIAA==")));
}

#[test]
fn testget_has_the_1_2_public_id() {
    let bytes = vector("testget.wbxml");
    let r = WbxmlReader::new(&bytes, Limits::default()).unwrap();
    assert_eq!(r.header().public_id, PublicId::Numeric(0x1201));
    let evs = read_all(&bytes).unwrap();
    assert!(evs.contains(&t("./DevDetail/URI/MaxDepth")));
}

// ---------------------------------------------------------------- header

#[test]
fn public_id_through_the_string_table() {
    let pid = b"-//SYNCML//DTD SyncML 1.1//EN\0";
    let mut bytes = vec![0x02, 0x00, 0x00, 0x6A, pid.len() as u8];
    bytes.extend_from_slice(pid);
    bytes.extend_from_slice(&[0x12]); // <Final/> as the root
    let r = WbxmlReader::new(&bytes, Limits::default()).unwrap();
    assert_eq!(
        r.header().public_id,
        PublicId::Text("-//SYNCML//DTD SyncML 1.1//EN".into())
    );
    assert_eq!(r.header().public_id.syncml_version(), Some("1.1"));
    assert_eq!(read_all(&bytes).unwrap(), vec![s("Final"), Ev::E]);
    // Index out of range.
    let mut bad = bytes.clone();
    bad[2] = 0x40;
    assert_err(
        &bad,
        2,
        Problem::StringTableIndex {
            index: 0x40,
            len: pid.len(),
        },
    );
}

#[test]
fn header_errors() {
    assert_err(&[], 0, Problem::Empty);
    assert_err(
        &[0x04, 0xA4, 0x01, 0x6A, 0x00, 0x12],
        0,
        Problem::WbxmlVersion(4),
    );
    assert_err(&[0x00], 0, Problem::WbxmlVersion(0));
    assert_err(
        &[0x02, 0xA4, 0x01, 0x05, 0x00, 0x12],
        3,
        Problem::Charset(5),
    );
    assert_err(
        &[0x02, 0xA4, 0x01, 0x6A, 0x05, b'a', 0],
        4,
        Problem::LengthTooLarge {
            len: 5,
            remaining: 2,
        },
    );
    // Truncated in each header field.
    for cut in [1, 2, 3, 4] {
        let full = [0x02, 0xA4, 0x01, 0x6A, 0x00];
        assert_err(
            &full[..cut],
            cut,
            Problem::Truncated("a multi-byte integer"),
        );
    }
    assert_err(&[0x02, 0x00], 2, Problem::Truncated("a multi-byte integer"));
    assert_err(&[0x02, 0xA4, 0x01, 0x6A, 0x00], 5, Problem::NoRoot);
    // All accepted versions and charsets.
    for v in 1..=3u8 {
        for cs in [106u8, 3, 0, 4] {
            assert_eq!(
                read_all(&[v, 0x01, cs, 0x00, 0x12]).unwrap(),
                vec![s("Final"), Ev::E]
            );
        }
    }
    let small = Limits {
        max_message_size: 3,
        ..Limits::default()
    };
    assert_eq!(
        WbxmlReader::new(&[0x02, 0x01, 0x6A, 0x00, 0x12], small).unwrap_err(),
        Error::decode(0, Problem::MessageTooLarge { size: 5, limit: 3 })
    );
}

#[test]
fn public_id_helpers() {
    assert_eq!(PublicId::for_syncml("1.2"), PublicId::Numeric(0x1201));
    assert_eq!(PublicId::for_syncml("1.1"), PublicId::Numeric(0x0FD3));
    assert_eq!(PublicId::for_syncml("1.0"), PublicId::Numeric(0x0FD1));
    assert_eq!(
        PublicId::for_syncml("1.3"),
        PublicId::Text("-//SYNCML//DTD SyncML 1.3//EN".into())
    );
    assert_eq!(
        PublicId::Numeric(0x1201).name(),
        Some("-//SYNCML//DTD SyncML 1.2//EN")
    );
    assert_eq!(
        PublicId::Numeric(0x1202).name(),
        Some("-//SYNCML//DTD MetInf 1.2//EN")
    );
    assert_eq!(
        PublicId::Numeric(0x0FD1).name(),
        Some("-//SYNCML//DTD SyncML 1.0//EN")
    );
    assert_eq!(PublicId::Numeric(1).name(), None);
    assert_eq!(PublicId::Numeric(0x1201).syncml_version(), Some("1.2"));
}

#[test]
fn looks_like_wbxml_cases() {
    assert!(looks_like_wbxml(&vector("testreplace.wbxml")));
    assert!(looks_like_wbxml(&[0x03, 0x01, 0x6A]));
    assert!(looks_like_wbxml(&[0x02, 0x00, 0x00]));
    assert!(!looks_like_wbxml(b"<?xml version=\"1.0\"?>"));
    assert!(!looks_like_wbxml(b"<SyncML>"));
    assert!(!looks_like_wbxml(&[0xEF, 0xBB, 0xBF, b'<']));
    assert!(!looks_like_wbxml(&[]));
    assert!(!looks_like_wbxml(&[0x02]));
    assert!(!looks_like_wbxml(&[0x02, 0x80, 0x80, 0x80, 0x80, 0x80]));
}

// ---------------------------------------------------------------- body

#[test]
fn charset_latin1_converts_to_utf8() {
    let bytes = [0x02, 0x01, 0x04, 0x00, 0x6D, 0x03, b'a', 0xE9, 0x00, 0x01];
    let mut r = WbxmlReader::new(&bytes, Limits::default()).unwrap();
    assert!(matches!(r.next().unwrap(), Event::Start(_)));
    match r.next().unwrap() {
        Event::Text(Cow::Owned(x)) => assert_eq!(x, "a\u{e9}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn borrowed_strings_and_offsets() {
    // SyncML > [VerDTD STR_I "1.2"] [VerProto STR_T 0] [Final]
    let bytes = doc(
        b"DM/1.2\0",
        &[
            0x6D, 0x71, 0x03, b'1', b'.', b'2', 0, 0x01, 0x72, 0x83, 0x00, 0x01, 0x12, 0x01,
        ],
    );
    let base = hdr(b"DM/1.2\0").len();
    let mut r = WbxmlReader::new(&bytes, Limits::default()).unwrap();
    let mut got = Vec::new();
    loop {
        let e = r.next().unwrap();
        let done = e == Event::Eof;
        if let Event::Text(c) = &e {
            assert!(matches!(c, Cow::Borrowed(_)));
        }
        got.push((r.offset() - base, e));
        if done {
            break;
        }
    }
    let offs: Vec<usize> = got.iter().map(|(o, _)| *o).collect();
    // SyncML@0 VerDTD@1 text@2 End@7 VerProto@8 text@9 End@11 Final@12 End@12 End@13 Eof@14
    assert_eq!(offs, vec![0, 1, 2, 7, 8, 9, 11, 12, 12, 13, 14]);
}

#[test]
fn entity_gives_one_character() {
    let bytes = doc(b"", &[0x6D, 0x02, 0x81, 0x20, 0x02, 0x41, 0x01]);
    assert_eq!(
        read_all(&bytes).unwrap(),
        vec![s("SyncML"), t("\u{a0}A"), Ev::E]
    );
    // Surrogate code point.
    let bad = doc(b"", &[0x6D, 0x02, 0x83, 0xB0, 0x00, 0x01]);
    assert_err(&bad, 7, Problem::CharRef("55296".into()));
}

#[test]
fn literal_tags_and_attributes() {
    // Table: "GetFirmwareUpdate\0" @0, "x\0" @18
    let table = b"GetFirmwareUpdate\0x\0";
    // SyncML > LITERAL_C(0) > Data(bare) ; LITERAL_AC(18) attrs: LITERAL(18) STR_I "v" END, END
    let body = [
        0x6D, 0x44, 0x00, 0x0F, 0x01, 0xC4, 18, 0x04, 18, 0x03, b'v', 0, 0x02, 0x41, 0x01, 0x01,
        0x01,
    ];
    let evs = read_all(&doc(table, &body)).unwrap();
    assert_eq!(
        evs,
        vec![
            s("SyncML"),
            s("GetFirmwareUpdate"),
            s("Data"),
            Ev::E,
            Ev::E,
            Ev::S(
                Namespace::SyncMl,
                "x".into(),
                vec![Attr {
                    name: "x".into(),
                    value: "vA".into()
                }]
            ),
            Ev::E,
            Ev::E
        ]
    );
}

#[test]
fn literal_takes_the_parent_namespace() {
    let table = b"Foo\0";
    // SyncML > Meta > page 1 > MetInf > LITERAL_C Foo
    let body = [
        0x6D, 0x5A, 0x00, 0x01, 0x4E, 0x44, 0x00, 0x01, 0x01, 0x01, 0x01,
    ];
    let evs = read_all(&doc(table, &body)).unwrap();
    assert_eq!(evs[3], Ev::S(Namespace::MetInf, "Foo".into(), vec![]));
}

#[test]
fn pi_is_skipped() {
    let table = b"target\0";
    // PI LITERAL(0) STR_I "x" END before the root, inside, and after it.
    let pi = [0x43, 0x04, 0x00, 0x03, b'x', 0, 0x01];
    let mut body = pi.to_vec();
    body.push(0x6D);
    body.extend_from_slice(&pi);
    body.push(0x01);
    body.extend_from_slice(&pi);
    assert_eq!(
        read_all(&doc(table, &body)).unwrap(),
        vec![s("SyncML"), Ev::E]
    );
}

#[test]
fn body_errors() {
    let h = hdr(b"ab\0").len();
    let d = |body: &[u8]| doc(b"ab\0", body);
    // Truncated in each place.
    assert_err(&d(&[0x6D]), h + 1, Problem::Truncated("an element"));
    assert_err(
        &d(&[0x6D, 0x03, b'a']),
        h + 3,
        Problem::Truncated("an inline string"),
    );
    assert_err(
        &d(&[0x6D, 0x83]),
        h + 2,
        Problem::Truncated("a multi-byte integer"),
    );
    assert_err(
        &d(&[0x6D, 0xC3, 0x85]),
        h + 3,
        Problem::Truncated("a multi-byte integer"),
    );
    assert_err(
        &d(&[0x6D, 0x02]),
        h + 2,
        Problem::Truncated("a multi-byte integer"),
    );
    assert_err(
        &d(&[0x6D, 0x00]),
        h + 2,
        Problem::Truncated("a SWITCH_PAGE"),
    );
    assert_err(
        &d(&[0xED, 0x04]),
        h + 2,
        Problem::Truncated("a multi-byte integer"),
    );
    assert_err(
        &d(&[0xED, 0x04, 0x00]),
        h + 3,
        Problem::Truncated("an attribute list"),
    );
    assert_err(
        &d(&[0x44]),
        h + 1,
        Problem::Truncated("a multi-byte integer"),
    );
    // Unknown page, unknown token.
    assert_err(&d(&[0x00, 0x03, 0x6D]), h + 1, Problem::UnknownCodePage(3));
    assert_err(
        &d(&[0x6D, 0x70, 0x01]),
        h + 1,
        Problem::UnknownToken {
            page: 0,
            token: 0x30,
        },
    );
    assert_err(
        &d(&[0x00, 0x01, 0x7F, 0x01]),
        h + 2,
        Problem::UnknownToken {
            page: 1,
            token: 0x3F,
        },
    );
    // String table index out of range / not NUL-terminated.
    assert_err(
        &d(&[0x6D, 0x83, 0x03, 0x01]),
        h + 2,
        Problem::StringTableIndex { index: 3, len: 3 },
    );
    assert_err(
        &d(&[0x44, 0x09, 0x01]),
        h + 1,
        Problem::StringTableIndex { index: 9, len: 3 },
    );
    let unterminated = doc(b"ab", &[0x6D, 0x83, 0x00, 0x01]);
    assert_err(
        &unterminated,
        hdr(b"ab").len() + 2,
        Problem::StringTableIndex { index: 0, len: 2 },
    );
    // OPAQUE length beyond the input.
    assert_err(
        &d(&[0x6D, 0xC3, 0x10, 1, 2, 0x01]),
        h + 2,
        Problem::LengthTooLarge {
            len: 16,
            remaining: 3,
        },
    );
    assert_err(
        &d(&[0x6D, 0xC3, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F]),
        h + 2,
        Problem::LengthTooLarge {
            len: u32::MAX as u64,
            remaining: 0,
        },
    );
    // Trailing content, unbalanced END.
    assert_err(&d(&[0x6D, 0x01, 0x12]), h + 2, Problem::TrailingContent);
    assert_err(&d(&[0x12, 0x12]), h + 1, Problem::TrailingContent);
    assert_err(&d(&[0x01]), h, Problem::UnbalancedEnd);
    // Text before the root.
    assert_err(&d(&[0x03, b'x', 0, 0x6D, 0x01]), h, Problem::NoRoot);
    assert_err(&d(&[0xC3, 0x00, 0x6D, 0x01]), h, Problem::NoRoot);
    // Invalid UTF-8 (the offending byte).
    assert_err(
        &d(&[0x6D, 0x03, b'a', 0xFF, 0, 0x01]),
        h + 3,
        Problem::InvalidUtf8,
    );
    assert_err(
        &doc(b"a\xC3\0", &[0x6D, 0x83, 0x00, 0x01]),
        hdr(b"a\xC3\0").len() + 2,
        Problem::InvalidUtf8,
    );
    // Extensions.
    assert_err(
        &d(&[0x6D, 0x40, 0x03, b'x', 0, 0x01]),
        h + 1,
        Problem::UnsupportedToken("EXT_I_0", 0x40),
    );
    assert_err(
        &d(&[0x6D, 0x82, 0x00, 0x01]),
        h + 1,
        Problem::UnsupportedToken("EXT_T_2", 0x82),
    );
    assert_err(
        &d(&[0x6D, 0xC1, 0x01]),
        h + 1,
        Problem::UnsupportedToken("EXT_1", 0xC1),
    );
    // Attribute tokens SyncML does not define.
    assert_err(
        &d(&[0xED, 0x05, 0x01]),
        h + 1,
        Problem::UnknownToken {
            page: 0,
            token: 0x05,
        },
    );
    assert_err(
        &d(&[0xED, 0x04, 0x00, 0x85, 0x01]),
        h + 3,
        Problem::UnknownToken {
            page: 0,
            token: 0x85,
        },
    );
    assert_err(
        &d(&[0xED, 0x00, 0x07, 0x06, 0x01]),
        h + 3,
        Problem::UnknownToken {
            page: 7,
            token: 0x06,
        },
    );
}

#[test]
fn errors_repeat() {
    let bytes = doc(b"", &[0x6D, 0x01, 0x01]);
    let mut r = WbxmlReader::new(&bytes, Limits::default()).unwrap();
    r.next().unwrap();
    r.next().unwrap();
    let e = r.next().unwrap_err();
    assert_eq!(e.problem(), Some(&Problem::TrailingContent));
    assert_eq!(r.next().unwrap_err(), e);
}

#[test]
fn limits_depth_and_string_length() {
    // Depth 3 of SyncML > SyncBody > Add with max_depth 2.
    let bytes = doc(b"", &[0x6D, 0x6B, 0x45, 0x01, 0x01, 0x01]);
    let lim = Limits {
        max_depth: 2,
        ..Limits::default()
    };
    let h = hdr(b"").len();
    let mut r = WbxmlReader::new(&bytes, lim).unwrap();
    r.next().unwrap();
    r.next().unwrap();
    assert_eq!(
        r.next().unwrap_err(),
        Error::decode(h + 2, Problem::TooDeep(2))
    );
    let lim3 = Limits {
        max_depth: 3,
        ..Limits::default()
    };
    let mut r = WbxmlReader::new(&bytes, lim3).unwrap();
    for _ in 0..6 {
        r.next().unwrap();
    }
    assert_eq!(r.next().unwrap(), Event::Eof);

    let small = Limits {
        max_string_len: 3,
        ..Limits::default()
    };
    let long_text = doc(b"", &[0x6D, 0x03, b'a', b'b', b'c', b'd', 0, 0x01]);
    let mut r = WbxmlReader::new(&long_text, small).unwrap();
    r.next().unwrap();
    assert_eq!(
        r.next().unwrap_err(),
        Error::decode(h + 1, Problem::StringTooLong { len: 4, limit: 3 })
    );
    let long_opaque = doc(b"", &[0x6D, 0xC3, 0x04, 1, 2, 3, 4, 0x01]);
    let mut r = WbxmlReader::new(&long_opaque, small).unwrap();
    r.next().unwrap();
    assert_eq!(
        r.next().unwrap_err(),
        Error::decode(h + 1, Problem::StringTooLong { len: 4, limit: 3 })
    );
    let ok = doc(b"", &[0x6D, 0xC3, 0x03, 1, 2, 3, 0x01]);
    let mut r = WbxmlReader::new(&ok, small).unwrap();
    r.next().unwrap();
    assert_eq!(
        r.next().unwrap(),
        Event::Opaque(Cow::Borrowed(&[1u8, 2, 3][..]))
    );
}

#[test]
fn no_panic_on_any_prefix_or_byte_flip() {
    let bytes = vector("testreplace.wbxml");
    for cut in 0..bytes.len() {
        let _ = read_all(&bytes[..cut]).expect_err("prefix must fail");
    }
    for i in 0..bytes.len() {
        for x in [0x00u8, 0x01, 0x03, 0x04, 0x43, 0x80, 0x83, 0xC3, 0xFF] {
            let mut b = bytes.clone();
            b[i] = x;
            let _ = read_all(&b);
        }
    }
}

// ---------------------------------------------------------------- writer

fn tiny() -> Vec<Ev> {
    vec![
        s("SyncML"),
        s("SyncHdr"),
        s("VerDTD"),
        t("1.2"),
        Ev::E,
        Ev::E,
        Ev::E,
    ]
}

#[test]
fn writer_exact_bytes_of_a_tiny_document() {
    let expect = [
        0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x6C, 0x71, 0x03, b'1', b'.', b'2', 0x00, 0x01, 0x01,
        0x01,
    ];
    for opts in [WbxmlOptions::default(), no_table()] {
        let out = write_all(opts, PublicId::Numeric(0x1201), &tiny()).unwrap();
        assert_eq!(out, expect);
    }
}

#[test]
fn writer_uses_the_string_table_for_repeated_text() {
    let evs = vec![
        s("SyncML"),
        s("SyncHdr"),
        s("VerProto"),
        t("DM/1.2"),
        Ev::E,
        s("SessionID"),
        t("DM/1.2"),
        Ev::E,
        Ev::E,
        Ev::E,
    ];
    let out = write_all(WbxmlOptions::default(), PublicId::Numeric(0x1201), &evs).unwrap();
    assert_eq!(
        out,
        [
            0x02, 0xA4, 0x01, 0x6A, 0x07, b'D', b'M', b'/', b'1', b'.', b'2', 0, 0x6D, 0x6C, 0x72,
            0x83, 0x00, 0x01, 0x65, 0x83, 0x00, 0x01, 0x01, 0x01
        ]
    );
    assert_eq!(read_all(&out).unwrap(), evs);
    let out = write_all(no_table(), PublicId::Numeric(0x1201), &evs).unwrap();
    assert_eq!(out[4], 0x00, "empty table");
    assert_eq!(read_all(&out).unwrap(), evs);
}

#[test]
fn writer_literal_for_extension_commands() {
    let evs = vec![
        s("SyncML"),
        s("SyncBody"),
        s("GetFirmwareUpdate"),
        s("CmdID"),
        t("2"),
        Ev::E,
        Ev::E,
        s("Final"),
        Ev::E,
        Ev::E,
        Ev::E,
    ];
    for opts in [WbxmlOptions::default(), no_table()] {
        let out = write_all(opts, PublicId::Numeric(0x1201), &evs).unwrap();
        let mut expect = vec![0x02, 0xA4, 0x01, 0x6A, 18];
        expect.extend_from_slice(b"GetFirmwareUpdate\0");
        expect.extend_from_slice(&[
            0x6D, 0x6B, 0x44, 0x00, 0x4B, 0x03, b'2', 0, 0x01, 0x01, 0x12, 0x01, 0x01,
        ]);
        assert_eq!(out, expect);
        assert_eq!(read_all(&out).unwrap(), evs);
    }
}

#[test]
fn writer_switches_pages_only_when_needed() {
    let evs = vec![
        s("SyncML"),
        s("SyncHdr"),
        s("Meta"),
        m("MaxMsgSize"),
        t("10"),
        Ev::E,
        m("MaxObjSize"),
        t("20"),
        Ev::E,
        Ev::E,
        Ev::E,
        s("SyncBody"),
        s("Final"),
        Ev::E,
        Ev::E,
        Ev::E,
    ];
    let out = write_all(no_table(), PublicId::Numeric(0x1201), &evs).unwrap();
    assert_eq!(
        &out[5..],
        &[
            0x6D, 0x6C, 0x5A, 0x00, 0x01, 0x4C, 0x03, b'1', b'0', 0, 0x01, 0x55, 0x03, b'2', b'0',
            0, 0x01, 0x01, 0x01, 0x00, 0x00, 0x6B, 0x12, 0x01, 0x01
        ]
    );
    assert_eq!(read_all(&out).unwrap(), evs);
}

#[test]
fn writer_empty_element_is_a_bare_token() {
    let evs = vec![s("SyncML"), s("Final"), Ev::E, Ev::E];
    let out = write_all(no_table(), PublicId::Numeric(0x1201), &evs).unwrap();
    assert_eq!(&out[5..], &[0x6D, 0x12, 0x01]);
    // Empty text and opaque add nothing.
    let mut w = WbxmlWriter::new(no_table(), PublicId::Numeric(0x1201));
    w.start(&Namespace::SyncMl, "SyncML", &[]).unwrap();
    w.leaf(&Namespace::SyncMl, "Data", "").unwrap();
    w.start(&Namespace::SyncMl, "Data", &[]).unwrap();
    w.opaque(&[]).unwrap();
    w.end().unwrap();
    w.empty(&Namespace::SyncMl, "NoResp").unwrap();
    w.end().unwrap();
    assert_eq!(&w.finish().unwrap()[5..], &[0x6D, 0x0F, 0x0F, 0x1D, 0x01]);
}

#[test]
fn writer_attributes_round_trip() {
    let a = vec![
        Attr {
            name: "xml:lang".into(),
            value: "en-GB".into(),
        },
        Attr {
            name: "empty".into(),
            value: String::new(),
        },
    ];
    let other = Namespace::Other("urn:x".into());
    let evs = vec![
        s("SyncML"),
        Ev::S(Namespace::SyncMl, "Data".into(), a.clone()),
        t("x"),
        Ev::E,
        Ev::S(Namespace::SyncMl, "Final".into(), a.clone()),
        Ev::E,
        Ev::S(other, "foo".into(), a.clone()),
        Ev::E,
        Ev::E,
    ];
    for opts in [WbxmlOptions::default(), no_table()] {
        let out = write_all(opts, PublicId::Numeric(0x1201), &evs).unwrap();
        let back = read_all(&out).unwrap();
        // Namespace::Other comes back as the parent's namespace.
        let mut expect = evs.clone();
        expect[6] = Ev::S(Namespace::SyncMl, "foo".into(), a.clone());
        assert_eq!(back, expect);
    }
    // The Data start: tag with content and attribute bits, LITERAL names.
    let out = write_all(
        no_table(),
        PublicId::Numeric(0x1201),
        &evs[..4].iter().cloned().chain([Ev::E]).collect::<Vec<_>>(),
    )
    .unwrap();
    let table = b"xml:lang\0empty\0";
    let mut expect = vec![0x02, 0xA4, 0x01, 0x6A, table.len() as u8];
    expect.extend_from_slice(table);
    expect.extend_from_slice(&[0x6D, 0xCF, 0x04, 0x00, 0x03]);
    expect.extend_from_slice(b"en-GB\0");
    expect.extend_from_slice(&[0x04, 0x09, 0x01, 0x03, b'x', 0, 0x01, 0x01]);
    assert_eq!(out, expect);
}

#[test]
fn writer_textual_public_id_and_opaque() {
    let pid = PublicId::Text("-//SYNCML//DTD SyncML 1.3//EN".into());
    let evs = vec![
        s("SyncML"),
        s("Data"),
        Ev::O(vec![0, 1, 2, 0xFF]),
        Ev::E,
        Ev::E,
    ];
    let out = write_all(WbxmlOptions::default(), pid.clone(), &evs).unwrap();
    assert_eq!(&out[..3], &[0x02, 0x00, 0x00]);
    let r = WbxmlReader::new(&out, Limits::default()).unwrap();
    assert_eq!(r.header().public_id, pid);
    assert_eq!(read_all(&out).unwrap(), evs);
    assert!(out.ends_with(&[0x4F, 0xC3, 0x04, 0, 1, 2, 0xFF, 0x01, 0x01]));
}

#[test]
fn writer_errors() {
    let pid = PublicId::Numeric(0x1201);
    let mut w = WbxmlWriter::new(WbxmlOptions::default(), pid.clone());
    assert_eq!(
        w.end().unwrap_err(),
        Error::Encode(EncodeProblem::UnbalancedEnd)
    );
    w.start(&Namespace::SyncMl, "SyncML", &[]).unwrap();
    assert_eq!(
        w.text("a\0b").unwrap_err(),
        Error::Encode(EncodeProblem::NulInString)
    );
    w.start(&Namespace::SyncMl, "SyncHdr", &[]).unwrap();
    assert_eq!(
        w.finish().unwrap_err(),
        Error::Encode(EncodeProblem::Unclosed(2))
    );
    let mut w = WbxmlWriter::new(WbxmlOptions::default(), pid.clone());
    assert!(w.text("x").is_err());
    let w = WbxmlWriter::new(WbxmlOptions::default(), pid);
    assert!(w.finish().is_err());
}

#[test]
fn writer_round_trips_the_aosp_vectors() {
    for name in [
        "testadd.wbxml",
        "testdelete.wbxml",
        "testget.wbxml",
        "testreplace.wbxml",
    ] {
        let evs = read_all(&vector(name)).unwrap();
        for opts in [WbxmlOptions::default(), no_table()] {
            let out = write_all(opts, PublicId::Numeric(0x0FD3), &evs).unwrap();
            assert_eq!(read_all(&out).unwrap(), evs, "{name}");
        }
    }
}

/// A message of about `n` Replace commands (roughly 90 bytes of XML each).
fn big_events(n: usize) -> Vec<Ev> {
    let mut evs = vec![s("SyncML"), s("SyncBody")];
    for i in 0..n {
        evs.extend([
            s("Replace"),
            s("CmdID"),
            t(&i.to_string()),
            Ev::E,
            s("Item"),
            s("Target"),
            s("LocURI"),
            t(&format!("./Vendor/Node{}/Leaf", i % 500)),
            Ev::E,
            Ev::E,
            s("Meta"),
            m("Format"),
            t("chr"),
            Ev::E,
            Ev::E,
            s("Data"),
            t(&format!("value number {i}")),
            Ev::E,
            Ev::E,
            Ev::E,
        ]);
    }
    evs.extend([s("Final"), Ev::E, Ev::E, Ev::E]);
    evs
}

#[test]
fn large_message_round_trip() {
    // About 1.8 MB as XML. Timing is printed (run with --release --nocapture to see
    // realistic numbers); only correctness is asserted here.
    let evs = big_events(10_000);
    for opts in [
        no_table(),
        WbxmlOptions::default(),
        no_table(),
        WbxmlOptions::default(),
    ] {
        let t0 = std::time::Instant::now();
        let out = write_all(opts, PublicId::Numeric(0x1201), &evs).unwrap();
        let t1 = std::time::Instant::now();
        let back = read_all(&out).unwrap();
        let t2 = std::time::Instant::now();
        println!(
            "table={} {} bytes, write {:?}, read {:?}",
            opts.string_table,
            out.len(),
            t1 - t0,
            t2 - t1
        );
        assert_eq!(back, evs);
    }
}

#[test]
fn large_message_raw_reader_speed() {
    let evs = big_events(10_000);
    let out = write_all(WbxmlOptions::default(), PublicId::Numeric(0x1201), &evs).unwrap();
    let t0 = std::time::Instant::now();
    let mut r = WbxmlReader::new(&out, Limits::default()).unwrap();
    let mut n = 0usize;
    let mut bytes = 0usize;
    loop {
        match r.next().unwrap() {
            Event::Eof => break,
            Event::Text(x) => bytes += x.len(),
            _ => {}
        }
        n += 1;
    }
    println!("read {n} events ({bytes} text bytes) in {:?}", t0.elapsed());
    assert_eq!(n, evs.len());
}

/// Found by fuzzing (fuzz/regressions/roundtrip_bytes/empty-literal-name): a LITERAL
/// naming the empty string was read as an element (or attribute) no writer can write.
#[test]
fn empty_literal_names_are_refused() {
    let problem = Problem::UnsupportedToken("LITERAL with an empty name", 0);
    // Table: "" at 0, "x" at 1. Root SyncML (0x6D), then LITERAL|CONTENT -> "".
    let bytes = doc(b"\0x\0", &[0x6D, 0x44, 0x00, 0x01, 0x01]);
    let e = read_err(&bytes);
    assert!(
        matches!(e, Error::Decode { problem: Problem::UnsupportedToken(what, _), .. } if what == "LITERAL with an empty name"),
        "{e:?} (expected {problem:?})"
    );
    // An attribute LITERAL naming "" (SyncML with attributes: 0xED, LITERAL -> "").
    let bytes = doc(b"\0x\0", &[0xED, 0x04, 0x00, 0x01, 0x01]);
    assert!(matches!(
        read_err(&bytes),
        Error::Decode {
            problem: Problem::UnsupportedToken(_, 0x04),
            ..
        }
    ));
    // A non-empty literal still reads.
    assert!(read_all(&doc(b"\0x\0", &[0x6D, 0x44, 0x01, 0x01, 0x01])).is_ok());
}

/// Found by fuzzing (fuzz/regressions/roundtrip_bytes/nul-in-opaque-beside-text): an
/// opaque run holding a NUL beside text was joined into one text, which no encoding
/// can write; the runs stay apart.
#[test]
fn opaque_with_nul_beside_text_stays_apart() {
    use crate::{decode, encode, Data, Encoding, Item, ItemCmd, MessageBuilder};
    let mut m = MessageBuilder::client(crate::DmVersion::V1_2, "1", "IMEI:1", "http://s/").finish();
    let mut item = Item::source("./DevInfo/Sort");
    item.data = vec![Data::Nodes(vec![
        crate::Node::Text("80/Manage".into()),
        crate::Node::Opaque(b"\0\x01VScts".to_vec()),
    ])];
    m.body
        .commands
        .push(crate::Command::Replace(ItemCmd::new(vec![item])));
    let bytes = encode(&m, Encoding::Wbxml).unwrap();
    let back = decode(&bytes).unwrap();
    assert_eq!(back, m);
    assert_eq!(decode(&encode(&back, Encoding::Wbxml).unwrap()).unwrap(), m);
}
