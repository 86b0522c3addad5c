//! The FasterKV record format (`design/FORMAT.md` §9): a record's bytes in a page node (byte
//! slices) and on a ring page (`&[AtomicU64]` words). The operations on ring-page words, with
//! the seqlock that lets in-place updates run beside readers without `unsafe`, are in
//! `record/words.rs` (invariants KR6–KR9) and re-exported here.
//!
//! Invariants (prefix KR, so they do not collide with other protocols' step labels):
//! - KR1. A record starts at an 8-byte-aligned offset of its page, occupies
//!   [`record_size`]`(key_len, value_capacity)` = 24 + pad8(key_len) + value_capacity bytes, and
//!   never crosses the page's end: every decoder checks the size against the bytes left.
//! - KR2. Word 0 is a [`RecordInfo`]: previous address (bits 0–47), checkpoint version (48–55),
//!   invalid (56), tombstone (57), sealed (58). Bits 59–63 are reserved: no constructor sets
//!   them and every decoder refuses them.
//! - KR3. Word 1 holds `key_len` (bits 0–15, 1 ..= [`KEY_BYTES_MAX`]), `value_len` (16–39) and
//!   `value_capacity` (40–63, a multiple of 8, `value_len <= value_capacity <=`
//!   [`VALUE_BYTES_MAX`]). A zero word 1 is never a record (its key is empty): it marks the end
//!   of a page's records.
//! - KR4. The key's padding (to a multiple of 8) and the value's bytes past `value_len` (to the
//!   capacity) are zero: the encoders write them, an in-place update that shrinks a value
//!   re-zeroes its tail (`words.rs`), and the byte decoder refuses non-zero padding. So
//!   [`key_matches`] compares whole words.
//! - KR5. Word 2 is the update counter, a seqlock (KR7). In a page node it is even: no writer
//!   holds a record of a page being written out. [`record_at_bytes`] refuses an odd one; any
//!   even value is accepted.

use std::ops::Range;

/// Bytes of a record's fixed part: info, lengths, update counter.
pub const RECORD_HEADER_BYTES: usize = 24;
/// The longest key, in bytes.
pub const KEY_BYTES_MAX: usize = 4096;
/// The largest value capacity (and so value) the format holds: the largest multiple of 8 below
/// 2^24. A page may allow less ([`value_bytes_max`]).
pub const VALUE_BYTES_MAX: usize = (1 << 24) - 8;
/// The largest address a previous-address field holds; addresses are below 2^48.
pub const ADDRESS_MAX: u64 = (1 << 48) - 1;

const WORD_BYTES: usize = 8;
const INFO_WORD: usize = 0;
const LENGTHS_WORD: usize = 1;
const COUNTER_WORD: usize = 2;
const KEY_LEN_MASK: u64 = 0xffff;
const U24_MASK: u64 = (1 << 24) - 1;
const VALUE_LEN_SHIFT: u32 = 16;
const CAPACITY_SHIFT: u32 = 40;

const _: () = assert!(RECORD_HEADER_BYTES == 3 * WORD_BYTES);
const _: () = assert!(COUNTER_WORD * WORD_BYTES + WORD_BYTES == RECORD_HEADER_BYTES);
const _: () = assert!(VALUE_LEN_SHIFT == 16 && VALUE_LEN_SHIFT + 24 == CAPACITY_SHIFT);
const _: () = assert!(CAPACITY_SHIFT + 24 == 64);
const _: () = assert!(KEY_BYTES_MAX as u64 <= KEY_LEN_MASK);
const _: () = assert!(VALUE_BYTES_MAX.is_multiple_of(8) && U24_MASK - (VALUE_BYTES_MAX as u64) < 8);

mod words;

pub use words::{
    ReadOutcome, RecordWords, SealOutcome, UpdateOutcome, header_at, key_matches, load_info,
    mark_invalid, read_value, seal, try_delete_in_place, try_update_in_place, unseal,
    write_record_words,
};

