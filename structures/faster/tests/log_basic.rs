//! FasterLog's API one behaviour at a time, with exact expectations: appends and reads,
//! recovery of committed entries only, entry and batch limits, `try_append` on a full ring,
//! read errors, named iterators, and corruption reported as `vellum::Error::Corruption`.

use std::sync::Arc;
use std::time::Duration;

use vellum::runtime::DurableRuntime;
use vellum_faster::meta::Meta;
use vellum_faster::{Error, FasterLog};

mod common;

use common::{log_options, open_real, payload, scan_bytes, small_options};

#[test]
fn appends_read_back_and_only_committed_entries_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let sizes = [0usize, 1, 7, 8, 9, 100, 4000, 4088, 3];
    let mut want = Vec::new();
    let mut addrs = Vec::new();
    {
        let log = open_real(dir.path(), "basic", log_options(4096, 4));
        for (i, &n) in sizes.iter().enumerate() {
            let p = payload(i as u64, n);
            addrs.push(log.append(&p).unwrap());
            want.push(p);
        }
        let tail = log.commit().unwrap();
        assert_eq!(tail, log.committed_tail());
        for (a, p) in addrs.iter().zip(&want) {
            assert_eq!(&log.read(*a).unwrap(), p);
        }
        assert_eq!(scan_bytes(&log), want);
        // Appended but never committed: gone after reopen.
        log.append(b"lost").unwrap();
        log.append_batch(&[b"lost too", b"and this"]).unwrap();
    }
    let log = open_real(dir.path(), "basic", log_options(4096, 4));
    assert_eq!(scan_bytes(&log), want);
    assert_eq!(log.verify().unwrap(), want.len() as u64);
    // Appends continue after the committed tail.
    let tail = log.committed_tail();
    let a = log.append(b"after").unwrap();
    assert_eq!(a, tail);
    log.commit().unwrap();
    want.push(b"after".to_vec());
    assert_eq!(scan_bytes(&log), want);
}

#[test]
fn entry_and_batch_limits_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "limits", log_options(4096, 2));
    assert_eq!(log.entry_bytes_max(), 4088);
    assert!(matches!(
        log.append(&[0u8; 4089]),
        Err(Error::InvalidArgument(_))
    ));
    let a = log.append(&[7u8; 4088]).unwrap();
    assert_eq!(a % 4096, 0, "a maximal entry fills a page of its own");
    let big: Vec<&[u8]> = vec![&[1u8; 2000]; 3];
    assert!(matches!(
        log.append_batch(&big),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.append_batch(&[]),
        Err(Error::InvalidArgument(_))
    ));
    let addrs = log.append_batch(&[b"a", b"bb", b"ccc"]).unwrap();
    assert_eq!(addrs, vec![4096, 4112, 4128]);
    log.commit().unwrap();
    assert_eq!(log.read(4112).unwrap(), b"bb");
}

#[test]
fn try_append_reports_full_instead_of_overwriting() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "full", log_options(4096, 2));
    let mut appended = Vec::new();
    let mut full = 0;
    for i in 0..40u64 {
        let p = payload(i, 1000);
        match log.try_append(&p) {
            Ok(_) => appended.push(p),
            Err(Error::Full) => {
                full += 1;
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(full, 1, "two pages of 4 entries each, then full");
    assert_eq!(appended.len(), 8);
    // After a commit flushes the pages, appends go on; nothing appended before was lost.
    log.commit().unwrap();
    for i in 100..120u64 {
        let p = payload(i, 1000);
        loop {
            match log.try_append(&p) {
                Ok(_) => break,
                Err(Error::Full) => {
                    log.commit().unwrap();
                }
                Err(e) => panic!("{e}"),
            }
        }
        appended.push(p);
    }
    log.commit().unwrap();
    assert_eq!(scan_bytes(&log), appended);
}

#[test]
fn reads_outside_the_committed_range_error() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "range", log_options(4096, 2));
    let a = log.append(b"one").unwrap();
    assert!(matches!(log.read(a), Err(Error::NotCommitted { .. })));
    let b = log.append(b"two").unwrap();
    log.commit().unwrap();
    log.truncate_until(b).unwrap();
    assert_eq!(log.begin_address(), b);
    assert!(matches!(
        log.read(a),
        Err(Error::BelowBegin {
            address: 0,
            begin: 16
        })
    ));
    assert_eq!(log.read(b).unwrap(), b"two");
    assert!(matches!(
        log.truncate_until(log.committed_tail() + 8),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        log.truncate_until(b + 4),
        Err(Error::InvalidArgument(_))
    ));
}

