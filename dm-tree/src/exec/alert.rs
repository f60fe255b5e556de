//! What the device does beyond the tree: user-interaction alerts and the
//! firmware-update extension commands, through the [`Hooks`] trait.

use syncml_core::{Alert, AlertCode, Command, Data, Item, StatusCode};

use crate::dmtree::DmTree;

/// The answer to an alert: its Status code and the items the Status carries (the
/// user's text or choices).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertAnswer {
    pub code: StatusCode,
    pub items: Vec<Item>,
}

impl AlertAnswer {
    pub fn code(code: StatusCode) -> AlertAnswer {
        AlertAnswer {
            code,
            items: Vec::new(),
        }
    }
}

/// The device's side of commands the tree cannot execute by itself. Every method has
/// a default, so `Headless` (a device without a user or firmware agent) is `impl
/// Hooks for Headless {}`.
pub trait Hooks {
    /// Answers an alert from the server. The default is [`headless_alert`].
    fn alert(&mut self, alert: &Alert) -> AlertAnswer {
        headless_alert(alert)
    }

    /// Executes a server-to-client extension command (GetFirmwareUpdate, Download,
    /// VerifyFirmwareUpdate, SaveFirmwareUpdate, ApplyFirmwareUpdate, Update). The
    /// default refuses with 406: this device has no firmware agent.
    fn extension(&mut self, _dm: &mut DmTree, _server_id: &str, _cmd: &Command) -> StatusCode {
        StatusCode::OptionalFeatureNotSupported
    }
}

/// A device with no user and no firmware agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headless;

impl Hooks for Headless {}

/// The options of a UI alert's first item (`MINDT=10&MAXDT=20&DR=1`), keyed by name.
pub fn alert_options(alert: &Alert) -> Vec<(String, String)> {
    let Some(first) = alert.items.first().and_then(Item::data_str) else {
        return Vec::new();
    };
    first
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

/// How a device without a user answers: as if the user took the default response
/// (`DR`) the server offered, and declined or cancelled when there is none.
///
/// - 1100 display: 200.
/// - 1101 confirm: `DR=1` confirms (200), anything else is "no" (304).
/// - 1102 text input: `DR` as the text (200, with the text as an item), else 214.
/// - 1103 / 1104 choices: `DR` as the chosen item numbers (200, one item each),
///   else 214.
/// - Session alerts (1200-1226) are the session engine's: 200.
/// - Any other code: 406.
pub fn headless_alert(alert: &Alert) -> AlertAnswer {
    let code = alert.data.map(|c| c.code()).unwrap_or(0);
    let opts = alert_options(alert);
    let dr = opts
        .iter()
        .find(|(k, _)| k == "DR")
        .map(|(_, v)| v.as_str());
    let text_item = |t: &str| Item {
        data: vec![Data::text(t)],
        ..Item::default()
    };
    match AlertCode::from(code) {
        AlertCode::Display => AlertAnswer::code(StatusCode::Ok),
        AlertCode::Confirm => AlertAnswer::code(if dr == Some("1") {
            StatusCode::Ok
        } else {
            StatusCode::NotModified
        }),
        AlertCode::TextInput => match dr {
            // `+` stands for a space in the option syntax, as in a URL query.
            Some(t) => AlertAnswer {
                code: StatusCode::Ok,
                items: vec![text_item(&t.replace('+', " "))],
            },
            None => AlertAnswer::code(StatusCode::OperationCancelled),
        },
        AlertCode::SingleChoice | AlertCode::MultipleChoice => match dr {
            Some(choices) => AlertAnswer {
                code: StatusCode::Ok,
                items: expand_choices(choices)
                    .iter()
                    .map(|c| text_item(c))
                    .collect(),
            },
            None => AlertAnswer::code(StatusCode::OperationCancelled),
        },
        _ if (1200..=1299).contains(&code) => AlertAnswer::code(StatusCode::Ok),
        _ => AlertAnswer::code(StatusCode::OptionalFeatureNotSupported),
    }
}

/// `1-3,6` as `["1", "2", "3", "6"]`; ranges are bounded so a hostile `1-4000000000`
/// does not allocate.
fn expand_choices(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
                    for n in a..=b.min(a.saturating_add(255)) {
                        out.push(n.to_string());
                    }
                }
            }
            None => out.push(part.to_owned()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(code: u16, opts: &str) -> Alert {
        Alert {
            cmd_id: 1,
            no_resp: false,
            cred: None,
            data: Some(AlertCode::from(code)),
            correlator: None,
            items: vec![
                Item::default().with_data(opts),
                Item::default().with_data("text"),
            ],
            extra: Vec::new(),
        }
    }

    #[test]
    fn headless_takes_the_default_response() {
        for (code, opts, want) in [
            (1100, "MINDT=15", StatusCode::Ok),
            (1101, "MAXDT=15&DR=1", StatusCode::Ok),
            (1101, "MAXDT=15&DR=0", StatusCode::NotModified),
            (1103, "MAXDT=20", StatusCode::OperationCancelled),
            (1150, "", StatusCode::OptionalFeatureNotSupported),
        ] {
            assert_eq!(
                headless_alert(&alert(code, opts)).code,
                want,
                "{code} {opts}"
            );
        }
        let t = headless_alert(&alert(1102, "DR=hello+andy!&MAXLEN=30"));
        assert_eq!(t.items[0].data_str(), Some("hello andy!"));
        let m = headless_alert(&alert(1104, "MAXDT=20&DR=1-3,6"));
        let picked: Vec<_> = m.items.iter().filter_map(Item::data_str).collect();
        assert_eq!(picked, ["1", "2", "3", "6"]);
        assert_eq!(expand_choices("1-4000000000").len(), 256);
    }
}
