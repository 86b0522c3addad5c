//! FasterLog: reservation, publication, commit, reads, truncation and recovery.
//!
//! Invariants (the commit path is numbered in `design/DURABILITY.md` §7):
//! 1. `tail` packs `page << 32 | offset`, with `offset <= page_bytes` always; appenders reserve
//!    with a compare-and-swap, inside an epoch-protected region that lasts until their bytes are
//!    written. The first reservation that does not fit moves the offset to the page end and
//!    writes a filler at its start (still protected); the tail then advances to the next page,
//!    which happens only once that page's ring slot is reusable (ring invariant 2): an unflushed
//!    page is never overwritten. Nobody waits for anybody else's reservation.
//! 2. The *settled* tail: read `tail` (an offset at the page end is the next page's start), then
//!    wait until every thread protected at that moment has left (`Epoch::wait_for_protected`).
//!    Every reservation below the value read was made by such a thread, so every byte below it
//!    is written, and it is a reservation boundary: a batch (one reservation) is wholly below it
//!    or wholly above it.
//! 3. A commit persists the bytes between the persisted tail and a settled tail as new extent
//!    nodes, any new chunk nodes listing complete pages, and the metadata naming them, in one
//!    runtime transaction, so the committed tail is a reservation boundary too: recovery never
//!    exposes part of a batch, and never an entry appended after the last acknowledged commit's
//!    tail. Extents are never rewritten; a merge writes a new node and retires the old ones one
//!    commit later (meta invariant 4). Chunk nodes are never rewritten either (chunk invariant 1).
//! 4. One commit runs at a time (`writer`); callers whose target a running commit does not cover
//!    wait for it and start the next one (group commit).
//! 5. `state.table` lists every page's extents (table invariant 1); a page leaves memory only
//!    when `persisted` covers it, so a reader that does not find a page in the ring finds its
//!    extents. A reader takes its runtime snapshot while holding the state lock: the snapshot then
//!    sees every extent node that state lists (created by commits at or before it; retired no
//!    earlier than two commits later, or by a truncation, after begin moved past it). Readers
//!    never read chunk nodes; only recovery does.
//! 6. Only the holder of `writer` changes `state`, and it replaces the state's parts only after
//!    its runtime transaction committed, so a failed commit or truncation leaves the state as it
//!    was (apart from a truncation's in-memory `begin`, which only narrows what readers see).
//! 7. At most one handle per log and runtime: `open` claims root `faster-log:<name>` in the
//!    runtime before it reads anything and holds the claim until the handle drops, so `state`,
//!    `tail` and the ring are the only in-memory copy of the log's state and invariants 1-6 need
//!    not consider another writer.
//! 8. A read, or an iterator's first step, at an address that is not where an entry starts is
//!    [`Error::InvalidAddress`], never a corruption, and damaged bytes are always a corruption:
//!    the entry at the address is decoded as usual, and only when that fails (or finds a filler)
//!    are the page's entries walked from the page start (entries and the filler lie end to end
//!    from offset 0, entry invariant 1) to find whether the address is a boundary. Inside an
//!    entry or a filler: `InvalidAddress`; at a boundary: the entry's own corruption; damage met
//!    before the address: that entry's corruption. The hot path is unchanged, and iterators check
//!    only their first step (every later position is the end of a checked entry or a page start).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use vellum::CorruptionKind;
use vellum::NodeId;
use vellum::runtime::{DurableRuntime, RootClaim, WriteTxn};

use crate::entry::{FILLER_WORD, HEADER_BYTES, Header, decode_header, entry_bytes, entry_crc};
use crate::epoch::{Epoch, EpochGuard};
use crate::error::{Error, Result};
use crate::iter::{LogEntry, ScanIter, TailIter};
use crate::meta::{Extent, ITERATOR_NAME_BYTES_MAX, META_KIND, Meta, PAGE_KIND, extent_at};
use crate::options::FasterLogOptions;
use crate::ring::Slot;
use crate::table::{Draft, PageTable};

/// Prefix of the root naming a log's metadata node: `faster-log:<name>`.
pub const ROOT_PREFIX: &str = "faster-log:";
/// A commit's new extent absorbs the page's previous extent while that one is no longer than the
/// new one and both together stay within this (a binary counter: each byte of a page filled by
/// small commits is rewritten O(log) times, and a page holds O(log) small extents).
const MERGE_BYTES_MAX: u32 = 64 << 10;
/// A page that becomes complete with this many extents or more is rewritten as one extent, so a
/// sealed page costs fewer than this many entries in the metadata.
const SEALED_EXTENTS_MAX: usize = 4;

/// Where an address lies among its page's entries (invariant 8).
enum Located {
    /// An entry or the filler starts there.
    Start,
    /// Inside an entry.
    InEntry,
    /// Inside the filler that closes the page.
    InFiller,
}

/// What the entry at an address is.
pub(crate) enum Step {
    /// An entry.
    Entry(LogEntry),
    /// A filler: the next entry is at this address (the next page).
    Skip(u64),
}

