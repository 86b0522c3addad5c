//! Log files on disk: creating one durably (steps L1–L4 of `design/DURABILITY.md` §4), from the
//! spare when there is one, and retiring one into the spare (Y1–Y2).

use std::path::Path;
use std::sync::Arc;

use super::format::{
    FrameSeed, LOG_HEADER_BYTES, LogHeader, SEAL_BYTES, SPARE_LOG_FILE, log_file_name,
};
use super::pending::{DirectAppend, Pending, ZERO_BLOCK_BYTES};
use super::writer::{LogOptions, Tail};
use crate::codec::align_down;
use crate::error::Result;
use crate::io::{Storage, StorageFile};

/// The offset of the first frame.
pub(super) const fn header_end() -> u64 {
    LOG_HEADER_BYTES as u64
}

/// Where appends to a log file start, and what lies ahead of them.
pub(super) struct Placed {
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) seq: u64,
    pub(super) seed: FrameSeed,
    pub(super) next_index: u64,
    /// Where the next frame goes.
    pub(super) end: u64,
    /// Bytes below this offset are written blocks (frames, zeros, or a recycled log's frames), so
    /// frames landing there are plain overwrites and need no preallocation.
    pub(super) written_end: u64,
    /// Bytes of an earlier log lie below this offset (a recycled file); 0 otherwise.
    pub(super) stale_end: u64,
}

impl Placed {
    pub(super) fn tail(&self) -> Tail {
        Tail {
            file: Arc::clone(&self.file),
            seq: self.seq,
            seed: self.seed,
            next_index: self.next_index,
            end: self.end,
            allocated_end: self.written_end.max(self.end),
            sealed: false,
        }
    }

    pub(super) fn pending(&self, options: &LogOptions) -> Result<Pending> {
        let mut p = Pending::new(
            Arc::clone(&self.file),
            self.seq,
            self.end,
            options.zero_ahead_bytes,
        );
        p.zeroed_end = self.written_end.max(self.end);
        p.allocated_end = p.zeroed_end;
        p.stale_end = self.stale_end;
        if options.direct_io {
            p.direct = DirectAppend::of(self.file.as_ref(), self.end)?;
        }
        Ok(p)
    }
}

/// A log file [`create_file`] made.
pub(super) struct MadeFile {
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) seed: FrameSeed,
    /// The file's length: all written blocks when it was the spare, else the header's end.
    pub(super) written_end: u64,
    /// The spare's length when the file was the spare (its bytes past the header are an
    /// earlier log's), else 0.
    pub(super) stale_end: u64,
}

/// Creates log file `seq` durably: the spare renamed to it if there is one (R4a), else a new file
/// (L1); then the header, `sync_data`, `sync_dir` (L2–L4). Also says whether the file now exists,
/// so a failure after that point can remove it.
pub(super) fn create_file(
    storage: &dyn Storage,
    dir: &Path,
    seq: u64,
    start_epoch: u64,
) -> (Result<MadeFile>, bool) {
    let path = dir.join(log_file_name(seq));
    let spare = dir.join(SPARE_LOG_FILE);
    let (opened, recycled) = match storage.exists(&spare) {
        Ok(true) => (
            storage
                .rename(&spare, &path)
                .and_then(|()| storage.open(&path)),
            true,
        ),
        Ok(false) => (storage.create(&path), false),
        Err(e) => (Err(e), false),
    };
    let file = match opened {
        Ok(file) => file,
        // A failed rename leaves the spare as it was; a failed open after it leaves the file
        // under the new name, which the caller removes.
        Err(e) => return (Err(e), storage.exists(&path).unwrap_or(false)),
    };
    let header = LogHeader::new(seq, start_epoch);
    let mut bytes = header.encode().to_vec();
    if recycled {
        // The end mark (as after every write-out among an earlier log's bytes): an empty log
        // replays to its header's end, not to a frame of the spare's that does not decode.
        bytes.resize(LOG_HEADER_BYTES + SEAL_BYTES, 0);
    }
    let result = file
        .write_at(&bytes, 0)
        .and_then(|()| file.sync_data())
        .and_then(|()| storage.sync_dir(dir))
        .and_then(|()| file.len())
        .map(|len| MadeFile {
            file,
            seed: header.frame_seed(),
            // A whole number of 4 KiB blocks (preallocation extends past it in whole blocks,
            // so a direct write's padded last block never grows the file).
            written_end: align_down(len, ZERO_BLOCK_BYTES).max(header_end()),
            stale_end: if recycled { len } else { 0 },
        });
    (result, true)
}

/// Retires closed log `seq`, which no manifest names any more (after a checkpoint): it becomes
/// the spare that the next rotation renames into the new log (`design/DURABILITY.md` §4,
/// "Recycle"), or is removed when a spare already exists. Nothing needs it to be durable: after
/// a crash either name holds bytes no manifest names.
pub fn retire_log(storage: &dyn Storage, dir: &Path, seq: u64) -> Result<()> {
    let path = dir.join(log_file_name(seq));
    let spare = dir.join(SPARE_LOG_FILE);
    if storage.exists(&spare)? {
        storage.remove(&path)
    } else {
        storage.rename(&path, &spare)
    }
}

/// Best-effort removal of a log file whose creation failed part way.
pub(super) fn discard(storage: &dyn Storage, dir: &Path, seq: u64) {
    let path = dir.join(log_file_name(seq));
    if let Err(e) = storage.remove(&path) {
        tracing::warn!(path = %path.display(), error = %e, "could not remove a half-created log");
    }
}
