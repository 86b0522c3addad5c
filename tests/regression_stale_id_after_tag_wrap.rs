//! Regression: a `NodeId` carries a 16-bit ABA tag that changes each time its handle is freed,
//! and the tag used to wrap from 65535 back to 1. The per-shard free lists are LIFO, so a hot
//! handle (a node allocated and retired over and over) came back with every tag in turn, and after
//! 65 535 frees its next node got exactly the id of the handle's first node. An id kept from then
//! (in another node's bytes, say) was no longer stale: reads and writes through it reached the new
//! node's bytes, against ARCHITECTURE's promise that a stale id is always detected. Now a handle
//! freed while carrying tag 65535 is retired for good: it stays FREE and marked exhausted, is never
//! handed out again (also after a restart, from the log or from a checkpoint), and every id it ever
//! issued stays stale.
//!
//! Both tests keep the hot handle's first id and free the handle until it has issued every tag,
//! then check that the first id and the later ones are refused, that no new node gets the handle,
//! and that no read through the first id reaches a new node's version. Reservations go round the
//! 64 shards (each thread's starting shard moves by one per reservation), so a handle is reused
//! once per 64 reservations: the wrap takes 64 * 65 535 of them.
//!
//! - The object-table test drives the table directly: about four million reserve/abort pairs,
//!   seconds in a debug build.
//! - The runtime test goes through transactions, checks the same through `DurableRuntime`, and
//!   reopens the store from the log and from a checkpoint. A node created and retired in one
//!   transaction never exists, so each reuse costs no commit; only the first and the last node of
//!   the handle are committed. The full wrap takes about half a minute in a debug build, so by
//!   default it runs 256 rounds (the early ids stay stale, the handle is not yet exhausted); set
//!   `VELLUM_TAG_WRAP_ROUNDS=65534` for the whole wrap. `src/runtime/tag_exhaustion_tests.rs`
//!   covers the exhausted handle through the runtime by default, aging the handle in the table.

use std::collections::HashSet;

use vellum::Error;
use vellum::alloc::Location;
use vellum::object_table::{NodeId, ObjectTable, SHARDS, Version};
use vellum::runtime::{CommitPolicy, DurableRuntime};

mod common;

/// Every tag a handle can carry.
const TAGS: u32 = u16::MAX as u32;

fn open(dir: &std::path::Path) -> DurableRuntime {
    DurableRuntime::open(dir, common::small_deterministic_options()).unwrap()
}

/// The handle `(shard, handle)` of `id`.
fn handle_of(id: NodeId) -> (usize, u64) {
    (id.shard(), id.handle())
}

/// Asserts that reading and writing through `id` fail with exactly `NodeNotFound { id, .. }`.
fn assert_stale(rt: &DurableRuntime, id: NodeId, context: &str) {
    match rt.read(id) {
        Err(Error::NodeNotFound { id: got, .. }) => assert_eq!(got, id, "{context}"),
        Ok(bytes) => panic!(
            "{context}: stale id {id} reached a node's bytes {:?}",
            String::from_utf8_lossy(&bytes)
        ),
        Err(e) => panic!("{context}: reading stale id {id}: {e:?}"),
    }
    let mut tx = rt.begin();
    match tx.write(id, b"through a stale id") {
        Err(Error::NodeNotFound { id: got, .. }) => assert_eq!(got, id, "{context}"),
        other => panic!("{context}: writing through stale id {id}: {other:?}"),
    }
    tx.abort();
}

/// Commits `n` new nodes (at least one per shard for `n >= 64`), each holding its own index, and
/// returns their ids.
fn commit_nodes(rt: &DurableRuntime, n: usize, tag: &str) -> Vec<NodeId> {
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..n)
        .map(|i| tx.alloc(2, format!("{tag}-{i}").as_bytes()).unwrap())
        .collect();
    tx.commit_with(CommitPolicy::Eventual).unwrap();
    rt.sync().unwrap();
    ids
}

/// Drives the hot handle of `first` until it has issued `tags_to_issue` more tags (up to 65534,
/// the last of which is committed and retired); returns the ids it issued, in order.
fn cycle_hot_handle(rt: &DurableRuntime, first: NodeId, tags_to_issue: u32) -> Vec<NodeId> {
    let hot = handle_of(first);
    let mut issued = Vec::new();
    while (issued.len() as u32) < tags_to_issue {
        // One reservation per shard: the thread's round-robin start moves by one per
        // reservation, so 64 of them visit every shard once and pop each shard's free list.
        let mut tx = rt.begin();
        let round: Vec<NodeId> = (0..SHARDS).map(|_| tx.alloc(1, &[]).unwrap()).collect();
        let on_hot: Vec<NodeId> = round
            .iter()
            .copied()
            .filter(|id| handle_of(*id) == hot)
            .collect();
        assert_eq!(
            on_hot.len(),
            1,
            "one reservation per round on the hot handle"
        );
        let id = on_hot[0];
        issued.push(id);
        if issued.len() as u32 == tags_to_issue {
            // The handle's last node is a real one: committed, retired, reclaimed.
            for other in round.iter().filter(|o| **o != id) {
                tx.retire(*other).unwrap();
            }
            tx.commit_with(CommitPolicy::Eventual).unwrap();
            let mut tx = rt.begin();
            tx.retire(id).unwrap();
            tx.commit_with(CommitPolicy::Eventual).unwrap();
            rt.sync().unwrap();
        } else {
            tx.abort();
        }
    }
    issued
}

fn version(n: u64) -> Version {
    Version {
        location: Location {
            class: 0,
            file: 0,
            offset: 64 * n,
        },
        len: 8,
        crc32c: n as u32,
        kind: 1,
        birth: n,
    }
}

