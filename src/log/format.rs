//! The delta log's bytes: file name, file header and frame layout, encoded and decoded field by
//! field (see `design/FORMAT.md`, "Delta log").
//!
//! Everything here is pure: no I/O, no state. The writer and the reader build on these functions,
//! so there is exactly one definition of every offset and every checksum.

use std::path::Path;

use crate::codec::{Decoder, Encoder, align_up, crc32c, crc32c_append, crc32c_combine};
use crate::error::{CorruptionKind, Error, Result};

/// The magic bytes that open every log file.
pub const LOG_MAGIC: [u8; 8] = *b"VELDELTA";

/// The format version this build writes. Version 3 seeds every frame's CRC32C with the log's
/// sequence number, so the frames of an earlier log left in a recycled file never decode as this
/// log's; version 2 (no seed) is still read, and appended to in kind; version 2 added
/// `durable_end` to every frame header and the seal marker; version 1 logs are refused as
/// unsupported.
pub const LOG_FORMAT_VERSION: u32 = 3;

/// The oldest format version this build reads.
pub const LOG_FORMAT_VERSION_MIN: u32 = 2;

/// The name of the spare log file: a closed log kept after a checkpoint retired it, so the next
/// rotation renames it to the new log instead of creating a file whose blocks must be reserved
/// and zeroed again (`design/DURABILITY.md` §4, "Recycle"). Its bytes are an earlier log's
/// frames, which fail this log's seeded CRC.
pub const SPARE_LOG_FILE: &str = "log-spare.vlog";

/// What a log's frame checksums start from: the CRC32C of the log's sequence number (8 bytes,
/// little-endian) for format version 3, nothing (0) for version 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameSeed(u32);

impl FrameSeed {
    /// The seed of version 2 logs: frame CRCs start from nothing.
    pub const UNSEEDED: FrameSeed = FrameSeed(0);

    /// The seed of log `log_seq` written in format `version`.
    pub fn of(version: u32, log_seq: u64) -> FrameSeed {
        if version >= 3 {
            FrameSeed(crc32c(&log_seq.to_le_bytes()))
        } else {
            FrameSeed::UNSEEDED
        }
    }

    /// The CRC32C of the seed's bytes followed by `bytes`.
    fn crc(self, bytes: &[u8]) -> u32 {
        crc32c_append(self.0, bytes)
    }
}

/// Offset of `magic` in the file header.
pub const HEADER_MAGIC_OFFSET: usize = 0;
/// Offset of `format_version` in the file header.
pub const HEADER_VERSION_OFFSET: usize = HEADER_MAGIC_OFFSET + LOG_MAGIC.len();
/// Offset of `header_bytes` in the file header.
pub const HEADER_BYTES_FIELD_OFFSET: usize = HEADER_VERSION_OFFSET + 4;
/// Offset of `log_seq` in the file header.
pub const HEADER_LOG_SEQ_OFFSET: usize = HEADER_BYTES_FIELD_OFFSET + 4;
/// Offset of `start_epoch` in the file header.
pub const HEADER_START_EPOCH_OFFSET: usize = HEADER_LOG_SEQ_OFFSET + 8;
/// Offset of the reserved (zero) bytes in the file header.
pub const HEADER_RESERVED_OFFSET: usize = HEADER_START_EPOCH_OFFSET + 8;
/// Number of reserved bytes in the file header.
pub const HEADER_RESERVED_BYTES: usize = 28;
/// Offset of the header's CRC32C, which covers every byte before it.
pub const HEADER_CRC_OFFSET: usize = HEADER_RESERVED_OFFSET + HEADER_RESERVED_BYTES;
/// Size of the file header; the first frame starts here.
pub const LOG_HEADER_BYTES: usize = HEADER_CRC_OFFSET + 4;

/// Every frame starts at a multiple of this many bytes.
pub const FRAME_ALIGN: u64 = 8;
/// Offset of `body_bytes` in a frame.
pub const FRAME_LEN_OFFSET: usize = 0;
/// Offset of the frame's CRC32C.
pub const FRAME_CRC_OFFSET: usize = FRAME_LEN_OFFSET + 4;
/// Offset of `frame_index` in a frame.
pub const FRAME_INDEX_OFFSET: usize = FRAME_CRC_OFFSET + 4;
/// Offset of `durable_end` in a frame: the file offset up to which every frame was durable when
/// this one was sealed (its writer's durable position), so a valid frame proves that every frame
/// ending at or before it was synced, and damage there is not a torn tail.
pub const FRAME_DURABLE_OFFSET: usize = FRAME_INDEX_OFFSET + 8;
/// Offset of the body in a frame; also the size of the frame header.
pub const FRAME_BODY_OFFSET: usize = FRAME_DURABLE_OFFSET + 8;
/// Size of the fixed part of a frame before the body.
pub const FRAME_HEADER_BYTES: usize = FRAME_BODY_OFFSET;
/// The largest body a frame may carry (64 MiB).
pub const FRAME_BODY_BYTES_MAX: u32 = 64 << 20;
/// The largest a whole frame can be: header, largest body, and padding.
pub const FRAME_BYTES_MAX: u64 = align_up(
    FRAME_HEADER_BYTES as u64 + FRAME_BODY_BYTES_MAX as u64,
    FRAME_ALIGN,
);

