//! Sessions: one thread's handle on a FasterKV store. A session keeps its epoch protection
//! across operations and refreshes it every [`REFRESH_OPS`] operations, as FASTER's sessions do
//! (entering per operation costs a CAS each); it numbers its operations (serial numbers, for
//! the commit points of checkpoints), and queues the operations that must read the disk until
//! [`Session::complete_pending`].

use std::collections::VecDeque;

use super::cpr::{CommitPoint, CprState, OpVersion, Phase};
use super::hash::KeyHash;
use super::ops::{self, Attempt, DiskStart, OnDisk};
use super::record::RecordError;
use super::store::KvInner;
use super::{Functions, Status};
use crate::epoch::EpochGuard;
use crate::{Error, Result};

/// Operations between two refreshes of a session's epoch protection.
pub const REFRESH_OPS: u32 = 256;

/// The kind of a completed pending operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// [`Session::read`].
    Read,
    /// [`Session::rmw`].
    Rmw,
    /// [`Session::delete`].
    Delete,
}

/// A pending operation, completed by [`Session::complete_pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The operation's serial number (what the call that went pending returned with
    /// [`Session::last_serial`]).
    pub serial: u64,
    /// What it was.
    pub kind: OpKind,
    /// Its outcome: never [`Status::Pending`].
    pub status: Status,
    /// A read's value (empty otherwise, or when not found).
    pub value: Vec<u8>,
}

/// What a session's operations ran into (for tests and tuning).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Attempts started again after racing another writer (a lost CAS, a sealed record).
    pub retries: u64,
    /// Attempts started again because the record was in the fuzzy region (RETRY_LATER).
    pub retries_later: u64,
    /// Waits for a page slot (the tail's page was full).
    pub page_waits: u64,
    /// Operations that went to disk (pending or blocking).
    pub disk_reads: u64,
    /// Operations that met a record of a running checkpoint's new version and crossed to it
    /// first (FASTER's CPR shift).
    pub cpr_shifts: u64,
}

/// Which operation a session is running, for the commit point it takes if it crosses to a
/// checkpoint's new version meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Current {
    /// A new operation (its serial is the session's last once begun).
    Fresh,
    /// The completion of pending operation `serial`.
    Completing(u64),
}

/// A commit point being taken: the last serial it covers and one more excluded serial.
#[derive(Debug, Clone, Copy)]
struct Crossing {
    until: u64,
    excluded: Option<u64>,
}

impl Current {
    /// Crossing before the operation begins (`serial`: the session's last serial).
    fn crossing(self, serial: u64) -> Crossing {
        match self {
            Current::Fresh => Crossing {
                until: serial,
                excluded: None,
            },
            Current::Completing(s) => Crossing {
                until: serial,
                excluded: Some(s),
            },
        }
    }

    /// Crossing in the middle of the operation (a shift): a new operation already has the last
    /// serial, and becomes one of the new version.
    fn shifted(self, serial: u64) -> Crossing {
        match self {
            Current::Fresh => Crossing {
                until: serial.saturating_sub(1),
                excluded: None,
            },
            Current::Completing(_) => self.crossing(serial),
        }
    }
}

#[derive(Debug)]
enum PendingOp<I> {
    Read,
    Rmw(I),
    Delete,
}

#[derive(Debug)]
struct Pending<I> {
    serial: u64,
    op: PendingOp<I>,
    key: Vec<u8>,
    hash: KeyHash,
    start: DiskStart,
}

