//! Regression: a checkpoint that rewrote the store node between a page flush's commit and the
//! flusher's noting of the page in its list left that page node unlisted by the root (a crash
//! then leaked it for good: nothing retires a node no store node lists). The flusher now notes
//! the page before it lets go of the store node's lock. A writer flushes 4 KiB pages without
//! pause while checkpoints are taken back to back; whenever both pause, every page node the
//! runtime holds is one the store node lists.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};

use common::{env_u64, kv_options};
use vellum::NodeId;
use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::kv::store_node::StoreNode;
use vellum_faster::kv::{AddU64, FasterKv};

#[test]
fn every_page_node_stays_listed_while_checkpoints_race_the_flusher() {
    let rounds = env_u64("VELLUM_KV_LISTED_ROUNDS", 8);
    let dir = tempfile::tempdir().unwrap();
    let o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    let rt = Arc::new(DurableRuntime::open(dir.path(), o).unwrap());
    let kv = FasterKv::open(rt.clone(), "kv", kv_options(4096, 4, 1024)).unwrap();
    for round in 0..rounds {
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut session = kv.session(AddU64).unwrap();
                let mut i = 0u64;
                while !stop.load(SeqCst) {
                    session
                        .upsert(&(i % 20_000).to_le_bytes(), &i.to_le_bytes())
                        .unwrap();
                    i += 1;
                }
            });
            for c in 0..20 {
                kv.checkpoint().unwrap();
                // Right after the checkpoint's store node: the live nodes first, then the
                // store node (a flush between them lists its page in both).
                assert_listed(&rt, &format!("round {round} checkpoint {c}"));
            }
            stop.store(true, SeqCst);
        });
    }
}

/// Every live node of the runtime is the store node or one it lists.
fn assert_listed(rt: &DurableRuntime, ctx: &str) {
    let live: BTreeSet<NodeId> = rt.node_ids().into_iter().collect();
    let id = rt.root("faster-kv:kv").unwrap();
    let node = StoreNode::decode(&rt.read(id).unwrap(), "faster-kv:kv").unwrap();
    let cp = node.checkpoint.clone().unwrap();
    let mut listed: BTreeSet<NodeId> = node.pages.iter().copied().collect();
    listed.extend(cp.chunks.iter().chain(&cp.deltas));
    listed.insert(id);
    let unlisted: Vec<_> = live.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "{ctx}: nodes no store node lists: {unlisted:?}"
    );
}
