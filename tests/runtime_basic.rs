//! The runtime's API end to end on the real filesystem: commits under each policy survive a
//! reopen byte for byte; snapshots see exactly their epoch; conflicting writers lose exactly once;
//! checkpoints drop old logs; a second opener is refused; a root claim is exclusive until dropped.

use std::path::Path;

use vellum::Error;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

fn options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 64 << 20;
    o.data.alloc.file_bytes_max = 64 << 20;
    o
}

fn open(dir: &Path) -> DurableRuntime {
    DurableRuntime::open(dir, options()).unwrap()
}

#[test]
fn commits_of_every_policy_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut ids = Vec::new();
    {
        let rt = open(dir.path());
        for (i, policy) in [
            CommitPolicy::Strict,
            CommitPolicy::Balanced,
            CommitPolicy::Eventual,
        ]
        .into_iter()
        .enumerate()
        {
            for size in [10usize, 5000, 300_000] {
                let bytes = vec![(i * 7 + size % 251) as u8; size];
                let mut tx = rt.begin();
                let id = tx.alloc(1, &bytes).unwrap();
                tx.set_root(&format!("r{i}-{size}"), id).unwrap();
                let epoch = tx.commit_with(policy).unwrap();
                assert_eq!(rt.read(id).unwrap(), bytes, "{policy:?} {size}");
                ids.push((id, bytes, epoch, format!("r{i}-{size}")));
            }
        }
        assert_eq!(rt.stats().commits, 9);
        rt.close().unwrap();
    }
    let rt = open(dir.path());
    for (id, bytes, _, root) in &ids {
        assert_eq!(&rt.read(*id).unwrap(), bytes);
        assert_eq!(rt.root(root), Some(*id));
    }
    assert_eq!(rt.visible_epoch(), 9);
    assert_eq!(rt.stats().recovery_records, 9);
}

#[test]
fn updates_retires_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"a1").unwrap();
    let b = tx.alloc(0, b"b1").unwrap();
    let e1 = tx.commit().unwrap();
    let snap1 = rt.snapshot();
    assert_eq!(snap1.epoch(), e1);

    let mut tx = rt.begin();
    tx.write(a, b"a2").unwrap();
    tx.retire(b).unwrap();
    let c = tx.alloc(0, b"c2").unwrap();
    let e2 = tx.commit().unwrap();
    assert_eq!(e2, e1 + 1);

    // The old snapshot still sees epoch 1 exactly.
    assert_eq!(snap1.read(a).unwrap().unwrap(), b"a1");
    assert_eq!(snap1.read(b).unwrap().unwrap(), b"b1");
    assert_eq!(snap1.read(c).unwrap(), None);
    let snap2 = rt.snapshot();
    assert_eq!(snap2.read(a).unwrap().unwrap(), b"a2");
    assert_eq!(snap2.read(b).unwrap(), None);
    assert_eq!(snap2.read(c).unwrap().unwrap(), b"c2");
    drop(snap1);
    drop(snap2);
    rt.sync().unwrap();
    // With no snapshot left and everything durable, the old versions are reclaimed.
    let mut tx = rt.begin();
    tx.write(c, b"c3").unwrap();
    tx.commit().unwrap();
    assert!(rt.stats().slots_reclaimed >= 2, "{:?}", rt.stats());
}

#[test]
fn the_second_writer_of_a_node_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"base").unwrap();
    tx.commit().unwrap();
    let mut t1 = rt.begin();
    let mut t2 = rt.begin();
    t1.write(a, b"one").unwrap();
    t2.write(a, b"two").unwrap();
    t1.commit().unwrap();
    let err = t2.commit().unwrap_err();
    assert!(matches!(err, Error::Conflict { id } if id == a), "{err}");
    assert_eq!(rt.read(a).unwrap(), b"one");
    assert_eq!(rt.stats().conflicts, 1);
}

