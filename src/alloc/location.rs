//! `Location`: where a node version's bytes live, and how many bytes of its file it owns.
//!
//! Invariants:
//! 1. A node of `len` bytes lives in exactly one class, [`class_for_len`]: a small class (a
//!    power-of-two slot, 16 B to 256 KiB) when `len <= SMALL_SLOT_BYTES_MAX`, the large class
//!    (an extent of whole 4 KiB units) up to `SLOT_BYTES_MAX`.
//! 2. What a version owns in its file is a function of `(location, len)` alone
//!    ([`slot_bytes`]): the class's slot, or for the large class `round_up(len, 4 KiB)`. Recovery,
//!    fsck and the allocator's rebuild derive every extent from the versions with it.
//! 3. A large extent never crosses a [`REGION_BYTES`] boundary of its file, so it lies in one
//!    mapped window (windows are whole regions, `DataFileOptions::class_window_bytes`).

use std::fmt;

/// Smallest slot size: size class 0.
pub const SLOT_BYTES_MIN: u64 = 16;
/// log2 of [`SLOT_BYTES_MIN`].
pub const SLOT_SHIFT_MIN: u32 = 4;
/// Number of small (power-of-two slot) classes: 16 B doubling to 256 KiB.
pub const SMALL_CLASS_COUNT: usize = 15;
/// The class of large nodes: extents of whole [`EXTENT_UNIT_BYTES`] units, allocated first fit
/// by size (best fit) in [`REGION_BYTES`] regions (`extents.rs`).
pub const LARGE_CLASS: u8 = SMALL_CLASS_COUNT as u8;
/// Number of size classes: the small ones and the large class.
pub const CLASS_COUNT: usize = SMALL_CLASS_COUNT + 1;
/// Largest slot of a small class; larger nodes are large extents.
pub const SMALL_SLOT_BYTES_MAX: u64 = SLOT_BYTES_MIN << (SMALL_CLASS_COUNT - 1);
/// The largest node version vellum stores (a large extent of 16 384 units).
pub const SLOT_BYTES_MAX: u64 = 64 << 20;
/// The unit of large extents: their offsets and lengths are multiples of it (the page size, so
/// a hole punch returns exactly a freed extent's blocks).
pub const EXTENT_UNIT_BYTES: u64 = 4096;
/// Bytes of a region of a large-class data file: no extent crosses a region boundary, and a
/// region is the large class's segment (compaction's victim, the unit of file growth).
pub const REGION_BYTES: u64 = SLOT_BYTES_MAX;

const _: () = assert!(SLOT_BYTES_MIN == 1 << SLOT_SHIFT_MIN);
const _: () = assert!(SMALL_SLOT_BYTES_MAX == 256 << 10);
const _: () = assert!(SMALL_SLOT_BYTES_MAX.is_multiple_of(EXTENT_UNIT_BYTES));
const _: () = assert!(EXTENT_UNIT_BYTES.is_multiple_of(SLOT_BYTES_MIN));
const _: () = assert!(REGION_BYTES.is_multiple_of(EXTENT_UNIT_BYTES));
const _: () = assert!(REGION_BYTES >= SLOT_BYTES_MAX);

const CLASS_BITS: u32 = 5;
const FILE_BITS: u32 = 19;
const UNIT_BITS: u32 = 40;
const _: () = assert!(CLASS_BITS + FILE_BITS + UNIT_BITS == 64);
const _: () = assert!(CLASS_COUNT <= 1 << CLASS_BITS);

/// Largest data-file number a location can name.
pub const FILE_MAX: u32 = (1 << FILE_BITS) - 1;

/// True for the classes of power-of-two slots.
pub const fn is_small_class(class: u8) -> bool {
    (class as usize) < SMALL_CLASS_COUNT
}

/// The allocation unit of `class`: every location of the class is a multiple of it, and
/// everything the class allocates a whole number of them. A small class's unit is its slot
/// (`16 << class`); the large class's is [`EXTENT_UNIT_BYTES`].
pub const fn class_unit_bytes(class: u8) -> u64 {
    if is_small_class(class) {
        SLOT_BYTES_MIN << class
    } else {
        EXTENT_UNIT_BYTES
    }
}

