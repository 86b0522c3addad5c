//! The overflow-bucket allocator: the buckets the index chains behind a full main bucket.
//!
//! Buckets live in pages of [`PAGE_BUCKETS`] buckets (32 KiB), allocated on demand up to
//! `pages_max`. A bucket is named by its index `i` (the index stores `1 + i` in an overflow
//! pointer, so 0 can mean "none").
//!
//! Invariants:
//! 1. Bucket `i` lives in page `i / PAGE_BUCKETS` at position `i % PAGE_BUCKETS`. A page is
//!    created (its `OnceLock` set) before any of its buckets is handed out and is dropped only
//!    with the allocator, so [`OverflowAllocator::bucket`] is a lock-free load that returns a
//!    reference stable for the allocator's life.
//! 2. Fresh buckets come from the bump pointer `next`, which stays at most
//!    `pages_max * PAGE_BUCKETS`; an allocation past that fails with
//!    [`IndexError::OverflowExhausted`] and changes nothing.
//! 3. Every bucket below `next` is in exactly one place: handed out, on the free list, or in a
//!    pending epoch action of [`OverflowAllocator::free_deferred`], which puts it on the free list
//!    only after every thread protected at the time of the free has left its region.
//! 4. A bucket handed out has all eight words 0: fresh pages are zero, and a bucket taken from
//!    the free list is zeroed first.

use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use super::index::{BUCKET_BYTES, BUCKET_WORDS, Bucket, BucketWords, IndexError};
use crate::epoch::Epoch;
use vellum::words::AtomicWords;

/// Buckets per overflow page.
pub const PAGE_BUCKETS: u64 = 512;

/// Bytes per overflow page: 32 KiB.
pub const PAGE_BYTES: u64 = PAGE_BUCKETS * BUCKET_BYTES as u64;

/// The largest `overflow_pages_max` accepted: 2^20 pages (32 GiB of overflow buckets; the page
/// directory, allocated up front, is then 24 MiB).
pub const PAGES_MAX_LIMIT: u64 = 1 << 20;

const _: () = assert!(PAGE_BYTES == 32 << 10);
// Overflow pointers keep their bucket index in 48 bits.
const _: () = assert!(PAGES_MAX_LIMIT * PAGE_BUCKETS < 1 << 48);

/// Overflow buckets: a page directory, a bump pointer and a free list.
pub(crate) struct OverflowAllocator {
    /// One slot per possible page, set once (invariant 1).
    pages: Box<[OnceLock<AtomicWords>]>,
    /// The next never-used bucket index (invariant 2).
    next: Mutex<u64>,
    /// Freed buckets; shared with deferred epoch actions (invariant 3).
    free: Arc<Mutex<Vec<u64>>>,
}

impl std::fmt::Debug for OverflowAllocator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverflowAllocator")
            .field("pages_max", &self.pages_max())
            .field("pages", &self.pages())
            .field("allocated", &self.allocated())
            .field("free_count", &self.free_count())
            .finish()
    }
}

impl OverflowAllocator {
    /// An allocator of at most `pages_max` pages (at most [`PAGES_MAX_LIMIT`]), none allocated.
    pub fn new(pages_max: u64) -> Result<OverflowAllocator, IndexError> {
        if pages_max > PAGES_MAX_LIMIT {
            return Err(IndexError::OverflowPagesMaxTooLarge {
                pages_max,
                limit: PAGES_MAX_LIMIT,
            });
        }
        Ok(OverflowAllocator {
            pages: (0..pages_max).map(|_| OnceLock::new()).collect(),
            next: Mutex::new(0),
            free: Arc::new(Mutex::new(Vec::new())),
        })
    }

    /// The most pages this allocator may hold.
    pub fn pages_max(&self) -> u64 {
        self.pages.len() as u64
    }

