//! The shipped DDFs, schema lookups, the parser's refusals, and the documents written
//! from descriptions and from live trees.

use super::*;
use crate::doc;
use crate::error::Error;
use crate::node::Record;
use crate::tree::Tree;
use syncml_core::Element;

/// Every shipped DDF: file, and the parent path and name of the node it describes.
const SHIPPED: [(&str, &[u8], &str, &str); 7] = [
    (
        "devinfo.xml",
        include_bytes!("../../ddf/devinfo.xml"),
        ".",
        "DevInfo",
    ),
    (
        "devdetail.xml",
        include_bytes!("../../ddf/devdetail.xml"),
        ".",
        "DevDetail",
    ),
    (
        "dmacc.xml",
        include_bytes!("../../ddf/dmacc.xml"),
        ".",
        "DMAcc",
    ),
    (
        "dmacc-1.1.xml",
        include_bytes!("../../ddf/dmacc-1.1.xml"),
        ".",
        "SyncML",
    ),
    (
        "fumo.xml",
        include_bytes!("../../ddf/fumo.xml"),
        ".",
        "FUMO",
    ),
    (
        "fwupdate.xml",
        include_bytes!("../../ddf/fwupdate.xml"),
        ".",
        "FWUpdate",
    ),
    ("sim.xml", include_bytes!("../../ddf/sim.xml"), ".", "SIM"),
];

fn shipped(file: &str) -> Vec<DdfRoot> {
    let (_, bytes, _, _) = SHIPPED
        .iter()
        .find(|s| s.0 == file)
        .unwrap_or_else(|| panic!("no shipped {file}"));
    parse_ddf(bytes).unwrap_or_else(|e| panic!("{file}: {e}"))
}

fn shipped_schema() -> Schema {
    let mut s = Schema::default();
    for (file, ..) in SHIPPED {
        s.add(shipped(file));
    }
    s
}

fn node<'a>(schema: &'a Schema, path: &str) -> &'a DdfNode {
    match schema.lookup(path) {
        Lookup::Node(n) => n,
        other => panic!("{path}: {other:?}"),
    }
}

/// The message of the Ddf error `bytes` must give.
fn ddf_error(bytes: &[u8]) -> String {
    match parse_ddf(bytes) {
        Err(Error::Ddf(why)) => why,
        Err(e) => panic!("expected a DDF error, got {e:?}"),
        Ok(r) => panic!("parsed: {r:?}"),
    }
}

/// A document with one node `Top` at `.` of format node, holding `children`.
fn doc_with(children: &str) -> String {
    format!(
        r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
<Node><NodeName>Top</NodeName><Path>.</Path>
<DFProperties><AccessType><Get/></AccessType><DFFormat><node/></DFFormat></DFProperties>
{children}
</Node></MgmtTree>"#
    )
}

/// A child node `name` with these DFProperties contents and children.
fn child(name: &str, props: &str, children: &str) -> String {
    format!(
        "<Node><NodeName>{name}</NodeName><DFProperties>{props}</DFProperties>{children}</Node>"
    )
}

const CHR: &str = "<AccessType><Get/></AccessType><DFFormat><chr/></DFFormat>";

/// The Node elements directly inside `e`.
fn node_elements(e: &Element) -> Vec<&Element> {
    doc::elements(e).filter(|c| c.name == "Node").collect()
}

fn node_name(e: &Element) -> String {
    doc::child_text(e, "NodeName").expect("a Node without NodeName")
}

// ----- the shipped DDFs ---------------------------------------------------------

#[test]
fn every_shipped_ddf_parses_with_its_root() {
    for (file, bytes, parent, name) in SHIPPED {
        let roots = parse_ddf(bytes).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(roots.len(), 1, "{file}");
        assert_eq!(roots[0].parent, parent, "{file}");
        assert_eq!(roots[0].node.name.as_deref(), Some(name), "{file}");
        assert_eq!(roots[0].node.format, Format::Node, "{file}");
        assert!(!roots[0].node.children.is_empty(), "{file}");
    }
}

