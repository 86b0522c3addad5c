//! `vellum dump DIR`: what a store's files hold, decoded. Without a section flag it shows the
//! superblock slots, the manifest, the roots, FasterLog roots and the space per size class. It
//! reads what it can from a damaged store and says what it could not decode. Structures are
//! decoded by their crates' plugins ([`crate::PLUGINS`]). Exit codes: 0 shown, 1 a requested
//! node is not live, 2 the store could not be read (or is locked by a writer).

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::Serialize;
use vellum::NodeId;
use vellum::inspect::dump::{
    self, CheckpointDump, LogDump, ManifestDump, NodeDump, RootsDump, StructureDump,
};
use vellum::inspect::{ClassSpace, FsckOptions, Inspection, load, lock};
use vellum::io::{OsStorage, Storage};
use vellum_faster::inspect::{FasterLogDump, faster_logs};
use vellum_faster::kv::inspect::{ChainRecord, FasterKvDump, faster_kvs, key_chain};

use crate::fsck::{EXIT_UNREADABLE, print_json, refusal};

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// The store directory.
    dir: PathBuf,
    /// Both superblock slots, decoded, with their validity.
    #[arg(long)]
    superblock: bool,
    /// The manifest the slot in force names.
    #[arg(long)]
    manifest: bool,
    /// The root catalog (the superblock's and the one replay ends with).
    #[arg(long)]
    roots: bool,
    /// Per size class: files, bytes, bytes on disk, live nodes and bytes.
    #[arg(long)]
    space: bool,
    /// FasterLog roots: metadata (begin, committed tail, pages, named iterators) and a check of
    /// every committed entry.
    #[arg(long)]
    faster_log: bool,
    /// FasterKV roots (store NAME's only, when given): the checkpoint (version, addresses,
    /// index chunks and deltas), the named sessions' commit points, and a check of every index
    /// entry against the log.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    faster_kv: Option<String>,
    /// With `--faster-kv`: the record chain the store's index has for this key (UTF-8; `0x...`
    /// for hex bytes).
    #[arg(long, value_name = "KEY")]
    key: Option<String>,
    /// Every root that names a structure (its name has a `prefix:`), as the structure's
    /// inspection plugin shows it (JSON), or that no plugin knows it.
    #[arg(long)]
    structures: bool,
    /// Every frame of the delta logs, with its commit record decoded.
    #[arg(long)]
    log: bool,
    /// The checkpoint's entries.
    #[arg(long)]
    checkpoint: bool,
    /// A live node's version and bytes (hex), by id (`shard:handle:tag` or `0x...`).
    #[arg(long, value_name = "ID")]
    node: Option<NodeId>,
    /// Print JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Read without taking the store's lock, while a writer may run.
    #[arg(long)]
    snapshot: bool,
    /// The store's file_bytes_max, used only when no manifest can be read (its layout wins).
    #[arg(long, default_value_t = FsckOptions::default().file_bytes_max)]
    file_bytes_max: u64,
    /// The store's window_bytes, used only when no manifest can be read (its layout wins).
    #[arg(long, default_value_t = FsckOptions::default().window_bytes)]
    window_bytes: u64,
}

