//! The `dm-tree` binary end to end: init, apply (on recorded third-party server
//! packets), get, export and verify, with exact expectations.

mod common;

use std::path::{Path, PathBuf};

use common::{arg, fails, init, ok, ok_text, run, TempDir};
use dm_tree::ddf::parse_ddf;
use dm_tree::doc::read_root;
use dm_tree::Format;
use syncml_core::{decode, Command, Element, Node, Results, Status, SyncMl};

const VECTORS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/aosp-dm11"
);
/// The DevId a tree gets when init is given none.
const DEFAULT_DEVID: &str = "IMEI:000000000000000";

/// A fresh tree in a new temporary directory (`state` inside it).
fn fresh(test: &str, extra: &[&str]) -> (TempDir, PathBuf) {
    let tmp = TempDir::new(test);
    let state = tmp.join("state");
    init(&state, extra);
    (tmp, state)
}

fn vector(name: &str) -> PathBuf {
    Path::new(VECTORS).join(name)
}

fn get(state: &Path, uri: &str) -> String {
    ok_text(state, &["get", uri]).trim_end().to_owned()
}

// ----- init -------------------------------------------------------------------------

#[test]
fn init_creates_the_standard_objects() {
    let tmp = TempDir::new("cli-init");
    let state = tmp.join("state");
    let out = ok_text(&state, &["init"]);
    assert!(
        out.starts_with("created ") && out.trim_end().ends_with(&format!("in {}", arg(&state))),
        "{out}"
    );
    for f in ["tree.snap", "tree.log", "ddf"] {
        assert!(state.join(f).exists(), "{f} is created");
    }
    assert_eq!(get(&state, "./DevInfo"), "DevId/DmV/Lang/Man/Mod");
    assert_eq!(get(&state, "./DevInfo/DevId"), DEFAULT_DEVID);
    assert_eq!(get(&state, "./DevInfo/DmV"), "1.2");
    let top = get(&state, ".");
    for name in ["DevInfo", "DevDetail", "DMAcc", "FUMO", "FWUpdate", "SIM"] {
        assert!(top.split('/').any(|n| n == name), "{name} in {top:?}");
    }
    // The URI limits the device publishes.
    assert_eq!(get(&state, "./DevDetail/URI/MaxDepth"), "32");
}

#[test]
fn init_writes_devinfo_values_and_full_paths() {
    let (_tmp, state) = fresh(
        "cli-devinfo",
        &[
            "--devinfo",
            "Man=Acme",
            "--devinfo",
            "DevId=IMEI:490154203237518",
            "--devinfo",
            "./DevDetail/FwV=2.5",
        ],
    );
    assert_eq!(get(&state, "./DevInfo/Man"), "Acme");
    assert_eq!(get(&state, "./DevInfo/DevId"), "IMEI:490154203237518");
    assert_eq!(get(&state, "./DevDetail/FwV"), "2.5");
    // What was not given keeps its default.
    assert_eq!(get(&state, "./DevInfo/Mod"), "dm-tree");
}

#[test]
fn init_refuses_an_unknown_devinfo_key() {
    let tmp = TempDir::new("cli-devinfo-unknown");
    let state = tmp.join("state");
    let err = fails(&state, &["init", "--devinfo", "Nope=1"]);
    assert!(
        err.contains("./DevInfo/Nope"),
        "the message names the node: {err}"
    );
    let err = fails(&state, &["init", "--devinfo", "Man"]);
    assert!(err.contains("KEY=VALUE"), "{err}");
}

#[test]
fn a_refused_init_leaves_no_tree_behind() {
    let tmp = TempDir::new("cli-init-refused");
    let state = tmp.join("state");
    fails(&state, &["init", "--devinfo", "Nope=1"]);
    // Was a bug: `init` creates and commits the store (a tree holding only the root)
    // before it writes the --devinfo values; when one is refused it exits 2 but
    // leaves tree.snap/tree.log behind. The directory then holds a one-node tree
    // that `verify` calls consistent, and every later `init` there fails with
    // "already exists".
    assert!(
        !state.join("tree.snap").exists(),
        "a refused init leaves a tree in {}",
        state.display()
    );
    init(&state, &["--devinfo", "Man=Acme"]);
    assert_eq!(get(&state, "./DevInfo/Man"), "Acme");
}

