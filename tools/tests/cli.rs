//! The `vellum fsck` and `vellum dump` binaries: exit codes 0 (clean), 1 (problems), 2 (no store,
//! no valid superblock, or locked by a live writer), `--strict`, `--snapshot`, and JSON output
//! that parses and says what the text says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use vellum::NodeId;
use vellum::inspect::{FsckOptions, load};
use vellum::io::OsStorage;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

/// Small files and windows, so stores stay small; the binary is told the same sizes.
fn runtime_options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    o.data.alloc.file_bytes_max = 64 << 20;
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 16 << 20;
    o.log.preallocate_bytes = 64 << 10;
    o
}

fn fsck_options() -> FsckOptions {
    let o = runtime_options();
    FsckOptions {
        file_bytes_max: o.data.alloc.file_bytes_max,
        window_bytes: o.data.window_bytes,
        ..FsckOptions::default()
    }
}

fn vellum(args: &[&str], dir: &Path) -> Output {
    let o = runtime_options();
    Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(args)
        .arg(dir)
        .arg("--file-bytes-max")
        .arg(o.data.alloc.file_bytes_max.to_string())
        .arg("--window-bytes")
        .arg(o.data.window_bytes.to_string())
        .output()
        .expect("run vellum")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A closed store: STRICT nodes (bytes only in their slots) and BALANCED ones (bytes also in
/// the log), a root, a checkpoint, then more commits. Returns the directory and the STRICT
/// nodes with their bytes.
fn store(tmp: &Path) -> (PathBuf, Vec<(NodeId, Vec<u8>)>) {
    let dir = tmp.join("store");
    let rt = DurableRuntime::open(&dir, runtime_options()).expect("open");
    let mut strict = Vec::new();
    for round in 0..2u8 {
        let mut tx = rt.begin();
        for i in 0..4u8 {
            let bytes = vec![round * 16 + i; 5000];
            let id = tx.alloc(1, &bytes).expect("alloc");
            strict.push((id, bytes));
        }
        tx.set_root("first", strict[0].0).expect("root");
        tx.commit_with(CommitPolicy::Strict).expect("strict commit");
        let mut tx = rt.begin();
        tx.alloc(2, b"small balanced node").expect("alloc");
        tx.commit_with(CommitPolicy::Balanced)
            .expect("balanced commit");
        if round == 0 {
            rt.checkpoint().expect("checkpoint");
        }
    }
    rt.close().expect("close");
    (dir, strict)
}

#[test]
fn fsck_exit_codes_and_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, strict) = store(tmp.path());

    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report = json(&out);
    assert_eq!(report["exit_code"], 0);
    assert_eq!(report["readable"], true);
    assert_eq!(report["access"], "locked");
    assert_eq!(report["findings"].as_array().map(Vec::len), Some(0));
    assert_eq!(report["summary"]["live_nodes"], 10);
    let out = vellum(&["fsck"], &dir);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("0 problems, 0 warnings, 0 info; exit 0"),
        "{text}"
    );

    // A file vellum does not know is a warning: exit 0, or 1 with --strict.
    std::fs::write(dir.join("notes.txt"), b"hello").expect("write");
    assert_eq!(vellum(&["fsck"], &dir).status.code(), Some(0));
    assert_eq!(vellum(&["fsck", "--strict"], &dir).status.code(), Some(1));
    std::fs::remove_file(dir.join("notes.txt")).expect("remove");

    // One flipped byte in a STRICT node: exit 1, and the finding names file, offset, node, kind.
    let insp = load(&OsStorage::new(), &dir, &fsck_options()).expect("load");
    let (id, _) = &strict[3];
    let loc = insp.model.get(*id).expect("live").version.location;
    let file = dir.join(vellum::alloc::data_file_name(loc.class, loc.file));
    let mut bytes = std::fs::read(&file).expect("read");
    bytes[loc.offset as usize + 100] ^= 0x40;
    std::fs::write(&file, &bytes).expect("write");
    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let report = json(&out);
    assert_eq!(report["exit_code"], 1);
    let findings = report["findings"].as_array().expect("findings");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    let f = &findings[0];
    assert_eq!(f["severity"], "problem");
    assert_eq!(f["kind"], "corruption");
    assert_eq!(f["detail"]["type"], "checksum_mismatch");
    assert_eq!(f["node"], id.to_string());
    assert_eq!(f["offset"], loc.offset);
    assert_eq!(f["file"], file.to_str().expect("utf-8"));
    bytes[loc.offset as usize + 100] ^= 0x40;
    std::fs::write(&file, &bytes).expect("write");

    // No valid superblock slot: exit 2, with both slots' findings.
    let sb = dir.join("superblock");
    let saved = std::fs::read(&sb).expect("read");
    std::fs::write(&sb, vec![0u8; saved.len()]).expect("write");
    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let report = json(&out);
    assert_eq!(report["readable"], false);
    assert_eq!(
        report["findings"].as_array().map(Vec::len),
        Some(2),
        "{report:#}"
    );
    std::fs::write(&sb, &saved).expect("write");

    // No store at all: exit 2, and the JSON says why.
    let out = vellum(&["fsck", "--json"], &tmp.path().join("nothing-here"));
    assert_eq!(out.status.code(), Some(2));
    let report = json(&out);
    assert_eq!(report["exit_code"], 2);
    assert!(
        report["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot read"))
    );

    assert_eq!(vellum(&["fsck"], &dir).status.code(), Some(0), "restored");
}

