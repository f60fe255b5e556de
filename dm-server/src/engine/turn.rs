//! One message of a session: authenticate, read the device's answers, and build the
//! reply with the next commands. Everything changed is collected into one
//! [`Commit`]; nothing is written here.
//!
//! The package rules (DM 1.2 protocol 2.1, 2.4, 6; PROTOCOL.md sections 5 and 7):
//! - the device's package may span messages: while it is open (no Final), the reply
//!   holds only Status and an Alert 1222 asking for its next message;
//! - once it is complete, the server's next package is sent, cut to the device's
//!   MaxMsgSize; while that is incomplete the device asks for more with Alert 1222;
//! - a server package with nothing but Status ends the session;
//! - until the device authenticates, nothing it sent is acted on, and the reply
//!   holds only Status (with a challenge on the header's).

use std::collections::BTreeMap;

use syncml_core::auth::{
    AuthType, Incoming, Nonce, OsRandom, Prover, ProverStep, UserKey, Verifier,
};
use syncml_core::outbox::Outbox;
use syncml_core::{
    AlertCode, Chal, Command, Data, Encoding, Item, ItemCmd, MessageBuilder, Results, Status,
    StatusCode, SyncMl,
};

use super::state::{
    self, Chunks, EngineState, Origin, SavedProver, SavedVerifier, Sent, ValueAt, Waiting,
};
use crate::store::{
    CommandRecord, CommandResult, CommandState, CommandUpdate, Commit, Device, DeviceUpdate,
    Millis, NewEvent, SessionRecord, SessionStatus,
};
use crate::Config;

/// Why a message could not be handled at all (an internal failure).
pub type Fail = String;

/// What a turn reads from the store. The turn does no I/O itself: the caller
/// passes these.
pub struct Reads<'r> {
    /// The device's queued commands, at most this many (when the server's next
    /// package is built; called at most once).
    pub pending: &'r mut dyn FnMut(usize) -> Result<Vec<CommandRecord>, Fail>,
    /// A queued command by id, to rebuild what waits in the outbox.
    pub command: &'r mut dyn FnMut(i64) -> Result<Option<CommandRecord>, Fail>,
    /// The stored pieces of the large object the device is sending, joined (when
    /// its last piece arrives).
    pub chunks: &'r mut dyn FnMut() -> Result<Vec<u8>, Fail>,
}

/// The outcome of authentication for one message.
enum Auth {
    Accepted(StatusCode, Option<Chal>),
    Refused {
        code: StatusCode,
        chal: Option<Chal>,
        give_up: bool,
        why: String,
    },
}

/// One message being handled.
pub struct Turn<'a> {
    pub cfg: &'a Config,
    pub now: Millis,
    pub device: Device,
    pub st: EngineState,
    pub rec: SessionRecord,
    pub enc: Encoding,
    /// Where RespURI points (the server's reachable base URL).
    pub base_url: String,
    dev: DeviceUpdate,
    updates: BTreeMap<i64, CommandUpdate>,
    events: Vec<NewEvent>,
    ended: Option<(SessionStatus, Option<String>)>,
    /// Our credentials toward the device, when it demands them.
    prover: Option<Prover>,
    /// The device refused the server's credentials in this message.
    server_refused: bool,
    /// Commands sent and answered in this message, for the metrics.
    pub sent_now: u32,
    pub answered_now: u32,
    /// Authentication failed in this message (for the rate limit).
    pub auth_failed: Option<String>,
    /// Pieces of the large object the device is sending, to store; and whether the
    /// stored ones go first (the object completed or was refused).
    new_chunks: Vec<(u32, Vec<u8>)>,
    clear_chunks: bool,
}

