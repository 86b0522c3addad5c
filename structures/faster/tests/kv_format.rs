//! The FasterKV record and page-node formats (`design/FORMAT.md` §9, `kv::record` and
//! `kv::page`):
//! - record sizes and limits, exact values and exact errors;
//! - headers and records round-trip for sampled key lengths 1..=4096 and capacities, over byte
//!   slices and over ring-page words;
//! - every record and page rule is refused with its exact error at its exact node offset;
//! - property tests: `decode_page` and the record walker never panic on arbitrary bytes, nor on
//!   valid pages with one byte changed (and what they accept then re-encodes to the same bytes,
//!   update counters aside); a page of random records decodes to exactly those records, whether
//!   laid out in bytes or written onto ring words and copied out with `write_page_node`;
//! - the seqlock: in-place updates refused for sealed, deleted and invalid records, a panicking
//!   closure leaves the record unlocked and unchanged, and 4 writers incrementing a counter
//!   in place beside 2 readers lose no update and show no torn value.
//!
//! `VELLUM_KV_PROP_CASES` (default 256) sets the cases per property.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use proptest::prelude::*;
use vellum_faster::kv::page::{
    PAGE_HEADER_BYTES, PageError, PageErrorKind, PageHeader, decode_page, encode_page,
    write_page_node,
};
use vellum_faster::kv::record::{
    ADDRESS_MAX, KEY_BYTES_MAX, ReadOutcome, RecordError, RecordHeader, RecordInfo, SealOutcome,
    UpdateOutcome, VALUE_BYTES_MAX, encode_record, header_at, key_matches, mark_invalid, pad8,
    read_value, record_at_bytes, record_size, record_size_in_page, seal, try_delete_in_place,
    try_update_in_place, unseal, value_bytes_max, write_record_words,
};

mod common;

fn cases() -> u32 {
    common::env_u64("VELLUM_KV_PROP_CASES", 256) as u32
}

fn ring_page(page_bytes: usize) -> Vec<AtomicU64> {
    (0..page_bytes / 8).map(|_| AtomicU64::new(0)).collect()
}

fn info() -> RecordInfo {
    RecordInfo::new(0x0000_1234_5678_9abc, 3)
}

/// One record as a test describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rec {
    info: RecordInfo,
    key: Vec<u8>,
    value: Vec<u8>,
    capacity: usize,
}

/// Lays `recs` out from `records_begin` of a `page_bytes` page and returns the node and each
/// record's offset.
fn page_of(page: u64, page_bytes: u32, records_begin: u32, recs: &[Rec]) -> (Vec<u8>, Vec<usize>) {
    let mut body = vec![0u8; page_bytes as usize];
    let mut at = records_begin as usize;
    let mut offsets = Vec::new();
    for r in recs {
        offsets.push(at);
        at += encode_record(r.info, &r.key, &r.value, r.capacity, &mut body[at..]).unwrap();
    }
    body.truncate(at);
    let header = PageHeader {
        page,
        page_bytes,
        used_bytes: at as u32,
        records_begin,
    };
    (encode_page(&header, &body).unwrap(), offsets)
}

fn decoded(node: &[u8]) -> Vec<(usize, Rec)> {
    let view = decode_page(node).unwrap();
    view.records()
        .map(|r| {
            let r = r.unwrap();
            let rec = Rec {
                info: r.header.info,
                key: r.key.to_vec(),
                value: r.value.to_vec(),
                capacity: r.header.value_capacity as usize,
            };
            (r.offset, rec)
        })
        .collect()
}

