//! The slot agent's state: its model and the text form of the `state` file.
//!
//! The file is line-based, one fact a line, strings escaped (`\xHH` for a backslash,
//! white space and control characters), and ends with the SHA-256 of everything
//! before it, so a file damaged outside the agent is refused instead of misread:
//!
//! ```text
//! dm-client slot agent state 1
//! active a
//! boots 3
//! slot a <sha256 hex> <version>
//! slot b <sha256 hex> <version>            (absent: the slot holds nothing known)
//! phase idle | staged .. | pending .. | trial <attempts> ..
//!                                          (.. = <target sha256 hex> <from> <to>)
//! outcome updated <from> <to> | outcome failed <code> <reason>   (optional)
//! check <sha256 hex of the lines above>
//! ```

use sha2::{Digest, Sha256};

use super::Outcome;

/// The first line of the state file.
const MAGIC: &str = "dm-client slot agent state 1";
/// The longest state file read (versions and reasons are bounded far below this).
pub(crate) const MAX_STATE_LEN: u64 = 16 * 1024;
/// The longest version string accepted.
pub const MAX_VERSION_LEN: usize = 255;
/// Outcome reasons are cut to this many bytes.
pub(crate) const MAX_REASON_LEN: usize = 512;

/// One of the two firmware slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// `slot-a.img`, where [`SlotAgent::init`](super::SlotAgent::init) puts the
    /// first image.
    A,
    /// `slot-b.img`.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// The slot's image file name in the agent's directory.
    pub fn file_name(self) -> &'static str {
        match self {
            Slot::A => "slot-a.img",
            Slot::B => "slot-b.img",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Slot::A => 0,
            Slot::B => 1,
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }

    fn from_tag(tag: &str) -> Option<Slot> {
        match tag {
            "a" => Some(Slot::A),
            "b" => Some(Slot::B),
            _ => None,
        }
    }
}

/// What a slot holds: a known image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SlotRecord {
    pub version: String,
    pub sha256: [u8; 32],
}

/// The update written to the inactive slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Staged {
    /// The version running when it was staged.
    pub from: String,
    pub to: String,
    /// The digest the new image must have.
    pub sha256: [u8; 32],
}

/// Where the agent is in an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    Idle,
    /// The inactive slot holds the staged image.
    Staged(Staged),
    /// `reboot` committed the switch; the next boot takes the inactive slot.
    Pending(Staged),
    /// The new slot is active on trial; `attempts` boots have started checking it.
    Trial {
        staged: Staged,
        attempts: u32,
    },
}

/// Everything the `state` file records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub active: Slot,
    pub boots: u64,
    /// Indexed by [`Slot::index`]; the active slot always has a record.
    pub slots: [Option<SlotRecord>; 2],
    pub phase: Phase,
    pub outcome: Option<Outcome>,
}

impl State {
    /// A fresh agent: `version` in slot A, nothing else.
    pub fn new(version: &str, sha256: [u8; 32]) -> State {
        State {
            active: Slot::A,
            boots: 0,
            slots: [
                Some(SlotRecord {
                    version: version.to_string(),
                    sha256,
                }),
                None,
            ],
            phase: Phase::Idle,
            outcome: None,
        }
    }

    /// The record of `slot`.
    pub fn slot(&self, slot: Slot) -> Option<&SlotRecord> {
        self.slots[slot.index()].as_ref()
    }

    /// The text form of the state file.
    pub fn encode(&self) -> String {
        let mut out = format!(
            "{MAGIC}\nactive {}\nboots {}\n",
            self.active.tag(),
            self.boots
        );
        for slot in [Slot::A, Slot::B] {
            if let Some(rec) = self.slot(slot) {
                out += &format!(
                    "slot {} {} {}\n",
                    slot.tag(),
                    hex(&rec.sha256),
                    escape(&rec.version)
                );
            }
        }
        let staged =
            |s: &Staged| format!("{} {} {}", hex(&s.sha256), escape(&s.from), escape(&s.to));
        out += &match &self.phase {
            Phase::Idle => "phase idle\n".to_string(),
            Phase::Staged(s) => format!("phase staged {}\n", staged(s)),
            Phase::Pending(s) => format!("phase pending {}\n", staged(s)),
            Phase::Trial {
                staged: s,
                attempts,
            } => {
                format!("phase trial {attempts} {}\n", staged(s))
            }
        };
        match &self.outcome {
            None => {}
            Some(Outcome::Updated { from, to }) => {
                out += &format!("outcome updated {} {}\n", escape(from), escape(to));
            }
            Some(Outcome::Failed { code, reason }) => {
                out += &format!("outcome failed {code} {}\n", escape(reason));
            }
        }
        let check = hex(&Sha256::digest(out.as_bytes()).into());
        out + &format!("check {check}\n")
    }