#[test]
fn shipped_ddfs_say_what_the_objects_need() {
    let s = shipped_schema();

    let secret = node(&s, "./DMAcc/srv/AppAuth/cred/AAuthSecret");
    assert!(
        !secret.access.allows(AccessOp::Get),
        "AAuthSecret is readable"
    );
    assert!(secret.access.allows(AccessOp::Add) && secret.access.allows(AccessOp::Replace));
    assert_eq!(secret.format, Format::Chr);

    let acc = node(&s, "./DMAcc/srv");
    assert_eq!(acc.name, None);
    assert_eq!(acc.occurrence, Occurrence::ZeroOrMore);
    assert_eq!(acc.scope, Scope::Dynamic);
    assert_eq!(
        acc.df_type,
        DfType::DdfName("urn:oma:mo:oma-dm-dmacc:1.0".into())
    );
    assert_eq!(
        node(&s, "./DMAcc/srv/AppID").default_value.as_deref(),
        Some("w7")
    );

    let state = node(&s, "./FUMO/pkg/State");
    assert_eq!(state.format, Format::Int);
    assert_eq!(state.default_value.as_deref(), Some("10"));

    let max_depth = node(&s, "./DevDetail/URI/MaxDepth");
    assert_eq!(max_depth.format, Format::Chr);
    assert!(max_depth.is_permanent());
    assert_eq!(max_depth.df_type, DfType::Mime("text/plain".into()));

    let dev_info = node(&s, "./DevInfo");
    assert!(dev_info.is_permanent());
    assert_eq!(dev_info.occurrence, Occurrence::One);
    assert_eq!(node(&s, "./DevInfo/Ext").occurrence, Occurrence::ZeroOrOne);

    assert!(node(&s, "./SyncML/DMAcc/old/ServerPW")
        .access
        .ops()
        .all(|o| o != AccessOp::Get));
    assert_eq!(node(&s, "./SIM").name.as_deref(), Some("SIM"));
    assert_eq!(node(&s, "./FWUpdate/x/State").format, Format::Int);
}

// ----- Schema::lookup and Schema::add -------------------------------------------

#[test]
fn lookup_finds_named_nodes_and_placeholder_instances() {
    let s = shipped_schema();
    assert_eq!(node(&s, "./DevInfo").name.as_deref(), Some("DevInfo"));
    assert_eq!(node(&s, "./DevInfo/DevId").name.as_deref(), Some("DevId"));
    assert_eq!(
        node(&s, "./DMAcc/anything/ServerID").name.as_deref(),
        Some("ServerID")
    );
    assert_eq!(node(&s, "./DMAcc/anything").name, None);
    // Nested placeholders, each matching any name.
    let port = node(&s, "./DMAcc/a/AppAddr/b/Port/c/PortNbr");
    assert_eq!(port.name.as_deref(), Some("PortNbr"));
    // A named child wins over the placeholder beside it only by name.
    assert_eq!(node(&s, "./DMAcc/AppAddr").name, None);
}

#[test]
fn lookup_tells_undescribed_from_outside() {
    let s = shipped_schema();
    assert_eq!(s.lookup("./DevInfo/Nope"), Lookup::Undescribed);
    assert_eq!(s.lookup("./DMAcc/srv/Nope"), Lookup::Undescribed);
    assert_eq!(
        s.lookup("./DevInfo/DevId/below-a-leaf"),
        Lookup::Undescribed
    );
    assert_eq!(s.lookup("./Vendor/X"), Lookup::Outside);
    assert_eq!(s.lookup("./Vendor"), Lookup::Outside);
    assert_eq!(s.lookup("./DevInfoX"), Lookup::Outside);
    assert_eq!(s.lookup("./DevInfoX/DevId"), Lookup::Outside);
    assert_eq!(s.lookup("."), Lookup::Outside);
    assert_eq!(Schema::default().lookup("./DevInfo"), Lookup::Outside);
}

