//! End to end: the `dm-client` binary against a scripted DM server and a package
//! server over real HTTP, through FUMO and through the extension commands, and the
//! same with the client killed at random instants ("power loss") until it reports.

mod common;

use std::path::Path;
use std::process::{Command as Proc, Stdio};
use std::time::{Duration, Instant};

use common::dm::DmServer;
use common::http::{Route, Server};
use common::{dm_client, seed, text, Rng};
use syncml_core::package::{build_delta, build_full, SigningKey, Spec};
use syncml_core::{AlertCode, Command, Item, ItemCmd, Location};

const BIN: &str = env!("CARGO_BIN_EXE_dm-client");
const MODEL: &str = "dmrs-sim";

fn init(state: &Path, server: &DmServer, key: &SigningKey, extra: &[&str]) {
    let pubkey = key.public().to_b64();
    let url = server.url();
    let mut args = vec![
        "init",
        "--server",
        &url,
        "--device-id",
        "IMEI:1",
        "--password",
        "pw",
        "--model",
        MODEL,
        "--firmware-version",
        "1.0",
        "--fw-key",
        &pubkey,
    ];
    args.extend_from_slice(extra);
    let o = dm_client(state, &args);
    assert!(o.status.success(), "{}", text(&o));
}

/// The image `dm-client init` starts a device with (see `Device::init`).
fn first_image() -> Vec<u8> {
    format!("{MODEL} firmware 1.0\n").into_bytes()
}

fn image_v2() -> Vec<u8> {
    let mut v = first_image();
    v.extend((0..300_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8));
    v
}

fn spec(to: &str) -> Spec {
    Spec {
        model: MODEL.into(),
        component: "firmware".into(),
        from_version: "1.0".into(),
        to_version: to.into(),
    }
}

fn fumo_job(url: &str, op: &str, correlator: &str) -> Vec<Command> {
    vec![
        Command::Replace(ItemCmd::new(vec![Item::target(format!(
            "./FUMO/1/{op}/PkgURL"
        ))
        .with_data(url)])),
        Command::Exec(ItemCmd {
            correlator: Some(correlator.into()),
            ..ItemCmd::new(vec![Item::target(format!("./FUMO/1/{op}"))])
        }),
    ]
}

/// The FUMO results the server received: (correlator, alert type, result, mark).
fn fumo_results(server: &DmServer) -> Vec<(String, String, String, String)> {
    server
        .state()
        .reports
        .iter()
        .filter_map(|c| match c {
            Command::Alert(a) if a.data == Some(AlertCode::GenericAlert) => {
                let it = a.items.first()?;
                let meta = it.meta.as_deref()?;
                Some((
                    a.correlator.clone().unwrap_or_default(),
                    meta.type_.clone().unwrap_or_default(),
                    it.data_str().unwrap_or_default().to_owned(),
                    meta.mark.clone().unwrap_or_default(),
                ))
            }
            _ => None,
        })
        .collect()
}

fn version(state: &Path) -> String {
    let o = dm_client(state, &["status"]);
    text(&o)
        .lines()
        .find_map(|l| l.strip_prefix("firmware version: "))
        .unwrap_or_default()
        .to_owned()
}

/// A device trusting `trusted`, a package 1.0 -> 2.0 signed by `signer` on a file
/// server, and a DM server with a FUMO DownloadAndUpdate job for it queued.
fn fumo_device(
    trusted: &SigningKey,
    signer: &SigningKey,
    correlator: &str,
) -> (Server, DmServer, tempfile::TempDir) {
    let files = Server::http();
    let pkg = build_full(&spec("2.0"), &image_v2(), Some(signer));
    files.route("/fw.pkg", Route::new(pkg));
    let server = DmServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), &server, trusted, &[]);
    server.queue(fumo_job(
        &files.url("/fw.pkg"),
        "DownloadAndUpdate",
        correlator,
    ));
    (files, server, dir)
}

