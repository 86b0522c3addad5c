//! `vellum bench log`: FasterLog append throughput beside raw sequential write+fdatasync
//! bandwidth, commit latency beside raw fdatasync latency, and tailing-reader lag, all in one
//! run on one disk.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::{FasterLog, FasterLogOptions};

use crate::bench::Policy;
use crate::group_commit::BoxError;
use crate::raw_sync::RawSyncFile;

/// Arguments of `vellum bench log`.
#[derive(clap::Args, Debug)]
pub struct LogBenchArgs {
    /// Directory for the stores (created if missing; the bench owns its `bench-log` folder).
    #[arg(long, default_value_os_t = crate::default_dir())]
    dir: PathBuf,
    /// MiB appended per throughput run (after 1 MiB of warm-up, not timed).
    #[arg(long, default_value_t = 128)]
    mib: u64,
    /// Entry sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1024, 16384])]
    entry_bytes: Vec<usize>,
    /// Appender thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2, 4])]
    threads: Vec<usize>,
    /// The commit policy of the store and the log's commits (the runtime's default, BALANCED,
    /// unless given).
    #[arg(long, default_value_t = Policy::Balanced)]
    policy: Policy,
    /// The store's `balanced_payload_bytes_max` in KiB: extents up to this size travel inside the
    /// commit record (one log sync) instead of going to a data file first (a data sync too).
    /// 64 matches FasterLog's largest merged extent, so a small commit costs one log sync.
    #[arg(long, default_value_t = 64)]
    payload_kib: usize,
    /// Page size in KiB.
    #[arg(long, default_value_t = 1024)]
    page_kib: u32,
    /// Commits measured for the latency figures.
    #[arg(long, default_value_t = 1000)]
    commits: usize,
    /// Throughput runs per row; the row reports the medians (this disk's bandwidth drifts, and
    /// the host sometimes stalls a run).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The appender that crosses each 1 MiB mark commits itself and waits for it, instead of a
    /// committer thread committing beside the appenders.
    #[arg(long)]
    inline_commit: bool,
    /// A small run (for CI).
    #[arg(long)]
    quick: bool,
}

/// Bytes appended between commits.
const COMMIT_EVERY_BYTES: u64 = 1 << 20;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

/// Sequential 1 MiB writes, each followed by fdatasync: MiB/s.
fn raw_bandwidth_mib_s(dir: &Path, mib: u64) -> Result<f64, BoxError> {
    let path = dir.join("raw-seq");
    let mut f = File::create(&path)?;
    let chunk = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    for _ in 0..mib {
        f.write_all(&chunk)?;
        f.sync_data()?;
    }
    let s = start.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(mib as f64 / s)
}

fn open_log(dir: &Path, args: &LogBenchArgs) -> Result<FasterLog, BoxError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let options = RuntimeOptions {
        create_if_missing: true,
        policy: args.policy.into(),
        balanced_payload_bytes_max: args.payload_kib << 10,
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(DurableRuntime::open(dir, options)?);
    let log = FasterLog::open(
        rt,
        "bench",
        FasterLogOptions {
            page_bytes: args.page_kib << 10,
            memory_pages: 16,
            policy: Some(args.policy.into()),
        },
    )?;
    Ok(log)
}

