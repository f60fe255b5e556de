//! What the client owes servers: FUMO outcomes (Generic Alert 1226), outcomes of
//! ApplyFirmwareUpdate/Update (ConfirmFirmwareUpdate) and SIM changes
//! (SIMCardChange). Each is kept in the tree until the server answers it with a
//! 2xx Status, so it is sent again in every session until then, and survives
//! restarts. A permanent refusal (a 4xx other than 401 and 407, authentication, and
//! 408, time-out) drops it too, with a warning: sending it again would only be
//! refused again, forever.
//!
//! The Alert 1226 of a FUMO operation: Source the FUMO node, Meta Type
//! `org.openmobilealliance.dm.firmwareupdate.<op>`, Format `int`, Mark `critical` on
//! failure (`informational` on success), Data the result code, and the Exec's
//! Correlator. A ConfirmFirmwareUpdate: Source the slot, Data the result code.
//! A SIMCardChange: Source `./SIM`, Data `ICCID=<iccid>` and, when known,
//! `IMSI=<imsi>`.

use dm_tree::{DmTree, Tree};
use syncml_core::{Alert, AlertCode, Command, Data, Item, ItemCmd, Location, Meta, StatusCode};

use super::nodes;
use super::records::{self, Fields, Job, JobKind};
use super::{Error, Report};

/// The Generic Alert type of each FUMO operation.
const ALERT_TYPE_PREFIX: &str = "org.openmobilealliance.dm.firmwareupdate.";

/// Records the outcome of `job` on `node` as owed to the server that asked.
pub fn owe_outcome(tree: &mut Tree, node: &str, job: &Job, code: u16) -> Result<(), Error> {
    let mut f = Fields::default();
    f.push("server", &job.server);
    f.push("source", node);
    f.push("data", &code.to_string());
    let op = match job.kind {
        JobKind::Apply => {
            f.push("kind", "confirm");
            if let Some(c) = &job.correlator {
                f.push("correlator", c);
            }
            return records::add_report(tree, &f).map(|_| ());
        }
        JobKind::FumoDownload => "download",
        JobKind::FumoUpdate => "update",
        JobKind::FumoDownloadAndUpdate => "downloadandupdate",
    };
    f.push("kind", "alert");
    f.push("type", &format!("{ALERT_TYPE_PREFIX}{op}"));
    let mark = if (200..300).contains(&code) {
        "informational"
    } else {
        "critical"
    };
    f.push("mark", mark);
    if let Some(c) = &job.correlator {
        f.push("correlator", c);
    }
    records::add_report(tree, &f).map(|_| ())
}

/// The command a stored report sends.
fn command(f: &Fields) -> Option<Command> {
    let source = Some(Location::new(f.get("source")?));
    let data: Vec<Data> = f.all("data").into_iter().map(Data::text).collect();
    let correlator = f.get("correlator").map(str::to_owned);
    match f.get("kind")? {
        "alert" => Some(Command::Alert(Alert {
            cmd_id: 0,
            no_resp: false,
            cred: None,
            data: Some(AlertCode::GenericAlert),
            correlator,
            items: vec![Item {
                source,
                meta: Some(Box::new(Meta {
                    format: Some("int".to_owned()),
                    type_: f.get("type").map(str::to_owned),
                    mark: f.get("mark").map(str::to_owned),
                    ..Meta::default()
                })),
                data,
                ..Item::default()
            }],
            extra: Vec::new(),
        })),
        "confirm" => Some(Command::ConfirmFirmwareUpdate(ItemCmd {
            correlator,
            ..ItemCmd::new(vec![Item {
                source,
                data,
                ..Item::default()
            }])
        })),
        "sim" => Some(Command::SimCardChange(ItemCmd::new(vec![Item {
            source,
            data,
            ..Item::default()
        }]))),
        _ => None,
    }
}

pub fn reports(dm: &DmTree, server: &str) -> Vec<Report> {
    records::reports(&dm.tree)
        .into_iter()
        .filter(|r| r.fields.get("server") == Some(server))
        .filter_map(|r| {
            Some(Report {
                id: r.id.to_string(),
                command: command(&r.fields)?,
            })
        })
        .collect()
}

/// Whether `status` refuses a report for good: a 4xx other than 401 and 407
/// (authentication) and 408 (time-out), which a later session may pass.
fn refused_for_good(status: StatusCode) -> bool {
    (400..500).contains(&status.code()) && !matches!(status.code(), 401 | 407 | 408)
}

pub fn report_answered(dm: &mut DmTree, id: &str, status: StatusCode) {
    if refused_for_good(status) {
        tracing::warn!("report {id} refused with {status}: dropped, never sent again");
    } else if !status.is_success() {
        tracing::info!("report {id} answered {status}: kept for the next session");
        return;
    }
    let Ok(id) = id.parse::<u64>() else {
        return;
    };
    let done = records::remove_report(&mut dm.tree, id)
        .and_then(|()| dm.tree.commit().map_err(Error::from));
    if let Err(e) = done {
        tracing::error!("report {id}: {e}");
        let _ = dm.tree.discard();
    }
}

pub fn check_sim(dm: &mut DmTree, iccid: &str, imsi: Option<&str>) {
    if let Err(e) = try_check_sim(dm, iccid, imsi) {
        tracing::error!("SIM check: {e}");
        let _ = dm.tree.discard();
    }
}

fn try_check_sim(dm: &mut DmTree, iccid: &str, imsi: Option<&str>) -> Result<(), Error> {
    let changed = match records::sim(&dm.tree) {
        // The first identity ever seen is a start, not a change.
        None => false,
        Some((old_iccid, old_imsi)) => {
            old_iccid != iccid || (imsi.is_some() && old_imsi.as_deref() != imsi)
        }
    };
    if dm.tree.get("./SIM/ICCID").is_some_and(|n| n.is_leaf()) {
        nodes::set_leaf(&mut dm.tree, "./SIM/ICCID", dm_tree::Format::Chr, iccid)?;
    }
    if let (Some(i), true) = (imsi, dm.tree.get("./SIM/IMSI").is_some_and(|n| n.is_leaf())) {
        nodes::set_leaf(&mut dm.tree, "./SIM/IMSI", dm_tree::Format::Chr, i)?;
    }
    if changed {
        let mut servers: Vec<String> = dm_tree::accounts::accounts(&dm.tree)
            .into_iter()
            .map(|a| a.server_id)
            .filter(|s| !s.is_empty())
            .collect();
        servers.sort();
        servers.dedup();
        // Only the latest identity matters: an older change not yet reported is
        // replaced.
        for old in records::reports(&dm.tree) {
            if old.fields.get("kind") == Some("sim") {
                records::remove_report(&mut dm.tree, old.id)?;
            }
        }
        for server in servers {
            let mut f = Fields::default();
            f.push("server", &server);
            f.push("kind", "sim");
            f.push("source", "./SIM");
            f.push("data", &format!("ICCID={iccid}"));
            if let Some(i) = imsi {
                f.push("data", &format!("IMSI={i}"));
            }
            records::add_report(&mut dm.tree, &f)?;
        }
    }
    records::put_sim(&mut dm.tree, iccid, imsi)?;
    Ok(dm.tree.commit()?)
}
