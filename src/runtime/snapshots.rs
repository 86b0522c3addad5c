//! Which commit epochs pinned snapshots still read, so reclamation knows what it may free.
//!
//! The registry is striped: each stripe holds a multiset of pinned epochs under its own lock, and
//! a thread pins in the stripe it was assigned, so pins on different threads touch different
//! cache lines and take different locks. Reclamation, the only reader of the whole registry on a
//! hot path, locks the stripes one after another.
//!
//! A snapshot's root catalog lives in its stripe's entry for its epoch, not in the snapshot: a
//! pin at an epoch the stripe already holds with its roots clones nothing shared.
//!
//! Invariants:
//! 1. A pin's epoch is registered before the pin's holder reads anything at it, and stays
//!    registered (in the stripe the pin names) until the pin is released.
//! 2. A pin registers its epoch inside its stripe's critical section, and the epoch is read
//!    there too: either the newest visible epoch (`pin_visible`, `pin_with(visible)`) or an
//!    epoch at least as new as every epoch visible at that moment (`pin_with(epoch)` of the
//!    checkpoint's K2, which holds the commit lock and passes the last committed epoch, which
//!    visibility never passes).
//! 3. The reclamation limit reads the visible epoch *before* it scans the stripes
//!    (`Engine::reclaim_ready`), and is at most that epoch.
//! 4. So the limit never passes an epoch a pin that is being taken could still register. Take a
//!    limit computation R, which read visible epoch `v` and then locked stripe `s`, and a pin P
//!    in `s` at epoch `e`. If P's critical section came first, R sees `e` (invariant 1) and the
//!    limit is at most `e`. Otherwise R's read of `v` happens before R unlocks `s`, which
//!    happens before P locks it and reads its epoch: the visible epoch only grows, so P reads at
//!    least `v` (invariant 2), and the limit is at most `v <= e`. Either way a version visible at
//!    `e` (superseded after `e`) is not freed while P holds `e`. No lock orders publishing against
//!    pinning, so publishing a new visible epoch waits for no registry lock.
//!    A pin duplicated in its own stripe while it is held (`repin`) is registered throughout.
//! 5. `oldest()` is a lower bound on every epoch registered before it locked each stripe, so a
//!    version superseded at an epoch at or below it is invisible to every live snapshot.
//! 6. A stripe's entries are sorted by epoch, and every entry has a reader except perhaps the
//!    newest, kept without readers only while it holds the roots catalog of its epoch (so a
//!    thread taking and dropping snapshots at one epoch clones no catalog, and touches no cache
//!    line another thread writes). An entry without readers bounds nothing (`oldest` skips it),
//!    and a pin at a newer epoch replaces it. The catalog is that of the entry's epoch: it was
//!    read with it as a matching pair (`Visible::epoch_and_roots`), and the roots are a function
//!    of the visible epoch (those after every commit up to it).

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use super::engine::Visible;
use crate::meta::RootCatalog;

/// Stripes per registry: a few per core, so threads rarely share one, and few enough that a
/// reclamation pass locking them all stays cheap.
const STRIPES_PER_CORE: usize = 2;

/// At most this many stripes, whatever the core count.
const STRIPES_MAX: usize = 64;

/// A value aligned to its own cache lines (two 64-byte lines: adjacent-line prefetch pairs them),
/// so stripes do not share lines.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

/// Readers of one epoch in one stripe.
#[derive(Debug)]
struct Pinned {
    epoch: u64,
    readers: usize,
    /// The root catalog as of `epoch`, once a snapshot pinned it (internal pins need none).
    roots: Option<Arc<RootCatalog>>,
}

/// One stripe: the epochs pinned in it, sorted by epoch (invariant 6).
#[derive(Debug, Default)]
struct Stripe {
    pinned: Vec<Pinned>,
}

