//! `DataFiles`: the per-class data files, one descriptor each, reached through mapped windows.
//!
//! Invariants:
//! 1. One open descriptor per data file, shared by every reader and writer (`Arc`).
//! 2. A file's length is a whole number of windows; it only grows (by `ensure`, sparse), so every
//!    window lies inside its file (see `windows.rs`, rule 2).
//! 3. Installed windows hold at most `mapped_bytes_max` bytes: installing one evicts the least
//!    recently used others first. Evicted windows are unmapped once no guard can reach them and
//!    the epoch collector runs, so the bytes still mapped can exceed the budget by the evicted
//!    windows whose readers have not left yet (`mapped_bytes` reports both).
//! 4. A file created since the last `sync_dir` is remembered, so the runtime can make its
//!    directory entry durable before any durable state names it.
//! 6. A slot's bytes have one writer before any reader: `write` is only called (by the runtime)
//!    on a slot its caller owns, one just allocated for a version no reader can reach yet, or,
//!    in recovery, before the runtime is handed to anyone; `read` and the read fast path are only
//!    called for slots of versions a reader can see, which are not written again until
//!    reclamation frees them once no reader can reach them. So no slice `read` lends out ever
//!    sees its bytes change, which the mapping contract (`StorageFile::map`, rule 2) needs. Both
//!    are crate-private; the `internals` feature exposes them only as `unsafe` functions with
//!    this rule as their contract.
//! 5. Every change of a file's bytes or length marks the file dirty *before* it counts in the
//!    write generation, and every write counts there before it returns: so a sync that reads the
//!    generation `g` first and then syncs every dirty file covers every change counted up to `g`,
//!    whoever made it (a transaction, compaction, recovery's write-backs). No caller has to
//!    remember to count its writes.
//! 7. Nothing writes through a window of the large class, which is mapped read-only
//!    (`StorageFile::map_read_only`): every large node (more than 256 KiB) is written with
//!    `write_at`, from `write` or `fill`. Its window spans a whole 64 MiB region, most of which
//!    may be free runs and holes; a writable mapping would have to reserve them (the fault
//!    storage does, to turn a write into a hole on a full disk into an error rather than a
//!    SIGBUS), and reading holes through a read-only mapping allocates nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_epoch::{Atomic, Guard, Owned};
use parking_lot::Mutex;

use super::location::{
    CLASS_COUNT, LARGE_CLASS, Location, SMALL_SLOT_BYTES_MAX, class_len_max, len_fits, slot_bytes,
};
use super::segments::{AllocOptions, EmptySegment, SegmentAllocator, segment_bytes};
use super::windows::{FILE_SHIFT_MAX, MapAccount, WindowDirectory, WindowPin};
use crate::error::{Error, Result};
use crate::io::{Storage, StorageFile};

// A directory reserves slots for every window a file can hold: files of at most
// FILE_BYTES_MAX_LIMIT bytes in windows of at least 1 MiB.
const _: () = assert!(super::segments::FILE_BYTES_MAX_LIMIT >> 20 <= 1 << FILE_SHIFT_MAX);

/// Writes at least this large go through `write_at` rather than a mapped window: a fresh mapped
/// page costs a page fault (and zeroing) before the copy, which for a 1 MiB node is 256 faults.
const WRITE_AT_BYTES_MIN: usize = 64 << 10;
// Every large node is written with `write_at`, never through a window (`fill`).
const _: () = assert!(WRITE_AT_BYTES_MIN as u64 <= SMALL_SLOT_BYTES_MAX);
/// Nodes of at least this many bytes start their writeback as soon as they are written
/// (`StorageFile::start_writeback`), so the device writes them while the writer goes on and the
/// commit's data sync finds them mostly done. Measured with FasterLog's 1 MiB pages (2-vCPU VM):
/// append throughput went from 73-86 % to 106-118 % of a raw sequential write+fdatasync.
const START_WRITEBACK_BYTES_MIN: usize = 256 << 10;

/// Largest buffer [`DataFiles::fill`] keeps for a thread's next large fill (4 MiB: a FasterLog
/// page of the default size fits; a larger one is allocated for its fill and freed after).
const FILL_BUFFER_BYTES_KEPT: usize = 4 << 20;

