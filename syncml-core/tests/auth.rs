//! Credentials, HMAC, the challenge rules and package #0, checked against the
//! specification's vectors, against an independent Python implementation, and through
//! whole encoded messages.

mod common;

use std::path::PathBuf;
use std::process::Command as Process;

use syncml_core::auth::{
    basic_data, cred_user, md5_data, AuthType, HmacHeader, Incoming, Nonce, NonceSource, Prover,
    ProverStep, UserKey, Verifier,
};
use syncml_core::notify::{Initiator, Notification, Package0, UiMode};
use syncml_core::*;

/// A deterministic nonce source: each nonce is 16 copies of a counter byte.
struct Counter(u8);

impl NonceSource for Counter {
    fn fill(&mut self, buf: &mut [u8]) -> Result<()> {
        self.0 = self.0.wrapping_add(1);
        buf.fill(self.0);
        Ok(())
    }
}

/// A message with no credentials and no HMAC.
const NO_PROOF: Incoming<'static> = Incoming {
    cred: None,
    loc_name: None,
    hmac: None,
    body: b"",
};

fn with_cred(c: &Cred) -> Incoming<'_> {
    Incoming {
        cred: Some(c),
        ..NO_PROOF
    }
}

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
            }
            other => panic!("unknown vector kind {other}"),
        }
    }
    let n = bodies().len();
    assert_eq!(seen.get("basic"), Some(&5));
    assert_eq!(seen.get("md5"), Some(&5));
    assert_eq!(seen.get("hmac"), Some(&(5 * n)));
    assert_eq!(seen.get("pkg0"), Some(&4));
}

const DEVICE: &str = "IMEI:493005100592800";
const SERVER: &str = "https://dm.example.com/dm";

/// Package 1 of a client, with whatever credentials the prover supplies.
fn package1(p: &Prover) -> Vec<u8> {
    let mut b = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER);
    b.source_name(p.user());
    if let Some(c) = p.cred() {
        b.cred(c);
    }
    b.alert_code(AlertCode::ClientInitiated);
    encode(&b.finish(), Encoding::Wbxml).unwrap()
}

/// The server's reply to `received` carrying the verdict in the header Status.
fn reply(received: &SyncMl, verdict: &auth::Verdict) -> Status {
    let mut b = MessageBuilder::reply_to(&received.hdr, 1);
    b.status_for_header_with(verdict.status, verdict.chal.clone());
    let bytes = encode(&b.finish(), Encoding::Wbxml).unwrap();
    match decode(&bytes).unwrap().body.commands.remove(0) {
        Command::Status(s) => s,
        other => panic!("expected the header Status, got {other:?}"),
    }
}

/// One round trip of package 1 through both encodings and both state machines.
fn exchange(p: &mut Prover, v: &mut Verifier, rng: &mut Counter) -> (auth::Verdict, ProverStep) {
    let bytes = package1(p);
    let msg = decode(&bytes).unwrap();
    let verdict = v
        .check(&Incoming::new(&msg.hdr, None, &bytes), rng)
        .unwrap();
    let status = reply(&msg, &verdict);
    let step = p.on_header_status(&status).unwrap();
    (verdict, step)
}

#[test]
fn md5_sessions_use_a_fresh_nonce_each() {
    let mut rng = Counter(0);
    let key = UserKey::new("Bruce2", "OhBehave");
    let stored = Nonce::from_bytes(b"initial".to_vec());

    // Session 1: the device holds a stale nonce and no credentials are configured yet.
    let mut v = Verifier::new(AuthType::Md5, key.clone(), stored.clone());
    let mut p = Prover::new("Bruce2", "OhBehave", AuthType::Basic, Nonce::default());
    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(
        verdict.status,
        StatusCode::InvalidCredentials,
        "basic is weaker"
    );
    assert_eq!(step, ProverStep::Retry);
    assert_eq!(p.auth_type(), AuthType::Md5, "the challenge sets the type");
    let n1 = v.next_nonce().clone();
    assert_eq!(p.next_nonce(), &n1);
    assert_ne!(n1, stored);

    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(verdict.status, StatusCode::AuthenticationAccepted);
    assert_eq!(step, ProverStep::Authenticated);
    let n2 = v.next_nonce().clone();
    assert_ne!(n2, n1, "212 issues the nonce for the next session");
    assert_eq!(p.next_nonce(), &n2);
    assert_eq!(
        p.cred(),
        None,
        "no credentials needed for the rest of the session"
    );
    assert_eq!(v.check(&NO_PROOF, &mut rng).unwrap().status, StatusCode::Ok);

    // Session 2 starts with the stored nonces: accepted at once, with yet another nonce.
    let replay = package1(&Prover::new(
        "Bruce2",
        "OhBehave",
        AuthType::Md5,
        n1.clone(),
    ));
    let mut v = Verifier::new(AuthType::Md5, key.clone(), n2.clone());
    let mut p = Prover::new("Bruce2", "OhBehave", AuthType::Md5, n2.clone());
    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(
        (verdict.status, step),
        (
            StatusCode::AuthenticationAccepted,
            ProverStep::Authenticated
        )
    );
    assert_ne!(v.next_nonce(), &n2);

    // Session 1's credentials replayed in a new session are refused.
    let mut v = Verifier::new(AuthType::Md5, key, v.next_nonce().clone());
    let msg = decode(&replay).unwrap();
    let verdict = v
        .check(&Incoming::new(&msg.hdr, None, &replay), &mut rng)
        .unwrap();
    assert_eq!(verdict.status, StatusCode::InvalidCredentials);
    assert_eq!(verdict.problem, Some(AuthProblem::Mismatch));
}

