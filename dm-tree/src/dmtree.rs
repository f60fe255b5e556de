//! A device's management tree with everything that governs it: the DDF schema, URI
//! limits, the largest object accepted, and the vendor's handlers.
//!
//! A state directory holds the store (`tree.snap`, `tree.log`) and the DDF documents
//! the tree enforces (`ddf/*.xml`, loaded in name order).

use std::path::{Path, PathBuf};

use crate::ddf::{parse_ddf, DdfNode, Schema};
use crate::error::Error;
use crate::handlers::Handlers;
use crate::node::Record;
use crate::objects;
use crate::tree::Tree;
use crate::uri::{child_path, UriLimits};

/// The largest object (large-object total or single value) accepted by default.
pub const DEFAULT_MAX_OBJ_SIZE: u64 = 8 << 20;

/// A management tree and its rules.
#[derive(Debug)]
pub struct DmTree {
    pub tree: Tree,
    pub schema: Schema,
    /// The limits published in `./DevDetail/URI`, read at open.
    pub uri_limits: UriLimits,
    /// The largest object the device accepts (MaxObjSize).
    pub max_obj_size: u64,
    pub handlers: Handlers,
    dir: Option<PathBuf>,
}

impl DmTree {
    /// A tree in memory with the shipped schema and standard objects.
    pub fn in_memory(devinfo: &[(String, String)]) -> Result<DmTree, Error> {
        let mut dm = DmTree::bare(Tree::new(), objects::shipped_schema()?, None);
        objects::create_standard(&mut dm, devinfo)?;
        dm.tree.commit()?;
        dm.refresh_limits();
        Ok(dm)
    }

    /// An empty tree in memory with no schema (every rule from ACLs only).
    pub fn empty() -> DmTree {
        DmTree::bare(Tree::new(), Schema::default(), None)
    }

    fn bare(tree: Tree, schema: Schema, dir: Option<PathBuf>) -> DmTree {
        DmTree {
            tree,
            schema,
            uri_limits: UriLimits::default(),
            max_obj_size: DEFAULT_MAX_OBJ_SIZE,
            handlers: Handlers::default(),
            dir,
        }
    }

