//! One attempt of each FasterKV operation, under the caller's epoch protection. A session
//! (`session.rs`) runs attempts until one is done or goes to disk; this file decides, for the
//! region the key's newest record lies in, what the operation does (`design/ARCHITECTURE.md`,
//! FasterKV):
//!
//! | region of the newest record | read | upsert | rmw | delete |
//! | --- | --- | --- | --- | --- |
//! | mutable `[read_only, tail)` | copy under the seqlock | in place, or a copy if larger | in place, or seal + copy if larger | tombstone in place |
//! | fuzzy `[safe_read_only, read_only)` | copy | copy to the tail | retry later | retry later |
//! | read-only `[head, safe_read_only)` | copy | copy to the tail | copy-update to the tail | tombstone at the tail |
//! | on disk, below `head` | pending | copy to the tail | pending, then copy-update | pending, then tombstone |
//! | none | not found | insert | initial value | not found |
//!
//! Why no update is lost (invariants, prefix KO):
//! - KO1. A record reaches a hash chain only by a CAS of the chain's index entry from the entry
//!   the writer read before tracing the chain, to the record's address (which links to that
//!   entry's address). A writer whose CAS fails marks its record invalid and starts again, so
//!   every published record was built from the newest record of its key at the moment of
//!   publication.
//! - KO2. Only records at or above `read_only` (read under protection) change in place, under
//!   their seqlock; a copy-update reads a record below `safe_read_only`, which no thread
//!   updates in place any more (hybrid-log invariant HL2). Between the two, RMW and delete wait
//!   ("retry later", FASTER's RETRY_LATER) while the session refreshes its epoch.
//! - KO3. A copy of a mutable record (its value outgrew the record) seals it first: the seal
//!   takes the last value under the seqlock and every later in-place writer sees the seal and
//!   starts again; if the copy is not published the seal is undone.
//! - KO4. Every reservation on the log is written as a record, an invalid one if it is given
//!   up, so a page's records lie end to end (`design/FORMAT.md` §9, KP3).
//! - KO5. A pending RMW or delete completes only if the index entry is still the one it read
//!   before going to disk; otherwise it starts again from the index.
//! - KO6. While a checkpoint runs (`cpr.rs`), an operation of the new version changes in place
//!   only records of its own version written since the checkpoint began; a mutable record of
//!   the checkpoint is copied instead (an RMW seals it first, as KO3, so an old-version writer
//!   still at work on it starts again and meets the copy). An operation of the old version that
//!   meets a record of the new one crosses to the new version first (`Attempt::CprShift`), so
//!   every old-version operation on a key precedes every new-version one.

use super::cpr::{Judged, OpVersion};
use super::hash::KeyHash;
use super::hlog::{LOG_BEGIN, Reserved};
use super::index::{EntryRef, IndexEntry};
use super::record::{
    ReadOutcome, RecordInfo, RecordWords, SealOutcome, UpdateOutcome, pad8, record_size_in_page,
    write_record_words,
};
use super::store::KvInner;
use super::{Functions, Status};
use crate::epoch::EpochGuard;
use crate::{Error, Result};

/// What one attempt came to.
#[derive(Debug)]
pub(crate) enum Attempt<T> {
    Done(T),
    /// Raced another writer: start again.
    Retry,
    /// The record is in the fuzzy region: refresh the epoch and start again (KO2).
    RetryLater,
    /// The tail's page is full: advance it unprotected and start again.
    NeedRoom(u64),
    /// The key's newest record may be below `head`: read the disk from here (KO5).
    Disk(DiskStart),
    /// The key's newest record is of the checkpoint's new version and the session still runs
    /// the old one: cross to the new version and start again (`cpr.rs`).
    CprShift,
}

/// Where a pending operation continues on disk, and the index entry it saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskStart {
    pub address: u64,
    pub entry: IndexEntry,
}

/// What the disk holds for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OnDisk {
    Absent,
    Deleted,
    Value(Vec<u8>),
}

/// Where the newest record of a key is.
enum Newest<'a> {
    None,
    Memory(u64, RecordWords<'a>),
    Disk(u64),
}

/// Walks the hash chain from `from` for `key`'s newest record.
#[inline]
fn newest<'a>(kv: &'a KvInner, key: &[u8], from: u64) -> Result<Newest<'a>> {
    let head = kv.hlog.head();
    let mut a = from;
    loop {
        if a < LOG_BEGIN {
            return Ok(Newest::None);
        }
        if a < head {
            return Ok(Newest::Disk(a));
        }
        let record = kv.hlog.record_at(a)?;
        // The info as the layout's decode loaded it (the bits that matter never clear).
        let info = record.header().info;
        if !info.is_invalid() && record.key_matches(key) {
            return Ok(Newest::Memory(a, record));
        }
        a = previous(kv, a, info)?;
    }
}

