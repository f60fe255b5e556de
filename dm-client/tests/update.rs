//! The reference two-slot update agent end to end: real packages built with
//! `syncml_core::package`, real files, and a child process killed at random instants
//! of stage / reboot / boot.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{seed, Rng};
use dm_client::update::{codes, Limits, Outcome, Slot, SlotAgent, Status, UpdateAgent};
use syncml_core::package::{build_delta, build_full, Spec};

fn spec(from: &str, to: &str) -> Spec {
    Spec {
        model: "X1".into(),
        component: "firmware".into(),
        from_version: from.into(),
        to_version: to.into(),
    }
}

/// `len` bytes of deterministic noise, so that deltas are neither trivial nor huge.
fn image(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

/// `base` with a few regions rewritten: what a firmware release looks like to bsdiff.
fn edited(base: &[u8], seed: u64) -> Vec<u8> {
    let mut out = base.to_vec();
    let mut rng = Rng(seed | 1);
    for _ in 0..8 {
        let at = (rng.next() as usize) % out.len().saturating_sub(64).max(1);
        for byte in out.iter_mut().skip(at).take(64) {
            *byte = rng.next() as u8;
        }
    }
    out.extend_from_slice(b"release notes");
    out
}

/// xorshift64*: enough randomness for test data and kill instants.
fn write_package(dir: &Path, name: &str, bytes: Vec<u8>) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn update(agent: &mut SlotAgent, package: &Path) {
    agent.stage(package).unwrap();
    assert!(matches!(agent.status(), Status::Staged { .. }));
    agent.reboot().unwrap();
    assert!(matches!(agent.status(), Status::SwitchPending { .. }));
    agent.boot().unwrap();
    assert_eq!(agent.status(), Status::Idle);
}

fn updated(from: &str, to: &str) -> Option<Outcome> {
    Some(Outcome::Updated {
        from: from.into(),
        to: to.into(),
    })
}

fn failed_reason(agent: &SlotAgent) -> String {
    match agent.outcome() {
        Some(Outcome::Failed { code, reason }) => {
            assert_eq!(code, codes::UPDATE_FAILED);
            reason
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn a_full_update_switches_slots_and_reports_the_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (image(1, 4096), image(2, 5000));
    let mut agent = SlotAgent::init(tmp.path().join("slots"), &old, "1.0").unwrap();
    agent.boot().unwrap();
    assert_eq!(agent.outcome(), None);
    let pkg = write_package(
        tmp.path(),
        "full.pkg",
        build_full(&spec("", "2.0"), &new, None),
    );

    update(&mut agent, &pkg);
    assert_eq!(agent.outcome(), updated("1.0", "2.0"));
    assert_eq!(agent.current_version(), "2.0");
    assert_eq!(agent.active_slot(), Slot::B);
    assert_eq!(agent.active_image().unwrap(), new);
    // The old firmware stays untouched in the other slot.
    assert_eq!(fs::read(agent.dir().join("slot-a.img")).unwrap(), old);
    assert_eq!(agent.boot_count(), 2);
}

#[test]
fn delta_updates_rebuild_from_the_running_slot_back_and_forth() {
    let tmp = tempfile::tempdir().unwrap();
    let v1 = image(3, 20_000);
    let v2 = edited(&v1, 4);
    let v3 = edited(&v2, 5);
    let mut agent = SlotAgent::init(tmp.path().join("slots"), &v1, "1.0").unwrap();

    let d12 = build_delta(&spec("1.0", "2.0"), &v1, &v2, None).unwrap();
    assert!(d12.len() < v2.len() / 2, "a delta, not a full image");
    update(&mut agent, &write_package(tmp.path(), "d12.pkg", d12));
    assert_eq!(agent.outcome(), updated("1.0", "2.0"));
    assert_eq!(agent.active_image().unwrap(), v2);
    agent.clear_outcome().unwrap();

    let d23 = build_delta(&spec("2.0", "3.0"), &v2, &v3, None).unwrap();
    update(&mut agent, &write_package(tmp.path(), "d23.pkg", d23));
    assert_eq!(agent.outcome(), updated("2.0", "3.0"));
    assert_eq!(agent.active_slot(), Slot::A);
    assert_eq!(agent.active_image().unwrap(), v3);
}

#[test]
fn a_failing_health_check_rolls_back_to_the_old_firmware() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (image(6, 3000), image(7, 3000));
    let dir = tmp.path().join("slots");
    SlotAgent::init(&dir, &old, "1.0").unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let mut agent =
        SlotAgent::open(&dir)
            .unwrap()
            .with_health_check(Box::new(move |img: &[u8]| {
                record.lock().unwrap().push(img.to_vec());
                Err("watchdog fired".to_string())
            }));
    let pkg = write_package(tmp.path(), "p", build_full(&spec("", "2.0"), &new, None));
    update(&mut agent, &pkg);

    assert!(failed_reason(&agent).contains("watchdog fired"));
    // The check saw the new image; the device runs the old one again.
    assert_eq!(*seen.lock().unwrap(), vec![new]);
    assert_eq!(agent.current_version(), "1.0");
    assert_eq!(agent.active_slot(), Slot::A);
    assert_eq!(agent.active_image().unwrap(), old);
    // A later boot keeps the outcome and the old firmware.
    agent.boot().unwrap();
    assert!(failed_reason(&agent).contains("watchdog fired"));
}

#[test]
fn the_default_check_refuses_bad_firmware_marked_images() {
    let tmp = tempfile::tempdir().unwrap();
    let old = image(8, 1000);
    let mut bad = b"BAD-FIRMWARE".to_vec();
    bad.extend(image(9, 1000));
    let mut agent = SlotAgent::init(tmp.path().join("slots"), &old, "1.0").unwrap();
    let pkg = write_package(tmp.path(), "bad", build_full(&spec("", "2.0"), &bad, None));
    update(&mut agent, &pkg);
    assert!(failed_reason(&agent).contains("BAD-FIRMWARE"));
    assert_eq!(agent.active_image().unwrap(), old);

    // A good package afterwards installs normally.
    let good = image(10, 1000);
    let pkg = write_package(
        tmp.path(),
        "good",
        build_full(&spec("", "2.1"), &good, None),
    );
    update(&mut agent, &pkg);
    assert_eq!(agent.outcome(), updated("1.0", "2.1"));
}

#[test]
fn a_slot_corrupted_before_the_boot_is_rolled_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (old, new) = (image(11, 2000), image(12, 2000));
    let mut agent = SlotAgent::init(tmp.path().join("slots"), &old, "1.0").unwrap();
    let pkg = write_package(tmp.path(), "p", build_full(&spec("", "2.0"), &new, None));
    agent.stage(&pkg).unwrap();
    agent.reboot().unwrap();

    let slot = agent.dir().join("slot-b.img");
    let mut bytes = fs::read(&slot).unwrap();
    bytes[1234] ^= 0x01;
    fs::write(&slot, bytes).unwrap();

    let mut agent = SlotAgent::open(agent.dir()).unwrap();
    agent.boot().unwrap();
    assert!(failed_reason(&agent).contains("digest"));
    assert_eq!(agent.current_version(), "1.0");
    assert_eq!(agent.active_image().unwrap(), old);
}

#[test]
fn the_outcome_survives_reopening_until_cleared() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slots");
    let mut agent = SlotAgent::init(&dir, &image(13, 100), "1.0").unwrap();
    let pkg = write_package(
        tmp.path(),
        "p",
        build_full(&spec("", "2.0"), &image(14, 100), None),
    );
    update(&mut agent, &pkg);
    drop(agent);

    let mut agent = SlotAgent::open(&dir).unwrap();
    assert_eq!(agent.outcome(), updated("1.0", "2.0"));
    agent.boot().unwrap();
    assert_eq!(agent.outcome(), updated("1.0", "2.0"));
    agent.clear_outcome().unwrap();
    assert_eq!(agent.outcome(), None);
    agent.clear_outcome().unwrap();
    drop(agent);

    let agent = SlotAgent::open(&dir).unwrap();
    assert_eq!(agent.outcome(), None);
    assert_eq!(agent.current_version(), "2.0");
    assert_eq!(agent.boot_count(), 2);
}

