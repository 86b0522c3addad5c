//! Regression: two `FasterLog::open` calls on the same runtime and log name both succeeded. Each
//! handle kept its own tail, page ring and page table, so both appended at the same address, both
//! commits returned `Ok`, and each wrote its own metadata node; after a reopen only the entries of
//! the commit whose metadata the root named last were there, so an acknowledged entry was lost.
//! The documentation said at most one handle may be open, but nothing enforced it. Now `open`
//! claims root `faster-log:<name>` in the runtime (`DurableRuntime::claim_root`) and holds the
//! claim for the handle's lifetime: a second open fails with `RootClaimed` until the first handle
//! is dropped.

use std::sync::Arc;

use vellum::runtime::DurableRuntime;
use vellum_faster::{Error, FasterLog};

mod common;

use common::{log_options, scan_bytes, small_options};

fn open_log(rt: &Arc<DurableRuntime>) -> vellum_faster::Result<FasterLog> {
    FasterLog::open(rt.clone(), "shared", log_options(4096, 4))
}

#[track_caller]
fn assert_claimed(result: vellum_faster::Result<FasterLog>) {
    match result {
        Err(Error::Store(vellum::Error::RootClaimed { name })) => {
            assert_eq!(name, "faster-log:shared")
        }
        Err(e) => panic!("a second open failed with {e:?}, not RootClaimed"),
        Ok(_) => panic!("a second handle on an open log was allowed"),
    }
}

#[test]
fn a_second_handle_on_an_open_log_is_refused_and_every_acknowledged_entry_survives() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let first = open_log(&rt).unwrap();
    let mut want = vec![b"before the second open".to_vec()];
    first.append(&want[0]).unwrap();
    first.commit().unwrap();

    match open_log(&rt) {
        Ok(second) => {
            // What the bug did: both handles append at the same address and both commits are
            // acknowledged, yet one entry is gone after a reopen.
            let a = first.append(b"from the first handle").unwrap();
            let b = second.append(b"from the second handle").unwrap();
            first.commit().unwrap();
            second.commit().unwrap();
            drop((first, second));
            let reopened = open_log(&rt).unwrap();
            panic!(
                "a second handle on an open log was allowed: the handles appended at {a} and {b}, \
                 both commits returned Ok, and after a reopen the log holds {:?}",
                scan_bytes(&reopened)
                    .iter()
                    .map(|e| String::from_utf8_lossy(e).into_owned())
                    .collect::<Vec<_>>()
            );
        }
        Err(Error::Store(vellum::Error::RootClaimed { name })) => {
            assert_eq!(name, "faster-log:shared")
        }
        Err(e) => panic!("a second open failed with {e:?}, not RootClaimed"),
    }
    // The refused open changed nothing: the first handle goes on, and every further open is
    // refused while it lives.
    for i in 0..3u8 {
        let entry = vec![i; 100 + usize::from(i)];
        first.append(&entry).unwrap();
        want.push(entry);
        first.commit().unwrap();
        assert_claimed(open_log(&rt));
    }
    // A log of another name is independent.
    let other = FasterLog::open(rt.clone(), "other", log_options(4096, 4)).unwrap();
    other.append_and_commit(b"elsewhere").unwrap();
    assert_eq!(scan_bytes(&first), want);
    drop(first);

    // Once the first handle is gone a new one opens and sees every committed entry.
    let reopened = open_log(&rt).unwrap();
    assert_eq!(scan_bytes(&reopened), want);
    reopened.append_and_commit(b"after").unwrap();
    want.push(b"after".to_vec());
    assert_claimed(open_log(&rt));
    drop(reopened);
    drop(other);

    // And after the runtime itself is reopened.
    let rt = match Arc::try_unwrap(rt) {
        Ok(rt) => rt,
        Err(_) => panic!("a log still holds the runtime"),
    };
    rt.close().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let log = open_log(&rt).unwrap();
    assert_eq!(scan_bytes(&log), want);
    assert_claimed(open_log(&rt));
}

#[test]
fn a_failed_open_releases_its_claim() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    open_log(&rt).unwrap().append_and_commit(b"x").unwrap();
    // The log exists with 4 KiB pages: another page size is refused after the claim was taken.
    assert!(matches!(
        FasterLog::open(rt.clone(), "shared", log_options(8192, 4)),
        Err(Error::InvalidArgument(_))
    ));
    let log = open_log(&rt).unwrap();
    assert_eq!(scan_bytes(&log), vec![b"x".to_vec()]);
}

#[test]
fn racing_opens_of_one_log_let_exactly_one_handle_in() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    open_log(&rt).unwrap().append_and_commit(b"x").unwrap();
    let barrier = std::sync::Barrier::new(4);
    let opened: Vec<FasterLog> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    match open_log(&rt) {
                        Ok(log) => Some(log),
                        Err(Error::Store(vellum::Error::RootClaimed { .. })) => None,
                        Err(e) => panic!("{e:?}"),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect()
    });
    assert_eq!(opened.len(), 1);
    assert_eq!(scan_bytes(&opened[0]), vec![b"x".to_vec()]);
}
