//! The sharded object table: NodeId → entry, with lock-free reads.
//!
//! Invariants:
//! 1. Entries never move: a shard's entries live in chunks of 64, 128, 256, … entries (chunk k
//!    holds `64 << k`), each allocated once and kept until the table drops, so a reader's
//!    reference to an entry stays valid while entries are added. The first chunks are small so a
//!    small table's entries sit on few pages across all 64 shards.
//! 2. A handle is on its shard's free list only while its entry is FREE and not exhausted; a
//!    free-list pop is followed by a successful `reserve` of that entry (nothing else reserves
//!    FREE entries). An exhausted handle (freed while carrying `TAG_MAX`) is never pushed back,
//!    so `reserve` never hands it out again and no id is issued twice (`node_id.rs`, invariant 2).
//! 3. Allocation takes only the chosen shard's free-list lock; each thread walks the shards
//!    round-robin from a per-thread starting point, so threads rarely meet on one lock.

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_epoch::Guard;
use parking_lot::Mutex;

use super::node_id::TAG_MAX;
use super::node_id::{HANDLE_MAX, NodeId, SHARDS};
use super::slot::{EntryState, EntryView, LiveWords, Reuse, Slot};
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
    let reason = if view.exhausted {
        "stale id: the handle issued every tag and is retired for good"
    } else if view.tag != id.tag() {
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
        self.reserve_from(start)
    }

    /// [`ObjectTable::reserve`] trying shard `start` first, then the next ones round-robin (tests
    /// use it to reuse one handle without going round every shard).
    pub(crate) fn reserve_from(&self, start: usize) -> Result<NodeId> {
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

    /// RESERVED → FREE: gives an uncommitted reservation back. The handle is reused with the
    /// next tag, or, if `id` carried the last one, retired for good (invariant 2).
    pub fn abort(&self, id: NodeId) -> Result<()> {
        let reuse = self
            .slot(id)?
            .abort(id.tag())
            .map_err(|v| refusal(id, &v))?;
        self.release(id, reuse);
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

    /// Puts a freed handle back on its shard's free list unless it is exhausted (invariant 2).
    fn release(&self, id: NodeId, reuse: Reuse) {
        match reuse {
            Reuse::Reusable => self.shards[id.shard()].free.lock().push(id.handle()),
            Reuse::Exhausted => {
                tracing::debug!(%id, "handle issued its last tag and is retired for good");
            }
        }
    }

    /// Makes `version` the live node's current version, by the commit at its birth; returns the
    /// one it replaced, which stays readable by older snapshots until trimmed.
    pub fn update(&self, id: NodeId, version: Version, guard: &Guard) -> Result<Option<Version>> {
        self.slot(id)?
            .update(id.tag(), version, version.birth, guard)
            .map_err(|v| refusal(id, &v))
    }

    /// Makes `version`, the current version's bytes moved to a new slot (same birth), the live
    /// node's current version, by the move's commit at `epoch`; returns the version moved from.
    /// Its slot stays until a trim at `epoch` or later: a snapshot older than the move may have
    /// resolved it before the move (`older.rs`, invariant 4).
    pub fn relocate(
        &self,
        id: NodeId,
        version: Version,
        epoch: u64,
        guard: &Guard,
    ) -> Result<Option<Version>> {
        self.slot(id)?
            .update(id.tag(), version, epoch, guard)
            .map_err(|v| refusal(id, &v))
    }

    /// LIVE → RETIRED at commit epoch `epoch`.
    pub fn retire(&self, id: NodeId, epoch: u64) -> Result<()> {
        self.slot(id)?
            .retire(id.tag(), epoch)
            .map_err(|v| refusal(id, &v))
    }

    /// RETIRED → FREE: the handle goes back to the free list with a new tag (or, if `id` carried
    /// the last one, is retired for good: invariant 2). Returns every version the node still
    /// referenced, whose slots the caller frees.
    pub fn reclaim(&self, id: NodeId, guard: &Guard) -> Result<Vec<Version>> {
        let (versions, reuse) = self
            .slot(id)?
            .reclaim(id.tag(), guard)
            .map_err(|v| refusal(id, &v))?;
        self.release(id, reuse);
        Ok(versions)
    }

    /// Unlinks the older versions superseded at or before `min_epoch`, which no snapshot at
    /// `min_epoch` or later can read; returns them.
    pub fn trim(&self, id: NodeId, min_epoch: u64, guard: &Guard) -> Result<Vec<Version>> {
        self.slot(id)?
            .trim(id.tag(), min_epoch, guard)
            .map_err(|v| refusal(id, &v))
    }

    /// Asks the cache for `id`'s entry, if its handle was issued: a hint that changes nothing,
    /// issued ahead of a batch of lookups so that their cache misses overlap.
    #[inline]
    pub fn prefetch(&self, id: NodeId) {
        if let Some(slot) = self.slot_if_issued(id) {
            slot.prefetch();
        }
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
    /// retired) at that epoch; an error if the id is stale (its handle was freed since, or is
    /// exhausted).
    pub fn get_at(&self, id: NodeId, epoch: u64, guard: &Guard) -> Result<Option<Version>> {
        self.slot(id)?
            .version_at(id.tag(), epoch, guard)
            .map_err(|v| refusal(id, &v))
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
    /// free entry). Refused for an exhausted handle.
    pub fn restore_free(&self, id: NodeId) -> Result<()> {
        let shard = &self.shards[id.shard() % SHARDS];
        let slot = restore_slot(shard, id)?;
        slot.restore_free(id.tag()).map_err(|v| refusal(id, &v))?;
        shard
            .next_handle
            .fetch_max(id.handle() + 1, Ordering::Relaxed);
        Ok(())
    }

    /// Recovery: records that the handle of `id` issued every tag (a checkpoint's exhausted
    /// entry; `id` carries [`TAG_MAX`]): it stays FREE and is never handed out again. A node the
    /// log holds for `id` may still be restored onto it (`slot.rs`, invariant 5).
    pub fn restore_exhausted(&self, id: NodeId) -> Result<()> {
        if id.tag() != TAG_MAX {
            return Err(Error::InvalidArgument(format!(
                "node {id}: an exhausted handle's id carries tag {TAG_MAX}"
            )));
        }
        let shard = &self.shards[id.shard() % SHARDS];
        let slot = restore_slot(shard, id)?;
        slot.restore_exhausted().map_err(|v| refusal(id, &v))?;
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
    /// on its free list, except exhausted ones (invariant 2).
    pub fn finish_restore(&self, guard: &Guard) {
        for shard in self.shards.iter() {
            let high = shard.next_handle.load(Ordering::Relaxed);
            let mut free = shard.free.lock();
            free.clear();
            // Highest handles first at the bottom, so the lowest are reused first.
            for h in (0..high).rev() {
                let reusable = |s: &Slot| {
                    let view = s.view(guard);
                    view.state == EntryState::Free && !view.exhausted
                };
                if shard.slot(h).is_none_or(reusable) {
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

    /// A prefetch reads nothing back and changes nothing: a never-issued handle (past every
    /// chunk) is ignored, and a live entry reads the same before and after.
    #[test]
    fn prefetch_of_any_id_changes_nothing() {
        let table = ObjectTable::new();
        table.prefetch(NodeId::new(3, HANDLE_MAX, 1).unwrap());
        let id = table.reserve().unwrap();
        table.prefetch(id);
        table.publish(id, version(4)).unwrap();
        table.prefetch(id);
        let guard = crossbeam_epoch::pin();
        assert_eq!(table.get(id, &guard).unwrap(), version(4));
    }

    fn version(birth: u64) -> Version {
        Version {
            location: crate::alloc::Location {
                class: 0,
                file: 0,
                offset: 64 * birth,
            },
            len: 1,
            crc32c: birth as u32,
            kind: 3,
            birth,
        }
    }

    /// The handles on `shard`'s free list.
    fn free_list(table: &ObjectTable, shard: usize) -> Vec<u64> {
        table.shards[shard].free.lock().clone()
    }

    /// Asserts that every id the handle of `hot` ever issued (tags 1..=65535) is refused by every
    /// operation, with the exhausted reason.
    fn assert_every_id_stale(table: &ObjectTable, hot: NodeId) {
        let guard = crossbeam_epoch::pin();
        let stale = "stale id: the handle issued every tag and is retired for good";
        for tag in 1..=TAG_MAX {
            let id = NodeId::new(hot.shard(), hot.handle(), tag).unwrap();
            let refused = |r: Result<()>, op: &str| match r {
                Err(Error::NodeNotFound { id: got, reason }) => {
                    assert_eq!((got, reason), (id, stale), "{op} {id}")
                }
                other => panic!("{op} {id}: {other:?}"),
            };
            refused(table.get(id, &guard).map(|_| ()), "get");
            refused(table.get_at(id, u64::MAX, &guard).map(|_| ()), "get_at");
            refused(table.get_at(id, 0, &guard).map(|_| ()), "get_at 0");
            if tag % 4096 == 0 || tag == 1 || tag == TAG_MAX {
                refused(table.publish(id, version(1)), "publish");
                refused(table.abort(id), "abort");
                refused(table.update(id, version(2), &guard).map(|_| ()), "update");
                refused(table.retire(id, 3), "retire");
                refused(table.reclaim(id, &guard).map(|_| ()), "reclaim");
            }
            assert_eq!(table.live_words(id, u64::MAX), None);
        }
        let view = table.view(hot, &guard).unwrap();
        assert_eq!(
            (view.state, view.tag, view.exhausted, view.current),
            (EntryState::Free, TAG_MAX, true, None)
        );
    }

    /// Frees the handle of `first` 65 535 times with `free` (given each id as issued, tags 1 to
    /// 65535 in order); then the handle must be retired for good.
    fn exhaust(table: &ObjectTable, free: impl Fn(&ObjectTable, NodeId, u64)) -> NodeId {
        let first = table.reserve_from(7).unwrap();
        assert_eq!((first.shard(), first.tag()), (7, 1));
        let mut id = first;
        for n in 1..=u64::from(TAG_MAX) {
            assert_eq!(u64::from(id.tag()), n, "tags are issued in order");
            assert_eq!(id.handle(), first.handle(), "the free list is LIFO");
            free(table, id, n);
            if n < u64::from(TAG_MAX) {
                id = table.reserve_from(7).unwrap();
            }
        }
        assert_eq!(id.tag(), TAG_MAX);
        assert!(!free_list(table, 7).contains(&first.handle()));
        // The shard's next reservations get other handles, never the exhausted one.
        let next: Vec<NodeId> = (0..3).map(|_| table.reserve_from(7).unwrap()).collect();
        assert!(
            next.iter()
                .all(|n| n.shard() == 7 && n.handle() != first.handle()),
            "{next:?}"
        );
        for n in next {
            table.abort(n).unwrap();
        }
        assert_every_id_stale(table, first);
        first
    }

    #[test]
    fn a_handle_aborted_with_its_last_tag_is_never_reissued() {
        let table = ObjectTable::new();
        exhaust(&table, |t, id, _| t.abort(id).unwrap());
    }

    #[test]
    fn a_handle_reclaimed_with_its_last_tag_is_never_reissued() {
        let table = ObjectTable::new();
        let guard = crossbeam_epoch::pin();
        exhaust(&table, |t, id, n| {
            t.publish(id, version(n)).unwrap();
            assert_eq!(t.get(id, &guard).unwrap(), version(n));
            t.retire(id, n + 1).unwrap();
            assert_eq!(t.reclaim(id, &guard).unwrap(), vec![version(n)]);
        });
    }

    #[test]
    fn an_exhausted_handle_stays_retired_through_recovery() {
        let guard = crossbeam_epoch::pin();
        let last = |h| NodeId::new(2, h, TAG_MAX).unwrap();
        let table = ObjectTable::new();
        // Handles 0 and 3 exhausted, 1 live, 2 never mentioned (free below the high mark).
        table.restore_exhausted(last(0)).unwrap();
        table
            .restore(NodeId::new(2, 1, 5).unwrap(), version(1), None)
            .unwrap();
        table.restore_exhausted(last(3)).unwrap();
        // Only a node carrying the last tag may be restored onto an exhausted handle (the log may
        // hold it: the checkpoint marks a handle exhausted once that id may have been issued).
        let err = table.restore(NodeId::new(2, 3, 9).unwrap(), version(2), None);
        assert!(matches!(err, Err(Error::NodeNotFound { .. })), "{err:?}");
        assert!(table.restore_free(NodeId::new(2, 3, 9).unwrap()).is_err());
        let err = table
            .restore_exhausted(NodeId::new(2, 4, 9).unwrap())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        table.finish_restore(&guard);
        assert_eq!(free_list(&table, 2), vec![2]);
        assert_every_id_stale(&table, last(0));
        assert_every_id_stale(&table, last(3));
        let ids: Vec<NodeId> = (0..3).map(|_| table.reserve_from(2).unwrap()).collect();
        let handles: Vec<(usize, u64)> = ids.iter().map(|i| (i.shard(), i.handle())).collect();
        assert_eq!(handles, vec![(2, 2), (2, 4), (2, 5)]);

        // The log's node on an exhausted handle: live with the last tag, and exhausted again
        // once reclaimed.
        let table = ObjectTable::new();
        table.restore_exhausted(last(0)).unwrap();
        table.restore(last(0), version(4), None).unwrap();
        table.finish_restore(&guard);
        assert_eq!(table.get(last(0), &guard).unwrap(), version(4));
        assert_eq!(free_list(&table, 2), Vec::<u64>::new());
        table.retire(last(0), 5).unwrap();
        table.reclaim(last(0), &guard).unwrap();
        assert_eq!(free_list(&table, 2), Vec::<u64>::new());
        assert_every_id_stale(&table, last(0));
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
