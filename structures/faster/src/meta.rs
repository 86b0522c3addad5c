//! The metadata node (`design/FORMAT.md` §8): what recovery starts from.
//!
//! Invariants:
//! 1. Root `faster-log:<name>` names the metadata node; one runtime transaction changes the
//!    metadata node together with every chunk node and extent node it lists (directly or
//!    through a chunk), so a recovered metadata node never lists a node that is not durable, nor
//!    misses one holding committed entries.
//! 2. `chunks` are ascending and contiguous (each starts where the previous one ends) and list
//!    complete pages only: the last one ends at or below the committed tail's page. The in-line
//!    pages `first_page .. first_page + page_count` follow them (`first_page` is the last chunk's
//!    end when there are chunks) in order; each page's extents follow the extent invariants
//!    (`extent.rs`) and together cover at least the page's bytes below `committed_tail`.
//! 3. `begin <= committed_tail`; no page wholly below `begin` is listed, in-line or in a chunk.
//! 4. `retire_pending` lists extent nodes merged away by the commit that wrote this metadata;
//!    the next commit retires them (so a reader that looked the old extents up under the
//!    previous metadata can still read them, and a crash leaks nothing). No chunk or in-line page
//!    lists one of them.
//! 5. Version 2 is written; version 1 (no chunks, the word at offset 52 reserved and zero) is
//!    still read, and the next commit rewrites it as version 2.
//! 6. Every listed page's addresses fit a `u64`: the in-line pages end at a page whose start
//!    address `(first_page + page_count) * page_bytes` fits (chunks list pages below the
//!    committed tail), so a reader or a check computes any listed address without overflow.

use std::collections::BTreeMap;
use std::path::PathBuf;

use vellum::NodeId;
use vellum::codec::crc32c;
use vellum::{CorruptionKind, Error as StoreError};

pub use crate::chunk::{CHUNK_REF_BYTES, ChunkRef};
use crate::extent::{CRC_BYTES, checked_body, get_pages, pages_bytes, put_page, u32_at, u64_at};
pub use crate::extent::{EXTENT_BYTES, Extent, extent_at};

/// Magic of a metadata node.
pub const META_MAGIC: [u8; 8] = *b"VFLOGMD1";
/// Format version of the metadata nodes written.
pub const META_VERSION: u32 = 2;
/// The first format version, still read: no chunks.
pub const META_VERSION_1: u32 = 1;
/// Node kind of a metadata node.
pub const META_KIND: u8 = 0x4d;
/// Node kind of an extent node (bytes of part of a page).
pub const PAGE_KIND: u8 = 0x50;
/// Bytes of the fixed part of a metadata node, before the chunk references.
pub const META_FIXED_BYTES: usize = 56;
/// Longest iterator name, in bytes.
pub const ITERATOR_NAME_BYTES_MAX: usize = 64;

const _: () = assert!(META_FIXED_BYTES == 8 + 4 + 4 + 8 + 8 + 8 + 4 + 4 + 4 + 4);

/// A decoded metadata node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Bytes per page.
    pub page_bytes: u32,
    /// The first address readable.
    pub begin: u64,
    /// Every entry below this address is committed.
    pub committed_tail: u64,
    /// Chunk nodes listing the oldest pages, ascending and contiguous.
    pub chunks: Vec<ChunkRef>,
    /// The page number of `pages[0]` (the last chunk's end when there are chunks).
    pub first_page: u64,
    /// The extents of each in-line page from `first_page` on.
    pub pages: Vec<Vec<Extent>>,
    /// Extent nodes the next commit retires.
    pub retire_pending: Vec<NodeId>,
    /// Named iterators and their saved positions.
    pub iterators: BTreeMap<String, u64>,
}

