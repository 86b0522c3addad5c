//! Regression: replay skipped every record whose epoch was at or below the last epoch it had
//! applied, meaning to skip only what the checkpoint already held. A CRC-valid record after the
//! checkpoint that repeated an epoch (or went back) was dropped silently instead of being
//! reported; `design/DURABILITY.md` R4 says each record must be exactly one epoch after the
//! previous. Now only epochs at or below the checkpoint's are skipped.

use std::path::Path;
use std::sync::Arc;

use vellum::io::{OsStorage, Storage};
use vellum::log::{DeltaLog, LogOptions, parse_log_file_name, replay};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{CorruptionKind, Error};

mod common;

fn open(dir: &Path) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open(dir, common::small_deterministic_options())
}

#[test]
fn a_repeated_epoch_after_the_checkpoint_is_a_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    {
        let rt = open(dir).unwrap();
        for i in 0..3u8 {
            let mut tx = rt.begin();
            tx.alloc(1, &[i; 100]).unwrap();
            assert_eq!(
                tx.commit_with(CommitPolicy::Strict).unwrap(),
                u64::from(i) + 1
            );
        }
        rt.close().unwrap();
    }
    // The open log holds the records of epochs 1, 2 and 3: append epoch 2's record again, in a
    // frame of its own with a valid index and CRC.
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let seq = storage
        .list(dir)
        .unwrap()
        .iter()
        .filter_map(|n| parse_log_file_name(n))
        .max()
        .unwrap();
    let log_path = dir.join(vellum::log::log_file_name(seq));
    let mut bodies = Vec::new();
    replay(storage.as_ref(), &log_path, |f| {
        bodies.push(f.body.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(bodies.len(), 3);
    let (log, _) =
        DeltaLog::open(storage.clone(), dir, seq, LogOptions::default(), |_| Ok(())).unwrap();
    let pos = log.append(&bodies[1]).unwrap();
    log.sync_to(pos).unwrap();
    drop(log);

    let err = open(dir).map(|_| ()).unwrap_err();
    let c = err
        .as_corruption()
        .unwrap_or_else(|| panic!("expected a corruption, got {err}"));
    assert_eq!(c.file, log_path);
    assert_eq!(
        c.kind,
        CorruptionKind::Mismatch {
            what: "commit_record.epoch",
            expected: 4,
            actual: 2,
        }
    );
    assert!(matches!(err, Error::Corruption(_)));
}
