//! Process kills with the runtime running as in production: a child process opens a store on the
//! real filesystem with the default options (background flush every 10 ms, 64 MiB windows, 16 MiB
//! log preallocation) plus frequent background checkpoints (every 1 MiB of log or 30 ms) and
//! background compaction (every 20 ms), takes one step, and is killed with SIGKILL; the parent
//! then checks the store. `runtime_kill.rs` kills children that only commit; here the steps are
//! also the ones taken right after a recovery:
//! - `txns`: transactions of every commit policy (nodes from 1 byte to 300 KB, so BALANCED uses
//!   both the payload and the data path; updates and retirements, so compaction has victims),
//!   with occasional `sync()` and `checkpoint()` calls and pauses, until killed 300-1500 ms after
//!   its open;
//! - `checkpoint`: `checkpoint()` right after the recovery, killed 0-100 ms after its open (during
//!   the checkpoint, or after it while the background thread works on);
//! - `compact`: `compact_with(&CompactionOptions::full(), ..)` right after the recovery, killed
//!   0-100 ms after its open;
//! - `idle`: nothing, killed 20-200 ms after its open, so the background thread checkpoints and
//!   compacts an idle store first.
//!
//! A round is one directory and a sequence of kills: `txns` first, then the four steps in a seeded
//! order, then one more at random; one child of the round, chosen by the seed, is killed 0-40 ms
//! after it starts instead (in start-up or recovery, or early in its step).
//!
//! A SIGKILL keeps the page cache, so this finds what a process crash can break (acknowledging too
//! early, a protocol interrupted between its steps, a recovery that a later step undoes), not a
//! missing sync: that is `runtime_crash_production.rs`'s job.
//!
//! **Workload.** Transaction `n` of a round is a pure function of the seed and the model after
//! transaction `n - 1` (nodes named by handle: the n-th allocation is handle n). Compaction's
//! moves are commits too, so commit epochs and transaction numbers differ: the journal maps them.
//!
//! **Journal** (`<dir>/acks`, O_APPEND, one `write` per line, never synced; read only after the
//! child is dead):
//! - `open N E`: the child recovered epoch `E`, holding transactions 1..=N (the parent checked
//!   both and passed them on); lines of transactions above `N` are void from here on;
//! - `txn n ids`: written before transaction `n` commits: the ids it allocated;
//! - `commit n e P`: transaction `n` returned `Ok(e)` under policy `P`; under `strict` and
//!   `balanced` this acknowledges epoch `e`;
//! - `sync e` (`sync()` returned `Ok(e)`), `ckpt e` (`checkpoint()` returned `Ok` after the
//!   child's commits up to epoch `e` returned): acknowledgements;
//! - `done S`: step `S` (checkpoint or compaction) returned `Ok`, for the summary.
//!
//! **Checks after each kill.** `fsck` finds no problem and predicts the epoch and the live set
//! recovery reaches. The parent recovers the store with the same layout and no background work
//! (so its check adds no epoch), and the recovered epoch is at least every acknowledged one; the
//! transactions it holds are those whose commit returned an epoch at or below it, plus perhaps the
//! one in flight at the kill (which the state decides); the live set, every node's bytes and every
//! root are exactly the model's after them; `verify()` passes; the parent closes the store.
//!
//! One round by default (a few seconds in a debug build); `VELLUM_KILLP_ROUNDS=n` runs n rounds
//! with different seeds, `VELLUM_KILLP_SEED=s` sets the base seed, `VELLUM_KILLP_KEEP=1` keeps the
//! directories. A failure names the seed, the kill, its step and delay (the seed fixes the workload,
//! the steps and the delays, not the exact moment a kill lands).

#![cfg(unix)]

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vellum::inspect::{FsckOptions, Severity, load};
use vellum::io::OsStorage;
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime, RuntimeOptions};

mod common;

use common::{Rng, env_opt};

