//! FasterKV's hash index: a table of cache-line buckets mapping a key's hash to the address of
//! the newest log record of the keys that share its bucket and tag.
//!
//! The index keeps no keys. Two keys whose hashes share the main bucket and the 14-bit tag share
//! one entry, as in FASTER: the entry points at the newest record of either, and each record
//! links to the previous record of the same bucket and tag, so a lookup walks that hash chain in
//! the log comparing keys. The index only has to make sure that a tag has one entry per chain.
//!
//! Memory: `bucket_count * 64` bytes of main table plus 32 KiB per overflow page allocated
//! ([`HashIndex::memory_bytes`]), and a page directory of 24 bytes per page of
//! `overflow_pages_max`, allocated up front.
//!
//! Invariants:
//! 1. An entry word holds the address in bits 0-47, the tag in bits 48-61, the tentative bit in
//!    bit 62, and 0 in bit 63. A word of 0 is a free slot, and an occupied slot is never 0: a
//!    final entry's address is at least [`ADDRESS_UNSET`], a tentative entry has its tentative
//!    bit.
//! 2. A bucket is 8 words in one 64-byte line: 7 entry slots and an overflow pointer, 0 or
//!    `1 + i` for overflow bucket `i` of the allocator (below 2^48).
//! 3. Once the `find_or_create` calls for a tag in a chain have returned, the chain holds at most
//!    one entry of that tag. A thread makes its entry final only after it published it as
//!    tentative (a `SeqCst` CAS) and then rescanned the whole chain (`SeqCst` loads) without
//!    meeting another entry of the tag. Of two threads racing for a tag, at least one therefore
//!    sees the other's entry, and backs off (clears its slot and starts again).
//! 4. A tentative entry belongs to the thread that wrote it: only that thread stores to its slot
//!    (making it final, or 0). `find` never returns one and no [`EntryRef`] names one, so no
//!    other thread CASes it.
//! 5. While the index is shared, entries never move and chains only grow: a bucket is linked by
//!    a CAS of the chain's last overflow pointer from 0, and unlinked only by
//!    [`HashIndex::compact_chains`], which takes `&mut self`. So a slot reference is valid for
//!    the borrow of the index, and a rescan meets every slot the scan before it met.
//! 6. Every store or successful CAS to a bucket of a chain is followed by setting the main
//!    bucket's bit (a `Release` `fetch_or`) and then a `Release` store of true to the dirty flag
//!    of the bucket's chunk. A checkpointer that clears the flag and then the bits
//!    ([`HashIndex::take_dirty_buckets`]) before copying the chains either copies the change or
//!    finds the flag and bit set again next time; one that sees the flag sees the bit set
//!    before it.
//! 7. A chunk image ([`HashIndex::chunk_words`]) is the words of the chunk's main buckets,
//!    followed by its overflow buckets in walk order (main bucket by main bucket, each chain from
//!    its head), each overflow pointer replaced by `1 +` the position of the bucket it names among
//!    the image's overflow buckets. An image thus does not depend on allocator indices;
//!    [`HashIndex::from_chunks`] accepts exactly this form and drops tentative entries.

use std::sync::atomic::Ordering::{self, AcqRel, Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU64};

use super::hash::{KeyHash, TAG_BITS};
use super::overflow::OverflowAllocator;
use crate::epoch::EpochGuard;
use vellum::words::AtomicWords;

pub use super::overflow::{
    PAGE_BUCKETS as OVERFLOW_PAGE_BUCKETS, PAGE_BYTES as OVERFLOW_PAGE_BYTES,
    PAGES_MAX_LIMIT as OVERFLOW_PAGES_MAX_LIMIT,
};