/// The sections asked for, as one JSON document.
#[derive(Serialize, Default)]
struct Out {
    #[serde(skip_serializing_if = "Option::is_none")]
    superblock: Option<Vec<dump::SlotDump>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    manifest: Option<ManifestDump>,
    #[serde(skip_serializing_if = "Option::is_none")]
    roots: Option<RootsDump>,
    #[serde(skip_serializing_if = "Option::is_none")]
    faster_logs: Option<Vec<FasterLogDump>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    faster_kvs: Option<Vec<FasterKvDump>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_chains: Option<Vec<KeyChain>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    structures: Option<Vec<StructureDump>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    space: Option<Vec<ClassSpace>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Vec<LogDump>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    checkpoint: Option<CheckpointDump>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<NodeDump>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Runs the dump; returns the exit code.
pub fn run(args: &DumpArgs) -> u8 {
    let storage = Arc::new(OsStorage::new());
    let options = FsckOptions {
        file_bytes_max: args.file_bytes_max,
        window_bytes: args.window_bytes,
        snapshot: args.snapshot,
        verify_bytes: false,
    };
    let loaded = (|| {
        let lock = if args.snapshot {
            None
        } else {
            lock(storage.as_ref(), &args.dir)?.1
        };
        // No plugin here: the sections that show structures call them on the reconstruction.
        let insp = load(storage.as_ref(), &args.dir, &options)?;
        Ok::<_, vellum::Error>((lock, insp))
    })();
    let insp = match loaded {
        Ok((_lock, insp)) => insp,
        Err(e) => {
            let message = refusal(&args.dir, &e);
            if args.json {
                print_json(&Out {
                    error: Some(message),
                    ..Out::default()
                });
            } else {
                eprintln!("vellum dump: {message}");
            }
            return EXIT_UNREADABLE;
        }
    };
    let (out, code) = collect(args, storage.as_ref(), &insp);
    if args.json {
        print_json(&out);
    } else {
        print_text(&out);
    }
    code
}

fn collect(args: &DumpArgs, storage: &dyn Storage, insp: &Inspection) -> (Out, u8) {
    let none = !(args.superblock
        || args.manifest
        || args.roots
        || args.space
        || args.faster_log
        || args.faster_kv.is_some()
        || args.structures
        || args.log
        || args.checkpoint
        || args.node.is_some());
    let mut out = Out::default();
    let mut code = 0;
    if none || args.superblock {
        out.superblock = Some(dump::superblock(insp));
    }
    if none || args.manifest {
        out.manifest = Some(dump::manifest(storage, insp));
    }
    if none || args.roots {
        out.roots = Some(dump::roots(insp));
    }
    if none || args.faster_log {
        out.faster_logs = Some(faster_logs(insp));
    }
    // `--faster-kv NAME` keeps store NAME's root only; alone (or by default), every store.
    let wanted = |root: &str| match args.faster_kv.as_deref() {
        None | Some("") => true,
        Some(name) => root.strip_prefix(vellum_faster::kv::KV_ROOT_PREFIX) == Some(name),
    };
    if none || args.faster_kv.is_some() {
        let stores = faster_kvs(insp).into_iter().filter(|k| wanted(&k.root));
        out.faster_kvs = Some(stores.collect());
    }
    if let (Some(_), Some(key)) = (&args.faster_kv, &args.key) {
        let chains = key_chains(insp, &key_bytes(key)).into_iter();
        out.key_chains = Some(chains.filter(|c| wanted(&c.root)).collect());
    }
    if args.structures {
        out.structures = Some(dump::structures(insp, crate::PLUGINS));
    }
    if none || args.space {
        out.space = Some(insp.space.clone());
    }
    if args.log {
        out.log = Some(dump::logs(storage, insp));
    }
    if args.checkpoint {
        out.checkpoint = Some(dump::checkpoint(storage, insp));
    }
    if let Some(id) = args.node {
        match dump::node(insp, id) {
            Ok(n) => out.node = Some(n),
            Err(e) => {
                out.error = Some(e.to_string());
                code = 1;
            }
        }
    }
    (out, code)
}

fn print_text(out: &Out) {
    if let Some(slots) = &out.superblock {
        println!("superblock");
        for s in slots {
            match &s.error {
                Some(f) => println!(
                    "  slot {} @{}: INVALID at offset {}: {}",
                    s.slot, s.offset, f.offset, f.detail
                ),
                None => println!(
                    "  slot {} @{}{}: generation {}, commit epoch {}, manifest seq {} ({} bytes, \
                     crc32c {:#010x}), {} roots",
                    s.slot,
                    s.offset,
                    if s.in_force { " (in force)" } else { "" },
                    opt(s.generation),
                    opt(s.commit_epoch),
                    opt(s.manifest_seq),
                    opt(s.manifest_bytes),
                    s.manifest_crc32c.unwrap_or_default(),
                    s.roots.len()
                ),
            }
        }
    }
    if let Some(m) = &out.manifest {
        println!(
            "manifest {} ({})",
            m.file.as_deref().unwrap_or("-"),
            if m.trusted {
                "trusted"
            } else {
                "NOT trusted: run fsck"
            }
        );
        if let Some(text) = &m.text {
            if m.document.is_none() {
                println!("  (not JSON)");
            }
            for line in text.lines() {
                println!("  {line}");
            }
        }
        if let Some(e) = &m.error {
            println!("  cannot read: {e}");
        }
    }
    if let Some(r) = &out.roots {
        println!("roots (superblock in force)");
        for root in &r.superblock {
            println!("  {} -> {}", root.name, root.node);
        }
        println!("roots (after replay)");
        for root in &r.recovered {
            let live = match root.live {
                Some(true) => "live",
                Some(false) => "not live",
                None => "unknown",
            };
            println!("  {} -> {} ({live})", root.name, root.node);
        }
    }
    for k in out.faster_kvs.iter().flatten() {
        print_kv(k);
    }
    for c in out.key_chains.iter().flatten() {
        println!(
            "FasterKV {} key chain ({} records, newest first):",
            c.root,
            c.records.len()
        );
        for r in &c.records {
            println!(
                "  {}: version {}, {}{}{}value {} B, previous {}",
                r.address,
                r.version,
                if r.same_key { "" } else { "another key, " },
                if r.tombstone { "tombstone, " } else { "" },
                if r.invalid { "invalid, " } else { "" },
                r.value_len,
                r.previous
            );
        }
    }
    for l in out.faster_logs.iter().flatten() {
        println!(
            "FasterLog {} (metadata {}): page_bytes {}, begin {}, committed tail {}, pages {}..{} in {} extents ({} to retire)",
            l.root,
            l.meta_node,
            l.page_bytes,
            l.begin,
            l.committed_tail,
            l.first_page,
            l.first_page + l.page_count,
            l.extent_count,
            l.retire_pending
        );
        for c in &l.chunks {
            println!(
                "  chunk {} lists pages {}..{}",
                c.node,
                c.first_page,
                c.first_page + u64::from(c.page_count)
            );
        }
        for (name, pos) in &l.iterators {
            println!("  iterator {name} at {pos}");
        }
        println!(
            "  {} entries ({} payload bytes) checked, {} extent or chunk nodes carried by the log (unchecked), {} problems",
            l.entries,
            l.entry_bytes,
            l.pages_pending,
            l.findings.len()
        );
        for f in &l.findings {
            println!("  problem: {}", f.message);
        }
    }
    for s in out.structures.iter().flatten() {
        match (&s.structure, &s.view) {
            (Some(structure), Some(view)) => {
                println!("{structure} {} (node {})", s.root, s.node);
                let text = serde_json::to_string_pretty(view).unwrap_or_default();
                for line in text.lines() {
                    println!("  {line}");
                }
            }
            _ => println!("{} (node {}): no inspector for this root", s.root, s.node),
        }
    }
    if let Some(space) = &out.space {
        println!("space per size class");
        println!(
            "  {:>5} {:>10} {:>5} {:>14} {:>14} {:>10} {:>14} {:>14}",
            "class",
            "slot",
            "files",
            "bytes",
            "disk bytes",
            "live nodes",
            "live bytes",
            "live slots"
        );
        for c in space {
            println!(
                "  {:>5} {:>10} {:>5} {:>14} {:>14} {:>10} {:>14} {:>14}",
                c.class,
                c.slot_bytes,
                c.files,
                c.file_bytes,
                c.disk_bytes,
                c.live_nodes,
                c.live_bytes,
                c.live_slot_bytes
            );
        }
    }
    if let Some(logs) = &out.log {
        for l in logs {
            print_log(l);
        }
    }
    if let Some(c) = &out.checkpoint {
        print_checkpoint(c);
    }
    if let Some(n) = &out.node {
        println!(
            "node {}: class {} file {} offset {} ({} B slot), len {}, crc32c {:#010x} ({}), kind \
             {}, birth {}{}",
            n.node,
            n.location.class,
            n.location.file,
            n.location.offset,
            n.location.slot_bytes,
            n.len,
            n.crc32c,
            if n.crc_ok { "ok" } else { "MISMATCH" },
            n.kind,
            n.birth,
            if n.carried {
                ", bytes also in the log"
            } else {
                ""
            }
        );
        if let Some(e) = &n.error {
            println!("  cannot read: {e}");
        }
        print_hex(&n.bytes);
    }
    if let Some(e) = &out.error {
        eprintln!("vellum dump: {e}");
    }
}

fn print_log(l: &LogDump) {
    println!(
        "log {}: {} bytes, log_seq {}, start_epoch {}",
        l.file,
        opt(l.bytes),
        opt(l.log_seq),
        opt(l.start_epoch)
    );
    if let Some(f) = &l.header_error {
        println!("  header INVALID at offset {}: {}", f.offset, f.detail);
    }
    for f in &l.frames {
        match &f.error {
            Some(e) => println!(
                "  frame {} @{} ({} B): record INVALID at offset {}: {}",
                f.index, f.offset, f.body_bytes, e.offset, e.detail
            ),
            None => {
                println!(
                    "  frame {} @{} ({} B): epoch {}, {} ops",
                    f.index,
                    f.offset,
                    f.body_bytes,
                    opt(f.epoch),
                    f.ops.len()
                );
                for op in &f.ops {
                    let text = serde_json::to_string(op).unwrap_or_default();
                    println!("    {text}");
                }
            }
        }
    }
    println!("  stops at offset {}: {}", l.stop_offset, l.stop_reason);
    if let Some(o) = l.valid_frame_after_stop {
        println!("  a valid frame follows at offset {o}");
    }
    if let Some(e) = &l.error {
        println!("  cannot read: {e}");
    }
}

fn print_checkpoint(c: &CheckpointDump) {
    println!(
        "checkpoint {}: seq {}, epoch {}, {} entries",
        c.file.as_deref().unwrap_or("-"),
        opt(c.seq),
        opt(c.epoch),
        opt(c.entry_count)
    );
    for e in &c.entries {
        println!(
            "  {} class {} file {} offset {} len {} crc32c {:#010x} birth {} kind {}",
            e.node,
            e.location.class,
            e.location.file,
            e.location.offset,
            e.len,
            e.crc32c,
            e.birth,
            e.kind
        );
    }
    for p in &c.problems {
        println!("  INVALID at offset {}: {}", p.offset, p.detail);
    }
    if let Some(e) = &c.error {
        println!("  {e}");
    }
}

/// Hex and printable ASCII, 16 bytes a line.
fn print_hex(bytes: &[u8]) {
    for (i, chunk) in bytes.chunks(16).enumerate() {
        let hex: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = chunk
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        println!("  {:08x}  {:<47}  |{ascii}|", i * 16, hex.join(" "));
    }
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// A key's record chain in one FasterKV store.
#[derive(Serialize)]
struct KeyChain {
    root: String,
    records: Vec<ChainRecord>,
}

fn key_chains(insp: &Inspection, key: &[u8]) -> Vec<KeyChain> {
    use vellum::inspect::StoreView;
    insp.roots()
        .into_iter()
        .filter(|r| r.name.starts_with(vellum_faster::kv::KV_ROOT_PREFIX))
        .map(|r| KeyChain {
            records: key_chain(insp, &r, key),
            root: r.name,
        })
        .collect()
}

/// `--key`: UTF-8, or hex after `0x`.
fn key_bytes(key: &str) -> Vec<u8> {
    let Some(hex) = key.strip_prefix("0x") else {
        return key.as_bytes().to_vec();
    };
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

fn print_kv(k: &FasterKvDump) {
    if !k.checkpointed {
        println!(
            "FasterKV {}: page_bytes {}, {} page nodes, no checkpoint (the next open discards it)",
            k.root, k.page_bytes, k.pages
        );
        return;
    }
    println!(
        "FasterKV {}: checkpoint version {}, prepare_tail {}, tail {}, page_bytes {}, {} page nodes; index of {} buckets in {} chunks and {} deltas; {} records, {} entries checked, {} problems",
        k.root,
        k.version,
        k.prepare_tail,
        k.tail,
        k.page_bytes,
        k.pages,
        k.buckets,
        k.chunks,
        k.deltas,
        k.records,
        k.entries,
        k.findings.len()
    );
    for s in &k.sessions {
        println!(
            "  session {}: commit point {} (excluded {:?})",
            s.name, s.until_serial, s.excluded
        );
    }
}