#[test]
fn record_sizes_are_exact() {
    assert_eq!(record_size(1, 0), Ok(32));
    assert_eq!(record_size(5, 8), Ok(40));
    assert_eq!(record_size(8, 8), Ok(40));
    assert_eq!(record_size(9, 0), Ok(40));
    assert_eq!(record_size(9, 16), Ok(56));
    assert_eq!(record_size(4096, 0), Ok(4120));
    assert_eq!(
        record_size(KEY_BYTES_MAX, VALUE_BYTES_MAX),
        Ok(24 + 4096 + 16_777_208)
    );
    assert_eq!(VALUE_BYTES_MAX, (1 << 24) - 8);
    // What a page allows.
    assert_eq!(value_bytes_max(5, 4096), 4096 - 24 - 8);
    assert_eq!(record_size_in_page(5, 4064, 4096), Ok(4096));
    assert_eq!(value_bytes_max(1, 32 << 20), VALUE_BYTES_MAX);
    assert_eq!(value_bytes_max(4096, 4096), 0);
}

#[test]
fn limits_are_refused_with_exact_errors() {
    assert_eq!(
        record_size(4097, 8),
        Err(RecordError::KeyTooLong {
            len: 4097,
            max: 4096
        })
    );
    assert_eq!(record_size(0, 8), Err(RecordError::KeyEmpty));
    assert_eq!(
        record_size(1, 1 << 24),
        Err(RecordError::ValueTooLong {
            len: 1 << 24,
            max: (1 << 24) - 8
        })
    );
    assert_eq!(
        record_size(1, 12),
        Err(RecordError::CapacityUnaligned { capacity: 12 })
    );
    // A 4 KiB page holds keys up to 4072 bytes, and with a 5-byte key values up to 4064.
    assert_eq!(
        record_size_in_page(4096, 0, 4096),
        Err(RecordError::KeyTooLong {
            len: 4096,
            max: 4072
        })
    );
    assert_eq!(
        record_size_in_page(5, 4072, 4096),
        Err(RecordError::ValueTooLong {
            len: 4072,
            max: 4064
        })
    );
    let mut out = [0u8; 64];
    assert_eq!(
        encode_record(info(), b"k", &[1; 9], 8, &mut out),
        Err(RecordError::ValueOverCapacity {
            len: 9,
            capacity: 8
        })
    );
    assert_eq!(
        encode_record(info(), b"key-1", b"hello", 8, &mut out[..39]),
        Err(RecordError::CrossesPage {
            size: 40,
            bytes_left: 39
        })
    );
    assert_eq!(
        encode_record(info(), b"", b"", 0, &mut out),
        Err(RecordError::KeyEmpty)
    );
    let words = ring_page(4096);
    let write = |offset| write_record_words(&words, offset, info(), b"key-1", b"hello", 8);
    assert_eq!(write(4), Err(RecordError::OffsetUnaligned { offset: 4 }));
    assert_eq!(
        write(4080),
        Err(RecordError::OffsetPastPage {
            offset: 4080,
            page_bytes: 4096
        })
    );
    assert_eq!(
        write(4064),
        Err(RecordError::CrossesPage {
            size: 40,
            bytes_left: 32
        })
    );
    assert_eq!(
        write(4056),
        Ok(40),
        "the last record that fits ends the page"
    );
}

/// Key lengths 1..=4096 (every 37th, and the edges around the padding) with capacities up to
/// the format's largest, through every encoder and decoder.
#[test]
fn headers_and_records_round_trip() {
    let keys = (1..=4096).step_by(37).chain([7, 8, 9, 4088, 4095, 4096]);
    for key_len in keys {
        for capacity in [0, 8, 16, 4096, VALUE_BYTES_MAX] {
            for value_len in [0, capacity / 2, capacity.saturating_sub(1), capacity] {
                let h = RecordHeader::new(info(), key_len, value_len, capacity).unwrap();
                let size = record_size(key_len, capacity).unwrap() as usize;
                assert_eq!(h.size(), size);
                assert_eq!(RecordHeader::decode(h.encode(), size), Ok(h));
                assert_eq!(
                    RecordHeader::decode(h.encode(), size - 8),
                    Err(RecordError::CrossesPage {
                        size,
                        bytes_left: size - 8
                    })
                );
            }
            if capacity <= 4096 {
                round_trip_record(key_len, capacity);
            }
        }
    }
}

