//! The FasterKV record format (`design/FORMAT.md` §9): three header words, then the key, then
//! the value, 8-byte aligned, never crossing a page.
//!
//! Invariants:
//! 1. A record is `HEADER_BYTES + pad8(key_len) + value_capacity` bytes, a multiple of 8; `encode`
//!    refuses anything [`record_bytes`] refuses, so every record written decodes.
//! 2. A key is 1 to [`KEY_BYTES_MAX`] bytes: a lengths word of 0 can never start a record, so it
//!    marks the end of a page's records.
//! 3. `value_len <= value_capacity`, and the capacity is a multiple of 8 of at most
//!    [`VALUE_BYTES_MAX`]: an in-place update may grow a value up to its capacity, never past it.
//! 4. Reserved header bits are 0; [`RecordHeader::decode`] reports anything else as corruption
//!    and never panics: every length is checked against the bytes left before it is used.
//! 5. The update counter (word 2) is a seqlock: even when stable, odd while a writer updates the
//!    value in place. Records written to page nodes hold an even counter.

/// Bytes of the three header words.
pub const HEADER_BYTES: usize = 24;
/// The longest key.
pub const KEY_BYTES_MAX: usize = 4096;
/// The largest value capacity (the lengths word holds 24 bits), a multiple of 8.
pub const VALUE_BYTES_MAX: usize = (1 << 24) - 8;

const ADDRESS_MASK: u64 = (1 << 48) - 1;
const VERSION_SHIFT: u32 = 48;
const INVALID_BIT: u64 = 1 << 56;
const TOMBSTONE_BIT: u64 = 1 << 57;
const SEALED_BIT: u64 = 1 << 58;
const RESERVED_MASK: u64 = !((1 << 59) - 1);
const KEY_LEN_MASK: u64 = 0xffff;
const VALUE_LEN_SHIFT: u32 = 16;
const CAPACITY_SHIFT: u32 = 40;
const LEN24_MASK: u64 = (1 << 24) - 1;

const _: () = assert!(KEY_BYTES_MAX as u64 <= KEY_LEN_MASK);
const _: () = assert!(VALUE_BYTES_MAX as u64 <= LEN24_MASK && VALUE_BYTES_MAX.is_multiple_of(8));
const _: () = assert!(RESERVED_MASK & (SEALED_BIT | TOMBSTONE_BIT | INVALID_BIT) == 0);

/// Word 0 of a record: previous address in the hash chain, checkpoint version and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordInfo(pub u64);

impl RecordInfo {
    /// A live record following `previous` (0: none), written in checkpoint `version`.
    pub fn new(previous: u64, version: u8) -> RecordInfo {
        RecordInfo((previous & ADDRESS_MASK) | (u64::from(version) << VERSION_SHIFT))
    }

    /// The previous record's address in the same hash chain (0: none).
    pub fn previous(self) -> u64 {
        self.0 & ADDRESS_MASK
    }

    /// The checkpoint version that wrote the record.
    pub fn version(self) -> u8 {
        (self.0 >> VERSION_SHIFT) as u8
    }

    /// The record must be skipped (an insert that lost its race).
    pub fn is_invalid(self) -> bool {
        self.0 & INVALID_BIT != 0
    }

    /// The record is a delete.
    pub fn is_tombstone(self) -> bool {
        self.0 & TOMBSTONE_BIT != 0
    }

    /// A copy at the tail superseded the record: no in-place update may happen to it.
    pub fn is_sealed(self) -> bool {
        self.0 & SEALED_BIT != 0
    }

    /// This info with the invalid bit set.
    pub fn with_invalid(self) -> RecordInfo {
        RecordInfo(self.0 | INVALID_BIT)
    }

    /// This info with the tombstone bit set.
    pub fn with_tombstone(self) -> RecordInfo {
        RecordInfo(self.0 | TOMBSTONE_BIT)
    }

    /// This info with the sealed bit set.
    pub fn with_sealed(self) -> RecordInfo {
        RecordInfo(self.0 | SEALED_BIT)
    }
}

/// Why a record cannot be written or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Keys are at least one byte (invariant 2).
    #[error("a key must not be empty")]
    KeyEmpty,
    /// The key is longer than [`KEY_BYTES_MAX`].
    #[error("key of {len} bytes is longer than the maximum {max}")]
    KeyTooLong { len: usize, max: usize },
    /// The value is larger than its capacity allows.
    #[error("value of {len} bytes is larger than the maximum {max}")]
    ValueTooLong { len: usize, max: usize },
    /// Reserved header bits are set (invariant 4).
    #[error("reserved header bits set: {word:#018x}")]
    ReservedBits { word: u64 },
    /// The lengths word is inconsistent (invariant 3).
    #[error("bad lengths word {word:#018x}")]
    BadLengths { word: u64 },
    /// The record runs past the bytes available.
    #[error("record of {needed} bytes with only {available} left")]
    Truncated { needed: usize, available: usize },
}

