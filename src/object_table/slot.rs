//! One object-table entry: the current version inline in atomics, read with a seqlock.
//!
//! States and transitions (the only ones the code performs):
//! ```text
//!   FREE --reserve--> RESERVED --publish--> LIVE --retire--> RETIRED --reclaim--> FREE
//!                        |                  |  ^                                   ^
//!                        +------abort-------|--|-----------------------------------+
//!                                           +--+ update (new current version; the old one
//!                                                becomes the inline previous version)
//! ```
//! An abort or reclaim of an entry carrying the last tag leaves it FREE and *exhausted*, a state
//! with no transition out (invariant 5).
//!
//! Invariants:
//! 1. The tag changes exactly once per reuse of the handle: on every transition *to* FREE
//!    (abort or reclaim), to [`next_tag`] of it. An id carries the tag it was issued with, so
//!    after its handle is freed the id is stale and every operation on it fails.
//! 2. One writer at a time: a writer owns the entry while the sequence number in `meta` is odd
//!    (taken by compare-and-swap), so the table needs no lock per entry.
//! 3. Readers never block and never see a torn entry: they read `meta`, the fields, an acquire
//!    fence, and `meta` again, retrying if it changed or was odd.
//! 4. Only LIVE and RETIRED entries have a current version; a RETIRED entry's version stays
//!    visible to snapshots older than its retire epoch.
//! 5. A transition to FREE from [`TAG_MAX`] has no next tag: the entry becomes FREE and
//!    *exhausted*, keeping `TAG_MAX`, and stays so. `reserve` refuses it, every operation on any
//!    id of its handle fails (`get_at` too, although the last id's tag still matches), and only
//!    recovery may bring it back, with a committed node carrying `TAG_MAX` (a checkpoint records
//!    a handle whose tag-`TAG_MAX` id may have been handed out as exhausted, and the log may then
//!    hold that node).
//! 6. A LIVE entry keeps its newest older version *inline* (the `PREV` bit in `meta`, the version
//!    in `prev_location`, `prev_len_crc` and `epoch_word`, its kind the entry's), and every older
//!    one in the heap chain: the inline version is newer than the whole chain. An update moves the
//!    current version inline, pushing the inline one (if any) onto the chain first, so an update
//!    allocates only when the previous update's superseded version is not trimmed yet; an update
//!    that changes the kind pushes both. Retiring pushes the inline version onto the chain (the
//!    retire epoch takes its word), so no RETIRED entry has one. Every transition that is not an
//!    update or a trim builds its fields without `PREV`. The inline version was superseded at the
//!    current version's birth, or, with the `MOVED` bit, by a move (which keeps the birth, so the
//!    inline version's birth is the current one's) at the epoch its birth's word then holds: the
//!    epoch `trim` frees it by (`older.rs`, invariant 4).

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crossbeam_epoch::Guard;

use super::node_id::{TAG_MAX, next_tag};
use super::older::{OlderChain, find_visible, versions_from};
use super::version::Version;
use crate::alloc::Location;

/// Life-cycle state of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EntryState {
    /// Unused; the handle may be handed out, unless the entry is exhausted
    /// ([`EntryView::exhausted`]).
    Free,
    /// Handed to a writer that has not committed the node yet.
    Reserved,
    /// Has a committed current version.
    Live,
    /// Retired by a commit; kept while older snapshots may read it.
    Retired,
}

impl EntryState {
    fn from_bits(bits: u64) -> EntryState {
        match bits & 3 {
            0 => EntryState::Free,
            1 => EntryState::Reserved,
            2 => EntryState::Live,
            _ => EntryState::Retired,
        }
    }

    fn bits(self) -> u64 {
        match self {
            EntryState::Free => 0,
            EntryState::Reserved => 1,
            EntryState::Live => 2,
            EntryState::Retired => 3,
        }
    }
}

