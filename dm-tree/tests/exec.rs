//! Scenario tests of the command executor: one test per rule of PROTOCOL.md
//! sections 7 and 8, on the shipped standard objects.

use dm_tree::ddf::parse_ddf;
use dm_tree::exec::Hooks;
use dm_tree::handlers::{ExecRequest, ValueHandler};
use dm_tree::{Acl, DmTree, Format, Headless, Record, Response, Session, Tree};
use syncml_core::{
    Command, Container, Data, DmVersion, Item, ItemCmd, Location, MessageBuilder, Meta, StatusCode,
};

const NOW: u64 = 1_795_251_600;

fn clock() -> u64 {
    NOW
}

fn dm() -> DmTree {
    let mut dm = DmTree::in_memory(&[]).unwrap();
    dm.tree.set_clock(clock);
    dm
}

fn item(uri: &str, format: Option<&str>, data: Option<&str>) -> Item {
    let mut it = Item::target(uri);
    if format.is_some() {
        it.meta = Some(Box::new(Meta::format_type(format, None)));
    }
    if let Some(d) = data {
        it.data.push(Data::text(d));
    }
    it
}

fn cmd(make: fn(ItemCmd) -> Command, items: Vec<Item>) -> Command {
    let mut c = make(ItemCmd::new(items));
    c.set_cmd_id(7);
    c
}

fn add(uri: &str, format: &str, data: &str) -> Command {
    cmd(Command::Add, vec![item(uri, Some(format), Some(data))])
}

fn replace(uri: &str, data: &str) -> Command {
    cmd(Command::Replace, vec![item(uri, None, Some(data))])
}

fn delete(uri: &str) -> Command {
    cmd(Command::Delete, vec![item(uri, None, None)])
}

fn get(uri: &str) -> Command {
    cmd(Command::Get, vec![item(uri, None, None)])
}

fn exec(uri: &str, correlator: Option<&str>) -> Command {
    let mut c = ItemCmd::new(vec![item(uri, None, Some("go"))]);
    c.correlator = correlator.map(str::to_owned);
    Command::Exec(c)
}

fn container(make: fn(Container) -> Command, commands: Vec<Command>) -> Command {
    make(Container {
        cmd_id: 1,
        commands,
        ..Container::default()
    })
}

/// Runs a command as `server` and returns the codes of its responses.
fn run_as(dm: &mut DmTree, server: &str, c: &Command) -> Vec<u16> {
    codes(&Session::new(server).execute(dm, &mut Headless, c))
}

fn run(dm: &mut DmTree, c: &Command) -> Vec<u16> {
    run_as(dm, "srv", c)
}

fn codes(rs: &[Response]) -> Vec<u16> {
    rs.iter().map(|r| r.code.code()).collect()
}

/// The value a Get returns, as text.
fn get_value(dm: &mut DmTree, uri: &str) -> Option<String> {
    let rs = Session::new("srv").execute(dm, &mut Headless, &get(uri));
    rs[0]
        .results
        .first()
        .and_then(|i| i.data_str())
        .map(str::to_owned)
}

fn value(dm: &DmTree, path: &str) -> Option<Vec<u8>> {
    dm.tree
        .get(path)
        .and_then(|n| n.value().map(<[u8]>::to_vec))
}

fn set_acl(dm: &mut DmTree, path: &str, acl: &str) {
    let rec = dm.tree.get(path).unwrap().record().clone();
    dm.tree
        .put(path, rec.with_acl(Acl::parse(acl).unwrap()))
        .unwrap();
}

/// A tree whose root grants every command to everyone, for rules other than ACLs.
fn open_dm() -> DmTree {
    let mut dm = dm();
    let root = dm.tree.root().record().clone();
    let acl = Acl::parse("Add=*&Delete=*&Exec=*&Get=*&Replace=*").unwrap();
    dm.tree.put(".", root.with_acl(acl)).unwrap();
    dm.tree.commit().unwrap();
    dm
}

#[test]
fn add_get_replace_delete() {
    let mut dm = dm();
    assert_eq!(run(&mut dm, &add("./Vendor/x", "int", " 42 ")), [200]);
    assert_eq!(get_value(&mut dm, "./Vendor/x").as_deref(), Some("42"));
    assert_eq!(run(&mut dm, &add("./Vendor/x", "int", "1")), [418]);
    assert_eq!(run(&mut dm, &replace("./Vendor/x", "43")), [200]);
    assert_eq!(get_value(&mut dm, "Vendor/x").as_deref(), Some("43"));
    assert_eq!(run(&mut dm, &replace("./Vendor/nope", "1")), [404]);
    assert!(!dm.tree.contains("./Vendor/nope"), "Replace never creates");
    assert_eq!(run(&mut dm, &delete("./Vendor/x")), [200]);
    assert_eq!(run(&mut dm, &delete("./Vendor/x")), [404]);
    assert_eq!(run(&mut dm, &get("./Vendor/x")), [404]);
}

#[test]
fn interior_get_lists_children_with_format_node() {
    let mut dm = dm();
    let rs = Session::new("s").execute(&mut dm, &mut Headless, &get("./DevInfo"));
    let it = &rs[0].results[0];
    assert_eq!(it.data_str(), Some("DevId/DmV/Lang/Man/Mod"));
    assert_eq!(it.meta.as_ref().unwrap().format.as_deref(), Some("node"));
    assert_eq!(it.source.as_ref().unwrap().loc_uri, "./DevInfo");
}

