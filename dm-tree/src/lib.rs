//! The device management tree: node properties (Format, ACL) and their value rules.
pub mod acl;
pub mod format;
