//! Group commit: the published written and durable positions, the leader role, and the poison
//! flag of a [`super::DeltaLog`].
//!
//! A caller of [`GroupCommit::sync_to`] whose position is not yet durable either becomes the
//! *leader* (when no sync is in flight): it writes the pending frames out (one `write_at` for every
//! frame appended since the last sync), reads the written end, runs one `sync_data` with no lock
//! held, and publishes the new durable position; or it becomes a *follower* of the sync in flight:
//! it parks until that sync finishes and, if the sync covered its position, returns without
//! touching the shared lock again, so every follower of a sync wakes and returns in parallel. One
//! `sync_data` thus serves every commit written before it started. The steps S1–S6 are those of
//! `design/DURABILITY.md` §4.
//!
//! Two measured choices shape this (ext4 on a 2-vCPU VM, 16 committing threads):
//! - Followers sleep on a futex word and are woken all at once by generation number (one wake
//!   call per sync; waking them one by one cost 7.85x instead of 7.96x at 16 threads), rather than
//!   queueing on a
//!   sync mutex or a condition variable: with a plain sync mutex, followers already covered had to
//!   take it one at a time and so waited behind the *next* leader's whole `fdatasync` (1.8 commits
//!   per `fdatasync`); with a condition variable they were woken one at a time through its mutex.
//! - A new leader first *gathers* (S3): it lets the committers that the previous sync released
//!   append again before it reads its target. Without that, committers split into two halves
//!   taking turns, and one `fdatasync` serves only about half of them (7.8 of 16); with it, 15.7.
//! - Appends do not write: the leader writes every pending frame with one `write_at` (S4). With a
//!   write per append, 16 committers made 16 writes per sync, each a syscall under the append
//!   lock; the median of five runs went from 7.62x to 8.09-8.28x one thread's commits/s.
//!
//! The shared state is guarded by one lock that is never held across I/O. Poisoning takes the same
//! lock, and publishing checks the flag under it, so once the log is poisoned the durable position
//! never advances again.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};

use super::writer::LogPosition;
use crate::error::{Error, Result};
use crate::generation::Generation;
use crate::io::StorageFile;
use crate::poison::Poison;

/// The positions and the leader role of one log, with its poison flag.
#[derive(Debug)]
pub(super) struct GroupCommit {
    shared: Mutex<Shared>,
    /// The generation of the last sync that finished (successfully or not). Followers sleep on
    /// it without the shared lock (a futex), so a leader wakes all of them with one call instead
    /// of one unpark each.
    finished: Generation,
    poison: Poison,
    /// `sync_data` calls that made frames durable.
    syncs: AtomicU64,
    /// The offset of `durable` in the current file, readable without the shared lock: A4 seals
    /// it into every frame (`durable_end`). Stored under the shared lock whenever `durable`
    /// changes; only ever a value `durable` held, so a stale read is still a true lower bound.
    durable_offset: AtomicU64,
}

/// What sync callers need to see; guarded by a lock held only briefly.
#[derive(Debug)]
struct Shared {
    /// The file frames are appended to now.
    file: Arc<dyn StorageFile>,
    /// The end of the last frame whose `write_at` returned.
    written: LogPosition,
    /// The end of the last frame appended (written out or still pending).
    appended: LogPosition,
    /// Everything up to here is durable.
    durable: LogPosition,
    /// The sync a leader (a `sync_to` caller or a rotation) is gathering for or running, if any.
    in_flight: Option<InFlight>,
    /// The generation the next sync gets; generations start at 1.
    next_gen: u64,
    /// How many followers waiting on the sync in flight it covers.
    covered_waiters: usize,
    /// How many callers wait on the sync in flight (woken by one call when it finishes; none,
    /// no call).
    parked: usize,
    /// Frames appended so far (written out or still pending).
    frames_written: u64,
    /// Committers the last finished sync released (its covered followers and its leader), which
    /// are expected to append again soon.
    returning: usize,
    /// `frames_written` when the last sync finished.
    frames_at_release: u64,
    /// How long the last `sync_data` took: the most a leader gathers.
    last_sync: Duration,
    /// A leader parked while gathering, unparked by the append that completes its count.
    gatherer: Option<Thread>,
}

impl Shared {
    /// True once as many frames arrived since the last sync finished as it released committers.
    fn gathered(&self) -> bool {
        self.frames_written.saturating_sub(self.frames_at_release) >= self.returning as u64
    }

    /// Registers a new sync in flight, its target not yet read, and returns its generation.
    fn begin_sync(&mut self) -> u64 {
        let gen_ = self.next_gen;
        self.next_gen += 1;
        self.in_flight = Some(InFlight {
            gen_,
            target: None,
            gathering: true,
        });
        gen_
    }
}

