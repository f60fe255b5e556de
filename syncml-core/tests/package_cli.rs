//! `syncml package`: keygen, build, inspect and apply, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn syncml(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_syncml"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A fresh directory for one test.
fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("syncml-pkg-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `syncml package build` of a full package for model X1, version 2.0.
fn build_full(new: &Path, pkg: &Path) -> Output {
    syncml(&[
        "package",
        "build",
        "--model",
        "X1",
        "--to-version",
        "2.0",
        "--full",
        s(new),
        "-o",
        s(pkg),
    ])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Old and new images written in `d`: 64 KiB of noise, then a changed copy.
fn images(d: &Path) -> (PathBuf, PathBuf, Vec<u8>) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let old: Vec<u8> = (0..65536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let mut new = old.clone();
    new[1000..1010].copy_from_slice(b"version 2!");
    new.extend_from_slice(b"appended in 2.0");
    let (o, n) = (d.join("old.bin"), d.join("new.bin"));
    std::fs::write(&o, &old).unwrap();
    std::fs::write(&n, &new).unwrap();
    (o, n, new)
}

fn keygen(d: &Path, name: &str) -> PathBuf {
    let key = d.join(name);
    let out = syncml(&["package", "keygen", "-o", s(&key)]);
    assert!(out.status.success(), "{:?}", text(&out));
    key
}

#[test]
fn keygen_writes_a_private_key_and_its_public_half() {
    let d = dir("keygen");
    let key = keygen(&d, "k");
    let secret = std::fs::read_to_string(&key).unwrap();
    let public = std::fs::read_to_string(d.join("k.pub")).unwrap();
    let sk = syncml_core::package::SigningKey::from_b64(&secret).unwrap();
    assert_eq!(sk.public().to_b64(), public.trim());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second keygen refuses to overwrite; --force makes a new pair.
    let out = syncml(&["package", "keygen", "-o", s(&key)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("--force"), "{:?}", text(&out));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), secret);
    let out = syncml(&["package", "keygen", "-o", s(&key), "--force"]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_ne!(std::fs::read_to_string(&key).unwrap(), secret);
}

#[test]
fn full_package_builds_inspects_and_applies() {
    let d = dir("full");
    let (_, new, new_bytes) = images(&d);
    let pkg = d.join("full.pkg");
    let out = build_full(&new, &pkg);
    assert!(out.status.success(), "{:?}", text(&out));
    let out = syncml(&["package", "inspect", s(&pkg)]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    for line in [
        "model: X1\n",
        "component: firmware\n",
        "from-version: (any)\n",
        "to-version: 2.0\n",
        "kind: full\n",
        &format!("payload-length: {}\n", new_bytes.len()),
        "signature: (none)\n",
        "check integrity: ok\n",
        "check signature: not checked",
    ] {
        assert!(stdout.contains(line), "{line:?} missing from\n{stdout}");
    }
    let rebuilt = d.join("rebuilt.bin");
    let out = syncml(&["package", "apply", s(&pkg), "-o", s(&rebuilt)]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(std::fs::read(&rebuilt).unwrap(), new_bytes);
}

#[test]
fn signed_delta_verifies_with_its_key_and_rebuilds_the_image() {
    let d = dir("delta");
    let (old, new, new_bytes) = images(&d);
    let key = keygen(&d, "k");
    keygen(&d, "other");
    let pkg = d.join("delta.pkg");
    let out = syncml(&[
        "package",
        "build",
        "--model",
        "X1",
        "--component",
        "modem",
        "--from-version",
        "1.0",
        "--to-version",
        "2.0",
        "--delta",
        s(&old),
        s(&new),
        "--sign",
        s(&key),
        "-o",
        s(&pkg),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert!(
        std::fs::metadata(&pkg).unwrap().len() < 4096,
        "delta is small"
    );

    let public = d.join("k.pub");
    let out = syncml(&["package", "inspect", s(&pkg), "--verify-key", s(&public)]);
    let (stdout, _) = text(&out);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("kind: delta\n") && stdout.contains("component: modem\n"));
    assert!(stdout.contains("check signature: ok\n"), "{stdout}");
    // The key may be given as base64 text, and among several.
    let b64 = std::fs::read_to_string(&public).unwrap();
    let other_pub = d.join("other.pub");
    let out = syncml(&[
        "package",
        "inspect",
        s(&pkg),
        "--verify-key",
        s(&other_pub),
        "--verify-key",
        b64.trim(),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    // The wrong key fails the inspection.
    let out = syncml(&["package", "inspect", s(&pkg), "--verify-key", s(&other_pub)]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("check signature: FAILED"), "{stdout}");
    assert!(stdout.contains("check integrity: ok"), "{stdout}");
    assert!(stderr.contains("1 check(s) failed"), "{stderr}");

    let rebuilt = d.join("rebuilt.bin");
    let out = syncml(&[
        "package",
        "apply",
        s(&pkg),
        "--old",
        s(&old),
        "--verify-key",
        s(&public),
        "-o",
        s(&rebuilt),
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
    assert_eq!(std::fs::read(&rebuilt).unwrap(), new_bytes);
    // Refused: a wrong key, no old image, the wrong old image.
    let out = syncml(&[
        "package",
        "apply",
        s(&pkg),
        "--old",
        s(&old),
        "--verify-key",
        s(&other_pub),
        "-o",
        s(&rebuilt),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("FUMO result 404"), "{:?}", text(&out));
    let out = syncml(&["package", "apply", s(&pkg), "-o", s(&rebuilt)]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("--old"), "{:?}", text(&out));
    let out = syncml(&[
        "package",
        "apply",
        s(&pkg),
        "--old",
        s(&new),
        "-o",
        s(&rebuilt),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("FUMO result 402"), "{:?}", text(&out));
}

#[test]
fn inspect_fails_on_a_corrupted_or_foreign_file() {
    let d = dir("corrupt");
    let (_, new, _) = images(&d);
    let pkg = d.join("p.pkg");
    let out = build_full(&new, &pkg);
    assert!(out.status.success(), "{:?}", text(&out));
    let mut bytes = std::fs::read(&pkg).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xFF;
    std::fs::write(&pkg, &bytes).unwrap();
    let out = syncml(&["package", "inspect", s(&pkg)]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("check integrity: FAILED: payload CRC-32"),
        "{stdout}"
    );

    // A header byte: the header CRC catches it before any field is trusted.
    bytes[last] ^= 0xFF;
    bytes[20] ^= 0x01;
    std::fs::write(&pkg, &bytes).unwrap();
    let out = syncml(&["package", "inspect", s(&pkg)]);
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("header: FAILED: header CRC-32 mismatch"),
        "{stdout}"
    );

    let out = syncml(&["package", "inspect", s(&new)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out)
        .0
        .contains("header: FAILED: not an update package"));
    let out = syncml(&["package", "inspect", s(&d.join("missing.pkg"))]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn build_refuses_bad_arguments() {
    let d = dir("args");
    let (old, new, _) = images(&d);
    let pkg = d.join("p.pkg");
    // A delta needs --from-version.
    let out = syncml(&[
        "package",
        "build",
        "--model",
        "X1",
        "--to-version",
        "2.0",
        "--delta",
        s(&old),
        s(&new),
        "-o",
        s(&pkg),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).1.contains("from-version is empty"),
        "{:?}",
        text(&out)
    );
    assert!(!pkg.exists());
    // --full and --delta exclude each other; one is required.
    let out = syncml(&[
        "package",
        "build",
        "--model",
        "X1",
        "--to-version",
        "2.0",
        "--full",
        s(&new),
        "--delta",
        s(&old),
        s(&new),
        "-o",
        s(&pkg),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = syncml(&[
        "package",
        "build",
        "--model",
        "X1",
        "--to-version",
        "2.0",
        "-o",
        s(&pkg),
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A signing key that is not one.
    let bad_key = d.join("bad.key");
    std::fs::write(&bad_key, "not a key").unwrap();
    let out = syncml(&[
        "package",
        "build",
        "--model",
        "X1",
        "--to-version",
        "2.0",
        "--full",
        s(&new),
        "--sign",
        s(&bad_key),
        "-o",
        s(&pkg),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).1.contains("bad key"), "{:?}", text(&out));
    assert!(!pkg.exists());
}
