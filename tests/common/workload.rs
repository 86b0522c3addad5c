//! A seeded workload of random transactions (allocate, update, retire, root changes) under a
//! given rotation of commit policies, with the model of what each committed transaction left.

use std::collections::BTreeMap;

use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime};

use super::Rng;

/// Root names the workload sets and removes.
pub const ROOTS: [&str; 3] = ["alpha", "beta", "gamma"];

/// What the committed transactions left: every live node's bytes, the roots, the last epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    /// Live nodes and their bytes.
    pub nodes: BTreeMap<NodeId, Vec<u8>>,
    /// Roots.
    pub roots: BTreeMap<String, NodeId>,
    /// The last committed epoch.
    pub epoch: u64,
}

/// Node bytes: mostly small enough to travel in a BALANCED record (4 KiB), some larger, and
/// some large enough to be written with `write_at` rather than through a mapped window (64 KiB).
pub fn bytes_for(rng: &mut Rng) -> Vec<u8> {
    let len = [1usize, 60, 700, 3000, 4096, 5000, 20_000, 70_000][rng.below(8) as usize];
    let fill = rng.next();
    (0..len)
        .map(|i| (fill >> (i % 8 * 8)) as u8 ^ i as u8)
        .collect()
}

/// Commits `txns` transactions of one to three ops each; transaction `i` uses
/// `policies[i % policies.len()]`. `w` is updated after each successful commit. Returns the
/// first error (a crashed storage, for instance).
pub fn run(
    rt: &DurableRuntime,
    rng: &mut Rng,
    txns: usize,
    policies: &[CommitPolicy],
    w: &mut Written,
) -> vellum::Result<()> {
    for i in 0..txns {
        let policy = policies[i % policies.len()];
        let mut next = w.clone();
        let mut touched: Vec<NodeId> = Vec::new();
        let mut tx = rt.begin();
        for _ in 0..1 + rng.below(3) {
            let existing: Vec<NodeId> = next
                .nodes
                .keys()
                .copied()
                .filter(|id| !touched.contains(id))
                .collect();
            let pick =
                (!existing.is_empty()).then(|| existing[rng.below(existing.len() as u64) as usize]);
            match (rng.below(6), pick) {
                (0 | 1, _) | (_, None) => {
                    let b = bytes_for(rng);
                    let id = tx.alloc(1, &b)?;
                    next.nodes.insert(id, b);
                    touched.push(id);
                }
                (2 | 3, Some(id)) => {
                    let b = bytes_for(rng);
                    tx.write(id, &b)?;
                    next.nodes.insert(id, b);
                    touched.push(id);
                }
                (4, Some(id)) => {
                    tx.retire(id)?;
                    next.nodes.remove(&id);
                    touched.push(id);
                }
                (_, Some(id)) => {
                    let name = ROOTS[rng.below(3) as usize];
                    if rng.below(4) == 0 {
                        tx.remove_root(name)?;
                        next.roots.remove(name);
                    } else {
                        tx.set_root(name, id)?;
                        next.roots.insert(name.to_owned(), id);
                    }
                }
            }
        }
        next.epoch = tx.commit_with(policy)?;
        assert!(
            next.epoch > w.epoch,
            "commit epochs increase: {} after {}",
            next.epoch,
            w.epoch
        );
        *w = next;
    }
    Ok(())
}
