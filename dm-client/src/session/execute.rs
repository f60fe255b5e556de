//! Running the commands of one server message, in order, with a pause where a
//! command needs the download agent.
//!
//! Every command goes to the tree executor (`dm_tree::Session`) except a
//! GetFirmwareUpdate or Download at the top level or directly inside a top-level
//! Sequence: those ask the [`Agent`] whether a download is needed, and if so the
//! run stops at that command until the driver reports the download's end. A
//! Sequence is walked here, command by command, so that it can pause too; the tree
//! executor's rules for it are kept: the Sequence is answered 200, and after the
//! first failure the rest is not executed (215).

use dm_tree::{DmTree, Response};
use syncml_core::{Command, StatusCode, SyncMl};

use super::{Agent, Begin};
use crate::download;

/// Where the run of a message stands.
#[derive(Debug)]
pub struct Run {
    pub msg: SyncMl,
    /// The next top-level command.
    top: usize,
    /// Inside a top-level Sequence: the next command in it, and whether one failed.
    seq: Option<(usize, bool)>,
    pub responses: Vec<Response>,
    /// How many of the responses answer changes already committed (before a
    /// pause for a download).
    pub committed: usize,
}

/// What a run came to.
pub enum Paused {
    /// Every command ran.
    Finished,
    /// The command at the cursor needs this download.
    Download(download::Request),
}

impl Run {
    pub fn new(msg: SyncMl) -> Run {
        Run {
            msg,
            top: 0,
            seq: None,
            responses: Vec::new(),
            committed: 0,
        }
    }

    /// The command the run stands at (the one a download is for).
    fn current(&self) -> Option<&Command> {
        let cmd = self.msg.body.commands.get(self.top)?;
        match (cmd, self.seq) {
            (Command::Sequence(c), Some((i, _))) => c.commands.get(i),
            _ => Some(cmd),
        }
    }

    /// Runs commands until the end or a pause.
    pub fn resume(
        &mut self,
        dm: &mut DmTree,
        tree: &mut dm_tree::Session,
        agent: &mut dyn Agent,
    ) -> Paused {
        while let Some(cmd) = self.msg.body.commands.get(self.top) {
            if let Command::Sequence(c) = cmd {
                let (mut i, mut failed) = match self.seq {
                    Some(s) => s,
                    None => {
                        self.responses.push(Response::to(cmd, StatusCode::Ok));
                        (0, false)
                    }
                };
                while let Some(sub) = c.commands.get(i) {
                    if failed {
                        self.responses.extend(not_executed(sub));
                        i += 1;
                        continue;
                    }
                    match step(dm, tree, agent, sub) {
                        Ok(rs) => {
                            failed = rs.iter().any(|r| !r.code.is_success());
                            self.responses.extend(rs);
                            i += 1;
                        }
                        Err(req) => {
                            self.seq = Some((i, failed));
                            return Paused::Download(req);
                        }
                    }
                }
                self.seq = None;
            } else {
                match step(dm, tree, agent, cmd) {
                    Ok(rs) => self.responses.extend(rs),
                    Err(req) => return Paused::Download(req),
                }
            }
            self.top += 1;
        }
        Paused::Finished
    }

    /// The download the run paused for ended: answers its command and moves on.
    pub fn download_done(
        &mut self,
        dm: &mut DmTree,
        server_id: &str,
        agent: &mut dyn Agent,
        result: Result<download::Fetched, download::DownloadError>,
    ) {
        let Some(cmd) = self.current().cloned() else {
            return;
        };
        let code = agent.end_download(dm, server_id, &cmd, result);
        self.responses.push(Response::to(&cmd, code));
        match &mut self.seq {
            Some((i, failed)) => {
                *failed |= !code.is_success();
                *i += 1;
            }
            None => self.top += 1,
        }
    }
}

/// Runs one command: its responses, or the download it needs first.
fn step(
    dm: &mut DmTree,
    tree: &mut dm_tree::Session,
    agent: &mut dyn Agent,
    cmd: &Command,
) -> Result<Vec<Response>, download::Request> {
    if matches!(cmd, Command::GetFirmwareUpdate(_) | Command::Download(_)) {
        return match agent.begin_download(dm, tree.server_id(), cmd) {
            Begin::Answer(code) => Ok(vec![Response::to(cmd, code)]),
            Begin::Fetch(req) => Err(req),
        };
    }
    Ok(tree.execute(dm, agent, cmd))
}

/// 215 for a command not reached, and for the commands inside it.
fn not_executed(cmd: &Command) -> Vec<Response> {
    let mut out = vec![Response::to(cmd, StatusCode::NotExecuted)];
    if let Command::Atomic(c) | Command::Sequence(c) = cmd {
        for inner in &c.commands {
            out.extend(not_executed(inner));
        }
    }
    out
}
