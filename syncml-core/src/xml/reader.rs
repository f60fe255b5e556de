//! The XML reader: a [`Source`] over a borrowed SyncML XML document.
//!
//! Built on quick-xml's borrowing slice reader. Character data is unescaped by
//! `escape` (not by quick-xml), so that the raw `&` some servers send is kept
//! and entity references are refused rather than expanded. A DOCTYPE is skipped: it is
//! never fetched and its internal subset never honoured.

use std::borrow::Cow;

use quick_xml::errors::{Error as QxError, SyntaxError};
use quick_xml::events::{BytesStart, Event as QxEvent};

use crate::error::{Error, Problem};
use crate::event::{is_blank, Attr, Event, Namespace, Source, Start};
use crate::limits::Limits;
use crate::tags;

use super::escape::{is_name, normalize_newlines, unescape};

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The vocabulary of an open element, as far as the namespace rules need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    SyncMl,
    MetInf,
    Ddf,
    Other,
}

fn kind(ns: &Namespace) -> Kind {
    match ns {
        Namespace::SyncMl => Kind::SyncMl,
        Namespace::MetInf => Kind::MetInf,
        Namespace::Ddf => Kind::Ddf,
        Namespace::Other(_) => Kind::Other,
    }
}

struct Frame {
    kind: Kind,
    /// `<Meta>` in the SyncML namespace: its unqualified MetInf-named children are MetInf.
    is_meta: bool,
    /// Length of `XmlReader::bindings` before this element's declarations.
    bindings: usize,
}

/// A namespace declaration in scope. An empty prefix is the default namespace.
struct Binding<'i> {
    prefix: &'i str,
    ns: Namespace,
}

use crate::event::DocState as State;

/// A pull reader over one XML document. See the module documentation.
pub struct XmlReader<'i> {
    /// The input after any byte order mark; all positions below are relative to it.
    src: &'i str,
    bom: usize,
    qx: quick_xml::Reader<&'i [u8]>,
    limits: Limits,
    frames: Vec<Frame>,
    bindings: Vec<Binding<'i>>,
    /// The `End` of an empty element (`<Final/>`) is due.
    pending_end: bool,
    state: State,
    /// Start of the last returned event, relative to `src`.
    offset: usize,
    error: Option<Error>,
}

/// The first character of valid UTF-8 `b` that XML 1.0 forbids: a C0 control other
/// than tab, line feed and carriage return, or U+FFFE / U+FFFF (surrogates cannot
/// occur in valid UTF-8). One pass over the bytes.
fn first_non_xml_char(b: &[u8]) -> Option<(usize, u32)> {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c < 0x20 && !matches!(c, b'\t' | b'\n' | b'\r') {
            return Some((i, u32::from(c)));
        }
        if c == 0xEF && b.get(i + 1) == Some(&0xBF) && matches!(b.get(i + 2), Some(0xBE | 0xBF)) {
            return Some((i, 0xFFF0 | u32::from(b[i + 2] & 0x0F)));
        }
        i += 1;
    }
    None
}

impl<'i> XmlReader<'i> {
    /// A reader over `input`. Fails at once on empty, oversized or non-UTF-8 input.
    pub fn new(input: &'i [u8], limits: Limits) -> Result<Self, Error> {
        limits.check_input(input)?;
        let bom = if input.starts_with(UTF8_BOM) {
            UTF8_BOM.len()
        } else {
            0
        };
        let body = &input[bom..];
        let src = std::str::from_utf8(body)
            .map_err(|e| Error::decode(bom + e.valid_up_to(), Problem::InvalidUtf8))?;
        if body.starts_with(UTF8_BOM) {
            // quick-xml would drop it silently and shift every position.
            return Err(Error::decode(
                bom,
                Problem::Xml("a second byte order mark".into()),
            ));
        }
        if let Some((at, c)) = first_non_xml_char(body) {
            // XML 1.0 allows these nowhere in a document (its Char production); a
            // message that held one could not be written back (found by fuzzing).
            return Err(Error::decode(
                bom + at,
                Problem::Xml(format!("the character U+{c:04X} is not allowed in XML 1.0")),
            ));
        }
        let mut qx = quick_xml::Reader::from_reader(body);
        let cfg = qx.config_mut();
        cfg.allow_dangling_amp = true;
        cfg.check_end_names = true;
        cfg.expand_empty_elements = false;
        cfg.trim_text_start = false;
        cfg.trim_text_end = false;
        Ok(XmlReader {
            src,
            bom,
            qx,
            limits,
            frames: Vec::with_capacity(16),
            bindings: Vec::with_capacity(4),
            pending_end: false,
            state: State::Prolog,
            offset: 0,
            error: None,
        })
    }

    /// The current element nesting depth (the root element is 1).
    pub fn depth(&self) -> usize {
        self.frames.len()
    }

