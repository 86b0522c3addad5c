//! `Location`: where a node version's bytes live.

use std::fmt;

/// Smallest slot size: size class 0.
pub const SLOT_BYTES_MIN: u64 = 64;
/// log2 of [`SLOT_BYTES_MIN`].
pub const SLOT_SHIFT_MIN: u32 = 6;
/// Number of size classes: 64 B doubling to 64 MiB.
pub const CLASS_COUNT: usize = 21;
/// Largest slot size (the largest node version vellum stores).
pub const SLOT_BYTES_MAX: u64 = SLOT_BYTES_MIN << (CLASS_COUNT - 1);
/// Largest slot of an ordinary (small) class; larger classes hold large objects.
pub const SMALL_SLOT_BYTES_MAX: u64 = 256 << 10;

const _: () = assert!(SLOT_BYTES_MIN == 1 << SLOT_SHIFT_MIN);
const _: () = assert!(SLOT_BYTES_MAX == 64 << 20);

const CLASS_BITS: u32 = 5;
const FILE_BITS: u32 = 19;
const UNIT_BITS: u32 = 40;
const _: () = assert!(CLASS_BITS + FILE_BITS + UNIT_BITS == 64);
const _: () = assert!(CLASS_COUNT <= 1 << CLASS_BITS);

/// Largest data-file number a location can name.
pub const FILE_MAX: u32 = (1 << FILE_BITS) - 1;

/// The bytes of one slot size class.
pub const fn class_slot_bytes(class: u8) -> u64 {
    SLOT_BYTES_MIN << class
}

/// The smallest class whose slots hold `len` bytes; `None` above [`SLOT_BYTES_MAX`].
pub fn class_for_len(len: u64) -> Option<u8> {
    if len > SLOT_BYTES_MAX {
        return None;
    }
    let slot = len.max(SLOT_BYTES_MIN).next_power_of_two();
    Some((slot.trailing_zeros() - SLOT_SHIFT_MIN) as u8)
}

/// Where a node version lives: size class, data file (per class), and byte offset in that file.
///
/// Packed into a u64 as `class (5 bits) | file (19 bits) | offset / 64 (40 bits)`, so object-table
/// entries hold it in one atomic word. Offsets are slot-aligned, hence multiples of 64.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Size class (slot size `64 << class`).
    pub class: u8,
    /// Data file number within the class.
    pub file: u32,
    /// Byte offset of the slot in the file.
    pub offset: u64,
}

impl Location {
    /// Packs the location into one word. Requires a valid location (see [`Location::unpack`]).
    pub fn pack(self) -> u64 {
        (u64::from(self.class) << (FILE_BITS + UNIT_BITS))
            | (u64::from(self.file) << UNIT_BITS)
            | (self.offset >> SLOT_SHIFT_MIN)
    }

    /// Unpacks a word written by [`Location::pack`]; `None` for an invalid class.
    pub fn unpack(word: u64) -> Option<Location> {
        let class = (word >> (FILE_BITS + UNIT_BITS)) as u8;
        if usize::from(class) >= CLASS_COUNT {
            return None;
        }
        Some(Location {
            class,
            file: ((word >> UNIT_BITS) & u64::from(FILE_MAX)) as u32,
            offset: (word & ((1 << UNIT_BITS) - 1)) << SLOT_SHIFT_MIN,
        })
    }

    /// The class of a packed location (possibly invalid: at least [`CLASS_COUNT`]).
    #[inline]
    pub(crate) fn packed_class(word: u64) -> usize {
        (word >> (FILE_BITS + UNIT_BITS)) as usize
    }

    /// The file of a packed location.
    #[inline]
    pub(crate) fn packed_file(word: u64) -> u32 {
        ((word >> UNIT_BITS) & u64::from(FILE_MAX)) as u32
    }

    /// The byte offset of a packed location.
    #[inline]
    pub(crate) fn packed_offset(word: u64) -> u64 {
        (word & ((1 << UNIT_BITS) - 1)) << SLOT_SHIFT_MIN
    }

    /// Bytes of this location's slot.
    pub fn slot_bytes(self) -> u64 {
        class_slot_bytes(self.class)
    }

    /// The byte range the slot covers in its file.
    pub fn range(self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.slot_bytes()
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "c{}/f{}@{}", self.class, self.file, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(class_for_len(0), Some(0));
        assert_eq!(class_for_len(64), Some(0));
        assert_eq!(class_for_len(65), Some(1));
        assert_eq!(class_for_len(256 << 10), Some(12));
        assert_eq!(class_slot_bytes(12), SMALL_SLOT_BYTES_MAX);
        assert_eq!(class_for_len(64 << 20), Some(20));
        assert_eq!(class_for_len((64 << 20) + 1), None);
    }

    #[test]
    fn pack_round_trips() {
        let l = Location {
            class: 20,
            file: FILE_MAX,
            offset: ((1u64 << 40) - 1) << 6,
        };
        assert_eq!(Location::unpack(l.pack()), Some(l));
        assert_eq!(Location::unpack(31 << 59), None);
        let w = l.pack();
        assert_eq!(Location::packed_class(w), 20);
        assert_eq!(Location::packed_file(w), FILE_MAX);
        assert_eq!(Location::packed_offset(w), l.offset);
    }
}
