//! `vellum bench kv`: YCSB-style workloads on FasterKV. For each value size and memory mode it
//! opens a store in `--dir/bench-kv`, loads `--keys` keys of 8 bytes, runs workloads A, B, C and
//! F under uniform and Zipfian (θ = 0.99) keys from 1 and 2 threads, printing Mops/s, the share
//! of operations that read the disk and the log's bytes in page nodes, then reads every key
//! back and checks its exact final value. "Larger than memory" gives the log a tenth of the
//! data's bytes. Progress goes to stderr, the report to stdout.

mod checkpoint;
mod keys;
mod run;
mod values;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::kv::index::IndexOptions;
use vellum_faster::kv::record::{pad8, record_size};
use vellum_faster::kv::{FasterKv, KvOptions};

use self::keys::{Distribution, KeyChooser, Zipf};
use self::run::{RunSpec, Workload};
use crate::footprint::{peak_resident_bytes, reset_peak_resident};
use crate::group_commit::BoxError;

/// The folder of `--dir` the bench owns: emptied at the start of each run.
pub const BENCH_DIR: &str = "bench-kv";

/// Where the log's records live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Memory {
    /// The log's memory holds all the data.
    All,
    /// The log's memory is a tenth of the data's bytes: most reads go to page nodes.
    Tenth,
}

/// Arguments of `vellum bench kv`.
#[derive(clap::Args, Debug, Clone)]
pub struct KvBenchArgs {
    /// Directory for the stores (created if missing; the bench owns its `bench-kv` folder).
    #[arg(long, default_value_os_t = crate::default_dir())]
    pub dir: PathBuf,
    /// Keys loaded [default: 1000000, 20000 with --quick].
    #[arg(long)]
    pub keys: Option<u64>,
    /// Operations per run, over all its threads [default: 2000000, 20000 with --quick].
    #[arg(long)]
    pub ops: Option<u64>,
    /// Thread counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 2])]
    pub threads: Vec<usize>,
    /// Workloads, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Workload::A, Workload::B, Workload::C, Workload::F])]
    pub workloads: Vec<Workload>,
    /// Key distributions, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Distribution::Uniform, Distribution::Zipf])]
    pub distributions: Vec<Distribution>,
    /// Value sizes in bytes (at least 8), comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [8usize, 100])]
    pub value_bytes: Vec<usize>,
    /// Memory modes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [Memory::All, Memory::Tenth])]
    pub memory: Vec<Memory>,
    /// Starts each store's runs with a cold cache: after the load, the store is synced and the
    /// kernel's page cache dropped (`/proc/sys/vm/drop_caches`, which needs root), and the
    /// runtime keeps at most 128 MiB (two windows) of data-file windows mapped (mapped pages
    /// are not dropped).
    #[arg(long)]
    pub cold: bool,
    /// Key counts of the checkpoint section (full and incremental checkpoints, recovery, the
    /// mix during checkpoints), comma-separated; 0 skips it [default: 1000000,10000000; 20000
    /// with --quick].
    #[arg(long, value_delimiter = ',')]
    pub checkpoint_keys: Vec<u64>,
    /// A small run (for CI).
    #[arg(long)]
    pub quick: bool,
}

impl std::fmt::Display for Memory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(memory_name(*self))
    }
}

/// Bytes of the records of `keys` keys with `value_bytes` values.
fn data_bytes(keys: u64, value_bytes: usize) -> u64 {
    let record = record_size(8, pad8(value_bytes)).map_or(0, u64::from);
    keys * record
}

/// The store's options: an index of about two keys per bucket; a log memory holding twice the
/// data, or a tenth of it in pages of an eighth of that (4 KiB to 4 MiB).
fn kv_options(keys: u64, value_bytes: usize, memory: Memory) -> KvOptions {
    let data = data_bytes(keys, value_bytes);
    let (page_bytes, memory_bytes) = match memory {
        Memory::All => {
            let page = 4u64 << 20;
            (page, (2 * data).div_ceil(page).max(4) * page)
        }
        Memory::Tenth => {
            let budget = (data / 10).max(16 << 10);
            let page = (budget / 8).next_power_of_two().clamp(4 << 10, 4 << 20);
            (page, budget.div_ceil(page).max(2) * page)
        }
    };
    KvOptions {
        index: IndexOptions {
            bucket_count: (keys / 2).next_power_of_two().max(1024),
            ..IndexOptions::default()
        },
        page_bytes: page_bytes as u32,
        log_memory_bytes_max: memory_bytes,
        mutable_percent: 90,
        ..KvOptions::default()
    }
}

