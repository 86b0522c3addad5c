//! Crash tests of checkpoint writing through the fault-injecting storage: stop the storage after
//! every operation in turn, resolve the power loss every way the storage allows, and check that
//! the final name either does not exist or holds the complete checkpoint.

use std::path::{Path, PathBuf};

use vellum::Error;
use vellum::alloc::{Location, SLOT_BYTES_MIN};
use vellum::checkpoint::{
    CheckpointEntry, CheckpointInfo, CheckpointWriter, checkpoint_file_name, read_checkpoint,
};
use vellum::io::{CrashMode, FaultStorage, Storage};
use vellum::object_table::{NodeId, Version};

const SEQ: u64 = 3;
const EPOCH: u64 = 50;
/// Two blocks: a full one written by `push`, and a partial one written by `finish`.
const ENTRIES: u64 = 5_000;

mod common;

fn dir() -> &'static Path {
    Path::new("/db")
}

fn final_path() -> PathBuf {
    dir().join(checkpoint_file_name(SEQ))
}

fn tmp_path() -> PathBuf {
    dir().join(format!("{}.tmp", checkpoint_file_name(SEQ)))
}

fn modes() -> Vec<CrashMode> {
    common::all_crash_modes()
}

fn fresh(seed: u64) -> FaultStorage {
    common::fault_storage_sized(seed, dir(), 1 << 20)
}

fn entries() -> Vec<CheckpointEntry> {
    let mut all: Vec<_> = (1..=ENTRIES)
        .map(|i| CheckpointEntry {
            id: NodeId::new((i % 64) as usize, i, 1).unwrap(),
            version: Version {
                // Class 0, so a length of up to its slot.
                location: Location::unpack(i * 3).unwrap(),
                len: (i % (SLOT_BYTES_MIN + 1)) as u32,
                crc32c: i as u32,
                kind: 1,
                birth: i % EPOCH,
            },
        })
        .collect();
    all.sort_by_key(|e| e.id);
    all
}

fn write_all(storage: &dyn Storage, all: &[CheckpointEntry]) -> Result<CheckpointInfo, Error> {
    let mut w = CheckpointWriter::create(storage, dir(), SEQ, EPOCH)?;
    for e in all {
        w.push(*e)?;
    }
    w.finish()
}

/// The checkpoint at the final name, read against the expectations of a clean write.
fn read_back(storage: &dyn Storage, reference: &CheckpointInfo) -> Vec<CheckpointEntry> {
    let mut seen = Vec::new();
    read_checkpoint(storage, &final_path(), Some(&reference.expect()), |e| {
        seen.push(e);
        Ok(())
    })
    .unwrap_or_else(|e| panic!("the final name holds a bad checkpoint: {e}"));
    seen
}

#[test]
fn crash_after_every_operation_leaves_nothing_or_the_whole_checkpoint() {
    let all = entries();
    let clean = fresh(0);
    let start = clean.op_count();
    let reference = write_all(&clean, &all).unwrap();
    let ops = clean.op_count() - start;
    assert!(
        ops >= 10,
        "expected at least 10 storage operations, got {ops}"
    );

    for k in 0..=ops {
        for mode in modes() {
            let fs = fresh(k);
            fs.crash_after(k);
            let result = write_all(&fs, &all);
            if k == ops {
                assert_eq!(result.as_ref().ok(), Some(&reference), "k={k}");
            } else {
                assert!(
                    result.is_err(),
                    "k={k}: finish returned Ok before its last operation"
                );
            }
            let after = fs.crash_with(mode);
            if after.exists(&final_path()).unwrap() {
                assert_eq!(read_back(&after, &reference), all, "k={k} {mode:?}");
            } else {
                assert!(
                    result.is_err(),
                    "k={k} {mode:?}: finish returned Ok, file is gone"
                );
                // Recovery may then start over with the same seq: a leftover tmp is removed.
                assert_eq!(
                    write_all(&after, &all).unwrap(),
                    reference,
                    "k={k} {mode:?}"
                );
                assert_eq!(read_back(&after, &reference), all);
            }
            // Either the rename moved the tmp file, or the retry removed it.
            assert!(!after.exists(&tmp_path()).unwrap(), "k={k} {mode:?}");
        }
    }
}

#[test]
fn a_failed_operation_leaves_nothing_or_the_whole_checkpoint() {
    let all = entries();
    let clean = fresh(0);
    let start = clean.op_count();
    let reference = write_all(&clean, &all).unwrap();
    let ops = clean.op_count() - start;
    for n in 1..=ops {
        let fs = fresh(n);
        fs.fail_nth(n);
        let result = write_all(&fs, &all);
        assert!(result.is_err(), "n={n}: the failure was not reported");
        if fs.exists(&final_path()).unwrap() {
            // Only the directory sync comes after the rename.
            assert_eq!(n, ops);
            assert_eq!(read_back(&fs, &reference), all);
        }
        for mode in modes() {
            let after = fs.crash_with(mode);
            if after.exists(&final_path()).unwrap() {
                assert_eq!(read_back(&after, &reference), all, "n={n} {mode:?}");
            }
        }
    }
}
