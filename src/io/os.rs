//! [`OsStorage`]: the storage trait on the real filesystem.
//!
//! Data moves with `pread`/`pwrite`, durability with `fdatasync`/`fsync` (and `fsync` of the
//! directory for entry changes), space with `fallocate`, exclusion with `flock`, all through
//! `rustix`; windows are `memmap2` shared mappings.

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FallocateFlags, FlockOperation};

use super::mapping::{MapBacking, Mapping};
use super::{DirectWriter, LockGuard, OsDirect, PAGE_BYTES, Storage, StorageFile};
use crate::error::{Error, IoOp, Result};

/// The real filesystem.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use std::sync::Arc;
/// use vellum::io::OsStorage;
/// // `open` is `open_with` on the real filesystem; a structure's tests pass another `Storage`.
/// let rt = DurableRuntime::open_with(Arc::new(OsStorage), dir.path(), options)?;
/// rt.close()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

impl OsStorage {
    /// The real filesystem.
    pub fn new() -> Self {
        OsStorage
    }
}

fn io_err(op: IoOp, path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |e| Error::io(op, path, e)
}

fn errno(op: IoOp, path: &Path) -> impl FnOnce(rustix::io::Errno) -> Error + '_ {
    move |e| Error::io(op, path, e.into())
}

impl OsStorage {
    fn open_with(&self, path: &Path, opts: &OpenOptions, op: IoOp) -> Result<Arc<dyn StorageFile>> {
        let file = opts.open(path).map_err(io_err(op, path))?;
        Ok(Arc::new(OsFile {
            file,
            path: path.to_path_buf(),
        }))
    }
}

impl Storage for OsStorage {
    fn create(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create_new(true);
        self.open_with(path, &opts, IoOp::Create)
    }

    fn open(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        let mut opts = OpenOptions::new();
        opts.read(true).write(true);
        self.open_with(path, &opts, IoOp::Open)
    }

    fn open_read_only(&self, path: &Path) -> Result<Arc<dyn StorageFile>> {
        let mut opts = OpenOptions::new();
        opts.read(true);
        self.open_with(path, &opts, IoOp::Open)
    }

    fn exists(&self, path: &Path) -> Result<bool> {
        path.try_exists().map_err(io_err(IoOp::Stat, path))
    }

    fn is_dir(&self, path: &Path) -> Result<bool> {
        match std::fs::metadata(path) {
            Ok(m) => Ok(m.is_dir()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::io(IoOp::Stat, path, e)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        std::fs::rename(from, to).map_err(io_err(IoOp::Rename, from))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        std::fs::remove_file(path).map_err(io_err(IoOp::Remove, path))
    }

    fn create_dir_all(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io_err(IoOp::CreateDir, dir))
    }

    fn sync_dir(&self, dir: &Path) -> Result<()> {
        let d = File::open(dir).map_err(io_err(IoOp::SyncDir, dir))?;
        rustix::fs::fsync(d.as_fd()).map_err(errno(IoOp::SyncDir, dir))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(IoOp::List, dir))? {
            let entry = entry.map_err(io_err(IoOp::List, dir))?;
            let is_file = entry
                .file_type()
                .map_err(io_err(IoOp::List, dir))?
                .is_file();
            if is_file && let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    fn lock(&self, path: &Path) -> Result<LockGuard> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io_err(IoOp::Lock, path))?;
        flock_exclusive(file, path)
    }

    fn lock_existing(&self, path: &Path) -> Result<Option<LockGuard>> {
        // `flock` needs no write access, so a read-only handle takes the same lock.
        let file = match OpenOptions::new().read(true).open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(IoOp::Lock, path, e)),
        };
        flock_exclusive(file, path).map(Some)
    }
}

/// Takes a non-blocking exclusive `flock` on `file`, held as long as the returned guard.
fn flock_exclusive(file: File, path: &Path) -> Result<LockGuard> {
    match rustix::fs::flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(LockGuard::new(Box::new(file))),
        Err(rustix::io::Errno::WOULDBLOCK) => Err(Error::Locked {
            path: path.to_path_buf(),
        }),
        Err(e) => Err(Error::io(IoOp::Lock, path, e.into())),
    }
}

/// A file on the real filesystem. One descriptor, shared by every user through `Arc`.
#[derive(Debug)]
struct OsFile {
    file: File,
    path: PathBuf,
}

impl OsFile {
    /// Checks that `[offset, offset + len)` is a page-aligned, non-empty range within the file,
    /// as both kinds of mapping require.
    fn check_map_range(&self, offset: u64, len: usize) -> Result<()> {
        if !offset.is_multiple_of(PAGE_BYTES) || len == 0 {
            return Err(Error::InvalidArgument(format!(
                "map of {}: offset {offset} is not page-aligned or length is zero",
                self.path.display()
            )));
        }
        let file_len = self.len()?;
        if offset
            .checked_add(len as u64)
            .is_none_or(|end| end > file_len)
        {
            return Err(Error::InvalidArgument(format!(
                "map of {}: {offset}+{len} ends past the {file_len}-byte file",
                self.path.display()
            )));
        }
        Ok(())
    }
}

