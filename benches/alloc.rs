//! Allocate + free of a 256 B slot (target: < 100 ns median), and allocation throughput with one
//! and two threads.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vellum::alloc::{AllocOptions, SegmentAllocator, class_for_len};
use vellum::object_table::ObjectTable;

fn alloc_free(c: &mut Criterion) {
    let a = SegmentAllocator::new(AllocOptions::default()).expect("allocator");
    let class = class_for_len(256).expect("class");
    // A realistic, partly used allocator rather than an empty one.
    let keep: Vec<_> = (0..100_000)
        .map(|_| a.allocate(class).expect("allocate").location)
        .collect();
    for loc in keep.iter().step_by(3) {
        a.free(*loc).expect("free");
    }
    let mut group = c.benchmark_group("alloc");
    group.bench_function("allocate_free_256B", |b| {
        b.iter(|| {
            let loc = a.allocate(class).expect("allocate").location;
            a.free(black_box(loc)).expect("free");
        })
    });
    let table = ObjectTable::new();
    group.bench_function("reserve_abort_node_id", |b| {
        b.iter(|| {
            let id = table.reserve().expect("reserve");
            table.abort(black_box(id)).expect("abort");
        })
    });
    for threads in [1usize, 2] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("allocate_throughput_{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let a =
                    Arc::new(SegmentAllocator::new(AllocOptions::default()).expect("allocator"));
                let per = iters.div_ceil(threads as u64);
                let start = Instant::now();
                let hs: Vec<_> = (0..threads)
                    .map(|_| {
                        let a = a.clone();
                        std::thread::spawn(move || {
                            for _ in 0..per {
                                black_box(a.allocate(class).expect("allocate"));
                            }
                        })
                    })
                    .collect();
                for h in hs {
                    h.join().expect("join");
                }
                // Report time per allocation across all threads.
                let elapsed = start.elapsed();
                Duration::from_secs_f64(
                    elapsed.as_secs_f64() * iters as f64 / (per * threads as u64) as f64,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, alloc_free);
criterion_main!(benches);
