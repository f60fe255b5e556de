//! The session state machine.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dm_tree::accounts::{account_for, Account};
use dm_tree::{DmTree, Response};
use syncml_core::auth::{Incoming, Nonce, ProverStep};
use syncml_core::{
    decode_with, encode, Alert, AlertCode, Chal, Command, DmVersion, Encoding, Item, Location,
    MessageBuilder, Meta, Status, StatusCode, SyncHdr, SyncMl,
};

use super::auth::Auth;
use super::execute::{Paused, Run};
use super::{Agent, Config, Event, Outcome, Reply, Report, SessionError, Step, Transmit, Trigger};
use crate::download;
use syncml_core::outbox::Outbox;

/// The answer to a server's header: the code, a challenge, and the nonce the
/// challenge issues (stored when the answer is sent).
type HeaderAnswer = (StatusCode, Option<Chal>, Option<Nonce>);

/// The smallest MaxMsgSize honoured: a server announcing less is answered in
/// messages of this size rather than in endless tiny chunks.
const MIN_MSG_SIZE: u64 = 1024;

/// Where the session stands.
#[derive(Debug)]
enum State {
    /// A message was sent; its reply is awaited until the deadline.
    Waiting { deadline: Instant },
    /// A server message is half run, waiting for a download.
    Downloading,
    /// Over.
    Done,
}

/// One session of a device with one server. See the [module](super) docs.
#[derive(Debug)]
pub struct ClientSession {
    cfg: Config,
    server_id: String,
    device_id: String,
    version: DmVersion,
    session_id: String,
    /// The server's URI (header Target) and where messages go (RespURI once given).
    server_uri: String,
    url: String,
    encoding: Encoding,
    next_msg_id: u32,
    /// MsgIDs received: a repeated one is a replay.
    received: Vec<u32>,
    /// The server's MaxMsgSize and MaxObjSize, once announced.
    server_max_msg: Option<u64>,
    server_max_obj: Option<u64>,
    auth: Auth,
    tree: dm_tree::Session,
    /// Package 1's commands, kept to resend after a challenge.
    pkg1: Vec<Command>,
    /// The report id of each of package 1's commands, if it is a report.
    report_ids: Vec<Option<String>>,
    /// The report ids by the CmdID package 1 last gave them.
    reports: HashMap<u32, String>,
    outbox: Outbox,
    /// The last message sent, to resend after a challenge mid-session.
    last_sent: Option<SyncMl>,
    run: Option<Run>,
    /// The answer to the header of the message being run (212 and a challenge when
    /// the server just authenticated itself).
    hdr_answer: HeaderAnswer,
    /// Set when the device gave up on the server: the reply to its refusal ends the
    /// session with this.
    fail_next: Option<SessionError>,
    /// Whether part of the device's package was still unsent when the message came.
    ours_pending: bool,
    /// The MsgID package 1 last went with (its reports are answered against it).
    pkg1_msg_id: u32,
    /// What the device accepts as one object (announced as MaxObjSize).
    max_obj_size: u64,
    state: State,
    /// Set when the device aborted: the reply to the abort ends the session.
    aborting: bool,
    events: Vec<Event>,
    messages_sent: u32,
    commands_executed: u32,
}

