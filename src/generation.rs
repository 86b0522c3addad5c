//! A generation counter that threads sleep on until it reaches a value: how the followers of a
//! group sync (the log's group commit, the runtime's group flush) wait for their leader.
//!
//! The leader raises the generation, bumps a futex word and wakes every sleeper with one call. A
//! sleeper reads the word before checking the generation, so a wake between its check and its
//! sleep is never missed, and a spurious wake-up just checks again.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

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
