//! The large class: extents of whole 4 KiB units in 64 MiB regions, allocated best fit from an
//! index of free runs, coalesced on free. Pure bookkeeping under the allocator's lock for the
//! class (`segments.rs`); reserving and punching blocks belong to `DataFiles`.
//!
//! Region `r` of the class is bytes `[(r mod R) * 64 MiB, (r mod R + 1) * 64 MiB)` of data file
//! `r / R`, where `R = file_bytes_max / 64 MiB`; unit `u` of a region is its bytes
//! `[u * 4 KiB, (u + 1) * 4 KiB)`.
//!
//! Invariants:
//! 1. In every region the allocated extents (`used`) and the free runs (`free`) tile its 16 384
//!    units: disjoint, together covering the region, and no two free runs adjacent (a free
//!    coalesces with both neighbours). A version of `len` bytes owns exactly
//!    `ceil(len / 4 KiB)` units (`location.rs`, invariant 2).
//! 2. `by_size` holds exactly the free runs of the regions not being evacuated, ordered by
//!    (units, region, start). `allocate` takes the first run at least as long as the request
//!    (best fit; the lowest address among equals) and splits off its front, so allocation is
//!    O(log runs), and a region is added only when no run of a region open to allocation holds
//!    the request.
//! 3. `unpunched` lists, per region, the free units whose disk blocks may still be held: freed
//!    since the region was last punched, or of unknown state after a rebuild. It is a subset of
//!    the free runs: `allocate` removes its extent from it (the caller then reserves exactly
//!    that extent), and `punch` returns the listed runs' blocks under the allocator's lock (so no
//!    allocation writes into a run while it is punched) before it forgets them. Every other free
//!    unit is a hole, so the class's data files hold at most `used + unpunched` units of blocks.
//! 4. The free runs are a function of the allocated extents: `rebuild` from the live
//!    `(location, len)` pairs gives the same runs (invariant 1 leaves no choice).
//! 5. A region being evacuated (a compaction victim) is never allocated from: its runs leave
//!    `by_size` when the evacuation begins, frees into it coalesce in `free` only, and its runs
//!    return to `by_size` when the evacuation ends.

use std::collections::{BTreeMap, BTreeSet};

use super::location::{
    EXTENT_UNIT_BYTES, FILE_MAX, LARGE_CLASS, Location, REGION_BYTES, len_fits, slot_bytes,
};
use super::segments::{ClassSpace, EmptySegment, SegmentUsage};
use crate::error::{Error, Result};

/// Units in a region.
pub const REGION_UNITS: u32 = (REGION_BYTES / EXTENT_UNIT_BYTES) as u32;

/// A run of units: `(start, length)`.
type Run = (u32, u32);

/// Runs of units `start -> length`, disjoint and never adjacent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Runs(BTreeMap<u32, u32>);

impl Runs {
    /// Adds `[start, start + len)`, which overlaps no run, merging it with the runs right before
    /// and after it. Returns the merged run and the neighbours it absorbed.
    fn insert(&mut self, start: u32, len: u32) -> (Run, [Option<Run>; 2]) {
        let (mut s, mut l) = (start, len);
        let before = self
            .0
            .range(..start)
            .next_back()
            .map(|(&a, &b)| (a, b))
            .filter(|&(a, b)| a + b == start);
        if let Some((a, b)) = before {
            self.0.remove(&a);
            s = a;
            l += b;
        }
        let after = self.0.get(&(start + len)).map(|&b| (start + len, b));
        if let Some((a, b)) = after {
            self.0.remove(&a);
            l += b;
        }
        self.0.insert(s, l);
        ((s, l), [before, after])
    }

    /// Removes `[start, start + len)` from the runs, splitting those it cuts; returns how many
    /// units were in runs.
    fn remove(&mut self, start: u32, len: u32) -> u32 {
        let end = start + len;
        let first = self
            .0
            .range(..=start)
            .next_back()
            .map(|(&a, _)| a)
            .unwrap_or(start);
        let hit: Vec<(u32, u32)> = self
            .0
            .range(first..end)
            .map(|(&a, &b)| (a, b))
            .filter(|&(a, b)| a + b > start)
            .collect();
        let mut removed = 0;
        for (a, b) in hit {
            self.0.remove(&a);
            if a < start {
                self.0.insert(a, start - a);
            }
            if a + b > end {
                self.0.insert(end, a + b - end);
            }
            removed += (a + b).min(end) - a.max(start);
        }
        removed
    }