/// What the durable side of the log looks like (changed only by the commit leader).
#[derive(Debug, Default)]
struct State {
    begin: u64,
    table: PageTable,
    /// Extent nodes merged away by the last commit, retired by the next one.
    retire_pending: Vec<NodeId>,
    meta_node: Option<NodeId>,
    /// Bytes below this are in extent nodes (durable once the transaction's policy holds).
    persisted: u64,
    /// Iterator positions as of the last commit.
    saved_iterators: BTreeMap<String, u64>,
}

/// Group commit bookkeeping.
#[derive(Debug, Default)]
struct CommitState {
    committed: u64,
    in_flight: bool,
    iterators: BTreeMap<String, u64>,
    iterators_changed: u64,
    iterators_saved: u64,
}

/// A durable, concurrent, recoverable append-only log on a [`DurableRuntime`].
#[derive(Debug)]
pub struct FasterLog {
    rt: Arc<DurableRuntime>,
    root: String,
    options: FasterLogOptions,
    page_bytes: u64,
    epoch: Epoch,
    slots: Box<[Arc<Slot>]>,
    tail: AtomicU64,
    advance_lock: Mutex<()>,
    writer: Mutex<()>,
    state: Mutex<State>,
    commit: Mutex<CommitState>,
    committed_cv: Condvar,
    /// The runtime's claim of `root`, held for the handle's lifetime (invariant 7).
    _claim: RootClaim,
}

fn pack(page: u64, offset: u64) -> u64 {
    (page << 32) | offset
}

