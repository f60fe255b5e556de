//! The event interface shared by both encodings.
//!
//! The XML and WBXML readers turn bytes into a stream of [`Event`]s (a [`Source`]);
//! the XML and WBXML writers take the same calls (a [`Sink`]). The typed model is read
//! from any `Source` and written to any `Sink`, so the mapping between the model and
//! the wire is written once, and a message can be transcoded one command at a time
//! without holding it whole.

use std::borrow::Cow;

use crate::error::Error;

/// The XML namespace URI of MetInf (`syncml:metinf`).
pub const METINF_NS: &str = "syncml:metinf";
/// The XML namespace URI of DM DDF / TNDS (`syncml:dmddf1.2`).
pub const DDF_NS: &str = "syncml:dmddf1.2";

/// Which vocabulary an element belongs to. It decides the WBXML code page (0, 1, 2 or
/// a LITERAL tag) and the XML namespace the writer declares.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Namespace {
    /// SyncML itself (`SYNCML:SYNCML1.x`), WBXML code page 0.
    SyncMl,
    /// MetInf (`syncml:metinf`), WBXML code page 1.
    MetInf,
    /// DM DDF and TNDS (`syncml:dmddf1.2`), WBXML code page 2.
    Ddf,
    /// Any other namespace URI; in WBXML such elements become LITERAL tags.
    Other(Box<str>),
}

impl Namespace {
    /// Classifies a namespace URI. SyncML, MetInf and DDF URIs are matched without
    /// regard to letter case, since deployed engines vary it.
    pub fn from_uri(uri: &str) -> Namespace {
        let u = uri.trim();
        // Compared as bytes: the 13th byte of a foreign URI may fall inside a
        // multi-byte character, where slicing the str would panic (found by fuzzing).
        let starts = |prefix: &str| {
            u.as_bytes()
                .get(..prefix.len())
                .is_some_and(|b| b.eq_ignore_ascii_case(prefix.as_bytes()))
        };
        if starts("SYNCML:SYNCML") {
            Namespace::SyncMl
        } else if u.eq_ignore_ascii_case(METINF_NS) {
            Namespace::MetInf
        } else if starts("syncml:dmddf1") {
            Namespace::Ddf
        } else {
            Namespace::Other(u.into())
        }
    }

    /// The URI to declare in XML. `syncml_uri` is the message's SyncML namespace
    /// (for example `SYNCML:SYNCML1.2`).
    pub fn uri<'a>(&'a self, syncml_uri: &'a str) -> &'a str {
        match self {
            Namespace::SyncMl => syncml_uri,
            Namespace::MetInf => METINF_NS,
            Namespace::Ddf => DDF_NS,
            Namespace::Other(u) => u,
        }
    }
}

/// An attribute of an element. SyncML itself has none; they occur only in foreign
/// content, which is kept so that it round-trips. Namespace declarations are not
/// attributes here: they are resolved into [`Namespace`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attr {
    pub name: String,
    pub value: String,
}

/// The start of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start<'i> {
    pub ns: Namespace,
    /// The local name, without any prefix.
    pub name: Cow<'i, str>,
    pub attrs: Vec<Attr>,
}

/// One step of a decoded document. A source yields, for each element, `Start`, its
/// content, then `End`; an empty element is `Start` directly followed by `End`.
/// Text and opaque runs may come in several consecutive pieces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<'i> {
    Start(Start<'i>),
    /// Character data, already unescaped (XML) or decoded (WBXML inline and table
    /// strings, entities).
    Text(Cow<'i, str>),
    /// Opaque data: a WBXML OPAQUE block, or an XML CDATA section.
    Opaque(Cow<'i, [u8]>),
    /// The end of the most recently started open element.
    End,
    /// The end of the document (after the root element closed).
    Eof,
}

/// A pull parser over one encoded document.
pub trait Source<'i> {
    /// The next event. After `Eof` or an error, further calls return `Eof` or the
    /// same kind of error; they never panic.
    fn next(&mut self) -> Result<Event<'i>, Error>;
    /// The byte offset in the input where the event last returned begins.
    fn offset(&self) -> usize;
}

/// A writer of one encoded document. Calls must be balanced (`start` ... `end`); the
/// writers decide by themselves whether an element is empty (`<Final/>`, a bare WBXML
/// token) from whether anything came between `start` and `end`.
pub trait Sink {
    fn start(&mut self, ns: &Namespace, name: &str, attrs: &[Attr]) -> Result<(), Error>;
    fn text(&mut self, text: &str) -> Result<(), Error>;
    fn opaque(&mut self, data: &[u8]) -> Result<(), Error>;
    fn end(&mut self) -> Result<(), Error>;

    /// An element holding only text.
    fn leaf(&mut self, ns: &Namespace, name: &str, text: &str) -> Result<(), Error> {
        self.start(ns, name, &[])?;
        if !text.is_empty() {
            self.text(text)?;
        }
        self.end()
    }

    /// An element with no content (`<Final/>`).
    fn empty(&mut self, ns: &Namespace, name: &str) -> Result<(), Error> {
        self.start(ns, name, &[])?;
        self.end()
    }
}

/// Where a reader stands in its document (both readers track it the same way).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocState {
    /// Before the root element.
    Prolog,
    /// Inside the root element.
    Body,
    /// The root element has closed; `Eof` not yet returned.
    Epilog,
    /// `Eof` has been returned.
    Done,
}

/// Whether every byte of `s` is XML white space.
pub fn is_blank(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by fuzzing (fuzz/regressions/decode_xml): a 13th byte inside a
    /// multi-byte character made the prefix test slice a str off a char boundary.
    #[test]
    fn namespace_prefix_test_is_safe_on_multibyte_text() {
        assert_eq!(
            Namespace::from_uri("s>=xml:mete>\u{122}\">"),
            Namespace::Other("s>=xml:mete>\u{122}\">".into())
        );
        assert_eq!(
            Namespace::from_uri("syncml:dmddf\u{e9}"),
            Namespace::Other("syncml:dmddf\u{e9}".into())
        );
        assert_eq!(Namespace::from_uri(" SyncML:SyncML1.2 "), Namespace::SyncMl);
        assert_eq!(Namespace::from_uri("SYNCML:DMDDF1.2"), Namespace::Ddf);
        assert_eq!(
            Namespace::from_uri("\u{e9}"),
            Namespace::Other("\u{e9}".into())
        );
        // The whole fuzz input: an error, no panic.
        let input = b"<A xmlns=\"s>=xml:mete>\xc4\xa2\">";
        assert!(crate::decode(input).is_err());
    }
}
