//! Placeholders, and the operator steps a session needs on a server (`[[setup]]`:
//! calls to dm-server's admin API).

use std::time::Duration;

use syncml_core::transcript::Transcript;

/// Where and how to call the admin API.
#[derive(Debug, Clone)]
pub struct Setup {
    /// `scheme://host:port` of the admin API.
    pub base: String,
    pub token: String,
    pub timeout: Duration,
}

/// The session's placeholders: every `[device]` key, and the given extras.
pub fn placeholders(t: &Transcript, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let d = &t.manifest.device;
    let mut v: Vec<(String, String)> = [
        ("id", &d.id),
        ("user", &d.user),
        ("password", &d.password),
        ("auth", &d.auth),
        ("client_nonce", &d.client_nonce),
        ("server_id", &d.server_id),
        ("server_password", &d.server_password),
        ("server_nonce", &d.server_nonce),
        ("encoding", &d.encoding),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.clone()))
    .collect();
    v.extend(d.extra.iter().map(|(k, x)| (k.clone(), x.clone())));
    v.extend(extra.iter().map(|(k, x)| (k.to_string(), x.to_string())));
    v
}

/// `text` with every `{key}` replaced.
pub fn fill(text: &str, values: &[(String, String)]) -> String {
    let mut s = text.to_owned();
    for (k, v) in values {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// Runs the session's setup steps in order; a status that is neither 2xx nor one
/// the step accepts stops the session.
pub fn run_setup(admin: &Setup, t: &Transcript, udp: &str) -> Result<(), String> {
    let values = placeholders(t, &[("udp", udp)]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(admin.timeout))
        .build()
        .into();
    for (n, step) in t.manifest.setup.iter().enumerate() {
        let url = format!("{}{}", admin.base, fill(&step.path, &values));
        let method = step.method.to_ascii_uppercase();
        let req = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("Authorization", format!("Bearer {}", admin.token))
            .header("Content-Type", "application/json");
        let body = step
            .body
            .as_deref()
            .map(|b| fill(b, &values))
            .unwrap_or_default();
        let req = req
            .body(body)
            .map_err(|e| format!("setup step {}: {e}", n + 1))?;
        let mut resp = agent
            .run(req)
            .map_err(|e| format!("setup step {} ({method} {url}): {e}", n + 1))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) && !step.accept.contains(&status) {
            let text = resp.body_mut().read_to_string().unwrap_or_default();
            return Err(format!(
                "setup step {} ({method} {url}): HTTP {status}: {}",
                n + 1,
                text.trim()
            ));
        }
    }
    Ok(())
}
