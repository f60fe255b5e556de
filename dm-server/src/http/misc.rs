//! `/metrics`, `/healthz` and the OpenAPI document.

use std::sync::Arc;

use super::{body_response, App, Outcome};

/// The OpenAPI 3 document of every route (checked against the routing table).
pub(crate) const OPENAPI: &str = include_str!("openapi.json");

pub(crate) fn openapi() -> Outcome {
    Outcome::plain(body_response(200, "application/json", OPENAPI), "")
}

/// The process's counters, with gauges read from the store.
pub(crate) async fn metrics(app: &App) -> Outcome {
    let mut text = app.server.metrics.render();
    let store = Arc::clone(&app.server.store);
    let kind = store.kind();
    let devices = tokio::task::spawn_blocking(move || store.count_devices()).await;
    let (up, devices) = match devices {
        Ok(Ok(n)) => (1, Some(n)),
        _ => (0, None),
    };
    text.push_str(&format!(
        "# HELP dm_store_up Whether the store answered.\n# TYPE dm_store_up gauge\ndm_store_up{{store=\"{kind}\"}} {up}\n"
    ));
    if let Some(n) = devices {
        text.push_str(&format!(
            "# HELP dm_devices Devices registered.\n# TYPE dm_devices gauge\ndm_devices {n}\n"
        ));
    }
    text.push_str(&format!(
        "# HELP dm_pollers_devices Devices with a long-poll waiting in this process.\n# TYPE dm_pollers_devices gauge\ndm_pollers_devices {}\n",
        app.pollers.devices()
    ));
    Outcome::plain(
        body_response(200, "text/plain; version=0.0.4; charset=utf-8", text),
        "",
    )
}

/// 200 when the store answers, 503 when not.
pub(crate) async fn healthz(app: &App) -> Outcome {
    let store = Arc::clone(&app.server.store);
    // A point lookup: cheap however many devices there are.
    match tokio::task::spawn_blocking(move || store.device("\u{0}healthz")).await {
        Ok(Ok(_)) => Outcome::plain(body_response(200, "text/plain", "ok\n"), ""),
        Ok(Err(e)) => Outcome::plain(
            body_response(503, "text/plain", "store unavailable\n"),
            e.to_string(),
        ),
        Err(e) => Outcome::plain(body_response(500, "text/plain", "error\n"), e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::http::api::required_role;
    use crate::http::routes::ROUTES;

    fn documented() -> serde_json::Value {
        serde_json::from_str(OPENAPI).expect("the OpenAPI document is JSON")
    }

    #[test]
    fn the_openapi_document_covers_exactly_the_routes_served() {
        let doc = documented();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let mut in_doc = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                in_doc.insert((method.to_uppercase(), path.clone()));
            }
        }
        let served: BTreeSet<_> = ROUTES
            .iter()
            .map(|(m, p, _)| (m.to_string(), p.to_string()))
            .collect();
        assert_eq!(in_doc, served);
    }

    #[test]
    fn the_documented_roles_are_the_enforced_ones() {
        let doc = documented();
        for &(method, path, route) in ROUTES {
            let op = &doc["paths"][path][method.to_lowercase()];
            let desc = op["description"].as_str().unwrap_or_default();
            if path.starts_with("/api/v1/") && route != crate::http::routes::Route::OpenApi {
                let role = required_role(route).as_str();
                assert!(
                    desc.contains(&format!("`{role}`")),
                    "{method} {path}: documented {desc:?}, enforced {role}"
                );
                assert_eq!(op["security"][0]["bearer"], serde_json::json!([]));
            } else {
                assert_eq!(op["security"], serde_json::json!([]), "{method} {path}");
            }
        }
        // Every $ref points at something defined.
        let text = OPENAPI;
        for part in text.split("\"$ref\": \"#/components/").skip(1) {
            let target = part.split('"').next().unwrap();
            let (kind, name) = target.split_once('/').unwrap();
            assert!(
                doc["components"][kind].get(name).is_some(),
                "dangling $ref {target}"
            );
        }
    }
}
