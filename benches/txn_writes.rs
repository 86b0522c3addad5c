//! The CPU a durable commit of many small updates costs before and around its sync: a
//! transaction rewriting 100 random nodes of 16 bytes among a million (the workload of
//! `vellum bench durable`), dropped without committing (the write phase alone: object-table
//! lookups, slot allocation, the fills, staging), and the same committed EVENTUAL (write phase,
//! validation, record encoding, apply and reclamation, without a sync). Each also with the
//! batch's ids prefetched first (`WriteTxn::prefetch`), whose ratio to the plain case is the
//! gain of overlapping the object-table lookups' cache misses. A lone committer's commit rate
//! is at most one over (this + one sync).

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vellum::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions, WriteTxn};

const NODES: usize = 1_000_000;
const BATCH: usize = 100;
const NODE_BYTES: usize = 16;

/// Batches of distinct keys: `BATCH` steps of a large odd stride from a pseudo-random start
/// (the stride is coprime to `NODES`, so no key repeats within a batch), spread over all keys.
struct Keys(u64);

/// A stride coprime to `NODES` (odd and not a multiple of 5), about 0.6 of the key space.
const STRIDE: usize = 618_033;

impl Keys {
    fn batch(&mut self, out: &mut Vec<usize>) {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        let start = (self.0 % NODES as u64) as usize;
        out.clear();
        out.extend((0..BATCH).map(|i| (start + i * STRIDE) % NODES));
    }
}

fn load(rt: &DurableRuntime) -> Vec<NodeId> {
    let mut ids = Vec::with_capacity(NODES);
    for chunk in 0..NODES / 10_000 {
        let mut tx = rt.begin();
        for i in 0..10_000 {
            let key = (chunk * 10_000 + i) as u128;
            ids.push(tx.alloc(1, &key.to_le_bytes()).expect("alloc"));
        }
        tx.commit_with(CommitPolicy::Eventual).expect("load commit");
    }
    rt.sync().expect("sync");
    ids
}

/// A transaction that rewrites the nodes of `batch` (each key's index in its first 8 bytes),
/// after prefetching their ids' entries if `prefetch`.
fn write_batch<'r>(
    rt: &'r DurableRuntime,
    ids: &[NodeId],
    batch: &[usize],
    prefetch: bool,
) -> WriteTxn<'r> {
    let mut tx = rt.begin();
    if prefetch {
        batch.iter().for_each(|&k| tx.prefetch(ids[k]));
    }
    for &k in batch {
        tx.write_with(ids[k], NODE_BYTES, |buf| {
            buf[..8].copy_from_slice(&k.to_le_bytes())
        })
        .expect("write");
    }
    tx
}

fn txn_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    let rt = DurableRuntime::open(dir.path(), options).expect("open");
    let ids = load(&rt);
    let mut keys = Keys(0x2545_f491_4f6c_dd1d);
    let mut batch = Vec::with_capacity(BATCH);
    let mut group = c.benchmark_group("txn_writes");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.measurement_time(Duration::from_secs(5));
    for (suffix, prefetch) in [("", false), ("_prefetched", true)] {
        group.bench_function(format!("write_100_of_1M_16B_abort{suffix}"), |b| {
            b.iter(|| {
                keys.batch(&mut batch);
                black_box(write_batch(&rt, &ids, &batch, prefetch));
            });
        });
        group.bench_function(
            format!("write_100_of_1M_16B_commit_eventual{suffix}"),
            |b| {
                b.iter(|| {
                    keys.batch(&mut batch);
                    let tx = write_batch(&rt, &ids, &batch, prefetch);
                    black_box(tx.commit_with(CommitPolicy::Eventual).expect("commit"));
                });
            },
        );
    }
    group.finish();
    rt.close().expect("close");
}

criterion_group!(benches, txn_writes);
criterion_main!(benches);
