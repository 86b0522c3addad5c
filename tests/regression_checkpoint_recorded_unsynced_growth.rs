//! Regression: `fsck` reported a problem on a healthy store after a crash right after a
//! checkpoint.
//!
//! The checkpoint's K5 recorded each data file's length from the in-memory lengths at the time it
//! published, which include growth made after K3's data sync by commits running beside the
//! checkpoint. That growth was not durable, so a power loss left the file shorter than the
//! manifest said ("data file is 1048576 bytes, shorter than the 2097152 the manifest recorded")
//! on a store that opens and verifies: 4 of 30 runs with a concurrent writer. K5 now records the
//! lengths read before K3's sync, which K3 makes durable (a file's growth marks it dirty). The
//! test makes the race deterministic: a storage wrapper runs EVENTUAL commits that grow a data
//! file at K4, between K3 and K5.

use std::path::Path;
use std::sync::{Arc, Mutex};

use vellum::Result;
use vellum::inspect::{Severity, fsck};
use vellum::io::{CrashMode, FaultStorage, LockGuard, Storage, StorageFile};
use vellum::runtime::{CommitPolicy, DurableRuntime};

mod common;

const DIR: &str = "/store";
/// Class 12: four 256 KiB slots per 1 MiB segment and window, so the fifth node grows the file.
const NODE_BYTES: usize = 200 << 10;

type Hook = Box<dyn FnOnce() + Send>;

/// Passes everything through; the first `create` of a checkpoint temporary (K4's first step)
/// runs the hook first.
#[derive(Debug, Clone)]
struct AtK4 {
    inner: FaultStorage,
    hook: Arc<Mutex<Option<HookCell>>>,
}

struct HookCell(Hook);

impl std::fmt::Debug for HookCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("hook")
    }
}

impl Storage for AtK4 {
    fn create(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        if path.to_string_lossy().ends_with(".ckpt.tmp") {
            let hook = self.hook.lock().unwrap().take();
            if let Some(HookCell(hook)) = hook {
                hook();
            }
        }
        self.inner.create(path)
    }
    fn open(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        self.inner.open(path)
    }
    fn open_read_only(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        self.inner.open_read_only(path)
    }
    fn exists(&self, path: &Path) -> Result<bool> {
        self.inner.exists(path)
    }
    fn is_dir(&self, path: &Path) -> Result<bool> {
        self.inner.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> Result<()> {
        self.inner.remove(path)
    }
    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.inner.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.inner.lock(path)
    }
}

#[test]
fn growth_after_the_checkpoints_data_sync_is_not_recorded() {
    let fs = common::fault_storage(3, DIR);
    let storage = AtK4 {
        inner: fs.clone(),
        hook: Arc::new(Mutex::new(None)),
    };
    let rt = Arc::new(
        DurableRuntime::open_with(
            Arc::new(storage.clone()),
            Path::new(DIR),
            common::small_deterministic_options(),
        )
        .unwrap(),
    );
    // One durable node: its data file exists, one 1 MiB window long.
    let mut tx = rt.begin();
    let first = tx.alloc(1, &vec![1u8; NODE_BYTES]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let before = data_file_lengths(&fs);
    // At K4, commits beside the checkpoint grow that file by a window (not synced: EVENTUAL).
    let writer = rt.clone();
    *storage.hook.lock().unwrap() = Some(HookCell(Box::new(move || {
        for i in 2..6u8 {
            let mut tx = writer.begin();
            tx.alloc(1, &vec![i; NODE_BYTES]).unwrap();
            tx.commit_with(CommitPolicy::Eventual).unwrap();
        }
    })));
    rt.checkpoint().unwrap();
    assert!(storage.hook.lock().unwrap().is_none(), "the hook ran at K4");
    let grown = data_file_lengths(&fs);
    assert!(grown[0].1 > before[0].1, "{before:?} -> {grown:?}");

    let crashed = fs.crash_with(CrashMode::DropUnsynced);
    drop(rt);
    let report = fsck(&crashed, Path::new(DIR), &common::fsck_options()).unwrap();
    let problems: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .collect();
    assert!(problems.is_empty(), "a healthy store: {problems:#?}");
    assert_eq!(data_file_lengths(&crashed), before, "the growth was lost");
    let rt = common::image::open(&crashed, Path::new(DIR)).unwrap();
    assert_eq!(rt.read(first).unwrap(), vec![1u8; NODE_BYTES]);
    assert_eq!(rt.node_ids(), vec![first]);
    rt.verify().unwrap();
}

/// (name, length) of every data file.
fn data_file_lengths(fs: &FaultStorage) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = fs
        .list(Path::new(DIR))
        .unwrap()
        .into_iter()
        .filter(|n| n.starts_with("data-"))
        .map(|n| {
            let len = fs
                .open_read_only(&Path::new(DIR).join(&n))
                .unwrap()
                .len()
                .unwrap();
            (n, len)
        })
        .collect();
    out.sort();
    out
}
