//! The memory behind one simulated file: an anonymous mapping reserved at the file's maximum size.
//!
//! This is one of the few modules allowed `unsafe`. Reserving the whole capacity up front means
//! the bytes never move as the file grows, so a [`crate::io::Mapping`] can point straight into the
//! buffer and see exactly what `read_at`/`write_at` see, as windows of a real file share the page
//! cache. The operating system commits pages lazily, so an unused reservation costs no memory.
//!
//! Soundness:
//! 1. `ptr..ptr + capacity` is valid for the buffer's life: the `MmapMut` owning it is a field and
//!    is only dropped with the buffer; windows keep the buffer alive through an `Arc`.
//! 2. Every copy is bounds-checked against `capacity` before it happens.
//! 3. Copies made by `read`/`write` are serialised by the owning inode's mutex; bytes written
//!    through windows follow the window rules in `io/mapping.rs` (no concurrent access to the same
//!    bytes), as for a real mapped file.

#![expect(
    unsafe_code,
    reason = "copies into reserved anonymous memory; see the soundness argument above"
)]

use std::fmt;

/// A fixed-capacity, never-moving byte buffer.
pub(super) struct FileBuffer {
    ptr: *mut u8,
    capacity: usize,
    _mmap: memmap2::MmapMut,
}

// SAFETY: the buffer is plain memory owned by the `MmapMut`; access rules are those of rule 3.
unsafe impl Send for FileBuffer {}
// SAFETY: as above; shared references only copy through bounds-checked raw pointers.
unsafe impl Sync for FileBuffer {}

impl FileBuffer {
    /// Reserves `capacity` bytes of zeroed memory.
    pub(super) fn new(capacity: usize) -> std::io::Result<Self> {
        let mut mmap = memmap2::MmapMut::map_anon(capacity.max(1))?;
        let ptr = mmap.as_mut_ptr();
        Ok(FileBuffer {
            ptr,
            capacity,
            _mmap: mmap,
        })
    }

    pub(super) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Base pointer, for windows. Valid while `self` lives (rule 1).
    pub(super) fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    fn in_bounds(&self, offset: u64, len: usize) -> bool {
        usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(len))
            .is_some_and(|end| end <= self.capacity)
    }

    /// Copies bytes out. Returns false (copying nothing) if the range exceeds the capacity.
    pub(super) fn read(&self, offset: u64, out: &mut [u8]) -> bool {
        if !self.in_bounds(offset, out.len()) {
            return false;
        }
        // SAFETY: in bounds (rule 2) of valid memory (rule 1); serialised by the inode lock (rule 3).
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.ptr.add(offset as usize),
                out.as_mut_ptr(),
                out.len(),
            )
        };
        true
    }

    /// Copies bytes in. Returns false (copying nothing) if the range exceeds the capacity.
    pub(super) fn write(&self, offset: u64, data: &[u8]) -> bool {
        if !self.in_bounds(offset, data.len()) {
            return false;
        }
        // SAFETY: in bounds (rule 2) of valid memory (rule 1); serialised by the inode lock (rule 3).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), self.ptr.add(offset as usize), data.len())
        };
        true
    }

    /// Zeroes a range. Returns false if it exceeds the capacity.
    pub(super) fn zero(&self, offset: u64, len: usize) -> bool {
        if !self.in_bounds(offset, len) {
            return false;
        }
        // SAFETY: in bounds (rule 2) of valid memory (rule 1); serialised by the inode lock (rule 3).
        unsafe { std::ptr::write_bytes(self.ptr.add(offset as usize), 0, len) };
        true
    }
}

impl fmt::Debug for FileBuffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileBuffer")
            .field("capacity", &self.capacity)
            .finish()
    }
}
