//! The runtime when storage fails or callers pass bad input, on `FaultStorage`, with exact
//! expected outcomes.
//!
//! - Poisoning: a failed sync (the log's, or the data files' before a STRICT record) fails its
//!   commit, poisons the runtime (every later write and commit returns `Poisoned`), keeps reads of
//!   committed nodes working; after a power loss the store holds exactly the state before the
//!   failed commit or exactly the state after it (`DropUnsynced`: before; `KeepUnsynced`: after).
//!   The failing operation is found by probing `fail_nth` offsets, not by counting by hand.
//!   EVENTUAL commits whose flush fails stay readable, and a power loss keeps a prefix of them.
//! - Full disk: a space budget is hit by data allocation or by log preallocation; the operation
//!   fails with `is_no_space()`, nothing of the transaction is visible, the runtime is not
//!   poisoned, and once the budget is lifted commits succeed and survive a power loss.
//! - Bad input: root names, a 65th root, stale and never-issued ids, oversized nodes, empty
//!   transactions, records larger than a log frame and invalid options are refused with the
//!   documented errors and leave the store unchanged (and openable).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vellum::io::{CrashMode, FaultStorage, Storage};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions, WriteTxn};
use vellum::{Error, IoOp};

const DIR: &str = "/store";

const POLICIES: [CommitPolicy; 3] = [
    CommitPolicy::Strict,
    CommitPolicy::Balanced,
    CommitPolicy::Eventual,
];

mod common;

fn options(policy: CommitPolicy) -> RuntimeOptions {
    let mut o = common::small_deterministic_options();
    o.policy = policy;
    o.data.mapped_bytes_max = 32 << 20;
    o
}

fn new_fs(seed: u64) -> FaultStorage {
    common::fault_storage(seed, DIR)
}

fn open_with(fs: &FaultStorage, o: RuntimeOptions) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), o)
}

fn open(fs: &FaultStorage, policy: CommitPolicy) -> DurableRuntime {
    open_with(fs, options(policy)).unwrap()
}

fn bytes(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(0x9e37_79b9) >> (i % 8 * 4)) as u8 ^ i as u8)
        .collect()
}

/// What the store should hold: live nodes with their bytes, and roots.
#[derive(Clone, Debug, Default, PartialEq)]
struct Model {
    epoch: u64,
    nodes: BTreeMap<NodeId, Vec<u8>>,
    roots: BTreeMap<String, NodeId>,
}

/// The root names the tests use (all of them are compared, set or not).
const ROOT_NAMES: [&str; 3] = ["main", "aux", "other"];

fn assert_state(rt: &DurableRuntime, m: &Model, ctx: &str) {
    assert_eq!(rt.visible_epoch(), m.epoch, "{ctx}: visible epoch");
    let ids: Vec<NodeId> = m.nodes.keys().copied().collect();
    assert_eq!(rt.node_ids(), ids, "{ctx}: live nodes");
    for (id, b) in &m.nodes {
        let got = rt
            .read(*id)
            .unwrap_or_else(|e| panic!("{ctx}: read {id}: {e}"));
        assert!(&got == b, "{ctx}: bytes of {id}");
    }
    for name in ROOT_NAMES {
        assert_eq!(
            rt.root(name),
            m.roots.get(name).copied(),
            "{ctx}: root {name}"
        );
    }
}

fn assert_recovered(rt: &DurableRuntime, m: &Model, ctx: &str) {
    assert_state(rt, m, ctx);
    let (nodes, _) = rt.verify().unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    assert_eq!(nodes, m.nodes.len() as u64, "{ctx}: verified nodes");
}

fn is_log(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "vlog")
}

// ---------------------------------------------------------------------------------------------
// Poisoning
// ---------------------------------------------------------------------------------------------

/// Three committed transactions: small and large nodes, an update and a root.
fn committed_prefix(rt: &DurableRuntime, policy: CommitPolicy) -> Model {
    let mut m = Model::default();
    let mut tx = rt.begin();
    for (k, len) in [(1, 100usize), (2, 6000), (3, 40)] {
        let b = bytes(k, len);
        m.nodes.insert(tx.alloc(1, &b).unwrap(), b);
    }
    let ids: Vec<NodeId> = m.nodes.keys().copied().collect();
    tx.set_root("main", ids[0]).unwrap();
    m.roots.insert("main".into(), ids[0]);
    m.epoch = tx.commit_with(policy).unwrap();
    let mut tx = rt.begin();
    let b = bytes(4, 7000);
    tx.write(ids[1], &b).unwrap();
    m.nodes.insert(ids[1], b);
    m.epoch = tx.commit_with(policy).unwrap();
    let mut tx = rt.begin();
    let b = bytes(5, 300);
    m.nodes.insert(tx.alloc(2, &b).unwrap(), b);
    m.epoch = tx.commit_with(policy).unwrap();
    rt.sync().unwrap();
    m
}

