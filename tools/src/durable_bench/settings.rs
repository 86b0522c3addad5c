//! The command line of `vellum bench durable` and the checked settings a run uses.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::bench::Policy;
use crate::durable_bench::content::HEADER_BYTES;
use crate::group_commit::BoxError;

/// Arguments of `vellum bench durable`.
#[derive(clap::Args, Debug)]
pub struct DurableArgs {
    /// Directory for the store (created if missing). The bench owns its `bench-durable` folder:
    /// it empties it, then leaves the store in `bench-durable/store`.
    #[arg(long, default_value_os_t = crate::default_dir())]
    dir: PathBuf,
    /// Nodes in the store, one per key [default: 1000000, 20000 with --quick].
    #[arg(long)]
    nodes: Option<usize>,
    /// Bytes of each node (at least 16: the key and its generation).
    #[arg(long, default_value_t = 16)]
    node_bytes: usize,
    /// Nodes each commit rewrites.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Thread counts, comma-separated [default: 1,2,4,16; 1,2 with --quick].
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Commit policies, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Policy::Strict, Policy::Balanced])]
    policies: Vec<Policy>,
    /// Seconds each cell (policy, thread count, run) commits for [default: 10, 0.5 with --quick].
    #[arg(long)]
    seconds: Option<f64>,
    /// Runs of every cell; the table shows their medians [default: 3, 1 with --quick].
    #[arg(long)]
    runs: Option<usize>,
    /// A small run (for CI and tests): smaller defaults for the four settings above.
    #[arg(long)]
    quick: bool,
}

/// What one run of the bench does, checked.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The folder the bench owns (`DIR/bench-durable`).
    pub bench_dir: PathBuf,
    pub nodes: usize,
    pub node_bytes: usize,
    pub batch: usize,
    pub threads: Vec<usize>,
    pub policies: Vec<Policy>,
    pub cell_time: Duration,
    pub runs: usize,
}

/// The folder of `--dir` the bench owns: emptied at the start of each run.
pub const BENCH_DIR: &str = "bench-durable";
/// The store the bench writes, inside [`BENCH_DIR`].
pub const STORE: &str = "store";

impl Settings {
    /// The settings of `args`: `--quick` gives the small defaults, explicit flags win.
    pub fn of(args: &DurableArgs) -> Result<Settings, BoxError> {
        let (nodes, threads, seconds, runs) = if args.quick {
            (20_000, vec![1, 2], 0.5, 1)
        } else {
            (1_000_000, vec![1, 2, 4, 16], 10.0, 3)
        };
        let settings = Settings {
            bench_dir: args.dir.join(BENCH_DIR),
            nodes: args.nodes.unwrap_or(nodes),
            node_bytes: args.node_bytes,
            batch: args.batch,
            threads: args.threads.clone().unwrap_or(threads),
            policies: args.policies.clone(),
            cell_time: seconds_to_duration(args.seconds.unwrap_or(seconds))?,
            runs: args.runs.unwrap_or(runs),
        };
        settings.check()?;
        Ok(settings)
    }

    /// The short version the main `vellum bench` runs: a million nodes, 2 s per cell, one run
    /// (with `quick`, the sizes of `--quick`: 20 000 nodes, 1 and 2 threads, 0.5 s per cell).
    pub fn short(dir: &Path, quick: bool) -> Settings {
        let (nodes, threads, cell_time) = if quick {
            (20_000, vec![1, 2], Duration::from_millis(500))
        } else {
            (1_000_000, vec![1, 2, 4, 16], Duration::from_secs(2))
        };
        Settings {
            bench_dir: dir.join(BENCH_DIR),
            nodes,
            node_bytes: 16,
            batch: 100,
            threads,
            policies: vec![Policy::Strict, Policy::Balanced],
            cell_time,
            runs: 1,
        }
    }

    /// The store's directory.
    pub fn store_dir(&self) -> PathBuf {
        self.bench_dir.join(STORE)
    }

    /// Refuses settings a run cannot keep: every thread must own at least `batch` keys, so each
    /// commit can pick `batch` distinct keys of its own.
    pub fn check(&self) -> Result<(), BoxError> {
        if self.node_bytes < HEADER_BYTES {
            return Err(format!("--node-bytes must be at least {HEADER_BYTES}").into());
        }
        if self.threads.is_empty() || self.threads.contains(&0) {
            return Err("--threads must be positive".into());
        }
        if self.policies.is_empty() || self.runs == 0 || self.batch == 0 {
            return Err("--policies, --runs and --batch must not be empty or 0".into());
        }
        let most = self.threads.iter().copied().max().unwrap_or(1);
        if self.nodes / most < self.batch {
            return Err(format!(
                "--nodes {} leaves {} keys to each of {most} threads, fewer than --batch {}",
                self.nodes,
                self.nodes / most,
                self.batch
            )
            .into());
        }
        Ok(())
    }
}

fn seconds_to_duration(seconds: f64) -> Result<Duration, BoxError> {
    match Duration::try_from_secs_f64(seconds) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!("--seconds must be a positive number, not {seconds}").into()),
    }
}