thread_local! {
    /// The buffer large fills reuse, so filling a 1 MiB page neither allocates nor faults in
    /// fresh memory each time.
    static FILL_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Most collector rounds one write runs to unmap evicted windows (each is a pin and a flush).
const COLLECT_ROUNDS_MAX: usize = 64;

/// Settings of the data files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataFileOptions {
    /// Allocator settings (file size).
    pub alloc: AllocOptions,
    /// Bytes of a mapped window (a power of two, at least 1 MiB); a class whose segment is larger
    /// (the large class's 64 MiB regions) uses one segment per window. Default 64 MiB.
    pub window_bytes: u64,
    /// Most bytes of installed windows. Default 1 GiB.
    pub mapped_bytes_max: u64,
}

impl Default for DataFileOptions {
    fn default() -> Self {
        DataFileOptions {
            alloc: AllocOptions::default(),
            window_bytes: 64 << 20,
            mapped_bytes_max: 1 << 30,
        }
    }
}

impl DataFileOptions {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        self.alloc.validate()?;
        if !self.window_bytes.is_power_of_two()
            || self.window_bytes < (1 << 20)
            || self.window_bytes > self.alloc.file_bytes_max
        {
            return Err(Error::InvalidArgument(format!(
                "window_bytes must be a power of two from 1 MiB to file_bytes_max, got {}",
                self.window_bytes
            )));
        }
        // A class whose window is larger than the budget (large objects) is mapped alone, after
        // every other window was evicted.
        if self.mapped_bytes_max < self.window_bytes {
            return Err(Error::InvalidArgument(format!(
                "mapped_bytes_max must hold at least one {}-byte window, got {}",
                self.window_bytes, self.mapped_bytes_max
            )));
        }
        Ok(())
    }

    /// Window size of `class`: a whole number of its segments, so no slot or extent crosses a
    /// window.
    pub fn class_window_bytes(&self, class: u8) -> u64 {
        self.window_bytes.max(segment_bytes(class))
    }
}

/// The name of data file `file` of `class`.
pub fn data_file_name(class: u8, file: u32) -> String {
    format!("data-{class:02}-{file:08x}.seg")
}

/// Parses a name written by [`data_file_name`].
pub fn parse_data_file_name(name: &str) -> Option<(u8, u32)> {
    let rest = name.strip_prefix("data-")?.strip_suffix(".seg")?;
    let (class, file) = rest.split_once('-')?;
    if class.len() != 2 || file.len() != 8 {
        return None;
    }
    let class: u8 = class.parse().ok()?;
    let file = u32::from_str_radix(file, 16).ok()?;
    (usize::from(class) < CLASS_COUNT).then_some((class, file))
}

/// One data file.
#[derive(Debug)]
struct DataFile {
    file: Arc<dyn StorageFile>,
    len: AtomicU64,
    /// Written since the last sync.
    dirty: AtomicBool,
}

impl DataFile {
    /// `fdatasync` if written since the last sync; true if it synced. The flag is cleared before
    /// the sync (a write racing it sets it again) and restored if the sync fails.
    fn sync_if_dirty(&self) -> Result<bool> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        if let Err(e) = self.file.sync_data() {
            self.dirty.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(true)
    }
}

/// Every data file of a store.
#[derive(Debug)]
pub struct DataFiles {
    storage: Arc<dyn Storage>,
    dir: PathBuf,
    options: DataFileOptions,
    /// Per class, the files by number; replaced (copy on write) when a file is added.
    classes: Box<[Atomic<Vec<Arc<DataFile>>>]>,
    /// Per class, the installed windows of every file (window sizes are powers of two, so shifts
    /// keep divisions off the read path).
    dirs: [WindowDirectory; CLASS_COUNT],
    /// Serialises file creation and growth.
    grow: Mutex<()>,
    account: Arc<MapAccount>,
    created_unsynced: AtomicBool,
    /// Changes (writes and growth) made so far, counted after their file was marked dirty
    /// (invariant 5).
    write_generation: AtomicU64,
}

