//! Wholly free segments go back to the filesystem: after freeing every slot of many segments and
//! punching the empty ones, the data files occupy (nearly) only the live segments' blocks.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::sync::Arc;

use vellum::alloc::{AllocOptions, DataFileOptions, DataFiles, SegmentAllocator, class_for_len};
use vellum::io::{FaultStorage, OsStorage, Storage};

/// `DataFiles::write_unchecked` for this file, which writes each slot before it reads it and
/// never reads a slot while writing it: `DataFiles` invariant 6, the function's contract.
fn write_slot(files: &DataFiles, loc: vellum::alloc::Location, data: &[u8]) -> vellum::Result<()> {
    // SAFETY: see above: no slice of this slot is alive while it is written.
    unsafe { files.write_unchecked(loc, data) }
}

/// `DataFiles::read_unchecked` under the same discipline as [`write_slot`].
fn read_slot<'g>(
    files: &'g DataFiles,
    loc: vellum::alloc::Location,
    len: usize,
    guard: &'g crossbeam_epoch::Guard,
) -> vellum::Result<&'g [u8]> {
    // SAFETY: see `write_slot`: the slot is not written while the slice lives.
    unsafe { files.read_unchecked(loc, len, guard) }
}

/// Data files in `dir` (64 MiB files, 1 MiB windows) and an empty allocator.
fn open(storage: Arc<dyn Storage>, dir: &std::path::Path) -> (DataFiles, SegmentAllocator) {
    storage.create_dir_all(dir).unwrap();
    let options = DataFileOptions {
        alloc: AllocOptions {
            file_bytes_max: 64 << 20,
        },
        window_bytes: 1 << 20,
        mapped_bytes_max: 8 << 20,
    };
    let files = DataFiles::open(storage, dir, options, &[]).unwrap();
    let alloc = SegmentAllocator::new(options.alloc).unwrap();
    (files, alloc)
}

fn run(storage: Arc<dyn Storage>, dir: &std::path::Path) {
    let (files, alloc) = open(storage, dir);
    let class = class_for_len(64 << 10).unwrap();
    // 32 segments of 1 MiB, 16 slots each, every byte written.
    let locs: Vec<_> = (0..32 * 16)
        .map(|_| files.allocate_slot(&alloc, class).unwrap())
        .collect();
    for l in &locs {
        write_slot(&files, *l, &[0xab; 64 << 10]).unwrap();
    }
    files.sync_written().unwrap();
    let full = files.allocated_bytes().unwrap();
    assert!(full >= 32 << 20, "{full}");
    // Free everything but one slot in each of the first 4 segments.
    for (i, l) in locs.iter().enumerate() {
        if !(i % 16 == 0 && i < 64) {
            alloc.free(*l).unwrap();
        }
    }
    let empty = alloc
        .return_empty(usize::MAX, 0, |seg| files.punch(seg))
        .unwrap();
    assert_eq!(empty.len(), 28, "exactly the wholly free segments");
    let after = files.allocated_bytes().unwrap();
    assert!(
        after <= (4 << 20) + (256 << 10),
        "allocated {after} bytes for 4 live segments"
    );
    assert_eq!(alloc.space(class).returned_segments, 28);
    // The live slots still read back exactly.
    let guard = crossbeam_epoch::pin();
    for l in locs.iter().step_by(16).take(4) {
        assert!(
            read_slot(&files, *l, 64 << 10, &guard)
                .unwrap()
                .iter()
                .all(|&b| b == 0xab)
        );
    }
}

#[test]
fn empty_segments_are_returned_on_a_real_filesystem() {
    let dir = tempfile::tempdir().unwrap();
    run(Arc::new(OsStorage::new()), dir.path());
}

#[test]
fn empty_segments_are_returned_on_the_fault_storage() {
    run(Arc::new(FaultStorage::new(1)), std::path::Path::new("/db"));
}

#[test]
fn a_full_disk_fails_allocation_cleanly_instead_of_a_mapped_write() {
    let fs = FaultStorage::new(2);
    let (files, alloc) = open(Arc::new(fs.clone()), std::path::Path::new("/db"));
    let class = class_for_len(64 << 10).unwrap();
    // Room for two 1 MiB segments.
    fs.set_space_bytes_max(Some(2 << 20));
    let mut got = Vec::new();
    let err = loop {
        match files.allocate_slot(&alloc, class) {
            Ok(l) => got.push(l),
            Err(e) => break e,
        }
    };
    assert!(err.is_no_space(), "{err}");
    assert_eq!(
        got.len(),
        32,
        "exactly two segments of 16 slots were usable"
    );
    assert_eq!(
        alloc.space(class).used_slots,
        32,
        "the failed slot was given back"
    );
    for l in &got {
        write_slot(&files, *l, &[7; 64 << 10]).unwrap();
    }
    // Space comes back: the next allocation reserves the third segment and succeeds.
    fs.set_space_bytes_max(None);
    let l = files.allocate_slot(&alloc, class).unwrap();
    write_slot(&files, l, &[8; 16]).unwrap();
}

/// `return_empty` with a spare keeps the most recently emptied segment of each small-segment
/// class reserved (so steady churn does not punch and reserve it again), returns the rest, and
/// never keeps a spare of a class whose segments are larger than 1 MiB.
#[test]
fn a_spare_segment_per_small_class_keeps_its_blocks() {
    let (files, alloc) = open(Arc::new(FaultStorage::new(3)), std::path::Path::new("/db"));
    let small = class_for_len(64 << 10).unwrap();
    let large = class_for_len(2 << 20).unwrap();
    assert!(vellum::alloc::segment_bytes(small) <= vellum::alloc::SPARE_SEGMENT_BYTES_MAX);
    assert!(vellum::alloc::segment_bytes(large) > vellum::alloc::SPARE_SEGMENT_BYTES_MAX);
    // Three small segments (16 slots each) and two adjacent large extents, all freed.
    let smalls: Vec<_> = (0..48)
        .map(|_| files.allocate_slot(&alloc, small).unwrap())
        .collect();
    let larges: Vec<_> = (0..2)
        .map(|_| files.allocate(&alloc, large, 2 << 20).unwrap())
        .collect();
    for l in smalls.iter().chain(&larges) {
        alloc.free(*l).unwrap();
    }
    let returned = alloc
        .return_empty(usize::MAX, 1, |seg| files.punch(seg))
        .unwrap();
    let count = |class| returned.iter().filter(|s| s.class == class).count();
    // The two extents coalesced into one free run of 4 MiB, punched as one.
    assert_eq!((count(small), count(large)), (2, 1));
    let run = returned.iter().find(|s| s.class == large).unwrap();
    assert_eq!((run.offset, run.len), (0, 4 << 20));
    assert_eq!(alloc.space(small).returned_segments, 2);
    // The spare stays spare on the next pass, and is returned when no spare is wanted.
    let again = alloc
        .return_empty(usize::MAX, 1, |seg| files.punch(seg))
        .unwrap();
    assert!(again.is_empty());
    let last = alloc
        .return_empty(usize::MAX, 0, |seg| files.punch(seg))
        .unwrap();
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].class, small);
    assert_eq!(alloc.space(small).returned_segments, 3);
}
