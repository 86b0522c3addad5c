//! What the main job prints on stdout: a legend, one table row per round, and a summary that
//! says in sentences what the run showed, where its stores are and what they take.

use std::path::PathBuf;
use std::time::Duration;

use indicatif::HumanBytes;
use vellum::runtime::CommitPolicy;

use super::workload::Recovery;
use crate::footprint::DiskUse;

/// One round's figures, as its table row shows them.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    pub policy: CommitPolicy,
    pub threads: usize,
    pub node_bytes: usize,
    pub commits: usize,
    pub commits_per_sec: f64,
    /// `commits_per_sec` over the raw fdatasync rate.
    pub x_raw: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub log_syncs: u64,
    pub data_syncs: u64,
    pub groups: u64,
}

/// The legend and the table's header.
pub fn print_header(raw_us: f64) {
    println!(
        "raw pwrite+fdatasync of 100 B on this disk: {raw_us:.1} us ({:.0}/s)",
        1e6 / raw_us
    );
    println!(
        "Each row is one round: THREADS threads commit transactions of one new node of NODE B bytes\n\
         under POLICY. commits/s counts acknowledged commits; x raw is commits/s divided by the raw\n\
         fdatasync rate above (1.00: one commit per sync of this disk; above 1: group commit lets one\n\
         log sync serve several commits); p50/p99 us are commit latencies; log syncs and data syncs\n\
         count fdatasync calls on the delta log and on data files; groups counts commit groups\n\
         (flushes) and syncs/group their syncs. Higher commits/s and x raw and lower latencies are better."
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
}

pub fn print_row(r: &Row) {
    println!(
        "{:>9} {:>7} {:>7} {:>8} {:>11.0} {:>7.2} {:>8.1} {:>8.1} {:>9} {:>10} {:>7} {:>11.2}",
        format!("{:?}", r.policy),
        r.threads,
        r.node_bytes,
        r.commits,
        r.commits_per_sec,
        r.x_raw,
        r.p50_us,
        r.p99_us,
        r.log_syncs,
        r.data_syncs,
        r.groups,
        (r.log_syncs + r.data_syncs) as f64 / r.groups.max(1) as f64,
    );
}

/// A store the run leaves behind.
#[derive(Debug, Clone)]
pub struct Store {
    pub what: &'static str,
    pub dir: PathBuf,
    pub used: DiskUse,
}

/// Everything the closing summary reports.
#[derive(Debug)]
pub struct Summary {
    /// Raw fdatasync latency before the rounds (the `x raw` column's) and after them.
    pub raw_us: f64,
    pub raw_after_us: f64,
    pub rows: Vec<Row>,
    pub verified: usize,
    pub reopen_time: Duration,
    pub reopen_records: u64,
    pub recovery: Option<Recovery>,
    pub eventual_flush_interval: Duration,
    /// The directory the bench owns (delete it to reclaim the space).
    pub bench_dir: PathBuf,
    pub stores: Vec<Store>,
    pub peak_resident_bytes: Option<u64>,
}

impl Summary {
    /// The summary's lines.
    pub fn lines(&self) -> Vec<String> {
        let mut out = vec![
            String::new(),
            "What this run showed:".to_string(),
            format!(
                "  - all {} acknowledged commits read back byte for byte after the store was closed and reopened",
                self.verified
            ),
        ];
        out.extend(self.group_commit_lines());
        out.extend(self.eventual_line());
        out.push(format!(
            "  - reopening the store took {:.0} ms ({} log records replayed)",
            ms(self.reopen_time),
            self.reopen_records
        ));
        if let Some(r) = &self.recovery {
            out.push(format!(
                "  - a store of {} nodes recovered in {:.0} ms (checkpoint + {} log records), every node verified",
                r.nodes,
                ms(r.open_time),
                r.records_replayed
            ));
        }
        out.push(match self.peak_resident_bytes {
            Some(b) => format!(
                "  - peak memory: {} resident (VmHWM; pages of mapped data files count)",
                HumanBytes(b)
            ),
            None => "  - peak memory: not reported by this system".to_string(),
        });
        out.extend(self.store_lines());
        out
    }

    /// The best durable ratio against raw fdatasync, with one thread's for contrast, and a
    /// warning when the raw latency moved during the rounds (as on a disk another process is
    /// using), since the ratios then say less than they seem to.
    fn group_commit_lines(&self) -> Vec<String> {
        let durable = || {
            self.rows
                .iter()
                .filter(|r| r.policy != CommitPolicy::Eventual)
        };
        let Some(b) = best(durable()) else {
            return vec!["  - group commit: no STRICT or BALANCED round ran".to_string()];
        };
        let mut out = vec![
            format!(
                "  - group commit: durable commits reached {:.1}x the raw fdatasync rate of this disk",
                b.x_raw
            ),
            format!(
                "    ({}, {} threads, {} B nodes: {:.0} commits/s against {:.0} syncs/s)",
                name(b.policy),
                b.threads,
                b.node_bytes,
                b.commits_per_sec,
                1e6 / self.raw_us
            ),
        ];
        if let Some(s) = best(durable().filter(|r| r.threads == 1)).filter(|_| b.threads > 1) {
            out.push(format!(
                "    from 1 thread at most {:.2}x: no other commit shares its log sync (STRICT syncs data too)",
                s.x_raw
            ));
        }
        let drift = self.raw_after_us.max(self.raw_us) / self.raw_after_us.min(self.raw_us);
        if drift > RAW_DRIFT_MAX {
            out.push(format!(
                "    but raw fdatasync took {:.0} us before the rounds and {:.0} us after ({drift:.1}x apart):",
                self.raw_us, self.raw_after_us
            ));
            out.push("    this disk's latency moved, so take the ratios as rough".to_string());
        }
        out
    }

    fn eventual_line(&self) -> Option<String> {
        let e = best(
            self.rows
                .iter()
                .filter(|r| r.policy == CommitPolicy::Eventual),
        )?;
        Some(format!(
            "  - EVENTUAL reached {:.1}x, but its commits return before they are durable (a flusher syncs\n    \
             them within {} ms), so that ratio is no saving of syncs",
            e.x_raw,
            self.eventual_flush_interval.as_millis()
        ))
    }

    fn store_lines(&self) -> Vec<String> {
        let total: u64 = self.stores.iter().map(|s| s.used.allocated_bytes).sum();
        let mut out = vec![format!(
            "Stores it left, {} on disk in all (delete {} when done):",
            HumanBytes(total),
            self.bench_dir.display()
        )];
        let width = |f: &dyn Fn(&Store) -> usize| self.stores.iter().map(f).max().unwrap_or(0);
        let (what_w, dir_w) = (
            width(&|s| s.what.len()),
            width(&|s| s.dir.display().to_string().len()),
        );
        for s in &self.stores {
            out.push(format!(
                "  {:<what_w$}  {:<dir_w$}  {:>10} on disk ({} of file lengths, {} files)",
                s.what,
                s.dir.display().to_string(),
                HumanBytes(s.used.allocated_bytes).to_string(),
                HumanBytes(s.used.bytes),
                s.used.files,
            ));
        }
        if let Some(main) = self.stores.first() {
            out.push(format!(
                "Try `vellum fsck`, `vellum dump` and `vellum compact` on {} (README, Set-up).",
                main.dir.display()
            ));
        }
        out
    }
}

/// The row with the highest `x raw`.
fn best<'a>(rows: impl Iterator<Item = &'a Row>) -> Option<Row> {
    rows.max_by(|a, b| a.x_raw.total_cmp(&b.x_raw)).copied()
}

