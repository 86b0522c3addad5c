//! The metadata node (`design/FORMAT.md` §8): what recovery starts from.
//!
//! Invariants:
//! 1. Root `faster-log:<name>` names the metadata node; one runtime transaction changes the
//!    metadata node together with every extent node it lists, so a recovered metadata node never
//!    lists an extent node that is not durable, nor misses one holding committed entries.
//! 2. Pages `first_page .. first_page + page_count` are listed in order. Each page's extents are
//!    sorted, contiguous from offset 0 (`start` of each is the previous one's `start + len`), and
//!    together cover at least the page's bytes below `committed_tail`. Extent boundaries are
//!    commit tails, hence reservation boundaries: no entry crosses one.
//! 3. `begin <= committed_tail`; no page wholly below `begin` is listed.
//! 4. `retire_pending` lists extent nodes merged away by the commit that wrote this metadata;
//!    the next commit retires them (so a reader that looked the old extents up under the
//!    previous metadata can still read them, and a crash leaks nothing).

use std::collections::BTreeMap;
use std::path::PathBuf;

use vellum::codec::crc32c;
use vellum::object_table::NodeId;
use vellum::{CorruptionKind, Error as StoreError};

/// Magic of a metadata node.
pub const META_MAGIC: [u8; 8] = *b"VFLOGMD1";
/// Format version of a metadata node.
pub const META_VERSION: u32 = 1;
/// Node kind of a metadata node.
pub const META_KIND: u8 = 0x4d;
/// Node kind of an extent node (bytes of part of a page).
pub const PAGE_KIND: u8 = 0x50;
/// Bytes of the fixed part of a metadata node, before the page list.
pub const META_FIXED_BYTES: usize = 56;
/// Bytes of one extent in the page list.
pub const EXTENT_BYTES: usize = 16;
/// Longest iterator name, in bytes.
pub const ITERATOR_NAME_BYTES_MAX: usize = 64;

/// Part of a page stored in one node: page bytes `[start, start + len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Offset in the page of the node's first byte.
    pub start: u32,
    /// Bytes of the node.
    pub len: u32,
    /// The node.
    pub node: NodeId,
}

impl Extent {
    /// The offset in the page just past the extent.
    pub fn end(&self) -> u32 {
        self.start + self.len
    }
}

/// The extent of `extents` (sorted, contiguous) holding page offset `offset`.
pub fn extent_at(extents: &[Extent], offset: u32) -> Option<Extent> {
    let i = extents.partition_point(|e| e.end() <= offset);
    extents.get(i).copied().filter(|e| e.start <= offset)
}

/// A decoded metadata node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Bytes per page.
    pub page_bytes: u32,
    /// The first address readable.
    pub begin: u64,
    /// Every entry below this address is committed.
    pub committed_tail: u64,
    /// The page number of `pages[0]`.
    pub first_page: u64,
    /// The extents of each page from `first_page` on.
    pub pages: Vec<Vec<Extent>>,
    /// Extent nodes the next commit retires.
    pub retire_pending: Vec<NodeId>,
    /// Named iterators and their saved positions.
    pub iterators: BTreeMap<String, u64>,
}

