//! The files of a store directory: what each name is, which ones opening the store removes, and
//! which ones nothing ever uses or removes.
//!
//! Invariants:
//! 1. A name is classified by the runtime's own classification (`runtime::classify`, built on
//!    the parsers the layers that own the files use), so `fsck` and recovery agree on what a
//!    file is; a file that is no store file is foreign (`UnknownFile`) and nothing removes it.
//! 2. A file is a leftover exactly when `MetaStore::open` or recovery (RV3) removes it: a
//!    manifest other than the one in force, the temporary of the superblock, a manifest or a
//!    checkpoint, a log or checkpoint the manifest does not name.

use std::path::Path;

use super::finding::{FindingKind, Findings, Severity};
use crate::meta::Manifest;
use crate::runtime::{StoreFile, classify};

/// What a file in a store directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// `LOCK`.
    Lock,
    /// `superblock`.
    Superblock,
    /// `manifest-{seq}.json`.
    Manifest(u64),
    /// `log-{seq}.vlog`.
    Log(u64),
    /// `log-spare.vlog`: a retired log the next rotation reuses (it holds no commit).
    SpareLog,
    /// `ot-{seq}.ckpt`.
    Checkpoint(u64),
    /// `data-{class}-{file}.seg`.
    Data(u8, u32),
    /// The `*.tmp` of a superblock, manifest or checkpoint being written.
    Tmp,
    /// Anything else: a foreign file.
    Unknown,
}

/// Classifies a file name.
pub(crate) fn role(name: &str) -> Role {
    match classify(name) {
        Some(StoreFile::Lock) => Role::Lock,
        Some(StoreFile::Superblock) => Role::Superblock,
        Some(StoreFile::Manifest(seq)) => Role::Manifest(seq),
        Some(StoreFile::Log(seq)) => Role::Log(seq),
        Some(StoreFile::SpareLog) => Role::SpareLog,
        Some(StoreFile::Checkpoint(seq)) => Role::Checkpoint(seq),
        Some(StoreFile::Data(class, file)) => Role::Data(class, file),
        Some(StoreFile::Tmp(_)) => Role::Tmp,
        None => Role::Unknown,
    }
}

/// Reports leftovers and unknown files among `names`. `manifest` is the manifest in force (when
/// it parsed) and `active_seq` its seq.
pub(crate) fn check_names(
    dir: &Path,
    names: &[String],
    active_seq: Option<u64>,
    manifest: Option<&Manifest>,
    findings: &mut Findings,
) {
    for name in names {
        let path = dir.join(name);
        let leftover = match role(name) {
            Role::Lock | Role::Superblock | Role::Data(..) | Role::SpareLog => None,
            Role::Tmp => Some("a file being written when the store was last open"),
            // Without a slot in force, no manifest is known to be a leftover.
            Role::Manifest(seq) => active_seq
                .is_some_and(|active| active != seq)
                .then_some("a manifest not in force"),
            Role::Log(seq) => manifest
                .filter(|m| !m.delta_logs.iter().any(|l| l.seq == seq))
                .map(|_| "a delta log the manifest does not name"),
            Role::Checkpoint(_) => manifest
                .filter(|m| m.checkpoint.as_ref().is_none_or(|c| c.file != *name))
                .map(|_| "a checkpoint the manifest does not name"),
            Role::Unknown => {
                findings.push(
                    Severity::Warning,
                    &path,
                    0,
                    FindingKind::UnknownFile,
                    "not a vellum file: nothing uses or removes it, so its space is never \
                     reclaimed",
                );
                None
            }
        };
        if let Some(why) = leftover {
            findings.push(
                Severity::Info,
                &path,
                0,
                FindingKind::Leftover,
                format!("{why}; opening the store removes it"),
            );
        }
    }
}