impl Drop for DataFiles {
    #[expect(unsafe_code, reason = "freeing the epoch-managed file lists at drop")]
    fn drop(&mut self) {
        // SAFETY: `&mut self` means nothing borrows the lists any more (pins borrow `&self`).
        let guard = unsafe { crossbeam_epoch::unprotected() };
        for list in self.classes.iter() {
            let old = list.swap(crossbeam_epoch::Shared::null(), Ordering::AcqRel, guard);
            if !old.is_null() {
                // SAFETY: unlinked above, owned by this list alone, and no reader remains.
                drop(unsafe { old.into_owned() });
            }
        }
    }
}

impl DataFiles {
    /// Opens the data files of `dir`: each `(class, file, len)` in `existing` must exist. Files are
    /// numbered densely from 0 within a class.
    pub fn open(
        storage: Arc<dyn Storage>,
        dir: &Path,
        options: DataFileOptions,
        existing: &[(u8, u32)],
    ) -> Result<Self> {
        options.validate()?;
        let files = DataFiles {
            storage,
            dir: dir.to_path_buf(),
            options,
            classes: (0..CLASS_COUNT).map(|_| Atomic::new(Vec::new())).collect(),
            dirs: std::array::from_fn(|c| {
                let window = options.class_window_bytes(c as u8);
                WindowDirectory::new(
                    window.trailing_zeros(),
                    options.alloc.file_bytes_max.div_ceil(window),
                )
            }),
            grow: Mutex::new(()),
            account: Arc::new(MapAccount::default()),
            created_unsynced: AtomicBool::new(false),
            write_generation: AtomicU64::new(0),
        };
        let mut sorted = existing.to_vec();
        sorted.sort_unstable();
        for (class, number) in sorted {
            let guard = crossbeam_epoch::pin();
            let have = files.file_count(class, &guard);
            if usize::from(class) >= CLASS_COUNT || number as usize != have {
                return Err(Error::InvalidArgument(format!(
                    "data files of class {class} must be numbered densely; got {number} after {have}"
                )));
            }
            let path = files.path_of(class, number);
            let f = files.storage.open(&path)?;
            let len = f.len()?;
            files.push_file(class, f, len, &guard);
        }
        Ok(files)
    }

    /// The settings.
    pub fn options(&self) -> DataFileOptions {
        self.options
    }

    fn path_of(&self, class: u8, file: u32) -> PathBuf {
        self.dir.join(data_file_name(class, file))
    }