/// One record through `encode_record` / `record_at_bytes` and `write_record_words` /
/// `header_at` / `key_matches` / `read_value`.
fn round_trip_record(key_len: usize, capacity: usize) {
    let key: Vec<u8> = (0..key_len).map(|i| (i * 7 + 1) as u8).collect();
    let value: Vec<u8> = (0..capacity / 2 + 1)
        .map(|i| i as u8)
        .take(capacity)
        .collect();
    let size = record_size(key_len, capacity).unwrap() as usize;
    let mut bytes = vec![0xa5u8; size];
    assert_eq!(
        encode_record(info(), &key, &value, capacity, &mut bytes),
        Ok(size)
    );
    let r = record_at_bytes(&bytes, 0).unwrap();
    assert_eq!((r.key, r.value, r.offset), (&key[..], &value[..], 0));
    let words = ring_page(size + 16);
    assert_eq!(
        write_record_words(&words, 16, info(), &key, &value, capacity),
        Ok(size as u32)
    );
    assert_eq!(header_at(&words, 16), Ok(r.header));
    assert!(key_matches(&words, 16, &key));
    let mut other = key.clone();
    other[key_len - 1] ^= 1;
    assert!(!key_matches(&words, 16, &other));
    assert!(!key_matches(&words, 16, &key[..key_len - 1]));
    let mut out = vec![9; 3];
    assert_eq!(read_value(&words, 16, &mut out), Ok(ReadOutcome::Value));
    assert_eq!(out, value);
    let on_words: Vec<u8> = words[2..]
        .iter()
        .flat_map(|w| w.load(Ordering::Relaxed).to_le_bytes())
        .collect();
    assert_eq!(on_words, bytes, "both encoders write the same bytes");
}

/// Each record rule, refused in a page node at the offset of its field (record at page offset
/// 40, so node offset 72).
#[test]
fn record_rules_are_refused_where_they_are() {
    let recs = [
        Rec {
            info: info(),
            key: b"key-1".to_vec(),
            value: b"hello".to_vec(),
            capacity: 8,
        },
        Rec {
            info: RecordInfo::new(8, 4).with_tombstone(true),
            key: b"second".to_vec(),
            value: b"v2".to_vec(),
            capacity: 16,
        },
    ];
    let (node, offsets) = page_of(7, 4096, 0, &recs);
    assert_eq!(offsets, [0, 40]);
    let at = PAGE_HEADER_BYTES + 40;
    let refused = |patch: &dyn Fn(&mut [u8])| {
        let mut b = node.clone();
        patch(&mut b[at..]);
        let view = decode_page(&b).unwrap();
        let errors: Vec<PageError> = view.records().filter_map(Result::err).collect();
        assert_eq!(errors.len(), 1);
        assert_eq!(view.record_at(40), Err(errors[0]));
        (errors[0].offset as usize - at, errors[0].kind)
    };
    let record = |e| PageErrorKind::Record(e);
    let set = |word: usize, v: u64| {
        move |r: &mut [u8]| r[word * 8..word * 8 + 8].copy_from_slice(&v.to_le_bytes())
    };
    let lengths = |k: u64, v: u64, c: u64| k | v << 16 | c << 40;
    assert_eq!(
        refused(&set(0, 1 << 63)),
        (0, record(RecordError::ReservedBits { info: 1 << 63 }))
    );
    assert_eq!(
        refused(&set(1, lengths(4097, 0, 0))),
        (
            8,
            record(RecordError::KeyTooLong {
                len: 4097,
                max: 4096
            })
        )
    );
    assert_eq!(
        refused(&set(1, lengths(6, 17, 16))),
        (
            8,
            record(RecordError::ValueOverCapacity {
                len: 17,
                capacity: 16
            })
        )
    );
    assert_eq!(
        refused(&set(1, lengths(6, 2, 12))),
        (8, record(RecordError::CapacityUnaligned { capacity: 12 }))
    );
    assert_eq!(
        refused(&set(1, lengths(6, 2, 24))),
        (
            8,
            record(RecordError::CrossesPage {
                size: 56,
                bytes_left: 48
            })
        )
    );
    assert_eq!(
        refused(&set(2, 7)),
        (16, record(RecordError::CounterOdd { counter: 7 }))
    );
    assert_eq!(
        refused(&|r: &mut [u8]| r[30] = 1),
        (30, record(RecordError::PaddingNotZero { at: 30 }))
    );
    assert_eq!(
        refused(&|r: &mut [u8]| r[34] = 1),
        (34, record(RecordError::PaddingNotZero { at: 34 }))
    );
    // Any even counter is accepted on disk.
    let mut b = node.clone();
    set(2, 1 << 40)(&mut b[at..]);
    assert_eq!(decoded(&b), decoded(&node));
    // A zero lengths word before used_bytes ends the records only if all after it is zero.
    let mut b = node.clone();
    set(1, 0)(&mut b[at..]);
    let view = decode_page(&b).unwrap();
    let walked: Vec<_> = view.records().collect();
    assert_eq!(walked.len(), 2);
    assert_eq!(
        walked[1],
        Err(PageError {
            offset: at as u64,
            kind: PageErrorKind::InvalidField {
                field: "after_records",
                value: 8
            }
        })
    );
    assert_eq!(
        view.record_at(40).unwrap_err().kind,
        record(RecordError::KeyEmpty)
    );
}

