//! FasterKV's hybrid log: one address space over the page ring in memory and page nodes in the
//! runtime. Addresses are `page * page_bytes + offset`; the regions are
//! `LOG_BEGIN <= head <= safe_read_only <= read_only <= tail`.
//!
//! Invariants (prefix HL):
//! - HL1. Every address boundary only grows. `tail` packs `page << 32 | offset`; a reservation
//!   is a CAS that never carries the offset past the page's end. The reservation that does not
//!   fit closes the page (offset to `page_bytes`) and notes the page's used bytes in its slot's
//!   `closed_at` while still protected.
//! - HL2. `read_only` moves, a page at a time, when the tail enters a new page: to
//!   `tail page + 1 - mutable_pages` pages. `safe_read_only` follows it by an epoch action, so
//!   once an address is below `safe_read_only` every thread that could have seen the old
//!   `read_only` has left the region it saw it in: nothing updates the page in place any more,
//!   and no writer of a reservation on it is still writing.
//! - HL3. The flusher writes a page as one node (committed EVENTUAL, its id pushed to the page
//!   table) only once the page lies wholly below `safe_read_only`; `flushed` moves past the page
//!   after that, so pages are flushed in order and the page table's position is the page.
//! - HL4. A slot is taken from its page only when `flushed` has passed the page: `head` moves
//!   past it first, and the slot is zeroed and made reusable by an epoch action, so a thread
//!   protected while `head` was below the page still reads its bytes. A protected thread that
//!   reads an address at or above `head` therefore finds it in memory (HL5).
//! - HL5. Records lie in their page's slot while the page is resident; below `head` they are
//!   read from the page node, checksum verified on the first read of the node.
//!
//! Checkpoints fold the log over ([`HybridLog::fold_over`]: the tail's page is closed and every
//! page below the new tail flushed) and commit through [`HybridLog::commit_checkpoint`]; a
//! recovered log ([`HybridLog::recovered`]) starts empty in memory at the checkpoint's tail.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, RwLock};
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{CorruptionKind, NodeId};

use super::checkpoint_meta::{CheckpointMeta, KV_CHUNK_KIND, KV_DELTA_KIND, encode_chunk};
use super::page::{KV_PAGE_KIND, PageHeader, decode_page, write_page_node};
use super::record::{RecordRef, RecordWords};
use super::store_node::{KV_STORE_KIND, StoreNode};
use crate::epoch::Epoch;
use crate::ring::Slot;
use crate::{Error, Result};

/// The first address of the log: page 0 keeps 64 zero bytes, so address 0 means "no record"
/// and 1 ([`super::index::ADDRESS_UNSET`]) "an index entry with no record yet".
pub const LOG_BEGIN: u64 = 64;

/// What epoch actions and the flusher share with the log.
#[derive(Debug, Default)]
struct Shared {
    safe_read_only: AtomicU64,
    state: Mutex<FlushState>,
    /// Signalled when `safe_read_only`, `flushed` or a slot's reusability changes.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct FlushState {
    stop: bool,
    failed: Option<String>,
}

impl Shared {
    fn notify(&self) {
        let _st = self.state.lock();
        self.changed.notify_all();
    }
}

/// A flushed page: its node, and whether a read has checked the node's checksum.
#[derive(Debug)]
struct PageNode {
    id: NodeId,
    verified: AtomicBool,
}

/// What [`HybridLog::reserve`] got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// The bytes at this address are the caller's.
    At(u64),
    /// The tail's page is full: [`HybridLog::advance`] it (unprotected) and try again.
    PageFull(u64),
}

/// The hybrid log.
#[derive(Debug)]
pub(crate) struct HybridLog {
    rt: Arc<DurableRuntime>,
    name: String,
    page_shift: u32,
    mutable_pages: u64,
    slots: Box<[Arc<Slot>]>,
    closed_at: Box<[AtomicU64]>,
    tail: AtomicU64,
    read_only: AtomicU64,
    head: AtomicU64,
    flushed: AtomicU64,
    shared: Arc<Shared>,
    pub(crate) epoch: Epoch,
    advance_lock: Mutex<()>,
    pages: RwLock<Vec<PageNode>>,
    /// The root naming the store node, and the store node once the first flush wrote it, with
    /// the last checkpoint it records (every rewrite keeps it).
    root: String,
    store_node: Mutex<StoreState>,
}

