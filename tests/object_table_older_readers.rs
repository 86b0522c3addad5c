//! Readers at older epochs while a writer updates and a trimmer trims, all at once: every read
//! must return exactly the version its epoch sees. A node's newest older version lives inline in
//! its entry and the older ones in a heap chain (`slot.rs`, invariant 6); the writer moves
//! versions between the two on every update, the trimmer cuts both, and the readers walk both
//! without locks. Some updates change the node's kind, which sends both versions to the chain.
//!
//! The schedule is fixed, so the expected answer is computed, not recorded: epoch `e` updates
//! node `e % NODES` (node `n` is first published at epoch `n`), and a version's location, length,
//! CRC and kind are functions of its node and birth.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use vellum::alloc::Location;
use vellum::object_table::{NodeId, ObjectTable, Version};

const NODES: u64 = 8;
const READERS: usize = 2;
/// Epochs the writer commits (updates, after the first publishes): `VELLUM_OLDER_READER_EPOCHS`,
/// 6 000 by default.
fn epochs() -> u64 {
    std::env::var("VELLUM_OLDER_READER_EPOCHS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6_000)
}
/// How far behind the latest epoch readers read and the trimmer trims.
const LAG_EPOCHS_MAX: u64 = 48;
/// No reader holds an epoch.
const IDLE: u64 = u64::MAX;

/// The version of node `n` born at `birth`.
fn version(n: u64, birth: u64) -> Version {
    Version {
        location: Location {
            class: 0,
            file: n as u32,
            offset: birth * 16,
        },
        len: (birth % 16) as u32 + 1,
        crc32c: (birth as u32).wrapping_mul(0x9e37_79b9) ^ n as u32,
        // Every fifth version of a node changes its kind.
        kind: u8::from((birth / NODES) % 5 == 4),
        birth,
    }
}

/// The birth of node `n`'s version visible at `epoch` (at or after its first publish).
fn birth_at(n: u64, epoch: u64) -> u64 {
    epoch - (epoch - n) % NODES
}

struct Shared {
    table: ObjectTable,
    ids: Vec<NodeId>,
    /// The newest epoch the writer finished.
    latest: AtomicU64,
    /// Readers pick epochs at or above this; the trimmer raises it before it trims.
    floor: AtomicU64,
    /// The epoch each reader holds, or `IDLE`.
    held: Vec<AtomicU64>,
    /// The writer's step: every `STEP_EPOCHS` it waits until each reader (a read of every node)
    /// and the trimmer (a pass over every node) did one round for the current step, then starts
    /// the next, so the threads interleave on any machine instead of the writer finishing first.
    step: AtomicU64,
    /// The last step each reader, then the trimmer, did its round for.
    rounds: Vec<AtomicU64>,
    done: AtomicBool,
}

/// Epochs the writer commits between waits for the readers and the trimmer.
const STEP_EPOCHS: u64 = 16;

/// A xorshift step: the lags' sequence, different for each thread.
fn next_lag(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % (LAG_EPOCHS_MAX + 1)
}

impl Shared {
    /// Waits for a step after `*mine` and takes it; false once the writer is done.
    fn next_step(&self, mine: &mut u64) -> bool {
        loop {
            if self.done.load(Ordering::SeqCst) {
                return false;
            }
            let step = self.step.load(Ordering::SeqCst);
            if step > *mine {
                *mine = step;
                return true;
            }
            std::thread::yield_now();
        }
    }

    /// Holds an epoch at most `lag` behind the latest, at or after every node's first publish
    /// and not below the floor: published
    /// before the floor is read again, so the trimmer either sees it or raised the floor
    /// first and the reader retries (every access here is `SeqCst`).
    fn hold(&self, reader: usize, lag: u64) -> u64 {
        loop {
            let latest = self.latest.load(Ordering::SeqCst);
            let epoch = latest
                .saturating_sub(lag)
                .max(NODES - 1)
                .max(self.floor.load(Ordering::SeqCst));
            self.held[reader].store(epoch, Ordering::SeqCst);
            if self.floor.load(Ordering::SeqCst) <= epoch {
                return epoch;
            }
        }
    }

    /// Trims every node at `candidate` or the oldest held epoch, whichever is lower; checks
    /// that each trimmed version is one no epoch from there on sees. Returns the node and birth
    /// of each version it trimmed.
    fn trim(&self, candidate: u64) -> Vec<(u64, u64)> {
        self.floor.fetch_max(candidate, Ordering::SeqCst);
        let min_epoch = (self.held.iter())
            .map(|h| h.load(Ordering::SeqCst))
            .fold(candidate, u64::min);
        let guard = crossbeam_epoch::pin();
        let mut trimmed = Vec::new();
        for (n, &id) in (0u64..).zip(&self.ids) {
            for v in self.table.trim(id, min_epoch, &guard).unwrap() {
                assert_eq!(
                    v,
                    version(n, v.birth),
                    "a trimmed version of node {n} intact"
                );
                assert!(
                    v.birth + NODES <= min_epoch,
                    "node {n}: version {} trimmed while epoch {min_epoch} may see it",
                    v.birth
                );
                trimmed.push((n, v.birth));
            }
        }
        trimmed
    }
}

#[test]
fn readers_at_older_epochs_see_exact_versions_while_updates_and_trims_run() {
    let table = ObjectTable::new();
    let ids: Vec<NodeId> = (0..NODES)
        .map(|n| {
            let id = table.reserve().unwrap();
            table.publish(id, version(n, n)).unwrap();
            id
        })
        .collect();
    let shared = Arc::new(Shared {
        table,
        ids,
        latest: AtomicU64::new(NODES - 1),
        floor: AtomicU64::new(0),
        held: (0..READERS).map(|_| AtomicU64::new(IDLE)).collect(),
        step: AtomicU64::new(0),
        rounds: (0..=READERS).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicBool::new(false),
    });
    let last = NODES - 1 + epochs();

    let readers: Vec<_> = (0..READERS)
        .map(|r| {
            let s = shared.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                let mut state = 0x9e37_79b9_7f4a_7c15 + r as u64;
                let mut step = 0;
                while s.next_step(&mut step) {
                    let epoch = s.hold(r, next_lag(&mut state));
                    let guard = crossbeam_epoch::pin();
                    for (n, &id) in (0u64..).zip(&s.ids) {
                        let got = s.table.get_at(id, epoch, &guard).unwrap();
                        assert_eq!(
                            got,
                            Some(version(n, birth_at(n, epoch))),
                            "node {n} at epoch {epoch}"
                        );
                        reads += 1;
                    }
                    drop(guard);
                    s.held[r].store(IDLE, Ordering::SeqCst);
                    s.rounds[r].store(step, Ordering::SeqCst);
                }
                reads
            })
        })
        .collect();
    let trimmer = {
        let s = shared.clone();
        std::thread::spawn(move || {
            let mut trimmed = Vec::new();
            let mut state = 0x2545_f491_4f6c_dd1d;
            let mut step = 0;
            while s.next_step(&mut step) {
                let lag = next_lag(&mut state);
                trimmed.extend(s.trim(s.latest.load(Ordering::SeqCst).saturating_sub(lag)));
                s.rounds[READERS].store(step, Ordering::SeqCst);
            }
            trimmed
        })
    };

    // A thread that stopped before `done` panicked: the writer stops too, and the joins below
    // report the panic.
    let stopped = || readers.iter().any(|h| h.is_finished()) || trimmer.is_finished();
    'epochs: for epoch in NODES..=last {
        let n = epoch % NODES;
        // Pinned per update, so the epoch advances and trimmed chain records are freed while
        // the readers walk chains.
        let guard = crossbeam_epoch::pin();
        let prev = shared
            .table
            .update(shared.ids[n as usize], version(n, epoch), &guard)
            .unwrap();
        drop(guard);
        assert_eq!(prev, Some(version(n, epoch - NODES)), "update {epoch}");
        shared.latest.store(epoch, Ordering::SeqCst);
        if epoch % STEP_EPOCHS == 0 {
            let step = shared.step.load(Ordering::SeqCst);
            while (shared.rounds.iter()).any(|c| c.load(Ordering::SeqCst) < step) {
                if stopped() {
                    break 'epochs;
                }
                std::thread::yield_now();
            }
            shared.step.store(step + 1, Ordering::SeqCst);
        }
    }
    shared.done.store(true, Ordering::SeqCst);
    let reads: Vec<u64> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let mut trimmed = trimmer.join().unwrap();
    // Each reader read every node once per step the writer waited for, and maybe once more.
    let waited = shared.step.load(Ordering::SeqCst) - 1;
    for (r, &n) in reads.iter().enumerate() {
        assert!(
            (waited * NODES..=(waited + 1) * NODES).contains(&n),
            "reader {r} read {n} times in {waited} steps"
        );
    }

    // With no reader left, a last trim at the latest epoch leaves every node its current
    // version alone: every version ever superseded was trimmed exactly once.
    trimmed.extend(shared.trim(last));
    let distinct: HashSet<(u64, u64)> = trimmed.iter().copied().collect();
    assert_eq!(distinct.len(), trimmed.len(), "no version trimmed twice");
    let superseded: HashSet<(u64, u64)> = (0..=last - NODES).map(|b| (b % NODES, b)).collect();
    assert_eq!(distinct, superseded, "every superseded version trimmed");
    let guard = crossbeam_epoch::pin();
    for (n, &id) in (0u64..).zip(&shared.ids) {
        assert_eq!(shared.table.older_versions(id, &guard).unwrap(), Vec::new());
        assert_eq!(
            shared.table.get(id, &guard).unwrap(),
            version(n, birth_at(n, last))
        );
    }
}
