//! Reading the typed model from an event [`Source`] (XML or WBXML alike).
//!
//! Lenient where deployed peers differ (child order, white space, MetInf namespace
//! forms, optional MsgRef), strict where a wrong value would mislead the receiver
//! (non-numeric CmdID, Status code or Size).

use std::borrow::Cow;

use crate::codes::{AlertCode, StatusCode};
use crate::element::{Element, Node};
use crate::encoding::{AnySource, Encoding};
use crate::error::{Error, Problem};
use crate::event::{is_blank, Event, Source, Start};
use crate::limits::Limits;

use super::*;

/// A recursive-descent reader of the model over any event source.
pub(crate) struct Parser<'i, S: Source<'i>> {
    src: S,
    limits: Limits,
    items: usize,
    _input: std::marker::PhantomData<&'i [u8]>,
}

type R<T> = Result<T, Error>;

impl<'i, S: Source<'i>> Parser<'i, S> {
    pub(crate) fn new(src: S, limits: Limits) -> Self {
        Parser {
            src,
            limits,
            items: 0,
            _input: std::marker::PhantomData,
        }
    }

    pub(crate) fn source(&self) -> &S {
        &self.src
    }

    fn err(&self, p: Problem) -> Error {
        Error::decode(self.src.offset(), p)
    }

    fn count(&mut self) -> R<()> {
        self.items += 1;
        if self.items > self.limits.max_items {
            return Err(self.err(Problem::TooManyItems(self.limits.max_items)));
        }
        Ok(())
    }

    /// The next child element of `parent`, or `None` at its end. White space is
    /// skipped; other text is an error in element-only content.
    fn child(&mut self, parent: &'static str) -> R<Option<Start<'i>>> {
        loop {
            match self.src.next()? {
                Event::Start(s) => return Ok(Some(s)),
                Event::End => return Ok(None),
                Event::Text(t) if is_blank(&t) => {}
                Event::Text(_) | Event::Opaque(_) => {
                    return Err(self.err(Problem::UnexpectedText(parent)))
                }
                Event::Eof => return Err(self.err(Problem::Truncated("an element"))),
            }
        }
    }

    /// The text content of a leaf element, as it is.
    fn raw_text(&mut self, name: &'static str) -> R<String> {
        let mut out: Option<Cow<'i, str>> = None;
        loop {
            match self.src.next()? {
                Event::Text(t) => append(&mut out, t),
                Event::Opaque(b) => {
                    let t = match b {
                        Cow::Borrowed(b) => Cow::Borrowed(
                            std::str::from_utf8(b).map_err(|_| self.err(Problem::InvalidUtf8))?,
                        ),
                        Cow::Owned(b) => Cow::Owned(
                            String::from_utf8(b).map_err(|_| self.err(Problem::InvalidUtf8))?,
                        ),
                    };
                    append(&mut out, t)
                }
                Event::End => return Ok(out.map(Cow::into_owned).unwrap_or_default()),
                Event::Start(s) => {
                    return Err(self.err(Problem::Unexpected {
                        element: s.name.into_owned(),
                        parent: name,
                    }))
                }
                Event::Eof => return Err(self.err(Problem::Truncated("an element"))),
            }
        }
    }

    /// The text of a leaf element with surrounding white space removed (LocURI,
    /// Format, CmdID...: values where layout white space carries no meaning).
    fn text(&mut self, name: &'static str) -> R<String> {
        let s = self.raw_text(name)?;
        let t = s.trim();
        Ok(if t.len() == s.len() { s } else { t.to_owned() })
    }

    fn number<T: std::str::FromStr>(&mut self, name: &'static str, why: &'static str) -> R<T> {
        let s = self.raw_text(name)?;
        s.trim().parse().map_err(|_| {
            self.err(Problem::InvalidValue {
                element: name,
                value: s,
                why,
            })
        })
    }

    fn cmd_id(&mut self) -> R<u32> {
        self.number("CmdID", "not a command id (a number)")
    }

    /// An empty marker element such as NoResp or Final: content is ignored.
    fn flag(&mut self, name: &'static str) -> R<bool> {
        self.raw_text(name)?;
        Ok(true)
    }

    fn unknown(&mut self, s: Start<'i>) -> R<Element> {
        Element::read_rest(s, &mut self.src)
    }

    // ----- message structure -----

    /// Reads `<SyncML>` and the whole `<SyncHdr>`, and enters `<SyncBody>`.
    pub(crate) fn read_head(&mut self) -> R<SyncHdr> {
        let root = loop {
            match self.src.next()? {
                Event::Start(s) => break s,
                Event::Text(t) if is_blank(&t) => {}
                Event::Eof => return Err(self.err(Problem::NoRoot)),
                _ => return Err(self.err(Problem::UnexpectedText("the document"))),
            }
        };
        if root.name != "SyncML" {
            return Err(self.err(Problem::NotSyncMl(root.name.into_owned())));
        }
        let mut hdr = None;
        while let Some(s) = self.child("SyncML")? {
            match &*s.name {
                "SyncHdr" if hdr.is_none() => hdr = Some(self.sync_hdr()?),
                "SyncBody" => {
                    return hdr.ok_or_else(|| {
                        self.err(Problem::Missing {
                            element: "SyncHdr",
                            parent: "SyncML",
                        })
                    })
                }
                _ => {
                    return Err(self.err(Problem::Unexpected {
                        element: s.name.into_owned(),
                        parent: "SyncML",
                    }))
                }
            }
        }
        Err(self.err(Problem::Missing {
            element: "SyncBody",
            parent: "SyncML",
        }))
    }

    /// The next command of the body; `Ok(None)` once `</SyncBody>` is reached (with
    /// `final_seen` set if `<Final/>` came).
    pub(crate) fn next_command(&mut self, final_seen: &mut bool) -> R<Option<Command>> {
        while let Some(s) = self.child("SyncBody")? {
            if s.name == "Final" {
                *final_seen = self.flag("Final")?;
                continue;
            }
            return self.command(s).map(Some);
        }
        Ok(None)
    }

    /// After `</SyncBody>`: the root must close and the document end.
    pub(crate) fn read_tail(&mut self) -> R<()> {
        if let Some(s) = self.child("SyncML")? {
            return Err(self.err(Problem::Unexpected {
                element: s.name.into_owned(),
                parent: "SyncML",
            }));
        }
        loop {
            match self.src.next()? {
                Event::Eof => return Ok(()),
                Event::Text(t) if is_blank(&t) => {}
                _ => return Err(self.err(Problem::TrailingContent)),
            }
        }
    }

    /// The whole message.
    pub(crate) fn message(&mut self) -> R<SyncMl> {
        let hdr = self.read_head()?;
        let mut body = SyncBody::default();
        while let Some(c) = self.next_command(&mut body.is_final)? {
            body.commands.push(c);
        }
        self.read_tail()?;
        Ok(SyncMl { hdr, body })
    }

    fn sync_hdr(&mut self) -> R<SyncHdr> {
        let (mut ver_dtd, mut ver_proto, mut session_id, mut msg_id) = (None, None, None, None);
        let (mut target, mut source) = (None, None);
        let mut hdr = SyncHdr {
            ver_dtd: String::new(),
            ver_proto: String::new(),
            session_id: String::new(),
            msg_id: 0,
            target: Location::default(),
            source: Location::default(),
            resp_uri: None,
            no_resp: false,
            cred: None,
            meta: None,
            extra: Vec::new(),
        };
        while let Some(s) = self.child("SyncHdr")? {
            match &*s.name {
                "VerDTD" => ver_dtd = Some(self.text("VerDTD")?),
                "VerProto" => ver_proto = Some(self.text("VerProto")?),
                "SessionID" => session_id = Some(self.text("SessionID")?),
                "MsgID" => msg_id = Some(self.number("MsgID", "not a message id (a number)")?),
                "Target" => target = Some(self.location("Target")?),
                "Source" => source = Some(self.location("Source")?),
                "RespURI" => hdr.resp_uri = Some(self.text("RespURI")?),
                "NoResp" => hdr.no_resp = self.flag("NoResp")?,
                "Cred" => hdr.cred = Some(self.cred()?),
                "Meta" => hdr.meta = Some(self.meta()?),
                _ => {
                    let e = self.unknown(s)?;
                    hdr.extra.push(e)
                }
            }
        }
        let missing = |p: &Self, element| {
            p.err(Problem::Missing {
                element,
                parent: "SyncHdr",
            })
        };
        hdr.ver_dtd = ver_dtd.ok_or_else(|| missing(self, "VerDTD"))?;
        hdr.ver_proto = ver_proto.ok_or_else(|| missing(self, "VerProto"))?;
        hdr.session_id = session_id.ok_or_else(|| missing(self, "SessionID"))?;
        hdr.msg_id = msg_id.ok_or_else(|| missing(self, "MsgID"))?;
        hdr.target = target.ok_or_else(|| missing(self, "Target"))?;
        hdr.source = source.ok_or_else(|| missing(self, "Source"))?;
        Ok(hdr)
    }

    fn location(&mut self, name: &'static str) -> R<Location> {
        let mut loc = Location::default();
        let mut uri = None;
        while let Some(s) = self.child(name)? {
            match &*s.name {
                "LocURI" => uri = Some(self.text("LocURI")?),
                "LocName" => loc.loc_name = Some(self.raw_text("LocName")?),
                _ => {
                    let e = self.unknown(s)?;
                    loc.extra.push(e)
                }
            }
        }
        loc.loc_uri = uri.ok_or_else(|| {
            self.err(Problem::Missing {
                element: "LocURI",
                parent: name,
            })
        })?;
        Ok(loc)
    }

    fn meta(&mut self) -> R<Box<Meta>> {
        let mut m = Meta::default();
        while let Some(s) = self.child("Meta")? {
            match &*s.name {
                "Format" => m.format = Some(self.text("Format")?),
                "Type" => m.type_ = Some(self.text("Type")?),
                "Mark" => m.mark = Some(self.text("Mark")?),
                "Size" => m.size = Some(self.number("Size", "not a size in bytes")?),
                "Version" => m.version = Some(self.text("Version")?),
                "NextNonce" => m.next_nonce = Some(self.text("NextNonce")?),
                "MaxMsgSize" => {
                    m.max_msg_size = Some(self.number("MaxMsgSize", "not a size in bytes")?)
                }
                "MaxObjSize" => {
                    m.max_obj_size = Some(self.number("MaxObjSize", "not a size in bytes")?)
                }
                "EMI" => {
                    let t = self.raw_text("EMI")?;
                    m.emi.push(t)
                }
                _ => {
                    let e = self.unknown(s)?;
                    m.extra.push(e)
                }
            }
        }
        Ok(Box::new(m))
    }

    fn cred(&mut self) -> R<Cred> {
        let mut c = Cred::default();
        while let Some(s) = self.child("Cred")? {
            match &*s.name {
                "Meta" => c.meta = Some(self.meta()?),
                "Data" => c.data = self.text("Data")?,
                _ => {
                    // Cred has no room for extensions; skip what it cannot hold.
                    self.unknown(s)?;
                }
            }
        }
        Ok(c)
    }

    fn chal(&mut self) -> R<Chal> {
        let mut c = Chal::default();
        while let Some(s) = self.child("Chal")? {
            match &*s.name {
                "Meta" => c.meta = self.meta()?,
                _ => {
                    self.unknown(s)?;
                }
            }
        }
        Ok(c)
    }

    fn item(&mut self) -> R<Item> {
        self.count()?;
        let mut it = Item::default();
        while let Some(s) = self.child("Item")? {
            match &*s.name {
                "Target" => it.target = Some(self.location("Target")?),
                "Source" => it.source = Some(self.location("Source")?),
                "Meta" => it.meta = Some(self.meta()?),
                "Data" => {
                    let d = self.data()?;
                    it.data.push(d)
                }
                "MoreData" => it.more_data = self.flag("MoreData")?,
                _ => {
                    let e = self.unknown(s)?;
                    it.extra.push(e)
                }
            }
        }
        Ok(it)
    }

    /// Data content: text, opaque bytes, or elements (embedded TNDS).
    fn data(&mut self) -> R<Data> {
        // The common case, one text run, without collecting pieces.
        let first = match self.src.next()? {
            Event::End => return Ok(Data::Text(String::new())),
            Event::Text(t) => match self.src.next()? {
                Event::End => return Ok(Data::Text(t.into_owned())),
                next => vec![Piece::Text(t), self.piece(next)?],
            },
            other => vec![self.piece(other)?],
        };
        let mut pieces = first;
        loop {
            match self.src.next()? {
                Event::End => break,
                other => {
                    let p = self.piece(other)?;
                    pieces.push(p)
                }
            }
        }
        Ok(Piece::combine(pieces))
    }

    fn piece(&mut self, ev: Event<'i>) -> R<Piece<'i>> {
        Ok(match ev {
            Event::Text(t) => Piece::Text(t),
            Event::Opaque(b) => Piece::Opaque(b),
            Event::Start(s) => Piece::Element(self.unknown(s)?),
            Event::End | Event::Eof => return Err(self.err(Problem::Truncated("an element"))),
        })
    }

    // ----- commands -----

    fn command(&mut self, s: Start<'i>) -> R<Command> {
        self.count()?;
        let name = &*s.name;
        if let Some(&(n, make)) = ITEM_COMMANDS.iter().find(|(n, _)| *n == name) {
            return Ok(make(self.item_cmd(n)?));
        }
        match name {
            "Alert" => self.alert().map(Command::Alert),
            "Atomic" => self.container("Atomic").map(Command::Atomic),
            "Sequence" => self.container("Sequence").map(Command::Sequence),
            "Status" => self.status().map(Command::Status),
            "Results" => self.results().map(Command::Results),
            _ => self.unknown(s).map(Command::Unknown),
        }
    }

    fn item_cmd(&mut self, name: &'static str) -> R<ItemCmd> {
        let mut c = ItemCmd::default();
        let mut id = None;
        while let Some(s) = self.child(name)? {
            match &*s.name {
                "CmdID" => id = Some(self.cmd_id()?),
                "NoResp" => c.no_resp = self.flag("NoResp")?,
                "Lang" => c.lang = Some(self.text("Lang")?),
                "Cred" => c.cred = Some(self.cred()?),
                "Meta" => c.meta = Some(self.meta()?),
                "Correlator" => c.correlator = Some(self.text("Correlator")?),
                "Item" => {
                    let it = self.item()?;
                    c.items.push(it)
                }
                _ => {
                    let e = self.unknown(s)?;
                    c.extra.push(e)
                }
            }
        }
        c.cmd_id = self.required(id, "CmdID", name)?;
        Ok(c)
    }

    fn required<T>(&self, v: Option<T>, element: &'static str, parent: &'static str) -> R<T> {
        v.ok_or_else(|| self.err(Problem::Missing { element, parent }))
    }

    fn alert(&mut self) -> R<Alert> {
        let mut a = Alert {
            cmd_id: 0,
            no_resp: false,
            cred: None,
            data: None,
            correlator: None,
            items: Vec::new(),
            extra: Vec::new(),
        };
        let mut id = None;
        while let Some(s) = self.child("Alert")? {
            match &*s.name {
                "CmdID" => id = Some(self.cmd_id()?),
                "NoResp" => a.no_resp = self.flag("NoResp")?,
                "Cred" => a.cred = Some(self.cred()?),
                "Data" => {
                    let n: u16 = self.number("Data", "not an alert code")?;
                    a.data = Some(AlertCode::from(n))
                }
                "Correlator" => a.correlator = Some(self.text("Correlator")?),
                "Item" => {
                    let it = self.item()?;
                    a.items.push(it)
                }
                _ => {
                    let e = self.unknown(s)?;
                    a.extra.push(e)
                }
            }
        }
        a.cmd_id = self.required(id, "CmdID", "Alert")?;
        Ok(a)
    }

    fn container(&mut self, name: &'static str) -> R<Container> {
        let mut c = Container::default();
        let mut id = None;
        while let Some(s) = self.child(name)? {
            match &*s.name {
                "CmdID" => id = Some(self.cmd_id()?),
                "NoResp" => c.no_resp = self.flag("NoResp")?,
                "Meta" => c.meta = Some(self.meta()?),
                _ => {
                    let cmd = self.command(s)?;
                    c.commands.push(cmd)
                }
            }
        }
        c.cmd_id = self.required(id, "CmdID", name)?;
        Ok(c)
    }

    fn status(&mut self) -> R<Status> {
        let mut st = Status {
            cmd_id: 0,
            msg_ref: None,
            cmd_ref: 0,
            cmd: String::new(),
            target_ref: Vec::new(),
            source_ref: Vec::new(),
            cred: None,
            chal: None,
            data: StatusCode::Ok,
            items: Vec::new(),
            extra: Vec::new(),
        };
        let (mut id, mut cmd_ref, mut cmd, mut data) = (None, None, None, None);
        while let Some(s) = self.child("Status")? {
            match &*s.name {
                "CmdID" => id = Some(self.cmd_id()?),
                "MsgRef" => st.msg_ref = Some(self.number("MsgRef", "not a message id")?),
                "CmdRef" => cmd_ref = Some(self.number("CmdRef", "not a command id")?),
                "Cmd" => cmd = Some(self.text("Cmd")?),
                "TargetRef" => {
                    let r = self.text("TargetRef")?;
                    st.target_ref.push(r)
                }
                "SourceRef" => {
                    let r = self.text("SourceRef")?;
                    st.source_ref.push(r)
                }
                "Cred" => st.cred = Some(self.cred()?),
                "Chal" => st.chal = Some(self.chal()?),
                "Data" => {
                    let n: u16 = self.number("Data", "not a status code")?;
                    data = Some(StatusCode::from(n))
                }
                "Item" => {
                    let it = self.item()?;
                    st.items.push(it)
                }
                _ => {
                    let e = self.unknown(s)?;
                    st.extra.push(e)
                }
            }
        }
        st.cmd_id = self.required(id, "CmdID", "Status")?;
        st.cmd_ref = self.required(cmd_ref, "CmdRef", "Status")?;
        st.cmd = self.required(cmd, "Cmd", "Status")?;
        st.data = self.required(data, "Data", "Status")?;
        Ok(st)
    }

    fn results(&mut self) -> R<Results> {
        let mut r = Results {
            cmd_id: 0,
            msg_ref: None,
            cmd_ref: 0,
            meta: None,
            target_ref: Vec::new(),
            source_ref: Vec::new(),
            items: Vec::new(),
            extra: Vec::new(),
        };
        let (mut id, mut cmd_ref) = (None, None);
        while let Some(s) = self.child("Results")? {
            match &*s.name {
                "CmdID" => id = Some(self.cmd_id()?),
                "MsgRef" => r.msg_ref = Some(self.number("MsgRef", "not a message id")?),
                "CmdRef" => cmd_ref = Some(self.number("CmdRef", "not a command id")?),
                "Meta" => r.meta = Some(self.meta()?),
                "TargetRef" => {
                    let t = self.text("TargetRef")?;
                    r.target_ref.push(t)
                }
                "SourceRef" => {
                    let t = self.text("SourceRef")?;
                    r.source_ref.push(t)
                }
                "Item" => {
                    let it = self.item()?;
                    r.items.push(it)
                }
                _ => {
                    let e = self.unknown(s)?;
                    r.extra.push(e)
                }
            }
        }
        r.cmd_id = self.required(id, "CmdID", "Results")?;
        r.cmd_ref = self.required(cmd_ref, "CmdRef", "Results")?;
        Ok(r)
    }
}

/// One run of Data content, in document order.
enum Piece<'i> {
    Text(Cow<'i, str>),
    Opaque(Cow<'i, [u8]>),
    Element(Element),
}

impl Piece<'_> {
    /// White space that is layout. A CR cannot be layout: XML readers turn literal
    /// CRs into LFs, so a CR here was written as `&#13;` on purpose.
    fn is_layout(&self) -> bool {
        matches!(self, Piece::Text(t) if is_blank(t) && !t.contains('\r'))
    }

    /// Data from its pieces. Elements make element content (white space between
    /// them is layout). Otherwise, with opaque runs (CDATA), white space before the
    /// first and after the last run is layout, and text between runs is part of the
    /// data (an XML writer puts a CR between CDATA sections as `&#13;`); any
    /// non-blank text makes the whole character data.
    fn combine(mut pieces: Vec<Piece<'_>>) -> Data {
        if pieces.iter().any(|p| matches!(p, Piece::Element(_))) {
            let mut nodes: Vec<Node> = Vec::new();
            for p in pieces {
                match p {
                    Piece::Element(e) => nodes.push(Node::Element(e)),
                    Piece::Text(t) if is_blank(&t) => {}
                    Piece::Text(t) => match nodes.last_mut() {
                        Some(Node::Text(prev)) => prev.push_str(&t),
                        _ => nodes.push(Node::Text(t.into_owned())),
                    },
                    Piece::Opaque(b) => match nodes.last_mut() {
                        Some(Node::Opaque(prev)) => prev.extend_from_slice(&b),
                        _ => nodes.push(Node::Opaque(b.into_owned())),
                    },
                }
            }
            return Data::Nodes(nodes);
        }
        if pieces.iter().any(|p| matches!(p, Piece::Opaque(_))) {
            // One drain, not repeated removals: hostile input can hold many runs.
            let lead = pieces.iter().take_while(|p| p.is_layout()).count();
            pieces.drain(..lead);
            while pieces.last().is_some_and(Piece::is_layout) {
                pieces.pop();
            }
        }
        let any_text = pieces
            .iter()
            .any(|p| matches!(p, Piece::Text(t) if !is_blank(t)));
        let mut bytes = Vec::new();
        for p in &pieces {
            match p {
                Piece::Text(t) => bytes.extend_from_slice(t.as_bytes()),
                Piece::Opaque(b) => bytes.extend_from_slice(b),
                Piece::Element(_) => {}
            }
        }
        let has_opaque = pieces.iter().any(|p| matches!(p, Piece::Opaque(_)));
        if has_opaque && !any_text {
            return Data::Opaque(bytes);
        }
        match String::from_utf8(bytes) {
            // A NUL can only have come from an opaque run (no text carries one), and
            // no encoding writes a NUL inside text: keep the runs apart then too
            // (found by fuzzing: the joined text could not be written as WBXML).
            Ok(t) if !t.contains('\0') => Data::Text(t),
            // Text mixed with non-UTF-8 opaque runs: keep each run as it came.
            _ => Data::Nodes(
                pieces
                    .into_iter()
                    .map(|p| match p {
                        Piece::Text(t) => Node::Text(t.into_owned()),
                        Piece::Opaque(b) => Node::Opaque(b.into_owned()),
                        Piece::Element(e) => Node::Element(e),
                    })
                    .collect(),
            ),
        }
    }
}

fn append<'i>(acc: &mut Option<Cow<'i, str>>, t: Cow<'i, str>) {
    match acc {
        None => *acc = Some(t),
        Some(prev) => prev.to_mut().push_str(&t),
    }
}

