//! The replay's own HTTP endpoint for `--client`: DM messages (any POST) are handed
//! to the replay thread one at a time; downloads (GET) are served from the session's
//! files.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming as Body;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::TokioIo;
use tokio::sync::oneshot;

use crate::exchange::Incoming;

/// The largest message accepted from a client.
const MAX_BODY: usize = 64 << 20;

/// What the replay answers to one POST.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub hmac: Option<String>,
    pub body: Vec<u8>,
}

/// A POST waiting for its answer.
pub struct Posted {
    pub request: Incoming,
    pub path: String,
    reply: oneshot::Sender<Answer>,
}

impl Posted {
    pub fn answer(self, a: Answer) {
        let _ = self.reply.send(a);
    }
}

/// A running endpoint; dropped, it stops.
pub struct Endpoint {
    pub addr: SocketAddr,
    pub posts: mpsc::Receiver<Posted>,
    /// Paths of downloads served, in order (shared with the server task).
    pub fetched: Arc<std::sync::Mutex<Vec<String>>>,
    _stop: oneshot::Sender<()>,
    _thread: std::thread::JoinHandle<()>,
}

/// A file served on GET: its HTTP status and body.
pub type Served = (u16, Vec<u8>);

/// Starts an endpoint on 127.0.0.1 serving `downloads` (URL path to status and body).
pub fn start(downloads: HashMap<String, Served>) -> std::io::Result<Endpoint> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let (tx, posts) = mpsc::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let fetched = Arc::new(std::sync::Mutex::new(Vec::new()));
    let fetched2 = Arc::clone(&fetched);
    let downloads = Arc::new(downloads);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::spawn(move || {
        rt.block_on(async move {
            let listener = match tokio::net::TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(_) => return,
            };
            let accept = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let tx = tx.clone();
                    let downloads = Arc::clone(&downloads);
                    let fetched = Arc::clone(&fetched2);
                    tokio::spawn(async move {
                        let svc = service_fn(move |req| {
                            handle(
                                req,
                                tx.clone(),
                                Arc::clone(&downloads),
                                Arc::clone(&fetched),
                            )
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            };
            tokio::select! {
                _ = accept => {}
                _ = stop_rx => {}
            }
        })
    });
    Ok(Endpoint {
        addr,
        posts,
        fetched,
        _stop: stop_tx,
        _thread: thread,
    })
}

fn plain(status: u16, body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
    r
}

async fn handle(
    req: Request<Body>,
    tx: mpsc::Sender<Posted>,
    downloads: Arc<HashMap<String, Served>>,
    fetched: Arc<std::sync::Mutex<Vec<String>>>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET || req.method() == Method::HEAD {
        let Some((status, bytes)) = downloads.get(&path) else {
            return Ok(plain(404, "not found"));
        };
        if let Ok(mut f) = fetched.lock() {
            f.push(path);
        }
        let mut r = Response::new(Full::new(Bytes::from(bytes.clone())));
        *r.status_mut() = hyper::StatusCode::from_u16(*status).unwrap_or_default();
        return Ok(r);
    }
    if req.method() != Method::POST {
        return Ok(plain(405, "method not allowed"));
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    let hmac = header("x-syncml-hmac");
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Ok(plain(413, "too large")),
    };
    let (reply, rx) = oneshot::channel();
    let posted = Posted {
        request: Incoming {
            http_status: 200,
            content_type,
            hmac,
            body,
        },
        path,
        reply,
    };
    if tx.send(posted).is_err() {
        return Ok(plain(503, "the replay is over"));
    }
    let answer = match tokio::time::timeout(Duration::from_secs(120), rx).await {
        Ok(Ok(a)) => a,
        _ => return Ok(plain(500, "no answer")),
    };
    let mut r = Response::new(Full::new(Bytes::from(answer.body)));
    *r.status_mut() = hyper::StatusCode::from_u16(answer.status).unwrap_or_default();
    if let Some(ct) = answer.content_type {
        if let Ok(v) = ct.parse() {
            r.headers_mut().insert("content-type", v);
        }
    }
    if let Some(h) = answer.hmac {
        if let Ok(v) = h.parse() {
            r.headers_mut().insert("x-syncml-hmac", v);
        }
    }
    Ok(r)
}
