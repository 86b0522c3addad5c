//! [`MetaStore`]: creates, opens and publishes a store's superblock and manifest.
//!
//! Invariants (the argument that they survive a crash at any point is in `design/DURABILITY.md`):
//! 1. A store exists exactly when the file `superblock` exists, and `superblock` only ever appears
//!    complete and durable (it is built as `superblock.tmp` and renamed).
//! 2. The manifest a superblock slot names is durable under its final name before the slot is
//!    written, and stays until a newer slot is durable: a valid slot never names a missing or
//!    partial manifest (except after bit rot, which loading reports).
//! 3. A publish writes only the inactive slot, so until its `sync_data` returns the slot in force
//!    is untouched and a crash recovers the old state; once it returns, the new state is durable.
//! 4. Readers see only published states, each a superblock together with the manifest it names
//!    (one `Arc`, swapped atomically), and never a state older than one they already saw.
//! 5. After a failed sync (or a failed write to the superblock file) the disk's state is unknown,
//!    so the store is poisoned: every later publish fails with `Poisoned`, and readers keep the last
//!    published state. A failure before anything could have reached the superblock file leaves the
//!    old state fully in force and does not poison.
//! 6. One writer at a time: publishes are serialised by a mutex; readers take no lock.
//! 7. Open makes the state it loaded durable (superblock file and directory synced) before it
//!    removes any file or allows a publish: what it read may have been visible only in the page
//!    cache, left there by a process that died mid-publish or mid-create.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use parking_lot::Mutex;

use super::files::{
    Failure, TMP_SUFFIX, manifest_file_name, parse_manifest_file_name, read_manifest, write_durably,
};
use super::manifest::{Manifest, ManifestRef};
use super::roots::RootCatalog;
use super::superblock::{
    LoadedSuperblock, SLOT_BYTES, SUPERBLOCK_FILE, SUPERBLOCK_FILE_BYTES, Superblock, slot_index,
    slot_offset,
};
use crate::error::{Error, IoOp, Result};
use crate::io::{Storage, StorageFile};
use crate::poison::Poison;

/// A published state: a superblock and the manifest it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The superblock slot in force.
    pub superblock: Superblock,
    /// The manifest it names (`manifest.seq == superblock.manifest.seq`).
    pub manifest: Arc<Manifest>,
}

/// What one publish changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaUpdate {
    /// The commit epoch made durable; not below the current one.
    pub commit_epoch: u64,
    /// The complete new root catalog.
    pub roots: RootCatalog,
    /// A new manifest (its `seq` is assigned: current + 1), or `None` to keep the current one.
    pub manifest: Option<Manifest>,
}

/// Everything loading a store reads, for tools that must not change the directory.
#[derive(Debug, Clone)]
pub struct LoadedMeta {
    /// Both superblock slots and the one in force.
    pub superblock: LoadedSuperblock,
    /// The manifest the slot in force names, checked against it.
    pub manifest: Manifest,
    /// Files that [`MetaStore::open`] would remove: other manifests and the temporaries of the
    /// superblock and of manifests.
    pub leftovers: Vec<String>,
}

/// The store's metadata: the superblock file, the manifest in force, and the publish protocol.
#[derive(Debug)]
pub struct MetaStore {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    superblock_file: Arc<dyn StorageFile>,
    current: ArcSwap<Published>,
    writer: Mutex<()>,
    poison: Poison,
}

/// The files in `names` that recovery must not trust when `active_seq` names the manifest in
/// force: every other manifest, and the temporaries of the superblock and of manifests. Nothing
/// is being written while a store is opened, so such a temporary is a leftover. No other file is
/// ever named here: a `.tmp` file that is not one of these is not the metadata's to remove.
fn leftovers(names: Vec<String>, active_seq: u64) -> Vec<String> {
    names
        .into_iter()
        .filter(|name| {
            let tmp_of = name.strip_suffix(TMP_SUFFIX);
            tmp_of.is_some_and(|stem| {
                stem == SUPERBLOCK_FILE || parse_manifest_file_name(stem).is_some()
            }) || parse_manifest_file_name(name).is_some_and(|seq| seq != active_seq)
        })
        .collect()
}

fn no_store(path: PathBuf) -> Error {
    let source = std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "no store here: the superblock file does not exist",
    );
    Error::io(IoOp::Open, path, source)
}

