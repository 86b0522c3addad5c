//! FasterKV records on ring-page words (`&[AtomicU64]`, the in-memory hybrid log): writing a
//! record, matching its key, and reading, updating, deleting and sealing it under the seqlock in
//! its update counter, all in safe code. The format is `record.rs`'s (KR1–KR5).
//!
//! Invariants:
//! - KR6. [`write_record_words`] stores every word of the record, word 1 last with `Release`; a
//!   reader that loads a non-zero word 1 with `Acquire` sees the whole record.
//! - KR7. Word 2 is a seqlock. It is odd exactly while one writer holds the record; the value's
//!   words, `value_len` and the sealed and tombstone bits change only while it is odd (the
//!   invalid bit is set with an atomic OR, on records not yet published). Writers take it with a
//!   CAS from even to odd followed by a `Release` fence and give it back with a `Release` store of
//!   odd + 1; readers accept a copy only when an `Acquire` load before it and a load after an
//!   `Acquire` fence return the same even value. The key, `key_len`, `value_capacity`, previous
//!   address and version never change once the record is written.
//! - KR8. No in-place change follows a seal: [`seal`] sets the bit and copies the value under
//!   the lock, and every in-place writer checks the bit after taking the lock. So the value
//!   [`seal`] copies is the record's last, until [`unseal`].
//! - KR9. A writer's closure that panics leaves the record unchanged and unlocked: the lock's
//!   guard gives it back on unwind, and the words are written only after the closure returns.

use std::ops::Range;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU64, fence};

use super::{
    COUNTER_WORD, INFO_WORD, LENGTHS_WORD, RECORD_HEADER_BYTES, RecordError, RecordHeader,
    RecordInfo, WORD_BYTES, split_lengths, with_value_len, word_of,
};

/// A value up to this long is updated in place through a buffer on the stack.
const STACK_VALUE_BYTES: usize = 256;

const _: () = assert!(STACK_VALUE_BYTES.is_multiple_of(8));

/// What [`read_value`] found.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOutcome {
    /// The value is in `out`.
    Value,
    /// The record is a delete (`out` is empty).
    Tombstone,
    /// The record was superseded: re-read the index (`out` is empty).
    Sealed,
    /// The record must be skipped (`out` is empty).
    Invalid,
}

/// What an in-place change did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// The record changed.
    Updated,
    /// The closure returned `None`: nothing changed.
    Declined,
    /// The closure's new length exceeds the capacity: nothing changed (copy to the tail).
    OverCapacity {
        /// The length the closure returned.
        len: usize,
        /// The record's capacity.
        capacity: usize,
    },
    /// The record is sealed: nothing changed (re-read the index).
    Sealed,
    /// The record is a delete: nothing changed.
    Tombstone,
    /// The record is invalid: nothing changed.
    Invalid,
}

/// What [`seal`] did.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealOutcome {
    /// Sealed; `out` holds the record's last value (empty for a tombstone).
    Sealed,
    /// It was sealed already; nothing changed (`out` is empty).
    AlreadySealed,
    /// The record is invalid; nothing changed (`out` is empty).
    Invalid,
}

/// Writes a record onto ring-page `words` at byte `offset` (KR6) and returns its size. The words
/// must be the writer's own reservation: no other thread may read them until this returns,
/// except a scanner that waits for a non-zero word 1.
pub fn write_record_words(
    words: &[AtomicU64],
    offset: usize,
    info: RecordInfo,
    key: &[u8],
    value: &[u8],
    value_capacity: usize,
) -> Result<u32, RecordError> {
    let h = RecordHeader::new(info, key.len(), value.len(), value_capacity)?;
    let rw = record_words(words, offset)?;
    let rw = rw
        .get(..h.size() / WORD_BYTES)
        .ok_or(RecordError::CrossesPage {
            size: h.size(),
            bytes_left: rw.len() * WORD_BYTES,
        })?;
    rw[COUNTER_WORD].store(0, Relaxed);
    rw[INFO_WORD].store(info.word(), Relaxed);
    store_padded(
        &rw[word_range(h.key_range().start..h.capacity_range().start)],
        key,
    );
    store_padded(&rw[word_range(h.capacity_range())], value);
    // KR6: word 1 last, so a scanner that sees it sees the rest.
    rw[LENGTHS_WORD].store(h.lengths_word(), Release);
    Ok(h.size() as u32)
}