/// The previous address of the chain, which must lie below `a`: a link that does not is damage
/// (a corruption of the record's page, at the record's info word), never followed.
fn previous(kv: &KvInner, a: u64, info: RecordInfo) -> Result<u64> {
    let p = info.previous_address();
    if p >= a {
        let page_bytes = u64::from(kv.page_bytes);
        return Err(Error::Store(vellum::Error::corruption(
            kv.hlog.page_path(a / page_bytes),
            a % page_bytes,
            vellum::CorruptionKind::InvalidField {
                field: "previous_address",
                value: p,
            },
        )));
    }
    Ok(p)
}

/// Walks the chain on disk from `address` for `key`.
pub(crate) fn find_on_disk(kv: &KvInner, key: &[u8], address: u64) -> Result<OnDisk> {
    let mut a = address;
    loop {
        if a < LOG_BEGIN {
            return Ok(OnDisk::Absent);
        }
        let step = kv.hlog.with_disk_record(a, |r| {
            let info = r.header.info;
            if info.is_invalid() || r.key != key {
                Err(info)
            } else if info.is_tombstone() {
                Ok(OnDisk::Deleted)
            } else {
                Ok(OnDisk::Value(r.value.to_vec()))
            }
        })?;
        match step {
            Ok(found) => return Ok(found),
            Err(info) => a = previous(kv, a, info)?,
        }
    }
}

/// Appends a record (KO4: written in full before anyone can reach it); `Err(page)` when the
/// tail's page is full.
fn append(
    kv: &KvInner,
    ver: OpVersion,
    (key, value, tombstone): (&[u8], &[u8], bool),
    previous: u64,
) -> Result<Result<u64, u64>> {
    let capacity = pad8(value.len());
    let size = record_size_in_page(key.len(), capacity, kv.page_bytes)?;
    let address = match kv.hlog.reserve(size) {
        Reserved::At(a) => a,
        Reserved::PageFull(page) => return Ok(Err(page)),
    };
    let (words, off) = kv.hlog.words_at(address);
    let info = RecordInfo::new(previous, ver.record_version()).with_tombstone(tombstone);
    write_record_words(words, off, info, key, value, capacity)?;
    Ok(Ok(address))
}

/// Publishes the record at `address` by the index CAS of KO1; marks it invalid if that fails.
fn publish(entry: &mut EntryRef<'_>, expected: IndexEntry, kv: &KvInner, address: u64) -> bool {
    if entry.compare_exchange(expected, address).is_ok() {
        return true;
    }
    // The record was written by this thread and never published: it decodes.
    let record = kv.hlog.record_at(address);
    debug_assert!(record.is_ok());
    if let Ok(r) = record {
        r.mark_invalid();
    }
    false
}

/// Appends and publishes a record linked to `expected`'s address: `Done(status)` or the
/// attempt's failure.
fn append_published<T>(
    (kv, ver): (&KvInner, OpVersion),
    entry: &mut EntryRef<'_>,
    expected: IndexEntry,
    record: (&[u8], &[u8], bool),
    status: T,
) -> Result<Attempt<T>> {
    match append(kv, ver, record, expected.address())? {
        Err(page) => Ok(Attempt::NeedRoom(page)),
        Ok(a) if publish(entry, expected, kv, a) => Ok(Attempt::Done(status)),
        Ok(_) => Ok(Attempt::Retry),
    }
}

/// Read: the newest value of `key` into `out`.
pub(crate) fn read(
    (kv, ver): (&KvInner, OpVersion),
    hash: KeyHash,
    key: &[u8],
    out: &mut Vec<u8>,
) -> Result<Attempt<Status>> {
    let Some(entry) = kv.index.find(hash) else {
        return Ok(Attempt::Done(Status::NotFound));
    };
    match newest(kv, key, entry.address())? {
        Newest::None => Ok(Attempt::Done(Status::NotFound)),
        Newest::Disk(address) => Ok(Attempt::Disk(DiskStart {
            address,
            entry: entry.entry(),
        })),
        Newest::Memory(a, record) => {
            if judge(kv, ver, a, &record) == Judged::Shift {
                return Ok(Attempt::CprShift);
            }
            Ok(match record.read_value(out)? {
                ReadOutcome::Value => Attempt::Done(Status::Found),
                ReadOutcome::Tombstone => Attempt::Done(Status::NotFound),
                ReadOutcome::Sealed | ReadOutcome::Invalid => Attempt::Retry,
            })
        }
    }
}

/// What the operation of `ver` may do with the newest record `record` at `a` (`cpr.rs`).
#[inline]
fn judge(kv: &KvInner, ver: OpVersion, a: u64, record: &RecordWords<'_>) -> Judged {
    ver.judge(&kv.cpr, a, record.header().info.version())
}