#[test]
fn values_are_checked_against_their_format() {
    let mut dm = dm();
    assert_eq!(run(&mut dm, &add("./V/i", "int", "12x")), [400]);
    assert_eq!(run(&mut dm, &add("./V/b", "bool", "TRUE")), [200]);
    assert_eq!(get_value(&mut dm, "./V/b").as_deref(), Some("true"));
    assert_eq!(run(&mut dm, &add("./V/d", "date", "2026-02-30")), [400]);
    assert_eq!(run(&mut dm, &add("./V/f", "float", "nan")), [400]);
    assert_eq!(run(&mut dm, &add("./V/z", "colour", "red")), [415]);
    assert_eq!(run(&mut dm, &add("./V/n", "null", "")), [200]);
    // A leaf's format follows Replace where no DDF fixes it.
    let mut r = replace("./V/b", "7");
    r.item_cmd_mut().unwrap().items[0].meta = Some(Box::new(Meta::format_type(Some("int"), None)));
    assert_eq!(run(&mut dm, &r), [200]);
    assert_eq!(
        dm.tree.get("./V/b").unwrap().record().props.format,
        Format::Int
    );
    // A described leaf keeps its DDF format.
    let mut dm = open_dm();
    assert_eq!(
        run(&mut dm, &add("./FWUpdate/fw/State", "int", "10")),
        [405],
        "State is the device's"
    );
    assert_eq!(run(&mut dm, &add("./FWUpdate/fw", "node", "")), [200]);
    dm.tree
        .put("./FWUpdate/fw/State", Record::leaf(Format::Int, "10"))
        .unwrap();
    let mut r = replace("./FWUpdate/fw/State", "20");
    r.item_cmd_mut().unwrap().items[0].meta = Some(Box::new(Meta::format_type(Some("chr"), None)));
    assert_eq!(run(&mut dm, &r), [415]);
    assert_eq!(run(&mut dm, &replace("./FWUpdate/fw/State", "20")), [200]);
    assert_eq!(
        run(&mut dm, &replace("./FWUpdate/fw/State", "twenty")),
        [400]
    );
    assert_eq!(
        run(&mut dm, &replace("./DevInfo/Man", "x")),
        [425],
        "DevInfo is read-only"
    );
}

#[test]
fn uri_rules() {
    let mut dm = dm();
    dm.uri_limits.max_depth = 3;
    assert_eq!(run(&mut dm, &add("./A/B/C/D", "chr", "x")), [414]);
    assert_eq!(run(&mut dm, &add("./A//B", "chr", "x")), [400]);
    assert_eq!(run(&mut dm, &add("./A/../B", "chr", "x")), [400]);
    assert_eq!(run(&mut dm, &get("./DevInfo?prop=Colour")), [406]);
    let long = format!("./{}", "n".repeat(dm.uri_limits.max_seg_len + 1));
    assert_eq!(run(&mut dm, &get(&long)), [414]);
    // The limits come from ./DevDetail/URI.
    assert_eq!(
        get_value(&mut dm, "./DevDetail/URI/MaxSegLen").unwrap(),
        dm.uri_limits.max_seg_len.to_string()
    );
}

#[test]
fn properties() {
    let mut dm = dm();
    assert_eq!(run(&mut dm, &add("./V/x", "chr", "hello")), [200]);
    let p = |dm: &mut DmTree, prop: &str| get_value(dm, &format!("./V/x?prop={prop}"));
    assert_eq!(p(&mut dm, "Format").as_deref(), Some("chr"));
    assert_eq!(p(&mut dm, "Name").as_deref(), Some("x"));
    assert_eq!(p(&mut dm, "Size").as_deref(), Some("5"));
    assert_eq!(p(&mut dm, "TStamp").as_deref(), Some("20261121T090000Z"));
    assert_eq!(p(&mut dm, "VerNo").as_deref(), Some("1"));
    assert_eq!(
        p(&mut dm, "ACL").as_deref(),
        Some(""),
        "an unset ACL reads empty"
    );
    assert_eq!(
        run(&mut dm, &get("./V?prop=Size")),
        [406],
        "Size is a leaf property"
    );
    assert_eq!(run(&mut dm, &replace("./V/x", "bye")), [200]);
    assert_eq!(p(&mut dm, "VerNo").as_deref(), Some("2"));
    assert_eq!(run(&mut dm, &replace("./V/x?prop=Format", "int")), [405]);
    assert_eq!(run(&mut dm, &replace("./V/x?prop=Size", "1")), [405]);
    assert_eq!(run(&mut dm, &add("./V/x?prop=Title", "chr", "t")), [405]);
    assert_eq!(run(&mut dm, &replace("./V/x?prop=Title", "A title")), [200]);
    assert_eq!(p(&mut dm, "Title").as_deref(), Some("A title"));
    let long = "t".repeat(256);
    assert_eq!(run(&mut dm, &replace("./V/x?prop=Title", &long)), [413]);
    // VerNo wraps at 16 bits.
    let mut rec = dm.tree.get("./V/x").unwrap().record().clone();
    rec.props.verno = u16::MAX;
    dm.tree
        .apply(dm_tree::Op::Put {
            path: "./V/x".into(),
            rec,
        })
        .unwrap();
    assert_eq!(run(&mut dm, &replace("./V/x", "again")), [200]);
    assert_eq!(p(&mut dm, "VerNo").as_deref(), Some("0"));
}

#[test]
fn tstamp_and_verno_follow_changes_of_children() {
    let mut dm = dm();
    run(&mut dm, &add("./V/x", "chr", "1"));
    let before = dm.tree.get("./V").unwrap().record().props.verno;
    fn later() -> u64 {
        NOW + 60
    }
    dm.tree.set_clock(later);
    assert_eq!(run(&mut dm, &add("./V/y", "chr", "2")), [200]);
    let v = dm.tree.get("./V").unwrap().record().props.clone();
    assert_eq!((v.verno, v.tstamp), (before.wrapping_add(1), NOW + 60));
}

