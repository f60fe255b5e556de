//! `dm-conformance`: replays recorded DM sessions against a server or a client.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use dm_conformance::as_client::{self, Target};
use dm_conformance::as_server::{self, ClientUnderTest};
use dm_conformance::exchange::origin;
use dm_conformance::report::Report;
use dm_conformance::setup::Setup;
use syncml_core::transcript::Transcript;

#[derive(Parser)]
#[command(
    name = "dm-conformance",
    version,
    about = "Replays recorded OMA DM sessions against a DM server or a DM client"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay session folders: the client side against --server, or the server
    /// side against the client --client starts. One line per check, then
    /// `N passed, N failed`; the exit status is 1 when any check failed.
    Replay {
        /// Session folders (fixtures/sessions/*).
        #[arg(required = true)]
        sessions: Vec<PathBuf>,
        /// The DM URL of the server under test (package 1 goes there).
        #[arg(long, conflicts_with = "client", required_unless_present = "client")]
        server: Option<String>,
        /// The command that starts the client under test (run with sh -c; see the
        /// placeholders in fixtures/sessions/README.md).
        #[arg(long)]
        client: Option<String>,
        /// Bearer token of dm-server's admin API, to run the sessions' setup steps.
        #[arg(long, env = "DM_CONFORMANCE_ADMIN_TOKEN")]
        admin_token: Option<String>,
        /// Where the admin API is (default: the origin of --server).
        #[arg(long)]
        admin_url: Option<String>,
        /// Seconds to wait for each message of the peer.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Where --client runs keep their state folders and logs (default: a
        /// temporary folder, removed at the end).
        #[arg(long)]
        work: Option<PathBuf>,
        /// Print only failures and notes (and the summary).
        #[arg(long)]
        quiet: bool,
        /// Author sessions: write what the live peer sends into the session folders
        /// in place of the recorded peer messages (review them before committing).
        #[arg(long)]
        bless: bool,
    },
}

fn main() -> ExitCode {
    let Cmd::Replay {
        sessions,
        server,
        client,
        admin_token,
        admin_url,
        timeout,
        work,
        quiet,
        bless,
    } = Cli::parse().cmd;
    let timeout = Duration::from_secs(timeout);
    let mut report = Report::new(std::io::stdout().lock(), !quiet);
    let tmp = work
        .is_none()
        .then(|| std::env::temp_dir().join(format!("dm-conformance-{}", std::process::id())));
    let work = work.or_else(|| tmp.clone()).unwrap_or_default();
    for dir in &sessions {
        report.session = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| dir.display().to_string());
        let t = match Transcript::load(dir) {
            Ok(t) => t,
            Err(e) => {
                report.check("recording", Some(&e.to_string()));
                continue;
            }
        };
        if let Some(url) = &server {
            let admin = admin_token.as_ref().map(|token| Setup {
                base: admin_url.clone().unwrap_or_else(|| origin(url)),
                token: token.clone(),
                timeout,
            });
            let target = Target {
                url: url.clone(),
                admin,
                timeout,
            };
            as_client::replay(&t, &target, bless, &mut report);
        } else if let Some(command) = &client {
            let c = ClientUnderTest {
                command: command.clone(),
                timeout,
                work: work.clone(),
            };
            as_server::replay(&t, &c, bless, &mut report);
        }
    }
    report.summary();
    if report.failed > 0 {
        // The clients' logs stay for a look (their paths are in the notes).
        ExitCode::FAILURE
    } else {
        if let Some(t) = tmp {
            let _ = std::fs::remove_dir_all(t);
        }
        ExitCode::SUCCESS
    }
}
