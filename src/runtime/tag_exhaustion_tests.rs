//! A handle that issued every tag stays retired through the runtime: after the node carrying its
//! last tag is reclaimed, no commit reaches it through any old id, no allocation gets it, and a
//! reopen from the log or from a checkpoint keeps it retired. Also the checkpoint of a handle whose
//! last id is reserved or retired but not yet reclaimed when the checkpoint is written.
//!
//! The first 65 533 reuses of the handle go straight to the object table (reserve and abort on
//! its shard, which is what a node created and retired in one transaction does), so the test
//! takes seconds; the full wrap through transactions alone is in
//! `tests/regression_stale_id_after_tag_wrap.rs` (`VELLUM_TAG_WRAP_ROUNDS`).

use std::path::Path;

use super::DurableRuntime;
use crate::error::Error;
use crate::object_table::{EntryState, NodeId, SHARDS, TAG_MAX};
use crate::runtime::{CommitPolicy, RuntimeOptions};

fn options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: std::time::Duration::from_secs(60),
        checkpoint_log_bytes: 1 << 40,
        ..RuntimeOptions::default()
    };
    o.compaction.interval = None;
    o.data.alloc.file_bytes_max = 64 << 20;
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 16 << 20;
    o
}

fn open(dir: &Path) -> DurableRuntime {
    DurableRuntime::open(dir, options()).unwrap()
}

fn handle_of(id: NodeId) -> (usize, u64) {
    (id.shard(), id.handle())
}

/// Commits a node holding `bytes`; returns its id.
fn commit_node(rt: &DurableRuntime, bytes: &[u8]) -> NodeId {
    let mut tx = rt.begin();
    let id = tx.alloc(1, bytes).unwrap();
    tx.commit_with(CommitPolicy::Eventual).unwrap();
    id
}

fn retire(rt: &DurableRuntime, id: NodeId) {
    let mut tx = rt.begin();
    tx.retire(id).unwrap();
    tx.commit_with(CommitPolicy::Eventual).unwrap();
}

/// Reading through `id` fails with exactly `NodeNotFound` for `id`.
#[track_caller]
fn assert_stale(rt: &DurableRuntime, id: NodeId) {
    match rt.read(id) {
        Err(Error::NodeNotFound { id: got, .. }) => assert_eq!(got, id),
        other => panic!("reading stale id {id}: {other:?}"),
    }
}

/// The entry of `hot` is FREE and exhausted.
#[track_caller]
fn assert_exhausted(rt: &DurableRuntime, hot: NodeId) {
    let guard = crossbeam_epoch::pin();
    let view = rt.inner.table.view(hot, &guard).unwrap();
    assert_eq!(
        (view.state, view.tag, view.exhausted),
        (EntryState::Free, TAG_MAX, true)
    );
}

/// Allocations in a committed transaction (at least one per shard) never get the handle of `hot`.
#[track_caller]
fn assert_never_reissued(rt: &DurableRuntime, hot: NodeId) {
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..2 * SHARDS)
        .map(|i| tx.alloc(2, &[i as u8; 8]).unwrap())
        .collect();
    tx.commit_with(CommitPolicy::Eventual).unwrap();
    assert!(
        ids.iter().all(|id| handle_of(*id) != handle_of(hot)),
        "the exhausted handle {hot} was handed out again"
    );
    let mut tx = rt.begin();
    for id in ids {
        tx.retire(id).unwrap();
    }
    tx.commit_with(CommitPolicy::Eventual).unwrap();
    rt.sync().unwrap();
}

/// Commits a node, retires it (reclaimed at the sync), and reuses its handle straight through the
/// object table until it has issued tag 65534; returns the first node's id.
fn age_a_handle(rt: &DurableRuntime) -> NodeId {
    let first = commit_node(rt, b"first");
    assert_eq!(first.tag(), 1);
    retire(rt, first);
    rt.sync().unwrap();
    let table = &rt.inner.table;
    for tag in 2..TAG_MAX {
        let id = table.reserve_from(first.shard()).unwrap();
        assert_eq!((handle_of(id), id.tag()), (handle_of(first), tag));
        table.abort(id).unwrap();
    }
    first
}

/// Reserves through a transaction (one allocation per shard, so one lands on the aged handle)
/// and keeps only the node on the handle of `first`, which carries the last tag; the others are
/// given back.
fn reserve_the_last_tag<'rt>(
    rt: &'rt DurableRuntime,
    first: NodeId,
) -> (super::WriteTxn<'rt>, NodeId) {
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..SHARDS)
        .map(|_| tx.alloc(1, b"the last tag").unwrap())
        .collect();
    let mut last = None;
    for id in ids {
        if handle_of(id) == handle_of(first) {
            last = Some(id);
        } else {
            tx.retire(id).unwrap();
        }
    }
    let last = last.unwrap();
    assert_eq!(last.tag(), TAG_MAX);
    (tx, last)
}

#[test]
fn an_exhausted_handle_stays_retired_after_reopen_from_the_log_and_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (first, last) = {
        let rt = open(dir.path());
        let first = age_a_handle(&rt);
        let (tx, last) = reserve_the_last_tag(&rt, first);
        tx.commit_with(CommitPolicy::Eventual).unwrap();
        assert_eq!(rt.read(last).unwrap(), b"the last tag");
        retire(&rt, last);
        rt.sync().unwrap();
        assert_exhausted(&rt, first);
        assert_stale(&rt, first);
        assert_stale(&rt, last);
        assert_never_reissued(&rt, first);
        rt.close().unwrap();
        (first, last)
    };
    // From the log: replay reclaims the last node and marks the handle again.
    let rt = open(dir.path());
    assert_exhausted(&rt, first);
    assert_stale(&rt, first);
    assert_stale(&rt, last);
    assert_never_reissued(&rt, first);
    rt.checkpoint().unwrap();
    rt.close().unwrap();
    // From the checkpoint's exhausted entry.
    let rt = open(dir.path());
    assert_exhausted(&rt, first);
    assert_stale(&rt, first);
    assert_stale(&rt, last);
    assert_never_reissued(&rt, first);
}

#[test]
fn a_checkpoint_marks_a_handle_whose_last_id_is_reserved_or_retired_exhausted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    // Reserved while the checkpoint is written, committed after it: recovery marks the handle
    // exhausted from the checkpoint, then replays the node carrying the last tag onto it.
    let first = age_a_handle(&rt);
    let (tx, last) = reserve_the_last_tag(&rt, first);
    rt.checkpoint().unwrap();
    tx.commit_with(CommitPolicy::Eventual).unwrap();
    rt.close().unwrap();
    let rt = open(dir.path());
    assert_eq!(rt.read(last).unwrap(), b"the last tag");
    assert_stale(&rt, first);
    // Retired before the checkpoint, but not reclaimed while a snapshot could still read it.
    let snapshot = rt.snapshot();
    retire(&rt, last);
    rt.sync().unwrap();
    assert_eq!(snapshot.read(last).unwrap().unwrap(), b"the last tag");
    rt.checkpoint().unwrap();
    drop(snapshot);
    rt.close().unwrap();
    let rt = open(dir.path());
    assert_exhausted(&rt, first);
    assert_stale(&rt, first);
    assert_stale(&rt, last);
    assert_never_reissued(&rt, first);
}