/// One thread's handle on a [`FasterKv`](super::FasterKv) store.
///
/// Operations take `&mut self`, so a session is used by one thread at a time; it may move to
/// another thread between operations. Between operations the session stays protected: a page
/// leaves memory only once every session has refreshed past its eviction, and a checkpoint
/// completes only once every protected session has crossed to its version at an operation's
/// start, so a session left unused but protected holds back both. Call [`Session::idle`]
/// before leaving one unused (the next operation protects it again; a checkpoint crosses an
/// idle session itself), or drop it.
///
/// An operation that goes pending takes effect when [`Session::complete_pending`] completes it:
/// a later operation of the same session on the same key, issued before that, may take effect
/// first. Complete pending operations before issuing more on their keys where order matters
/// (the `*_blocking` forms do it for one operation).
///
/// ```compile_fail,E0499
/// # // A session cannot be shared by two threads: its operations need `&mut`.
/// # fn share(kv: &vellum_faster::kv::FasterKv) {
/// let mut session = kv.session(vellum_faster::kv::AddU64).unwrap();
/// std::thread::scope(|s| {
///     s.spawn(|| session.upsert(b"k", b"1"));
///     s.spawn(|| session.upsert(b"k", b"2"));
/// });
/// # }
/// ```
#[derive(Debug)]
pub struct Session<'kv, F: Functions> {
    kv: &'kv KvInner,
    functions: F,
    /// The session's slot in the checkpoint state machine, its operations' version, and the
    /// state word it last crossed to.
    slot: usize,
    ver: OpVersion,
    seen: u64,
    guard: Option<EpochGuard<'kv>>,
    serial: u64,
    since_refresh: u32,
    pending: VecDeque<Pending<F::Input>>,
    scratch: Vec<u8>,
    stats: SessionStats,
}

impl<'kv, F: Functions> Session<'kv, F> {
    /// A session in checkpoint slot `slot` (registered), continuing after serial `serial`.
    pub(crate) fn new(kv: &'kv KvInner, functions: F, slot: usize, serial: u64) -> Self {
        let version = kv.cpr.slot(slot).version;
        Session {
            kv,
            functions,
            slot,
            ver: OpVersion {
                version,
                strict: false,
                prepare_tail: 0,
            },
            seen: 0,
            guard: None,
            serial,
            since_refresh: 0,
            pending: VecDeque::new(),
            scratch: Vec::new(),
            stats: SessionStats::default(),
        }
    }

    /// The session's id while it is open (what a checkpoint's [`SessionCommit`] names it by;
    /// a later session may get it once this one is dropped).
    ///
    /// [`SessionCommit`]: super::SessionCommit
    pub fn id(&self) -> usize {
        self.slot
    }

    /// The serial number of the session's last operation (the first is 1).
    pub fn last_serial(&self) -> u64 {
        self.serial
    }

    /// What this session's operations ran into so far.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Operations waiting for [`Session::complete_pending`].
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Leaves the epoch protection until the next operation, so an unused session holds back
    /// neither the log's memory nor a checkpoint (which crosses it with the serial and pending
    /// operations it has now).
    pub fn idle(&mut self) {
        self.guard = None;
        self.publish(false);
        self.kv.cpr.notify();
    }

    /// Publishes the serial and pending serials, for the coordinator to cross the session while
    /// it runs no operation (`cpr.rs`).
    fn publish(&self, departed: bool) {
        let mut slot = self.kv.cpr.slot(self.slot);
        slot.active = false;
        slot.departed = departed;
        slot.serial = self.serial;
        slot.pending = self.pending.iter().map(|p| p.serial).collect();
    }

