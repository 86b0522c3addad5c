//! Regression: the checkpoint synced data files directly, clearing their dirty flags while its
//! `fdatasync` ran; a concurrent STRICT flush then found nothing dirty, skipped its data sync and
//! acknowledged a record whose node bytes were not durable (breaking Rule D): after a power loss
//! the node failed its checksum. Found by review with a storage wrapper that holds the
//! checkpoint's data sync. Every data sync now goes through `DataSync`.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use vellum::Result;
use vellum::io::{CrashMode, FaultConfig, FaultStorage, LockGuard, Mapping, Storage, StorageFile};
use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};

mod common;

fn opts() -> RuntimeOptions {
    let mut o = common::small_deterministic_options();
    o.policy = CommitPolicy::Strict;
    o
}

/// Gate: counts data-file sync_data calls; calls listed in `block` wait until released.
#[derive(Debug, Default)]
struct Gate {
    post: AtomicU32,
    n: AtomicU32,
    state: Mutex<(u32, bool)>,
    cv: Condvar,
    entered: Mutex<Vec<u32>>,
    ecv: Condvar,
}
#[derive(Debug, Clone)]
struct W {
    inner: FaultStorage,
    gate: Arc<Gate>,
}
#[derive(Debug)]
struct WF {
    inner: Arc<dyn StorageFile>,
    gate: Arc<Gate>,
}

impl Gate {
    fn on_sync(&self) {
        let k = self.n.fetch_add(1, Ordering::SeqCst) + 1;
        {
            self.entered.lock().unwrap().push(k);
            self.ecv.notify_all();
        }
        let mut s = self.state.lock().unwrap();
        while s.0 == k && !s.1 {
            s = self.cv.wait(s).unwrap();
        }
    }
    fn block(&self, k: u32) {
        *self.state.lock().unwrap() = (k, false);
    }
    fn release(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
    /// Waits up to `limit` for data sync `k` to start; returns whether it did.
    fn wait_entered_for(&self, k: u32, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        let mut e = self.entered.lock().unwrap();
        while !e.contains(&k) {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else {
                return false;
            };
            e = self.ecv.wait_timeout(e, left).unwrap().0;
        }
        true
    }
    fn wait_entered(&self, k: u32) {
        let mut e = self.entered.lock().unwrap();
        while !e.contains(&k) {
            e = self.ecv.wait(e).unwrap();
        }
    }
}

impl Storage for W {
    fn create(&self, p: &Path) -> Result<Arc<dyn StorageFile>> {
        self.wrap(p, self.inner.create(p)?)
    }
    fn open(&self, p: &Path) -> Result<Arc<dyn StorageFile>> {
        self.wrap(p, self.inner.open(p)?)
    }
    fn open_read_only(&self, p: &Path) -> Result<Arc<dyn StorageFile>> {
        self.inner.open_read_only(p)
    }
    fn exists(&self, p: &Path) -> Result<bool> {
        self.inner.exists(p)
    }
    fn is_dir(&self, p: &Path) -> Result<bool> {
        self.inner.is_dir(p)
    }
    fn rename(&self, a: &Path, b: &Path) -> Result<()> {
        self.inner.rename(a, b)
    }
    fn remove(&self, p: &Path) -> Result<()> {
        self.inner.remove(p)
    }
    fn create_dir_all(&self, p: &Path) -> Result<()> {
        self.inner.create_dir_all(p)
    }
    fn sync_dir(&self, p: &Path) -> Result<()> {
        self.inner.sync_dir(p)
    }
    fn list(&self, p: &Path) -> Result<Vec<String>> {
        self.inner.list(p)
    }
    fn lock(&self, p: &Path) -> Result<LockGuard> {
        self.inner.lock(p)
    }
}
impl W {
    fn wrap(&self, p: &Path, f: Arc<dyn StorageFile>) -> Result<Arc<dyn StorageFile>> {
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with("data-") {
            Ok(Arc::new(WF {
                inner: f,
                gate: self.gate.clone(),
            }))
        } else {
            Ok(f)
        }
    }
}
impl StorageFile for WF {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn len(&self) -> Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, b: &mut [u8], o: u64) -> Result<usize> {
        self.inner.read_at(b, o)
    }
    fn write_at(&self, b: &[u8], o: u64) -> Result<()> {
        self.inner.write_at(b, o)
    }
    fn set_len(&self, l: u64) -> Result<()> {
        self.inner.set_len(l)
    }
    fn allocate(&self, o: u64, l: u64) -> Result<()> {
        self.inner.allocate(o, l)
    }
    fn punch_hole(&self, o: u64, l: u64) -> Result<()> {
        self.inner.punch_hole(o, l)
    }
    fn sync_data(&self) -> Result<()> {
        let k = self.gate.n.load(Ordering::SeqCst) + 1;
        if k == self.gate.post.load(Ordering::SeqCst) {
            let r = self.inner.sync_data();
            self.gate.on_sync();
            return r;
        }
        self.gate.on_sync();
        self.inner.sync_data()
    }
    fn sync_all(&self) -> Result<()> {
        self.gate.on_sync();
        self.inner.sync_all()
    }
    unsafe fn map(&self, o: u64, l: usize) -> Result<Mapping> {
        // SAFETY: the caller's contract (`StorageFile::map`) is passed on unchanged.
        unsafe { self.inner.map(o, l) }
    }
    fn allocated_bytes(&self) -> Result<u64> {
        self.inner.allocated_bytes()
    }
}