// meta word: tag in bits 0..16, kind in 16..24, state in 24..26, the exhausted mark in bit 26
// (set only with state FREE, invariant 5), the inline-previous mark in bit 27 (set only with
// state LIVE, invariant 6), sequence in 32..64.
const KIND_SHIFT: u32 = 16;
const STATE_SHIFT: u32 = 24;
const EXHAUSTED: u64 = 1 << 26;
const PREV: u64 = 1 << 27;
const MOVED: u64 = 1 << 28;
const SEQ_SHIFT: u32 = 32;
const SEQ_ONE: u64 = 1 << SEQ_SHIFT;
const FIELDS_MASK: u64 = SEQ_ONE - 1;
const _: () = assert!(EXHAUSTED > 3 << STATE_SHIFT && PREV > EXHAUSTED && MOVED > PREV);
const _: () = assert!(MOVED < SEQ_ONE);

fn fields(tag: u16, kind: u8, state: EntryState) -> u64 {
    u64::from(tag) | (u64::from(kind) << KIND_SHIFT) | (state.bits() << STATE_SHIFT)
}

/// The fields of an entry freed while carrying `tag`: FREE with the next tag, or FREE and
/// exhausted once `tag` is the last (invariant 5).
fn freed(tag: u16) -> (u64, Reuse) {
    match next_tag(tag) {
        Some(next) => (fields(next, 0, EntryState::Free), Reuse::Reusable),
        None => (
            fields(TAG_MAX, 0, EntryState::Free) | EXHAUSTED,
            Reuse::Exhausted,
        ),
    }
}

/// A version's length and CRC32C as one word: the length in the high half.
fn len_crc(v: &Version) -> u64 {
    (u64::from(v.len) << 32) | u64::from(v.crc32c)
}

/// Whether a freed handle may be handed out again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reuse {
    /// It has tags left: it goes back on its shard's free list.
    Reusable,
    /// It issued its last tag and is retired for good (invariant 5).
    Exhausted,
}

/// A consistent copy of an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EntryView {
    /// Life-cycle state.
    pub state: EntryState,
    /// Current tag (0 for an entry never used).
    pub tag: u16,
    /// The entry is FREE and its handle issued every tag: it is never handed out again, and
    /// every id of it is stale (`tag` is then [`TAG_MAX`]).
    pub exhausted: bool,
    /// The current version, for LIVE and RETIRED entries.
    pub current: Option<Version>,
    /// Retire epoch, for RETIRED entries.
    pub retire_epoch: Option<u64>,
}

/// The words of a LIVE entry's current version, as the lookup fast path reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LiveWords {
    /// The packed [`Location`].
    pub(crate) location: u64,
    /// Length in the high half, CRC32C in the low half.
    pub(crate) len_crc: u64,
    /// Birth epoch.
    pub(crate) birth: u64,
    /// The meta word (tag, kind, state, sequence).
    pub(crate) meta: u64,
}

impl LiveWords {
    /// Bytes of the version.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        (self.len_crc >> 32) as usize
    }

    /// CRC32C of the version's bytes.
    #[inline]
    pub(crate) fn crc32c(&self) -> u32 {
        self.len_crc as u32
    }

    /// The caller's node kind.
    #[inline]
    pub(crate) fn kind(&self) -> u8 {
        (self.meta >> KIND_SHIFT) as u8
    }

    /// The version these words describe; `None` for an invalid location.
    #[inline]
    pub(crate) fn version(&self) -> Option<Version> {
        Location::unpack(self.location).map(|location| Version {
            location,
            len: (self.len_crc >> 32) as u32,
            crc32c: self.len_crc as u32,
            kind: self.kind(),
            birth: self.birth,
        })
    }
}

/// One entry of the object table, one cache line, so a lookup touches a single line.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(super) struct Slot {
    meta: AtomicU64,
    location: AtomicU64,
    len_crc: AtomicU64,
    birth: AtomicU64,
    /// RETIRED: the retire epoch. LIVE with `PREV`: the inline previous version's birth, or
    /// with `MOVED` too the epoch of the move that superseded it (invariant 6).
    epoch_word: AtomicU64,
    /// The inline previous version's packed location and its length and CRC32C (as `location`
    /// and `len_crc`), while `PREV` is set.
    prev_location: AtomicU64,
    prev_len_crc: AtomicU64,
    older: OlderChain,
}

const _: () = assert!(std::mem::size_of::<Slot>() == 64);