#[test]
fn a_delta_for_another_base_is_refused_at_stage_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let running = image(15, 8000);
    let other_base = edited(&running, 16);
    let target = edited(&other_base, 17);
    let dir = tmp.path().join("slots");
    let mut agent = SlotAgent::init(&dir, &running, "1.0").unwrap();
    let before = fs::read(dir.join("state")).unwrap();
    let delta = build_delta(&spec("1.0", "2.0"), &other_base, &target, None).unwrap();

    let err = agent
        .stage(&write_package(tmp.path(), "d", delta))
        .unwrap_err();
    assert_eq!(err.code, codes::CORRUPTED_PACKAGE, "{err}");
    assert_eq!(agent.status(), Status::Idle);
    assert_eq!(fs::read(dir.join("state")).unwrap(), before);
    assert!(!dir.join("slot-b.img").exists());
    assert_eq!(agent.reboot().unwrap_err().code, codes::CLIENT_ERROR);
    agent.boot().unwrap();
    assert_eq!(
        (agent.outcome(), agent.current_version()),
        (None, "1.0".into())
    );
}

#[test]
fn damaged_oversized_and_missing_packages_are_refused_with_their_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slots");
    let mut agent = SlotAgent::init(&dir, &image(18, 100), "1.0")
        .unwrap()
        .with_limits(Limits {
            max_image_len: 1000,
            max_package_len: 4000,
        });
    let mut bytes = build_full(&spec("", "2.0"), &image(19, 900), None);
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let err = agent
        .stage(&write_package(tmp.path(), "flip", bytes))
        .unwrap_err();
    assert_eq!(err.code, codes::CORRUPTED_PACKAGE, "{err}");

    let big = build_full(&spec("", "2.0"), &image(20, 1001), None);
    let err = agent
        .stage(&write_package(tmp.path(), "big", big))
        .unwrap_err();
    assert_eq!(err.code, codes::UPDATE_OUT_OF_MEMORY, "{err}");
    let huge = build_full(&spec("", "2.0"), &image(21, 5000), None);
    let err = agent
        .stage(&write_package(tmp.path(), "huge", huge))
        .unwrap_err();
    assert_eq!(err.code, codes::UPDATE_OUT_OF_MEMORY, "{err}");

    let err = agent.stage(&tmp.path().join("absent")).unwrap_err();
    assert_eq!(err.code, codes::UPDATE_FAILED, "{err}");
    assert_eq!(agent.status(), Status::Idle);
}

