//! Delta log benchmarks on the real filesystem (in a temporary directory):
//! - `append/{64B,1KiB,64KiB}`: appends without syncing (frames/s and bytes/s);
//! - `raw_fdatasync`: a 64-byte `pwrite` at the end of a plain file plus `fdatasync`, the floor
//!   any durable commit pays;
//! - `group_commit/{1,2,4,8,16}`: durable commits per second (append 64 B + `sync_to`) with that
//!   many threads committing at once.
//!
//! Under `cargo test --benches` criterion runs each routine once, so setup stays small.

use std::hint::black_box;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use vellum::io::{OsStorage, Storage};
use vellum::log::{DeltaLog, LogOptions, log_file_name};

const COMMIT_BODY: [u8; 64] = [0x5a; 64];

fn os() -> Arc<dyn Storage> {
    Arc::new(OsStorage::new())
}

fn create_log(dir: &Path, seq: u64) -> DeltaLog {
    DeltaLog::create(os(), dir, seq, 0, LogOptions::default()).expect("create the log")
}

fn append_throughput(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    for (name, len) in [("64B", 64usize), ("1KiB", 1 << 10), ("64KiB", 64 << 10)] {
        // Bytes as asked, with frames (elements) alongside so criterion reports frames/s too.
        group.throughput(Throughput::ElementsAndBytes {
            elements: 1,
            bytes: len as u64,
        });
        let body = vec![0xa5u8; len];
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seq = 0;
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            // A fresh log per sample, removed afterwards, so the files (and the dirty page cache
            // behind them) stay bounded however many iterations criterion asks for.
            b.iter_custom(|iters| {
                seq += 1;
                let log = create_log(dir.path(), seq);
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.append(&body).expect("append"));
                }
                let elapsed = start.elapsed();
                drop(log);
                std::fs::remove_file(dir.path().join(log_file_name(seq))).expect("remove");
                elapsed
            });
        });
    }
    group.finish();
}

fn raw_fdatasync(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = OsStorage::new()
        .create(&dir.path().join("raw"))
        .expect("create");
    let mut offset = 0u64;
    let mut group = c.benchmark_group("raw_fdatasync");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    group.bench_function("pwrite64_fdatasync", |b| {
        b.iter(|| {
            file.write_at(&COMMIT_BODY, offset).expect("write");
            offset += COMMIT_BODY.len() as u64;
            file.sync_data().expect("fdatasync");
        });
    });
    group.finish();
}

/// `iters` durable commits spread over `threads` threads; the clock runs from the moment all
/// threads are ready until the last one finishes.
fn commit_in_parallel(log: &DeltaLog, threads: u64, iters: u64) -> Duration {
    let barrier = Barrier::new(threads as usize + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let share = iters / threads + u64::from(t < iters % threads);
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    for _ in 0..share {
                        let pos = log.append(&COMMIT_BODY).expect("append");
                        log.sync_to(pos).expect("sync_to");
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for h in handles {
            h.join().expect("committer panicked");
        }
        start.elapsed()
    })
}

fn group_commit(c: &mut Criterion) {
    let mut group = c.benchmark_group("group_commit");
    group
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(1));
    for threads in [1u64, 2, 4, 8, 16] {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = create_log(dir.path(), 1);
        group.bench_with_input(
            BenchmarkId::from_parameter(threads),
            &threads,
            |b, &threads| {
                b.iter_custom(|iters| commit_in_parallel(&log, threads, iters));
            },
        );
        let stats = log.stats();
        if stats.syncs > 0 {
            eprintln!(
                "group_commit/{threads}: {} commits, {} fdatasyncs, {:.2} commits per fdatasync",
                stats.frames_appended,
                stats.syncs,
                stats.frames_appended as f64 / stats.syncs as f64
            );
        }
    }
    group.finish();
}

criterion_group!(benches, append_throughput, raw_fdatasync, group_commit);
criterion_main!(benches);
