//! A mapped window of a file.
//!
//! This is one of the few modules allowed `unsafe`: it turns a mapping's base pointer into byte
//! slices. The soundness argument:
//! 1. *The memory stays valid while the `Mapping` lives.* The mapping owns its backing (a
//!    `memmap2::MmapMut`, or for [`super::FaultStorage`] an `Arc` of the in-memory file buffer,
//!    which is reserved at its maximum size and never moves); dropping the `Mapping` is the only
//!    way the window goes away, so a borrow of a `Mapping` (what callers call a pin) keeps it alive.
//! 2. *The file is never shortened under a live window.* Only the store's allocator shortens data
//!    files, and only below ranges with no live window (the storage trait requires it; the fault
//!    storage rejects a `set_len` that would break it, so tests catch a violation instead of a
//!    SIGBUS).
//! 3. *No byte is written while another thread reads or writes it.* The safe methods take `&mut
//!    self` to write; the `unsafe` slice methods put that duty on the caller, which for the runtime
//!    is the allocator: a slot is written only while reserved by one writer, and read only after it
//!    was published.
//! 4. *Nothing writes through a read-only mapping* ([`Mapping::new_read_only`], from
//!    `StorageFile::map_read_only`): `write` and `slice_mut` refuse it with an error, so its
//!    memory (mapped `PROT_READ` by the OS storage) is never written.

#![expect(
    unsafe_code,
    reason = "raw access to mapped memory; see the soundness argument above"
)]

use std::fmt;
use std::path::{Path, PathBuf};

use crate::codec::{align_down, align_up};
use crate::error::{Error, IoOp, Result};

/// What keeps a mapping's memory alive and knows how to flush it.
pub(crate) trait MapBacking: Send + Sync {
    /// Makes `[offset, offset + len)` of the window durable; both are page-aligned and in range.
    fn flush(&self, offset: usize, len: usize) -> std::io::Result<()>;
}

/// A window of a file mapped for reading and writing, or for reading only.
pub struct Mapping {
    ptr: *mut u8,
    len: usize,
    /// False for a read-only mapping (rule 4).
    writable: bool,
    file_offset: u64,
    path: PathBuf,
    backing: Box<dyn MapBacking>,
}

// SAFETY: the pointer refers to memory owned by `backing`, which is Send + Sync; access to the bytes
// is governed by the rules in the module docs, not by which thread holds the `Mapping`.
unsafe impl Send for Mapping {}
// SAFETY: shared access only hands out slices through `unsafe` methods whose callers guarantee the
// absence of conflicting writes (rule 3), or copies through `read`, which has the same contract as a
// concurrent `pread` of another process's writes.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Wraps a mapping. `ptr..ptr + len` must stay valid for reads and writes while `backing` lives.
    pub(crate) fn new(
        ptr: *mut u8,
        len: usize,
        file_offset: u64,
        path: PathBuf,
        backing: Box<dyn MapBacking>,
    ) -> Self {
        Mapping {
            ptr,
            len,
            writable: true,
            file_offset,
            path,
            backing,
        }
    }

    /// Wraps a mapping that is only read: `ptr..ptr + len` must stay valid for reads while
    /// `backing` lives; `write` and `slice_mut` refuse it (rule 4).
    pub(crate) fn new_read_only(
        ptr: *const u8,
        len: usize,
        file_offset: u64,
        path: PathBuf,
        backing: Box<dyn MapBacking>,
    ) -> Self {
        Mapping {
            writable: false,
            ..Mapping::new(ptr.cast_mut(), len, file_offset, path, backing)
        }
    }

    /// False for a read-only mapping.
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    fn check_writable(&self) -> Result<()> {
        if self.writable {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "write through a read-only window of {}",
            self.path.display()
        )))
    }

    /// Length of the window in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty window.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offset in the file of the window's first byte.
    pub fn file_offset(&self) -> u64 {
        self.file_offset
    }

    /// The mapped file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_range(&self, offset: usize, len: usize) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::InvalidArgument(format!(
                "range {offset}+{len} outside a {}-byte window of {}",
                self.len,
                self.path.display()
            ))),
        }
    }

    /// Copies `buf.len()` bytes starting at `offset` in the window into `buf`.
    pub fn read(&self, offset: usize, buf: &mut [u8]) -> Result<()> {
        self.check_range(offset, buf.len())?;
        // SAFETY: the range is inside the window (checked above) and the memory is valid (rule 1);
        // writers of these bytes are excluded by rule 3.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.add(offset), buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `data` into the window at `offset`.
    pub fn write(&mut self, offset: usize, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.check_range(offset, data.len())?;
        // SAFETY: in range (checked) and valid (rule 1); `&mut self` excludes other users of this
        // window, and other windows of the same bytes are excluded by rule 3.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset), data.len()) };
        Ok(())
    }

    /// Borrows `len` bytes at `offset` without copying.
    ///
    /// # Safety
    /// No thread may write these bytes (through any window or `write_at`) while the slice lives.
    pub unsafe fn slice(&self, offset: usize, len: usize) -> Result<&[u8]> {
        self.check_range(offset, len)?;
        // SAFETY: in range and valid (rule 1); the caller excludes writers for the borrow's life.
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) })
    }

    /// Borrows `len` bytes at `offset` without copying, or `None` if the range leaves the window
    /// (the read fast path: no error is built).
    ///
    /// # Safety
    /// As for [`Mapping::slice`].
    #[inline]
    pub unsafe fn slice_if_in_range(&self, offset: usize, len: usize) -> Option<&[u8]> {
        let end = offset.checked_add(len)?;
        if end > self.len {
            return None;
        }
        // SAFETY: in range (checked above) and valid (rule 1); the caller excludes writers for the
        // borrow's life.
        Some(unsafe { std::slice::from_raw_parts(self.ptr.add(offset), len) })
    }

    /// Borrows `len` bytes at `offset` mutably without copying.
    ///
    /// # Safety
    /// No other thread may read or write these bytes while the slice lives.
    #[expect(
        clippy::mut_from_ref,
        reason = "exclusivity of the byte range is the caller's contract, not the window's"
    )]
    pub unsafe fn slice_mut(&self, offset: usize, len: usize) -> Result<&mut [u8]> {
        self.check_writable()?;
        self.check_range(offset, len)?;
        // SAFETY: in range and valid (rule 1); the caller guarantees exclusive access to the range.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.add(offset), len) })
    }

    /// Makes the bytes written to `[offset, offset + len)` of the window durable. The range is
    /// widened to whole pages (an unaligned `msync` fails) and clipped to the window.
    pub fn flush(&self, offset: usize, len: usize) -> Result<()> {
        self.check_range(offset, len)?;
        let page = super::PAGE_BYTES;
        let start = align_down(offset as u64, page) as usize;
        let end = (align_up((offset + len) as u64, page) as usize).min(self.len);
        if end <= start {
            return Ok(());
        }
        self.backing
            .flush(start, end - start)
            .map_err(|e| Error::io(IoOp::Flush, &self.path, e))
    }
}

impl fmt::Debug for Mapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mapping")
            .field("path", &self.path)
            .field("file_offset", &self.file_offset)
            .field("len", &self.len)
            .finish()
    }
}
