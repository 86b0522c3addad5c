//! FasterKV's hash index: `find` of a present key, `find_or_create` of a present key, and
//! `find_or_create` of a new key, with 1 M keys in 2^20 buckets (64 MiB of main table), one
//! thread holding one epoch guard (as a session would). Hashes are computed up front: the
//! figures are the index's, not XXH3's (hashing an 8-byte key is measured apart).

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use vellum_faster::epoch::Epoch;
use vellum_faster::kv::hash::KeyHash;
use vellum_faster::kv::index::{HashIndex, IndexOptions};

const KEYS: usize = 1 << 20;

fn options() -> IndexOptions {
    IndexOptions {
        bucket_count: 1 << 20,
        overflow_pages_max: 1024,
    }
}

fn hashes(first: u64) -> Vec<KeyHash> {
    (first..first + KEYS as u64)
        .map(|k| KeyHash::of(&k.to_le_bytes()))
        .collect()
}

/// An index holding `keys`, each entry's address set to its position plus 2.
fn filled(keys: &[KeyHash], epoch: &Epoch) -> HashIndex {
    let index = HashIndex::new(&options()).expect("index");
    let guard = epoch.protect();
    for (i, hash) in keys.iter().enumerate() {
        let mut e = index.find_or_create(*hash, &guard).expect("create");
        let current = e.entry();
        let _ = e.compare_exchange(current, i as u64 + 2);
    }
    index
}

fn kv_index(c: &mut Criterion) {
    let epoch = Epoch::new();
    let keys = hashes(0);
    let index = filled(&keys, &epoch);
    let mut group = c.benchmark_group("kv_index");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("hash_8B_key", |b| {
        let mut k = 0u64;
        b.iter(|| {
            k += 1;
            black_box(KeyHash::of(&k.to_le_bytes()))
        })
    });
    let mut i = 0;
    group.bench_function("find_hit_1M_keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(index.find(keys[i]).map(|e| e.address()))
        })
    });
    let guard = epoch.protect();
    group.bench_function("find_or_create_hit_1M_keys", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(index.find_or_create(keys[i], &guard).map(|e| e.address()))
        })
    });
    drop(guard);
    let new_keys = hashes(KEYS as u64);
    group.bench_function("find_or_create_new_1M_keys", |b| {
        b.iter_custom(|iters| insert_new(iters, &new_keys, &epoch))
    });
    group.finish();
}

/// Times `iters` creations of new keys, into a fresh index (built untimed) every 1 M keys.
fn insert_new(iters: u64, new_keys: &[KeyHash], epoch: &Epoch) -> Duration {
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let index = HashIndex::new(&options()).expect("index");
        let guard = epoch.protect();
        let n = (iters - done).min(KEYS as u64) as usize;
        let start = Instant::now();
        for hash in &new_keys[..n] {
            black_box(index.find_or_create(*hash, &guard).map(|e| e.address())).ok();
        }
        total += start.elapsed();
        done += n as u64;
    }
    total
}

criterion_group!(benches, kv_index);
criterion_main!(benches);
