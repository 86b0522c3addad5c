//! A thread's transactions reuse the buffers of its last one (`txn.rs`, `Spare`): whatever the
//! last one did (committed, aborted, failed with a conflict, grew past the kept size), the next
//! starts empty, sees only committed state, and leaks no slot.

use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
use vellum::{Error, NodeId};

fn open(dir: &std::path::Path) -> DurableRuntime {
    let options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    DurableRuntime::open(dir, options).unwrap()
}

/// The next transaction on this thread has nothing staged: committing it is refused as empty.
fn assert_next_is_empty(rt: &DurableRuntime, after: &str) {
    match rt.begin().commit_with(CommitPolicy::Strict) {
        Err(Error::InvalidArgument(m)) => {
            assert_eq!(
                m, "an empty transaction has nothing to commit",
                "after {after}"
            )
        }
        other => panic!("after {after}: {other:?}"),
    }
}

fn committed(rt: &DurableRuntime, n: u8) -> Vec<NodeId> {
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..n).map(|i| tx.alloc(1, &[i; 24]).unwrap()).collect();
    tx.set_root("first", ids[0]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    ids
}

#[test]
fn a_transaction_after_a_commit_or_an_abort_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let ids = committed(&rt, 4);
    assert_next_is_empty(&rt, "a commit");

    // Staged writes, a retirement, a new node and a root change, then dropped.
    let mut tx = rt.begin();
    tx.write(ids[1], b"staged, never committed").unwrap();
    tx.retire(ids[2]).unwrap();
    tx.alloc(1, b"never created").unwrap();
    tx.set_root("dropped", ids[3]).unwrap();
    assert_eq!(tx.read(ids[1]).unwrap(), b"staged, never committed");
    drop(tx);
    assert_next_is_empty(&rt, "an abort");

    // The next transaction reads committed bytes, not the dropped one's staging.
    let mut tx = rt.begin();
    assert_eq!(tx.read(ids[1]).unwrap(), [1u8; 24]);
    assert_eq!(tx.read(ids[2]).unwrap(), [2u8; 24]);
    tx.write(ids[3], b"committed").unwrap();
    tx.commit_with(CommitPolicy::Balanced).unwrap();
    assert_eq!(rt.root("dropped"), None);
    assert_eq!(rt.root("first"), Some(ids[0]));
    assert_eq!(rt.read(ids[3]).unwrap(), b"committed");
    assert_eq!(
        rt.verify().unwrap().0,
        4,
        "no slot of the dropped one leaked"
    );
}

#[test]
fn a_transaction_after_a_conflict_starts_empty() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let ids = committed(&rt, 2);
    let mut loser = rt.begin();
    loser.write(ids[0], b"loses").unwrap();
    let mut winner = rt.begin();
    winner.write(ids[0], b"wins").unwrap();
    winner.commit_with(CommitPolicy::Strict).unwrap();
    assert!(matches!(
        loser.commit_with(CommitPolicy::Strict),
        Err(Error::Conflict { id }) if id == ids[0]
    ));
    assert_next_is_empty(&rt, "a conflict");
    let mut tx = rt.begin();
    tx.write(ids[1], b"after").unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    assert_eq!(rt.read(ids[0]).unwrap(), b"wins");
    assert_eq!(rt.read(ids[1]).unwrap(), b"after");
    assert_eq!(rt.verify().unwrap().0, 2);
}

/// A transaction larger than the kept buffers (thousands of nodes, megabytes of copies), then
/// small ones: each commits exactly what it wrote.
#[test]
fn small_transactions_after_a_large_one_commit_exactly_their_writes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..10_000u32)
        .map(|i| tx.alloc(1, &[(i % 251) as u8; 200]).unwrap())
        .collect();
    tx.commit_with(CommitPolicy::Balanced).unwrap();
    for round in 0..3u8 {
        let mut tx = rt.begin();
        tx.write(ids[usize::from(round)], &[round; 8]).unwrap();
        tx.commit_with(CommitPolicy::Balanced).unwrap();
    }
    for (i, id) in ids.iter().enumerate() {
        let expected = if i < 3 {
            vec![i as u8; 8]
        } else {
            vec![(i % 251) as u8; 200]
        };
        assert_eq!(rt.read(*id).unwrap(), expected, "node {i}");
    }
    assert_eq!(rt.verify().unwrap().0, 10_000);
}

/// Threads each keep their own buffers: concurrent writers on disjoint nodes commit exactly
/// their own writes.
#[test]
fn threads_reuse_only_their_own_buffers() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let ids = committed(&rt, 8);
    std::thread::scope(|s| {
        for (t, chunk) in ids.chunks(2).enumerate() {
            let rt = &rt;
            s.spawn(move || {
                for round in 0..200u32 {
                    let mut tx = rt.begin();
                    for id in chunk {
                        tx.write(*id, &[&t.to_le_bytes()[..], &round.to_le_bytes()].concat())
                            .unwrap();
                    }
                    tx.commit_with(CommitPolicy::Eventual).unwrap();
                }
            });
        }
    });
    rt.sync().unwrap();
    for (t, chunk) in ids.chunks(2).enumerate() {
        for id in chunk {
            assert_eq!(
                rt.read(*id).unwrap(),
                [&t.to_le_bytes()[..], &199u32.to_le_bytes()].concat()
            );
        }
    }
    assert_eq!(rt.verify().unwrap().0, 8);
}
