use super::*;
use crate::model::{Command, Data, Item};
use crate::{decode, encode, AlertCode, DmVersion, MessageBuilder, StatusCode, SyncMl};

const XML_TYPE: &str = "application/vnd.syncml.dm+xml";
const WBXML_TYPE: &str = "application/vnd.syncml.dm+wbxml";

fn package1() -> SyncMl {
    let mut b = MessageBuilder::client(DmVersion::V1_2, "4D2", "IMEI:1234", "http://dm/x");
    b.alert_code(AlertCode::ServerInitiated);
    b.replace(vec![
        Item::source("./DevInfo/Mod").with_data("  spaced  model \t"),
        Item::source("./DevInfo/Man").with_data("A & B <c> ]]> d\r\ne"),
    ]);
    b.finish()
}

fn package2(p1: &SyncMl) -> SyncMl {
    let mut b = MessageBuilder::reply_to(&p1.hdr, 1);
    b.status_for_header(StatusCode::AuthenticationAccepted);
    b.get(vec![Item::target("./DevDetail/FwV")]);
    let mut pkg = Item::target("./FUMO/Update/PkgData").with_meta(Some("bin"), None);
    pkg.data.push(Data::Opaque(b"text-only opaque".to_vec()));
    b.replace(vec![pkg]);
    b.finish()
}

/// A message with opaque Data that XML cannot carry.
fn binary_message() -> SyncMl {
    let mut b = MessageBuilder::client(DmVersion::V1_2, "7", "IMEI:1234", "http://dm/x");
    let mut it = Item::target("./Blob").with_meta(Some("bin"), None);
    it.data
        .push(Data::Opaque(vec![0x00, 0xFF, 0x10, 0x80, b'<', 0xC3]));
    b.replace(vec![it]);
    b.finish()
}

fn entry_files(t: &Transcript) -> Vec<Option<&str>> {
    t.manifest
        .messages
        .iter()
        .map(|m| m.file.as_deref())
        .collect()
}

