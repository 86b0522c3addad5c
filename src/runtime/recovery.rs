//! Opening a store: create it, or recover it from what is durable.
//!
//! Recovery steps (`design/DURABILITY.md` §6, R1–R7):
//! R1 lock the directory; R2 load the superblock and the manifest it names, adopt its layout, and
//! remove the logs and checkpoints it does not name; R3 load the checkpoint (live nodes and free
//! handles' tags); R4 replay the commit records of the delta logs in order, whole records only,
//! each exactly one epoch after the previous past the checkpoint's; the last log's torn tail is
//! cut; R5 rebuild the allocator from the live versions; R6 write BALANCED payloads back into the
//! slots of versions that are still current; R6b punch out wholly free segments; R7 publish the
//! recovered epoch; the runtime then accepts writes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

use super::durable::Inner;
use super::engine::{CommitState, DataSync, Visible};
use super::group_flush::GroupFlush;
use super::options::RuntimeOptions;
use super::record::{CommitRecordRef, OpRef};
use super::snapshots::SnapshotRegistry;
use super::stats::Counters;
use crate::alloc::{
    CLASS_COUNT, DataFiles, Location, SegmentAllocator, parse_data_file_name, segment_bytes,
};
use crate::checkpoint::{
    CheckpointExpect, CheckpointItem, parse_checkpoint_file_name, read_checkpoint_items,
};
use crate::error::{CorruptionKind, Error, Result};
use crate::io::Storage;
use crate::log::{DeltaLog, Frame, TailState, log_file_name, parse_log_file_name, replay};
use crate::meta::{DeltaLogRef, Layout, Manifest, MetaStore, RootCatalog};
use crate::object_table::{NodeId, ObjectTable};
use crate::poison::Poison;

/// How many data files past the last one that exists a live version may name: a file whose
/// creation was not yet durable when the store crashed can hold only payload-only versions, and
/// files are created one after another as the previous one fills.
const UNSYNCED_DATA_FILES_MAX: u64 = 2;

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// The state replay builds.
struct Replayed {
    table: ObjectTable,
    /// Root changes are replayed onto a plain map: replay re-applies changes logged since the
    /// checkpoint on top of roots that may be newer, which can pass the 64-root limit for a
    /// moment (a name set and later removed). Only the final catalog must respect it.
    roots: BTreeMap<String, u64>,
    /// The checkpoint's epoch: records at or below it are already in the checkpoint.
    checkpoint_epoch: u64,
    last_epoch: u64,
    records: u64,
    /// Payload bytes of the newest version of each node that carried one.
    payloads: HashMap<NodeId, (Location, Vec<u8>)>,
}

impl Replayed {
    fn bad(path: &Path, frame: &Frame, field: &'static str, value: u64) -> Error {
        Error::corruption(
            path,
            frame.offset,
            CorruptionKind::InvalidField { field, value },
        )
    }

    /// R4: applies one record. Nothing is pinned during recovery, so superseded versions and
    /// retired nodes are dropped at once.
    fn apply(&mut self, path: &Path, frame: &Frame) -> Result<()> {
        let record = CommitRecordRef::decode(&frame.body, path, frame.offset + 16)?;
        if record.epoch <= self.checkpoint_epoch {
            // Already in the checkpoint (a log may start before the checkpoint's epoch).
            return Ok(());
        }
        if record.epoch != self.last_epoch + 1 {
            return Err(Error::corruption(
                path,
                frame.offset,
                CorruptionKind::Mismatch {
                    what: "commit_record.epoch",
                    expected: self.last_epoch + 1,
                    actual: record.epoch,
                },
            ));
        }
        let guard = crossbeam_epoch::pin();
        for op in &record.ops {
            match op {
                OpRef::New(v) => {
                    self.table
                        .restore(v.id, v.version(record.epoch), None)
                        .map_err(|_| Self::bad(path, frame, "op.node_id", v.id.raw()))?;
                    self.track_payload(v.id, v.location, v.payload);
                }
                OpRef::Update(v) => {
                    self.table
                        .update(v.id, v.version(record.epoch), &guard)
                        .map_err(|_| Self::bad(path, frame, "op.node_id", v.id.raw()))?;
                    self.table.trim(v.id, u64::MAX, &guard)?;
                    self.track_payload(v.id, v.location, v.payload);
                }
                OpRef::Retire(id) => {
                    self.table
                        .retire(*id, record.epoch)
                        .and_then(|()| self.table.reclaim(*id, &guard))
                        .map_err(|_| Self::bad(path, frame, "op.node_id", id.raw()))?;
                    self.payloads.remove(id);
                }
                OpRef::SetRoot(name, id) => {
                    self.roots.insert((*name).to_owned(), id.raw());
                }
                OpRef::DelRoot(name) => {
                    self.roots.remove(*name);
                }
            }
        }
        self.last_epoch = record.epoch;
        self.records += 1;
        Ok(())
    }

