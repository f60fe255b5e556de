//! `POST /dm` and `POST /dm/s/{token}`: one DM message in, the engine's reply out.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use hyper::Request;

use super::{body, error, App, Log, Outcome, Resp};
use crate::engine::DmRequest;
use crate::metrics::Metrics;
use crate::store::now_millis;

/// The media types a DM message may come as (DM 1.2 and the SyncML 1.1 ones).
const MEDIA_TYPES: [&str; 4] = [
    "application/vnd.syncml.dm+xml",
    "application/vnd.syncml.dm+wbxml",
    "application/vnd.syncml+xml",
    "application/vnd.syncml+wbxml",
];

/// Whether a Content-Type names a DM message (parameters ignored, any case).
pub(crate) fn is_dm_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or_default().trim();
    MEDIA_TYPES.iter().any(|m| m.eq_ignore_ascii_case(media))
}

fn refuse(app: &App, code: u16, msg: &str) -> Outcome {
    Metrics::inc(&app.server.metrics.dm_bad_requests);
    Outcome {
        resp: error(code, msg),
        log: Log::Dm {
            device: None,
            session: None,
            note: msg.to_owned(),
        },
    }
}

pub(crate) async fn handle(
    app: &App,
    token: Option<String>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Outcome {
    let (parts, incoming) = req.into_parts();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header("content-type");
    if !content_type.as_deref().is_some_and(is_dm_media_type) {
        return refuse(
            app,
            415,
            &format!(
                "unsupported media type {:?}: expected application/vnd.syncml.dm+xml or +wbxml",
                content_type.as_deref().unwrap_or("")
            ),
        );
    }
    let limit = app.server.config.max_message_size;
    let bytes = match body::read(&parts.headers, incoming, limit).await {
        Ok(b) => b,
        Err(e) => {
            let (code, msg) = e.status(limit);
            return refuse(app, code, &msg);
        }
    };
    let request = DmRequest {
        body: bytes.to_vec(),
        content_type,
        hmac: header("x-syncml-hmac"),
        token,
        remote_addr: Some(remote.ip().to_string()),
    };
    let server = Arc::clone(&app.server);
    // The engine counts the message and its handling time; `record` writes the
    // exchange to the session's recording when the server records (`--record`).
    let reply = tokio::task::spawn_blocking(move || {
        crate::record::handle_dm(&server, &request, now_millis())
    })
    .await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "the DM engine panicked");
            return Outcome {
                resp: error(500, "internal error"),
                log: Log::Dm {
                    device: None,
                    session: None,
                    note: "engine panicked".into(),
                },
            };
        }
    };
    if let (true, Some(device)) = (reply.activity, reply.device.clone()) {
        // Off the reply's path: a firmware job reads what this message stored.
        let server = Arc::clone(&app.server);
        let pollers = Arc::clone(&app.pollers);
        tokio::task::spawn_blocking(move || {
            match crate::fota::advance(&server, Some(&pollers), &device, now_millis()) {
                // A campaign's job that ended: its campaign starts the next device
                // now rather than at its next tick.
                Ok(Some(job)) if job.state.is_final() => {
                    crate::campaign::scheduler::job_finished(&server, &job)
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(device = %device, error = %e, "advancing the firmware job failed")
                }
            }
            // After the job moved on: its end may let the desired state's next one in.
            if let Err(e) =
                crate::presence::reconcile(&server, Some(&pollers), &device, now_millis())
            {
                tracing::warn!(device = %device, error = %e, "reconciling the desired state failed");
            }
        });
    }
    let mut resp: Resp = super::empty(reply.status);
    *resp.body_mut() = http_body_util::Full::new(reply.body.into());
    let mut note = reply.note;
    if let Some(ct) = &reply.content_type {
        match HeaderValue::from_str(ct) {
            Ok(v) => {
                resp.headers_mut().insert(CONTENT_TYPE, v);
            }
            Err(_) => note.push_str(" (bad content type dropped)"),
        }
    }
    if let Some(h) = &reply.hmac {
        match HeaderValue::from_str(h) {
            Ok(v) => {
                resp.headers_mut()
                    .insert(HeaderName::from_static("x-syncml-hmac"), v);
            }
            Err(_) => note.push_str(" (bad hmac header dropped)"),
        }
    }
    Outcome {
        resp,
        log: Log::Dm {
            device: reply.device,
            session: reply.session,
            note,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_media_types_ignore_case_and_parameters() {
        assert!(is_dm_media_type("application/vnd.syncml.dm+xml"));
        assert!(is_dm_media_type(
            "Application/VND.SyncML.DM+WBXML ; charset=utf-8"
        ));
        assert!(is_dm_media_type("application/vnd.syncml+xml;charset=UTF-8"));
        assert!(!is_dm_media_type("application/xml"));
        assert!(!is_dm_media_type("application/vnd.syncml.dm+xmlx"));
        assert!(!is_dm_media_type(""));
    }
}