impl MetaStore {
    /// Creates a store in `dir` (which must exist) whose first manifest is `manifest` (its seq is
    /// set to 1), at commit epoch 0 with no roots. Fails if `dir/superblock` exists.
    pub fn create(storage: Arc<dyn Storage>, dir: &Path, manifest: Manifest) -> Result<MetaStore> {
        let span = tracing::info_span!("meta.create", dir = %dir.display());
        let _enter = span.enter();
        let superblock_path = dir.join(SUPERBLOCK_FILE);
        if storage.exists(&superblock_path)? {
            return Err(Error::io(
                IoOp::Create,
                superblock_path,
                std::io::ErrorKind::AlreadyExists.into(),
            ));
        }
        let mut manifest = manifest;
        manifest.seq = 1;
        let manifest_bytes = manifest.encode()?;
        let superblock = Superblock {
            generation: 1,
            commit_epoch: 0,
            manifest: ManifestRef::of(1, &manifest_bytes),
            roots: RootCatalog::new(),
        };
        // Generation 1 lives in slot 1; slot 0 stays zero until the first publish writes
        // generation 2 there.
        let mut image = vec![0u8; SUPERBLOCK_FILE_BYTES];
        let at = slot_index(superblock.generation) * SLOT_BYTES;
        image[at..at + SLOT_BYTES].copy_from_slice(&superblock.encode()?);

        // Step 1: the manifest, durable under its final name.
        write_durably(&*storage, dir, &manifest_file_name(1), &manifest_bytes)
            .map_err(Failure::into_error)?;
        // Step 2: the superblock; its rename into place is the moment the store exists.
        write_durably(&*storage, dir, SUPERBLOCK_FILE, &image).map_err(Failure::into_error)?;
        let superblock_file = storage.open(&superblock_path)?;
        tracing::info!("store created");
        Ok(Self::assemble(
            storage,
            dir,
            superblock_file,
            Published {
                superblock,
                manifest: Arc::new(manifest),
            },
        ))
    }

    /// Opens the store in `dir`: loads the superblock slot in force and its manifest, syncs the
    /// superblock file, removes the files recovery must not trust (see [`LoadedMeta::leftovers`])
    /// and syncs the directory.
    pub fn open(storage: Arc<dyn Storage>, dir: &Path) -> Result<MetaStore> {
        let span = tracing::info_span!("meta.open", dir = %dir.display());
        let _enter = span.enter();
        let (superblock_file, loaded, manifest) = Self::load(&*storage, dir, true)?;
        // What was just read may be visible without being durable: a process that died between
        // writing a slot and syncing it leaves the slot in the page cache, and one that died
        // before `sync_dir` leaves a rename that a power loss would undo. Make the loaded state
        // durable before removing the files that the other slot may need, and before a publish
        // overwrites that slot.
        superblock_file.sync_data()?;
        let active_seq = loaded.active.manifest.seq;
        let removed = leftovers(storage.list(dir)?, active_seq);
        for name in &removed {
            storage.remove(&dir.join(name))?;
        }
        storage.sync_dir(dir)?;
        if !removed.is_empty() {
            tracing::info!(?removed, "removed leftover metadata files");
        }
        tracing::info!(
            generation = loaded.active.generation,
            commit_epoch = loaded.active.commit_epoch,
            manifest_seq = active_seq,
            "store opened"
        );
        Ok(Self::assemble(
            storage,
            dir,
            superblock_file,
            Published {
                superblock: loaded.active,
                manifest: Arc::new(manifest),
            },
        ))
    }

    /// Loads the store in `dir` without changing anything on disk (for `fsck` and `dump`).
    pub fn load_read_only(storage: &dyn Storage, dir: &Path) -> Result<LoadedMeta> {
        let (_, superblock, manifest) = Self::load(storage, dir, false)?;
        let leftovers = leftovers(storage.list(dir)?, superblock.active.manifest.seq);
        Ok(LoadedMeta {
            superblock,
            manifest,
            leftovers,
        })
    }

    /// True if a store exists in `dir`.
    pub fn exists(storage: &dyn Storage, dir: &Path) -> Result<bool> {
        storage.exists(&dir.join(SUPERBLOCK_FILE))
    }

    fn load(
        storage: &dyn Storage,
        dir: &Path,
        writable: bool,
    ) -> Result<(Arc<dyn StorageFile>, LoadedSuperblock, Manifest)> {
        let path = dir.join(SUPERBLOCK_FILE);
        if !storage.exists(&path)? {
            return Err(no_store(path));
        }
        let file = if writable {
            storage.open(&path)?
        } else {
            storage.open_read_only(&path)?
        };
        let loaded = LoadedSuperblock::read(&*file)?;
        let manifest = read_manifest(storage, dir, &loaded.active.manifest)?;
        Ok((file, loaded, manifest))
    }

