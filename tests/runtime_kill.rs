//! Process kills: a real child process runs a commit-heavy workload on the real filesystem and is
//! killed with SIGKILL at a random moment; the parent then recovers the store and checks the same
//! properties as the crash sweep (`runtime_crash.rs`): recovery succeeds; the recovered epoch is at
//! least every acknowledged commit; the live set, every node's bytes and every root are exactly
//! the model's at the recovered epoch; `verify()` passes.
//!
//! A SIGKILL keeps the page cache, so this finds what a process crash can break (acknowledging too
//! early, multi-step protocols interrupted between their steps, recovery of a half-done commit,
//! checkpoint or rotation, a kill during recovery itself), not missing syncs; those are the crash
//! sweep's job.
//!
//! **Child.** The test binary re-executes itself (`child_workload --exact --ignored`) with
//! `VELLUM_KILL_CHILD_DIR`, `VELLUM_KILL_CHILD_SEED` and `VELLUM_KILL_CHILD_POLICY` set; without
//! them `child_workload` returns at once. The child opens `<dir>/store` and runs transactions
//! (allocations, updates, retirements, root changes; nodes from 1 byte to 300 KB, so BALANCED
//! uses both the payload and the data path) with the given policy until it is killed, with
//! occasional `sync()` and `checkpoint()` calls and background checkpoints every 1 MiB of log.
//!
//! **Generator.** The workload is a pure function of the seed: transaction `e` (the one that
//! commits epoch `e`) is generated from the model state after `e - 1` and a seeded RNG, and names
//! nodes by *handle* (the n-th allocation of the run is handle n), never by `NodeId`. So the parent
//! and a restarted child can regenerate the ops and the model state of every epoch without a
//! runtime. Only the handle -> `NodeId` map comes from the runtime, through the journal.
//!
//! **Journal** (`<dir>/acks`, opened with O_APPEND, one `write` per line, never synced: the parent
//! shares the child's page cache, and parses the file only after the child is dead):
//! - `open E`: the child opened the store and recovered epoch `E`; lines of epochs above `E`
//!   written by an earlier child are void from here on;
//! - `txn e ids`: written *before* commit `e` is called: the ids the transaction allocated, in
//!   order. A commit without its line was never called, so every epoch recovery can find has one;
//! - `ack e` (STRICT/BALANCED: commit `e` returned `Ok`), `sync e` (`sync()` returned `Ok(e)`),
//!   `ckpt e` (`checkpoint()` returned `Ok` after commit `e`): acknowledgements. The recovered
//!   epoch must be at least the largest of them ever written (EVENTUAL commits are acknowledged
//!   only by `sync` and `ckpt` lines).
//!
//! A line cut short by the kill is removed by the parent before anything else reads the file (a
//! cut `txn` line means its commit was never called).
//!
//! **Rounds.** A round is one policy, one seed and one directory, with three kills: the child runs,
//! and is killed 50-400 ms after it reports `open`; the parent recovers and checks, then closes;
//! a new child recovers the same directory, rebuilds the model and the id map from the seed and the
//! journal up to the epoch it recovered, reports it (it must be the epoch the parent checked) and
//! continues the workload, and is killed again 50-400 ms later; a third child is killed 0-40 ms
//! after its start (about a third of the time before it has opened the store: in process start-up
//! or in recovery; otherwise in its first commits). Each kill is followed by the full check.
//!
//! One round per policy by default (about 1 s each in a debug build, the three policies in
//! parallel); `VELLUM_KILL_ROUNDS=n` runs n rounds per policy with different seeds,
//! `VELLUM_KILL_SEED=s` sets the base seed, `VELLUM_KILL_KEEP=1` keeps the directories. A failure
//! names the policy, seed, kill number and kill delay (the seed fixes the workload and the delays,
//! not the exact moment the kill lands).

#![cfg(unix)]

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

mod common;

use common::{Rng, env_opt};

