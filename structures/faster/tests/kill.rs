//! Process kills: a child process appends and commits on the real filesystem and is killed with
//! SIGKILL at a random moment (mid-append or mid-commit); the parent recovers the log and checks:
//! recovery succeeds; the recovered entries are exactly the workload's first `n` entries,
//! byte-exact, in order; `n` ends a batch (no partial batch) and is at least every acknowledged
//! commit's count; the named iterator is where the commit that covered `n` entries saved it
//! (on the entry just before `n`); every checksum verifies. A second child then recovers the same
//! directory, continues the workload after the recovered tail and is killed too (twice).
//!
//! **Child.** The test binary re-executes itself (`child_workload --exact --ignored`) with
//! `VELLUM_FLOG_KILL_DIR`, `VELLUM_FLOG_KILL_SEED` and `VELLUM_FLOG_KILL_POLICY` set; without them
//! `child_workload` returns at once. The workload is a pure function of the seed: batch after
//! batch (1 to 4 entries of 0 to 2000 bytes), a commit every few batches (and at least every
//! 32 KiB) after saving the iterator at the last entry appended (so a full ring of 128 KiB never
//! forces a commit in between, which would save an older position).
//!
//! **Journal** (`<dir>/acks`, O_APPEND, one `write` per line, never synced: a SIGKILL keeps the
//! page cache): `open n` (recovered `n` entries), `ack n` (a commit covering `n` entries returned;
//! EVENTUAL: a `sync` after it returned). A line cut short by the kill is ignored.
//!
//! `VELLUM_FLOG_KILL_ROUNDS=n` runs n rounds per policy with different seeds.

#![cfg(unix)]

use std::path::Path;

use std::sync::Arc;
use std::time::{Duration, Instant};

use vellum::runtime::{CommitPolicy, RuntimeOptions};
use vellum_faster::{FasterLog, FasterLogOptions};

mod common;

use common::{
    KillVars, Rng, child_env, env_u64, journal, journal_lines, open_runtime_retrying, payload,
    policy_from, spawn_opened_child,
};

const ENV_DIR: &str = "VELLUM_FLOG_KILL_DIR";
const ENV_SEED: &str = "VELLUM_FLOG_KILL_SEED";
const ENV_POLICY: &str = "VELLUM_FLOG_KILL_POLICY";
const VARS: KillVars = [ENV_DIR, ENV_SEED, ENV_POLICY];
const ITER: &str = "consumer";

fn open(dir: &Path, policy: CommitPolicy) -> FasterLog {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        policy,
        checkpoint_log_bytes: 1 << 20,
        ..RuntimeOptions::default()
    };
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 64 << 20;
    o.log.preallocate_bytes = 256 << 10;
    let rt = open_runtime_retrying(&dir.join("store"), o);
    let options = FasterLogOptions {
        page_bytes: 16 << 10,
        memory_pages: 8,
        policy: Some(policy),
    };
    FasterLog::open(Arc::new(rt), "kill", options).expect("open log")
}

/// The workload: batches of entries and whether a commit follows each batch.
struct Workload {
    rng: Rng,
    seed: u64,
    index: u64,
}

impl Workload {
    fn new(seed: u64) -> Self {
        Workload {
            rng: Rng::new(seed),
            seed,
            index: 0,
        }
    }

    fn next_batch(&mut self) -> (Vec<Vec<u8>>, bool) {
        let n = 1 + self.rng.below(4);
        let batch = (0..n)
            .map(|_| {
                let len = self.rng.below(2001) as usize;
                self.index += 1;
                payload(self.seed ^ self.index << 20, len)
            })
            .collect();
        (batch, self.rng.below(4) == 0)
    }
}

