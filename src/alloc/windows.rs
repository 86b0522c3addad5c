//! Windows: the mapped pieces of one data file, installed on demand and evicted in LRU order.
//!
//! This module is allowed `unsafe` for two things only: dereferencing window pointers loaded
//! under an epoch guard, and borrowing mapped bytes. The soundness argument:
//! 1. *A window stays mapped while anyone can use it.* A window is reached only through its
//!    file's `slots` array, loaded under a `crossbeam-epoch` guard; eviction unlinks it first and
//!    then hands it to `defer_destroy`, so the `Mapping` (and with it the `munmap`) is dropped only
//!    after every guard that could have loaded the pointer is gone. A [`WindowPin`] borrows the
//!    guard, so a pin outlives neither the guard nor the window: windows are never unmapped while
//!    pinned.
//! 2. *Windows lie within the file.* Data files grow in whole windows (`DataFiles::ensure`) and are
//!    never shortened while the store is open (space goes back by hole punching, which keeps the
//!    length), so every window's range stays inside its file.
//! 3. *No byte is written while another thread reads or writes it.* A slot is written only by the
//!    writer that allocated it (the allocator never hands one slot to two holders) and read only
//!    after the version naming it was published; it is freed only when no snapshot can read it.
//!    `read`/`write` rely on that discipline, which the runtime enforces.

#![expect(
    unsafe_code,
    reason = "epoch-protected window pointers and borrowed mapped bytes; see the argument above"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_epoch::{Atomic, Guard, Owned, Shared};

use crate::error::Result;
use crate::io::Mapping;

/// Mapped-bytes accounting shared by every window of a store.
#[derive(Debug, Default)]
pub(super) struct MapAccount {
    /// Bytes of windows installed in some file's slot array.
    pub(super) installed_bytes: AtomicU64,
    /// Bytes still mapped: installed windows plus evicted ones waiting for readers to leave.
    pub(super) mapped_bytes: AtomicU64,
    /// Advanced on every install; windows record it when used, for LRU order.
    pub(super) tick: AtomicU64,
}

/// One mapped window.
#[derive(Debug)]
pub(super) struct Window {
    mapping: Mapping,
    last_used: AtomicU64,
    account: Arc<MapAccount>,
}

impl Drop for Window {
    fn drop(&mut self) {
        self.account
            .mapped_bytes
            .fetch_sub(self.mapping.len() as u64, Ordering::AcqRel);
    }
}

/// A borrowed window: valid while both the guard it was loaded under and the file it belongs to
/// live (rule 1; a file drops its windows at once, so the pin borrows the file too).
#[derive(Debug, Clone, Copy)]
pub struct WindowPin<'g> {
    window: &'g Window,
}

impl<'g> WindowPin<'g> {
    /// Borrows `len` bytes at `offset` in the window.
    ///
    /// The runtime's slot discipline (rule 3) guarantees no concurrent writer of these bytes.
    pub fn read(&self, offset: usize, len: usize) -> Result<&'g [u8]> {
        // SAFETY: the window lives as long as 'g (rule 1); no writer touches a readable slot
        // (rule 3); the range is bounds-checked by `slice`.
        unsafe { self.window.mapping.slice(offset, len) }
    }

    /// Copies `data` into the window at `offset`. The caller owns the slot (rule 3).
    pub fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        // SAFETY: the window lives as long as 'g (rule 1); the caller holds the slot exclusively
        // (rule 3); the range is bounds-checked by `slice_mut`.
        let dst = unsafe { self.window.mapping.slice_mut(offset, data.len()) }?;
        dst.copy_from_slice(data);
        Ok(())
    }

    /// Makes `[offset, offset + len)` of the window durable (widened to whole pages).
    pub fn flush(&self, offset: usize, len: usize) -> Result<()> {
        self.window.mapping.flush(offset, len)
    }
}

/// The window slots of one file.
#[derive(Debug)]
pub(super) struct WindowSlots {
    slots: Box<[Atomic<Window>]>,
}