impl ClientSession {
    /// Starts a session with the server whose account has this ServerID: builds
    /// package 1 with `reports` in it, and returns the step that sends it.
    pub fn start(
        dm: &DmTree,
        cfg: Config,
        server_id: &str,
        trigger: Trigger,
        reports: Vec<Report>,
        now: Instant,
    ) -> Result<(ClientSession, Step), SessionError> {
        let acc = account_for(&dm.tree, server_id)
            .ok_or_else(|| SessionError::NoAccount(server_id.to_owned()))?;
        let server_uri = server_url(&acc).ok_or(SessionError::NoAddress)?;
        let auth = Auth::from_account(&acc)?;
        let version = match acc.layout {
            dm_tree::accounts::Layout::V1_1 => DmVersion::V1_1,
            dm_tree::accounts::Layout::V1_2 => DmVersion::V1_2,
        };
        let (id, code) = match trigger {
            Trigger::Client { session_id } => (session_id, AlertCode::ClientInitiated),
            Trigger::Server { session_id } => {
                (format!("{session_id:X}"), AlertCode::ServerInitiated)
            }
        };
        let mut pkg1 = vec![Command::Alert(alert(code, Vec::new(), None))];
        pkg1.push(Command::Replace(syncml_core::ItemCmd::new(devinfo_items(
            dm,
        ))));
        let mut report_ids = vec![None, None];
        for r in reports {
            report_ids.push(Some(r.id));
            pkg1.push(r.command);
        }
        let mut s = ClientSession {
            encoding: cfg.encoding,
            cfg,
            server_id: server_id.to_owned(),
            device_id: text_at(dm, "./DevInfo/DevId"),
            version,
            session_id: id,
            url: server_uri.clone(),
            server_uri,
            next_msg_id: 1,
            received: Vec::new(),
            server_max_msg: None,
            server_max_obj: None,
            auth,
            tree: dm_tree::Session::new(server_id),
            pkg1,
            reports: HashMap::new(),
            report_ids,
            outbox: Outbox::default(),
            last_sent: None,
            run: None,
            hdr_answer: (StatusCode::Ok, None, None),
            fail_next: None,
            ours_pending: false,
            pkg1_msg_id: 1,
            max_obj_size: dm.max_obj_size,
            state: State::Done,
            aborting: false,
            events: Vec::new(),
            messages_sent: 0,
            commands_executed: 0,
        };
        let step = s.send_package1(None, now);
        Ok((s, step))
    }

    /// Replaces the source of nonces issued to the server (for tests).
    pub fn set_nonce_source(&mut self, rng: Box<dyn syncml_core::auth::NonceSource + Send>) {
        self.auth.set_rng(rng);
    }

