//! Regression: failures were swallowed, so a store went on as if nothing had happened.
//!
//! The background thread's panic was dropped by `let _ = h.join()` in `close`: a background
//! checkpoint that panicked stopped all background work (flushes, checkpoints, compaction) for
//! good, later commits still returned `Ok`, and `close` returned `Ok`. And a checkpoint whose
//! epoch was `u64::MAX` (a valid CRC, a value no writer produces) made recovery compute
//! `epoch + 1`, an overflow: a panic in a debug build, a wrapped epoch 0 in a release one. Now a
//! background failure poisons the runtime, the next call returns `Poisoned` naming it, `close`
//! returns it, and every arithmetic on an epoch from disk is checked.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vellum::checkpoint::CheckpointWriter;
use vellum::io::{FaultStorage, LockGuard, Storage, StorageFile};
use vellum::meta::{MetaStore, MetaUpdate};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{CorruptionKind, Error, Result};

mod common;

const DIR: &str = "/store";

/// Passes everything through, but panics on creating a checkpoint temporary once armed.
#[derive(Debug, Clone)]
struct PanicAtCheckpoint {
    inner: FaultStorage,
    armed: Arc<AtomicBool>,
}

impl Storage for PanicAtCheckpoint {
    fn create(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        if self.armed.load(Ordering::SeqCst) && path.to_string_lossy().ends_with(".ckpt.tmp") {
            panic!("injected: the checkpoint's file cannot be created");
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
fn a_panic_in_a_background_checkpoint_poisons_and_close_reports_it() {
    let fs = common::fault_storage(11, DIR);
    let storage = PanicAtCheckpoint {
        inner: fs,
        armed: Arc::new(AtomicBool::new(false)),
    };
    let mut options = common::small_deterministic_options();
    options.eventual_flush_interval = Duration::from_millis(5);
    options.checkpoint_interval = Some(Duration::from_millis(20));
    let rt = DurableRuntime::open_with(Arc::new(storage.clone()), Path::new(DIR), options).unwrap();
    let mut tx = rt.begin();
    let id = tx.alloc(1, b"before").unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    storage.armed.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rt.is_poisoned() {
        assert!(
            Instant::now() < deadline,
            "the background panic never poisoned the runtime"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The next write names the failure; reads of published state go on.
    let mut tx = rt.begin();
    match tx.alloc(1, b"after") {
        Err(Error::Poisoned { cause }) => assert!(
            cause.contains("vellum-maintenance thread panicked")
                && cause.contains("the checkpoint's file cannot be created"),
            "{cause}"
        ),
        other => panic!("expected Poisoned, got {other:?}"),
    }
    drop(tx);
    assert_eq!(rt.read(id).unwrap(), b"before");
    match rt.close() {
        Err(Error::Poisoned { cause }) => assert!(cause.contains("panicked"), "{cause}"),
        other => panic!("close must report the background failure, got {other:?}"),
    }
}

#[test]
fn a_checkpoint_at_the_largest_epoch_is_corruption_not_an_overflow() {
    let fs = common::fault_storage(12, DIR);
    let dir = Path::new(DIR);
    let rt = common::image::open(&fs, dir).unwrap();
    let mut tx = rt.begin();
    tx.alloc(1, b"node").unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.close().unwrap();
    // A checkpoint no writer makes, but with every checksum right: epoch u64::MAX.
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let meta = MetaStore::open(storage.clone(), dir).unwrap();
    let current = meta.current();
    let mut manifest = (*current.manifest).clone();
    let seq = manifest.counters.next_checkpoint_seq;
    let writer = CheckpointWriter::create(storage.as_ref(), dir, seq, u64::MAX).unwrap();
    let info = writer.finish().unwrap();
    manifest.checkpoint = Some(info.manifest_ref());
    manifest.counters.next_checkpoint_seq = seq + 1;
    meta.publish(MetaUpdate {
        commit_epoch: current.superblock.commit_epoch,
        roots: current.superblock.roots.clone(),
        manifest: Some(manifest),
    })
    .unwrap();
    drop(meta);
    match common::image::open(&fs, dir) {
        Err(Error::Corruption(c)) => assert_eq!(
            c.kind,
            CorruptionKind::InvalidField {
                field: "commit epoch",
                value: u64::MAX
            }
        ),
        other => panic!("expected a corruption, got {other:?}"),
    }
}
