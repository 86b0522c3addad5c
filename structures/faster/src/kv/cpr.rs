//! Concurrent Prefix Recovery: the checkpoint state machine that sessions cross cooperatively
//! (`design/ARCHITECTURE.md`, FasterKV checkpoints; `design/DURABILITY.md` §8).
//!
//! The store has a version `v` and a phase. A checkpoint of version `v`:
//! 1. **Prepare** (`v`): sessions acknowledge at the start of their next operation; they still run
//!    as version `v`.
//! 2. **In progress** (`v + 1`), once every session acknowledged: at the start of its next
//!    operation a session takes its *commit point* (its last serial number, and the serials of
//!    its operations still pending, which are excluded) and runs as `v + 1` from then on. A
//!    version `v + 1` operation never changes a record of an older version in place: it copies
//!    it to the tail (sealing a mutable one first, so a version `v` writer still at work on it
//!    starts again and meets the copy). A version `v` operation that meets a version `v + 1`
//!    record crosses to `v + 1` first (FASTER's CPR shift).
//! 3. **Wait flush** (`v + 1`), once every session crossed: no version `v` operation runs any
//!    more, so the checkpoint copies the changed index chunks, folds the log over (its tail page
//!    is closed and `read_only` moves to the tail), waits for the flusher to write every page
//!    below, and commits the checkpoint in one runtime transaction (`checkpoint.rs`).
//! 4. **Rest** (`v + 1`).
//!
//! A session that is idle ([`Session::idle`](super::Session::idle), or dropped) holds no epoch
//! protection and runs no operation: the coordinator crosses it itself, under the session's slot
//! lock, with the serial and pending operations it published when it went idle. A session
//! protected but not operating stalls the checkpoint (as it stalls eviction); `checkpoint`
//! warns about it after a while.
//!
//! Record versions are 8 bits (FORMAT.md §9), so they are compared only where they cannot have
//! wrapped: a record is of version `v + 1` only if its address is at or above the tail at which
//! the checkpoint began (`prepare_tail`).

use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// A checkpoint's phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum Phase {
    /// No checkpoint runs.
    #[default]
    Rest = 0,
    /// Sessions acknowledge the checkpoint; operations are of the old version.
    Prepare = 1,
    /// Sessions take their commit points and cross to the new version.
    InProgress = 2,
    /// Every session crossed: the checkpoint is written.
    WaitFlush = 3,
}

impl Phase {
    fn from_bits(bits: u64) -> Phase {
        match bits & 0xff {
            1 => Phase::Prepare,
            2 => Phase::InProgress,
            3 => Phase::WaitFlush,
            _ => Phase::Rest,
        }
    }
}

/// The store's phase and version, in one word (`version << 8 | phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CprState {
    pub phase: Phase,
    pub version: u32,
}

impl CprState {
    fn pack(self) -> u64 {
        u64::from(self.version) << 8 | self.phase as u64
    }

    /// The state's place in the cycle `Rest(v) -> Prepare(v) -> InProgress(v + 1) ->
    /// WaitFlush(v + 1) -> Rest(v + 1)`: a session at `WaitFlush(v + 1)` has not reached
    /// `Prepare(v + 1)` (it still copies records instead of shifting).
    fn ordinal(self) -> u64 {
        let v = u64::from(self.version);
        match self.phase {
            Phase::Rest => 4 * v,
            Phase::Prepare => 4 * v + 1,
            Phase::InProgress => 4 * v.saturating_sub(1) + 2,
            Phase::WaitFlush => 4 * v.saturating_sub(1) + 3,
        }
    }

    pub fn unpack_word(word: u64) -> CprState {
        CprState {
            phase: Phase::from_bits(word),
            version: (word >> 8) as u32,
        }
    }
}

/// A session's commit point in a checkpoint (FASTER's `CommitPoint`): the checkpoint holds every
/// operation of the session with a serial number up to `until_serial` except those in
/// `excluded` (pending when the session crossed), and none after.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitPoint {
    /// The last serial number the checkpoint covers.
    pub until_serial: u64,
    /// Serial numbers up to `until_serial` whose operations the checkpoint does not hold.
    pub excluded: Vec<u64>,
}

/// What a session's slot tells the coordinator.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    pub in_use: bool,
    pub name: Option<String>,
    /// Protected (between operations or in one): crosses phases itself.
    pub active: bool,
    /// The version and phase the session runs in.
    pub version: u32,
    pub phase: Phase,
    /// Dropped: crossed like an idle session, freed once a checkpoint recorded its commit point.
    pub departed: bool,
    /// Dropped before a checkpoint crossed it: free once that checkpoint is written.
    pub free_after_checkpoint: bool,
    /// Published when the session goes idle: its last serial and pending serials.
    pub serial: u64,
    pub pending: Vec<u64>,
    /// The commit point taken when the session crossed to `version`.
    pub commit: Option<CommitPoint>,
}

