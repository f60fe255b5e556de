//! `--client 'COMMAND'`: the replay plays the server side of each exchange; the
//! command starts the client under test, pointed at the replay's own endpoint.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use syncml_core::auth::UserKey;
use syncml_core::decode;
use syncml_core::transcript::{Side, Transcript};

use crate::exchange::Exchange;
use crate::http_server::{self, Answer, Posted};
use crate::report::Report;
use crate::setup::{fill, placeholders};

/// How to run the client under test.
pub struct ClientUnderTest {
    /// The command, run with `sh -c` after the placeholders are filled in.
    pub command: String,
    /// How long to wait for each message of the client.
    pub timeout: Duration,
    /// Where each run's state folder and log go.
    pub work: PathBuf,
}

/// The child process, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A free UDP port on loopback for the client to listen on.
fn free_udp() -> String {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "127.0.0.1:2948".into())
}

/// The path of the recorded DM URL (`/dm`), to point the client at the same path.
fn dm_path(t: &Transcript) -> String {
    t.manifest
        .messages
        .iter()
        .zip(&t.bodies)
        .find(|(e, b)| e.from == Side::Client && b.is_some())
        .and_then(|(_, b)| decode(b.as_deref()?.as_bytes()).ok())
        .map(|m| {
            let uri = m.hdr.target.loc_uri.trim().to_owned();
            let o = crate::exchange::origin(&uri);
            uri[o.len()..].to_owned()
        })
        .unwrap_or_default()
}

