//! The segment allocator: which slots of which data files are in use.
//!
//! Each small size class has its own data files, cut into fixed-size segments; each segment has
//! a free bitmap. The large class's files are cut into 64 MiB regions holding extents of whole
//! 4 KiB units (`extents.rs`, which keeps its own invariants). The allocator is pure
//! bookkeeping: creating files, mapping, reserving and hole punching belong to `DataFiles`.
//!
//! Invariants (of the small classes):
//! 1. A slot is handed out by `allocate` only if its bit is set (free), and its bit is cleared in
//!    the same critical section, so no two callers ever hold the same slot.
//! 2. Allocation takes slots from one *fill* segment per class, in ascending order from where
//!    its filling began (a moving cursor, so the bit search is amortised O(1)); only when the
//!    fill segment has no free slot left does the class pick another. `refill` holds exactly the
//!    segments, other than the fill segment and those being evacuated, with at least
//!    `refill_slots_min` free slots (`in_refill` mirrors membership); the next fill segment is the
//!    lowest-numbered of them, or a new segment when there is none. So the slots a
//!    commit group allocates lie side by side, and a durable commit of many small nodes dirties a
//!    few pages instead of one page per node (`design/ARCHITECTURE.md`, "Writes proportional to
//!    the change"). For slots smaller than a page, `refill_slots_min` is half a segment: a segment
//!    is added only when every other one is at least half full, so a class's segments never
//!    hold more than twice its used slots (plus one). For larger slots it is 1 (a slot is whole
//!    pages wherever it lies).
//! 3. `empty` holds segments whose slots are all free and whose disk blocks are still allocated;
//!    `return_empty` punches them out (under the class lock, so no allocation can write into a
//!    segment while its blocks are being returned) and marks them returned.
//! 4. A slot is written only inside a segment whose blocks are reserved (`backed`): `allocate`
//!    hands out the segment's range with the first slot of a segment that is new or was
//!    returned, and the caller reserves it (`fallocate`) before writing. Writing through a mapping
//!    into a hole on a full disk would raise SIGBUS instead of an error; this keeps a full disk a
//!    clean error at allocation time. (A large extent is always handed out with its own range to
//!    reserve: nothing else writes into it, so that needs no lock.)
//! 5. The state is a function of the set of used slots (plus the segment count): `rebuild` from
//!    the live locations gives the same free map.
//! 6. A segment being evacuated (a compaction victim) is never allocated from: it leaves
//!    `refill` (and stops being the fill segment) when the evacuation begins, frees into it do not
//!    put it back, and it returns to `refill` when the evacuation ends if it has enough free
//!    slots.

use bitvec::vec::BitVec;
use parking_lot::Mutex;

use super::extents::{ExtentSpace, Extents, RegionExtents};
use super::location::{
    CLASS_COUNT, FILE_MAX, LARGE_CLASS, Location, REGION_BYTES, SMALL_CLASS_COUNT,
    class_unit_bytes, is_small_class,
};
use crate::error::{Error, Result};

/// Segment of every small class: classes with smaller slots put many slots in one segment.
pub const SEGMENT_BYTES_MIN: u64 = 1 << 20;

/// Bytes of a segment of `class`: 1 MiB for the small classes, a 64 MiB region for the large
/// class.
pub const fn segment_bytes(class: u8) -> u64 {
    if is_small_class(class) {
        SEGMENT_BYTES_MIN
    } else {
        REGION_BYTES
    }
}

const _: () = assert!(class_unit_bytes(SMALL_CLASS_COUNT as u8 - 1) <= SEGMENT_BYTES_MIN);

/// Slots smaller than this wait for half their segment to be free before it is filled again
/// (invariant 2): the page a mapped write dirties and a data sync writes back.
const REFILL_PAGE_BYTES: u64 = 4096;

/// Classes whose segments are at most this big (the small ones) keep spare empty segments when
/// asked ([`SegmentAllocator::return_empty`]); the large class's free runs are always returned.
pub const SPARE_SEGMENT_BYTES_MAX: u64 = 1 << 20;

/// The largest `file_bytes_max` accepted (1 TiB): with at most 2^19 files per class, segment
/// arithmetic stays far from overflowing a u64.
pub const FILE_BYTES_MAX_LIMIT: u64 = 1 << 40;

/// Allocator settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocOptions {
    /// Size at which a class's data file is rolled over to the next (a power of two, at least
    /// the largest segment, a 64 MiB region). Default 1 GiB.
    pub file_bytes_max: u64,
}

impl Default for AllocOptions {
    fn default() -> Self {
        AllocOptions {
            file_bytes_max: 1 << 30,
        }
    }
}

impl AllocOptions {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        let largest = segment_bytes(CLASS_COUNT as u8 - 1);
        if !self.file_bytes_max.is_power_of_two()
            || self.file_bytes_max < largest
            || self.file_bytes_max > FILE_BYTES_MAX_LIMIT
        {
            return Err(Error::InvalidArgument(format!(
                "file_bytes_max must be a power of two from {largest} bytes to 1 TiB, got {}",
                self.file_bytes_max
            )));
        }
        Ok(())
    }

    /// Segments (for the large class, regions) in one data file of `class`.
    pub fn segments_per_file(&self, class: u8) -> u64 {
        self.file_bytes_max / segment_bytes(class)
    }
}