    fn list<'g>(&self, class: u8, guard: &'g Guard) -> &'g [Arc<DataFile>] {
        let Some(atomic) = self.classes.get(usize::from(class)) else {
            return &[];
        };
        let shared = atomic.load(Ordering::Acquire, guard);
        #[expect(unsafe_code, reason = "epoch-protected file list")]
        // SAFETY: lists are replaced by swap + `defer_destroy`, so one loaded under `guard` stays
        // valid while the guard lives.
        let list = unsafe { shared.as_ref() };
        list.map(Vec::as_slice).unwrap_or(&[])
    }

    fn file_count(&self, class: u8, guard: &Guard) -> usize {
        self.list(class, guard).len()
    }

    /// Appends a file to `class`'s list (caller holds `grow`).
    fn push_file(&self, class: u8, file: Arc<dyn StorageFile>, len: u64, guard: &Guard) {
        let mut next: Vec<Arc<DataFile>> = self.list(class, guard).to_vec();
        next.push(Arc::new(DataFile {
            file,
            len: AtomicU64::new(len),
            dirty: AtomicBool::new(false),
        }));
        let old = self.classes[usize::from(class)].swap(Owned::new(next), Ordering::AcqRel, guard);
        #[expect(unsafe_code, reason = "retiring the replaced file list")]
        // SAFETY: `old` is unlinked; readers that loaded it hold guards, and destruction waits.
        unsafe {
            guard.defer_destroy(old)
        };
    }

    /// Makes sure the file holding `loc` exists and is long enough to map its window.
    pub fn ensure(&self, loc: Location) -> Result<()> {
        let guard = crossbeam_epoch::pin();
        let window = self.options.class_window_bytes(loc.class);
        let need = (loc.offset / window + 1) * window;
        if let Some(f) = self.list(loc.class, &guard).get(loc.file as usize)
            && f.len.load(Ordering::Acquire) >= need
        {
            return Ok(());
        }
        let _g = self.grow.lock();
        while self.file_count(loc.class, &guard) <= loc.file as usize {
            let number = self.file_count(loc.class, &guard) as u32;
            let path = self.path_of(loc.class, number);
            let f = self.storage.create(&path)?;
            self.created_unsynced.store(true, Ordering::Release);
            tracing::debug!(path = %path.display(), "created data file");
            self.push_file(loc.class, f, 0, &guard);
        }
        let list = self.list(loc.class, &guard);
        let f = &list[loc.file as usize];
        if f.len.load(Ordering::Acquire) < need {
            f.file.set_len(need)?;
            // Invariant 5: dirty before the new length is visible, so a sync that sees the
            // length (the checkpoint's K5 records it) also syncs the growth.
            f.dirty.store(true, Ordering::Release);
            f.len.store(need, Ordering::Release);
            self.count_change();
        }
        Ok(())
    }

    /// Counts a change whose file is already marked dirty (invariant 5).
    fn count_change(&self) {
        self.write_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The number of changes made so far: a sync that reads this first and then syncs every
    /// dirty file covers all of them (invariant 5).
    pub fn write_generation(&self) -> u64 {
        self.write_generation.load(Ordering::Acquire)
    }

    /// The window holding `loc`, mapping it (and evicting others) if needed, with the offset of
    /// `loc` inside it.
    #[inline]
    pub(crate) fn window<'g>(
        &'g self,
        loc: Location,
        guard: &'g Guard,
    ) -> Result<(WindowPin<'g>, usize)> {
        let missing = || Error::InvalidArgument(format!("{loc:?} lies outside the data files"));
        let dir = self.dirs.get(usize::from(loc.class)).ok_or_else(missing)?;
        let n = dir.slot_number(loc.file, loc.offset).ok_or_else(missing)?;
        let shift = dir.window_shift();
        let within = (loc.offset & ((1u64 << shift) - 1)) as usize;
        if let Some(pin) = dir.get(n, &self.account, guard) {
            return Ok((pin, within));
        }
        self.install_window(loc, n, guard).map(|pin| (pin, within))
    }

    /// The slow path of [`DataFiles::window`]: checks that the window lies in an existing file
    /// and maps it.
    #[cold]
    #[inline(never)]
    fn install_window<'g>(
        &'g self,
        loc: Location,
        n: u64,
        guard: &'g Guard,
    ) -> Result<WindowPin<'g>> {
        let missing = || Error::InvalidArgument(format!("{loc:?} lies outside the data files"));
        let dir = self.dirs.get(usize::from(loc.class)).ok_or_else(missing)?;
        let window_bytes = 1u64 << dir.window_shift();
        let f = self
            .list(loc.class, guard)
            .get(loc.file as usize)
            .ok_or_else(missing)?;
        let start = (loc.offset >> dir.window_shift()) << dir.window_shift();
        if start + window_bytes > f.len.load(Ordering::Acquire) {
            return Err(missing());
        }
        // Another thread may install the same window first, and an eviction may remove it again
        // before we look: retry until a window is in place.
        loop {
            if let Some(pin) = dir.get(n, &self.account, guard) {
                return Ok(pin);
            }
            self.make_room(window_bytes, guard);
            #[expect(unsafe_code, reason = "mapping a window; see the SAFETY below")]
            // SAFETY: `StorageFile::map`'s contract holds for data files: a data file only grows
            // (invariant 2: `ensure` is the only length change, and never shortens), nothing
            // else in the store truncates it, and a slot's bytes are written only by their one
            // owner before any reader can reach them (invariant 6), through this window or
            // `write_at`, never both at once for the same slot. A window of the large class is
            // mapped read-only: every large node is written with `write_at` (`fill`), so its
            // window, which spans a whole 64 MiB region, reserves no blocks for the region's
            // free runs.
            let mapping = unsafe {
                if loc.class == LARGE_CLASS {
                    f.file.map_read_only(start, window_bytes as usize)
                } else {
                    f.file.map(start, window_bytes as usize)
                }
            }?;
            if let Some(pin) = dir.install(n, mapping, &self.account, guard) {
                // Threads that made room at the same time may together have gone over budget;
                // the new window is the most recently used, so others go first.
                if self.account.installed_bytes.load(Ordering::Acquire)
                    > self.options.mapped_bytes_max
                {
                    self.make_room(0, guard);
                }
                return Ok(pin);
            }
        }
    }

    /// Evicts least recently used windows until `incoming` more bytes fit the budget.
    fn make_room(&self, incoming: u64, guard: &Guard) {
        let budget = self.options.mapped_bytes_max;
        while self.account.installed_bytes.load(Ordering::Acquire) + incoming > budget {
            let mut oldest: Option<(&WindowDirectory, u64, u64)> = None;
            for dir in &self.dirs {
                for (n, used) in dir.installed(guard) {
                    if oldest.is_none_or(|o| used < o.2) {
                        oldest = Some((dir, n, used));
                    }
                }
            }
            let Some((dir, n, used)) = oldest else {
                return;
            };
            dir.evict(n, used, &self.account, guard);
        }
        // Hand the evicted windows to the collector now rather than when this thread's bag of
        // deferred work fills, and let it unmap earlier evictions whose readers have left (this
        // thread's own guard keeps only the current epoch's evictions alive).
        for _ in 0..COLLECT_ROUNDS_MAX {
            guard.flush();
            if self.account.mapped_bytes.load(Ordering::Acquire) <= budget {
                break;
            }
        }
    }

    /// Refuses a version of `len` bytes at `loc` unless its class holds that length and its
    /// slot or extent lies on its class's grid within one region (`location.rs`, invariants 1–3):
    /// the checks every write and fill makes before touching the file.
    fn check_fits(loc: Location, len: usize) -> Result<()> {
        let len = len as u64;
        if !len_fits(loc.class, len) {
            return Err(Error::InvalidArgument(format!(
                "{len} bytes do not fit the slot at {loc:?}"
            )));
        }
        if let Some(why) = loc.misplaced(len) {
            return Err(Error::InvalidArgument(format!(
                "{loc:?} for {len} bytes {why}"
            )));
        }
        Ok(())
    }

    /// Copies `data` into the slot or extent at `loc`, which the caller allocated (for `data`'s
    /// length) and owns (invariant 6). Crate-private: outside the runtime, a write under a
    /// reader's slice would be undefined behaviour, so even with the `internals` feature only
    /// `write_unchecked` (`unsafe`) is reachable:
    ///
    /// ```compile_fail,E0624
    /// # fn f(files: &vellum::alloc::DataFiles, loc: vellum::alloc::Location) {
    /// files.write(loc, b"bytes"); // error[E0624]: method `write` is private
    /// # }
    /// ```
    pub(crate) fn write(&self, loc: Location, data: &[u8]) -> Result<()> {
        Self::check_fits(loc, data.len())?;
        self.ensure(loc)?;
        if data.len() >= WRITE_AT_BYTES_MIN {
            // Large: through `write_at`, which copies into the page cache without faulting in a
            // mapping page by page (readers' windows see the same pages).
            // The file is taken out of the epoch-protected list and the guard dropped before
            // the copy: a thread pinned through a multi-MiB write (and a writeback start that
            // may wait for the device) holds the epoch back, and every window readers evict
            // meanwhile stays mapped (`tests/regression_windows_unbounded_under_a_writer.rs`).
            let f = self.file(loc.class, loc.file).ok_or_else(|| {
                Error::InvalidArgument(format!("{loc:?} lies outside the data files"))
            })?;
            f.file.write_at(data, loc.offset)?;
            f.dirty.store(true, Ordering::Release);
            self.count_change();
            if data.len() >= START_WRITEBACK_BYTES_MIN {
                f.file.start_writeback(loc.offset, data.len() as u64);
            }
            return Ok(());
        }
        {
            let guard = crossbeam_epoch::pin();
            let (pin, within) = self.window(loc, &guard)?;
            pin.write(within, data)?;
            if let Some(f) = self.list(loc.class, &guard).get(loc.file as usize) {
                f.dirty.store(true, Ordering::Release);
            }
            self.count_change();
        }
        self.collect_evicted();
        Ok(())
    }

    /// Writes `len` bytes into the slot at `loc`, which the caller allocated and owns
    /// (invariant 6), by handing `fill` a buffer to fill in place; then calls `observe` with the
    /// bytes as written (to checksum them, or copy a small node for its record) and returns what
    /// it returns. The buffer starts zeroed, so a byte `fill` leaves alone reads as zero (never
    /// as a byte of the slot's previous, freed version).
    ///
    /// Below [`WRITE_AT_BYTES_MIN`] the buffer is the slot itself, in its mapped window: nothing
    /// is copied. From it up, the buffer is a reusable one of this thread's (kept up to
    /// [`FILL_BUFFER_BYTES_KEPT`]), written with `write_at`: one copy into the page cache, as a
    /// write through the mapping would make page fault by page fault, only slower (`vellum bench
    /// log`, 1 MiB pages of 16 KiB entries: 109-131 % of raw bandwidth through the buffer,
    /// 77-91 % filled through the mapping, alternating runs on the 2-vCPU VM).
    pub(crate) fn fill<R>(
        &self,
        loc: Location,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        observe: impl FnOnce(&[u8]) -> R,
    ) -> Result<R> {
        Self::check_fits(loc, len)?;
        // Every large node takes this path (`WRITE_AT_BYTES_MIN` is below the large class's
        // lengths), so nothing writes through a window of the large class.
        if len >= WRITE_AT_BYTES_MIN {
            return FILL_BUFFER.with(|cell| {
                let mut buf = cell.take();
                buf.clear();
                buf.resize(len, 0);
                fill(&mut buf);
                let written = self.write(loc, &buf).map(|()| observe(&buf));
                if buf.capacity() <= FILL_BUFFER_BYTES_KEPT {
                    cell.replace(buf);
                }
                written
            });
        }
        self.ensure(loc)?;
        let observed = {
            let guard = crossbeam_epoch::pin();
            let (pin, within) = self.window(loc, &guard)?;
            let observed = pin.fill(within, len, fill, observe)?;
            if let Some(f) = self.list(loc.class, &guard).get(loc.file as usize) {
                f.dirty.store(true, Ordering::Release);
            }
            self.count_change();
            observed
        };
        self.collect_evicted();
        Ok(observed)
    }

    /// When evicted windows still mapped push the total past the budget, runs the epoch
    /// collector (with no guard of this thread held) so they are unmapped as soon as no other
    /// reader can reach them. Without this, a writer mapping windows faster than the collector's
    /// own pace would hold many evicted windows mapped. Readers call it too, once their guard
    /// is dropped (`with_node_at`, `SnapshotReader`'s drop): their reads evict windows under the
    /// guard, which holds the epoch back.
    pub(crate) fn collect_evicted(&self) {
        for _ in 0..COLLECT_ROUNDS_MAX {
            if self.account.mapped_bytes.load(Ordering::Acquire) <= self.options.mapped_bytes_max {
                return;
            }
            crossbeam_epoch::pin().flush();
        }
    }

    /// Borrows `len` bytes of the slot at `loc`, which holds a version a reader can see
    /// (invariant 6); valid while `guard` lives.
    #[inline]
    pub(crate) fn read<'g>(
        &'g self,
        loc: Location,
        len: usize,
        guard: &'g Guard,
    ) -> Result<&'g [u8]> {
        match self.read_installed(loc, len, guard) {
            Some(bytes) => Ok(bytes),
            None => self.read_slow(loc, len, guard),
        }
    }

    /// [`DataFiles::write`] for vellum's own tests and benchmarks (the `internals` feature).
    ///
    /// # Safety
    /// No slice of the slot's bytes (from [`DataFiles::read_unchecked`] or a lookup) may be alive
    /// while this runs, and no other write of the slot may run at the same time (invariant 6).
    #[cfg(feature = "internals")]
    #[expect(unsafe_code, reason = "the slot discipline is the caller's contract here")]
    pub unsafe fn write_unchecked(&self, loc: Location, data: &[u8]) -> Result<()> {
        self.write(loc, data)
    }

    /// [`DataFiles::read`] for vellum's own tests and benchmarks (the `internals` feature).
    ///
    /// # Safety
    /// The slot must not be written (through [`DataFiles::write_unchecked`] or the runtime)
    /// while the returned slice lives (invariant 6).
    #[cfg(feature = "internals")]
    #[expect(unsafe_code, reason = "the slot discipline is the caller's contract here")]
    pub unsafe fn read_unchecked<'g>(
        &'g self,
        loc: Location,
        len: usize,
        guard: &'g Guard,
    ) -> Result<&'g [u8]> {
        self.read(loc, len, guard)
    }

    /// The read fast path: the bytes if their window is installed and the range is sound.
    #[inline]
    fn read_installed<'g>(
        &'g self,
        loc: Location,
        len: usize,
        guard: &'g Guard,
    ) -> Option<&'g [u8]> {
        self.read_packed(loc.pack(), len, guard)
    }

    /// The read fast path on a packed location (see [`Location::pack`]): `len` bytes of its slot
    /// if the location is valid, `len` fits the slot, and the window is installed; `None`
    /// otherwise (the caller falls back to [`DataFiles::read`], which maps or explains).
    #[inline]
    pub(crate) fn read_packed<'g>(
        &'g self,
        word: u64,
        len: usize,
        guard: &'g Guard,
    ) -> Option<&'g [u8]> {
        let class = Location::packed_class(word);
        let dir = self.dirs.get(class)?;
        if len as u64 > class_len_max(class as u8) {
            return None;
        }
        let offset = Location::packed_offset(word);
        let pin = dir.get(
            dir.slot_number(Location::packed_file(word), offset)?,
            &self.account,
            guard,
        )?;
        let within = (offset & ((1u64 << dir.window_shift()) - 1)) as usize;
        pin.read_if_in_range(within, len)
    }

    /// The read slow path: maps the window, or explains why the range cannot be read.
    #[cold]
    #[inline(never)]
    fn read_slow<'g>(&'g self, loc: Location, len: usize, guard: &'g Guard) -> Result<&'g [u8]> {
        if len as u64 > class_len_max(loc.class) {
            return Err(Error::InvalidArgument(format!(
                "{len} bytes exceed the slot at {loc:?}"
            )));
        }
        let (pin, within) = self.window(loc, guard)?;
        pin.read(within, len)
    }

    /// `fdatasync` of every file written since its last sync; returns how many it synced.
    pub fn sync_written(&self) -> Result<u64> {
        let files: Vec<Arc<DataFile>> = {
            let guard = crossbeam_epoch::pin();
            (0..CLASS_COUNT as u8)
                .flat_map(|class| self.list(class, &guard).iter().cloned())
                .collect()
        };
        Self::sync_each(&files)
    }

    /// `fdatasync` of each of `which` (class, number) written since its last sync; returns how
    /// many it synced. Numbers past a class's files are skipped (nothing was written there).
    pub fn sync_files(&self, which: &[(u8, u32)]) -> Result<u64> {
        let files: Vec<Arc<DataFile>> = {
            let guard = crossbeam_epoch::pin();
            (which.iter())
                .filter_map(|&(class, file)| self.list(class, &guard).get(file as usize).cloned())
                .collect()
        };
        Self::sync_each(&files)
    }

    /// Syncs `files` with no epoch guard held: a thread pinned through an `fdatasync` holds the
    /// epoch back, and no window evicted meanwhile is unmapped
    /// (`tests/regression_windows_unbounded_under_a_writer.rs`).
    fn sync_each(files: &[Arc<DataFile>]) -> Result<u64> {
        let mut synced = 0;
        for f in files {
            synced += u64::from(f.sync_if_dirty()?);
        }
        Ok(synced)
    }

    /// Makes the directory entries of files created since the last call durable.
    pub fn sync_created(&self) -> Result<()> {
        if self.created_unsynced.swap(false, Ordering::AcqRel)
            && let Err(e) = self.storage.sync_dir(&self.dir)
        {
            self.created_unsynced.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(())
    }

    /// Allocates a slot of small class `class` from `alloc` whose blocks are reserved on disk,
    /// ready to write. The blocks of a new or returned segment are reserved while the allocator
    /// still holds the class, so no other allocation writes into the segment first; if reserving
    /// fails (a full disk), the slot is given back and the error returned.
    pub fn allocate_slot(&self, alloc: &SegmentAllocator, class: u8) -> Result<Location> {
        alloc.allocate_backed(class, |seg| self.back(seg))
    }

    /// Allocates room for a version of `len` bytes in `class` whose blocks are reserved, ready
    /// to write: a slot of a small class ([`DataFiles::allocate_slot`]), or a large extent of
    /// `round_up(len, 4 KiB)` bytes whose exact range is reserved here, after the allocator's
    /// lock is released (nothing else writes into an allocated extent). If reserving fails, the
    /// extent is given back and the error returned.
    pub fn allocate(&self, alloc: &SegmentAllocator, class: u8, len: u64) -> Result<Location> {
        if class != LARGE_CLASS {
            return self.allocate_slot(alloc, class);
        }
        let a = alloc.allocate_extent(len)?;
        if let Some(range) = a.back
            && let Err(e) = self.back(&range)
        {
            alloc.release(a.location);
            return Err(e);
        }
        Ok(a.location)
    }

    /// Reserves the blocks of a segment (`fallocate`), so writes through a window into it cannot
    /// hit a full disk. Grows the file first if needed.
    pub fn back(&self, seg: &EmptySegment) -> Result<()> {
        let start = Location {
            class: seg.class,
            file: seg.file,
            offset: seg.offset,
        };
        self.ensure(start)?;
        let guard = crossbeam_epoch::pin();
        match self.list(seg.class, &guard).get(seg.file as usize) {
            Some(f) => f.file.allocate(seg.offset, seg.len),
            None => Err(Error::InvalidArgument(format!(
                "no data file for {start:?}"
            ))),
        }
    }

    /// The range to reserve before writing a version of `len` bytes at `loc`: the segment
    /// holding a small slot, or a large extent itself.
    pub fn reservation(loc: Location, len: u64) -> EmptySegment {
        if loc.class == LARGE_CLASS {
            return EmptySegment {
                class: loc.class,
                file: loc.file,
                offset: loc.offset,
                len: slot_bytes(loc.class, len),
            };
        }
        let seg = segment_bytes(loc.class);
        EmptySegment {
            class: loc.class,
            file: loc.file,
            offset: loc.offset / seg * seg,
            len: seg,
        }
    }

    /// Returns a wholly free segment's blocks to the filesystem.
    pub fn punch(&self, seg: &EmptySegment) -> Result<()> {
        match self.file(seg.class, seg.file) {
            Some(f) => f.file.punch_hole(seg.offset, seg.len),
            None => Ok(()),
        }
    }

    /// Data file `number` of `class`, taken out of the epoch-protected list so that the caller's
    /// I/O on it runs with no guard held (a guard held across a syscall holds the epoch back,
    /// and no window evicted meanwhile is unmapped).
    fn file(&self, class: u8, number: u32) -> Option<Arc<DataFile>> {
        let guard = crossbeam_epoch::pin();
        self.list(class, &guard).get(number as usize).cloned()
    }

    /// `(class, file, length)` of every data file, for the manifest.
    pub fn files(&self) -> Vec<(u8, u32, u64)> {
        let guard = crossbeam_epoch::pin();
        let mut out = Vec::new();
        for class in 0..CLASS_COUNT as u8 {
            for (i, f) in self.list(class, &guard).iter().enumerate() {
                out.push((class, i as u32, f.len.load(Ordering::Acquire)));
            }
        }
        out
    }

    /// Bytes of disk all data files occupy.
    pub fn allocated_bytes(&self) -> Result<u64> {
        let files: Vec<Arc<DataFile>> = {
            let guard = crossbeam_epoch::pin();
            (0..CLASS_COUNT as u8)
                .flat_map(|class| self.list(class, &guard).iter().cloned())
                .collect()
        };
        let mut total = 0;
        for f in &files {
            total += f.file.allocated_bytes()?;
        }
        Ok(total)
    }

    /// The budget of mapped window bytes.
    pub fn mapped_bytes_max(&self) -> u64 {
        self.options.mapped_bytes_max
    }

    /// Bytes of installed windows (bounded by `mapped_bytes_max`).
    pub fn installed_bytes(&self) -> u64 {
        self.account.installed_bytes.load(Ordering::Acquire)
    }

    /// Bytes still mapped: installed windows plus evicted ones that readers may still hold.
    pub fn mapped_bytes(&self) -> u64 {
        self.account.mapped_bytes.load(Ordering::Acquire)
    }
}