const _: () = assert!(LOG_HEADER_BYTES == 64, "the header is 64 bytes");
const _: () = assert!(HEADER_CRC_OFFSET == 60, "the header CRC is its last field");
const _: () = assert!(HEADER_LOG_SEQ_OFFSET == 16 && HEADER_START_EPOCH_OFFSET == 24);
const _: () = assert!(
    (LOG_HEADER_BYTES as u64).is_multiple_of(FRAME_ALIGN),
    "the first frame must start aligned"
);
const _: () = assert!(FRAME_HEADER_BYTES == 24, "the frame header is 24 bytes");
const _: () = assert!(
    SEAL_BYTES == FRAME_HEADER_BYTES,
    "a seal is a frame header with no body"
);
const _: () = assert!(
    (FRAME_HEADER_BYTES as u64).is_multiple_of(FRAME_ALIGN),
    "bodies start aligned"
);
const _: () = assert!(
    FRAME_ALIGN.is_power_of_two(),
    "align_up needs a power of two"
);
const _: () = assert!(
    FRAME_BYTES_MAX <= u32::MAX as u64,
    "frame sizes fit the u32 arithmetic of 32-bit targets"
);

/// The name of log file number `seq`: `log-{seq:016x}.vlog`.
pub fn log_file_name(seq: u64) -> String {
    format!("log-{seq:016x}.vlog")
}

/// The sequence number in a log file name, or `None` if `name` is not exactly one that
/// [`log_file_name`] produces (16 lowercase hex digits).
pub fn parse_log_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("log-")?.strip_suffix(".vlog")?;
    let canonical = hex.len() == 16
        && hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !canonical {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The fields of a log file's header that vary between files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogHeader {
    /// The format version (2 or 3).
    pub format_version: u32,
    /// The log's sequence number (also in its file name).
    pub log_seq: u64,
    /// The epoch the first frame of this log applies on top of.
    pub start_epoch: u64,
}

impl LogHeader {
    /// The header of a new log in the current format.
    pub fn new(log_seq: u64, start_epoch: u64) -> LogHeader {
        LogHeader {
            format_version: LOG_FORMAT_VERSION,
            log_seq,
            start_epoch,
        }
    }

    /// What this log's frame checksums start from.
    pub fn frame_seed(&self) -> FrameSeed {
        FrameSeed::of(self.format_version, self.log_seq)
    }

    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; LOG_HEADER_BYTES] {
        let mut e = Encoder::with_capacity(LOG_HEADER_BYTES);
        e.bytes(&LOG_MAGIC)
            .u32(self.format_version)
            .u32(LOG_HEADER_BYTES as u32)
            .u64(self.log_seq)
            .u64(self.start_epoch)
            .zeros(HEADER_RESERVED_BYTES);
        let mut bytes = e.finish();
        let crc = crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        let mut out = [0u8; LOG_HEADER_BYTES];
        // The encoder wrote exactly LOG_HEADER_BYTES (the golden test pins every byte); copying
        // through zip keeps this infallible even if a field were ever miscounted.
        for (dst, src) in out.iter_mut().zip(bytes) {
            *dst = src;
        }
        out
    }

    /// Decodes a header read from `file` at offset 0. `bytes` may be any length; fewer than
    /// [`LOG_HEADER_BYTES`] is reported as truncation.
    ///
    /// The checks run in an order chosen so the report is the most useful one: the identifying
    /// fields (magic, version, header size) first, so a file of another kind or a future version
    /// is named as such rather than as a checksum failure; then the CRC, so a flipped bit anywhere
    /// is a checksum mismatch; then the reserved bytes, which can only be non-zero under a valid
    /// CRC if a writer that knows more fields produced them.
    pub fn decode(bytes: &[u8], file: &Path) -> Result<LogHeader> {
        if bytes.len() < LOG_HEADER_BYTES {
            return Err(Error::corruption(
                file,
                0,
                CorruptionKind::Truncated {
                    needed: LOG_HEADER_BYTES as u64,
                    available: bytes.len() as u64,
                },
            ));
        }
        let mut d = Decoder::new(bytes, file, 0);
        let magic = d.array::<8>()?;
        if magic != LOG_MAGIC {
            return Err(d.error_at(
                HEADER_MAGIC_OFFSET,
                CorruptionKind::BadMagic {
                    found: u64::from_le_bytes(magic),
                },
            ));
        }
        let version = d.u32()?;
        if !(LOG_FORMAT_VERSION_MIN..=LOG_FORMAT_VERSION).contains(&version) {
            return Err(d.error_at(
                HEADER_VERSION_OFFSET,
                CorruptionKind::UnsupportedVersion { found: version },
            ));
        }
        let header_bytes = d.u32()?;
        if header_bytes as usize != LOG_HEADER_BYTES {
            return Err(d.error_at(
                HEADER_BYTES_FIELD_OFFSET,
                CorruptionKind::InvalidField {
                    field: "log_header.header_bytes",
                    value: u64::from(header_bytes),
                },
            ));
        }
        let log_seq = d.u64()?;
        let start_epoch = d.u64()?;
        let reserved_start = d.position();
        let reserved = d.bytes(HEADER_RESERVED_BYTES)?;
        let stored = d.u32()?;
        let covered = bytes.get(..HEADER_CRC_OFFSET).unwrap_or_default();
        let computed = crc32c(covered);
        if stored != computed {
            return Err(d.error_at(
                HEADER_CRC_OFFSET,
                CorruptionKind::ChecksumMismatch {
                    expected: stored,
                    actual: computed,
                },
            ));
        }
        if let Some(i) = reserved.iter().position(|&b| b != 0) {
            let value = reserved.get(i).copied().unwrap_or_default();
            return Err(d.error_at(
                reserved_start + i,
                CorruptionKind::InvalidField {
                    field: "log_header.reserved",
                    value: u64::from(value),
                },
            ));
        }
        Ok(LogHeader {
            format_version: version,
            log_seq,
            start_epoch,
        })
    }
}

