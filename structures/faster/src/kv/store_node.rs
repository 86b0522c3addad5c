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

use vellum::codec::{Decoder, Encoder};
use vellum::{CorruptionKind, Error as StoreError, NodeId};

use super::checkpoint_meta::CheckpointMeta;
use super::page::{PAGE_BYTES_MAX, PAGE_BYTES_MIN};

/// Node kind of a FasterKV store node (`K`).
pub const KV_STORE_KIND: u8 = 0x4b;
/// Magic of a store node.
pub const STORE_MAGIC: [u8; 4] = *b"VKVS";
/// Format version of a store node without a checkpoint.
pub const STORE_FORMAT_VERSION: u16 = 1;
/// Format version of a store node with a checkpoint section (flags bit 0 set).
pub const STORE_FORMAT_VERSION_CHECKPOINT: u16 = 2;
/// Flags bit: a checkpoint section follows the page list.
const FLAG_CHECKPOINT: u16 = 1;
/// Bytes of a store node's header.
pub const STORE_HEADER_BYTES: usize = 24;

/// A decoded store node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreNode {
    /// Bytes per page of the log.
    pub page_bytes: u32,
    /// The page nodes, page 0 first.
    pub pages: Vec<NodeId>,
    /// The last checkpoint, once one was taken.
    pub checkpoint: Option<CheckpointMeta>,
}

impl StoreNode {
    /// The node's bytes (KS1).
    pub fn encode(&self) -> Vec<u8> {
        let mut e = Encoder::with_capacity(STORE_HEADER_BYTES + 8 * self.pages.len());
        let (version, flags) = match self.checkpoint {
            None => (STORE_FORMAT_VERSION, 0),
            Some(_) => (STORE_FORMAT_VERSION_CHECKPOINT, FLAG_CHECKPOINT),
        };
        e.bytes(&STORE_MAGIC)
            .u16(version)
            .u16(flags)
            .u32(self.page_bytes)
            .u32(0)
            .u64(self.pages.len() as u64);
        for id in &self.pages {
            e.u64(id.raw());
        }
        if let Some(c) = &self.checkpoint {
            c.encode_into(&mut e);
        }
        e.finish()
    }

    /// Decodes a store node read from root `root` (KS2).
    pub fn decode(bytes: &[u8], root: &str) -> Result<StoreNode, StoreError> {
        let path = PathBuf::from(root);
        let mut d = Decoder::new(bytes, &path, 0);
        if bytes.len() < STORE_HEADER_BYTES {
            return Err(d.error(CorruptionKind::Truncated {
                needed: STORE_HEADER_BYTES as u64,
                available: bytes.len() as u64,
            }));
        }
        let field = |d: &Decoder<'_>, at: usize, field: &'static str, value: u64| {
            d.error_at(at, CorruptionKind::InvalidField { field, value })
        };
        let magic = d.array::<4>()?;
        if magic != STORE_MAGIC {
            let found = u32::from_le_bytes(magic).into();
            return Err(d.error_at(0, CorruptionKind::BadMagic { found }));
        }
        let version = d.u16()?;
        let expected_flags = match version {
            STORE_FORMAT_VERSION => 0,
            STORE_FORMAT_VERSION_CHECKPOINT => FLAG_CHECKPOINT,
            _ => {
                let found = version.into();
                return Err(d.error_at(4, CorruptionKind::UnsupportedVersion { found }));
            }
        };
        let flags = d.u16()?;
        if flags != expected_flags {
            return Err(field(&d, 6, "flags", flags.into()));
        }
        let page_bytes = d.u32()?;
        if !page_bytes.is_power_of_two() || !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&page_bytes)
        {
            return Err(field(&d, 8, "page_bytes", page_bytes.into()));
        }
        let reserved = d.u32()?;
        if reserved != 0 {
            return Err(field(&d, 12, "reserved", reserved.into()));
        }
        let count = d.u64()?;
        let expected = count.checked_mul(8);
        let listed = expected.filter(|&e| e <= d.remaining() as u64);
        if flags == FLAG_CHECKPOINT && listed.is_some() {
            let mut pages = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let at = d.position();
                let raw = d.u64()?;
                pages.push(NodeId::from_raw(raw).ok_or_else(|| field(&d, at, "page_node", raw))?);
            }
            let checkpoint = CheckpointMeta::decode_from(&mut d, page_bytes)?;
            return Ok(StoreNode {
                page_bytes,
                pages,
                checkpoint: Some(checkpoint),
            });
        }
        if expected != Some(d.remaining() as u64) {
            return Err(d.error_at(
                16,
                CorruptionKind::Mismatch {
                    what: "store node length",
                    expected: expected.map_or(u64::MAX, |e| e + STORE_HEADER_BYTES as u64),
                    actual: bytes.len() as u64,
                },
            ));
        }
        let mut pages = Vec::with_capacity(d.remaining() / 8);
        while d.remaining() > 0 {
            let at = d.position();
            let raw = d.u64()?;
            let id = NodeId::from_raw(raw).ok_or_else(|| field(&d, at, "page_node", raw))?;
            pages.push(id);
        }
        Ok(StoreNode {
            page_bytes,
            pages,
            checkpoint: None,
        })
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
            checkpoint: None,
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
            checkpoint: None,
        }
        .encode();
        let refused_at = |bytes: &[u8]| match StoreNode::decode(bytes, "faster-kv:s") {
            Err(e) => e.as_corruption().map(|c| c.offset),
            Ok(_) => None,
        };
        for (at, byte) in [(0, b'X'), (4, 3), (6, 1), (8, 3), (12, 1), (16, 2)] {
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

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            magic in proptest::prelude::any::<bool>(),
        ) {
            let mut bytes = bytes;
            if magic && bytes.len() >= 4 {
                bytes[..4].copy_from_slice(&STORE_MAGIC);
            }
            // Only that it returns: refusals of arbitrary bytes are the other tests'.
            let _ignored_outcome = StoreNode::decode(&bytes, "r");
        }
    }
}
