//! `vellum bench`: the runtime's commit workload for each policy, then a reopen that verifies
//! every acknowledged commit, and a recovery measurement.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

use crate::group_commit::{BoxError, raw_fdatasync_us};

/// Arguments of `vellum bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Directory for the store (created if missing; the bench owns its `bench-runtime` folder).
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
    /// Commits per STRICT/BALANCED round.
    #[arg(long, default_value_t = 2000)]
    commits: usize,
    /// Commits per EVENTUAL round.
    #[arg(long, default_value_t = 100_000)]
    eventual_commits: usize,
    /// Nodes for the recovery measurement (0 skips it).
    #[arg(long, default_value_t = 1_000_000)]
    recovery_nodes: usize,
    /// A small run (for CI).
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

fn options() -> RuntimeOptions {
    RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    }
}

fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1e3
}

/// An acknowledged node: its id, the seed of its content, and its length.
type Acked = (NodeId, u64, usize);

struct Round {
    acked: Vec<Acked>,
    elapsed: Duration,
    latencies_ns: Vec<u64>,
}

/// `threads` threads each commit their share of `commits` transactions of one new node.
fn round(
    rt: &Arc<DurableRuntime>,
    policy: CommitPolicy,
    threads: usize,
    commits: usize,
    len: usize,
    seed_base: u64,
) -> Result<Round, BoxError> {
    let per = commits.div_ceil(threads);
    // Contents are made before the clock starts, so the figures measure commits only.
    let contents: Vec<Vec<Vec<u8>>> = (0..threads)
        .map(|t| {
            (0..per)
                .map(|i| content(seed_base + (t * per + i) as u64, len))
                .collect()
        })
        .collect();
    let start = Instant::now();
    let handles: Vec<_> = contents
        .into_iter()
        .enumerate()
        .map(|(t, mine)| {
            let rt = rt.clone();
            std::thread::spawn(move || -> Result<(Vec<Acked>, Vec<u64>), vellum::Error> {
                let mut acked = Vec::with_capacity(per);
                let mut lat = Vec::with_capacity(per);
                for (i, bytes) in mine.iter().enumerate() {
                    let t0 = Instant::now();
                    let mut tx = rt.begin();
                    let id = tx.alloc(1, bytes)?;
                    tx.commit_with(policy)?;
                    lat.push(t0.elapsed().as_nanos() as u64);
                    acked.push((id, seed_base + (t * per + i) as u64, len));
                }
                Ok((acked, lat))
            })
        })
        .collect();
    let mut acked = Vec::new();
    let mut latencies_ns = Vec::new();
    for h in handles {
        let (a, l) = h.join().map_err(|_| "a bench thread panicked")??;
        acked.extend(a);
        latencies_ns.extend(l);
    }
    if policy == CommitPolicy::Eventual {
        rt.sync()?;
    }
    let elapsed = start.elapsed();
    latencies_ns.sort_unstable();
    Ok(Round {
        acked,
        elapsed,
        latencies_ns,
    })
}

fn verify(rt: &DurableRuntime, acked: &[Acked]) -> Result<(), BoxError> {
    for (id, seed, len) in acked {
        let got = rt.read(*id)?;
        if got != content(*seed, *len) {
            return Err(format!("acknowledged node {id} came back with different bytes").into());
        }
    }
    Ok(())
}

fn recovery(dir: &Path, nodes: usize) -> Result<(), BoxError> {
    let dir = dir.join("recovery");
    std::fs::create_dir_all(&dir)?;
    eprintln!(
        "  recovery: writing {nodes} nodes of 64 B (checkpoint at 90 %, the rest in the log) ..."
    );
    let mut acked = Vec::with_capacity(nodes);
    {
        let rt = DurableRuntime::open(&dir, options())?;
        let per_tx = 1000;
        for batch in 0..nodes.div_ceil(per_tx) {
            let mut tx = rt.begin();
            for i in 0..per_tx.min(nodes - batch * per_tx) {
                let seed = (batch * per_tx + i) as u64;
                let id = tx.alloc(1, &content(seed, 64))?;
                acked.push((id, seed, 64));
            }
            tx.commit_with(CommitPolicy::Balanced)?;
            if batch + 1 == nodes * 9 / 10 / per_tx {
                rt.checkpoint()?;
            }
        }
        rt.close()?;
    }
    let t0 = Instant::now();
    let rt = DurableRuntime::open(&dir, options())?;
    let open_time = t0.elapsed();
    let stats = rt.stats();
    verify(&rt, &acked)?;
    println!(
        "recovery of {nodes} nodes: {:.0} ms (checkpoint + {} log records replayed); every node verified",
        open_time.as_secs_f64() * 1e3,
        stats.recovery_records
    );
    Ok(())
}