impl KvBenchArgs {
    /// The defaults of `vellum bench kv`, as the main job runs it.
    pub fn defaults(dir: &Path, quick: bool) -> KvBenchArgs {
        KvBenchArgs {
            dir: dir.to_path_buf(),
            keys: None,
            ops: None,
            threads: vec![1, 2],
            workloads: vec![Workload::A, Workload::B, Workload::C, Workload::F],
            distributions: vec![Distribution::Uniform, Distribution::Zipf],
            value_bytes: vec![8, 100],
            memory: vec![Memory::All, Memory::Tenth],
            cold: false,
            checkpoint_keys: Vec::new(),
            quick,
        }
    }
}

/// Runs the bench and prints its report.
pub fn run(args: &KvBenchArgs) -> Result<(), BoxError> {
    for line in report(args)? {
        println!("{line}");
    }
    Ok(())
}

/// Runs the bench; returns the report's lines.
pub fn report(args: &KvBenchArgs) -> Result<Vec<String>, BoxError> {
    let keys = args
        .keys
        .unwrap_or(if args.quick { 20_000 } else { 1_000_000 });
    let ops = args
        .ops
        .unwrap_or(if args.quick { 20_000 } else { 2_000_000 });
    if keys == 0 || ops == 0 || args.threads.contains(&0) || args.value_bytes.iter().any(|&v| v < 8)
    {
        return Err(
            "--keys, --ops and --threads must be positive, --value-bytes at least 8".into(),
        );
    }
    let bench_dir = args.dir.join(BENCH_DIR);
    if bench_dir.exists() {
        std::fs::remove_dir_all(&bench_dir)?;
    }
    std::fs::create_dir_all(&bench_dir)?;
    let zipf = args
        .distributions
        .contains(&Distribution::Zipf)
        .then(|| Zipf::new(keys, 0.99));
    let mut lines = vec![
        format!(
            "vellum bench kv: FasterKV, {keys} keys of 8 B, {ops} operations per run, in {}",
            bench_dir.display()
        ),
        format!(
            "{:>6} {:>12} {:>4} {:>8} {:>7} {:>8} {:>9}",
            "value", "memory", "wkld", "keys", "threads", "Mops/s", "disk ops"
        ),
    ];
    for &value_bytes in &args.value_bytes {
        for &memory in &args.memory {
            let store = bench_dir.join(format!("store-{value_bytes}B-{}", memory_name(memory)));
            let ctx = StoreRun {
                args,
                keys,
                ops,
                value_bytes,
                memory,
                zipf,
            };
            lines.extend(ctx.run(&store)?);
        }
    }
    let checkpoint_keys = match (&args.checkpoint_keys[..], args.quick) {
        ([], false) => vec![1_000_000, 10_000_000],
        ([], true) => vec![20_000],
        (given, _) => given.iter().copied().filter(|&k| k > 0).collect(),
    };
    if !checkpoint_keys.is_empty() {
        lines.push("checkpoints (CPR), BALANCED, 8 B values:".into());
    }
    for (i, &n) in checkpoint_keys.iter().enumerate() {
        let dir = bench_dir.join(format!("checkpoint-{n}"));
        lines.extend(checkpoint::report(&dir, n, (i == 0).then_some(args.quick))?);
    }
    if let Some(peak) = peak_resident_bytes() {
        lines.push(format!(
            "peak resident memory of the process: {:.1} MiB",
            peak as f64 / (1 << 20) as f64
        ));
    }
    Ok(lines)
}

/// How the report names a memory mode.
fn memory_label(m: Memory) -> &'static str {
    match m {
        Memory::All => "in memory",
        Memory::Tenth => "1/10 memory",
    }
}

fn memory_name(m: Memory) -> &'static str {
    match m {
        Memory::All => "all",
        Memory::Tenth => "tenth",
    }
}

/// The runs on one store.
struct StoreRun<'a> {
    args: &'a KvBenchArgs,
    keys: u64,
    ops: u64,
    value_bytes: usize,
    memory: Memory,
    zipf: Option<Zipf>,
}

