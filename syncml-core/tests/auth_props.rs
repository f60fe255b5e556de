//! Property tests: package #0 and HMAC round-trip every field, any flipped bit fails
//! verification, and no input makes a parser panic.

mod common;

use proptest::prelude::*;
use syncml_core::auth::{
    verify_cred, AuthType, HmacHeader, Incoming, Nonce, OsRandom, Prover, UserKey, Verifier,
};
use syncml_core::notify::{Initiator, Notification, Package0, UiMode};
use syncml_core::{Chal, Cred, Error, Meta, NotificationProblem, StatusCode};

fn auth_type() -> impl Strategy<Value = AuthType> {
    prop_oneof![
        Just(AuthType::Basic),
        Just(AuthType::Md5),
        Just(AuthType::Hmac)
    ]
}

/// Meta Types: the real ones in any case, and junk.
fn meta_type() -> impl Strategy<Value = Option<String>> {
    proptest::option::of(prop_oneof![
        Just("syncml:auth-basic".to_owned()),
        Just("SYNCML:AUTH-MD5".to_owned()),
        Just("syncml:auth-mac".to_owned()),
        "\\PC{0,12}",
    ])
}

fn ui_mode() -> impl Strategy<Value = UiMode> {
    prop_oneof![
        Just(UiMode::NotSpecified),
        Just(UiMode::Background),
        Just(UiMode::Informative),
        Just(UiMode::UserInteraction),
    ]
}

/// A server id of 1 to 255 bytes of UTF-8.
fn server_id() -> impl Strategy<Value = String> {
    "\\PC{1,120}".prop_filter("1 to 255 bytes", |s| (1..=255).contains(&s.len()))
}

