//! Direct-I/O writes (`O_DIRECT`): bytes go to the device without the page cache, in units of the
//! device's logical block rather than whole pages.
//!
//! The delta log appends through a [`DirectWriter`] when the storage offers one: a commit record
//! of 4.3 KB then writes its own nine 512-byte sectors instead of the two or three 4 KiB pages the
//! page cache would write back for it (`design/ARCHITECTURE.md`, "Writes proportional to the
//! change"). Durability is unchanged: a direct write is durable only after `sync_data`, like any
//! write (the device may still cache it).
//!
//! Invariants:
//! 1. Every offset, length and buffer address passed to [`DirectWriter::write_at`] is a multiple
//!    of [`DirectWriter::align`]; the implementation refuses anything else with an error rather
//!    than let the kernel fail it (the fault storage checks the same rule, so tests catch a
//!    writer that breaks it).
//! 2. [`AlignedBuf`] hands out a slice whose address is a multiple of its alignment, from safe
//!    code only (an over-allocated `Vec` and an offset into it).

use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoOp, Result};

/// Writes one file with direct I/O.
pub trait DirectWriter: Send + Sync + fmt::Debug {
    /// The alignment, in bytes, of every offset, length and buffer address (a power of two).
    fn align(&self) -> usize;

    /// Writes all of `buf` at `offset` (invariant 1). Not durable until the file's `sync_data`.
    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()>;
}

/// Checks invariant 1 for a write of `buf` at `offset` to `path`.
pub(crate) fn check_aligned(align: usize, buf: &[u8], offset: u64, path: &Path) -> Result<()> {
    let a = align as u64;
    let aligned = offset.is_multiple_of(a)
        && (buf.len() as u64).is_multiple_of(a)
        && (buf.as_ptr() as usize).is_multiple_of(align);
    if aligned {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "direct write of {} bytes at {offset} to {}: offset, length and buffer must be multiples \
         of {align}",
        buf.len(),
        path.display()
    )))
}

/// A zeroed buffer of `len` bytes whose first byte lies at a multiple of `align` (invariant 2).
#[derive(Debug)]
pub struct AlignedBuf {
    bytes: Vec<u8>,
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// `len` zero bytes aligned to `align` (a power of two).
    pub fn zeroed(len: usize, align: usize) -> AlignedBuf {
        let bytes = vec![0u8; len + align];
        // For a byte pointer the offset is always below `align`; the `min` only keeps the slice
        // in bounds should that ever not hold (then the write's alignment check refuses it).
        let start = bytes.as_ptr().align_offset(align).min(align);
        AlignedBuf { bytes, start, len }
    }

    /// The aligned bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }

    /// The aligned bytes, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

/// A second descriptor of a file, opened `O_DIRECT | O_WRONLY`.
#[derive(Debug)]
pub(crate) struct OsDirect {
    file: File,
    path: PathBuf,
    align: usize,
}

/// The alignment assumed when the kernel does not report one (`STATX_DIOALIGN` is Linux 6.1+):
/// a page, which every device's logical block divides.
const FALLBACK_ALIGN_BYTES: usize = 4096;

impl OsDirect {
    /// Opens `path` for direct writes; `None` where the filesystem refuses `O_DIRECT` (tmpfs,
    /// for one), so the caller writes through the page cache instead.
    pub(crate) fn open(path: &Path) -> Result<Option<OsDirect>> {
        let flags = rustix::fs::OFlags::DIRECT.bits() as i32;
        let file = match OpenOptions::new()
            .write(true)
            .custom_flags(flags)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                return Ok(None);
            }
            Err(e) => return Err(Error::io(IoOp::Open, path, e)),
        };
        let align = dio_align(&file).unwrap_or(FALLBACK_ALIGN_BYTES);
        Ok(Some(OsDirect {
            file,
            path: path.to_path_buf(),
            align,
        }))
    }
}

/// The larger of the offset and memory alignments `statx` reports for direct I/O on `file`, if
/// it reports them.
fn dio_align(file: &File) -> Option<usize> {
    let st = rustix::fs::statx(
        file.as_fd(),
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::DIOALIGN,
    )
    .ok()?;
    if st.stx_mask & rustix::fs::StatxFlags::DIOALIGN.bits() == 0 {
        return None;
    }
    let align = st.stx_dio_offset_align.max(st.stx_dio_mem_align) as usize;
    (align.is_power_of_two() && align <= FALLBACK_ALIGN_BYTES).then_some(align)
}

impl DirectWriter for OsDirect {
    fn align(&self) -> usize {
        self.align
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> Result<()> {
        check_aligned(self.align, buf, offset, &self.path)?;
        self.file
            .write_all_at(buf, offset)
            .map_err(|e| Error::io(IoOp::Write, &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_buffers_are_aligned_and_zeroed() {
        for align in [512, 4096] {
            for len in [0, 512, 4096, 8192 + 512] {
                let mut b = AlignedBuf::zeroed(len, align);
                assert_eq!(b.as_slice().len(), len);
                assert!((b.as_slice().as_ptr() as usize).is_multiple_of(align));
                assert!(b.as_slice().iter().all(|&x| x == 0));
                if len > 0 {
                    b.as_mut_slice()[len - 1] = 7;
                    assert_eq!(b.as_slice()[len - 1], 7);
                }
            }
        }
    }

    #[test]
    fn misaligned_writes_are_refused() {
        let b = AlignedBuf::zeroed(1024, 512);
        let p = Path::new("f");
        assert!(check_aligned(512, b.as_slice(), 512, p).is_ok());
        let refused = |r: Result<()>| matches!(r, Err(Error::InvalidArgument(m)) if m.contains("multiples of 512"));
        assert!(refused(check_aligned(512, b.as_slice(), 100, p)));
        assert!(refused(check_aligned(512, &b.as_slice()[..1000], 0, p)));
        assert!(refused(check_aligned(512, &b.as_slice()[1..513], 0, p)));
    }

    #[test]
    fn direct_writes_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, vec![1u8; 8192]).unwrap();
        let Some(d) = OsDirect::open(&path).unwrap() else {
            // A filesystem without O_DIRECT: nothing to test here.
            return;
        };
        assert!(d.align().is_power_of_two() && d.align() <= 4096);
        let mut b = AlignedBuf::zeroed(d.align(), d.align());
        b.as_mut_slice().fill(9);
        d.write_at(b.as_slice(), d.align() as u64).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(bytes[..d.align()].iter().all(|&x| x == 1));
        assert!(bytes[d.align()..2 * d.align()].iter().all(|&x| x == 9));
        assert!(bytes[2 * d.align()..].iter().all(|&x| x == 1));
    }
}