impl FasterLog {
    /// Opens log `name` (1 to 36 bytes) in `rt`, creating it if its root does not exist, or
    /// recovering begin, committed tail and named iterators from its metadata node. Appends
    /// continue at the committed tail; entries appended after the last commit are gone. One
    /// handle per log and runtime: while a `FasterLog` has the log open, another `open` of it
    /// fails with [`vellum::Error::RootClaimed`] (as [`Error::Store`]); dropping the handle
    /// releases the log (invariant 7).
    pub fn open(rt: Arc<DurableRuntime>, name: &str, options: FasterLogOptions) -> Result<Self> {
        options.validate()?;
        let root = crate::root_name::root_name(ROOT_PREFIX, "log", name)?;
        // R0, before anything is read: a second handle would recover the same state and append
        // at the same addresses as this one, and one of two acknowledged commits would be lost.
        let claim = rt.claim_root(&root)?;
        let page_bytes = u64::from(options.page_bytes);
        let slots: Box<[Arc<Slot>]> = (0..options.memory_pages)
            .map(|_| Slot::new(options.page_bytes).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let mut state = State::default();
        if let Some(id) = rt.root(&root) {
            let meta = Meta::decode(&rt.read(id)?, &root)?;
            if meta.page_bytes != options.page_bytes {
                return Err(Error::InvalidArgument(format!(
                    "log {name} was created with page_bytes {}, opened with {}",
                    meta.page_bytes, options.page_bytes
                )));
            }
            state.begin = meta.begin;
            state.persisted = meta.committed_tail;
            state.meta_node = Some(id);
            state.saved_iterators = meta.iterators.clone();
            state.retire_pending = meta.retire_pending.clone();
            state.table = PageTable::recover(&rt, &root, &meta)?;
        }
        let committed = state.persisted;
        let (page, offset) = (committed / page_bytes, committed % page_bytes);
        let slot = &slots[(page % slots.len() as u64) as usize];
        if offset > 0 {
            // The page the tail is in comes back into memory, so appends continue in it and
            // the next commit adds an extent after the last one.
            let extents = state.table.extents(page).unwrap_or_default().to_vec();
            let covered = extents.last().map_or(0, |e| u64::from(e.end()));
            if covered != offset {
                return Err(Error::Store(vellum::Error::corruption(
                    page_path(&root, page),
                    committed,
                    CorruptionKind::Mismatch {
                        what: "extents' end and committed tail",
                        expected: offset,
                        actual: covered,
                    },
                )));
            }
            for e in &extents {
                let bytes = rt.read(e.node)?;
                check_extent_len(&root, page, e, bytes.len())?;
                slot.write(e.start as usize, &bytes);
            }
        }
        slot.reusable.store(false, SeqCst);
        slot.resident.store(page + 1, SeqCst);
        tracing::debug!(%root, begin = state.begin, committed, "opened FasterLog");
        let commit = CommitState {
            committed,
            iterators: state.saved_iterators.clone(),
            ..CommitState::default()
        };
        Ok(FasterLog {
            rt,
            root,
            options,
            page_bytes,
            epoch: Epoch::new(),
            slots,
            tail: AtomicU64::new(pack(page, offset)),
            advance_lock: Mutex::new(()),
            writer: Mutex::new(()),
            state: Mutex::new(state),
            commit: Mutex::new(commit),
            committed_cv: Condvar::new(),
            _claim: claim,
        })
    }

    /// The runtime the log lives on.
    pub fn runtime(&self) -> &Arc<DurableRuntime> {
        &self.rt
    }

    /// The root naming the log's metadata node.
    pub fn root_name(&self) -> &str {
        &self.root
    }

    /// The settings the log was opened with.
    pub fn options(&self) -> &FasterLogOptions {
        &self.options
    }

    /// The largest entry payload (`page_bytes - 8`).
    pub fn entry_bytes_max(&self) -> usize {
        self.options.entry_bytes_max()
    }

    /// The first readable address.
    pub fn begin_address(&self) -> u64 {
        self.state.lock().begin
    }

    /// Every entry below this address is committed.
    pub fn committed_tail(&self) -> u64 {
        self.commit.lock().committed
    }

    /// Every entry below this address is written (in memory), and every entry whose `append`
    /// returned before the call is below it; a commit now would cover them. Waits for appenders
    /// still writing reservations below it (invariant 2).
    pub fn published_tail(&self) -> u64 {
        self.settled_tail()
    }

    /// Invariant 2. The caller must not be epoch protected.
    fn settled_tail(&self) -> u64 {
        let seen = self.tail.load(SeqCst);
        let (page, offset) = (seen >> 32, (seen & 0xffff_ffff).min(self.page_bytes));
        self.epoch.wait_for_protected();
        page * self.page_bytes + offset
    }

    /// Appends `payload`; waits while every in-memory page holds unflushed entries (flushing
    /// them itself). Returns the entry's address. Durable only after a commit covering it.
    pub fn append(&self, payload: &[u8]) -> Result<u64> {
        Ok(self.append_entries(&[payload], true)?[0])
    }

    /// Like [`FasterLog::append`] but returns [`Error::Full`] instead of waiting.
    pub fn try_append(&self, payload: &[u8]) -> Result<u64> {
        Ok(self.append_entries(&[payload], false)?[0])
    }

    /// Appends `entries` as one reservation in one page: a crash keeps all of them or none.
    /// Together they must fit in one page (`entry_bytes` of each summed `<= page_bytes`).
    pub fn append_batch(&self, entries: &[&[u8]]) -> Result<Vec<u64>> {
        self.append_entries(entries, true)
    }

    /// Appends `payload` and commits; returns its address once the commit holds.
    pub fn append_and_commit(&self, payload: &[u8]) -> Result<u64> {
        let address = self.append(payload)?;
        self.commit()?;
        Ok(address)
    }

    fn append_entries(&self, entries: &[&[u8]], blocking: bool) -> Result<Vec<u64>> {
        if entries.is_empty() {
            return Err(Error::InvalidArgument("an empty batch".into()));
        }
        let max = self.entry_bytes_max();
        let mut total = 0u64;
        for e in entries {
            if e.len() > max {
                return Err(Error::InvalidArgument(format!(
                    "an entry of {} bytes exceeds the largest entry, {max} bytes (page_bytes - 8)",
                    e.len()
                )));
            }
            total += entry_bytes(e.len()) as u64;
        }
        if total > self.page_bytes {
            return Err(Error::InvalidArgument(format!(
                "a batch of {total} bytes does not fit one page of {} bytes",
                self.page_bytes
            )));
        }
        let (start, guard) = self.reserve(total, blocking)?;
        let (page, offset) = (start / self.page_bytes, start % self.page_bytes);
        let slot = self.slot(page);
        let mut addresses = Vec::with_capacity(entries.len());
        let mut at = offset as usize;
        for e in entries {
            slot.write(at + HEADER_BYTES, e);
            slot.write_word(at, crate::entry::header_word(e));
            addresses.push(page * self.page_bytes + at as u64);
            at += entry_bytes(e.len());
        }
        // Leaving the protected region publishes the entries (invariant 2).
        drop(guard);
        Ok(addresses)
    }

    fn slot(&self, page: u64) -> &Arc<Slot> {
        &self.slots[(page % self.slots.len() as u64) as usize]
    }

    /// Reserves `size` bytes in one page (invariant 1); returns their address and the protected
    /// region the caller writes them in.
    ///
    /// A compare-and-swap, not a `fetch_add`: the offset then never passes the page end, so no
    /// number of racing appenders can carry it into the page bits. The reservation that does
    /// not fit moves the offset to the page end and writes the filler; it and every later one
    /// wait for the advance.
    fn reserve(&self, size: u64, blocking: bool) -> Result<(u64, EpochGuard<'_>)> {
        let p = self.page_bytes;
        loop {
            let guard = self.epoch.protect();
            let mut seen = self.tail.load(SeqCst);
            loop {
                let (page, offset) = (seen >> 32, seen & 0xffff_ffff);
                if offset >= p {
                    break;
                }
                let fits = offset + size <= p;
                let next = if fits { seen + size } else { pack(page, p) };
                match self.tail.compare_exchange_weak(seen, next, SeqCst, SeqCst) {
                    Ok(_) if fits => return Ok((page * p + offset, guard)),
                    Ok(_) => {
                        // Sealed by this reservation: the filler, while still protected.
                        self.slot(page).write_word(offset as usize, FILLER_WORD);
                        break;
                    }
                    Err(now) => seen = now,
                }
            }
            // Not protected while it waits: a commit it may run waits for protected threads.
            drop(guard);
            self.advance(seen >> 32, blocking)?;
        }
    }

    /// Moves the tail from `page` to the next page once that page's slot is reusable.
    fn advance(&self, page: u64, blocking: bool) -> Result<()> {
        let next = page + 1;
        let mut waits = 0u32;
        loop {
            if self.tail.load(SeqCst) >> 32 != page {
                return Ok(());
            }
            let slot = self.slot(next);
            if slot.reusable.load(SeqCst) {
                let _a = self.advance_lock.lock();
                if self.tail.load(SeqCst) >> 32 != page {
                    return Ok(());
                }
                slot.reusable.store(false, SeqCst);
                slot.resident.store(next + 1, SeqCst);
                self.tail.store(pack(next, 0), SeqCst);
                return Ok(());
            }
            if !blocking {
                self.make_room(next, false)?;
                if slot.reusable.load(SeqCst) {
                    continue;
                }
                return Err(Error::Full);
            }
            self.make_room(next, true)?;
            waits += 1;
            if waits > 8 {
                std::thread::sleep(Duration::from_micros(50));
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Frees the slot page `next` needs: evicts the page in it once flushed (flushing it first
    /// when `flush`), then runs deferred actions that are safe.
    fn make_room(&self, next: u64, flush: bool) -> Result<()> {
        let slot = self.slot(next).clone();
        let resident = slot.resident.load(SeqCst);
        if resident != 0 {
            let old = resident - 1;
            let end = (old + 1) * self.page_bytes;
            if flush && self.state.lock().persisted < end && self.settled_tail() >= end {
                self.commit()?;
            }
            if self.state.lock().persisted >= end
                && slot
                    .resident
                    .compare_exchange(resident, 0, SeqCst, SeqCst)
                    .is_ok()
            {
                // Readers protected now may still copy from the slot; it is reused only after
                // they leave (ring invariant 2).
                let s = slot.clone();
                self.epoch.bump_with(move || s.reusable.store(true, SeqCst));
            }
        }
        self.epoch.drain();
        Ok(())
    }

    /// Makes every entry published before the call durable (per the commit policy), together
    /// with the named iterators' positions; returns the committed tail. Concurrent calls are
    /// grouped: one commit runs, the others wait for it, and one of them runs the next.
    pub fn commit(&self) -> Result<u64> {
        let target = self.settled_tail();
        let mut cs = self.commit.lock();
        let changed = cs.iterators_changed;
        loop {
            if cs.committed >= target && cs.iterators_saved >= changed {
                return Ok(cs.committed);
            }
            if !cs.in_flight {
                break;
            }
            self.committed_cv.wait(&mut cs);
        }
        cs.in_flight = true;
        let iterators = cs.iterators.clone();
        let changed = cs.iterators_changed;
        drop(cs);
        let result = self.persist(&iterators);
        let mut cs = self.commit.lock();
        cs.in_flight = false;
        let result = result.map(|tail| {
            cs.committed = cs.committed.max(tail);
            cs.iterators_saved = cs.iterators_saved.max(changed);
            cs.committed
        });
        self.committed_cv.notify_all();
        result
    }

    /// Writes the bytes between the persisted and the settled tail as extents, the complete
    /// pages' extent lists as chunk nodes once there are enough of them, and the metadata, in
    /// one runtime transaction (steps C1-C5 of `design/DURABILITY.md` §7).
    fn persist(&self, iterators: &BTreeMap<String, u64>) -> Result<u64> {
        let _writer = self.writer.lock();
        let target = self.settled_tail();
        let p = self.page_bytes;
        // Only the holder of `writer` changes the state, so this copy stays current; it is
        // bounded (table invariant 4), never the whole page map.
        let (begin, persisted, retire, mut meta_node, mut draft) = {
            let s = self.state.lock();
            let draft = s.table.draft(s.persisted / p);
            (
                s.begin,
                s.persisted,
                s.retire_pending.clone(),
                s.meta_node,
                draft,
            )
        };
        let mut txn = self.rt.begin();
        for id in retire {
            txn.retire(id)?;
        }
        let mut retire_pending = Vec::new();
        if target > persisted {
            for page in persisted / p..=(target - 1) / p {
                let lo = (persisted.max(page * p) - page * p) as u32;
                let hi = (target.min((page + 1) * p) - page * p) as u32;
                let slot = self.slot(page);
                if !slot.holds(page) {
                    return Err(Error::InvalidArgument(format!(
                        "internal: unflushed page {page} is not in memory"
                    )));
                }
                let extents = draft.inline.entry(page).or_default();
                let mut start = lo;
                while let Some(prev) = extents.last().copied() {
                    let len = hi - start;
                    if prev.end() != start || prev.len > len || prev.len + len > MERGE_BYTES_MAX {
                        break;
                    }
                    extents.pop();
                    retire_pending.push(prev.node);
                    start = prev.start;
                }
                if u64::from(hi) == p && extents.len() >= SEALED_EXTENTS_MAX {
                    retire_pending.extend(extents.drain(..).map(|e| e.node));
                    start = 0;
                }
                let len = hi - start;
                // `[start, hi)` lies below `target`, a settled tail, so every store to it
                // happened before (invariant 2); the slot holds `page` (checked above) until
                // `persisted` covers the page, which only this commit (under `writer`) advances.
                let node = txn.alloc_with(PAGE_KIND, len as usize, |buf| {
                    slot.copy_to(start as usize, buf);
                })?;
                extents.push(Extent { start, len, node });
            }
        }
        let persisted = persisted.max(target);
        let sealed = draft.seal(&mut txn, persisted, self.options.page_bytes)?;
        let meta = self.meta(begin, persisted, &draft, &retire_pending, iterators);
        self.write_meta(&mut txn, &mut meta_node, &meta)?;
        self.commit_txn(txn)?;
        if sealed > 0 {
            tracing::debug!(root = %self.root, sealed, chunks = draft.chunks.len(), "chunked pages");
        }
        let mut s = self.state.lock();
        s.table.apply(draft);
        s.retire_pending = retire_pending;
        s.persisted = persisted;
        s.saved_iterators = iterators.clone();
        s.meta_node = meta_node;
        Ok(target)
    }

    /// The metadata a commit or truncation writes.
    fn meta(
        &self,
        begin: u64,
        persisted: u64,
        draft: &Draft,
        retire_pending: &[NodeId],
        iterators: &BTreeMap<String, u64>,
    ) -> Meta {
        let (first_page, pages) = draft.inline_pages(persisted / self.page_bytes);
        Meta {
            page_bytes: self.options.page_bytes,
            begin,
            committed_tail: persisted,
            chunks: draft.chunks.clone(),
            first_page,
            pages,
            retire_pending: retire_pending.to_vec(),
            iterators: iterators.clone(),
        }
    }

    /// Writes `meta` as the metadata node: over `meta_node`, or as a new node the root names
    /// (the log's first commit).
    fn write_meta(
        &self,
        txn: &mut WriteTxn<'_>,
        meta_node: &mut Option<NodeId>,
        meta: &Meta,
    ) -> Result<()> {
        let bytes = meta.encode();
        match *meta_node {
            Some(id) => txn.write(id, &bytes)?,
            None => {
                let id = txn.alloc(META_KIND, &bytes)?;
                txn.set_root(&self.root, id)?;
                *meta_node = Some(id);
            }
        }
        Ok(())
    }

    fn commit_txn(&self, txn: WriteTxn<'_>) -> Result<u64> {
        Ok(match self.options.policy {
            Some(policy) => txn.commit_with(policy)?,
            None => txn.commit()?,
        })
    }

    /// Waits until a commit covers the entry at `address`.
    pub fn wait_for_commit(&self, address: u64) {
        let mut cs = self.commit.lock();
        while cs.committed <= address {
            self.committed_cv.wait(&mut cs);
        }
    }

    /// Waits up to `timeout` for a commit to cover the entry at `address`; true if one did.
    pub fn wait_for_commit_timeout(&self, address: u64, timeout: Duration) -> bool {
        self.wait_committed_past(address, Instant::now() + timeout)
    }

    /// Waits until the committed tail passes `address` or `deadline` passes; true if it did.
    pub(crate) fn wait_committed_past(&self, address: u64, deadline: Instant) -> bool {
        let mut cs = self.commit.lock();
        while cs.committed <= address {
            if self.committed_cv.wait_until(&mut cs, deadline).timed_out() {
                return cs.committed > address;
            }
        }
        true
    }

    /// Saves `position` for iterator `name` (1 to 64 bytes); the next commit makes it durable.
    pub fn save_iterator(&self, name: &str, position: u64) -> Result<()> {
        if name.is_empty() || name.len() > ITERATOR_NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "iterator names are 1 to {ITERATOR_NAME_BYTES_MAX} bytes, got {}",
                name.len()
            )));
        }
        let mut cs = self.commit.lock();
        cs.iterators.insert(name.to_owned(), position);
        cs.iterators_changed += 1;
        Ok(())
    }

    /// The position last saved for iterator `name` (restored on recovery from the last commit).
    pub fn iterator_position(&self, name: &str) -> Option<u64> {
        self.commit.lock().iterators.get(name).copied()
    }

    /// A tailing iterator for `name` starting where it was last saved (or at begin).
    pub fn named_iterator(&self, name: &str) -> TailIter<'_> {
        let from = self
            .iterator_position(name)
            .unwrap_or_else(|| self.begin_address())
            .max(self.begin_address());
        TailIter::new(self, from)
    }

