//! Opening a store that has a checkpoint (`design/DURABILITY.md` §8, RC1–RC4): its index from
//! the chunk nodes, its log from the page nodes below the checkpoint's tail, and the index made
//! consistent with that log.

use std::path::PathBuf;

use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{CorruptionKind, NodeId};

use super::checkpoint::CheckpointState;
use super::checkpoint_meta::CHUNK_HEADER_BYTES;
use std::collections::BTreeSet;

use super::checkpoint_meta::{CheckpointMeta, decode_chunk, decode_delta};
use super::hlog::{HybridLog, IndexNodes, LOG_BEGIN, RecoveredLog};
use super::index::{ADDRESS_UNSET, ChunkDefect, HashIndex, IndexError};
use super::options::KvOptions;
use super::store_node::StoreNode;
use crate::{Error, Result};

/// What recovery hands the store.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub index: HashIndex,
    pub log: RecoveredLog,
    pub state: CheckpointState,
}

/// RC1–RC2: reads the checkpoint of store node `id` (decoded as `node`), and retires the page
/// nodes written after it in one transaction under `policy`, before anything else is written.
pub(crate) fn load(
    rt: &DurableRuntime,
    (root, id): (&str, NodeId),
    node: StoreNode,
    checkpoint: CheckpointMeta,
    options: &KvOptions,
) -> Result<Recovered> {
    if node.page_bytes != options.page_bytes {
        return Err(Error::InvalidArgument(format!(
            "store {root} has pages of {} bytes, the options ask for {}",
            node.page_bytes, options.page_bytes
        )));
    }
    if checkpoint.bucket_count != options.index.bucket_count {
        return Err(Error::InvalidArgument(format!(
            "store {root} has an index of {} buckets, the options ask for {}",
            checkpoint.bucket_count, options.index.bucket_count
        )));
    }
    let pages = (checkpoint.tail / u64::from(node.page_bytes)) as usize;
    if node.pages.len() < pages {
        return Err(Error::Store(vellum::Error::corruption(
            PathBuf::from(root),
            0,
            CorruptionKind::Mismatch {
                what: "page nodes below the checkpoint's tail",
                expected: pages as u64,
                actual: node.pages.len() as u64,
            },
        )));
    }
    let mut images = Vec::with_capacity(checkpoint.chunks.len());
    for (c, &chunk) in checkpoint.chunks.iter().enumerate() {
        let path = PathBuf::from(format!("{root}/chunk/{c}"));
        images.push(decode_chunk(&rt.read(chunk)?, c, &path)?);
    }
    let index = HashIndex::from_chunks(&options.index, &images)
        .map_err(|e| chunk_corruption(root, &images, e))?;
    let (delta_bytes, delta_chunks) = apply_deltas(rt, root, &index, &checkpoint)?;
    let kept = node.pages[..pages].to_vec();
    if node.pages.len() > pages {
        retire_after(rt, id, &node, &checkpoint, options.checkpoint_policy)?;
    }
    let state = CheckpointState {
        nodes: IndexNodes {
            chunks: checkpoint.chunks.iter().copied().map(Some).collect(),
            deltas: checkpoint.deltas.clone(),
        },
        delta_bytes,
        delta_chunks,
        commit_points: (checkpoint.sessions.iter())
            .map(|s| (s.name.clone(), s.commit.clone()))
            .collect(),
    };
    Ok(Recovered {
        index,
        log: RecoveredLog {
            pages: kept,
            tail: checkpoint.tail,
            store_node: id,
            checkpoint,
        },
        state,
    })
}

/// RC1: replaces the chains the checkpoint's delta nodes list, oldest delta first; returns
/// the deltas' bytes and the chunks their chains are in.
fn apply_deltas(
    rt: &DurableRuntime,
    root: &str,
    index: &HashIndex,
    checkpoint: &CheckpointMeta,
) -> Result<(u64, BTreeSet<usize>)> {
    let (mut bytes_total, mut chunks) = (0, BTreeSet::new());
    for (i, &id) in checkpoint.deltas.iter().enumerate() {
        let path = PathBuf::from(format!("{root}/delta/{i}"));
        let bytes = rt.read(id)?;
        bytes_total += bytes.len() as u64;
        let mut offset = 16;
        for (bucket, words) in decode_delta(&bytes, index.bucket_count(), &path)? {
            index
                .replace_chain(bucket, &words)
                .map_err(|(word, defect)| {
                    Error::Store(vellum::Error::corruption(
                        path.clone(),
                        (offset + 16 + 8 * word) as u64,
                        CorruptionKind::InvalidField {
                            field: defect_field(defect),
                            value: words.get(word).copied().unwrap_or(word as u64),
                        },
                    ))
                })?;
            chunks.insert(index.chunk_of(bucket));
            offset += 16 + 8 * words.len();
        }
    }
    Ok((bytes_total, chunks))
}

