//! TNDS: a subtree serialised as a `MgmtTree` document with run-time properties and
//! values (the answer to `?list=TNDS+...`, and `dm-tree export --tnds`).

use base64::Engine;
use syncml_core::Element;

use crate::doc::{el, push, text_el, wrapped};
use crate::format::Format;
use crate::node::iso8601_basic;
use crate::tree::NodeRef;
use crate::uri::TndsFields;

/// The TNDS media types (XML and WBXML).
pub const TNDS_XML: &str = "application/vnd.syncml.dmtnds+xml";
pub const TNDS_WBXML: &str = "application/vnd.syncml.dmtnds+wbxml";

/// Whether and how a node appears in an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Left out, with its subtree.
    Hidden,
    /// Listed without its value.
    NoValue,
    /// Listed with everything asked for.
    Full,
}

/// The TNDS document of the subtree at `top`. `visible` decides, node by node, what a
/// reader may see (the executor passes the server's Get rights).
pub fn tnds_document(
    top: NodeRef<'_>,
    fields: &TndsFields,
    visible: &dyn Fn(NodeRef<'_>) -> Visibility,
) -> Element {
    let mut mt = el("MgmtTree");
    push(&mut mt, text_el("VerDTD", "1.2"));
    if top.parent().is_none() {
        for c in top.children() {
            if let Some(e) = node(c, fields, visible, true) {
                push(&mut mt, e);
            }
        }
    } else if let Some(e) = node(top, fields, visible, true) {
        push(&mut mt, e);
    }
    mt
}

fn node(
    n: NodeRef<'_>,
    fields: &TndsFields,
    visible: &dyn Fn(NodeRef<'_>) -> Visibility,
    top: bool,
) -> Option<Element> {
    let vis = visible(n);
    if vis == Visibility::Hidden {
        return None;
    }
    let rec = n.record();
    let p = &rec.props;
    let mut e = el("Node");
    push(&mut e, text_el("NodeName", n.name()));
    if top {
        push(
            &mut e,
            text_el("Path", n.parent().map(|p| p.path()).unwrap_or(".")),
        );
    }
    let mut rt = el("RTProperties");
    if fields.acl {
        push(&mut rt, text_el("ACL", &p.acl.to_string()));
    }
    if fields.format {
        push(&mut rt, wrapped("Format", p.format.name()));
    }
    if fields.size {
        if let Some(v) = rec.value() {
            push(&mut rt, text_el("Size", &v.len().to_string()));
        }
    }
    if fields.title && !p.title.is_empty() {
        push(&mut rt, text_el("Title", &p.title));
    }
    if fields.tstamp && p.tstamp != 0 {
        push(&mut rt, text_el("TStamp", &iso8601_basic(p.tstamp)));
    }
    if fields.type_ {
        let mut t = el("Type");
        let inner = if rec.is_leaf() { "MIME" } else { "DDFName" };
        push(&mut t, text_el(inner, &p.type_));
        push(&mut rt, t);
    }
    if fields.verno {
        push(&mut rt, text_el("VerNo", &p.verno.to_string()));
    }
    if !rt.children.is_empty() {
        push(&mut e, rt);
    }
    match rec.value() {
        Some(v) if fields.value && vis == Visibility::Full => {
            push(&mut e, text_el("Value", &value_text(p.format, v)))
        }
        Some(_) => {}
        None => {
            for c in n.children() {
                if let Some(ce) = node(c, fields, visible, false) {
                    push(&mut e, ce);
                }
            }
        }
    }
    Some(e)
}

/// A value as TNDS text: binary values are base64-encoded, since XML cannot carry
/// arbitrary bytes; everything else is already text.
fn value_text(format: Format, v: &[u8]) -> String {
    match (format, std::str::from_utf8(v)) {
        (Format::Bin, _) | (_, Err(_)) => base64::engine::general_purpose::STANDARD.encode(v),
        (_, Ok(s)) => s.to_owned(),
    }
}

/// A node read from a TNDS document, ready to be created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedNode {
    /// The canonical path of the node.
    pub path: String,
    pub rec: crate::node::Record,
    /// Whether the document gave a Format (TNDS may leave it out; then the DDF's,
    /// or `chr` for a leaf, applies).
    pub format_given: bool,
}

/// Reads the nodes of a TNDS document, parents first. Top-level nodes go under
/// their `Path` if they give one, else under `parent`. Values are checked against
/// their Format (`bin` values are base64 text in TNDS, as [`tnds_document`] writes
/// them).
pub fn parse_tnds(root: &Element, parent: &str) -> Result<Vec<ImportedNode>, crate::Error> {
    use crate::doc::{child_text, elements};
    use crate::error::Error;
    if root.name != "MgmtTree" {
        return Err(Error::Ddf(format!(
            "TNDS root is {}, not MgmtTree",
            root.name
        )));
    }
    let mut out = Vec::new();
    for n in elements(root).filter(|e| e.name == "Node") {
        let under = match child_text(n, "Path") {
            Some(p) if !p.is_empty() => crate::uri::Uri::path(&p)?.to_string(),
            _ => parent.to_owned(),
        };
        import_node(n, &under, 0, &mut out)?;
    }
    if out.is_empty() {
        return Err(Error::Ddf("a TNDS document without any Node".into()));
    }
    Ok(out)
}

/// Deeper than this is refused (the document reader has its own, wider, limit).
const MAX_TNDS_DEPTH: usize = 48;

fn import_node(
    e: &Element,
    parent: &str,
    depth: usize,
    out: &mut Vec<ImportedNode>,
) -> Result<(), crate::Error> {
    use crate::doc::{child_text, elements};
    use crate::error::Error;
    use crate::node::{Kind, Record};
    if depth > MAX_TNDS_DEPTH {
        return Err(Error::Ddf("TNDS nodes nested too deep".into()));
    }
    let name = child_text(e, "NodeName").unwrap_or_default();
    if !crate::uri::valid_name(&name) {
        return Err(Error::BadName(name));
    }
    let path = crate::uri::child_path(parent, &name);
    let rt = e.child("RTProperties");
    let prop = |n: &str| rt.and_then(|r| child_text(r, n));
    let value = e.child("Value").map(|v| v.text());
    let children: Vec<&Element> = elements(e).filter(|c| c.name == "Node").collect();
    let given = rt
        .and_then(|r| r.child("Format"))
        .and_then(|f| elements(f).next());
    let format = match given {
        Some(f) => Format::from_name(&f.name)
            .ok_or_else(|| Error::Ddf(format!("{path}: unknown Format {}", f.name)))?,
        None if value.is_some() => Format::Chr,
        None => Format::Node,
    };
    let mut rec = if format == Format::Node {
        if value.is_some() {
            return Err(Error::Ddf(format!("{path}: an interior node with a Value")));
        }
        Record::interior()
    } else {
        if !children.is_empty() {
            return Err(Error::Ddf(format!("{path}: a leaf with child nodes")));
        }
        let text = value.unwrap_or_default();
        let bytes = if format == Format::Bin {
            let clean: String = text.split_whitespace().collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| Error::Ddf(format!("{path}: bin Value is not base64")))?
        } else {
            text.into_bytes()
        };
        format
            .validate(&bytes)
            .map_err(|err| Error::Ddf(format!("{path}: {err}")))?;
        Record {
            kind: Kind::Leaf(format.normalize(&bytes)),
            props: crate::node::Props::new(format),
        }
    };
    if let Some(t) = rt
        .and_then(|r| r.child("Type"))
        .and_then(|t| elements(t).next())
    {
        rec.props.type_ = t.text().trim().to_owned();
    }
    if let Some(acl) = prop("ACL") {
        rec.props.acl = crate::acl::Acl::parse(&acl)
            .map_err(|err| Error::Ddf(format!("{path}: ACL: {err}")))?;
    }
    if let Some(t) = prop("Title") {
        rec.props.title = t;
    }
    out.push(ImportedNode {
        path: path.clone(),
        rec,
        format_given: given.is_some(),
    });
    for c in children {
        import_node(c, &path, depth + 1, out)?;
    }
    Ok(())
}
