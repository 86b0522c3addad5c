//! A generation counter that threads sleep on until it reaches a value: how the followers of a
//! group sync (the log's group commit, the runtime's group flush) wait for their leader.
//!
//! The leader raises the generation, bumps a futex word and wakes every sleeper with one call. A
//! sleeper reads the word before checking the generation, so a wake between its check and its
//! sleep is never missed, and a spurious wake-up just checks again.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Threads spinning in [`spin_until`] now, process-wide.
static SPINNERS: AtomicUsize = AtomicUsize::new(0);

/// How many threads may spin at once: one fewer than the cores, so a core is always left for
/// the threads doing work.
fn spinners_max() -> usize {
    static MAX: OnceLock<usize> = OnceLock::new();
    *MAX.get_or_init(|| std::thread::available_parallelism().map_or(0, |n| n.get() - 1))
}

/// The cores of the machine (1 if unknown).
pub(crate) fn cores() -> usize {
    spinners_max() + 1
}

/// Spins until `done` or for at most `max`, if a spinner's place is free (see
/// [`spinners_max`]): `Some(whether done came true)`, or `None` at once when no place was free.
/// A caller spins only where no thread it waits for needs the core: a sleeping thread woken by a
/// futex took tens of microseconds to run again on the project's VM, on the critical path of the
/// next group commit.
pub(crate) fn spin_until(max: Duration, done: impl FnMut() -> bool) -> Option<bool> {
    spin_counted(&SPINNERS, spinners_max(), max, done)
}

/// [`spin_until`] with its spinner count and limit given.
fn spin_counted(
    spinners: &AtomicUsize,
    spinners_max: usize,
    max: Duration,
    mut done: impl FnMut() -> bool,
) -> Option<bool> {
    /// Gives the place back however the spin ends (a panicking `done` included).
    struct Place<'a>(&'a AtomicUsize);
    impl Drop for Place<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }
    let taken = spinners.fetch_add(1, Ordering::AcqRel);
    let _place = Place(spinners);
    (taken < spinners_max).then(|| {
        let start = Instant::now();
        let mut finished = done();
        while !finished && start.elapsed() < max {
            for _ in 0..32 {
                std::hint::spin_loop();
            }
            finished = done();
        }
        finished
    })
}

/// The generation of the last finished group operation, with its wake-up word.
#[derive(Debug, Default)]
pub(crate) struct Generation {
    finished: AtomicU64,
    word: AtomicU32,
}

impl Generation {
    /// Sleeps until generation `generation` has finished.
    pub(crate) fn wait_for(&self, generation: u64) {
        loop {
            let word = self.word.load(Ordering::Acquire);
            if self.finished.load(Ordering::Acquire) >= generation {
                return;
            }
            atomic_wait::wait(&self.word, word);
        }
    }

    /// True once `generation` has finished.
    pub(crate) fn has_finished(&self, generation: u64) -> bool {
        self.finished.load(Ordering::Acquire) >= generation
    }

    /// Records that `generation` has finished. Returns whether sleepers must be woken with
    /// [`Generation::wake_all`] (`sleepers` says if any registered to wait for it); the caller
    /// may wake them after releasing its locks.
    pub(crate) fn finish(&self, generation: u64, sleepers: bool) -> bool {
        self.finished.store(generation, Ordering::Release);
        self.word.fetch_add(1, Ordering::Release);
        sleepers
    }

    /// Wakes every sleeper.
    pub(crate) fn wake_all(&self) {
        atomic_wait::wake_all(&self.word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spin_ends_when_done_or_at_its_bound_and_only_with_a_free_place() {
        let spinners = AtomicUsize::new(0);
        let flag = std::sync::atomic::AtomicBool::new(false);
        let long = Duration::from_secs(5);
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(2));
                flag.store(true, Ordering::Release);
            });
            spin_counted(&spinners, 1, long, || flag.load(Ordering::Acquire))
        });
        assert_eq!(outcome, Some(true));
        let start = Instant::now();
        let bound = Duration::from_millis(3);
        assert_eq!(spin_counted(&spinners, 1, bound, || false), Some(false));
        assert!(start.elapsed() >= bound);
        // No place free (one spinner already, at most one): no spin, and the count is restored.
        spinners.store(1, Ordering::Release);
        let mut calls = 0;
        let none = spin_counted(&spinners, 1, long, || {
            calls += 1;
            true
        });
        assert_eq!((none, calls), (None, 0));
        assert_eq!(spinners.load(Ordering::Acquire), 1);
        assert_eq!(spin_counted(&spinners, 0, long, || true), None);
        // A `done` that panics gives its place back too.
        spinners.store(0, Ordering::Release);
        let panicked = std::panic::catch_unwind(|| {
            spin_counted(&spinners, 1, long, || panic!("done failed"));
        });
        assert!(panicked.is_err());
        assert_eq!(spinners.load(Ordering::Acquire), 0);
    }

    #[test]
    fn sleepers_wake_once_their_generation_finished() {
        let g = Generation::default();
        g.wait_for(0);
        std::thread::scope(|s| {
            let waiters: Vec<_> = (1..=3u64)
                .map(|n| {
                    let g = &g;
                    s.spawn(move || {
                        g.wait_for(n);
                        n
                    })
                })
                .collect();
            for n in 1..=3 {
                std::thread::sleep(std::time::Duration::from_millis(5));
                if g.finish(n, true) {
                    g.wake_all();
                }
            }
            let woke: Vec<u64> = waiters.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(woke, vec![1, 2, 3]);
        });
        assert_eq!(g.finished.load(Ordering::Acquire), 3);
    }
}