#[test]
fn init_twice_fails_and_keeps_the_tree() {
    let (_tmp, state) = fresh("cli-init-twice", &["--devinfo", "Man=Acme"]);
    let err = fails(&state, &["init", "--devinfo", "Man=Other"]);
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(get(&state, "./DevInfo/Man"), "Acme");
    ok(&state, &["verify"]);
}

// ----- apply ------------------------------------------------------------------------

/// Applies a vector as server `srv` and returns the message and the decoded reply,
/// after checking the reply's header and its Status for the SyncHdr.
fn apply_vector(state: &Path, name: &str) -> (SyncMl, SyncMl) {
    let file = vector(name);
    let msg = decode(&std::fs::read(&file).expect("read a vector")).expect("decode a vector");
    let out = ok(state, &["apply", "--server-id", "srv", arg(&file)]);
    let reply = decode(&out).unwrap_or_else(|e| {
        panic!(
            "{name}: the reply does not decode: {e}\n{}",
            String::from_utf8_lossy(&out)
        )
    });
    assert_eq!(reply.hdr.session_id, msg.hdr.session_id, "{name}");
    assert_eq!(reply.hdr.target.loc_uri, msg.hdr.source.loc_uri, "{name}");
    assert_eq!(reply.hdr.source.loc_uri, msg.hdr.target.loc_uri, "{name}");
    let Some(Command::Status(h)) = reply.body.commands.first() else {
        panic!("{name}: the reply does not start with a Status: {reply:?}");
    };
    assert_eq!(
        (h.cmd.as_str(), h.cmd_ref, h.msg_ref, h.data.code()),
        ("SyncHdr", 0, Some(msg.hdr.msg_id), 200),
        "{name}"
    );
    for c in &reply.body.commands {
        if let Command::Status(s) = c {
            assert_eq!(s.msg_ref, Some(msg.hdr.msg_id), "{name}: MsgRef of {s:?}");
        }
    }
    (msg, reply)
}

/// The Status commands after the header's.
fn statuses(reply: &SyncMl) -> Vec<&Status> {
    reply
        .body
        .commands
        .iter()
        .skip(1)
        .filter_map(|c| match c {
            Command::Status(s) => Some(s),
            _ => None,
        })
        .collect()
}

/// (Cmd, CmdRef, code) of each Status after the header's.
fn codes(reply: &SyncMl) -> Vec<(String, u32, u16)> {
    statuses(reply)
        .iter()
        .map(|s| (s.cmd.clone(), s.cmd_ref, s.data.code()))
        .collect()
}

fn expect(list: &[(&str, u32, u16)]) -> Vec<(String, u32, u16)> {
    list.iter().map(|&(c, r, n)| (c.to_owned(), r, n)).collect()
}

fn results(reply: &SyncMl) -> Vec<&Results> {
    reply
        .body
        .commands
        .iter()
        .filter_map(|c| match c {
            Command::Results(r) => Some(r),
            _ => None,
        })
        .collect()
}

fn item_texts(items: &[syncml_core::Item]) -> Vec<String> {
    items
        .iter()
        .map(|i| i.data_str().unwrap_or_default().to_owned())
        .collect()
}

/// A Get answered with 200 and one Results item (Source = the node) right after.
fn assert_get_result(reply: &SyncMl, get_id: u32, uri: &str, value: &str) {
    assert_eq!(codes(reply), expect(&[("Get", get_id, 200)]));
    assert_eq!(statuses(reply)[0].target_ref, vec![uri.to_owned()]);
    assert!(
        matches!(reply.body.commands.get(2), Some(Command::Results(_))),
        "Results follow the Status"
    );
    let rs = results(reply);
    assert_eq!(rs.len(), 1);
    assert_eq!(rs[0].cmd_ref, get_id);
    assert_eq!(rs[0].items.len(), 1);
    let item = &rs[0].items[0];
    assert_eq!(item.source.as_ref().map(|s| s.loc_uri.as_str()), Some(uri));
    assert_eq!(item_texts(&rs[0].items), vec![value.to_owned()]);
}

