//! Scale: many small nodes plus large 4 MiB nodes written and read back through the object table,
//! the allocator and the mapped data files, with open descriptors and mapped bytes bounded.
//!
//! Defaults are small for CI. The full size is
//! `VELLUM_SCALE_SMALL_NODES=10000000 VELLUM_SCALE_LARGE_NODES=3000 cargo test --release --test scale`
//! (about 13 GB of data files).

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::sync::Arc;

use vellum::alloc::{AllocOptions, DataFileOptions, DataFiles, SegmentAllocator, class_for_len};
use vellum::codec::crc32c;
use vellum::io::{OsStorage, Storage};
use vellum::object_table::{NodeId, ObjectTable, Version};

mod common;

use common::env_u64;

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

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn small_len(i: u64) -> usize {
    64 + (i % 193) as usize
}

fn fill(seed: u64, buf: &mut Vec<u8>, len: usize) {
    buf.clear();
    let mut x = seed | 1;
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
}

#[test]
fn many_nodes_with_bounded_descriptors_and_mappings() {
    let small = env_u64("VELLUM_SCALE_SMALL_NODES", 300_000);
    let large = env_u64("VELLUM_SCALE_LARGE_NODES", 24);
    const LARGE_BYTES: usize = 4 << 20;
    const MAPPED_MAX: u64 = 256 << 20;
    const WINDOW: u64 = 64 << 20;

    let dir = tempfile::tempdir().unwrap();
    let baseline_fds = open_fds();
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let options = DataFileOptions {
        alloc: AllocOptions::default(),
        window_bytes: WINDOW,
        mapped_bytes_max: MAPPED_MAX,
    };
    let files = DataFiles::open(storage, dir.path(), options, &[]).unwrap();
    let alloc = SegmentAllocator::new(options.alloc).unwrap();
    let table = ObjectTable::new();

    let mut ids: Vec<NodeId> = Vec::with_capacity((small + large) as usize);
    let mut buf = Vec::new();
    let mut max_installed = 0u64;
    let mut max_mapped = 0u64;
    let total = small + large;
    for i in 0..total {
        let len = if i % (total / large.max(1)).max(1) == 0 && (ids.len() as u64) < total {
            LARGE_BYTES
        } else {
            small_len(i)
        };
        let id = table.reserve().unwrap();
        fill(id.raw(), &mut buf, len);
        let loc = files
            .allocate(&alloc, class_for_len(len as u64).unwrap(), len as u64)
            .unwrap();
        write_slot(&files, loc, &buf).unwrap();
        table
            .publish(
                id,
                Version {
                    location: loc,
                    len: len as u32,
                    crc32c: crc32c(&buf),
                    kind: 0,
                    birth: 1,
                },
            )
            .unwrap();
        ids.push(id);
        if i % 4096 == 0 {
            max_installed = max_installed.max(files.installed_bytes());
            max_mapped = max_mapped.max(files.mapped_bytes());
        }
    }
    let large_written = ids
        .iter()
        .filter(|id| table.get(**id, &crossbeam_epoch::pin()).unwrap().len as usize == LARGE_BYTES)
        .count() as u64;
    assert!(
        large_written >= large.min(total),
        "{large_written} large nodes"
    );

    let max_mapped_writing = max_mapped;
    // Read everything back: exact checksums, and exact bytes for every node. Each read pins its
    // own guard, as the runtime's readers do: a guard held across many reads keeps every window
    // it evicted meanwhile mapped (windows are never unmapped while a guard can reach them).
    for (n, id) in ids.iter().enumerate() {
        let guard = crossbeam_epoch::pin();
        let v = table.get(*id, &guard).unwrap();
        let bytes = read_slot(&files, v.location, v.len as usize, &guard).unwrap();
        assert_eq!(crc32c(bytes), v.crc32c, "{id}");
        fill(id.raw(), &mut buf, v.len as usize);
        assert_eq!(bytes, &buf[..], "{id}");
        if n % 1024 == 0 {
            max_installed = max_installed.max(files.installed_bytes());
            max_mapped = max_mapped.max(files.mapped_bytes());
        }
    }

    let data_files = files.files().len();
    let fds = open_fds() - baseline_fds;
    eprintln!(
        "scale: {} small + {large_written} large nodes, {data_files} data files, {fds} new fds, \
         installed max {} MiB, mapped max {} MiB ({} MiB while writing)",
        total - large_written,
        max_installed >> 20,
        max_mapped >> 20,
        max_mapped_writing >> 20
    );
    // One descriptor per data file, none per window or node.
    assert_eq!(fds, data_files);
    assert!(max_installed <= MAPPED_MAX, "installed {max_installed}");
    // Evicted windows wait for readers' guards before unmapping; a few may be pending.
    assert!(max_mapped <= MAPPED_MAX + 4 * WINDOW, "mapped {max_mapped}");
}
