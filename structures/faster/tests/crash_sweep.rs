//! The crash sweep: a seeded single-writer workload (appends of 0 B to a whole page, atomic
//! batches, named-iterator saves, commits; EVENTUAL adds `sync`s) on the fault-injecting
//! storage, crashed after the k-th storage operation for every k (every `VELLUM_FLOG_CRASH_STRIDE`
//! -th), for each commit policy. After each recovery:
//! - the recovered entries are exactly the model's first `n` entries, byte-exact, in order and at
//!   the addresses they were appended at, where `n` is the entry count of some commit that was
//!   called (so no partial batch) and at least the count of every acknowledged commit
//!   (STRICT/BALANCED: `commit` returned; EVENTUAL: a later `sync` returned);
//! - the named iterator is where that commit saved it, and resumes at the entry it names;
//! - appends continue after the recovered tail (the next generation runs on the recovered log);
//! - the runtime's live nodes are exactly the metadata, its chunk nodes, the extents they list
//!   and the nodes pending retirement: a crash leaks no node and loses none listed.
//!
//! Three generations per crash point: crash at k, recover and check, continue and crash at a
//! second point (with a crash inside the following recovery), recover and check, continue
//! uncrashed, close cleanly, reopen and check that nothing committed is lost.
//! `VELLUM_FLOG_CRASH_OPS` (default 40) sets operations per generation and
//! `VELLUM_FLOG_CRASH_SEED` varies the seeds. A failure names policy, seed and k.
//!
//! The chunk case first fills 62 whole pages and commits them (uncrashed), so the swept
//! workload's commits move the first 64 complete pages into a chunk node (asserted): the crash
//! points include every storage operation of the commit that writes it. It runs for BALANCED by
//! default and for every policy with `VELLUM_FLOG_CRASH_CHUNK_ALL=1`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vellum::io::{CrashMode, FaultStorage};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum_faster::meta::Meta;
use vellum_faster::{FasterLog, FasterLogOptions};

mod common;

use common::{Rng, assert_accounted, env_u64, payload, small_options};

const DIR: &str = "/store";
const ITER: &str = "reader";

#[derive(Debug, Default, Clone)]
struct Model {
    /// Every entry appended, in order: address and bytes.
    entries: Vec<(u64, Vec<u8>)>,
    /// For each commit called: entry count it covers -> iterator position it saved.
    commits: BTreeMap<usize, Option<u64>>,
    /// Every commit covering at most this many entries is acknowledged.
    acked: usize,
    /// Entries covered by the last commit called (commits happen only after new entries).
    last_commit: usize,
}

fn storage(seed: u64) -> FaultStorage {
    use vellum::io::Storage;
    let fs = FaultStorage::with_config(vellum::io::FaultConfig {
        seed,
        file_bytes_max: 64 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs
}

fn options(policy: CommitPolicy) -> FasterLogOptions {
    FasterLogOptions {
        page_bytes: 4096,
        memory_pages: 128,
        policy: Some(policy),
    }
}

fn open(fs: &FaultStorage, policy: CommitPolicy) -> vellum_faster::Result<FasterLog> {
    let mut o = small_options();
    o.policy = policy;
    let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), o)?;
    FasterLog::open(Arc::new(rt), "sweep", options(policy))
}

/// Runs `ops` operations; stops at the first error (the storage crashed).
fn run(log: &FasterLog, rng: &mut Rng, policy: CommitPolicy, ops: usize, m: &mut Model) {
    for _ in 0..ops {
        let r: vellum_faster::Result<()> = (|| {
            match rng.below(8) {
                0..=3 => {
                    let len = [0usize, 5, 100, 700, 3000, 4088][rng.below(6) as usize];
                    let b = payload(rng.next(), len);
                    let a = log.append(&b)?;
                    m.entries.push((a, b));
                }
                4 | 5 => {
                    let batch: Vec<Vec<u8>> = (0..2 + rng.below(3))
                        .map(|_| payload(rng.next(), rng.below(600) as usize))
                        .collect();
                    let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                    let addrs = log.append_batch(&refs)?;
                    m.entries.extend(addrs.into_iter().zip(batch));
                }
                _ => {
                    if m.entries.len() == m.last_commit {
                        return Ok(());
                    }
                    let n = m.entries.len();
                    let it = m.entries.last().map(|e| e.0);
                    if let Some(pos) = it {
                        log.save_iterator(ITER, pos)?;
                    }
                    m.commits.insert(n, it);
                    m.last_commit = n;
                    log.commit()?;
                    if policy != CommitPolicy::Eventual {
                        m.acked = n;
                    } else if rng.below(2) == 0 {
                        log.runtime().sync()?;
                        m.acked = n;
                    }
                }
            }
            Ok(())
        })();
        if r.is_err() {
            return;
        }
    }
}