    fn err(&self, pos: usize, problem: Problem) -> Error {
        Error::decode(self.bom + pos, problem)
    }

    /// `s` as a slice of the input, with the input's lifetime, and its position.
    fn locate(&self, s: &str) -> Option<(&'i str, usize)> {
        let start = (s.as_ptr() as usize).checked_sub(self.src.as_ptr() as usize)?;
        let slice = self.src.get(start..start.checked_add(s.len())?)?;
        Some((slice, start))
    }

    fn qx_error(&self, e: QxError, pos: usize) -> Error {
        let at = (self.qx.error_position() as usize)
            .max(pos)
            .min(self.src.len());
        let truncated = |what| self.err(at, Problem::Truncated(what));
        match e {
            QxError::Syntax(s) => match s {
                SyntaxError::UnclosedTag
                | SyntaxError::UnclosedSingleQuotedAttributeValue
                | SyntaxError::UnclosedDoubleQuotedAttributeValue => truncated("a tag"),
                SyntaxError::UnclosedComment => truncated("a comment"),
                SyntaxError::UnclosedCData => truncated("a CDATA section"),
                SyntaxError::UnclosedPI | SyntaxError::UnclosedXmlDecl => {
                    truncated("a processing instruction")
                }
                SyntaxError::UnclosedDoctype => truncated("the DOCTYPE"),
                other => self.err(at, Problem::Xml(other.to_string())),
            },
            other => self.err(at, Problem::Xml(other.to_string())),
        }
    }

    #[inline]
    fn read_qx(&mut self) -> Result<(QxEvent<'i>, usize), Error> {
        let pos = self.qx.buffer_position() as usize;
        match self.qx.read_event() {
            Ok(ev) => Ok((ev, pos)),
            Err(e) => Err(self.qx_error(e, pos)),
        }
    }

