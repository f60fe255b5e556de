//! The HTTP transport against a tiny HTTP(S) responder on loopback that checks what
//! arrives.
#![cfg(feature = "http")]

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use dm_client::transport::{HttpTransport, HttpTransportConfig, Reply, TransportError};

const DM_XML: &str = "application/vnd.syncml.dm+xml";

/// A request as the responder saw it.
struct Seen {
    head: String,
    body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (case-insensitive), if sent once.
    fn header(&self, name: &str) -> Option<String> {
        let mut values = self.head.lines().skip(1).filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        });
        let first = values.next();
        assert!(values.next().is_none(), "{name} sent twice");
        first
    }
}

fn read_request(s: &mut impl Read) -> io::Result<Seen> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        head.push(byte[0]);
    }
    let mut seen = Seen {
        head: String::from_utf8_lossy(&head).into_owned(),
        body: Vec::new(),
    };
    let len = seen
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    seen.body = vec![0; len];
    s.read_exact(&mut seen.body)?;
    Ok(seen)
}

enum Answer {
    Bytes(Vec<u8>),
    /// Reads the request, then answers nothing until the client leaves.
    Hold,
}

fn answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut r = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        r.push_str(&format!("{k}: {v}\r\n"));
    }
    r.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut bytes = r.into_bytes();
    bytes.extend_from_slice(body);
    Answer::Bytes(bytes)
}

/// Serves one connection per answer, through `wrap` (plain TCP or TLS), and sends
/// back each request seen.
fn serve_with<S, F>(answers: Vec<Answer>, wrap: F) -> (u16, mpsc::Receiver<Seen>)
where
    S: Read + Write,
    F: Fn(std::net::TcpStream) -> S + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for a in answers {
            let Ok((tcp, _)) = listener.accept() else {
                return;
            };
            let mut s = wrap(tcp);
            let Ok(seen) = read_request(&mut s) else {
                continue; // e.g. a TLS handshake the client refused
            };
            let _ = tx.send(seen);
            match a {
                Answer::Bytes(b) => {
                    let _ = s.write_all(&b);
                    let _ = s.flush();
                }
                Answer::Hold => while s.read(&mut [0u8; 64]).unwrap_or(0) > 0 {},
            }
        }
    });
    (port, rx)
}

fn serve(answers: Vec<Answer>) -> (String, mpsc::Receiver<Seen>) {
    let (port, rx) = serve_with(answers, |tcp| tcp);
    (format!("http://127.0.0.1:{port}/dm"), rx)
}

fn transport(max_response: usize, timeout: Duration) -> HttpTransport {
    HttpTransport::new(HttpTransportConfig {
        timeout,
        user_agent: "dm-client-test/1".into(),
        extra_root_certs_pem: Vec::new(),
        max_response,
    })
    .unwrap()
}

#[test]
fn post_sends_the_dm_headers_and_reads_the_reply() {
    let hmac_out = "algorithm=MD5, username=\"dev1\", mac=Zz6EivR3yeaaENcRN6lpAQ==";
    let hmac_in = "algorithm=MD5, username=\"acme-dm\", mac=QnJ1Y2UyOk9oQmVoYXZl";
    let (url, seen) = serve(vec![
        answer(
            "200 OK",
            &[("Content-Type", DM_XML), ("X-Syncml-Hmac", hmac_in)],
            b"<SyncML/>",
        ),
        answer("200 OK", &[], b""),
    ]);
    let t = transport(1024, Duration::from_secs(10));
    let reply = t
        .post(&url, DM_XML, Some(hmac_out), b"<SyncML>1</SyncML>")
        .unwrap();
    assert_eq!(
        reply,
        Reply {
            status: 200,
            content_type: Some(DM_XML.into()),
            hmac: Some(hmac_in.into()),
            body: b"<SyncML/>".to_vec(),
        }
    );
    let req = seen.recv().unwrap();
    assert!(
        req.head.starts_with("POST /dm HTTP/1.1\r\n"),
        "{}",
        req.head
    );
    assert_eq!(req.header("content-type").as_deref(), Some(DM_XML));
    assert_eq!(
        req.header("accept").as_deref(),
        Some("application/vnd.syncml.dm+xml, application/vnd.syncml.dm+wbxml")
    );
    assert_eq!(req.header("x-syncml-hmac").as_deref(), Some(hmac_out));
    assert_eq!(
        req.header("user-agent").as_deref(),
        Some("dm-client-test/1")
    );
    assert_eq!(req.header("accept-encoding"), None);
    assert_eq!(req.body, b"<SyncML>1</SyncML>");

    // WBXML bytes pass unchanged, and no HMAC header is sent when none is given.
    let wbxml = [0x02, 0xA4, 0x01, 0x6A, 0x00, 0x00, 0xFF];
    let reply = t
        .post(&url, "application/vnd.syncml.dm+wbxml", None, &wbxml)
        .unwrap();
    assert_eq!((reply.content_type, reply.hmac), (None, None));
    let req = seen.recv().unwrap();
    assert_eq!(req.header("x-syncml-hmac"), None);
    assert_eq!(req.body, wbxml);
}

