//! A message as a list of checks: what must match between a recording and a live
//! peer, with everything that legitimately varies left out (fixtures/sessions/README.md).
//!
//! Commands are named by what they act on, never by CmdID, so a Status is keyed by
//! the command it answers, which is looked up through its MsgRef/CmdRef in the
//! [`Index`] of the other side's messages.

use std::collections::HashMap;

use syncml_core::{Command, Data, Item, Meta, Status, SyncMl};

/// One thing compared: `key` names it, `value` is what must be equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub key: String,
    pub value: String,
}

/// What the commands sent so far were, by (MsgID, CmdID), for naming Statuses.
#[derive(Debug, Default, Clone)]
pub struct Index {
    names: HashMap<(u32, u32), String>,
    last_msg: u32,
}

impl Index {
    /// Adds the commands of one message (nested ones too).
    pub fn add(&mut self, msg: &SyncMl) {
        let m = msg.hdr.msg_id;
        self.last_msg = m;
        let mut stack: Vec<&Command> = msg.body.commands.iter().collect();
        while let Some(c) = stack.pop() {
            self.names.insert((m, c.cmd_id()), name_of(c));
            if let Command::Atomic(k) | Command::Sequence(k) = c {
                stack.extend(k.commands.iter());
            }
        }
    }

    fn name(&self, status: &Status) -> String {
        if status.cmd_ref == 0 || status.cmd.trim() == "SyncHdr" {
            return "SyncHdr".into();
        }
        let msg = status.msg_ref.unwrap_or(self.last_msg);
        match self.names.get(&(msg, status.cmd_ref)) {
            Some(n) => n.clone(),
            // A reference to nothing sent: the Status's own words, and the fact.
            None => format!("{} (unknown CmdRef)", status.cmd.trim()),
        }
    }
}

/// How a command is named in check keys: `Get ./DevInfo/Mod`, `Alert 1226`,
/// `Atomic`, `Exec ./FUMO/1/Update`.
pub fn name_of(c: &Command) -> String {
    match c {
        Command::Alert(a) => match a.data {
            Some(code) => format!("Alert {}", u16::from(code)),
            None => "Alert".into(),
        },
        Command::Atomic(_) | Command::Sequence(_) => c.name().to_owned(),
        Command::Status(s) => format!("Status {}", s.cmd.trim()),
        Command::Results(_) => "Results".into(),
        other => match other.items().first().and_then(item_uri) {
            Some(uri) => format!("{} {uri}", other.name()),
            None => other.name().to_owned(),
        },
    }
}

fn item_uri(i: &Item) -> Option<&str> {
    i.target
        .as_ref()
        .or(i.source.as_ref())
        .map(|l| l.loc_uri.trim())
}

/// The checks of one message. `peer_index` holds the messages of the other side,
/// which this message's Statuses answer; `server` is the URL of the live (or
/// recorded) server, written `{server}` in values.
pub fn checks_of(
    msg: &SyncMl,
    from_server: bool,
    peer_index: &Index,
    server: &str,
    objects: &mut Objects,
) -> Vec<Check> {
    let mut out = Vec::new();
    let h = &msg.hdr;
    let who = if from_server {
        format!("Target={}", h.target.loc_uri.trim())
    } else {
        format!("Source={}", h.source.loc_uri.trim())
    };
    out.push(Check {
        key: "header".into(),
        value: format!(
            "VerDTD={} VerProto={} {who}",
            h.ver_dtd.trim(),
            h.ver_proto.trim()
        ),
    });
    let mut norm = Norm { server, objects };
    for c in &msg.body.commands {
        command_checks(c, "", peer_index, &mut norm, &mut out);
    }
    out.push(Check {
        key: "Final".into(),
        value: msg.body.is_final.to_string(),
    });
    number_repeats(&mut out);
    out
}

/// Large objects being received, by URI: the chunks so far. Where a sender cuts its
/// chunks is its own choice (it depends on the length of the other side's URLs, for
/// one): chunks are compared by their metadata, and the whole object when it ends.
pub type Objects = HashMap<String, Vec<u8>>;

struct Norm<'a> {
    server: &'a str,
    objects: &'a mut Objects,
}