/// Bits of an entry's address.
pub const ADDRESS_BITS: u32 = 48;
/// The address bits of an entry word.
pub const ADDRESS_MASK: u64 = (1 << ADDRESS_BITS) - 1;
/// The largest address an entry holds.
pub const ADDRESS_MAX: u64 = ADDRESS_MASK;
/// No address: only a free slot (word 0) has it.
pub const ADDRESS_INVALID: u64 = 0;
/// The address of an entry `find_or_create` made, before a record is linked to it (FASTER's
/// "temporary invalid" address). The log must never place a record at address 1.
pub const ADDRESS_UNSET: u64 = 1;
/// Where the tag starts in an entry word.
pub const ENTRY_TAG_SHIFT: u32 = ADDRESS_BITS;
/// The tag bits of an entry word.
pub const ENTRY_TAG_MASK: u64 = ((1 << TAG_BITS) - 1) << ENTRY_TAG_SHIFT;
/// The tentative bit of an entry word.
pub const TENTATIVE_BIT: u64 = 1 << (ENTRY_TAG_SHIFT + TAG_BITS);
/// The reserved bit of an entry word (later: a read-cache address); always 0 today.
pub const RESERVED_BIT: u64 = TENTATIVE_BIT << 1;

/// Entry slots per bucket.
pub const ENTRIES_PER_BUCKET: usize = 7;
/// The word of a bucket holding its overflow pointer.
pub const OVERFLOW_WORD: usize = ENTRIES_PER_BUCKET;
/// Words per bucket.
pub const BUCKET_WORDS: usize = ENTRIES_PER_BUCKET + 1;
/// Bytes per bucket: one cache line.
pub const BUCKET_BYTES: usize = BUCKET_WORDS * 8;
/// Main buckets per chunk (a smaller table is one chunk of all its buckets).
pub const CHUNK_BUCKETS: usize = 1024;
/// Bytes of a full chunk of main buckets: 64 KiB.
pub const CHUNK_BYTES: usize = CHUNK_BUCKETS * BUCKET_BYTES;
/// The largest `bucket_count`.
pub const BUCKET_COUNT_MAX: u64 = 1 << 40;

// I1: the four fields tile the word, without overlap.
const _: () = assert!(ENTRY_TAG_SHIFT + TAG_BITS == 62);
const _: () = assert!(ADDRESS_MASK & ENTRY_TAG_MASK == 0);
const _: () = assert!((ADDRESS_MASK | ENTRY_TAG_MASK) & (TENTATIVE_BIT | RESERVED_BIT) == 0);
const _: () = assert!(ADDRESS_MASK | ENTRY_TAG_MASK | TENTATIVE_BIT | RESERVED_BIT == u64::MAX);
const _: () = assert!(RESERVED_BIT == 1 << 63);
// I2: a bucket is one aligned cache line.
const _: () = assert!(size_of::<Bucket>() == BUCKET_BYTES && BUCKET_BYTES == 64);
// (Alignment: main buckets and overflow pages are page-aligned `AtomicWords`, so every bucket
// starts a 64-byte line; a test checks it.)
const _: () = assert!(CHUNK_BYTES == 64 << 10);
// The bucket bits (at most 40) and the tag bits (the top 14) of a hash are disjoint.
const _: () = assert!(BUCKET_COUNT_MAX.trailing_zeros() + TAG_BITS <= 64);

/// An error of the hash index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    /// `bucket_count` is 0 or not a power of two.
    #[error("bucket_count {bucket_count} is not a power of two")]
    BucketCountNotPowerOfTwo {
        /// The count asked for.
        bucket_count: u64,
    },
    /// `bucket_count` is above [`BUCKET_COUNT_MAX`] (or the machine's address space).
    #[error("bucket_count {bucket_count} is above the largest, {max}")]
    BucketCountTooLarge {
        /// The count asked for.
        bucket_count: u64,
        /// The largest accepted.
        max: u64,
    },
    /// `overflow_pages_max` is above the limit.
    #[error("overflow_pages_max {pages_max} is above the limit, {limit}")]
    OverflowPagesMaxTooLarge {
        /// The count asked for.
        pages_max: u64,
        /// The largest accepted.
        limit: u64,
    },
    /// A chain needed another overflow bucket and all `pages_max` pages are full.
    #[error("every overflow bucket is in use ({pages_max} pages)")]
    OverflowExhausted {
        /// The index's `overflow_pages_max`.
        pages_max: u64,
    },
    /// The main table's memory could not be mapped.
    #[error("the index's main table of {bytes} bytes cannot be mapped: {reason}")]
    TableUnavailable {
        /// Its size.
        bytes: u64,
        /// The system's answer.
        reason: String,
    },
    /// `from_chunks` was given a different number of chunks than the table has.
    #[error("{actual} chunk images given, the table has {expected}")]
    ChunkCountMismatch {
        /// The table's chunk count.
        expected: usize,
        /// The images given.
        actual: usize,
    },
    /// A chunk image is not of the form `chunk_words` makes.
    #[error("chunk {chunk} image, word {word}: {defect:?}")]
    ChunkCorrupt {
        /// The chunk.
        chunk: usize,
        /// The word of the image at fault (its length, for [`ChunkDefect::Length`]).
        word: usize,
        /// What is wrong.
        defect: ChunkDefect,
    },
}

