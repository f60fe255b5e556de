//! Building packages: a full image or a delta, optionally signed.

use super::check::sha256;
use super::delta;
use super::error::PackageError;
use super::header::{Header, PayloadKind, FORMAT_VERSION, MAX_FIELD_LEN, MAX_PAYLOAD_LEN};
use super::keys::SigningKey;

/// What a package is for: the header's strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spec {
    /// The device model (./DevInfo/Mod).
    pub model: String,
    /// The component it updates, e.g. "firmware".
    pub component: String,
    /// The version it updates from (empty for a full package = any).
    pub from_version: String,
    /// The version it installs.
    pub to_version: String,
}

impl Spec {
    /// Checks the strings for a package of `kind`: model, component and to_version
    /// non-empty, a delta's from_version non-empty, none longer than
    /// [`MAX_FIELD_LEN`] bytes or holding control characters.
    pub fn validate(&self, kind: PayloadKind) -> Result<(), PackageError> {
        let fields = [
            ("model", &self.model, true),
            ("component", &self.component, true),
            (
                "from-version",
                &self.from_version,
                kind == PayloadKind::Delta,
            ),
            ("to-version", &self.to_version, true),
        ];
        for (name, value, required) in fields {
            let problem = if required && value.is_empty() {
                "is empty"
            } else if value.len() > MAX_FIELD_LEN {
                "is longer than 1024 bytes"
            } else if value.chars().any(char::is_control) {
                "holds a control character"
            } else {
                continue;
            };
            return Err(PackageError::BadSpec(format!("{name} {problem}")));
        }
        Ok(())
    }
}

/// A package whose payload is the whole new `image`.
///
/// Never fails: call [`Spec::validate`] first to refuse bad strings (strings longer
/// than [`MAX_FIELD_LEN`] are cut, see [`Header::to_bytes`]).
pub fn build_full(spec: &Spec, image: &[u8], key: Option<&SigningKey>) -> Vec<u8> {
    assemble(spec, PayloadKind::Full, image, image, key)
}

/// A package whose payload is a bsdiff patch from `old` (the image of
/// `spec.from_version`) to `new`.
pub fn build_delta(
    spec: &Spec,
    old: &[u8],
    new: &[u8],
    key: Option<&SigningKey>,
) -> Result<Vec<u8>, PackageError> {
    spec.validate(PayloadKind::Delta)?;
    for (what, len) in [("old image", old.len()), ("new image", new.len())] {
        if len as u64 > MAX_PAYLOAD_LEN {
            return Err(PackageError::TooLong {
                what,
                len: len as u64,
                max: MAX_PAYLOAD_LEN,
            });
        }
    }
    let patch = delta::diff(old, new)?;
    if patch.len() as u64 > MAX_PAYLOAD_LEN {
        return Err(PackageError::TooLong {
            what: "patch",
            len: patch.len() as u64,
            max: MAX_PAYLOAD_LEN,
        });
    }
    Ok(assemble(spec, PayloadKind::Delta, &patch, new, key))
}

/// The header of `payload`, which makes `target` (the payload itself for a full
/// package), signed if a key is given, followed by the payload.
fn assemble(
    spec: &Spec,
    kind: PayloadKind,
    payload: &[u8],
    target: &[u8],
    key: Option<&SigningKey>,
) -> Vec<u8> {
    let payload_sha256 = sha256(payload);
    let target_sha256 = match kind {
        PayloadKind::Full => payload_sha256,
        PayloadKind::Delta => sha256(target),
    };
    let mut header = Header {
        format_version: FORMAT_VERSION,
        model: spec.model.clone(),
        component: spec.component.clone(),
        from_version: spec.from_version.clone(),
        to_version: spec.to_version.clone(),
        kind,
        payload_len: payload.len() as u64,
        payload_crc32: crc32fast::hash(payload),
        payload_sha256,
        target_len: target.len() as u64,
        target_sha256,
        signature: None,
    };
    header.signature = key.map(|k| k.sign(&header.signed_bytes()));
    let mut out = header.to_bytes();
    out.extend_from_slice(payload);
    out
}
