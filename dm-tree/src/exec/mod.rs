//! The command executor: what a device does with the commands of a server's
//! package, and the Status (and Results) it answers each with.
//!
//! A [`Session`] belongs to one server (its id is what ACLs name) and keeps what
//! spans messages: a large object being assembled. [`Session::execute`] runs one
//! command and returns its responses; [`Session::apply_message`] runs a whole message,
//! commits the tree once, and builds the reply. Checks, in order, for each item:
//! URI (400/414/406), existence (404/418), ACL (425), DDF (405, 420), format and
//! value (415/400), size (413/424). A refused command changes nothing.

mod alert;
mod items;
mod large;

pub use alert::{alert_options, headless_alert, AlertAnswer, Headless, Hooks};
pub use items::prop_text;

use syncml_core::{
    AlertCode, Command, Container, Item, Location, MessageBuilder, Results, Status, StatusCode,
    SyncMl,
};

use crate::dmtree::DmTree;
use large::LargeObject;

/// The answer to one command, or to one item of a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub cmd_ref: u32,
    /// The name of the answered command.
    pub cmd: String,
    pub code: StatusCode,
    pub target_ref: Option<String>,
    pub source_ref: Option<String>,
    /// Items of the Status itself (an alert's answer).
    pub items: Vec<Item>,
    /// Items of the Results that follow the Status (a Get's answer).
    pub results: Vec<Item>,
}

impl Response {
    /// A response to `cmd` with only a code.
    pub fn to(cmd: &Command, code: StatusCode) -> Response {
        Response {
            cmd_ref: cmd.cmd_id(),
            cmd: cmd.name().to_owned(),
            code,
            target_ref: None,
            source_ref: None,
            items: Vec::new(),
            results: Vec::new(),
        }
    }

    /// A response to one item of `cmd`, with that item's refs.
    fn to_item(cmd: &Command, item: &Item, code: StatusCode) -> Response {
        let mut r = Response::to(cmd, code);
        r.target_ref = item.target.as_ref().map(|t| t.loc_uri.clone());
        r.source_ref = item.source.as_ref().map(|s| s.loc_uri.clone());
        r
    }
}

/// One server's session with the tree.
#[derive(Debug, Clone)]
pub struct Session {
    server_id: String,
    large: Option<LargeObject>,
    /// URIs of large objects a new command interrupted (each owed an Alert 1225).
    interrupted: Vec<String>,
    /// The command and target of the last interrupted object: a chunk of it that
    /// still arrives is refused rather than taken for a value of its own.
    dropped: Option<(String, String)>,
}

impl Session {
    /// A session for the server with this ServerID (the name ACLs use).
    pub fn new(server_id: &str) -> Session {
        Session {
            server_id: server_id.to_owned(),
            large: None,
            interrupted: Vec::new(),
            dropped: None,
        }
    }

    pub fn server_id(&self) -> &str {
        &self.server_id
    }

    /// Whether a large object is being received.
    pub fn receiving_large_object(&self) -> bool {
        self.large.is_some()
    }

    /// The URIs of large objects that were interrupted by another command since the
    /// last call: the device owes the server an Alert 1225 for each.
    pub fn take_interrupted(&mut self) -> Vec<String> {
        std::mem::take(&mut self.interrupted)
    }

    /// Executes one command. Its changes are journalled in the tree and become
    /// durable at the caller's `dm.tree.commit()`.
    pub fn execute(
        &mut self,
        dm: &mut DmTree,
        hooks: &mut dyn Hooks,
        cmd: &Command,
    ) -> Vec<Response> {
        self.run(dm, hooks, cmd, false)
    }

    fn run(
        &mut self,
        dm: &mut DmTree,
        hooks: &mut dyn Hooks,
        cmd: &Command,
        in_atomic: bool,
    ) -> Vec<Response> {
        // Status and Results (the server answering the device) may sit between
        // chunks; any other command interrupts a large object.
        let answers = matches!(cmd, Command::Status(_) | Command::Results(_));
        if !answers && !self.continues_large_object(cmd) {
            if let Some(lo) = self.large.take() {
                self.dropped = Some((lo.cmd, lo.target.clone()));
                self.interrupted.push(lo.target);
            }
        }
        match cmd {
            // Answers to the device's own commands: nothing to answer.
            Command::Status(_) => Vec::new(),
            Command::Alert(a) => {
                let ans = hooks.alert(a);
                let mut r = Response::to(cmd, ans.code);
                r.items = ans.items;
                vec![r]
            }
            Command::Atomic(c) if in_atomic => {
                // Atomic cannot nest: the inner one fails (and fails the outer);
                // its commands are not executed.
                let mut out = vec![Response::to(cmd, StatusCode::CommandFailed)];
                out.extend(not_executed(&c.commands));
                out
            }
            Command::Atomic(c) => self.atomic(dm, hooks, cmd, c),
            Command::Sequence(c) => self.sequence(dm, hooks, cmd, c, in_atomic),
            Command::Get(_) if in_atomic => vec![Response::to(cmd, StatusCode::CommandNotAllowed)],
            Command::Add(_)
            | Command::Replace(_)
            | Command::Delete(_)
            | Command::Get(_)
            | Command::Copy(_)
            | Command::Exec(_) => self.items(dm, cmd),
            Command::GetFirmwareUpdate(_)
            | Command::VerifyFirmwareUpdate(_)
            | Command::SaveFirmwareUpdate(_)
            | Command::ApplyFirmwareUpdate(_)
            | Command::Download(_)
            | Command::Update(_) => {
                let code = hooks.extension(dm, &self.server_id, cmd);
                vec![Response::to(cmd, code)]
            }
            // Client-to-server commands arriving at the client are refused unseen.
            Command::ConfirmFirmwareUpdate(_) | Command::SimCardChange(_) | Command::Results(_) => {
                vec![Response::to(cmd, StatusCode::CommandNotAllowed)]
            }
            Command::Unknown(_) => vec![Response::to(cmd, StatusCode::OptionalFeatureNotSupported)],
        }
    }