    fn units(&self) -> u64 {
        self.0.values().map(|&l| u64::from(l)).sum()
    }
}

#[derive(Debug, Clone, Default)]
struct Region {
    used: BTreeMap<u32, u32>,
    free: Runs,
    unpunched: Runs,
    used_units: u32,
    evacuating: bool,
    /// On `unpunched_regions` (at most once).
    listed: bool,
}

/// One region as compaction plans with it: its extents and free runs, in units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionExtents {
    /// Region number within the large class.
    pub region: u32,
    /// Units of each allocated extent, in address order.
    pub extents: Vec<u32>,
    /// Units of each free run, in address order.
    pub free_runs: Vec<u32>,
    /// Being evacuated (closed to allocation).
    pub evacuating: bool,
}

/// Space figures of the large class, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExtentSpace {
    /// Regions (64 MiB each) that exist in files.
    pub regions: u64,
    /// Allocated extents.
    pub extents: u64,
    /// Bytes of the allocated extents (each a version's `len` rounded up to 4 KiB).
    pub used_bytes: u64,
    /// Free bytes (`regions * 64 MiB - used_bytes`).
    pub free_bytes: u64,
    /// Free runs.
    pub free_runs: u64,
    /// The longest free run of a region open to allocation: the largest extent allocated
    /// without adding a region.
    pub free_run_bytes_max: u64,
    /// Free bytes whose disk blocks may still be held (not punched since they were freed).
    pub unpunched_bytes: u64,
}

/// The large class's allocator state (invariants above).
#[derive(Debug)]
pub(super) struct Extents {
    regions_per_file: u64,
    regions: Vec<Region>,
    by_size: BTreeSet<(u32, u32, u32)>,
    unpunched_regions: Vec<u32>,
    used_extents: u64,
    used_units: u64,
    unpunched_units: u64,
}

impl Extents {
    /// No regions, in files of `regions_per_file` regions.
    pub(super) fn new(regions_per_file: u64) -> Self {
        Extents {
            regions_per_file,
            regions: Vec::new(),
            by_size: BTreeSet::new(),
            unpunched_regions: Vec::new(),
            used_extents: 0,
            used_units: 0,
            unpunched_units: 0,
        }
    }

    fn regions_max(&self) -> u64 {
        u64::from(FILE_MAX + 1) * self.regions_per_file
    }

    fn location(&self, region: u32, start: u32) -> Location {
        Location {
            class: LARGE_CLASS,
            file: (u64::from(region) / self.regions_per_file) as u32,
            offset: (u64::from(region) % self.regions_per_file) * REGION_BYTES
                + u64::from(start) * EXTENT_UNIT_BYTES,
        }
    }

    /// Region number and start unit of `loc`; `None` if it is not a unit boundary of the class.
    fn index(&self, loc: Location) -> Option<(u32, u32)> {
        if loc.class != LARGE_CLASS
            || !loc.offset.is_multiple_of(EXTENT_UNIT_BYTES)
            || loc.offset >= self.regions_per_file * REGION_BYTES
        {
            return None;
        }
        let region = u64::from(loc.file) * self.regions_per_file + loc.offset / REGION_BYTES;
        let start = (loc.offset % REGION_BYTES) / EXTENT_UNIT_BYTES;
        Some((u32::try_from(region).ok()?, start as u32))
    }

    /// The region of `loc`, if it is a unit boundary of the class.
    pub(super) fn region_of(&self, loc: Location) -> Option<u32> {
        self.index(loc).map(|(r, _)| r)
    }

    fn units_for(len: u64) -> Result<u32> {
        if !len_fits(LARGE_CLASS, len) {
            return Err(Error::InvalidArgument(format!(
                "a large extent holds more than 256 KiB and at most 64 MiB, not {len} bytes"
            )));
        }
        Ok((slot_bytes(LARGE_CLASS, len) / EXTENT_UNIT_BYTES) as u32)
    }

