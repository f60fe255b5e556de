//! The WBXML pull parser.

use std::borrow::Cow;

use super::token::*;
use super::{mbint, Header, PublicId};
use super::{CHARSET_LATIN1, CHARSET_UNKNOWN, CHARSET_US_ASCII, CHARSET_UTF8};
use crate::error::{Error, Problem};
use crate::event::{Attr, Event, Namespace, Source, Start};
use crate::limits::Limits;
use crate::tags;

use crate::event::DocState as State;

/// A pull parser over one WBXML document. See [`Source`].
///
/// Text comes as `Cow::Borrowed` slices of the input unless a conversion is needed
/// (ISO-8859-1 input, ENTITY tokens). Elements without content (a bare tag token)
/// give `Start` directly followed by `End`.
pub struct WbxmlReader<'i> {
    input: &'i [u8],
    pos: usize,
    limits: Limits,
    header: Header,
    /// The string table.
    table: &'i [u8],
    /// Strings are ISO-8859-1 and must be converted.
    latin1: bool,
    /// The current tag code page.
    tag_page: u8,
    /// The current attribute code page (a separate state in WBXML).
    attr_page: u8,
    /// The namespaces of the open elements.
    stack: Vec<Namespace>,
    /// The last `Start` was a tag without content: its `End` comes next.
    pending_end: bool,
    state: State,
    /// Where the last returned event began.
    last: usize,
    /// The first error, returned again by every later call.
    failed: Option<Error>,
}

impl<'i> WbxmlReader<'i> {
    /// Parses the header (version, public id, charset, string table) of `input`.
    pub fn new(input: &'i [u8], limits: Limits) -> Result<Self, Error> {
        limits.check_input(input)?;
        let version = input.first().copied().unwrap_or_default();
        if !(0x01..=0x03).contains(&version) {
            return Err(Error::decode(0, Problem::WbxmlVersion(version)));
        }
        let mut pos = 1;
        let pid = mbint::read(input, &mut pos)?;
        // Public id 0: an index into the string table follows.
        let pid_index = if pid == 0 {
            let at = pos;
            Some((mbint::read(input, &mut pos)?, at))
        } else {
            None
        };
        let charset_at = pos;
        let charset = mbint::read(input, &mut pos)?;
        let latin1 = match charset {
            CHARSET_UTF8 | CHARSET_US_ASCII | CHARSET_UNKNOWN => false,
            CHARSET_LATIN1 => true,
            n => return Err(Error::decode(charset_at, Problem::Charset(n))),
        };
        let len_at = pos;
        let table_len = mbint::read(input, &mut pos)?;
        let remaining = input.len() - pos;
        if table_len as usize > remaining {
            return Err(Error::decode(
                len_at,
                Problem::LengthTooLarge {
                    len: u64::from(table_len),
                    remaining,
                },
            ));
        }
        let table_end = pos + table_len as usize;
        let table = input.get(pos..table_end).unwrap_or_default();
        pos = table_end;

        let mut reader = WbxmlReader {
            input,
            pos,
            limits,
            header: Header {
                version,
                public_id: PublicId::Numeric(pid),
                charset,
            },
            table,
            latin1,
            tag_page: 0,
            attr_page: 0,
            stack: Vec::new(),
            pending_end: false,
            state: State::Prolog,
            last: pos,
            failed: None,
        };
        if let Some((index, at)) = pid_index {
            let text = reader.table_string(index, at)?;
            reader.header.public_id = PublicId::Text(text.into_owned());
        }
        Ok(reader)
    }

