//! A small HTTP/1.1 file server for tests, over plain TCP or TLS (rustls with a test CA
//! made by rcgen), on 127.0.0.1 with a thread per connection.
//!
//! Register a [`Route`] per path: a body with optional status, headers, ETag, Range
//! support, throttling, a mid-body stall, a connection drop after N bytes, or a delay
//! before the answer. Every request is logged (method, path, Range, If-Range, body)
//! for assertions. Each connection carries one request (`Connection: close`).
//! Dropping the [`Server`] shuts it down.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Plain HTTP or HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// What the server answers at one path.
#[derive(Debug, Clone)]
pub struct Route {
    body: Vec<u8>,
    status: u16,
    headers: Vec<(String, String)>,
    etag: Option<String>,
    ranges: bool,
    send_length: bool,
    throttle: Option<u64>,
    stall: Option<(u64, Duration)>,
    /// Close the connection after this many body bytes; `Some(n)` more times, or
    /// always when `None`.
    cut: Option<(u64, Option<u32>)>,
    delay: Option<Duration>,
}

impl Route {
    /// A `200` with `body`, honouring Range requests.
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            status: 200,
            headers: Vec::new(),
            etag: None,
            ranges: true,
            send_length: true,
            throttle: None,
            stall: None,
            cut: None,
            delay: None,
        }
    }

    /// Answers with `status` (and the body) instead; Range is then ignored.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets `Content-Type`.
    pub fn content_type(self, value: &str) -> Self {
        self.header("Content-Type", value)
    }

    /// Sends `ETag: "tag"`; an `If-Range` that differs gets the whole body.
    pub fn etag(mut self, tag: &str) -> Self {
        self.etag = Some(format!("\"{tag}\""));
        self
    }

    /// Ignores Range headers: always the whole body with `200`.
    pub fn ignore_range(mut self) -> Self {
        self.ranges = false;
        self
    }

    /// Sends no `Content-Length`: the body ends when the connection closes.
    pub fn no_length(mut self) -> Self {
        self.send_length = false;
        self
    }

    /// Sends the body at about `bytes_per_sec`.
    pub fn throttle(mut self, bytes_per_sec: u64) -> Self {
        self.throttle = Some(bytes_per_sec.max(1));
        self
    }

    /// Pauses for `pause` after sending `after` body bytes.
    pub fn stall_after(mut self, after: u64, pause: Duration) -> Self {
        self.stall = Some((after, pause));
        self
    }

    /// Closes the connection after `after` body bytes, for the next response only.
    pub fn drop_after(mut self, after: u64) -> Self {
        self.cut = Some((after, Some(1)));
        self
    }

    /// Closes the connection after `after` body bytes of every response.
    pub fn drop_always_after(mut self, after: u64) -> Self {
        self.cut = Some((after, None));
        self
    }

    /// Waits `delay` before sending anything.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

struct State {
    routes: Mutex<HashMap<String, Route>>,
    log: Mutex<Vec<Logged>>,
    stop: AtomicBool,
    tls: Option<Arc<rustls::ServerConfig>>,
}

/// A running test server; dropping it stops it.
pub struct Server {
    addr: SocketAddr,
    scheme: Scheme,
    state: Arc<State>,
    ca_pem: Option<String>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    /// Starts a server on 127.0.0.1 with a free port. For HTTPS it makes a fresh test
    /// CA and a certificate for `127.0.0.1` and `localhost` signed by it.
    pub fn start(scheme: Scheme) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let (tls, ca_pem) = match scheme {
            Scheme::Http => (None, None),
            Scheme::Https => {
                let (config, ca) = tls_config();
                (Some(config), Some(ca))
            }
        };
        let state = Arc::new(State {
            routes: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
            tls,
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if accept_state.stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let state = Arc::clone(&accept_state);
                std::thread::spawn(move || {
                    // A broken connection is the client's business; nothing to report.
                    let _ = serve(conn, &state);
                });
            }
        });
        Server {
            addr,
            scheme,
            state,
            ca_pem,
            accept: Some(accept),
        }
    }

    /// A plain HTTP server.
    pub fn http() -> Server {
        Server::start(Scheme::Http)
    }

    /// An HTTPS server with a fresh test CA ([`Server::ca_pem`]).
    pub fn https() -> Server {
        Server::start(Scheme::Https)
    }

    /// Adds or replaces the route at `path` (path and query, e.g. `/fw.bin`).
    pub fn route(&self, path: &str, route: Route) {
        lock(&self.state.routes).insert(path.to_owned(), route);
    }

    /// The URL of `path` on this server.
    pub fn url(&self, path: &str) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{path}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The test CA certificate (PEM) that signed the server's certificate (HTTPS only).
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref().map(str::as_bytes)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Logged> {
        lock(&self.state.log).clone()
    }

    /// The requests so far whose target is `path`.
    pub fn requests_to(&self, path: &str) -> Vec<Logged> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Forgets the logged requests.
    pub fn clear_log(&self) {
        lock(&self.state.log).clear();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(handle) = self.accept.take() {
            let _ = handle.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A fresh CA and a server certificate it signed, as a rustls config and the CA PEM.
fn tls_config() -> (Arc<rustls::ServerConfig>, String) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dm-client test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .expect("server params")
        .signed_by(&key, &ca)
        .expect("server certificate");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .expect("server certificate and key");
    (Arc::new(config), ca.pem())
}

/// A connection, plain or TLS.
trait Conn: Read + Write + Send {
    /// Ends the response cleanly (TLS close_notify, then TCP FIN).
    fn close(&mut self);
    /// Breaks the connection without a clean end.
    fn abort(&mut self);
}

impl Conn for TcpStream {
    fn close(&mut self) {
        let _ = self.flush();
        let _ = self.shutdown(Shutdown::Write);
    }
    fn abort(&mut self) {
        let _ = self.shutdown(Shutdown::Both);
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Write);
    }
    fn abort(&mut self) {
        let _ = self.flush();
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

/// The largest request head and body read.
const MAX_HEAD: usize = 16 * 1024;
const MAX_BODY: usize = 1024 * 1024;

fn serve(tcp: TcpStream, state: &State) -> io::Result<()> {
    tcp.set_read_timeout(Some(Duration::from_secs(5)))?;
    tcp.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut conn: Box<dyn Conn> = match &state.tls {
        None => Box::new(tcp),
        Some(config) => {
            let server = rustls::ServerConnection::new(Arc::clone(config))
                .map_err(|e| io::Error::other(e.to_string()))?;
            Box::new(rustls::StreamOwned::new(server, tcp))
        }
    };
    let Some(request) = read_request(&mut conn)? else {
        return Ok(());
    };
    lock(&state.log).push(request.clone());

    let route = {
        let mut routes = lock(&state.routes);
        let bare = request
            .path
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned();
        let key = if routes.contains_key(&request.path) {
            request.path.clone()
        } else {
            bare
        };
        match routes.get_mut(&key) {
            Some(route) => {
                let answer = route.clone();
                // Use up one "drop once".
                if let Some((_, Some(left))) = &mut route.cut {
                    *left = left.saturating_sub(1);
                    if *left == 0 {
                        route.cut = None;
                    }
                }
                Some(answer)
            }
            None => None,
        }
    };
    let route = route.unwrap_or_else(|| Route::new(Vec::new()).status(404));
    respond(&mut *conn, &request, &route, &state.stop)
}

fn read_request(conn: &mut Box<dyn Conn>) -> io::Result<Option<Logged>> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || conn.read(&mut byte)? == 0 {
            return Ok(None);
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_owned();
    let path = first.next().unwrap_or_default().to_owned();
    let mut headers = HashMap::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
        }
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length.min(MAX_BODY)];
    conn.read_exact(&mut body)?;
    Ok(Some(Logged {
        method,
        path,
        range: headers.get("range").cloned(),
        if_range: headers.get("if-range").cloned(),
        content_type: headers.get("content-type").cloned(),
        body,
    }))
}

