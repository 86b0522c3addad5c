//! The report `fsck` returns: every finding, a summary of what was checked, and the exit code.

use std::path::PathBuf;

use serde::Serialize;

use super::finding::{Finding, Severity};
use super::load::{CheckpointSummary, Inspection};
use super::logs::LogSummary;
use super::space::ClassSpace;

/// How the check kept writers away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// The store's lock was held for the whole check: no writer ran.
    Locked,
    /// The directory has no lock file, so no writer held it when the check started (a writer
    /// creates it first thing); one that started during the check would not be noticed.
    NoLockFile,
    /// `--snapshot`: read without the lock, while a writer may run (`design/TOOLS.md`).
    Snapshot,
}

/// What was checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// The superblock slot in force.
    pub slot_in_force: Option<usize>,
    /// Its generation.
    pub generation: Option<u64>,
    /// The commit epoch it made durable.
    pub commit_epoch: Option<u64>,
    /// The manifest's seq.
    pub manifest_seq: Option<u64>,
    /// True when the manifest passed every check recovery makes.
    pub manifest_trusted: bool,
    /// The checkpoint.
    pub checkpoint: Option<CheckpointSummary>,
    /// The delta logs, in replay order.
    pub logs: Vec<LogSummary>,
    /// The epoch replay reaches: the epoch recovery recovers, if it accepts the store (absent
    /// when nothing could be replayed).
    pub replayed_epoch: Option<u64>,
    /// Commit records applied after the checkpoint.
    pub records_replayed: u64,
    /// Live nodes.
    pub live_nodes: u64,
    /// Their bytes.
    pub live_bytes: u64,
    /// Live nodes whose bytes were read and checked.
    pub nodes_verified: u64,
    /// Roots after replay.
    pub roots: u64,
    /// Space per size class.
    pub space: Vec<ClassSpace>,
}

/// Everything `fsck` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The store directory.
    pub dir: PathBuf,
    /// How writers were kept away.
    pub access: Access,
    /// False when the store could not be read at all (no valid superblock slot).
    pub readable: bool,
    /// Every finding, in the order found.
    pub findings: Vec<Finding>,
    /// What was checked.
    pub summary: Summary,
}

impl Report {
    /// Builds the report of an inspection.
    pub(crate) fn from_inspection(insp: Inspection, access: Access) -> Report {
        let sb = insp.meta.superblock();
        let summary = Summary {
            slot_in_force: insp.meta.active,
            generation: sb.map(|s| s.generation),
            commit_epoch: sb.map(|s| s.commit_epoch),
            manifest_seq: insp.meta.manifest.as_ref().map(|m| m.seq),
            manifest_trusted: insp.meta.manifest_trusted,
            checkpoint: insp.checkpoint.clone(),
            logs: insp.logs.clone(),
            replayed_epoch: insp.replayed.then_some(insp.model.last_epoch),
            records_replayed: insp.model.records,
            live_nodes: insp.model.live.len() as u64,
            live_bytes: insp
                .model
                .live
                .values()
                .map(|l| u64::from(l.version.len))
                .sum(),
            nodes_verified: insp.nodes_verified,
            roots: insp.model.roots.len() as u64,
            space: insp.space.clone(),
        };
        Report {
            dir: insp.dir,
            access,
            readable: insp.meta.active.is_some(),
            findings: insp.findings.items,
            summary,
        }
    }

    /// How many findings have `severity`.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }

    /// The findings of severity `Problem`.
    pub fn problems(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Problem)
    }

    /// True when nothing is a `Problem` (and, if `strict`, nothing is a `Warning`).
    pub fn is_clean(&self, strict: bool) -> bool {
        self.readable
            && self.count(Severity::Problem) == 0
            && !(strict && self.count(Severity::Warning) > 0)
    }

    /// The exit code of `vellum fsck`: 0 clean, 1 problems found (with `strict`, warnings too),
    /// 2 the store could not be read at all.
    pub fn exit_code(&self, strict: bool) -> u8 {
        if !self.readable {
            2
        } else if self.is_clean(strict) {
            0
        } else {
            1
        }
    }
}
