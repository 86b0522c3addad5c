//! The delta log: an append-only sequence of CRC32C-framed bodies with group commit.
//!
//! Invariants this module keeps (the byte layout is in `design/FORMAT.md`, the order in which bytes
//! become durable in `design/DURABILITY.md`):
//! 1. Frames are placed and written in index order under one lock: a frame's `write_at` has
//!    returned before the next frame is placed after it, so no acknowledged frame can ever sit
//!    after a hole.
//! 2. A position is reported durable (`durable_position`, a returning `sync_to`) only after a
//!    `sync_data` that started after every frame up to that position had been written returned
//!    `Ok`.
//! 3. Once a sync or a frame write fails the log is poisoned: every later append, sync and
//!    rotation returns [`crate::Error::Poisoned`], and the durable position never advances again.
//!    Failing to reserve space changes nothing and does not poison.
//! 4. A log file exists durably (header synced, directory entry synced) before any frame is
//!    appended to it, and before `rotate` switches appends to it the previous file is fully
//!    synced, so every position in an older file is durable.
//! 5. Replay yields a prefix of the frames appended: frame `i` is accepted only at the offset
//!    where frame `i - 1` ended, with index `i` and a matching CRC, and the scan stops at the
//!    first frame that fails any check.
//! 8. Every frame carries the writer's durable position when it was sealed (`durable_end`), never
//!    more than what a returned sync made durable: so a valid frame whose `durable_end` passes a
//!    bad frame proves that frame was synced, and replay reports it as damage
//!    ([`TailState::Damaged`]), never as a torn tail. A clean close seals the log after its last
//!    frame ([`DeltaLog::seal`]), claiming every frame durable.
//! 6. `open` truncates the file to the end of the last valid frame, and syncs that, before it
//!    appends anything, so bytes past that end can never be replayed after new frames.
//! 7. The reader never panics and never holds more than one buffer (or one frame) in memory,
//!    whatever bytes the file holds.

mod commit;
mod files;
mod format;
mod pending;
mod reader;
mod writer;

pub use format::{
    COMBINE_MIN_BYTES, CheckedFrame, FRAME_ALIGN, FRAME_BODY_BYTES_MAX, FRAME_BODY_OFFSET,
    FRAME_BYTES_MAX, FRAME_DURABLE_OFFSET, FRAME_HEADER_BYTES, FrameBuf, FrameHead, FrameSeed,
    LOG_FORMAT_VERSION, LOG_FORMAT_VERSION_MIN, LOG_HEADER_BYTES, LOG_MAGIC, LogHeader,
    SEAL_BYTES, SPARE_LOG_FILE, check_frame,
    check_seal, decode_frame_len, encode_frame, encode_frame_claiming, encode_seal, frame_bytes,
    log_file_name, parse_log_file_name,
};
pub use reader::{
    Frame, LogReader, PastFrame, READ_BUFFER_BYTES, ReplaySummary, SEARCH_CRC_BYTES_MAX, TailState,
    read_header, read_past_frame, replay, replay_file,
};
pub(crate) use reader::{Stop, judge_stop, step};
pub use writer::{
    DeltaLog, LogOptions, LogPosition, LogStats, OnDamage, PREALLOCATE_BYTES_MAX,
};
pub use files::retire_log;
