//! The pending frames of a delta log and how they are written out (steps W1, W1d and W2 of
//! `design/DURABILITY.md` §4): in one write through the page cache, or in whole blocks through a
//! direct writer; with zeros ahead of them, or the end mark among a recycled file's bytes.

use std::sync::Arc;

use super::commit::GroupCommit;
use super::format::SEAL_BYTES;
use super::writer::LogPosition;
use crate::codec::{align_down, align_up};
use crate::error::{CorruptionKind, Error, Result};
use crate::io::{AlignedBuf, DirectWriter, StorageFile};

/// Most bytes of sealed frames held in memory before an append writes them out itself.
pub(super) const PENDING_BYTES_MAX: usize = 256 << 10;

/// Frames appended but not yet written: the next sync writes them out with one `write_at` before
/// its `sync_data`, so concurrent appenders cost one write per group, not one each. Guarded by
/// its own lock, taken after the append lock (appends) or alone (a sync's leader, which must not
/// wait for the append lock: a rotation holds it while it waits for the sync in flight).
#[derive(Debug)]
pub(super) struct Pending {
    /// The file they go to.
    pub(super) file: Arc<dyn StorageFile>,
    pub(super) seq: u64,
    /// File offset of `bytes[0]`.
    pub(super) start: u64,
    pub(super) bytes: Vec<u8>,
    /// Bytes below this offset have been written (frames or zeros), so frames landing there
    /// overwrite written blocks.
    pub(super) zeroed_end: u64,
    /// The end of the preallocated blocks (copied from the append lock's `Tail` when it grows):
    /// zeros are never written past it, so they neither grow the file nor need new blocks.
    pub(super) allocated_end: u64,
    /// Below this offset the file may hold an earlier log's bytes (it was the spare): each
    /// write-out there ends with a frame header's worth of zeros, so replay finds the end of
    /// this log where its frames end (the unwritten end) rather than a frame that does not
    /// decode. 0 for a file that was not recycled.
    pub(super) stale_end: u64,
    pub(super) zero_ahead_bytes: u64,
    /// Zero bytes written ahead so far, over every file (carried across rotations).
    pub(super) zero_bytes_written: u64,
    /// Set when write-outs go through a direct writer.
    pub(super) direct: Option<DirectAppend>,
}

/// Write-outs with direct I/O: whole aligned blocks, the first of which starts with `head`, the
/// bytes already in the file from the block boundary at or before `Pending::start` up to it (the
/// end of the last frame), which each write-out writes again.
#[derive(Debug)]
pub(super) struct DirectAppend {
    writer: Arc<dyn DirectWriter>,
    head: Vec<u8>,
    /// The aligned buffer write-outs are assembled in, kept between them (up to
    /// [`SCRATCH_KEEP_BYTES_MAX`]) so a flush allocates nothing.
    scratch: AlignedBuf,
}

/// Largest aligned buffer a direct writer keeps between write-outs; a larger write-out (a batch
/// of big records) allocates its own.
const SCRATCH_KEEP_BYTES_MAX: usize = 1 << 20;

impl DirectAppend {
    /// A direct writer of `file`, whose frames end at `start`, if `file` has one.
    pub(super) fn of(file: &dyn StorageFile, start: u64) -> Result<Option<DirectAppend>> {
        let Some(writer) = file.direct_writer()? else {
            return Ok(None);
        };
        let from = align_down(start, writer.align() as u64);
        let mut head = vec![0u8; (start - from) as usize];
        let n = file.read_at(&mut head, from)?;
        if n != head.len() {
            // The file ends before the frames it holds do: something shortened it underneath.
            return Err(Error::corruption(
                file.path(),
                from,
                CorruptionKind::Truncated {
                    needed: head.len() as u64,
                    available: n as u64,
                },
            ));
        }
        let scratch = AlignedBuf::zeroed(0, writer.align());
        Ok(Some(DirectAppend {
            writer,
            head,
            scratch,
        }))
    }

    /// Writes `bytes` at `start` (where the head ends) as whole blocks: the head, `bytes`, then
    /// zeros to the next boundary. Keeps as the next head the bytes from the boundary at or before
    /// `next_start` (at most the end of `bytes`) up to it. Returns where the write ended.
    fn write(&mut self, start: u64, bytes: &[u8], next_start: u64) -> Result<u64> {
        let align = self.writer.align();
        let from = start - self.head.len() as u64;
        let end = start + bytes.len() as u64;
        let to = align_up(end, align as u64);
        let len = (to - from) as usize;
        if self.scratch.as_slice().len() < len {
            self.scratch = AlignedBuf::zeroed(len, align);
        }
        let b = &mut self.scratch.as_mut_slice()[..len];
        let (head, rest) = b.split_at_mut(self.head.len());
        head.copy_from_slice(&self.head);
        let (data, pad) = rest.split_at_mut(bytes.len());
        data.copy_from_slice(bytes);
        pad.fill(0);
        self.writer.write_at(b, from)?;
        let keep = align_down(next_start, align as u64);
        let next_head = &b[(keep - from) as usize..(next_start - from) as usize];
        self.head.clear();
        self.head.extend_from_slice(next_head);
        if len > SCRATCH_KEEP_BYTES_MAX {
            self.scratch = AlignedBuf::zeroed(0, align);
        }
        Ok(to)
    }

