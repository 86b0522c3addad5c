//! A FasterKV store that never checkpointed and whose handle never closed (the process
//! crashed) leaves no page node behind:
//! its root names a store node listing every page node, and the next open retires them all
//! before writing anything.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::{kv_options, small_options};
use vellum::io::{FaultStorage, Storage};
use vellum::runtime::DurableRuntime;
use vellum_faster::kv::store_node::StoreNode;
use vellum_faster::kv::{AddU64, FasterKv, KV_ROOT_PREFIX, Status};

const DIR: &str = "/kv";

fn runtime(fs: &FaultStorage) -> Arc<DurableRuntime> {
    Arc::new(
        DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), small_options()).unwrap(),
    )
}

#[test]
fn a_store_left_open_by_a_crash_is_discarded_by_the_next_open() {
    let fs = FaultStorage::new(3);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let rt = runtime(&fs);
    let kv = FasterKv::open(rt.clone(), "s", kv_options(4096, 2, 64)).unwrap();
    let mut session = kv.session(AddU64).unwrap();
    for k in 0..2000u64 {
        session.upsert(&k.to_le_bytes(), &k.to_le_bytes()).unwrap();
    }
    drop(session);
    assert!(kv.stats().pages_flushed >= 10, "{:?}", kv.stats());
    // Everything the flusher committed so far is durable; then the machine stops.
    rt.sync().unwrap();
    let crashed = fs.crash();
    drop(kv); // its close fails on the crashed storage (and is logged)
    drop(rt);

    let rt = runtime(&crashed);
    let root = format!("{KV_ROOT_PREFIX}s");
    let store = rt.root(&root).expect("the store node survives the crash");
    let listed = StoreNode::decode(&rt.read(store).unwrap(), &root).unwrap();
    assert!(listed.pages.len() >= 10);
    // Every node the runtime holds is the store node or a page it lists: nothing unreachable.
    let mut ids = rt.node_ids();
    ids.sort();
    let mut expected = listed.pages.clone();
    expected.push(store);
    expected.sort();
    assert_eq!(ids, expected);

    let kv = FasterKv::open(rt.clone(), "s", kv_options(4096, 2, 64)).unwrap();
    assert_eq!(rt.root(&root), None);
    assert_eq!(rt.node_ids(), Vec::new());
    // The new store starts empty and works.
    let mut session = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        session.read(&1u64.to_le_bytes(), &mut out).unwrap(),
        Status::NotFound
    );
    for k in 0..2000u64 {
        session
            .upsert(&k.to_le_bytes(), &(k + 1).to_le_bytes())
            .unwrap();
    }
    assert_eq!(
        session
            .read_blocking(&0u64.to_le_bytes(), &mut out)
            .unwrap(),
        Status::Found
    );
    assert_eq!(out, 1u64.to_le_bytes());
    drop(session);
    kv.destroy().unwrap();
    assert_eq!(rt.node_ids(), Vec::new());
    assert_eq!(rt.root(&root), None);
}
