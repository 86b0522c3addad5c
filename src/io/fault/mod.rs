//! [`FaultStorage`]: an in-memory filesystem that simulates power loss, deterministically.
//!
//! It keeps what was *written* apart from what is *durable*, and [`FaultStorage::crash_with`]
//! returns a new filesystem holding what a power loss would leave:
//! 1. `write_at` bytes not yet covered by a sync survive or vanish per 512-byte sector, each sector
//!    chosen independently (a torn write);
//! 2. bytes written through a window and not flushed survive or vanish per 4 KiB page;
//! 3. an unsynced length change survives or not, as a unit;
//! 4. creates, renames and removes not yet made durable by `sync_dir` of their directory: a prefix
//!    of them, in call order, survives (journaling filesystems commit metadata in order);
//! 5. directories themselves are durable when created (a simplification: vellum creates its
//!    directory once, before anything else).
//!
//! It also injects failures: [`FaultStorage::crash_after`] makes every operation after the next
//! N fail (the machine stopped there; crash tests enumerate N), [`FaultStorage::fail_nth`] fails
//! one operation with EIO, and [`FaultStorage::set_space_bytes_max`] makes allocation past a byte
//! budget fail with ENOSPC. Every call of a [`Storage`] or [`StorageFile`] method, and every window
//! flush, counts as one operation (`path()` excepted).

mod buffer;
mod inode;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Error as IoError, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::Mutex;

use self::inode::{Inode, Resolve, Space, mix};
use super::direct::check_aligned;
use super::mapping::{MapBacking, Mapping};
use super::{DirectWriter, LockGuard, PAGE_BYTES, SECTOR_BYTES, Storage, StorageFile};
use crate::error::{Error, IoOp, Result};

/// How [`FaultStorage::crash_with`] resolves state that was not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write, window page, length change and directory change is lost.
    DropUnsynced,
    /// Every unsynced write, window page, length change and directory change survives.
    KeepUnsynced,
    /// Each unsynced sector, page and length, and how long a prefix of directory changes
    /// survives, is chosen by this seed.
    Seeded(u64),
}

/// Settings of a [`FaultStorage`].
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Seed for the choices [`FaultStorage::crash`] makes.
    pub seed: u64,
    /// Largest length any one file may reach (reserved as virtual memory per file).
    pub file_bytes_max: usize,
    /// Total allocated bytes of all files past which allocation fails with "no space".
    pub space_bytes_max: Option<u64>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig {
            seed: 0,
            file_bytes_max: 256 << 20,
            space_bytes_max: None,
        }
    }
}

/// A directory-entry change not yet durable.
#[derive(Debug, Clone)]
enum NsOp {
    Link(PathBuf, Arc<Inode>),
    Unlink(PathBuf),
    Rename(PathBuf, PathBuf),
}

impl NsOp {
    fn touches_dir(&self, dir: &Path) -> bool {
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        match self {
            NsOp::Link(p, _) | NsOp::Unlink(p) => in_dir(p),
            NsOp::Rename(a, b) => in_dir(a) || in_dir(b),
        }
    }

