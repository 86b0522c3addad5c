//! Opening a store: create it, or recover it from what is durable.
//!
//! [`open`] runs the steps of `design/DURABILITY.md` §6 "Recovery", one function each, in order:
//! RV1 lock the directory (creating it only when asked to create a store); RV2 find the store, or
//! create one when allowed and there is none; RV3 load the superblock and the manifest it names,
//! adopt its layout and remove the store files it does not name; RV4 load the checkpoint; RV5
//! replay the delta logs and judge the open log's tail; RV6 rebuild the data files and the
//! allocator; RV7 write BALANCED payloads back into their slots and make them durable; RV8 punch
//! out wholly free segments; RV9 publish the recovered epoch; the runtime then accepts writes.

mod directory;
mod rebuild;
mod replay;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

pub use self::directory::LOCK_FILE;
use self::directory::{Found, find_store, lock, remove_create_leftovers, remove_unnamed};
pub(crate) use self::directory::{StoreFile, classify};
use self::replay::{Replayed, load_checkpoint, replay_logs};
use super::durable::Inner;
use super::durable_wait::DurableWaiters;
use super::engine::{CommitState, DataSync, Visible};
use super::group_flush::GroupFlush;
use super::options::RuntimeOptions;
use super::reclaim::Reclamation;
use super::snapshots::SnapshotRegistry;
use super::stats::Counters;
use crate::alloc::{DataFiles, SegmentAllocator};
use crate::error::{CorruptionKind, Error, Result};
use crate::io::{LockGuard, Storage};
use crate::log::{DeltaLog, log_file_name};
use crate::meta::{DeltaLogRef, Layout, Manifest, MetaStore, RootCatalog};
use crate::poison::Poison;

/// What recovery found and did, for [`super::DurableRuntime::recovery_report`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// let rt = DurableRuntime::open(dir.path(), options.clone())?;
/// assert!(rt.recovery_report().created, "a new store");
/// let mut tx = rt.begin();
/// tx.alloc(1, b"x")?;
/// tx.commit()?;
/// drop(rt); // not closed: the next open replays the log
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let report = rt.recovery_report();
/// assert!(!report.created);
/// assert_eq!(report.records_replayed, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// The store was created by this open (there was none).
    pub created: bool,
    /// The commit epoch the store opened at.
    pub epoch: u64,
    /// Commit records replayed from the delta logs (past the checkpoint).
    pub records_replayed: u64,
    /// Payloads written back into their slots (RV7).
    pub payloads_written_back: u64,
    /// How the open delta log ended.
    pub log_tail: LogTail,
    /// How long the open took.
    pub duration_us: u64,
}

/// How the open delta log ended when the store was recovered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogTail {
    /// At unwritten bytes, nothing past them (a crash with nothing in flight, or a new log).
    Clean,
    /// At the seal of a clean close.
    Sealed,
    /// At a torn tail, which was cut: frames that were never known durable, so never
    /// acknowledged. `frames_dropped` valid frames lay past the cut (an unsynced batch whose
    /// sectors a crash kept out of order).
    TornCut {
        /// The log file.
        file: PathBuf,
        /// Where it was cut.
        offset: u64,
        /// Valid frames past the cut.
        frames_dropped: u64,
    },
    /// At damage to durable frames, cut because the store was opened with
    /// `RecoveryMode::TruncateDamagedLog`: the commits from `first_epoch_dropped` to
    /// `last_epoch_dropped` were durable, possibly acknowledged, and are gone.
    DamageTruncated {
        /// The log file.
        file: PathBuf,
        /// The damaged frame, where the log was cut.
        offset: u64,
        /// What was wrong with it.
        kind: CorruptionKind,
        /// Valid frames past the damage, dropped with it.
        frames_past: u64,
        /// Bytes from the damaged frame to the end of the last valid frame past it.
        bytes_dropped: u64,
        /// The first commit epoch dropped (the damaged frame's).
        first_epoch_dropped: u64,
        /// The last commit epoch dropped (the largest among the valid frames past the damage).
        last_epoch_dropped: u64,
    },
}

/// The parts of the store recovery hands to the runtime.
struct Recovered {
    lock: LockGuard,
    meta: MetaStore,
    log: DeltaLog,
    replayed: Replayed,
    files: DataFiles,
    alloc: SegmentAllocator,
    data_sync: DataSync,
    counters: Counters,
    report: RecoveryReport,
}

