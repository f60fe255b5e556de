//! Provisioning a DM 1.2 server account (`./DMAcc/<x>`) in the device's tree, as
//! a bootstrap would: the server's address, the device's credentials (CLCRED) and,
//! optionally, the server's (SRVCRED).

use dm_tree::{Acl, DmTree};

/// What an account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountSpec {
    /// The node name under `./DMAcc`.
    pub name: String,
    pub server_id: String,
    /// The server's URL.
    pub addr: String,
    /// `BASIC`, `DIGEST` or `HMAC`.
    pub auth_type: String,
    /// The device's user name and password towards the server.
    pub user: String,
    pub password: String,
    /// The server's name and password towards the device: when set, the server
    /// must authenticate itself before the device executes anything.
    pub server_auth: Option<(String, String)>,
}

/// Writes the account (replacing one of the same name) and commits.
pub fn provision(dm: &mut DmTree, spec: &AccountSpec) -> Result<(), dm_tree::Error> {
    let base = format!("./DMAcc/{}", spec.name);
    if dm.tree.contains(&base) {
        dm.tree.remove(&base)?;
    }
    dm.tree.ensure_interior(&base)?;
    // The account belongs to its server: it may read and change it, no other may.
    let acl = Acl::parse(&format!(
        "Add={0}&Delete={0}&Get={0}&Replace={0}",
        spec.server_id
    ))
    .map_err(|e| dm_tree::Error::Io(format!("account ACL: {e}")))?;
    let mut rec = dm
        .tree
        .get(&base)
        .map(|n| n.record().clone())
        .unwrap_or_else(dm_tree::Record::interior);
    rec.props.acl = acl;
    dm.tree.put(&base, rec)?;
    let mut leaves = vec![
        ("AppID", "w7".to_owned()),
        ("ServerID", spec.server_id.clone()),
        ("Name", spec.server_id.clone()),
        ("AppAddr/1/Addr", spec.addr.clone()),
        ("AppAddr/1/AddrType", "URI".to_owned()),
        ("AAuthPref", spec.auth_type.clone()),
        ("AppAuth/1/AAuthLevel", "CLCRED".to_owned()),
        ("AppAuth/1/AAuthType", spec.auth_type.clone()),
        ("AppAuth/1/AAuthName", spec.user.clone()),
        ("AppAuth/1/AAuthSecret", spec.password.clone()),
        ("AppAuth/1/AAuthData", String::new()),
    ];
    if let Some((name, secret)) = &spec.server_auth {
        leaves.extend([
            ("AppAuth/2/AAuthLevel", "SRVCRED".to_owned()),
            ("AppAuth/2/AAuthType", spec.auth_type.clone()),
            ("AppAuth/2/AAuthName", name.clone()),
            ("AppAuth/2/AAuthSecret", secret.clone()),
            ("AppAuth/2/AAuthData", String::new()),
        ]);
    }
    for (rel, value) in leaves {
        let path = format!("{base}/{rel}");
        if let Some(parent) = dm_tree::uri::parent_path(&path) {
            dm.tree.ensure_interior(parent)?;
        }
        dm.set(&path, value.as_bytes())?;
    }
    dm.tree.commit()
}
