//! The ACL property of a node (TND 8.3.7.1): which server identifiers may run which
//! commands on the node.
//!
//! Grammar (TND 8.3.7.1.5), encoded by [`Acl::parse`]:
//!
//! ```text
//! <acl>                ::= <acl-value> | "No value"
//! <acl-value>          ::= <acl-entry> | <acl-value> & <acl-entry>
//! <acl-entry>          ::= <command> = <server-identifiers>
//! <server-identifiers> ::= <server-identifier> | <server-identifier> + <server-identifiers>
//! <server-identifier>  ::= * | all printable characters except '=', '&', '*', '+'
//!                          or white space
//! <command>            ::= Add | Delete | Exec | Get | Replace
//! ```
//!
//! So a server identifier can never contain '=', '&', '*', '+', white space (nor, being
//! "printable", a control character), and the names of commands are matched exactly.
//! "No value" is the empty string. `*` may sit beside named servers (`Get=*+srv1`): the
//! spec says it SHOULD NOT, but such an entry is still grammatical and the wildcard then
//! overrides the names, so it is accepted and kept as written. A command without any
//! server identifier is not allowed (8.3.7.1.1), which is why `Get=` is refused.

use std::fmt;
use std::str::FromStr;

/// The commands an ACL grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AclCmd {
    Add,
    Delete,
    Exec,
    Get,
    Replace,
}

impl AclCmd {
    /// Every command, in the canonical order used when an ACL is displayed.
    pub const ALL: [AclCmd; 5] = [
        AclCmd::Add,
        AclCmd::Delete,
        AclCmd::Exec,
        AclCmd::Get,
        AclCmd::Replace,
    ];

    /// The name as written in an ACL string.
    pub fn name(self) -> &'static str {
        match self {
            AclCmd::Add => "Add",
            AclCmd::Delete => "Delete",
            AclCmd::Exec => "Exec",
            AclCmd::Get => "Get",
            AclCmd::Replace => "Replace",
        }
    }

    /// Exact, case-sensitive match: the grammar spells the names one way only.
    pub fn from_name(s: &str) -> Option<AclCmd> {
        AclCmd::ALL.into_iter().find(|c| c.name() == s)
    }
}

impl fmt::Display for AclCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Who a grant names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// `*`: any server identifier the session authenticated as.
    Any,
    /// One server identifier (DMAcc ServerID), compared case-sensitively.
    Server(String),
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::Any => f.write_str("*"),
            Principal::Server(id) => f.write_str(id),
        }
    }
}

/// Why an ACL string or grant was refused; each names the offending part so a
/// Replace on `?prop=ACL` can be answered with a useful reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("empty ACL entry (stray '&')")]
    EmptyEntry,
    #[error("ACL entry {0:?} has no '='")]
    MissingEquals(String),
    #[error("unknown ACL command {0:?}")]
    UnknownCommand(String),
    #[error("ACL command {0} given twice")]
    DuplicateCommand(AclCmd),
    #[error("empty server identifier for ACL command {0}")]
    EmptyServerId(AclCmd),
    #[error("server identifier {id:?} contains forbidden character {ch:?}")]
    InvalidServerId { id: String, ch: char },
}

/// A node's ACL. Commands are kept in the canonical order (Add, Delete, Exec, Get,
/// Replace) rather than as first seen, so that two ACLs granting the same rights in a
/// different entry order compare equal and display identically; principals keep their
/// insertion order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Acl {
    /// The grants, sorted by command (stable: principals of one command in insertion
    /// order). One vector rather than one per command keeps the ACL of the many nodes
    /// that set none to an empty vector, 24 bytes.
    grants: Vec<(AclCmd, Principal)>,
}

impl Acl {
    /// Parses the value of `?prop=ACL`. Surrounding white space (from pretty-printed
    /// XML) is ignored, since neither commands nor server identifiers may contain any.
    pub fn parse(s: &str) -> Result<Acl, AclError> {
        let s = s.trim();
        let mut acl = Acl::default();
        if s.is_empty() {
            return Ok(acl);
        }
        for entry in s.split('&') {
            if entry.is_empty() {
                return Err(AclError::EmptyEntry);
            }
            let (name, ids) = entry
                .split_once('=')
                .ok_or_else(|| AclError::MissingEquals(entry.to_owned()))?;
            let cmd =
                AclCmd::from_name(name).ok_or_else(|| AclError::UnknownCommand(name.to_owned()))?;
            // Every parsed entry adds at least one principal, so a non-empty list means
            // the command was already given.
            if acl.names(cmd) {
                return Err(AclError::DuplicateCommand(cmd));
            }
            for id in ids.split('+') {
                let principal = if id == "*" {
                    Principal::Any
                } else {
                    Principal::Server(id.to_owned())
                };
                acl.allow(cmd, principal)?;
            }
        }
        Ok(acl)
    }