/// The store node and the checkpoint section it carries.
#[derive(Debug, Default)]
struct StoreState {
    id: Option<NodeId>,
    checkpoint: Option<CheckpointMeta>,
}

/// What a checkpoint writes of the index.
#[derive(Debug, Default)]
pub(crate) struct IndexWrites {
    /// Whole chunk images.
    pub chunks: Vec<(usize, Vec<u64>)>,
    /// A delta node's bytes.
    pub delta: Option<Vec<u8>>,
    /// Whether the delta nodes so far are retired (their chunks were rewritten whole).
    pub retire_deltas: bool,
}

/// The index's nodes as the last checkpoint left them.
#[derive(Debug, Default, Clone)]
pub(crate) struct IndexNodes {
    /// Each chunk's node, once written.
    pub chunks: Vec<Option<NodeId>>,
    /// Delta nodes, oldest first.
    pub deltas: Vec<NodeId>,
}

/// Where a recovered log starts: its page nodes up to `tail`, and the store node.
#[derive(Debug)]
pub(crate) struct RecoveredLog {
    pub pages: Vec<NodeId>,
    pub tail: u64,
    pub store_node: NodeId,
    pub checkpoint: CheckpointMeta,
}

fn missing_chunk() -> Error {
    Error::InvalidArgument("internal: a checkpoint without a node for every index chunk".into())
}

fn pack(page: u64, offset: u64) -> u64 {
    (page << 32) | offset
}