/// Reads a message one command at a time, so that a large package can be examined
/// or transcoded without holding it whole.
///
/// ```
/// # let bytes = syncml_core::encode(&syncml_core::MessageBuilder::client(
/// #     syncml_core::DmVersion::V1_2, "1", "dev", "srv").finish(),
/// #     syncml_core::Encoding::Xml).unwrap();
/// let mut r = syncml_core::MessageReader::new(&bytes, syncml_core::Limits::default())?;
/// assert_eq!(r.header().source.loc_uri, "dev");
/// while let Some(cmd) = r.next_command()? {
///     println!("{} {}", cmd.cmd_id(), cmd.name());
/// }
/// assert!(r.is_final());
/// # Ok::<(), syncml_core::Error>(())
/// ```
pub struct MessageReader<'i> {
    parser: Parser<'i, AnySource<'i>>,
    hdr: SyncHdr,
    is_final: bool,
    done: bool,
}

impl<'i> MessageReader<'i> {
    /// Detects the encoding from the first bytes and reads the header.
    pub fn new(input: &'i [u8], limits: Limits) -> Result<Self, Error> {
        let enc = Encoding::detect(input)?;
        Self::with_encoding(input, enc, limits)
    }

    /// Reads the header of a message in a known encoding.
    pub fn with_encoding(input: &'i [u8], enc: Encoding, limits: Limits) -> Result<Self, Error> {
        let src = AnySource::new(input, enc, limits)?;
        let mut parser = Parser::new(src, limits);
        let hdr = parser.read_head()?;
        Ok(MessageReader {
            parser,
            hdr,
            is_final: false,
            done: false,
        })
    }

    /// The message header.
    pub fn header(&self) -> &SyncHdr {
        &self.hdr
    }

    /// The WBXML header, when the input was WBXML.
    pub fn wbxml_header(&self) -> Option<&crate::wbxml::Header> {
        match self.parser.source() {
            AnySource::Wbxml(r) => Some(r.header()),
            AnySource::Xml(_) => None,
        }
    }

    /// The next command, or `None` after the last one (the rest of the document is
    /// then checked).
    pub fn next_command(&mut self) -> Result<Option<Command>, Error> {
        if self.done {
            return Ok(None);
        }
        match self.parser.next_command(&mut self.is_final)? {
            Some(c) => Ok(Some(c)),
            None => {
                self.done = true;
                self.parser.read_tail()?;
                Ok(None)
            }
        }
    }

    /// Whether `<Final/>` has been seen (complete once `next_command` gave `None`).
    pub fn is_final(&self) -> bool {
        self.is_final
    }

    /// Takes the header out (for a caller done with the reader).
    pub fn into_header(self) -> SyncHdr {
        self.hdr
    }
}