#[derive(Debug, Clone)]
struct Segment {
    /// One bit per slot; set = free.
    free: BitVec,
    free_count: u32,
    cursor: u32,
    /// On the `refill` list (invariant 2).
    in_refill: bool,
    /// On the `empty` list (at most once, so thrashing cannot grow it).
    in_empty: bool,
    /// Its blocks were returned to the filesystem (set by `return_empty`, cleared on allocation).
    returned: bool,
    /// Its blocks are reserved on disk (invariant 4).
    backed: bool,
    /// A compaction is moving its nodes out (invariant 6).
    evacuating: bool,
}

impl Segment {
    fn new(slots: u32) -> Self {
        Segment {
            free: BitVec::repeat(true, slots as usize),
            free_count: slots,
            cursor: 0,
            in_refill: false,
            in_empty: false,
            returned: false,
            backed: false,
            evacuating: false,
        }
    }

    fn slots(&self) -> u32 {
        self.free.len() as u32
    }

    fn take_free_bit(&mut self) -> Option<u32> {
        let start = self.cursor as usize;
        let found = self.free[start..]
            .first_one()
            .map(|i| i + start)
            .or_else(|| self.free[..start].first_one())?;
        self.free.set(found, false);
        self.free_count -= 1;
        self.cursor = (found as u32 + 1) % self.slots();
        Some(found as u32)
    }
}

#[derive(Debug, Default)]
struct Class {
    segments: Vec<Segment>,
    /// The segment allocations take slots from (invariant 2).
    fill: Option<u32>,
    /// Segments with enough free slots to become the fill segment (invariant 2).
    refill: Vec<u32>,
    empty: Vec<u32>,
    used_slots: u64,
}

/// Space figures of one class. For the large class, segments are its 64 MiB regions and slots
/// its extents (`used_bytes` is the sum of the extents, each a version's length rounded up to
/// 4 KiB).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassSpace {
    /// Segments that exist (in files).
    pub segments: u64,
    /// Slots in use.
    pub used_slots: u64,
    /// Bytes of the slots in use.
    pub used_bytes: u64,
    /// Bytes of all segments (used or not, returned ones included).
    pub segment_bytes: u64,
    /// Segments wholly free with their blocks returned to the filesystem.
    pub returned_segments: u64,
    /// Free bytes not yet returned to the filesystem (they may still hold disk blocks): the
    /// class's data files hold at most `used_bytes + unreturned_free_bytes` bytes of blocks.
    pub unreturned_free_bytes: u64,
}

/// How full one segment is. For the large class, a region counted in 4 KiB units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentUsage {
    /// Segment number within its class.
    pub segment: u32,
    /// Slots in use (large class: units of allocated extents).
    pub used_slots: u32,
    /// Slots in the segment (large class: 16 384 units).
    pub slots: u32,
    /// Wholly free with its blocks returned to the filesystem.
    pub returned: bool,
}

/// A slot or extent handed out by [`SegmentAllocator::allocate`] or
/// [`SegmentAllocator::allocate_extent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    /// The slot.
    pub location: Location,
    /// When set, the slot's segment has no reserved blocks: reserve this range (`fallocate`)
    /// before writing the slot, or call [`SegmentAllocator::unback`] and free the slot if that
    /// fails. A large extent always comes with its own range.
    pub back: Option<EmptySegment>,
}

/// A byte range of a data file: a segment of a small class, or a run of 4 KiB units of the large
/// class. Wholly free ones can be returned to the filesystem, new ones need their blocks
/// reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptySegment {
    /// Size class.
    pub class: u8,
    /// Data file within the class.
    pub file: u32,
    /// Byte offset of the segment in the file.
    pub offset: u64,
    /// Bytes of the segment.
    pub len: u64,
}

/// The allocator.
#[derive(Debug)]
pub struct SegmentAllocator {
    options: AllocOptions,
    /// The small classes.
    classes: Box<[Mutex<Class>]>,
    /// The large class.
    large: Mutex<Extents>,
}

impl SegmentAllocator {
    /// An allocator with no segments.
    pub fn new(options: AllocOptions) -> Result<Self> {
        options.validate()?;
        Ok(SegmentAllocator {
            options,
            classes: (0..SMALL_CLASS_COUNT)
                .map(|_| Mutex::new(Class::default()))
                .collect(),
            large: Mutex::new(Extents::new(options.segments_per_file(LARGE_CLASS))),
        })
    }

    /// The settings.
    pub fn options(&self) -> AllocOptions {
        self.options
    }

    /// A small class.
    fn class(&self, class: u8) -> Result<&Mutex<Class>> {
        self.classes
            .get(usize::from(class))
            .ok_or_else(|| Error::InvalidArgument(format!("no size class {class} of fixed slots")))
    }

    fn slots_per_segment(class: u8) -> u32 {
        (segment_bytes(class) / class_unit_bytes(class)) as u32
    }

    /// Free slots that make a segment of `class` a candidate fill segment (invariant 2): half a
    /// segment for slots smaller than a page, else one.
    pub fn refill_slots_min(class: u8) -> u32 {
        if class_unit_bytes(class) < REFILL_PAGE_BYTES {
            Self::slots_per_segment(class) / 2
        } else {
            1
        }
    }