prop_compose! {
    fn notification()(
        version in prop_oneof![Just(11u16), Just(12u16)],
        ui_mode in ui_mode(),
        server in any::<bool>(),
        session_id in 1..=u16::MAX,
        server_id in server_id(),
        vendor in proptest::collection::vec(any::<u8>(), 0..64),
    ) -> Notification {
        Notification {
            version,
            ui_mode,
            initiator: if server { Initiator::Server } else { Initiator::Client },
            session_id,
            server_id,
            vendor,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn package0_round_trips(n in notification(), password in ".{0,20}", nonce in proptest::collection::vec(any::<u8>(), 0..20)) {
        let key = UserKey::new(&n.server_id, &password);
        let nonce = Nonce::from_bytes(nonce);
        let bytes = n.build(&key, &nonce).unwrap();
        let p = Package0::parse(&bytes).unwrap();
        prop_assert_eq!(&p.notification, &n);
        prop_assert!(p.verify(&key, &nonce).is_ok());
        let hex = p.notification.session_id_hex();
        prop_assert_eq!(u16::from_str_radix(&hex, 16).unwrap(), n.session_id);
        prop_assert!(!hex.starts_with('0') && hex == hex.to_uppercase());
    }

    #[test]
    fn any_flipped_bit_fails_package0(n in notification(), bit in any::<prop::sample::Index>()) {
        let key = UserKey::new(&n.server_id, "pw");
        let nonce = Nonce::from_bytes(b"nonce".to_vec());
        let mut bytes = n.build(&key, &nonce).unwrap();
        let i = bit.index(bytes.len() * 8);
        bytes[i / 8] ^= 1 << (i % 8);
        // Either the altered message no longer parses, or its digest fails; the
        // digest is checked with the key of whatever server id the message now names.
        if let Ok(p) = Package0::parse(&bytes) {
            let key = UserKey::new(&p.notification.server_id, "pw");
            prop_assert!(p.verify(&key, &nonce).is_err());
        }
    }

    #[test]
    fn any_flipped_bit_fails_hmac(body in proptest::collection::vec(any::<u8>(), 1..400), bit in any::<prop::sample::Index>(), in_mac in any::<bool>()) {
        let key = UserKey::new("dev", "pw");
        let nonce = Nonce::from_bytes(vec![3; 16]);
        let mut h = HmacHeader::compute(&key, &nonce, &body);
        prop_assert!(h.verify(&key, &nonce, &body).is_ok());
        let mut body = body;
        if in_mac {
            let i = bit.index(128);
            h.mac[i / 8] ^= 1 << (i % 8);
        } else {
            let i = bit.index(body.len() * 8);
            body[i / 8] ^= 1 << (i % 8);
        }
        prop_assert!(h.verify(&key, &nonce, &body).is_err());
    }

    #[test]
    fn hmac_header_text_round_trips(user in "\\PC{0,40}", mac in any::<[u8; 16]>()) {
        let h = HmacHeader { username: user, mac };
        prop_assert_eq!(HmacHeader::parse(&h.to_string()).unwrap(), h);
    }

    #[test]
    fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200), s in "\\PC{0,80}") {
        let _ = Package0::parse(&bytes);
        let _ = HmacHeader::parse(&s);
        let _ = HmacHeader::parse(&String::from_utf8_lossy(&bytes));
        let _ = Nonce::from_b64(&s);
        let _ = UserKey::from_stored("u", &s);
        let key = UserKey::new("u", "p");
        for t in [None, Some("syncml:auth-basic"), Some("syncml:auth-md5"), Some(s.as_str())] {
            let cred = Cred {
                meta: Some(Box::new(Meta::format_type(Some("b64"), t))),
                data: s.clone(),
            };
            let _ = verify_cred(&cred, Some(&s), &key, &Nonce::from_bytes(bytes.clone()));
        }
    }

    #[test]
    fn package0_fields_are_checked_not_trusted(
        version in prop_oneof![Just(11u64), Just(12u64), 0..1024u64],
        reserved in prop_oneof![Just(0u64), 0..(1u64 << 27)],
        low in any::<u32>(),
        tail in proptest::collection::vec(0x20u8..0x7F, 0..300),
        flip in any::<bool>(),
    ) {
        let (session_id, id_len) = ((low >> 8) as u16, (low & 0xFF) as usize);
        let header = (version << 54) | (reserved << 24) | (u64::from(session_id) << 8) | id_len as u64;
        let mut bytes = vec![0u8; 16];
        bytes.extend_from_slice(&header.to_be_bytes());
        bytes.extend_from_slice(&tail);
        let bad_utf8 = flip && id_len > 0 && id_len <= tail.len();
        if bad_utf8 {
            bytes[24] = 0xFF;
        }
        use NotificationProblem::*;
        let expected = if tail.is_empty() {
            Some(Truncated { len: 24, min: 25 })
        } else if version != 11 && version != 12 {
            Some(UnknownVersion(version as u16))
        } else if reserved != 0 {
            Some(ReservedBits(reserved as u32))
        } else if session_id == 0 {
            Some(ZeroSessionId)
        } else if id_len == 0 {
            Some(EmptyServerId)
        } else if id_len > tail.len() {
            Some(LengthMismatch { declared: id_len, available: tail.len() })
        } else if bad_utf8 {
            Some(ServerIdNotText)
        } else {
            None
        };
        match (Package0::parse(&bytes), expected) {
            (Ok(p), None) => {
                let n = &p.notification;
                prop_assert_eq!(u64::from(n.version), version);
                prop_assert_eq!(n.session_id, session_id);
                prop_assert_eq!(n.server_id.as_bytes(), &tail[..id_len]);
                prop_assert_eq!(&n.vendor[..], &tail[id_len..]);
            }
            (Err(Error::Notification(got)), Some(want)) => prop_assert_eq!(got, want),
            (got, want) => prop_assert!(false, "got {:?}, expected {:?}", got, want),
        }
    }

    #[test]
    fn verifier_answers_only_with_auth_codes(
        required in auth_type(),
        type_ in meta_type(),
        data in "[A-Za-z0-9+/=:]{0,30}",
        loc_name in proptest::option::of("\\PC{0,8}"),
        hmac in proptest::option::of("\\PC{0,60}"),
        body in proptest::collection::vec(any::<u8>(), 0..40),
        messages in 1..6usize,
    ) {
        let cred = type_.map(|t| Cred {
            meta: Some(Box::new(Meta::format_type(Some("b64"), Some(&t)))),
            data: data.clone(),
        });
        let mut v = Verifier::new(required, UserKey::new("u", "p"), Nonce::from_bytes(*b"n"));
        for _ in 0..messages {
            let msg = Incoming {
                cred: cred.as_ref(),
                loc_name: loc_name.as_deref(),
                hmac: hmac.as_deref(),
                body: &body,
            };
            let verdict = v.check(&msg, &mut OsRandom).unwrap();
            match verdict.status {
                StatusCode::Ok | StatusCode::AuthenticationAccepted => {
                    prop_assert!(verdict.problem.is_none());
                }
                StatusCode::InvalidCredentials | StatusCode::MissingCredentials => {
                    let meta = &verdict.chal.as_ref().unwrap().meta;
                    prop_assert!(meta.type_.is_some());
                    prop_assert_eq!(meta.format.as_deref(), Some("b64"));
                    prop_assert_eq!(meta.next_nonce.clone(), Some(v.next_nonce().to_b64()));
                    prop_assert!(verdict.problem.is_some());
                }
                other => prop_assert!(false, "status {}", other),
            }
        }
    }

    #[test]
    fn prover_reads_any_status_without_panicking(
        configured in auth_type(),
        code in prop_oneof![Just(200u16), Just(212u16), Just(401u16), Just(407u16), any::<u16>()],
        type_ in meta_type(),
        nonce in proptest::option::of("\\PC{0,24}"),
    ) {
        let mut p = Prover::new("u", "p", configured, Nonce::default());
        let chal = type_.map(|t| {
            let mut meta = Meta::format_type(Some("b64"), Some(&t));
            meta.next_nonce = nonce.clone();
            Chal { meta: Box::new(meta) }
        });
        let status = common::header_status(StatusCode::from(code), chal);
        if p.on_header_status(&status).is_ok() {
            prop_assert!(p.auth_type() >= configured, "never weaker than configured");
        }
    }
}
