//! The device management tree: nodes and properties, URIs, ACLs, DDF schemas, the
//! command executor, and crash-safe persistence.

pub mod accounts;
pub mod acl;
pub mod ddf;
pub mod dmtree;
pub mod doc;
pub mod error;
pub mod exec;
pub mod format;
pub mod handlers;
pub mod node;
pub mod objects;
pub mod store;
pub mod tnds;
pub mod tree;
pub mod uri;

pub use acl::{Acl, AclCmd};
pub use dmtree::DmTree;
pub use error::Error;
pub use exec::{Headless, Hooks, Response, Session};
pub use format::Format;
pub use node::{Kind, Props, Record};
pub use tree::{NodeRef, Op, Tree};
pub use uri::{Prop, Query, Uri, UriLimits};

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
