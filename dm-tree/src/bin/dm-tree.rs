//! `dm-tree`: create a device's management tree, execute a server's message on it,
//! read it, export it, and check its store.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dm_tree::ddf::ddf_document;
use dm_tree::doc::{write_wbxml, write_xml};
use dm_tree::exec::Headless;
use dm_tree::tnds::tnds_document;
use dm_tree::uri::{Query, TndsFields, Uri, UriLimits};
use dm_tree::{DmTree, Error, Session};
use syncml_core::codec::EncodeOptions;
use syncml_core::{decode, encode_with, Encoding};

/// A device's OMA DM management tree, kept in a state directory: the standard
/// objects (DevInfo, DevDetail, DMAcc, FUMO, ./FWUpdate, SIM), their DDFs, ACLs, and
/// a crash-safe store.
#[derive(Parser)]
#[command(name = "dm-tree", version, about, long_about = None)]
struct Cli {
    /// The state directory (created by `init`).
    #[arg(long, env = "DM_TREE_STATE")]
    state: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a device tree with the standard objects.
    Init {
        /// A further DDF document to enforce (may be repeated); it is loaded after
        /// the shipped ones and replaces a shipped description of the same node.
        #[arg(long = "ddf", value_name = "FILE")]
        ddf: Vec<PathBuf>,
        /// A DevInfo value, as KEY=VALUE (Man=Acme, DevId=IMEI:...), or a full path
        /// (./DevDetail/FwV=2.0). May be repeated.
        #[arg(long = "devinfo", value_name = "KEY=VALUE")]
        devinfo: Vec<String>,
    },
    /// Execute the commands of a SyncML message (XML or WBXML) as a server would
    /// have them executed, and print the reply a client sends (Status, Results).
    Apply {
        /// The ServerID the commands come from (the name ACLs use).
        #[arg(long)]
        server_id: String,
        /// The message file.
        msg: PathBuf,
        /// Print the reply as WBXML (to a file with --output) instead of XML.
        #[arg(long)]
        wbxml: bool,
        /// Write the reply to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Print a node: a leaf's value, an interior node's child names, or with
    /// `?prop=NAME`, `?list=Struct`, `?list=StructData` or `?list=TNDS+...` what
    /// those ask for. Local reads ignore ACLs.
    Get { uri: String },
    /// Print a subtree (the whole tree by default) as a TNDS document with every
    /// property and value, or as a DDF document.
    Export {
        uri: Option<String>,
        /// TNDS (the default).
        #[arg(long, conflicts_with = "ddf")]
        tnds: bool,
        /// DDF: the descriptions in force, and what undescribed nodes hold.
        #[arg(long)]
        ddf: bool,
        /// WBXML instead of XML (write it to a file with --output).
        #[arg(long)]
        wbxml: bool,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check the store: exit 0 if it is consistent, 1 with one line per problem in
    /// the tree, 2 if the store itself is damaged (its files fail their checks).
    Verify,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dm-tree: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    match cli.cmd {
        Cmd::Init { ddf, devinfo } => {
            let kv = devinfo
                .iter()
                .map(|s| {
                    s.split_once('=')
                        .map(|(k, v)| (k.trim().to_owned(), v.to_owned()))
                        .ok_or_else(|| Error::Ddf(format!("--devinfo {s}: not KEY=VALUE")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let dm = DmTree::init(&cli.state, &ddf, &kv)?;
            println!("created {} nodes in {}", dm.tree.len(), cli.state.display());
        }
        Cmd::Apply {
            server_id,
            msg,
            wbxml,
            output,
        } => {
            let bytes =
                std::fs::read(&msg).map_err(|e| Error::Io(format!("{}: {e}", msg.display())))?;
            let m = decode(&bytes).map_err(|e| Error::Ddf(format!("{}: {e}", msg.display())))?;
            let mut dm = open(&cli.state)?;
            let reply = Session::new(&server_id).apply_message(&mut dm, &mut Headless, &m);
            let (enc, opts) = if wbxml {
                (Encoding::Wbxml, EncodeOptions::default())
            } else {
                (Encoding::Xml, EncodeOptions::indented())
            };
            let out = encode_with(&reply, enc, &opts).map_err(|e| Error::Ddf(e.to_string()))?;
            emit(&out, output)?;
        }
        Cmd::Get { uri } => {
            let dm = open(&cli.state)?;
            let u = Uri::parse(&uri, &UriLimits::NONE)?;
            let n = dm
                .tree
                .get(u.as_str())
                .ok_or_else(|| Error::NotFound(u.to_string()))?;
            let text = match u.query() {
                Query::None => match n.value() {
                    Some(v) => String::from_utf8_lossy(v).into_owned(),
                    None => n.children().map(|c| c.name()).collect::<Vec<_>>().join("/"),
                },
                Query::Prop(p) => dm_tree::exec::prop_text(n, p)
                    .map_err(|c| Error::Ddf(format!("{uri}: status {c}")))?,
                Query::Struct => lines(n.descendants().iter().map(|d| d.path().to_owned())),
                Query::StructData => lines(n.descendants().iter().map(|d| match d.value() {
                    Some(v) => format!("{} = {}", d.path(), String::from_utf8_lossy(v)),
                    None => d.path().to_owned(),
                })),
                Query::Tnds(f) => {
                    let doc = tnds_document(n, &f, &|_| dm_tree::tnds::Visibility::Full);
                    String::from_utf8_lossy(&write_xml(&doc)?).into_owned()
                }
            };
            println!("{}", text.trim_end());
        }
        Cmd::Export {
            uri,
            tnds: _,
            ddf,
            wbxml,
            output,
        } => {
            let dm = open(&cli.state)?;
            let u = Uri::parse(uri.as_deref().unwrap_or("."), &UriLimits::NONE)?;
            let doc = if ddf {
                ddf_document(&dm.tree, &dm.schema, u.as_str())?
            } else {
                let n = dm
                    .tree
                    .get(u.as_str())
                    .ok_or_else(|| Error::NotFound(u.to_string()))?;
                tnds_document(n, &TndsFields::all(), &|_| dm_tree::tnds::Visibility::Full)
            };
            let out = if wbxml {
                write_wbxml(&doc)?
            } else {
                write_xml(&doc)?
            };
            emit(&out, output)?;
        }
        Cmd::Verify => {
            if !cli.state.join("tree.snap").exists() && !cli.state.join("tree.log").exists() {
                return Err(Error::NoTree(cli.state.display().to_string()));
            }
            let v = dm_tree::dmtree::verify(&cli.state)?;
            for p in &v.problems {
                println!("problem: {p}");
            }
            println!(
                "{}: generation {}, {} snapshot operations, {} commits, {} nodes{}",
                if v.problems.is_empty() {
                    "consistent"
                } else {
                    "INCONSISTENT"
                },
                v.store.generation,
                v.store.snapshot_ops,
                v.store.log_records,
                v.nodes,
                if v.store.torn_tail > 0 {
                    format!(
                        ", {} bytes of an interrupted commit to drop",
                        v.store.torn_tail
                    )
                } else {
                    String::new()
                }
            );
            if !v.problems.is_empty() {
                return Ok(ExitCode::from(1));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn open(dir: &std::path::Path) -> Result<DmTree, Error> {
    if !dir.join("tree.snap").exists() {
        return Err(Error::NoTree(dir.display().to_string()));
    }
    DmTree::open(dir)
}

fn lines(it: impl Iterator<Item = String>) -> String {
    it.collect::<Vec<_>>().join("\n")
}

fn emit(bytes: &[u8], output: Option<PathBuf>) -> Result<(), Error> {
    match output {
        Some(p) => {
            std::fs::write(&p, bytes).map_err(|e| Error::Io(format!("{}: {e}", p.display())))
        }
        None => std::io::stdout()
            .write_all(bytes)
            .map_err(|e| Error::Io(format!("standard output: {e}"))),
    }
}
