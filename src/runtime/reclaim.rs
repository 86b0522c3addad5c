//! Reclamation: freeing superseded and retired versions once nothing can read them, off the
//! committers' path.
//!
//! A commit queues the versions it superseded and the nodes it retired. A flush that makes them
//! durable raises the reclaimer thread once [`RAISE_QUEUED_MIN`] retirements or
//! [`RAISE_QUEUED_BYTES_MIN`] of their bytes were queued since the last pass (fewer wait for the flusher's pass every
//! `eventual_flush_interval`, or a sync or checkpoint, which free everything reclaimable before
//! they return), and it frees them while committers go on: freeing a
//! batch of scattered updates touches every node's table entry and old version again, cache
//! misses that cost a lone committer about a fifth of its commit when the flush's leader did
//! it before returning (`design/ARCHITECTURE.md`, "Commit CPU and group flush"). A committer
//! frees inline only when more than [`QUEUED_INLINE_MAX`] retirements or
//! [`QUEUED_INLINE_BYTES_MAX`] of their bytes were queued since the last pass, so the queue, and
//! the data-file space its versions hold, stay bounded when the reclaimer falls behind (what a
//! pinned snapshot can read stays, as it must). Counting since the last pass, not all that
//! waits, keeps entries a snapshot pins from raising the reclaimer at every flush.
//!
//! Invariants:
//! 1. A slot is freed only when its superseding epoch is durable and no registered snapshot is
//!    older (the engine's invariant 5).
//! 2. One pass at a time: `pass` is held from taking entries off the queue until their slots are
//!    back in the allocator and counted, so a thread that waits for it
//!    ([`Engine::reclaim_ready_now`]) finds no slot taken from the table but not yet freed.
//! 3. No raise is lost: the reclaimer clears `raised` (an acquiring swap) before its pass, so
//!    every retirement queued before a raise is seen by a pass that starts after that raise.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::engine::{Engine, Retirement};
use super::stats::Counters;
use crate::object_table::IdSet;

/// Retirements that may wait for the reclaimer before a committer frees them itself.
pub(crate) const QUEUED_INLINE_MAX: usize = 16_384;

/// Bytes of versions that may wait for the reclaimer before a committer frees them itself.
pub(crate) const QUEUED_INLINE_BYTES_MAX: u64 = 64 << 20;

/// Retirements waiting when a flush raises the reclaimer: a wake-up costs the flush's leader a
/// futex call, worth it for a batch, not for every commit of a lone committer.
pub(crate) const RAISE_QUEUED_MIN: usize = 1_024;

/// Bytes of waiting versions that raise the reclaimer whatever their count, so large nodes
/// go back to the allocator within a few commits.
pub(crate) const RAISE_QUEUED_BYTES_MIN: u64 = 1 << 20;

/// How far ahead of the entry it frees a pass prefetches table entries.
const PREFETCH_AHEAD: usize = 8;

/// The reclamation queue, the pass lock and the reclaimer's wake-up.
#[derive(Debug, Default)]
pub(crate) struct Reclamation {
    /// Retirements in about epoch order (C3 may queue them slightly out of it).
    queue: Mutex<Queue>,
    /// [`Queue::since_pass`] and its bytes as of the queue's last change, read without its lock.
    queued: AtomicUsize,
    queued_bytes: AtomicU64,
    /// Held through a pass (invariant 2).
    pass: Mutex<()>,
    /// Set by a raise, cleared by the reclaimer before its pass (invariant 3).
    raised: AtomicBool,
    wake: Mutex<Wake>,
    woken: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Retirement>,
    /// The sum of the entries' `bytes`.
    bytes: u64,
    /// Entries and their bytes queued since the last pass took its entries: what the raise and
    /// the inline bound count, so entries a pinned snapshot keeps (no pass can free them) do not
    /// wake the reclaimer at every flush or send every committer into a pass.
    since_pass: usize,
    since_pass_bytes: u64,
}