    /// The session id (upper-case hex).
    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    /// The events since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// When the awaited reply is late, if one is awaited.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Waiting { deadline } => Some(deadline),
            _ => None,
        }
    }

    /// The clock passed `now`: ends the session if the reply is overdue.
    pub fn timeout(&mut self, now: Instant) -> Option<Step> {
        match self.state {
            State::Waiting { deadline } if now >= deadline => {
                Some(self.end(Err(SessionError::Timeout)))
            }
            _ => None,
        }
    }

    /// The transport could not deliver the message or its reply.
    pub fn transport_failed(&mut self, reason: &str) -> Step {
        self.end(Err(SessionError::Transport(reason.to_owned())))
    }

    /// Ends the session from the device's side: the next message carries Alert
    /// 1223 and its reply ends the session.
    pub fn abort(&mut self, now: Instant) -> Step {
        if matches!(self.state, State::Done) {
            return self.end(Err(SessionError::Cancelled));
        }
        self.aborting = true;
        self.run = None;
        let mut b = self.builder();
        b.alert(AlertCode::SessionAbort, Vec::new());
        let msg = b.finish();
        self.transmit(msg, now)
    }

    /// Takes the server's reply to the last message.
    pub fn receive(
        &mut self,
        dm: &mut DmTree,
        agent: &mut dyn Agent,
        reply: Reply,
        now: Instant,
    ) -> Step {
        if !matches!(self.state, State::Waiting { .. }) {
            return self.end(Err(SessionError::Protocol(
                "a reply arrived when none was awaited".into(),
            )));
        }
        if !(200..300).contains(&reply.status) {
            return self.end(Err(SessionError::Http(reply.status)));
        }
        if self.aborting {
            return self.end(Err(SessionError::Cancelled));
        }
        if let Some(e) = self.fail_next.take() {
            return self.end(Err(e));
        }
        let enc = match reply.content_type.as_deref().map(Encoding::from_media_type) {
            Some(Ok(e)) => e,
            _ => match Encoding::detect(&reply.body) {
                Ok(e) => e,
                Err(e) => return self.end(Err(SessionError::Decode(e.to_string()))),
            },
        };
        let msg = match decode_with(&reply.body, Some(enc), &self.cfg.limits) {
            Ok(m) => m,
            Err(e) => return self.end(Err(SessionError::Decode(e.to_string()))),
        };
        if let Err(e) = self.check_header(&msg.hdr) {
            return self.end(Err(e));
        }
        self.encoding = enc;
        self.received.push(msg.hdr.msg_id);
        if let Some(uri) = msg.hdr.resp_uri.as_deref().filter(|u| !u.trim().is_empty()) {
            self.url = uri.trim().to_owned();
        }
        if let Some(m) = &msg.hdr.meta {
            self.server_max_msg = m.max_msg_size.or(self.server_max_msg);
            self.server_max_obj = m.max_obj_size.or(self.server_max_obj);
        }

        // The server's verdict on the device's credentials.
        match self.read_header_status(&msg) {
            Ok(None) => {}
            Ok(Some(ProverStep::ResendPackage1)) => return self.send_package1(Some(&msg.hdr), now),
            Ok(Some(ProverStep::ResendMessage)) => return self.resend(&msg.hdr, now),
            Ok(Some(_)) => {}
            Err(e) => return self.end(Err(e)),
        }

        // The server's own credentials, when the account asks for them.
        let incoming = Incoming::new(&msg.hdr, reply.hmac.as_deref(), &reply.body);
        let verdict = match self.auth.check_server(&incoming) {
            Ok(v) => v,
            Err(e) => return self.end(Err(e)),
        };
        let (hdr_code, chal, issued) = match verdict {
            None => (StatusCode::Ok, None, None),
            Some(v) if v.accepted() => {
                if v.status == StatusCode::AuthenticationAccepted {
                    self.events.push(Event::ServerAuthenticated);
                }
                (v.status, v.chal, v.issued_nonce)
            }
            Some(v) => {
                self.events.push(Event::ServerRefused(v.status));
                // A message with nothing to refuse is not answered with a bare
                // challenge (DM protocol 2.4): the session ends.
                let commands = msg
                    .body
                    .commands
                    .iter()
                    .any(|c| !matches!(c, Command::Status(_) | Command::Results(_)));
                if !commands {
                    return self.end(Err(SessionError::ServerAuth));
                }
                if v.give_up {
                    // The refusal still goes out; its reply ends the session.
                    self.fail_next = Some(SessionError::ServerAuth);
                }
                return self.refuse_unauthenticated(dm, msg, v.status, v.chal, v.issued_nonce, now);
            }
        };
        // A trusted server's nonces are kept now, whatever becomes of the session.
        if let Err(e) = self.auth.store_next_nonce(dm) {
            return self.end(Err(e));
        }

        // Answers to the device's own commands.
        for c in &msg.body.commands {
            match c {
                Command::Status(st) => self.read_status(dm, agent, st),
                Command::Alert(a) if a.data == Some(AlertCode::SessionAbort) => {
                    return self.end(Err(SessionError::Aborted));
                }
                _ => {}
            }
        }

        self.hdr_answer = (hdr_code, chal, issued);
        self.ours_pending = !self.outbox.is_empty();
        self.run = Some(Run::new(msg));
        self.continue_run(dm, agent, now)
    }

    /// The download the session paused for ended.
    pub fn download_done(
        &mut self,
        dm: &mut DmTree,
        agent: &mut dyn Agent,
        result: Result<download::Fetched, download::DownloadError>,
        now: Instant,
    ) -> Step {
        let Some(run) = self.run.as_mut() else {
            return self.end(Err(SessionError::Protocol(
                "no download was asked for".into(),
            )));
        };
        if !matches!(self.state, State::Downloading) {
            return self.end(Err(SessionError::Protocol(
                "no download was asked for".into(),
            )));
        }
        run.download_done(dm, &self.server_id, agent, result);
        self.continue_run(dm, agent, now)
    }

    fn continue_run(&mut self, dm: &mut DmTree, agent: &mut dyn Agent, now: Instant) -> Step {
        let Some(mut run) = self.run.take() else {
            return self.end(Err(SessionError::Protocol("nothing to run".into())));
        };
        match run.resume(dm, &mut self.tree, agent) {
            Paused::Download(req) => {
                // What ran so far is kept whatever the download does.
                if let Err(e) = dm.tree.commit() {
                    return self.end(Err(SessionError::Store(e.to_string())));
                }
                run.committed = run.responses.len();
                self.run = Some(run);
                self.state = State::Downloading;
                return Step::Download(req);
            }
            Paused::Finished => {}
        }
        let Run {
            msg,
            mut responses,
            committed,
            ..
        } = run;
        if dm.tree.commit().is_err() {
            // The tree went back to what the store holds: nothing the message did
            // since the last commit was kept, and the server is told so (510).
            for r in responses.iter_mut().skip(committed) {
                if r.code.is_success() {
                    r.code = StatusCode::DataStoreFailure;
                    r.results.clear();
                }
            }
        }
        self.limit_results(&mut responses);
        let needs_answer = msg
            .body
            .commands
            .iter()
            .any(|c| !matches!(c, Command::Status(_) | Command::Results(_)));
        for r in &responses {
            if !matches!(r.code, StatusCode::NotExecuted) {
                self.commands_executed += 1;
            }
            self.events.push(Event::Executed {
                cmd: r.cmd.clone(),
                code: r.code,
            });
        }
        let mut scratch = MessageBuilder::new(self.version, "", 0, "", "");
        dm_tree::exec::write_responses(&mut scratch, msg.hdr.msg_id, responses);
        for uri in self.tree.take_interrupted() {
            scratch.alert(
                AlertCode::NoEndOfData,
                vec![Item {
                    target: Some(Location::new(uri)),
                    ..Item::default()
                }],
            );
        }
        for c in scratch.finish().body.commands {
            self.outbox.push(c);
        }

        // The server's package is still open unless this is its "next message"
        // request, which only asks for the rest of ours (protocol 2.1.2).
        let server_open = !msg.body.is_final && !is_next_message_request(&msg);
        if self.ours_pending || server_open || needs_answer {
            let answer = std::mem::replace(&mut self.hdr_answer, (StatusCode::Ok, None, None));
            return self.reply(dm, &msg.hdr, answer, server_open, now);
        }
        // A final message that asks nothing more: the session is over.
        if let Err(e) = self.auth.store_next_nonce(dm) {
            return self.end(Err(e));
        }
        self.end(Ok(()))
    }

    /// Sends the answer to `hdr`'s message: its header Status, then as much of the
    /// outbox as fits. While the server's package is open, ask for its next message
    /// (Alert 1222) and do not close ours.
    fn reply(
        &mut self,
        dm: &mut DmTree,
        hdr: &SyncHdr,
        (code, chal, issued): HeaderAnswer,
        server_open: bool,
        now: Instant,
    ) -> Step {
        // A nonce issued to the server is kept before the answer carrying it goes out,
        // and only then: a lost answer must not leave the old one valid, an unsent
        // one must not replace it.
        if let Some(n) = issued {
            if let Err(e) = self.auth.store_issued(dm, &n) {
                return self.end(Err(e));
            }
        }
        let mut b = self.builder();
        b.command(header_status(hdr, code, chal));
        let mut msg = b.finish();
        // Credentials count against the size, so they go in before the outbox.
        self.authorize(&mut msg);
        let budget = self.budget();
        let complete = match self.outbox.fill(&mut msg, self.encoding, budget) {
            Ok(c) => c,
            Err(e) => return self.end(Err(SessionError::Encode(e))),
        };
        if server_open {
            msg.body.commands.push(Command::Alert(alert(
                AlertCode::NextMessage,
                Vec::new(),
                None,
            )));
        }
        msg.body.is_final = complete && !server_open;
        renumber(&mut msg);
        self.transmit(msg, now)
    }

    /// The server failed to authenticate: none of its commands run; each (nested
    /// ones too) is answered with the header's code, the header with a challenge.
    fn refuse_unauthenticated(
        &mut self,
        dm: &mut DmTree,
        msg: SyncMl,
        code: StatusCode,
        chal: Option<Chal>,
        issued: Option<Nonce>,
        now: Instant,
    ) -> Step {
        let mut refused = Vec::new();
        for c in &msg.body.commands {
            if !matches!(c, Command::Status(_) | Command::Results(_)) {
                answer_all(c, code, &mut refused);
            }
        }
        let mut scratch = MessageBuilder::new(self.version, "", 0, "", "");
        dm_tree::exec::write_responses(&mut scratch, msg.hdr.msg_id, refused);
        for c in scratch.finish().body.commands {
            self.outbox.push(c);
        }
        let server_open = !msg.body.is_final && !is_next_message_request(&msg);
        self.reply(dm, &msg.hdr, (code, chal, issued), server_open, now)
    }

    /// Package 1; after a challenge, with the Status of the challenging header first
    /// (DM protocol 2.4.1).
    fn send_package1(&mut self, answering: Option<&SyncHdr>, now: Instant) -> Step {
        let mut b = self.builder();
        if let Some(hdr) = answering {
            b.command(header_status(hdr, StatusCode::Ok, None));
        }
        let mut ids = HashMap::new();
        for (c, id) in self.pkg1.clone().into_iter().zip(self.report_ids.clone()) {
            let cmd_id = b.command(c);
            if let Some(id) = id {
                ids.insert(cmd_id, id);
            }
        }
        self.reports = ids;
        b.max_msg_size(self.cfg.max_msg_size);
        b.max_obj_size(self.max_obj_size);
        self.pkg1_msg_id = self.next_msg_id;
        let msg = b.finish();
        self.transmit(msg, now)
    }

    /// The last message again, after a challenge mid-session: new MsgID, new
    /// credentials, and the Status of the challenging header in place of the old one.
    fn resend(&mut self, answering: &SyncHdr, now: Instant) -> Step {
        let Some(mut msg) = self.last_sent.take() else {
            return self.send_package1(Some(answering), now);
        };
        let status = header_status(answering, StatusCode::Ok, None);
        match msg.body.commands.first_mut() {
            Some(Command::Status(s)) if s.cmd_ref == 0 => msg.body.commands[0] = status,
            _ => msg.body.commands.insert(0, status),
        }
        renumber(&mut msg);
        self.transmit(msg, now)
    }

    /// Puts the credentials of the moment into a message's header (a resent message
    /// takes the new nonce; none after 212).
    fn authorize(&self, msg: &mut SyncMl) {
        msg.hdr.cred = None;
        if let Some(p) = &self.auth.prover {
            msg.hdr.cred = p.cred();
            if p.auth_type() == syncml_core::auth::AuthType::Md5 && msg.hdr.cred.is_some() {
                msg.hdr.source.loc_name = Some(p.user().to_owned());
            }
        }
    }

    /// A builder for the next message (credentials are added when it is sent).
    fn builder(&self) -> MessageBuilder {
        MessageBuilder::new(
            self.version,
            &self.session_id,
            self.next_msg_id,
            &self.server_uri,
            &self.device_id,
        )
    }

    fn transmit(&mut self, mut msg: SyncMl, now: Instant) -> Step {
        if self.messages_sent >= self.cfg.max_messages {
            return self.end(Err(SessionError::TooManyMessages(self.cfg.max_messages)));
        }
        msg.hdr.msg_id = self.next_msg_id;
        self.authorize(&mut msg);
        let body = match encode(&msg, self.encoding) {
            Ok(b) => b,
            Err(e) => return self.end(Err(SessionError::Encode(e.to_string()))),
        };
        if self.server_max_msg.is_some() && body.len() > self.budget() {
            tracing::warn!(
                size = body.len(),
                max = self.budget(),
                "a message larger than the server's MaxMsgSize (one command too large to split)"
            );
        }
        let hmac = self.auth.prover.as_ref().and_then(|p| p.hmac_header(&body));
        self.next_msg_id += 1;
        self.messages_sent += 1;
        self.last_sent = Some(msg);
        // A timeout too large to add means "wait for ever": a year will do.
        let deadline = now
            .checked_add(self.cfg.response_timeout)
            .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400));
        self.state = State::Waiting { deadline };
        Step::Send(Transmit {
            url: self.url.clone(),
            content_type: self.encoding.media_type(),
            hmac,
            body,
            deadline,
        })
    }

    fn end(&mut self, result: Result<(), SessionError>) -> Step {
        self.state = State::Done;
        self.run = None;
        Step::Done(Outcome {
            result,
            messages_sent: self.messages_sent,
            commands_executed: self.commands_executed,
        })
    }

    fn budget(&self) -> usize {
        let n = self
            .server_max_msg
            .map_or(self.cfg.default_out_size, |m| m.max(MIN_MSG_SIZE));
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    fn check_header(&self, hdr: &SyncHdr) -> Result<(), SessionError> {
        if DmVersion::from_ver_dtd(&hdr.ver_dtd) != Some(self.version) {
            return Err(SessionError::Protocol(format!(
                "VerDTD {:?} in a {} session",
                hdr.ver_dtd,
                self.version.ver_dtd()
            )));
        }
        if hdr.session_id.trim() != self.session_id {
            return Err(SessionError::Protocol(format!(
                "SessionID {:?}, expected {:?}",
                hdr.session_id, self.session_id
            )));
        }
        if self.received.contains(&hdr.msg_id) {
            return Err(SessionError::Protocol(format!(
                "MsgID {} received twice (a replay)",
                hdr.msg_id
            )));
        }
        Ok(())
    }

    /// Reads the Status the server gave the device's last header.
    fn read_header_status(&mut self, msg: &SyncMl) -> Result<Option<ProverStep>, SessionError> {
        let last = self.next_msg_id.saturating_sub(1);
        let st = msg.body.commands.iter().find_map(|c| match c {
            Command::Status(s)
                if s.cmd_ref == 0 && s.cmd == "SyncHdr" && s.msg_ref.is_none_or(|m| m == last) =>
            {
                Some(s)
            }
            _ => None,
        });
        let Some(st) = st else { return Ok(None) };
        let Some(p) = self.auth.prover.as_mut() else {
            return match st.data {
                StatusCode::InvalidCredentials | StatusCode::MissingCredentials => {
                    Err(SessionError::ClientAuth(
                        "the server wants credentials the account does not hold".into(),
                    ))
                }
                _ => Ok(None),
            };
        };
        let step = p
            .on_header_status(st)
            .map_err(|e| SessionError::ClientAuth(e.to_string()))?;
        match step {
            ProverStep::Authenticated => self.events.push(Event::Authenticated),
            ProverStep::ResendPackage1 | ProverStep::ResendMessage => {
                self.events.push(Event::Challenged)
            }
            ProverStep::GiveUp => {
                return Err(SessionError::ClientAuth(format!(
                    "header status {}",
                    st.data.code()
                )))
            }
            ProverStep::Continue => {}
        }
        Ok(Some(step))
    }

    fn read_status(&mut self, dm: &mut DmTree, agent: &mut dyn Agent, st: &Status) {
        // Reports travel in package 1 (MsgID 1, or the resent package 1).
        if st.cmd_ref == 0 || st.msg_ref.is_some_and(|m| m != self.pkg1_msg_id) {
            return;
        }
        if let Some(id) = self.reports.get(&st.cmd_ref).cloned() {
            if matches!(
                st.cmd.as_str(),
                "Alert" | "ConfirmFirmwareUpdate" | "SIMCardChange" | "Replace"
            ) {
                agent.report_answered(dm, &id, st.data);
                self.events.push(Event::ReportAnswered {
                    id: id.clone(),
                    code: st.data,
                });
                self.reports.remove(&st.cmd_ref);
            }
        }
    }

    /// Results larger than the server's MaxObjSize cannot be sent: their Get is
    /// answered 413 instead.
    fn limit_results(&self, responses: &mut [Response]) {
        let Some(max) = self.server_max_obj else {
            return;
        };
        for r in responses {
            let size: u64 = r
                .results
                .iter()
                .flat_map(|i| i.data.iter())
                .filter_map(|d| d.as_bytes())
                .map(|b| b.len() as u64)
                .sum();
            if size > max {
                r.code = StatusCode::RequestEntityTooLarge;
                r.results.clear();
            }
        }
    }
}

