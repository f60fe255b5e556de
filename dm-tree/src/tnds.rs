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