    fn track_payload(&mut self, id: NodeId, location: Location, payload: Option<&[u8]>) {
        match payload {
            Some(p) => {
                self.payloads.insert(id, (location, p.to_vec()));
            }
            None => {
                self.payloads.remove(&id);
            }
        }
    }
}

fn lock_and_prepare(storage: &dyn Storage, dir: &Path) -> Result<crate::io::LockGuard> {
    storage.create_dir_all(dir)?;
    storage.lock(&dir.join(LOCK_FILE))
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

/// Creates a new store: the first log, then the metadata naming it.
fn create(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    options: &RuntimeOptions,
) -> Result<(MetaStore, DeltaLog)> {
    // No superblock means no store: anything left by a create that crashed is garbage.
    let first_log = dir.join(log_file_name(1));
    if storage.exists(&first_log)? {
        storage.remove(&first_log)?;
    }
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
    Ok((meta, log))
}

/// Removes logs and checkpoints the manifest in force does not name: a checkpoint or rotation
/// that crashed before its manifest was published left them. None holds an acknowledged commit:
/// records go to a new log only after the manifest naming it is durable (both happen under the
/// commit lock), and an unnamed checkpoint was never trusted.
fn remove_unnamed(storage: &dyn Storage, dir: &Path, manifest: &Manifest) -> Result<()> {
    let named_checkpoint = manifest.checkpoint.as_ref().map(|c| c.file.as_str());
    for name in storage.list(dir)? {
        let unnamed = match (
            parse_log_file_name(&name),
            parse_checkpoint_file_name(&name),
        ) {
            (Some(seq), _) => !manifest.delta_logs.iter().any(|l| l.seq == seq),
            (_, Some(_)) => named_checkpoint != Some(name.as_str()),
            _ => false,
        };
        if unnamed {
            tracing::info!(file = %name, "removing a file no manifest names");
            storage.remove(&dir.join(&name))?;
        }
    }
    Ok(())
}

/// Data files present in `dir`, as (class, number).
fn data_files_in(storage: &dyn Storage, dir: &Path) -> Result<Vec<(u8, u32)>> {
    Ok(storage
        .list(dir)?
        .iter()
        .filter_map(|n| parse_data_file_name(n))
        .collect())
}

/// Opens or creates the store in `dir`.
pub(crate) fn open(
    storage: Arc<dyn Storage>,
    dir: &Path,
    mut options: RuntimeOptions,
) -> Result<Inner> {
    let started = Instant::now();
    let span = tracing::info_span!("recovery", dir = %dir.display());
    let _enter = span.enter();
    let lock = lock_and_prepare(storage.as_ref(), dir)?;
    let exists = MetaStore::exists(storage.as_ref(), dir)?;
    let mut tail_cut: Option<(u64, bool)> = None;
    let mut named_data_files: Vec<String> = Vec::new();
    let (meta, log, replayed) = if exists {
        let meta = MetaStore::open(storage.clone(), dir)?;
        let published = meta.current();
        let manifest = published.manifest.clone();
        adopt_layout(&mut options, manifest.layout);
        remove_unnamed(storage.as_ref(), dir, &manifest)?;
        named_data_files = manifest.data_files.iter().map(|d| d.file.clone()).collect();
        // Replay starts after the checkpoint's epoch, not the superblock's: a log rotation
        // publishes a newer superblock while the checkpoint stays older. The superblock's roots
        // may be newer than the checkpoint; re-applying the root changes logged since then leaves
        // each name with its last change, so the result is the same.
        let mut replayed = Replayed {
            table: ObjectTable::new(),
            roots: published
                .superblock
                .roots
                .iter()
                .map(|(n, id)| (n.to_owned(), id))
                .collect(),
            checkpoint_epoch: 0,
            last_epoch: 0,
            records: 0,
            payloads: HashMap::new(),
        };
        // R3.
        if let Some(ck) = &manifest.checkpoint {
            let path = dir.join(&ck.file);
            let expect = CheckpointExpect::from_manifest_ref(ck).ok_or_else(|| {
                Error::corruption(
                    dir.join(crate::meta::manifest_file_name(manifest.seq)),
                    0,
                    CorruptionKind::InvalidDocument {
                        reason: format!("checkpoint file name {:?}", ck.file),
                    },
                )
            })?;
            let table = &replayed.table;
            read_checkpoint_items(storage.as_ref(), &path, Some(&expect), |item| match item {
                CheckpointItem::Live(e) => table.restore(e.id, e.version, None),
                CheckpointItem::Free(id) => table.restore_free(id),
                CheckpointItem::Exhausted(id) => table.restore_exhausted(id),
            })?;
            replayed.last_epoch = ck.epoch;
            replayed.checkpoint_epoch = ck.epoch;
        }
        // R4.
        let Some((last, earlier)) = manifest.delta_logs.split_last() else {
            return Err(Error::corruption(
                dir.join(crate::meta::manifest_file_name(manifest.seq)),
                0,
                CorruptionKind::InvalidDocument {
                    reason: "no delta log".into(),
                },
            ));
        };
        for l in earlier {
            let path = dir.join(&l.file);
            let summary = replay(storage.as_ref(), &path, |f| replayed.apply(&path, f))?;
            if let TailState::Torn { offset, kind, .. } = summary.tail {
                // A closed log was synced whole before its successor existed.
                return Err(Error::corruption(path, offset, kind));
            }
        }
        let path = dir.join(&last.file);
        let (log, summary) = DeltaLog::open(storage.clone(), dir, last.seq, options.log, |f| {
            replayed.apply(&path, f)
        })?;
        if let TailState::Torn {
            offset,
            valid_frame_follows,
            kind,
        } = &summary.tail
        {
            // A crash can leave a torn unsynced frame followed by an intact unsynced one (several
            // frames share one sync, and unsynced sectors persist in any order), which is
            // indistinguishable from damage to synced frames. Acknowledged commits are protected
            // by the check against the superblock's epoch below; the cut tail is reported.
            tracing::warn!(
                file = %path.display(),
                offset,
                %kind,
                valid_frame_follows,
                "cut the delta log's tail at a bad frame"
            );
            tail_cut = Some((*offset, *valid_frame_follows));
        }
        // Everything up to the superblock's epoch was durable when it was published.
        if replayed.last_epoch < published.superblock.commit_epoch {
            return Err(Error::corruption(
                path,
                summary.valid_end,
                CorruptionKind::Mismatch {
                    what: "replayed commit epoch",
                    expected: published.superblock.commit_epoch,
                    actual: replayed.last_epoch,
                },
            ));
        }
        (meta, log, replayed)
    } else {
        let (meta, log) = create(&storage, dir, &options)?;
        let replayed = Replayed {
            table: ObjectTable::new(),
            roots: BTreeMap::new(),
            checkpoint_epoch: 0,
            last_epoch: 0,
            records: 0,
            payloads: HashMap::new(),
        };
        (meta, log, replayed)
    };
    let guard = crossbeam_epoch::pin();
    replayed.table.finish_restore(&guard);

    // R5: the allocator from the live versions and the files that exist.
    let existing = data_files_in(storage.as_ref(), dir)?;
    // Every data file the manifest names must still be there; a missing one would otherwise
    // surface only as checksum errors when its nodes are read.
    for name in &named_data_files {
        if !existing
            .iter()
            .any(|(c, f)| crate::alloc::data_file_name(*c, *f) == *name)
        {
            return Err(Error::corruption(
                dir.join(name),
                0,
                CorruptionKind::MissingFile,
            ));
        }
    }
    let files = DataFiles::open(storage.clone(), dir, options.data, &existing)?;
    let mut live = Vec::new();
    replayed.table.for_each(&guard, |_, view| {
        if let Some(v) = view.current {
            live.push(v.location);
        }
    });
    let per_file_bytes = options.data.alloc.file_bytes_max;
    // Disk bytes must not make the rebuild allocate without bound: every file within its size,
    // every live slot inside a file or at most a few files past the last that exists (payload-only
    // versions may name a file whose creation was not yet durable; recovery recreates it).
    let mut files_per_class = [0u64; CLASS_COUNT];
    for (class, file, len) in files.files() {
        if len > per_file_bytes {
            return Err(Error::corruption(
                dir.join(crate::alloc::data_file_name(class, file)),
                0,
                CorruptionKind::InvalidField {
                    field: "data file length",
                    value: len,
                },
            ));
        }
        files_per_class[usize::from(class)] += 1;
    }
    for l in &live {
        let beyond =
            u64::from(l.file) >= files_per_class[usize::from(l.class)] + UNSYNCED_DATA_FILES_MAX;
        if beyond || l.offset + l.slot_bytes() > per_file_bytes {
            return Err(Error::corruption(
                dir.join(crate::alloc::data_file_name(l.class, l.file)),
                l.offset,
                CorruptionKind::InvalidField {
                    field: "op.location",
                    value: l.pack(),
                },
            ));
        }
    }
    let mut segments = [0u64; CLASS_COUNT];
    for (class, file, len) in files.files() {
        let seg = segment_bytes(class);
        let n = (u64::from(file) * per_file_bytes + len).div_ceil(seg);
        segments[usize::from(class)] = segments[usize::from(class)].max(n);
    }
    for l in &live {
        let seg = segment_bytes(l.class);
        let n = (u64::from(l.file) * per_file_bytes + l.offset) / seg + 1;
        segments[usize::from(l.class)] = segments[usize::from(l.class)].max(n);
    }
    let alloc = SegmentAllocator::rebuild(options.data.alloc, &segments, live.iter().copied())
        .map_err(|e| {
            Error::corruption(
                dir.to_path_buf(),
                0,
                CorruptionKind::InvalidDocument {
                    reason: e.to_string(),
                },
            )
        })?;

    // R6: payloads go back only into slots their version still owns; a slot freed and reused
    // later in the log must not be overwritten with an old payload.
    let mut reserved = std::collections::HashSet::new();
    for (id, (location, bytes)) in &replayed.payloads {
        let current = replayed.table.get(*id, &guard).ok();
        if current.is_some_and(|v| v.location == *location) {
            // One reservation per segment, not per payload.
            let segment = DataFiles::segment_of(*location);
            if reserved.insert((segment.class, segment.file, segment.offset)) {
                files.back(&segment)?;
            }
            files.write(*location, bytes)?;
        }
    }
    drop(guard);
    // R6b.
    alloc.return_empty(usize::MAX, 0, |seg| files.punch(seg))?;

    let epoch = replayed.last_epoch;
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
    let counters = Counters::default();
    Counters::add(&counters.recovery_records, replayed.records);
    if let Some((offset, followed)) = tail_cut {
        Counters::add(&counters.recovery_tail_cut_offset, offset);
        Counters::add(
            &counters.recovery_tail_cut_followed_by_valid,
            u64::from(followed),
        );
    }
    Counters::add(&counters.recovery_us, started.elapsed().as_micros() as u64);
    let log_bytes = log.stats().bytes_appended;
    tracing::info!(epoch, records = replayed.records, "store open");
    Ok(Inner {
        storage,
        dir: PathBuf::from(dir),
        _lock: lock,
        meta,
        table: replayed.table,
        alloc,
        files,
        log,
        commit: Mutex::new(CommitState {
            next_epoch: epoch + 1,
            roots: roots.clone(),
            buffer: Vec::new(),
            buffer_data_files: Vec::new(),
            unpublished: VecDeque::new(),
        }),
        append_order: Mutex::new(()),
        group_flush: GroupFlush::default(),
        unappended_frame_bytes: AtomicU64::new(0),
        data_sync: DataSync::default(),
        visible: Visible::new(epoch, roots),
        durable_epoch: AtomicU64::new(epoch),
        snapshots: SnapshotRegistry::default(),
        reclaim: Mutex::new(VecDeque::new()),
        poison: Poison::new(),
        counters,
        checkpoint_lock: Mutex::new(()),
        compaction_lock: Mutex::new(()),
        last_compaction: Mutex::new(Instant::now()),
        last_checkpoint: Mutex::new(Instant::now()),
        log_bytes_at_checkpoint: AtomicU64::new(log_bytes),
        checkpoint_wanted: AtomicBool::new(false),
        stop: Mutex::new(false),
        wake: Condvar::new(),
        options,
    })
}