    /// An empty ACL means "inherit from the parent" (TND 8.3.7.1.1); only the root must
    /// never be empty.
    pub fn is_empty(&self) -> bool {
        self.grants.is_empty()
    }

    /// Whether the ACL grants `cmd` to anyone (for describing a node's access).
    pub fn names(&self, cmd: AclCmd) -> bool {
        self.grants.iter().any(|(c, _)| *c == cmd)
    }

    /// Whether `server_id` may run `cmd` under this ACL alone. A command the ACL does not
    /// name is denied: inheritance is not per command, it applies only when the whole ACL
    /// is empty, and resolving it is the tree's job (an empty ACL grants nothing here).
    pub fn grants(&self, cmd: AclCmd, server_id: &str) -> bool {
        self.grants.iter().any(|(c, p)| {
            *c == cmd
                && match p {
                    Principal::Any => true,
                    Principal::Server(id) => id == server_id,
                }
        })
    }

    /// Adds a grant, ignoring one already present. Refuses a server identifier that the
    /// grammar forbids, so that every ACL displays as a string that parses back to it.
    pub fn allow(&mut self, cmd: AclCmd, p: Principal) -> Result<(), AclError> {
        if let Principal::Server(id) = &p {
            check_server_id(cmd, id)?;
        }
        if !self.grants.iter().any(|(c, q)| *c == cmd && *q == p) {
            let at = self.grants.partition_point(|(c, _)| *c <= cmd);
            self.grants.insert(at, (cmd, p));
        }
        Ok(())
    }

    /// Every server identifier named, once each, in order of first appearance in the
    /// canonical command order; used when a server account is deleted (TND 8.3.7.1.4)
    /// and by tests and tools.
    pub fn servers(&self) -> impl Iterator<Item = &str> + '_ {
        let mut seen: Vec<&str> = Vec::new();
        for (_, p) in &self.grants {
            if let Principal::Server(id) = p {
                if !seen.contains(&id.as_str()) {
                    seen.push(id);
                }
            }
        }
        seen.into_iter()
    }

    /// The root default `Add=*&Get=*` (TND 8.3.7.1.2), so any authenticated server can
    /// always extend the tree.
    pub fn root_default() -> Acl {
        let mut acl = Acl::default();
        acl.grants.push((AclCmd::Add, Principal::Any));
        acl.grants.push((AclCmd::Get, Principal::Any));
        acl
    }
}

fn check_server_id(cmd: AclCmd, id: &str) -> Result<(), AclError> {
    if id.is_empty() {
        return Err(AclError::EmptyServerId(cmd));
    }
    let forbidden =
        |c: char| matches!(c, '=' | '&' | '*' | '+') || c.is_whitespace() || c.is_control();
    match id.chars().find(|&c| forbidden(c)) {
        Some(ch) => Err(AclError::InvalidServerId {
            id: id.to_owned(),
            ch,
        }),
        None => Ok(()),
    }
}

