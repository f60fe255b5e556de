//! Device Description Framework: the schema of a subtree.
//!
//! A DDF document describes nodes by name (or as an unnamed placeholder `<x>` that
//! stands for any name), with what a server may do to them (AccessType), how many may
//! exist (Occurrence), whether the server may delete them (Scope), their Format,
//! default value and type. The executor consults the [`Schema`] for every command on
//! a described node; nodes outside every loaded DDF are governed by ACLs alone.

mod parse;
mod write;

pub use parse::parse_ddf;
pub use write::{ddf_document, write_document};

use crate::format::Format;

/// The commands a DDF AccessType can allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessOp {
    Add,
    Copy,
    Delete,
    Exec,
    Get,
    Replace,
}

impl AccessOp {
    pub const ALL: [AccessOp; 6] = [
        AccessOp::Add,
        AccessOp::Copy,
        AccessOp::Delete,
        AccessOp::Exec,
        AccessOp::Get,
        AccessOp::Replace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AccessOp::Add => "Add",
            AccessOp::Copy => "Copy",
            AccessOp::Delete => "Delete",
            AccessOp::Exec => "Exec",
            AccessOp::Get => "Get",
            AccessOp::Replace => "Replace",
        }
    }

    pub fn from_name(s: &str) -> Option<AccessOp> {
        AccessOp::ALL.into_iter().find(|a| a.name() == s)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of [`AccessOp`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Access(u8);

impl Access {
    pub fn allows(self, op: AccessOp) -> bool {
        self.0 & op.bit() != 0
    }

    pub fn with(self, op: AccessOp) -> Access {
        Access(self.0 | op.bit())
    }

    pub fn ops(self) -> impl Iterator<Item = AccessOp> {
        AccessOp::ALL.into_iter().filter(move |o| self.allows(*o))
    }
}

/// How many instances of a node may exist under one parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Occurrence {
    One,
    ZeroOrOne,
    ZeroOrMore,
    OneOrMore,
    ZeroOrN(u32),
    OneOrN(u32),
}

impl Occurrence {
    /// The most instances allowed (`None`: no bound).
    pub fn max(self) -> Option<u32> {
        match self {
            Occurrence::One | Occurrence::ZeroOrOne => Some(1),
            Occurrence::ZeroOrN(n) | Occurrence::OneOrN(n) => Some(n),
            Occurrence::ZeroOrMore | Occurrence::OneOrMore => None,
        }
    }

    /// The fewest instances required; a node cannot be deleted below it.
    pub fn min(self) -> u32 {
        match self {
            Occurrence::One | Occurrence::OneOrMore | Occurrence::OneOrN(_) => 1,
            _ => 0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Occurrence::One => "One",
            Occurrence::ZeroOrOne => "ZeroOrOne",
            Occurrence::ZeroOrMore => "ZeroOrMore",
            Occurrence::OneOrMore => "OneOrMore",
            Occurrence::ZeroOrN(_) => "ZeroOrN",
            Occurrence::OneOrN(_) => "OneOrN",
        }
    }
}

/// Whether the server may delete the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Permanent,
    Dynamic,
}

/// DFType: the MIME type of a leaf or the object identifier of an interior node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DfType {
    Mime(String),
    DdfName(String),
}

impl DfType {
    pub fn as_str(&self) -> &str {
        match self {
            DfType::Mime(s) | DfType::DdfName(s) => s,
        }
    }
}

/// One described node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdfNode {
    /// `None` for an unnamed placeholder (any name matches).
    pub name: Option<String>,
    pub access: Access,
    pub default_value: Option<String>,
    pub description: Option<String>,
    pub format: Format,
    pub occurrence: Occurrence,
    pub scope: Scope,
    pub title: Option<String>,
    pub df_type: DfType,
    pub children: Vec<DdfNode>,
}

impl DdfNode {
    /// The child describing a node of this name: the named one, else a placeholder.
    pub fn child(&self, name: &str) -> Option<&DdfNode> {
        self.children
            .iter()
            .find(|c| c.name.as_deref() == Some(name))
            .or_else(|| self.children.iter().find(|c| c.name.is_none()))
    }

    pub fn is_permanent(&self) -> bool {
        self.scope == Scope::Permanent
    }

    /// The name shown for the node in a document (`<x>` style for a placeholder).
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or("<x>")
    }
}

/// A described subtree: the node at `parent/node.name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DdfRoot {
    /// The canonical path of the parent (`.` for a node at the root).
    pub parent: String,
    pub node: DdfNode,
    /// The document's Man and Mod, kept for export.
    pub man: Option<String>,
    pub model: Option<String>,
}

/// The DDF documents a tree enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    roots: Vec<DdfRoot>,
}

impl Schema {
    /// Adds the subtrees of a parsed document. A later document describing the same
    /// path replaces the earlier description.
    pub fn add(&mut self, roots: Vec<DdfRoot>) {
        for r in roots {
            self.roots
                .retain(|o| !(o.parent == r.parent && o.node.name == r.node.name));
            self.roots.push(r);
        }
    }

    pub fn roots(&self) -> &[DdfRoot] {
        &self.roots
    }

    /// What the loaded DDFs say about the node at a canonical path. Where several
    /// described subtrees contain the path (a vendor object under `./DevDetail/Ext`
    /// inside DevDetail's), the deepest one decides.
    pub fn lookup(&self, path: &str) -> Lookup<'_> {
        let mut best: Option<(&DdfRoot, &str)> = None;
        for r in &self.roots {
            let rest = if r.parent == "." {
                path.strip_prefix("./")
            } else {
                path.strip_prefix(r.parent.as_str())
                    .and_then(|p| p.strip_prefix('/'))
            };
            let Some(rest) = rest else { continue };
            let first = rest.split('/').next().unwrap_or_default();
            if r.node.name.as_deref().is_some_and(|n| n != first) {
                continue;
            }
            if best.is_none_or(|(b, _)| r.parent.len() > b.parent.len()) {
                best = Some((r, rest));
            }
        }
        let Some((r, rest)) = best else {
            return Lookup::Outside;
        };
        let mut n = &r.node;
        for seg in rest.split('/').skip(1) {
            match n.child(seg) {
                Some(c) => n = c,
                // An interior node described without any children (Ext, Bearer)
                // is open for vendor nodes: below it, ACLs alone govern.
                None if n.format == Format::Node && n.children.is_empty() => {
                    return Lookup::Outside
                }
                None => return Lookup::Undescribed,
            }
        }
        Lookup::Node(n)
    }
}

/// The answer of [`Schema::lookup`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// No DDF covers the path: ACLs alone govern it.
    Outside,
    /// The node's description.
    Node(&'a DdfNode),
    /// Inside a described object, but the DDF has no such node: it cannot exist.
    /// (Below an interior node described without children, such as `Ext`, the
    /// answer is `Outside`: that branch is left to the vendor.)
    Undescribed,
}

#[cfg(test)]
mod tests;
