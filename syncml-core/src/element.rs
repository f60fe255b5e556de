//! Generic elements: content the typed model does not know, kept so that it is
//! written back unchanged (unknown commands, vendor extensions, embedded TNDS).

use crate::error::{Error, Problem};
use crate::event::{is_blank, Attr, Event, Namespace, Sink, Source, Start};

/// An element kept as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub ns: Namespace,
    pub name: String,
    pub attrs: Vec<Attr>,
    pub children: Vec<Node>,
}

/// A child of an [`Element`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Element(Element),
    Text(String),
    Opaque(Vec<u8>),
}

impl Element {
    /// An element with no attributes and no children.
    pub fn new(ns: Namespace, name: impl Into<String>) -> Element {
        Element {
            ns,
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// An element holding one text child.
    pub fn with_text(ns: Namespace, name: impl Into<String>, text: impl Into<String>) -> Element {
        let mut e = Element::new(ns, name);
        e.children.push(Node::Text(text.into()));
        e
    }

    /// Reads the rest of an element whose `Start` was just taken from `src`.
    /// White space between child elements is dropped; text next to text is merged.
    pub fn read_rest<'i, S: Source<'i>>(start: Start<'i>, src: &mut S) -> Result<Element, Error> {
        let mut stack: Vec<Element> = vec![Element::from_start(start)];
        loop {
            match src.next()? {
                Event::Start(s) => stack.push(Element::from_start(s)),
                Event::Text(t) => {
                    let top = last(&mut stack);
                    match top.children.last_mut() {
                        Some(Node::Text(prev)) => prev.push_str(&t),
                        _ => top.children.push(Node::Text(t.into_owned())),
                    }
                }
                Event::Opaque(b) => {
                    let top = last(&mut stack);
                    match top.children.last_mut() {
                        Some(Node::Opaque(prev)) => prev.extend_from_slice(&b),
                        _ => top.children.push(Node::Opaque(b.into_owned())),
                    }
                }
                Event::End => {
                    let mut done = stack
                        .pop()
                        .unwrap_or_else(|| Element::new(Namespace::SyncMl, ""));
                    done.drop_blank_text();
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(Node::Element(done)),
                        None => return Ok(done),
                    }
                }
                Event::Eof => {
                    return Err(Error::decode(
                        src.offset(),
                        Problem::Truncated("an element"),
                    ))
                }
            }
        }
    }

    fn from_start(s: Start<'_>) -> Element {
        Element {
            ns: s.ns,
            name: s.name.into_owned(),
            attrs: s.attrs,
            children: Vec::new(),
        }
    }

    /// In element content, white space is layout, not data. Runs it separated are
    /// merged, as they would have been had it not been there: adjacent opaque runs
    /// (or text runs) are one, whichever encoding they came in (found by fuzzing:
    /// `<![CDATA[a]]> <![CDATA[b]]>` beside an element read as two runs from XML, but
    /// as one once written to WBXML and read back).
    fn drop_blank_text(&mut self) {
        if self.children.iter().any(|c| matches!(c, Node::Element(_))) {
            let kids = std::mem::take(&mut self.children);
            for c in kids {
                match (self.children.last_mut(), c) {
                    (_, Node::Text(t)) if is_blank(&t) => {}
                    (Some(Node::Opaque(prev)), Node::Opaque(b)) => prev.extend_from_slice(&b),
                    (Some(Node::Text(prev)), Node::Text(t)) => prev.push_str(&t),
                    (_, c) => self.children.push(c),
                }
            }
        }
    }

    /// Writes the element and its content.
    pub fn write<W: Sink + ?Sized>(&self, sink: &mut W) -> Result<(), Error> {
        sink.start(&self.ns, &self.name, &self.attrs)?;
        for c in &self.children {
            c.write(sink)?;
        }
        sink.end()
    }

    /// The concatenated text of the element's direct text children.
    pub fn text(&self) -> String {
        let mut s = String::new();
        for c in &self.children {
            if let Node::Text(t) = c {
                s.push_str(t);
            }
        }
        s
    }

    /// The first child element with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find_map(|c| match c {
            Node::Element(e) if e.name == name => Some(e),
            _ => None,
        })
    }
}

impl Node {
    /// Writes the node.
    pub fn write<W: Sink + ?Sized>(&self, sink: &mut W) -> Result<(), Error> {
        match self {
            Node::Element(e) => e.write(sink),
            Node::Text(t) => sink.text(t),
            Node::Opaque(b) => sink.opaque(b),
        }
    }
}

fn last(stack: &mut [Element]) -> &mut Element {
    // The stack is never empty while events are read: the loop returns when the
    // first element closes.
    let n = stack.len();
    &mut stack[n - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/regressions/roundtrip_bytes/opaque-runs-split-by-layout).
    #[test]
    fn opaque_runs_split_by_layout_are_one_run() {
        let xml = b"<SyncML xmlns='SYNCML:SYNCML1.2'><SyncHdr><VerDTD>1.2</VerDTD>\
<VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>a\
</LocURI></Target><Source><LocURI>b</LocURI></Source><X-Ext><![CDATA[en]]> \
<![CDATA[US]]>\n<![CDATA[!]]><Y/></X-Ext></SyncHdr><SyncBody/></SyncML>";
        let m = crate::decode(xml).unwrap();
        let ext = &m.hdr.extra[0];
        assert_eq!(ext.children.len(), 2, "{ext:?}");
        assert_eq!(ext.children[0], Node::Opaque(b"enUS!".to_vec()));
        for enc in [crate::Encoding::Xml, crate::Encoding::Wbxml] {
            let back = crate::decode(&crate::encode(&m, enc).unwrap()).unwrap();
            assert_eq!(back, m, "{enc:?}");
        }
    }
}
