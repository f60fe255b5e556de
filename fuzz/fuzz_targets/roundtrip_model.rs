//! Structure-aware round trip: a message model built from the fuzzer's bytes (every
//! command kind, Meta, Cred/Chal, multi-Data items, binary Data, nested Atomic and
//! Sequence, unknown elements) is encoded in each encoding and decoded back; the
//! value must be the one encoded, and XML, WBXML with and without a string table
//! must all give the same value.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use syncml_core::{
    decode, encode_with, Alert, AlertCode, Attr, Chal, Command, Container, Cred, Data,
    EncodeOptions, Encoding, Item, ItemCmd, Location, Meta, Namespace, Node, Results, Status,
    StatusCode, SyncBody, SyncHdr, SyncMl,
};
use syncml_dm_fuzz::{has_foreign_namespace, without_namespaces};

/// Words that reach the parser's special cases (formats, auth types, URIs...).
const WORDS: &[&str] = &[
    "chr",
    "b64",
    "bin",
    "int",
    "node",
    "xml",
    "syncml:auth-md5",
    "syncml:auth-basic",
    "./DevInfo/DevId",
    "./FUMO/x/Download",
    "DL_URL=http://dl.test/p",
    "DL_Prompt=1",
    "IMEI:493005100592800",
    "https://dm.example.com/dm",
    "text/plain",
    "Tm9uY2U=",
    "a&b<c>d\"e'f",
    "]]>",
    "Grüße ✓",
    "x",
    "0",
    "1226",
];