/// The decoded header of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Word 0.
    pub info: RecordInfo,
    /// Key bytes.
    pub key_len: usize,
    /// Value bytes.
    pub value_len: usize,
    /// Bytes reserved for the value (a multiple of 8, at least `value_len`).
    pub value_capacity: usize,
}

/// `n` rounded up to a multiple of 8.
pub fn pad8(n: usize) -> usize {
    n.div_ceil(8) * 8
}

/// The bytes of a record with a `key_len`-byte key and `value_capacity` bytes for its value
/// (invariant 1), or why there can be no such record.
pub fn record_bytes(key_len: usize, value_capacity: usize) -> Result<usize, RecordError> {
    if key_len == 0 {
        return Err(RecordError::KeyEmpty);
    }
    if key_len > KEY_BYTES_MAX {
        return Err(RecordError::KeyTooLong {
            len: key_len,
            max: KEY_BYTES_MAX,
        });
    }
    if value_capacity > VALUE_BYTES_MAX {
        return Err(RecordError::ValueTooLong {
            len: value_capacity,
            max: VALUE_BYTES_MAX,
        });
    }
    Ok(HEADER_BYTES + pad8(key_len) + pad8(value_capacity))
}

impl RecordHeader {
    /// The record's total bytes.
    pub fn record_bytes(&self) -> usize {
        HEADER_BYTES + pad8(self.key_len) + self.value_capacity
    }

    /// The lengths word (word 1).
    pub fn lengths_word(&self) -> u64 {
        self.key_len as u64
            | (self.value_len as u64) << VALUE_LEN_SHIFT
            | (self.value_capacity as u64) << CAPACITY_SHIFT
    }

    /// Decodes words 0 and 1 of a record that has `available` bytes before its page ends
    /// (invariant 4). A lengths word of 0 is the end of a page's records: `Ok(None)`.
    pub fn decode(
        info: u64,
        lengths: u64,
        available: usize,
    ) -> Result<Option<RecordHeader>, RecordError> {
        if lengths == 0 {
            return Ok(None);
        }
        if info & RESERVED_MASK != 0 {
            return Err(RecordError::ReservedBits { word: info });
        }
        let key_len = (lengths & KEY_LEN_MASK) as usize;
        let value_len = ((lengths >> VALUE_LEN_SHIFT) & LEN24_MASK) as usize;
        let value_capacity = (lengths >> CAPACITY_SHIFT) as usize;
        let consistent = (1..=KEY_BYTES_MAX).contains(&key_len)
            && value_len <= value_capacity
            && value_capacity.is_multiple_of(8);
        if !consistent {
            return Err(RecordError::BadLengths { word: lengths });
        }
        let header = RecordHeader {
            info: RecordInfo(info),
            key_len,
            value_len,
            value_capacity,
        };
        let needed = header.record_bytes();
        if needed > available {
            return Err(RecordError::Truncated { needed, available });
        }
        Ok(Some(header))
    }
}

/// A record decoded from bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Its header.
    pub header: RecordHeader,
    /// Its key.
    pub key: &'a [u8],
    /// Its value (`value_len` bytes).
    pub value: &'a [u8],
}

/// Decodes the record at the start of `bytes` (the rest of its page): `Ok(None)` at the end of
/// the page's records (a zero lengths word, or fewer than a header's bytes left).
pub fn decode_record(bytes: &[u8]) -> Result<Option<RecordRef<'_>>, RecordError> {
    let (Some(info), Some(lengths)) = (word_at(bytes, 0), word_at(bytes, 8)) else {
        return Ok(None);
    };
    let Some(header) = RecordHeader::decode(info, lengths, bytes.len())? else {
        return Ok(None);
    };
    let key_at = HEADER_BYTES;
    let value_at = key_at + pad8(header.key_len);
    Ok(Some(RecordRef {
        header,
        key: &bytes[key_at..key_at + header.key_len],
        value: &bytes[value_at..value_at + header.value_len],
    }))
}

/// Writes a record into the start of `out` (zero padded, update counter 0) and returns its bytes.
pub fn encode_record(
    info: RecordInfo,
    key: &[u8],
    value: &[u8],
    value_capacity: usize,
    out: &mut [u8],
) -> Result<usize, RecordError> {
    if value.len() > value_capacity {
        return Err(RecordError::ValueTooLong {
            len: value.len(),
            max: value_capacity,
        });
    }
    let capacity = pad8(value_capacity);
    let total = record_bytes(key.len(), capacity)?;
    if total > out.len() {
        return Err(RecordError::Truncated {
            needed: total,
            available: out.len(),
        });
    }
    let header = RecordHeader {
        info,
        key_len: key.len(),
        value_len: value.len(),
        value_capacity: capacity,
    };
    let out = &mut out[..total];
    out.fill(0);
    out[0..8].copy_from_slice(&info.0.to_le_bytes());
    out[8..16].copy_from_slice(&header.lengths_word().to_le_bytes());
    out[HEADER_BYTES..HEADER_BYTES + key.len()].copy_from_slice(key);
    let value_at = HEADER_BYTES + pad8(key.len());
    out[value_at..value_at + value.len()].copy_from_slice(value);
    Ok(total)
}

