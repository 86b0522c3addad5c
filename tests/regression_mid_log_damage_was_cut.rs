//! Regression: damage inside the delta log was cut like a torn tail, losing acknowledged commits.
//!
//! Replay stopped at the first frame that did not decode and recovery cut the log there, with
//! only a warning when valid frames followed; a zero length field even ended replay silently. So
//! 2 000 acknowledged BALANCED commits, a clean close and one flipped bit at log offset 364 gave
//! an open that returned `Ok` with 1 of 2 000 nodes, a passing `verify()`, `fsck` exiting 0, and
//! a log cut from 16 MiB to 336 bytes, destroying the evidence. Since log format 2 every frame
//! carries the durable position its writer knew, and a clean close seals the log: a valid frame
//! (or the seal) past a bad one proves the bad one was synced. Such damage fails the open with a
//! structured `Corruption` and leaves the log alone; `fsck` reports it as a problem; an explicit
//! `RecoveryMode::TruncateDamagedLog` cuts it and reports exactly what it dropped.

use std::path::{Path, PathBuf};

use vellum::inspect::{FindingKind, FsckOptions, Severity, fsck};
use vellum::io::OsStorage;
use vellum::log::log_file_name;
use vellum::object_table::NodeId;
use vellum::runtime::{
    CommitPolicy, DurableRuntime, LogTail, RecoveryMode, RecoveryReport, RuntimeOptions,
};
use vellum::{CorruptionKind, Error};

const COMMITS: usize = 2000;

fn options() -> RuntimeOptions {
    RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    }
}

/// `COMMITS` acknowledged BALANCED commits of one 100-byte node each, then a clean close.
fn store(dir: &Path) -> Vec<(NodeId, Vec<u8>)> {
    let rt = DurableRuntime::open(dir, options()).unwrap();
    let mut nodes = Vec::new();
    for i in 0..COMMITS {
        let bytes = vec![(i % 251) as u8; 100];
        let mut tx = rt.begin();
        let id = tx.alloc(1, &bytes).unwrap();
        tx.commit_with(CommitPolicy::Balanced).unwrap();
        nodes.push((id, bytes));
    }
    rt.close().unwrap();
    nodes
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join(log_file_name(1))
}

/// The file offset of the frame holding byte `at` (frames in file order).
fn frame_holding(dir: &Path, at: u64) -> u64 {
    let mut start = 0;
    vellum::log::replay(&OsStorage::new(), &log_path(dir), |f| {
        if f.offset <= at && at < f.end() {
            start = f.offset;
        }
        Ok(())
    })
    .unwrap();
    assert!(start > 0, "byte {at} lies in a frame");
    start
}

fn edit_log(dir: &Path, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut bytes = std::fs::read(log_path(dir)).unwrap();
    edit(&mut bytes);
    std::fs::write(log_path(dir), &bytes).unwrap();
    bytes
}

fn open_err(dir: &Path) -> Error {
    DurableRuntime::open(dir, options()).expect_err("recovery must refuse damaged durable frames")
}

#[test]
fn a_flipped_bit_in_an_acknowledged_frame_fails_the_open_and_keeps_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = store(dir.path());
    let bad = frame_holding(dir.path(), 364);
    let damaged = edit_log(dir.path(), |b| b[364] ^= 1);

    let err = open_err(dir.path());
    let c = err.as_corruption().expect("a structured corruption");
    assert_eq!((c.file.clone(), c.offset), (log_path(dir.path()), bad));
    assert!(
        matches!(c.kind, CorruptionKind::ChecksumMismatch { .. }),
        "{:?}",
        c.kind
    );
    assert_eq!(
        std::fs::read(log_path(dir.path())).unwrap(),
        damaged,
        "the evidence is left as it was"
    );

    // fsck names it as a problem.
    let report = fsck(&OsStorage::new(), dir.path(), &FsckOptions::default()).unwrap();
    let found: Vec<_> = report
        .findings
        .iter()
        .filter(|f| matches!(f.kind, FindingKind::DamagedDurableFrame { .. }))
        .collect();
    assert_eq!(found.len(), 1, "{:#?}", report.findings);
    assert_eq!(
        (found[0].severity, found[0].offset),
        (Severity::Problem, bad)
    );
    assert_eq!(report.exit_code(false), 1);

    // The salvage mode cuts there and says exactly what it dropped.
    let rt = DurableRuntime::open(
        dir.path(),
        RuntimeOptions {
            recovery: RecoveryMode::TruncateDamagedLog,
            ..options()
        },
    )
    .unwrap();
    let RecoveryReport {
        epoch, log_tail, ..
    } = rt.recovery_report().clone();
    let LogTail::DamageTruncated {
        offset,
        frames_past,
        first_epoch_dropped,
        last_epoch_dropped,
        ..
    } = log_tail
    else {
        panic!("a damage cut, got {log_tail:?}");
    };
    assert_eq!(offset, bad);
    assert_eq!(first_epoch_dropped, epoch + 1);
    assert_eq!(last_epoch_dropped, COMMITS as u64);
    assert_eq!(
        frames_past,
        COMMITS as u64 - epoch - 1 + 1,
        "the frames and the seal"
    );
    assert_eq!(rt.node_ids().len() as u64, epoch);
    for (id, bytes) in &nodes[..epoch as usize] {
        assert_eq!(&rt.read(*id).unwrap(), bytes);
    }
}

#[test]
fn a_zeroed_length_field_in_the_middle_is_damage_not_the_end() {
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let bad = frame_holding(dir.path(), 20_000);
    edit_log(dir.path(), |b| b[bad as usize..bad as usize + 4].fill(0));
    let err = open_err(dir.path());
    let c = err.as_corruption().expect("a structured corruption");
    assert_eq!(c.offset, bad);
    assert!(
        matches!(c.kind, CorruptionKind::ChecksumMismatch { .. }),
        "{:?}",
        c.kind
    );
    // A whole frame zeroed reads as the log's end, but the frames after it prove otherwise.
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let bad = frame_holding(dir.path(), 20_000);
    edit_log(dir.path(), |b| b[bad as usize..bad as usize + 24].fill(0));
    let c = open_err(dir.path()).as_corruption().cloned().unwrap();
    assert_eq!(
        (c.offset, c.kind),
        (
            bad,
            CorruptionKind::InvalidField {
                field: "frame.body_bytes",
                value: 0
            }
        )
    );
}

#[test]
fn a_clean_close_leaves_nothing_to_guess_and_a_torn_tail_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = store(dir.path());
    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    assert_eq!(rt.recovery_report().log_tail, LogTail::Sealed);
    assert_eq!(rt.node_ids().len(), COMMITS);
    drop(rt);
    // The seal itself damaged (its bytes carry no commit): a torn tail, cut, nothing lost.
    let dir = tempfile::tempdir().unwrap();
    store(dir.path());
    let len = std::fs::metadata(log_path(dir.path())).unwrap().len();
    let mut seal_at = 0;
    vellum::log::replay(&OsStorage::new(), &log_path(dir.path()), |f| {
        seal_at = f.end();
        Ok(())
    })
    .unwrap();
    assert!(seal_at < len);
    edit_log(dir.path(), |b| b[seal_at as usize + 9] ^= 1);
    let rt = DurableRuntime::open(dir.path(), options()).unwrap();
    assert!(matches!(
        rt.recovery_report().log_tail,
        LogTail::TornCut { offset, frames_dropped: 0, .. } if offset == seal_at
    ));
    assert_eq!(rt.node_ids().len(), nodes.len());
}
