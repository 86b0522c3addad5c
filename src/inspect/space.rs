//! Data files and the slots of live versions: object table ↔ allocator consistency, node bytes
//! against their CRC32C, and per-class space figures.
//!
//! Invariants:
//! 1. An offline store keeps no allocator state: recovery (RV6) rebuilds it from the live
//!    versions, so a slot is *allocated* exactly when a live version owns it. What is checked is
//!    that this rebuild can succeed and agrees with the files: every live slot on its class's
//!    grid (a large extent, `round_up(len, 4 KiB)` bytes, on a 4 KiB boundary and within one
//!    64 MiB region), inside an existing data file, sharing no byte with another live version's
//!    slot or extent; data files numbered densely and no longer than `file_bytes_max`
//!    (`design/TOOLS.md`, "Leaks").
//! 2. A live version whose record carried its bytes is never a problem for the state of its slot:
//!    recovery writes those bytes back (RV7), creating the file if it is one of the few past the
//!    last that exists (`PayloadPending`, `Info`).
//! 3. A slot is readable exactly when the runtime could read it after recovery: its whole window
//!    lies within the file's length, where that length is the larger of the file's own and what
//!    recovery's payload write-backs grow it to (RV7 grows a file to the end of a written window).
//!    Bytes past the file's own end read as zeros, as they would once it is grown.
//! 4. Node bytes are read with plain positional reads through read-only handles, never mapped,
//!    one node at a time in file order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::finding::{FindingKind, Findings, Severity, SlotView};
use super::load::FsckOptions;
use super::model::{LiveVersion, Model};
use crate::alloc::{CLASS_COUNT, class_unit_bytes, data_file_name};
use crate::codec::crc32c;
use crate::error::{Corruption, CorruptionKind, Result};
use crate::io::{Storage, StorageFile};
use crate::meta::Manifest;

/// How many data files past the last that exists a payload-carrying version may name (recovery's
/// `UNSYNCED_DATA_FILES_MAX`): a file whose creation was not yet durable at a crash.
const UNSYNCED_DATA_FILES_MAX: u64 = 2;

/// One data file.
#[derive(Debug, Clone)]
pub struct DataFile {
    /// Its size class.
    pub class: u8,
    /// Its number within the class.
    pub file: u32,
    /// Its path.
    pub path: PathBuf,
    /// Its length.
    pub bytes: u64,
    /// Bytes of disk it occupies (`st_blocks * 512`; holes take none).
    pub disk_bytes: u64,
    /// A read-only handle.
    pub(crate) handle: Arc<dyn StorageFile>,
}

/// Space figures of one size class.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClassSpace {
    /// The size class.
    pub class: u8,
    /// Bytes of its slots; for the large class, its unit (4 KiB: each extent is its node's
    /// length rounded up to whole units).
    pub slot_bytes: u64,
    /// Data files.
    pub files: u64,
    /// Their total length.
    pub file_bytes: u64,
    /// Bytes of disk they occupy.
    pub disk_bytes: u64,
    /// Live nodes in the class.
    pub live_nodes: u64,
    /// Bytes of those nodes.
    pub live_bytes: u64,
    /// Bytes of the slots they own (`live_nodes * slot_bytes`; for the large class the sum of
    /// their extents); `file_bytes` minus this is space the rebuilt allocator hands out again.
    pub live_slot_bytes: u64,
}

