//! The commit engine: ordering, durability per policy, visibility and reclamation.
//!
//! Invariants (the numbered steps they protect are in `design/DURABILITY.md` §6):
//! 1. Records reach the log file in commit-epoch order, and a record is appended only once every
//!    node it references without a payload is durable in the data files. So the log never holds
//!    a record whose bytes a crash could lose, and a replayed prefix is a prefix of commits.
//! 2. Every record waits in the buffer, in epoch order, until a flush appends it; STRICT and
//!    BALANCED commits wait for a flush that covers them before they return, EVENTUAL ones are
//!    flushed by the background thread or the next flush. One leader flushes at a time
//!    (`group_flush.rs`), under `append_order` (always taken before the commit lock), taking
//!    the whole buffer, so records reach the log in epoch order. A commit reserves its log space
//!    before it is applied, so a full disk fails the commit cleanly instead of a later flush.
//! 3. A commit is applied to the object table under the commit lock, after its record was
//!    buffered and its log space reserved (a full disk fails the commit with nothing applied).
//! 4. Snapshots see an epoch only once it is visible: STRICT/BALANCED commits once durable,
//!    EVENTUAL commits once applied (visibility never passes an epoch a reader could miss).
//! 5. A superseded or retired version's slot is freed only when its superseding epoch is durable
//!    and no registered snapshot is older than that epoch. The limit reads the visible epoch
//!    before it scans the snapshot registry, which is what keeps it behind a snapshot being
//!    taken (`snapshots.rs`, invariants 3 and 4); publishing takes no registry lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::durable_wait::DurableWaiters;
use super::group_flush::{GroupFlush, Role};
use super::options::CommitPolicy;
use super::reclaim::Reclamation;
use super::record::{NodeVersionRef, OpRef, encode_record};
use super::snapshots::SnapshotRegistry;
use super::stats::Counters;
use crate::alloc::{DataFiles, SegmentAllocator};
use crate::error::{Error, Result};
use crate::log::{DeltaLog, frame_bytes};
use crate::meta::RootCatalog;
use crate::object_table::{NodeId, ObjectTable, Version};
use crate::poison::Poison;

/// Most buffered records one log write carries (bounds the size of that write's buffer).
const APPEND_BATCH_FRAMES_MAX: usize = 4096;

/// What snapshots see: the newest visible epoch and the roots as of it. Publishers are serialised
/// by the commit lock; readers take no lock, and read the two as a matching pair
/// ([`Visible::epoch_and_roots`]). The roots are replaced only when a commit changed them.
#[derive(Debug)]
pub(crate) struct Visible {
    epoch: AtomicU64,
    roots: ArcSwap<RootsAt>,
}

/// A root catalog and the visible epoch it was published with: it is the catalog of every
/// visible epoch from `since` until the next catalog's `since`.
#[derive(Debug)]
struct RootsAt {
    since: u64,
    catalog: Arc<RootCatalog>,
}

impl Visible {
    pub(crate) fn new(epoch: u64, roots: Arc<RootCatalog>) -> Self {
        Visible {
            epoch: AtomicU64::new(epoch),
            roots: ArcSwap::from_pointee(RootsAt {
                since: epoch,
                catalog: roots,
            }),
        }
    }

    /// The newest visible epoch.
    #[inline]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The newest visible epoch and the roots as of it.
    ///
    /// `publish` stores the roots before the epoch, so a reader that read epoch `e` then sees the
    /// catalog of `e` or a newer one; a newer one has `since > e` (its epoch store is under way),
    /// and the reader looks again. A catalog with `since <= e` is the newest one published, so no
    /// roots changed between it and `e`: it is the catalog as of `e`.
    pub(crate) fn epoch_and_roots(&self) -> (u64, Arc<RootCatalog>) {
        loop {
            let epoch = self.epoch();
            let roots = self.roots.load();
            if roots.since <= epoch {
                return (epoch, Arc::clone(&roots.catalog));
            }
            std::hint::spin_loop();
        }
    }

    /// The node a root names, as of the newest visible epoch.
    pub(crate) fn root(&self, name: &str) -> Option<u64> {
        loop {
            let epoch = self.epoch();
            let roots = self.roots.load();
            if roots.since <= epoch {
                return roots.catalog.get(name);
            }
            std::hint::spin_loop();
        }
    }