/// Why a record cannot be built, or does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The key is empty (a zero lengths word: no record starts here).
    #[error("empty key")]
    KeyEmpty,
    /// The key is longer than the format (or the page) allows.
    #[error("key of {len} bytes is longer than {max}")]
    KeyTooLong {
        /// The key's bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The value capacity is larger than the format (or the page) allows.
    #[error("value of {len} bytes is longer than {max}")]
    ValueTooLong {
        /// The value's (or capacity's) bytes.
        len: usize,
        /// The most allowed.
        max: usize,
    },
    /// The value is longer than the space reserved for it.
    #[error("value of {len} bytes exceeds its capacity of {capacity}")]
    ValueOverCapacity {
        /// The value's bytes.
        len: usize,
        /// The record's value capacity.
        capacity: usize,
    },
    /// The value capacity is not a multiple of 8.
    #[error("value capacity {capacity} is not a multiple of 8")]
    CapacityUnaligned {
        /// The capacity found.
        capacity: usize,
    },
    /// The record does not fit in the bytes left in its page.
    #[error("record of {size} bytes crosses the page ({bytes_left} bytes left)")]
    CrossesPage {
        /// The record's bytes.
        size: usize,
        /// Bytes from the record's start to the page's (or stored bytes') end.
        bytes_left: usize,
    },
    /// The record info has reserved bits (59–63) set.
    #[error("record info {info:#018x} has reserved bits set")]
    ReservedBits {
        /// The info word.
        info: u64,
    },
    /// A record in a page node has an odd update counter (KR5).
    #[error("update counter {counter} is odd in a page node")]
    CounterOdd {
        /// The counter found.
        counter: u64,
    },
    /// A padding byte (of the key, or of the value past its length) is not zero (KR4).
    #[error("padding byte {at} of the record is not zero")]
    PaddingNotZero {
        /// The byte's offset from the record's start.
        at: usize,
    },
    /// The record offset is not a multiple of 8.
    #[error("record offset {offset} is not a multiple of 8")]
    OffsetUnaligned {
        /// The offset given.
        offset: usize,
    },
    /// The record offset leaves no room for a record header in the page.
    #[error("record offset {offset} leaves no room for a header in {page_bytes} bytes")]
    OffsetPastPage {
        /// The offset given.
        offset: usize,
        /// Bytes of the page (or of its stored part).
        page_bytes: usize,
    },
}

impl RecordError {
    /// The offset, from the record's start, of the field the error is about.
    pub fn field_offset(&self) -> usize {
        match self {
            RecordError::ReservedBits { .. }
            | RecordError::OffsetUnaligned { .. }
            | RecordError::OffsetPastPage { .. } => INFO_WORD * WORD_BYTES,
            RecordError::CounterOdd { .. } => COUNTER_WORD * WORD_BYTES,
            RecordError::PaddingNotZero { at } => *at,
            _ => LENGTHS_WORD * WORD_BYTES,
        }
    }

    /// The field's name in `design/FORMAT.md` §9 and the value found, for corruption reports.
    pub fn field(&self) -> (&'static str, u64) {
        match *self {
            RecordError::KeyEmpty => ("key_len", 0),
            RecordError::KeyTooLong { len, .. } => ("key_len", len as u64),
            RecordError::ValueTooLong { len, .. } => ("value_capacity", len as u64),
            RecordError::ValueOverCapacity { len, .. } => ("value_len", len as u64),
            RecordError::CapacityUnaligned { capacity } => ("value_capacity", capacity as u64),
            RecordError::CrossesPage { size, .. } => ("record_size", size as u64),
            RecordError::ReservedBits { info } => ("record_info", info),
            RecordError::CounterOdd { counter } => ("update_counter", counter),
            RecordError::PaddingNotZero { at } => ("padding", at as u64),
            RecordError::OffsetUnaligned { offset }
            | RecordError::OffsetPastPage { offset, .. } => ("record_offset", offset as u64),
        }
    }
}

/// `n` rounded up to a multiple of 8.
pub const fn pad8(n: usize) -> usize {
    n.div_ceil(WORD_BYTES) * WORD_BYTES
}