/// Appends `total` bytes of `entry`-byte entries from `threads` threads while a committer thread
/// commits every 1 MiB appended (the way FASTER's samples drive FasterLog: appenders never wait
/// for a commit unless the in-memory pages are full of unflushed ones); returns MiB/s of payload,
/// timed until the last commit covering every entry returns.
fn append_run(
    dir: &Path,
    args: &LogBenchArgs,
    entry: usize,
    threads: usize,
    total: u64,
) -> Result<f64, BoxError> {
    let log = open_log(dir, args)?;
    let appended = AtomicU64::new(0);
    let appenders_left = AtomicU64::new(threads as u64);
    let per_thread = total / threads as u64 / entry as u64;
    let payload = vec![0xa5u8; entry];
    // Warm-up, not timed: the store's first commit creates its log and data files.
    for _ in 0..(COMMIT_EVERY_BYTES / entry as u64).max(1) {
        log.append(&payload)?;
    }
    log.commit()?;
    let start = Instant::now();
    std::thread::scope(|s| -> Result<(), BoxError> {
        let committer = s.spawn(|| -> Result<u64, vellum_faster::Error> {
            let mut commits = 0u64;
            let mut covered = 0u64;
            while !args.inline_commit && appenders_left.load(Ordering::Acquire) > 0 {
                if appended.load(Ordering::Acquire) >= covered + COMMIT_EVERY_BYTES {
                    covered = appended.load(Ordering::Acquire);
                    log.commit()?;
                    commits += 1;
                } else {
                    std::thread::sleep(Duration::from_micros(20));
                }
            }
            Ok(commits)
        });
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<(), vellum_faster::Error> {
                    let result = (0..per_thread).try_for_each(|_| {
                        log.append(&payload)?;
                        let before = appended.fetch_add(entry as u64, Ordering::Release);
                        let mark = COMMIT_EVERY_BYTES;
                        if args.inline_commit && before / mark != (before + entry as u64) / mark {
                            log.commit()?;
                        }
                        Ok(())
                    });
                    appenders_left.fetch_sub(1, Ordering::AcqRel);
                    result
                })
            })
            .collect();
        for h in handles {
            h.join().map_err(|_| "appender panicked")??;
        }
        committer.join().map_err(|_| "committer panicked")??;
        Ok(())
    })?;
    log.commit()?;
    let s = start.elapsed().as_secs_f64();
    let bytes = per_thread * threads as u64 * entry as u64;
    Ok(bytes as f64 / (1 << 20) as f64 / s)
}

/// Commits measured before the latency figures, so a store's first-use costs (creating its
/// log and data files) do not count.
const COMMIT_WARMUP: usize = 20;

/// Latencies, in µs and sorted, of `append_and_commit` of one 1 KiB entry and of a raw 1 KiB
/// write+fdatasync, measured alternately on the same disk, so both see the same moments of a
/// disk whose sync latency drifts.
fn commit_latencies_us(
    dir: &Path,
    root: &Path,
    args: &LogBenchArgs,
    rounds: usize,
) -> Result<(Vec<f64>, Vec<f64>), BoxError> {
    let log = open_log(dir, args)?;
    let mut raw = RawSyncFile::create(root, 1024, rounds)?;
    let payload = [0x3cu8; 1024];
    let mut ours = Vec::with_capacity(rounds);
    let mut theirs = Vec::with_capacity(rounds);
    for i in 0..COMMIT_WARMUP + rounds {
        let t = Instant::now();
        log.append_and_commit(&payload)?;
        let us = t.elapsed().as_secs_f64() * 1e6;
        let raw_us = raw.round_us()?;
        if i >= COMMIT_WARMUP {
            ours.push(us);
            theirs.push(raw_us);
        }
    }
    raw.remove()?;
    Ok((sorted(ours), sorted(theirs)))
}

/// Lag from `append` to a tailing reader seeing the entry, in µs, sorted: one appender of 1 KiB
/// entries committing every 64 entries.
fn tail_lag_us(dir: &Path, args: &LogBenchArgs, entries: u64) -> Result<Vec<f64>, BoxError> {
    let log = open_log(dir, args)?;
    let origin = Instant::now();
    std::thread::scope(|s| -> Result<Vec<f64>, BoxError> {
        let reader = s.spawn(|| -> Result<Vec<f64>, vellum_faster::Error> {
            let mut it = log.tail_iter(0);
            let mut lags = Vec::with_capacity(entries as usize);
            while (lags.len() as u64) < entries {
                let Some(e) = it.next_timeout(Duration::from_secs(30))? else {
                    break;
                };
                let mut w = [0u8; 8];
                w.copy_from_slice(&e.bytes[..8]);
                let sent = u64::from_le_bytes(w);
                let now = origin.elapsed().as_nanos() as u64;
                lags.push(now.saturating_sub(sent) as f64 / 1e3);
            }
            Ok(lags)
        });
        let mut payload = vec![0u8; 1024];
        for i in 0..entries {
            let now = origin.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&now.to_le_bytes());
            log.append(&payload)?;
            if i % 64 == 63 {
                log.commit()?;
            }
        }
        log.commit()?;
        let lags = reader.join().map_err(|_| "reader panicked")??;
        Ok(sorted(lags))
    })
}