/// Stages a transaction touching everything: an update of a small and a large node, a retire, an
/// allocation and a root change. Returns it with the state its commit would make.
fn doomed<'rt>(rt: &'rt DurableRuntime, m: &Model) -> (WriteTxn<'rt>, Model) {
    let ids: Vec<NodeId> = m.nodes.keys().copied().collect();
    let mut next = m.clone();
    next.epoch += 1;
    let mut tx = rt.begin();
    let b = bytes(10, 120);
    tx.write(ids[0], &b).unwrap();
    next.nodes.insert(ids[0], b);
    let b = bytes(11, 9000);
    tx.write(ids[1], &b).unwrap();
    next.nodes.insert(ids[1], b);
    tx.retire(ids[2]).unwrap();
    next.nodes.remove(&ids[2]);
    let b = bytes(12, 50);
    let new = tx.alloc(3, &b).unwrap();
    next.nodes.insert(new, b);
    tx.set_root("aux", new).unwrap();
    next.roots.insert("aux".into(), new);
    (tx, next)
}

/// Which failed operation the tests want to see.
#[derive(Clone, Copy, Debug)]
enum Target {
    /// The log's `fdatasync` of the commit record.
    LogSync,
    /// The data files' sync (or directory sync) before a STRICT record.
    DataSync,
}

fn wanted(target: Target, e: &Error) -> bool {
    match (target, e) {
        (Target::LogSync, Error::Io { op, path, .. }) => *op == IoOp::SyncData && is_log(path),
        (Target::DataSync, Error::Io { op, path, .. }) => {
            matches!(op, IoOp::SyncData | IoOp::SyncDir) && !is_log(path)
        }
        _ => false,
    }
}

/// For k = 1, 2, …: builds the prefix on a fresh store, stages the doomed transaction and fails
/// the k-th storage operation of its commit, until the commit fails at the `target` operation;
/// then checks the poisoned runtime and what power losses leave.
fn poison_commit(policy: CommitPolicy, target: Target) {
    let ctx = format!("{policy:?} {target:?}");
    for k in 1..=64 {
        let fs = new_fs(k);
        let rt = open(&fs, policy);
        let m0 = committed_prefix(&rt, policy);
        let held = rt.snapshot();
        let stats0 = rt.stats();
        let (tx, m1) = doomed(&rt, &m0);
        fs.fail_nth(k);
        let err = match tx.commit_with(policy) {
            Ok(_) => panic!("{ctx}: no operation of the commit matched (tried 1..{k})"),
            Err(e) => e,
        };
        if !wanted(target, &err) {
            drop(held);
            continue;
        }
        let ctx = format!("{ctx} (operation {k} of the commit: {err})");
        assert!(rt.is_poisoned(), "{ctx}");

        // Every later write and commit is refused with `Poisoned`.
        let poisoned = |r: vellum::Result<()>, what: &str| {
            assert!(
                matches!(r, Err(Error::Poisoned { .. })),
                "{ctx}: {what} returned {r:?}"
            );
        };
        let ids: Vec<NodeId> = m0.nodes.keys().copied().collect();
        poisoned(rt.begin().alloc(0, b"x").map(drop), "alloc");
        poisoned(rt.begin().write(ids[0], b"x"), "write");
        poisoned(rt.begin().retire(ids[0]), "retire");
        for p in POLICIES {
            let mut tx = rt.begin();
            tx.set_root("other", ids[0]).unwrap();
            poisoned(tx.commit_with(p).map(drop), "a root-only commit");
        }
        poisoned(rt.sync().map(drop), "sync");
        poisoned(rt.checkpoint(), "checkpoint");
        assert!(rt.is_poisoned());

        // Reads of committed nodes go on, and see the state before the failed commit.
        assert_state(&rt, &m0, &format!("{ctx}: poisoned"));
        for (id, b) in &m0.nodes {
            assert_eq!(held.read(*id).unwrap().as_ref(), Some(b), "{ctx}: held");
        }
        let s = rt.stats();
        assert_eq!(
            s.commits, stats0.commits,
            "{ctx}: the failed commit is not counted"
        );
        drop(held);
        drop(rt);

        // A power loss leaves the old state or the new one, whole.
        let dropped = fs.crash_with(CrashMode::DropUnsynced);
        let kept = fs.crash_with(CrashMode::KeepUnsynced);
        let expect_kept = match target {
            Target::LogSync => &m1,
            Target::DataSync => &m0,
        };
        for (fs, expect, what) in [
            (dropped, &m0, "DropUnsynced"),
            (kept, expect_kept, "KeepUnsynced"),
        ] {
            let rt = open(&fs, policy);
            assert_recovered(&rt, expect, &format!("{ctx}: {what}"));
            let mut tx = rt.begin();
            tx.alloc(0, b"after recovery").unwrap();
            assert_eq!(tx.commit().unwrap(), expect.epoch + 1, "{ctx}: {what}");
        }
        for seed in 0..6 {
            let fs = fs.crash_with(CrashMode::Seeded(seed));
            let rt = open(&fs, policy);
            let epoch = rt.visible_epoch();
            let expect = if epoch == m0.epoch { &m0 } else { &m1 };
            assert_recovered(&rt, expect, &format!("{ctx}: seeded {seed}"));
        }
        return;
    }
    panic!("{ctx}: no storage operation of the commit failed as wanted");
}

