//! What a FasterKV checkpoint records (`design/FORMAT.md` §9): the checkpoint section of the
//! store node, and the index chunk nodes (kind `0x49`).
//!
//! Invariants (prefix KC):
//! - KC1. The checkpoint section follows the store node's page list (store node version 2,
//!   flags bit 0): `version` u32, flags u32 (0), `bucket_count`, `prepare_tail`, `tail`,
//!   `chunk_count`, `delta_count`, `session_count` (u64 each); then `chunk_count` chunk node
//!   ids; then `delta_count` delta node ids (oldest first); then each
//!   session: `name_len` u16 (1..=255), reserved u16 (0), `excluded_count` u32,
//!   `until_serial` u64, the name's bytes (UTF-8) zero-padded to a multiple of 8, and
//!   `excluded_count` serials (u64, ascending, each at most `until_serial`).
//! - KC2. `LOG_BEGIN <= prepare_tail <= tail` and `tail` is a multiple of the page size: the
//!   checkpoint holds the pages below `tail`, which the page list lists.
//! - KC3. A chunk node is a 16-byte header — magic `VKVC`, version 1, flags 0, `chunk` u32,
//!   `word_count` u32 — and `word_count` words: the chunk's image (`index_image.rs`).
//! - KC4. Decoders check every field and length and return a structured corruption (file, offset,
//!   kind); they never panic.
//! - KC5. A delta node is a 16-byte header — magic `VKVD`, version 1, flags 0, `entry_count`
//!   u32, reserved u32 (0) — and `entry_count` entries: `bucket` u64 (a main bucket's index,
//!   below `bucket_count`, ascending), `bucket_words` u64 (a positive multiple of 8), then that
//!   many words: the bucket's chain image (`HashIndex::chain_words`). Recovery replaces each
//!   listed chain, delta by delta, after loading the chunk images.

use std::path::Path;

use vellum::codec::{Decoder, Encoder};
use vellum::{CorruptionKind, Error as StoreError, NodeId};

use super::cpr::CommitPoint;
use super::hlog::LOG_BEGIN;

/// Node kind of an index chunk node (`I`).
pub const KV_CHUNK_KIND: u8 = 0x49;
/// Node kind of an index delta node (`D`).
pub const KV_DELTA_KIND: u8 = 0x44;
/// Magic of a delta node.
pub const DELTA_MAGIC: [u8; 4] = *b"VKVD";
/// Magic of a chunk node.
pub const CHUNK_MAGIC: [u8; 4] = *b"VKVC";
/// Bytes of a chunk node's header.
pub const CHUNK_HEADER_BYTES: usize = 16;
/// The longest session name, in bytes.
pub const SESSION_NAME_BYTES_MAX: usize = 255;

/// A named session's commit point in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPoint {
    /// The session's name.
    pub name: String,
    /// What the checkpoint holds of its operations.
    pub commit: CommitPoint,
}

/// A checkpoint (KC1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointMeta {
    /// The version whose operations the checkpoint holds.
    pub version: u32,
    /// The index's main buckets.
    pub bucket_count: u64,
    /// The log's tail when the checkpoint began: below it every record is of `version` or older.
    pub prepare_tail: u64,
    /// The log's end in the checkpoint (a page boundary).
    pub tail: u64,
    /// The index's chunk nodes, chunk 0 first.
    pub chunks: Vec<NodeId>,
    /// The index's delta nodes, oldest first: chains changed since their chunk's image.
    pub deltas: Vec<NodeId>,
    /// The named sessions' commit points.
    pub sessions: Vec<SessionPoint>,
}

