//! Zero-copy node writes: `WriteTxn::alloc_with` and `write_with` fill the new version's slot in
//! place (through the mapped window below 64 KiB, through one reusable buffer and `write_at`
//! from it up). Exact bytes back, zeroed bytes where `fill` writes nothing (never a freed
//! version's), no leaked slot when `fill` panics, small nodes' copies in the record (a BALANCED
//! commit survives a power loss), conflicts as for `write`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Arc;

use vellum::io::{CrashMode, FaultStorage};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{Error, NodeId};

mod common;

const DIR: &str = "/store";

fn open(fs: &FaultStorage) -> DurableRuntime {
    DurableRuntime::open_with(
        Arc::new(fs.clone()),
        Path::new(DIR),
        common::small_deterministic_options(),
    )
    .unwrap_or_else(|e| panic!("open: {e}"))
}

/// `len` bytes of a pattern that differs per `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Slots in use over every size class.
fn used_slots(rt: &DurableRuntime) -> u64 {
    (0..32u8)
        .flat_map(|class| rt.segment_usage(class))
        .map(|s| u64::from(s.used_slots))
        .sum()
}

#[test]
fn filled_nodes_read_back_exactly_in_place_and_through_the_buffer() {
    let fs = common::fault_storage(1, DIR);
    let rt = open(&fs);
    // 16 B to 48 KiB fill the mapped slot; 64 KiB and 1 MiB + 3 go through the buffer.
    let lens = [16usize, 100, 4096, 48 << 10, 64 << 10, (1 << 20) + 3];
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = lens
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let want = pattern(len, i as u8);
            tx.alloc_with(3, len, |buf| {
                assert_eq!(buf.len(), len, "fill gets exactly len bytes");
                buf.copy_from_slice(&want);
            })
            .unwrap()
        })
        .collect();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    for (i, (&id, &len)) in ids.iter().zip(&lens).enumerate() {
        assert_eq!(rt.read(id).unwrap(), pattern(len, i as u8), "{len} bytes");
    }
    // The checksums were taken over the bytes as written.
    assert_eq!(rt.verify().unwrap().0, lens.len() as u64);
    // And the nodes survive a close and a reopen.
    rt.close().unwrap();
    let rt = open(&fs);
    for (i, (&id, &len)) in ids.iter().zip(&lens).enumerate() {
        assert_eq!(
            rt.read(id).unwrap(),
            pattern(len, i as u8),
            "{len} bytes, reopened"
        );
    }
}

#[test]
fn a_fill_that_writes_nothing_leaves_zeros_not_a_freed_version() {
    let fs = common::fault_storage(2, DIR);
    let rt = open(&fs);
    for len in [3000usize, 40 << 10, 100 << 10] {
        // Fill a whole 1 MiB segment of the node's class with 0xff (its allocation cursor
        // wraps back to the first slot), retire all but its last node and let them be reclaimed
        // (the last keeps the segment from being returned to the filesystem, which would zero
        // it) ...
        let per_segment = (1usize << 20) / len.next_power_of_two();
        let mut tx = rt.begin();
        let old: Vec<NodeId> = (0..per_segment)
            .map(|_| tx.alloc(1, &vec![0xff; len]).unwrap())
            .collect();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        let before = used_slots(&rt);
        let mut tx = rt.begin();
        for id in &old[..per_segment - 1] {
            tx.retire(*id).unwrap();
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.checkpoint().unwrap();
        let freed = per_segment as u64 - 1;
        assert_eq!(
            used_slots(&rt),
            before - freed,
            "{len}: the retired slots are free"
        );
        // ... then fill new nodes of the same size without writing a byte: they take the freed
        // slots, and every byte reads as zero.
        let mut tx = rt.begin();
        let new: Vec<NodeId> = (0..freed)
            .map(|_| tx.alloc_with(1, len, |_| {}).unwrap())
            .collect();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        assert_eq!(
            used_slots(&rt),
            before,
            "{len}: the freed slots were reused"
        );
        for id in new {
            assert_eq!(rt.read(id).unwrap(), vec![0; len], "{len} bytes");
        }
    }
}

/// The message a caught panic carried; fails the test if nothing panicked.
fn panic_message<T>(caught: std::thread::Result<T>) -> String {
    match caught {
        Ok(_) => panic!("expected the fill's panic"),
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default(),
    }
}

#[test]
fn a_panicking_fill_gives_its_slot_back_and_the_transaction_goes_on() {
    let fs = common::fault_storage(3, DIR);
    let rt = open(&fs);
    let mut tx = rt.begin();
    let kept = tx.alloc(1, b"kept").unwrap();
    let used = used_slots(&rt);
    for len in [64usize, 256 << 10] {
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            tx.alloc_with(1, len, |_| panic!("fill failed")).unwrap()
        }));
        assert_eq!(
            panic_message(panicked),
            "fill failed",
            "{len}: the fill's panic reaches the caller"
        );
        assert_eq!(used_slots(&rt), used, "{len}: no slot leaked by alloc_with");
        let panicked = catch_unwind(AssertUnwindSafe(|| {
            tx.write_with(kept, len, |_| panic!("fill failed")).unwrap()
        }));
        assert_eq!(panic_message(panicked), "fill failed");
        assert_eq!(used_slots(&rt), used, "{len}: no slot leaked by write_with");
    }
    let epoch = tx.commit_with(CommitPolicy::Strict).unwrap();
    assert_eq!(rt.read(kept).unwrap(), b"kept");
    assert_eq!(rt.node_ids(), vec![kept], "only the node committed exists");
    assert_eq!(rt.durable_epoch(), epoch);
}