/// `bytes=N-` or `bytes=N-M` as a start and an inclusive end.
fn parse_range(value: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = value.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start = a.trim().parse().ok()?;
    let end = match b.trim() {
        "" => len.saturating_sub(1),
        b => b.parse::<u64>().ok()?.min(len.saturating_sub(1)),
    };
    Some((start, end))
}

fn respond(conn: &mut dyn Conn, req: &Logged, route: &Route, stop: &AtomicBool) -> io::Result<()> {
    if let Some(delay) = route.delay {
        if !sleep_unless_stopped(delay, stop) {
            return Ok(());
        }
    }
    let len = route.body.len() as u64;
    let mut status = route.status;
    let mut slice = (0, len);
    let mut content_range = None;
    let range = req
        .range
        .as_deref()
        .filter(|_| route.ranges && status == 200);
    let validator_ok = match (&req.if_range, &route.etag) {
        (None, _) => true,
        (Some(sent), Some(tag)) => sent == tag,
        (Some(_), None) => false,
    };
    if let (Some(range), true) = (range, validator_ok) {
        match parse_range(range, len) {
            Some((start, end)) if start < len && start <= end => {
                status = 206;
                slice = (start, end + 1);
                content_range = Some(format!("bytes {start}-{end}/{len}"));
            }
            _ => {
                status = 416;
                slice = (0, 0);
                content_range = Some(format!("bytes */{len}"));
            }
        }
    }
    let body = &route.body[slice.0 as usize..slice.1 as usize];

    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\n",
        reason(status)
    );
    if route.send_length {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    if let Some(cr) = content_range {
        head.push_str(&format!("Content-Range: {cr}\r\n"));
    }
    if let Some(tag) = &route.etag {
        head.push_str(&format!("ETag: {tag}\r\n"));
    }
    if route.ranges {
        head.push_str("Accept-Ranges: bytes\r\n");
    }
    for (name, value) in &route.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.flush()?;
    if req.method == "HEAD" {
        conn.close();
        return Ok(());
    }

    let mut sent = 0u64;
    let chunk = route
        .throttle
        .map_or(16 * 1024, |bps| (bps / 20).clamp(1, 16 * 1024) as usize);
    let mut stalled = false;
    while (sent as usize) < body.len() {
        if stop.load(Ordering::SeqCst) {
            conn.abort();
            return Ok(());
        }
        let mut end = (sent as usize + chunk).min(body.len());
        // Stop exactly at the stall and cut points.
        for point in [route.stall.map(|s| s.0), route.cut.map(|c| c.0)]
            .into_iter()
            .flatten()
        {
            if (sent..end as u64).contains(&point) && point > sent {
                end = point as usize;
            }
        }
        conn.write_all(&body[sent as usize..end])?;
        conn.flush()?;
        sent = end as u64;
        if let Some((at, _)) = route.cut {
            if sent >= at {
                conn.abort();
                return Ok(());
            }
        }
        if let Some((at, pause)) = route.stall {
            if !stalled && sent >= at {
                stalled = true;
                if !sleep_unless_stopped(pause, stop) {
                    conn.abort();
                    return Ok(());
                }
            }
        }
        if route.throttle.is_some() {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    conn.close();
    Ok(())
}

/// Sleeps in small steps; false if the server stopped meanwhile.
fn sleep_unless_stopped(total: Duration, stop: &AtomicBool) -> bool {
    let end = Instant::now() + total;
    while Instant::now() < end {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        404 => "Not Found",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
