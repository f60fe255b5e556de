//! The small text parsers that read what a peer sends: the `x-syncml-hmac` header,
//! ACL property values, b64 nonces, media types, and leaf values checked against
//! their Format. The first byte picks the parser. What parses is written back and
//! parses again to the same value.
#![no_main]

use dm_tree::{Acl, Format};
use libfuzzer_sys::fuzz_target;
use syncml_core::auth::{HmacHeader, Nonce};
use syncml_core::Encoding;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let text = std::str::from_utf8(rest).ok();
    match which % 5 {
        0 => {
            let Some(s) = text else { return };
            if let Ok(h) = HmacHeader::parse(s) {
                let again = HmacHeader::parse(&h.to_string())
                    .unwrap_or_else(|e| panic!("our header {h} does not parse: {e}"));
                assert_eq!(again, h, "x-syncml-hmac round trip");
            }
        }
        1 => {
            let Some(s) = text else { return };
            if let Ok(acl) = Acl::parse(s) {
                let shown = acl.to_string();
                let again = Acl::parse(&shown)
                    .unwrap_or_else(|e| panic!("our ACL {shown:?} does not parse: {e}"));
                assert_eq!(again.to_string(), shown, "ACL round trip");
            }
        }
        2 => {
            let Some(s) = text else { return };
            if let Ok(n) = Nonce::from_b64(s) {
                let again = Nonce::from_b64(&n.to_b64()).expect("our b64 parses");
                assert_eq!(again.as_bytes(), n.as_bytes());
                let _ = n.b64_text();
            }
        }
        3 => {
            let Some(s) = text else { return };
            let _ = Encoding::from_media_type(s);
            let _ = Format::from_name(s);
        }
        _ => {
            // One format per input, chosen by the second byte.
            let Some((&f, value)) = rest.split_first() else {
                return;
            };
            let format = Format::ALL[f as usize % Format::ALL.len()];
            if format.validate(value).is_ok() {
                let norm = format.normalize(value);
                assert!(
                    format.validate(&norm).is_ok(),
                    "the normal form of a valid {format:?} value is not valid: {:?}",
                    String::from_utf8_lossy(&norm)
                );
                assert_eq!(
                    format.normalize(&norm),
                    norm,
                    "{format:?} normalize is not idempotent"
                );
            } else {
                let _ = format.normalize(value);
            }
        }
    }
});