/// Opens every data file among `names`, and checks the set against the manifest and recovery's
/// rules (dense numbering, length at most `file_bytes_max`).
pub(crate) fn open_data_files(
    storage: &dyn Storage,
    dir: &Path,
    names: &[String],
    manifest: Option<(&Manifest, &Path)>,
    options: &FsckOptions,
    findings: &mut Findings,
) -> BTreeMap<(u8, u32), DataFile> {
    let file_bytes_max = options.file_bytes_max;
    let mut files = BTreeMap::new();
    for name in names {
        let Some((class, file)) = crate::alloc::parse_data_file_name(name) else {
            continue;
        };
        let path = dir.join(name);
        match open_one(storage, &path) {
            Ok((handle, bytes, disk_bytes)) => {
                let window = options.class_window_bytes(class);
                let too_long = (bytes > file_bytes_max).then(|| {
                    format!(
                        "data file is {bytes} bytes, above file_bytes_max {file_bytes_max} \
                         (recovery refuses the store)"
                    )
                });
                let cut_short = (!bytes.is_multiple_of(window)).then(|| {
                    format!(
                        "data file is {bytes} bytes, not a whole number of its {window}-byte \
                         windows: it was cut short"
                    )
                });
                for message in too_long.into_iter().chain(cut_short) {
                    let detail = CorruptionKind::InvalidField {
                        field: "data file length",
                        value: bytes,
                    };
                    findings.push(
                        Severity::Problem,
                        &path,
                        0,
                        FindingKind::Corruption { detail },
                        message,
                    );
                }
                let f = DataFile {
                    class,
                    file,
                    path,
                    bytes,
                    disk_bytes,
                    handle,
                };
                files.insert((class, file), f);
            }
            Err(e) => findings.error(Severity::Problem, &path, e, "data file"),
        }
    }
    for class in 0..CLASS_COUNT as u8 {
        let numbers = files
            .range((class, 0)..=(class, u32::MAX))
            .map(|(k, _)| k.1);
        let gap = numbers
            .zip(0u32..)
            .find(|(number, expected)| number != expected);
        if let Some((_, missing)) = gap {
            findings.push(
                Severity::Problem,
                dir,
                0,
                FindingKind::DataFileGap { class, missing },
                format!(
                    "data files of class {class} are not numbered densely: {} is missing \
                     (recovery refuses the store)",
                    data_file_name(class, missing)
                ),
            );
        }
    }
    if let Some((manifest, manifest_path)) = manifest {
        check_named(dir, manifest, manifest_path, &files, findings);
    }
    files
}

fn open_one(storage: &dyn Storage, path: &Path) -> Result<(Arc<dyn StorageFile>, u64, u64)> {
    let handle = storage.open_read_only(path)?;
    let bytes = handle.len()?;
    let disk_bytes = handle.allocated_bytes()?;
    Ok((handle, bytes, disk_bytes))
}

