//! The smallest program that runs a DM session: for measuring what the session
//! engine adds to a binary.
//!
//! ```sh
//! cargo build --release -p dm-client --no-default-features --example engine_size
//! strip -o /tmp/engine_size target/release/examples/engine_size
//! ```
//!
//! It builds a tree in memory with one account, runs one session with
//! `dm_tree::Headless` (no firmware agent) against a scripted reply that accepts
//! the device and ends the session, and exits 0 if the session ended normally. Built
//! without default features, no HTTP stack, download agent or CLI is linked: what
//! remains is the engine, the tree, the codecs and authentication. `scripts/footprint.sh`
//! subtracts an empty `fn main() {}` built the same way to leave the library's share.

use std::process::ExitCode;
use std::time::Instant;

use dm_client::account::{provision, AccountSpec};
use dm_client::session::{ClientSession, Config, Reply, Step, Trigger};
use dm_tree::{DmTree, Headless};
use syncml_core::{decode, encode, Encoding, MessageBuilder, StatusCode};

/// The scripted server: accepts the device's credentials and sends nothing else,
/// which ends the session.
fn server_reply(body: &[u8]) -> Result<Vec<u8>, String> {
    let dev = decode(body).map_err(|e| e.to_string())?;
    let mut b = MessageBuilder::reply_to(&dev.hdr, 1);
    b.status_for_header(StatusCode::AuthenticationAccepted);
    encode(&b.finish(), Encoding::Xml).map_err(|e| e.to_string())
}

fn session() -> Result<(), String> {
    let info = [("DevId".to_string(), "IMEI:1".to_string())];
    let mut dm = DmTree::in_memory(&info).map_err(|e| e.to_string())?;
    provision(
        &mut dm,
        &AccountSpec {
            name: "1".into(),
            server_id: "srv".into(),
            addr: "http://dm.example/dm".into(),
            auth_type: "BASIC".into(),
            user: "IMEI:1".into(),
            password: "secret".into(),
            server_auth: None,
        },
    )
    .map_err(|e| e.to_string())?;
    let trigger = Trigger::Client {
        session_id: "1".into(),
    };
    let (mut s, mut step) = ClientSession::start(
        &dm,
        Config::default(),
        "srv",
        trigger,
        Vec::new(),
        Instant::now(),
    )
    .map_err(|e| e.to_string())?;
    // One round trip; the bound stops a loop.
    for _ in 0..4 {
        step = match step {
            Step::Send(t) => {
                let reply = Reply {
                    status: 200,
                    content_type: Some(t.content_type.into()),
                    hmac: None,
                    body: server_reply(&t.body)?,
                };
                s.receive(&mut dm, &mut Headless, reply, Instant::now())
            }
            Step::Download(req) => return Err(format!("unexpected download of {}", req.url)),
            Step::Done(outcome) => return outcome.result.map_err(|e| e.to_string()),
        };
    }
    Err("the session did not end".into())
}

fn main() -> ExitCode {
    match session() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("engine_size: {e}");
            ExitCode::FAILURE
        }
    }
}
