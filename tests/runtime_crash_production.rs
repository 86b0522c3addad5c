//! Crash sweep with the runtime doing what production runs do, which `runtime_crash.rs` turns off
//! to keep its crash points deterministic: background flushes every 10 ms, checkpoints by log
//! size (1 MiB, the minimum) and by time, background compaction, windows of several segments
//! (4 MiB by default, see `production_options` for why not 64 MiB), a
//! mix of commit policies and node sizes (payload-sized nodes travel in BALANCED records, larger
//! ones go to the data files), updates and retirements that leave compaction victims, and the
//! steps no other sweep takes right after a recovery: a checkpoint, a full compaction, an idle
//! store the background thread checkpoints and compacts, and more transactions from two threads.
//!
//! **Rounds.** A round is one store on the fault-injecting storage and a sequence of generations:
//! open (recovering), check, one step, power loss. The first step builds the store (transactions
//! from one or two threads); the next four are the four steps in a seeded order, then a few more
//! at random:
//! - `checkpoint`: `checkpoint()` right after the recovery;
//! - `compact`: `compact_with(&CompactionOptions::full(), ..)` right after the recovery;
//! - `idle`: sleep past the checkpoint and compaction intervals, so the background thread
//!   checkpoints and compacts a store nobody writes;
//! - `txns`: random transactions from one or two threads (each owns its nodes and roots, so they
//!   never conflict), with `sync()` and `checkpoint()` calls and pauses for the background thread.
//!
//! Background threads do storage operations too, so a crash point is not a fixed operation of a
//! deterministic run. Each step either runs with `crash_after(k)` (k drawn from the seeded
//! generator up to about the most operations that kind of step takes) or runs to its end; then,
//! a seeded 0-19 ms later, the storage stops (`crash_after(0)`), the
//! runtime is dropped (its threads joined), and `crash_with` resolves unsynced state (dropped,
//! kept, or seeded). One recovery in five is itself crashed after a seeded number of operations.
//!
//! **Checks after every recovery.** `fsck` of the crashed image reports no problem and predicts
//! the recovered epoch and live set; the recovered epoch is at least every acknowledged one
//! (STRICT/BALANCED commits that returned `Ok`, `sync()`'s epoch, and every commit that returned
//! before a `checkpoint()` that returned `Ok`); the live set, every node's bytes and every root
//! are exactly the model's at the recovered epoch, that is, every commit acknowledged or not up to
//! it and none after (a lost EVENTUAL commit is lost with all after it). Commits that failed at
//! the crash may or may not be in (each fills one epoch the model does not know; compaction's
//! moves fill others and change no content); `verify()` passes; the durable epoch is the
//! recovered one; and a snapshot `fsck` of the open store reports no problem.
//!
//! A failure names the seed, the generation, the step, its crash point and crash mode, and the
//! steps before it (`VELLUM_PROD_CRASH_VERBOSE=1` prints them for passing rounds too). The seed
//! fixes every choice, not the moment background work lands, so `VELLUM_PROD_CRASH_SEED=<seed>
//! VELLUM_PROD_CRASH_ROUNDS=1` reproduces the sequence, and often the failure. Default 3 rounds
//! of 7 generations (about 20-30 s in a debug build); `VELLUM_PROD_CRASH_ROUNDS`,
//! `VELLUM_PROD_CRASH_GENERATIONS` and `VELLUM_PROD_CRASH_SEED` (the base seed) change them, and
//! `VELLUM_PROD_CRASH_KEEP_GOING=1` runs every round and lists all failing ones at the end. A long
//! run is `VELLUM_PROD_CRASH_ROUNDS=300 VELLUM_PROD_CRASH_KEEP_GOING=1 cargo test --release --test
//! runtime_crash_production`.
//!
//! `recover_then_checkpoint_keeps_balanced_payloads` is the smallest deterministic sequence that
//! lost acknowledged BALANCED commits (see its comment).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vellum::inspect::{FsckOptions, fsck, load};
use vellum::io::{CrashMode, FaultStorage};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime, RuntimeOptions};

mod common;

use common::{Rng, env_u64};

const DIR: &str = "/store";

// ---------------------------------------------------------------------------------------------
// Options: every store of this file is opened through these.