impl HybridLog {
    /// An empty log of `memory_pages` slots of `page_bytes` (validated by the options).
    pub(crate) fn new(
        rt: Arc<DurableRuntime>,
        (name, root): (&str, &str),
        page_bytes: u32,
        memory_pages: u64,
        mutable_pages: u64,
    ) -> Result<HybridLog> {
        let slots: Box<[Arc<Slot>]> = (0..memory_pages)
            .map(|_| Slot::new(page_bytes).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let closed_at = (0..memory_pages)
            .map(|_| AtomicU64::new(u64::from(page_bytes)))
            .collect();
        slots[0].reusable.store(false, SeqCst);
        slots[0].resident.store(1, SeqCst);
        Ok(HybridLog {
            rt,
            name: name.to_owned(),
            page_shift: page_bytes.trailing_zeros(),
            mutable_pages,
            slots,
            closed_at,
            tail: AtomicU64::new(pack(0, LOG_BEGIN)),
            read_only: AtomicU64::new(LOG_BEGIN),
            head: AtomicU64::new(LOG_BEGIN),
            flushed: AtomicU64::new(0),
            shared: Arc::new(Shared {
                safe_read_only: AtomicU64::new(LOG_BEGIN),
                ..Shared::default()
            }),
            epoch: Epoch::new(),
            advance_lock: Mutex::new(()),
            pages: RwLock::new(Vec::new()),
            root: root.to_owned(),
            store_node: Mutex::new(StoreState::default()),
        })
    }

    /// A log recovered from a checkpoint: the page nodes below `tail` (a page boundary) hold
    /// its records, and the tail's page starts empty in memory (CK of DURABILITY.md §8).
    pub(crate) fn recovered(
        rt: Arc<DurableRuntime>,
        names: (&str, &str),
        (page_bytes, memory_pages, mutable_pages): (u32, u64, u64),
        log: RecoveredLog,
    ) -> Result<HybridLog> {
        let hlog = HybridLog::new(rt, names, page_bytes, memory_pages, mutable_pages)?;
        let page = log.tail >> hlog.page_shift;
        hlog.slots[0].reusable.store(true, SeqCst);
        hlog.slots[0].resident.store(0, SeqCst);
        let idx = hlog.slot_index(page);
        hlog.slots[idx].reusable.store(false, SeqCst);
        hlog.slots[idx].resident.store(page + 1, SeqCst);
        hlog.tail.store(pack(page, 0), SeqCst);
        for a in [&hlog.read_only, &hlog.head, &hlog.flushed] {
            a.store(log.tail, SeqCst);
        }
        hlog.shared.safe_read_only.store(log.tail, SeqCst);
        *hlog.pages.write() = (log.pages.iter())
            .map(|&id| PageNode {
                id,
                verified: AtomicBool::new(false),
            })
            .collect();
        *hlog.store_node.lock() = StoreState {
            id: Some(log.store_node),
            checkpoint: Some(log.checkpoint),
        };
        Ok(hlog)
    }

    pub(crate) fn page_bytes(&self) -> u64 {
        1 << self.page_shift
    }

    /// The tail address (the next record's, if it fits the tail's page).
    pub(crate) fn tail(&self) -> u64 {
        let t = self.tail.load(SeqCst);
        ((t >> 32) << self.page_shift) + (t & 0xffff_ffff).min(self.page_bytes())
    }

    pub(crate) fn read_only(&self) -> u64 {
        self.read_only.load(SeqCst)
    }

    pub(crate) fn safe_read_only(&self) -> u64 {
        self.shared.safe_read_only.load(SeqCst)
    }

    pub(crate) fn head(&self) -> u64 {
        self.head.load(SeqCst)
    }

    /// Bytes below this are in page nodes.
    pub(crate) fn flushed(&self) -> u64 {
        self.flushed.load(SeqCst)
    }

    /// Pages written as nodes.
    pub(crate) fn flushed_pages(&self) -> u64 {
        self.pages.read().len() as u64
    }

    #[inline]
    fn slot_index(&self, page: u64) -> usize {
        let n = self.slots.len() as u64;
        // A mask where the ring is a power of two (no division on the read path).
        if n.is_power_of_two() {
            (page & (n - 1)) as usize
        } else {
            (page % n) as usize
        }
    }

    /// The words of the page holding `address`, and the address's offset in them. The caller
    /// is protected and read `address >= head` after entering (HL4).
    #[inline]
    pub(crate) fn words_at(&self, address: u64) -> (&[AtomicU64], usize) {
        let page = address >> self.page_shift;
        let slot = &self.slots[self.slot_index(page)];
        // Resident, or evicted but not yet reusable (HL4: its words stay until the protected
        // threads have left).
        debug_assert!(
            matches!(slot.resident.load(SeqCst), r if r == page + 1 || r == 0),
            "page {page} is not in its slot"
        );
        (slot.words(), (address & (self.page_bytes() - 1)) as usize)
    }

    /// Asks the cache for the first 40 bytes of the record at `address` if it is in memory (a
    /// batch's second stage): a small record's header, key and value (8 bytes each). Only a hint: an address that is stale, below `head` or not a
    /// record's start costs a wasted fetch, never a wrong value.
    #[inline]
    pub(crate) fn prefetch_record(&self, address: u64) {
        // An index entry names a record below the tail.
        if address < self.head() {
            return;
        }
        let (words, offset) = self.words_at(address);
        let first = offset / 8;
        if let Some(w) = words.get(first) {
            vellum::words::prefetch(w);
        }
        // The 40 bytes may end on the next line.
        if (offset & 63) > 24
            && let Some(w) = words.get(first + 4)
        {
            vellum::words::prefetch(w);
        }
    }

    /// The record at `address` in memory (the same conditions as [`HybridLog::words_at`]).
    #[inline]
    pub(crate) fn record_at(&self, address: u64) -> Result<RecordWords<'_>> {
        let (words, offset) = self.words_at(address);
        Ok(RecordWords::at(words, offset)?)
    }

    /// Reserves `size` bytes (a multiple of 8, at most a page) on the tail's page (HL1). The
    /// caller is protected and writes the record before leaving.
    pub(crate) fn reserve(&self, size: u32) -> Reserved {
        let (p, size) = (self.page_bytes(), u64::from(size));
        let mut seen = self.tail.load(SeqCst);
        loop {
            let (page, offset) = (seen >> 32, seen & 0xffff_ffff);
            if offset >= p {
                return Reserved::PageFull(page);
            }
            let fits = offset + size <= p;
            let next = if fits { seen + size } else { pack(page, p) };
            match self.tail.compare_exchange_weak(seen, next, SeqCst, SeqCst) {
                Ok(_) if fits => return Reserved::At((page << self.page_shift) + offset),
                Ok(_) => {
                    self.closed_at[self.slot_index(page)].store(offset, SeqCst);
                    return Reserved::PageFull(page);
                }
                Err(now) => seen = now,
            }
        }
    }

