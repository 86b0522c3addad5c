//! Group flush: one leader at a time makes every buffered commit durable for all who wait.
//!
//! A STRICT or BALANCED committer whose epoch is not yet durable either *leads* a flush (when
//! none is in flight): it gathers, takes the whole commit buffer, syncs the data files if a record
//! needs it, appends the records, syncs the log and publishes; or it *follows* the flush in
//! flight, parked on a futex word, and returns as soon as that flush finishes if it covered its
//! epoch (a flush covers every record buffered before its leader took the buffer). So each flush
//! costs at most one data sync and one log sync, however many commits it makes durable
//! (`design/DURABILITY.md` §6, F1–F5).
//!
//! Like the log's group commit (`src/log/commit.rs`), a new leader first *gathers*: it waits
//! until as many commits were buffered since the last flush finished as that flush released
//! committers, or at most as long as the last flush took. Without it the first committer back
//! would lead a flush of one record and the rest would wait for the next.
//!
//! When the last flush released no more committers than the machine has cores, a follower spins
//! for the flush in flight and a gathering leader for the committers it waits for, instead of
//! sleeping (`generation::spin_until`, at most one spinner fewer than the cores): each committer
//! then has a core, and the futex wake-up a sleeper needs, tens of microseconds on the project's
//! VM, was on the next flush's critical path. Measured with `vellum bench durable` (BALANCED,
//! 5 s cells, alternating builds): 2 threads 4 970-5 259 -> 6 117-6 457 commits/s; 1, 4 and 16
//! threads within noise. With more committers than cores everyone sleeps as before: spinning
//! there measured 16 threads 12 100 -> 9 300.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use crate::generation::{Generation, cores, spin_until};

/// The longest a follower spins for the flush in flight, or a gathering leader for the
/// committers it waits for, before it sleeps (about two syncs of the project's virtual disk; a
/// longer wait costs a spinning core at most this).
const SPIN_MAX: Duration = Duration::from_micros(300);

/// The leader role and the wake-up word of the runtime's flushes.
#[derive(Debug, Default)]
pub(crate) struct GroupFlush {
    state: Mutex<FlushState>,
    /// Commits buffered so far (STRICT, BALANCED and EVENTUAL alike).
    buffered: AtomicU64,
    /// True while a leader gathers, so `note_buffered` knows to look for it.
    gathering: AtomicBool,
    /// The generation of the last flush that finished (successfully or not); followers sleep on
    /// it.
    finished: Generation,
}

#[derive(Debug, Default)]
struct FlushState {
    in_flight: Option<Flight>,
    /// The generation the next flush gets (generations start at 1).
    next_gen: u64,
    /// Followers waiting on the flush in flight that it probably covers.
    covered_waiters: usize,
    /// Followers waiting on the flush in flight (woken by one call when it finishes; none, no
    /// call).
    parked: usize,
    /// Committers the last finished flush released (its covered followers and its leader).
    returning: u64,
    /// `buffered` when the last flush finished.
    buffered_at_release: u64,
    /// How long the last flush took: the most a leader gathers.
    last_flush: Duration,
    /// A leader parked while gathering.
    gatherer: Option<Thread>,
}

impl FlushState {
    /// Whether a waiting committer may spin rather than sleep: when the last flush released no
    /// more committers than there are cores, each has a core of its own, so a spin takes none
    /// from the others and saves the wake-up (tens of microseconds on the project's VM) that
    /// would otherwise delay the next flush. With more committers than cores, a woken or
    /// still-running one would wait for the spinner's core, so they sleep.
    fn committers_fit_cores(&self) -> bool {
        self.returning <= cores() as u64
    }
}

#[derive(Debug, Clone, Copy)]
struct Flight {
    gen_: u64,
    /// The newest epoch the flush covers; `None` while its leader gathers (it will cover every
    /// record buffered by then).
    covers: Option<u64>,
}

/// What a committer waiting for `epoch` does next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The epoch is durable, or a flush that covered it has finished (its outcome is in the
    /// poison flag).
    Covered,
    /// Lead flush `gen`: take the buffer, `set_covers`, flush, `finish`.
    Lead(u64),
    /// A flush finished that may not have covered the epoch: look again.
    Retry,
}

