//! The update-package container: build and parse, every check with its error and
//! FUMO result code, truncated and hostile input, signatures, delta apply.

use proptest::prelude::*;
use syncml_core::package::*;

fn spec(from: &str) -> Spec {
    Spec {
        model: "X1".into(),
        component: "firmware".into(),
        from_version: from.into(),
        to_version: "2.0".into(),
    }
}

/// A pseudo-random image (xorshift) of `len` bytes: deterministic, not compressible.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// `old` with a few bytes changed and some inserted: a realistic next version.
fn next_version(old: &[u8]) -> Vec<u8> {
    let mut new = old.to_vec();
    for i in (0..new.len()).step_by(97) {
        new[i] = new[i].wrapping_add(1);
    }
    new.splice(
        new.len() / 2..new.len() / 2,
        b"inserted in 2.0".iter().copied(),
    );
    new
}

fn header_len(pkg: &[u8]) -> usize {
    parse_header(pkg).unwrap().1
}

/// Recomputes the header CRC after a test has edited header bytes.
fn fix_crc(pkg: &mut [u8]) {
    let n = u32::from_be_bytes(pkg[10..14].try_into().unwrap()) as usize;
    let crc = crc32fast::hash(&pkg[..n - 4]);
    pkg[n - 4..n].copy_from_slice(&crc.to_be_bytes());
}

/// A delta package of a 4 KiB image, and its old and new images.
fn delta_pkg(key: Option<&SigningKey>) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let old = image(4096, 7);
    let new = next_version(&old);
    let pkg = build_delta(&spec("1.0"), &old, &new, key).unwrap();
    (pkg, old, new)
}

fn err_code(r: Result<impl std::fmt::Debug, PackageError>) -> (PackageError, u16) {
    let e = r.unwrap_err();
    let code = e.fumo_result();
    (e, code)
}

#[test]
fn full_package_round_trips_and_applies() {
    let img = image(10_000, 1);
    let pkg = build_full(&spec(""), &img, None);
    let p = Package::parse(&pkg).unwrap();
    let h = &p.header;
    assert_eq!(h.format_version, FORMAT_VERSION);
    assert_eq!(
        (
            h.model.as_str(),
            h.component.as_str(),
            h.from_version.as_str()
        ),
        ("X1", "firmware", "")
    );
    assert_eq!(h.to_version, "2.0");
    assert_eq!(h.kind, PayloadKind::Full);
    assert_eq!(h.payload_len, 10_000);
    assert_eq!(h.target_len, 10_000);
    assert_eq!(h.payload_crc32, crc32fast::hash(&img));
    assert_eq!(h.payload_sha256, h.target_sha256);
    assert_eq!(h.signature, None);
    assert_eq!(p.payload, &img[..]);
    p.check_integrity().unwrap();
    // An empty from_version fits any current version.
    p.check_fit("X1", "0.9").unwrap();
    assert_eq!(p.apply(b"ignored", 10_000).unwrap(), img);
}

#[test]
fn delta_package_is_small_and_rebuilds_the_new_image() {
    let (pkg, old, new) = delta_pkg(None);
    let p = Package::parse(&pkg).unwrap();
    assert_eq!(p.header.kind, PayloadKind::Delta);
    assert_eq!(p.header.target_len, new.len() as u64);
    assert!(pkg.len() < new.len() / 2, "delta of {} bytes", pkg.len());
    p.check_integrity().unwrap();
    p.check_fit("X1", "1.0").unwrap();
    assert_eq!(p.apply(&old, new.len() as u64).unwrap(), new);
}

