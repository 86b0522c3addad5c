//! FasterKV checkpoints (CPR) and recovery: a store reopened after a checkpoint holds exactly
//! the operations up to each session's commit point; concurrent sessions keep running while
//! one is taken; reopening twice gives the same state; a second checkpoint writes only the
//! chunks that changed.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;

use common::{Rng, assert_kv_accounted, env_u64, kv_options};
use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::kv::{AddU64, CommitPoint, FasterKv, KvOptions, Status};

fn runtime(dir: &Path) -> Arc<DurableRuntime> {
    let o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    Arc::new(DurableRuntime::open(dir, o).unwrap())
}

fn open(dir: &Path, options: &KvOptions) -> FasterKv {
    FasterKv::open(runtime(dir), "kv", options.clone()).unwrap()
}

fn found(yes: bool) -> Status {
    if yes { Status::Found } else { Status::NotFound }
}

fn key(k: u64) -> [u8; 8] {
    k.to_le_bytes()
}

/// Every key of `model` reads back with its value, and keys `0..space` absent from it are
/// not found.
fn check_model(kv: &FasterKv, model: &HashMap<u64, u64>, space: u64) {
    common::assert_kv_values(kv, 0..space, model, "model");
}

#[test]
fn a_reopened_store_holds_the_checkpoint_and_nothing_after_it() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB pages, 4 in memory: most of the log is on disk at the checkpoint.
    let options = kv_options(4096, 4, 256);
    let mut model = HashMap::new();
    let mut rng = Rng::new(3);
    let until = {
        let kv = open(dir.path(), &options);
        let (mut s, resumed) = kv.resume_session("writer", AddU64).unwrap();
        assert_eq!(resumed, CommitPoint::default());
        for i in 0..5000u64 {
            let k = rng.below(1500);
            match rng.below(3) {
                0 => {
                    s.upsert(&key(k), &i.to_le_bytes()).unwrap();
                    model.insert(k, i);
                }
                1 => {
                    let want = found(model.contains_key(&k));
                    assert_eq!(s.rmw_blocking(&key(k), &3).unwrap(), want);
                    *model.entry(k).or_insert(0) += 3;
                }
                _ => {
                    let want = found(model.remove(&k).is_some());
                    assert_eq!(s.delete_blocking(&key(k)).unwrap(), want);
                }
            }
        }
        let until = s.last_serial();
        s.idle();
        let info = kv.checkpoint().unwrap();
        assert_eq!(info.version, 0);
        assert_eq!(info.sessions.len(), 1);
        assert_eq!(info.sessions[0].name.as_deref(), Some("writer"));
        assert_eq!(
            info.sessions[0].commit,
            CommitPoint {
                until_serial: until,
                excluded: vec![]
            }
        );
        assert!(info.chunks_written >= 1);
        // After the checkpoint: more pages flushed, none of it recovered.
        for k in 0..3000u64 {
            s.upsert(&key(k), &u64::MAX.to_le_bytes()).unwrap();
        }
        assert!(
            kv.stats().pages_flushed as u64 > info.tail / 4096,
            "{:?}",
            kv.stats()
        );
        drop(s);
        until
        // The store is dropped without close: what is on disk is the checkpoint and pages after it.
    };
    for round in 0..2 {
        let kv = open(dir.path(), &options);
        assert_kv_accounted(&kv, 4096, &format!("round {round}"));
        assert_eq!(kv.stats().tail % 4096, 0, "round {round}");
        check_model(&kv, &model, 3000);
        let (s, resumed) = kv.resume_session("writer", AddU64).unwrap();
        assert_eq!(resumed.until_serial, until, "round {round}");
        assert_eq!(
            s.last_serial(),
            until,
            "the session continues after its commit point"
        );
    }
}

#[test]
fn close_checkpoints_and_the_store_reopens_whole() {
    let dir = tempfile::tempdir().unwrap();
    let options = kv_options(4096, 4, 256);
    let kv = open(dir.path(), &options);
    let mut s = kv.session(AddU64).unwrap();
    let mut model = HashMap::new();
    for k in 0..2000u64 {
        s.upsert(&key(k), &(k * 7).to_le_bytes()).unwrap();
        model.insert(k, k * 7);
    }
    drop(s);
    kv.close().unwrap();
    let kv = open(dir.path(), &options);
    check_model(&kv, &model, 2100);
    // And it keeps working: updates land and a second close keeps them too.
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..100u64 {
        assert_eq!(s.rmw_blocking(&key(k), &1).unwrap(), Status::Found);
        *model.get_mut(&k).unwrap() += 1;
    }
    drop(s);
    kv.close().unwrap();
    check_model(&open(dir.path(), &options), &model, 2100);
}

