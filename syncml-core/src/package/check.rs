//! Reading a whole package and checking it: integrity, signature, fit, apply; and
//! the incremental payload check for a payload read in chunks.

use super::delta;
use super::error::PackageError;
use super::header::{parse_header, Header, PayloadKind};
use super::keys::PublicKey;
use sha2::{Digest, Sha256};

/// The SHA-256 of `data`.
pub(crate) fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A package held in memory: its header and a view of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package<'a> {
    /// The parsed header.
    pub header: Header,
    /// The bytes after the header.
    pub payload: &'a [u8],
}

impl<'a> Package<'a> {
    /// Parses the header (see [`parse_header`]) and checks that exactly
    /// `payload_len` bytes follow it. The payload's digests are checked by
    /// [`Package::check_integrity`].
    pub fn parse(bytes: &'a [u8]) -> Result<Package<'a>, PackageError> {
        let (header, header_len) = parse_header(bytes)?;
        let payload = &bytes[header_len..];
        let have = payload.len() as u64;
        if have < header.payload_len {
            return Err(PackageError::Truncated {
                needed: header_len as u64 + header.payload_len,
                have: bytes.len() as u64,
            });
        }
        if have > header.payload_len {
            return Err(PackageError::PayloadLength {
                expected: header.payload_len,
                actual: have,
            });
        }
        Ok(Package { header, payload })
    }

    /// Checks the payload against the header: length, CRC-32, SHA-256. (The header's
    /// own CRC was checked by [`Package::parse`].)
    pub fn check_integrity(&self) -> Result<(), PackageError> {
        let mut check = PayloadCheck::new(&self.header);
        check.update(self.payload);
        check.finish()
    }

    /// Checks the header's signature with the trusted keys (see
    /// [`Header::verify_signature`]). The signature covers both digests, so with
    /// [`Package::check_integrity`] it covers the payload too.
    pub fn verify_signature(&self, keys: &[PublicKey]) -> Result<(), PackageError> {
        self.header.verify_signature(keys)
    }

    /// Checks that the package is for this device: the model must be equal; a
    /// delta's from_version must equal `current_version`, and so must a full
    /// package's from_version unless it is empty (any version).
    pub fn check_fit(&self, model: &str, current_version: &str) -> Result<(), PackageError> {
        let h = &self.header;
        if h.model != model {
            return Err(PackageError::ModelMismatch {
                package: h.model.clone(),
                device: model.to_owned(),
            });
        }
        let any_source = h.kind == PayloadKind::Full && h.from_version.is_empty();
        if !any_source && h.from_version != current_version {
            return Err(PackageError::SourceVersionMismatch {
                package: h.from_version.clone(),
                device: current_version.to_owned(),
            });
        }
        Ok(())
    }

    /// The new image: the payload for a full package, the patch applied to
    /// `current_image` for a delta. Refuses a target longer than `max_len` before
    /// doing any work, and checks the result's length and SHA-256 against the
    /// header. Never holds more than the target image plus a fixed buffer, whatever
    /// a hostile patch says.
    pub fn apply(&self, current_image: &[u8], max_len: u64) -> Result<Vec<u8>, PackageError> {
        let h = &self.header;
        if h.target_len > max_len {
            return Err(PackageError::TargetTooLarge {
                len: h.target_len,
                max: max_len,
            });
        }
        let image = match h.kind {
            PayloadKind::Full => {
                if self.payload.len() as u64 != h.target_len {
                    return Err(PackageError::TargetMismatch(format!(
                        "{} bytes, header says {}",
                        self.payload.len(),
                        h.target_len
                    )));
                }
                self.payload.to_vec()
            }
            PayloadKind::Delta => delta::patch(current_image, self.payload, h.target_len)?,
        };
        if sha256(&image) != h.target_sha256 {
            return Err(PackageError::TargetMismatch("SHA-256 differs".into()));
        }
        Ok(image)
    }
}

/// Checks a payload read in chunks (for example from a file, after
/// [`parse_header`] on its first bytes) against the header's length, CRC-32 and
/// SHA-256, without holding it in memory.
#[derive(Debug, Clone)]
pub struct PayloadCheck {
    expected_len: u64,
    expected_crc: u32,
    expected_sha: [u8; 32],
    seen: u64,
    crc: crc32fast::Hasher,
    sha: Sha256,
}

impl PayloadCheck {
    /// A check of the payload `header` describes.
    pub fn new(header: &Header) -> Self {
        PayloadCheck {
            expected_len: header.payload_len,
            expected_crc: header.payload_crc32,
            expected_sha: header.payload_sha256,
            seen: 0,
            crc: crc32fast::Hasher::new(),
            sha: Sha256::new(),
        }
    }

    /// Feeds the next bytes of the payload.
    pub fn update(&mut self, chunk: &[u8]) {
        self.seen = self.seen.saturating_add(chunk.len() as u64);
        self.crc.update(chunk);
        self.sha.update(chunk);
    }

    /// Bytes fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Bytes still expected (0 once the payload is complete or overlong).
    pub fn remaining(&self) -> u64 {
        self.expected_len.saturating_sub(self.seen)
    }

    /// Ok if the bytes fed are exactly the payload the header describes.
    pub fn finish(self) -> Result<(), PackageError> {
        if self.seen != self.expected_len {
            return Err(PackageError::PayloadLength {
                expected: self.expected_len,
                actual: self.seen,
            });
        }
        let crc = self.crc.finalize();
        if crc != self.expected_crc {
            return Err(PackageError::PayloadCrc {
                expected: self.expected_crc,
                actual: crc,
            });
        }
        let sha: [u8; 32] = self.sha.finalize().into();
        if sha != self.expected_sha {
            return Err(PackageError::PayloadSha256);
        }
        Ok(())
    }
}