impl fmt::Display for Acl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut last: Option<AclCmd> = None;
        for (cmd, p) in &self.grants {
            match last {
                Some(l) if l == *cmd => f.write_str("+")?,
                Some(_) => write!(f, "&{cmd}=")?,
                None => write!(f, "{cmd}=")?,
            }
            last = Some(*cmd);
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl FromStr for Acl {
    type Err = AclError;

    fn from_str(s: &str) -> Result<Acl, AclError> {
        Acl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn server(id: &str) -> Principal {
        Principal::Server(id.to_owned())
    }

    #[test]
    fn command_names() {
        for c in AclCmd::ALL {
            assert_eq!(AclCmd::from_name(c.name()), Some(c));
            assert_eq!(c.to_string(), c.name());
        }
        assert_eq!(AclCmd::from_name("get"), None);
        assert_eq!(AclCmd::from_name("Copy"), None);
        assert_eq!(AclCmd::from_name(" Get"), None);
        let mut sorted = AclCmd::ALL;
        sorted.sort();
        assert_eq!(sorted, AclCmd::ALL);
    }

    #[test]
    fn empty_acl_inherits() {
        for s in ["", "  ", "\r\n"] {
            let acl = Acl::parse(s).unwrap();
            assert!(acl.is_empty());
            assert_eq!(acl.to_string(), "");
            assert_eq!(acl, Acl::default());
            for c in AclCmd::ALL {
                assert!(!acl.grants(c, "srv1"));
            }
        }
    }

    #[test]
    fn parses_the_spec_example() {
        let acl: Acl =
            "Add=www.sonera.fi-8765&Delete=www.sonera.fi-8765&Replace=www.sonera.fi-8765+321_ibm.com&Get=*"
                .parse()
                .unwrap();
        assert!(acl.grants(AclCmd::Add, "www.sonera.fi-8765"));
        assert!(!acl.grants(AclCmd::Add, "321_ibm.com"));
        assert!(acl.grants(AclCmd::Replace, "321_ibm.com"));
        assert!(acl.grants(AclCmd::Get, "anyone"));
        assert!(!acl.grants(AclCmd::Exec, "www.sonera.fi-8765"));
        assert_eq!(
            acl.to_string(),
            "Add=www.sonera.fi-8765&Delete=www.sonera.fi-8765&Get=*&Replace=www.sonera.fi-8765+321_ibm.com"
        );
        assert_eq!(
            acl.servers().collect::<Vec<_>>(),
            ["www.sonera.fi-8765", "321_ibm.com"]
        );
    }

    #[test]
    fn grants_and_denials() {
        let acl = Acl::parse("Get=srv1+srv2&Replace=srv1").unwrap();
        assert!(!acl.is_empty());
        assert!(acl.grants(AclCmd::Get, "srv1"));
        assert!(acl.grants(AclCmd::Get, "srv2"));
        assert!(!acl.grants(AclCmd::Get, "srv3"));
        assert!(!acl.grants(AclCmd::Get, "SRV1"), "ids are case-sensitive");
        assert!(!acl.grants(AclCmd::Get, ""));
        assert!(acl.grants(AclCmd::Replace, "srv1"));
        assert!(!acl.grants(AclCmd::Replace, "srv2"));
        // Not named means denied, never inherited per command.
        assert!(!acl.grants(AclCmd::Add, "srv1"));
        assert!(!acl.grants(AclCmd::Delete, "srv1"));
        assert!(!acl.grants(AclCmd::Exec, "srv1"));
    }

    #[test]
    fn wildcard_beside_names_is_kept_and_wins() {
        let acl = Acl::parse("Get=*+srv1").unwrap();
        assert!(acl.grants(AclCmd::Get, "other"));
        assert!(acl.grants(AclCmd::Get, "srv1"));
        assert_eq!(acl.to_string(), "Get=*+srv1");
        assert_eq!(Acl::parse("Get=srv1+*").unwrap().to_string(), "Get=srv1+*");
    }

    #[test]
    fn display_is_canonical() {
        let acl = Acl::parse("Replace=b+a&Get=x&Add=*&Exec=e&Delete=d").unwrap();
        assert_eq!(acl.to_string(), "Add=*&Delete=d&Exec=e&Get=x&Replace=b+a");
        assert_eq!(acl, Acl::parse(&acl.to_string()).unwrap());
        assert_eq!(
            Acl::parse("Get=*&Add=*").unwrap(),
            Acl::parse("Add=*&Get=*").unwrap()
        );
        // Duplicate principals collapse.
        assert_eq!(Acl::parse("Get=a+a+*+*").unwrap().to_string(), "Get=a+*");
        assert_eq!(Acl::parse(" Get=a\n").unwrap().to_string(), "Get=a");
    }

    #[test]
    fn root_default() {
        let acl = Acl::root_default();
        assert_eq!(acl.to_string(), "Add=*&Get=*");
        assert_eq!(acl, Acl::parse("Add=*&Get=*").unwrap());
        assert!(acl.grants(AclCmd::Add, "x"));
        assert!(acl.grants(AclCmd::Get, "x"));
        assert!(!acl.grants(AclCmd::Replace, "x"));
        assert_eq!(acl.servers().count(), 0);
    }

    #[test]
    fn allow_adds_without_duplicates() {
        let mut acl = Acl::default();
        acl.allow(AclCmd::Replace, server("s1")).unwrap();
        acl.allow(AclCmd::Replace, server("s1")).unwrap();
        acl.allow(AclCmd::Get, Principal::Any).unwrap();
        acl.allow(AclCmd::Get, Principal::Any).unwrap();
        acl.allow(AclCmd::Replace, server("s2")).unwrap();
        assert_eq!(acl.to_string(), "Get=*&Replace=s1+s2");
        assert_eq!(acl.servers().collect::<Vec<_>>(), ["s1", "s2"]);
    }

    #[test]
    fn allow_refuses_what_would_not_parse_back() {
        let mut acl = Acl::default();
        assert_eq!(
            acl.allow(AclCmd::Get, server("")),
            Err(AclError::EmptyServerId(AclCmd::Get))
        );
        for (id, ch) in [
            ("a+b", '+'),
            ("a&b", '&'),
            ("a=b", '='),
            ("*x", '*'),
            ("a b", ' '),
            ("a\tb", '\t'),
            ("a\u{7f}", '\u{7f}'),
            ("a\u{a0}b", '\u{a0}'),
        ] {
            assert_eq!(
                acl.allow(AclCmd::Get, server(id)),
                Err(AclError::InvalidServerId { id: id.into(), ch })
            );
        }
        assert!(acl.is_empty());
    }

    #[test]
    fn rejections() {
        let cases: &[(&str, AclError)] = &[
            ("Get", AclError::MissingEquals("Get".into())),
            ("Get=*&Add", AclError::MissingEquals("Add".into())),
            ("Get=*&", AclError::EmptyEntry),
            ("&Get=*", AclError::EmptyEntry),
            ("Get=*&&Add=*", AclError::EmptyEntry),
            ("Copy=*", AclError::UnknownCommand("Copy".into())),
            ("get=*", AclError::UnknownCommand("get".into())),
            ("=*", AclError::UnknownCommand("".into())),
            ("Get =*", AclError::UnknownCommand("Get ".into())),
            ("Get=*&Get=srv1", AclError::DuplicateCommand(AclCmd::Get)),
            ("Add=a&Get=b&Add=c", AclError::DuplicateCommand(AclCmd::Add)),
            ("Get=", AclError::EmptyServerId(AclCmd::Get)),
            ("Get=a+", AclError::EmptyServerId(AclCmd::Get)),
            ("Get=+a", AclError::EmptyServerId(AclCmd::Get)),
            ("Get=a++b", AclError::EmptyServerId(AclCmd::Get)),
            (
                "Get=a=b",
                AclError::InvalidServerId {
                    id: "a=b".into(),
                    ch: '=',
                },
            ),
            (
                "Get=**",
                AclError::InvalidServerId {
                    id: "**".into(),
                    ch: '*',
                },
            ),
            (
                "Get=a*",
                AclError::InvalidServerId {
                    id: "a*".into(),
                    ch: '*',
                },
            ),
            (
                "Get=a b",
                AclError::InvalidServerId {
                    id: "a b".into(),
                    ch: ' ',
                },
            ),
            ("Get=a& Add=*", AclError::UnknownCommand(" Add".into())),
        ];
        for (s, want) in cases {
            assert_eq!(Acl::parse(s).as_ref(), Err(want), "{s:?}");
        }
    }

    #[test]
    fn error_messages_name_the_offending_part() {
        assert_eq!(
            Acl::parse("Copy=*").unwrap_err().to_string(),
            "unknown ACL command \"Copy\""
        );
        assert_eq!(
            Acl::parse("Get=*&Get=a").unwrap_err().to_string(),
            "ACL command Get given twice"
        );
        assert_eq!(
            Acl::parse("Get=a+").unwrap_err().to_string(),
            "empty server identifier for ACL command Get"
        );
        assert_eq!(
            Acl::parse("Get=a b").unwrap_err().to_string(),
            "server identifier \"a b\" contains forbidden character ' '"
        );
        assert_eq!(
            Acl::parse("Add").unwrap_err().to_string(),
            "ACL entry \"Add\" has no '='"
        );
    }

    #[test]
    fn servers_are_listed_once() {
        let acl = Acl::parse("Add=b&Get=a+b+*&Replace=c+a").unwrap();
        assert_eq!(acl.servers().collect::<Vec<_>>(), ["b", "a", "c"]);
    }

    fn principal() -> impl Strategy<Value = Principal> {
        prop_oneof![
            1 => Just(Principal::Any),
            4 => "[A-Za-z0-9._:/@%-]{1,12}".prop_map(Principal::Server),
            1 => "[é✓ß_]{1,4}".prop_map(Principal::Server),
        ]
    }

    proptest! {
        #[test]
        fn built_acl_round_trips(grants in proptest::collection::vec((0..5usize, principal()), 0..12)) {
            let mut acl = Acl::default();
            for (i, p) in grants {
                prop_assert_eq!(acl.allow(AclCmd::ALL[i], p), Ok(()));
            }
            let text = acl.to_string();
            prop_assert_eq!(Acl::parse(&text), Ok(acl.clone()));
            prop_assert_eq!(text.is_empty(), acl.is_empty());
        }

        #[test]
        fn parse_never_panics(s in "(?s).{0,40}") {
            if let Ok(acl) = Acl::parse(&s) {
                prop_assert_eq!(Acl::parse(&acl.to_string()), Ok(acl));
            }
        }

        #[test]
        fn parse_never_panics_on_acl_like_text(s in "[AddeGtRplcxE=&+* a-]{0,30}") {
            if let Ok(acl) = Acl::parse(&s) {
                prop_assert_eq!(Acl::parse(&acl.to_string()), Ok(acl));
            }
        }
    }
}
