//! Read-only inspection of a store: `fsck` (every check, every finding) and `dump` (what the
//! files hold). What is checked, the finding kinds, the definition of a leak, the exit codes and
//! the `--snapshot` semantics are in `design/TOOLS.md`.
//!
//! Invariants:
//! 1. Nothing here writes: files are opened read-only, no file is created, cut or removed, and
//!    the lock is taken (when it is) through a read-only handle on the existing lock file.
//! 2. No input makes it panic: every byte read goes through the layers' own decoders, which
//!    report corruption as values, and every length from disk is checked against the file before
//!    it sizes a read.
//! 3. The state is reconstructed as recovery reconstructs it (superblock → manifest → checkpoint
//!    → commit records → data files), and every rule recovery enforces is checked, with
//!    recovery's own kind and offset wherever recovery reports a corruption (the allocator
//!    rebuild's refusals, which recovery words as prose, get kinds of their own); but instead of
//!    stopping at the first failure, the check records it and goes on wherever the layout
//!    allows, so one run reports every problem.
//! 4. Unless `snapshot` is set, the check holds the store's lock throughout (refusing with
//!    [`crate::Error::Locked`] while a writer holds it), so no writer changes the store under it.
//!
//! Layout: [`finding`] (findings and severities), `meta` (superblock slots, manifest), `frames`
//! and `logs` (delta logs, records), `model` (the replayed state), `space` (data files, slots,
//! node bytes, space), `directory` (leftovers, unknown files), [`load()`] (the reconstruction),
//! `snapshot` (checking under a live writer), [`report`], [`dump`], [`plugin`] (the hooks
//! through which a structure crate checks and dumps what its roots name: the core decodes no
//! structure's formats).

mod directory;
pub mod dump;
pub mod finding;
mod frames;
pub mod load;
mod logs;
mod meta;
mod model;
pub mod plugin;
pub mod report;
mod snapshot;
mod space;

use std::path::Path;

pub use finding::{Finding, FindingKind, Severity, SlotView};
pub use load::{CheckpointSummary, FsckOptions, Inspection, load, load_with};
pub use logs::LogSummary;
pub use meta::MetaState;
pub use model::{LiveVersion, Model, entry_key};
pub use plugin::{LiveNode, Plugin, Root, StoreView, Unavailable};
pub use report::{Access, Report, Summary};
pub use space::{ClassSpace, DataFile};

use crate::error::{Error, IoOp, Result};
use crate::io::Storage;
use crate::runtime::LOCK_FILE;

/// Checks the store in `dir` and reports every finding.
///
/// Errors (exit code 2 of `vellum fsck`): the directory or its superblock file does not exist or
/// cannot be read, or (without `options.snapshot`) a writer holds the store's lock
/// ([`Error::Locked`]). A store whose superblock has no valid slot is not an error: the report
/// says it is not readable, with both slots' findings.
///
/// No structure is decoded: every root with a structure prefix is an `info` finding
/// ([`FindingKind::NoInspector`]). [`fsck_with`] takes the structures' plugins.
pub fn fsck(storage: &dyn Storage, dir: &Path, options: &FsckOptions) -> Result<Report> {
    fsck_with(storage, dir, options, &[])
}

/// [`fsck`], with `plugins` checking the structures the roots with their prefixes name
/// ([`Plugin`]); their findings are part of the report.
pub fn fsck_with(
    storage: &dyn Storage,
    dir: &Path,
    options: &FsckOptions,
    plugins: &[&dyn Plugin],
) -> Result<Report> {
    require_dir(storage, dir)?;
    if options.snapshot {
        return snapshot::run(storage, dir, options, plugins);
    }
    let (access, _lock) = lock(storage, dir)?;
    let inspection = load_with(storage, dir, options, plugins)?;
    Ok(Report::from_inspection(inspection, access))
}

/// Takes the store's lock for a read-only tool, if the lock file exists. `Err(Locked)` while a
/// writer holds it.
pub fn lock(storage: &dyn Storage, dir: &Path) -> Result<(Access, Option<crate::io::LockGuard>)> {
    let guard = storage.lock_existing(&dir.join(LOCK_FILE))?;
    let access = if guard.is_some() {
        Access::Locked
    } else {
        Access::NoLockFile
    };
    Ok((access, guard))
}

/// `Err` unless `dir` exists.
pub(crate) fn require_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    if storage.exists(dir)? {
        return Ok(());
    }
    Err(Error::io(
        IoOp::Open,
        dir,
        std::io::Error::new(std::io::ErrorKind::NotFound, "no such directory"),
    ))
}
