//! Regression: `fsck --snapshot` listed the store's directory once, before it read the logs. A
//! data file the writer created after that listing, for nodes whose records the check then read,
//! was reported as "node …'s data file does not exist": a `Problem` on a healthy store (the
//! snapshot test under a running writer failed now and then). Data files are never removed while
//! a store is open, so the check now lists them again after reading the logs.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vellum::inspect::{FsckOptions, fsck};
use vellum::io::{LockGuard, OsStorage, Storage, StorageFile};
use vellum::runtime::{CommitPolicy, DurableRuntime};

mod common;

/// The real filesystem, except that its first directory listing leaves out the data files, as
/// a listing taken just before the writer created them would.
#[derive(Debug)]
struct EarlyListing {
    os: OsStorage,
    listed: AtomicBool,
}

impl Storage for EarlyListing {
    fn create(&self, path: &Path) -> vellum::Result<Arc<dyn StorageFile>> {
        self.os.create(path)
    }
    fn open(&self, path: &Path) -> vellum::Result<Arc<dyn StorageFile>> {
        self.os.open(path)
    }
    fn open_read_only(&self, path: &Path) -> vellum::Result<Arc<dyn StorageFile>> {
        self.os.open_read_only(path)
    }
    fn exists(&self, path: &Path) -> vellum::Result<bool> {
        self.os.exists(path)
    }
    fn is_dir(&self, path: &Path) -> vellum::Result<bool> {
        self.os.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> vellum::Result<()> {
        self.os.rename(from, to)
    }
    fn remove(&self, path: &Path) -> vellum::Result<()> {
        self.os.remove(path)
    }
    fn create_dir_all(&self, dir: &Path) -> vellum::Result<()> {
        self.os.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> vellum::Result<()> {
        self.os.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> vellum::Result<Vec<String>> {
        let mut names = self.os.list(dir)?;
        if !self.listed.swap(true, Ordering::SeqCst) {
            names.retain(|n| !n.starts_with("data-"));
        }
        Ok(names)
    }
    fn lock(&self, path: &Path) -> vellum::Result<LockGuard> {
        self.os.lock(path)
    }
    fn lock_existing(&self, path: &Path) -> vellum::Result<Option<LockGuard>> {
        self.os.lock_existing(path)
    }
}

#[test]
fn a_data_file_created_after_the_first_listing_is_not_a_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let rt = DurableRuntime::open(&dir, common::small_deterministic_options()).unwrap();
    let mut tx = rt.begin();
    for i in 0..10u8 {
        tx.alloc(1, &[i; 100]).unwrap();
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let storage = EarlyListing {
        os: OsStorage::new(),
        listed: AtomicBool::new(false),
    };
    let snapshot = FsckOptions {
        snapshot: true,
        ..common::fsck_options()
    };
    let report = fsck(&storage, &dir, &snapshot).unwrap();
    let problems: Vec<_> = report.problems().collect();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        storage.listed.load(Ordering::SeqCst),
        "the check listed the directory"
    );
    drop(rt);
}
