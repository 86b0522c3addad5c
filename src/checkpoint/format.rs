//! The checkpoint's byte layout: constants, encoders, and the decoders that both the reader and
//! the writer use (the writer runs every entry through [`decode_entry`] before buffering it).
//!
//! Decoders check only what the bytes of one structure can prove on their own (magic, version,
//! CRC, field ranges, reserved zeros, an entry's order after the previous id). Rules that need the
//! rest of the file (consecutive block indexes, counts against the header) belong to the reader.

use std::path::Path;

use super::{CheckpointEntry, CheckpointItem};
use crate::alloc::{Location, len_fits};
use crate::codec::{Decoder, Encoder, crc32c, magic_value};
use crate::error::{CorruptionKind, Error, Result};
use crate::object_table::{NodeId, TAG_MAX, Version};

/// The first eight bytes of a checkpoint file.
pub const MAGIC: [u8; 8] = *b"VELCHKPT";
/// The first eight bytes of the footer.
pub const FOOTER_MAGIC: [u8; 8] = *b"VELCKEND";
/// The format version this build writes: version 4 codes each entry against the one before it
/// in its block ([`super::compact`]).
pub const FORMAT_VERSION: u32 = 4;
/// The last format version of fixed 40-byte entries, still read.
pub const FORMAT_VERSION_FIXED: u32 = 3;
/// The oldest format version this build reads: version 2 is version 3 without exhausted entries
/// (version 1 had no free entries at all).
pub const FORMAT_VERSION_MIN: u32 = 2;
/// Bytes of the file header.
pub const HEADER_BYTES: usize = 64;
/// Bytes of a block header in versions 2 and 3.
pub const BLOCK_HEADER_BYTES: usize = 16;
/// Bytes of one entry in versions 2 and 3.
pub const ENTRY_BYTES: usize = 40;
/// Bytes of the footer.
pub const FOOTER_BYTES: usize = 32;
/// Most entries one block holds (the header records it; this build accepts only this value).
pub const BLOCK_ENTRIES_MAX: u32 = 4096;
/// Bytes of the largest block of any version: the most a reader or writer ever buffers.
pub const BLOCK_BYTES_MAX: usize = {
    let fixed = BLOCK_HEADER_BYTES + BLOCK_ENTRIES_MAX as usize * ENTRY_BYTES;
    let compact = super::compact::BLOCK_HEADER_BYTES
        + BLOCK_ENTRIES_MAX as usize * super::compact::ENTRY_BYTES_MAX;
    if fixed > compact { fixed } else { compact }
};

// Header fields.
const H_VERSION: usize = MAGIC.len();
const H_HEADER_BYTES: usize = H_VERSION + 4;
/// Offset of `checkpoint_seq` in the header.
pub const H_SEQ: usize = H_HEADER_BYTES + 4;
/// Offset of `epoch` in the header.
pub const H_EPOCH: usize = H_SEQ + 8;
/// Offset of `entry_count` in the header.
pub const H_ENTRY_COUNT: usize = H_EPOCH + 8;
const H_BLOCK_MAX: usize = H_ENTRY_COUNT + 8;
const H_RESERVED: usize = H_BLOCK_MAX + 4;
const H_RESERVED_BYTES: usize = 16;
const H_CRC: usize = H_RESERVED + H_RESERVED_BYTES;

// Block header fields.
/// Offset of `crc32c` in a block header.
pub const B_CRC: usize = 4;
/// Offset of `first_entry_index` in a block header.
pub const B_FIRST: usize = 8;

// Entry fields.
const E_LOCATION: usize = 8;
const E_LEN: usize = 16;
const E_CRC: usize = 20;
const E_BIRTH: usize = 24;
const E_KIND: usize = 32;
/// Offset of `flags` in an entry.
pub const E_FLAGS: usize = 33;
const E_RESERVED: usize = 34;
/// `flags` bit 0: the entry is a free handle (its id carries the tag the handle's next node
/// gets; every other field is zero).
pub const FLAG_FREE: u8 = 1;
/// `flags` bit 1, only beside [`FLAG_FREE`] and only from format version 3: the free handle
/// issued every tag and is retired for good (its id carries [`TAG_MAX`]).
pub const FLAG_EXHAUSTED: u8 = 2;
const E_RESERVED_BYTES: usize = ENTRY_BYTES - E_RESERVED;

// Footer fields.
/// Offset of `entry_count` in the footer.
pub const F_ENTRY_COUNT: usize = FOOTER_MAGIC.len();
/// Offset of `block_count` in the footer.
pub const F_BLOCK_COUNT: usize = F_ENTRY_COUNT + 8;
const F_RESERVED: usize = F_BLOCK_COUNT + 8;
const F_CRC: usize = F_RESERVED + 4;

