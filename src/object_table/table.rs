//! The sharded object table: NodeId → entry, with lock-free reads.
//!
//! Invariants:
//! 1. Entries never move: a shard's entries live in chunks of 64, 128, 256, … entries (chunk k
//!    holds `64 << k`), each allocated once and kept until the table drops, so a reader's
//!    reference to an entry stays valid while entries are added. The first chunks are small so a
//!    small table's entries sit on few pages across all 64 shards.
//! 2. A handle is on its shard's free list only while its entry is FREE; a free-list pop is
//!    followed by a successful `reserve` of that entry (nothing else reserves FREE entries).
//! 3. Allocation takes only the chosen shard's free-list lock; each thread walks the shards
//!    round-robin from a per-thread starting point, so threads rarely meet on one lock.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_epoch::Guard;
use parking_lot::Mutex;

use super::node_id::{HANDLE_MAX, NodeId, SHARDS};
use super::slot::{EntryState, EntryView, LiveWords, Slot};
use super::version::Version;
use crate::error::{Error, Result};

const CHUNK0_SHIFT: u32 = 6;
const CHUNK0_SLOTS: u64 = 1 << CHUNK0_SHIFT;
/// Chunks per shard: enough for every handle the id can name.
const CHUNKS: usize = 37;
// The chunks together hold every handle up to HANDLE_MAX.
const _: () = assert!(CHUNK0_SLOTS * ((1 << CHUNKS) - 1) > HANDLE_MAX);

/// Chunk number and index within it of a handle.
fn chunk_of(handle: u64) -> (usize, usize) {
    let k = 63 - ((handle >> CHUNK0_SHIFT) + 1).leading_zeros();
    let first = CHUNK0_SLOTS * ((1u64 << k) - 1);
    (k as usize, (handle - first) as usize)
}

#[derive(Debug)]
struct Shard {
    chunks: [OnceLock<Box<[Slot]>>; CHUNKS],
    free: Mutex<Vec<u64>>,
    next_handle: AtomicU64,
}

impl Shard {
    fn new() -> Self {
        Shard {
            chunks: std::array::from_fn(|_| OnceLock::new()),
            free: Mutex::new(Vec::new()),
            next_handle: AtomicU64::new(0),
        }
    }

    /// The entry of `handle`, if its chunk exists.
    #[inline]
    fn slot(&self, handle: u64) -> Option<&Slot> {
        let (k, i) = chunk_of(handle);
        self.chunks.get(k)?.get()?.get(i)
    }

    /// The entry of `handle`, creating its chunk if needed; an error instead of an abort when the
    /// chunk cannot be allocated (recovery calls this with handles read from disk, and a corrupt
    /// one could ask for a chunk of 2^41 entries).
    fn slot_or_grow_checked(&self, handle: u64) -> Result<Option<&Slot>, usize> {
        let (k, i) = chunk_of(handle);
        let Some(cell) = self.chunks.get(k) else {
            return Ok(None);
        };
        if let Some(chunk) = cell.get() {
            return Ok(chunk.get(i));
        }
        let n = (CHUNK0_SLOTS << k) as usize;
        let mut slots: Vec<Slot> = Vec::new();
        slots.try_reserve_exact(n).map_err(|_| n)?;
        slots.extend(std::iter::repeat_with(Slot::default).take(n));
        // Another thread may have installed the chunk meanwhile; then ours is dropped.
        Ok(cell.get_or_init(|| slots.into_boxed_slice()).get(i))
    }

    /// The entry of `handle`, creating its chunk if needed.
    fn slot_or_grow(&self, handle: u64) -> Option<&Slot> {
        let (k, i) = chunk_of(handle);
        let chunk = self.chunks.get(k)?.get_or_init(|| {
            let n = (CHUNK0_SLOTS << k) as usize;
            std::iter::repeat_with(Slot::default).take(n).collect()
        });
        chunk.get(i)
    }
}

thread_local! {
    static NEXT_SHARD: Cell<usize> = Cell::new({
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        std::thread::current().id().hash(&mut h);
        h.finish() as usize % SHARDS
    });
}