/// Replays one exchange as the server.
pub fn replay<W: Write>(
    t: &Transcript,
    client: &ClientUnderTest,
    bless: bool,
    report: &mut Report<W>,
) {
    let mut downloads = HashMap::new();
    for d in &t.manifest.download {
        match std::fs::read(t.dir.join(&d.file)) {
            Ok(b) => {
                downloads.insert(d.path.clone(), (d.status.unwrap_or(200), b));
            }
            Err(e) => return report.check("recording", Some(&format!("{}: {e}", d.file))),
        }
    }
    let endpoint = match http_server::start(downloads) {
        Ok(e) => e,
        Err(e) => return report.check("endpoint", Some(&e.to_string())),
    };
    let live_origin = format!("http://{}", endpoint.addr);
    let mut x = match Exchange::new(t, Side::Server, &live_origin) {
        Ok(x) => x,
        Err(e) => return report.check("recording", Some(&e)),
    };
    if bless {
        x.blessed = Some(Vec::new());
    }
    let msgs = &t.manifest.messages;
    let sessions: BTreeSet<u32> = msgs.iter().map(|m| m.session).collect();
    let start = match msgs.first() {
        Some(m) if m.notification.is_some() => "notification",
        _ => "client",
    };
    let udp = free_udp();
    let state = client.work.join(&t.manifest.name);
    let _ = std::fs::remove_dir_all(&state);
    if let Err(e) = std::fs::create_dir_all(&state) {
        return report.check("state folder", Some(&e.to_string()));
    }
    let server_url = format!("{live_origin}{}", dm_path(t));
    let sessions_n = sessions.len().to_string();
    let state_s = state.display().to_string();
    let values = placeholders(
        t,
        &[
            ("server", &server_url),
            ("state", &state_s),
            ("udp", &udp),
            ("sessions", &sessions_n),
            ("start", start),
        ],
    );
    let command = fill(&client.command, &values);
    let log_path = client.work.join(format!("{}.log", t.manifest.name));
    let log = match std::fs::File::create(&log_path) {
        Ok(f) => f,
        Err(e) => return report.check("log", Some(&e.to_string())),
    };
    let child = Command::new("sh")
        .arg("-c")
        .arg(&command)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .stderr(Stdio::from(log))
        .spawn();
    let mut child = match child {
        Ok(c) => Running(c),
        Err(e) => return report.check("client command", Some(&e.to_string())),
    };
    let failed_before = report.failed;
    let mut pending_pkg0: Option<(Vec<u8>, String)> = None;
    let mut session = 0;
    let mut i = 0;
    while i < msgs.len() {
        let entry = &msgs[i];
        if entry.session != session {
            session = entry.session;
            x.new_session();
        }
        if entry.from == Side::Server {
            let Some(n) = &entry.notification else {
                report.check(
                    &format!("message {}", i + 1),
                    Some("a server message the recording has with no client message before it"),
                );
                i += 1;
                continue;
            };
            let d = &t.manifest.device;
            let key = UserKey::new(&d.server_id, &d.server_password);
            match n
                .to_notification()
                .map_err(|e| e.to_string())
                .and_then(|n| {
                    n.build(&key, &x.my_nonce())
                        .map(|b| (b, n.session_id_hex()))
                        .map_err(|e| e.to_string())
                }) {
                Ok(p) => pending_pkg0 = Some(p),
                Err(e) => return report.check("recording", Some(&e)),
            }
            i += 1;
            continue;
        }
        // A client message: wait for it (sending the package #0 until it comes).
        let posted = match wait_post(
            &endpoint.posts,
            &udp,
            pending_pkg0.as_ref(),
            client.timeout,
            &mut child,
        ) {
            Ok(p) => p,
            Err(e) => {
                report.check(&format!("message {}", i + 1), Some(&e));
                break;
            }
        };
        if let Some((_, sid)) = pending_pkg0.take() {
            let got = decode(&posted.request.body)
                .map(|m| m.hdr.session_id.trim().to_owned())
                .unwrap_or_default();
            report.check(
                &format!("message {}: SessionID of the notification", i + 1),
                (!got.eq_ignore_ascii_case(&sid))
                    .then(|| format!("expected {sid}, got {got:?}"))
                    .as_deref(),
            );
        }
        for o in x.incoming(i, &posted.request) {
            report.check(
                &format!("message {}: {}", i + 1, o.key),
                o.problem.as_deref(),
            );
        }
        match msgs.get(i + 1) {
            Some(next) if next.from == Side::Server && next.notification.is_none() => {
                let answer = if next.file.is_none() {
                    Answer {
                        status: next.http_status.unwrap_or(500),
                        ..Answer::default()
                    }
                } else {
                    match x.outgoing(i + 1) {
                        Ok(o) => Answer {
                            status: next.http_status.unwrap_or(200),
                            content_type: Some(o.content_type),
                            hmac: o.hmac,
                            body: o.body,
                        },
                        Err(e) => {
                            posted.answer(Answer {
                                status: 500,
                                ..Answer::default()
                            });
                            return report.check("recording", Some(&e));
                        }
                    }
                };
                posted.answer(answer);
                i += 2;
            }
            _ => {
                report.check(
                    &format!("message {}", i + 1),
                    Some("the recording has no answer to this message"),
                );
                posted.answer(Answer {
                    status: 500,
                    ..Answer::default()
                });
                i += 1;
            }
        }
    }
    // The end: the client says nothing more and exits.
    let deadline = Instant::now() + client.timeout;
    let mut extra = None;
    loop {
        match endpoint.posts.recv_timeout(Duration::from_millis(100)) {
            Ok(p) => {
                extra = Some(p.request.body.len());
                p.answer(Answer {
                    status: 500,
                    ..Answer::default()
                });
                break;
            }
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if matches!(child.0.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
            break;
        }
    }
    report.check(
        "end",
        extra
            .map(|n| format!("the client sent another message ({n} bytes) after the recorded end"))
            .as_deref(),
    );
    for d in &t.manifest.download {
        let got = endpoint
            .fetched
            .lock()
            .map(|f| f.contains(&d.path))
            .unwrap_or(false);
        report.check(
            &format!("download {}", d.path),
            (!got).then_some("the client did not fetch it"),
        );
    }
    if let Some(live) = x.blessed.take() {
        let written = crate::bless::write(t, Side::Server, &live, &x.live_origin, &x.rec_origin);
        match written {
            Ok(n) => report.note(&format!("blessed: {n} client messages written")),
            Err(e) => report.check("bless", Some(&e)),
        }
    }
    if report.failed > failed_before {
        report.note(&format!("the client's output: {}", log_path.display()));
    }
    drop(child);
}

/// Waits for the client's next POST; sends the package #0 every 300 ms until it
/// comes (the client may not listen yet).
fn wait_post(
    posts: &std::sync::mpsc::Receiver<Posted>,
    udp: &str,
    pkg0: Option<&(Vec<u8>, String)>,
    timeout: Duration,
    child: &mut Running,
) -> Result<Posted, String> {
    let deadline = Instant::now() + timeout;
    let sock = UdpSocket::bind("127.0.0.1:0").ok();
    loop {
        if let (Some((bytes, _)), Some(s)) = (pkg0, &sock) {
            let _ = s.send_to(bytes, udp);
        }
        match posts.recv_timeout(Duration::from_millis(300)) {
            Ok(p) => return Ok(p),
            Err(RecvTimeoutError::Disconnected) => return Err("the endpoint stopped".into()),
            Err(RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(status)) = child.0.try_wait() {
            // It may have posted just before exiting.
            return posts
                .try_recv()
                .map_err(|_| format!("the client exited ({status}) before sending it"));
        }
        if Instant::now() > deadline {
            return Err(format!("no message from the client in {timeout:?}"));
        }
    }
}