    /// Makes `epoch` visible with `roots`: the roots first (if they changed), then the epoch.
    /// Caller holds the commit lock, which serialises publishers.
    fn publish(&self, epoch: u64, roots: &Arc<RootCatalog>) {
        if !Arc::ptr_eq(&self.roots.load().catalog, roots) {
            self.roots.store(Arc::new(RootsAt {
                since: epoch,
                catalog: roots.clone(),
            }));
        }
        self.epoch.store(epoch, Ordering::Release);
    }
}

/// A version a commit superseded or a node it retired, waiting to be freed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retirement {
    pub(crate) epoch: u64,
    pub(crate) id: NodeId,
    pub(crate) whole_node: bool,
    /// Bytes of the version superseded (of the current one, for a retired node): what the
    /// reclamation queue holds of the data files ([`Reclamation`]'s bounds).
    pub(crate) bytes: u32,
}

/// State changed only under the commit lock.
#[derive(Debug)]
pub(crate) struct CommitState {
    pub(crate) next_epoch: u64,
    pub(crate) roots: Arc<RootCatalog>,
    /// Records (of every policy) not yet in the log file, in epoch order.
    pub(crate) buffer: Vec<(u64, Vec<u8>)>,
    /// The data files (class, number) holding node bytes that buffered records reference and
    /// that are not yet durable: the next flush syncs these files only (F2).
    pub(crate) buffer_data_files: Vec<(u8, u32)>,
    /// Applied STRICT/BALANCED commits not yet visible: epoch and roots after it.
    pub(crate) unpublished: VecDeque<(u64, Arc<RootCatalog>)>,
    /// EVENTUAL commits not yet durable, oldest first, with when they were applied: an EVENTUAL
    /// commit that finds the oldest one older than `eventual_flush_interval` flushes before it
    /// returns (C4), so no commit stays volatile longer than that while commits return.
    pub(crate) volatile: VecDeque<(u64, Instant)>,
}

/// Groups data-file syncs the way the log groups log syncs: a sync covers every change the data
/// files counted (`DataFiles::write_generation`) before it started. The data files count every
/// write themselves, so no writer (a transaction, compaction, recovery) can leave one out.
#[derive(Debug, Default)]
pub(crate) struct DataSync {
    /// The write generation the last completed sync covered.
    synced: Mutex<u64>,
}

impl DataSync {
    /// Returns once every change the data files counted up to generation `generation` is
    /// durable (one sync serves many callers). Pass `files.write_generation()` read after the
    /// writes to cover.
    pub(crate) fn sync_through(
        &self,
        generation: u64,
        files: &DataFiles,
        counters: &Counters,
    ) -> Result<()> {
        let mut synced = self.synced.lock();
        if *synced >= generation {
            return Ok(());
        }
        // Read before syncing: every change counted up to `target` marked its file dirty first.
        let target = files.write_generation();
        files.sync_created()?;
        let synced_files = files.sync_written()?;
        *synced = target;
        Counters::add(&counters.data_syncs, 1);
        Counters::add(&counters.data_file_syncs, synced_files);
        Ok(())
    }

    /// Makes every write so far to the data files `which` durable, and the directory entries of
    /// created files. Serialised with `sync_through`, so a file whose dirty flag another sync
    /// cleared has had that sync's `fdatasync` finish.
    pub(crate) fn sync_files(
        &self,
        which: &[(u8, u32)],
        files: &DataFiles,
        counters: &Counters,
    ) -> Result<()> {
        let _synced = self.synced.lock();
        files.sync_created()?;
        let synced_files = files.sync_files(which)?;
        Counters::add(&counters.data_syncs, 1);
        Counters::add(&counters.data_file_syncs, synced_files);
        Ok(())
    }
}

/// A node version a transaction wrote, ready to commit.
#[derive(Debug, Clone)]
pub(crate) struct StagedNode {
    pub(crate) id: NodeId,
    pub(crate) version: Version,
    pub(crate) is_new: bool,
    /// Birth of the version the transaction replaced (for conflict detection); `None` for new.
    pub(crate) base_birth: Option<u64>,
    /// Where the node's bytes are in [`Staged::copies`], kept only when small enough to travel
    /// in the record.
    pub(crate) small_copy: Option<std::ops::Range<usize>>,
    /// A compaction move: the new version keeps `base_birth` as its birth (same bytes, new
    /// slot), so transactions that read or wrote the node before the move do not conflict.
    pub(crate) keep_birth: bool,
}