#[test]
fn rename_through_the_name_property() {
    let mut dm = open_dm();
    assert_eq!(run(&mut dm, &add("./DMAcc/acc1", "node", "")), [200]);
    assert_eq!(
        run(&mut dm, &add("./DMAcc/acc1/ServerID", "chr", "srv")),
        [200]
    );
    assert_eq!(
        run(&mut dm, &replace("./DMAcc/acc1?prop=Name", "main")),
        [200]
    );
    assert_eq!(
        value(&dm, "./DMAcc/main/ServerID").as_deref(),
        Some(&b"srv"[..])
    );
    assert!(!dm.tree.contains("./DMAcc/acc1"));
    // Named (and permanent) nodes keep their names.
    assert_eq!(run(&mut dm, &replace("./FUMO?prop=Name", "FW")), [405]);
    assert_eq!(
        run(&mut dm, &replace("./FWUpdate?prop=Name", "FW")),
        [425],
        "FWUpdate grants Add and Get only"
    );
    assert_eq!(
        run(&mut dm, &replace("./DMAcc/main/ServerID?prop=Name", "S")),
        [405]
    );
    assert_eq!(run(&mut dm, &add("./DMAcc/other", "node", "")), [200]);
    assert_eq!(
        run(&mut dm, &replace("./DMAcc/other?prop=Name", "main")),
        [418]
    );
    assert_eq!(
        run(&mut dm, &replace("./DMAcc/other?prop=Name", "a/b")),
        [400]
    );
}

#[test]
fn acl_denies_with_425_and_changes_nothing() {
    let mut dm = dm();
    // The root grants Add and Get only.
    assert_eq!(run(&mut dm, &add("./Vendor/x", "chr", "v")), [200]);
    let acl = "Get=srv1&Replace=srv1&Delete=srv1";
    let mut rec = dm.tree.get("./Vendor").unwrap().record().clone();
    rec.props.acl = Acl::parse(acl).unwrap();
    dm.tree.put("./Vendor", rec).unwrap();
    assert_eq!(run_as(&mut dm, "srv2", &replace("./Vendor/x", "w")), [425]);
    assert_eq!(run_as(&mut dm, "srv2", &get("./Vendor/x")), [425]);
    assert_eq!(run_as(&mut dm, "srv2", &delete("./Vendor/x")), [425]);
    assert_eq!(
        run_as(&mut dm, "srv2", &add("./Vendor/y", "chr", "1")),
        [425]
    );
    assert_eq!(value(&dm, "./Vendor/x").as_deref(), Some(&b"v"[..]));
    assert!(!dm.tree.contains("./Vendor/y"));
    // The child inherits the parent's ACL.
    assert_eq!(run_as(&mut dm, "srv1", &replace("./Vendor/x", "w")), [200]);
    assert_eq!(run_as(&mut dm, "srv1", &exec("./Vendor/x", None)), [425]);
    // A leaf's ACL is changed through its parent's Replace right.
    assert_eq!(
        run_as(&mut dm, "srv1", &replace("./Vendor/x?prop=ACL", "Get=*")),
        [200]
    );
    assert_eq!(run_as(&mut dm, "srv2", &get("./Vendor/x")), [200]);
    assert_eq!(
        run_as(
            &mut dm,
            "srv2",
            &replace("./Vendor/x?prop=ACL", "Get=*&Replace=*")
        ),
        [425]
    );
    assert_eq!(
        run_as(&mut dm, "srv1", &replace("./Vendor/x?prop=ACL", "Get=a=b")),
        [400]
    );
}

#[test]
fn a_server_owns_the_interior_node_it_adds_without_replace_on_the_parent() {
    let mut dm = dm();
    assert_eq!(run(&mut dm, &add("./Mine/leaf", "chr", "v")), [200]);
    let acl = dm
        .tree
        .get("./Mine")
        .unwrap()
        .record()
        .props
        .acl
        .to_string();
    assert_eq!(acl, "Add=srv&Delete=srv&Get=srv&Replace=srv");
    assert_eq!(
        dm.tree
            .get("./Mine/leaf")
            .unwrap()
            .record()
            .props
            .acl
            .to_string(),
        ""
    );
    assert_eq!(run_as(&mut dm, "other", &delete("./Mine")), [425]);
    assert_eq!(run(&mut dm, &delete("./Mine")), [200]);
    // The root's Add stays `*`.
    let mut dm = open_dm();
    assert_eq!(run(&mut dm, &replace(".?prop=ACL", "Add=srv&Get=*")), [405]);
    assert_eq!(run(&mut dm, &replace(".?prop=ACL", "Add=*&Get=srv")), [200]);
}

#[test]
fn ddf_rules() {
    let mut dm = open_dm();
    // Permanent nodes and the root cannot be deleted.
    assert_eq!(run(&mut dm, &delete("./SyncML/DMAcc")), [405]);
    assert_eq!(run(&mut dm, &delete("./FWUpdate")), [405]);
    assert_eq!(run(&mut dm, &delete(".")), [405]);
    // AccessType: FUMO slots are the device's to create; secrets are not readable.
    assert_eq!(
        run(&mut dm, &add("./FUMO/fw", "node", "")),
        [425],
        "FUMO grants no Add"
    );
    set_acl(&mut dm, "./FUMO", "Add=*&Get=*");
    assert_eq!(
        run(&mut dm, &add("./FUMO/fw", "node", "")),
        [405],
        "nor does its DDF"
    );
    // Nor can a FUMO slot be made implicitly, by adding below it.
    assert_eq!(run(&mut dm, &add("./FUMO/fw/Ext/V", "chr", "1")), [405]);
    assert!(!dm.tree.contains("./FUMO/fw"));
    assert_eq!(run(&mut dm, &add("./DMAcc/a", "node", "")), [200]);
    assert_eq!(
        run(
            &mut dm,
            &add("./DMAcc/a/AppAuth/s/AAuthSecret", "chr", "pw")
        ),
        [200]
    );
    assert_eq!(run(&mut dm, &get("./DMAcc/a/AppAuth/s/AAuthSecret")), [405]);
    // A node the DDF does not describe cannot be added inside a described object.
    assert_eq!(run(&mut dm, &add("./DMAcc/a/Colour", "chr", "red")), [405]);
    assert_eq!(
        run(&mut dm, &add("./DevInfo/Colour", "chr", "red")),
        [425],
        "DevInfo grants Get only"
    );
    // ... and an interior node where the DDF has a leaf.
    assert_eq!(run(&mut dm, &add("./DMAcc/a/Name/x", "chr", "red")), [405]);
}

