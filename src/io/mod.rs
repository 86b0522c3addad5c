//! The storage layer: one trait for every file operation the runtime performs.
//!
//! Two implementations exist: [`OsStorage`] on the real filesystem (`rustix` system calls and
//! `memmap2` windows) and `FaultStorage` (with the `fault-injection` feature), an in-memory
//! filesystem that keeps what was *written* apart from what is *durable*, so a test can crash it at
//! any operation and observe exactly what a power loss would leave behind.
//!
//! A caller outside vellum may implement [`Storage`] and [`StorageFile`] (a wrapper that counts or
//! delays operations, another filesystem). The one operation whose misuse could break memory
//! safety, mapping a file range ([`StorageFile::map`]), is an `unsafe fn` with its contract.
//!
//! Invariants every implementation keeps (and `design/DURABILITY.md` relies on):
//! 1. `write_at` bytes survive a crash only once a later `sync_data`/`sync_all` of the same file
//!    returned `Ok`; before that any 512-byte sector of them may or may not survive.
//! 2. Bytes written through a [`Mapping`] survive only once `Mapping::flush` over them returned
//!    `Ok` (or the file was synced); before that any 4 KiB page of them may or may not survive.
//! 3. `create`, `rename` and `remove` survive only once `sync_dir` of the parent directory returned
//!    `Ok`; before that, a prefix (in call order) of them may survive.
//! 4. A file's length survives with its data (`sync_data` persists the length needed to read it).
//! 5. `allocate` never changes bytes that are already in the file; it may grow the length with
//!    zeros.

mod direct;
#[cfg(any(test, feature = "fault-injection"))]
mod fault;
mod mapping;
mod os;
mod read_buffer;

use std::fmt;
use std::path::Path;
use std::sync::Arc;

pub(crate) use direct::OsDirect;
pub use direct::{AlignedBuf, DirectWriter};
#[cfg(any(test, feature = "fault-injection"))]
pub use fault::{CrashMode, FaultConfig, FaultStorage};
pub use mapping::Mapping;
pub use os::OsStorage;
pub(crate) use read_buffer::ReadBuffer;

use crate::error::Result;

/// The size of a sector: the unit a device writes atomically.
pub const SECTOR_BYTES: u64 = 512;

/// The size of a memory page: the unit in which mapped writes reach the file.
pub const PAGE_BYTES: u64 = 4096;

/// Every directory-level operation the runtime performs.
///
/// Paths are passed through as given; the runtime joins file names onto its store directory.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates a new, empty file opened for reading and writing. Fails if it exists.
    fn create(&self, path: &Path) -> Result<Arc<dyn StorageFile>>;

    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> Result<Arc<dyn StorageFile>>;

    /// Opens an existing file for reading only (`fsck` and `dump` never write).
    fn open_read_only(&self, path: &Path) -> Result<Arc<dyn StorageFile>>;

    /// True if a file or directory exists at `path`.
    fn exists(&self, path: &Path) -> Result<bool>;

    /// True if `path` exists and is a directory (false if it does not exist or is a file).
    fn is_dir(&self, path: &Path) -> Result<bool>;

    /// Renames `from` to `to`, atomically replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;

    /// Removes a file.
    fn remove(&self, path: &Path) -> Result<()>;

    /// Creates a directory and any missing parents.
    fn create_dir_all(&self, dir: &Path) -> Result<()>;

    /// Makes the creates, renames and removes of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> Result<()>;

    /// The names of the files in `dir`, sorted.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;

    /// Takes an exclusive lock on the file at `path` (created if missing), held until the guard
    /// drops. Fails at once with [`crate::Error::Locked`] if another holder has it.
    fn lock(&self, path: &Path) -> Result<LockGuard>;

    /// Takes the same exclusive lock as [`Storage::lock`], but only if the file at `path` exists,
    /// and without creating or writing anything (`fsck` and `dump` must not change the store):
    /// `Ok(None)` when there is no such file. The default opens it through [`Storage::lock`],
    /// which creates nothing for an existing file; [`OsStorage`] locks a read-only handle, so it
    /// also works on a read-only filesystem.
    fn lock_existing(&self, path: &Path) -> Result<Option<LockGuard>> {
        if !self.exists(path)? {
            return Ok(None);
        }
        self.lock(path).map(Some)
    }
}

/// Every file-level operation the runtime performs. Offsets and lengths are in bytes.
pub trait StorageFile: Send + Sync + fmt::Debug {
    /// The path the file was opened at (for error reports).
    fn path(&self) -> &Path;

    /// The file's current length.
    fn len(&self) -> Result<u64>;

    /// True when the file holds no bytes.
    fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads into `buf` from `offset`, stopping early only at end of file; returns the bytes read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize>;

    /// Writes all of `buf` at `offset`, growing the file if needed.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;

    /// Sets the file's length, truncating or extending with zeros.
    fn set_len(&self, len: u64) -> Result<()>;

    /// Reserves disk blocks for `[offset, offset + len)`, extending the length with zeros if the
    /// range ends past it. Existing bytes are unchanged.
    fn allocate(&self, offset: u64, len: u64) -> Result<()>;