impl Meta {
    /// Encodes the node's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let extents: usize = self.pages.iter().map(Vec::len).sum();
        let mut b = Vec::with_capacity(
            META_FIXED_BYTES + self.pages.len() * 8 + extents * EXTENT_BYTES + 64,
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
        b.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(b.len(), META_FIXED_BYTES);
        for page in &self.pages {
            b.extend_from_slice(&(page.len() as u32).to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
            for e in page {
                b.extend_from_slice(&e.start.to_le_bytes());
                b.extend_from_slice(&e.len.to_le_bytes());
                b.extend_from_slice(&e.node.raw().to_le_bytes());
            }
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

    /// Decodes a metadata node; `what` names it in corruption reports.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Meta, StoreError> {
        let bad = |offset: usize, kind: CorruptionKind| {
            StoreError::corruption(PathBuf::from(what), offset as u64, kind)
        };
        if bytes.len() < META_FIXED_BYTES + 4 {
            return Err(bad(
                0,
                CorruptionKind::Truncated {
                    needed: (META_FIXED_BYTES + 4) as u64,
                    available: bytes.len() as u64,
                },
            ));
        }
        let body = &bytes[..bytes.len() - 4];
        let stored = u32_at(bytes, bytes.len() - 4);
        let actual = crc32c(body);
        if stored != actual {
            return Err(bad(
                bytes.len() - 4,
                CorruptionKind::ChecksumMismatch {
                    expected: stored,
                    actual,
                },
            ));
        }
        if body[..8] != META_MAGIC {
            return Err(bad(
                0,
                CorruptionKind::BadMagic {
                    found: u64_at(body, 0),
                },
            ));
        }
        let version = u32_at(body, 8);
        if version != META_VERSION {
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
        let invalid = |offset: usize, field: &'static str, value: u64| {
            bad(offset, CorruptionKind::InvalidField { field, value })
        };
        if m.page_bytes < 8 || !m.page_bytes.is_multiple_of(8) {
            return Err(invalid(12, "page_bytes", m.page_bytes.into()));
        }
        if m.begin > m.committed_tail {
            return Err(invalid(16, "begin", m.begin));
        }
        if u32_at(body, 52) != 0 {
            return Err(invalid(52, "reserved", u32_at(body, 52).into()));
        }
        let mut at = META_FIXED_BYTES;
        if pages > (body.len() - at) / 8 {
            return Err(invalid(40, "page_count", pages as u64));
        }
        let node_at = |at: usize| {
            let raw = u64_at(body, at);
            NodeId::from_raw(raw).ok_or_else(|| invalid(at, "extent_node", raw))
        };
        for _ in 0..pages {
            if at + 8 > body.len() {
                return Err(invalid(40, "page_count", pages as u64));
            }
            let count = u32_at(body, at) as usize;
            if u32_at(body, at + 4) != 0 {
                return Err(invalid(at + 4, "reserved", u32_at(body, at + 4).into()));
            }
            at += 8;
            if count > (body.len() - at) / EXTENT_BYTES {
                return Err(invalid(at - 8, "extent_count", count as u64));
            }
            let mut page = Vec::with_capacity(count);
            let mut expect_start = 0u32;
            for _ in 0..count {
                let (start, len) = (u32_at(body, at), u32_at(body, at + 4));
                let end = u64::from(start) + u64::from(len);
                if start != expect_start
                    || len == 0
                    || !len.is_multiple_of(8)
                    || end > u64::from(m.page_bytes)
                {
                    return Err(invalid(at, "extent_start", start.into()));
                }
                page.push(Extent {
                    start,
                    len,
                    node: node_at(at + 8)?,
                });
                expect_start = start + len;
                at += EXTENT_BYTES;
            }
            m.pages.push(page);
        }
        if pending > (body.len() - at) / 8 {
            return Err(invalid(48, "retire_pending_count", pending as u64));
        }
        for _ in 0..pending {
            m.retire_pending.push(node_at(at)?);
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
            let name = std::str::from_utf8(&body[at + 1..at + 1 + len])
                .map_err(|_| invalid(at + 1, "iterator_name", len as u64))?;
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

    /// The extents of page `page`, if listed.
    pub fn page_extents(&self, page: u64) -> Option<&[Extent]> {
        let i = page.checked_sub(self.first_page)?;
        self.pages.get(usize::try_from(i).ok()?).map(Vec::as_slice)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
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
    }

    /// Golden layout (`design/FORMAT.md` §8).
    #[test]
    fn golden_layout() {
        let b = sample().encode();
        assert_eq!(&b[0..8], b"VFLOGMD1");
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..16], &4096u32.to_le_bytes());
        assert_eq!(&b[16..24], &8u64.to_le_bytes());
        assert_eq!(&b[24..32], &5000u64.to_le_bytes());
        assert_eq!(&b[32..40], &0u64.to_le_bytes());
        assert_eq!(&b[40..44], &2u32.to_le_bytes(), "page_count");
        assert_eq!(&b[44..48], &1u32.to_le_bytes(), "iterator_count");
        assert_eq!(&b[48..52], &1u32.to_le_bytes(), "retire_pending_count");
        assert_eq!(&b[52..56], &[0; 4], "reserved");
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

    #[test]
    fn every_flipped_byte_is_reported_as_corruption() {
        let b = sample().encode();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x20;
            let e = Meta::decode(&c, "m").unwrap_err();
            assert!(e.as_corruption().is_some(), "byte {i}: {e}");
        }
        for len in 0..b.len() {
            assert!(Meta::decode(&b[..len], "m").is_err());
        }
    }

    #[test]
    fn non_contiguous_extents_are_refused() {
        let mut m = sample();
        m.pages[1][1].start = 520;
        assert!(Meta::decode(&m.encode(), "m").is_err());
    }
}
