//! Explicit little-endian encoding and the bounds-checked decoder every on-disk format uses.
//!
//! Nothing is ever written as a raw struct: encoders append fields one by one, and decoders read
//! them through [`Decoder`], which turns every short read into a structured
//! [`CorruptionKind::Truncated`] naming the file and absolute offset instead of panicking.

use std::path::Path;

use crate::error::{CorruptionKind, Error, Result};

/// CRC32C (Castagnoli) of `bytes`: the one checksum every vellum format uses.
pub fn crc32c(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// Continues a CRC32C over more bytes.
pub fn crc32c_append(crc: u32, bytes: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, bytes)
}

/// The CRC32C of `a ++ b` from the CRC32Cs of `a` and `b` and the length of `b`.
pub fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: usize) -> u32 {
    crc32c::crc32c_combine(crc_a, crc_b, len_b)
}

/// Appends little-endian fields to a byte vector.
///
/// ```
/// use std::path::Path;
/// use vellum::codec::{Decoder, Encoder};
/// let mut e = Encoder::with_capacity(16);
/// e.u32(0x5645_4c4d).u64(42).bytes(b"ab");
/// let bytes = e.finish();
/// assert_eq!(bytes.len(), 14);
/// let mut d = Decoder::new(&bytes, Path::new("node 3:1:1"), 0);
/// assert_eq!((d.u32()?, d.u64()?, d.bytes(2)?), (0x5645_4c4d, 42, &b"ab"[..]));
/// // Reading past the end is a structured corruption error naming the offset, never a panic.
/// assert!(matches!(d.u8(), Err(vellum::Error::Corruption(c)) if c.offset == 14));
/// # Ok::<(), vellum::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder with room for `bytes` bytes.
    pub fn with_capacity(bytes: usize) -> Self {
        Encoder {
            buf: Vec::with_capacity(bytes),
        }
    }

    /// Appends one byte.
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    /// Appends a little-endian u16.
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian u32.
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends a little-endian u64.
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Appends `v` as an unsigned LEB128 varint: seven bits a byte, low bits first, the high bit
    /// set on every byte but the last. Always the shortest form ([`varint_len`] bytes), which is
    /// the only one [`Decoder::varint`] accepts.
    pub fn varint(&mut self, mut v: u64) -> &mut Self {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
        self
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Appends `n` zero bytes.
    pub fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when nothing has been written.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// The encoded bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads little-endian fields from bytes that came from `file` at `base_offset`.
///
/// Every method returns a structured corruption error on a short read, with the absolute offset of
/// the field that could not be read.
#[derive(Debug)]
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
    file: &'a Path,
    base_offset: u64,
}

impl<'a> Decoder<'a> {
    /// Decodes `buf`, which was read from `file` starting at `base_offset`.
    pub fn new(buf: &'a [u8], file: &'a Path, base_offset: u64) -> Self {
        Decoder {
            buf,
            pos: 0,
            file,
            base_offset,
        }
    }

    /// Position within `buf` of the next field.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Absolute file offset of the next field.
    pub fn offset(&self) -> u64 {
        self.base_offset + self.pos as u64
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// A corruption error at the current position.
    pub fn error(&self, kind: CorruptionKind) -> Error {
        Error::corruption(self.file, self.offset(), kind)
    }

    /// A corruption error for the field at position `pos` of the decoded buffer (reported at
    /// its absolute file offset).
    pub fn error_at(&self, pos: usize, kind: CorruptionKind) -> Error {
        Error::corruption(self.file, self.base_offset + pos as u64, kind)
    }

    /// Takes the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(self.error(CorruptionKind::Truncated {
                needed: n as u64,
                available: self.remaining() as u64,
            }));
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.bytes(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian u16.
    pub fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u32.
    pub fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads an unsigned LEB128 varint written by [`Encoder::varint`]. Only the shortest form of
    /// a value that fits 64 bits is accepted (anything else would make two encodings of one
    /// record): a last byte of zero after the first, or bits past the 64th, are
    /// `InvalidField { field, value: that byte }` at that byte; running out of bytes is
    /// `Truncated`.
    pub fn varint(&mut self, field: &'static str) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..VARINT_BYTES_MAX {
            let at = self.pos;
            let byte = self.u8()?;
            let bits = u64::from(byte & 0x7f);
            let overflows = i == VARINT_BYTES_MAX - 1 && byte > 1;
            let overlong = i > 0 && byte == 0;
            if overflows || overlong {
                return Err(self.error_at(
                    at,
                    CorruptionKind::InvalidField {
                        field,
                        value: u64::from(byte),
                    },
                ));
            }
            v |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        // The tenth byte either ended the varint or failed the overflow check above.
        Err(self.error(CorruptionKind::InvalidField { field, value: v }))
    }

    /// Reads `n` bytes that the format requires to be zero, reporting the first non-zero one.
    pub fn zeros(&mut self, n: usize, field: &'static str) -> Result<()> {
        let start = self.pos;
        let bytes = self.bytes(n)?;
        if let Some(i) = bytes.iter().position(|&b| b != 0) {
            return Err(self.error_at(
                start + i,
                CorruptionKind::InvalidField {
                    field,
                    value: u64::from(bytes[i]),
                },
            ));
        }
        Ok(())
    }
}

