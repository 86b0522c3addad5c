//! Process kills of a FasterKV store: a child process runs two named sessions on two threads
//! (RMWs of shared counters, upserts of their own keys) while its main thread takes a checkpoint
//! every few milliseconds, on the real filesystem, and is killed with SIGKILL at a random
//! moment. The parent recovers the store and checks, for each session: its commit point is at
//! least the one the last acknowledged checkpoint returned, nothing is excluded, and the store
//! holds exactly its operations up to the commit point. The next child resumes the sessions at
//! their commit points and replays what was lost (each session's operation is a pure function
//! of its serial number), and is killed too: three generations per round.
//!
//! **Child.** The test binary re-executes itself (`kv_child --exact --ignored`) with
//! `VELLUM_KV_KILL_DIR`, `VELLUM_KV_KILL_SEED` and `VELLUM_KV_KILL_POLICY` set; without them
//! `kv_child` returns at once.
//!
//! **Journal** (`<dir>/acks`, O_APPEND, one `write` per line, never synced: a SIGKILL keeps the
//! page cache): `open` once the store is recovered, and `ack <until_0> <until_1>` when a
//! checkpoint returned (EVENTUAL: and a runtime sync after it). A line cut short is ignored.
//!
//! `VELLUM_KV_KILL_ROUNDS=n` runs n rounds per policy with different seeds.

#![cfg(unix)]

use std::collections::HashMap;
use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use vellum::runtime::{CommitPolicy, RuntimeOptions};
use vellum_faster::kv::{AddU64, FasterKv, KvOptions, Status};

mod common;

use common::{
    KillVars, assert_kv_values, child_env, env_u64, journal, journal_lines, kv_options,
    open_runtime_retrying, policy_from, spawn_opened_child,
};

const ENV_DIR: &str = "VELLUM_KV_KILL_DIR";
const ENV_SEED: &str = "VELLUM_KV_KILL_SEED";
const ENV_POLICY: &str = "VELLUM_KV_KILL_POLICY";
const VARS: KillVars = [ENV_DIR, ENV_SEED, ENV_POLICY];
const SESSIONS: u64 = 2;
const COUNTERS: u64 = 30;
const OWN_KEYS: u64 = 200;

fn options(policy: CommitPolicy) -> KvOptions {
    // 16 KiB pages, 8 in memory: the log runs through memory and onto page nodes.
    let mut o = kv_options(16 << 10, 8, 1024);
    o.checkpoint_policy = policy;
    o
}

fn open(dir: &Path, policy: CommitPolicy) -> FasterKv {
    let o = RuntimeOptions {
        create_if_missing: true,
        policy,
        ..RuntimeOptions::default()
    };
    let rt = open_runtime_retrying(&dir.join("store"), o);
    FasterKv::open(Arc::new(rt), "kill", options(policy)).expect("open store")
}

/// Session `t`'s operation number `serial`: `Some(counter)` adds 1 to a shared counter,
/// `None` upserts the session's key `serial % OWN_KEYS` with the serial as its value.
fn op(seed: u64, t: u64, serial: u64) -> Option<u64> {
    let mut x = (seed ^ t << 40 ^ serial).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x ^= x >> 29;
    (!x.is_multiple_of(3)).then_some(x % COUNTERS)
}

fn own_key(t: u64, serial: u64) -> u64 {
    1000 * (t + 1) + serial % OWN_KEYS
}