#[test]
fn error_statuses_and_redirects_are_replies() {
    let (url, _seen) = serve(vec![
        answer("401 Unauthorized", &[("Content-Type", DM_XML)], b"<Chal/>"),
        answer("500 Internal Server Error", &[], b"oops"),
        answer(
            "302 Found",
            &[("Location", "http://127.0.0.1:1/elsewhere")],
            b"",
        ),
    ]);
    let t = transport(1024, Duration::from_secs(10));
    let r = t.post(&url, DM_XML, None, b"x").unwrap();
    assert_eq!(
        (r.status, r.body.as_slice(), r.is_success()),
        (401, &b"<Chal/>"[..], false)
    );
    assert_eq!(t.post(&url, DM_XML, None, b"x").unwrap().status, 500);
    assert_eq!(t.post(&url, DM_XML, None, b"x").unwrap().status, 302);
}

#[test]
fn an_oversized_body_is_refused() {
    let (url, _seen) = serve(vec![
        answer("200 OK", &[], &[b'a'; 64]),
        answer("200 OK", &[], &[b'a'; 65]),
    ]);
    let t = transport(64, Duration::from_secs(10));
    assert_eq!(t.post(&url, DM_XML, None, b"x").unwrap().body.len(), 64);
    assert_eq!(
        t.post(&url, DM_XML, None, b"x"),
        Err(TransportError::TooLarge { limit: 64 })
    );
}

#[test]
fn timeouts_and_network_failures_are_typed() {
    let (url, _seen) = serve(vec![Answer::Hold]);
    let t = transport(1024, Duration::from_millis(400));
    let start = Instant::now();
    assert_eq!(
        t.post(&url, DM_XML, None, b"x"),
        Err(TransportError::Timeout)
    );
    assert!(start.elapsed() < Duration::from_secs(5));

    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{closed}/dm");
    assert!(matches!(
        t.post(&url, DM_XML, None, b"x"),
        Err(TransportError::Network(_))
    ));
    assert!(matches!(
        t.post("not a url", DM_XML, None, b"x"),
        Err(TransportError::BadUrl(_))
    ));
    assert!(matches!(
        t.post("http://127.0.0.1:1/", DM_XML, Some("bad\r\nheader"), b"x"),
        Err(TransportError::BadHeader(_))
    ));
}

/// A TLS responder with a fresh self-signed certificate for 127.0.0.1; returns the
/// port, the certificate's PEM and the requests seen.
fn serve_tls(answers: Vec<Answer>) -> (u16, String, mpsc::Receiver<Seen>) {
    let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let key = rustls::pki_types::PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key.into())
        .unwrap();
    let config = Arc::new(config);
    let (port, rx) = serve_with(answers, move |tcp| {
        let conn = rustls::ServerConnection::new(config.clone()).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    });
    (port, ck.cert.pem(), rx)
}

#[test]
fn https_with_a_private_root() {
    let (port, pem, seen) = serve_tls(vec![
        answer("204 No Content", &[], b""),
        answer("200 OK", &[("Content-Type", DM_XML)], b"<SyncML/>"),
    ]);
    let url = format!("https://127.0.0.1:{port}/dm");
    // The built-in roots do not know the server's certificate.
    let public = transport(1024, Duration::from_secs(10));
    match public.post(&url, DM_XML, None, b"x") {
        Err(TransportError::Tls(why)) => assert!(why.contains("UnknownIssuer"), "{why}"),
        other => panic!("{other:?}"),
    }
    let private = HttpTransport::new(HttpTransportConfig {
        extra_root_certs_pem: vec![pem.into_bytes()],
        ..HttpTransportConfig::default()
    })
    .unwrap();
    let reply = private
        .post(&url, DM_XML, Some("mac=x"), b"<SyncML/>")
        .unwrap();
    assert_eq!(
        (reply.status, reply.body.as_slice()),
        (200, &b"<SyncML/>"[..])
    );
    let req = seen.recv().unwrap();
    assert_eq!(req.header("x-syncml-hmac").as_deref(), Some("mac=x"));

    let bad = HttpTransport::new(HttpTransportConfig {
        extra_root_certs_pem: vec![b"-----BEGIN NOTHING-----".to_vec()],
        ..HttpTransportConfig::default()
    });
    assert!(matches!(bad, Err(TransportError::BadRootCert(_))));
}
