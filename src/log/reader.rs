//! Replay: reading a log file's frames in order, in bounded chunks, and classifying where and why
//! the scan stopped.
//!
//! A frame that fails to decode is not an error here: after a crash the last frames of a log are
//! routinely short or half-written. The reader reports where the scan stopped as the log's
//! [`TailState`], after searching the rest of the file for valid frames: a valid frame past the
//! stop whose `durable_end` passes the stop proves the frames there were synced, so the stop is
//! damage to durable frames ([`TailState::Damaged`]), not a torn tail ([`TailState::Torn`]). Only
//! a bad file header and I/O failures are errors.

use std::path::Path;

use super::format::{
    FRAME_ALIGN, FRAME_BODY_BYTES_MAX, FRAME_DURABLE_OFFSET, FRAME_HEADER_BYTES,
    FRAME_INDEX_OFFSET, FrameHead, FrameSeed, LOG_HEADER_BYTES, LogHeader, check_frame, check_seal,
    decode_frame_len, frame_bytes,
};
use crate::error::{CorruptionKind, Result};
use crate::io::{ReadBuffer, Storage, StorageFile};

/// How many bytes the reader holds in memory at once, unless one frame is larger (such a frame is
/// read on its own into a buffer of its exact size).
pub const READ_BUFFER_BYTES: usize = 1 << 20;

/// Most candidate-frame bytes one search past a stop checksums before it gives up, so adversarial
/// bytes cannot make it quadratic in the file's size.
pub const SEARCH_CRC_BYTES_MAX: u64 = 1 << 30;

/// The smallest frame: a header and one body byte, padded.
const FRAME_BYTES_MIN: u64 = frame_bytes(1);

/// One valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its position in the file: 0 for the first frame, then consecutive.
    pub index: u64,
    /// The file offset of its first byte.
    pub offset: u64,
    /// The body the writer appended.
    pub body: Vec<u8>,
    /// The writer's durable position when it sealed the frame.
    pub durable_end: u64,
}

impl Frame {
    /// The file offset just past the frame (its padding included): where the next frame starts.
    pub fn end(&self) -> u64 {
        let body_bytes = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        self.offset.saturating_add(frame_bytes(body_bytes))
    }
}

/// A valid frame found past the point where replay stopped (never replayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastFrame {
    /// Its first byte.
    pub offset: u64,
    /// Its index.
    pub index: u64,
    /// Its body's size; 0 for a seal (which claims everything before it durable).
    pub body_bytes: u32,
    /// The durable position it claims.
    pub durable_end: u64,
}

impl PastFrame {
    /// Where the next frame starts.
    pub fn end(&self) -> u64 {
        self.offset.saturating_add(frame_bytes(self.body_bytes))
    }
}

/// Why replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    /// The scan reached the unwritten end (zero bytes, or exactly the end of the file) and no
    /// valid frame lies past it.
    Clean,
    /// The scan reached the seal of a clean close ([`super::DeltaLog::seal`]): every frame before
    /// it was durable, and the log ends there.
    Sealed,
    /// The frame at `offset` is short, has an impossible length, fails its CRC, carries the wrong
    /// index or an impossible `durable_end`, or is zero bytes with valid frames past it; and no
    /// valid frame past it claims it durable. Every frame before it was valid. After a crash this
    /// is normal: the frames from `offset` on were never known durable, so never acknowledged.
    Torn {
        /// File offset of the stop; equal to the summary's `valid_end`.
        offset: u64,
        /// What was wrong there.
        kind: CorruptionKind,
        /// Valid frames found past the stop, in file order (never replayed).
        past: Vec<PastFrame>,
    },
    /// Like `Torn`, but a valid frame past the stop (`proof`) claims durable every frame up to
    /// past `offset`: the frame at `offset` was synced, so this is damage to durable (possibly
    /// acknowledged) frames, not a torn tail.
    Damaged {
        /// File offset of the damaged frame; equal to the summary's `valid_end`.
        offset: u64,
        /// What was wrong there.
        kind: CorruptionKind,
        /// Valid frames found past the damage, in file order (never replayed).
        past: Vec<PastFrame>,
        /// The frame whose `durable_end` is the largest, past `offset`.
        proof: PastFrame,
    },
}

