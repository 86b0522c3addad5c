//! The journal's two node formats (see the crate docs), encoded with `vellum::codec`. Decoding
//! never panics: every count and length is checked against the bytes, and a bad node is a
//! structured corruption error naming the node and the offset.

use std::path::PathBuf;

use vellum::codec::{Decoder, Encoder};
use vellum::{CorruptionKind, NodeId, Result};

/// Kind of the header node.
pub const HEADER_KIND: u8 = 0x4a;
/// Kind of a page node.
pub const PAGE_KIND: u8 = 0x4b;
/// Bytes of a page node.
pub const PAGE_BYTES: usize = 4096;
/// Longest record: one per page.
pub const RECORD_BYTES_MAX: usize = PAGE_BYTES - 4;

const HEADER_MAGIC: u32 = 0x4c4e_524a;

/// Where a node's decoding errors point: the node, as `node <id>`.
fn node_path(id: NodeId) -> PathBuf {
    PathBuf::from(format!("node {id}"))
}

/// The header: the pages, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Page node ids.
    pub pages: Vec<NodeId>,
}

impl Header {
    /// Bytes of the encoded header.
    pub fn encoded_len(&self) -> usize {
        8 + 8 * self.pages.len()
    }

    /// Encodes into `buf`, exactly [`Header::encoded_len`] bytes.
    pub fn encode_into(&self, buf: &mut [u8]) {
        let mut e = Encoder::with_capacity(self.encoded_len());
        e.u32(HEADER_MAGIC).u32(self.pages.len() as u32);
        for id in &self.pages {
            e.u64(id.raw());
        }
        buf.copy_from_slice(&e.finish());
    }

    /// Decodes header node `id`.
    pub fn decode(bytes: &[u8], id: NodeId) -> Result<Header> {
        let path = node_path(id);
        let mut d = Decoder::new(bytes, &path, 0);
        let magic = d.u32()?;
        if magic != HEADER_MAGIC {
            return Err(d.error_at(
                0,
                CorruptionKind::BadMagic {
                    found: u64::from(magic),
                },
            ));
        }
        let count = d.u32()? as usize;
        if count.checked_mul(8) != Some(d.remaining()) {
            return Err(d.error(CorruptionKind::InvalidField {
                field: "journal page count",
                value: count as u64,
            }));
        }
        let mut pages = Vec::with_capacity(count);
        for _ in 0..count {
            let at = d.position();
            let raw = d.u64()?;
            let page = NodeId::from_raw(raw).ok_or_else(|| {
                d.error_at(
                    at,
                    CorruptionKind::InvalidField {
                        field: "journal page id",
                        value: raw,
                    },
                )
            })?;
            pages.push(page);
        }
        Ok(Header { pages })
    }
}

/// A page's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    /// The records, oldest first.
    pub records: Vec<Vec<u8>>,
}

impl Page {
    fn used_bytes(&self) -> usize {
        2 + self.records.iter().map(|r| 2 + r.len()).sum::<usize>()
    }

    /// Whether a record of `len` bytes fits after the page's records.
    pub fn fits(&self, len: usize) -> bool {
        self.used_bytes() + 2 + len <= PAGE_BYTES
    }

    /// Encodes into `buf` ([`PAGE_BYTES`] zeroed bytes, as `alloc_with` hands them).
    pub fn encode_into(&self, buf: &mut [u8]) {
        let mut e = Encoder::with_capacity(self.used_bytes());
        e.u16(self.records.len() as u16);
        for r in &self.records {
            e.u16(r.len() as u16).bytes(r);
        }
        let bytes = e.finish();
        buf[..bytes.len()].copy_from_slice(&bytes);
    }

    /// Decodes page node `id`.
    pub fn decode(bytes: &[u8], id: NodeId) -> Result<Page> {
        let path = node_path(id);
        let mut d = Decoder::new(bytes, &path, 0);
        if bytes.len() != PAGE_BYTES {
            return Err(d.error(CorruptionKind::InvalidField {
                field: "journal page length",
                value: bytes.len() as u64,
            }));
        }
        let count = d.u16()?;
        let mut records = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let len = d.u16()?;
            records.push(d.bytes(usize::from(len))?.to_vec());
        }
        let rest = d.remaining();
        d.zeros(rest, "journal page padding")?;
        Ok(Page { records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(handle: u64) -> NodeId {
        NodeId::new(1, handle, 2).unwrap_or_else(|| panic!("a valid id"))
    }

    #[test]
    fn a_header_encodes_to_its_exact_bytes_and_back() {
        let h = Header {
            pages: vec![id(5), id(9)],
        };
        let mut buf = vec![0u8; h.encoded_len()];
        h.encode_into(&mut buf);
        let mut want = Vec::new();
        want.extend_from_slice(&HEADER_MAGIC.to_le_bytes());
        want.extend_from_slice(&2u32.to_le_bytes());
        want.extend_from_slice(&id(5).raw().to_le_bytes());
        want.extend_from_slice(&id(9).raw().to_le_bytes());
        assert_eq!(buf, want);
        assert_eq!(Header::decode(&buf, id(1)).ok(), Some(h));
    }

    #[test]
    fn a_page_encodes_to_its_exact_bytes_and_back() {
        let p = Page {
            records: vec![b"ab".to_vec(), Vec::new(), b"c".to_vec()],
        };
        let mut buf = vec![0u8; PAGE_BYTES];
        p.encode_into(&mut buf);
        assert_eq!(buf[..11], [3, 0, 2, 0, b'a', b'b', 0, 0, 1, 0, b'c']);
        assert!(buf[11..].iter().all(|&b| b == 0));
        assert_eq!(Page::decode(&buf, id(1)).ok(), Some(p));
    }

    #[test]
    fn a_record_fits_while_the_page_has_its_bytes() {
        let mut p = Page::default();
        assert!(p.fits(RECORD_BYTES_MAX));
        assert!(!p.fits(RECORD_BYTES_MAX + 1));
        p.records.push(vec![0; 4000]);
        // 2 + (2 + 4000) used; a record needs 2 more than its bytes.
        assert!(p.fits(PAGE_BYTES - 4004 - 2));
        assert!(!p.fits(PAGE_BYTES - 4004 - 1));
    }

    #[test]
    fn a_header_whose_count_disagrees_with_its_length_names_the_field() {
        let mut buf = vec![0u8; 16];
        buf[..4].copy_from_slice(&HEADER_MAGIC.to_le_bytes());
        buf[4..8].copy_from_slice(&2u32.to_le_bytes());
        match Header::decode(&buf, id(1)) {
            Err(vellum::Error::Corruption(c)) => assert_eq!(
                (c.offset, c.kind),
                (
                    8,
                    CorruptionKind::InvalidField {
                        field: "journal page count",
                        value: 2
                    }
                )
            ),
            other => panic!("expected corruption, got {other:?}"),
        }
    }
}
