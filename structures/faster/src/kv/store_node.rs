//! The FasterKV store node (`design/FORMAT.md` §9, kind `0x4b`): what root `faster-kv:<name>`
//! names while a store is open — its page size and the page nodes the flusher has written, in
//! page order. Each flush rewrites it in the transaction that adds the page, so no page node is
//! ever unreachable from the root: a store that was not closed (a crash) leaves nothing the next
//! open cannot find and retire. Checkpoints (CPR) will extend it into the store's metadata.
//!
//! Invariants (prefix KS):
//! - KS1. 24-byte header: magic `VKVS`, version 1, flags 0, `page_bytes` (as the page nodes'),
//!   reserved 0, `page_count`; then `page_count` node ids of 8 bytes. The length is exactly
//!   `24 + 8 * page_count`.
//! - KS2. The decoder checks every field and the length, and returns a structured corruption
//!   (file = the root's name, offset, kind); it never panics.

use std::path::PathBuf;

use vellum::{CorruptionKind, Error as StoreError, NodeId};

use super::page::{PAGE_BYTES_MAX, PAGE_BYTES_MIN};

/// Node kind of a FasterKV store node (`K`).
pub const KV_STORE_KIND: u8 = 0x4b;
/// Magic of a store node.
pub const STORE_MAGIC: [u8; 4] = *b"VKVS";
/// Format version of the store nodes written.
pub const STORE_FORMAT_VERSION: u16 = 1;
/// Bytes of a store node's header.
pub const STORE_HEADER_BYTES: usize = 24;

/// A decoded store node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreNode {
    /// Bytes per page of the log.
    pub page_bytes: u32,
    /// The page nodes, page 0 first.
    pub pages: Vec<NodeId>,
}

impl StoreNode {
    /// The node's bytes (KS1).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(STORE_HEADER_BYTES + 8 * self.pages.len());
        out.extend_from_slice(&STORE_MAGIC);
        out.extend_from_slice(&STORE_FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&self.page_bytes.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(self.pages.len() as u64).to_le_bytes());
        for id in &self.pages {
            out.extend_from_slice(&id.raw().to_le_bytes());
        }
        out
    }

    /// Decodes a store node read from root `root` (KS2).
    pub fn decode(bytes: &[u8], root: &str) -> Result<StoreNode, StoreError> {
        let bad = |offset: usize, kind: CorruptionKind| {
            StoreError::corruption(PathBuf::from(root), offset as u64, kind)
        };
        let Some(head) = bytes.first_chunk::<STORE_HEADER_BYTES>() else {
            return Err(bad(
                0,
                CorruptionKind::Truncated {
                    needed: STORE_HEADER_BYTES as u64,
                    available: bytes.len() as u64,
                },
            ));
        };
        let u16_at = |at: usize| u16::from_le_bytes([head[at], head[at + 1]]);
        let u32_at =
            |at: usize| u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        if head[..4] != STORE_MAGIC {
            let found = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
            return Err(bad(
                0,
                CorruptionKind::BadMagic {
                    found: found.into(),
                },
            ));
        }
        if u16_at(4) != STORE_FORMAT_VERSION {
            let found = u16_at(4).into();
            return Err(bad(4, CorruptionKind::UnsupportedVersion { found }));
        }
        let field = |at: usize, field: &'static str, value: u64| {
            bad(at, CorruptionKind::InvalidField { field, value })
        };
        if u16_at(6) != 0 {
            return Err(field(6, "flags", u16_at(6).into()));
        }
        let page_bytes = u32_at(8);
        if !page_bytes.is_power_of_two() || !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&page_bytes)
        {
            return Err(field(8, "page_bytes", page_bytes.into()));
        }
        if u32_at(12) != 0 {
            return Err(field(12, "reserved", u32_at(12).into()));
        }
        let mut count = [0u8; 8];
        count.copy_from_slice(&head[16..24]);
        let count = u64::from_le_bytes(count);
        let body = &bytes[STORE_HEADER_BYTES..];
        let expected = count.checked_mul(8);
        if expected != Some(body.len() as u64) {
            return Err(bad(
                16,
                CorruptionKind::Mismatch {
                    what: "store node length",
                    expected: expected.map_or(u64::MAX, |e| e + STORE_HEADER_BYTES as u64),
                    actual: bytes.len() as u64,
                },
            ));
        }
        let mut pages = Vec::with_capacity(body.len() / 8);
        for (i, chunk) in body.chunks_exact(8).enumerate() {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(chunk);
            let raw = u64::from_le_bytes(raw);
            let id = NodeId::from_raw(raw)
                .ok_or_else(|| field(STORE_HEADER_BYTES + 8 * i, "page_node", raw))?;
            pages.push(id);
        }
        Ok(StoreNode { page_bytes, pages })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(raw: u64) -> NodeId {
        NodeId::from_raw(raw).unwrap()
    }

    #[test]
    fn golden_store_bytes() {
        let node = StoreNode {
            page_bytes: 4096,
            pages: vec![id(0x0001_0000_0000_0007), id(0x0002_0000_0000_0009)],
        };
        let bytes = node.encode();
        #[rustfmt::skip]
        let golden: [u8; 40] = [
            0x56, 0x4b, 0x56, 0x53, 0x01, 0x00, 0x00, 0x00, // "VKVS", version 1, flags 0
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // page_bytes 4096, reserved
            0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // page_count 2
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, // page 0's node, raw id LE
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, // page 1's node
        ];
        assert_eq!(bytes, golden);
        assert_eq!(StoreNode::decode(&bytes, "r").unwrap(), node);
    }

    #[test]
    fn every_damaged_field_is_refused_where_it_is() {
        let good = StoreNode {
            page_bytes: 4096,
            pages: vec![id(0x0001_0000_0000_0007)],
        }
        .encode();
        let refused_at = |bytes: &[u8]| match StoreNode::decode(bytes, "faster-kv:s") {
            Err(e) => e.as_corruption().map(|c| c.offset),
            Ok(_) => None,
        };
        for (at, byte) in [(0, b'X'), (4, 2), (6, 1), (8, 3), (12, 1), (16, 2)] {
            let mut bad = good.clone();
            bad[at] = byte;
            assert_eq!(refused_at(&bad), Some(at as u64), "byte {at}");
        }
        assert_eq!(refused_at(&good[..10]), Some(0));
        assert_eq!(refused_at(&good[..30]), Some(16));
        // A node id of 0 is not an id.
        let mut zero = good.clone();
        zero[24..32].fill(0);
        assert_eq!(refused_at(&zero), Some(24));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for len in 0..200usize {
            for _ in 0..50 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if len >= 4 && x.is_multiple_of(2) {
                    bytes[..4].copy_from_slice(&STORE_MAGIC);
                }
                // Only that it returns: refusals of arbitrary bytes are the other tests'.
                let _ignored_outcome = StoreNode::decode(&bytes, "r");
            }
        }
    }
}
