//! Direct-I/O appends (`LogOptions::direct_io`): the log's file holds exactly the bytes buffered
//! appends give it, whatever the frames' sizes and however they straddle the 512-byte blocks a
//! direct write-out rewrites, through a recycled spare too; and the writes themselves are whole
//! aligned blocks (the fault storage refuses anything else, as the kernel does, and the crash
//! sweeps of `tests/delta_log_crash.rs` and the runtime run on it with direct appends on).

use std::path::Path;
use std::sync::Arc;

use vellum::io::{FaultStorage, OsStorage, Storage};
use vellum::log::{DeltaLog, LogOptions, log_file_name, replay, retire_log};

mod common;

use common::body;

/// Frame bodies of sizes that end anywhere in a block: 1 byte up to a few blocks.
fn sizes() -> Vec<usize> {
    (0..60).map(|i| 1 + (i * 211) % 1500).collect()
}

/// Writes logs 1 (closed, retired into the spare) and 2 (recycled from it) in `dir` with
/// `direct_io`, syncing after every few appends; returns the bytes of log 2 and of the spare's
/// log before it was retired.
fn write_logs(storage: Arc<dyn Storage>, dir: &Path, direct_io: bool) -> (Vec<u8>, Vec<u8>) {
    storage.create_dir_all(dir).unwrap();
    let options = LogOptions {
        direct_io,
        ..LogOptions::default()
    };
    let log = DeltaLog::create(Arc::clone(&storage), dir, 1, 0, options).unwrap();
    for (i, &len) in sizes().iter().enumerate() {
        log.append(&body(i as u64, len)).unwrap();
        if i % 3 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    let log1 = storage
        .open(&dir.join(log_file_name(1)))
        .unwrap()
        .read_all()
        .unwrap();
    log.rotate(2, 60).unwrap();
    retire_log(storage.as_ref(), dir, 1).unwrap();
    log.rotate(3, 60).unwrap();
    for (i, &len) in sizes().iter().rev().enumerate() {
        log.append(&body(1000 + i as u64, len)).unwrap();
        if i % 2 == 0 {
            log.sync().unwrap();
        }
    }
    log.sync().unwrap();
    drop(log);
    let log3 = storage
        .open(&dir.join(log_file_name(3)))
        .unwrap()
        .read_all()
        .unwrap();
    (log3, log1)
}

#[test]
fn direct_and_buffered_appends_leave_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let os: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let (direct3, direct1) = write_logs(Arc::clone(&os), &dir.path().join("direct"), true);
    let (buffered3, buffered1) = write_logs(os, &dir.path().join("buffered"), false);
    assert_eq!(direct1.len(), buffered1.len());
    assert!(direct1 == buffered1, "log 1 differs");
    assert_eq!(direct3.len(), buffered3.len());
    assert!(direct3 == buffered3, "log 3 (recycled) differs");
}

#[test]
fn direct_appends_on_the_fault_storage_are_whole_blocks_and_replay() {
    let fs = FaultStorage::new(7);
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let dir = Path::new("/d");
    // Any misaligned direct write would fail the appends here (the fault storage checks).
    let (log3, _) = write_logs(Arc::clone(&storage), dir, true);
    let mut bodies = Vec::new();
    let summary = replay(storage.as_ref(), &dir.join(log_file_name(3)), |f| {
        bodies.push(f.body.clone());
        Ok(())
    })
    .unwrap();
    let expected: Vec<Vec<u8>> = sizes()
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &len)| body(1000 + i as u64, len))
        .collect();
    assert_eq!(bodies, expected);
    assert!(summary.valid_end <= log3.len() as u64);
}