    /// Scans committed entries in `[from, to)` (`to` capped at the committed tail now); `from`
    /// must be an entry address, a page start or the begin address (elsewhere the first item is
    /// [`Error::InvalidAddress`], invariant 8).
    pub fn scan(&self, from: u64, to: u64) -> ScanIter<'_> {
        ScanIter::new(self, from, to.min(self.committed_tail()))
    }

    /// Scans every committed entry from the begin address.
    pub fn scan_all(&self) -> ScanIter<'_> {
        self.scan(self.begin_address(), u64::MAX)
    }

    /// A tailing iterator from `from`: it returns committed entries and waits for new commits.
    pub fn tail_iter(&self, from: u64) -> TailIter<'_> {
        TailIter::new(self, from)
    }

    /// Reads the committed entry at `address`. An address where no entry starts (inside an
    /// entry, at or inside a page's filler, not 8-byte aligned) is [`Error::InvalidAddress`];
    /// damaged bytes are a [`vellum::Error::Corruption`] (invariant 8).
    pub fn read(&self, address: u64) -> Result<Vec<u8>> {
        match self.entry_at_start(address)? {
            Step::Entry(e) => Ok(e.bytes),
            Step::Skip(_) => Err(Error::InvalidAddress {
                address,
                reason: "it holds a page filler, not an entry",
            }),
        }
    }

    /// Scans every committed entry, checking each checksum; returns the number of entries.
    pub fn verify(&self) -> Result<u64> {
        let mut n = 0;
        for e in self.scan_all() {
            e?;
            n += 1;
        }
        Ok(n)
    }

    /// Decodes what is at `address` (committed, at or above begin), from memory or its node.
    pub(crate) fn entry_at(&self, address: u64) -> Result<Step> {
        let committed = self.committed_tail();
        let begin = self.begin_address();
        if address < begin {
            return Err(Error::BelowBegin { address, begin });
        }
        if address >= committed {
            return Err(Error::NotCommitted { address, committed });
        }
        if !address.is_multiple_of(8) {
            return Err(Error::InvalidAddress {
                address,
                reason: "it is not 8-byte aligned",
            });
        }
        let (page, offset) = (
            address / self.page_bytes,
            (address % self.page_bytes) as usize,
        );
        {
            let _guard = self.epoch.protect();
            let slot = self.slot(page);
            if slot.holds(page) {
                let view = MemPage(slot);
                return self.decode(&view, 0, page, offset, committed);
            }
        }
        let (extent, snapshot) = {
            let s = self.state.lock();
            if address < s.begin {
                return Err(Error::BelowBegin {
                    address,
                    begin: s.begin,
                });
            }
            let extent = s
                .table
                .extents(page)
                .and_then(|extents| extent_at(extents, offset as u32));
            // Taken under the state lock, so it sees every node the state lists (invariant 5).
            (extent, self.rt.snapshot())
        };
        let extent =
            extent.ok_or_else(|| corruption(&self.root, page, address, "extent", offset as u64))?;
        let reader = snapshot.reader();
        let bytes = reader.get_unverified(extent.node)?.ok_or_else(|| {
            corruption(&self.root, page, address, "extent_node", extent.node.raw())
        })?;
        check_extent_len(&self.root, page, &extent, bytes.len())?;
        self.decode(
            &SlicePage(bytes),
            extent.start as usize,
            page,
            offset,
            committed,
        )
    }

    /// [`FasterLog::entry_at`] for an address the caller chose, which may not be an entry's
    /// start: when the entry there fails its checks, or is a filler, the page's entries are
    /// walked to tell a bad address from damage (invariant 8). A filler at a boundary is a
    /// [`Step::Skip`], as from `entry_at`.
    pub(crate) fn entry_at_start(&self, address: u64) -> Result<Step> {
        let first = self.entry_at(address);
        match &first {
            Ok(Step::Entry(_)) => return first,
            Ok(Step::Skip(_)) => {}
            Err(e) if e.as_corruption().is_some() => {}
            Err(_) => return first,
        }
        let reason = match self.locate(address)? {
            Located::Start => return first,
            Located::InEntry => "it lies inside an entry",
            Located::InFiller => "it lies inside the filler that closes its page",
        };
        Err(Error::InvalidAddress { address, reason })
    }

    /// Where `address` (committed, at or above begin, 8-byte aligned) lies among the entries of
    /// its page, from memory or from the page's extent nodes; a corruption if an entry before it
    /// is damaged (invariant 8).
    #[cold]
    fn locate(&self, address: u64) -> Result<Located> {
        let committed = self.committed_tail();
        let (page, offset) = (
            address / self.page_bytes,
            (address % self.page_bytes) as usize,
        );
        {
            let _guard = self.epoch.protect();
            let slot = self.slot(page);
            if slot.holds(page) {
                return self.walk(&MemPage(slot), page, offset, committed);
            }
        }
        let (extents, snapshot) = {
            let s = self.state.lock();
            if address < s.begin {
                return Err(Error::BelowBegin {
                    address,
                    begin: s.begin,
                });
            }
            let extents = s.table.extents(page).map(<[Extent]>::to_vec);
            // Taken under the state lock, so it sees every node the state lists (invariant 5).
            (extents, self.rt.snapshot())
        };
        let extents = extents
            .ok_or_else(|| corruption(&self.root, page, address, "extent", offset as u64))?;
        let reader = snapshot.reader();
        let mut parts = Vec::with_capacity(extents.len());
        for e in &extents {
            let bytes = reader.get_unverified(e.node)?.ok_or_else(|| {
                corruption(&self.root, page, address, "extent_node", e.node.raw())
            })?;
            check_extent_len(&self.root, page, e, bytes.len())?;
            parts.push((e.start as usize, bytes));
        }
        self.walk(&ExtentPages(parts), page, offset, committed)
    }

    /// Decodes the entries of `page` in `view` (offsets from the page start) from offset 0 until
    /// one ends past `offset` or starts at it.
    fn walk(
        &self,
        view: &dyn PageView,
        page: u64,
        offset: usize,
        committed: u64,
    ) -> Result<Located> {
        let mut at = 0usize;
        while at < offset {
            // Damage before `offset` is reported as it is: past it, the walk cannot be trusted.
            match self.decode(view, 0, page, at, committed)? {
                Step::Entry(e) => {
                    at = (e.next_address - page * self.page_bytes) as usize;
                    if at > offset {
                        return Ok(Located::InEntry);
                    }
                }
                Step::Skip(_) => return Ok(Located::InFiller),
            }
        }
        debug_assert_eq!(at, offset);
        Ok(Located::Start)
    }

    /// Decodes the entry at page offset `offset` from `view`, which holds the page's bytes from
    /// offset `base` on.
    fn decode(
        &self,
        view: &dyn PageView,
        base: usize,
        page: u64,
        offset: usize,
        committed: u64,
    ) -> Result<Step> {
        decode_entry(
            &self.root,
            self.page_bytes,
            view,
            base,
            page,
            offset,
            committed,
        )
    }

    /// Moves the begin address to `address` (at most the committed tail; an entry address or
    /// page start) and retires the extents of every page wholly below it, with the chunk nodes
    /// listing only such pages, in one transaction, so the runtime reclaims their space; a chunk
    /// node listing some of them is replaced by one listing only the rest (steps T1-T3 of
    /// `design/DURABILITY.md` §7). Reads below the new begin fail with [`Error::BelowBegin`].
    pub fn truncate_until(&self, address: u64) -> Result<()> {
        let _writer = self.writer.lock();
        let committed = self.committed_tail();
        if address > committed || !address.is_multiple_of(8) {
            return Err(Error::InvalidArgument(format!(
                "cannot truncate to {address}: past the committed tail {committed}, or not an \
                 entry address (8-byte aligned)"
            )));
        }
        // Pages below `cut` are wholly below the new begin.
        let cut = address / self.page_bytes;
        let (persisted, retire, iterators, mut meta_node, plan) = {
            let mut s = self.state.lock();
            if address <= s.begin {
                return Ok(());
            }
            let plan =
                s.table
                    .truncate(cut, s.persisted / self.page_bytes, self.options.page_bytes)?;
            // Readers check begin before they look a page up, so they stop now.
            s.begin = address;
            (
                s.persisted,
                s.retire_pending.clone(),
                s.saved_iterators.clone(),
                s.meta_node,
                plan,
            )
        };
        let mut txn = self.rt.begin();
        // Retired at once: readers check begin (already moved) before they look extents up,
        // and never read chunk nodes.
        for &id in retire.iter().chain(&plan.retire) {
            txn.retire(id)?;
        }
        let mut draft = plan.draft;
        if let Some(chunk) = &plan.rewrite {
            draft.write_chunk(&mut txn, chunk)?;
        }
        let meta = self.meta(address, persisted, &draft, &[], &iterators);
        self.write_meta(&mut txn, &mut meta_node, &meta)?;
        self.commit_txn(txn)?;
        let mut s = self.state.lock();
        s.table.apply_truncation(cut, draft);
        s.retire_pending.clear();
        s.meta_node = meta_node;
        tracing::debug!(
            root = %self.root,
            address,
            retired = plan.retire.len(),
            rewrote_chunk = plan.rewrite.is_some(),
            "truncated"
        );
        Ok(())
    }
}

