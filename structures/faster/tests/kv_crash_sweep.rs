//! FasterKV checkpoints under crashes, on the fault-injecting storage: two named sessions on
//! two threads RMW shared counters and upsert their own keys while a checkpoint is taken (and,
//! under EVENTUAL, the runtime synced after it); the storage crashes after the k-th storage
//! operation from the checkpoint's start, for every k through the checkpoint (every
//! `VELLUM_KV_CRASH_STRIDE`-th), under each commit policy. After
//! recovery, for every session, the store holds exactly its operations with serials up to its
//! recovered commit point (checked against a per-session log kept outside the store: counters
//! exact), the commit point is the last acknowledged checkpoint's or the crashed one's, and
//! the sessions continue from it. Per crash point: recover; a full compaction of the recovered
//! store crashed part way, recover and check (recover -> compact -> crash); run and checkpoint
//! again with a crash, recover and check (recover -> checkpoint -> crash). The sessions
//! upsert, RMW and delete. One sweep runs the production options (background flush,
//! checkpoints and compaction, and FasterKV checkpoints every 5 ms).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

use common::{Rng, assert_kv_accounted, assert_kv_values, env_u64, kv_options, small_options};
use vellum::io::{CrashMode, FaultConfig, FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime, RuntimeOptions};
use vellum_faster::kv::{AddU64, CheckpointInfo, CommitPoint, FasterKv};

const DIR: &str = "/kv";
const COUNTERS: u64 = 20;
const SESSIONS: usize = 2;

#[derive(Debug, Clone, Copy)]
enum Op {
    Add(u64),
    Put(u64, u64),
    Del(u64),
}

/// How a sweep runs the store: the commit policy, and whether with the production options
/// (the runtime's background flush, checkpoints and compaction, and FasterKV's background
/// checkpoints every 5 ms) or the deterministic small ones.
#[derive(Debug, Clone, Copy)]
struct Setup {
    policy: CommitPolicy,
    production: bool,
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

fn open(fs: &FaultStorage, setup: Setup) -> vellum_faster::Result<FasterKv> {
    let mut o = if setup.production {
        let mut o = RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        };
        // The fault storage's file limit.
        o.data.alloc.file_bytes_max = 64 << 20;
        o
    } else {
        small_options()
    };
    o.policy = setup.policy;
    let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), o)?;
    let mut options = kv_options(4096, 8, 64);
    options.checkpoint_policy = setup.policy;
    if setup.production {
        options.checkpoint_interval = Some(std::time::Duration::from_millis(5));
    }
    FasterKv::open(Arc::new(rt), "sweep", options)
}

fn name(t: usize) -> String {
    format!("s{t}")
}

/// `n` operations of session `t`.
fn plan(rng: &mut Rng, t: usize, n: usize) -> Vec<Op> {
    (0..n)
        .map(|i| {
            let own = 1000 * (t as u64 + 1) + rng.below(50);
            match rng.below(5) {
                0 | 1 => Op::Add(rng.below(COUNTERS)),
                2 | 3 => Op::Put(own, rng.next() ^ i as u64),
                _ => Op::Del(own),
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
                Op::Del(k) => {
                    m.remove(&k);
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
    eventual: bool,
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
                        Op::Del(k) => s.delete_blocking(&k.to_le_bytes()).map(|_| ()),
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
            if eventual {
                kv.runtime().sync()?;
            }
            Ok(info)
        });
        let ops = fs.op_count() - armed;
        // Acknowledged: the power goes at once (nothing written after it may help it survive).
        if crash.is_some() && info.is_ok() {
            fs.crash_after(0);
        }
        (info, ops)
    })
}