impl<'a> Turn<'a> {
    pub fn new(
        cfg: &'a Config,
        now: Millis,
        device: Device,
        st: EngineState,
        rec: SessionRecord,
        enc: Encoding,
    ) -> Turn<'a> {
        let dev = DeviceUpdate {
            id: device.id.clone(),
            last_seen: Some(now),
            last_session: Some(rec.token.clone()),
            ..DeviceUpdate::default()
        };
        Turn {
            cfg,
            now,
            device,
            st,
            base_url: cfg.base_url(),
            rec,
            enc,
            dev,
            updates: BTreeMap::new(),
            events: Vec::new(),
            ended: None,
            prover: None,
            server_refused: false,
            sent_now: 0,
            answered_now: 0,
            auth_failed: None,
            new_chunks: Vec::new(),
            clear_chunks: false,
        }
    }

    /// Handles the message, reading from the store through `reads`.
    pub fn run(
        &mut self,
        msg: &SyncMl,
        raw: &[u8],
        hmac: Option<&str>,
        reads: &mut Reads<'_>,
    ) -> Result<SyncMl, Fail> {
        let hdr = &msg.hdr;
        self.st.last_in = hdr.msg_id;
        self.rec.messages += 1;
        self.rec.updated_at = self.now;
        if let Some(m) = &hdr.meta {
            self.st.client_max_msg = m.max_msg_size.or(self.st.client_max_msg);
            self.st.client_max_obj = m.max_obj_size.or(self.st.client_max_obj);
        }
        let mut b = MessageBuilder::reply_to(hdr, self.st.last_out + 1);

        let (code, chal) = match self.authenticate(msg, raw, hmac)? {
            Auth::Accepted(code, chal) => (code, chal),
            Auth::Refused {
                code,
                chal,
                give_up,
                why,
            } => {
                // Nothing runs; every command gets the header's code.
                for c in &msg.body.commands {
                    if !matches!(c, Command::Status(_) | Command::Results(_)) {
                        b.status_for(c, code);
                    }
                }
                b.status_for_header_with(code, chal);
                if give_up {
                    self.end(SessionStatus::Refused, Some(why.clone()));
                }
                self.auth_failed = Some(why);
                self.st.last_out += 1;
                return Ok(b.finish());
            }
        };
        self.st.authenticated = true;
        self.server_credentials(msg)?;

        let mut asks_next = false;
        let mut aborted = false;
        for c in &msg.body.commands {
            let code = match c {
                Command::Status(s) => {
                    self.on_status(s);
                    None
                }
                Command::Results(r) => self.on_results(r, &mut *reads.chunks)?,
                Command::Alert(a) => match a.data.map(u16::from) {
                    Some(1200) | Some(1201) => Some(StatusCode::Ok),
                    Some(1222) => {
                        asks_next = true;
                        Some(StatusCode::Ok)
                    }
                    Some(1223) => {
                        aborted = true;
                        Some(StatusCode::Ok)
                    }
                    Some(1225) => {
                        self.drop_chunks();
                        Some(StatusCode::Ok)
                    }
                    Some(1224) | Some(1226) => {
                        self.event(c);
                        Some(StatusCode::Ok)
                    }
                    _ => Some(StatusCode::OptionalFeatureNotSupported),
                },
                Command::Replace(r) => Some(self.on_replace(r)),
                Command::ConfirmFirmwareUpdate(_) | Command::SimCardChange(_) => {
                    self.event(c);
                    Some(StatusCode::Ok)
                }
                Command::Unknown(_) => Some(StatusCode::OptionalFeatureNotSupported),
                // Commands only a server sends (PROTOCOL.md section 3).
                _ => Some(StatusCode::CommandNotAllowed),
            };
            let no_resp = c.item_cmd().is_some_and(|i| i.no_resp)
                || matches!(c, Command::Alert(a) if a.no_resp);
            if let Some(code) = code.filter(|_| !no_resp) {
                b.status_for(c, code);
            }
        }
        // Past the limit the message was still read (the answers to what the
        // server sent are kept) and answered; then the session ends.
        let over_limit = self.rec.messages > self.cfg.max_session_messages;
        if over_limit && !aborted {
            b.alert(AlertCode::SessionAbort, Vec::new());
        }
        b.status_for_header_with(code, chal);
        let mut reply = b.finish();

        if aborted {
            self.end(SessionStatus::Aborted, Some("aborted by the device".into()));
            return self.finish_reply(reply, None, false);
        }
        if over_limit {
            let why = format!("more than {} messages", self.cfg.max_session_messages);
            self.end(SessionStatus::Aborted, Some(why));
            return self.finish_reply(reply, None, false);
        }
        let device_open = !msg.body.is_final && !asks_next;
        if device_open {
            // The device's package goes on: ask for its next message. Our outbox
            // waits as it is stored, unless something must go again.
            let mut b = MessageBuilder::new(self.version(), "", 0, "", "");
            b.alert(AlertCode::NextMessage, Vec::new());
            reply.body.commands.extend(b.finish().body.commands);
            let outbox = if self.server_refused {
                Some(self.outbox(&mut *reads.command)?)
            } else {
                None
            };
            return self.finish_reply(reply, outbox, true);
        }
        let mut outbox = self.outbox(&mut *reads.command)?;
        if outbox.is_empty() && msg.body.is_final {
            self.pull(&mut outbox, &mut *reads.pending)?;
        }
        self.finish_reply(reply, Some(outbox), false)
    }

    /// What the message changed, for the store, and the session's new record.
    pub fn into_commit(self) -> Result<Commit, Fail> {
        let mut rec = self.rec;
        if let Some((status, error)) = self.ended {
            // The store drops the pieces of an ended session's large object.
            rec.status = status;
            rec.error = error;
            rec.ended_at = Some(self.now);
            rec.engine = String::new();
        } else {
            rec.engine = serde_json::to_string(&self.st).map_err(|e| e.to_string())?;
        }
        Ok(Commit {
            session: Some(rec),
            register: None,
            device: Some(self.dev),
            commands: self.updates.into_values().collect(),
            events: self.events,
            answered_notification: None,
            clear_chunks: self.clear_chunks,
            chunks: self.new_chunks,
        })
    }

    /// Whether the device reported something in this message (events).
    pub fn reported(&self) -> bool {
        !self.events.is_empty()
    }

    /// Whether the session ended with this message, and how.
    pub fn ended(&self) -> Option<SessionStatus> {
        self.ended.as_ref().map(|(s, _)| *s)
    }

    /// The `x-syncml-hmac` header for the reply's bytes (HMAC server credentials).
    pub fn reply_hmac(&self, body: &[u8]) -> Option<String> {
        self.prover.as_ref().and_then(|p| p.hmac_header(body))
    }

    fn version(&self) -> syncml_core::DmVersion {
        syncml_core::DmVersion::from_ver_dtd(&self.st.version)
            .unwrap_or(syncml_core::DmVersion::V1_2)
    }

    fn end(&mut self, status: SessionStatus, error: Option<String>) {
        if self.ended.is_none() {
            self.ended = Some((status, error));
        }
    }

    /// Checks the device's credentials.
    fn authenticate(&mut self, msg: &SyncMl, raw: &[u8], hmac: Option<&str>) -> Result<Auth, Fail> {
        let Some(auth) = self.device.auth.clone() else {
            return Ok(Auth::Accepted(StatusCode::Ok, None));
        };
        let required: AuthType = auth
            .auth_type
            .parse()
            .map_err(|e| format!("device {}: {e}", self.device.id))?;
        let key = UserKey::from_stored(&auth.username, &auth.key)
            .map_err(|e| format!("device {}: {e}", self.device.id))?;
        let mut v = match &self.st.verifier {
            Some(saved) => Verifier::resume(required, key, saved.restore()?),
            None => Verifier::new(required, key, stored_nonce(&self.device.nonce)),
        }
        .accept_double_b64_nonce(self.cfg.accept_double_b64_nonce);
        let verdict = v
            .check(&Incoming::new(&msg.hdr, hmac, raw), &mut OsRandom)
            .map_err(|e| e.to_string())?;
        self.st.verifier = Some(SavedVerifier::save(v.state()));
        if let Some(n) = &verdict.issued_nonce {
            // Stored with the reply that carries it, in the same commit.
            self.dev.nonce = Some(n.to_b64());
        }
        if verdict.accepted() {
            return Ok(Auth::Accepted(verdict.status, verdict.chal));
        }
        self.st.authenticated = false;
        Ok(Auth::Refused {
            code: verdict.status,
            chal: verdict.chal,
            give_up: verdict.give_up,
            why: verdict
                .problem
                .map(|p| p.to_string())
                .unwrap_or_else(|| "refused".into()),
        })
    }

    /// The device's verdict on the server's credentials (its Status for our header).
    fn server_credentials(&mut self, msg: &SyncMl) -> Result<(), Fail> {
        let Some(sa) = self.device.server_auth.clone() else {
            return Ok(());
        };
        let t: AuthType = sa.auth_type.parse().map_err(|e| format!("{e}"))?;
        let mut p = match &self.st.prover {
            Some(saved) => Prover::resume(&self.cfg.server_id, &sa.password, t, saved.restore()?),
            None => Prover::new(
                &self.cfg.server_id,
                &sa.password,
                t,
                stored_nonce(&self.device.server_nonce),
            ),
        };
        for c in &msg.body.commands {
            let Command::Status(s) = c else { continue };
            if s.cmd_ref != 0 || s.cmd != "SyncHdr" {
                continue;
            }
            match p.on_header_status(s) {
                Ok(ProverStep::Continue) | Ok(ProverStep::Authenticated) => {}
                Ok(ProverStep::ResendPackage1) | Ok(ProverStep::ResendMessage) => {
                    self.server_refused = true;
                }
                Ok(ProverStep::GiveUp) => {
                    self.end(
                        SessionStatus::Aborted,
                        Some("the device refused the server's credentials".into()),
                    );
                }
                Err(e) => self.end(
                    SessionStatus::Aborted,
                    Some(format!("the device's challenge: {e}")),
                ),
            }
        }
        if p.is_authenticated() {
            // The device trusts us: the nonce it gave is the one to use next time.
            let next = p.next_nonce().to_b64();
            if next != self.device.server_nonce {
                self.dev.server_nonce = Some(next);
            }
        }
        self.st.prover = Some(SavedProver::save(&p.state()));
        self.prover = Some(p);
        Ok(())
    }

    fn sent_mut(&mut self, msg_ref: Option<u32>, cmd_ref: u32) -> Option<&mut Sent> {
        let msg = msg_ref.unwrap_or(self.st.last_out);
        self.st
            .sent
            .iter_mut()
            .rev()
            .find(|s| s.msg == msg && s.cmd == cmd_ref)
    }

    fn update(&mut self, id: i64) -> &mut CommandUpdate {
        let at = self.now;
        self.updates.entry(id).or_insert_with(|| CommandUpdate {
            id,
            state: None,
            status: None,
            results: Vec::new(),
            session: None,
            attempt: false,
            error: None,
            at,
        })
    }

    /// A Status for a command the server sent. A command of several items gets one
    /// per item: each is kept, and the command failed if any item did. Items in a
    /// Status (the user's answer to an Alert 1102-1104) are kept with it.
    fn on_status(&mut self, s: &Status) {
        let code = s.data;
        if self.server_refused && matches!(u16::from(code), 401 | 407) {
            return;
        }
        let Some(sent) = self.sent_mut(s.msg_ref, s.cmd_ref) else {
            tracing::debug!(cmd_ref = s.cmd_ref, "status for no command sent");
            return;
        };
        if code == StatusCode::ChunkedItemAccepted {
            // Only a chunk taken: nothing to record, but the entry can go (else a
            // large object leaves one per message in the state).
            sent.answered = true;
            return;
        }
        let first = !sent.answered;
        sent.answered = true;
        let (name, origin, tag) = (sent.name.clone(), sent.origin.clone(), sent.tag);
        if !code.is_success() && self.st.large_out.as_ref().is_some_and(|l| l.tag == tag) {
            // A refused chunk ends its object: the rest is not sent.
            self.st.large_out = None;
        }
        let Origin::Queue { id, path } = origin else {
            return;
        };
        let top = path.is_empty();
        let items = s
            .items
            .iter()
            .map(|it| {
                let loc = it.source.as_ref().or(it.target.as_ref());
                let meta = it.meta.as_deref();
                state::result_item(
                    loc.map(|l| l.loc_uri.clone()).unwrap_or_default(),
                    meta.and_then(|m| m.format.clone()),
                    meta.and_then(|m| m.type_.clone()),
                    it.data.first().and_then(Data::as_bytes).unwrap_or_default(),
                )
            })
            .collect();
        if top && !self.st.answered_ids.contains(&id) {
            self.st.answered_ids.push(id);
        }
        let failed_before = self.st.failed_ids.contains(&id);
        if top && !code.is_success() && !failed_before {
            self.st.failed_ids.push(id);
        }
        let u = self.update(id);
        u.results.push(CommandResult {
            cmd: name,
            path,
            status: code.into(),
            items,
            continued: false,
        });
        if top && !failed_before && (first || !code.is_success()) {
            u.status = Some(code.into());
            u.state = Some(if code.is_success() {
                CommandState::Done
            } else {
                CommandState::Failed
            });
        }
        if top && first {
            self.answered_now += 1;
        }
    }

    /// Results of a Get the server sent; large ones arrive in chunks, stored
    /// beside the session until the last (`stored` reads them back).
    fn on_results(
        &mut self,
        r: &Results,
        stored: &mut dyn FnMut() -> Result<Vec<u8>, Fail>,
    ) -> Result<Option<StatusCode>, Fail> {
        let origin = self
            .st
            .sent
            .iter()
            .rev()
            .find(|s| s.msg == r.msg_ref.unwrap_or(self.st.last_out) && s.cmd == r.cmd_ref)
            .map(|s| s.origin.clone());
        let Some(origin) = origin else {
            tracing::debug!(cmd_ref = r.cmd_ref, "results for no Get sent");
            return Ok(None);
        };
        let meta = r.meta.as_deref();
        let mut values = Vec::new();
        let mut answer = None;
        for it in &r.items {
            let source = it
                .source
                .as_ref()
                .map(|s| s.loc_uri.clone())
                .unwrap_or_default();
            let im = it.meta.as_deref().or(meta);
            let format = im.and_then(|m| m.format.clone());
            let type_ = im.and_then(|m| m.type_.clone());
            let bytes: Vec<u8> = it
                .data
                .first()
                .and_then(Data::as_bytes)
                .map(<[u8]>::to_vec)
                .unwrap_or_default();
            let max_obj = self.cfg.max_object_size;
            if !it.more_data && self.st.chunks.is_none() {
                values.push(state::result_item(source, format, type_, &bytes));
                continue;
            }
            let ch = self.st.chunks.get_or_insert_with(|| Chunks {
                msg_ref: r.msg_ref.unwrap_or(0),
                cmd_ref: r.cmd_ref,
                source: source.clone(),
                format: format.clone(),
                type_: type_.clone(),
                size: im.and_then(|m| m.size),
                len: 0,
                pieces: 0,
                text: matches!(it.data.first(), Some(Data::Text(_))),
            });
            let len = ch.len + bytes.len() as u64;
            if len > ch.size.unwrap_or(max_obj).min(max_obj) {
                self.drop_chunks();
                answer = Some(StatusCode::RequestEntityTooLarge);
                continue;
            }
            if it.more_data {
                self.new_chunks.push((ch.pieces, bytes));
                ch.pieces += 1;
                ch.len = len;
                answer = Some(StatusCode::ChunkedItemAccepted);
                continue;
            }
            // The last chunk: the object is read back whole, once.
            let earlier = (ch.pieces as usize).saturating_sub(self.new_chunks.len());
            let Some(ch) = self.st.chunks.take() else {
                continue;
            };
            let mut whole = if earlier > 0 { stored()? } else { Vec::new() };
            for (_, piece) in self.new_chunks.drain(..) {
                whole.extend(piece);
            }
            whole.extend(bytes);
            self.drop_chunks();
            if ch.size.is_some_and(|n| n != len) || whole.len() as u64 != len {
                answer = Some(StatusCode::SizeMismatch);
                continue;
            }
            values.push(state::result_item(ch.source, ch.format, ch.type_, &whole));
        }
        if values.is_empty() {
            return Ok(answer);
        }
        match origin {
            Origin::Inventory => {
                for v in values {
                    if v.encoding.is_none() {
                        self.dev.inventory.push((v.source, v.data));
                    }
                }
            }
            Origin::Queue { id, path } => {
                let u = self.update(id);
                match u.results.iter_mut().rev().find(|c| c.path == path) {
                    Some(c) => c.items.extend(values),
                    // Its Status came in an earlier message: the values go into the
                    // result stored then. (With none stored, they stand alone, as a
                    // success: only a Get that succeeded has Results.)
                    None => u.results.push(CommandResult {
                        cmd: "Get".into(),
                        path,
                        status: StatusCode::Ok.into(),
                        items: values,
                        continued: true,
                    }),
                }
            }
        }
        Ok(answer)
    }

    /// Forgets the large object the device is sending (it completed or was
    /// refused), and its stored pieces.
    fn drop_chunks(&mut self) {
        self.st.chunks = None;
        self.new_chunks.clear();
        self.clear_chunks = true;
    }

    /// A Replace from the device: what it reports about itself (DevInfo in package
    /// 1, vendor nodes), kept in its inventory. Devices name the node in Source (as
    /// DM 1.2 shows it) or Target: both are read.
    fn on_replace(&mut self, r: &ItemCmd) -> StatusCode {
        let mut code = StatusCode::Ok;
        for it in &r.items {
            let Some(loc) = it.source.as_ref().or(it.target.as_ref()) else {
                code = StatusCode::BadRequest;
                continue;
            };
            let Some(value) = it.data_str() else { continue };
            if self.dev.inventory.len() >= MAX_INVENTORY || value.len() > MAX_INVENTORY_VALUE {
                code = StatusCode::RequestEntityTooLarge;
                continue;
            }
            self.dev
                .inventory
                .push((inventory_path(&loc.loc_uri), value.to_owned()));
        }
        code
    }

    /// Records a report the device made.
    fn event(&mut self, c: &Command) {
        let kind = match c {
            Command::Alert(a) => format!("Alert {}", a.data.map(u16::from).unwrap_or(0)),
            other => other.name().to_owned(),
        };
        self.events.push(NewEvent {
            device_id: self.device.id.clone(),
            session: self.rec.token.clone(),
            kind,
            body: command_json(c),
            at: self.now,
        });
    }

    /// Takes the next commands into the outbox: the inventory Get once per session,
    /// then the device's queued commands.
    fn pull(
        &mut self,
        outbox: &mut Outbox,
        pending: &mut dyn FnMut(usize) -> Result<Vec<CommandRecord>, Fail>,
    ) -> Result<(), Fail> {
        if !self.st.inventory_asked {
            self.st.inventory_asked = true;
            // One Get per node: a missing node then fails alone, and clients that
            // read only one Item per command (there are some) still answer.
            let cfg = self.cfg;
            for node in cfg.inventory_gets() {
                let mut get = inventory_get(node);
                self.tag(&mut get, Origin::Inventory);
                outbox.push(get);
            }
        }
        let room = self
            .cfg
            .max_commands_per_session
            .saturating_sub(self.st.pulled);
        if room == 0 {
            return Ok(());
        }
        for rec in pending(room)? {
            let mut cmd = match rec.spec.to_command() {
                Ok(c) => c,
                Err(e) => {
                    let u = self.update(rec.id);
                    u.state = Some(CommandState::Failed);
                    u.error = Some(format!("cannot be sent: {e}"));
                    continue;
                }
            };
            if self.enc == Encoding::Xml {
                crate::spec::fit_for_xml(&mut cmd);
            }
            self.tag(
                &mut cmd,
                Origin::Queue {
                    id: rec.id,
                    path: Vec::new(),
                },
            );
            outbox.push(cmd);
            self.st.pulled += 1;
            self.st.pulled_ids.push(rec.id);
            let token = self.rec.token.clone();
            let u = self.update(rec.id);
            u.state = Some(CommandState::Sent);
            u.session = Some(token);
            u.attempt = true;
        }
        Ok(())
    }

    /// Gives a command (and those nested in it) tags standing for their origin.
    fn tag(&mut self, cmd: &mut Command, origin: Origin) {
        self.st.next_tag += 1;
        let tag = self.st.next_tag;
        cmd.set_cmd_id(tag);
        if let (Command::Atomic(c) | Command::Sequence(c), Origin::Queue { id, path }) =
            (&mut *cmd, &origin)
        {
            for (i, inner) in c.commands.iter_mut().enumerate() {
                let mut p = path.clone();
                p.push(i as u32);
                self.tag(inner, Origin::Queue { id: *id, path: p });
            }
        }
        self.st.tags.push((tag, origin));
    }

    /// The outbox as the state left it, rebuilt from the queue; when the device
    /// refused our credentials, what it refused goes first again.
    fn outbox(
        &self,
        command: &mut dyn FnMut(i64) -> Result<Option<CommandRecord>, Fail>,
    ) -> Result<Outbox, Fail> {
        let mut outbox = Outbox::default();
        let mut large = self.st.large_out.clone();
        if self.server_refused {
            // Nothing of our last message ran: a large object's chunk goes again
            // from where it began; one that began there goes whole, in its place
            // (the commands before it first).
            let chunk = self.st.last_chunk.clone();
            for c in state::unpack(self.st.last_sent.as_deref())? {
                match &chunk {
                    Some(at) if at.tag == c.cmd_id() && at.offset == 0 => {
                        large = None;
                        if let Some(cmd) = self.rebuild(command, at.id, &at.path, at.tag)? {
                            outbox.push(cmd);
                        }
                    }
                    Some(at) if at.tag == c.cmd_id() => large = Some(at.clone()),
                    _ => outbox.push(c),
                }
            }
        }
        if let Some(at) = &large {
            if let Some(cmd) = self.rebuild(command, at.id, &at.path, at.tag)? {
                outbox.resume_large(cmd, usize::try_from(at.offset).unwrap_or(usize::MAX));
            }
        }
        for w in self.st.waiting.clone() {
            match w {
                Waiting::Queued { id, tag } => {
                    if let Some(cmd) = self.rebuild(command, id, &[], tag)? {
                        outbox.push(cmd);
                    }
                }
                Waiting::Inventory { node, tag } => {
                    let mut get = inventory_get(&node);
                    get.set_cmd_id(tag);
                    outbox.push(get);
                }
            }
        }
        Ok(outbox)
    }

    /// A queued command (or the one at `path` in it) made again from its stored
    /// spec, with the tags it had. None if it is gone (its device was deleted).
    fn rebuild(
        &self,
        command: &mut dyn FnMut(i64) -> Result<Option<CommandRecord>, Fail>,
        id: i64,
        path: &[u32],
        tag: u32,
    ) -> Result<Option<Command>, Fail> {
        let Some(rec) = command(id)? else {
            tracing::warn!(command = id, "a queued command being sent is gone");
            return Ok(None);
        };
        let mut cmd = rec
            .spec
            .to_command()
            .map_err(|e| format!("command {id}: {e}"))?;
        for &i in path {
            let (Command::Atomic(c) | Command::Sequence(c)) = cmd else {
                return Err(format!("command {id} has no command at {path:?}"));
            };
            cmd = c
                .commands
                .into_iter()
                .nth(i as usize)
                .ok_or_else(|| format!("command {id} has no command at {path:?}"))?;
        }
        number(&mut cmd, tag);
        Ok(Some(cmd))
    }

    /// Where the value of the command tagged `tag` is `offset` bytes in.
    fn value_at(&self, tag: u32, offset: usize) -> Option<ValueAt> {
        match self.origin(tag)? {
            Origin::Queue { id, path } => Some(ValueAt {
                id: *id,
                path: path.clone(),
                tag,
                offset: offset as u64,
            }),
            Origin::Inventory => None,
        }
    }

    /// A command left in the outbox, as the state keeps it.
    fn waiting(&self, c: &Command) -> Option<Waiting> {
        let tag = c.cmd_id();
        match self.origin(tag)? {
            Origin::Queue { id, path } if path.is_empty() => Some(Waiting::Queued { id: *id, tag }),
            Origin::Inventory => {
                let node = c.items().first()?.target.as_ref()?.loc_uri.clone();
                Some(Waiting::Inventory { node, tag })
            }
            // Never at the top of the outbox.
            Origin::Queue { .. } => None,
        }
    }

    fn origin(&self, tag: u32) -> Option<&Origin> {
        self.st.tags.iter().find(|(t, _)| *t == tag).map(|(_, o)| o)
    }

    /// Completes the reply: header fields, the outbox cut to the device's size,
    /// numbering, and the record of what was sent. `device_open`: the reply only
    /// asks for the device's next message. Without an outbox, what the state keeps
    /// waiting stays as it is.
    fn finish_reply(
        &mut self,
        mut reply: SyncMl,
        mut outbox: Option<Outbox>,
        device_open: bool,
    ) -> Result<SyncMl, Fail> {
        self.st.last_out += 1;
        reply.hdr.msg_id = self.st.last_out;
        if self.ended.is_none() && self.st.authenticated {
            reply.hdr.resp_uri = Some(format!("{}/dm/s/{}", self.base_url, self.rec.token));
        }
        let meta = reply.hdr.meta.get_or_insert_with(Default::default);
        meta.max_msg_size = Some(self.cfg.max_message_size as u64);
        meta.max_obj_size = Some(self.cfg.max_object_size);
        if let Some(p) = &self.prover {
            if let Some(cred) = p.cred() {
                if p.auth_type() == AuthType::Md5 {
                    reply.hdr.source.loc_name = Some(p.user().to_owned());
                }
                reply.hdr.cred = Some(cred);
            }
        }
        let leading = reply.body.commands.len();
        // Where the large object being sent was before this message.
        let resumed = outbox.as_ref().and_then(Outbox::large_sent);
        let complete = match outbox.as_mut() {
            None => true,
            Some(outbox) if device_open || self.ended.is_some() => outbox.is_empty(),
            Some(outbox) => {
                // Never below 1 KiB (a header and a chunk must fit), never above what
                // the server itself accepts.
                let budget = self
                    .st
                    .client_max_msg
                    .unwrap_or(self.cfg.default_client_message_size)
                    .clamp(
                        MIN_MESSAGE,
                        (self.cfg.max_message_size as u64).max(MIN_MESSAGE),
                    ) as usize;
                outbox.fill(&mut reply, self.enc, budget)?
            }
        };
        reply.body.is_final = complete && !device_open;

        // Number the message; remember which tag each sent command had.
        let mut tags = Vec::new();
        for c in &reply.body.commands[leading..] {
            collect_ids(c, &mut tags);
        }
        // The chunk of a large object in this message began where the object was,
        // or at 0 if it started here.
        let chunk = outbox.as_ref().and_then(|o| {
            let (tag, from) = resumed.or(o.large_sent().map(|(tag, _)| (tag, 0)))?;
            tags.contains(&tag).then_some((tag, from))
        });
        // Kept only for a device that checks our credentials: if it refuses them,
        // what it refused goes again.
        let sent_cmds: Vec<Command> = if self.prover.is_some() {
            reply.body.commands[leading..].to_vec()
        } else {
            Vec::new()
        };
        let mut b = MessageBuilder::new(self.version(), "", 0, "", "");
        for c in std::mem::take(&mut reply.body.commands) {
            b.command(c);
        }
        reply.body.commands = b.finish().body.commands;
        let mut ids = Vec::new();
        for c in &reply.body.commands[leading..] {
            collect_ids(c, &mut ids);
        }
        let mut names = Vec::new();
        for c in &reply.body.commands[leading..] {
            collect_names(c, &mut names);
        }
        for ((tag, id), name) in tags.into_iter().zip(ids).zip(names) {
            if let Some((_, origin)) = self.st.tags.iter().find(|(t, _)| *t == tag) {
                if let Origin::Queue { id, path } = &origin {
                    if path.is_empty() && !self.st.sent_ids.contains(id) {
                        self.sent_now += 1;
                        self.st.sent_ids.push(*id);
                    }
                }
                self.st.sent.push(Sent {
                    msg: self.st.last_out,
                    cmd: id,
                    tag,
                    name,
                    origin: origin.clone(),
                    answered: false,
                });
            }
        }
        // Answers come for the message just sent; older answered entries are only
        // kept for Gets, whose Results may still be arriving in chunks.
        let last = self.st.last_out;
        self.st
            .sent
            .retain(|s| !s.answered || s.name == "Get" || s.msg + 2 > last);
        self.rec.commands_sent += self.sent_now;
        self.st.last_sent = state::pack(sent_cmds)?;
        self.st.last_chunk = chunk.and_then(|(tag, from)| self.value_at(tag, from));
        if let Some(outbox) = outbox {
            self.st.large_out = outbox
                .large_sent()
                .and_then(|(tag, sent)| self.value_at(tag, sent));
            let left = outbox.into_queue();
            self.st.waiting = left.iter().filter_map(|c| self.waiting(c)).collect();
        }

        let only_status = reply
            .body
            .commands
            .iter()
            .all(|c| matches!(c, Command::Status(_)));
        if reply.body.is_final && only_status && self.ended.is_none() {
            self.end(SessionStatus::Completed, None);
        }
        if self.ended.is_some() {
            self.close_unanswered();
        }
        Ok(reply)
    }

    /// At the end of a session: queued commands taken but never sent go back to the
    /// queue; those sent but never answered failed (a command sent twice, or in
    /// chunks, counts as answered when any copy was).
    fn close_unanswered(&mut self) {
        let sent = self.st.sent_ids.clone();
        let answered = self.st.answered_ids.clone();
        for id in self.st.pulled_ids.clone() {
            if answered.contains(&id) || self.st.failed_ids.contains(&id) {
                continue;
            }
            let u = self.update(id);
            if !matches!(u.state, None | Some(CommandState::Sent)) {
                continue;
            }
            if sent.contains(&id) {
                u.state = Some(CommandState::Failed);
                u.error = Some("the session ended before the device answered".into());
            } else {
                // Never left the server: it goes out in a later session. Its state
                // is set without `Sent` ever having been committed only if pulled in
                // this very message; a state of queued is right either way.
                u.state = Some(CommandState::Queued);
                u.session = None;
                u.attempt = false;
            }
        }
    }
}