#[test]
fn a_failed_log_sync_poisons_strict() {
    poison_commit(CommitPolicy::Strict, Target::LogSync);
}

#[test]
fn a_failed_log_sync_poisons_balanced() {
    poison_commit(CommitPolicy::Balanced, Target::LogSync);
}

#[test]
fn a_failed_data_sync_poisons_strict_before_the_record() {
    poison_commit(CommitPolicy::Strict, Target::DataSync);
}

/// EVENTUAL commits are acknowledged in memory; the sync that would make them durable fails.
/// They stay readable; a power loss keeps a prefix of them (none when unsynced state is dropped,
/// all when it is kept).
#[test]
fn a_failed_log_sync_of_eventual_commits_poisons() {
    let policy = CommitPolicy::Eventual;
    for k in 1..=64 {
        let fs = new_fs(k);
        let rt = open(&fs, policy);
        let m0 = committed_prefix(&rt, policy);
        let mut states = vec![m0.clone()];
        for round in 0..3u64 {
            let mut m = states.last().unwrap().clone();
            let ids: Vec<NodeId> = m.nodes.keys().copied().collect();
            let mut tx = rt.begin();
            let b = bytes(20 + round, if round == 1 { 5000 } else { 64 });
            tx.write(ids[0], &b).unwrap();
            m.nodes.insert(ids[0], b);
            let b = bytes(30 + round, 10);
            m.nodes.insert(tx.alloc(0, &b).unwrap(), b);
            m.epoch = tx.commit().unwrap();
            states.push(m);
        }
        let last = states.last().unwrap().clone();
        assert_state(&rt, &last, "eventual commits are visible at once");
        fs.fail_nth(k);
        let err = match rt.sync() {
            Ok(_) => panic!("no operation of the sync was the log sync (tried 1..{k})"),
            Err(e) => e,
        };
        if !wanted(Target::LogSync, &err) {
            continue;
        }
        let ctx = format!("eventual, operation {k} of the sync: {err}");
        assert!(rt.is_poisoned(), "{ctx}");
        let ids: Vec<NodeId> = last.nodes.keys().copied().collect();
        let mut tx = rt.begin();
        tx.set_root("other", ids[0]).unwrap();
        assert!(matches!(tx.commit(), Err(Error::Poisoned { .. })), "{ctx}");
        assert!(matches!(
            rt.begin().write(ids[0], b"x"),
            Err(Error::Poisoned { .. })
        ));
        assert!(matches!(rt.sync(), Err(Error::Poisoned { .. })), "{ctx}");
        // Acknowledged EVENTUAL commits stay readable in this process.
        assert_state(&rt, &last, &ctx);
        drop(rt);

        let rt = open(&fs.crash_with(CrashMode::DropUnsynced), policy);
        assert_recovered(&rt, &m0, &format!("{ctx}: DropUnsynced"));
        drop(rt);
        let rt = open(&fs.crash_with(CrashMode::KeepUnsynced), policy);
        assert_recovered(&rt, &last, &format!("{ctx}: KeepUnsynced"));
        drop(rt);
        for seed in 0..6 {
            let rt = open(&fs.crash_with(CrashMode::Seeded(seed)), policy);
            let epoch = rt.visible_epoch();
            let at = states
                .iter()
                .find(|s| s.epoch == epoch)
                .unwrap_or_else(|| panic!("{ctx}: seeded {seed}: epoch {epoch} unknown"));
            assert_recovered(&rt, at, &format!("{ctx}: seeded {seed}"));
        }
        return;
    }
    panic!("no storage operation of the sync failed as wanted");
}

/// `close()` promises to flush EVENTUAL commits; on a poisoned runtime it cannot, and must say so
/// rather than return `Ok`.
#[test]
fn closing_a_poisoned_runtime_with_unflushed_commits_reports_an_error() {
    let fs = new_fs(4);
    let rt = open(&fs, CommitPolicy::Eventual);
    let m0 = committed_prefix(&rt, CommitPolicy::Eventual);
    let ids: Vec<NodeId> = m0.nodes.keys().copied().collect();
    let mut tx = rt.begin();
    tx.write(ids[0], b"acknowledged, not yet durable").unwrap();
    tx.commit().unwrap();
    // Every storage operation from now on fails: the flush on close cannot happen.
    fs.crash_after(0);
    assert!(rt.sync().is_err());
    assert!(rt.is_poisoned());
    let closed = rt.close();
    assert!(
        closed.is_err(),
        "close() of a poisoned runtime holding an unflushed EVENTUAL commit returned Ok"
    );
}