    /// Reads `key`'s value into `out` (replacing it): `Found`, `NotFound`, or `Pending` when
    /// its record is on disk (the value comes from [`Session::complete_pending`]).
    pub fn read(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<Status> {
        let hash = self.check_key(key)?;
        self.read_hashed(key, hash, out)
    }

    /// Writes `value` as `key`'s value, in place where its record is mutable and large enough.
    /// Never pending.
    pub fn upsert(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let hash = self.check_key(key)?;
        self.upsert_hashed(key, hash, value)
    }

    /// Read-modify-write through the session's [`Functions`]: `Found` when the key had a value
    /// (now updated), `NotFound` when it had none (now the initial value), `Pending` when its
    /// record is on disk.
    pub fn rmw(&mut self, key: &[u8], input: &F::Input) -> Result<Status> {
        let hash = self.check_key(key)?;
        self.rmw_hashed(key, hash, input)
    }

    /// Deletes `key` (a tombstone): `Found` when it had a value, `NotFound`, or `Pending`.
    pub fn delete(&mut self, key: &[u8]) -> Result<Status> {
        let hash = self.check_key(key)?;
        self.delete_hashed(key, hash)
    }

    /// [`Session::read`] of a checked key and its hash.
    pub(super) fn read_hashed(
        &mut self,
        key: &[u8],
        hash: KeyHash,
        out: &mut Vec<u8>,
    ) -> Result<Status> {
        let serial = self.next_serial();
        out.clear();
        let current = Current::Fresh;
        match self.run((current, true), |cx, _, _, _| ops::read(cx, hash, key, out))? {
            Ok(status) => Ok(status),
            Err(start) => Ok(self.queue(serial, PendingOp::Read, key, hash, start)),
        }
    }

    /// [`Session::upsert`] of a checked key and its hash.
    pub(super) fn upsert_hashed(&mut self, key: &[u8], hash: KeyHash, value: &[u8]) -> Result<()> {
        self.next_serial();
        let current = Current::Fresh;
        match self.run((current, true), |cx, g, _, _| {
            ops::upsert(cx, g, hash, key, value)
        })? {
            Ok(()) => Ok(()),
            Err(_) => unreachable_pending(),
        }
    }

    /// [`Session::rmw`] of a checked key and its hash.
    pub(super) fn rmw_hashed(
        &mut self,
        key: &[u8],
        hash: KeyHash,
        input: &F::Input,
    ) -> Result<Status> {
        let serial = self.next_serial();
        let current = Current::Fresh;
        match self.run((current, true), |cx, g, f, s| {
            ops::rmw(cx, g, f, (hash, key, input), s)
        })? {
            Ok(status) => Ok(status),
            Err(start) => {
                let op = PendingOp::Rmw(input.clone());
                Ok(self.queue(serial, op, key, hash, start))
            }
        }
    }

    /// [`Session::delete`] of a checked key and its hash.
    pub(super) fn delete_hashed(&mut self, key: &[u8], hash: KeyHash) -> Result<Status> {
        let serial = self.next_serial();
        let current = Current::Fresh;
        match self.run((current, true), |cx, g, _, _| ops::delete(cx, g, hash, key))? {
            Ok(status) => Ok(status),
            Err(start) => Ok(self.queue(serial, PendingOp::Delete, key, hash, start)),
        }
    }

    /// [`Session::read`], completing a disk read before it returns (never `Pending`).
    pub fn read_blocking(&mut self, key: &[u8], out: &mut Vec<u8>) -> Result<Status> {
        let hash = self.check_key(key)?;
        self.next_serial();
        out.clear();
        let current = Current::Fresh;
        match self.run((current, true), |cx, _, _, _| ops::read(cx, hash, key, out))? {
            Ok(status) => Ok(status),
            Err(start) => self.read_disk(key, start.address, out),
        }
    }

    /// [`Session::rmw`], completing a disk read before it returns (never `Pending`).
    pub fn rmw_blocking(&mut self, key: &[u8], input: &F::Input) -> Result<Status> {
        let hash = self.check_key(key)?;
        self.next_serial();
        let current = Current::Fresh;
        match self.run((current, true), |cx, g, f, s| {
            ops::rmw(cx, g, f, (hash, key, input), s)
        })? {
            Ok(status) => Ok(status),
            Err(start) => self.finish_rmw(key, hash, input, start, current),
        }
    }

    /// [`Session::delete`], completing a disk read before it returns (never `Pending`).
    pub fn delete_blocking(&mut self, key: &[u8]) -> Result<Status> {
        let hash = self.check_key(key)?;
        self.next_serial();
        let current = Current::Fresh;
        match self.run((current, true), |cx, g, _, _| ops::delete(cx, g, hash, key))? {
            Ok(status) => Ok(status),
            Err(start) => self.finish_delete(key, hash, start, current),
        }
    }

    /// Completes every pending operation, in the order they were issued, reading their records
    /// from the page nodes; a pending RMW or delete whose key changed meanwhile starts again
    /// from the index (and completes here too). On an error the operations not yet completed
    /// stay queued.
    pub fn complete_pending(&mut self) -> Result<Vec<Completed>> {
        let mut done = Vec::with_capacity(self.pending.len());
        while let Some(p) = self.pending.pop_front() {
            let mut value = Vec::new();
            let current = Current::Completing(p.serial);
            self.sync_cpr(current);
            let result = match &p.op {
                PendingOp::Read => self.read_disk(&p.key, p.start.address, &mut value),
                PendingOp::Rmw(input) => self.finish_rmw(&p.key, p.hash, input, p.start, current),
                PendingOp::Delete => self.finish_delete(&p.key, p.hash, p.start, current),
            };
            let status = match result {
                Ok(status) => status,
                Err(e) => {
                    self.pending.push_front(p);
                    return Err(e);
                }
            };
            let kind = match p.op {
                PendingOp::Read => OpKind::Read,
                PendingOp::Rmw(_) => OpKind::Rmw,
                PendingOp::Delete => OpKind::Delete,
            };
            done.push(Completed {
                serial: p.serial,
                kind,
                status,
                value,
            });
        }
        Ok(done)
    }

    /// Checks a key (not empty, within the page's limit) and hashes it.
    fn check_key(&self, key: &[u8]) -> Result<KeyHash> {
        self.validate_key(key)?;
        Ok(KeyHash::of(key))
    }

    /// Checks a key: not empty, within the page's limit.
    pub(super) fn validate_key(&self, key: &[u8]) -> Result<()> {
        if key.is_empty() {
            return Err(Error::Record(RecordError::KeyEmpty));
        }
        let max = super::record::key_bytes_max(self.kv.page_bytes);
        if key.len() > max {
            let len = key.len();
            return Err(Error::Record(RecordError::KeyTooLong { len, max }));
        }
        Ok(())
    }

    /// Follows the checkpoint state machine, numbers an operation and refreshes the protection
    /// every [`REFRESH_OPS`].
    fn next_serial(&mut self) -> u64 {
        self.sync_cpr(Current::Fresh);
        self.serial += 1;
        self.since_refresh += 1;
        if self.since_refresh >= REFRESH_OPS {
            self.since_refresh = 0;
            if let Some(g) = &mut self.guard {
                g.refresh();
            }
        }
        self.serial
    }

    /// Protects the session (until [`Session::idle`]) and returns the store, for a batch's
    /// prefetches.
    pub(super) fn protected(&mut self) -> &'kv KvInner {
        if self.guard.is_none() {
            self.wake();
        }
        self.kv
    }

