//! The HTTP(S) transport that carries a session's messages (OMA DM HTTP binding).
//!
//! One [`HttpTransport::post`] per message: the body goes out with its media type,
//! `Accept` naming both DM encodings, and the `x-syncml-hmac` header when the session
//! authenticates with HMAC. Whatever status comes back is a [`Reply`], so that the
//! session engine decides what a 401 or 500 means; only failures to get a reply at
//! all (network, TLS, timeout, an oversized body) are errors. HTTP redirects are
//! not followed: a DM server moves a session with RespURI instead, and a redirected
//! POST would have to be re-signed.

use std::time::Duration;

use ureq::config::AutoHeaderValue;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::Agent;

/// The `Accept` header of every request.
pub const ACCEPT: &str = "application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml";

/// The HMAC header (request and response).
pub const HMAC_HEADER: &str = "x-syncml-hmac";

/// How the transport behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTransportConfig {
    /// The longest a whole exchange may take (connect, send, receive).
    pub timeout: Duration,
    /// The `User-Agent` header.
    pub user_agent: String,
    /// PEM certificates to trust as roots for HTTPS beside Mozilla's (a DM server
    /// of a private PKI).
    pub extra_root_certs_pem: Vec<Vec<u8>>,
    /// The largest response body accepted, in bytes.
    pub max_response: usize,
}

impl Default for HttpTransportConfig {
    fn default() -> HttpTransportConfig {
        HttpTransportConfig {
            timeout: Duration::from_secs(60),
            user_agent: concat!("dm-client/", env!("CARGO_PKG_VERSION")).to_owned(),
            extra_root_certs_pem: Vec::new(),
            max_response: 1024 * 1024,
        }
    }
}

/// What the server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    /// The `x-syncml-hmac` response header, to verify against the body.
    pub hmac: Option<String>,
    pub body: Vec<u8>,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Why no reply was obtained.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    #[error("bad URL: {0}")]
    BadUrl(String),
    #[error("a header value cannot be sent: {0}")]
    BadHeader(String),
    #[error("bad root certificate: {0}")]
    BadRootCert(String),
    #[error("timed out")]
    Timeout,
    #[error("TLS failure: {0}")]
    Tls(String),
    #[error("network failure: {0}")]
    Network(String),
    #[error("the response body exceeds the limit of {limit} bytes")]
    TooLarge { limit: usize },
}

/// Posts DM messages over HTTP or HTTPS. Connections are kept and reused.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    agent: Agent,
    max_response: usize,
}

impl HttpTransport {
    /// A transport with `config`; fails only on a root certificate that is not PEM.
    pub fn new(config: HttpTransportConfig) -> Result<HttpTransport, TransportError> {
        let roots =
            root_certs(&config.extra_root_certs_pem, true).map_err(TransportError::BadRootCert)?;
        let agent = agent(config.timeout, &config.user_agent, roots);
        Ok(HttpTransport {
            agent,
            max_response: config.max_response,
        })
    }

    /// Posts `body` to `url` as `content_type`, with `hmac` as the `x-syncml-hmac`
    /// header when given, and returns the reply whatever its status.
    pub fn post(
        &self,
        url: &str,
        content_type: &str,
        hmac: Option<&str>,
        body: &[u8],
    ) -> Result<Reply, TransportError> {
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", content_type)
            .header("Accept", ACCEPT);
        if let Some(h) = hmac {
            req = req.header(HMAC_HEADER, h);
        }
        let mut resp = req.send(body).map_err(|e| self.error(e, url))?;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let status = resp.status().as_u16();
        let content_type = header("Content-Type");
        let hmac = header(HMAC_HEADER);
        let body = read_body(&mut resp, self.max_response).map_err(|e| self.error(e, url))?;
        Ok(Reply {
            status,
            content_type,
            hmac,
            body,
        })
    }

    fn error(&self, e: ureq::Error, url: &str) -> TransportError {
        match classify(e, url) {
            Failure::BadUrl(s) => TransportError::BadUrl(s),
            Failure::BadHeader(s) => TransportError::BadHeader(s),
            Failure::Timeout => TransportError::Timeout,
            Failure::TooLarge => TransportError::TooLarge {
                limit: self.max_response,
            },
            Failure::Tls(s) => TransportError::Tls(s),
            Failure::Network(s) => TransportError::Network(s),
        }
    }
}