/// Page 0 starts its records past address 0; a page may store its zero tail.
#[test]
fn records_begin_and_zero_tails() {
    let recs = [Rec {
        info: RecordInfo::new(0, 1),
        key: b"first".to_vec(),
        value: vec![],
        capacity: 0,
    }];
    let (node, offsets) = page_of(0, 4096, 64, &recs);
    assert_eq!(offsets, [64]);
    assert_eq!(node.len(), 32 + 64 + 32);
    let view = decode_page(&node).unwrap();
    assert_eq!(view.address(64), 64);
    assert_eq!(decoded(&node).len(), 1);
    assert_eq!(
        view.record_at(0).unwrap_err().kind,
        PageErrorKind::OffsetOutsideRecords {
            offset: 0,
            records_begin: 64,
            used_bytes: 96
        }
    );
    let mut b = node.clone();
    b[32 + 10] = 3;
    assert_eq!(
        decode_page(&b).unwrap_err(),
        PageError {
            offset: 42,
            kind: PageErrorKind::InvalidField {
                field: "before_records",
                value: 3
            }
        }
    );
    // The same page stored whole: the zero tail after the last record is accepted...
    let mut whole = node.clone();
    whole[20..24].copy_from_slice(&4096u32.to_le_bytes());
    whole.resize(32 + 4096, 0);
    let view = decode_page(&whole).unwrap();
    let mut walk = view.records();
    assert_eq!(walk.by_ref().filter(Result::is_ok).count(), 1);
    assert_eq!(walk.offset(), 96);
    // ...but not a non-zero byte in it, even one too short to hold a record.
    *whole.last_mut().unwrap() = 1;
    let last = decode_page(&whole).unwrap().records().last().unwrap();
    assert_eq!(
        last,
        Err(PageError {
            offset: 32 + 4095,
            kind: PageErrorKind::InvalidField {
                field: "after_records",
                value: 1
            }
        })
    );
}

// ---- The seqlock.

fn counter_record(words: &[AtomicU64], capacity: usize) {
    write_record_words(words, 64, info(), b"counter", &[0; 32], capacity).unwrap();
}

fn value_of(words: &[AtomicU64]) -> Vec<u8> {
    let mut out = Vec::new();
    assert_eq!(read_value(words, 64, &mut out), Ok(ReadOutcome::Value));
    out
}

