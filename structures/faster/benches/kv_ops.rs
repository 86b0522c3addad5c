//! FasterKV in memory beside `dashmap` in the same run: 1 M keys of 8 bytes with 8-byte values,
//! uniform random keys (a precomputed sequence), one session per thread. Each benchmark runs a
//! batch of operations; criterion reports the time per operation. Groups:
//! - `kv_1t`: read, upsert, rmw (add to a counter) and the 50/50 read/upsert mix at 1 thread,
//!   for FasterKV and for `DashMap<[u8; 8], [u8; 8]>` (its default hasher);
//!   FasterKV's reads and mix also through `Session::batch` (`*_batch`, 256 operations a call);
//! - `kv_2t`: the 50/50 mix at 2 threads (total time for both threads' batches), for both, and
//!   FasterKV's through `Session::batch`;
//! - `kv_floor`: the same machine's floor for two dependent cache misses per operation
//!   (FASTER's bucket, then record) and for one.
//!
//! The targets: FasterKV ≥ 1.0× dashmap on the 1-thread mix, and its 2-thread mix ≥
//! 1.8× its own 1-thread throughput. Run: `cargo bench -p vellum-faster --bench kv_ops`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::kv::index::IndexOptions;
use vellum_faster::kv::{AddU64, BatchOp, FasterKv, KvOptions, Session, Status};

const KEYS: u64 = 1 << 20;
const BATCH: usize = 1 << 16;
/// Operations per `Session::batch` call in the batch benchmarks.
const BATCH_OPS: usize = 256;

/// A xorshift sequence of key numbers below [`KEYS`].
fn key_sequence(seed: u64, n: usize) -> Vec<u64> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % KEYS
        })
        .collect()
}

fn open(dir: &std::path::Path) -> FasterKv {
    let rt_options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(DurableRuntime::open(dir, rt_options).expect("runtime"));
    let options = KvOptions {
        index: IndexOptions {
            bucket_count: 1 << 18,
            ..IndexOptions::default()
        },
        ..KvOptions::default()
    };
    let kv = FasterKv::open(rt, "bench", options).expect("store");
    let mut s = kv.session(AddU64).expect("session");
    for k in 0..KEYS {
        s.upsert(&k.to_le_bytes(), &k.to_le_bytes()).expect("load");
    }
    drop(s);
    kv
}

fn dash() -> DashMap<[u8; 8], [u8; 8]> {
    let map = DashMap::with_capacity(KEYS as usize);
    for k in 0..KEYS {
        map.insert(k.to_le_bytes(), k.to_le_bytes());
    }
    map
}

/// One FasterKV operation of the mix: even positions read, odd ones upsert.
fn kv_mix(s: &mut Session<'_, AddU64>, i: usize, k: u64, out: &mut Vec<u8>) {
    let key = k.to_le_bytes();
    if i.is_multiple_of(2) {
        assert_eq!(s.read(&key, out).expect("read"), Status::Found);
    } else {
        s.upsert(&key, &(i as u64).to_le_bytes()).expect("upsert");
    }
}

/// The bytes of a batch's keys and upsert values: `(key, value)` of each position.
fn batch_bytes(keys: &[u64]) -> Vec<([u8; 8], [u8; 8])> {
    keys.iter()
        .enumerate()
        .map(|(i, k)| (k.to_le_bytes(), (i as u64).to_le_bytes()))
        .collect()
}

/// The mix as batch operations (even positions read, odd ones upsert), or all reads.
fn batch_ops(bytes: &[([u8; 8], [u8; 8])], mix: bool) -> Vec<BatchOp<'_, u64>> {
    bytes
        .iter()
        .enumerate()
        .map(|(i, (k, v))| {
            if mix && i % 2 == 1 {
                BatchOp::Upsert(k, v)
            } else {
                BatchOp::Read(k)
            }
        })
        .collect()
}

/// Runs a batch of operations in batches of `chunk`, checking every read found its key.
fn kv_batch(s: &mut Session<'_, AddU64>, ops: &[BatchOp<'_, u64>], chunk: usize) {
    for part in ops.chunks(chunk) {
        s.batch(part, |_, status, _| assert_eq!(status, Status::Found))
            .expect("batch");
    }
}

fn dash_mix(map: &DashMap<[u8; 8], [u8; 8]>, i: usize, k: u64) {
    let key = k.to_le_bytes();
    if i.is_multiple_of(2) {
        black_box(map.get(&key).map(|v| *v));
    } else {
        map.insert(key, (i as u64).to_le_bytes());
    }
}