#[test]
fn lookup_honours_a_root_below_the_tree_root() {
    let xml = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD>
<Node><NodeName>Acme</NodeName><Path>./Vendor</Path>
<DFProperties><AccessType><Get/></AccessType><DFFormat><node/></DFFormat></DFProperties>
<Node><NodeName>Mode</NodeName><DFProperties><AccessType><Get/></AccessType><DFFormat><chr/></DFFormat></DFProperties></Node>
</Node></MgmtTree>"#;
    let roots = parse_ddf(xml.as_bytes()).unwrap();
    assert_eq!(roots[0].parent, "./Vendor");
    let mut s = Schema::default();
    s.add(roots);
    assert_eq!(node(&s, "./Vendor/Acme/Mode").name.as_deref(), Some("Mode"));
    assert_eq!(s.lookup("./Vendor/Acme/Other"), Lookup::Undescribed);
    assert_eq!(s.lookup("./Vendor"), Lookup::Outside);
    assert_eq!(s.lookup("./Vendor/Other"), Lookup::Outside);
    assert_eq!(s.lookup("./VendorX/Acme"), Lookup::Outside);
}

#[test]
fn a_later_document_for_the_same_root_replaces_the_earlier() {
    let mut s = shipped_schema();
    let before = s.roots().len();
    let xml = doc_with(&child("Only", CHR, ""));
    let xml = xml.replace("<NodeName>Top</NodeName>", "<NodeName>DevInfo</NodeName>");
    s.add(parse_ddf(xml.as_bytes()).unwrap());
    assert_eq!(s.roots().len(), before);
    assert_eq!(
        s.roots()
            .iter()
            .filter(|r| r.node.name.as_deref() == Some("DevInfo"))
            .count(),
        1
    );
    assert_eq!(node(&s, "./DevInfo/Only").format, Format::Chr);
    assert_eq!(s.lookup("./DevInfo/DevId"), Lookup::Undescribed);
    // The other roots are untouched.
    assert_eq!(node(&s, "./DevDetail/URI/MaxDepth").format, Format::Chr);

    // A root of another name at the same parent is added beside, not over.
    s.add(parse_ddf(doc_with(&child("X", CHR, "")).as_bytes()).unwrap());
    assert_eq!(s.roots().len(), before + 1);
    assert_eq!(node(&s, "./Top/X").format, Format::Chr);
    assert_eq!(node(&s, "./DevInfo/Only").format, Format::Chr);
}

// ----- writing and reading back -------------------------------------------------

#[test]
fn every_shipped_ddf_round_trips_through_write_document() {
    for (file, bytes, ..) in SHIPPED {
        let roots = parse_ddf(bytes).unwrap();
        let xml = doc::write_xml(&write_document(&roots)).unwrap();
        let again = parse_ddf(&xml)
            .unwrap_or_else(|e| panic!("{file}: {e}\n{}", String::from_utf8_lossy(&xml)));
        assert_eq!(again, roots, "{file}");
        // And once more: the written form is stable.
        assert_eq!(
            doc::write_xml(&write_document(&again)).unwrap(),
            xml,
            "{file}"
        );
    }
}

#[test]
fn write_document_keeps_several_roots_man_and_mod() {
    let xml = r#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD><Man>Acme</Man><Mod>R2</Mod>
<Node><NodeName>A</NodeName><Path>./Vendor</Path>
<DFProperties><AccessType><Get/><Exec/></AccessType><DFFormat><int/></DFFormat>
<DefaultValue>7</DefaultValue><Occurrence><ZeroOrN>3</ZeroOrN></Occurrence>
<Scope><Permanent/></Scope><DFTitle>a title</DFTitle><DFType><MIME>text/plain</MIME></DFType>
</DFProperties></Node>
<Node><NodeName>B</NodeName>
<DFProperties><AccessType/><DFFormat><node/></DFFormat><Occurrence><OneOrN>2</OneOrN></Occurrence></DFProperties>
<Node><NodeName/><DFProperties><AccessType><Copy/></AccessType><DFFormat><bool/></DFFormat><Occurrence><OneOrMore/></Occurrence></DFProperties></Node>
</Node></MgmtTree>"#;
    let roots = parse_ddf(xml.as_bytes()).unwrap();
    assert_eq!(roots.len(), 2);
    assert_eq!(roots[0].man.as_deref(), Some("Acme"));
    assert_eq!(roots[0].model.as_deref(), Some("R2"));
    assert_eq!(roots[0].node.occurrence, Occurrence::ZeroOrN(3));
    assert_eq!(roots[0].node.title.as_deref(), Some("a title"));
    assert_eq!(roots[1].parent, ".");
    assert_eq!(roots[1].node.occurrence, Occurrence::OneOrN(2));
    assert_eq!(roots[1].node.access, Access::default());
    assert!(roots[1].node.children[0].access.allows(AccessOp::Copy));
    let written = doc::write_xml(&write_document(&roots)).unwrap();
    assert_eq!(parse_ddf(&written).unwrap(), roots);
}