#[test]
fn refusals_carry_a_challenge_with_a_fresh_nonce() {
    let mut rng = Counter(0);
    let mut v = Verifier::new(AuthType::Md5, UserKey::new("u", "p"), Nonce::default());
    let first = v.check(&NO_PROOF, &mut rng).unwrap();
    assert_eq!(first.status, StatusCode::MissingCredentials);
    let meta = &first.chal.as_ref().unwrap().meta;
    assert_eq!(meta.type_.as_deref(), Some("syncml:auth-md5"));
    assert_eq!(meta.format.as_deref(), Some("b64"));
    let n1 = meta.next_nonce.clone().unwrap();
    assert!(!first.give_up);
    let bad = auth::md5_cred(&UserKey::new("u", "wrong"), v.next_nonce());
    let second = v.check(&with_cred(&bad), &mut rng).unwrap();
    assert_eq!(second.status, StatusCode::InvalidCredentials);
    let n2 = second.chal.unwrap().meta.next_nonce.unwrap();
    assert_ne!(n1, n2);
    assert!(!second.give_up);
    let third = v.check(&NO_PROOF, &mut rng).unwrap();
    assert!(third.give_up, "the third refusal ends the session");
    assert!(!third.accepted());
}

#[test]
fn basic_challenges_have_no_nonce_and_stronger_types_are_accepted() {
    let mut rng = Counter(0);
    let key = UserKey::new("u", "p");
    let mut v = Verifier::new(AuthType::Basic, key.clone(), Nonce::default());
    let refused = v.check(&NO_PROOF, &mut rng).unwrap();
    let meta = refused.chal.unwrap().meta;
    assert_eq!(meta.type_.as_deref(), Some("syncml:auth-basic"));
    assert_eq!(meta.next_nonce, None);
    let md5 = auth::md5_cred(&key, v.next_nonce());
    let ok = v.check(&with_cred(&md5), &mut rng).unwrap();
    assert_eq!(ok.status, StatusCode::AuthenticationAccepted);
    assert_eq!(v.authenticated(), Some(AuthType::Md5));
}

#[test]
fn the_type_never_changes_within_a_session() {
    let mut rng = Counter(0);
    let key = UserKey::new("u", "p");
    let start = Nonce::from_bytes(vec![7; 16]);
    let mut v = Verifier::new(AuthType::Basic, key.clone(), start.clone());
    let md5 = auth::md5_cred(&key, &start);
    let ok = v.check(&with_cred(&md5), &mut rng).unwrap();
    assert_eq!(ok.status, StatusCode::AuthenticationAccepted);
    // Basic would satisfy the policy, but the session chose MD5.
    let basic = auth::basic_cred("u", "p");
    let switched = v.check(&with_cred(&basic), &mut rng).unwrap();
    assert_eq!(switched.status, StatusCode::InvalidCredentials);
    assert!(matches!(
        switched.problem,
        Some(AuthProblem::TypeChange { .. })
    ));
    assert_eq!(
        switched.chal.unwrap().meta.type_.as_deref(),
        Some("syncml:auth-md5"),
        "the challenge keeps the session's type"
    );
    assert_eq!(v.authenticated(), None);
    let again = v.check(&with_cred(&basic), &mut rng).unwrap();
    assert_eq!(again.status, StatusCode::InvalidCredentials);

    // The prover side: once accepted, a challenge of another type is an error.
    let mut p = Prover::new("u", "p", AuthType::Md5, start);
    let mut status = status_212();
    p.on_header_status(&status).unwrap();
    status.data = StatusCode::InvalidCredentials;
    status.chal = Some(auth::challenge(AuthType::Basic, &Nonce::default()));
    assert!(matches!(
        p.on_header_status(&status),
        Err(Error::Auth(AuthProblem::TypeChange { .. }))
    ));
}

fn status_212() -> Status {
    Status {
        cmd_id: 1,
        msg_ref: Some(1),
        cmd_ref: 0,
        cmd: "SyncHdr".into(),
        target_ref: vec![],
        source_ref: vec![],
        cred: None,
        chal: None,
        data: StatusCode::AuthenticationAccepted,
        items: vec![],
        extra: vec![],
    }
}

