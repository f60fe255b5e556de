//! The download agent: fetches a firmware package (or an OMA download descriptor that
//! points to one) into a file, resuming an interrupted transfer with HTTP Range.
//!
//! The session engine never downloads: it hands a [`Request`] to the driver, which
//! runs a [`Downloader`] and passes the result back.

use std::path::PathBuf;
use std::time::Duration;

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
    pub len: u64,
    pub content_type: Option<String>,
    /// Whether part of it came from an earlier, interrupted attempt.
    pub resumed: bool,
}

/// Why a download failed. Each maps to a FUMO result code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DownloadError {
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("the download server refused the credentials (HTTP {0})")]
    Auth(u16),
    #[error("timed out")]
    Timeout,
    #[error("download server unavailable: {0}")]
    Unavailable(String),
    #[error("download server error: HTTP {0}")]
    Server(u16),
    #[error("package is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("network failure: {0}")]
    Network(String),
    #[error("bad download descriptor: {0}")]
    Descriptor(String),
    #[error("cannot write the package: {0}")]
    Storage(String),
    #[error("cancelled")]
    Cancelled,
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