/// Upsert: `key` gets `value`, in place where the record is mutable, of the operation's
/// version and large enough.
pub(crate) fn upsert(
    (kv, ver): (&KvInner, OpVersion),
    guard: &EpochGuard<'_>,
    hash: KeyHash,
    key: &[u8],
    value: &[u8],
) -> Result<Attempt<()>> {
    let mut entry = kv.index.find_or_create(hash, guard)?;
    let expected = entry.entry();
    if let Newest::Memory(a, record) = newest(kv, key, expected.address())? {
        match judge(kv, ver, a, &record) {
            Judged::Shift => return Ok(Attempt::CprShift),
            Judged::InPlace if a >= kv.hlog.read_only() => {
                match record.try_replace_in_place(value)? {
                    UpdateOutcome::Updated => return Ok(Attempt::Done(())),
                    UpdateOutcome::Sealed | UpdateOutcome::Invalid => return Ok(Attempt::Retry),
                    UpdateOutcome::OverCapacity { .. }
                    | UpdateOutcome::Tombstone
                    | UpdateOutcome::Declined => {}
                }
            }
            // A blind write needs no seal: a writer of the old version still changing the
            // record in place is ordered before this copy.
            Judged::InPlace | Judged::Copy => {}
        }
    }
    append_published((kv, ver), &mut entry, expected, (key, value, false), ())
}

/// Read-modify-write through `f`: `Found` when the key had a value, `NotFound` when RMW gave it
/// its initial value.
pub(crate) fn rmw<F: Functions>(
    cx: (&KvInner, OpVersion),
    guard: &EpochGuard<'_>,
    f: &F,
    (hash, key, input): (KeyHash, &[u8], &F::Input),
    scratch: &mut Vec<u8>,
) -> Result<Attempt<Status>> {
    let kv = cx.0;
    let mut entry = kv.index.find_or_create(hash, guard)?;
    let expected = entry.entry();
    let (a, record) = match newest(kv, key, expected.address())? {
        Newest::None => return insert_initial(cx, &mut entry, expected, f, key, input, scratch),
        Newest::Disk(address) => {
            return Ok(Attempt::Disk(DiskStart {
                address,
                entry: expected,
            }));
        }
        Newest::Memory(a, record) => (a, record),
    };
    let judged = judge(kv, cx.1, a, &record);
    if judged == Judged::Shift {
        return Ok(Attempt::CprShift);
    }
    if a >= kv.hlog.read_only() {
        if judged == Judged::Copy {
            // The record belongs to the checkpoint: seal it so that an old-version writer
            // still at work on it starts again and meets the copy (`cpr.rs`).
            return seal_and_copy(cx, &mut entry, expected, f, (&record, key, input), scratch);
        }
        let outcome = record.try_update_in_place(|buf, len| f.in_place_update(input, buf, len))?;
        return match outcome {
            UpdateOutcome::Updated => Ok(Attempt::Done(Status::Found)),
            UpdateOutcome::Sealed | UpdateOutcome::Invalid => Ok(Attempt::Retry),
            UpdateOutcome::Tombstone => {
                insert_initial(cx, &mut entry, expected, f, key, input, scratch)
            }
            UpdateOutcome::OverCapacity { .. } | UpdateOutcome::Declined => {
                seal_and_copy(cx, &mut entry, expected, f, (&record, key, input), scratch)
            }
        };
    }
    if a >= kv.hlog.safe_read_only() {
        return Ok(Attempt::RetryLater);
    }
    let mut old = Vec::new();
    match record.read_value(&mut old)? {
        ReadOutcome::Value => {
            scratch.clear();
            f.copy_update(input, &old, scratch);
            let copy = (key, &scratch[..], false);
            append_published(cx, &mut entry, expected, copy, Status::Found)
        }
        ReadOutcome::Tombstone => insert_initial(cx, &mut entry, expected, f, key, input, scratch),
        ReadOutcome::Sealed | ReadOutcome::Invalid => Ok(Attempt::Retry),
    }
}

/// RMW of a key with no value: its initial value at the tail.
fn insert_initial<F: Functions>(
    cx: (&KvInner, OpVersion),
    entry: &mut EntryRef<'_>,
    expected: IndexEntry,
    f: &F,
    key: &[u8],
    input: &F::Input,
    scratch: &mut Vec<u8>,
) -> Result<Attempt<Status>> {
    scratch.clear();
    f.initial_value(input, scratch);
    append_published(cx, entry, expected, (key, scratch, false), Status::NotFound)
}

