//! FasterLog paths: an in-memory append of 64 B and 1 KiB (reservation, copy, publication; the
//! ring is flushed by the commits `append` makes when it is full), an EVENTUAL append-and-commit
//! of 1 KiB, and a read of a committed entry from memory. `vellum bench log` measures the durable
//! figures against the disk.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
use vellum_faster::{FasterLog, FasterLogOptions};

fn faster_log(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: Duration::from_millis(50),
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(DurableRuntime::open(dir.path(), options).expect("open"));
    let log = FasterLog::open(
        rt,
        "bench",
        FasterLogOptions {
            policy: Some(CommitPolicy::Eventual),
            ..FasterLogOptions::default()
        },
    )
    .expect("open log");
    let mut group = c.benchmark_group("faster_log");
    for len in [64usize, 1024] {
        let payload = vec![0x5a; len];
        let mut n = 0u64;
        group.bench_function(format!("append_{len}B"), |b| {
            b.iter(|| {
                n += 1;
                if n.is_multiple_of(16_384) {
                    // Keep the store small however long criterion runs.
                    let tail = log.commit().expect("commit");
                    log.truncate_until(tail).expect("truncate");
                }
                black_box(log.append(&payload).expect("append"))
            })
        });
    }
    let payload = vec![0x3c; 1024];
    let mut n = 0u64;
    group.bench_function("append_and_commit_eventual_1KiB", |b| {
        b.iter(|| {
            n += 1;
            if n.is_multiple_of(16_384) {
                log.truncate_until(log.committed_tail()).expect("truncate");
            }
            black_box(log.append_and_commit(&payload).expect("commit"))
        })
    });
    let address = log.append_and_commit(&payload).expect("commit");
    group.bench_function("read_resident_1KiB", |b| {
        b.iter(|| black_box(log.read(address).expect("read").len()))
    });
    group.finish();
}

criterion_group!(benches, faster_log);
criterion_main!(benches);
