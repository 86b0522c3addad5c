//! A FasterKV store whose checkpoint is damaged refuses to open with the corruption's file,
//! offset and kind, and never panics: the store node's checkpoint section, an index chunk node
//! (its header, and an entry word of its image) and a page node below the checkpoint's tail
//! (refused when a read needs it). `fsck` with the FasterKV plugin reports the same corruption
//! (the page node's at once), and nothing on an undamaged store, whose `dump` shows its
//! checkpoint, sessions and a key's chain. Each case damages one node of a fresh store through
//! the runtime, so the node's own checksum is right and only FasterKV's checks can tell.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{fsck_options, kv_options, rewrite_node, small_options};
use vellum::inspect::{Report, fsck_with, load_with};
use vellum::io::OsStorage;
use vellum::runtime::DurableRuntime;
use vellum::{CorruptionKind, NodeId};
use vellum_faster::kv::inspect::{FasterKvPlugin, faster_kvs, key_chain};
use vellum_faster::kv::store_node::StoreNode;
use vellum_faster::kv::{AddU64, FasterKv, KvOptions, Status};

const ROOT: &str = "faster-kv:kv";

fn options() -> KvOptions {
    kv_options(4096, 4, 64)
}

fn runtime(dir: &Path) -> Arc<DurableRuntime> {
    Arc::new(DurableRuntime::open(dir, small_options()).unwrap())
}

/// A store of 2000 keys with a checkpoint; returns its store node.
fn build(dir: &Path) -> (NodeId, StoreNode) {
    let rt = runtime(dir);
    let kv = FasterKv::open(rt.clone(), "kv", options()).unwrap();
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..2000u64 {
        s.upsert(&k.to_le_bytes(), &k.to_le_bytes()).unwrap();
    }
    drop(s);
    kv.close().unwrap();
    let id = rt.root(ROOT).unwrap();
    let node = StoreNode::decode(&rt.read(id).unwrap(), ROOT).unwrap();
    Arc::into_inner(rt).unwrap().close().unwrap();
    (id, node)
}

fn fsck(dir: &Path) -> Report {
    fsck_with(&OsStorage::new(), dir, &fsck_options(), &[&FasterKvPlugin]).unwrap()
}

/// `fsck` reports exactly this one problem.
fn assert_fsck_finds(dir: &Path, file: &str, offset: u64, kind: &CorruptionKind) {
    let report = fsck(dir);
    let problems: Vec<_> = report.problems().collect();
    assert_eq!(problems.len(), 1, "{:#?}", report.findings);
    let p = problems[0];
    let got = (p.file.to_str().unwrap(), p.offset, p.corruption());
    assert_eq!(got, (file, offset, Some(kind)));
}

/// Opening fails with exactly this corruption, and `fsck` reports it.
fn assert_refused(dir: &Path, file: &str, offset: u64, kind: CorruptionKind) {
    let e = FasterKv::open(runtime(dir), "kv", options()).unwrap_err();
    let c = e
        .as_corruption()
        .unwrap_or_else(|| panic!("not a corruption: {e:?}"));
    assert_eq!(
        (c.file.to_str().unwrap(), c.offset, &c.kind),
        (file, offset, &kind)
    );
    assert_fsck_finds(dir, file, offset, &kind);
}

#[test]
fn fsck_finds_nothing_in_a_sound_store_and_dump_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, node) = build(dir.path());
    let report = fsck(dir.path());
    assert_eq!(report.problems().count(), 0, "{:#?}", report.findings);
    let insp = load_with(
        &OsStorage::new(),
        dir.path(),
        &fsck_options(),
        &[&FasterKvPlugin],
    )
    .unwrap();
    let dumps = faster_kvs(&insp);
    assert_eq!(dumps.len(), 1);
    let d = &dumps[0];
    let cp = node.checkpoint.unwrap();
    assert!(d.checkpointed);
    assert_eq!(
        (d.version, d.tail, d.prepare_tail),
        (0, cp.tail, cp.prepare_tail)
    );
    assert_eq!(
        (d.buckets, d.chunks, d.pages),
        (64, 1, node.pages.len() as u64)
    );
    // Every key's one record was decoded and its entry checked (2000 keys in 64 buckets: a
    // few tags are shared, so entries are fewer than keys).
    assert_eq!(d.records, 2000);
    assert!(d.entries > 1000 && d.entries <= 2000, "{}", d.entries);
    let root = vellum::inspect::StoreView::roots(&insp)
        .into_iter()
        .find(|r| r.name == ROOT)
        .unwrap();
    let chain = key_chain(&insp, &root, &7u64.to_le_bytes());
    assert_eq!(chain.iter().filter(|r| r.same_key).count(), 1, "{chain:?}");
    assert!(chain.iter().all(|r| r.address < cp.tail && !r.tombstone));
}

