//! [`DeltaLog`]: the appender, with group commit (see `commit.rs`) and rotation; its pending
//! frames and their write-outs are `pending.rs`, its files' creation and retirement `files.rs`.
//!
//! Three locks, always taken in this order, keep the writer correct: the *append lock* (`tail`)
//! places a frame (index, offset) and seals it into the pending frames; the *pending lock* guards
//! those frames until a sync's leader (or an append past 256 KiB) writes them out with one
//! `write_at`, so frames reach the file in index order with no gap before any of them; the
//! group-commit lock guards the published positions and is never held across I/O. A leader takes
//! the pending lock alone, never while waiting for anything. The steps L, A, W, S, R and O cited in
//! comments are those of `design/DURABILITY.md` §4.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::commit::GroupCommit;
use super::format::{
    FRAME_BODY_BYTES_MAX, FrameBuf, FrameSeed, HEADER_LOG_SEQ_OFFSET, SEAL_BYTES, encode_seal,
    log_file_name,
};
use super::reader::{Frame, ReplaySummary, TailState, read_header, read_past_frame, replay_file};
use crate::error::{CorruptionKind, Error, Result};
use super::files::{Placed, create_file, discard, header_end};
use super::pending::{PENDING_BYTES_MAX, Pending, ZERO_BLOCK_BYTES};
use crate::io::{Storage, StorageFile};

/// The largest `preallocate_bytes` accepted (1 GiB): more would only waste disk.
pub const PREALLOCATE_BYTES_MAX: u64 = 1 << 30;

/// Tuning of the delta log (`DeltaLog`): its preallocation, largest frame and zeros written ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOptions {
    /// How far ahead of the last frame the file's blocks are reserved, so appends neither grow
    /// the file one frame at a time nor discover a full disk while writing a frame. Zero turns
    /// preallocation off (a full disk then fails a frame write, which poisons the log).
    pub preallocate_bytes: u64,
    /// The largest body `append` accepts, at most 64 MiB (`FRAME_BODY_BYTES_MAX`).
    pub frame_body_bytes_max: u32,
    /// How far past the last frame a write-out also writes zeros, within the preallocated
    /// blocks, whenever fewer than half this many written bytes lie ahead of it (W1). Preallocated
    /// blocks are *unwritten* extents: a sync after the first write into one must also persist
    /// its conversion, a metadata write that measured 1.4x–2x a small commit's `fdatasync` on
    /// ext4. Frames that land on zeros already written are plain overwrites, so the conversion is
    /// paid once per `zero_ahead_bytes / 2` of log instead of on most syncs. Zero turns it off;
    /// at most `preallocate_bytes` is used.
    pub zero_ahead_bytes: u64,
    /// Write frames with direct I/O (`O_DIRECT`) where the storage offers it
    /// ([`StorageFile::direct_writer`]): each write-out writes whole logical blocks (512 bytes on
    /// most devices) from the last one the previous write-out left partly filled, instead of the
    /// 4 KiB pages the page cache would write back, so a small commit's log sync writes little
    /// more than its record. Default on; where the filesystem refuses `O_DIRECT` the log writes
    /// through the page cache as with this off.
    pub direct_io: bool,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            preallocate_bytes: 16 << 20,
            frame_body_bytes_max: FRAME_BODY_BYTES_MAX,
            zero_ahead_bytes: 256 << 10,
            direct_io: true,
        }
    }
}

impl LogOptions {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<()> {
        if !(1..=FRAME_BODY_BYTES_MAX).contains(&self.frame_body_bytes_max) {
            return Err(Error::InvalidArgument(format!(
                "frame_body_bytes_max must be in 1..={FRAME_BODY_BYTES_MAX}, not {}",
                self.frame_body_bytes_max
            )));
        }
        if self.zero_ahead_bytes > PREALLOCATE_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "zero_ahead_bytes must be at most {PREALLOCATE_BYTES_MAX}, not {}",
                self.zero_ahead_bytes
            )));
        }
        if self.preallocate_bytes > PREALLOCATE_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "preallocate_bytes must be at most {PREALLOCATE_BYTES_MAX}, not {}",
                self.preallocate_bytes
            )));
        }
        Ok(())
    }
}

