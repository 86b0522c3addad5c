//! One cell's commits: `threads` threads, thread `t` owning keys `t, t + threads, ...`, each
//! commit one transaction that rewrites `batch` distinct keys of its thread, until the cell's
//! time is up.
//!
//! The threads' key sets are disjoint, so no commit can conflict: a commit that fails stops the
//! cell and fails the bench. A key's generation goes up only when the commit that wrote it
//! returns, so after the cell `generations` holds every key's last acknowledged content.

use rustc_hash::FxHashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vellum::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime};

use crate::durable_bench::content;
use crate::durable_bench::rng::{XorShift64, sample_distinct};
use crate::group_commit::BoxError;

/// What every cell of a run shares: the store, its keys and the shape of a commit.
#[derive(Debug, Clone, Copy)]
pub struct Workload<'a> {
    pub rt: &'a DurableRuntime,
    /// Key `k`'s node.
    pub ids: &'a [NodeId],
    pub node_bytes: usize,
    /// Keys per commit.
    pub batch: usize,
    /// How long each cell commits.
    pub cell_time: Duration,
}

/// One cell: its policy, thread count, and the seed its threads' generators start from.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    pub policy: CommitPolicy,
    pub threads: usize,
    pub seed: u64,
}

/// What a cell's threads did.
#[derive(Debug)]
pub struct CellOutcome {
    /// Commits acknowledged.
    pub commits: usize,
    /// From the start until the last thread's last commit returned.
    pub elapsed: Duration,
    /// Each commit's latency (begin to acknowledgement), sorted.
    pub latencies_ns: Vec<u64>,
}

/// One thread's keys, `first + i * stride`, and the generation each was last acknowledged with.
#[derive(Debug)]
struct OwnedKeys {
    first: usize,
    stride: usize,
    generations: Vec<u64>,
}

impl OwnedKeys {
    /// The keys of each of `threads` threads, with their generations from `all`.
    fn split(all: &[u64], threads: usize) -> Vec<OwnedKeys> {
        (0..threads)
            .map(|first| OwnedKeys {
                first,
                stride: threads,
                generations: all.iter().skip(first).step_by(threads).copied().collect(),
            })
            .collect()
    }

    /// Writes this thread's generations back into `all`.
    fn merge_into(&self, all: &mut [u64]) {
        let mine = all.iter_mut().skip(self.first).step_by(self.stride);
        for (slot, &g) in mine.zip(&self.generations) {
            *slot = g;
        }
    }

    fn key(&self, i: usize) -> usize {
        self.first + i * self.stride
    }
}

/// Runs `cell` on `work`, updating `generations` (key `k` at index `k`) to what was acknowledged.
pub fn run_cell(
    work: &Workload<'_>,
    cell: &Cell,
    generations: &mut [u64],
) -> Result<CellOutcome, BoxError> {
    let owned = OwnedKeys::split(generations, cell.threads);
    let stop = AtomicBool::new(false);
    let start = Instant::now();
    let joined: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = owned
            .into_iter()
            .enumerate()
            .map(|(t, keys)| {
                let seed = cell.seed ^ (t as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let stop = &stop;
                s.spawn(move || commit_loop(work, cell.policy, seed, keys, start, stop))
            })
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let elapsed = start.elapsed();
    let mut latencies_ns = Vec::new();
    for result in joined {
        let (keys, lat) = result.map_err(|_| "a bench thread panicked")??;
        keys.merge_into(generations);
        latencies_ns.extend(lat);
    }
    latencies_ns.sort_unstable();
    Ok(CellOutcome {
        commits: latencies_ns.len(),
        elapsed,
        latencies_ns,
    })
}

/// One thread: commits until the cell's time is up or another thread failed; returns its keys
/// with their new generations and each commit's latency.
fn commit_loop(
    work: &Workload<'_>,
    policy: CommitPolicy,
    seed: u64,
    mut keys: OwnedKeys,
    start: Instant,
    stop: &AtomicBool,
) -> Result<(OwnedKeys, Vec<u64>), vellum::Error> {
    let mut rng = XorShift64::seeded(seed);
    let (mut seen, mut picks) = (FxHashSet::default(), Vec::with_capacity(work.batch));
    let mut latencies_ns = Vec::new();
    while !stop.load(Ordering::Relaxed) && start.elapsed() < work.cell_time {
        sample_distinct(
            &mut rng,
            keys.generations.len(),
            work.batch,
            &mut seen,
            &mut picks,
        );
        let t0 = Instant::now();
        if let Err(e) = commit_one(work, policy, &keys, &picks) {
            stop.store(true, Ordering::Relaxed);
            return Err(e);
        }
        latencies_ns.push(t0.elapsed().as_nanos() as u64);
        for &i in &picks {
            keys.generations[i] += 1;
        }
    }
    Ok((keys, latencies_ns))
}

/// One transaction writing the next generation of each picked key, committed under `policy`.
fn commit_one(
    work: &Workload<'_>,
    policy: CommitPolicy,
    keys: &OwnedKeys,
    picks: &[usize],
) -> Result<(), vellum::Error> {
    // The keys' ids and generations first, then a prefetch of each node's table entry: the
    // loads of these short loops overlap their cache misses, where a write's own lookups would
    // take them one at a time.
    let batch: Vec<(usize, NodeId, u64)> = picks
        .iter()
        .map(|&i| {
            let key = keys.key(i);
            (key, work.ids[key], keys.generations[i] + 1)
        })
        .collect();
    let mut tx = work.rt.begin();
    for &(_, id, _) in &batch {
        tx.prefetch(id);
    }
    for &(key, id, generation) in &batch {
        tx.write_with(id, work.node_bytes, |node| {
            content::fill(node, key, generation);
        })?;
    }
    tx.commit_with(policy)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_disjoint_and_merge_back() {
        let all: Vec<u64> = (0..10).collect();
        let mut owned = OwnedKeys::split(&all, 3);
        assert_eq!(owned[0].generations, [0, 3, 6, 9]);
        assert_eq!(owned[1].generations, [1, 4, 7]);
        assert_eq!(owned[2].generations, [2, 5, 8]);
        assert_eq!(owned[1].key(2), 7);
        for keys in &mut owned {
            keys.generations.iter_mut().for_each(|g| *g += 100);
        }
        let mut merged = all.clone();
        owned.iter().for_each(|k| k.merge_into(&mut merged));
        assert_eq!(merged, (100..110).collect::<Vec<u64>>());
    }
}
