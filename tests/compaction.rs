//! Compaction: live nodes move out of sparse segments with their NodeIds and bytes unchanged,
//! the space goes back to the filesystem, concurrent writers and snapshot readers lose nothing,
//! and a crash at any storage operation of a pass loses nothing either.
//!
//! `VELLUM_COMPACT_CRASH_STRIDE` (default 2) picks every n-th crash point of the sweep;
//! `VELLUM_COMPACT_CRASH_STRIDE=1` runs all of them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vellum::io::{CrashMode, FaultStorage};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime, RuntimeOptions};

mod common;

use common::{Rng, env_u64};

/// 128-byte nodes fill class-3 slots exactly (8192 per 1 MiB segment), so live bytes and the
/// slots they use are the same number.
const NODE_BYTES: usize = 128;

fn options() -> RuntimeOptions {
    let mut o = common::small_deterministic_options();
    o.data.mapped_bytes_max = 64 << 20;
    o
}

fn node_bytes(id: NodeId, version: u64) -> Vec<u8> {
    let mut b = vec![0u8; NODE_BYTES];
    b[..8].copy_from_slice(&id.raw().to_le_bytes());
    b[8..16].copy_from_slice(&version.to_le_bytes());
    for (i, x) in b[16..].iter_mut().enumerate() {
        *x = (id.raw() as u8) ^ (version as u8) ^ i as u8;
    }
    b
}

