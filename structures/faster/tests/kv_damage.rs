//! A FasterKV store whose checkpoint is damaged refuses to open with the corruption's file,
//! offset and kind, and never panics: the store node's checkpoint section, an index chunk node
//! (its header, and an entry word of its image) and a page node below the checkpoint's tail
//! (refused when a read needs it). Each case damages one node of a fresh store through the
//! runtime, so the node's own checksum is right and only FasterKV's checks can tell.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{kv_options, small_options};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{CorruptionKind, NodeId};
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

/// Replaces node `id`'s bytes with `damage` of them, in a STRICT commit.
fn rewrite(dir: &Path, id: NodeId, damage: impl FnOnce(&mut Vec<u8>)) {
    let rt = DurableRuntime::open(dir, small_options()).unwrap();
    let mut bytes = rt.read(id).unwrap();
    damage(&mut bytes);
    let mut tx = rt.begin();
    tx.write(id, &bytes).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.close().unwrap();
}

/// Opening fails with exactly this corruption.
fn assert_refused(dir: &Path, file: &str, offset: u64, kind: CorruptionKind) {
    let e = FasterKv::open(runtime(dir), "kv", options()).unwrap_err();
    let c = e
        .as_corruption()
        .unwrap_or_else(|| panic!("not a corruption: {e:?}"));
    assert_eq!(
        (c.file.to_str().unwrap(), c.offset, &c.kind),
        (file, offset, &kind)
    );
}

#[test]
fn a_damaged_checkpoint_section_is_refused_at_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let (id, node) = build(dir.path());
    let cp = node.checkpoint.unwrap();
    // The section follows the page list; its tail is at 24 within it.
    let at = 24 + 8 * node.pages.len() + 24;
    rewrite(dir.path(), id, |b| {
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
    rewrite(dir.path(), chunk, |b| b[8] = 3);
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
    rewrite(dir.path(), chunk, |b| {
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
    rewrite(dir.path(), node.pages[1], |b| b[8] ^= 0x40);
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
}
