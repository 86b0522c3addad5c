//! A page's extents and their encoding, shared by the metadata node and chunk nodes
//! (`design/FORMAT.md` §8).
//!
//! Invariants:
//! 1. A page's extents are sorted and contiguous from offset 0: the `start` of each is the
//!    previous one's `start + len`. Lengths are non-zero multiples of 8 and every extent ends
//!    within the page. Extent boundaries are commit tails or the page end, hence reservation
//!    boundaries: no entry crosses one.
//! 2. The encoding of a page is `extent_count` u32, a reserved u32 (0), then `extent_count` ×
//!    (`start` u32, `len` u32, `node` u64), little-endian; the decoder checks invariant 1, the
//!    reserved word and every NodeId, and never reads past the bytes it is given.

use std::path::PathBuf;

use vellum::NodeId;
use vellum::{CorruptionKind, Error as StoreError};

/// Bytes of one extent in a page list.
pub const EXTENT_BYTES: usize = 16;
/// Bytes of a page's header in a page list (`extent_count`, reserved).
pub const PAGE_HEADER_BYTES: usize = 8;

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

/// Bytes `pages` take in a page list.
pub(crate) fn pages_bytes(pages: &[Vec<Extent>]) -> usize {
    pages
        .iter()
        .map(|p| PAGE_HEADER_BYTES + p.len() * EXTENT_BYTES)
        .sum()
}

/// Appends the encoding of one page's extents (invariant 2).
pub(crate) fn put_page(b: &mut Vec<u8>, extents: &[Extent]) {
    b.extend_from_slice(&(extents.len() as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for e in extents {
        b.extend_from_slice(&e.start.to_le_bytes());
        b.extend_from_slice(&e.len.to_le_bytes());
        b.extend_from_slice(&e.node.raw().to_le_bytes());
    }
}

/// Decodes `count` pages of a page list starting at `*at` in `body`, advancing `*at` past them.
/// `what` names the node in corruption reports and `count_at` is the offset of the field that
/// gave `count`. With `whole`, every page's extents must end exactly at `page_bytes` (a chunk
/// lists complete pages only).
pub(crate) fn get_pages(
    body: &[u8],
    at: &mut usize,
    count: usize,
    page_bytes: u32,
    whole: bool,
    what: &str,
    count_at: usize,
) -> Result<Vec<Vec<Extent>>, StoreError> {
    let invalid = |offset: usize, field: &'static str, value: u64| {
        StoreError::corruption(
            PathBuf::from(what),
            offset as u64,
            CorruptionKind::InvalidField { field, value },
        )
    };
    if count > body.len().saturating_sub(*at) / PAGE_HEADER_BYTES {
        return Err(invalid(count_at, "page_count", count as u64));
    }
    let mut pages = Vec::with_capacity(count);
    for _ in 0..count {
        if *at + PAGE_HEADER_BYTES > body.len() {
            return Err(invalid(count_at, "page_count", count as u64));
        }
        let n = u32_at(body, *at) as usize;
        if u32_at(body, *at + 4) != 0 {
            return Err(invalid(*at + 4, "reserved", u32_at(body, *at + 4).into()));
        }
        let page_at = *at;
        *at += PAGE_HEADER_BYTES;
        if n > (body.len() - *at) / EXTENT_BYTES {
            return Err(invalid(page_at, "extent_count", n as u64));
        }
        let mut page = Vec::with_capacity(n);
        let mut expect_start = 0u32;
        for _ in 0..n {
            let (start, len) = (u32_at(body, *at), u32_at(body, *at + 4));
            let end = u64::from(start) + u64::from(len);
            if start != expect_start
                || len == 0
                || !len.is_multiple_of(8)
                || end > u64::from(page_bytes)
            {
                return Err(invalid(*at, "extent_start", start.into()));
            }
            let raw = u64_at(body, *at + 8);
            let node = NodeId::from_raw(raw).ok_or_else(|| invalid(*at + 8, "extent_node", raw))?;
            page.push(Extent { start, len, node });
            expect_start = start + len;
            *at += EXTENT_BYTES;
        }
        if whole && expect_start != page_bytes {
            return Err(StoreError::corruption(
                PathBuf::from(what),
                page_at as u64,
                CorruptionKind::Mismatch {
                    what: "extents' end and page_bytes",
                    expected: page_bytes.into(),
                    actual: expect_start.into(),
                },
            ));
        }
        pages.push(page);
    }
    Ok(pages)
}

/// Bytes of the CRC32C that ends a metadata or chunk node.
pub(crate) const CRC_BYTES: usize = 4;

/// Checks what metadata and chunk nodes share: at least `fixed` bytes before the trailing
/// CRC32C, the CRC over everything before it, and the magic; returns the bytes before the CRC.
/// `what` names the node in corruption reports.
pub(crate) fn checked_body<'b>(
    bytes: &'b [u8],
    fixed: usize,
    magic: &[u8; 8],
    what: &str,
) -> Result<&'b [u8], StoreError> {
    let bad = |offset: usize, kind: CorruptionKind| {
        StoreError::corruption(PathBuf::from(what), offset as u64, kind)
    };
    if bytes.len() < fixed + CRC_BYTES {
        return Err(bad(
            0,
            CorruptionKind::Truncated {
                needed: (fixed + CRC_BYTES) as u64,
                available: bytes.len() as u64,
            },
        ));
    }
    let body = &bytes[..bytes.len() - CRC_BYTES];
    let stored = u32_at(bytes, body.len());
    let actual = vellum::codec::crc32c(body);
    if stored != actual {
        return Err(bad(
            body.len(),
            CorruptionKind::ChecksumMismatch {
                expected: stored,
                actual,
            },
        ));
    }
    if body[..8] != *magic {
        return Err(bad(
            0,
            CorruptionKind::BadMagic {
                found: u64_at(body, 0),
            },
        ));
    }
    Ok(body)
}

/// The little-endian u32 at `at`; the caller checked `at + 4 <= b.len()`.
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

/// The little-endian u64 at `at`; the caller checked `at + 8 <= b.len()`.
pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}
