//! Chunk nodes (`design/FORMAT.md` §8): the extent lists of up to [`CHUNK_PAGES`] consecutive
//! complete pages, moved out of the metadata node so that a commit rewrites only the metadata's
//! bounded in-line part, never the whole page list.
//!
//! Invariants:
//! 1. A chunk node is immutable. It is allocated in the runtime transaction that writes the
//!    metadata naming it and retired in the one that writes metadata no longer naming it, so the
//!    metadata of any recovered commit names exactly the chunk nodes that are live for it.
//! 2. It lists pages `first_page .. first_page + page_count` (1 to [`CHUNK_PAGES`] of them), each
//!    complete: its extents cover the whole page. A complete page's extents never change, so a
//!    chunk stays true until truncation retires it (or replaces it with a node listing fewer
//!    pages).
//! 3. The metadata's reference to a chunk repeats its `first_page` and `page_count`, and recovery
//!    checks them against the node (and the node's `page_bytes` against the metadata's), so a
//!    reference to the wrong node is a structured corruption, not a wrong page table.

use std::path::PathBuf;

use vellum::NodeId;
use vellum::codec::crc32c;
use vellum::{CorruptionKind, Error as StoreError};

use crate::extent::{
    CRC_BYTES, Extent, checked_body, get_pages, pages_bytes, put_page, u32_at, u64_at,
};

/// Magic of a chunk node.
pub const CHUNK_MAGIC: [u8; 8] = *b"VFLOGPT1";
/// Format version of a chunk node.
pub const CHUNK_VERSION: u32 = 1;
/// Node kind of a chunk node.
pub const CHUNK_KIND: u8 = 0x54;
/// Pages a commit moves from the metadata into one new chunk node; the most a chunk lists.
pub const CHUNK_PAGES: u32 = 64;
/// Bytes of the fixed part of a chunk node, before its page list.
pub const CHUNK_FIXED_BYTES: usize = 32;
/// Bytes of one chunk reference in the metadata node.
pub const CHUNK_REF_BYTES: usize = 24;

const _: () = assert!(CHUNK_FIXED_BYTES == 8 + 4 + 4 + 8 + 4 + 4);
const _: () = assert!(CHUNK_REF_BYTES == 8 + 4 + 4 + 8);

/// The metadata's reference to a chunk node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRef {
    /// The first page the chunk lists.
    pub first_page: u64,
    /// Pages it lists (1 to [`CHUNK_PAGES`]).
    pub page_count: u32,
    /// The chunk node.
    pub node: NodeId,
}

impl ChunkRef {
    /// The page just past the chunk's last page.
    pub fn end(&self) -> u64 {
        self.first_page + u64::from(self.page_count)
    }

    /// Appends the reference's 24 bytes: `first_page` u64, `page_count` u32, reserved u32 (0),
    /// `node` u64.
    pub(crate) fn put(&self, b: &mut Vec<u8>) {
        b.extend_from_slice(&self.first_page.to_le_bytes());
        b.extend_from_slice(&self.page_count.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&self.node.raw().to_le_bytes());
    }
}

/// A decoded chunk node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    /// Bytes per page (the metadata's).
    pub page_bytes: u32,
    /// The page number of `pages[0]`.
    pub first_page: u64,
    /// The extents of each page from `first_page` on, each covering its whole page.
    pub pages: Vec<Vec<Extent>>,
}

impl Chunk {
    /// The page just past the chunk's last page.
    pub fn end(&self) -> u64 {
        self.first_page + self.pages.len() as u64
    }

