//! One simulated file: its written bytes, its durable bytes, and how a crash resolves the gap.
//!
//! Invariants:
//! 1. `buf[0, len)` is what a reader sees now (the page cache); `durable` is what the disk holds.
//! 2. Every byte of `buf[0, len)` that may differ from `durable` lies in `dirty_written` (changed by
//!    `write_at`, `punch_hole`), in `dirty_mapped` (covered by a window alive since the last sync),
//!    or past `len_low_water` (the file was shortened and regrown since the last sync).
//! 3. A sync makes `durable` equal to `buf[0, len)` and resets the dirty state to the ranges of the
//!    windows still alive.
//! 4. A crash keeps each differing 512-byte sector of `dirty_written`, and each differing 4 KiB page
//!    of `dirty_mapped`, by an independent choice that depends only on (seed, inode, index), so a
//!    given seed always yields the same image.

use std::collections::{BTreeMap, HashMap};
use std::io::{Error as IoError, ErrorKind};
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};

use bitvec::vec::BitVec;
use parking_lot::Mutex;

use super::buffer::FileBuffer;
use crate::io::{PAGE_BYTES, SECTOR_BYTES};

/// How a crash resolves one unit of unsynced state.
#[derive(Debug, Clone, Copy)]
pub(super) enum Resolve {
    Drop,
    Keep,
    Seeded(u64),
}

/// What kind of unsynced unit a choice is made for; part of the choice's key.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
enum Unit {
    Sector = 1,
    Page = 2,
    Length = 3,
}

impl Resolve {
    pub(super) fn keep(self, salt: u64, index: u64) -> bool {
        match self {
            Resolve::Drop => false,
            Resolve::Keep => true,
            Resolve::Seeded(seed) => {
                mix(seed ^ mix(salt) ^ mix(index.wrapping_add(0x5bd1))) & 1 == 1
            }
        }
    }

    fn keep_unit(self, ino: u64, unit: Unit, index: u64) -> bool {
        self.keep(ino.wrapping_mul(4) + unit as u64, index)
    }
}

/// splitmix64's finaliser: a well-mixed, deterministic 64-bit hash.
pub(super) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes of all files' allocated pages, and the budget past which allocation fails.
#[derive(Debug)]
pub(super) struct Space {
    pub(super) used_bytes: AtomicU64,
    pub(super) max_bytes: AtomicU64,
}

impl Space {
    fn reserve(&self, bytes: u64) -> std::io::Result<()> {
        let max = self.max_bytes.load(Ordering::Acquire);
        let mut used = self.used_bytes.load(Ordering::Acquire);
        loop {
            let next = used.saturating_add(bytes);
            if next > max {
                return Err(IoError::new(
                    ErrorKind::StorageFull,
                    format!(
                        "fault storage: no space ({used} of {max} bytes used, {bytes} more asked)"
                    ),
                ));
            }
            match self.used_bytes.compare_exchange_weak(
                used,
                next,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(now) => used = now,
            }
        }
    }

    fn release(&self, bytes: u64) {
        self.used_bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Meta {
    len: u64,
    /// The smallest length the file had since the last sync.
    len_low_water: u64,
    durable: Vec<u8>,
    dirty_written: Vec<Range<u64>>,
    dirty_mapped: Vec<Range<u64>>,
    live_maps: HashMap<u64, Range<u64>>,
    next_map_id: u64,
    /// One bit per page: whether the page holds disk blocks (for `allocated_bytes` and the budget).
    allocated: BitVec,
}

/// A simulated file.
#[derive(Debug)]
pub(super) struct Inode {
    pub(super) id: u64,
    pub(super) buf: FileBuffer,
    meta: Mutex<Meta>,
}

fn push_range(ranges: &mut Vec<Range<u64>>, r: Range<u64>) {
    if r.is_empty() {
        return;
    }
    if let Some(last) = ranges.last_mut()
        && r.start <= last.end
        && r.end >= last.start
    {
        last.start = last.start.min(r.start);
        last.end = last.end.max(r.end);
        return;
    }
    ranges.push(r);
}

fn too_large(offset: u64, len: u64, capacity: usize) -> IoError {
    IoError::new(
        ErrorKind::FileTooLarge,
        format!("fault storage: {offset}+{len} exceeds the file capacity of {capacity} bytes"),
    )
}

impl Inode {
    /// A file holding `image`, all of it durable.
    pub(super) fn with_image(
        id: u64,
        capacity: usize,
        image: &[u8],
        allocated: BitVec,
    ) -> std::io::Result<Self> {
        let buf = FileBuffer::new(capacity)?;
        if !buf.write(0, image) {
            return Err(too_large(0, image.len() as u64, capacity));
        }
        Ok(Inode {
            id,
            buf,
            meta: Mutex::new(Meta {
                len: image.len() as u64,
                len_low_water: image.len() as u64,
                durable: image.to_vec(),
                dirty_written: Vec::new(),
                dirty_mapped: Vec::new(),
                live_maps: HashMap::new(),
                next_map_id: 0,
                allocated,
            }),
        })
    }

    pub(super) fn len(&self) -> u64 {
        self.meta.lock().len
    }

    pub(super) fn allocated_bytes(&self) -> u64 {
        self.meta.lock().allocated.count_ones() as u64 * PAGE_BYTES
    }

    fn check_capacity(&self, offset: u64, len: u64) -> std::io::Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.buf.capacity() as u64 => Ok(end),
            _ => Err(too_large(offset, len, self.buf.capacity())),
        }
    }

