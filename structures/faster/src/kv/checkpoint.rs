//! Taking a checkpoint (CPR, `cpr.rs`): the phases, then one runtime transaction with the
//! changed index chunks and the store node's checkpoint section (`design/DURABILITY.md` §8,
//! CK1–CK5).

use std::collections::{BTreeMap, BTreeSet};

use super::checkpoint_meta::{CheckpointMeta, SessionPoint, encode_delta};
use super::cpr::{CommitPoint, CprState, Phase};
use super::hlog::{IndexNodes, IndexWrites};
use super::store::KvInner;
use crate::Result;

/// A session's commit point in a checkpoint just taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCommit {
    /// The session's id ([`Session::id`](super::Session::id)).
    pub session: usize,
    /// Its name, for a named session.
    pub name: Option<String>,
    /// What the checkpoint holds of its operations.
    pub commit: CommitPoint,
}

/// What [`FasterKv::checkpoint`](super::FasterKv::checkpoint) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The version whose operations the checkpoint holds (the store now runs the next).
    pub version: u32,
    /// The log's end in the checkpoint.
    pub tail: u64,
    /// Index chunks written: whole, or with changed chains in the checkpoint's delta node (the
    /// others kept their nodes).
    pub chunks_written: usize,
    /// Bytes of index written: chunk images and the delta node.
    pub index_bytes: u64,
    /// Delta nodes the index has after the checkpoint (0 once chunks were rewritten whole).
    pub delta_nodes: usize,
    /// Every session that crossed during the checkpoint, with its commit point.
    pub sessions: Vec<SessionCommit>,
}

/// What a store keeps between checkpoints.
#[derive(Debug, Default)]
pub(crate) struct CheckpointState {
    /// The index's chunk and delta nodes.
    pub nodes: IndexNodes,
    /// Bytes of the delta nodes, and the chunks their chains are in.
    pub delta_bytes: u64,
    pub delta_chunks: BTreeSet<usize>,
    /// The named sessions' last commit points (recovered, then from each checkpoint).
    pub commit_points: BTreeMap<String, CommitPoint>,
}

/// Runs a checkpoint of `kv` (CK1–CK5). The calling thread must hold no protected session of
/// the store: the checkpoint waits for every protected session to cross.
pub(crate) fn take(kv: &KvInner) -> Result<CheckpointInfo> {
    let _one = kv.cpr.running.lock();
    // CK1: Prepare, then In progress: every session takes its commit point.
    let prepare_tail = kv.hlog.tail();
    let v = kv.cpr.prepare(prepare_tail);
    let next = v + 1;
    kv.cpr.advance_to(CprState {
        phase: Phase::InProgress,
        version: next,
    });
    kv.cpr.advance_to(CprState {
        phase: Phase::WaitFlush,
        version: next,
    });
    let result = write(kv, v, prepare_tail);
    // CK5: the store rests at the new version whether or not the checkpoint was written.
    kv.cpr.rest(next);
    let counter = match result {
        Ok(_) => &kv.checkpoints_taken,
        Err(_) => &kv.checkpoints_failed,
    };
    counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    result
}

/// What CK2 copies of the index, and how much.
struct IndexCopy {
    writes: IndexWrites,
    /// The buckets taken (set dirty again if the checkpoint fails), and their chunks.
    taken: Vec<usize>,
    taken_chunks: BTreeSet<usize>,
    /// Chunks written: whole, or with chains in the delta.
    chunks_written: usize,
    delta_bytes: u64,
}

