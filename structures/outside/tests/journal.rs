//! The journal, a structure built on vellum's public API alone: exact records back through
//! reopen, one open per root, readers that own their snapshots, EVENTUAL appends made durable by
//! waiting (not forcing a flush), concurrent appenders with exact totals, decoders that refuse
//! garbage with a structured error.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum::{Error, NodeId};
use vellum_outside::{Header, Journal, JournalReader, PAGE_BYTES, Page, RECORD_BYTES_MAX};

fn options() -> RuntimeOptions {
    RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    }
}

fn open(dir: &std::path::Path, options: RuntimeOptions) -> Arc<DurableRuntime> {
    Arc::new(DurableRuntime::open(dir, options).unwrap_or_else(|e| panic!("open: {e}")))
}

/// Record `i`: 1 to 300 bytes that name it.
fn record(i: usize) -> Vec<u8> {
    let len = 1 + (i * 37) % 300;
    (0..len).map(|j| (i + j) as u8).collect()
}

/// Pages that `records` take when each goes to the last page if it fits (invariant 2).
fn pages_for(records: &[Vec<u8>]) -> usize {
    let mut pages = 0;
    let mut used = PAGE_BYTES;
    for r in records {
        if used + 2 + r.len() > PAGE_BYTES {
            pages += 1;
            used = 2;
        }
        used += 2 + r.len();
    }
    pages
}

fn header_pages(rt: &DurableRuntime, name: &str) -> usize {
    let header = rt
        .root(&format!("journal:{name}"))
        .expect("the journal's root");
    Header::decode(&rt.read(header).unwrap(), header)
        .unwrap()
        .pages
        .len()
}

#[test]
fn records_read_back_exactly_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let want: Vec<Vec<u8>> = (0..3000).map(record).collect();
    let rt = open(dir.path(), options());
    let journal = Journal::open(rt.clone(), "journal").unwrap();
    let mut last = 0;
    for r in &want {
        last = journal.append(r).unwrap();
    }
    assert_eq!(journal.reader().records().unwrap(), want);
    assert_eq!(journal.wait_durable(last).unwrap(), last);
    drop(journal);
    Arc::into_inner(rt)
        .expect("no other handle")
        .close()
        .unwrap();

    let rt = open(dir.path(), options());
    assert_eq!(header_pages(&rt, "journal"), pages_for(&want));
    let journal = Journal::open(rt.clone(), "journal").unwrap();
    assert_eq!(journal.reader().records().unwrap(), want);
    // It appends after what it recovered, to the last page.
    journal.append(b"after").unwrap();
    let mut more = want.clone();
    more.push(b"after".to_vec());
    assert_eq!(journal.reader().records().unwrap(), more);
    assert_eq!(header_pages(&rt, "journal"), pages_for(&more));
}

#[test]
fn a_root_is_open_once_per_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path(), options());
    let a = Journal::open(rt.clone(), "a").unwrap();
    match Journal::open(rt.clone(), "a") {
        Err(Error::RootClaimed { name }) => assert_eq!(name, "journal:a"),
        other => panic!("expected RootClaimed, got {other:?}"),
    }
    let b = Journal::open(rt.clone(), "b").expect("another root opens");
    a.append(b"in a").unwrap();
    b.append(b"in b").unwrap();
    drop(a);
    let a = Journal::open(rt.clone(), "a").expect("free again once the first handle dropped");
    assert_eq!(a.reader().records().unwrap(), vec![b"in a".to_vec()]);
    assert_eq!(b.reader().records().unwrap(), vec![b"in b".to_vec()]);
}

/// A scan kept beside the runtime, as a session would keep one.
struct Scan {
    _rt: Arc<DurableRuntime>,
    reader: JournalReader,
}

