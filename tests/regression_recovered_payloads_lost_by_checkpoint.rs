//! Regression: acknowledged BALANCED commits were lost after recover → checkpoint → crash.
//!
//! Recovery writes the payloads that BALANCED commits carried in the log back into their slots
//! (RV7). Those writes went around the data-sync generation (only transactions and compaction
//! counted their writes), and recovery rebuilt the generation at zero, so the next checkpoint's
//! data sync (K3) returned at once without syncing anything. The checkpoint then dropped the logs
//! that carried the payloads (K5, K6), and a power loss took the unsynced slot bytes with it:
//! the node read as "... lies outside the data files". Any sequence that checkpoints before
//! anything else writes a data file reaches it: an explicit `checkpoint()`, `vellum compact`
//! (full compaction with nothing to move, then a checkpoint), an idle store's
//! `checkpoint_interval`. The data files now count every change themselves, and recovery makes
//! its write-backs durable before it accepts writes. Each case below failed before the fix.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use vellum::io::{CrashMode, FaultStorage};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitPolicy, CompactionOptions, DurableRuntime, RuntimeOptions};

mod common;

const DIR: &str = "/store";

fn open(fs: &FaultStorage, options: RuntimeOptions) -> DurableRuntime {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options)
        .unwrap_or_else(|e| panic!("open: {e}"))
}

/// The store: one 100-byte node committed under BALANCED, then a power loss, so its
/// only durable copy is the payload in the log.
fn one_balanced_node(options: &RuntimeOptions) -> (FaultStorage, NodeId, Vec<u8>) {
    let fs = common::fault_storage(7, DIR);
    let rt = open(&fs, options.clone());
    let bytes: Vec<u8> = (0..100u8).collect();
    let mut tx = rt.begin();
    let id = tx.alloc(1, &bytes).unwrap();
    tx.commit_with(CommitPolicy::Balanced).unwrap();
    let fs = fs.crash_with(CrashMode::DropUnsynced);
    drop(rt);
    (fs, id, bytes)
}

/// After the step, a second power loss, then the node must read back exactly.
fn survives(
    rt: DurableRuntime,
    fs: FaultStorage,
    options: &RuntimeOptions,
    id: NodeId,
    bytes: &[u8],
    what: &str,
) {
    let fs = fs.crash_with(CrashMode::DropUnsynced);
    drop(rt);
    let rt = open(&fs, options.clone());
    assert_eq!(
        rt.read(id).unwrap_or_else(|e| panic!("{what}: {e}")),
        bytes,
        "{what}"
    );
    assert_eq!(rt.node_ids(), vec![id], "{what}");
    rt.verify()
        .unwrap_or_else(|e| panic!("{what}: verify: {e}"));
}

#[test]
fn recover_then_checkpoint_keeps_the_balanced_payload() {
    let options = common::small_deterministic_options();
    let (fs, id, bytes) = one_balanced_node(&options);
    let rt = open(&fs, options.clone());
    assert_eq!(rt.recovery_report().payloads_written_back, 1);
    rt.checkpoint().unwrap();
    survives(rt, fs, &options, id, &bytes, "recover, checkpoint, crash");
}

#[test]
fn recover_then_full_compaction_then_checkpoint_keeps_it() {
    // What `vellum compact` does: a full pass (nothing to move here), then a checkpoint.
    let options = common::small_deterministic_options();
    let (fs, id, bytes) = one_balanced_node(&options);
    let rt = open(&fs, options.clone());
    let report = rt
        .compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    assert_eq!(report.nodes_moved, 0);
    rt.checkpoint().unwrap();
    survives(
        rt,
        fs,
        &options,
        id,
        &bytes,
        "recover, compact, checkpoint, crash",
    );
}

#[test]
fn recover_then_an_idle_interval_checkpoint_keeps_it() {
    let mut options = common::small_deterministic_options();
    options.eventual_flush_interval = Duration::from_millis(5);
    options.checkpoint_interval = Some(Duration::from_millis(20));
    let (fs, id, bytes) = one_balanced_node(&options);
    let rt = open(&fs, options.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while rt.stats().checkpoints == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    survives(
        rt,
        fs,
        &options,
        id,
        &bytes,
        "recover, idle checkpoint, crash",
    );
}

#[test]
fn recovery_makes_its_write_backs_durable_before_it_returns() {
    // No checkpoint at all: the write-back itself is synced by the open (RV7), so after a power
    // loss right after the open the slot holds the bytes, whatever the log still carries.
    let options = common::small_deterministic_options();
    let (fs, _, bytes) = one_balanced_node(&options);
    assert!(
        !data_files_hold(&fs, &bytes),
        "before recovery only the log has them"
    );
    let rt = open(&fs, options.clone());
    assert_eq!(rt.recovery_report().payloads_written_back, 1);
    let crashed = fs.crash_with(CrashMode::DropUnsynced);
    drop(rt);
    assert!(
        data_files_hold(&crashed, &bytes),
        "the write-back was durable"
    );
}

/// True if some data file of the store holds `bytes` at an 8-aligned offset.
fn data_files_hold(fs: &FaultStorage, bytes: &[u8]) -> bool {
    use vellum::io::Storage;
    let dir = Path::new(DIR);
    fs.list(dir)
        .unwrap()
        .iter()
        .filter(|n| n.starts_with("data-"))
        .any(|n| {
            let f = fs.open_read_only(&dir.join(n)).unwrap();
            let mut all = vec![0u8; f.len().unwrap() as usize];
            let read = f.read_at(&mut all, 0).unwrap();
            all[..read]
                .chunks(8)
                .enumerate()
                .any(|(i, _)| all[i * 8..].starts_with(bytes))
        })
}
