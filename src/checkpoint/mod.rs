//! The object-table checkpoint: every node live at one commit epoch, so that recovery replays only
//! the delta log after that epoch.
//!
//! Invariants:
//! 1. A checkpoint appears under its final name `ot-{seq:016x}.ckpt` only complete and durable:
//!    it is written as `ot-{seq:016x}.ckpt.tmp`, synced, renamed, and the directory is synced
//!    (`design/DURABILITY.md` §5). Only after [`CheckpointWriter::finish`] returned may a
//!    manifest name it, with the length and CRC32C `finish` returned.
//! 2. A `.tmp` file is never read. After an error or a crash it stays where it is, for the store's
//!    open to remove (with every `*.tmp`); a new writer for the same seq also removes it first.
//! 3. The writer never produces a file the reader rejects: it checks each entry with the reader's
//!    own entry decoder (ids strictly increasing, location, length, birth) before buffering it.
//! 4. Every byte of a checkpoint is checked when it is read: the header and footer by their
//!    CRC32C, each block's entries by the block's CRC32C (in format 4 also its count and
//!    `entry_bytes`, and its reserved word must be zero), each block header by its count's range
//!    and its `first_entry_index` following the previous block, the footer's counts against the
//!    header and the blocks read, and (given the manifest's expectations) the file's length and
//!    CRC32C. Every failure is a [`crate::Corruption`] naming the file and absolute offset.
//! 5. Reading never panics, never overflows, and holds at most one block ([`BLOCK_BYTES_MAX`]
//!    bytes) whatever the input: a block's count is checked against the format's maximum and the
//!    bytes left in the file before anything is read for it. Writing holds at most one block too.
//! 6. [`read_checkpoint`] and [`scan_checkpoint`] are one walk with two policies: the read stops at
//!    the first problem, the scan records it and goes on where the layout still allows, so the
//!    first problem a scan reports is the error the read returns.
//!
//! Layout: [`format`] (byte layout, shared decoders), `writer` ([`CheckpointWriter`]), `reader`
//! ([`read_checkpoint`], [`scan_checkpoint`]). The format is in `design/FORMAT.md` §7.

pub mod compact;
pub mod format;
mod reader;
mod writer;

#[cfg(test)]
mod compact_tests;
#[cfg(test)]
mod reject_tests;
#[cfg(test)]
mod tests;

pub use format::{BLOCK_BYTES_MAX, BLOCK_ENTRIES_MAX};
pub use reader::{
    CheckpointSummary, ScanReport, read_checkpoint, read_checkpoint_items, scan_checkpoint,
    scan_checkpoint_items,
};
pub use writer::CheckpointWriter;

use crate::meta::CheckpointRef;
use crate::object_table::{NodeId, Version};

/// One live node: its id and the version current at the checkpoint's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CheckpointEntry {
    /// The node.
    pub id: NodeId,
    /// Where its bytes are, their length, CRC32C and kind, and the epoch it became current.
    pub version: Version,
}

/// One entry of a checkpoint file: a live node, or a free handle whose tag (or exhaustion) must
/// survive a restart (so an id issued before the restart stays stale after it, rather than naming
/// a new node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckpointItem {
    /// A live node.
    Live(CheckpointEntry),
    /// A free handle; the id carries the tag the handle's next node gets.
    Free(NodeId),
    /// A free handle that issued every tag and is never handed out again; the id carries
    /// [`crate::object_table::TAG_MAX`].
    Exhausted(NodeId),
}

/// What [`CheckpointWriter::finish`] wrote: everything the manifest records about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The file name within the store directory.
    pub file: String,
    /// The checkpoint's sequence number (also in the file name and header).
    pub seq: u64,
    /// The commit epoch it is a snapshot of.
    pub epoch: u64,
    /// Entries in it.
    pub entries: u64,
    /// The file's length.
    pub bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
}

impl CheckpointInfo {
    /// The manifest's record of this checkpoint.
    pub fn manifest_ref(&self) -> CheckpointRef {
        CheckpointRef {
            file: self.file.clone(),
            epoch: self.epoch,
            entries: self.entries,
            bytes: self.bytes,
            crc32c: self.crc32c,
        }
    }

    /// What a reader must find in the file.
    pub fn expect(&self) -> CheckpointExpect {
        CheckpointExpect {
            seq: self.seq,
            epoch: self.epoch,
            entries: self.entries,
            bytes: self.bytes,
            crc32c: self.crc32c,
        }
    }
}

/// What a reader must find in a checkpoint file, as the manifest recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointExpect {
    /// `checkpoint_seq` in the header.
    pub seq: u64,
    /// `epoch` in the header.
    pub epoch: u64,
    /// `entry_count` in the header.
    pub entries: u64,
    /// The file's length.
    pub bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
}

impl CheckpointExpect {
    /// The expectations a manifest entry sets; `None` if its file name is not a checkpoint name
    /// (the manifest records the seq only in the name).
    pub fn from_manifest_ref(r: &CheckpointRef) -> Option<CheckpointExpect> {
        Some(CheckpointExpect {
            seq: parse_checkpoint_file_name(&r.file)?,
            epoch: r.epoch,
            entries: r.entries,
            bytes: r.bytes,
            crc32c: r.crc32c,
        })
    }
}

/// The name of the checkpoint with `seq`.
pub fn checkpoint_file_name(seq: u64) -> String {
    format!("ot-{seq:016x}.ckpt")
}

/// The seq of a checkpoint file name, if `name` is one (exactly 16 lowercase hex digits, so each
/// seq has one name and a `.tmp` file never parses).
pub fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("ot-")?.strip_suffix(".ckpt")?;
    let canonical = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}
