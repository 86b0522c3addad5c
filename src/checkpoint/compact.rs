//! Format version 4: blocks of variable-length entries, each coded against the entry before it in
//! its block (`design/FORMAT.md` §7, "Version 4 blocks"). A 16-byte node's entry takes 12 to 16
//! bytes instead of version 3's 40: a checkpoint of a million of them took 13.3 MB instead of 40.
//!
//! Invariants:
//! 1. A block decodes on its own: the first entry of every block is coded against zero, so a scan
//!    that skips a damaged block still reads the next one.
//! 2. The encoding is canonical: varints are minimal (the decoder refuses any other), a location
//!    difference is a wrapping difference (a bijection on u64), and [`encode_entry`] writes what
//!    [`decode_entry`] reads back; the writer checks every entry that way before buffering it.
//! 3. Decoding never panics or overflows: every sum is checked, and an entry reads at most
//!    [`ENTRY_BYTES_MAX`] bytes, the bound the reader holds a block's `entry_bytes` to.

use std::path::Path;

use super::format::{FLAG_EXHAUSTED, FLAG_FREE};
use super::{CheckpointEntry, CheckpointItem};
use crate::alloc::{Location, len_fits};
use crate::codec::{Decoder, Encoder, crc32c, crc32c_append, unzigzag, zigzag};
use crate::error::{CorruptionKind, Error, Result};
use crate::object_table::{NodeId, TAG_MAX, Version};

/// Bytes of a version 4 block header.
pub const BLOCK_HEADER_BYTES: usize = 24;
/// Offset of `entry_bytes` in a version 4 block header.
pub const B_ENTRY_BYTES: usize = 4;
/// Offset of `crc32c` in a version 4 block header.
pub const B_CRC: usize = 8;
/// Offset of `reserved` in a version 4 block header.
pub const B_RESERVED: usize = 12;
/// Offset of `first_entry_index` in a version 4 block header.
pub const B_FIRST: usize = 16;
/// The fewest bytes of an entry (a free handle one above the entry before it).
pub const ENTRY_BYTES_MIN: usize = 2;
/// The most bytes of an entry the decoder accepts: a 10-byte id difference, flags, a 10-byte
/// location difference, a 4-byte length (at most 64 MiB), the CRC, a 10-byte age and the kind.
pub const ENTRY_BYTES_MAX: usize = 10 + 1 + 10 + 4 + 4 + 10 + 1;

const _: () = assert!(B_FIRST + 8 == BLOCK_HEADER_BYTES);

/// The CRC32C of a version 4 block: over its `count` and `entry_bytes` (the header's first
/// eight bytes) and then its entry bytes. Covering the two counts keeps every byte checked: in
/// version 3 the count fixed the CRC's range, but here `entry_bytes` does, and a changed count
/// would otherwise be blamed on the entries' length, or go unseen until the entries ran out.
pub fn block_crc(count: u32, entry_bytes: u32, entries: &[u8]) -> u32 {
    let mut counts = [0u8; 8];
    counts[..4].copy_from_slice(&count.to_le_bytes());
    counts[4..].copy_from_slice(&entry_bytes.to_le_bytes());
    crc32c_append(crc32c(&counts), entries)
}

/// A version 4 block header. The reader checks its fields against the file around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockHeader {
    /// Entries in the block.
    pub count: u32,
    /// Bytes of the block's entries, after the header.
    pub entry_bytes: u32,
    /// [`block_crc`] of the block.
    pub crc32c: u32,
    /// Must be zero.
    pub reserved: u32,
    /// Index in the whole file of the block's first entry.
    pub first_entry_index: u64,
}

impl BlockHeader {
    /// The block header's 24 bytes.
    pub fn encode(&self) -> [u8; BLOCK_HEADER_BYTES] {
        let mut e = Encoder::with_capacity(BLOCK_HEADER_BYTES);
        e.u32(self.count)
            .u32(self.entry_bytes)
            .u32(self.crc32c)
            .u32(self.reserved)
            .u64(self.first_entry_index);
        let mut out = [0u8; BLOCK_HEADER_BYTES];
        out.copy_from_slice(&e.finish());
        out
    }

    /// Decodes a block header from `bytes`, read from `file` at `offset`.
    pub fn decode(bytes: &[u8], file: &Path, offset: u64) -> Result<BlockHeader> {
        let mut d = Decoder::new(bytes, file, offset);
        Ok(BlockHeader {
            count: d.u32()?,
            entry_bytes: d.u32()?,
            crc32c: d.u32()?,
            reserved: d.u32()?,
            first_entry_index: d.u64()?,
        })
    }
}

/// What an entry is coded against: the raw id and packed location of the entry before it in the
/// block (zero for the block's first entry; a handle entry leaves the location as it was).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Base {
    /// Raw id of the entry before.
    pub raw_id: u64,
    /// Packed location of the last live entry before.
    pub packed: u64,
}

