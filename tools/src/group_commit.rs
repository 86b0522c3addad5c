//! `vellum bench group-commit`: the delta log's group commit alone, verified after reopening.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vellum::io::{OsStorage, Storage};
use vellum::log::{DeltaLog, LogOptions, log_file_name, replay};

/// Arguments of `vellum bench group-commit`.
#[derive(clap::Args, Debug)]
pub struct GroupCommitArgs {
    /// Directory for the store (created if missing; the bench owns its `bench-log` subdirectory).
    #[arg(long, default_value_os_t = crate::default_dir())]
    dir: PathBuf,
    /// Thread counts to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    threads: Vec<usize>,
    /// Durable commits per thread count.
    #[arg(long, default_value_t = 4000)]
    commits: usize,
    /// Bytes of each commit record.
    #[arg(long, default_value_t = 100)]
    record_bytes: usize,
    /// A small run (for CI): 200 commits per thread count.
    #[arg(long)]
    quick: bool,
}

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One thread count's figures.
struct Round {
    threads: usize,
    commits: usize,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
    syncs: u64,
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A commit record that names its writer and sequence, padded to `len` bytes.
fn record(thread: usize, seq: usize, len: usize) -> Vec<u8> {
    let mut r = Vec::with_capacity(len.max(16));
    r.extend_from_slice(&(thread as u64).to_le_bytes());
    r.extend_from_slice(&(seq as u64).to_le_bytes());
    r.resize(len.max(16), (seq % 251) as u8);
    r
}

pub fn raw_fdatasync_us(dir: &Path, rounds: usize) -> Result<f64, BoxError> {
    let storage = OsStorage::new();
    let path = dir.join("raw-fdatasync");
    if storage.exists(&path)? {
        storage.remove(&path)?;
    }
    let f = storage.create(&path)?;
    let buf = [0x5au8; 100];
    let start = Instant::now();
    for i in 0..rounds {
        f.write_at(&buf, (i * buf.len()) as u64)?;
        f.sync_data()?;
    }
    let us = start.elapsed().as_secs_f64() * 1e6 / rounds as f64;
    storage.remove(&path)?;
    Ok(us)
}

fn run_round(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    seq: u64,
    threads: usize,
    commits: usize,
    record_bytes: usize,
) -> Result<Round, BoxError> {
    let log = Arc::new(DeltaLog::create(
        storage.clone(),
        dir,
        seq,
        0,
        LogOptions::default(),
    )?);
    let per_thread = commits.div_ceil(threads);
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || -> Result<Vec<u64>, vellum::Error> {
                let mut lat = Vec::with_capacity(per_thread);
                for i in 0..per_thread {
                    let body = record(t, i, record_bytes);
                    let t0 = Instant::now();
                    let pos = log.append(&body)?;
                    log.sync_to(pos)?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
                Ok(lat)
            })
        })
        .collect();
    let mut latencies_ns = Vec::with_capacity(per_thread * threads);
    for h in handles {
        let lat = h.join().map_err(|_| "a bench thread panicked")??;
        latencies_ns.extend(lat);
    }
    let elapsed = start.elapsed();
    latencies_ns.sort_unstable();
    Ok(Round {
        threads,
        commits: per_thread * threads,
        elapsed,
        latencies_ns,
        syncs: log.stats().syncs,
    })
}

/// Reopens the log and checks that every acknowledged record is present exactly once.
fn verify(
    storage: &dyn Storage,
    dir: &Path,
    round: &Round,
    seq: u64,
    record_bytes: usize,
) -> Result<Duration, BoxError> {
    let per_thread = round.commits / round.threads;
    let mut seen = HashSet::with_capacity(round.commits);
    let start = Instant::now();
    let summary = replay(storage, &dir.join(log_file_name(seq)), |frame| {
        seen.insert(frame.body.clone());
        Ok(())
    })?;
    let elapsed = start.elapsed();
    if summary.frames != round.commits as u64 || seen.len() != round.commits {
        return Err(format!(
            "log {seq}: {} frames replayed ({} distinct), {} acknowledged",
            summary.frames,
            seen.len(),
            round.commits
        )
        .into());
    }
    for t in 0..round.threads {
        for i in 0..per_thread {
            if !seen.contains(&record(t, i, record_bytes)) {
                return Err(format!("log {seq}: acknowledged record ({t}, {i}) is missing").into());
            }
        }
    }
    Ok(elapsed)
}

/// Runs the bench and prints its report.
pub fn run(args: &GroupCommitArgs) -> Result<(), BoxError> {
    let commits = if args.quick { 200 } else { args.commits };
    if args.threads.contains(&0) || commits == 0 {
        return Err("--threads and --commits must be positive".into());
    }
    let dir = args.dir.join("bench-group-commit");
    // The bench owns this subdirectory: start from an empty one.
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    storage.create_dir_all(&dir)?;
    eprintln!("vellum bench: delta log group commit in {}", dir.display());

    eprintln!("  measuring raw fdatasync ...");
    let raw_us = raw_fdatasync_us(&dir, if args.quick { 50 } else { 500 })?;
    println!(
        "raw pwrite+fdatasync: {raw_us:.1} us/op ({:.0} ops/s)",
        1e6 / raw_us
    );
    println!(
        "{:>7} {:>9} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "threads", "commits", "commits/s", "p50 us", "p99 us", "max us", "syncs", "replay ms"
    );
    for (i, &threads) in args.threads.iter().enumerate() {
        let seq = i as u64 + 1;
        eprintln!(
            "  {threads} thread(s): {commits} durable commits of {} B ...",
            args.record_bytes
        );
        let round = run_round(&storage, &dir, seq, threads, commits, args.record_bytes)?;
        eprintln!("  {threads} thread(s): reopening and verifying every acknowledged commit ...");
        let replay_time = verify(storage.as_ref(), &dir, &round, seq, args.record_bytes)?;
        let l = &round.latencies_ns;
        println!(
            "{:>7} {:>9} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>10.2}",
            round.threads,
            round.commits,
            round.commits as f64 / round.elapsed.as_secs_f64(),
            percentile(l, 0.50) as f64 / 1e3,
            percentile(l, 0.99) as f64 / 1e3,
            percentile(l, 1.0) as f64 / 1e3,
            round.syncs,
            replay_time.as_secs_f64() * 1e3,
        );
    }
    println!("verified: every acknowledged commit was present after reopening");
    Ok(())
}