    /// Reads the text form; the error says what is wrong.
    pub fn decode(text: &str) -> Result<State, String> {
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|i| i + 1)
            .ok_or("no check line")?;
        let (body, check_line) = text.split_at(body_end);
        let check = check_line
            .strip_prefix("check ")
            .map(|c| c.trim_end_matches('\n'))
            .ok_or("no check line")?;
        if unhex(check) != Some(Sha256::digest(body.as_bytes()).into()) {
            return Err("check digest mismatch".into());
        }
        let mut lines = body.lines();
        if lines.next() != Some(MAGIC) {
            return Err("not a slot agent state file".into());
        }
        let (mut active, mut boots, mut phase) = (None, None, None);
        let mut slots: [Option<SlotRecord>; 2] = [None, None];
        let mut outcome = None;
        for line in lines {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["active", tag] => active = Some(Slot::from_tag(tag).ok_or("bad active slot")?),
                ["boots", n] => boots = Some(n.parse::<u64>().map_err(|_| "bad boot count")?),
                ["slot", tag, digest, version] => {
                    let slot = Slot::from_tag(tag).ok_or("bad slot")?;
                    slots[slot.index()] = Some(SlotRecord {
                        version: version_field(version)?,
                        sha256: unhex(digest).ok_or("bad slot digest")?,
                    });
                }
                ["phase", "idle"] => phase = Some(Phase::Idle),
                ["phase", "staged", rest @ ..] => phase = Some(Phase::Staged(staged_fields(rest)?)),
                ["phase", "pending", rest @ ..] => {
                    phase = Some(Phase::Pending(staged_fields(rest)?));
                }
                ["phase", "trial", attempts, rest @ ..] => {
                    phase = Some(Phase::Trial {
                        staged: staged_fields(rest)?,
                        attempts: attempts.parse().map_err(|_| "bad trial attempts")?,
                    });
                }
                ["outcome", "updated", from, to] => {
                    outcome = Some(Outcome::Updated {
                        from: version_field(from)?,
                        to: version_field(to)?,
                    });
                }
                ["outcome", "failed", code, reason] => {
                    outcome = Some(Outcome::Failed {
                        code: code.parse().map_err(|_| "bad outcome code")?,
                        reason: unescape(reason).ok_or("bad outcome reason")?,
                    });
                }
                _ => return Err(format!("unknown line {:?}", truncate(line, 80))),
            }
        }
        let state = State {
            active: active.ok_or("no active slot")?,
            boots: boots.ok_or("no boot count")?,
            slots,
            phase: phase.ok_or("no phase")?,
            outcome,
        };
        if state.slot(state.active).is_none() {
            return Err("the active slot has no record".into());
        }
        Ok(state)
    }
}

fn staged_fields(words: &[&str]) -> Result<Staged, String> {
    match words {
        [digest, from, to] => Ok(Staged {
            from: version_field(from)?,
            to: version_field(to)?,
            sha256: unhex(digest).ok_or("bad target digest")?,
        }),
        _ => Err("bad staged update".into()),
    }
}

fn version_field(word: &str) -> Result<String, String> {
    unescape(word)
        .filter(|v| valid_version(v))
        .ok_or_else(|| "bad version".into())
}

/// Whether `version` can name a firmware: 1 to [`MAX_VERSION_LEN`] bytes, no control
/// characters.
pub fn valid_version(version: &str) -> bool {
    !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && !version.chars().any(char::is_control)
}

/// Cuts `text` to at most `max` bytes on a character boundary.
pub(crate) fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '\\' || c.is_whitespace() || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out += &format!("\\x{b:02x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(word: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(word.len());
    let mut rest = word.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'\\' {
            let hexpair = tail.get(..3).filter(|h| h[0] == b'x')?;
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hexpair[1..]).ok()?, 16).ok()?);
            rest = &tail[3..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> State {
        let mut s = State::new("1.0 beta", [7; 32]);
        s.boots = 42;
        s.active = Slot::B;
        s.slots[1] = Some(SlotRecord {
            version: "2.0\\x".into(),
            sha256: [9; 32],
        });
        s.phase = Phase::Trial {
            staged: Staged {
                from: "1.0 beta".into(),
                to: "2.0\\x".into(),
                sha256: [9; 32],
            },
            attempts: 2,
        };
        s.outcome = Some(Outcome::Failed {
            code: 410,
            reason: "bad\nthing é\t\\x41".into(),
        });
        s
    }

    #[test]
    fn every_phase_and_outcome_round_trips() {
        let mut s = sample();
        assert_eq!(State::decode(&s.encode()).unwrap(), s);
        let st = Staged {
            from: "a".into(),
            to: "b".into(),
            sha256: [1; 32],
        };
        for phase in [Phase::Idle, Phase::Staged(st.clone()), Phase::Pending(st)] {
            s.phase = phase;
            s.outcome = Some(Outcome::Updated {
                from: "x y".into(),
                to: "z".into(),
            });
            assert_eq!(State::decode(&s.encode()).unwrap(), s);
        }
        s.outcome = None;
        s.slots[0] = None;
        assert_eq!(State::decode(&s.encode()).unwrap(), s);
    }

    #[test]
    fn a_changed_byte_or_a_missing_line_is_refused() {
        let text = sample().encode();
        let flipped = text.replacen("boots 42", "boots 43", 1);
        assert_eq!(
            State::decode(&flipped).unwrap_err(),
            "check digest mismatch"
        );
        let cut = &text[..text.len() / 2];
        assert!(State::decode(cut).is_err());
        assert!(State::decode("").is_err());
    }

    #[test]
    fn a_well_checked_file_without_an_active_record_is_refused() {
        let mut s = sample();
        s.slots[Slot::B.index()] = None;
        assert_eq!(
            State::decode(&s.encode()).unwrap_err(),
            "the active slot has no record"
        );
    }

    #[test]
    fn versions_are_bounded_and_printable() {
        assert!(valid_version("1.2.3 (build 7)"));
        assert!(!valid_version(""));
        assert!(!valid_version("1\n2"));
        assert!(!valid_version(&"x".repeat(MAX_VERSION_LEN + 1)));
        assert_eq!(truncate("é", 1), "");
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(unescape("a\\x4"), None);
        assert_eq!(unescape("a\\y41"), None);
        assert_eq!(unescape("\\xff"), None);
        assert_eq!(unescape("a\\x20b").as_deref(), Some("a b"));
    }
}
