//! DM server accounts as the tree holds them, in either layout: DM 1.2's
//! `./DMAcc/<x>` (AppAddr, AppAuth per level) and DM 1.1.2's flat
//! `./SyncML/DMAcc/<x>` (Addr, UserName/ClientPW/ClientNonce, ServerPW/ServerNonce).
//! A session engine reads the account of the server it talks to from here.

use crate::tree::{NodeRef, Tree};

/// Which layout an account was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `./DMAcc/<x>` (DM 1.2).
    V1_2,
    /// `./SyncML/DMAcc/<x>` (DM 1.1.2).
    V1_1,
}

/// One direction's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    /// `BASIC`, `DIGEST`, `HMAC` ... (DM 1.2 AAuthType; from AuthPref in 1.1.2).
    pub auth_type: String,
    pub name: String,
    pub secret: Vec<u8>,
    /// The nonce to use next (AAuthData / ClientNonce / ServerNonce).
    pub nonce: Vec<u8>,
    /// The node that keeps the nonce, where a new NextNonce is to be stored.
    pub nonce_path: String,
}

/// A DM server account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The canonical path of the account node.
    pub path: String,
    pub layout: Layout,
    pub server_id: String,
    pub name: String,
    /// The server's address (URL).
    pub addr: String,
    pub port: Option<u16>,
    pub auth_pref: String,
    /// What the client sends (CLCRED).
    pub client: Option<Credentials>,
    /// What the server must send (SRVCRED).
    pub server: Option<Credentials>,
}

/// Every account in the tree, 1.2 layout first.
pub fn accounts(tree: &Tree) -> Vec<Account> {
    let mut out = Vec::new();
    if let Some(root) = tree.get("./DMAcc") {
        out.extend(root.children().map(read_v12));
    }
    if let Some(root) = tree.get("./SyncML/DMAcc") {
        out.extend(root.children().map(read_v11));
    }
    out
}

/// The account of the server with this ServerID.
pub fn account_for(tree: &Tree, server_id: &str) -> Option<Account> {
    accounts(tree)
        .into_iter()
        .find(|a| a.server_id == server_id)
}

fn text(n: NodeRef<'_>, rel: &str) -> String {
    bytes(n, rel)
        .map(|b| String::from_utf8_lossy(&b).trim().to_owned())
        .unwrap_or_default()
}

fn bytes(n: NodeRef<'_>, rel: &str) -> Option<Vec<u8>> {
    let mut cur = n;
    for seg in rel.split('/') {
        cur = cur.children().find(|c| c.name() == seg)?;
    }
    cur.value().map(<[u8]>::to_vec)
}

fn read_v12(acc: NodeRef<'_>) -> Account {
    let addr = acc
        .children()
        .find(|c| c.name() == "AppAddr")
        .and_then(|a| a.children().next());
    let port = addr
        .and_then(|a| a.children().find(|c| c.name() == "Port"))
        .and_then(|p| p.children().next())
        .and_then(|p| text(p, "PortNbr").parse().ok());
    let mut a = Account {
        path: acc.path().to_owned(),
        layout: Layout::V1_2,
        server_id: text(acc, "ServerID"),
        name: text(acc, "Name"),
        addr: addr.map(|a| text(a, "Addr")).unwrap_or_default(),
        port,
        auth_pref: text(acc, "AAuthPref"),
        client: None,
        server: None,
    };
    let auths = acc.children().find(|c| c.name() == "AppAuth");
    for auth in auths.iter().flat_map(|x| x.children()) {
        let creds = Credentials {
            auth_type: text(auth, "AAuthType"),
            name: text(auth, "AAuthName"),
            secret: bytes(auth, "AAuthSecret").unwrap_or_default(),
            nonce: bytes(auth, "AAuthData").unwrap_or_default(),
            nonce_path: format!("{}/AAuthData", auth.path()),
        };
        match text(auth, "AAuthLevel").as_str() {
            "CLCRED" => a.client = Some(creds),
            "SRVCRED" => a.server = Some(creds),
            _ => {}
        }
    }
    a
}

