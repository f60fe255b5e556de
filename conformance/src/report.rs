//! The replay's output: one line per check, a closing `N passed, N failed`.

use std::io::Write;

/// Counts checks and prints them as they are made.
pub struct Report<W: Write> {
    out: W,
    pub passed: usize,
    pub failed: usize,
    /// The session folder now being replayed, prefixed to every line.
    pub session: String,
    /// Print passed checks too (failures and notes are always printed).
    pub verbose: bool,
}

impl<W: Write> Report<W> {
    pub fn new(out: W, verbose: bool) -> Report<W> {
        Report {
            out,
            passed: 0,
            failed: 0,
            session: String::new(),
            verbose,
        }
    }

    /// One check: `problem` is `None` when it passed.
    pub fn check(&mut self, what: &str, problem: Option<&str>) {
        match problem {
            None => {
                self.passed += 1;
                if self.verbose {
                    let _ = writeln!(self.out, "ok   {}: {what}", self.session);
                }
            }
            Some(p) => {
                self.failed += 1;
                let _ = writeln!(self.out, "FAIL {}: {what}: {p}", self.session);
            }
        }
    }

    /// Something worth knowing that is neither a pass nor a failure.
    pub fn note(&mut self, what: &str) {
        let _ = writeln!(self.out, "note {}: {what}", self.session);
    }

    /// The closing line.
    pub fn summary(&mut self) {
        let _ = writeln!(self.out, "{} passed, {} failed", self.passed, self.failed);
        let _ = self.out.flush();
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}