impl Norm<'_> {
    fn text(&self, s: &str) -> String {
        let s = s.trim();
        if self.server.is_empty() {
            s.to_owned()
        } else {
            s.replace(self.server, "{server}")
        }
    }

    fn data(&self, d: &Data) -> String {
        match d {
            Data::Text(t) => self.text(t),
            Data::Opaque(b) => match std::str::from_utf8(b) {
                Ok(t) => self.text(t),
                Err(_) => format!("<{} bytes: {}>", b.len(), fingerprint(b)),
            },
            Data::Nodes(n) => format!("{n:?}"),
        }
    }

    fn meta(&self, m: Option<&Meta>) -> String {
        let Some(m) = m else { return String::new() };
        let mut parts = Vec::new();
        if let Some(f) = &m.format {
            parts.push(format!("format={}", f.trim()));
        }
        if let Some(t) = &m.type_ {
            parts.push(format!("type={}", t.trim()));
        }
        if let Some(s) = m.size {
            parts.push(format!("size={s}"));
        }
        parts.join(" ")
    }

    fn item(&mut self, i: &Item) -> String {
        let uri = item_uri(i).unwrap_or("").to_owned();
        if i.more_data || self.objects.contains_key(&uri) {
            return self.chunk(i, uri);
        }
        let mut parts = Vec::new();
        if let Some(t) = &i.target {
            parts.push(format!("target={}", self.text(&t.loc_uri)));
        }
        if let Some(s) = &i.source {
            parts.push(format!("source={}", self.text(&s.loc_uri)));
        }
        let meta = self.meta(i.meta.as_deref());
        if !meta.is_empty() {
            parts.push(meta);
        }
        for d in &i.data {
            parts.push(format!("data={:?}", self.data(d)));
        }
        if i.more_data {
            parts.push("more-data".into());
        }
        parts.join(" ")
    }
}

impl Norm<'_> {
    /// A chunk of a large object: its metadata, and when it is the last one, the
    /// whole object's length and digest.
    fn chunk(&mut self, i: &Item, uri: String) -> String {
        let buf = self.objects.entry(uri.clone()).or_default();
        for d in &i.data {
            if let Some(b) = d.as_bytes() {
                buf.extend_from_slice(b);
            }
        }
        let meta = self.meta(i.meta.as_deref());
        if i.more_data {
            return format!("chunk {meta}");
        }
        let whole = self.objects.remove(&uri).unwrap_or_default();
        let text = String::from_utf8_lossy(&whole);
        let norm = self.text(&text);
        format!(
            "last chunk {meta} object={} bytes {}",
            norm.len(),
            fingerprint(norm.as_bytes())
        )
    }
}

/// A short, stable digest of bytes for showing binary data.
fn fingerprint(b: &[u8]) -> String {
    // FNV-1a: enough to tell two values apart in a report.
    let h = b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    });
    format!("{h:016x}")
}

fn command_checks(c: &Command, prefix: &str, peers: &Index, norm: &mut Norm, out: &mut Vec<Check>) {
    match c {
        Command::Status(s) => {
            let mut value = u16::from(s.data).to_string();
            if let Some(ch) = &s.chal {
                value.push_str(&format!(" chal={}", norm.meta(Some(&ch.meta))));
            }
            out.push(Check {
                key: format!("{prefix}Status {}", peers.name(s)),
                value,
            });
        }
        Command::Results(r) => {
            for i in &r.items {
                let mut item = i.clone();
                let uri = item_uri(i).unwrap_or("").to_owned();
                if item.meta.is_none() {
                    item.meta = r.meta.clone();
                }
                out.push(Check {
                    key: format!("{prefix}Results {uri}"),
                    value: norm.item(&item),
                });
            }
        }
        Command::Atomic(k) | Command::Sequence(k) => {
            let inner = format!("{prefix}{}/", c.name());
            out.push(Check {
                key: format!("{prefix}{}", c.name()),
                value: format!("{} commands", k.commands.len()),
            });
            for c in &k.commands {
                command_checks(c, &inner, peers, norm, out);
            }
        }
        other => {
            let meta = other.item_cmd().and_then(|ic| ic.meta.as_deref());
            let mut value = norm.meta(meta);
            for i in other.items() {
                if !value.is_empty() {
                    value.push_str("; ");
                }
                value.push_str(&norm.item(i));
            }
            out.push(Check {
                key: format!("{prefix}{}", name_of(other)),
                value,
            });
        }
    }
}