/// What [`DeltaLog::open_with`] does when replay stops at damage that a later frame proves was
/// durable ([`TailState::Damaged`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Fail the open with [`Error::Corruption`] at the damaged frame; change nothing.
    Refuse,
    /// Cut the log at the damaged frame, as a torn tail is cut (the caller reports what the
    /// summary says was dropped).
    Cut,
}

/// A place in the log: the end of a frame in log file `seq`. Ordered by file, then offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition {
    /// The log file's sequence number.
    pub seq: u64,
    /// A byte offset in that file.
    pub offset: u64,
}

/// Counters of what a [`DeltaLog`] has done since it was created or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LogStats {
    /// Frames appended.
    pub frames_appended: u64,
    /// Body bytes appended (headers and padding not included).
    pub bytes_appended: u64,
    /// `sync_data` calls made to make frames durable: group-commit syncs and the final sync of a
    /// file at rotation. The header syncs of file creation and the tail-cut sync of `open` are not
    /// counted.
    pub syncs: u64,
    /// Zero bytes written ahead of the frames (see [`LogOptions::zero_ahead_bytes`]).
    pub zero_bytes_written: u64,
}

/// Where the next frame goes; guarded by the append lock.
#[derive(Debug)]
pub(super) struct Tail {
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) seq: u64,
    /// What this log's frame checksums start from.
    pub(super) seed: FrameSeed,
    pub(super) next_index: u64,
    pub(super) end: u64,
    pub(super) allocated_end: u64,
    /// A seal follows the last frame ([`DeltaLog::seal`]): nothing more may be appended.
    pub(super) sealed: bool,
}

impl Tail {
    /// `Err` once the log is sealed.
    fn check_open(&self) -> Result<()> {
        if self.sealed {
            return Err(Error::InvalidArgument(format!(
                "log {} is sealed (closed cleanly); reopen it to append",
                self.seq
            )));
        }
        Ok(())
    }
}

/// The delta log's writer. Thread-safe: every method takes `&self`.
#[derive(Debug)]
pub struct DeltaLog {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: LogOptions,
    tail: Mutex<Tail>,
    pending: Mutex<Pending>,
    commit: GroupCommit,
    frames_appended: AtomicU64,
    bytes_appended: AtomicU64,
}

const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<DeltaLog>();
};

impl DeltaLog {
    /// Creates log file `seq` in `dir` and makes it durable (header synced, then the directory
    /// entry synced) before returning, so nothing can come to depend on a log that a crash could
    /// make disappear.
    pub fn create(
        storage: Arc<dyn Storage>,
        dir: &Path,
        seq: u64,
        start_epoch: u64,
        options: LogOptions,
    ) -> Result<DeltaLog> {
        options.validate()?;
        let (made, created) = create_file(storage.as_ref(), dir, seq, start_epoch);
        let made = made.inspect_err(|_| {
            // No log exists until `create` returns; removing the half-made file lets a retry use
            // the same sequence number.
            if created {
                discard(storage.as_ref(), dir, seq);
            }
        })?;
        tracing::debug!(dir = %dir.display(), seq, start_epoch, "log created");
        DeltaLog::with_file(
            storage,
            dir,
            options,
            Placed {
                file: made.file,
                seq,
                seed: made.seed,
                next_index: 0,
                end: header_end(),
                written_end: made.written_end,
                stale_end: made.stale_end,
            },
        )
    }