/// Every data file the manifest names exists, under its canonical name, at least as long as
/// recorded (files only grow).
fn check_named(
    dir: &Path,
    manifest: &Manifest,
    manifest_path: &Path,
    files: &BTreeMap<(u8, u32), DataFile>,
    findings: &mut Findings,
) {
    for (i, df) in manifest.data_files.iter().enumerate() {
        let key = u8::try_from(df.class)
            .ok()
            .filter(|c| usize::from(*c) < CLASS_COUNT)
            .zip(u32::try_from(df.seq).ok());
        let Some(key) = key.filter(|k| data_file_name(k.0, k.1) == df.file) else {
            let reason = format!(
                "data_files[{i}]: {:?} is not the data file of class {} number {}",
                df.file, df.class, df.seq
            );
            let c = Corruption {
                file: manifest_path.to_path_buf(),
                offset: 0,
                kind: CorruptionKind::InvalidDocument { reason },
            };
            findings.corruption(Severity::Problem, c, "manifest");
            continue;
        };
        match files.get(&key) {
            None => {
                let c = Corruption {
                    file: dir.join(&df.file),
                    offset: 0,
                    kind: CorruptionKind::MissingFile,
                };
                findings.corruption(
                    Severity::Problem,
                    c,
                    "a data file the manifest names (recovery refuses the store)",
                );
            }
            Some(f) if f.bytes < df.bytes => {
                let detail = CorruptionKind::Mismatch {
                    what: "data_files.bytes",
                    expected: df.bytes,
                    actual: f.bytes,
                };
                findings.push(
                    Severity::Problem,
                    &f.path,
                    0,
                    FindingKind::Corruption { detail },
                    format!(
                        "data file is {} bytes, shorter than the {} the manifest recorded (data \
                         files only grow)",
                        f.bytes, df.bytes
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

/// The end of the window holding `loc`: the file length the runtime needs to read the slot
/// (`DataFiles::ensure` grows a file to exactly this).
fn window_end(options: &FsckOptions, loc: crate::alloc::Location) -> u64 {
    let window = options.class_window_bytes(loc.class);
    (loc.offset / window)
        .saturating_add(1)
        .saturating_mul(window)
}

/// Checks every live version's slot and (when `verify_bytes`) its bytes; returns the space
/// figures of every class that has files or live nodes, and how many nodes' bytes were read.
pub(crate) fn check_live(
    dir: &Path,
    model: &Model,
    files: &BTreeMap<(u8, u32), DataFile>,
    options: &FsckOptions,
    findings: &mut Findings,
) -> (Vec<ClassSpace>, u64) {
    let file_bytes_max = options.file_bytes_max;
    let mut by_slot: Vec<&LiveVersion> = model.live.values().collect();
    by_slot.sort_by_key(|l| (l.version.location, l.id));
    let mut files_per_class = [0u64; CLASS_COUNT];
    for (class, _) in files.keys() {
        files_per_class[usize::from(*class)] += 1;
    }
    // The length each file has once recovery wrote the carried payloads back (invariant 3).
    let mut grown: BTreeMap<(u8, u32), u64> = files.iter().map(|(k, f)| (*k, f.bytes)).collect();
    for live in by_slot.iter().filter(|l| l.carried) {
        let loc = live.version.location;
        let len = grown.entry((loc.class, loc.file)).or_insert(0);
        *len = (*len).max(window_end(options, loc));
    }
    let mut checked = 0u64;
    // The furthest slot end seen so far in the current file, and its owner.
    let mut reach: Option<((u8, u32), u64, &LiveVersion)> = None;
    for live in &by_slot {
        let loc = live.version.location;
        let len = live.version.len;
        let slot = SlotView::new(loc, len);
        let path = dir.join(data_file_name(loc.class, loc.file));
        let end = loc.offset.saturating_add(loc.slot_bytes(u64::from(len)));
        if let Some((key, furthest, owner)) = reach
            && key == (loc.class, loc.file)
            && loc.offset < furthest
        {
            findings
                .push(
                    Severity::Problem,
                    &path,
                    loc.offset,
                    FindingKind::SlotOverlap {
                        location: slot,
                        other: owner.id,
                    },
                    format!(
                        "live nodes {} and {} overlap at {loc:?} (recovery refuses the store)",
                        live.id, owner.id
                    ),
                )
                .node = Some(live.id);
        }
        if reach.is_none_or(|(key, furthest, _)| key != (loc.class, loc.file) || end > furthest) {
            reach = Some(((loc.class, loc.file), end, live));
        }
        // Recovery's own bound (RV6): a slot at most a few files past the last that exists, and
        // within `file_bytes_max`; it refuses the store otherwise, with this report.
        let beyond = u64::from(loc.file)
            >= files_per_class[usize::from(loc.class)] + UNSYNCED_DATA_FILES_MAX;
        if beyond || end > file_bytes_max {
            let detail = CorruptionKind::InvalidField {
                field: "op.location",
                value: loc.pack(),
            };
            findings
                .push(
                    Severity::Problem,
                    &path,
                    loc.offset,
                    FindingKind::Corruption { detail },
                    format!(
                        "node {}'s slot {loc:?} lies past the data files recovery accepts \
                         (recovery refuses the store)",
                        live.id
                    ),
                )
                .node = Some(live.id);
            continue;
        }
        if let Some(why) = loc.misplaced(u64::from(len)) {
            findings
                .push(
                    Severity::Problem,
                    &path,
                    loc.offset,
                    FindingKind::SlotOffGrid { location: slot },
                    format!(
                        "node {}'s slot {loc:?} {why} ({} bytes; recovery refuses the store)",
                        live.id,
                        class_unit_bytes(loc.class)
                    ),
                )
                .node = Some(live.id);
            continue;
        }
        let file = files.get(&(loc.class, loc.file));
        let need = window_end(options, loc);
        if live.carried {
            match file {
                Some(f) if need <= f.bytes => {
                    if options.verify_bytes {
                        checked += 1;
                        verify_node(f, live, slot, findings);
                    }
                }
                Some(_) => pending(
                    findings,
                    &path,
                    live,
                    slot,
                    "its window is not in the file yet",
                ),
                None => pending(
                    findings,
                    &path,
                    live,
                    slot,
                    "its data file does not exist yet",
                ),
            }
            continue;
        }
        let readable = grown
            .get(&(loc.class, loc.file))
            .is_some_and(|&g| need <= g);
        match file {
            Some(f) if readable => {
                if options.verify_bytes {
                    checked += 1;
                    verify_node(f, live, slot, findings);
                }
            }
            _ => outside(findings, &path, live, slot, file.map(|f| f.bytes)),
        }
    }
    (space(model, files), checked)
}

fn outside(
    findings: &mut Findings,
    path: &Path,
    live: &LiveVersion,
    slot: SlotView,
    file_bytes: Option<u64>,
) {
    let message = match file_bytes {
        Some(b) => format!(
            "node {}'s slot at offset {} lies in a window past its data file's end ({b} bytes)",
            live.id, slot.offset
        ),
        None => format!("node {}'s data file does not exist", live.id),
    };
    findings
        .push(
            Severity::Problem,
            path,
            slot.offset,
            FindingKind::SlotOutsideFiles {
                location: slot,
                file_bytes,
            },
            message,
        )
        .node = Some(live.id);
}

/// Checks a node's bytes against its CRC32C; bytes past the file's end count as zeros (what the
/// runtime reads once recovery grew the file).
fn verify_node(file: &DataFile, live: &LiveVersion, slot: SlotView, findings: &mut Findings) {
    let loc = live.version.location;
    let mut buf = vec![0u8; live.version.len as usize];
    if let Err(e) = file.handle.read_at(&mut buf, loc.offset) {
        findings.error(Severity::Problem, &file.path, e, "reading a node");
        return;
    }
    let actual = crc32c(&buf);
    if actual == live.version.crc32c {
        return;
    }
    if live.carried {
        pending(
            findings,
            &file.path,
            live,
            slot,
            "its slot does not hold its bytes yet",
        );
        return;
    }
    let detail = CorruptionKind::ChecksumMismatch {
        expected: live.version.crc32c,
        actual,
    };
    findings
        .push(
            Severity::Problem,
            &file.path,
            loc.offset,
            FindingKind::Corruption { detail },
            format!(
                "node {}'s {} bytes at {loc:?} fail their CRC32C",
                live.id, live.version.len
            ),
        )
        .node = Some(live.id);
}

fn pending(findings: &mut Findings, path: &Path, live: &LiveVersion, slot: SlotView, why: &str) {
    findings
        .push(
            Severity::Info,
            path,
            slot.offset,
            FindingKind::PayloadPending { location: slot },
            format!(
                "node {}: {why}, but the delta log carries them; recovery writes them back",
                live.id
            ),
        )
        .node = Some(live.id);
}

/// Space figures of every class with files or live nodes.
fn space(model: &Model, files: &BTreeMap<(u8, u32), DataFile>) -> Vec<ClassSpace> {
    let mut classes: BTreeMap<u8, ClassSpace> = BTreeMap::new();
    let entry = |classes: &mut BTreeMap<u8, ClassSpace>, class: u8| {
        classes.entry(class).or_insert_with(|| ClassSpace {
            class,
            slot_bytes: class_unit_bytes(class),
            ..ClassSpace::default()
        });
    };
    for f in files.values() {
        entry(&mut classes, f.class);
        if let Some(c) = classes.get_mut(&f.class) {
            c.files += 1;
            c.file_bytes = c.file_bytes.saturating_add(f.bytes);
            c.disk_bytes = c.disk_bytes.saturating_add(f.disk_bytes);
        }
    }
    for live in model.live.values() {
        let class = live.version.location.class;
        entry(&mut classes, class);
        if let Some(c) = classes.get_mut(&class) {
            c.live_nodes += 1;
            c.live_bytes += u64::from(live.version.len);
            c.live_slot_bytes += live
                .version
                .location
                .slot_bytes(u64::from(live.version.len));
        }
    }
    classes.into_values().collect()
}