    /// Moves the tail from full page `page` to the next once that page's slot is free, waiting
    /// for the flusher when it is not (HL4). The caller must not be protected: the actions it
    /// waits for wait for protected threads.
    pub(crate) fn advance(&self, page: u64) -> Result<()> {
        let next = page + 1;
        let mut waited = 0u32;
        loop {
            if self.tail.load(SeqCst) >> 32 != page {
                return Ok(());
            }
            let idx = self.slot_index(next);
            let slot = &self.slots[idx];
            if slot.reusable.load(SeqCst) {
                let _one = self.advance_lock.lock();
                if self.tail.load(SeqCst) >> 32 != page {
                    return Ok(());
                }
                slot.reusable.store(false, SeqCst);
                self.closed_at[idx].store(self.page_bytes(), SeqCst);
                slot.resident.store(next + 1, SeqCst);
                self.tail.store(pack(next, 0), SeqCst);
                self.shift_read_only(next);
                return Ok(());
            }
            self.evict(idx)?;
            self.epoch.drain();
            self.check_flusher()?;
            waited += 1;
            if waited == 20_000 {
                tracing::warn!(
                    log = %self.name,
                    page = next,
                    "appender waiting for a page slot: is a session idle while protected?"
                );
            }
            let mut st = self.shared.state.lock();
            if !slot.reusable.load(SeqCst) && st.failed.is_none() {
                self.shared
                    .changed
                    .wait_for(&mut st, Duration::from_micros(200));
            }
        }
    }

    /// HL2: `read_only` to `mutable_pages` pages below the end of the tail's page `page`.
    fn shift_read_only(&self, page: u64) {
        let Some(pages) = (page + 1).checked_sub(self.mutable_pages) else {
            return;
        };
        let target = (pages << self.page_shift).max(LOG_BEGIN);
        if self.read_only.fetch_max(target, SeqCst) < target {
            let shared = Arc::clone(&self.shared);
            self.epoch.bump_with(move || {
                shared.safe_read_only.fetch_max(target, SeqCst);
                shared.notify();
            });
        }
    }

    /// HL4: gives up the page in slot `idx` once it is flushed.
    fn evict(&self, idx: usize) -> Result<()> {
        let slot = &self.slots[idx];
        let resident = slot.resident.load(SeqCst);
        let Some(old) = resident.checked_sub(1) else {
            return Ok(());
        };
        let end = (old + 1) << self.page_shift;
        if self.flushed() < end {
            return Ok(());
        }
        self.head.fetch_max(end, SeqCst);
        if slot
            .resident
            .compare_exchange(resident, 0, SeqCst, SeqCst)
            .is_ok()
        {
            let (slot, shared) = (Arc::clone(slot), Arc::clone(&self.shared));
            self.epoch.bump_with(move || {
                slot.zero();
                slot.reusable.store(true, SeqCst);
                shared.notify();
            });
        }
        Ok(())
    }

    fn check_flusher(&self) -> Result<()> {
        match &self.shared.state.lock().failed {
            Some(e) => Err(Error::FlushFailed(e.clone())),
            None => Ok(()),
        }
    }

    /// The flusher's loop (HL3), until [`HybridLog::stop_flusher`].
    pub(crate) fn run_flusher(&self) {
        loop {
            let next = self.flushed() >> self.page_shift;
            let end = (next + 1) << self.page_shift;
            if end <= self.safe_read_only() {
                if let Err(e) = self.flush_page(next) {
                    tracing::error!(log = %self.name, page = next, %e, "page flush failed");
                    self.shared.state.lock().failed = Some(e.to_string());
                    self.shared.notify();
                    return;
                }
                self.shared.notify();
                continue;
            }
            self.epoch.drain();
            let mut st = self.shared.state.lock();
            if st.stop {
                return;
            }
            if end > self.safe_read_only() {
                self.shared
                    .changed
                    .wait_for(&mut st, Duration::from_millis(5));
            }
        }
    }