#[test]
fn wait_for_commit_returns_once_a_commit_covers_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_real(dir.path(), "wait", log_options(4096, 2));
    let a = log.append(b"x").unwrap();
    assert!(!log.wait_for_commit_timeout(a, Duration::from_millis(20)));
    std::thread::scope(|s| {
        s.spawn(|| log.wait_for_commit(a));
        std::thread::sleep(Duration::from_millis(10));
        log.commit().unwrap();
    });
    assert!(log.wait_for_commit_timeout(a, Duration::ZERO));
    let b = log.append_and_commit(b"y").unwrap();
    assert!(log.wait_for_commit_timeout(b, Duration::ZERO));
    assert_eq!(log.read(b).unwrap(), b"y");
}

#[test]
fn named_iterators_are_saved_with_commits_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let second;
    {
        let log = open_real(dir.path(), "iters", log_options(4096, 2));
        for i in 0..10u64 {
            log.append(&payload(i, 50)).unwrap();
        }
        log.commit().unwrap();
        let mut it = log.named_iterator("reader");
        let e0 = it.next_timeout(Duration::ZERO).unwrap().unwrap();
        assert_eq!(e0.bytes, payload(0, 50));
        second = it.position();
        log.save_iterator("reader", second).unwrap();
        log.save_iterator("other", 0).unwrap();
        // Saved positions become durable with the next commit, even with no new entries.
        log.commit().unwrap();
        log.save_iterator("unsaved", 8).unwrap();
    }
    let log = open_real(dir.path(), "iters", log_options(4096, 2));
    assert_eq!(log.iterator_position("reader"), Some(second));
    assert_eq!(log.iterator_position("other"), Some(0));
    assert_eq!(log.iterator_position("unsaved"), None);
    let mut it = log.named_iterator("reader");
    let e1 = it.next_timeout(Duration::ZERO).unwrap().unwrap();
    assert_eq!(e1.bytes, payload(1, 50));
    assert!(log.save_iterator("", 0).is_err());
}

#[test]
fn a_corrupt_entry_is_a_structured_corruption_error() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    {
        let log = FasterLog::open(rt.clone(), "corrupt", log_options(4096, 2)).unwrap();
        for i in 0..3u64 {
            log.append(&payload(i, 100)).unwrap();
        }
        log.commit().unwrap();
    }
    // Flip one payload byte of the second entry in its page node, through the runtime.
    let meta_id = rt.root("faster-log:corrupt").unwrap();
    let meta = Meta::decode(&rt.read(meta_id).unwrap(), "meta").unwrap();
    assert_eq!(meta.pages[0].len(), 1, "one commit, one extent");
    let extent = meta.pages[0][0];
    assert_eq!((extent.start, extent.len), (0, 336));
    let page = extent.node;
    let mut bytes = rt.read(page).unwrap();
    bytes[112 + 8 + 5] ^= 1;
    let mut tx = rt.begin();
    tx.write(page, &bytes).unwrap();
    tx.commit().unwrap();
    let log = FasterLog::open(rt.clone(), "corrupt", log_options(4096, 2)).unwrap();
    let results: Vec<_> = log.scan_all().collect();
    assert_eq!(results.len(), 2, "the scan stops at the corrupt entry");
    assert!(results[0].is_ok());
    let err = results[1].as_ref().unwrap_err();
    let c = err.as_corruption().expect("a corruption error");
    assert_eq!(c.offset, 112);
    assert!(matches!(
        c.kind,
        vellum::CorruptionKind::ChecksumMismatch { .. }
    ));
    assert!(log.verify().is_err());
}

#[test]
fn a_log_reopened_with_another_page_size_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let log = FasterLog::open(rt.clone(), "ps", log_options(4096, 2)).unwrap();
    log.append_and_commit(b"x").unwrap();
    drop(log);
    assert!(matches!(
        FasterLog::open(rt, "ps", log_options(8192, 2)),
        Err(Error::InvalidArgument(_))
    ));
}
