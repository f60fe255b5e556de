//! The WSP push PDU that wraps a package #0 sent by WAP push (connectionless push to
//! UDP port 2948, or the same PDU in a WAP-push SMS).
//!
//! ```text
//! TID (1) | PDU type (1, 0x06 Push) | HeadersLen (uintvar)
//! | Content-Type + other headers (HeadersLen bytes) | data (the rest)
//! ```
//!
//! Only what locating the data needs is decoded: the header length and the
//! Content-Type at the start of the headers (WSP 8.4.2.24). The content type may be
//! a well-known short integer (0x44 is `application/vnd.syncml.notification`, sent
//! as the octet 0xC4), a text string, or the general form (a value length, then
//! either of those, then parameters, which are skipped). Other headers (such as
//! X-Wap-Application-Id) are not read.

use syncml_core::notify::MEDIA_TYPE;

/// The PDU type of a Push.
pub const PDU_PUSH: u8 = 0x06;

/// The well-known WSP content type code of `application/vnd.syncml.notification`.
pub const NOTIFICATION_CODE: u32 = 0x44;

/// Why bytes are not a WSP push PDU.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WspError {
    #[error("the PDU ends early (at byte {0})")]
    Truncated(usize),
    #[error("PDU type 0x{0:02X} is not a Push (0x06)")]
    NotPush(u8),
    #[error("a uintvar at byte {0} is longer than 32 bits")]
    BadUintvar(usize),
    #[error("the headers length {declared} exceeds the {available} bytes that follow")]
    HeadersTooLong { declared: usize, available: usize },
    #[error("the content type at byte {0} is malformed")]
    BadContentType(usize),
}

/// The content type of a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaType<'a> {
    /// A well-known content type code.
    WellKnown(u32),
    /// A content type spelled out as text.
    Named(&'a str),
}

impl MediaType<'_> {
    /// Whether this is `application/vnd.syncml.notification`.
    pub fn is_notification(&self) -> bool {
        match self {
            MediaType::WellKnown(code) => *code == NOTIFICATION_CODE,
            MediaType::Named(name) => name.trim().eq_ignore_ascii_case(MEDIA_TYPE),
        }
    }
}

/// A decoded push PDU, borrowing from the datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Push<'a> {
    /// The transaction id.
    pub tid: u8,
    pub content_type: MediaType<'a>,
    /// The pushed content: for a notification, the package #0.
    pub data: &'a [u8],
}

/// Decodes a connectionless WSP push PDU.
pub fn parse_push(pdu: &[u8]) -> Result<Push<'_>, WspError> {
    let [tid, kind, ..] = *pdu else {
        return Err(WspError::Truncated(pdu.len()));
    };
    if kind != PDU_PUSH {
        return Err(WspError::NotPush(kind));
    }
    let (headers_len, at) = uintvar(pdu, 2)?;
    let available = pdu.len() - at;
    let headers_len = headers_len as usize;
    if headers_len > available {
        return Err(WspError::HeadersTooLong {
            declared: headers_len,
            available,
        });
    }
    let headers = &pdu[at..at + headers_len];
    let content_type = content_type(headers).map_err(|off| WspError::BadContentType(at + off))?;
    Ok(Push {
        tid,
        content_type,
        data: &pdu[at + headers_len..],
    })
}

/// A uintvar (7 bits per octet, high bit set on all but the last, at most 5 octets)
/// at `at`: its value and the offset after it.
fn uintvar(bytes: &[u8], at: usize) -> Result<(u32, usize), WspError> {
    let mut value: u64 = 0;
    for pos in at..at + 5 {
        let b = *bytes.get(pos).ok_or(WspError::Truncated(pos))?;
        value = (value << 7) | u64::from(b & 0x7F);
        if b & 0x80 == 0 {
            let value = u32::try_from(value).map_err(|_| WspError::BadUintvar(at))?;
            return Ok((value, pos + 1));
        }
    }
    Err(WspError::BadUintvar(at))
}

/// The Content-Type at the start of `headers`; on error, the offset of the problem.
fn content_type(headers: &[u8]) -> Result<MediaType<'_>, usize> {
    let first = *headers.first().ok_or(0usize)?;
    match first {
        // Constrained-media as a short integer.
        0x80..=0xFF => Ok(MediaType::WellKnown(u32::from(first & 0x7F))),
        // Content-general-form: Value-length, then Media-type and parameters.
        0..=31 => {
            let (len, start) = if first == 31 {
                let (n, next) = uintvar(headers, 1).map_err(|_| 1usize)?;
                (n as usize, next)
            } else {
                (usize::from(first), 1)
            };
            let end = start
                .checked_add(len)
                .filter(|&e| e <= headers.len())
                .ok_or(0usize)?;
            media_type(&headers[start..end]).map_err(|off| start + off)
        }
        // Constrained-media as a text string.
        _ => text(headers).map(MediaType::Named),
    }
}

