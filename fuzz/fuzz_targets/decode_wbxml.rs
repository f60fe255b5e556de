//! The WBXML decoder on arbitrary bytes: an error or a message, never a panic, a
//! hang or unbounded memory; plus the streaming transcoder to XML.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncml_core::{decode_with, transcode, EncodeOptions, Encoding, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = decode_with(data, Some(Encoding::Wbxml), &limits);
    let _ = transcode(data, Encoding::Xml, &EncodeOptions::default(), &limits);
});