/// The header of the record at byte `offset` of ring-page `words` (word 1 loaded with `Acquire`,
/// KR6). `value_len` is a snapshot: it may change under the seqlock.
#[inline]
pub fn header_at(words: &[AtomicU64], offset: usize) -> Result<RecordHeader, RecordError> {
    let rw = record_words(words, offset)?;
    let lengths = rw[LENGTHS_WORD].load(Acquire);
    let info = rw[INFO_WORD].load(Relaxed);
    RecordHeader::decode([info, lengths, 0], rw.len() * WORD_BYTES)
}

/// The info of the record at byte `offset` of ring-page `words`.
pub fn load_info(words: &[AtomicU64], offset: usize) -> Result<RecordInfo, RecordError> {
    header_at(words, offset).map(|h| h.info)
}

/// Whether the record at byte `offset` of ring-page `words` has key `key` (see
/// [`RecordWords::key_matches`]). A record that does not decode matches no key.
pub fn key_matches(words: &[AtomicU64], offset: usize, key: &[u8]) -> bool {
    RecordWords::at(words, offset).is_ok_and(|r| r.key_matches(key))
}

/// [`RecordWords::read_value`] of the record at byte `offset`.
pub fn read_value(
    words: &[AtomicU64],
    offset: usize,
    out: &mut Vec<u8>,
) -> Result<ReadOutcome, RecordError> {
    RecordWords::at(words, offset)?.read_value(out)
}

/// [`RecordWords::try_update_in_place`] of the record at byte `offset`.
pub fn try_update_in_place(
    words: &[AtomicU64],
    offset: usize,
    f: impl FnOnce(&mut [u8], usize) -> Option<usize>,
) -> Result<UpdateOutcome, RecordError> {
    RecordWords::at(words, offset)?.try_update_in_place(f)
}

/// [`RecordWords::try_delete_in_place`] of the record at byte `offset`.
pub fn try_delete_in_place(
    words: &[AtomicU64],
    offset: usize,
) -> Result<UpdateOutcome, RecordError> {
    RecordWords::at(words, offset)?.try_delete_in_place()
}

/// [`RecordWords::seal`] of the record at byte `offset`.
pub fn seal(
    words: &[AtomicU64],
    offset: usize,
    out: &mut Vec<u8>,
) -> Result<SealOutcome, RecordError> {
    RecordWords::at(words, offset)?.seal(out)
}

/// [`RecordWords::unseal`] of the record at byte `offset`.
pub fn unseal(words: &[AtomicU64], offset: usize) -> Result<bool, RecordError> {
    Ok(RecordWords::at(words, offset)?.unseal())
}

/// [`RecordWords::mark_invalid`] of the record at byte `offset`.
pub fn mark_invalid(words: &[AtomicU64], offset: usize) -> Result<(), RecordError> {
    RecordWords::at(words, offset)?.mark_invalid();
    Ok(())
}

/// A record on ring-page words with its fixed layout decoded once: the key, `key_len`,
/// `value_capacity`, previous address and version never change once it is written (KR7), so the
/// ranges taken from this header stay valid while the value, its length and the flag bits change.
#[derive(Debug, Clone, Copy)]
pub struct RecordWords<'a> {
    /// Exactly the record's words.
    words: &'a [AtomicU64],
    header: RecordHeader,
}