    /// A zeroed bucket (invariant 4): a freed one if any, else the next fresh one.
    pub fn alloc(&self) -> Result<(u64, &Bucket), IndexError> {
        let reused = self.free.lock().pop();
        if let Some(index) = reused {
            if let Some(bucket) = self.bucket(index) {
                bucket.zero();
                return Ok((index, bucket));
            }
            debug_assert!(false, "I1: free bucket {index} has no page");
        }
        self.alloc_fresh()
    }

    /// The bucket at the bump pointer, creating its page when it is the page's first.
    fn alloc_fresh(&self) -> Result<(u64, &Bucket), IndexError> {
        let mut next = self.next.lock();
        let index = *next;
        let page = index / PAGE_BUCKETS;
        let Some(slot) = self.pages.get(page as usize) else {
            // I2: past the last page nothing changes.
            return Err(IndexError::OverflowExhausted {
                pages_max: self.pages_max(),
            });
        };
        // I1: the page exists before its first bucket is handed out (made under `next`'s lock,
        // so no other thread sets it).
        if slot.get().is_none() {
            let words = PAGE_BUCKETS as usize * BUCKET_WORDS;
            let page = AtomicWords::zeroed(words).map_err(|e| IndexError::TableUnavailable {
                bytes: PAGE_BYTES,
                reason: e.to_string(),
            })?;
            if slot.set(page).is_err() {
                debug_assert!(
                    false,
                    "I1: page {page_no} set twice",
                    page_no = index / PAGE_BUCKETS
                );
            }
        }
        *next = index + 1;
        self.bucket(index)
            .map(|b| (index, b))
            .ok_or(IndexError::OverflowExhausted {
                pages_max: self.pages_max(),
            })
    }

    /// Returns `index` for reuse at once. The caller guarantees that no other thread can reach
    /// the bucket (it was never published, or the caller has exclusive access to the index).
    pub fn free(&self, index: u64) {
        debug_assert!(index < *self.next.lock());
        self.free.lock().push(index);
    }