impl Queue {
    /// Mirrors what was queued since the last pass where it is read without the lock.
    fn publish(&self, queued: &AtomicUsize, queued_bytes: &AtomicU64) {
        queued.store(self.since_pass, Ordering::Relaxed);
        queued_bytes.store(self.since_pass_bytes, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Wake {
    raised: bool,
    stopped: bool,
}

impl Reclamation {
    /// Queues `retired`; true when what was queued since the last pass is past the bounds a
    /// committer frees it at.
    pub(crate) fn queue(&self, retired: Vec<Retirement>) -> bool {
        let mut queue = self.queue.lock();
        let bytes = retired.iter().map(|r| u64::from(r.bytes)).sum::<u64>();
        queue.bytes += bytes;
        queue.since_pass_bytes += bytes;
        queue.since_pass += retired.len();
        queue.entries.extend(retired);
        queue.publish(&self.queued, &self.queued_bytes);
        queue.since_pass > QUEUED_INLINE_MAX || queue.since_pass_bytes > QUEUED_INLINE_BYTES_MAX
    }

    /// Holds reclamation off until the guard drops (a pass in progress finishes first).
    pub(crate) fn hold(&self) -> MutexGuard<'_, ()> {
        self.pass.lock()
    }

    /// Asks the reclaimer for a pass once [`RAISE_QUEUED_MIN`] retirements or
    /// [`RAISE_QUEUED_BYTES_MIN`] of their bytes were queued since the last pass.
    pub(crate) fn raise_if_due(&self) {
        if self.queued.load(Ordering::Relaxed) >= RAISE_QUEUED_MIN
            || self.queued_bytes.load(Ordering::Relaxed) >= RAISE_QUEUED_BYTES_MIN
        {
            self.raise();
        }
    }

    /// Asks the reclaimer for a pass. Cheap when one is already asked for.
    pub(crate) fn raise(&self) {
        if self.raised.swap(true, Ordering::AcqRel) {
            return;
        }
        self.wake.lock().raised = true;
        self.woken.notify_one();
    }

    /// The reclaimer's wait for a raise; false once [`Reclamation::stop`] was called.
    pub(crate) fn wait_raised(&self) -> bool {
        let mut wake = self.wake.lock();
        while !wake.raised && !wake.stopped {
            self.woken.wait(&mut wake);
        }
        if wake.stopped {
            return false;
        }
        wake.raised = false;
        drop(wake);
        // Acquire: the queue pushes of every raise that found `raised` set are visible to the
        // pass that follows (invariant 3).
        self.raised.swap(false, Ordering::AcqRel);
        true
    }

    /// Ends the reclaimer's loop.
    pub(crate) fn stop(&self) {
        self.wake.lock().stopped = true;
        self.woken.notify_all();
    }

    /// Takes the entries at the front whose epoch is at most `limit`.
    fn take_ready(&self, limit: u64) -> Vec<Retirement> {
        let mut queue = self.queue.lock();
        let ready = queue
            .entries
            .iter()
            .take_while(|r| r.epoch <= limit)
            .count();
        let taken: Vec<Retirement> = queue.entries.drain(..ready).collect();
        queue.bytes -= taken.iter().map(|r| u64::from(r.bytes)).sum::<u64>();
        queue.since_pass = 0;
        queue.since_pass_bytes = 0;
        queue.publish(&self.queued, &self.queued_bytes);
        taken
    }
}

impl Engine<'_> {
    /// Frees what no snapshot can read any more and whose retirement is durable, unless another
    /// thread is doing so (it frees the same entries).
    pub(crate) fn reclaim_ready(&self) {
        if let Some(pass) = self.reclaim.pass.try_lock() {
            self.reclaim_pass(pass);
        }
    }

    /// As [`Engine::reclaim_ready`], but waits for a pass in progress, so every slot that can be
    /// freed now is free when it returns (compaction counts on it before returning segments,
    /// and `sync` so its caller sees what it freed).
    pub(crate) fn reclaim_ready_now(&self) {
        self.reclaim_pass(self.reclaim.pass.lock());
    }

    /// One pass: frees the ready entries of the queue. `_pass` is held until their slots are
    /// back in the allocator and counted (invariant 2).
    fn reclaim_pass(&self, _pass: MutexGuard<'_, ()>) {
        // The visible epoch is read before the registry is scanned (`snapshots.rs`, invariant
        // 3): a pin the scan misses then registers at least this epoch.
        let visible = self.visible.epoch();
        let durable = self.durable_epoch.load(Ordering::Acquire);
        let limit = self
            .snapshots
            .oldest()
            .unwrap_or(u64::MAX)
            .min(visible)
            .min(durable);
        let ready = self.reclaim.take_ready(limit);
        if ready.is_empty() {
            return;
        }
        let guard = crossbeam_epoch::pin();
        // A node rewritten by many commits has as many entries here; one trim at `limit` frees
        // every version any of them could, and each trim walks the versions newer than `limit`,
        // so each node is trimmed once per pass (else a pass after a flush of thousands of
        // rewrites of one node walks its chain thousands of times).
        let mut trimmed = IdSet::default();
        let mut slots = Vec::with_capacity(ready.len());
        for (i, r) in ready.iter().enumerate() {
            if let Some(ahead) = ready.get(i + PREFETCH_AHEAD) {
                self.table.prefetch(ahead.id);
            }
            let freed = if r.whole_node {
                self.table.reclaim(r.id, &guard)
            } else if trimmed.insert(r.id) {
                self.table.trim(r.id, limit, &guard)
            } else {
                continue;
            };
            match freed {
                Ok(freed) => slots.extend(freed.into_iter().map(|v| v.location)),
                // Entries may queue slightly out of epoch order (C3), so a node's trim can come
                // after its retirement freed everything: its id is stale by then.
                Err(_) if self.is_stale(r.id, &guard) => continue,
                Err(e) => {
                    // The table refused a transition reclamation relies on: memory and the
                    // durable state may disagree, so the runtime stops accepting writes.
                    // The rest of the entries taken are dropped: a poisoned runtime frees nothing
                    // more, and the table still names their versions, so nothing leaks on disk.
                    tracing::error!(id = %r.id, %e, "reclamation found an entry it cannot free");
                    self.poison.poison(&e);
                    break;
                }
            }
        }
        // The slots the table gave up, freed with one lock per run of a class.
        let (freed, result) = self.alloc.free_many(&slots);
        Counters::add(&self.counters.slots_reclaimed, freed as u64);
        if let Err(e) = result {
            tracing::error!(loc = ?slots.get(freed), %e, "reclamation freed a slot twice");
            self.poison.poison(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::NodeId;
    use crate::io::{FaultStorage, Storage};
    use crate::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

    /// A store whose flusher never runs its interval pass and that never checkpoints or
    /// compacts on its own: only flushes, syncs and committers free anything.
    fn open_quiet() -> DurableRuntime {
        let fs = FaultStorage::new(5);
        let dir = Path::new("/s");
        fs.create_dir_all(dir).unwrap();
        let mut options = RuntimeOptions {
            create_if_missing: true,
            eventual_flush_interval: Duration::from_secs(60),
            ..RuntimeOptions::default()
        };
        options.compaction.interval = None;
        DurableRuntime::open_with(Arc::new(fs), dir, options).unwrap()
    }

    fn populate(rt: &DurableRuntime, n: usize) -> Vec<NodeId> {
        let mut tx = rt.begin();
        let ids = (0..n)
            .map(|i| tx.alloc(1, &(i as u64).to_le_bytes()).unwrap())
            .collect();
        tx.commit_with(CommitPolicy::Balanced).unwrap();
        ids
    }

    /// One BALANCED commit rewriting every node of `ids`.
    fn rewrite(rt: &DurableRuntime, ids: &[NodeId], round: u64) {
        let mut tx = rt.begin();
        for id in ids {
            tx.write(*id, &round.to_le_bytes()).unwrap();
        }
        tx.commit_with(CommitPolicy::Balanced).unwrap();
    }

    fn wait_for_reclaimed(rt: &DurableRuntime, expected: u64) -> u64 {
        for _ in 0..1000 {
            if rt.stats().slots_reclaimed >= expected {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        rt.stats().slots_reclaimed
    }

    /// Fewer than a batch of retirements wait for a sync (or the flusher's interval pass); the
    /// flush that brings the queue to a batch raises the reclaimer, which frees all of them
    /// with no sync and no checkpoint.
    #[test]
    fn the_flush_that_fills_a_batch_raises_the_reclaimer() {
        let rt = open_quiet();
        let ids = populate(&rt, 100);
        let rounds = RAISE_QUEUED_MIN as u64 / 100;
        for round in 1..=rounds {
            rewrite(&rt, &ids, round);
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            rt.stats().slots_reclaimed,
            0,
            "below a batch, nothing raised"
        );
        rewrite(&rt, &ids, rounds + 1);
        let expected = (rounds + 1) * 100;
        assert_eq!(wait_for_reclaimed(&rt, expected), expected);
        assert_eq!(rt.inner.reclaim.queued.load(Ordering::Relaxed), 0);
        assert_eq!(rt.verify().unwrap().0, 100);
    }

    /// A few large versions raise the reclaimer by their bytes, long before their count would.
    #[test]
    fn large_versions_raise_the_reclaimer_by_their_bytes() {
        let rt = open_quiet();
        let node_bytes = 256 << 10;
        let mut tx = rt.begin();
        let id = tx.alloc(1, &vec![0u8; node_bytes]).unwrap();
        tx.commit_with(CommitPolicy::Balanced).unwrap();
        let rounds = RAISE_QUEUED_BYTES_MIN / node_bytes as u64;
        let write = |round: u64| {
            let mut tx = rt.begin();
            tx.write(id, &vec![round as u8; node_bytes]).unwrap();
            tx.commit_with(CommitPolicy::Balanced).unwrap();
        };
        for round in 1..rounds {
            write(round);
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            rt.stats().slots_reclaimed,
            0,
            "below the bytes, nothing raised"
        );
        write(rounds);
        assert_eq!(wait_for_reclaimed(&rt, rounds), rounds);
        assert_eq!(rt.inner.reclaim.queued_bytes.load(Ordering::Relaxed), 0);
        assert_eq!(rt.read(id).unwrap(), vec![rounds as u8; node_bytes]);
    }

    /// With the reclaimer gone, committers free inline once more than `QUEUED_INLINE_MAX`
    /// retirements wait, so the queue stays bounded; `sync` frees the rest before it returns.
    #[test]
    fn committers_free_inline_once_the_reclaimer_falls_behind() {
        let rt = open_quiet();
        rt.inner.reclaim.stop();
        let ids = populate(&rt, 1000);
        let rounds = QUEUED_INLINE_MAX as u64 / 1000;
        for round in 1..=rounds {
            rewrite(&rt, &ids, round);
        }
        assert_eq!(rt.stats().slots_reclaimed, 0, "at most the bound waits");
        rewrite(&rt, &ids, rounds + 1);
        let inline = rt.stats().slots_reclaimed;
        assert_eq!(
            inline,
            (rounds + 1) * 1000,
            "the committer past the bound freed all"
        );
        rewrite(&rt, &ids, rounds + 2);
        rt.sync().unwrap();
        assert_eq!(rt.stats().slots_reclaimed, inline + 1000);
        assert_eq!(rt.verify().unwrap().0, 1000);
    }

    /// A raise made while the reclaimer is awake is not lost (invariant 3), and a stop ends
    /// its wait even with no raise.
    #[test]
    fn raises_are_not_lost_and_stop_ends_the_wait() {
        let r = Reclamation::default();
        r.raise();
        r.raise();
        assert!(r.wait_raised(), "a raise before the wait is seen");
        r.raise();
        assert!(
            r.wait_raised(),
            "a raise after the clear asks for another pass"
        );
        std::thread::scope(|s| {
            let waiter = s.spawn(|| r.wait_raised());
            std::thread::sleep(Duration::from_millis(50));
            r.stop();
            assert!(!waiter.join().unwrap(), "stopped");
        });
        r.raise();
        assert!(!r.wait_raised(), "a stopped reclaimer stays stopped");
    }
}
