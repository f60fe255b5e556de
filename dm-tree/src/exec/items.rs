//! Add, Replace, Delete, Get, Copy and Exec, item by item.

use base64::Engine;
use syncml_core::{Command, Data, Item, Location, Meta, StatusCode};

use super::large::{item_meta, Chunk};
use super::{Response, Session};
use crate::acl::{Acl, AclCmd, Principal};
use crate::ddf::{AccessOp, DdfNode, Lookup};
use crate::dmtree::DmTree;
use crate::doc::read_root;
use crate::format::Format;
use crate::handlers::ExecRequest;
use crate::node::{iso8601_basic, Kind, Record};
use crate::objects::record_for;
use crate::tnds::{parse_tnds, tnds_document, Visibility, TNDS_WBXML, TNDS_XML};
use crate::tree::{NodeRef, Op};
use crate::uri::{child_path, parent_path, Prop, Query, Uri};

type Outcome = Result<Answer, StatusCode>;

/// A complete value with the Meta that describes it.
type Value = (Vec<u8>, Option<Box<Meta>>);

/// A successful item: its code and any Results items.
struct Answer {
    code: StatusCode,
    results: Vec<Item>,
}

fn done() -> Outcome {
    Ok(Answer {
        code: StatusCode::Ok,
        results: Vec::new(),
    })
}

/// The longest Title (TND 8.3: 255 bytes).
const MAX_TITLE: usize = 255;

impl Session {
    pub(super) fn items(&mut self, dm: &mut DmTree, cmd: &Command) -> Vec<Response> {
        let items = cmd.items();
        if items.is_empty() {
            return vec![Response::to(cmd, StatusCode::IncompleteCommand)];
        }
        items
            .iter()
            .map(|item| {
                // Whatever a refused item had already written is undone, so that a
                // refusal never changes the tree.
                let mark = dm.tree.mark();
                let out = match cmd {
                    Command::Add(_) => self.add(dm, cmd, item),
                    Command::Replace(_) => self.replace(dm, cmd, item),
                    Command::Delete(_) => self.delete(dm, item),
                    Command::Get(_) => self.get(dm, item),
                    Command::Copy(_) => self.copy(dm, item),
                    _ => self.exec(dm, cmd, item),
                };
                let (code, results) = match out {
                    Ok(a) => (a.code, a.results),
                    Err(code) => (code, Vec::new()),
                };
                let code = if code.is_success() {
                    code
                } else {
                    match dm.tree.rollback(mark) {
                        Ok(()) => code,
                        Err(_) => StatusCode::CommandFailed,
                    }
                };
                let mut r = Response::to_item(cmd, item, code);
                r.results = results;
                r
            })
            .collect()
    }

    /// The complete value of an Add or Replace item, or `None` when a large-object
    /// chunk was buffered (213).
    fn whole_value(
        &mut self,
        dm: &DmTree,
        cmd: &Command,
        item: &Item,
    ) -> Result<Option<Value>, StatusCode> {
        match self.take_data(dm.max_obj_size, cmd, item) {
            Chunk::Buffered => Ok(None),
            Chunk::Refused(c) => Err(c),
            Chunk::Complete(v, m) => Ok(Some((v, m))),
        }
    }

    fn may(&self, node: NodeRef<'_>, cmd: AclCmd) -> Result<(), StatusCode> {
        if node.effective_acl().grants(cmd, &self.server_id) {
            Ok(())
        } else {
            Err(StatusCode::PermissionDenied)
        }
    }

    // ----- Add ------------------------------------------------------------------