/// The most bytes a node of `class` holds: its slot, or [`SLOT_BYTES_MAX`] for the large class.
pub const fn class_len_max(class: u8) -> u64 {
    if is_small_class(class) {
        SLOT_BYTES_MIN << class
    } else {
        SLOT_BYTES_MAX
    }
}

/// True when a version of `len` bytes may live at a location of `class` (what decoders check):
/// a small class holds up to its slot; the large class holds exactly the nodes too large for
/// every small class, up to [`SLOT_BYTES_MAX`] (invariant 1). Classes past the last hold nothing.
pub const fn len_fits(class: u8, len: u64) -> bool {
    if is_small_class(class) {
        len <= SLOT_BYTES_MIN << class
    } else if class == LARGE_CLASS {
        len > SMALL_SLOT_BYTES_MAX && len <= SLOT_BYTES_MAX
    } else {
        false
    }
}

/// Bytes a version of `len` bytes owns at a location of `class` (invariant 2): the slot of a
/// small class; for the large class its extent, `len` rounded up to whole 4 KiB units.
pub const fn slot_bytes(class: u8, len: u64) -> u64 {
    if is_small_class(class) {
        SLOT_BYTES_MIN << class
    } else {
        len.div_ceil(EXTENT_UNIT_BYTES) * EXTENT_UNIT_BYTES
    }
}

/// The class a node of `len` bytes lives in (invariant 1); `None` above [`SLOT_BYTES_MAX`].
pub fn class_for_len(len: u64) -> Option<u8> {
    if len > SLOT_BYTES_MAX {
        return None;
    }
    if len > SMALL_SLOT_BYTES_MAX {
        return Some(LARGE_CLASS);
    }
    let slot = len.max(SLOT_BYTES_MIN).next_power_of_two();
    Some((slot.trailing_zeros() - SLOT_SHIFT_MIN) as u8)
}

