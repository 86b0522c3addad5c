//! Profiling aid: 2 million reads of resident 100-byte nodes, for callgrind
//! (`valgrind --tool=callgrind target/release/examples/profile_read [lookup|snapshot]`).
//!
//! `lookup` reads through the object table and the data files directly (the path
//! `benches/object_table.rs` measures); `snapshot` (the default) through a runtime snapshot reader.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::sync::Arc;

use vellum::alloc::{DataFileOptions, DataFiles, SegmentAllocator, class_for_len};
use vellum::codec::crc32c;
use vellum::io::OsStorage;
use vellum::object_table::{ObjectTable, Version};
use vellum::runtime::{DurableRuntime, RuntimeOptions};

/// `DataFiles::write_unchecked` for this file, which writes each slot before it reads it and
/// never reads a slot while writing it: `DataFiles` invariant 6, the function's contract.
fn write_slot(files: &DataFiles, loc: vellum::alloc::Location, data: &[u8]) -> vellum::Result<()> {
    // SAFETY: see above: no slice of this slot is alive while it is written.
    unsafe { files.write_unchecked(loc, data) }
}

const NODES: usize = 4096;
const READS: usize = 2_000_000;

fn lookup(dir: &std::path::Path) -> vellum::Result<u64> {
    let options = DataFileOptions::default();
    std::fs::create_dir_all(dir).map_err(|e| vellum::Error::io(vellum::IoOp::Create, dir, e))?;
    let files = DataFiles::open(Arc::new(OsStorage::new()), dir, options, &[])?;
    let alloc = SegmentAllocator::new(options.alloc)?;
    let table = ObjectTable::new();
    let mut ids = Vec::with_capacity(NODES);
    let class = class_for_len(100).ok_or(vellum::Error::InvalidArgument("class".into()))?;
    for i in 0..NODES {
        let bytes = [i as u8; 100];
        let id = table.reserve()?;
        let location = files.allocate_slot(&alloc, class)?;
        write_slot(&files, location, &bytes)?;
        let version = Version {
            location,
            len: 100,
            crc32c: crc32c(&bytes),
            kind: 0,
            birth: 2,
        };
        table.publish(id, version)?;
        ids.push(id);
    }
    let guard = crossbeam_epoch::pin();
    let mut sum = 0u64;
    for i in 0..READS {
        // SAFETY: every slot was written above, before the lookups, and is never written again.
        let node =
            unsafe { vellum::resolve::resolve_unchecked(&table, &files, ids[i % NODES], &guard) }?;
        sum += u64::from(node.bytes[0]);
    }
    Ok(sum)
}

fn snapshot(dir: &std::path::Path) -> vellum::Result<u64> {
    let rt = DurableRuntime::open(
        dir,
        RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        },
    )?;
    let mut tx = rt.begin();
    let ids: Vec<_> = (0..NODES)
        .map(|i| tx.alloc(1, &[i as u8; 100]))
        .collect::<Result<_, _>>()?;
    tx.commit()?;
    let snap = rt.snapshot();
    let reader = snap.reader();
    let mut sum = 0u64;
    for i in 0..READS {
        if let Some(b) = reader.get(ids[i % NODES])? {
            sum += u64::from(b[0]);
        }
    }
    Ok(sum)
}

fn main() -> vellum::Result<()> {
    let dir = std::env::temp_dir().join(format!("vellum-profile-{}", std::process::id()));
    let sum = match std::env::args().nth(1).as_deref() {
        Some("lookup") => lookup(&dir),
        _ => snapshot(&dir),
    };
    let _ = std::fs::remove_dir_all(&dir);
    std::hint::black_box(sum?);
    Ok(())
}