#[test]
fn concurrent_sessions_recover_exactly_their_commit_points() {
    sessions_recover_their_commit_points(false);
}

#[test]
fn sessions_sharing_counters_recover_exactly_their_commit_points() {
    sessions_recover_their_commit_points(true);
}

/// `threads` named sessions RMW counters (each its own, or all the same ones); checkpoints
/// are taken while they run, and the store is dropped after they finish, without another: after
/// reopening, each counter holds exactly the increments whose serials are up to their
/// session's commit point (none excluded: RMWs in memory never pend here), and the commit
/// points lie inside the run.
fn sessions_recover_their_commit_points(shared: bool) {
    let threads = 3u64;
    let space = |t: u64| if shared { 0 } else { t * 1000 };
    let per_thread = env_u64("VELLUM_KV_CPR_OPS", 200_000);
    let checkpoints = env_u64("VELLUM_KV_CPR_CHECKPOINTS", 3).clamp(1, 8);
    let dir = tempfile::tempdir().unwrap();
    // Everything in memory (64 pages of 64 KiB), so no operation goes pending.
    let options = kv_options(64 << 10, 64, 1024);
    const COUNTERS: u64 = 50;
    let kv = open(dir.path(), &options);
    let progress: Vec<std::sync::atomic::AtomicU64> = (0..threads)
        .map(|_| std::sync::atomic::AtomicU64::new(0))
        .collect();
    let (logs, info) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (kv, progress) = (&kv, &progress);
                scope.spawn(move || {
                    let (mut s, _) = kv.resume_session(&format!("t{t}"), AddU64).unwrap();
                    let mut rng = Rng::new(t + 100);
                    let mut log = Vec::new();
                    for i in 0..per_thread {
                        let c = rng.below(COUNTERS);
                        let status = s.rmw(&key(space(t) + c), &1).unwrap();
                        assert_ne!(status, Status::Pending);
                        log.push(c);
                        progress[t as usize].store(i + 1, SeqCst);
                    }
                    assert_eq!(s.last_serial(), per_thread);
                    (log, s.stats().cpr_shifts)
                })
            })
            .collect();
        // Checkpoint i starts once every thread is (i + 1) tenths of the way; the last one is
        // what recovery finds.
        let mut info = None;
        for i in 1..=checkpoints {
            while progress
                .iter()
                .any(|p| p.load(SeqCst) < per_thread * i / 10)
            {
                std::thread::yield_now();
            }
            let taken = kv.checkpoint().unwrap();
            assert_eq!(taken.version, (i - 1) as u32);
            info = Some(taken);
        }
        let info = info.unwrap();
        let logs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        (logs, info)
    });
    // A session that finished before the last checkpoint was crossed, and its slot freed, by
    // an earlier one: the last checkpoint lists only the others.
    assert!(info.sessions.len() <= threads as usize, "{info:?}");
    let shifts: u64 = logs.iter().map(|(_, s)| s).sum();
    eprintln!("checkpoint {info:?}; CPR shifts {shifts}");
    drop(kv);
    let kv = open(dir.path(), &options);
    let mut out = Vec::new();
    let mut reader = kv.session(AddU64).unwrap();
    let mut want: HashMap<u64, u64> = HashMap::new();
    for t in 0..threads {
        let (s, commit) = kv.resume_session(&format!("t{t}"), AddU64).unwrap();
        let taken = info
            .sessions
            .iter()
            .find(|c| c.name == Some(format!("t{t}")));
        match taken {
            Some(c) => assert_eq!(commit, c.commit, "t{t}"),
            None => assert_eq!(commit.until_serial, per_thread, "t{t} finished before it"),
        }
        assert!(commit.excluded.is_empty());
        let until = commit.until_serial;
        // (A thread may finish before the last checkpoint: then its commit point is its end.)
        let least = per_thread * checkpoints / 10;
        assert!(until >= least && until <= per_thread, "t{t}: {until}");
        assert_eq!(s.last_serial(), until);
        for &c in &logs[t as usize].0[..until as usize] {
            *want.entry(space(t) + c).or_default() += 1;
        }
    }
    for t in 0..threads {
        for c in 0..COUNTERS {
            let k = space(t) + c;
            let status = reader.read_blocking(&key(k), &mut out).unwrap();
            match want.get(&k) {
                None => assert_eq!(status, Status::NotFound, "counter {k}"),
                Some(&n) => {
                    assert_eq!(status, Status::Found, "counter {k}");
                    assert_eq!(
                        u64::from_le_bytes(out[..].try_into().unwrap()),
                        n,
                        "counter {k}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_second_checkpoint_writes_only_the_changed_chunks() {
    let dir = tempfile::tempdir().unwrap();
    // 2^16 buckets: 64 chunks of 1024 buckets.
    let options = kv_options(1 << 20, 64, 1 << 16);
    let kv = open(dir.path(), &options);
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..100_000u64 {
        s.upsert(&key(k), &k.to_le_bytes()).unwrap();
    }
    s.idle();
    let full = kv.checkpoint().unwrap();
    assert_eq!(full.chunks_written, 64);
    // Reads change no index entry: no chunk is written.
    let mut out = Vec::new();
    for k in 0..1000u64 {
        assert_eq!(
            s.read_blocking(&key(k * 100), &mut out).unwrap(),
            Status::Found
        );
    }
    s.idle();
    let none = kv.checkpoint().unwrap();
    assert_eq!(none.chunks_written, 0);
    // (The fold-over made every record read-only, so an update copies its record to the tail
    // and changes its entry.)
    s.upsert(&key(0), &0u64.to_le_bytes()).unwrap();
    s.upsert(&key(100), &0u64.to_le_bytes()).unwrap();
    // 10 new keys change at most 10 chunks.
    for k in 0..10u64 {
        s.upsert(&key(1_000_000 + k), &k.to_le_bytes()).unwrap();
    }
    s.idle();
    let ten = kv.checkpoint().unwrap();
    assert!(ten.chunks_written <= 12, "{ten:?}");
    assert!(ten.chunks_written >= 1, "{ten:?}");
    drop(s);
    drop(kv);
    let kv = open(dir.path(), &options);
    let mut s = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    for (k, v) in [(0, 0), (1, 1), (100, 0), (99_999, 99_999), (1_000_009, 9)] {
        assert_eq!(
            s.read_blocking(&key(k), &mut out).unwrap(),
            Status::Found,
            "key {k}"
        );
        assert_eq!(out, u64::to_le_bytes(v), "key {k}");
    }
}

/// Operations pending (their records on disk) when their session crosses are excluded from the
/// commit point: completed afterwards they are of the next version, so a recovery from the
/// checkpoint holds none of them and every operation before them.
#[test]
fn operations_pending_at_the_crossing_are_excluded() {
    let dir = tempfile::tempdir().unwrap();
    let options = kv_options(4096, 4, 256);
    let kv = open(dir.path(), &options);
    let (mut s, _) = kv.resume_session("p", AddU64).unwrap();
    for k in 0..3000u64 {
        s.upsert(&key(k), &k.to_le_bytes()).unwrap();
    }
    // Keys 0.. are on disk now: RMWs of them go pending.
    let mut pending = Vec::new();
    for k in 0..5u64 {
        assert_eq!(s.rmw(&key(k), &100).unwrap(), Status::Pending, "key {k}");
        pending.push(s.last_serial());
    }
    // One more operation that completes at once, after the pending ones.
    s.upsert(&key(2999), &7u64.to_le_bytes()).unwrap();
    let last = s.last_serial();
    s.idle();
    let info = kv.checkpoint().unwrap();
    let want = CommitPoint {
        until_serial: last,
        excluded: pending.clone(),
    };
    assert_eq!(info.sessions[0].commit, want);
    // Completed now, as operations of the next version.
    let done = s.complete_pending().unwrap();
    assert_eq!(done.iter().map(|c| c.serial).collect::<Vec<_>>(), pending);
    assert!(done.iter().all(|c| c.status == Status::Found));
    let mut out = Vec::new();
    assert_eq!(s.read_blocking(&key(0), &mut out).unwrap(), Status::Found);
    assert_eq!(out, 100u64.to_le_bytes());
    drop(s);
    drop(kv);
    let kv = open(dir.path(), &options);
    let (mut s, resumed) = kv.resume_session("p", AddU64).unwrap();
    assert_eq!(resumed, want);
    for k in 0..5u64 {
        assert_eq!(s.read_blocking(&key(k), &mut out).unwrap(), Status::Found);
        assert_eq!(
            out,
            k.to_le_bytes(),
            "key {k}: its excluded RMW is not in the checkpoint"
        );
    }
    assert_eq!(
        s.read_blocking(&key(2999), &mut out).unwrap(),
        Status::Found
    );
    assert_eq!(out, 7u64.to_le_bytes());
}

/// A log 100 times the memory budget: after recovery every key reads back with its last value
/// (from the page nodes), and recovery read only the index chunks (no log replay).
#[test]
fn a_log_far_larger_than_memory_recovers_every_key() {
    let keys = env_u64("VELLUM_KV_CPR_BIG_KEYS", 40_000);
    let dir = tempfile::tempdir().unwrap();
    // 4 pages of 4 KiB in memory; 40 000 records of 40 bytes and their updates: ~2.5 MiB.
    let options = kv_options(4096, 4, 4096);
    let kv = open(dir.path(), &options);
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..keys {
        s.upsert(&key(k), &k.to_le_bytes()).unwrap();
    }
    for k in (0..keys).step_by(3) {
        assert_eq!(s.rmw_blocking(&key(k), &1).unwrap(), Status::Found);
    }
    s.idle();
    kv.checkpoint().unwrap();
    let log_bytes = kv.stats().tail;
    assert!(log_bytes > 100 * 4 * 4096, "{log_bytes}");
    drop(s);
    drop(kv);
    let kv = open(dir.path(), &options);
    assert_eq!(kv.stats().tail, log_bytes);
    let mut s = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    for k in 0..keys {
        assert_eq!(
            s.read_blocking(&key(k), &mut out).unwrap(),
            Status::Found,
            "key {k}"
        );
        let want = if k % 3 == 0 { k + 1 } else { k };
        assert_eq!(out, want.to_le_bytes(), "key {k}");
    }
    assert!(s.stats().disk_reads >= keys * 9 / 10, "{:?}", s.stats());
}

#[test]
fn a_checkpoint_in_the_background_returns_at_once_and_commits() {
    let dir = tempfile::tempdir().unwrap();
    let options = kv_options(4096, 4, 256);
    let kv = open(dir.path(), &options);
    let (mut s, _) = kv.resume_session("bg", AddU64).unwrap();
    for k in 0..500u64 {
        s.upsert(&key(k), &k.to_le_bytes()).unwrap();
    }
    // The session keeps its protection: the checkpoint waits for it to cross, so it cannot be
    // done before the session's next operation.
    let pending = kv.checkpoint_in_background().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert!(!pending.is_done(), "it waits for the protected session");
    // This operation acknowledges the Prepare and runs in the checkpoint's version (unless the
    // checkpoint moved on to In progress between its start and its attempt: then it crosses
    // first and is the next version's); idle, the session is then crossed by the checkpoint.
    s.upsert(&key(9999), &1u64.to_le_bytes()).unwrap();
    let last = s.last_serial();
    s.idle();
    let info = pending.wait().unwrap();
    let until = info.sessions[0].commit.until_serial;
    assert!(until == last || until == last - 1, "{until} {last}");
    assert_eq!((kv.stats().checkpoints_taken, kv.stats().version), (1, 1));
    // After the commit point: not in the checkpoint.
    s.upsert(&key(7777), &1u64.to_le_bytes()).unwrap();
    drop(s);
    drop(kv);
    let kv = open(dir.path(), &options);
    let mut model: HashMap<u64, u64> = (0..500).map(|k| (k, k)).collect();
    if until == last {
        model.insert(9999, 1);
    }
    check_model(&kv, &model, 10_000);
}

#[test]
fn the_background_policy_checkpoints_by_time_and_by_log_bytes() {
    for (interval, log_bytes) in [(Some(20), None), (None, Some(64 << 10))] {
        let dir = tempfile::tempdir().unwrap();
        let mut options = kv_options(4096, 4, 256);
        options.checkpoint_interval = interval.map(std::time::Duration::from_millis);
        options.checkpoint_log_bytes = log_bytes;
        let kv = open(dir.path(), &options);
        let (mut s, _) = kv.resume_session("w", AddU64).unwrap();
        let start = std::time::Instant::now();
        let mut i = 0u64;
        // Writes for a while (each 40-byte record: 64 KiB is about 1 600 of them).
        while kv.stats().checkpoints_taken < 3 {
            assert!(
                start.elapsed().as_secs() < 20,
                "no background checkpoints: {:?}",
                kv.stats()
            );
            s.upsert(&key(i % 5000), &i.to_le_bytes()).unwrap();
            i += 1;
        }
        let ctx = format!("{interval:?} {log_bytes:?}");
        assert_eq!(kv.stats().checkpoints_failed, 0, "{ctx}");
        drop(s);
        drop(kv);
        // Dropped without closing: what the last background checkpoint held is there.
        let kv = open(dir.path(), &options);
        let (_, c) = kv.resume_session("w", AddU64).unwrap();
        assert!(c.until_serial > 0 && c.until_serial <= i, "{ctx}: {c:?}");
        let mut model = HashMap::new();
        for j in 0..c.until_serial {
            model.insert(j % 5000, j);
        }
        check_model(&kv, &model, 5000);
    }
}

/// Checkpoints after a few updates write one delta node of the changed chains; once the deltas
/// pass a quarter of the index's bytes a checkpoint rewrites the chunks whole and retires them.
/// Reopened at any point, the store holds the model and its runtime holds no other node.
#[test]
fn incremental_checkpoints_write_deltas_and_consolidate() {
    let dir = tempfile::tempdir().unwrap();
    // 256 buckets (one chunk of 16 KiB): deltas are consolidated past 4 KiB.
    let options = kv_options(4096, 64, 256);
    let mut model = HashMap::new();
    let mut rng = Rng::new(17);
    let mut kv = open(dir.path(), &options);
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..600u64 {
        s.upsert(&key(k), &k.to_le_bytes()).unwrap();
        model.insert(k, k);
    }
    s.idle();
    let full = kv.checkpoint().unwrap();
    assert_eq!((full.chunks_written, full.delta_nodes), (1, 0));
    // The chunk node: its header, the 256 main buckets and whole overflow buckets.
    let overflow = full.index_bytes.checked_sub(16 + 256 * 64).unwrap();
    assert!(
        overflow.is_multiple_of(64) && overflow < 64 * 64,
        "{full:?}"
    );
    drop(s);
    let (mut deltas_seen, mut consolidations) = (0, 0);
    for round in 0..30 {
        let mut s = kv.session(AddU64).unwrap();
        for _ in 0..4 {
            let k = rng.below(600);
            s.upsert(&key(k), &(round * 1000 + k).to_le_bytes())
                .unwrap();
            model.insert(k, round * 1000 + k);
        }
        s.idle();
        let info = kv.checkpoint().unwrap();
        if info.delta_nodes > 0 {
            deltas_seen += 1;
            // A delta of at most four chains, each a main bucket and its overflow buckets.
            assert!(
                info.index_bytes <= 16 + 4 * (16 + 4 * 64),
                "round {round}: {info:?}"
            );
        } else {
            consolidations += 1;
            assert_eq!(info.chunks_written, 1, "round {round}: {info:?}");
        }
        drop(s);
        if round % 7 == 3 {
            drop(kv);
            kv = open(dir.path(), &options);
            assert_kv_accounted(&kv, 4096, &format!("round {round}"));
            check_model(&kv, &model, 600);
        }
    }
    assert!(
        deltas_seen >= 10 && consolidations >= 2,
        "{deltas_seen} {consolidations}"
    );
    drop(kv);
    let kv = open(dir.path(), &options);
    assert_kv_accounted(&kv, 4096, "end");
    check_model(&kv, &model, 600);
}

/// The incremental case: a store of `VELLUM_KV_CPR_INCR_KEYS` keys (default 200 000;
/// 1 000 000 in the long run) checkpoints, 1 % of its keys are updated, and it checkpoints
/// again: the runtime writes (node bytes and commit records, from its stats) for the second at
/// most the delta node, the new log bytes and the store node, with 64 KiB to spare, and at most
/// 5 % of the first.
#[test]
fn an_incremental_checkpoint_writes_its_delta_and_new_pages_only() {
    let keys = env_u64("VELLUM_KV_CPR_INCR_KEYS", 200_000);
    let dir = tempfile::tempdir().unwrap();
    // Pages of 1 MiB, all in memory; an index of keys/4 buckets.
    let options = kv_options(1 << 20, 64, (keys / 4).next_power_of_two());
    let kv = open(dir.path(), &options);
    let rt = kv.runtime().clone();
    let written = || {
        let s = rt.stats();
        s.node_bytes_written + s.log_bytes_appended
    };
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..keys {
        s.upsert(&key(k), &k.to_le_bytes()).unwrap();
    }
    s.idle();
    let before = written();
    let first = kv.checkpoint().unwrap();
    let full = written() - before;
    let mut rng = Rng::new(99);
    for _ in 0..keys / 100 {
        s.upsert(&key(rng.below(keys)), &0u64.to_le_bytes())
            .unwrap();
    }
    s.idle();
    let before = written();
    let second = kv.checkpoint().unwrap();
    let incremental = written() - before;
    let store_node = rt.read(rt.root("faster-kv:kv").unwrap()).unwrap().len() as u64;
    let bound = second.index_bytes + (second.tail - first.tail) + store_node + (64 << 10);
    eprintln!("full {full} B, incremental {incremental} B (bound {bound} B): {second:?}");
    assert!(
        second.delta_nodes == 1 && second.index_bytes > 0,
        "{second:?}"
    );
    assert!(incremental <= bound, "{incremental} > {bound}");
    assert!(
        incremental * 20 <= full,
        "{incremental} is over 5 % of {full}"
    );
}