impl CheckpointMeta {
    /// Appends the section's bytes (KC1).
    pub fn encode_into(&self, e: &mut Encoder) {
        e.u32(self.version)
            .u32(0)
            .u64(self.bucket_count)
            .u64(self.prepare_tail)
            .u64(self.tail)
            .u64(self.chunks.len() as u64)
            .u64(self.deltas.len() as u64)
            .u64(self.sessions.len() as u64);
        for id in self.chunks.iter().chain(&self.deltas) {
            e.u64(id.raw());
        }
        for s in &self.sessions {
            let name = s.name.as_bytes();
            e.u16(name.len() as u16)
                .u16(0)
                .u32(s.commit.excluded.len() as u32)
                .u64(s.commit.until_serial)
                .bytes(name)
                .zeros(name.len().next_multiple_of(8) - name.len());
            for x in &s.commit.excluded {
                e.u64(*x);
            }
        }
    }

    /// Decodes the section from `d`, which must end with it (KC1, KC2, KC4).
    pub fn decode_from(d: &mut Decoder<'_>, page_bytes: u32) -> Result<CheckpointMeta, StoreError> {
        let field = |d: &Decoder<'_>, at: usize, field: &'static str, value: u64| {
            d.error_at(at, CorruptionKind::InvalidField { field, value })
        };
        let version = d.u32()?;
        let at = d.position();
        let flags = d.u32()?;
        if flags != 0 {
            return Err(field(d, at, "checkpoint_flags", flags.into()));
        }
        let bucket_count = d.u64()?;
        let at = d.position();
        let prepare_tail = d.u64()?;
        let tail = d.u64()?;
        if prepare_tail < LOG_BEGIN || prepare_tail > tail {
            return Err(field(d, at, "prepare_tail", prepare_tail));
        }
        if !tail.is_multiple_of(u64::from(page_bytes)) {
            return Err(field(d, at + 8, "tail", tail));
        }
        let chunk_count = d.u64()?;
        let delta_count = d.u64()?;
        let session_count = d.u64()?;
        let ids = |n: u64, name: &'static str, d: &mut Decoder<'_>| {
            let mut out = Vec::new();
            for _ in 0..n {
                let at = d.position();
                let raw = d.u64()?;
                out.push(NodeId::from_raw(raw).ok_or_else(|| field(d, at, name, raw))?);
            }
            Ok::<_, StoreError>(out)
        };
        let chunks = ids(chunk_count, "chunk_node", d)?;
        let deltas = ids(delta_count, "delta_node", d)?;
        let mut sessions = Vec::new();
        for _ in 0..session_count {
            sessions.push(decode_session(d)?);
        }
        if d.remaining() != 0 {
            return Err(d.error(CorruptionKind::Mismatch {
                what: "bytes after the checkpoint section",
                expected: 0,
                actual: d.remaining() as u64,
            }));
        }
        Ok(CheckpointMeta {
            version,
            bucket_count,
            prepare_tail,
            tail,
            chunks,
            deltas,
            sessions,
        })
    }
}

fn decode_session(d: &mut Decoder<'_>) -> Result<SessionPoint, StoreError> {
    let field = |d: &Decoder<'_>, at: usize, field: &'static str, value: u64| {
        d.error_at(at, CorruptionKind::InvalidField { field, value })
    };
    let at = d.position();
    let name_len = usize::from(d.u16()?);
    if name_len == 0 || name_len > SESSION_NAME_BYTES_MAX {
        return Err(field(d, at, "session_name_len", name_len as u64));
    }
    let reserved = d.u16()?;
    if reserved != 0 {
        return Err(field(d, at + 2, "session_reserved", reserved.into()));
    }
    let excluded_count = d.u32()?;
    let until_serial = d.u64()?;
    let name_at = d.position();
    let name = d.bytes(name_len)?;
    let name = std::str::from_utf8(name)
        .map_err(|_| field(d, name_at, "session_name", name_len as u64))?
        .to_owned();
    d.zeros(
        name_len.next_multiple_of(8) - name_len,
        "session_name_padding",
    )?;
    let mut excluded = Vec::new();
    for _ in 0..excluded_count {
        let at = d.position();
        let x = d.u64()?;
        if x > until_serial || excluded.last().is_some_and(|&l| l >= x) {
            return Err(field(d, at, "excluded_serial", x));
        }
        excluded.push(x);
    }
    Ok(SessionPoint {
        name,
        commit: CommitPoint {
            until_serial,
            excluded,
        },
    })
}