/// Raw fields as read inside one seqlock section.
struct Raw<'g> {
    meta: u64,
    location: u64,
    len_crc: u64,
    birth: u64,
    epoch_word: u64,
    prev_location: u64,
    prev_len_crc: u64,
    older: crossbeam_epoch::Shared<'g, super::older::OldVersion>,
}

impl Raw<'_> {
    /// The inline previous version and the epoch that superseded it, if `PREV` is set
    /// (invariant 6).
    fn inline_prev(&self) -> Option<(Version, u64)> {
        if self.meta & PREV == 0 {
            return None;
        }
        let (birth, superseded) = match self.meta & MOVED {
            0 => (self.epoch_word, self.birth),
            _ => (self.birth, self.epoch_word),
        };
        let version = Location::unpack(self.prev_location).map(|location| Version {
            location,
            len: (self.prev_len_crc >> 32) as u32,
            crc32c: self.prev_len_crc as u32,
            kind: (self.meta >> KIND_SHIFT) as u8,
            birth,
        })?;
        Some((version, superseded))
    }
}

impl Slot {
    /// Asks the cache for the entry's words (one line: the entry is 64 bytes aligned to 64): a
    /// hint that changes nothing, so that a batch of lookups overlaps its misses.
    #[inline]
    pub(super) fn prefetch(&self) {
        crate::words::prefetch(&self.meta);
    }