#[test]
fn the_object_table_never_reissues_a_handle_that_issued_every_tag() {
    let table = ObjectTable::new();
    let guard = crossbeam_epoch::pin();
    let first = table.reserve().unwrap();
    assert_eq!(first.tag(), 1);
    table.publish(first, version(1)).unwrap();
    table.retire(first, 2).unwrap();
    table.reclaim(first, &guard).unwrap();
    let hot = handle_of(first);
    let mut issued = Vec::new();
    while issued.last().is_none_or(|id: &NodeId| id.tag() < u16::MAX) {
        let round: Vec<NodeId> = (0..SHARDS).map(|_| table.reserve().unwrap()).collect();
        for id in round {
            if handle_of(id) == hot {
                issued.push(id);
                if id.tag() == u16::MAX {
                    // The handle's last node is a real one.
                    table.publish(id, version(3)).unwrap();
                    table.retire(id, 4).unwrap();
                    table.reclaim(id, &guard).unwrap();
                    continue;
                }
            }
            table.abort(id).unwrap();
        }
    }
    let tags: Vec<u32> = issued.iter().map(|id| u32::from(id.tag())).collect();
    assert_eq!(tags, (2..=TAGS).collect::<Vec<u32>>());

    // New nodes after the wrap: with tags that wrapped, one of them was `first` again.
    let after: Vec<NodeId> = (0..2 * SHARDS as u64)
        .map(|n| {
            let id = table.reserve().unwrap();
            table.publish(id, version(100 + n)).unwrap();
            id
        })
        .collect();
    match table.get(first, &guard) {
        Err(Error::NodeNotFound { id, .. }) => assert_eq!(id, first),
        Ok(v) => panic!("stale id {first} reached another node's version {v:?}"),
        Err(e) => panic!("{first}: {e:?}"),
    }
    for id in issued.iter().step_by(997).chain(issued.last()) {
        assert!(matches!(
            table.get_at(*id, u64::MAX, &guard),
            Err(Error::NodeNotFound { .. })
        ));
    }
    let on_hot: Vec<NodeId> = after
        .iter()
        .copied()
        .filter(|id| handle_of(*id) == hot)
        .collect();
    assert_eq!(on_hot, vec![], "the exhausted handle was handed out again");
    for (n, id) in after.iter().enumerate() {
        assert_eq!(table.get(*id, &guard).unwrap(), version(100 + n as u64));
    }
}

#[test]
fn a_stale_id_stays_stale_after_its_handle_issued_every_tag() {
    let rounds = common::env_u64("VELLUM_TAG_WRAP_ROUNDS", 256) as u32;
    let rounds = rounds.min(TAGS - 1);
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());

    // The hot handle's first node, committed, then retired and reclaimed.
    let first = commit_nodes(&rt, 1, "first")[0];
    assert_eq!(first.tag(), 1, "a fresh store's first node has tag 1");
    assert_eq!(rt.read(first).unwrap(), b"first-0");
    let mut tx = rt.begin();
    tx.retire(first).unwrap();
    tx.commit_with(CommitPolicy::Eventual).unwrap();
    rt.sync().unwrap();
    assert_stale(&rt, first, "after its retirement");

    // Tags 2..=65535, each issued once, in order.
    let issued = cycle_hot_handle(&rt, first, rounds);
    let tags: Vec<u32> = issued.iter().map(|id| u32::from(id.tag())).collect();
    assert_eq!(tags, (2..2 + rounds).collect::<Vec<u32>>());
    let exhausted = rounds == TAGS - 1;

    // New nodes after the wrap: with tags that wrapped, one of them was `first` again.
    let after = commit_nodes(&rt, 2 * SHARDS, "after");
    assert_stale(&rt, first, "after the wrap");
    let hot = handle_of(first);
    if exhausted {
        let on_hot: Vec<NodeId> = after
            .iter()
            .copied()
            .filter(|id| handle_of(*id) == hot)
            .collect();
        assert_eq!(on_hot, vec![], "the exhausted handle was handed out again");
    }
    for id in issued.iter().step_by(997).chain(issued.last()) {
        assert_stale(&rt, *id, "a later id of the hot handle");
    }
    for (i, id) in after.iter().enumerate() {
        assert_eq!(rt.read(*id).unwrap(), format!("after-{i}").as_bytes());
    }

    // Reopened from the log alone, then from a checkpoint: the handle stays retired.
    drop(rt);
    for (reopen, checkpoint_first) in [("the log", false), ("a checkpoint", true)] {
        let mut rt = open(dir.path());
        if checkpoint_first {
            rt.checkpoint().unwrap();
            rt.close().unwrap();
            rt = open(dir.path());
        }
        let context = format!("reopened from {reopen}");
        assert_stale(&rt, first, &context);
        if let Some(last) = issued.last() {
            assert_stale(&rt, *last, &context);
        }
        let more = commit_nodes(&rt, 2 * SHARDS, &format!("reopen-{checkpoint_first}"));
        if exhausted {
            let handles: HashSet<(usize, u64)> = more.iter().map(|id| handle_of(*id)).collect();
            assert!(
                !handles.contains(&hot),
                "{context}: the exhausted handle {hot:?} was handed out again"
            );
        }
        for (i, id) in after.iter().enumerate() {
            assert_eq!(rt.read(*id).unwrap(), format!("after-{i}").as_bytes());
        }
        assert_stale(&rt, first, &context);
        // Retire the nodes just made, so the next reopen starts from the same live set.
        let mut tx = rt.begin();
        for id in &more {
            tx.retire(*id).unwrap();
        }
        tx.commit_with(CommitPolicy::Eventual).unwrap();
        rt.close().unwrap();
    }
}
