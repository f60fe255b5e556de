//! The error type of the update-package container and its FUMO result codes.

/// Why a package was refused, or could not be built or applied.
///
/// [`PackageError::fumo_result`] maps each case to the FUMO result code a device
/// reports for it (PROTOCOL.md section 8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackageError {
    /// The first bytes are not the package magic.
    #[error("not an update package: bad magic")]
    BadMagic,
    /// A header of a format version this code does not read.
    #[error("unsupported package format version {0}")]
    UnsupportedFormat(u16),
    /// The input ends before the header (or the package) does.
    #[error("truncated: {needed} bytes needed, {have} given")]
    Truncated {
        /// Bytes needed to go on.
        needed: u64,
        /// Bytes available.
        have: u64,
    },
    /// A length field is beyond its explicit limit.
    #[error("{what} of {len} bytes exceeds the limit of {max}")]
    TooLong {
        /// Which length.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The header's own CRC-32 does not match its bytes.
    #[error("header CRC-32 mismatch: stored {stored:08x}, computed {computed:08x}")]
    HeaderCrc {
        /// The CRC written in the header.
        stored: u32,
        /// The CRC of the header bytes as read.
        computed: u32,
    },
    /// A header field holds a value the format does not allow.
    #[error("bad header field {field}: {problem}")]
    BadField {
        /// The field's name.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The payload is not as long as the header says.
    #[error("payload length mismatch: header says {expected} bytes, found {actual}")]
    PayloadLength {
        /// The header's payload_len.
        expected: u64,
        /// The bytes present.
        actual: u64,
    },
    /// The payload's CRC-32 differs from the header's.
    #[error("payload CRC-32 mismatch: header {expected:08x}, payload {actual:08x}")]
    PayloadCrc {
        /// The header's payload_crc32.
        expected: u32,
        /// The CRC-32 of the payload.
        actual: u32,
    },
    /// The payload's SHA-256 differs from the header's.
    #[error("payload SHA-256 mismatch")]
    PayloadSha256,
    /// The image rebuilt from the package is not the one the header describes.
    #[error("rebuilt image does not match the header's target: {0}")]
    TargetMismatch(String),
    /// A delta payload is not a valid patch for the current image.
    #[error("bad delta patch: {0}")]
    BadPatch(String),
    /// The rebuilt image would exceed what the caller can hold.
    #[error("target image of {len} bytes exceeds the allowed {max}")]
    TargetTooLarge {
        /// The header's target_len.
        len: u64,
        /// The caller's limit.
        max: u64,
    },
    /// The package is for another device model.
    #[error("package is for model {package:?}, device is {device:?}")]
    ModelMismatch {
        /// The header's model.
        package: String,
        /// The device's model.
        device: String,
    },
    /// The package updates from another version than the device runs.
    #[error("package updates from version {package:?}, device runs {device:?}")]
    SourceVersionMismatch {
        /// The header's from_version.
        package: String,
        /// The device's current version.
        device: String,
    },
    /// Trusted keys were given but the package is not signed.
    #[error("package is not signed")]
    SignatureMissing,
    /// The signature verifies under none of the trusted keys.
    #[error("signature does not verify with any of the {keys} trusted keys")]
    SignatureInvalid {
        /// How many keys were tried.
        keys: usize,
    },
    /// A signature check was asked for with no trusted key.
    #[error("no trusted key to verify the signature with")]
    NoTrustedKeys,
    /// A key in text or bytes is malformed.
    #[error("bad key: {0}")]
    BadKey(String),
    /// The build inputs are not acceptable (for example an empty model).
    #[error("cannot build: {0}")]
    BadSpec(String),
    /// The operating system's random generator failed.
    #[error("random generator failed: {0}")]
    Random(String),
}

impl PackageError {
    /// The FUMO result code a device reports for this error: 402 corrupted package,
    /// 403 package-device mismatch, 404 failed validation (signature), 400 otherwise.
    pub fn fumo_result(&self) -> u16 {
        use PackageError::*;
        match self {
            BadMagic
            | UnsupportedFormat(_)
            | Truncated { .. }
            | TooLong { .. }
            | HeaderCrc { .. }
            | BadField { .. }
            | PayloadLength { .. }
            | PayloadCrc { .. }
            | PayloadSha256
            | TargetMismatch(_)
            | BadPatch(_) => 402,
            ModelMismatch { .. } | SourceVersionMismatch { .. } => 403,
            SignatureMissing | SignatureInvalid { .. } | NoTrustedKeys => 404,
            TargetTooLarge { .. } | BadKey(_) | BadSpec(_) | Random(_) => 400,
        }
    }
}