impl<'a> RecordWords<'a> {
    /// The record at byte `offset` of ring-page `words`, decoded (word 1 with `Acquire`, KR6).
    #[inline]
    pub fn at(words: &'a [AtomicU64], offset: usize) -> Result<RecordWords<'a>, RecordError> {
        let (header, words) = fixed_layout(words, offset)?;
        Ok(RecordWords { words, header })
    }

    /// The header as decoded (its `value_len` and flag bits are a snapshot).
    pub fn header(&self) -> &RecordHeader {
        &self.header
    }

    /// The info word, loaded now.
    #[inline]
    pub fn info(&self) -> Result<RecordInfo, RecordError> {
        RecordInfo::from_word(self.words[INFO_WORD].load(Relaxed))
    }

    /// Whether the record's key is `key`, compared a word at a time (KR4).
    #[inline]
    pub fn key_matches(&self, key: &[u8]) -> bool {
        if usize::from(self.header.key_len) != key.len() {
            return false;
        }
        let key_words = &self.words
            [word_range(self.header.key_range().start..self.header.capacity_range().start)];
        key.chunks(WORD_BYTES)
            .zip(key_words)
            .all(|(chunk, w)| w.load(Relaxed) == word_of(chunk))
    }

    /// Copies the value into `out` (replacing its contents) under the seqlock (KR7): retries
    /// while a writer holds the record, spinning a little and then yielding.
    #[inline]
    pub fn read_value(&self, out: &mut Vec<u8>) -> Result<ReadOutcome, RecordError> {
        let rw = self.words;
        let value_words = &rw[word_range(self.header.capacity_range())];
        let capacity = self.header.value_capacity as usize;
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let before = rw[COUNTER_WORD].load(Acquire);
            if before.is_multiple_of(2) {
                let info = rw[INFO_WORD].load(Relaxed);
                let lengths = rw[LENGTHS_WORD].load(Relaxed);
                let outcome = read_outcome(info);
                out.clear();
                if outcome == ReadOutcome::Value {
                    let len = split_lengths(lengths).1.min(capacity);
                    out.resize(len, 0);
                    load_into(value_words, out);
                }
                fence(Acquire);
                if rw[COUNTER_WORD].load(Relaxed) == before {
                    // A stable copy: now its fields may be judged. The key's length and the
                    // capacity were checked when the layout was decoded; a copy that keeps them
                    // needs only its flags and value length checked (the full decode's result).
                    if !self.keeps_layout(info, lengths) {
                        RecordHeader::decode([info, lengths, 0], rw.len() * WORD_BYTES)?;
                    }
                    return Ok(outcome);
                }
            }
            backoff.snooze();
        }
    }

    /// Whether `info` and `lengths` decode (KR2, KR3) with this record's key length and
    /// capacity: what [`RecordHeader::decode`] would accept for them, checked in a few
    /// instructions.
    #[inline]
    fn keeps_layout(&self, info: u64, lengths: u64) -> bool {
        let (key_len, value_len, capacity) = split_lengths(lengths);
        info & RecordInfo::RESERVED_MASK == 0
            && key_len == usize::from(self.header.key_len)
            && capacity == self.header.value_capacity as usize
            && value_len <= capacity
    }

    /// Updates the value in place under the seqlock (KR7–KR9). `f` gets the value's bytes up to
    /// the capacity (zero past the value) and the value's length, and returns the new length, or
    /// `None` to change nothing.
    pub fn try_update_in_place(
        &self,
        f: impl FnOnce(&mut [u8], usize) -> Option<usize>,
    ) -> Result<UpdateOutcome, RecordError> {
        let rw = self.words;
        let value_words = &rw[word_range(self.header.capacity_range())];
        let capacity = self.header.value_capacity as usize;
        let _locked = Locked::take(&rw[COUNTER_WORD]);
        let info = RecordInfo::from_word(rw[INFO_WORD].load(Relaxed))?;
        if let Some(refused) = refusal(info) {
            return Ok(refused);
        }
        let lengths = rw[LENGTHS_WORD].load(Relaxed);
        let (mut stack, mut heap) = ([0u8; STACK_VALUE_BYTES], Vec::new());
        let buf = scratch(&mut stack, &mut heap, capacity);
        load_into(value_words, buf);
        // KR9: the closure runs before any word is stored.
        let Some(len) = f(buf, split_lengths(lengths).1) else {
            return Ok(UpdateOutcome::Declined);
        };
        if len > capacity {
            return Ok(UpdateOutcome::OverCapacity { len, capacity });
        }
        buf[len..].fill(0); // KR4
        store_changed(value_words, buf);
        rw[LENGTHS_WORD].store(with_value_len(lengths, len), Relaxed);
        Ok(UpdateOutcome::Updated)
    }

