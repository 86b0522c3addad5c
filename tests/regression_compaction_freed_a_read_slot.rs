//! Regression: reclamation freed the slot a compaction had moved a node out of while a snapshot
//! older than the move still borrowed its bytes.
//!
//! A move keeps the version's birth (same bytes, no conflicts), so the moved-from version is
//! visible at no epoch once the move is applied: a snapshot taken before the move resolves the
//! new location from then on. But a reader that resolved the old location *before* the move
//! still reads it, so its slot may be freed only once no snapshot older than the move remains
//! (the move's own retirement). A pass that trimmed the node for an earlier retirement (the
//! update before the move) cut every version invisible at its limit, the moved-from one
//! included, and freed its slot under the reader: the next compaction pass punched the wholly
//! free segment, and the borrowed bytes turned to zeros.

use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime};

mod common;

/// 128-byte nodes fill class-3 slots exactly: 8192 a 1 MiB segment.
const NODE_BYTES: usize = 128;
const SLOTS_PER_SEGMENT: usize = 8192;

#[test]
fn a_moved_from_slot_stays_allocated_while_an_older_snapshot_borrows_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), common::small_deterministic_options()).unwrap();
    // Segment 0 full of nodes, nine in ten then retired; the node under test alone in segment 1.
    let mut tx = rt.begin();
    let filler: Vec<_> = (0..SLOTS_PER_SEGMENT)
        .map(|i| tx.alloc(1, &[i as u8; NODE_BYTES]).unwrap())
        .collect();
    let id = tx.alloc(1, &[0xa0; NODE_BYTES]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let mut tx = rt.begin();
    for (i, f) in filler.iter().enumerate() {
        if i % 10 != 0 {
            tx.retire(*f).unwrap();
        }
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.sync().unwrap();
    let used = |segment: usize| rt.segment_usage(3)[segment].used_slots;
    assert_eq!(used(1), 1, "the node alone in segment 1");

    // A snapshot that holds the update's retirement back, then the update (its new version
    // goes to segment 1 too), then a snapshot at the update that borrows the new version.
    let holder = rt.snapshot();
    let mut tx = rt.begin();
    tx.write(id, &[0xb1; NODE_BYTES]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let reader_snapshot = rt.snapshot();
    let reader = reader_snapshot.reader();
    let borrowed = reader.get(id).unwrap().unwrap();
    assert_eq!(borrowed, &[0xb1; NODE_BYTES][..]);
    assert_eq!(used(1), 2, "the node's two versions in segment 1");

    // The move: segment 1 is the victim, its one live node goes to segment 0.
    let moved = rt
        .compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    assert_eq!(moved.nodes_moved, 1);
    // The update's retirement becomes due at the reader's epoch; the move's stays held by it.
    drop(holder);
    rt.sync().unwrap();
    assert_eq!(
        used(1),
        1,
        "the moved-from slot stays allocated while the reader's snapshot is older than the move"
    );
    rt.compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    assert_eq!(
        borrowed,
        &[0xb1; NODE_BYTES][..],
        "the borrowed bytes are intact"
    );
    drop(reader);
    drop(reader_snapshot);

    // With the reader gone the moved-from slot is freed and segment 1 empties.
    rt.sync().unwrap();
    assert_eq!(used(1), 0);
    assert_eq!(rt.read(id).unwrap(), [0xb1; NODE_BYTES]);
}