    /// Creates a device tree in `dir`: the shipped DDFs and `extra_ddfs` copied into
    /// `dir/ddf`, the standard objects created, `devinfo` (`Man`, `Mod`, `DevId` ...)
    /// written under `./DevInfo`. Refuses a directory that already holds a tree.
    pub fn init(
        dir: &Path,
        extra_ddfs: &[PathBuf],
        devinfo: &[(String, String)],
    ) -> Result<DmTree, Error> {
        if dir.join("tree.snap").exists() || dir.join("tree.log").exists() {
            return Err(Error::AlreadyExists(dir.display().to_string()));
        }
        // Everything is checked in memory first, so that a refused init leaves no
        // tree behind.
        let mut schema = objects::shipped_schema()?;
        let mut docs: Vec<(String, Vec<u8>)> = objects::SHIPPED_DDFS
            .iter()
            .map(|(n, b)| (format!("{n}.xml"), b.to_vec()))
            .collect();
        for (i, p) in extra_ddfs.iter().enumerate() {
            let bytes = std::fs::read(p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
            schema.add(parse_ddf(&bytes).map_err(|e| Error::Ddf(format!("{}: {e}", p.display())))?);
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            // Numbered after the shipped ones, so that they are loaded later and a
            // vendor document can replace a shipped description.
            docs.push((format!("zz{i:02}-{name}"), bytes));
        }
        let mut probe = DmTree::bare(Tree::new(), schema, None);
        objects::create_standard(&mut probe, devinfo)?;
        let ddf_dir = dir.join("ddf");
        std::fs::create_dir_all(&ddf_dir)
            .map_err(|e| Error::Io(format!("{}: {e}", ddf_dir.display())))?;
        for (name, bytes) in &docs {
            let p = ddf_dir.join(name);
            std::fs::write(&p, bytes).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
        }
        let mut dm = DmTree::open(dir)?;
        objects::create_standard(&mut dm, devinfo)?;
        dm.tree.commit()?;
        dm.refresh_limits();
        Ok(dm)
    }

    /// Opens the tree in `dir` with the DDFs of `dir/ddf`.
    pub fn open(dir: &Path) -> Result<DmTree, Error> {
        let schema = load_schema(&dir.join("ddf"))?;
        let tree = Tree::open(dir)?;
        let mut dm = DmTree::bare(tree, schema, Some(dir.to_owned()));
        dm.refresh_limits();
        Ok(dm)
    }

    /// The state directory, for a tree that has one.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Reads the URI limits the device publishes in `./DevDetail/URI`.
    pub fn refresh_limits(&mut self) {
        let read = |name: &str, default: usize| {
            self.tree
                .get(&format!("./DevDetail/URI/{name}"))
                .and_then(|n| n.value())
                .and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(default)
        };
        let d = UriLimits::default();
        self.uri_limits = UriLimits {
            max_depth: read("MaxDepth", d.max_depth),
            max_tot_len: read("MaxTotLen", d.max_tot_len),
            max_seg_len: read("MaxSegLen", d.max_seg_len),
        };
    }

    /// Creates the permanent nodes a description requires (named nodes occurring
    /// exactly once, with their default values) under `parent`, where missing.
    pub fn create_described(&mut self, parent: &str, d: &DdfNode) -> Result<(), Error> {
        let Some(name) = &d.name else { return Ok(()) };
        let path = child_path(parent, name);
        if !self.tree.contains(&path) {
            let rec = objects::record_for(d);
            self.tree.put(&path, rec)?;
        }
        for c in &d.children {
            if c.occurrence.min() >= 1
                && c.name.is_some()
                && !self.tree.get(&path).is_some_and(|n| n.is_leaf())
            {
                self.create_described(&path, c)?;
            }
        }
        Ok(())
    }

    /// Sets a leaf's value unchecked (the device itself writing), creating it with
    /// the format its DDF gives (chr if none) when missing.
    pub fn set(&mut self, path: &str, value: &[u8]) -> Result<(), Error> {
        if self.tree.contains(path) {
            return self.tree.set_value(path, value.to_vec());
        }
        let rec = match self.schema.lookup(path) {
            crate::ddf::Lookup::Node(d) => {
                let mut r = objects::record_for(d);
                r.kind = crate::node::Kind::Leaf(value.to_vec());
                r
            }
            _ => Record::leaf(crate::format::Format::Chr, value.to_vec()).with_type("text/plain"),
        };
        self.tree.put(path, rec)
    }
}

fn load_schema(dir: &Path) -> Result<Schema, Error> {
    let mut schema = Schema::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return objects::shipped_schema(),
        Err(e) => return Err(Error::Io(format!("{}: {e}", dir.display()))),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "xml"))
        .collect();
    paths.sort();
    for p in paths {
        let bytes = std::fs::read(&p).map_err(|e| Error::Io(format!("{}: {e}", p.display())))?;
        schema.add(parse_ddf(&bytes).map_err(|e| Error::Ddf(format!("{}: {e}", p.display())))?);
    }
    Ok(schema)
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub store: crate::store::Inspection,
    pub nodes: usize,
    /// Inconsistencies, one line each (empty: the store is consistent).
    pub problems: Vec<String>,
}

/// Checks the store in `dir` without changing it: the files pass their checksums and
/// replay into a tree, every leaf value is valid in its format, interior nodes have
/// Format node, and described nodes have the format their DDF gives.
pub fn verify(dir: &Path) -> Result<Verification, Error> {
    let (store, ops) = crate::store::inspect(dir)?;
    let tree = Tree::from_ops(&ops)?;
    let schema = load_schema(&dir.join("ddf"))?;
    let mut problems = Vec::new();
    for n in tree.root().descendants() {
        let rec = n.record();
        let f = rec.props.format;
        match rec.value() {
            Some(v) => {
                if let Err(e) = f.validate(v) {
                    problems.push(format!("{}: {e}", n.path()));
                }
            }
            None if f != crate::format::Format::Node => {
                problems.push(format!("{}: interior node with Format {f}", n.path()))
            }
            None => {}
        }
        if let crate::ddf::Lookup::Node(d) = schema.lookup(n.path()) {
            if d.format != f {
                problems.push(format!(
                    "{}: Format {f}, its DDF says {}",
                    n.path(),
                    d.format
                ));
            }
        }
    }
    Ok(Verification {
        store,
        nodes: tree.len(),
        problems,
    })
}
