//! Reading a checkpoint: one walk over the file that checks every rule of
//! `design/FORMAT.md` §7, with two policies for what to do with a problem (invariant 6):
//! [`read_checkpoint`] stops at the first, [`scan_checkpoint`] records each and goes on.

use std::path::Path;
use std::sync::Arc;

use super::compact::{self, Base, ENTRY_BYTES_MAX, ENTRY_BYTES_MIN};
use super::format::{
    B_CRC, B_FIRST, BLOCK_ENTRIES_MAX, BLOCK_HEADER_BYTES, BlockHeader, ENTRY_BYTES, F_BLOCK_COUNT,
    F_ENTRY_COUNT, FOOTER_BYTES, FORMAT_VERSION_FIXED, Footer, H_ENTRY_COUNT, H_EPOCH, H_SEQ,
    HEADER_BYTES, Header, decode_entry, entry_raw_id,
};
use super::{CheckpointEntry, CheckpointExpect, CheckpointItem, parse_checkpoint_file_name};
use crate::codec::{crc32c, crc32c_append};
use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::io::{Storage, StorageFile};

/// What a successful [`read_checkpoint`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointSummary {
    /// `checkpoint_seq`.
    pub seq: u64,
    /// The commit epoch the checkpoint is a snapshot of.
    pub epoch: u64,
    /// Entries read (all of them).
    pub entries: u64,
    /// Blocks read.
    pub blocks: u64,
    /// The file's length.
    pub bytes: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
}

/// What [`scan_checkpoint`] found: every problem, and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanReport {
    /// The header, if it decoded.
    pub header: Option<Header>,
    /// Entries that passed every check and were visited.
    pub entries_valid: u64,
    /// Block headers read.
    pub blocks: u64,
    /// The file's length (0 if it could not be opened).
    pub bytes: u64,
    /// Every problem, in file order. The first is the error [`read_checkpoint`] returns.
    pub problems: Vec<Corruption>,
}

