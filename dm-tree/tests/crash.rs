//! Crash safety of the store, end to end: a `dm-tree apply` child process executing
//! large Atomic messages is killed (SIGKILL) at pseudo-random instants, hundreds of
//! times; after every kill `dm-tree verify` must pass and the store must hold
//! exactly the state before the message or the state after it. The same around a
//! commit that compacts the store. And a commit cut short by hand at the end of the
//! log must be dropped.
//!
//! `DM_TREE_CRASH_ROUNDS`, `DM_TREE_CRASH_COMPACT_ROUNDS` and `DM_TREE_CRASH_SEED`
//! change the number of rounds and the seed of the kill instants;
//! `DM_TREE_TEST_KEEP` keeps the temporary directories.

#![cfg(unix)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use common::{arg, command, ok, ok_text, server_message, write_message, TempDir};
use dm_tree::Tree;
use syncml_core::{decode, Command, Container, Item, ItemCmd, StatusCode, SyncMl};

/// Rounds of the kill loop unless `DM_TREE_CRASH_ROUNDS` says otherwise.
const DEFAULT_ROUNDS: usize = 300;
/// The PRNG seed unless `DM_TREE_CRASH_SEED` says otherwise (decimal or 0x hex).
const DEFAULT_SEED: u64 = 0x9E37_79B9_7F4A_7C15;
/// Messages in the cycle, each applied to the state the one before left.
const MESSAGES: usize = 6;
/// Interior nodes per message under `./Vendor/r<i>`, and leaves in each.
const GROUPS: usize = 4;
const LEAVES: usize = 100;
/// Every this many leaves, a value of `BIG_LEN` bytes (the rest are short).
const BIG_EVERY: usize = 16;
const BIG_LEN: usize = 4096;
const SERVER: &str = "srv";
/// Every this many rounds, an apply runs to completion and its duration becomes the
/// window kill instants are drawn from.
const CALIBRATE_EVERY: usize = 10;

/// The tests of this file run one at a time: the kill instants are drawn from
/// measured apply durations, which a sibling test's load would skew.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// xorshift64: small, deterministic, good enough to spread kill instants.
struct XorShift(u64);

