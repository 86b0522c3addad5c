//! Truncation: after `truncate_until` 90 % of a 16 MiB log and letting the runtime reclaim the
//! retired page nodes (and compaction return the freed segments), the data files occupy at most
//! 30 % of what they did (10 % is live; the rest is whole-segment granularity per size class, about
//! 2.5 MiB here); reads below begin fail with `BelowBegin`; the remaining entries
//! scan exactly, also after reopening (begin is recovered).

use std::sync::Arc;
use std::time::{Duration, Instant};

use vellum::runtime::{CompactionOptions, DurableRuntime};
use vellum_faster::{Error, FasterLog};

mod common;

use common::{log_options, payload, small_options};

#[test]
fn truncating_ninety_percent_shrinks_the_data_files() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = small_options();
    // Reclamation runs on the background thread's interval.
    o.eventual_flush_interval = Duration::from_millis(5);
    let rt = Arc::new(DurableRuntime::open(dir.path(), o.clone()).unwrap());
    let log = FasterLog::open(rt.clone(), "trunc", log_options(64 << 10, 4)).unwrap();
    const ENTRIES: u64 = 16 * 1024;
    let mut addrs = Vec::new();
    for i in 0..ENTRIES {
        addrs.push(log.append(&payload(i, 1000)).unwrap());
        if i % 64 == 63 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    rt.sync().unwrap();
    rt.compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    let before = rt.data_allocated_bytes().unwrap();
    assert!(before >= 16 << 20, "{before}");

    let cut = (ENTRIES * 9 / 10) as usize;
    log.truncate_until(addrs[cut]).unwrap();
    assert_eq!(log.begin_address(), addrs[cut]);
    assert!(matches!(
        log.read(addrs[cut - 1]),
        Err(Error::BelowBegin { .. })
    ));
    assert!(matches!(log.read(addrs[0]), Err(Error::BelowBegin { .. })));
    assert_eq!(log.read(addrs[cut]).unwrap(), payload(cut as u64, 1000));

    rt.sync().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let after = loop {
        rt.compact_with(&CompactionOptions::full(), &mut |_| {})
            .unwrap();
        let after = rt.data_allocated_bytes().unwrap();
        if after <= before * 3 / 10 || Instant::now() > deadline {
            break after;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(
        after <= before * 3 / 10,
        "data files hold {after} bytes after truncating 90 % of {before}"
    );
    let rest: Vec<Vec<u8>> = log.scan_all().map(|e| e.unwrap().bytes).collect();
    assert_eq!(rest.len(), ENTRIES as usize - cut);
    assert_eq!(rest[0], payload(cut as u64, 1000));
    drop(log);
    drop(rt);

    let rt = Arc::new(DurableRuntime::open(dir.path(), o).unwrap());
    let log = FasterLog::open(rt.clone(), "trunc", log_options(64 << 10, 4)).unwrap();
    assert_eq!(log.begin_address(), addrs[cut]);
    let again: Vec<Vec<u8>> = log.scan_all().map(|e| e.unwrap().bytes).collect();
    assert_eq!(again, rest);
    assert!(matches!(log.read(addrs[1]), Err(Error::BelowBegin { .. })));
    rt.verify().unwrap();
}
