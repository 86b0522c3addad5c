//! `vellum compact DIR`: a full compaction of a store no process has open, with a progress bar
//! on stderr and a before/after line of the space the data files take.

use std::error::Error as StdError;
use std::path::PathBuf;

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use vellum::runtime::{CompactionOptions, DurableRuntime, RuntimeOptions};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Arguments of `vellum compact`.
#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The store directory.
    dir: PathBuf,
    /// Least share of free slots, in percent, that makes a segment worth emptying (0: every
    /// segment the live nodes do not need).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    dead_percent_min: u8,
}

/// Runs the compaction and prints what it did.
pub fn run(args: &CompactArgs) -> Result<(), BoxError> {
    if !args.dir.is_dir() {
        return Err(format!("{} is not a store directory", args.dir.display()).into());
    }
    let mut options = RuntimeOptions::default();
    options.compaction.interval = None;
    let rt = DurableRuntime::open(&args.dir, options)?;
    let live_bytes = |rt: &DurableRuntime| rt.stats().class_used_bytes.iter().sum::<u64>();
    let (before, live_before) = (rt.data_allocated_bytes()?, live_bytes(&rt));

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} moving nodes {pos}/{len} [{bar:40}] {msg}")?
            .progress_chars("=> "),
    );
    let compaction = CompactionOptions {
        dead_percent_min: args.dead_percent_min,
        ..CompactionOptions::full()
    };
    let report = rt.compact_with(&compaction, &mut |p| {
        bar.set_length(p.nodes_total);
        bar.set_position(p.nodes_done);
        bar.set_message(format!("{} moved", HumanBytes(p.bytes_moved)));
    })?;
    bar.finish_and_clear();
    // A checkpoint makes the moves part of the image recovery starts from.
    rt.checkpoint()?;
    let after = rt.data_allocated_bytes()?;
    let live_after = live_bytes(&rt);
    rt.close()?;
    println!(
        "moved {} nodes ({}) out of {} segments, returned {} segments ({}); {} skipped",
        report.nodes_moved,
        HumanBytes(report.bytes_moved),
        report.victims,
        report.segments_returned,
        HumanBytes(report.bytes_returned),
        report.nodes_skipped,
    );
    println!(
        "data files: {} before, {} after (live slots: {} before, {} after)",
        HumanBytes(before),
        HumanBytes(after),
        HumanBytes(live_before),
        HumanBytes(live_after),
    );
    Ok(())
}
