//! Which commit epochs pinned snapshots still read, so reclamation knows what it may free.
//!
//! Invariants:
//! 1. A snapshot's epoch is registered before the snapshot reads anything, and stays registered
//!    until it drops.
//! 2. `oldest()` is a lower bound on every registered epoch, so a version superseded at an epoch
//!    at or below it is invisible to every live snapshot.

use std::collections::BTreeMap;

use parking_lot::{Mutex, MutexGuard};

/// The multiset of pinned snapshot epochs.
#[derive(Debug, Default)]
pub(crate) struct SnapshotRegistry {
    pinned: Mutex<BTreeMap<u64, usize>>,
}

/// The registry, locked. Pinning reads the visible epoch while holding this, and publishing a new
/// visible epoch and computing the reclamation limit hold it too, so a snapshot is never created
/// at an epoch reclamation has already passed.
#[derive(Debug)]
pub(crate) struct Pinned<'a>(MutexGuard<'a, BTreeMap<u64, usize>>);

impl SnapshotRegistry {
    /// Locks the registry.
    pub(crate) fn lock(&self) -> Pinned<'_> {
        Pinned(self.pinned.lock())
    }

    /// Pins the epoch `epoch_of` returns (read while the registry is locked, so reclamation
    /// cannot pass it first) until the returned guard drops.
    pub(crate) fn pin_with(&self, epoch_of: impl FnOnce() -> u64) -> EpochPin<'_> {
        let mut pinned = self.lock();
        let epoch = epoch_of();
        pinned.pin(epoch);
        EpochPin {
            registry: self,
            epoch,
        }
    }

    /// Removes one reader of `epoch`.
    pub(crate) fn unpin(&self, epoch: u64) {
        let mut pinned = self.pinned.lock();
        if let Some(n) = pinned.get_mut(&epoch) {
            *n -= 1;
            if *n == 0 {
                pinned.remove(&epoch);
            }
        }
    }
}

/// A pinned epoch, released when dropped.
#[derive(Debug)]
pub(crate) struct EpochPin<'a> {
    registry: &'a SnapshotRegistry,
    epoch: u64,
}

impl Drop for EpochPin<'_> {
    fn drop(&mut self) {
        self.registry.unpin(self.epoch);
    }
}

impl Pinned<'_> {
    /// Registers a reader of `epoch`.
    pub(crate) fn pin(&mut self, epoch: u64) {
        *self.0.entry(epoch).or_insert(0) += 1;
    }

    /// The oldest pinned epoch, or `None` when no snapshot is open.
    pub(crate) fn oldest(&self) -> Option<u64> {
        self.0.keys().next().copied()
    }

    /// Number of open snapshots.
    pub(crate) fn count(&self) -> usize {
        self.0.values().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oldest_tracks_the_multiset() {
        let r = SnapshotRegistry::default();
        assert_eq!(r.lock().oldest(), None);
        r.lock().pin(5);
        r.lock().pin(3);
        r.lock().pin(3);
        assert_eq!(r.lock().oldest(), Some(3));
        r.unpin(3);
        assert_eq!(r.lock().oldest(), Some(3));
        r.unpin(3);
        assert_eq!(r.lock().oldest(), Some(5));
        assert_eq!(r.lock().count(), 1);
        r.unpin(5);
        assert_eq!(r.lock().oldest(), None);
    }
}