/// The runtime's defaults (background flush every 10 ms, 1 GiB files, a 1 GiB mapped budget,
/// BALANCED payloads up to 4 KiB, compaction's default thresholds and throttle), with
/// checkpoints and compaction made frequent enough to happen within a step: checkpoints every
/// 1 MiB of log (the minimum) or 30 ms, and a compaction pass every 20 ms.
///
/// Two sizes deviate, for the fault storage's sake, not the runtime's: windows of 4 MiB instead
/// of 64 MiB and log preallocation of 1 MiB instead of 16 MiB. The fault storage keeps a written
/// and a durable copy of every byte up to a file's length, compares them sector by sector at each
/// crash and copies every file into the next filesystem: with 64 MiB windows each of the seven
/// size classes used here holds a 64 MiB data file, so a crash copies well over 1 GiB and takes
/// 3-7 s in a debug or a release build alike (a round, about a minute), and a fresh 16 MiB log
/// costs about 0.1 s of zero-filling at its first sync in a debug build, with a log rotation at
/// most checkpoints. 4 MiB windows keep
/// what matters about windows here: several 1 MiB segments share a window, and data files grow a
/// window at a time. `VELLUM_PROD_CRASH_WINDOW_MIB` and `VELLUM_PROD_CRASH_PREALLOC_KIB` set them
/// (`VELLUM_PROD_CRASH_WINDOW_MIB=64 VELLUM_PROD_CRASH_PREALLOC_KIB=16384` is exactly the
/// defaults).
fn production_options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        checkpoint_log_bytes: 1 << 20,
        checkpoint_interval: Some(Duration::from_millis(30)),
        ..RuntimeOptions::default()
    };
    o.compaction.interval = Some(Duration::from_millis(20));
    o.data.window_bytes = env_u64("VELLUM_PROD_CRASH_WINDOW_MIB", 4) << 20;
    o.log.preallocate_bytes = env_u64("VELLUM_PROD_CRASH_PREALLOC_KIB", 1024) << 10;
    o
}

/// The options of the minimal reproduction: no background work, 1 MiB windows.
fn deterministic_options() -> RuntimeOptions {
    common::small_deterministic_options()
}

/// A fresh fault storage for stores of `options` (files as large as the store's).
fn storage(seed: u64, options: &RuntimeOptions) -> FaultStorage {
    let file_bytes_max = options.data.alloc.file_bytes_max as usize;
    common::fault_storage_sized(seed, Path::new(DIR), file_bytes_max)
}

fn open(fs: &FaultStorage, options: &RuntimeOptions) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options.clone())
}

/// `fsck` options for a store of `options`.
fn fsck_options(options: &RuntimeOptions) -> FsckOptions {
    FsckOptions {
        file_bytes_max: options.data.alloc.file_bytes_max,
        window_bytes: options.data.window_bytes,
        ..FsckOptions::default()
    }
}

/// Power loss now: the storage stops (every later operation fails), the runtime is dropped (its
/// background thread joined, its last flush failing), then unsynced state is resolved by `mode`.
fn power_loss(fs: &FaultStorage, rt: Option<DurableRuntime>, mode: CrashMode) -> FaultStorage {
    fs.crash_after(0);
    drop(rt);
    fs.crash_with(mode)
}

// ---------------------------------------------------------------------------------------------
// The minimal reproduction.

/// A BALANCED commit's payload is durable only in the log until a checkpoint's data sync (K3)
/// puts it in its slot. Recovery writes payloads back into their slots (R6) without counting
/// those writes in the data-sync generation, so a checkpoint taken right after a recovery, with
/// no node written in between, found nothing to sync, then dropped the logs that carried the
/// payloads (K5, K6): after a second power loss the node's slot lay outside its data file, and
/// the acknowledged commit was lost.
#[test]
fn recover_then_checkpoint_keeps_balanced_payloads() {
    let options = deterministic_options();
    let bytes = vec![0x5a; 100];
    let fs = storage(7, &options);
    let rt = open(&fs, &options).expect("create");
    let id = {
        let mut tx = rt.begin();
        let id = tx.alloc(1, &bytes).expect("alloc");
        tx.commit_with(CommitPolicy::Balanced).expect("commit");
        id
    };
    let fs = power_loss(&fs, Some(rt), CrashMode::DropUnsynced);

    let rt = open(&fs, &options).expect("first recovery");
    assert_eq!(rt.read(id).expect("read after the first recovery"), bytes);
    rt.checkpoint()
        .expect("checkpoint right after the recovery");
    let fs = power_loss(&fs, Some(rt), CrashMode::DropUnsynced);

    let report = fsck(&fs, Path::new(DIR), &fsck_options(&options)).expect("fsck");
    let problems: Vec<String> = report.problems().map(|f| f.message.clone()).collect();
    let rt = open(&fs, &options).expect("second recovery");
    assert_eq!(rt.visible_epoch(), 1, "the acknowledged commit's epoch");
    let read = rt.read(id);
    assert!(
        matches!(&read, Ok(b) if *b == bytes),
        "the acknowledged BALANCED node after recovery, checkpoint, power loss: {read:?} (fsck of \
         the image: {problems:?})"
    );
    rt.verify().expect("verify");
    assert!(problems.is_empty(), "fsck of the image: {problems:?}");
}

