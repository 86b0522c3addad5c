//! Regression: `FasterLog::read` at an address inside an entry decoded the payload bytes there as
//! an entry header and reported store corruption (`Corruption(InvalidField entry_len)`, or a
//! checksum mismatch), so a caller's bad address raised the same alarm as damaged bytes; a scan
//! or tailing iterator started there did the same (or, on a word that looked like a filler,
//! silently skipped to the next page). Now an address that is not where an entry starts is
//! `Error::InvalidAddress`, and `Corruption` is kept for damaged bytes: when the entry at an
//! address fails its checks, the page's entries are walked from the page start to tell an
//! address inside an entry from a damaged entry.
//!
//! Every offset inside the entries of two pages (and inside the filler closing the first) is read
//! while the pages are in memory, after they were evicted to their extent nodes, and after a
//! reopen; then payload and header bytes are flipped in an extent node, and reads at, inside and
//! after the damaged entry must give exactly the damaged entry's corruption, or the intact
//! entries' bytes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use vellum::CorruptionKind;
use vellum::runtime::DurableRuntime;
use vellum_faster::entry::{entry_bytes, entry_crc};
use vellum_faster::{Error, FasterLog};

mod common;

use common::{log_options, meta, payload, small_options};

const PAGE: u64 = 4096;

/// Payload sizes: page 0 holds the first seven entries (1200 bytes), then a filler, because the
/// 3000-byte entry does not fit; it opens page 1, followed by two more.
const SIZES: [usize; 10] = [0, 1, 7, 8, 9, 100, 1000, 3000, 200, 500];

/// An appended entry: address and payload.
type Entry = (u64, Vec<u8>);

fn open(rt: &Arc<DurableRuntime>) -> FasterLog {
    FasterLog::open(rt.clone(), "addr", log_options(PAGE as u32, 2)).unwrap()
}

fn append_entries(log: &FasterLog) -> Vec<Entry> {
    let entries: Vec<Entry> = SIZES
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let p = payload(i as u64 + 1, n);
            (log.append(&p).unwrap(), p)
        })
        .collect();
    log.commit().unwrap();
    let addresses: Vec<u64> = entries.iter().map(|e| e.0).collect();
    assert_eq!(
        addresses,
        vec![0, 8, 24, 40, 56, 80, 192, 4096, 7104, 7312],
        "the layout the test relies on"
    );
    entries
}

/// `r` is exactly `InvalidAddress` for `address`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(r: vellum_faster::Result<T>, address: u64, context: &str) {
    match r {
        Err(Error::InvalidAddress { address: a, .. }) => assert_eq!(a, address, "{context}"),
        other => panic!("{context}: reading at {address}: {other:?}, not InvalidAddress"),
    }
}

/// Every address in `[start, end)` but the entry starts in `starts`.
fn inner_addresses(start: u64, end: u64, starts: &[u64]) -> impl Iterator<Item = u64> + '_ {
    (start..end).filter(move |a| !starts.contains(a))
}

/// Reads at every entry start give the entry's bytes; reads at every other address of the two
/// pages below the last entry's end (inside entries, inside the filler) give `InvalidAddress`;
/// scans and tailing iterators started inside an entry give it too.
fn check_addresses(log: &FasterLog, entries: &[Entry], context: &str) {
    let starts: Vec<u64> = entries.iter().map(|e| e.0).collect();
    for (address, bytes) in entries {
        assert_eq!(
            &log.read(*address).unwrap(),
            bytes,
            "{context}: entry at {address}"
        );
    }
    let (last, last_bytes) = entries.last().unwrap();
    let end = last + entry_bytes(last_bytes.len()) as u64;
    // Inside the page-0 entries, the filler from 1200 to the page end, and the page-1 entries:
    // the 8-byte-aligned addresses (where a header could be) first, then the others.
    let (aligned, unaligned): (Vec<u64>, Vec<u64>) =
        inner_addresses(1, end, &starts).partition(|a| a % 8 == 0);
    for address in aligned.into_iter().chain(unaligned) {
        assert_invalid(log.read(address), address, context);
    }
    for address in [8 + 4, 80 + 8, 192 + 512, 1208, 2000, 4096 + 16, 7104 + 8] {
        let mut scan = log.scan(address, u64::MAX);
        assert_invalid(scan.next().unwrap(), address, context);
        assert!(
            scan.next().is_none(),
            "{context}: a scan ends after an error"
        );
        let mut tail = log.tail_iter(address);
        assert_invalid(tail.next_timeout(Duration::ZERO), address, context);
    }
    // Started at an entry, a page start or a filler's start (where the committed tail may have
    // been), they read exactly the entries from there.
    let want: Vec<Vec<u8>> = entries[7..].iter().map(|e| e.1.clone()).collect();
    for from in [PAGE, 1200] {
        let scanned: Vec<Vec<u8>> = log
            .scan(from, u64::MAX)
            .take(3)
            .map(|e| e.unwrap().bytes)
            .collect();
        assert_eq!(scanned, want, "{context}: scan from {from}");
    }
    let mut tail = log.tail_iter(80);
    let e = tail.next_timeout(Duration::ZERO).unwrap().unwrap();
    assert_eq!(
        (e.address, e.bytes),
        (80, entries[5].1.clone()),
        "{context}"
    );
}