/// Root catalog changes of a transaction.
#[derive(Debug, Clone)]
pub(crate) enum RootChange {
    Set(String, NodeId),
    Remove(String),
}

/// Everything a transaction hands to commit.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    pub(crate) nodes: Vec<StagedNode>,
    /// The copies of small nodes' bytes that travel in the record, back to back: one buffer per
    /// transaction rather than an allocation per node.
    pub(crate) copies: Vec<u8>,
    pub(crate) retires: Vec<(NodeId, u64)>,
    /// Nodes only read: (id, birth of the version read), validated at commit.
    pub(crate) reads: Vec<(NodeId, u64)>,
    pub(crate) roots: Vec<RootChange>,
    /// The caller made every node's bytes durable before committing (compaction does, so its
    /// moves do not add a data sync to the flushes other commits wait for).
    pub(crate) data_durable: bool,
}

impl Staged {
    /// The bytes of `n` that travel in the record when at most `payload_max` may: the one rule
    /// both the record's payloads and the data files the flush syncs (every node without one)
    /// come from, so no node can have neither.
    pub(crate) fn payload(&self, n: &StagedNode, payload_max: usize) -> Option<&[u8]> {
        (n.small_copy.clone())
            .and_then(|r| self.copies.get(r))
            .filter(|b| b.len() <= payload_max)
    }
}

/// The parts of the runtime the engine works on.
pub(crate) struct Engine<'a> {
    pub(crate) table: &'a ObjectTable,
    pub(crate) alloc: &'a SegmentAllocator,
    pub(crate) files: &'a DataFiles,
    pub(crate) log: &'a DeltaLog,
    pub(crate) commit: &'a Mutex<CommitState>,
    pub(crate) append_order: &'a Mutex<()>,
    /// Frame bytes of records buffered or being appended but not yet in the log file.
    pub(crate) unappended_frame_bytes: &'a AtomicU64,
    pub(crate) data_sync: &'a DataSync,
    pub(crate) group: &'a GroupFlush,
    pub(crate) visible: &'a Visible,
    pub(crate) durable_epoch: &'a AtomicU64,
    pub(crate) durable_waiters: &'a DurableWaiters,
    pub(crate) snapshots: &'a SnapshotRegistry,
    pub(crate) reclaim: &'a Reclamation,
    pub(crate) poison: &'a Poison,
    pub(crate) counters: &'a Counters,
    pub(crate) payload_bytes_max: usize,
    /// How long an EVENTUAL commit may stay volatile (`eventual_flush_interval`).
    pub(crate) eventual_bound: Duration,
    /// Most record bytes buffered before an EVENTUAL commit flushes (`eventual_buffer_bytes_max`).
    pub(crate) eventual_buffer_bytes_max: u64,
}

fn conflict(id: NodeId) -> Error {
    Error::Conflict { id }
}

