//! Concurrency with exact outcomes.
//!
//! - Wrap-around: a ring of 4 in-memory pages takes 50x its volume from 4 threads (appends,
//!   batches and `try_append` with retries, commits from every thread, readers of random
//!   committed addresses meanwhile); a scan returns exactly the multiset appended, every entry
//!   intact, each thread's entries in its own order.
//! - A tailing reader beside 3 committing appenders sees every committed entry exactly once,
//!   in each appender's order.
//! - A commit covers every append that returned before it was called, however many appenders
//!   are still writing: 4 threads on 2 cores, each entry read back byte-exact right after its
//!   own commit.
//! - Truncation beside 3 appenders, a reader and a 2-page ring: reads either succeed byte-exact
//!   or fail with `BelowBegin`, and afterwards each appender's entries from the final begin on
//!   are exactly a suffix of what it appended, in order.
//!
//! `VELLUM_FLOG_WRAP_FACTOR` (default 50) scales the wrap-around volume.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use vellum_faster::Error;

mod common;

use common::{Rng, env_u64, log_options, open_real, payload};

/// An entry naming its thread and sequence number, then bytes derived from both.
fn entry(thread: u64, seq: u64, len: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + len);
    b.extend_from_slice(&thread.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&payload(thread << 32 | seq, len));
    b
}

fn parse(b: &[u8]) -> (u64, u64) {
    let t = u64::from_le_bytes(b[..8].try_into().unwrap());
    let s = u64::from_le_bytes(b[8..16].try_into().unwrap());
    (t, s)
}

#[test]
fn wrap_around_keeps_exactly_the_multiset_appended() {
    const PAGE: u32 = 4096;
    const PAGES: u32 = 4;
    const THREADS: u64 = 4;
    let factor = env_u64("VELLUM_FLOG_WRAP_FACTOR", 50);
    let volume = factor * u64::from(PAGE) * u64::from(PAGES);
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "wrap", log_options(PAGE, PAGES));
    let per_thread = volume / THREADS;
    let done = AtomicBool::new(false);
    let appended: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        // A reader of random committed addresses, so evictions race with protected reads.
        let reader = s.spawn(|| {
            let mut rng = Rng::new(99);
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let (begin, tail) = (log.begin_address(), log.committed_tail());
                if tail > begin {
                    // Entry boundaries are not known here; a scan from a page start is.
                    let page = (begin + rng.below(tail - begin)) / u64::from(PAGE);
                    if let Some(e) = log.scan(page * u64::from(PAGE), tail).next() {
                        e.expect("entry read during wrap-around");
                        reads += 1;
                    }
                }
                std::thread::yield_now();
            }
            reads
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let mut rng = Rng::new(t + 1);
                    let mut mine = Vec::new();
                    let mut bytes = 0u64;
                    let mut seq = 0u64;
                    while bytes < per_thread {
                        match rng.below(10) {
                            0 => {
                                let batch: Vec<Vec<u8>> = (0..1 + rng.below(4))
                                    .map(|_| {
                                        seq += 1;
                                        entry(t, seq, rng.below(300) as usize)
                                    })
                                    .collect();
                                let refs: Vec<&[u8]> = batch.iter().map(Vec::as_slice).collect();
                                log.append_batch(&refs).unwrap();
                                bytes += batch.iter().map(|b| b.len() as u64 + 8).sum::<u64>();
                                mine.extend(batch);
                            }
                            1 => {
                                seq += 1;
                                let e = entry(t, seq, rng.below(1500) as usize);
                                loop {
                                    match log.try_append(&e) {
                                        Ok(_) => break,
                                        Err(Error::Full) => {
                                            log.commit().unwrap();
                                        }
                                        Err(e) => panic!("{e}"),
                                    }
                                }
                                bytes += e.len() as u64 + 8;
                                mine.push(e);
                            }
                            2 => {
                                log.commit().unwrap();
                            }
                            _ => {
                                seq += 1;
                                let e = entry(t, seq, rng.below(1000) as usize);
                                log.append(&e).unwrap();
                                bytes += e.len() as u64 + 8;
                                mine.push(e);
                            }
                        }
                    }
                    mine
                })
            })
            .collect();
        let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();
        out
    });
    log.commit().unwrap();
    let mut seen: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    let mut total = 0u64;
    for e in log.scan_all() {
        let e = e.expect("every entry intact");
        total += e.bytes.len() as u64;
        seen.entry(parse(&e.bytes).0).or_default().push(e.bytes);
    }
    assert!(total >= volume * 9 / 10, "{total} of {volume} bytes");
    assert!(
        log.committed_tail() > 10 * u64::from(PAGE * PAGES),
        "the ring wrapped many times"
    );
    for (t, mine) in appended.into_iter().enumerate() {
        let got = seen.remove(&(t as u64)).unwrap_or_default();
        assert_eq!(got.len(), mine.len(), "thread {t}: entry count");
        // Each thread appended in order, so its entries are in its order in the log.
        assert!(got == mine, "thread {t}: entries differ");
    }
    assert!(seen.is_empty(), "entries of no thread: {:?}", seen.keys());
}

