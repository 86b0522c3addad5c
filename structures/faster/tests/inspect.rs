//! `fsck` and `dump` understand a FasterLog root through `vellum-faster`'s inspection plugin
//! (`vellum_faster::inspect`, on the crate's own decoders): on a real log it reads what the log
//! recovers (begin, committed tail, pages, chunk nodes, named iterators, every committed entry
//! checked); an entry whose bytes no longer match their CRC32C is an fsck problem naming the page
//! and the entry's address, and a damaged chunk node one naming the chunk and the byte in it.
//! Without the plugin, the root is an `info` finding (no inspector).

use std::sync::Arc;

use vellum::CorruptionKind;
use vellum::inspect::{Finding, FindingKind, Severity, fsck, fsck_with, load};
use vellum::io::OsStorage;
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum_faster::chunk::Chunk;
use vellum_faster::inspect::{FasterLogPlugin, faster_logs};
use vellum_faster::meta::{Meta, extent_at};
use vellum_faster::{FasterLog, FasterLogOptions};

mod common;

use common::{fsck_options, payload, small_options};

fn options() -> FasterLogOptions {
    FasterLogOptions {
        page_bytes: 4096,
        memory_pages: 4,
        // Page nodes go to their slots at commit, where fsck reads them (BALANCED would carry
        // small ones in the delta log until a checkpoint).
        policy: Some(CommitPolicy::Strict),
    }
}

/// The findings of severity Problem that fsck, with the FasterLog plugin, reports for the store
/// in `dir`.
fn problems(storage: &OsStorage, dir: &std::path::Path) -> Vec<Finding> {
    let report = fsck_with(storage, dir, &fsck_options(), &[&FasterLogPlugin]).unwrap();
    report
        .findings
        .into_iter()
        .filter(|f| f.severity == Severity::Problem)
        .collect()
}

