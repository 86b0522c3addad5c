//! `vellum::resolve`: NodeId → bytes through its fast path (installed window) and its general
//! path (window to map, older version, stale id), with exact bytes, checksums and refusals.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::sync::Arc;

use vellum::Error;
use vellum::alloc::{AllocOptions, DataFileOptions, DataFiles, Location, SegmentAllocator};
use vellum::codec::crc32c;
use vellum::io::{OsStorage, Storage};
use vellum::object_table::{NodeId, ObjectTable, Version};
use vellum::resolve::{resolve_at_unchecked, resolve_unchecked};

/// [`resolve_unchecked`] for this file, which writes every slot before the version naming it is
/// published and never writes it again while a lookup's bytes live: `DataFiles` invariant 6, the
/// function's contract.
fn resolve<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    guard: &'g crossbeam_epoch::Guard,
) -> vellum::Result<vellum::resolve::Resolved<'g>> {
    // SAFETY: see above: no slot this file reads is written while its bytes are borrowed.
    unsafe { resolve_unchecked(table, files, id, guard) }
}

/// [`resolve_at_unchecked`] under the same discipline as [`resolve`].
fn resolve_at<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    epoch: u64,
    guard: &'g crossbeam_epoch::Guard,
) -> vellum::Result<Option<vellum::resolve::Resolved<'g>>> {
    // SAFETY: as for `resolve`.
    unsafe { resolve_at_unchecked(table, files, id, epoch, guard) }
}

const WINDOW: u64 = 1 << 20;

fn files(dir: &std::path::Path, mapped_bytes_max: u64) -> DataFiles {
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let options = DataFileOptions {
        alloc: AllocOptions {
            file_bytes_max: 64 << 20,
        },
        window_bytes: WINDOW,
        mapped_bytes_max,
    };
    DataFiles::open(storage, dir, options, &[]).unwrap()
}

/// Writes `bytes` at `location` and publishes them as a new node's first version.
fn publish(
    table: &ObjectTable,
    files: &DataFiles,
    location: Location,
    bytes: &[u8],
    kind: u8,
) -> (NodeId, Version) {
    // SAFETY: the slot was just allocated: nothing can read it before the version naming it
    // is published, after this write.
    unsafe { files.write_unchecked(location, bytes) }.unwrap();
    let id = table.reserve().unwrap();
    let v = Version {
        location,
        len: bytes.len() as u32,
        crc32c: crc32c(bytes),
        kind,
        birth: 3,
    };
    table.publish(id, v).unwrap();
    (id, v)
}

#[test]
fn resolves_exact_bytes_checksum_and_kind() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path(), 64 << 20);
    let alloc = SegmentAllocator::new(f.options().alloc).unwrap();
    let table = ObjectTable::new();
    let mut nodes = Vec::new();
    for i in 0..200u32 {
        let bytes: Vec<u8> = (0..(i % 120 + 1)).map(|b| (b as u8) ^ (i as u8)).collect();
        // Class 3: slots of 128 bytes hold every length here (1 to 120).
        let location = f.allocate_slot(&alloc, 3).unwrap();
        let (id, _) = publish(&table, &f, location, &bytes, (i % 7) as u8);
        nodes.push((id, bytes, (i % 7) as u8));
    }
    let guard = crossbeam_epoch::pin();
    for (id, bytes, kind) in &nodes {
        let r = resolve(&table, &f, *id, &guard).unwrap();
        assert_eq!(r.bytes, &bytes[..]);
        assert_eq!(r.crc32c, crc32c(bytes));
        assert_eq!(r.kind, *kind);
        let at = resolve_at(&table, &f, *id, 3, &guard).unwrap().unwrap();
        assert_eq!(at, r);
        // Before its birth the node did not exist.
        assert_eq!(resolve_at(&table, &f, *id, 2, &guard).unwrap(), None);
    }
}

#[test]
fn maps_evicted_windows_and_windows_past_the_first_array() {
    let dir = tempfile::tempdir().unwrap();
    // Room for two windows: most reads find their window evicted and take the mapping path.
    let f = files(dir.path(), 2 * WINDOW);
    let table = ObjectTable::new();
    let mut nodes = Vec::new();
    // 64 windows per file: file 4 onwards lies past the directory's fixed array of 256 slots.
    for (file, window) in [(0u32, 0u64), (0, 63), (3, 63), (4, 0), (5, 17), (9, 40)] {
        let location = Location {
            class: 2,
            file,
            offset: window * WINDOW + 128,
        };
        let bytes = vec![file as u8 * 16 + window as u8; 64];
        nodes.push((publish(&table, &f, location, &bytes, 1).0, bytes));
    }
    for _round in 0..3 {
        for (id, bytes) in &nodes {
            let guard = crossbeam_epoch::pin();
            assert_eq!(resolve(&table, &f, *id, &guard).unwrap().bytes, &bytes[..]);
        }
    }
}

#[test]
fn older_versions_retirement_and_stale_ids() {
    let dir = tempfile::tempdir().unwrap();
    let f = files(dir.path(), 64 << 20);
    let alloc = SegmentAllocator::new(f.options().alloc).unwrap();
    let table = ObjectTable::new();
    let first = f.allocate_slot(&alloc, 0).unwrap();
    let (id, v1) = publish(&table, &f, first, b"first", 0);
    let second = f.allocate_slot(&alloc, 0).unwrap();
    // SAFETY: the slot was just allocated: nothing can read it before the version naming it
    // is published, after this write.
    unsafe { f.write_unchecked(second, b"second!") }.unwrap();
    let guard = crossbeam_epoch::pin();
    let v2 = Version {
        location: second,
        len: 7,
        crc32c: crc32c(b"second!"),
        kind: 0,
        birth: 8,
    };
    assert_eq!(table.update(id, v2, &guard).unwrap(), Some(v1));

    assert_eq!(resolve(&table, &f, id, &guard).unwrap().bytes, b"second!");
    let at = |epoch| resolve_at(&table, &f, id, epoch, &guard).unwrap();
    assert_eq!(at(7).unwrap().bytes, b"first");
    assert_eq!(at(7).unwrap().crc32c, crc32c(b"first"));
    assert_eq!(at(8).unwrap().bytes, b"second!");

    table.retire(id, 12).unwrap();
    assert_eq!(at(11).unwrap().bytes, b"second!");
    assert_eq!(at(12), None);
    assert!(matches!(
        resolve(&table, &f, id, &guard),
        Err(Error::NodeNotFound { id: e, reason: "the node is retired" }) if e == id
    ));

    table.reclaim(id, &guard).unwrap();
    for err in [
        resolve(&table, &f, id, &guard).map(|_| ()),
        resolve_at(&table, &f, id, 11, &guard).map(|_| ()),
    ] {
        assert!(
            matches!(err, Err(Error::NodeNotFound { id: e, reason }) if e == id && reason.starts_with("stale id")),
            "{err:?}"
        );
    }
    // A handle never issued.
    let never = NodeId::new(5, 1 << 30, 1).unwrap();
    assert!(matches!(
        resolve(&table, &f, never, &guard),
        Err(Error::NodeNotFound {
            reason: "the handle was never issued",
            ..
        })
    ));
}
