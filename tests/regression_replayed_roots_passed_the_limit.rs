//! Regression: recovery replayed root changes logged since the checkpoint on top of the newer
//! superblock's roots, and a name set and later removed could push the catalog past 64 roots for
//! a moment; replay enforced the limit on every change and the store could not be opened. Found
//! by review: 63 roots, then set and remove one name and set another, crash inside the next
//! checkpoint. Replay now applies changes to a plain map and checks only the final catalog.

use std::path::Path;
use std::sync::Arc;
use vellum::io::{CrashMode, FaultConfig, FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

mod common;

fn opts() -> RuntimeOptions {
    let mut o = common::small_deterministic_options();
    o.policy = CommitPolicy::Strict;
    o
}

#[test]
fn replay_of_root_changes_over_newer_superblock_roots_overflows() {
    // Find a crash point inside a checkpoint after K1 published the superblock (epoch S) but
    // before K5 published the checkpoint.
    let mut failures = 0;
    for crash_at in 1..200u64 {
        let fs = FaultStorage::with_config(FaultConfig {
            seed: 1,
            file_bytes_max: 64 << 20,
            space_bytes_max: None,
        });
        fs.create_dir_all(Path::new("/s")).unwrap();
        let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new("/s"), opts()).unwrap();
        let mut t = rt.begin();
        let n = t.alloc(1, b"node").unwrap();
        for i in 0..63 {
            t.set_root(&format!("r{i}"), n).unwrap();
        }
        t.commit().unwrap();
        rt.checkpoint().unwrap(); // C
        let mut t = rt.begin();
        t.set_root("y", n).unwrap();
        t.commit().unwrap();
        let mut t = rt.begin();
        t.remove_root("y").unwrap();
        t.commit().unwrap();
        let mut t = rt.begin();
        t.set_root("b", n).unwrap();
        t.commit().unwrap();
        fs.crash_after(crash_at);
        let r = rt.checkpoint();
        std::mem::forget(rt); // process dies
        let img = fs.crash_with(CrashMode::DropUnsynced);
        match DurableRuntime::open_with(Arc::new(img), Path::new("/s"), opts()) {
            Ok(rt2) => {
                assert!(rt2.root("b").is_some());
                if r.is_ok() {
                    break;
                }
                std::mem::forget(rt2);
            }
            Err(e) => {
                eprintln!(
                    "crash_at {crash_at}: checkpoint -> {:?}; reopen FAILED: {e}",
                    r.err()
                );
                failures += 1;
            }
        }
    }
    assert_eq!(failures, 0);
}
