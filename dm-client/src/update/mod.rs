//! The update agent: what rewrites the firmware. A trait, so that a vendor plugs in
//! its own bootloader, and a reference agent that keeps two slots in a directory.
//!
//! [`SlotAgent`] is the reference agent; [`slots`] documents its files and its state
//! machine, and why a power loss at any instant leaves a bootable device with a known
//! outcome.

use std::path::Path;

mod fsio;
pub mod slots;
mod state;

pub use slots::{
    default_health_check, HealthCheck, Limits, SlotAgent, Status, BAD_FIRMWARE_MARK,
    DEFAULT_MAX_TRIAL_BOOTS, STATE_FILE,
};
pub use state::{valid_version, Slot, MAX_VERSION_LEN};

/// The FUMO result codes the agents report (the list is in PROTOCOL.md, FUMO).
pub mod codes {
    /// The request cannot be done in the agent's state (nothing staged, boot first).
    pub const CLIENT_ERROR: u16 = 400;
    /// The package is damaged or does not build the image it announces.
    pub const CORRUPTED_PACKAGE: u16 = 402;
    /// The update failed: I/O error, or the new firmware failed its check.
    pub const UPDATE_FAILED: u16 = 410;
    /// The image does not fit the agent's limits.
    pub const UPDATE_OUT_OF_MEMORY: u16 = 502;
}

/// The result of an update, known only after the reboot that follows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new firmware booted and passed its check.
    Updated { from: String, to: String },
    /// The update could not be completed; the device runs the old firmware.
    /// `code` is the FUMO result code (410 update failed, 402 corrupted ...).
    Failed { code: u16, reason: String },
}

/// Why the agent could not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} (FUMO result {code})")]
pub struct UpdateError {
    /// The FUMO result code to report.
    pub code: u16,
    pub reason: String,
}

impl UpdateError {
    /// An error with a FUMO result code and a reason.
    pub fn new(code: u16, reason: impl Into<String>) -> UpdateError {
        UpdateError {
            code,
            reason: reason.into(),
        }
    }
}

/// Rewrites the firmware.
///
/// The order of calls: [`stage`](UpdateAgent::stage) a verified package, then
/// [`reboot`](UpdateAgent::reboot); at every start, [`boot`](UpdateAgent::boot), then
/// read [`outcome`](UpdateAgent::outcome) and, once it is safely recorded,
/// [`clear_outcome`](UpdateAgent::clear_outcome). Every step survives a power loss:
/// calling it again after one finishes it.
pub trait UpdateAgent {
    /// The version of the running firmware.
    fn current_version(&self) -> String;
    /// Writes the firmware of `package` (full or delta) to where the next boot takes
    /// it from, without touching the running firmware.
    fn stage(&mut self, package: &Path) -> Result<(), UpdateError>;
    /// Switches to the staged firmware. A real agent does not return; the reference
    /// agent returns and the next [`boot`](UpdateAgent::boot) plays the reboot.
    fn reboot(&mut self) -> Result<(), UpdateError>;
    /// Runs at every start: checks a newly switched firmware and falls back to the
    /// previous one if the check fails.
    fn boot(&mut self) -> Result<(), UpdateError>;
    /// The outcome of the last update, kept until cleared.
    fn outcome(&self) -> Option<Outcome>;
    /// Forgets the outcome once the client has recorded it.
    fn clear_outcome(&mut self) -> Result<(), UpdateError>;
}
