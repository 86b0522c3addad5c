//! `vellum compact DIR` against a real store: it moves the live nodes of sparse segments, prints
//! the before/after space, leaves every node's bytes exact, and refuses a store a process has open.

use std::process::Command;

use vellum::NodeId;
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

fn options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    };
    o.compaction.interval = None;
    o
}

/// 30 000 nodes of 128 bytes, of which every tenth stays live.
fn sparse_store(dir: &std::path::Path) -> Vec<(NodeId, Vec<u8>)> {
    let rt = DurableRuntime::open(dir, options()).unwrap();
    let mut all = Vec::new();
    for round in 0..30u64 {
        let mut tx = rt.begin();
        for i in 0..1000u64 {
            let bytes = vec![(round * 7 + i) as u8; 128];
            all.push((tx.alloc(1, &bytes).unwrap(), bytes));
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
    }
    let mut live = Vec::new();
    for chunk in all.chunks(1000) {
        let mut tx = rt.begin();
        for (i, (id, bytes)) in chunk.iter().cloned().enumerate() {
            if i % 10 == 0 {
                live.push((id, bytes));
            } else {
                tx.retire(id).unwrap();
            }
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
    }
    rt.close().unwrap();
    live
}

#[test]
fn compacts_a_closed_store_and_keeps_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let live = sparse_store(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .arg("compact")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 30 000 slots of 128 B fill four 1 MiB segments (8192 slots each); the 3000 live nodes fit
    // in one, so the densest stays and the other three are emptied and returned.
    assert!(
        stdout.contains("out of 3 segments, returned 3 segments"),
        "{stdout}"
    );
    assert!(stdout.contains("data files:"), "{stdout}");

    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    for (id, bytes) in &live {
        assert_eq!(&rt.read(*id).unwrap(), bytes, "node {id}");
    }
    assert_eq!(rt.verify().unwrap().0, live.len() as u64);
    let used: Vec<u32> = rt.segment_usage(3).iter().map(|u| u.used_slots).collect();
    assert_eq!(used.iter().filter(|&&u| u > 0).count(), 1, "{used:?}");
}

#[test]
fn refuses_a_store_another_process_has_open() {
    let dir = tempfile::tempdir().unwrap();
    let _rt = DurableRuntime::open(dir.path(), options()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .arg("compact")
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("locked"), "{stderr}");
}

#[test]
fn refuses_a_directory_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .arg("compact")
        .arg(&missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(!missing.exists(), "compact must not create a store");
}