/// Decodes the entry at page offset `offset` (at or past `base`) of page `page` of the log with
/// root `root`, pages of `page_bytes` and committed tail `committed`, from `view`, which holds
/// the page's bytes from offset `base` on: its length against the page, the committed tail and
/// the view, then its CRC32C (`design/FORMAT.md` §8). Readers and the inspection plugin
/// (`inspect.rs`) decode entries only through this.
pub(crate) fn decode_entry(
    root: &str,
    page_bytes: u64,
    view: &dyn PageView,
    base: usize,
    page: u64,
    offset: usize,
    committed: u64,
) -> Result<Step> {
    let address = page * page_bytes + offset as u64;
    let word = view
        .word(offset - base)
        .ok_or_else(|| corruption(root, page, address, "page_len", view.len() as u64))?;
    match decode_header(word) {
        Header::Filler => Ok(Step::Skip((page + 1) * page_bytes)),
        Header::Entry { len, crc } => {
            let size = entry_bytes(len as usize) as u64;
            if offset as u64 + size > page_bytes || address + size > committed {
                return Err(corruption(root, page, address, "entry_len", len.into()));
            }
            let mut bytes = Vec::with_capacity(len as usize);
            if !view.read_into(offset - base + HEADER_BYTES, len as usize, &mut bytes) {
                return Err(corruption(root, page, address, "entry_len", len.into()));
            }
            let actual = entry_crc(&bytes);
            if actual != crc {
                return Err(Error::Store(vellum::Error::corruption(
                    page_path(root, page),
                    address,
                    CorruptionKind::ChecksumMismatch {
                        expected: crc,
                        actual,
                    },
                )));
            }
            Ok(Step::Entry(LogEntry {
                address,
                next_address: address + size,
                bytes,
            }))
        }
    }
}

