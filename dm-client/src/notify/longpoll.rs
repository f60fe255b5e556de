//! HTTP long-poll for notifications, for devices behind NAT that no datagram or SMS
//! reaches.
//!
//! # Protocol
//!
//! The device asks the server for its next notification and the server holds the
//! request open until it has one or the wait runs out:
//!
//! ```text
//! GET {url}?devid={device id}&wait={seconds}
//! Accept: application/vnd.syncml.notification
//! ```
//!
//! Both query values are percent-encoded (`&` joins them to a query already in
//! `url`). The server answers:
//!
//! - `200 OK`, `Content-Type: application/vnd.syncml.notification`, the body one
//!   package #0 (at most [`MAX_SIZE`] bytes), signed exactly as if it were pushed.
//!   When several are pending the oldest goes first; the rest wait for the next polls.
//! - `204 No Content` when nothing arrived within `wait` seconds.
//! - Any other status is an error; the device backs off before polling again.
//!
//! The device does not trust the channel: it verifies the package #0 like any other
//! ([`verify`](super::verify)), then polls again. Its HTTP timeout is `wait` plus a
//! grace time (15 s unless set), so that a server answering 204 at the end of the
//! wait is heard before the device gives up.

use std::time::Duration;

use syncml_core::notify::{MAX_SIZE, MEDIA_TYPE};
use ureq::Agent;

use super::NotifyError;
use crate::transport::{self, Failure};

/// The grace time added to the wait for the HTTP timeout, unless set.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15);

/// A long-poll client for one device.
#[derive(Debug, Clone)]
pub struct LongPoll {
    url: String,
    wait: Duration,
    grace: Duration,
    agent: Agent,
    roots: Option<ureq::tls::RootCerts>,
}

impl LongPoll {
    /// Polls `url` for `device_id`, asking the server to hold each request up to
    /// `wait` (whole seconds are sent).
    pub fn new(url: &str, device_id: &str, wait: Duration) -> LongPoll {
        let sep = if url.contains('?') { '&' } else { '?' };
        let url = format!(
            "{url}{sep}devid={}&wait={}",
            percent_encode(device_id),
            wait.as_secs()
        );
        LongPoll {
            agent: agent(wait + DEFAULT_GRACE, None),
            url,
            wait,
            grace: DEFAULT_GRACE,
            roots: None,
        }
    }

    /// Sets the time allowed beyond the wait before the request times out.
    pub fn with_grace(mut self, grace: Duration) -> LongPoll {
        self.grace = grace;
        self.agent = agent(self.wait + grace, self.roots.clone());
        self
    }

    /// Trusts these PEM roots for HTTPS beside the public ones (as
    /// [`HttpTransportConfig::extra_root_certs_pem`](crate::transport::HttpTransportConfig)).
    pub fn with_root_certs_pem(mut self, pems: &[Vec<u8>]) -> Result<LongPoll, NotifyError> {
        self.roots = transport::root_certs(pems, true).map_err(NotifyError::BadRootCert)?;
        self.agent = agent(self.wait + self.grace, self.roots.clone());
        Ok(self)
    }

    /// The URL each poll requests.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// One poll: the package #0 the server sent (not yet verified), or `None` when
    /// nothing arrived within the wait.
    pub fn poll(&self) -> Result<Option<Vec<u8>>, NotifyError> {
        let mut resp = self
            .agent
            .get(&self.url)
            .header("Accept", MEDIA_TYPE)
            .call()
            .map_err(|e| error(e, &self.url))?;
        match resp.status().as_u16() {
            204 => return Ok(None),
            200 => {}
            other => return Err(NotifyError::Status(other)),
        }
        let content_type = resp
            .headers()
            .get("Content-Type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let is_package0 = content_type.as_deref().is_some_and(|t| {
            let media = t.split(';').next().unwrap_or_default();
            media.trim().eq_ignore_ascii_case(MEDIA_TYPE)
        });
        if !is_package0 {
            return Err(NotifyError::ContentType(content_type));
        }
        let body = transport::read_body(&mut resp, MAX_SIZE).map_err(|e| error(e, &self.url))?;
        Ok(Some(body))
    }
}

fn agent(timeout: Duration, roots: Option<ureq::tls::RootCerts>) -> Agent {
    let ua = concat!("dm-client/", env!("CARGO_PKG_VERSION"));
    transport::agent(timeout, ua, roots)
}

fn error(e: ureq::Error, url: &str) -> NotifyError {
    match transport::classify(e, url) {
        Failure::BadUrl(s) | Failure::BadHeader(s) => NotifyError::BadUrl(s),
        Failure::Timeout => NotifyError::Timeout,
        Failure::TooLarge => NotifyError::TooLarge { limit: MAX_SIZE },
        Failure::Tls(s) | Failure::Network(s) => NotifyError::Network(s),
    }
}

/// Percent-encodes everything but the unreserved characters of RFC 3986.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_encoded_and_joined() {
        let p = LongPoll::new("http://h/poll", "IMEI:35 1&x=ü", Duration::from_secs(30));
        assert_eq!(
            p.url(),
            "http://h/poll?devid=IMEI%3A35%201%26x%3D%C3%BC&wait=30"
        );
        let q = LongPoll::new("http://h/poll?t=1", "d", Duration::from_millis(1500));
        assert_eq!(q.url(), "http://h/poll?t=1&devid=d&wait=1");
    }
}
