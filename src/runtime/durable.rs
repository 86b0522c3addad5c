//! `DurableRuntime`: the store a host data structure lives on.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_epoch::Guard;
use parking_lot::{Condvar, Mutex};

use super::claims::{RootClaim, RootClaims};
use super::compaction::{CompactProgress, CompactReport};
use super::durable_wait::DurableWaiters;
use super::engine::{CommitState, DataSync, Engine, Visible};
use super::group_flush::GroupFlush;
use super::options::{CommitPolicy, CompactionOptions, RuntimeOptions};
use super::reclaim::Reclamation;
use super::recovery::RecoveryReport;
use super::snapshot::{OwnedSnapshot, Snapshot};
use super::snapshots::SnapshotRegistry;
use super::stats::{Counters, RuntimeStats};
use super::txn::WriteTxn;
use crate::alloc::{
    CLASS_COUNT, ClassSpace, DataFiles, ExtentSpace, SegmentAllocator, SegmentUsage,
};
use crate::codec::crc32c;
use crate::error::{CorruptionKind, Error, Result};
use crate::io::{LockGuard, OsStorage, Storage};
use crate::log::DeltaLog;
use crate::meta::MetaStore;
use crate::object_table::{NodeId, ObjectTable, Version};
use crate::poison::Poison;
use crate::resolve::Resolved;

/// Wholly free segments per class (of 1 MiB segments) that the background pass leaves
/// reserved: steady churn reuses them instead of punching and reserving again.
const SPARE_SEGMENTS: usize = 1;

/// Everything a runtime shares between its handles, transactions and background thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) dir: PathBuf,
    pub(crate) options: RuntimeOptions,
    pub(crate) _lock: LockGuard,
    pub(crate) meta: MetaStore,
    pub(crate) table: ObjectTable,
    pub(crate) alloc: SegmentAllocator,
    pub(crate) files: DataFiles,
    pub(crate) log: DeltaLog,
    pub(crate) commit: Mutex<CommitState>,
    /// Held for every log append, taken while holding `commit` (see `engine.rs`, invariant 2).
    pub(crate) append_order: Mutex<()>,
    /// See `Engine::unappended_frame_bytes`.
    pub(crate) unappended_frame_bytes: AtomicU64,
    pub(crate) data_sync: DataSync,
    pub(crate) group_flush: GroupFlush,
    pub(crate) visible: Visible,
    pub(crate) durable_epoch: AtomicU64,
    /// Threads in `wait_durable`, woken when the durable epoch grows or the runtime poisons.
    pub(crate) durable_waiters: Arc<DurableWaiters>,
    pub(crate) snapshots: SnapshotRegistry,
    pub(crate) reclaim: Reclamation,
    pub(crate) poison: Poison,
    pub(crate) counters: Counters,
    /// One checkpoint at a time.
    pub(crate) checkpoint_lock: Mutex<()>,
    /// One compaction pass at a time.
    pub(crate) compaction_lock: Mutex<()>,
    pub(crate) last_compaction: Mutex<Instant>,
    pub(crate) last_checkpoint: Mutex<Instant>,
    /// Log bytes appended when the last checkpoint started.
    pub(crate) log_bytes_at_checkpoint: AtomicU64,
    /// The epoch of the checkpoint in force (recovered, or the last one written): a checkpoint
    /// by time is skipped while nothing was committed after it.
    pub(crate) checkpointed_epoch: AtomicU64,
    pub(crate) checkpoint_wanted: AtomicBool,
    pub(crate) stop: Mutex<bool>,
    pub(crate) wake: Condvar,
}