    fn location(&self, class: u8, segment: u32, slot: u32) -> Location {
        let per_file = self.options.segments_per_file(class);
        let seg_bytes = segment_bytes(class);
        Location {
            class,
            file: (u64::from(segment) / per_file) as u32,
            offset: (u64::from(segment) % per_file) * seg_bytes
                + u64::from(slot) * class_unit_bytes(class),
        }
    }

    /// Segment number and slot index of a location of a small class; `None` if it is not
    /// slot-aligned.
    fn index(&self, loc: Location) -> Option<(u32, u32)> {
        if !is_small_class(loc.class) {
            return None;
        }
        let seg_bytes = segment_bytes(loc.class);
        let slot_bytes = class_unit_bytes(loc.class);
        if !loc.offset.is_multiple_of(slot_bytes) || loc.offset >= self.options.file_bytes_max {
            return None;
        }
        let segment = u64::from(loc.file) * self.options.segments_per_file(loc.class)
            + loc.offset / seg_bytes;
        let slot = (loc.offset % seg_bytes) / slot_bytes;
        Some((u32::try_from(segment).ok()?, slot as u32))
    }

    /// Hands out a free slot of small class `class`, adding a segment if every one is full.
    pub fn allocate(&self, class: u8) -> Result<Allocation> {
        let mut c = self.class(class)?.lock();
        self.allocate_in(&mut c, class)
    }

    /// Hands out a free slot of `class` whose segment's blocks are reserved: when the slot is the
    /// first of a new or returned segment, `back` reserves them (`fallocate`) while the class is
    /// still locked, so no other allocation can write into the segment before that is done
    /// (invariant 4). If `back` fails, the slot is given back and the segment stays unreserved.
    pub fn allocate_backed(
        &self,
        class: u8,
        back: impl FnOnce(&EmptySegment) -> Result<()>,
    ) -> Result<Location> {
        let mut c = self.class(class)?.lock();
        let a = self.allocate_in(&mut c, class)?;
        if let Some(seg) = a.back
            && let Err(e) = back(&seg)
        {
            if let Some((seg_no, _)) = self.index(a.location)
                && let Some(s) = c.segments.get_mut(seg_no as usize)
            {
                s.backed = false;
            }
            self.free_in(&mut c, a.location)?;
            return Err(e);
        }
        Ok(a.location)
    }

