//! Package #0 (the server's notification) parsed from arbitrary bytes; what parses
//! is rebuilt from its fields to the same trigger bytes, and its digest is checked
//! (and fails, or succeeds, without panicking) against a key and nonce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncml_core::auth::{Nonce, UserKey};
use syncml_core::notify::Package0;

fuzz_target!(|data: &[u8]| {
    let Ok(p) = Package0::parse(data) else {
        return;
    };
    let key = UserKey::new("srv", "srvpw");
    let _ = p.verify(&key, &Nonce::from_bytes(b"Nonce".to_vec()));
    let _ = p.verify_or_reset(&key, &Nonce::from_bytes(vec![0, 0, 0, 0]));
    // What was accepted is written back byte for byte (the trigger is everything
    // after the 16-byte digest).
    let trigger = p
        .notification
        .trigger()
        .expect("a parsed notification rebuilds");
    assert_eq!(&trigger[..], &data[16..], "rebuilt trigger differs");
});