fn check(log: &FasterLog, m: &mut Model, ctx: &str) {
    let got: Vec<(u64, Vec<u8>)> = log
        .scan_all()
        .map(|e| {
            let e = e.unwrap_or_else(|e| panic!("{ctx}: scan: {e}"));
            (e.address, e.bytes)
        })
        .collect();
    let n = got.len();
    assert!(
        n >= m.acked,
        "{ctx}: {n} entries recovered, {} acknowledged",
        m.acked
    );
    assert!(
        n == 0 || m.commits.contains_key(&n),
        "{ctx}: {n} entries is no commit's count (a partial batch or an uncommitted entry)"
    );
    assert!(got == m.entries[..n], "{ctx}: recovered entries differ");
    let saved = m.commits.get(&n).copied().flatten();
    assert_eq!(log.iterator_position(ITER), saved, "{ctx}: named iterator");
    if let Some(pos) = saved {
        let e = log
            .named_iterator(ITER)
            .next_timeout(Duration::ZERO)
            .unwrap_or_else(|e| panic!("{ctx}: iterator: {e}"))
            .expect("the saved entry");
        assert_eq!(e.address, pos, "{ctx}: iterator resumes at its entry");
    }
    log.verify()
        .unwrap_or_else(|e| panic!("{ctx}: verify: {e}"));
    // Nothing leaked: every live node is one the recovered metadata accounts for.
    let rt = log.runtime();
    if rt.root("faster-log:sweep").is_some() {
        assert_accounted(rt, "sweep", ctx);
    } else {
        assert!(rt.node_ids().is_empty(), "{ctx}: nodes live without a log");
    }
    m.entries.truncate(n);
    m.commits.retain(|k, _| *k <= n);
    m.acked = n;
    m.last_commit = n;
}

/// Appends `pages` entries that each fill a page and commits them: the log starts that far in.
fn prefill(log: &FasterLog, pages: u64, m: &mut Model) {
    if pages == 0 {
        return;
    }
    for i in 0..pages {
        let b = payload(i ^ 0x5eed, 4088);
        let a = log.append(&b).expect("prefill append");
        m.entries.push((a, b));
    }
    log.commit().expect("prefill commit");
    // Durable under every policy (EVENTUAL needs the sync).
    log.runtime().sync().expect("prefill sync");
    let n = m.entries.len();
    m.commits.insert(n, None);
    m.acked = n;
    m.last_commit = n;
}

/// Chunk nodes the log's metadata names.
fn chunk_count(log: &FasterLog) -> usize {
    let rt = log.runtime();
    let meta = rt
        .read(rt.root("faster-log:sweep").expect("root"))
        .expect("meta");
    Meta::decode(&meta, "meta")
        .expect("meta decodes")
        .chunks
        .len()
}

fn crash_mode(k: u64, seed: u64) -> CrashMode {
    match k % 3 {
        0 => CrashMode::DropUnsynced,
        1 => CrashMode::KeepUnsynced,
        _ => CrashMode::Seeded(seed ^ k.wrapping_mul(0x9e37_79b9)),
    }
}