    /// Adds a wholly free region (a hole: nothing to punch).
    fn add_region(&mut self) -> Result<()> {
        let n = self.regions.len() as u32;
        if u64::from(n) >= self.regions_max() {
            return Err(Error::InvalidArgument(
                "the large class has no room for another region".to_owned(),
            ));
        }
        let mut r = Region::default();
        r.free.insert(0, REGION_UNITS);
        self.regions.push(r);
        self.by_size.insert((REGION_UNITS, n, 0));
        Ok(())
    }

    /// Allocates the extent of a `len`-byte version, best fit (invariant 2). Returns its location
    /// and its byte range, which the caller reserves (`fallocate`) before writing it; nothing
    /// else writes into an allocated extent, so that needs no lock.
    pub(super) fn allocate(&mut self, len: u64) -> Result<(Location, EmptySegment)> {
        let units = Self::units_for(len)?;
        let (run, region, start) = match self.by_size.range((units, 0, 0)..).next() {
            Some(&found) => found,
            None => {
                self.add_region()?;
                (REGION_UNITS, self.regions.len() as u32 - 1, 0)
            }
        };
        self.by_size.remove(&(run, region, start));
        let r = &mut self.regions[region as usize];
        r.free.0.remove(&start);
        if run > units {
            r.free.0.insert(start + units, run - units);
            self.by_size.insert((run - units, region, start + units));
        }
        r.used.insert(start, units);
        r.used_units += units;
        let unpunched = r.unpunched.remove(start, units);
        self.unpunched_units -= u64::from(unpunched);
        self.used_extents += 1;
        self.used_units += u64::from(units);
        let location = self.location(region, start);
        let range = EmptySegment {
            class: LARGE_CLASS,
            file: location.file,
            offset: location.offset,
            len: u64::from(units) * EXTENT_UNIT_BYTES,
        };
        Ok((location, range))
    }

    /// Frees the extent starting at `loc`, coalescing it with the free runs around it. Freeing
    /// anything but an allocated extent's start is an error (and changes nothing).
    pub(super) fn free(&mut self, loc: Location) -> Result<()> {
        let bad = || Error::InvalidArgument(format!("free of {loc:?}: not an allocated extent"));
        let (region, start) = self.index(loc).ok_or_else(bad)?;
        let r = self.regions.get_mut(region as usize).ok_or_else(bad)?;
        let units = r.used.remove(&start).ok_or_else(bad)?;
        r.used_units -= units;
        let ((s, l), absorbed) = r.free.insert(start, units);
        r.unpunched.insert(start, units);
        let list = !r.listed;
        r.listed = true;
        if !r.evacuating {
            for (a, b) in absorbed.into_iter().flatten() {
                self.by_size.remove(&(b, region, a));
            }
            self.by_size.insert((l, region, s));
        }
        if list {
            self.unpunched_regions.push(region);
        }
        self.used_extents -= 1;
        self.used_units -= u64::from(units);
        self.unpunched_units += u64::from(units);
        Ok(())
    }

    /// True if an allocated extent starts at `loc`.
    pub(super) fn is_allocated(&self, loc: Location) -> bool {
        self.index(loc).is_some_and(|(region, start)| {
            self.regions
                .get(region as usize)
                .is_some_and(|r| r.used.contains_key(&start))
        })
    }

    /// Returns the blocks of up to `max - out.len()` unpunched runs: calls `punch` for each (the
    /// caller holds the allocator's lock, invariant 3), forgets it, and lists it in `out`. If
    /// `punch` fails, that run stays unpunched and the error is returned.
    pub(super) fn punch(
        &mut self,
        max: usize,
        punch: &mut dyn FnMut(&EmptySegment) -> Result<()>,
        out: &mut Vec<EmptySegment>,
    ) -> Result<()> {
        while out.len() < max {
            let Some(&region) = self.unpunched_regions.last() else {
                break;
            };
            let first = self.regions[region as usize]
                .unpunched
                .0
                .first_key_value()
                .map(|(&s, &l)| (s, l));
            let Some((start, units)) = first else {
                self.regions[region as usize].listed = false;
                self.unpunched_regions.pop();
                continue;
            };
            let at = self.location(region, start);
            let run = EmptySegment {
                class: LARGE_CLASS,
                file: at.file,
                offset: at.offset,
                len: u64::from(units) * EXTENT_UNIT_BYTES,
            };
            punch(&run)?;
            self.regions[region as usize].unpunched.0.remove(&start);
            self.unpunched_units -= u64::from(units);
            out.push(run);
        }
        Ok(())
    }