#[test]
fn apply_get_vectors() {
    let (_tmp, state) = fresh("cli-vec-get", &[]);
    let (_, reply) = apply_vector(&state, "testgetscript.xml");
    assert_get_result(&reply, 1, "./DevInfo/DevId", DEFAULT_DEVID);

    let (_, reply) = apply_vector(&state, "testget.wbxml");
    assert_get_result(&reply, 4, "./DevDetail/URI/MaxDepth", "32");
}

#[test]
fn apply_add_then_delete_vectors() {
    let (_tmp, state) = fresh("cli-vec-add", &[]);
    let (_, reply) = apply_vector(&state, "testadd.wbxml");
    assert_eq!(codes(&reply), expect(&[("Add", 4, 200)]));
    assert_eq!(statuses(&reply)[0].target_ref, vec!["./TestLeafNode"]);
    assert!(results(&reply).is_empty());
    assert_eq!(get(&state, "./TestLeafNode?prop=Format"), "node");
    // The creating server may manage what it created (Add, Delete, Get, Replace).
    assert_eq!(
        get(&state, "./TestLeafNode?prop=ACL"),
        "Add=srv&Delete=srv&Get=srv&Replace=srv"
    );

    let (_, reply) = apply_vector(&state, "testdelete.wbxml");
    assert_eq!(
        codes(&reply),
        expect(&[("Delete", 4, 200), ("Delete", 5, 404)])
    );
    let targets: Vec<_> = statuses(&reply)
        .iter()
        .map(|s| s.target_ref.clone())
        .collect();
    assert_eq!(targets, vec![vec!["./TestLeafNode"], vec!["./TestLeaf"]]);
    let err = fails(&state, &["get", "./TestLeafNode"]);
    assert!(err.contains("./TestLeafNode"), "{err}");
}

#[test]
fn apply_delete_vector_on_a_fresh_tree() {
    let (_tmp, state) = fresh("cli-vec-delete", &[]);
    let before = get(&state, ".?list=StructData");
    let (_, reply) = apply_vector(&state, "testdelete.wbxml");
    assert_eq!(
        codes(&reply),
        expect(&[("Delete", 4, 404), ("Delete", 5, 404)])
    );
    assert_eq!(get(&state, ".?list=StructData"), before);
}

#[test]
fn apply_exec_vector_without_exec_rights() {
    let (_tmp, state) = fresh("cli-vec-exec", &[]);
    // The root ACL (Add=*&Get=*) grants no Exec.
    for name in ["testexecscript.xml", "testexecscript2.xml"] {
        let (_, reply) = apply_vector(&state, name);
        assert_eq!(codes(&reply), expect(&[("Exec", 1, 425)]), "{name}");
        assert_eq!(statuses(&reply)[0].target_ref, vec!["."], "{name}");
        assert!(results(&reply).is_empty(), "{name}");
    }
}

#[test]
fn apply_alert_vectors() {
    let (_tmp, state) = fresh("cli-vec-alert", &[]);
    let alert_items = |name: &str, cmd_id: u32| {
        let (_, reply) = apply_vector(&state, name);
        assert_eq!(codes(&reply), expect(&[("Alert", cmd_id, 200)]), "{name}");
        item_texts(&statuses(&reply)[0].items)
    };
    assert!(alert_items("testalertdisplay.xml", 1).is_empty());
    // Confirmation with DR=1: the default answer is yes.
    assert!(alert_items("testalertconfirm.xml", 2).is_empty());
    assert_eq!(
        alert_items("testalerttextinput.xml", 1),
        vec!["hello andy!"]
    );
    assert_eq!(alert_items("testalertsinglechoice.xml", 1), vec!["2"]);
    assert_eq!(
        alert_items("testalertmultiplechoice.xml", 1),
        vec!["1", "2", "3", "6"]
    );
}