impl XorShift {
    fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..=max`.
    fn up_to(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// `len` printable bytes that start with `tag` (so that every value differs).
fn text(tag: &str, len: usize) -> String {
    let mut s = String::with_capacity(len + tag.len());
    s.push_str(tag);
    let mut c = 0u8;
    while s.len() < len {
        s.push(char::from(b'a' + c % 26));
        c = c.wrapping_add(7);
    }
    s.truncate(len.max(tag.len()));
    s
}

fn chr_item(uri: String, data: String) -> Item {
    Item::target(uri)
        .with_data(data)
        .with_meta(Some("chr"), Some("text/plain"))
}

fn add(uri: String, data: String) -> Command {
    Command::Add(ItemCmd::new(vec![chr_item(uri, data)]))
}

fn replace(uri: String, data: String) -> Command {
    Command::Replace(ItemCmd::new(vec![chr_item(uri, data)]))
}

fn delete(uri: String) -> Command {
    Command::Delete(ItemCmd::new(vec![Item::target(uri)]))
}

/// One message holding one Atomic of these commands.
fn atomic_message(msg_id: u32, commands: Vec<Command>) -> SyncMl {
    let mut b = server_message(msg_id);
    b.command(Command::Atomic(Container {
        commands,
        ..Container::default()
    }));
    b.finish()
}

/// The commands of large message `i`: delete the even groups message `i-1` added,
/// replace a quarter of the leaves of its odd groups, and add `GROUPS * LEAVES`
/// leaves of its own.
fn big_commands(i: usize) -> Vec<Command> {
    let mut cmds = Vec::new();
    if i > 0 {
        let p = i - 1;
        for g in (0..GROUPS).step_by(2) {
            cmds.push(delete(format!("./Vendor/r{p}/g{g}")));
        }
        for g in (1..GROUPS).step_by(2) {
            for l in (0..LEAVES).step_by(4) {
                let len = if l % BIG_EVERY == 0 { BIG_LEN } else { 24 };
                cmds.push(replace(
                    format!("./Vendor/r{p}/g{g}/l{l}"),
                    text(&format!("upd{i}-r{p}g{g}l{l}-"), len),
                ));
            }
        }
    }
    for g in 0..GROUPS {
        for l in 0..LEAVES {
            let len = if l % BIG_EVERY == 0 { BIG_LEN } else { 16 };
            cmds.push(add(
                format!("./Vendor/r{i}/g{g}/l{l}"),
                text(&format!("r{i}g{g}l{l}-"), len),
            ));
        }
    }
    cmds
}

/// Large message `i`, one Atomic.
fn big_message(i: usize) -> SyncMl {
    atomic_message(i as u32 + 1, big_commands(i))
}

/// The number of Status codes a fully successful `msg` is answered with.
fn commands_in(msg: &SyncMl) -> usize {
    fn count(c: &Command) -> usize {
        match c {
            Command::Atomic(x) | Command::Sequence(x) => {
                1 + x.commands.iter().map(count).sum::<usize>()
            }
            _ => 1,
        }
    }
    msg.body.commands.iter().map(count).sum()
}

/// Asserts that the reply in `reply_file` answers every command of `msg` with 200.
fn assert_all_ok(msg: &SyncMl, reply_file: &Path) {
    let reply =
        decode(&std::fs::read(reply_file).expect("read the reply")).expect("decode the reply");
    let codes: Vec<StatusCode> = reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Status(s) if s.cmd != "SyncHdr" => Some(s.data),
            _ => None,
        })
        .collect();
    assert_eq!(codes.len(), commands_in(msg), "one Status per command");
    assert!(
        codes.iter().all(|&c| c == StatusCode::Ok),
        "every command of the message succeeds: {:?}",
        codes
            .iter()
            .filter(|&&c| c != StatusCode::Ok)
            .collect::<Vec<_>>()
    );
}

/// What a state is made of for these tests: each node's path and leaf value, in
/// tree order. TStamp and VerNo differ from run to run and are left out.
type State = Vec<(String, Option<Vec<u8>>)>;

/// Opens the store as the binary does (`Tree::open`, which takes the lock and
/// replays the snapshot and the good records) and reads its state.
fn state_of(dir: &Path) -> State {
    let tree = Tree::open(dir).unwrap_or_else(|e| panic!("open {}: {e}", dir.display()));
    tree.root()
        .descendants()
        .iter()
        .map(|n| (n.path().to_owned(), n.value().map(<[u8]>::to_vec)))
        .collect()
}

/// Where two states first differ, for a readable failure.
fn first_difference(a: &State, b: &State) -> String {
    let show = |(p, v): &(String, Option<Vec<u8>>)| match v {
        Some(v) => format!("{p} = {:.60}", String::from_utf8_lossy(v)),
        None => p.clone(),
    };
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return format!("{:?} vs {:?}", show(x), show(y));
        }
    }
    format!("{} nodes vs {} nodes", a.len(), b.len())
}

/// Runs `verify`, asserts exit 0, and returns its output.
fn verify_ok(state: &Path) -> String {
    ok_text(state, &["verify"])
}

/// The commit count in `verify`'s report (`..., N commits, ...`).
fn commits(report: &str) -> usize {
    let before = report
        .split(" commits")
        .next()
        .expect("a commit count in the verify report");
    before
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no commit count in {report:?}"))
}

fn apply_file(state: &Path, msg: &Path, reply: &Path) {
    ok(
        state,
        &["apply", "--server-id", SERVER, arg(msg), "-o", arg(reply)],
    );
}

/// Runs `dm-tree apply` of `msg` in a child process; kills it (SIGKILL) after
/// `kill_after`, or lets it finish. Returns its output and how long it ran.
fn apply_child(state: &Path, msg: &Path, kill_after: Option<Duration>) -> (Output, Duration) {
    let t = Instant::now();
    let mut child = command(
        state,
        &["apply", "--server-id", SERVER, arg(msg), "-o", "/dev/null"],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn dm-tree apply");
    if let Some(d) = kill_after {
        std::thread::sleep(d);
        // An error only means that the child has exited already.
        let _ = child.kill();
    }
    let out = child.wait_with_output().expect("wait for dm-tree apply");
    (out, t.elapsed())
}

/// One kill round: applies `msg` (killed after `kill_after`, or run to completion),
/// checks that the store verifies, and says which of the two states it holds. Any
/// other state fails the test with `ctx` and where it differs from both.
struct Round {
    /// Whether the new state (`after`) was found.
    landed_after: bool,
    /// Whether the child was killed (rather than finishing first).
    killed: bool,
    took: Duration,
    report: String,
}

fn kill_round(
    state: &Path,
    msg: &Path,
    kill_after: Option<Duration>,
    (before, after): (&State, &State),
    ctx: &dyn Fn(&std::process::ExitStatus) -> String,
) -> Round {
    let (out, took) = apply_child(state, msg, kill_after);
    let exited = out.status.code();
    assert!(
        matches!(exited, None | Some(0)) && (exited.is_some() || kill_after.is_some()),
        "{}: apply failed without being killed: {}\n{}",
        ctx(&out.status),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let report = verify_ok(state);
    let now = state_of(state);
    let landed_after = if now == *before {
        assert!(
            exited.is_none(),
            "{}: the apply finished but the state is the old one",
            ctx(&out.status)
        );
        false
    } else if now == *after {
        true
    } else {
        panic!(
            "{}: the state is neither the old one ({}) nor the new one ({})\nverify: {report}",
            ctx(&out.status),
            first_difference(&now, before),
            first_difference(&now, after)
        );
    };
    Round {
        landed_after,
        killed: exited.is_none(),
        took,
        report,
    }
}

/// A fresh tree in `state` (whatever was there is removed).
fn fresh_tree(state: &Path) {
    let _ = std::fs::remove_dir_all(state);
    ok(state, &["init"]);
}

#[test]
fn killed_applies_leave_the_old_or_the_new_state() {
    let _serial = serial();
    let started = Instant::now();
    let rounds = env_number("DM_TREE_CRASH_ROUNDS").map_or(DEFAULT_ROUNDS, |n| n as usize);
    let seed = env_number("DM_TREE_CRASH_SEED").unwrap_or(DEFAULT_SEED);
    println!(
        "crash test: {rounds} rounds, seed {seed:#x} (override with DM_TREE_CRASH_ROUNDS, \
         DM_TREE_CRASH_SEED)"
    );

    let tmp = TempDir::new("crash-kill");
    let state = tmp.join("state");
    let msgs: Vec<SyncMl> = (0..MESSAGES).map(big_message).collect();
    let files: Vec<PathBuf> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let p = tmp.join(&format!("msg{i}.xml"));
            write_message(&p, m);
            p
        })
        .collect();
    let sizes: Vec<u64> = files
        .iter()
        .map(|f| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0))
        .collect();
    println!("message sizes (bytes): {sizes:?}");

    // Run the cycle once to completion: the state after each message, and how long
    // one apply takes.
    fresh_tree(&state);
    let reply = tmp.join("reply.xml");
    let mut expected = vec![state_of(&state)];
    let mut durations = Vec::new();
    for (i, (m, f)) in msgs.iter().zip(&files).enumerate() {
        let t = Instant::now();
        apply_file(&state, f, &reply);
        durations.push(t.elapsed());
        assert_all_ok(m, &reply);
        verify_ok(&state);
        expected.push(state_of(&state));
        assert_ne!(
            expected[i],
            expected[i + 1],
            "message {i} changes the state"
        );
    }
    let store_bytes: u64 = ["tree.snap", "tree.log"]
        .iter()
        .map(|f| std::fs::metadata(state.join(f)).map_or(0, |m| m.len()))
        .sum();
    println!("the store holds {store_bytes} bytes after the whole cycle");
    durations.sort();
    let typical = durations[durations.len() / 2];
    println!("one apply takes {typical:?} (all: {durations:?})");
    let mut window = typical.as_micros() as u64;

    // The kill loop: message `at` is applied to state `at`; once the last message
    // has been applied, the cycle starts again from a fresh tree. Every
    // CALIBRATE_EVERY-th apply runs to completion instead, and its duration becomes
    // the window the kill instants are drawn from (so that they follow the
    // machine's load).
    fresh_tree(&state);
    let mut rng = XorShift::new(seed);
    let (mut killed_before, mut killed_after, mut finished, mut torn) = (0, 0, 0, 0);
    let (mut calibrations, mut cycles) = (0, 0);
    let (mut in_apply, mut in_checks) = (Duration::ZERO, Duration::ZERO);
    let mut at = 0;
    for round in 0..rounds {
        let calibrating = round % CALIBRATE_EVERY == CALIBRATE_EVERY - 1;
        let delay = Duration::from_micros(rng.up_to(window));
        let t = Instant::now();
        let ctx = |status: &std::process::ExitStatus| {
            format!("round {round} (seed {seed:#x}), message {at}, kill after {delay:?}, child {status}")
        };
        let r = kill_round(
            &state,
            &files[at],
            (!calibrating).then_some(delay),
            (&expected[at], &expected[at + 1]),
            &ctx,
        );
        in_apply += r.took;
        in_checks += t.elapsed() - r.took;
        if calibrating {
            window = r.took.as_micros() as u64;
        }
        if r.report.contains("interrupted commit") {
            torn += 1;
        }
        if !r.landed_after {
            killed_before += 1;
            continue;
        }
        if calibrating {
            calibrations += 1;
        } else if r.killed {
            killed_after += 1;
        } else {
            finished += 1;
        }
        at += 1;
        if at == msgs.len() {
            fresh_tree(&state);
            at = 0;
            cycles += 1;
        }
    }
    println!(
        "crash test outcomes after {rounds} rounds ({cycles} whole cycles): \
         killed, old state: {killed_before}; killed, new state: {killed_after}; \
         finished before the kill: {finished}; run to completion to calibrate: \
         {calibrations}; torn log tails seen by verify: {torn}; last window {:?}; \
         {:?} in all ({in_apply:?} applying, {in_checks:?} verifying and reading)",
        Duration::from_micros(window),
        started.elapsed()
    );
    let few = (rounds / 50).clamp(1, 3);
    assert!(
        killed_before >= few,
        "too few kills before the commit ({killed_before})"
    );
    assert!(
        killed_after + finished >= few,
        "too few applies reached their commit ({})",
        killed_after + finished
    );
}

/// The log size past which a commit folds the log into a new snapshot (the store's
/// `COMPACT_AT`).
const COMPACT_AT: u64 = 4 << 20;
/// Rounds of the compaction kill loop unless `DM_TREE_CRASH_COMPACT_ROUNDS` says
/// otherwise.
const DEFAULT_COMPACT_ROUNDS: usize = 20;
/// Every this many rounds of the compaction loop, an apply runs to completion.
const COMPACT_CALIBRATE_EVERY: usize = 5;

/// The generation in `verify`'s report (`consistent: generation N, ...`).
fn generation(report: &str) -> u64 {
    report
        .split("generation ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no generation in {report:?}"))
}

/// The same kill loop around a commit that pushes the log past the compaction
/// threshold, so that kills land while the new snapshot and the fresh log are
/// written. After each round the store files are put back as they were before the
/// message.
#[test]
fn killed_compactions_leave_the_old_or_the_new_state() {
    let _serial = serial();
    let started = Instant::now();
    let rounds =
        env_number("DM_TREE_CRASH_COMPACT_ROUNDS").map_or(DEFAULT_COMPACT_ROUNDS, |n| n as usize);
    let seed = env_number("DM_TREE_CRASH_SEED").unwrap_or(DEFAULT_SEED) ^ 0x00C0_FFEE;
    println!("compaction crash test: {rounds} rounds, seed {seed:#x}");
    let tmp = TempDir::new("crash-compact");
    let state = tmp.join("state");
    let reply = tmp.join("reply.xml");
    fresh_tree(&state);
    for i in 0..MESSAGES {
        let f = tmp.join(&format!("msg{i}.xml"));
        write_message(&f, &big_message(i));
        apply_file(&state, &f, &reply);
    }

    // The next message: large message MESSAGES, with enough padding leaves that its
    // commit takes the log past the threshold.
    let (snap, log) = (state.join("tree.snap"), state.join("tree.log"));
    let log_len = std::fs::metadata(&log).unwrap().len();
    assert!(
        log_len < COMPACT_AT,
        "no compaction yet ({log_len} bytes of log)"
    );
    let pad_len = 32 << 10;
    let pads = (COMPACT_AT + (64 << 10) - log_len) / pad_len + 1;
    let mut cmds = big_commands(MESSAGES);
    for k in 0..pads {
        cmds.push(add(
            format!("./Vendor/pad/p{k}"),
            text(&format!("pad{k}-"), pad_len as usize),
        ));
    }
    let msg = atomic_message(99, cmds);
    let file = tmp.join("compacting.xml");
    write_message(&file, &msg);

    let before_report = verify_ok(&state);
    let before = state_of(&state);
    let saved = (std::fs::read(&snap).unwrap(), std::fs::read(&log).unwrap());
    let restore = || {
        for tmp_file in ["tree.snap.tmp", "tree.log.tmp"] {
            let _ = std::fs::remove_file(state.join(tmp_file));
        }
        std::fs::write(&snap, &saved.0).unwrap();
        std::fs::write(&log, &saved.1).unwrap();
    };

    let t = Instant::now();
    apply_file(&state, &file, &reply);
    let typical = t.elapsed();
    assert_all_ok(&msg, &reply);
    let after_report = verify_ok(&state);
    assert_eq!(
        generation(&after_report),
        generation(&before_report) + 1,
        "the commit compacts the store: {after_report}"
    );
    assert_eq!(commits(&after_report), 0, "{after_report}");
    let after = state_of(&state);
    assert_ne!(before, after);
    restore();
    assert_eq!(state_of(&state), before, "the store files were put back");
    println!("one compacting apply takes {typical:?}");

    // Kills in the second half of the apply, where the commit and the compaction
    // are; every COMPACT_CALIBRATE_EVERY-th apply runs to completion to measure the
    // window again.
    let mut window = typical.as_micros() as u64;
    let mut rng = XorShift::new(seed);
    let (mut killed_before, mut killed_after, mut finished, mut new_generation) = (0, 0, 0, 0);
    let mut calibrations = 0;
    for round in 0..rounds {
        let calibrating = round % COMPACT_CALIBRATE_EVERY == COMPACT_CALIBRATE_EVERY - 1;
        let delay = Duration::from_micros(window / 2 + rng.up_to(window / 2));
        let ctx = |status: &std::process::ExitStatus| {
            format!("round {round} (seed {seed:#x}), kill after {delay:?}, child {status}")
        };
        let r = kill_round(
            &state,
            &file,
            (!calibrating).then_some(delay),
            (&before, &after),
            &ctx,
        );
        if calibrating {
            window = r.took.as_micros() as u64;
        }
        if !r.landed_after {
            killed_before += 1;
        } else if calibrating {
            calibrations += 1;
        } else if !r.killed {
            finished += 1;
        } else {
            killed_after += 1;
            if generation(&r.report) > generation(&before_report) {
                new_generation += 1;
            }
        }
        restore();
    }
    println!(
        "compaction crash test outcomes after {rounds} rounds: killed, old state: \
         {killed_before}; killed, new state: {killed_after} ({new_generation} of them with \
         the new snapshot in place); finished before the kill: {finished}; run to \
         completion to calibrate: {calibrations}; {:?}",
        started.elapsed()
    );
    let few = (rounds / 15).clamp(1, 2);
    assert!(killed_before >= few, "too few kills before the commit");
    assert!(
        killed_after + finished >= few,
        "too few applies reached their commit"
    );
}

/// A small message of separate commands.
fn plain_message(msg_id: u32, commands: Vec<Command>) -> SyncMl {
    let mut b = server_message(msg_id);
    for c in commands {
        b.command(c);
    }
    b.finish()
}

#[test]
fn a_torn_last_record_is_dropped() {
    let _serial = serial();
    let tmp = TempDir::new("crash-torn");
    let state = tmp.join("state");
    ok(&state, &["init"]);
    let reply = tmp.join("reply.xml");
    let log = state.join("tree.log");

    let first = plain_message(
        1,
        vec![
            add("./Vendor/a/x".into(), "1".into()),
            add("./Vendor/a/y".into(), "2".into()),
        ],
    );
    let second = atomic_message(
        2,
        vec![
            replace("./Vendor/a/x".into(), "changed".into()),
            add("./Vendor/a/z".into(), text("big-", 3000)),
            delete("./Vendor/a/y".into()),
        ],
    );
    let (f1, f2) = (tmp.join("m1.xml"), tmp.join("m2.xml"));
    write_message(&f1, &first);
    write_message(&f2, &second);

    apply_file(&state, &f1, &reply);
    assert_all_ok(&first, &reply);
    let before = state_of(&state);
    let commits_before = commits(&verify_ok(&state));
    let l0 = std::fs::metadata(&log).unwrap().len() as usize;

    apply_file(&state, &f2, &reply);
    assert_all_ok(&second, &reply);
    let after = state_of(&state);
    assert_ne!(before, after);
    let full = std::fs::read(&log).unwrap();
    let l1 = full.len();
    assert_eq!(commits(&verify_ok(&state)), commits_before + 1);
    assert!(l1 > l0 + 3000, "the second commit is one record at the end");

    // Tails a crash can leave: cuts inside the record head, right after it, in the
    // payload, one byte short of the end; and a file extended with zeros that were
    // never written, after the last good record or in place of the new one.
    let mut tails: Vec<Vec<u8>> = [
        l0 + 1,
        l0 + 4,
        l0 + 5,
        l0 + 9,
        l0 + 12,
        l0 + 13,
        l0 + 14,
        (l0 + l1) / 2,
        l1 - 1,
    ]
    .iter()
    .map(|&cut| full[..cut].to_vec())
    .collect();
    let mut zeros = full[..l0].to_vec();
    zeros.resize(l0 + 8192, 0);
    tails.push(zeros);
    let mut zeros = full[..l0].to_vec();
    zeros.resize(l1, 0);
    tails.push(zeros);
    for bytes in &tails {
        let torn = bytes.len() - l0;
        std::fs::write(&log, bytes).unwrap();
        let report = verify_ok(&state);
        let dropped = format!(", {torn} bytes of an interrupted commit to drop");
        assert!(
            report.starts_with("consistent:") && report.contains(&dropped),
            "{torn} bytes of tail: {report}"
        );
        assert_eq!(commits(&report), commits_before, "{torn} bytes of tail");
        let now = state_of(&state);
        assert_eq!(
            now,
            before,
            "{torn} bytes of tail: {}",
            first_difference(&now, &before)
        );
        // Opening (for reading) writes nothing: the tail is still there, still
        // reported, and dropped again.
        assert_eq!(std::fs::read(&log).unwrap(), *bytes, "{torn} bytes of tail");
        assert_eq!(verify_ok(&state), report, "{torn} bytes of tail");
    }

    // The whole record is a good commit again.
    std::fs::write(&log, &full).unwrap();
    assert_eq!(state_of(&state), after);

    // The next commit cuts the tail off and follows the last good record, for a
    // cut record and for a zero tail longer than the new record.
    for bytes in [&tails[7], &tails[9]] {
        std::fs::write(&log, bytes).unwrap();
        apply_file(&state, &f2, &reply);
        assert_all_ok(&second, &reply);
        assert_eq!(state_of(&state), after);
        let report = verify_ok(&state);
        assert_eq!(commits(&report), commits_before + 1, "{report}");
        assert!(!report.contains("interrupted"), "{report}");
        let len = std::fs::metadata(&log).unwrap().len() as usize;
        assert!(
            len.abs_diff(l1) <= 16,
            "one record after the good ones: {len} bytes, {l1} before"
        );
    }
}
