//! One timed run of a YCSB workload on a store: each thread's session, its operation mix and
//! what it must leave behind (which keys its upserts wrote, how many increments its RMWs made),
//! so the store's final contents are known exactly.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use vellum_faster::kv::{Completed, FasterKv, OpKind, Session, Status};

use super::keys::KeyChooser;
use super::values::{Count, decode, value};
use crate::durable_bench::rng::XorShift64;
use crate::group_commit::BoxError;

/// A YCSB core workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// 50 % reads, 50 % upserts.
    A,
    /// 95 % reads, 5 % upserts.
    B,
    /// Reads only.
    C,
    /// 50 % reads, 50 % read-modify-writes.
    F,
}

impl Workload {
    fn read_percent(self) -> u64 {
        match self {
            Workload::A | Workload::F => 50,
            Workload::B => 95,
            Workload::C => 100,
        }
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Workload::A => "a",
            Workload::B => "b",
            Workload::C => "c",
            Workload::F => "f",
        })
    }
}

/// What one run is.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub workload: Workload,
    pub keys: KeyChooser,
    pub key_count: u64,
    pub threads: usize,
    pub ops_per_thread: u64,
    pub value_bytes: usize,
    /// The version this run's upserts write (the run's number on its store).
    pub version: u64,
    pub seed: u64,
}

/// What a run did.
#[derive(Debug)]
pub struct RunResult {
    pub elapsed: Duration,
    pub ops: u64,
    pub disk_reads: u64,
    /// Per key: whether an upsert of this run wrote it.
    pub upserted: Vec<bool>,
    /// Per key: the RMW increments of this run.
    pub increments: Vec<u64>,
}

/// Pending operations a session lets queue before completing them.
const PENDING_BATCH: usize = 64;

/// What one thread did.
struct ThreadOut {
    /// When the thread started and ended its operations.
    span: (Instant, Instant),
    upserted: Vec<u64>,
    increments: Vec<u64>,
    disk_reads: u64,
}

/// Runs `spec` on `kv`: the wall time from the first thread's start to the last one's end.
pub fn run(kv: &FasterKv, spec: &RunSpec) -> Result<RunResult, BoxError> {
    let barrier = Barrier::new(spec.threads);
    let outs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..spec.threads)
            .map(|t| {
                let barrier = &barrier;
                s.spawn(move || thread(kv, spec, t as u64, barrier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("a bench thread panicked".into()))
            })
            .collect()
    });
    let outs = outs.into_iter().collect::<Result<Vec<_>, _>>()?;
    let start = outs.iter().map(|o| o.span.0).min();
    let end = outs.iter().map(|o| o.span.1).max();
    let elapsed = match (start, end) {
        (Some(s), Some(e)) => e.duration_since(s),
        _ => Duration::ZERO,
    };
    let n = spec.key_count as usize;
    let mut result = RunResult {
        elapsed,
        ops: spec.ops_per_thread * spec.threads as u64,
        disk_reads: 0,
        upserted: vec![false; n],
        increments: vec![0; n],
    };
    for out in outs {
        result.disk_reads += out.disk_reads;
        for k in out.upserted {
            result.upserted[k as usize] = true;
        }
        for (total, mine) in result.increments.iter_mut().zip(out.increments) {
            *total += mine;
        }
    }
    Ok(result)
}

fn thread(kv: &FasterKv, spec: &RunSpec, t: u64, barrier: &Barrier) -> Result<ThreadOut, BoxError> {
    let mut session = kv.session(Count {
        value_bytes: spec.value_bytes,
    })?;
    let mut rng = XorShift64::seeded(spec.seed ^ (t + 1).wrapping_mul(0x51_7cc1_b727_220a));
    let new_value = value(spec.version, 0, spec.value_bytes);
    let mut out = ThreadOut {
        span: (Instant::now(), Instant::now()),
        upserted: Vec::new(),
        increments: if spec.workload == Workload::F {
            vec![0; spec.key_count as usize]
        } else {
            Vec::new()
        },
        disk_reads: 0,
    };
    let mut buf = Vec::new();
    let read_percent = spec.workload.read_percent();
    barrier.wait();
    let start = Instant::now();
    for _ in 0..spec.ops_per_thread {
        let k = spec.keys.next(&mut rng);
        let key = k.to_le_bytes();
        if (rng.below(100) as u64) < read_percent {
            if session.read(&key, &mut buf)? == Status::Found {
                check_read(&buf, spec)?;
            }
        } else if spec.workload == Workload::F {
            if session.rmw(&key, &1)? == Status::NotFound {
                return Err(format!("RMW found no value for loaded key {k}").into());
            }
            out.increments[k as usize] += 1;
        } else {
            session.upsert(&key, &new_value)?;
            out.upserted.push(k);
        }
        if session.pending_count() >= PENDING_BATCH {
            check_completed(&session.complete_pending()?, spec)?;
        }
    }
    check_completed(&session.complete_pending()?, spec)?;
    out.span = (start, Instant::now());
    out.disk_reads = session.stats().disk_reads;
    Ok(out)
}

fn check_read(v: &[u8], spec: &RunSpec) -> Result<(), BoxError> {
    match decode(v, spec.value_bytes) {
        Some((version, _)) if version <= spec.version => Ok(()),
        _ => Err(format!("a read returned a value no upsert wrote: {v:?}").into()),
    }
}

fn check_completed(done: &[Completed], spec: &RunSpec) -> Result<(), BoxError> {
    for c in done {
        match (c.kind, c.status) {
            (OpKind::Read, Status::Found) => check_read(&c.value, spec)?,
            (OpKind::Rmw, Status::Found) => {}
            (kind, status) => {
                return Err(format!("a pending {kind:?} of a loaded key ended {status:?}").into());
            }
        }
    }
    Ok(())
}

/// Loads every key with version 0 from `threads` sessions.
pub fn load(kv: &FasterKv, keys: u64, value_bytes: usize, threads: u64) -> Result<(), BoxError> {
    let v = value(0, 0, value_bytes);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let v = &v;
                s.spawn(move || -> Result<(), BoxError> {
                    let mut session = kv.session(Count { value_bytes })?;
                    for k in (t..keys).step_by(threads as usize) {
                        session.upsert(&k.to_le_bytes(), v)?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err("a load thread panicked".into()))
        })
    })
}

/// Reads every key back and compares it with `(versions, counts)`: the number checked.
pub fn verify(
    kv: &FasterKv,
    versions: &[u64],
    counts: &[u64],
    value_bytes: usize,
) -> Result<u64, BoxError> {
    let mut session: Session<'_, Count> = kv.session(Count { value_bytes })?;
    let mut buf = Vec::new();
    for (k, (&version, &count)) in versions.iter().zip(counts).enumerate() {
        let status = session.read_blocking(&(k as u64).to_le_bytes(), &mut buf)?;
        let got = (status == Status::Found)
            .then(|| decode(&buf, value_bytes))
            .flatten();
        if got != Some((version, count)) {
            return Err(format!(
                "key {k}: expected version {version} count {count}, read {status:?} {got:?}"
            )
            .into());
        }
    }
    Ok(versions.len() as u64)
}
