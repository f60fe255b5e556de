//! Writing DDF documents: loaded descriptions as they are, and live subtrees that no
//! DDF describes, with properties inferred from the nodes.

use syncml_core::{Element, Node};

use super::{AccessOp, DdfNode, DdfRoot, DfType, Lookup, Occurrence, Schema, Scope};
use crate::acl::AclCmd;
use crate::doc::{el, push, text_el, wrapped};
use crate::error::Error;
use crate::tree::{NodeRef, Tree};

/// The `MgmtTree` element of a document describing `roots`.
pub fn write_document(roots: &[DdfRoot]) -> Element {
    let mut mt = mgmt_tree(
        roots.first().and_then(|r| r.man.as_deref()),
        roots.first().and_then(|r| r.model.as_deref()),
    );
    for r in roots {
        push(&mut mt, node_element(&r.node, None, Some(&r.parent)));
    }
    mt
}

/// A DDF document for the subtree at `path` of `tree`: described nodes as their DDF
/// says (placeholders kept), undescribed ones from what the tree holds.
pub fn ddf_document(tree: &Tree, schema: &Schema, path: &str) -> Result<Element, Error> {
    let n = tree
        .get(path)
        .ok_or_else(|| Error::NotFound(path.to_owned()))?;
    let mut mt = mgmt_tree(None, None);
    let parent = n.parent().map(|p| p.path()).unwrap_or(".");
    if n.parent().is_none() {
        // The root is not a node of a DDF: describe its children.
        for c in n.children() {
            push(&mut mt, live_element(c, schema, Some(".")));
        }
    } else {
        push(&mut mt, live_element(n, schema, Some(parent)));
    }
    Ok(mt)
}

fn mgmt_tree(man: Option<&str>, model: Option<&str>) -> Element {
    let mut mt = el("MgmtTree");
    push(&mut mt, text_el("VerDTD", "1.2"));
    if let Some(m) = man {
        push(&mut mt, text_el("Man", m));
    }
    if let Some(m) = model {
        push(&mut mt, text_el("Mod", m));
    }
    mt
}

fn live_element(n: NodeRef<'_>, schema: &Schema, path: Option<&str>) -> Element {
    if let Lookup::Node(d) = schema.lookup(n.path()) {
        return node_element(d, Some(n.name()), path);
    }
    let rec = n.record();
    let acl = n.effective_acl();
    let mut access = super::Access::default();
    for (cmd, op) in [
        (AclCmd::Add, AccessOp::Add),
        (AclCmd::Delete, AccessOp::Delete),
        (AclCmd::Exec, AccessOp::Exec),
        (AclCmd::Get, AccessOp::Get),
        (AclCmd::Replace, AccessOp::Replace),
    ] {
        if acl.names(cmd) {
            access = access.with(op);
        }
    }
    let d = DdfNode {
        name: Some(n.name().to_owned()),
        access,
        default_value: None,
        description: None,
        format: rec.props.format,
        occurrence: Occurrence::One,
        scope: Scope::Dynamic,
        title: (!rec.props.title.is_empty()).then(|| rec.props.title.clone()),
        df_type: if rec.is_leaf() {
            DfType::Mime(rec.props.type_.clone())
        } else {
            DfType::DdfName(rec.props.type_.clone())
        },
        children: Vec::new(),
    };
    let mut e = node_element(&d, None, path);
    for c in n.children() {
        push(&mut e, live_element(c, schema, None));
    }
    e
}

/// A `Node` element; `name` overrides the description's (for a placeholder seen
/// through an instance at the top of an export).
fn node_element(d: &DdfNode, name: Option<&str>, path: Option<&str>) -> Element {
    let mut e = el("Node");
    push(
        &mut e,
        text_el("NodeName", name.or(d.name.as_deref()).unwrap_or("")),
    );
    if let Some(p) = path {
        push(&mut e, text_el("Path", p));
    }
    let mut p = el("DFProperties");
    let mut access = el("AccessType");
    for op in d.access.ops() {
        push(&mut access, el(op.name()));
    }
    push(&mut p, access);
    if let Some(v) = &d.default_value {
        push(&mut p, text_el("DefaultValue", v));
    }
    if let Some(v) = &d.description {
        push(&mut p, text_el("Description", v));
    }
    push(&mut p, wrapped("DFFormat", d.format.name()));
    let mut occ = el("Occurrence");
    match d.occurrence {
        Occurrence::ZeroOrN(n) | Occurrence::OneOrN(n) => {
            push(&mut occ, text_el(d.occurrence.name(), &n.to_string()))
        }
        o => push(&mut occ, el(o.name())),
    }
    push(&mut p, occ);
    push(
        &mut p,
        wrapped(
            "Scope",
            match d.scope {
                Scope::Permanent => "Permanent",
                Scope::Dynamic => "Dynamic",
            },
        ),
    );
    if let Some(t) = &d.title {
        push(&mut p, text_el("DFTitle", t));
    }
    let mut ty = el("DFType");
    match &d.df_type {
        DfType::Mime(m) => push(&mut ty, text_el("MIME", m)),
        DfType::DdfName(n) => push(&mut ty, text_el("DDFName", n)),
    }
    push(&mut p, ty);
    e.children.push(Node::Element(p));
    for c in &d.children {
        push(&mut e, node_element(c, None, None));
    }
    e
}