const ENV_DIR: &str = "VELLUM_KILL_CHILD_DIR";
const ENV_SEED: &str = "VELLUM_KILL_CHILD_SEED";
const ENV_POLICY: &str = "VELLUM_KILL_CHILD_POLICY";
const ROOTS: [&str; 3] = ["alpha", "beta", "gamma"];
/// The child stops by itself after this long, in case nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

fn options(policy: CommitPolicy) -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        policy,
        // Background checkpoints (and log rotations) during the run.
        checkpoint_log_bytes: 1 << 20,
        ..RuntimeOptions::default()
    };
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 64 << 20;
    o.data.alloc.file_bytes_max = 64 << 20;
    o.log.preallocate_bytes = 256 << 10;
    o
}

fn policy_name(p: CommitPolicy) -> &'static str {
    match p {
        CommitPolicy::Strict => "strict",
        CommitPolicy::Balanced => "balanced",
        CommitPolicy::Eventual => "eventual",
    }
}

fn policy_from_name(s: &str) -> CommitPolicy {
    match s {
        "strict" => CommitPolicy::Strict,
        "balanced" => CommitPolicy::Balanced,
        "eventual" => CommitPolicy::Eventual,
        other => panic!("unknown policy {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The deterministic workload.

/// A node's contents, kept compact in the model and expanded only when written or compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Val {
    len: usize,
    fill: u64,
}

impl Val {
    fn bytes(self) -> Vec<u8> {
        let mut x = self.fill | 1;
        let mut out = Vec::with_capacity(self.len);
        for i in 0..self.len {
            if i % 8 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            out.push((x >> (i % 8 * 8)) as u8);
        }
        out
    }
}

/// One operation of a transaction; nodes are named by handle (the n-th allocation is handle n).
#[derive(Clone, Debug)]
enum Op {
    Alloc { handle: u64, kind: u8, val: Val },
    Write { handle: u64, val: Val },
    Retire { handle: u64 },
    SetRoot { name: &'static str, handle: u64 },
    RemoveRoot { name: &'static str },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum After {
    Nothing,
    Sync,
    Checkpoint,
}

#[derive(Debug)]
struct Txn {
    epoch: u64,
    ops: Vec<Op>,
    after: After,
}

/// The model state: live nodes by handle, and roots.
#[derive(Default)]
struct Model {
    nodes: BTreeMap<u64, Val>,
    /// Live handles, in an order that depends only on the seed (for picking at random).
    live: Vec<u64>,
    roots: BTreeMap<&'static str, u64>,
}

/// Generates transaction after transaction, applying each to the model as it goes.
struct Generator {
    rng: Rng,
    model: Model,
    next_handle: u64,
    /// The epoch of the last generated transaction (the model is the state after it).
    epoch: u64,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            model: Model::default(),
            next_handle: 0,
            epoch: 0,
        }
    }

    fn val(&mut self) -> Val {
        // Mostly payload-sized nodes; 4096 is the BALANCED payload limit, 4097 just above; a few
        // large ones (the largest above the 256 KiB small-slot limit).
        let len = match self.rng.below(40) {
            0 => 100_000,
            1 => 300_000,
            r => [1usize, 60, 700, 3000, 4096, 4097, 5000, 20_000][r as usize % 8],
        };
        Val {
            len,
            fill: self.rng.next(),
        }
    }

    fn alloc(&mut self) -> Op {
        let handle = self.next_handle;
        self.next_handle += 1;
        let kind = self.rng.below(4) as u8;
        let val = self.val();
        self.model.nodes.insert(handle, val);
        self.model.live.push(handle);
        Op::Alloc { handle, kind, val }
    }

    fn next_txn(&mut self) -> Txn {
        self.epoch += 1;
        let mut ops = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let live = self.model.live.len();
            let at = self.rng.below(live as u64) as usize;
            let mut roll = self.rng.below(10);
            // Keep the live set between about 20 and 250 nodes.
            if live >= 250 && roll < 3 {
                roll = 6;
            }
            if live < 20 && (6..8).contains(&roll) {
                roll = 0;
            }
            if live == 0 {
                roll = 0;
            }
            let op = match roll {
                0..=2 => self.alloc(),
                3..=5 => {
                    let handle = self.model.live[at];
                    let val = self.val();
                    self.model.nodes.insert(handle, val);
                    Op::Write { handle, val }
                }
                6 | 7 => {
                    let handle = self.model.live.swap_remove(at);
                    self.model.nodes.remove(&handle);
                    Op::Retire { handle }
                }
                8 => {
                    let name = ROOTS[self.rng.below(3) as usize];
                    let handle = self.model.live[at];
                    self.model.roots.insert(name, handle);
                    Op::SetRoot { name, handle }
                }
                _ => {
                    let name = ROOTS[self.rng.below(3) as usize];
                    self.model.roots.remove(name);
                    Op::RemoveRoot { name }
                }
            };
            ops.push(op);
        }
        // Nodes created and retired in one transaction never existed: make sure the transaction
        // still changes something, since an empty one cannot commit.
        let born = |h: &u64| {
            ops.iter()
                .any(|op| matches!(op, Op::Alloc { handle, .. } if handle == h))
        };
        let effective = ops.iter().any(|op| match op {
            Op::Alloc { handle, .. } => self.model.nodes.contains_key(handle),
            Op::Write { handle, .. } | Op::Retire { handle } => !born(handle),
            Op::SetRoot { .. } | Op::RemoveRoot { .. } => true,
        });
        if !effective {
            let op = self.alloc();
            ops.push(op);
        }
        let after = match self.rng.below(200) {
            0..=7 => After::Sync,
            8 => After::Checkpoint,
            _ => After::Nothing,
        };
        Txn {
            epoch: self.epoch,
            ops,
            after,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The journal.

#[derive(Default, Debug)]
struct Journal {
    /// Ids each transaction allocated, by epoch (the `txn` lines still in force).
    txns: BTreeMap<u64, Vec<NodeId>>,
    /// The largest acknowledged epoch and the line that acknowledged it.
    floor: u64,
    floor_line: String,
    /// Every `open` line, in order.
    opens: Vec<u64>,
    /// Commits acknowledged (lines), for the summary.
    acks: u64,
}

fn parse_epoch(s: Option<&str>, line: &str) -> u64 {
    s.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad journal line {line:?}"))
}

impl Journal {
    fn parse(text: &str) -> Journal {
        let mut j = Journal::default();
        // The epoch the next `txn` line must have.
        let mut next = 1;
        for line in text.lines() {
            let mut parts = line.split(' ');
            let tag = parts.next().unwrap_or_default();
            let e = parse_epoch(parts.next(), line);
            match tag {
                "open" => {
                    j.txns.retain(|&k, _| k <= e);
                    j.opens.push(e);
                    next = e + 1;
                }
                "txn" => {
                    assert_eq!(e, next, "journal: txn lines out of order at {line:?}");
                    next += 1;
                    let ids = match parts.next() {
                        Some("-") => Vec::new(),
                        Some(list) => list
                            .split(',')
                            .map(|raw| {
                                raw.parse()
                                    .ok()
                                    .and_then(NodeId::from_raw)
                                    .unwrap_or_else(|| panic!("bad id in {line:?}"))
                            })
                            .collect(),
                        None => panic!("bad journal line {line:?}"),
                    };
                    j.txns.insert(e, ids);
                }
                "ack" | "sync" | "ckpt" => {
                    j.acks += 1;
                    if e >= j.floor {
                        j.floor = e;
                        j.floor_line = line.to_owned();
                    }
                }
                _ => panic!("bad journal line {line:?}"),
            }
        }
        j
    }

    fn read(path: &Path) -> Journal {
        match fs::read_to_string(path) {
            Ok(text) => Journal::parse(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Journal::default(),
            Err(e) => panic!("read {}: {e}", path.display()),
        }
    }
}

/// Removes a last line the kill cut short; returns whether there was one.
fn drop_partial_line(path: &Path) -> bool {
    let Ok(text) = fs::read(path) else {
        return false;
    };
    if text.is_empty() || text.ends_with(b"\n") {
        return false;
    }
    let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.set_len(keep as u64).unwrap();
    true
}

/// Regenerates the workload up to `epoch`, mapping handles to the ids the journal recorded.
fn replay_to(
    seed: u64,
    epoch: u64,
    journal: &Journal,
) -> Result<(Generator, HashMap<u64, NodeId>), String> {
    let mut g = Generator::new(seed);
    let mut ids = HashMap::new();
    while g.epoch < epoch {
        let t = g.next_txn();
        let Some(allocated) = journal.txns.get(&t.epoch) else {
            return Err(format!(
                "epoch {epoch} recovered, but commit {} was never called (no txn line)",
                t.epoch
            ));
        };
        let handles: Vec<u64> = t
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Alloc { handle, .. } => Some(*handle),
                _ => None,
            })
            .collect();
        if handles.len() != allocated.len() {
            return Err(format!(
                "txn {}: {} allocations generated, {} ids journaled",
                t.epoch,
                handles.len(),
                allocated.len()
            ));
        }
        ids.extend(handles.into_iter().zip(allocated.iter().copied()));
    }
    Ok((g, ids))
}

// ---------------------------------------------------------------------------------------------
// The child.

fn journal_line(file: &mut File, line: &str) {
    // One write call: a kill leaves the line whole, absent or (rarely) cut, never interleaved.
    file.write_all(line.as_bytes()).unwrap();
}

fn run_child(dir: &Path, seed: u64, policy: CommitPolicy) {
    let journal_path = dir.join("acks");
    let rt = DurableRuntime::open(dir.join("store"), options(policy)).unwrap();
    let start = rt.visible_epoch();
    let journal = Journal::read(&journal_path);
    let (mut generator, mut ids) =
        replay_to(seed, start, &journal).unwrap_or_else(|e| panic!("child: {e}"));
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&journal_path)
        .unwrap();
    journal_line(&mut file, &format!("open {start}\n"));
    let parent = std::os::unix::process::parent_id();
    let started = Instant::now();
    while std::os::unix::process::parent_id() == parent && started.elapsed() < CHILD_LIFETIME {
        let t = generator.next_txn();
        let mut tx = rt.begin();
        let mut allocated = Vec::new();
        for op in &t.ops {
            match op {
                Op::Alloc { handle, kind, val } => {
                    let id = tx.alloc(*kind, &val.bytes()).unwrap();
                    ids.insert(*handle, id);
                    allocated.push(id.raw().to_string());
                }
                Op::Write { handle, val } => tx.write(ids[handle], &val.bytes()).unwrap(),
                Op::Retire { handle } => tx.retire(ids[handle]).unwrap(),
                Op::SetRoot { name, handle } => tx.set_root(name, ids[handle]).unwrap(),
                Op::RemoveRoot { name } => tx.remove_root(name).unwrap(),
            }
        }
        let list = if allocated.is_empty() {
            "-".to_owned()
        } else {
            allocated.join(",")
        };
        journal_line(&mut file, &format!("txn {} {list}\n", t.epoch));
        let epoch = tx.commit_with(policy).unwrap();
        assert_eq!(epoch, t.epoch, "child: commit epochs are consecutive");
        if policy != CommitPolicy::Eventual {
            journal_line(&mut file, &format!("ack {epoch}\n"));
        }
        match t.after {
            After::Nothing => {}
            After::Sync => {
                let durable = rt.sync().unwrap();
                assert!(durable >= epoch, "child: sync returned {durable} < {epoch}");
                journal_line(&mut file, &format!("sync {durable}\n"));
            }
            After::Checkpoint => {
                rt.checkpoint().unwrap();
                journal_line(&mut file, &format!("ckpt {epoch}\n"));
            }
        }
    }
}

/// The child process (see the module docs); does nothing unless the parent set its variables.
#[test]
#[ignore = "the child process of the kill tests; runs only when started by them"]
fn child_workload() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let seed = env_opt(ENV_SEED).expect("child seed");
    let policy = policy_from_name(&std::env::var(ENV_POLICY).expect("child policy"));
    run_child(Path::new(&dir), seed, policy);
}

// ---------------------------------------------------------------------------------------------
// The parent.

fn spawn_child(dir: &Path, seed: u64, policy: CommitPolicy, log: &Path) -> Child {
    let out = File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_workload",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_POLICY, policy_name(policy))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

fn child_output(log: &Path) -> String {
    fs::read_to_string(log).unwrap_or_else(|e| format!("(no output: {e})"))
}

/// Waits until the journal grew past `from` with an `open` line (the child finished recovery).
fn wait_for_open(child: &mut Child, journal: &Path, from: u64, log: &Path, ctx: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut f) = File::open(journal) {
            let mut fresh = Vec::new();
            f.seek(SeekFrom::Start(from)).unwrap();
            f.read_to_end(&mut fresh).unwrap();
            if fresh.windows(5).any(|w| w == b"open ") {
                return;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{ctx}: the child exited ({status}) before opening the store:\n{}",
                child_output(log)
            );
        }
        assert!(
            Instant::now() < deadline,
            "{ctx}: the child did not open the store within 60 s"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn kill(child: &mut Child, log: &Path, ctx: &str) {
    if let Some(status) = child.try_wait().unwrap() {
        panic!(
            "{ctx}: the child exited ({status}) before the kill:\n{}",
            child_output(log)
        );
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(9),
        "{ctx}: the child ended with {status}, not by the kill:\n{}",
        child_output(log)
    );
}

/// Recovers the store and checks it against the model at the recovered epoch; returns the epoch
/// and the number of live nodes.
fn check_recovered(
    store: &Path,
    policy: CommitPolicy,
    seed: u64,
    journal: &Journal,
    ctx: &str,
) -> (u64, usize) {
    let rt = DurableRuntime::open(store, options(policy))
        .unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
    let epoch = rt.visible_epoch();
    assert!(
        epoch >= journal.floor,
        "{ctx}: recovered epoch {epoch} lost acknowledged commits: the journal acknowledged \
         epoch {} ({:?})",
        journal.floor,
        journal.floor_line
    );
    assert_eq!(
        rt.durable_epoch(),
        epoch,
        "{ctx}: durable epoch after recovery"
    );
    assert_eq!(rt.snapshot().epoch(), epoch, "{ctx}: snapshot epoch");
    let (generator, ids) = replay_to(seed, epoch, journal).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    let model = &generator.model;
    let expected: BTreeMap<NodeId, Val> = model.nodes.iter().map(|(h, v)| (ids[h], *v)).collect();
    assert_eq!(
        expected.len(),
        model.nodes.len(),
        "{ctx}: two live handles share an id"
    );
    let want: Vec<NodeId> = expected.keys().copied().collect();
    let got = rt.node_ids();
    if got != want {
        let extra: Vec<_> = got.iter().filter(|id| !expected.contains_key(id)).collect();
        let missing: Vec<_> = want.iter().filter(|id| !got.contains(id)).collect();
        panic!(
            "{ctx}: live set at epoch {epoch}: {} live, the model has {}; live but not in the \
             model: {extra:?}; in the model but not live: {missing:?}",
            got.len(),
            want.len()
        );
    }
    for (id, val) in &expected {
        let got = rt
            .read(*id)
            .unwrap_or_else(|e| panic!("{ctx}: epoch {epoch}: read {id}: {e}"));
        assert!(
            got == val.bytes(),
            "{ctx}: epoch {epoch}: node {id} holds {} bytes that differ from the model's {} bytes",
            got.len(),
            val.len
        );
    }
    for name in ROOTS {
        assert_eq!(
            rt.root(name),
            model.roots.get(name).map(|h| ids[h]),
            "{ctx}: epoch {epoch}: root {name}"
        );
    }
    let (nodes, _) = rt
        .verify()
        .unwrap_or_else(|e| panic!("{ctx}: epoch {epoch}: verify: {e}"));
    assert_eq!(nodes, want.len() as u64, "{ctx}: verify counted");
    rt.close()
        .unwrap_or_else(|e| panic!("{ctx}: close after the check: {e}"));
    (epoch, want.len())
}

/// One round: one directory, three kills, a full check after each.
fn round(policy: CommitPolicy, seed: u64) {
    let tmp = tempfile::Builder::new()
        .prefix("vellum-kill-")
        .tempdir()
        .unwrap();
    let dir = if std::env::var_os("VELLUM_KILL_KEEP").is_some() {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };
    let store = dir.join("store");
    let journal_path = dir.join("acks");
    let mut rng = Rng::new(seed ^ 0x6b69_6c6c);
    // The epoch each child must report in its `open` line: what the parent last checked.
    let mut checked = 0;
    let mut summary = Vec::new();
    for kill_no in 1..=3 {
        let early = kill_no == 3;
        let delay = if early {
            rng.below(41)
        } else {
            50 + rng.below(351)
        };
        let ctx = format!(
            "policy {policy:?} seed {seed:#x} kill {kill_no} after {delay} ms{} (dir {})",
            if early { " from the start" } else { "" },
            dir.display()
        );
        let log: PathBuf = dir.join(format!("child-{kill_no}.log"));
        let from = fs::metadata(&journal_path).map_or(0, |m| m.len());
        let mut child = spawn_child(&dir, seed, policy, &log);
        if !early {
            wait_for_open(&mut child, &journal_path, from, &log, &ctx);
        }
        std::thread::sleep(Duration::from_millis(delay));
        kill(&mut child, &log, &ctx);

        let cut = drop_partial_line(&journal_path);
        let journal = Journal::read(&journal_path);
        let opened = journal.opens.get(kill_no - 1).copied();
        match opened {
            Some(opened) => assert_eq!(
                opened, checked,
                "{ctx}: the child recovered epoch {opened}, the parent had checked {checked}"
            ),
            None => assert!(early, "{ctx}: the child wrote no open line"),
        }
        assert!(
            journal.opens.len() <= kill_no,
            "{ctx}: more open lines than children"
        );
        let called = journal.txns.keys().next_back().copied().unwrap_or(0);
        let (epoch, live) = check_recovered(&store, policy, seed, &journal, &ctx);
        summary.push(format!(
            "kill {kill_no} after {delay} ms: txn lines up to {called}, acknowledged up to {}, \
             recovered {epoch} ({live} live nodes){}",
            journal.floor,
            match (opened, cut) {
                (None, _) => ", killed before it had opened the store",
                (Some(_), true) => ", a journal line was cut",
                (Some(_), false) => "",
            }
        ));
        checked = epoch;
    }
    eprintln!(
        "runtime_kill {policy:?} seed {seed:#x}:\n  {}",
        summary.join("\n  ")
    );
    assert!(
        checked > 0,
        "policy {policy:?} seed {seed:#x}: no commit was recovered in three runs; the test \
         checked nothing ({summary:?})"
    );
}

fn kill_rounds(policy: CommitPolicy, base: u64) {
    let base = env_opt("VELLUM_KILL_SEED").unwrap_or(base);
    let rounds = env_opt("VELLUM_KILL_ROUNDS").unwrap_or(1).max(1);
    for r in 0..rounds {
        round(policy, base ^ r.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}

#[test]
fn kill_during_strict_commits() {
    kill_rounds(CommitPolicy::Strict, 0x0051_71c7);
}

#[test]
fn kill_during_balanced_commits() {
    kill_rounds(CommitPolicy::Balanced, 0xba1a_2ced);
}

#[test]
fn kill_during_eventual_commits() {
    kill_rounds(CommitPolicy::Eventual, 0xe7e2_7a11);
}