#[test]
fn tailing_reader_sees_every_committed_entry_exactly_once() {
    const THREADS: u64 = 3;
    let per_thread = env_u64("VELLUM_FLOG_TAIL_ENTRIES", 1500);
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "tail", log_options(8192, 4));
    let got = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut it = log.tail_iter(0);
            let mut next_seq = vec![1u64; THREADS as usize];
            let mut n = 0u64;
            while n < THREADS * per_thread {
                let e = it
                    .next_timeout(Duration::from_secs(20))
                    .unwrap()
                    .expect("an entry before the timeout");
                let (t, seq) = parse(&e.bytes);
                assert_eq!(seq, next_seq[t as usize], "thread {t}: once each, in order");
                assert_eq!(e.bytes, entry(t, seq, (seq % 200) as usize));
                next_seq[t as usize] += 1;
                n += 1;
            }
            // Nothing more comes.
            assert!(
                it.next_timeout(Duration::from_millis(50))
                    .unwrap()
                    .is_none()
            );
            n
        });
        for t in 0..THREADS {
            let log = &log;
            s.spawn(move || {
                for seq in 1..=per_thread {
                    log.append(&entry(t, seq, (seq % 200) as usize)).unwrap();
                    if seq % 7 == 0 {
                        log.commit().unwrap();
                    }
                }
                log.commit().unwrap();
            });
        }
        reader.join().unwrap()
    });
    assert_eq!(got, THREADS * per_thread);
}

#[test]
fn a_commit_covers_every_append_that_returned_before_it() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 400;
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "cover", log_options(8192, 8));
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let log = &log;
            s.spawn(move || {
                for i in 0..PER_THREAD {
                    let bytes = entry(t, i, (i % 37) as usize * 8);
                    let address = log.append(&bytes).unwrap();
                    // Other threads keep reserving and writing meanwhile; the published tail
                    // and the commit must both cover this entry.
                    assert!(log.published_tail() > address);
                    if i % 4 == 0 {
                        let committed = log.commit().unwrap();
                        assert!(committed > address, "{committed} <= {address}");
                        assert_eq!(log.read(address).unwrap(), bytes);
                    }
                }
            });
        }
    });
    log.commit().unwrap();
    let mut next = [0u64; THREADS as usize];
    for e in log.scan_all() {
        let (t, i) = parse(&e.unwrap().bytes);
        assert_eq!(i, next[t as usize], "thread {t} out of order");
        next[t as usize] += 1;
    }
    assert_eq!(next, [PER_THREAD; THREADS as usize]);
}

#[test]
fn truncation_beside_appenders_and_readers_keeps_exact_suffixes() {
    const PAGE: u32 = 4096;
    const THREADS: u64 = 3;
    const PER_THREAD: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "trunc", log_options(PAGE, 2));
    let done = AtomicBool::new(false);
    let appended: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let truncator = s.spawn(|| {
            let mut truncations = 0u64;
            while !done.load(Ordering::Relaxed) {
                // Truncate to the first entry of a committed page, leaving a page or two.
                let tail = log.committed_tail();
                let page = (tail / u64::from(PAGE)).saturating_sub(2);
                if page * u64::from(PAGE) > log.begin_address() {
                    log.truncate_until(page * u64::from(PAGE)).unwrap();
                    truncations += 1;
                }
                std::thread::sleep(Duration::from_micros(300));
            }
            truncations
        });
        let reader = s.spawn(|| {
            let mut rng = Rng::new(5);
            let (mut ok, mut below) = (0u64, 0u64);
            while !done.load(Ordering::Relaxed) {
                let (begin, tail) = (log.begin_address(), log.committed_tail());
                if tail > begin {
                    let page = (begin + rng.below(tail - begin)) / u64::from(PAGE);
                    match log.scan(page * u64::from(PAGE), tail).next() {
                        Some(Ok(e)) => {
                            let (t, i) = parse(&e.bytes);
                            assert_eq!(e.bytes, entry(t, i, (i % 53) as usize * 8));
                            ok += 1;
                        }
                        Some(Err(Error::BelowBegin { .. })) | None => below += 1,
                        Some(Err(e)) => panic!("read during truncation: {e}"),
                    }
                }
                std::thread::yield_now();
            }
            (ok, below)
        });
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let log = &log;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..PER_THREAD {
                        let e = entry(t, i, (i % 53) as usize * 8);
                        log.append(&e).unwrap();
                        if i % 16 == 15 {
                            log.commit().unwrap();
                        }
                        mine.push(e);
                    }
                    mine
                })
            })
            .collect();
        let out = handles.into_iter().map(|h| h.join().unwrap()).collect();
        log.commit().unwrap();
        done.store(true, Ordering::Relaxed);
        assert!(truncator.join().unwrap() > 0, "no truncation ran");
        let (ok, _) = reader.join().unwrap();
        assert!(ok > 0, "no read succeeded");
        out
    });
    assert!(log.begin_address() > 0);
    let mut seen: BTreeMap<u64, Vec<Vec<u8>>> = BTreeMap::new();
    for e in log.scan_all() {
        let e = e.expect("every entry from begin intact");
        seen.entry(parse(&e.bytes).0).or_default().push(e.bytes);
    }
    for (t, mine) in appended.into_iter().enumerate() {
        let got = seen.remove(&(t as u64)).unwrap_or_default();
        assert!(
            mine.ends_with(&got),
            "thread {t}: its {} entries from begin are not a suffix of its {}",
            got.len(),
            mine.len()
        );
    }
    assert!(seen.is_empty());
}