const BOX_DDF: &str = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
<Node><NodeName>Box</NodeName><Path>.</Path><DFProperties>
<AccessType><Add/><Get/></AccessType><DFFormat><node/></DFFormat>
<Occurrence><One/></Occurrence><Scope><Permanent/></Scope><DFType><DDFName/></DFType></DFProperties>
<Node><NodeName/><DFProperties><AccessType><Add/><Delete/><Get/><Replace/></AccessType>
<DFFormat><int/></DFFormat><Occurrence><OneOrN>2</OneOrN></Occurrence><Scope><Dynamic/></Scope>
<DFType><MIME>text/plain</MIME></DFType></DFProperties></Node></Node></MgmtTree>"#;

#[test]
fn occurrence_limits() {
    let mut dm = open_dm();
    dm.schema.add(parse_ddf(BOX_DDF.as_bytes()).unwrap());
    dm.tree.put("./Box", Record::interior()).unwrap();
    assert_eq!(run(&mut dm, &add("./Box/a", "int", "1")), [200]);
    assert_eq!(run(&mut dm, &add("./Box/b", "int", "2")), [200]);
    assert_eq!(run(&mut dm, &add("./Box/c", "int", "3")), [420]);
    assert_eq!(run(&mut dm, &add("./Box/c", "chr", "3")), [420]);
    assert_eq!(run(&mut dm, &delete("./Box/a")), [200]);
    // OneOrN: the last instance stays.
    assert_eq!(run(&mut dm, &delete("./Box/b")), [405]);
    assert_eq!(
        run(&mut dm, &add("./Box/d", "chr", "x")),
        [415],
        "the DDF says int"
    );
    assert_eq!(run(&mut dm, &add("./Box/d", "int", "x")), [400]);
}

#[test]
fn atomic_rolls_back_everything_on_failure() {
    let mut dm = dm();
    run(&mut dm, &add("./V/keep", "chr", "old"));
    let before = dm.tree.snapshot_ops();
    let a = container(
        Command::Atomic,
        vec![
            replace("./V/keep", "new"),
            add("./V/added", "chr", "x"),
            delete("./V/keep"),
            replace("./V/missing", "x"),
            add("./V/never", "chr", "x"),
        ],
    );
    assert_eq!(run(&mut dm, &a), [507, 216, 216, 216, 404, 215]);
    assert_eq!(dm.tree.snapshot_ops(), before);
    let ok = container(
        Command::Atomic,
        vec![replace("./V/keep", "new"), add("./V/n", "chr", "1")],
    );
    assert_eq!(run(&mut dm, &ok), [200, 200, 200]);
    assert_eq!(value(&dm, "./V/keep").as_deref(), Some(&b"new"[..]));
}

#[test]
fn nested_atomic_and_get_inside_atomic_fail_it() {
    let mut dm = dm();
    let nested = container(
        Command::Atomic,
        vec![
            add("./V/a", "chr", "1"),
            container(Command::Atomic, vec![add("./V/b", "chr", "1")]),
            add("./V/c", "chr", "1"),
        ],
    );
    assert_eq!(run(&mut dm, &nested), [507, 216, 500, 215, 215]);
    assert!(!dm.tree.contains("./V/a"));
    let with_get = container(
        Command::Atomic,
        vec![add("./V/a", "chr", "1"), get("./V/a")],
    );
    assert_eq!(run(&mut dm, &with_get), [507, 216, 405]);
    assert!(!dm.tree.contains("./V"));
}

#[test]
fn sequence_stops_at_the_first_failure() {
    let mut dm = dm();
    let s = container(
        Command::Sequence,
        vec![
            add("./V/a", "chr", "1"),
            replace("./V/missing", "x"),
            add("./V/b", "chr", "1"),
            container(Command::Atomic, vec![add("./V/c", "chr", "1")]),
        ],
    );
    assert_eq!(run(&mut dm, &s), [200, 200, 404, 215, 215, 215]);
    assert!(dm.tree.contains("./V/a"), "a Sequence does not roll back");
    assert!(!dm.tree.contains("./V/b"));
}

fn chunk(uri: &str, data: &str, size: Option<u64>, more: bool) -> Command {
    let mut it = item(uri, None, Some(data));
    let mut meta = Meta::format_type(Some("chr"), None);
    meta.size = size;
    it.meta = Some(Box::new(meta));
    it.more_data = more;
    cmd(Command::Add, vec![it])
}

#[test]
fn large_objects_assemble_and_check_their_size() {
    let mut dm = dm();
    let mut s = Session::new("srv");
    let go =
        |dm: &mut DmTree, s: &mut Session, c: Command| codes(&s.execute(dm, &mut Headless, &c));
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/lo", "abc", Some(9), true)),
        [213]
    );
    assert!(
        !dm.tree.contains("./V/lo"),
        "nothing is in the tree before the last chunk"
    );
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/lo", "def", None, true)),
        [213]
    );
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/lo", "ghi", None, false)),
        [200]
    );
    assert_eq!(value(&dm, "./V/lo").as_deref(), Some(&b"abcdefghi"[..]));

    // A total that does not match: 424 and nothing committed.
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/bad", "abc", Some(10), true)),
        [213]
    );
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/bad", "def", None, false)),
        [424]
    );
    assert!(!dm.tree.contains("./V/bad"));
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/bad", "abcd", Some(3), true)),
        [424]
    );
    // Bounded by MaxObjSize; the first chunk must announce the total.
    dm.max_obj_size = 8;
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/big", "abc", Some(9), true)),
        [413]
    );
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/big", "abc", None, true)),
        [412]
    );
    assert_eq!(
        go(&mut dm, &mut s, chunk("./V/one", "123456789", None, false)),
        [413]
    );
}

