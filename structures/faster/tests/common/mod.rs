//! Helpers shared by the FasterLog integration tests.

#![allow(dead_code, reason = "each test binary uses part of the shared helpers")]

use std::collections::BTreeSet;
use std::sync::Arc;

use vellum::NodeId;
use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::chunk::{Chunk, ChunkRef};
use vellum_faster::meta::{Extent, Meta};
use vellum_faster::{FasterLog, FasterLogOptions};

/// A xorshift64 generator, deterministic from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The environment variable `name` as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `len` bytes that are a pure function of `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    (0..len)
        .map(|i| {
            if i % 8 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            (x >> (i % 8 * 8)) as u8
        })
        .collect()
}

/// Runtime options with small files and windows, no background checkpoint or compaction, and
/// no background EVENTUAL flush (so crash points are deterministic).
pub fn small_options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: std::time::Duration::from_secs(60),
        checkpoint_log_bytes: 1 << 40,
        ..RuntimeOptions::default()
    };
    o.compaction.interval = None;
    o.data.alloc.file_bytes_max = 64 << 20;
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 16 << 20;
    o.log.preallocate_bytes = 64 << 10;
    o
}

/// Log options with `page_bytes` pages and `memory_pages` of them in memory.
pub fn log_options(page_bytes: u32, memory_pages: u32) -> FasterLogOptions {
    FasterLogOptions {
        page_bytes,
        memory_pages,
        policy: None,
    }
}

/// Opens a runtime on the real filesystem in `dir` and log `name` in it.
pub fn open_real(dir: &std::path::Path, name: &str, options: FasterLogOptions) -> FasterLog {
    let rt = Arc::new(DurableRuntime::open(dir, small_options()).expect("open runtime"));
    FasterLog::open(rt, name, options).expect("open log")
}

/// Every committed entry's bytes, in order. Entries come back at increasing addresses below the
/// committed tail (asserted), or the scan itself would be wrong.
pub fn scan_bytes(log: &FasterLog) -> Vec<Vec<u8>> {
    let mut last = None;
    log.scan_all()
        .map(|e| {
            let e = e.expect("scan");
            assert!(
                last.is_none_or(|l| e.address > l),
                "scan went back: {} after {last:?}",
                e.address
            );
            last = Some(e.address);
            e.bytes
        })
        .collect()
}

/// Log `name`'s metadata node in `rt`.
pub fn meta(rt: &DurableRuntime, name: &str) -> Meta {
    let id = rt
        .root(&format!("faster-log:{name}"))
        .expect("the log's root");
    Meta::decode(&rt.read(id).expect("read metadata"), "meta").expect("metadata decodes")
}

/// The chunk node `r` names, checked against `r`.
pub fn chunk(rt: &DurableRuntime, r: &ChunkRef) -> Chunk {
    let c = Chunk::decode(&rt.read(r.node).expect("read chunk"), "chunk").expect("chunk decodes");
    c.check_ref(r, c.page_bytes, "chunk")
        .expect("chunk matches its reference");
    c
}

/// Every page's extents, from the chunks and in-line, as recovery rebuilds them.
pub fn all_pages(rt: &DurableRuntime, m: &Meta) -> Vec<(u64, Vec<Extent>)> {
    let mut pages = Vec::new();
    for r in &m.chunks {
        let c = chunk(rt, r);
        assert_eq!(c.page_bytes, m.page_bytes, "chunk page_bytes");
        pages.extend((c.first_page..).zip(c.pages));
    }
    pages.extend((m.first_page..).zip(m.pages.iter().cloned()));
    pages
}