    /// Zeroes `[offset, offset + len)` and returns its blocks to the filesystem. The length does not
    /// change.
    fn punch_hole(&self, offset: u64, len: u64) -> Result<()>;

    /// Starts writing `[offset, offset + len)` back to the device without waiting for it, so a
    /// later [`StorageFile::sync_data`] finds less to do while the caller works on
    /// (`sync_file_range(SYNC_FILE_RANGE_WRITE)` on Linux). Only a hint: it makes nothing
    /// durable, reports nothing (the sync that follows reports I/O errors), and storage without
    /// such a call does nothing.
    fn start_writeback(&self, _offset: u64, _len: u64) {}

    /// Makes written data (and the length) durable: `fdatasync`.
    fn sync_data(&self) -> Result<()>;

    /// A writer of this file that bypasses the page cache (`O_DIRECT`), writing whole logical
    /// blocks ([`DirectWriter`]); `None` (the default) where the storage or filesystem has none,
    /// and the caller writes with [`StorageFile::write_at`]. Its writes are this file's writes:
    /// durable after this file's `sync_data`, visible to its `read_at`.
    fn direct_writer(&self) -> Result<Option<Arc<dyn DirectWriter>>> {
        Ok(None)
    }

    /// Makes written data and all metadata durable: `fsync`.
    fn sync_all(&self) -> Result<()>;

    /// Maps `[offset, offset + len)` for reading and writing. The range must lie within the file
    /// (checked: an error otherwise); `offset` must be a multiple of [`PAGE_BYTES`].
    ///
    /// # Safety
    ///
    /// A mapping's memory is the file's page cache, which the file can change under it. While the
    /// returned [`Mapping`] lives, the caller must ensure that:
    /// 1. the file is not shortened below the mapping's end, by this handle or any other
    ///    (`set_len`, or another process): reading a page past a file's end raises SIGBUS;
    /// 2. no byte of the range is written by another path (another mapping of it, `write_at`,
    ///    `punch_hole`) while this mapping reads or writes it, so that no copy in or out of the
    ///    mapping races a write.
    ///
    /// Calling it outside an `unsafe` block does not compile:
    ///
    /// ```compile_fail,E0133
    /// use vellum::io::{OsStorage, Storage};
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = OsStorage::new().create(&dir.path().join("f")).unwrap();
    /// file.set_len(4096).unwrap();
    /// let mapping = file.map(0, 4096); // error[E0133]: call to unsafe function
    /// file.set_len(0).unwrap(); // a read of `mapping` would now raise SIGBUS
    /// ```
    ///
    /// vellum's data files keep both rules by construction (`alloc/files.rs`, invariants 2 and 6:
    /// files only grow, and a slot's bytes have one writer before any reader). An
    /// implementation only forwards the contract: it maps and may not shorten the file itself.
    #[expect(
        unsafe_code,
        reason = "mapping a file range is only sound under a contract"
    )]
    unsafe fn map(&self, offset: u64, len: usize) -> Result<Mapping>;

    /// Maps `[offset, offset + len)` of the file for reading only: the same contract as
    /// [`StorageFile::map`], and the caller never writes through the mapping (its `write` and
    /// `slice_mut` refuse). An implementation need not reserve blocks for the range's holes, and
    /// may map it read-only. The default maps it as [`StorageFile::map`] does.
    ///
    /// # Safety
    ///
    /// As for [`StorageFile::map`].
    #[expect(
        unsafe_code,
        reason = "mapping a file range is only sound under a contract"
    )]
    unsafe fn map_read_only(&self, offset: u64, len: usize) -> Result<Mapping> {
        // SAFETY: the caller keeps `map`'s contract, which is this function's.
        unsafe { self.map(offset, len) }
    }

    /// Bytes of disk the file occupies (`st_blocks * 512`), which hole punching reduces.
    fn allocated_bytes(&self) -> Result<u64>;
}

impl dyn StorageFile {
    /// Reads exactly `buf.len()` bytes at `offset`; a short read is an `UnexpectedEof` I/O error.
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> Result<()> {
        let n = self.read_at(buf, offset)?;
        if n < buf.len() {
            return Err(crate::Error::io(
                crate::error::IoOp::Read,
                self.path(),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("read {n} of {} bytes at offset {offset}", buf.len()),
                ),
            ));
        }
        Ok(())
    }

    /// Reads the whole file.
    pub fn read_all(&self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.len()?).map_err(|_| {
            crate::Error::InvalidArgument(format!(
                "{} is too large to read into memory",
                self.path().display()
            ))
        })?;
        let mut buf = vec![0u8; len];
        let n = self.read_at(&mut buf, 0)?;
        buf.truncate(n);
        Ok(buf)
    }
}

/// Holds an exclusive lock until dropped.
pub struct LockGuard {
    _held: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// A guard holding `held` (a lock handle, a file descriptor) until it drops; for
    /// implementations of [`Storage::lock`] outside vellum.
    pub fn new(held: Box<dyn Send + Sync>) -> Self {
        LockGuard { _held: held }
    }
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LockGuard")
    }
}