impl Inner {
    pub(crate) fn engine(&self) -> Engine<'_> {
        Engine {
            table: &self.table,
            alloc: &self.alloc,
            files: &self.files,
            log: &self.log,
            commit: &self.commit,
            append_order: &self.append_order,
            unappended_frame_bytes: &self.unappended_frame_bytes,
            data_sync: &self.data_sync,
            group: &self.group_flush,
            visible: &self.visible,
            durable_epoch: &self.durable_epoch,
            durable_waiters: &self.durable_waiters,
            snapshots: &self.snapshots,
            reclaim: &self.reclaim,
            poison: &self.poison,
            counters: &self.counters,
            payload_bytes_max: self.options.balanced_payload_bytes_max,
            eventual_bound: self.options.eventual_flush_interval,
            eventual_buffer_bytes_max: self.options.eventual_buffer_bytes_max,
        }
    }

    /// Borrows a version's bytes after checking them against the CRC32C its reference carries,
    /// so a slot that was never written, or holds another node's bytes, is reported.
    pub(crate) fn verified<'g>(&'g self, v: &Version, guard: &'g Guard) -> Result<&'g [u8]> {
        let bytes = self.files.read(v.location, v.len as usize, guard)?;
        let actual = crc32c(bytes);
        if actual != v.crc32c {
            return Err(Error::corruption(
                self.dir.join(crate::alloc::data_file_name(
                    v.location.class,
                    v.location.file,
                )),
                v.location.offset,
                CorruptionKind::ChecksumMismatch {
                    expected: v.crc32c,
                    actual,
                },
            ));
        }
        Ok(bytes)
    }

    /// `resolved`'s bytes (the version of `id` a snapshot at `epoch` sees) after checking them
    /// against the CRC32C its reference carries.
    #[inline]
    pub(crate) fn checked<'g>(
        &self,
        id: NodeId,
        epoch: u64,
        resolved: Resolved<'g>,
        guard: &Guard,
    ) -> Result<&'g [u8]> {
        let actual = crc32c(resolved.bytes);
        if actual == resolved.crc32c {
            return Ok(resolved.bytes);
        }
        Err(self.mismatch(id, epoch, resolved.crc32c, actual, guard))
    }

    /// The corruption error for a checksum mismatch found by [`Inner::checked`], naming the file
    /// and offset of the version.
    #[cold]
    #[inline(never)]
    fn mismatch(&self, id: NodeId, epoch: u64, expected: u32, actual: u32, guard: &Guard) -> Error {
        let (file, offset) = match self.table.get_at(id, epoch, guard) {
            Ok(Some(v)) => (
                self.dir.join(crate::alloc::data_file_name(
                    v.location.class,
                    v.location.file,
                )),
                v.location.offset,
            ),
            _ => (self.dir.clone(), 0),
        };
        Error::corruption(
            file,
            offset,
            CorruptionKind::ChecksumMismatch { expected, actual },
        )
    }

    /// A version's bytes, checked (see [`Inner::verified`]).
    pub(crate) fn read_version(&self, v: &Version, guard: &Guard) -> Result<Vec<u8>> {
        self.verified(v, guard).map(<[u8]>::to_vec)
    }

    /// Asks the background thread for a checkpoint when the log has grown past the threshold.
    pub(crate) fn after_commit(&self) {
        let appended = self.log.stats().bytes_appended;
        let since = appended.saturating_sub(self.log_bytes_at_checkpoint.load(Ordering::Relaxed));
        if since >= self.options.checkpoint_log_bytes
            && !self.checkpoint_wanted.swap(true, Ordering::AcqRel)
        {
            self.wake.notify_all();
        }
    }
}

