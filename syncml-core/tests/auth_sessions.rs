//! The challenge rules of a session: a `Prover` and a `Verifier` talking through whole
//! encoded messages, and the refusals each side must make.

use syncml_core::auth::{
    self, AuthType, HmacHeader, Incoming, Nonce, NonceSource, Prover, ProverStep, UserKey, Verdict,
    Verifier,
};
use syncml_core::*;

mod common;
use common::header_status as status;

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

fn with_hmac<'a>(h: &'a str, body: &'a [u8]) -> Incoming<'a> {
    Incoming {
        hmac: Some(h),
        body,
        ..NO_PROOF
    }
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

/// The Status for the SyncHdr the verdict yields, after a trip through WBXML.
fn header_status(received: &SyncMl, verdict: &Verdict) -> Status {
    let mut b = MessageBuilder::reply_to(&received.hdr, 1);
    b.status_for_header_with(verdict.status, verdict.chal.clone());
    let bytes = encode(&b.finish(), Encoding::Wbxml).unwrap();
    match decode(&bytes).unwrap().body.commands.remove(0) {
        Command::Status(s) => s,
        other => panic!("expected the header Status, got {other:?}"),
    }
}

/// Package 1 through both encodings and both state machines.
fn exchange(p: &mut Prover, v: &mut Verifier, rng: &mut Counter) -> (Verdict, ProverStep) {
    let bytes = package1(p);
    let msg = decode(&bytes).unwrap();
    let verdict = v
        .check(&Incoming::new(&msg.hdr, None, &bytes), rng)
        .unwrap();
    let step = p.on_header_status(&header_status(&msg, &verdict)).unwrap();
    (verdict, step)
}

#[test]
fn md5_sessions_use_a_fresh_nonce_each() {
    let mut rng = Counter(0);
    let key = UserKey::new("Bruce2", "OhBehave");
    let stored = Nonce::from_bytes(b"initial".to_vec());

    // Session 1: the device holds a stale nonce.
    let mut v = Verifier::new(AuthType::Md5, key.clone(), stored);
    let mut p = Prover::new(
        "Bruce2",
        "OhBehave",
        AuthType::Md5,
        Nonce::from_bytes(*b"old"),
    );
    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(verdict.status, StatusCode::InvalidCredentials);
    assert_eq!(verdict.problem, Some(AuthProblem::Mismatch));
    assert_eq!(step, ProverStep::ResendPackage1);
    let n1 = v.next_nonce().clone();
    assert_eq!(
        verdict.issued_nonce.as_ref(),
        Some(&n1),
        "store before answering"
    );
    assert_eq!(p.next_nonce(), &n1);

    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(verdict.status, StatusCode::AuthenticationAccepted);
    assert_eq!(step, ProverStep::Authenticated);
    let n2 = v.next_nonce().clone();
    assert_ne!(n2, n1, "212 issues the nonce for the next session");
    assert_eq!(verdict.issued_nonce.as_ref(), Some(&n2));
    assert_eq!(p.next_nonce(), &n2);
    assert_eq!(p.cred(), None, "no credentials for the rest of the session");
    let later = v.check(&NO_PROOF, &mut rng).unwrap();
    assert_eq!((later.status, later.chal), (StatusCode::Ok, None));

    // Session 2 starts with the stored nonces: accepted at once, with yet another.
    let replay = package1(&Prover::new("Bruce2", "OhBehave", AuthType::Md5, n1));
    let mut v = Verifier::new(AuthType::Md5, key.clone(), n2.clone());
    let mut p = Prover::new("Bruce2", "OhBehave", AuthType::Md5, n2.clone());
    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(verdict.status, StatusCode::AuthenticationAccepted);
    assert_eq!(step, ProverStep::Authenticated);
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
fn a_weaker_type_is_refused_and_challenged_with_the_required_one() {
    let mut rng = Counter(0);
    let mut v = Verifier::new(AuthType::Md5, UserKey::new("u", "p"), Nonce::default());
    let mut p = Prover::new("u", "p", AuthType::Basic, Nonce::default());
    let (verdict, step) = exchange(&mut p, &mut v, &mut rng);
    assert!(matches!(
        verdict.problem,
        Some(AuthProblem::WrongType { .. })
    ));
    assert_eq!(step, ProverStep::ResendPackage1);
    assert_eq!(p.auth_type(), AuthType::Md5, "challenged up to MD5");
    let (verdict, _) = exchange(&mut p, &mut v, &mut rng);
    assert_eq!(verdict.status, StatusCode::AuthenticationAccepted);
}

#[test]
fn refusals_carry_a_challenge_with_a_fresh_nonce_and_giving_up_sticks() {
    let mut rng = Counter(0);
    let key = UserKey::new("u", "p");
    let mut v = Verifier::new(AuthType::Md5, key.clone(), Nonce::default());
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
    // Even good credentials are refused once the verifier has given up.
    let good = auth::md5_cred(&key, v.next_nonce());
    let after = v.check(&with_cred(&good), &mut rng).unwrap();
    assert_eq!(after.problem, Some(AuthProblem::TooManyAttempts));
    assert!(after.give_up && !after.accepted());
}

#[test]
fn basic_challenges_carry_a_nonce_too_and_stronger_types_are_accepted() {
    let mut rng = Counter(0);
    let key = UserKey::new("u", "p");
    let mut v = Verifier::new(AuthType::Basic, key.clone(), Nonce::default());
    let refused = v.check(&NO_PROOF, &mut rng).unwrap();
    let meta = refused.chal.unwrap().meta;
    assert_eq!(meta.type_.as_deref(), Some("syncml:auth-basic"));
    assert_eq!(meta.format.as_deref(), Some("b64"));
    assert_eq!(meta.next_nonce, Some(v.next_nonce().to_b64()));
    let md5 = auth::md5_cred(&key, v.next_nonce());
    let ok = v.check(&with_cred(&md5), &mut rng).unwrap();
    assert_eq!(ok.status, StatusCode::AuthenticationAccepted);
    assert_eq!(v.authenticated(), Some(AuthType::Md5));

    // Unless the verifier accepts exactly one type.
    let mut only = Verifier::new(AuthType::Basic, key.clone(), Nonce::default()).only();
    let md5 = auth::md5_cred(&key, only.next_nonce());
    let refused = only.check(&with_cred(&md5), &mut rng).unwrap();
    assert!(matches!(
        refused.problem,
        Some(AuthProblem::WrongType { .. })
    ));
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
    p.on_header_status(&status(StatusCode::AuthenticationAccepted, None))
        .unwrap();
    let hmac = auth::challenge(AuthType::Hmac, &Nonce::default());
    assert!(matches!(
        p.on_header_status(&status(StatusCode::InvalidCredentials, Some(hmac))),
        Err(Error::Auth(AuthProblem::TypeChange { .. }))
    ));
}

#[test]
fn a_prover_never_downgrades() {
    // A fake server asking an MD5 device for Basic would get the password in clear.
    let mut p = Prover::new("dev", "secret", AuthType::Md5, Nonce::default());
    let basic = auth::challenge(AuthType::Basic, &Nonce::default());
    assert!(matches!(
        p.on_header_status(&status(StatusCode::InvalidCredentials, Some(basic.clone()))),
        Err(Error::Auth(AuthProblem::Downgrade { .. }))
    ));
    assert_eq!(p.auth_type(), AuthType::Md5);
    assert!(p.cred().unwrap().data != auth::basic_data("dev", "secret"));
    // A weaker type offered with 212 for the next session is ignored.
    p.on_header_status(&status(StatusCode::AuthenticationAccepted, Some(basic)))
        .unwrap();
    assert_eq!(p.next_auth_type(), AuthType::Md5);

    // And a verifier challenges an HMAC offer with HMAC, even if MD5 would do.
    let mut rng = Counter(0);
    let mut v = Verifier::new(
        AuthType::Md5,
        UserKey::new("dev", "secret"),
        Nonce::default(),
    );
    let stale = HmacHeader::compute(
        &UserKey::new("dev", "secret"),
        &Nonce::from_bytes(*b"x"),
        b"m",
    )
    .to_string();
    let refused = v.check(&with_hmac(&stale, b"m"), &mut rng).unwrap();
    assert_eq!(refused.status, StatusCode::InvalidCredentials);
    assert_eq!(
        refused.chal.unwrap().meta.type_.as_deref(),
        Some("syncml:auth-MAC")
    );
}

#[test]
fn a_challenge_of_another_type_with_212_is_for_the_next_session() {
    let mut p = Prover::new("u", "p", AuthType::Md5, Nonce::default());
    let next = Nonce::from_bytes(vec![5; 16]);
    let chal = auth::challenge(AuthType::Hmac, &next);
    let step = p
        .on_header_status(&status(StatusCode::AuthenticationAccepted, Some(chal)))
        .unwrap();
    assert_eq!(step, ProverStep::Authenticated);
    assert_eq!(p.auth_type(), AuthType::Md5, "this session stays MD5");
    assert_eq!(p.next_auth_type(), AuthType::Hmac);
    assert_eq!(p.next_nonce(), &next);
}

#[test]
fn prover_needs_a_challenge_to_answer() {
    let mut p = Prover::new("u", "p", AuthType::Md5, Nonce::default());
    assert_eq!(
        p.on_header_status(&status(StatusCode::InvalidCredentials, None)),
        Err(Error::Auth(AuthProblem::NoChallenge))
    );
    let mut chal = auth::challenge(AuthType::Md5, &Nonce::default());
    chal.meta.next_nonce = None;
    assert_eq!(
        p.on_header_status(&status(StatusCode::MissingCredentials, Some(chal))),
        Err(Error::Auth(AuthProblem::NoNonce("syncml:auth-md5")))
    );
    // With proper challenges it retries, then gives up.
    let chal = auth::challenge(AuthType::Md5, &Nonce::from_bytes(*b"n"));
    let refused = status(StatusCode::InvalidCredentials, Some(chal));
    let steps: Vec<ProverStep> = (0..4)
        .map(|_| p.on_header_status(&refused).unwrap())
        .collect();
    assert_eq!(steps[..3], [ProverStep::ResendPackage1; 3]);
    assert_eq!(steps[3], ProverStep::GiveUp);
}

#[test]
fn hmac_covers_every_message() {
    let mut rng = Counter(0);
    let key = UserKey::new("srv", "pw");
    let n0 = Nonce::from_bytes(vec![1; 16]);
    let mut v = Verifier::new(AuthType::Hmac, key.clone(), n0.clone());
    let mut p = Prover::new("srv", "pw", AuthType::Hmac, n0.clone());
    assert_eq!(p.cred(), None, "HMAC never goes in Cred");

    let body1 = b"<SyncML>message 1</SyncML>".to_vec();
    let h1 = p.hmac_header(&body1).unwrap();
    let first = v.check(&with_hmac(&h1, &body1), &mut rng).unwrap();
    assert_eq!(first.status, StatusCode::AuthenticationAccepted);
    let step = p
        .on_header_status(&status(first.status, first.chal))
        .unwrap();
    assert_eq!(step, ProverStep::Authenticated);
    assert_eq!(
        p.next_nonce(),
        v.next_nonce(),
        "the next message uses the new nonce"
    );

    // Message 2 is MACed with the fresh nonce; a peer that kept the session's nonce
    // is accepted too.
    let body2 = b"<SyncML>message 2</SyncML>".to_vec();
    let h2 = p.hmac_header(&body2).unwrap();
    assert_eq!(
        v.check(&with_hmac(&h2, &body2), &mut rng).unwrap().status,
        StatusCode::Ok
    );
    let body3 = b"<SyncML>message 3</SyncML>".to_vec();
    let h3_old = HmacHeader::compute(&key, &n0, &body3).to_string();
    assert_eq!(
        v.check(&with_hmac(&h3_old, &body3), &mut rng)
            .unwrap()
            .status,
        StatusCode::Ok
    );

    // A message without a MAC is refused; the prover resends that message.
    let missing = v
        .check(
            &Incoming {
                body: &body3,
                ..NO_PROOF
            },
            &mut rng,
        )
        .unwrap();
    assert_eq!(missing.status, StatusCode::MissingCredentials);
    let step = p
        .on_header_status(&status(missing.status, missing.chal))
        .unwrap();
    assert_eq!(step, ProverStep::ResendMessage);
    let h3 = p.hmac_header(&body3).unwrap();
    let resent = v.check(&with_hmac(&h3, &body3), &mut rng).unwrap();
    assert_eq!(resent.status, StatusCode::AuthenticationAccepted);

    // An altered body or a garbled header is refused.
    let mut v2 = Verifier::new(AuthType::Hmac, key, n0);
    let mut tampered = body1.clone();
    tampered[3] ^= 1;
    let refused = v2.check(&with_hmac(&h1, &tampered), &mut rng).unwrap();
    assert_eq!(refused.status, StatusCode::InvalidCredentials);
    assert_eq!(refused.problem, Some(AuthProblem::Mismatch));
    let garbled = v2.check(&with_hmac("mac=1", &body1), &mut rng).unwrap();
    assert!(matches!(garbled.problem, Some(AuthProblem::HmacHeader(_))));
}

#[test]
fn a_verifier_resumes_from_its_saved_state() {
    // A server keeps nothing between HTTP requests: it saves the state and resumes.
    let mut rng = Counter(0);
    let key = UserKey::new("srv", "pw");
    let n0 = Nonce::from_bytes(vec![1; 16]);
    let mut v = Verifier::new(AuthType::Hmac, key.clone(), n0.clone());
    let h = HmacHeader::compute(&key, &n0, b"one").to_string();
    v.check(&with_hmac(&h, b"one"), &mut rng).unwrap();
    let saved = v.state().clone();
    drop(v);
    let mut v = Verifier::resume(AuthType::Hmac, key.clone(), saved);
    assert_eq!(v.authenticated(), Some(AuthType::Hmac));
    let h = HmacHeader::compute(&key, v.next_nonce(), b"two").to_string();
    assert_eq!(
        v.check(&with_hmac(&h, b"two"), &mut rng).unwrap().status,
        StatusCode::Ok
    );
}

#[test]
fn unknown_users_get_the_same_answer_as_wrong_passwords() {
    let mut rng = Counter(0);
    let unknown = Verifier::refuse_unknown_user(AuthType::Md5, "mallory", &mut rng).unwrap();
    let mut v = Verifier::new(AuthType::Md5, UserKey::new("u", "p"), Nonce::default());
    let wrong = v
        .check(
            &with_cred(&auth::md5_cred(&UserKey::new("u", "x"), &Nonce::default())),
            &mut rng,
        )
        .unwrap();
    assert_eq!(unknown.status, wrong.status);
    let shape = |v: &Verdict| {
        let m = &v.chal.as_ref().unwrap().meta;
        (m.type_.clone(), m.format.clone(), m.next_nonce.is_some())
    };
    assert_eq!(shape(&unknown), shape(&wrong));
    assert_eq!(
        unknown.problem,
        Some(AuthProblem::UnknownUser("mallory".into()))
    );
}

#[test]
fn double_b64_nonce_quirk_is_opt_in() {
    let mut rng = Counter(0);
    let key = UserKey::new("u", "p");
    let nonce = Nonce::from_bytes(vec![0xAB; 16]);
    // The peer computed its digest over the nonce's base64 text.
    let quirky = auth::md5_cred(&key, &nonce.b64_text());
    let inc = Incoming {
        loc_name: Some("u"),
        ..with_cred(&quirky)
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
fn the_claimed_user_is_found_where_each_scheme_puts_it() {
    let key = UserKey::new("Bruce2", "OhBehave");
    let mut b = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER);
    b.cred(auth::basic_cred("Bruce2", "OhBehave"));
    let basic = b.finish();
    assert_eq!(
        Incoming::new(&basic.hdr, None, b"")
            .claimed_user()
            .as_deref(),
        Some("Bruce2")
    );
    let mut b = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER);
    b.source_name(" Bruce2 ")
        .cred(auth::md5_cred(&key, &Nonce::default()));
    let md5 = b.finish();
    assert_eq!(
        Incoming::new(&md5.hdr, None, b"").claimed_user().as_deref(),
        Some("Bruce2")
    );
    let plain = MessageBuilder::client(DmVersion::V1_2, "1", DEVICE, SERVER).finish();
    assert_eq!(Incoming::new(&plain.hdr, None, b"").claimed_user(), None);
    let h = HmacHeader::compute(&key, &Nonce::default(), b"x").to_string();
    assert_eq!(
        Incoming::new(&plain.hdr, Some(&h), b"x")
            .claimed_user()
            .as_deref(),
        Some("Bruce2")
    );
}
