//! `vellum bench kv`'s checkpoint section: for each `--checkpoint-keys` count, a store of that
//! many keys (8 B values) takes a full checkpoint, then one after 1 % of its keys were updated
//! (bytes the runtime wrote for each, its time, the index bytes and chunks written, beside the
//! index's size);
//! then it is dropped without closing and reopened, timed (recovery), and a sample of keys read
//! back exact. For the first count it also runs the 50/50 read/upsert mix from one session for
//! a few seconds without checkpoints and with one every second, and gives the ratio (each read
//! followed by an upsert of the same key with the value read, so values stay checkable).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use vellum::runtime::{DurableRuntime, RuntimeOptions, RuntimeStats};
use vellum_faster::kv::index::IndexOptions;
use vellum_faster::kv::{AddU64, BatchOp, FasterKv, KvOptions, Status};

use crate::durable_bench::rng::XorShift64;
use crate::group_commit::BoxError;

/// Each half of the throughput comparison: 3 s, or 500 ms with `--quick`. (The checkpoints
/// come every second, so a quick run takes none: it only checks that the section runs.)
fn mix_time(quick: bool) -> Duration {
    if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    }
}

fn options(keys: u64) -> KvOptions {
    // Four keys per bucket (of seven entries); a log memory of 1.25x the records (40 B each).
    let page = 4u64 << 20;
    let memory = (keys * 40 * 5 / 4).div_ceil(page).max(8) * page;
    KvOptions {
        index: IndexOptions {
            bucket_count: (keys / 4).next_power_of_two().max(1024),
            ..IndexOptions::default()
        },
        page_bytes: page as u32,
        log_memory_bytes_max: memory,
        ..KvOptions::default()
    }
}

fn open(dir: &Path, keys: u64) -> Result<FasterKv, BoxError> {
    let o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(DurableRuntime::open(dir, o)?);
    Ok(FasterKv::open(rt, "ckpt", options(keys))?)
}

/// Bytes the runtime wrote: node versions and commit records.
fn written(s: &RuntimeStats) -> u64 {
    s.node_bytes_written + s.log_bytes_appended
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

/// Upserts `keys` (value: the key) in batches from one session.
fn load(kv: &FasterKv, keys: impl Iterator<Item = (u64, u64)>) -> Result<(), BoxError> {
    let mut s = kv.session(AddU64)?;
    let pairs: Vec<([u8; 8], [u8; 8])> = keys
        .map(|(k, v)| (k.to_le_bytes(), v.to_le_bytes()))
        .collect();
    for part in pairs.chunks(256) {
        let ops: Vec<BatchOp<'_, u64>> = part.iter().map(|(k, v)| BatchOp::Upsert(k, v)).collect();
        s.batch(&ops, |_, _, _| {})?;
    }
    Ok(())
}

/// One key count's lines.
pub fn report(dir: &Path, keys: u64, mix: Option<bool>) -> Result<Vec<String>, BoxError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let kv = open(dir, keys)?;
    let index_bytes = kv_index_bytes(keys);
    eprintln!("checkpoints of {keys} keys: loading ...");
    load(&kv, (0..keys).map(|k| (k, k)))?;
    let rt = kv.runtime().clone();
    let (full, full_s) = timed_checkpoint(&kv, &rt)?;
    // 1 % of the keys, spread uniformly, get new values.
    let mut rng = XorShift64::seeded(keys ^ 0xc0ffee);
    let updated: Vec<u64> = (0..keys / 100)
        .map(|_| rng.below(keys as usize) as u64)
        .collect();
    load(&kv, updated.iter().map(|&k| (k, k ^ u64::MAX)))?;
    let (incr, incr_s) = timed_checkpoint(&kv, &rt)?;
    let mut lines = vec![format!(
        "  {keys} keys (index {:.1} MiB): full checkpoint {:.1} MiB written in {:.0} ms (index {:.1} MiB, {} chunks); after 1 % updates {:.2} MiB in {:.1} ms (index {:.2} MiB: the changed chains of {} chunks in a delta), {:.1} % of the full one",
        mib(index_bytes),
        mib(full.0),
        full_s * 1e3,
        mib(full.2),
        full.1,
        mib(incr.0),
        incr_s * 1e3,
        mib(incr.2),
        incr.1,
        100.0 * incr.0 as f64 / full.0.max(1) as f64,
    )];
    if let Some(quick) = mix {
        lines.push(mix_during_checkpoints(&kv, keys, mix_time(quick))?);
    }
    drop(kv);
    drop(rt);
    let t0 = Instant::now();
    let kv = open(dir, keys)?;
    let recovery = t0.elapsed();
    let checked = verify_sample(&kv, keys, &updated)?;
    lines.push(format!(
        "  recovery of {keys} keys: {:.2} s ({:.0} ns per key); {checked} sampled keys read back exact",
        recovery.as_secs_f64(),
        recovery.as_nanos() as f64 / keys as f64,
    ));
    kv.destroy()?;
    std::fs::remove_dir_all(dir)?;
    Ok(lines)
}