#[test]
fn a_reader_owns_its_snapshot_and_keeps_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path(), options());
    let journal = Journal::open(rt.clone(), "journal").unwrap();
    // 40 records of 300 bytes: 3 pages, the third rewritten by later appends.
    let rec = |i: u8| vec![i; 300];
    for i in 0..40 {
        journal.append(&rec(i)).unwrap();
    }
    let scan = Scan {
        _rt: rt.clone(),
        reader: journal.reader(),
    };
    for i in 40..100 {
        journal.append(&rec(i)).unwrap();
    }
    rt.checkpoint().unwrap();
    // Read on another thread, after the appends rewrote its last page.
    let seen = std::thread::spawn(move || scan.reader.records().unwrap())
        .join()
        .expect("the reader thread");
    assert_eq!(seen, (0..40).map(rec).collect::<Vec<_>>());
    assert_eq!(journal.reader().records().unwrap().len(), 100);
}

#[test]
fn wait_durable_waits_for_the_flusher_instead_of_flushing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(
        dir.path(),
        RuntimeOptions {
            // The flusher would not run within the test: only an explicit sync makes the
            // append durable.
            eventual_flush_interval: Duration::from_secs(60),
            ..options()
        },
    );
    let journal = Arc::new(Journal::open(rt.clone(), "journal").unwrap());
    let epoch = journal.append(b"grouped").unwrap();
    assert!(
        rt.durable_epoch() < epoch,
        "EVENTUAL: not durable on return"
    );
    let returned = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (journal, returned) = (journal.clone(), returned.clone());
        std::thread::spawn(move || {
            let durable = journal.wait_durable(epoch);
            returned.store(true, Ordering::SeqCst);
            durable
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !returned.load(Ordering::SeqCst),
        "wait_durable forced no flush"
    );
    assert!(rt.durable_epoch() < epoch);
    let synced = rt.sync().unwrap();
    let durable = waiter.join().expect("the waiter").unwrap();
    assert!(returned.load(Ordering::SeqCst));
    assert_eq!(durable, synced);
    assert!(durable >= epoch);
}

#[test]
fn concurrent_appenders_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path(), options());
    let journal = Arc::new(Journal::open(rt.clone(), "journal").unwrap());
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let journal = journal.clone();
            std::thread::spawn(move || {
                for i in 0..500u16 {
                    let mut r = vec![t];
                    r.extend_from_slice(&i.to_le_bytes());
                    journal.append(&r).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("an appender");
    }
    let records = journal.reader().records().unwrap();
    assert_eq!(records.len(), 2000);
    for t in 0..4u8 {
        let mine: Vec<u16> = records
            .iter()
            .filter(|r| r[0] == t)
            .map(|r| u16::from_le_bytes([r[1], r[2]]))
            .collect();
        assert_eq!(
            mine,
            (0..500).collect::<Vec<_>>(),
            "thread {t}'s records in order"
        );
    }
}

#[test]
fn oversized_records_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = open(dir.path(), options());
    let journal = Journal::open(rt.clone(), "journal").unwrap();
    journal.append(&vec![1; RECORD_BYTES_MAX]).unwrap();
    match journal.append(&vec![1; RECORD_BYTES_MAX + 1]) {
        Err(Error::InvalidArgument(m)) => assert!(m.contains("at most 4092"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(journal.reader().records().unwrap().len(), 1);
}

#[test]
fn decoders_refuse_garbage_with_a_structured_error() {
    let id = NodeId::new(0, 1, 1).expect("a valid id");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..2000 {
        let len = if round % 2 == 0 {
            PAGE_BYTES
        } else {
            round % 64
        };
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for result in [
            Page::decode(&bytes, id).map(|_| ()),
            Header::decode(&bytes, id).map(|_| ()),
        ] {
            match result {
                Ok(()) | Err(Error::Corruption(_)) => {}
                Err(other) => panic!("round {round}: not a corruption error: {other}"),
            }
        }
    }
    // A page whose count runs past its bytes names the offset where it ran out.
    let mut page = vec![0u8; PAGE_BYTES];
    page[..2].copy_from_slice(&3u16.to_le_bytes());
    page[2..4].copy_from_slice(&4000u16.to_le_bytes());
    page[4004..4006].copy_from_slice(&4000u16.to_le_bytes());
    match Page::decode(&page, id) {
        Err(Error::Corruption(c)) => {
            assert_eq!(c.offset, 4006, "{c}");
            assert_eq!(c.file, std::path::Path::new(&format!("node {id}")));
        }
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(p) => panic!("expected corruption, got {} records", p.records.len()),
    }
}
