//! RV4–RV5: the object table as of the last durable commit, from the checkpoint and the commit
//! records of the delta logs.
//!
//! Invariants:
//! 1. Records apply in log order, each exactly one epoch after the one before it (or at or below
//!    the checkpoint's epoch, already in the checkpoint, and skipped); anything else is a
//!    `Mismatch`. Every epoch arithmetic is checked: an epoch from disk at `u64::MAX` is a
//!    `Corruption`, never an overflow.
//! 2. A closed log must replay whole: it was synced whole before its successor existed.
//! 3. The open log's stop is judged by the log reader: a torn tail is cut; damage to durable
//!    frames fails the open (`RecoveryMode::Strict`) or is cut and reported exactly
//!    (`RecoveryMode::TruncateDamagedLog`).
//! 4. Replay reaches at least the superblock's commit epoch, or acknowledged commits are missing
//!    and recovery fails.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::LogTail;
use crate::alloc::Location;
use crate::checkpoint::{CheckpointExpect, CheckpointItem, read_checkpoint_items};
use crate::error::{CorruptionKind, Error, Result};
use crate::io::Storage;
use crate::log::{
    DeltaLog, FRAME_BODY_OFFSET, Frame, LogOptions, OnDamage, ReplaySummary, TailState, replay,
};
use crate::meta::{Manifest, Published, manifest_file_name};
use crate::object_table::{NodeId, ObjectTable};
use crate::runtime::RecoveryMode;
use crate::runtime::record::{CommitRecordRef, OpRef};

/// The state replay builds.
pub(super) struct Replayed {
    pub(super) table: ObjectTable,
    /// Root changes are replayed onto a plain map: replay re-applies changes logged since the
    /// checkpoint on top of roots that may be newer, which can pass the 64-root limit for a
    /// moment (a name set and later removed). Only the final catalog must respect it.
    pub(super) roots: BTreeMap<String, u64>,
    /// The checkpoint's epoch: records at or below it are already in the checkpoint.
    pub(super) checkpoint_epoch: u64,
    pub(super) last_epoch: u64,
    pub(super) records: u64,
    /// Payload bytes of the newest version of each node that carried one.
    pub(super) payloads: HashMap<NodeId, (Location, Vec<u8>)>,
}

impl Replayed {
    /// Nothing replayed yet, on top of `roots`.
    pub(super) fn new(roots: BTreeMap<String, u64>) -> Self {
        Replayed {
            table: ObjectTable::new(),
            roots,
            checkpoint_epoch: 0,
            last_epoch: 0,
            records: 0,
            payloads: HashMap::new(),
        }
    }

    /// The epoch the next record must carry (invariant 1).
    fn next_epoch(&self, path: &Path, offset: u64) -> Result<u64> {
        self.last_epoch.checked_add(1).ok_or_else(|| {
            Error::corruption(
                path,
                offset,
                CorruptionKind::InvalidField {
                    field: "commit_record.epoch",
                    value: self.last_epoch,
                },
            )
        })
    }

    fn bad(path: &Path, frame: &Frame, field: &'static str, value: u64) -> Error {
        Error::corruption(
            path,
            frame.offset,
            CorruptionKind::InvalidField { field, value },
        )
    }

    /// Applies one record. Nothing is pinned during recovery, so superseded versions and retired
    /// nodes are dropped at once.
    pub(super) fn apply(&mut self, path: &Path, frame: &Frame) -> Result<()> {
        let body_offset = frame.offset + FRAME_BODY_OFFSET as u64;
        let record = CommitRecordRef::decode(&frame.body, path, body_offset)?;
        if record.epoch <= self.checkpoint_epoch {
            // Already in the checkpoint (a log may start before the checkpoint's epoch).
            return Ok(());
        }
        let expected = self.next_epoch(path, frame.offset)?;
        if record.epoch != expected {
            return Err(Error::corruption(
                path,
                frame.offset,
                CorruptionKind::Mismatch {
                    what: "commit_record.epoch",
                    expected,
                    actual: record.epoch,
                },
            ));
        }
        let guard = crossbeam_epoch::pin();
        for op in &record.ops {
            self.apply_op(path, frame, record.epoch, op, &guard)?;
        }
        self.last_epoch = record.epoch;
        self.records += 1;
        Ok(())
    }