impl Stripe {
    /// Adds a reader of `epoch`, recording `roots` (the catalog as of `epoch`) if the entry has
    /// none yet.
    fn pin(&mut self, epoch: u64, roots: Option<Arc<RootCatalog>>) {
        // Pins come at the newest visible epoch, so the common case is the last entry.
        let i = match self.pinned.last() {
            Some(last) if last.epoch == epoch => Ok(self.pinned.len() - 1),
            Some(last) if last.epoch > epoch => self.find(epoch),
            _ => Err(self.pinned.len()),
        };
        match i {
            Ok(i) => {
                let p = &mut self.pinned[i];
                p.readers += 1;
                if p.roots.is_none() {
                    p.roots = roots;
                }
            }
            Err(i) => {
                // A kept entry without readers gives way to the newer one (invariant 6).
                let n = self.pinned.len();
                if i == n && self.pinned.last().is_some_and(|p| p.readers == 0) {
                    self.pinned.pop();
                }
                let at = i.min(self.pinned.len());
                self.pinned.insert(
                    at,
                    Pinned {
                        epoch,
                        readers: 1,
                        roots,
                    },
                );
            }
        }
    }

    /// Adds a reader of the newest entry if it is at `epoch` and knows its roots (the common
    /// case of a snapshot: no catalog is cloned); false otherwise.
    #[inline]
    fn pin_known(&mut self, epoch: u64) -> bool {
        match self.pinned.last_mut() {
            Some(p) if p.epoch == epoch && p.roots.is_some() => {
                p.readers += 1;
                true
            }
            _ => false,
        }
    }

    /// Removes one reader of `epoch`; false if the stripe holds none.
    fn unpin(&mut self, epoch: u64) -> bool {
        let Ok(i) = self.find(epoch) else {
            return false;
        };
        let newest = i + 1 == self.pinned.len();
        let p = &mut self.pinned[i];
        if p.readers == 0 {
            return false;
        }
        p.readers -= 1;
        // The newest entry stays while it knows its roots, so the next snapshot at the same
        // epoch finds them (invariant 6).
        let keep = newest && p.roots.is_some();
        if p.readers == 0 && !keep {
            self.pinned.remove(i);
        }
        true
    }

    /// The oldest epoch with a reader.
    fn oldest(&self) -> Option<u64> {
        self.pinned.iter().find(|p| p.readers > 0).map(|p| p.epoch)
    }

    fn readers(&self) -> usize {
        self.pinned.iter().map(|p| p.readers).sum()
    }

    fn find(&self, epoch: u64) -> Result<usize, usize> {
        self.pinned.binary_search_by_key(&epoch, |p| p.epoch)
    }
}

/// The multiset of pinned snapshot epochs, striped by thread.
#[derive(Debug)]
pub(crate) struct SnapshotRegistry {
    stripes: Box<[Padded<Mutex<Stripe>>]>,
}

impl Default for SnapshotRegistry {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Self::with_stripes(cores.saturating_mul(STRIPES_PER_CORE))
    }
}

/// The stripe index the current thread pins in (before reducing modulo the stripe count):
/// threads are dealt indices in the order they first pin.
fn thread_stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: Cell<Option<usize>> = const { Cell::new(None) };
    }
    STRIPE.with(|s| {
        s.get().unwrap_or_else(|| {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            s.set(Some(n));
            n
        })
    })
}

/// Where a pin is registered: released with [`SnapshotRegistry::unpin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PinSlot {
    pub(crate) stripe: usize,
    pub(crate) epoch: u64,
}

impl SnapshotRegistry {
    /// A registry of `stripes` stripes (rounded up to a power of two, at most [`STRIPES_MAX`]).
    pub(crate) fn with_stripes(stripes: usize) -> Self {
        let n = stripes.clamp(1, STRIPES_MAX).next_power_of_two();
        SnapshotRegistry {
            stripes: (0..n).map(|_| Padded::default()).collect(),
        }
    }

    /// The current thread's stripe.
    #[inline]
    fn stripe(&self) -> (usize, &Mutex<Stripe>) {
        let i = thread_stripe() & (self.stripes.len() - 1);
        (i, &self.stripes[i].0)
    }