/// Read access to a page's bytes, in memory or in its node.
pub(crate) trait PageView {
    fn len(&self) -> usize;
    fn word(&self, offset: usize) -> Option<u64>;
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool;
}

struct MemPage<'a>(&'a Slot);

impl PageView for MemPage<'_> {
    fn len(&self) -> usize {
        self.0.word_count() * 8
    }
    fn word(&self, offset: usize) -> Option<u64> {
        (offset + 8 <= self.len()).then(|| self.0.word(offset))
    }
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        if offset + len > self.len() {
            return false;
        }
        self.0.read_into(offset, len, out);
        true
    }
}

/// A page's bytes from its extent nodes: each part is the bytes of the page from its offset on.
/// An entry lies within one extent (extents end at commit boundaries, which are reservation
/// boundaries), so a read spanning two parts is refused like one past the page.
struct ExtentPages<'a>(Vec<(usize, &'a [u8])>);

impl ExtentPages<'_> {
    /// The part holding page offset `offset`, and `offset` within it.
    fn part(&self, offset: usize) -> Option<(&[u8], usize)> {
        let i = self
            .0
            .partition_point(|(start, b)| start + b.len() <= offset);
        let (start, bytes) = self.0.get(i)?;
        (*start <= offset).then(|| (*bytes, offset - start))
    }
}