/// The object table.
#[derive(Debug)]
pub struct ObjectTable {
    /// A fixed-size array, so indexing by a NodeId's shard needs no bounds check.
    shards: Box<[Shard; SHARDS]>,
}

impl Default for ObjectTable {
    fn default() -> Self {
        Self::new()
    }
}

/// The entry recovery restores `id` into, growing the table; a clear error if the handle is out
/// of range or its chunk does not fit in memory (a corrupt id, most likely).
fn restore_slot(shard: &Shard, id: NodeId) -> Result<&Slot> {
    match shard.slot_or_grow_checked(id.handle()) {
        Ok(Some(slot)) => Ok(slot),
        Ok(None) => Err(not_found(id, "handle out of range")),
        Err(entries) => Err(Error::InvalidArgument(format!(
            "node {id}: its handle needs an object-table chunk of {entries} entries, more memory \
             than can be allocated (a corrupt id?)"
        ))),
    }
}

fn not_found(id: NodeId, reason: &'static str) -> Error {
    Error::NodeNotFound { id, reason }
}

/// Explains why `view` does not fit an operation on `id`.
fn refusal(id: NodeId, view: &EntryView) -> Error {
    let reason = if view.tag != id.tag() {
        "stale id: the handle was freed (tag mismatch)"
    } else {
        match view.state {
            EntryState::Free => "stale id: the handle is free",
            EntryState::Reserved => "the node is reserved and not committed",
            EntryState::Live => "the node is live",
            EntryState::Retired => "the node is retired",
        }
    };
    not_found(id, reason)
}

impl ObjectTable {
    /// An empty table.
    pub fn new() -> Self {
        ObjectTable {
            shards: Box::new(std::array::from_fn(|_| Shard::new())),
        }
    }

    fn slot(&self, id: NodeId) -> Result<&Slot> {
        self.slot_if_issued(id)
            .ok_or_else(|| not_found(id, "the handle was never issued"))
    }

    #[inline]
    fn slot_if_issued(&self, id: NodeId) -> Option<&Slot> {
        self.shards[id.shard() % SHARDS].slot(id.handle())
    }

    /// Reserves a fresh id (FREE → RESERVED). The node is invisible until published.
    pub fn reserve(&self) -> Result<NodeId> {
        let start = NEXT_SHARD.with(|c| {
            let s = c.get();
            c.set((s + 1) % SHARDS);
            s
        });
        for step in 0..SHARDS {
            let shard_no = (start + step) % SHARDS;
            let shard = &self.shards[shard_no];
            let handle = match shard.free.lock().pop() {
                Some(h) => h,
                None => shard.next_handle.fetch_add(1, Ordering::Relaxed),
            };
            if handle > HANDLE_MAX {
                continue;
            }
            let Some(slot) = shard.slot_or_grow(handle) else {
                continue;
            };
            if let Some(tag) = slot.reserve()
                && let Some(id) = NodeId::new(shard_no, handle, tag)
            {
                return Ok(id);
            }
        }
        Err(Error::InvalidArgument("the object table is full".into()))
    }

    /// RESERVED → LIVE with the node's first version.
    pub fn publish(&self, id: NodeId, version: Version) -> Result<()> {
        self.slot(id)?
            .publish(id.tag(), version)
            .map_err(|v| refusal(id, &v))
    }

    /// RESERVED → FREE: gives an uncommitted reservation back.
    pub fn abort(&self, id: NodeId) -> Result<()> {
        self.slot(id)?
            .abort(id.tag())
            .map_err(|v| refusal(id, &v))?;
        self.shards[id.shard()].free.lock().push(id.handle());
        Ok(())
    }

    /// [`ObjectTable::abort`] for a reservation its owner gives up (a failed write, a rolled
    /// back transaction): it cannot fail unless the id was not this owner's reservation, an
    /// internal bug, which is logged loudly (the handle then stays reserved until reopen).
    pub fn abort_reservation(&self, id: NodeId) {
        if let Err(e) = self.abort(id) {
            tracing::error!(%id, %e, "giving back a reservation failed (internal bug)");
        }
    }

