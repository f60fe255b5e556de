//! The one error type of syncml-core.

use std::fmt;

/// Every way decoding or encoding can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input is not an acceptable message. `offset` is the byte in the input
    /// where the problem was found.
    #[error("at byte {offset}: {problem}")]
    Decode { offset: usize, problem: Problem },
    /// The value cannot be written in the requested encoding.
    #[error("cannot encode: {0}")]
    Encode(EncodeProblem),
    /// Credentials, an HMAC header or a nonce were refused or are malformed.
    #[error("authentication: {0}")]
    Auth(AuthProblem),
    /// A package #0 notification is malformed or its digest does not verify.
    #[error("notification: {0}")]
    Notification(NotificationProblem),
}

impl Error {
    /// A decode error at `offset`.
    pub fn decode(offset: usize, problem: Problem) -> Self {
        Error::Decode { offset, problem }
    }

    /// The byte offset of a decode error.
    pub fn offset(&self) -> Option<usize> {
        match self {
            Error::Decode { offset, .. } => Some(*offset),
            _ => None,
        }
    }

    /// The problem of a decode error.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Error::Decode { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

/// What is wrong with an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the input is empty")]
    Empty,
    #[error("the input ends early (truncated) inside {0}")]
    Truncated(&'static str),
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("elements nested deeper than the limit of {0}")]
    TooDeep(usize),
    #[error("string or data of {len} bytes exceeds the limit of {limit} bytes")]
    StringTooLong { len: usize, limit: usize },
    #[error("more than {0} commands and items")]
    TooManyItems(usize),
    #[error("invalid UTF-8 text")]
    InvalidUtf8,
    #[error("entity reference '&{0};' is not one of the five predefined entities; entities are never expanded")]
    Entity(String),
    #[error("invalid character reference '&#{0};'")]
    CharRef(String),
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("unsupported character encoding {0:?}")]
    XmlEncoding(String),
    #[error("unsupported WBXML version byte 0x{0:02X} (1.1 to 1.3 are supported)")]
    WbxmlVersion(u8),
    #[error("unsupported WBXML charset MIBenum {0}")]
    Charset(u32),
    #[error("invalid multi-byte integer (more than 32 bits)")]
    MbInt,
    #[error("unknown token 0x{token:02X} on code page {page}")]
    UnknownToken { page: u8, token: u8 },
    #[error("unsupported global token {0} (0x{1:02X})")]
    UnsupportedToken(&'static str, u8),
    #[error("unknown code page {0}")]
    UnknownCodePage(u8),
    #[error("string table index {index} out of range (the table has {len} bytes)")]
    StringTableIndex { index: u32, len: usize },
    #[error("length {len} is larger than the {remaining} bytes left in the input")]
    LengthTooLarge { len: u64, remaining: usize },
    #[error("END token with no open element")]
    UnbalancedEnd,
    #[error("content after the end of the root element")]
    TrailingContent,
    #[error("no root element")]
    NoRoot,
    #[error("the root element is <{0}>, not <SyncML>")]
    NotSyncMl(String),
    #[error("<{element}> is not allowed in <{parent}>")]
    Unexpected {
        element: String,
        parent: &'static str,
    },
    #[error("text is not allowed in <{0}>")]
    UnexpectedText(&'static str),
    #[error("<{parent}> lacks the required <{element}>")]
    Missing {
        element: &'static str,
        parent: &'static str,
    },
    #[error("<{element}> has an invalid value {value:?}: {why}")]
    InvalidValue {
        element: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("unknown media type {0:?}")]
    MediaType(String),
    #[error("the first bytes are neither XML nor WBXML")]
    UnknownEncoding,
}

/// Why a value cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeProblem {
    #[error("binary data that is not valid UTF-8 cannot be written as XML; use WBXML or base64 (Format b64)")]
    BinaryInXml,
    #[error("the character U+{0:04X} cannot be written in XML 1.0")]
    CharNotInXml(u32),
    #[error("the name {0:?} is not a valid XML name")]
    BadName(String),
    #[error("a string containing a NUL byte cannot be written as a WBXML inline string")]
    NulInString,
    #[error("end() without a matching start()")]
    UnbalancedEnd,
    #[error("the document is incomplete: {0} element(s) still open")]
    Unclosed(usize),
    #[error("{0}")]
    Invalid(String),
}

/// Why credentials, an HMAC header or a nonce were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthProblem {
    #[error("no credentials were sent")]
    Missing,
    #[error("unsupported authentication type {0:?}")]
    UnsupportedType(String),
    #[error("credential format {0:?} is not b64")]
    UnsupportedFormat(String),
    #[error("{what} is not valid base64")]
    NotBase64 { what: &'static str },
    #[error("basic credentials do not have the form user:password")]
    NotUserPassword,
    #[error("the credentials name user {got:?}, not {expected:?}")]
    WrongUser { expected: String, got: String },
    #[error("the credentials do not match (wrong password or nonce)")]
    Mismatch,
    #[error("{got} was used, but {expected} is required in this session")]
    WrongType {
        expected: &'static str,
        got: &'static str,
    },
    #[error("the authentication type cannot change within a session ({current} to {requested})")]
    TypeChange {
        current: &'static str,
        requested: &'static str,
    },
    #[error("a challenge for {0} carries no NextNonce")]
    NoNonce(&'static str),
    #[error("the credentials were refused with no challenge to answer")]
    NoChallenge,
    #[error("the peer asks for {requested}, weaker than the configured {configured}")]
    Downgrade {
        configured: &'static str,
        requested: &'static str,
    },
    #[error("no account for user {0:?}")]
    UnknownUser(String),
    #[error("too many refused attempts in this session")]
    TooManyAttempts,
    #[error("malformed x-syncml-hmac header: {0}")]
    HmacHeader(String),
    #[error("the stored key must be the base64 of a 16-byte MD5 digest")]
    BadStoredKey,
    #[error("the operating system's secure random generator failed: {0}")]
    Random(String),
}

/// What is wrong with a package #0 notification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationProblem {
    #[error("{len} bytes are too few: a notification has at least {min}")]
    Truncated { len: usize, min: usize },
    #[error("{len} bytes exceed the limit of {limit} bytes")]
    TooLarge { len: usize, limit: usize },
    #[error("the server id length says {declared} bytes but {available} follow the header")]
    LengthMismatch { declared: usize, available: usize },
    #[error("the server id is empty")]
    EmptyServerId,
    #[error("the server id is longer than 255 bytes ({0})")]
    ServerIdTooLong(usize),
    #[error("the server id is not UTF-8 text")]
    ServerIdNotText,
    #[error("reserved bits are not zero (0x{0:07X})")]
    ReservedBits(u32),
    #[error("unknown version {0} (11 and 12 are accepted)")]
    UnknownVersion(u16),
    #[error("session id 0 is not allowed (1 to FFFF)")]
    ZeroSessionId,
    #[error("the digest does not verify (wrong server password or nonce, or altered bytes)")]
    DigestMismatch,
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A one-line description of an error for command-line tools.
pub struct OneLine<'a>(pub &'a Error);

impl fmt::Display for OneLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.to_string();
        f.write_str(&s.replace('\n', " "))
    }
}