    /// The document header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The string table (raw bytes).
    pub fn string_table(&self) -> &'i [u8] {
        self.table
    }

    fn err<T>(&self, at: usize, problem: Problem) -> Result<T, Error> {
        Err(Error::decode(at, problem))
    }

    /// The byte at `pos`, advancing past it; `what` names the construct for a
    /// truncation error.
    fn byte(&mut self, what: &'static str) -> Result<u8, Error> {
        match self.input.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => self.err(self.input.len(), Problem::Truncated(what)),
        }
    }

    fn mb(&mut self) -> Result<u32, Error> {
        mbint::read(self.input, &mut self.pos)
    }

    fn check_len(&self, len: usize, at: usize) -> Result<(), Error> {
        if let Err(p) = self.limits.check_string(len) {
            return self.err(at, p);
        }
        Ok(())
    }

    /// Decodes string bytes that start at input offset `at`.
    fn decode(&self, bytes: &'i [u8], at: usize) -> Result<Cow<'i, str>, Error> {
        if self.latin1 {
            if bytes.is_ascii() {
                // ASCII is the same in both; no copy needed.
                return Ok(Cow::Borrowed(
                    std::str::from_utf8(bytes).unwrap_or_default(),
                ));
            }
            return Ok(Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()));
        }
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(Cow::Borrowed(s)),
            Err(e) => self.err(at.saturating_add(e.valid_up_to()), Problem::InvalidUtf8),
        }
    }

    /// The NUL-terminated string at `index` in the string table; `at` is where the
    /// index was read (for errors).
    fn table_string(&self, index: u32, at: usize) -> Result<Cow<'i, str>, Error> {
        let bad = || {
            Error::decode(
                at,
                Problem::StringTableIndex {
                    index,
                    len: self.table.len(),
                },
            )
        };
        let rest = self.table.get(index as usize..).ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        let nul = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
        self.check_len(nul, at)?;
        let bytes = rest.get(..nul).ok_or_else(bad)?;
        // Invalid UTF-8 inside the table is reported at the index that refers to it.
        self.decode(bytes, at).map_err(|e| match e {
            Error::Decode { problem, .. } => Error::decode(at, problem),
            other => other,
        })
    }

    /// A string-table reference (mb_u_int32 index) at `pos`.
    fn table_ref(&mut self) -> Result<Cow<'i, str>, Error> {
        let at = self.pos;
        let index = self.mb()?;
        self.table_string(index, at)
    }

    /// An inline NUL-terminated string at `pos` (after the STR_I token).
    fn inline_string(&mut self, token_at: usize) -> Result<Cow<'i, str>, Error> {
        let start = self.pos;
        let rest = self.input.get(start..).unwrap_or_default();
        let Some(nul) = rest.iter().position(|&b| b == 0) else {
            return self.err(self.input.len(), Problem::Truncated("an inline string"));
        };
        self.check_len(nul, token_at)?;
        let bytes = rest.get(..nul).unwrap_or_default();
        self.pos = start + nul + 1;
        self.decode(bytes, start)
    }

    /// An ENTITY (after the token): one character.
    fn entity(&mut self) -> Result<char, Error> {
        let at = self.pos;
        let n = self.mb()?;
        match char::from_u32(n) {
            Some(c) if n != 0 => Ok(c),
            _ => self.err(at, Problem::CharRef(n.to_string())),
        }
    }

    /// An OPAQUE block (after the token).
    fn opaque(&mut self, token_at: usize) -> Result<&'i [u8], Error> {
        let at = self.pos;
        let len = self.mb()?;
        let remaining = self.input.len() - self.pos;
        if len as usize > remaining {
            return self.err(
                at,
                Problem::LengthTooLarge {
                    len: u64::from(len),
                    remaining,
                },
            );
        }
        self.check_len(len as usize, token_at)?;
        let end = self.pos + len as usize;
        let data = self.input.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(data)
    }

    /// An attribute list (after a tag with the attribute bit, or a PI token), up to
    /// and including its END.
    fn attributes(&mut self) -> Result<Vec<Attr>, Error> {
        const WHAT: &str = "an attribute list";
        let mut attrs: Vec<Attr> = Vec::new();
        loop {
            let at = self.pos;
            let b = self.byte(WHAT)?;
            match b {
                SWITCH_PAGE => {
                    // Attribute pages are a state of their own. SyncML defines no
                    // attribute tokens, so any page is accepted here and only a token
                    // read on it fails.
                    self.attr_page = self.byte(WHAT)?;
                }
                END => return Ok(attrs),
                LITERAL => {
                    let name = self.table_ref()?.into_owned();
                    if name.is_empty() {
                        return self.err(
                            at,
                            Problem::UnsupportedToken("LITERAL with an empty name", b),
                        );
                    }
                    attrs.push(Attr {
                        name,
                        value: String::new(),
                    });
                }
                STR_I | STR_T | ENTITY | OPAQUE => {
                    let piece: Cow<'i, str> = match b {
                        STR_I => self.inline_string(at)?,
                        STR_T => self.table_ref()?,
                        ENTITY => Cow::Owned(self.entity()?.to_string()),
                        _ => {
                            let data = self.opaque(at)?;
                            self.decode(data, at)?
                        }
                    };
                    let limit = self.limits.max_string_len;
                    let Some(attr) = attrs.last_mut() else {
                        // A value with no attribute start before it.
                        return self.err(
                            at,
                            Problem::UnknownToken {
                                page: self.attr_page,
                                token: b,
                            },
                        );
                    };
                    let len = attr.value.len().saturating_add(piece.len());
                    if len > limit {
                        return self.err(at, Problem::StringTooLong { len, limit });
                    }
                    attr.value.push_str(&piece);
                }
                _ => {
                    if let Some(name) = ext_name(b) {
                        return self.err(at, Problem::UnsupportedToken(name, b));
                    }
                    if b == PI {
                        return self.err(at, Problem::UnsupportedToken("PI", b));
                    }
                    // Attribute start (< 0x80) or value (>= 0x80) tokens: SyncML
                    // defines none.
                    return self.err(
                        at,
                        Problem::UnknownToken {
                            page: self.attr_page,
                            token: b,
                        },
                    );
                }
            }
        }
    }

    /// Skips a processing instruction (after the PI token).
    fn skip_pi(&mut self) -> Result<(), Error> {
        self.attributes().map(|_| ())
    }

    /// Reads a tag at `at` (byte `b` already consumed) and returns its `Start`.
    fn tag(&mut self, b: u8, at: usize) -> Result<Event<'i>, Error> {
        if self.stack.len() >= self.limits.max_depth {
            return self.err(at, Problem::TooDeep(self.limits.max_depth));
        }
        let (ns, name): (Namespace, Cow<'i, str>) = if b & 0x3F == LITERAL {
            let name = self.table_ref()?;
            if name.is_empty() {
                // No writer can name an element "" (found by fuzzing the round trip).
                return self.err(
                    at,
                    Problem::UnsupportedToken("LITERAL with an empty name", b),
                );
            }
            let ns = self.stack.last().cloned().unwrap_or(Namespace::SyncMl);
            (ns, name)
        } else {
            let tok = b & 0x3F;
            let unknown = Problem::UnknownToken {
                page: self.tag_page,
                token: tok,
            };
            let name = tags::tag_name(self.tag_page, tok);
            let ns = tags::page_namespace(self.tag_page);
            match (name, ns) {
                (Some(name), Some(ns)) => (ns, Cow::Borrowed(name)),
                _ => return self.err(at, unknown),
            }
        };
        let attrs = if b & ATTRS != 0 {
            self.attributes()?
        } else {
            Vec::new()
        };
        self.stack.push(ns.clone());
        if b & CONTENT == 0 {
            self.pending_end = true;
        }
        if self.state == State::Prolog {
            self.state = State::Body;
        }
        self.last = at;
        Ok(Event::Start(Start { ns, name, attrs }))
    }

    fn close(&mut self) -> Event<'i> {
        self.stack.pop();
        if self.stack.is_empty() {
            self.state = State::Epilog;
        }
        Event::End
    }

    fn step(&mut self) -> Result<Event<'i>, Error> {
        if self.pending_end {
            self.pending_end = false;
            // `last` stays at the bare tag that implied this End.
            return Ok(self.close());
        }
        match self.state {
            State::Done => return Ok(Event::Eof),
            State::Epilog => {
                // `body = *pi element *pi`: processing instructions may follow.
                loop {
                    let at = self.pos;
                    match self.input.get(at) {
                        None => {
                            self.state = State::Done;
                            self.last = at;
                            return Ok(Event::Eof);
                        }
                        Some(&PI) => {
                            self.pos += 1;
                            self.skip_pi()?;
                        }
                        Some(_) => return self.err(at, Problem::TrailingContent),
                    }
                }
            }
            State::Prolog | State::Body => {}
        }
        loop {
            let at = self.pos;
            let Some(&b) = self.input.get(at) else {
                return if self.state == State::Prolog {
                    self.err(at, Problem::NoRoot)
                } else {
                    self.err(at, Problem::Truncated("an element"))
                };
            };
            self.pos += 1;
            let prolog = self.state == State::Prolog;
            match b {
                SWITCH_PAGE => {
                    let page_at = self.pos;
                    let page = self.byte("a SWITCH_PAGE")?;
                    if !tags::known_page(page) {
                        return self.err(page_at, Problem::UnknownCodePage(page));
                    }
                    self.tag_page = page;
                }
                END => {
                    if self.stack.is_empty() {
                        return self.err(at, Problem::UnbalancedEnd);
                    }
                    self.last = at;
                    return Ok(self.close());
                }
                PI => self.skip_pi()?,
                STR_I | STR_T | ENTITY | OPAQUE if prolog => {
                    return self.err(at, Problem::NoRoot);
                }
                STR_I => {
                    let s = self.inline_string(at)?;
                    if !s.is_empty() {
                        self.last = at;
                        return Ok(Event::Text(s));
                    }
                }
                STR_T => {
                    let s = self.table_ref()?;
                    if !s.is_empty() {
                        self.last = at;
                        return Ok(Event::Text(s));
                    }
                }
                ENTITY => {
                    let c = self.entity()?;
                    self.last = at;
                    return Ok(Event::Text(Cow::Owned(c.to_string())));
                }
                OPAQUE => {
                    let data = self.opaque(at)?;
                    if !data.is_empty() {
                        self.last = at;
                        return Ok(Event::Opaque(Cow::Borrowed(data)));
                    }
                }
                _ => {
                    if let Some(name) = ext_name(b) {
                        return self.err(at, Problem::UnsupportedToken(name, b));
                    }
                    return self.tag(b, at);
                }
            }
        }
    }
}

impl<'i> Source<'i> for WbxmlReader<'i> {
    fn next(&mut self) -> Result<Event<'i>, Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn offset(&self) -> usize {
        self.last
    }
}

impl std::fmt::Debug for WbxmlReader<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WbxmlReader")
            .field("header", &self.header)
            .field("pos", &self.pos)
            .field("depth", &self.stack.len())
            .finish()
    }
}