/// What is wrong with a chunk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChunkDefect {
    /// Shorter than the chunk's main buckets, or not a whole number of buckets.
    Length {
        /// The image's words.
        words: usize,
        /// The words of the chunk's main buckets.
        main_words: usize,
    },
    /// An entry has the reserved bit 63 set.
    ReservedBit,
    /// A final entry has address 0.
    AddressMissing,
    /// An overflow pointer is not the next bucket of the image in walk order.
    OverflowPointer {
        /// The pointer found.
        pointer: u64,
        /// The pointer expected.
        expected: u64,
    },
    /// Overflow buckets no pointer reaches.
    UnreachableOverflow {
        /// How many.
        buckets: usize,
    },
}

/// One slot's word: an entry, or 0 for a free slot (invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry(u64);

impl IndexEntry {
    /// A free slot.
    pub const FREE: IndexEntry = IndexEntry(0);

    /// An entry of `address` and `tag`.
    ///
    /// # Panics
    /// If `address > ADDRESS_MAX` or `tag` has more than 14 bits.
    pub const fn new(address: u64, tag: u16, tentative: bool) -> IndexEntry {
        assert!(address <= ADDRESS_MAX, "an entry's address has 48 bits");
        assert!((tag as u32) < 1 << TAG_BITS, "a tag has 14 bits");
        let tentative_bit = if tentative { TENTATIVE_BIT } else { 0 };
        IndexEntry(address | (tag as u64) << ENTRY_TAG_SHIFT | tentative_bit)
    }

    /// The entry a word holds (any word; see [`IndexEntry::reserved_bit`]).
    pub const fn from_word(word: u64) -> IndexEntry {
        IndexEntry(word)
    }

    /// The word.
    pub const fn word(self) -> u64 {
        self.0
    }

    /// The address.
    pub const fn address(self) -> u64 {
        self.0 & ADDRESS_MASK
    }

    /// The tag.
    pub const fn tag(self) -> u16 {
        ((self.0 & ENTRY_TAG_MASK) >> ENTRY_TAG_SHIFT) as u16
    }

    /// True for an entry still being created by a `find_or_create`.
    pub const fn is_tentative(self) -> bool {
        self.0 & TENTATIVE_BIT != 0
    }

    /// True for a free slot.
    pub const fn is_free(self) -> bool {
        self.0 == 0
    }

    /// The reserved bit: never set in an index (only a damaged image has it).
    pub const fn reserved_bit(self) -> bool {
        self.0 & RESERVED_BIT != 0
    }

    /// True for an occupied, final entry of `tag` (I1: final entries are never 0).
    const fn is_final_with_tag(self, tag: u16) -> bool {
        !self.is_free() && !self.is_tentative() && self.tag() == tag
    }
}

/// A bucket: 7 entry slots and an overflow pointer in one cache line (invariant 2): main buckets
/// lie in one page-aligned [`AtomicWords`] table, so each starts a 64-byte line.
pub(crate) type Bucket = [AtomicU64; BUCKET_WORDS];

/// What a bucket's words mean.
pub(crate) trait BucketWords {
    /// The entry slots.
    fn slots(&self) -> &[AtomicU64];
    /// True when every slot is free.
    fn all_free(&self) -> bool;
    /// Stores 0 in every word (an overflow bucket being reused; nobody else can reach it).
    fn zero(&self);
}

impl BucketWords for Bucket {
    fn slots(&self) -> &[AtomicU64] {
        &self[..ENTRIES_PER_BUCKET]
    }

    fn all_free(&self) -> bool {
        self.slots().iter().all(|s| s.load(Relaxed) == 0)
    }

    fn zero(&self) {
        for w in self {
            w.store(0, Relaxed);
        }
    }
}