/// The same sequence where the data file and the slot's window were already durable (a STRICT
/// node of the same size class committed first), the usual case in a running store: the slot
/// then holds zeros after the second power loss, and the node fails its checksum.
#[test]
fn recover_then_checkpoint_keeps_payloads_in_existing_files() {
    let options = deterministic_options();
    let fs = storage(7, &options);
    let rt = open(&fs, &options).expect("create");
    let mut tx = rt.begin();
    let first = tx.alloc(1, &[0x11; 100]).expect("alloc");
    tx.commit_with(CommitPolicy::Strict).expect("strict commit");
    let mut tx = rt.begin();
    let second = tx.alloc(1, &[0x22; 100]).expect("alloc");
    tx.commit_with(CommitPolicy::Balanced)
        .expect("balanced commit");
    let fs = power_loss(&fs, Some(rt), CrashMode::DropUnsynced);

    let rt = open(&fs, &options).expect("first recovery");
    assert_eq!(
        rt.read(second).expect("read after the first recovery"),
        [0x22; 100]
    );
    rt.checkpoint()
        .expect("checkpoint right after the recovery");
    let fs = power_loss(&fs, Some(rt), CrashMode::DropUnsynced);

    let report = fsck(&fs, Path::new(DIR), &fsck_options(&options)).expect("fsck");
    let problems: Vec<String> = report.problems().map(|f| f.message.clone()).collect();
    let rt = open(&fs, &options).expect("second recovery");
    assert_eq!(rt.visible_epoch(), 2, "the acknowledged commits' epoch");
    assert_eq!(rt.read(first).expect("the STRICT node"), [0x11; 100]);
    let read = rt.read(second);
    assert!(
        matches!(&read, Ok(b) if *b == [0x22; 100]),
        "the acknowledged BALANCED node after recovery, checkpoint, power loss: {read:?} (fsck of \
         the image: {problems:?})"
    );
    rt.verify().expect("verify");
    assert!(problems.is_empty(), "fsck of the image: {problems:?}");
}

// ---------------------------------------------------------------------------------------------
// The model.

/// Roots the writers set: writer `w` owns `ROOTS[2w]` and `ROOTS[2w + 1]`.
const ROOTS: [&str; 4] = ["w0-a", "w0-b", "w1-a", "w1-b"];

#[derive(Clone, Default, Debug, PartialEq)]
struct State {
    nodes: BTreeMap<NodeId, Vec<u8>>,
    roots: BTreeMap<String, NodeId>,
}

/// One effect of a committed transaction.
#[derive(Clone, Debug)]
enum Change {
    Node(NodeId, Option<Vec<u8>>),
    Root(&'static str, Option<NodeId>),
}

impl State {
    fn apply(&mut self, changes: &[Change]) {
        for c in changes {
            match c {
                Change::Node(id, Some(b)) => {
                    self.nodes.insert(*id, b.clone());
                }
                Change::Node(id, None) => {
                    self.nodes.remove(id);
                }
                Change::Root(name, Some(id)) => {
                    self.roots.insert((*name).to_owned(), *id);
                }
                Change::Root(name, None) => {
                    self.roots.remove(*name);
                }
            }
        }
    }