    fn add(&mut self, dm: &mut DmTree, cmd: &Command, item: &Item) -> Outcome {
        let uri = parse(dm, item.target.as_ref())?;
        if uri.query() != Query::None || uri.is_root() {
            // Properties are created with their node, never added.
            return Err(StatusCode::CommandNotAllowed);
        }
        let path = uri.as_str();
        let meta = item_meta(cmd, item);
        if meta
            .as_ref()
            .and_then(|m| m.type_.as_deref())
            .is_some_and(|t| t.trim() == TNDS_XML || t.trim() == TNDS_WBXML)
        {
            return self.add_tnds(dm, path, item);
        }
        if dm.tree.contains(path) {
            return Err(StatusCode::AlreadyExists);
        }
        // Missing ancestors are created implicitly; the nearest existing one must be
        // an interior node that grants this server Add.
        let mut missing = vec![path.to_owned()];
        let mut anc = parent_path(path).unwrap_or(".");
        while !dm.tree.contains(anc) {
            missing.push(anc.to_owned());
            anc = parent_path(anc).unwrap_or(".");
        }
        let existing = dm.tree.get(anc).ok_or(StatusCode::NotFound)?;
        if existing.is_leaf() {
            return Err(StatusCode::CommandNotAllowed);
        }
        self.may(existing, AclCmd::Add)?;
        missing.reverse();
        for p in &missing {
            let d = match dm.schema.lookup(p) {
                Lookup::Undescribed => return Err(StatusCode::CommandNotAllowed),
                Lookup::Outside => None,
                Lookup::Node(d) => Some(d),
            };
            if let Some(d) = d {
                // Implicitly created ancestors are added as much as the target is.
                if !d.access.allows(AccessOp::Add) {
                    return Err(StatusCode::CommandNotAllowed);
                }
                if p != path && d.format != Format::Node {
                    return Err(StatusCode::CommandNotAllowed);
                }
                check_occurrence(dm, p, d)?;
            }
        }
        let Some((value, meta)) = self.whole_value(dm, cmd, item)? else {
            return chunk_buffered();
        };
        let ddf = match dm.schema.lookup(path) {
            Lookup::Node(d) => Some(d.clone()),
            _ => None,
        };
        let rec = new_record(ddf.as_ref(), meta.as_deref(), value)?;
        let now = dm.tree.now();
        for p in &missing[..missing.len() - 1] {
            let mut r = match dm.schema.lookup(p) {
                Lookup::Node(d) => record_for(d),
                _ => Record::interior(),
            };
            r.props.touch(now);
            put(dm, p, r)?;
        }
        let mut rec = rec;
        rec.props.touch(now);
        put(dm, path, rec)?;
        // A server that adds an interior node under a parent it may not Replace
        // gets Add, Delete and Replace on the new node (TND 8.3.7.1.3), and Get too,
        // which the spec recommends it set itself, so that it can read what it
        // created; otherwise the new ACL is empty and inherits.
        self.own_if_needed(dm, anc, &missing[0])?;
        touch(dm, anc)?;
        done()
    }

    /// A server that adds an interior node under a parent it may not Replace gets
    /// Add, Delete and Replace on the new node (TND 8.3.7.1.3), and Get too, which
    /// the spec recommends it set itself, so that it can read what it created;
    /// otherwise the new node's ACL stays empty and inherits.
    fn own_if_needed(&self, dm: &mut DmTree, parent: &str, new: &str) -> Result<(), StatusCode> {
        let owns_parent = dm
            .tree
            .get(parent)
            .is_some_and(|a| a.effective_acl().grants(AclCmd::Replace, &self.server_id));
        let node = match dm.tree.get(new) {
            Some(n) if !owns_parent && !n.is_leaf() && n.record().props.acl.is_empty() => n,
            _ => return Ok(()),
        };
        let mut acl = Acl::default();
        for c in [AclCmd::Add, AclCmd::Delete, AclCmd::Get, AclCmd::Replace] {
            acl.allow(c, Principal::Server(self.server_id.clone()))
                .map_err(|_| StatusCode::BadRequest)?;
        }
        let rec = node.record().clone().with_acl(acl);
        put(dm, new, rec)
    }

