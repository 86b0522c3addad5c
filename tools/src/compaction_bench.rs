//! `vellum bench compaction`: compaction throughput, its effect on concurrent commits, and the
//! space overhead of a churning store with background compaction on.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vellum::NodeId;
use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime, RuntimeOptions};

use crate::group_commit::BoxError;

/// Arguments of `vellum bench compaction`.
#[derive(clap::Args, Debug)]
pub struct CompactionBenchArgs {
    /// Directory for the store (created if missing; the bench owns its `bench-compaction`
    /// subdirectory).
    #[arg(long, default_value_os_t = crate::default_dir())]
    dir: PathBuf,
    /// Nodes written before the store is thinned out.
    #[arg(long, default_value_t = 200_000)]
    nodes: u64,
    /// Bytes of each node.
    #[arg(long, default_value_t = 1024)]
    node_bytes: usize,
    /// Seconds of each timed phase (concurrent commits, churn).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Compaction's throttle while commits run beside it, in MiB/s (0: unthrottled).
    #[arg(long, default_value_t = 32)]
    throttle_mib: u64,
    /// Committing threads in the concurrent and churn phases.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// A small run (for CI).
    #[arg(long)]
    quick: bool,
}

fn options(background: Option<Duration>) -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    o.compaction.interval = background;
    o.compaction.dead_percent_min = 30;
    o
}

fn content(id: NodeId, version: u64, len: usize) -> Vec<u8> {
    let mut b = vec![(id.raw() ^ version) as u8; len];
    b[..8].copy_from_slice(&id.raw().to_le_bytes());
    b[8..16].copy_from_slice(&version.to_le_bytes());
    b
}

/// Writes `n` nodes, then retires three of every four; returns the survivors.
fn thinned_store(rt: &DurableRuntime, n: u64, len: usize) -> Result<Vec<NodeId>, BoxError> {
    let mut all = Vec::with_capacity(n as usize);
    for chunk in 0..n.div_ceil(1000) {
        let mut tx = rt.begin();
        for _ in 0..1000.min(n - chunk * 1000) {
            let id = tx.alloc(1, &vec![0u8; len])?;
            tx.write(id, &content(id, 0, len))?;
            all.push(id);
        }
        tx.commit_with(CommitPolicy::Balanced)?;
    }
    let mut live = Vec::new();
    for chunk in all.chunks(1000) {
        let mut tx = rt.begin();
        for (i, id) in chunk.iter().enumerate() {
            if i % 4 == 0 {
                live.push(*id);
            } else {
                tx.retire(*id)?;
            }
        }
        tx.commit_with(CommitPolicy::Balanced)?;
    }
    rt.sync()?;
    Ok(live)
}