/// Largest change of the raw fdatasync latency over the rounds the summary passes in silence.
const RAW_DRIFT_MAX: f64 = 1.5;

/// A policy as the README and DURABILITY.md name it.
fn name(p: CommitPolicy) -> &'static str {
    match p {
        CommitPolicy::Strict => "STRICT",
        CommitPolicy::Balanced => "BALANCED",
        CommitPolicy::Eventual => "EVENTUAL",
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(policy: CommitPolicy, threads: usize, x_raw: f64) -> Row {
        Row {
            policy,
            threads,
            node_bytes: 100,
            commits: 2000,
            commits_per_sec: x_raw * 4000.0,
            x_raw,
            p50_us: 1.0,
            p99_us: 2.0,
            log_syncs: 10,
            data_syncs: 0,
            groups: 10,
        }
    }

    fn summary(raw_after_us: f64) -> Summary {
        Summary {
            raw_us: 250.0,
            raw_after_us,
            rows: vec![
                row(CommitPolicy::Strict, 1, 0.5),
                row(CommitPolicy::Strict, 16, 3.8),
                row(CommitPolicy::Balanced, 1, 0.75),
                row(CommitPolicy::Balanced, 16, 3.7),
                row(CommitPolicy::Eventual, 1, 69.7),
            ],
            verified: 624_000,
            reopen_time: Duration::from_millis(367),
            reopen_records: 0,
            recovery: Some(Recovery {
                nodes: 1_000_000,
                open_time: Duration::from_millis(463),
                records_replayed: 100,
            }),
            eventual_flush_interval: Duration::from_millis(10),
            bench_dir: PathBuf::from("vellum-data/bench-runtime"),
            stores: vec![
                Store {
                    what: "main store",
                    dir: PathBuf::from("vellum-data/bench-runtime/store"),
                    used: DiskUse {
                        files: 8,
                        bytes: 3 << 30,
                        allocated_bytes: 300 << 20,
                    },
                },
                Store {
                    what: "recovery store",
                    dir: PathBuf::from("vellum-data/bench-runtime/recovery"),
                    used: DiskUse {
                        files: 6,
                        bytes: 107 << 20,
                        allocated_bytes: 105 << 20,
                    },
                },
            ],
            peak_resident_bytes: Some(512 << 20),
        }
    }

    #[test]
    fn says_what_the_run_showed_and_where_its_stores_are() {
        let expected = [
            "",
            "What this run showed:",
            "  - all 624000 acknowledged commits read back byte for byte after the store was closed and reopened",
            "  - group commit: durable commits reached 3.8x the raw fdatasync rate of this disk",
            "    (STRICT, 16 threads, 100 B nodes: 15200 commits/s against 4000 syncs/s)",
            "    from 1 thread at most 0.75x: no other commit shares its log sync (STRICT syncs data too)",
            "  - EVENTUAL reached 69.7x, but its commits return before they are durable (a flusher syncs\n    them within 10 ms), so that ratio is no saving of syncs",
            "  - reopening the store took 367 ms (0 log records replayed)",
            "  - a store of 1000000 nodes recovered in 463 ms (checkpoint + 100 log records), every node verified",
            "  - peak memory: 512.00 MiB resident (VmHWM; pages of mapped data files count)",
            "Stores it left, 405.00 MiB on disk in all (delete vellum-data/bench-runtime when done):",
            "  main store      vellum-data/bench-runtime/store     300.00 MiB on disk (3.00 GiB of file lengths, 8 files)",
            "  recovery store  vellum-data/bench-runtime/recovery  105.00 MiB on disk (107.00 MiB of file lengths, 6 files)",
            "Try `vellum fsck`, `vellum dump` and `vellum compact` on vellum-data/bench-runtime/store (README, Set-up).",
        ];
        assert_eq!(summary(260.0).lines(), expected);
    }

    #[test]
    fn warns_when_the_raw_sync_latency_moved_and_copes_with_missing_rounds() {
        let lines = summary(600.0).lines();
        let i = lines
            .iter()
            .position(|l| l.starts_with("    but raw fdatasync"))
            .expect("a drift warning");
        assert_eq!(
            lines[i..i + 2],
            [
                "    but raw fdatasync took 250 us before the rounds and 600 us after (2.4x apart):",
                "    this disk's latency moved, so take the ratios as rough",
            ]
        );

        let mut s = summary(250.0);
        s.rows.retain(|r| r.policy == CommitPolicy::Eventual);
        s.recovery = None;
        s.peak_resident_bytes = None;
        let lines = s.lines();
        assert!(lines.contains(&"  - group commit: no STRICT or BALANCED round ran".to_string()));
        assert!(lines.contains(&"  - peak memory: not reported by this system".to_string()));
        assert!(!lines.iter().any(|l| l.contains("recovered in")));
    }
}