    /// Replaces the value in place under the seqlock (KR7, KR8): an upsert's update, which needs
    /// no copy of the old value. `OverCapacity` when `value` is longer than the record holds.
    #[inline]
    pub fn try_replace_in_place(&self, value: &[u8]) -> Result<UpdateOutcome, RecordError> {
        let rw = self.words;
        let capacity = self.header.value_capacity as usize;
        if value.len() > capacity {
            let len = value.len();
            return Ok(UpdateOutcome::OverCapacity { len, capacity });
        }
        let value_words = &rw[word_range(self.header.capacity_range())];
        let _locked = Locked::take(&rw[COUNTER_WORD]);
        let info = RecordInfo::from_word(rw[INFO_WORD].load(Relaxed))?;
        if let Some(refused) = refusal(info) {
            return Ok(refused);
        }
        store_padded(value_words, value); // KR4: zero past the value
        let lengths = rw[LENGTHS_WORD].load(Relaxed);
        rw[LENGTHS_WORD].store(with_value_len(lengths, value.len()), Relaxed);
        Ok(UpdateOutcome::Updated)
    }

    /// Marks the record a delete, in place under the seqlock (its value stays). Refused for a
    /// sealed or invalid record; a tombstone stays one.
    pub fn try_delete_in_place(&self) -> Result<UpdateOutcome, RecordError> {
        let rw = self.words;
        let _locked = Locked::take(&rw[COUNTER_WORD]);
        let info = RecordInfo::from_word(rw[INFO_WORD].load(Relaxed))?;
        if let Some(refused) = refusal(info) {
            return Ok(refused);
        }
        rw[INFO_WORD].fetch_or(RecordInfo::TOMBSTONE_BIT, Relaxed);
        Ok(UpdateOutcome::Updated)
    }

    /// Seals the record and copies its value into `out`, both under the seqlock, so no in-place
    /// change follows the copy (KR8).
    pub fn seal(&self, out: &mut Vec<u8>) -> Result<SealOutcome, RecordError> {
        let rw = self.words;
        let _locked = Locked::take(&rw[COUNTER_WORD]);
        let info = RecordInfo::from_word(rw[INFO_WORD].load(Relaxed))?;
        out.clear();
        if info.is_invalid() {
            return Ok(SealOutcome::Invalid);
        }
        if info.is_sealed() {
            return Ok(SealOutcome::AlreadySealed);
        }
        if !info.is_tombstone() {
            let len = split_lengths(rw[LENGTHS_WORD].load(Relaxed)).1;
            out.resize(len.min(self.header.value_capacity as usize), 0);
            load_into(&rw[word_range(self.header.capacity_range())], out);
        }
        rw[INFO_WORD].fetch_or(RecordInfo::SEALED_BIT, Relaxed);
        Ok(SealOutcome::Sealed)
    }

    /// Clears the sealed bit (for a copy to the tail that was given up); returns whether it was
    /// set.
    pub fn unseal(&self) -> bool {
        let rw = self.words;
        let _locked = Locked::take(&rw[COUNTER_WORD]);
        let was = rw[INFO_WORD].fetch_and(!RecordInfo::SEALED_BIT, Relaxed);
        was & RecordInfo::SEALED_BIT != 0
    }

    /// Sets the invalid bit with an atomic OR, without the lock: for a record its writer did not
    /// publish (an insert that lost its index CAS).
    pub fn mark_invalid(&self) {
        self.words[INFO_WORD].fetch_or(RecordInfo::INVALID_BIT, Release);
    }
}

/// The words from byte `offset` to the page's end, at least a header's worth.
#[inline]
fn record_words(words: &[AtomicU64], offset: usize) -> Result<&[AtomicU64], RecordError> {
    if !offset.is_multiple_of(WORD_BYTES) {
        return Err(RecordError::OffsetUnaligned { offset });
    }
    words
        .get(offset / WORD_BYTES..)
        .filter(|rw| rw.len() * WORD_BYTES >= RECORD_HEADER_BYTES)
        .ok_or(RecordError::OffsetPastPage {
            offset,
            page_bytes: words.len() * WORD_BYTES,
        })
}

