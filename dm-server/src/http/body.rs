//! Request bodies read with a bound and a time limit.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::CONTENT_LENGTH;
use hyper::HeaderMap;

/// How long a client gets to send a whole body.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a body was not read.
#[derive(Debug)]
pub(crate) enum BodyError {
    /// Larger than the limit (HTTP 413).
    TooLarge,
    /// The connection broke (HTTP 400).
    Read(String),
    /// Not complete within [`BODY_TIMEOUT`] (HTTP 408).
    Timeout,
}

impl BodyError {
    /// The status to answer with, and a message.
    pub fn status(&self, limit: usize) -> (u16, String) {
        match self {
            BodyError::TooLarge => (413, format!("the body exceeds {limit} bytes")),
            BodyError::Read(e) => (400, format!("reading the body: {e}")),
            BodyError::Timeout => (408, "the body was not sent in time".into()),
        }
    }
}

/// The declared Content-Length, if any and valid.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads a whole body of at most `limit` bytes. A declared length over the limit is
/// refused before anything is read (and before `100 Continue` is sent); a streamed
/// body is refused as soon as it grows past the limit.
pub(crate) async fn read(
    headers: &HeaderMap,
    body: Incoming,
    limit: usize,
) -> Result<Bytes, BodyError> {
    if content_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(BodyError::TooLarge);
    }
    match tokio::time::timeout(BODY_TIMEOUT, collect(body, limit)).await {
        Ok(r) => r,
        Err(_) => Err(BodyError::Timeout),
    }
}

async fn collect(mut body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| BodyError::Read(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(BodyError::TooLarge);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