const ENV_DIR: &str = "VELLUM_KILLP_CHILD_DIR";
const ENV_SEED: &str = "VELLUM_KILLP_CHILD_SEED";
const ENV_STEP: &str = "VELLUM_KILLP_CHILD_STEP";
const ENV_TXNS: &str = "VELLUM_KILLP_CHILD_TXNS";
const ENV_EPOCH: &str = "VELLUM_KILLP_CHILD_EPOCH";
const ROOTS: [&str; 3] = ["alpha", "beta", "gamma"];
/// The child stops by itself after this long, in case nobody kills it.
const CHILD_LIFETIME: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------------------------
// Options: every store of this file is opened through these.

/// The child's options: the runtime's defaults, with checkpoints every 1 MiB of log (the minimum)
/// or 30 ms, and a compaction pass every 20 ms.
fn production_options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        checkpoint_log_bytes: 1 << 20,
        checkpoint_interval: Some(Duration::from_millis(30)),
        ..RuntimeOptions::default()
    };
    o.compaction.interval = Some(Duration::from_millis(20));
    o
}

/// The parent's options for checking: the same layout, no background checkpoint or compaction,
/// so the parent's recovery and close add no epoch and write no checkpoint.
fn checker_options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        checkpoint_log_bytes: 1 << 40,
        checkpoint_interval: None,
        ..production_options()
    };
    o.compaction.interval = None;
    o
}

fn open(store: &Path, options: RuntimeOptions) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open(store, options)
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
        let mut out = Vec::with_capacity(self.len + 8);
        while out.len() < self.len {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.extend_from_slice(&x.to_le_bytes());
        }
        out.truncate(self.len);
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
    /// A pause of this many milliseconds, for the background thread.
    Pause(u64),
}

#[derive(Debug)]
struct Txn {
    n: u64,
    ops: Vec<Op>,
    policy: CommitPolicy,
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
    /// The number of the last generated transaction (the model is the state after it).
    n: u64,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            rng: Rng::new(seed),
            model: Model::default(),
            next_handle: 0,
            n: 0,
        }
    }

    fn val(&mut self) -> Val {
        // Mostly payload-sized nodes (4096 is the BALANCED payload limit); larger ones in classes
        // with 4 to 32 slots per 1 MiB segment, so retirements leave sparse segments; a few above
        // the 256 KiB small-slot limit.
        let len = match self.rng.below(40) {
            0 | 1 => 300_000,
            2..=7 => 100_000,
            8..=13 => 20_000,
            r => [1usize, 60, 700, 3000, 4096, 4097, 5000][r as usize % 7],
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
        self.n += 1;
        let mut ops = Vec::new();
        for _ in 0..1 + self.rng.below(4) {
            let live = self.model.live.len();
            let at = self.rng.below(live as u64) as usize;
            let mut roll = self.rng.below(10);
            // Keep the live set between about 20 and 150 nodes.
            if live >= 150 && roll < 3 {
                roll = 6;
            }
            if (live < 20 && (6..8).contains(&roll)) || live == 0 {
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
        let policy = match self.rng.below(4) {
            0 => CommitPolicy::Strict,
            1 | 2 => CommitPolicy::Balanced,
            _ => CommitPolicy::Eventual,
        };
        let after = match self.rng.below(100) {
            0..=3 => After::Sync,
            4 => After::Checkpoint,
            5..=9 => After::Pause(self.rng.below(40)),
            _ => After::Nothing,
        };
        Txn {
            n: self.n,
            ops,
            policy,
            after,
        }
    }
}

fn policy_name(p: CommitPolicy) -> &'static str {
    match p {
        CommitPolicy::Strict => "strict",
        CommitPolicy::Balanced => "balanced",
        CommitPolicy::Eventual => "eventual",
    }
}

// ---------------------------------------------------------------------------------------------
// The journal.

#[derive(Default, Debug)]
struct Journal {
    /// Ids each transaction allocated, by number (the `txn` lines still in force).
    txns: BTreeMap<u64, Vec<NodeId>>,
    /// The epoch each transaction's commit returned, by number (lines still in force).
    epochs: BTreeMap<u64, u64>,
    /// The largest acknowledged epoch and the line that acknowledged it.
    floor: u64,
    floor_line: String,
    /// Every `open` line, as (transactions, epoch).
    opens: Vec<(u64, u64)>,
    /// Steps that returned `Ok` after the last `open` line, for the summary.
    done: Vec<String>,
}

fn field(s: Option<&str>, line: &str) -> u64 {
    s.and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("bad journal line {line:?}"))
}