    fn allocate_in(&self, c: &mut Class, class: u8) -> Result<Allocation> {
        let seg_no = match c.fill {
            Some(n) => n,
            None => {
                let n = self.next_fill(c, class)?;
                c.fill = Some(n);
                n
            }
        };
        let seg = &mut c.segments[seg_no as usize];
        let slot = seg.take_free_bit().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "size class {class}: fill segment {seg_no} has no free slot (internal bug)"
            ))
        })?;
        seg.returned = false;
        let needs_backing = !seg.backed;
        seg.backed = true;
        if seg.free_count == 0 {
            // Full: frees into it from now on count towards its refill (invariant 2).
            c.fill = None;
        }
        c.used_slots += 1;
        let location = self.location(class, seg_no, slot);
        let back = needs_backing.then(|| {
            let start = self.location(class, seg_no, 0);
            EmptySegment {
                class,
                file: start.file,
                offset: start.offset,
                len: segment_bytes(class),
            }
        });
        Ok(Allocation { location, back })
    }

    /// The next fill segment of `class` (invariant 2): the lowest-numbered refill segment, taken
    /// off the list, or a new segment. Its cursor starts at its first slot, so its slots are
    /// handed out in ascending order. Filling the front of the files first keeps them short and
    /// leaves compaction nothing to move out of a half-filled segment that allocation passed
    /// over (every refill segment is at least half free, which is what keeps a commit group's
    /// slots close).
    fn next_fill(&self, c: &mut Class, class: u8) -> Result<u32> {
        let seg_no = match Self::take_lowest_refill(c) {
            Some(n) => n,
            None => {
                let n = c.segments.len() as u32;
                let max_segments = u64::from(FILE_MAX + 1) * self.options.segments_per_file(class);
                if u64::from(n) >= max_segments {
                    return Err(Error::InvalidArgument(format!(
                        "size class {class} has no room for another segment"
                    )));
                }
                c.segments.push(Segment::new(Self::slots_per_segment(class)));
                n
            }
        };
        c.segments[seg_no as usize].cursor = 0;
        Ok(seg_no)
    }

    /// Takes the lowest-numbered segment off the refill list.
    fn take_lowest_refill(c: &mut Class) -> Option<u32> {
        let i = (0..c.refill.len()).min_by_key(|&i| c.refill[i])?;
        let n = c.refill.swap_remove(i);
        c.segments[n as usize].in_refill = false;
        Some(n)
    }

    /// Hands out the extent of a large node of `len` bytes (more than 256 KiB, at most 64 MiB):
    /// `round_up(len, 4 KiB)` bytes, best fit among the free runs, adding a region only when no
    /// run holds it. `back` is the extent's range: reserve it before writing, or free the extent
    /// if that fails.
    pub fn allocate_extent(&self, len: u64) -> Result<Allocation> {
        let (location, range) = self.large.lock().allocate(len)?;
        Ok(Allocation {
            location,
            back: Some(range),
        })
    }

    /// Marks the segment of `loc` as having no reserved blocks (after reserving them failed), so
    /// the next allocation in it asks again. (A large extent's range is reserved on every
    /// allocation: nothing to mark.)
    pub fn unback(&self, loc: Location) {
        if let (Some((seg_no, _)), Ok(c)) = (self.index(loc), self.class(loc.class))
            && let Some(seg) = c.lock().segments.get_mut(seg_no as usize)
        {
            seg.backed = false;
        }
    }

    /// Gives a slot or extent back. Freeing one that is not in use is an error (and changes
    /// nothing).
    pub fn free(&self, loc: Location) -> Result<()> {
        if loc.class == LARGE_CLASS {
            return self.large.lock().free(loc);
        }
        let mut c = self.class(loc.class)?.lock();
        self.free_in(&mut c, loc)
    }

    /// Frees `locs` in order, taking each class's lock once per run of locations of that class.
    /// Returns how many were freed, and the error of the first that was not an allocated slot or
    /// extent (nothing after it is freed).
    pub fn free_many(&self, locs: &[Location]) -> (usize, Result<()>) {
        let mut done = 0;
        while let Some(&first) = locs.get(done) {
            let run = &locs[done..];
            let run = &run[..run.iter().take_while(|l| l.class == first.class).count()];
            let result = if first.class == LARGE_CLASS {
                let mut large = self.large.lock();
                run.iter().try_for_each(|&l| {
                    large.free(l)?;
                    done += 1;
                    Ok(())
                })
            } else {
                self.class(first.class).and_then(|c| {
                    let mut c = c.lock();
                    run.iter().try_for_each(|&l| {
                        self.free_in(&mut c, l)?;
                        done += 1;
                        Ok(())
                    })
                })
            };
            if result.is_err() {
                return (done, result);
            }
        }
        (done, Ok(()))
    }

    /// Gives back a slot this process allocated whose version never committed (a failed write,
    /// an aborted transaction, a superseded write in the same transaction). Nothing durable names
    /// it, so freeing it at once is safe. It cannot fail unless the slot was not allocated, an
    /// internal bug: that is logged loudly, and at worst the slot leaks until the store reopens
    /// (recovery rebuilds the allocator from the live versions).
    pub fn release(&self, loc: Location) {
        if let Err(e) = self.free(loc) {
            tracing::error!(?loc, %e, "releasing an uncommitted slot failed (internal bug)");
        }
    }

    fn free_in(&self, c: &mut Class, loc: Location) -> Result<()> {
        let bad = || Error::InvalidArgument(format!("free of {loc:?}: not an allocated slot"));
        let (seg_no, slot) = self.index(loc).ok_or_else(bad)?;
        let seg = c.segments.get_mut(seg_no as usize).ok_or_else(bad)?;
        if seg.free[slot as usize] {
            return Err(bad());
        }
        seg.free.set(slot as usize, true);
        seg.free_count += 1;
        let push_refill = !seg.in_refill
            && !seg.evacuating
            && c.fill != Some(seg_no)
            && seg.free_count >= Self::refill_slots_min(loc.class);
        seg.in_refill |= push_refill;
        let push_empty = seg.free_count == seg.slots() && !seg.in_empty && !seg.returned;
        seg.in_empty |= push_empty;
        if push_refill {
            c.refill.push(seg_no);
        }
        if push_empty {
            c.empty.push(seg_no);
        }
        c.used_slots -= 1;
        Ok(())
    }

    /// True if the slot at `loc` (or an extent starting there) is allocated.
    pub fn is_allocated(&self, loc: Location) -> bool {
        if loc.class == LARGE_CLASS {
            return self.large.lock().is_allocated(loc);
        }
        let Some((seg_no, slot)) = self.index(loc) else {
            return false;
        };
        let Ok(c) = self.class(loc.class) else {
            return false;
        };
        c.lock()
            .segments
            .get(seg_no as usize)
            .is_some_and(|s| !s.free[slot as usize])
    }

    /// Returns up to `max` wholly free segments' blocks to the filesystem: calls `punch` for each
    /// while holding its class's lock (so no allocation writes into it meanwhile), marks it
    /// returned, and lists it. A segment allocated from again asks for its blocks back
    /// (invariant 4). If `punch` fails, the segment stays as it was and the error is returned.
    ///
    /// In each class whose segments are at most [`SPARE_SEGMENT_BYTES_MAX`], the `spare` most
    /// recently emptied segments keep their blocks: a store that frees and allocates at a steady
    /// rate would otherwise punch a segment only to reserve it again moments later, both under
    /// the class lock that its writers wait for.
    ///
    /// The large class returns every run of 4 KiB units freed since it was last punched (each an
    /// entry of the list), under its lock likewise. It keeps no spare: a large extent's blocks
    /// are reserved by its writer after the allocation, outside the lock, so reserving them
    /// again costs only that writer.
    pub fn return_empty(
        &self,
        max: usize,
        spare: usize,
        mut punch: impl FnMut(&EmptySegment) -> Result<()>,
    ) -> Result<Vec<EmptySegment>> {
        let mut out = Vec::new();
        for class in 0..SMALL_CLASS_COUNT as u8 {
            let keep = if segment_bytes(class) <= SPARE_SEGMENT_BYTES_MAX {
                spare
            } else {
                0
            };
            let mut kept = Vec::new();
            let mut c = self.classes[usize::from(class)].lock();
            while out.len() < max {
                let Some(seg_no) = c.empty.pop() else { break };
                let seg = &mut c.segments[seg_no as usize];
                seg.in_empty = false;
                // It may have been allocated from since it became empty.
                if seg.free_count != seg.slots() || seg.returned {
                    continue;
                }
                if kept.len() < keep {
                    seg.in_empty = true;
                    kept.push(seg_no);
                    continue;
                }
                let start = self.location(class, seg_no, 0);
                let empty = EmptySegment {
                    class,
                    file: start.file,
                    offset: start.offset,
                    len: segment_bytes(class),
                };
                if let Err(e) = punch(&empty) {
                    c.segments[seg_no as usize].in_empty = true;
                    c.empty.push(seg_no);
                    return Err(e);
                }
                let seg = &mut c.segments[seg_no as usize];
                seg.returned = true;
                seg.backed = false;
                out.push(empty);
            }
            // Back in the order they were found, the most recently emptied on top.
            c.empty.extend(kept.into_iter().rev());
        }
        self.large.lock().punch(max, &mut punch, &mut out)?;
        Ok(out)
    }

    /// The segment number of `loc` within its class, the region for the large class (`None` if
    /// `loc` is not a slot or unit boundary).
    pub fn segment_of(&self, loc: Location) -> Option<u32> {
        if loc.class == LARGE_CLASS {
            return self.large.lock().region_of(loc);
        }
        self.index(loc).map(|(segment, _)| segment)
    }

    /// The segment `class` allocates from now (invariant 2), if any: its free slots are about to
    /// be used, so compaction leaves it alone.
    pub fn fill_segment(&self, class: u8) -> Option<u32> {
        self.class(class).ok()?.lock().fill
    }

    /// How full every segment of `class` is (for the large class, every region in units).
    pub fn segment_usage(&self, class: u8) -> Vec<SegmentUsage> {
        if class == LARGE_CLASS {
            return self.large.lock().usage();
        }
        let Ok(c) = self.class(class) else {
            return Vec::new();
        };
        let c = c.lock();
        c.segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentUsage {
                segment: i as u32,
                used_slots: s.slots() - s.free_count,
                slots: s.slots(),
                returned: s.returned,
            })
            .collect()
    }

    /// Stops allocation from `segments` of `class` (regions of the large class) until
    /// [`SegmentAllocator::end_evacuation`] (invariant 6), so a compaction moving their nodes out
    /// never moves one back in.
    pub fn begin_evacuation(&self, class: u8, segments: &[u32]) {
        if class == LARGE_CLASS {
            return self.large.lock().begin_evacuation(segments);
        }
        let Ok(c) = self.class(class) else { return };
        let mut c = c.lock();
        let c = &mut *c;
        for &seg_no in segments {
            if let Some(seg) = c.segments.get_mut(seg_no as usize) {
                seg.evacuating = true;
                seg.in_refill = false;
            }
            if c.fill == Some(seg_no) {
                c.fill = None;
            }
        }
        let segs = &c.segments;
        c.refill
            .retain(|&n| segs.get(n as usize).is_some_and(|s| !s.evacuating));
    }

    /// Allows allocation from `segments` of `class` again.
    pub fn end_evacuation(&self, class: u8, segments: &[u32]) {
        if class == LARGE_CLASS {
            return self.large.lock().end_evacuation(segments);
        }
        let Ok(c) = self.class(class) else { return };
        let mut c = c.lock();
        let refill_min = Self::refill_slots_min(class);
        for &seg_no in segments {
            let Some(seg) = c.segments.get_mut(seg_no as usize) else {
                continue;
            };
            seg.evacuating = false;
            if seg.free_count >= refill_min && !seg.in_refill {
                seg.in_refill = true;
                c.refill.push(seg_no);
            }
        }
    }

    /// Number of segments `class` has (files hold `segments_per_file` of them each).
    pub fn segment_count(&self, class: u8) -> u64 {
        if class == LARGE_CLASS {
            return self.large.lock().region_count();
        }
        self.class(class)
            .map(|c| c.lock().segments.len() as u64)
            .unwrap_or(0)
    }

    /// Space figures of `class`.
    pub fn space(&self, class: u8) -> ClassSpace {
        if class == LARGE_CLASS {
            return self.large.lock().class_space();
        }
        let Ok(c) = self.class(class) else {
            return ClassSpace::default();
        };
        let c = c.lock();
        let slot = class_unit_bytes(class);
        ClassSpace {
            segments: c.segments.len() as u64,
            used_slots: c.used_slots,
            used_bytes: c.used_slots * slot,
            segment_bytes: c.segments.len() as u64 * segment_bytes(class),
            returned_segments: c.segments.iter().filter(|s| s.returned).count() as u64,
            unreturned_free_bytes: c
                .segments
                .iter()
                .filter(|s| !s.returned)
                .map(|s| u64::from(s.free_count) * slot)
                .sum(),
        }
    }

    /// The large class's own figures: extents, free runs, the longest run open to allocation.
    pub fn extent_space(&self) -> ExtentSpace {
        self.large.lock().space()
    }

    /// Every region of the large class with its extents and free runs (compaction's plan).
    pub fn region_extents(&self) -> Vec<RegionExtents> {
        self.large.lock().region_extents()
    }

    /// Every free run of the large class as `(location, bytes)`, in address order (for tests).
    pub fn free_runs(&self) -> Vec<(Location, u64)> {
        self.large.lock().free_runs()
    }

    /// Checks the large class's invariants (`extents.rs`, 1–3), in time linear in its extents and
    /// runs (for tests).
    pub fn check_extents(&self) -> std::result::Result<(), String> {
        self.large.lock().check()
    }

    /// The free bitmap of every segment of small class `class` (for tests and fsck).
    pub fn free_map(&self, class: u8) -> Vec<BitVec> {
        self.class(class)
            .map(|c| c.lock().segments.iter().map(|s| s.free.clone()).collect())
            .unwrap_or_default()
    }

    /// Rebuilds the allocator from the live versions' `(location, len)`; `segments[class]` is how
    /// many segments (regions) each class's files hold (so free space at the end of files is
    /// known). Two live versions on one slot or sharing bytes of an extent, or one off its
    /// class's grid or outside the files, is an error naming it.
    pub fn rebuild(
        options: AllocOptions,
        segments: &[u64; CLASS_COUNT],
        live: impl IntoIterator<Item = (Location, u64)>,
    ) -> Result<Self> {
        let mut a = SegmentAllocator::new(options)?;
        for (class, &n) in segments.iter().enumerate().take(SMALL_CLASS_COUNT) {
            let mut c = a.classes[class].lock();
            let slots = Self::slots_per_segment(class as u8);
            c.segments = (0..n).map(|_| Segment::new(slots)).collect();
        }
        let mut large = Vec::new();
        for (loc, len) in live {
            if loc.class == LARGE_CLASS {
                large.push((loc, len));
                continue;
            }
            let bad = |what: &str| {
                Error::InvalidArgument(format!("rebuild: live location {loc:?} {what}"))
            };
            let (seg_no, slot) = a.index(loc).ok_or_else(|| bad("is not slot-aligned"))?;
            let mut c = a.class(loc.class)?.lock();
            let seg = c
                .segments
                .get_mut(seg_no as usize)
                .ok_or_else(|| bad("lies outside the data files"))?;
            if !seg.free[slot as usize] {
                return Err(bad("is used by two live versions"));
            }
            seg.free.set(slot as usize, false);
            seg.free_count -= 1;
            seg.backed = true;
            c.used_slots += 1;
        }
        a.large = Mutex::new(Extents::rebuild(
            options.segments_per_file(LARGE_CLASS),
            segments[usize::from(LARGE_CLASS)],
            large,
        )?);
        for class in 0..SMALL_CLASS_COUNT {
            let mut c = a.classes[class].lock();
            let c = &mut *c;
            let refill_min = Self::refill_slots_min(class as u8);
            for (i, seg) in c.segments.iter_mut().enumerate().rev() {
                if seg.free_count >= refill_min {
                    seg.in_refill = true;
                    c.refill.push(i as u32);
                }
                if seg.free_count == seg.slots() {
                    seg.in_empty = true;
                    c.empty.push(i as u32);
                }
            }
            // The segment the next allocation takes, chosen now as a running allocator would
            // have it (invariant 2), so compaction does not mistake the half-filled segment
            // allocation was filling for a victim.
            c.fill = Self::take_lowest_refill(c);
        }
        Ok(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> SegmentAllocator {
        SegmentAllocator::new(AllocOptions {
            file_bytes_max: 64 << 20,
        })
        .unwrap()
    }

    #[test]
    fn options_are_validated() {
        assert!(
            SegmentAllocator::new(AllocOptions {
                file_bytes_max: 1 << 20
            })
            .is_err()
        );
        assert!(
            SegmentAllocator::new(AllocOptions {
                file_bytes_max: (64 << 20) + 1
            })
            .is_err()
        );
    }

    #[test]
    fn slots_are_distinct_and_reused() {
        let a = small();
        let x = a.allocate(2).unwrap();
        assert_eq!(
            x.back,
            Some(EmptySegment {
                class: 2,
                file: 0,
                offset: 0,
                len: 1 << 20
            }),
            "the first slot of a new segment asks for its blocks"
        );
        let y = a.allocate(2).unwrap();
        assert_eq!(y.back, None);
        let (x, y) = (x.location, y.location);
        assert_ne!(x, y);
        a.free(x).unwrap();
        assert!(a.free(x).is_err(), "double free is refused");
        assert!(!a.is_allocated(x));
        // The fill segment still has free slots, so no segment is added.
        let z = a.allocate(2).unwrap().location;
        assert_eq!(a.space(2).segments, 1);
        assert!(a.is_allocated(z));
    }

    #[test]
    fn segments_roll_into_new_files() {
        let a = small();
        // Class 14 (256 KiB slots): 4 slots per 1 MiB segment, 64 segments per 64 MiB file.
        let locs: Vec<_> = (0..257).map(|_| a.allocate(14).unwrap().location).collect();
        assert_eq!(
            (locs[255].file, locs[255].offset),
            (0, (64 << 20) - (256 << 10))
        );
        assert_eq!((locs[256].file, locs[256].offset), (1, 0));
        // The large class: one 64 MiB region per 64 MiB file.
        let l0 = a.allocate_extent(64 << 20).unwrap().location;
        let l1 = a.allocate_extent(64 << 20).unwrap().location;
        assert_eq!((l0.class, l0.file, l0.offset), (LARGE_CLASS, 0, 0));
        assert_eq!((l1.file, l1.offset), (1, 0));
        assert!(
            matches!(a.allocate(LARGE_CLASS), Err(Error::InvalidArgument(m))
                if m == "no size class 15 of fixed slots"),
            "extents are allocated by length"
        );
        assert!(
            matches!(a.allocate_extent(256 << 10), Err(Error::InvalidArgument(m))
                if m == "a large extent holds more than 256 KiB and at most 64 MiB, not 262144 bytes"),
            "a small node is not an extent"
        );
    }

    #[test]
    fn a_large_extent_comes_with_its_own_range_to_reserve() {
        let a = small();
        let x = a.allocate_extent((1 << 20) + 1).unwrap();
        assert_eq!(
            x.back,
            Some(EmptySegment {
                class: LARGE_CLASS,
                file: 0,
                offset: 0,
                len: (1 << 20) + 4096
            })
        );
        let space = a.space(LARGE_CLASS);
        assert_eq!(
            (space.segments, space.used_slots, space.used_bytes),
            (1, 1, (1 << 20) + 4096)
        );
        assert_eq!(space.segment_bytes, 64 << 20);
        assert!(a.is_allocated(x.location));
        assert_eq!(a.segment_of(x.location), Some(0));
        a.free(x.location).unwrap();
        assert!(matches!(
            a.free(x.location),
            Err(Error::InvalidArgument(m))
                if m == format!("free of {:?}: not an allocated extent", x.location)
        ));
        assert_eq!(a.space(LARGE_CLASS).unreturned_free_bytes, (1 << 20) + 4096);
        let punched = a.return_empty(usize::MAX, 1, |_| Ok(())).unwrap();
        assert_eq!(punched.len(), 1, "no spare for the large class");
        assert_eq!(a.space(LARGE_CLASS).unreturned_free_bytes, 0);
        assert_eq!(a.space(LARGE_CLASS).returned_segments, 1);
    }

    #[test]
    fn empty_segments_are_offered_once() {
        let a = small();
        let locs: Vec<_> = (0..4).map(|_| a.allocate(14).unwrap().location).collect();
        // Class 14 (256 KiB) has 4 slots per 1 MiB segment.
        assert_eq!(a.space(14).segments, 1);
        for l in &locs {
            a.free(*l).unwrap();
        }
        let mut punched = Vec::new();
        let empty = a
            .return_empty(10, 0, |s| {
                punched.push(*s);
                Ok(())
            })
            .unwrap();
        assert_eq!(punched, empty);
        assert_eq!(
            empty,
            vec![EmptySegment {
                class: 14,
                file: 0,
                offset: 0,
                len: 1 << 20
            }]
        );
        assert!(a.return_empty(10, 0, |_| Ok(())).unwrap().is_empty());
        assert_eq!(a.space(14).returned_segments, 1);
        let again = a.allocate(14).unwrap();
        assert!(
            again.back.is_some(),
            "a returned segment needs its blocks reserved again"
        );
        assert_eq!(a.space(14).returned_segments, 0);
        a.unback(again.location);
        let next = a.allocate(14).unwrap();
        assert!(
            next.back.is_some(),
            "unback makes the next allocation ask again"
        );
    }

    #[test]
    fn evacuating_segments_are_not_allocated_from() {
        let a = small();
        // Class 2: 16384 slots of 64 B per 1 MiB segment. Fill one segment, start a second.
        let first: Vec<_> = (0..16384)
            .map(|_| a.allocate(2).unwrap().location)
            .collect();
        let second = a.allocate(2).unwrap().location;
        assert_eq!(a.segment_of(second), Some(1));
        for l in &first[..100] {
            a.free(*l).unwrap();
        }
        a.begin_evacuation(2, &[0]);
        // Segment 0 has 100 free slots, but the next ones come from segment 1.
        for _ in 0..200 {
            assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(1));
        }
        // Half of segment 0 free: a refill candidate, but not while it is evacuated.
        for l in &first[100..8192] {
            a.free(*l).unwrap();
        }
        for _ in 201..16384 {
            assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(1));
        }
        assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(2));
        a.end_evacuation(2, &[0]);
        // Segment 2 is the fill segment until it is full; then segment 0, back on the list.
        for _ in 1..16384 {
            assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(2));
        }
        assert_eq!(a.allocate(2).unwrap().location, first[0]);
        let usage = a.segment_usage(2);
        assert_eq!(usage.len(), 3);
        assert_eq!(usage[0].used_slots, 16384 - 8192 + 1);
        assert_eq!(usage[1].used_slots, 16384);
        assert_eq!(usage[2].used_slots, 16384);
    }

    #[test]
    fn slots_are_handed_out_side_by_side() {
        let a = small();
        // Class 2 (64 B): fill segment 0, then free every fourth slot (a quarter: not enough
        // to refill).
        let first: Vec<_> = (0..16384)
            .map(|_| a.allocate(2).unwrap().location)
            .collect();
        for l in first.iter().step_by(4) {
            a.free(*l).unwrap();
        }
        // The next slots are consecutive, in a new segment, not the scattered free ones.
        let next: Vec<_> = (0..100).map(|_| a.allocate(2).unwrap().location).collect();
        for (i, l) in next.iter().enumerate() {
            assert_eq!((l.file, l.offset), (0, (1 << 20) + 64 * i as u64));
        }
        // Two more quarters of segment 0 free: now it is refilled (once segment 1 is full),
        // from its first free slot up, skipping the slots still in use.
        for l in first.iter().skip(1).step_by(4).chain(first.iter().skip(2).step_by(4)) {
            a.free(*l).unwrap();
        }
        for _ in 100..16384 {
            assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(1));
        }
        let refill: Vec<_> = (0..6).map(|_| a.allocate(2).unwrap().location.offset).collect();
        assert_eq!(refill, [0, 64, 128, 256, 320, 384]);
        assert_eq!(a.space(2).segments, 2);
    }

    #[test]
    fn a_rebuild_resumes_filling_where_a_running_allocator_would() {
        let a = small();
        let first: Vec<_> = (0..16384 + 100)
            .map(|_| a.allocate(2).unwrap().location)
            .collect();
        let options = a.options();
        let mut segments = [0u64; CLASS_COUNT];
        segments[2] = 2;
        let rebuilt =
            SegmentAllocator::rebuild(options, &segments, first.iter().map(|&l| (l, 16))).unwrap();
        // Segment 1 holds 100 slots and is the fill segment at once (so compaction leaves it
        // alone), and allocation goes on right after its used slots.
        assert_eq!(rebuilt.fill_segment(2), Some(1));
        assert_eq!(
            rebuilt.allocate(2).unwrap().location.offset,
            (1 << 20) + 100 * 64
        );
        // A rebuild where no segment is free enough to refill has no fill segment.
        segments[2] = 1;
        let full = SegmentAllocator::rebuild(
            options,
            &segments,
            first[..16384].iter().map(|&l| (l, 16)),
        )
        .unwrap();
        assert_eq!(full.fill_segment(2), None);
    }

    #[test]
    fn the_lowest_refill_segment_is_taken_first() {
        let a = small();
        let segs: Vec<Vec<Location>> = (0..3)
            .map(|_| (0..16384).map(|_| a.allocate(2).unwrap().location).collect())
            .collect();
        // Segment 1 gets 12000 free slots, then segment 0 9000; segment 2 stays full.
        for l in segs[1][..12000].iter().chain(&segs[0][..9000]) {
            a.free(*l).unwrap();
        }
        for _ in 0..9000 {
            assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(0));
        }
        assert_eq!(a.segment_of(a.allocate(2).unwrap().location), Some(1));
        // Slots of a page or more are refilled from a single free slot.
        assert_eq!(SegmentAllocator::refill_slots_min(8), 1);
        assert_eq!(SegmentAllocator::refill_slots_min(7), 256);
        assert_eq!(SegmentAllocator::refill_slots_min(2), 8192);
        let big: Vec<_> = (0..256).map(|_| a.allocate(8).unwrap().location).collect();
        a.free(big[1]).unwrap();
        assert_eq!(a.allocate(8).unwrap().location, big[1]);
        assert_eq!(a.space(8).segments, 1);
    }

    #[test]
    fn a_failed_punch_leaves_the_segment_as_it_was() {
        let a = small();
        let l = a.allocate(14).unwrap().location;
        a.free(l).unwrap();
        let err = a.return_empty(10, 0, |_| Err(Error::InvalidArgument("no".into())));
        assert!(err.is_err());
        assert_eq!(a.space(14).returned_segments, 0);
        assert_eq!(a.return_empty(10, 0, |_| Ok(())).unwrap().len(), 1);
        assert_eq!(a.space(14).returned_segments, 1);
    }

    #[test]
    fn no_allocation_returns_before_its_segment_is_backed() {
        use std::collections::HashSet;
        use std::sync::Mutex as StdMutex;
        let a = small();
        // Segments whose blocks `back` reserved (it sleeps first, to widen any race).
        let backed: StdMutex<HashSet<u64>> = StdMutex::new(HashSet::new());
        let calls = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..3000 {
                        let loc = a
                            .allocate_backed(2, |seg| {
                                calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                std::thread::sleep(std::time::Duration::from_millis(2));
                                backed.lock().unwrap().insert(seg.offset);
                                Ok(())
                            })
                            .unwrap();
                        let seg_start = loc.offset / (1 << 20) * (1 << 20);
                        assert!(
                            backed.lock().unwrap().contains(&seg_start),
                            "{loc:?} handed out before its segment was backed"
                        );
                    }
                });
            }
        });
        // 12 000 slots of 64 B fill one 1 MiB segment (16 384 slots): backed exactly once.
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(a.space(2).used_slots, 12_000);
    }

    #[test]
    fn a_failed_backing_gives_the_slot_back_and_asks_again() {
        let a = small();
        let err = a.allocate_backed(14, |_| Err(Error::InvalidArgument("full".into())));
        assert!(err.is_err());
        assert_eq!(a.space(14).used_slots, 0);
        let mut asked = 0;
        let loc = a
            .allocate_backed(14, |_| {
                asked += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(
            asked, 1,
            "the segment is still unreserved, so it is reserved now"
        );
        assert!(a.is_allocated(loc));
        // The next slot of the same segment needs no reservation.
        let next = a.allocate_backed(14, |_| panic!("already backed")).unwrap();
        assert_ne!(next, loc);
    }
}