// The landmarks of design/FORMAT.md §7.
const _: () = assert!(H_SEQ == 16 && H_ENTRY_COUNT == 32 && H_BLOCK_MAX == 40);
const _: () = assert!(H_RESERVED == 44 && H_CRC == 60 && H_CRC + 4 == HEADER_BYTES);
const _: () = assert!(B_FIRST + 8 == BLOCK_HEADER_BYTES);
const _: () = assert!(E_KIND == 32 && E_FLAGS == 33 && E_RESERVED_BYTES == 6);
const _: () = assert!(F_RESERVED == 24 && F_CRC == 28 && F_CRC + 4 == FOOTER_BYTES);

/// The file header's variable fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// `format_version`: [`FORMAT_VERSION`] when written, [`FORMAT_VERSION_MIN`] or later when
    /// read.
    pub version: u32,
    /// `checkpoint_seq`.
    pub seq: u64,
    /// The commit epoch the checkpoint is a snapshot of.
    pub epoch: u64,
    /// Entries in the file.
    pub entry_count: u64,
}

impl Header {
    /// The header's 64 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(HEADER_BYTES);
        e.bytes(&MAGIC)
            .u32(self.version)
            .u32(HEADER_BYTES as u32)
            .u64(self.seq)
            .u64(self.epoch)
            .u64(self.entry_count)
            .u32(BLOCK_ENTRIES_MAX)
            .zeros(H_RESERVED_BYTES);
        seal(e)
    }

    /// Decodes the header from `bytes`, read from offset 0 of `file`. Stops at the first failed
    /// check, in the order of `design/FORMAT.md` §7.
    pub fn decode(bytes: &[u8], file: &Path) -> Result<Header> {
        let mut d = Decoder::new(bytes, file, 0);
        if bytes.len() < HEADER_BYTES {
            return Err(d.error(CorruptionKind::Truncated {
                needed: HEADER_BYTES as u64,
                available: bytes.len() as u64,
            }));
        }
        // Identify the structure before its CRC, so that bytes that are not a checkpoint at all
        // are reported as such rather than as a bad checksum; `header_bytes` fixes the CRC range.
        let magic = d.array::<8>()?;
        if magic != MAGIC {
            let found = magic_value(&magic);
            return Err(d.error_at(0, CorruptionKind::BadMagic { found }));
        }
        let version = d.u32()?;
        if !(FORMAT_VERSION_MIN..=FORMAT_VERSION).contains(&version) {
            let kind = CorruptionKind::UnsupportedVersion { found: version };
            return Err(d.error_at(H_VERSION, kind));
        }
        let header_bytes = d.u32()?;
        if header_bytes as usize != HEADER_BYTES {
            let value = u64::from(header_bytes);
            return Err(invalid(
                &d,
                H_HEADER_BYTES,
                "checkpoint_header.header_bytes",
                value,
            ));
        }
        check_crc(&d, &bytes[..HEADER_BYTES], H_CRC)?;
        let header = Header {
            version,
            seq: d.u64()?,
            epoch: d.u64()?,
            entry_count: d.u64()?,
        };
        let block_max = d.u32()?;
        if block_max != BLOCK_ENTRIES_MAX {
            let value = u64::from(block_max);
            return Err(invalid(
                &d,
                H_BLOCK_MAX,
                "checkpoint_header.block_entries_max",
                value,
            ));
        }
        d.zeros(H_RESERVED_BYTES, "checkpoint_header.reserved")?;
        Ok(header)
    }
}

/// A block header. Its fields are checked by the reader, which knows the file around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Entries in the block.
    pub count: u32,
    /// CRC32C of the block's entry bytes.
    pub crc32c: u32,
    /// Index in the whole file of the block's first entry.
    pub first_entry_index: u64,
}

impl BlockHeader {
    /// The block header's 16 bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_BYTES] {
        let mut out = [0u8; BLOCK_HEADER_BYTES];
        out[..B_CRC].copy_from_slice(&self.count.to_le_bytes());
        out[B_CRC..B_FIRST].copy_from_slice(&self.crc32c.to_le_bytes());
        out[B_FIRST..].copy_from_slice(&self.first_entry_index.to_le_bytes());
        out
    }

    /// Decodes a block header from `bytes`, read from `file` at `offset`.
    pub fn decode(bytes: &[u8], file: &Path, offset: u64) -> Result<BlockHeader> {
        let mut d = Decoder::new(bytes, file, offset);
        Ok(BlockHeader {
            count: d.u32()?,
            crc32c: d.u32()?,
            first_entry_index: d.u64()?,
        })
    }
}

