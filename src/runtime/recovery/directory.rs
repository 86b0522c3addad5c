//! The store directory: what each file in it is, whether it holds a store, and which files
//! opening a store may remove.
//!
//! Invariants:
//! 1. A name is a store file only if it is exactly a name some layer writes (`superblock`,
//!    `manifest-{seq:016x}.json`, `log-{seq:016x}.vlog`, `ot-{seq:016x}.ckpt`,
//!    `data-{class:02}-{file:08x}.seg`, `LOCK`, and the `.tmp` names of the files written
//!    through a temporary: superblock, manifests, checkpoints). Every other file is foreign.
//! 2. Recovery never removes or changes a foreign file (RV3 removes only leftover store files).
//! 3. A directory without a superblock is a new store only if it holds no store file besides
//!    what a create that crashed leaves (`LOCK`, `superblock.tmp`, manifest 1 and its `.tmp`, and
//!    log 1 with no frame); anything else is a store that lost its superblock, and opening it
//!    fails with a `Corruption` naming the missing superblock instead of creating over it.

use std::path::Path;

use crate::alloc::parse_data_file_name;
use crate::checkpoint::parse_checkpoint_file_name;
use crate::error::{CorruptionKind, Error, Result};
use crate::io::{LockGuard, Storage};
use crate::log::{SPARE_LOG_FILE, log_file_name, parse_log_file_name, replay};
use crate::meta::{SUPERBLOCK_FILE, TMP_SUFFIX, parse_manifest_file_name};

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// What a store file is (invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StoreFile {
    /// `LOCK`.
    Lock,
    /// `superblock`.
    Superblock,
    /// `manifest-{seq}.json`.
    Manifest(u64),
    /// `log-{seq}.vlog`.
    Log(u64),
    /// `log-spare.vlog`: a retired log kept for the next rotation to rename (it holds no commit
    /// any manifest needs; recovery leaves it in place).
    SpareLog,
    /// `ot-{seq}.ckpt`.
    Checkpoint(u64),
    /// `data-{class}-{file}.seg`.
    Data(u8, u32),
    /// The `.tmp` name of a superblock, manifest or checkpoint being written.
    Tmp(TmpOf),
}

/// Which file a `.tmp` store file was becoming.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TmpOf {
    /// `superblock.tmp`.
    Superblock,
    /// `manifest-{seq}.json.tmp`.
    Manifest(u64),
    /// `ot-{seq}.ckpt.tmp`.
    Checkpoint(u64),
}

/// Classifies a file name; `None` for a foreign file.
pub(crate) fn classify(name: &str) -> Option<StoreFile> {
    if let Some(stem) = name.strip_suffix(TMP_SUFFIX) {
        return if stem == SUPERBLOCK_FILE {
            Some(StoreFile::Tmp(TmpOf::Superblock))
        } else if let Some(seq) = parse_manifest_file_name(stem) {
            Some(StoreFile::Tmp(TmpOf::Manifest(seq)))
        } else {
            parse_checkpoint_file_name(stem).map(|seq| StoreFile::Tmp(TmpOf::Checkpoint(seq)))
        };
    }
    if name == LOCK_FILE {
        Some(StoreFile::Lock)
    } else if name == SUPERBLOCK_FILE {
        Some(StoreFile::Superblock)
    } else if let Some(seq) = parse_manifest_file_name(name) {
        Some(StoreFile::Manifest(seq))
    } else if let Some(seq) = parse_log_file_name(name) {
        Some(StoreFile::Log(seq))
    } else if name == SPARE_LOG_FILE {
        Some(StoreFile::SpareLog)
    } else if let Some(seq) = parse_checkpoint_file_name(name) {
        Some(StoreFile::Checkpoint(seq))
    } else {
        parse_data_file_name(name).map(|(class, file)| StoreFile::Data(class, file))
    }
}

/// RV1: makes sure `dir` is a directory (creating it only when a store may be created there),
/// then takes its lock.
pub(crate) fn lock(
    storage: &dyn Storage,
    dir: &Path,
    create_if_missing: bool,
) -> Result<LockGuard> {
    let no_store = || Error::NoStore {
        dir: dir.to_path_buf(),
    };
    if !storage.is_dir(dir)? {
        if storage.exists(dir)? {
            return Err(Error::NotADirectory {
                path: dir.to_path_buf(),
            });
        }
        if !create_if_missing {
            return Err(no_store());
        }
        storage.create_dir_all(dir)?;
    } else if !create_if_missing {
        // A directory without any store file is refused before the lock file is made, so an
        // open that fails leaves the directory exactly as it was (RV2 looks again under the
        // lock).
        let names = storage.list(dir)?;
        if !names.iter().any(|n| classify(n).is_some()) {
            return Err(no_store());
        }
    }
    storage.lock(&dir.join(LOCK_FILE))
}

