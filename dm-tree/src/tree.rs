//! The tree itself: nodes in an arena, an index from canonical path to node, and a
//! journal of changes.
//!
//! Every change goes through one of three operations ([`Op`]): put a node's record,
//! remove a subtree, rename a node. Each applied operation leaves its inverse on the
//! undo journal (so an Atomic rolls back exactly) and itself on the redo journal (which
//! [`commit`](Tree::commit) hands to the store, and which a restart replays). No
//! permission or schema is checked here: that is the executor's job, and the device
//! itself writes through this API unchecked.

use std::collections::HashMap;
use std::path::Path;

use crate::acl::Acl;
use crate::error::Error;
use crate::node::{Kind, Record};
use crate::store::FileStore;
use crate::uri::{child_path, last_segment, parent_path, valid_name};

/// A node's slot in the arena. Valid until the node is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NodeId(u32);

#[derive(Debug, Clone)]
struct Slot {
    path: Box<str>,
    parent: Option<NodeId>,
    /// Sorted by name, so that listings, snapshots and rollbacks are deterministic.
    children: Vec<NodeId>,
    rec: Record,
}

/// One change to the tree, as journalled and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Creates the node (its parent must exist) or replaces its record.
    Put { path: String, rec: Record },
    /// Removes the node and its subtree.
    Remove { path: String },
    /// Gives the node a new last segment.
    Rename { path: String, name: String },
}

/// Where the journals stood when a transaction began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    undo: usize,
    redo: usize,
}

/// The source of TStamp values: seconds since the Unix epoch.
pub type Clock = fn() -> u64;

fn system_clock() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A management tree.
pub struct Tree {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    index: HashMap<Box<str>, NodeId>,
    redo: Vec<Op>,
    undo: Vec<Op>,
    clock: Clock,
    store: Option<FileStore>,
    /// Set while a command executes (a handler runs): commit, compact and discard
    /// are refused, so that an Atomic's rollback finds every change in the journal.
    held: bool,
}

impl std::fmt::Debug for Tree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tree").field("nodes", &self.len()).finish()
    }
}

impl Default for Tree {
    fn default() -> Self {
        Tree::new()
    }
}

/// A read-only view of one node.
#[derive(Clone, Copy)]
pub struct NodeRef<'t> {
    tree: &'t Tree,
    id: NodeId,
    slot: &'t Slot,
}

impl<'t> NodeRef<'t> {
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// The canonical path.
    pub fn path(&self) -> &'t str {
        &self.slot.path
    }

    /// The node name (the last segment; `.` for the root).
    pub fn name(&self) -> &'t str {
        last_segment(&self.slot.path)
    }

    pub fn record(&self) -> &'t Record {
        &self.slot.rec
    }

    pub fn is_leaf(&self) -> bool {
        self.slot.rec.is_leaf()
    }

    /// The leaf value (`None` for an interior node).
    pub fn value(&self) -> Option<&'t [u8]> {
        self.slot.rec.value()
    }

    pub fn parent(&self) -> Option<NodeRef<'t>> {
        self.slot.parent.map(|p| self.tree.node(p))
    }

    /// The children, sorted by name.
    pub fn children(&self) -> impl Iterator<Item = NodeRef<'t>> + 't {
        let tree = self.tree;
        self.slot.children.iter().map(move |&c| tree.node(c))
    }

    pub fn child_count(&self) -> usize {
        self.slot.children.len()
    }

    /// The ACL in force: the node's own, or the nearest non-empty ancestor's, or
    /// the root default `Add=*&Get=*` when none is set.
    pub fn effective_acl(&self) -> std::borrow::Cow<'t, Acl> {
        let mut n = Some(*self);
        while let Some(x) = n {
            if !x.slot.rec.props.acl.is_empty() {
                return std::borrow::Cow::Borrowed(&x.slot.rec.props.acl);
            }
            n = x.parent();
        }
        std::borrow::Cow::Owned(Acl::root_default())
    }

    /// The subtree in pre-order (the node first, children by name).
    pub fn descendants(&self) -> Vec<NodeRef<'t>> {
        let mut out = Vec::new();
        let mut stack = vec![*self];
        while let Some(n) = stack.pop() {
            out.push(n);
            let kids: Vec<_> = n.children().collect();
            stack.extend(kids.into_iter().rev());
        }
        out
    }
}