    /// How `self` (the runtime's) differs from `want` (the model's), briefly.
    fn diff(&self, want: &State) -> String {
        let mut out = Vec::new();
        for (id, b) in &want.nodes {
            match self.nodes.get(id) {
                None => out.push(format!("{id} ({} bytes) missing", b.len())),
                Some(got) if got != b => out.push(format!(
                    "{id} holds {} bytes, not the model's {}",
                    got.len(),
                    b.len()
                )),
                Some(_) => {}
            }
        }
        for (id, b) in &self.nodes {
            if !want.nodes.contains_key(id) {
                out.push(format!(
                    "{id} ({} bytes) live but not in the model",
                    b.len()
                ));
            }
        }
        if self.roots != want.roots {
            out.push(format!(
                "roots {:?}, the model's {:?}",
                self.roots, want.roots
            ));
        }
        out.truncate(8);
        out.join("; ")
    }
}

/// What the model knows since the last recovery.
#[derive(Debug, Default)]
struct Model {
    /// The state the last recovery was checked to have, at `epoch`.
    state: State,
    epoch: u64,
    /// Commits that returned `Ok` since, by epoch.
    committed: BTreeMap<u64, Vec<Change>>,
    /// Commits that returned an error (the crash): each may or may not be in the log.
    failed: Vec<Vec<Change>>,
    /// Every epoch at or below this was acknowledged durable.
    floor: u64,
}

/// What a step did, for the model and the report.
#[derive(Debug, Default)]
struct Outcome {
    committed: Vec<(u64, Vec<Change>)>,
    failed: Vec<Vec<Change>>,
    floor: u64,
    /// Errors of calls made while no crash was due: each is a failure of the runtime.
    unexpected: Vec<String>,
}

impl Model {
    fn absorb(&mut self, o: Outcome) {
        self.committed.extend(o.committed);
        self.failed.extend(o.failed);
        self.floor = self.floor.max(o.floor);
    }
}

/// The runtime's live nodes (bytes read back) and roots.
fn read_state(rt: &DurableRuntime) -> Result<State, String> {
    let mut s = State::default();
    for id in rt.node_ids() {
        let b = rt.read(id).map_err(|e| format!("read {id}: {e}"))?;
        s.nodes.insert(id, b);
    }
    for name in ROOTS {
        if let Some(id) = rt.root(name) {
            s.roots.insert(name.to_owned(), id);
        }
    }
    Ok(s)
}

/// What `fsck` of a crashed image predicts recovery reaches.
#[derive(Debug)]
struct Prediction {
    epoch: Option<u64>,
    live: Vec<NodeId>,
    payloads_pending: usize,
}

/// `fsck` of the crashed image in `fs` (locked, as `vellum fsck` runs): no problem, and what
/// recovery should reach.
fn fsck_image(fs: &FaultStorage, options: &RuntimeOptions) -> Result<Prediction, String> {
    let dir = Path::new(DIR);
    let (_access, _lock) = vellum::inspect::lock(fs, dir).map_err(|e| format!("fsck lock: {e}"))?;
    let insp = load(fs, dir, &fsck_options(options)).map_err(|e| format!("fsck: {e}"))?;
    let problems: Vec<_> = insp
        .findings()
        .iter()
        .filter(|f| f.severity == vellum::inspect::Severity::Problem)
        .collect();
    if !problems.is_empty() {
        return Err(format!("fsck of the crashed image: {problems:#?}"));
    }
    let mut live: Vec<NodeId> = insp.model.live.values().map(|l| l.id).collect();
    live.sort_unstable();
    let payloads_pending = insp
        .findings()
        .iter()
        .filter(|f| matches!(f.kind, vellum::inspect::FindingKind::PayloadPending { .. }))
        .count();
    Ok(Prediction {
        epoch: insp.replayed.then_some(insp.model.last_epoch),
        live,
        payloads_pending,
    })
}

/// Checks a recovered runtime against the model and `fsck`'s prediction; on success the model
/// moves to the recovered state.
fn check_recovered(rt: &DurableRuntime, m: &mut Model, p: &Prediction) -> Result<(), String> {
    let epoch = rt.visible_epoch();
    if epoch < m.floor {
        return Err(format!(
            "recovered epoch {epoch} lost acknowledged commits up to epoch {}",
            m.floor
        ));
    }
    if rt.durable_epoch() != epoch {
        return Err(format!(
            "durable epoch {} after recovering epoch {epoch}",
            rt.durable_epoch()
        ));
    }
    let ids = rt.node_ids();
    if p.epoch != Some(epoch) || p.live != ids {
        return Err(format!(
            "fsck predicted epoch {:?} with {} live nodes, recovery reached {epoch} with {}",
            p.epoch,
            p.live.len(),
            ids.len()
        ));
    }
    let got = read_state(rt)?;
    // The model at `epoch`: every commit known up to it; the epochs it does not know hold
    // compaction moves (no change of content) or commits that failed at the crash.
    let mut want = m.state.clone();
    let mut known = 0;
    for changes in m.committed.range(..=epoch).map(|(_, c)| c) {
        want.apply(changes);
        known += 1;
    }
    let unknown = (epoch - m.epoch).checked_sub(known).ok_or_else(|| {
        format!(
            "recovered epoch {epoch}: {known} commits since epoch {} returned an epoch at or \
             below it",
            m.epoch
        )
    })?;
    let n = m.failed.len();
    let matched = (0u32..1 << n)
        .filter(|mask| u64::from(mask.count_ones()) <= unknown)
        .any(|mask| {
            let mut s = want.clone();
            for (i, changes) in m.failed.iter().enumerate() {
                if mask & (1 << i) != 0 {
                    s.apply(changes);
                }
            }
            s == got
        });
    if !matched {
        return Err(format!(
            "state at recovered epoch {epoch} is not the model's ({known} commits known since \
             epoch {}, {n} failed at the crash): {}",
            m.epoch,
            got.diff(&want)
        ));
    }
    let (nodes, _) = rt.verify().map_err(|e| format!("verify: {e}"))?;
    if nodes != ids.len() as u64 {
        return Err(format!("verify checked {nodes} of {} nodes", ids.len()));
    }
    *m = Model {
        state: got,
        epoch,
        floor: epoch,
        ..Model::default()
    };
    Ok(())
}

/// A snapshot `fsck` of the open store reports no problem.
fn fsck_live(fs: &FaultStorage, options: &RuntimeOptions) -> Result<(), String> {
    let o = FsckOptions {
        snapshot: true,
        ..fsck_options(options)
    };
    let report = fsck(fs, Path::new(DIR), &o).map_err(|e| format!("snapshot fsck: {e}"))?;
    let problems: Vec<_> = report.problems().collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "snapshot fsck of the recovered store: {problems:#?}"
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Writers.

/// Node bytes: mostly small enough to travel in a BALANCED record (up to 4096 bytes), the rest in
/// classes of 8 KiB to 256 KiB slots (few slots per 1 MiB segment, so retirements leave sparse
/// segments for compaction); 70 000 bytes and more are written with `write_at`.
fn node_bytes(rng: &mut Rng) -> Vec<u8> {
    let len = match rng.below(20) {
        r @ 0..=9 => [100, 700, 3000, 4096, 1][r as usize % 5],
        10 | 11 => 6000,
        12..=14 => 30_000,
        15..=18 => 100_000,
        _ => 200_000,
    };
    let fill = rng.next();
    (0..len)
        .map(|i| (fill >> (i % 8 * 8)) as u8 ^ (i / 8) as u8)
        .collect()
}

/// Where a step's storage stops.
#[derive(Clone, Copy)]
struct CrashPoint<'a> {
    fs: &'a FaultStorage,
    /// The last operation that succeeds (`u64::MAX`: none fails).
    at: u64,
}

impl CrashPoint<'_> {
    /// An error is the crash's only once an operation past the crash point was attempted;
    /// before that it is a failure of the runtime.
    fn unexpected(&self, out: &mut Outcome, what: String) {
        if self.fs.op_count() <= self.at {
            out.unexpected.push(what);
        }
    }
}

