//! Checkpoints: a complete object-table image at one epoch, after which older logs can go.
//!
//! Steps (`design/DURABILITY.md` §6, K1–K6), writers running throughout except in K1:
//! K1 under the append-order and commit locks: append every buffered record, sync the log,
//!    rotate to a new log starting at epoch E+1, and publish a manifest naming it (the old log
//!    closed at E); after the locks, mark E durable and visible;
//! K2 still under the commit lock, pin a snapshot at E so the versions it sees are not reclaimed
//!    while written;
//! K3 make every data file durable (BALANCED payload bytes included);
//! K4 write the checkpoint file (temp, sync, rename, directory sync);
//! K5 publish a manifest naming the checkpoint and only the logs after E;
//! K6 retire the old logs (one becomes the spare log, `log::retire_log`) and delete the old
//!    checkpoint, which no manifest in force names any more.

use std::time::Instant;

use super::durable::Inner;
use super::stats::Counters;
use crate::checkpoint::{CheckpointEntry, CheckpointWriter};
use crate::error::Result;
use crate::log::log_file_name;
use crate::meta::{DataFileRef, DeltaLogRef, MetaUpdate};
use crate::object_table::{EntryState, NodeId, TAG_MAX, next_tag};

/// Runs K1–K6.
pub(crate) fn checkpoint(inner: &Inner) -> Result<()> {
    let _one = inner.checkpoint_lock.lock();
    inner.poison.check()?;
    let started = Instant::now();
    let span = tracing::info_span!("checkpoint");
    let _enter = span.enter();
    let engine = inner.engine();
    let poison = |e: crate::Error| {
        inner.poison.poison(&e);
        e
    };

    // K1.
    let (epoch, roots, pinned) = {
        // The lock order everywhere: the append order lock, then the commit lock.
        let _order = inner.append_order.lock();
        let mut st = inner.commit.lock();
        engine.flush_buffer_locked(&mut st)?;
        inner.log.sync().map_err(poison)?;
        let epoch = st.next_epoch - 1;
        // K2, while the commit lock still excludes every later commit: pin `epoch`, so no
        // version visible at it can be reclaimed before K4 has written it out. (Pinning after
        // the lock is released lets a commit at `epoch + 1` supersede and free one first.)
        let pinned = inner.snapshots.pin_with(|| epoch);
        let current = inner.meta.current();
        let mut manifest = (*current.manifest).clone();
        // An open log that holds no record yet (it starts after `epoch`) already begins where
        // the checkpoint ends: rotating would close it with an end before its start.
        let open_log_is_empty = manifest
            .delta_logs
            .last()
            .is_some_and(|l| l.end_epoch.is_none() && l.start_epoch > epoch);
        if !open_log_is_empty {
            let new_seq = manifest.counters.next_log_seq;
            let old_bytes = inner.log.written_position().offset;
            inner.log.rotate(new_seq, epoch + 1).map_err(poison)?;
            if let Some(last) = manifest.delta_logs.last_mut() {
                last.end_epoch = Some(epoch);
                last.bytes = Some(old_bytes);
            }
            manifest.delta_logs.push(DeltaLogRef {
                file: log_file_name(new_seq),
                seq: new_seq,
                start_epoch: epoch + 1,
                end_epoch: None,
                bytes: None,
            });
            manifest.counters.next_log_seq = new_seq + 1;
            inner
                .meta
                .publish(MetaUpdate {
                    commit_epoch: epoch,
                    roots: (*st.roots).clone(),
                    manifest: Some(manifest),
                })
                .map_err(poison)?;
        }
        inner.log_bytes_at_checkpoint.store(
            inner.log.stats().bytes_appended,
            std::sync::atomic::Ordering::Relaxed,
        );
        (epoch, st.roots.clone(), pinned)
    };
    engine.mark_durable(epoch);
    let result = write_and_publish(inner, epoch, &roots);
    drop(pinned);
    result?;
    Counters::add(&inner.counters.checkpoints, 1);
    inner.counters.checkpoint_last_us.store(
        started.elapsed().as_micros() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
    *inner.last_checkpoint.lock() = Instant::now();
    inner
        .checkpointed_epoch
        .fetch_max(epoch, std::sync::atomic::Ordering::AcqRel);
    // Everything reclaimable is free when a checkpoint returns, a pass the reclaimer has in
    // progress included.
    engine.reclaim_ready_now();
    Ok(())
}

/// The raw ids of the checkpoint's entries at `epoch` (K4), each list sorted.
struct EntryIds {
    live: Vec<u64>,
    /// Free handles, the exhausted ones included.
    free: Vec<u64>,
    /// The free handles that issued every tag (each carrying `TAG_MAX`).
    exhausted: Vec<u64>,
}

fn entry_ids(inner: &Inner, epoch: u64) -> EntryIds {
    let guard = crossbeam_epoch::pin();
    let (mut live, mut free, mut exhausted) = (Vec::new(), Vec::new(), Vec::new());
    inner.table.for_each_used(&guard, |shard, handle, view| {
        let id = NodeId::new(shard, handle, view.tag);
        if id.is_some_and(|id| matches!(inner.table.get_at(id, epoch, &guard), Ok(Some(_)))) {
            live.extend(id.map(NodeId::raw));
            return;
        }
        // A FREE entry holds the tag its next node gets; any other entry's id may have been
        // handed out, so its handle's next node gets the tag after it, and a handle with no tag
        // after it is exhausted, like a FREE one already marked so.
        let next = match view.state {
            EntryState::Free if !view.exhausted => Some(view.tag),
            EntryState::Free => None,
            _ => next_tag(view.tag),
        };
        let raw = NodeId::new(shard, handle, next.unwrap_or(TAG_MAX)).map(NodeId::raw);
        if next.is_none() {
            exhausted.extend(raw);
        }
        free.extend(raw);
    });
    drop(guard);
    live.sort_unstable();
    free.sort_unstable();
    exhausted.sort_unstable();
    EntryIds {
        live,
        free,
        exhausted,
    }
}

fn write_and_publish(inner: &Inner, epoch: u64, roots: &crate::meta::RootCatalog) -> Result<()> {
    let poison = |e: crate::Error| {
        inner.poison.poison(&e);
        e
    };
    // The data files and their lengths K5 records, taken before K3's sync: a file's growth
    // marks it dirty before its new length is visible (`DataFiles` invariant 5), so K3 makes
    // every length read here durable. Lengths read after K3 could include growth no sync
    // covered, and a crash would then leave a file shorter than the manifest says.
    let data_files = inner.files.files();
    // K3. Only through `DataSync`: a direct data-file sync would clear the files' dirty flags
    // while its `fdatasync` runs, and a concurrent flush would then skip a sync it needs.
    inner
        .data_sync
        .sync_through(
            inner.files.write_generation(),
            &inner.files,
            &inner.counters,
        )
        .map_err(poison)?;

    // K4: entries in id order, as of `epoch`: every node visible at it, and every other handle
    // ever used as free, with the tag its next node must carry (or as exhausted, if it has
    // issued every tag), so that ids issued before a restart stay stale after it. The table is walked in handle order, but ids order by tag
    // first, so the walk keeps only raw ids (8 bytes per entry, sorted), and the live entries'
    // versions are looked up again while writing: the snapshot pinned at K2 keeps each of them.
    let EntryIds {
        live,
        free,
        exhausted,
    } = entry_ids(inner, epoch);
    let current = inner.meta.current();
    let mut manifest = (*current.manifest).clone();
    let seq = manifest.counters.next_checkpoint_seq;
    let mut writer = CheckpointWriter::create(inner.storage.as_ref(), &inner.dir, seq, epoch)?;
    let (mut l, mut f) = (live.iter().peekable(), free.iter().peekable());
    let mut guard = crossbeam_epoch::pin();
    let mut written = 0usize;
    loop {
        let next_live = match (l.peek(), f.peek()) {
            (None, None) => break,
            (Some(a), Some(b)) => a < b,
            (a, _) => a.is_some(),
        };
        if next_live {
            let raw = l.next().copied().unwrap_or_default();
            let entry = NodeId::from_raw(raw)
                .and_then(|id| Some((id, inner.table.get_at(id, epoch, &guard).ok()??)))
                .map(|(id, version)| CheckpointEntry { id, version });
            let Some(entry) = entry else {
                return Err(crate::Error::InvalidArgument(format!(
                    "internal: node {raw:#x}, visible at checkpoint epoch {epoch} when listed, \
                     is gone while written"
                )));
            };
            writer.push(entry)?;
        } else if let Some(id) = f.next().copied().and_then(NodeId::from_raw) {
            if exhausted.binary_search(&id.raw()).is_ok() {
                writer.push_exhausted(id)?;
            } else {
                writer.push_free(id)?;
            }
        }
        written += 1;
        if written.is_multiple_of(4096) {
            // Not pinned across the writer's I/O for the whole checkpoint.
            guard.repin();
        }
    }
    drop(guard);
    let info = writer.finish()?;

    // K5.
    let old_checkpoint = manifest.checkpoint.replace(info.manifest_ref());
    let (gone, kept): (Vec<DeltaLogRef>, Vec<DeltaLogRef>) = manifest
        .delta_logs
        .drain(..)
        .partition(|l| l.end_epoch.is_some_and(|end| end <= epoch));
    manifest.delta_logs = kept;
    manifest.counters.next_checkpoint_seq = seq + 1;
    manifest.data_files = data_files
        .into_iter()
        .map(|(class, file, bytes)| DataFileRef {
            class: u32::from(class),
            seq: u64::from(file),
            file: crate::alloc::data_file_name(class, file),
            bytes,
        })
        .collect();
    let next_data = manifest
        .data_files
        .iter()
        .map(|d| d.seq + 1)
        .max()
        .unwrap_or(0);
    manifest.counters.next_data_seq = manifest.counters.next_data_seq.max(next_data);
    inner
        .meta
        .publish(MetaUpdate {
            commit_epoch: current.superblock.commit_epoch.max(epoch),
            roots: roots.clone(),
            manifest: Some(manifest),
        })
        .map_err(poison)?;

    // K6: no manifest in force names these any more. One old log becomes the spare the next
    // rotation renames into its new log (its blocks are written, so that log's syncs persist no
    // extent conversions and no zeros need writing ahead); the others are removed.
    for l in gone {
        if let Err(e) = crate::log::retire_log(inner.storage.as_ref(), &inner.dir, l.seq) {
            tracing::warn!(%e, file = %l.file, "could not retire an old log");
        }
    }
    if let Some(old) = old_checkpoint
        && let Err(e) = inner.storage.remove(&inner.dir.join(&old.file))
    {
        tracing::warn!(%e, file = %old.file, "could not remove an old checkpoint");
    }
    Ok(())
}