/// The total size of a frame carrying `body_bytes` bytes: header, body and zero padding up to the
/// next multiple of [`FRAME_ALIGN`].
pub const fn frame_bytes(body_bytes: u32) -> u64 {
    align_up(FRAME_HEADER_BYTES as u64 + body_bytes as u64, FRAME_ALIGN)
}

/// Size of the seal a clean close writes after the last frame: a frame header with
/// `body_bytes` 0 (see [`encode_seal`]).
pub const SEAL_BYTES: usize = 24;

/// The CRC32C of the seed and the 20 checksummed header bytes of a frame: `body_bytes`,
/// `frame_index`, then `durable_end`.
fn frame_head_crc(seed: FrameSeed, body_bytes: u32, frame_index: u64, durable_end: u64) -> u32 {
    let mut head = [0u8; 20];
    let (len, rest) = head.split_at_mut(4);
    let (index, durable) = rest.split_at_mut(8);
    len.copy_from_slice(&body_bytes.to_le_bytes());
    index.copy_from_slice(&frame_index.to_le_bytes());
    durable.copy_from_slice(&durable_end.to_le_bytes());
    seed.crc(&head)
}

/// The 24 header bytes with `body_bytes`, the CRC over them continued by `tail_crc`, the index and
/// the durable end.
fn encode_head(body_bytes: u32, crc: u32, frame_index: u64, durable_end: u64) -> [u8; 24] {
    let mut head = [0u8; FRAME_HEADER_BYTES];
    let fields: [(usize, &[u8]); 4] = [
        (FRAME_LEN_OFFSET, &body_bytes.to_le_bytes()),
        (FRAME_CRC_OFFSET, &crc.to_le_bytes()),
        (FRAME_INDEX_OFFSET, &frame_index.to_le_bytes()),
        (FRAME_DURABLE_OFFSET, &durable_end.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        for (dst, src) in head.iter_mut().skip(at).zip(bytes) {
            *dst = *src;
        }
    }
    head
}

/// The seal a clean close writes at `offset`, the end of the last frame, as frame `frame_index`:
/// a header with `body_bytes` 0 and `durable_end == offset`, which says every frame before it is
/// durable, so replay that reaches it knows the log ended there on purpose.
pub fn encode_seal(seed: FrameSeed, frame_index: u64, offset: u64) -> [u8; SEAL_BYTES] {
    let crc = frame_head_crc(seed, 0, frame_index, offset);
    encode_head(0, crc, frame_index, offset)
}

/// Checks 24 header bytes whose length field is 0, found at `offset` where frame `expected_index`
/// was due: `Ok(true)` for a valid seal, `Ok(false)` for 24 zero bytes (the unwritten end), and
/// the problem otherwise.
pub fn check_seal(
    seed: FrameSeed,
    head: &[u8],
    expected_index: u64,
    offset: u64,
) -> Result<bool, CorruptionKind> {
    let Some(head) = head.get(..SEAL_BYTES) else {
        return Err(CorruptionKind::Truncated {
            needed: SEAL_BYTES as u64,
            available: head.len() as u64,
        });
    };
    if head.iter().all(|&b| b == 0) {
        return Ok(false);
    }
    let word = |at: usize| {
        head.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let stored = head
        .get(FRAME_CRC_OFFSET..FRAME_INDEX_OFFSET)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes);
    let (index, durable_end) = (word(FRAME_INDEX_OFFSET), word(FRAME_DURABLE_OFFSET));
    let computed = frame_head_crc(seed, 0, index, durable_end);
    if stored != computed {
        return Err(CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        });
    }
    if index != expected_index {
        return Err(CorruptionKind::Mismatch {
            what: "frame.frame_index",
            expected: expected_index,
            actual: index,
        });
    }
    if durable_end != offset {
        return Err(CorruptionKind::Mismatch {
            what: "seal.durable_end",
            expected: offset,
            actual: durable_end,
        });
    }
    Ok(true)
}

