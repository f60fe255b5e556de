//! Commands as an operator writes them (JSON), checked and turned into SyncML.
//!
//! ```json
//! {"cmd": "Get", "target": "./DevDetail/FwV"}
//! {"cmd": "Replace", "target": "./Vendor/Volume", "data": "7", "format": "int"}
//! {"cmd": "Exec", "target": "./FUMO/1/Download", "correlator": "job-9"}
//! {"cmd": "GetFirmwareUpdate", "target": "./FWUpdate/1/PkgData",
//!  "source": "https://fw/x.bin", "data": ["DL_URL=https://fw/x.bin", "DL_Prompt=0"]}
//! {"cmd": "Atomic", "commands": [{"cmd": "Add", ...}, {"cmd": "Replace", ...}]}
//! ```
//!
//! One item can be written inline (`target`, `source`, `data`, `format`, `type`) or
//! several in `items`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use syncml_core::{Command, Container, Data, Direction, Item, ItemCmd, Location, Meta};

/// The most commands one Atomic or Sequence may hold, and the deepest nesting.
pub const MAX_CHILDREN: usize = 256;
const MAX_DEPTH: usize = 4;
/// The largest value one item may carry (larger ones go as large objects).
pub const MAX_DATA: usize = 16 << 20;

/// One item of a command.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// One Data element, or several (the extension commands' `KEY=VALUE` arguments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<DataSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// `b64`: the data is base64 of binary bytes, sent as binary (opaque) data (a
    /// firmware package pushed into PkgData, for instance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
}

/// Data: one text or a list of texts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum DataSpec {
    One(String),
    Many(Vec<String>),
}

impl DataSpec {
    fn texts(&self) -> Vec<&str> {
        match self {
            DataSpec::One(s) => vec![s.as_str()],
            DataSpec::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// A command for a device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// The element name: Get, Add, Replace, Delete, Copy, Exec, Atomic, Sequence,
    /// Alert, or an extension command (GetFirmwareUpdate, ...).
    pub cmd: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<ItemSpec>,
    /// The inline item (folded into `items` by [`CommandSpec::normalized`]).
    #[serde(flatten)]
    pub item: ItemSpec,
    /// Exec and Alert: echoed back in the device's report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlator: Option<String>,
    /// Alert: the alert code (1100 display, 1101 confirm...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// Atomic and Sequence: the commands inside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandSpec>,
}

/// Why a command cannot be queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SpecError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, SpecError> {
    Err(SpecError(msg.into()))
}

impl CommandSpec {
    /// The spec with its inline item moved into `items`, checked: a known command that
    /// servers may send, with the items or sub-commands it needs.
    pub fn normalized(mut self) -> Result<CommandSpec, SpecError> {
        self.normalize(0, false)?;
        Ok(self)
    }

    fn normalize(&mut self, depth: usize, in_atomic: bool) -> Result<(), SpecError> {
        if depth > MAX_DEPTH {
            return err("commands nested too deeply");
        }
        if self.item != ItemSpec::default() {
            let inline = std::mem::take(&mut self.item);
            self.items.insert(0, inline);
        }
        for it in &self.items {
            let size: usize = it
                .data
                .as_ref()
                .map(|d| d.texts().iter().map(|t| t.len()).sum())
                .unwrap_or(0);
            if size > MAX_DATA * 4 / 3 + 4 {
                return err(format!("an item of {} exceeds {MAX_DATA} bytes", self.cmd));
            }
            match it.encoding.as_deref() {
                None => {
                    if size > MAX_DATA {
                        return err(format!("an item of {} exceeds {MAX_DATA} bytes", self.cmd));
                    }
                }
                Some("b64") => {
                    for t in it.data.as_ref().map(DataSpec::texts).unwrap_or_default() {
                        if B64.decode(t).is_err() {
                            return err(format!("an item of {} is not valid base64", self.cmd));
                        }
                    }
                }
                Some(other) => return err(format!("unknown encoding {other:?} (b64 only)")),
            }
        }
        match self.cmd.as_str() {
            "Atomic" | "Sequence" => {
                if !self.items.is_empty() {
                    return err(format!("{} holds commands, not items", self.cmd));
                }
                if self.commands.is_empty() || self.commands.len() > MAX_CHILDREN {
                    return err(format!("{} needs 1 to {MAX_CHILDREN} commands", self.cmd));
                }
                let atomic = self.cmd == "Atomic";
                if atomic && in_atomic {
                    return err("an Atomic cannot hold another Atomic");
                }
                for c in &mut self.commands {
                    c.normalize(depth + 1, in_atomic || atomic)?;
                }
            }
            "Alert" => {
                if self.code.is_none() {
                    return err("Alert needs a code");
                }
            }
            _ => {
                if !self.commands.is_empty() {
                    return err(format!("{} cannot hold commands", self.cmd));
                }
                if self.items.is_empty() {
                    return err(format!("{} needs at least one item", self.cmd));
                }
                if self.cmd == "Get" && in_atomic {
                    return err("Get is not allowed inside Atomic");
                }
                let cmd = self.to_command()?;
                if cmd.direction() == Direction::ClientToServer {
                    return err(format!("{} is sent by devices, not servers", self.cmd));
                }
                let needs_target = !cmd.is_extension() || self.cmd == "GetFirmwareUpdate";
                if needs_target && self.items.iter().any(|i| i.target.is_none()) {
                    return err(format!("every item of {} needs a target", self.cmd));
                }
            }
        }
        Ok(())
    }