    /// Add of a whole subtree as a TNDS document (XML element content, XML text, or
    /// WBXML opaque data) under the target, which is created if missing. All or
    /// nothing: any node refused rolls back the others.
    fn add_tnds(&mut self, dm: &mut DmTree, target: &str, item: &Item) -> Outcome {
        let root = match item.data.first() {
            Some(Data::Nodes(nodes)) => nodes
                .iter()
                .find_map(|n| match n {
                    syncml_core::Node::Element(e) => Some(e.clone()),
                    _ => None,
                })
                .ok_or(StatusCode::BadRequest)?,
            Some(d) => {
                let bytes = d.as_bytes().ok_or(StatusCode::BadRequest)?;
                read_root(bytes).map_err(|_| StatusCode::BadRequest)?
            }
            None => return Err(StatusCode::IncompleteCommand),
        };
        let nodes = parse_tnds(&root, target).map_err(|_| StatusCode::BadRequest)?;
        for n in &nodes {
            // Everything lands at or below the target the Status names.
            if !n.path.starts_with(&format!("{target}/")) {
                return Err(StatusCode::CommandNotAllowed);
            }
            check_limits(dm, &n.path)?;
        }
        let mark = dm.tree.mark();
        let created = |dm: &mut DmTree| -> Result<(), StatusCode> {
            if !dm.tree.contains(target) {
                self.create_checked(dm, target, Record::interior(), true)?;
            }
            for n in &nodes {
                let top = parent_path(&n.path).is_some_and(|p| !nodes.iter().any(|o| o.path == p));
                let mut rec = n.rec.clone();
                if !n.format_given {
                    // TNDS may leave Format out: the DDF's applies.
                    if let Lookup::Node(d) = dm.schema.lookup(&n.path) {
                        if d.format != rec.props.format {
                            let v = rec.value().unwrap_or_default().to_vec();
                            rec = record_for(d);
                            if d.format != Format::Node {
                                rec.kind = Kind::Leaf(convert(d.format, None, v)?);
                            }
                        }
                    }
                }
                self.create_checked(dm, &n.path, rec, top)?;
            }
            Ok(())
        };
        match created(dm) {
            Ok(()) => done(),
            Err(code) => {
                dm.tree.rollback(mark).map_err(|e| e.status())?;
                Err(code)
            }
        }
    }

    /// Creates one node under an existing parent with the checks of Add: 418, 405
    /// under a leaf, 425, and the DDF's (an undescribed node, the format, the
    /// occurrence; AccessType only for a node added explicitly, `top`).
    fn create_checked(
        &self,
        dm: &mut DmTree,
        path: &str,
        mut rec: Record,
        top: bool,
    ) -> Result<(), StatusCode> {
        if dm.tree.contains(path) {
            return Err(StatusCode::AlreadyExists);
        }
        let parent_p = parent_path(path).ok_or(StatusCode::CommandNotAllowed)?;
        let parent = dm.tree.get(parent_p).ok_or(StatusCode::NotFound)?;
        if parent.is_leaf() {
            return Err(StatusCode::CommandNotAllowed);
        }
        self.may(parent, AclCmd::Add)?;
        match dm.schema.lookup(path) {
            Lookup::Undescribed => return Err(StatusCode::CommandNotAllowed),
            Lookup::Node(d) => {
                if top && !d.access.allows(AccessOp::Add) {
                    return Err(StatusCode::CommandNotAllowed);
                }
                if d.format != rec.props.format {
                    return Err(StatusCode::UnsupportedMediaType);
                }
                check_occurrence(dm, path, d)?;
            }
            Lookup::Outside => {}
        }
        rec.props.touch(dm.tree.now());
        put(dm, path, rec)?;
        if top {
            self.own_if_needed(dm, parent_p, path)?;
        }
        touch(dm, parent_p)
    }

    // ----- Replace --------------------------------------------------------------

    fn replace(&mut self, dm: &mut DmTree, cmd: &Command, item: &Item) -> Outcome {
        let uri = parse(dm, item.target.as_ref())?;
        let path = uri.as_str().to_owned();
        let node = dm.tree.get(&path).ok_or(StatusCode::NotFound)?;
        match uri.query() {
            Query::None => {}
            Query::Prop(p) => return self.replace_prop(dm, &path, p, item),
            _ => return Err(StatusCode::CommandNotAllowed),
        }
        self.may(node, AclCmd::Replace)?;
        let ddf = match dm.schema.lookup(&path) {
            Lookup::Node(d) => {
                if !d.access.allows(AccessOp::Replace) {
                    return Err(StatusCode::CommandNotAllowed);
                }
                Some(d.clone())
            }
            _ => None,
        };
        if !node.is_leaf() {
            return Err(StatusCode::CommandNotAllowed);
        }
        let old = node.record().clone();
        let Some((value, meta)) = self.whole_value(dm, cmd, item)? else {
            return chunk_buffered();
        };
        // Format: the DDF's if it fixes one, else the one sent, else the node's own.
        let sent = sent_format(meta.as_deref())?;
        let format = match &ddf {
            Some(d) => d.format,
            None => sent.unwrap_or(old.props.format),
        };
        let value = convert(format, sent, value)?;
        if let Some(h) = dm.handlers.value_for(&path) {
            h.replace(&path, &value)?;
        }
        let mut rec = old;
        rec.kind = Kind::Leaf(value);
        rec.props.format = format;
        if let Some(t) = meta.as_ref().and_then(|m| m.type_.as_deref()) {
            if ddf.is_none() {
                rec.props.type_ = t.to_owned();
            }
        }
        rec.props.touch(dm.tree.now());
        put(dm, &path, rec)?;
        done()
    }

