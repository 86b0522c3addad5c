//! NodeId → bytes of a resident node (target: < 10 ns median) through `vellum::resolve`, the
//! snapshot lookup beside it, and the two steps it fuses (object-table get, then data-file read).

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use vellum::alloc::{AllocOptions, DataFileOptions, DataFiles, SegmentAllocator, class_for_len};
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

const NODES: usize = 4096;

/// Benchmarks one way of resolving a NodeId to its bytes; generic, so each case is compiled on
/// its own and measures no dynamic dispatch.
fn bench_lookup<'g>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    span: usize,
    ids: &[NodeId],
    resolve: impl Fn(NodeId) -> &'g [u8],
) {
    let mut i = 0usize;
    group.bench_function(name, |b| {
        b.iter(|| {
            // A compare, not `% span`: a division would cost more than the lookup measured.
            i += 1;
            if i == span {
                i = 0;
            }
            black_box(resolve(ids[i])[0])
        })
    });
}

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let options = DataFileOptions {
        alloc: AllocOptions::default(),
        window_bytes: 64 << 20,
        mapped_bytes_max: 1 << 30,
    };
    let files = DataFiles::open(storage, dir.path(), options, &[]).expect("open");
    let alloc = SegmentAllocator::new(options.alloc).expect("alloc");
    let table = ObjectTable::new();
    let mut ids: Vec<NodeId> = Vec::with_capacity(NODES);
    for i in 0..NODES {
        let bytes = vec![i as u8; 100];
        let id = table.reserve().expect("reserve");
        let loc = files
            .allocate_slot(&alloc, class_for_len(100).expect("class"))
            .expect("allocate");
        // SAFETY: the slot was just allocated: nothing can read it before the version naming it
        // is published, after this write.
        unsafe { files.write_unchecked(loc, &bytes) }.expect("write");
        let v = Version {
            location: loc,
            len: 100,
            crc32c: crc32c(&bytes),
            kind: 0,
            birth: 2,
        };
        table.publish(id, v).expect("publish");
        // Give every node an older version too, so snapshot reads at epoch 2 walk the chain.
        let guard = crossbeam_epoch::pin();
        table
            .update(id, Version { birth: 5, ..v }, &guard)
            .expect("update");
        ids.push(id);
    }
    let guard = crossbeam_epoch::pin();
    let mut group = c.benchmark_group("node_lookup");
    let current = |id| resolve(&table, &files, id, &guard).expect("resolve").bytes;
    bench_lookup(&mut group, "id_to_bytes", NODES, &ids, current);
    bench_lookup(&mut group, "id_to_bytes_hot_64_nodes", 64, &ids, current);
    let at = |epoch| {
        let (table, files, guard) = (&table, &files, &guard);
        move |id| {
            resolve_at(table, files, id, epoch, guard)
                .expect("resolve")
                .expect("visible")
                .bytes
        }
    };
    bench_lookup(
        &mut group,
        "snapshot_id_to_bytes_current",
        NODES,
        &ids,
        at(10),
    );
    bench_lookup(
        &mut group,
        "snapshot_id_to_bytes_older_version",
        NODES,
        &ids,
        at(2),
    );
    bench_lookup(&mut group, "get_then_read", NODES, &ids, |id| {
        let v = table.get(id, &guard).expect("get");
        // SAFETY: every slot was written before the lookups, and is never written again.
        unsafe { files.read_unchecked(v.location, v.len as usize, &guard) }.expect("read")
    });
    let mut i = 0usize;
    group.bench_function("object_table_get_only", |b| {
        b.iter(|| {
            i = (i + 1) % NODES;
            black_box(table.get(ids[i], &guard).expect("get"))
        })
    });
    group.finish();
}

criterion_group!(benches, lookup);
criterion_main!(benches);