impl ScanReport {
    /// True when the checkpoint passed every check.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads and checks the checkpoint at `path`, passing each entry to `visit` in id order, and
/// comparing the file with `expect` (the manifest's record) when given.
///
/// Entries are visited block by block, each block once its CRC and fields have been checked; the
/// footer and the whole-file checks come after the last. So on `Err` the caller must discard what
/// it built from the visited entries. Errors: `Corruption` for any failed check, `Io` for a failed
/// storage call, or the first error `visit` returned.
pub fn read_checkpoint(
    storage: &dyn Storage,
    path: &Path,
    expect: Option<&CheckpointExpect>,
    mut visit: impl FnMut(CheckpointEntry) -> Result<()>,
) -> Result<CheckpointSummary> {
    read_checkpoint_items(storage, path, expect, |item| match item {
        CheckpointItem::Live(e) => visit(e),
        CheckpointItem::Free(_) | CheckpointItem::Exhausted(_) => Ok(()),
    })
}

/// Like [`read_checkpoint`], but visits free and exhausted handles too (recovery restores their
/// tags and marks).
pub fn read_checkpoint_items(
    storage: &dyn Storage,
    path: &Path,
    expect: Option<&CheckpointExpect>,
    visit: impl FnMut(CheckpointItem) -> Result<()>,
) -> Result<CheckpointSummary> {
    let mut walk = Walk::open(storage, path, Policy::Stop, visit)?;
    let header = walk.run(expect)?;
    tracing::debug!(
        file = %path.display(),
        seq = header.seq,
        epoch = header.epoch,
        entries = header.entry_count,
        "checkpoint read"
    );
    Ok(CheckpointSummary {
        seq: header.seq,
        epoch: header.epoch,
        entries: header.entry_count,
        blocks: walk.blocks,
        bytes: walk.len,
        crc32c: walk.crc,
    })
}

/// Checks the checkpoint at `path` like [`read_checkpoint`], but records every problem instead of
/// stopping at the first (for `fsck`). It goes past a block whose CRC fails (skipping its
/// entries), a wrong `first_entry_index` (counting on from the blocks before), a bad entry
/// (skipping it; in version 4 the rest of its block too, whose start is then unknown), and
/// footer and expectation mismatches. It stops where the layout is lost: a bad
/// header, a block count out of range, or a truncation. Only entries that pass every check are
/// visited.
///
/// Returns `Err` only for an I/O error or an error from `visit`.
pub fn scan_checkpoint(
    storage: &dyn Storage,
    path: &Path,
    expect: Option<&CheckpointExpect>,
    mut visit: impl FnMut(CheckpointEntry) -> Result<()>,
) -> Result<ScanReport> {
    scan_checkpoint_items(storage, path, expect, |item| match item {
        CheckpointItem::Live(e) => visit(e),
        CheckpointItem::Free(_) | CheckpointItem::Exhausted(_) => Ok(()),
    })
}

/// Like [`scan_checkpoint`], but visits free and exhausted handles too.
pub fn scan_checkpoint_items(
    storage: &dyn Storage,
    path: &Path,
    expect: Option<&CheckpointExpect>,
    visit: impl FnMut(CheckpointItem) -> Result<()>,
) -> Result<ScanReport> {
    let mut walk = match Walk::open(storage, path, Policy::Collect(Vec::new()), visit) {
        Ok(walk) => walk,
        Err(Error::Corruption(c)) => {
            return Ok(ScanReport {
                header: None,
                entries_valid: 0,
                blocks: 0,
                bytes: 0,
                problems: vec![*c],
            });
        }
        Err(e) => return Err(e),
    };
    let ended = walk.run(expect);
    let mut problems = match std::mem::replace(&mut walk.policy, Policy::Stop) {
        Policy::Collect(found) => found,
        Policy::Stop => Vec::new(),
    };
    match ended {
        Ok(_) => {}
        // The problem that ended the walk comes after every one recorded.
        Err(Error::Corruption(c)) => problems.push(*c),
        Err(e) => return Err(e),
    }
    tracing::debug!(file = %path.display(), problems = problems.len(), "checkpoint scanned");
    Ok(ScanReport {
        header: walk.header,
        entries_valid: walk.visited,
        blocks: walk.blocks,
        bytes: walk.len,
        problems,
    })
}

/// What to do with a problem after which the walk could go on.
#[derive(Debug)]
enum Policy {
    /// Return it.
    Stop,
    /// Record it and go on.
    Collect(Vec<Corruption>),
}

impl Policy {
    /// `Err(e)` to stop, `Ok` to go on. Only corruption is ever recorded: anything else is an
    /// error of the reader itself and stops every policy.
    fn report(&mut self, e: Error) -> Result<()> {
        match (self, e) {
            (Policy::Collect(found), Error::Corruption(c)) => {
                found.push(*c);
                Ok(())
            }
            (_, e) => Err(e),
        }
    }
}

/// One pass over a checkpoint file. A problem that loses the layout is returned as `Err` under
/// both policies; every other one goes through [`Policy::report`].
struct Walk<'p, V> {
    path: &'p Path,
    file: Arc<dyn StorageFile>,
    len: u64,
    /// The next byte to read; never above `len`.
    pos: u64,
    /// CRC32C of bytes `[0, pos)`.
    crc: u32,
    /// The bytes of the structure being checked: at most one block's entries.
    buf: Vec<u8>,
    policy: Policy,
    visit: V,
    header: Option<Header>,
    blocks: u64,
    visited: u64,
}

impl<'p, V: FnMut(CheckpointItem) -> Result<()>> Walk<'p, V> {
    fn open(storage: &dyn Storage, path: &'p Path, policy: Policy, visit: V) -> Result<Self> {
        if !storage.exists(path)? {
            return Err(Error::corruption(path, 0, CorruptionKind::MissingFile));
        }
        let file = storage.open_read_only(path)?;
        let len = file.len()?;
        Ok(Walk {
            path,
            file,
            len,
            pos: 0,
            crc: 0,
            buf: Vec::new(),
            policy,
            visit,
            header: None,
            blocks: 0,
            visited: 0,
        })
    }

