//! Snapshots: a consistent view of the store at one commit epoch, borrowed from the runtime or
//! owning a share of it.
//!
//! Invariants:
//! 1. A snapshot's epoch is pinned in the snapshot registry before the snapshot can read
//!    anything, and stays pinned until the snapshot drops (`snapshots.rs`, invariants 1–4): no
//!    version visible at the epoch is freed meanwhile, however many commits follow.
//! 2. Its roots are the catalog as of its epoch: the epoch and the roots are read as a matching
//!    pair (`Visible::epoch_and_roots`) inside the pin's critical section, and kept in the
//!    registry's entry for the epoch while the snapshot holds it (`snapshots.rs`, invariant 6);
//!    the snapshot fetches them from there the first time it is asked for a root.
//! 3. A borrowed snapshot (`Snapshot<'rt>`) holds a reference to the runtime and costs no
//!    reference count; an owned one (`Snapshot<'static>`, [`OwnedSnapshot`]) holds an `Arc` of
//!    the runtime's shared state, so it keeps that state (mapped files, the directory lock)
//!    alive until it drops, even past the runtime handle's close. Nothing frees a slot once the
//!    handle is closed (its background threads are stopped and no transaction outlives it), so
//!    its reads stay valid.
//! 4. Reads resolve through the object table at the pinned epoch under a crossbeam epoch guard,
//!    held for one read ([`Snapshot::read`], [`Snapshot::with_node`]) or for a batch
//!    ([`SnapshotReader`]): the guard keeps a mapped window alive while its bytes are borrowed,
//!    the pin keeps the slot from being freed and rewritten.

use std::borrow::Cow;
use std::sync::{Arc, OnceLock};

use crossbeam_epoch::Guard;

use super::durable::Inner;
use super::snapshots::PinSlot;
use crate::error::Result;
use crate::meta::RootCatalog;
use crate::object_table::NodeId;
use crate::resolve::resolve_at;

/// A consistent view of the store at one commit epoch. Readers never block writers.
///
/// [`DurableRuntime::snapshot`](super::DurableRuntime::snapshot) borrows the runtime (the
/// cheapest, for a read or a batch); [`DurableRuntime::snapshot_owned`]
/// (super::DurableRuntime::snapshot_owned) and [`Snapshot::into_owned`] give a
/// `Snapshot<'static>` ([`OwnedSnapshot`]) that can be stored beside an `Arc<DurableRuntime>`,
/// for a long scan or a session. Either keeps every version visible at its epoch from being
/// reclaimed until it drops, so hold one only as long as it is needed.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let mut tx = rt.begin();
/// let id = tx.alloc(1, b"page")?;
/// tx.set_root("index", id)?;
/// let epoch = tx.commit()?;
/// let snap = rt.snapshot();
/// assert_eq!(snap.epoch(), epoch);
/// let root = snap.root("index").expect("named at this epoch");
/// // Borrow the bytes for the call, checksum verified, without copying them.
/// let len = snap.with_node(root, |bytes| bytes.len())?;
/// assert_eq!(len, Some(4));
/// // A snapshot that outlives the borrow: `into_owned` keeps the same epoch.
/// let owned = snap.into_owned();
/// assert_eq!(owned.epoch(), epoch);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct Snapshot<'rt> {
    inner: Cow<'rt, Arc<Inner>>,
    slot: PinSlot,
    /// The roots as of the epoch, fetched from the registry on first use (invariant 2).
    roots: OnceLock<Option<Arc<RootCatalog>>>,
}

/// A snapshot that owns a share of the runtime's state rather than borrowing the runtime.
pub type OwnedSnapshot = Snapshot<'static>;

impl<'rt> Snapshot<'rt> {
    /// Pins the newest visible epoch of `inner` (invariants 1 and 2).
    pub(super) fn take(inner: Cow<'rt, Arc<Inner>>) -> Self {
        let slot = inner.snapshots.pin_snapshot(&inner.visible);
        Snapshot {
            inner,
            slot,
            roots: OnceLock::new(),
        }
    }

    /// This snapshot, owning a share of the runtime's state instead of borrowing the runtime
    /// (invariant 3), at the same epoch: the epoch stays pinned throughout.
    pub fn into_owned(self) -> OwnedSnapshot {
        // A second reader of the same epoch in the same stripe, registered while this one
        // still holds it (`SnapshotRegistry::repin`): no reclamation can pass the epoch between.
        let slot = self.inner.snapshots.repin(self.slot);
        Snapshot {
            inner: Cow::Owned(Arc::clone(&self.inner)),
            slot,
            roots: self.roots.clone(),
        }
    }