#[test]
fn calls_out_of_order_are_refused_and_a_pending_switch_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slots");
    let mut agent = SlotAgent::init(&dir, &image(22, 100), "1.0").unwrap();
    let pkg = write_package(
        tmp.path(),
        "p",
        build_full(&spec("", "2.0"), &image(23, 100), None),
    );
    agent.stage(&pkg).unwrap();
    agent.reboot().unwrap();
    agent.reboot().unwrap();
    assert_eq!(agent.stage(&pkg).unwrap_err().code, codes::CLIENT_ERROR);
    let agent = SlotAgent::open(&dir).unwrap();
    assert_eq!(
        agent.status(),
        Status::SwitchPending {
            version: "2.0".into()
        }
    );
}

#[test]
fn init_refuses_an_existing_agent_and_open_an_empty_or_damaged_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slots");
    SlotAgent::init(&dir, b"image", "1.0").unwrap();
    let err = SlotAgent::init(&dir, b"other", "9.9").unwrap_err();
    assert_eq!(err.code, codes::CLIENT_ERROR);
    assert_eq!(SlotAgent::open(&dir).unwrap().current_version(), "1.0");

    assert!(SlotAgent::open(tmp.path()).is_err());
    assert!(SlotAgent::init(tmp.path().join("x"), b"i", "1\n0").is_err());

    let state = dir.join("state");
    let text = fs::read_to_string(&state)
        .unwrap()
        .replace("boots 0", "boots 9");
    fs::write(&state, text).unwrap();
    let err = SlotAgent::open(&dir).unwrap_err();
    assert!(err.reason.contains("corrupt"), "{err}");
}

// ---- power loss: a child process killed at random instants ----

const CHILD: &str = env!("CARGO_BIN_EXE_update-agent-crash");

/// Runs the child on `dir`, kills it (SIGKILL) after `kill_after` unless it ends
/// first, and returns the steps it reported done.
fn run_child(dir: &Path, package: &Path, steps: &[&str], kill_after: Duration) -> Vec<String> {
    let mut child = Command::new(CHILD)
        .arg(dir)
        .arg(package)
        .args(steps)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + kill_after;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "child failed: {err}");
            break;
        }
        if Instant::now() >= deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    out.lines()
        .map(|l| l.trim_start_matches("done ").to_string())
        .collect()
}