/// The child: recovers, resumes the sessions and runs them, checkpointing, until killed.
#[test]
#[ignore = "run by the kill test as a child process"]
fn kv_child() {
    let Some((dir, seed, policy)) = child_env(VARS) else {
        return;
    };
    let dir = dir.as_path();
    let kv = open(dir, policy);
    journal(dir, "open 0");
    std::thread::scope(|scope| {
        for t in 0..SESSIONS {
            let kv = &kv;
            scope.spawn(move || {
                let (mut s, _) = kv.resume_session(&format!("s{t}"), AddU64).expect("resume");
                loop {
                    let serial = s.last_serial() + 1;
                    match op(seed, t, serial) {
                        Some(c) => {
                            let status = s.rmw_blocking(&c.to_le_bytes(), &1).expect("rmw");
                            assert_ne!(status, Status::Pending);
                        }
                        None => s
                            .upsert(&own_key(t, serial).to_le_bytes(), &serial.to_le_bytes())
                            .expect("upsert"),
                    }
                }
            });
        }
        loop {
            std::thread::sleep(Duration::from_millis(5));
            let info = kv.checkpoint().expect("checkpoint");
            if policy == CommitPolicy::Eventual {
                kv.runtime().sync().expect("sync");
            }
            let until: Vec<String> = (0..SESSIONS)
                .map(|t| {
                    let name = format!("s{t}");
                    let c = info
                        .sessions
                        .iter()
                        .find(|c| c.name.as_deref() == Some(&*name));
                    c.map_or(0, |c| c.commit.until_serial).to_string()
                })
                .collect();
            journal(dir, &format!("ack {}", until.join(" ")));
        }
    });
}

/// Recovers and checks every session's prefix; returns the commit points.
fn check(dir: &Path, seed: u64, policy: CommitPolicy, ctx: &str) -> Vec<u64> {
    let mut acked = vec![0u64; SESSIONS as usize];
    for line in journal_lines(dir) {
        if line.len() == 1 + SESSIONS as usize && line[0] == "ack" {
            for (a, n) in acked.iter_mut().zip(&line[1..]) {
                *a = (*a).max(n.parse().expect("journal number"));
            }
        }
    }
    let kv = open(dir, policy);
    let mut want: HashMap<u64, u64> = HashMap::new();
    let mut until = Vec::new();
    for t in 0..SESSIONS {
        let (s, c) = kv.resume_session(&format!("s{t}"), AddU64).unwrap();
        assert!(
            c.excluded.is_empty(),
            "{ctx}: s{t} excluded {:?}",
            c.excluded
        );
        assert!(
            c.until_serial >= acked[t as usize],
            "{ctx}: s{t} lost acknowledged operations: {} < {}",
            c.until_serial,
            acked[t as usize]
        );
        assert_eq!(s.last_serial(), c.until_serial);
        for serial in 1..=c.until_serial {
            match op(seed, t, serial) {
                Some(counter) => *want.entry(counter).or_insert(0) += 1,
                None => {
                    want.insert(own_key(t, serial), serial);
                }
            }
        }
        until.push(c.until_serial);
    }
    let keys = (0..COUNTERS)
        .chain((0..SESSIONS).flat_map(|t| (0..OWN_KEYS).map(move |k| 1000 * (t + 1) + k)));
    assert_kv_values(&kv, keys, &want, &format!("{ctx} (until {until:?})"));
    until
}

fn round(policy: &str, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut delay_rng = common::Rng::new(seed ^ 0x5eed);
    let mut until = Vec::new();
    for kill in 0..3 {
        let ctx = format!("{policy} seed {seed} kill {kill}");
        let mut child = spawn_opened_child("kv_child", VARS, (dir, seed, policy), &ctx);
        let delay = 100 + delay_rng.below(400);
        std::thread::sleep(Duration::from_millis(delay));
        assert!(
            child.try_wait().unwrap().is_none(),
            "{ctx}: the child exited before the kill"
        );
        child.kill().unwrap();
        child.wait().unwrap();
        until = check(
            dir,
            seed,
            policy_from(policy),
            &format!("{ctx} delay {delay} ms"),
        );
        eprintln!("{ctx}: recovered at {until:?}");
    }
    assert!(
        until.iter().all(|&u| u > 0),
        "{policy} seed {seed}: no checkpoint held anything: {until:?}"
    );
}

#[test]
fn killed_child_recovers_every_session_to_its_commit_point() {
    let rounds = env_u64("VELLUM_KV_KILL_ROUNDS", 1);
    let base = env_u64("VELLUM_KV_KILL_SEED", 9);
    std::thread::scope(|s| {
        for policy in ["balanced", "eventual"] {
            s.spawn(move || {
                for r in 0..rounds {
                    round(policy, base + r * 1000);
                }
            });
        }
    });
}