/// The most bytes a varint of a u64 takes: ten (64 bits at seven a byte).
pub const VARINT_BYTES_MAX: usize = 10;

/// Bytes [`Encoder::varint`] writes for `v`: 1 to [`VARINT_BYTES_MAX`].
pub const fn varint_len(v: u64) -> usize {
    let bits = 64 - (v | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

/// Maps a signed difference to an unsigned one whose varint is short when the difference is
/// near zero either way (zigzag: 0, -1, 1, -2, ... become 0, 1, 2, 3, ...).
pub const fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub const fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Rounds `n` up to a multiple of `align`, which must be a power of two.
pub const fn align_up(n: u64, align: u64) -> u64 {
    (n + align - 1) & !(align - 1)
}

/// Rounds `n` down to a multiple of `align`, which must be a power of two.
pub const fn align_down(n: u64, align: u64) -> u64 {
    n & !(align - 1)
}

/// Interprets the first eight bytes of `bytes` as a little-endian u64 (zero-padded), for reporting
/// a bad magic value.
pub fn magic_value(bytes: &[u8]) -> u64 {
    let mut m = [0u8; 8];
    let n = bytes.len().min(8);
    m[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_writes_little_endian() {
        let mut e = Encoder::default();
        e.u8(1)
            .u16(0x0302)
            .u32(0x0706_0504)
            .u64(0x0f0e_0d0c_0b0a_0908);
        assert_eq!(e.finish(), (1u8..=15).collect::<Vec<u8>>());
    }

    #[test]
    fn decoder_reports_truncation_with_absolute_offset() {
        let path = Path::new("f");
        let mut d = Decoder::new(&[1, 2, 3], path, 100);
        assert_eq!(d.u16().ok(), Some(0x0201));
        let err = d.u32().err().and_then(|e| e.as_corruption().cloned());
        assert_eq!(
            err,
            Some(crate::error::Corruption {
                file: path.into(),
                offset: 102,
                kind: CorruptionKind::Truncated {
                    needed: 4,
                    available: 1
                },
            })
        );
    }

    #[test]
    fn crc_combine_matches_concatenation() {
        let a = b"hello ";
        let b = b"world";
        let whole = crc32c(b"hello world");
        assert_eq!(crc32c_combine(crc32c(a), crc32c(b), b.len()), whole);
        assert_eq!(crc32c_append(crc32c(a), b), whole);
        // The published CRC32C check value.
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn varints_are_shortest_leb128_and_nothing_else_decodes() {
        let path = Path::new("/v");
        let enc = |v: u64| {
            let mut e = Encoder::default();
            e.varint(v);
            e.finish()
        };
        assert_eq!(enc(0), [0x00]);
        assert_eq!(enc(127), [0x7f]);
        assert_eq!(enc(300), [0xac, 0x02]);
        assert_eq!(
            enc(u64::MAX),
            [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let b = enc(v);
            assert_eq!(b.len(), varint_len(v), "{v}");
            let mut d = Decoder::new(&b, path, 0);
            assert_eq!(d.varint("f").unwrap(), v);
            assert_eq!(d.remaining(), 0);
        }
        let reject = |bytes: &[u8]| match Decoder::new(bytes, path, 100).varint("f") {
            Err(Error::Corruption(c)) => (c.offset, c.kind),
            other => panic!("{bytes:?} decoded as {other:?}"),
        };
        let field = |value| CorruptionKind::InvalidField { field: "f", value };
        // 0 padded to two bytes, and 1 to three.
        assert_eq!(reject(&[0x80, 0x00]), (101, field(0)));
        assert_eq!(reject(&[0x81, 0x80, 0x00]), (102, field(0)));
        // Bits past the 64th.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(reject(&over), (109, field(2)));
        assert_eq!(
            reject(&[0x80]),
            (
                101,
                CorruptionKind::Truncated {
                    needed: 1,
                    available: 0
                }
            )
        );
        for v in [0i64, -1, 1, -64, 63, i64::MIN, i64::MAX] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
        assert_eq!((zigzag(0), zigzag(-1), zigzag(1), zigzag(-2)), (0, 1, 2, 3));
    }

    #[test]
    fn alignment() {
        assert_eq!(align_up(0, 8), 0);
        assert_eq!(align_up(1, 8), 8);
        assert_eq!(align_up(8, 8), 8);
        assert_eq!(align_down(4097, 4096), 4096);
    }
}
