//! The standard objects: the DDFs shipped with the crate, and the tree `init`
//! creates from them (DevInfo, DevDetail, DMAcc, ./SyncML/DMAcc, FUMO, ./FWUpdate, SIM).

use crate::acl::Acl;
use crate::ddf::{parse_ddf, DdfNode, DfType, Schema};
use crate::dmtree::DmTree;
use crate::error::Error;
use crate::format::Format;
use crate::node::{Kind, Record};
use crate::uri::{child_path, UriLimits};

/// The shipped DDF documents, by file stem.
pub const SHIPPED_DDFS: [(&str, &[u8]); 7] = [
    ("devinfo", include_bytes!("../ddf/devinfo.xml")),
    ("devdetail", include_bytes!("../ddf/devdetail.xml")),
    ("dmacc", include_bytes!("../ddf/dmacc.xml")),
    ("dmacc-1.1", include_bytes!("../ddf/dmacc-1.1.xml")),
    ("fumo", include_bytes!("../ddf/fumo.xml")),
    ("fwupdate", include_bytes!("../ddf/fwupdate.xml")),
    ("sim", include_bytes!("../ddf/sim.xml")),
];

/// The schema of the shipped DDFs.
pub fn shipped_schema() -> Result<Schema, Error> {
    let mut s = Schema::default();
    for (name, bytes) in SHIPPED_DDFS {
        s.add(parse_ddf(bytes).map_err(|e| Error::Ddf(format!("shipped {name}.xml: {e}")))?);
    }
    Ok(s)
}

/// The record of a new node as its description says: format, type, default value.
pub fn record_for(d: &DdfNode) -> Record {
    let mut r = if d.format == Format::Node {
        Record::interior()
    } else {
        let v = d.default_value.clone().unwrap_or_default();
        Record::leaf(d.format, d.format.normalize(v.as_bytes()))
    };
    r.props.type_ = d.df_type.as_str().to_owned();
    if let (Kind::Interior, DfType::Mime(_)) = (&r.kind, &d.df_type) {
        r.props.type_.clear();
    }
    r
}

/// The ACL each standard object's root gets. The DDFs refine what each node allows.
fn object_acl(name: &str) -> &'static str {
    match name {
        "DevInfo" | "DevDetail" | "SIM" => "Get=*",
        // The device creates FUMO slots; servers Exec and fill them.
        "FUMO" => "Exec=*&Get=*&Replace=*",
        // Add and Get only: a server that adds an account or a package slot is
        // given its own rights on it (TND 8.3.7.1.3), and no other server can
        // take it over through rights on the parent.
        _ => "Add=*&Get=*",
    }
}

/// Values `init` writes unless told otherwise.
fn defaults(limits: &UriLimits) -> Vec<(String, String)> {
    let kv = |k: &str, v: String| (k.to_owned(), v);
    vec![
        kv("./DevInfo/DevId", "IMEI:000000000000000".into()),
        kv("./DevInfo/Man", "syncml-dm".into()),
        kv("./DevInfo/Mod", "dm-tree".into()),
        kv("./DevInfo/DmV", "1.2".into()),
        kv("./DevInfo/Lang", "en-US".into()),
        kv("./DevDetail/URI/MaxDepth", limits.max_depth.to_string()),
        kv("./DevDetail/URI/MaxTotLen", limits.max_tot_len.to_string()),
        kv("./DevDetail/URI/MaxSegLen", limits.max_seg_len.to_string()),
        kv("./DevDetail/DevTyp", "phone".into()),
        kv("./DevDetail/OEM", "syncml-dm".into()),
        kv("./DevDetail/FwV", "1.0".into()),
        kv("./DevDetail/SwV", "1.0".into()),
        kv("./DevDetail/HwV", "1.0".into()),
        kv("./DevDetail/LrgObj", "true".into()),
    ]
}

/// Creates the standard objects of the schema, then writes the default values and
/// `devinfo` (keys `Man`, `Mod` ... under ./DevInfo, or full paths `./DevDetail/FwV`).
pub fn create_standard(dm: &mut DmTree, devinfo: &[(String, String)]) -> Result<(), Error> {
    let roots: Vec<_> = dm.schema.roots().to_vec();
    for r in &roots {
        dm.tree.ensure_interior(&r.parent)?;
        dm.create_described(&r.parent, &r.node)?;
        if let Some(name) = &r.node.name {
            let path = child_path(&r.parent, name);
            if let Some(n) = dm.tree.get(&path) {
                let mut rec = n.record().clone();
                rec.props.acl = Acl::parse(object_acl(name))
                    .map_err(|e| Error::Ddf(format!("standard ACL of {name}: {e}")))?;
                dm.tree.put(&path, rec)?;
            }
        }
    }
    let given = devinfo.iter().map(|(k, v)| {
        let path = if k.starts_with("./") {
            k.clone()
        } else {
            format!("./DevInfo/{k}")
        };
        (path, v.clone())
    });
    for (path, value) in defaults(&UriLimits::default()).into_iter().chain(given) {
        let format = match dm.schema.lookup(&path) {
            crate::ddf::Lookup::Node(d) => d.format,
            _ => return Err(Error::NotFound(format!("{path} (not a described node)"))),
        };
        format
            .validate(value.as_bytes())
            .map_err(|e| Error::Ddf(format!("{path}: {e}")))?;
        dm.set(&path, &format.normalize(value.as_bytes()))?;
    }
    Ok(())
}