/// Bytes of a record with a `key_len`-byte key and `value_capacity` bytes reserved for its
/// value (KR1), checked against the format's limits (KR3).
pub const fn record_size(key_len: usize, value_capacity: usize) -> Result<u32, RecordError> {
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
    if !value_capacity.is_multiple_of(WORD_BYTES) {
        return Err(RecordError::CapacityUnaligned {
            capacity: value_capacity,
        });
    }
    // At most 24 + 4096 + 2^24 - 8: fits a u32.
    Ok((RECORD_HEADER_BYTES + pad8(key_len) + value_capacity) as u32)
}

/// The longest key a record alone in a `page_bytes` page can have (with no value).
pub const fn key_bytes_max(page_bytes: u32) -> usize {
    let room = (page_bytes as usize).saturating_sub(RECORD_HEADER_BYTES) / WORD_BYTES * WORD_BYTES;
    if room < KEY_BYTES_MAX {
        room
    } else {
        KEY_BYTES_MAX
    }
}

/// The largest value capacity a record with a `key_len`-byte key can have, alone in a
/// `page_bytes` page: the smaller of [`VALUE_BYTES_MAX`] and what the page leaves.
pub const fn value_bytes_max(key_len: usize, page_bytes: u32) -> usize {
    let room = (page_bytes as usize).saturating_sub(RECORD_HEADER_BYTES + pad8(key_len));
    let room = room / WORD_BYTES * WORD_BYTES;
    if room < VALUE_BYTES_MAX {
        room
    } else {
        VALUE_BYTES_MAX
    }
}

/// [`record_size`], also checked against a `page_bytes` page: the key and the capacity must
/// leave the record room in an otherwise empty page.
pub const fn record_size_in_page(
    key_len: usize,
    value_capacity: usize,
    page_bytes: u32,
) -> Result<u32, RecordError> {
    let size = match record_size(key_len, value_capacity) {
        Ok(size) => size,
        Err(e) => return Err(e),
    };
    if key_len > key_bytes_max(page_bytes) {
        return Err(RecordError::KeyTooLong {
            len: key_len,
            max: key_bytes_max(page_bytes),
        });
    }
    if value_capacity > value_bytes_max(key_len, page_bytes) {
        return Err(RecordError::ValueTooLong {
            len: value_capacity,
            max: value_bytes_max(key_len, page_bytes),
        });
    }
    Ok(size)
}

/// Word 0 of a record (KR2). Holds no reserved bit: every constructor clears them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RecordInfo(u64);

impl RecordInfo {
    /// Bits of the previous address in the hash chain (0: none).
    pub const PREVIOUS_ADDRESS_MASK: u64 = ADDRESS_MAX;
    /// Shift of the checkpoint version.
    pub const VERSION_SHIFT: u32 = 48;
    /// Bits of the checkpoint version (the CPR period that wrote the record).
    pub const VERSION_MASK: u64 = 0xff << Self::VERSION_SHIFT;
    /// The record must be skipped (an insert that lost a race).
    pub const INVALID_BIT: u64 = 1 << 56;
    /// The record is a delete.
    pub const TOMBSTONE_BIT: u64 = 1 << 57;
    /// A copy at the tail superseded the record: no in-place update, readers re-read the index.
    pub const SEALED_BIT: u64 = 1 << 58;
    /// Bits 59–63: zero.
    pub const RESERVED_MASK: u64 = !0 << 59;

    /// Info of a new record: `previous_address` (at most [`ADDRESS_MAX`]) and `version`, no flag.
    ///
    /// # Panics
    /// If `previous_address > ADDRESS_MAX`: the hybrid log never hands out such an address.
    pub const fn new(previous_address: u64, version: u8) -> RecordInfo {
        RecordInfo(0)
            .with_previous_address(previous_address)
            .with_version(version)
    }

    /// Decodes a word, refusing reserved bits.
    pub const fn from_word(word: u64) -> Result<RecordInfo, RecordError> {
        if word & Self::RESERVED_MASK != 0 {
            return Err(RecordError::ReservedBits { info: word });
        }
        Ok(RecordInfo(word))
    }

    /// The word as stored.
    pub const fn word(self) -> u64 {
        self.0
    }

    /// The previous address in the record's hash chain (0: none).
    pub const fn previous_address(self) -> u64 {
        self.0 & Self::PREVIOUS_ADDRESS_MASK
    }

