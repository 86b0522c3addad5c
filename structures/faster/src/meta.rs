//! The metadata node (`design/FORMAT.md` §FasterLog): what recovery starts from.
//!
//! Invariants:
//! 1. Root `faster-log:<name>` names the metadata node; one runtime transaction changes the
//!    metadata node together with every page node it lists, so a recovered metadata node never
//!    lists a page node that is not durable, nor misses one holding committed entries.
//! 2. Pages `first_page .. first_page + page_count` are listed in order; page `first_page + i`
//!    lives in node `page_nodes[i]`, and its node holds at least the bytes of that page below
//!    `committed_tail`.
//! 3. `begin <= committed_tail`; no page wholly below `begin` is listed.

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
/// Node kind of a page node.
pub const PAGE_KIND: u8 = 0x50;
/// Bytes of the fixed part of a metadata node, before the page list.
pub const META_FIXED_BYTES: usize = 48;
/// Longest iterator name, in bytes.
pub const ITERATOR_NAME_BYTES_MAX: usize = 64;

/// A decoded metadata node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Meta {
    /// Bytes per page.
    pub page_bytes: u32,
    /// The first address readable.
    pub begin: u64,
    /// Every entry below this address is committed.
    pub committed_tail: u64,
    /// The page number of `page_nodes[0]`.
    pub first_page: u64,
    /// The node of each page from `first_page` on.
    pub page_nodes: Vec<NodeId>,
    /// Named iterators and their saved positions.
    pub iterators: BTreeMap<String, u64>,
}

impl Meta {
    /// Encodes the node's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(META_FIXED_BYTES + self.page_nodes.len() * 8 + 64);
        b.extend_from_slice(&META_MAGIC);
        b.extend_from_slice(&META_VERSION.to_le_bytes());
        b.extend_from_slice(&self.page_bytes.to_le_bytes());
        b.extend_from_slice(&self.begin.to_le_bytes());
        b.extend_from_slice(&self.committed_tail.to_le_bytes());
        b.extend_from_slice(&self.first_page.to_le_bytes());
        b.extend_from_slice(&(self.page_nodes.len() as u32).to_le_bytes());
        b.extend_from_slice(&(self.iterators.len() as u32).to_le_bytes());
        debug_assert_eq!(b.len(), META_FIXED_BYTES);
        for n in &self.page_nodes {
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
        let invalid = |offset: usize, field: &'static str, value: u64| {
            bad(offset, CorruptionKind::InvalidField { field, value })
        };
        if m.page_bytes < 8 || !m.page_bytes.is_multiple_of(8) {
            return Err(invalid(12, "page_bytes", m.page_bytes.into()));
        }
        if m.begin > m.committed_tail {
            return Err(invalid(16, "begin", m.begin));
        }
        let mut at = META_FIXED_BYTES;
        if pages > (body.len() - at) / 8 {
            return Err(invalid(40, "page_count", pages as u64));
        }
        for _ in 0..pages {
            let raw = u64_at(body, at);
            let id = NodeId::from_raw(raw).ok_or_else(|| invalid(at, "page_node", raw))?;
            m.page_nodes.push(id);
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

    /// The node holding page `page`, if listed.
    pub fn page_node(&self, page: u64) -> Option<NodeId> {
        let i = page.checked_sub(self.first_page)?;
        self.page_nodes.get(usize::try_from(i).ok()?).copied()
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

    fn sample() -> Meta {
        let mut iterators = BTreeMap::new();
        iterators.insert("reader".to_owned(), 4096);
        Meta {
            page_bytes: 4096,
            begin: 8,
            committed_tail: 5000,
            first_page: 0,
            page_nodes: vec![NodeId::new(0, 1, 1).unwrap(), NodeId::new(0, 2, 1).unwrap()],
            iterators,
        }
    }

    #[test]
    fn round_trips() {
        let m = sample();
        assert_eq!(Meta::decode(&m.encode(), "m").unwrap(), m);
    }

    /// Golden layout of the fixed part (`design/FORMAT.md` §FasterLog).
    #[test]
    fn golden_fixed_part() {
        let b = sample().encode();
        assert_eq!(&b[0..8], b"VFLOGMD1");
        assert_eq!(&b[8..12], &1u32.to_le_bytes());
        assert_eq!(&b[12..16], &4096u32.to_le_bytes());
        assert_eq!(&b[16..24], &8u64.to_le_bytes());
        assert_eq!(&b[24..32], &5000u64.to_le_bytes());
        assert_eq!(&b[32..40], &0u64.to_le_bytes());
        assert_eq!(&b[40..44], &2u32.to_le_bytes());
        assert_eq!(&b[44..48], &1u32.to_le_bytes());
        assert_eq!(b.len(), 48 + 16 + 1 + 6 + 8 + 4);
        assert_eq!(b[64], 6);
        assert_eq!(&b[65..71], b"reader");
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
}