/// The first 8 bytes of a chunk or delta node: `magic`, version 1, flags 0 (KC3, KC5).
fn node_head(
    d: &mut Decoder<'_>,
    magic: [u8; 4],
    flags_field: &'static str,
) -> Result<(), StoreError> {
    let found = d.array::<4>()?;
    if found != magic {
        let found = u32::from_le_bytes(found).into();
        return Err(d.error_at(0, CorruptionKind::BadMagic { found }));
    }
    let version = d.u16()?;
    if version != 1 {
        let found = version.into();
        return Err(d.error_at(4, CorruptionKind::UnsupportedVersion { found }));
    }
    let flags = d.u16()?;
    if flags != 0 {
        let kind = CorruptionKind::InvalidField {
            field: flags_field,
            value: flags.into(),
        };
        return Err(d.error_at(6, kind));
    }
    Ok(())
}

/// A delta node's bytes (KC5): `(bucket, chain image)` entries, buckets ascending.
pub fn encode_delta(entries: &[(usize, Vec<u64>)]) -> Vec<u8> {
    let words: usize = entries.iter().map(|(_, w)| 2 + w.len()).sum();
    let mut e = Encoder::with_capacity(CHUNK_HEADER_BYTES + 8 * words);
    e.bytes(&DELTA_MAGIC)
        .u16(1)
        .u16(0)
        .u32(entries.len() as u32)
        .u32(0);
    for (bucket, image) in entries {
        e.u64(*bucket as u64).u64(image.len() as u64);
        for w in image {
            e.u64(*w);
        }
    }
    e.finish()
}

/// Decodes a delta node (KC5, KC4) of an index of `bucket_count` buckets: its entries.
pub fn decode_delta(
    bytes: &[u8],
    bucket_count: u64,
    file: &Path,
) -> Result<Vec<(usize, Vec<u64>)>, StoreError> {
    let mut d = Decoder::new(bytes, file, 0);
    let field = |d: &Decoder<'_>, at: usize, field: &'static str, value: u64| {
        d.error_at(at, CorruptionKind::InvalidField { field, value })
    };
    node_head(&mut d, DELTA_MAGIC, "delta_flags")?;
    let count = d.u32()?;
    let reserved = d.u32()?;
    if reserved != 0 {
        return Err(field(&d, 12, "delta_reserved", reserved.into()));
    }
    let mut entries: Vec<(usize, Vec<u64>)> = Vec::new();
    for _ in 0..count {
        let at = d.position();
        let bucket = d.u64()?;
        let after_last = entries.last().is_none_or(|(b, _)| bucket > *b as u64);
        if bucket >= bucket_count || !after_last {
            return Err(field(&d, at, "delta_bucket", bucket));
        }
        let words = d.u64()?;
        if words == 0 || !words.is_multiple_of(8) || words > (d.remaining() / 8) as u64 {
            return Err(field(&d, at + 8, "delta_bucket_words", words));
        }
        let mut image = Vec::with_capacity(words as usize);
        for _ in 0..words {
            image.push(d.u64()?);
        }
        entries.push((bucket as usize, image));
    }
    if d.remaining() != 0 {
        return Err(d.error(CorruptionKind::Mismatch {
            what: "bytes after the delta's entries",
            expected: 0,
            actual: d.remaining() as u64,
        }));
    }
    Ok(entries)
}

/// A chunk node's bytes (KC3).
pub fn encode_chunk(chunk: usize, words: &[u64]) -> Vec<u8> {
    let mut e = Encoder::with_capacity(CHUNK_HEADER_BYTES + 8 * words.len());
    e.bytes(&CHUNK_MAGIC)
        .u16(1)
        .u16(0)
        .u32(chunk as u32)
        .u32(words.len() as u32);
    for w in words {
        e.u64(*w);
    }
    e.finish()
}