    /// The checkpoint version that wrote the record.
    pub const fn version(self) -> u8 {
        ((self.0 & Self::VERSION_MASK) >> Self::VERSION_SHIFT) as u8
    }

    /// Whether the record must be skipped.
    pub const fn is_invalid(self) -> bool {
        self.0 & Self::INVALID_BIT != 0
    }

    /// Whether the record is a delete.
    pub const fn is_tombstone(self) -> bool {
        self.0 & Self::TOMBSTONE_BIT != 0
    }

    /// Whether a copy at the tail superseded the record.
    pub const fn is_sealed(self) -> bool {
        self.0 & Self::SEALED_BIT != 0
    }

    /// With the previous address set.
    ///
    /// # Panics
    /// If `address > ADDRESS_MAX`.
    pub const fn with_previous_address(self, address: u64) -> RecordInfo {
        assert!(address <= ADDRESS_MAX, "address past 2^48");
        RecordInfo(self.0 & !Self::PREVIOUS_ADDRESS_MASK | address)
    }

    /// With the checkpoint version set.
    pub const fn with_version(self, version: u8) -> RecordInfo {
        RecordInfo(self.0 & !Self::VERSION_MASK | (version as u64) << Self::VERSION_SHIFT)
    }

    /// With the invalid bit set or cleared.
    pub const fn with_invalid(self, on: bool) -> RecordInfo {
        self.with_bit(Self::INVALID_BIT, on)
    }

    /// With the tombstone bit set or cleared.
    pub const fn with_tombstone(self, on: bool) -> RecordInfo {
        self.with_bit(Self::TOMBSTONE_BIT, on)
    }

    /// With the sealed bit set or cleared.
    pub const fn with_sealed(self, on: bool) -> RecordInfo {
        self.with_bit(Self::SEALED_BIT, on)
    }

    const fn with_bit(self, bit: u64, on: bool) -> RecordInfo {
        if on {
            RecordInfo(self.0 | bit)
        } else {
            RecordInfo(self.0 & !bit)
        }
    }
}

const _: () = assert!(RecordInfo::PREVIOUS_ADDRESS_MASK & RecordInfo::VERSION_MASK == 0);
const _: () = assert!(
    RecordInfo::PREVIOUS_ADDRESS_MASK
        ^ RecordInfo::VERSION_MASK
        ^ RecordInfo::INVALID_BIT
        ^ RecordInfo::TOMBSTONE_BIT
        ^ RecordInfo::SEALED_BIT
        ^ RecordInfo::RESERVED_MASK
        == u64::MAX
);
const _: () = assert!(
    (RecordInfo::PREVIOUS_ADDRESS_MASK | RecordInfo::VERSION_MASK) >> 56 == 0
        && RecordInfo::INVALID_BIT >> 56 == 1
        && RecordInfo::SEALED_BIT << 1 == 1 << 59
);

/// A record's fixed part, decoded: words 0 and 1 (word 2, the update counter, is the seqlock's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Word 0.
    pub info: RecordInfo,
    /// Key bytes, 1 ..= [`KEY_BYTES_MAX`].
    pub key_len: u16,
    /// Value bytes, at most `value_capacity`.
    pub value_len: u32,
    /// Bytes reserved for the value, a multiple of 8.
    pub value_capacity: u32,
}

impl RecordHeader {
    /// A header, checked against the format's limits (KR3).
    pub fn new(
        info: RecordInfo,
        key_len: usize,
        value_len: usize,
        value_capacity: usize,
    ) -> Result<RecordHeader, RecordError> {
        record_size(key_len, value_capacity)?;
        if value_len > value_capacity {
            return Err(RecordError::ValueOverCapacity {
                len: value_len,
                capacity: value_capacity,
            });
        }
        // The checks above bound every length to its field.
        Ok(RecordHeader {
            info,
            key_len: key_len as u16,
            value_len: value_len as u32,
            value_capacity: value_capacity as u32,
        })
    }