    fn replace_prop(&mut self, dm: &mut DmTree, path: &str, p: Prop, item: &Item) -> Outcome {
        if !p.is_replaceable() {
            return Err(StatusCode::CommandNotAllowed);
        }
        let node = dm.tree.get(path).ok_or(StatusCode::NotFound)?;
        // A node's ACL may be changed by a server with Replace on its parent, and for
        // an interior node also by one with Replace on the node itself; a leaf's own
        // ACL does not govern its ACL (TND 8.3.7.1.3). Name and Title follow the node.
        let own = self.may(node, AclCmd::Replace);
        let allowed = match (p, node.parent()) {
            (Prop::Acl, Some(parent)) => self.may(parent, AclCmd::Replace).or(if node.is_leaf() {
                Err(StatusCode::PermissionDenied)
            } else {
                own
            }),
            _ => own,
        };
        allowed?;
        let text = match item.data.first() {
            None => String::new(),
            Some(d) => d.as_str().ok_or(StatusCode::BadRequest)?.trim().to_owned(),
        };
        let mut rec = node.record().clone();
        match p {
            Prop::Acl => {
                let acl = Acl::parse(&text).map_err(|_| StatusCode::BadRequest)?;
                if node.parent().is_none() {
                    // The root has nothing to inherit from, and its Add stays `*` so
                    // that any server can always extend the tree (TND 8.3.7.1.2).
                    // Server ids are never empty, so only `*` grants Add to "".
                    let keeps_add = acl.grants(AclCmd::Add, "");
                    if acl.is_empty() || !keeps_add {
                        return Err(StatusCode::CommandNotAllowed);
                    }
                }
                rec.props.acl = acl;
            }
            Prop::Title => {
                if text.len() > MAX_TITLE {
                    return Err(StatusCode::RequestEntityTooLarge);
                }
                rec.props.title = text;
            }
            Prop::Name => return self.rename(dm, path, &text),
            _ => return Err(StatusCode::CommandNotAllowed),
        }
        rec.props.touch(dm.tree.now());
        put(dm, path, rec)?;
        done()
    }

    /// Replace of the Name property: only instances of DDF placeholders (and nodes
    /// no DDF describes) may be renamed.
    fn rename(&mut self, dm: &mut DmTree, path: &str, name: &str) -> Outcome {
        let parent = parent_path(path).ok_or(StatusCode::CommandNotAllowed)?;
        if !crate::uri::valid_name(name) {
            return Err(StatusCode::BadRequest);
        }
        let new_path = child_path(parent, name);
        check_limits(dm, &new_path)?;
        match (dm.schema.lookup(path), dm.schema.lookup(&new_path)) {
            (Lookup::Node(d), _) if d.name.is_some() || d.is_permanent() => {
                return Err(StatusCode::CommandNotAllowed)
            }
            // The new name must not make it another described node.
            (Lookup::Node(d), Lookup::Node(e)) if !std::ptr::eq(d, e) => {
                return Err(StatusCode::CommandNotAllowed)
            }
            (Lookup::Outside, Lookup::Node(_) | Lookup::Undescribed) => {
                return Err(StatusCode::CommandNotAllowed)
            }
            _ => {}
        }
        if new_path == path {
            return done();
        }
        if dm.tree.contains(&new_path) {
            return Err(StatusCode::AlreadyExists);
        }
        dm.tree
            .apply(Op::Rename {
                path: path.to_owned(),
                name: name.to_owned(),
            })
            .map_err(|e| e.status())?;
        touch(dm, &new_path)?;
        touch(dm, parent)?;
        done()
    }

