//! Snapshots that own a share of the runtime (`DurableRuntime::snapshot_owned`,
//! `Snapshot::into_owned`), with exact outcomes:
//! - one kept across many commits sees exactly its epoch's bytes and roots, and outlives the
//!   runtime handle (the store stays locked until it drops);
//! - a version superseded while one holds it is reclaimed exactly when it drops;
//! - many threads taking and dropping snapshots (borrowed, owned, converted) and reading while a
//!   writer commits and reclamation runs: every read returns exactly the bytes of its snapshot's
//!   epoch (node content is a function of the epoch), every root is the one of its epoch, and at
//!   the end no snapshot is open and every superseded slot is reclaimed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vellum::Error;
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, OwnedSnapshot, RuntimeOptions, Snapshot};

fn options(flush_interval: Duration) -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: flush_interval,
        checkpoint_log_bytes: 1 << 40,
        ..RuntimeOptions::default()
    };
    o.compaction.interval = None;
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 64 << 20;
    o.data.alloc.file_bytes_max = 64 << 20;
    o
}

/// The bytes node `node` holds at commit epoch `epoch`: a function of both, of a length that
/// varies with them too.
fn content(epoch: u64, node: usize) -> Vec<u8> {
    let len = 24 + (epoch as usize * 7 + node * 13) % 200;
    let mut b = Vec::with_capacity(len);
    b.extend_from_slice(&epoch.to_le_bytes());
    b.extend_from_slice(&(node as u64).to_le_bytes());
    b.extend((16..len).map(|i| (epoch as usize ^ node.wrapping_mul(31) ^ i) as u8));
    b
}

/// The epoch `bytes` (written by [`content`]) were written at.
fn epoch_of(bytes: &[u8]) -> u64 {
    let mut e = [0u8; 8];
    e.copy_from_slice(&bytes[..8]);
    u64::from_le_bytes(e)
}

/// The node the root "by-epoch" names at epoch `epoch`.
fn rooted(ids: &[NodeId], epoch: u64) -> NodeId {
    ids[epoch as usize % ids.len()]
}

/// Allocates `nodes` nodes holding [`content`] of the epoch they commit at.
fn populate(rt: &DurableRuntime, nodes: usize) -> (Vec<NodeId>, u64) {
    let epoch = rt.visible_epoch() + 1;
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..nodes)
        .map(|n| tx.alloc(0, &content(epoch, n)).unwrap())
        .collect();
    tx.set_root("by-epoch", rooted(&ids, epoch)).unwrap();
    assert_eq!(tx.commit_with(CommitPolicy::Strict).unwrap(), epoch);
    (ids, epoch)
}

/// Rewrites every node with [`content`] of the next epoch and points the root at
/// [`rooted`]; returns that epoch (the only writer, so it is predictable).
fn rewrite_all(rt: &DurableRuntime, ids: &[NodeId], policy: CommitPolicy) -> u64 {
    let epoch = rt.visible_epoch() + 1;
    let mut tx = rt.begin();
    for (n, id) in ids.iter().enumerate() {
        tx.write(*id, &content(epoch, n)).unwrap();
    }
    tx.set_root("by-epoch", rooted(ids, epoch)).unwrap();
    assert_eq!(tx.commit_with(policy).unwrap(), epoch, "one writer");
    epoch
}

/// Every node and the root exactly as of `snap`'s epoch; returns the reads done.
fn check_snapshot(snap: &Snapshot<'_>, ids: &[NodeId], ctx: &str) -> u64 {
    let epoch = snap.epoch();
    assert_eq!(
        snap.root("by-epoch"),
        Some(rooted(ids, epoch)),
        "{ctx}: root at {epoch}"
    );
    let reader = snap.reader();
    for (n, id) in ids.iter().enumerate() {
        let want = content(epoch, n);
        let got = snap.read(*id).unwrap();
        assert_eq!(
            got.as_deref(),
            Some(&want[..]),
            "{ctx}: node {n} at {epoch}"
        );
        let batch = reader.get(*id).unwrap();
        assert_eq!(
            batch,
            Some(&want[..]),
            "{ctx}: batch read of {n} at {epoch}"
        );
    }
    2 * ids.len() as u64
}

#[test]
fn an_owned_snapshot_sees_its_epoch_across_many_commits_and_outlives_the_handle() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), options(Duration::from_secs(60))).unwrap());
    let (ids, first) = populate(&rt, 8);
    let held: OwnedSnapshot = rt.snapshot_owned();
    assert_eq!(held.epoch(), first);
    // A borrowed snapshot made owned keeps its epoch too.
    let converted = rt.snapshot().into_owned();
    let mut last = first;
    for i in 0..200 {
        let policy = [
            CommitPolicy::Strict,
            CommitPolicy::Balanced,
            CommitPolicy::Eventual,
        ][i % 3];
        last = rewrite_all(&rt, &ids, policy);
    }
    assert_eq!(last, first + 200);
    check_snapshot(&held, &ids, "held across 200 commits");
    check_snapshot(&converted, &ids, "converted");
    check_snapshot(&rt.snapshot(), &ids, "newest");
    assert_eq!(rt.stats().snapshots_open, 2);

    // The handle goes; the snapshot still reads its epoch, and the store stays locked.
    let rt = Arc::into_inner(rt).unwrap();
    rt.close().unwrap();
    check_snapshot(&held, &ids, "after the handle closed");
    let locked = DurableRuntime::open(dir.path(), options(Duration::from_secs(60)));
    assert!(matches!(locked, Err(Error::Locked { .. })), "{locked:?}");
    drop(converted);
    drop(held);
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_secs(60))).unwrap();
    assert_eq!(rt.visible_epoch(), last);
    check_snapshot(&rt.snapshot(), &ids, "reopened");
}