/// A durable copy-on-write object store (see the crate docs and `design/DURABILITY.md` §6).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// // Create a store, commit a node under a root, close it cleanly ...
/// let rt = DurableRuntime::open(dir.path(), options.clone())?;
/// let mut tx = rt.begin();
/// let id = tx.alloc(1, b"state")?;
/// tx.set_root("my-structure", id)?;
/// let epoch = tx.commit()?;
/// assert_eq!(rt.durable_epoch(), epoch, "BALANCED, the default, returns once durable");
/// rt.close()?;
/// // ... and open it again: recovery says what it found.
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// assert!(!rt.recovery_report().created);
/// assert_eq!(rt.recovery_report().epoch, epoch);
/// let id = rt.root("my-structure").expect("the root survived");
/// assert_eq!(rt.read(id)?, b"state");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DurableRuntime {
    pub(super) inner: Arc<Inner>,
    /// The background threads: the flusher, then the maintenance thread.
    background: Vec<JoinHandle<()>>,
    report: RecoveryReport,
    /// Root names claimed by structures open on this runtime (`claims.rs`).
    claims: Arc<RootClaims>,
}

impl DurableRuntime {
    /// Opens the store in `dir` on the real filesystem (creating it only when
    /// [`RuntimeOptions::create_if_missing`] is set and the directory holds no store).
    pub fn open(dir: impl AsRef<Path>, options: RuntimeOptions) -> Result<Self> {
        Self::open_with(Arc::new(OsStorage::new()), dir.as_ref(), options)
    }