    /// The commit epoch this snapshot sees.
    pub fn epoch(&self) -> u64 {
        self.slot.epoch
    }

    /// The bytes of `id` as of this snapshot: `None` if it did not exist (or was retired) at the
    /// snapshot's epoch; an error for a stale id or bytes that fail their checksum.
    pub fn read(&self, id: NodeId) -> Result<Option<Vec<u8>>> {
        self.with_node(id, <[u8]>::to_vec)
    }

    /// Calls `f` with the bytes of `id` without copying them (checksum verified first).
    pub fn with_node<R>(&self, id: NodeId, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        with_node_at(&self.inner, id, self.slot.epoch, f)
    }

    /// The node root `name` named at this snapshot's epoch.
    pub fn root(&self, name: &str) -> Option<NodeId> {
        let roots = self
            .roots
            .get_or_init(|| self.inner.snapshots.roots(self.slot));
        roots
            .as_ref()
            .and_then(|r| r.get(name))
            .and_then(NodeId::from_raw)
    }

    /// A reader for a batch of reads: it holds one epoch guard, so each read skips pinning.
    /// Keep it for a batch, not for long: a held guard delays the unmapping of evicted windows
    /// and the freeing of unlinked versions.
    pub fn reader(&self) -> SnapshotReader<'_> {
        SnapshotReader {
            inner: &self.inner,
            epoch: self.slot.epoch,
            guard: crossbeam_epoch::pin(),
        }
    }
}

impl Drop for Snapshot<'_> {
    fn drop(&mut self) {
        self.inner.snapshots.unpin(self.slot);
    }
}

/// Calls `f` with the bytes of `id` as of `epoch`, checksum verified, under a guard of its own.
/// The caller holds a pin at `epoch` (invariant 4).
#[inline]
pub(super) fn with_node_at<R>(
    inner: &Inner,
    id: NodeId,
    epoch: u64,
    f: impl FnOnce(&[u8]) -> R,
) -> Result<Option<R>> {
    let guard = crossbeam_epoch::pin();
    let out = match resolve_at(&inner.table, &inner.files, id, epoch, &guard)? {
        Some(r) => Some(f(inner.checked(id, epoch, r, &guard)?)),
        None => None,
    };
    drop(guard);
    inner.files.collect_evicted();
    Ok(out)
}

/// Reads of one snapshot under one epoch guard (see [`Snapshot::reader`]).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let mut tx = rt.begin();
/// let ids = (0..100u32).map(|i| tx.alloc(1, &i.to_le_bytes())).collect::<Result<Vec<_>, _>>()?;
/// tx.commit()?;
/// let snap = rt.snapshot();
/// let reader = snap.reader();
/// let mut sum = 0u64;
/// for id in &ids {
///     let bytes = reader.get(*id)?.expect("committed before the snapshot");
///     sum += u64::from(u32::from_le_bytes(bytes.try_into()?));
/// }
/// assert_eq!(sum, 4950);
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct SnapshotReader<'s> {
    inner: &'s Inner,
    epoch: u64,
    guard: Guard,
}

impl Drop for SnapshotReader<'_> {
    fn drop(&mut self) {
        // Windows this reader's reads evicted could not be unmapped under its guard: unmap them
        // now, unpinned (`DataFiles::collect_evicted`), when more than the budget is mapped.
        let files = &self.inner.files;
        if files.mapped_bytes() > files.mapped_bytes_max() {
            self.guard.repin_after(|| files.collect_evicted());
        }
    }
}

impl SnapshotReader<'_> {
    /// Borrows the bytes of `id` as of the snapshot, checksum verified: `None` if it did not
    /// exist (or was retired) at the snapshot's epoch.
    #[inline]
    pub fn get(&self, id: NodeId) -> Result<Option<&[u8]>> {
        let (inner, epoch) = (self.inner, self.epoch);
        match resolve_at(&inner.table, &inner.files, id, epoch, &self.guard)? {
            Some(r) => inner.checked(id, epoch, r, &self.guard).map(Some),
            None => Ok(None),
        }
    }

    /// Like [`SnapshotReader::get`] but without checking the bytes against their checksum, for
    /// callers that check their own (FasterLog entries carry a CRC32C each) or read a small part
    /// of a large node: checking costs a pass over the whole node. The bytes are what the store
    /// holds; corruption in them goes unnoticed here.
    #[inline]
    pub fn get_unverified(&self, id: NodeId) -> Result<Option<&[u8]>> {
        let (inner, epoch) = (self.inner, self.epoch);
        Ok(resolve_at(&inner.table, &inner.files, id, epoch, &self.guard)?.map(|r| r.bytes))
    }
}
