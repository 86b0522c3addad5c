//! `vellum bench`: FasterKV's YCSB workloads (`vellum bench kv`), durable commits of batches of
//! small updates (`vellum bench durable` at a short length), then the runtime's commit workload for each policy, a reopen that verifies every
//! acknowledged commit, a recovery measurement, and a summary of what the run showed and what it
//! left on disk.
//!
//! Its stores sit at fixed paths under `--dir` so the README's `fsck`/`dump`/`compact` commands
//! can name them: [`MAIN_STORE`] and [`RECOVERY_STORE`] inside [`BENCH_DIR`].

mod report;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

use self::report::{Row, Store, Summary};
use self::workload::{Acked, Contents};
use crate::footprint::{disk_use, peak_resident_bytes};
use crate::group_commit::{BoxError, raw_fdatasync_us};

/// The folder of `--dir` the bench owns: emptied at the start of each run.
pub const BENCH_DIR: &str = "bench-runtime";
/// The store the commit rounds write, inside [`BENCH_DIR`].
pub const MAIN_STORE: &str = "store";
/// The store of the recovery measurement, inside [`BENCH_DIR`].
pub const RECOVERY_STORE: &str = "recovery";

/// Mapped windows the bench's stores may hold. Written windows are resident file pages until
/// unmapped, so under the library's default of 1 GiB about 1.1 GB of the 1.2 GB the EVENTUAL
/// 4 KiB rounds write counted as the process's resident memory. With a quarter of it the rates
/// stayed within this bench's run-to-run spread (2-vCPU VM, interleaved runs).
const MAPPED_BYTES_MAX: u64 = 256 << 20;

/// Arguments of `vellum bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Directory for the stores (created if missing). The bench owns its `bench-runtime` folder:
    /// it empties it, then leaves the main store in `bench-runtime/store` and the recovery store
    /// in `bench-runtime/recovery`.
    #[arg(long, default_value_os_t = crate::default_dir())]
    dir: PathBuf,
    /// Thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 4, 16])]
    threads: Vec<usize>,
    /// Node sizes in bytes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [100usize, 4096])]
    node_bytes: Vec<usize>,
    /// Commit policies, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Policy::Strict, Policy::Balanced, Policy::Eventual])]
    policies: Vec<Policy>,
    /// Commits per STRICT/BALANCED round [default: 2000, 100 with --quick].
    #[arg(long)]
    commits: Option<usize>,
    /// Commits per EVENTUAL round [default: 100000, 2000 with --quick].
    #[arg(long)]
    eventual_commits: Option<usize>,
    /// Nodes for the recovery measurement, 0 skips it [default: 1000000, 20000 with --quick].
    #[arg(long)]
    recovery_nodes: Option<usize>,
    /// A small run (for CI): smaller defaults for the three counts above.
    #[arg(long)]
    quick: bool,
}

/// A commit policy as the command line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Policy {
    Strict,
    Balanced,
    Eventual,
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Strict => "strict",
            Policy::Balanced => "balanced",
            Policy::Eventual => "eventual",
        })
    }
}

impl From<Policy> for CommitPolicy {
    fn from(p: Policy) -> CommitPolicy {
        match p {
            Policy::Strict => CommitPolicy::Strict,
            Policy::Balanced => CommitPolicy::Balanced,
            Policy::Eventual => CommitPolicy::Eventual,
        }
    }
}

/// Options for opening a store the bench has just emptied the folder of.
fn create_options() -> RuntimeOptions {
    RuntimeOptions {
        create_if_missing: true,
        ..open_options()
    }
}

/// Options for reopening a store the bench wrote.
fn open_options() -> RuntimeOptions {
    let mut o = RuntimeOptions::default();
    o.data.mapped_bytes_max = MAPPED_BYTES_MAX;
    o
}

fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1e3
}

/// The round counts after `--quick` and explicit flags (which win).
struct Counts {
    commits: usize,
    eventual_commits: usize,
    recovery_nodes: usize,
}

impl Counts {
    fn of(args: &BenchArgs) -> Counts {
        let (commits, eventual_commits, recovery_nodes) = if args.quick {
            (100, 2000, 20_000)
        } else {
            (2000, 100_000, 1_000_000)
        };
        Counts {
            commits: args.commits.unwrap_or(commits),
            eventual_commits: args.eventual_commits.unwrap_or(eventual_commits),
            recovery_nodes: args.recovery_nodes.unwrap_or(recovery_nodes),
        }
    }
}

