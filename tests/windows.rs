//! Mapped windows under a budget small enough to force constant eviction: a pinned window is
//! never unmapped (its bytes stay readable and exact), and the installed bytes stay within budget.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vellum::alloc::{AllocOptions, DataFileOptions, DataFiles, Location};
use vellum::io::{OsStorage, Storage};

/// `DataFiles::write_unchecked` for this file, which writes each slot before it reads it and
/// never reads a slot while writing it: `DataFiles` invariant 6, the function's contract.
fn write_slot(files: &DataFiles, loc: Location, data: &[u8]) -> vellum::Result<()> {
    // SAFETY: see above: no slice of this slot is alive while it is written.
    unsafe { files.write_unchecked(loc, data) }
}

/// `DataFiles::read_unchecked` under the same discipline as [`write_slot`].
fn read_slot<'g>(
    files: &'g DataFiles,
    loc: Location,
    len: usize,
    guard: &'g crossbeam_epoch::Guard,
) -> vellum::Result<&'g [u8]> {
    // SAFETY: see `write_slot`: the slot is not written while the slice lives.
    unsafe { files.read_unchecked(loc, len, guard) }
}

const WINDOW: u64 = 1 << 20;
const BUDGET: u64 = 2 << 20;
const WINDOWS: u64 = 12;

fn files(dir: &std::path::Path) -> DataFiles {
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let options = DataFileOptions {
        alloc: AllocOptions {
            file_bytes_max: 64 << 20,
        },
        window_bytes: WINDOW,
        mapped_bytes_max: BUDGET,
    };
    DataFiles::open(storage, dir, options, &[]).unwrap()
}

/// A 64-byte slot in window `w`, with content that names it.
fn slot(w: u64) -> (Location, Vec<u8>) {
    let loc = Location {
        class: 2,
        file: 0,
        offset: w * WINDOW + 4096,
    };
    (loc, vec![w as u8 + 1; 64])
}

/// Runs the epoch collector until `f`'s evicted windows are unmapped (other tests in this
/// process share the collector's queue, so this may take many rounds).
fn collect_garbage(f: &DataFiles) {
    // Another test's thread pinned meanwhile holds the epoch back; on a loaded machine it may
    // wait for the CPU a while, so the rounds go on for up to 30 s, giving way between them.
    let started = std::time::Instant::now();
    for round in 0u64.. {
        if f.mapped_bytes() <= BUDGET || started.elapsed() > std::time::Duration::from_secs(30) {
            return;
        }
        crossbeam_epoch::pin().flush();
        if round % 1024 == 1023 {
            std::thread::yield_now();
        }
    }
}

#[test]
fn pinned_window_survives_eviction() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path());
    for w in 0..WINDOWS {
        let (loc, data) = slot(w);
        write_slot(&f, loc, &data).unwrap();
    }
    collect_garbage(&f);
    assert!(f.installed_bytes() <= BUDGET);

    let guard = crossbeam_epoch::pin();
    let (loc0, data0) = slot(0);
    let pinned = read_slot(&f, loc0, 64, &guard).unwrap();
    // Touch every other window: window 0 is evicted from the table many times over.
    for round in 0..3 {
        for w in 1..WINDOWS {
            let (loc, data) = slot(w);
            assert_eq!(
                read_slot(&f, loc, 64, &guard).unwrap(),
                &data[..],
                "round {round} window {w}"
            );
            assert!(
                f.installed_bytes() <= BUDGET,
                "installed {}",
                f.installed_bytes()
            );
        }
    }
    // Evicted windows cannot be unmapped while this guard pins them: still mapped, still exact.
    assert!(
        f.mapped_bytes() > BUDGET,
        "evictions were deferred, not performed"
    );
    assert_eq!(pinned, &data0[..]);
    drop(guard);
    collect_garbage(&f);
    assert!(
        f.mapped_bytes() <= BUDGET,
        "after the pin is released the evicted windows are unmapped: {}",
        f.mapped_bytes()
    );
}

#[test]
fn readers_and_evictors_in_parallel_always_see_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let f = Arc::new(files(dir.path()));
    for w in 0..WINDOWS {
        let (loc, data) = slot(w);
        write_slot(&f, loc, &data).unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2u64)
        .map(|t| {
            let f = f.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let guard = crossbeam_epoch::pin();
                    let w = (reads + t) % WINDOWS;
                    let (loc, data) = slot(w);
                    let bytes = read_slot(&f, loc, 64, &guard).unwrap();
                    // Hold the pin while others evict, then check again.
                    std::hint::spin_loop();
                    assert_eq!(bytes, &data[..]);
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    for round in 0..2000u64 {
        let guard = crossbeam_epoch::pin();
        let (loc, data) = slot(round % WINDOWS);
        assert_eq!(read_slot(&f, loc, 64, &guard).unwrap(), &data[..]);
    }
    stop.store(true, Ordering::Relaxed);
    let total: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(total > 0);
    assert!(f.installed_bytes() <= BUDGET);
}