/// Decodes chunk node `chunk`'s words (KC3, KC4); `file` names it in errors.
pub fn decode_chunk(bytes: &[u8], chunk: usize, file: &Path) -> Result<Vec<u64>, StoreError> {
    let mut d = Decoder::new(bytes, file, 0);
    node_head(&mut d, CHUNK_MAGIC, "chunk_flags")?;
    let index = d.u32()?;
    if index as usize != chunk {
        return Err(d.error_at(
            8,
            CorruptionKind::Mismatch {
                what: "chunk index",
                expected: chunk as u64,
                actual: index.into(),
            },
        ));
    }
    let count = d.u32()? as usize;
    if d.remaining() != count.saturating_mul(8) {
        return Err(d.error_at(
            12,
            CorruptionKind::Mismatch {
                what: "chunk node length",
                expected: (CHUNK_HEADER_BYTES + count.saturating_mul(8)) as u64,
                actual: bytes.len() as u64,
            },
        ));
    }
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        words.push(d.u64()?);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::store_node::StoreNode;

    fn id(raw: u64) -> NodeId {
        NodeId::from_raw(raw).unwrap()
    }

    fn golden_store() -> StoreNode {
        StoreNode {
            page_bytes: 4096,
            pages: vec![id(0x0001_0000_0000_0007)],
            checkpoint: Some(CheckpointMeta {
                version: 3,
                bucket_count: 64,
                prepare_tail: 0x40,
                tail: 0x1000,
                chunks: vec![id(0x0002_0000_0000_0009)],
                deltas: vec![id(0x0003_0000_0000_000b)],
                sessions: vec![SessionPoint {
                    name: "ab".into(),
                    commit: CommitPoint {
                        until_serial: 9,
                        excluded: vec![8],
                    },
                }],
            }),
        }
    }

    /// Golden bytes: `design/FORMAT.md` §9 (store node version 2) and this code cannot drift.
    #[test]
    fn golden_checkpoint_bytes() {
        let bytes = golden_store().encode();
        #[rustfmt::skip]
        let golden: [u8; 128] = [
            0x56, 0x4b, 0x56, 0x53, 0x02, 0x00, 0x01, 0x00, // "VKVS", version 2, flags 1
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // page_bytes 4096, reserved
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // page_count 1
            0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, // page 0's node
            0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // version 3, flags 0
            0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // bucket_count 64
            0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // prepare_tail 0x40
            0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // tail 0x1000
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // chunk_count 1
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // delta_count 1
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // session_count 1
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, // chunk 0's node
            0x0b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x00, // delta 0's node
            0x02, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, // name_len 2, reserved, 1 excluded
            0x09, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // until_serial 9
            0x61, 0x62, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // "ab", padding
        ];
        assert_eq!(bytes[..128], golden);
        assert_eq!(bytes[128..], 8u64.to_le_bytes(), "the excluded serial");
        assert_eq!(StoreNode::decode(&bytes, "r").unwrap(), golden_store());
    }

    #[test]
    fn every_damaged_checkpoint_field_is_refused_where_it_is() {
        let good = golden_store().encode();
        let refused_at = |bytes: &[u8]| match StoreNode::decode(bytes, "faster-kv:s") {
            Err(e) => e.as_corruption().map(|c| c.offset),
            Ok(_) => None,
        };
        // Checkpoint flags, prepare_tail below LOG_BEGIN, a tail off a page boundary, a zero
        // chunk id, a zero name length, reserved bits, non-UTF-8 name, padding, an excluded
        // serial past until_serial.
        let damage: [(usize, u8, u64); 10] = [
            (36, 1, 36),
            (48, 0x3f, 48),
            (56, 1, 56),
            (94, 0, 88),
            (102, 0, 96),
            (104, 0, 104),
            (106, 1, 106),
            (120, 0xff, 120),
            (122, 1, 122),
            (128, 10, 128),
        ];
        for (at, byte, offset) in damage {
            let mut bad = good.clone();
            if at == 94 || at == 102 {
                bad[at - 6..at + 2].fill(0);
            } else {
                bad[at] = byte;
            }
            assert_eq!(refused_at(&bad), Some(offset), "byte {at}");
        }
        // Truncated, and trailing bytes.
        assert!(refused_at(&good[..good.len() - 4]).is_some());
        let mut long = good.clone();
        long.extend_from_slice(&[0; 8]);
        assert_eq!(refused_at(&long), Some(136));
    }

    #[test]
    fn golden_chunk_bytes_and_refusals() {
        let bytes = encode_chunk(5, &[0x11, 0x22]);
        #[rustfmt::skip]
        let golden: [u8; 32] = [
            0x56, 0x4b, 0x56, 0x43, 0x01, 0x00, 0x00, 0x00, // "VKVC", version 1, flags 0
            0x05, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // chunk 5, 2 words
            0x11, 0, 0, 0, 0, 0, 0, 0,
            0x22, 0, 0, 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes, golden);
        let p = Path::new("c");
        assert_eq!(decode_chunk(&bytes, 5, p).unwrap(), vec![0x11, 0x22]);
        let at = |r: Result<Vec<u64>, StoreError>| r.unwrap_err().as_corruption().map(|c| c.offset);
        assert_eq!(
            at(decode_chunk(&bytes, 4, p)),
            Some(8),
            "another chunk's node"
        );
        assert_eq!(at(decode_chunk(&bytes[..24], 5, p)), Some(12), "short");
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(at(decode_chunk(&bad, 5, p)), Some(0));
        bad = bytes.clone();
        bad[6] = 1;
        assert_eq!(at(decode_chunk(&bad, 5, p)), Some(6));
    }

    #[test]
    fn golden_delta_bytes_and_refusals() {
        let chain: Vec<u64> = (1..=8).collect();
        let bytes = encode_delta(&[(5, chain.clone())]);
        let mut golden = vec![
            0x56, 0x4b, 0x56, 0x44, 0x01, 0x00, 0x00, 0x00, // "VKVD", version 1, flags 0
            0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // 1 entry, reserved
            0x05, 0, 0, 0, 0, 0, 0, 0, // bucket 5
            0x08, 0, 0, 0, 0, 0, 0, 0, // 8 words
        ];
        golden.extend(chain.iter().flat_map(|w| w.to_le_bytes()));
        assert_eq!(bytes, golden);
        let p = Path::new("d");
        assert_eq!(decode_delta(&bytes, 64, p).unwrap(), vec![(5, chain)]);
        let at = |r: Result<Vec<(usize, Vec<u64>)>, StoreError>| {
            r.unwrap_err().as_corruption().map(|c| c.offset)
        };
        assert_eq!(
            at(decode_delta(&bytes, 5, p)),
            Some(16),
            "bucket past the index"
        );
        let mut bad = bytes.clone();
        bad[24] = 7;
        assert_eq!(
            at(decode_delta(&bad, 64, p)),
            Some(24),
            "not a whole bucket"
        );
        bad = bytes.clone();
        bad[12] = 1;
        assert_eq!(at(decode_delta(&bad, 64, p)), Some(12));
        let two = encode_delta(&[(5, vec![0; 8]), (5, vec![0; 8])]);
        assert_eq!(
            at(decode_delta(&two, 64, p)),
            Some(96),
            "buckets must ascend"
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
            cut in 0usize..128,
        ) {
            // A valid head up to `cut`, then arbitrary bytes.
            let mut bytes = golden_store().encode()[..cut].to_vec();
            bytes.extend_from_slice(&tail);
            // Only that it returns: the refusals are the other tests'.
            let _store = StoreNode::decode(&bytes, "r");
            let _chunk = decode_chunk(&tail, 0, Path::new("c"));
            let _delta = decode_delta(&tail, 64, Path::new("d"));
        }
    }
}