    /// Writes zeros over `[from, to)`, widened to whole blocks but starting no earlier than
    /// `written_to`, the end of the write-out just made (whose last block holds frames).
    fn write_zeros(&self, from: u64, to: u64, written_to: u64) -> Result<()> {
        let align = self.writer.align() as u64;
        let from = align_down(from, align).max(written_to);
        let to = align_up(to, align);
        if to <= from {
            return Ok(());
        }
        let zeros = AlignedBuf::zeroed((to - from) as usize, align as usize);
        self.writer.write_at(zeros.as_slice(), from)
    }
}

impl Pending {
    pub(super) fn new(file: Arc<dyn StorageFile>, seq: u64, start: u64, zero_ahead_bytes: u64) -> Self {
        Pending {
            file,
            seq,
            start,
            bytes: Vec::new(),
            zeroed_end: start,
            allocated_end: start,
            stale_end: 0,
            zero_ahead_bytes,
            zero_bytes_written: 0,
            direct: None,
        }
    }

    /// W1–W2: writes the pending frames out with one `write_at` (followed by zeros, when
    /// `zero_ahead_bytes` asks for them: in the same write, or in a second one when zeros
    /// already follow the frames) and publishes the new written end. A failure poisons: the
    /// file may now hold part of a frame already appended.
    pub(super) fn write_out(&mut self, commit: &GroupCommit) -> Result<()> {
        if self.bytes.is_empty() {
            return Ok(());
        }
        let frames_end = self.start + self.bytes.len() as u64;
        // Among an earlier log's bytes, the frames end in zeros in the same write (the end mark;
        // the next write-out overwrites it). Nothing there is zeroed ahead: its blocks are
        // written, so `zeroed_end` lies past them.
        let mark_end = self.end_mark(frames_end);
        self.bytes.resize((mark_end - self.start) as usize, 0);
        let zeros_end = self.zeros_end(mark_end);
        // Zeros go from where the written bytes end: right after the frames (one write), or
        // after zeros an earlier write-out wrote (a second write, so none is written twice).
        let zeros_from = mark_end.max(self.zeroed_end);
        let separate = zeros_end > zeros_from && zeros_from > mark_end;
        if zeros_end > zeros_from && !separate {
            self.bytes.resize((zeros_end - self.start) as usize, 0);
        }
        let written = match &mut self.direct {
            Some(direct) => direct
                .write(self.start, &self.bytes, frames_end)
                .and_then(|to| match separate {
                    true => direct.write_zeros(zeros_from, zeros_end, to),
                    false => Ok(()),
                }),
            None => self.file.write_at(&self.bytes, self.start).and_then(|()| {
                match separate {
                    true => self
                        .file
                        .write_at(&vec![0u8; (zeros_end - zeros_from) as usize], zeros_from),
                    false => Ok(()),
                }
            }),
        };
        if let Err(e) = written {
            return Err(commit.poison_with(e));
        }
        self.zero_bytes_written += zeros_end.saturating_sub(zeros_from);
        self.zeroed_end = self.zeroed_end.max(zeros_end);
        self.start = frames_end;
        self.bytes.clear();
        commit.publish_written(LogPosition {
            seq: self.seq,
            offset: self.start,
        });
        Ok(())
    }

    /// Where the end mark after frames ending at `frames_end` ends: a frame header's worth of
    /// zeros when they land among an earlier log's bytes, else nothing (`frames_end`).
    fn end_mark(&self, frames_end: u64) -> u64 {
        if frames_end >= self.stale_end {
            return frames_end;
        }
        frames_end
            .saturating_add(SEAL_BYTES as u64)
            .min(self.stale_end)
    }

    /// Where W1's write ends: at the frames' end, or, when fewer than half of
    /// `zero_ahead_bytes` written bytes lie past it, `zero_ahead_bytes` past it (rounded up to a
    /// 4 KiB block, capped at the preallocated end).
    fn zeros_end(&self, frames_end: u64) -> u64 {
        let ahead = self.zero_ahead_bytes;
        if ahead == 0 || self.zeroed_end.saturating_sub(frames_end) >= ahead / 2 {
            return frames_end;
        }
        frames_end
            .saturating_add(ahead)
            .next_multiple_of(ZERO_BLOCK_BYTES)
            .min(self.allocated_end)
            .max(frames_end)
    }
}

/// Zeros written ahead end on a multiple of this (the filesystem block).
pub(super) const ZERO_BLOCK_BYTES: u64 = 4096;