#[test]
fn fsck_and_dump_check_a_faster_log_root() {
    let dir = tempfile::tempdir().unwrap();
    let (begin, tail, saved);
    {
        let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
        let log = FasterLog::open(rt.clone(), "events", options()).unwrap();
        let mut addrs = Vec::new();
        for i in 0..40u64 {
            addrs.push(log.append(&payload(i, (i * 37 % 500) as usize)).unwrap());
        }
        saved = addrs[5];
        log.save_iterator("consumer", addrs[5]).unwrap();
        log.commit().unwrap();
        log.truncate_until(addrs[30]).unwrap();
        begin = log.begin_address();
        tail = log.committed_tail();
        drop(log);
        Arc::into_inner(rt).unwrap().close().unwrap();
    }
    let storage = OsStorage::new();
    assert!(problems(&storage, dir.path()).is_empty());
    // Without the plugin, the core decodes nothing of the log and says so.
    let report = fsck(&storage, dir.path(), &fsck_options()).unwrap();
    let with_plugin = fsck_with(&storage, dir.path(), &fsck_options(), &[&FasterLogPlugin]);
    let mut extra = report.findings.clone();
    extra.retain(|f| !with_plugin.as_ref().unwrap().findings.contains(f));
    assert_eq!(extra.len(), 1, "{:?}", report.findings);
    let f = &extra[0];
    assert_eq!(
        (f.severity, f.file.to_str().unwrap(), f.offset),
        (Severity::Info, "faster-log:events", 0)
    );
    assert_eq!(
        f.kind,
        FindingKind::NoInspector {
            prefix: "faster-log:".into()
        }
    );
    let insp = load(&storage, dir.path(), &fsck_options()).unwrap();
    let root = insp.model.roots.get("faster-log:events").copied();
    assert_eq!(f.node, root.and_then(vellum::NodeId::from_raw));
    let logs = faster_logs(&insp);
    assert_eq!(logs.len(), 1);
    let l = &logs[0];
    assert_eq!(l.root, "faster-log:events");
    assert_eq!(
        (l.begin, l.committed_tail, l.page_bytes),
        (begin, tail, 4096)
    );
    assert_eq!(l.entries, 10, "entries 30..40 are at or above begin");
    assert_eq!(l.iterators.len(), 1);
    assert_eq!(l.iterators.get("consumer"), Some(&saved));
    assert!(l.findings.is_empty());
    assert_eq!(l.pages_pending, 0);
    drop(insp);

    // Damage one committed entry's payload through the runtime (a valid node version whose
    // entry CRC no longer matches).
    let bad_address;
    {
        let rt = DurableRuntime::open(dir.path(), small_options()).unwrap();
        let meta = Meta::decode(
            &rt.read(rt.root("faster-log:events").unwrap()).unwrap(),
            "m",
        )
        .unwrap();
        let page = begin / 4096;
        let off = (begin % 4096) as u32;
        let extent = extent_at(meta.page_extents(page).unwrap(), off).unwrap();
        let node = extent.node;
        let mut bytes = rt.read(node).unwrap();
        bytes[(off - extent.start) as usize + 8] ^= 0x40;
        bad_address = begin;
        let mut tx = rt.begin();
        tx.write(node, &bytes).unwrap();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.close().unwrap();
    }
    let problems = problems(&storage, dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let f = &problems[0];
    assert_eq!(f.offset, bad_address);
    assert_eq!(
        f.file.to_str().unwrap(),
        format!("faster-log:events/page-{}", begin / 4096)
    );
    assert!(matches!(
        f.kind,
        FindingKind::Corruption {
            detail: CorruptionKind::ChecksumMismatch { .. }
        }
    ));
}

/// A log long enough for chunk nodes, one of them rewritten by truncation: both decoders agree
/// on the chunks, the pages and every entry; a damaged chunk node is one fsck problem naming it,
/// and the log refuses to open with the same report.
#[test]
fn fsck_and_dump_read_chunk_nodes_and_report_a_damaged_one() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, entries, extents);
    {
        let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
        let log = FasterLog::open(rt.clone(), "events", options()).unwrap();
        let mut addrs = Vec::new();
        // 1000-byte entries, four to a page, a commit every two pages: 200 pages.
        for i in 0..800u64 {
            addrs.push(log.append(&payload(i, 1000)).unwrap());
            if i % 8 == 7 {
                log.commit().unwrap();
            }
        }
        // Begin inside page 70: chunk 0..64 goes, chunk 64..128 is rewritten as 70..128.
        log.truncate_until(addrs[4 * 70 + 1]).unwrap();
        meta = Meta::decode(
            &rt.read(rt.root("faster-log:events").unwrap()).unwrap(),
            "m",
        )
        .unwrap();
        let mut n = meta.pages.iter().map(Vec::len).sum::<usize>();
        for c in &meta.chunks {
            n += Chunk::decode(&rt.read(c.node).unwrap(), "c")
                .unwrap()
                .pages
                .iter()
                .map(Vec::len)
                .sum::<usize>();
        }
        extents = n as u64;
        entries = log.verify().unwrap();
        drop(log);
        Arc::into_inner(rt).unwrap().close().unwrap();
    }
    let refs: Vec<(u64, u32)> = meta
        .chunks
        .iter()
        .map(|c| (c.first_page, c.page_count))
        .collect();
    assert_eq!(refs, [(70, 58), (128, 64)]);
    assert_eq!(entries, 800 - 281);

    let storage = OsStorage::new();
    assert!(problems(&storage, dir.path()).is_empty());
    let insp = load(&storage, dir.path(), &fsck_options()).unwrap();
    let l = &faster_logs(&insp)[0];
    let dumped: Vec<(u64, u32, String)> = l
        .chunks
        .iter()
        .map(|c| (c.first_page, c.page_count, c.node.clone()))
        .collect();
    let want: Vec<(u64, u32, String)> = meta
        .chunks
        .iter()
        .map(|c| (c.first_page, c.page_count, c.node.to_string()))
        .collect();
    assert_eq!(dumped, want);
    assert_eq!((l.first_page, l.page_count), (70, 130));
    assert_eq!(l.extent_count, extents);
    assert_eq!(l.entries, entries);
    assert_eq!(
        (l.begin, l.committed_tail),
        (meta.begin, meta.committed_tail)
    );
    assert!(l.findings.is_empty() && l.pages_pending == 0);
    drop(insp);

    // Flip a byte inside the second chunk node's page list, through the runtime (the node's own
    // CRC32C is right; the chunk's is not).
    let bad = meta.chunks[1];
    let len;
    {
        let rt = DurableRuntime::open(dir.path(), small_options()).unwrap();
        let mut bytes = rt.read(bad.node).unwrap();
        len = bytes.len() as u64;
        bytes[100] ^= 0x10;
        let mut tx = rt.begin();
        tx.write(bad.node, &bytes).unwrap();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.close().unwrap();
    }
    let problems = problems(&storage, dir.path());
    assert_eq!(problems.len(), 1, "{problems:?}");
    let f = &problems[0];
    assert_eq!(f.file.to_str().unwrap(), "faster-log:events/chunk-128");
    assert_eq!(f.offset, len - 4);
    assert_eq!(f.node, Some(bad.node));
    assert!(matches!(
        f.kind,
        FindingKind::Corruption {
            detail: CorruptionKind::ChecksumMismatch { .. }
        }
    ));
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let e = FasterLog::open(rt, "events", options()).unwrap_err();
    let c = e.as_corruption().unwrap();
    assert_eq!(
        (c.file.to_str().unwrap(), c.offset),
        ("faster-log:events/chunk-128", len - 4)
    );
    assert!(matches!(c.kind, CorruptionKind::ChecksumMismatch { .. }));
}