fn word_at(bytes: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The record of FORMAT.md §9, byte for byte.
    /// Info: previous 0x1234_5678_9abc, version 3.
    const GOLDEN: [u8; 48] = [
        0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0x03, 0x00, // info
        0x05, 0x00, 0x05, 0x00, 0x00, 0x08, 0x00, 0x00, // key 5, value 5, capacity 8
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // update counter 0
        b'k', b'e', b'y', b'-', b'1', 0x00, 0x00, 0x00, // key, padded
        b'h', b'e', b'l', b'l', b'o', 0x00, 0x00, 0x00, // value, padded to its capacity
        0, 0, 0, 0, 0, 0, 0, 0, // (not part of the record: the end of the page's records)
    ];

    #[test]
    fn golden_record_bytes() {
        let mut out = [0u8; 48];
        let info = RecordInfo::new(0x1234_5678_9abc, 3);
        assert_eq!(encode_record(info, b"key-1", b"hello", 8, &mut out), Ok(40));
        assert_eq!(out, GOLDEN);
        let r = decode_record(&GOLDEN).unwrap().unwrap();
        assert_eq!(r.header.info.previous(), 0x1234_5678_9abc);
        assert_eq!(r.header.info.version(), 3);
        assert_eq!((r.key, r.value), (&b"key-1"[..], &b"hello"[..]));
        assert_eq!(decode_record(&GOLDEN[40..]), Ok(None));
    }

    #[test]
    fn flags_round_trip_and_stay_apart() {
        let i = RecordInfo::new(ADDRESS_MASK, 255);
        assert!(!i.is_invalid() && !i.is_tombstone() && !i.is_sealed());
        let all = i.with_invalid().with_tombstone().with_sealed();
        assert!(all.is_invalid() && all.is_tombstone() && all.is_sealed());
        assert_eq!((all.previous(), all.version()), (ADDRESS_MASK, 255));
        assert_eq!(all.0 & RESERVED_MASK, 0);
    }

    #[test]
    fn limits_are_exact_errors() {
        assert_eq!(record_bytes(0, 8), Err(RecordError::KeyEmpty));
        assert_eq!(
            record_bytes(4097, 8),
            Err(RecordError::KeyTooLong {
                len: 4097,
                max: 4096
            })
        );
        assert_eq!(
            record_bytes(4096, VALUE_BYTES_MAX),
            Ok(24 + 4096 + VALUE_BYTES_MAX)
        );
        assert_eq!(
            record_bytes(1, VALUE_BYTES_MAX + 1),
            Err(RecordError::ValueTooLong {
                len: VALUE_BYTES_MAX + 1,
                max: VALUE_BYTES_MAX
            })
        );
        assert_eq!(record_bytes(8, 8), Ok(40));
        assert_eq!(record_bytes(9, 100), Ok(24 + 16 + 104));
        let mut out = [0u8; 39];
        assert_eq!(
            encode_record(RecordInfo::default(), b"k", b"v", 8, &mut out),
            Err(RecordError::Truncated {
                needed: 40,
                available: 39
            })
        );
    }

    #[test]
    fn decode_rejects_bad_words() {
        let ok_lengths = GOLDEN[8..16].try_into().map(u64::from_le_bytes).unwrap();
        assert_eq!(
            RecordHeader::decode(1 << 59, ok_lengths, 40),
            Err(RecordError::ReservedBits { word: 1 << 59 })
        );
        // Value longer than its capacity; capacity not a multiple of 8; key of 0 bytes.
        for lengths in [9 << 16 | 8 << 40 | 1, 5 << 40 | 1, 8 << 40 | 1 << 16] {
            assert_eq!(
                RecordHeader::decode(0, lengths, 1 << 30),
                Err(RecordError::BadLengths { word: lengths })
            );
        }
        assert_eq!(
            RecordHeader::decode(0, ok_lengths, 39),
            Err(RecordError::Truncated {
                needed: 40,
                available: 39
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(0u8.., 0..200)) {
            if let Ok(Some(r)) = decode_record(&bytes) {
                proptest::prop_assert!(r.header.record_bytes() <= bytes.len());
                proptest::prop_assert_eq!(r.key.len(), r.header.key_len);
            }
        }
    }
}
