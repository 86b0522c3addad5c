//! Regression: a crash during a checkpoint left a file no manifest named, and the next
//! checkpoint failed.
//!
//! A checkpoint rotates the delta log (creating `log-N`) and later writes `ot-M.ckpt`; each is
//! named by a manifest only in a later step. A crash between creating the file and publishing the
//! manifest left the file behind. Recovery ignored it, so the next checkpoint tried to create the
//! same name and failed with "already exists" — found by the crash sweep. Recovery now removes
//! logs and checkpoints the manifest in force does not name (they hold no acknowledged commit).

use std::path::Path;
use std::sync::Arc;

use vellum::io::{CrashMode, FaultStorage, Storage};
use vellum::runtime::{DurableRuntime, RuntimeOptions};

mod common;

fn options() -> RuntimeOptions {
    common::small_deterministic_options()
}

fn storage(seed: u64) -> FaultStorage {
    common::fault_storage(seed, "/s")
}

fn open(fs: &FaultStorage) -> DurableRuntime {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new("/s"), options()).unwrap()
}

#[test]
fn a_checkpoint_after_a_crashed_checkpoint_succeeds() {
    // Find the crash points of one checkpoint, then crash at each and checkpoint again.
    let probe = storage(1);
    let rt = open(&probe);
    let mut tx = rt.begin();
    tx.alloc(0, b"x").unwrap();
    tx.commit().unwrap();
    let before = probe.op_count();
    rt.checkpoint().unwrap();
    let ops = probe.op_count() - before;
    drop(rt);
    assert!(
        ops > 5,
        "a checkpoint takes several storage operations ({ops})"
    );

    for k in 0..ops {
        let fs = storage(2);
        let rt = open(&fs);
        let mut tx = rt.begin();
        let id = tx.alloc(0, b"kept").unwrap();
        tx.commit().unwrap();
        fs.crash_after(k);
        let _ = rt.checkpoint();
        drop(rt);
        let fs = fs.crash_with(CrashMode::KeepUnsynced);
        let rt = open(&fs);
        rt.checkpoint()
            .unwrap_or_else(|e| panic!("k {k}: checkpoint after a crashed one: {e}"));
        assert_eq!(rt.read(id).unwrap(), b"kept", "k {k}");
        // Exactly one log (beside the spare) and at most one checkpoint remain: the orphans are
        // gone.
        let names = fs.list(Path::new("/s")).unwrap();
        let logs = names
            .iter()
            .filter(|n| n.ends_with(".vlog") && *n != "log-spare.vlog")
            .count();
        let ckpts = names.iter().filter(|n| n.ends_with(".ckpt")).count();
        assert_eq!((logs, ckpts), (1, 1), "k {k}: {names:?}");
    }
}
