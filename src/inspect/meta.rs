//! Checking the superblock's two slots, each on its own, and the manifest against the slot in
//! force (`design/FORMAT.md` §3).
//!
//! Invariants:
//! 1. The slot in force is chosen exactly as [`crate::meta::LoadedSuperblock`] chooses it: the
//!    valid slot with the higher generation.
//! 2. Every check of loading the manifest against the slot is made and reported separately
//!    (existence, length, CRC32C, schema, seq), not only the first that fails; a manifest that
//!    parses is used for the rest of the check even if its length or CRC is wrong, so its files
//!    are still checked.
//! 3. Nothing is written: files are opened read-only.

use std::path::{Path, PathBuf};

use super::finding::{FindingKind, Findings, Severity};
use crate::codec::crc32c;
use crate::error::{Corruption, CorruptionKind, Error, IoOp, Result};
use crate::io::Storage;
use crate::meta::{Manifest, SLOT_BYTES, SUPERBLOCK_FILE, SUPERBLOCK_FILE_BYTES, Superblock};
use crate::runtime::{StoreFile, classify};

/// Offset of the `generation` field within a slot (`design/FORMAT.md` §3).
const GENERATION_OFFSET: u64 = 16;

/// The largest manifest `fsck` reads into memory. Real manifests are a few KiB; a longer file
/// named as the manifest is reported without being read whole.
pub const MANIFEST_BYTES_MAX: u64 = 64 << 20;

/// What the metadata check found.
#[derive(Debug, Clone)]
pub struct MetaState {
    /// The superblock file.
    pub superblock_path: PathBuf,
    /// Each slot's decoding.
    pub slots: [std::result::Result<Superblock, Corruption>; 2],
    /// The slot in force, if either is valid.
    pub active: Option<usize>,
    /// The manifest the slot in force names, if it parses (even when it fails other checks).
    pub manifest: Option<Manifest>,
    /// Its path.
    pub manifest_path: Option<PathBuf>,
    /// True when the manifest passed every check recovery makes.
    pub manifest_trusted: bool,
}

impl MetaState {
    /// The superblock in force.
    pub fn superblock(&self) -> Option<&Superblock> {
        self.active.and_then(|i| self.slots[i].as_ref().ok())
    }
}

/// No superblock file: no store at all when the directory holds no store file (`Err`), else a
/// store that lost its superblock, which recovery refuses (a `Problem`; the rest is checked
/// without a manifest).
fn missing_superblock(
    storage: &dyn Storage,
    dir: &Path,
    path: PathBuf,
    findings: &mut Findings,
) -> Result<MetaState> {
    let store_files = storage
        .list(dir)?
        .iter()
        .any(|n| !matches!(classify(n), None | Some(StoreFile::Lock)));
    if !store_files {
        return Err(Error::io(
            IoOp::Open,
            path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no store here: the superblock file does not exist",
            ),
        ));
    }
    let missing = Corruption {
        file: path.clone(),
        offset: 0,
        kind: CorruptionKind::MissingFile,
    };
    findings.corruption(
        Severity::Problem,
        missing.clone(),
        "superblock: the directory holds store files but no superblock (recovery refuses it)",
    );
    Ok(MetaState {
        superblock_path: path,
        slots: [Err(missing.clone()), Err(missing)],
        active: None,
        manifest: None,
        manifest_path: None,
        manifest_trusted: false,
    })
}

/// Reads and checks the superblock file and the manifest. `Err` only when there is no store (no
/// superblock file) or the superblock file cannot be read.
pub(crate) fn check_meta(
    storage: &dyn Storage,
    dir: &Path,
    findings: &mut Findings,
) -> Result<MetaState> {
    let path = dir.join(SUPERBLOCK_FILE);
    if !storage.exists(&path)? {
        return missing_superblock(storage, dir, path, findings);
    }
    let file = storage.open_read_only(&path)?;
    let mut bytes = vec![0u8; SUPERBLOCK_FILE_BYTES];
    let n = file.read_at(&mut bytes, 0)?;
    bytes.truncate(n);
    let slots = decode_slots(&bytes, &path);
    let active = match (&slots[0], &slots[1]) {
        (Ok(a), Ok(b)) => Some(if a.generation > b.generation { 0 } else { 1 }),
        (Ok(_), Err(_)) => Some(0),
        (Err(_), Ok(_)) => Some(1),
        (Err(_), Err(_)) => None,
    };
    report_slots(&slots, active, &bytes, &path, findings);
    let mut state = MetaState {
        superblock_path: path,
        slots,
        active,
        manifest: None,
        manifest_path: None,
        manifest_trusted: false,
    };
    if let Some(sb) = state.superblock().cloned() {
        check_manifest(storage, dir, &sb, &mut state, findings)?;
    }
    Ok(state)
}

/// Decodes both slots of the superblock file's bytes.
pub(crate) fn decode_slots(
    bytes: &[u8],
    path: &Path,
) -> [std::result::Result<Superblock, Corruption>; 2] {
    std::array::from_fn(|i| {
        let slot = bytes.get(i * SLOT_BYTES..).unwrap_or_default();
        let slot = slot.get(..SLOT_BYTES).unwrap_or(slot);
        Superblock::decode(slot, path, i).map_err(|e| match e {
            Error::Corruption(c) => *c,
            other => Corruption {
                file: path.to_path_buf(),
                offset: (i * SLOT_BYTES) as u64,
                kind: CorruptionKind::InvalidDocument {
                    reason: other.to_string(),
                },
            },
        })
    })
}