impl PageView for ExtentPages<'_> {
    fn len(&self) -> usize {
        self.0.last().map_or(0, |(start, b)| start + b.len())
    }
    fn word(&self, offset: usize) -> Option<u64> {
        let (bytes, at) = self.part(offset)?;
        SlicePage(bytes).word(at)
    }
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        self.part(offset)
            .is_some_and(|(bytes, at)| SlicePage(bytes).read_into(at, len, out))
    }
}

/// A page's bytes from one offset on, in one slice (an extent node's bytes).
pub(crate) struct SlicePage<'a>(pub(crate) &'a [u8]);

impl PageView for SlicePage<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn word(&self, offset: usize) -> Option<u64> {
        let b = self.0.get(offset..offset + 8)?;
        let mut w = [0u8; 8];
        w.copy_from_slice(b);
        Some(u64::from_le_bytes(w))
    }
    fn read_into(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> bool {
        match self.0.get(offset..offset + len) {
            Some(b) => {
                out.extend_from_slice(b);
                true
            }
            None => false,
        }
    }
}

/// An extent node must hold exactly the bytes the metadata says.
fn check_extent_len(root: &str, page: u64, e: &Extent, actual: usize) -> Result<()> {
    if actual == e.len as usize {
        return Ok(());
    }
    Err(Error::Store(vellum::Error::corruption(
        page_path(root, page),
        u64::from(e.start),
        CorruptionKind::Mismatch {
            what: "extent length",
            expected: e.len.into(),
            actual: actual as u64,
        },
    )))
}