#[test]
fn apply_atomic_with_a_declined_alert() {
    let (_tmp, state) = fresh("cli-vec-atomic", &[]);
    let before = get(&state, ".?list=StructData");
    let (_, reply) = apply_vector(&state, "testalertconfirmatomic.xml");
    // No DR: the confirmation is declined (304), which fails the Atomic (507), and
    // the Replace after it is not executed (215).
    assert_eq!(
        codes(&reply),
        expect(&[("Atomic", 1, 507), ("Alert", 2, 304), ("Replace", 3, 215)])
    );
    assert_eq!(get(&state, ".?list=StructData"), before);
}

#[test]
fn apply_client_replace_vector() {
    let (_tmp, state) = fresh("cli-vec-replace", &[]);
    let before = get(&state, ".?list=StructData");
    let (_, reply) = apply_vector(&state, "testreplace.wbxml");
    // A client's message: Alert 1201 (answered 200), then one Replace whose items
    // carry Source, not Target: each item is incomplete (412).
    let sources = [
        "./DevInfo/DevId",
        "./DevInfo/DmV",
        "./DevInfo/Lang",
        "./DevInfo/Man",
        "./DevInfo/Mod",
        "./DevInfo/Bearer/GSM",
        "./DevInfo/Sort",
        "./DevInfo/Loc",
        "./DevInfo/LangAuto",
    ];
    let mut want = vec![("Alert", 1, 200)];
    want.extend(sources.iter().map(|_| ("Replace", 2, 412)));
    assert_eq!(codes(&reply), expect(&want));
    let refs: Vec<Vec<String>> = statuses(&reply)[1..]
        .iter()
        .map(|s| s.source_ref.clone())
        .collect();
    let want: Vec<Vec<String>> = sources.iter().map(|s| vec![s.to_string()]).collect();
    assert_eq!(refs, want);
    assert_eq!(get(&state, ".?list=StructData"), before);
}

#[test]
fn apply_wbxml_output_decodes_to_the_xml_reply() {
    let tmp = TempDir::new("cli-wbxml");
    for name in [
        "testgetscript.xml",
        "testget.wbxml",
        "testadd.wbxml",
        "testalertmultiplechoice.xml",
        "testalertconfirmatomic.xml",
    ] {
        // The same message on two fresh trees: XML to standard output, WBXML to a
        // file.
        let (a, b) = (
            tmp.join(&format!("{name}-a")),
            tmp.join(&format!("{name}-b")),
        );
        init(&a, &[]);
        init(&b, &[]);
        let file = vector(name);
        let xml = ok(&a, &["apply", "--server-id", "srv", arg(&file)]);
        let out = tmp.join(&format!("{name}.reply.wbxml"));
        let printed = ok(
            &b,
            &[
                "apply",
                "--server-id",
                "srv",
                arg(&file),
                "--wbxml",
                "-o",
                arg(&out),
            ],
        );
        assert!(printed.is_empty(), "{name}: nothing on standard output");
        let wbxml = std::fs::read(&out).unwrap();
        assert!(
            wbxml.first().is_some_and(|&v| v == 0x02 || v == 0x03),
            "{name}: a WBXML document"
        );
        let from_xml = decode(&xml).unwrap();
        let from_wbxml = decode(&wbxml).unwrap();
        assert_eq!(from_wbxml, from_xml, "{name}");
    }
}

// ----- get and export -----------------------------------------------------------------

