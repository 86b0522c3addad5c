//! Compaction: moves live nodes out of sparse segments so those segments become wholly free and
//! their blocks go back to the filesystem. NodeIds never change; only object-table entries do.
//!
//! Steps (`design/DURABILITY.md` §6, M1–M6), writers and readers running throughout:
//! M1 choose victims: segments of small classes whose free share is at least
//!    `dead_percent_min`, outside the densest segments that can hold the class's live slots, and
//!    regions of the large class as sparse whose extents all fit, best fit, in the free runs of
//!    regions that stay (a plan over the free runs, so a pass never adds a region to empty one);
//!    best benefit/cost first (free bytes per live byte moved), until the pass's live-byte budget
//!    is spent;
//! M2 stop allocation from the victims (the allocator's evacuation), so no node moves back in;
//! M3 list the LIVE nodes whose current version lies in a victim;
//! M4 in batches (throttled to `bytes_per_sec_max`), under a pinned epoch (so no source slot is
//!    freed while it is copied): read and check each node's bytes, write them to a new slot, make
//!    them durable (one data sync), and commit the batch as STRICT moves: the record, then the log
//!    synced. A move keeps the version's birth epoch (same bytes), so transactions that read or
//!    wrote the node meanwhile do not conflict;
//!    a node a transaction updated since it was listed fails its move with a conflict and is
//!    dropped from the batch (the update already moved it out of the victim);
//! M5 allow allocation from the victims again; reclamation frees each source slot once its move
//!    is durable and no snapshot can read it (rule 5 of `engine.rs`);
//! M6 return wholly free segments' blocks to the filesystem (hole punching).
//!
//! A crash anywhere leaves either the old location (move record not durable: the new slot is
//! free after recovery's allocator rebuild) or the new one (record durable: its bytes were
//! durable first). The old slot is freed only after the move is durable, so it is never reused
//! while a recovery could still name it.

use std::collections::{BTreeSet, HashMap, HashSet};

use super::durable::Inner;
use super::engine::{Staged, StagedNode};
use super::options::{CommitPolicy, CompactionOptions};
use super::stats::Counters;
use crate::alloc::{
    EXTENT_UNIT_BYTES, EmptySegment, LARGE_CLASS, RegionExtents, SMALL_CLASS_COUNT,
    class_unit_bytes,
};
use crate::error::{Error, Result};
use crate::object_table::{EntryState, NodeId, Version};

/// What one compaction pass did.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let mut tx = rt.begin();
/// // Two 1 MiB segments of 1 KiB slots; all but four nodes of the first are retired, and half
/// // of the second.
/// let ids = (0..2048).map(|_| tx.alloc(1, &[1; 1000])).collect::<Result<Vec<_>, _>>()?;
/// tx.commit()?;
/// let mut tx = rt.begin();
/// for id in &ids[4..1536] {
///     tx.retire(*id)?;
/// }
/// tx.commit()?;
/// rt.checkpoint()?; // the retirements are durable: their slots are free
/// // The four live nodes move out of their sparse segment; their ids stay the same.
/// let report = rt.compact()?;
/// assert_eq!(report.nodes_moved, 4);
/// assert_eq!(report.segments_returned, 1);
/// for id in &ids[..4] {
///     assert_eq!(rt.read(*id)?, [1; 1000]);
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Segments chosen as victims.
    pub victims: u64,
    /// Live nodes moved to new slots.
    pub nodes_moved: u64,
    /// Bytes of those nodes.
    pub bytes_moved: u64,
    /// Nodes not moved: updated or retired by a transaction meanwhile (so already out of the
    /// victim, or soon free), or failing their checksum (reported by `verify` and fsck).
    pub nodes_skipped: u64,
    /// Wholly free segments whose blocks went back to the filesystem.
    pub segments_returned: u64,
    /// Bytes of those segments.
    pub bytes_returned: u64,
}

/// Progress of a pass, for tools that show it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactProgress {
    /// Live nodes the pass will try to move.
    pub nodes_total: u64,
    /// Nodes handled so far (moved or skipped).
    pub nodes_done: u64,
    /// Bytes moved so far.
    pub bytes_moved: u64,
}

/// A victim segment (a region of the large class).
#[derive(Debug, Clone, Copy)]
struct Victim {
    class: u8,
    segment: u32,
    /// Bytes of its live slots or extents: what moving it costs.
    used_bytes: u64,
    /// Bytes free in it: what moving it gains.
    free_bytes: u64,
}