/// Opens the store in `dir`, or creates it when it holds none and `options.create_if_missing`
/// asks for that (RV1–RV9).
pub(crate) fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    mut options: RuntimeOptions,
) -> Result<(Inner, RecoveryReport)> {
    let started = Instant::now();
    let span = tracing::info_span!("recovery", dir = %dir.display());
    let _enter = span.enter();
    // RV1.
    let lock = lock(storage.as_ref(), dir, options.create_if_missing)?;
    // RV2.
    let recovered = match (
        find_store(storage.as_ref(), dir)?,
        options.create_if_missing,
    ) {
        (Found::Store, _) => recover(&storage, dir, &mut options, lock)?,
        (Found::Nothing, true) => create(&storage, dir, &options, lock)?,
        (Found::Nothing, false) => {
            return Err(Error::NoStore {
                dir: dir.to_path_buf(),
            });
        }
    };
    // RV9.
    publish(storage, dir, options, recovered, started)
}

/// RV3–RV8 for an existing store.
fn recover(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    options: &mut RuntimeOptions,
    lock: LockGuard,
) -> Result<Recovered> {
    // RV3.
    let meta = MetaStore::open(storage.clone(), dir)?;
    let published = meta.current();
    let manifest = published.manifest.clone();
    adopt_layout(options, manifest.layout);
    let named_logs: Vec<u64> = manifest.delta_logs.iter().map(|l| l.seq).collect();
    let named_checkpoint = manifest.checkpoint.as_ref().map(|c| c.file.as_str());
    remove_unnamed(storage.as_ref(), dir, &named_logs, named_checkpoint)?;
    // Replay starts after the checkpoint's epoch, not the superblock's: a log rotation publishes
    // a newer superblock while the checkpoint stays older. The superblock's roots may be newer
    // than the checkpoint; re-applying the root changes logged since then leaves each name with
    // its last change, so the result is the same.
    let roots = published.superblock.roots.iter();
    let mut replayed = Replayed::new(roots.map(|(n, id)| (n.to_owned(), id)).collect());
    // RV4.
    load_checkpoint(storage.as_ref(), dir, &manifest, &mut replayed)?;
    // RV5.
    let (log, log_tail) = replay_logs(
        storage,
        dir,
        &published,
        options.log,
        options.recovery,
        &mut replayed,
    )?;
    replayed.table.finish_restore(&crossbeam_epoch::pin());
    // RV6.
    let named_files: Vec<String> = manifest.data_files.iter().map(|d| d.file.clone()).collect();
    let (files, alloc) = rebuild::rebuild(storage, dir, options.data, &named_files, &replayed)?;
    // RV7.
    let (data_sync, counters) = (DataSync::default(), Counters::default());
    let written_back = rebuild::write_back(&replayed, &files, &data_sync, &counters)?;
    // RV8.
    rebuild::punch_free(&alloc, &files)?;
    let report = RecoveryReport {
        created: false,
        epoch: replayed.last_epoch,
        records_replayed: replayed.records,
        payloads_written_back: written_back,
        log_tail,
        duration_us: 0,
    };
    Ok(Recovered {
        lock,
        meta,
        log,
        replayed,
        files,
        alloc,
        data_sync,
        counters,
        report,
    })
}

/// An existing store keeps the layout it was created with (locations, segment numbers and file
/// lengths depend on it): the options' layout settings apply only when a store is created.
fn adopt_layout(options: &mut RuntimeOptions, layout: Layout) {
    let data = &mut options.data;
    if (data.alloc.file_bytes_max, data.window_bytes)
        != (layout.file_bytes_max, layout.window_bytes)
    {
        tracing::info!(
            requested_file_bytes_max = data.alloc.file_bytes_max,
            requested_window_bytes = data.window_bytes,
            file_bytes_max = layout.file_bytes_max,
            window_bytes = layout.window_bytes,
            "the store keeps the layout it was created with"
        );
    }
    data.alloc.file_bytes_max = layout.file_bytes_max;
    data.window_bytes = layout.window_bytes;
    // The mapped budget must hold at least one window of the store's size.
    data.mapped_bytes_max = data.mapped_bytes_max.max(layout.window_bytes);
}