impl WindowSlots {
    pub(super) fn new(count: usize) -> Self {
        WindowSlots {
            slots: (0..count).map(|_| Atomic::null()).collect(),
        }
    }

    /// The installed window at `index`, marking it used.
    pub(super) fn get<'g>(
        &'g self,
        index: usize,
        account: &MapAccount,
        guard: &'g Guard,
    ) -> Option<WindowPin<'g>> {
        let shared = self.slots.get(index)?.load(Ordering::Acquire, guard);
        // SAFETY: loaded under `guard`; windows are destroyed only through `defer_destroy` after
        // being unlinked (rule 1).
        let window = unsafe { shared.as_ref() }?;
        let now = account.tick.load(Ordering::Relaxed);
        if window.last_used.load(Ordering::Relaxed) != now {
            window.last_used.store(now, Ordering::Relaxed);
        }
        Some(WindowPin { window })
    }

    /// Installs `mapping` at `index` unless another thread got there first; returns the window
    /// now installed.
    pub(super) fn install<'g>(
        &'g self,
        index: usize,
        mapping: Mapping,
        account: &Arc<MapAccount>,
        guard: &'g Guard,
    ) -> Option<WindowPin<'g>> {
        let slot = self.slots.get(index)?;
        let bytes = mapping.len() as u64;
        account.mapped_bytes.fetch_add(bytes, Ordering::AcqRel);
        let tick = account.tick.fetch_add(1, Ordering::AcqRel) + 1;
        let new = Owned::new(Window {
            mapping,
            last_used: AtomicU64::new(tick),
            account: account.clone(),
        });
        match slot.compare_exchange(
            Shared::null(),
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
            guard,
        ) {
            Ok(installed) => {
                account.installed_bytes.fetch_add(bytes, Ordering::AcqRel);
                // SAFETY: just installed under `guard` (rule 1).
                unsafe { installed.as_ref() }.map(|window| WindowPin { window })
            }
            // Someone else installed one: ours is dropped (unmapped) here, never shared.
            Err(lost) => {
                drop(lost.new);
                self.get(index, account, guard)
            }
        }
    }

    /// `(index, last_used, bytes)` of every installed window.
    pub(super) fn installed(&self, guard: &Guard) -> Vec<(usize, u64, u64)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: loaded under `guard` (rule 1).
            if let Some(w) = unsafe { shared.as_ref() } {
                out.push((
                    i,
                    w.last_used.load(Ordering::Relaxed),
                    w.mapping.len() as u64,
                ));
            }
        }
        out
    }

    /// Unlinks the window at `index` if it is still the least recently used one seen
    /// (`last_used` unchanged); the unmap happens once no guard can reach it.
    pub(super) fn evict(
        &self,
        index: usize,
        last_used: u64,
        account: &MapAccount,
        guard: &Guard,
    ) -> bool {
        let Some(slot) = self.slots.get(index) else {
            return false;
        };
        let shared = slot.load(Ordering::Acquire, guard);
        // SAFETY: loaded under `guard` (rule 1).
        let Some(w) = (unsafe { shared.as_ref() }) else {
            return false;
        };
        if w.last_used.load(Ordering::Relaxed) != last_used {
            return false;
        }
        let bytes = w.mapping.len() as u64;
        if slot
            .compare_exchange(
                shared,
                Shared::null(),
                Ordering::AcqRel,
                Ordering::Acquire,
                guard,
            )
            .is_err()
        {
            return false;
        }
        account.installed_bytes.fetch_sub(bytes, Ordering::AcqRel);
        // SAFETY: unlinked above, so no new reader can load it; readers that already did hold
        // guards, and destruction waits for them (rule 1).
        unsafe { guard.defer_destroy(shared) };
        true
    }
}

impl Drop for WindowSlots {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the file is being dropped, so no guard can reach its windows.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for slot in self.slots.iter() {
            let shared = slot.swap(Shared::null(), Ordering::AcqRel, guard);
            if !shared.is_null() {
                // SAFETY: as above; each window is owned by exactly one slot.
                drop(unsafe { shared.into_owned() });
            }
        }
    }
}