#[test]
fn strict_commit_acknowledged_while_checkpoint_data_sync_in_flight() {
    let fs = FaultStorage::with_config(FaultConfig {
        seed: 1,
        file_bytes_max: 64 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(Path::new("/s")).unwrap();
    let gate = Arc::new(Gate::default());
    let w = W {
        inner: fs.clone(),
        gate: gate.clone(),
    };
    let rt = DurableRuntime::open_with(Arc::new(w), Path::new("/s"), opts()).unwrap();
    let mut t = rt.begin();
    let a = t.alloc(1, &[7u8; 300]).unwrap(); // dirty, gen 1
    let base = gate.n.load(Ordering::SeqCst);
    gate.block(base + 1);
    gate.post.store(base + 1, Ordering::SeqCst); // K3's sync_through sync_data: hold it while we dirty the file again
    let rtr = &rt;
    let gate2 = gate.clone();
    let (img, a2) = std::thread::scope(move |s| {
        let gate = gate2;
        let ck = s.spawn(move || {
            let r = rtr.checkpoint();
            eprintln!("checkpoint: {r:?}");
        });
        gate.wait_entered(base + 1);
        let a2 = t.alloc(1, &[9u8; 300]).unwrap();
        gate.block(base + 2);
        gate.cv.notify_all();
        // Before the fix the checkpoint made a second, direct data sync here, which the gate held
        // while the commit below was acknowledged without a sync of its own. Now every data sync
        // goes through `DataSync`: if no second checkpoint sync starts, open the gate so the
        // commit's own data sync runs.
        if !gate.wait_entered_for(base + 2, std::time::Duration::from_millis(300)) {
            gate.release();
        }
        let e = t.commit_with(CommitPolicy::Strict).expect("strict commit");
        eprintln!(
            "STRICT commit acknowledged at epoch {e}; data syncs so far {}",
            gate.n.load(Ordering::SeqCst)
        );
        let img = fs.crash_with(CrashMode::DropUnsynced);
        gate.release();
        let _ = ck.join();
        (img, a2)
    });
    std::mem::forget(rt);
    let rt2 = DurableRuntime::open_with(Arc::new(img), Path::new("/s"), opts()).unwrap();
    // Both acknowledged nodes survive the power loss byte for byte.
    assert_eq!(rt2.read(a).unwrap(), vec![7u8; 300]);
    assert_eq!(rt2.read(a2).unwrap(), vec![9u8; 300]);
}