/// Commits `n` nodes in batches, then retires all but every tenth; returns the survivors.
fn fill_and_thin(rt: &DurableRuntime, n: u64) -> BTreeMap<NodeId, Vec<u8>> {
    let mut ids = Vec::new();
    for chunk in 0..n.div_ceil(1000) {
        let mut tx = rt.begin();
        for _ in 0..1000.min(n - chunk * 1000) {
            let id = tx.alloc(1, &[0u8; NODE_BYTES]).unwrap();
            tx.write(id, &node_bytes(id, 0)).unwrap();
            ids.push(id);
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
    }
    let mut live = BTreeMap::new();
    for chunk in ids.chunks(1000) {
        let mut tx = rt.begin();
        for (i, id) in chunk.iter().enumerate() {
            if i % 10 == 0 {
                live.insert(*id, node_bytes(*id, 0));
            } else {
                tx.retire(*id).unwrap();
            }
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
    }
    rt.sync().unwrap();
    live
}

fn assert_contents(rt: &DurableRuntime, live: &BTreeMap<NodeId, Vec<u8>>, ctx: &str) {
    let snap = rt.snapshot();
    let reader = snap.reader();
    for (id, bytes) in live {
        assert_eq!(
            reader.get(*id).unwrap(),
            Some(&bytes[..]),
            "{ctx}: node {id}"
        );
    }
    let (nodes, _) = rt.verify().unwrap();
    assert_eq!(nodes, live.len() as u64, "{ctx}: live node count");
}

#[test]
fn a_full_compaction_moves_every_live_node_and_returns_the_space() {
    const NODES: u64 = 80_000;
    let dir = tempfile::tempdir().unwrap();
    let live;
    {
        let rt = DurableRuntime::open(dir.path(), options()).unwrap();
        live = fill_and_thin(&rt, NODES);
        assert_eq!(live.len() as u64, NODES / 10);
        let before = rt.data_allocated_bytes().unwrap();
        assert!(before >= NODES * NODE_BYTES as u64, "{before}");

        // 80 000 nodes fill ten segments (8192 slots each) and each keeps about a tenth of
        // them: the 8000 live nodes fit one segment, so the densest stays and the other nine
        // are victims whose every node moves into it.
        let usage = rt.segment_usage(3);
        assert_eq!(usage.len(), 10);
        let densest = usage.iter().map(|u| u64::from(u.used_slots)).max().unwrap();
        let to_move = NODES / 10 - densest;
        let mut seen = Vec::new();
        let report = rt
            .compact_with(&CompactionOptions::full(), &mut |p| seen.push(p))
            .unwrap();
        assert_eq!(report.victims, 9);
        assert_eq!(report.nodes_moved, to_move);
        assert_eq!(report.bytes_moved, to_move * NODE_BYTES as u64);
        assert_eq!(report.nodes_skipped, 0);
        assert_eq!(report.segments_returned, 9);
        let last = seen.last().copied().unwrap();
        assert_eq!((last.nodes_total, last.nodes_done), (to_move, to_move));
        let usage = rt.segment_usage(3);
        let used: Vec<u32> = usage.iter().map(|u| u.used_slots).collect();
        assert_eq!(used.iter().filter(|&&u| u > 0).count(), 1, "{used:?}");

        let live_bytes = live.len() as u64 * NODE_BYTES as u64;
        let after = rt.data_allocated_bytes().unwrap();
        assert!(
            after * 10 <= live_bytes * 13,
            "allocated {after} bytes for {live_bytes} live bytes"
        );
        assert_contents(&rt, &live, "after compaction");
        let stats = rt.stats();
        assert_eq!(stats.nodes_moved, to_move);
        assert_eq!(stats.compactions, 1);
        rt.close().unwrap();
    }
    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    assert_contents(&rt, &live, "after reopening");
    // A second pass finds nothing worth moving.
    let again = rt
        .compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    assert_eq!((again.victims, again.nodes_moved), (0, 0));
}

#[test]
fn a_move_does_not_conflict_with_a_transaction_that_read_or_wrote_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    let live = fill_and_thin(&rt, 20_000);
    let mut it = live.keys();
    let (read_id, written_id) = (*it.next().unwrap(), *it.next().unwrap());

    let mut tx = rt.begin();
    assert_eq!(tx.read(read_id).unwrap(), live[&read_id]);
    tx.write(written_id, &node_bytes(written_id, 7)).unwrap();
    let report = rt
        .compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    assert!(report.nodes_moved > 0);
    // The transaction's read and write were based on versions the compaction replaced with
    // identical bytes: it commits, and its write wins.
    let third = *it.next().unwrap();
    tx.write(third, &node_bytes(third, 9)).unwrap();
    tx.commit().unwrap();
    let mut expect = live.clone();
    expect.insert(written_id, node_bytes(written_id, 7));
    expect.insert(third, node_bytes(third, 9));
    assert_contents(&rt, &expect, "after the transaction");
}

#[test]
fn compaction_under_concurrent_writers_and_snapshot_readers_preserves_everything() {
    const WRITERS: usize = 2;
    const UPDATES_PER_WRITER: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    let live = fill_and_thin(&rt, 30_000);
    let ids: Vec<NodeId> = live.keys().copied().collect();
    let stop = AtomicBool::new(false);
    let finals: Vec<BTreeMap<NodeId, u64>> = std::thread::scope(|s| {
        // A reader: every snapshot sees self-consistent nodes whose versions never go back.
        s.spawn(|| {
            let mut last: BTreeMap<NodeId, u64> = BTreeMap::new();
            while !stop.load(Ordering::Acquire) {
                let snap = rt.snapshot();
                let reader = snap.reader();
                for id in ids.iter().step_by(17) {
                    let bytes = reader.get(*id).unwrap().unwrap();
                    let version = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
                    assert_eq!(bytes, &node_bytes(*id, version)[..], "node {id}");
                    let prev = last.insert(*id, version).unwrap_or(0);
                    assert!(
                        version >= prev,
                        "node {id} went back from {prev} to {version}"
                    );
                }
            }
        });
        // The compactor: passes until the writers finish.
        s.spawn(|| {
            let options = CompactionOptions {
                dead_percent_min: 1,
                ..CompactionOptions::full()
            };
            while !stop.load(Ordering::Acquire) {
                rt.compact_with(&options, &mut |_| {}).unwrap();
            }
        });
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (rt, ids) = (&rt, &ids);
                s.spawn(move || {
                    // Each writer owns every WRITERS-th node, so its updates never conflict
                    // with the other writer's; moves never conflict with anyone.
                    let mine: Vec<NodeId> = ids.iter().skip(w).step_by(WRITERS).copied().collect();
                    let mut rng = Rng::new(w as u64 + 11);
                    let mut versions = BTreeMap::new();
                    for v in 1..=UPDATES_PER_WRITER {
                        let id = mine[rng.below(mine.len() as u64) as usize];
                        let mut tx = rt.begin();
                        tx.write(id, &node_bytes(id, v)).unwrap();
                        tx.commit().unwrap();
                        versions.insert(id, v);
                    }
                    versions
                })
            })
            .collect();
        let finals = writers.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Release);
        finals
    });
    let mut expect = live.clone();
    for versions in finals {
        for (id, v) in versions {
            expect.insert(id, node_bytes(id, v));
        }
    }
    assert_eq!(rt.stats().conflicts, 0, "moves never conflict with writers");
    assert!(rt.stats().compactions >= 1);
    assert_contents(&rt, &expect, "after concurrent compaction");
}