    /// Makes `version` the live node's current version; returns the one it replaced, which
    /// stays readable by older snapshots until trimmed.
    pub fn update(&self, id: NodeId, version: Version, guard: &Guard) -> Result<Option<Version>> {
        self.slot(id)?
            .update(id.tag(), version, guard)
            .map_err(|v| refusal(id, &v))
    }

    /// LIVE → RETIRED at commit epoch `epoch`.
    pub fn retire(&self, id: NodeId, epoch: u64) -> Result<()> {
        self.slot(id)?
            .retire(id.tag(), epoch)
            .map_err(|v| refusal(id, &v))
    }

    /// RETIRED → FREE: the handle goes back to the free list with a new tag. Returns every version
    /// the node still referenced, whose slots the caller frees.
    pub fn reclaim(&self, id: NodeId, guard: &Guard) -> Result<Vec<Version>> {
        let versions = self
            .slot(id)?
            .reclaim(id.tag(), guard)
            .map_err(|v| refusal(id, &v))?;
        self.shards[id.shard()].free.lock().push(id.handle());
        Ok(versions)
    }

    /// Unlinks the older versions no snapshot at `min_epoch` or later can see; returns them.
    pub fn trim(&self, id: NodeId, min_epoch: u64, guard: &Guard) -> Result<Vec<Version>> {
        self.slot(id)?
            .trim(id.tag(), min_epoch, guard)
            .map_err(|v| refusal(id, &v))
    }

    /// The current version of a LIVE node. The lookup fast path: inlined, with the reasons for a
    /// refusal worked out out of line.
    #[inline]
    pub fn get(&self, id: NodeId, guard: &Guard) -> Result<Version> {
        match self
            .slot_if_issued(id)
            .and_then(|s| s.live_version(id.tag()))
        {
            Some(v) => Ok(v),
            None => Err(self.get_refusal(id, guard)),
        }
    }

    /// The words of `id`'s current version if the node is LIVE and that version was born at or
    /// before `epoch`; `None` otherwise (the caller takes a slower path that explains or walks
    /// older versions).
    #[inline]
    pub(crate) fn live_words(&self, id: NodeId, epoch: u64) -> Option<LiveWords> {
        self.slot_if_issued(id)?.live_words(id.tag(), epoch)
    }

    /// Why [`ObjectTable::get`] found no live version of `id`.
    #[cold]
    #[inline(never)]
    fn get_refusal(&self, id: NodeId, guard: &Guard) -> Error {
        match self.slot(id) {
            Ok(slot) => match slot.live_version(id.tag()) {
                // Became live between the two looks: report what the first look saw.
                Some(_) => not_found(id, "the node was not live when looked up"),
                None => refusal(id, &slot.view(guard)),
            },
            Err(e) => e,
        }
    }

    /// The version a snapshot at `epoch` sees: `Ok(None)` if the node did not exist (or was
    /// retired) at that epoch; an error if the id is stale.
    pub fn get_at(&self, id: NodeId, epoch: u64, guard: &Guard) -> Result<Option<Version>> {
        let (tag, version) = self.slot(id)?.version_at(epoch, guard);
        if tag != id.tag() {
            return Err(not_found(
                id,
                "stale id: the handle was freed (tag mismatch)",
            ));
        }
        Ok(version)
    }

    /// A consistent copy of the entry `id` names (whatever its tag), for diagnostics.
    pub fn view(&self, id: NodeId, guard: &Guard) -> Result<EntryView> {
        Ok(self.slot(id)?.view(guard))
    }

    /// The older versions of `id`, newest first.
    pub fn older_versions(&self, id: NodeId, guard: &Guard) -> Result<Vec<Version>> {
        Ok(self.slot(id)?.older_versions(guard))
    }