    /// Closes `regions` to allocation (invariant 5).
    pub(super) fn begin_evacuation(&mut self, regions: &[u32]) {
        for &n in regions {
            let Some(r) = self.regions.get_mut(n as usize) else {
                continue;
            };
            if r.evacuating {
                continue;
            }
            r.evacuating = true;
            for (&s, &l) in &r.free.0 {
                self.by_size.remove(&(l, n, s));
            }
        }
    }

    /// Opens `regions` to allocation again.
    pub(super) fn end_evacuation(&mut self, regions: &[u32]) {
        for &n in regions {
            let Some(r) = self.regions.get_mut(n as usize) else {
                continue;
            };
            if !r.evacuating {
                continue;
            }
            r.evacuating = false;
            for (&s, &l) in &r.free.0 {
                self.by_size.insert((l, n, s));
            }
        }
    }

    /// Regions that exist.
    pub(super) fn region_count(&self) -> u64 {
        self.regions.len() as u64
    }

    /// The class's figures in the form every class reports: regions are its segments, extents
    /// its slots.
    pub(super) fn class_space(&self) -> ClassSpace {
        ClassSpace {
            segments: self.regions.len() as u64,
            used_slots: self.used_extents,
            used_bytes: self.used_units * EXTENT_UNIT_BYTES,
            segment_bytes: self.regions.len() as u64 * REGION_BYTES,
            returned_segments: self
                .regions
                .iter()
                .filter(|r| r.used_units == 0 && r.unpunched.0.is_empty())
                .count() as u64,
            unreturned_free_bytes: self.unpunched_units * EXTENT_UNIT_BYTES,
        }
    }

    /// The class's own figures.
    pub(super) fn space(&self) -> ExtentSpace {
        let region_units = self.regions.len() as u64 * u64::from(REGION_UNITS);
        ExtentSpace {
            regions: self.regions.len() as u64,
            extents: self.used_extents,
            used_bytes: self.used_units * EXTENT_UNIT_BYTES,
            free_bytes: (region_units - self.used_units) * EXTENT_UNIT_BYTES,
            free_runs: self.regions.iter().map(|r| r.free.0.len() as u64).sum(),
            free_run_bytes_max: self
                .by_size
                .last()
                .map_or(0, |&(l, _, _)| u64::from(l) * EXTENT_UNIT_BYTES),
            unpunched_bytes: self.unpunched_units * EXTENT_UNIT_BYTES,
        }
    }

    /// How full every region is, in units.
    pub(super) fn usage(&self) -> Vec<SegmentUsage> {
        self.regions
            .iter()
            .enumerate()
            .map(|(i, r)| SegmentUsage {
                segment: i as u32,
                used_slots: r.used_units,
                slots: REGION_UNITS,
                returned: r.used_units == 0 && r.unpunched.0.is_empty(),
            })
            .collect()
    }

    /// Every region's extents and free runs, for compaction's plan.
    pub(super) fn region_extents(&self) -> Vec<RegionExtents> {
        self.regions
            .iter()
            .enumerate()
            .map(|(i, r)| RegionExtents {
                region: i as u32,
                extents: r.used.values().copied().collect(),
                free_runs: r.free.0.values().copied().collect(),
                evacuating: r.evacuating,
            })
            .collect()
    }

    /// Every free run as `(location, bytes)`, in address order (for tests and fsck).
    pub(super) fn free_runs(&self) -> Vec<(Location, u64)> {
        let mut out = Vec::new();
        for (i, r) in self.regions.iter().enumerate() {
            for (&s, &l) in &r.free.0 {
                out.push((self.location(i as u32, s), u64::from(l) * EXTENT_UNIT_BYTES));
            }
        }
        out
    }