/// Runs the log benchmark and prints its table.
pub fn run(args: &LogBenchArgs) -> Result<(), BoxError> {
    let root = args.dir.join("bench-log");
    std::fs::create_dir_all(&root)?;
    let mib = if args.quick { 4 } else { args.mib.max(2) };
    let commits = if args.quick { 30 } else { args.commits };
    println!(
        "vellum bench log: policy {}, page {} KiB, {} MiB per run, {} every 1 MiB appended",
        args.policy,
        args.page_kib,
        mib,
        if args.inline_commit {
            "the appender crossing the mark commits"
        } else {
            "a committer thread commits"
        }
    );
    println!(
        "{:>10} {:>8} {:>12} {:>14} {:>10}   (medians of {} runs; % of raw is the median ratio)",
        "entry_B",
        "threads",
        "MiB/s",
        "raw MiB/s",
        "% of raw",
        if args.quick { 1 } else { args.repeat.max(1) }
    );
    let repeat = if args.quick { 1 } else { args.repeat.max(1) };
    for &entry in &args.entry_bytes {
        for &threads in &args.threads {
            let (mut ours, mut raws, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..repeat {
                // Raw just before and just after the run: the host absorbs sequential writes at
                // a rate that drifts over seconds, so the mean of the two is the run's baseline.
                let before = raw_bandwidth_mib_s(&root, mib)?;
                let store = root.join(format!("append-{entry}-{threads}"));
                let mib_s = append_run(&store, args, entry, threads.max(1), mib << 20)?;
                std::fs::remove_dir_all(&store)?;
                let raw = (before + raw_bandwidth_mib_s(&root, mib)?) / 2.0;
                ours.push(mib_s);
                raws.push(raw);
                ratios.push(mib_s / raw);
            }
            let median = |v: Vec<f64>| percentile(&sorted(v), 0.5);
            println!(
                "{entry:>10} {threads:>8} {:>12.1} {:>14.1} {:>9.0}%",
                median(ours),
                median(raws),
                median(ratios) * 100.0
            );
        }
    }
    let store = root.join("commit-latency");
    let (commit, raw_sync) = commit_latencies_us(&store, &root, args, commits)?;
    std::fs::remove_dir_all(&store)?;
    let (c50, r50) = (percentile(&commit, 0.5), percentile(&raw_sync, 0.5));
    println!(
        "commit latency (append_and_commit 1 KiB, {commits} after {COMMIT_WARMUP} warm-up, alternating with raw): p50 {c50:.0} us, p90 {:.0} us, p99 {:.0} us; raw 1 KiB write+fdatasync p50 {r50:.0} us, p90 {:.0} us, p99 {:.0} us; p50 ratio {:.2}",
        percentile(&commit, 0.9),
        percentile(&commit, 0.99),
        percentile(&raw_sync, 0.9),
        percentile(&raw_sync, 0.99),
        c50 / r50
    );
    let store = root.join("tail-lag");
    let lag = tail_lag_us(&store, args, if args.quick { 2000 } else { 20_000 })?;
    std::fs::remove_dir_all(&store)?;
    println!(
        "tailing-reader lag (append to read, commit every 64 x 1 KiB): p50 {:.0} us, p99 {:.0} us, max {:.0} us",
        percentile(&lag, 0.5),
        percentile(&lag, 0.99),
        lag.last().copied().unwrap_or(0.0)
    );
    Ok(())
}
