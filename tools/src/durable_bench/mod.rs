//! `vellum bench durable`: durable commits of batches of updates to a large store (issue 13).
//!
//! The store holds one node per key. A cell is a (policy, thread count, run): its threads, each
//! owning a disjoint set of keys, commit transactions that rewrite `batch` of their keys each,
//! for a fixed time. Around each cell the bench reads the runtime's counters and what the kernel
//! counted written (`crate::devstats`), and before it the raw write+fdatasync rate of the disk.
//! The store is opened with the library's default options (only `create_if_missing` set), so the
//! figures are those a user gets.
//!
//! The steps, each one function:
//! 1. Empty `DIR/bench-durable`, create the store in `bench-durable/store` and load it
//!    ([`load::load`]).
//! 2. Run every cell ([`cells`]): the runs outermost, so a run's cells are minutes, not tens of
//!    minutes, apart from the same cells of the other runs.
//! 3. Close the store, reopen it and check every key's last acknowledged content
//!    ([`verify::verify`]).

mod cell;
mod content;
mod figures;
mod load;
mod raw;
mod report;
pub(crate) mod rng;
mod settings;
mod verify;

use std::path::Path;

use vellum::runtime::{DurableRuntime, RuntimeOptions};

use self::cell::{Cell, Workload, run_cell};
use self::figures::RunFigures;
pub use self::report::DurableSummary;
use self::report::Row;
pub use self::settings::DurableArgs;
use self::settings::Settings;
use crate::devstats::{DeviceId, IoSample};
use crate::group_commit::BoxError;
use crate::raw_sync::RawSyncFile;

/// Runs the bench as `args` say and prints its report.
pub fn run(args: &DurableArgs) -> Result<(), BoxError> {
    let summary = bench(&Settings::of(args)?)?;
    for line in summary.lines() {
        println!("{line}");
    }
    Ok(())
}

/// The short version for the main `vellum bench`: a million 16 B nodes, 100 updates per commit,
/// 1, 2, 4 and 16 threads, STRICT and BALANCED, one run of 2 s per cell, in `dir/bench-durable`
/// (`quick`: the sizes of `--quick`). Progress goes to stderr; the caller prints the summary.
pub fn run_short(dir: &Path, quick: bool) -> Result<DurableSummary, BoxError> {
    bench(&Settings::short(dir, quick))
}

/// Steps 1 to 3 of the module's list.
fn bench(settings: &Settings) -> Result<DurableSummary, BoxError> {
    settings.check()?;
    let dir = &settings.bench_dir;
    // The bench owns this folder: start from an empty one.
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    std::fs::create_dir_all(dir)?;
    let store = settings.store_dir();
    let options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    let rt = DurableRuntime::open(&store, options)?;
    eprintln!(
        "vellum bench durable: loading {} nodes of {} B into {} ...",
        settings.nodes,
        settings.node_bytes,
        store.display()
    );
    let (ids, load_time) = load::load(&rt, settings.nodes, settings.node_bytes)?;
    eprintln!("  loaded in {:.2} s", load_time.as_secs_f64());
    let work = Workload {
        rt: &rt,
        ids: &ids,
        node_bytes: settings.node_bytes,
        batch: settings.batch,
        cell_time: settings.cell_time,
    };
    let mut generations = vec![0u64; settings.nodes];
    let (rows, raw_syncs_per_sec) = cells(settings, &work, &mut generations)?;
    rt.close()?;
    eprintln!("  reopening and verifying {} keys ...", ids.len());
    let verified = verify::verify(&store, &ids, &generations, settings.node_bytes)?;
    Ok(DurableSummary {
        settings: settings.clone(),
        load_time,
        rows,
        raw_syncs_per_sec,
        verified,
        store,
    })
}

/// Step 2: every cell of every run; returns a row per (policy, thread count) and the raw sync
/// rates measured: one before the first cell, then one after each (which is also the next
/// cell's before).
fn cells(
    settings: &Settings,
    work: &Workload<'_>,
    generations: &mut [u64],
) -> Result<(Vec<Row>, Vec<f64>), BoxError> {
    let mut raw = raw::create(&settings.bench_dir)?;
    // Where the store's disk is not a block device of /proc/diskstats, its figure is "n/a".
    let device = DeviceId::of(&settings.store_dir()).ok();
    let mut rows: Vec<Row> = settings
        .policies
        .iter()
        .flat_map(|&policy| {
            settings.threads.iter().map(move |&threads| Row {
                policy,
                threads,
                runs: Vec::new(),
            })
        })
        .collect();
    let mut before = raw::syncs_per_sec(&mut raw)?;
    let mut raw_rates = vec![before];
    for run in 0..settings.runs {
        for (i, row) in rows.iter_mut().enumerate() {
            let cell = Cell {
                policy: row.policy.into(),
                threads: row.threads,
                seed: ((run as u64) << 32) | i as u64,
            };
            let (figures, after) = measure(work, &cell, (&mut raw, before), device, generations)?;
            eprintln!(
                "  run {}/{}: {}, {} thread(s): {:.0} commits/s ({:.2}x raw), p50 {:.0} us",
                run + 1,
                settings.runs,
                row.policy,
                row.threads,
                figures.commits_per_sec,
                figures.x_raw(),
                figures.latency_us_p50
            );
            raw_rates.push(after);
            before = after;
            row.runs.push(figures);
        }
    }
    raw.remove()?;
    Ok((rows, raw_rates))
}

/// One cell with what is measured around it: the runtime's counters and the kernel's write
/// counts around it, and the raw sync rate just after it (returned too), which with the rate
/// `raw_before` measured just before it gives the cell's baseline ([`raw::around`]).
fn measure(
    work: &Workload<'_>,
    cell: &Cell,
    (raw, raw_before): (&mut RawSyncFile, f64),
    device: Option<DeviceId>,
    generations: &mut [u64],
) -> Result<(RunFigures, f64), BoxError> {
    let stats_before = work.rt.stats();
    let io_before = IoSample::take(device);
    let outcome = run_cell(work, cell, generations)?;
    let written = IoSample::take(device).since(&io_before);
    let stats_after = work.rt.stats();
    let raw_after = raw::syncs_per_sec(raw)?;
    let figures = RunFigures::of(
        &outcome,
        raw::around(raw_before, raw_after),
        &stats_before,
        &stats_after,
        &written,
    );
    Ok((figures, raw_after))
}