impl StoreRun<'_> {
    fn run(&self, dir: &Path) -> Result<Vec<String>, BoxError> {
        let options = kv_options(self.keys, self.value_bytes, self.memory);
        let mut rt_options = RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        };
        if self.args.cold {
            rt_options.data.mapped_bytes_max = 128 << 20;
        }
        let peak_is_this_store = reset_peak_resident();
        let rt = Arc::new(DurableRuntime::open(dir, rt_options)?);
        let kv = FasterKv::open(Arc::clone(&rt), "bench", options.clone())?;
        eprintln!(
            "vellum bench kv: {} B values, {}: loading {} keys (log memory {} MiB, pages of {} KiB) ...",
            self.value_bytes,
            self.memory,
            self.keys,
            options.log_memory_bytes_max >> 20,
            options.page_bytes >> 10
        );
        let t0 = Instant::now();
        run::load(&kv, self.keys, self.value_bytes, 2)?;
        eprintln!("  loaded in {:.2} s", t0.elapsed().as_secs_f64());
        if self.args.cold {
            rt.sync()?;
            std::fs::write("/proc/sys/vm/drop_caches", "3")
                .map_err(|e| format!("--cold: cannot drop the page cache (needs root): {e}"))?;
            eprintln!("  page cache dropped");
        }
        let mut versions = vec![0u64; self.keys as usize];
        let mut counts = vec![0u64; self.keys as usize];
        let mut lines = Vec::new();
        let mut version = 0;
        for &workload in &self.args.workloads {
            for &distribution in &self.args.distributions {
                for &threads in &self.args.threads {
                    version += 1;
                    let spec = RunSpec {
                        workload,
                        keys: KeyChooser::new(self.keys, distribution, self.zipf),
                        key_count: self.keys,
                        threads,
                        ops_per_thread: self.ops / threads as u64,
                        value_bytes: self.value_bytes,
                        version,
                        seed: version * 7919,
                    };
                    eprintln!(
                        "  {} {distribution}, {threads} thread(s) ...",
                        workload.to_string().to_uppercase()
                    );
                    let r = run::run(&kv, &spec)?;
                    for (k, &up) in r.upserted.iter().enumerate() {
                        if up {
                            versions[k] = version;
                            counts[k] = 0;
                        }
                    }
                    for (c, inc) in counts.iter_mut().zip(&r.increments) {
                        *c += inc;
                    }
                    lines.push(format!(
                        "{:>5}B {:>12} {:>4} {:>8} {:>7} {:>8.2} {:>8.1}%",
                        self.value_bytes,
                        memory_label(self.memory),
                        workload.to_string().to_uppercase(),
                        distribution.to_string(),
                        threads,
                        r.ops as f64 / r.elapsed.as_secs_f64() / 1e6,
                        100.0 * r.disk_reads as f64 / r.ops as f64,
                    ));
                    eprintln!("    {}", lines.last().map_or("", String::as_str));
                }
            }
        }
        eprintln!("  verifying every key's final value ...");
        let checked = run::verify(&kv, &versions, &counts, self.value_bytes)?;
        let stats = kv.stats();
        lines.push(format!(
            "  {} B values, {}: {checked} keys verified exact; log {:.1} MiB ({:.1} MiB in {} page nodes), store data files {:.1} MiB",
            self.value_bytes,
            memory_label(self.memory),
            (stats.tail - stats.begin) as f64 / (1 << 20) as f64,
            stats.flushed as f64 / (1 << 20) as f64,
            stats.pages_flushed,
            rt.data_allocated_bytes()? as f64 / (1 << 20) as f64,
        ));
        let index_mib = options.index.bucket_count as f64 * 64.0 / (1 << 20) as f64;
        if let Some(peak) = peak_resident_bytes().filter(|_| peak_is_this_store) {
            lines.push(format!(
                "  peak resident memory while on this store: {:.1} MiB (log memory {:.1} MiB, index {index_mib:.1} MiB; the rest is the runtime's mapped windows of page nodes and the bench's own key tables)",
                peak as f64 / (1 << 20) as f64,
                options.log_memory_bytes_max as f64 / (1 << 20) as f64,
            ));
        }
        kv.destroy()?;
        drop(rt);
        // Nothing else reads the store: its space goes back at once.
        std::fs::remove_dir_all(dir)?;
        Ok(lines)
    }
}