    /// Opens the store in `dir` on `storage` (see [`DurableRuntime::open`]). A second open of
    /// the same directory fails with [`Error::Locked`] while the first is alive; a directory
    /// without a store fails with [`Error::NoStore`] unless `create_if_missing` is set; one
    /// holding store files but no superblock fails with [`Error::Corruption`] naming the missing
    /// superblock; a path that is a file fails with [`Error::NotADirectory`].
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: RuntimeOptions,
    ) -> Result<Self> {
        options.validate()?;
        let (inner, report) = super::recovery::open(storage, dir, options)?;
        let inner = Arc::new(inner);
        let mut runtime = DurableRuntime {
            inner,
            background: Vec::new(),
            report,
            claims: Arc::default(),
        };
        for (name, work) in [
            ("vellum-flusher", flusher_loop as fn(&Inner)),
            ("vellum-maintenance", maintenance_loop),
            ("vellum-reclaimer", reclaimer_loop),
        ] {
            let inner = runtime.inner.clone();
            let handle = std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run_background(&inner, name, work))
                .map_err(|e| Error::io(crate::error::IoOp::Create, name, e))?;
            runtime.background.push(handle);
        }
        Ok(runtime)
    }

    /// What recovery found and did when this runtime opened the store: the epoch, the records
    /// replayed, how the log ended and, with `RecoveryMode::TruncateDamagedLog`, exactly what it
    /// dropped.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Starts a write transaction.
    pub fn begin(&self) -> WriteTxn<'_> {
        WriteTxn::new(&self.inner)
    }

    /// Pins the newest visible commit epoch: the snapshot sees every node as of it until dropped.
    /// It borrows the runtime, which makes it the cheapest to take; see
    /// [`DurableRuntime::snapshot_owned`] for one to keep.
    ///
    /// ```
    /// # fn main() -> vellum::Result<()> {
    /// use vellum::runtime::{DurableRuntime, RuntimeOptions};
    /// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::io(vellum::IoOp::Create, "tmp", e))?;
    /// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
    /// let rt = DurableRuntime::open(dir.path(), options)?;
    /// let mut tx = rt.begin();
    /// let id = tx.alloc(0, b"one")?;
    /// tx.commit()?;
    /// let snap = rt.snapshot();
    /// let mut tx = rt.begin();
    /// tx.write(id, b"two")?;
    /// tx.commit()?;
    /// // The snapshot still sees the node as of its epoch.
    /// assert_eq!(snap.read(id)?.as_deref(), Some(&b"one"[..]));
    /// assert_eq!(rt.read(id)?, b"two");
    /// # Ok(())
    /// # }
    /// ```
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot::take(Cow::Borrowed(&self.inner))
    }

    /// Like [`DurableRuntime::snapshot`], but the snapshot owns a share of the runtime's state
    /// instead of borrowing the runtime, so it can be stored beside an `Arc<DurableRuntime>`
    /// (a long scan, a session). Taking it costs one reference-count increment more than a
    /// borrowed one. It keeps every version visible at its epoch from being reclaimed until it
    /// drops, and it keeps the store's files (and the directory lock) open even past the
    /// runtime's close: a reopen fails with [`Error::Locked`] until the last one drops.
    ///
    /// ```
    /// # fn main() -> vellum::Result<()> {
    /// use std::sync::Arc;
    /// use vellum::runtime::{DurableRuntime, OwnedSnapshot, RuntimeOptions};
    ///
    /// /// A reader that keeps its view of the store across calls.
    /// struct Session {
    ///     rt: Arc<DurableRuntime>,
    ///     view: OwnedSnapshot,
    /// }
    ///
    /// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::io(vellum::IoOp::Create, "tmp", e))?;
    /// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
    /// let rt = Arc::new(DurableRuntime::open(dir.path(), options)?);
    /// let mut tx = rt.begin();
    /// let id = tx.alloc(0, b"v1")?;
    /// tx.set_root("main", id)?;
    /// tx.commit()?;
    /// let session = Session { view: rt.snapshot_owned(), rt: rt.clone() };
    /// let mut tx = session.rt.begin();
    /// tx.write(id, b"v2")?;
    /// tx.commit()?;
    /// let root = session.view.root("main").expect("set above");
    /// assert_eq!(session.view.read(root)?.as_deref(), Some(&b"v1"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub fn snapshot_owned(&self) -> OwnedSnapshot {
        Snapshot::take(Cow::Owned(Arc::clone(&self.inner)))
    }

    /// The bytes of `id` as of the newest visible commit.
    pub fn read(&self, id: NodeId) -> Result<Vec<u8>> {
        let inner = &*self.inner;
        // A pin without roots: the read needs no catalog.
        let pin = inner.snapshots.pin_with(|| inner.visible.epoch());
        super::snapshot::with_node_at(inner, id, pin.epoch(), <[u8]>::to_vec)?.ok_or(
            Error::NodeNotFound {
                id,
                reason: "not live at the newest visible epoch",
            },
        )
    }

    /// The node root `name` names, as of the newest visible commit.
    pub fn root(&self, name: &str) -> Option<NodeId> {
        self.inner.visible.root(name).and_then(NodeId::from_raw)
    }

    /// Claims root `name` (1 to 47 bytes) for the caller until the returned guard drops: a second
    /// claim of the same name in this runtime fails with [`Error::RootClaimed`] meanwhile. A
    /// structure that keeps in-memory state about its root (FasterLog) claims it when it opens,
    /// so it cannot be open twice. Claims are in memory only and do not restrict transactions:
    /// they coordinate the structures on this runtime instance.
    pub fn claim_root(&self, name: &str) -> Result<RootClaim> {
        self.claims.claim(name)
    }

    /// Makes every commit so far durable (EVENTUAL ones included); returns the durable epoch.
    /// Before it returns, every version superseded or retired by a commit durable by then that no
    /// snapshot can read any more is freed (otherwise the reclaimer frees them in batches, after
    /// the flush that made them durable).
    pub fn sync(&self) -> Result<u64> {
        self.inner.engine().sync()
    }

    /// Waits until commit epoch `epoch` is durable, without flushing: the background flusher
    /// (every [`RuntimeOptions::eventual_flush_interval`]), another thread's `sync()`, a
    /// STRICT or BALANCED commit's flush or a checkpoint makes it so. Returns the durable epoch
    /// (at least `epoch`). For a structure that groups its own commits: it commits EVENTUAL and
    /// acknowledges its callers once their epoch is durable, without a log sync of its own.
    ///
    /// An epoch already durable returns at once, poisoned runtime or not. Otherwise it fails
    /// with [`Error::Poisoned`] once the runtime is poisoned (a flush failed, so the epoch may
    /// never become durable), and with [`Error::InvalidArgument`] for an epoch beyond the last
    /// commit.
    ///
    /// ```
    /// # fn main() -> vellum::Result<()> {
    /// use std::time::Duration;
    /// use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
    /// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::io(vellum::IoOp::Create, "tmp", e))?;
    /// let options = RuntimeOptions {
    ///     create_if_missing: true,
    ///     eventual_flush_interval: Duration::from_millis(10),
    ///     ..RuntimeOptions::default()
    /// };
    /// let rt = DurableRuntime::open(dir.path(), options)?;
    /// let mut tx = rt.begin();
    /// tx.alloc(0, b"grouped")?;
    /// let epoch = tx.commit_with(CommitPolicy::Eventual)?;
    /// // Returns once the flusher has made `epoch` durable.
    /// assert!(rt.wait_durable(epoch)? >= epoch);
    /// let never = rt.wait_durable(epoch + 1);
    /// assert!(matches!(never, Err(vellum::Error::InvalidArgument(m)) if m.contains("never committed")));
    /// # Ok(())
    /// # }
    /// ```
    pub fn wait_durable(&self, epoch: u64) -> Result<u64> {
        super::durable_wait::wait_durable(&self.inner, epoch)
    }

    /// Runs one compaction pass with the runtime's compaction settings (see
    /// [`RuntimeOptions::compaction`]): moves live nodes out of sparse segments and returns
    /// wholly free segments' blocks to the filesystem. Readers and writers go on meanwhile.
    pub fn compact(&self) -> Result<CompactReport> {
        let options = self.inner.options.compaction;
        self.compact_with(&options, &mut |_| {})
    }

    /// Runs one compaction pass with `options` (e.g. [`CompactionOptions::full`]), calling
    /// `progress` as it goes.
    pub fn compact_with(
        &self,
        options: &CompactionOptions,
        progress: &mut dyn FnMut(CompactProgress),
    ) -> Result<CompactReport> {
        options.validate()?;
        super::compaction::compact(&self.inner, options, progress)
    }

    /// How full every segment of size class `class` is (live and dead slots per segment).
    pub fn segment_usage(&self, class: u8) -> Vec<SegmentUsage> {
        self.inner.alloc.segment_usage(class)
    }

    /// The allocator's space figures of size class `class` (for [`LARGE_CLASS`], regions and
    /// extents: `used_bytes` is the sum of the live large versions' lengths rounded up to 4 KiB).
    ///
    /// [`LARGE_CLASS`]: crate::runtime::LARGE_CLASS
    pub fn class_space(&self, class: u8) -> ClassSpace {
        self.inner.alloc.space(class)
    }

    /// The large class's own figures: extents, free runs, the longest free run.
    pub fn extent_space(&self) -> ExtentSpace {
        self.inner.alloc.extent_space()
    }

    /// Bytes of disk the data files occupy.
    pub fn data_allocated_bytes(&self) -> Result<u64> {
        self.inner.files.allocated_bytes()
    }

    /// Writes a checkpoint now and drops the logs it makes unnecessary. Like [`Self::sync`], it
    /// frees before it returns what commits durable by then superseded or retired and no
    /// snapshot can read any more.
    pub fn checkpoint(&self) -> Result<()> {
        super::checkpointing::checkpoint(&self.inner)
    }

    /// The newest commit epoch snapshots see.
    pub fn visible_epoch(&self) -> u64 {
        self.inner.visible.epoch()
    }

    /// The newest commit epoch known durable.
    pub fn durable_epoch(&self) -> u64 {
        self.inner.durable_epoch.load(Ordering::Acquire)
    }

    /// The runtime's default commit policy.
    pub fn policy(&self) -> CommitPolicy {
        self.inner.options.policy
    }

    /// Counters and timings.
    pub fn stats(&self) -> RuntimeStats {
        let c = &self.inner.counters;
        let log = self.inner.log.stats();
        RuntimeStats {
            commits: Counters::get(&c.commits),
            conflicts: Counters::get(&c.conflicts),
            aborts: Counters::get(&c.aborts),
            log_syncs: log.syncs,
            flushes: Counters::get(&c.flushes),
            data_syncs: Counters::get(&c.data_syncs),
            data_file_syncs: Counters::get(&c.data_file_syncs),
            node_bytes_written: Counters::get(&c.node_bytes_written),
            log_bytes_appended: Counters::get(&c.log_bytes_appended),
            slots_reclaimed: Counters::get(&c.slots_reclaimed),
            snapshots_open: self.inner.snapshots.count() as u64,
            checkpoints: Counters::get(&c.checkpoints),
            compactions: Counters::get(&c.compactions),
            nodes_moved: Counters::get(&c.nodes_moved),
            bytes_moved: Counters::get(&c.bytes_moved),
            segments_returned: Counters::get(&c.segments_returned),
            checkpoint_last_us: Counters::get(&c.checkpoint_last_us),
            recovery_us: Counters::get(&c.recovery_us),
            recovery_records: Counters::get(&c.recovery_records),
            recovery_tail_cut_offset: Counters::get(&c.recovery_tail_cut_offset),
            recovery_tail_cut_followed_by_valid: Counters::get(
                &c.recovery_tail_cut_followed_by_valid,
            ) != 0,
            class_used_bytes: (0..CLASS_COUNT as u8)
                .map(|k| self.inner.alloc.space(k).used_bytes)
                .collect(),
            class_segment_bytes: (0..CLASS_COUNT as u8)
                .map(|k| self.inner.alloc.space(k).segment_bytes)
                .collect(),
        }
    }

    /// Ids of every node live at the newest visible epoch, in id order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        let inner = &*self.inner;
        let pin = inner.snapshots.pin_with(|| inner.visible.epoch());
        let guard = crossbeam_epoch::pin();
        let mut ids = Vec::new();
        self.inner.table.for_each(&guard, |id, _| {
            if matches!(
                self.inner.table.get_at(id, pin.epoch(), &guard),
                Ok(Some(_))
            ) {
                ids.push(id);
            }
        });
        ids.sort_unstable();
        ids
    }

    /// Checks the store's invariants and returns how many nodes and bytes it checked: every live
    /// node's bytes match their checksum; every version the object table references (current or
    /// kept for snapshots) has an allocated slot; no two share a slot; and, when no transaction is
    /// in flight, no allocated slot is without an owner (a leak). Reclamation and compaction wait
    /// while it runs, so the versions it lists keep their slots until it has checked them.
    pub fn verify(&self) -> Result<(u64, u64)> {
        let inner = &*self.inner;
        // Pinned so no version checked below is freed and rewritten while it is read.
        let _pin = inner.snapshots.pin_with(|| inner.visible.epoch());
        // A version invisible at the pinned epoch (superseded before it) may still be freed by
        // reclamation, and compaction moves nodes: both are held off until the check is done.
        let _compaction = inner.compaction_lock.lock();
        let _reclaim = inner.reclaim.hold();
        let guard = crossbeam_epoch::pin();
        let mut versions = Vec::new();
        inner.table.for_each(&guard, |id, view| {
            if let Some(v) = view.current {
                versions.push((id, v));
            }
            if let Ok(older) = inner.table.older_versions(id, &guard) {
                versions.extend(older.into_iter().map(|v| (id, v)));
            }
        });
        let invalid = |reason: String| {
            Error::corruption(
                inner.dir.clone(),
                0,
                CorruptionKind::InvalidDocument { reason },
            )
        };
        let mut bytes = 0u64;
        let mut nodes = 0u64;
        let mut slots: Vec<_> = versions.iter().map(|(id, v)| (v.location, *id)).collect();
        for (id, v) in &versions {
            if !inner.alloc.is_allocated(v.location) {
                return Err(invalid(format!(
                    "{id}: slot {:?} is not allocated",
                    v.location
                )));
            }
            if let Ok(current) = inner.table.get(*id, &guard)
                && current == *v
            {
                inner.verified(v, &guard)?;
                nodes += 1;
                bytes += u64::from(v.len);
            }
        }
        slots.sort_unstable();
        for pair in slots.windows(2) {
            if pair[0].0 == pair[1].0 {
                return Err(invalid(format!(
                    "{} and {} share slot {:?}",
                    pair[0].1, pair[1].1, pair[0].0
                )));
            }
        }
        let allocated: u64 = (0..CLASS_COUNT as u8)
            .map(|c| inner.alloc.space(c).used_slots)
            .sum();
        if allocated != slots.len() as u64 {
            return Err(invalid(format!(
                "{allocated} slots allocated but {} referenced (a leak or a missing slot)",
                slots.len()
            )));
        }
        Ok((nodes, bytes))
    }

    /// True once a failed sync stopped all writes.
    pub fn is_poisoned(&self) -> bool {
        self.inner.poison.is_poisoned()
    }

    /// Stops the background threads, makes every commit durable (EVENTUAL ones included) and
    /// seals the delta log, so the next open knows the store was closed cleanly (`design/
    /// DURABILITY.md` §4, Z1–Z3). Returns the first failure: a background thread's (which
    /// poisoned the runtime when it happened), a flush's, or the seal's.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        *self.inner.stop.lock() = true;
        self.inner.wake.notify_all();
        self.inner.reclaim.stop();
        let mut first_error = None;
        for handle in self.background.drain(..) {
            let name = handle.thread().name().unwrap_or("background").to_owned();
            if handle.join().is_err() {
                // `run_background` catches panics, so this is one it could not catch.
                first_error.get_or_insert(Error::Poisoned {
                    cause: format!("the {name} thread panicked"),
                });
            }
        }
        // A poisoned runtime reports it: commits it acknowledged may not be durable.
        let closed = self
            .inner
            .engine()
            .sync()
            .and_then(|_| self.inner.log.seal().map(|_| ()));
        match first_error {
            Some(e) => Err(e),
            None => closed,
        }
    }
}

