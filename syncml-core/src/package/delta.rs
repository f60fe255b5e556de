//! Delta payloads: bsdiff (BSDIFF40) patches made and applied with `qbsdiff`,
//! with the patch's own header checked here first so that a hostile patch yields an
//! error, never a panic or an unbounded allocation.

use super::error::PackageError;
use qbsdiff::{Bsdiff, Bspatch, ParallelScheme};
use std::io::{self, Write};

/// Length of the BSDIFF40 header: magic and three 64-bit lengths.
const PATCH_HEADER_LEN: usize = 32;
/// Copy buffer of the patcher: the memory it uses beyond the output.
const PATCH_BUFFER: usize = 64 * 1024;

/// A BSDIFF40 patch that turns `old` into `new`.
pub(crate) fn diff(old: &[u8], new: &[u8]) -> Result<Vec<u8>, PackageError> {
    if old.len() > qbsdiff::bsdiff::MAX_LENGTH {
        return Err(PackageError::BadSpec(format!(
            "old image of {} bytes is too large to diff",
            old.len()
        )));
    }
    let mut patch = Vec::new();
    // One thread: the same inputs always give the same patch.
    Bsdiff::new(old, new)
        .parallel_scheme(ParallelScheme::Never)
        .compare(&mut patch)
        .map_err(|e| PackageError::BadSpec(format!("diff failed: {e}")))?;
    Ok(patch)
}

/// Applies `patch` to `old`; the result must be exactly `target_len` bytes.
///
/// Memory is bounded by `target_len` (which the caller has checked against its own
/// limit) plus a fixed buffer, whatever the patch says.
pub(crate) fn patch(old: &[u8], patch: &[u8], target_len: u64) -> Result<Vec<u8>, PackageError> {
    let declared = check_patch_header(patch)?;
    if declared != target_len {
        return Err(PackageError::BadPatch(format!(
            "patch builds {declared} bytes, header says {target_len}"
        )));
    }
    let patcher = Bspatch::new(patch).map_err(|e| PackageError::BadPatch(e.to_string()))?;
    let mut out = Bounded {
        buf: Vec::new(),
        max: target_len,
    };
    patcher
        .buffer_size(PATCH_BUFFER)
        .delta_min(PATCH_BUFFER)
        .apply(old, &mut out)
        .map_err(|e| PackageError::BadPatch(e.to_string()))?;
    if out.buf.len() as u64 != target_len {
        return Err(PackageError::BadPatch(format!(
            "patch built {} bytes, header says {target_len}",
            out.buf.len()
        )));
    }
    Ok(out.buf)
}

/// Checks the BSDIFF40 header and returns the target length it declares.
///
/// The lengths are sign-magnitude 64-bit integers; qbsdiff adds them unchecked, so
/// negative or overflowing values are refused here.
fn check_patch_header(patch: &[u8]) -> Result<u64, PackageError> {
    let bad = |m: &str| PackageError::BadPatch(m.to_owned());
    if patch.len() < PATCH_HEADER_LEN {
        return Err(bad("shorter than the BSDIFF40 header"));
    }
    if &patch[..8] != b"BSDIFF40" {
        return Err(bad("no BSDIFF40 magic"));
    }
    let field = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&patch[at..at + 8]);
        let v = u64::from_le_bytes(b);
        // The top bit is the sign; a length must be zero or positive.
        if v >> 63 != 0 {
            Err(bad("negative length in the patch header"))
        } else {
            Ok(v)
        }
    };
    let ctrl_len = field(8)?;
    let diff_len = field(16)?;
    let target_len = field(24)?;
    let needed = (PATCH_HEADER_LEN as u64)
        .checked_add(ctrl_len)
        .and_then(|n| n.checked_add(diff_len));
    match needed {
        Some(n) if n <= patch.len() as u64 => Ok(target_len),
        _ => Err(bad("block lengths run past the end of the patch")),
    }
}

/// A writer that refuses to grow past `max` bytes.
struct Bounded {
    buf: Vec<u8>,
    max: u64,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.buf.len() as u64 + data.len() as u64 > self.max {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("output would exceed {} bytes", self.max),
            ));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(ctrl: u64, diff: u64, target: u64) -> Vec<u8> {
        let mut p = b"BSDIFF40".to_vec();
        for v in [ctrl, diff, target] {
            p.extend_from_slice(&v.to_le_bytes());
        }
        p
    }

    #[test]
    fn patch_header_lengths_are_checked_without_overflow() {
        assert_eq!(check_patch_header(&header(0, 0, 7)), Ok(7));
        let mut p = header(3, 2, 7);
        p.extend_from_slice(&[0; 5]);
        assert_eq!(check_patch_header(&p), Ok(7));
        p.pop();
        assert!(check_patch_header(&p).is_err(), "blocks past the end");
        for bad in [
            header(1 << 63, 0, 7),
            header(0, 0, 1 << 63 | 1),
            header(u64::MAX >> 1, u64::MAX >> 1, 7),
        ] {
            assert!(matches!(
                check_patch_header(&bad),
                Err(PackageError::BadPatch(_))
            ));
        }
        assert!(check_patch_header(&header(0, 0, 7)[..31]).is_err());
    }

    #[test]
    fn bounded_writer_refuses_to_grow_past_its_limit() {
        let mut w = Bounded {
            buf: Vec::new(),
            max: 4,
        };
        w.write_all(b"abc").unwrap();
        assert!(w.write_all(b"de").is_err());
        w.write_all(b"d").unwrap();
        assert_eq!(w.buf, b"abcd");
    }

    #[test]
    fn diff_then_patch_round_trips_including_empty_images() {
        for (old, new) in [(&b""[..], &b"new"[..]), (b"old", b""), (b"", b"")] {
            let p = diff(old, new).unwrap();
            assert_eq!(patch(old, &p, new.len() as u64).unwrap(), new);
            assert!(patch(old, &p, new.len() as u64 + 1).is_err());
        }
    }
}
