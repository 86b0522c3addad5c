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