fn one_thread(c: &mut Criterion, kv: &FasterKv, map: &DashMap<[u8; 8], [u8; 8]>) {
    let keys = key_sequence(1, BATCH);
    let mut group = c.benchmark_group("kv_1t");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut s = kv.session(AddU64).expect("session");
    let mut out = Vec::new();
    group.bench_function("faster_read", |b| {
        b.iter(|| {
            for k in &keys {
                let status = s.read(&k.to_le_bytes(), &mut out).expect("read");
                assert_eq!(status, Status::Found);
            }
        })
    });
    group.bench_function("dashmap_read", |b| {
        b.iter(|| {
            for k in &keys {
                black_box(map.get(&k.to_le_bytes()).map(|v| *v));
            }
        })
    });
    group.bench_function("faster_upsert", |b| {
        b.iter(|| {
            for k in &keys {
                s.upsert(&k.to_le_bytes(), &k.to_le_bytes())
                    .expect("upsert");
            }
        })
    });
    group.bench_function("dashmap_upsert", |b| {
        b.iter(|| {
            for k in &keys {
                map.insert(k.to_le_bytes(), k.to_le_bytes());
            }
        })
    });
    group.bench_function("faster_rmw", |b| {
        b.iter(|| {
            for k in &keys {
                let status = s.rmw(&k.to_le_bytes(), &1).expect("rmw");
                assert_eq!(status, Status::Found);
            }
        })
    });
    group.bench_function("dashmap_rmw", |b| {
        b.iter(|| {
            for k in &keys {
                let mut e = map.entry(k.to_le_bytes()).or_insert([0; 8]);
                *e = (u64::from_le_bytes(*e) + 1).to_le_bytes();
            }
        })
    });
    group.bench_function("faster_mix", |b| {
        b.iter(|| {
            for (i, k) in keys.iter().enumerate() {
                kv_mix(&mut s, i, *k, &mut out);
            }
        })
    });
    group.bench_function("dashmap_mix", |b| {
        b.iter(|| {
            for (i, k) in keys.iter().enumerate() {
                dash_mix(map, i, *k);
            }
        })
    });
    let bytes = batch_bytes(&keys);
    for (name, mix) in [("faster_read_batch", false), ("faster_mix_batch", true)] {
        let ops = batch_ops(&bytes, mix);
        group.bench_function(name, |b| b.iter(|| kv_batch(&mut s, &ops, BATCH_OPS)));
    }
    group.finish();
}

/// Runs `per_thread` on 2 threads for `iters` batches each; the wall time of the whole.
fn two_threads(iters: u64, per_thread: impl Fn(usize, u64) + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..2 {
            let f = &per_thread;
            scope.spawn(move || f(t, iters));
        }
    });
    start.elapsed()
}

fn two_thread(c: &mut Criterion, kv: &FasterKv, map: &DashMap<[u8; 8], [u8; 8]>) {
    let keys: Vec<Vec<u64>> = (0..2).map(|t| key_sequence(t + 10, BATCH)).collect();
    let mut group = c.benchmark_group("kv_2t");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(2 * BATCH as u64));
    group.bench_function("faster_mix", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, iters| {
                let mut s = kv.session(AddU64).expect("session");
                let mut out = Vec::new();
                for _ in 0..iters {
                    for (i, k) in keys[t].iter().enumerate() {
                        kv_mix(&mut s, i, *k, &mut out);
                    }
                }
            })
        })
    });
    group.bench_function("dashmap_mix", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, iters| {
                for _ in 0..iters {
                    for (i, k) in keys[t].iter().enumerate() {
                        dash_mix(map, i, *k);
                    }
                }
            })
        })
    });
    let bytes: Vec<_> = keys.iter().map(|k| batch_bytes(k)).collect();
    group.bench_function("faster_mix_batch", |b| {
        b.iter_custom(|iters| {
            two_threads(iters, |t, iters| {
                let mut s = kv.session(AddU64).expect("session");
                let ops = batch_ops(&bytes[t], true);
                for _ in 0..iters {
                    kv_batch(&mut s, &ops, BATCH_OPS);
                }
            })
        })
    });
    group.finish();
}

/// The machine's floor for FASTER's layout: per operation one load from a random bucket of a
/// 16 MiB table (as FasterKV's index for 1 M keys) and a load it depends on from a random place
/// in a 40 MiB array (the records), both on huge-page `AtomicWords` as FasterKV's are; and the
/// one-load floor beside it.
fn floors(c: &mut Criterion) {
    use std::sync::atomic::Ordering::Relaxed;
    let table = vellum::words::AtomicWords::zeroed(1 << 21).expect("table");
    let log = vellum::words::AtomicWords::zeroed(5 << 20).expect("log");
    for (i, w) in table.iter().enumerate() {
        w.store((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15), Relaxed);
    }
    for (i, w) in log.iter().enumerate() {
        w.store(i as u64, Relaxed);
    }
    let keys = key_sequence(3, BATCH);
    let mut group = c.benchmark_group("kv_floor");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.throughput(Throughput::Elements(BATCH as u64));
    let bucket_of = |k: u64| (k.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 46) as usize * 8;
    group.bench_function("two_dependent_misses", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for k in &keys {
                let entry = table[bucket_of(*k)].load(Relaxed);
                sum = sum.wrapping_add(log[(entry % log.len() as u64) as usize].load(Relaxed));
            }
            black_box(sum)
        })
    });
    // Each operation's first load waits for the previous operation's last: no overlap between
    // operations, the latency of two misses in a row.
    group.bench_function("two_misses_no_overlap", |b| {
        b.iter(|| {
            let mut carry = 0u64;
            for k in &keys {
                let entry = table[bucket_of(*k ^ (carry & 1))].load(Relaxed);
                carry = log[(entry % log.len() as u64) as usize].load(Relaxed);
            }
            black_box(carry)
        })
    });
    group.bench_function("one_miss", |b| {
        b.iter(|| {
            let mut sum = 0u64;
            for k in &keys {
                sum = sum.wrapping_add(table[bucket_of(*k)].load(Relaxed));
            }
            black_box(sum)
        })
    });
    group.finish();
}

fn kv_ops(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("dir");
    let kv = open(dir.path());
    let map = dash();
    one_thread(c, &kv, &map);
    two_thread(c, &kv, &map);
    floors(c);
}

criterion_group!(benches, kv_ops);
criterion_main!(benches);