#[test]
fn a_wbxml_ddf_parses_like_its_xml() {
    for (file, bytes, ..) in SHIPPED {
        let element = doc::read_root(bytes).unwrap();
        let wbxml = doc::write_wbxml(&element).unwrap();
        assert!(syncml_core::wbxml::looks_like_wbxml(&wbxml), "{file}");
        let from_wbxml = parse_ddf(&wbxml).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(from_wbxml, parse_ddf(bytes).unwrap(), "{file}");
        // The written description too.
        let written = doc::write_wbxml(&write_document(&from_wbxml)).unwrap();
        assert_eq!(parse_ddf(&written).unwrap(), from_wbxml, "{file}");
    }
}

// ----- parse errors -------------------------------------------------------------

#[test]
fn the_root_must_be_mgmt_tree() {
    let xml = doc_with("").replace("MgmtTree", "Tree");
    let why = ddf_error(xml.as_bytes());
    assert!(why.contains("MgmtTree") && why.contains("Tree"), "{why}");
}

#[test]
fn a_document_needs_a_node() {
    let why = ddf_error(br#"<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD></MgmtTree>"#);
    assert!(why.contains("without any Node"), "{why}");
}

#[test]
fn a_leaf_cannot_have_children() {
    let xml = doc_with(&child("Leaf", CHR, &child("Kid", CHR, "")));
    let why = ddf_error(xml.as_bytes());
    assert!(why.contains("leaf Leaf") && why.contains("child"), "{why}");
}

#[test]
fn unknown_format_access_scope_type_and_occurrence_are_refused() {
    let cases = [
        (
            "<AccessType><Get/></AccessType><DFFormat><text/></DFFormat>",
            "unknown DFFormat text",
        ),
        (
            "<AccessType><Read/></AccessType><DFFormat><chr/></DFFormat>",
            "unknown AccessType Read",
        ),
        (
            "<AccessType><Get/></AccessType><DFFormat><chr/></DFFormat><Scope><Forever/></Scope>",
            "unknown Scope Forever",
        ),
        (
            "<AccessType><Get/></AccessType><DFFormat><chr/></DFFormat><DFType><Mime>x</Mime></DFType>",
            "unknown DFType Mime",
        ),
        (
            "<AccessType><Get/></AccessType><DFFormat><chr/></DFFormat><Occurrence><Many/></Occurrence>",
            "unknown Occurrence Many",
        ),
        (
            "<AccessType><Get/></AccessType><DFFormat><chr/></DFFormat><Occurrence/>",
            "empty Occurrence",
        ),
        ("<AccessType><Get/></AccessType>", "has no DFFormat"),
        (
            "<AccessType><Get/></AccessType><DFFormat/>",
            "has no DFFormat",
        ),
    ];
    for (props, expected) in cases {
        let why = ddf_error(doc_with(&child("N", props, "")).as_bytes());
        assert!(
            why.contains(expected) && why.contains('N'),
            "{props}: {why}"
        );
    }
    let why = ddf_error(doc_with("<Node><NodeName>N</NodeName></Node>").as_bytes());
    assert!(why.contains("node N has no DFProperties"), "{why}");
}

#[test]
fn a_default_value_must_be_valid_in_its_format() {
    for (format, value) in [("int", "abc"), ("bool", "maybe"), ("node", "x")] {
        let props = format!(
            "<AccessType><Get/></AccessType><DefaultValue>{value}</DefaultValue><DFFormat><{format}/></DFFormat>"
        );
        let why = ddf_error(doc_with(&child("N", &props, "")).as_bytes());
        assert!(
            why.contains("DefaultValue") && why.contains(value),
            "{format}: {why}"
        );
    }
    let props = "<AccessType><Get/></AccessType><DefaultValue> 12 </DefaultValue><DFFormat><int/></DFFormat>";
    let roots = parse_ddf(doc_with(&child("N", props, "")).as_bytes()).unwrap();
    assert_eq!(
        roots[0].node.children[0].default_value.as_deref(),
        Some("12")
    );
}

#[test]
fn zero_or_n_and_one_or_n_need_a_number() {
    for occ in [
        "<ZeroOrN/>",
        "<ZeroOrN>many</ZeroOrN>",
        "<OneOrN>-1</OneOrN>",
    ] {
        let props = format!("{CHR}<Occurrence>{occ}</Occurrence>");
        let why = ddf_error(doc_with(&child("N", &props, "")).as_bytes());
        assert!(why.contains("needs a number"), "{occ}: {why}");
    }
}

#[test]
fn a_node_name_must_be_a_valid_segment() {
    for name in ["a/b", "a?b", ".", ".."] {
        let why = ddf_error(doc_with(&child(name, CHR, "")).as_bytes());
        assert!(
            why.contains("NodeName") && why.contains(name),
            "{name}: {why}"
        );
    }
}

#[test]
fn a_bad_path_and_deep_nesting_are_refused() {
    let xml = doc_with("").replace("<Path>.</Path>", "<Path>./A//B</Path>");
    assert!(ddf_error(xml.as_bytes()).contains("Path"));

    // Top is at depth 0: `levels` interior nodes put the leaf at depth levels + 1.
    let nested = |levels: usize| {
        let mut n = child("Leaf", CHR, "");
        for i in 0..levels {
            n = child(
                &format!("N{i}"),
                "<AccessType><Get/></AccessType><DFFormat><node/></DFFormat>",
                &n,
            );
        }
        doc_with(&n)
    };
    assert!(parse_ddf(nested(47).as_bytes()).is_ok());
    let why = ddf_error(nested(48).as_bytes());
    assert!(why.contains("too deep"), "{why}");
}

#[test]
fn garbage_is_a_ddf_error() {
    for bytes in [&b""[..], b"<MgmtTree", b"not xml at all", b"\x02\x00\x00"] {
        assert!(matches!(parse_ddf(bytes), Err(Error::Ddf(_))), "{bytes:?}");
    }
}

// ----- ddf_document from a live tree --------------------------------------------

fn live_tree() -> Tree {
    let mut t = Tree::new();
    t.put("./DMAcc/srv1/ServerID", Record::leaf(Format::Chr, "srv1"))
        .unwrap();
    t.put(
        "./DMAcc/srv1/AppAuth/cred1/AAuthSecret",
        Record::leaf(Format::Chr, "secret"),
    )
    .unwrap();
    let vendor = Record::interior().with_type("urn:acme:vendor");
    t.put("./Vendor", vendor).unwrap();
    let mut x = Record::leaf(Format::Int, "5").with_type("text/plain");
    x.props.acl = "Get=*&Replace=srv1".parse().unwrap();
    x.props.title = "Volume".into();
    t.put("./Vendor/X", x).unwrap();
    t.put(
        "./Vendor/Sub/Y",
        Record::leaf(Format::Bin, vec![1, 2]).with_type("application/octet-stream"),
    )
    .unwrap();
    t
}

fn dmacc_schema() -> Schema {
    let mut s = Schema::default();
    s.add(shipped("dmacc.xml"));
    s
}

/// The document as bytes and parsed back.
fn document_roots(t: &Tree, s: &Schema, path: &str) -> (Element, Vec<DdfRoot>) {
    let e = ddf_document(t, s, path).unwrap();
    assert_eq!(e.name, "MgmtTree");
    let xml = doc::write_xml(&e).unwrap();
    let roots = parse_ddf(&xml)
        .unwrap_or_else(|err| panic!("{path}: {err}\n{}", String::from_utf8_lossy(&xml)));
    (e, roots)
}

#[test]
fn a_described_subtree_is_written_as_its_ddf_says() {
    let t = live_tree();
    let s = dmacc_schema();
    let (e, roots) = document_roots(&t, &s, "./DMAcc");
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].parent, ".");
    assert_eq!(roots[0].node, s.roots()[0].node);
    // The placeholder is written as an empty NodeName, not as the live srv1.
    let top = node_elements(&e)[0];
    assert_eq!(node_name(top), "DMAcc");
    let kids = node_elements(top);
    assert_eq!(kids.len(), 1);
    assert_eq!(node_name(kids[0]), "");
}

