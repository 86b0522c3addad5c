//! Regression (found by `vellum bench kv --cold`, stop 21): with a small `mapped_bytes_max`, a
//! reader of large nodes beside a thread committing new large nodes kept far more data-file
//! windows mapped than the budget: with 128 MiB (two 64 MiB windows) the process held up to 729
//! windows (45 GiB of address space, much of it resident) at once. Evicted windows are unmapped
//! by `crossbeam-epoch`'s deferred destruction, which waits until every pinned thread has moved
//! past the eviction's epoch; the writer stayed pinned through its 2 MiB `write_at`, its
//! writeback start, every data-file `fdatasync` and a commit's flush wait, and the maintenance
//! thread through each hole it punched to return a segment, so the epoch rarely advanced. No
//! thread now holds a guard across I/O, and readers run the collector once their guard is gone.

use std::sync::atomic::{AtomicBool, Ordering::Relaxed};

use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

const BUDGET_BYTES: u64 = 128 << 20;
const NODE_BYTES: usize = 2 << 20;
/// Nodes the writer commits at most (2 MiB each).
const WRITES_MAX: u32 = 400;

/// Data-file mappings of this process and their bytes, from `/proc/self/maps`.
fn data_mappings() -> (usize, u64) {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut count = 0;
    let mut bytes = 0;
    for line in maps.lines().filter(|l| l.contains("data-")) {
        let range = line.split_whitespace().next().unwrap();
        let (a, b) = range.split_once('-').unwrap();
        count += 1;
        bytes += u64::from_str_radix(b, 16).unwrap() - u64::from_str_radix(a, 16).unwrap();
    }
    (count, bytes)
}

#[test]
fn mapped_windows_stay_within_the_budget_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    options.data.mapped_bytes_max = BUDGET_BYTES;
    let rt = DurableRuntime::open(dir.path(), options).unwrap();
    let mut ids = Vec::new();
    for i in 0..120u8 {
        let mut tx = rt.begin();
        ids.push(tx.alloc_with(0x4c, NODE_BYTES, |b| b.fill(i)).unwrap());
        tx.commit_with(CommitPolicy::Eventual).unwrap();
    }
    let stop = AtomicBool::new(false);
    let mut worst = (0, 0);
    std::thread::scope(|s| {
        s.spawn(|| {
            // At most WRITES_MAX nodes, each replacing the last, so the files stay small.
            let mut last = None;
            for i in 0..WRITES_MAX {
                if stop.load(Relaxed) {
                    break;
                }
                let mut tx = rt.begin();
                let id = tx
                    .alloc_with(0x4c, NODE_BYTES, |b| b.fill(i as u8))
                    .unwrap();
                if let Some(old) = last.replace(id) {
                    tx.retire(old).unwrap();
                }
                tx.commit_with(CommitPolicy::Eventual).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        });
        let mut x = 1u64;
        for round in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let id = ids[(x % ids.len() as u64) as usize];
            let snapshot = rt.snapshot();
            let reader = snapshot.reader();
            let bytes = reader.get_unverified(id).unwrap().unwrap();
            assert_eq!(bytes.len(), NODE_BYTES);
            if round % 500 == 0 {
                worst = worst.max(data_mappings());
            }
        }
        stop.store(true, Relaxed);
    });
    // The budget, plus windows evicted but not yet unmapped: their unmapping waits for every
    // pinned thread to move on, and on a loaded machine (the workspace's tests run side by
    // side) a reader preempted while pinned holds it back for a while. 6 windows (384 MiB)
    // were seen so; the bound, four times the budget, still fails the regression (729
    // windows, 45 GiB) ninety times over.
    assert!(
        worst.1 <= 4 * BUDGET_BYTES,
        "worst {} mappings, {} MiB",
        worst.0,
        worst.1 >> 20
    );
}
