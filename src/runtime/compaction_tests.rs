//! Compaction against concurrent reclamation.

use std::path::Path;
use std::sync::{Arc, mpsc};
use std::time::Duration;

use super::*;
use crate::io::{FaultStorage, Storage};
use crate::runtime::{DurableRuntime, RuntimeOptions};

/// 20 000 nodes of 128 bytes (class 3: segments of 8 192 slots, so three segments holding
/// 8 192, 8 192 and 3 616 nodes), all written before any is retired so that none reuses a
/// freed slot; then every tenth is kept live: 820, 819 and 361 in the three segments.
fn sparse(rt: &DurableRuntime) -> Vec<(NodeId, Vec<u8>)> {
    let mut all = Vec::new();
    for round in 0..20u64 {
        let mut tx = rt.begin();
        for i in 0..1000u64 {
            let bytes = vec![(round * 7 + i) as u8; 128];
            all.push((tx.alloc(1, &bytes).unwrap(), bytes));
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
    }
    let mut tx = rt.begin();
    let mut live = Vec::new();
    for (i, (id, bytes)) in all.into_iter().enumerate() {
        if i % 10 == 0 {
            live.push((id, bytes));
        } else {
            tx.retire(id).unwrap();
        }
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    live
}

/// Regression (CI of stop 20, `vellum compact` reporting "returned 0 segments"): M6 ran while
/// another thread held the reclamation queue, because compaction's reclamation gave up on a
/// busy lock; the old slots of the moved nodes were still allocated, so no segment was empty.
/// Here a snapshot keeps those slots until the last batch has moved, and then another thread
/// holds the queue: compaction must wait for it and return both emptied segments (the densest
/// segment stays and takes the 1 180 nodes of the other two).
#[test]
fn compaction_waits_for_a_reclamation_in_progress() {
    let fs = FaultStorage::new(11);
    let dir = Path::new("/s");
    fs.create_dir_all(dir).unwrap();
    let mut options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    options.compaction.interval = None;
    let rt = DurableRuntime::open_with(Arc::new(fs), dir, options).unwrap();
    let live = sparse(&rt);
    // The retired slots are free before the pass looks at the segments.
    rt.inner.engine().reclaim_ready_now();
    let used: Vec<u32> = (rt.inner.alloc.segment_usage(3).iter())
        .map(|u| u.used_slots)
        .collect();
    assert_eq!(used, [820, 819, 361]);
    let mut snapshot = Some(rt.snapshot());
    let (held_tx, held_rx) = mpsc::channel();
    let report = std::thread::scope(|s| {
        let mut on_progress = |p: CompactProgress| {
            if p.nodes_done < p.nodes_total || snapshot.is_none() {
                return;
            }
            let tx = held_tx.clone();
            let reclaim = &rt.inner.reclaim;
            s.spawn(move || {
                let queue = reclaim.hold();
                tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                drop(queue);
            });
            held_rx.recv().unwrap();
            snapshot = None;
        };
        rt.compact_with(&CompactionOptions::full(), &mut on_progress)
            .unwrap()
    });
    assert_eq!(report.victims, 2, "{report:?}");
    assert_eq!(report.nodes_moved, 1180, "{report:?}");
    assert_eq!(report.segments_returned, 2, "{report:?}");
    for (id, bytes) in &live {
        assert_eq!(&rt.read(*id).unwrap(), bytes, "node {id}");
    }
    assert_eq!(rt.verify().unwrap().0, live.len() as u64);
}