/// What RV2 found in the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// A superblock: open the store.
    Store,
    /// No store file but what a crashed create leaves: a new store may be created.
    Nothing,
}

/// RV2: whether `dir` holds a store (invariant 3). Errors: `Corruption` (missing superblock)
/// for store files without a superblock.
pub(crate) fn find_store(storage: &dyn Storage, dir: &Path) -> Result<Found> {
    let names = storage.list(dir)?;
    if names.iter().any(|n| n == SUPERBLOCK_FILE) {
        return Ok(Found::Store);
    }
    for name in &names {
        let leftover = match classify(name) {
            None | Some(StoreFile::Lock | StoreFile::Tmp(TmpOf::Superblock)) => true,
            Some(StoreFile::Manifest(1) | StoreFile::Tmp(TmpOf::Manifest(1))) => true,
            Some(StoreFile::Log(1)) => log_is_empty(storage, &dir.join(name))?,
            Some(_) => false,
        };
        if !leftover {
            tracing::error!(dir = %dir.display(), file = %name, "store files but no superblock");
            return Err(Error::corruption(
                dir.join(SUPERBLOCK_FILE),
                0,
                CorruptionKind::MissingFile,
            ));
        }
    }
    Ok(Found::Nothing)
}

/// True when the log at `path` holds no valid frame (a crashed create wrote its header only; a
/// file too short for a header counts as empty too).
fn log_is_empty(storage: &dyn Storage, path: &Path) -> Result<bool> {
    let mut frames = 0u64;
    match replay(storage, path, |_| {
        frames += 1;
        Ok(())
    }) {
        Ok(_) => Ok(frames == 0),
        Err(Error::Corruption(_)) => Ok(frames == 0),
        Err(e) => Err(e),
    }
}

/// Removes what a crashed create left, before a new create (RV2, then `MetaStore::create`): the
/// first log, if it exists (the temporary metadata files `MetaStore::create` replaces itself).
pub(crate) fn remove_create_leftovers(storage: &dyn Storage, dir: &Path) -> Result<()> {
    let first_log = dir.join(log_file_name(1));
    if storage.exists(&first_log)? {
        storage.remove(&first_log)?;
    }
    Ok(())
}

/// RV3: removes the logs, checkpoints and checkpoint temporaries the manifest in force does not
/// name: a checkpoint or rotation that crashed before its manifest was published left them. None
/// holds an acknowledged commit: records go to a new log only after the manifest naming it is
/// durable (both happen under the commit lock), and an unnamed checkpoint was never trusted.
/// Foreign files are never touched (invariant 2).
pub(crate) fn remove_unnamed(
    storage: &dyn Storage,
    dir: &Path,
    named_logs: &[u64],
    named_checkpoint: Option<&str>,
) -> Result<()> {
    for name in storage.list(dir)? {
        let unnamed = match classify(&name) {
            Some(StoreFile::Log(seq)) => !named_logs.contains(&seq),
            Some(StoreFile::Checkpoint(_)) => named_checkpoint != Some(name.as_str()),
            Some(StoreFile::Tmp(TmpOf::Checkpoint(_))) => true,
            _ => false,
        };
        if unnamed {
            tracing::info!(file = %name, "removing a file no manifest names");
            storage.remove(&dir.join(&name))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_store_names_are_store_files() {
        let cases = [
            ("LOCK", Some(StoreFile::Lock)),
            ("superblock", Some(StoreFile::Superblock)),
            ("superblock.tmp", Some(StoreFile::Tmp(TmpOf::Superblock))),
            (
                "manifest-0000000000000007.json",
                Some(StoreFile::Manifest(7)),
            ),
            (
                "manifest-0000000000000007.json.tmp",
                Some(StoreFile::Tmp(TmpOf::Manifest(7))),
            ),
            ("log-000000000000000a.vlog", Some(StoreFile::Log(10))),
            ("log-spare.vlog", Some(StoreFile::SpareLog)),
            ("log-spare.vlog.tmp", None),
            ("log-Spare.vlog", None),
            ("ot-0000000000000003.ckpt", Some(StoreFile::Checkpoint(3))),
            (
                "ot-0000000000000003.ckpt.tmp",
                Some(StoreFile::Tmp(TmpOf::Checkpoint(3))),
            ),
            ("data-01-00000002.seg", Some(StoreFile::Data(1, 2))),
            ("draft.tmp", None),
            ("manifest-7.json", None),
            ("manifest-backup.json", None),
            ("log-000000000000000a.vlog.tmp", None),
            ("data-01-00000002.seg.tmp", None),
            ("notes.txt", None),
            ("lock", None),
        ];
        for (name, want) in cases {
            assert_eq!(classify(name), want, "{name}");
        }
    }
}
