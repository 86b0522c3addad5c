//! Threads allocating, updating and retiring nodes through the object table, the allocator and
//! the data files at once. At the end: exactly the expected live set, every node's bytes exact,
//! no two live versions overlapping on disk, and no allocated slot without an owner.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use vellum::alloc::{
    AllocOptions, DataFileOptions, DataFiles, Location, SegmentAllocator, class_for_len,
};
use vellum::codec::crc32c;
use vellum::io::{OsStorage, Storage};
use vellum::object_table::{NodeId, ObjectTable, Version};

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

struct Store {
    table: ObjectTable,
    alloc: SegmentAllocator,
    files: DataFiles,
    epoch: AtomicU64,
}

fn options() -> DataFileOptions {
    DataFileOptions {
        alloc: AllocOptions {
            file_bytes_max: 64 << 20,
        },
        window_bytes: 1 << 20,
        mapped_bytes_max: 64 << 20,
    }
}

fn content(id: NodeId, round: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let seed = id.raw() ^ round.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    while v.len() < len {
        v.extend_from_slice(&seed.wrapping_add(v.len() as u64).to_le_bytes());
    }
    v.truncate(len);
    v
}

impl Store {
    fn write_version(&self, id: NodeId, round: u64, len: usize) -> Version {
        let bytes = content(id, round, len);
        let loc = self
            .files
            .allocate_slot(&self.alloc, class_for_len(len as u64).unwrap())
            .unwrap();
        write_slot(&self.files, loc, &bytes).unwrap();
        Version {
            location: loc,
            len: len as u32,
            crc32c: crc32c(&bytes),
            kind: 1,
            birth: self.epoch.fetch_add(1, Ordering::AcqRel) + 1,
        }
    }
}

#[test]
fn concurrent_writers_keep_exact_live_set_and_disjoint_slots() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let store = Arc::new(Store {
        table: ObjectTable::new(),
        alloc: SegmentAllocator::new(options().alloc).unwrap(),
        files: DataFiles::open(storage, dir.path(), options(), &[]).unwrap(),
        epoch: AtomicU64::new(0),
    });
    const THREADS: u64 = 4;
    const OPS: u64 = 3000;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let s = store.clone();
            std::thread::spawn(move || {
                // id -> (round, len) of the current version.
                let mut mine: HashMap<NodeId, (u64, usize)> = HashMap::new();
                let mut retired = 0u64;
                for i in 0..OPS {
                    let guard = crossbeam_epoch::pin();
                    let len = [40usize, 200, 1000, 5000][((i + t) % 4) as usize];
                    let pick = mine
                        .keys()
                        .nth((i as usize * 7) % mine.len().max(1))
                        .copied();
                    match (i % 5, pick) {
                        (0 | 1, _) | (_, None) => {
                            let id = s.table.reserve().unwrap();
                            let v = s.write_version(id, i, len);
                            s.table.publish(id, v).unwrap();
                            mine.insert(id, (i, len));
                        }
                        (2 | 3, Some(id)) => {
                            let v = s.write_version(id, i, len);
                            s.table.update(id, v, &guard).unwrap();
                            // No snapshot is held: every older version can go at once.
                            for old in s.table.trim(id, u64::MAX, &guard).unwrap() {
                                s.alloc.free(old.location).unwrap();
                            }
                            mine.insert(id, (i, len));
                        }
                        (_, Some(id)) => {
                            let e = s.epoch.fetch_add(1, Ordering::AcqRel) + 1;
                            s.table.retire(id, e).unwrap();
                            for old in s.table.reclaim(id, &guard).unwrap() {
                                s.alloc.free(old.location).unwrap();
                            }
                            assert!(s.table.get(id, &guard).is_err(), "reclaimed id is stale");
                            mine.remove(&id);
                            retired += 1;
                        }
                    }
                }
                (mine, retired)
            })
        })
        .collect();
    let mut expected: HashMap<NodeId, (u64, usize)> = HashMap::new();
    for h in handles {
        let (mine, _) = h.join().unwrap();
        for (id, v) in mine {
            assert!(
                expected.insert(id, v).is_none(),
                "{id} owned by two threads"
            );
        }
    }

    let guard = crossbeam_epoch::pin();
    let mut listed: BTreeMap<NodeId, Version> = BTreeMap::new();
    store.table.for_each(&guard, |id, view| {
        listed.insert(id, view.current.unwrap());
    });
    let mut want: Vec<NodeId> = expected.keys().copied().collect();
    want.sort();
    assert_eq!(
        listed.keys().copied().collect::<Vec<_>>(),
        want,
        "exact live set"
    );

    // Exact bytes and checksums.
    for (id, (round, len)) in &expected {
        let v = store.table.get(*id, &guard).unwrap();
        assert_eq!(v.len as usize, *len);
        let bytes = read_slot(&store.files, v.location, v.len as usize, &guard).unwrap();
        assert_eq!(bytes, content(*id, *round, *len), "{id}");
        assert_eq!(crc32c(bytes), v.crc32c);
    }

    // No two live versions overlap: sort every slot interval and compare neighbours.
    let mut owned: Vec<(Location, u64)> = listed
        .values()
        .map(|v| (v.location, u64::from(v.len)))
        .collect();
    owned.sort();
    for pair in owned.windows(2) {
        let ((a, a_len), (b, b_len)) = (pair[0], pair[1]);
        if (a.class, a.file) == (b.class, b.file) {
            assert!(
                a.range(a_len).end <= b.range(b_len).start,
                "{a:?} overlaps {b:?}"
            );
        }
    }
    let slots: Vec<Location> = owned.iter().map(|&(l, _)| l).collect();
    // No leak: the allocator holds exactly the live versions' slots.
    let allocated: u64 = (0..vellum::alloc::CLASS_COUNT as u8)
        .map(|c| store.alloc.space(c).used_slots)
        .sum();
    assert_eq!(allocated, slots.len() as u64);
    for loc in &slots {
        assert!(store.alloc.is_allocated(*loc));
    }
}