    fn apply(&self, names: &mut BTreeMap<PathBuf, Arc<Inode>>) {
        match self {
            NsOp::Link(p, ino) => {
                names.insert(p.clone(), ino.clone());
            }
            NsOp::Unlink(p) => {
                names.remove(p);
            }
            NsOp::Rename(from, to) => {
                if let Some(ino) = names.remove(from) {
                    names.insert(to.clone(), ino);
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct Namespace {
    dirs: BTreeSet<PathBuf>,
    names: BTreeMap<PathBuf, Arc<Inode>>,
    durable: BTreeMap<PathBuf, Arc<Inode>>,
    pending: Vec<NsOp>,
    locks: BTreeSet<PathBuf>,
}

#[derive(Debug)]
struct FaultFs {
    config: FaultConfig,
    /// How many crashes led to this filesystem; varies the seed of successive crashes.
    generation: u64,
    ns: Mutex<Namespace>,
    ops: AtomicU64,
    crash_at_op: AtomicU64,
    fail_ops: Mutex<BTreeSet<u64>>,
    crashed: AtomicBool,
    next_ino: AtomicU64,
    space: Space,
    writeback_hints: AtomicU64,
}

impl FaultFs {
    /// Counts one operation and decides whether it fails.
    fn begin(&self) -> std::io::Result<()> {
        if self.crashed.load(Ordering::Acquire) {
            return Err(IoError::other("fault storage: this filesystem has crashed"));
        }
        let n = self.ops.fetch_add(1, Ordering::AcqRel) + 1;
        if n > self.crash_at_op.load(Ordering::Acquire) {
            return Err(IoError::other(format!(
                "fault storage: simulated power loss before operation {n}"
            )));
        }
        if self.fail_ops.lock().remove(&n) {
            return Err(IoError::other(format!(
                "fault storage: injected I/O error at operation {n}"
            )));
        }
        Ok(())
    }

    fn begin_op(&self, op: IoOp, path: &Path) -> Result<()> {
        self.begin().map_err(|e| Error::io(op, path, e))
    }

    fn new_inode(&self, image: &[u8], allocated: bitvec::vec::BitVec) -> std::io::Result<Inode> {
        let id = self.next_ino.fetch_add(1, Ordering::AcqRel);
        Inode::with_image(id, self.config.file_bytes_max, image, allocated)
    }
}

/// A fault-injecting in-memory filesystem. Clones share the same filesystem.
#[derive(Debug, Clone)]
pub struct FaultStorage {
    fs: Arc<FaultFs>,
}

fn not_found(path: &Path) -> IoError {
    IoError::new(
        ErrorKind::NotFound,
        format!("{} does not exist", path.display()),
    )
}

fn parent_exists(ns: &Namespace, path: &Path) -> bool {
    match path.parent() {
        None => true,
        Some(p) if p.as_os_str().is_empty() || p == Path::new("/") => true,
        Some(p) => ns.dirs.contains(p),
    }
}

impl FaultStorage {
    /// A fresh, empty filesystem whose crashes are seeded by `seed`.
    pub fn new(seed: u64) -> Self {
        Self::with_config(FaultConfig {
            seed,
            ..FaultConfig::default()
        })
    }

    /// A fresh, empty filesystem with these settings.
    pub fn with_config(config: FaultConfig) -> Self {
        Self::build(config, 0)
    }

    fn build(config: FaultConfig, generation: u64) -> Self {
        let max = config.space_bytes_max.unwrap_or(u64::MAX);
        FaultStorage {
            fs: Arc::new(FaultFs {
                config,
                generation,
                ns: Mutex::new(Namespace::default()),
                ops: AtomicU64::new(0),
                crash_at_op: AtomicU64::new(u64::MAX),
                fail_ops: Mutex::new(BTreeSet::new()),
                crashed: AtomicBool::new(false),
                next_ino: AtomicU64::new(1),
                writeback_hints: AtomicU64::new(0),
                space: Space {
                    used_bytes: AtomicU64::new(0),
                    max_bytes: AtomicU64::new(max),
                },
            }),
        }
    }

    /// `start_writeback` calls so far (hints: they change nothing here, and are not counted as
    /// operations, so crash points do not move).
    pub fn writeback_hints(&self) -> u64 {
        self.fs.writeback_hints.load(Ordering::Acquire)
    }

    /// Storage operations performed so far (failed ones included).
    pub fn op_count(&self) -> u64 {
        self.fs.ops.load(Ordering::Acquire)
    }

    /// The next `ops` operations run; every one after them fails, as if the machine stopped.
    pub fn crash_after(&self, ops: u64) {
        let at = self.op_count().saturating_add(ops);
        self.fs.crash_at_op.store(at, Ordering::Release);
    }

    /// The `n`-th operation from now (1 = the next) fails once with an I/O error.
    pub fn fail_nth(&self, n: u64) {
        let at = self.op_count().saturating_add(n.max(1));
        self.fs.fail_ops.lock().insert(at);
    }

    /// Lifts every scheduled fault (`crash_after`, `fail_nth`): later operations succeed again.
    ///
    /// With `crash_after` this simulates a *process* crash rather than a power loss: the process
    /// stopped at an operation, but the filesystem (page cache included) lives on, so a new
    /// process sees every write, synced or not. Follow it with `crash()` to add a power loss.
    pub fn clear_faults(&self) {
        self.fs.crash_at_op.store(u64::MAX, Ordering::Release);
        self.fs.fail_ops.lock().clear();
    }

    /// Sets (or with `None` lifts) the budget of allocated bytes across all files. The budget
    /// carries over to the filesystem `crash` returns (the disk does not grow by crashing).
    pub fn set_space_bytes_max(&self, bytes: Option<u64>) {
        self.fs
            .space
            .max_bytes
            .store(bytes.unwrap_or(u64::MAX), Ordering::Release);
    }

    /// Allocated bytes across all files.
    pub fn space_used_bytes(&self) -> u64 {
        self.fs.space.used_bytes.load(Ordering::Acquire)
    }

    /// True once this filesystem has crashed (every operation on it fails).
    pub fn is_crashed(&self) -> bool {
        self.fs.crashed.load(Ordering::Acquire)
    }

    /// Power loss with the unsynced state chosen by the configured seed (varied per generation).
    pub fn crash(&self) -> FaultStorage {
        let seed = mix(self.fs.config.seed ^ mix(self.fs.generation));
        self.crash_with(CrashMode::Seeded(seed))
    }

    /// Power loss: this filesystem stops (every later operation fails) and the returned one holds
    /// what the disk would, with unsynced state resolved by `mode`. Call it when no thread is
    /// writing through a window of this filesystem.
    pub fn crash_with(&self, mode: CrashMode) -> FaultStorage {
        self.fs.crashed.store(true, Ordering::Release);
        let resolve = match mode {
            CrashMode::DropUnsynced => Resolve::Drop,
            CrashMode::KeepUnsynced => Resolve::Keep,
            CrashMode::Seeded(s) => Resolve::Seeded(s),
        };
        let ns = self.fs.ns.lock();
        let mut names = ns.durable.clone();
        let kept = match resolve {
            Resolve::Drop => 0,
            Resolve::Keep => ns.pending.len(),
            Resolve::Seeded(s) => (mix(s ^ 0x6e73) % (ns.pending.len() as u64 + 1)) as usize,
        };
        for op in &ns.pending[..kept] {
            op.apply(&mut names);
        }
        let next = Self::build(self.fs.config.clone(), self.fs.generation + 1);
        let mut new_ns = Namespace {
            dirs: ns.dirs.clone(),
            ..Namespace::default()
        };
        let mut used = 0u64;
        for (path, inode) in names {
            let (image, allocated) = inode.crash_image(resolve);
            used += allocated.count_ones() as u64 * PAGE_BYTES;
            match next.fs.new_inode(&image, allocated) {
                Ok(ino) => {
                    let ino = Arc::new(ino);
                    new_ns.names.insert(path.clone(), ino.clone());
                    new_ns.durable.insert(path, ino);
                }
                // Reserving memory for a file the old filesystem already held cannot fail for
                // lack of capacity; if the OS refuses memory, dropping the file is the only
                // option left, and the test will see it missing.
                Err(e) => {
                    tracing::error!(path = %path.display(), %e, "fault storage: lost a file on crash")
                }
            }
        }
        next.fs.space.used_bytes.store(used, Ordering::Release);
        let max = self.fs.space.max_bytes.load(Ordering::Acquire);
        next.fs.space.max_bytes.store(max, Ordering::Release);
        *next.fs.ns.lock() = new_ns;
        next
    }

    fn file(&self, path: &Path, inode: Arc<Inode>, read_only: bool) -> Arc<dyn StorageFile> {
        Arc::new(FaultFile {
            fs: self.fs.clone(),
            inode,
            path: path.to_path_buf(),
            read_only,
        })
    }

    fn open_existing(&self, path: &Path, read_only: bool) -> Result<Arc<dyn StorageFile>> {
        self.fs.begin_op(IoOp::Open, path)?;
        let inode = self.fs.ns.lock().names.get(path).cloned();
        match inode {
            Some(inode) => Ok(self.file(path, inode, read_only)),
            None => Err(Error::io(IoOp::Open, path, not_found(path))),
        }
    }
}

impl Storage for FaultStorage {
    fn create(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        self.fs.begin_op(IoOp::Create, path)?;
        let mut ns = self.fs.ns.lock();
        if !parent_exists(&ns, path) {
            return Err(Error::io(IoOp::Create, path, not_found(path)));
        }
        if ns.names.contains_key(path) || ns.dirs.contains(path) {
            return Err(Error::io(
                IoOp::Create,
                path,
                ErrorKind::AlreadyExists.into(),
            ));
        }
        let inode = self
            .fs
            .new_inode(&[], bitvec::vec::BitVec::new())
            .map_err(|e| Error::io(IoOp::Create, path, e))?;
        let inode = Arc::new(inode);
        ns.names.insert(path.to_path_buf(), inode.clone());
        ns.pending
            .push(NsOp::Link(path.to_path_buf(), inode.clone()));
        drop(ns);
        Ok(self.file(path, inode, false))
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        self.open_existing(path, false)
    }

    fn open_read_only(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        self.open_existing(path, true)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        self.fs.begin_op(IoOp::Stat, path)?;
        let ns = self.fs.ns.lock();
        Ok(ns.names.contains_key(path) || ns.dirs.contains(path))
    }

    fn is_dir(&self, path: &Path) -> Result<bool> {
        self.fs.begin_op(IoOp::Stat, path)?;
        Ok(self.fs.ns.lock().dirs.contains(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.fs.begin_op(IoOp::Rename, from)?;
        let mut ns = self.fs.ns.lock();
        if !parent_exists(&ns, to) {
            return Err(Error::io(IoOp::Rename, to, not_found(to)));
        }
        let Some(inode) = ns.names.remove(from) else {
            return Err(Error::io(IoOp::Rename, from, not_found(from)));
        };
        ns.names.insert(to.to_path_buf(), inode);
        ns.pending
            .push(NsOp::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.fs.begin_op(IoOp::Remove, path)?;
        let mut ns = self.fs.ns.lock();
        if ns.names.remove(path).is_none() {
            return Err(Error::io(IoOp::Remove, path, not_found(path)));
        }
        ns.pending.push(NsOp::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.fs.begin_op(IoOp::CreateDir, dir)?;
        let mut ns = self.fs.ns.lock();
        if ns.names.contains_key(dir) {
            return Err(Error::io(
                IoOp::CreateDir,
                dir,
                ErrorKind::AlreadyExists.into(),
            ));
        }
        for d in dir.ancestors() {
            if !d.as_os_str().is_empty() && d != Path::new("/") {
                ns.dirs.insert(d.to_path_buf());
            }
        }
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        self.fs.begin_op(IoOp::SyncDir, dir)?;
        let mut ns = self.fs.ns.lock();
        if !ns.dirs.contains(dir) {
            return Err(Error::io(IoOp::SyncDir, dir, not_found(dir)));
        }
        let pending = std::mem::take(&mut ns.pending);
        let (now, later): (Vec<NsOp>, Vec<NsOp>) =
            pending.into_iter().partition(|op| op.touches_dir(dir));
        for op in &now {
            op.apply(&mut ns.durable);
        }
        ns.pending = later;
        Ok(())
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.fs.begin_op(IoOp::List, dir)?;
        let ns = self.fs.ns.lock();
        if !ns.dirs.contains(dir) {
            return Err(Error::io(IoOp::List, dir, not_found(dir)));
        }
        let mut names: Vec<String> = ns
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(str::to_owned))
            .collect();
        names.sort();
        Ok(names)
    }

    fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.fs.begin_op(IoOp::Lock, path)?;
        let mut ns = self.fs.ns.lock();
        if !parent_exists(&ns, path) {
            return Err(Error::io(IoOp::Lock, path, not_found(path)));
        }
        if !ns.locks.insert(path.to_path_buf()) {
            return Err(Error::Locked {
                path: path.to_path_buf(),
            });
        }
        if !ns.names.contains_key(path) {
            let inode = self
                .fs
                .new_inode(&[], bitvec::vec::BitVec::new())
                .map_err(|e| Error::io(IoOp::Lock, path, e))?;
            let inode = Arc::new(inode);
            ns.names.insert(path.to_path_buf(), inode.clone());
            ns.pending.push(NsOp::Link(path.to_path_buf(), inode));
        }
        Ok(LockGuard::new(Box::new(FaultLock {
            fs: self.fs.clone(),
            path: path.to_path_buf(),
        })))
    }
}

/// Releases a simulated `flock` when dropped.
#[derive(Debug)]
struct FaultLock {
    fs: Arc<FaultFs>,
    path: PathBuf,
}

impl Drop for FaultLock {
    fn drop(&mut self) {
        self.fs.ns.lock().locks.remove(&self.path);
    }
}

/// An open simulated file.
#[derive(Debug)]
struct FaultFile {
    fs: Arc<FaultFs>,
    inode: Arc<Inode>,
    path: PathBuf,
    read_only: bool,
}

impl FaultFile {
    fn begin_write(&self, op: IoOp) -> Result<()> {
        self.fs.begin_op(op, &self.path)?;
        if self.read_only {
            return Err(Error::io(
                op,
                &self.path,
                ErrorKind::PermissionDenied.into(),
            ));
        }
        Ok(())
    }

    fn io(&self, op: IoOp) -> impl FnOnce(IoError) -> Error + '_ {
        move |e| Error::io(op, &self.path, e)
    }
}

/// A direct writer of a fault-storage file: writes of whole 512-byte sectors from aligned memory
/// (refused otherwise, as the kernel would), which are then that file's writes like any other
/// (unsynced until its `sync_data`, each sector surviving a crash or not).
#[derive(Debug)]
struct FaultDirect(FaultFile);

impl DirectWriter for FaultDirect {
    fn align(&self) -> usize {
        SECTOR_BYTES as usize
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_aligned(self.align(), buf, offset, &self.0.path)?;
        self.0.write_at(buf, offset)
    }
}

impl StorageFile for FaultFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        self.fs.begin_op(IoOp::Stat, &self.path)?;
        Ok(self.inode.len())
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.fs.begin_op(IoOp::Read, &self.path)?;
        Ok(self.inode.read_at(buf, offset))
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        self.begin_write(IoOp::Write)?;
        self.inode
            .write_at(buf, offset, &self.fs.space)
            .map_err(self.io(IoOp::Write))
    }

    fn direct_writer(&self) -> Result<Option<Arc<dyn DirectWriter>>> {
        Ok(Some(Arc::new(FaultDirect(FaultFile {
            fs: Arc::clone(&self.fs),
            inode: Arc::clone(&self.inode),
            path: self.path.clone(),
            read_only: self.read_only,
        }))))
    }

    fn set_len(&self, len: u64) -> Result<()> {
        self.begin_write(IoOp::SetLen)?;
        self.inode
            .set_len(len, &self.fs.space)
            .map_err(self.io(IoOp::SetLen))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        self.begin_write(IoOp::Allocate)?;
        self.inode
            .allocate(offset, len, &self.fs.space)
            .map_err(self.io(IoOp::Allocate))
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        self.begin_write(IoOp::PunchHole)?;
        self.inode
            .punch_hole(offset, len, &self.fs.space)
            .map_err(self.io(IoOp::PunchHole))
    }

    fn start_writeback(&self, _offset: u64, _len: u64) {
        self.fs.writeback_hints.fetch_add(1, Ordering::AcqRel);
    }

    fn sync_data(&self) -> Result<()> {
        self.fs.begin_op(IoOp::SyncData, &self.path)?;
        self.inode.sync();
        Ok(())
    }

    fn sync_all(&self) -> Result<()> {
        self.fs.begin_op(IoOp::SyncAll, &self.path)?;
        self.inode.sync();
        Ok(())
    }

    // No unsafe operation here: the fault storage's file buffers are reserved at their maximum
    // size and never move, and a `set_len` below a live window is refused, so its mappings cannot
    // fault; the contract is only passed on.
    #[expect(
        unsafe_code,
        reason = "the trait's mapping contract; nothing unsafe inside"
    )]
    unsafe fn map(&self, offset: u64, len: usize) -> Result<Mapping> {
        self.begin_write(IoOp::Map)?;
        if !offset.is_multiple_of(PAGE_BYTES) || len == 0 {
            return Err(Error::InvalidArgument(format!(
                "map of {}: offset {offset} is not page-aligned or length is zero",
                self.path.display()
            )));
        }
        let id = self
            .inode
            .map(offset, len as u64, &self.fs.space)
            .map_err(self.io(IoOp::Map))?;
        // `map` succeeded, so `offset + len` is within the capacity.
        let ptr = self.inode.buf.ptr().wrapping_add(offset as usize);
        Ok(Mapping::new(
            ptr,
            len,
            offset,
            self.path.clone(),
            Box::new(FaultWindow {
                fs: self.fs.clone(),
                inode: self.inode.clone(),
                id,
                offset,
            }),
        ))
    }

    #[expect(
        unsafe_code,
        reason = "the trait's mapping contract; nothing unsafe inside"
    )]
    unsafe fn map_read_only(&self, offset: u64, len: usize) -> Result<Mapping> {
        self.begin_write(IoOp::Map)?;
        if !offset.is_multiple_of(PAGE_BYTES) || len == 0 {
            return Err(Error::InvalidArgument(format!(
                "map of {}: offset {offset} is not page-aligned or length is zero",
                self.path.display()
            )));
        }
        let id = self
            .inode
            .map_read_only(offset, len as u64)
            .map_err(self.io(IoOp::Map))?;
        // `map` succeeded, so `offset + len` is within the capacity.
        let ptr = self
            .inode
            .buf
            .ptr()
            .wrapping_add(offset as usize)
            .cast_const();
        Ok(Mapping::new_read_only(
            ptr,
            len,
            offset,
            self.path.clone(),
            Box::new(FaultWindow {
                fs: self.fs.clone(),
                inode: self.inode.clone(),
                id,
                offset,
            }),
        ))
    }

    fn allocated_bytes(&self) -> Result<u64> {
        self.fs.begin_op(IoOp::Stat, &self.path)?;
        Ok(self.inode.allocated_bytes())
    }
}

/// Keeps a simulated file's buffer alive for a window and flushes through the fault layer.
struct FaultWindow {
    fs: Arc<FaultFs>,
    inode: Arc<Inode>,
    id: u64,
    offset: u64,
}

impl MapBacking for FaultWindow {
    fn flush(&self, offset: usize, len: usize) -> std::io::Result<()> {
        self.fs.begin()?;
        self.inode
            .flush_range(self.offset + offset as u64, len as u64);
        Ok(())
    }
}

impl Drop for FaultWindow {
    fn drop(&mut self) {
        self.inode.unmap(self.id);
    }
}
