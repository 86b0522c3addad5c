//! `fsck --snapshot`: checking a store while a writer runs, without its lock, and labelling the
//! findings a concurrent writer may have caused (`design/TOOLS.md`, "--snapshot").
//!
//! The protocol facts this relies on (`design/DURABILITY.md`):
//! 1. Manifests, checkpoints and closed logs never change once named; the open log only grows;
//!    the superblock changes only in the slot not in force. Files are removed only once no
//!    manifest in force names them.
//! 2. A live version's slot is written again only after the slot was freed, and it is freed only
//!    after the record that superseded or retired the version is durable in a log. So every
//!    write that can change the bytes of a node the check found live is preceded by a record,
//!    in the open log or a newer one, that names the node.
//!
//! So after the check this module reads what was appended meanwhile, collects the nodes those
//! records name, and labels as `maybe_concurrent` (never a `Problem`) the node findings for those
//! nodes, the open log's tail, findings about files the newest manifest no longer names, and the
//! superblock's if a publish happened. When the trail of records cannot be followed completely
//! (a log was removed, a publish happened while it was read), every node finding is labelled.

use std::collections::BTreeSet;
use std::path::Path;

use super::directory::{Role, role};
use super::finding::{Finding, FindingKind, Severity};
use super::frames::{FrameWalker, Step};
use super::load::{FsckOptions, Inspection, load_with};
use super::meta::decode_slots;
use super::model::entry_key;
use super::plugin::Plugin;
use super::report::{Access, Report};
use crate::error::{CorruptionKind, Result};
use crate::io::Storage;
use crate::log::{FRAME_BODY_OFFSET, LOG_HEADER_BYTES};
use crate::meta::{Manifest, SUPERBLOCK_FILE, SUPERBLOCK_FILE_BYTES, read_manifest};
use crate::runtime::{CommitRecordRef, OpRef};

/// How many times a check is started over when a publish removed files it needed.
const ATTEMPTS: usize = 3;

/// Runs a snapshot check.
pub(crate) fn run(
    storage: &dyn Storage,
    dir: &Path,
    options: &FsckOptions,
    plugins: &[&dyn Plugin],
) -> Result<Report> {
    let mut attempt = 1;
    loop {
        let mut insp = load_with(storage, dir, options, plugins)?;
        let later = follow(storage, dir, &insp);
        let lost_files = insp.findings().iter().any(is_missing_or_unreadable);
        if later.meta_changed && lost_files && attempt < ATTEMPTS {
            tracing::info!(
                attempt,
                "a publish removed files while they were read; again"
            );
            attempt += 1;
            continue;
        }
        label(&mut insp, &later);
        return Ok(Report::from_inspection(insp, Access::Snapshot));
    }
}

/// What happened while the check ran.
#[derive(Debug, Default)]
struct Later {
    /// Anything at all: a publish, or frames appended.
    changed: bool,
    /// A publish (the superblock's generation changed).
    meta_changed: bool,
    /// Every record appended meanwhile was read.
    complete: bool,
    /// Entries (shard, handle) those records name.
    nodes: BTreeSet<u64>,
    /// A frame now starts where the check's walk of the open log stopped: whatever the check
    /// found there (zeros with valid frames past them, say, from reading the log in pieces
    /// while the writer appended) was an append in flight.
    open_stop_rewritten: bool,
    /// The files the newest manifest names.
    named: BTreeSet<String>,
}

/// The generation in force and its manifest (if it loads).
fn current(storage: &dyn Storage, dir: &Path) -> Option<(u64, Option<Manifest>)> {
    let path = dir.join(SUPERBLOCK_FILE);
    let file = storage.open_read_only(&path).ok()?;
    let mut bytes = vec![0u8; SUPERBLOCK_FILE_BYTES];
    let n = file.read_at(&mut bytes, 0).ok()?;
    bytes.truncate(n);
    let slots = decode_slots(&bytes, &path);
    let sb = slots
        .into_iter()
        .filter_map(std::result::Result::ok)
        .max_by_key(|s| s.generation)?;
    let manifest = read_manifest(storage, dir, &sb.manifest).ok();
    Some((sb.generation, manifest))
}