/// A process crash (`crash_after` then `clear_faults`: the page cache survives) in the middle of a
/// BALANCED commit: the record's write fails, which poisons; a new process recovers the old state.
#[test]
fn a_failed_log_write_poisons_and_a_restart_recovers_the_old_state() {
    let fs = new_fs(9);
    let rt = open(&fs, CommitPolicy::Balanced);
    let m0 = committed_prefix(&rt, CommitPolicy::Balanced);
    let (tx, _) = doomed(&rt, &m0);
    fs.crash_after(0);
    let err = tx.commit().unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(rt.is_poisoned());
    assert_state(&rt, &m0, "after the failed write");
    fs.clear_faults();
    drop(rt);
    let rt = open(&fs, CommitPolicy::Balanced);
    assert_recovered(&rt, &m0, "restarted");
    assert!(!rt.is_poisoned());
}

// ---------------------------------------------------------------------------------------------
// Full disk
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Fill {
    /// New nodes of growing sizes: new segments and windows run out of space.
    Data,
    /// Updates of one small node inside an already mapped window: the log's preallocation runs
    /// out of space.
    Log,
}

fn full_disk(policy: CommitPolicy, fill: Fill) {
    let ctx = format!("{policy:?} {fill:?}");
    let fs = new_fs(5);
    let mut o = options(policy);
    o.log.preallocate_bytes = 16 << 10;
    let rt = open_with(&fs, o.clone()).unwrap();
    let mut m = committed_prefix(&rt, policy);
    let small = *m.nodes.keys().next().unwrap();
    // Warm the window of the small node's class so later updates need no new space.
    let mut tx = rt.begin();
    let b = bytes(99, 100);
    tx.write(small, &b).unwrap();
    m.nodes.insert(small, b);
    m.epoch = tx.commit().unwrap();
    rt.sync().unwrap();
    let slack = match fill {
        Fill::Data => 3 << 20,
        Fill::Log => 0,
    };
    fs.set_space_bytes_max(Some(fs.space_used_bytes() + slack));

    let mut failure = None;
    for i in 0..5000u64 {
        let before = rt.stats();
        let mut next = m.clone();
        let mut tx = rt.begin();
        let staged = match fill {
            Fill::Data => {
                let b = bytes(1000 + i, [3000usize, 70_000, 300_000][i as usize % 3]);
                tx.alloc(4, &b).map(|id| {
                    next.nodes.insert(id, b);
                })
            }
            Fill::Log => {
                let b = bytes(1000 + i, 100 + (i % 3) as usize);
                tx.write(small, &b).map(|()| {
                    next.nodes.insert(small, b);
                })
            }
        };
        if let Err(e) = staged {
            drop(tx);
            failure = Some(("staging", e, before));
            break;
        }
        match tx.commit() {
            Ok(epoch) => {
                next.epoch = epoch;
                m = next;
            }
            Err(e) => {
                failure = Some(("commit", e, before));
                break;
            }
        }
        if policy == CommitPolicy::Eventual {
            // Syncing between EVENTUAL commits keeps them out of the flush path (tested apart).
            rt.sync().unwrap();
        }
    }
    let Some((stage, err, before)) = failure else {
        panic!("{ctx}: 5000 transactions never filled the disk");
    };
    let ctx = format!("{ctx}: {stage} failed: {err}");
    assert!(err.is_no_space(), "{ctx}");
    match fill {
        Fill::Data => assert_eq!(stage, "staging", "{ctx}"),
        Fill::Log if policy == CommitPolicy::Eventual => panic!("{ctx}: no log I/O expected"),
        Fill::Log => assert_eq!(stage, "commit", "{ctx}"),
    }
    assert!(
        !rt.is_poisoned(),
        "{ctx}: nothing was made durable, so no poison"
    );
    assert_state(&rt, &m, &ctx);
    let after = rt.stats();
    assert_eq!(after.commits, before.commits, "{ctx}: commits");
    assert_eq!(
        after.aborts,
        before.aborts + 1,
        "{ctx}: the transaction was aborted"
    );
    let (nodes, _) = rt.verify().unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    assert_eq!(nodes, m.nodes.len() as u64, "{ctx}: no slot leaked");

    // Still full: the same kind of transaction fails the same clean way.
    let again = {
        let mut tx = rt.begin();
        match fill {
            Fill::Data => tx.alloc(4, &bytes(7, 300_000)).map(drop),
            Fill::Log => match tx.write(small, &bytes(7, 100)) {
                Ok(()) => tx.commit().map(drop),
                Err(e) => Err(e),
            },
        }
    };
    assert!(
        again.as_ref().is_err_and(Error::is_no_space),
        "{ctx}: {again:?}"
    );
    assert!(!rt.is_poisoned());

    // Room again: commits succeed and are durable.
    fs.set_space_bytes_max(None);
    for i in 0..5u64 {
        let mut tx = rt.begin();
        let b = bytes(5000 + i, 200_000);
        let id = tx.alloc(4, &b).unwrap();
        m.nodes.insert(id, b);
        let b = bytes(6000 + i, 100);
        tx.write(small, &b).unwrap();
        m.nodes.insert(small, b);
        m.epoch = tx.commit().unwrap();
    }
    rt.sync().unwrap();
    assert_state(&rt, &m, &format!("{ctx}: after the budget was lifted"));
    drop(rt);
    let fs = fs.crash_with(CrashMode::DropUnsynced);
    let rt = open_with(&fs, o).unwrap();
    assert_recovered(&rt, &m, &format!("{ctx}: after a power loss"));
}