    fn run(&mut self, expect: Option<&CheckpointExpect>) -> Result<Header> {
        // The length first, so that the wrong file is reported as such before it is read.
        if let Some(x) = expect
            && self.len != x.bytes
        {
            self.mismatch(0, "checkpoint.bytes", x.bytes, self.len)?;
        }
        self.take(HEADER_BYTES)?;
        let header = Header::decode(&self.buf, self.path)?;
        self.header = Some(header);
        let name = self.path.file_name().and_then(|n| n.to_str());
        if let Some(seq) = name.and_then(parse_checkpoint_file_name)
            && seq != header.seq
        {
            self.mismatch(H_SEQ as u64, "checkpoint.file_name", seq, header.seq)?;
        }
        if let Some(x) = expect {
            let pairs = [
                (H_SEQ, "checkpoint.seq", x.seq, header.seq),
                (H_EPOCH, "checkpoint.epoch", x.epoch, header.epoch),
                (
                    H_ENTRY_COUNT,
                    "checkpoint.entries",
                    x.entries,
                    header.entry_count,
                ),
            ];
            for (at, what, expected, actual) in pairs {
                if expected != actual {
                    self.mismatch(at as u64, what, expected, actual)?;
                }
            }
        }
        self.blocks(&header)?;
        self.footer(&header)?;
        if self.pos < self.len {
            let extra = self.len - self.pos;
            let kind = CorruptionKind::InvalidField {
                field: "checkpoint.trailing_bytes",
                value: extra,
            };
            self.policy
                .report(Error::corruption(self.path, self.pos, kind))?;
        } else if let Some(x) = expect
            && self.crc != x.crc32c
        {
            // Every structure checked out, yet the file is not the one the manifest names.
            let (expected, actual) = (u64::from(x.crc32c), u64::from(self.crc));
            self.mismatch(0, "checkpoint.crc32c", expected, actual)?;
        }
        Ok(header)
    }

    fn blocks(&mut self, header: &Header) -> Result<()> {
        // Index of the next entry, and raw id of the last entry in order.
        let mut index = 0u64;
        let mut prev: Option<u64> = None;
        while index < header.entry_count {
            let at = self.pos;
            let block = self.block_header(header.version, at)?;
            self.blocks += 1;
            let count = u64::from(block.count);
            // The count is checked before anything is read for it (invariant 5). A bad count
            // loses the position of everything after it, so it stops every policy.
            if block.count == 0 || block.count > BLOCK_ENTRIES_MAX {
                return Err(invalid(self.path, at, "checkpoint_block.count", count));
            }
            if block.first_entry_index != index {
                let (what, actual) = (
                    "checkpoint_block.first_entry_index",
                    block.first_entry_index,
                );
                // Scanning: go on counting from the blocks before. The index is the one field
                // of the block that neither its CRC nor its length vouches for, so it is the
                // likelier one to be wrong, and one bad index stays one problem.
                self.mismatch(at + block.first_at(), what, index, actual)?;
            }
            if header
                .entry_count
                .checked_sub(index)
                .is_none_or(|left| count > left)
            {
                return Err(invalid(self.path, at, "checkpoint_block.count", count));
            }
            self.check_compact_block(&block, at)?;
            let entries_at = self.pos;
            // At most BLOCK_ENTRIES_MAX * ENTRY_BYTES (or ENTRY_BYTES_MAX), checked above.
            self.take(block.entry_bytes)?;
            let actual = if block.compact {
                compact::block_crc(block.count, block.entry_bytes as u32, &self.buf)
            } else {
                crc32c(&self.buf)
            };
            if actual == block.crc32c {
                if block.compact {
                    self.compact_entries(header, entries_at, at, block.count, &mut prev)?;
                } else {
                    self.entries(header, entries_at, &mut prev)?;
                }
            } else {
                // Scanning: none of the block's entries can be trusted, so all are skipped.
                let kind = CorruptionKind::ChecksumMismatch {
                    expected: block.crc32c,
                    actual,
                };
                let e = Error::corruption(self.path, at + block.crc_at(), kind);
                self.policy.report(e)?;
            }
            index += count;
        }
        Ok(())
    }

