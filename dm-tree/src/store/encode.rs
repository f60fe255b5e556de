//! The binary form of journal operations in the store's files: LEB128 lengths and
//! numbers, UTF-8 strings, one tag byte per operation. Decoding trusts no length: each
//! is checked against the bytes that remain.

use crate::acl::Acl;
use crate::format::Format;
use crate::node::{Kind, Props, Record};
use crate::tree::Op;

const PUT: u8 = 1;
const REMOVE: u8 = 2;
const RENAME: u8 = 3;

/// Appends the encoding of `ops` to `out`.
pub fn encode_ops(ops: &[Op], out: &mut Vec<u8>) {
    put_uint(out, ops.len() as u64);
    for op in ops {
        match op {
            Op::Put { path, rec } => {
                out.push(PUT);
                put_bytes(out, path.as_bytes());
                encode_record(rec, out);
            }
            Op::Remove { path } => {
                out.push(REMOVE);
                put_bytes(out, path.as_bytes());
            }
            Op::Rename { path, name } => {
                out.push(RENAME);
                put_bytes(out, path.as_bytes());
                put_bytes(out, name.as_bytes());
            }
        }
    }
}

fn encode_record(rec: &Record, out: &mut Vec<u8>) {
    match &rec.kind {
        Kind::Interior => out.push(0),
        Kind::Leaf(v) => {
            out.push(1);
            put_bytes(out, v);
        }
    }
    let p = &rec.props;
    put_bytes(out, p.acl.to_string().as_bytes());
    out.push(Format::ALL.iter().position(|f| *f == p.format).unwrap_or(0) as u8);
    put_bytes(out, p.type_.as_bytes());
    put_bytes(out, p.title.as_bytes());
    put_uint(out, p.tstamp);
    put_uint(out, u64::from(p.verno));
}

/// Decodes a whole buffer of operations.
pub fn decode_ops(bytes: &[u8]) -> Result<Vec<Op>, String> {
    let mut r = Reader { b: bytes, at: 0 };
    let n = r.uint()?;
    // Every operation takes at least two bytes: a count beyond that is damage, and
    // must not size an allocation.
    if n > (bytes.len() / 2) as u64 {
        return Err(format!("{n} operations announced in {} bytes", bytes.len()));
    }
    let mut ops = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let op = match r.byte()? {
            PUT => Op::Put {
                path: r.string()?,
                rec: decode_record(&mut r)?,
            },
            REMOVE => Op::Remove { path: r.string()? },
            RENAME => Op::Rename {
                path: r.string()?,
                name: r.string()?,
            },
            t => return Err(format!("unknown operation tag {t} at byte {}", r.at - 1)),
        };
        ops.push(op);
    }
    if r.at != bytes.len() {
        return Err(format!("{} bytes after the operations", bytes.len() - r.at));
    }
    Ok(ops)
}

fn decode_record(r: &mut Reader<'_>) -> Result<Record, String> {
    let kind = match r.byte()? {
        0 => Kind::Interior,
        1 => Kind::Leaf(r.bytes()?.to_vec()),
        k => return Err(format!("unknown node kind {k}")),
    };
    let acl = Acl::parse(&r.string()?).map_err(|e| format!("stored ACL: {e}"))?;
    let format = *Format::ALL
        .get(usize::from(r.byte()?))
        .ok_or("unknown format number")?;
    let type_ = r.string()?;
    let title = r.string()?;
    let tstamp = r.uint()?;
    let verno = u16::try_from(r.uint()?).map_err(|_| "VerNo over 65535")?;
    Ok(Record {
        kind,
        props: Props {
            acl,
            format,
            type_,
            title,
            tstamp,
            verno,
        },
    })
}

fn put_uint(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_uint(out, b.len() as u64);
    out.extend_from_slice(b);
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, String> {
        let b = *self.b.get(self.at).ok_or("truncated")?;
        self.at += 1;
        Ok(b)
    }

    fn uint(&mut self) -> Result<u64, String> {
        let mut n: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            n |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err("a number longer than 64 bits".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let n = self.uint()?;
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.at.checked_add(n))
            .filter(|&e| e <= self.b.len())
            .ok_or("a length past the end")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn string(&mut self) -> Result<String, String> {
        let b = self.bytes()?;
        String::from_utf8(b.to_vec()).map_err(|_| "a string that is not UTF-8".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Op> {
        let mut leaf = Record::leaf(Format::Bin, vec![0, 255, 10]).with_type("application/x");
        leaf.props.acl = "Get=*&Replace=srv+other".parse().unwrap();
        leaf.props.tstamp = 1_795_251_600;
        leaf.props.verno = 65535;
        leaf.props.title = "Tïtle".into();
        vec![
            Op::Put {
                path: "./A".into(),
                rec: Record::interior(),
            },
            Op::Put {
                path: "./A/b".into(),
                rec: leaf,
            },
            Op::Rename {
                path: "./A/b".into(),
                name: "c".into(),
            },
            Op::Remove { path: "./A".into() },
        ]
    }

    #[test]
    fn ops_round_trip() {
        let mut buf = Vec::new();
        encode_ops(&sample(), &mut buf);
        assert_eq!(decode_ops(&buf).unwrap(), sample());
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        let mut buf = Vec::new();
        encode_ops(&sample(), &mut buf);
        for n in 0..buf.len() {
            assert!(decode_ops(&buf[..n]).is_err(), "prefix {n}");
        }
        buf.push(0);
        assert!(decode_ops(&buf).is_err());
    }

    proptest! {
        #[test]
        fn decoding_garbage_never_panics(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_ops(&b);
        }

        #[test]
        fn numbers_round_trip(n in any::<u64>()) {
            let mut b = Vec::new();
            put_uint(&mut b, n);
            prop_assert_eq!(Reader { b: &b, at: 0 }.uint().unwrap(), n);
        }
    }
}
