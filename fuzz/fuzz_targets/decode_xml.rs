//! The XML decoder on arbitrary bytes: an error or a message, never a panic, a hang
//! or unbounded memory. The streaming transcoder (what the CLI runs) reads the same
//! bytes one command at a time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncml_core::{decode_with, transcode, EncodeOptions, Encoding, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let _ = decode_with(data, Some(Encoding::Xml), &limits);
    let _ = transcode(data, Encoding::Wbxml, &EncodeOptions::default(), &limits);
    // The generic element reader (DDF, TNDS documents) over the same bytes.
    let _ = dm_tree::doc::read_root(data);
});