#[test]
fn fsck_refuses_a_locked_store_unless_snapshot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, _) = store(tmp.path());
    let rt = DurableRuntime::open(&dir, runtime_options()).expect("open");
    let out = vellum(&["fsck"], &dir);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked by a live writer"), "{stderr}");
    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        json(&out)["error"]
            .as_str()
            .is_some_and(|e| e.contains("--snapshot"))
    );
    let out = vellum(&["fsck", "--snapshot", "--json"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out)["access"], "snapshot");
    assert_eq!(vellum(&["dump"], &dir).status.code(), Some(2));
    assert_eq!(vellum(&["dump", "--snapshot"], &dir).status.code(), Some(0));
    drop(rt);
    assert_eq!(vellum(&["fsck"], &dir).status.code(), Some(0));
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn dump_shows_each_section() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (dir, strict) = store(tmp.path());

    let out = vellum(&["dump", "--json"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let d = json(&out);
    let slots = d["superblock"].as_array().expect("slots");
    assert_eq!(slots.len(), 2);
    assert_eq!(
        slots.iter().filter(|s| s["in_force"] == true).count(),
        1,
        "{slots:#?}"
    );
    assert_eq!(d["manifest"]["document"]["format"], "vellum-manifest");
    assert_eq!(d["manifest"]["trusted"], true);
    assert_eq!(d["roots"]["recovered"][0]["name"], "first");
    assert_eq!(d["roots"]["recovered"][0]["node"], strict[0].0.to_string());
    assert_eq!(d["roots"]["recovered"][0]["live"], true);
    let live: u64 = d["space"]
        .as_array()
        .expect("space")
        .iter()
        .map(|c| c["live_nodes"].as_u64().expect("count"))
        .sum();
    assert_eq!(live, 10);
    assert!(d.get("log").is_none(), "only the default sections");

    let (id, bytes) = &strict[5];
    let out = vellum(&["dump", "--json", "--node", &id.to_string()], &dir);
    assert_eq!(out.status.code(), Some(0));
    let node = &json(&out)["node"];
    assert_eq!(node["bytes"], hex(bytes));
    assert_eq!(node["crc_ok"], true);
    assert_eq!(node["carried"], false);
    let out = vellum(&["dump", "--node", &id.to_string()], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("node {id}")), "{text}");

    let out = vellum(&["dump", "--json", "--log", "--checkpoint"], &dir);
    assert_eq!(out.status.code(), Some(0));
    let d = json(&out);
    let logs = d["log"].as_array().expect("logs");
    assert_eq!(logs.len(), 1, "the checkpoint dropped the first log");
    let epochs: Vec<u64> = logs[0]["frames"]
        .as_array()
        .expect("frames")
        .iter()
        .map(|f| f["epoch"].as_u64().expect("decoded"))
        .collect();
    assert_eq!(epochs, vec![3, 4], "the two commits after the checkpoint");
    assert_eq!(logs[0]["stop_reason"], "seal (closed cleanly)");
    assert_eq!(d["checkpoint"]["entries"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        d["checkpoint"]["problems"].as_array().map(Vec::len),
        Some(0)
    );

    let out = vellum(&["dump", "--node", "63:99999:7"], &dir);
    assert_eq!(out.status.code(), Some(1), "a node that is not live");
    let out = vellum(&["dump", "--node", "not-an-id"], &dir);
    assert_eq!(out.status.code(), Some(2), "clap refuses a malformed id");
}

/// `dump --faster-log` shows a FasterLog root with one line per chunk node, and its JSON lists
/// the chunks; `dump --structures` shows it through the FasterLog plugin; `fsck` finds the log
/// clean, and after one entry is damaged reports it (through the plugin the tool registers) with
/// the page, the entry's address, the extent node and the kind.
#[test]
fn dump_shows_a_faster_log_with_its_chunks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let nodes;
    {
        let rt = std::sync::Arc::new(DurableRuntime::open(&dir, runtime_options()).expect("open"));
        let options = vellum_faster::FasterLogOptions {
            page_bytes: 4096,
            memory_pages: 4,
            // Nodes go to their slots at commit, where dump reads them.
            policy: Some(CommitPolicy::Strict),
        };
        let log = vellum_faster::FasterLog::open(rt.clone(), "events", options).expect("log");
        // 130 entries that each fill a page, committed two pages at a time: two chunk nodes.
        for i in 0..130u8 {
            log.append(&[i; 4088]).expect("append");
            if i % 2 == 1 {
                log.commit().expect("commit");
            }
        }
        nodes = rt.node_ids().len();
        drop(log);
        std::sync::Arc::into_inner(rt)
            .expect("last handle")
            .close()
            .expect("close");
    }
    assert_eq!(
        nodes,
        1 + 2 + 130,
        "the metadata, two chunks, one extent per page"
    );
    // The healthy log: the plugin finds nothing, and no finding names the log.
    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let findings = json(&out)["findings"].clone();
    let about_log = findings
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| {
            f["file"]
                .as_str()
                .is_some_and(|n| n.starts_with("faster-log:"))
        })
        .count();
    assert_eq!(about_log, 0, "{findings:#}");

    let out = vellum(&["dump", "--json", "--faster-log"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let l = &json(&out)["faster_logs"][0];
    assert_eq!(l["root"], "faster-log:events");
    assert_eq!(
        (l["first_page"].as_u64(), l["page_count"].as_u64()),
        (Some(0), Some(130))
    );
    assert_eq!(l["extent_count"], 130);
    assert_eq!(l["entries"], 130);
    let chunks = l["chunks"].as_array().expect("chunks");
    let pages: Vec<(u64, u64)> = chunks
        .iter()
        .map(|c| {
            (
                c["first_page"].as_u64().expect("first"),
                c["page_count"].as_u64().expect("count"),
            )
        })
        .collect();
    assert_eq!(pages, [(0, 64), (64, 64)]);

    let out = vellum(&["dump", "--faster-log"], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("pages 0..130 in 130 extents"), "{text}");
    for (c, range) in chunks.iter().zip(["0..64", "64..128"]) {
        let node = c["node"].as_str().expect("node");
        let line = format!("  chunk {node} lists pages {range}\n");
        assert!(text.contains(&line), "{text}");
    }

    let out = vellum(&["dump", "--json", "--structures"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let s = &json(&out)["structures"];
    assert_eq!(s.as_array().map(Vec::len), Some(1), "{s}");
    assert_eq!(s[0]["root"], "faster-log:events");
    assert_eq!(s[0]["structure"], "FasterLog");
    assert_eq!(s[0]["view"]["entries"], 130);
    assert_eq!(s[0]["view"]["chunks"], l["chunks"]);
    let out = vellum(&["dump", "--structures"], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FasterLog faster-log:events (node "),
        "{text}"
    );

    // One payload byte of page 129's entry, through the runtime (the node's CRC32C is right).
    let (node, address, crcs);
    {
        let rt = DurableRuntime::open(&dir, runtime_options()).expect("open");
        let meta = vellum_faster::meta::Meta::decode(
            &rt.read(rt.root("faster-log:events").expect("root"))
                .expect("read"),
            "m",
        )
        .expect("meta");
        let e = meta.page_extents(129).expect("in-line")[0];
        node = e.node;
        address = 129 * 4096 + u64::from(e.start);
        let mut bytes = rt.read(node).expect("read");
        bytes[8] ^= 0x01;
        // The entry's header: its length, then the CRC32C of the payload as written.
        let len = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let stored = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        crcs = (stored, vellum_faster::entry::entry_crc(&bytes[8..8 + len]));
        let mut tx = rt.begin();
        tx.write(node, &bytes).expect("write");
        tx.commit_with(CommitPolicy::Strict).expect("commit");
        rt.close().expect("close");
    }
    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let findings = json(&out)["findings"].clone();
    let problems: Vec<&Value> = findings
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["severity"] == "problem")
        .collect();
    assert_eq!(problems.len(), 1, "{findings:#}");
    let f = problems[0];
    assert_eq!(f["file"], "faster-log:events/page-129");
    assert_eq!(f["offset"], address);
    assert_eq!(f["node"], node.to_string());
    assert_eq!(f["kind"], "corruption");
    assert_eq!(
        f["detail"],
        serde_json::json!({
            "type": "checksum_mismatch",
            "expected": crcs.0,
            "actual": crcs.1,
        })
    );
    assert_eq!(f["severity"], "problem");
    let out = vellum(&["dump", "--faster-log"], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("129 entries"), "{text}");
    assert!(text.contains(", 1 problems\n"), "{text}");
    assert!(
        text.contains("  problem: faster-log:events/page-129: checksum mismatch"),
        "{text}"
    );
}

/// A root whose prefix names a structure the tool has no plugin for is one `info` finding
/// `no_inspector` naming the root and its node: `fsck` exits 0, with `--strict` too, and
/// `dump --structures` says that no inspector knows the root.
#[test]
fn fsck_reports_a_structure_root_without_a_plugin_as_info() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    let id;
    {
        let rt = DurableRuntime::open(&dir, runtime_options()).expect("open");
        let mut tx = rt.begin();
        id = tx
            .alloc(1, b"a structure nobody registered")
            .expect("alloc");
        tx.set_root("btree:sessions", id).expect("root");
        tx.commit_with(CommitPolicy::Strict).expect("commit");
        rt.close().expect("close");
    }
    for args in [&["fsck", "--json"][..], &["fsck", "--json", "--strict"]] {
        let out = vellum(args, &dir);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {out:?}");
        let findings = json(&out)["findings"].clone();
        let about_root: Vec<&Value> = findings
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["file"] == "btree:sessions")
            .collect();
        assert_eq!(about_root.len(), 1, "{findings:#}");
        let f = about_root[0];
        assert_eq!(
            (
                &f["severity"],
                &f["kind"],
                &f["prefix"],
                &f["offset"],
                &f["node"]
            ),
            (
                &Value::from("info"),
                &Value::from("no_inspector"),
                &Value::from("btree:"),
                &Value::from(0),
                &Value::from(id.to_string())
            )
        );
    }
    let out = vellum(&["dump", "--structures"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = format!("btree:sessions (node {id}): no inspector for this root\n");
    assert!(text.contains(&line), "{text}");
}

/// `dump --faster-kv NAME` shows that store's checkpoint, sessions and check, and `--key` a
/// key's record chain; `fsck` finds nothing in it; another store's name shows nothing.
#[test]
fn dump_shows_a_faster_kv_store_and_a_key_chain() {
    use vellum_faster::kv::{AddU64, FasterKv, KvOptions};
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("store");
    {
        let rt = std::sync::Arc::new(DurableRuntime::open(&dir, runtime_options()).expect("open"));
        let options = KvOptions {
            page_bytes: 4096,
            log_memory_bytes_max: 4 * 4096,
            // Nodes go to their slots at commit, where dump reads them.
            checkpoint_policy: CommitPolicy::Strict,
            ..KvOptions::default()
        };
        let kv = FasterKv::open(rt.clone(), "counts", options).expect("store");
        let (mut s, _) = kv.resume_session("loader", AddU64).expect("session");
        for k in 0..500u64 {
            s.upsert(&k.to_le_bytes(), &k.to_le_bytes())
                .expect("upsert");
        }
        drop(s);
        kv.close().expect("close");
        std::sync::Arc::into_inner(rt)
            .expect("last handle")
            .close()
            .expect("close");
    }
    let out = vellum(&["fsck", "--json"], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let key = format!("0x{}", hex(&7u64.to_le_bytes()));
    let out = vellum(&["dump", "--faster-kv", "counts", "--key", &key], &dir);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("FasterKV faster-kv:counts: checkpoint version 0"),
        "{text}"
    );
    assert!(text.contains("500 records"), "{text}");
    assert!(text.contains(", 0 problems\n"), "{text}");
    assert!(
        text.contains("  session loader: commit point 500 (excluded [])"),
        "{text}"
    );
    assert!(
        text.contains("FasterKV faster-kv:counts key chain ("),
        "{text}"
    );
    assert!(text.contains(", value 8 B, previous "), "{text}");
    let out = vellum(&["dump", "--faster-kv", "other"], &dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("FasterKV"), "{text}");
}
