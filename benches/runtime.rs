//! Runtime paths: a snapshot read of a resident node (target: at most 2x the plain lookup,
//! `node_lookup/id_to_bytes` in `benches/object_table.rs`), checked against its CRC32C and not,
//! the CRC32C alone, a copying read at the newest epoch, taking and dropping a snapshot (borrowed
//! and owned), the same on two threads at once (the time is per operation of one thread: each
//! thread does `iters` operations while the other does as many), and one EVENTUAL commit.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

const NODES: usize = 4096;

/// Threads of the multi-threaded benches.
const THREADS: usize = 2;

/// Runs `op(thread, i)` for `i` in `0..iters` on each of [`THREADS`] threads started together,
/// and returns the wall time from the start until the last thread finished.
fn on_threads(iters: u64, op: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (start, op) = (&start, &op);
                s.spawn(move || {
                    start.wait();
                    for i in 0..iters {
                        op(t, i);
                    }
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        for h in handles {
            h.join().expect("bench thread");
        }
        began.elapsed()
    })
}

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
    group.bench_function("snapshot_take_drop", |b| {
        b.iter(|| black_box(rt.snapshot().epoch()))
    });
    group.bench_function("snapshot_owned_take_drop", |b| {
        b.iter(|| black_box(rt.snapshot_owned().epoch()))
    });
    group.bench_function("read_newest_copy_100B", |b| {
        b.iter(|| {
            i = (i + 1) % NODES;
            black_box(rt.read(ids[i]).expect("read"))
        })
    });
    group.bench_function("snapshot_take_drop_2_threads", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, |_, _| {
                black_box(rt.snapshot().epoch());
            })
        })
    });
    group.bench_function("snapshot_owned_take_drop_2_threads", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, |_, _| {
                black_box(rt.snapshot_owned().epoch());
            })
        })
    });
    group.bench_function("read_newest_copy_100B_2_threads", |b| {
        b.iter_custom(|iters| {
            on_threads(iters, |t, i| {
                let n = (i as usize * THREADS + t) % NODES;
                drop(black_box(rt.read(ids[n]).expect("read")));
            })
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
