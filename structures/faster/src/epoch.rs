//! LightEpoch-style protection.
//!
//! Invariants:
//! 1. A thread inside a protected region holds one slot of a fixed table, storing the global
//!    epoch it read on entry (never 0); leaving stores 0. Entering is one load and one CAS,
//!    leaving one store.
//! 2. [`Epoch::bump_with`] registers an action at the epoch `e` current before the bump and moves
//!    the global epoch to `e + 1`. The action runs only once every slot is either empty or holds
//!    an epoch above `e`: every thread that might have seen the state before the action's cause
//!    has left.
//! 3. All slot and epoch accesses are `SeqCst`, so a thread that enters after an action's cause
//!    was published (e.g. a page marked evicted) sees that cause, and a thread that entered
//!    before it is seen by every drain that could run the action.

use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use parking_lot::Mutex;

/// An action deferred until an epoch is safe.
type Action = Box<dyn FnOnce() + Send>;

/// Slots in the table: at most this many threads are protected at once (more wait for a slot).
pub const SLOTS: usize = 128;

/// The epoch table and its deferred actions.
pub struct Epoch {
    current: AtomicU64,
    slots: Box<[AtomicU64]>,
    deferred: Mutex<Vec<(u64, Action)>>,
}

impl std::fmt::Debug for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Epoch")
            .field("current", &self.current.load(SeqCst))
            .field("deferred", &self.deferred.lock().len())
            .finish()
    }
}

impl Default for Epoch {
    fn default() -> Self {
        Self::new()
    }
}

/// A protected region; leaving it is dropping the guard.
#[derive(Debug)]
pub struct EpochGuard<'e> {
    epoch: &'e Epoch,
    slot: usize,
}

impl Drop for EpochGuard<'_> {
    fn drop(&mut self) {
        self.epoch.slots[self.slot].store(0, SeqCst);
    }
}

impl EpochGuard<'_> {
    /// The epoch this guard entered at.
    pub fn entered_at(&self) -> u64 {
        self.epoch.slots[self.slot].load(SeqCst)
    }

    /// Moves the guard to the current epoch without leaving the table, as a FASTER session does
    /// between operations (an entry per operation costs a CAS; this costs a store), then runs
    /// the deferred actions that no guard holds back any more; returns how many ran. After the
    /// call this guard no longer holds back any action registered before it (invariant 2), so
    /// the caller must keep nothing it read under the guard across it: `&mut self` ends every
    /// borrow of the guard itself, and a session refreshes only between operations.
    pub fn refresh(&mut self) -> usize {
        let e = self.epoch.current.load(SeqCst);
        self.epoch.slots[self.slot].store(e, SeqCst);
        self.epoch.drain()
    }
}

impl Epoch {
    /// A table with epoch 1 current and no thread protected.
    pub fn new() -> Self {
        Epoch {
            current: AtomicU64::new(1),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            deferred: Mutex::new(Vec::new()),
        }
    }

    /// The current global epoch.
    pub fn current(&self) -> u64 {
        self.current.load(SeqCst)
    }

    /// Enters a protected region.
    pub fn protect(&self) -> EpochGuard<'_> {
        let start = thread_hint() % SLOTS;
        let mut spins = 0u32;
        loop {
            for i in 0..SLOTS {
                let slot = (start + i) % SLOTS;
                let e = self.current.load(SeqCst);
                if self.slots[slot]
                    .compare_exchange(0, e, SeqCst, SeqCst)
                    .is_ok()
                {
                    return EpochGuard { epoch: self, slot };
                }
            }
            spins += 1;
            if spins > 4 {
                std::thread::yield_now();
            }
        }
    }

    /// Registers `action` at the current epoch and bumps it; then runs whatever is safe.
    pub fn bump_with(&self, action: impl FnOnce() + Send + 'static) {
        {
            let mut deferred = self.deferred.lock();
            let e = self.current.fetch_add(1, SeqCst);
            deferred.push((e, Box::new(action)));
        }
        self.drain();
    }

    /// The oldest epoch some thread is still protected in, or the current one when none is.
    pub fn safe_bound(&self) -> u64 {
        let mut bound = self.current.load(SeqCst);
        for s in self.slots.iter() {
            let v = s.load(SeqCst);
            if v != 0 && v < bound {
                bound = v;
            }
        }
        bound
    }

    /// Runs every deferred action whose epoch every protected thread has left; returns how many
    /// ran.
    pub fn drain(&self) -> usize {
        let ready: Vec<Action> = {
            let mut deferred = self.deferred.lock();
            if deferred.is_empty() {
                return 0;
            }
            let bound = self.safe_bound();
            let (ready, keep): (Vec<_>, Vec<_>) = deferred.drain(..).partition(|(e, _)| *e < bound);
            *deferred = keep;
            ready.into_iter().map(|(_, a)| a).collect()
        };
        let n = ready.len();
        for a in ready {
            a();
        }
        n
    }

    /// Bumps the epoch and waits until every thread protected before the bump has left: every
    /// write a thread made inside a region it entered before the call is then visible to the
    /// caller. Spins briefly, then yields, then sleeps (a protected thread may be preempted). The
    /// caller must not be protected itself.
    pub fn wait_for_protected(&self) {
        let e = self.current.fetch_add(1, SeqCst);
        let mut spins = 0u32;
        while self.safe_bound() <= e {
            spins += 1;
            if spins < 64 {
                std::hint::spin_loop();
            } else if spins < 128 {
                std::thread::yield_now();
            } else {
                std::thread::sleep(std::time::Duration::from_micros(20));
            }
        }
    }

    /// Deferred actions not yet run.
    pub fn pending(&self) -> usize {
        self.deferred.lock().len()
    }
}

