//! The package header: its fields, its byte encoding and its parser.
//!
//! Layout (all integers big-endian; PACKAGE.md has the full table):
//! magic(8) format_version(2) header_len(4) kind(1) flags(1) payload_len(8)
//! payload_crc32(4) payload_sha256(32) target_len(8) target_sha256(32), then four
//! strings (u16 length + UTF-8: model, component, from_version, to_version), then the
//! Ed25519 signature (64, only when flag bit 0 is set), then the header CRC-32 (4)
//! over every header byte before it.

use super::error::PackageError;
use super::keys::PublicKey;
use ed25519_dalek::Signature;

/// The first eight bytes of every package.
pub const MAGIC: [u8; 8] = *b"DMFWPKG\0";
/// The format version this code writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// The largest header accepted (and the most a reader needs in its first read).
pub const MAX_HEADER_LEN: usize = 64 * 1024;
/// The longest string field (model, component, versions) in bytes.
pub const MAX_FIELD_LEN: usize = 1024;
/// The largest payload or target image a header may announce (4 GiB).
pub const MAX_PAYLOAD_LEN: u64 = 4 * 1024 * 1024 * 1024;
/// Length of the fixed part, from the magic to the end of target_sha256.
const FIXED_LEN: usize = 100;
/// Length of the Ed25519 signature.
const SIG_LEN: usize = 64;
/// Length of the header CRC-32 at the end of the header.
const CRC_LEN: usize = 4;
/// The shortest possible header: fixed part, four empty strings, CRC.
pub const MIN_HEADER_LEN: usize = FIXED_LEN + 4 * 2 + CRC_LEN;
/// Bytes needed to read the header length: magic, format version, header_len.
const PREAMBLE_LEN: usize = 14;
/// Flag bit 0: a signature follows the strings.
const FLAG_SIGNED: u8 = 0x01;

/// What the payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PayloadKind {
    /// The whole new image.
    Full,
    /// A bsdiff (BSDIFF40) patch from the source version's image to the new one.
    Delta,
}

impl PayloadKind {
    /// "full" or "delta".
    pub fn name(self) -> &'static str {
        match self {
            PayloadKind::Full => "full",
            PayloadKind::Delta => "delta",
        }
    }

    fn byte(self) -> u8 {
        match self {
            PayloadKind::Full => 0,
            PayloadKind::Delta => 1,
        }
    }
}

/// The header of an update package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The container format version ([`FORMAT_VERSION`]).
    pub format_version: u16,
    /// The device model the package is for (./DevInfo/Mod).
    pub model: String,
    /// The component it updates, e.g. "firmware".
    pub component: String,
    /// The version it updates from; for a full package empty means any.
    pub from_version: String,
    /// The version it installs.
    pub to_version: String,
    /// Full image or delta.
    pub kind: PayloadKind,
    /// Length of the payload that follows the header.
    pub payload_len: u64,
    /// CRC-32 (IEEE) of the payload.
    pub payload_crc32: u32,
    /// SHA-256 of the payload.
    pub payload_sha256: [u8; 32],
    /// Length of the image after applying (= payload_len for full).
    pub target_len: u64,
    /// SHA-256 of the image after applying (= payload_sha256 for full).
    pub target_sha256: [u8; 32],
    /// Ed25519 signature over [`Header::signed_bytes`], if signed.
    pub signature: Option<[u8; 64]>,
}