    // ----- Delete ---------------------------------------------------------------

    fn delete(&mut self, dm: &mut DmTree, item: &Item) -> Outcome {
        let uri = parse(dm, item.target.as_ref())?;
        if uri.query() != Query::None || uri.is_root() {
            return Err(StatusCode::CommandNotAllowed);
        }
        let path = uri.as_str();
        let node = dm.tree.get(path).ok_or(StatusCode::NotFound)?;
        // A permanent node is refused whoever asks (405), like the root.
        if matches!(dm.schema.lookup(path), Lookup::Node(d) if d.is_permanent()) {
            return Err(StatusCode::CommandNotAllowed);
        }
        self.may(node, AclCmd::Delete)?;
        if let Lookup::Node(d) = dm.schema.lookup(path) {
            if !d.access.allows(AccessOp::Delete) {
                return Err(StatusCode::CommandNotAllowed);
            }
            let parent = parent_path(path).unwrap_or(".");
            if instances(dm, parent, d) <= d.occurrence.min() as usize {
                return Err(StatusCode::CommandNotAllowed);
            }
        }
        // A permanent node anywhere below makes the subtree undeletable.
        let permanent_below = node
            .descendants()
            .iter()
            .skip(1)
            .any(|n| matches!(dm.schema.lookup(n.path()), Lookup::Node(d) if d.is_permanent()));
        if permanent_below {
            return Err(StatusCode::CommandNotAllowed);
        }
        dm.tree.remove(path).map_err(|e| e.status())?;
        touch(dm, parent_path(path).unwrap_or("."))?;
        done()
    }

    // ----- Get ------------------------------------------------------------------

    fn get(&mut self, dm: &mut DmTree, item: &Item) -> Outcome {
        let loc = item.target.as_ref().ok_or(StatusCode::IncompleteCommand)?;
        let uri = parse(dm, Some(loc))?;
        let path = uri.as_str();
        let node = dm.tree.get(path).ok_or(StatusCode::NotFound)?;
        self.may(node, AclCmd::Get)?;
        ddf_permits(dm, path, AccessOp::Get)?;
        let results = match uri.query() {
            Query::None => {
                let (format, type_, data) = self.node_value(dm, path)?;
                vec![result_item(&loc.loc_uri, format, &type_, data)]
            }
            Query::Prop(p) => {
                let text = prop_text(node, p)?;
                vec![result_item(
                    &loc.loc_uri,
                    "chr",
                    "text/plain",
                    Data::text(text),
                )]
            }
            Query::Struct | Query::StructData => {
                let with_data = uri.query() == Query::StructData;
                let listed: Vec<(String, Visibility)> = node
                    .descendants()
                    .iter()
                    .map(|n| (n.path().to_owned(), self.visible(dm, *n)))
                    .filter(|(_, v)| *v != Visibility::Hidden)
                    .collect();
                let mut out = Vec::with_capacity(listed.len());
                for (p, vis) in listed {
                    let (format, type_, data) = if with_data && vis == Visibility::Full {
                        self.node_value(dm, &p)
                            .unwrap_or_else(|_| ("chr", String::new(), Data::text("")))
                    } else {
                        let n = dm.tree.get(&p).ok_or(StatusCode::NotFound)?;
                        (
                            n.record().props.format.name(),
                            n.record().props.type_.clone(),
                            Data::text(""),
                        )
                    };
                    let mut it = result_item(&p, format, &type_, data);
                    if !with_data {
                        it.data.clear();
                    }
                    out.push(it);
                }
                out
            }
            Query::Tnds(fields) => {
                let node = dm.tree.get(path).ok_or(StatusCode::NotFound)?;
                let doc = tnds_document(node, &fields, &|n| self.visible(dm, n));
                let mut it = Item::source(loc.loc_uri.clone());
                it.meta = Some(Box::new(Meta::format_type(Some("xml"), Some(TNDS_XML))));
                it.data
                    .push(Data::Nodes(vec![syncml_core::Node::Element(doc)]));
                vec![it]
            }
        };
        Ok(Answer {
            code: StatusCode::Ok,
            results,
        })
    }