    /// Reads the block header at `at` in the layout of format `version`.
    fn block_header(&mut self, version: u32, at: u64) -> Result<Block> {
        if version <= FORMAT_VERSION_FIXED {
            self.take(BLOCK_HEADER_BYTES)?;
            let b = BlockHeader::decode(&self.buf, self.path, at)?;
            return Ok(Block {
                compact: false,
                count: b.count,
                // At most BLOCK_ENTRIES_MAX * ENTRY_BYTES once the count is checked.
                entry_bytes: (b.count as usize).saturating_mul(ENTRY_BYTES),
                crc32c: b.crc32c,
                reserved: 0,
                first_entry_index: b.first_entry_index,
            });
        }
        self.take(compact::BLOCK_HEADER_BYTES)?;
        let b = compact::BlockHeader::decode(&self.buf, self.path, at)?;
        Ok(Block {
            compact: true,
            count: b.count,
            entry_bytes: b.entry_bytes as usize,
            crc32c: b.crc32c,
            reserved: b.reserved,
            first_entry_index: b.first_entry_index,
        })
    }

    /// A version 4 block's `entry_bytes` must lie within what `count` entries can take: outside
    /// it the next block cannot be located, so it stops every policy. Its `reserved` must be
    /// zero (the walk goes on past that: the layout is intact).
    fn check_compact_block(&mut self, block: &Block, at: u64) -> Result<()> {
        if !block.compact {
            return Ok(());
        }
        let count = block.count as usize;
        if !(count * ENTRY_BYTES_MIN..=count * ENTRY_BYTES_MAX).contains(&block.entry_bytes) {
            let value = block.entry_bytes as u64;
            let at = at + compact::B_ENTRY_BYTES as u64;
            return Err(invalid(self.path, at, "checkpoint_block.entry_bytes", value));
        }
        if block.reserved != 0 {
            let value = u64::from(block.reserved);
            let at = at + compact::B_RESERVED as u64;
            let e = invalid(self.path, at, "checkpoint_block.reserved", value);
            self.policy.report(e)?;
        }
        Ok(())
    }

    /// Checks and visits the `count` version 4 entries in `buf`, read from `base` (the block
    /// header is at `block_at`). An entry that fails its checks ends the block, since the next
    /// one's start is then unknown; bytes left after the last entry are a bad `entry_bytes`.
    fn compact_entries(
        &mut self,
        header: &Header,
        base: u64,
        block_at: u64,
        count: u32,
        prev: &mut Option<u64>,
    ) -> Result<()> {
        let buf = &self.buf;
        let mut pos = 0usize;
        let mut coded = Base::default();
        for _ in 0..count {
            let bytes = &buf[pos..];
            let at = base + pos as u64;
            match compact::decode_entry(bytes, self.path, at, coded, header.epoch, *prev) {
                Ok(d) => {
                    (self.visit)(d.item)?;
                    self.visited += 1;
                    *prev = Some(d.next.raw_id);
                    coded = d.next;
                    pos += d.bytes;
                }
                Err(e) => {
                    // Scanning: as in version 3, an in-order id still raises the bar, so a
                    // duplicate of it is caught in the blocks after.
                    if let Some(raw) = compact::raw_id_of(bytes, self.path, coded)
                        && prev.is_none_or(|p| raw > p)
                    {
                        *prev = Some(raw);
                    }
                    return self.policy.report(e);
                }
            }
        }
        if pos != buf.len() {
            let value = buf.len() as u64;
            let at = block_at + compact::B_ENTRY_BYTES as u64;
            let e = invalid(self.path, at, "checkpoint_block.entry_bytes", value);
            self.policy.report(e)?;
        }
        Ok(())
    }

