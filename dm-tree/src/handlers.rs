//! Device wrappers: code a vendor registers at a URI to reach hardware.
//!
//! An [`ExecHandler`] runs when a server Execs a node (FUMO's Download, a reboot
//! node...). A [`ValueHandler`] supplies and takes the value of a leaf whose truth
//! lives outside the tree (battery level, the radio's IMSI). Patterns are canonical
//! paths in which a `*` segment matches any one name: `./FUMO/*/Download`.

use syncml_core::StatusCode;

use crate::tree::Tree;

/// What an Exec carries.
#[derive(Debug, Clone, Copy)]
pub struct ExecRequest<'a> {
    /// The canonical path of the executed node.
    pub path: &'a str,
    /// The Item's Data, if any.
    pub data: Option<&'a [u8]>,
    /// The Exec's Correlator, to echo in a later Generic Alert.
    pub correlator: Option<&'a str>,
    /// The server that sent it.
    pub server_id: &'a str,
}

/// Runs Exec on the nodes it is registered at.
pub trait ExecHandler: Send {
    /// Does the work (or starts it) and returns the Status: 200 when done, 202 when
    /// accepted and reported later (a FUMO download), an error code otherwise.
    /// Changes made to `tree` are journalled with the command's own.
    fn exec(&mut self, tree: &mut Tree, req: ExecRequest<'_>) -> StatusCode;
}

/// Supplies the values of dynamic leaves.
pub trait ValueHandler: Send {
    /// The current value.
    fn get(&mut self, path: &str) -> Result<Vec<u8>, StatusCode>;
    /// Takes a new value; by default such a leaf is read-only (405).
    fn replace(&mut self, _path: &str, _value: &[u8]) -> Result<(), StatusCode> {
        Err(StatusCode::CommandNotAllowed)
    }
}

impl<F> ExecHandler for F
where
    F: FnMut(&mut Tree, ExecRequest<'_>) -> StatusCode + Send,
{
    fn exec(&mut self, tree: &mut Tree, req: ExecRequest<'_>) -> StatusCode {
        self(tree, req)
    }
}

/// Handlers by URI pattern.
#[derive(Default)]
pub struct Handlers {
    exec: Vec<(String, Box<dyn ExecHandler>)>,
    value: Vec<(String, Box<dyn ValueHandler>)>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let exec: Vec<&str> = self.exec.iter().map(|(p, _)| p.as_str()).collect();
        let value: Vec<&str> = self.value.iter().map(|(p, _)| p.as_str()).collect();
        f.debug_struct("Handlers")
            .field("exec", &exec)
            .field("value", &value)
            .finish()
    }
}

impl Handlers {
    /// Registers an Exec handler; a later registration of the same pattern wins.
    pub fn on_exec(&mut self, pattern: &str, h: Box<dyn ExecHandler>) {
        self.exec.retain(|(p, _)| p != pattern);
        self.exec.push((pattern.to_owned(), h));
    }

    /// Registers a value handler; a later registration of the same pattern wins.
    pub fn on_value(&mut self, pattern: &str, h: Box<dyn ValueHandler>) {
        self.value.retain(|(p, _)| p != pattern);
        self.value.push((pattern.to_owned(), h));
    }

    /// The Exec handler for a path.
    pub fn exec_for(&mut self, path: &str) -> Option<&mut Box<dyn ExecHandler>> {
        self.exec
            .iter_mut()
            .find(|(p, _)| matches(p, path))
            .map(|(_, h)| h)
    }

    /// The value handler for a path.
    pub fn value_for(&mut self, path: &str) -> Option<&mut Box<dyn ValueHandler>> {
        self.value
            .iter_mut()
            .find(|(p, _)| matches(p, path))
            .map(|(_, h)| h)
    }

    /// Whether any value handler is registered (so that a Get can skip the search).
    pub fn has_values(&self) -> bool {
        !self.value.is_empty()
    }
}

/// Whether a canonical path matches a pattern (`*` matches one segment).
pub fn matches(pattern: &str, path: &str) -> bool {
    let mut a = pattern.split('/');
    let mut b = path.split('/');
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(p), Some(s)) if p == "*" || p == s => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_one_segment_per_star() {
        assert!(matches("./FUMO/*/Download", "./FUMO/fw1/Download"));
        assert!(!matches("./FUMO/*/Download", "./FUMO/fw1/Update"));
        assert!(!matches("./FUMO/*/Download", "./FUMO/a/b/Download"));
        assert!(!matches("./FUMO/*", "./FUMO"));
        assert!(matches(".", "."));
    }

    #[test]
    fn later_registration_wins_and_lookup_finds_by_pattern() {
        let mut h = Handlers::default();
        h.on_exec(
            "./A/*",
            Box::new(|_: &mut Tree, _: ExecRequest<'_>| StatusCode::Ok),
        );
        h.on_exec(
            "./A/*",
            Box::new(|_: &mut Tree, _: ExecRequest<'_>| StatusCode::AcceptedForProcessing),
        );
        let mut t = Tree::new();
        let req = ExecRequest {
            path: "./A/x",
            data: None,
            correlator: None,
            server_id: "s",
        };
        let code = h.exec_for("./A/x").map(|x| x.exec(&mut t, req));
        assert_eq!(code, Some(StatusCode::AcceptedForProcessing));
        assert!(h.exec_for("./B/x").is_none());
    }
}