#[test]
fn in_place_changes_follow_the_flags() {
    let words = ring_page(4096);
    counter_record(&words, 40);
    let grow = |v: &mut [u8], len: usize| {
        assert_eq!((len, v.len()), (32, 40));
        v[32..].copy_from_slice(b"growing!");
        Some(40)
    };
    assert_eq!(
        try_update_in_place(&words, 64, |_, _| None),
        Ok(UpdateOutcome::Declined)
    );
    assert_eq!(
        try_update_in_place(&words, 64, |_, _| Some(41)),
        Ok(UpdateOutcome::OverCapacity {
            len: 41,
            capacity: 40
        })
    );
    assert_eq!(value_of(&words), [0; 32], "refusals change nothing");
    assert_eq!(
        try_update_in_place(&words, 64, grow),
        Ok(UpdateOutcome::Updated)
    );
    assert_eq!(&value_of(&words)[32..], b"growing!");
    // Seal: the value copied is the last; no in-place change follows.
    let mut copy = Vec::new();
    assert_eq!(seal(&words, 64, &mut copy), Ok(SealOutcome::Sealed));
    assert_eq!(copy, value_of_unsealed(&words));
    assert_eq!(seal(&words, 64, &mut copy), Ok(SealOutcome::AlreadySealed));
    assert!(copy.is_empty());
    assert_eq!(
        try_update_in_place(&words, 64, |_, _| Some(0)),
        Ok(UpdateOutcome::Sealed)
    );
    assert_eq!(try_delete_in_place(&words, 64), Ok(UpdateOutcome::Sealed));
    let mut out = Vec::new();
    assert_eq!(read_value(&words, 64, &mut out), Ok(ReadOutcome::Sealed));
    assert_eq!(unseal(&words, 64), Ok(true));
    assert_eq!(unseal(&words, 64), Ok(false));
    // Delete in place, then invalid.
    assert_eq!(try_delete_in_place(&words, 64), Ok(UpdateOutcome::Updated));
    assert_eq!(read_value(&words, 64, &mut out), Ok(ReadOutcome::Tombstone));
    assert_eq!(
        try_delete_in_place(&words, 64),
        Ok(UpdateOutcome::Tombstone)
    );
    mark_invalid(&words, 64).unwrap();
    assert_eq!(read_value(&words, 64, &mut out), Ok(ReadOutcome::Invalid));
    assert_eq!(
        try_update_in_place(&words, 64, |_, _| Some(0)),
        Ok(UpdateOutcome::Invalid)
    );
    let info = header_at(&words, 64).unwrap().info;
    assert!(info.is_invalid() && info.is_tombstone() && !info.is_sealed());
    // Every change and refusal gave the lock back.
    assert!(words[64 / 8 + 2].load(Ordering::Relaxed).is_multiple_of(2));
}

/// The value of a sealed record, read by clearing the seal on a copy of its words.
fn value_of_unsealed(words: &[AtomicU64]) -> Vec<u8> {
    let copy: Vec<AtomicU64> = words
        .iter()
        .map(|w| AtomicU64::new(w.load(Ordering::Relaxed)))
        .collect();
    unseal(&copy, 64).unwrap();
    value_of(&copy)
}

/// KR8: a closure that panics leaves the record unlocked and unchanged.
#[test]
fn a_panicking_update_leaves_the_record_unlocked() {
    let words = ring_page(4096);
    counter_record(&words, 32);
    let result = std::panic::catch_unwind(|| {
        let _ = try_update_in_place(&words, 64, |v, _| {
            v.fill(0xee);
            panic!("the closure fails");
        });
    });
    assert!(result.is_err());
    assert_eq!(value_of(&words), [0; 32]);
    assert_eq!(
        words[64 / 8 + 2].load(Ordering::Relaxed),
        2,
        "given back once"
    );
    assert_eq!(
        try_update_in_place(&words, 64, |_, _| Some(8)),
        Ok(UpdateOutcome::Updated)
    );
}

const WRITERS: u64 = 4;
const INCREMENTS_PER_WRITER: u64 = 100_000;