    /// Runs attempts until one is done (`Ok`) or must read the disk (`Err`). `synced`: the
    /// operation followed the state machine just now (at its start), so the first attempt
    /// need not look again.
    fn run<T>(
        &mut self,
        (current, mut synced): (Current, bool),
        mut attempt: impl FnMut(
            (&'kv KvInner, OpVersion),
            &EpochGuard<'kv>,
            &F,
            &mut Vec<u8>,
        ) -> Result<Attempt<T>>,
    ) -> Result<Result<T, DiskStart>> {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let kv = self.kv;
            // A checkpoint moved on since the operation began (it may have waited on disk, or
            // on another writer): cross before this attempt, so that no operation of the old
            // version follows one of the new (`cpr.rs`).
            if !synced {
                let word = kv.cpr.state_word();
                if word != self.seen && CprState::unpack_word(word).version > self.ver.version {
                    self.stats.cpr_shifts += 1;
                    self.catch_up(word, current.shifted(self.serial));
                }
            }
            synced = false;
            let cx = (kv, self.ver);
            let guard = self.guard.get_or_insert_with(|| kv.hlog.epoch.protect());
            match attempt(cx, guard, &self.functions, &mut self.scratch)? {
                Attempt::Done(t) => return Ok(Ok(t)),
                Attempt::Disk(start) => return Ok(Err(start)),
                Attempt::Retry => {
                    self.stats.retries += 1;
                    backoff.snooze();
                }
                Attempt::RetryLater => {
                    self.stats.retries_later += 1;
                    // This session's own protection may be what holds safe_read_only back.
                    guard.refresh();
                    backoff.snooze();
                }
                Attempt::NeedRoom(page) => {
                    self.stats.page_waits += 1;
                    self.guard = None;
                    kv.hlog.advance(page)?;
                }
                Attempt::CprShift => {
                    self.stats.cpr_shifts += 1;
                    let word = kv.cpr.state_word();
                    self.catch_up(word, current.shifted(self.serial));
                }
            }
        }
    }

    /// Follows the checkpoint state machine at the start of an operation (or of a pending
    /// operation's completion): one load when nothing changed.
    #[inline]
    fn sync_cpr(&mut self, current: Current) {
        if self.guard.is_none() {
            self.wake();
        }
        let word = self.kv.cpr.state_word();
        if word != self.seen {
            self.catch_up(word, current.crossing(self.serial));
        }
    }

    /// Leaves idleness: the coordinator may have crossed this session meanwhile (`cpr.rs`).
    fn wake(&mut self) {
        let kv = self.kv;
        let mut slot = kv.cpr.slot(self.slot);
        slot.active = true;
        self.ver.version = slot.version;
        self.seen = 0;
        drop(slot);
        self.guard = Some(kv.hlog.epoch.protect());
    }