impl Engine<'_> {
    /// Fails with `Poisoned` (after recording `e` as the cause) for errors that leave durable
    /// state unknown.
    fn poison_with(&self, e: Error) -> Error {
        if matches!(e, Error::Poisoned { .. }) {
            return e;
        }
        self.poison.poison(&e);
        e
    }

    /// Commits `staged` under `policy`; returns the commit epoch once the policy holds.
    pub(crate) fn commit(&self, staged: &Staged, policy: CommitPolicy) -> Result<u64> {
        self.poison.check()?;
        let payload_max = match policy {
            CommitPolicy::Strict => 0,
            CommitPolicy::Balanced | CommitPolicy::Eventual => self.payload_bytes_max,
        };
        // The files of the nodes whose bytes do not travel in the record: F2 syncs them.
        let data_files: Vec<(u8, u32)> = if staged.data_durable {
            Vec::new()
        } else {
            staged
                .nodes
                .iter()
                .filter(|n| staged.payload(n, payload_max).is_none())
                .map(|n| (n.version.location.class, n.version.location.file))
                .collect()
        };
        let mut st = self.commit.lock();
        self.poison.check()?;
        // Step C1: validate (first committer wins), take the epoch, encode.
        let guard = crossbeam_epoch::pin();
        for n in staged.nodes.iter().filter(|n| !n.is_new) {
            let current = self.table.get(n.id, &guard).map_err(|_| conflict(n.id))?;
            if Some(current.birth) != n.base_birth {
                return Err(conflict(n.id));
            }
        }
        let unchanged = |(id, base): &(NodeId, u64)| {
            let current = self.table.get(*id, &guard).map_err(|_| conflict(*id))?;
            if current.birth == *base {
                Ok(current)
            } else {
                Err(conflict(*id))
            }
        };
        // The retired versions' lengths, for the reclamation queue's byte count (C3).
        let retired_bytes: Vec<u32> = (staged.retires.iter())
            .map(|r| unchanged(r).map(|v| v.len))
            .collect::<Result<_>>()?;
        for r in &staged.reads {
            unchanged(r)?;
        }
        // Everything that can refuse the commit is checked before its record exists: a record
        // in the log is a commit (recovery replays it), so no error may follow the append
        // without poisoning.
        let mut roots = st.roots.clone();
        if !staged.roots.is_empty() {
            let mut next = (*roots).clone();
            for r in &staged.roots {
                match r {
                    RootChange::Set(name, id) => {
                        next.insert(name, id.raw())?;
                    }
                    RootChange::Remove(name) => {
                        next.remove(name);
                    }
                }
            }
            roots = Arc::new(next);
        }
        let epoch = st.next_epoch;
        let ops: Vec<OpRef<'_>> = staged
            .nodes
            .iter()
            .map(|n| {
                let payload = staged.payload(n, payload_max);
                let v = NodeVersionRef {
                    id: n.id,
                    location: n.version.location,
                    len: n.version.len,
                    crc32c: n.version.crc32c,
                    kind: n.version.kind,
                    payload,
                };
                if n.is_new {
                    OpRef::New(v)
                } else {
                    OpRef::Update(v)
                }
            })
            .chain(staged.retires.iter().map(|(id, _)| OpRef::Retire(*id)))
            .chain(staged.roots.iter().map(|r| match r {
                RootChange::Set(name, id) => OpRef::SetRoot(name, *id),
                RootChange::Remove(name) => OpRef::DelRoot(name),
            }))
            .collect();
        let body = encode_record(epoch, &ops)?;
        let body_bytes = body.len() as u64;
        let frame_max = self.log.options().frame_body_bytes_max as usize;
        if body.len() > frame_max {
            return Err(Error::InvalidArgument(format!(
                "the commit record is {} bytes, more than a log frame holds ({frame_max}); split \
                 the transaction or lower balanced_payload_bytes_max",
                body.len()
            )));
        }

        // Step C2: reserve the log space every record not yet appended will take, this one
        // included, so the append that follows cannot fail for lack of space: a full disk fails
        // the commit here, with nothing applied and nothing poisoned. Then the record joins the
        // buffer, in epoch order.
        let frame = frame_bytes(body.len() as u32);
        let unappended = self.unappended_frame_bytes.load(Ordering::Acquire);
        self.log.reserve(unappended + frame)?;
        self.unappended_frame_bytes
            .fetch_add(frame, Ordering::AcqRel);
        st.buffer.push((epoch, body));
        for f in data_files {
            if !st.buffer_data_files.contains(&f) {
                st.buffer_data_files.push(f);
            }
        }

        Counters::add(&self.counters.log_bytes_appended, body_bytes);

        // Step C3: apply in memory. The checks above make these infallible; if one failed
        // anyway, memory and log disagree, so the runtime stops accepting writes.
        let mut retired = Vec::with_capacity(staged.nodes.len() + staged.retires.len());
        for n in &staged.nodes {
            let birth = match (n.keep_birth, n.base_birth) {
                (true, Some(base)) => base,
                _ => epoch,
            };
            let v = Version { birth, ..n.version };
            if n.is_new {
                self.table
                    .publish(n.id, v)
                    .map_err(|e| self.poison_with(e))?;
            } else {
                let applied = if n.keep_birth {
                    self.table.relocate(n.id, v, epoch, &guard)
                } else {
                    self.table.update(n.id, v, &guard)
                };
                let superseded = applied.map_err(|e| self.poison_with(e))?;
                retired.push(Retirement {
                    epoch,
                    id: n.id,
                    whole_node: false,
                    bytes: superseded.map_or(0, |p| p.len),
                });
            }
        }
        for ((id, _), bytes) in staged.retires.iter().zip(retired_bytes) {
            self.table
                .retire(*id, epoch)
                .map_err(|e| self.poison_with(e))?;
            retired.push(Retirement {
                epoch,
                id: *id,
                whole_node: true,
                bytes,
            });
        }
        st.roots = roots.clone();
        st.next_epoch += 1;
        let mut overdue = false;
        if policy == CommitPolicy::Eventual {
            self.publish_locked(&mut st, epoch, Some(roots));
            let now = Instant::now();
            let buffered = self.unappended_frame_bytes.load(Ordering::Acquire);
            overdue = buffered > self.eventual_buffer_bytes_max
                || st
                    .volatile
                    .front()
                    .is_some_and(|(_, at)| now.duration_since(*at) > self.eventual_bound);
            st.volatile.push_back((epoch, now));
        } else {
            st.unpublished.push_back((epoch, roots));
        }
        drop(st);
        // Not pinned through the flush wait below: a thread pinned across an fsync holds the
        // epoch back, so no window evicted meanwhile is unmapped and no unlinked version freed
        // (`tests/regression_windows_unbounded_under_a_writer.rs`).
        drop(guard);
        self.group.note_buffered();
        let behind = !retired.is_empty() && self.reclaim.queue(retired);

        // STRICT/BALANCED: wait for a flush that covers this commit, leading one if none is in
        // flight (F0–F5). One flush makes the node bytes of every buffered record durable (if
        // any needs it), appends them all with one write and syncs the log.
        // C4: an EVENTUAL commit waits too when the oldest volatile commit is past its bound
        // (the background flusher fell behind), so none stays volatile longer while commits
        // return, or when the buffer holds too much.
        if policy != CommitPolicy::Eventual || overdue {
            self.flush_through(Some(epoch))?;
        }
        Counters::add(&self.counters.commits, 1);
        // The flush that made the retirements durable raised the reclaimer; a committer frees
        // them itself only when the reclaimer fell behind (`reclaim.rs`).
        if behind {
            self.reclaim_ready();
        }
        Ok(epoch)
    }

    /// Appends every buffered record (F2–F3). Caller holds `append_order` and then the commit
    /// lock (the checkpoint's K1).
    pub(crate) fn flush_buffer_locked(&self, st: &mut CommitState) -> Result<()> {
        let bodies = std::mem::take(&mut st.buffer);
        let data_files = std::mem::take(&mut st.buffer_data_files);
        self.append_buffered(bodies, &data_files)
    }

    /// Steps F2–F3: syncs the data files holding node bytes the buffered records reference
    /// and need durable (none when every node travels in its record), then appends the records.
    /// Caller holds `append_order`, taken before it took the records out of the buffer. Failure
    /// poisons: those commits are applied in memory, and some were acknowledged.
    fn append_buffered(&self, bodies: Vec<(u64, Vec<u8>)>, data_files: &[(u8, u32)]) -> Result<()> {
        if bodies.is_empty() {
            return Ok(());
        }
        if !data_files.is_empty() {
            self.data_sync
                .sync_files(data_files, self.files, self.counters)
                .map_err(|e| self.poison_with(e))?;
        }
        // One write for the whole batch, in frames the log can hold. The space was reserved at
        // commit (step C2), so a failure here is an I/O error, and it poisons.
        let bodies: Vec<Vec<u8>> = bodies.into_iter().map(|(_, body)| body).collect();
        for chunk in bodies.chunks(APPEND_BATCH_FRAMES_MAX) {
            self.log
                .append_batch(chunk)
                .map_err(|e| self.poison_with(e))?;
            let bytes: u64 = chunk.iter().map(|b| frame_bytes(b.len() as u32)).sum();
            self.unappended_frame_bytes
                .fetch_sub(bytes, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Makes every commit so far durable; returns the durable epoch.
    pub(crate) fn sync(&self) -> Result<u64> {
        let durable = self.flush_through(None)?;
        // What waited only for durability (a snapshot dropped since) is freed before this
        // returns, so its caller sees the space back.
        self.reclaim_ready_now();
        Ok(durable)
    }

    /// Steps F1–F5: returns once every commit up to `until` (everything committed so far with
    /// `None`) is durable and visible; returns the durable epoch.
    ///
    /// One leader at a time flushes (see `group_flush.rs`): it takes the whole buffer, makes the
    /// records' node bytes durable if any needs it, appends them with one write, syncs the log
    /// and publishes; committers that buffered meanwhile follow it or lead the next flush. So a
    /// flush costs at most one data sync and one log sync however many commits it carries.
    pub(crate) fn flush_through(&self, until: Option<u64>) -> Result<u64> {
        self.poison.check()?;
        let target = match until {
            Some(epoch) => epoch,
            None => self.commit.lock().next_epoch - 1,
        };
        loop {
            let is_durable = || self.durable_epoch.load(Ordering::Acquire) >= target;
            match self.group.join(target, is_durable) {
                Role::Covered => {
                    // The covering flush either published `target` as durable or poisoned.
                    self.poison.check()?;
                    let durable = self.durable_epoch.load(Ordering::Acquire);
                    if durable >= target {
                        // Made durable by a checkpoint, which may not have published it yet:
                        // a committer always sees its own commit in the next snapshot.
                        if self.visible.epoch() < target {
                            self.mark_durable(durable);
                        }
                        return Ok(durable);
                    }
                }
                Role::Retry => self.poison.check()?,
                Role::Lead(gen_) => {
                    let started = std::time::Instant::now();
                    let flushed = self.lead_flush(gen_);
                    self.group.finish(gen_, started);
                    flushed?;
                    // What the flush made durable can be freed: the reclaimer does it.
                    self.reclaim.raise_if_due();
                }
            }
        }
    }

    /// F1–F5 as the leader of flush `gen_`: takes the buffer, syncs the data files if a record
    /// needs it and appends (under the order lock), syncs the log, publishes. Returns the epoch
    /// now durable. Failure poisons (the commits it carried are applied in memory).
    fn lead_flush(&self, gen_: u64) -> Result<u64> {
        let order = self.append_order.lock();
        let (bodies, data_files, epoch) = {
            let mut st = self.commit.lock();
            let bodies = std::mem::take(&mut st.buffer);
            let data_files = std::mem::take(&mut st.buffer_data_files);
            (bodies, data_files, st.next_epoch - 1)
        };
        self.group.set_covers(gen_, epoch);
        self.append_buffered(bodies, &data_files)?;
        let pos = self.log.written_position();
        drop(order);
        self.log.sync_to(pos).map_err(|e| self.poison_with(e))?;
        // Counted before the epoch is published, so a waiter woken by it sees the flush in the
        // stats (`tests/runtime_wait_durable.rs` read them in between once).
        Counters::add(&self.counters.flushes, 1);
        self.mark_durable(epoch);
        Ok(epoch)
    }

    /// Records that every commit up to `epoch` is durable and makes them visible.
    pub(crate) fn mark_durable(&self, epoch: u64) {
        self.durable_epoch.fetch_max(epoch, Ordering::AcqRel);
        // `durable_wait.rs`, invariant 1.
        self.durable_waiters.notify();
        let mut st = self.commit.lock();
        while st.volatile.front().is_some_and(|(e, _)| *e <= epoch) {
            st.volatile.pop_front();
        }
        self.publish_locked(&mut st, epoch, None);
    }

    /// Makes epochs up to `epoch` visible. `roots` are the roots after `epoch` when the caller
    /// knows them (EVENTUAL apply); otherwise they come from the unpublished queue.
    fn publish_locked(&self, st: &mut CommitState, epoch: u64, roots: Option<Arc<RootCatalog>>) {
        let mut latest: Option<(u64, Arc<RootCatalog>)> = None;
        while st.unpublished.front().is_some_and(|(e, _)| *e <= epoch) {
            latest = st.unpublished.pop_front();
        }
        let (new_epoch, new_roots) = match (roots, latest) {
            (Some(r), _) => (epoch, r),
            (None, Some((e, r))) => (e, r),
            (None, None) => return,
        };
        // No registry lock: a pin reads the visible epoch inside its stripe's critical section,
        // which is what keeps reclamation behind it (`snapshots.rs`, invariant 4).
        if new_epoch > self.visible.epoch() {
            self.visible.publish(new_epoch, &new_roots);
        }
    }

    /// True when `id`'s handle has moved on (its tag changed, or it is free).
    pub(super) fn is_stale(&self, id: NodeId, guard: &crossbeam_epoch::Guard) -> bool {
        self.table
            .view(id, guard)
            .is_ok_and(|v| v.tag != id.tag() || v.state == crate::object_table::EntryState::Free)
    }
}
