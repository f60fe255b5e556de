//! The download agent: fetches a firmware package (or an OMA download descriptor that
//! points to one) into a file, resuming an interrupted transfer with HTTP Range.
//!
//! The session engine never downloads: it hands a [`Request`] to the driver, which
//! runs a [`Downloader`] and passes the result back.
//!
//! - [`dd`]: the OMA Download OTA 1.0 download descriptor and its install-notify codes.
//! - [`part`]: the `<dest>.part` file and its sidecar, which let a later fetch resume.
//! - `http` (feature `http`): [`HttpDownloader`], the reference HTTP/HTTPS downloader.

use std::path::PathBuf;
use std::time::Duration;

pub mod dd;
#[cfg(feature = "http")]
mod http;
pub mod part;

#[cfg(feature = "http")]
pub use http::{HttpConfig, HttpDownloader};

/// What to fetch and where to put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The package URL or the URL of a download descriptor.
    pub url: String,
    /// The file that receives the package. Partial data lives beside it until the
    /// transfer is complete; `dest` appears only whole.
    pub dest: PathBuf,
    /// The largest package accepted, in bytes.
    pub max_size: u64,
    /// How long to wait for a connection or for the next bytes.
    pub timeout: Duration,
}

/// Progress of one download, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The transfer started, `resumed_from` bytes already on disk.
    Started {
        resumed_from: u64,
        total: Option<u64>,
    },
    /// More bytes arrived.
    Received { done: u64, total: Option<u64> },
}

/// A finished download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The URL the package bytes came from (the descriptor's objectURI, if any).
    pub url: String,
    /// The package length in bytes.
    pub len: u64,
    /// The media type the server gave for the package, if any.
    pub content_type: Option<String>,
    /// Whether part of it came from an earlier, interrupted attempt.
    pub resumed: bool,
}

/// Why a download failed. Each maps to a FUMO result code ([`DownloadError::fumo_result`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    /// The URL is malformed, not HTTP(S), or names nothing (HTTP 404/410).
    #[error("bad URL: {0}")]
    BadUrl(String),
    /// HTTP 401, 403 or 407.
    #[error("the download server refused the credentials (HTTP {0})")]
    Auth(u16),
    /// No connection or no bytes within the timeout.
    #[error("timed out")]
    Timeout,
    /// The host is unknown, refuses connections, or answers 503/429.
    #[error("download server unavailable: {0}")]
    Unavailable(String),
    /// HTTP 5xx other than 503.
    #[error("download server error: HTTP {0}")]
    Server(u16),
    /// The package (as announced or as received) exceeds [`Request::max_size`].
    #[error("package is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    /// The connection broke or the server spoke broken HTTP.
    #[error("network failure: {0}")]
    Network(String),
    /// The download descriptor is malformed, unsupported or points nowhere usable.
    #[error("bad download descriptor: {0}")]
    Descriptor(String),
    /// The package file cannot be written.
    #[error("cannot write the package: {0}")]
    Storage(String),
    /// Cancelled by the caller (see `HttpDownloader::cancel_handle`).
    #[error("cancelled")]
    Cancelled,
    /// Any other HTTP 4xx answer to the request.
    #[error("the download server refused the request: HTTP {0}")]
    Refused(u16),
    /// The server's TLS certificate is not trusted, or the handshake failed.
    #[error("TLS failure: {0}")]
    Tls(String),
    /// The bytes received differ in length from the download descriptor's size.
    #[error("package size {got} differs from the descriptor's {expected}")]
    SizeMismatch { expected: u64, got: u64 },
}

impl DownloadError {
    /// The FUMO result code (PROTOCOL.md section 8) that reports this failure in the
    /// final Alert 1226.
    pub fn fumo_result(&self) -> u16 {
        match self {
            Self::BadUrl(_) => 411,
            Self::Auth(_) | Self::Tls(_) => 406,
            Self::Timeout => 407,
            Self::Unavailable(_) => 412,
            Self::Server(_) => 500,
            Self::TooLarge { .. } | Self::Storage(_) => 501,
            Self::Network(_) => 503,
            Self::Descriptor(_) | Self::Refused(_) => 400,
            Self::Cancelled => 401,
            // The package did not arrive as described: corrupted in transfer.
            Self::SizeMismatch { .. } => 402,
        }
    }

    /// Whether another attempt may succeed where this one failed (the connection broke
    /// or stalled), so the transfer is retried and resumed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Network(_) | Self::Timeout)
    }

    /// The error for an HTTP status that is not a success.
    pub fn from_http_status(status: u16) -> Self {
        match status {
            401 | 403 | 407 => Self::Auth(status),
            404 | 410 => Self::BadUrl(format!("HTTP {status}")),
            408 => Self::Timeout,
            429 | 503 => Self::Unavailable(format!("HTTP {status}")),
            500..=599 => Self::Server(status),
            _ => Self::Refused(status),
        }
    }
}

/// Fetches packages.
pub trait Downloader {
    /// Fetches `req.url` into `req.dest`, reporting progress.
    fn fetch(
        &mut self,
        req: &Request,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Fetched, DownloadError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_statuses_map_to_fumo_results() {
        let cases = [
            (401, 406),
            (403, 406),
            (404, 411),
            (410, 411),
            (408, 407),
            (400, 400),
            (416, 400),
            (500, 500),
            (502, 500),
            (503, 412),
            (429, 412),
            (302, 400),
        ];
        for (status, fumo) in cases {
            assert_eq!(
                DownloadError::from_http_status(status).fumo_result(),
                fumo,
                "HTTP {status}"
            );
        }
    }

    #[test]
    fn error_kinds_map_to_fumo_results() {
        let cases = [
            (DownloadError::BadUrl("x".into()), 411),
            (DownloadError::Timeout, 407),
            (DownloadError::TooLarge { limit: 1 }, 501),
            (DownloadError::Storage("disk".into()), 501),
            (DownloadError::Network("reset".into()), 503),
            (DownloadError::Descriptor("bad".into()), 400),
            (DownloadError::Cancelled, 401),
            (DownloadError::Tls("unknown issuer".into()), 406),
            (
                DownloadError::SizeMismatch {
                    expected: 1,
                    got: 2,
                },
                402,
            ),
        ];
        for (err, fumo) in cases {
            assert_eq!(err.fumo_result(), fumo, "{err}");
        }
    }

    #[test]
    fn only_broken_transfers_are_retried() {
        assert!(DownloadError::Network("eof".into()).is_transient());
        assert!(DownloadError::Timeout.is_transient());
        assert!(!DownloadError::Server(500).is_transient());
        assert!(!DownloadError::TooLarge { limit: 1 }.is_transient());
        assert!(!DownloadError::Cancelled.is_transient());
    }
}
