//! Runs steps of the reference update agent on a slot directory, one process per
//! run, so that the power-loss tests can kill it (SIGKILL) at random instants.
//!
//! ```text
//! update-agent-crash <slot-dir> <package> <step>...     step: stage | reboot | boot
//! ```
//!
//! Prints `done <step>` (flushed) after each step that returned; exits 1 with the
//! error on stderr when a step fails.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use dm_client::update::{SlotAgent, UpdateAgent, UpdateError};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, package, steps @ ..] = args.as_slice() else {
        eprintln!("usage: update-agent-crash <slot-dir> <package> <stage|reboot|boot>...");
        return ExitCode::from(2);
    };
    match run(Path::new(dir), Path::new(package), steps) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("update-agent-crash: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(dir: &Path, package: &Path, steps: &[String]) -> Result<(), String> {
    let mut agent = SlotAgent::open(dir).map_err(|e| e.to_string())?;
    let mut out = std::io::stdout().lock();
    for step in steps {
        let result: Result<(), UpdateError> = match step.as_str() {
            "stage" => agent.stage(package),
            "reboot" => agent.reboot(),
            "boot" => agent.boot(),
            other => return Err(format!("unknown step {other:?}")),
        };
        result.map_err(|e| format!("{step}: {e}"))?;
        writeln!(out, "done {step}")
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}
