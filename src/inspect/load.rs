//! Reconstructing a store offline the way recovery does (superblock → manifest → checkpoint →
//! commit records → data files), recording every finding on the way instead of stopping at the
//! first, then handing the structure roots to their inspection plugins (`plugin.rs`). `fsck`
//! reports the findings; `dump` shows the reconstruction.
//!
//! Invariants:
//! 1. Nothing is written: every file is opened read-only, and no lock is taken here (the caller
//!    decides, see `fsck`).
//! 2. The order and rules are recovery's (RV3–RV6 of `design/DURABILITY.md` §6); each check that
//!    recovery makes and would fail on is a `Problem` finding with recovery's kind.
//! 3. A manifest that parses is used even when recovery would not trust it (wrong length or
//!    CRC), so the files it names are still checked. Without one, every log and checkpoint file
//!    in the directory is checked on its own, and nothing is replayed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::directory::{Role, check_names, role};
use super::finding::{FindingKind, Findings, Severity};
use super::logs::{LogRole, LogSummary, check_closed_end, check_log};
use super::meta::{MetaState, check_meta};
use super::model::Model;
use super::plugin::{Plugin, check_structures};
use super::space::{ClassSpace, DataFile, check_live, open_data_files};
use crate::alloc::{AllocOptions, DataFileOptions, segment_bytes};
use crate::checkpoint::{CheckpointExpect, scan_checkpoint};
use crate::error::{Corruption, CorruptionKind, Result};
use crate::io::Storage;
use crate::log::log_file_name;
use crate::meta::{Manifest, ROOTS_MAX};

/// Settings of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsckOptions {
    /// The store's `file_bytes_max`: data files are at most this long, and slots must end within
    /// it. The manifest's `layout` records it and wins; this value serves only when no manifest
    /// can be read. Default: the runtime's default (1 GiB).
    pub file_bytes_max: u64,
    /// The store's `window_bytes`: data files grow in whole windows of `max(window_bytes,
    /// segment bytes)` per class, and the runtime reads a slot only if its whole window lies in
    /// the file. Like `file_bytes_max`, the manifest's layout wins. Default: 64 MiB.
    pub window_bytes: u64,
    /// Read the store without taking its lock, while a writer may be running (`--snapshot`,
    /// `design/TOOLS.md`).
    pub snapshot: bool,
    /// Read every live node's bytes and check their CRC32C. Default true; `dump` turns it off.
    pub verify_bytes: bool,
}

impl FsckOptions {
    /// The window size of `class`: data files of the class grow in multiples of it.
    pub fn class_window_bytes(&self, class: u8) -> u64 {
        self.window_bytes.max(segment_bytes(class))
    }
}

impl Default for FsckOptions {
    fn default() -> Self {
        FsckOptions {
            file_bytes_max: AllocOptions::default().file_bytes_max,
            window_bytes: DataFileOptions::default().window_bytes,
            snapshot: false,
            verify_bytes: true,
        }
    }
}

/// What the checkpoint scan found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointSummary {
    /// The file name.
    pub file: String,
    /// The epoch the manifest records for it.
    pub epoch: u64,
    /// Entries that passed every check (and were restored).
    pub entries_valid: u64,
    /// Blocks read.
    pub blocks: u64,
}

/// A store reconstructed offline, with everything found on the way.
#[derive(Debug)]
pub struct Inspection {
    /// The store directory.
    pub dir: PathBuf,
    /// The superblock slots and the manifest.
    pub meta: MetaState,
    /// The files in the directory.
    pub names: Vec<String>,
    /// The checkpoint the manifest names, if any.
    pub checkpoint: Option<CheckpointSummary>,
    /// The delta logs, in replay order.
    pub logs: Vec<LogSummary>,
    /// True when the records were replayed (a manifest was available).
    pub replayed: bool,
    /// The live versions and roots recovery would end with.
    pub model: Model,
    /// The data files.
    pub data_files: BTreeMap<(u8, u32), DataFile>,
    /// Space figures per size class.
    pub space: Vec<ClassSpace>,
    /// Live nodes whose bytes were read and checked.
    pub nodes_verified: u64,
    pub(crate) findings: Findings,
}