impl Header {
    /// The encoded header: every field, the signature if any, and the header CRC.
    /// Strings longer than [`MAX_FIELD_LEN`] are cut at a character boundary.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.body(self.signature.is_some());
        if let Some(sig) = &self.signature {
            out.extend_from_slice(sig);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// The length of [`Header::to_bytes`]: where the payload starts.
    pub fn encoded_len(&self) -> usize {
        let strings: usize = self.strings().iter().map(|s| 2 + clip(s).len()).sum();
        let sig = if self.signature.is_some() { SIG_LEN } else { 0 };
        FIXED_LEN + strings + sig + CRC_LEN
    }

    /// The bytes the signature covers: the header from the magic to the end of the
    /// strings, exactly as written in a signed package (signed flag set, header_len
    /// counting the signature). They hold both digests, so checking the signature
    /// needs no payload.
    pub fn signed_bytes(&self) -> Vec<u8> {
        self.body(true)
    }

    /// Checks the signature against trusted keys: Ok if any key verifies it.
    ///
    /// Fails closed: with no key the answer is [`PackageError::NoTrustedKeys`]; an
    /// unsigned header gives [`PackageError::SignatureMissing`].
    pub fn verify_signature(&self, keys: &[PublicKey]) -> Result<(), PackageError> {
        if keys.is_empty() {
            return Err(PackageError::NoTrustedKeys);
        }
        let sig = self.signature.ok_or(PackageError::SignatureMissing)?;
        let sig = Signature::from_bytes(&sig);
        let msg = self.signed_bytes();
        if keys.iter().any(|k| k.verify(&msg, &sig)) {
            Ok(())
        } else {
            Err(PackageError::SignatureInvalid { keys: keys.len() })
        }
    }

    fn strings(&self) -> [&str; 4] {
        [
            &self.model,
            &self.component,
            &self.from_version,
            &self.to_version,
        ]
    }

    /// Everything before the signature, with header_len and flags as for a header
    /// that is (or is not) signed.
    fn body(&self, signed: bool) -> Vec<u8> {
        let mut len = self.encoded_len();
        if signed != self.signature.is_some() {
            len = if signed { len + SIG_LEN } else { len - SIG_LEN };
        }
        let mut out = Vec::with_capacity(len);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.format_version.to_be_bytes());
        // encoded_len is at most FIXED_LEN + 4 * (2 + MAX_FIELD_LEN) + 68: fits u32.
        out.extend_from_slice(&(len as u32).to_be_bytes());
        out.push(self.kind.byte());
        out.push(if signed { FLAG_SIGNED } else { 0 });
        out.extend_from_slice(&self.payload_len.to_be_bytes());
        out.extend_from_slice(&self.payload_crc32.to_be_bytes());
        out.extend_from_slice(&self.payload_sha256);
        out.extend_from_slice(&self.target_len.to_be_bytes());
        out.extend_from_slice(&self.target_sha256);
        for s in self.strings() {
            let s = clip(s);
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        out
    }
}

/// `s` cut to at most [`MAX_FIELD_LEN`] bytes at a character boundary.
fn clip(s: &str) -> &str {
    if s.len() <= MAX_FIELD_LEN {
        return s;
    }
    let mut end = MAX_FIELD_LEN;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads the header from the first bytes of a package.
///
/// `prefix` needs to hold only the header (at most [`MAX_HEADER_LEN`] bytes), not
/// the payload. Returns the header and its length, which is where the payload
/// starts. Checks the magic, the format version, the header length, the header
/// CRC-32 and every field; not the payload.
pub fn parse_header(prefix: &[u8]) -> Result<(Header, usize), PackageError> {
    let magic_part = prefix.len().min(MAGIC.len());
    if prefix[..magic_part] != MAGIC[..magic_part] {
        return Err(PackageError::BadMagic);
    }
    if prefix.len() < PREAMBLE_LEN {
        return Err(truncated(PREAMBLE_LEN, prefix.len()));
    }
    let format_version = u16::from_be_bytes([prefix[8], prefix[9]]);
    if format_version != FORMAT_VERSION {
        return Err(PackageError::UnsupportedFormat(format_version));
    }
    let header_len = u32::from_be_bytes([prefix[10], prefix[11], prefix[12], prefix[13]]) as usize;
    if header_len > MAX_HEADER_LEN {
        return Err(PackageError::TooLong {
            what: "header",
            len: header_len as u64,
            max: MAX_HEADER_LEN as u64,
        });
    }
    if header_len < MIN_HEADER_LEN {
        return Err(bad(
            "header_len",
            format!("{header_len} is below the minimum {MIN_HEADER_LEN}"),
        ));
    }
    if prefix.len() < header_len {
        return Err(truncated(header_len, prefix.len()));
    }
    let (body, crc) = prefix[..header_len].split_at(header_len - CRC_LEN);
    let stored = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(PackageError::HeaderCrc { stored, computed });
    }
    let header = Fields::new(body).read(format_version)?;
    Ok((header, header_len))
}

fn truncated(needed: usize, have: usize) -> PackageError {
    PackageError::Truncated {
        needed: needed as u64,
        have: have as u64,
    }
}

fn bad(field: &'static str, problem: impl Into<String>) -> PackageError {
    PackageError::BadField {
        field,
        problem: problem.into(),
    }
}

/// A cursor over the header bytes between header_len and the CRC.
struct Fields<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    fn new(body: &'a [u8]) -> Self {
        Fields {
            body,
            pos: PREAMBLE_LEN,
        }
    }

    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], PackageError> {
        let rest = &self.body[self.pos..];
        if rest.len() < n {
            return Err(bad(field, "runs past the header length"));
        }
        self.pos += n;
        Ok(&rest[..n])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], PackageError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }

    fn u64(&mut self, field: &'static str) -> Result<u64, PackageError> {
        self.array(field).map(u64::from_be_bytes)
    }

    fn string(&mut self, field: &'static str) -> Result<String, PackageError> {
        let len = u16::from_be_bytes(self.array(field)?) as usize;
        if len > MAX_FIELD_LEN {
            return Err(PackageError::TooLong {
                what: field,
                len: len as u64,
                max: MAX_FIELD_LEN as u64,
            });
        }
        let bytes = self.take(len, field)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| bad(field, "not UTF-8"))
    }

    fn read(mut self, format_version: u16) -> Result<Header, PackageError> {
        let kind = match self.array::<1>("kind")?[0] {
            0 => PayloadKind::Full,
            1 => PayloadKind::Delta,
            k => return Err(bad("kind", format!("unknown payload kind {k}"))),
        };
        let flags = self.array::<1>("flags")?[0];
        if flags & !FLAG_SIGNED != 0 {
            return Err(bad("flags", format!("reserved bits set in 0x{flags:02x}")));
        }
        let payload_len = self.u64("payload_len")?;
        let payload_crc32 = u32::from_be_bytes(self.array("payload_crc32")?);
        let payload_sha256 = self.array("payload_sha256")?;
        let target_len = self.u64("target_len")?;
        let target_sha256 = self.array("target_sha256")?;
        for (what, len) in [("payload", payload_len), ("target", target_len)] {
            if len > MAX_PAYLOAD_LEN {
                return Err(PackageError::TooLong {
                    what,
                    len,
                    max: MAX_PAYLOAD_LEN,
                });
            }
        }
        let model = self.string("model")?;
        let component = self.string("component")?;
        let from_version = self.string("from_version")?;
        let to_version = self.string("to_version")?;
        let signature = if flags & FLAG_SIGNED != 0 {
            Some(self.array::<SIG_LEN>("signature")?)
        } else {
            None
        };
        if self.pos != self.body.len() {
            return Err(bad("header_len", "does not end where the fields end"));
        }
        match kind {
            PayloadKind::Full if target_len != payload_len || target_sha256 != payload_sha256 => {
                return Err(bad("target", "a full package's target must be its payload"));
            }
            PayloadKind::Delta if from_version.is_empty() => {
                return Err(bad(
                    "from_version",
                    "a delta package needs a source version",
                ));
            }
            _ => {}
        }
        Ok(Header {
            format_version,
            model,
            component,
            from_version,
            to_version,
            kind,
            payload_len,
            payload_crc32,
            payload_sha256,
            target_len,
            target_sha256,
            signature,
        })
    }
}
