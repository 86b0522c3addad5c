//! The runtime under concurrent threads, with exact expected outcomes.
//!
//! - Counters: threads run read-modify-write transactions on shared counter nodes and retry on
//!   `Conflict`; every counter ends at exactly the number of commits that incremented it, the
//!   runtime's commit and conflict counters match what the threads saw, and a reopen keeps it all.
//! - Snapshots: writers (each owning its nodes, so they never conflict) commit updates,
//!   allocations, retirements and root changes while readers take snapshots and read every node;
//!   each observation equals the model's state at the snapshot's epoch, byte for byte. Node bytes
//!   encode their id and version, so a reader checks the bytes at once and records the version.
//!   Writers commit concurrently and log each commit's changes under the epoch `commit` returned
//!   (readers never touch that log); at the end the epochs must be exactly 1..=N, and the model
//!   replays them in order to check every observation.
//! - A snapshot held across 200 commits that overwrite and retire its nodes reads its epoch exactly;
//!   once dropped, exactly the superseded versions are reclaimed and `verify()` passes.
//!
//! `VELLUM_CONC_TXNS` scales the transactions per thread (default 40 for the counters, 3x that
//! for the snapshot writers).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vellum::Error;

mod common;

use common::{Rng, env_u64};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

const POLICIES: [CommitPolicy; 3] = [
    CommitPolicy::Strict,
    CommitPolicy::Balanced,
    CommitPolicy::Eventual,
];

/// A generator for one seed, mixed so neighbouring seeds give unrelated streams.
fn seeded(seed: u64) -> Rng {
    Rng::new(mix(seed))
}

fn txns_per_thread() -> u64 {
    env_u64("VELLUM_CONC_TXNS", 40).max(1)
}

fn options(policy: CommitPolicy) -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        policy,
        ..RuntimeOptions::default()
    };
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 64 << 20;
    o.data.alloc.file_bytes_max = 64 << 20;
    o.log.preallocate_bytes = 1 << 20;
    o
}

