//! Runtime paths: a snapshot read of a resident node (target: at most 2x the plain lookup,
//! `node_lookup/id_to_bytes` in `benches/object_table.rs`), checked against its CRC32C and not,
//! the CRC32C alone, a copying read at the newest epoch, and one EVENTUAL commit.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

const NODES: usize = 4096;

fn runtime(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: Duration::from_millis(50),
        ..RuntimeOptions::default()
    };
    let rt = DurableRuntime::open(dir.path(), options).expect("open");
    let mut ids = Vec::with_capacity(NODES);
    let mut tx = rt.begin();
    for i in 0..NODES {
        ids.push(tx.alloc(1, &[i as u8; 100]).expect("alloc"));
    }
    tx.commit().expect("commit");

    let mut group = c.benchmark_group("runtime");
    let snap = rt.snapshot();
    let mut i = 0usize;
    {
        let reader = snap.reader();
        group.bench_function("snapshot_reader_get_resident_100B", |b| {
            b.iter(|| {
                i = (i + 1) % NODES;
                black_box(reader.get(ids[i]).expect("read").map(|bytes| bytes[0]))
            })
        });
        group.bench_function("snapshot_reader_get_unverified_resident_100B", |b| {
            b.iter(|| {
                i = (i + 1) % NODES;
                black_box(
                    reader
                        .get_unverified(ids[i])
                        .expect("read")
                        .map(|bytes| bytes[0]),
                )
            })
        });
        let bytes = [9u8; 100];
        group.bench_function("crc32c_100B", |b| {
            b.iter(|| black_box(vellum::codec::crc32c(black_box(&bytes))))
        });
    }
    group.bench_function("snapshot_read_resident_100B", |b| {
        b.iter(|| {
            i = (i + 1) % NODES;
            black_box(snap.with_node(ids[i], |bytes| bytes[0]).expect("read"))
        })
    });
    drop(snap);
    group.bench_function("read_newest_copy_100B", |b| {
        b.iter(|| {
            i = (i + 1) % NODES;
            black_box(rt.read(ids[i]).expect("read"))
        })
    });
    let bytes = [7u8; 100];
    group.bench_function("commit_eventual_100B_one_thread", |b| {
        b.iter(|| {
            let mut tx = rt.begin();
            tx.alloc(1, &bytes).expect("alloc");
            black_box(tx.commit_with(CommitPolicy::Eventual).expect("commit"))
        })
    });
    group.finish();
}

criterion_group!(benches, runtime);
criterion_main!(benches);