/// Appends whole pages and commits until pages 0 and 1 have left the two-page ring.
fn evict_the_first_pages(log: &FasterLog) {
    for i in 0..4u64 {
        log.append(&payload(100 + i, log.entry_bytes_max()))
            .unwrap();
        log.commit().unwrap();
    }
}

#[test]
fn a_read_inside_an_entry_is_an_invalid_address_in_memory_evicted_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let log = open(&rt);
    let entries = append_entries(&log);
    check_addresses(&log, &entries, "in memory");
    evict_the_first_pages(&log);
    check_addresses(&log, &entries, "evicted");
    drop(log);
    let rt = match Arc::try_unwrap(rt) {
        Ok(rt) => rt,
        Err(_) => panic!("the runtime is still shared"),
    };
    rt.close().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let log = open(&rt);
    check_addresses(&log, &entries, "reopened");
}

/// Replaces the bytes of page 0's only extent node with `edit` applied.
fn damage_page_0(rt: &DurableRuntime, edit: impl FnOnce(&mut Vec<u8>)) {
    let m = meta(rt, "addr");
    let pages = common::all_pages(rt, &m);
    let (page, extents) = &pages[0];
    assert_eq!((*page, extents.len()), (0, 1), "page 0 in one extent");
    let node = extents[0].node;
    let mut bytes = rt.read(node).unwrap();
    edit(&mut bytes);
    let mut tx = rt.begin();
    tx.write(node, &bytes).unwrap();
    tx.commit().unwrap();
}

/// `r` is exactly a checksum mismatch of the page-0 entry at `address`, whose damaged payload
/// is `damaged` and whose header carries the CRC of `original`.
#[track_caller]
fn assert_checksum(
    r: vellum_faster::Result<Vec<u8>>,
    address: u64,
    original: &[u8],
    damaged: &[u8],
) {
    let err = r.unwrap_err();
    let c = err
        .as_corruption()
        .unwrap_or_else(|| panic!("{err:?} is not a corruption"));
    assert_eq!(c.file, PathBuf::from("faster-log:addr/page-0"));
    assert_eq!(c.offset, address);
    assert_eq!(
        c.kind,
        CorruptionKind::ChecksumMismatch {
            expected: entry_crc(original),
            actual: entry_crc(damaged),
        }
    );
}

#[test]
fn damaged_bytes_stay_corruption_at_the_damaged_entry() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let log = open(&rt);
    let entries = append_entries(&log);
    evict_the_first_pages(&log);
    drop(log);

    // A flipped payload byte of the 100-byte entry at 80 (payload from 88).
    let (at, original) = entries[5].clone();
    let mut damaged = original.clone();
    damaged[40] ^= 0x10;
    damage_page_0(&rt, |b| b[88 + 40] ^= 0x10);
    let log = open(&rt);
    assert_checksum(log.read(at), at, &original, &damaged);
    // Inside the damaged entry, and inside a later entry of its page: the walk from the page
    // start meets the damage first. (An unaligned address is never an entry's start, damage or
    // not.)
    for inside in [at + 8, at + 16, 192 + 64, 1000] {
        assert_checksum(log.read(inside), at, &original, &damaged);
    }
    assert_invalid(log.read(at + 13), at + 13, "unaligned");
    // Inside an entry before the damage: a bad address.
    assert_invalid(log.read(56 + 8), 56 + 8, "before the damage");
    // Intact entries read back, in the damaged page and after it.
    for (address, bytes) in entries.iter().filter(|e| e.0 != at) {
        assert_eq!(&log.read(*address).unwrap(), bytes, "entry at {address}");
    }
    drop(log);

    // A flipped bit in the header length of the 9-byte entry at 56: it now claims 8 bytes.
    damage_page_0(&rt, |b| b[56] ^= 1);
    let log = open(&rt);
    let nine = &entries[4].1;
    assert_checksum(log.read(56), 56, nine, &nine[..8]);
    // Past it, the walk cannot be trusted: the damage is reported, not an invalid address.
    assert_checksum(log.read(80 + 16), 56, nine, &nine[..8]);
    // A scan from the page start stops at the first damaged entry.
    let scanned: Vec<_> = log.scan(0, u64::MAX).collect();
    assert_eq!(scanned.len(), 5);
    assert!(scanned[..4].iter().all(Result::is_ok));
    assert_eq!(
        scanned[4]
            .as_ref()
            .unwrap_err()
            .as_corruption()
            .map(|c| c.offset),
        Some(56)
    );
}