fn open(dir: &Path, o: RuntimeOptions) -> DurableRuntime {
    DurableRuntime::open(dir, o).unwrap()
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

// ---------------------------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------------------------

const THREADS: usize = 4;
const COUNTERS: usize = 8;

/// Counter `i` holding `value`: the value in the first 8 bytes, then filler derived from both. Odd
/// counters are 6000 bytes, too large to travel in a BALANCED record, so both paths are used.
fn counter_bytes(i: usize, value: u64) -> Vec<u8> {
    let len = if i % 2 == 1 { 6000 } else { 8 };
    let mut b = value.to_le_bytes().to_vec();
    let fill = mix(value ^ ((i as u64) << 40));
    b.extend((8..len).map(|k| (fill >> (k % 8 * 8)) as u8 ^ k as u8));
    b
}

fn counter_value(i: usize, bytes: &[u8]) -> u64 {
    let value = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(bytes, counter_bytes(i, value), "counter {i} bytes are torn");
    value
}

#[derive(Default)]
struct ThreadTally {
    increments: [u64; COUNTERS],
    commits: u64,
    conflicts: u64,
}

fn counters_exact(policy: CommitPolicy) {
    let txns = txns_per_thread();
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path(), options(policy));
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..COUNTERS)
        .map(|i| tx.alloc(7, &counter_bytes(i, 0)).unwrap())
        .collect();
    assert_eq!(tx.commit().unwrap(), 1);
    let before = rt.stats();
    assert_eq!((before.commits, before.conflicts, before.aborts), (1, 0, 0));

    let tallies: Vec<ThreadTally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let rt = &rt;
                let ids = &ids;
                s.spawn(move || {
                    let mut rng = seeded(t as u64 + 100 * policy as u64);
                    let mut tally = ThreadTally::default();
                    for _ in 0..txns {
                        loop {
                            let first = rng.below(COUNTERS as u64) as usize;
                            let mut picks = vec![first];
                            if rng.below(3) == 0 {
                                picks.push(
                                    (first + 1 + rng.below(COUNTERS as u64 - 1) as usize)
                                        % COUNTERS,
                                );
                            }
                            let mut tx = rt.begin();
                            for &i in &picks {
                                let value = counter_value(i, &tx.read(ids[i]).unwrap());
                                // Widen the window between the read and the write, where another
                                // thread's commit of the same counter must make this one conflict.
                                std::thread::yield_now();
                                tx.write(ids[i], &counter_bytes(i, value + 1)).unwrap();
                            }
                            match tx.commit() {
                                Ok(_) => {
                                    for &i in &picks {
                                        tally.increments[i] += 1;
                                    }
                                    tally.commits += 1;
                                    break;
                                }
                                Err(Error::Conflict { id }) => {
                                    assert!(
                                        picks.iter().any(|&i| ids[i] == id),
                                        "conflict names {id}, which this transaction did not write"
                                    );
                                    tally.conflicts += 1;
                                }
                                Err(e) => panic!("{policy:?}: commit failed: {e}"),
                            }
                        }
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let mut expected = [0u64; COUNTERS];
    let mut commits = 0;
    let mut conflicts = 0;
    for t in &tallies {
        for (e, n) in expected.iter_mut().zip(t.increments) {
            *e += n;
        }
        commits += t.commits;
        conflicts += t.conflicts;
    }
    assert_eq!(commits, THREADS as u64 * txns);
    let after = rt.stats();
    assert_eq!(
        after.commits - before.commits,
        commits,
        "{policy:?}: stats().commits"
    );
    assert_eq!(
        after.conflicts - before.conflicts,
        conflicts,
        "{policy:?}: stats().conflicts"
    );
    assert_eq!(
        after.aborts - before.aborts,
        conflicts,
        "{policy:?}: every conflicted transaction was dropped, so counted as an abort"
    );
    assert_eq!(
        rt.visible_epoch(),
        1 + commits,
        "{policy:?}: one epoch per commit"
    );

    let values: Vec<u64> = (0..COUNTERS)
        .map(|i| counter_value(i, &rt.read(ids[i]).unwrap()))
        .collect();
    rt.verify().unwrap();
    rt.close().unwrap();
    let rt = open(dir.path(), options(policy));
    let reopened: Vec<u64> = (0..COUNTERS)
        .map(|i| counter_value(i, &rt.read(ids[i]).unwrap()))
        .collect();
    assert_eq!(reopened, values, "{policy:?}: the values survive a reopen");
    assert_eq!(rt.visible_epoch(), 1 + commits);
    assert_eq!(rt.node_ids().len(), COUNTERS);
    assert_eq!(
        values.iter().sum::<u64>(),
        expected.iter().sum::<u64>(),
        "{policy:?}: sum of the counters vs successful increments ({} conflicts seen): \
         {:?} vs {:?} (lost updates)",
        conflicts,
        values,
        expected
    );
    assert_eq!(
        values, expected,
        "{policy:?}: each counter equals the commits that incremented it"
    );
}

#[test]
fn counters_are_exact_under_conflicts_strict() {
    counters_exact(CommitPolicy::Strict);
}

#[test]
fn counters_are_exact_under_conflicts_balanced() {
    counters_exact(CommitPolicy::Balanced);
}

#[test]
fn counters_are_exact_under_conflicts_eventual() {
    counters_exact(CommitPolicy::Eventual);
}

/// The interleaving behind the counters: a transaction reads a node, another commits a new
/// version of it, then the first writes it. Its write is based on bytes that are no longer
/// current, so its commit must fail with `Conflict` (the other transaction committed a version of
/// the node first); otherwise the other commit's update is lost.
#[test]
fn a_write_based_on_a_stale_read_conflicts() {
    for policy in POLICIES {
        let dir = tempfile::tempdir().unwrap();
        let rt = open(dir.path(), options(policy));
        let mut tx = rt.begin();
        let a = tx.alloc(0, &counter_bytes(0, 0)).unwrap();
        tx.commit().unwrap();

        let mut slow = rt.begin();
        let seen = counter_value(0, &slow.read(a).unwrap());
        assert_eq!(seen, 0);
        let mut fast = rt.begin();
        let v = counter_value(0, &fast.read(a).unwrap());
        fast.write(a, &counter_bytes(0, v + 1)).unwrap();
        fast.commit().unwrap();
        slow.write(a, &counter_bytes(0, seen + 1)).unwrap();
        let result = slow.commit();
        let now = counter_value(0, &rt.read(a).unwrap());
        assert!(
            matches!(result, Err(Error::Conflict { id }) if id == a),
            "{policy:?}: a commit whose read of {a} was overtaken returned {result:?}; the \
             counter is {now} after two increments (an update was lost)"
        );
        assert_eq!(now, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots under concurrent writers
// ---------------------------------------------------------------------------------------------

const WRITERS: usize = 2;
const READERS: usize = 2;
const SIZES: [usize; 7] = [16, 40, 700, 3000, 4096, 5000, 20_000];

/// The bytes of version `ver` of node `id`: id and version, then filler derived from both; the
/// length too depends on both, so both small (record payload) and large (data path) nodes occur.
fn node_bytes(id: NodeId, ver: u64) -> Vec<u8> {
    let h = mix(id.raw() ^ ver.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let len = SIZES[(h % SIZES.len() as u64) as usize];
    let mut b = Vec::with_capacity(len);
    b.extend(id.raw().to_le_bytes());
    b.extend(ver.to_le_bytes());
    b.extend((16..len).map(|k| (h >> (k % 8 * 8)) as u8 ^ (k / 8) as u8));
    b
}

/// Checks `bytes` are exactly some version of `id`; returns that version.
fn version_of(id: NodeId, bytes: &[u8]) -> u64 {
    assert!(bytes.len() >= 16, "{id}: {} bytes", bytes.len());
    let raw = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    assert_eq!(raw, id.raw(), "{id}: bytes of another node");
    let ver = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
    assert!(
        bytes == node_bytes(id, ver),
        "{id}: torn bytes of version {ver}"
    );
    ver
}

#[derive(Clone, Debug)]
enum Change {
    Put(NodeId, u64),
    Retire(NodeId),
    Root(usize, Option<NodeId>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Obs {
    Live(u64),
    Absent,
    Stale,
}

struct Observation {
    epoch: u64,
    reads: Vec<(NodeId, Obs)>,
    roots: Vec<Option<NodeId>>,
}

fn root_name(w: usize) -> String {
    format!("writer-{w}")
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    Only(CommitPolicy),
    Mixed,
}

/// The model's state at one epoch.
#[derive(Default, Clone)]
struct ModelState {
    live: HashMap<NodeId, u64>,
    retired: BTreeSet<NodeId>,
    roots: Vec<Option<NodeId>>,
}

impl ModelState {
    fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Put(id, ver) => {
                    self.live.insert(*id, *ver);
                }
                Change::Retire(id) => {
                    assert!(self.live.remove(id).is_some(), "model: retire of dead {id}");
                    self.retired.insert(*id);
                }
                Change::Root(w, id) => self.roots[*w] = *id,
            }
        }
    }

    fn check(&self, o: &Observation, ctx: &str) {
        for (id, obs) in &o.reads {
            let ok = match self.live.get(id) {
                Some(ver) => *obs == Obs::Live(*ver),
                // Retired at or before the epoch: the entry may still exist or be reclaimed.
                None if self.retired.contains(id) => matches!(obs, Obs::Absent | Obs::Stale),
                // Not born yet at the epoch: the entry is reserved for it, so never stale.
                None => *obs == Obs::Absent,
            };
            assert!(
                ok,
                "{ctx}: snapshot@{} read {id} as {obs:?}; the model has {:?} (retired: {})",
                o.epoch,
                self.live.get(id),
                self.retired.contains(id)
            );
        }
        assert_eq!(o.roots, self.roots, "{ctx}: roots at snapshot@{}", o.epoch);
    }
}

fn snapshots_under_writers(mode: Mode, seed: u64) {
    let ctx = format!("{mode:?}");
    let txns = txns_per_thread() * 3;
    let dir = tempfile::tempdir().unwrap();
    let policy = match mode {
        Mode::Only(p) => p,
        Mode::Mixed => CommitPolicy::Balanced,
    };
    let rt = open(dir.path(), options(policy));

    // Epoch 1: each writer's first nodes (allocated, then written with bytes naming their id).
    let log: Mutex<BTreeMap<u64, Vec<Change>>> = Mutex::new(BTreeMap::new());
    let registry: Mutex<Vec<NodeId>> = Mutex::new(Vec::new());
    let mut owned: Vec<Vec<(NodeId, u64)>> = vec![Vec::new(); WRITERS];
    {
        let mut tx = rt.begin();
        let mut changes = Vec::new();
        for (w, nodes) in owned.iter_mut().enumerate() {
            for _ in 0..6 {
                let id = tx.alloc(w as u8, b"placeholder").unwrap();
                tx.write(id, &node_bytes(id, 0)).unwrap();
                changes.push(Change::Put(id, 0));
                nodes.push((id, 0));
            }
        }
        let epoch = tx.commit().unwrap();
        assert_eq!(epoch, 1);
        registry
            .lock()
            .unwrap()
            .extend(owned.iter().flatten().map(|(id, _)| *id));
        log.lock().unwrap().insert(epoch, changes);
    }

    let writers_done = AtomicBool::new(false);
    let observations: Vec<Vec<Observation>> = std::thread::scope(|s| {
        let writers: Vec<_> = owned
            .into_iter()
            .enumerate()
            .map(|(w, mut nodes)| {
                let (rt, log, registry) = (&rt, &log, &registry);
                s.spawn(move || {
                    let mut rng = seeded(seed ^ ((w as u64) << 8));
                    let mut next_ver = 1u64;
                    for _ in 0..txns {
                        let policy = match mode {
                            Mode::Only(p) => p,
                            Mode::Mixed => POLICIES[rng.below(3) as usize],
                        };
                        let mut tx = rt.begin();
                        let mut changes = Vec::new();
                        let mut touched = BTreeSet::new();
                        let mut new_nodes: Vec<(NodeId, u64)> = Vec::new();
                        let mut retired = Vec::new();
                        for _ in 0..1 + rng.below(3) {
                            let free: Vec<usize> = (0..nodes.len())
                                .filter(|&i| !touched.contains(&nodes[i].0))
                                .collect();
                            let pick = (!free.is_empty())
                                .then(|| free[rng.below(free.len() as u64) as usize]);
                            let ver = ((w as u64) << 40) | next_ver;
                            next_ver += 1;
                            match (rng.below(10), pick) {
                                (0..=4, Some(i)) => {
                                    let id = nodes[i].0;
                                    tx.write(id, &node_bytes(id, ver)).unwrap();
                                    touched.insert(id);
                                    nodes[i].1 = ver;
                                    changes.push(Change::Put(id, ver));
                                }
                                (7, Some(i)) if nodes.len() > 3 => {
                                    let id = nodes[i].0;
                                    tx.retire(id).unwrap();
                                    touched.insert(id);
                                    retired.push(id);
                                    changes.push(Change::Retire(id));
                                }
                                (8 | 9, Some(i)) => {
                                    let target = (rng.below(4) > 0).then_some(nodes[i].0);
                                    match target {
                                        Some(id) => tx.set_root(&root_name(w), id).unwrap(),
                                        None => tx.remove_root(&root_name(w)).unwrap(),
                                    }
                                    changes.retain(|c| !matches!(c, Change::Root(..)));
                                    changes.push(Change::Root(w, target));
                                }
                                _ => {
                                    let id = tx.alloc(w as u8, b"placeholder").unwrap();
                                    tx.write(id, &node_bytes(id, ver)).unwrap();
                                    touched.insert(id);
                                    new_nodes.push((id, ver));
                                    changes.push(Change::Put(id, ver));
                                }
                            }
                        }
                        // A root change naming a node this transaction retires is kept as is:
                        // roots are names, not references.
                        let epoch = tx
                            .commit_with(policy)
                            .unwrap_or_else(|e| panic!("writer {w}: {e}"));
                        nodes.retain(|(id, _)| !retired.contains(id));
                        nodes.extend(new_nodes.iter().copied());
                        registry
                            .lock()
                            .unwrap()
                            .extend(new_nodes.iter().map(|(id, _)| *id));
                        let dup = log.lock().unwrap().insert(epoch, changes);
                        assert!(dup.is_none(), "epoch {epoch} returned to two commits");
                        // Let readers in between commits (EVENTUAL commits take no I/O).
                        std::thread::yield_now();
                    }
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (rt, registry, done) = (&rt, &registry, &writers_done);
                s.spawn(move || {
                    let mut out = Vec::new();
                    let mut last_epoch = 0;
                    let mut held = None;
                    let read_all = |snap: &vellum::runtime::Snapshot<'_>| {
                        let ids = registry.lock().unwrap().clone();
                        let reads = ids
                            .into_iter()
                            .map(|id| {
                                let obs = match snap.read(id) {
                                    Ok(Some(bytes)) => Obs::Live(version_of(id, &bytes)),
                                    Ok(None) => Obs::Absent,
                                    Err(Error::NodeNotFound { .. }) => Obs::Stale,
                                    Err(e) => panic!("reader {r}: {id}: {e}"),
                                };
                                (id, obs)
                            })
                            .collect();
                        Observation {
                            epoch: snap.epoch(),
                            reads,
                            roots: (0..WRITERS).map(|w| snap.root(&root_name(w))).collect(),
                        }
                    };
                    loop {
                        let finished = done.load(Ordering::Acquire);
                        let snap = rt.snapshot();
                        assert!(snap.epoch() >= last_epoch, "reader {r}: epoch went back");
                        last_epoch = snap.epoch();
                        out.push(read_all(&snap));
                        // Every fourth snapshot is kept for a while and read again later, after
                        // more commits superseded what it sees.
                        if out.len() % 4 == 0 {
                            if let Some(old) = held.take() {
                                out.push(read_all(&old));
                            }
                            held = Some(snap);
                        }
                        if finished {
                            break;
                        }
                        std::thread::yield_now();
                    }
                    if let Some(old) = held.take() {
                        out.push(read_all(&old));
                    }
                    out
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        writers_done.store(true, Ordering::Release);
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });

    // Every epoch from 1 to the last belongs to exactly one commit.
    let log = log.into_inner().unwrap();
    let last = WRITERS as u64 * txns + 1;
    assert_eq!(
        log.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "{ctx}: commit epochs"
    );
    let mut all: Vec<Observation> = observations.into_iter().flatten().collect();
    all.sort_by_key(|o| o.epoch);
    let mut state = ModelState {
        roots: vec![None; WRITERS],
        ..ModelState::default()
    };
    let mut epoch = 0;
    let mut checked = 0;
    for o in &all {
        while epoch < o.epoch {
            epoch += 1;
            state.apply(&log[&epoch]);
        }
        state.check(o, &ctx);
        checked += o.reads.len();
    }
    while epoch < last {
        epoch += 1;
        state.apply(&log[&epoch]);
    }
    assert!(
        all.len() >= READERS,
        "{ctx}: readers observed {}",
        all.len()
    );
    assert!(checked > 0);

    // The final state, before and after a reopen.
    let check_final = |rt: &DurableRuntime, when: &str| {
        assert_eq!(rt.visible_epoch(), last, "{ctx} {when}");
        let mut live: Vec<NodeId> = state.live.keys().copied().collect();
        live.sort_unstable();
        assert_eq!(rt.node_ids(), live, "{ctx} {when}: live nodes");
        for (id, ver) in &state.live {
            assert!(
                rt.read(*id).unwrap() == node_bytes(*id, *ver),
                "{ctx} {when}: {id}"
            );
        }
        for (w, root) in state.roots.iter().enumerate() {
            assert_eq!(rt.root(&root_name(w)), *root, "{ctx} {when}: root {w}");
        }
        let (nodes, _) = rt.verify().unwrap();
        assert_eq!(nodes, live.len() as u64, "{ctx} {when}");
    };
    check_final(&rt, "before reopen");
    rt.close().unwrap();
    let rt = open(dir.path(), options(policy));
    check_final(&rt, "after reopen");
}

#[test]
fn snapshots_see_exactly_their_epoch_under_writers_strict() {
    snapshots_under_writers(Mode::Only(CommitPolicy::Strict), 1);
}

#[test]
fn snapshots_see_exactly_their_epoch_under_writers_balanced() {
    snapshots_under_writers(Mode::Only(CommitPolicy::Balanced), 2);
}

#[test]
fn snapshots_see_exactly_their_epoch_under_writers_eventual() {
    snapshots_under_writers(Mode::Only(CommitPolicy::Eventual), 3);
}

#[test]
fn snapshots_see_exactly_their_epoch_under_writers_mixed_policies() {
    snapshots_under_writers(Mode::Mixed, 4);
}

// ---------------------------------------------------------------------------------------------
// A snapshot held across many commits
// ---------------------------------------------------------------------------------------------

fn held_snapshot(policy: CommitPolicy) {
    let ctx = format!("{policy:?}");
    let dir = tempfile::tempdir().unwrap();
    let mut o = options(policy);
    // No background flush: reclamation happens only in the calls below, so counts are exact.
    o.eventual_flush_interval = Duration::from_secs(60);
    let rt = open(dir.path(), o);

    let mut tx = rt.begin();
    let mut live: Vec<(NodeId, u64)> = Vec::new();
    for _ in 0..16 {
        let id = tx.alloc(3, b"placeholder").unwrap();
        tx.write(id, &node_bytes(id, 0)).unwrap();
        live.push((id, 0));
    }
    let e0 = tx.commit().unwrap();
    rt.sync().unwrap();
    let at_e0: Vec<(NodeId, Vec<u8>)> = live
        .iter()
        .map(|&(id, ver)| (id, node_bytes(id, ver)))
        .collect();
    let snap = rt.snapshot();
    assert_eq!(snap.epoch(), e0);
    let reclaimed0 = rt.stats().slots_reclaimed;
    assert_eq!(reclaimed0, 0, "{ctx}: nothing superseded yet");

    let check_snapshot = |when: &str| {
        for (id, bytes) in &at_e0 {
            let got = snap
                .read(*id)
                .unwrap_or_else(|e| panic!("{ctx} {when}: {id}: {e}"));
            assert!(
                got.as_ref() == Some(bytes),
                "{ctx} {when}: snapshot@{e0} read of {id} is not its epoch's bytes"
            );
        }
    };

    let mut rng = seeded(policy as u64 + 77);
    let mut updates = 0u64;
    let mut retires = 0u64;
    let mut ver = 1;
    let mut retired: Vec<NodeId> = Vec::new();
    for i in 0..200u64 {
        let mut tx = rt.begin();
        if i % 10 == 9 {
            // Retire one node and allocate a replacement.
            let k = rng.below(live.len() as u64) as usize;
            let (id, _) = live.swap_remove(k);
            tx.retire(id).unwrap();
            retired.push(id);
            retires += 1;
            let new = tx.alloc(3, b"placeholder").unwrap();
            tx.write(new, &node_bytes(new, ver)).unwrap();
            live.push((new, ver));
            ver += 1;
        } else {
            let first = rng.below(live.len() as u64) as usize;
            let mut picks = vec![first];
            if rng.below(2) == 0 {
                picks.push((first + 1) % live.len());
            }
            for k in picks {
                let id = live[k].0;
                tx.write(id, &node_bytes(id, ver)).unwrap();
                live[k].1 = ver;
                ver += 1;
                updates += 1;
            }
        }
        assert_eq!(tx.commit().unwrap(), e0 + 1 + i, "{ctx}");
        if i % 50 == 49 {
            check_snapshot(&format!("after {} commits", i + 1));
            assert_eq!(
                rt.stats().slots_reclaimed,
                reclaimed0,
                "{ctx}: nothing the snapshot may read is reclaimed while it is held"
            );
            rt.verify().unwrap();
        }
    }
    rt.sync().unwrap();
    check_snapshot("after 200 commits and a sync");
    assert_eq!(rt.stats().slots_reclaimed, reclaimed0, "{ctx}");
    assert_eq!(rt.stats().snapshots_open, 1);
    for id in &retired {
        assert!(
            matches!(rt.read(*id), Err(Error::NodeNotFound { .. })),
            "{ctx}: retired {id} is not readable at the newest epoch"
        );
    }

    drop(snap);
    assert_eq!(rt.stats().snapshots_open, 0);
    rt.sync().unwrap();
    // Every superseded version (one per update) and every retired node's last version is freed.
    assert_eq!(
        rt.stats().slots_reclaimed - reclaimed0,
        updates + retires,
        "{ctx}: slots reclaimed once the snapshot dropped ({updates} updates, {retires} retires)"
    );
    let (nodes, _) = rt.verify().unwrap();
    assert_eq!(nodes, live.len() as u64);
    for (id, ver) in &live {
        assert!(
            rt.read(*id).unwrap() == node_bytes(*id, *ver),
            "{ctx}: {id}"
        );
    }
    for id in &retired {
        assert!(
            matches!(rt.snapshot().read(*id), Err(Error::NodeNotFound { .. })),
            "{ctx}: a reclaimed node's id is stale"
        );
    }
}

#[test]
fn a_held_snapshot_keeps_its_epoch_then_space_is_reclaimed_strict() {
    held_snapshot(CommitPolicy::Strict);
}

#[test]
fn a_held_snapshot_keeps_its_epoch_then_space_is_reclaimed_balanced() {
    held_snapshot(CommitPolicy::Balanced);
}

#[test]
fn a_held_snapshot_keeps_its_epoch_then_space_is_reclaimed_eventual() {
    held_snapshot(CommitPolicy::Eventual);
}

/// A flush is a commit group: it costs at most one data sync and one log sync however many
/// commits it carries, and every STRICT/BALANCED commit is acknowledged by exactly one flush.
fn flushes_group(policy: CommitPolicy, bytes: usize) {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path(), options(policy));
    let before = rt.stats();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let rt = &rt;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let mut tx = rt.begin();
                    tx.alloc(1, &vec![(t * 64 + i) as u8; bytes]).unwrap();
                    tx.commit_with(policy).unwrap();
                }
            });
        }
    });
    let after = rt.stats();
    let commits = after.commits - before.commits;
    let flushes = after.flushes - before.flushes;
    let log_syncs = after.log_syncs - before.log_syncs;
    let data_syncs = after.data_syncs - before.data_syncs;
    assert_eq!(commits, THREADS * PER_THREAD);
    assert!(flushes >= 1 && flushes <= commits, "{flushes} flushes");
    assert_eq!(log_syncs, flushes, "one log sync per flush");
    assert!(
        data_syncs <= flushes,
        "{data_syncs} data syncs, {flushes} flushes"
    );
    if policy == CommitPolicy::Strict {
        // Every STRICT flush carries node bytes to make durable.
        assert_eq!(data_syncs, flushes);
    } else {
        // BALANCED nodes this small travel in the record: no data sync at all.
        assert_eq!(data_syncs, 0);
    }
}

#[test]
fn a_strict_flush_costs_one_data_sync_and_one_log_sync() {
    flushes_group(CommitPolicy::Strict, 100);
}

#[test]
fn a_balanced_flush_of_small_nodes_costs_one_log_sync() {
    flushes_group(CommitPolicy::Balanced, 100);
}
