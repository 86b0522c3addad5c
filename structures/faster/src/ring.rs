//! The in-memory page ring.
//!
//! Invariants:
//! 1. Page `p` lives in slot `p % memory_pages` while `resident == p + 1`; `resident == 0` means
//!    the slot holds no page.
//! 2. A slot is given to a new page only when `reusable` is set, which happens (a) at open for
//!    slots holding nothing, or (b) as an epoch-deferred action after its page was evicted; a
//!    page is evicted only after every byte of it is durable in its extents. So an unflushed
//!    page is never overwritten, and no protected reader copies from a slot being refilled.
//! 3. Bytes are stored as `AtomicU64` words (entries are 8-byte aligned), so concurrent writers
//!    of disjoint reservations and readers of published ones need no unsafe code; visibility of
//!    a reservation's words to readers comes from its writer leaving the epoch-protected region
//!    (a `SeqCst` store) before the commit that covers it settles the tail.
//! 4. Published words are never stored again while the slot holds their page, so the commit
//!    leader copies them straight into the page node's slot ([`Slot::copy_to`] inside
//!    `WriteTxn::alloc_with`): one copy, and no `unsafe` borrow of the words as bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

use vellum::words::AtomicWords;

/// One slot of the ring.
#[derive(Debug)]
pub(crate) struct Slot {
    /// `page + 1` of the page held, or 0.
    pub resident: AtomicU64,
    /// May be given to a new page.
    pub reusable: AtomicBool,
    /// Zeroed by the kernel and on huge pages where it allows (`vellum::words`).
    words: AtomicWords,
}

impl Slot {
    /// A slot of `page_bytes` zero bytes; fails only if the memory cannot be mapped.
    pub fn new(page_bytes: u32) -> vellum::Result<Slot> {
        Ok(Slot {
            resident: AtomicU64::new(0),
            reusable: AtomicBool::new(true),
            words: AtomicWords::zeroed(page_bytes as usize / 8)?,
        })
    }

    /// True while the slot holds `page`.
    pub fn holds(&self, page: u64) -> bool {
        self.resident.load(SeqCst) == page + 1
    }

    /// Stores `bytes` from byte `offset` (a multiple of 8); a last partial word is zero padded.
    pub fn write(&self, offset: usize, bytes: &[u8]) {
        debug_assert_eq!(offset % 8, 0);
        let mut w = offset / 8;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.words[w].store(u64::from_le_bytes(a), Relaxed);
            w += 1;
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut a = [0u8; 8];
            a[..rest.len()].copy_from_slice(rest);
            self.words[w].store(u64::from_le_bytes(a), Relaxed);
        }
    }

    /// Stores one word at byte `offset`.
    pub fn write_word(&self, offset: usize, word: u64) {
        self.words[offset / 8].store(word, Relaxed);
    }

    /// The word at byte `offset`.
    pub fn word(&self, offset: usize) -> u64 {
        self.words[offset / 8].load(Relaxed)
    }

    /// Appends `len` bytes from byte `offset` (a multiple of 8) to `out`.
    pub fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + len, 0);
        self.copy_to(offset, &mut out[start..]);
    }

    /// Copies the bytes from byte `offset` (a multiple of 8) into all of `out`, a word at a time
    /// with atomic loads, so it may run beside writers of other reservations.
    pub fn copy_to(&self, offset: usize, out: &mut [u8]) {
        debug_assert_eq!(offset % 8, 0);
        let first = offset / 8;
        let words = &self.words[first..first + out.len().div_ceil(8)];
        let mut chunks = out.chunks_exact_mut(8);
        for (c, w) in (&mut chunks).zip(words) {
            c.copy_from_slice(&w.load(Relaxed).to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if let Some(w) = words.last().filter(|_| !rest.is_empty()) {
            let n = rest.len();
            rest.copy_from_slice(&w.load(Relaxed).to_le_bytes()[..n]);
        }
    }

    /// Number of words.
    pub fn word_count(&self) -> usize {
        self.words.len()
    }

    /// The slot's words, for the record operations of the FasterKV hybrid log (which keep
    /// their own invariants over them: `kv/record/words.rs`).
    pub fn words(&self) -> &[AtomicU64] {
        &self.words
    }

    /// Stores 0 in every word: a slot given to a new FasterKV page starts zero, so a zero
    /// lengths word ends its records (`design/FORMAT.md` §9, KP3). Only while no thread can
    /// reach the slot (it is not reusable yet, and no page is resident).
    pub fn zero(&self) {
        for w in self.words.iter() {
            w.store(0, Relaxed);
        }
    }
}