/// Shared by the writers of one step.
struct Shared<'a> {
    rt: &'a DurableRuntime,
    /// The largest epoch a commit has returned (so a later `checkpoint()` covers it).
    returned: AtomicU64,
    crash: CrashPoint<'a>,
}

/// One writer: owns its nodes and its two roots, so writers never conflict.
struct Writer {
    rng: Rng,
    index: usize,
    mine: BTreeMap<NodeId, Vec<u8>>,
    outcome: Outcome,
}

impl Writer {
    fn fail(&mut self, sh: &Shared<'_>, what: String) {
        sh.crash.unexpected(&mut self.outcome, what);
    }

    /// Runs `txns` transactions, stopping at the first error.
    fn run(&mut self, sh: &Shared<'_>, txns: u64) {
        for _ in 0..txns {
            if !self.txn(sh) || !self.after(sh) {
                return;
            }
        }
    }

    /// One transaction; false after an error.
    fn txn(&mut self, sh: &Shared<'_>) -> bool {
        let policy = match self.rng.below(4) {
            0 => CommitPolicy::Strict,
            1 | 2 => CommitPolicy::Balanced,
            _ => CommitPolicy::Eventual,
        };
        let mut tx = sh.rt.begin();
        let mut changes = Vec::new();
        let mut touched: Vec<NodeId> = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let free: Vec<NodeId> = self
                .mine
                .keys()
                .copied()
                .filter(|id| !touched.contains(id))
                .collect();
            let mut roll = self.rng.below(10);
            if free.is_empty() || (self.mine.len() < 12 && roll >= 6) {
                roll = 0;
            } else if self.mine.len() > 60 && roll < 3 {
                roll = 6;
            }
            let pick = free
                .get(self.rng.below(free.len() as u64) as usize)
                .copied();
            let root = ROOTS[2 * self.index + self.rng.below(2) as usize];
            let r = match (roll, pick) {
                (0..=2, _) | (_, None) => {
                    let b = node_bytes(&mut self.rng);
                    tx.alloc(1 + self.rng.below(3) as u8, &b).map(|id| {
                        touched.push(id);
                        changes.push(Change::Node(id, Some(b)));
                    })
                }
                (3..=5, Some(id)) => {
                    let b = node_bytes(&mut self.rng);
                    tx.write(id, &b).map(|()| {
                        touched.push(id);
                        changes.push(Change::Node(id, Some(b)));
                    })
                }
                (6 | 7, Some(id)) => tx.retire(id).map(|()| {
                    touched.push(id);
                    changes.push(Change::Node(id, None));
                }),
                (8, Some(id)) => tx
                    .set_root(root, id)
                    .map(|()| changes.push(Change::Root(root, Some(id)))),
                (_, Some(_)) => tx
                    .remove_root(root)
                    .map(|()| changes.push(Change::Root(root, None))),
            };
            if let Err(e) = r {
                self.fail(sh, format!("op: {e}"));
                return false;
            }
        }
        match tx.commit_with(policy) {
            Ok(epoch) => {
                sh.returned.fetch_max(epoch, Ordering::AcqRel);
                if policy != CommitPolicy::Eventual {
                    self.outcome.floor = self.outcome.floor.max(epoch);
                }
                for c in &changes {
                    if let Change::Node(id, b) = c {
                        match b {
                            Some(b) => self.mine.insert(*id, b.clone()),
                            None => self.mine.remove(id),
                        };
                    }
                }
                self.outcome.committed.push((epoch, changes));
                true
            }
            Err(e) => {
                self.fail(sh, format!("{policy:?} commit: {e}"));
                self.outcome.failed.push(changes);
                false
            }
        }
    }

    /// What follows a commit: now and then a sync, a checkpoint, a read-back or a pause; false
    /// after an error.
    fn after(&mut self, sh: &Shared<'_>) -> bool {
        match self.rng.below(24) {
            0 => match sh.rt.sync() {
                Ok(e) => self.outcome.floor = self.outcome.floor.max(e),
                Err(e) => {
                    self.fail(sh, format!("sync: {e}"));
                    return false;
                }
            },
            1 => {
                let returned = sh.returned.load(Ordering::Acquire);
                match sh.rt.checkpoint() {
                    Ok(()) => self.outcome.floor = self.outcome.floor.max(returned),
                    Err(e) => {
                        self.fail(sh, format!("checkpoint: {e}"));
                        return false;
                    }
                }
            }
            2..=4 => std::thread::sleep(Duration::from_millis(self.rng.below(15))),
            5..=7 => {
                let n = self.mine.len() as u64;
                if let Some((id, want)) = self.mine.iter().nth(self.rng.below(n) as usize) {
                    match sh.rt.read(*id) {
                        // A read may fail once the storage stopped, but never return other bytes.
                        Ok(got) => assert!(
                            got == *want,
                            "writer {}: read {id} returned {} bytes that are not the {} it \
                             committed",
                            self.index,
                            got.len(),
                            want.len()
                        ),
                        Err(e) => {
                            self.fail(sh, format!("read {id}: {e}"));
                            return false;
                        }
                    }
                }
            }
            _ => {}
        }
        true
    }
}