/// The record's header and exactly its words. The key's length and the capacity never change
/// (KR7), so the ranges taken from this header stay valid while the value changes.
#[inline]
fn fixed_layout(
    words: &[AtomicU64],
    offset: usize,
) -> Result<(RecordHeader, &[AtomicU64]), RecordError> {
    let h = header_at(words, offset)?;
    let rw = record_words(words, offset)?;
    // `header_at` checked that the record fits in `rw`.
    Ok((h, &rw[..h.size() / WORD_BYTES]))
}

/// The word indexes of a byte range whose ends are multiples of 8.
fn word_range(bytes: Range<usize>) -> Range<usize> {
    bytes.start / WORD_BYTES..bytes.end / WORD_BYTES
}

fn read_outcome(info: u64) -> ReadOutcome {
    let info = RecordInfo(info);
    if info.is_invalid() {
        ReadOutcome::Invalid
    } else if info.is_sealed() {
        ReadOutcome::Sealed
    } else if info.is_tombstone() {
        ReadOutcome::Tombstone
    } else {
        ReadOutcome::Value
    }
}

/// Why an in-place change is refused, if it is.
fn refusal(info: RecordInfo) -> Option<UpdateOutcome> {
    if info.is_invalid() {
        Some(UpdateOutcome::Invalid)
    } else if info.is_sealed() {
        Some(UpdateOutcome::Sealed)
    } else if info.is_tombstone() {
        Some(UpdateOutcome::Tombstone)
    } else {
        None
    }
}

/// A `len`-byte scratch buffer: on the stack when short enough.
fn scratch<'a>(
    stack: &'a mut [u8; STACK_VALUE_BYTES],
    heap: &'a mut Vec<u8>,
    len: usize,
) -> &'a mut [u8] {
    if len <= STACK_VALUE_BYTES {
        &mut stack[..len]
    } else {
        heap.resize(len, 0);
        heap
    }
}

/// Stores `bytes` into `words`, zero padded to all of them.
fn store_padded(words: &[AtomicU64], bytes: &[u8]) {
    debug_assert!(bytes.len() <= words.len() * WORD_BYTES);
    let mut chunks = bytes.chunks(WORD_BYTES);
    for w in words {
        w.store(chunks.next().map_or(0, word_of), Relaxed);
    }
}

/// Stores the words of `bytes` that differ from those in `words` (the writer holds the lock).
fn store_changed(words: &[AtomicU64], bytes: &[u8]) {
    for (w, chunk) in words.iter().zip(bytes.chunks(WORD_BYTES)) {
        let new = word_of(chunk);
        if w.load(Relaxed) != new {
            w.store(new, Relaxed);
        }
    }
}

/// Fills `out` from `words`, a word at a time.
#[inline]
fn load_into(words: &[AtomicU64], out: &mut [u8]) {
    let (whole, rest) = out.as_chunks_mut::<WORD_BYTES>();
    for (chunk, w) in whole.iter_mut().zip(words) {
        *chunk = w.load(Relaxed).to_le_bytes();
    }
    if let Some(w) = words.get(whole.len())
        && !rest.is_empty()
    {
        let n = rest.len();
        rest.copy_from_slice(&w.load(Relaxed).to_le_bytes()[..n]);
    }
}

/// A held seqlock (KR7); giving it back (on drop, unwinding included: KR9) makes the counter even.
struct Locked<'a> {
    counter: &'a AtomicU64,
    odd: u64,
}

impl<'a> Locked<'a> {
    /// Waits for an even counter and takes it to odd.
    fn take(counter: &'a AtomicU64) -> Locked<'a> {
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let even = counter.load(Relaxed);
            if even.is_multiple_of(2)
                && counter
                    .compare_exchange_weak(even, even.wrapping_add(1), Acquire, Relaxed)
                    .is_ok()
            {
                // KR7: a reader that sees any word stored after this sees the odd counter.
                fence(Release);
                return Locked {
                    counter,
                    odd: even.wrapping_add(1),
                };
            }
            backoff.snooze();
        }
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.counter.store(self.odd.wrapping_add(1), Release);
    }
}