impl SlotState {
    /// Crosses an idle session to `state` (the coordinator's part of steps 1 and 2).
    fn cross_idle(&mut self, state: CprState) {
        if self.version < state.version {
            self.free_after_checkpoint = self.departed;
            self.commit = Some(CommitPoint {
                until_serial: self.serial,
                excluded: self.pending.clone(),
            });
            self.version = state.version;
        }
        self.phase = state.phase;
    }

    /// Whether the session is at `state` (crossed into it, or past it).
    fn reached(&self, state: CprState) -> bool {
        let mine = CprState {
            phase: self.phase,
            version: self.version,
        };
        mine.ordinal() >= state.ordinal()
    }
}

/// What [`Cpr::register`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registered {
    /// Slot and the serial the session continues after.
    Slot(usize, u64),
    /// A session of that name is open.
    InUse,
    /// Every slot is taken.
    Full,
}

/// How an operation may treat the newest record of its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Judged {
    /// Change it in place (where the region allows).
    InPlace,
    /// Copy it to the tail (it belongs to the checkpoint being taken).
    Copy,
    /// The record is of a newer version than the operation: the session crosses first.
    Shift,
}

/// The version an operation runs in, as its session saw the state machine when it began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpVersion {
    pub version: u32,
    /// Past Prepare: records of older versions are copied, not changed in place.
    pub strict: bool,
    /// The tail at which the running checkpoint began.
    pub prepare_tail: u64,
}

impl OpVersion {
    /// The version bits the operation's records carry.
    pub fn record_version(self) -> u8 {
        self.version as u8
    }

    /// What the operation may do with the newest record of its key at `address`, of record
    /// version `rv`.
    #[inline]
    pub fn judge(self, cpr: &Cpr, address: u64, rv: u8) -> Judged {
        let mine = rv == self.record_version() && address >= self.prepare_tail;
        if self.strict {
            return if mine { Judged::InPlace } else { Judged::Copy };
        }
        if rv == self.record_version() {
            return Judged::InPlace;
        }
        let global = cpr.state();
        let newer = rv == self.version.wrapping_add(1) as u8;
        if newer && global.version > self.version && address >= cpr.prepare_tail() {
            Judged::Shift
        } else {
            Judged::InPlace
        }
    }
}

/// The state machine's shared part.
#[derive(Debug)]
pub(crate) struct Cpr {
    state: AtomicU64,
    prepare_tail: AtomicU64,
    slots: Box<[Mutex<SlotState>]>,
    changed: Condvar,
    changed_lock: Mutex<()>,
    /// One checkpoint at a time.
    pub running: Mutex<()>,
}

impl Cpr {
    pub fn new(version: u32, slots: usize) -> Cpr {
        Cpr {
            state: AtomicU64::new(
                CprState {
                    phase: Phase::Rest,
                    version,
                }
                .pack(),
            ),
            prepare_tail: AtomicU64::new(0),
            slots: (0..slots)
                .map(|_| Mutex::new(SlotState::default()))
                .collect(),
            changed: Condvar::new(),
            changed_lock: Mutex::new(()),
            running: Mutex::new(()),
        }
    }

    #[inline]
    pub fn state_word(&self) -> u64 {
        self.state.load(SeqCst)
    }

    pub fn state(&self) -> CprState {
        CprState::unpack_word(self.state_word())
    }

    pub fn prepare_tail(&self) -> u64 {
        self.prepare_tail.load(SeqCst)
    }

    /// A slot for a session: the dropped session of the same `name` if there is one (it
    /// continues from its serial), or a free slot at the current version continuing after
    /// `serial`.
    pub fn register(&self, name: Option<&str>, serial: u64) -> Registered {
        if let Some(name) = name {
            for (i, slot) in self.slots.iter().enumerate() {
                let mut s = slot.lock();
                if s.in_use && s.name.as_deref() == Some(name) {
                    if !s.departed {
                        return Registered::InUse;
                    }
                    s.departed = false;
                    s.free_after_checkpoint = false;
                    return Registered::Slot(i, s.serial);
                }
            }
        }
        let state = self.state();
        for (i, slot) in self.slots.iter().enumerate() {
            let mut s = slot.lock();
            if s.in_use {
                continue;
            }
            *s = SlotState {
                in_use: true,
                name: name.map(str::to_owned),
                version: state.version,
                phase: state.phase,
                serial,
                ..SlotState::default()
            };
            return Registered::Slot(i, serial);
        }
        Registered::Full
    }

    /// Frees slot `i`.
    pub fn release(&self, i: usize) {
        *self.slots[i].lock() = SlotState::default();
    }