/// CK2: takes the changed buckets and copies them: as one delta node while the deltas stay
/// under a quarter of the index's bytes, else the changed chunks (and those with chains in
/// earlier deltas) whole, dropping the deltas; everything whole the first time.
fn copy_index(kv: &KvInner, state: &CheckpointState) -> IndexCopy {
    let chunk_count = kv.index.chunk_count();
    let taken: Vec<usize> = (0..chunk_count)
        .flat_map(|c| kv.index.take_dirty_buckets(c))
        .collect();
    let taken_chunks: BTreeSet<usize> = taken.iter().map(|&b| kv.index.chunk_of(b)).collect();
    let first =
        state.nodes.chunks.len() != chunk_count || state.nodes.chunks.iter().any(Option::is_none);
    let delta: Vec<(usize, Vec<u64>)> = if first {
        Vec::new()
    } else {
        taken
            .iter()
            .map(|&b| (b, kv.index.chain_words(b)))
            .collect()
    };
    let delta_words: usize = delta.iter().map(|(_, w)| 2 + w.len()).sum();
    let delta_bytes = (16 + 8 * delta_words) as u64;
    let limit = kv.index.bucket_count() * 64 / 4;
    if !first && state.delta_bytes + delta_bytes <= limit {
        let writes = IndexWrites {
            delta: (!delta.is_empty()).then(|| encode_delta(&delta)),
            ..IndexWrites::default()
        };
        let delta_bytes = if delta.is_empty() { 0 } else { delta_bytes };
        return IndexCopy {
            writes,
            chunks_written: taken_chunks.len(),
            taken,
            taken_chunks,
            delta_bytes,
        };
    }
    let mut chunks = taken_chunks.clone();
    chunks.extend(&state.delta_chunks);
    if first {
        chunks.extend(0..chunk_count);
    }
    let writes = IndexWrites {
        chunks: chunks
            .iter()
            .map(|&c| (c, kv.index.chunk_words(c)))
            .collect(),
        delta: None,
        retire_deltas: true,
    };
    IndexCopy {
        chunks_written: writes.chunks.len(),
        writes,
        taken,
        taken_chunks,
        delta_bytes: 0,
    }
}

/// CK2–CK4, once no operation of version `v` runs.
fn write(kv: &KvInner, v: u32, prepare_tail: u64) -> Result<CheckpointInfo> {
    let crossed = kv.cpr.take_commit_points(v + 1);
    let mut state = kv.checkpoint.lock();
    let copy = copy_index(kv, &state);
    let restore = |copy: &IndexCopy| {
        for &b in &copy.taken {
            kv.index.mark_bucket_dirty(b);
        }
    };
    // CK3: fold-over.
    let tail = match kv.hlog.fold_over() {
        Ok(t) => t,
        Err(e) => {
            restore(&copy);
            return Err(e);
        }
    };
    let mut points = state.commit_points.clone();
    for c in &crossed {
        if let Some(name) = &c.1 {
            points.insert(name.clone(), c.2.clone());
        }
    }
    let meta = CheckpointMeta {
        version: v,
        bucket_count: kv.index.bucket_count(),
        prepare_tail,
        tail,
        chunks: Vec::new(),
        deltas: Vec::new(),
        sessions: (points.iter())
            .map(|(name, commit)| SessionPoint {
                name: name.clone(),
                commit: commit.clone(),
            })
            .collect(),
    };
    // CK4: one transaction.
    let policy = kv.checkpoint_policy;
    let mut nodes = state.nodes.clone();
    nodes.chunks.resize(kv.index.chunk_count(), None);
    if let Err(e) = kv
        .hlog
        .commit_checkpoint(meta, &copy.writes, &mut nodes, policy)
    {
        restore(&copy);
        return Err(e);
    }
    state.nodes = nodes;
    if copy.writes.retire_deltas {
        state.delta_bytes = 0;
        state.delta_chunks.clear();
    } else {
        state.delta_bytes += copy.delta_bytes;
        state.delta_chunks.extend(&copy.taken_chunks);
    }
    state.commit_points = points;
    let whole: usize = copy
        .writes
        .chunks
        .iter()
        .map(|(_, w)| 16 + 8 * w.len())
        .sum();
    let delta = copy.writes.delta.as_ref().map_or(0, Vec::len);
    Ok(CheckpointInfo {
        version: v,
        tail,
        chunks_written: copy.chunks_written,
        index_bytes: (whole + delta) as u64,
        delta_nodes: state.nodes.deltas.len(),
        sessions: (crossed.into_iter())
            .map(|(session, name, commit)| SessionCommit {
                session,
                name,
                commit,
            })
            .collect(),
    })
}