fn read_v11(acc: NodeRef<'_>) -> Account {
    let auth_pref = text(acc, "AuthPref");
    // 1.1.2 names the scheme by its SyncML type; map it to the 1.2 names.
    let auth_type = match auth_pref.as_str() {
        "syncml:auth-md5" => "DIGEST",
        "syncml:auth-MAC" => "HMAC",
        "syncml:auth-basic" | "" => "BASIC",
        other => other,
    }
    .to_owned();
    let server_id = text(acc, "ServerId");
    Account {
        path: acc.path().to_owned(),
        layout: Layout::V1_1,
        server_id: server_id.clone(),
        name: text(acc, "Name"),
        addr: text(acc, "Addr"),
        port: text(acc, "PortNbr").parse().ok(),
        auth_pref,
        client: Some(Credentials {
            auth_type: auth_type.clone(),
            name: text(acc, "UserName"),
            secret: bytes(acc, "ClientPW").unwrap_or_default(),
            nonce: bytes(acc, "ClientNonce").unwrap_or_default(),
            nonce_path: format!("{}/ClientNonce", acc.path()),
        }),
        server: Some(Credentials {
            auth_type,
            name: server_id,
            secret: bytes(acc, "ServerPW").unwrap_or_default(),
            nonce: bytes(acc, "ServerNonce").unwrap_or_default(),
            nonce_path: format!("{}/ServerNonce", acc.path()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::Format;
    use crate::node::Record;

    fn leaf(t: &mut Tree, path: &str, v: &str) {
        t.put(path, Record::leaf(Format::Chr, v.as_bytes()))
            .unwrap();
    }

    #[test]
    fn reads_both_layouts() {
        let mut t = Tree::new();
        let a = "./DMAcc/acme";
        leaf(&mut t, &format!("{a}/ServerID"), "acme-dm");
        leaf(&mut t, &format!("{a}/Name"), "Acme");
        leaf(
            &mut t,
            &format!("{a}/AppAddr/1/Addr"),
            "https://dm.acme.test/dm",
        );
        leaf(&mut t, &format!("{a}/AppAddr/1/Port/1/PortNbr"), "443");
        leaf(&mut t, &format!("{a}/AAuthPref"), "DIGEST");
        leaf(&mut t, &format!("{a}/AppAuth/c/AAuthLevel"), "CLCRED");
        leaf(&mut t, &format!("{a}/AppAuth/c/AAuthType"), "DIGEST");
        leaf(&mut t, &format!("{a}/AppAuth/c/AAuthName"), "dev1");
        leaf(&mut t, &format!("{a}/AppAuth/c/AAuthSecret"), "pw");
        leaf(&mut t, &format!("{a}/AppAuth/s/AAuthLevel"), "SRVCRED");
        leaf(&mut t, &format!("{a}/AppAuth/s/AAuthName"), "acme-dm");
        let o = "./SyncML/DMAcc/old";
        leaf(&mut t, &format!("{o}/ServerId"), "legacy");
        leaf(&mut t, &format!("{o}/Addr"), "http://old.test/");
        leaf(&mut t, &format!("{o}/AuthPref"), "syncml:auth-md5");
        leaf(&mut t, &format!("{o}/UserName"), "dev1");
        leaf(&mut t, &format!("{o}/ClientPW"), "cpw");

        let all = accounts(&t);
        assert_eq!(all.len(), 2);
        let n = account_for(&t, "acme-dm").unwrap();
        assert_eq!(
            (n.layout, n.addr.as_str(), n.port),
            (Layout::V1_2, "https://dm.acme.test/dm", Some(443))
        );
        let c = n.client.unwrap();
        assert_eq!(
            (c.auth_type.as_str(), c.name.as_str(), &c.secret[..]),
            ("DIGEST", "dev1", &b"pw"[..])
        );
        assert_eq!(c.nonce_path, "./DMAcc/acme/AppAuth/c/AAuthData");
        assert_eq!(n.server.unwrap().name, "acme-dm");
        let l = account_for(&t, "legacy").unwrap();
        assert_eq!(l.layout, Layout::V1_1);
        assert_eq!(l.client.as_ref().unwrap().auth_type, "DIGEST");
        assert_eq!(l.client.unwrap().secret, b"cpw");
        assert_eq!(
            l.server.unwrap().nonce_path,
            "./SyncML/DMAcc/old/ServerNonce"
        );
        assert!(account_for(&t, "nobody").is_none());
    }
}
