//! The update-package container: a header that says what a firmware (or other
//! component) package is for and how to check it, followed by the payload, a whole
//! image or a bsdiff delta.
//!
//! The header carries the device model, component, source and target versions, the
//! payload kind, the payload's length, CRC-32 and SHA-256, the rebuilt image's
//! length and SHA-256, an optional Ed25519 signature over the header, and its own
//! CRC-32. Because the signature covers the digests, not the payload, a device can
//! check a package streamed from storage: [`parse_header`] on the first bytes,
//! [`Header::verify_signature`], then [`PayloadCheck`] over the rest. PACKAGE.md
//! gives the byte layout.
//!
//! ```
//! use syncml_core::package::{build_delta, Package, SigningKey, Spec};
//!
//! let key = SigningKey::generate()?;
//! let spec = Spec {
//!     model: "X1".into(),
//!     component: "firmware".into(),
//!     from_version: "1.0".into(),
//!     to_version: "1.1".into(),
//! };
//! let (old, new) = (b"firmware image one".to_vec(), b"firmware image two".to_vec());
//! let bytes = build_delta(&spec, &old, &new, Some(&key))?;
//!
//! let pkg = Package::parse(&bytes)?;
//! pkg.check_integrity()?;
//! pkg.verify_signature(&[key.public()])?;
//! pkg.check_fit("X1", "1.0")?;
//! assert_eq!(pkg.apply(&old, 1 << 20)?, new);
//! # Ok::<(), syncml_core::package::PackageError>(())
//! ```

mod build;
mod check;
mod delta;
mod error;
mod header;
mod keys;

pub use build::{build_delta, build_full, Spec};
pub use check::{Package, PayloadCheck};
pub use error::PackageError;
pub use header::{
    parse_header, Header, PayloadKind, FORMAT_VERSION, MAGIC, MAX_FIELD_LEN, MAX_HEADER_LEN,
    MAX_PAYLOAD_LEN, MIN_HEADER_LEN,
};
pub use keys::{PublicKey, SigningKey};

/// Checks a header's signature with the trusted keys, from the header alone (no
/// payload needed). Same as [`Header::verify_signature`].
pub fn verify_header_signature(header: &Header, keys: &[PublicKey]) -> Result<(), PackageError> {
    header.verify_signature(keys)
}