    pub fn slot(&self, i: usize) -> parking_lot::MutexGuard<'_, SlotState> {
        self.slots[i].lock()
    }

    /// Wakes a coordinator waiting for sessions to cross.
    pub fn notify(&self) {
        let _l = self.changed_lock.lock();
        self.changed.notify_all();
    }

    /// Step 1 or 2 for every session: moves the store to `state`, then waits until every
    /// session reached it, crossing idle ones itself.
    pub fn advance_to(&self, state: CprState) {
        self.state.store(state.pack(), SeqCst);
        let mut waited = Duration::ZERO;
        let step = Duration::from_millis(1);
        loop {
            let mut behind = 0;
            for slot in self.slots.iter() {
                let mut s = slot.lock();
                if !s.in_use || s.reached(state) {
                    continue;
                }
                if s.active {
                    behind += 1;
                } else {
                    s.cross_idle(state);
                }
            }
            if behind == 0 {
                return;
            }
            let mut l = self.changed_lock.lock();
            self.changed.wait_for(&mut l, step);
            waited += step;
            if waited.as_millis().is_multiple_of(10_000) {
                tracing::warn!(
                    behind,
                    ?state,
                    "a FasterKV checkpoint waits for sessions that are protected but run no \
                     operation: call Session::idle on sessions left unused"
                );
            }
        }
    }

    /// Begins a checkpoint of the current version at log tail `tail`; returns the version.
    pub fn prepare(&self, tail: u64) -> u32 {
        let v = self.state().version;
        self.prepare_tail.store(tail, SeqCst);
        self.advance_to(CprState {
            phase: Phase::Prepare,
            version: v,
        });
        v
    }

    /// The commit points the sessions took when they crossed to `version`, with their names.
    pub fn take_commit_points(&self, version: u32) -> Vec<(usize, Option<String>, CommitPoint)> {
        let mut out = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            let mut s = slot.lock();
            if s.in_use
                && s.version >= version
                && let Some(c) = s.commit.take()
            {
                out.push((i, s.name.clone(), c));
            }
        }
        out
    }

    /// Ends the checkpoint: the store rests at `version` (sessions need not acknowledge it: the
    /// next Prepare waits for them); the slots of dropped sessions whose commit points it
    /// recorded are freed.
    pub fn rest(&self, version: u32) {
        let state = CprState {
            phase: Phase::Rest,
            version,
        };
        self.state.store(state.pack(), SeqCst);
        for slot in self.slots.iter() {
            let mut s = slot.lock();
            if s.in_use && s.free_after_checkpoint && s.commit.is_none() {
                *s = SlotState::default();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(phase: Phase, version: u32) -> CprState {
        CprState { phase, version }
    }

    #[test]
    fn the_cycle_orders_states_so_a_copying_session_has_not_reached_the_next_prepare() {
        let cycle = [
            at(Phase::Rest, 4),
            at(Phase::Prepare, 4),
            at(Phase::InProgress, 5),
            at(Phase::WaitFlush, 5),
            at(Phase::Rest, 5),
            at(Phase::Prepare, 5),
            at(Phase::InProgress, 6),
        ];
        for w in cycle.windows(2) {
            assert!(
                w[0].ordinal() < w[1].ordinal(),
                "{:?} before {:?}",
                w[0],
                w[1]
            );
        }
        let slot = SlotState {
            in_use: true,
            phase: Phase::WaitFlush,
            version: 5,
            ..SlotState::default()
        };
        assert!(slot.reached(at(Phase::WaitFlush, 5)));
        assert!(!slot.reached(at(Phase::Prepare, 5)));
        for s in cycle {
            assert_eq!(CprState::unpack_word(s.pack()), s);
        }
    }

    #[test]
    fn an_idle_session_crosses_with_its_published_serial_and_pending_excluded() {
        let mut slot = SlotState {
            in_use: true,
            version: 2,
            serial: 41,
            pending: vec![39, 40],
            ..SlotState::default()
        };
        slot.cross_idle(at(Phase::Prepare, 2));
        assert_eq!(
            (slot.phase, slot.version, slot.commit.clone()),
            (Phase::Prepare, 2, None)
        );
        slot.cross_idle(at(Phase::InProgress, 3));
        assert_eq!(slot.version, 3);
        let commit = CommitPoint {
            until_serial: 41,
            excluded: vec![39, 40],
        };
        assert_eq!(slot.commit, Some(commit));
    }

    #[test]
    fn a_newer_record_shifts_only_an_old_version_operation_of_a_running_checkpoint() {
        let cpr = Cpr::new(7, 4);
        let old = OpVersion {
            version: 7,
            strict: false,
            prepare_tail: 0,
        };
        // At rest, a record whose bits read as version 8 is an old one (wrapped): in place.
        assert_eq!(old.judge(&cpr, 5000, 8), Judged::InPlace);
        cpr.prepare_tail.store(4096, SeqCst);
        cpr.state.store(at(Phase::InProgress, 8).pack(), SeqCst);
        assert_eq!(old.judge(&cpr, 5000, 8), Judged::Shift);
        assert_eq!(
            old.judge(&cpr, 4000, 8),
            Judged::InPlace,
            "below prepare_tail: old"
        );
        assert_eq!(old.judge(&cpr, 5000, 7), Judged::InPlace);
        let new = OpVersion {
            version: 8,
            strict: true,
            prepare_tail: 4096,
        };
        assert_eq!(new.judge(&cpr, 5000, 8), Judged::InPlace);
        assert_eq!(
            new.judge(&cpr, 4000, 8),
            Judged::Copy,
            "below prepare_tail: the checkpoint's"
        );
        assert_eq!(new.judge(&cpr, 5000, 7), Judged::Copy);
    }
}
