//! Write transactions: copy-on-write node versions, retirements and root changes, committed as
//! one unit or not at all.
//!
//! Invariants:
//! 1. Every slot a transaction allocates is either published by its commit or freed by its abort
//!    (explicit or on drop); every id it reserves is either published or given back.
//! 2. Nothing a transaction does is visible to others before its commit (new ids stay RESERVED,
//!    new versions sit in slots no entry names).
//! 3. Optimistic concurrency: the transaction remembers the version of every node it read or
//!    wrote; the commit fails with `Conflict` if another commit changed any of them since, so a
//!    read-modify-write never loses an update and committed transactions are serializable.

use std::ops::Range;

use super::durable::Inner;
use super::engine::{RootChange, Staged, StagedNode};
use super::options::CommitPolicy;
use super::spare::Spare;
use super::stats::Counters;
use crate::alloc::{Location, SLOT_BYTES_MAX, class_for_len};
use crate::codec::crc32c;
use crate::error::{Error, Result};
use crate::object_table::{IdMap, NodeId, Version};

/// A placed version, and where its bytes' copy for the record is in [`Staged::copies`].
type Placed = (Version, Option<Range<usize>>);

/// A write transaction. Dropping it without committing aborts it.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::Error;
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let mut tx = rt.begin();
/// let a = tx.alloc(1, b"a")?;
/// let b = tx.alloc(1, b"b")?;
/// tx.commit()?;
/// // A read-modify-write: the read joins the transaction's read set.
/// let mut tx = rt.begin();
/// let old = tx.read(a)?;
/// tx.write(a, &[&old[..], b"+"].concat())?;
/// tx.retire(b)?;
/// // Another commit changes `a` first: this one fails, and nothing of it is visible.
/// let mut other = rt.begin();
/// other.write(a, b"other")?;
/// other.commit()?;
/// assert!(matches!(tx.commit(), Err(Error::Conflict { id }) if id == a));
/// assert_eq!(rt.read(a)?, b"other");
/// assert_eq!(rt.read(b)?, b"b");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct WriteTxn<'rt> {
    rt: &'rt Inner,
    staged: Staged,
    index: IdMap<usize>,
    /// Birth of the version of each node this transaction read from the store.
    reads: IdMap<u64>,
    /// Bytes of small-node copies kept for the record so far.
    payload_bytes: usize,
    /// The copies passed `record_payload_bytes_max`: none is kept, and none travels.
    payloads_dropped: bool,
    done: bool,
}

impl<'rt> WriteTxn<'rt> {
    pub(crate) fn new(rt: &'rt Inner) -> Self {
        let spare = Spare::take();
        WriteTxn {
            rt,
            staged: spare.staged,
            index: spare.index,
            reads: spare.reads,
            payload_bytes: 0,
            payloads_dropped: false,
            done: false,
        }
    }

