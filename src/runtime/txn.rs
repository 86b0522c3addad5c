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

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::durable::Inner;
use super::engine::{RootChange, Staged, StagedNode};
use super::options::CommitPolicy;
use super::stats::Counters;
use crate::alloc::{SLOT_BYTES_MAX, class_for_len};
use crate::codec::crc32c;
use crate::error::{Error, Result};
use crate::object_table::{NodeId, Version};

/// Hashes node ids with one multiply. Transactions look ids up on every read and write, and the
/// default SipHash would cost more than the rest of such a lookup; ids are not attacker-chosen
/// keys (the object table issues them).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

type IdMap<V> = HashMap<NodeId, V, BuildHasherDefault<IdHasher>>;

/// A write transaction. Dropping it without committing aborts it.
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
        WriteTxn {
            rt,
            staged: Staged::default(),
            index: IdMap::default(),
            reads: IdMap::default(),
            payload_bytes: 0,
            payloads_dropped: false,
            done: false,
        }
    }

    /// Writes `bytes` into a fresh slot; returns the version (birth set at commit).
    fn place(&mut self, bytes: &[u8], kind: u8) -> Result<Version> {
        if bytes.len() as u64 > SLOT_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a node holds at most {SLOT_BYTES_MAX} bytes, got {}",
                bytes.len()
            )));
        }
        let class = class_for_len(bytes.len() as u64).ok_or_else(|| {
            Error::InvalidArgument(format!("no size class for {} bytes", bytes.len()))
        })?;
        let location = self
            .rt
            .files
            .allocate(&self.rt.alloc, class, bytes.len() as u64)?;
        if let Err(e) = self.rt.files.write(location, bytes) {
            self.rt.alloc.release(location);
            return Err(e);
        }
        Counters::add(&self.rt.counters.node_bytes_written, bytes.len() as u64);
        Ok(Version {
            location,
            len: bytes.len() as u32,
            crc32c: crc32c(bytes),
            kind,
            birth: 0,
        })
    }

    /// A copy of `bytes` to carry in the record, if small enough and the transaction's copies
    /// stay within `record_payload_bytes_max`; past that, every copy is dropped and the nodes'
    /// bytes are synced in their data files at commit (DURABILITY §6 C1).
    fn small_copy(&mut self, bytes: &[u8]) -> Option<Vec<u8>> {
        let options = &self.rt.options;
        if self.payloads_dropped || bytes.len() > options.balanced_payload_bytes_max {
            return None;
        }
        self.payload_bytes += bytes.len();
        if self.payload_bytes > options.record_payload_bytes_max {
            self.payloads_dropped = true;
            for n in &mut self.staged.nodes {
                n.small_bytes = None;
            }
            return None;
        }
        Some(bytes.to_vec())
    }

    /// Creates a node holding `bytes`; its id is usable at once within this transaction and by
    /// everyone after the commit.
    pub fn alloc(&mut self, kind: u8, bytes: &[u8]) -> Result<NodeId> {
        self.rt.poison.check()?;
        let id = self.rt.table.reserve()?;
        let version = match self.place(bytes, kind) {
            Ok(v) => v,
            Err(e) => {
                self.rt.table.abort_reservation(id);
                return Err(e);
            }
        };
        let small_bytes = self.small_copy(bytes);
        self.index.insert(id, self.staged.nodes.len());
        self.staged.nodes.push(StagedNode {
            id,
            version,
            is_new: true,
            base_birth: None,
            small_bytes,
            keep_birth: false,
        });
        Ok(id)
    }

    /// Writes a new version of `id` (copy-on-write: new bytes in a new slot, same id). If another
    /// transaction commits a version of `id` first, this commit fails with `Conflict`.
    pub fn write(&mut self, id: NodeId, bytes: &[u8]) -> Result<()> {
        self.rt.poison.check()?;
        if let Some(&i) = self.index.get(&id) {
            let kind = self.staged.nodes[i].version.kind;
            let version = self.place(bytes, kind)?;
            let old = std::mem::replace(&mut self.staged.nodes[i].version, version);
            self.rt.alloc.release(old.location);
            self.staged.nodes[i].small_bytes = self.small_copy(bytes);
            return Ok(());
        }
        let guard = crossbeam_epoch::pin();
        let base = self.rt.table.get(id, &guard)?;
        drop(guard);
        // The version this transaction read (if it did) is what the write is based on.
        let base_birth = *self.reads.entry(id).or_insert(base.birth);
        let version = self.place(bytes, base.kind)?;
        let small_bytes = self.small_copy(bytes);
        self.index.insert(id, self.staged.nodes.len());
        self.staged.nodes.push(StagedNode {
            id,
            version,
            is_new: false,
            base_birth: Some(base_birth),
            small_bytes,
            keep_birth: false,
        });
        Ok(())
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
    }
}