/// KO3: the mutable `record` outgrew its capacity (or belongs to the checkpoint being taken):
/// seal it, copy the update to the tail, unseal if the copy is not published.
fn seal_and_copy<F: Functions>(
    cx: (&KvInner, OpVersion),
    entry: &mut EntryRef<'_>,
    expected: IndexEntry,
    f: &F,
    (record, key, input): (&RecordWords<'_>, &[u8], &F::Input),
    scratch: &mut Vec<u8>,
) -> Result<Attempt<Status>> {
    let mut old = Vec::new();
    match record.seal(&mut old)? {
        SealOutcome::Sealed => {}
        SealOutcome::AlreadySealed | SealOutcome::Invalid => return Ok(Attempt::Retry),
    }
    scratch.clear();
    let was_deleted = record.info()?.is_tombstone();
    let status = if was_deleted {
        f.initial_value(input, scratch);
        Status::NotFound
    } else {
        f.copy_update(input, &old, scratch);
        Status::Found
    };
    let attempt = append_published(cx, entry, expected, (key, scratch, false), status);
    if !matches!(attempt, Ok(Attempt::Done(_))) {
        record.unseal();
    }
    attempt
}

/// Delete: a tombstone for `key`; `Found` when it had a value.
pub(crate) fn delete(
    cx: (&KvInner, OpVersion),
    guard: &EpochGuard<'_>,
    hash: KeyHash,
    key: &[u8],
) -> Result<Attempt<Status>> {
    let kv = cx.0;
    if kv.index.find(hash).is_none() {
        return Ok(Attempt::Done(Status::NotFound));
    }
    let mut entry = kv.index.find_or_create(hash, guard)?;
    let expected = entry.entry();
    let (a, record) = match newest(kv, key, expected.address())? {
        Newest::None => return Ok(Attempt::Done(Status::NotFound)),
        Newest::Disk(address) => {
            return Ok(Attempt::Disk(DiskStart {
                address,
                entry: expected,
            }));
        }
        Newest::Memory(a, record) => (a, record),
    };
    let judged = judge(kv, cx.1, a, &record);
    if judged == Judged::Shift {
        return Ok(Attempt::CprShift);
    }
    if a >= kv.hlog.read_only() && judged == Judged::InPlace {
        return Ok(match record.try_delete_in_place()? {
            UpdateOutcome::Updated => Attempt::Done(Status::Found),
            UpdateOutcome::Tombstone => Attempt::Done(Status::NotFound),
            _ => Attempt::Retry,
        });
    }
    if a < kv.hlog.read_only() && a >= kv.hlog.safe_read_only() {
        return Ok(Attempt::RetryLater);
    }
    // Read-only, or mutable but the checkpoint's: a tombstone at the tail (a blind write, as
    // an upsert's copy).
    let info = record.info()?;
    if info.is_sealed() {
        return Ok(Attempt::Retry);
    }
    if info.is_tombstone() {
        return Ok(Attempt::Done(Status::NotFound));
    }
    append_published(cx, &mut entry, expected, (key, &[], true), Status::Found)
}

/// KO5: the pending RMW continues with what the disk held, if the index entry is unchanged;
/// otherwise it starts again.
pub(crate) fn finish_rmw<F: Functions>(
    cx: (&KvInner, OpVersion),
    guard: &EpochGuard<'_>,
    f: &F,
    (hash, key, input): (KeyHash, &[u8], &F::Input),
    (start, found): (&DiskStart, &OnDisk),
    scratch: &mut Vec<u8>,
) -> Result<Attempt<Status>> {
    let mut entry = cx.0.index.find_or_create(hash, guard)?;
    if entry.entry() != start.entry {
        return rmw(cx, guard, f, (hash, key, input), scratch);
    }
    match found {
        OnDisk::Value(old) => {
            scratch.clear();
            f.copy_update(input, old, scratch);
            let copy = (key, &scratch[..], false);
            append_published(cx, &mut entry, start.entry, copy, Status::Found)
        }
        OnDisk::Absent | OnDisk::Deleted => {
            insert_initial(cx, &mut entry, start.entry, f, key, input, scratch)
        }
    }
}

/// KO5 for a pending delete.
pub(crate) fn finish_delete(
    cx: (&KvInner, OpVersion),
    guard: &EpochGuard<'_>,
    (hash, key): (KeyHash, &[u8]),
    (start, found): (&DiskStart, &OnDisk),
) -> Result<Attempt<Status>> {
    let mut entry = cx.0.index.find_or_create(hash, guard)?;
    if entry.entry() != start.entry {
        return delete(cx, guard, hash, key);
    }
    match found {
        OnDisk::Value(_) => {
            append_published(cx, &mut entry, start.entry, (key, &[], true), Status::Found)
        }
        OnDisk::Absent | OnDisk::Deleted => Ok(Attempt::Done(Status::NotFound)),
    }
}