/// RV2's create: the first log, then the metadata naming it (`MetaStore::create`, whose rename
/// of the superblock into place is the moment the store exists).
fn create(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    options: &RuntimeOptions,
    lock: LockGuard,
) -> Result<Recovered> {
    // No superblock means no store: what a create that crashed left is garbage.
    remove_create_leftovers(storage.as_ref(), dir)?;
    let log = DeltaLog::create(storage.clone(), dir, 1, 1, options.log)?;
    let mut manifest = Manifest::empty();
    manifest.layout = Layout {
        file_bytes_max: options.data.alloc.file_bytes_max,
        window_bytes: options.data.window_bytes,
    };
    manifest.delta_logs.push(DeltaLogRef {
        file: log_file_name(1),
        seq: 1,
        start_epoch: 1,
        end_epoch: None,
        bytes: None,
    });
    manifest.counters.next_log_seq = 2;
    manifest.counters.next_checkpoint_seq = 1;
    manifest.counters.next_data_seq = 0;
    let meta = MetaStore::create(storage.clone(), dir, manifest)?;
    let replayed = Replayed::new(BTreeMap::new());
    let files = DataFiles::open(storage.clone(), dir, options.data, &[])?;
    let alloc = SegmentAllocator::rebuild(options.data.alloc, &[0; crate::alloc::CLASS_COUNT], [])
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let report = RecoveryReport {
        created: true,
        epoch: 0,
        records_replayed: 0,
        payloads_written_back: 0,
        log_tail: LogTail::Clean,
        duration_us: 0,
    };
    Ok(Recovered {
        lock,
        meta,
        log,
        replayed,
        files,
        alloc,
        data_sync: DataSync::default(),
        counters: Counters::default(),
        report,
    })
}

/// RV9: the recovered epoch becomes visible and durable, and the runtime is assembled; writes
/// are accepted from here on.
fn publish(
    storage: Arc<dyn Storage>,
    dir: &Path,
    options: RuntimeOptions,
    recovered: Recovered,
    started: Instant,
) -> Result<(Inner, RecoveryReport)> {
    let Recovered {
        lock,
        meta,
        log,
        replayed,
        files,
        alloc,
        data_sync,
        counters,
        mut report,
    } = recovered;
    let (epoch, checkpointed_epoch) = (replayed.last_epoch, replayed.checkpoint_epoch);
    let next_epoch = epoch.checked_add(1).ok_or_else(|| {
        Error::corruption(
            dir.to_path_buf(),
            0,
            CorruptionKind::InvalidField {
                field: "commit epoch",
                value: epoch,
            },
        )
    })?;
    let roots = RootCatalog::try_from_pairs(replayed.roots).map_err(|e| {
        Error::corruption(
            dir.to_path_buf(),
            0,
            CorruptionKind::InvalidDocument {
                reason: format!("recovered roots: {e}"),
            },
        )
    })?;
    let roots = Arc::new(roots);
    report.duration_us = started.elapsed().as_micros() as u64;
    count_recovery(&counters, &report);
    let log_bytes = log.stats().bytes_appended;
    tracing::info!(epoch, records = report.records_replayed, "store open");
    let durable_waiters = Arc::new(DurableWaiters::default());
    let inner = Inner {
        storage,
        dir: PathBuf::from(dir),
        _lock: lock,
        meta,
        table: replayed.table,
        alloc,
        files,
        log,
        commit: Mutex::new(CommitState {
            next_epoch,
            roots: roots.clone(),
            buffer: Vec::new(),
            buffer_data_files: Vec::new(),
            unpublished: VecDeque::new(),
            volatile: VecDeque::new(),
        }),
        append_order: Mutex::new(()),
        group_flush: GroupFlush::default(),
        unappended_frame_bytes: AtomicU64::new(0),
        data_sync,
        visible: Visible::new(epoch, roots),
        durable_epoch: AtomicU64::new(epoch),
        durable_waiters: durable_waiters.clone(),
        snapshots: SnapshotRegistry::default(),
        reclaim: Reclamation::default(),
        // `durable_wait.rs`, invariant 2: poisoning wakes the durability waiters.
        poison: Poison::with_wake(move || durable_waiters.notify()),
        counters,
        checkpoint_lock: Mutex::new(()),
        compaction_lock: Mutex::new(()),
        last_compaction: Mutex::new(Instant::now()),
        last_checkpoint: Mutex::new(Instant::now()),
        log_bytes_at_checkpoint: AtomicU64::new(log_bytes),
        checkpointed_epoch: AtomicU64::new(checkpointed_epoch),
        checkpoint_wanted: AtomicBool::new(false),
        stop: Mutex::new(false),
        wake: Condvar::new(),
        options,
    };
    Ok((inner, report))
}

/// The report's figures in the runtime's counters.
fn count_recovery(counters: &Counters, report: &RecoveryReport) {
    Counters::add(&counters.recovery_records, report.records_replayed);
    Counters::add(&counters.recovery_us, report.duration_us);
    let cut = match &report.log_tail {
        LogTail::TornCut {
            offset,
            frames_dropped,
            ..
        } => Some((*offset, *frames_dropped > 0)),
        LogTail::DamageTruncated { offset, .. } => Some((*offset, true)),
        LogTail::Clean | LogTail::Sealed => None,
    };
    if let Some((offset, followed)) = cut {
        Counters::add(&counters.recovery_tail_cut_offset, offset);
        Counters::add(
            &counters.recovery_tail_cut_followed_by_valid,
            u64::from(followed),
        );
    }
}