fn one_run(policy: CommitPolicy, seed: u64, k: u64, ops: usize, prefill_pages: u64) {
    let ctx = format!("{policy:?} seed {seed} k {k} prefill {prefill_pages}");
    let mut rng = Rng::new(seed);
    let mut m = Model::default();
    let fs = storage(seed);
    let log = open(&fs, policy).unwrap_or_else(|e| panic!("{ctx}: create: {e}"));
    prefill(&log, prefill_pages, &mut m);
    fs.crash_after(k);
    run(&log, &mut rng, policy, ops, &mut m);
    drop(log);
    let fs = fs.crash_with(crash_mode(k, seed));
    let log = open(&fs, policy).unwrap_or_else(|e| panic!("{ctx} gen 1: recovery: {e}"));
    check(&log, &mut m, &format!("{ctx} gen 1"));

    let k2 = (k * 7 + 3) % (k + 40);
    fs.crash_after(k2);
    run(&log, &mut rng, policy, ops, &mut m);
    drop(log);
    let fs = fs.crash_with(crash_mode(k2 + 1, seed));
    fs.crash_after(k % 23);
    if let Ok(log) = open(&fs, policy) {
        drop(log);
    }
    let fs = fs.crash_with(crash_mode(k + 2, seed));
    let log = open(&fs, policy).unwrap_or_else(|e| panic!("{ctx} gen 2: recovery: {e}"));
    check(&log, &mut m, &format!("{ctx} gen 2"));

    run(&log, &mut rng, policy, ops, &mut m);
    let committed = m.entries.len();
    if committed > m.last_commit {
        let it = m.entries.last().map(|e| e.0);
        if let Some(pos) = it {
            log.save_iterator(ITER, pos).unwrap();
        }
        m.commits.insert(committed, it);
        log.commit()
            .unwrap_or_else(|e| panic!("{ctx}: gen 3 commit: {e}"));
    }
    let rt = log.runtime().clone();
    drop(log);
    Arc::into_inner(rt)
        .expect("the log held the last runtime handle")
        .close()
        .unwrap_or_else(|e| panic!("{ctx}: close: {e}"));
    m.acked = committed;
    let log = open(&fs, policy).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    check(&log, &mut m, &format!("{ctx} gen 3"));
    assert_eq!(
        m.entries.len(),
        committed,
        "{ctx}: a clean close loses nothing"
    );
}

fn sweep(policy: CommitPolicy, seed: u64, prefill_pages: u64) {
    let seed = seed ^ env_u64("VELLUM_FLOG_CRASH_SEED", 0);
    let stride = env_u64("VELLUM_FLOG_CRASH_STRIDE", 1).max(1);
    let ops = env_u64("VELLUM_FLOG_CRASH_OPS", 40) as usize;
    let fs = storage(seed);
    let log = open(&fs, policy).unwrap();
    let mut m = Model::default();
    prefill(&log, prefill_pages, &mut m);
    if prefill_pages > 0 {
        assert_eq!(chunk_count(&log), 0, "62 pages make no chunk yet");
    }
    let before = fs.op_count();
    run(&log, &mut Rng::new(seed), policy, ops, &mut m);
    let total = fs.op_count() - before;
    if prefill_pages > 0 {
        assert_eq!(
            chunk_count(&log),
            1,
            "the workload crosses a chunk boundary"
        );
    }
    drop(log);
    assert!(total > 10, "the workload does storage operations ({total})");
    let mut k = 0;
    while k <= total + 2 {
        one_run(policy, seed, k, ops, prefill_pages);
        k += stride;
    }
}

/// Whole pages the chunk case starts with: two short of a chunk.
const CHUNK_PREFILL_PAGES: u64 = 62;

#[test]
fn crash_sweep_strict() {
    sweep(CommitPolicy::Strict, 11, 0);
}

#[test]
fn crash_sweep_balanced() {
    sweep(CommitPolicy::Balanced, 23, 0);
}

#[test]
fn crash_sweep_eventual() {
    sweep(CommitPolicy::Eventual, 37, 0);
}

#[test]
fn crash_sweep_across_a_chunk_boundary() {
    sweep(CommitPolicy::Balanced, 41, CHUNK_PREFILL_PAGES);
    if env_u64("VELLUM_FLOG_CRASH_CHUNK_ALL", 0) != 0 {
        sweep(CommitPolicy::Strict, 43, CHUNK_PREFILL_PAGES);
        sweep(CommitPolicy::Eventual, 47, CHUNK_PREFILL_PAGES);
    }
}
