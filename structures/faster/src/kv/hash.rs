//! The hash of a key, and how the index splits it into a bucket and a tag.
//!
//! Invariants:
//! 1. A key's hash is XXH3-64 of its bytes (seed 0), a function fixed by its specification, so
//!    it is the same across runs, machines and crate versions. The index is persisted with
//!    entries placed by this hash, so it must never change: the golden test pins it.
//! 2. The bucket comes from the low bits (`hash & mask`) and the tag from the top 14 bits
//!    (`hash >> 50`). With at most 2^40 buckets the two never share a bit, so the entries of one
//!    bucket have independent tags.

use xxhash_rust::xxh3::xxh3_64;

/// Bits of a tag.
pub const TAG_BITS: u32 = 14;

/// Where the tag starts in the hash: its top [`TAG_BITS`] bits.
pub const TAG_SHIFT: u32 = u64::BITS - TAG_BITS;

/// The 64-bit hash of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(u64);

impl KeyHash {
    /// The hash of `key` (invariant 1).
    pub fn of(key: &[u8]) -> KeyHash {
        KeyHash(xxh3_64(key))
    }

    /// A hash given by its value (tests, and callers that hash keys themselves).
    pub const fn from_raw(hash: u64) -> KeyHash {
        KeyHash(hash)
    }

    /// The hash's value.
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The main bucket of this hash in a table of `mask + 1` buckets (`mask` is a power of two
    /// minus one): its low bits (invariant 2).
    pub const fn bucket(self, mask: u64) -> usize {
        (self.0 & mask) as usize
    }

    /// The tag: the top 14 bits (invariant 2).
    pub const fn tag(self) -> u16 {
        (self.0 >> TAG_SHIFT) as u16
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Invariant 1: these values are XXH3-64 (seed 0) as the reference implementation computes
    /// them. If this test fails, every persisted index is unreadable: do not update the values.
    #[test]
    fn golden_hashes() {
        assert_eq!(KeyHash::of(b"a").raw(), 0xe6c6_32b6_1e96_4e1f);
        assert_eq!(KeyHash::of(b"key-1").raw(), 0x2d29_f133_6b02_29f9);
        assert_eq!(
            KeyHash::of(&0u64.to_le_bytes()).raw(),
            0xc77b_3abb_6f87_acd9
        );
    }

    #[test]
    fn bucket_takes_the_low_bits_and_tag_the_top_14() {
        let h = KeyHash::from_raw(0xabcd_ef01_2345_6789);
        assert_eq!(h.bucket(0), 0);
        assert_eq!(h.bucket(0xff), 0x89);
        assert_eq!(h.bucket((1 << 40) - 1), 0x01_2345_6789);
        assert_eq!(h.tag(), 0x2af3);
        assert_eq!(KeyHash::from_raw(u64::MAX).tag(), (1 << TAG_BITS) - 1);
        assert_eq!(KeyHash::from_raw((1 << 50) - 1).tag(), 0);
    }
}