    /// What this server may see of a node in a listing.
    fn visible(&self, dm: &DmTree, n: NodeRef<'_>) -> Visibility {
        if !n.effective_acl().grants(AclCmd::Get, &self.server_id) {
            return Visibility::Hidden;
        }
        match dm.schema.lookup(n.path()) {
            Lookup::Node(d) if !d.access.allows(AccessOp::Get) => Visibility::NoValue,
            _ => Visibility::Full,
        }
    }

    /// A node's value as Get returns it: leaf values (through a value handler where
    /// one is registered; binary ones as b64), or an interior node's child names.
    fn node_value(
        &self,
        dm: &mut DmTree,
        path: &str,
    ) -> Result<(&'static str, String, Data), StatusCode> {
        let node = dm.tree.get(path).ok_or(StatusCode::NotFound)?;
        let rec = node.record();
        let (format, type_) = (rec.props.format, rec.props.type_.clone());
        let Some(stored) = rec.value() else {
            let names: Vec<&str> = node.children().map(|c| c.name()).collect();
            return Ok(("node", type_, Data::text(names.join("/"))));
        };
        let mut value = stored.to_vec();
        if dm.handlers.has_values() {
            if let Some(h) = dm.handlers.value_for(path) {
                value = h.get(path)?;
            }
        }
        Ok(match (format, String::from_utf8(value)) {
            (Format::Bin, Ok(s)) => ("b64", type_, Data::text(b64(s.as_bytes()))),
            (Format::Bin, Err(e)) => ("b64", type_, Data::text(b64(e.as_bytes()))),
            (f, Ok(s)) => (f.name(), type_, Data::Text(s)),
            (_, Err(e)) => ("b64", type_, Data::text(b64(e.as_bytes()))),
        })
    }

    // ----- Copy -----------------------------------------------------------------

    /// Copy: Source (existing) to Target. A leaf over an existing leaf replaces its
    /// value; otherwise the target must not exist and the subtree is duplicated.
    fn copy(&mut self, dm: &mut DmTree, item: &Item) -> Outcome {
        let src = parse(dm, item.source.as_ref())?;
        let dst = parse(dm, item.target.as_ref())?;
        if src.query() != Query::None || dst.query() != Query::None || dst.is_root() {
            return Err(StatusCode::CommandNotAllowed);
        }
        let (sp, dp) = (src.as_str(), dst.as_str());
        let s = dm.tree.get(sp).ok_or(StatusCode::NotFound)?;
        if dp == sp || dp.starts_with(&format!("{sp}/")) {
            return Err(StatusCode::CommandNotAllowed);
        }
        // A copy reads every node it copies: each must be one this server may Get
        // (ACL and DDF), or the copy would hand out what a Get refuses. A described
        // source must also list Copy in its AccessType.
        ddf_permits(dm, sp, AccessOp::Copy)?;
        for n in s.descendants() {
            self.may(n, AclCmd::Get)?;
            ddf_permits(dm, n.path(), AccessOp::Get)?;
        }
        let copied: Vec<(String, Record)> = s
            .descendants()
            .iter()
            .map(|n| (format!("{dp}{}", &n.path()[sp.len()..]), n.record().clone()))
            .collect();
        for (path, _) in &copied {
            check_limits(dm, path)?;
        }
        let now = dm.tree.now();
        if let Some(t) = dm.tree.get(dp) {
            let (Some(v), true) = (s.value(), t.is_leaf()) else {
                return Err(StatusCode::AlreadyExists);
            };
            self.may(t, AclCmd::Replace)?;
            if let Lookup::Node(d) = dm.schema.lookup(dp) {
                if !d.access.allows(AccessOp::Replace) || d.format != s.record().props.format {
                    return Err(StatusCode::CommandNotAllowed);
                }
            }
            let v = v.to_vec();
            let mut rec = t.record().clone();
            if let Some(h) = dm.handlers.value_for(dp) {
                h.replace(dp, &v)?;
            }
            rec.kind = Kind::Leaf(v);
            rec.props.format = s.record().props.format;
            rec.props.touch(now);
            put(dm, dp, rec)?;
            return done();
        }
        let parent = parent_path(dp).unwrap_or(".");
        let p = dm.tree.get(parent).ok_or(StatusCode::NotFound)?;
        if p.is_leaf() {
            return Err(StatusCode::CommandNotAllowed);
        }
        self.may(p, AclCmd::Add)?;
        for (path, rec) in &copied {
            match dm.schema.lookup(path) {
                Lookup::Undescribed => return Err(StatusCode::CommandNotAllowed),
                Lookup::Node(d) if d.format != rec.props.format => {
                    return Err(StatusCode::CommandNotAllowed)
                }
                Lookup::Node(d) if path == dp => {
                    if !d.access.allows(AccessOp::Add) {
                        return Err(StatusCode::CommandNotAllowed);
                    }
                    check_occurrence(dm, dp, d)?;
                }
                _ => {}
            }
        }
        for (path, mut rec) in copied {
            // The copy is a new node: no inherited ACL is carried along.
            rec.props.acl = Acl::default();
            rec.props.verno = 0;
            rec.props.touch(now);
            put(dm, &path, rec)?;
        }
        touch(dm, parent)?;
        done()
    }