/// Reads a response body of at most `limit` bytes.
pub(crate) fn read_body(
    resp: &mut ureq::http::Response<ureq::Body>,
    limit: usize,
) -> Result<Vec<u8>, ureq::Error> {
    // ureq's limit refuses a body of exactly `limit` bytes (it cannot tell the end
    // from more to come), so allow one byte more and check here.
    let body = resp
        .body_mut()
        .with_config()
        .limit(limit as u64 + 1)
        .read_to_vec()?;
    if body.len() > limit {
        return Err(ureq::Error::BodyExceedsLimit(limit as u64));
    }
    Ok(body)
}

/// An agent that returns every status as a response, follows no redirect and asks
/// for no content encoding.
pub(crate) fn agent(timeout: Duration, user_agent: &str, roots: Option<RootCerts>) -> Agent {
    let mut tls = TlsConfig::builder();
    if let Some(roots) = roots {
        tls = tls.root_certs(roots);
    }
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .timeout_global(Some(timeout))
        .user_agent(user_agent)
        // No compressed replies: the HMAC of a reply covers the bytes as sent.
        .accept_encoding(AutoHeaderValue::None)
        .tls_config(tls.build())
        .build()
        .new_agent()
}

/// The roots HTTPS trusts: Mozilla's (when `public`) and the certificates of `pems`
/// (each PEM text may hold several). `None` when that is exactly the built-in set.
pub(crate) fn root_certs(pems: &[Vec<u8>], public: bool) -> Result<Option<RootCerts>, String> {
    if pems.is_empty() && public {
        return Ok(None);
    }
    let mut roots: Vec<Certificate<'static>> = Vec::new();
    if public {
        roots.extend(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .map(|c| Certificate::from_der(c.as_ref())),
        );
    }
    for (i, pem) in pems.iter().enumerate() {
        let before = roots.len();
        for item in ureq::tls::parse_pem(pem) {
            match item {
                Ok(PemItem::Certificate(c)) => roots.push(c),
                Ok(_) => {}
                Err(e) => return Err(format!("certificate {i}: {e}")),
            }
        }
        if roots.len() == before {
            return Err(format!("certificate {i}: no certificate in the PEM text"));
        }
    }
    Ok(Some(RootCerts::new_with_certs(&roots)))
}

/// What went wrong with an exchange, before each caller maps it to its error type.
pub(crate) enum Failure {
    BadUrl(String),
    BadHeader(String),
    Timeout,
    TooLarge,
    Tls(String),
    Network(String),
}

/// Sorts a ureq error from a request to `url`.
pub(crate) fn classify(e: ureq::Error, url: &str) -> Failure {
    use std::io::ErrorKind;
    let https = url
        .get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
    match e {
        // ureq hands rustls failures (an unknown issuer, a wrong name, a bad
        // handshake) over as I/O errors of this kind.
        ureq::Error::Io(io) if https && io.kind() == ErrorKind::InvalidData => {
            Failure::Tls(io.to_string())
        }
        ureq::Error::Timeout(_) => Failure::Timeout,
        ureq::Error::Io(io) if matches!(io.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => {
            Failure::Timeout
        }
        ureq::Error::BodyExceedsLimit(_) => Failure::TooLarge,
        ureq::Error::BadUri(s) => Failure::BadUrl(s),
        ureq::Error::Http(h) => {
            // An unparsable URI and an unsendable header both surface here.
            if h.is::<ureq::http::uri::InvalidUri>() || h.is::<ureq::http::uri::InvalidUriParts>() {
                Failure::BadUrl(h.to_string())
            } else {
                Failure::BadHeader(h.to_string())
            }
        }
        e @ (ureq::Error::Tls(_)
        | ureq::Error::Pem(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::TlsRequired) => Failure::Tls(e.to_string()),
        other => Failure::Network(other.to_string()),
    }
}