/// Reopens, checks every session's prefix against `logs`, checks the commit points against
/// `acked` (those the last acknowledged checkpoint returned), and truncates the logs to them.
fn recover_and_check(
    fs: &FaultStorage,
    setup: Setup,
    logs: &mut [Vec<Op>],
    acked: &[u64],
    ctx: &str,
) -> (FasterKv, Vec<u64>) {
    let kv = open(fs, setup).unwrap_or_else(|e| panic!("{ctx}: recovery: {e}"));
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

fn one_run(setup: Setup, seed: u64, k: u64, ops: usize) {
    let ctx = format!("{setup:?} seed {seed} k {k}");
    let mut run = Run {
        setup,
        seed,
        ops,
        rng: Rng::new(seed),
        logs: vec![Vec::new(); SESSIONS],
        acked: vec![0; SESSIONS],
    };
    // Generation 0, uncrashed: a first checkpoint.
    let fs = storage(seed);
    let kv = open(&fs, setup).unwrap();
    let plans = run.plans();
    let first = generation(&kv, &fs, &plans, None, eventual(setup))
        .0
        .unwrap();
    run.acked = (0..SESSIONS)
        .map(|t| commit_of(&first, t).until_serial)
        .collect();
    // Generation 1: a checkpoint crashed after k operations; then, on the recovered store, a
    // compaction crashed; generation 2: another checkpoint, crashed elsewhere.
    let (kv, fs) = run.crashed_generation(kv, fs, k, &format!("{ctx} gen 1"));
    let kc = (k * 5 + 1) % (k + 30);
    let (kv, fs) = run.crashed_compaction(kv, fs, kc, &format!("{ctx} compaction (k {kc})"));
    let k2 = (k * 7 + 3) % (k + 40);
    let (kv, _fs) = run.crashed_generation(kv, fs, k2, &format!("{ctx} gen 2 (k {k2})"));
    drop(kv);
}

/// One crash-sweep run's state: the per-session operation logs and the commit points an
/// acknowledged checkpoint returned.
struct Run {
    setup: Setup,
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
        let (attempt, _) = generation(&kv, &fs, &plans, Some(k), eventual(self.setup));
        let returned: Option<Vec<u64>> = attempt.ok().map(|info| {
            (0..SESSIONS)
                .map(|t| commit_of(&info, t).until_serial)
                .collect()
        });
        if let Some(points) = &returned {
            self.acked = points.clone();
        }
        drop(kv);
        self.recover(&fs, crash_mode(k, self.seed), returned, ctx)
    }

    /// A full compaction of the recovered store, crashed after `k` operations (no operation
    /// runs: the store must recover to the same checkpoint).
    fn crashed_compaction(
        &mut self,
        kv: FasterKv,
        fs: FaultStorage,
        k: u64,
        ctx: &str,
    ) -> (FasterKv, FaultStorage) {
        let rt = kv.runtime().clone();
        fs.crash_after(k);
        let outcome = rt.compact_with(&CompactionOptions::full(), &mut |_| {});
        drop(rt);
        drop(kv);
        // Unless the crash came first, the compaction moved or skipped the victims' nodes, or
        // its victims were wholly free and it returned them (reclamation runs in batches, so
        // the pass itself may have freed their last versions).
        if let Ok(report) = &outcome {
            assert!(
                report.nodes_moved + report.nodes_skipped > 0
                    || report.segments_returned >= report.victims,
                "{ctx}: {report:?}"
            );
        }
        let same = Some(self.acked.clone()).filter(|_| !self.setup.production);
        self.recover(&fs, crash_mode(k + 1, self.seed), same, ctx)
    }

    /// Crashes `fs`, recovers and checks; `returned` are the commit points the recovered
    /// checkpoint must have (an acknowledged one's).
    fn recover(
        &mut self,
        fs: &FaultStorage,
        mode: CrashMode,
        returned: Option<Vec<u64>>,
        ctx: &str,
    ) -> (FasterKv, FaultStorage) {
        let crashed = fs.crash_with(mode);
        let (kv, until) = recover_and_check(&crashed, self.setup, &mut self.logs, &self.acked, ctx);
        // (Under the production options a background checkpoint may have been taken after it.)
        if let Some(points) = returned
            && self.setup.policy != CommitPolicy::Eventual
            && !self.setup.production
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

fn sweep(setup: Setup, seed: u64) {
    let seed = seed ^ env_u64("VELLUM_KV_CRASH_SEED", 0);
    // The production sweep's checkpoints take more operations (background ones join them):
    // every third crash point by default.
    let stride = env_u64(
        "VELLUM_KV_CRASH_STRIDE",
        if setup.production { 3 } else { 1 },
    )
    .max(1);
    let ops = env_u64("VELLUM_KV_CRASH_OPS", 1500) as usize;
    // How many storage operations a checkpoint takes here, uncrashed.
    let fs = storage(seed);
    let kv = open(&fs, setup).unwrap();
    let mut rng = Rng::new(seed);
    let plans: Vec<_> = (0..SESSIONS).map(|t| plan(&mut rng, t, ops)).collect();
    generation(&kv, &fs, &plans, None, eventual(setup))
        .0
        .unwrap();
    let plans: Vec<_> = (0..SESSIONS).map(|t| plan(&mut rng, t, ops)).collect();
    let (second, total) = generation(&kv, &fs, &plans, None, eventual(setup));
    second.unwrap();
    drop(kv);
    assert!(total >= 2, "a checkpoint does storage operations ({total})");
    let mut k = 0;
    while k <= total + 4 {
        one_run(setup, seed, k, ops);
        k += stride;
    }
    eprintln!(
        "{setup:?}: {} crash points of {total} + 4",
        (total + 4) / stride + 1
    );
}

fn eventual(setup: Setup) -> bool {
    setup.policy == CommitPolicy::Eventual
}

fn small(policy: CommitPolicy) -> Setup {
    Setup {
        policy,
        production: false,
    }
}

#[test]
fn checkpoint_crash_sweep_balanced() {
    sweep(small(CommitPolicy::Balanced), 21);
}

#[test]
fn checkpoint_crash_sweep_strict() {
    sweep(small(CommitPolicy::Strict), 22);
}

#[test]
fn checkpoint_crash_sweep_eventual() {
    sweep(small(CommitPolicy::Eventual), 23);
}

/// The production options: the runtime's background flush, checkpoints and compaction, and a
/// FasterKV checkpoint every 5 ms besides the ones the sweep takes.
#[test]
fn checkpoint_crash_sweep_production_options() {
    let setup = Setup {
        policy: CommitPolicy::Balanced,
        production: true,
    };
    sweep(setup, 24);
}