/// An entry's 40 bytes. Requires a packable location (see [`decode_entry`]).
pub fn encode_entry(entry: &CheckpointEntry) -> [u8; ENTRY_BYTES] {
    let v = &entry.version;
    let mut e = Encoder::with_capacity(ENTRY_BYTES);
    e.u64(entry.id.raw())
        .u64(v.location.pack())
        .u32(v.len)
        .u32(v.crc32c)
        .u64(v.birth)
        .u8(v.kind)
        .u8(0)
        .zeros(E_RESERVED_BYTES);
    let mut out = [0u8; ENTRY_BYTES];
    out.copy_from_slice(&e.finish());
    out
}

/// A free handle's 40 bytes: its id, zeros, and `FLAG_FREE`.
pub fn encode_free_entry(id: NodeId) -> [u8; ENTRY_BYTES] {
    encode_handle_entry(id, FLAG_FREE)
}

/// An exhausted handle's 40 bytes: its id (carrying [`TAG_MAX`]), zeros, and
/// `FLAG_FREE | FLAG_EXHAUSTED`.
pub fn encode_exhausted_entry(id: NodeId) -> [u8; ENTRY_BYTES] {
    encode_handle_entry(id, FLAG_FREE | FLAG_EXHAUSTED)
}

fn encode_handle_entry(id: NodeId, flags: u8) -> [u8; ENTRY_BYTES] {
    let mut e = Encoder::with_capacity(ENTRY_BYTES);
    e.u64(id.raw())
        .zeros(E_FLAGS - 8)
        .u8(flags)
        .zeros(E_RESERVED_BYTES);
    let mut out = [0u8; ENTRY_BYTES];
    out.copy_from_slice(&e.finish());
    out
}

/// The raw node id of an entry (its first eight bytes), valid or not; `None` if `bytes` is short.
pub fn entry_raw_id(bytes: &[u8]) -> Option<u64> {
    let raw = bytes.get(..8)?;
    Some(u64::from_le_bytes(raw.try_into().ok()?))
}

/// Decodes the entry in `bytes`, read from `file` at `offset`, in a checkpoint of `epoch` and
/// format `version`, after an entry whose raw id is `prev` (if any). Stops at the first failed
/// field check.
pub fn decode_entry(
    bytes: &[u8],
    file: &Path,
    offset: u64,
    epoch: u64,
    version: u32,
    prev: Option<u64>,
) -> Result<CheckpointItem> {
    let mut d = Decoder::new(bytes, file, offset);
    let raw = d.u64()?;
    let id = NodeId::from_raw(raw);
    // Strictly increasing ids make duplicates impossible and let a reader binary-search a block.
    let (Some(id), true) = (id, prev.is_none_or(|p| raw > p)) else {
        return Err(invalid(&d, 0, "checkpoint_entry.node_id", raw));
    };
    let flags = bytes.get(E_FLAGS).copied().unwrap_or(0);
    let exhausted = version >= 3 && flags == FLAG_FREE | FLAG_EXHAUSTED;
    if exhausted && id.tag() != TAG_MAX {
        return Err(invalid(&d, 0, "checkpoint_entry.node_id", raw));
    }
    if flags == FLAG_FREE || exhausted {
        // Every field of a free handle is zero.
        let fields = [
            (E_LOCATION, "checkpoint_entry.location", d.u64()?),
            (E_LEN, "checkpoint_entry.len", u64::from(d.u32()?)),
            (E_CRC, "checkpoint_entry.crc32c", u64::from(d.u32()?)),
            (E_BIRTH, "checkpoint_entry.birth", d.u64()?),
            (E_KIND, "checkpoint_entry.kind", u64::from(d.u8()?)),
        ];
        if let Some(&(at, field, value)) = fields.iter().find(|f| f.2 != 0) {
            return Err(invalid(&d, at, field, value));
        }
        d.u8()?;
        d.zeros(E_RESERVED_BYTES, "checkpoint_entry.reserved")?;
        if exhausted {
            return Ok(CheckpointItem::Exhausted(id));
        }
        return Ok(CheckpointItem::Free(id));
    }
    let packed = d.u64()?;
    let location = Location::unpack(packed)
        .ok_or_else(|| invalid(&d, E_LOCATION, "checkpoint_entry.location", packed))?;
    let len = d.u32()?;
    if !len_fits(location.class, u64::from(len)) {
        return Err(invalid(&d, E_LEN, "checkpoint_entry.len", u64::from(len)));
    }
    debug_assert_eq!(d.position(), E_CRC);
    // The node's CRC is opaque here: it is checked against the node's bytes when they are read.
    let crc32c = d.u32()?;
    debug_assert_eq!(d.position(), E_BIRTH);
    let birth = d.u64()?;
    if birth > epoch {
        return Err(invalid(&d, E_BIRTH, "checkpoint_entry.birth", birth));
    }
    let kind = d.u8()?;
    debug_assert_eq!(d.position(), E_FLAGS);
    let flags = d.u8()?;
    if flags != 0 {
        return Err(invalid(
            &d,
            E_FLAGS,
            "checkpoint_entry.flags",
            u64::from(flags),
        ));
    }
    d.zeros(E_RESERVED_BYTES, "checkpoint_entry.reserved")?;
    Ok(CheckpointItem::Live(CheckpointEntry {
        id,
        version: Version {
            location,
            len,
            crc32c,
            kind,
            birth,
        },
    }))
}

