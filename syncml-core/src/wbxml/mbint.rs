//! WBXML multi-byte unsigned integers (`mb_u_int32`): big-endian base 128, every byte
//! but the last with the high bit (0x80) set, at most five bytes, value within `u32`.

use crate::error::{Error, Problem};

/// The most bytes an `mb_u_int32` may take (5 x 7 bits covers 32 bits).
pub const MAX_LEN: usize = 5;

/// Reads an `mb_u_int32` at `*pos` in `input` and advances `*pos` past it.
///
/// Errors: the input ends inside the integer -> `Truncated("a multi-byte integer")` at
/// the end of the input; more than five bytes or a value above `u32::MAX` ->
/// [`Problem::MbInt`] at the byte that makes it so.
pub fn read(input: &[u8], pos: &mut usize) -> Result<u32, Error> {
    let mut value: u32 = 0;
    let mut at = *pos;
    for n in 0..MAX_LEN {
        let b = match input.get(at) {
            Some(&b) => b,
            None => {
                return Err(Error::decode(
                    input.len(),
                    Problem::Truncated("a multi-byte integer"),
                ))
            }
        };
        if value > (u32::MAX >> 7) {
            return Err(Error::decode(at, Problem::MbInt));
        }
        value = (value << 7) | u32::from(b & 0x7F);
        at += 1;
        if b & 0x80 == 0 {
            *pos = at;
            return Ok(value);
        }
        if n == MAX_LEN - 1 {
            // A fifth byte that still announces a continuation.
            return Err(Error::decode(at - 1, Problem::MbInt));
        }
    }
    // Unreachable by construction (the loop returns on every path of its last turn),
    // but keep a well-defined answer instead of a panic.
    Err(Error::decode(at, Problem::MbInt))
}

/// Appends the `mb_u_int32` encoding of `v` (shortest form) to `out`.
pub fn write(out: &mut Vec<u8>, v: u32) {
    let mut buf = [0u8; MAX_LEN];
    let mut i = MAX_LEN;
    let mut rest = v;
    loop {
        i -= 1;
        let cont = if i == MAX_LEN - 1 { 0 } else { 0x80 };
        buf[i] = (rest & 0x7F) as u8 | cont;
        rest >>= 7;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// How many bytes [`write()`] uses for `v`.
pub fn encoded_len(v: u32) -> usize {
    match v {
        0..=0x7F => 1,
        0x80..=0x3FFF => 2,
        0x4000..=0x1F_FFFF => 3,
        0x20_0000..=0x0FFF_FFFF => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: u32) -> Vec<u8> {
        let mut out = Vec::new();
        write(&mut out, v);
        assert_eq!(out.len(), encoded_len(v));
        out
    }

    fn dec(bytes: &[u8]) -> Result<(u32, usize), Error> {
        let mut pos = 0;
        read(bytes, &mut pos).map(|v| (v, pos))
    }

    #[test]
    fn vectors() {
        let cases: &[(u32, &[u8])] = &[
            (0, &[0x00]),
            (0x7F, &[0x7F]),
            (0x80, &[0x81, 0x00]),
            (0x1201, &[0xA4, 0x01]),
            (0x0FD3, &[0x9F, 0x53]),
            (0xA0, &[0x81, 0x20]),
            (0x3FFF, &[0xFF, 0x7F]),
            (0x4000, &[0x81, 0x80, 0x00]),
            (u32::MAX, &[0x8F, 0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(v, bytes) in cases {
            assert_eq!(enc(v), bytes, "encoding {v:#x}");
            assert_eq!(dec(bytes).unwrap(), (v, bytes.len()), "decoding {v:#x}");
        }
    }

    #[test]
    fn reads_at_an_offset_and_stops_after_the_last_byte() {
        let input = [0xFF, 0x81, 0x00, 0x42];
        let mut pos = 1;
        assert_eq!(read(&input, &mut pos).unwrap(), 0x80);
        assert_eq!(pos, 3);
    }

    #[test]
    fn non_shortest_forms_are_accepted() {
        assert_eq!(dec(&[0x80, 0x80, 0x05]).unwrap(), (5, 3));
    }

    #[test]
    fn six_bytes_is_an_error() {
        let e = dec(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]).unwrap_err();
        assert_eq!(e.problem(), Some(&Problem::MbInt));
        assert_eq!(e.offset(), Some(4));
    }

    #[test]
    fn overflow_is_an_error() {
        // 0x90 in the first of five bytes puts a bit at position 32.
        let e = dec(&[0x90, 0x80, 0x80, 0x80, 0x00]).unwrap_err();
        assert_eq!(e.problem(), Some(&Problem::MbInt));
        assert_eq!(e.offset(), Some(4));
    }

    #[test]
    fn truncated_is_an_error() {
        for bytes in [&[][..], &[0x81][..], &[0x81, 0x80][..]] {
            let e = dec(bytes).unwrap_err();
            assert_eq!(
                e.problem(),
                Some(&Problem::Truncated("a multi-byte integer"))
            );
            assert_eq!(e.offset(), Some(bytes.len()));
        }
    }

    #[test]
    fn round_trip_many_values() {
        let mut v: u64 = 0;
        while v <= u64::from(u32::MAX) {
            let b = enc(v as u32);
            assert_eq!(dec(&b).unwrap(), (v as u32, b.len()));
            v = v * 3 + 1;
        }
    }
}
