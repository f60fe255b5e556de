//! The `dm-client` binary: init, run, status, daemon (polling and UDP
//! notifications), simulate and demo, against the scripted server over real HTTP.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::{Command as Proc, Stdio};

use common::dm::DmServer;
use common::{dm_client, text};
use syncml_core::auth::{Nonce, UserKey};
use syncml_core::notify::Notification;
use syncml_core::{AlertCode, Command};

const BIN: &str = env!("CARGO_BIN_EXE_dm-client");

fn init(state: &Path, server: &DmServer, extra: &[&str]) {
    let url = server.url();
    let mut args = vec![
        "init",
        "--server",
        url.as_str(),
        "--device-id",
        "IMEI:7",
        "--password",
        "pw",
    ];
    args.extend_from_slice(extra);
    let o = dm_client(state, &args);
    assert!(o.status.success(), "{}", text(&o));
}

/// The first Alert code of every package 1 the server received.
fn session_alerts(server: &DmServer) -> Vec<(String, AlertCode)> {
    server
        .state()
        .received
        .iter()
        .filter_map(|m| match m.body.commands.first() {
            Some(Command::Alert(a))
                if matches!(
                    a.data,
                    Some(AlertCode::ClientInitiated | AlertCode::ServerInitiated)
                ) =>
            {
                Some((m.hdr.session_id.clone(), a.data?))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn init_run_status_and_a_second_init_refused() {
    let server = DmServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    init(
        dir.path(),
        &server,
        &["--auth", "md5", "--encoding", "wbxml"],
    );
    let o = dm_client(dir.path(), &["run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("session 1: ok"), "{}", text(&o));
    let got = server.state().received.clone();
    let p1 = &got[0];
    assert_eq!(p1.hdr.source.loc_uri, "IMEI:7");
    let cred = p1.hdr.cred.as_ref().expect("credentials in package 1");
    assert_eq!(
        cred.meta.as_ref().and_then(|m| m.type_.as_deref()),
        Some("syncml:auth-md5")
    );
    assert_eq!(p1.hdr.source.loc_name.as_deref(), Some("IMEI:7"));

    let o = dm_client(dir.path(), &["status"]);
    assert!(text(&o).contains("firmware version: 1.0"), "{}", text(&o));
    let o = dm_client(
        dir.path(),
        &["init", "--server", "http://x/", "--device-id", "y"],
    );
    assert!(!o.status.success());
    assert!(text(&o).contains("already holds a device"), "{}", text(&o));
}

#[test]
fn run_fails_with_exit_1_when_the_server_is_unreachable_and_2_without_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let o = dm_client(&dir.path().join("none"), &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("client.toml"), "{}", text(&o));

    let o = dm_client(
        dir.path(),
        &[
            "init",
            "--server",
            "http://127.0.0.1:9/dm",
            "--device-id",
            "d",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let o = dm_client(dir.path(), &["run"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("failed"), "{}", text(&o));
}

/// The package #0 of `n` signed with a wrong password, and with the server's. The
/// nonce the device holds for the server is still empty (Basic issues none).
fn signed_and_forged(n: &Notification) -> (Vec<u8>, Vec<u8>) {
    let empty = Nonce::from_bytes(Vec::new());
    let forged = n
        .build(&UserKey::new("dm-server", "wrong"), &empty)
        .unwrap();
    let good = n
        .build(&UserKey::new("dm-server", "srv-secret"), &empty)
        .unwrap();
    (forged, good)
}

/// Starts `daemon --max-sessions 2` (a poll at start, then one notification) and
/// returns once its first session reached the server.
fn daemon_after_first_session(state: &Path, server: &DmServer) -> std::process::Child {
    let daemon = Proc::new(BIN)
        .arg("--state")
        .arg(state)
        .args(["daemon", "--max-sessions", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while session_alerts(server).is_empty() {
        assert!(t0.elapsed().as_secs() < 20, "no session at start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    daemon
}

#[test]
fn daemon_answers_a_verified_notification_and_drops_a_forged_one() {
    let server = DmServer::start().unwrap();
    server.state().credentials = Some(("dm-server".into(), "srv-secret".into()));
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let dir = tempfile::tempdir().unwrap();
    init(
        dir.path(),
        &server,
        &[
            "--udp",
            &addr,
            "--poll-interval",
            "0",
            "--server-password",
            "srv-secret",
        ],
    );
    let daemon = daemon_after_first_session(dir.path(), &server);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut n = Notification::new("dm-server", 0x2A);
    n.vendor = b"fw".to_vec();
    let (forged, good) = signed_and_forged(&n);
    sock.send_to(&forged, &addr).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        session_alerts(&server).len(),
        1,
        "a forged notification starts nothing"
    );
    sock.send_to(&good, &addr).unwrap();
    let out = daemon.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let alerts = session_alerts(&server);
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0].1, AlertCode::ClientInitiated);
    assert_eq!(alerts[1], ("2A".to_owned(), AlertCode::ServerInitiated));
}

#[test]
fn simulate_runs_independent_devices_and_reports_latency() {
    let server = DmServer::start().unwrap();
    let o = Proc::new(BIN)
        .args([
            "simulate",
            "--devices",
            "24",
            "--concurrency",
            "6",
            "--sessions",
            "2",
            "--server",
            &server.url(),
            "--auth",
            "hmac",
            "--password",
            "pw",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("sessions completed: 48"), "{out}");
    assert!(out.contains("failures: 0"), "{out}");
    assert!(out.contains("latency: p50 "), "{out}");
    let ids: std::collections::BTreeSet<String> = server
        .state()
        .received
        .iter()
        .map(|m| m.hdr.source.loc_uri.clone())
        .collect();
    assert_eq!(ids.len(), 24, "24 distinct devices");
}

#[test]
fn demo_updates_a_device_end_to_end() {
    let o = Proc::new(BIN).arg("demo").output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("result 200"), "{out}");
    assert!(out.contains("firmware now 2.0"), "{out}");
}

#[test]
fn daemon_holds_a_long_poll_and_answers_what_arrives_on_it() {
    let server = DmServer::start().unwrap();
    server.state().credentials = Some(("dm-server".into(), "srv-secret".into()));
    let poll_url = server.url().replace("/dm", "/poll");
    let dir = tempfile::tempdir().unwrap();
    init(
        dir.path(),
        &server,
        &[
            "--long-poll",
            &poll_url,
            "--poll-interval",
            "0",
            "--server-password",
            "srv-secret",
        ],
    );
    let daemon = daemon_after_first_session(dir.path(), &server);
    let (forged, good) = signed_and_forged(&Notification::new("dm-server", 0xBEEF));
    server.state().notifications.push_back(forged);
    server.state().notifications.push_back(good);
    let out = daemon.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let alerts = session_alerts(&server);
    assert_eq!(
        alerts.len(),
        2,
        "the forged one started nothing: {alerts:?}"
    );
    assert_eq!(alerts[1], ("BEEF".to_owned(), AlertCode::ServerInitiated));
    assert!(server.state().notifications.is_empty(), "both were fetched");
}

#[test]
fn init_checks_its_inputs_and_a_refused_init_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("dev");
    let base = [
        "init",
        "--server",
        "http://127.0.0.1:9/dm",
        "--device-id",
        "E",
    ];
    let cases: [&[&str]; 4] = [
        &["--server-id", "a&b"],
        &["--ca", "/nonexistent/ca.pem"],
        &["--fw-key", "not-a-key"],
        &["--server-id", ""],
    ];
    for extra in cases {
        let args: Vec<&str> = base.iter().chain(extra.iter()).copied().collect();
        let o = dm_client(&state, &args);
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", text(&o));
        assert!(!state.exists(), "{extra:?} left {}", state.display());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "{extra:?} left {leftovers:?}");
    }
    let o = dm_client(
        &state,
        &["init", "--server", "ftp://x/", "--device-id", "E"],
    );
    assert!(text(&o).contains("http:// or https://"), "{}", text(&o));
    // A good init after the refused ones works, and a missing device says what to do.
    let o = dm_client(&state, &base);
    assert!(o.status.success(), "{}", text(&o));
    let o = dm_client(&dir.path().join("other"), &["status"]);
    assert!(text(&o).contains("dm-client init"), "{}", text(&o));
}