/// From this many body-and-padding bytes up, [`FrameBuf`] checksums them before the writer's lock
/// and combines that CRC with the header's under the lock; below it, it checksums them under the
/// lock.
///
/// Chosen by measurement (`crc32c` 0.6 on x86-64 with SSE 4.2): `crc32c_combine` costs about 6 us
/// even for a 72-byte tail (it squares 32x32 bit matrices once per bit of the length) and 52 us
/// for 1 MiB, while checksumming the tail itself costs 10 ns for 72 bytes, 3 us for 64 KiB and
/// 45 us for 1 MiB. With combining at every size, a 64-byte append spent 92% of its time in
/// `crc32c_combine`, inside the lock that serializes appends.
pub const COMBINE_MIN_BYTES: usize = 1 << 20;

/// A frame being built: the body and padding are laid out without any lock held; for a large body
/// their CRC is computed then too. [`FrameBuf::seal`] fills in the index and the CRC once the
/// writer has placed the frame.
#[derive(Debug)]
pub struct FrameBuf {
    bytes: Vec<u8>,
    body_bytes: u32,
    /// The CRC of body and padding, computed ahead when they hold at least
    /// [`COMBINE_MIN_BYTES`].
    tail_crc: Option<u32>,
}

impl FrameBuf {
    /// Lays out a frame for `body`, which must hold 1..=[`FRAME_BODY_BYTES_MAX`] bytes.
    pub fn new(body: &[u8]) -> Result<FrameBuf> {
        let body_bytes = u32::try_from(body.len())
            .ok()
            .filter(|&n| (1..=FRAME_BODY_BYTES_MAX).contains(&n))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "a frame body must hold 1..={FRAME_BODY_BYTES_MAX} bytes, not {}",
                    body.len()
                ))
            })?;
        let total = usize::try_from(frame_bytes(body_bytes)).map_err(|_| {
            Error::InvalidArgument(format!("a {body_bytes}-byte frame does not fit in memory"))
        })?;
        let mut bytes = Vec::with_capacity(total);
        bytes.resize(FRAME_HEADER_BYTES, 0);
        bytes.extend_from_slice(body);
        bytes.resize(total, 0);
        let tail = bytes.get(FRAME_BODY_OFFSET..).unwrap_or_default();
        let tail_crc = (tail.len() >= COMBINE_MIN_BYTES).then(|| crc32c(tail));
        Ok(FrameBuf {
            bytes,
            body_bytes,
            tail_crc,
        })
    }

    /// The frame's total size in bytes.
    pub fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Always false: a frame holds at least its header.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The body's size in bytes.
    pub fn body_bytes(&self) -> u32 {
        self.body_bytes
    }

    /// Writes the header for position `frame_index`, claiming that every frame up to file offset
    /// `durable_end` is durable, and returns the finished frame bytes.
    pub fn seal(&mut self, seed: FrameSeed, frame_index: u64, durable_end: u64) -> &[u8] {
        let head_crc = frame_head_crc(seed, self.body_bytes, frame_index, durable_end);
        let tail = self.bytes.get(FRAME_BODY_OFFSET..).unwrap_or_default();
        let crc = match self.tail_crc {
            Some(tail_crc) => crc32c_combine(head_crc, tail_crc, tail.len()),
            None => crc32c_append(head_crc, tail),
        };
        let head = encode_head(self.body_bytes, crc, frame_index, durable_end);
        for (dst, src) in self.bytes.iter_mut().zip(head) {
            *dst = src;
        }
        &self.bytes
    }
}

/// Encodes a whole frame in one call (tests and tools; the writer uses [`FrameBuf`]), claiming
/// only the header durable (`durable_end` 64, true of every frame).
pub fn encode_frame(seed: FrameSeed, frame_index: u64, body: &[u8]) -> Result<Vec<u8>> {
    encode_frame_claiming(seed, frame_index, LOG_HEADER_BYTES as u64, body)
}