    /// Checks and visits the entries in `buf`, read from `base`.
    fn entries(&mut self, header: &Header, base: u64, prev: &mut Option<u64>) -> Result<()> {
        for (i, bytes) in self.buf.chunks_exact(ENTRY_BYTES).enumerate() {
            let at = base + (i * ENTRY_BYTES) as u64;
            match decode_entry(bytes, self.path, at, header.epoch, header.version, *prev) {
                Ok(entry) => {
                    (self.visit)(entry)?;
                    self.visited += 1;
                }
                Err(e) => self.policy.report(e)?,
            }
            // Scanning: an id out of order does not move the bar for the next one, so one
            // misplaced id is one problem; an in-order id does, even in a bad entry, so a
            // duplicate of it is still caught.
            if let Some(raw) = entry_raw_id(bytes)
                && prev.is_none_or(|p| raw > p)
            {
                *prev = Some(raw);
            }
        }
        Ok(())
    }

    fn footer(&mut self, header: &Header) -> Result<()> {
        let at = self.pos;
        self.take(FOOTER_BYTES)?;
        let footer = match Footer::decode(&self.buf, self.path, at) {
            Ok(footer) => footer,
            // Counts that failed their CRC are not worth comparing.
            Err(e) => return self.policy.report(e),
        };
        if footer.entry_count != header.entry_count {
            let what = "checkpoint_footer.entry_count";
            let at = at + F_ENTRY_COUNT as u64;
            self.mismatch(at, what, header.entry_count, footer.entry_count)?;
        }
        if footer.block_count != self.blocks {
            let what = "checkpoint_footer.block_count";
            let at = at + F_BLOCK_COUNT as u64;
            self.mismatch(at, what, self.blocks, footer.block_count)?;
        }
        Ok(())
    }

    /// Reads the next `n` bytes into `buf`. Fewer left in the file is `Truncated` at the current
    /// offset, which stops every policy (nothing after it can be located).
    fn take(&mut self, n: usize) -> Result<()> {
        let available = self.len.saturating_sub(self.pos);
        if n as u64 > available {
            let kind = CorruptionKind::Truncated {
                needed: n as u64,
                available,
            };
            return Err(Error::corruption(self.path, self.pos, kind));
        }
        self.buf.clear();
        self.buf.resize(n, 0);
        self.file.read_exact_at(&mut self.buf, self.pos)?;
        self.crc = crc32c_append(self.crc, &self.buf);
        self.pos += n as u64;
        Ok(())
    }

    fn mismatch(&mut self, at: u64, what: &'static str, expected: u64, actual: u64) -> Result<()> {
        let kind = CorruptionKind::Mismatch {
            what,
            expected,
            actual,
        };
        self.policy.report(Error::corruption(self.path, at, kind))
    }
}

fn invalid(path: &Path, at: u64, field: &'static str, value: u64) -> Error {
    Error::corruption(path, at, CorruptionKind::InvalidField { field, value })
}

/// A block header of either layout.
struct Block {
    /// Version 4 (variable-length entries).
    compact: bool,
    count: u32,
    /// Bytes of the entries after the header.
    entry_bytes: usize,
    crc32c: u32,
    reserved: u32,
    first_entry_index: u64,
}

impl Block {
    /// Offset of `crc32c` in the block header.
    fn crc_at(&self) -> u64 {
        (if self.compact { compact::B_CRC } else { B_CRC }) as u64
    }

    /// Offset of `first_entry_index` in the block header.
    fn first_at(&self) -> u64 {
        (if self.compact { compact::B_FIRST } else { B_FIRST }) as u64
    }
}