/// Repeated keys (two Gets of one node) get `#2`, `#3`... so each is one check.
fn number_repeats(checks: &mut [Check]) {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for c in checks.iter_mut() {
        let n = seen.entry(c.key.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            c.key = format!("{} #{n}", c.key);
        }
    }
}

/// Whether `key` is covered by one of the `vary` patterns (a trailing `*` matches
/// any key it starts).
pub fn varies(key: &str, vary: &[String]) -> bool {
    let base = key.split(" #").next().unwrap_or(key);
    vary.iter().any(|v| match v.strip_suffix('*') {
        Some(prefix) => base.starts_with(prefix),
        None => base == v,
    })
}

/// One compared check: the key, and `None` when it matched or what differed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub key: String,
    pub problem: Option<String>,
}

/// Compares a live message's checks with the recorded ones: every recorded check
/// must be there with the same value (unless its key varies), and nothing else.
pub fn compare(expected: &[Check], got: &[Check], vary: &[String]) -> Vec<Outcome> {
    let mut used = vec![false; got.len()];
    let mut out = Vec::new();
    for e in expected {
        let found = got
            .iter()
            .enumerate()
            .find(|(i, g)| !used[*i] && g.key == e.key);
        let problem = match found {
            None => Some(format!("expected {}, got nothing", short(&e.value))),
            Some((i, g)) => {
                used[i] = true;
                if g.value == e.value || varies(&e.key, vary) {
                    None
                } else {
                    Some(format!(
                        "expected {}, got {}",
                        short(&e.value),
                        short(&g.value)
                    ))
                }
            }
        };
        out.push(Outcome {
            key: e.key.clone(),
            problem,
        });
    }
    for (i, g) in got.iter().enumerate() {
        if !used[i] {
            out.push(Outcome {
                key: g.key.clone(),
                problem: Some(format!("unexpected: {}", short(&g.value))),
            });
        }
    }
    out
}

