//! The main job's workload: rounds of one-node commits from several threads, the check that
//! every acknowledged commit reads back exact, and the one-million-node recovery store.
//!
//! Node contents are not kept in memory: a node's bytes are a function of its seed
//! ([`Contents::fill`]), so the bench holds 24 bytes per acknowledged commit instead of the
//! node's bytes (for an EVENTUAL round of 100 000 commits of 4 KiB, 400 MB made up front).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vellum::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime};

use crate::group_commit::BoxError;

/// Bytes of the pseudo-random pool node contents are cut from.
const POOL_BYTES: usize = 1 << 20;

/// Deterministic node contents: the seed's 8 little-endian bytes, then the pool's bytes from an
/// offset the seed picks (wrapping at the pool's end). Distinct seeds give distinct nodes (for
/// nodes of at least 8 bytes), and making a node's bytes is one copy.
#[derive(Debug)]
pub struct Contents {
    pool: Vec<u8>,
}

impl Contents {
    pub fn new() -> Contents {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let pool = (0..POOL_BYTES)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        Contents { pool }
    }

    /// Makes the `len` bytes of the node with `seed` in `buf`.
    pub fn fill(&self, seed: u64, len: usize, buf: &mut Vec<u8>) {
        buf.clear();
        buf.extend_from_slice(&seed.to_le_bytes()[..len.min(8)]);
        // Fibonacci hashing spreads consecutive seeds over the pool.
        let mut at = (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 44) as usize % POOL_BYTES;
        while buf.len() < len {
            let take = (len - buf.len()).min(POOL_BYTES - at);
            buf.extend_from_slice(&self.pool[at..at + take]);
            at = 0;
        }
    }
}

/// An acknowledged node: its id, the seed of its content, and its length.
pub type Acked = (NodeId, u64, usize);

/// One round's outcome.
#[derive(Debug)]
pub struct Round {
    pub acked: Vec<Acked>,
    pub elapsed: Duration,
    /// Each commit's latency, sorted.
    pub latencies_ns: Vec<u64>,
}

/// `threads` threads each commit their share of `commits` transactions of one new node of
/// `len` bytes, seeds counting up from `seed_base`. An EVENTUAL round ends with a sync, so its
/// time covers making its commits durable.
pub fn round(
    rt: &Arc<DurableRuntime>,
    contents: &Arc<Contents>,
    policy: CommitPolicy,
    threads: usize,
    commits: usize,
    len: usize,
    seed_base: u64,
) -> Result<Round, BoxError> {
    let per = commits.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let rt = rt.clone();
            let contents = contents.clone();
            std::thread::spawn(move || -> Result<(Vec<Acked>, Vec<u64>), vellum::Error> {
                let mut acked = Vec::with_capacity(per);
                let mut lat = Vec::with_capacity(per);
                let mut bytes = Vec::with_capacity(len);
                for i in 0..per {
                    let seed = seed_base + (t * per + i) as u64;
                    // One copy from the pool, outside each commit's latency but inside the
                    // round's time (under 1 % of the fastest commit measured).
                    contents.fill(seed, len, &mut bytes);
                    let t0 = Instant::now();
                    let mut tx = rt.begin();
                    let id = tx.alloc(1, &bytes)?;
                    tx.commit_with(policy)?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                    acked.push((id, seed, len));
                }
                Ok((acked, lat))
            })
        })
        .collect();
    let mut acked = Vec::with_capacity(per * threads);
    let mut latencies_ns = Vec::with_capacity(per * threads);
    for h in handles {
        let (a, l) = h.join().map_err(|_| "a bench thread panicked")??;
        acked.extend(a);
        latencies_ns.extend(l);
    }
    if policy == CommitPolicy::Eventual {
        rt.sync()?;
    }
    let elapsed = start.elapsed();
    latencies_ns.sort_unstable();
    Ok(Round {
        acked,
        elapsed,
        latencies_ns,
    })
}

/// Reads every acknowledged node and compares it with the bytes it was committed with.
pub fn verify(rt: &DurableRuntime, contents: &Contents, acked: &[Acked]) -> Result<(), BoxError> {
    let mut want = Vec::new();
    for &(id, seed, len) in acked {
        let got = rt.read(id)?;
        contents.fill(seed, len, &mut want);
        if got != want {
            return Err(format!("acknowledged node {id} came back with different bytes").into());
        }
    }
    Ok(())
}

/// What the recovery measurement found.
#[derive(Debug, Clone, Copy)]
pub struct Recovery {
    pub nodes: usize,
    pub open_time: Duration,
    pub records_replayed: u64,
}

/// Writes `nodes` nodes of 64 B into a new store at `dir` in transactions of 1000, with a
/// checkpoint after 90 % of them, closes it, and times the open that recovers it; then checks
/// every node.
pub fn recovery(
    dir: &Path,
    nodes: usize,
    contents: &Contents,
    create: vellum::runtime::RuntimeOptions,
    reopen: vellum::runtime::RuntimeOptions,
) -> Result<Recovery, BoxError> {
    const NODE_BYTES: usize = 64;
    const PER_TX: usize = 1000;
    std::fs::create_dir_all(dir)?;
    eprintln!(
        "  recovery: writing {nodes} nodes of {NODE_BYTES} B (checkpoint at 90 %, the rest in the log) ..."
    );
    let mut acked = Vec::with_capacity(nodes);
    let mut bytes = Vec::with_capacity(NODE_BYTES);
    {
        let rt = DurableRuntime::open(dir, create)?;
        for batch in 0..nodes.div_ceil(PER_TX) {
            let mut tx = rt.begin();
            for i in 0..PER_TX.min(nodes - batch * PER_TX) {
                let seed = (batch * PER_TX + i) as u64;
                contents.fill(seed, NODE_BYTES, &mut bytes);
                acked.push((tx.alloc(1, &bytes)?, seed, NODE_BYTES));
            }
            tx.commit_with(CommitPolicy::Balanced)?;
            if batch + 1 == nodes * 9 / 10 / PER_TX {
                rt.checkpoint()?;
            }
        }
        rt.close()?;
    }
    eprintln!("  recovery: reopening and verifying ...");
    let t0 = Instant::now();
    let rt = DurableRuntime::open(dir, reopen)?;
    let open_time = t0.elapsed();
    let records_replayed = rt.stats().recovery_records;
    verify(&rt, contents, &acked)?;
    Ok(Recovery {
        nodes,
        open_time,
        records_replayed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contents_are_deterministic_distinct_and_any_length() {
        let c = Contents::new();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        c.fill(7, 4096, &mut a);
        c.fill(7, 4096, &mut b);
        assert_eq!(a, b);
        c.fill(8, 4096, &mut b);
        assert_ne!(a, b);
        assert_eq!(&a[..8], &7u64.to_le_bytes());
        // Longer than the pool: it wraps.
        c.fill(9, POOL_BYTES * 2 + 3, &mut a);
        assert_eq!(a.len(), POOL_BYTES * 2 + 3);
        c.fill(9, 3, &mut a);
        assert_eq!(a, [9, 0, 0]);
        c.fill(9, 0, &mut a);
        assert!(a.is_empty());
    }
}
