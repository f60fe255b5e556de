//! One recorded exchange replayed against a live peer, whatever carries the bytes:
//! the replay's own messages rewritten for the live exchange, the peer's messages
//! checked against the recording.

use std::collections::HashMap;

use syncml_core::auth::{self as cred, HmacHeader, Nonce, UserKey};
use syncml_core::transcript::{Side, Transcript};
use syncml_core::{decode, encode, Command, Encoding, SyncMl};

use crate::checks::{checks_of, compare, Check, Index, Objects, Outcome};

/// A message ready to go on the wire.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: Vec<u8>,
    pub content_type: String,
    pub hmac: Option<String>,
}

/// What the live peer sent (or answered, for a reply without body).
#[derive(Debug, Clone, Default)]
pub struct Incoming {
    pub http_status: u16,
    pub content_type: Option<String>,
    pub hmac: Option<String>,
    pub body: Vec<u8>,
}

/// The state of one replay.
pub struct Exchange<'t> {
    pub t: &'t Transcript,
    /// The side the replay plays.
    pub me: Side,
    /// The recorded messages, decoded once (None: no body, or an unreadable one).
    rec: Vec<Option<SyncMl>>,
    /// `scheme://host:port` of the recorded server, and of the live one.
    pub rec_origin: String,
    pub live_origin: String,
    /// The live messages of this session so far, by side, for naming Statuses.
    live_index: [Index; 2],
    /// Large objects the peer is sending, as recorded and live.
    rec_objects: Objects,
    live_objects: Objects,
    /// Recorded peer (MsgID, CmdID) to live peer (MsgID, CmdID), and MsgIDs alone.
    cmd_map: HashMap<(u32, u32), (u32, u32)>,
    msg_map: HashMap<u32, u32>,
    /// The SessionID of the live session.
    pub session_id: Option<String>,
    /// The nonce the replay's credentials use next (the peer's latest NextNonce).
    my_nonce: Nonce,
    /// Every nonce the peer's credentials may use: the first one and those the
    /// replay's own messages issued.
    peer_nonces: Vec<Nonce>,
    /// The same sets as the recording saw them, to judge recorded credentials.
    rec_my_nonces: Vec<Nonce>,
    /// The peer's header Source/Target as sent live (the device id or the URL).
    pub peer_uri: Option<String>,
    /// Added to the replay's own MsgIDs: one per message sent again after a
    /// challenge the recording does not have.
    msg_offset: u32,
    /// `--bless`: the live peer's messages by position, instead of checks.
    pub blessed: Option<Vec<(usize, Incoming)>>,
}

fn side_ix(s: Side) -> usize {
    match s {
        Side::Client => 0,
        Side::Server => 1,
    }
}

fn other(s: Side) -> Side {
    match s {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

fn nonce(b64: &str) -> Nonce {
    Nonce::from_b64(b64.trim()).unwrap_or_else(|_| Nonce::from_bytes(Vec::new()))
}

/// `scheme://host[:port]` of a URL (empty when it has none).
pub fn origin(url: &str) -> String {
    let url = url.trim();
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find('/').unwrap_or(rest.len());
            url[..i + 3 + end].to_owned()
        }
        None => String::new(),
    }
}

/// NextNonce values of the Chals in a message.
fn chal_nonces(msg: &SyncMl) -> Vec<Nonce> {
    msg.body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) => s.chal.as_ref()?.meta.next_nonce.as_deref().map(nonce),
            _ => None,
        })
        .collect()
}