#[test]
fn an_instance_at_the_top_is_named_and_placeholders_below_stay_empty() {
    let t = live_tree();
    let s = dmacc_schema();
    let (e, roots) = document_roots(&t, &s, "./DMAcc/srv1");
    assert_eq!(roots[0].parent, "./DMAcc");
    assert_eq!(roots[0].node.name.as_deref(), Some("srv1"));
    let placeholder = node(&s, "./DMAcc/any");
    assert_eq!(roots[0].node.children, placeholder.children);
    assert_eq!(roots[0].node.access, placeholder.access);

    let top = node_elements(&e)[0];
    assert_eq!(doc::child_text(top, "Path").as_deref(), Some("./DMAcc"));
    let app_auth = node_elements(top)
        .into_iter()
        .find(|n| node_name(n) == "AppAuth")
        .unwrap();
    let creds = node_elements(app_auth);
    assert_eq!(creds.len(), 1);
    assert_eq!(
        node_name(creds[0]),
        "",
        "the live cred1 leaked into the description"
    );

    let (_, roots) = document_roots(&t, &s, "./DMAcc/srv1/AppAuth/cred1");
    assert_eq!(roots[0].parent, "./DMAcc/srv1/AppAuth");
    assert_eq!(roots[0].node.name.as_deref(), Some("cred1"));
    assert_eq!(
        roots[0].node.children,
        node(&s, "./DMAcc/a/AppAuth/b").children
    );
}

