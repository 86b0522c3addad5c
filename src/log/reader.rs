//! Replay: reading a log file's frames in order, in bounded chunks, and classifying where and why
//! the scan stopped.
//!
//! A frame that fails to decode is not an error: after a crash the last frames of a log are
//! routinely short or half-written, so the reader reports the first bad frame as the log's
//! [`TailState`] and stops there. Only a bad file header and I/O failures are errors.

use std::borrow::Cow;
use std::path::Path;

use super::format::{
    FRAME_HEADER_BYTES, FrameHead, LOG_HEADER_BYTES, LogHeader, check_frame, decode_frame_len,
    frame_bytes,
};
use crate::error::{CorruptionKind, Result};
use crate::io::{ReadBuffer, Storage, StorageFile};

/// How many bytes the reader holds in memory at once, unless one frame is larger (such a frame is
/// read on its own into a buffer of its exact size).
pub const READ_BUFFER_BYTES: usize = 1 << 20;

/// One valid frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Its position in the file: 0 for the first frame, then consecutive.
    pub index: u64,
    /// The file offset of its first byte.
    pub offset: u64,
    /// The body the writer appended.
    pub body: Vec<u8>,
}

impl Frame {
    /// The file offset just past the frame (its padding included): where the next frame starts.
    pub fn end(&self) -> u64 {
        let body_bytes = u32::try_from(self.body.len()).unwrap_or(u32::MAX);
        self.offset.saturating_add(frame_bytes(body_bytes))
    }
}

/// Why replay stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailState {
    /// The scan reached a zero length field (the unwritten or preallocated end of the log) or
    /// exactly the end of the file.
    Clean,
    /// The frame at `offset` is short, has an impossible length, fails its CRC, or carries the
    /// wrong index. Every frame before it was valid; it and everything after it are ignored.
    Torn {
        /// File offset of the first bad frame; equal to the summary's `valid_end`.
        offset: u64,
        /// What was wrong with it.
        kind: CorruptionKind,
        /// True when the bad frame's length was plausible and a CRC-valid frame with the next
        /// index starts right after it. After a crash this can legitimately happen (unsynced
        /// sectors are lost independently), but on a log whose every frame was synced it means
        /// damage in the middle of the log, which `fsck` reports.
        valid_frame_follows: bool,
    },
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
        TailState::Torn {
            valid_frame_follows: true,
            offset,
            kind,
        } => tracing::warn!(
            path = %file.path().display(), offset, %kind,
            "log frame is damaged but a valid frame follows it"
        ),
        tail => tracing::debug!(
            path = %file.path().display(), frames = summary.frames,
            valid_end = summary.valid_end, ?tail, "log replayed"
        ),
    }
    Ok(summary)
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
    /// `Ok(Err(tail))` when the scan must stop there.
    fn scan_frame(&mut self) -> Result<Result<Frame, TailState>> {
        let offset = self.next_offset;
        if offset >= self.file_len {
            return Ok(Err(TailState::Clean));
        }
        let torn = |kind, valid_frame_follows| TailState::Torn {
            offset,
            kind,
            valid_frame_follows,
        };
        let head = self.read_range(offset, FRAME_HEADER_BYTES)?;
        let body_bytes = match decode_frame_len(&head) {
            None => {
                let kind = CorruptionKind::Truncated {
                    needed: FRAME_HEADER_BYTES as u64,
                    available: head.len() as u64,
                };
                return Ok(Err(torn(kind, false)));
            }
            Some(FrameHead::End) => return Ok(Err(TailState::Clean)),
            Some(FrameHead::BadLength(value)) => {
                let kind = CorruptionKind::InvalidField {
                    field: "frame.body_bytes",
                    value: u64::from(value),
                };
                return Ok(Err(torn(kind, false)));
            }
            Some(FrameHead::Frame { body_bytes }) => body_bytes,
        };
        let total = frame_bytes(body_bytes);
        let index = self.next_index;
        let bytes = self.read_range(offset, usize::try_from(total).unwrap_or(usize::MAX))?;
        if (bytes.len() as u64) < total {
            let kind = CorruptionKind::Truncated {
                needed: total,
                available: bytes.len() as u64,
            };
            return Ok(Err(torn(kind, false)));
        }
        let checked = check_frame(&bytes, index).map(<[u8]>::to_vec);
        drop(bytes);
        match checked {
            Ok(body) => {
                let frame = Frame {
                    index: self.next_index,
                    offset,
                    body,
                };
                // Neither can overflow in practice (the offset is below the file's length plus a
                // bounded frame size), but a saturated value simply stops the next scan as Clean.
                self.next_offset = offset.saturating_add(total);
                self.next_index = self.next_index.saturating_add(1);
                Ok(Ok(frame))
            }
            Err(kind) => {
                let follows = match (offset.checked_add(total), self.next_index.checked_add(1)) {
                    (Some(next_offset), Some(next_index)) => {
                        self.valid_frame_at(next_offset, next_index)?
                    }
                    _ => false,
                };
                Ok(Err(torn(kind, follows)))
            }
        }
    }

    /// True if a whole, CRC-valid frame with index `index` starts at `offset`.
    fn valid_frame_at(&mut self, offset: u64, index: u64) -> Result<bool> {
        let head = self.read_range(offset, FRAME_HEADER_BYTES)?;
        let Some(FrameHead::Frame { body_bytes }) = decode_frame_len(&head) else {
            return Ok(false);
        };
        let total = frame_bytes(body_bytes);
        let bytes = self.read_range(offset, usize::try_from(total).unwrap_or(usize::MAX))?;
        Ok((bytes.len() as u64) == total && check_frame(&bytes, index).is_ok())
    }

    /// Up to `n` bytes of the file from `offset`; fewer only where the file ends.
    fn read_range(&mut self, offset: u64, n: usize) -> Result<Cow<'_, [u8]>> {
        self.reader.read(offset, n)
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