/// The bytes of a whole format 3 checkpoint `seq` at `epoch` holding `items` (fixed 40-byte
/// entries, every block full but the last), as builds before format 4 wrote it. This build
/// writes format 4; this is for tests that check a store written by an older build still opens.
pub fn encode_fixed_file(seq: u64, epoch: u64, items: &[CheckpointItem]) -> Vec<u8> {
    let entry_count = items.len() as u64;
    let mut out = Header {
        version: FORMAT_VERSION_FIXED,
        seq,
        epoch,
        entry_count,
    }
    .encode();
    let mut blocks = 0;
    for (b, chunk) in items.chunks(BLOCK_ENTRIES_MAX as usize).enumerate() {
        let mut entries = Vec::with_capacity(chunk.len() * ENTRY_BYTES);
        for item in chunk {
            entries.extend_from_slice(&match item {
                CheckpointItem::Live(e) => encode_entry(e),
                CheckpointItem::Free(id) => encode_free_entry(*id),
                CheckpointItem::Exhausted(id) => encode_exhausted_entry(*id),
            });
        }
        let header = BlockHeader {
            count: chunk.len() as u32,
            crc32c: crc32c(&entries),
            first_entry_index: (b * BLOCK_ENTRIES_MAX as usize) as u64,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&entries);
        blocks += 1;
    }
    let footer = Footer {
        entry_count,
        block_count: blocks,
    };
    out.extend_from_slice(&footer.encode());
    out
}

/// The footer's variable fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// Entries in the file (again).
    pub entry_count: u64,
    /// Blocks in the file.
    pub block_count: u64,
}

impl Footer {
    /// The footer's 32 bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(FOOTER_BYTES);
        e.bytes(&FOOTER_MAGIC)
            .u64(self.entry_count)
            .u64(self.block_count)
            .zeros(F_CRC - F_RESERVED);
        seal(e)
    }

    /// Decodes the footer from `bytes`, read from `file` at `offset`: magic, CRC, reserved. The
    /// reader compares the counts with the rest of the file.
    pub fn decode(bytes: &[u8], file: &Path, offset: u64) -> Result<Footer> {
        let mut d = Decoder::new(bytes, file, offset);
        let magic = d.array::<8>()?;
        if magic != FOOTER_MAGIC {
            let found = magic_value(&magic);
            return Err(d.error_at(0, CorruptionKind::BadMagic { found }));
        }
        let crc_range = bytes.get(..FOOTER_BYTES).ok_or_else(|| {
            d.error(CorruptionKind::Truncated {
                needed: FOOTER_BYTES as u64,
                available: bytes.len() as u64,
            })
        })?;
        check_crc(&d, crc_range, F_CRC)?;
        let footer = Footer {
            entry_count: d.u64()?,
            block_count: d.u64()?,
        };
        d.zeros(F_CRC - F_RESERVED, "checkpoint_footer.reserved")?;
        Ok(footer)
    }
}

/// Appends the CRC32C of everything encoded so far.
fn seal(e: Encoder) -> Vec<u8> {
    let mut out = e.finish();
    let crc = crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks that the u32 at `crc_at` of `bytes` is the CRC32C of `bytes[..crc_at]`. `bytes` must be
/// exactly `crc_at + 4` long (callers pass a fixed-size structure).
fn check_crc(d: &Decoder<'_>, bytes: &[u8], crc_at: usize) -> Result<()> {
    let (covered, stored) = bytes.split_at(crc_at.min(bytes.len()));
    let stored = <[u8; 4]>::try_from(stored).map_err(|_| {
        d.error_at(
            crc_at,
            CorruptionKind::Truncated {
                needed: 4,
                available: stored.len() as u64,
            },
        )
    })?;
    let (expected, actual) = (u32::from_le_bytes(stored), crc32c(covered));
    if expected != actual {
        let kind = CorruptionKind::ChecksumMismatch { expected, actual };
        return Err(d.error_at(crc_at, kind));
    }
    Ok(())
}

fn invalid(d: &Decoder<'_>, pos: usize, field: &'static str, value: u64) -> Error {
    d.error_at(pos, CorruptionKind::InvalidField { field, value })
}