fn follow(storage: &dyn Storage, dir: &Path, insp: &Inspection) -> Later {
    let mut later = Later {
        complete: true,
        ..Later::default()
    };
    let checked = insp.meta.superblock().map(|s| s.generation);
    let first = current(storage, dir);
    later.meta_changed = first.as_ref().map(|c| c.0) != checked;
    // Records appended to the open log after the check read it.
    let open = insp.logs.last().filter(|l| l.open);
    if let Some(open) = open {
        let path = dir.join(&open.file);
        match rewalk(
            storage,
            &path,
            open.valid_end,
            open.frames,
            &mut later.nodes,
        ) {
            Ok((frames, len)) => {
                later.changed |= frames > 0 || len != open.bytes;
                later.open_stop_rewritten = frames > 0;
            }
            Err(_) => later.complete = false,
        }
    }
    // Records in logs a publish added since.
    let ours = insp.meta.manifest.as_ref();
    let newest = match &first {
        Some((_, Some(m))) => Some(m),
        Some((_, None)) | None => {
            later.complete &= !later.meta_changed;
            ours
        }
    };
    if let Some(m) = newest {
        let open_seq = ours.and_then(|o| o.delta_logs.last()).map_or(0, |l| l.seq);
        for l in m.delta_logs.iter().filter(|l| l.seq > open_seq) {
            let path = dir.join(&l.file);
            if rewalk(storage, &path, LOG_HEADER_BYTES as u64, 0, &mut later.nodes).is_err() {
                later.complete = false;
            }
            later.changed = true;
        }
        later.named = named_files(m);
    }
    // A publish while the trail was read may have moved records where it was not read.
    let second = current(storage, dir).map(|c| c.0);
    if second != first.as_ref().map(|c| c.0) {
        later.complete = false;
        later.meta_changed = true;
    }
    later.changed |= later.meta_changed;
    if later.changed {
        tracing::info!(
            nodes = later.nodes.len(),
            complete = later.complete,
            "the store changed while it was checked"
        );
    }
    later
}

/// Walks `path` from `offset` (expecting frame `index`), collecting the entries records name;
/// returns how many frames it read and the file's length.
fn rewalk(
    storage: &dyn Storage,
    path: &Path,
    mut offset: u64,
    mut index: u64,
    nodes: &mut BTreeSet<u64>,
) -> Result<(u64, u64)> {
    let file = storage.open_read_only(path)?;
    let mut walker = FrameWalker::new(file.as_ref())?;
    let mut frames = 0;
    while let Step::Frame { body, end, .. } = walker.step(offset, index)? {
        if let Ok(record) = CommitRecordRef::decode(&body, path, offset + FRAME_BODY_OFFSET as u64)
        {
            for op in &record.ops {
                match op {
                    OpRef::New(v) | OpRef::Update(v) => {
                        nodes.insert(entry_key(v.id));
                    }
                    OpRef::Retire(id) => {
                        nodes.insert(entry_key(*id));
                    }
                    OpRef::SetRoot(..) | OpRef::DelRoot(_) => {}
                }
            }
        }
        frames += 1;
        offset = end;
        index += 1;
    }
    Ok((frames, walker.len()))
}

fn named_files(m: &Manifest) -> BTreeSet<String> {
    let checkpoint = m.checkpoint.iter().map(|c| c.file.clone());
    let logs = m.delta_logs.iter().map(|l| l.file.clone());
    let data = m.data_files.iter().map(|d| d.file.clone());
    checkpoint.chain(logs).chain(data).collect()
}

fn is_missing_or_unreadable(f: &Finding) -> bool {
    matches!(
        f.kind,
        FindingKind::Corruption {
            detail: CorruptionKind::MissingFile
        } | FindingKind::Unreadable { .. }
    )
}

fn label(insp: &mut Inspection, later: &Later) {
    if !later.changed {
        return;
    }
    let open_log = insp.logs.last().filter(|l| l.open);
    let stop = open_log.map(|l| l.valid_end);
    let open_log = open_log.map(|l| l.file.clone());
    for f in &mut insp.findings.items {
        let name = f.file_name().to_owned();
        let node_data = matches!(role(&name), Role::Data(..))
            && f.node
                .is_some_and(|id| !later.complete || later.nodes.contains(&entry_key(id)));
        let in_open_log = open_log.as_deref() == Some(name.as_str());
        let tail = in_open_log
            && (matches!(
                f.kind,
                FindingKind::TornTail { .. } | FindingKind::FramesPastCut { .. }
            ) || (later.open_stop_rewritten
                && Some(f.offset) == stop
                && matches!(f.kind, FindingKind::DamagedDurableFrame { .. })));
        let gone = is_missing_or_unreadable(f) && !later.named.contains(&name);
        let superblock = name == SUPERBLOCK_FILE && later.meta_changed;
        if node_data || tail || gone || superblock {
            f.maybe_concurrent = true;
            f.severity = f.severity.min(Severity::Warning);
        }
    }
}