    /// Returns `index` for reuse once every thread protected in `epoch` now has left (I3): for
    /// a bucket unlinked while other threads may still be reading it.
    #[cfg_attr(
        not(test),
        expect(
            dead_code,
            reason = "no index operation unlinks buckets concurrently yet; kept tested for one that will"
        )
    )]
    pub fn free_deferred(&self, index: u64, epoch: &Epoch) {
        debug_assert!(index < *self.next.lock());
        let free = Arc::clone(&self.free);
        epoch.bump_with(move || free.lock().push(index));
    }

    /// The bucket `index`, or `None` if no page holds it (never for a handed-out bucket, I1).
    pub fn bucket(&self, index: u64) -> Option<&Bucket> {
        let page = self.pages.get((index / PAGE_BUCKETS) as usize)?.get()?;
        page.as_chunks::<BUCKET_WORDS>()
            .0
            .get((index % PAGE_BUCKETS) as usize)
    }

    /// Buckets handed out and not freed (a bucket pending a deferred free counts as handed out).
    pub fn allocated(&self) -> u64 {
        let next = *self.next.lock();
        next - self.free_count()
    }

    /// Buckets on the free list.
    pub fn free_count(&self) -> u64 {
        self.free.lock().len() as u64
    }

    /// Pages allocated.
    pub fn pages(&self) -> u64 {
        self.next.lock().div_ceil(PAGE_BUCKETS)
    }

    /// Bytes of the allocated pages.
    pub fn page_bytes_total(&self) -> u64 {
        self.pages() * PAGE_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering::SeqCst;

    fn words(bucket: &Bucket) -> Vec<u64> {
        bucket.iter().map(|w| w.load(SeqCst)).collect()
    }

    #[test]
    fn bump_allocates_pages_on_demand() {
        let a = OverflowAllocator::new(2).unwrap();
        assert_eq!((a.pages(), a.allocated(), a.free_count()), (0, 0, 0));
        assert_eq!(a.alloc().unwrap().0, 0);
        assert_eq!(a.pages(), 1);
        for i in 1..PAGE_BUCKETS {
            assert_eq!(a.alloc().unwrap().0, i);
        }
        assert_eq!(a.pages(), 1);
        assert_eq!(a.alloc().unwrap().0, PAGE_BUCKETS);
        assert_eq!(a.pages(), 2);
        assert_eq!(a.allocated(), PAGE_BUCKETS + 1);
        assert_eq!(a.page_bytes_total(), 2 * 32768);
        assert!(a.bucket(PAGE_BUCKETS).is_some());
        assert!(a.bucket(PAGE_BUCKETS + 1).is_some(), "its page exists");
        assert!(a.bucket(2 * PAGE_BUCKETS).is_none(), "no third page");
    }

    #[test]
    fn exhaustion_is_an_error_that_changes_nothing() {
        let a = OverflowAllocator::new(1).unwrap();
        for i in 0..PAGE_BUCKETS {
            assert_eq!(a.alloc().unwrap().0, i);
        }
        for _ in 0..2 {
            assert!(matches!(
                a.alloc(),
                Err(IndexError::OverflowExhausted { pages_max: 1 })
            ));
        }
        assert_eq!((a.pages(), a.allocated()), (1, PAGE_BUCKETS));
        a.free(7);
        assert_eq!(a.alloc().unwrap().0, 7, "a freed bucket is still available");
        let none = OverflowAllocator::new(0).unwrap();
        assert!(matches!(
            none.alloc(),
            Err(IndexError::OverflowExhausted { pages_max: 0 })
        ));
    }

    #[test]
    fn pages_max_above_the_limit_is_refused() {
        assert!(matches!(
            OverflowAllocator::new(PAGES_MAX_LIMIT + 1),
            Err(IndexError::OverflowPagesMaxTooLarge {
                pages_max,
                limit: PAGES_MAX_LIMIT
            }) if pages_max == PAGES_MAX_LIMIT + 1
        ));
    }

    #[test]
    fn a_freed_bucket_is_zeroed_before_reuse() {
        let a = OverflowAllocator::new(1).unwrap();
        let i = a.alloc().unwrap().0;
        let _other = a.alloc().unwrap().0;
        let b = a.bucket(i).unwrap();
        for (n, w) in b.iter().enumerate() {
            w.store(n as u64 + 100, SeqCst);
        }
        a.free(i);
        assert_eq!((a.allocated(), a.free_count()), (1, 1));
        assert_eq!(
            a.alloc().unwrap().0,
            i,
            "the free list comes before the bump pointer"
        );
        assert_eq!(words(a.bucket(i).unwrap()), vec![0; 8]);
        assert_eq!((a.allocated(), a.free_count()), (2, 0));
    }

    #[test]
    fn a_deferred_free_waits_for_the_guards_entered_before_it() {
        let epoch = Epoch::new();
        let a = OverflowAllocator::new(1).unwrap();
        let i = a.alloc().unwrap().0;
        a.bucket(i).unwrap()[3].store(42, SeqCst);
        let reader = epoch.protect();
        a.free_deferred(i, &epoch);
        assert_eq!(epoch.pending(), 1);
        assert_eq!(a.free_count(), 0);
        assert_eq!(a.allocated(), 1, "pending, so still handed out");
        // While the reader is inside, the bucket is neither reused nor zeroed.
        let fresh = a.alloc().unwrap().0;
        assert_eq!(fresh, 1);
        assert_eq!(a.bucket(i).unwrap()[3].load(SeqCst), 42);
        // A guard entered after the free does not hold it back.
        let late = epoch.protect();
        assert_eq!(epoch.drain(), 0);
        drop(reader);
        assert_eq!(epoch.drain(), 1);
        assert_eq!(a.free_count(), 1);
        assert_eq!(a.alloc().unwrap().0, i);
        assert_eq!(words(a.bucket(i).unwrap()), vec![0; 8]);
        assert_eq!((a.allocated(), a.free_count(), a.pages()), (2, 0, 1));
        drop(late);
    }
}