    /// Decodes a record's three header words (the counter is not checked: it may be odd in
    /// memory), checking KR2, KR3 and that the record fits in `bytes_left_in_page` (KR1).
    #[inline]
    pub fn decode(words: [u64; 3], bytes_left_in_page: usize) -> Result<RecordHeader, RecordError> {
        let info = RecordInfo::from_word(words[INFO_WORD])?;
        let (key_len, value_len, value_capacity) = split_lengths(words[LENGTHS_WORD]);
        let h = RecordHeader::new(info, key_len, value_len, value_capacity)?;
        if h.size() > bytes_left_in_page {
            return Err(RecordError::CrossesPage {
                size: h.size(),
                bytes_left: bytes_left_in_page,
            });
        }
        Ok(h)
    }

    /// The three header words, with an update counter of 0.
    pub fn encode(&self) -> [u64; 3] {
        [self.info.word(), self.lengths_word(), 0]
    }

    /// Word 1.
    pub fn lengths_word(&self) -> u64 {
        u64::from(self.key_len)
            | u64::from(self.value_len) << VALUE_LEN_SHIFT
            | u64::from(self.value_capacity) << CAPACITY_SHIFT
    }

    /// Bytes of the record (KR1).
    pub fn size(&self) -> usize {
        RECORD_HEADER_BYTES + pad8(self.key_len.into()) + self.value_capacity as usize
    }

    /// The key's bytes, relative to the record's start.
    pub fn key_range(&self) -> Range<usize> {
        RECORD_HEADER_BYTES..RECORD_HEADER_BYTES + usize::from(self.key_len)
    }

    /// The value's reserved bytes (its capacity), relative to the record's start.
    pub fn capacity_range(&self) -> Range<usize> {
        let start = RECORD_HEADER_BYTES + pad8(self.key_len.into());
        start..start + self.value_capacity as usize
    }
}

/// `(key_len, value_len, value_capacity)` of a lengths word.
fn split_lengths(word: u64) -> (usize, usize, usize) {
    (
        (word & KEY_LEN_MASK) as usize,
        (word >> VALUE_LEN_SHIFT & U24_MASK) as usize,
        (word >> CAPACITY_SHIFT) as usize,
    )
}

/// `word` (a lengths word) with its value length replaced by `value_len` (at most the capacity).
fn with_value_len(word: u64, value_len: usize) -> u64 {
    word & !(U24_MASK << VALUE_LEN_SHIFT) | (value_len as u64 & U24_MASK) << VALUE_LEN_SHIFT
}

// ---- Byte slices: records in page nodes.

/// A record decoded from bytes: its offset in the page, header, key and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// The record's offset in its page.
    pub offset: usize,
    /// Its header.
    pub header: RecordHeader,
    /// Its key.
    pub key: &'a [u8],
    /// Its value (`value_len` bytes).
    pub value: &'a [u8],
}

/// Writes a record into `out[..size]` (counter 0, padding zero) and returns its size.
pub fn encode_record(
    info: RecordInfo,
    key: &[u8],
    value: &[u8],
    value_capacity: usize,
    out: &mut [u8],
) -> Result<usize, RecordError> {
    let h = RecordHeader::new(info, key.len(), value.len(), value_capacity)?;
    let size = h.size();
    let bytes_left = out.len();
    let out = out
        .get_mut(..size)
        .ok_or(RecordError::CrossesPage { size, bytes_left })?;
    out.fill(0);
    for (chunk, word) in out.chunks_exact_mut(WORD_BYTES).zip(h.encode()) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out[h.key_range()].copy_from_slice(key);
    let value_at = h.capacity_range().start;
    out[value_at..value_at + value.len()].copy_from_slice(value);
    Ok(size)
}

/// Decodes the record at byte `offset` of `page` (a page node's stored bytes), checking KR1–KR5.
/// Never panics.
pub fn record_at_bytes(page: &[u8], offset: usize) -> Result<RecordRef<'_>, RecordError> {
    let words = header_words_at(page, offset)?;
    let h = RecordHeader::decode(words, page.len() - offset)?;
    if !words[COUNTER_WORD].is_multiple_of(2) {
        return Err(RecordError::CounterOdd {
            counter: words[COUNTER_WORD],
        });
    }
    let record = &page[offset..offset + h.size()];
    let value = h.capacity_range().start..h.capacity_range().start + h.value_len as usize;
    check_zero(record, h.key_range().end..h.capacity_range().start)?;
    check_zero(record, value.end..h.size())?;
    Ok(RecordRef {
        offset,
        header: h,
        key: &record[h.key_range()],
        value: &record[value],
    })
}