#[test]
fn undescribed_live_nodes_are_written_with_their_format_and_type() {
    let t = live_tree();
    let s = dmacc_schema();
    let (_, roots) = document_roots(&t, &s, "./Vendor");
    assert_eq!(roots.len(), 1);
    assert_eq!(roots[0].parent, ".");
    let vendor = &roots[0].node;
    assert_eq!(vendor.name.as_deref(), Some("Vendor"));
    assert_eq!(vendor.format, Format::Node);
    assert_eq!(vendor.df_type, DfType::DdfName("urn:acme:vendor".into()));
    // No ACL of its own: the root default Add=*&Get=*.
    let ops: Vec<_> = vendor.access.ops().collect();
    assert_eq!(ops, [AccessOp::Add, AccessOp::Get]);

    let names: Vec<_> = vendor.children.iter().map(|c| c.name.as_deref()).collect();
    assert_eq!(names, [Some("Sub"), Some("X")]);
    let x = &vendor.children[1];
    assert_eq!(x.format, Format::Int);
    assert_eq!(x.df_type, DfType::Mime("text/plain".into()));
    assert_eq!(x.title.as_deref(), Some("Volume"));
    let ops: Vec<_> = x.access.ops().collect();
    assert_eq!(ops, [AccessOp::Get, AccessOp::Replace]);
    let y = &vendor.children[0].children[0];
    assert_eq!(y.name.as_deref(), Some("Y"));
    assert_eq!(y.format, Format::Bin);
    assert_eq!(y.df_type, DfType::Mime("application/octet-stream".into()));

    // A leaf alone.
    let (_, roots) = document_roots(&t, &s, "./Vendor/X");
    assert_eq!(roots[0].parent, "./Vendor");
    assert_eq!(roots[0].node, *x);
}

#[test]
fn the_whole_tree_is_written_as_one_node_per_top_level_object() {
    let t = live_tree();
    let s = dmacc_schema();
    let (_, roots) = document_roots(&t, &s, ".");
    let names: Vec<_> = roots.iter().map(|r| r.node.name.as_deref()).collect();
    assert_eq!(names, [Some("DMAcc"), Some("Vendor")]);
    assert!(roots.iter().all(|r| r.parent == "."));
    assert_eq!(roots[0].node, s.roots()[0].node);
    assert!(matches!(
        ddf_document(&t, &s, "./Nowhere"),
        Err(Error::NotFound(_))
    ));
}