    /// Recovery: installs a committed node at exactly `id` (its entry must be FREE).
    pub fn restore(&self, id: NodeId, version: Version, retire_epoch: Option<u64>) -> Result<()> {
        let shard = &self.shards[id.shard() % SHARDS];
        let slot = restore_slot(shard, id)?;
        slot.restore(id.tag(), version, retire_epoch)
            .map_err(|v| refusal(id, &v))?;
        shard
            .next_handle
            .fetch_max(id.handle() + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Recovery: records that the FREE handle of `id` must issue `id`'s tag next (a checkpoint's
    /// free entry).
    pub fn restore_free(&self, id: NodeId) -> Result<()> {
        let shard = &self.shards[id.shard() % SHARDS];
        let slot = restore_slot(shard, id)?;
        slot.restore_free(id.tag()).map_err(|v| refusal(id, &v))?;
        shard
            .next_handle
            .fetch_max(id.handle() + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Calls `f` for every handle that was ever used (its entry is not FREE, or its tag is not 0),
    /// with the entry's view, in shard and handle order.
    pub fn for_each_used(&self, guard: &Guard, mut f: impl FnMut(usize, u64, EntryView)) {
        for (shard_no, shard) in self.shards.iter().enumerate() {
            let high = shard.next_handle.load(Ordering::Acquire);
            for h in 0..high {
                let Some(slot) = shard.slot(h) else { continue };
                let view = slot.view(guard);
                if view.state != EntryState::Free || view.tag != 0 {
                    f(shard_no, h, view);
                }
            }
        }
    }

    /// Recovery: after every `restore`, puts each unused handle below a shard's high-water mark
    /// on its free list.
    pub fn finish_restore(&self, guard: &Guard) {
        for shard in self.shards.iter() {
            let high = shard.next_handle.load(Ordering::Relaxed);
            let mut free = shard.free.lock();
            free.clear();
            // Highest handles first at the bottom, so the lowest are reused first.
            for h in (0..high).rev() {
                if shard
                    .slot(h)
                    .is_none_or(|s| s.view(guard).state == EntryState::Free)
                {
                    free.push(h);
                }
            }
        }
    }

    /// Calls `f` for every entry that is not FREE, with the id it currently answers to.
    pub fn for_each(&self, guard: &Guard, mut f: impl FnMut(NodeId, EntryView)) {
        for (shard_no, shard) in self.shards.iter().enumerate() {
            let high = shard.next_handle.load(Ordering::Acquire);
            for h in 0..high {
                let Some(slot) = shard.slot(h) else { continue };
                let view = slot.view(guard);
                if view.state == EntryState::Free {
                    continue;
                }
                if let Some(id) = NodeId::new(shard_no, h, view.tag) {
                    f(id, view);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restoring_an_absurd_handle_fails_instead_of_aborting() {
        let table = ObjectTable::new();
        let id = NodeId::new(3, HANDLE_MAX, 1).unwrap();
        let v = Version {
            location: crate::alloc::Location {
                class: 0,
                file: 0,
                offset: 0,
            },
            len: 1,
            crc32c: 0,
            kind: 0,
            birth: 1,
        };
        let err = table.restore(id, v, None).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("object-table chunk")),
            "{err}"
        );
        assert!(table.restore_free(id).is_err());
        // An ordinary handle still restores.
        let ok = NodeId::new(3, 70, 1).unwrap();
        table.restore(ok, v, None).unwrap();
        assert_eq!(table.get(ok, &crossbeam_epoch::pin()).unwrap(), v);
    }

    #[test]
    fn chunk_math() {
        assert_eq!(chunk_of(0), (0, 0));
        assert_eq!(chunk_of(63), (0, 63));
        assert_eq!(chunk_of(64), (1, 0));
        assert_eq!(chunk_of(64 + 127), (1, 127));
        assert_eq!(chunk_of(64 * 3), (2, 0));
        let (k, i) = chunk_of(HANDLE_MAX);
        assert!(k < CHUNKS);
        assert!((i as u64) < CHUNK0_SLOTS << k);
    }
}
