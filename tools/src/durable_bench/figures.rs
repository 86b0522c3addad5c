//! One run of one cell in figures: rates, latencies, bytes written and the runtime's counters,
//! each per commit or per second so runs of different lengths compare.

use vellum::runtime::RuntimeStats;

use crate::devstats::IoSample;
use crate::durable_bench::cell::CellOutcome;

/// One run's figures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunFigures {
    pub commits: usize,
    pub commits_per_sec: f64,
    /// The raw 4 KiB write+fdatasync rate around the cell ([`crate::durable_bench::raw::around`]
    /// of the measurements just before and just after it).
    pub raw_syncs_per_sec: f64,
    pub latency_us_p50: f64,
    pub latency_us_p99: f64,
    /// `write_bytes` of `/proc/self/io` per commit, in KiB (`None`: not readable here).
    pub process_kib_per_commit: Option<f64>,
    /// Sectors the store's disk wrote per commit, in KiB (`None`: no `diskstats` line for it).
    pub device_kib_per_commit: Option<f64>,
    /// Commit groups (flushes) per second.
    pub groups_per_sec: f64,
    pub log_syncs_per_commit: f64,
    /// Data-file sync rounds per commit.
    pub data_syncs_per_commit: f64,
    /// Checkpoints completed during the cell.
    pub checkpoints: u64,
    /// Compaction passes completed during the cell.
    pub compactions: u64,
}

impl RunFigures {
    /// The figures of `outcome`, given the runtime's counters around it and what the kernel
    /// counted written during it.
    pub fn of(
        outcome: &CellOutcome,
        raw_syncs_per_sec: f64,
        before: &RuntimeStats,
        after: &RuntimeStats,
        written: &IoSample,
    ) -> RunFigures {
        let seconds = outcome.elapsed.as_secs_f64();
        let commits = outcome.commits.max(1) as f64;
        let per_commit = |n: u64| n as f64 / commits;
        let kib_per_commit = |bytes: Option<u64>| bytes.map(|b| per_commit(b) / 1024.0);
        // The counters only grow while the runtime is open.
        let delta =
            |counter: fn(&RuntimeStats) -> u64| counter(after).saturating_sub(counter(before));
        RunFigures {
            commits: outcome.commits,
            commits_per_sec: outcome.commits as f64 / seconds,
            raw_syncs_per_sec,
            latency_us_p50: percentile_us(&outcome.latencies_ns, 0.50),
            latency_us_p99: percentile_us(&outcome.latencies_ns, 0.99),
            process_kib_per_commit: kib_per_commit(written.process_write_bytes),
            device_kib_per_commit: kib_per_commit(written.device_write_bytes),
            groups_per_sec: delta(|s| s.flushes) as f64 / seconds,
            log_syncs_per_commit: per_commit(delta(|s| s.log_syncs)),
            data_syncs_per_commit: per_commit(delta(|s| s.data_syncs)),
            checkpoints: delta(|s| s.checkpoints),
            compactions: delta(|s| s.compactions),
        }
    }

    /// Commits per second over raw syncs per second: 1.00 is one commit per raw sync of this
    /// disk; above 1, group commit lets one sync serve several commits.
    pub fn x_raw(&self) -> f64 {
        self.commits_per_sec / self.raw_syncs_per_sec
    }
}

/// The `p` quantile of `sorted` nanoseconds, in microseconds (0 for no values).
fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1e3
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn figures_are_per_commit_and_per_second() {
        let outcome = CellOutcome {
            commits: 100,
            elapsed: Duration::from_secs(2),
            latencies_ns: (1..=100).map(|i| i * 1000).collect(),
        };
        let before = RuntimeStats {
            flushes: 10,
            log_syncs: 10,
            data_syncs: 5,
            checkpoints: 1,
            ..RuntimeStats::default()
        };
        let after = RuntimeStats {
            flushes: 90,
            log_syncs: 90,
            data_syncs: 55,
            checkpoints: 2,
            compactions: 3,
            ..RuntimeStats::default()
        };
        let written = IoSample {
            process_write_bytes: Some(100 * 2048),
            device_write_bytes: None,
        };
        let f = RunFigures::of(&outcome, 200.0, &before, &after, &written);
        assert_eq!(f.commits_per_sec, 50.0);
        assert_eq!(f.x_raw(), 0.25);
        assert_eq!(f.latency_us_p50, 51.0);
        assert_eq!(f.latency_us_p99, 99.0);
        assert_eq!(f.process_kib_per_commit, Some(2.0));
        assert_eq!(f.device_kib_per_commit, None);
        assert_eq!(f.groups_per_sec, 40.0);
        assert_eq!(f.log_syncs_per_commit, 0.8);
        assert_eq!(f.data_syncs_per_commit, 0.5);
        assert_eq!((f.checkpoints, f.compactions), (1, 3));
    }
}
