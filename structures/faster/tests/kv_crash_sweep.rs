//! FasterKV checkpoints under crashes, on the fault-injecting storage: two named sessions on
//! two threads RMW shared counters and upsert their own keys while a checkpoint is taken (and,
//! under EVENTUAL, the runtime synced after it); the storage crashes after the k-th storage
//! operation from the checkpoint's start, for every k through the checkpoint (every
//! `VELLUM_KV_CRASH_STRIDE`-th), under each commit policy. After
//! recovery, for every session, the store holds exactly its operations with serials up to its
//! recovered commit point (checked against a per-session log kept outside the store: counters
//! exact), the commit point is the last acknowledged checkpoint's or the crashed one's, and
//! the sessions continue from it. Two generations per crash point: recover, run and checkpoint
//! again with a crash, recover and check again (the recover -> checkpoint -> crash sequence).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use common::{Rng, assert_kv_accounted, assert_kv_values, env_u64, kv_options, small_options};
use vellum::io::{CrashMode, FaultConfig, FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum_faster::kv::{AddU64, CheckpointInfo, CommitPoint, FasterKv};

const DIR: &str = "/kv";
const COUNTERS: u64 = 20;
const SESSIONS: usize = 2;

#[derive(Debug, Clone, Copy)]
enum Op {
    Add(u64),
    Put(u64, u64),
}

fn storage(seed: u64) -> FaultStorage {
    let fs = FaultStorage::with_config(FaultConfig {
        seed,
        file_bytes_max: 64 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs
}

fn open(fs: &FaultStorage, policy: CommitPolicy) -> vellum_faster::Result<FasterKv> {
    let mut o = small_options();
    o.policy = policy;
    let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), o)?;
    let mut options = kv_options(4096, 8, 64);
    options.checkpoint_policy = policy;
    FasterKv::open(Arc::new(rt), "sweep", options)
}

fn name(t: usize) -> String {
    format!("s{t}")
}

/// `n` operations of session `t`.
fn plan(rng: &mut Rng, t: usize, n: usize) -> Vec<Op> {
    (0..n)
        .map(|i| {
            if rng.below(2) == 0 {
                Op::Add(rng.below(COUNTERS))
            } else {
                Op::Put(1000 * (t as u64 + 1) + rng.below(50), rng.next() ^ i as u64)
            }
        })
        .collect()
}

/// The store's contents after each session's first `until[t]` operations of `logs[t]`.
fn expected(logs: &[Vec<Op>], until: &[u64]) -> HashMap<u64, u64> {
    let mut m = HashMap::new();
    for (log, &n) in logs.iter().zip(until) {
        for op in &log[..n as usize] {
            match *op {
                Op::Add(c) => *m.entry(c).or_insert(0) += 1,
                Op::Put(k, v) => {
                    m.insert(k, v);
                }
            }
        }
    }
    m
}

/// One generation: the sessions resume and run their planned operations from two threads; a
/// checkpoint is taken once both are a third of the way, with the storage set to crash after
/// `crash` more operations. Returns the checkpoint's outcome and the storage operations from
/// that point to its end.
fn generation(
    kv: &FasterKv,
    fs: &FaultStorage,
    plans: &[Vec<Op>],
    crash: Option<u64>,
) -> (vellum_faster::Result<CheckpointInfo>, u64) {
    let progress: Vec<AtomicU64> = (0..SESSIONS).map(|_| AtomicU64::new(0)).collect();
    std::thread::scope(|scope| {
        for (t, plan) in plans.iter().enumerate() {
            let progress = &progress;
            scope.spawn(move || {
                let (mut s, _) = kv.resume_session(&name(t), AddU64).unwrap();
                for op in plan {
                    let done = match *op {
                        Op::Add(c) => s.rmw_blocking(&c.to_le_bytes(), &1).map(|_| ()),
                        Op::Put(k, v) => s.upsert(&k.to_le_bytes(), &v.to_le_bytes()),
                    };
                    // After the crash the flusher fails, and an operation waiting for room
                    // with it: the session stops there (its later operations never ran).
                    if done.is_err() {
                        break;
                    }
                    progress[t].fetch_add(1, SeqCst);
                }
            });
        }
        let third = plans[0].len() as u64 / 3;
        while progress.iter().any(|p| p.load(SeqCst) < third) {
            std::thread::yield_now();
        }
        if let Some(k) = crash {
            fs.crash_after(k);
        }
        let armed = fs.op_count();
        // Under EVENTUAL a checkpoint is durable after the runtime's next sync: acknowledged
        // only then.
        let info = kv.checkpoint().and_then(|info| {
            kv.runtime().sync()?;
            Ok(info)
        });
        (info, fs.op_count() - armed)
    })
}

/// Reopens, checks every session's prefix against `logs`, checks the commit points against
/// `acked` (those the last acknowledged checkpoint returned), and truncates the logs to them.
fn recover_and_check(
    fs: &FaultStorage,
    policy: CommitPolicy,
    logs: &mut [Vec<Op>],
    acked: &[u64],
    ctx: &str,
) -> (FasterKv, Vec<u64>) {
    let kv = open(fs, policy).unwrap_or_else(|e| panic!("{ctx}: recovery: {e}"));
    assert_kv_accounted(&kv, 4096, ctx);
    let mut until = Vec::new();
    for t in 0..SESSIONS {
        let (s, c) = kv.resume_session(&name(t), AddU64).unwrap();
        assert_eq!(
            s.last_serial(),
            c.until_serial,
            "{ctx}: s{t} continues at its commit point"
        );
        assert_eq!(
            c.excluded,
            Vec::<u64>::new(),
            "{ctx}: blocking operations are never excluded"
        );
        assert!(
            c.until_serial >= acked[t],
            "{ctx}: s{t} lost acknowledged operations"
        );
        assert!(
            c.until_serial as usize <= logs[t].len(),
            "{ctx}: s{t} past its operations"
        );
        until.push(c.until_serial);
    }
    let want = expected(logs, &until);
    let keys =
        (0..COUNTERS).chain((1..=SESSIONS as u64).flat_map(|t| (0..50).map(move |k| 1000 * t + k)));
    assert_kv_values(&kv, keys, &want, &format!("{ctx} (until {until:?})"));
    for (log, &n) in logs.iter_mut().zip(&until) {
        log.truncate(n as usize);
    }
    (kv, until)
}

fn crash_mode(k: u64, seed: u64) -> CrashMode {
    match k % 3 {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::KeepUnsynced,
        _ => CrashMode::Seeded(seed ^ k.wrapping_mul(0x9e37_79b9)),
    }
}

fn one_run(policy: CommitPolicy, seed: u64, k: u64, ops: usize) {
    let ctx = format!("{policy:?} seed {seed} k {k}");
    let mut run = Run {
        policy,
        seed,
        ops,
        rng: Rng::new(seed),
        logs: vec![Vec::new(); SESSIONS],
        acked: vec![0; SESSIONS],
    };
    // Generation 0, uncrashed: a first checkpoint.
    let fs = storage(seed);
    let kv = open(&fs, policy).unwrap();
    let plans = run.plans();
    let first = generation(&kv, &fs, &plans, None).0.unwrap();
    run.acked = (0..SESSIONS)
        .map(|t| commit_of(&first, t).until_serial)
        .collect();
    // Generation 1: a checkpoint crashed after k operations; generation 2, on the recovered
    // store: another, crashed elsewhere.
    let (kv, fs) = run.crashed_generation(kv, fs, k, &format!("{ctx} gen 1"));
    let k2 = (k * 7 + 3) % (k + 40);
    let (kv, _fs) = run.crashed_generation(kv, fs, k2, &format!("{ctx} gen 2 (k {k2})"));
    drop(kv);
}

/// One crash-sweep run's state: the per-session operation logs and the commit points an
/// acknowledged checkpoint returned.
struct Run {
    policy: CommitPolicy,
    seed: u64,
    ops: usize,
    rng: Rng,
    logs: Vec<Vec<Op>>,
    acked: Vec<u64>,
}

impl Run {
    /// The next generation's operations, appended to the logs.
    fn plans(&mut self) -> Vec<Vec<Op>> {
        let plans: Vec<_> = (0..SESSIONS)
            .map(|t| plan(&mut self.rng, t, self.ops))
            .collect();
        for (log, plan) in self.logs.iter_mut().zip(&plans) {
            log.extend_from_slice(plan);
        }
        plans
    }

    /// Runs a generation whose checkpoint crashes after `k` operations, then recovers and
    /// checks; returns the recovered store.
    fn crashed_generation(
        &mut self,
        kv: FasterKv,
        fs: FaultStorage,
        k: u64,
        ctx: &str,
    ) -> (FasterKv, FaultStorage) {
        let plans = self.plans();
        let (attempt, _) = generation(&kv, &fs, &plans, Some(k));
        let returned: Option<Vec<u64>> = attempt.ok().map(|info| {
            (0..SESSIONS)
                .map(|t| commit_of(&info, t).until_serial)
                .collect()
        });
        if let Some(points) = &returned {
            self.acked = points.clone();
        }
        drop(kv);
        let crashed = fs.crash_with(crash_mode(k, self.seed));
        let (kv, until) =
            recover_and_check(&crashed, self.policy, &mut self.logs, &self.acked, ctx);
        if let Some(points) = returned
            && self.policy != CommitPolicy::Eventual
        {
            assert_eq!(
                until, points,
                "{ctx}: an acknowledged checkpoint is the one recovered"
            );
        }
        self.acked = until;
        (kv, crashed)
    }
}

fn commit_of(info: &CheckpointInfo, t: usize) -> CommitPoint {
    info.sessions
        .iter()
        .find(|s| s.name.as_deref() == Some(&*name(t)))
        .map(|s| s.commit.clone())
        .unwrap_or_default()
}

fn sweep(policy: CommitPolicy, seed: u64) {
    let seed = seed ^ env_u64("VELLUM_KV_CRASH_SEED", 0);
    let stride = env_u64("VELLUM_KV_CRASH_STRIDE", 1).max(1);
    let ops = env_u64("VELLUM_KV_CRASH_OPS", 1500) as usize;
    // How many storage operations a checkpoint takes here, uncrashed.
    let fs = storage(seed);
    let kv = open(&fs, policy).unwrap();
    let mut rng = Rng::new(seed);
    let plans: Vec<_> = (0..SESSIONS).map(|t| plan(&mut rng, t, ops)).collect();
    generation(&kv, &fs, &plans, None).0.unwrap();
    let plans: Vec<_> = (0..SESSIONS).map(|t| plan(&mut rng, t, ops)).collect();
    let (second, total) = generation(&kv, &fs, &plans, None);
    second.unwrap();
    drop(kv);
    assert!(total >= 2, "a checkpoint does storage operations ({total})");
    let mut k = 0;
    while k <= total + 4 {
        one_run(policy, seed, k, ops);
        k += stride;
    }
}

#[test]
fn checkpoint_crash_sweep_balanced() {
    sweep(CommitPolicy::Balanced, 21);
}

#[test]
fn checkpoint_crash_sweep_strict() {
    sweep(CommitPolicy::Strict, 22);
}

#[test]
fn checkpoint_crash_sweep_eventual() {
    sweep(CommitPolicy::Eventual, 23);
}
