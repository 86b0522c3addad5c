//! `vellum bench group-commit`: the delta log's group commit alone, verified after reopening.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::raw_sync::RawSyncFile;
use vellum::io::{OsStorage, Storage};
use vellum::log::{DeltaLog, LogOptions, log_file_name, replay};

/// Arguments of `vellum bench group-commit`.
#[derive(clap::Args, Debug)]
pub struct GroupCommitArgs {
    /// Directory for the store (created if missing; the bench owns its `bench-group-commit`
    /// subdirectory).
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
    /// Repetitions: each measures raw fdatasync again and then every thread count, so the ratios
    /// compare figures taken minutes, not tens of minutes, apart (this disk's latency drifts).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// A small run (for CI): 200 commits per thread count, one repetition.
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

/// The mean latency in µs of `rounds` raw 100-byte write+fdatasync rounds at successive offsets
/// of a file written and synced ahead (so each sync covers data only, as the log's syncs do into
/// zeroed-ahead space, and not a change of the file's length).
pub fn raw_fdatasync_us(dir: &Path, rounds: usize) -> Result<f64, BoxError> {
    let mut raw = RawSyncFile::create(dir, 100, rounds)?;
    let per_sec = raw.syncs_per_sec(rounds, Duration::MAX)?;
    raw.remove()?;
    Ok(1e6 / per_sec)
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

/// One thread, `rounds` times: a raw 100-byte `pwrite` + `fdatasync`, then a log commit of the
/// same record (append + sync). Alternating them exposes both to the same moments of the disk,
/// whose latency drifts by tens of percent over seconds. Returns (raw us, commit us) averages.
fn interleaved_latency(
    dir: &Path,
    rounds: usize,
    record_bytes: usize,
) -> Result<(f64, f64), BoxError> {
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let path = dir.join("raw-interleaved");
    if storage.exists(&path)? {
        storage.remove(&path)?;
    }
    let raw = storage.create(&path)?;
    let buf = [0x5au8; 100];
    raw.write_at(&vec![0u8; rounds * buf.len()], 0)?;
    raw.sync_all()?;
    let log_dir = dir.join("interleaved");
    if log_dir.exists() {
        std::fs::remove_dir_all(&log_dir)?;
    }
    storage.create_dir_all(&log_dir)?;
    let log = DeltaLog::create(storage.clone(), &log_dir, 1, 0, LogOptions::default())?;
    let (mut raw_t, mut log_t) = (Duration::ZERO, Duration::ZERO);
    for i in 0..rounds {
        let t = Instant::now();
        raw.write_at(&buf, (i * buf.len()) as u64)?;
        raw.sync_data()?;
        raw_t += t.elapsed();
        let t = Instant::now();
        let pos = log.append(&record(0, i, record_bytes))?;
        log.sync_to(pos)?;
        log_t += t.elapsed();
    }
    storage.remove(&path)?;
    let us = |d: Duration| d.as_secs_f64() * 1e6 / rounds as f64;
    Ok((us(raw_t), us(log_t)))
}

/// One repetition: the raw fdatasync in microseconds, then (threads, commits/s, p50 latency in ns)
/// for each thread count.
type Repetition = (f64, Vec<(usize, f64, u64)>);

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Medians over the repetitions of the ratios the targets are stated in: single-thread commit
/// latency against a raw fdatasync of the same repetition, and each thread count's commits/s
/// against one thread's of the same repetition.
fn summarize(threads: &[usize], reps: &[Repetition]) {
    let single = |rows: &[(usize, f64, u64)]| rows.iter().find(|r| r.0 == 1).copied();
    let latency: Vec<f64> = reps
        .iter()
        .filter_map(|(raw, rows)| single(rows).map(|r| r.2 as f64 / 1e3 / raw))
        .collect();
    if !latency.is_empty() {
        println!(
            "median over {} repetitions: one thread's p50 commit latency = {:.2}x a raw fdatasync",
            reps.len(),
            median(latency)
        );
    }
    for &t in threads {
        let ratios: Vec<f64> = reps
            .iter()
            .filter_map(|(_, rows)| {
                let one = single(rows)?;
                let this = rows.iter().find(|r| r.0 == t)?;
                Some(this.1 / one.1)
            })
            .collect();
        let raw: Vec<f64> = reps
            .iter()
            .filter_map(|(raw, rows)| Some(rows.iter().find(|r| r.0 == t)?.1 * raw / 1e6))
            .collect();
        if !ratios.is_empty() {
            println!(
                "median over {} repetitions: {t:>2} threads = {:.2}x one thread's commits/s, {:.2}x raw fdatasync/s",
                reps.len(),
                median(ratios),
                median(raw)
            );
        }
    }
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

    let repeat = if args.quick { 1 } else { args.repeat.max(1) };
    println!(
        "{:>3} {:>7} {:>7} {:>9} {:>11} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "rep",
        "raw us",
        "threads",
        "commits",
        "commits/s",
        "p50 us",
        "p99 us",
        "max us",
        "syncs",
        "replay ms"
    );
    let mut reps: Vec<Repetition> = Vec::new();
    let mut seq = 0;
    for rep in 1..=repeat {
        eprintln!("  repetition {rep}: measuring raw fdatasync ...");
        let raw_us = raw_fdatasync_us(&dir, if args.quick { 50 } else { 300 })?;
        let mut rows = Vec::new();
        for &threads in &args.threads {
            seq += 1;
            eprintln!(
                "  repetition {rep}, {threads} thread(s): {commits} durable commits of {} B ...",
                args.record_bytes
            );
            let round = run_round(&storage, &dir, seq, threads, commits, args.record_bytes)?;
            let replay_time = verify(storage.as_ref(), &dir, &round, seq, args.record_bytes)?;
            let l = &round.latencies_ns;
            let rate = round.commits as f64 / round.elapsed.as_secs_f64();
            println!(
                "{:>3} {:>7.1} {:>7} {:>9} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>10} {:>10.2}",
                rep,
                raw_us,
                round.threads,
                round.commits,
                rate,
                percentile(l, 0.50) as f64 / 1e3,
                percentile(l, 0.99) as f64 / 1e3,
                percentile(l, 1.0) as f64 / 1e3,
                round.syncs,
                replay_time.as_secs_f64() * 1e3,
            );
            rows.push((threads, rate, percentile(l, 0.50)));
        }
        reps.push((raw_us, rows));
    }
    summarize(&args.threads, &reps);
    eprintln!("  one thread, commits interleaved with raw fdatasyncs ...");
    let (raw_us, commit_us) =
        interleaved_latency(&dir, if args.quick { 50 } else { 1000 }, args.record_bytes)?;
    println!(
        "one thread, interleaved with raw syncs: commit {commit_us:.1} us, raw pwrite+fdatasync \
         {raw_us:.1} us = {:.2}x",
        commit_us / raw_us
    );
    println!("verified: every acknowledged commit was present after reopening");
    Ok(())
}