    fn read<'g>(&self, guard: &'g Guard) -> Raw<'g> {
        loop {
            let m1 = self.meta.load(Ordering::Acquire);
            if (m1 >> SEQ_SHIFT) & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let raw = Raw {
                meta: m1,
                location: self.location.load(Ordering::Relaxed),
                len_crc: self.len_crc.load(Ordering::Relaxed),
                birth: self.birth.load(Ordering::Relaxed),
                epoch_word: self.epoch_word.load(Ordering::Relaxed),
                prev_location: self.prev_location.load(Ordering::Relaxed),
                prev_len_crc: self.prev_len_crc.load(Ordering::Relaxed),
                older: self.older.head_relaxed(guard),
            };
            fence(Ordering::Acquire);
            if self.meta.load(Ordering::Relaxed) == m1 {
                return raw;
            }
        }
    }

    fn decode(raw: &Raw<'_>) -> EntryView {
        let state = EntryState::from_bits(raw.meta >> STATE_SHIFT);
        let has_version = matches!(state, EntryState::Live | EntryState::Retired);
        let current = has_version
            .then(|| {
                Location::unpack(raw.location).map(|location| Version {
                    location,
                    len: (raw.len_crc >> 32) as u32,
                    crc32c: raw.len_crc as u32,
                    kind: (raw.meta >> KIND_SHIFT) as u8,
                    birth: raw.birth,
                })
            })
            .flatten();
        EntryView {
            state,
            tag: raw.meta as u16,
            exhausted: state == EntryState::Free && raw.meta & EXHAUSTED != 0,
            current,
            retire_epoch: (state == EntryState::Retired).then_some(raw.epoch_word),
        }
    }

    /// The current version's words if the entry is LIVE with `tag` and that version was born at
    /// or before `epoch`: the lookup fast path, which reads only the words it returns.
    #[inline]
    pub(super) fn live_words(&self, tag: u16, epoch: u64) -> Option<LiveWords> {
        let want = fields(tag, 0, EntryState::Live);
        const TAG_STATE: u64 = 0xffff | (3 << STATE_SHIFT);
        loop {
            let m1 = self.meta.load(Ordering::Acquire);
            if (m1 >> SEQ_SHIFT) & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            if m1 & TAG_STATE != want {
                return None;
            }
            let words = LiveWords {
                location: self.location.load(Ordering::Relaxed),
                len_crc: self.len_crc.load(Ordering::Relaxed),
                birth: self.birth.load(Ordering::Relaxed),
                meta: m1,
            };
            fence(Ordering::Acquire);
            if self.meta.load(Ordering::Relaxed) == m1 {
                return (words.birth <= epoch).then_some(words);
            }
        }
    }

    /// The current version if the entry is LIVE with `tag`.
    #[inline]
    pub(super) fn live_version(&self, tag: u16) -> Option<Version> {
        self.live_words(tag, u64::MAX)?.version()
    }

    /// A consistent view of the entry.
    pub(super) fn view(&self, guard: &Guard) -> EntryView {
        Self::decode(&self.read(guard))
    }

    /// The version a snapshot at `epoch` sees through an id carrying `tag`, if any; the entry's
    /// view if the id is stale (another tag, or an exhausted entry: invariant 5).
    pub(super) fn version_at(
        &self,
        tag: u16,
        epoch: u64,
        guard: &Guard,
    ) -> Result<Option<Version>, EntryView> {
        let raw = self.read(guard);
        let view = Self::decode(&raw);
        if view.tag != tag || view.exhausted {
            return Err(view);
        }
        let Some(current) = view.current else {
            return Ok(None);
        };
        if view.retire_epoch.is_some_and(|r| r <= epoch) {
            return Ok(None);
        }
        if current.birth <= epoch {
            return Ok(Some(current));
        }
        if let Some((prev, _)) = raw.inline_prev()
            && prev.birth <= epoch
        {
            return Ok(Some(prev));
        }
        Ok(find_visible(raw.older, epoch, guard))
    }

    /// Takes the write bit; returns the fields (tag, kind, state) at that moment.
    fn lock(&self) -> u64 {
        loop {
            let m = self.meta.load(Ordering::Relaxed);
            if (m >> SEQ_SHIFT) & 1 == 0
                && self
                    .meta
                    .compare_exchange_weak(m, m + SEQ_ONE, Ordering::Acquire, Ordering::Relaxed)
                    .is_ok()
            {
                fence(Ordering::Release);
                return m & FIELDS_MASK;
            }
            std::hint::spin_loop();
        }
    }

    /// Releases the write bit, publishing new fields.
    fn unlock(&self, new_fields: u64) {
        let m = self.meta.load(Ordering::Relaxed);
        let seq = (m >> SEQ_SHIFT).wrapping_add(1) << SEQ_SHIFT;
        self.meta.store(seq | new_fields, Ordering::Release);
    }

    fn store_version(&self, v: &Version) {
        self.location.store(v.location.pack(), Ordering::Relaxed);
        self.len_crc.store(len_crc(v), Ordering::Relaxed);
        self.birth.store(v.birth, Ordering::Relaxed);
    }

    /// Makes `v` the inline previous version, `epoch_word` its birth or the epoch of the move
    /// that superseded it (writer only; the caller sets `PREV`, and `MOVED` for a move).
    fn store_inline_prev(&self, v: &Version, epoch_word: u64) {
        self.prev_location.store(v.location.pack(), Ordering::Relaxed);
        self.prev_len_crc.store(len_crc(v), Ordering::Relaxed);
        self.epoch_word.store(epoch_word, Ordering::Relaxed);
    }

    /// Runs `f` as the entry's writer if its tag is `tag` and its state is `from` (never FREE:
    /// an exhausted entry is FREE, so no transition applies to it).
    /// `f` returns the new fields (see [`fields`]) and its result.
    fn transition<R>(
        &self,
        tag: u16,
        from: &[EntryState],
        f: impl FnOnce(u8) -> (u64, R),
    ) -> Result<R, EntryView> {
        debug_assert!(!from.contains(&EntryState::Free));
        let old = self.lock();
        let state = EntryState::from_bits(old >> STATE_SHIFT);
        let cur_tag = old as u16;
        if cur_tag != tag || !from.contains(&state) {
            self.unlock(old);
            return Err(self.view(&crossbeam_epoch::pin()));
        }
        let (new_fields, r) = f((old >> KIND_SHIFT) as u8);
        self.unlock(new_fields);
        Ok(r)
    }

    /// FREE → RESERVED. Returns the tag the new id carries; `None` if the entry is not FREE or is
    /// exhausted (invariant 5).
    pub(super) fn reserve(&self) -> Option<u16> {
        let old = self.lock();
        if EntryState::from_bits(old >> STATE_SHIFT) != EntryState::Free || old & EXHAUSTED != 0 {
            self.unlock(old);
            return None;
        }
        // A never-used entry has tag 0, which no id may carry.
        let tag = match old as u16 {
            0 => 1,
            t => t,
        };
        self.unlock(fields(tag, 0, EntryState::Reserved));
        Some(tag)
    }

    /// RESERVED → LIVE with its first version.
    pub(super) fn publish(&self, tag: u16, v: Version) -> Result<(), EntryView> {
        self.transition(tag, &[EntryState::Reserved], |_| {
            self.store_version(&v);
            (fields(tag, v.kind, EntryState::Live), ())
        })
    }

    /// RESERVED → FREE (the reservation is given back; the tag moves on, or the entry is
    /// exhausted: invariant 5).
    pub(super) fn abort(&self, tag: u16) -> Result<Reuse, EntryView> {
        self.transition(tag, &[EntryState::Reserved], |_| freed(tag))
    }

    /// LIVE → LIVE with a new current version, by the commit at epoch `superseded` (its birth,
    /// or a move's epoch: a move keeps the birth); the previous one becomes the inline previous
    /// version, the one inline before it joining the older chain (invariant 6).
    pub(super) fn update(
        &self,
        tag: u16,
        v: Version,
        superseded: u64,
        guard: &Guard,
    ) -> Result<Option<Version>, EntryView> {
        self.transition(tag, &[EntryState::Live], |_| {
            let raw = self.read_locked(guard);
            if let Some((inline, at)) = raw.inline_prev() {
                self.older.push(inline, at, guard);
            }
            // A LIVE entry always holds a version this table wrote, so `current` is `Some`.
            let prev = Self::decode(&raw).current;
            let mut new_fields = fields(tag, v.kind, EntryState::Live);
            match prev {
                Some(p) if p.kind == v.kind && superseded == v.birth => {
                    self.store_inline_prev(&p, p.birth);
                    new_fields |= PREV;
                }
                Some(p) if p.kind == v.kind && p.birth == v.birth => {
                    self.store_inline_prev(&p, superseded);
                    new_fields |= PREV | MOVED;
                }
                Some(p) => self.older.push(p, superseded, guard),
                None => {}
            }
            self.store_version(&v);
            (new_fields, prev)
        })
    }

    /// Reads the fields while holding the write bit (the seqlock read would spin on it).
    fn read_locked<'g>(&self, guard: &'g Guard) -> Raw<'g> {
        Raw {
            meta: self.meta.load(Ordering::Relaxed) & FIELDS_MASK,
            location: self.location.load(Ordering::Relaxed),
            len_crc: self.len_crc.load(Ordering::Relaxed),
            birth: self.birth.load(Ordering::Relaxed),
            epoch_word: self.epoch_word.load(Ordering::Relaxed),
            prev_location: self.prev_location.load(Ordering::Relaxed),
            prev_len_crc: self.prev_len_crc.load(Ordering::Relaxed),
            older: self.older.head_relaxed(guard),
        }
    }

    /// LIVE → RETIRED at `epoch`; the inline previous version joins the older chain, since the
    /// retire epoch takes its word (invariant 6).
    pub(super) fn retire(&self, tag: u16, epoch: u64) -> Result<(), EntryView> {
        self.transition(tag, &[EntryState::Live], |kind| {
            // The meta word is this writer's while it holds the write bit: pinned only to push.
            if self.meta.load(Ordering::Relaxed) & PREV != 0 {
                let guard = crossbeam_epoch::pin();
                if let Some((inline, at)) = self.read_locked(&guard).inline_prev() {
                    self.older.push(inline, at, &guard);
                }
            }
            self.epoch_word.store(epoch, Ordering::Relaxed);
            (fields(tag, kind, EntryState::Retired), ())
        })
    }

    /// RETIRED → FREE: returns every version the entry still referenced (current first), and
    /// whether the handle may be reused (invariant 5).
    pub(super) fn reclaim(
        &self,
        tag: u16,
        guard: &Guard,
    ) -> Result<(Vec<Version>, Reuse), EntryView> {
        self.transition(tag, &[EntryState::Retired], |_| {
            let raw = self.read_locked(guard);
            // A RETIRED entry has no inline version (invariant 6); taken anyway, so none leaks.
            let mut out: Vec<Version> = (Self::decode(&raw).current.into_iter())
                .chain(raw.inline_prev().map(|(v, _)| v))
                .collect();
            out.extend(self.older.take_all(guard));
            let (new_fields, reuse) = freed(tag);
            (new_fields, (out, reuse))
        })
    }

    /// Unlinks older versions superseded at or before `min_epoch` (`older.rs`, invariant 4);
    /// returns them.
    pub(super) fn trim(
        &self,
        tag: u16,
        min_epoch: u64,
        guard: &Guard,
    ) -> Result<Vec<Version>, EntryView> {
        if self.older.is_empty(guard) && self.meta.load(Ordering::Acquire) & PREV == 0 {
            return Ok(Vec::new());
        }
        self.transition(tag, &[EntryState::Live, EntryState::Retired], |kind| {
            let raw = self.read_locked(guard);
            let state = EntryState::from_bits(raw.meta >> STATE_SHIFT);
            let mut new_fields = fields(tag, kind, state);
            let trimmed = match raw.inline_prev() {
                None => self.older.trim(min_epoch, guard),
                // Superseded at or before `min_epoch`, and the chain before it (`older.rs`,
                // invariants 1 and 4).
                Some((inline, at)) if at <= min_epoch => {
                    let mut out = vec![inline];
                    out.extend(self.older.take_all(guard));
                    out
                }
                Some(_) => {
                    new_fields |= raw.meta & (PREV | MOVED);
                    self.older.trim(min_epoch, guard)
                }
            };
            (new_fields, trimmed)
        })
    }

    /// Older versions, newest first.
    pub(super) fn older_versions(&self, guard: &Guard) -> Vec<Version> {
        let raw = self.read(guard);
        let mut out: Vec<Version> = raw.inline_prev().map(|(v, _)| v).into_iter().collect();
        out.extend(versions_from(raw.older, guard));
        out
    }

    /// Recovery: sets a FREE entry to `state` (LIVE or RETIRED) with `tag` and `v`. An exhausted
    /// entry takes only a node carrying [`TAG_MAX`] (invariant 5).
    pub(super) fn restore(
        &self,
        tag: u16,
        v: Version,
        retire_epoch: Option<u64>,
    ) -> Result<(), EntryView> {
        let old = self.lock();
        let exhausted = old & EXHAUSTED != 0;
        if EntryState::from_bits(old >> STATE_SHIFT) != EntryState::Free
            || (exhausted && tag != TAG_MAX)
        {
            self.unlock(old);
            return Err(self.view(&crossbeam_epoch::pin()));
        }
        self.store_version(&v);
        let state = match retire_epoch {
            Some(r) => {
                self.epoch_word.store(r, Ordering::Relaxed);
                EntryState::Retired
            }
            None => EntryState::Live,
        };
        self.unlock(fields(tag, v.kind, state));
        Ok(())
    }

    /// Recovery: gives a FREE entry the tag its next node must carry (from a checkpoint), so ids
    /// issued before the restart stay stale. An exhausted entry stays exhausted (refused).
    pub(super) fn restore_free(&self, tag: u16) -> Result<(), EntryView> {
        let old = self.lock();
        if EntryState::from_bits(old >> STATE_SHIFT) != EntryState::Free || old & EXHAUSTED != 0 {
            self.unlock(old);
            return Err(self.view(&crossbeam_epoch::pin()));
        }
        self.unlock(fields(tag, 0, EntryState::Free));
        Ok(())
    }

    /// Recovery: marks a FREE entry exhausted (from a checkpoint): its handle issued every tag,
    /// so it is never handed out again (invariant 5).
    pub(super) fn restore_exhausted(&self) -> Result<(), EntryView> {
        let old = self.lock();
        if EntryState::from_bits(old >> STATE_SHIFT) != EntryState::Free {
            self.unlock(old);
            return Err(self.view(&crossbeam_epoch::pin()));
        }
        self.unlock(fields(TAG_MAX, 0, EntryState::Free) | EXHAUSTED);
        Ok(())
    }
}