#[test]
fn byte_layout_matches_package_md() {
    let key = SigningKey::from_seed(&[9; 32]);
    let (pkg, _, new) = delta_pkg(Some(&key));
    let (h, n) = parse_header(&pkg).unwrap();
    assert_eq!(&pkg[0..8], b"DMFWPKG\0");
    assert_eq!(&pkg[8..10], &[0, 1]);
    assert_eq!(
        u32::from_be_bytes(pkg[10..14].try_into().unwrap()) as usize,
        n
    );
    assert_eq!(pkg[14], 1, "kind delta");
    assert_eq!(pkg[15], 1, "flags: signed");
    assert_eq!(
        u64::from_be_bytes(pkg[16..24].try_into().unwrap()),
        h.payload_len
    );
    assert_eq!(
        u32::from_be_bytes(pkg[24..28].try_into().unwrap()),
        h.payload_crc32
    );
    assert_eq!(pkg[28..60], h.payload_sha256);
    assert_eq!(
        u64::from_be_bytes(pkg[60..68].try_into().unwrap()),
        new.len() as u64
    );
    assert_eq!(pkg[68..100], h.target_sha256);
    assert_eq!(&pkg[100..104], b"\0\x02X1");
    assert_eq!(&pkg[104..114], b"\0\x08firmware");
    assert_eq!(&pkg[114..119], b"\0\x031.0");
    assert_eq!(&pkg[119..124], b"\0\x032.0");
    assert_eq!(pkg[124..188], h.signature.unwrap());
    assert_eq!(n, 192);
    assert_eq!(pkg[188..192], crc32fast::hash(&pkg[..188]).to_be_bytes());
    assert_eq!(h.to_bytes(), pkg[..n]);
    assert_eq!(h.encoded_len(), n);
    // The signed bytes are the header up to the signature.
    assert_eq!(h.signed_bytes(), pkg[..124]);
}

#[test]
fn header_parses_from_a_prefix_and_reports_truncation() {
    let (pkg, _, _) = delta_pkg(Some(&SigningKey::from_seed(&[1; 32])));
    let n = header_len(&pkg);
    let (h, m) = parse_header(&pkg[..n]).unwrap();
    assert_eq!(m, n);
    // The header alone is enough to check the signature.
    verify_header_signature(&h, &[SigningKey::from_seed(&[1; 32]).public()]).unwrap();
    for cut in [0, 3, 8, 13] {
        assert_eq!(
            parse_header(&pkg[..cut]),
            Err(PackageError::Truncated {
                needed: 14,
                have: cut as u64
            })
        );
    }
    for cut in [14, 100, n - 1] {
        let (e, code) = err_code(parse_header(&pkg[..cut]));
        assert_eq!(
            e,
            PackageError::Truncated {
                needed: n as u64,
                have: cut as u64
            }
        );
        assert_eq!(code, 402);
    }
    // A package cut inside its payload, or with bytes after it.
    let (e, code) = err_code(Package::parse(&pkg[..pkg.len() - 1]));
    assert!(matches!(e, PackageError::Truncated { .. }), "{e}");
    assert_eq!(code, 402);
    let mut long = pkg.clone();
    long.push(0);
    let (e, code) = err_code(Package::parse(&long));
    assert!(matches!(e, PackageError::PayloadLength { .. }), "{e}");
    assert_eq!(code, 402);
}

#[test]
fn every_flipped_header_bit_is_detected() {
    let (pkg, _, _) = delta_pkg(Some(&SigningKey::from_seed(&[2; 32])));
    let n = header_len(&pkg);
    for i in 0..n {
        for bit in 0..8 {
            let mut bad = pkg.clone();
            bad[i] ^= 1 << bit;
            let (e, code) = err_code(Package::parse(&bad));
            assert_eq!(code, 402, "byte {i} bit {bit}: {e}");
            if (14..n - 4).contains(&i) {
                assert!(matches!(e, PackageError::HeaderCrc { .. }), "byte {i}: {e}");
            }
        }
    }
    let mut bad = pkg.clone();
    bad[0] = b'X';
    assert_eq!(Package::parse(&bad), Err(PackageError::BadMagic));
    assert_eq!(parse_header(b"PK\x03"), Err(PackageError::BadMagic));
    let mut bad = pkg.clone();
    bad[9] = 2;
    assert_eq!(
        Package::parse(&bad),
        Err(PackageError::UnsupportedFormat(2))
    );
}

