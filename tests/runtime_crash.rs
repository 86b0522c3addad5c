//! The crash sweep: a seeded workload of random transactions (allocate, update, retire, roots,
//! snapshots held open, syncs, checkpoints) on the fault-injecting storage, crashed after the k-th
//! storage operation for every k, for each commit policy and a mix of them. After each recovery:
//! the state is exactly the model's state at the recovered epoch; that epoch is at least every
//! acknowledged durable commit (STRICT/BALANCED commits, EVENTUAL ones up to a successful sync) and
//! at most the commit in flight; no two live nodes share a slot and no slot leaks. Then the
//! workload continues and is crashed again (three generations, one crash inside recovery).
//!
//! `VELLUM_CRASH_STRIDE` (default 2) picks every n-th crash point and `VELLUM_CRASH_TXNS`
//! (default 10) sets transactions per generation; `VELLUM_CRASH_SEED` varies the seeds. The full
//! sweep is
//! `VELLUM_CRASH_STRIDE=1 VELLUM_CRASH_TXNS=40 cargo test --release --test runtime_crash`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vellum::io::{CrashMode, FaultStorage};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions, Snapshot};

mod common;

use common::workload::bytes_for;
use common::{Rng, env_u64};

const DIR: &str = "/store";
const ROOTS: [&str; 3] = ["alpha", "beta", "gamma"];

#[derive(Clone, Default, Debug, PartialEq)]
struct State {
    nodes: BTreeMap<NodeId, Vec<u8>>,
    roots: BTreeMap<String, NodeId>,
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Only(CommitPolicy),
    Mixed,
}

fn options() -> RuntimeOptions {
    common::small_deterministic_options()
}

fn storage(seed: u64) -> FaultStorage {
    common::fault_storage(seed, DIR)
}

fn open(fs: &FaultStorage) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options())
}

/// The history of one run: `states[e]` is the state after commit epoch `e`.
struct History {
    states: Vec<State>,
    /// Every epoch at or below this is acknowledged durable.
    durable_floor: u64,
    /// The state a commit in flight at the crash would have made (epoch `states.len()`).
    in_flight: Option<State>,
}

impl History {
    fn current(&self) -> &State {
        self.states
            .last()
            .expect("history starts with the empty state")
    }
}

/// Runs `txns` transactions; returns the first error (the storage crashed) if any.
fn run_generation(
    rt: &DurableRuntime,
    rng: &mut Rng,
    mode: Mode,
    txns: usize,
    h: &mut History,
    ctx: &str,
) -> Result<(), String> {
    let mut snapshots: Vec<(Snapshot<'_>, u64)> = Vec::new();
    for _ in 0..txns {
        let policy = match mode {
            Mode::Only(p) => p,
            Mode::Mixed => [
                CommitPolicy::Strict,
                CommitPolicy::Balanced,
                CommitPolicy::Eventual,
            ][rng.below(3) as usize],
        };
        let mut next = h.current().clone();
        let mut tx = rt.begin();
        let mut touched: Vec<NodeId> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let existing: Vec<NodeId> = next
                .nodes
                .keys()
                .copied()
                .filter(|id| !touched.contains(id))
                .collect();
            let pick =
                (!existing.is_empty()).then(|| existing[rng.below(existing.len() as u64) as usize]);
            let ok = match (rng.below(6), pick) {
                (0 | 1, _) | (_, None) => {
                    let b = bytes_for(rng);
                    tx.alloc(1, &b).map(|id| {
                        next.nodes.insert(id, b);
                        touched.push(id);
                    })
                }
                (2 | 3, Some(id)) => {
                    let b = bytes_for(rng);
                    tx.write(id, &b).map(|()| {
                        next.nodes.insert(id, b);
                        touched.push(id);
                    })
                }
                (4, Some(id)) => tx.retire(id).map(|()| {
                    next.nodes.remove(&id);
                    touched.push(id);
                }),
                (_, Some(id)) => {
                    let name = ROOTS[rng.below(3) as usize];
                    if rng.below(4) == 0 {
                        tx.remove_root(name).map(|()| {
                            next.roots.remove(name);
                        })
                    } else {
                        tx.set_root(name, id).map(|()| {
                            next.roots.insert(name.to_owned(), id);
                        })
                    }
                }
            };
            if let Err(e) = ok {
                return Err(format!("op: {e}"));
            }
        }
        match tx.commit_with(policy) {
            Ok(epoch) => {
                assert_eq!(
                    epoch as usize,
                    h.states.len(),
                    "{ctx}: epochs are consecutive"
                );
                h.states.push(next);
                if policy != CommitPolicy::Eventual {
                    h.durable_floor = epoch;
                }
            }
            Err(e) => {
                h.in_flight = Some(next);
                return Err(format!("commit: {e}"));
            }
        }
        match rng.below(10) {
            0 => match rt.sync() {
                Ok(e) => h.durable_floor = h.durable_floor.max(e),
                Err(e) => return Err(format!("sync: {e}")),
            },
            1 => {
                if let Err(e) = rt.checkpoint() {
                    return Err(format!("checkpoint: {e}"));
                }
                // A checkpoint makes everything so far durable.
                h.durable_floor = (h.states.len() - 1) as u64;
            }
            2 if snapshots.len() < 2 => {
                let s = rt.snapshot();
                let e = s.epoch();
                snapshots.push((s, e));
            }
            _ => {}
        }
    }
    // Held snapshots still see exactly their epoch, however much changed since.
    for (snap, epoch) in &snapshots {
        let want = &h.states[*epoch as usize];
        for (id, bytes) in &want.nodes {
            match snap.read(*id) {
                Ok(got) => assert_eq!(got.as_ref(), Some(bytes), "{ctx}: snapshot@{epoch} {id}"),
                Err(e) => return Err(format!("snapshot read: {e}")),
            }
        }
    }
    Ok(())
}