/// The sync in flight.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// Its generation: `finished_gen` reaches it when the sync has finished.
    gen_: u64,
    /// What it covers: `None` until its leader has written the pending frames out and read it.
    target: Option<LogPosition>,
    /// Its leader is still gathering: it will write out and cover everything appended by the
    /// time it stops, which includes every position appended now.
    gathering: bool,
}

impl GroupCommit {
    /// Group commit over `file`, in which everything up to `start` is durable.
    pub(super) fn new(file: Arc<dyn StorageFile>, start: LogPosition) -> GroupCommit {
        GroupCommit {
            shared: Mutex::new(Shared {
                file,
                written: start,
                appended: start,
                durable: start,
                in_flight: None,
                next_gen: 1,
                covered_waiters: 0,
                parked: 0,
                frames_written: 0,
                returning: 0,
                frames_at_release: 0,
                last_sync: Duration::ZERO,
                gatherer: None,
            }),
            finished: Generation::default(),
            poison: Poison::new(),
            syncs: AtomicU64::new(0),
            durable_offset: AtomicU64::new(start.offset),
        }
    }

    /// The durable offset in the file frames are appended to now (see `durable_offset`). The
    /// caller holds the append lock, so the file cannot change under it (a rotation switches
    /// files under that lock, R5).
    pub(super) fn durable_offset(&self) -> u64 {
        self.durable_offset.load(Ordering::Acquire)
    }

    /// `Err(Poisoned)` once the log is poisoned.
    pub(super) fn check(&self) -> Result<()> {
        self.poison.check()
    }

    /// True once the log is poisoned.
    pub(super) fn is_poisoned(&self) -> bool {
        self.poison.is_poisoned()
    }

    /// Poisons the log with `cause` and returns `cause` for the caller that hit it.
    pub(super) fn poison_with(&self, cause: Error) -> Error {
        let _shared = self.shared.lock();
        self.poison.poison(&cause);
        cause
    }

    /// A5: records that `frames` more frames were appended (written out or still pending), the
    /// last ending at `end`, and wakes a gathering leader whose count they complete. The caller
    /// holds the append lock, so `appended` only moves forward.
    pub(super) fn note_appended(&self, frames: u64, end: LogPosition) {
        let mut shared = self.shared.lock();
        shared.appended = end;
        shared.frames_written += frames;
        let gatherer = if shared.gathered() {
            shared.gatherer.take()
        } else {
            None
        };
        drop(shared);
        if let Some(leader) = gatherer {
            leader.unpark();
        }
    }

    /// W2: publishes that every frame up to `pos` has been written out. The caller holds the
    /// pending-frames lock, so `written` only ever moves forward over a gap-free prefix of
    /// completed writes.
    pub(super) fn publish_written(&self, pos: LogPosition) {
        self.shared.lock().written = pos;
    }

    /// Returns once everything up to `pos` (a position `append` returned) is durable.
    /// `write_out` writes the pending frames out (W1–W2); it must not wait for a sync in flight.
    pub(super) fn sync_to(
        &self,
        pos: LogPosition,
        write_out: &dyn Fn() -> Result<()>,
    ) -> Result<()> {
        let mut shared = self.shared.lock();
        loop {
            // S1.
            self.poison.check()?;
            if pos <= shared.durable {
                return Ok(());
            }
            if pos > shared.appended {
                return Err(Error::InvalidArgument(format!(
                    "sync_to({pos:?}) is past the appended end {:?}",
                    shared.appended
                )));
            }
            // S2: follow the sync in flight. If it covers `pos`, its outcome is ours: it either
            // publishes a durable position at or past `pos` or poisons the log, so once it has
            // finished the poison flag alone decides.
            if let Some(flight) = shared.in_flight {
                // A leader still gathering will write out and sync everything appended by then,
                // which includes `pos` (appended before this call); once it writes out, only its
                // target counts.
                let covered = match flight.target {
                    None => flight.gathering,
                    Some(target) => pos <= target,
                };
                shared.covered_waiters += usize::from(covered);
                shared.parked += 1;
                drop(shared);
                self.finished.wait_for(flight.gen_);
                if covered {
                    return self.poison.check();
                }
                shared = self.shared.lock();
                continue;
            }
            // S3: lead, after gathering.
            let gen_ = shared.begin_sync();
            self.gather(&mut shared);
            if let Some(flight) = shared.in_flight.as_mut() {
                flight.gathering = false;
            }
            // S4: write the pending frames out, then read `target`: `written` covers only frames
            // whose write has returned, so a sync that starts after this read makes all of them
            // durable.
            let written_out = MutexGuard::unlocked(&mut shared, write_out);
            let target = shared.written;
            let file = Arc::clone(&shared.file);
            self.lead_sync(&mut shared, gen_, file.as_ref(), target, written_out)?;
        }
    }