#[test]
fn a_session_written_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let p1 = package1();
    let p1_xml = encode(&p1, Encoding::Xml).unwrap();
    let p2 = package2(&p1);
    let p2_wbxml = encode(&p2, Encoding::Wbxml).unwrap();

    let mut rec = Recorder::create(tmp.path(), "IMEI:1234-77", "test 1").unwrap();
    assert_eq!(rec.dir(), tmp.path().join("IMEI-1234-77"));
    {
        let d = rec.profile_mut();
        d.id = "IMEI:1234".into();
        d.auth = "md5".into();
        d.client_nonce = "AAAA".into();
        d.extra.insert("model".into(), "sim-1".into());
    }
    rec.save().unwrap();
    let mut n = Notification::new("dm-server", 0x1234);
    n.ui_mode = UiMode::Informative;
    n.vendor = vec![0xAB, 0x01];
    rec.notification(1, &n).unwrap();
    rec.message(Side::Client, 1, Some(&p1_xml), Some(XML_TYPE), None, None)
        .unwrap();
    rec.message(
        Side::Server,
        1,
        None,
        None,
        Some("algorithm=MD5, username=\"s\", mac=x=="),
        Some(401),
    )
    .unwrap();
    rec.message(
        Side::Server,
        1,
        Some(&p2_wbxml),
        Some(WBXML_TYPE),
        None,
        Some(200),
    )
    .unwrap();
    rec.download("/dl/pkg-1?x=1", b"PACKAGE BYTES").unwrap();

    let t = Transcript::load(rec.dir()).unwrap();
    let m = &t.manifest;
    assert_eq!(m.format, FORMAT);
    assert_eq!(m.name, "IMEI-1234-77");
    assert_eq!(m.recorded_by, "test 1");
    assert_eq!(m.device.id, "IMEI:1234");
    assert_eq!(m.device.auth, "md5");
    assert_eq!(m.device.client_nonce, "AAAA");
    assert_eq!(
        m.device.extra.get("model").map(String::as_str),
        Some("sim-1")
    );
    assert_eq!(m.messages.len(), 4);
    assert_eq!(
        entry_files(&t),
        [None, Some("02-client.xml"), None, Some("04-server.xml")]
    );
    let sides: Vec<Side> = m.messages.iter().map(|e| e.from).collect();
    assert_eq!(
        sides,
        [Side::Server, Side::Client, Side::Server, Side::Server]
    );

    // The notification, field by field.
    let ne = m.messages[0].notification.as_ref().unwrap();
    assert_eq!(ne.ui_mode, "informative");
    assert_eq!(ne.initiator, "server");
    assert_eq!(ne.session_id, 0x1234);
    assert_eq!(ne.vendor, "ab01");
    assert_eq!(t.notification(0).unwrap(), Some(n));
    assert_eq!(t.wire(0).unwrap(), None);

    // The XML message: readable, indented, same model.
    let e = &m.messages[1];
    assert_eq!(e.encoding.as_deref(), Some("xml"));
    assert_eq!(e.content_type.as_deref(), Some(XML_TYPE));
    let text = t.bodies[1].as_deref().unwrap();
    assert!(text.starts_with("<?xml"), "{text}");
    assert!(
        text.contains("\n  <SyncHdr>\n    <VerDTD>1.2</VerDTD>"),
        "{text}"
    );
    assert_eq!(decode(text.as_bytes()).unwrap(), p1);
    assert_eq!(decode(&t.wire(1).unwrap().unwrap()).unwrap(), p1);
    // Data content kept byte for byte: white space, escapes, the CR.
    assert!(text.contains("<Data>  spaced  model \t</Data>"), "{text}");
    assert!(
        text.contains("A &amp; B &lt;c&gt; ]]&gt; d&#13;\ne"),
        "{text}"
    );

    // The 401 reply: headers and status, no file.
    let e = &m.messages[2];
    assert_eq!(e.http_status, Some(401));
    assert_eq!(e.file, None);
    assert_eq!(
        e.hmac.as_deref(),
        Some("algorithm=MD5, username=\"s\", mac=x==")
    );
    assert_eq!(t.bodies[2], None);
    assert_eq!(t.wire(2).unwrap(), None);

    // The WBXML message: XML on disk, WBXML on the wire, the same model.
    let e = &m.messages[3];
    assert_eq!(e.encoding.as_deref(), Some("wbxml"));
    assert_eq!(e.http_status, Some(200));
    let text = t.bodies[3].as_deref().unwrap();
    assert!(text.contains("<![CDATA[text-only opaque]]>"), "{text}");
    let wire = t.wire(3).unwrap().unwrap();
    assert_eq!(Encoding::detect(&wire).unwrap(), Encoding::Wbxml);
    assert_eq!(decode(&wire).unwrap(), p2);
    assert_eq!(t.decoded(3).unwrap(), Some(p2));

    // The download.
    assert_eq!(m.download.len(), 1);
    assert_eq!(m.download[0].path, "/dl/pkg-1?x=1");
    assert_eq!(m.download[0].file, "dl-pkg-1");
    assert_eq!(
        t.download("/dl/pkg-1?x=1").unwrap().as_deref(),
        Some(&b"PACKAGE BYTES"[..])
    );
    assert_eq!(t.download("/dl/other").unwrap(), None);

    // The manifest as text: the layout of the format's README.
    let toml_text = fs::read_to_string(rec.dir().join(MANIFEST)).unwrap();
    assert!(toml_text.contains("[[message]]"), "{toml_text}");
    assert!(toml_text.contains("[message.notification]"), "{toml_text}");
    assert!(toml_text.contains("[[download]]"), "{toml_text}");
    assert!(toml_text.contains("model = \"sim-1\""), "{toml_text}");
    // No temporary file left behind.
    let names: Vec<String> = fs::read_dir(rec.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.contains(".tmp")), "{names:?}");
}

#[test]
fn binary_opaque_data_is_kept_as_wbxml_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let msg = binary_message();
    let wbxml = encode(&msg, Encoding::Wbxml).unwrap();
    let mut rec = Recorder::create(tmp.path(), "bin", "t").unwrap();
    rec.message(Side::Client, 1, Some(&wbxml), Some(WBXML_TYPE), None, None)
        .unwrap();
    let t = Transcript::load(rec.dir()).unwrap();
    assert_eq!(entry_files(&t), [Some("01-client.wbxml")]);
    assert_eq!(t.manifest.messages[0].encoding.as_deref(), Some("wbxml"));
    assert_eq!(t.bodies[0], None);
    assert_eq!(t.wire(0).unwrap().unwrap(), wbxml);
    assert_eq!(t.decoded(0).unwrap(), Some(msg));
}