/// (path, Value) of every Node of a TNDS document.
fn tnds_nodes(root: &Element) -> Vec<(String, Option<String>)> {
    fn walk(e: &Element, parent: Option<&str>, out: &mut Vec<(String, Option<String>)>) {
        for c in &e.children {
            let Node::Element(n) = c else { continue };
            if n.name != "Node" {
                continue;
            }
            let name = n.child("NodeName").map(|x| x.text()).unwrap_or_default();
            let parent = match (n.child("Path"), parent) {
                (Some(p), _) => p.text().trim().to_owned(),
                (None, Some(p)) => p.to_owned(),
                (None, None) => ".".to_owned(),
            };
            let path = format!("{parent}/{}", name.trim());
            out.push((path.clone(), n.child("Value").map(|v| v.text())));
            walk(n, Some(&path), out);
        }
    }
    let mut out = Vec::new();
    walk(root, None, &mut out);
    out
}

fn value_in(nodes: &[(String, Option<String>)], path: &str) -> Option<String> {
    nodes
        .iter()
        .find(|(p, _)| p == path)
        .and_then(|(_, v)| v.clone())
}

#[test]
fn export_tnds_holds_the_tree() {
    let (tmp, state) = fresh("cli-export", &["--devinfo", "Man=Acme"]);
    for args in [
        &["export"][..],
        &["export", "--tnds"],
        &["export", ".", "--tnds"],
    ] {
        let doc = read_root(&ok(&state, args)).expect("a TNDS document");
        assert_eq!(doc.name, "MgmtTree", "{args:?}");
        let nodes = tnds_nodes(&doc);
        assert_eq!(
            value_in(&nodes, "./DevInfo/Man").as_deref(),
            Some("Acme"),
            "{args:?}"
        );
        assert_eq!(
            value_in(&nodes, "./DevInfo/DevId").as_deref(),
            Some(DEFAULT_DEVID)
        );
        assert!(nodes.iter().any(|(p, _)| p == "./DevDetail/URI/MaxDepth"));
    }

    // A subtree, as WBXML in a file.
    let out = tmp.join("devinfo.wbxml");
    let printed = ok(&state, &["export", "./DevInfo", "--wbxml", "-o", arg(&out)]);
    assert!(printed.is_empty());
    let doc = read_root(&std::fs::read(&out).unwrap()).expect("a WBXML TNDS document");
    let nodes = tnds_nodes(&doc);
    assert_eq!(nodes[0].0, "./DevInfo");
    assert_eq!(value_in(&nodes, "./DevInfo/Man").as_deref(), Some("Acme"));
    assert!(nodes.iter().all(|(p, _)| p.starts_with("./DevInfo")));
}

#[test]
fn export_ddf_of_devinfo_parses() {
    let (_tmp, state) = fresh("cli-export-ddf", &[]);
    let bytes = ok(&state, &["export", "./DevInfo", "--ddf"]);
    let roots = parse_ddf(&bytes).unwrap_or_else(|e| {
        panic!("{e}\n{}", String::from_utf8_lossy(&bytes));
    });
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].parent, ".");
    let devinfo = &roots[0].node;
    assert_eq!(devinfo.name.as_deref(), Some("DevInfo"));
    assert_eq!(devinfo.format, Format::Node);
    let mut names: Vec<_> = devinfo
        .children
        .iter()
        .filter_map(|c| c.name.clone())
        .collect();
    names.sort();
    for n in ["DevId", "DmV", "Lang", "Man", "Mod"] {
        assert!(names.iter().any(|x| x == n), "{n} in {names:?}");
    }
    let man = devinfo.child("Man").expect("Man is described");
    assert_eq!(man.format, Format::Chr);
}

#[test]
fn get_lists_properties_and_missing_nodes() {
    let (_tmp, state) = fresh("cli-get", &["--devinfo", "Man=Acme"]);
    let listing = ok_text(&state, &["get", ".?list=Struct"]);
    let lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines[0], ".");
    assert!(lines.contains(&"./DevInfo/Man"), "{listing}");
    assert!(lines.contains(&"./DevDetail/URI"), "{listing}");
    let data = ok_text(&state, &["get", "./DevInfo?list=StructData"]);
    assert!(data.lines().any(|l| l == "./DevInfo/Man = Acme"), "{data}");
    assert_eq!(data.lines().next(), Some("./DevInfo"));

    assert_eq!(get(&state, "./DevInfo/Man?prop=Format"), "chr");
    assert_eq!(get(&state, "./DevInfo/Man?prop=Type"), "text/plain");
    assert_eq!(get(&state, "./DevInfo/Man?prop=Size"), "4");
    assert_eq!(get(&state, "./DevInfo?prop=Format"), "node");

    let err = fails(&state, &["get", "./DevInfo/Nope"]);
    assert!(err.contains("./DevInfo/Nope"), "{err}");
    let err = fails(&state, &["export", "./Vendor/X"]);
    assert!(err.contains("./Vendor/X"), "{err}");
}