    /// The size class of a new version of `len` bytes, or why there is none.
    fn class_of(len: usize) -> Result<u8> {
        if len as u64 > SLOT_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a node holds at most {SLOT_BYTES_MAX} bytes, got {len}"
            )));
        }
        class_for_len(len as u64)
            .ok_or_else(|| Error::InvalidArgument(format!("no size class for {len} bytes")))
    }

    /// Places a new version of `len` bytes of `kind` in a fresh slot (for a large node, an
    /// extent of `len` rounded up to 4 KiB), written by `write` (given the slot and, when a
    /// copy travels in the record, the buffer to append the bytes to; it returns their
    /// checksum). The slot is given back if `write` fails or panics (invariant 1).
    fn place(
        &mut self,
        len: usize,
        kind: u8,
        write: impl FnOnce(Location, Option<&mut Vec<u8>>) -> Result<u32>,
    ) -> Result<Placed> {
        let class = Self::class_of(len)?;
        let location = self.rt.files.allocate(&self.rt.alloc, class, len as u64)?;
        let slot = FreshSlot {
            rt: self.rt,
            location: Some(location),
        };
        let keep_copy = self.copy_fits(len);
        let start = self.staged.copies.len();
        let copies = &mut self.staged.copies;
        let written = write(location, keep_copy.then_some(&mut *copies));
        if written.is_err() {
            copies.truncate(start);
        }
        let crc32c = written?;
        slot.keep();
        Counters::add(&self.rt.counters.node_bytes_written, len as u64);
        let small_copy = self.account_copy(len, keep_copy.then_some(start..start + len));
        let version = Version {
            location,
            len: len as u32,
            crc32c,
            kind,
            birth: 0,
        };
        Ok((version, small_copy))
    }

    /// Places a copy of `bytes` (`write_at` for a large one: no staging copy).
    fn place_bytes(&mut self, bytes: &[u8], kind: u8) -> Result<Placed> {
        let rt = self.rt;
        self.place(bytes.len(), kind, |location, copy_to| {
            rt.files.write(location, bytes)?;
            if let Some(copies) = copy_to {
                copies.extend_from_slice(bytes);
            }
            Ok(crc32c(bytes))
        })
    }

    /// Places a version that `fill` writes in its slot ([`DataFiles::fill`]).
    fn place_filled(
        &mut self,
        len: usize,
        kind: u8,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<Placed> {
        let rt = self.rt;
        self.place(len, kind, |location, copy_to| {
            rt.files.fill(location, len, fill, |written| {
                if let Some(copies) = copy_to {
                    copies.extend_from_slice(written);
                }
                crc32c(written)
            })
        })
    }

    /// Whether a copy of a `len`-byte node would travel in the record: small enough, and the
    /// transaction's copies stay within `record_payload_bytes_max`.
    fn copy_fits(&self, len: usize) -> bool {
        let options = &self.rt.options;
        !self.payloads_dropped
            && len <= options.balanced_payload_bytes_max
            && self.payload_bytes + len <= options.record_payload_bytes_max
    }

    /// Counts a placed node's copy (`copy`, if [`Self::copy_fits`] said so) and returns what
    /// travels. A small node that does not fit drops every copy: the nodes' bytes are then
    /// synced in their data files at commit (DURABILITY §6 C1).
    fn account_copy(&mut self, len: usize, copy: Option<Range<usize>>) -> Option<Range<usize>> {
        if copy.is_some() {
            self.payload_bytes += len;
            return copy;
        }
        if !self.payloads_dropped && len <= self.rt.options.balanced_payload_bytes_max {
            self.payloads_dropped = true;
            self.staged.copies = Vec::new();
            for n in &mut self.staged.nodes {
                n.small_copy = None;
            }
        }
        None
    }

    /// Creates a node holding `bytes`; its id is usable at once within this transaction and by
    /// everyone after the commit.
    pub fn alloc(&mut self, kind: u8, bytes: &[u8]) -> Result<NodeId> {
        self.rt.poison.check()?;
        let placed = self.place_bytes(bytes, kind)?;
        self.stage_new(placed)
    }

    /// Creates a node of `len` bytes that `fill` writes in place, in the new version's slot: a
    /// structure builds a page where it will live instead of building it aside and copying it.
    /// `fill` gets `len` zeroed bytes; what it leaves in them is the node. If `fill` panics,
    /// the slot is given back and the transaction stays usable.
    ///
    /// ```
    /// # fn main() -> vellum::Result<()> {
    /// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::InvalidArgument(e.to_string()))?;
    /// use vellum::runtime::{DurableRuntime, RuntimeOptions};
    /// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
    /// let rt = DurableRuntime::open(dir.path(), options)?;
    /// let mut txn = rt.begin();
    /// let id = txn.alloc_with(7, 4096, |page| {
    ///     page[..8].copy_from_slice(&42u64.to_le_bytes());
    /// })?;
    /// txn.commit()?;
    /// let bytes = rt.read(id)?;
    /// assert_eq!(bytes.len(), 4096);
    /// assert_eq!(bytes[..8], 42u64.to_le_bytes());
    /// assert!(bytes[8..].iter().all(|&b| b == 0));
    /// # Ok(())
    /// # }
    /// ```
    pub fn alloc_with(
        &mut self,
        kind: u8,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<NodeId> {
        self.rt.poison.check()?;
        let placed = self.place_filled(len, kind, fill)?;
        self.stage_new(placed)
    }

    /// Stages a placed version under a freshly reserved id (the slot is given back if no id can
    /// be reserved).
    fn stage_new(&mut self, (version, small_copy): Placed) -> Result<NodeId> {
        let id = match self.rt.table.reserve() {
            Ok(id) => id,
            Err(e) => {
                self.rt.alloc.release(version.location);
                return Err(e);
            }
        };
        self.index.insert(id, self.staged.nodes.len());
        self.staged.nodes.push(StagedNode {
            id,
            version,
            is_new: true,
            base_birth: None,
            small_copy,
            keep_birth: false,
        });
        Ok(id)
    }

    /// Writes a new version of `id` (copy-on-write: new bytes in a new slot, same id). If another
    /// transaction commits a version of `id` first, this commit fails with `Conflict`.
    pub fn write(&mut self, id: NodeId, bytes: &[u8]) -> Result<()> {
        self.rt.poison.check()?;
        let (kind, base_birth) = self.write_base(id)?;
        let placed = self.place_bytes(bytes, kind)?;
        self.stage_write(id, base_birth, placed);
        Ok(())
    }

    /// Writes a new version of `id` of `len` bytes that `fill` writes in place (as
    /// [`WriteTxn::alloc_with`]: zeroed bytes, the slot given back if `fill` panics). The
    /// previous version is untouched: `fill` builds the new one from scratch, reading the old
    /// one through a snapshot if it needs it.
    ///
    /// ```
    /// # fn main() -> vellum::Result<()> {
    /// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::InvalidArgument(e.to_string()))?;
    /// use vellum::runtime::{DurableRuntime, RuntimeOptions};
    /// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
    /// let rt = DurableRuntime::open(dir.path(), options)?;
    /// let mut txn = rt.begin();
    /// let id = txn.alloc(1, b"old")?;
    /// txn.commit()?;
    /// let mut txn = rt.begin();
    /// txn.write_with(id, 5, |b| b.copy_from_slice(b"newer"))?;
    /// txn.commit()?;
    /// assert_eq!(rt.read(id)?, b"newer");
    /// # Ok(())
    /// # }
    /// ```
    pub fn write_with(
        &mut self,
        id: NodeId,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<()> {
        self.rt.poison.check()?;
        let (kind, base_birth) = self.write_base(id)?;
        let placed = self.place_filled(len, kind, fill)?;
        self.stage_write(id, base_birth, placed);
        Ok(())
    }

    /// A hint that this transaction will soon write or read `id`: starts loading the node's
    /// object-table entry into the cache and returns at once. It changes nothing, so calling it
    /// for a node never written, or not at all, is harmless. A batch of writes to nodes spread
    /// over a large store runs faster when their ids are prefetched first: each write's lookup
    /// is a cache miss of its own otherwise, one after another.
    ///
    /// ```
    /// # fn main() -> vellum::Result<()> {
    /// # let dir = tempfile::tempdir().map_err(|e| vellum::Error::InvalidArgument(e.to_string()))?;
    /// use vellum::runtime::{DurableRuntime, RuntimeOptions};
    /// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
    /// let rt = DurableRuntime::open(dir.path(), options)?;
    /// let mut txn = rt.begin();
    /// let ids: Vec<_> = (0..4u8).map(|i| txn.alloc(1, &[i])).collect::<Result<_, _>>()?;
    /// txn.commit()?;
    /// let mut txn = rt.begin();
    /// ids.iter().for_each(|&id| txn.prefetch(id));
    /// for &id in &ids {
    ///     txn.write(id, b"new")?;
    /// }
    /// txn.commit()?;
    /// assert_eq!(rt.read(ids[3])?, b"new");
    /// # Ok(())
    /// # }
    /// ```
    pub fn prefetch(&self, id: NodeId) {
        self.rt.table.prefetch(id);
    }

    /// The kind of `id` and the birth of the version a write of it is based on: its staged
    /// version's (`None`: written in this transaction already), else the version this
    /// transaction read, else the latest commit's.
    fn write_base(&mut self, id: NodeId) -> Result<(u8, Option<u64>)> {
        if let Some(&i) = self.index.get(&id) {
            return Ok((self.staged.nodes[i].version.kind, None));
        }
        let guard = crossbeam_epoch::pin();
        let base = self.rt.table.get(id, &guard)?;
        drop(guard);
        Ok((base.kind, Some(*self.reads.entry(id).or_insert(base.birth))))
    }

    /// Stages a placed version of `id`: replacing the transaction's own earlier version (whose
    /// slot is freed), or as a new write based on `base_birth`.
    fn stage_write(&mut self, id: NodeId, base_birth: Option<u64>, (version, small_copy): Placed) {
        if let Some(&i) = self.index.get(&id) {
            let node = &mut self.staged.nodes[i];
            let old = std::mem::replace(&mut node.version, version);
            node.small_copy = small_copy;
            self.rt.alloc.release(old.location);
            return;
        }
        self.index.insert(id, self.staged.nodes.len());
        self.staged.nodes.push(StagedNode {
            id,
            version,
            is_new: false,
            base_birth,
            small_copy,
            keep_birth: false,
        });
    }

    /// Retires `id` at commit: it stays readable by snapshots older than the commit, and its
    /// space is reclaimed once none remains.
    pub fn retire(&mut self, id: NodeId) -> Result<()> {
        self.rt.poison.check()?;
        if let Some(i) = self.index.remove(&id) {
            let node = self.staged.nodes.swap_remove(i);
            if let Some(moved) = self.staged.nodes.get(i) {
                self.index.insert(moved.id, i);
            }
            self.rt.alloc.release(node.version.location);
            if node.is_new {
                // Created and retired in one transaction: it never existed.
                return self.rt.table.abort(id);
            }
            if let Some(base) = node.base_birth {
                self.staged.retires.push((id, base));
            }
            return Ok(());
        }
        if self.staged.retires.iter().any(|(r, _)| *r == id) {
            return Ok(());
        }
        let guard = crossbeam_epoch::pin();
        let base = self.rt.table.get(id, &guard)?;
        let base_birth = *self.reads.entry(id).or_insert(base.birth);
        self.staged.retires.push((id, base_birth));
        Ok(())
    }

    /// Names `id` as root `name` at commit (names: 1 to 47 bytes of UTF-8, at most 64 roots).
    /// A later change to the same name in this transaction replaces this one. Roots are names,
    /// not references: a root may name a node that is (or later becomes) retired, and reading
    /// through it then fails with `NodeNotFound`, since the id's tag no longer matches.
    pub fn set_root(&mut self, name: &str, id: NodeId) -> Result<()> {
        crate::meta::RootCatalog::check_entry(name, id.raw())?;
        self.change_root(RootChange::Set(name.to_owned(), id));
        Ok(())
    }

    /// Removes root `name` at commit.
    pub fn remove_root(&mut self, name: &str) -> Result<()> {
        crate::meta::RootCatalog::check_entry(name, 1)?;
        self.change_root(RootChange::Remove(name.to_owned()));
        Ok(())
    }

    /// Records a root change; the record carries at most one change per name, the last.
    fn change_root(&mut self, change: RootChange) {
        let name = |c: &RootChange| match c {
            RootChange::Set(n, _) | RootChange::Remove(n) => n.clone(),
        };
        let new_name = name(&change);
        self.staged.roots.retain(|c| name(c) != new_name);
        self.staged.roots.push(change);
    }

    /// The bytes of `id` as this transaction sees them: its own write, or the latest commit.
    /// The version read joins the transaction's read set: if another commit changes the node
    /// before this one commits, this commit fails with `Conflict`.
    pub fn read(&mut self, id: NodeId) -> Result<Vec<u8>> {
        // Pinned so the version read cannot be superseded, freed and rewritten while its bytes
        // are copied: any later commit's epoch is above the pinned one.
        let _pin = self.rt.snapshots.pin_with(|| self.rt.visible.epoch());
        let guard = crossbeam_epoch::pin();
        let version = match self.index.get(&id) {
            Some(&i) => self.staged.nodes[i].version,
            None => {
                let v = self.rt.table.get(id, &guard)?;
                let first = *self.reads.entry(id).or_insert(v.birth);
                if first != v.birth {
                    // Already changed since this transaction first read it: it cannot commit.
                    return Err(Error::Conflict { id });
                }
                v
            }
        };
        self.rt.read_version(&version, &guard)
    }

    /// Commits with the runtime's default policy; returns the commit epoch.
    pub fn commit(self) -> Result<u64> {
        let policy = self.rt.options.policy;
        self.commit_with(policy)
    }

    /// Commits with `policy`; returns the commit epoch once the policy holds. On error nothing
    /// of the transaction is visible and its reservations are released.
    pub fn commit_with(mut self, policy: CommitPolicy) -> Result<u64> {
        if self.staged.nodes.is_empty()
            && self.staged.retires.is_empty()
            && self.staged.roots.is_empty()
        {
            self.done = true;
            return Err(Error::InvalidArgument(
                "an empty transaction has nothing to commit".into(),
            ));
        }
        // Nodes read but neither written nor retired are validated at commit too.
        self.staged.reads = self
            .reads
            .iter()
            .filter(|(id, _)| {
                !self.index.contains_key(id) && !self.staged.retires.iter().any(|(r, _)| r == *id)
            })
            .map(|(id, birth)| (*id, *birth))
            .collect();
        let span = tracing::debug_span!("commit", ?policy, nodes = self.staged.nodes.len());
        let _enter = span.enter();
        match self.rt.engine().commit(&self.staged, policy) {
            Ok(epoch) => {
                self.done = true;
                self.rt.after_commit();
                Ok(epoch)
            }
            Err(e) => {
                if matches!(e, Error::Conflict { .. }) {
                    Counters::add(&self.rt.counters.conflicts, 1);
                }
                Err(e)
            }
        }
    }

    /// Gives everything back; nothing becomes visible.
    pub fn abort(mut self) {
        self.release();
    }

    fn release(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        // After a failed sync the commit may have been applied in memory; its slots must not be
        // freed. A poisoned runtime accepts no writes, and reopening recovers from disk.
        if self.rt.poison.is_poisoned() {
            return;
        }
        for n in self.staged.nodes.drain(..) {
            self.rt.alloc.release(n.version.location);
            if n.is_new {
                self.rt.table.abort_reservation(n.id);
            }
        }
        Counters::add(&self.rt.counters.aborts, 1);
    }
}

impl Drop for WriteTxn<'_> {
    fn drop(&mut self) {
        self.release();
        Spare {
            staged: std::mem::take(&mut self.staged),
            index: std::mem::take(&mut self.index),
            reads: std::mem::take(&mut self.reads),
        }
        .keep();
    }
}

/// A slot allocated for a version being written: given back on drop unless kept, so a failed
/// or panicking write leaks nothing (invariant 1).
struct FreshSlot<'rt> {
    rt: &'rt Inner,
    location: Option<Location>,
}

impl FreshSlot<'_> {
    /// The version was written: the transaction owns the slot now.
    fn keep(mut self) {
        self.location = None;
    }
}

impl Drop for FreshSlot<'_> {
    fn drop(&mut self) {
        if let Some(location) = self.location.take() {
            self.rt.alloc.release(location);
        }
    }
}
