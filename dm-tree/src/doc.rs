//! Reading and writing whole DDF / TNDS documents (`MgmtTree`) in XML or WBXML,
//! through syncml-core's readers and writers, as generic [`Element`] trees.

use syncml_core::event::{Event, Namespace, Source};
use syncml_core::wbxml::{looks_like_wbxml, PublicId, WbxmlOptions, WbxmlReader, WbxmlWriter};
use syncml_core::xml::{XmlOptions, XmlReader, XmlWriter};
use syncml_core::{Element, Limits, Node};

use crate::error::Error;

/// The DDF/TNDS public identifier.
pub const DDF_PUBLIC_ID: &str = "-//OMA//DTD-DM-DDF 1.2//EN";

/// Reads the root element of an XML or WBXML document.
pub fn read_root(bytes: &[u8]) -> Result<Element, Error> {
    let err = |e: syncml_core::Error| Error::Ddf(e.to_string());
    if looks_like_wbxml(bytes) {
        let mut r = WbxmlReader::new(bytes, Limits::DEFAULT).map_err(err)?;
        first_element(&mut r).map_err(err)
    } else {
        let mut r = XmlReader::new(bytes, Limits::DEFAULT).map_err(err)?;
        first_element(&mut r).map_err(err)
    }
}

fn first_element<'i, S: Source<'i>>(src: &mut S) -> Result<Element, syncml_core::Error> {
    loop {
        match src.next()? {
            Event::Start(s) => return Element::read_rest(s, src),
            Event::Eof => {
                return Err(syncml_core::Error::decode(
                    src.offset(),
                    syncml_core::Problem::Truncated("a document"),
                ))
            }
            _ => {}
        }
    }
}

/// Writes a document rooted at `root` as indented XML.
pub fn write_xml(root: &Element) -> Result<Vec<u8>, Error> {
    let mut w = XmlWriter::new("", XmlOptions::indented());
    root.write(&mut w).map_err(|e| Error::Ddf(e.to_string()))?;
    w.finish().map_err(|e| Error::Ddf(e.to_string()))
}

/// Writes a document rooted at `root` as WBXML (code page 2).
pub fn write_wbxml(root: &Element) -> Result<Vec<u8>, Error> {
    let mut w = WbxmlWriter::new(
        WbxmlOptions::default(),
        PublicId::Text(DDF_PUBLIC_ID.to_owned()),
    );
    root.write(&mut w).map_err(|e| Error::Ddf(e.to_string()))?;
    w.finish().map_err(|e| Error::Ddf(e.to_string()))
}

/// Element content that arrived in a Data element, as the XML text an `xml` leaf
/// stores (no declaration; text escaped).
pub fn nodes_to_xml(nodes: &[Node]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    for n in nodes {
        match n {
            Node::Element(e) => {
                let opts = XmlOptions {
                    indent: None,
                    declaration: false,
                };
                let mut w = XmlWriter::new("", opts);
                e.write(&mut w).map_err(|e| Error::Ddf(e.to_string()))?;
                out.extend(w.finish().map_err(|e| Error::Ddf(e.to_string()))?);
            }
            Node::Text(t) => {
                for c in t.chars() {
                    match c {
                        '&' => out.extend_from_slice(b"&amp;"),
                        '<' => out.extend_from_slice(b"&lt;"),
                        '>' => out.extend_from_slice(b"&gt;"),
                        c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
                    }
                }
            }
            Node::Opaque(b) => out.extend_from_slice(b),
        }
    }
    Ok(out)
}

/// The child elements of `e`.
pub fn elements(e: &Element) -> impl Iterator<Item = &Element> {
    e.children.iter().filter_map(|c| match c {
        Node::Element(x) => Some(x),
        _ => None,
    })
}

/// The trimmed text of a child element.
pub fn child_text(e: &Element, name: &str) -> Option<String> {
    e.child(name).map(|c| c.text().trim().to_owned())
}

/// Builders for the elements of a document in the DDF namespace.
pub fn el(name: &str) -> Element {
    Element::new(Namespace::Ddf, name)
}

/// An element holding `text` (an empty one, `<ACL/>`, for empty text).
pub fn text_el(name: &str, text: &str) -> Element {
    if text.is_empty() {
        el(name)
    } else {
        Element::with_text(Namespace::Ddf, name, text)
    }
}

/// `<Outer><inner/></Outer>`, as in `<DFFormat><chr/></DFFormat>`.
pub fn wrapped(outer: &str, inner: &str) -> Element {
    let mut e = el(outer);
    e.children.push(Node::Element(el(inner)));
    e
}

pub fn push(parent: &mut Element, child: Element) {
    parent.children.push(Node::Element(child));
}