#[test]
fn aborted_and_dropped_transactions_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"gone").unwrap();
    tx.abort();
    assert!(rt.read(a).is_err());
    {
        let mut tx = rt.begin();
        tx.alloc(0, b"dropped").unwrap();
    }
    let used: u64 = rt.stats().class_used_bytes.iter().sum();
    assert_eq!(used, 0, "every slot given back");
    assert_eq!(rt.stats().aborts, 2);
}

#[test]
fn checkpoint_then_reopen_keeps_everything_and_drops_old_logs() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    {
        let rt = open(dir.path());
        for round in 0..3u8 {
            let mut tx = rt.begin();
            for i in 0..50u8 {
                let bytes = vec![round ^ i; 100 + i as usize];
                expected.push((tx.alloc(2, &bytes).unwrap(), bytes));
            }
            tx.commit().unwrap();
            rt.checkpoint().unwrap();
        }
        let mut tx = rt.begin();
        let (id, _) = expected[0].clone();
        tx.write(id, b"after the checkpoint").unwrap();
        expected[0].1 = b"after the checkpoint".to_vec();
        tx.commit().unwrap();
        assert_eq!(rt.stats().checkpoints, 3);
    }
    let mut logs: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".vlog") || n.ends_with(".ckpt"))
        .collect();
    logs.sort();
    // One log, one checkpoint, and the spare log the next rotation reuses; the other old logs
    // are gone.
    assert_eq!(
        logs,
        [
            "log-0000000000000004.vlog",
            "log-spare.vlog",
            "ot-0000000000000003.ckpt"
        ],
        "one log and one checkpoint remain"
    );
    let rt = open(dir.path());
    for (id, bytes) in &expected {
        assert_eq!(&rt.read(*id).unwrap(), bytes);
    }
}

#[test]
fn a_second_open_is_refused_while_the_first_lives() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let err = DurableRuntime::open(dir.path(), options()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(rt);
    open(dir.path());
}

#[test]
fn a_root_claim_is_exclusive_until_dropped_and_per_runtime_instance() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let claim = rt.claim_root("faster-log:a").unwrap();
    assert_eq!(claim.name(), "faster-log:a");
    match rt.claim_root("faster-log:a") {
        Err(Error::RootClaimed { name }) => assert_eq!(name, "faster-log:a"),
        other => panic!("second claim: {other:?}"),
    }
    // Other names are independent, and a claim is not a root: none exists, and transactions
    // may still set the name (claims coordinate structures, they do not guard the catalog).
    let other = rt.claim_root("faster-log:b").unwrap();
    assert_eq!(rt.root("faster-log:a"), None);
    let mut tx = rt.begin();
    let id = tx.alloc(1, b"x").unwrap();
    tx.set_root("faster-log:a", id).unwrap();
    tx.commit().unwrap();
    assert!(matches!(rt.claim_root(""), Err(Error::InvalidArgument(_))));
    // Released on drop, and claimed again.
    drop(claim);
    let again = rt.claim_root("faster-log:a").unwrap();
    assert!(matches!(
        rt.claim_root("faster-log:a"),
        Err(Error::RootClaimed { .. })
    ));
    drop((again, other));
    // Claims are in memory: a guard may outlive its runtime, and a reopened runtime starts
    // with none.
    let kept = rt.claim_root("faster-log:a").unwrap();
    rt.close().unwrap();
    let rt = open(dir.path());
    let fresh = rt.claim_root("faster-log:a").unwrap();
    drop((kept, fresh));
    assert_eq!(rt.read(rt.root("faster-log:a").unwrap()).unwrap(), b"x");
}

#[test]
fn bad_options_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.balanced_payload_bytes_max = 10 << 20;
    assert!(matches!(
        DurableRuntime::open(dir.path(), o),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn a_snapshot_reader_sees_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"before").unwrap();
    tx.commit().unwrap();
    let snap = rt.snapshot();
    let mut tx = rt.begin();
    tx.write(a, b"after").unwrap();
    let b = tx.alloc(0, b"new").unwrap();
    tx.commit().unwrap();
    let reader = snap.reader();
    assert_eq!(reader.get(a).unwrap(), Some(&b"before"[..]));
    assert_eq!(reader.get(b).unwrap(), None);
}

