//! The recorded-session corpus (fixtures/sessions) replayed with `dm-conformance`
//! against a real `dm-server serve` and real `dm-client` processes, and a server
//! that leaves out the Status for the header, which the replay must catch.

mod e2e_util;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use dm_conformance::http_server::{self, Answer};
use e2e_util::{dm_client_bin, dm_conformance_bin, root, run_limited, text, Lab, ADMIN};
use syncml_core::{decode, encode, Command as SyncCommand, Encoding};

/// The corpus: every folder of fixtures/sessions with a manifest, in name order.
fn corpus() -> Vec<PathBuf> {
    let dir = root().join("fixtures/sessions");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("fixtures/sessions")
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.join("session.toml").is_file())
        .collect();
    v.sort();
    v
}

/// The server configuration the corpus is recorded with.
fn server_config() -> String {
    std::fs::read_to_string(root().join("fixtures/sessions/dm-server.toml")).unwrap()
}

fn replay(sessions: &[PathBuf], args: &[&str]) -> Output {
    let mut cmd = Command::new(dm_conformance_bin());
    cmd.arg("replay").args(sessions).args(args);
    run_limited(&mut cmd, Duration::from_secs(900))
}

/// The closing line's counts.
fn summary(out: &Output) -> (usize, usize) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    let mut n = last
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap());
    match (n.next(), n.next(), last.ends_with(" failed")) {
        (Some(p), Some(f), true) => (p, f),
        _ => panic!("no summary line in:\n{}", text(out)),
    }
}

/// Only the failing lines (the whole output is thousands of lines).
fn failures(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with("ok "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_corpus_is_large_enough() {
    let sessions = corpus();
    assert!(sessions.len() >= 40, "{} sessions", sessions.len());
}

#[test]
fn the_corpus_passes_against_dm_server() {
    let lab = Lab::launch(&server_config());
    let out = replay(
        &corpus(),
        &["--server", &lab.server.dm_url(), "--admin-token", ADMIN],
    );
    let (passed, failed) = summary(&out);
    assert!(
        out.status.success() && failed == 0,
        "{passed} passed, {failed} failed:\n{}\nserver log:\n{}",
        failures(&out),
        lab.server.logs()
    );
    assert!(passed >= 40 * 5, "only {passed} checks");
}

#[test]
fn the_corpus_passes_against_dm_client() {
    // The command line the README gives, with the binary this test built.
    let line = std::fs::read_to_string(root().join("scripts/corpus/client-command.txt")).unwrap();
    let command = format!(
        "DM_CLIENT={} {}/{}",
        dm_client_bin().display(),
        root().display(),
        line.trim()
    );
    let out = replay(&corpus(), &["--client", &command]);
    let (passed, failed) = summary(&out);
    assert!(
        out.status.success() && failed == 0,
        "{passed} passed, {failed} failed:\n{}",
        failures(&out)
    );
    assert!(passed >= 40 * 5, "only {passed} checks");
}

/// A proxy in front of dm-server that drops the Status for the SyncHdr from every
/// reply (and keeps the session on itself through RespURI).
fn broken_server(real: &str) -> (String, std::thread::JoinHandle<()>) {
    let endpoint = http_server::start(Default::default()).unwrap();
    let me = format!("http://{}", endpoint.addr);
    let real_origin = real.trim_end_matches("/dm").to_owned();
    let mine = me.clone();
    let thread = std::thread::spawn(move || {
        // The whole endpoint lives here: dropped, it stops serving.
        let endpoint = endpoint;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        while let Ok(p) = endpoint.posts.recv_timeout(Duration::from_secs(60)) {
            let mut req = agent.post(format!("{real_origin}{}", p.path));
            if let Some(ct) = &p.request.content_type {
                req = req.header("content-type", ct);
            }
            if let Some(h) = &p.request.hmac {
                req = req.header("x-syncml-hmac", h);
            }
            let Ok(mut resp) = req.send(&p.request.body[..]) else {
                p.answer(Answer {
                    status: 502,
                    ..Answer::default()
                });
                continue;
            };
            let status = resp.status().as_u16();
            let content_type = resp
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp.body_mut().read_to_vec().unwrap_or_default();
            let body = match decode(&body) {
                Ok(mut msg) => {
                    msg.body
                        .commands
                        .retain(|c| !matches!(c, SyncCommand::Status(s) if s.cmd_ref == 0));
                    if let Some(r) = &mut msg.hdr.resp_uri {
                        *r = r.replace(&real_origin, &mine);
                    }
                    let enc = Encoding::detect(&body).unwrap_or(Encoding::Xml);
                    encode(&msg, enc).unwrap()
                }
                Err(_) => body,
            };
            p.answer(Answer {
                status,
                content_type,
                hmac: None,
                body,
            });
        }
    });
    (format!("{me}/dm"), thread)
}

#[test]
fn a_server_that_leaves_out_the_status_for_the_header_is_caught() {
    let lab = Lab::launch(&server_config());
    let (url, _proxy) = broken_server(&lab.server.dm_url());
    // Sessions of basic authentication (nothing rides on the header's Status but
    // itself), one of them in WBXML.
    let sessions: Vec<PathBuf> = [
        "X-ses-basic-xml-get",
        "X-ses-basic-wbxml-get",
        "X-cmd-atomic-rollback",
    ]
    .iter()
    .map(|n| root().join("fixtures/sessions").join(n))
    .collect();
    let out = replay(
        &sessions,
        &[
            "--server",
            &url,
            "--admin-token",
            ADMIN,
            "--admin-url",
            &format!("http://{}", lab.listen),
        ],
    );
    let (_, failed) = summary(&out);
    assert!(!out.status.success() && failed > 0, "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("FAIL ") && l.contains("Status SyncHdr: expected 2")),
        "{stdout}"
    );
    // Every other check of those sessions still passes.
    assert!(
        stdout
            .lines()
            .filter(|l| l.starts_with("FAIL "))
            .all(|l| l.contains("Status SyncHdr")),
        "{stdout}"
    );
}
