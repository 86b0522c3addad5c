//! RV6–RV8: the data files and the allocator after replay, and the bytes recovery itself writes.
//!
//! Invariants:
//! 1. Every data file the manifest names exists (K3 made the entries of the files it synced
//!    durable, and the manifest publish's directory sync those of files created since, before
//!    K5 named them).
//! 2. Disk bytes never make the rebuild allocate without bound: every file is within its size,
//!    every live slot or extent (`round_up(len, 4 KiB)` from its offset) inside a file or at most
//!    [`UNSYNCED_DATA_FILES_MAX`] files past the last that exists.
//! 3. A payload goes back only into a slot its version still owns (a slot freed and reused later
//!    in the log is not overwritten with an old payload), and only after the slot's segment (a
//!    large extent itself) is reserved (a write through a mapping into unreserved blocks would
//!    raise SIGBUS on a full disk instead of an error).
//! 4. What RV7 writes is durable before the runtime accepts anything (RV7's data sync): a
//!    checkpoint after recovery may drop the logs that carried the payloads, so the slots must
//!    hold them durably by then. The data files count every write themselves, so the sync
//!    covers them however they were made.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use super::replay::Replayed;
use crate::alloc::{
    CLASS_COUNT, DataFileOptions, DataFiles, Location, SegmentAllocator, data_file_name,
    parse_data_file_name, segment_bytes,
};
use crate::error::{CorruptionKind, Error, Result};
use crate::io::Storage;
use crate::runtime::engine::DataSync;
use crate::runtime::stats::Counters;

/// How many data files past the last one that exists a live version may name: a file whose
/// creation was not yet durable when the store crashed can hold only payload-only versions, and
/// files are created one after another as the previous one fills.
const UNSYNCED_DATA_FILES_MAX: u64 = 2;

/// RV6: opens the data files (each one the manifest names must exist) and rebuilds the allocator
/// from the live versions.
pub(super) fn rebuild(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    options: DataFileOptions,
    named: &[String],
    replayed: &Replayed,
) -> Result<(DataFiles, SegmentAllocator)> {
    let existing: Vec<(u8, u32)> = storage
        .list(dir)?
        .iter()
        .filter_map(|n| parse_data_file_name(n))
        .collect();
    for name in named {
        if !existing
            .iter()
            .any(|(c, f)| data_file_name(*c, *f) == *name)
        {
            return Err(Error::corruption(
                dir.join(name),
                0,
                CorruptionKind::MissingFile,
            ));
        }
    }
    let files = DataFiles::open(storage.clone(), dir, options, &existing)?;
    let live = live_locations(replayed);
    let segments = check_bounds(dir, options.alloc.file_bytes_max, &files, &live)?;
    let alloc =
        SegmentAllocator::rebuild(options.alloc, &segments, live.iter().copied()).map_err(|e| {
            Error::corruption(
                dir.to_path_buf(),
                0,
                CorruptionKind::InvalidDocument {
                    reason: e.to_string(),
                },
            )
        })?;
    Ok((files, alloc))
}

/// The location and length of every live node's current version: what its slot or extent is.
fn live_locations(replayed: &Replayed) -> Vec<(Location, u64)> {
    let guard = crossbeam_epoch::pin();
    let mut live = Vec::new();
    replayed.table.for_each(&guard, |_, view| {
        if let Some(v) = view.current {
            live.push((v.location, u64::from(v.len)));
        }
    });
    live
}

/// Invariant 2; returns how many segments each class spans (files and live slots).
fn check_bounds(
    dir: &Path,
    per_file_bytes: u64,
    files: &DataFiles,
    live: &[(Location, u64)],
) -> Result<[u64; CLASS_COUNT]> {
    let mut files_per_class = [0u64; CLASS_COUNT];
    let mut segments = [0u64; CLASS_COUNT];
    for (class, file, len) in files.files() {
        if len > per_file_bytes {
            return Err(Error::corruption(
                dir.join(data_file_name(class, file)),
                0,
                CorruptionKind::InvalidField {
                    field: "data file length",
                    value: len,
                },
            ));
        }
        files_per_class[usize::from(class)] += 1;
        let n = (u64::from(file) * per_file_bytes + len).div_ceil(segment_bytes(class));
        segments[usize::from(class)] = segments[usize::from(class)].max(n);
    }
    for &(l, len) in live {
        let class = usize::from(l.class);
        let beyond = u64::from(l.file) >= files_per_class[class] + UNSYNCED_DATA_FILES_MAX;
        let end = l.offset.checked_add(l.slot_bytes(len));
        if beyond || end.is_none_or(|end| end > per_file_bytes) {
            return Err(Error::corruption(
                dir.join(data_file_name(l.class, l.file)),
                l.offset,
                CorruptionKind::InvalidField {
                    field: "op.location",
                    value: l.pack(),
                },
            ));
        }
        let n = (u64::from(l.file) * per_file_bytes + l.offset) / segment_bytes(l.class) + 1;
        segments[class] = segments[class].max(n);
    }
    Ok(segments)
}

/// RV7: writes the payloads of versions that are still current back into their slots
/// (invariant 3), then makes them durable (invariant 4). Returns how many it wrote.
pub(super) fn write_back(
    replayed: &Replayed,
    files: &DataFiles,
    data_sync: &DataSync,
    counters: &Counters,
) -> Result<u64> {
    let guard = crossbeam_epoch::pin();
    let mut reserved = HashSet::new();
    let mut written = 0u64;
    for (id, (location, bytes)) in &replayed.payloads {
        let current = replayed.table.get(*id, &guard).ok();
        if current.is_some_and(|v| v.location == *location) {
            // One reservation per segment, not per payload (a large extent is its own).
            let range = DataFiles::reservation(*location, bytes.len() as u64);
            if reserved.insert((range.class, range.file, range.offset)) {
                files.back(&range)?;
            }
            files.write(*location, bytes)?;
            written += 1;
        }
    }
    data_sync.sync_through(files.write_generation(), files, counters)?;
    Ok(written)
}

/// RV8: punches out every wholly free segment (freed before the crash but not yet punched, or
/// never used): no live version lies in one, so no later recovery can name a slot in it. A punch
/// that a crash undoes only brings back bytes nothing references.
pub(super) fn punch_free(alloc: &SegmentAllocator, files: &DataFiles) -> Result<()> {
    alloc
        .return_empty(usize::MAX, 0, |seg| files.punch(seg))
        .map(|_| ())
}
