//! Helpers shared by the integration tests (included with `mod common;`).
#![allow(dead_code)]

use std::path::PathBuf;

/// The third-party vectors in the shared folder beside the repository. They are
/// not copied into the repository; the test fails (never skips) without them.
pub fn vectors_dir() -> PathBuf {
    let dir = std::env::var_os("SYNCML_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/vectors/aosp-dm11"
            ))
        });
    assert!(
        dir.is_dir(),
        "{} is missing: clone the repository beside shared/ or set SYNCML_VECTORS",
        dir.display()
    );
    dir
}

pub fn vector(name: &str) -> Vec<u8> {
    std::fs::read(vectors_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A Status for a SyncHdr (MsgRef 1) with this code and challenge.
pub fn header_status(
    code: syncml_core::StatusCode,
    chal: Option<syncml_core::Chal>,
) -> syncml_core::Status {
    syncml_core::Status {
        cmd_id: 1,
        msg_ref: Some(1),
        cmd_ref: 0,
        cmd: "SyncHdr".into(),
        target_ref: vec![],
        source_ref: vec![],
        cred: None,
        chal,
        data: code,
        items: vec![],
        extra: vec![],
    }
}