    /// The state after a restart: `regions` regions, the extents of the live versions allocated,
    /// every other unit free and unpunched (its blocks are of unknown state, invariant 3). Two
    /// live extents that share a unit, or one off the grid or outside the regions, is an error
    /// naming it.
    pub(super) fn rebuild(
        regions_per_file: u64,
        regions: u64,
        live: impl IntoIterator<Item = (Location, u64)>,
    ) -> Result<Self> {
        let mut x = Extents::new(regions_per_file);
        if regions > x.regions_max() {
            return Err(Error::InvalidArgument(format!(
                "rebuild: {regions} regions of the large class exceed the largest store"
            )));
        }
        x.regions = (0..regions).map(|_| Region::default()).collect();
        for (loc, len) in live {
            let bad = |what: &str| {
                Error::InvalidArgument(format!(
                    "rebuild: live extent {loc:?} of {len} bytes {what}"
                ))
            };
            let units = Self::units_for(len).map_err(|_| bad("has a length no extent has"))?;
            if let Some(why) = loc.misplaced(len) {
                return Err(bad(why));
            }
            let (region, start) = x.index(loc).ok_or_else(|| bad("lies outside the files"))?;
            let r = x
                .regions
                .get_mut(region as usize)
                .ok_or_else(|| bad("lies outside the data files"))?;
            let before = r.used.range(..=start).next_back();
            let after = r.used.range(start..).next();
            if before.is_some_and(|(&s, &l)| s + l > start)
                || after.is_some_and(|(&s, _)| s < start + units)
            {
                return Err(bad("overlaps the extent of another live version"));
            }
            r.used.insert(start, units);
            r.used_units += units;
            x.used_extents += 1;
            x.used_units += u64::from(units);
        }
        for (i, r) in x.regions.iter_mut().enumerate() {
            let mut gaps = Vec::new();
            let mut at = 0u32;
            for (&s, &l) in &r.used {
                gaps.push((at, s - at));
                at = s + l;
            }
            gaps.push((at, REGION_UNITS - at));
            gaps.retain(|&(_, l)| l > 0);
            for (s, l) in gaps {
                r.free.0.insert(s, l);
                r.unpunched.0.insert(s, l);
                x.by_size.insert((l, i as u32, s));
                x.unpunched_units += u64::from(l);
            }
            if !r.unpunched.0.is_empty() {
                r.listed = true;
            }
        }
        // Punched in region order (the list is a stack).
        x.unpunched_regions = (0..x.regions.len() as u32)
            .rev()
            .filter(|&i| x.regions[i as usize].listed)
            .collect();
        debug_assert_eq!(x.check(), Ok(()));
        Ok(x)
    }