#[test]
fn commands_without_a_tree_say_to_run_init() {
    let tmp = TempDir::new("cli-no-tree");
    let state = tmp.join("nothing-here");
    let file = vector("testgetscript.xml");
    for args in [
        &["get", "./DevInfo"][..],
        &["apply", "--server-id", "srv", arg(&file)],
        &["export"],
        &["export", "./DevInfo", "--ddf"],
    ] {
        let err = fails(&state, args);
        assert!(
            err.contains("init"),
            "{args:?}: the message says to run init: {err}"
        );
        assert!(err.contains(arg(&state)), "{args:?}: {err}");
    }
    assert!(!state.exists(), "nothing is created");
}

#[test]
fn verify_without_a_tree_says_to_run_init() {
    let tmp = TempDir::new("cli-verify-no-tree");
    let state = tmp.join("nothing-here");
    let err = fails(&state, &["verify"]);
    // Was a bug: `verify` on a directory without a tree reports "damaged store:
    // .../tree.snap is missing" (exit 2) instead of saying there is no tree and
    // to run `init`, as the other commands do.
    assert!(err.contains("init"), "{err}");
}

#[test]
fn the_no_tree_message_reads_well() {
    let tmp = TempDir::new("cli-no-tree-message");
    let state = tmp.join("nothing-here");
    let err = fails(&state, &["get", "./DevInfo"]);
    // Was a bug: the message is wrapped in Error::NotFound, whose Display prefixes "no
    // node at", so it reads "dm-tree: no node at no tree in DIR (create one with
    // `dm-tree --state DIR init`)".
    assert!(!err.contains("no node at no tree"), "{err}");
}

// ----- verify -----------------------------------------------------------------------

#[test]
fn verify_accepts_a_fresh_tree_and_refuses_a_flipped_byte() {
    let (_tmp, state) = fresh("cli-verify", &[]);
    let report = ok_text(&state, &["verify"]);
    assert!(report.starts_with("consistent: generation "), "{report}");
    assert!(!report.contains("problem"), "{report}");

    let snap = state.join("tree.snap");
    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&snap, &bytes).unwrap();
    let out = run(&state, &["verify"]);
    assert!(!out.status.success(), "a flipped byte is detected");
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        msg.contains("tree.snap"),
        "the message names the file: {msg}"
    );
    // The damaged store is not opened for use either.
    let err = fails(&state, &["get", "./DevInfo/Man"]);
    assert!(err.contains("tree.snap"), "{err}");
}

#[test]
fn verify_refuses_a_flipped_byte_in_a_committed_record() {
    // init commits the standard objects as the log's first record; an apply adds a
    // second, so that damage in the first is not an interrupted last commit.
    let (_tmp, state) = fresh("cli-verify-log", &[]);
    apply_vector(&state, "testadd.wbxml");
    let report = ok_text(&state, &["verify"]);
    assert!(report.contains(", 2 commits,"), "{report}");
    let log = state.join("tree.log");
    let mut bytes = std::fs::read(&log).unwrap();
    // Past the file header (20 bytes) and the first record's head (13 bytes).
    bytes[20 + 13 + 8] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let out = run(&state, &["verify"]);
    assert!(!out.status.success(), "a flipped byte is detected");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("tree.log"),
        "the message names the file: {msg}"
    );
    assert_eq!(
        std::fs::read(&log).unwrap(),
        bytes,
        "verify changes nothing"
    );
}