impl Drop for DurableRuntime {
    fn drop(&mut self) {
        if self.background.is_empty() {
            return;
        }
        if let Err(e) = self.shutdown() {
            tracing::error!(%e, "flushing on close failed");
        }
    }
}

/// Runs one background thread's loop; a panic in it poisons the runtime, so the next call and
/// `close` report it instead of the work silently stopping.
fn run_background(inner: &Inner, name: &str, work: fn(&Inner)) {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(inner)));
    if let Err(payload) = outcome {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        let e = Error::Poisoned {
            cause: format!("the {name} thread panicked: {what}"),
        };
        tracing::error!(%e, "background thread stopped");
        inner.poison.poison(&e);
    }
}

/// Waits up to `interval` for a wake-up; false once the runtime is stopping.
fn wait(inner: &Inner, interval: std::time::Duration) -> bool {
    let mut stop = inner.stop.lock();
    if !*stop {
        inner.wake.wait_for(&mut stop, interval);
    }
    !*stop
}

/// A background task's failure poisons the runtime (its cause is what the next call and `close`
/// report): the work it did may be half done, and a store whose background work fails must not
/// go on as if it had not.
fn poison_on_failure(inner: &Inner, what: &str, result: Result<()>) {
    if let Err(e) = result {
        tracing::error!(%e, "background {what} failed");
        if !matches!(e, Error::Poisoned { .. }) {
            inner.poison.poison(&e);
        }
    }
}