    /// Pins the newest visible epoch of `visible` for a snapshot, with the roots as of it (read
    /// inside the stripe's critical section, invariant 2). Returns where it is registered, for
    /// [`SnapshotRegistry::unpin`] and [`SnapshotRegistry::roots`].
    #[inline]
    pub(crate) fn pin_snapshot(&self, visible: &Visible) -> PinSlot {
        let (stripe, lock) = self.stripe();
        let mut s = lock.lock();
        let mut epoch = visible.epoch();
        if !s.pin_known(epoch) {
            let (newest, roots) = visible.epoch_and_roots();
            epoch = newest;
            s.pin(epoch, Some(roots));
        }
        PinSlot { stripe, epoch }
    }

    /// Pins the epoch `epoch_of` returns, read inside the stripe's critical section (invariant
    /// 2: the visible epoch as read there, or a newer one), until the returned guard drops.
    pub(crate) fn pin_with(&self, epoch_of: impl FnOnce() -> u64) -> EpochPin<'_> {
        let (stripe, lock) = self.stripe();
        let mut s = lock.lock();
        let epoch = epoch_of();
        s.pin(epoch, None);
        drop(s);
        EpochPin {
            registry: self,
            slot: PinSlot { stripe, epoch },
        }
    }

    /// The root catalog as of the epoch of `slot`, which a snapshot pinned and still holds.
    pub(crate) fn roots(&self, slot: PinSlot) -> Option<Arc<RootCatalog>> {
        let s = self.stripes.get(slot.stripe)?.0.lock();
        let roots = s
            .find(slot.epoch)
            .ok()
            .and_then(|i| s.pinned[i].roots.clone());
        debug_assert!(roots.is_some(), "{slot:?} holds no snapshot's roots");
        roots
    }

    /// Registers one more reader of `slot`'s epoch in `slot`'s stripe, for a caller that holds
    /// `slot`: the epoch stays registered in that stripe throughout, so every limit computation,
    /// which locks the stripe once, sees one of the two registrations while either is held.
    pub(crate) fn repin(&self, slot: PinSlot) -> PinSlot {
        if let Some(s) = self.stripes.get(slot.stripe) {
            s.0.lock().pin(slot.epoch, None);
        }
        slot
    }

    /// Removes the reader `slot` registered.
    #[inline]
    pub(crate) fn unpin(&self, slot: PinSlot) {
        let found = self
            .stripes
            .get(slot.stripe)
            .is_some_and(|s| s.0.lock().unpin(slot.epoch));
        debug_assert!(found, "unpinned {slot:?}, which was not pinned");
    }

    /// The oldest pinned epoch, or `None` when nothing is pinned (invariant 5). A caller that
    /// bounds reclamation with it reads the visible epoch first (invariant 3).
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.stripes
            .iter()
            .filter_map(|s| s.0.lock().oldest())
            .min()
    }

    /// Number of pins held (snapshots and the runtime's own pins).
    pub(crate) fn count(&self) -> usize {
        self.stripes.iter().map(|s| s.0.lock().readers()).sum()
    }
}

/// A pinned epoch, released when dropped.
#[derive(Debug)]
pub(crate) struct EpochPin<'a> {
    registry: &'a SnapshotRegistry,
    slot: PinSlot,
}

impl EpochPin<'_> {
    /// The pinned epoch.
    pub(crate) fn epoch(&self) -> u64 {
        self.slot.epoch
    }
}