#[test]
fn fumo_download_and_update_end_to_end() {
    let key = SigningKey::generate().unwrap();
    let (_files, server, dir) = fumo_device(&key, &key, "job-1");

    let o = dm_client(dir.path(), &["run", "--yes"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("now running 2.0"), "{}", text(&o));
    assert_eq!(version(dir.path()), "2.0");
    let results = fumo_results(&server);
    assert_eq!(results.len(), 1, "{results:?}");
    let (corr, ty, code, mark) = &results[0];
    assert_eq!(corr, "job-1");
    assert_eq!(
        ty,
        "org.openmobilealliance.dm.firmwareupdate.downloadandupdate"
    );
    assert_eq!(code, "200");
    assert_ne!(mark, "critical");
    assert!(server.state().job_statuses.contains(&("Exec".into(), 202)));
    // Nothing more to report: a later run sends none.
    let o = dm_client(dir.path(), &["run"]);
    assert!(o.status.success());
    assert_eq!(fumo_results(&server).len(), 1);
}

#[test]
fn a_package_signed_by_another_key_is_refused_and_reported() {
    let key = SigningKey::generate().unwrap();
    let stranger = SigningKey::generate().unwrap();
    let (_files, server, dir) = fumo_device(&key, &stranger, "job-2");
    let o = dm_client(dir.path(), &["run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(version(dir.path()), "1.0");
    let results = fumo_results(&server);
    assert_eq!(results.len(), 1, "{results:?}");
    assert_eq!(results[0].2, "404", "failed validation");
    assert_eq!(results[0].3, "critical");
}

#[test]
fn extension_commands_download_verify_save_apply_then_confirm() {
    let key = SigningKey::generate().unwrap();
    let files = Server::http();
    let pkg = build_delta(&spec("2.1"), &first_image(), &image_v2(), Some(&key)).unwrap();
    files.route("/delta.pkg", Route::new(pkg));
    let server = DmServer::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), &server, &key, &["--encoding", "wbxml"]);
    let url = files.url("/delta.pkg");
    let slot = "./FWUpdate/1";
    let ext = |items| ItemCmd::new(items);
    server.queue(vec![
        Command::GetFirmwareUpdate(ext(vec![Item::target(format!("{slot}/PkgData"))
            .with_data(format!("DL_URL={url}"))
            .with_data("DL_Prompt=0")])),
        Command::VerifyFirmwareUpdate(ext(vec![Item {
            source: Some(Location::new(format!("{slot}/PkgURL"))),
            target: Some(Location::new(format!("{slot}/PkgStatus"))),
            ..Item::default()
        }])),
        Command::SaveFirmwareUpdate(ext(vec![
            Item::source(format!("{slot}/PkgData")).with_data("Address=0x00089F")
        ])),
        Command::ApplyFirmwareUpdate(ext(vec![Item::source(format!("{slot}/PkgData"))])),
    ]);
    let o = dm_client(dir.path(), &["run"]);
    assert!(o.status.success(), "{}", text(&o));
    let st = server.state().job_statuses.clone();
    for (cmd, code) in [
        ("GetFirmwareUpdate", 200),
        ("VerifyFirmwareUpdate", 200),
        ("SaveFirmwareUpdate", 200),
        ("ApplyFirmwareUpdate", 202),
    ] {
        assert!(st.contains(&(cmd.into(), code)), "{cmd} {code} in {st:?}");
    }
    assert_eq!(version(dir.path()), "2.1");
    let confirms: Vec<_> = server
        .state()
        .reports
        .iter()
        .filter_map(|c| match c {
            Command::ConfirmFirmwareUpdate(ic) => Some((
                ic.items[0].source.clone().unwrap().loc_uri,
                ic.items[0].data_str().unwrap_or_default().to_owned(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(confirms, [(slot.to_owned(), "200".to_owned())]);
    // The device spoke WBXML as configured.
    assert!(server
        .state()
        .received
        .iter()
        .all(|m| m.hdr.ver_dtd == "1.2"));
}

/// Runs `dm-client run` and kills it after `after`; returns whether it was killed.
fn run_and_kill(state: &Path, after: Duration) -> bool {
    let mut child = Proc::new(BIN)
        .arg("--state")
        .arg(state)
        .args(["run"])
        .env("DM_CLIENT_STEP_PAUSE_MS", "120")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < after {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let _ = child.kill();
    let _ = child.wait();
    true
}

#[test]
fn power_loss_at_random_instants_still_ends_in_the_right_report() {
    let seed = seed("FOTA_KILL_SEED");
    let mut rng = Rng(seed);
    let key = SigningKey::generate().unwrap();
    let files = Server::http();
    // Throttled, so that kills land during the download too.
    let good = build_full(&spec("2.0"), &image_v2(), Some(&key));
    files.route("/good.pkg", Route::new(good).throttle(1_000_000));
    let mut bad_image = b"BAD-FIRMWARE".to_vec();
    bad_image.extend_from_slice(&image_v2());
    files.route(
        "/bad.pkg",
        Route::new(build_full(&spec("2.0"), &bad_image, Some(&key))).throttle(1_000_000),
    );
    let rounds = 12;
    let mut killed = 0;
    // The FUMO states the kills left behind: they must cover the download.
    let mut seen = std::collections::BTreeSet::new();
    for round in 0..rounds {
        // Every third round installs firmware that fails its boot check.
        let bad = round % 3 == 2;
        let server = DmServer::start().unwrap();
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &server, &key, &[]);
        let url = files.url(if bad { "/bad.pkg" } else { "/good.pkg" });
        server.queue(fumo_job(&url, "DownloadAndUpdate", &format!("r{round}")));
        // Up to three kills at random instants, then runs until the report is in.
        for _ in 0..3 {
            if run_and_kill(dir.path(), Duration::from_millis(rng.below(1200))) {
                killed += 1;
                seen.insert(fumo_state(dir.path()));
            }
        }
        let mut runs = 0;
        while fumo_results(&server).is_empty() {
            runs += 1;
            assert!(
                runs <= 4,
                "round {round}: no report after {runs} runs (seed {seed})"
            );
            let o = dm_client(dir.path(), &["run"]);
            assert!(o.status.success(), "round {round}: {}", text(&o));
        }
        let results = fumo_results(&server);
        let codes: Vec<&str> = results.iter().map(|r| r.2.as_str()).collect();
        assert!(
            results.iter().all(|r| r.0 == format!("r{round}")),
            "round {round}: {results:?}"
        );
        // The same outcome every time it was sent (a report may be resent if the
        // kill came after the server had it).
        if bad {
            assert!(
                codes.iter().all(|c| *c == "410"),
                "round {round}: {codes:?} (seed {seed})"
            );
            assert_eq!(version(dir.path()), "1.0", "round {round}: rolled back");
        } else {
            assert!(
                codes.iter().all(|c| *c == "200"),
                "round {round}: {codes:?} (seed {seed})"
            );
            assert_eq!(version(dir.path()), "2.0", "round {round}");
        }
        // The device's tree is intact.
        let o = Proc::new(env!("CARGO_BIN_EXE_dm-client"))
            .arg("--state")
            .arg(dir.path())
            .arg("status")
            .output()
            .unwrap();
        assert!(o.status.success(), "round {round}: {}", text(&o));
    }
    eprintln!("kills: {killed}, states left by them: {seen:?}");
    assert!(killed >= rounds, "kills landed: {killed}");
    // Kills left the slot downloading and in the update steps (50 ready, 60
    // progressing) or past them.
    assert!(
        seen.contains(&30) && seen.iter().any(|s| *s >= 50),
        "kills covered too little: {seen:?} (seed {seed})"
    );
}

/// The State of ./FUMO/1 as `dm-client status` shows it (after the boot it does).
fn fumo_state(state: &Path) -> u16 {
    let o = dm_client(state, &["status"]);
    text(&o)
        .lines()
        .find_map(|l| l.strip_prefix("./FUMO/1/State: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}