    pub(crate) fn stop_flusher(&self) {
        self.shared.state.lock().stop = true;
        self.shared.notify();
    }

    /// Writes page `page` as one node and records it (HL3).
    fn flush_page(&self, page: u64) -> Result<()> {
        let slot = &self.slots[self.slot_index(page)];
        debug_assert!(slot.holds(page));
        let used = self.closed_at[self.slot_index(page)].load(SeqCst);
        let header = PageHeader {
            page,
            page_bytes: self.page_bytes() as u32,
            used_bytes: used as u32,
            records_begin: if page == 0 { LOG_BEGIN as u32 } else { 0 },
        };
        let mut txn = self.rt.begin();
        let mut filled = Ok(());
        let id = txn.alloc_with(KV_PAGE_KIND, header.node_bytes(), |out| {
            filled = write_page_node(&header, slot.words(), out);
        })?;
        if let Err(e) = filled {
            txn.abort();
            return Err(Error::Store(e.to_corruption(self.page_path(page))));
        }
        // KS: the store node lists the new page in the same transaction, so no page node is
        // ever unreachable from the root.
        let mut store = self.store_node.lock();
        let mut pages = self.page_nodes();
        pages.push(id);
        let checkpoint = store.checkpoint.clone();
        self.write_store_node(&mut txn, &mut store, pages, checkpoint)?;
        txn.commit_with(CommitPolicy::Eventual)?;
        // Listed before the store node's lock is given up: a checkpoint that rewrites the
        // store node next must list this page too (KV1).
        self.pages.write().push(PageNode {
            id,
            verified: AtomicBool::new(false),
        });
        drop(store);
        self.flushed.store((page + 1) << self.page_shift, SeqCst);
        Ok(())
    }

    /// Writes the store node (creating it and naming it from the root the first time) in
    /// `txn`, listing `pages` and `checkpoint`.
    fn write_store_node(
        &self,
        txn: &mut vellum::runtime::WriteTxn<'_>,
        store: &mut StoreState,
        pages: Vec<NodeId>,
        checkpoint: Option<CheckpointMeta>,
    ) -> Result<()> {
        let bytes = StoreNode {
            page_bytes: self.page_bytes() as u32,
            pages,
            checkpoint,
        }
        .encode();
        match store.id {
            Some(node) => txn.write(node, &bytes)?,
            None => {
                let node = txn.alloc(KV_STORE_KIND, &bytes)?;
                txn.set_root(&self.root, node)?;
                store.id = Some(node);
            }
        }
        Ok(())
    }

    /// CPR's fold-over: closes the tail's page (unless it is empty), moves `read_only` to the
    /// new tail and waits until the flusher wrote every page below it; returns that tail (a
    /// page boundary). The caller must not be protected.
    pub(crate) fn fold_over(&self) -> Result<u64> {
        let p = self.page_bytes();
        // One page is closed (the tail's, or none if it is empty): appenders go on in the next.
        let tail = loop {
            let seen = self.tail.load(SeqCst);
            let (page, offset) = (seen >> 32, seen & 0xffff_ffff);
            if offset == 0 {
                break page << self.page_shift;
            }
            if offset < p {
                if self
                    .tail
                    .compare_exchange(seen, pack(page, p), SeqCst, SeqCst)
                    .is_err()
                {
                    continue;
                }
                self.closed_at[self.slot_index(page)].store(offset, SeqCst);
            }
            self.advance(page)?;
            break (page + 1) << self.page_shift;
        };
        if self.read_only.fetch_max(tail, SeqCst) < tail {
            let shared = Arc::clone(&self.shared);
            self.epoch.bump_with(move || {
                shared.safe_read_only.fetch_max(tail, SeqCst);
                shared.notify();
            });
        }
        while self.flushed() < tail {
            self.epoch.drain();
            self.check_flusher()?;
            let mut st = self.shared.state.lock();
            if st.stop {
                return Err(Error::FlushFailed(
                    "the store closed during the checkpoint".into(),
                ));
            }
            if self.flushed() < tail && st.failed.is_none() {
                self.shared
                    .changed
                    .wait_for(&mut st, Duration::from_millis(1));
            }
        }
        Ok(tail)
    }