/// Runs the bench and prints its report.
pub fn run(args: &BenchArgs) -> Result<(), BoxError> {
    let counts = Counts::of(args);
    if args.threads.is_empty()
        || args.threads.contains(&0)
        || counts.commits == 0
        || counts.eventual_commits == 0
        || args.node_bytes.is_empty()
    {
        return Err(
            "--threads, --commits, --eventual-commits and --node-bytes must be positive".into(),
        );
    }
    // FasterKV first (`vellum bench kv` with its defaults).
    let kv = crate::kv_bench::report(&crate::kv_bench::KvBenchArgs::defaults(
        &args.dir, args.quick,
    ))?;
    for line in kv {
        println!("{line}");
    }
    println!();
    // Durable commits of 100 small updates next (`vellum bench durable` at a short length).
    let durable = crate::durable_bench::run_short(&args.dir, args.quick)?;
    for line in durable.lines() {
        println!("{line}");
    }
    println!();
    let bench_dir = args.dir.join(BENCH_DIR);
    if bench_dir.exists() {
        std::fs::remove_dir_all(&bench_dir)?;
    }
    std::fs::create_dir_all(&bench_dir)?;
    eprintln!(
        "vellum bench: runtime commit workload in {}",
        bench_dir.display()
    );
    eprintln!("  measuring raw fdatasync ...");
    let raw_syncs = if args.quick { 50 } else { 500 };
    let raw_us = raw_fdatasync_us(&bench_dir, raw_syncs)?;
    report::print_header(raw_us);
    let contents = Arc::new(Contents::new());

    let main = bench_dir.join(MAIN_STORE);
    let (rows, acked) = commit_rounds(args, &counts, &main, &contents, raw_us)?;
    // Measured again, to show whether this disk's sync latency held still during the rounds.
    let raw_after_us = raw_fdatasync_us(&bench_dir, raw_syncs)?;
    eprintln!(
        "  reopening and verifying {} acknowledged commits ...",
        acked.len()
    );
    let t0 = Instant::now();
    let rt = DurableRuntime::open(&main, open_options())?;
    let reopen_time = t0.elapsed();
    let reopen_records = rt.stats().recovery_records;
    workload::verify(&rt, &contents, &acked)?;
    rt.close()?;
    let verified = acked.len();
    drop(acked);

    let mut stores = vec![("main store", main)];
    let recovery = if counts.recovery_nodes > 0 {
        let dir = bench_dir.join(RECOVERY_STORE);
        let r = workload::recovery(
            &dir,
            counts.recovery_nodes,
            &contents,
            create_options(),
            open_options(),
        )?;
        stores.push(("recovery store", dir));
        Some(r)
    } else {
        None
    };

    let stores = stores
        .into_iter()
        .map(|(what, dir)| {
            Ok(Store {
                what,
                used: disk_use(&dir)?,
                dir,
            })
        })
        .collect::<Result<Vec<_>, std::io::Error>>()?;
    let summary = Summary {
        raw_us,
        raw_after_us,
        rows,
        verified,
        reopen_time,
        reopen_records,
        recovery,
        eventual_flush_interval: open_options().eventual_flush_interval,
        bench_dir,
        stores,
        peak_resident_bytes: peak_resident_bytes(),
    };
    for line in summary.lines() {
        println!("{line}");
    }
    Ok(())
}

/// Every round of every policy, node size and thread count on one store at `dir`, each printed
/// as it ends; returns the rows and every acknowledged commit.
fn commit_rounds(
    args: &BenchArgs,
    counts: &Counts,
    dir: &Path,
    contents: &Arc<Contents>,
    raw_us: f64,
) -> Result<(Vec<Row>, Vec<Acked>), BoxError> {
    let rt = Arc::new(DurableRuntime::open(dir, create_options())?);
    let mut rows = Vec::new();
    let mut acked = Vec::new();
    for policy in args.policies.iter().map(|&p| CommitPolicy::from(p)) {
        for &len in &args.node_bytes {
            for &threads in &args.threads {
                let n = if policy == CommitPolicy::Eventual {
                    counts.eventual_commits
                } else {
                    counts.commits
                };
                eprintln!("  {policy:?}: {threads} thread(s), {n} commits of {len} B ...");
                let before = rt.stats();
                let seed_base = acked.len() as u64 * 7919;
                let r = workload::round(&rt, contents, policy, threads, n, len, seed_base)?;
                let after = rt.stats();
                let commits_per_sec = r.acked.len() as f64 / r.elapsed.as_secs_f64();
                let row = Row {
                    policy,
                    threads,
                    node_bytes: len,
                    commits: r.acked.len(),
                    commits_per_sec,
                    x_raw: commits_per_sec * raw_us / 1e6,
                    p50_us: percentile_us(&r.latencies_ns, 0.5),
                    p99_us: percentile_us(&r.latencies_ns, 0.99),
                    log_syncs: after.log_syncs - before.log_syncs,
                    data_syncs: after.data_syncs - before.data_syncs,
                    groups: after.flushes - before.flushes,
                };
                report::print_row(&row);
                rows.push(row);
                acked.extend(r.acked);
            }
        }
    }
    let rt = Arc::try_unwrap(rt).map_err(|_| "the runtime is still shared")?;
    rt.close()?;
    Ok((rows, acked))
}