const DIR: &str = "/store";

fn open_fault(fs: &FaultStorage) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options())
}

/// A crash at every k-th storage operation of a compaction pass: after recovery every node is
/// there with its exact bytes, no two share a slot (verify), and a second pass completes.
#[test]
fn a_crash_at_any_point_of_a_compaction_loses_nothing() {
    let stride = env_u64("VELLUM_COMPACT_CRASH_STRIDE", 2).max(1);
    let base = common::fault_storage(5, DIR);
    let live = {
        let rt = open_fault(&base).unwrap();
        let live = fill_and_thin(&rt, 12_000);
        rt.close().unwrap();
        live
    };
    // How many storage operations a whole pass takes.
    let ops = {
        let fs = base.crash_with(CrashMode::KeepUnsynced);
        let rt = open_fault(&fs).unwrap();
        let start = fs.op_count();
        let options = CompactionOptions {
            batch_nodes: 50,
            ..CompactionOptions::full()
        };
        let report = rt.compact_with(&options, &mut |_| {}).unwrap();
        assert!(report.nodes_moved > 0);
        fs.op_count() - start
    };
    assert!(ops > 20, "a pass takes {ops} storage operations");
    let modes = [
        CrashMode::DropUnsynced,
        CrashMode::KeepUnsynced,
        CrashMode::Seeded(3),
    ];
    let mut crashes = 0;
    for k in (1..=ops).step_by(stride as usize) {
        let mode = modes[(k % 3) as usize];
        let fs = base.crash_with(CrashMode::KeepUnsynced);
        let rt = open_fault(&fs).unwrap();
        fs.crash_after(k);
        let options = CompactionOptions {
            batch_nodes: 50,
            ..CompactionOptions::full()
        };
        let outcome = rt.compact_with(&options, &mut |_| {});
        drop(rt);
        let after = fs.crash_with(mode);
        if outcome.is_err() {
            crashes += 1;
        }
        let rt = open_fault(&after).unwrap_or_else(|e| panic!("k={k} {mode:?}: reopen: {e}"));
        assert_contents(&rt, &live, &format!("crash at op {k} ({mode:?})"));
        rt.compact_with(&CompactionOptions::full(), &mut |_| {})
            .unwrap_or_else(|e| panic!("k={k}: compaction after recovery: {e}"));
        assert_contents(&rt, &live, &format!("k={k}: compacted after recovery"));
        rt.close().unwrap();
        // The recovered and compacted store is clean to fsck, node bytes included.
        let report = vellum::inspect::fsck(&after, Path::new(DIR), &common::fsck_options())
            .unwrap_or_else(|e| panic!("k={k}: fsck: {e}"));
        let problems: Vec<_> = report.problems().collect();
        assert!(
            problems.is_empty(),
            "k={k} {mode:?}: fsck found {problems:?}"
        );
        assert!(report.is_clean(false), "k={k} {mode:?}");
    }
    assert!(crashes > 0, "the sweep crashed inside a pass");
}

#[test]
fn a_throttled_pass_moves_no_faster_than_its_rate() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    let live = fill_and_thin(&rt, 40_000);
    const RATE: u64 = 1 << 20;
    let options = CompactionOptions {
        batch_nodes: 100,
        bytes_per_sec_max: Some(RATE),
        ..CompactionOptions::full()
    };
    let started = std::time::Instant::now();
    let report = rt.compact_with(&options, &mut |_| {}).unwrap();
    let took = started.elapsed();
    // The first batch goes at once; every later one waits until the pass is back under the rate.
    let first_batch = 100 * NODE_BYTES as u64;
    let floor = (report.bytes_moved - first_batch) as f64 / RATE as f64;
    assert!(report.bytes_moved > 2 * first_batch, "{report:?}");
    assert!(
        took.as_secs_f64() >= floor,
        "moved {} bytes in {took:?}, faster than {RATE} B/s allows ({floor:.3} s)",
        report.bytes_moved
    );
    assert_contents(&rt, &live, "after a throttled pass");
}
