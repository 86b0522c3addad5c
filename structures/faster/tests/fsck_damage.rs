//! `fsck` with the FasterLog plugin reports damage in each kind of FasterLog node exactly: the
//! one finding's file, offset, node and kind are what the structure's own decoders say, and the
//! log itself refuses the same bytes with the same report. Each case damages one node of a fresh
//! log (through the runtime, so the node's own CRC32C is right and only the structure's checks
//! can tell): the metadata node (a field, with its CRC32C recomputed, and a flipped byte), a
//! chunk node (its `first_page`, CRC32C recomputed), an extent node (an entry's payload byte,
//! and the node cut short). After damage inside a page, the walk goes on with the next page.

use std::path::Path;
use std::sync::Arc;

use vellum::NodeId;
use vellum::codec::crc32c;
use vellum::inspect::{Finding, Report, Severity, fsck_with};
use vellum::io::OsStorage;
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{Corruption, CorruptionKind};
use vellum_faster::entry::entry_crc;
use vellum_faster::inspect::{FasterLogPlugin, faster_logs};
use vellum_faster::meta::{Extent, Meta};
use vellum_faster::{FasterLog, FasterLogOptions};

mod common;

use common::{all_pages, fsck_options, payload, rewrite_node, small_options};

const ROOT: &str = "faster-log:events";
/// 1000-byte payloads: four entries (1008 bytes each) and a filler to a 4 KiB page.
const ENTRIES: u64 = 300;
const PER_PAGE: u64 = 4;

fn options() -> FasterLogOptions {
    FasterLogOptions {
        page_bytes: 4096,
        memory_pages: 4,
        // Nodes go to their slots at commit, where fsck reads them.
        policy: Some(CommitPolicy::Strict),
    }
}

fn check(dir: &Path) -> Report {
    fsck_with(&OsStorage::new(), dir, &fsck_options(), &[&FasterLogPlugin]).unwrap()
}

/// A closed log of 75 pages, committed two pages at a time: pages 0..64 in a chunk node,
/// 64..75 in-line. Returns its metadata node's id and contents, and every page's extents.
fn build(dir: &Path) -> (NodeId, Meta, Vec<(u64, Vec<Extent>)>) {
    let rt = Arc::new(DurableRuntime::open(dir, small_options()).unwrap());
    let log = FasterLog::open(rt.clone(), "events", options()).unwrap();
    for i in 0..ENTRIES {
        log.append(&payload(i, 1000)).unwrap();
        if i % 8 == 7 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    drop(log);
    let id = rt.root(ROOT).unwrap();
    let meta = common::meta(&rt, "events");
    let pages = all_pages(&rt, &meta);
    Arc::into_inner(rt).unwrap().close().unwrap();
    assert_eq!(
        meta.chunks
            .iter()
            .map(|c| (c.first_page, c.page_count))
            .collect::<Vec<_>>(),
        [(0, 64)]
    );
    assert_eq!((meta.first_page, meta.pages.len()), (64, 11));
    // The undamaged log is clean, and every entry is checked.
    let report = check(dir);
    assert!(report.is_clean(true), "{:#?}", report.findings);
    let insp = vellum::inspect::load(&OsStorage::new(), dir, &fsck_options()).unwrap();
    assert_eq!(faster_logs(&insp)[0].entries, ENTRIES);
    (id, meta, pages)
}

/// `b` with its trailing CRC32C recomputed.
fn reseal(b: &mut [u8]) {
    let body = b.len() - 4;
    let crc = crc32c(&b[..body]);
    b[body..].copy_from_slice(&crc.to_le_bytes());
}

/// The finding fsck makes of a corruption of `node` at `file`, `offset`.
fn expected(file: String, offset: u64, node: NodeId, kind: CorruptionKind) -> Finding {
    let c = Corruption {
        file: file.into(),
        offset,
        kind,
    };
    Finding::problem(c, Some(node))
}

/// The report's problems are exactly `want`, and no finding but a problem names the log.
fn assert_exactly(report: &Report, want: &Finding) {
    let problems: Vec<&Finding> = report.problems().collect();
    assert_eq!(problems, [want], "{:#?}", report.findings);
    let others = report
        .findings
        .iter()
        .filter(|f| f.severity != Severity::Problem && f.file.starts_with(ROOT));
    assert_eq!(others.count(), 0, "{:#?}", report.findings);
}

/// Opening the log fails with the corruption fsck reported.
fn assert_log_refuses(dir: &Path, want: &Finding) {
    let rt = Arc::new(DurableRuntime::open(dir, small_options()).unwrap());
    let e = FasterLog::open(rt, "events", options()).unwrap_err();
    let c = e.as_corruption().unwrap();
    assert_eq!(
        (&c.file, c.offset, Some(&c.kind)),
        (&want.file, want.offset, want.corruption())
    );
}

#[test]
fn a_metadata_field_is_reported_at_its_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, _, _) = build(tmp.path());
    rewrite_node(tmp.path(), id, |b| {
        b[8..12].copy_from_slice(&3u32.to_le_bytes());
        reseal(b);
    });
    let want = expected(
        ROOT.into(),
        8,
        id,
        CorruptionKind::UnsupportedVersion { found: 3 },
    );
    assert_exactly(&check(tmp.path()), &want);
    assert_log_refuses(tmp.path(), &want);
}