/// The flusher: makes EVENTUAL commits durable every `eventual_flush_interval`, and frees what
/// became reclaimable. It does nothing else, so a long checkpoint or compaction never delays it.
fn flusher_loop(inner: &Inner) {
    while wait(inner, inner.options.eventual_flush_interval) {
        if inner.poison.is_poisoned() {
            continue;
        }
        let buffered = !inner.commit.lock().buffer.is_empty();
        if buffered {
            // Not `sync`, which waits for a reclamation pass in progress: nothing delays the
            // flusher, and the pass below gives way to one in progress instead.
            let flushed = inner.engine().flush_through(None);
            poison_on_failure(inner, "flush", flushed.map(|_| ()));
        }
        inner.engine().reclaim_ready();
    }
}

/// The reclaimer: frees what a flush made reclaimable as soon as the flush raises it
/// (`reclaim.rs`), on its own thread so committers do not wait for it.
fn reclaimer_loop(inner: &Inner) {
    while inner.reclaim.wait_raised() {
        if !inner.poison.is_poisoned() {
            // Waits for a pass in progress (or `verify`) rather than giving way: that pass may
            // have taken its limit before the flush that raised this one (invariant 3).
            inner.engine().reclaim_ready_now();
        }
    }
}

/// The maintenance thread: compaction on its interval, free segments back to the filesystem,
/// and checkpoints when the log has grown past `checkpoint_log_bytes` or on
/// `checkpoint_interval`.
fn maintenance_loop(inner: &Inner) {
    while wait(inner, inner.options.eventual_flush_interval) {
        if inner.poison.is_poisoned() {
            continue;
        }
        let compact_due = inner
            .options
            .compaction
            .interval
            .is_some_and(|d| inner.last_compaction.lock().elapsed() >= d);
        if compact_due {
            *inner.last_compaction.lock() = Instant::now();
            let options = inner.options.compaction;
            let pass = super::compaction::compact(inner, &options, &mut |_| {});
            poison_on_failure(inner, "compaction", pass.map(|_| ()));
        } else if let Some(_idle) = inner.compaction_lock.try_lock() {
            // Not while a compaction runs: its M6 returns the segments it emptied, and reports
            // them.
            let returned = super::compaction::return_free_segments(inner, SPARE_SEGMENTS);
            poison_on_failure(inner, "segment return", returned.map(|_| ()));
        }
        // By time only when something was committed since the checkpoint in force: an idle
        // store is not rewritten every interval.
        let by_time = inner
            .options
            .checkpoint_interval
            .is_some_and(|d| inner.last_checkpoint.lock().elapsed() >= d)
            && inner.visible.epoch() > inner.checkpointed_epoch.load(Ordering::Acquire);
        if inner.checkpoint_wanted.swap(false, Ordering::AcqRel) || by_time {
            poison_on_failure(inner, "checkpoint", super::checkpointing::checkpoint(inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::FaultStorage;
    use crate::runtime::engine::Retirement;

    /// Regression (issue 11, defect 5): reclamation ignored an entry it could not free
    /// (`unwrap_or_default()`), so a table that disagreed with its queue went on silently. A
    /// retirement queued for a node that is still live is refused by the table: the runtime
    /// must stop accepting writes and say why.
    #[test]
    fn reclamation_poisons_on_an_entry_it_cannot_free() {
        let fs = FaultStorage::new(3);
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        let options = RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        };
        let rt = DurableRuntime::open_with(Arc::new(fs), dir, options).unwrap();
        let mut tx = rt.begin();
        let id = tx.alloc(1, b"live").unwrap();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.inner.reclaim.queue(vec![Retirement {
            epoch: 1,
            id,
            whole_node: true,
            bytes: 4,
        }]);
        rt.inner.engine().reclaim_ready();
        assert!(rt.is_poisoned());
        let mut tx = rt.begin();
        assert!(matches!(
            tx.alloc(1, b"more"),
            Err(Error::Poisoned { cause }) if cause.contains("the node is live")
        ));
        assert_eq!(rt.read(id).unwrap(), b"live");
    }
}

#[cfg(test)]
#[path = "tag_exhaustion_tests.rs"]
mod tag_exhaustion_tests;