/// The three header words at `offset` of `page`, if they lie inside it.
fn header_words_at(page: &[u8], offset: usize) -> Result<[u64; 3], RecordError> {
    if !offset.is_multiple_of(WORD_BYTES) {
        return Err(RecordError::OffsetUnaligned { offset });
    }
    let past = || RecordError::OffsetPastPage {
        offset,
        page_bytes: page.len(),
    };
    let end = offset.checked_add(RECORD_HEADER_BYTES).ok_or_else(past)?;
    let bytes = page.get(offset..end).ok_or_else(past)?;
    let mut words = [0u64; 3];
    for (w, chunk) in words.iter_mut().zip(bytes.chunks_exact(WORD_BYTES)) {
        *w = word_of(chunk);
    }
    Ok(words)
}

/// The word 1 at `offset` of `page`, if the page holds it (for walkers looking for the end).
pub fn lengths_word_at(page: &[u8], offset: usize) -> Option<u64> {
    let at = offset.checked_add(LENGTHS_WORD * WORD_BYTES)?;
    page.get(at..at.checked_add(WORD_BYTES)?).map(word_of)
}

/// Checks KR4 over `range` of `record`.
fn check_zero(record: &[u8], range: Range<usize>) -> Result<(), RecordError> {
    let start = range.start;
    match record[range].iter().position(|&b| b != 0) {
        Some(i) => Err(RecordError::PaddingNotZero { at: start + i }),
        None => Ok(()),
    }
}