#[test]
fn write_with_replaces_a_version_and_its_own_earlier_one() {
    let fs = common::fault_storage(4, DIR);
    let rt = open(&fs);
    let mut tx = rt.begin();
    let id = tx.alloc(9, b"first").unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let used = used_slots(&rt);
    let mut tx = rt.begin();
    tx.write_with(id, 6, |b| b.copy_from_slice(b"second"))
        .unwrap();
    tx.write_with(id, 70 << 10, |b| b.fill(7)).unwrap();
    tx.write_with(id, 5, |b| b.copy_from_slice(b"third"))
        .unwrap();
    assert_eq!(
        tx.read(id).unwrap(),
        b"third",
        "the transaction sees its last version"
    );
    assert_eq!(
        used_slots(&rt),
        used + 1,
        "earlier versions of the transaction were freed"
    );
    tx.commit_with(CommitPolicy::Strict).unwrap();
    assert_eq!(rt.read(id).unwrap(), b"third");
}

#[test]
fn write_with_conflicts_with_a_commit_in_between() {
    let fs = common::fault_storage(5, DIR);
    let rt = open(&fs);
    let mut tx = rt.begin();
    let id = tx.alloc(1, b"base").unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let mut slow = rt.begin();
    assert_eq!(slow.read(id).unwrap(), b"base");
    let mut fast = rt.begin();
    fast.write(id, b"fast").unwrap();
    fast.commit_with(CommitPolicy::Strict).unwrap();
    slow.write_with(id, 4, |b| b.copy_from_slice(b"slow"))
        .unwrap();
    match slow.commit_with(CommitPolicy::Strict) {
        Err(Error::Conflict { id: c }) => assert_eq!(c, id),
        other => panic!("expected a conflict on {id:?}, got {other:?}"),
    }
    assert_eq!(rt.read(id).unwrap(), b"fast");
}

#[test]
fn small_filled_nodes_travel_in_a_balanced_record_and_survive_a_power_loss() {
    let fs = common::fault_storage(6, DIR);
    let rt = open(&fs);
    let mut tx = rt.begin();
    let small = tx
        .alloc_with(1, 100, |b| b.copy_from_slice(&pattern(100, 1)))
        .unwrap();
    tx.commit_with(CommitPolicy::Balanced).unwrap();
    let before = rt.stats().data_file_syncs;
    // A BALANCED commit of a small node syncs no data file: the record carries its bytes.
    let mut tx = rt.begin();
    tx.write_with(small, 120, |b| b.copy_from_slice(&pattern(120, 2)))
        .unwrap();
    tx.commit_with(CommitPolicy::Balanced).unwrap();
    assert_eq!(rt.stats().data_file_syncs, before, "no data file synced");
    let fs = fs.crash_with(CrashMode::DropUnsynced);
    drop(rt);
    let rt = open(&fs);
    assert_eq!(rt.read(small).unwrap(), pattern(120, 2));
}

#[test]
fn oversized_and_poisoned_fills_are_refused_before_fill_runs() {
    let fs = common::fault_storage(7, DIR);
    let rt = open(&fs);
    let mut tx = rt.begin();
    let mut ran = false;
    let too_big = (64usize << 20) + 1;
    match tx.alloc_with(1, too_big, |_| ran = true) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("at most"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(!ran, "fill never ran for a refused node");
    assert_eq!(used_slots(&rt), 0);
}