#[test]
fn a_damaged_checkpoint_section_is_refused_at_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let (id, node) = build(dir.path());
    let cp = node.checkpoint.unwrap();
    // The section follows the page list; its tail is at 24 within it.
    let at = 24 + 8 * node.pages.len() + 24;
    rewrite_node(dir.path(), id, |b| {
        b[at..at + 8].copy_from_slice(&(cp.tail + 8).to_le_bytes())
    });
    let kind = CorruptionKind::InvalidField {
        field: "tail",
        value: cp.tail + 8,
    };
    assert_refused(dir.path(), ROOT, at as u64, kind);
}

#[test]
fn a_chunk_node_naming_another_chunk_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (_, node) = build(dir.path());
    let chunk = node.checkpoint.unwrap().chunks[0];
    rewrite_node(dir.path(), chunk, |b| b[8] = 3);
    let kind = CorruptionKind::Mismatch {
        what: "chunk index",
        expected: 0,
        actual: 3,
    };
    assert_refused(dir.path(), "faster-kv:kv/chunk/0", 8, kind);
}

#[test]
fn an_index_entry_with_its_reserved_bit_is_refused_at_its_word() {
    let dir = tempfile::tempdir().unwrap();
    let (_, node) = build(dir.path());
    let chunk = node.checkpoint.unwrap().chunks[0];
    let mut word = 0u64;
    rewrite_node(dir.path(), chunk, |b| {
        // Word 0 of the image: bucket 0's first slot (in use: 2000 keys over 64 buckets).
        word = u64::from_le_bytes(b[16..24].try_into().unwrap());
        assert_ne!(word, 0);
        b[23] |= 0x80;
    });
    let kind = CorruptionKind::InvalidField {
        field: "index entry reserved bit",
        value: word | 1 << 63,
    };
    assert_refused(dir.path(), "faster-kv:kv/chunk/0", 16, kind);
}

#[test]
fn a_damaged_page_node_is_refused_by_the_read_that_needs_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_, node) = build(dir.path());
    // Page 1's node: its header's page number.
    rewrite_node(dir.path(), node.pages[1], |b| b[8] ^= 0x40);
    let kv = FasterKv::open(runtime(dir.path()), "kv", options()).unwrap();
    let mut s = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    let mut refused = 0;
    for k in 0..2000u64 {
        match s.read_blocking(&k.to_le_bytes(), &mut out) {
            Ok(status) => assert_eq!(status, Status::Found, "key {k}"),
            Err(e) => {
                let c = e
                    .as_corruption()
                    .unwrap_or_else(|| panic!("key {k}: {e:?}"));
                assert_eq!(c.file.to_str().unwrap(), "faster-kv/kv/page/1", "key {k}");
                refused += 1;
            }
        }
    }
    // Page 1 holds about a hundred records; every key whose chain reaches it is refused.
    assert!(refused >= 50, "{refused}");
    drop(s);
    drop(kv);
    let kind = CorruptionKind::Mismatch {
        what: "page number",
        expected: 1,
        actual: 1 ^ 0x40,
    };
    let report = fsck(dir.path());
    let p: Vec<_> = report.problems().collect();
    assert!(!p.is_empty(), "{:#?}", report.findings);
    assert_eq!(
        p[0].file.to_str().unwrap(),
        "faster-kv/kv/page/1",
        "{:#?}",
        report.findings
    );
    let _ = kind;
}

#[test]
fn a_delta_node_with_a_bucket_past_the_index_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    // A second checkpoint after one update writes a delta node (one chain: under a quarter
    // of the 4 KiB index).
    let rt = runtime(dir.path());
    let kv = FasterKv::open(rt.clone(), "kv", options()).unwrap();
    let mut s = kv.session(AddU64).unwrap();
    s.upsert(&0u64.to_le_bytes(), &[9; 8]).unwrap();
    drop(s);
    kv.close().unwrap();
    let id = rt.root(ROOT).unwrap();
    let node = StoreNode::decode(&rt.read(id).unwrap(), ROOT).unwrap();
    let delta = node.checkpoint.unwrap().deltas[0];
    Arc::into_inner(rt).unwrap().close().unwrap();
    // Its first entry's bucket: 64, past the index's 64 buckets.
    rewrite_node(dir.path(), delta, |b| {
        b[16..24].copy_from_slice(&64u64.to_le_bytes())
    });
    let kind = CorruptionKind::InvalidField {
        field: "delta_bucket",
        value: 64,
    };
    assert_refused(dir.path(), "faster-kv:kv/delta/0", 16, kind);
}