#[test]
fn a_full_disk_fails_data_allocation_cleanly_strict() {
    full_disk(CommitPolicy::Strict, Fill::Data);
}

#[test]
fn a_full_disk_fails_data_allocation_cleanly_balanced() {
    full_disk(CommitPolicy::Balanced, Fill::Data);
}

#[test]
fn a_full_disk_fails_data_allocation_cleanly_eventual() {
    full_disk(CommitPolicy::Eventual, Fill::Data);
}

#[test]
fn a_full_disk_fails_the_log_preallocation_cleanly_strict() {
    full_disk(CommitPolicy::Strict, Fill::Log);
}

#[test]
fn a_full_disk_fails_the_log_preallocation_cleanly_balanced() {
    full_disk(CommitPolicy::Balanced, Fill::Log);
}

/// EVENTUAL commits reserve their log space when they commit, so a full disk fails the commit
/// itself with `is_no_space()`: nothing of it is visible, the runtime is not poisoned, every
/// acknowledged commit is flushed and survives a power loss, and commits succeed again once space
/// is back. (Before reservations, the failure surfaced at the flush, after the commits had been
/// acknowledged, and poisoned the runtime.)
#[test]
fn a_full_disk_fails_an_eventual_commit_cleanly() {
    let fs = new_fs(6);
    let mut o = options(CommitPolicy::Eventual);
    o.log.preallocate_bytes = 16 << 10;
    let rt = open_with(&fs, o.clone()).unwrap();
    let mut m = committed_prefix(&rt, CommitPolicy::Eventual);
    let small = *m.nodes.keys().next().unwrap();
    fs.set_space_bytes_max(Some(fs.space_used_bytes()));
    let mut refused = None;
    for i in 0..4000u64 {
        let mut tx = rt.begin();
        let b = bytes(i, 100);
        tx.write(small, &b).unwrap();
        match tx.commit() {
            Ok(epoch) => {
                m.nodes.insert(small, b);
                m.epoch = epoch;
            }
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("the log ran out of space");
    assert!(err.is_no_space(), "{err}");
    assert!(!rt.is_poisoned());
    assert_state(&rt, &m, "the refused commit is not visible");
    assert_eq!(
        rt.sync().unwrap(),
        m.epoch,
        "every acknowledged commit flushes"
    );
    drop(rt);
    let fs = fs.crash_with(CrashMode::DropUnsynced);
    fs.set_space_bytes_max(None);
    let rt = open_with(&fs, o).unwrap();
    assert_recovered(&rt, &m, "after a power loss");
    let mut tx = rt.begin();
    tx.write(small, b"space is back").unwrap();
    tx.commit().unwrap();
}

/// `log_bytes_appended` counts bytes appended to the log; a commit refused for lack of space
/// appended none.
#[test]
fn a_commit_refused_for_space_counts_no_log_bytes() {
    let fs = new_fs(8);
    let mut o = options(CommitPolicy::Balanced);
    o.log.preallocate_bytes = 4 << 10;
    let rt = open_with(&fs, o).unwrap();
    let m = committed_prefix(&rt, CommitPolicy::Balanced);
    let small = *m.nodes.keys().next().unwrap();
    fs.set_space_bytes_max(Some(fs.space_used_bytes()));
    for i in 0..200u64 {
        let before = rt.stats().log_bytes_appended;
        let mut tx = rt.begin();
        tx.write(small, &bytes(i, 100)).unwrap();
        if let Err(e) = tx.commit() {
            assert!(e.is_no_space(), "{e}");
            assert_eq!(
                rt.stats().log_bytes_appended,
                before,
                "a refused commit counted log bytes"
            );
            return;
        }
    }
    panic!("the log never ran out of space");
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

fn invalid(r: vellum::Result<()>, what: &str) {
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{what}: {r:?}");
}

#[test]
fn root_names_outside_1_to_47_bytes_are_refused() {
    let fs = new_fs(1);
    let rt = open(&fs, CommitPolicy::Balanced);
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"a").unwrap();
    invalid(tx.set_root("", a), "empty name");
    invalid(tx.set_root(&"n".repeat(48), a), "48 bytes");
    // 16 three-byte characters: 16 chars, 48 bytes.
    invalid(tx.set_root(&"€".repeat(16), a), "48 bytes of UTF-8");
    invalid(tx.remove_root(""), "remove of an empty name");
    invalid(tx.remove_root(&"n".repeat(48)), "remove of 48 bytes");
    let longest = "n".repeat(47);
    tx.set_root(&longest, a).unwrap();
    tx.set_root(&"€".repeat(15), a).unwrap();
    tx.commit().unwrap();
    assert_eq!(rt.root(&longest), Some(a));
    assert_eq!(rt.root(&"€".repeat(15)), Some(a));
    assert_eq!(rt.root(""), None);
    drop(rt);
    let rt = open(&fs, CommitPolicy::Balanced);
    assert_eq!(rt.root(&longest), Some(a));
}

/// A superblock holds at most 64 roots. A transaction adding a 65th must fail without leaving a
/// trace: the next commit gets the epoch it would have had, and the store reopens with exactly the
/// acknowledged commits.
#[test]
fn a_65th_root_is_refused_and_leaves_the_store_intact() {
    for policy in POLICIES {
        let ctx = format!("{policy:?}");
        let fs = new_fs(2);
        let rt = open(&fs, policy);
        let mut tx = rt.begin();
        let a = tx.alloc(0, b"a").unwrap();
        for i in 0..64 {
            tx.set_root(&format!("root-{i:02}"), a).unwrap();
        }
        let e1 = tx.commit().unwrap();
        let mut tx = rt.begin();
        let b = tx.alloc(0, b"b").unwrap();
        let staged = tx.set_root("root-64", b);
        let refused = staged.and_then(|()| tx.commit().map(drop));
        invalid(refused, &format!("{ctx}: a 65th root"));
        assert_eq!(rt.visible_epoch(), e1, "{ctx}");
        assert_eq!(rt.root("root-64"), None, "{ctx}");
        assert_eq!(rt.node_ids(), vec![a], "{ctx}");
        // The next commit is the next epoch, and the store reopens with it.
        let mut tx = rt.begin();
        let c = tx.alloc(0, b"c").unwrap();
        tx.set_root("root-00", c).unwrap();
        let e2 = tx.commit().unwrap();
        assert_eq!(e2, e1 + 1, "{ctx}: epochs stay consecutive");
        rt.close().unwrap();
        let rt = open_with(&fs, options(policy))
            .unwrap_or_else(|e| panic!("{ctx}: reopen after a refused 65th root: {e}"));
        assert_eq!(rt.visible_epoch(), e2, "{ctx}");
        assert_eq!(rt.node_ids(), vec![a, c], "{ctx}");
        assert_eq!(rt.root("root-00"), Some(c), "{ctx}");
        assert_eq!(rt.root("root-63"), Some(a), "{ctx}");
        assert_eq!(rt.root("root-64"), None, "{ctx}");
    }
}

#[test]
fn stale_and_unknown_ids_are_not_found() {
    let fs = new_fs(3);
    let rt = open(&fs, CommitPolicy::Balanced);
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"doomed").unwrap();
    let keep = tx.alloc(0, b"kept").unwrap();
    tx.commit().unwrap();
    let before_retire = rt.snapshot();

    let mut tx = rt.begin();
    tx.retire(a).unwrap();
    tx.commit().unwrap();
    let not_found = |r: vellum::Result<()>, what: &str| {
        assert!(
            matches!(r, Err(Error::NodeNotFound { id, .. }) if id == a),
            "{what}: {r:?}"
        );
    };
    // Retired, not yet reclaimed: the newest epoch does not see it, an older snapshot does.
    not_found(rt.read(a).map(drop), "read of a retired node");
    not_found(rt.begin().write(a, b"x"), "write of a retired node");
    not_found(rt.begin().retire(a), "retire of a retired node");
    assert_eq!(rt.snapshot().read(a).unwrap(), None);
    assert_eq!(
        before_retire.read(a).unwrap().as_deref(),
        Some(&b"doomed"[..])
    );
    assert_eq!(rt.stats().slots_reclaimed, 0);
    drop(before_retire);
    rt.sync().unwrap();
    assert_eq!(rt.stats().slots_reclaimed, 1, "the retired node's slot");

    // Reclaimed: the id is stale everywhere, snapshots included.
    not_found(rt.read(a).map(drop), "read of a reclaimed node");
    not_found(
        rt.snapshot().read(a).map(drop),
        "snapshot read of a stale id",
    );
    not_found(rt.begin().write(a, b"x"), "write of a stale id");
    not_found(rt.begin().retire(a), "retire of a stale id");

    // The handle is reused by a new node (a new tag); the old id stays stale.
    let mut tx = rt.begin();
    let mut reused = None;
    for i in 0..200u32 {
        let id = tx.alloc(0, &i.to_le_bytes()).unwrap();
        if id.shard() == a.shard() && id.handle() == a.handle() {
            reused = Some(id);
            break;
        }
    }
    let reused = reused.expect("the freed handle is reused within one pass over the shards");
    assert_ne!(reused, a);
    tx.commit().unwrap();
    not_found(
        rt.read(a).map(drop),
        "read of a stale id whose handle was reused",
    );
    not_found(
        rt.begin().write(a, b"x"),
        "write of a stale id whose handle was reused",
    );
    assert!(rt.read(reused).is_ok());
    assert_eq!(rt.read(keep).unwrap(), b"kept");

    // Never issued.
    let never = NodeId::new(17, 1 << 40, 3).unwrap();
    let r = rt.read(never);
    assert!(
        matches!(r, Err(Error::NodeNotFound { id, .. }) if id == never),
        "{r:?}"
    );
    let r = rt.begin().write(never, b"x");
    assert!(matches!(r, Err(Error::NodeNotFound { .. })), "{r:?}");

    // Reserved by another, uncommitted transaction.
    let mut other = rt.begin();
    let pending = other.alloc(0, b"pending").unwrap();
    let r = rt.begin().write(pending, b"x");
    assert!(matches!(r, Err(Error::NodeNotFound { .. })), "{r:?}");
    assert!(matches!(rt.read(pending), Err(Error::NodeNotFound { .. })));
    other.abort();
    rt.verify().unwrap();
}

#[test]
fn nodes_over_64_mib_are_refused() {
    let fs = new_fs(4);
    let rt = open(&fs, CommitPolicy::Balanced);
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"a").unwrap();
    tx.commit().unwrap();
    let huge = vec![0u8; (64 << 20) + 1];
    let mut tx = rt.begin();
    invalid(tx.alloc(0, &huge).map(drop), "alloc of 64 MiB + 1");
    invalid(tx.write(a, &huge), "write of 64 MiB + 1");
    // The transaction is still usable, and the refused allocation left nothing behind.
    let b = tx.alloc(0, b"b").unwrap();
    tx.commit().unwrap();
    assert_eq!(rt.node_ids(), vec![a, b]);
    assert_eq!(rt.read(a).unwrap(), b"a");
    let (nodes, _) = rt.verify().unwrap();
    assert_eq!(nodes, 2);
}