impl Meta {
    /// Encodes the node's bytes (always the current version).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(
            META_FIXED_BYTES
                + self.chunks.len() * CHUNK_REF_BYTES
                + pages_bytes(&self.pages)
                + self.retire_pending.len() * 8
                + self.iterators.len() * (1 + ITERATOR_NAME_BYTES_MAX + 8)
                + CRC_BYTES,
        );
        b.extend_from_slice(&META_MAGIC);
        b.extend_from_slice(&META_VERSION.to_le_bytes());
        b.extend_from_slice(&self.page_bytes.to_le_bytes());
        b.extend_from_slice(&self.begin.to_le_bytes());
        b.extend_from_slice(&self.committed_tail.to_le_bytes());
        b.extend_from_slice(&self.first_page.to_le_bytes());
        b.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.iterators.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.retire_pending.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        debug_assert_eq!(b.len(), META_FIXED_BYTES);
        for c in &self.chunks {
            c.put(&mut b);
        }
        for page in &self.pages {
            put_page(&mut b, page);
        }
        for n in &self.retire_pending {
            b.extend_from_slice(&n.raw().to_le_bytes());
        }
        for (name, pos) in &self.iterators {
            b.push(name.len() as u8);
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&pos.to_le_bytes());
        }
        let crc = crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a metadata node of version 1 or 2; `what` names it in corruption reports.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Meta, StoreError> {
        let bad = |offset: usize, kind: CorruptionKind| {
            StoreError::corruption(PathBuf::from(what), offset as u64, kind)
        };
        let body = checked_body(bytes, META_FIXED_BYTES, &META_MAGIC, what)?;
        let version = u32_at(body, 8);
        if version != META_VERSION && version != META_VERSION_1 {
            return Err(bad(
                8,
                CorruptionKind::UnsupportedVersion { found: version },
            ));
        }
        let mut m = Meta {
            page_bytes: u32_at(body, 12),
            begin: u64_at(body, 16),
            committed_tail: u64_at(body, 24),
            first_page: u64_at(body, 32),
            ..Meta::default()
        };
        let pages = u32_at(body, 40) as usize;
        let iterators = u32_at(body, 44) as usize;
        let pending = u32_at(body, 48) as usize;
        let chunks = u32_at(body, 52) as usize;
        let invalid = |offset: usize, field: &'static str, value: u64| {
            bad(offset, CorruptionKind::InvalidField { field, value })
        };
        if m.page_bytes < 8 || !m.page_bytes.is_multiple_of(8) {
            return Err(invalid(12, "page_bytes", m.page_bytes.into()));
        }
        if m.begin > m.committed_tail {
            return Err(invalid(16, "begin", m.begin));
        }
        if version == META_VERSION_1 && chunks != 0 {
            return Err(invalid(52, "reserved", chunks as u64));
        }
        let listed_end = m
            .first_page
            .checked_add(pages as u64)
            .and_then(|end| end.checked_mul(m.page_bytes.into()));
        if m.first_page < m.begin / u64::from(m.page_bytes) || listed_end.is_none() {
            return Err(invalid(32, "first_page", m.first_page));
        }
        let mut at = META_FIXED_BYTES;
        m.chunks = get_chunk_refs(body, &mut at, chunks, &m, what)?;
        if let Some(last) = m.chunks.last()
            && m.first_page != last.end()
        {
            return Err(bad(
                32,
                CorruptionKind::Mismatch {
                    what: "first_page and the last chunk's end",
                    expected: last.end(),
                    actual: m.first_page,
                },
            ));
        }
        m.pages = get_pages(body, &mut at, pages, m.page_bytes, false, what, 40)?;
        if pending > (body.len() - at) / 8 {
            return Err(invalid(48, "retire_pending_count", pending as u64));
        }
        for _ in 0..pending {
            let raw = u64_at(body, at);
            m.retire_pending
                .push(NodeId::from_raw(raw).ok_or_else(|| invalid(at, "retire_pending", raw))?);
            at += 8;
        }
        for _ in 0..iterators {
            let len = *body
                .get(at)
                .ok_or_else(|| invalid(44, "iterator_count", iterators as u64))?
                as usize;
            let end = at + 1 + len + 8;
            if len == 0 || len > ITERATOR_NAME_BYTES_MAX || end > body.len() {
                return Err(invalid(at, "iterator_name_len", len as u64));
            }
            // Names are UTF-8, in strictly ascending byte order (the encoding is canonical).
            let name = std::str::from_utf8(&body[at + 1..at + 1 + len])
                .ok()
                .filter(|n| {
                    m.iterators
                        .last_key_value()
                        .is_none_or(|(last, _)| last.as_str() < *n)
                })
                .ok_or_else(|| invalid(at + 1, "iterator_name", len as u64))?;
            m.iterators
                .insert(name.to_owned(), u64_at(body, at + 1 + len));
            at = end;
        }
        if at != body.len() {
            return Err(bad(
                at,
                CorruptionKind::Mismatch {
                    what: "metadata length",
                    expected: at as u64,
                    actual: body.len() as u64,
                },
            ));
        }
        Ok(m)
    }

    /// The extents of in-line page `page`, if listed (pages in chunks are not).
    pub fn page_extents(&self, page: u64) -> Option<&[Extent]> {
        let i = page.checked_sub(self.first_page)?;
        self.pages.get(usize::try_from(i).ok()?).map(Vec::as_slice)
    }

    /// The first page listed, in a chunk or in-line.
    pub fn first_listed_page(&self) -> u64 {
        self.chunks
            .first()
            .map_or(self.first_page, |c| c.first_page)
    }
}

