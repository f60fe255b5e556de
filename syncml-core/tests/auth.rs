//! Credentials, HMAC and package #0 checked against the specification's vectors and
//! against an independent Python implementation (scripts/auth-vectors.py).

mod common;

use std::path::PathBuf;
use std::process::Command as Process;

use syncml_core::auth::{basic_data, md5_data, HmacHeader, Nonce, UserKey};
use syncml_core::notify::{self, Initiator, NonceUsed, Notification, Package0, UiMode};

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn text(hex: &str) -> String {
    String::from_utf8(unhex(hex)).unwrap()
}

#[test]
fn specification_vectors() {
    assert_eq!(basic_data("Bruce2", "OhBehave"), "QnJ1Y2UyOk9oQmVoYXZl");
    let key = UserKey::new("Bruce2", "OhBehave");
    let nonce = Nonce::from_b64("Tm9uY2U=").unwrap(); // "Nonce"
    assert_eq!(md5_data(&key, &nonce), "Zz6EivR3yeaaENcRN6lpAQ==");
}

/// The bodies the HMAC vectors cover: XML fixtures and the recorded WBXML vectors.
fn bodies() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fixtures::messages("xml").into_iter().take(4).collect();
    let mut wbxml: Vec<PathBuf> = std::fs::read_dir(common::vectors_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wbxml"))
        .collect();
    wbxml.sort();
    files.extend(wbxml.into_iter().take(3));
    assert!(files.len() >= 5, "too few bodies: {files:?}");
    files
}

#[test]
fn independent_python_vectors() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/auth-vectors.py");
    let out = Process::new("python3")
        .arg(script)
        .args(bodies())
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3 {script}: {e}; install python3"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    let mut seen = std::collections::BTreeMap::<&str, usize>::new();
    let mut reset_rows = 0;
    for line in lines.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        *seen.entry(f[0]).or_default() += 1;
        match f[0] {
            "basic" => assert_eq!(basic_data(&text(f[1]), &text(f[2])), f[3], "{line}"),
            "md5" => {
                let key = UserKey::new(&text(f[1]), &text(f[2]));
                assert_eq!(md5_data(&key, &Nonce::from_bytes(unhex(f[3]))), f[4]);
            }
            "hmac" => {
                let key = UserKey::new(&text(f[1]), &text(f[2]));
                let nonce = Nonce::from_bytes(unhex(f[3]));
                let body = std::fs::read(f[4]).unwrap();
                let header = text(f[5]);
                let ours = HmacHeader::compute(&key, &nonce, &body);
                assert_eq!(ours.to_string(), header, "{}", f[4]);
                let parsed = HmacHeader::parse(&header).unwrap();
                assert_eq!(parsed.verify(&key, &nonce, &body), Ok(()));
            }
            "pkg0" => {
                let id = text(f[1]);
                let key = UserKey::new(&id, &text(f[2]));
                let nonce = Nonce::from_bytes(unhex(f[3]));
                let n = Notification {
                    version: f[4].parse().unwrap(),
                    ui_mode: match f[5] {
                        "0" => UiMode::NotSpecified,
                        "1" => UiMode::Background,
                        "2" => UiMode::Informative,
                        _ => UiMode::UserInteraction,
                    },
                    initiator: if f[6] == "1" {
                        Initiator::Server
                    } else {
                        Initiator::Client
                    },
                    session_id: f[7].parse().unwrap(),
                    server_id: id,
                    vendor: unhex(f[8]),
                };
                let want = unhex(f[9]);
                assert_eq!(n.build(&key, &nonce).unwrap(), want, "{line}");
                let p = Package0::parse(&want).unwrap();
                assert_eq!(p.notification, n);
                assert_eq!(p.verify(&key, &nonce), Ok(()));
                if nonce.as_bytes() == notify::RESET_NONCE {
                    let stale = Nonce::from_bytes(b"stale".to_vec());
                    assert_eq!(p.verify_or_reset(&key, &stale), Ok(NonceUsed::Reset));
                    reset_rows += 1;
                }
            }
            other => panic!("unknown vector kind {other}"),
        }
    }
    let n = bodies().len();
    assert_eq!(seen.get("basic"), Some(&5));
    assert_eq!(seen.get("md5"), Some(&5));
    assert_eq!(seen.get("hmac"), Some(&(5 * n)));
    assert_eq!(seen.get("pkg0"), Some(&5));
    assert_eq!(
        reset_rows, 1,
        "one package #0 is signed with the reset nonce"
    );
}
