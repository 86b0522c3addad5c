//! The entry format inside a page (`design/FORMAT.md` §8).
//!
//! Invariants:
//! 1. Every entry starts at an 8-byte-aligned offset of its page and occupies
//!    [`entry_bytes`]`(len)` bytes: an 8-byte header, the payload, zero padding to 8 bytes.
//! 2. The header is `len: u32` then `crc: u32 = CRC32C(len as 4 LE bytes ++ payload)`. A header of
//!    all zeros is never valid (the CRC32C of four zero bytes is not zero), so bytes never written
//!    cannot pass for an empty entry.
//! 3. An entry never crosses a page: when one does not fit, the rest of the page is a filler
//!    whose header has `len = FILLER_LEN`; readers skip to the next page.

/// Bytes of an entry header.
pub const HEADER_BYTES: usize = 8;
/// The `len` of a filler header: the rest of the page holds no entry.
pub const FILLER_LEN: u32 = u32::MAX;

const _: () = assert!(HEADER_BYTES.is_multiple_of(8));

/// Bytes an entry with a `len`-byte payload occupies (header and padding included).
pub const fn entry_bytes(len: usize) -> usize {
    (HEADER_BYTES + len).div_ceil(8) * 8
}

/// The CRC32C an entry header carries for `payload`.
pub fn entry_crc(payload: &[u8]) -> u32 {
    let len = payload.len() as u32;
    vellum::codec::crc32c_append(vellum::codec::crc32c(&len.to_le_bytes()), payload)
}

/// The header of an entry holding `payload`, as one little-endian word.
pub fn header_word(payload: &[u8]) -> u64 {
    u64::from(payload.len() as u32) | (u64::from(entry_crc(payload)) << 32)
}

/// The header word of a filler.
pub const FILLER_WORD: u64 = FILLER_LEN as u64;

/// What a header word says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// An entry with this payload length and CRC32C.
    Entry {
        /// Payload bytes.
        len: u32,
        /// CRC32C stored in the header.
        crc: u32,
    },
    /// A filler: skip to the next page.
    Filler,
}

/// Decodes a header word.
pub fn decode_header(word: u64) -> Header {
    let len = word as u32;
    if len == FILLER_LEN {
        Header::Filler
    } else {
        Header::Entry {
            len,
            crc: (word >> 32) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden bytes: the format in `design/FORMAT.md` and this code cannot drift apart.
    #[test]
    fn golden_entry_bytes() {
        let payload = b"abc";
        let word = header_word(payload);
        let mut bytes = word.to_le_bytes().to_vec();
        bytes.extend_from_slice(payload);
        bytes.resize(entry_bytes(payload.len()), 0);
        // The bytes shown in `design/FORMAT.md` §8.
        let want = [
            0x03, 0, 0, 0, 0xf8, 0x83, 0x14, 0x55, b'a', b'b', b'c', 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes, want);
        assert_eq!(entry_crc(&[]), 0x48674bc7);
        assert_eq!(entry_bytes(0), 8);
        assert_eq!(entry_bytes(1), 16);
        assert_eq!(entry_bytes(8), 16);
        assert_eq!(entry_bytes(9), 24);
        assert_eq!(
            FILLER_WORD.to_le_bytes(),
            [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]
        );
    }

    #[test]
    fn zero_header_is_not_a_valid_empty_entry() {
        assert_ne!(entry_crc(&[]), 0);
        assert_eq!(decode_header(0), Header::Entry { len: 0, crc: 0 });
        assert_eq!(decode_header(FILLER_WORD), Header::Filler);
    }
}
