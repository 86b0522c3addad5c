//! Regression: a lost superblock silently replaced the store with an empty one.
//!
//! Opening treated "no `superblock` file" as "no store" and created one: removing the file from a
//! store with nodes, a checkpoint and logs gave an `Ok` open with 0 nodes, and the next open
//! deleted the old logs, manifest and checkpoint (not named by the new manifest), so nothing could
//! be recovered. A directory holding store files but no superblock is damage: opening fails with
//! a structured `Corruption` naming the missing superblock, whatever `create_if_missing` says,
//! nothing is removed, and `fsck` names it. Creating needs `create_if_missing`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vellum::inspect::{Severity, fsck};
use vellum::io::{FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
use vellum::{CorruptionKind, Error};

mod common;

const DIR: &str = "/store";

fn open(fs: &FaultStorage, create_if_missing: bool) -> vellum::Result<DurableRuntime> {
    let options = RuntimeOptions {
        create_if_missing,
        ..common::small_deterministic_options()
    };
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options)
}

/// Every file of the directory with its bytes.
fn files(fs: &FaultStorage) -> BTreeMap<String, Vec<u8>> {
    let dir = Path::new(DIR);
    fs.list(dir)
        .unwrap()
        .into_iter()
        .map(|n| {
            let f = fs.open_read_only(&dir.join(&n)).unwrap();
            let mut b = vec![0u8; f.len().unwrap() as usize];
            f.read_at(&mut b, 0).unwrap();
            (n, b)
        })
        .collect()
}

#[test]
fn a_store_without_its_superblock_is_refused_and_left_alone() {
    let fs = common::fault_storage(21, DIR);
    let rt = open(&fs, true).unwrap();
    for i in 0..40u8 {
        let mut tx = rt.begin();
        tx.alloc(1, &[i; 300]).unwrap();
        tx.commit_with(CommitPolicy::Balanced).unwrap();
        if i == 20 {
            rt.checkpoint().unwrap();
        }
    }
    rt.close().unwrap();
    fs.remove(&Path::new(DIR).join("superblock")).unwrap();
    let before = files(&fs);
    assert!(
        before.keys().any(|n| n.ends_with(".ckpt")),
        "{:?}",
        before.keys()
    );

    for create in [false, true] {
        match open(&fs, create) {
            Err(Error::Corruption(c)) => {
                assert_eq!(
                    (c.file, c.offset, c.kind),
                    (
                        Path::new(DIR).join("superblock"),
                        0,
                        CorruptionKind::MissingFile
                    ),
                    "create_if_missing {create}"
                );
            }
            other => panic!("create_if_missing {create}: expected a corruption, got {other:?}"),
        }
        assert_eq!(
            files(&fs),
            before,
            "nothing changed (create_if_missing {create})"
        );
    }
    let report = fsck(&fs, Path::new(DIR), &common::fsck_options()).unwrap();
    let missing: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem && f.file_name() == "superblock")
        .collect();
    assert_eq!(missing.len(), 1, "{:#?}", report.findings);
    assert_eq!(missing[0].corruption(), Some(&CorruptionKind::MissingFile));
    // Unreadable, as a superblock with no valid slot is: nothing can be recovered by opening.
    assert_eq!(report.exit_code(false), 2);
}

#[test]
fn creating_is_explicit() {
    let fs = common::fault_storage(22, DIR);
    match open(&fs, false) {
        Err(Error::NoStore { dir }) => assert_eq!(dir, Path::new(DIR)),
        other => panic!("expected NoStore, got {other:?}"),
    }
    assert!(files(&fs).is_empty(), "a refused open writes nothing");
    // A directory that does not exist is not created either.
    match DurableRuntime::open_with(
        Arc::new(fs.clone()),
        Path::new("/elsewhere"),
        RuntimeOptions::default(),
    ) {
        Err(Error::NoStore { dir }) => assert_eq!(dir, Path::new("/elsewhere")),
        other => panic!("expected NoStore, got {other:?}"),
    }
    assert!(!fs.exists(Path::new("/elsewhere")).unwrap());
    let rt = open(&fs, true).unwrap();
    assert!(rt.recovery_report().created);
    rt.close().unwrap();
    let rt = open(&fs, false).unwrap();
    assert!(!rt.recovery_report().created);
}