/// M1: the victims of one pass, best first, within the byte budget.
///
/// Within a small class, moving can only free segments if the live slots fit in fewer of them:
/// the `ceil(live / slots per segment)` densest segments stay as destinations, and only the
/// others may become victims, so a pass never moves nodes that cannot free a segment; nor is the
/// segment the class allocates from (its free slots are being used), unless `dead_percent_min`
/// is 0 (a full compaction). A region
/// of the large class becomes a victim only if its extents fit the free runs that remain
/// ([`ExtentPlan`]), for the same reason.
fn choose_victims(inner: &Inner, options: &CompactionOptions) -> Vec<Victim> {
    let mut candidates = small_candidates(inner, options);
    candidates.extend(large_candidates(inner, options));
    // Benefit/cost: bytes freed per byte moved, best first (compared by cross product).
    candidates.sort_by(|a, b| {
        (u128::from(b.free_bytes) * u128::from(a.used_bytes))
            .cmp(&(u128::from(a.free_bytes) * u128::from(b.used_bytes)))
            .then(a.class.cmp(&b.class))
            .then(a.segment.cmp(&b.segment))
    });
    let mut plan = ExtentPlan::new(inner.alloc.region_extents());
    let mut budget = options.pass_bytes_max;
    let mut out = Vec::new();
    for v in candidates {
        if v.used_bytes > budget {
            continue;
        }
        if v.class == LARGE_CLASS && !plan.take(v.segment) {
            continue;
        }
        budget -= v.used_bytes;
        out.push(v);
    }
    out
}

/// Segments of the small classes that may be victims (M1).
fn small_candidates(inner: &Inner, options: &CompactionOptions) -> Vec<Victim> {
    let mut candidates = Vec::new();
    for class in 0..SMALL_CLASS_COUNT as u8 {
        let mut usage: Vec<_> = inner
            .alloc
            .segment_usage(class)
            .into_iter()
            .filter(|u| u.used_slots > 0)
            .collect();
        let Some(slots) = usage.first().map(|u| u64::from(u.slots)) else {
            continue;
        };
        // A one-slot segment is never fragmented.
        if slots < 2 {
            continue;
        }
        let live: u64 = usage.iter().map(|u| u64::from(u.used_slots)).sum();
        let keep = live.div_ceil(slots) as usize;
        // Densest first; the first `keep` stay.
        usage.sort_by(|a, b| {
            b.used_slots
                .cmp(&a.used_slots)
                .then(a.segment.cmp(&b.segment))
        });
        let slot = class_unit_bytes(class);
        // A full compaction (`dead_percent_min` 0) takes the fill segment too.
        let fill = (options.dead_percent_min > 0)
            .then(|| inner.alloc.fill_segment(class))
            .flatten();
        for u in usage.into_iter().skip(keep) {
            let used = u64::from(u.used_slots);
            let free = slots - used;
            // The fill segment is sparse only until the allocations in flight use its slots.
            if free * 100 < slots * u64::from(options.dead_percent_min) || fill == Some(u.segment) {
                continue;
            }
            candidates.push(Victim {
                class,
                segment: u.segment,
                used_bytes: used * slot,
                free_bytes: free * slot,
            });
        }
    }
    candidates
}

/// Regions of the large class whose free share is at least `dead_percent_min` (M1); whether
/// their extents fit elsewhere is the plan's to say.
fn large_candidates(inner: &Inner, options: &CompactionOptions) -> Vec<Victim> {
    inner
        .alloc
        .segment_usage(LARGE_CLASS)
        .into_iter()
        .filter(|u| u.used_slots > 0)
        .filter(|u| {
            let free = u64::from(u.slots - u.used_slots);
            free * 100 >= u64::from(u.slots) * u64::from(options.dead_percent_min)
        })
        .map(|u| Victim {
            class: LARGE_CLASS,
            segment: u.segment,
            used_bytes: u64::from(u.used_slots) * EXTENT_UNIT_BYTES,
            free_bytes: u64::from(u.slots - u.used_slots) * EXTENT_UNIT_BYTES,
        })
        .collect()
}

/// A free run in the plan's pool: `(units, region, index of the run in its region)`.
type PoolRun = (u32, u32, u32);

/// Where the extents of the large class's victims would go: the free runs of the regions that
/// stay, taken best fit as the allocator takes them (largest extent first). A region is a victim
/// only if all its extents fit; a region that receives extents in the plan is a destination and
/// never a victim. The moves themselves allocate as usual; writers racing the pass may take runs
/// the plan counted on, and then a move may add a region, as a small class may add a segment.
struct ExtentPlan {
    /// Free runs `(units, region, index)` of the regions open to allocation and not victims.
    pool: BTreeSet<PoolRun>,
    regions: HashMap<u32, RegionExtents>,
    destinations: HashSet<u32>,
}