/// Runs `writers` writers of `txns` transactions each on `rt`, splitting the model's nodes
/// between them by id.
fn run_writers(
    rt: &DurableRuntime,
    state: &State,
    rng: &mut Rng,
    writers: usize,
    txns: u64,
    crash: CrashPoint<'_>,
) -> Outcome {
    let sh = Shared {
        rt,
        returned: AtomicU64::new(rt.visible_epoch()),
        crash,
    };
    let mut ws: Vec<Writer> = (0..writers)
        .map(|index| Writer {
            rng: Rng::new(rng.next()),
            index,
            mine: state
                .nodes
                .iter()
                .filter(|(id, _)| (id.raw() % writers as u64) as usize == index)
                .map(|(id, b)| (*id, b.clone()))
                .collect(),
            outcome: Outcome::default(),
        })
        .collect();
    std::thread::scope(|s| {
        for w in &mut ws {
            let sh = &sh;
            s.spawn(move || w.run(sh, txns));
        }
    });
    let mut out = Outcome::default();
    for w in ws {
        out.committed.extend(w.outcome.committed);
        out.failed.extend(w.outcome.failed);
        out.floor = out.floor.max(w.outcome.floor);
        out.unexpected.extend(w.outcome.unexpected);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The sweep.

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Checkpoint,
    Compact,
    Idle,
    Txns,
}

const STEPS: [Step; 4] = [Step::Checkpoint, Step::Compact, Step::Idle, Step::Txns];

/// Counts across a sweep, to show (and assert) what it exercised.
#[derive(Debug, Default)]
struct Tally {
    generations: u64,
    crashed_mid_step: u64,
    crashed_recoveries: u64,
    commits: u64,
    failed_commits: u64,
    checkpoints: u64,
    nodes_moved: u64,
    payloads_pending: u64,
    /// Most storage operations each step kind was seen to take (with no crash in it).
    ops_max: BTreeMap<Step, u64>,
}

fn crash_mode(rng: &mut Rng) -> CrashMode {
    match rng.below(3) {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::KeepUnsynced,
        _ => CrashMode::Seeded(rng.next()),
    }
}

/// Runs one step on `rt`.
fn run_step(
    step: Step,
    rt: &DurableRuntime,
    m: &Model,
    rng: &mut Rng,
    first: bool,
    crash: CrashPoint<'_>,
) -> Outcome {
    let mut out = Outcome::default();
    let mut fail = |what: String| crash.unexpected(&mut out, what);
    match step {
        Step::Checkpoint => {
            if let Err(e) = rt.checkpoint() {
                fail(format!("checkpoint: {e}"));
            }
        }
        Step::Compact => {
            if let Err(e) = rt.compact_with(&CompactionOptions::full(), &mut |_| {}) {
                fail(format!("compact: {e}"));
            }
        }
        // Past two checkpoint intervals (30 ms) and compaction intervals (20 ms).
        Step::Idle => std::thread::sleep(Duration::from_millis(60 + rng.below(90))),
        Step::Txns => {
            let writers = 1 + rng.below(2) as usize;
            let txns = if first {
                30 + rng.below(30)
            } else {
                5 + rng.below(30)
            };
            return run_writers(rt, &m.state, rng, writers, txns, crash);
        }
    }
    out
}

/// Crash points are drawn from `0..=ops` where `ops` is about the most storage operations the
/// step takes (background work included); a third of the steps run to their end instead.
fn crash_ops_max(step: Step) -> u64 {
    match step {
        Step::Checkpoint => 30,
        Step::Compact => 80,
        Step::Idle => 120,
        Step::Txns => 500,
    }
}

/// A recovery, the checks after it or a step taking longer than this is a failure: nothing here
/// takes more than a few seconds, even in a debug build.
const STALL: Duration = Duration::from_secs(60);

/// Most storage operations a recovery is crashed after.
const RECOVERY_CRASH_OPS_MAX: u64 = 60;

/// One round: a store and `generations` generations of open, check, step, power loss, and a
/// last recovery and check.
fn round(seed: u64, generations: usize, tally: &mut Tally) {
    let options = production_options();
    let mut rng = Rng::new(seed);
    let mut fs = storage(seed, &options);
    let mut m = Model::default();
    let mut order = STEPS;
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let steps: Vec<Step> = std::iter::once(Step::Txns)
        .chain(order)
        .chain((5..generations).map(|_| STEPS[rng.below(4) as usize]))
        .take(generations)
        .collect();
    let mut history: Vec<String> = Vec::new();
    for g in 0..=steps.len() {
        let step = steps.get(g).copied();
        let fail = |what: &str, history: &[String]| -> ! {
            panic!(
                "seed {seed:#x} generation {g} ({}): {what}\n  steps so far: {}",
                step.map_or("final check".to_owned(), |s| format!("{s:?}")),
                history.join("\n    ")
            )
        };
        // Open, crashing one recovery in five (not the creation) after a seeded number of ops.
        if g > 0 && rng.below(5) == 0 {
            let k = rng.below(RECOVERY_CRASH_OPS_MAX + 1);
            let mode = crash_mode(&mut rng);
            fs.crash_after(k);
            let rt = open(&fs, &options).ok();
            fs = power_loss(&fs, rt, mode);
            tally.crashed_recoveries += 1;
            history.push(format!("recovery crashed after {k} ops ({mode:?})"));
        }
        let prediction = if g == 0 {
            None
        } else {
            let p = fsck_image(&fs, &options).unwrap_or_else(|e| fail(&e, &history));
            tally.payloads_pending += p.payloads_pending as u64;
            Some(p)
        };
        let t = Instant::now();
        let rt = open(&fs, &options).unwrap_or_else(|e| fail(&format!("recovery: {e}"), &history));
        let opened = t.elapsed();
        if let Some(p) = &prediction {
            check_recovered(&rt, &mut m, p).unwrap_or_else(|e| fail(&e, &history));
            fsck_live(&fs, &options).unwrap_or_else(|e| fail(&e, &history));
        }
        let checked = t.elapsed() - opened;
        let Some(step) = step else {
            rt.close()
                .unwrap_or_else(|e| fail(&format!("close: {e}"), &history));
            if std::env::var_os("VELLUM_PROD_CRASH_VERBOSE").is_some() {
                eprintln!("seed {seed:#x}:\n    {}", history.join("\n    "));
            }
            break;
        };

        // The step, with a crash point or run to its end. The first builds the store.
        let crash_at = (g > 0 && rng.below(3) != 0).then(|| rng.below(crash_ops_max(step) + 1));
        let start = fs.op_count();
        if let Some(k) = crash_at {
            fs.crash_after(k);
        }
        let point = CrashPoint {
            fs: &fs,
            at: crash_at.map_or(u64::MAX, |k| start + k),
        };
        let t = Instant::now();
        let outcome = run_step(step, &rt, &m, &mut rng, g == 0, point);
        let took = t.elapsed();
        let linger = rng.below(20);
        std::thread::sleep(Duration::from_millis(linger));
        let ops = fs.op_count() - start;
        let stats = rt.stats();
        let mode = crash_mode(&mut rng);
        let crashed = crash_at.is_some_and(|k| ops > k);
        history.push(format!(
            "{step:?}, {}: {ops} ops, {} commits ({} failed), {} checkpoints, {} nodes moved; \
             power loss {linger} ms after the step ({mode:?}); recovery {opened:.0?}, checks \
             {checked:.0?}, step {took:.0?}",
            match crash_at {
                Some(k) => format!("crash after {k} ops"),
                None => "no crash point".to_owned(),
            },
            outcome.committed.len(),
            outcome.failed.len(),
            stats.checkpoints,
            stats.nodes_moved,
        ));
        if [opened, checked, took].iter().any(|d| *d > STALL) {
            fail("a phase stalled", &history);
        }
        if !outcome.unexpected.is_empty() {
            let e = format!("errors before the crash point: {:?}", outcome.unexpected);
            fail(&e, &history);
        }
        if !crashed {
            let max = tally.ops_max.entry(step).or_insert(0);
            *max = (*max).max(ops);
        }
        tally.generations += 1;
        tally.crashed_mid_step += u64::from(crashed);
        tally.commits += outcome.committed.len() as u64;
        tally.failed_commits += outcome.failed.len() as u64;
        tally.checkpoints += stats.checkpoints;
        tally.nodes_moved += stats.nodes_moved;
        m.absorb(outcome);
        fs = power_loss(&fs, Some(rt), mode);
    }
}

#[test]
fn production_crash_sweep() {
    let rounds = env_u64("VELLUM_PROD_CRASH_ROUNDS", 3);
    let base = env_u64("VELLUM_PROD_CRASH_SEED", 0x9d0c_5eed);
    let generations = env_u64("VELLUM_PROD_CRASH_GENERATIONS", 7) as usize;
    // A long run can go on past failing rounds and list them all at the end.
    let keep_going = std::env::var_os("VELLUM_PROD_CRASH_KEEP_GOING").is_some();
    let mut tally = Tally::default();
    let mut failures = Vec::new();
    let started = Instant::now();
    for r in 0..rounds {
        let seed = base ^ r.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        if !keep_going {
            round(seed, generations, &mut tally);
            continue;
        }
        let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            round(seed, generations, &mut tally)
        }));
        if let Err(panic) = run {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failures.push(format!("round {r}: {msg}"));
        }
    }
    eprintln!(
        "production crash sweep: {rounds} rounds ({} failed) in {:?}: {tally:?}",
        failures.len(),
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} of {rounds} rounds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // What the sweep must have exercised, or it checks less than it claims (a single round, as
    // for reproducing a failure, may miss some).
    if rounds < 3 {
        return;
    }
    assert!(
        tally.crashed_mid_step > 0 && tally.crashed_recoveries > 0,
        "no crash point was reached: {tally:?}"
    );
    assert!(tally.checkpoints > 0, "no checkpoint ran: {tally:?}");
    assert!(
        tally.nodes_moved > 0,
        "compaction never moved a node: {tally:?}"
    );
}