/// Encodes a whole frame whose `durable_end` is `durable_end` (tests and tools).
pub fn encode_frame_claiming(
    seed: FrameSeed,
    frame_index: u64,
    durable_end: u64,
    body: &[u8],
) -> Result<Vec<u8>> {
    let mut buf = FrameBuf::new(body)?;
    buf.seal(seed, frame_index, durable_end);
    Ok(buf.bytes)
}

/// What the length field of a frame says, before the rest is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameHead {
    /// `body_bytes` is zero: the log ends here, at a seal or unwritten bytes (see
    /// [`check_seal`]), or the header is damaged.
    End,
    /// `body_bytes` is larger than [`FRAME_BODY_BYTES_MAX`].
    BadLength(u32),
    /// A frame of this many body bytes (and [`frame_bytes`] total) starts here.
    Frame {
        /// The declared body size.
        body_bytes: u32,
    },
}

/// Reads the length field from the first bytes of a frame. Needs at least 4 bytes; returns `None`
/// when fewer are given.
pub fn decode_frame_len(bytes: &[u8]) -> Option<FrameHead> {
    let len: [u8; 4] = bytes
        .get(FRAME_LEN_OFFSET..FRAME_CRC_OFFSET)?
        .try_into()
        .ok()?;
    let body_bytes = u32::from_le_bytes(len);
    Some(if body_bytes == 0 {
        FrameHead::End
    } else if body_bytes > FRAME_BODY_BYTES_MAX {
        FrameHead::BadLength(body_bytes)
    } else {
        FrameHead::Frame { body_bytes }
    })
}

/// A frame that passed [`check_frame`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedFrame<'a> {
    /// The body the writer appended.
    pub body: &'a [u8],
    /// The writer's durable position when it sealed the frame (see [`FRAME_DURABLE_OFFSET`]).
    pub durable_end: u64,
}

