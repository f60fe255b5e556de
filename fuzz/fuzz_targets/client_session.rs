//! The client session engine fed arbitrary server messages: a device with a DM
//! account for the fixtures' server sends package 1, then each message of the input
//! (up to 8, separated by `fuzz::SEPARATOR`) is the server's reply to the last one.
//! Commands run on the device's in-memory tree; downloads fail. Every message the
//! device sends must decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncml_dm_fuzz::{run_client, split_messages};

syncml_dm_fuzz::asan_options!();

fuzz_target!(|data: &[u8]| {
    run_client(&split_messages(data));
});
