//! Regression: opening a directory full of user files made it a store and later deleted some of
//! them.
//!
//! Any directory became a store on open, and open then removed every `*.tmp` file and every file
//! named like a manifest that was not in force, whoever made it: a user's `draft.tmp` was gone
//! after the first open. Opening a regular file failed with `create_dir: AlreadyExists`. Now a
//! directory without a store is refused unless the caller asks to create one
//! (`create_if_missing`), only exact store names are store files, recovery removes nothing else,
//! and a file path is `NotADirectory`.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vellum::io::{FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
use vellum::{CorruptionKind, Error};

mod common;

const DIR: &str = "/home/user/work";

const FOREIGN: [(&str, &[u8]); 5] = [
    ("draft.tmp", b"a draft"),
    ("manifest-backup.json", b"{}"),
    ("manifest-7.json", b"{\"mine\": true}"),
    ("notes.txt", b"notes"),
    ("data-1-2.seg", b"not ours either"),
];

fn open(fs: &FaultStorage, create_if_missing: bool) -> vellum::Result<DurableRuntime> {
    let options = RuntimeOptions {
        create_if_missing,
        ..common::small_deterministic_options()
    };
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options)
}

fn user_directory() -> FaultStorage {
    let fs = common::fault_storage(31, DIR);
    for (name, bytes) in FOREIGN {
        let f = fs.create(&Path::new(DIR).join(name)).unwrap();
        f.write_at(bytes, 0).unwrap();
        f.sync_data().unwrap();
    }
    fs.sync_dir(Path::new(DIR)).unwrap();
    fs
}

fn foreign_files(fs: &FaultStorage) -> BTreeMap<String, Vec<u8>> {
    FOREIGN
        .iter()
        .filter_map(|(name, _)| {
            let f = fs.open_read_only(&Path::new(DIR).join(name)).ok()?;
            let mut b = vec![0u8; f.len().unwrap() as usize];
            f.read_at(&mut b, 0).unwrap();
            Some(((*name).to_owned(), b))
        })
        .collect()
}

fn expected() -> BTreeMap<String, Vec<u8>> {
    FOREIGN
        .iter()
        .map(|(n, b)| ((*n).to_owned(), b.to_vec()))
        .collect()
}

#[test]
fn a_directory_of_user_files_is_not_a_store_unless_asked() {
    let fs = user_directory();
    match open(&fs, false) {
        Err(Error::NoStore { dir }) => assert_eq!(dir, Path::new(DIR)),
        other => panic!("expected NoStore, got {other:?}"),
    }
    let mut names = fs.list(Path::new(DIR)).unwrap();
    names.sort();
    let mut want: Vec<String> = FOREIGN.iter().map(|(n, _)| (*n).to_owned()).collect();
    want.sort();
    assert_eq!(names, want, "a refused open creates nothing, not even LOCK");
}

#[test]
fn a_store_created_among_user_files_never_touches_them() {
    let fs = user_directory();
    let rt = open(&fs, true).unwrap();
    for round in 0..3u8 {
        for i in 0..20u8 {
            let mut tx = rt.begin();
            tx.alloc(1, &[i; 200]).unwrap();
            tx.commit_with(CommitPolicy::Balanced).unwrap();
        }
        rt.checkpoint().unwrap();
        assert_eq!(foreign_files(&fs), expected(), "round {round}");
    }
    rt.close().unwrap();
    // Reopened (cleanly, and after a crash), the files are still all there, byte for byte.
    let rt = open(&fs, false).unwrap();
    assert_eq!(rt.node_ids().len(), 60);
    let crashed = fs.crash();
    drop(rt);
    let rt = open(&crashed, false).unwrap();
    assert_eq!(foreign_files(&crashed), expected());
    rt.close().unwrap();
}

#[test]
fn a_file_named_exactly_like_a_store_file_is_store_damage_without_a_superblock() {
    // `manifest-0000000000000007.json` is a name only a store writes: without a superblock it is
    // a store that lost its superblock, refused (not created over, not removed).
    let fs = user_directory();
    let name = "manifest-0000000000000007.json";
    let f = fs.create(&Path::new(DIR).join(name)).unwrap();
    f.write_at(b"{}", 0).unwrap();
    for create in [false, true] {
        match open(&fs, create) {
            Err(Error::Corruption(c)) => assert_eq!(
                (c.file, c.kind),
                (
                    Path::new(DIR).join("superblock"),
                    CorruptionKind::MissingFile
                )
            ),
            other => panic!("create_if_missing {create}: expected a corruption, got {other:?}"),
        }
        assert!(fs.exists(&Path::new(DIR).join(name)).unwrap());
        assert_eq!(foreign_files(&fs), expected());
    }
}

#[test]
fn opening_a_regular_file_says_it_is_not_a_directory() {
    let fs = common::fault_storage(32, DIR);
    let file = Path::new(DIR).join("plain");
    fs.create(&file).unwrap();
    for create in [false, true] {
        let options = RuntimeOptions {
            create_if_missing: create,
            ..common::small_deterministic_options()
        };
        match DurableRuntime::open_with(Arc::new(fs.clone()), &file, options) {
            Err(Error::NotADirectory { path }) => assert_eq!(path, file),
            other => panic!("expected NotADirectory, got {other:?}"),
        }
    }
}