impl Tree {
    /// A tree holding only the root, kept in memory.
    pub fn new() -> Tree {
        let mut t = Tree {
            slots: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            redo: Vec::new(),
            undo: Vec::new(),
            clock: system_clock,
            store: None,
            held: false,
        };
        t.insert_slot(".", None, Record::interior().with_acl(Acl::root_default()));
        t
    }

    /// Opens the tree stored in `dir` (created empty, with only the root, if the
    /// directory holds no store yet). A damaged store is an error and is left as it
    /// is on disk.
    pub fn open(dir: &Path) -> Result<Tree, Error> {
        let (store, ops) = FileStore::open(dir)?;
        let mut t = Tree::from_ops(&ops)?;
        t.store = Some(store);
        Ok(t)
    }

    /// A tree in memory rebuilt from stored operations (a snapshot, then commits).
    pub fn from_ops(ops: &[Op]) -> Result<Tree, Error> {
        let mut t = Tree::new();
        t.slots.reserve(ops.len());
        t.index.reserve(ops.len());
        for op in ops {
            t.apply_op(op, false)
                .map_err(|e| Error::Damaged(format!("replaying the store: {e}")))?;
        }
        Ok(t)
    }

    /// Sets the clock used for TStamp (tests use a fixed one).
    pub fn set_clock(&mut self, clock: Clock) {
        self.clock = clock;
    }

    /// The current time by the tree's clock.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// The number of nodes, root included.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether only the root exists.
    pub fn is_empty(&self) -> bool {
        self.index.len() == 1
    }