#[test]
fn unreadable_bodies_are_kept_as_they_came() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(tmp.path(), "junk", "t").unwrap();
    rec.message(
        Side::Client,
        1,
        Some(b"<SyncML><oops"),
        Some(XML_TYPE),
        None,
        None,
    )
    .unwrap();
    rec.message(Side::Client, 1, Some(b"\xFF\xFEjunk"), None, None, None)
        .unwrap();
    rec.message(
        Side::Client,
        1,
        Some(&[0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D]),
        None,
        None,
        None,
    )
    .unwrap();
    let t = Transcript::load(rec.dir()).unwrap();
    assert_eq!(
        entry_files(&t),
        [
            Some("01-client.xml"),
            Some("02-client.bin"),
            Some("03-client.wbxml")
        ]
    );
    assert_eq!(t.bodies[0].as_deref(), Some("<SyncML><oops"));
    assert_eq!(t.wire(1).unwrap().unwrap(), b"\xFF\xFEjunk");
    assert_eq!(t.manifest.messages[1].encoding, None);
    assert_eq!(t.manifest.messages[2].encoding.as_deref(), Some("wbxml"));
    assert!(matches!(t.decoded(0), Err(TranscriptError::Codec(_))));
}

#[test]
fn folder_names_are_sanitized_and_made_unique() {
    let tmp = tempfile::tempdir().unwrap();
    let a = Recorder::create(tmp.path(), "IMEI:1/../x", "t").unwrap();
    let b = Recorder::create(tmp.path(), "IMEI:1/../x", "t").unwrap();
    let c = Recorder::create(tmp.path(), "IMEI:1/../x", "t").unwrap();
    assert_eq!(a.dir(), tmp.path().join("IMEI-1-..-x"));
    assert_eq!(b.dir(), tmp.path().join("IMEI-1-..-x-2"));
    assert_eq!(c.dir(), tmp.path().join("IMEI-1-..-x-3"));
    assert_eq!(b.manifest().name, "IMEI-1-..-x-2");
    assert_eq!(sanitize(""), "session");
    assert_eq!(sanitize(".hidden"), "_hidden");
    // An empty manifest is written at once: the folder is loadable from the start.
    let t = Transcript::load(a.dir()).unwrap();
    assert!(t.manifest.messages.is_empty());
}

#[test]
fn file_numbers_widen_past_99() {
    let tmp = tempfile::tempdir().unwrap();
    let body = encode(&package1(), Encoding::Xml).unwrap();
    let mut rec = Recorder::create(tmp.path(), "long", "t").unwrap();
    for _ in 0..99 {
        rec.message(Side::Client, 1, None, None, None, Some(200))
            .unwrap();
    }
    rec.message(Side::Server, 2, Some(&body), None, None, None)
        .unwrap();
    let t = Transcript::load(rec.dir()).unwrap();
    assert_eq!(
        t.manifest.messages[99].file.as_deref(),
        Some("100-server.xml")
    );
    assert_eq!(t.manifest.messages[99].session, 2);
    rec.message(Side::Server, 2, Some(&body), None, None, None)
        .unwrap();
    assert_eq!(
        rec.manifest().messages[100].file.as_deref(),
        Some("101-server.xml")
    );
}

#[test]
fn a_download_fetched_twice_keeps_one_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(tmp.path(), "dl", "t").unwrap();
    rec.download("/dl/a", b"first").unwrap();
    rec.download("/dl/a", b"second").unwrap();
    rec.download("/other/a", b"third").unwrap();
    rec.download("/", b"root").unwrap();
    let t = Transcript::load(rec.dir()).unwrap();
    let files: Vec<&str> = t
        .manifest
        .download
        .iter()
        .map(|d| d.file.as_str())
        .collect();
    assert_eq!(files, ["dl-a", "dl-a-2", "dl-download"]);
    assert_eq!(t.download("/dl/a").unwrap().unwrap(), b"second");
    assert_eq!(t.download("/other/a").unwrap().unwrap(), b"third");
}

fn write_manifest(dir: &Path, text: &str) {
    fs::write(dir.join(MANIFEST), text).unwrap();
}

