//! Recorded sessions: `dm-server serve --record DIR` and `dm-client --record DIR`
//! against each other, over real HTTP on loopback. Both sides saw the same bytes, so
//! both recordings must hold the same messages, in the same order.

mod e2e_util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e_util::{
    dm_client_bin, run_limited, text, wait_for, Client, ClientSpec, ServerProc, StoreArg,
};
use serde_json::json;
use syncml_core::transcript::{Side, Transcript};

/// The session folders recorded in `dir`, oldest first (by name within one
/// device: the client names them by time).
fn folders(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

fn load_all(dir: &Path) -> Vec<Transcript> {
    folders(dir)
        .iter()
        .map(|f| Transcript::load(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())))
        .collect()
}

/// Every message of `a` and `b` is the same: side, HTTP status, headers, the
/// decoded message, the notification.
fn assert_same_messages(a: &Transcript, b: &Transcript) {
    let (ma, mb) = (&a.manifest.messages, &b.manifest.messages);
    let sides = |m: &[syncml_core::transcript::MessageEntry]| -> Vec<Side> {
        m.iter().map(|e| e.from).collect()
    };
    assert_eq!(
        sides(ma),
        sides(mb),
        "{} vs {}",
        a.dir.display(),
        b.dir.display()
    );
    for (i, (x, y)) in ma.iter().zip(mb).enumerate() {
        let at = format!(
            "message {} of {} and {}",
            i + 1,
            a.dir.display(),
            b.dir.display()
        );
        assert_eq!(x.http_status, y.http_status, "{at}");
        assert_eq!(x.encoding, y.encoding, "{at}");
        assert_eq!(x.hmac, y.hmac, "{at}");
        assert_eq!(x.notification, y.notification, "{at}");
        assert_eq!(x.file.is_some(), y.file.is_some(), "{at}");
        let da = a.decoded(i).unwrap_or_else(|e| panic!("{at}: {e}"));
        let db = b.decoded(i).unwrap_or_else(|e| panic!("{at}: {e}"));
        assert_eq!(da, db, "{at}");
        if x.file.is_some() {
            assert!(da.is_some(), "{at}");
        }
    }
}

fn client_cmd(c: &Client, record: &Path) -> Command {
    let mut cmd = Command::new(dm_client_bin());
    cmd.arg("--state")
        .arg(&c.state)
        .arg("--record")
        .arg(record)
        .args(["--log", "info"])
        .env_remove("DM_CLIENT_STATE")
        .env_remove("DM_CLIENT_LOG")
        .env_remove("DM_CLIENT_RECORD");
    cmd
}