/// The Media-type of a general form: Well-known-media (short or long integer) or
/// Extension-media (text); the parameters after it are ignored.
fn media_type(value: &[u8]) -> Result<MediaType<'_>, usize> {
    let first = *value.first().ok_or(0usize)?;
    match first {
        0x80..=0xFF => Ok(MediaType::WellKnown(u32::from(first & 0x7F))),
        // A long integer: a length octet (1..=30), then big-endian bytes. A media
        // code never needs more than four.
        1..=4 => {
            let digits = value.get(1..1 + usize::from(first)).ok_or(0usize)?;
            let code = digits
                .iter()
                .fold(0u32, |acc, &d| (acc << 8) | u32::from(d));
            Ok(MediaType::WellKnown(code))
        }
        0..=31 => Err(0),
        _ => text(value).map(MediaType::Named),
    }
}

/// A Text-string: an optional quote (0x7F), ASCII text, a terminating zero.
fn text(bytes: &[u8]) -> Result<&str, usize> {
    let start = usize::from(bytes.first() == Some(&0x7F));
    let len = bytes[start..]
        .iter()
        .position(|&b| b == 0)
        .ok_or(bytes.len())?;
    std::str::from_utf8(&bytes[start..start + len]).map_err(|_| start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uintvar_values_and_limits() {
        assert_eq!(uintvar(&[0x05], 0), Ok((5, 1)));
        assert_eq!(uintvar(&[0x81, 0x00], 0), Ok((128, 2)));
        assert_eq!(
            uintvar(&[0x8F, 0xFF, 0xFF, 0xFF, 0x7F], 0),
            Ok((u32::MAX, 5))
        );
        assert_eq!(
            uintvar(&[0x90, 0x80, 0x80, 0x80, 0x00], 0),
            Err(WspError::BadUintvar(0))
        );
        assert_eq!(uintvar(&[0x81], 0), Err(WspError::Truncated(1)));
        assert_eq!(uintvar(&[0x80; 6], 0), Err(WspError::BadUintvar(0)));
        assert_eq!(uintvar(&[0xAA, 0x81, 0x02], 1), Ok((130, 3)));
    }

    #[test]
    fn content_type_forms() {
        assert_eq!(content_type(&[0xC4]), Ok(MediaType::WellKnown(0x44)));
        assert_eq!(
            content_type(b"application/vnd.syncml.notification\0"),
            Ok(MediaType::Named(MEDIA_TYPE))
        );
        // General form: length 3, short integer 0xC4, a parameter (charset utf-8).
        assert_eq!(
            content_type(&[3, 0xC4, 0x81, 0xEA]),
            Ok(MediaType::WellKnown(0x44))
        );
        // General form with a long integer.
        assert_eq!(
            content_type(&[3, 2, 0x02, 0x01]),
            Ok(MediaType::WellKnown(0x201))
        );
        // Length quote then uintvar length.
        assert_eq!(content_type(&[31, 1, 0xC4]), Ok(MediaType::WellKnown(0x44)));
        assert_eq!(content_type(&[5, 0xC4]), Err(0));
        assert_eq!(content_type(b"text/plain"), Err(10));
        assert_eq!(content_type(&[]), Err(0));
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_or_fail_without_panic(pdu in proptest::collection::vec(0u8..=255, 0..64)) {
            if let Ok(push) = parse_push(&pdu) {
                proptest::prop_assert!(push.data.len() <= pdu.len().saturating_sub(3));
            }
        }
    }

    #[test]
    fn push_pdu_parts() {
        let pdu = [0x01, 0x06, 0x03, 0xC4, 0xAF, 0x87, 0xAA, 0xBB];
        let push = parse_push(&pdu).unwrap();
        assert_eq!(push.tid, 1);
        assert!(push.content_type.is_notification());
        assert_eq!(push.data, &[0xAA, 0xBB]);
        assert_eq!(
            parse_push(&[0x01, 0x04, 0x01, 0xC4]),
            Err(WspError::NotPush(4))
        );
        assert_eq!(
            parse_push(&[0x01, 0x06, 0x09, 0xC4]),
            Err(WspError::HeadersTooLong {
                declared: 9,
                available: 1
            })
        );
        assert_eq!(parse_push(&[0x01]), Err(WspError::Truncated(1)));
        assert_eq!(
            parse_push(&[0x01, 0x06, 0x00]),
            Err(WspError::BadContentType(3))
        );
        assert!(!MediaType::WellKnown(0x2E).is_notification());
    }
}