impl ExtentPlan {
    fn new(regions: Vec<RegionExtents>) -> Self {
        let mut pool = BTreeSet::new();
        for r in regions.iter().filter(|r| !r.evacuating) {
            for (i, &units) in r.free_runs.iter().enumerate() {
                pool.insert((units, r.region, i as u32));
            }
        }
        ExtentPlan {
            pool,
            regions: regions.into_iter().map(|r| (r.region, r)).collect(),
            destinations: HashSet::new(),
        }
    }

    /// Plans emptying `region`: true, with the plan updated, if every extent of it fits the free
    /// runs of other regions; false, with the plan as it was, otherwise.
    fn take(&mut self, region: u32) -> bool {
        if self.destinations.contains(&region) {
            return false;
        }
        let Some(r) = self.regions.get(&region) else {
            return false;
        };
        let own: Vec<(u32, u32, u32)> = self
            .pool
            .iter()
            .copied()
            .filter(|&(_, reg, _)| reg == region)
            .collect();
        for run in &own {
            self.pool.remove(run);
        }
        let mut extents = r.extents.clone();
        extents.sort_unstable_by(|a, b| b.cmp(a));
        // Each run taken, and the rest of it put back: undone in reverse if a later extent
        // does not fit.
        let mut undo: Vec<(PoolRun, Option<PoolRun>)> = Vec::new();
        let mut fits = true;
        for e in extents {
            let Some(&run) = self.pool.range((e, 0, 0)..).next() else {
                fits = false;
                break;
            };
            self.pool.remove(&run);
            let rest = (run.0 > e).then_some((run.0 - e, run.1, run.2));
            if let Some(rest) = rest {
                self.pool.insert(rest);
            }
            undo.push((run, rest));
        }
        if !fits {
            for (run, rest) in undo.into_iter().rev() {
                if let Some(rest) = rest {
                    self.pool.remove(&rest);
                }
                self.pool.insert(run);
            }
            self.pool.extend(own);
            return false;
        }
        self.destinations
            .extend(undo.iter().map(|((_, reg, _), _)| *reg));
        true
    }
}

/// Runs one pass (M1–M6) with `options`, reporting progress to `progress`.
pub(crate) fn compact(
    inner: &Inner,
    options: &CompactionOptions,
    progress: &mut dyn FnMut(CompactProgress),
) -> Result<CompactReport> {
    let _one = inner.compaction_lock.lock();
    inner.poison.check()?;
    let span = tracing::info_span!("compaction");
    let _enter = span.enter();
    let mut report = CompactReport::default();

    let victims = choose_victims(inner, options);
    report.victims = victims.len() as u64;
    let mut by_class: HashMap<u8, Vec<u32>> = HashMap::new();
    for v in &victims {
        by_class.entry(v.class).or_default().push(v.segment);
    }
    // M2.
    for (class, segments) in &by_class {
        inner.alloc.begin_evacuation(*class, segments);
    }
    let moved = move_nodes(inner, options, &by_class, &mut report, progress);
    // M5.
    for (class, segments) in &by_class {
        inner.alloc.end_evacuation(*class, segments);
    }
    moved?;
    // Every old slot of a moved node that can be freed now is, before M6 looks for empty
    // segments (a reclamation another thread is running is waited for, not skipped).
    inner.engine().reclaim_ready_now();
    // M6.
    let returned = return_free_segments(inner, 0)?;
    report.segments_returned = returned.len() as u64;
    report.bytes_returned = returned.iter().map(|s| s.len).sum();
    Counters::add(&inner.counters.compactions, 1);
    tracing::info!(?report, "compaction pass");
    Ok(report)
}

