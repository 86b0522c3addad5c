//! Windows: the mapped pieces of one data file, installed on demand and evicted in LRU order.
//!
//! This module is allowed `unsafe` for two things only: dereferencing window pointers loaded
//! under an epoch guard, and borrowing mapped bytes. The soundness argument:
//! 1. *A window stays mapped while anyone can use it.* A window is reached only through its
//!    class's [`WindowDirectory`], loaded under a `crossbeam-epoch` guard; eviction unlinks it first and
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

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

/// A borrowed window: valid while both the guard it was loaded under and the directory it belongs
/// to live (rule 1; a directory drops its windows at once, so the pin borrows the directory too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowPin<'g> {
    window: &'g Window,
}

impl<'g> WindowPin<'g> {
    /// Borrows `len` bytes at `offset` in the window.
    ///
    /// The runtime's slot discipline (rule 3) guarantees no concurrent writer of these bytes.
    pub(crate) fn read(&self, offset: usize, len: usize) -> Result<&'g [u8]> {
        // SAFETY: the window lives as long as 'g (rule 1); no writer touches a readable slot
        // (rule 3); the range is bounds-checked by `slice`.
        unsafe { self.window.mapping.slice(offset, len) }
    }

    /// Borrows `len` bytes at `offset` in the window, or `None` if the range leaves the window.
    #[inline]
    pub(crate) fn read_if_in_range(&self, offset: usize, len: usize) -> Option<&'g [u8]> {
        // SAFETY: as for `read`; the range is bounds-checked by `slice_if_in_range`.
        unsafe { self.window.mapping.slice_if_in_range(offset, len) }
    }

    /// Zeroes the `len` bytes at `offset`, hands them to `fill` to write in place, then to
    /// `observe` as written. The caller holds the slot exclusively (rule 3), as for [`WindowPin::write`].
    pub(crate) fn fill<R>(
        &self,
        offset: usize,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        observe: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        // SAFETY: the window lives as long as 'g (rule 1); the caller holds the slot exclusively
        // (rule 3), so nobody else reads or writes these bytes while `fill` and `observe` run;
        // the range is bounds-checked by `slice_mut`.
        let dst = unsafe { self.window.mapping.slice_mut(offset, len) }?;
        dst.fill(0);
        fill(dst);
        Ok(observe(dst))
    }

    /// Copies `data` into the window at `offset`. The caller owns the slot (rule 3).
    pub(crate) fn write(&self, offset: usize, data: &[u8]) -> Result<()> {
        // SAFETY: the window lives as long as 'g (rule 1); the caller holds the slot exclusively
        // (rule 3); the range is bounds-checked by `slice_mut`.
        let dst = unsafe { self.window.mapping.slice_mut(offset, data.len()) }?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

/// Window slots a directory keeps in its fixed first array (16 GiB of 64 MiB windows).
const FIRST_SLOTS: usize = 256;
/// log2 of the slots in the first grown chunk.
const CHUNK0_SHIFT: u32 = 8;
/// Grown chunks per directory: with the first array, enough for every window a class can have
/// (`FILE_MAX + 1` files of at most `2^FILE_SHIFT_MAX` windows each).
const CHUNKS: usize = 32;
/// Largest `file_shift` a directory accepts (windows per file at most `2^20`; see
/// `DataFileOptions::validate`).
pub(super) const FILE_SHIFT_MAX: u32 = 20;
const _: () =
    assert!((1u64 << CHUNK0_SHIFT) * ((1 << CHUNKS) - 1) >= (1u64 << (FILE_SHIFT_MAX + 19)));

/// Chunk number and index within it of grown slot number `n` (counted from the end of the first
/// array).
fn chunk_of(n: u64) -> (usize, usize) {
    let k = 63 - ((n >> CHUNK0_SHIFT) + 1).leading_zeros();
    let first = (1u64 << CHUNK0_SHIFT) * ((1u64 << k) - 1);
    (k as usize, (n - first) as usize)
}

/// The window slots of one size class: window `index` of file `file` is slot
/// `(file << file_shift) | index`. The first 256 slots live in a fixed array (one load finds a
/// window); later ones in chunks of 256, 512, 1024, … that are allocated once and never move (two
/// loads). No lock either way.
#[derive(Debug)]
pub(super) struct WindowDirectory {
    /// log2 of this class's window size.
    window_shift: u32,
    /// log2 of the slots reserved per file (at least the windows a file can hold).
    file_shift: u32,
    first: Box<[Atomic<Window>; FIRST_SLOTS]>,
    chunks: [OnceLock<Box<[Atomic<Window>]>>; CHUNKS],
}

impl WindowDirectory {
    /// A directory for windows of `1 << window_shift` bytes in files of at most
    /// `windows_per_file` windows.
    pub(super) fn new(window_shift: u32, windows_per_file: u64) -> Self {
        let file_shift = windows_per_file.max(1).next_power_of_two().trailing_zeros();
        debug_assert!(file_shift <= FILE_SHIFT_MAX);
        WindowDirectory {
            window_shift,
            file_shift: file_shift.min(FILE_SHIFT_MAX),
            first: Box::new(std::array::from_fn(|_| Atomic::null())),
            chunks: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    /// log2 of the window size.
    #[inline]
    pub(super) fn window_shift(&self) -> u32 {
        self.window_shift
    }

    /// The slot number of the window holding byte `offset` of file `file`, if the offset lies
    /// within the slots reserved for that file.
    #[inline]
    pub(super) fn slot_number(&self, file: u32, offset: u64) -> Option<u64> {
        let index = offset >> self.window_shift;
        (index >> self.file_shift == 0).then_some((u64::from(file) << self.file_shift) | index)
    }

    #[inline]
    fn slot(&self, n: u64) -> Option<&Atomic<Window>> {
        match self.first.get(n as usize) {
            Some(slot) if n < FIRST_SLOTS as u64 => Some(slot),
            _ => self.grown_slot(n),
        }
    }

    #[cold]
    fn grown_slot(&self, n: u64) -> Option<&Atomic<Window>> {
        let (k, i) = chunk_of(n.checked_sub(FIRST_SLOTS as u64)?);
        self.chunks.get(k)?.get()?.get(i)
    }

    fn slot_or_grow(&self, n: u64) -> Option<&Atomic<Window>> {
        if n < FIRST_SLOTS as u64 {
            return self.first.get(n as usize);
        }
        let (k, i) = chunk_of(n - FIRST_SLOTS as u64);
        let chunk = self.chunks.get(k)?.get_or_init(|| {
            let len = 1usize << (CHUNK0_SHIFT as usize + k);
            (0..len).map(|_| Atomic::null()).collect()
        });
        chunk.get(i)
    }

    /// The installed window in slot `n`, marking it used.
    #[inline]
    pub(super) fn get<'g>(
        &'g self,
        n: u64,
        account: &MapAccount,
        guard: &'g Guard,
    ) -> Option<WindowPin<'g>> {
        let shared = self.slot(n)?.load(Ordering::Acquire, guard);
        // SAFETY: loaded under `guard`; windows are destroyed only through `defer_destroy` after
        // being unlinked (rule 1).
        let window = unsafe { shared.as_ref() }?;
        let now = account.tick.load(Ordering::Relaxed);
        if window.last_used.load(Ordering::Relaxed) != now {
            window.last_used.store(now, Ordering::Relaxed);
        }
        Some(WindowPin { window })
    }

    /// Installs `mapping` in slot `n` unless another thread got there first; returns the window
    /// now installed.
    pub(super) fn install<'g>(
        &'g self,
        n: u64,
        mapping: Mapping,
        account: &Arc<MapAccount>,
        guard: &'g Guard,
    ) -> Option<WindowPin<'g>> {
        let slot = self.slot_or_grow(n)?;
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
                self.get(n, account, guard)
            }
        }
    }

    fn slots(&self) -> impl Iterator<Item = (u64, &Atomic<Window>)> {
        let first = self.first.iter().enumerate().map(|(i, s)| (i as u64, s));
        let grown = self
            .chunks
            .iter()
            .enumerate()
            .filter_map(|(k, c)| c.get().map(|c| (k, c)))
            .flat_map(|(k, chunk)| {
                let start = FIRST_SLOTS as u64 + (1u64 << CHUNK0_SHIFT) * ((1u64 << k) - 1);
                chunk
                    .iter()
                    .enumerate()
                    .map(move |(i, slot)| (start + i as u64, slot))
            });
        first.chain(grown)
    }

    /// `(slot number, last_used)` of every installed window.
    pub(super) fn installed(&self, guard: &Guard) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (n, slot) in self.slots() {
            let shared = slot.load(Ordering::Acquire, guard);
            // SAFETY: loaded under `guard` (rule 1).
            if let Some(w) = unsafe { shared.as_ref() } {
                out.push((n, w.last_used.load(Ordering::Relaxed)));
            }
        }
        out
    }

    /// Unlinks the window in slot `n` if it is still the least recently used one seen
    /// (`last_used` unchanged); the unmap happens once no guard can reach it.
    pub(super) fn evict(
        &self,
        n: u64,
        last_used: u64,
        account: &MapAccount,
        guard: &Guard,
    ) -> bool {
        let Some(slot) = self.slot(n) else {
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

impl Drop for WindowDirectory {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: the store is being dropped, so no guard can reach its windows.
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for (_, slot) in self.slots() {
            let shared = slot.swap(Shared::null(), Ordering::AcqRel, guard);
            if !shared.is_null() {
                // SAFETY: as above; each window is owned by exactly one slot.
                drop(unsafe { shared.into_owned() });
            }
        }
    }
}