/// A value cut for one report line.
fn short(v: &str) -> String {
    const MAX: usize = 160;
    if v.is_empty() {
        return "(empty)".into();
    }
    if v.chars().count() <= MAX {
        return v.to_owned();
    }
    let head: String = v.chars().take(MAX).collect();
    format!(
        "{head}... ({} chars, {})",
        v.chars().count(),
        fingerprint(v.as_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncml_core::decode;

    fn msg(body: &str) -> SyncMl {
        let xml = format!(
            "<SyncML xmlns='SYNCML:SYNCML1.2'><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>\
             <SessionID>1</SessionID><MsgID>2</MsgID><Target><LocURI>dev</LocURI></Target>\
             <Source><LocURI>http://srv:1/dm</LocURI></Source></SyncHdr><SyncBody>{body}<Final/></SyncBody></SyncML>"
        );
        decode(xml.as_bytes()).unwrap()
    }

    /// The failed checks of `got` against `want` (both server messages).
    fn failed(want: &SyncMl, got: &SyncMl, idx: &Index) -> Vec<Outcome> {
        let a = checks_of(want, true, idx, "", &mut Objects::new());
        let b = checks_of(got, true, idx, "", &mut Objects::new());
        compare(&a, &b, &[])
            .into_iter()
            .filter(|o| o.problem.is_some())
            .collect()
    }

    fn client_pkg1() -> SyncMl {
        let xml = "<SyncML xmlns='SYNCML:SYNCML1.2'><SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto>\
             <SessionID>1</SessionID><MsgID>1</MsgID><Target><LocURI>http://srv:1/dm</LocURI></Target>\
             <Source><LocURI>dev</LocURI></Source></SyncHdr><SyncBody>\
             <Alert><CmdID>1</CmdID><Data>1201</Data></Alert><Final/></SyncBody></SyncML>";
        decode(xml.as_bytes()).unwrap()
    }

    #[test]
    fn statuses_are_named_by_the_command_they_answer() {
        let mut idx = Index::default();
        idx.add(&client_pkg1());
        let m = msg("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>212</Data></Status>\
                     <Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>1</CmdRef><Cmd>Alert</Cmd><Data>200</Data></Status>\
                     <Get><CmdID>3</CmdID><Item><Target><LocURI>./DevInfo/Mod</LocURI></Target></Item></Get>");
        let checks = checks_of(&m, true, &idx, "http://srv:1", &mut Objects::new());
        let keys: Vec<_> = checks.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "header",
                "Status SyncHdr",
                "Status Alert 1201",
                "Get ./DevInfo/Mod",
                "Final"
            ]
        );
        assert_eq!(checks[1].value, "212");
        assert_eq!(checks[0].value, "VerDTD=1.2 VerProto=DM/1.2 Target=dev");
    }

    #[test]
    fn ids_and_the_server_address_do_not_count_but_values_do() {
        let idx = Index::default();
        let a = msg("<Replace><CmdID>3</CmdID><Item><Target><LocURI>./X</LocURI></Target><Data>http://srv:1/dl/1</Data></Item></Replace>");
        let b = msg("<Replace><CmdID>9</CmdID><Item><Target><LocURI>./X</LocURI></Target><Data>http://other:2/dl/1</Data></Item></Replace>");
        let ca = checks_of(&a, true, &idx, "http://srv:1", &mut Objects::new());
        let cb = checks_of(&b, true, &idx, "http://other:2", &mut Objects::new());
        assert!(compare(&ca, &cb, &[]).iter().all(|o| o.problem.is_none()));
        let c = msg("<Replace><CmdID>3</CmdID><Item><Target><LocURI>./X</LocURI></Target><Data>http://srv:1/dl/2</Data></Item></Replace>");
        let cc = checks_of(&c, true, &idx, "http://srv:1", &mut Objects::new());
        let bad: Vec<_> = compare(&ca, &cc, &[])
            .into_iter()
            .filter(|o| o.problem.is_some())
            .collect();
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].key, "Replace ./X");
        // ... unless the key varies.
        assert!(compare(&ca, &cc, &["Replace ./*".into()])
            .iter()
            .all(|o| o.problem.is_none()));
    }

    #[test]
    fn a_missing_status_for_the_header_is_a_failure() {
        let mut idx = Index::default();
        idx.add(&client_pkg1());
        let with = msg("<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>212</Data></Status>");
        let without = msg("");
        let failed = failed(&with, &without, &idx);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].key, "Status SyncHdr");
        assert!(failed[0]
            .problem
            .as_deref()
            .unwrap()
            .contains("got nothing"));
    }

    #[test]
    fn repeated_commands_are_separate_checks_and_extra_ones_fail() {
        let idx = Index::default();
        let one =
            msg("<Get><CmdID>3</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Get>");
        let two = msg("<Get><CmdID>3</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Get>\
                       <Get><CmdID>4</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Get>");
        let failed = failed(&one, &two, &idx);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].key, "Get ./A #2");
    }

    #[test]
    fn atomic_contents_are_checked_one_by_one() {
        let idx = Index::default();
        let m = msg("<Atomic><CmdID>2</CmdID><Add><CmdID>3</CmdID><Item><Target><LocURI>./A</LocURI></Target><Data>1</Data></Item></Add></Atomic>");
        let keys: Vec<_> = checks_of(&m, true, &idx, "", &mut Objects::new())
            .into_iter()
            .map(|c| c.key)
            .collect();
        assert_eq!(keys, ["header", "Atomic", "Atomic/Add ./A", "Final"]);
    }

    #[test]
    fn large_objects_compare_whole_not_by_where_the_chunks_are_cut() {
        let idx = Index::default();
        let chunk = |data: &str, more: bool| {
            let md = if more { "<MoreData/>" } else { "" };
            msg(&format!(
                "<Replace><CmdID>3</CmdID><Item><Target><LocURI>./Big</LocURI></Target><Data>{data}</Data>{md}</Item></Replace>"
            ))
        };
        let run = |parts: &[(&str, bool)]| {
            let mut objects = Objects::new();
            parts
                .iter()
                .flat_map(|(d, m)| checks_of(&chunk(d, *m), true, &idx, "", &mut objects))
                .collect::<Vec<_>>()
        };
        let a = run(&[("abcd", true), ("efgh", false)]);
        let b = run(&[("abcde", true), ("fgh", false)]);
        assert!(compare(&a, &b, &[]).iter().all(|o| o.problem.is_none()));
        let c = run(&[("abcd", true), ("efgX", false)]);
        let bad: Vec<_> = compare(&a, &c, &[])
            .into_iter()
            .filter(|o| o.problem.is_some())
            .collect();
        assert_eq!(bad.len(), 1, "{bad:?}");
    }
}
