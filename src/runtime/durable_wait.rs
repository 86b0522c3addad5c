//! Waiting until a commit epoch is durable without leading a flush: for structures that group
//! their own commits, an EVENTUAL commit's epoch is waited on until the flusher (or anyone
//! else's flush, sync or checkpoint) has made it durable.
//!
//! Invariants:
//! 1. The durable epoch only grows, and only `Engine::mark_durable` raises it; it calls
//!    [`DurableWaiters::notify`] right after.
//! 2. Setting the runtime's poison flag calls [`DurableWaiters::notify`] (the runtime's `Poison`
//!    is built with it as its wake-up), so a waiter never sleeps on a runtime that will not
//!    flush again.
//! 3. A waiter registers as a sleeper, then reads the wake-up word, then checks its condition,
//!    and sleeps only while the word still holds what it read; a notifier changes the state,
//!    then bumps the word, then wakes every sleeper if one is registered. The sleeper count and
//!    the word are read and written `SeqCst`, so in their single order either the notifier's
//!    read of the count comes after the waiter registered (it wakes the waiter, whose futex
//!    wait returns at once if the word already moved), or the waiter's read of the word comes
//!    after the bump: it synchronises with the bump and sees the new state. No waiter sleeps
//!    through a change that ends its wait.

use std::sync::atomic::{AtomicU32, Ordering};

use super::durable::Inner;
use crate::error::{Error, Result};

/// The wake-up word of threads waiting for the durable epoch to grow or the runtime to poison.
#[derive(Debug, Default)]
pub(crate) struct DurableWaiters {
    word: AtomicU32,
    sleepers: AtomicU32,
}

impl DurableWaiters {
    /// Wakes the waiters after a change of the durable epoch or the poison flag (invariant 3).
    pub(crate) fn notify(&self) {
        self.word.fetch_add(1, Ordering::SeqCst);
        if self.sleepers.load(Ordering::SeqCst) > 0 {
            atomic_wait::wake_all(&self.word);
        }
    }

    /// Sleeps until `done` returns `Some`, checking it again after every notification.
    fn wait_until<T>(&self, mut done: impl FnMut() -> Option<T>) -> T {
        if let Some(t) = done() {
            return t;
        }
        self.sleepers.fetch_add(1, Ordering::SeqCst);
        let t = loop {
            let word = self.word.load(Ordering::SeqCst);
            if let Some(t) = done() {
                break t;
            }
            atomic_wait::wait(&self.word, word);
        };
        self.sleepers.fetch_sub(1, Ordering::SeqCst);
        t
    }
}

/// Returns once commit epoch `epoch` is durable, with the durable epoch (at least `epoch`);
/// `Poisoned` if the runtime is poisoned before it is; `InvalidArgument` for an epoch beyond the
/// last commit. Never flushes.
pub(crate) fn wait_durable(inner: &Inner, epoch: u64) -> Result<u64> {
    let durable = || inner.durable_epoch.load(Ordering::Acquire);
    let now = durable();
    if now >= epoch {
        return Ok(now);
    }
    let committed = inner.commit.lock().next_epoch - 1;
    if epoch > committed {
        return Err(Error::InvalidArgument(format!(
            "epoch {epoch} was never committed (the last commit is epoch {committed})"
        )));
    }
    inner.durable_waiters.wait_until(|| {
        let now = durable();
        if now >= epoch {
            Some(Ok(now))
        } else {
            inner.poison.check().err().map(Err)
        }
    })
}