    /// Opens existing log file `seq` in `dir`: replays it, calling `visit` for every valid frame in
    /// order, then cuts the file at the end of the last valid frame and syncs that before
    /// returning, so bytes past it (a torn frame, stale data) can never be read as part of the
    /// log once new frames are appended after it. Damage that later frames prove was durable
    /// ([`TailState::Damaged`]) fails the open with [`Error::Corruption`] at the damaged frame,
    /// and nothing is cut (see [`DeltaLog::open_with`] to cut it anyway).
    ///
    /// The caller must not act on what `visit` saw until this returns `Ok`: the replayed frames are
    /// durable only once the tail cut's sync has succeeded.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        seq: u64,
        options: LogOptions,
        visit: impl FnMut(&Frame) -> Result<()>,
    ) -> Result<(DeltaLog, ReplaySummary)> {
        DeltaLog::open_with(storage, dir, seq, options, OnDamage::Refuse, visit, |_| {})
    }

    /// [`DeltaLog::open`], saying what to do about damage to durable frames. With
    /// [`OnDamage::Cut`], `dropped` is called for every valid frame past the damage, before the
    /// cut removes them, so the caller can report exactly what it drops.
    pub fn open_with(
        storage: Arc<dyn Storage>,
        dir: &Path,
        seq: u64,
        options: LogOptions,
        on_damage: OnDamage,
        visit: impl FnMut(&Frame) -> Result<()>,
        mut dropped: impl FnMut(&Frame),
    ) -> Result<(DeltaLog, ReplaySummary)> {
        options.validate()?;
        // O1.
        let path = dir.join(log_file_name(seq));
        let file = storage.open(&path)?;
        let header = read_header(file.as_ref())?;
        if header.log_seq != seq {
            return Err(Error::corruption(
                &path,
                HEADER_LOG_SEQ_OFFSET as u64,
                CorruptionKind::Mismatch {
                    what: "log_header.log_seq",
                    expected: seq,
                    actual: header.log_seq,
                },
            ));
        }
        // O2.
        let summary = replay_file(file.as_ref(), visit)?;
        if let (TailState::Damaged { offset, kind, .. }, OnDamage::Refuse) =
            (&summary.tail, on_damage)
        {
            // Left as it is: the frames past the damage are the evidence.
            return Err(Error::corruption(&path, *offset, kind.clone()));
        }
        let seed = header.frame_seed();
        if let TailState::Damaged { past, .. } = &summary.tail {
            for p in past {
                if let Some(frame) = read_past_frame(file.as_ref(), seed, p)? {
                    dropped(&frame);
                }
            }
        }
        let file_len = file.len()?;
        // O3 and O4. The cut is unconditional: even a file that already ends at `valid_end` may
        // hold frames that reached only the page cache (a process crash rather than a power loss),
        // and the sync makes them durable before any caller acts on them.
        file.set_len(summary.valid_end)?;
        file.sync_data()?;
        if file_len != summary.valid_end {
            tracing::info!(
                path = %path.display(), valid_end = summary.valid_end, file_len,
                tail = ?summary.tail, "cut the log's tail"
            );
        }
        // O5.
        let log = DeltaLog::with_file(
            storage,
            dir,
            options,
            Placed {
                file,
                seq,
                seed,
                next_index: summary.frames,
                end: summary.valid_end,
                written_end: summary.valid_end,
                stale_end: 0,
            },
        )?;
        Ok((log, summary))
    }

    fn with_file(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: LogOptions,
        placed: Placed,
    ) -> Result<DeltaLog> {
        let position = LogPosition {
            seq: placed.seq,
            offset: placed.end,
        };
        let file = Arc::clone(&placed.file);
        let pending = placed.pending(&options)?;
        Ok(DeltaLog {
            storage,
            dir: dir.to_path_buf(),
            options,
            tail: Mutex::new(placed.tail()),
            pending: Mutex::new(pending),
            commit: GroupCommit::new(file, position),
            frames_appended: AtomicU64::new(0),
            bytes_appended: AtomicU64::new(0),
        })
    }

    /// Appends one frame carrying `body` (1..=`frame_body_bytes_max` bytes) and returns the
    /// position of its end. The frame is appended (perhaps still pending in memory, written out by
    /// the next sync) but not durable: pass the position to [`DeltaLog::sync_to`] before
    /// acknowledging anything that depends on it.
    ///
    /// A failure to reserve space (a full disk) changes nothing and leaves the log usable; a
    /// failed frame write poisons it, since the file may now hold part of a frame.
    pub fn append(&self, body: &[u8]) -> Result<LogPosition> {
        if body.is_empty() || body.len() > self.options.frame_body_bytes_max as usize {
            return Err(Error::InvalidArgument(format!(
                "a frame body must hold 1..={} bytes, not {}",
                self.options.frame_body_bytes_max,
                body.len()
            )));
        }
        self.commit.check()?;
        // A1: the body is copied (and, if large, checksummed) before the lock.
        let mut frame = FrameBuf::new(body)?;
        // A2.
        let mut tail = self.tail.lock();
        self.commit.check()?;
        tail.check_open()?;
        let end = tail.end.checked_add(frame.len()).ok_or_else(|| {
            Error::InvalidArgument("the log file would exceed 2^64 bytes".to_owned())
        })?;
        if end > tail.allocated_end {
            // A3.
            self.preallocate(&mut tail, end)?;
        }
        // A4: sealed into the pending frames, which the next sync writes out (or this append,
        // once they pass PENDING_BYTES_MAX).
        {
            let mut pending = self.pending.lock();
            let durable_end = self.commit.durable_offset();
            pending
                .bytes
                .extend_from_slice(frame.seal(tail.seed, tail.next_index, durable_end));
            if pending.bytes.len() >= PENDING_BYTES_MAX {
                pending.write_out(&self.commit)?;
            }
        }
        tail.end = end;
        tail.next_index += 1;
        let position = LogPosition {
            seq: tail.seq,
            offset: end,
        };
        // A5: counted while the append lock is still held.
        self.commit.note_appended(1, position);
        drop(tail);
        self.frames_appended.fetch_add(1, Ordering::Relaxed);
        self.bytes_appended
            .fetch_add(u64::from(frame.body_bytes()), Ordering::Relaxed);
        Ok(position)
    }

    /// Makes sure the file's blocks are reserved for `bytes` more bytes of frames past the current
    /// end, so appends up to that size cannot fail for lack of space. Fails (without poisoning)
    /// when the disk is full; reserves nothing past what preallocation would.
    pub fn reserve(&self, bytes: u64) -> Result<()> {
        self.commit.check()?;
        let mut tail = self.tail.lock();
        tail.check_open()?;
        let end = tail.end.checked_add(bytes).ok_or_else(|| {
            Error::InvalidArgument("the log file would exceed 2^64 bytes".to_owned())
        })?;
        if end > tail.allocated_end {
            self.preallocate(&mut tail, end)?;
        }
        Ok(())
    }

    /// Appends several frames, in order, with one write; returns the end of the last (`None` for
    /// no bodies). Each body follows the rules of [`DeltaLog::append`]; a bad one fails the batch
    /// before anything is written. A failed preallocation appends nothing and does not poison; a
    /// failed write poisons, as for a single frame.
    pub fn append_batch<B: AsRef<[u8]>>(&self, bodies: &[B]) -> Result<Option<LogPosition>> {
        if bodies.is_empty() {
            return Ok(None);
        }
        let max = self.options.frame_body_bytes_max as usize;
        let mut frames = Vec::with_capacity(bodies.len());
        for body in bodies {
            let body = body.as_ref();
            if body.is_empty() || body.len() > max {
                return Err(Error::InvalidArgument(format!(
                    "a frame body must hold 1..={max} bytes, not {}",
                    body.len()
                )));
            }
            frames.push(FrameBuf::new(body)?);
        }
        self.commit.check()?;
        let total: u64 = frames.iter().map(FrameBuf::len).sum();
        let mut tail = self.tail.lock();
        self.commit.check()?;
        tail.check_open()?;
        let end = tail.end.checked_add(total).ok_or_else(|| {
            Error::InvalidArgument("the log file would exceed 2^64 bytes".to_owned())
        })?;
        if end > tail.allocated_end {
            self.preallocate(&mut tail, end)?;
        }
        // Written out at once, with any frames still pending: one write.
        {
            let mut pending = self.pending.lock();
            let durable_end = self.commit.durable_offset();
            for (i, frame) in frames.iter_mut().enumerate() {
                pending.bytes.extend_from_slice(frame.seal(
                    tail.seed,
                    tail.next_index + i as u64,
                    durable_end,
                ));
            }
            pending.write_out(&self.commit)?;
        }
        tail.end = end;
        tail.next_index += frames.len() as u64;
        let position = LogPosition {
            seq: tail.seq,
            offset: end,
        };
        self.commit.note_appended(frames.len() as u64, position);
        drop(tail);
        self.frames_appended
            .fetch_add(frames.len() as u64, Ordering::Relaxed);
        let body_bytes: u64 = frames.iter().map(|f| u64::from(f.body_bytes())).sum();
        self.bytes_appended.fetch_add(body_bytes, Ordering::Relaxed);
        Ok(Some(position))
    }

    /// Reserves the file's blocks up to at least `needed_end`, a whole `preallocate_bytes` chunk
    /// at a time. Nothing is advanced if it fails.
    ///
    /// The blocks are reserved with `allocate` (`fallocate`), which is cheap but leaves
    /// unwritten extents; W1 writes zeros a little ahead of the frames
    /// ([`LogOptions::zero_ahead_bytes`]) so that syncs do not also persist extent conversions.
    /// Measured on ext4 (2-vCPU VM), 1 KiB commits of a FasterLog: p50 137-150 us with unwritten
    /// blocks under the frames, 96-107 us with zeros written ahead, against 95-106 us for a raw
    /// 1 KiB overwrite plus `fdatasync`.
    fn preallocate(&self, tail: &mut Tail, needed_end: u64) -> Result<()> {
        if self.options.preallocate_bytes == 0 {
            return Ok(());
        }
        // Ends on a whole 4 KiB block, so a direct write-out's last block, padded with zeros,
        // never passes it (the file's length changes only here).
        let target = tail
            .allocated_end
            .saturating_add(self.options.preallocate_bytes)
            .max(needed_end)
            .next_multiple_of(ZERO_BLOCK_BYTES);
        let len = target.saturating_sub(tail.allocated_end);
        tail.file.allocate(tail.allocated_end, len)?;
        self.pending.lock().allocated_end = target;
        tracing::trace!(
            seq = tail.seq,
            from = tail.allocated_end,
            len,
            "log preallocated"
        );
        tail.allocated_end = target;
        Ok(())
    }

    /// Returns once everything up to `pos` (a position `append` returned) is durable.
    ///
    /// Group commit: a caller that finds no sync covering `pos` and none in flight becomes the
    /// leader, syncs everything written so far with one `sync_data`, and publishes the new durable
    /// position; callers arriving meanwhile wait for that sync and return at once if it covered
    /// them. A failed sync poisons the log.
    pub fn sync_to(&self, pos: LogPosition) -> Result<()> {
        self.commit
            .sync_to(pos, &|| self.pending.lock().write_out(&self.commit))
    }

    /// Makes everything appended so far durable and returns the position it covered.
    pub fn sync(&self) -> Result<LogPosition> {
        let pos = self.appended_position();
        self.sync_to(pos)?;
        Ok(pos)
    }

    /// Closes the current file and continues in new log file `new_seq` (which must be larger),
    /// whose first frame applies on top of `start_epoch`.
    ///
    /// Under the append lock: the current file is trimmed to its last frame and synced (so every
    /// position in it is durable), the new file is created durably, then appends switch to it.
    pub fn rotate(&self, new_seq: u64, start_epoch: u64) -> Result<()> {
        // R1.
        self.commit.check()?;
        let mut tail = self.tail.lock();
        self.commit.check()?;
        tail.check_open()?;
        if new_seq <= tail.seq {
            return Err(Error::InvalidArgument(format!(
                "rotate to log {new_seq} after log {}: sequence numbers must increase",
                tail.seq
            )));
        }
        // R2: every frame appended is written out; only preallocated zeros lie past `end`, and
        // returning them keeps closed logs small.
        self.pending.lock().write_out(&self.commit)?;
        if tail.allocated_end > tail.end {
            tail.file.set_len(tail.end)?;
            tail.allocated_end = tail.end;
        }
        // R3.
        let end = LogPosition {
            seq: tail.seq,
            offset: tail.end,
        };
        self.commit.sync_file(tail.file.as_ref(), end)?;
        // R4.
        let (made, created) = create_file(self.storage.as_ref(), &self.dir, new_seq, start_epoch);
        let made = match made {
            Ok(made) => made,
            Err(e) if e.is_sync_failure() => return Err(self.commit.poison_with(e)),
            Err(e) => {
                // Nothing depends on the new file yet; removing it lets a retry reuse `new_seq`.
                if created {
                    discard(self.storage.as_ref(), &self.dir, new_seq);
                }
                return Err(e);
            }
        };
        let start = LogPosition {
            seq: new_seq,
            offset: header_end(),
        };
        let placed = Placed {
            file: made.file,
            seq: new_seq,
            seed: made.seed,
            next_index: 0,
            end: start.offset,
            written_end: made.written_end,
            stale_end: made.stale_end,
        };
        let next = match placed.pending(&self.options) {
            Ok(next) => next,
            Err(e) => {
                // Nothing is appended to the new file yet: removing it lets a retry reuse
                // `new_seq`, and appends stay on the old file.
                discard(self.storage.as_ref(), &self.dir, new_seq);
                return Err(e);
            }
        };
        // R5.
        *tail = placed.tail();
        {
            let mut pending = self.pending.lock();
            let zeros = pending.zero_bytes_written;
            *pending = next;
            pending.zero_bytes_written = zeros;
        }
        self.commit.switch_file(placed.file, start);
        tracing::debug!(dir = %self.dir.display(), seq = new_seq, start_epoch, "log rotated");
        Ok(())
    }

    /// Closes the log cleanly: makes every frame durable, then writes and syncs a seal after the
    /// last one (Z1–Z3, `design/DURABILITY.md` §4), so the next replay knows the log ends there
    /// and that every frame before it was durable: damage anywhere before the seal is then
    /// corruption, never a torn tail. Appends fail afterwards; calling it again does nothing.
    /// Returns the position of the last frame's end (where the seal starts).
    pub fn seal(&self) -> Result<LogPosition> {
        self.commit.check()?;
        let mut tail = self.tail.lock();
        self.commit.check()?;
        let end = LogPosition {
            seq: tail.seq,
            offset: tail.end,
        };
        if tail.sealed {
            return Ok(end);
        }
        // Z1: every frame written out and durable, as a rotation's R2–R3.
        self.pending.lock().write_out(&self.commit)?;
        self.commit.sync_file(tail.file.as_ref(), end)?;
        // Z2: the seal, claiming everything before it durable (true since Z1).
        let seal_end = tail.end.saturating_add(SEAL_BYTES as u64);
        if seal_end > tail.allocated_end {
            self.preallocate(&mut tail, seal_end)?;
        }
        let seal = encode_seal(tail.seed, tail.next_index, tail.end);
        let written = tail.file.write_at(&seal, tail.end);
        // Z3.
        written
            .and_then(|()| tail.file.sync_data())
            .map_err(|e| self.commit.poison_with(e))?;
        tail.sealed = true;
        tracing::debug!(seq = tail.seq, offset = tail.end, "log sealed");
        Ok(end)
    }

    /// The end of the last frame written out to the file (not necessarily durable).
    pub fn written_position(&self) -> LogPosition {
        self.commit.written()
    }

    /// The end of the last frame appended (perhaps still pending, not yet written out).
    pub fn appended_position(&self) -> LogPosition {
        let tail = self.tail.lock();
        LogPosition {
            seq: tail.seq,
            offset: tail.end,
        }
    }

    /// Everything up to here is durable.
    pub fn durable_position(&self) -> LogPosition {
        self.commit.durable()
    }

    /// The sequence number of the file frames are appended to now.
    pub fn seq(&self) -> u64 {
        self.tail.lock().seq
    }

    /// True once a failed sync or frame write has poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.commit.is_poisoned()
    }

    /// The options the log was opened with.
    pub fn options(&self) -> LogOptions {
        self.options
    }

    /// Counters since the log was created or opened.
    pub fn stats(&self) -> LogStats {
        LogStats {
            frames_appended: self.frames_appended.load(Ordering::Relaxed),
            bytes_appended: self.bytes_appended.load(Ordering::Relaxed),
            syncs: self.commit.syncs(),
            zero_bytes_written: self.pending.lock().zero_bytes_written,
        }
    }
}

trait SyncFailure {
    fn is_sync_failure(&self) -> bool;
}

impl SyncFailure for Error {
    /// True for a failed `sync_data`, `sync_all` or `sync_dir`: after one, what the kernel holds
    /// is unknown, so the log must be poisoned.
    fn is_sync_failure(&self) -> bool {
        use crate::error::IoOp;
        matches!(
            self,
            Error::Io {
                op: IoOp::SyncData | IoOp::SyncAll | IoOp::SyncDir,
                ..
            }
        )
    }
}