impl Journal {
    fn ack(&mut self, e: u64, line: &str) {
        if e >= self.floor {
            self.floor = e;
            self.floor_line = line.to_owned();
        }
    }

    fn parse(text: &str) -> Journal {
        let mut j = Journal::default();
        // The number the next `txn` line must have.
        let mut next = 1;
        for line in text.lines() {
            let mut parts = line.split(' ');
            match parts.next().unwrap_or_default() {
                "open" => {
                    let (n, e) = (field(parts.next(), line), field(parts.next(), line));
                    j.txns.retain(|&k, _| k <= n);
                    j.epochs.retain(|&k, _| k <= n);
                    j.opens.push((n, e));
                    j.done.clear();
                    next = n + 1;
                }
                "txn" => {
                    let n = field(parts.next(), line);
                    assert_eq!(n, next, "journal: txn lines out of order at {line:?}");
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
                    j.txns.insert(n, ids);
                }
                "commit" => {
                    let (n, e) = (field(parts.next(), line), field(parts.next(), line));
                    assert_eq!(
                        n + 1,
                        next,
                        "journal: commit of an uncalled txn at {line:?}"
                    );
                    j.epochs.insert(n, e);
                    if parts.next() != Some("eventual") {
                        j.ack(e, line);
                    }
                }
                "sync" | "ckpt" => {
                    let e = field(parts.next(), line);
                    j.ack(e, line);
                }
                "done" => j.done.push(parts.next().unwrap_or_default().to_owned()),
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

/// Regenerates the workload up to transaction `n`, mapping handles to the ids the journal
/// recorded.
fn replay_to(
    seed: u64,
    n: u64,
    journal: &Journal,
) -> Result<(Generator, HashMap<u64, NodeId>), String> {
    let mut g = Generator::new(seed);
    let mut ids = HashMap::new();
    while g.n < n {
        let t = g.next_txn();
        let Some(allocated) = journal.txns.get(&t.n) else {
            return Err(format!("transaction {} has no txn line", t.n));
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
                t.n,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Txns,
    Checkpoint,
    Compact,
    Idle,
}

impl Step {
    fn name(self) -> &'static str {
        match self {
            Step::Txns => "txns",
            Step::Checkpoint => "checkpoint",
            Step::Compact => "compact",
            Step::Idle => "idle",
        }
    }

    fn from_name(s: &str) -> Step {
        [Step::Txns, Step::Checkpoint, Step::Compact, Step::Idle]
            .into_iter()
            .find(|step| step.name() == s)
            .unwrap_or_else(|| panic!("unknown step {s:?}"))
    }

    /// How long after the child's open line the parent kills it (ms).
    fn kill_delay_ms(self, rng: &mut Rng) -> u64 {
        match self {
            Step::Txns => 300 + rng.below(1201),
            Step::Checkpoint | Step::Compact => rng.below(101),
            Step::Idle => 20 + rng.below(181),
        }
    }
}

fn journal_line(file: &mut File, line: &str) {
    // One write call: a kill leaves the line whole, absent or (rarely) cut, never interleaved.
    file.write_all(line.as_bytes()).unwrap();
}

/// Runs transactions until the parent is gone or the lifetime is over.
fn child_txns(
    rt: &DurableRuntime,
    file: &mut File,
    g: &mut Generator,
    ids: &mut HashMap<u64, NodeId>,
) {
    let parent = std::os::unix::process::parent_id();
    let started = Instant::now();
    let mut returned = rt.visible_epoch();
    while std::os::unix::process::parent_id() == parent && started.elapsed() < CHILD_LIFETIME {
        let t = g.next_txn();
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
        journal_line(file, &format!("txn {} {list}\n", t.n));
        let epoch = tx.commit_with(t.policy).unwrap();
        assert!(epoch > returned, "child: commit epochs increase");
        returned = epoch;
        journal_line(
            file,
            &format!("commit {} {epoch} {}\n", t.n, policy_name(t.policy)),
        );
        match t.after {
            After::Nothing => {}
            After::Pause(ms) => std::thread::sleep(Duration::from_millis(ms)),
            After::Sync => {
                let durable = rt.sync().unwrap();
                assert!(durable >= epoch, "child: sync returned {durable} < {epoch}");
                journal_line(file, &format!("sync {durable}\n"));
            }
            After::Checkpoint => {
                rt.checkpoint().unwrap();
                journal_line(file, &format!("ckpt {epoch}\n"));
            }
        }
    }
}

fn run_child(dir: &Path, seed: u64, step: Step, txns: u64, epoch: u64) {
    let journal_path = dir.join("acks");
    let rt = open(&dir.join("store"), production_options()).unwrap();
    let start = rt.visible_epoch();
    assert_eq!(
        start, epoch,
        "child: recovered epoch, the parent checked {epoch}"
    );
    let journal = Journal::read(&journal_path);
    let (mut generator, mut ids) =
        replay_to(seed, txns, &journal).unwrap_or_else(|e| panic!("child: {e}"));
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&journal_path)
        .unwrap();
    journal_line(&mut file, &format!("open {txns} {start}\n"));
    match step {
        Step::Txns => child_txns(&rt, &mut file, &mut generator, &mut ids),
        Step::Checkpoint => {
            rt.checkpoint().unwrap();
            journal_line(&mut file, &format!("ckpt {start}\ndone checkpoint\n"));
        }
        Step::Compact => {
            rt.compact_with(&CompactionOptions::full(), &mut |_| {})
                .unwrap();
            journal_line(&mut file, "done compact\n");
        }
        Step::Idle => {}
    }
    // The background thread goes on until the kill (or until the parent is gone).
    let parent = std::os::unix::process::parent_id();
    let started = Instant::now();
    while std::os::unix::process::parent_id() == parent && started.elapsed() < CHILD_LIFETIME {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The child process (see the module docs); does nothing unless the parent set its variables.
#[test]
#[ignore = "the child process of the production kill tests; runs only when started by them"]
fn child_step() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let seed = env_opt(ENV_SEED).expect("child seed");
    let step = Step::from_name(&std::env::var(ENV_STEP).expect("child step"));
    let txns = env_opt(ENV_TXNS).expect("child txns");
    let epoch = env_opt(ENV_EPOCH).expect("child epoch");
    run_child(Path::new(&dir), seed, step, txns, epoch);
}

// ---------------------------------------------------------------------------------------------
// The parent.

fn spawn_child(dir: &Path, seed: u64, step: Step, checked: (u64, u64), log: &Path) -> Child {
    let out = File::create(log).unwrap();
    let err = out.try_clone().unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args([
            "child_step",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(ENV_DIR, dir)
        .env(ENV_SEED, seed.to_string())
        .env(ENV_STEP, step.name())
        .env(ENV_TXNS, checked.0.to_string())
        .env(ENV_EPOCH, checked.1.to_string())
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

/// `fsck` of the killed store: no problem; returns the epoch and live set it predicts.
fn fsck_store(store: &Path, ctx: &str) -> (Option<u64>, Vec<NodeId>) {
    let os = OsStorage::new();
    let (_access, _lock) =
        vellum::inspect::lock(&os, store).unwrap_or_else(|e| panic!("{ctx}: fsck lock: {e}"));
    let insp =
        load(&os, store, &FsckOptions::default()).unwrap_or_else(|e| panic!("{ctx}: fsck: {e}"));
    let problems: Vec<_> = insp
        .findings()
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .collect();
    assert!(problems.is_empty(), "{ctx}: fsck: {problems:#?}");
    let mut live: Vec<NodeId> = insp.model.live.values().map(|l| l.id).collect();
    live.sort_unstable();
    (insp.replayed.then_some(insp.model.last_epoch), live)
}

/// How the recovered store differs from the model after `n` transactions (`None`: it does not).
fn differs(
    rt: &DurableRuntime,
    seed: u64,
    n: u64,
    journal: &Journal,
) -> Result<Option<String>, String> {
    let (generator, ids) = replay_to(seed, n, journal)?;
    let model = &generator.model;
    let expected: BTreeMap<NodeId, Val> = model.nodes.iter().map(|(h, v)| (ids[h], *v)).collect();
    if expected.len() != model.nodes.len() {
        return Err(format!("after txn {n}: two live handles share an id"));
    }
    let want: Vec<NodeId> = expected.keys().copied().collect();
    let got = rt.node_ids();
    if got != want {
        let extra: Vec<_> = got.iter().filter(|id| !expected.contains_key(id)).collect();
        let missing: Vec<_> = want.iter().filter(|id| !got.contains(id)).collect();
        return Ok(Some(format!(
            "after txn {n}: {} live, the model has {}; live but not in the model: {extra:?}; in \
             the model but not live: {missing:?}",
            got.len(),
            want.len()
        )));
    }
    for (id, val) in &expected {
        let bytes = rt
            .read(*id)
            .map_err(|e| format!("after txn {n}: read {id}: {e}"))?;
        if bytes != val.bytes() {
            return Ok(Some(format!(
                "after txn {n}: node {id} holds {} bytes that differ from the model's {}",
                bytes.len(),
                val.len
            )));
        }
    }
    for name in ROOTS {
        let want = model.roots.get(name).map(|h| ids[h]);
        if rt.root(name) != want {
            return Ok(Some(format!(
                "after txn {n}: root {name} is {:?}, the model's {want:?}",
                rt.root(name)
            )));
        }
    }
    Ok(None)
}

/// Recovers the store and checks it; returns the transactions and the epoch it holds.
fn check_recovered(store: &Path, seed: u64, journal: &Journal, held: u64, ctx: &str) -> (u64, u64) {
    let (predicted, live) = fsck_store(store, ctx);
    let rt =
        open(store, checker_options()).unwrap_or_else(|e| panic!("{ctx}: recovery failed: {e}"));
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
    assert_eq!(
        predicted,
        Some(epoch),
        "{ctx}: fsck predicts the recovered epoch"
    );
    assert_eq!(live, rt.node_ids(), "{ctx}: fsck predicts the live set");
    // Transactions up to `held` were in the store the child opened; of the later ones, those
    // whose commit returned an epoch at or below the recovered one are in, the later ones out, and
    // the one in flight at the kill (a txn line without a commit line) either.
    let mut n = held;
    while let Some(&e) = journal.epochs.get(&(n + 1)) {
        if e > epoch {
            break;
        }
        n += 1;
    }
    assert!(
        journal.epochs.range(n + 1..).all(|(_, &e)| e > epoch),
        "{ctx}: commit epochs do not increase with transaction numbers: {:?}",
        journal.epochs
    );
    let in_flight = journal.txns.contains_key(&(n + 1)) && !journal.epochs.contains_key(&(n + 1));
    let candidates: Vec<u64> = if in_flight { vec![n + 1, n] } else { vec![n] };
    let mut diffs = Vec::new();
    let mut held_now = None;
    for c in candidates {
        match differs(&rt, seed, c, journal) {
            Ok(None) => {
                held_now = Some(c);
                break;
            }
            Ok(Some(d)) => diffs.push(d),
            Err(e) => panic!("{ctx}: epoch {epoch}: {e}"),
        }
    }
    let Some(held_now) = held_now else {
        panic!("{ctx}: the store at epoch {epoch} is not the model's: {diffs:?}");
    };
    let (nodes, _) = rt
        .verify()
        .unwrap_or_else(|e| panic!("{ctx}: epoch {epoch}: verify: {e}"));
    assert_eq!(nodes, live.len() as u64, "{ctx}: verify counted");
    rt.close()
        .unwrap_or_else(|e| panic!("{ctx}: close after the check: {e}"));
    (held_now, epoch)
}

/// One round: one directory, a kill per step, a full check after each.
fn round(seed: u64) {
    let tmp = tempfile::Builder::new()
        .prefix("vellum-killp-")
        .tempdir()
        .unwrap();
    let dir = if std::env::var_os("VELLUM_KILLP_KEEP").is_some() {
        tmp.keep()
    } else {
        tmp.path().to_path_buf()
    };
    let store = dir.join("store");
    let journal_path = dir.join("acks");
    let mut rng = Rng::new(seed ^ 0x6b69_6c6c);
    let mut order = [Step::Checkpoint, Step::Compact, Step::Idle, Step::Txns];
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let extra = [Step::Checkpoint, Step::Compact, Step::Idle, Step::Txns][rng.below(4) as usize];
    let steps: Vec<Step> = std::iter::once(Step::Txns)
        .chain(order)
        .chain([extra])
        .collect();
    let early_kill = 1 + rng.below(steps.len() as u64 - 1) as usize;
    // What the parent last checked: transactions held and the epoch.
    let mut checked = (0u64, 0u64);
    let mut summary = Vec::new();
    for (i, &step) in steps.iter().enumerate() {
        let early = i == early_kill;
        let delay = if early {
            rng.below(41)
        } else {
            step.kill_delay_ms(&mut rng)
        };
        let ctx = format!(
            "seed {seed:#x} kill {} ({}) after {delay} ms{} (dir {})",
            i + 1,
            step.name(),
            if early { " from the start" } else { "" },
            dir.display()
        );
        let log: PathBuf = dir.join(format!("child-{}.log", i + 1));
        let from = fs::metadata(&journal_path).map_or(0, |m| m.len());
        let opens_before = Journal::read(&journal_path).opens.len();
        let mut child = spawn_child(&dir, seed, step, checked, &log);
        if !early {
            wait_for_open(&mut child, &journal_path, from, &log, &ctx);
        }
        std::thread::sleep(Duration::from_millis(delay));
        kill(&mut child, &log, &ctx);

        let cut = drop_partial_line(&journal_path);
        let journal = Journal::read(&journal_path);
        let opened = journal.opens.get(opens_before).copied();
        match opened {
            Some(opened) => assert_eq!(
                opened, checked,
                "{ctx}: the child opened (txns, epoch) {opened:?}, the parent had checked \
                 {checked:?}"
            ),
            None => assert!(early, "{ctx}: the child wrote no open line"),
        }
        let called = journal.txns.keys().next_back().copied().unwrap_or(0);
        let now = check_recovered(&store, seed, &journal, checked.0, &ctx);
        summary.push(format!(
            "kill {} ({}) after {delay} ms{}: txn lines up to {called}, acknowledged up to epoch \
             {}, recovered epoch {} holding {} txns; steps done {:?}{}",
            i + 1,
            step.name(),
            if early { " from the start" } else { "" },
            journal.floor,
            now.1,
            now.0,
            if opened.is_some() {
                &journal.done[..]
            } else {
                &[]
            },
            match (opened, cut) {
                (None, _) => ", killed before it had opened the store",
                (Some(_), true) => ", a journal line was cut",
                (Some(_), false) => "",
            }
        ));
        checked = now;
    }
    eprintln!(
        "runtime_kill_production seed {seed:#x}:\n  {}",
        summary.join("\n  ")
    );
    assert!(
        checked.0 > 0,
        "seed {seed:#x}: no transaction was recovered; the test checked nothing ({summary:?})"
    );
}

#[test]
fn kill_after_recovery_with_production_options() {
    let base = env_opt("VELLUM_KILLP_SEED").unwrap_or(0x9d0c_4111);
    let rounds = env_opt("VELLUM_KILLP_ROUNDS").unwrap_or(1).max(1);
    for r in 0..rounds {
        round(base ^ r.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
}