/// Updates random nodes of `ids` from `threads` threads until `stop`; returns commits made.
fn churn(
    rt: &DurableRuntime,
    ids: &[NodeId],
    len: usize,
    threads: usize,
    stop: &AtomicBool,
) -> Result<u64, BoxError> {
    let commits = AtomicU64::new(0);
    std::thread::scope(|s| -> Result<(), BoxError> {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let commits = &commits;
                s.spawn(move || -> Result<(), vellum::Error> {
                    // Each thread owns every `threads`-th node: no conflicts between writers.
                    let mine: Vec<NodeId> = ids.iter().skip(t).step_by(threads).copied().collect();
                    let mut x = t as u64 * 7919 + 1;
                    let mut version = 0;
                    while !stop.load(Ordering::Acquire) {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let id = mine[(x % mine.len().max(1) as u64) as usize];
                        version += 1;
                        let mut tx = rt.begin();
                        tx.write(id, &content(id, version, len))?;
                        tx.commit_with(CommitPolicy::Balanced)?;
                        commits.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "a churn thread panicked")??;
        }
        Ok(())
    })?;
    Ok(commits.into_inner())
}

fn live_bytes(rt: &DurableRuntime) -> u64 {
    rt.stats().class_used_bytes.iter().sum()
}

/// Runs the three measurements and prints their figures.
pub fn run(args: &CompactionBenchArgs) -> Result<(), BoxError> {
    let (nodes, seconds) = if args.quick {
        (20_000, 1)
    } else {
        (args.nodes, args.seconds)
    };
    let len = args.node_bytes;
    let dir = args.dir.join("bench-compaction");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    let phase = Duration::from_secs(seconds);

    // 1. A full pass over a store three quarters dead, nothing else running.
    eprintln!("  writing {nodes} nodes of {len} B and retiring three in four ...");
    let rt = DurableRuntime::open(dir.join("alone"), options(None))?;
    let live = thinned_store(&rt, nodes, len)?;
    let before = rt.data_allocated_bytes()?;
    eprintln!("  compacting ...");
    let t0 = Instant::now();
    let r = rt.compact_with(&CompactionOptions::full(), &mut |_| {})?;
    let took = t0.elapsed();
    let after = rt.data_allocated_bytes()?;
    println!(
        "compaction alone: moved {} nodes, {:.1} MB in {:.2} s = {:.1} MB/s of live data; \
         data files {:.1} MB -> {:.1} MB (live slots {:.1} MB)",
        r.nodes_moved,
        r.bytes_moved as f64 / 1e6,
        took.as_secs_f64(),
        r.bytes_moved as f64 / 1e6 / took.as_secs_f64().max(1e-9),
        before as f64 / 1e6,
        after as f64 / 1e6,
        live_bytes(&rt) as f64 / 1e6
    );
    rt.close()?;

    // 2. Commit throughput without and with compaction passes running beside it.
    let rt = DurableRuntime::open(dir.join("beside"), options(None))?;
    let live2 = thinned_store(&rt, nodes, len)?;
    let stop = AtomicBool::new(false);
    eprintln!("  {} s of commits alone ...", phase.as_secs());
    let t0 = Instant::now();
    let alone = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(phase);
            stop.store(true, Ordering::Release);
        });
        churn(&rt, &live2, len, args.threads, &stop)
    })?;
    let alone_rate = alone as f64 / t0.elapsed().as_secs_f64();
    // Make garbage to compact: retire and re-create a quarter of the live nodes' worth.
    let refill = thinned_store(&rt, nodes, len)?;
    stop.store(false, Ordering::Release);
    eprintln!(
        "  {} s of commits with compaction passes ...",
        phase.as_secs()
    );
    let moved_before = rt.stats().bytes_moved;
    let t0 = Instant::now();
    let beside = std::thread::scope(|s| -> Result<u64, BoxError> {
        let compactor = s.spawn(|| -> Result<(), vellum::Error> {
            let end = Instant::now() + phase;
            let options = CompactionOptions {
                bytes_per_sec_max: (args.throttle_mib > 0).then_some(args.throttle_mib << 20),
                ..CompactionOptions::full()
            };
            while Instant::now() < end {
                rt.compact_with(&options, &mut |_| {})?;
            }
            stop.store(true, Ordering::Release);
            Ok(())
        });
        let n = churn(&rt, &refill, len, args.threads, &stop)?;
        compactor.join().map_err(|_| "the compactor panicked")??;
        Ok(n)
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    let moved = rt.stats().bytes_moved - moved_before;
    println!(
        "commits ({} threads, BALANCED, {len} B): {:.0}/s alone, {:.0}/s with compaction \
         running (throttle {} MiB/s; {:.1} MB/s moved meanwhile)",
        args.threads,
        alone_rate,
        beside as f64 / elapsed,
        args.throttle_mib,
        moved as f64 / 1e6 / elapsed
    );
    rt.close()?;

    // 3. Steady churn with background compaction on: space taken against live bytes.
    let rt = DurableRuntime::open(dir.join("churn"), options(Some(Duration::from_millis(200))))?;
    let live3 = thinned_store(&rt, nodes / 4, len)?;
    stop.store(false, Ordering::Release);
    eprintln!(
        "  {} s of churn with background compaction ...",
        phase.as_secs() * 2
    );
    let samples = std::thread::scope(|s| -> Result<Vec<(u64, u64)>, BoxError> {
        let sampler = s.spawn(|| -> Result<Vec<(u64, u64)>, vellum::Error> {
            let mut samples = Vec::new();
            let end = Instant::now() + phase * 2;
            while Instant::now() < end {
                std::thread::sleep(Duration::from_millis(250));
                samples.push((rt.data_allocated_bytes()?, live_bytes(&rt)));
            }
            stop.store(true, Ordering::Release);
            Ok(samples)
        });
        churn(&rt, &live3, len, args.threads, &stop)?;
        Ok(sampler.join().map_err(|_| "the sampler panicked")??)
    })?;
    let ratios: Vec<f64> = samples
        .iter()
        .map(|&(alloc, live)| alloc as f64 / live.max(1) as f64)
        .collect();
    let last = ratios.last().copied().unwrap_or(0.0);
    let max = ratios.iter().copied().fold(0.0, f64::max);
    println!(
        "churn with background compaction: data files / live slots = {last:.2} at the end, \
         {max:.2} at most ({} samples, {} passes, {:.1} MB moved)",
        ratios.len(),
        rt.stats().compactions,
        rt.stats().bytes_moved as f64 / 1e6
    );
    rt.close()?;
    drop(live);
    Ok(())
}