fn kv_index_bytes(keys: u64) -> u64 {
    options(keys).index.bucket_count * 64
}

/// A checkpoint's bytes written, chunks written and index bytes written, and its seconds.
fn timed_checkpoint(
    kv: &FasterKv,
    rt: &DurableRuntime,
) -> Result<((u64, usize, u64), f64), BoxError> {
    let before = written(&rt.stats());
    let t0 = Instant::now();
    let info = kv.checkpoint()?;
    let secs = t0.elapsed().as_secs_f64();
    let bytes = written(&rt.stats()) - before;
    Ok(((bytes, info.chunks_written, info.index_bytes), secs))
}

/// The 50/50 mix from one session for `time` without checkpoints, then as long with one
/// every second from another thread.
fn mix_during_checkpoints(kv: &FasterKv, keys: u64, time: Duration) -> Result<String, BoxError> {
    let quiet = mix_for(kv, keys, time, &AtomicBool::new(false))?;
    let taken = AtomicU64::new(0);
    let busy = mix_with_checkpoints(kv, keys, time, &taken)?;
    let taken = taken.load(Relaxed);
    Ok(format!(
        "  50/50 mix, 1 session, {keys} keys: {:.2} M ops/s without checkpoints, {:.2} M ops/s with one every second ({taken} taken): {:.0} %",
        quiet / 1e6,
        busy / 1e6,
        100.0 * busy / quiet.max(1.0),
    ))
}

/// The mix while another thread takes a checkpoint every second; ops/s.
fn mix_with_checkpoints(
    kv: &FasterKv,
    keys: u64,
    time: Duration,
    taken: &AtomicU64,
) -> Result<f64, BoxError> {
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let checkpointer = scope.spawn(|| -> Result<(), String> {
            while !done.load(Relaxed) {
                std::thread::sleep(Duration::from_secs(1));
                if done.load(Relaxed) {
                    break;
                }
                kv.checkpoint().map_err(|e| e.to_string())?;
                taken.fetch_add(1, Relaxed);
            }
            Ok(())
        });
        let rate = mix_for(kv, keys, time, &done);
        done.store(true, Relaxed);
        let joined = checkpointer
            .join()
            .map_err(|_| "the checkpointer panicked")?;
        joined?;
        rate
    })
}

/// Runs the mix for `time`, then sets `done`; ops/s.
fn mix_for(kv: &FasterKv, keys: u64, time: Duration, done: &AtomicBool) -> Result<f64, BoxError> {
    let mut s = kv.session(AddU64)?;
    let mut rng = XorShift64::seeded(keys);
    let mut out = Vec::new();
    let t0 = Instant::now();
    let mut ops = 0u64;
    // Each read is followed by an upsert of the same key with the value read: the mix changes
    // no key's value, so the keys can be checked after recovery.
    while t0.elapsed() < time {
        for _ in 0..512 {
            let k = (rng.below(keys as usize) as u64).to_le_bytes();
            let value = match s.read(&k, &mut out)? {
                Status::Found => out.clone(),
                Status::Pending => match s.complete_pending()?.pop() {
                    Some(c) if c.status == Status::Found => c.value,
                    _ => return Err("a loaded key was not found".into()),
                },
                Status::NotFound => return Err("a loaded key was not found".into()),
            };
            s.upsert(&k, &value)?;
            ops += 2;
        }
    }
    let rate = ops as f64 / t0.elapsed().as_secs_f64();
    done.store(true, Relaxed);
    Ok(rate)
}

/// Reads back 100 000 keys (the updated ones among them) after recovery; how many.
fn verify_sample(kv: &FasterKv, keys: u64, updated: &[u64]) -> Result<u64, BoxError> {
    let last: std::collections::HashMap<u64, u64> =
        updated.iter().map(|&k| (k, k ^ u64::MAX)).collect();
    let mut s = kv.session(AddU64)?;
    let mut out = Vec::new();
    let step = (keys / 100_000).max(1);
    let sample = (0..keys)
        .step_by(step as usize)
        .chain(updated.iter().copied().take(10_000));
    let mut n = 0;
    for k in sample {
        let want = last.get(&k).copied().unwrap_or(k);
        if s.read_blocking(&k.to_le_bytes(), &mut out)? != Status::Found
            || out != want.to_le_bytes()
        {
            return Err(format!("after recovery key {k} does not read {want}").into());
        }
        n += 1;
    }
    Ok(n)
}