    fn step(&mut self) -> Result<Event<'i>, Error> {
        if self.pending_end {
            self.pending_end = false;
            self.close();
            return Ok(Event::End);
        }
        if self.state == State::Done {
            self.offset = self.src.len();
            return Ok(Event::Eof);
        }
        loop {
            let (ev, pos) = self.read_qx()?;
            match ev {
                QxEvent::Start(e) => return self.start(e, pos, false),
                QxEvent::Empty(e) => return self.start(e, pos, true),
                QxEvent::End(_) => {
                    // quick-xml has checked that the name matches.
                    self.offset = pos;
                    if self.frames.is_empty() {
                        return Err(
                            self.err(pos, Problem::Xml("end tag with no open element".into()))
                        );
                    }
                    self.close();
                    return Ok(Event::End);
                }
                QxEvent::Text(_) | QxEvent::GeneralRef(_) => {
                    // quick-xml splits text at every `&`; gather the whole run (up to
                    // the next `<` or the end) and unescape it at once.
                    let end = loop {
                        let p = self.qx.buffer_position() as usize;
                        if p >= self.src.len() || self.src.as_bytes()[p] == b'<' {
                            break p;
                        }
                        match self.qx.read_event() {
                            Ok(QxEvent::Text(_) | QxEvent::GeneralRef(_)) => {}
                            Ok(_) => {
                                return Err(
                                    self.err(p, Problem::Xml("lost track of a text run".into()))
                                )
                            }
                            Err(e) => return Err(self.qx_error(e, p)),
                        }
                    };
                    let Some(raw) = self.src.get(pos..end) else {
                        return Err(
                            self.err(pos, Problem::Xml("lost track of a text position".into()))
                        );
                    };
                    if let Some(ev) = self.text(raw, pos)? {
                        return Ok(ev);
                    }
                }
                QxEvent::CData(c) => {
                    let (raw, at) = match self.locate(&c) {
                        Some(x) => x,
                        None => {
                            return Err(self
                                .err(pos, Problem::Xml("lost track of a CDATA position".into())))
                        }
                    };
                    match self.state {
                        State::Body => {}
                        State::Epilog => return Err(self.err(pos, Problem::TrailingContent)),
                        _ => {
                            return Err(
                                self.err(pos, Problem::Xml("CDATA before the root element".into()))
                            )
                        }
                    }
                    self.limits
                        .check_string(raw.len())
                        .map_err(|p| self.err(at, p))?;
                    self.offset = pos;
                    return Ok(Event::Opaque(match normalize_newlines(raw) {
                        Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                        Cow::Owned(s) => Cow::Owned(s.into_bytes()),
                    }));
                }
                QxEvent::Decl(d) => {
                    if let Some(enc) = d.encoding() {
                        let enc = enc.map_err(|e| self.err(pos, Problem::Xml(e.to_string())))?;
                        let ok = ["UTF-8", "UTF8", "US-ASCII"]
                            .iter()
                            .any(|n| enc.trim().eq_ignore_ascii_case(n));
                        if !ok {
                            return Err(self.err(pos, Problem::XmlEncoding(enc.into_owned())));
                        }
                    }
                }
                QxEvent::DocType(_) | QxEvent::Comment(_) | QxEvent::PI(_) => {}
                QxEvent::Eof => {
                    let end = self.src.len();
                    self.offset = end;
                    return match self.state {
                        State::Prolog => Err(self.err(end, Problem::NoRoot)),
                        State::Body => Err(self.err(end, Problem::Truncated("an open element"))),
                        State::Epilog | State::Done => {
                            self.state = State::Done;
                            Ok(Event::Eof)
                        }
                    };
                }
            }
        }
    }

    /// A run of character data at `pos`; `None` when it is ignorable white space outside
    /// the root element.
    fn text(&mut self, raw: &'i str, pos: usize) -> Result<Option<Event<'i>>, Error> {
        match self.state {
            State::Body => {}
            _ if is_blank(raw) => return Ok(None),
            State::Epilog | State::Done => {
                let first = raw.len() - raw.trim_start_matches([' ', '\t', '\r', '\n']).len();
                return Err(self.err(pos + first, Problem::TrailingContent));
            }
            State::Prolog => {
                return Err(self.err(pos, Problem::Xml("text before the root element".into())));
            }
        }
        let text = unescape(raw, false).map_err(|(at, p)| self.err(pos + at, p))?;
        self.limits
            .check_string(text.len())
            .map_err(|p| self.err(pos, p))?;
        self.offset = pos;
        Ok(Some(Event::Text(text)))
    }

    fn start(&mut self, e: BytesStart<'_>, pos: usize, empty: bool) -> Result<Event<'i>, Error> {
        self.offset = pos;
        if matches!(self.state, State::Epilog | State::Done) {
            return Err(self.err(pos, Problem::TrailingContent));
        }
        if self.frames.len() >= self.limits.max_depth {
            return Err(self.err(pos, Problem::TooDeep(self.limits.max_depth)));
        }
        let qn = e.name();
        let Some((qname, _)) = self.locate(qn.as_ref()) else {
            return Err(self.err(pos, Problem::Xml("lost track of a name position".into())));
        };
        let mark = self.bindings.len();
        let mut own_default = false;
        let mut attrs = Vec::new();
        if !is_blank(e.attributes_raw()) {
            for a in e.attributes().with_checks(true) {
                let a = a.map_err(|err| self.err(pos, Problem::Xml(err.to_string())))?;
                let key = a.key.as_ref();
                let Some((raw, at)) = self.locate(&a.value) else {
                    return Err(
                        self.err(pos, Problem::Xml("lost track of a value position".into()))
                    );
                };
                self.limits
                    .check_string(raw.len())
                    .map_err(|p| self.err(at, p))?;
                let value = unescape(raw, true).map_err(|(k, p)| self.err(at + k, p))?;
                if key == "xmlns" {
                    own_default = true;
                    self.bindings.push(Binding {
                        prefix: "",
                        ns: Namespace::from_uri(&value),
                    });
                } else if let Some(prefix) = key.strip_prefix("xmlns:") {
                    let Some((prefix, _)) = self.locate(prefix) else {
                        return Err(
                            self.err(pos, Problem::Xml("lost track of a prefix position".into()))
                        );
                    };
                    self.bindings.push(Binding {
                        prefix,
                        ns: Namespace::from_uri(&value),
                    });
                } else {
                    if !is_name(key, true) {
                        return Err(self.err(
                            pos,
                            Problem::Xml(format!("attribute {key:?} is not an XML name")),
                        ));
                    }
                    attrs.push(Attr {
                        name: key.to_string(),
                        value: value.into_owned(),
                    });
                }
            }
        }
        let (prefix, local) = match qname.split_once(':') {
            Some((p, l)) => (Some(p), l),
            None => (None, qname),
        };
        if !is_name(local, false) || prefix.is_some_and(|p| !is_name(p, false)) {
            // quick-xml takes any run of name bytes; a name XML does not allow could
            // not be written back out (found by fuzzing the round trip).
            return Err(self.err(pos, Problem::Xml(format!("{qname:?} is not an XML name"))));
        }
        let bound = prefix.and_then(|p| {
            self.bindings
                .iter()
                .rev()
                .find(|b| b.prefix == p)
                .map(|b| b.ns.clone())
        });
        let ns = match bound {
            Some(ns) => ns,
            // An unbound prefix is treated as no prefix.
            None if own_default => self.bindings[mark..]
                .iter()
                .rev()
                .find(|b| b.prefix.is_empty())
                .map(|b| b.ns.clone())
                .unwrap_or(Namespace::SyncMl),
            None => self.inherited(local),
        };
        self.frames.push(Frame {
            kind: kind(&ns),
            is_meta: ns == Namespace::SyncMl && local == "Meta",
            bindings: mark,
        });
        self.state = State::Body;
        self.pending_end = empty;
        Ok(Event::Start(Start {
            ns,
            name: Cow::Borrowed(local),
            attrs,
        }))
    }

    /// The namespace of an element that declares none of its own.
    fn inherited(&self, local: &str) -> Namespace {
        let default = self
            .bindings
            .iter()
            .rev()
            .find(|b| b.prefix.is_empty())
            .map(|b| &b.ns);
        match default {
            Some(ns) if *ns != Namespace::SyncMl => ns.clone(),
            _ => match self.frames.last() {
                Some(f) if f.kind == Kind::MetInf => Namespace::MetInf,
                Some(f) if f.kind == Kind::Ddf => Namespace::Ddf,
                Some(f) if f.is_meta && tags::is_metinf(local) => Namespace::MetInf,
                _ if local == "MgmtTree" => Namespace::Ddf,
                _ => Namespace::SyncMl,
            },
        }
    }

    fn close(&mut self) {
        if let Some(f) = self.frames.pop() {
            self.bindings.truncate(f.bindings);
        }
        if self.frames.is_empty() {
            self.state = State::Epilog;
        }
    }
}

impl<'i> Source<'i> for XmlReader<'i> {
    fn next(&mut self) -> Result<Event<'i>, Error> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        match self.step() {
            Ok(ev) => Ok(ev),
            Err(e) => {
                self.error = Some(e.clone());
                Err(e)
            }
        }
    }

    fn offset(&self) -> usize {
        self.bom + self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every event up to and including `Eof`.
    fn events_with(doc: &[u8], limits: Limits) -> Result<Vec<Event<'_>>, Error> {
        let mut r = XmlReader::new(doc, limits)?;
        let mut out = Vec::new();
        loop {
            let ev = r.next()?;
            let eof = ev == Event::Eof;
            out.push(ev);
            if eof {
                return Ok(out);
            }
            assert!(out.len() < 1_000_000, "runaway reader");
        }
    }

    fn events(doc: &str) -> Result<Vec<Event<'_>>, Error> {
        events_with(doc.as_bytes(), Limits::DEFAULT)
    }

    fn problem(doc: &str) -> (usize, Problem) {
        match events(doc) {
            Err(Error::Decode { offset, problem }) => (offset, problem),
            other => panic!("expected a decode error, got {other:?}"),
        }
    }

    /// Found by fuzzing (fuzz/regressions/roundtrip_bytes): raw control characters
    /// were taken into text, giving a message that no XML writer can write back.
    #[test]
    fn characters_xml_forbids_are_refused() {
        assert_eq!(
            problem("<A>x\u{0}y</A>"),
            (
                4,
                Problem::Xml("the character U+0000 is not allowed in XML 1.0".into())
            )
        );
        assert_eq!(
            problem("<A b=\"\u{1b}\"/>"),
            (
                6,
                Problem::Xml("the character U+001B is not allowed in XML 1.0".into())
            )
        );
        assert_eq!(
            problem("<A>\u{FFFE}</A>"),
            (
                3,
                Problem::Xml("the character U+FFFE is not allowed in XML 1.0".into())
            )
        );
        assert_eq!(
            problem("<!-- \u{FFFF} --><A/>"),
            (
                5,
                Problem::Xml("the character U+FFFF is not allowed in XML 1.0".into())
            )
        );
        // What XML allows still reads: tab, line ends, U+FFFD, astral characters.
        assert!(events("<A>\t\r\n\u{FFFD}\u{1F600}</A>").is_ok());
        // The fuzz input: NUL bytes in a Data element.
        let mut msg = b"<SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD>\
<VerProto>DM/1.2</VerProto><SessionID>9</SessionID><MsgID>3</MsgID><Target><LocURI>a\
</LocURI></Target><Source><LocURI>b</LocURI></Source></SyncHdr><SyncBody><Alert>\
<CmdID>1</CmdID><Data>1223</Data><Item><Data>w"
            .to_vec();
        msg.extend_from_slice(&[0; 40]);
        msg.extend_from_slice(b"?</Data></Item></Alert></SyncBody></SyncML>");
        assert!(crate::decode(&msg).is_err());
    }

    /// Found by fuzzing (fuzz/regressions/roundtrip_bytes/name-not-xml): names
    /// that XML does not allow were read, and could not be written back.
    #[test]
    fn names_xml_forbids_are_refused() {
        assert_eq!(
            problem("<A><1222MoreData/></A>").1,
            Problem::Xml("\"1222MoreData\" is not an XML name".into())
        );
        assert!(matches!(problem("<A><p:-x/></A>").1, Problem::Xml(_)));
        assert!(matches!(
            problem("<A b.=\"1\" 9c=\"2\"/>").1,
            Problem::Xml(_)
        ));
        assert!(events("<A><b.c-d_1 x:y=\"1\" z=\"2\"/><p:q/></A>").is_ok());
    }

    fn st<'a>(ns: Namespace, name: &'a str) -> Event<'a> {
        Event::Start(Start {
            ns,
            name: Cow::Borrowed(name),
            attrs: vec![],
        })
    }

    fn tx(s: &str) -> Event<'_> {
        Event::Text(Cow::Borrowed(s))
    }

    /// (namespace, name) of every start, in order.
    fn starts(doc: &str) -> Vec<(Namespace, String)> {
        events(doc)
            .unwrap()
            .into_iter()
            .filter_map(|e| match e {
                Event::Start(s) => Some((s.ns, s.name.into_owned())),
                _ => None,
            })
            .collect()
    }

    fn ns_of(doc: &str, name: &str) -> Namespace {
        starts(doc)
            .into_iter()
            .find(|(_, n)| n == name)
            .expect(name)
            .0
    }

    #[test]
    fn small_document() {
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
                   <SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><VerDTD>1.2</VerDTD></SyncHdr>\
                   <SyncBody><Final/></SyncBody></SyncML>\n";
        use Namespace::SyncMl as S;
        assert_eq!(
            events(doc).unwrap(),
            vec![
                st(S, "SyncML"),
                st(S, "SyncHdr"),
                st(S, "VerDTD"),
                tx("1.2"),
                Event::End,
                Event::End,
                st(S, "SyncBody"),
                st(S, "Final"),
                Event::End,
                Event::End,
                Event::End,
                Event::Eof,
            ]
        );
    }

    #[test]
    fn eof_repeats_and_offsets() {
        let doc = b"\xEF\xBB\xBF<A>x<B/></A>";
        let mut r = XmlReader::new(doc, Limits::DEFAULT).unwrap();
        assert!(matches!(r.next().unwrap(), Event::Start(_)));
        assert_eq!(r.offset(), 3);
        assert_eq!(r.next().unwrap(), tx("x"));
        assert_eq!(r.offset(), 6);
        assert!(matches!(r.next().unwrap(), Event::Start(_)));
        assert_eq!(r.offset(), 7);
        assert_eq!(r.next().unwrap(), Event::End);
        assert_eq!(r.next().unwrap(), Event::End);
        assert_eq!(r.offset(), 11);
        for _ in 0..3 {
            assert_eq!(r.next().unwrap(), Event::Eof);
        }
    }

    #[test]
    fn whitespace_text_is_kept_inside_and_ignored_outside() {
        let ev = events("  \n<A> <B>\r\n</B></A>\n\t ").unwrap();
        assert_eq!(ev[1], tx(" "));
        assert_eq!(ev[3], Event::Text(Cow::Owned("\n".into())));
    }

    #[test]
    fn text_is_borrowed_and_unescaped() {
        let ev = events("<A>plain</A>").unwrap();
        assert!(matches!(&ev[1], Event::Text(Cow::Borrowed("plain"))));
        let ev = events("<A>a &lt;b&gt; &amp;&#65;&#x42; c</A>").unwrap();
        assert_eq!(ev[1], tx("a <b> &AB c"));
        assert_eq!(ev.len(), 4, "one text event for the whole run");
    }

    #[test]
    fn raw_ampersand_quirk() {
        let ev = events("<Data>MAXDT=15&DR=1</Data>").unwrap();
        assert_eq!(ev[1], tx("MAXDT=15&DR=1"));
        let ev = events("<Data>a & b &amp; c&</Data>").unwrap();
        assert_eq!(ev[1], tx("a & b & c&"));
    }

    #[test]
    fn unknown_entity_is_refused_at_its_offset() {
        assert_eq!(
            problem("<A>abc&foo;</A>"),
            (6, Problem::Entity("foo".into()))
        );
        assert_eq!(problem("<A>&#0;</A>"), (3, Problem::CharRef("0".into())));
        assert_eq!(problem("<A b=\"x&y;\"/>"), (7, Problem::Entity("y".into())));
    }

    #[test]
    fn doctype_entities_are_not_expanded() {
        let doc = "<?xml version=\"1.0\"?>\n<!DOCTYPE SyncML [\n<!ENTITY e \"expanded\">\n]>\n\
                   <SyncML><Data>&e;</Data></SyncML>";
        let at = doc.find("&e;").unwrap();
        assert_eq!(problem(doc), (at, Problem::Entity("e".into())));
        // A DOCTYPE without entity use is simply skipped.
        let doc = "<!DOCTYPE SyncML PUBLIC \"-//SYNCML//DTD SyncML 1.2//EN\" \
                   \"http://www.openmobilealliance.org/tech/DTD/OMA-TS-SyncML_RepPro_DTD-V1_2.dtd\">\
                   <SyncML/>";
        assert_eq!(events(doc).unwrap().len(), 3);
    }

    #[test]
    fn billion_laughs_fails_fast() {
        let mut doc =
            String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n<!ENTITY lol \"lol\">\n");
        for i in 1..10 {
            let prev = if i == 1 {
                "lol".to_string()
            } else {
                format!("lol{}", i - 1)
            };
            doc.push_str(&format!(
                "<!ENTITY lol{i} \"{}\">\n",
                format!("&{prev};").repeat(10)
            ));
        }
        doc.push_str("]>\n<lolz>&lol9;</lolz>");
        let t = std::time::Instant::now();
        let (_, p) = problem(&doc);
        assert_eq!(p, Problem::Entity("lol9".into()));
        assert!(t.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn cdata_is_opaque() {
        let ev = events("<Data>x<![CDATA[<a>&amp;]]>y</Data>").unwrap();
        assert_eq!(ev[1], tx("x"));
        assert!(matches!(&ev[2], Event::Opaque(Cow::Borrowed(b"<a>&amp;"))));
        assert_eq!(ev[3], tx("y"));
        let ev = events("<Data><![CDATA[a\r\nb]]></Data>").unwrap();
        assert_eq!(ev[1], Event::Opaque(Cow::Owned(b"a\nb".to_vec())));
    }

    #[test]
    fn comments_and_pis_are_skipped() {
        let ev = events("<!-- c --><?pi x?><A><!-- in -->t<?p?></A><!-- after -->").unwrap();
        assert_eq!(
            ev,
            vec![st(Namespace::SyncMl, "A"), tx("t"), Event::End, Event::Eof]
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            problem("<A><B></B>").1,
            Problem::Truncated("an open element")
        );
        assert_eq!(
            problem("<A><B></B>"),
            (10, Problem::Truncated("an open element"))
        );
        assert!(matches!(problem("<A><B").1, Problem::Truncated(_)));
        assert!(matches!(problem("<A><![CDATA[x").1, Problem::Truncated(_)));
        match problem("<A><B></C></A>") {
            (_, Problem::Xml(m)) => assert!(m.contains('B') && m.contains('C'), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(problem("<A/>x"), (4, Problem::TrailingContent));
        assert_eq!(problem("<A/>\n <B/>"), (6, Problem::TrailingContent));
        assert_eq!(problem("<A/><![CDATA[x]]>").1, Problem::TrailingContent);
        assert_eq!(problem("  <!-- only -->\n").1, Problem::NoRoot);
        assert!(matches!(problem("x<A/>").1, Problem::Xml(_)));
        assert!(matches!(problem("<A></A></B>").1, Problem::Xml(_)));
        assert!(matches!(problem("<A b=\"1\" b=\"2\"/>").1, Problem::Xml(_)));
    }

    #[test]
    fn errors_repeat_and_never_panic() {
        let mut r = XmlReader::new(b"<A>&x;</A>", Limits::DEFAULT).unwrap();
        r.next().unwrap();
        let e = r.next().unwrap_err();
        assert_eq!(r.next().unwrap_err(), e);
        assert_eq!(r.next().unwrap_err(), e);
    }

    #[test]
    fn input_checks() {
        assert_eq!(
            XmlReader::new(b"", Limits::DEFAULT).err(),
            Some(Error::decode(0, Problem::Empty))
        );
        let small = Limits {
            max_message_size: 4,
            ..Limits::DEFAULT
        };
        assert_eq!(
            XmlReader::new(b"<A/> ", small).err(),
            Some(Error::decode(
                0,
                Problem::MessageTooLarge { size: 5, limit: 4 }
            ))
        );
        assert_eq!(
            XmlReader::new(b"<A>ab\xFFc</A>", Limits::DEFAULT).err(),
            Some(Error::decode(5, Problem::InvalidUtf8))
        );
        assert_eq!(
            XmlReader::new(b"\xEF\xBB\xBF<A>\xC3</A>", Limits::DEFAULT).err(),
            Some(Error::decode(6, Problem::InvalidUtf8))
        );
    }

    #[test]
    fn declared_encoding() {
        assert!(events("<?xml version=\"1.0\" encoding=\"utf8\"?><A/>").is_ok());
        assert!(events("<?xml version='1.0' encoding='us-ascii'?><A/>").is_ok());
        assert!(events("<?xml version=\"1.0\"?><A/>").is_ok());
        assert_eq!(
            problem("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><A/>"),
            (0, Problem::XmlEncoding("ISO-8859-1".into()))
        );
    }

    #[test]
    fn limits() {
        let lim = Limits {
            max_depth: 3,
            max_string_len: 5,
            ..Limits::DEFAULT
        };
        assert!(events_with(b"<A><B><C>12345</C></B></A>", lim).is_ok());
        assert_eq!(
            events_with(b"<A><B><C><D/></C></B></A>", lim).unwrap_err(),
            Error::decode(9, Problem::TooDeep(3))
        );
        assert_eq!(
            events_with(b"<A>123456</A>", lim).unwrap_err(),
            Error::decode(3, Problem::StringTooLong { len: 6, limit: 5 })
        );
        assert!(matches!(
            events_with(b"<A><![CDATA[123456]]></A>", lim)
                .unwrap_err()
                .problem(),
            Some(Problem::StringTooLong { .. })
        ));
        assert!(matches!(
            events_with(b"<A b=\"123456\"/>", lim)
                .unwrap_err()
                .problem(),
            Some(Problem::StringTooLong { .. })
        ));
        // Deep nesting at the default limit fails quickly, without recursion.
        let deep = "<A>".repeat(100_000);
        assert_eq!(
            events(&deep).unwrap_err().problem(),
            Some(&Problem::TooDeep(64))
        );
    }

    #[test]
    fn metinf_three_ways() {
        for doc in [
            "<SyncML xmlns='SYNCML:SYNCML1.2'><Meta><Format xmlns='syncml:metinf'>b64</Format></Meta></SyncML>",
            "<SyncML xmlns='SYNCML:SYNCML1.2'><Meta xmlns:m='syncml:metinf'><m:Format>b64</m:Format></Meta></SyncML>",
            "<SyncML xmlns='SYNCML:SYNCML1.2'><Meta><Format>b64</Format></Meta></SyncML>",
            "<SyncML><Meta><Format>b64</Format></Meta></SyncML>",
        ] {
            let s = starts(doc);
            assert_eq!(s[1], (Namespace::SyncMl, "Meta".to_string()), "{doc}");
            assert_eq!(s[2], (Namespace::MetInf, "Format".to_string()), "{doc}");
        }
        // A MetInf element's children are MetInf; non-MetInf names in Meta are not.
        let doc = "<SyncML><Meta><Mem><FreeMem>1</FreeMem></Mem><Foo/></Meta><Format/></SyncML>";
        assert_eq!(ns_of(doc, "Mem"), Namespace::MetInf);
        assert_eq!(ns_of(doc, "FreeMem"), Namespace::MetInf);
        assert_eq!(ns_of(doc, "Foo"), Namespace::SyncMl);
        assert_eq!(ns_of(doc, "Format"), Namespace::SyncMl);
        let doc = "<SyncML><Item><Format/></Item></SyncML>";
        assert_eq!(ns_of(doc, "Format"), Namespace::SyncMl);
    }

    #[test]
    fn mgmt_tree_is_ddf() {
        let doc = "<SyncML xmlns=\"SYNCML:SYNCML1.2\"><Item><Data><MgmtTree><VerDTD>1.2</VerDTD>\
                   <Node><NodeName>x</NodeName><DFProperties><AccessType><Get/></AccessType>\
                   </DFProperties></Node></MgmtTree></Data><Meta/></Item></SyncML>";
        let s = starts(doc);
        let ddf: Vec<_> = s
            .iter()
            .filter(|(ns, _)| *ns == Namespace::Ddf)
            .map(|(_, n)| n.as_str())
            .collect();
        assert_eq!(
            ddf,
            [
                "MgmtTree",
                "VerDTD",
                "Node",
                "NodeName",
                "DFProperties",
                "AccessType",
                "Get"
            ]
        );
        assert_eq!(s.last().unwrap(), &(Namespace::SyncMl, "Meta".to_string()));
        // Declared explicitly, and left again.
        let doc = "<SyncML><Data><MgmtTree xmlns='syncml:dmddf1.2'><Node/></MgmtTree><Get/></Data></SyncML>";
        assert_eq!(ns_of(doc, "Node"), Namespace::Ddf);
        assert_eq!(ns_of(doc, "Get"), Namespace::SyncMl);
    }

    #[test]
    fn prefixes_and_foreign_namespaces() {
        let doc = "<s:SyncML xmlns:s='SYNCML:SYNCML1.2' xmlns:x='urn:x'>\
                   <s:Item><x:Ext a='1' x:b='&lt;2&gt;'><Inner/></x:Ext><q:Loose/></s:Item></s:SyncML>";
        let ev = events(doc).unwrap();
        let Event::Start(root) = &ev[0] else { panic!() };
        assert_eq!(
            (root.ns.clone(), &*root.name),
            (Namespace::SyncMl, "SyncML")
        );
        assert!(
            root.attrs.is_empty(),
            "namespace declarations are not attributes"
        );
        let Event::Start(ext) = &ev[2] else { panic!() };
        assert_eq!(ext.ns, Namespace::Other("urn:x".into()));
        assert_eq!(ext.name, "Ext");
        assert_eq!(
            ext.attrs,
            vec![
                Attr {
                    name: "a".into(),
                    value: "1".into()
                },
                Attr {
                    name: "x:b".into(),
                    value: "<2>".into()
                }
            ]
        );
        // No default namespace anywhere: SyncML; an unbound prefix counts as none.
        assert_eq!(ns_of(doc, "Inner"), Namespace::SyncMl);
        assert_eq!(ns_of(doc, "Loose"), Namespace::SyncMl);
        // A foreign default namespace is inherited.
        let doc = "<SyncML><X xmlns='urn:y'><Meta><Format/></Meta></X><Y/></SyncML>";
        assert_eq!(ns_of(doc, "Format"), Namespace::Other("urn:y".into()));
        assert_eq!(ns_of(doc, "Y"), Namespace::SyncMl);
        // A prefix declared on the element itself applies to it.
        let doc = "<SyncML><m:Type xmlns:m='syncml:metinf'/></SyncML>";
        assert_eq!(ns_of(doc, "Type"), Namespace::MetInf);
    }

    #[test]
    fn aosp_vectors_read_to_eof() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/aosp-dm11"
        );
        let mut n = 0;
        for entry in std::fs::read_dir(dir).expect("vector directory") {
            let path = entry.unwrap().path();
            if path.extension().and_then(|e| e.to_str()) != Some("xml") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let ev = events_with(&bytes, Limits::DEFAULT)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(
                matches!(&ev[0], Event::Start(s) if s.name == "SyncML" && s.ns == Namespace::SyncMl)
            );
            assert_eq!(ev.last(), Some(&Event::Eof));
            n += 1;
        }
        assert!(n >= 8, "only {n} vectors found");
    }

    #[test]
    fn aosp_vector_quirks() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/aosp-dm11/testalertdisplay.xml"
        );
        let bytes = std::fs::read(path).unwrap();
        let ev = events_with(&bytes, Limits::DEFAULT).unwrap();
        let i = ev
            .iter()
            .position(|e| matches!(e, Event::Start(s) if s.name == "MaxMsgSize"))
            .unwrap();
        assert!(matches!(&ev[i], Event::Start(s) if s.ns == Namespace::MetInf));
        assert_eq!(ev[i + 1], tx("20000"));
        let texts: Vec<String> = ev
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) if !is_blank(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        assert!(texts.contains(&"http://199.1.88.66/Scts?4Eq5AA==".to_string()));
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/vectors/aosp-dm11"
        );
        let bytes = std::fs::read(format!("{dir}/testalertconfirm.xml")).unwrap();
        let ev = events_with(&bytes, Limits::DEFAULT).unwrap();
        assert!(ev
            .iter()
            .any(|e| matches!(e, Event::Text(t) if t.contains("&DR="))));
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;

        const SEED: &str = "<?xml version=\"1.0\"?><!DOCTYPE SyncML [<!ENTITY e \"x\">]>\
            <SyncML xmlns=\"SYNCML:SYNCML1.2\"><SyncHdr><Meta xmlns:m=\"syncml:metinf\">\
            <m:Format>b64</m:Format><Type a='1&amp;2'>t</Type></Meta></SyncHdr><SyncBody>\
            <Alert><Data>MAXDT=15&DR=1 &lt;&#233;&#x1F600;</Data><!-- c --><?pi?>\
            <Data><![CDATA[raw]]></Data><Item><Data><MgmtTree><Node/></MgmtTree></Data>\
            </Item></Alert><Final/></SyncBody></SyncML>\n";

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            /// Truncated and corrupted inputs give an error or a document, never a panic
            /// or an endless stream.
            #[test]
            fn corrupted_input_never_panics(
                cut in 0..SEED.len() + 1,
                edits in proptest::collection::vec((0..SEED.len(), any::<u8>()), 0..4),
                depth in 1usize..8,
            ) {
                let mut doc = SEED.as_bytes()[..cut].to_vec();
                for (at, byte) in edits {
                    if at < doc.len() {
                        doc[at] = byte;
                    }
                }
                let lim = Limits { max_depth: depth, max_string_len: 16, ..Limits::DEFAULT };
                if let Ok(mut r) = XmlReader::new(&doc, lim) {
                    let mut n = 0;
                    loop {
                        let ev = r.next();
                        prop_assert!(r.offset() <= doc.len());
                        match ev {
                            Ok(Event::Eof) => {
                                prop_assert_eq!(r.next(), Ok(Event::Eof));
                                break;
                            }
                            Ok(_) => n += 1,
                            Err(e) => {
                                prop_assert!(e.offset().unwrap() <= doc.len());
                                prop_assert_eq!(r.next(), Err(e));
                                break;
                            }
                        }
                        prop_assert!(n <= doc.len());
                    }
                }
            }
        }

        #[test]
        fn seed_document_reads() {
            let ev = events(SEED).unwrap();
            let format = ev
                .iter()
                .find_map(|e| match e {
                    Event::Start(s) if s.name == "Format" => Some(s.ns.clone()),
                    _ => None,
                })
                .unwrap();
            assert_eq!(format, Namespace::MetInf);
            assert!(ev.contains(&tx("MAXDT=15&DR=1 <\u{e9}\u{1F600}")));
        }
    }
}