/// A string as the model holds it after decoding: the codecs drop nothing but
/// what cannot be sent (a NUL cannot go in XML or a WBXML inline string), and the
/// reader takes text runs of a known element as written. Surrounding white space
/// and other control characters (and U+FFFE/U+FFFF, which XML 1.0 cannot carry)
/// are left out here because they are legitimately
/// normalised (XML line ends become \n; the typed reader trims numbers).
fn text(u: &mut Unstructured) -> Result<String> {
    if u.ratio(2, 3)? {
        return Ok(u.choose(WORDS)?.to_string());
    }
    let s: String = u.arbitrary()?;
    // Only characters both encodings carry: XML 1.0 has no U+FFFE / U+FFFF.
    let s: String = s
        .chars()
        .filter(|&c| !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect();
    Ok(s.trim().to_owned())
}

fn nonempty(u: &mut Unstructured) -> Result<String> {
    let s = text(u)?;
    Ok(if s.is_empty() { "x".into() } else { s })
}

fn opt<T>(
    u: &mut Unstructured,
    f: impl FnOnce(&mut Unstructured) -> Result<T>,
) -> Result<Option<T>> {
    Ok(if u.arbitrary()? { Some(f(u)?) } else { None })
}

fn list<T>(
    u: &mut Unstructured,
    max: usize,
    mut f: impl FnMut(&mut Unstructured) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(0..=max)?;
    (0..n).map(|_| f(u)).collect()
}

fn location(u: &mut Unstructured) -> Result<Location> {
    Ok(Location {
        loc_uri: nonempty(u)?,
        loc_name: opt(u, nonempty)?,
        extra: Vec::new(),
    })
}

fn meta(u: &mut Unstructured) -> Result<Meta> {
    let mut m = Meta::default();
    m.format = opt(u, nonempty)?;
    m.type_ = opt(u, nonempty)?;
    m.mark = opt(u, nonempty)?;
    m.size = opt(u, |u| u.arbitrary())?;
    m.version = opt(u, nonempty)?;
    m.next_nonce = opt(u, nonempty)?;
    m.max_msg_size = opt(u, |u| u.arbitrary())?;
    m.max_obj_size = opt(u, |u| u.arbitrary())?;
    m.emi = list(u, 2, nonempty)?;
    Ok(m)
}

fn element(u: &mut Unstructured, depth: u32) -> Result<syncml_core::Element> {
    let names = ["x-vendor", "Ext", "Foo", "Bar"];
    let ns = match u.int_in_range(0..=2)? {
        0 => Namespace::SyncMl,
        1 => Namespace::Other("urn:x-vendor:1".into()),
        _ => Namespace::Ddf,
    };
    let ns_is_other = matches!(ns, Namespace::Other(_));
    let mut e = syncml_core::Element::new(ns, *u.choose(&names)?);
    if ns_is_other && u.arbitrary()? {
        e.attrs.push(Attr {
            name: "id".into(),
            value: text(u)?,
        });
    }
    if depth < 3 && u.arbitrary()? {
        e.children = list(u, 3, |u| element(u, depth + 1).map(Node::Element))?;
    } else {
        let t = text(u)?;
        if !t.is_empty() {
            e.children.push(Node::Text(t));
        }
    }
    Ok(e)
}

fn data(u: &mut Unstructured, binary_ok: bool) -> Result<Data> {
    Ok(match u.int_in_range(0..=2)? {
        0 if binary_ok => {
            // Non-empty: an empty run has no type and reads back as empty text.
            let mut b: Vec<u8> = u.arbitrary()?;
            if b.is_empty() {
                b.push(0);
            }
            Data::Opaque(b)
        }
        _ => Data::Text(nonempty(u)?),
    })
}

fn item(u: &mut Unstructured, binary_ok: bool) -> Result<Item> {
    Ok(Item {
        target: opt(u, location)?,
        source: opt(u, location)?,
        meta: opt(u, |u| meta(u).map(Box::new))?,
        data: list(u, 3, |u| data(u, binary_ok))?,
        more_data: u.arbitrary()?,
        extra: Vec::new(),
    })
}

fn item_cmd(u: &mut Unstructured, id: u32, binary_ok: bool) -> Result<ItemCmd> {
    let mut c = ItemCmd::new(Vec::new());
    c.cmd_id = id;
    c.no_resp = u.arbitrary()?;
    c.meta = opt(u, |u| meta(u).map(Box::new))?;
    c.correlator = opt(u, nonempty)?;
    let n = u.int_in_range(1..=3)?;
    c.items = (0..n).map(|_| item(u, binary_ok)).collect::<Result<_>>()?;
    Ok(c)
}

fn command(u: &mut Unstructured, id: &mut u32, depth: u32, binary_ok: bool) -> Result<Command> {
    *id += 1;
    let cid = *id;
    let which = u.int_in_range(0..=19)?;
    Ok(match which {
        0 => Command::Add(item_cmd(u, cid, binary_ok)?),
        1 => Command::Alert(Alert {
            cmd_id: cid,
            no_resp: u.arbitrary()?,
            cred: None,
            data: Some(AlertCode::from(u.int_in_range(1100..=1226)?)),
            correlator: opt(u, nonempty)?,
            items: list(u, 2, |u| item(u, binary_ok))?,
            extra: Vec::new(),
        }),
        2 | 3 if depth < 3 => {
            let n = u.int_in_range(1..=3)?;
            let commands = (0..n)
                .map(|_| command(u, id, depth + 1, binary_ok))
                .collect::<Result<_>>()?;
            let c = Container {
                cmd_id: cid,
                no_resp: u.arbitrary()?,
                meta: opt(u, |u| meta(u).map(Box::new))?,
                commands,
                extra: Vec::new(),
            };
            if which == 2 {
                Command::Atomic(c)
            } else {
                Command::Sequence(c)
            }
        }
        4 => Command::Copy(item_cmd(u, cid, binary_ok)?),
        5 => Command::Delete(item_cmd(u, cid, binary_ok)?),
        6 => Command::Exec(item_cmd(u, cid, binary_ok)?),
        7 => Command::Get(item_cmd(u, cid, binary_ok)?),
        8 => Command::Status(Status {
            cmd_id: cid,
            msg_ref: opt(u, |u| u.arbitrary())?,
            cmd_ref: u.arbitrary()?,
            cmd: u
                .choose(&["SyncHdr", "Get", "Replace", "Alert"])?
                .to_string(),
            target_ref: list(u, 2, nonempty)?,
            source_ref: list(u, 2, nonempty)?,
            cred: None,
            chal: opt(u, |u| meta(u).map(|m| Chal { meta: Box::new(m) }))?,
            data: StatusCode::from(u.int_in_range(100..=599)?),
            items: list(u, 2, |u| item(u, binary_ok))?,
            extra: Vec::new(),
        }),
        9 => Command::Results(Results {
            cmd_id: cid,
            msg_ref: opt(u, |u| u.arbitrary())?,
            cmd_ref: u.arbitrary()?,
            meta: opt(u, |u| meta(u).map(Box::new))?,
            target_ref: list(u, 2, nonempty)?,
            source_ref: list(u, 2, nonempty)?,
            items: {
                let n = u.int_in_range(1..=3)?;
                (0..n).map(|_| item(u, binary_ok)).collect::<Result<_>>()?
            },
            extra: Vec::new(),
        }),
        10 => Command::GetFirmwareUpdate(item_cmd(u, cid, binary_ok)?),
        11 => Command::VerifyFirmwareUpdate(item_cmd(u, cid, binary_ok)?),
        12 => Command::SaveFirmwareUpdate(item_cmd(u, cid, binary_ok)?),
        13 => Command::ApplyFirmwareUpdate(item_cmd(u, cid, binary_ok)?),
        14 => Command::ConfirmFirmwareUpdate(item_cmd(u, cid, binary_ok)?),
        15 => Command::SimCardChange(item_cmd(u, cid, binary_ok)?),
        16 => Command::Download(item_cmd(u, cid, binary_ok)?),
        17 => Command::Update(item_cmd(u, cid, binary_ok)?),
        18 => {
            let mut e = element(u, 0)?;
            e.name = "x-vendor-command".into();
            e.ns = Namespace::SyncMl;
            Command::Unknown(e)
        }
        _ => Command::Replace(item_cmd(u, cid, binary_ok)?),
    })
}

fn message(u: &mut Unstructured) -> Result<(SyncMl, bool)> {
    // Binary Data cannot go in XML; a message with some is checked in WBXML only.
    let binary_ok = u.ratio(1, 4)?;
    let v12 = u.ratio(3, 4)?;
    let mut hdr = SyncHdr {
        ver_dtd: if v12 { "1.2" } else { "1.1" }.into(),
        ver_proto: if v12 { "DM/1.2" } else { "DM/1.1" }.into(),
        session_id: nonempty(u)?,
        msg_id: u.arbitrary()?,
        target: location(u)?,
        source: location(u)?,
        resp_uri: opt(u, nonempty)?,
        no_resp: u.arbitrary()?,
        cred: opt(u, |u| {
            Ok(Cred {
                meta: opt(u, |u| meta(u).map(Box::new))?,
                data: nonempty(u)?,
            })
        })?,
        meta: opt(u, |u| meta(u).map(Box::new))?,
        extra: Vec::new(),
    };
    if u.ratio(1, 8)? {
        hdr.extra.push(element(u, 1)?);
    }
    let mut id = 0;
    let n = u.int_in_range(0..=6)?;
    let commands = (0..n)
        .map(|_| command(u, &mut id, 0, binary_ok))
        .collect::<Result<_>>()?;
    let body = SyncBody {
        commands,
        is_final: u.arbitrary()?,
    };
    Ok((SyncMl { hdr, body }, binary_ok))
}

fuzz_target!(|bytes: &[u8]| {
    let mut u = Unstructured::new(bytes);
    let Ok((m, binary)) = message(&mut u) else {
        return;
    };
    let mut options = vec![
        (Encoding::Wbxml, EncodeOptions::default()),
        (Encoding::Wbxml, EncodeOptions::no_string_table()),
    ];
    if !binary {
        options.push((Encoding::Xml, EncodeOptions::default()));
        options.push((Encoding::Xml, EncodeOptions::indented()));
    }
    for (enc, opts) in options {
        let bytes = encode_with(&m, enc, &opts)
            .unwrap_or_else(|e| panic!("a valid model does not encode to {enc:?}: {e}\n{m:#?}"));
        let back = decode(&bytes).unwrap_or_else(|e| {
            panic!(
                "our {enc:?} does not decode: {e}\n{m:#?}\n{}",
                String::from_utf8_lossy(&bytes)
            )
        });
        if enc == Encoding::Wbxml && has_foreign_namespace(&m) {
            // Foreign namespaces do not survive WBXML (see `without_namespaces`).
            assert_eq!(
                without_namespaces(&back),
                without_namespaces(&m),
                "{enc:?} round trip changed the message"
            );
        } else {
            assert_eq!(back, m, "{enc:?} round trip changed the message");
        }
    }
});