/// Decodes `count` chunk references at `*at` (invariants 2 and 3, given `m`'s fixed fields),
/// advancing `*at` past them.
fn get_chunk_refs(
    body: &[u8],
    at: &mut usize,
    count: usize,
    m: &Meta,
    what: &str,
) -> Result<Vec<ChunkRef>, StoreError> {
    let invalid = |offset: usize, field: &'static str, value: u64| {
        StoreError::corruption(
            PathBuf::from(what),
            offset as u64,
            CorruptionKind::InvalidField { field, value },
        )
    };
    if count > (body.len() - *at) / CHUNK_REF_BYTES {
        return Err(invalid(52, "chunk_count", count as u64));
    }
    let page_bytes = u64::from(m.page_bytes);
    let mut refs: Vec<ChunkRef> = Vec::with_capacity(count);
    for _ in 0..count {
        let first_page = u64_at(body, *at);
        let page_count = u32_at(body, *at + 8);
        let raw = u64_at(body, *at + 16);
        let expected_first = refs.last().map_or(m.begin / page_bytes, ChunkRef::end);
        // The first chunk lists no page wholly below begin; each next one starts where the
        // previous one ends.
        if (refs.is_empty() && first_page < expected_first)
            || (!refs.is_empty() && first_page != expected_first)
        {
            return Err(invalid(*at, "chunk_first_page", first_page));
        }
        let end = first_page.checked_add(page_count.into());
        let complete = end
            .and_then(|e| e.checked_mul(page_bytes))
            .is_some_and(|bytes| bytes <= m.committed_tail);
        if page_count == 0 || page_count > crate::chunk::CHUNK_PAGES || !complete {
            return Err(invalid(*at + 8, "chunk_page_count", page_count.into()));
        }
        if u32_at(body, *at + 12) != 0 {
            return Err(invalid(*at + 12, "reserved", u32_at(body, *at + 12).into()));
        }
        let node = NodeId::from_raw(raw).ok_or_else(|| invalid(*at + 16, "chunk_node", raw))?;
        refs.push(ChunkRef {
            first_page,
            page_count,
            node,
        });
        *at += CHUNK_REF_BYTES;
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(h: u64) -> NodeId {
        NodeId::new(0, h, 1).unwrap()
    }

    fn sample() -> Meta {
        let mut iterators = BTreeMap::new();
        iterators.insert("reader".to_owned(), 4096);
        Meta {
            page_bytes: 4096,
            begin: 8,
            committed_tail: 5000,
            chunks: Vec::new(),
            first_page: 0,
            pages: vec![
                vec![Extent {
                    start: 0,
                    len: 4096,
                    node: id(1),
                }],
                vec![
                    Extent {
                        start: 0,
                        len: 512,
                        node: id(2),
                    },
                    Extent {
                        start: 512,
                        len: 392,
                        node: id(3),
                    },
                ],
            ],
            retire_pending: vec![id(4)],
            iterators,
        }
    }

    /// Pages 5..65 in a chunk a partial truncation rewrote, 65..129 in a full one, page 129
    /// in-line with 512 bytes committed.
    fn chunked() -> Meta {
        Meta {
            page_bytes: 4096,
            begin: 5 * 4096 + 8,
            committed_tail: 129 * 4096 + 512,
            chunks: vec![
                ChunkRef {
                    first_page: 5,
                    page_count: 60,
                    node: id(10),
                },
                ChunkRef {
                    first_page: 65,
                    page_count: 64,
                    node: id(11),
                },
            ],
            first_page: 129,
            pages: vec![vec![Extent {
                start: 0,
                len: 512,
                node: id(12),
            }]],
            retire_pending: Vec::new(),
            iterators: BTreeMap::new(),
        }
    }

    /// `m`'s bytes with the version word set to `version` and the CRC32C recomputed.
    fn with_version(mut b: Vec<u8>, version: u32) -> Vec<u8> {
        b[8..12].copy_from_slice(&version.to_le_bytes());
        reseal(b)
    }

    /// `b` with its CRC32C recomputed, so a decoder gets past the checksum to the fields.
    fn reseal(mut b: Vec<u8>) -> Vec<u8> {
        let body = b.len() - 4;
        let crc = crc32c(&b[..body]);
        b[body..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    fn corruption(b: &[u8]) -> (u64, CorruptionKind) {
        let e = Meta::decode(b, "m").unwrap_err();
        let c = e.as_corruption().unwrap();
        (c.offset, c.kind.clone())
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Meta::decode(&m.encode(), "m").unwrap(), m);
        assert_eq!(m.page_extents(1).unwrap().len(), 2);
        assert_eq!(
            extent_at(m.page_extents(1).unwrap(), 511).unwrap().node,
            id(2)
        );
        assert_eq!(
            extent_at(m.page_extents(1).unwrap(), 512).unwrap().node,
            id(3)
        );
        assert_eq!(extent_at(m.page_extents(1).unwrap(), 904), None);
        assert_eq!(m.page_extents(2), None);
        let c = chunked();
        assert_eq!(Meta::decode(&c.encode(), "m").unwrap(), c);
        assert_eq!(c.first_listed_page(), 5);
        assert_eq!(c.page_extents(64), None, "pages in chunks are not in-line");
        assert_eq!(c.page_extents(129).unwrap().len(), 1);
    }

    /// Golden layout (`design/FORMAT.md` §8): version 2 without chunks.
    #[test]
    fn golden_layout() {
        let b = sample().encode();
        assert_eq!(&b[0..8], b"VFLOGMD1");
        assert_eq!(&b[8..12], &2u32.to_le_bytes());
        assert_eq!(&b[12..16], &4096u32.to_le_bytes());
        assert_eq!(&b[16..24], &8u64.to_le_bytes());
        assert_eq!(&b[24..32], &5000u64.to_le_bytes());
        assert_eq!(&b[32..40], &0u64.to_le_bytes());
        assert_eq!(&b[40..44], &2u32.to_le_bytes(), "page_count");
        assert_eq!(&b[44..48], &1u32.to_le_bytes(), "iterator_count");
        assert_eq!(&b[48..52], &1u32.to_le_bytes(), "retire_pending_count");
        assert_eq!(&b[52..56], &[0; 4], "chunk_count");
        // Page 0: one extent.
        assert_eq!(&b[56..64], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[64..68], &0u32.to_le_bytes());
        assert_eq!(&b[68..72], &4096u32.to_le_bytes());
        assert_eq!(&b[72..80], &id(1).raw().to_le_bytes());
        // Page 1: two extents.
        assert_eq!(&b[80..88], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[104..108], &512u32.to_le_bytes());
        assert_eq!(&b[108..112], &392u32.to_le_bytes());
        // Retire pending, then the iterator, then the CRC.
        assert_eq!(&b[120..128], &id(4).raw().to_le_bytes());
        assert_eq!(b[128], 6);
        assert_eq!(&b[129..135], b"reader");
        assert_eq!(&b[135..143], &4096u64.to_le_bytes());
        assert_eq!(b.len(), 147);
        assert_eq!(&b[143..], &crc32c(&b[..143]).to_le_bytes());
    }

    /// Golden layout (`design/FORMAT.md` §8, the example with chunks): every byte.
    #[test]
    fn golden_layout_with_chunks() {
        let b = chunked().encode();
        assert_eq!(b.len(), 132);
        assert_eq!(&b[52..56], &2u32.to_le_bytes(), "chunk_count");
        // Chunk references: first_page, page_count, reserved, node.
        assert_eq!(&b[56..64], &5u64.to_le_bytes());
        assert_eq!(&b[64..68], &60u32.to_le_bytes());
        assert_eq!(&b[68..72], &[0; 4]);
        assert_eq!(&b[72..80], &id(10).raw().to_le_bytes());
        assert_eq!(&b[80..88], &65u64.to_le_bytes());
        assert_eq!(&b[88..92], &64u32.to_le_bytes());
        assert_eq!(&b[96..104], &id(11).raw().to_le_bytes());
        // The in-line page 129.
        assert_eq!(&b[32..40], &129u64.to_le_bytes(), "first_page");
        assert_eq!(&b[104..112], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[112..116], &0u32.to_le_bytes());
        assert_eq!(&b[116..120], &512u32.to_le_bytes());
        assert_eq!(&b[120..128], &id(12).raw().to_le_bytes());
        assert_eq!(&b[128..], &crc32c(&b[..128]).to_le_bytes());
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(hex, GOLDEN_CHUNKED_HEX);
    }

    /// The bytes of `chunked()`, as `design/FORMAT.md` §8 shows them.
    const GOLDEN_CHUNKED_HEX: &str = "56464c4f474d4431020000000010000008500000000000000012080000000000\
     8100000000000000010000000000000000000000020000000500000000000000\
     3c000000000000000a0000000000010041000000000000004000000000000000\
     0b00000000000100010000000000000000000000000200000c00000000000100\
     74a69362";

    /// A version 1 node (written before chunks existed; the word at 52 is reserved) still
    /// decodes: these are the bytes the version 1 encoder wrote for `sample()`.
    #[test]
    fn version_1_still_decodes() {
        let v1: Vec<u8> = (0..GOLDEN_V1_HEX.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&GOLDEN_V1_HEX[i..i + 2], 16).unwrap())
            .collect();
        assert_eq!(Meta::decode(&v1, "m").unwrap(), sample());
        assert_eq!(
            v1,
            with_version(sample().encode(), 1),
            "only the version differs"
        );
        // In version 1 the word at 52 is reserved: a chunk count there is refused.
        let mut b = chunked().encode();
        b[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(
            corruption(&reseal(b)),
            (
                52,
                CorruptionKind::InvalidField {
                    field: "reserved",
                    value: 2
                }
            )
        );
        assert_eq!(
            corruption(&with_version(sample().encode(), 3)),
            (8, CorruptionKind::UnsupportedVersion { found: 3 })
        );
    }

    /// `sample()` as the version 1 encoder wrote it.
    const GOLDEN_V1_HEX: &str = "56464c4f474d4431010000000010000008000000000000008813000000000000\
     0000000000000000020000000100000001000000000000000100000000000000\
     0000000000100000010000000000010002000000000000000000000000020000\
     0200000000000100000200008801000003000000000001000400000000000100\
     067265616465720010000000000000a59d9d6d";

    #[test]
    fn every_flipped_byte_is_reported_as_corruption() {
        for b in [sample().encode(), chunked().encode()] {
            for i in 0..b.len() {
                let mut c = b.clone();
                c[i] ^= 0x20;
                let e = Meta::decode(&c, "m").unwrap_err();
                assert!(e.as_corruption().is_some(), "byte {i}: {e}");
            }
            for len in 0..b.len() {
                let e = Meta::decode(&b[..len], "m").unwrap_err();
                assert!(e.as_corruption().is_some(), "length {len}: {e}");
            }
        }
    }

    /// Invariant 6: in-line pages whose addresses would pass `u64::MAX` are refused at
    /// `first_page` (recovery's page table and fsck compute those addresses).
    #[test]
    fn listed_addresses_fit_a_u64() {
        let mut m = sample();
        m.first_page = u64::MAX - 1;
        m.committed_tail = u64::MAX;
        let invalid = CorruptionKind::InvalidField {
            field: "first_page",
            value: u64::MAX - 1,
        };
        assert_eq!(corruption(&m.encode()), (32, invalid));
        // The last page whose end address fits is accepted.
        m.first_page = u64::MAX / 4096 - 2;
        assert_eq!(Meta::decode(&m.encode(), "m").unwrap(), m);
    }

    #[test]
    fn non_contiguous_extents_are_refused() {
        let mut m = sample();
        m.pages[1][1].start = 520;
        assert!(Meta::decode(&m.encode(), "m").is_err());
    }

    /// Each rule on chunk references is checked, with a valid CRC, at the field that breaks it.
    #[test]
    fn chunk_references_are_checked() {
        let invalid =
            |field: &'static str, value: u64| CorruptionKind::InvalidField { field, value };
        // A gap between the two chunks.
        let mut m = chunked();
        m.chunks[1].first_page = 66;
        m.first_page = 130;
        m.committed_tail = 130 * 4096 + 512;
        assert_eq!(
            corruption(&m.encode()),
            (80, invalid("chunk_first_page", 66))
        );
        // The first chunk lists page 4, wholly below begin.
        let mut m = chunked();
        m.chunks[0].first_page = 4;
        m.chunks[0].page_count = 61;
        assert_eq!(
            corruption(&m.encode()),
            (56, invalid("chunk_first_page", 4))
        );
        // Empty and oversized chunks.
        let mut m = chunked();
        m.chunks[0].page_count = 0;
        m.chunks[1].first_page = 5;
        m.first_page = 69;
        assert_eq!(
            corruption(&m.encode()),
            (64, invalid("chunk_page_count", 0))
        );
        let mut m = chunked();
        m.chunks[1].page_count = 65;
        m.first_page = 130;
        m.committed_tail = 130 * 4096;
        assert_eq!(
            corruption(&m.encode()),
            (88, invalid("chunk_page_count", 65))
        );
        // A chunk listing a page not wholly below the committed tail.
        let mut m = chunked();
        m.committed_tail = 129 * 4096 - 8;
        m.pages.clear();
        assert_eq!(
            corruption(&m.encode()),
            (88, invalid("chunk_page_count", 64))
        );
        // The in-line pages must start where the last chunk ends.
        let mut m = chunked();
        m.first_page = 130;
        assert_eq!(
            corruption(&m.encode()),
            (
                32,
                CorruptionKind::Mismatch {
                    what: "first_page and the last chunk's end",
                    expected: 129,
                    actual: 130
                }
            )
        );
        // Reserved word and node id.
        let mut b = chunked().encode();
        b[68] = 1;
        assert_eq!(corruption(&reseal(b)), (68, invalid("reserved", 1)));
        let mut b = chunked().encode();
        b[72..80].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(corruption(&reseal(b)), (72, invalid("chunk_node", 0)));
        // More chunks than bytes.
        let mut b = chunked().encode();
        b[52..56].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(corruption(&reseal(b)), (52, invalid("chunk_count", 1000)));
        // In-line pages wholly below begin: page 0 is, once begin reaches its end.
        let mut m = sample();
        m.begin = 4088;
        let ok = Meta::decode(&m.encode(), "m");
        assert!(ok.is_ok(), "page 0 is not wholly below 4088: {ok:?}");
        m.begin = 4096;
        assert_eq!(corruption(&m.encode()), (32, invalid("first_page", 0)));
    }
}