impl<'t> Exchange<'t> {
    pub fn new(t: &'t Transcript, me: Side, live_origin: &str) -> Result<Exchange<'t>, String> {
        let d = &t.manifest.device;
        let mut rec_origin = String::new();
        // Nonces the recording issued: the client's creds use the server's, and back.
        let mut rec_nonces: [Vec<Nonce>; 2] =
            [vec![nonce(&d.client_nonce)], vec![nonce(&d.server_nonce)]];
        // An unreadable message (a protocol error on purpose) names nothing.
        let rec: Vec<Option<SyncMl>> = t
            .bodies
            .iter()
            .map(|b| b.as_deref().and_then(|b| decode(b.as_bytes()).ok()))
            .collect();
        for (m, msg) in t.manifest.messages.iter().zip(&rec) {
            let Some(msg) = msg else {
                continue;
            };
            if rec_origin.is_empty() {
                let uri = match m.from {
                    Side::Client => &msg.hdr.target.loc_uri,
                    Side::Server => &msg.hdr.source.loc_uri,
                };
                rec_origin = origin(uri);
            }
            // A Chal from the server holds the nonce of the client's next creds.
            let whose = side_ix(other(m.from));
            rec_nonces[whose].extend(chal_nonces(msg));
        }
        let mine = side_ix(me);
        let (first_mine, first_peer) = match me {
            Side::Client => (&d.client_nonce, &d.server_nonce),
            Side::Server => (&d.server_nonce, &d.client_nonce),
        };
        let peer_nonces = vec![nonce(first_peer)];
        Ok(Exchange {
            t,
            me,
            rec,
            rec_origin,
            live_origin: live_origin.trim_end_matches('/').to_owned(),
            live_index: Default::default(),
            rec_objects: Objects::new(),
            live_objects: Objects::new(),
            cmd_map: HashMap::new(),
            msg_map: HashMap::new(),
            session_id: None,
            my_nonce: nonce(first_mine),
            peer_nonces,
            rec_my_nonces: std::mem::take(&mut rec_nonces[mine]),
            peer_uri: None,
            msg_offset: 0,
            blessed: None,
        })
    }

    /// A side's user name and password (the server has none without a password).
    fn login(&self, side: Side) -> Option<(String, String)> {
        let d = &self.t.manifest.device;
        match side {
            Side::Client => Some((d.user.clone(), d.password.clone())),
            Side::Server if !d.server_password.is_empty() => {
                Some((d.server_id.clone(), d.server_password.clone()))
            }
            Side::Server => None,
        }
    }

    /// The key of the replay's own credentials.
    fn my_key(&self) -> Option<UserKey> {
        self.login(self.me).map(|(u, p)| UserKey::new(&u, &p))
    }

    fn peer_key(&self) -> Option<UserKey> {
        self.login(other(self.me))
            .map(|(u, p)| UserKey::new(&u, &p))
    }

    /// Recorded XML with the recorded server's address replaced.
    fn recorded_text(&self, i: usize, to: &str) -> Result<String, String> {
        let text = self.t.bodies[i]
            .as_ref()
            .ok_or_else(|| format!("message {} has no body", i + 1))?;
        Ok(if self.rec_origin.is_empty() {
            text.clone()
        } else {
            text.replace(&self.rec_origin, to)
        })
    }

    /// The replay's own message `i` rewritten for the live exchange.
    pub fn outgoing(&mut self, i: usize) -> Result<Outgoing, String> {
        let entry = &self.t.manifest.messages[i];
        let Some(recorded) = self.rec[i].clone() else {
            // Kept as it came (not a readable message): sent as it is.
            let body = self
                .t
                .wire(i)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("message {} has no body", i + 1))?;
            let content_type = entry
                .content_type
                .clone()
                .unwrap_or_else(|| Encoding::Xml.media_type().to_owned());
            return Ok(Outgoing {
                body,
                content_type,
                hmac: None,
            });
        };
        let text = self.recorded_text(i, &self.live_origin.clone())?;
        let mut msg = decode(text.as_bytes()).map_err(|e| format!("message {}: {e}", i + 1))?;
        if let Some(sid) = &self.session_id {
            msg.hdr.session_id = sid.clone();
        }
        msg.hdr.msg_id += self.msg_offset;
        if let (Side::Server, Some(peer)) = (self.me, &self.peer_uri) {
            msg.hdr.target.loc_uri = peer.clone();
        }
        self.remap_refs(&mut msg.body.commands);
        // Credentials: recomputed, valid where the recording's were valid.
        if let (Some(c), Some((user, password))) = (&recorded.hdr.cred, self.login(self.me)) {
            let loc_name = recorded.hdr.source.loc_name.as_deref();
            let key = UserKey::new(&user, &password);
            let valid = self
                .rec_my_nonces
                .iter()
                .any(|n| cred::verify_cred(c, loc_name, &key, n).is_ok());
            // A recording's wrong credentials stay wrong.
            let password = if valid {
                password
            } else {
                format!("{password}-not-the-password")
            };
            let basic = c
                .meta
                .as_ref()
                .and_then(|m| m.type_.as_deref())
                .is_none_or(|t| t.trim().eq_ignore_ascii_case("syncml:auth-basic"));
            msg.hdr.cred = Some(if basic {
                cred::basic_cred(&user, &password)
            } else {
                cred::md5_cred(&UserKey::new(&user, &password), &self.my_nonce)
            });
        }
        let enc = match entry.encoding.as_deref() {
            Some("wbxml") => Encoding::Wbxml,
            _ => Encoding::Xml,
        };
        let body = encode(&msg, enc).map_err(|e| format!("message {}: {e}", i + 1))?;
        let hmac = match (&entry.hmac, self.my_key()) {
            (Some(_), Some(key)) => {
                let h = HmacHeader::compute(&key, &self.my_nonce, &body);
                Some(h.to_string())
            }
            _ => None,
        };
        // The peer answers our Statuses' Chals with creds over the nonces we issued.
        self.peer_nonces.extend(chal_nonces(&msg));
        self.live_index[side_ix(self.me)].add(&msg);
        Ok(Outgoing {
            body,
            content_type: entry
                .content_type
                .clone()
                .unwrap_or_else(|| enc.media_type().to_owned()),
            hmac,
        })
    }