#[test]
fn empty_transactions_are_refused() {
    let fs = new_fs(5);
    let rt = open(&fs, CommitPolicy::Balanced);
    let mut tx = rt.begin();
    tx.alloc(0, b"a").unwrap();
    let e1 = tx.commit().unwrap();
    for policy in POLICIES {
        invalid(rt.begin().commit_with(policy).map(drop), "an empty commit");
        // Created and retired in one transaction: nothing remains to commit.
        let mut tx = rt.begin();
        let id = tx.alloc(0, b"gone").unwrap();
        tx.retire(id).unwrap();
        invalid(tx.commit_with(policy).map(drop), "alloc + retire");
    }
    assert_eq!(rt.visible_epoch(), e1);
    assert_eq!(rt.stats().commits, 1);
    assert_eq!(rt.node_ids().len(), 1);
    rt.verify().unwrap();
}

/// Retiring a node and then writing it in the same transaction is refused (at the write or at the
/// commit) and changes nothing.
#[test]
fn writing_a_node_the_transaction_retired_is_refused() {
    let fs = new_fs(6);
    let rt = open(&fs, CommitPolicy::Balanced);
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"a").unwrap();
    let e1 = tx.commit().unwrap();
    let mut tx = rt.begin();
    tx.retire(a).unwrap();
    let r = tx
        .write(a, b"resurrected")
        .and_then(|()| tx.commit().map(drop));
    invalid(r, "write after retire");
    assert_eq!(rt.visible_epoch(), e1);
    assert_eq!(rt.read(a).unwrap(), b"a");
    rt.verify().unwrap();
}

