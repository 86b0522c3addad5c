//! How commits store pages: each commit writes only the bytes it adds, as a new extent node;
//! small extents merge like a binary counter (so a page filled by many small commits holds few
//! extents), a page sealed with many extents is rewritten as one, and merged-away nodes are
//! retired by the next commit. Exact expectations on the metadata, on the runtime's live node set
//! (nothing leaks, nothing listed is missing) and on reads from evicted pages.

use std::sync::Arc;

use vellum::runtime::DurableRuntime;
use vellum_faster::meta::Meta;
use vellum_faster::{FasterLog, FasterLogOptions};

mod common;

use common::{payload, small_options};

fn meta(rt: &DurableRuntime) -> Meta {
    let id = rt.root("faster-log:ext").unwrap();
    Meta::decode(&rt.read(id).unwrap(), "meta").unwrap()
}

#[test]
fn small_commits_make_few_extents_and_leak_no_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let options = FasterLogOptions {
        page_bytes: 64 << 10,
        memory_pages: 2,
        policy: None,
    };
    let log = FasterLog::open(rt.clone(), "ext", options.clone()).unwrap();
    let mut want = Vec::new();
    // 120-byte payloads are 128-byte entries: 512 fill a page exactly.
    for i in 0..300u64 {
        let p = payload(i, 120);
        log.append(&p).unwrap();
        want.push(p);
        log.commit().unwrap();
        let m = meta(&rt);
        let extents = &m.pages[0];
        // Binary counter: one extent per set bit of the commit count.
        assert_eq!(
            extents.len() as u32,
            (i + 1).count_ones(),
            "commit {i}: {extents:?}"
        );
        assert_eq!(extents.last().unwrap().end() as u64, (i + 1) * 128);
        // Live nodes: the metadata, the extents, and the ones the next commit retires.
        assert_eq!(
            rt.node_ids().len(),
            1 + extents.len() + m.retire_pending.len(),
            "commit {i}"
        );
    }
    // Fill page 0 and go two pages on, so page 0 leaves memory and reads use its extents.
    for i in 300..1600u64 {
        let p = payload(i, 120);
        log.append(&p).unwrap();
        want.push(p);
        if i % 50 == 0 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    let m = meta(&rt);
    assert_eq!(m.first_page, 0);
    assert_eq!(m.pages.len(), 4);
    for (p, extents) in m.pages.iter().enumerate().take(3) {
        assert!(
            (1..=4).contains(&extents.len()),
            "sealed page {p}: {extents:?}"
        );
        assert_eq!(extents.last().unwrap().end(), 64 << 10);
    }
    let got: Vec<Vec<u8>> = log.scan_all().map(|e| e.unwrap().bytes).collect();
    assert_eq!(got, want);
    // One more commit retires what the last one merged away; nothing else is live.
    log.append(b"last").unwrap();
    log.commit().unwrap();
    let m = meta(&rt);
    let extents: usize = m.pages.iter().map(Vec::len).sum();
    assert_eq!(rt.node_ids().len(), 1 + extents + m.retire_pending.len());
    drop(log);
    let log = FasterLog::open(rt.clone(), "ext", options).unwrap();
    assert_eq!(log.verify().unwrap(), 1601);
    rt.verify().unwrap();
}