    /// Marks the pages of `range` allocated, charging the budget first; all or nothing.
    fn allocate_pages(meta: &mut Meta, space: &Space, range: Range<u64>) -> std::io::Result<()> {
        if range.is_empty() {
            return Ok(());
        }
        let first = (range.start / PAGE_BYTES) as usize;
        let last = range.end.div_ceil(PAGE_BYTES) as usize;
        if meta.allocated.len() < last {
            meta.allocated.resize(last, false);
        }
        let missing = meta.allocated[first..last].count_zeros() as u64;
        space.reserve(missing * PAGE_BYTES)?;
        meta.allocated[first..last].fill(true);
        Ok(())
    }

    fn release_pages(meta: &mut Meta, space: &Space, first: usize, last: usize) {
        let last = last.min(meta.allocated.len());
        if first >= last {
            return;
        }
        let freed = meta.allocated[first..last].count_ones() as u64;
        meta.allocated[first..last].fill(false);
        space.release(freed * PAGE_BYTES);
    }

    pub(super) fn read_at(&self, out: &mut [u8], offset: u64) -> usize {
        let meta = self.meta.lock();
        if offset >= meta.len {
            return 0;
        }
        let n = (meta.len - offset).min(out.len() as u64) as usize;
        // The range is within `len`, which never exceeds the capacity, so the copy happens.
        let copied = self.buf.read(offset, &mut out[..n]);
        if copied { n } else { 0 }
    }

    pub(super) fn write_at(&self, data: &[u8], offset: u64, space: &Space) -> std::io::Result<()> {
        let end = self.check_capacity(offset, data.len() as u64)?;
        let mut meta = self.meta.lock();
        Self::allocate_pages(&mut meta, space, offset..end)?;
        if !self.buf.write(offset, data) {
            return Err(too_large(offset, data.len() as u64, self.buf.capacity()));
        }
        meta.len = meta.len.max(end);
        push_range(&mut meta.dirty_written, offset..end);
        Ok(())
    }