/// Answers `cmd` and every command inside it with `code`.
fn answer_all(cmd: &Command, code: StatusCode, out: &mut Vec<Response>) {
    out.push(Response::to(cmd, code));
    if let Command::Atomic(c) | Command::Sequence(c) = cmd {
        for inner in &c.commands {
            answer_all(inner, code, out);
        }
    }
}

/// Whether a non-final message only asks for the rest of the device's package:
/// Status and Alert 1222, nothing else.
fn is_next_message_request(msg: &SyncMl) -> bool {
    let mut asks = false;
    for c in &msg.body.commands {
        match c {
            Command::Status(_) => {}
            Command::Alert(a) if a.data == Some(AlertCode::NextMessage) => asks = true,
            _ => return false,
        }
    }
    asks
}

/// Renumbers a message's CmdIDs from 1 after commands were added out of order.
fn renumber(msg: &mut SyncMl) {
    let mut b = MessageBuilder::new(DmVersion::V1_2, "", 0, "", "");
    for c in std::mem::take(&mut msg.body.commands) {
        b.command(c);
    }
    msg.body.commands = b.finish().body.commands;
}

fn header_status(hdr: &SyncHdr, code: StatusCode, chal: Option<Chal>) -> Command {
    Command::Status(Status {
        cmd_id: 0,
        msg_ref: Some(hdr.msg_id),
        cmd_ref: 0,
        cmd: "SyncHdr".to_owned(),
        target_ref: vec![hdr.target.loc_uri.clone()],
        source_ref: vec![hdr.source.loc_uri.clone()],
        cred: None,
        chal,
        data: code,
        items: Vec::new(),
        extra: Vec::new(),
    })
}