#[test]
fn prover_refuses_a_nonce_challenge_without_a_nonce() {
    let mut p = Prover::new("u", "p", AuthType::Md5, Nonce::default());
    let mut status = status_212();
    status.data = StatusCode::MissingCredentials;
    let mut chal = auth::challenge(AuthType::Md5, &Nonce::default());
    chal.meta.next_nonce = None;
    status.chal = Some(chal);
    assert_eq!(
        p.on_header_status(&status),
        Err(Error::Auth(AuthProblem::NoNonce("syncml:auth-md5")))
    );
    // And it gives up after repeated refusals.
    status.chal = None;
    let steps: Vec<ProverStep> = (0..4)
        .map(|_| p.on_header_status(&status).unwrap())
        .collect();
    assert_eq!(steps[..3], [ProverStep::Retry; 3]);
    assert_eq!(steps[3], ProverStep::GiveUp);
}

#[test]
fn hmac_covers_every_message() {
    let mut rng = Counter(0);
    let key = UserKey::new("srv", "pw");
    let n0 = Nonce::from_bytes(vec![1; 16]);
    let mut v = Verifier::new(AuthType::Hmac, key.clone(), n0.clone());
    let mut p = Prover::new("srv", "pw", AuthType::Hmac, n0);
    assert_eq!(p.cred(), None, "HMAC never goes in Cred");

    let body1 = b"<SyncML>message 1</SyncML>".to_vec();
    let h1 = p.hmac_header(&body1).unwrap();
    let msg = |h: Option<&str>, body: &[u8]| {
        let h = h.map(str::to_owned);
        (h, body.to_vec())
    };
    let check = |v: &mut Verifier, rng: &mut Counter, (h, body): (Option<String>, Vec<u8>)| {
        let inc = Incoming {
            cred: None,
            loc_name: None,
            hmac: h.as_deref(),
            body: &body,
        };
        v.check(&inc, rng).unwrap()
    };
    let first = check(&mut v, &mut rng, msg(Some(&h1), &body1));
    assert_eq!(first.status, StatusCode::AuthenticationAccepted);
    let mut st = status_212();
    st.chal = first.chal.clone();
    p.on_header_status(&st).unwrap();
    assert_eq!(p.next_nonce(), v.next_nonce());

    // The next message is MACed with the fresh nonce; the session's nonce still works.
    let body2 = b"<SyncML>message 2</SyncML>".to_vec();
    let h2 = p.hmac_header(&body2).unwrap();
    assert_eq!(
        check(&mut v, &mut rng, msg(Some(&h2), &body2)).status,
        StatusCode::Ok
    );
    assert_eq!(
        check(&mut v, &mut rng, msg(Some(&h1), &body1)).status,
        StatusCode::Ok
    );

    // A message without a MAC, or with an altered body, is refused.
    assert_eq!(
        check(&mut v, &mut rng, msg(None, &body2)).status,
        StatusCode::MissingCredentials
    );
    let mut v2 = Verifier::new(AuthType::Hmac, key, Nonce::from_bytes(vec![1; 16]));
    let mut tampered = body1.clone();
    tampered[3] ^= 1;
    let refused = check(&mut v2, &mut rng, msg(Some(&h1), &tampered));
    assert_eq!(refused.status, StatusCode::InvalidCredentials);
    assert_eq!(refused.problem, Some(AuthProblem::Mismatch));
    let garbled = check(&mut v2, &mut rng, msg(Some("mac=1"), &body1));
    assert!(matches!(garbled.problem, Some(AuthProblem::HmacHeader(_))));
}

#[test]
fn double_b64_nonce_quirk_is_opt_in() {
    let mut rng = Counter(0);
    let key = UserKey::new("u", "p");
    let nonce = Nonce::from_bytes(vec![0xAB; 16]);
    // The peer computed its digest over the nonce's base64 text.
    let quirky = auth::md5_cred(&key, &nonce.b64_text());
    let inc = Incoming {
        cred: Some(&quirky),
        loc_name: Some("u"),
        hmac: None,
        body: b"",
    };
    let mut strict = Verifier::new(AuthType::Md5, key.clone(), nonce.clone());
    assert_eq!(
        strict.check(&inc, &mut rng).unwrap().status,
        StatusCode::InvalidCredentials
    );
    let mut lenient = Verifier::new(AuthType::Md5, key, nonce).accept_double_b64_nonce(true);
    assert_eq!(
        lenient.check(&inc, &mut rng).unwrap().status,
        StatusCode::AuthenticationAccepted
    );
}

#[test]
fn the_claimed_user_is_found_in_the_header() {
    let key = UserKey::new("Bruce2", "OhBehave");
    let mut b = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER);
    b.cred(auth::basic_cred("Bruce2", "OhBehave"));
    assert_eq!(cred_user(&b.finish().hdr).as_deref(), Some("Bruce2"));
    let mut b = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER);
    b.source_name("Bruce2")
        .cred(auth::md5_cred(&key, &Nonce::default()));
    assert_eq!(cred_user(&b.finish().hdr).as_deref(), Some("Bruce2"));
    let b = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER).finish();
    assert_eq!(cred_user(&b.hdr), None);
}