    /// MsgRef/CmdRef of Statuses and Results point at the live peer's commands.
    fn remap_refs(&self, commands: &mut [Command]) {
        for c in commands {
            match c {
                Command::Status(s) => {
                    let m = s.msg_ref.unwrap_or(0);
                    if s.cmd_ref == 0 {
                        if let Some(l) = self.msg_map.get(&m) {
                            s.msg_ref = Some(*l);
                        }
                    } else if let Some((lm, lc)) = self.cmd_map.get(&(m, s.cmd_ref)) {
                        s.msg_ref = Some(*lm);
                        s.cmd_ref = *lc;
                    }
                }
                Command::Results(r) => {
                    let m = r.msg_ref.unwrap_or(0);
                    if let Some((lm, lc)) = self.cmd_map.get(&(m, r.cmd_ref)) {
                        r.msg_ref = Some(*lm);
                        r.cmd_ref = *lc;
                    }
                }
                Command::Atomic(k) | Command::Sequence(k) => self.remap_refs(&mut k.commands),
                _ => {}
            }
        }
    }

    /// Checks the peer's message `i` (recorded) against what came live, and learns
    /// the live peer's ids and nonces. Returns the outcomes, each one check.
    pub fn incoming(&mut self, i: usize, live: &Incoming) -> Vec<Outcome> {
        if let Some(b) = &mut self.blessed {
            b.push((i, live.clone()));
            if let Ok(got) = decode(&live.body) {
                let recorded = self.rec[i].clone().unwrap_or_else(|| got.clone());
                self.learn(&recorded, &got);
            }
            return Vec::new();
        }
        let entry = &self.t.manifest.messages[i];
        let want_status = entry.http_status.unwrap_or(200);
        let mut out = vec![Outcome {
            key: "http".into(),
            problem: (live.http_status != want_status)
                .then(|| format!("expected status {want_status}, got {}", live.http_status)),
        }];
        // A recorded body that does not decode is kept as it came: see below.
        let Some(recorded) = self.rec[i].clone() else {
            if entry.file.is_some() {
                // The recording kept an unreadable message: so must the peer's be.
                out.push(Outcome {
                    key: "message".into(),
                    problem: decode(&live.body)
                        .is_ok()
                        .then(|| "expected an unreadable message, got a readable one".into()),
                });
                return out;
            }
            if !live.body.is_empty() && live.http_status == 200 {
                out.push(Outcome {
                    key: "body".into(),
                    problem: Some("expected no message, got one".into()),
                });
            }
            return out;
        };
        let got = match decode(&live.body) {
            Ok(m) => m,
            Err(e) => {
                out.push(Outcome {
                    key: "message".into(),
                    problem: Some(format!("undecodable: {e}")),
                });
                return out;
            }
        };
        // Encoding: the same as recorded.
        let want_enc = entry.encoding.as_deref().unwrap_or("xml");
        let got_enc = match Encoding::detect(&live.body) {
            Ok(Encoding::Wbxml) => "wbxml",
            _ => "xml",
        };
        out.push(Outcome {
            key: "encoding".into(),
            problem: (want_enc != got_enc).then(|| format!("expected {want_enc}, got {got_enc}")),
        });
        let peer = other(self.me);
        let from_server = peer == Side::Server;
        let rec_hmac = entry.hmac.is_some();
        let rec_checks = self.cred_checks(&recorded, Err(rec_hmac), &self.rec_peer_nonces(i));
        let live_checks = self.cred_checks(&got, Ok(live), &self.peer_nonces.clone());
        let mut expected = checks_of(
            &recorded,
            from_server,
            &self.rec_index_before(i),
            &self.rec_origin.clone(),
            &mut self.rec_objects,
        );
        expected.extend(rec_checks);
        let mut found = checks_of(
            &got,
            from_server,
            &self.live_index[side_ix(self.me)],
            &self.live_origin.clone(),
            &mut self.live_objects,
        );
        found.extend(live_checks);
        out.extend(compare(&expected, &found, &self.t.manifest.vary));
        self.learn(&recorded, &got);
        out
    }