    /// The SyncML command (CmdIDs 0: the session numbers them).
    pub fn to_command(&self) -> Result<Command, SpecError> {
        let items = || self.items.iter().map(item).collect::<Vec<_>>();
        let body = || ItemCmd {
            correlator: self.correlator.clone(),
            ..ItemCmd::new(items())
        };
        let container = || -> Result<Container, SpecError> {
            Ok(Container {
                commands: self
                    .commands
                    .iter()
                    .map(CommandSpec::to_command)
                    .collect::<Result<_, _>>()?,
                ..Container::default()
            })
        };
        Ok(match self.cmd.as_str() {
            "Add" => Command::Add(body()),
            "Copy" => Command::Copy(body()),
            "Delete" => Command::Delete(body()),
            "Exec" => Command::Exec(body()),
            "Get" => Command::Get(body()),
            "Replace" => Command::Replace(body()),
            "GetFirmwareUpdate" => Command::GetFirmwareUpdate(body()),
            "VerifyFirmwareUpdate" => Command::VerifyFirmwareUpdate(body()),
            "SaveFirmwareUpdate" => Command::SaveFirmwareUpdate(body()),
            "ApplyFirmwareUpdate" => Command::ApplyFirmwareUpdate(body()),
            "ConfirmFirmwareUpdate" => Command::ConfirmFirmwareUpdate(body()),
            "SIMCardChange" => Command::SimCardChange(body()),
            "Download" => Command::Download(body()),
            "Update" => Command::Update(body()),
            "Atomic" => Command::Atomic(container()?),
            "Sequence" => Command::Sequence(container()?),
            "Alert" => Command::Alert(syncml_core::Alert {
                cmd_id: 0,
                no_resp: false,
                cred: None,
                data: self.code.map(syncml_core::AlertCode::from),
                correlator: self.correlator.clone(),
                items: items(),
                extra: Vec::new(),
            }),
            other => return err(format!("unknown command {other:?}")),
        })
    }
}

/// Makes `cmd` fit an XML message: binary data that XML cannot carry goes as base64
/// text with Format `b64` (the way DM carries binary data in XML); WBXML carries it as
/// it is, as opaque data.
pub fn fit_for_xml(cmd: &mut Command) {
    if let Command::Atomic(c) | Command::Sequence(c) = cmd {
        c.commands.iter_mut().for_each(fit_for_xml);
        return;
    }
    let Some(ic) = cmd.item_cmd_mut() else {
        return;
    };
    for item in &mut ic.items {
        let mut converted = false;
        for d in &mut item.data {
            if let Data::Opaque(b) = d {
                if !xml_can_carry(b) {
                    *d = Data::Text(B64.encode(&*b));
                    converted = true;
                }
            }
        }
        if converted {
            item.meta.get_or_insert_with(Default::default).format = Some("b64".into());
        }
    }
}

/// Whether bytes are text an XML 1.0 document can hold.
fn xml_can_carry(b: &[u8]) -> bool {
    std::str::from_utf8(b).is_ok_and(|s| {
        s.chars().all(|c| {
            matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && !matches!(c, '\u{FFFE}' | '\u{FFFF}'))
        })
    })
}