    pub fn root(&self) -> NodeRef<'_> {
        self.node(NodeId(0))
    }

    /// The node at a canonical path (`.`, `./A/B`).
    pub fn get(&self, path: &str) -> Option<NodeRef<'_>> {
        self.index.get(path).map(|&id| self.node(id))
    }

    pub fn contains(&self, path: &str) -> bool {
        self.index.contains_key(path)
    }

    fn node(&self, id: NodeId) -> NodeRef<'_> {
        match self.slots.get(id.0 as usize).and_then(Option::as_ref) {
            Some(slot) => NodeRef {
                tree: self,
                id,
                slot,
            },
            // Ids come only from the index and from live slots' links, which are
            // updated together; a dangling id is a bug in this module.
            None => unreachable!("dangling node id {}", id.0),
        }
    }

    fn slot_mut(&mut self, id: NodeId) -> &mut Slot {
        match self.slots.get_mut(id.0 as usize).and_then(Option::as_mut) {
            Some(s) => s,
            None => unreachable!("dangling node id {}", id.0),
        }
    }

    fn name_of(&self, id: NodeId) -> &str {
        self.node(id).name()
    }

    fn insert_slot(&mut self, path: &str, parent: Option<NodeId>, rec: Record) -> NodeId {
        let slot = Slot {
            path: path.into(),
            parent,
            children: Vec::new(),
            rec,
        };
        let id = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(slot);
                NodeId(i)
            }
            None => {
                self.slots.push(Some(slot));
                NodeId((self.slots.len() - 1) as u32)
            }
        };
        self.index.insert(path.into(), id);
        if let Some(p) = parent {
            let name = last_segment(path);
            // Snapshots and most Adds come in name order: try the end first.
            let after_last = match self.node(p).slot.children.last() {
                Some(&l) => self.name_of(l) < name,
                None => true,
            };
            if after_last {
                self.slot_mut(p).children.push(id);
            } else {
                let pos = self.child_position(p, name).unwrap_or_else(|e| e);
                self.slot_mut(p).children.insert(pos, id);
            }
        }
        id
    }

    /// Where a child of this name sits (Ok) or would sit (Err) among `p`'s children.
    fn child_position(&self, p: NodeId, name: &str) -> Result<usize, usize> {
        let kids = &self.node(p).slot.children;
        kids.binary_search_by(|&c| self.name_of(c).cmp(name))
    }

    // ----- the three operations -------------------------------------------------

    /// Applies one operation without journalling; returns its inverse, in the order
    /// the undo journal pops it.
    fn apply_raw(&mut self, op: &Op) -> Result<Vec<Op>, Error> {
        self.apply_op(op, true)
    }

    /// Applies one operation; computes its inverse only when asked (a replay does
    /// not need one).
    fn apply_op(&mut self, op: &Op, want_inverse: bool) -> Result<Vec<Op>, Error> {
        match op {
            Op::Put { path, rec } => {
                if let Some(&id) = self.index.get(path.as_str()) {
                    if rec.is_leaf() && !self.node(id).slot.children.is_empty() {
                        return Err(Error::HasChildren(path.clone()));
                    }
                    let old = std::mem::replace(&mut self.slot_mut(id).rec, rec.clone());
                    if !want_inverse {
                        return Ok(Vec::new());
                    }
                    return Ok(vec![Op::Put {
                        path: path.clone(),
                        rec: old,
                    }]);
                }
                let parent = parent_path(path).ok_or_else(|| Error::NotFound(path.clone()))?;
                let pid = *self
                    .index
                    .get(parent)
                    .ok_or_else(|| Error::NotFound(parent.to_owned()))?;
                if self.node(pid).is_leaf() {
                    return Err(Error::ParentIsLeaf(path.clone()));
                }
                if !valid_name(last_segment(path)) {
                    return Err(Error::BadName(path.clone()));
                }
                self.insert_slot(path, Some(pid), rec.clone());
                if !want_inverse {
                    return Ok(Vec::new());
                }
                Ok(vec![Op::Remove { path: path.clone() }])
            }
            Op::Remove { path } => {
                let id = *self
                    .index
                    .get(path.as_str())
                    .ok_or_else(|| Error::NotFound(path.clone()))?;
                let n = self.node(id);
                let Some(parent) = n.slot.parent else {
                    return Err(Error::RootIsPermanent);
                };
                let gone: Vec<NodeId> = n.descendants().iter().map(NodeRef::id).collect();
                // Re-creating the subtree parent first: the undo journal pops from the
                // end, so the parent's Put goes last.
                let inverse: Vec<Op> = gone
                    .iter()
                    .rev()
                    .filter(|_| want_inverse)
                    .map(|&g| {
                        let s = self.node(g).slot;
                        Op::Put {
                            path: s.path.to_string(),
                            rec: s.rec.clone(),
                        }
                    })
                    .collect();
                if let Ok(pos) = self.child_position(parent, last_segment(path)) {
                    self.slot_mut(parent).children.remove(pos);
                }
                for g in gone {
                    if let Some(s) = self.slots[g.0 as usize].take() {
                        self.index.remove(&s.path);
                        self.free.push(g.0);
                    }
                }
                Ok(inverse)
            }
            Op::Rename { path, name } => {
                let id = *self
                    .index
                    .get(path.as_str())
                    .ok_or_else(|| Error::NotFound(path.clone()))?;
                let parent = self.node(id).slot.parent.ok_or(Error::RootIsPermanent)?;
                if !valid_name(name) {
                    return Err(Error::BadName(name.clone()));
                }
                let new_path = child_path(self.node(parent).path(), name);
                if self.index.contains_key(new_path.as_str()) {
                    return Err(Error::AlreadyExists(new_path));
                }
                let old_name = last_segment(path).to_owned();
                if let Ok(pos) = self.child_position(parent, &old_name) {
                    self.slot_mut(parent).children.remove(pos);
                }
                let moved: Vec<NodeId> = self
                    .node(id)
                    .descendants()
                    .iter()
                    .map(NodeRef::id)
                    .collect();
                for m in moved {
                    let old: Box<str> = self.node(m).slot.path.clone();
                    let renamed: Box<str> = format!("{new_path}{}", &old[path.len()..]).into();
                    self.index.remove(&old);
                    self.index.insert(renamed.clone(), m);
                    self.slot_mut(m).path = renamed;
                }
                let pos = self.child_position(parent, name).unwrap_or_else(|e| e);
                self.slot_mut(parent).children.insert(pos, id);
                Ok(vec![Op::Rename {
                    path: new_path,
                    name: old_name,
                }])
            }
        }
    }

    /// Applies and journals one operation.
    pub fn apply(&mut self, op: Op) -> Result<(), Error> {
        let inverse = self.apply_raw(&op)?;
        self.undo.extend(inverse);
        self.redo.push(op);
        Ok(())
    }

    // ----- transactions and durability ------------------------------------------

    /// The journals' position, to roll back to.
    pub fn mark(&self) -> Mark {
        Mark {
            undo: self.undo.len(),
            redo: self.redo.len(),
        }
    }

    /// Undoes every change made since `mark`.
    pub fn rollback(&mut self, mark: Mark) -> Result<(), Error> {
        if mark.undo > self.undo.len() || mark.redo > self.redo.len() {
            // The journal was emptied since the mark (a commit): nothing to undo to.
            return Err(Error::Held);
        }
        while self.undo.len() > mark.undo {
            let Some(op) = self.undo.pop() else { break };
            self.apply_op(&op, false)?;
        }
        self.redo.truncate(mark.redo);
        Ok(())
    }

    /// Whether changes are waiting for [`commit`](Self::commit).
    pub fn has_pending(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Makes every change since the last commit durable as one unit. With no store
    /// this only clears the journals. If the store cannot write, the changes are
    /// rolled back so that the tree in memory stays what the disk holds.
    pub fn commit(&mut self) -> Result<(), Error> {
        if self.held {
            return Err(Error::Held);
        }
        if self.redo.is_empty() {
            self.undo.clear();
            return Ok(());
        }
        if let Some(store) = &mut self.store {
            if let Err(e) = store.append(&self.redo) {
                self.rollback(Mark { undo: 0, redo: 0 })?;
                return Err(e);
            }
        }
        // The commit is durable: whatever happens to the compaction below, it is
        // neither pending any more nor to be reported as failed. Fresh journals, not
        // cleared ones: a large commit would otherwise keep its capacity for good.
        self.redo = Vec::new();
        self.undo = Vec::new();
        if self.store.as_ref().is_some_and(FileStore::wants_compaction) {
            let snapshot = self.snapshot_ops();
            if let Some(store) = &mut self.store {
                // A failed compaction leaves the store valid (see FileStore::compact)
                // and is tried again at the next commit.
                let _ = store.compact(&snapshot);
            }
        }
        Ok(())
    }

    /// Drops every uncommitted change.
    pub fn discard(&mut self) -> Result<(), Error> {
        if self.held {
            return Err(Error::Held);
        }
        self.rollback(Mark { undo: 0, redo: 0 })
    }

    /// Refuses (`true`) or allows again commit, compact and discard; the executor
    /// holds the tree while a vendor's handler runs.
    pub fn hold(&mut self, held: bool) {
        self.held = held;
    }

    /// Rewrites the store as one snapshot (after many small commits).
    pub fn compact(&mut self) -> Result<(), Error> {
        self.commit()?;
        let snapshot = self.snapshot_ops();
        match &mut self.store {
            Some(s) => s.compact(&snapshot),
            None => Ok(()),
        }
    }

    /// The whole tree as Put operations, parents first (the root's record included).
    pub fn snapshot_ops(&self) -> Vec<Op> {
        self.root()
            .descendants()
            .into_iter()
            .map(|n| Op::Put {
                path: n.path().to_owned(),
                rec: n.record().clone(),
            })
            .collect()
    }

    // ----- device-side helpers (no permission checks) ---------------------------

    /// Creates or replaces the node at `path` with `rec`, creating missing interior
    /// ancestors. TStamp and VerNo of the node are updated.
    pub fn put(&mut self, path: &str, mut rec: Record) -> Result<(), Error> {
        self.ensure_interior(parent_path(path).unwrap_or("."))?;
        let now = self.now();
        if let Some(old) = self.get(path) {
            rec.props.verno = old.record().props.verno;
        }
        rec.props.touch(now);
        self.apply(Op::Put {
            path: path.to_owned(),
            rec,
        })
    }

    /// Sets the value of an existing leaf, keeping its properties.
    pub fn set_value(&mut self, path: &str, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        let n = self
            .get(path)
            .ok_or_else(|| Error::NotFound(path.to_owned()))?;
        if !n.is_leaf() {
            return Err(Error::NotALeaf(path.to_owned()));
        }
        let mut rec = n.record().clone();
        rec.kind = Kind::Leaf(value.into());
        rec.props.touch(self.now());
        self.apply(Op::Put {
            path: path.to_owned(),
            rec,
        })
    }

    /// Creates the interior nodes of `path` that do not exist yet.
    pub fn ensure_interior(&mut self, path: &str) -> Result<(), Error> {
        if let Some(n) = self.get(path) {
            return if n.is_leaf() {
                Err(Error::ParentIsLeaf(path.to_owned()))
            } else {
                Ok(())
            };
        }
        self.ensure_interior(parent_path(path).ok_or_else(|| Error::NotFound(path.to_owned()))?)?;
        let mut rec = Record::interior();
        rec.props.touch(self.now());
        self.apply(Op::Put {
            path: path.to_owned(),
            rec,
        })
    }

    /// Removes a subtree.
    pub fn remove(&mut self, path: &str) -> Result<(), Error> {
        self.apply(Op::Remove {
            path: path.to_owned(),
        })
    }

    /// Marks a change of `path`'s child list: TStamp and VerNo of the node.
    pub fn touch(&mut self, path: &str) -> Result<(), Error> {
        let n = self
            .get(path)
            .ok_or_else(|| Error::NotFound(path.to_owned()))?;
        let mut rec = n.record().clone();
        rec.props.touch(self.now());
        self.apply(Op::Put {
            path: path.to_owned(),
            rec,
        })
    }

    /// Whether two trees hold the same nodes with the same records.
    pub fn same_content(&self, other: &Tree) -> bool {
        self.snapshot_ops() == other.snapshot_ops()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;

    fn leaf(v: &str) -> Record {
        Record::leaf(Format::Chr, v.as_bytes())
    }

    fn paths(t: &Tree) -> Vec<String> {
        t.root()
            .descendants()
            .iter()
            .map(|n| n.path().to_owned())
            .collect()
    }

    #[test]
    fn put_creates_ancestors_and_children_stay_sorted() {
        let mut t = Tree::new();
        t.put("./B/y", leaf("1")).unwrap();
        t.put("./A", Record::interior()).unwrap();
        t.put("./B/x", leaf("2")).unwrap();
        assert_eq!(paths(&t), [".", "./A", "./B", "./B/x", "./B/y"]);
        assert_eq!(t.get("./B/x").unwrap().value(), Some(&b"2"[..]));
        assert!(
            t.put("./B/x/z", leaf("3")).is_err(),
            "a leaf has no children"
        );
    }

    #[test]
    fn rollback_restores_every_kind_of_change() {
        let mut t = Tree::new();
        t.put("./A/a", leaf("1")).unwrap();
        t.put("./A/b/c", leaf("2")).unwrap();
        t.commit().unwrap();
        let before = t.snapshot_ops();
        let m = t.mark();
        t.set_value("./A/a", "changed").unwrap();
        t.remove("./A/b").unwrap();
        t.put("./A/new", leaf("n")).unwrap();
        t.apply(Op::Rename {
            path: "./A".into(),
            name: "Z".into(),
        })
        .unwrap();
        assert!(t.contains("./Z/new") && !t.contains("./A"));
        t.rollback(m).unwrap();
        assert_eq!(t.snapshot_ops(), before);
        assert!(!t.has_pending());
    }

    #[test]
    fn rename_rekeys_the_subtree_and_refuses_a_taken_name() {
        let mut t = Tree::new();
        t.put("./A/b/c", leaf("1")).unwrap();
        t.put("./B", Record::interior()).unwrap();
        let rename = |to: &str| Op::Rename {
            path: "./A".into(),
            name: to.into(),
        };
        assert!(matches!(t.apply(rename("B")), Err(Error::AlreadyExists(_))));
        t.apply(rename("C")).unwrap();
        assert_eq!(paths(&t), [".", "./B", "./C", "./C/b", "./C/b/c"]);
        assert_eq!(t.get("./C/b/c").unwrap().parent().unwrap().path(), "./C/b");
    }

    #[test]
    fn removed_slots_are_reused_and_the_root_stays() {
        let mut t = Tree::new();
        t.put("./A/b", leaf("1")).unwrap();
        let n = t.slots.len();
        t.remove("./A").unwrap();
        t.put("./C/d", leaf("1")).unwrap();
        assert_eq!(t.slots.len(), n);
        assert_eq!(t.len(), 3);
        assert!(matches!(t.remove("."), Err(Error::RootIsPermanent)));
    }

    #[test]
    fn effective_acl_inherits_from_the_nearest_set_ancestor() {
        let mut t = Tree::new();
        t.put("./A/b/c", leaf("1")).unwrap();
        let acl: Acl = "Get=srv1&Replace=srv1".parse().unwrap();
        let rec = t.get("./A").unwrap().record().clone().with_acl(acl.clone());
        t.put("./A", rec).unwrap();
        assert_eq!(*t.get("./A/b/c").unwrap().effective_acl(), acl);
        assert_eq!(*t.get("./A").unwrap().effective_acl(), acl);
        assert_eq!(t.get("./B").map(|n| n.effective_acl().into_owned()), None);
        assert_eq!(*t.root().effective_acl(), Acl::root_default());
    }
}