    /// The peer's creds as checks: whether they verify (HMAC for the header).
    /// `wire` is the live message as it came, or, for a recorded one, whether it
    /// had an HMAC header.
    fn cred_checks(
        &self,
        msg: &SyncMl,
        wire: Result<&Incoming, bool>,
        nonces: &[Nonce],
    ) -> Vec<Check> {
        let mut out = Vec::new();
        let Some(key) = self.peer_key() else {
            return out;
        };
        if let Some(c) = &msg.hdr.cred {
            let ok = nonces
                .iter()
                .any(|n| cred::verify_cred(c, msg.hdr.source.loc_name.as_deref(), &key, n).is_ok());
            out.push(Check {
                key: "Cred".into(),
                value: if ok { "valid" } else { "invalid" }.into(),
            });
        }
        // HMAC is over the wire bytes: only a live message can be checked; the
        // recording's is taken as valid when it had one.
        match wire {
            Ok(l) => {
                if let Some(h) = &l.hmac {
                    let ok = HmacHeader::parse(h)
                        .is_ok_and(|h| nonces.iter().any(|n| h.verify(&key, n, &l.body).is_ok()));
                    out.push(Check {
                        key: "hmac".into(),
                        value: if ok { "valid" } else { "invalid" }.into(),
                    });
                }
            }
            Err(had_hmac) => {
                if had_hmac {
                    out.push(Check {
                        key: "hmac".into(),
                        value: "valid".into(),
                    });
                }
            }
        }
        out
    }

    /// The replay's own recorded messages of message `i`'s session before it (what
    /// the recorded Statuses of message `i` answer).
    fn rec_index_before(&self, i: usize) -> Index {
        let session = self.t.manifest.messages[i].session;
        let mut idx = Index::default();
        for (j, e) in self.t.manifest.messages.iter().enumerate().take(i) {
            if e.from != self.me || e.session != session {
                continue;
            }
            if let Some(m) = &self.rec[j] {
                idx.add(m);
            }
        }
        idx
    }

    /// The nonces the recorded peer's creds could use up to message `i`.
    fn rec_peer_nonces(&self, i: usize) -> Vec<Nonce> {
        let d = &self.t.manifest.device;
        let first = match self.me {
            Side::Client => &d.server_nonce,
            Side::Server => &d.client_nonce,
        };
        let mut v = vec![nonce(first)];
        for (j, e) in self.t.manifest.messages.iter().enumerate().take(i) {
            if e.from == self.me {
                if let Some(m) = &self.rec[j] {
                    v.extend(chal_nonces(m));
                }
            }
        }
        v
    }

    /// Learns the live peer's ids (by position against the recording) and nonces.
    fn learn(&mut self, recorded: &SyncMl, got: &SyncMl) {
        self.msg_map.insert(recorded.hdr.msg_id, got.hdr.msg_id);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        flat_ids(&recorded.body.commands, &mut a);
        flat_ids(&got.body.commands, &mut b);
        for (r, l) in a.into_iter().zip(b) {
            self.cmd_map
                .insert((recorded.hdr.msg_id, r), (got.hdr.msg_id, l));
        }
        if let Some(n) = chal_nonces(got).into_iter().last() {
            self.my_nonce = n;
        }
        if self.session_id.is_none() || self.me == Side::Server {
            self.session_id = Some(got.hdr.session_id.clone());
        }
        if self.me == Side::Server {
            self.peer_uri = Some(got.hdr.source.loc_uri.clone());
        }
        self.live_index[side_ix(other(self.me))].add(got);
    }

    /// Recorded message `i`, decoded (None: no body, or an unreadable one).
    pub fn recorded(&self, i: usize) -> Option<&SyncMl> {
        self.rec.get(i)?.as_ref()
    }

    /// The nonce the replay's own digests use now.
    pub fn my_nonce(&self) -> Nonce {
        self.my_nonce.clone()
    }

    /// Takes the nonce of a live challenge the recording does not have; the message
    /// goes again, with the next MsgID.
    pub fn take_live_nonce(&mut self, live: &SyncMl) {
        if let Some(n) = chal_nonces(live).into_iter().last() {
            self.my_nonce = n;
        }
        self.msg_offset += 1;
    }

    /// Called when a live peer's message is the first of a session the replay
    /// serves: its SessionID and Source are the live ones from then on.
    pub fn new_session(&mut self) {
        self.session_id = None;
        self.live_index = Default::default();
        self.rec_objects.clear();
        self.live_objects.clear();
        self.cmd_map.clear();
        self.msg_map.clear();
        self.msg_offset = 0;
    }

    /// Uses a nonce the live peer issued outside a message (package #0 session).
    pub fn set_session_id(&mut self, sid: String) {
        self.session_id = Some(sid);
    }
}

/// CmdIDs in document order, nested ones after their container.
fn flat_ids(commands: &[Command], out: &mut Vec<u32>) {
    for c in commands {
        out.push(c.cmd_id());
        if let Command::Atomic(k) | Command::Sequence(k) = c {
            flat_ids(&k.commands, out);
        }
    }
}