fn item(s: &ItemSpec) -> Item {
    let meta = (s.format.is_some() || s.type_.is_some())
        .then(|| Box::new(Meta::format_type(s.format.as_deref(), s.type_.as_deref())));
    Item {
        target: s.target.clone().map(Location::new),
        source: s.source.clone().map(Location::new),
        meta,
        data: s
            .data
            .as_ref()
            .map(|d| {
                d.texts()
                    .into_iter()
                    .map(|t| match s.encoding.as_deref() {
                        // Checked when queued (`normalized`).
                        Some("b64") => Data::Opaque(B64.decode(t).unwrap_or_default()),
                        _ => Data::text(t),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        more_data: false,
        extra: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_data_goes_as_base64_in_xml_and_as_it_is_in_wbxml() {
        let blob = B64.encode([0u8, 1, 0xff, 0xfe, b'x']);
        let json = format!(
            r#"{{"cmd": "Atomic", "commands": [{{"cmd": "Add", "target": "./Vendor/Blob", "data": "{blob}", "encoding": "b64", "format": "bin"}}, {{"cmd": "Replace", "target": "./Vendor/T", "data": "text"}}]}}"#
        );
        let cmd = spec(&json).unwrap().to_command().unwrap();
        let msg = |c: Command| {
            let mut b = syncml_core::MessageBuilder::new(
                syncml_core::DmVersion::V1_2,
                "1",
                1,
                "IMEI:1",
                "http://srv/dm",
            );
            b.command(c);
            b.finish()
        };
        // WBXML carries the bytes; XML cannot, until they are made base64 text.
        let wbxml = syncml_core::encode(&msg(cmd.clone()), syncml_core::Encoding::Wbxml).unwrap();
        assert_eq!(syncml_core::decode(&wbxml).unwrap(), msg(cmd.clone()));
        assert!(syncml_core::encode(&msg(cmd.clone()), syncml_core::Encoding::Xml).is_err());
        let mut fitted = cmd;
        fit_for_xml(&mut fitted);
        let xml = syncml_core::encode(&msg(fitted), syncml_core::Encoding::Xml).unwrap();
        let back = syncml_core::decode(&xml).unwrap();
        let Command::Atomic(a) = &back.body.commands[0] else {
            panic!("{back:?}")
        };
        let add = &a.commands[0].items()[0];
        assert_eq!(add.data_str(), Some(blob.as_str()));
        assert_eq!(add.meta.as_ref().unwrap().format.as_deref(), Some("b64"));
        // Text data is left alone, with the format it had.
        let replace = &a.commands[1].items()[0];
        assert_eq!(replace.data_str(), Some("text"));
        assert!(replace.meta.is_none());
    }

    fn spec(json: &str) -> Result<CommandSpec, SpecError> {
        serde_json::from_str::<CommandSpec>(json)
            .map_err(|e| SpecError(e.to_string()))?
            .normalized()
    }

    #[test]
    fn an_inline_item_becomes_the_first_item() {
        let s = spec(r#"{"cmd":"Replace","target":"./A","data":"1","format":"int"}"#).unwrap();
        assert_eq!(s.items.len(), 1);
        assert_eq!(s.items[0].target.as_deref(), Some("./A"));
        let Command::Replace(c) = s.to_command().unwrap() else {
            panic!()
        };
        assert_eq!(c.items[0].data_str(), Some("1"));
        assert_eq!(
            c.items[0].meta.as_ref().unwrap().format.as_deref(),
            Some("int")
        );
        // Normalizing twice changes nothing (stored specs are normalized).
        assert_eq!(s.clone().normalized().unwrap(), s);
    }

    #[test]
    fn extension_commands_keep_every_argument_in_order() {
        let s = spec(
            r#"{"cmd":"GetFirmwareUpdate","target":"./FWUpdate/1/PkgData","source":"http://f/x",
                "data":["DL_URL=http://f/x","DL_Prompt=1"]}"#,
        )
        .unwrap();
        let c = s.to_command().unwrap();
        assert_eq!(c.items()[0].arg("DL_Prompt"), Some("1"));
        assert_eq!(c.items()[0].data.len(), 2);
    }

    #[test]
    fn bad_commands_are_refused_with_a_reason() {
        for (json, why) in [
            (r#"{"cmd":"Frobnicate","target":"./A"}"#, "unknown"),
            (r#"{"cmd":"Get"}"#, "at least one item"),
            (r#"{"cmd":"Results","target":"./A"}"#, "unknown"),
            (
                r#"{"cmd":"ConfirmFirmwareUpdate","source":"./F"}"#,
                "sent by devices",
            ),
            (
                r#"{"cmd":"Atomic","commands":[{"cmd":"Get","target":"./A"}]}"#,
                "inside Atomic",
            ),
            (
                r#"{"cmd":"Atomic","commands":[{"cmd":"Atomic","commands":[{"cmd":"Delete","target":"./A"}]}]}"#,
                "another Atomic",
            ),
            (r#"{"cmd":"Sequence","commands":[]}"#, "needs 1 to"),
            (
                r#"{"cmd":"Replace","source":"./A","data":"x"}"#,
                "needs a target",
            ),
            (r#"{"cmd":"Alert","data":"hi"}"#, "needs a code"),
        ] {
            let e = spec(json).unwrap_err();
            assert!(e.0.contains(why), "{json}: {e}");
        }
    }

    #[test]
    fn a_sequence_becomes_a_container_of_its_commands() {
        let s = spec(
            r#"{"cmd":"Sequence","commands":[{"cmd":"Add","target":"./A","data":"1"},
               {"cmd":"Get","target":"./A"}]}"#,
        )
        .unwrap();
        let Command::Sequence(c) = s.to_command().unwrap() else {
            panic!()
        };
        assert_eq!(c.commands.len(), 2);
        assert_eq!(c.commands[1].name(), "Get");
    }
}