/// The runtime's live nodes are exactly log `name`'s metadata, its chunks, every extent they
/// list and `retire_pending` (no leak, nothing listed missing, nothing pending still listed);
/// returns how many there are. The runtime must hold no other log.
pub fn assert_accounted(rt: &DurableRuntime, name: &str, ctx: &str) -> usize {
    let m = meta(rt, name);
    let mut want: BTreeSet<NodeId> = BTreeSet::new();
    want.insert(rt.root(&format!("faster-log:{name}")).expect("root"));
    want.extend(m.chunks.iter().map(|c| c.node));
    for (_, extents) in all_pages(rt, &m) {
        want.extend(extents.iter().map(|e| e.node));
    }
    let listed = want.len();
    want.extend(m.retire_pending.iter().copied());
    assert_eq!(
        want.len(),
        listed + m.retire_pending.len(),
        "{ctx}: a node pending retirement is still listed"
    );
    let live: BTreeSet<NodeId> = rt.node_ids().into_iter().collect();
    assert_eq!(live, want, "{ctx}: live nodes");
    live.len()
}

/// FasterKV options: `page_bytes` pages, `memory_pages` of them in memory (90 % mutable), an
/// index of `buckets` main buckets.
pub fn kv_options(
    page_bytes: u32,
    memory_pages: u64,
    buckets: u64,
) -> vellum_faster::kv::KvOptions {
    vellum_faster::kv::KvOptions {
        index: vellum_faster::kv::index::IndexOptions {
            bucket_count: buckets,
            ..Default::default()
        },
        page_bytes,
        log_memory_bytes_max: u64::from(page_bytes) * memory_pages,
        mutable_percent: 90,
        ..Default::default()
    }
}

/// A FasterKV store `kv` on a runtime with the default (production) options in `dir`.
pub fn open_kv(
    dir: &std::path::Path,
    options: vellum_faster::kv::KvOptions,
) -> vellum_faster::kv::FasterKv {
    let rt_options = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(DurableRuntime::open(dir, rt_options).unwrap());
    vellum_faster::kv::FasterKv::open(rt, "kv", options).unwrap()
}

/// The runtime's live nodes are exactly FasterKV store `name`'s store node, the page nodes it
/// lists (the pages below its checkpoint's tail, `page_bytes` each) and its checkpoint's chunk
/// and delta nodes: recovery leaked nothing and lost nothing listed. Call it before the store writes
/// anything after opening.
pub fn assert_kv_accounted(kv: &vellum_faster::kv::FasterKv, page_bytes: u64, ctx: &str) {
    use vellum_faster::kv::store_node::StoreNode;
    let rt = kv.runtime();
    let root = format!("faster-kv:{}", kv.name());
    let id = rt.root(&root).expect("the store's root");
    let node = StoreNode::decode(&rt.read(id).unwrap(), &root).unwrap();
    let cp = node.checkpoint.expect("a recovered store has a checkpoint");
    assert_eq!(
        node.pages.len() as u64,
        cp.tail / page_bytes,
        "{ctx}: pages listed up to the tail"
    );
    let mut want: BTreeSet<NodeId> = (node.pages.into_iter())
        .chain(cp.chunks)
        .chain(cp.deltas)
        .collect();
    want.insert(id);
    let live: BTreeSet<NodeId> = rt.node_ids().into_iter().collect();
    assert_eq!(live, want, "{ctx}: live nodes");
}

/// fsck options matching [`small_options`]'s file and window sizes.
pub fn fsck_options() -> vellum::inspect::FsckOptions {
    let data = small_options().data;
    vellum::inspect::FsckOptions {
        file_bytes_max: data.alloc.file_bytes_max,
        window_bytes: data.window_bytes,
        ..vellum::inspect::FsckOptions::default()
    }
}

/// Appends `line` to the kill tests' journal `<dir>/acks` (O_APPEND, one `write`, never synced:
/// a SIGKILL keeps the page cache).
pub fn journal(dir: &std::path::Path, line: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acks"))
        .expect("journal");
    f.write_all(format!("{line}\n").as_bytes())
        .expect("journal write");
}

/// Every complete line of the journal, as its words (a line cut short by a kill is left out).
pub fn journal_lines(dir: &std::path::Path) -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(dir.join("acks")).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| l.split(' ').map(str::to_owned).collect())
        .collect()
}