fn alert(code: AlertCode, items: Vec<Item>, correlator: Option<String>) -> Alert {
    Alert {
        cmd_id: 0,
        no_resp: false,
        cred: None,
        data: Some(code),
        correlator,
        items,
        extra: Vec::new(),
    }
}

/// The DevInfo leaves, as package 1 reports them.
fn devinfo_items(dm: &DmTree) -> Vec<Item> {
    let Some(devinfo) = dm.tree.get("./DevInfo") else {
        return Vec::new();
    };
    devinfo
        .children()
        .filter(|n| n.is_leaf())
        .map(|n| {
            let value = n
                .value()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let mut it = Item::source(n.path()).with_data(value);
            it.meta = Some(Box::new(Meta::format_type(Some("chr"), Some("text/plain"))));
            it
        })
        .collect()
}

fn text_at(dm: &DmTree, path: &str) -> String {
    dm.tree
        .get(path)
        .and_then(|n| {
            n.value()
                .map(|v| String::from_utf8_lossy(v).trim().to_owned())
        })
        .unwrap_or_default()
}

/// The account's server URL, with its port when the URL names none.
fn server_url(acc: &Account) -> Option<String> {
    let addr = acc.addr.trim();
    if addr.is_empty() {
        return None;
    }
    let Some(port) = acc.port else {
        return Some(addr.to_owned());
    };
    // Insert the port after the host when the URL has none of its own.
    let (scheme, rest) = addr.split_once("://").unwrap_or(("http", addr));
    let (host, path) = rest.split_once('/').map_or((rest, ""), |(h, p)| (h, p));
    if host.contains(':') {
        return Some(addr.to_owned());
    }
    let sep = if path.is_empty() { "" } else { "/" };
    Some(format!("{scheme}://{host}:{port}{sep}{path}"))
}