#[test]
fn an_interrupted_large_object_is_dropped_and_alerted() {
    let mut dm = dm();
    let mut s = Session::new("srv");
    let c = chunk("./V/lo", "abc", Some(9), true);
    assert_eq!(codes(&s.execute(&mut dm, &mut Headless, &c)), [213]);
    let mut b = MessageBuilder::new(DmVersion::V1_2, "1", 2, "dev", "srv");
    b.command(add("./V/other", "chr", "x"));
    let reply = s.apply_message(&mut dm, &mut Headless, &b.finish());
    let alert = reply.body.commands.iter().find_map(|c| match c {
        Command::Alert(a) => Some(a),
        _ => None,
    });
    let alert = alert.expect("Alert 1225");
    assert_eq!(alert.data.map(|d| d.code()), Some(1225));
    assert_eq!(alert.items[0].target.as_ref().unwrap().loc_uri, "./V/lo");
    assert!(!dm.tree.contains("./V/lo"));
    assert!(dm.tree.contains("./V/other"));
}

#[test]
fn binary_values_travel_as_b64() {
    let mut dm = open_dm();
    assert_eq!(run(&mut dm, &add("./FWUpdate/fw", "node", "")), [200]);
    assert_eq!(
        run(&mut dm, &add("./FWUpdate/fw/PkgData", "b64", "AAEC/w==")),
        [200]
    );
    assert_eq!(
        value(&dm, "./FWUpdate/fw/PkgData").as_deref(),
        Some(&[0u8, 1, 2, 255][..])
    );
    assert_eq!(
        run(&mut dm, &add("./FWUpdate/fw/PkgURL", "b64", "aGk=")),
        [415]
    );
}

struct Fw;

impl ValueHandler for Fw {
    fn get(&mut self, _path: &str) -> Result<Vec<u8>, StatusCode> {
        Ok(b"4.2.1".to_vec())
    }
}

#[test]
fn exec_and_dynamic_values_go_through_handlers() {
    let mut dm = open_dm();
    dm.tree.put("./FUMO/fw", Record::interior()).unwrap();
    dm.tree
        .put("./FUMO/fw/Download", Record::interior())
        .unwrap();
    dm.tree.put("./FUMO/fw/Update", Record::interior()).unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    dm.handlers.on_exec(
        "./FUMO/*/Download",
        Box::new(move |t: &mut Tree, r: ExecRequest<'_>| {
            log.lock()
                .unwrap()
                .push((r.path.to_owned(), r.correlator.map(str::to_owned)));
            t.put("./FUMO/fw/State", Record::leaf(Format::Int, "30"))
                .unwrap();
            StatusCode::AcceptedForProcessing
        }),
    );
    assert_eq!(
        run(&mut dm, &exec("./FUMO/fw/Download", Some("c-1"))),
        [202]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [("./FUMO/fw/Download".to_owned(), Some("c-1".to_owned()))]
    );
    assert_eq!(value(&dm, "./FUMO/fw/State").as_deref(), Some(&b"30"[..]));
    // Allowed by the DDF but no code for it: 406; not allowed at all: 405.
    assert_eq!(run(&mut dm, &exec("./FUMO/fw/Update", None)), [406]);
    dm.tree
        .put("./FUMO/fw/PkgName", Record::leaf(Format::Chr, ""))
        .unwrap();
    assert_eq!(run(&mut dm, &exec("./FUMO/fw/PkgName", None)), [405]);
    assert_eq!(run(&mut dm, &exec("./DevInfo/Man", None)), [425]);
    assert_eq!(run(&mut dm, &exec("./FUMO/fw/Nope", None)), [404]);

    dm.handlers.on_value("./DevDetail/FwV", Box::new(Fw));
    assert_eq!(
        get_value(&mut dm, "./DevDetail/FwV").as_deref(),
        Some("4.2.1")
    );
}

#[test]
fn copy_leaves_and_subtrees() {
    let mut dm = open_dm();
    run(&mut dm, &add("./V/a/x", "chr", "1"));
    run(&mut dm, &add("./V/a/y", "int", "2"));
    let copy = |from: &str, to: &str| {
        let mut it = Item::target(to);
        it.source = Some(Location::new(from));
        cmd(Command::Copy, vec![it])
    };
    assert_eq!(run(&mut dm, &copy("./V/a", "./V/b")), [200]);
    assert_eq!(value(&dm, "./V/b/y").as_deref(), Some(&b"2"[..]));
    assert_eq!(
        dm.tree.get("./V/b/y").unwrap().record().props.format,
        Format::Int
    );
    assert_eq!(
        run(&mut dm, &copy("./V/a/x", "./V/b/y")),
        [200],
        "a leaf over a leaf"
    );
    assert_eq!(value(&dm, "./V/b/y").as_deref(), Some(&b"1"[..]));
    assert_eq!(run(&mut dm, &copy("./V/a", "./V/b")), [418]);
    assert_eq!(
        run(&mut dm, &copy("./V/a", "./V/a/z")),
        [405],
        "into itself"
    );
    assert_eq!(run(&mut dm, &copy("./V/none", "./V/c")), [404]);
}