    pub(super) fn set_len(&self, len: u64, space: &Space) -> std::io::Result<()> {
        self.check_capacity(0, len)?;
        let mut meta = self.meta.lock();
        if len < meta.len {
            if let Some(r) = meta.live_maps.values().find(|r| r.end > len) {
                return Err(IoError::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "fault storage: set_len({len}) would cut a live window {}..{} (SIGBUS on a real file)",
                        r.start, r.end
                    ),
                ));
            }
            self.buf.zero(len, (meta.len - len) as usize);
            let first = len.div_ceil(PAGE_BYTES) as usize;
            let total = meta.allocated.len();
            Self::release_pages(&mut meta, space, first, total);
            meta.len_low_water = meta.len_low_water.min(len);
        }
        meta.len = len;
        Ok(())
    }

    pub(super) fn allocate(&self, offset: u64, len: u64, space: &Space) -> std::io::Result<()> {
        let end = self.check_capacity(offset, len)?;
        let mut meta = self.meta.lock();
        Self::allocate_pages(&mut meta, space, offset..end)?;
        meta.len = meta.len.max(end);
        Ok(())
    }

    pub(super) fn punch_hole(&self, offset: u64, len: u64, space: &Space) -> std::io::Result<()> {
        let mut meta = self.meta.lock();
        let end = offset.saturating_add(len).min(meta.len);
        if offset >= end {
            return Ok(());
        }
        self.buf.zero(offset, (end - offset) as usize);
        push_range(&mut meta.dirty_written, offset..end);
        // Only pages wholly inside the hole give their blocks back, as on a real filesystem.
        let first = offset.div_ceil(PAGE_BYTES) as usize;
        let last = if end == meta.len {
            end.div_ceil(PAGE_BYTES)
        } else {
            end / PAGE_BYTES
        } as usize;
        Self::release_pages(&mut meta, space, first, last);
        Ok(())
    }

    /// Registers a window; returns its id.
    pub(super) fn map(&self, offset: u64, len: u64, space: &Space) -> std::io::Result<u64> {
        let end = self.check_capacity(offset, len)?;
        let mut meta = self.meta.lock();
        if end > meta.len {
            return Err(IoError::new(
                ErrorKind::InvalidInput,
                format!(
                    "fault storage: window {offset}..{end} ends past the {}-byte file",
                    meta.len
                ),
            ));
        }
        // A real filesystem allocates a hole's blocks when a mapped page is first written; doing
        // it at map time keeps a full disk a clean error instead of a SIGBUS.
        Self::allocate_pages(&mut meta, space, offset..end)?;
        let id = meta.next_map_id;
        meta.next_map_id += 1;
        meta.live_maps.insert(id, offset..end);
        push_range(&mut meta.dirty_mapped, offset..end);
        Ok(id)
    }

    /// Registers a window that is only read: nothing is written through it, so its holes keep no
    /// blocks (a real filesystem reads a hole as zeros without allocating it) and it adds no
    /// dirty range.
    pub(super) fn map_read_only(&self, offset: u64, len: u64) -> std::io::Result<u64> {
        let end = self.check_capacity(offset, len)?;
        let mut meta = self.meta.lock();
        if end > meta.len {
            return Err(IoError::new(
                ErrorKind::InvalidInput,
                format!(
                    "fault storage: window {offset}..{end} ends past the {}-byte file",
                    meta.len
                ),
            ));
        }
        let id = meta.next_map_id;
        meta.next_map_id += 1;
        meta.live_maps.insert(id, offset..end);
        Ok(id)
    }

    pub(super) fn unmap(&self, id: u64) {
        self.meta.lock().live_maps.remove(&id);
    }

    /// Brings the durable length up to date (as `fdatasync` does for the size it needs).
    fn sync_len(&self, meta: &mut Meta) {
        let low = meta.len_low_water.min(meta.durable.len() as u64) as usize;
        meta.durable.truncate(low);
        meta.durable.resize(meta.len as usize, 0);
        meta.len_low_water = meta.len;
    }

    fn copy_durable(&self, meta: &mut Meta, r: &Range<u64>) {
        let end = r.end.min(meta.len);
        if r.start >= end {
            return;
        }
        let (s, e) = (r.start as usize, end as usize);
        let dst = &mut meta.durable[s..e];
        self.buf.read(r.start, dst);
    }

    /// `fdatasync`/`fsync`: everything written so far becomes durable.
    pub(super) fn sync(&self) {
        let mut meta = self.meta.lock();
        self.sync_len(&mut meta);
        let mut ranges = std::mem::take(&mut meta.dirty_written);
        ranges.append(&mut meta.dirty_mapped);
        for r in &ranges {
            self.copy_durable(&mut meta, r);
        }
        meta.dirty_mapped = meta.live_maps.values().cloned().collect();
    }

    /// `msync` of a window range: those bytes (and the length) become durable.
    pub(super) fn flush_range(&self, offset: u64, len: u64) {
        let mut meta = self.meta.lock();
        self.sync_len(&mut meta);
        self.copy_durable(&mut meta, &(offset..offset.saturating_add(len)));
    }

    /// What the disk holds after a power loss, with unsynced units resolved by `resolve`.
    pub(super) fn crash_image(&self, resolve: Resolve) -> (Vec<u8>, BitVec) {
        let meta = self.meta.lock();
        let len_changed = meta.len != meta.durable.len() as u64 || meta.len_low_water < meta.len;
        let mut out = meta.durable.clone();
        if len_changed && resolve.keep_unit(self.id, Unit::Length, 0) {
            out.truncate(meta.len_low_water.min(out.len() as u64) as usize);
            out.resize(meta.len as usize, 0);
        }
        let limit = (out.len() as u64).min(meta.len);
        // Sectors changed by write_at are decided one by one; those only under windows page by
        // page. Written sectors take precedence where both apply.
        let mut units: BTreeMap<u64, Unit> = BTreeMap::new();
        for r in &meta.dirty_mapped {
            for s in r.start / SECTOR_BYTES..r.end.min(limit).div_ceil(SECTOR_BYTES) {
                units.insert(s, Unit::Page);
            }
        }
        for r in &meta.dirty_written {
            for s in r.start / SECTOR_BYTES..r.end.min(limit).div_ceil(SECTOR_BYTES) {
                units.insert(s, Unit::Sector);
            }
        }
        let mut sector = [0u8; SECTOR_BYTES as usize];
        for (s, unit) in units {
            let start = s * SECTOR_BYTES;
            let end = (start + SECTOR_BYTES).min(limit);
            if start >= end {
                continue;
            }
            let now = &mut sector[..(end - start) as usize];
            self.buf.read(start, now);
            let disk = &mut out[start as usize..end as usize];
            if disk == now {
                continue;
            }
            let index = match unit {
                Unit::Page => start / PAGE_BYTES,
                _ => s,
            };
            if resolve.keep_unit(self.id, unit, index) {
                disk.copy_from_slice(now);
            }
        }
        let pages = (out.len() as u64).div_ceil(PAGE_BYTES) as usize;
        let mut allocated = meta.allocated.clone();
        allocated.resize(pages, false);
        // Pages that hold durable non-zero bytes are certainly allocated.
        for (i, chunk) in out.chunks(PAGE_BYTES as usize).enumerate() {
            if chunk.iter().any(|&b| b != 0) {
                allocated.set(i, true);
            }
        }
        (out, allocated)
    }
}
