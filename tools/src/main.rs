//! The `vellum` command-line tool.
//!
//! `vellum bench` is the project's main job: FasterKV's YCSB workloads (`vellum bench kv`), then
//! the runtime's commit workload under each policy and a reopen that verifies every acknowledged
//! commit. `vellum bench group-commit` measures the
//! delta log's group commit alone, `vellum bench log` FasterLog's appends, commits and tailing
//! reads, and `vellum bench durable` durable commits of batches of updates to a store of many
//! small nodes. `vellum compact DIR` compacts a store offline, `vellum fsck DIR` checks a store
//! without changing it, and `vellum dump DIR` shows what its files hold (`design/TOOLS.md`).

mod bench;
mod compact;
mod compaction_bench;
mod devstats;
mod dump;
mod durable_bench;
mod footprint;
mod fsck;
mod group_commit;
mod kv_bench;
mod log_bench;
mod raw_sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vellum", version, about = "Tools for vellum stores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the commit workload, reopen, verify every acknowledged commit, and report figures.
    Bench {
        #[command(subcommand)]
        which: Option<BenchKind>,
        #[command(flatten)]
        args: bench::BenchArgs,
    },
    /// Compact a store no process has open: move live nodes out of sparse segments and return
    /// the freed space to the filesystem.
    Compact(compact::CompactArgs),
    /// Check a store without changing it; report every problem with file, offset and kind.
    /// Exit 0 clean, 1 problems found, 2 the store could not be read (or a writer holds it).
    Fsck(fsck::FsckArgs),
    /// Show what a store's files hold: superblock slots, manifest, roots, space, log frames,
    /// checkpoint entries, a node's bytes.
    Dump(dump::DumpArgs),
}

#[derive(Subcommand, Debug)]
enum BenchKind {
    /// The delta log's group commit alone, against raw fdatasync.
    GroupCommit(group_commit::GroupCommitArgs),
    /// Compaction throughput, its effect on concurrent commits, and space under churn.
    Compaction(compaction_bench::CompactionBenchArgs),
    /// FasterLog: append throughput beside raw write+fdatasync bandwidth, commit latency beside
    /// raw fdatasync, tailing-reader lag.
    Log(log_bench::LogBenchArgs),
    /// Durable commits of batches of updates to a store of many small nodes, for each policy
    /// and thread count, against the raw write+fdatasync rate; then a reopen that checks every
    /// key's last acknowledged content.
    Durable(Box<durable_bench::DurableArgs>),
    /// FasterKV: YCSB workloads A, B, C and F, uniform and Zipfian keys, 1 and 2 threads, in
    /// memory and with a tenth of the data in memory; then every key's final value checked.
    Kv(Box<kv_bench::KvBenchArgs>),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fsck(args) => return ExitCode::from(fsck::run(&args)),
        Command::Dump(args) => return ExitCode::from(dump::run(&args)),
        Command::Bench { which: None, args } => bench::run(&args),
        Command::Bench {
            which: Some(BenchKind::GroupCommit(args)),
            ..
        } => group_commit::run(&args),
        Command::Bench {
            which: Some(BenchKind::Compaction(args)),
            ..
        } => compaction_bench::run(&args),
        Command::Bench {
            which: Some(BenchKind::Log(args)),
            ..
        } => log_bench::run(&args),
        Command::Bench {
            which: Some(BenchKind::Durable(args)),
            ..
        } => durable_bench::run(&args),
        Command::Bench {
            which: Some(BenchKind::Kv(args)),
            ..
        } => kv_bench::run(&args),
        Command::Compact(args) => compact::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vellum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The inspection plugins `fsck` and `dump` register: one per structure this tool knows, each
/// decoding the nodes of the roots with its prefix (`design/TOOLS.md` §7).
pub const PLUGINS: &[&dyn vellum::inspect::Plugin] = &[
    &vellum_faster::inspect::FasterLogPlugin,
    &vellum_faster::kv::inspect::FasterKvPlugin,
];

/// The directory the tools use when none is given.
pub fn default_dir() -> PathBuf {
    PathBuf::from("vellum-data")
}