/// A reference to an index slot and the entry last read from it.
#[derive(Debug)]
pub struct EntryRef<'a> {
    slot: &'a AtomicU64,
    dirty: Dirty<'a>,
    entry: IndexEntry,
}

/// Where a change to a chain is noted (invariant 6): the main bucket's bit, then its chunk's
/// flag.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dirty<'a> {
    flag: &'a AtomicBool,
    word: &'a AtomicU64,
    bit: u64,
}

impl Dirty<'_> {
    /// Notes a change (after it is made): the bucket's bit first, so a checkpointer that sees
    /// the chunk's flag sees the bit too.
    pub(crate) fn set(&self) {
        self.word.fetch_or(self.bit, Release);
        self.flag.store(true, Release);
    }
}

impl EntryRef<'_> {
    /// The entry as last read.
    pub fn entry(&self) -> IndexEntry {
        self.entry
    }

    /// The address of the entry as last read.
    pub fn address(&self) -> u64 {
        self.entry.address()
    }

    /// Reads the slot again; returns and keeps the entry read. The slot may have been deleted
    /// (free) or, after that, reused by another tag: callers compare the tag.
    pub fn reload(&mut self) -> IndexEntry {
        self.entry = IndexEntry(self.slot.load(Acquire));
        self.entry
    }

    /// Replaces the entry `expected` by one of the same tag at `new_address` (final), if the
    /// slot still holds `expected`; keeps the entry now in the slot either way. On failure
    /// returns the entry found.
    ///
    /// # Panics
    /// If `new_address` is not within `ADDRESS_UNSET..=ADDRESS_MAX` (I1), or `expected` is free
    /// or tentative (I4).
    pub fn compare_exchange(
        &mut self,
        expected: IndexEntry,
        new_address: u64,
    ) -> Result<(), IndexEntry> {
        assert!(
            (ADDRESS_UNSET..=ADDRESS_MAX).contains(&new_address),
            "address {new_address} is not within 1..=ADDRESS_MAX"
        );
        assert!(
            !expected.is_free() && !expected.is_tentative(),
            "only a final entry is replaced"
        );
        let new = IndexEntry::new(new_address, expected.tag(), false);
        match self
            .slot
            .compare_exchange(expected.0, new.0, AcqRel, Acquire)
        {
            Ok(_) => {
                // I6.
                self.dirty.set();
                self.entry = new;
                Ok(())
            }
            Err(actual) => {
                self.entry = IndexEntry(actual);
                Err(self.entry)
            }
        }
    }

    /// True when both name the same slot.
    pub fn same_slot(&self, other: &EntryRef<'_>) -> bool {
        std::ptr::eq(self.slot, other.slot)
    }
}

/// Settings of a [`HashIndex`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexOptions {
    /// Main buckets: a power of two, 1 to 2^40. Default 2^16 (4 MiB).
    pub bucket_count: u64,
    /// The most overflow pages (512 buckets, 32 KiB each) allocated on demand, at most 2^20.
    /// Default 1 024 (32 MiB).
    pub overflow_pages_max: u64,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexOptions {
            bucket_count: 1 << 16,
            overflow_pages_max: 1024,
        }
    }
}

impl IndexOptions {
    /// Checks `bucket_count` and returns it as a `usize`; `overflow_pages_max` is checked by
    /// the allocator.
    fn bucket_count_checked(&self) -> Result<usize, IndexError> {
        let bucket_count = self.bucket_count;
        if !bucket_count.is_power_of_two() {
            return Err(IndexError::BucketCountNotPowerOfTwo { bucket_count });
        }
        let too_large = IndexError::BucketCountTooLarge {
            bucket_count,
            max: BUCKET_COUNT_MAX,
        };
        if bucket_count > BUCKET_COUNT_MAX {
            return Err(too_large);
        }
        usize::try_from(bucket_count).map_err(|_| too_large)
    }
}

/// Counts of the overflow allocator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverflowStats {
    /// Overflow buckets in use (linked, or about to be).
    pub allocated: u64,
    /// Freed buckets waiting for reuse.
    pub free_count: u64,
    /// Pages allocated.
    pub pages: u64,
    /// The most pages.
    pub pages_max: u64,
}