impl Inspection {
    /// The findings so far.
    pub fn findings(&self) -> &[super::Finding] {
        &self.findings.items
    }
}

/// Reconstructs the store in `dir`. `Err` only when there is no store there or its superblock
/// file cannot be read at all; everything else is a finding. No structure is decoded (see
/// [`load_with`]).
pub fn load(storage: &dyn Storage, dir: &Path, options: &FsckOptions) -> Result<Inspection> {
    load_with(storage, dir, options, &[])
}

/// [`load`], then `plugins` check the structures the recovered roots name
/// ([`super::Plugin`]); their findings join the inspection's.
pub fn load_with(
    storage: &dyn Storage,
    dir: &Path,
    options: &FsckOptions,
    plugins: &[&dyn Plugin],
) -> Result<Inspection> {
    let span = tracing::info_span!("inspect", dir = %dir.display());
    let _enter = span.enter();
    let mut findings = Findings::default();
    let meta = check_meta(storage, dir, &mut findings)?;
    let names = storage.list(dir)?;
    let mut insp = Inspection {
        dir: dir.to_path_buf(),
        meta,
        names,
        checkpoint: None,
        logs: Vec::new(),
        replayed: false,
        model: Model::default(),
        data_files: BTreeMap::new(),
        space: Vec::new(),
        nodes_verified: 0,
        findings,
    };
    let manifest = insp.meta.manifest.clone();
    let manifest_path = insp.meta.manifest_path.clone();
    // The store's own layout, as the runtime adopts it.
    let mut options = *options;
    if let Some(m) = &manifest {
        options.file_bytes_max = m.layout.file_bytes_max;
        options.window_bytes = m.layout.window_bytes;
    }
    let options = &options;
    match (&manifest, &manifest_path) {
        (Some(m), Some(p)) => replay(storage, &mut insp, m, p),
        _ => standalone(storage, &mut insp),
    }
    let named = manifest.as_ref().zip(manifest_path.as_deref());
    // Under a running writer (`--snapshot`), a data file may have been created after the first
    // listing and before the records naming its slots were read; data files are never removed
    // while a store is open, so a listing taken now is the right one for them.
    let data_names = if options.snapshot {
        storage.list(dir)?
    } else {
        insp.names.clone()
    };
    insp.data_files = open_data_files(
        storage,
        dir,
        &data_names,
        named,
        options,
        &mut insp.findings,
    );
    if insp.replayed {
        let (space, verified) = check_live(
            dir,
            &insp.model,
            &insp.data_files,
            options,
            &mut insp.findings,
        );
        insp.space = space;
        insp.nodes_verified = verified;
        // The structures the roots name, decoded by their own crates' plugins.
        check_structures(&mut insp, plugins);
    }
    let active_seq = insp.meta.superblock().map(|sb| sb.manifest.seq);
    check_names(
        dir,
        &insp.names,
        active_seq,
        manifest.as_ref(),
        &mut insp.findings,
    );
    Ok(insp)
}