    fn apply_op(
        &mut self,
        path: &Path,
        frame: &Frame,
        epoch: u64,
        op: &OpRef<'_>,
        guard: &crossbeam_epoch::Guard,
    ) -> Result<()> {
        match op {
            OpRef::New(v) => {
                self.table
                    .restore(v.id, v.version(epoch), None)
                    .map_err(|_| Self::bad(path, frame, "op.node_id", v.id.raw()))?;
                self.track_payload(v.id, v.location, v.payload);
            }
            OpRef::Update(v) => {
                self.table
                    .update(v.id, v.version(epoch), guard)
                    .map_err(|_| Self::bad(path, frame, "op.node_id", v.id.raw()))?;
                self.table.trim(v.id, u64::MAX, guard)?;
                self.track_payload(v.id, v.location, v.payload);
            }
            OpRef::Retire(id) => {
                self.table
                    .retire(*id, epoch)
                    .and_then(|()| self.table.reclaim(*id, guard))
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

/// RV4: loads the checkpoint the manifest names (its live nodes, and the tags of its free
/// handles, so ids issued before the restart stay stale after it).
pub(super) fn load_checkpoint(
    storage: &dyn Storage,
    dir: &Path,
    manifest: &Manifest,
    replayed: &mut Replayed,
) -> Result<()> {
    let Some(ck) = &manifest.checkpoint else {
        return Ok(());
    };
    let path = dir.join(&ck.file);
    let expect = CheckpointExpect::from_manifest_ref(ck).ok_or_else(|| {
        Error::corruption(
            dir.join(manifest_file_name(manifest.seq)),
            0,
            CorruptionKind::InvalidDocument {
                reason: format!("checkpoint file name {:?}", ck.file),
            },
        )
    })?;
    let table = &replayed.table;
    read_checkpoint_items(storage, &path, Some(&expect), |item| match item {
        CheckpointItem::Live(e) => table.restore(e.id, e.version, None),
        CheckpointItem::Free(id) => table.restore_free(id),
        CheckpointItem::Exhausted(id) => table.restore_exhausted(id),
    })?;
    replayed.last_epoch = ck.epoch;
    replayed.checkpoint_epoch = ck.epoch;
    Ok(())
}

/// RV5: replays the closed logs whole and the open log up to its stop, judged by `mode`;
/// returns the open log, ready for appends, and what its tail held. Fails unless replay reaches
/// the superblock's commit epoch.
pub(super) fn replay_logs(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    published: &Published,
    options: LogOptions,
    mode: RecoveryMode,
    replayed: &mut Replayed,
) -> Result<(DeltaLog, LogTail)> {
    let manifest = &published.manifest;
    let Some((last, earlier)) = manifest.delta_logs.split_last() else {
        return Err(Error::corruption(
            dir.join(manifest_file_name(manifest.seq)),
            0,
            CorruptionKind::InvalidDocument {
                reason: "no delta log".into(),
            },
        ));
    };
    for l in earlier {
        let path = dir.join(&l.file);
        let summary = replay(storage.as_ref(), &path, |f| replayed.apply(&path, f))?;
        if let TailState::Torn { offset, kind, .. } | TailState::Damaged { offset, kind, .. } =
            summary.tail
        {
            // Invariant 2.
            return Err(Error::corruption(path, offset, kind));
        }
    }
    let path = dir.join(&last.file);
    let on_damage = match mode {
        RecoveryMode::Strict => OnDamage::Refuse,
        RecoveryMode::TruncateDamagedLog => OnDamage::Cut,
    };
    let mut last_dropped: Option<u64> = None;
    let (log, summary) = DeltaLog::open_with(
        storage.clone(),
        dir,
        last.seq,
        options,
        on_damage,
        |f| replayed.apply(&path, f),
        |f| last_dropped = last_dropped.max(record_epoch(&path, f)),
    )?;
    let tail = judge_tail(&path, &summary, replayed.last_epoch, last_dropped);
    // Invariant 4: everything up to the superblock's epoch was durable when it was published.
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
    Ok((log, tail))
}

/// What the open log's tail held, for the report (the cut itself is `DeltaLog::open`'s).
/// `last_dropped` is the largest epoch among the frames cut past damage.
fn judge_tail(
    path: &Path,
    summary: &ReplaySummary,
    last_epoch: u64,
    last_dropped: Option<u64>,
) -> LogTail {
    match &summary.tail {
        TailState::Clean => LogTail::Clean,
        TailState::Sealed => LogTail::Sealed,
        TailState::Torn { offset, kind, past } => {
            tracing::info!(
                file = %path.display(), offset, %kind, frames_past = past.len(),
                "cut the delta log's torn tail (never acknowledged)"
            );
            LogTail::TornCut {
                file: path.to_path_buf(),
                offset: *offset,
                frames_dropped: past.len() as u64,
            }
        }
        TailState::Damaged {
            offset, kind, past, ..
        } => {
            let first = last_epoch.saturating_add(1);
            let dropped = LogTail::DamageTruncated {
                file: PathBuf::from(path),
                offset: *offset,
                kind: kind.clone(),
                frames_past: past.len() as u64,
                bytes_dropped: past.last().map_or(0, |p| p.end().saturating_sub(*offset)),
                first_epoch_dropped: first,
                last_epoch_dropped: last_dropped.unwrap_or(first).max(first),
            };
            tracing::error!(
                report = ?dropped,
                "recovery cut the delta log at damage to durable frames, as \
                 RecoveryMode::TruncateDamagedLog asks: the commits listed were dropped"
            );
            dropped
        }
    }
}

/// The commit epoch of the record in `frame`, if it decodes.
fn record_epoch(path: &Path, frame: &Frame) -> Option<u64> {
    let body_offset = frame.offset + FRAME_BODY_OFFSET as u64;
    CommitRecordRef::decode(&frame.body, path, body_offset)
        .ok()
        .map(|r| r.epoch)
}
