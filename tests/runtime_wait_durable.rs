//! `DurableRuntime::wait_durable`, with exact outcomes:
//! - an EVENTUAL commit's epoch waited on returns once the background flusher has flushed it,
//!   and the only flush and log sync are the flusher's (the wait flushes nothing);
//! - with no flusher due, a waiter sleeps until another thread's `sync()`, which is then the one
//!   flush;
//! - an epoch never committed is `InvalidArgument`, one already durable returns at once;
//! - a failed log sync of the flusher poisons the runtime and wakes the waiter with `Poisoned`;
//! - several waiters on different epochs all return the exact durable epoch.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
use vellum::{Error, IoOp};

mod common;

/// Options with the flusher every `interval` and no other background work.
fn options(interval: Duration) -> RuntimeOptions {
    let mut o = common::small_deterministic_options();
    o.eventual_flush_interval = interval;
    o
}

fn eventual_commit(rt: &DurableRuntime, tag: u8) -> u64 {
    let mut tx = rt.begin();
    tx.alloc(0, &[tag; 40]).unwrap();
    tx.commit_with(CommitPolicy::Eventual).unwrap()
}

#[test]
fn an_eventual_commit_is_waited_on_until_the_flusher_flushes_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_millis(50))).unwrap();
    let durable = rt.durable_epoch();
    let before = rt.stats();
    let epoch = eventual_commit(&rt, 1);
    assert_eq!(epoch, durable + 1);
    let started = Instant::now();
    assert_eq!(rt.wait_durable(epoch).unwrap(), epoch);
    assert!(started.elapsed() < Duration::from_secs(10));
    let after = rt.stats();
    // The flusher's one flush: one log sync, no data sync (the node travels in its record).
    assert_eq!(after.flushes, before.flushes + 1, "{after:?}");
    assert_eq!(after.log_syncs, before.log_syncs + 1, "{after:?}");
    assert_eq!(after.data_syncs, before.data_syncs, "{after:?}");
    // Waiting again on a durable epoch returns at once and flushes nothing.
    assert_eq!(rt.wait_durable(epoch).unwrap(), epoch);
    assert_eq!(rt.wait_durable(0).unwrap(), epoch);
    let again = rt.stats();
    assert_eq!(
        (again.flushes, again.log_syncs),
        (after.flushes, after.log_syncs)
    );
}

#[test]
fn a_waiter_sleeps_until_another_thread_syncs() {
    let dir = tempfile::tempdir().unwrap();
    // The flusher is not due for a minute: only the `sync` below can flush.
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_secs(60))).unwrap();
    let before = rt.stats();
    let first = eventual_commit(&rt, 1);
    let last = eventual_commit(&rt, 2);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| rt.wait_durable(first));
        std::thread::sleep(Duration::from_millis(100));
        assert!(
            !waiter.is_finished(),
            "nothing made epoch {first} durable yet"
        );
        let stats = rt.stats();
        assert_eq!(
            (stats.flushes, stats.log_syncs),
            (before.flushes, before.log_syncs)
        );
        assert_eq!(rt.sync().unwrap(), last);
        assert_eq!(waiter.join().unwrap().unwrap(), last);
    });
    let after = rt.stats();
    assert_eq!(after.flushes, before.flushes + 1, "the sync's flush only");
    assert_eq!(
        after.log_syncs,
        before.log_syncs + 1,
        "the sync's log sync only"
    );
}

#[test]
fn an_epoch_never_committed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_secs(60))).unwrap();
    let epoch = eventual_commit(&rt, 1);
    let refused = rt.wait_durable(epoch + 1);
    assert!(
        matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains(&format!("epoch {}", epoch + 1))),
        "{refused:?}"
    );
    assert_eq!(rt.durable_epoch(), epoch - 1, "the refusal flushed nothing");
}

#[test]
fn a_failed_flusher_sync_wakes_the_waiter_with_poisoned() {
    const DIR: &str = "/store";
    // The flusher's flush writes the record and then syncs the log; probe which operation from
    // the commit on is that sync.
    for k in 1..=8 {
        let fs = common::fault_storage(k, DIR);
        let o = options(Duration::from_millis(50));
        let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), o).unwrap();
        let durable = rt.durable_epoch();
        let epoch = eventual_commit(&rt, 1);
        fs.fail_nth(k);
        let started = Instant::now();
        let waited = rt.wait_durable(epoch);
        assert!(started.elapsed() < Duration::from_secs(10));
        let Err(Error::Poisoned { cause }) = &waited else {
            panic!("operation {k}: {waited:?}");
        };
        assert!(rt.is_poisoned());
        assert_eq!(rt.durable_epoch(), durable, "nothing became durable");
        if !cause.contains(&IoOp::SyncData.to_string()) {
            continue;
        }
        // Poisoned for good: a second wait fails at once, an earlier durable epoch still returns.
        assert!(matches!(
            rt.wait_durable(epoch),
            Err(Error::Poisoned { .. })
        ));
        assert_eq!(rt.wait_durable(durable).unwrap(), durable);
        assert_eq!(rt.stats().flushes, 0, "the failed flush is not counted");
        return;
    }
    panic!("no operation of the flusher's flush was its log sync");
}

#[test]
fn waiters_on_different_epochs_all_return_the_exact_durable_epoch() {
    const ROUNDS: u64 = 3;
    const WAITERS: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    // The flusher is not due: each round's `sync` is the one flush that ends its waits.
    let rt = DurableRuntime::open(dir.path(), options(Duration::from_secs(60))).unwrap();
    let flushes = rt.stats().flushes;
    for round in 0..ROUNDS {
        let durable = rt.durable_epoch();
        let epochs: Vec<u64> = (0..WAITERS)
            .map(|i| eventual_commit(&rt, (round * WAITERS + i) as u8))
            .collect();
        assert_eq!(
            epochs,
            (durable + 1..=durable + WAITERS).collect::<Vec<_>>()
        );
        let last = durable + WAITERS;
        std::thread::scope(|s| {
            let rt = &rt;
            let waiters: Vec<_> = epochs
                .iter()
                .map(|&e| s.spawn(move || (e, rt.wait_durable(e))))
                .collect();
            // A waiter on an epoch already durable returns the durable epoch at once.
            let early = s.spawn(move || rt.wait_durable(durable));
            assert_eq!(early.join().unwrap().unwrap(), durable, "round {round}");
            std::thread::sleep(Duration::from_millis(50));
            assert!(waiters.iter().all(|w| !w.is_finished()), "round {round}");
            assert_eq!(rt.sync().unwrap(), last);
            for w in waiters {
                let (e, got) = w.join().unwrap();
                assert_eq!(got.unwrap(), last, "round {round}: waiter on {e}");
            }
        });
    }
    assert_eq!(
        rt.stats().flushes,
        flushes + ROUNDS,
        "one flush per round, the syncs'"
    );
}