/// RC2: the pages flushed after the checkpoint hold operations it does not: retired, and the
/// store node rewritten without them, in one transaction.
fn retire_after(
    rt: &DurableRuntime,
    id: NodeId,
    node: &StoreNode,
    checkpoint: &CheckpointMeta,
    policy: CommitPolicy,
) -> Result<()> {
    let pages = (checkpoint.tail / u64::from(node.page_bytes)) as usize;
    let mut txn = rt.begin();
    for &page in &node.pages[pages..] {
        txn.retire(page)?;
    }
    let kept = StoreNode {
        page_bytes: node.page_bytes,
        pages: node.pages[..pages].to_vec(),
        checkpoint: Some(checkpoint.clone()),
    };
    txn.write(id, &kept.encode())?;
    txn.commit_with(policy)?;
    Ok(())
}

/// RC3: every index entry names the newest record of its chain that the checkpoint holds. An
/// entry copied while version `v + 1` operations ran may name a record of `v + 1` (at or above
/// the checkpoint's `prepare_tail`, with the next version's bits): it is moved back along the
/// chain past those. Returns how many entries moved.
pub(crate) fn fix_index(index: &HashIndex, hlog: &HybridLog, cp: &CheckpointMeta) -> Result<u64> {
    let next = cp.version.wrapping_add(1) as u8;
    let mut suspects = Vec::new();
    index.for_each_entry(|_, e| {
        if e.address() >= cp.prepare_tail {
            suspects.push(e);
        }
    });
    let mut moved = 0;
    for mut e in suspects {
        let from = e.address();
        let mut a = from;
        while a >= cp.prepare_tail {
            if a >= cp.tail {
                return Err(past_tail(hlog, a));
            }
            let info = hlog.with_disk_record(a, |r| r.header.info)?;
            if info.version() != next {
                break;
            }
            let p = info.previous_address();
            if p >= a {
                return Err(past_tail(hlog, a));
            }
            a = p;
        }
        if a != from {
            let expected = e.entry();
            let to = if a < LOG_BEGIN { ADDRESS_UNSET } else { a };
            if e.compare_exchange(expected, to).is_err() {
                return Err(Error::InvalidArgument(
                    "internal: an index entry changed during recovery".into(),
                ));
            }
            moved += 1;
        }
    }
    Ok(moved)
}

/// An index entry or chain link that names a record the checkpoint cannot hold.
fn past_tail(hlog: &HybridLog, a: u64) -> Error {
    let page_bytes = hlog.page_bytes();
    Error::Store(vellum::Error::corruption(
        hlog.page_path(a / page_bytes),
        a % page_bytes,
        CorruptionKind::InvalidField {
            field: "record address in a checkpoint",
            value: a,
        },
    ))
}

/// A chunk image `from_chunks` refused, as the corruption of its chunk node: the file names the
/// node (`<root>/chunk/<c>`), the offset is the word's in the node.
pub(crate) fn chunk_corruption(root: &str, images: &[Vec<u64>], e: IndexError) -> Error {
    let IndexError::ChunkCorrupt {
        chunk,
        word,
        defect,
    } = e
    else {
        return Error::Index(e);
    };
    let value = images
        .get(chunk)
        .and_then(|w| w.get(word))
        .copied()
        .unwrap_or(word as u64);
    let field = defect_field(defect);
    Error::Store(vellum::Error::corruption(
        PathBuf::from(format!("{root}/chunk/{chunk}")),
        (CHUNK_HEADER_BYTES + 8 * word) as u64,
        CorruptionKind::InvalidField { field, value },
    ))
}

/// The field an image's defect names in its corruption.
fn defect_field(defect: ChunkDefect) -> &'static str {
    match defect {
        ChunkDefect::Length { .. } => "chunk image length",
        ChunkDefect::ReservedBit => "index entry reserved bit",
        ChunkDefect::AddressMissing => "index entry address",
        ChunkDefect::OverflowPointer { .. } => "overflow pointer",
        ChunkDefect::UnreachableOverflow { .. } => "unreachable overflow bucket",
    }
}