impl TailState {
    /// Valid frames past the stop (none for `Clean` and `Sealed`).
    pub fn past(&self) -> &[PastFrame] {
        match self {
            TailState::Torn { past, .. } | TailState::Damaged { past, .. } => past,
            TailState::Clean | TailState::Sealed => &[],
        }
    }
}

/// The outcome of replaying one log file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaySummary {
    /// The file's header.
    pub header: LogHeader,
    /// How many valid frames were read (and visited).
    pub frames: u64,
    /// The file offset just past the last valid frame (the header's end if there is none): where
    /// the next frame goes.
    pub valid_end: u64,
    /// Why the scan stopped.
    pub tail: TailState,
}

/// Reads and checks a log file's 64-byte header.
///
/// Errors are [`crate::Error::Corruption`] naming the file and the offset of the bad field:
/// `Truncated` for a file shorter than the header, `BadMagic`, `UnsupportedVersion`,
/// `InvalidField` for `header_bytes` or a non-zero reserved byte, `ChecksumMismatch` for the CRC.
pub fn read_header(file: &dyn StorageFile) -> Result<LogHeader> {
    let mut buf = [0u8; LOG_HEADER_BYTES];
    let n = file.read_at(&mut buf, 0)?;
    LogHeader::decode(buf.get(..n).unwrap_or_default(), file.path())
}

/// Replays the log file at `path`, calling `visit` for every valid frame in order.
///
/// Stops at the first error `visit` returns and returns it.
pub fn replay(
    storage: &dyn Storage,
    path: &Path,
    visit: impl FnMut(&Frame) -> Result<()>,
) -> Result<ReplaySummary> {
    let file = storage.open_read_only(path)?;
    replay_file(file.as_ref(), visit)
}

/// Replays an already opened log file (see [`replay`]).
pub fn replay_file(
    file: &dyn StorageFile,
    mut visit: impl FnMut(&Frame) -> Result<()>,
) -> Result<ReplaySummary> {
    let mut reader = LogReader::new(file)?;
    let tail = loop {
        match reader.advance()? {
            Advance::Frame(frame) => visit(&frame)?,
            Advance::End(tail) => break tail,
        }
    };
    let summary = reader.summary_with(tail);
    match &summary.tail {
        TailState::Damaged {
            offset,
            kind,
            proof,
            ..
        } => tracing::warn!(
            path = %file.path().display(), offset, %kind, proof_offset = proof.offset,
            proof_durable_end = proof.durable_end,
            "log frame is damaged, and a later frame proves it was durable"
        ),
        TailState::Torn { offset, kind, past } if !past.is_empty() => tracing::info!(
            path = %file.path().display(), offset, %kind, frames_past = past.len(),
            "log stops at a torn frame with unsynced frames past it"
        ),
        tail => tracing::debug!(
            path = %file.path().display(), frames = summary.frames,
            valid_end = summary.valid_end, ?tail, "log replayed"
        ),
    }
    Ok(summary)
}

/// Reads the valid frame `past` describes (a frame found past a stop in a log whose frames start
/// from `seed`), with its body.
pub fn read_past_frame(
    file: &dyn StorageFile,
    seed: FrameSeed,
    past: &PastFrame,
) -> Result<Option<Frame>> {
    let total = frame_bytes(past.body_bytes);
    let mut bytes = vec![0u8; usize::try_from(total).unwrap_or(usize::MAX)];
    let n = file.read_at(&mut bytes, past.offset)?;
    let frame = bytes.get(..n).unwrap_or_default();
    Ok(check_frame(seed, frame, past.index, past.offset)
        .ok()
        .map(|checked| Frame {
            index: past.index,
            offset: past.offset,
            body: checked.body.to_vec(),
            durable_end: checked.durable_end,
        }))
}