/// RV4–RV5 with every check: the checkpoint, then every log the manifest names, in order.
fn replay(storage: &dyn Storage, insp: &mut Inspection, manifest: &Manifest, manifest_path: &Path) {
    let dir = insp.dir.clone();
    let findings = &mut insp.findings;
    let model = &mut insp.model;
    if let Some(sb) = insp.meta.superblock() {
        model.roots = sb.roots.iter().map(|(n, id)| (n.to_owned(), id)).collect();
    }
    if let Some(ck) = &manifest.checkpoint {
        let path = dir.join(&ck.file);
        let expect = CheckpointExpect::from_manifest_ref(ck);
        if expect.is_none() {
            let reason = format!("checkpoint file name {:?}", ck.file);
            let c = Corruption {
                file: manifest_path.to_path_buf(),
                offset: 0,
                kind: CorruptionKind::InvalidDocument { reason },
            };
            findings.corruption(
                Severity::Problem,
                c,
                "manifest (recovery refuses the store)",
            );
        }
        let scanned = scan_checkpoint(storage, &path, expect.as_ref(), |e| {
            model.restore(e.id, e.version);
            Ok(())
        });
        match scanned {
            Ok(report) => {
                for c in report.problems {
                    findings.corruption(
                        Severity::Problem,
                        c,
                        "checkpoint (recovery refuses the store)",
                    );
                }
                insp.checkpoint = Some(CheckpointSummary {
                    file: ck.file.clone(),
                    epoch: ck.epoch,
                    entries_valid: report.entries_valid,
                    blocks: report.blocks,
                });
            }
            Err(e) => findings.error(Severity::Problem, &path, e, "checkpoint"),
        }
        model.last_epoch = ck.epoch;
        model.checkpoint_epoch = ck.epoch;
    }
    let Some(last) = manifest.delta_logs.last() else {
        let c = Corruption {
            file: manifest_path.to_path_buf(),
            offset: 0,
            kind: CorruptionKind::InvalidDocument {
                reason: "no delta log".into(),
            },
        };
        findings.corruption(
            Severity::Problem,
            c,
            "manifest (recovery refuses the store)",
        );
        insp.replayed = true;
        return;
    };
    let count = manifest.delta_logs.len();
    for (i, l) in manifest.delta_logs.iter().enumerate() {
        let mut path = dir.join(&l.file);
        let role = if i + 1 == count {
            // Recovery opens the open log by its seq (`DeltaLog::open`), not by the name the
            // manifest gives, so that is the file checked; a different name is reported.
            let by_seq = log_file_name(l.seq);
            if by_seq != l.file {
                let reason = format!(
                    "delta_logs[{i}].file: {:?} is not the name of log {}; recovery opens {by_seq:?}",
                    l.file, l.seq
                );
                let c = Corruption {
                    file: manifest_path.to_path_buf(),
                    offset: 0,
                    kind: CorruptionKind::InvalidDocument { reason },
                };
                findings.corruption(Severity::Problem, c, "manifest");
                path = dir.join(by_seq);
            }
            LogRole::Open(l)
        } else {
            LogRole::Closed(l)
        };
        let summary = check_log(storage, &path, role, Some(model), findings);
        if l.end_epoch.is_some() {
            check_closed_end(l, &path, &summary, findings);
        }
        insp.logs.push(summary);
    }
    if let Some(sb) = insp.meta.superblock()
        && model.last_epoch < sb.commit_epoch
    {
        let detail = CorruptionKind::Mismatch {
            what: "replayed commit epoch",
            expected: sb.commit_epoch,
            actual: model.last_epoch,
        };
        let valid_end = insp.logs.last().map_or(0, |s| s.valid_end);
        findings.push(
            Severity::Problem,
            &dir.join(&last.file),
            valid_end,
            FindingKind::Corruption { detail },
            format!(
                "replay reaches epoch {}, but the superblock made epoch {} durable: acknowledged \
                 commits are missing (recovery refuses the store)",
                model.last_epoch, sb.commit_epoch
            ),
        );
    }
    if model.roots.len() > ROOTS_MAX {
        let reason = format!(
            "recovered roots: {} roots, at most {ROOTS_MAX} fit a superblock",
            model.roots.len()
        );
        findings.push(
            Severity::Problem,
            &dir,
            0,
            FindingKind::Corruption {
                detail: CorruptionKind::InvalidDocument { reason },
            },
            "replay ends with more roots than a superblock holds (recovery refuses the store)",
        );
    }
    insp.replayed = true;
}

/// Without a manifest: every log and checkpoint file in the directory, each on its own.
fn standalone(storage: &dyn Storage, insp: &mut Inspection) {
    tracing::info!("no usable manifest: checking log and checkpoint files on their own");
    for name in &insp.names {
        let path = insp.dir.join(name);
        match role(name) {
            Role::Log(_) => {
                let summary = check_log(
                    storage,
                    &path,
                    LogRole::Standalone,
                    None,
                    &mut insp.findings,
                );
                insp.logs.push(summary);
            }
            Role::Checkpoint(_) => match scan_checkpoint(storage, &path, None, |_| Ok(())) {
                Ok(report) => {
                    for c in report.problems {
                        insp.findings.corruption(Severity::Problem, c, "checkpoint");
                    }
                }
                Err(e) => insp
                    .findings
                    .error(Severity::Problem, &path, e, "checkpoint"),
            },
            _ => {}
        }
    }
}