/// Where a node version lives: size class, data file (per class), and byte offset in that file.
///
/// Packed into a u64 as `class (5 bits) | file (19 bits) | offset / 16 (40 bits)`, so object-table
/// entries hold it in one atomic word. Offsets are multiples of their class's unit
/// ([`class_unit_bytes`]), hence of 16.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// Size class: small classes `0..LARGE_CLASS` (slot `16 << class`), or [`LARGE_CLASS`].
    pub class: u8,
    /// Data file number within the class.
    pub file: u32,
    /// Byte offset of the slot or extent in the file.
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

    /// Bytes a version of `len` bytes owns here ([`slot_bytes`]).
    pub fn slot_bytes(self, len: u64) -> u64 {
        slot_bytes(self.class, len)
    }

    /// The byte range a version of `len` bytes owns in its file.
    pub fn range(self, len: u64) -> std::ops::Range<u64> {
        self.offset..self.offset.saturating_add(self.slot_bytes(len))
    }

    /// Why a version of `len` bytes cannot own its range here, if it cannot: the offset is off
    /// its class's grid, or a large extent crosses a region boundary (invariant 3). The length
    /// itself is the decoders' check ([`len_fits`]).
    pub fn misplaced(self, len: u64) -> Option<&'static str> {
        if !self.offset.is_multiple_of(class_unit_bytes(self.class)) {
            return Some("is not aligned to its class's unit");
        }
        if self.class == LARGE_CLASS
            && self.offset % REGION_BYTES + slot_bytes(self.class, len) > REGION_BYTES
        {
            return Some("crosses a region boundary");
        }
        None
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
        assert_eq!(class_for_len(16), Some(0));
        assert_eq!(class_for_len(17), Some(1));
        assert_eq!(class_for_len(64), Some(2));
        assert_eq!(class_for_len(256 << 10), Some(14));
        assert_eq!(class_unit_bytes(0), 16);
        assert_eq!(class_unit_bytes(14), SMALL_SLOT_BYTES_MAX);
        assert_eq!(class_for_len((256 << 10) + 1), Some(LARGE_CLASS));
        assert_eq!(class_for_len(64 << 20), Some(LARGE_CLASS));
        assert_eq!(class_for_len((64 << 20) + 1), None);
        assert_eq!(LARGE_CLASS, 15);
        assert_eq!(CLASS_COUNT, 16);
    }

    #[test]
    fn large_extents_are_len_rounded_up_to_4_kib() {
        let mib = 1u64 << 20;
        for (len, extent) in [
            ((256 << 10) + 1, 260 << 10),
            (mib + 1, mib + 4096),
            (5 * mib, 5 * mib),
            (33 * mib, 33 * mib),
            (33 * mib + 1, 33 * mib + 4096),
            (64 * mib, 64 * mib),
        ] {
            assert_eq!(slot_bytes(LARGE_CLASS, len), extent, "len {len}");
            assert!(len_fits(LARGE_CLASS, len));
        }
        assert!(
            !len_fits(LARGE_CLASS, 256 << 10),
            "a small node is never large"
        );
        assert!(!len_fits(LARGE_CLASS, (64 << 20) + 1));
        assert!(len_fits(14, 256 << 10));
        assert!(!len_fits(14, (256 << 10) + 1));
        assert!(!len_fits(CLASS_COUNT as u8, 1));
        assert_eq!(slot_bytes(3, 1), 128);
        assert_eq!(slot_bytes(0, 16), 16);
    }

    #[test]
    fn placement_rules() {
        let at = |offset| Location {
            class: LARGE_CLASS,
            file: 0,
            offset,
        };
        let mib = 1u64 << 20;
        assert_eq!(at(0).misplaced(64 * mib), None);
        assert_eq!(at(31 * mib).misplaced(33 * mib), None);
        assert_eq!(
            at(31 * mib + 4096).misplaced(33 * mib),
            Some("crosses a region boundary")
        );
        assert_eq!(
            at(64 * mib + 64).misplaced(mib),
            Some("is not aligned to its class's unit")
        );
        // Class 5's slots are 512 B: 256 is on the packing's 16-byte grid but not on its own.
        let small = Location {
            class: 5,
            file: 0,
            offset: 256,
        };
        assert_eq!(
            small.misplaced(1),
            Some("is not aligned to its class's unit")
        );
        assert_eq!(at(5 * mib).range(mib + 1), 5 * mib..6 * mib + 4096);
    }

    #[test]
    fn pack_round_trips() {
        let l = Location {
            class: LARGE_CLASS,
            file: FILE_MAX,
            offset: ((1u64 << 40) - 1) << SLOT_SHIFT_MIN,
        };
        assert_eq!(Location::unpack(l.pack()), Some(l));
        assert_eq!(Location::unpack(31 << 59), None);
        assert_eq!(
            Location::unpack(16 << 59),
            None,
            "classes past the large one"
        );
        let w = l.pack();
        assert_eq!(Location::packed_class(w), usize::from(LARGE_CLASS));
        assert_eq!(Location::packed_file(w), FILE_MAX);
        assert_eq!(Location::packed_offset(w), l.offset);
    }

    /// FORMAT.md §5, "Location": the words of a small slot and of a large extent.
    #[test]
    fn layout_is_pinned() {
        // class 5 << 59 | file 2 << 40 | 2560 / 16 = 0xa0
        let small = Location {
            class: 5,
            file: 2,
            offset: 512 * 5,
        };
        assert_eq!(small.pack(), 0x2800_0200_0000_00a0);
        let large = Location {
            class: LARGE_CLASS,
            file: 1,
            offset: (64 << 20) + (31 << 20),
        };
        // class 15 << 59 | file 1 << 40 | 95 MiB / 16 = 0x5f_0000
        assert_eq!(large.pack(), 0x7800_0100_005f_0000);
        assert_eq!(
            large.pack().to_le_bytes(),
            [0x00, 0x00, 0x5f, 0, 0, 0x01, 0, 0x78]
        );
        assert_eq!(large.range(33 << 20), (95 << 20)..(128 << 20));
    }
}