/// The server's Get of an inventory node.
fn inventory_get(node: &str) -> Command {
    Command::Get(ItemCmd::new(vec![Item::target(node)]))
}

/// Gives `cmd` the CmdID `tag`, and those nested in it the next ones in order, as
/// [`Turn::tag`] did.
fn number(cmd: &mut Command, tag: u32) -> u32 {
    cmd.set_cmd_id(tag);
    let mut next = tag + 1;
    if let Command::Atomic(c) | Command::Sequence(c) = cmd {
        for inner in &mut c.commands {
            next = number(inner, next);
        }
    }
    next
}

/// The nonce stored for an account (empty when none was issued yet).
fn stored_nonce(b64: &str) -> Nonce {
    Nonce::from_b64(b64).unwrap_or_default()
}

/// The smallest message the server cuts its packages to, whatever the device says.
const MIN_MESSAGE: u64 = 1024;

/// Inventory values one message may set, and the longest value kept.
const MAX_INVENTORY: usize = 256;
const MAX_INVENTORY_VALUE: usize = 4096;

/// The inventory key of a node: its URI with the `./` prefix (`./DevInfo/Mod`).
fn inventory_path(uri: &str) -> String {
    let p = uri.trim();
    format!("./{}", p.strip_prefix("./").unwrap_or(p))
}