/// The name a page goes by in corruption reports: `faster-log:<name>/page-<page>`.
pub(crate) fn page_path(root: &str, page: u64) -> PathBuf {
    PathBuf::from(format!("{root}/page-{page}"))
}

fn corruption(root: &str, page: u64, address: u64, field: &'static str, value: u64) -> Error {
    Error::Store(vellum::Error::corruption(
        page_path(root, page),
        address,
        CorruptionKind::InvalidField { field, value },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use vellum::runtime::RuntimeOptions;

    /// Invariant 1: however many appenders race for the end of a page, the tail's offset never
    /// passes the page end (a `fetch_add` would let each racer add its size past it, and enough
    /// of them carry the offset into the page bits).
    #[test]
    fn racing_appenders_never_push_the_offset_past_the_page_end() {
        const PAGE: u32 = 4096;
        let dir = tempfile::tempdir().unwrap();
        let mut o = RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        };
        o.compaction.interval = None;
        let rt = Arc::new(DurableRuntime::open(dir.path(), o).unwrap());
        let log = FasterLog::open(
            rt,
            "race",
            FasterLogOptions {
                page_bytes: PAGE,
                memory_pages: 4,
                policy: None,
            },
        )
        .unwrap();
        let done = AtomicBool::new(false);
        // Two entries fill a page exactly.
        let entry = vec![7u8; PAGE as usize / 2 - HEADER_BYTES];
        let max_offset = std::thread::scope(|s| {
            let watcher = s.spawn(|| {
                let mut max = 0;
                while !done.load(SeqCst) {
                    max = max.max(log.tail.load(SeqCst) & 0xffff_ffff);
                }
                max
            });
            let appenders: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        for _ in 0..1000 {
                            log.append(&entry).unwrap();
                        }
                    })
                })
                .collect();
            for a in appenders {
                a.join().unwrap();
            }
            done.store(true, SeqCst);
            watcher.join().unwrap()
        });
        assert!(max_offset <= u64::from(PAGE), "offset {max_offset}");
        assert_eq!(log.commit().unwrap(), 4000 * u64::from(PAGE));
        assert_eq!(log.verify().unwrap(), 8000);
    }
}