#[test]
fn back_to_back_checkpoints_without_commits_between() {
    // The second checkpoint once closed the empty open log with an end before its start, which
    // the manifest rightly refused.
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    rt.checkpoint().unwrap();
    rt.checkpoint().unwrap();
    let mut tx = rt.begin();
    let a = tx.alloc(0, b"a").unwrap();
    tx.commit().unwrap();
    rt.checkpoint().unwrap();
    rt.checkpoint().unwrap();
    drop(rt);
    let rt = open(dir.path());
    assert_eq!(rt.read(a).unwrap(), b"a");
    assert_eq!(
        rt.stats().recovery_records,
        0,
        "everything is in the checkpoint"
    );
}

#[test]
fn a_committer_always_sees_its_own_commit() {
    // Commits made durable by another thread's flush must be visible when commit returns.
    let dir = tempfile::tempdir().unwrap();
    let rt = std::sync::Arc::new(open(dir.path()));
    let handles: Vec<_> = (0..8)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    let bytes = [t as u8, i as u8, (i >> 8) as u8];
                    let mut tx = rt.begin();
                    let id = tx.alloc(0, &bytes).unwrap();
                    let policy = [CommitPolicy::Strict, CommitPolicy::Balanced][(i % 2) as usize];
                    let epoch = tx.commit_with(policy).unwrap();
                    let snap = rt.snapshot();
                    assert!(
                        snap.epoch() >= epoch,
                        "snapshot {} before own commit {epoch}",
                        snap.epoch()
                    );
                    assert_eq!(snap.read(id).unwrap().unwrap(), bytes);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn a_data_file_the_manifest_names_must_exist() {
    let dir = tempfile::tempdir().unwrap();
    {
        let rt = open(dir.path());
        let mut tx = rt.begin();
        tx.alloc(0, &[1u8; 100]).unwrap();
        tx.commit().unwrap();
        // The checkpoint records the data files in the manifest.
        rt.checkpoint().unwrap();
    }
    let data = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .find(|e| e.file_name().to_string_lossy().starts_with("data-"))
        .unwrap();
    std::fs::remove_file(data.path()).unwrap();
    let err = DurableRuntime::open(dir.path(), options()).unwrap_err();
    let c = err.as_corruption().unwrap_or_else(|| panic!("{err}"));
    assert_eq!(c.kind, vellum::CorruptionKind::MissingFile);
    assert_eq!(c.file, data.path());
}

#[test]
fn a_corrupt_node_is_reported_by_checked_reads_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let pattern: Vec<u8> = (0..100u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
    let id = {
        let rt = open(dir.path());
        let mut tx = rt.begin();
        let id = tx.alloc(3, &pattern).unwrap();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.close().unwrap();
        id
    };
    // Find the node's bytes in the data files and flip one bit in the middle.
    let mut hit = None;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("data-") {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        if let Some(at) = bytes.windows(pattern.len()).position(|w| w == pattern) {
            bytes[at + 50] ^= 0x10;
            std::fs::write(&path, &bytes).unwrap();
            hit = Some((path, at as u64));
            break;
        }
    }
    let (path, offset) = hit.expect("the node's bytes are in a data file");

    let rt = open(dir.path());
    let snap = rt.snapshot();
    let reader = snap.reader();
    let mut corrupt = pattern.clone();
    corrupt[50] ^= 0x10;
    assert_eq!(reader.get_unverified(id).unwrap(), Some(&corrupt[..]));
    let errors = [
        reader.get(id).map(|_| ()).unwrap_err(),
        snap.read(id).map(|_| ()).unwrap_err(),
        rt.read(id).map(|_| ()).unwrap_err(),
    ];
    for err in errors {
        let c = err.as_corruption().unwrap_or_else(|| panic!("{err}"));
        assert_eq!(c.file, path);
        assert_eq!(c.offset, offset);
        assert_eq!(
            c.kind,
            vellum::CorruptionKind::ChecksumMismatch {
                expected: vellum::codec::crc32c(&pattern),
                actual: vellum::codec::crc32c(&corrupt),
            }
        );
    }
}

#[test]
fn a_store_keeps_the_layout_it_was_created_with() {
    let dir = tempfile::tempdir().unwrap();
    let small = options(); // 64 MiB files, 1 MiB windows
    let mut ids = Vec::new();
    {
        let rt = DurableRuntime::open(dir.path(), small.clone()).unwrap();
        let mut tx = rt.begin();
        for i in 0..4u8 {
            // 20 MiB nodes, extents of exactly 20 MiB: three fill 60 MiB of file 0's one 64 MiB
            // region, the fourth starts file 1.
            ids.push(tx.alloc(1, &vec![i; 20 << 20]).unwrap());
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.close().unwrap();
    }
    let data_files = |dir: &Path| {
        let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name().to_string_lossy().starts_with("data-"))
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = data_files(dir.path());
    assert!(before.iter().all(|(_, len)| *len <= 64 << 20), "{before:?}");
    // Reopened with the default layout (1 GiB files, 64 MiB windows): the store's own layout is
    // kept, every node reads back, and a new node takes the free run of file 1 (under 1 GiB
    // files it would land 64 MiB into file 0 and grow it past 64 MiB).
    let rt = DurableRuntime::open(
        dir.path(),
        RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(rt.read(*id).unwrap(), vec![i as u8; 20 << 20]);
    }
    let mut tx = rt.begin();
    let extra = tx.alloc(1, &vec![9u8; 20 << 20]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    assert_eq!(rt.read(extra).unwrap(), vec![9u8; 20 << 20]);
    rt.close().unwrap();
    let after = data_files(dir.path());
    assert!(after.iter().all(|(_, len)| *len <= 64 << 20), "{after:?}");
    assert_eq!(before.len(), 2, "{before:?}");
    assert_eq!(after.len(), 2, "{after:?}");
}

/// Ids of retired and reclaimed nodes stay stale across a restart, whether the reclamation is in
/// the checkpoint (free handles keep their tags there) or only in the log replayed after it.
fn stale_ids_stay_stale_across_a_restart(checkpoint_after_retire: bool) {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<_>;
    {
        let rt = open(dir.path());
        let mut tx = rt.begin();
        old = (0..200u32)
            .map(|i| tx.alloc(1, &i.to_le_bytes()).unwrap())
            .collect();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        let mut tx = rt.begin();
        for id in &old {
            tx.retire(*id).unwrap();
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.sync().unwrap();
        assert_eq!(rt.stats().slots_reclaimed, 200);
        if checkpoint_after_retire {
            rt.checkpoint().unwrap();
        }
        rt.close().unwrap();
    }
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let new: Vec<_> = (0..200u32)
        .map(|i| tx.alloc(1, &(i + 1000).to_le_bytes()).unwrap())
        .collect();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let handle = |id: vellum::object_table::NodeId| (id.shard(), id.handle());
    let old_handles: std::collections::BTreeSet<_> = old.iter().map(|&id| handle(id)).collect();
    let reused = new
        .iter()
        .filter(|&&id| old_handles.contains(&handle(id)))
        .count();
    // Handles are spread over shards from a per-thread starting shard, so a few new ids may land
    // past the old handles of their shard; most reuse one.
    assert!(reused >= 150, "only {reused} of 200 freed handles reused");
    for id in &old {
        assert!(!new.contains(id), "{id} was issued again after the restart");
        assert!(
            matches!(rt.read(*id), Err(Error::NodeNotFound { .. })),
            "the stale id {id} must not read a new node"
        );
    }
}

#[test]
fn stale_ids_stay_stale_across_a_restart_after_a_checkpoint() {
    stale_ids_stay_stale_across_a_restart(true);
}

#[test]
fn stale_ids_stay_stale_across_a_restart_by_log_replay() {
    stale_ids_stay_stale_across_a_restart(false);
}

/// A flush syncs only the data files holding bytes its records need durable: under BALANCED a
/// node small enough to travel in its record leaves its file for the checkpoint to sync.
#[test]
fn a_flush_syncs_only_the_data_files_its_records_need() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let small = vec![0x11u8; 100];
    let large = vec![0x22u8; 64 << 10];
    assert!(small.len() <= options().balanced_payload_bytes_max);
    assert!(large.len() > options().balanced_payload_bytes_max);
    let commit = |policy, nodes: &[&[u8]]| {
        let before = rt.stats();
        let mut tx = rt.begin();
        for n in nodes {
            tx.alloc(1, n).unwrap();
        }
        tx.commit_with(policy).unwrap();
        let after = rt.stats();
        (
            after.data_syncs - before.data_syncs,
            after.data_file_syncs - before.data_file_syncs,
        )
    };
    // The small node's bytes are in the record: no data sync at all.
    assert_eq!(commit(CommitPolicy::Balanced, &[&small]), (0, 0));
    // The large node's file only, although the small node's file is written too.
    assert_eq!(commit(CommitPolicy::Balanced, &[&small, &large]), (1, 1));
    // STRICT needs both files.
    assert_eq!(commit(CommitPolicy::Strict, &[&small, &large]), (1, 2));
    // The small node's file, written again, waits for the checkpoint: exactly one file left.
    assert_eq!(commit(CommitPolicy::Balanced, &[&small]), (0, 0));
    let before = rt.stats();
    rt.checkpoint().unwrap();
    let after = rt.stats();
    assert_eq!(after.data_file_syncs - before.data_file_syncs, 1);
}

/// A transaction whose small nodes hold more than `record_payload_bytes_max` carries none of
/// them in its record: one data sync makes them durable, the record stays small, and even a
/// transaction whose payloads would overflow a log frame (68 MiB here) commits.
#[test]
fn a_large_transaction_syncs_its_small_nodes_in_the_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.data.alloc.file_bytes_max = 256 << 20;
    o.data.mapped_bytes_max = 256 << 20;
    let node = |i: u32| -> Vec<u8> {
        let mut b = vec![(i % 251) as u8; 4096];
        b[..4].copy_from_slice(&i.to_le_bytes());
        b
    };
    let count = 17_000u32;
    let ids = {
        let rt = DurableRuntime::open(dir.path(), o.clone()).unwrap();
        // A small transaction still carries its nodes in the record: no data sync.
        let before = rt.stats();
        let mut tx = rt.begin();
        for i in 0..200 {
            tx.alloc(1, &node(i)).unwrap();
        }
        tx.commit_with(CommitPolicy::Balanced).unwrap();
        let after = rt.stats();
        assert_eq!(after.data_syncs - before.data_syncs, 0);
        assert!(after.log_bytes_appended - before.log_bytes_appended > 200 * 4096);

        let before = rt.stats();
        let mut tx = rt.begin();
        let ids: Vec<_> = (0..count).map(|i| tx.alloc(1, &node(i)).unwrap()).collect();
        tx.set_root("last", ids[ids.len() - 1]).unwrap();
        tx.commit_with(CommitPolicy::Balanced).unwrap();
        let after = rt.stats();
        assert_eq!(after.data_syncs - before.data_syncs, 1);
        // About 40 bytes per node in the record, none of their 4096.
        let record = after.log_bytes_appended - before.log_bytes_appended;
        assert!(record < u64::from(count) * 64, "{record} record bytes");
        ids
    };
    let rt = DurableRuntime::open(dir.path(), o).unwrap();
    assert_eq!(rt.root("last"), Some(ids[ids.len() - 1]));
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(rt.read(*id).unwrap(), node(i as u32));
    }
}

#[test]
fn record_payload_bytes_max_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.record_payload_bytes_max = o.balanced_payload_bytes_max - 1;
    assert!(matches!(
        DurableRuntime::open(dir.path(), o.clone()),
        Err(Error::InvalidArgument(m)) if m.contains("record_payload_bytes_max")
    ));
    o.record_payload_bytes_max = (32 << 20) + 1;
    assert!(matches!(
        DurableRuntime::open(dir.path(), o),
        Err(Error::InvalidArgument(m)) if m.contains("record_payload_bytes_max")
    ));
}