#[test]
fn lists_struct_structdata_and_tnds() {
    let mut dm = open_dm();
    run(&mut dm, &add("./DMAcc/a", "node", ""));
    run(
        &mut dm,
        &add("./DMAcc/a/AppAuth/s/AAuthSecret", "chr", "pw"),
    );
    run(&mut dm, &add("./DMAcc/a/ServerID", "chr", "srv"));
    let rs = Session::new("srv").execute(&mut dm, &mut Headless, &get("./DMAcc/a?list=Struct"));
    let uris: Vec<_> = rs[0]
        .results
        .iter()
        .map(|i| i.source.as_ref().unwrap().loc_uri.as_str())
        .collect();
    assert!(
        uris.contains(&"./DMAcc/a/ServerID") && uris.contains(&"./DMAcc/a/AppAuth/s/AAuthSecret")
    );
    assert!(rs[0].results.iter().all(|i| i.data.is_empty()));
    let rs = Session::new("srv").execute(&mut dm, &mut Headless, &get("./DMAcc/a?list=StructData"));
    let data = |uri: &str| {
        rs[0]
            .results
            .iter()
            .find(|i| i.source.as_ref().unwrap().loc_uri == uri)
            .and_then(|i| i.data_str())
            .map(str::to_owned)
    };
    assert_eq!(data("./DMAcc/a/ServerID").as_deref(), Some("srv"));
    assert_eq!(
        data("./DMAcc/a/AppAuth/s/AAuthSecret").as_deref(),
        Some(""),
        "no Get: no value"
    );
    let rs = Session::new("srv").execute(
        &mut dm,
        &mut Headless,
        &get("./DMAcc/a?list=TNDS+Value+ACL"),
    );
    let it = &rs[0].results[0];
    assert_eq!(
        it.meta.as_ref().unwrap().type_.as_deref(),
        Some("application/vnd.syncml.dmtnds+xml")
    );
    let Data::Nodes(nodes) = &it.data[0] else {
        panic!("TNDS travels as elements")
    };
    let syncml_core::Node::Element(mt) = &nodes[0] else {
        panic!()
    };
    let xml = String::from_utf8(dm_tree::doc::write_xml(mt).unwrap()).unwrap();
    assert!(xml.contains("<Value>srv</Value>"), "{xml}");
    assert!(!xml.contains("pw"), "the secret is not exported: {xml}");
}

struct Refuser;

impl Hooks for Refuser {
    fn extension(&mut self, _: &mut DmTree, _: &str, _: &Command) -> StatusCode {
        StatusCode::Ok
    }
}

#[test]
fn commands_of_the_wrong_direction_and_unknown_ones() {
    let mut dm = dm();
    let confirm = cmd(
        Command::ConfirmFirmwareUpdate,
        vec![item("./FWUpdate/x", None, Some("200"))],
    );
    assert_eq!(run(&mut dm, &confirm), [405]);
    let dl = cmd(
        Command::GetFirmwareUpdate,
        vec![item("./FWUpdate/x/PkgURL", None, Some("DL_URL=http://x"))],
    );
    assert_eq!(run(&mut dm, &dl), [406], "no firmware agent");
    let rs = Session::new("srv").execute(&mut dm, &mut Refuser, &dl);
    assert_eq!(codes(&rs), [200], "the hook decides");
    let unknown = Command::Unknown(syncml_core::Element::new(
        syncml_core::Namespace::SyncMl,
        "Sync",
    ));
    assert_eq!(run(&mut dm, &unknown), [406]);
}