/// Where one frame-by-frame scan stopped, before the search past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The end of the file, or zero bytes with nothing non-zero left in them.
    Unwritten,
    /// A valid seal.
    Sealed,
    /// Nothing valid here, for `kind`; `len_hint` is the frame's declared size when plausible.
    Bad {
        kind: CorruptionKind,
        len_hint: Option<u64>,
    },
}

/// One step of the scan.
enum Advance {
    Frame(Frame),
    End(TailState),
}

/// An iterator over a log file's valid frames.
///
/// It reads through one buffer of [`READ_BUFFER_BYTES`] (a frame larger than that is read on its
/// own), so memory stays bounded whatever the file's size. After the iterator is exhausted,
/// [`LogReader::summary`] says why it stopped. An I/O error is yielded once and ends the iteration.
#[derive(Debug)]
pub struct LogReader<'a> {
    header: LogHeader,
    /// What the log's frame checksums start from (its header's).
    seed: FrameSeed,
    file_len: u64,
    reader: ReadBuffer<'a>,
    next_offset: u64,
    next_index: u64,
    tail: Option<TailState>,
    failed: bool,
}

impl<'a> LogReader<'a> {
    /// Reads the header of `file` and positions the reader at its first frame.
    pub fn new(file: &'a dyn StorageFile) -> Result<LogReader<'a>> {
        LogReader::with_buffer_bytes(file, READ_BUFFER_BYTES)
    }

    /// Like [`LogReader::new`] with a read buffer of `buffer_bytes` (at least one frame header),
    /// so tests can exercise frames that straddle or exceed the buffer.
    pub fn with_buffer_bytes(file: &'a dyn StorageFile, buffer_bytes: usize) -> Result<Self> {
        let header = read_header(file)?;
        let file_len = file.len()?;
        Ok(LogReader {
            header,
            seed: header.frame_seed(),
            file_len,
            reader: ReadBuffer::new(file, file_len, buffer_bytes.max(FRAME_HEADER_BYTES)),
            next_offset: LOG_HEADER_BYTES as u64,
            next_index: 0,
            tail: None,
            failed: false,
        })
    }

    /// The file's header.
    pub fn header(&self) -> LogHeader {
        self.header
    }

    /// The next valid frame, or `None` once the scan has stopped (see [`LogReader::summary`]).
    pub fn next_frame(&mut self) -> Result<Option<Frame>> {
        match self.advance()? {
            Advance::Frame(frame) => Ok(Some(frame)),
            Advance::End(_) => Ok(None),
        }
    }

    /// Why the scan stopped, once it has; `None` while frames remain or after an I/O error.
    pub fn summary(&self) -> Option<ReplaySummary> {
        self.tail.clone().map(|tail| self.summary_with(tail))
    }

    fn summary_with(&self, tail: TailState) -> ReplaySummary {
        ReplaySummary {
            header: self.header,
            frames: self.next_index,
            valid_end: self.next_offset,
            tail,
        }
    }

    fn advance(&mut self) -> Result<Advance> {
        if let Some(tail) = &self.tail {
            return Ok(Advance::End(tail.clone()));
        }
        match self.scan_frame() {
            Ok(Ok(frame)) => Ok(Advance::Frame(frame)),
            Ok(Err(tail)) => {
                self.tail = Some(tail.clone());
                Ok(Advance::End(tail))
            }
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Decodes the frame at `next_offset`: `Ok(Ok(frame))` and advances past it, or
    /// `Ok(Err(tail))` when the scan must stop there (after searching past the stop).
    fn scan_frame(&mut self) -> Result<Result<Frame, TailState>> {
        let (offset, index) = (self.next_offset, self.next_index);
        let stop = match step(&mut self.reader, self.seed, self.file_len, offset, index)? {
            Ok(frame) => {
                // Neither can overflow in practice (the offset is below the file's length plus a
                // bounded frame size), but a saturated value simply stops the next scan.
                self.next_offset = frame.end();
                self.next_index = index.saturating_add(1);
                return Ok(Ok(frame));
            }
            Err(stop) => stop,
        };
        judge_stop(&mut self.reader, self.seed, self.file_len, offset, index, stop).map(Err)
    }
}

impl Iterator for LogReader<'_> {
    type Item = Result<Frame>;

    fn next(&mut self) -> Option<Result<Frame>> {
        if self.failed {
            return None;
        }
        self.next_frame().transpose()
    }
}

/// The tail state of a scan that stopped at `offset` (where frame `index` was due) for `stop`:
/// searches the rest of the file for valid frames and judges the stop by their claims.
pub(crate) fn judge_stop(
    reader: &mut ReadBuffer<'_>,
    seed: FrameSeed,
    file_len: u64,
    offset: u64,
    index: u64,
    stop: Stop,
) -> Result<TailState> {
    let (kind, len_hint) = match stop {
        Stop::Sealed => return Ok(TailState::Sealed),
        Stop::Unwritten if offset >= file_len => return Ok(TailState::Clean),
        Stop::Unwritten => (None, None),
        Stop::Bad { kind, len_hint } => (Some(kind), len_hint),
    };
    let past = search_past(reader, seed, file_len, offset, index, len_hint)?;
    Ok(match kind {
        // Zero bytes with nothing valid past them: the unwritten end.
        None if past.is_empty() => TailState::Clean,
        // Zero bytes where a frame was due, but frames past them: a lost frame.
        None => {
            let kind = CorruptionKind::InvalidField {
                field: "frame.body_bytes",
                value: 0,
            };
            classify(offset, kind, past)
        }
        Some(kind) => classify(offset, kind, past),
    })
}

/// Decodes the frame at `offset`, expecting index `index`: the frame, or why the scan stops.
pub(crate) fn step(
    reader: &mut ReadBuffer<'_>,
    seed: FrameSeed,
    file_len: u64,
    offset: u64,
    index: u64,
) -> Result<Result<Frame, Stop>> {
    if offset >= file_len {
        return Ok(Err(Stop::Unwritten));
    }
    let head = reader.read(offset, FRAME_HEADER_BYTES)?;
    let bad = |kind| {
        Ok(Err(Stop::Bad {
            kind,
            len_hint: None,
        }))
    };
    let body_bytes = match decode_frame_len(&head) {
        Some(FrameHead::End) => {
            return Ok(Err(match check_seal(seed, &head, index, offset) {
                Ok(true) => Stop::Sealed,
                Ok(false) => Stop::Unwritten,
                // Fewer than a header's bytes left, all zero: the unwritten end too.
                Err(CorruptionKind::Truncated { .. }) if head.iter().all(|&b| b == 0) => {
                    Stop::Unwritten
                }
                Err(kind) => Stop::Bad {
                    kind,
                    len_hint: None,
                },
            }));
        }
        None if head.iter().all(|&b| b == 0) => return Ok(Err(Stop::Unwritten)),
        None => {
            return bad(CorruptionKind::Truncated {
                needed: FRAME_HEADER_BYTES as u64,
                available: head.len() as u64,
            });
        }
        Some(FrameHead::BadLength(value)) => {
            return bad(CorruptionKind::InvalidField {
                field: "frame.body_bytes",
                value: u64::from(value),
            });
        }
        Some(FrameHead::Frame { body_bytes }) => body_bytes,
    };
    drop(head);
    let total = frame_bytes(body_bytes);
    let available = file_len - offset;
    if total > available {
        return bad(CorruptionKind::Truncated {
            needed: total,
            available,
        });
    }
    let bytes = reader.read(offset, usize::try_from(total).unwrap_or(usize::MAX))?;
    Ok(match check_frame(seed, &bytes, index, offset) {
        Ok(checked) => Ok(Frame {
            index,
            offset,
            body: checked.body.to_vec(),
            durable_end: checked.durable_end,
        }),
        Err(kind) => Err(Stop::Bad {
            kind,
            len_hint: Some(total),
        }),
    })
}

/// Every valid frame past a stop at `offset` (where frame `index` was due), in file order: the
/// frame at the stop's declared end first (if its length was plausible), else the first valid
/// frame found at a frame-aligned offset after it; then the frames that follow each one found,
/// and after each break a new search. A seal found this way counts as a frame with no body that
/// claims everything before it durable. Frames are numbered consecutively and take at least
/// [`FRAME_BYTES_MIN`] bytes, so a candidate's index must lie between the next expected one and
/// what the bytes in between could hold, and its `durable_end` at or below its offset: stray
/// bytes almost never pass those checks, which come before the CRC.
fn search_past(
    reader: &mut ReadBuffer<'_>,
    seed: FrameSeed,
    file_len: u64,
    offset: u64,
    index: u64,
    len_hint: Option<u64>,
) -> Result<Vec<PastFrame>> {
    let mut past = Vec::new();
    let mut crc_bytes = 0u64;
    let (mut from, mut next_index) = (offset, index.saturating_add(1));
    let mut hint = len_hint.map(|total| offset.saturating_add(total));
    loop {
        let found = match hint.take() {
            Some(at) => match past_at(reader, seed, file_len, at, next_index)? {
                Some(found) => Some(found),
                None => find_valid(reader, seed, file_len, from, next_index, &mut crc_bytes)?,
            },
            None => find_valid(reader, seed, file_len, from, next_index, &mut crc_bytes)?,
        };
        let Some(mut item) = found else {
            return Ok(past);
        };
        // Follow the frames after it while they are valid; a seal ends the log.
        loop {
            past.push(item);
            if item.body_bytes == 0 {
                return Ok(past);
            }
            (from, next_index) = (item.end(), item.index.saturating_add(1));
            match past_at(reader, seed, file_len, from, next_index)? {
                Some(next) => item = next,
                None => break,
            }
        }
    }
}

/// The valid frame or seal at `at` with index `index`, if there is one.
fn past_at(
    reader: &mut ReadBuffer<'_>,
    seed: FrameSeed,
    file_len: u64,
    at: u64,
    index: u64,
) -> Result<Option<PastFrame>> {
    Ok(match step(reader, seed, file_len, at, index)? {
        Ok(frame) => Some(PastFrame {
            offset: frame.offset,
            index: frame.index,
            body_bytes: u32::try_from(frame.body.len()).unwrap_or(u32::MAX),
            durable_end: frame.durable_end,
        }),
        Err(Stop::Sealed) => Some(PastFrame {
            offset: at,
            index,
            body_bytes: 0,
            durable_end: at,
        }),
        Err(_) => None,
    })
}

/// The first whole, valid frame (or seal) at a frame-aligned offset after `from` whose index is
/// at least `min_index` and at most what the bytes since `from` could hold (see
/// [`search_past`]). `None` if there is none, or the search reached its work bound.
fn find_valid(
    reader: &mut ReadBuffer<'_>,
    seed: FrameSeed,
    file_len: u64,
    from: u64,
    min_index: u64,
    crc_bytes: &mut u64,
) -> Result<Option<PastFrame>> {
    let mut at = from
        .saturating_add(FRAME_ALIGN)
        .next_multiple_of(FRAME_ALIGN);
    while at.saturating_add(FRAME_HEADER_BYTES as u64) <= file_len {
        // Zero bytes are neither a frame nor a seal: skip them a chunk at a time (the rest of
        // a preallocated log is mostly zeros, and this search runs at every unsealed open).
        at = skip_zeros(reader, file_len, at)?;
        if at.saturating_add(FRAME_HEADER_BYTES as u64) > file_len {
            break;
        }
        let head = reader.read(at, FRAME_HEADER_BYTES)?;
        let word = |o: usize| {
            head.get(o..o + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        };
        let (index, durable_end) = (word(FRAME_INDEX_OFFSET), word(FRAME_DURABLE_OFFSET));
        let index_max = min_index.saturating_add((at - from) / FRAME_BYTES_MIN + 1);
        let plausible = (min_index..=index_max).contains(&index)
            && (LOG_HEADER_BYTES as u64..=at).contains(&durable_end);
        let total = match decode_frame_len(&head) {
            _ if !plausible => None,
            Some(FrameHead::Frame { body_bytes }) if body_bytes <= FRAME_BODY_BYTES_MAX => {
                Some(frame_bytes(body_bytes)).filter(|&total| total <= file_len - at)
            }
            Some(FrameHead::End) => Some(FRAME_HEADER_BYTES as u64),
            _ => None,
        };
        drop(head);
        if let Some(total) = total {
            *crc_bytes = crc_bytes.saturating_add(total);
            if *crc_bytes > SEARCH_CRC_BYTES_MAX {
                tracing::warn!(from, "the search past a log's stop reached its work bound");
                return Ok(None);
            }
            if let Some(found) = past_at(reader, seed, file_len, at, index)? {
                return Ok(Some(found));
            }
        }
        at += FRAME_ALIGN;
    }
    Ok(None)
}

/// Bytes [`skip_zeros`] examines per read.
const SKIP_CHUNK_BYTES: usize = 64 << 10;

/// The first frame-aligned offset at or after `at` (itself aligned) whose 24 header bytes are
/// not all zero, or a value whose header would pass `file_len`.
fn skip_zeros(reader: &mut ReadBuffer<'_>, file_len: u64, mut at: u64) -> Result<u64> {
    loop {
        let chunk = reader.read(at, SKIP_CHUNK_BYTES)?;
        if chunk.len() < FRAME_HEADER_BYTES {
            return Ok(at);
        }
        // Word by word (the chunk starts frame-aligned), then the byte within the word.
        let word = chunk
            .chunks_exact(8)
            .position(|w| w.iter().fold(0u8, |acc, &b| acc | b) != 0);
        let tail = chunk.len() / 8 * 8;
        let from = word.map_or(tail, |w| w * 8);
        let nonzero = chunk
            .get(from..)
            .unwrap_or_default()
            .iter()
            .position(|&b| b != 0)
            .map(|i| from + i);
        match nonzero {
            // The header holding that byte starts at most 23 bytes before it.
            Some(i) => {
                let first = (i as u64).saturating_sub(FRAME_HEADER_BYTES as u64 - 1);
                return Ok(at + first / FRAME_ALIGN * FRAME_ALIGN);
            }
            None => {
                // Every header starting in the chunk but its last 23 bytes is all zero.
                let whole = (chunk.len() - (FRAME_HEADER_BYTES - 1)) as u64;
                at += whole.div_ceil(FRAME_ALIGN) * FRAME_ALIGN;
                if at >= file_len {
                    return Ok(at);
                }
            }
        }
    }
}

/// The tail state of a stop at `offset` for `kind` with `past` frames past it: damaged when one
/// of them claims durable a position past `offset`, torn otherwise.
fn classify(offset: u64, kind: CorruptionKind, past: Vec<PastFrame>) -> TailState {
    let proof = past
        .iter()
        .copied()
        .max_by_key(|p| p.durable_end)
        .filter(|p| p.durable_end > offset);
    match proof {
        Some(proof) => TailState::Damaged {
            offset,
            kind,
            past,
            proof,
        },
        None => TailState::Torn { offset, kind, past },
    }
}
