//! The load: one node per key, generation 0, made durable before any cell runs.

use std::time::{Duration, Instant};

use vellum::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime};

use crate::durable_bench::content;
use crate::group_commit::BoxError;

/// Nodes created per load transaction.
const LOAD_TX_NODES: usize = 10_000;
/// The node kind of every key's node.
pub const NODE_KIND: u8 = 1;

/// Creates `nodes` nodes of `node_bytes` bytes in EVENTUAL transactions of [`LOAD_TX_NODES`],
/// then syncs; returns key `k`'s node id at index `k`, and the time the load took.
pub fn load(
    rt: &DurableRuntime,
    nodes: usize,
    node_bytes: usize,
) -> Result<(Vec<NodeId>, Duration), BoxError> {
    let start = Instant::now();
    let mut ids = Vec::with_capacity(nodes);
    while ids.len() < nodes {
        let mut tx = rt.begin();
        for key in ids.len()..nodes.min(ids.len() + LOAD_TX_NODES) {
            ids.push(tx.alloc_with(NODE_KIND, node_bytes, |node| {
                content::fill(node, key, 0);
            })?);
        }
        tx.commit_with(CommitPolicy::Eventual)?;
    }
    rt.sync()?;
    debug_assert_eq!(ids.len(), nodes);
    Ok((ids, start.elapsed()))
}