#[test]
fn apply_message_commits_and_survives_reopen() {
    let dir = std::env::temp_dir().join(format!("dm-tree-exec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    {
        let mut dm = DmTree::init(&dir, &[], &[("Man".into(), "Acme".into())]).unwrap();
        let mut b = MessageBuilder::new(DmVersion::V1_2, "1", 3, "dev", "srv");
        b.command(add("./V/kept", "chr", "1"));
        b.command(container(
            Command::Atomic,
            vec![add("./V/gone", "chr", "1"), replace("./V/none", "x")],
        ));
        b.get(vec![Item::target("./DevInfo/Man")]);
        let reply = Session::new("srv").apply_message(&mut dm, &mut Headless, &b.finish());
        let statuses: Vec<(String, u16)> = reply
            .body
            .commands
            .iter()
            .filter_map(|c| match c {
                Command::Status(s) => Some((s.cmd.clone(), s.data.code())),
                _ => None,
            })
            .collect();
        let want = [
            ("SyncHdr", 200),
            ("Add", 200),
            ("Atomic", 507),
            ("Add", 216),
            ("Replace", 404),
            ("Get", 200),
        ];
        assert_eq!(statuses, want.map(|(c, n)| (c.to_owned(), n)));
        assert!(
            matches!(reply.body.commands.last(), Some(Command::Results(r)) if r.items[0].data_str() == Some("Acme"))
        );
    }
    let dm = DmTree::open(&dir).unwrap();
    assert!(dm.tree.contains("./V/kept"));
    assert!(!dm.tree.contains("./V/gone"));
    assert_eq!(value(&dm, "./DevInfo/Man").as_deref(), Some(&b"Acme"[..]));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tnds_add(target: &str, data: Data, wbxml: bool) -> Command {
    let mut it = Item::target(target);
    let t = if wbxml {
        "application/vnd.syncml.dmtnds+wbxml"
    } else {
        "application/vnd.syncml.dmtnds+xml"
    };
    it.meta = Some(Box::new(Meta::format_type(Some("xml"), Some(t))));
    it.data.push(data);
    cmd(Command::Add, vec![it])
}

/// The TNDS element a Get with `?list=TNDS+...` returns.
fn tnds_of(dm: &mut DmTree, uri: &str) -> syncml_core::Element {
    let rs = Session::new("srv").execute(dm, &mut Headless, &get(uri));
    let Data::Nodes(nodes) = &rs[0].results[0].data[0] else {
        panic!("TNDS travels as elements")
    };
    let syncml_core::Node::Element(mt) = &nodes[0] else {
        panic!()
    };
    mt.clone()
}

#[test]
fn add_of_a_tnds_subtree_in_every_form() {
    let mut a = open_dm();
    run(&mut a, &add("./DMAcc/acc", "node", ""));
    run(&mut a, &add("./DMAcc/acc/ServerID", "chr", "srv"));
    run(
        &mut a,
        &add("./DMAcc/acc/AppAddr/1/Addr", "chr", "https://dm.test/"),
    );
    let mt = tnds_of(&mut a, "./DMAcc/acc?list=TNDS+Value+Format+Type");
    let xml = dm_tree::doc::write_xml(&mt).unwrap();
    let wbxml = dm_tree::doc::write_wbxml(&mt).unwrap();
    let forms = [
        (
            Data::Nodes(vec![syncml_core::Node::Element(mt.clone())]),
            false,
        ),
        (Data::Text(String::from_utf8(xml).unwrap()), false),
        (Data::Opaque(wbxml), true),
    ];
    for (data, is_wbxml) in forms {
        let mut b = open_dm();
        assert_eq!(run(&mut b, &tnds_add("./DMAcc", data, is_wbxml)), [200]);
        assert_eq!(
            value(&b, "./DMAcc/acc/ServerID").as_deref(),
            Some(&b"srv"[..])
        );
        assert_eq!(
            value(&b, "./DMAcc/acc/AppAddr/1/Addr").as_deref(),
            Some(&b"https://dm.test/"[..])
        );
        let again = tnds_add(
            "./DMAcc",
            Data::Nodes(vec![syncml_core::Node::Element(mt.clone())]),
            false,
        );
        assert_eq!(run(&mut b, &again), [418], "the account exists now");
    }
}

#[test]
fn a_refused_node_in_a_tnds_add_rolls_back_the_whole_subtree() {
    let mut a = dm();
    run(&mut a, &add("./Vendor/x/ok", "chr", "1"));
    let mut mt = tnds_of(&mut a, "./Vendor/x?list=TNDS+Value+Format");
    // Without a Path, top-level nodes go under the Add's target.
    for n in &mut mt.children {
        if let syncml_core::Node::Element(e) = n {
            e.children
                .retain(|c| !matches!(c, syncml_core::Node::Element(x) if x.name == "Path"));
        }
    }
    let mut b = open_dm();
    let before = b.tree.snapshot_ops();
    // Inside a described object, the undescribed node `ok` is refused.
    assert_eq!(
        run(
            &mut b,
            &tnds_add(
                "./DMAcc/acc",
                Data::Nodes(vec![syncml_core::Node::Element(mt.clone())]),
                false
            )
        ),
        [405]
    );
    assert_eq!(b.tree.snapshot_ops(), before);
    // Where no DDF rules, it goes in, with the target created.
    assert_eq!(
        run(
            &mut b,
            &tnds_add(
                "./Other",
                Data::Nodes(vec![syncml_core::Node::Element(mt)]),
                false
            )
        ),
        [200]
    );
    assert_eq!(value(&b, "./Other/x/ok").as_deref(), Some(&b"1"[..]));
    let bad = Data::Text("<MgmtTree><Node><NodeName>a/b</NodeName></Node></MgmtTree>".into());
    assert_eq!(run(&mut b, &tnds_add("./Other", bad, false)), [400]);
}

#[test]
fn copy_never_hands_out_what_a_get_refuses() {
    let mut dm = open_dm();
    run(&mut dm, &add("./DMAcc/a", "node", ""));
    run(
        &mut dm,
        &add("./DMAcc/a/AppAuth/s/AAuthSecret", "chr", "hunter2"),
    );
    let copy = |from: &str, to: &str| {
        let mut it = Item::target(to);
        it.source = Some(Location::new(from));
        cmd(Command::Copy, vec![it])
    };
    // The DDF does not list Copy for an account.
    assert_eq!(run(&mut dm, &copy("./DMAcc/a", "./Loot")), [405]);
    assert!(!dm.tree.contains("./Loot"));
    // Outside any DDF, every copied node must be readable by the copying server.
    run(&mut dm, &add("./V/x/open", "chr", "1"));
    run(&mut dm, &add("./V/x/closed", "chr", "2"));
    set_acl(&mut dm, "./V/x/closed", "Get=srvA");
    assert_eq!(run_as(&mut dm, "srvB", &copy("./V/x", "./V/y")), [425]);
    assert!(!dm.tree.contains("./V/y"));
    // A server that may read everything copies it (as it could Get and Add it).
    assert_eq!(run_as(&mut dm, "srvA", &copy("./V/x", "./V/y")), [200]);
    assert_eq!(value(&dm, "./V/y/closed").as_deref(), Some(&b"2"[..]));
}

#[test]
fn a_server_cannot_take_over_another_servers_account() {
    let mut dm = dm();
    assert_eq!(
        run_as(&mut dm, "srvA", &add("./DMAcc/a", "node", "")),
        [200]
    );
    assert_eq!(
        run_as(&mut dm, "srvA", &add("./DMAcc/a/Name", "chr", "A")),
        [200]
    );
    assert_eq!(
        run_as(
            &mut dm,
            "srvB",
            &replace("./DMAcc/a?prop=ACL", "Add=*&Delete=*&Get=*&Replace=*")
        ),
        [425]
    );
    assert_eq!(
        run_as(&mut dm, "srvB", &replace("./DMAcc/a/Name", "B")),
        [425]
    );
    assert_eq!(run_as(&mut dm, "srvB", &delete("./DMAcc/a")), [425]);
    assert_eq!(
        run_as(&mut dm, "srvA", &replace("./DMAcc/a/Name", "A2")),
        [200]
    );
}

#[test]
fn a_large_object_survives_the_status_that_opens_the_next_message() {
    let mut dm = dm();
    let mut s = Session::new("srv");
    assert_eq!(
        codes(&s.execute(
            &mut dm,
            &mut Headless,
            &chunk("./V/lo", "abc", Some(6), true)
        )),
        [213]
    );
    // The server's next message opens with the Status for the device's header.
    let device_msg = MessageBuilder::new(DmVersion::V1_2, "1", 1, "srv", "dev").finish();
    let mut reply = MessageBuilder::reply_to(&device_msg.hdr, 2);
    reply.status_for_header(StatusCode::Ok);
    let hdr_status = reply.finish().body.commands.remove(0);
    assert!(s.execute(&mut dm, &mut Headless, &hdr_status).is_empty());
    assert_eq!(
        codes(&s.execute(&mut dm, &mut Headless, &chunk("./V/lo", "def", None, false))),
        [200]
    );
    assert_eq!(value(&dm, "./V/lo").as_deref(), Some(&b"abcdef"[..]));
    // Interrupted: the trailing chunk is refused, not stored as a value.
    assert_eq!(
        codes(&s.execute(
            &mut dm,
            &mut Headless,
            &chunk("./V/lo2", "abc", Some(6), true)
        )),
        [213]
    );
    assert_eq!(
        codes(&s.execute(&mut dm, &mut Headless, &get("./V/lo"))),
        [200]
    );
    assert_eq!(s.take_interrupted(), ["./V/lo2"]);
    assert_eq!(
        codes(&s.execute(
            &mut dm,
            &mut Headless,
            &chunk("./V/lo2", "def", None, false)
        )),
        [424]
    );
    assert!(!dm.tree.contains("./V/lo2"));
}

#[test]
fn vendor_ddfs_under_ext_are_enforced() {
    let vendor = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
<Node><NodeName>Acme</NodeName><Path>./DevDetail/Ext</Path><DFProperties>
<AccessType><Get/></AccessType><DFFormat><node/></DFFormat><Scope><Permanent/></Scope>
<DFType><DDFName/></DFType></DFProperties>
<Node><NodeName>Ro</NodeName><DFProperties><AccessType><Get/></AccessType>
<DFFormat><chr/></DFFormat><DFType><MIME>text/plain</MIME></DFType></DFProperties></Node>
</Node></MgmtTree>"#;
    let mut dm = open_dm();
    dm.schema.add(parse_ddf(vendor.as_bytes()).unwrap());
    set_acl(&mut dm, "./DevDetail", "Add=*&Get=*&Replace=*&Delete=*");
    dm.tree
        .put("./DevDetail/Ext/Acme/Ro", Record::leaf(Format::Chr, "x"))
        .unwrap();
    assert_eq!(
        run(&mut dm, &replace("./DevDetail/Ext/Acme/Ro", "y")),
        [405]
    );
    assert_eq!(
        run(&mut dm, &add("./DevDetail/Ext/Acme/Other", "chr", "y")),
        [405]
    );
    assert_eq!(
        run(&mut dm, &delete("./DevDetail/Ext/Acme")),
        [405],
        "permanent"
    );
    // Elsewhere under Ext the vendor is free.
    assert_eq!(
        run(&mut dm, &add("./DevDetail/Ext/Free", "chr", "y")),
        [200]
    );
}

#[test]
fn element_data_is_xml_text_and_never_an_empty_value() {
    let mut dm = dm();
    let conf = syncml_core::Element::new(syncml_core::Namespace::Other("urn:x".into()), "Conf");
    let mut it = Item::target("./V/cfg");
    it.data
        .push(Data::Nodes(vec![syncml_core::Node::Element(conf)]));
    assert_eq!(run(&mut dm, &cmd(Command::Add, vec![it.clone()])), [200]);
    let stored = String::from_utf8(value(&dm, "./V/cfg").unwrap()).unwrap();
    assert_eq!(stored, r#"<Conf xmlns="urn:x"/>"#);
    assert_eq!(
        dm.tree.get("./V/cfg").unwrap().record().props.format,
        Format::Xml
    );
    // Element content where text is required is refused, not read as "".
    let mut acl = it.clone();
    acl.target = Some(Location::new("./V?prop=ACL"));
    assert_eq!(run(&mut dm, &cmd(Command::Replace, vec![acl])), [400]);
    let mut chr = it;
    chr.target = Some(Location::new("./V/text"));
    chr.meta = Some(Box::new(Meta::format_type(Some("chr"), None)));
    assert_eq!(
        run(&mut dm, &cmd(Command::Add, vec![chr])),
        [200],
        "chr holds XML text too"
    );
}

#[test]
fn a_refused_item_leaves_no_trace() {
    let mut dm = dm();
    let before = dm.tree.snapshot_ops();
    // A server id the ACL grammar cannot name: owning the new node fails after
    // the node was written, and the write is undone.
    assert_eq!(
        run_as(&mut dm, "bad server", &add("./X/y", "chr", "1")),
        [400]
    );
    assert_eq!(dm.tree.snapshot_ops(), before);
}

#[test]
fn a_handler_cannot_commit_an_atomic_half_way() {
    let mut dm = open_dm();
    dm.tree.put("./Act", Record::interior()).unwrap();
    dm.handlers.on_exec(
        "./Act",
        Box::new(|t: &mut Tree, _: ExecRequest<'_>| match t.commit() {
            Ok(()) => StatusCode::Ok,
            Err(_) => StatusCode::CommandFailed,
        }),
    );
    let before = dm.tree.snapshot_ops();
    let a = container(
        Command::Atomic,
        vec![
            add("./V/a", "chr", "1"),
            exec("./Act", None),
            replace("./V/none", "x"),
        ],
    );
    assert_eq!(run(&mut dm, &a), [507, 216, 500, 215]);
    assert_eq!(dm.tree.snapshot_ops(), before);
}

#[test]
fn new_paths_respect_the_uri_limits() {
    let mut a = dm();
    let mut dm = open_dm();
    run(&mut dm, &add("./V/x", "chr", "1"));
    let long = "n".repeat(dm.uri_limits.max_seg_len + 1);
    assert_eq!(run(&mut dm, &replace("./V/x?prop=Name", &long)), [414]);
    run(&mut a, &add("./Vendor/x/ok", "chr", "1"));
    let mt = tnds_of(&mut a, "./Vendor/x?list=TNDS+Value+Format");
    // The document's Path puts it under ./Vendor, outside the target ./T.
    let el = Data::Nodes(vec![syncml_core::Node::Element(mt)]);
    assert_eq!(run(&mut dm, &tnds_add("./T", el, false)), [405]);
    assert!(!dm.tree.contains("./T"));
}

#[test]
fn permanence_and_the_root_acl() {
    let mut dm = dm();
    assert_eq!(
        run(&mut dm, &delete("./DevInfo/DevId")),
        [405],
        "permanent, whatever the ACL"
    );
    let mut dm = open_dm();
    assert_eq!(
        run(&mut dm, &replace(".?prop=ACL", "Add=*+srv&Get=*")),
        [200]
    );
    // The device cannot turn a node with children into a leaf either.
    assert!(dm
        .tree
        .put("./DevInfo", Record::leaf(Format::Chr, "x"))
        .is_err());
}