impl StorageFile for OsFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> Result<u64> {
        let st = rustix::fs::fstat(self.file.as_fd()).map_err(errno(IoOp::Stat, &self.path))?;
        Ok(u64::try_from(st.st_size).unwrap_or(0))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::pread(self.file.as_fd(), &mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::io(IoOp::Read, &self.path, e.into())),
            }
        }
        Ok(done)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        let mut done = 0;
        while done < buf.len() {
            match rustix::io::pwrite(self.file.as_fd(), &buf[done..], offset + done as u64) {
                Ok(0) => {
                    return Err(Error::io(
                        IoOp::Write,
                        &self.path,
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => done += n,
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(Error::io(IoOp::Write, &self.path, e.into())),
            }
        }
        Ok(())
    }

    #[cfg(target_os = "linux")]
    fn start_writeback(&self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        #[expect(unsafe_code, reason = "rustix does not wrap sync_file_range")]
        // SAFETY: the descriptor is open for as long as `self.file` lives (the whole call), and
        // the call takes no pointers.
        let rc = unsafe {
            libc::sync_file_range(
                self.file.as_raw_fd(),
                offset,
                len,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        if rc != 0 {
            // A hint only: the sync that follows reports any I/O error.
            tracing::trace!(path = %self.path.display(), offset, len,
                error = %std::io::Error::last_os_error(), "sync_file_range failed");
        }
    }

    fn set_len(&self, len: u64) -> Result<()> {
        rustix::fs::ftruncate(self.file.as_fd(), len).map_err(errno(IoOp::SetLen, &self.path))
    }

    fn allocate(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        match rustix::fs::fallocate(self.file.as_fd(), FallocateFlags::empty(), offset, len) {
            Ok(()) => Ok(()),
            // Filesystems without fallocate still get the promised length (sparse, zero-filled).
            Err(rustix::io::Errno::OPNOTSUPP) => {
                let end = offset + len;
                if end > self.len()? {
                    self.set_len(end)?;
                }
                Ok(())
            }
            Err(e) => Err(Error::io(IoOp::Allocate, &self.path, e.into())),
        }
    }

    fn punch_hole(&self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        rustix::fs::fallocate(
            self.file.as_fd(),
            FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE,
            offset,
            len,
        )
        .map_err(errno(IoOp::PunchHole, &self.path))
    }

    fn sync_data(&self) -> Result<()> {
        rustix::fs::fdatasync(self.file.as_fd()).map_err(errno(IoOp::SyncData, &self.path))
    }

    fn sync_all(&self) -> Result<()> {
        rustix::fs::fsync(self.file.as_fd()).map_err(errno(IoOp::SyncAll, &self.path))
    }

    #[expect(
        unsafe_code,
        reason = "mapping a file is inherently unsafe; see the SAFETY below"
    )]
    unsafe fn map(&self, offset: u64, len: usize) -> Result<Mapping> {
        self.check_map_range(offset, len)?;
        // SAFETY: the range lies within the file (checked above); the caller of this `unsafe fn`
        // guarantees that the file is not shortened below the mapping and that no byte of it is
        // written through another path while the mapping uses it (`StorageFile::map`'s contract),
        // which is the contract `memmap2` requires of its caller.
        let mut mmap = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map_mut(&self.file)
        }
        .map_err(io_err(IoOp::Map, &self.path))?;
        // Small nodes are read and written at random: without this, faults read ahead and map
        // around the faulting page, the page cache fills with large folios, and a write of a few
        // bytes dirties a whole folio that the next `fdatasync` writes back whole (100 scattered
        // 16-byte writes then cost about 35 MB of writes instead of 410 KB; ARCHITECTURE.md,
        // "Writes proportional to the change").
        mmap.advise(memmap2::Advice::Random)
            .map_err(io_err(IoOp::Map, &self.path))?;
        let ptr = mmap.as_mut_ptr();
        Ok(Mapping::new(
            ptr,
            len,
            offset,
            self.path.clone(),
            Box::new(OsMapping(mmap)),
        ))
    }

    #[expect(
        unsafe_code,
        reason = "mapping a file is inherently unsafe; see the SAFETY below"
    )]
    unsafe fn map_read_only(&self, offset: u64, len: usize) -> Result<Mapping> {
        self.check_map_range(offset, len)?;
        // SAFETY: the range lies within the file (checked above); the caller of this `unsafe fn`
        // guarantees that the file is not shortened below the mapping and that no byte of it is
        // written through another path while the mapping uses it (`StorageFile::map`'s contract),
        // which is the contract `memmap2` requires of its caller.
        let mmap = unsafe {
            memmap2::MmapOptions::new()
                .offset(offset)
                .len(len)
                .map(&self.file)
        }
        .map_err(io_err(IoOp::Map, &self.path))?;
        let ptr = mmap.as_ptr();
        Ok(Mapping::new_read_only(
            ptr,
            len,
            offset,
            self.path.clone(),
            Box::new(OsReadMapping(mmap)),
        ))
    }

    fn direct_writer(&self) -> Result<Option<Arc<dyn DirectWriter>>> {
        Ok(OsDirect::open(&self.path)?.map(|d| Arc::new(d) as Arc<dyn DirectWriter>))
    }

    fn allocated_bytes(&self) -> Result<u64> {
        let st = rustix::fs::fstat(self.file.as_fd()).map_err(errno(IoOp::Stat, &self.path))?;
        Ok(u64::try_from(st.st_blocks).unwrap_or(0) * 512)
    }
}

/// Keeps a real mapping alive; the pointer handed to [`Mapping`] points into it, and moving the
/// `MmapMut` value does not move the mapped memory.
struct OsMapping(memmap2::MmapMut);

impl MapBacking for OsMapping {
    fn flush(&self, offset: usize, len: usize) -> std::io::Result<()> {
        self.0.flush_range(offset, len)
    }
}

/// Keeps a read-only (`PROT_READ`) mapping alive: nothing is written through it, so there is
/// nothing to flush.
struct OsReadMapping(
    #[expect(dead_code, reason = "held only to keep the mapping alive")] memmap2::Mmap,
);

impl MapBacking for OsReadMapping {
    fn flush(&self, _offset: usize, _len: usize) -> std::io::Result<()> {
        Ok(())
    }
}