/// Edits a header field, fixes the header CRC, and returns the first error of
/// parse + check_integrity + apply.
fn edited(pkg: &[u8], old: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> PackageError {
    let mut bad = pkg.to_vec();
    edit(&mut bad);
    fix_crc(&mut bad);
    let r = Package::parse(&bad).and_then(|p| {
        p.check_integrity()?;
        p.apply(old, 1 << 20)
    });
    r.unwrap_err()
}

#[test]
fn each_header_field_is_checked_with_its_own_error() {
    let (pkg, old, _) = delta_pkg(None);
    let field = |e: &PackageError| match e {
        PackageError::BadField { field, .. } => *field,
        other => panic!("not BadField: {other}"),
    };
    // header_len beyond the limit, below the minimum, or not where the fields end.
    let mut b = pkg.clone();
    b[10..14].copy_from_slice(&(1u32 << 20).to_be_bytes());
    let e = Package::parse(&b).unwrap_err();
    assert!(
        matches!(e, PackageError::TooLong { what: "header", .. }),
        "{e}"
    );
    b[10..14].copy_from_slice(&20u32.to_be_bytes());
    assert_eq!(field(&Package::parse(&b).unwrap_err()), "header_len");
    let e = edited(&pkg, &old, |b| b[15] = 1); // claims a signature it lacks
    assert!(matches!(e, PackageError::BadField { .. }), "{e}");
    assert_eq!(field(&edited(&pkg, &old, |b| b[14] = 2)), "kind");
    assert_eq!(field(&edited(&pkg, &old, |b| b[15] = 0x80)), "flags");
    // A full package whose target differs from its payload.
    assert_eq!(field(&edited(&pkg, &old, |b| b[14] = 0)), "target");
    // payload_len: one more than present, one less, hostile.
    let e = edited(&pkg, &old, |b| b[23] += 1);
    assert!(matches!(e, PackageError::Truncated { .. }), "{e}");
    let e = edited(&pkg, &old, |b| b[23] -= 1);
    assert!(matches!(e, PackageError::PayloadLength { .. }), "{e}");
    let e = edited(&pkg, &old, |b| b[16] = 0xFF);
    assert!(
        matches!(
            e,
            PackageError::TooLong {
                what: "payload",
                ..
            }
        ),
        "{e}"
    );
    let e = edited(&pkg, &old, |b| b[60] = 0xFF);
    assert!(
        matches!(e, PackageError::TooLong { what: "target", .. }),
        "{e}"
    );
    // Digests.
    let e = edited(&pkg, &old, |b| b[24] ^= 1);
    assert!(matches!(e, PackageError::PayloadCrc { .. }), "{e}");
    assert_eq!(
        edited(&pkg, &old, |b| b[40] ^= 1),
        PackageError::PayloadSha256
    );
    let e = edited(&pkg, &old, |b| b[67] ^= 1);
    assert!(matches!(e, PackageError::BadPatch(_)), "target_len: {e}");
    let e = edited(&pkg, &old, |b| b[90] ^= 1);
    assert!(
        matches!(e, PackageError::TargetMismatch(_)),
        "target_sha256: {e}"
    );
    // Strings: not UTF-8, too long, running past the header.
    assert_eq!(field(&edited(&pkg, &old, |b| b[102] = 0xFF)), "model");
    let e = edited(&pkg, &old, |b| {
        b[100..102].copy_from_slice(&2000u16.to_be_bytes())
    });
    assert!(
        matches!(e, PackageError::TooLong { what: "model", .. }),
        "{e}"
    );
    assert_eq!(field(&edited(&pkg, &old, |b| b[120] = 200)), "to_version");
    // A delta without a source version: the header shrinks by three bytes.
    let e = edited(&pkg, &old, |b| {
        b.drain(116..119);
        b[114..116].copy_from_slice(&[0, 0]);
        let n = u32::from_be_bytes(b[10..14].try_into().unwrap()) - 3;
        b[10..14].copy_from_slice(&n.to_be_bytes());
    });
    assert_eq!(field(&e), "from_version");
    for e in [e, PackageError::PayloadSha256] {
        assert_eq!(e.fumo_result(), 402);
    }
}

#[test]
fn corrupted_payload_is_detected() {
    let (pkg, old, _) = delta_pkg(None);
    let n = header_len(&pkg);
    let mut bad = pkg.clone();
    bad[n + 40] ^= 0x10;
    let p = Package::parse(&bad).unwrap();
    let (e, code) = err_code(p.check_integrity());
    assert!(matches!(e, PackageError::PayloadCrc { .. }), "{e}");
    assert_eq!(code, 402);
    // Same corruption with a header CRC-32 that matches it: the SHA-256 catches it.
    let crc = crc32fast::hash(&bad[n..]);
    bad[24..28].copy_from_slice(&crc.to_be_bytes());
    fix_crc(&mut bad);
    let p = Package::parse(&bad).unwrap();
    assert_eq!(p.check_integrity(), Err(PackageError::PayloadSha256));
    // Applying the corrupt patch never yields a wrong image silently.
    let (e, code) = err_code(p.apply(&old, 1 << 20));
    assert!(
        matches!(
            e,
            PackageError::BadPatch(_) | PackageError::TargetMismatch(_)
        ),
        "{e}"
    );
    assert_eq!(code, 402);
}

#[test]
fn chunked_payload_check_agrees_with_the_whole() {
    let (pkg, _, _) = delta_pkg(None);
    let (h, n) = parse_header(&pkg).unwrap();
    let mut check = PayloadCheck::new(&h);
    for chunk in pkg[n..].chunks(7) {
        check.update(chunk);
    }
    assert_eq!(check.remaining(), 0);
    assert_eq!(check.seen(), h.payload_len);
    check.finish().unwrap();
    let mut short = PayloadCheck::new(&h);
    short.update(&pkg[n..pkg.len() - 1]);
    assert_eq!(short.remaining(), 1);
    assert!(matches!(
        short.finish(),
        Err(PackageError::PayloadLength { .. })
    ));
    let mut wrong = PayloadCheck::new(&h);
    wrong.update(&pkg[n + 1..]);
    wrong.update(b"x");
    assert!(matches!(
        wrong.finish(),
        Err(PackageError::PayloadCrc { .. })
    ));
}

#[test]
fn signatures_verify_with_the_right_key_only() {
    let key = SigningKey::generate().unwrap();
    let other = SigningKey::generate().unwrap();
    assert_ne!(key.public(), other.public());
    let (pkg, _, _) = delta_pkg(Some(&key));
    let p = Package::parse(&pkg).unwrap();
    p.verify_signature(&[key.public()]).unwrap();
    p.verify_signature(&[other.public(), key.public()]).unwrap();
    let (e, code) = err_code(p.verify_signature(&[other.public()]));
    assert_eq!((e, code), (PackageError::SignatureInvalid { keys: 1 }, 404));
    let (e, code) = err_code(p.verify_signature(&[]));
    assert_eq!((e, code), (PackageError::NoTrustedKeys, 404));
    // Unsigned package while keys are required.
    let unsigned = build_full(&spec(""), b"img", None);
    let (e, code) = err_code(
        Package::parse(&unsigned)
            .unwrap()
            .verify_signature(&[key.public()]),
    );
    assert_eq!((e, code), (PackageError::SignatureMissing, 404));
    // Any header field changed (CRC fixed) or the signature itself changed.
    let n = header_len(&pkg);
    for i in (14..n - 4).filter(|i| *i != 15) {
        let mut bad = pkg.clone();
        bad[i] ^= 0x01;
        fix_crc(&mut bad);
        let Ok((h, _)) = parse_header(&bad) else {
            continue;
        };
        assert_eq!(
            h.verify_signature(&[key.public()]),
            Err(PackageError::SignatureInvalid { keys: 1 }),
            "byte {i}"
        );
    }
}

#[test]
fn keys_round_trip_through_base64_and_refuse_garbage() {
    let key = SigningKey::generate().unwrap();
    let again = SigningKey::from_b64(&format!("{}\n", key.to_b64())).unwrap();
    assert_eq!(again.public(), key.public());
    assert_eq!(key.to_b64().len(), 44);
    let public = PublicKey::from_b64(&key.public().to_b64()).unwrap();
    assert_eq!(public, key.public());
    assert_eq!(PublicKey::from_bytes(&public.to_bytes()).unwrap(), public);
    assert!(
        !format!("{key:?}").contains(&key.to_b64()),
        "Debug leaks the seed"
    );
    for bad in ["", "not base64!", "AAAA"] {
        let e = SigningKey::from_b64(bad).unwrap_err();
        assert!(matches!(e, PackageError::BadKey(_)), "{bad:?}: {e}");
        assert_eq!(e.fumo_result(), 400);
        assert!(PublicKey::from_b64(bad).is_err());
    }
    assert!(matches!(
        PublicKey::from_bytes(&[0; 31]),
        Err(PackageError::BadKey(_))
    ));
    // y = 2 is not on the curve.
    let mut off_curve = [0u8; 32];
    off_curve[0] = 2;
    assert!(matches!(
        PublicKey::from_bytes(&off_curve),
        Err(PackageError::BadKey(_))
    ));
}

#[test]
fn fit_checks_model_and_source_version() {
    let (pkg, _, _) = delta_pkg(None);
    let p = Package::parse(&pkg).unwrap();
    let (e, code) = err_code(p.check_fit("X2", "1.0"));
    assert!(matches!(e, PackageError::ModelMismatch { .. }), "{e}");
    assert_eq!(code, 403);
    let (e, code) = err_code(p.check_fit("X1", "1.1"));
    assert_eq!(
        e,
        PackageError::SourceVersionMismatch {
            package: "1.0".into(),
            device: "1.1".into()
        }
    );
    assert_eq!(code, 403);
    let full = build_full(&spec("1.5"), b"img", None);
    let p = Package::parse(&full).unwrap();
    p.check_fit("X1", "1.5").unwrap();
    assert_eq!(err_code(p.check_fit("X1", "1.0")).1, 403);
}

#[test]
fn apply_bounds_memory_and_refuses_the_wrong_source() {
    let (pkg, old, new) = delta_pkg(None);
    let p = Package::parse(&pkg).unwrap();
    let (e, code) = err_code(p.apply(&old, new.len() as u64 - 1));
    assert_eq!(
        e,
        PackageError::TargetTooLarge {
            len: new.len() as u64,
            max: new.len() as u64 - 1
        }
    );
    assert_eq!(code, 400);
    let (e, code) = err_code(p.apply(&image(4096, 8), 1 << 20));
    assert!(
        matches!(
            e,
            PackageError::TargetMismatch(_) | PackageError::BadPatch(_)
        ),
        "{e}"
    );
    assert_eq!(code, 402);
    assert_eq!(err_code(p.apply(b"", 1 << 20)).1, 402);
}

/// A delta package (CRCs and digests consistent) around an arbitrary payload.
fn delta_around(payload: &[u8], target_len: u64) -> Vec<u8> {
    let h = Header {
        format_version: FORMAT_VERSION,
        model: "X1".into(),
        component: "firmware".into(),
        from_version: "1.0".into(),
        to_version: "2.0".into(),
        kind: PayloadKind::Delta,
        payload_len: payload.len() as u64,
        payload_crc32: crc32fast::hash(payload),
        payload_sha256: sha2::Sha256::digest(payload).into(),
        target_len,
        target_sha256: [0; 32],
        signature: None,
    };
    let mut out = h.to_bytes();
    out.extend_from_slice(payload);
    out
}

use sha2::Digest;

fn patch_header(ctrl: u64, diff: u64, target: u64) -> Vec<u8> {
    let mut p = b"BSDIFF40".to_vec();
    for v in [ctrl, diff, target] {
        p.extend_from_slice(&v.to_le_bytes());
    }
    p
}

#[test]
fn hostile_patches_give_errors_not_panics() {
    let old = image(1000, 3);
    let cases: Vec<(Vec<u8>, u64)> = vec![
        (b"BSDIFF4".to_vec(), 10),
        (b"NOTBSDIFF-AT-ALL-but-long-enough-32".to_vec(), 10),
        (patch_header(0, 0, 10), 10),
        (patch_header(1 << 63 | 5, 0, 10), 10),
        (patch_header(u64::MAX >> 1, u64::MAX >> 1, 10), 10),
        (patch_header(1 << 40, 0, 10), 10),
        (patch_header(0, 0, 1 << 62), 1 << 20),
        (patch_header(0, 0, 10), 11),
        ([patch_header(4, 4, 10), vec![0xAA; 40]].concat(), 10),
    ];
    for (payload, target_len) in cases {
        let pkg = delta_around(&payload, target_len);
        let p = Package::parse(&pkg).unwrap();
        p.check_integrity().unwrap();
        let (e, code) = err_code(p.apply(&old, 1 << 20));
        assert!(
            matches!(
                e,
                PackageError::BadPatch(_) | PackageError::TargetTooLarge { .. }
            ),
            "{e}"
        );
        assert!(code == 402 || code == 400);
    }
}

#[test]
fn spec_is_validated_for_deltas() {
    let old = b"old".to_vec();
    for (s, what) in [
        (spec(""), "from-version"),
        (
            Spec {
                model: String::new(),
                ..spec("1.0")
            },
            "model",
        ),
        (
            Spec {
                to_version: "2.0\n".into(),
                ..spec("1.0")
            },
            "to-version",
        ),
        (
            Spec {
                component: "c".repeat(MAX_FIELD_LEN + 1),
                ..spec("1.0")
            },
            "component",
        ),
    ] {
        let e = build_delta(&s, &old, b"new", None).unwrap_err();
        assert!(
            matches!(&e, PackageError::BadSpec(m) if m.starts_with(what)),
            "{e}"
        );
        assert_eq!(e.fumo_result(), 400);
    }
    spec("").validate(PayloadKind::Full).unwrap();
}

#[test]
fn overlong_strings_are_cut_so_a_built_package_always_parses() {
    let s = Spec {
        model: "é".repeat(MAX_FIELD_LEN),
        ..spec("")
    };
    let pkg = build_full(&s, b"img", None);
    let p = Package::parse(&pkg).unwrap();
    assert_eq!(p.header.model, "é".repeat(MAX_FIELD_LEN / 2));
}

fn field_text() -> impl Strategy<Value = String> {
    prop_oneof!["[A-Za-z0-9._-]{1,20}", "\\PC{1,12}"]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn build_then_parse_round_trips(
        model in field_text(),
        component in field_text(),
        from in prop_oneof![Just(String::new()), field_text()],
        to in field_text(),
        payload in prop::collection::vec(any::<u8>(), 0..600),
        signed in any::<bool>(),
    ) {
        let key = SigningKey::from_seed(&[5; 32]);
        let s = Spec { model, component, from_version: from, to_version: to };
        let pkg = build_full(&s, &payload, signed.then_some(&key));
        let p = Package::parse(&pkg).unwrap();
        prop_assert_eq!(&p.header.model, &s.model);
        prop_assert_eq!(&p.header.component, &s.component);
        prop_assert_eq!(&p.header.from_version, &s.from_version);
        prop_assert_eq!(&p.header.to_version, &s.to_version);
        prop_assert_eq!(p.payload, &payload[..]);
        prop_assert_eq!(p.header.signature.is_some(), signed);
        prop_assert_eq!(p.header.to_bytes(), pkg[..p.header.encoded_len()].to_vec());
        p.check_integrity().unwrap();
        if signed {
            p.verify_signature(&[key.public()]).unwrap();
        }
    }

    #[test]
    fn delta_apply_rebuilds_new(
        old in prop::collection::vec(any::<u8>(), 0..2048),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..20),
        tail in prop::collection::vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
    ) {
        // new: old with point edits, cut somewhere, and new bytes appended.
        let mut new = old.clone();
        if !new.is_empty() {
            for (i, b) in &edits {
                let i = i.index(new.len());
                new[i] = *b;
            }
            new.truncate(cut.index(new.len() + 1));
        }
        new.extend_from_slice(&tail);
        let pkg = build_delta(&spec("1.0"), &old, &new, None).unwrap();
        let p = Package::parse(&pkg).unwrap();
        p.check_integrity().unwrap();
        prop_assert_eq!(p.apply(&old, new.len() as u64).unwrap(), new);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_header(&bytes);
        let mut with_magic = MAGIC.to_vec();
        with_magic.extend_from_slice(&[0, 1]);
        with_magic.extend_from_slice(&bytes);
        if let Ok(p) = Package::parse(&with_magic) {
            let _ = p.apply(&bytes, 1 << 16);
        }
    }

    #[test]
    fn mutated_patches_never_panic_apply(
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let old = image(1500, 11);
        let new = next_version(&old);
        let pkg = build_delta(&spec("1.0"), &old, &new, None).unwrap();
        let n = header_len(&pkg);
        let mut patch = pkg[n..].to_vec();
        for (i, b) in &flips {
            let i = i.index(patch.len());
            patch[i] ^= *b;
        }
        patch.truncate(cut.index(patch.len()) + 1);
        let p = delta_around(&patch, new.len() as u64);
        let p = Package::parse(&p).unwrap();
        match p.apply(&old, 1 << 20) {
            // Only the unchanged patch may rebuild anything, and then only `new`.
            Ok(img) => prop_assert_eq!(img, new),
            Err(e) => prop_assert_eq!(e.fumo_result(), 402),
        }
    }
}
