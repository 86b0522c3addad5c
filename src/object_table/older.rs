//! The chain of a node's older versions beyond the one its entry keeps inline (`slot.rs`,
//! invariant 6), kept while pinned snapshots may still read them.
//!
//! Invariants:
//! 1. The chain is ordered newest first; each version's `birth` is at most that of the one
//!    before it (and of the entry's current version; equal only after a move, which keeps the
//!    birth), and so is the epoch that superseded it (`superseded`).
//! 2. Only the entry's writer (holding the entry's seqlock write bit) changes the chain; readers
//!    walk it without locks under a `crossbeam-epoch` guard.
//! 3. A link is cut only when no registered snapshot can need what lies behind it, and the cut
//!    versions are destroyed through `defer_destroy`, so a reader that already loaded a pointer to
//!    one keeps valid memory until its guard drops.
//! 4. A version's slot may be reused once no snapshot older than the commit that superseded it
//!    remains: a reader may have resolved it before that commit. That is its `superseded` epoch,
//!    the next version's birth for an update but the move's commit for a move (whose new version
//!    keeps the old birth), so `trim` cuts by `superseded`, not by the next version's birth.
//!
//! This module is allowed `unsafe` only to dereference pointers loaded under a guard.

#![expect(
    unsafe_code,
    reason = "dereferencing epoch-protected pointers; see invariant 3"
)]

use std::sync::atomic::Ordering;

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use super::version::Version;

/// One older version; opaque outside this module.
#[derive(Debug)]
pub(super) struct OldVersion {
    version: Version,
    /// The epoch of the commit that superseded it (invariant 4).
    superseded: u64,
    next: Atomic<OldVersion>,
}

/// The older versions of one node.
#[derive(Debug, Default)]
pub(super) struct OlderChain {
    head: Atomic<OldVersion>,
}

impl OlderChain {
    /// Raw head pointer, read inside the entry's seqlock read section.
    pub(super) fn head_relaxed<'g>(&self, guard: &'g Guard) -> Shared<'g, OldVersion> {
        self.head.load(Ordering::Relaxed, guard)
    }

    /// True when the chain is empty.
    pub(super) fn is_empty(&self, guard: &Guard) -> bool {
        self.head.load(Ordering::Acquire, guard).is_null()
    }

    /// Puts `version`, superseded by the commit at epoch `superseded`, in front (writer only).
    pub(super) fn push(&self, version: Version, superseded: u64, guard: &Guard) {
        let old_head = self.head.load(Ordering::Relaxed, guard);
        let node = Owned::new(OldVersion {
            version,
            superseded,
            next: Atomic::null(),
        });
        node.next.store(old_head, Ordering::Relaxed);
        self.head.store(node, Ordering::Release);
    }

    /// Unlinks every version superseded at or before `min_epoch`, which no snapshot at
    /// `min_epoch` or later can read (invariant 4), and returns them (writer only). Those are a
    /// suffix of the chain: `superseded` does not grow towards its tail (invariant 1).
    pub(super) fn trim(&self, min_epoch: u64, guard: &Guard) -> Vec<Version> {
        let mut link = &self.head;
        loop {
            let node = link.load(Ordering::Acquire, guard);
            // SAFETY: loaded under `guard`; nodes are destroyed only after being unlinked and the
            // guard epoch passing (invariant 3).
            let Some(node) = (unsafe { node.as_ref() }) else {
                return Vec::new();
            };
            if node.superseded <= min_epoch {
                return Self::detach(link, guard);
            }
            link = &node.next;
        }
    }

    /// Unlinks and returns the whole chain (writer only).
    pub(super) fn take_all(&self, guard: &Guard) -> Vec<Version> {
        Self::detach(&self.head, guard)
    }

    fn detach(link: &Atomic<OldVersion>, guard: &Guard) -> Vec<Version> {
        let mut out = Vec::new();
        let mut cur = link.swap(Shared::null(), Ordering::AcqRel, guard);
        while !cur.is_null() {
            // SAFETY: `cur` was reachable from the chain when loaded under `guard`; it is
            // destroyed only through `defer_destroy` below, after readers' guards drop.
            let node = unsafe { cur.deref() };
            out.push(node.version);
            let next = node.next.load(Ordering::Acquire, guard);
            // SAFETY: `cur` is now unreachable from the table (its predecessor link was cleared
            // before), so no new reader can find it; existing readers are protected by epoch.
            unsafe { guard.defer_destroy(cur) };
            cur = next;
        }
        out
    }

}

/// The versions of the chain starting at `head`, newest first.
pub(super) fn versions_from<'g>(
    head: Shared<'g, OldVersion>,
    guard: &'g Guard,
) -> impl Iterator<Item = Version> + 'g {
    let mut cur = head;
    std::iter::from_fn(move || {
        // SAFETY: loaded under `guard` (invariant 3); the pointer was published with Release
        // and the seqlock read ended with an Acquire fence, so the node's fields are initialised.
        let node = unsafe { cur.as_ref() }?;
        cur = node.next.load(Ordering::Acquire, guard);
        Some(node.version)
    })
}

impl Drop for OlderChain {
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no reader can reach the chain any more (the table is being
        // dropped), so the nodes can be freed at once.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        let mut cur = self.head.swap(Shared::null(), Ordering::AcqRel, guard);
        while !cur.is_null() {
            // SAFETY: as above; each node is reached exactly once and owned by the chain.
            let owned = unsafe { cur.into_owned() };
            cur = owned.next.load(Ordering::Relaxed, guard);
        }
    }
}

/// The newest version in the chain starting at `head` whose birth is at or below `epoch`.
pub(super) fn find_visible(
    head: Shared<'_, OldVersion>,
    epoch: u64,
    guard: &Guard,
) -> Option<Version> {
    versions_from(head, guard).find(|v| v.birth <= epoch)
}
