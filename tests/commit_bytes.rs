//! What a commit of small updates costs in bytes, exactly (store format 3, record format 2;
//! `design/FORMAT.md` §5 and §6): a 16-byte node owns 16 bytes of its data file, a commit
//! group's new versions take the slots side by side, and so each version op after the first
//! stores its location as the one-byte delta 0.
//!
//! In a fresh store the allocator fills class 0's first segment from offset 0 upwards
//! (`alloc/segments.rs`, invariant 2), so every location below is known in advance.

use vellum::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime};

mod common;

const NODES: usize = 200;
const BATCH: usize = 100;
/// Record header bytes.
const HEADER: u64 = 24;
/// A version op of a 16-byte node whose slot follows the previous version's: code, node_id,
/// kind, flags, location delta 0 (one byte), len 16 (one byte), then the payload (BALANCED) or
/// the CRC32C (STRICT).
const OP_WITH_PAYLOAD: u64 = 1 + 8 + 1 + 1 + 1 + 1 + 16;
const OP_WITHOUT_PAYLOAD: u64 = 1 + 8 + 1 + 1 + 1 + 1 + 4;

fn load(rt: &DurableRuntime) -> Vec<NodeId> {
    let mut tx = rt.begin();
    let ids = (0..NODES)
        .map(|i| tx.alloc(1, &[i as u8; 16]).unwrap())
        .collect();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    ids
}

/// Rewrites the first `BATCH` nodes with `fill` under `policy`; returns the record's bytes.
fn rewrite(rt: &DurableRuntime, ids: &[NodeId], fill: u8, policy: CommitPolicy) -> u64 {
    let before = rt.stats().log_bytes_appended;
    let mut tx = rt.begin();
    for &id in &ids[..BATCH] {
        tx.write(id, &[fill; 16]).unwrap();
    }
    tx.commit_with(policy).unwrap();
    rt.stats().log_bytes_appended - before
}

#[test]
fn a_16_byte_update_owns_16_bytes_and_29_record_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = DurableRuntime::open(dir.path(), common::small_deterministic_options()).unwrap();
    let ids = load(&rt);
    assert_eq!(rt.class_space(0).used_bytes, 16 * NODES as u64);
    assert_eq!(rt.class_space(0).used_slots, NODES as u64);

    // The first new version is at offset 3200 (after the 200 loaded slots): location word
    // 3200 / 16 = 200, zigzagged 400, a two-byte varint; the 99 after it each follow the last.
    let first_extra = 1;
    let balanced = rewrite(&rt, &ids, 0xb0, CommitPolicy::Balanced);
    assert_eq!(
        balanced,
        HEADER + first_extra + BATCH as u64 * OP_WITH_PAYLOAD
    );
    assert_eq!(balanced, 2925);

    // The next 100 versions follow at 4800: word 300, zigzagged 600, also two bytes.
    let strict = rewrite(&rt, &ids, 0x5e, CommitPolicy::Strict);
    assert_eq!(
        strict,
        HEADER + first_extra + BATCH as u64 * OP_WITHOUT_PAYLOAD
    );
    assert_eq!(strict, 1725);

    rt.close().unwrap();
    // Reopened, the allocator is rebuilt from the live versions alone: each node owns one
    // 16-byte slot, and reads its last bytes.
    let rt = DurableRuntime::open(dir.path(), common::small_deterministic_options()).unwrap();
    assert_eq!(rt.class_space(0).used_bytes, 16 * NODES as u64);
    for (i, &id) in ids.iter().enumerate() {
        let want = if i < BATCH { 0x5e } else { i as u8 };
        assert_eq!(rt.read(id).unwrap(), [want; 16], "node {i}");
    }
    rt.close().unwrap();
}
