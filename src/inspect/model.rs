//! The state `fsck` reconstructs: the live versions and roots recovery would end with, built the
//! way recovery builds them (checkpoint, then commit records in order, RV4–RV5 of
//! `design/DURABILITY.md` §6), but in a plain map that accepts anything, so a record recovery
//! would refuse is reported and the walk goes on.
//!
//! Invariants:
//! 1. Every rule recovery's replay enforces is checked here, and a violation is reported with the
//!    kind and offset recovery's error would carry: an epoch that does not follow the previous
//!    one (`Mismatch "commit_record.epoch"` at the frame), a NEW for a handle in use, an UPDATE
//!    or RETIRE of a node that is not live (`InvalidField "op.node_id"` at the frame).
//! 2. After a violation the record is applied as far as it goes (a NEW replaces what held the
//!    handle, an UPDATE installs its version, a RETIRE removes what it can), so later records are
//!    checked against the most plausible state. Findings after a replay problem may be its
//!    consequences.
//! 3. Entries are keyed by (shard, handle), like object-table entries; the tag is part of the
//!    value, so a stale id is told apart from the live node on the same handle.

use std::collections::BTreeMap;
use std::path::Path;

use super::finding::{FindingKind, Findings, Severity};
use crate::error::CorruptionKind;
use crate::object_table::{NodeId, Version};
use crate::runtime::{CommitRecordRef, NodeVersionRef, OpRef};

/// One live node as recovery would restore it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveVersion {
    /// The node.
    pub id: NodeId,
    /// Its current version.
    pub version: Version,
    /// The record that installed this version also carried its bytes (a payload), so recovery
    /// writes them back into the slot (RV7) whatever the slot holds.
    pub carried: bool,
}

/// The live versions and roots after replay.
#[derive(Debug, Default)]
pub struct Model {
    /// Live versions by (shard, handle).
    pub live: BTreeMap<u64, LiveVersion>,
    /// The root catalog, replayed onto the superblock's roots as recovery does.
    pub roots: BTreeMap<String, u64>,
    /// The checkpoint's epoch: records at or below it are already in the checkpoint.
    pub checkpoint_epoch: u64,
    /// The newest epoch applied (the checkpoint's, before any record).
    pub last_epoch: u64,
    /// Records applied (those at or below the checkpoint's epoch are skipped, not applied).
    pub records: u64,
}

/// The object-table entry an id lives in: shard and handle, without the tag.
pub fn entry_key(id: NodeId) -> u64 {
    id.raw() & ((1u64 << 48) - 1)
}

impl Model {
    /// Restores one checkpoint entry.
    pub(crate) fn restore(&mut self, id: NodeId, version: Version) {
        self.live.insert(
            entry_key(id),
            LiveVersion {
                id,
                version,
                carried: false,
            },
        );
    }

    /// The live version of `id`, if `id` (with its tag) is live.
    pub fn get(&self, id: NodeId) -> Option<&LiveVersion> {
        self.live.get(&entry_key(id)).filter(|l| l.id == id)
    }

    /// Applies one decoded record found in the frame at `frame_offset` of `path` (RV5).
    pub(crate) fn apply(
        &mut self,
        record: &CommitRecordRef<'_>,
        path: &Path,
        frame_offset: u64,
        findings: &mut Findings,
    ) {
        if record.epoch <= self.checkpoint_epoch {
            // Already in the checkpoint: a log may start before the checkpoint's epoch.
            return;
        }
        let expected = self.last_epoch.saturating_add(1);
        if record.epoch != expected {
            let detail = CorruptionKind::Mismatch {
                what: "commit_record.epoch",
                expected,
                actual: record.epoch,
            };
            let message = format!(
                "commit record of epoch {} follows epoch {}: commits {expected}..{} are missing \
                 (recovery refuses the store)",
                record.epoch,
                self.last_epoch,
                record.epoch - 1
            );
            findings.push(
                Severity::Problem,
                path,
                frame_offset,
                FindingKind::Corruption { detail },
                message,
            );
        }
        for op in &record.ops {
            match op {
                OpRef::New(v) => {
                    if let Some(old) = self.live.get(&entry_key(v.id)) {
                        let message = format!(
                            "NEW of {} at epoch {}, but its handle holds live node {} \
                             (recovery refuses the store)",
                            v.id, record.epoch, old.id
                        );
                        bad_node(findings, path, frame_offset, v.id, message);
                    }
                    self.install(v, record.epoch);
                }
                OpRef::Update(v) => {
                    if self.get(v.id).is_none() {
                        let message = format!(
                            "UPDATE of {} at epoch {}, which is not live (recovery refuses the \
                             store)",
                            v.id, record.epoch
                        );
                        bad_node(findings, path, frame_offset, v.id, message);
                    }
                    self.install(v, record.epoch);
                }
                OpRef::Retire(id) => {
                    if self.get(*id).is_none() {
                        let message = format!(
                            "RETIRE of {id} at epoch {}, which is not live (recovery refuses the \
                             store)",
                            record.epoch
                        );
                        bad_node(findings, path, frame_offset, *id, message);
                    } else {
                        self.live.remove(&entry_key(*id));
                    }
                }
                OpRef::SetRoot(name, id) => {
                    self.roots.insert((*name).to_owned(), id.raw());
                }
                OpRef::DelRoot(name) => {
                    self.roots.remove(*name);
                }
            }
        }
        self.last_epoch = record.epoch;
        self.records += 1;
    }

    fn install(&mut self, v: &NodeVersionRef<'_>, epoch: u64) {
        self.live.insert(
            entry_key(v.id),
            LiveVersion {
                id: v.id,
                version: v.version(epoch),
                carried: v.payload.is_some(),
            },
        );
    }
}

fn bad_node(findings: &mut Findings, path: &Path, offset: u64, id: NodeId, message: String) {
    let detail = CorruptionKind::InvalidField {
        field: "op.node_id",
        value: id.raw(),
    };
    findings
        .push(
            Severity::Problem,
            path,
            offset,
            FindingKind::Corruption { detail },
            message,
        )
        .node = Some(id);
}