#[test]
fn a_flipped_metadata_byte_is_its_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    let (id, _, _) = build(tmp.path());
    let mut crcs = (0, 0);
    let mut len = 0;
    rewrite_node(tmp.path(), id, |b| {
        b[20] ^= 0x01;
        len = b.len() as u64;
        let body = b.len() - 4;
        let stored = u32::from_le_bytes(b[body..].try_into().unwrap());
        crcs = (stored, crc32c(&b[..body]));
    });
    let (expected_crc, actual) = crcs;
    let kind = CorruptionKind::ChecksumMismatch {
        expected: expected_crc,
        actual,
    };
    let want = expected(ROOT.into(), len - 4, id, kind);
    assert_exactly(&check(tmp.path()), &want);
    assert_log_refuses(tmp.path(), &want);
}

#[test]
fn a_chunk_node_naming_other_pages_is_reported_at_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, meta, _) = build(tmp.path());
    let r = meta.chunks[0];
    rewrite_node(tmp.path(), r.node, |b| {
        b[16..24].copy_from_slice(&(r.first_page + 1).to_le_bytes());
        reseal(b);
    });
    let kind = CorruptionKind::Mismatch {
        what: "chunk first_page",
        expected: r.first_page,
        actual: r.first_page + 1,
    };
    let want = expected(format!("{ROOT}/chunk-{}", r.first_page), 16, r.node, kind);
    let report = check(tmp.path());
    assert_exactly(&report, &want);
    assert_log_refuses(tmp.path(), &want);
    // The chunk's pages are skipped (reported once, for the chunk); the in-line ones are walked.
    let insp = vellum::inspect::load(&OsStorage::new(), tmp.path(), &fsck_options()).unwrap();
    assert_eq!(faster_logs(&insp)[0].entries, ENTRIES - 64 * PER_PAGE);
}

#[test]
fn a_damaged_entry_is_reported_at_its_address_and_the_walk_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, pages) = build(tmp.path());
    // The first entry of page 10, in the chunk: the page's first extent starts with it.
    let (page, extents) = &pages[10];
    assert_eq!(*page, 10);
    let e = extents[0];
    assert_eq!(e.start, 0);
    let mut crcs = (0, 0);
    rewrite_node(tmp.path(), e.node, |b| {
        b[8 + 5] ^= 0x40;
        let len = u32::from_le_bytes(b[0..4].try_into().unwrap()) as usize;
        let stored = u32::from_le_bytes(b[4..8].try_into().unwrap());
        crcs = (stored, entry_crc(&b[8..8 + len]));
    });
    let address = 10 * 4096;
    let kind = CorruptionKind::ChecksumMismatch {
        expected: crcs.0,
        actual: crcs.1,
    };
    let want = expected(format!("{ROOT}/page-10"), address, e.node, kind);
    assert_exactly(&check(tmp.path()), &want);
    // The log's reader reports the same entry the same way.
    let rt = Arc::new(DurableRuntime::open(tmp.path(), small_options()).unwrap());
    let log = FasterLog::open(rt, "events", options()).unwrap();
    let err = log.read(address).unwrap_err();
    let c = err.as_corruption().unwrap();
    assert_eq!(
        (&c.file, c.offset, Some(&c.kind)),
        (&want.file, want.offset, want.corruption())
    );
    drop(log);
    // Page 10's entries are not counted; every other page's are.
    let insp = vellum::inspect::load(&OsStorage::new(), tmp.path(), &fsck_options()).unwrap();
    assert_eq!(faster_logs(&insp)[0].entries, ENTRIES - PER_PAGE);
}

#[test]
fn an_extent_node_cut_short_is_reported_at_its_first_address() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, meta, _) = build(tmp.path());
    // The last extent of in-line page 70.
    let e = *meta.page_extents(70).unwrap().last().unwrap();
    rewrite_node(tmp.path(), e.node, |b| b.truncate(b.len() - 8));
    let kind = CorruptionKind::Mismatch {
        what: "extent length",
        expected: e.len.into(),
        actual: u64::from(e.len) - 8,
    };
    let want = expected(
        format!("{ROOT}/page-70"),
        70 * 4096 + u64::from(e.start),
        e.node,
        kind,
    );
    assert_exactly(&check(tmp.path()), &want);
}