/// Checks a whole frame found at file offset `offset` (exactly [`frame_bytes`] long, as declared
/// by its length field): CRC first, then the index, then `durable_end` (at least the header's end,
/// at most `offset`: a writer knows only frames before this one durable). Returns the body on
/// success and the problem otherwise.
pub fn check_frame(
    seed: FrameSeed,
    frame: &[u8],
    expected_index: u64,
    offset: u64,
) -> Result<CheckedFrame<'_>, CorruptionKind> {
    let truncated = || CorruptionKind::Truncated {
        needed: FRAME_HEADER_BYTES as u64,
        available: frame.len() as u64,
    };
    let field = |start: usize, end: usize| frame.get(start..end).ok_or_else(truncated);
    let len_bytes = field(FRAME_LEN_OFFSET, FRAME_CRC_OFFSET)?;
    let crc_bytes = field(FRAME_CRC_OFFSET, FRAME_INDEX_OFFSET)?;
    let index_bytes = field(FRAME_INDEX_OFFSET, FRAME_DURABLE_OFFSET)?;
    let durable_bytes = field(FRAME_DURABLE_OFFSET, FRAME_BODY_OFFSET)?;
    let body_bytes = u32::from_le_bytes(len_bytes.try_into().map_err(|_| truncated())?);
    let needed = frame_bytes(body_bytes);
    if (frame.len() as u64) != needed {
        return Err(CorruptionKind::Truncated {
            needed,
            available: frame.len() as u64,
        });
    }
    let stored = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| truncated())?);
    let after_crc = frame.get(FRAME_INDEX_OFFSET..).unwrap_or_default();
    let computed = crc32c_append(seed.crc(len_bytes), after_crc);
    if stored != computed {
        return Err(CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        });
    }
    let index = u64::from_le_bytes(index_bytes.try_into().map_err(|_| truncated())?);
    if index != expected_index {
        return Err(CorruptionKind::Mismatch {
            what: "frame.frame_index",
            expected: expected_index,
            actual: index,
        });
    }
    let durable_end = u64::from_le_bytes(durable_bytes.try_into().map_err(|_| truncated())?);
    if durable_end < LOG_HEADER_BYTES as u64 || durable_end > offset {
        return Err(CorruptionKind::InvalidField {
            field: "frame.durable_end",
            value: durable_end,
        });
    }
    let body_end = FRAME_BODY_OFFSET.saturating_add(body_bytes as usize);
    let body = frame
        .get(FRAME_BODY_OFFSET..body_end)
        .ok_or_else(truncated)?;
    Ok(CheckedFrame { body, durable_end })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header of log 7 starting at epoch 42. The CRC (0x1a1fe101) was computed once with an
    /// independent bit-by-bit CRC32C and pasted here, so any change to the encoder breaks this.
    const GOLDEN_HEADER: [u8; 64] = [
        0x56, 0x45, 0x4c, 0x44, 0x45, 0x4c, 0x54, 0x41, // magic "VELDELTA"
        0x02, 0x00, 0x00, 0x00, 0x40, 0x00, 0x00, 0x00, // format_version 2, header_bytes 64
        0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // log_seq 7
        0x2a, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // start_epoch 42
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // reserved
        0x00, 0x00, 0x00, 0x00, 0x01, 0xe1, 0x1f, 0x1a, // reserved, crc32c
    ];

    /// Frame 0 carrying b"hello", claiming the header durable: 24 header bytes, 5 body bytes,
    /// 3 padding bytes. The CRC (0x92e170aa) covers bytes [0, 4) and [8, 32).
    const GOLDEN_FRAME: [u8; 32] = [
        0x05, 0x00, 0x00, 0x00, 0xaa, 0x70, 0xe1, 0x92, // body_bytes 5, crc32c
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // frame_index 0
        0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // durable_end 64
        0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x00, 0x00, 0x00, // "hello", padding
    ];

    /// The seal after that frame: frame index 1 at offset 96, `durable_end` 96. The CRC
    /// (0x59c9f56b) covers bytes [0, 4) and [8, 24).
    const GOLDEN_SEAL: [u8; 24] = [
        0x00, 0x00, 0x00, 0x00, 0x6b, 0xf5, 0xc9, 0x59, // body_bytes 0, crc32c
        0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // frame_index 1
        0x60, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // durable_end 96
    ];

    /// The seed of the tests that are not about seeds (a version 2 log's: none).
    const SEED: FrameSeed = FrameSeed::UNSEEDED;

    fn header_err(bytes: &[u8]) -> (u64, CorruptionKind) {
        let err = LogHeader::decode(bytes, Path::new("log-x.vlog")).unwrap_err();
        let c = err.as_corruption().unwrap().clone();
        assert_eq!(c.file, Path::new("log-x.vlog"));
        (c.offset, c.kind)
    }

    /// A valid header with `edit` applied and the CRC recomputed when `fix_crc` is set.
    fn edited_header(edit: impl FnOnce(&mut [u8; 64]), fix_crc: bool) -> [u8; 64] {
        let mut h = GOLDEN_HEADER;
        edit(&mut h);
        if fix_crc {
            let crc = crc32c(&h[..60]);
            h[60..].copy_from_slice(&crc.to_le_bytes());
        }
        h
    }

    /// The same log in format version 3: the header says 3, and the frame and seal CRCs start
    /// from the CRC32C of `log_seq` (7, as 8 little-endian bytes). Computed with an independent
    /// bit-by-bit CRC32C over `07 00 00 00 00 00 00 00` followed by the covered bytes.
    const GOLDEN_HEADER_V3_CRC: [u8; 4] = [0xab, 0x15, 0x71, 0xbe];
    const GOLDEN_FRAME_V3_CRC: [u8; 4] = [0x25, 0xb3, 0x69, 0x04];
    const GOLDEN_SEAL_V3_CRC: [u8; 4] = [0xa3, 0x4e, 0x99, 0x72];

    fn with_crc<const N: usize>(mut bytes: [u8; N], at: usize, crc: [u8; 4]) -> [u8; N] {
        bytes[at..at + 4].copy_from_slice(&crc);
        bytes
    }

    #[test]
    fn golden_header_and_frame_bytes() {
        let header = LogHeader::new(7, 42);
        assert_eq!(header.format_version, 3);
        let mut golden_header = with_crc(GOLDEN_HEADER, 60, GOLDEN_HEADER_V3_CRC);
        golden_header[8] = 3;
        assert_eq!(header.encode(), golden_header);
        assert_eq!(
            LogHeader::decode(&golden_header, Path::new("f")).unwrap(),
            header
        );
        let seed = header.frame_seed();
        assert_eq!(seed, FrameSeed(crc32c(&[7, 0, 0, 0, 0, 0, 0, 0])));
        let golden_frame = with_crc(GOLDEN_FRAME, 4, GOLDEN_FRAME_V3_CRC);
        assert_eq!(encode_frame(seed, 0, b"hello").unwrap(), golden_frame);
        assert_eq!(
            check_frame(seed, &golden_frame, 0, 64),
            Ok(CheckedFrame {
                body: &b"hello"[..],
                durable_end: 64
            })
        );
        assert_eq!(frame_bytes(5), 32);
        let golden_seal = with_crc(GOLDEN_SEAL, 4, GOLDEN_SEAL_V3_CRC);
        assert_eq!(encode_seal(seed, 1, 96), golden_seal);
        assert_eq!(check_seal(seed, &golden_seal, 1, 96), Ok(true));
        assert_eq!(check_seal(seed, &[0u8; 24], 1, 96), Ok(false));
    }

    #[test]
    fn version_2_logs_are_still_read_unseeded() {
        let header = LogHeader {
            format_version: 2,
            log_seq: 7,
            start_epoch: 42,
        };
        assert_eq!(header.encode(), GOLDEN_HEADER);
        assert_eq!(
            LogHeader::decode(&GOLDEN_HEADER, Path::new("f")).unwrap(),
            header
        );
        let seed = header.frame_seed();
        assert_eq!(seed, FrameSeed::UNSEEDED);
        assert_eq!(encode_frame(seed, 0, b"hello").unwrap(), GOLDEN_FRAME);
        assert!(check_frame(seed, &GOLDEN_FRAME, 0, 64).is_ok());
        assert_eq!(encode_seal(seed, 1, 96), GOLDEN_SEAL);
        assert_eq!(check_seal(seed, &GOLDEN_SEAL, 1, 96), Ok(true));
    }

    #[test]
    fn a_frame_of_another_log_fails_the_seeded_crc() {
        // Log 7's frame read as log 8's (a recycled file): the bytes are intact, the seed differs.
        let frame = encode_frame(FrameSeed::of(3, 7), 0, b"hello").unwrap();
        let other = FrameSeed::of(3, 8);
        let stored = u32::from_le_bytes(GOLDEN_FRAME_V3_CRC);
        let actual = crc32c_append(other.crc(&frame[..4]), &frame[8..]);
        assert_eq!(
            check_frame(other, &frame, 0, 64),
            Err(CorruptionKind::ChecksumMismatch {
                expected: stored,
                actual
            })
        );
        assert_ne!(stored, actual);
        let seal = encode_seal(FrameSeed::of(3, 7), 1, 96);
        assert!(matches!(
            check_seal(other, &seal, 1, 96),
            Err(CorruptionKind::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn durable_end_must_lie_between_the_header_and_the_frame() {
        for (claim, at, ok) in [(64, 64, true), (64, 4096, true), (4096, 4096, true)] {
            let frame = encode_frame_claiming(SEED, 3, claim, b"x").unwrap();
            assert_eq!(
                check_frame(SEED, &frame, 3, at).is_ok(),
                ok,
                "claim {claim} at {at}"
            );
        }
        for (claim, at) in [(63, 4096), (0, 64), (4104, 4096)] {
            let frame = encode_frame_claiming(SEED, 3, claim, b"x").unwrap();
            assert_eq!(
                check_frame(SEED, &frame, 3, at),
                Err(CorruptionKind::InvalidField {
                    field: "frame.durable_end",
                    value: claim
                }),
                "claim {claim} at {at}"
            );
        }
    }

    #[test]
    fn a_seal_is_checked_like_a_frame_header() {
        let mut flipped = GOLDEN_SEAL;
        flipped[12] ^= 1;
        assert!(matches!(
            check_seal(SEED, &flipped, 1, 96),
            Err(CorruptionKind::ChecksumMismatch {
                expected: 0x59c9_f56b,
                ..
            })
        ));
        assert_eq!(
            check_seal(SEED, &GOLDEN_SEAL, 2, 96),
            Err(CorruptionKind::Mismatch {
                what: "frame.frame_index",
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(
            check_seal(SEED, &encode_seal(SEED, 1, 88), 1, 96),
            Err(CorruptionKind::Mismatch {
                what: "seal.durable_end",
                expected: 96,
                actual: 88
            })
        );
        assert_eq!(
            check_seal(SEED, &GOLDEN_SEAL[..20], 1, 96),
            Err(CorruptionKind::Truncated {
                needed: 24,
                available: 20
            })
        );
        // One non-zero byte in a zero header is damage, not the unwritten end.
        let mut stray = [0u8; 24];
        stray[17] = 4;
        assert!(matches!(
            check_seal(SEED, &stray, 1, 96),
            Err(CorruptionKind::ChecksumMismatch { .. })
        ));
    }

    #[test]
    fn sealing_matches_the_crc_of_the_finished_bytes() {
        // Every padding length, and bodies on both sides of the size from which the body CRC is
        // computed ahead and combined, at a large index: the stored CRC must equal the CRC over
        // the finished bytes.
        let around = COMBINE_MIN_BYTES - FRAME_HEADER_BYTES;
        for len in [
            1usize,
            2,
            3,
            4,
            5,
            6,
            7,
            8,
            9,
            4096,
            100_003,
            around - 8,
            around + 8,
            around + 3,
        ] {
            let body: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let index = 0x0123_4567_89ab_cdef;
            let frame = encode_frame_claiming(SEED, index, 4096, &body).unwrap();
            assert_eq!(frame.len() as u64, frame_bytes(len as u32));
            assert_eq!(frame.len() % 8, 0);
            let mut covered = frame[..4].to_vec();
            covered.extend_from_slice(&frame[8..]);
            assert_eq!(
                u32::from_le_bytes(frame[4..8].try_into().unwrap()),
                crc32c(&covered)
            );
            let checked = check_frame(SEED, &frame, index, 4096).unwrap();
            assert_eq!((checked.body, checked.durable_end), (&body[..], 4096));
        }
    }

    #[test]
    fn header_errors_are_structured() {
        assert_eq!(
            header_err(&GOLDEN_HEADER[..63]),
            (
                0,
                CorruptionKind::Truncated {
                    needed: 64,
                    available: 63
                }
            )
        );
        assert_eq!(
            header_err(&[]),
            (
                0,
                CorruptionKind::Truncated {
                    needed: 64,
                    available: 0
                }
            )
        );
        let bad_magic = edited_header(|h| h[0] = b'X', true);
        assert_eq!(
            header_err(&bad_magic),
            (
                0,
                CorruptionKind::BadMagic {
                    found: u64::from_le_bytes(*b"XELDELTA")
                }
            )
        );
        for found in [1, 4] {
            let version = edited_header(|h| h[8] = found as u8, true);
            assert_eq!(
                header_err(&version),
                (8, CorruptionKind::UnsupportedVersion { found })
            );
        }
        let header_bytes = edited_header(|h| h[12] = 65, true);
        assert_eq!(
            header_err(&header_bytes),
            (
                12,
                CorruptionKind::InvalidField {
                    field: "log_header.header_bytes",
                    value: 65
                }
            )
        );
        let reserved = edited_header(|h| h[45] = 0x80, true);
        assert_eq!(
            header_err(&reserved),
            (
                45,
                CorruptionKind::InvalidField {
                    field: "log_header.reserved",
                    value: 0x80
                }
            )
        );
        // A flipped bit in a field without a range check (or in the reserved bytes, CRC not
        // fixed) is a checksum mismatch reported at the CRC field.
        let flipped = edited_header(|h| h[17] ^= 1, false);
        let computed = crc32c(&flipped[..60]);
        assert_eq!(
            header_err(&flipped),
            (
                60,
                CorruptionKind::ChecksumMismatch {
                    expected: 0x1a1f_e101,
                    actual: computed
                }
            )
        );
        let flipped_reserved = edited_header(|h| h[40] ^= 4, false);
        assert!(matches!(
            header_err(&flipped_reserved),
            (60, CorruptionKind::ChecksumMismatch { .. })
        ));
        // Bytes past the header (the first frame) do not matter to the header.
        let mut longer = GOLDEN_HEADER.to_vec();
        longer.extend_from_slice(&GOLDEN_FRAME);
        assert!(LogHeader::decode(&longer, Path::new("f")).is_ok());
    }

    #[test]
    fn file_names_round_trip_and_reject_near_misses() {
        assert_eq!(log_file_name(7), "log-0000000000000007.vlog");
        assert_eq!(log_file_name(u64::MAX), "log-ffffffffffffffff.vlog");
        for seq in [0, 1, 7, 0xdead_beef, u64::MAX] {
            assert_eq!(parse_log_file_name(&log_file_name(seq)), Some(seq));
        }
        for bad in [
            "log-7.vlog",
            "log-000000000000000G.vlog",
            "log-000000000000000A.vlog",
            "log-+000000000000007.vlog",
            "log-00000000000000007.vlog",
            "log-0000000000000007.vlog.tmp",
            "xlog-0000000000000007.vlog",
            "log-0000000000000007",
            "",
        ] {
            assert_eq!(parse_log_file_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn frame_checks() {
        assert_eq!(decode_frame_len(&[0, 0, 0]), None);
        assert_eq!(decode_frame_len(&[0, 0, 0, 0]), Some(FrameHead::End));
        assert_eq!(
            decode_frame_len(&GOLDEN_FRAME),
            Some(FrameHead::Frame { body_bytes: 5 })
        );
        let too_big = (FRAME_BODY_BYTES_MAX + 1).to_le_bytes();
        assert_eq!(
            decode_frame_len(&too_big),
            Some(FrameHead::BadLength(FRAME_BODY_BYTES_MAX + 1))
        );
        assert_eq!(
            check_frame(SEED, &GOLDEN_FRAME, 1, 64),
            Err(CorruptionKind::Mismatch {
                what: "frame.frame_index",
                expected: 1,
                actual: 0
            })
        );
        let mut padded = GOLDEN_FRAME;
        padded[31] = 1;
        assert!(matches!(
            check_frame(SEED, &padded, 0, 64),
            Err(CorruptionKind::ChecksumMismatch {
                expected: 0x92e1_70aa,
                ..
            })
        ));
        assert!(matches!(
            check_frame(SEED, &GOLDEN_FRAME[..24], 0, 64),
            Err(CorruptionKind::Truncated {
                needed: 32,
                available: 24
            })
        ));
        assert!(matches!(
            check_frame(SEED, &GOLDEN_FRAME[..3], 0, 64),
            Err(CorruptionKind::Truncated { .. })
        ));
        assert!(FrameBuf::new(&[]).is_err());
    }
}