/// Appends `item`'s bytes to `out`, coded against `base`, and returns the base of the next
/// entry. The caller checks the bytes with [`decode_entry`] (invariant 2).
pub fn encode_entry(out: &mut Vec<u8>, base: Base, epoch: u64, item: &CheckpointItem) -> Base {
    let mut e = Encoder::with_capacity(ENTRY_BYTES_MAX);
    let (id, flags) = match item {
        CheckpointItem::Live(entry) => (entry.id, 0),
        CheckpointItem::Free(id) => (*id, FLAG_FREE),
        CheckpointItem::Exhausted(id) => (*id, FLAG_FREE | FLAG_EXHAUSTED),
    };
    e.varint(id.raw().wrapping_sub(base.raw_id)).u8(flags);
    let mut next = Base {
        raw_id: id.raw(),
        packed: base.packed,
    };
    if let CheckpointItem::Live(entry) = item {
        let v = &entry.version;
        let packed = v.location.pack();
        e.varint(zigzag(packed.wrapping_sub(base.packed) as i64))
            .varint(u64::from(v.len))
            .u32(v.crc32c)
            .varint(epoch.wrapping_sub(v.birth))
            .u8(v.kind);
        next.packed = packed;
    }
    out.extend_from_slice(&e.finish());
    next
}

/// One entry [`decode_entry`] read: the item, its bytes, and the base of the next entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// The entry.
    pub item: CheckpointItem,
    /// Bytes it took.
    pub bytes: usize,
    /// What the next entry in the block is coded against.
    pub next: Base,
}

/// Decodes the entry at the start of `bytes`, read from `file` at `offset`, coded against
/// `base`, in a checkpoint of `epoch`, after an entry whose raw id is `prev` (if any; it may lie
/// in an earlier block). Stops at the first failed check, in the order of `design/FORMAT.md` §7.
///
/// On an id that is out of order the error comes with the id, so a scan can still tell what the
/// entry claimed; see [`raw_id_of`].
pub fn decode_entry(
    bytes: &[u8],
    file: &Path,
    offset: u64,
    base: Base,
    epoch: u64,
    prev: Option<u64>,
) -> Result<Decoded> {
    let mut d = Decoder::new(bytes, file, offset);
    let delta = d.varint("checkpoint_entry.node_id_delta")?;
    let raw = base
        .raw_id
        .checked_add(delta)
        .filter(|_| delta > 0)
        .ok_or_else(|| invalid(&d, 0, "checkpoint_entry.node_id_delta", delta))?;
    let id = NodeId::from_raw(raw);
    // Strictly increasing ids make duplicates impossible, across blocks too.
    let (Some(id), true) = (id, prev.is_none_or(|p| raw > p)) else {
        return Err(invalid(&d, 0, "checkpoint_entry.node_id", raw));
    };
    let flags_at = d.position();
    let flags = d.u8()?;
    let mut next = Base {
        raw_id: raw,
        packed: base.packed,
    };
    let item = match flags {
        0 => CheckpointItem::Live(live_fields(&mut d, id, epoch, &mut next)?),
        FLAG_FREE => CheckpointItem::Free(id),
        f if f == FLAG_FREE | FLAG_EXHAUSTED => {
            if id.tag() != TAG_MAX {
                return Err(invalid(&d, 0, "checkpoint_entry.node_id", raw));
            }
            CheckpointItem::Exhausted(id)
        }
        f => {
            let value = u64::from(f);
            return Err(invalid(&d, flags_at, "checkpoint_entry.flags", value));
        }
    };
    Ok(Decoded {
        item,
        bytes: d.position(),
        next,
    })
}

/// A live entry's fields after its flags; sets the next base's location.
fn live_fields(
    d: &mut Decoder<'_>,
    id: NodeId,
    epoch: u64,
    next: &mut Base,
) -> Result<CheckpointEntry> {
    let at = d.position();
    let packed = next
        .packed
        .wrapping_add(unzigzag(d.varint("checkpoint_entry.location")?) as u64);
    let location = Location::unpack(packed)
        .ok_or_else(|| invalid(d, at, "checkpoint_entry.location", packed))?;
    let at = d.position();
    let len = d.varint("checkpoint_entry.len")?;
    let len = u32::try_from(len)
        .ok()
        .filter(|&l| len_fits(location.class, u64::from(l)))
        .ok_or_else(|| invalid(d, at, "checkpoint_entry.len", len))?;
    // The node's CRC is opaque here: it is checked against the node's bytes when they are read.
    let crc32c = d.u32()?;
    let at = d.position();
    let age = d.varint("checkpoint_entry.age")?;
    let birth = epoch
        .checked_sub(age)
        .ok_or_else(|| invalid(d, at, "checkpoint_entry.age", age))?;
    let kind = d.u8()?;
    next.packed = packed;
    Ok(CheckpointEntry {
        id,
        version: Version {
            location,
            len,
            crc32c,
            kind,
            birth,
        },
    })
}

/// The raw id an entry at the start of `bytes` claims against `base`, valid or not; `None` if
/// its difference does not decode or overflows. A scan uses it to keep the order check going
/// past a bad entry, as version 3 does.
pub fn raw_id_of(bytes: &[u8], file: &Path, base: Base) -> Option<u64> {
    let mut d = Decoder::new(bytes, file, 0);
    let delta = d.varint("checkpoint_entry.node_id_delta").ok()?;
    base.raw_id.checked_add(delta)
}

fn invalid(d: &Decoder<'_>, pos: usize, field: &'static str, value: u64) -> Error {
    d.error_at(pos, CorruptionKind::InvalidField { field, value })
}
