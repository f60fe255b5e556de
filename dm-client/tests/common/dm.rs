//! A scripted DM server for end-to-end tests of the client: real HTTP on loopback,
//! real SyncML (XML or WBXML, answered in the device's encoding).
//!
//! It accepts any credentials (212), answers every command with 200, and puts the
//! queued job's commands in the first reply of a session. A job stays queued until
//! the device answers its last command, as a real server keeps a job until it knows
//! the device has it. It records every message, and the reports (Alert 1226,
//! ConfirmFirmwareUpdate, SIMCardChange) it receives.
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use syncml_core::{
    decode, encode, AlertCode, Command, Encoding, MessageBuilder, StatusCode, SyncMl,
};

#[derive(Debug, Default)]
pub struct State {
    /// Commands for the device, one job at a time.
    pub jobs: VecDeque<Vec<Command>>,
    /// Every message the device sent.
    pub received: Vec<SyncMl>,
    /// The reports received, in order.
    pub reports: Vec<Command>,
    /// Statuses the device gave the jobs' commands: (command, code).
    pub job_statuses: Vec<(String, u16)>,
    /// The server's next MsgID per session.
    next_msg: HashMap<String, u32>,
}

pub struct DmServer {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl DmServer {
    pub fn start() -> DmServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let st = st.clone();
                        std::thread::spawn(move || serve(conn, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        DmServer { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/dm", self.port)
    }

    pub fn queue(&self, cmds: Vec<Command>) {
        self.state().jobs.push_back(cmds);
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for DmServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(mut conn: TcpStream, state: &Mutex<State>) {
    conn.set_nonblocking(false).ok();
    conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let Some(body) = read_request(&mut conn) else {
        return;
    };
    let enc = Encoding::detect(&body).unwrap_or(Encoding::Xml);
    let Ok(msg) = decode(&body) else {
        let _ = conn.write_all(
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
        return;
    };
    let reply = {
        let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
        answer(&mut st, msg)
    };
    let out = encode(&reply, enc).unwrap();
    let head = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        enc.media_type(),
        out.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&out);
}

fn answer(st: &mut State, msg: SyncMl) -> SyncMl {
    let sid = msg.hdr.session_id.clone();
    let first = !st.next_msg.contains_key(&sid);
    let id = st.next_msg.entry(sid).or_insert(1);
    let mut b = MessageBuilder::reply_to(&msg.hdr, *id);
    *id += 1;
    b.status_for_header(if first {
        StatusCode::AuthenticationAccepted
    } else {
        StatusCode::Ok
    });
    let mut package1 = false;
    for c in &msg.body.commands {
        match c {
            Command::Status(s) => {
                if s.cmd != "SyncHdr" {
                    st.job_statuses.push((s.cmd.clone(), s.data.code()));
                }
                // The job's last command answered: the device has the job.
                let last = st
                    .jobs
                    .front()
                    .and_then(|j| j.last())
                    .map(|c| c.name().to_owned());
                if last.as_deref() == Some(s.cmd.as_str()) {
                    st.jobs.pop_front();
                }
            }
            Command::Results(_) => {}
            Command::Alert(a) => {
                if matches!(
                    a.data,
                    Some(AlertCode::ClientInitiated | AlertCode::ServerInitiated)
                ) {
                    package1 = true;
                }
                if a.data == Some(AlertCode::GenericAlert) {
                    st.reports.push(c.clone());
                }
                b.status_for(c, StatusCode::Ok);
            }
            Command::ConfirmFirmwareUpdate(_) | Command::SimCardChange(_) => {
                st.reports.push(c.clone());
                b.status_for(c, StatusCode::Ok);
            }
            other => {
                b.status_for(other, StatusCode::Ok);
            }
        }
    }
    if package1 {
        if let Some(job) = st.jobs.front() {
            for c in job.clone() {
                b.command(c);
            }
        }
    }
    st.received.push(msg);
    b.finish()
}

fn read_request(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 16 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Some(body)
}