/// 4 writers increment a counter in place 100 000 times each while 2 readers check every value
/// they read: four equal copies (never torn) that never go down. No increment is lost.
#[test]
fn concurrent_in_place_increments_lose_nothing_and_tear_nothing() {
    let words = ring_page(4096);
    counter_record(&words, 32);
    let done = AtomicBool::new(false);
    let increment = |v: &mut [u8], len: usize| {
        assert_eq!(len, 32);
        let n = u64::from_le_bytes(v[..8].try_into().unwrap()) + 1;
        for copy in v.chunks_exact_mut(8) {
            copy.copy_from_slice(&n.to_le_bytes());
        }
        Some(32)
    };
    let read_until_done = || {
        let (mut last, mut reads, mut out) = (0u64, 0u64, Vec::new());
        loop {
            let finished = done.load(Ordering::Acquire);
            assert_eq!(read_value(&words, 64, &mut out), Ok(ReadOutcome::Value));
            let copies: Vec<u64> = out
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                .collect();
            assert_eq!(copies.len(), 4);
            assert!(copies.iter().all(|&c| c == copies[0]), "torn: {copies:?}");
            assert!(copies[0] >= last, "went down: {} after {last}", copies[0]);
            (last, reads) = (copies[0], reads + 1);
            if finished {
                return (last, reads);
            }
        }
    };
    let results = std::thread::scope(|s| {
        let readers: Vec<_> = (0..2).map(|_| s.spawn(read_until_done)).collect();
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..INCREMENTS_PER_WRITER {
                        let r = try_update_in_place(&words, 64, increment);
                        assert_eq!(r, Ok(UpdateOutcome::Updated));
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        done.store(true, Ordering::Release);
        readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .collect::<Vec<_>>()
    });
    let total = WRITERS * INCREMENTS_PER_WRITER;
    for (last, reads) in results {
        assert_eq!(last, total, "a reader's read after the writers ended");
        assert!(reads >= 1);
    }
    assert_eq!(value_of(&words), [total.to_le_bytes(); 4].concat());
    let counter = words[64 / 8 + 2].load(Ordering::Relaxed);
    assert_eq!(counter, 2 * total, "each update took the lock exactly once");
}

// ---- Properties.

fn rec() -> impl Strategy<Value = Rec> {
    (
        0..=ADDRESS_MAX,
        any::<u8>(),
        0u8..8,
        prop::collection::vec(any::<u8>(), 1..48),
        prop::collection::vec(any::<u8>(), 0..80),
        0usize..3,
    )
        .prop_map(|(prev, version, flags, key, value, extra_words)| {
            let info = RecordInfo::new(prev, version)
                .with_invalid(flags & 1 != 0)
                .with_tombstone(flags & 2 != 0)
                .with_sealed(flags & 4 != 0);
            let capacity = pad8(value.len()) + 8 * extra_words;
            Rec {
                info,
                key,
                value,
                capacity,
            }
        })
}

/// A page of random records that fit: `(page, page_bytes, records_begin, records)`.
fn page() -> impl Strategy<Value = (u64, u32, u32, Vec<Rec>)> {
    (
        prop::sample::select(vec![4096u32, 8192]),
        any::<bool>(),
        0u64..1 << 20,
        prop::collection::vec(rec(), 0..60),
    )
        .prop_map(|(page_bytes, first, page, mut recs)| {
            let (page, records_begin) = if first { (0, 64) } else { (page + 1, 0) };
            let mut at = records_begin as usize;
            let fits = recs
                .iter()
                .take_while(|r| {
                    at += record_size(r.key.len(), r.capacity).unwrap() as usize;
                    at <= page_bytes as usize
                })
                .count();
            recs.truncate(fits);
            (page, page_bytes, records_begin, recs)
        })
}

/// A word of a page body: zero, any, an info word with any flags, or a lengths word of small,
/// mostly valid lengths.
fn body_word() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        any::<u64>(),
        (any::<u64>(), 0u64..64).prop_map(|(w, top)| w & ((1 << 58) - 1) | top << 58),
        (1u64..20, 0u64..6, 0u64..48)
            .prop_map(|(k, c, v)| k | v.min(c * 8 + 1) << 16 | (c * 8 + v % 2 * 4) << 40),
    ]
}