    fn assemble(
        storage: Arc<dyn Storage>,
        dir: &Path,
        superblock_file: Arc<dyn StorageFile>,
        published: Published,
    ) -> MetaStore {
        MetaStore {
            storage,
            dir: dir.to_path_buf(),
            superblock_file,
            current: ArcSwap::from_pointee(published),
            writer: Mutex::new(()),
            poison: Poison::new(),
        }
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The state last published, without taking a lock.
    pub fn current(&self) -> Arc<Published> {
        self.current.load_full()
    }

    /// True once a failed sync has stopped publishing.
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_poisoned()
    }

    /// Makes `update` the durable and published state (`design/DURABILITY.md`, "Publish").
    ///
    /// On error the published state is unchanged. If the error left the disk's state unknown (a
    /// failed sync), the store is poisoned: this call returns that error and every later call
    /// returns [`Error::Poisoned`]; after a crash, recovery finds the old or the new state.
    pub fn publish(&self, update: MetaUpdate) -> Result<()> {
        let _writer = self.writer.lock();
        self.poison.check()?;
        let prev = self.current.load_full();
        let MetaUpdate {
            commit_epoch,
            roots,
            manifest,
        } = update;
        if commit_epoch < prev.superblock.commit_epoch {
            return Err(Error::InvalidArgument(format!(
                "commit epoch {commit_epoch} is before the published {}",
                prev.superblock.commit_epoch
            )));
        }
        let generation = next(prev.superblock.generation, "superblock generation")?;
        let span = tracing::info_span!("meta.publish", generation, commit_epoch);
        let _enter = span.enter();

        // Everything is encoded (and so validated) before the first I/O, so an invalid update
        // changes nothing.
        let new_manifest = match manifest {
            Some(mut m) => {
                m.seq = next(prev.manifest.seq, "manifest seq")?;
                let bytes = m.encode()?;
                Some((m, bytes))
            }
            None => None,
        };
        let manifest_ref = match &new_manifest {
            Some((m, bytes)) => ManifestRef::of(m.seq, bytes),
            None => prev.superblock.manifest,
        };
        let superblock = Superblock {
            generation,
            commit_epoch,
            manifest: manifest_ref,
            roots,
        };
        let slot = superblock.encode()?;

        // Step 1: the new manifest, durable under its final name.
        if let Some((m, bytes)) = &new_manifest {
            let written =
                write_durably(&*self.storage, &self.dir, &manifest_file_name(m.seq), bytes);
            written.map_err(|f| self.fail(f))?;
        }
        // Step 2: the new slot, into the inactive position, then synced. A failed write may have
        // changed part of the slot, which the page cache could still write back later, so it
        // poisons just as a failed sync does.
        let slot_at = slot_offset(slot_index(generation));
        self.superblock_file
            .write_at(&slot, slot_at)
            .map_err(|e| self.fail(Failure::Unknown(e)))?;
        self.superblock_file
            .sync_data()
            .map_err(|e| self.fail(Failure::Unknown(e)))?;
        tracing::debug!(slot_at, "superblock slot synced");

        // Step 3: publish in memory.
        let manifest = match new_manifest {
            Some((m, _)) => Arc::new(m),
            None => prev.manifest.clone(),
        };
        self.current.store(Arc::new(Published {
            superblock,
            manifest,
        }));

        // Step 4: the previous manifest is no longer named by the slot in force. Its removal need
        // not be durable (open removes it again) and its failure harms nothing, so it is only
        // logged.
        if manifest_ref.seq != prev.manifest.seq {
            let old = self.dir.join(manifest_file_name(prev.manifest.seq));
            if let Err(e) = self.storage.remove(&old) {
                tracing::warn!(%e, "could not remove the previous manifest");
            }
        }
        tracing::debug!("published");
        Ok(())
    }

    /// Turns a failed step into the error to return, poisoning the store if the failure left the
    /// disk's state unknown.
    fn fail(&self, failure: Failure) -> Error {
        match failure {
            Failure::Clean(e) => e,
            Failure::Unknown(e) => {
                self.poison.poison(&e);
                e
            }
        }
    }
}

/// `n + 1`, or an error naming what ran out.
fn next(n: u64, what: &str) -> Result<u64> {
    n.checked_add(1)
        .ok_or_else(|| Error::InvalidArgument(format!("{what} is exhausted")))
}