impl GroupFlush {
    /// Counts a buffered commit and wakes a gathering leader whose count it completes.
    pub(crate) fn note_buffered(&self) {
        let n = self.buffered.fetch_add(1, Ordering::SeqCst) + 1;
        if self.gathering.load(Ordering::SeqCst) {
            let mut st = self.state.lock();
            if n.saturating_sub(st.buffered_at_release) >= st.returning
                && let Some(leader) = st.gatherer.take()
            {
                leader.unpark();
            }
        }
    }

    /// Follows the flush in flight (parking until it finishes) or takes the leader role.
    /// `is_durable` is checked under the state lock, so a flush that finished meanwhile is seen.
    pub(crate) fn join(&self, epoch: u64, is_durable: impl Fn() -> bool) -> Role {
        let mut st = self.state.lock();
        if is_durable() {
            return Role::Covered;
        }
        if let Some(flight) = st.in_flight {
            // Only a flush that has taken the buffer knows what it covers (`covers` is set after
            // the take, and a take may be under way that this record missed). So a follower
            // returns at once only on a known cover, and otherwise looks again after the flush,
            // usually finding its epoch durable. `likely` only tunes gathering.
            let covered = flight.covers.is_some_and(|c| epoch <= c);
            let likely = flight.covers.is_none_or(|c| epoch <= c);
            st.covered_waiters += usize::from(likely);
            let spin = st.committers_fit_cores();
            st.parked += 1;
            drop(st);
            let done = || self.finished.has_finished(flight.gen_);
            if !(spin && spin_until(SPIN_MAX, done) == Some(true)) {
                self.finished.wait_for(flight.gen_);
            }
            return if covered { Role::Covered } else { Role::Retry };
        }
        st.next_gen += 1;
        let gen_ = st.next_gen;
        st.in_flight = Some(Flight { gen_, covers: None });
        self.gather(&mut st);
        Role::Lead(gen_)
    }

    /// The leader took the buffer: its flush covers every epoch up to `epoch`.
    pub(crate) fn set_covers(&self, gen_: u64, epoch: u64) {
        let mut st = self.state.lock();
        if let Some(flight) = st.in_flight.as_mut().filter(|f| f.gen_ == gen_) {
            flight.covers = Some(epoch);
        }
    }

    /// The leader's flush `gen_` has finished (its outcome published): wakes every follower.
    pub(crate) fn finish(&self, gen_: u64, started: Instant) {
        let mut st = self.state.lock();
        st.in_flight = None;
        st.last_flush = started.elapsed();
        st.returning = std::mem::take(&mut st.covered_waiters) as u64 + 1;
        st.buffered_at_release = self.buffered.load(Ordering::SeqCst);
        let parked = std::mem::take(&mut st.parked);
        let wake = self.finished.finish(gen_, parked > 0);
        drop(st);
        if wake {
            self.finished.wake_all();
        }
    }

    /// Lets the committers the last flush released buffer their next commits before the leader
    /// takes the buffer, waiting at most as long as the last flush took. A lone committer's own
    /// commit is the one expected, so it never waits.
    fn gather(&self, st: &mut MutexGuard<'_, FlushState>) {
        let deadline = Instant::now() + st.last_flush;
        self.gathering.store(true, Ordering::SeqCst);
        let mut spun = false;
        loop {
            let arrived = self
                .buffered
                .load(Ordering::SeqCst)
                .saturating_sub(st.buffered_at_release);
            if arrived >= st.returning {
                break;
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            // One spin of at most `SPIN_MAX`, then the loop looks again under the lock: an
            // arrival while it was released found no gatherer to unpark, so only a count read
            // under the lock, with `gatherer` set in the same hold, may decide to park.
            if !spun && st.committers_fit_cores() {
                spun = true;
                let (returning, at_release) = (st.returning, st.buffered_at_release);
                let arrived_all = || {
                    self.buffered
                        .load(Ordering::SeqCst)
                        .saturating_sub(at_release)
                        >= returning
                };
                MutexGuard::unlocked(st, || spin_until(left.min(SPIN_MAX), arrived_all));
                continue;
            }
            st.gatherer = Some(std::thread::current());
            MutexGuard::unlocked(st, || std::thread::park_timeout(left));
        }
        st.gatherer = None;
        self.gathering.store(false, Ordering::SeqCst);
    }
}