/// Kills the child at random instants of an update, then boots and checks that a
/// vouched-for slot runs with an outcome that fits how far the child got.
#[test]
fn killed_at_random_instants_the_agent_always_comes_back_with_the_right_outcome() {
    let seed = seed("UPDATE_KILL_SEED");
    let mut rng = Rng(seed | 1);
    let tmp = tempfile::tempdir().unwrap();
    let old = image(30, 64 * 1024);
    let good = edited(&old, 31);
    let mut bad = b"BAD-FIRMWARE".to_vec();
    bad.extend_from_slice(&good);
    let packages = [
        (
            write_package(
                tmp.path(),
                "full",
                build_full(&spec("", "2.0"), &good, None),
            ),
            true,
            &good,
        ),
        (
            write_package(
                tmp.path(),
                "delta",
                build_delta(&spec("1.0", "2.0"), &old, &good, None).unwrap(),
            ),
            true,
            &good,
        ),
        (
            write_package(tmp.path(), "bad", build_full(&spec("", "2.0"), &bad, None)),
            false,
            &bad,
        ),
    ];

    // How long uninterrupted runs take, to spread the kills over them.
    let calib = tmp.path().join("calibration");
    SlotAgent::init(&calib, &old, "1.0").unwrap();
    let timed = |steps: &[&str]| {
        let started = Instant::now();
        let done = run_child(&calib, &packages[1].0, steps, Duration::from_secs(30));
        assert_eq!(done, steps);
        started.elapsed().as_micros() as u64 * 6 / 5
    };
    // The first run also warms the caches; measure a second one.
    timed(&["stage"]);
    let stage_span = timed(&["stage", "reboot"]);
    let boot_span = timed(&["boot"]);

    let (mut before_commit, mut after_commit, mut mid_switch) = (0, 0, 0);
    let rounds = 90;
    for round in 0..rounds {
        let (package, is_good, new_image) = &packages[round % packages.len()];
        let dir = tmp.path().join(format!("round-{round}"));
        let mut agent = SlotAgent::init(&dir, &old, "1.0").unwrap();
        // Even rounds: the kill lands in stage or reboot (or just after); odd rounds:
        // in the boot that switches.
        let (steps, span) = if round % 2 == 0 {
            (&["stage", "reboot", "boot"][..], stage_span)
        } else {
            agent.stage(package).unwrap();
            agent.reboot().unwrap();
            (&["boot"][..], boot_span)
        };
        drop(agent);
        let mut done = run_child(&dir, package, steps, Duration::from_micros(rng.below(span)));
        if steps.len() == 1 {
            done.insert(0, "reboot".into());
        }
        if rng.below(2) == 0 {
            // Power lost again during the boot that follows.
            let kill = Duration::from_micros(rng.below(boot_span));
            run_child(&dir, package, &["boot"], kill);
        }
        let committed = done.iter().any(|s| s == "reboot");
        let what = format!("round {round}, seed {seed}, child did {done:?}");

        let mut agent = SlotAgent::open(&dir).unwrap();
        if matches!(
            agent.status(),
            Status::SwitchPending { .. } | Status::Trial { .. }
        ) {
            mid_switch += 1;
        }
        agent.boot().unwrap();
        assert!(
            matches!(agent.status(), Status::Idle | Status::Staged { .. }),
            "{what}"
        );
        let running = agent.active_image().unwrap();
        match agent.outcome() {
            None => {
                before_commit += 1;
                assert!(!committed, "{what}");
                assert_eq!(agent.current_version(), "1.0", "{what}");
                assert!(running == old, "{what}");
                // Nothing happened: the update can be redone from here.
                if !matches!(agent.status(), Status::Staged { .. }) {
                    agent.stage(package).unwrap();
                }
                agent.reboot().unwrap();
                agent.boot().unwrap();
            }
            Some(_) => after_commit += 1,
        }
        let running = agent.active_image().unwrap();
        if *is_good {
            assert_eq!(agent.outcome(), updated("1.0", "2.0"), "{what}");
            assert!(&running == *new_image, "{what}");
        } else {
            assert!(failed_reason(&agent).contains("BAD-FIRMWARE"), "{what}");
            assert_eq!(agent.current_version(), "1.0", "{what}");
            assert!(running == old, "{what}");
        }
        assert!(!dir.join("state.tmp").exists() && !dir.join("slot-b.img.tmp").exists());
    }
    println!(
        "{before_commit} rounds killed before the commit point, {after_commit} after, \
         {mid_switch} of them before the switch was resolved"
    );
    let spread = before_commit > 0 && after_commit > 0 && mid_switch > 0;
    assert!(spread, "kills not spread, seed {seed}");
}
