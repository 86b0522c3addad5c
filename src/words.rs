//! Large zeroed arrays of atomic words for structures' in-memory state (FasterKV's hash index
//! and hybrid-log page ring): memory the kernel zeroes on first touch (so an array costs
//! resident memory only where it is used) and, where the kernel allows, backed by transparent
//! huge pages (so a random access over hundreds of MiB misses the TLB far less often).
//!
//! This is one of the few modules allowed `unsafe`: it views an anonymous mapping as
//! `[AtomicU64]`. The soundness argument:
//! 1. *Valid, aligned, initialised memory.* The mapping is private, anonymous and `len * 8`
//!    bytes long; the kernel maps it zero-filled and page aligned, so every word is a valid
//!    `AtomicU64` (same size and alignment as `u64`, every bit pattern valid) at an 8-byte
//!    aligned address.
//! 2. *It lives as long as the borrow.* [`AtomicWords`] owns the `MmapMut` and never unmaps,
//!    remaps or resizes it; the slice borrows `&self`.
//! 3. *Every access is atomic.* The `MmapMut` is private to this module and no byte view of it
//!    is ever handed out, so all reads and writes of the memory go through the `AtomicU64`s,
//!    whose interior mutability makes shared mutation sound.
//! 4. *A prefetch touches nothing.* [`prefetch`] takes a reference, so its address is valid;
//!    the instruction only asks the cache to fetch the line and never faults, reads into a
//!    register or writes, so it cannot race with anything.

#![expect(
    unsafe_code,
    reason = "an anonymous mapping viewed as atomic words; see the soundness argument above"
)]

use std::sync::atomic::AtomicU64;

use memmap2::{Advice, MmapMut, MmapOptions};

use crate::error::{Error, Result};

/// Arrays at least this long ask for transparent huge pages.
const HUGE_PAGE_BYTES_MIN: usize = 2 << 20;

/// A fixed-length array of atomic words, zero at creation.
///
/// ```
/// use std::sync::atomic::Ordering::Relaxed;
/// let words = vellum::words::AtomicWords::zeroed(1 << 20)?;
/// assert_eq!(words.len(), 1 << 20);
/// words[7].store(42, Relaxed);
/// assert_eq!(words.iter().map(|w| w.load(Relaxed)).sum::<u64>(), 42);
/// # Ok::<(), vellum::Error>(())
/// ```
pub struct AtomicWords {
    map: Option<MmapMut>,
    len: usize,
}

impl std::fmt::Debug for AtomicWords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AtomicWords")
            .field("len", &self.len)
            .finish()
    }
}

impl AtomicWords {
    /// `len` words of 0. Fails only if the memory cannot be mapped (or `len * 8` overflows).
    pub fn zeroed(len: usize) -> Result<AtomicWords> {
        if len == 0 {
            return Ok(AtomicWords { map: None, len });
        }
        let bytes = len.checked_mul(8).ok_or_else(|| {
            Error::InvalidArgument(format!("{len} words do not fit the address space"))
        })?;
        let map = MmapOptions::new()
            .len(bytes)
            .map_anon()
            .map_err(|e| Error::InvalidArgument(format!("mapping {bytes} bytes: {e}")))?;
        if bytes >= HUGE_PAGE_BYTES_MIN {
            // Advice only: a kernel without transparent huge pages keeps small pages.
            if let Err(e) = map.advise(Advice::HugePage) {
                tracing::debug!(%e, bytes, "no transparent huge pages for an atomic-word array");
            }
        }
        Ok(AtomicWords {
            map: Some(map),
            len,
        })
    }

    /// The words.
    pub fn as_slice(&self) -> &[AtomicU64] {
        match &self.map {
            None => &[],
            // SAFETY: rules 1-3 of the module: `len * 8` valid, zero-initialised, page-aligned
            // bytes owned by `self.map` for the borrow of `self`, accessed only atomically.
            Some(map) => unsafe {
                std::slice::from_raw_parts(map.as_ptr().cast::<AtomicU64>(), self.len)
            },
        }
    }
}

/// Asks the CPU to bring `word`'s cache line in, without waiting for it: a structure that
/// knows the words its next operations will touch (FasterKV's batches: their index buckets and
/// records) issues these first, so the cache misses of several operations overlap instead of
/// following one another. A hint only: it changes no value, and does nothing on targets
/// without a prefetch instruction.
#[inline(always)]
pub fn prefetch(word: &AtomicU64) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    // SAFETY: rule 4 of the module; the target has SSE (checked by the `cfg`), the one
    // requirement of `_mm_prefetch`.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(word.as_ptr().cast_const().cast::<i8>());
    }
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = word;
}

impl std::ops::Deref for AtomicWords {
    type Target = [AtomicU64];

    fn deref(&self) -> &[AtomicU64] {
        self.as_slice()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::Relaxed;

    #[test]
    fn words_start_zero_and_are_shared_between_threads() {
        let words = AtomicWords::zeroed(3 << 20).unwrap();
        assert!(words.iter().all(|w| w.load(Relaxed) == 0));
        std::thread::scope(|s| {
            for t in 0..2u64 {
                let words = &words;
                s.spawn(move || {
                    for i in 0..1000 {
                        words[i].fetch_add(t + 1, Relaxed);
                    }
                });
            }
        });
        assert_eq!(words.iter().map(|w| w.load(Relaxed)).sum::<u64>(), 3000);
        assert_eq!(AtomicWords::zeroed(0).unwrap().len(), 0);
    }

    #[test]
    fn a_prefetch_changes_no_word() {
        let words = AtomicWords::zeroed(1024).unwrap();
        words[3].store(7, Relaxed);
        for w in words.iter() {
            prefetch(w);
        }
        assert_eq!(words[3].load(Relaxed), 7);
        assert_eq!(words.iter().map(|w| w.load(Relaxed)).sum::<u64>(), 7);
    }

    #[test]
    fn an_impossible_length_is_an_error() {
        match AtomicWords::zeroed(usize::MAX) {
            Err(Error::InvalidArgument(m)) => assert!(m.contains("do not fit"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