fn load_err(text: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(tmp.path(), text);
    match Transcript::load(tmp.path()) {
        Ok(t) => panic!("loaded: {t:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_manifests_are_clear_errors() {
    let e = load_err("format = 2\nname = \"x\"\n");
    assert!(e.contains("format 2"), "{e}");

    let e = load_err(
        "format = 1\nname = \"x\"\n[[message]]\nfrom = \"client\"\nfile = \"01-client.xml\"\n",
    );
    assert!(e.contains("01-client.xml"), "{e}");

    let e = load_err(
        "format = 1\nname = \"x\"\n[[message]]\nfrom = \"client\"\nfile = \"../secret.xml\"\n",
    );
    assert!(e.contains("not a plain file name"), "{e}");

    let e = load_err("format = 1\nname = \"x\"\n[[message]]\nfrom = \"robot\"\n");
    assert!(e.starts_with("manifest:"), "{e}");

    let e = load_err("format = 1\nname = \"x\"\n[[message]]\nfrom = \"client\"\nsession = 0\n");
    assert!(e.contains("session 0"), "{e}");

    let e = load_err(
        "format = 1\nname = \"x\"\n[[message]]\nfrom = \"server\"\n\
         [message.notification]\nversion = 12\nui_mode = \"loud\"\ninitiator = \"server\"\n\
         session_id = 1\nserver_id = \"s\"\n",
    );
    assert!(e.contains("ui_mode \"loud\""), "{e}");

    let e =
        load_err("format = 1\nname = \"x\"\n[[download]]\npath = \"/dl/p\"\nfile = \"p.bin\"\n");
    assert!(e.contains("p.bin") && e.contains("missing"), "{e}");

    let e = load_err("this is not toml");
    assert!(e.starts_with("manifest:"), "{e}");

    let tmp = tempfile::tempdir().unwrap();
    let e = Transcript::load(tmp.path()).unwrap_err();
    assert!(matches!(e, TranscriptError::Io(_)));
    assert!(e.to_string().contains(MANIFEST), "{e}");
}

#[test]
fn defaults_of_a_hand_written_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    write_manifest(
        tmp.path(),
        "format = 1\nname = \"hand\"\n[device]\nid = \"d\"\nmodel = \"m\"\n\
         [[message]]\nfrom = \"server\"\nhttp_status = 404\n",
    );
    let t = Transcript::load(tmp.path()).unwrap();
    assert_eq!(t.manifest.messages[0].session, 1);
    assert_eq!(
        t.manifest.device.extra.get("model").map(String::as_str),
        Some("m")
    );
    assert_eq!(t.manifest.device.id, "d");
    assert!(t.wire(1).is_err());
}

#[test]
fn an_extra_key_shadowing_a_field_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(tmp.path(), "x", "t").unwrap();
    rec.profile_mut().extra.insert("user".into(), "u".into());
    let e = rec.save().unwrap_err();
    assert!(e.to_string().contains("\"user\""), "{e}");
}

#[test]
fn notification_entries_round_trip() {
    let mut n = Notification::new("srv", 0xFFFF);
    n.initiator = Initiator::Client;
    n.ui_mode = UiMode::UserInteraction;
    let e = NotificationEntry::from_notification(&n);
    assert_eq!(e.initiator, "user");
    assert_eq!(e.ui_mode, "user-interaction");
    assert_eq!(e.to_notification().unwrap(), n);
    let bad = NotificationEntry {
        vendor: "abc".into(),
        ..e.clone()
    };
    assert!(bad.to_notification().is_err());
    let bad = NotificationEntry {
        vendor: "zz".into(),
        ..e
    };
    assert!(bad.to_notification().is_err());
}

#[test]
fn embedded_tree_data_survives_indenting() {
    // Data holding elements (a TNDS tree) gets layout white space when indented.
    let xml = b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>IMEI:1</LocURI></Target><Source><LocURI>http://s/</LocURI></Source></SyncHdr><SyncBody><Add><CmdID>1</CmdID><Meta><Format xmlns=\"syncml:metinf\">xml</Format><Type xmlns=\"syncml:metinf\">application/vnd.syncml.dmtnds+xml</Type></Meta><Item><Target><LocURI>./X</LocURI></Target><Data><MgmtTree xmlns=\"syncml:dmddf1.2\"><VerDTD>1.2</VerDTD><Node><NodeName>a</NodeName><Value> v </Value></Node></MgmtTree></Data></Item></Add><Final/></SyncBody></SyncML>";
    let original = decode(xml).unwrap();
    assert!(matches!(
        &original.body.commands[0],
        Command::Add(c) if matches!(c.items[0].data[0], Data::Nodes(_))
    ));
    let tmp = tempfile::tempdir().unwrap();
    let mut rec = Recorder::create(tmp.path(), "tnds", "t").unwrap();
    rec.message(Side::Server, 1, Some(xml), None, None, Some(200))
        .unwrap();
    let t = Transcript::load(rec.dir()).unwrap();
    assert_eq!(
        t.manifest.messages[0].file.as_deref(),
        Some("01-server.xml")
    );
    let text = t.bodies[0].as_deref().unwrap();
    assert!(text.contains("\n          <MgmtTree"), "{text}");
    assert_eq!(t.decoded(0).unwrap(), Some(original));
}