/// The child: recovers, then runs the workload from the recovered entry on until killed.
#[test]
#[ignore = "run by the kill test as a child process"]
fn child_workload() {
    let Some((dir, seed, policy)) = child_env(VARS) else {
        return;
    };
    let dir = dir.as_path();
    let log = open(dir, policy);
    let recovered = log.scan_all().count() as u64;
    let mut w = Workload::new(seed);
    let mut skipped = 0u64;
    while skipped < recovered {
        skipped += w.next_batch().0.len() as u64;
    }
    assert_eq!(skipped, recovered, "recovery ended inside a batch");
    journal(dir, &format!("open {recovered}"));
    let mut count = recovered;
    let mut last = None;
    let mut uncommitted = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        let (batch, commit) = w.next_batch();
        let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
        let addrs = log.append_batch(&refs).expect("append");
        count += batch.len() as u64;
        last = addrs.last().copied().or(last);
        uncommitted += batch.iter().map(|b| b.len() as u64 + 16).sum::<u64>();
        // A commit at least every 32 KiB: the ring (8 pages of 16 KiB) never fills with
        // unflushed pages, which would force a commit carrying an older iterator position.
        if commit || uncommitted > 32 << 10 {
            uncommitted = 0;
            if let Some(a) = last {
                log.save_iterator(ITER, a).expect("save");
            }
            log.commit().expect("commit");
            if policy == CommitPolicy::Eventual {
                log.runtime().sync().expect("sync");
            }
            journal(dir, &format!("ack {count}"));
        }
    }
}

/// Every complete journal line's (word, number).
fn read_journal(dir: &Path) -> Vec<(String, u64)> {
    journal_lines(dir)
        .into_iter()
        .filter_map(|l| Some((l.first()?.clone(), l.get(1)?.parse().ok()?)))
        .collect()
}

fn check(dir: &Path, seed: u64, policy: CommitPolicy, ctx: &str) -> u64 {
    let acked = read_journal(dir)
        .iter()
        .filter(|(w, _)| w == "ack")
        .map(|(_, n)| *n)
        .max()
        .unwrap_or(0);
    let log = open(dir, policy);
    let got: Vec<_> = log
        .scan_all()
        .map(|e| e.unwrap_or_else(|e| panic!("{ctx}: scan: {e}")))
        .collect();
    let n = got.len() as u64;
    assert!(
        n >= acked,
        "{ctx}: {n} entries recovered, {acked} acknowledged"
    );
    let mut w = Workload::new(seed);
    let mut want = Vec::new();
    while (want.len() as u64) < n {
        want.extend(w.next_batch().0);
    }
    assert_eq!(want.len() as u64, n, "{ctx}: recovery ended inside a batch");
    for (i, (g, e)) in got.iter().zip(&want).enumerate() {
        assert!(g.bytes == *e, "{ctx}: entry {i} differs");
    }
    assert_eq!(
        log.iterator_position(ITER),
        got.last().map(|e| e.address),
        "{ctx}: named iterator"
    );
    assert_eq!(log.verify().unwrap(), n);
    n
}

fn round(policy: &str, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut rng = Rng::new(seed ^ 0x5eed);
    let mut recovered = 0;
    for kill in 0..3 {
        let ctx = format!("{policy} seed {seed} kill {kill}");
        let mut child = spawn_opened_child("child_workload", VARS, (dir, seed, policy), &ctx);
        let delay = 50 + rng.below(350);
        std::thread::sleep(Duration::from_millis(delay));
        child.kill().unwrap();
        child.wait().unwrap();
        recovered = check(
            dir,
            seed,
            policy_from(policy),
            &format!("{ctx} delay {delay} ms"),
        );
    }
    assert!(
        recovered > 0,
        "{policy} seed {seed}: the children committed nothing"
    );
}

#[test]
fn killed_child_recovers_acknowledged_entries() {
    let rounds = env_u64("VELLUM_FLOG_KILL_ROUNDS", 1);
    let base = env_u64("VELLUM_FLOG_KILL_SEED", 7);
    std::thread::scope(|s| {
        for policy in ["strict", "balanced", "eventual"] {
            s.spawn(move || {
                for r in 0..rounds {
                    round(policy, base + r * 1000);
                }
            });
        }
    });
}
