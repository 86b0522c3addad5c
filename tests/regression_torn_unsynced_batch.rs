//! Regression: recovery refused a store whose log ended in a torn, never-synced batch.
//!
//! EVENTUAL flushes append several records and then sync once. A power loss before that sync
//! can keep any subset of the unsynced sectors, so an earlier record can be torn while a later
//! one survives whole. Recovery took "an intact frame after a bad one" for damage to synced data
//! and refused to open — found by the long crash sweep (seed 37, k 34). The two cases look the
//! same on disk; recovery now cuts the open log at the first bad frame, logs it, and reports it in
//! `RuntimeStats`, while the check against the superblock's epoch still refuses to lose anything
//! a checkpoint made durable. The test builds that state directly: one bad byte in the middle of
//! a record, the records after it intact, and no seal (a clean close seals the log, claiming
//! every frame durable; a crash before the batch's sync leaves none). Since log format 2 the
//! frames past the bad one claim only the STRICT record durable, which is what tells this torn
//! batch from damage to durable frames (`tests/regression_mid_log_damage_was_cut.rs`).

use std::path::Path;
use std::sync::Arc;

use vellum::io::{FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

mod common;

fn options() -> RuntimeOptions {
    common::small_deterministic_options()
}

fn storage(seed: u64) -> FaultStorage {
    common::fault_storage(seed, "/s")
}

#[test]
fn a_bad_record_followed_by_intact_ones_is_cut_not_refused() {
    // Build the state a torn unsynced batch leaves, deterministically: a log whose third frame
    // has a bad byte in its middle while the frames after it are whole.
    let fs = storage(5);
    let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new("/s"), options()).unwrap();
    let mut tx = rt.begin();
    let base = tx.alloc(0, b"durable").unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let mut batch = Vec::new();
    for i in 0..6u8 {
        let mut tx = rt.begin();
        batch.push(tx.alloc(0, &[i; 3000]).unwrap());
        tx.commit_with(CommitPolicy::Eventual).unwrap();
    }
    rt.close().unwrap();

    let log = Path::new("/s").join(vellum::log::log_file_name(1));
    let mut frames = Vec::new();
    vellum::log::replay(&fs, &log, |f| {
        frames.push((f.offset, f.end()));
        Ok(())
    })
    .unwrap();
    assert_eq!(frames.len(), 7, "one STRICT record and six EVENTUAL ones");
    let (bad_start, bad_end) = frames[2];
    let file = fs.open(&log).unwrap();
    let middle = (bad_start + bad_end) / 2;
    let mut byte = [0u8; 1];
    file.read_at(&mut byte, middle).unwrap();
    file.write_at(&[byte[0] ^ 0x40], middle).unwrap();
    // The batch was never synced, so no seal follows it.
    let end = frames.last().unwrap().1;
    file.write_at(&[0u8; vellum::log::SEAL_BYTES], end).unwrap();
    file.sync_data().unwrap();
    drop(file);

    let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new("/s"), options())
        .unwrap_or_else(|e| panic!("recovery refused a store it can open: {e}"));
    let stats = rt.stats();
    assert_eq!(
        stats.recovery_tail_cut_offset, bad_start,
        "cut exactly at the bad frame"
    );
    assert!(
        stats.recovery_tail_cut_followed_by_valid,
        "and reported that intact frames followed"
    );
    // Exactly the prefix before the bad record: the STRICT commit and the first EVENTUAL one.
    assert_eq!(rt.visible_epoch(), 2);
    assert_eq!(rt.read(base).unwrap(), b"durable");
    assert_eq!(rt.read(batch[0]).unwrap(), vec![0u8; 3000]);
    assert_eq!(rt.node_ids().len(), 2);
    rt.verify().unwrap();
}
