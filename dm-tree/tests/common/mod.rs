//! Helpers shared by the end-to-end tests: temporary state directories, running the
//! `dm-tree` binary, and building server messages.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use syncml_core::{DmVersion, MessageBuilder, SyncMl};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_dm-tree");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A directory under the system temporary directory, removed when dropped (kept,
/// for a post-mortem, when `DM_TREE_TEST_KEEP` is set).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A new, empty directory named after the process, the test and a counter.
    pub fn new(test: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("dm-tree-test-{}-{test}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("DM_TREE_TEST_KEEP").is_some() {
            eprintln!("kept {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A path as a command-line argument.
pub fn arg(p: &Path) -> &str {
    p.to_str().expect("temporary paths are UTF-8")
}

/// `dm-tree --state STATE ARGS...`, ready to run.
pub fn command(state: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("DM_TREE_STATE")
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Runs `dm-tree --state STATE ARGS...` to completion.
pub fn run(state: &Path, args: &[&str]) -> Output {
    command(state, args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {BIN}: {e}"))
}

fn describe(args: &[&str], out: &Output) -> String {
    format!(
        "dm-tree {args:?}: {}\n--- stdout:\n{}\n--- stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs the binary, asserts that it succeeded, and returns its standard output.
pub fn ok(state: &Path, args: &[&str]) -> Vec<u8> {
    let out = run(state, args);
    assert!(out.status.success(), "{}", describe(args, &out));
    out.stdout
}

/// Like [`ok`], with the output as text.
pub fn ok_text(state: &Path, args: &[&str]) -> String {
    String::from_utf8(ok(state, args)).expect("UTF-8 output")
}

/// Runs the binary, asserts that it failed, and returns its standard error.
pub fn fails(state: &Path, args: &[&str]) -> String {
    let out = run(state, args);
    assert!(
        !out.status.success(),
        "expected a failure: {}",
        describe(args, &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `dm-tree init` in `state` with these extra arguments.
pub fn init(state: &Path, extra: &[&str]) {
    let mut args = vec!["init"];
    args.extend_from_slice(extra);
    ok(state, &args);
}

/// The tree's paths and leaf values (`get '.?list=StructData'`): everything that
/// identifies a state except the TStamp and VerNo properties.
pub fn struct_data(state: &Path) -> String {
    ok_text(state, &["get", ".?list=StructData"])
}

/// A builder for a server message to the device.
pub fn server_message(msg_id: u32) -> MessageBuilder {
    MessageBuilder::new(
        DmVersion::V1_2,
        "42",
        msg_id,
        "IMEI:000000000000000",
        "https://dm.example.com/manage",
    )
}

/// Encodes a message as XML into `path`.
pub fn write_message(path: &Path, msg: &SyncMl) {
    let bytes = syncml_core::encode(msg, syncml_core::Encoding::Xml).expect("encode a message");
    std::fs::write(path, bytes).expect("write a message file");
}