    /// Crosses to the store's phase `word`: acknowledges a Prepare, or takes the commit point
    /// `crossing` and moves to the new version.
    fn catch_up(&mut self, word: u64, crossing: Crossing) {
        let kv = self.kv;
        let global = CprState::unpack_word(word);
        let mut slot = kv.cpr.slot(self.slot);
        if global.version > slot.version {
            let mut excluded: Vec<u64> = self.pending.iter().map(|p| p.serial).collect();
            excluded.extend(crossing.excluded);
            excluded.sort_unstable();
            slot.commit = Some(CommitPoint {
                until_serial: crossing.until,
                excluded,
            });
            slot.version = global.version;
        }
        slot.phase = global.phase;
        self.ver = OpVersion {
            version: slot.version,
            strict: slot.version == global.version
                && matches!(global.phase, Phase::InProgress | Phase::WaitFlush),
            prepare_tail: kv.cpr.prepare_tail(),
        };
        self.seen = word;
        drop(slot);
        kv.cpr.notify();
    }

    fn queue(
        &mut self,
        serial: u64,
        op: PendingOp<F::Input>,
        key: &[u8],
        hash: KeyHash,
        start: DiskStart,
    ) -> Status {
        self.pending.push_back(Pending {
            serial,
            op,
            key: key.to_vec(),
            hash,
            start,
        });
        Status::Pending
    }

    fn note_disk_read(&mut self) {
        self.stats.disk_reads += 1;
        self.kv
            .ops_pending
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    fn read_disk(&mut self, key: &[u8], address: u64, out: &mut Vec<u8>) -> Result<Status> {
        self.note_disk_read();
        out.clear();
        Ok(match ops::find_on_disk(self.kv, key, address)? {
            OnDisk::Value(v) => {
                out.extend_from_slice(&v);
                Status::Found
            }
            OnDisk::Absent | OnDisk::Deleted => Status::NotFound,
        })
    }

    /// A pending RMW from `start`: read the disk, then update if the entry is unchanged, or
    /// start again (KO5) — as often as the key keeps changing under it.
    fn finish_rmw(
        &mut self,
        key: &[u8],
        hash: KeyHash,
        input: &F::Input,
        mut start: DiskStart,
        current: Current,
    ) -> Result<Status> {
        let kv = self.kv;
        loop {
            self.note_disk_read();
            let found = ops::find_on_disk(kv, key, start.address)?;
            let args = (hash, key, input);
            match self.run((current, false), |cx, g, f, s| {
                ops::finish_rmw(cx, g, f, args, (&start, &found), s)
            })? {
                Ok(status) => return Ok(status),
                Err(again) => start = again,
            }
        }
    }

    /// A pending delete from `start` (KO5).
    fn finish_delete(
        &mut self,
        key: &[u8],
        hash: KeyHash,
        mut start: DiskStart,
        current: Current,
    ) -> Result<Status> {
        let kv = self.kv;
        loop {
            self.note_disk_read();
            let found = ops::find_on_disk(kv, key, start.address)?;
            match self.run((current, false), |cx, g, _, _| {
                ops::finish_delete(cx, g, (hash, key), (&start, &found))
            })? {
                Ok(status) => return Ok(status),
                Err(again) => start = again,
            }
        }
    }
}

impl<F: Functions> Drop for Session<'_, F> {
    fn drop(&mut self) {
        self.kv
            .ops_total
            .fetch_add(self.serial, std::sync::atomic::Ordering::Relaxed);
        self.guard = None;
        // A named session's slot stays until a checkpoint records its last commit point; an
        // anonymous one's is free at once.
        if self.kv.cpr.slot(self.slot).name.is_some() {
            self.publish(true);
        } else {
            self.kv.cpr.release(self.slot);
        }
        self.kv.cpr.notify();
        self.kv
            .sessions
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        if !self.pending.is_empty() {
            tracing::warn!(
                pending = self.pending.len(),
                "a FasterKV session dropped with operations pending: they were not applied"
            );
        }
    }
}

/// Upserts never read the disk.
fn unreachable_pending() -> Result<()> {
    Err(Error::InvalidArgument(
        "internal: an upsert went to disk".into(),
    ))
}