/// A per-thread number spreading threads over the table.
fn thread_hint() -> usize {
    use std::hash::{Hash, Hasher};
    thread_local! {
        static HINT: usize = {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            std::thread::current().id().hash(&mut h);
            h.finish() as usize
        };
    }
    HINT.with(|h| *h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn action_waits_for_the_guard_entered_before_it() {
        let epoch = Epoch::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let g = epoch.protect();
        assert_eq!(g.entered_at(), 1);
        let r = ran.clone();
        epoch.bump_with(move || {
            r.fetch_add(1, SeqCst);
        });
        assert_eq!(epoch.current(), 2);
        assert_eq!(
            ran.load(SeqCst),
            0,
            "a thread protected at epoch 1 is still inside"
        );
        assert_eq!(epoch.pending(), 1);
        // A guard entered after the bump does not hold the action back.
        let late = epoch.protect();
        assert_eq!(late.entered_at(), 2);
        assert_eq!(epoch.drain(), 0);
        drop(g);
        assert_eq!(epoch.drain(), 1);
        assert_eq!(ran.load(SeqCst), 1);
        assert_eq!(epoch.pending(), 0);
        drop(late);
    }

    #[test]
    fn actions_run_in_epoch_order_as_guards_leave() {
        let epoch = Epoch::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        let g1 = epoch.protect(); // epoch 1
        let l = log.clone();
        epoch.bump_with(move || l.lock().push(1)); // at 1
        let g2 = epoch.protect(); // epoch 2
        let l = log.clone();
        epoch.bump_with(move || l.lock().push(2)); // at 2
        assert!(log.lock().is_empty());
        drop(g2);
        epoch.drain();
        assert!(log.lock().is_empty(), "g1 at epoch 1 holds both back");
        drop(g1);
        epoch.drain();
        assert_eq!(*log.lock(), vec![1, 2]);
    }

    #[test]
    fn refresh_releases_what_the_guard_held_back_and_only_that() {
        let epoch = Epoch::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let mut g = epoch.protect();
        let other = epoch.protect();
        let r = ran.clone();
        epoch.bump_with(move || {
            r.fetch_add(1, SeqCst);
        });
        assert_eq!(
            g.refresh(),
            0,
            "the other guard, entered at 1, still holds it back"
        );
        assert_eq!(g.entered_at(), 2);
        drop(other);
        assert_eq!(g.refresh(), 1);
        assert_eq!(ran.load(SeqCst), 1);
        // An action registered after the refresh waits for the next one.
        let r = ran.clone();
        epoch.bump_with(move || {
            r.fetch_add(10, SeqCst);
        });
        assert_eq!((ran.load(SeqCst), epoch.pending()), (1, 1));
        assert_eq!(g.refresh(), 1);
        assert_eq!((ran.load(SeqCst), g.entered_at()), (11, 3));
    }

    #[test]
    fn with_no_guard_an_action_runs_at_once() {
        let epoch = Epoch::new();
        let ran = Arc::new(AtomicUsize::new(0));
        let r = ran.clone();
        epoch.bump_with(move || {
            r.fetch_add(1, SeqCst);
        });
        assert_eq!(ran.load(SeqCst), 1);
    }

    #[test]
    fn many_threads_protect_concurrently() {
        let epoch = Arc::new(Epoch::new());
        let ran = Arc::new(AtomicUsize::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (epoch, ran) = (epoch.clone(), ran.clone());
                s.spawn(move || {
                    for _ in 0..2000 {
                        let _g = epoch.protect();
                        let r = ran.clone();
                        epoch.bump_with(move || {
                            r.fetch_add(1, SeqCst);
                        });
                    }
                });
            }
        });
        epoch.drain();
        assert_eq!(ran.load(SeqCst), 16_000);
        assert_eq!(epoch.safe_bound(), epoch.current());
    }
}