fn collect_ids(c: &Command, out: &mut Vec<u32>) {
    out.push(c.cmd_id());
    if let Command::Atomic(k) | Command::Sequence(k) = c {
        for inner in &k.commands {
            collect_ids(inner, out);
        }
    }
}

fn collect_names(c: &Command, out: &mut Vec<String>) {
    out.push(c.name().to_owned());
    if let Command::Atomic(k) | Command::Sequence(k) = c {
        for inner in &k.commands {
            collect_names(inner, out);
        }
    }
}

/// A device's command as JSON, for its event record.
pub fn command_json(c: &Command) -> serde_json::Value {
    let items: Vec<serde_json::Value> = c
        .items()
        .iter()
        .map(|it| {
            let meta = it.meta.as_deref();
            serde_json::json!({
                "source": it.source.as_ref().map(|l| &l.loc_uri),
                "target": it.target.as_ref().map(|l| &l.loc_uri),
                "format": meta.and_then(|m| m.format.as_ref()),
                "type": meta.and_then(|m| m.type_.as_ref()),
                "mark": meta.and_then(|m| m.mark.as_ref()),
                "data": it.data.iter().map(|d| match d.as_str() {
                    Some(s) => s.to_owned(),
                    None => state::b64(d.as_bytes().unwrap_or_default()),
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let (code, correlator) = match c {
        Command::Alert(a) => (a.data.map(u16::from), a.correlator.clone()),
        other => (None, other.item_cmd().and_then(|i| i.correlator.clone())),
    };
    serde_json::json!({
        "cmd": c.name(),
        "code": code,
        "correlator": correlator,
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_paths_are_normalised() {
        assert_eq!(inventory_path("./DevInfo/Mod"), "./DevInfo/Mod");
        assert_eq!(inventory_path(" DevDetail/FwV"), "./DevDetail/FwV");
    }
}
