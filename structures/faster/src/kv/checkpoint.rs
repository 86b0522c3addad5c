//! Taking a checkpoint (CPR, `cpr.rs`): the phases, then one runtime transaction with the
//! changed index chunks and the store node's checkpoint section (`design/DURABILITY.md` §8,
//! CK1–CK5).

use std::collections::BTreeMap;

use vellum::NodeId;

use super::checkpoint_meta::{CheckpointMeta, SessionPoint};
use super::cpr::{CommitPoint, CprState, Phase};
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
    /// Index chunks written (the others kept their nodes).
    pub chunks_written: usize,
    /// Every session that crossed during the checkpoint, with its commit point.
    pub sessions: Vec<SessionCommit>,
}

/// What a store keeps between checkpoints.
#[derive(Debug, Default)]
pub(crate) struct CheckpointState {
    /// Each index chunk's node, once a checkpoint wrote it.
    pub chunk_nodes: Vec<Option<NodeId>>,
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

/// CK2–CK4, once no operation of version `v` runs.
fn write(kv: &KvInner, v: u32, prepare_tail: u64) -> Result<CheckpointInfo> {
    let crossed = kv.cpr.take_commit_points(v + 1);
    let mut state = kv.checkpoint.lock();
    // CK2: the chunks that changed since their last image (and those never written).
    if state.chunk_nodes.len() != kv.index.chunk_count() {
        state.chunk_nodes = vec![None; kv.index.chunk_count()];
    }
    let changed: Vec<(usize, Vec<u64>)> = (0..kv.index.chunk_count())
        .filter(|&c| kv.index.take_dirty(c) || state.chunk_nodes[c].is_none())
        .map(|c| (c, kv.index.chunk_words(c)))
        .collect();
    let restore_dirty = |changed: &[(usize, Vec<u64>)]| {
        for (c, _) in changed {
            kv.index.mark_dirty(*c);
        }
    };
    // CK3: fold-over.
    let tail = match kv.hlog.fold_over() {
        Ok(t) => t,
        Err(e) => {
            restore_dirty(&changed);
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
        sessions: (points.iter())
            .map(|(name, commit)| SessionPoint {
                name: name.clone(),
                commit: commit.clone(),
            })
            .collect(),
    };
    // CK4: one transaction.
    let policy = kv.checkpoint_policy;
    if let Err(e) = kv
        .hlog
        .commit_checkpoint(meta, &changed, &mut state.chunk_nodes, policy)
    {
        restore_dirty(&changed);
        return Err(e);
    }
    state.commit_points = points;
    Ok(CheckpointInfo {
        version: v,
        tail,
        chunks_written: changed.len(),
        sessions: (crossed.into_iter())
            .map(|(session, name, commit)| SessionCommit {
                session,
                name,
                commit,
            })
            .collect(),
    })
}