fn report_slots(
    slots: &[std::result::Result<Superblock, Corruption>; 2],
    active: Option<usize>,
    bytes: &[u8],
    path: &Path,
    findings: &mut Findings,
) {
    let Some(active) = active else {
        for c in slots.iter().filter_map(|s| s.as_ref().err()) {
            findings.corruption(
                Severity::Problem,
                c.clone(),
                "superblock: neither slot is valid",
            );
        }
        return;
    };
    let other = 1 - active;
    let Ok(in_force) = &slots[active] else {
        return;
    };
    match &slots[other] {
        Err(c) => {
            let zeros = bytes
                .get(other * SLOT_BYTES..(other + 1) * SLOT_BYTES)
                .is_some_and(|s| s.iter().all(|&b| b == 0));
            if other == 0 && zeros && in_force.generation == 1 {
                findings.push(
                    Severity::Info,
                    path,
                    0,
                    FindingKind::UnwrittenSlot,
                    "superblock slot 0 was never written (no publish since create)",
                );
            } else {
                let what = format!(
                    "superblock slot {other} (not in force; slot {active} with generation {} is) \
                     is invalid: a publish torn by a crash, or damage to the older slot",
                    in_force.generation
                );
                findings.corruption(Severity::Warning, c.clone(), &what);
            }
        }
        Ok(sb) if sb.generation.checked_add(1) != Some(in_force.generation) => {
            let detail = CorruptionKind::Mismatch {
                what: "superblock.inactive_generation",
                expected: in_force.generation - 1,
                actual: sb.generation,
            };
            findings.push(
                Severity::Warning,
                path,
                (other * SLOT_BYTES) as u64 + GENERATION_OFFSET,
                FindingKind::Corruption { detail },
                format!(
                    "superblock slot {other} holds generation {}, but publishes alternate slots, \
                     so it should hold {}",
                    sb.generation,
                    in_force.generation - 1
                ),
            );
        }
        Ok(_) => {}
    }
}

fn check_manifest(
    storage: &dyn Storage,
    dir: &Path,
    sb: &Superblock,
    state: &mut MetaState,
    findings: &mut Findings,
) -> Result<()> {
    let reference = sb.manifest;
    let path = dir.join(crate::meta::manifest_file_name(reference.seq));
    state.manifest_path = Some(path.clone());
    let problem = |findings: &mut Findings, kind: CorruptionKind, what: &str| {
        findings.corruption(
            Severity::Problem,
            Corruption {
                file: path.clone(),
                offset: 0,
                kind,
            },
            what,
        );
    };
    if !storage.exists(&path)? {
        problem(
            findings,
            CorruptionKind::MissingFile,
            "the manifest the superblock names",
        );
        return Ok(());
    }
    let bytes = match read_bounded(storage, &path) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            problem(
                findings,
                CorruptionKind::Mismatch {
                    what: "manifest_bytes",
                    expected: reference.bytes,
                    actual: storage.open_read_only(&path)?.len()?,
                },
                "manifest (too long to read)",
            );
            return Ok(());
        }
        Err(e) => {
            findings.error(Severity::Problem, &path, e, "manifest");
            return Ok(());
        }
    };
    let mut trusted = true;
    if bytes.len() as u64 != reference.bytes {
        trusted = false;
        let kind = CorruptionKind::Mismatch {
            what: "manifest_bytes",
            expected: reference.bytes,
            actual: bytes.len() as u64,
        };
        problem(
            findings,
            kind,
            "manifest length differs from the superblock's",
        );
    } else {
        let actual = crc32c(&bytes);
        if actual != reference.crc32c {
            trusted = false;
            let kind = CorruptionKind::ChecksumMismatch {
                expected: reference.crc32c,
                actual,
            };
            problem(
                findings,
                kind,
                "manifest CRC32C differs from the superblock's",
            );
        }
    }
    match Manifest::decode(&bytes, &path) {
        Ok(manifest) => {
            if manifest.seq != reference.seq {
                trusted = false;
                let kind = CorruptionKind::Mismatch {
                    what: "manifest_seq",
                    expected: reference.seq,
                    actual: manifest.seq,
                };
                problem(findings, kind, "manifest seq differs from the superblock's");
            }
            if !trusted {
                tracing::info!("checking the files of a manifest recovery would not trust");
            }
            state.manifest = Some(manifest);
        }
        Err(e) => {
            trusted = false;
            findings.error(Severity::Problem, &path, e, "manifest");
        }
    }
    state.manifest_trusted = trusted;
    Ok(())
}

/// The whole file, or `None` if it is longer than [`MANIFEST_BYTES_MAX`].
fn read_bounded(storage: &dyn Storage, path: &Path) -> Result<Option<Vec<u8>>> {
    let file = storage.open_read_only(path)?;
    if file.len()? > MANIFEST_BYTES_MAX {
        return Ok(None);
    }
    file.read_all().map(Some)
}