    /// Checks invariants 1–3 (for tests; O(extents + runs)).
    pub(super) fn check(&self) -> std::result::Result<(), String> {
        let mut by_size = BTreeSet::new();
        let (mut used_units, mut extents, mut unpunched) = (0u64, 0u64, 0u64);
        for (i, r) in self.regions.iter().enumerate() {
            let mut tiles: Vec<(u32, u32, bool)> =
                r.used.iter().map(|(&s, &l)| (s, l, true)).collect();
            tiles.extend(r.free.0.iter().map(|(&s, &l)| (s, l, false)));
            tiles.sort_unstable();
            let mut at = 0;
            let mut prev_free = false;
            for &(s, l, used) in &tiles {
                if s != at || l == 0 {
                    return Err(format!("region {i}: tile at unit {s} (expected {at})"));
                }
                if !used && prev_free {
                    return Err(format!("region {i}: adjacent free runs at unit {s}"));
                }
                prev_free = !used;
                at = s + l;
            }
            if at != REGION_UNITS {
                return Err(format!("region {i}: tiles end at unit {at}"));
            }
            if r.used.values().sum::<u32>() != r.used_units {
                return Err(format!("region {i}: used units miscounted"));
            }
            for (&s, &l) in &r.unpunched.0 {
                let inside = r
                    .free
                    .0
                    .range(..=s)
                    .next_back()
                    .is_some_and(|(&fs, &fl)| fs + fl >= s + l);
                if !inside {
                    return Err(format!("region {i}: unpunched run at {s} is not free"));
                }
            }
            if !r.unpunched.0.is_empty() && !self.unpunched_regions.contains(&(i as u32)) {
                return Err(format!("region {i}: unpunched runs but not listed"));
            }
            if !r.evacuating {
                by_size.extend(r.free.0.iter().map(|(&s, &l)| (l, i as u32, s)));
            }
            used_units += u64::from(r.used_units);
            extents += r.used.len() as u64;
            unpunched += r.unpunched.units();
        }
        if by_size != self.by_size {
            return Err("by_size is not the free runs of open regions".to_owned());
        }
        if (used_units, extents, unpunched)
            != (self.used_units, self.used_extents, self.unpunched_units)
        {
            return Err("totals miscounted".to_owned());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Files of 128 MiB: two regions each.
    fn two_per_file() -> Extents {
        Extents::new(2)
    }

    #[test]
    fn runs_merge_and_split() {
        let mut r = Runs::default();
        assert_eq!(r.insert(10, 5), ((10, 5), [None, None]));
        assert_eq!(r.insert(20, 5), ((20, 5), [None, None]));
        assert_eq!(r.insert(15, 5), ((10, 15), [Some((10, 5)), Some((20, 5))]));
        assert_eq!(r.remove(12, 3), 3);
        assert_eq!(r.0, BTreeMap::from([(10, 2), (15, 10)]));
        assert_eq!(r.remove(0, 100), 12);
        assert!(r.0.is_empty());
        r.insert(0, 8);
        assert_eq!(
            r.remove(8, 4),
            0,
            "a range outside every run removes nothing"
        );
    }

    #[test]
    fn extents_take_exactly_their_rounded_length() {
        let mut x = two_per_file();
        let mut at = 0;
        for len in [MIB + 1, 5 * MIB, 33 * MIB] {
            let (loc, range) = x.allocate(len).unwrap();
            assert_eq!(
                (loc.file, loc.offset),
                (0, at),
                "packed from the region's start"
            );
            assert_eq!(range.offset, loc.offset);
            assert_eq!(range.len, len.div_ceil(4096) * 4096);
            at += range.len;
        }
        assert_eq!(x.space().used_bytes, MIB + 4096 + 5 * MIB + 33 * MIB);
        assert_eq!(x.space().regions, 1);
        // 64 MiB does not fit the 25 MiB - 4 KiB left: a second region.
        let (big, _) = x.allocate(64 * MIB).unwrap();
        assert_eq!((big.file, big.offset), (0, 64 * MIB));
        let s = x.space();
        assert_eq!(s.used_bytes, 103 * MIB + 4096);
        assert_eq!(s.free_bytes, 128 * MIB - s.used_bytes);
        assert_eq!(s.free_run_bytes_max, 25 * MIB - 4096);
        assert_eq!(s.unpunched_bytes, 0, "fresh regions are holes");
        x.check().unwrap();
    }

    #[test]
    fn best_fit_and_coalescing() {
        let mut x = two_per_file();
        let a = x.allocate(8 * MIB).unwrap().0;
        let b = x.allocate(4 * MIB).unwrap().0;
        let c = x.allocate(8 * MIB).unwrap().0;
        let _d = x.allocate(2 * MIB).unwrap().0;
        x.free(a).unwrap();
        x.free(c).unwrap();
        // Free runs: a (8 MiB), c (8 MiB), the tail (42 MiB). 3 MiB goes to the lowest 8 MiB run.
        let e = x.allocate(3 * MIB).unwrap().0;
        assert_eq!(e, a);
        // Freeing b coalesces a's remainder, b and c into one 17 MiB run.
        x.free(b).unwrap();
        let runs = x.free_runs();
        assert_eq!(
            runs[0],
            (
                Location {
                    offset: 3 * MIB,
                    ..a
                },
                17 * MIB
            )
        );
        assert_eq!(x.space().free_runs, 2);
        assert_eq!(x.space().unpunched_bytes, 5 * MIB + 4 * MIB + 8 * MIB);
        x.check().unwrap();
        assert!(
            matches!(x.free(b), Err(Error::InvalidArgument(m))
                if m == format!("free of {b:?}: not an allocated extent")),
            "double free refused"
        );
        let inside = Location { offset: 4096, ..a };
        assert!(
            matches!(x.free(inside), Err(Error::InvalidArgument(m))
                if m == format!("free of {inside:?}: not an allocated extent")),
            "inside an extent"
        );
        x.check().unwrap();
    }

    #[test]
    fn punching_returns_exactly_the_freed_units() {
        let mut x = two_per_file();
        let a = x.allocate(8 * MIB).unwrap().0;
        let b = x.allocate(MIB).unwrap().0;
        x.free(a).unwrap();
        let mut out = Vec::new();
        let mut punched = Vec::new();
        x.punch(
            usize::MAX,
            &mut |r| {
                punched.push(*r);
                Ok(())
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(punched, out);
        assert_eq!(
            out,
            vec![EmptySegment {
                class: LARGE_CLASS,
                file: 0,
                offset: 0,
                len: 8 * MIB
            }]
        );
        // Reallocating part of a punched run needs nothing punched later; freeing it again does.
        let c = x.allocate(2 * MIB).unwrap().0;
        assert_eq!(c, a);
        x.free(b).unwrap();
        assert_eq!(x.space().unpunched_bytes, MIB);
        let err = x.punch(
            usize::MAX,
            &mut |_| Err(Error::InvalidArgument("no".into())),
            &mut out,
        );
        assert!(
            matches!(&err, Err(Error::InvalidArgument(m)) if m == "no"),
            "the punch callback's own error: {err:?}"
        );
        assert_eq!(
            x.space().unpunched_bytes,
            MIB,
            "a failed punch forgets nothing"
        );
        out.clear();
        x.punch(usize::MAX, &mut |_| Ok(()), &mut out).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].offset, out[0].len), (8 * MIB, MIB));
        x.check().unwrap();
    }

    #[test]
    fn evacuating_regions_are_not_allocated_from() {
        let mut x = two_per_file();
        let a = x.allocate(40 * MIB).unwrap().0;
        let b = x.allocate(40 * MIB).unwrap().0;
        assert_eq!((a.offset, b.offset), (0, 64 * MIB));
        x.begin_evacuation(&[0]);
        // 20 MiB would fit region 0's 24 MiB run, but region 0 is closed: region 1's.
        let c = x.allocate(20 * MIB).unwrap().0;
        assert_eq!(c.offset, 104 * MIB);
        x.free(a).unwrap();
        x.check().unwrap();
        let d = x.allocate(30 * MIB).unwrap().0;
        assert_eq!(
            (d.file, d.offset),
            (1, 0),
            "a new region rather than an evacuating one"
        );
        x.end_evacuation(&[0]);
        let e = x.allocate(50 * MIB).unwrap().0;
        assert_eq!((e.file, e.offset), (0, 0), "only region 0 holds 50 MiB");
        x.check().unwrap();
    }

    #[test]
    fn rebuild_gives_the_same_runs() {
        let mut x = two_per_file();
        let mut live = Vec::new();
        for (i, len) in [3 * MIB, MIB + 1, 20 * MIB, 300 << 10, 64 * MIB, 7 * MIB]
            .into_iter()
            .enumerate()
        {
            let loc = x.allocate(len).unwrap().0;
            if i % 2 == 0 {
                live.push((loc, len));
            } else {
                x.free(loc).unwrap();
            }
        }
        let y = Extents::rebuild(2, x.region_count(), live.iter().copied()).unwrap();
        assert_eq!(y.free_runs(), x.free_runs());
        assert_eq!(y.space().used_bytes, x.space().used_bytes);
        assert_eq!(y.space().unpunched_bytes, y.space().free_bytes, "all of it");
        let overlapping = (
            Location {
                offset: live[0].0.offset + 4096,
                ..live[0].0
            },
            MIB,
        );
        let err = Extents::rebuild(2, x.region_count(), [live[0], overlapping]).unwrap_err();
        assert!(err.to_string().contains("overlaps"), "{err}");
        let crossing = (
            Location {
                class: LARGE_CLASS,
                file: 0,
                offset: 60 * MIB,
            },
            5 * MIB,
        );
        let err = Extents::rebuild(2, 1, [crossing]).unwrap_err();
        assert!(err.to_string().contains("region boundary"), "{err}");
        let outside = (
            Location {
                class: LARGE_CLASS,
                file: 1,
                offset: 0,
            },
            MIB,
        );
        assert!(matches!(
            Extents::rebuild(2, 2, [outside]),
            Err(Error::InvalidArgument(m)) if m == format!(
                "rebuild: live extent {:?} of 1048576 bytes lies outside the data files",
                outside.0
            )
        ));
    }
}
