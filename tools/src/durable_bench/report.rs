//! What `vellum bench durable` reports: a table per policy, one row per thread count with the
//! medians of its runs and each run's commits/s, then the raw sync rates seen and the check.

use std::path::PathBuf;
use std::time::Duration;

use crate::bench::Policy;
use crate::durable_bench::figures::RunFigures;
use crate::durable_bench::settings::Settings;

/// One (policy, thread count) with every run of it.
#[derive(Debug, Clone)]
pub struct Row {
    pub policy: Policy,
    pub threads: usize,
    pub runs: Vec<RunFigures>,
}

impl Row {
    /// The median over the runs of `figure`.
    pub fn median(&self, figure: impl Fn(&RunFigures) -> f64) -> f64 {
        median(self.runs.iter().map(figure).collect())
    }

    /// The median over the runs of a figure that may be missing: `None` if any run lacks it.
    pub fn median_known(&self, figure: impl Fn(&RunFigures) -> Option<f64>) -> Option<f64> {
        let known: Option<Vec<f64>> = self.runs.iter().map(figure).collect();
        known.map(median)
    }

    /// A counter summed over the runs.
    pub fn total(&self, figure: impl Fn(&RunFigures) -> u64) -> u64 {
        self.runs.iter().map(figure).sum()
    }
}

/// Everything a run of the bench found.
#[derive(Debug, Clone)]
pub struct DurableSummary {
    pub settings: Settings,
    pub load_time: Duration,
    /// Every (policy, thread count), in the order of `settings`.
    pub rows: Vec<Row>,
    /// The raw 4 KiB write+fdatasync rates measured: before the first cell and after each.
    pub raw_syncs_per_sec: Vec<f64>,
    /// Keys whose last acknowledged content read back exact after reopening.
    pub verified: usize,
    /// Where the store was left.
    pub store: PathBuf,
}

/// The median of `v` (the upper one of an even count; 0 for none).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

impl DurableSummary {
    /// The report, line by line.
    pub fn lines(&self) -> Vec<String> {
        let s = &self.settings;
        let mut out = vec![
            format!(
                "vellum bench durable: {} nodes of {} B, {} updates per commit, {:.1} s per cell, \
                 {} run(s) of each; load took {:.1} s",
                s.nodes,
                s.node_bytes,
                s.batch,
                s.cell_time.as_secs_f64(),
                s.runs,
                self.load_time.as_secs_f64()
            ),
            LEGEND.to_string(),
        ];
        for &policy in &s.policies {
            out.push(String::new());
            out.push(header());
            let rows = self.rows.iter().filter(|r| r.policy == policy);
            out.extend(rows.map(row_line));
        }
        out.push(String::new());
        out.push(self.raw_line());
        out.push(format!(
            "verified {} keys (store left in {})",
            self.verified,
            self.store.display()
        ));
        out
    }

    fn raw_line(&self) -> String {
        let mut v = self.raw_syncs_per_sec.clone();
        v.sort_by(f64::total_cmp);
        let (min, max) = (v.first().copied(), v.last().copied());
        format!(
            "raw 4 KiB write+fdatasync/s around the cells: min {:.0}, median {:.0}, max {:.0} ({} measurements)",
            min.unwrap_or(0.0),
            median(v.clone()),
            max.unwrap_or(0.0),
            v.len()
        )
    }
}

const LEGEND: &str = "\
Each row is one policy and thread count, the median of its runs (each run a cell of its own);
THREADS threads each commit transactions rewriting BATCH of their own keys. x raw: commits/s over
the raw 4 KiB write+fdatasync rate around the cell (measured just before and just after it, the
two averaged as sync times). KiB/c io: /proc/self/io
write_bytes per commit (this process); KiB/c dev: sectors the store's disk wrote per commit (every
writer of the disk, with the filesystem's own writes; n/a when /proc/diskstats has no line for it).
groups/s: commit groups (flushes) per second; lsync/c and dsync/c: log syncs and data sync rounds
per commit; ckpt and compact: checkpoints and compaction passes during the row's runs (summed).";

fn header() -> String {
    format!(
        "{:>9} {:>7} {:>10} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>7} {:>7} {:>5} {:>7}  {}",
        "policy",
        "threads",
        "commits/s",
        "x raw",
        "p50 us",
        "p99 us",
        "KiB/c io",
        "KiB/c dev",
        "groups/s",
        "lsync/c",
        "dsync/c",
        "ckpt",
        "compact",
        "commits/s of each run"
    )
}

fn row_line(r: &Row) -> String {
    let known = |v: Option<f64>| v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.2}"));
    let each_run: Vec<String> = r
        .runs
        .iter()
        .map(|f| format!("{:.0}", f.commits_per_sec))
        .collect();
    format!(
        "{:>9} {:>7} {:>10.0} {:>6.2} {:>9.1} {:>9.1} {:>9} {:>9} {:>9.1} {:>7.2} {:>7.2} {:>5} {:>7}  {}",
        r.policy.to_string(),
        r.threads,
        r.median(|f| f.commits_per_sec),
        r.median(RunFigures::x_raw),
        r.median(|f| f.latency_us_p50),
        r.median(|f| f.latency_us_p99),
        known(r.median_known(|f| f.process_kib_per_commit)),
        known(r.median_known(|f| f.device_kib_per_commit)),
        r.median(|f| f.groups_per_sec),
        r.median(|f| f.log_syncs_per_commit),
        r.median(|f| f.data_syncs_per_commit),
        r.total(|f| f.checkpoints),
        r.total(|f| f.compactions),
        each_run.join(" ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(commits_per_sec: f64, device: Option<f64>) -> RunFigures {
        RunFigures {
            commits: 10,
            commits_per_sec,
            raw_syncs_per_sec: 100.0,
            latency_us_p50: 1.0,
            latency_us_p99: 2.0,
            process_kib_per_commit: Some(4.0),
            device_kib_per_commit: device,
            groups_per_sec: 5.0,
            log_syncs_per_commit: 1.0,
            data_syncs_per_commit: 0.0,
            checkpoints: 1,
            compactions: 0,
        }
    }

    #[test]
    fn rows_show_medians_and_every_run() {
        let row = Row {
            policy: Policy::Strict,
            threads: 4,
            runs: vec![
                run(300.0, Some(8.0)),
                run(100.0, Some(6.0)),
                run(200.0, None),
            ],
        };
        assert_eq!(row.median(|f| f.commits_per_sec), 200.0);
        assert_eq!(row.median(RunFigures::x_raw), 2.0);
        assert_eq!(row.median_known(|f| f.device_kib_per_commit), None);
        assert_eq!(row.total(|f| f.checkpoints), 3);
        let words: Vec<String> = row_line(&row)
            .split_whitespace()
            .map(str::to_string)
            .collect();
        assert_eq!(words[..4], ["strict", "4", "200", "2.00"]);
        assert_eq!(words[6..9], ["4.00", "n/a", "5.0"]);
        assert_eq!(words[words.len() - 3..], ["300", "100", "200"]);
    }
}