/// A change to valid options.
type Tweak = fn(&mut RuntimeOptions);

#[test]
fn invalid_options_are_refused_before_any_storage_operation() {
    let fs = new_fs(7);
    let base = options(CommitPolicy::Balanced);
    let cases: Vec<(&str, Tweak)> = vec![
        ("balanced_payload_bytes_max over 1 MiB", |o| {
            o.balanced_payload_bytes_max = (1 << 20) + 1
        }),
        ("eventual_flush_interval zero", |o| {
            o.eventual_flush_interval = Duration::ZERO
        }),
        ("eventual_flush_interval over 60 s", |o| {
            o.eventual_flush_interval = Duration::from_millis(60_001)
        }),
        ("checkpoint_log_bytes under 1 MiB", |o| {
            o.checkpoint_log_bytes = (1 << 20) - 1
        }),
        ("checkpoint_interval zero", |o| {
            o.checkpoint_interval = Some(Duration::ZERO)
        }),
        ("window_bytes not a power of two", |o| {
            o.data.window_bytes = 3 << 20
        }),
        ("window_bytes under 1 MiB", |o| {
            o.data.window_bytes = 512 << 10
        }),
        ("window_bytes over file_bytes_max", |o| {
            o.data.window_bytes = 128 << 20
        }),
        ("mapped_bytes_max under one window", |o| {
            o.data.mapped_bytes_max = (1 << 20) - 1
        }),
        ("file_bytes_max under the largest segment", |o| {
            o.data.alloc.file_bytes_max = 32 << 20;
            o.data.window_bytes = 1 << 20;
        }),
        ("file_bytes_max not a power of two", |o| {
            o.data.alloc.file_bytes_max = 96 << 20
        }),
        ("frame_body_bytes_max zero", |o| {
            o.log.frame_body_bytes_max = 0
        }),
        ("frame_body_bytes_max over the format's limit", |o| {
            o.log.frame_body_bytes_max = vellum::log::FRAME_BODY_BYTES_MAX + 1
        }),
        ("preallocate_bytes over 1 GiB", |o| {
            o.log.preallocate_bytes = vellum::log::PREALLOCATE_BYTES_MAX + 1
        }),
    ];
    for (what, change) in &cases {
        let mut o = base.clone();
        change(&mut o);
        let ops = fs.op_count();
        invalid(open_with(&fs, o).map(drop), what);
        assert_eq!(
            fs.op_count(),
            ops,
            "{what}: refused before touching storage"
        );
    }
    assert_eq!(fs.list(Path::new(DIR)).unwrap(), Vec::<String>::new());
    // The limits themselves are accepted.
    let mut o = base;
    o.balanced_payload_bytes_max = 1 << 20;
    o.eventual_flush_interval = Duration::from_secs(60);
    o.checkpoint_log_bytes = 1 << 20;
    o.data.window_bytes = o.data.alloc.file_bytes_max;
    o.data.mapped_bytes_max = o.data.window_bytes;
    open_with(&fs, o).unwrap();
}