    /// Commits a checkpoint in one transaction under `policy`: the index's writes (chunk images
    /// as new versions of their nodes or new nodes, a new delta node, delta nodes retired) and
    /// the store node with `meta` (whose `chunks` and `deltas` this fills in, from `index`).
    /// `index` is updated once the transaction committed.
    pub(crate) fn commit_checkpoint(
        &self,
        mut meta: CheckpointMeta,
        writes: &IndexWrites,
        index: &mut IndexNodes,
        policy: CommitPolicy,
    ) -> Result<CheckpointMeta> {
        let mut store = self.store_node.lock();
        let mut txn = self.rt.begin();
        let mut chunks = index.chunks.clone();
        for (chunk, words) in &writes.chunks {
            let bytes = encode_chunk(*chunk, words);
            match chunks[*chunk] {
                Some(id) => txn.write(id, &bytes)?,
                None => chunks[*chunk] = Some(txn.alloc(KV_CHUNK_KIND, &bytes)?),
            }
        }
        let mut deltas = index.deltas.clone();
        if writes.retire_deltas {
            for id in deltas.drain(..) {
                txn.retire(id)?;
            }
        }
        if let Some(bytes) = &writes.delta {
            deltas.push(txn.alloc(KV_DELTA_KIND, bytes)?);
        }
        meta.chunks = (chunks.iter())
            .map(|n| n.ok_or_else(missing_chunk))
            .collect::<Result<_>>()?;
        meta.deltas = deltas.clone();
        let pages = self.page_nodes();
        self.write_store_node(&mut txn, &mut store, pages, Some(meta.clone()))?;
        txn.commit_with(policy)?;
        store.checkpoint = Some(meta.clone());
        index.chunks = chunks;
        index.deltas = deltas;
        Ok(meta)
    }

    /// The name errors about page `page` carry.
    pub(crate) fn page_path(&self, page: u64) -> PathBuf {
        PathBuf::from(format!("faster-kv/{}/page/{page}", self.name))
    }

    /// Calls `f` with the record at `address`, below `head`, from its page node (HL5).
    pub(crate) fn with_disk_record<R>(
        &self,
        address: u64,
        f: impl FnOnce(&RecordRef<'_>) -> R,
    ) -> Result<R> {
        let page = address >> self.page_shift;
        let offset = (address & (self.page_bytes() - 1)) as usize;
        let (id, verified) = {
            let pages = self.pages.read();
            let Some(p) = pages.get(page as usize) else {
                return Err(self.missing_page(page, pages.len()));
            };
            (p.id, p.verified.load(SeqCst))
        };
        let snapshot = self.rt.snapshot();
        let reader = snapshot.reader();
        let node = if verified {
            reader.get_unverified(id)?
        } else {
            reader.get(id)?
        };
        let Some(node) = node else {
            return Err(self.missing_page(page, page as usize));
        };
        if !verified && let Some(p) = self.pages.read().get(page as usize) {
            p.verified.store(true, SeqCst);
        }
        let path = || self.page_path(page);
        let view = decode_page(node).map_err(|e| e.to_corruption(path()))?;
        view.check_page(page, self.page_bytes() as u32)
            .map_err(|e| e.to_corruption(path()))?;
        let record = view
            .record_at(offset)
            .map_err(|e| e.to_corruption(path()))?;
        Ok(f(&record))
    }

    fn missing_page(&self, page: u64, flushed: usize) -> Error {
        Error::Store(vellum::Error::corruption(
            self.page_path(page),
            page << self.page_shift,
            CorruptionKind::Mismatch {
                what: "page node of a flushed page",
                expected: page + 1,
                actual: flushed as u64,
            },
        ))
    }

    /// The page nodes written (for retiring them when the store closes).
    pub(crate) fn page_nodes(&self) -> Vec<NodeId> {
        self.pages.read().iter().map(|p| p.id).collect()
    }

    /// The store node, once a flush has written it.
    pub(crate) fn store_node(&self) -> Option<NodeId> {
        self.store_node.lock().id
    }

    pub(crate) fn runtime(&self) -> &Arc<DurableRuntime> {
        &self.rt
    }
}