/// Runs the bench and prints its report.
pub fn run(args: &BenchArgs) -> Result<(), BoxError> {
    let (commits, eventual_commits, recovery_nodes) = if args.quick {
        (100, 2000, 20_000)
    } else {
        (args.commits, args.eventual_commits, args.recovery_nodes)
    };
    if args.threads.contains(&0) || commits == 0 || args.node_bytes.is_empty() {
        return Err("--threads, --commits and --node-bytes must be positive".into());
    }
    let dir = args.dir.join("bench-runtime");
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    eprintln!("vellum bench: runtime commit workload in {}", dir.display());
    eprintln!("  measuring raw fdatasync ...");
    let raw_us = raw_fdatasync_us(&dir, if args.quick { 50 } else { 500 })?;
    println!(
        "raw pwrite+fdatasync: {raw_us:.1} us ({:.0}/s)",
        1e6 / raw_us
    );
    println!(
        "{:>9} {:>7} {:>7} {:>8} {:>11} {:>7} {:>8} {:>8} {:>9} {:>10} {:>7} {:>11}",
        "policy",
        "threads",
        "node B",
        "commits",
        "commits/s",
        "x raw",
        "p50 us",
        "p99 us",
        "log syncs",
        "data syncs",
        "groups",
        "syncs/group"
    );
    let store = dir.join("store");
    let mut acked = Vec::new();
    {
        let rt = Arc::new(DurableRuntime::open(&store, options())?);
        for policy in args.policies.iter().map(|&p| CommitPolicy::from(p)) {
            for &len in &args.node_bytes {
                for &threads in &args.threads {
                    let n = if policy == CommitPolicy::Eventual {
                        eventual_commits
                    } else {
                        commits
                    };
                    eprintln!("  {policy:?}: {threads} thread(s), {n} commits of {len} B ...");
                    let before = rt.stats();
                    let r = round(&rt, policy, threads, n, len, acked.len() as u64 * 7919)?;
                    let after = rt.stats();
                    let rate = r.acked.len() as f64 / r.elapsed.as_secs_f64();
                    let log_syncs = after.log_syncs - before.log_syncs;
                    let data_syncs = after.data_syncs - before.data_syncs;
                    let groups = after.flushes - before.flushes;
                    println!(
                        "{:>9} {:>7} {:>7} {:>8} {:>11.0} {:>7.2} {:>8.1} {:>8.1} {:>9} {:>10} {:>7} {:>11.2}",
                        format!("{policy:?}"),
                        threads,
                        len,
                        r.acked.len(),
                        rate,
                        rate * raw_us / 1e6,
                        percentile(&r.latencies_ns, 0.5),
                        percentile(&r.latencies_ns, 0.99),
                        log_syncs,
                        data_syncs,
                        groups,
                        (log_syncs + data_syncs) as f64 / groups.max(1) as f64,
                    );
                    acked.extend(r.acked);
                }
            }
        }
        let rt = Arc::try_unwrap(rt).map_err(|_| "the runtime is still shared")?;
        rt.close()?;
    }
    eprintln!(
        "  reopening and verifying {} acknowledged commits ...",
        acked.len()
    );
    let t0 = Instant::now();
    let rt = DurableRuntime::open(&store, options())?;
    let reopen = t0.elapsed();
    verify(&rt, &acked)?;
    println!(
        "reopened in {:.0} ms ({} log records replayed); verified: all {} acknowledged commits present and exact",
        reopen.as_secs_f64() * 1e3,
        rt.stats().recovery_records,
        acked.len()
    );
    drop(rt);
    if recovery_nodes > 0 {
        recovery(&dir, recovery_nodes)?;
    }
    Ok(())
}