/// One node rewritten by many EVENTUAL commits queues a retirement per commit; once they are
/// durable, one reclamation pass frees every superseded version (the pass trims each node once,
/// not once per entry) and the node reads its last bytes.
#[test]
fn a_node_rewritten_many_times_frees_every_old_version() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path());
    let mut tx = rt.begin();
    let id = tx.alloc(1, &[0u8; 64]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let before = rt.stats().slots_reclaimed;
    for i in 1..=1000u32 {
        let mut tx = rt.begin();
        let mut bytes = [0u8; 64];
        bytes[..4].copy_from_slice(&i.to_le_bytes());
        tx.write(id, &bytes).unwrap();
        tx.commit_with(CommitPolicy::Eventual).unwrap();
    }
    rt.sync().unwrap();
    assert_eq!(rt.stats().slots_reclaimed - before, 1000);
    assert_eq!(&rt.read(id).unwrap()[..4], &1000u32.to_le_bytes());
}

/// EVENTUAL commits buffer their records for the flusher, but never more than
/// `eventual_buffer_bytes_max`: a burst faster than the flusher makes the commit that passes the
/// bound flush, so at most the bound's worth of commits (256 records of 4 KiB here) is ever
/// volatile, whatever the flush interval.
#[test]
fn eventual_commits_buffer_at_most_their_bound() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(
        dir.path(),
        RuntimeOptions {
            eventual_flush_interval: std::time::Duration::from_secs(60),
            eventual_buffer_bytes_max: 1 << 20,
            ..options()
        },
    )
    .unwrap();
    let mut most_volatile = 0;
    for i in 0..2000u32 {
        let mut tx = rt.begin();
        tx.alloc(1, &[(i % 251) as u8; 4096]).unwrap();
        tx.commit_with(CommitPolicy::Eventual).unwrap();
        most_volatile = most_volatile.max(rt.visible_epoch() - rt.durable_epoch());
    }
    assert!(
        (200..=256).contains(&most_volatile),
        "at most the bound's 256 commits volatile: {most_volatile}"
    );
    assert!(rt.durable_epoch() >= 2000 - 256);
}

/// `checkpoint_interval` checkpoints a store that changed, not an idle one: with nothing
/// committed since the checkpoint in force, no checkpoint is written however many intervals
/// pass; the first commit after that makes the next interval checkpoint it.
#[test]
fn an_idle_store_is_not_checkpointed_every_interval() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let mut o = options();
    o.checkpoint_interval = Some(Duration::from_millis(20));
    o.eventual_flush_interval = Duration::from_millis(5);
    let rt = DurableRuntime::open(dir.path(), o).unwrap();
    let wait_for = |n: u64| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while rt.stats().checkpoints < n {
            assert!(Instant::now() < deadline, "no checkpoint {n}");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    let mut tx = rt.begin();
    tx.alloc(1, b"one").unwrap();
    tx.commit().unwrap();
    wait_for(1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rt.stats().checkpoints, 1, "an idle store is left alone");
    let mut tx = rt.begin();
    tx.alloc(1, b"two").unwrap();
    tx.commit().unwrap();
    wait_for(2);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(rt.stats().checkpoints, 2);
}