    /// Atomic: all or nothing. On the first failure every change is rolled back; the
    /// commands that had succeeded get 216, those not reached 215, the Atomic 507
    /// (516 if the rollback itself failed).
    fn atomic(
        &mut self,
        dm: &mut DmTree,
        hooks: &mut dyn Hooks,
        cmd: &Command,
        c: &Container,
    ) -> Vec<Response> {
        let mark = dm.tree.mark();
        let mut inner = Vec::new();
        let mut failed_at = None;
        for (i, sub) in c.commands.iter().enumerate() {
            let rs = self.run(dm, hooks, sub, true);
            let failed = rs.iter().any(|r| !r.code.is_success());
            inner.extend(rs);
            if failed {
                failed_at = Some(i);
                break;
            }
        }
        let Some(i) = failed_at else {
            let mut out = vec![Response::to(cmd, StatusCode::Ok)];
            out.extend(inner);
            return out;
        };
        // A large object begun inside the Atomic goes with it.
        self.large = None;
        let code = match dm.tree.rollback(mark) {
            Ok(()) => StatusCode::AtomicFailed,
            Err(_) => StatusCode::AtomicRollbackFailed,
        };
        for r in &mut inner {
            // Executed and undone: 216; not executed stays 215.
            if r.code.is_success() && r.code != StatusCode::NotExecuted {
                r.code = StatusCode::AtomicRollbackOk;
                r.results.clear();
            }
        }
        let mut out = vec![Response::to(cmd, code)];
        out.extend(inner);
        out.extend(not_executed(&c.commands[i + 1..]));
        out
    }

    /// Sequence: in order; after a failure the rest is not executed (215).
    fn sequence(
        &mut self,
        dm: &mut DmTree,
        hooks: &mut dyn Hooks,
        cmd: &Command,
        c: &Container,
        in_atomic: bool,
    ) -> Vec<Response> {
        let mut out = vec![Response::to(cmd, StatusCode::Ok)];
        for (i, sub) in c.commands.iter().enumerate() {
            let rs = self.run(dm, hooks, sub, in_atomic);
            let failed = rs.iter().any(|r| !r.code.is_success());
            out.extend(rs);
            if failed {
                out.extend(not_executed(&c.commands[i + 1..]));
                break;
            }
        }
        out
    }

    /// Executes every command of a message, commits the tree once, and builds the
    /// reply a client sends: Status for the header (200: authentication is the
    /// session engine's), then each command's Status and Results, then an Alert 1225
    /// for each interrupted large object.
    pub fn apply_message(
        &mut self,
        dm: &mut DmTree,
        hooks: &mut dyn Hooks,
        msg: &SyncMl,
    ) -> SyncMl {
        let mut responses = Vec::new();
        for cmd in &msg.body.commands {
            responses.extend(self.execute(dm, hooks, cmd));
        }
        if dm.tree.commit().is_err() {
            self.large = None;
            // The tree rolled back to what the store holds: every change the message
            // made is answered as failed (510), so the server knows nothing was kept.
            for r in &mut responses {
                if r.code.is_success() {
                    r.code = StatusCode::DataStoreFailure;
                    r.results.clear();
                }
            }
        }
        let mut b = MessageBuilder::reply_to(&msg.hdr, msg.hdr.msg_id);
        b.status_for_header(StatusCode::Ok);
        write_responses(&mut b, msg.hdr.msg_id, responses);
        for uri in self.take_interrupted() {
            b.alert(
                AlertCode::NoEndOfData,
                vec![Item {
                    target: Some(Location::new(uri)),
                    ..Item::default()
                }],
            );
        }
        b.finish()
    }
}

/// Responses of 215 for commands (and the commands inside containers) not reached.
fn not_executed(cmds: &[Command]) -> Vec<Response> {
    let mut out = Vec::new();
    for c in cmds {
        out.push(Response::to(c, StatusCode::NotExecuted));
        if let Command::Atomic(inner) | Command::Sequence(inner) = c {
            out.extend(not_executed(&inner.commands));
        }
    }
    out
}

/// Adds Status (and Results) commands for responses to a reply being built.
pub fn write_responses(b: &mut MessageBuilder, msg_ref: u32, responses: Vec<Response>) {
    for r in responses {
        b.command(Command::Status(Status {
            cmd_id: 0,
            msg_ref: Some(msg_ref),
            cmd_ref: r.cmd_ref,
            cmd: r.cmd,
            target_ref: r.target_ref.clone().into_iter().collect(),
            source_ref: r.source_ref.into_iter().collect(),
            cred: None,
            chal: None,
            data: r.code,
            items: r.items,
            extra: Vec::new(),
        }));
        if !r.results.is_empty() {
            b.command(Command::Results(Results {
                cmd_id: 0,
                msg_ref: Some(msg_ref),
                cmd_ref: r.cmd_ref,
                meta: None,
                target_ref: r.target_ref.into_iter().collect(),
                source_ref: Vec::new(),
                items: r.results,
                extra: Vec::new(),
            }));
        }
    }
}