/// Opens the runtime in `dir`, retrying `Locked` for up to 10 s: another round's child, forked
/// while this process held the lock and not yet exec'd, may hold the lock file's description
/// for a moment.
pub fn open_runtime_retrying(dir: &std::path::Path, options: RuntimeOptions) -> DurableRuntime {
    let start = std::time::Instant::now();
    loop {
        match DurableRuntime::open(dir, options.clone()) {
            Err(vellum::Error::Locked { .. })
                if start.elapsed() < std::time::Duration::from_secs(10) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            r => break r.expect("open runtime"),
        }
    }
}

/// Every key of `keys` reads back from `kv` as `want` says (8-byte little-endian values; a
/// key `want` lacks is not found).
pub fn assert_kv_values(
    kv: &vellum_faster::kv::FasterKv,
    keys: impl Iterator<Item = u64>,
    want: &std::collections::HashMap<u64, u64>,
    ctx: &str,
) {
    use vellum_faster::kv::Status;
    let mut s = kv.session(vellum_faster::kv::AddU64).unwrap();
    let mut out = Vec::new();
    for k in keys {
        let status = s
            .read_blocking(&k.to_le_bytes(), &mut out)
            .unwrap_or_else(|e| panic!("{ctx}: read {k}: {e}"));
        match want.get(&k) {
            Some(v) => assert_eq!(
                (status, &out[..]),
                (Status::Found, &v.to_le_bytes()[..]),
                "{ctx}: key {k}"
            ),
            None => assert_eq!(status, Status::NotFound, "{ctx}: key {k}"),
        }
    }
}

/// A kill test's commit policy by name (`strict`, `balanced`, else EVENTUAL).
pub fn policy_from(s: &str) -> vellum::runtime::CommitPolicy {
    use vellum::runtime::CommitPolicy;
    match s {
        "strict" => CommitPolicy::Strict,
        "balanced" => CommitPolicy::Balanced,
        _ => CommitPolicy::Eventual,
    }
}

/// The names of a kill test's environment variables: directory, seed, policy.
pub type KillVars = [&'static str; 3];

/// In a kill test's child: the directory, seed and policy its parent set, or `None` when run
/// as an ordinary test (the child then returns at once).
pub fn child_env(
    vars: KillVars,
) -> Option<(std::path::PathBuf, u64, vellum::runtime::CommitPolicy)> {
    let [dir, seed, policy] = vars.map(|v| std::env::var(v).ok());
    let seed = seed?.parse().expect("seed");
    Some((dir?.into(), seed, policy_from(&policy?)))
}

/// Starts this test binary's ignored test `child` with the kill test's variables, and waits
/// until it journals one more `open` line than before (it has recovered and begun).
pub fn spawn_opened_child(
    child: &str,
    vars: KillVars,
    (dir, seed, policy): (&std::path::Path, u64, &str),
    ctx: &str,
) -> std::process::Child {
    use std::time::{Duration, Instant};
    let opens = || journal_lines(dir).iter().filter(|l| l[0] == "open").count();
    let before = opens();
    let mut process = std::process::Command::new(std::env::current_exe().unwrap())
        .args([child, "--exact", "--ignored", "--nocapture"])
        .env(vars[0], dir)
        .env(vars[1], seed.to_string())
        .env(vars[2], policy)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while opens() == before {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "{ctx}: the child never opened"
        );
        assert!(
            process.try_wait().unwrap().is_none(),
            "{ctx}: the child exited"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    process
}

/// Replaces node `id`'s bytes in the store in `dir` with `damage` of them, in a STRICT commit
/// (the runtime's checksum stays right: only the structure's checks can tell).
pub fn rewrite_node(dir: &std::path::Path, id: NodeId, damage: impl FnOnce(&mut Vec<u8>)) {
    let rt = DurableRuntime::open(dir, small_options()).unwrap();
    let mut bytes = rt.read(id).unwrap();
    damage(&mut bytes);
    let mut tx = rt.begin();
    tx.write(id, &bytes).unwrap();
    tx.commit_with(vellum::runtime::CommitPolicy::Strict)
        .unwrap();
    rt.close().unwrap();
}