fn check_recovered(rt: &DurableRuntime, h: &mut History, ctx: &str) {
    let epoch = rt.visible_epoch();
    assert!(
        epoch >= h.durable_floor,
        "{ctx}: recovered epoch {epoch} lost acknowledged commits up to {}",
        h.durable_floor
    );
    let expected = if (epoch as usize) < h.states.len() {
        h.states[epoch as usize].clone()
    } else if epoch as usize == h.states.len() && h.in_flight.is_some() {
        h.in_flight.clone().unwrap_or_default()
    } else {
        panic!(
            "{ctx}: recovered epoch {epoch} was never committed ({} states)",
            h.states.len()
        );
    };
    let ids: Vec<NodeId> = expected.nodes.keys().copied().collect();
    assert_eq!(rt.node_ids(), ids, "{ctx}: live set at epoch {epoch}");
    for (id, bytes) in &expected.nodes {
        assert_eq!(
            &rt.read(*id)
                .unwrap_or_else(|e| panic!("{ctx}: read {id}: {e}")),
            bytes,
            "{ctx}: {id}"
        );
    }
    for name in ROOTS {
        assert_eq!(
            rt.root(name),
            expected.roots.get(name).copied(),
            "{ctx}: root {name}"
        );
    }
    let (nodes, _) = rt.verify().unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    assert_eq!(nodes, ids.len() as u64, "{ctx}");
    h.states.truncate(epoch as usize);
    h.states.push(expected);
    h.durable_floor = epoch;
    h.in_flight = None;
}

fn crash_mode(k: u64, seed: u64) -> CrashMode {
    match k % 3 {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::KeepUnsynced,
        _ => CrashMode::Seeded(seed ^ k.wrapping_mul(0x9e37_79b9)),
    }
}

fn one_run(mode: Mode, seed: u64, k: u64, txns: usize) {
    let ctx = format!("mode {mode:?} seed {seed} k {k}");
    let mut rng = Rng::new(seed);
    let mut h = History {
        states: vec![State::default()],
        durable_floor: 0,
        in_flight: None,
    };

    // Generation 1: crash after k storage operations.
    let fs = storage(seed);
    let rt = open(&fs).unwrap_or_else(|e| panic!("{ctx}: create: {e}"));
    fs.crash_after(k);
    let _ = run_generation(&rt, &mut rng, mode, txns, &mut h, &ctx);
    drop(rt);
    let fs = fs.crash_with(crash_mode(k, seed));
    let rt = open(&fs).unwrap_or_else(|e| panic!("{ctx} gen 1: recovery failed: {e}"));
    check_recovered(&rt, &mut h, &format!("{ctx} gen 1"));

    // Generation 2: continue, crash later, and crash once more inside the recovery.
    let k2 = (k * 7 + 3) % (k + 40);
    fs.crash_after(k2);
    let _ = run_generation(&rt, &mut rng, mode, txns, &mut h, &ctx);
    drop(rt);
    let fs = fs.crash_with(crash_mode(k2 + 1, seed));
    fs.crash_after(k % 23);
    if let Ok(rt) = open(&fs) {
        drop(rt);
    }
    let fs = fs.crash_with(crash_mode(k + 2, seed));
    let rt = open(&fs).unwrap_or_else(|e| panic!("{ctx} gen 2: recovery failed: {e}"));
    check_recovered(&rt, &mut h, &format!("{ctx} gen 2"));

    // Generation 3: no crash; a clean close keeps everything, EVENTUAL commits included.
    if let Err(e) = run_generation(&rt, &mut rng, mode, txns.min(6), &mut h, &ctx) {
        panic!("{ctx}: gen 3 failed: {e}");
    }
    let final_epoch = (h.states.len() - 1) as u64;
    rt.close().unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    let rt = open(&fs).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    h.durable_floor = final_epoch;
    check_recovered(&rt, &mut h, &format!("{ctx} gen 3"));
    assert_eq!(
        rt.visible_epoch(),
        final_epoch,
        "{ctx}: a clean close loses nothing"
    );
}

fn sweep(mode: Mode, seed: u64) {
    let seed = seed ^ env_u64("VELLUM_CRASH_SEED", 0);
    let stride = env_u64("VELLUM_CRASH_STRIDE", 2).max(1);
    let txns = env_u64("VELLUM_CRASH_TXNS", 10) as usize;
    // Count the storage operations of an uncrashed first generation.
    let fs = storage(seed);
    let rt = open(&fs).expect("create");
    let before = fs.op_count();
    let mut h = History {
        states: vec![State::default()],
        durable_floor: 0,
        in_flight: None,
    };
    if let Err(e) = run_generation(&rt, &mut Rng::new(seed), mode, txns, &mut h, "dry run") {
        panic!("dry run failed: {e}");
    }
    let total = fs.op_count() - before;
    drop(rt);
    let mut k = 0;
    while k <= total + 2 {
        one_run(mode, seed, k, txns);
        k += stride;
    }
}

#[test]
fn crash_sweep_strict() {
    sweep(Mode::Only(CommitPolicy::Strict), 11);
}

#[test]
fn crash_sweep_balanced() {
    sweep(Mode::Only(CommitPolicy::Balanced), 23);
}

#[test]
fn crash_sweep_eventual() {
    sweep(Mode::Only(CommitPolicy::Eventual), 37);
}

#[test]
fn crash_sweep_mixed_policies() {
    sweep(Mode::Mixed, 41);
}