/// A chunk of main buckets with its dirty flag (invariant 6).
struct Chunk {
    dirty: AtomicBool,
}

/// The hash index.
pub struct HashIndex {
    /// The main buckets, `bucket_count * 8` words.
    table: AtomicWords,
    /// Buckets per chunk.
    chunk_buckets: usize,
    chunks: Box<[Chunk]>,
    /// One bit per main bucket: its chain changed since a checkpoint last took the bit (I6).
    bucket_bits: Box<[AtomicU64]>,
    bucket_mask: u64,
    overflow: OverflowAllocator,
}

impl std::fmt::Debug for HashIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashIndex")
            .field("bucket_count", &self.bucket_count())
            .field("chunk_count", &self.chunk_count())
            .field("overflow", &self.overflow)
            .finish()
    }
}

/// What a scan for `find_or_create` met.
enum Scan<'a> {
    /// A final entry of the tag.
    Found(&'a AtomicU64, IndexEntry),
    /// No entry of the tag; the first free slot.
    Free(&'a AtomicU64),
    /// No entry of the tag and no free slot; the chain's last bucket.
    Full(&'a Bucket),
}

impl HashIndex {
    /// An empty index. Allocates the whole main table (`bucket_count * 64` bytes).
    pub fn new(options: &IndexOptions) -> Result<HashIndex, IndexError> {
        let bucket_count = options.bucket_count_checked()?;
        let overflow = OverflowAllocator::new(options.overflow_pages_max)?;
        let chunk_buckets = bucket_count.min(CHUNK_BUCKETS);
        let chunks = (0..bucket_count.div_ceil(CHUNK_BUCKETS))
            .map(|_| Chunk {
                dirty: AtomicBool::new(false),
            })
            .collect();
        let table = AtomicWords::zeroed(bucket_count * BUCKET_WORDS).map_err(|e| {
            IndexError::TableUnavailable {
                bytes: bucket_count as u64 * BUCKET_BYTES as u64,
                reason: e.to_string(),
            }
        })?;
        let bucket_bits = (0..bucket_count.div_ceil(64))
            .map(|_| AtomicU64::new(0))
            .collect();
        Ok(HashIndex {
            table,
            chunk_buckets,
            chunks,
            bucket_bits,
            bucket_mask: options.bucket_count - 1,
            overflow,
        })
    }

    /// Main buckets.
    pub fn bucket_count(&self) -> u64 {
        self.bucket_mask + 1
    }

    /// `bucket_count - 1`, the mask [`KeyHash::bucket`] takes.
    pub fn bucket_mask(&self) -> u64 {
        self.bucket_mask
    }

    /// Every main bucket.
    fn buckets(&self) -> &[Bucket] {
        self.table.as_chunks::<BUCKET_WORDS>().0
    }

    /// The main buckets of chunk `c`. Panics if `c >= chunk_count()`.
    fn chunk_buckets(&self, c: usize) -> &[Bucket] {
        let first = c * self.chunk_buckets;
        &self.buckets()[first..first + self.chunk_buckets]
    }

    /// The main bucket of `hash` and where its changes are noted.
    fn main_bucket(&self, hash: KeyHash) -> (&Bucket, Dirty<'_>) {
        let bucket = hash.bucket(self.bucket_mask);
        (&self.buckets()[bucket], self.dirty_of(bucket))
    }

    /// Where changes to main bucket `bucket`'s chain are noted.
    fn dirty_of(&self, bucket: usize) -> Dirty<'_> {
        Dirty {
            flag: &self.chunks[bucket / CHUNK_BUCKETS].dirty,
            word: &self.bucket_bits[bucket / 64],
            bit: 1 << (bucket % 64),
        }
    }

    /// The bucket after `bucket` in its chain, reading the pointer once with `order`.
    fn next_in_chain(&self, bucket: &Bucket, order: Ordering) -> Option<&Bucket> {
        let pointer = bucket[OVERFLOW_WORD].load(order);
        if pointer == 0 {
            return None;
        }
        let next = self.overflow.bucket(pointer - 1);
        debug_assert!(next.is_some(), "I2: pointer {pointer} names no bucket");
        next
    }

    /// The buckets of the chain starting at `main`.
    fn chain<'a>(&'a self, main: &'a Bucket, order: Ordering) -> impl Iterator<Item = &'a Bucket> {
        std::iter::successors(Some(main), move |b| self.next_in_chain(b, order))
    }

    /// The final entry of `hash`'s tag in its chain, if any. Tentative entries are not seen (I4).
    #[inline]
    pub fn find(&self, hash: KeyHash) -> Option<EntryRef<'_>> {
        let (main, dirty) = self.main_bucket(hash);
        let tag = hash.tag();
        // The hot path of every read. Each bucket's seven slots are loaded and matched without
        // branching on each one: a branch per slot, taken at a random slot, is mispredicted
        // after the bucket's cache miss and throws away the work the CPU overlapped with it.
        let mut bucket = main;
        loop {
            let slots = bucket.slots();
            let words: [u64; ENTRIES_PER_BUCKET] = std::array::from_fn(|i| slots[i].load(Acquire));
            let matches = (0..ENTRIES_PER_BUCKET).fold(0u32, |m, i| {
                m | u32::from(IndexEntry(words[i]).is_final_with_tag(tag)) << i
            });
            if matches != 0 {
                let i = matches.trailing_zeros() as usize;
                let entry = IndexEntry(words[i]);
                return Some(EntryRef {
                    slot: &slots[i],
                    dirty,
                    entry,
                });
            }
            bucket = self.next_in_chain(bucket, Acquire)?;
        }
    }

    /// Asks the cache for `hash`'s main bucket (a batch's first stage: [`vellum::words::prefetch`]).
    #[inline]
    pub fn prefetch(&self, hash: KeyHash) {
        vellum::words::prefetch(&self.buckets()[hash.bucket(self.bucket_mask)][0]);
    }

    /// The final entry of `hash`'s tag, created (address [`ADDRESS_UNSET`]) if there is none,
    /// by FASTER's FindOrCreateTag protocol (I3). Threads creating the same tag at once get the
    /// same entry. Lock-free but for allocating an overflow bucket when the chain is full.
    ///
    /// `guard` is the caller's epoch protection: under it, overflow buckets may one day be
    /// reclaimed by epoch without changing callers.
    pub fn find_or_create(
        &self,
        hash: KeyHash,
        guard: &EpochGuard<'_>,
    ) -> Result<EntryRef<'_>, IndexError> {
        debug_assert_ne!(guard.entered_at(), 0);
        let (main, dirty) = self.main_bucket(hash);
        let tag = hash.tag();
        // Spin at first, then yield, so that the thread this one lost to (often preempted on a
        // busy machine) can finish.
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            if let Some(entry) = self.try_create(main, dirty, tag)? {
                return Ok(entry);
            }
            backoff.snooze();
        }
    }

    /// One attempt of `find_or_create`: `None` when it must start again.
    fn try_create<'a>(
        &'a self,
        main: &'a Bucket,
        dirty: Dirty<'a>,
        tag: u16,
    ) -> Result<Option<EntryRef<'a>>, IndexError> {
        let tentative = IndexEntry::new(ADDRESS_UNSET, tag, true);
        let slot = match self.scan_for_create(main, tag) {
            Scan::Found(slot, entry) => return Ok(Some(EntryRef { slot, dirty, entry })),
            Scan::Free(slot) => slot
                .compare_exchange(0, tentative.0, SeqCst, SeqCst)
                .is_ok()
                .then_some(slot),
            Scan::Full(last) => self.append_overflow(last, tentative)?,
        };
        let Some(slot) = slot else {
            return Ok(None);
        };
        dirty.set(); // I6.
        if self.other_entry_with_tag(main, tag, slot) {
            // I3: back off; I4: the slot is ours to clear.
            slot.store(0, SeqCst);
            dirty.set();
            return Ok(None);
        }
        let entry = IndexEntry::new(ADDRESS_UNSET, tag, false);
        slot.store(entry.0, SeqCst); // I4: ours to make final.
        dirty.set();
        Ok(Some(EntryRef { slot, dirty, entry }))
    }

    /// Walks the chain for a final entry of `tag`, noting the first free slot.
    fn scan_for_create<'a>(&'a self, main: &'a Bucket, tag: u16) -> Scan<'a> {
        let mut free = None;
        let mut last = main;
        for bucket in self.chain(main, SeqCst) {
            last = bucket;
            for slot in bucket.slots() {
                let entry = IndexEntry(slot.load(SeqCst));
                if entry.is_final_with_tag(tag) {
                    return Scan::Found(slot, entry);
                }
                if entry.is_free() && free.is_none() {
                    free = Some(slot);
                }
            }
        }
        free.map_or(Scan::Full(last), Scan::Free)
    }

    /// Links a new overflow bucket holding `tentative` in its first slot behind `last`; `None`
    /// (the bucket freed again) when another thread linked one first.
    fn append_overflow<'a>(
        &'a self,
        last: &'a Bucket,
        tentative: IndexEntry,
    ) -> Result<Option<&'a AtomicU64>, IndexError> {
        let (index, bucket) = self.overflow.alloc()?;
        // Published by the SeqCst CAS below.
        bucket[0].store(tentative.0, Relaxed);
        // I5: chains grow only at their end, from pointer 0.
        match last[OVERFLOW_WORD].compare_exchange(0, index + 1, SeqCst, SeqCst) {
            Ok(_) => Ok(Some(&bucket[0])),
            Err(_) => {
                // Never published: nobody else can reach it.
                self.overflow.free(index);
                Ok(None)
            }
        }
    }

    /// True when a slot of the chain other than `mine` holds an entry of `tag`, tentative or
    /// final (I3).
    fn other_entry_with_tag(&self, main: &Bucket, tag: u16, mine: &AtomicU64) -> bool {
        self.chain(main, SeqCst)
            .flat_map(Bucket::slots)
            .filter(|slot| !std::ptr::eq(*slot, mine))
            .any(|slot| {
                let entry = IndexEntry(slot.load(SeqCst));
                !entry.is_free() && entry.tag() == tag
            })
    }

    /// Frees the slot of `entry` if it still holds `expected` (for garbage collection of entries
    /// below the log's begin address); on failure returns the entry found. `entry` must come
    /// from this index.
    ///
    /// # Panics
    /// If `expected` is free or tentative (I4).
    pub fn delete_if(&self, entry: &EntryRef<'_>, expected: IndexEntry) -> Result<(), IndexEntry> {
        assert!(
            !expected.is_free() && !expected.is_tentative(),
            "only a final entry is deleted"
        );
        match entry.slot.compare_exchange(expected.0, 0, AcqRel, Acquire) {
            Ok(_) => {
                entry.dirty.set(); // I6.
                Ok(())
            }
            Err(actual) => Err(IndexEntry(actual)),
        }
    }

    /// Calls `f` with the main bucket and a reference of every final entry, chunk by chunk.
    pub fn for_each_entry<'a>(&'a self, mut f: impl FnMut(usize, EntryRef<'a>)) {
        for c in 0..self.chunks.len() {
            for (b, main) in self.chunk_buckets(c).iter().enumerate() {
                for slot in self.chain(main, Acquire).flat_map(Bucket::slots) {
                    let entry = IndexEntry(slot.load(Acquire));
                    if !entry.is_free() && !entry.is_tentative() {
                        let dirty = self.dirty_of(c * CHUNK_BUCKETS + b);
                        f(c * CHUNK_BUCKETS + b, EntryRef { slot, dirty, entry });
                    }
                }
            }
        }
    }

    /// Occupied slots: `(final, tentative)`. Walks the whole index.
    fn slot_counts(&self) -> (u64, u64) {
        let (mut finals, mut tentatives) = (0, 0);
        for main in self.buckets() {
            {
                for slot in self.chain(main, Acquire).flat_map(Bucket::slots) {
                    let entry = IndexEntry(slot.load(Acquire));
                    finals += u64::from(!entry.is_free() && !entry.is_tentative());
                    tentatives += u64::from(entry.is_tentative());
                }
            }
        }
        (finals, tentatives)
    }

    /// Final entries. Walks the whole index.
    pub fn entry_count(&self) -> u64 {
        self.slot_counts().0
    }

    /// Tentative entries (only while `find_or_create` calls run). Walks the whole index.
    pub fn tentative_count(&self) -> u64 {
        self.slot_counts().1
    }

    /// Unlinks every empty overflow bucket and frees it for reuse at once; returns how many.
    /// Exclusive access (I5) means no thread is in the index and no [`EntryRef`] is alive.
    pub fn compact_chains(&mut self) -> u64 {
        let mut freed = 0;
        for c in 0..self.chunks.len() {
            let mut chunk_freed = 0;
            for (b, main) in self.chunk_buckets(c).iter().enumerate() {
                let freed = self.unlink_empty(main);
                if freed > 0 {
                    self.dirty_of(c * CHUNK_BUCKETS + b).set(); // I6.
                }
                chunk_freed += freed;
            }
            freed += chunk_freed;
        }
        freed
    }

    /// Unlinks and frees the empty overflow buckets of `main`'s chain (exclusive access).
    fn unlink_empty(&self, main: &Bucket) -> u64 {
        let mut freed = 0;
        let mut prev = main;
        while let Some(next) = self.next_in_chain(prev, Relaxed) {
            if next.all_free() {
                let index = prev[OVERFLOW_WORD].load(Relaxed) - 1;
                let after = next[OVERFLOW_WORD].load(Relaxed);
                prev[OVERFLOW_WORD].store(after, Relaxed);
                self.overflow.free(index);
                freed += 1;
            } else {
                prev = next;
            }
        }
        freed
    }

    /// Chunks of the main table (each [`CHUNK_BUCKETS`] buckets, or the whole smaller table).
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }

    /// The chunk main bucket `bucket` is in.
    pub fn chunk_of(&self, bucket: usize) -> usize {
        bucket / self.chunk_buckets
    }

    /// True when a bucket of the chunk (or of a chain it heads) changed since the flag was last
    /// cleared (I6). Panics if `chunk >= chunk_count()`.
    pub fn chunk_is_dirty(&self, chunk: usize) -> bool {
        self.chunks[chunk].dirty.load(Acquire)
    }

    /// Notes main bucket `bucket` (and its chunk) changed again: a checkpoint that took it was
    /// not written. Panics if `bucket >= bucket_count()`.
    pub fn mark_bucket_dirty(&self, bucket: usize) {
        self.dirty_of(bucket).set();
    }

    /// Clears chunk `chunk`'s flag and the bits of its main buckets; returns the buckets (global
    /// indexes) whose chains changed since a checkpoint last took them (I6). Copy them after this
    /// call. Panics if `chunk >= chunk_count()`.
    pub fn take_dirty_buckets(&self, chunk: usize) -> Vec<usize> {
        if !self.chunks[chunk].dirty.swap(false, AcqRel) {
            return Vec::new();
        }
        self.take_bits(chunk)
    }

    /// Clears the bits of chunk `chunk`'s main buckets; returns the buckets whose bit was set.
    fn take_bits(&self, chunk: usize) -> Vec<usize> {
        let first = chunk * self.chunk_buckets;
        let mut out = Vec::new();
        let words = first / 64..(first + self.chunk_buckets).div_ceil(64);
        for w in words {
            let mut bits = self.bucket_bits[w].swap(0, AcqRel);
            // A table smaller than 64 buckets shares its word with no other chunk.
            while bits != 0 {
                let b = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                out.push(b);
            }
        }
        out
    }

    /// Clears the chunk's dirty flag (and its buckets' bits, as [`HashIndex::take_dirty_buckets`]
    /// does); returns whether it was set. Copy the chunk after this call (I6). Panics if
    /// `chunk >= chunk_count()`.
    pub fn take_dirty(&self, chunk: usize) -> bool {
        let was = self.chunks[chunk].dirty.swap(false, AcqRel);
        if was {
            self.take_bits(chunk);
        }
        was
    }

    /// Bytes of the main table and the overflow pages allocated:
    /// `bucket_count * 64 + pages * 32 KiB`.
    pub fn memory_bytes(&self) -> u64 {
        self.bucket_count() * BUCKET_BYTES as u64 + self.overflow.page_bytes_total()
    }

    /// The overflow allocator's counts.
    pub fn overflow_stats(&self) -> OverflowStats {
        OverflowStats {
            allocated: self.overflow.allocated(),
            free_count: self.overflow.free_count(),
            pages: self.overflow.pages(),
            pages_max: self.overflow.pages_max(),
        }
    }
}

#[path = "index_image.rs"]
mod image;

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