fn queue(server: &ServerProc, id: &str, notify: bool) {
    let r = server.post(
        "/api/v1/commands",
        &json!({
            "devices": [id],
            "commands": [
                {"cmd": "Get", "target": "./DevInfo/Mod"},
                {"cmd": "Add", "target": "./Vendor/Rec", "format": "node"},
                {"cmd": "Add", "target": "./Vendor/Rec/Note", "data": "a <b> & \"c\"  ", "format": "chr"},
                {"cmd": "Get", "target": "./Vendor/Rec/Note"},
            ],
            "notify": notify,
        }),
    );
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// One `dm-client run` against `serve --record`: the two recordings agree.
fn run_and_compare(auth: &str, encoding: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (srv_rec, cli_rec) = (dir.path().join("srv-rec"), dir.path().join("cli-rec"));
    let store = StoreArg::Sqlite(dir.path().join("data"));
    let server = ServerProc::start(&store, &[], &["--record", srv_rec.to_str().unwrap()]);
    let id = format!("IMEI:rec-{auth}-{encoding}");
    let r = server.post(
        "/api/v1/devices",
        &json!({"id": id, "auth": {"type": auth, "password": "pw-1"},
                "server_auth": {"type": auth, "password": "sp-1"}}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let client = Client::init_with(
        dir.path(),
        &server.dm_url(),
        &ClientSpec {
            id: &id,
            user: None,
            auth,
            password: "pw-1",
            encoding,
            model: "rec-model",
        },
        &["--server-password", "sp-1", "--component", "copier=2.0"],
    );
    queue(&server, &id, false);
    let out = run_limited(
        client_cmd(&client, &cli_rec).arg("run"),
        Duration::from_secs(90),
    );
    assert!(out.status.success(), "{}", text(&out));

    let cli = load_all(&cli_rec);
    assert_eq!(cli.len(), 1, "one exchange per run: {cli:?}");
    let cli = &cli[0];
    let srv = load_all(&srv_rec);
    assert_eq!(srv.len(), 1, "one session: {srv:?}\n{}", server.logs());
    let srv = &srv[0];

    // The client's exchange is one session here: the same messages as the server's.
    assert!(cli.manifest.messages.iter().all(|m| m.session == 1));
    assert!(cli.manifest.messages.len() >= 4, "{:?}", cli.manifest);
    assert_same_messages(cli, srv);
    // The queued data went through byte for byte.
    let note = cli
        .bodies
        .iter()
        .flatten()
        .any(|b| b.contains("<Data>a &lt;b&gt; &amp; \"c\"  </Data>"));
    assert!(note, "{:?}", cli.bodies);
    let first = &cli.manifest.messages[0];
    assert_eq!(first.from, Side::Client);
    assert_eq!(first.encoding.as_deref(), Some(encoding));
    assert_eq!(
        first.content_type.as_deref(),
        Some(format!("application/vnd.syncml.dm+{encoding}").as_str())
    );
    if auth == "hmac" {
        assert!(first.hmac.as_deref().is_some_and(|h| h.contains("mac=")));
    }

    let d = &cli.manifest.device;
    assert_eq!(d.id, id);
    assert_eq!(d.user, id);
    assert_eq!(d.password, "pw-1");
    assert_eq!(d.auth, auth);
    assert_eq!(d.server_id, "dm-server");
    assert_eq!(d.server_password, "sp-1");
    assert_eq!(d.encoding, encoding);
    let extra = |k: &str| d.extra.get(k).map(String::as_str);
    assert_eq!(extra("model"), Some("rec-model"));
    assert_eq!(extra("manufacturer"), Some("dm-client"));
    assert_eq!(extra("firmware_version"), Some("1.0"));
    assert_eq!(extra("components"), Some("copier=2.0"));
    assert!(cli.manifest.recorded_by.starts_with("dm-client "));

    let s = &srv.manifest.device;
    assert_eq!(s.id, id);
    assert_eq!(s.user, id);
    assert_eq!(s.auth, auth);
    assert_eq!(s.server_id, "dm-server");
    assert_eq!(s.server_password, "sp-1");
    assert_eq!(s.encoding, encoding);
    // The nonces: the client's as it held them (none yet: a new device), the
    // server's as it expected them (its own, which it challenges the device with).
    assert_eq!(d.client_nonce, "");
    assert!(!s.client_nonce.is_empty());
    assert_ne!(s.client_nonce, d.client_nonce);
    assert!(srv.manifest.recorded_by.starts_with("dm-server "));
    let name = srv.dir.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with(&id.replace(':', "-")),
        "server folder {name}"
    );
}

#[test]
fn xml_md5_session_recorded_alike_by_both_sides() {
    run_and_compare("md5", "xml");
}

#[test]
fn wbxml_hmac_session_recorded_alike_by_both_sides() {
    run_and_compare("hmac", "wbxml");
}

#[test]
fn a_refused_message_is_recorded_with_its_status_only() {
    let dir = tempfile::tempdir().unwrap();
    let srv_rec = dir.path().join("srv-rec");
    let store = StoreArg::Sqlite(dir.path().join("data"));
    let server = ServerProc::start(&store, &[], &["--record", srv_rec.to_str().unwrap()]);
    // A package 3 of no session: 404, no body.
    let body = br#"<SyncML xmlns="SYNCML:SYNCML1.2"><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>9</SessionID><MsgID>2</MsgID><Target><LocURI>x</LocURI></Target><Source><LocURI>IMEI:lost</LocURI></Source></SyncHdr><SyncBody><Final/></SyncBody></SyncML>"#;
    let r = server.post_dm(&server.dm_url(), "application/vnd.syncml.dm+xml", body);
    assert_eq!(r.status, 404);
    let t = load_all(&srv_rec);
    assert_eq!(t.len(), 1, "{t:?}");
    let m = &t[0].manifest.messages;
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].from, m[0].file.as_deref()),
        (Side::Client, Some("01-client.xml"))
    );
    assert_eq!(
        (m[1].from, m[1].file.as_deref(), m[1].http_status),
        (Side::Server, None, Some(404))
    );
    assert_eq!(t[0].manifest.device.id, "IMEI:lost");
}