    /// Encodes the node's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(CHUNK_FIXED_BYTES + pages_bytes(&self.pages) + CRC_BYTES);
        b.extend_from_slice(&CHUNK_MAGIC);
        b.extend_from_slice(&CHUNK_VERSION.to_le_bytes());
        b.extend_from_slice(&self.page_bytes.to_le_bytes());
        b.extend_from_slice(&self.first_page.to_le_bytes());
        b.extend_from_slice(&(self.pages.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        debug_assert_eq!(b.len(), CHUNK_FIXED_BYTES);
        for page in &self.pages {
            put_page(&mut b, page);
        }
        let crc = crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes a chunk node; `what` names it in corruption reports.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Chunk, StoreError> {
        let bad = |offset: usize, kind: CorruptionKind| {
            StoreError::corruption(PathBuf::from(what), offset as u64, kind)
        };
        let invalid = |offset: usize, field: &'static str, value: u64| {
            bad(offset, CorruptionKind::InvalidField { field, value })
        };
        let body = checked_body(bytes, CHUNK_FIXED_BYTES, &CHUNK_MAGIC, what)?;
        let version = u32_at(body, 8);
        if version != CHUNK_VERSION {
            return Err(bad(
                8,
                CorruptionKind::UnsupportedVersion { found: version },
            ));
        }
        let page_bytes = u32_at(body, 12);
        if page_bytes < 8 || !page_bytes.is_multiple_of(8) {
            return Err(invalid(12, "page_bytes", page_bytes.into()));
        }
        let first_page = u64_at(body, 16);
        let count = u32_at(body, 24);
        if count == 0 || count > CHUNK_PAGES {
            return Err(invalid(24, "page_count", count.into()));
        }
        if first_page.checked_add(count.into()).is_none() {
            return Err(invalid(16, "first_page", first_page));
        }
        if u32_at(body, 28) != 0 {
            return Err(invalid(28, "reserved", u32_at(body, 28).into()));
        }
        let mut at = CHUNK_FIXED_BYTES;
        let pages = get_pages(body, &mut at, count as usize, page_bytes, true, what, 24)?;
        if at != body.len() {
            return Err(bad(
                at,
                CorruptionKind::Mismatch {
                    what: "chunk length",
                    expected: at as u64,
                    actual: body.len() as u64,
                },
            ));
        }
        Ok(Chunk {
            page_bytes,
            first_page,
            pages,
        })
    }

    /// Checks that the node is the one `r` refers to, in a log of `page_bytes` pages
    /// (invariant 3); `what` names it in corruption reports.
    pub fn check_ref(&self, r: &ChunkRef, page_bytes: u32, what: &str) -> Result<(), StoreError> {
        let checks = [
            (
                12,
                "chunk page_bytes",
                page_bytes.into(),
                self.page_bytes.into(),
            ),
            (16, "chunk first_page", r.first_page, self.first_page),
            (
                24,
                "chunk page_count",
                r.page_count.into(),
                self.pages.len() as u64,
            ),
        ];
        for (offset, field, expected, actual) in checks {
            if expected != actual {
                return Err(StoreError::corruption(
                    PathBuf::from(what),
                    offset,
                    CorruptionKind::Mismatch {
                        what: field,
                        expected,
                        actual,
                    },
                ));
            }
        }
        Ok(())
    }

    /// The extents of page `page`, if the chunk lists it.
    pub fn page_extents(&self, page: u64) -> Option<&[Extent]> {
        let i = page.checked_sub(self.first_page)?;
        self.pages.get(usize::try_from(i).ok()?).map(Vec::as_slice)
    }
}

/// The name a chunk node goes by in corruption reports: `faster-log:<name>/chunk-<first_page>`.
pub fn chunk_path(root: &str, first_page: u64) -> String {
    format!("{root}/chunk-{first_page}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(h: u64) -> NodeId {
        NodeId::new(0, h, 1).unwrap()
    }

    fn whole(node: u64) -> Vec<Extent> {
        vec![Extent {
            start: 0,
            len: 4096,
            node: id(node),
        }]
    }

    /// Pages 64 and 65 of a 4 KiB log: one extent, then two.
    fn sample() -> Chunk {
        Chunk {
            page_bytes: 4096,
            first_page: 64,
            pages: vec![
                whole(7),
                vec![
                    Extent {
                        start: 0,
                        len: 1024,
                        node: id(8),
                    },
                    Extent {
                        start: 1024,
                        len: 3072,
                        node: id(9),
                    },
                ],
            ],
        }
    }

    #[test]
    fn round_trips() {
        let c = sample();
        assert_eq!(Chunk::decode(&c.encode(), "c").unwrap(), c);
        assert_eq!(c.end(), 66);
        assert_eq!(c.page_extents(65).unwrap().len(), 2);
        assert_eq!(c.page_extents(63), None);
        assert_eq!(c.page_extents(66), None);
        let full = Chunk {
            page_bytes: 8,
            first_page: u64::MAX - 64,
            pages: (0..64)
                .map(|i| {
                    vec![Extent {
                        start: 0,
                        len: 8,
                        node: id(i + 1),
                    }]
                })
                .collect(),
        };
        assert_eq!(Chunk::decode(&full.encode(), "c").unwrap(), full);
    }

    /// Golden layout (`design/FORMAT.md` §8, the chunk node example).
    #[test]
    fn golden_layout() {
        let b = sample().encode();
        assert_eq!(&b[0..8], b"VFLOGPT1");
        assert_eq!(&b[8..12], &1u32.to_le_bytes(), "format_version");
        assert_eq!(&b[12..16], &4096u32.to_le_bytes(), "page_bytes");
        assert_eq!(&b[16..24], &64u64.to_le_bytes(), "first_page");
        assert_eq!(&b[24..28], &2u32.to_le_bytes(), "page_count");
        assert_eq!(&b[28..32], &[0; 4], "reserved");
        // Page 64: one extent of the whole page.
        assert_eq!(&b[32..40], &[1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[40..44], &0u32.to_le_bytes());
        assert_eq!(&b[44..48], &4096u32.to_le_bytes());
        assert_eq!(&b[48..56], &id(7).raw().to_le_bytes());
        // Page 65: two extents.
        assert_eq!(&b[56..64], &[2, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&b[64..68], &0u32.to_le_bytes());
        assert_eq!(&b[68..72], &1024u32.to_le_bytes());
        assert_eq!(&b[72..80], &id(8).raw().to_le_bytes());
        assert_eq!(&b[80..84], &1024u32.to_le_bytes());
        assert_eq!(&b[84..88], &3072u32.to_le_bytes());
        assert_eq!(&b[88..96], &id(9).raw().to_le_bytes());
        assert_eq!(b.len(), 100);
        assert_eq!(&b[96..], &crc32c(&b[..96]).to_le_bytes());
        // The whole node, as FORMAT.md shows it.
        let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex.join(""),
            "56464c4f47505431010000000010000040000000000000000200000000000000\
             0100000000000000000000000010000007000000000001000200000000000000\
             0000000000040000080000000000010000040000000c00000900000000000100\
             c3433452"
        );
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_a_corruption() {
        let b = sample().encode();
        for i in 0..b.len() {
            let mut c = b.clone();
            c[i] ^= 0x20;
            let e = Chunk::decode(&c, "c").unwrap_err();
            assert!(e.as_corruption().is_some(), "byte {i}: {e}");
        }
        for len in 0..b.len() {
            let e = Chunk::decode(&b[..len], "c").unwrap_err();
            assert!(e.as_corruption().is_some(), "length {len}: {e}");
        }
    }

    /// A valid CRC does not make a bad field acceptable: each is reported at its offset.
    #[test]
    fn bad_fields_are_reported_where_they_are() {
        let reencode = |mut body: Vec<u8>| {
            body.truncate(body.len() - 4);
            let crc = crc32c(&body);
            body.extend_from_slice(&crc.to_le_bytes());
            body
        };
        let offset_of = |bytes: Vec<u8>| {
            let e = Chunk::decode(&reencode(bytes), "c").unwrap_err();
            let c = e.as_corruption().unwrap().clone();
            (c.offset, c.kind)
        };
        let mut b = sample().encode();
        b[24] = 0;
        assert_eq!(
            offset_of(b),
            (
                24,
                CorruptionKind::InvalidField {
                    field: "page_count",
                    value: 0
                }
            )
        );
        let mut b = sample().encode();
        b[24] = 65;
        assert_eq!(
            offset_of(b),
            (
                24,
                CorruptionKind::InvalidField {
                    field: "page_count",
                    value: 65
                }
            )
        );
        let mut b = sample().encode();
        b[28] = 1;
        assert_eq!(
            offset_of(b),
            (
                28,
                CorruptionKind::InvalidField {
                    field: "reserved",
                    value: 1
                }
            )
        );
        let mut b = sample().encode();
        b[16..24].copy_from_slice(&(u64::MAX - 1).to_le_bytes());
        assert_eq!(
            offset_of(b),
            (
                16,
                CorruptionKind::InvalidField {
                    field: "first_page",
                    value: u64::MAX - 1
                }
            )
        );
        // Page 65's last extent ends 8 bytes short of the page: not a complete page.
        let mut b = sample().encode();
        b[84..88].copy_from_slice(&3064u32.to_le_bytes());
        assert_eq!(
            offset_of(b),
            (
                56,
                CorruptionKind::Mismatch {
                    what: "extents' end and page_bytes",
                    expected: 4096,
                    actual: 4088
                }
            )
        );
    }

    #[test]
    fn a_reference_must_match_the_node() {
        let c = sample();
        let r = ChunkRef {
            first_page: 64,
            page_count: 2,
            node: id(1),
        };
        c.check_ref(&r, 4096, "c").unwrap();
        let kind = |r: ChunkRef, page_bytes: u32| {
            let e = c.check_ref(&r, page_bytes, "c").unwrap_err();
            let c = e.as_corruption().unwrap().clone();
            (c.offset, c.kind)
        };
        assert_eq!(
            kind(r, 8192),
            (
                12,
                CorruptionKind::Mismatch {
                    what: "chunk page_bytes",
                    expected: 8192,
                    actual: 4096
                }
            )
        );
        assert_eq!(
            kind(ChunkRef { first_page: 0, ..r }, 4096),
            (
                16,
                CorruptionKind::Mismatch {
                    what: "chunk first_page",
                    expected: 0,
                    actual: 64
                }
            )
        );
        assert_eq!(
            kind(
                ChunkRef {
                    page_count: 64,
                    ..r
                },
                4096
            ),
            (
                24,
                CorruptionKind::Mismatch {
                    what: "chunk page_count",
                    expected: 64,
                    actual: 2
                }
            )
        );
    }
}
