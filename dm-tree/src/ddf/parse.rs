//! Reading a DDF document (`MgmtTree` of `Node`s with `DFProperties`).

use syncml_core::Element;

use super::{Access, AccessOp, DdfNode, DdfRoot, DfType, Occurrence, Scope};
use crate::doc::{child_text, elements, read_root};
use crate::error::Error;
use crate::format::Format;
use crate::uri::{valid_name, Uri};

/// Nesting deeper than this is refused (the reader's own depth limit is wider).
const MAX_DEPTH: usize = 48;

/// Parses a DDF document (XML or WBXML) into the subtrees it describes.
pub fn parse_ddf(bytes: &[u8]) -> Result<Vec<DdfRoot>, Error> {
    let root = read_root(bytes)?;
    if root.name != "MgmtTree" {
        return Err(bad(format!(
            "the root element is {}, not MgmtTree",
            root.name
        )));
    }
    let man = child_text(&root, "Man");
    let model = child_text(&root, "Mod");
    let mut out = Vec::new();
    for n in elements(&root).filter(|e| e.name == "Node") {
        let parent = match child_text(n, "Path") {
            None => ".".to_owned(),
            Some(p) => Uri::path(&p)
                .map_err(|e| bad(format!("Path {p}: {e}")))?
                .to_string(),
        };
        out.push(DdfRoot {
            parent,
            node: node(n, 0)?,
            man: man.clone(),
            model: model.clone(),
        });
    }
    if out.is_empty() {
        return Err(bad("a MgmtTree without any Node".into()));
    }
    Ok(out)
}

fn bad(why: String) -> Error {
    Error::Ddf(why)
}

fn node(e: &Element, depth: usize) -> Result<DdfNode, Error> {
    if depth > MAX_DEPTH {
        return Err(bad("nodes nested too deep".into()));
    }
    let name = child_text(e, "NodeName").filter(|n| !n.is_empty());
    if let Some(n) = &name {
        if !valid_name(n) {
            return Err(bad(format!("NodeName {n:?} is not a valid node name")));
        }
    }
    let shown = name.clone().unwrap_or_else(|| "<x>".into());
    let p = e
        .child("DFProperties")
        .ok_or_else(|| bad(format!("node {shown} has no DFProperties")))?;
    let access = match p.child("AccessType") {
        Some(a) => elements(a).try_fold(Access::default(), |acc, op| {
            AccessOp::from_name(&op.name)
                .map(|o| acc.with(o))
                .ok_or_else(|| bad(format!("node {shown}: unknown AccessType {}", op.name)))
        })?,
        None => Access::default(),
    };
    let format = one_of(p, "DFFormat", &shown).and_then(|f| {
        Format::from_name(&f).ok_or_else(|| bad(format!("node {shown}: unknown DFFormat {f}")))
    })?;
    let occurrence = match p.child("Occurrence") {
        None => Occurrence::One,
        Some(o) => occurrence(o, &shown)?,
    };
    let scope = match p.child("Scope").and_then(|s| elements(s).next()) {
        None => Scope::Dynamic,
        Some(s) if s.name == "Permanent" => Scope::Permanent,
        Some(s) if s.name == "Dynamic" => Scope::Dynamic,
        Some(s) => return Err(bad(format!("node {shown}: unknown Scope {}", s.name))),
    };
    let df_type = match p.child("DFType").and_then(|t| elements(t).next()) {
        Some(t) if t.name == "MIME" => DfType::Mime(t.text().trim().to_owned()),
        Some(t) if t.name == "DDFName" => DfType::DdfName(t.text().trim().to_owned()),
        Some(t) => return Err(bad(format!("node {shown}: unknown DFType {}", t.name))),
        None => DfType::Mime(String::new()),
    };
    let mut children = Vec::new();
    for c in elements(e).filter(|c| c.name == "Node") {
        children.push(node(c, depth + 1)?);
    }
    if format != Format::Node && !children.is_empty() {
        return Err(bad(format!("leaf {shown} has child nodes")));
    }
    let default_value = child_text(p, "DefaultValue");
    if let Some(v) = &default_value {
        if format.validate(v.as_bytes()).is_err() {
            return Err(bad(format!(
                "node {shown}: DefaultValue {v:?} is not {format}"
            )));
        }
    }
    Ok(DdfNode {
        name,
        access,
        default_value,
        description: child_text(p, "Description"),
        format,
        occurrence,
        scope,
        title: child_text(p, "DFTitle"),
        df_type,
        children,
    })
}

/// The name of the single empty element inside `outer` (`<DFFormat><chr/></DFFormat>`).
fn one_of(p: &Element, outer: &str, shown: &str) -> Result<String, Error> {
    p.child(outer)
        .and_then(|o| elements(o).next())
        .map(|e| e.name.clone())
        .ok_or_else(|| bad(format!("node {shown} has no {outer}")))
}

fn occurrence(o: &Element, shown: &str) -> Result<Occurrence, Error> {
    let e = elements(o)
        .next()
        .ok_or_else(|| bad(format!("node {shown}: empty Occurrence")))?;
    let n = || {
        e.text()
            .trim()
            .parse::<u32>()
            .map_err(|_| bad(format!("node {shown}: {} needs a number", e.name)))
    };
    Ok(match e.name.as_str() {
        "One" => Occurrence::One,
        "ZeroOrOne" => Occurrence::ZeroOrOne,
        "ZeroOrMore" => Occurrence::ZeroOrMore,
        "OneOrMore" => Occurrence::OneOrMore,
        "ZeroOrN" => Occurrence::ZeroOrN(n()?),
        "OneOrN" => Occurrence::OneOrN(n()?),
        other => return Err(bad(format!("node {shown}: unknown Occurrence {other}"))),
    })
}
