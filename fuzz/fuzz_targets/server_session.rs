//! The server session engine fed arbitrary request bodies: `Server::handle_dm` on a
//! SQLite store with provisioned devices (one without credentials, so bodies naming
//! it get past authentication into command delivery and result handling) and
//! queued commands. An input is up to 8 messages separated by `fuzz::SEPARATOR`,
//! posted in turn to the RespURI of the previous reply. Every reply with a body
//! must decode.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syncml_dm_fuzz::{split_messages, ServerRig};

syncml_dm_fuzz::asan_options!();

fuzz_target!(|data: &[u8]| {
    ServerRig::get().run(&split_messages(data));
});