/// A commit record must fit one log frame (`log.frame_body_bytes_max`). A BALANCED commit whose
/// record is too large is refused at commit with nothing applied; an EVENTUAL one must be refused
/// the same way, not acknowledged and then fail (and poison) when it is flushed.
#[test]
fn a_commit_record_larger_than_a_log_frame_is_refused_at_commit() {
    for policy in [CommitPolicy::Balanced, CommitPolicy::Eventual] {
        let ctx = format!("{policy:?}");
        let fs = new_fs(8);
        let mut o = options(policy);
        o.log.frame_body_bytes_max = 64 << 10;
        let rt = open_with(&fs, o.clone()).unwrap();
        let mut tx = rt.begin();
        let a = tx.alloc(0, b"a").unwrap();
        let e1 = tx.commit().unwrap();
        rt.sync().unwrap();
        // 20 nodes of 4 KiB, each carried in the record: about 80 KiB.
        let mut tx = rt.begin();
        for i in 0..20u64 {
            tx.alloc(1, &bytes(i, 4096)).unwrap();
        }
        let r = tx.commit_with(policy);
        let synced = rt.sync();
        assert!(
            matches!(r, Err(Error::InvalidArgument(_))),
            "{ctx}: an 80 KiB record with 64 KiB frames: commit returned {r:?}, then sync \
             returned {synced:?} (poisoned: {})",
            rt.is_poisoned()
        );
        assert!(!rt.is_poisoned(), "{ctx}");
        assert_eq!(synced.unwrap(), e1, "{ctx}");
        assert_eq!(rt.node_ids(), vec![a], "{ctx}");
        rt.verify().unwrap();
        drop(rt);
        let rt = open_with(&fs, o).unwrap();
        assert_eq!(rt.visible_epoch(), e1, "{ctx}");
        assert_eq!(rt.node_ids(), vec![a], "{ctx}");
    }
}

/// Nodes of 256 KiB or more start their writeback as soon as they are written (one hint each);
/// smaller ones leave it to the commit's sync. The hint changes nothing durable: after a power
/// loss only the committed node is there.
#[test]
fn large_node_writes_start_their_writeback() {
    let fs = new_fs(7);
    let rt = open(&fs, CommitPolicy::Strict);
    let large = bytes(1, 256 << 10);
    let before = fs.writeback_hints();
    let mut tx = rt.begin();
    tx.alloc(1, &bytes(2, (256 << 10) - 1)).unwrap();
    tx.alloc(1, &bytes(3, 100)).unwrap();
    assert_eq!(fs.writeback_hints(), before);
    let id = tx.alloc(1, &large).unwrap();
    tx.set_root("large", id).unwrap();
    assert_eq!(fs.writeback_hints(), before + 1);
    tx.commit().unwrap();
    let mut tx = rt.begin();
    tx.alloc(1, &bytes(4, 1 << 20)).unwrap();
    assert_eq!(fs.writeback_hints(), before + 2);
    drop(tx);
    drop(rt);
    let fs = fs.crash();
    let rt = open(&fs, CommitPolicy::Strict);
    let id = rt.root("large").unwrap();
    assert_eq!(rt.read(id).unwrap(), large);
}
