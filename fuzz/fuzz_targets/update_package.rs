//! The firmware update package container (`syncml package`, what the download agent
//! checks before anything is flashed). The first byte picks the mode:
//!
//! - even: the rest is a whole package: header, digests, signature, fit, apply
//!   (a delta onto a fixed 4 KiB image, at most 1 MiB out);
//! - odd: the rest is a delta payload (a BSDIFF40 patch) wrapped in a valid header
//!   with matching CRC and SHA-256, so that the patcher itself gets fuzzed: a random
//!   input almost never carries a right CRC-32 and SHA-256.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use syncml_core::package::{parse_header, Header, Package, PayloadKind, SigningKey};

const MAX_OUT: u64 = 1 << 20;

fn old_image() -> Vec<u8> {
    (0..4096u32).map(|i| (i * 31 % 251) as u8).collect()
}

fn exercise(bytes: &[u8]) {
    let _ = parse_header(bytes);
    let Ok(p) = Package::parse(bytes) else {
        return;
    };
    let _ = p.check_integrity();
    let key = SigningKey::from_seed(&[7; 32]).public();
    let _ = p.verify_signature(&[key]);
    let _ = p.check_fit("X1", "1.0");
    if let Ok(image) = p.apply(&old_image(), MAX_OUT) {
        assert_eq!(
            image.len() as u64,
            p.header.target_len,
            "applied image length"
        );
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        exercise(rest);
        return;
    }
    // The patch's own header says how long the new image is (bytes 24..32); the
    // package header must agree, so take it from there (clamped).
    let target_len = rest
        .get(24..32)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap()) & 0x7fff_ffff_ffff_ffff)
        .unwrap_or(0)
        .min(MAX_OUT);
    let header = Header {
        format_version: syncml_core::package::FORMAT_VERSION,
        model: "X1".into(),
        component: "firmware".into(),
        from_version: "1.0".into(),
        to_version: "2.0".into(),
        kind: PayloadKind::Delta,
        payload_len: rest.len() as u64,
        payload_crc32: crc32fast::hash(rest),
        payload_sha256: Sha256::digest(rest).into(),
        target_len,
        target_sha256: [0; 32],
        signature: None,
    };
    let mut bytes = header.to_bytes();
    bytes.extend_from_slice(rest);
    exercise(&bytes);
});