    /// R3: waits out any sync in flight, then syncs `file` as the leader and publishes `end`.
    pub(super) fn sync_file(&self, file: &dyn StorageFile, end: LogPosition) -> Result<()> {
        let mut shared = self.shared.lock();
        while let Some(flight) = shared.in_flight {
            shared.parked += 1;
            MutexGuard::unlocked(&mut shared, || self.finished.wait_for(flight.gen_));
        }
        let gen_ = shared.begin_sync();
        if let Some(flight) = shared.in_flight.as_mut() {
            flight.gathering = false;
        }
        // The caller (a rotation) wrote the pending frames out under the append lock.
        self.lead_sync(&mut shared, gen_, file, end, Ok(()))
    }

    /// R5: appends continue in `file`, where everything up to `start` (its header) is durable.
    pub(super) fn switch_file(&self, file: Arc<dyn StorageFile>, start: LogPosition) {
        let mut shared = self.shared.lock();
        shared.file = file;
        shared.written = start;
        shared.appended = start;
        if !self.poison.is_poisoned() {
            shared.durable = start;
            self.durable_offset.store(start.offset, Ordering::Release);
        }
    }

    /// The end of the last frame written.
    pub(super) fn written(&self) -> LogPosition {
        self.shared.lock().written
    }

    /// Everything up to here is durable.
    pub(super) fn durable(&self) -> LogPosition {
        self.shared.lock().durable
    }

    /// `sync_data` calls made so far.
    pub(super) fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// S3: lets the committers that the previous sync released append their next frames before
    /// the leader reads its target, so this sync covers them too.
    ///
    /// The leader waits until as many frames arrived since the last sync finished as it released
    /// committers, or for at most as long as that sync took (a committer that stopped committing
    /// costs one such wait, once). A lone committer's own new frame is the one expected, so it
    /// never waits. The leader parks meanwhile (spinning on `yield_now` took CPU and this lock from
    /// the very appenders it waited for), and the append that completes the count unparks it.
    fn gather(&self, shared: &mut MutexGuard<'_, Shared>) {
        let deadline = Instant::now() + shared.last_sync;
        while !shared.gathered() {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            shared.gatherer = Some(std::thread::current());
            MutexGuard::unlocked(shared, || std::thread::park_timeout(left));
        }
        shared.gatherer = None;
    }

    /// S4–S6: runs sync `gen_` as the leader. Syncs `file` with the shared lock released, then
    /// publishes `target` as durable (or poisons the log) and wakes every follower. The caller
    /// holds the shared lock, registered `gen_` as the sync in flight, wrote the pending frames out
    /// (`written_out` is how that went) and read `target` from `written` (or, rotating, holds the
    /// append lock, so nothing is appended past `target`).
    fn lead_sync(
        &self,
        shared: &mut MutexGuard<'_, Shared>,
        gen_: u64,
        file: &dyn StorageFile,
        target: LogPosition,
        written_out: Result<()>,
    ) -> Result<()> {
        shared.in_flight = Some(InFlight {
            gen_,
            target: Some(target),
            gathering: false,
        });
        // S5.
        let started = Instant::now();
        let result = written_out.and_then(|()| MutexGuard::unlocked(shared, || file.sync_data()));
        shared.last_sync = started.elapsed();
        // S6.
        let outcome = match result {
            Ok(()) => {
                self.syncs.fetch_add(1, Ordering::Relaxed);
                if !self.poison.is_poisoned() && target > shared.durable {
                    shared.durable = target;
                    self.durable_offset.store(target.offset, Ordering::Release);
                }
                self.poison.check()
            }
            Err(e) => {
                self.poison.poison(&e);
                Err(e)
            }
        };
        shared.in_flight = None;
        // The covered followers and this leader are the committers likely to append next.
        shared.returning = std::mem::take(&mut shared.covered_waiters) + 1;
        shared.frames_at_release = shared.frames_written;
        // Raised under the lock after publishing, so a follower that sees the sync finished also
        // sees the durable position or the poison flag it set.
        let parked = std::mem::take(&mut shared.parked);
        if self.finished.finish(gen_, parked > 0) {
            MutexGuard::unlocked(shared, || self.finished.wake_all());
        }
        outcome
    }
}