impl Drop for EpochPin<'_> {
    fn drop(&mut self) {
        self.registry.unpin(self.slot);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epochs(s: &Stripe) -> Vec<(u64, usize, bool)> {
        s.pinned
            .iter()
            .map(|p| (p.epoch, p.readers, p.roots.is_some()))
            .collect()
    }

    #[test]
    fn oldest_and_count_track_the_multiset() {
        let r = SnapshotRegistry::with_stripes(4);
        assert_eq!((r.oldest(), r.count()), (None, 0));
        let five = r.pin_with(|| 5);
        let three = r.pin_with(|| 3);
        let again = r.pin_with(|| 3);
        assert_eq!((r.oldest(), r.count()), (Some(3), 3));
        drop(three);
        assert_eq!((r.oldest(), r.count()), (Some(3), 2));
        let twice = r.repin(again.slot);
        assert_eq!(twice, again.slot);
        drop(again);
        assert_eq!((r.oldest(), r.count()), (Some(3), 2));
        r.unpin(twice);
        assert_eq!((r.oldest(), r.count()), (Some(5), 1));
        drop(five);
        assert_eq!((r.oldest(), r.count()), (None, 0));
    }

    #[test]
    fn a_stripe_keeps_its_epochs_sorted_whatever_the_pin_order() {
        let mut s = Stripe::default();
        for e in [7, 3, 9, 3, 5, 9, 1] {
            s.pin(e, None);
        }
        let want = [(1, 1), (3, 2), (5, 1), (7, 1), (9, 2)];
        assert_eq!(epochs(&s), want.map(|(e, n)| (e, n, false)));
        assert!(s.unpin(3));
        assert!(s.unpin(1));
        assert!(!s.unpin(1), "no reader of 1 is left");
        assert!(!s.unpin(4), "4 was never pinned");
        let want = [(3, 1), (5, 1), (7, 1), (9, 2)];
        assert_eq!(epochs(&s), want.map(|(e, n)| (e, n, false)));
    }

    /// The newest entry with roots stays without readers, bounds nothing, serves the next pin
    /// at its epoch without new roots, and gives way to a pin at a newer epoch.
    #[test]
    fn the_newest_entry_keeps_its_roots_until_a_newer_epoch_is_pinned() {
        let roots = Arc::new(RootCatalog::default());
        let mut s = Stripe::default();
        assert!(!s.pin_known(4), "nothing pinned yet");
        s.pin(4, Some(roots.clone()));
        assert!(s.unpin(4));
        assert_eq!(epochs(&s), [(4, 0, true)]);
        assert_eq!((s.oldest(), s.readers()), (None, 0));
        assert!(!s.unpin(4), "the kept entry has no reader to remove");
        assert!(s.pin_known(4));
        assert!(!s.pin_known(5));
        assert_eq!(epochs(&s), [(4, 1, true)]);
        assert!(s.unpin(4));
        s.pin(6, None);
        assert_eq!(epochs(&s), [(6, 1, false)]);
        assert!(!s.pin_known(6), "an internal pin's entry knows no roots");
        s.pin(6, Some(roots));
        assert_eq!(epochs(&s), [(6, 2, true)]);
        assert_eq!((s.oldest(), s.readers()), (Some(6), 2));
    }

    /// Pins taken on many threads, some held while others come and go, are all counted, the
    /// oldest held is found whichever stripe holds it, and every stripe is empty at the end.
    #[test]
    fn pins_from_many_threads_are_counted_exactly() {
        const THREADS: u64 = 8;
        const PINS: u64 = 1000;
        let r = SnapshotRegistry::with_stripes(4);
        let held = std::sync::Barrier::new(THREADS as usize + 1);
        let release = std::sync::Barrier::new(THREADS as usize + 1);
        std::thread::scope(|s| {
            for t in 0..THREADS {
                let (r, held, release) = (&r, &held, &release);
                s.spawn(move || {
                    for i in 0..PINS {
                        let _pin = r.pin_with(|| 100 + t * PINS + i);
                    }
                    let kept = r.pin_with(|| 10 + t);
                    held.wait();
                    release.wait();
                    drop(kept);
                });
            }
            held.wait();
            assert_eq!((r.oldest(), r.count()), (Some(10), THREADS as usize));
            release.wait();
        });
        assert_eq!((r.oldest(), r.count()), (None, 0));
        assert!(r.stripes.iter().all(|s| s.0.lock().pinned.is_empty()));
    }
}