/// The little-endian word of up to 8 bytes, zero padded.
fn word_of(bytes: &[u8]) -> u64 {
    let mut a = [0u8; WORD_BYTES];
    let n = bytes.len().min(WORD_BYTES);
    a[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;

    fn golden_info() -> RecordInfo {
        RecordInfo::new(0x0000_1234_5678_9abc, 3)
    }

    /// The record shown in `design/FORMAT.md` §9.
    const GOLDEN_RECORD: [u8; 40] = [
        0xbc, 0x9a, 0x78, 0x56, 0x34, 0x12, 0x03,
        0x00, // info: prev 0x123456789abc, version 3
        0x05, 0x00, 0x05, 0x00, 0x00, 0x08, 0x00, 0x00, // key_len 5, value_len 5, capacity 8
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // update counter 0
        b'k', b'e', b'y', b'-', b'1', 0x00, 0x00, 0x00, // key, padding
        b'h', b'e', b'l', b'l', b'o', 0x00, 0x00, 0x00, // value, padding to the capacity
    ];

    /// Golden bytes: `design/FORMAT.md` §9 and this code cannot drift apart.
    #[test]
    fn golden_record_bytes() {
        let mut out = [0xffu8; 48];
        let size = encode_record(golden_info(), b"key-1", b"hello", 8, &mut out).unwrap();
        assert_eq!(size, 40);
        assert_eq!(out[..40], GOLDEN_RECORD);
        assert_eq!(out[40..], [0xff; 8], "nothing written past the record");
        assert_eq!(golden_info().word(), 0x0003_1234_5678_9abc);
        let r = record_at_bytes(&GOLDEN_RECORD, 0).unwrap();
        assert_eq!((r.key, r.value), (&b"key-1"[..], &b"hello"[..]));
        assert_eq!(r.header.lengths_word(), 0x0000_0800_0005_0005);
        // The same bytes on ring-page words.
        let words: Vec<AtomicU64> = (0..5).map(|_| AtomicU64::new(u64::MAX)).collect();
        assert_eq!(
            write_record_words(&words, 0, golden_info(), b"key-1", b"hello", 8),
            Ok(40)
        );
        let bytes: Vec<u8> = words
            .iter()
            .flat_map(|w| w.load(Relaxed).to_le_bytes())
            .collect();
        assert_eq!(bytes, GOLDEN_RECORD);
    }

    #[test]
    fn info_bits_are_where_the_format_says() {
        let i = RecordInfo::new(ADDRESS_MAX, 0xff);
        assert_eq!(i.word(), (1 << 56) - 1);
        assert_eq!(i.with_invalid(true).word() >> 56, 1);
        assert_eq!(i.with_tombstone(true).word() >> 56, 2);
        assert_eq!(i.with_sealed(true).word() >> 56, 4);
        let all = i.with_invalid(true).with_tombstone(true).with_sealed(true);
        assert_eq!(all.word(), (1 << 59) - 1);
        assert_eq!(RecordInfo::from_word(all.word()), Ok(all));
        assert_eq!(
            all.with_sealed(false).with_invalid(false),
            i.with_tombstone(true)
        );
        assert_eq!(
            RecordInfo::from_word(1 << 59),
            Err(RecordError::ReservedBits { info: 1 << 59 })
        );
        let j = i.with_previous_address(8).with_version(2);
        assert_eq!((j.previous_address(), j.version()), (8, 2));
    }

    #[test]
    #[should_panic(expected = "address past 2^48")]
    fn an_address_past_48_bits_is_refused() {
        let _ = RecordInfo::new(ADDRESS_MAX + 1, 0);
    }

    #[test]
    fn shrinking_in_place_zeroes_the_tail() {
        let words: Vec<AtomicU64> = (0..6).map(|_| AtomicU64::new(0)).collect();
        write_record_words(&words, 0, golden_info(), b"k", b"0123456789", 16).unwrap();
        let shrink = try_update_in_place(&words, 0, |v, len| {
            assert_eq!((&v[..len], v.len()), (&b"0123456789"[..], 16));
            v[..2].copy_from_slice(b"ab");
            Some(2)
        });
        assert_eq!(shrink, Ok(UpdateOutcome::Updated));
        assert_eq!(
            words[4].load(Relaxed),
            u64::from_le_bytes(*b"ab\0\0\0\0\0\0")
        );
        assert_eq!(
            words[5].load(Relaxed),
            0,
            "KR4: bytes past the value are zero"
        );
        let mut out = Vec::new();
        assert_eq!(read_value(&words, 0, &mut out), Ok(ReadOutcome::Value));
        assert_eq!(out, b"ab");
    }

    #[test]
    fn replacing_in_place_zeroes_the_tail_and_refuses_what_does_not_fit() {
        let words: Vec<AtomicU64> = (0..6).map(|_| AtomicU64::new(0)).collect();
        write_record_words(&words, 0, golden_info(), b"k", b"0123456789", 16).unwrap();
        let r = RecordWords::at(&words, 0).unwrap();
        assert_eq!(r.try_replace_in_place(b"xyz"), Ok(UpdateOutcome::Updated));
        let word4 = u64::from_le_bytes(*b"xyz\0\0\0\0\0");
        assert_eq!((words[4].load(Relaxed), words[5].load(Relaxed)), (word4, 0));
        let mut out = Vec::new();
        assert_eq!(r.read_value(&mut out), Ok(ReadOutcome::Value));
        assert_eq!(out, b"xyz");
        assert_eq!(
            r.try_replace_in_place(&[7; 17]),
            Ok(UpdateOutcome::OverCapacity {
                len: 17,
                capacity: 16
            })
        );
        assert_eq!(r.try_replace_in_place(&[7; 16]), Ok(UpdateOutcome::Updated));
        assert_eq!(r.read_value(&mut out), Ok(ReadOutcome::Value));
        assert_eq!(out, [7; 16]);
        assert_eq!(
            words[2].load(Relaxed),
            4,
            "two updates: the seqlock is even"
        );
        let mut sealed = Vec::new();
        assert_eq!(r.seal(&mut sealed), Ok(SealOutcome::Sealed));
        assert_eq!(r.try_replace_in_place(b"no"), Ok(UpdateOutcome::Sealed));
        assert_eq!(r.read_value(&mut out), Ok(ReadOutcome::Sealed));
    }
}