/// A piece of a page body: one valid record, or a few junk words.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        rec().prop_map(|r| {
            let mut b = vec![0u8; record_size(r.key.len(), r.capacity).unwrap() as usize];
            encode_record(r.info, &r.key, &r.value, r.capacity, &mut b).unwrap();
            b
        }),
        prop::collection::vec(body_word(), 1..4)
            .prop_map(|w| w.iter().flat_map(|w| w.to_le_bytes()).collect()),
    ]
}

/// Walks every record of `node`, if its header decodes; checks the walk's promises (KP4, KP5).
fn walk_checked(node: &[u8]) -> Result<Vec<(usize, Rec)>, PageError> {
    let view = decode_page(node)?;
    let mut out = Vec::new();
    for r in view.records() {
        let r = r.inspect_err(|e| assert!(e.offset < node.len() as u64, "{e}"))?;
        assert!(r.offset + r.header.size() <= view.body().len());
        let rec = Rec {
            info: r.header.info,
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            capacity: r.header.value_capacity as usize,
        };
        out.push((r.offset, rec));
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        if let Err(e) = walk_checked(&bytes) {
            prop_assert!(e.offset <= bytes.len() as u64);
        }
    }

    /// Bodies of valid records and junk words (often plausible record words) in any order
    /// behind a valid header, so the record checks and the walk past valid records run.
    #[test]
    fn arbitrary_bodies_never_panic(pieces in prop::collection::vec(piece(), 0..24)) {
        let mut body: Vec<u8> = pieces.concat();
        body.truncate(4096);
        let header = PageHeader { page: 1, page_bytes: 4096, used_bytes: body.len() as u32, records_begin: 0 };
        let node = encode_page(&header, &body).unwrap();
        let _ = walk_checked(&node);
    }

    #[test]
    fn valid_pages_decode_to_their_records((page, page_bytes, begin, recs) in page()) {
        let (node, offsets) = page_of(page, page_bytes, begin, &recs);
        let want: Vec<(usize, Rec)> = offsets.into_iter().zip(recs.iter().cloned()).collect();
        prop_assert_eq!(&walk_checked(&node).unwrap(), &want);
        let view = decode_page(&node).unwrap();
        view.check_page(page, page_bytes).unwrap();
        for (offset, r) in &want {
            let got = view.record_at(*offset).unwrap();
            prop_assert_eq!((got.key, got.value), (&r.key[..], &r.value[..]));
        }
        // The same records written onto a ring page and copied out as a node: the same bytes.
        let words = ring_page(page_bytes as usize);
        for (offset, r) in &want {
            write_record_words(&words, *offset, r.info, &r.key, &r.value, r.capacity).unwrap();
        }
        let header = *view.header();
        let mut out = vec![0xffu8; header.node_bytes()];
        write_page_node(&header, &words, &mut out).unwrap();
        prop_assert_eq!(out, node);
    }

    /// One byte changed: never a panic; what still decodes is canonical (re-encoding it gives the
    /// same bytes, update counters aside).
    #[test]
    fn mutated_pages_decode_or_are_refused(
        (page, page_bytes, begin, recs) in page(),
        index in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut node, _) = page_of(page, page_bytes, begin, &recs);
        let i = index.index(node.len());
        node[i] ^= flip;
        let Ok(walked) = walk_checked(&node) else { return Ok(()) };
        let view = decode_page(&node).unwrap();
        for (offset, r) in walked {
            let mut again = vec![0u8; record_size(r.key.len(), r.capacity).unwrap() as usize];
            encode_record(r.info, &r.key, &r.value, r.capacity, &mut again).unwrap();
            let stored = &view.body()[offset..offset + again.len()];
            prop_assert_eq!(&stored[..16], &again[..16]);
            prop_assert_eq!(&stored[24..], &again[24..]);
        }
    }
}