/// A free UDP port on loopback.
fn udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .unwrap()
        .port()
}

#[test]
fn a_notified_session_starts_with_its_package0_on_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let (srv_rec, cli_rec) = (dir.path().join("srv-rec"), dir.path().join("cli-rec"));
    let store = StoreArg::Sqlite(dir.path().join("data"));
    let server = ServerProc::start(&store, &[], &["--record", srv_rec.to_str().unwrap()]);
    let id = "IMEI:rec-notified";
    let udp = format!("127.0.0.1:{}", udp_port());
    let r = server.post(
        "/api/v1/devices",
        &json!({"id": id, "auth": {"type": "md5", "password": "pw"},
                "server_auth": {"type": "md5", "password": "sp"},
                "notify_addr": format!("udp://{udp}")}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let client = Client::init_with(
        dir.path(),
        &server.dm_url(),
        &ClientSpec {
            id,
            user: None,
            auth: "md5",
            password: "pw",
            encoding: "xml",
            model: "rec-model",
        },
        &[
            "--server-password",
            "sp",
            "--udp",
            &udp,
            "--poll-interval",
            "0",
        ],
    );
    // The daemon's first session (at start), then the notified one.
    let mut cmd = client_cmd(&client, &cli_rec);
    cmd.args(["daemon", "--max-sessions", "2"]);
    let daemon = std::thread::spawn(move || run_limited(&mut cmd, Duration::from_secs(90)));
    // Once the first exchange is over, the UDP listener is up: notify.
    wait_for("the daemon's first session", || {
        let done = server.api(&format!("/api/v1/devices/{}/sessions", ServerProc::enc(id)));
        let ended = done
            .as_array()
            .or_else(|| done["sessions"].as_array())
            .is_some_and(|s| s.iter().any(|s| s["status"] == "completed"));
        ended.then_some(())
    });
    queue(&server, id, true);
    let out = daemon.join().unwrap();
    assert!(out.status.success(), "{}", text(&out));

    let cli = load_all(&cli_rec);
    assert_eq!(
        cli.len(),
        2,
        "one folder per daemon run: {cli:?}\n{}",
        text(&out)
    );
    let srv = load_all(&srv_rec);
    assert_eq!(srv.len(), 2, "{srv:?}");
    // The notified exchange: the one whose first entry is a package #0.
    let notified = |ts: &[Transcript]| -> Transcript {
        let n: Vec<&Transcript> = ts
            .iter()
            .filter(|t| {
                t.manifest
                    .messages
                    .first()
                    .is_some_and(|m| m.notification.is_some())
            })
            .collect();
        assert_eq!(n.len(), 1, "{ts:?}");
        n[0].clone()
    };
    let (c, s) = (notified(&cli), notified(&srv));
    assert_same_messages(&c, &s);
    let n = c.notification(0).unwrap().unwrap();
    assert_eq!(n.server_id, "dm-server");
    let first = c.decoded(1).unwrap().unwrap();
    assert_eq!(first.hdr.session_id, n.session_id_hex());
    assert_eq!(c.manifest.messages[0].session, 1);
    assert!(c.manifest.messages[1..].iter().all(|m| m.session == 1));
}