    // ----- Exec -----------------------------------------------------------------

    fn exec(&mut self, dm: &mut DmTree, cmd: &Command, item: &Item) -> Outcome {
        let uri = parse(dm, item.target.as_ref())?;
        if uri.query() != Query::None {
            return Err(StatusCode::CommandNotAllowed);
        }
        let path = uri.as_str();
        let node = dm.tree.get(path).ok_or(StatusCode::NotFound)?;
        self.may(node, AclCmd::Exec)?;
        let described = match dm.schema.lookup(path) {
            Lookup::Node(d) if !d.access.allows(AccessOp::Exec) => {
                return Err(StatusCode::CommandNotAllowed)
            }
            Lookup::Node(_) => true,
            _ => false,
        };
        let data: Vec<u8> = item
            .data
            .iter()
            .filter_map(Data::as_bytes)
            .flatten()
            .copied()
            .collect();
        let correlator = cmd.item_cmd().and_then(|c| c.correlator.as_deref());
        let DmTree { tree, handlers, .. } = dm;
        // While a handler runs, the tree refuses commit: an Atomic's rollback must
        // still find every change in the journal.
        let Some(h) = handlers.exec_for(path) else {
            // The DDF allows it but the device has no code for it: not supported;
            // nothing allows it: not allowed.
            return Err(if described {
                StatusCode::OptionalFeatureNotSupported
            } else {
                StatusCode::CommandNotAllowed
            });
        };
        tree.hold(true);
        let code = h.exec(
            tree,
            ExecRequest {
                path,
                data: (!item.data.is_empty()).then_some(&data[..]),
                correlator,
                server_id: &self.server_id,
            },
        );
        tree.hold(false);
        Ok(Answer {
            code,
            results: Vec::new(),
        })
    }
}

fn chunk_buffered() -> Outcome {
    Ok(Answer {
        code: StatusCode::ChunkedItemAccepted,
        results: Vec::new(),
    })
}

fn put(dm: &mut DmTree, path: &str, rec: Record) -> Result<(), StatusCode> {
    dm.tree
        .apply(Op::Put {
            path: path.to_owned(),
            rec,
        })
        .map_err(|e| e.status())
}

fn touch(dm: &mut DmTree, path: &str) -> Result<(), StatusCode> {
    dm.tree.touch(path).map_err(|e| e.status())
}

/// How many existing siblings under `parent` the description `d` covers.
fn instances(dm: &DmTree, parent: &str, d: &DdfNode) -> usize {
    let Some(p) = dm.tree.get(parent) else {
        return 0;
    };
    p.children()
        .filter(|c| matches!(dm.schema.lookup(c.path()), Lookup::Node(x) if std::ptr::eq(x, d)))
        .count()
}

/// Refuses a node that would exceed its Occurrence (420: no room for another).
fn check_occurrence(dm: &DmTree, path: &str, d: &DdfNode) -> Result<(), StatusCode> {
    let parent = parent_path(path).unwrap_or(".");
    match d.occurrence.max() {
        Some(max) if instances(dm, parent, d) >= max as usize => Err(StatusCode::DeviceFull),
        _ => Ok(()),
    }
}

