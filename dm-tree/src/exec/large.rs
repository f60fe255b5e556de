//! Large objects: a value that arrives in chunks, each but the last with MoreData,
//! the total in the first chunk's Meta Size. Chunks are buffered in the session, not
//! in the tree, so an object that never completes leaves no trace.

use syncml_core::{Command, Data, Item, Meta, StatusCode};

use super::Session;

/// An object being assembled.
#[derive(Debug, Clone)]
pub(crate) struct LargeObject {
    /// The command name and target LocURI the chunks must keep.
    pub cmd: String,
    pub target: String,
    /// The announced total.
    pub size: u64,
    pub buf: Vec<u8>,
    /// The first chunk's Meta (Format and Type of the whole object).
    pub meta: Option<Box<Meta>>,
}

/// What an item's data amounts to.
pub(crate) enum Chunk {
    /// The whole value, with the Meta that describes it.
    Complete(Vec<u8>, Option<Box<Meta>>),
    /// A chunk was buffered (213).
    Buffered,
    /// The object is refused and dropped.
    Refused(StatusCode),
}

/// The Meta in force for an item: its own, else the command's.
pub(crate) fn item_meta(cmd: &Command, item: &Item) -> Option<Box<Meta>> {
    item.meta
        .as_ref()
        .or_else(|| cmd.item_cmd().and_then(|c| c.meta.as_ref()))
        .cloned()
}

/// The bytes of an item's data, and whether any of it was element content (which is
/// kept as XML text, for an `xml` leaf).
fn item_bytes(item: &Item) -> Result<(Vec<u8>, bool), StatusCode> {
    let mut v = Vec::new();
    let mut nodes = false;
    for d in &item.data {
        match d {
            Data::Nodes(n) => {
                nodes = true;
                v.extend(crate::doc::nodes_to_xml(n).map_err(|_| StatusCode::BadRequest)?);
            }
            other => v.extend_from_slice(other.as_bytes().unwrap_or_default()),
        }
    }
    Ok((v, nodes))
}

fn target(item: &Item) -> &str {
    item.target
        .as_ref()
        .map(|t| t.loc_uri.as_str())
        .unwrap_or("")
}

impl Session {
    /// Whether `cmd` is the next chunk of the object being assembled.
    pub(crate) fn continues_large_object(&self, cmd: &Command) -> bool {
        match (&self.large, cmd.items()) {
            (Some(lo), [item]) => lo.cmd == cmd.name() && lo.target == target(item),
            _ => false,
        }
    }

    /// The data of an Add or Replace item, assembling chunks.
    pub(crate) fn take_data(&mut self, max_obj_size: u64, cmd: &Command, item: &Item) -> Chunk {
        let mut meta = item_meta(cmd, item);
        let (data, nodes) = match item_bytes(item) {
            Ok(x) => x,
            Err(code) => return Chunk::Refused(code),
        };
        if nodes {
            // Element content is XML: unless told otherwise, the value is `xml`.
            let m = meta.get_or_insert_with(Default::default);
            m.format.get_or_insert_with(|| "xml".to_owned());
        }
        let announced = meta.as_ref().and_then(|m| m.size);
        let this = (cmd.name().to_owned(), target(item).to_owned());
        if self.dropped.take_if(|d| *d == this).is_some() && !item.more_data && announced.is_none()
        {
            // The last chunk of an object that another command interrupted (and the
            // device alerted with 1225): it is not a value of its own.
            return Chunk::Refused(StatusCode::SizeMismatch);
        }
        let Some(mut lo) = self.large.take() else {
            if !item.more_data {
                if data.len() as u64 > max_obj_size {
                    return Chunk::Refused(StatusCode::RequestEntityTooLarge);
                }
                if announced.is_some_and(|s| s != data.len() as u64) {
                    return Chunk::Refused(StatusCode::SizeMismatch);
                }
                return Chunk::Complete(data, meta);
            }
            // The first chunk: it must say how large the whole object is.
            let Some(size) = announced else {
                return Chunk::Refused(StatusCode::IncompleteCommand);
            };
            if size > max_obj_size {
                return Chunk::Refused(StatusCode::RequestEntityTooLarge);
            }
            if data.len() as u64 > size {
                return Chunk::Refused(StatusCode::SizeMismatch);
            }
            self.large = Some(LargeObject {
                cmd: cmd.name().to_owned(),
                target: target(item).to_owned(),
                size,
                buf: data,
                meta,
            });
            return Chunk::Buffered;
        };
        lo.buf.extend_from_slice(&data);
        if lo.buf.len() as u64 > lo.size {
            return Chunk::Refused(StatusCode::SizeMismatch);
        }
        if item.more_data {
            self.large = Some(lo);
            return Chunk::Buffered;
        }
        if lo.buf.len() as u64 != lo.size {
            return Chunk::Refused(StatusCode::SizeMismatch);
        }
        Chunk::Complete(lo.buf, lo.meta)
    }
}
