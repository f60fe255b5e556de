//! The `syncml` command-line tool, run as a user would.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn syncml(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_syncml"))
        .args(args)
        .env_remove("SYNCML_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(b) = stdin {
        input.write_all(b).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// `syncml` with arguments given as one line (none may contain spaces).
fn syncml_line(line: &str) -> Output {
    syncml(&line.split_whitespace().collect::<Vec<_>>(), None)
}

fn fixture(name: &str) -> String {
    fixtures::messages_dir()
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("syncml-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name).to_string_lossy().into_owned()
}

#[test]
fn decode_prints_indented_xml_whatever_the_encoding() {
    let v = common::vectors_dir().join("testreplace.wbxml");
    let out = syncml(&["decode", v.to_str().unwrap()], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.contains("<SyncML xmlns=\"SYNCML:SYNCML1.1\">"), "{xml}");
    assert!(xml.contains("\n    <VerDTD>1.1</VerDTD>\n"), "{xml}");
    assert!(xml.contains("<LocURI>./DevInfo/DevId</LocURI>"));
    // The decoded XML is itself a valid message with the same content.
    let a = syncml_core::decode(&std::fs::read(&v).unwrap()).unwrap();
    assert_eq!(syncml_core::decode(xml.as_bytes()).unwrap(), a);
}

#[test]
fn encode_to_wbxml_and_back_through_files_and_stdin() {
    let src = fixture("ext-firmware-commands.xml");
    let wb = tmp("ext.wbxml");
    let out = syncml(&["encode", "--to", "wbxml", &src, "-o", &wb], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&wb).unwrap();
    assert_eq!(
        &bytes[..3],
        &[0x02, 0xA4, 0x01],
        "WBXML 1.2, public id 0x1201"
    );

    let out = syncml(&["encode", "--to", "xml", "-"], Some(&bytes));
    assert!(out.status.success());
    let original = syncml_core::decode(&std::fs::read(&src).unwrap()).unwrap();
    assert_eq!(syncml_core::decode(&out.stdout).unwrap(), original);
    assert!(!out.stdout.contains(&b'\n'), "compact XML by default");

    let out = syncml(
        &[
            "encode",
            "--to",
            "wbxml",
            "--no-string-table",
            "--wbxml-version",
            "1.3",
            &src,
        ],
        None,
    );
    assert!(out.status.success());
    assert_eq!(out.stdout[0], 0x03);
    assert!(
        out.stdout.len() > bytes.len(),
        "no string table makes it larger"
    );
    assert_eq!(syncml_core::decode(&out.stdout).unwrap(), original);
}

#[test]
fn check_accepts_valid_and_names_the_offset_of_invalid() {
    let out = syncml(&["check", &fixture("pkg2-server-commands.xml")], None);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("12 commands"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let bad = b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD><MsgID>x</MsgID></SyncHdr></SyncML>";
    let out = syncml(&["check", "-"], Some(bad));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("<stdin>: at byte "), "{err}");
    assert!(err.contains("MsgID"), "{err}");

    let mut w = std::fs::read(common::vectors_dir().join("testadd.wbxml")).unwrap();
    w.truncate(200);
    let out = syncml(&["check", "-"], Some(&w));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("at byte ") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn content_type_and_limits_flags() {
    let src = fixture("pkg1-client-init.xml");
    let out = syncml(
        &[
            "check",
            "--content-type",
            "application/vnd.syncml+xml",
            &src,
        ],
        None,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = syncml(
        &[
            "check",
            "--content-type",
            "application/vnd.syncml.dm+wbxml",
            &src,
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let out = syncml(&["check", "--max-message-size", "100", &src], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exceeds the limit of 100"));
    let out = syncml(&["check", "/nonexistent/file.xml"], None);
    assert_eq!(out.status.code(), Some(2));
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn cred_prints_the_specification_vectors() {
    let basic = syncml(
        &[
            "cred",
            "basic",
            "--user",
            "Bruce2",
            "--password",
            "OhBehave",
        ],
        None,
    );
    assert_eq!(stdout_of(&basic), "QnJ1Y2UyOk9oQmVoYXZl\n");
    let md5 = syncml(
        &[
            "cred",
            "md5",
            "--user",
            "Bruce2",
            "--password",
            "OhBehave",
            "--nonce-b64",
            "Tm9uY2U=",
        ],
        None,
    );
    assert_eq!(stdout_of(&md5), "Zz6EivR3yeaaENcRN6lpAQ==\n");
    // MD5 needs a nonce; a nonce that is not base64 is refused with exit 1.
    assert_eq!(
        syncml(&["cred", "md5", "--user", "u", "--password", "p"], None)
            .status
            .code(),
        Some(2)
    );
    let bad = syncml_line("cred md5 --user u --password p --nonce-b64 %%");
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not valid base64"));
}

#[test]
fn password_can_come_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_syncml"))
        .args(["cred", "basic", "--user", "Bruce2"])
        .env("SYNCML_PASSWORD", "OhBehave")
        .output()
        .unwrap();
    assert_eq!(stdout_of(&out), "QnJ1Y2UyOk9oQmVoYXZl\n");
}

#[test]
fn hmac_prints_and_verifies_the_header_for_the_exact_bytes() {
    let file = fixture("pkg1-client-init.xml");
    let args: Vec<&str> = "hmac --user dev --password pw --nonce-b64 AAECAw=="
        .split_whitespace()
        .collect();
    let mut with_file = args.to_vec();
    with_file.push(&file);
    let header = stdout_of(&syncml(&with_file, None));
    assert!(
        header.starts_with("algorithm=MD5, username=\"dev\", mac="),
        "{header}"
    );
    // Standard input gives the same value for the same bytes.
    let bytes = std::fs::read(&file).unwrap();
    let mut from_stdin = args.to_vec();
    from_stdin.push("-");
    assert_eq!(stdout_of(&syncml(&from_stdin, Some(&bytes))), header);
    // --verify accepts it for these bytes and refuses it for one changed byte.
    let header = header.trim_end();
    let mut verify = args.to_vec();
    verify.extend(["--verify", header, "-"]);
    assert!(syncml(&verify, Some(&bytes)).status.success());
    let mut altered = bytes.clone();
    altered[10] ^= 0x20;
    let refused = syncml(&verify, Some(&altered));
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("do not match"));
}

/// Runs `syncml notify build ARGS -o OUT` and checks that it succeeds.
fn notify_build(args: &str, out: &str) {
    let mut argv = vec!["notify", "build"];
    argv.extend(args.split_whitespace());
    argv.extend(["-o", out]);
    let build = syncml(&argv, None);
    assert!(
        build.status.success(),
        "{}",
        String::from_utf8_lossy(&build.stderr)
    );
}

#[test]
fn notify_build_then_parse() {
    let out = tmp("pkg0.bin");
    notify_build(
        "--server-id dm.example.com --password srv-pw --nonce-b64 AAECAw== \
         --session-id 00BEEF --ui-mode user-interaction --vendor-hex cafe",
        &out,
    );
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(bytes.len(), 16 + 8 + 14 + 2);

    let fields = stdout_of(&syncml(&["notify", "parse", &out], None));
    for want in [
        "version: 11\n",
        "ui-mode: user-interaction\n",
        "initiator: server\n",
        "session-id: BEEF (decimal 48879)\n",
        "server-id: dm.example.com\n",
        "vendor: 2 bytes cafe\n",
    ] {
        assert!(fields.contains(want), "{want:?} missing from:\n{fields}");
    }
    assert!(!fields.contains("verified"), "no password, no verdict");

    let check = |pw: &str, nonce: &str| {
        syncml(
            &[
                "notify",
                "parse",
                &out,
                "--password",
                pw,
                "--nonce-b64",
                nonce,
            ],
            None,
        )
    };
    let good = check("srv-pw", "AAECAw==");
    assert!(stdout_of(&good).contains("verified: yes"));
    let wrong_pw = check("other", "AAECAw==");
    assert_eq!(wrong_pw.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_pw.stdout).contains("verified: no"));
    assert_eq!(check("srv-pw", "AAECAA==").status.code(), Some(1));

    // A truncated message is refused with the reason.
    let cut = syncml(&["notify", "parse", "-"], Some(&bytes[..20]));
    assert_eq!(cut.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&cut.stderr).contains("too few"));
}

#[test]
fn notify_parse_can_fall_back_to_the_reset_nonce() {
    let out = tmp("pkg0-reset.bin");
    // "MHgwMDAwMDAwMA==" is the base64 of the text 0x00000000.
    notify_build(
        "--server-id s --password p --nonce-b64 MHgwMDAwMDAwMA== --session-id 1 --ui-mode background",
        &out,
    );
    let parse = [
        "notify",
        "parse",
        &out,
        "--password",
        "p",
        "--nonce-b64",
        "AAAA",
    ];
    assert_eq!(syncml(&parse, None).status.code(), Some(1));
    let reset = syncml(&[&parse[..], &["--try-reset-nonce"]].concat(), None);
    assert!(stdout_of(&reset).contains("verified: yes (with the reset nonce"));
}

#[test]
fn hmac_verify_names_what_is_wrong() {
    let file = fixture("pkg1-client-init.xml");
    let run = |header: &str| {
        let mut args: Vec<&str> = "hmac --user dev --password pw --nonce-b64 AAAA"
            .split_whitespace()
            .collect();
        args.extend(["--verify", header, &file]);
        syncml(&args, None)
    };
    let garbled = run("algorithm=SHA1, username=\"dev\", mac=AAAAAAAAAAAAAAAAAAAAAA==");
    assert_eq!(garbled.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&garbled.stderr).contains("unsupported algorithm"));
    let other_user = run("username=\"eve\", mac=AAAAAAAAAAAAAAAAAAAAAA==");
    assert_eq!(other_user.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other_user.stderr).contains("\"eve\""));
}

#[test]
fn notify_build_refuses_what_no_device_could_read() {
    let long_id = "x".repeat(256);
    let out = syncml_line(&format!(
        "notify build --server-id {long_id} --password p --nonce-b64 AAAA --session-id 1 --ui-mode background"
    ));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("longer than 255 bytes"));
    assert!(out.stdout.is_empty(), "nothing is written on failure");
    let zero = syncml_line("notify build --server-id s --password p --nonce-b64 AAAA --session-id 0 --ui-mode background");
    assert_eq!(zero.status.code(), Some(2), "a usage error");
}