/// The Format the server sent, if any (415 for a name that is no format).
fn sent_format(meta: Option<&Meta>) -> Result<Option<Format>, StatusCode> {
    match meta.and_then(|m| m.format.as_deref()) {
        None => Ok(None),
        Some(f) => Format::from_name(f)
            .map(Some)
            .ok_or(StatusCode::UnsupportedMediaType),
    }
}

/// The stored value of data sent in `sent` format for a node of `format`: b64 sent to
/// a bin node is decoded (how binary travels in XML); any other difference is 415;
/// the value must be valid in its format (400).
fn convert(format: Format, sent: Option<Format>, value: Vec<u8>) -> Result<Vec<u8>, StatusCode> {
    let value = match sent {
        Some(Format::B64) if format == Format::Bin => {
            let clean: Vec<u8> = value
                .into_iter()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            base64::engine::general_purpose::STANDARD
                .decode(clean)
                .map_err(|_| StatusCode::BadRequest)?
        }
        Some(f) if f != format => return Err(StatusCode::UnsupportedMediaType),
        _ => value,
    };
    format
        .validate(&value)
        .map_err(|_| StatusCode::BadRequest)?;
    Ok(format.normalize(&value))
}

/// The record of an added node, from its description and what was sent.
fn new_record(
    ddf: Option<&DdfNode>,
    meta: Option<&Meta>,
    value: Vec<u8>,
) -> Result<Record, StatusCode> {
    let sent = sent_format(meta)?;
    let format = match (ddf, sent) {
        (Some(d), _) => d.format,
        (None, Some(f)) => f,
        (None, None) => Format::Chr,
    };
    let mut rec = match ddf {
        Some(d) => record_for(d),
        None if format == Format::Node => Record::interior(),
        None => Record::leaf(format, Vec::new()),
    };
    if format == Format::Node {
        if sent.is_some_and(|f| f != Format::Node) {
            return Err(StatusCode::UnsupportedMediaType);
        }
    } else {
        rec.kind = Kind::Leaf(convert(format, sent, value)?);
    }
    if let Some(t) = meta.and_then(|m| m.type_.as_deref()) {
        if ddf.is_none() || rec.props.type_.is_empty() {
            rec.props.type_ = t.to_owned();
        }
    }
    Ok(rec)
}

/// A property's value as Get returns it (406 for Size of an interior node).
pub fn prop_text(node: NodeRef<'_>, p: Prop) -> Result<String, StatusCode> {
    let props = &node.record().props;
    Ok(match p {
        Prop::Acl => props.acl.to_string(),
        Prop::Format => props.format.name().to_owned(),
        Prop::Name => node.name().to_owned(),
        Prop::Size => match node.value() {
            Some(v) => v.len().to_string(),
            // Size is a leaf property only.
            None => return Err(StatusCode::OptionalFeatureNotSupported),
        },
        Prop::Title => props.title.clone(),
        Prop::TStamp => iso8601_basic(props.tstamp),
        Prop::Type => props.type_.clone(),
        Prop::VerNo => props.verno.to_string(),
    })
}

fn result_item(uri: &str, format: &str, type_: &str, data: Data) -> Item {
    let mut it = Item::source(uri);
    let t = (!type_.is_empty()).then_some(type_);
    it.meta = Some(Box::new(Meta::format_type(Some(format), t)));
    it.data.push(data);
    it
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(b)
}

fn parse<'i>(dm: &DmTree, loc: Option<&'i Location>) -> Result<Uri<'i>, StatusCode> {
    let loc = loc.ok_or(StatusCode::IncompleteCommand)?;
    Uri::parse(&loc.loc_uri, &dm.uri_limits).map_err(|e| e.status())
}

/// Refuses a path the device's URI limits would make unreachable (414).
fn check_limits(dm: &DmTree, path: &str) -> Result<(), StatusCode> {
    Uri::parse(path, &dm.uri_limits)
        .map(|_| ())
        .map_err(|e| e.status())
}

/// Refuses (405) a command the DDF describing `path` does not list in its AccessType.
fn ddf_permits(dm: &DmTree, path: &str, op: AccessOp) -> Result<(), StatusCode> {
    match dm.schema.lookup(path) {
        Lookup::Node(d) if !d.access.allows(op) => Err(StatusCode::CommandNotAllowed),
        _ => Ok(()),
    }
}
