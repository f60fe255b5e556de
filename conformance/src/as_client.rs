//! `--server URL`: the replay plays the client side of each exchange against a live
//! DM server over HTTP.

use std::io::Write;
use std::net::UdpSocket;
use std::time::Duration;

use syncml_core::notify::Package0;
use syncml_core::transcript::{Side, Transcript};
use syncml_core::{decode, StatusCode};

use crate::exchange::{origin, Exchange, Incoming};
use crate::report::Report;
use crate::setup::{run_setup, Setup};

/// How to reach the server under test.
pub struct Target {
    /// The DM URL package 1 goes to.
    pub url: String,
    /// The admin API for the sessions' setup steps (None: steps are skipped).
    pub admin: Option<Setup>,
    pub timeout: Duration,
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into()
}

fn post(
    agent: &ureq::Agent,
    url: &str,
    out: &crate::exchange::Outgoing,
) -> Result<Incoming, String> {
    let mut req = agent
        .post(url)
        .header("Content-Type", &out.content_type)
        .header(
            "Accept",
            "application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml",
        );
    if let Some(h) = &out.hmac {
        req = req.header("x-syncml-hmac", h);
    }
    let mut resp = req
        .send(&out.body[..])
        .map_err(|e| format!("POST {url}: {e}"))?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let hmac = header("x-syncml-hmac");
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .map_err(|e| format!("reading the reply: {e}"))?;
    Ok(Incoming {
        http_status: status,
        content_type,
        hmac,
        body,
    })
}

/// Replays one exchange as the client.
pub fn replay<W: Write>(t: &Transcript, target: &Target, bless: bool, report: &mut Report<W>) {
    let live_origin = origin(&target.url);
    let mut x = match Exchange::new(t, Side::Client, &live_origin) {
        Ok(x) => x,
        Err(e) => return report.check("recording", Some(&e)),
    };
    if bless {
        x.blessed = Some(Vec::new());
    }
    let udp = UdpSocket::bind("127.0.0.1:0").ok();
    let udp_addr = udp
        .as_ref()
        .and_then(|s| s.local_addr().ok())
        .map(|a| a.to_string())
        .unwrap_or_default();
    match &target.admin {
        Some(admin) => {
            if let Err(e) = run_setup(admin, t, &udp_addr) {
                return report.check("setup", Some(&e));
            }
        }
        None if !t.manifest.setup.is_empty() => report.note(&format!(
            "{} setup steps not run (no --admin-token): the server must be set up by hand",
            t.manifest.setup.len()
        )),
        None => {}
    }
    let agent = agent(target.timeout);
    let msgs = &t.manifest.messages;
    let mut url = target.url.clone();
    let mut session = 0;
    let mut i = 0;
    // The message last sent again after a live challenge (once each).
    let mut retried = None;
    while i < msgs.len() {
        let entry = &msgs[i];
        if entry.session != session {
            session = entry.session;
            url = target.url.clone();
            x.new_session();
        }
        if entry.from == Side::Server {
            // Only a package #0 comes unasked: the others answer our posts.
            match &entry.notification {
                Some(n) => {
                    let what = format!("message {}: package #0", i + 1);
                    match receive_pkg0(udp.as_ref(), target.timeout) {
                        Ok(p) => {
                            let problem = n.to_notification().ok().and_then(|want| {
                                let got = &p.notification;
                                (want.ui_mode != got.ui_mode
                                    || want.initiator != got.initiator
                                    || want.server_id != got.server_id)
                                    .then(|| format!("expected {want:?}, got {got:?}"))
                            });
                            report.check(&what, problem.as_deref());
                            x.set_session_id(p.notification.session_id_hex());
                        }
                        Err(e) => report.check(&what, Some(&e)),
                    }
                }
                None => report.check(
                    &format!("message {}", i + 1),
                    Some("a server message the recording has with no client message before it"),
                ),
            }
            i += 1;
            continue;
        }
        let out = match x.outgoing(i) {
            Ok(o) => o,
            Err(e) => return report.check("recording", Some(&e)),
        };
        let reply = match post(&agent, &url, &out) {
            Ok(r) => r,
            Err(e) => return report.check(&format!("message {}", i + 1), Some(&e)),
        };
        let answer = msgs
            .get(i + 1)
            .filter(|m| m.from == Side::Server && m.notification.is_none());
        let Some(_) = answer else {
            // The recording ends (or goes on with a new session) here: the server
            // must not say more than an empty acknowledgement.
            report.check(
                &format!("message {}: end", i + 1),
                (reply.http_status == 200 && !reply.body.is_empty() && has_commands(&reply.body))
                    .then_some("the server sent commands after the recorded end"),
            );
            i += 1;
            continue;
        };
        if let Some(resp_uri) = decode(&reply.body).ok().and_then(|m| m.hdr.resp_uri) {
            url = resp_uri.trim().to_owned();
        }
        if !bless && retried != Some(i) && x.challenged_instead(i + 1, &reply) {
            retried = Some(i);
            report.note(&format!(
                "message {}: the server challenged; answered with its nonce",
                i + 1
            ));
            continue;
        }
        for o in x.incoming(i + 1, &reply) {
            report.check(
                &format!("message {}: {}", i + 2, o.key),
                o.problem.as_deref(),
            );
        }
        i += 2;
    }
    if let Some(live) = x.blessed.take() {
        let written = crate::bless::write(t, Side::Client, &live, &x.live_origin, &x.rec_origin);
        match written {
            Ok(n) => report.note(&format!("blessed: {n} server messages written")),
            Err(e) => report.check("bless", Some(&e)),
        }
    }
}

/// Whether a reply carries anything but Statuses (commands the client must answer).
fn has_commands(body: &[u8]) -> bool {
    decode(body).is_ok_and(|m| {
        m.body
            .commands
            .iter()
            .any(|c| !matches!(c, syncml_core::Command::Status(_)))
    })
}

fn receive_pkg0(udp: Option<&UdpSocket>, timeout: Duration) -> Result<Package0, String> {
    let udp = udp.ok_or("no UDP socket to receive it on")?;
    udp.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 2048];
    let (n, _) = udp
        .recv_from(&mut buf)
        .map_err(|e| format!("none arrived: {e}"))?;
    Package0::parse(&buf[..n]).map_err(|e| format!("unreadable: {e}"))
}

impl Exchange<'_> {
    /// A live challenge where the recording shows the message accepted: a server's
    /// nonce for a new device is its own. Takes its nonce; the message goes again.
    pub fn challenged_instead(&mut self, recorded: usize, reply: &Incoming) -> bool {
        let hdr_status = |m: &syncml_core::SyncMl| {
            m.body.commands.iter().find_map(|c| match c {
                syncml_core::Command::Status(s) if s.cmd_ref == 0 => Some(s.clone()),
                _ => None,
            })
        };
        let Ok(live) = decode(&reply.body) else {
            return false;
        };
        let Some(ls) = hdr_status(&live) else {
            return false;
        };
        let challenged = matches!(
            ls.data,
            StatusCode::InvalidCredentials | StatusCode::MissingCredentials
        ) && ls.chal.is_some();
        let rec_challenged = self
            .recorded(recorded)
            .and_then(hdr_status)
            .is_some_and(|s| s.chal.is_some() && u16::from(s.data) >= 400);
        if !challenged || rec_challenged {
            return false;
        }
        self.take_live_nonce(&live);
        true
    }
}