/// M3–M4.
fn move_nodes(
    inner: &Inner,
    options: &CompactionOptions,
    victims: &HashMap<u8, Vec<u32>>,
    report: &mut CompactReport,
    progress: &mut dyn FnMut(CompactProgress),
) -> Result<()> {
    if victims.is_empty() {
        return Ok(());
    }
    // M3.
    let mut listed: Vec<(NodeId, Version)> = Vec::new();
    {
        let guard = crossbeam_epoch::pin();
        inner.table.for_each(&guard, |id, view| {
            if view.state != EntryState::Live {
                return;
            }
            let Some(v) = view.current else { return };
            let in_victim = victims.get(&v.location.class).is_some_and(|segs| {
                inner
                    .alloc
                    .segment_of(v.location)
                    .is_some_and(|s| segs.contains(&s))
            });
            if in_victim {
                listed.push((id, v));
            }
        });
    }
    let mut done = CompactProgress {
        nodes_total: listed.len() as u64,
        ..CompactProgress::default()
    };
    progress(done);
    let started = std::time::Instant::now();
    for batch in listed.chunks(options.batch_nodes.max(1)) {
        // Throttle: no faster than `bytes_per_sec_max` on average over the pass.
        if let Some(rate) = options.bytes_per_sec_max {
            let due = std::time::Duration::from_secs_f64(done.bytes_moved as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let (moved, bytes, skipped) = move_batch(inner, batch)?;
        report.nodes_moved += moved;
        report.bytes_moved += bytes;
        report.nodes_skipped += skipped;
        Counters::add(&inner.counters.nodes_moved, moved);
        Counters::add(&inner.counters.bytes_moved, bytes);
        done.nodes_done += batch.len() as u64;
        done.bytes_moved += bytes;
        progress(done);
    }
    Ok(())
}

/// M4 for one batch: returns (nodes moved, bytes moved, nodes skipped).
fn move_batch(inner: &Inner, batch: &[(NodeId, Version)]) -> Result<(u64, u64, u64)> {
    // Pinned at the newest visible epoch: every version listed is visible at it or was
    // superseded later, so none of their slots is freed while this batch copies it.
    let _pin = inner.snapshots.pin_with(|| inner.visible.epoch());
    let mut staged = Staged::default();
    let mut skipped = 0;
    {
        let guard = crossbeam_epoch::pin();
        for (id, old) in batch {
            // Still the current version? (A transaction may have updated or retired it.)
            match inner.table.get(*id, &guard) {
                Ok(v) if v == *old => {}
                _ => {
                    skipped += 1;
                    continue;
                }
            }
            // Copied out, so the guard below does not keep windows evicted by the write mapped.
            let bytes = match inner.verified(old, &guard) {
                Ok(b) => b.to_vec(),
                Err(e) => {
                    tracing::warn!(%id, %e, "compaction skips a node that fails its checksum");
                    skipped += 1;
                    continue;
                }
            };
            let location =
                match inner
                    .files
                    .allocate(&inner.alloc, old.location.class, u64::from(old.len))
                {
                    Ok(l) => l,
                    Err(e) => {
                        release(inner, &staged);
                        return Err(e);
                    }
                };
            if let Err(e) = inner.files.write(location, &bytes) {
                inner.alloc.release(location);
                release(inner, &staged);
                return Err(e);
            }
            staged.nodes.push(StagedNode {
                id: *id,
                version: Version { location, ..*old },
                is_new: false,
                base_birth: Some(old.birth),
                small_copy: None,
                keep_birth: true,
            });
        }
    }
    // The moved bytes are made durable here, by the compactor, so the flush that carries the
    // batch's record (F2) has no data to sync for it and other commits do not wait for that.
    let written = inner.files.write_generation();
    if let Err(e) = inner
        .data_sync
        .sync_through(written, &inner.files, &inner.counters)
    {
        release(inner, &staged);
        return Err(e);
    }
    staged.data_durable = true;
    loop {
        if staged.nodes.is_empty() {
            return Ok((0, 0, skipped));
        }
        match inner.engine().commit(&staged, CommitPolicy::Strict) {
            Ok(_) => {
                let bytes = staged.nodes.iter().map(|n| u64::from(n.version.len)).sum();
                return Ok((staged.nodes.len() as u64, bytes, skipped));
            }
            // Updated or retired since listed: drop it from the batch and commit the rest.
            Err(Error::Conflict { id }) => {
                let Some(i) = staged.nodes.iter().position(|n| n.id == id) else {
                    release(inner, &staged);
                    return Err(Error::Conflict { id });
                };
                let node = staged.nodes.swap_remove(i);
                inner.alloc.release(node.version.location);
                skipped += 1;
            }
            Err(e) => {
                release(inner, &staged);
                return Err(e);
            }
        }
    }
}

/// Frees the new slots of a batch that did not commit (unless the runtime is poisoned: then
/// the commit may be applied in memory, and nothing is freed; reopening recovers from disk).
fn release(inner: &Inner, staged: &Staged) {
    if inner.poison.is_poisoned() {
        return;
    }
    for n in &staged.nodes {
        inner.alloc.release(n.version.location);
    }
}

/// M6: punches out every wholly free segment but `spare` per class of small segments, and every
/// free run of the large class not punched since it was freed; returns them.
pub(crate) fn return_free_segments(inner: &Inner, spare: usize) -> Result<Vec<EmptySegment>> {
    let returned = inner
        .alloc
        .return_empty(usize::MAX, spare, |seg| inner.files.punch(seg))?;
    Counters::add(&inner.counters.segments_returned, returned.len() as u64);
    Ok(returned)
}

#[cfg(test)]
#[path = "compaction_tests.rs"]
mod compaction_tests;