#[test]
fn a_version_an_owned_snapshot_holds_is_reclaimed_exactly_when_it_drops() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_secs(60))).unwrap();
    let (ids, first) = populate(&rt, 3);
    rt.sync().unwrap();
    assert_eq!(rt.stats().slots_reclaimed, 0);
    let held = rt.snapshot_owned();

    // Five rewrites of 3 nodes supersede 15 versions; the held snapshot reads the first 3, and
    // every later one is visible at an epoch after it, so reclamation (bounded by the oldest
    // pinned epoch) frees none of them.
    for _ in 0..5 {
        rewrite_all(&rt, &ids, CommitPolicy::Strict);
    }
    rt.sync().unwrap();
    assert_eq!(
        rt.stats().slots_reclaimed,
        0,
        "the held epoch bounds reclamation"
    );
    assert_eq!(held.epoch(), first);
    check_snapshot(&held, &ids, "held");
    assert_eq!(rt.stats().snapshots_open, 1);
    drop(held);
    assert_eq!(rt.stats().snapshots_open, 0);
    rt.sync().unwrap();
    assert_eq!(
        rt.stats().slots_reclaimed,
        15,
        "every superseded version once it dropped"
    );
    rt.verify().unwrap();
}

/// How a reader thread takes its snapshots, in turn.
const KINDS: usize = 3;

#[test]
fn concurrent_snapshots_read_exactly_their_epoch_while_a_writer_commits() {
    const READERS: u64 = 4;
    const NODES: usize = 16;
    const COMMITS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    // A short flush interval: the flusher flushes and reclaims while the readers run.
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_millis(2))).unwrap();
    let (ids, first) = populate(&rt, NODES);
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let snapshots = AtomicU64::new(0);
    let mut held_epochs = Vec::new();
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|t| {
                let (rt, ids, done, reads, snapshots) = (&rt, &ids, &done, &reads, &snapshots);
                s.spawn(move || {
                    // One owned snapshot kept for the whole run, checked again at the end.
                    let kept = rt.snapshot_owned();
                    let mut round = t as usize;
                    while !done.load(Ordering::Acquire) {
                        let snap: Snapshot<'_> = match round % KINDS {
                            0 => rt.snapshot(),
                            1 => rt.snapshot_owned(),
                            _ => rt.snapshot().into_owned(),
                        };
                        let n = check_snapshot(&snap, ids, &format!("reader {t}"));
                        drop(snap);
                        // A read at the newest epoch: bytes of one epoch, within the bounds.
                        let node = round % NODES;
                        let before = rt.visible_epoch();
                        let bytes = rt.read(ids[node]).unwrap();
                        let after = rt.visible_epoch();
                        let at = epoch_of(&bytes);
                        assert!(
                            (before..=after).contains(&at),
                            "{before} <= {at} <= {after}"
                        );
                        assert_eq!(bytes, content(at, node), "read of {node} at {at}");
                        reads.fetch_add(n + 1, Ordering::Relaxed);
                        snapshots.fetch_add(1, Ordering::Relaxed);
                        round += 1;
                    }
                    let n = check_snapshot(&kept, ids, &format!("reader {t} kept"));
                    reads.fetch_add(n, Ordering::Relaxed);
                    kept.epoch()
                })
            })
            .collect();
        let policies = [
            CommitPolicy::Eventual,
            CommitPolicy::Balanced,
            CommitPolicy::Strict,
        ];
        for i in 0..COMMITS {
            let epoch = rewrite_all(&rt, &ids, policies[i as usize % policies.len()]);
            assert_eq!(epoch, first + 1 + i);
        }
        done.store(true, Ordering::Release);
        for r in readers {
            held_epochs.push(r.join().unwrap());
        }
    });
    assert!(
        held_epochs
            .iter()
            .all(|e| (first..=first + COMMITS).contains(e))
    );
    let snapshots = snapshots.load(Ordering::Relaxed);
    assert!(snapshots > 0, "the readers took snapshots");
    // Per snapshot: two reads of every node and one newest read; per reader, its kept one.
    assert_eq!(
        reads.load(Ordering::Relaxed),
        snapshots * (2 * NODES as u64 + 1) + READERS * 2 * NODES as u64
    );
    assert_eq!(rt.stats().snapshots_open, 0);

    // Every commit superseded one version of each node: all are freed once nothing is pinned
    // and everything is durable. The flusher may hold the reclamation queue when `sync` tries
    // it, so look until the count is reached (it must never pass it).
    let superseded = COMMITS * NODES as u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        rt.sync().unwrap();
        let reclaimed = rt.stats().slots_reclaimed;
        assert!(reclaimed <= superseded, "{reclaimed} > {superseded}");
        if reclaimed == superseded {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{reclaimed} of {superseded} reclaimed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(rt.verify().unwrap().0, NODES as u64);
    check_snapshot(&rt.snapshot(), &ids, "at the end");
    drop(rt);
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_millis(2))).unwrap();
    assert_eq!(rt.visible_epoch(), first + COMMITS);
    check_snapshot(&rt.snapshot(), &ids, "reopened");
}
