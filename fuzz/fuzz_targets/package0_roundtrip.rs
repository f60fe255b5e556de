//! Structure-aware package #0 round trip: any notification the builder accepts
//! parses back to the same fields, and its digest verifies with the key and nonce
//! it was built with (and not with another nonce).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use syncml_core::auth::{Nonce, UserKey};
use syncml_core::notify::{Initiator, Notification, Package0, UiMode};

#[derive(Debug, Arbitrary)]
struct Input {
    version: u16,
    ui_mode: u8,
    server_initiated: bool,
    session_id: u16,
    server_id: String,
    vendor: Vec<u8>,
    server_password: String,
    nonce: Vec<u8>,
}

fuzz_target!(|i: Input| {
    let n = Notification {
        // Mostly the versions a parser accepts, sometimes anything.
        version: match i.version % 4 {
            0 => 11,
            1 => 12,
            _ => i.version,
        },
        ui_mode: match i.ui_mode % 4 {
            0 => UiMode::NotSpecified,
            1 => UiMode::Background,
            2 => UiMode::Informative,
            _ => UiMode::UserInteraction,
        },
        initiator: if i.server_initiated {
            Initiator::Server
        } else {
            Initiator::Client
        },
        session_id: i.session_id,
        server_id: i.server_id,
        vendor: i.vendor,
    };
    let key = UserKey::new(&n.server_id, &i.server_password);
    let nonce = Nonce::from_bytes(i.nonce);
    let Ok(bytes) = n.build(&key, &nonce) else {
        return;
    };
    let p = Package0::parse(&bytes).expect("a built package #0 parses");
    assert_eq!(p.notification, n, "fields changed in the round trip");
    p.verify(&key, &nonce).expect("its own digest verifies");
    let mut other = nonce.as_bytes().to_vec();
    other.push(0x5a);
    assert!(
        p.verify(&key, &Nonce::from_bytes(other)).is_err(),
        "the digest verified with another nonce"
    );
});
