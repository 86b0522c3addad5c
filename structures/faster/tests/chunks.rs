//! The chunked page table (`design/FORMAT.md` §8): commits move complete pages' extent lists into
//! chunk nodes of 64 pages, so the metadata node a commit rewrites stays small however long the
//! log grows; truncation retires chunks wholly below begin and rewrites the one it cuts; recovery
//! reads the chunks back; a version 1 metadata node still opens and is chunked by the next commit.
//! Exact expectations on the metadata, on each chunk node and on the runtime's live node set
//! (every live node is the metadata, a chunk, an extent some chunk or in-line page lists, or a
//! node pending retirement, and nothing else).

use std::sync::Arc;

use vellum::NodeId;
use vellum::codec::crc32c;
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum_faster::chunk::{CHUNK_PAGES, CHUNK_REF_BYTES};
use vellum_faster::meta::{EXTENT_BYTES, META_FIXED_BYTES, Meta};
use vellum_faster::{Error, FasterLog, FasterLogOptions};

mod common;

use common::{all_pages, assert_accounted, chunk, meta, payload, small_options};

const PAGE: u64 = 4096;
/// A payload that fills a 4 KiB page exactly: entry `i` is alone on its page.
const WHOLE_PAGE: usize = 4088;
/// The most a metadata node of a 4 KiB-page log holds beside its chunk references (no named
/// iterators): the fixed part; 63 complete in-line pages of at most 4 extents each (a page sealed
/// with more is rewritten as one); the tail's page, whose extents have strictly decreasing
/// lengths (a commit's extent absorbs each earlier one no longer than it), so at most 31 of them
/// (8 + 16 + ... + 248 bytes fill 4 KiB); the at most 31 extents of that page one commit merges
/// away; the CRC.
const INLINE_BYTES_MAX: usize =
    META_FIXED_BYTES + 63 * (8 + 4 * EXTENT_BYTES) + (8 + 31 * EXTENT_BYTES) + 31 * 8 + 4;

fn options() -> FasterLogOptions {
    FasterLogOptions {
        page_bytes: PAGE as u32,
        memory_pages: 8,
        // No sync per commit: the tests count nodes, not fsyncs.
        policy: Some(CommitPolicy::Eventual),
    }
}

fn open(dir: &std::path::Path, name: &str) -> (Arc<DurableRuntime>, FasterLog) {
    let rt = Arc::new(DurableRuntime::open(dir, small_options()).unwrap());
    let log = FasterLog::open(rt.clone(), name, options()).unwrap();
    (rt, log)
}

/// Closes the log and its runtime cleanly.
fn close(rt: Arc<DurableRuntime>, log: FasterLog) {
    drop(log);
    Arc::into_inner(rt).unwrap().close().unwrap();
}

fn meta_bytes(rt: &DurableRuntime, name: &str) -> Vec<u8> {
    rt.read(rt.root(&format!("faster-log:{name}")).unwrap())
        .unwrap()
}

/// The metadata a version 1 log would write for `m`: every page in-line.
fn flattened(rt: &DurableRuntime, m: &Meta) -> Meta {
    let pages = all_pages(rt, m);
    Meta {
        chunks: Vec::new(),
        first_page: pages.first().map_or(m.first_page, |p| p.0),
        pages: pages.into_iter().map(|p| p.1).collect(),
        ..m.clone()
    }
}

/// Appends entry `i` (alone on its page) for each `i` in `range`, committing every 2.
fn append_pages(log: &FasterLog, range: std::ops::Range<u64>) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    for i in range {
        let p = payload(i, WHOLE_PAGE);
        let a = log.append(&p).unwrap();
        assert_eq!(a, i * PAGE, "entry {i} starts page {i}");
        out.push((a, p));
        if i % 2 == 1 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    out
}

/// Commits `bytes` as the new version of node `id` (STRICT).
fn overwrite(rt: &DurableRuntime, id: NodeId, bytes: &[u8]) {
    let mut tx = rt.begin();
    tx.write(id, bytes).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
}

/// The corruption that opening log `name` in `rt` fails with.
fn open_corruption(rt: &Arc<DurableRuntime>, name: &str) -> vellum::Corruption {
    let e = FasterLog::open(rt.clone(), name, options()).unwrap_err();
    e.as_corruption()
        .cloned()
        .unwrap_or_else(|| panic!("not a corruption: {e}"))
}

fn scan(log: &FasterLog) -> Vec<(u64, Vec<u8>)> {
    log.scan_all()
        .map(|e| {
            let e = e.unwrap();
            (e.address, e.bytes)
        })
        .collect()
}

#[test]
fn a_long_log_keeps_its_metadata_small_and_recovers_from_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, log) = open(dir.path(), "long");
    let mut want = Vec::new();
    let mut meta_bytes_max = 0;
    let mut i = 0u64;
    // Entries of 8 to 1500 bytes, a commit every 3: pages sealed with 1 to 4 extents, fillers.
    while log.committed_tail() < 1000 * PAGE {
        let p = payload(i, 1 + (i * 577 % 1500) as usize);
        want.push((log.append(&p).unwrap(), p));
        if i % 3 == 2 {
            log.commit().unwrap();
            let b = meta_bytes(&rt, "long");
            let m = Meta::decode(&b, "meta").unwrap();
            // Fewer than 64 complete in-line pages, plus the one holding the tail.
            assert!(
                m.pages.len() <= CHUNK_PAGES as usize,
                "entry {i}: {}",
                m.pages.len()
            );
            // Beside the chunk references, the metadata is bounded whatever the log's length.
            let inline = b.len() - m.chunks.len() * CHUNK_REF_BYTES;
            assert!(inline <= INLINE_BYTES_MAX, "entry {i}: {inline} bytes");
            meta_bytes_max = meta_bytes_max.max(b.len());
        }
        i += 1;
    }
    // 1000 pages: 15 chunk references and under 64 in-line pages (2.9 KiB at most here; every
    // page in-line, version 1 wrote 39 KiB, see below).
    assert!(meta_bytes_max <= 3 * 1024, "{meta_bytes_max} bytes");
    let tail = log.committed_tail();
    let m = meta(&rt, "long");
    let complete = tail / PAGE;
    assert_eq!(m.chunks.len() as u64, complete / 64);
    for (n, c) in m.chunks.iter().enumerate() {
        assert_eq!((c.first_page, c.page_count), (64 * n as u64, 64));
    }
    assert_eq!(m.first_page, complete / 64 * 64);
    assert_eq!(
        m.pages.len() as u64,
        complete % 64 + u64::from(!tail.is_multiple_of(PAGE))
    );
    // Listed in one place only, in order, each page's extents ending at its end or the tail.
    let pages = all_pages(&rt, &m);
    assert_eq!(pages.len() as u64, tail.div_ceil(PAGE));
    for (n, (p, extents)) in pages.iter().enumerate() {
        assert_eq!(*p, n as u64);
        let end = u64::from(extents.last().unwrap().end());
        assert_eq!(end, PAGE.min(tail - p * PAGE), "page {p}");
        assert!((1..=4).contains(&extents.len()), "page {p}: {extents:?}");
    }
    // Every page in-line, as version 1 wrote it, is several times larger.
    let v1_bytes = flattened(&rt, &m).encode().len();
    assert!(
        v1_bytes > 8 * meta_bytes_max,
        "{v1_bytes} vs {meta_bytes_max}"
    );
    assert_accounted(&rt, "long", "before reopen");
    assert_eq!(scan(&log), want);
    close(rt, log);

    // Recovery rebuilds the page table from the chunk nodes: every entry reads back exactly.
    let (rt, log) = open(dir.path(), "long");
    assert_eq!(log.committed_tail(), tail);
    for (a, p) in want.iter().step_by(7) {
        assert_eq!(&log.read(*a).unwrap(), p, "entry at {a}");
    }
    assert_eq!(scan(&log), want);
    assert_accounted(&rt, "long", "after reopen");
    // Appends continue; the next complete 64 pages make the next chunk.
    let next = (want.len() as u64..).take(64 * 3);
    for (n, i) in next.enumerate() {
        let p = payload(i, 1500);
        want.push((log.append(&p).unwrap(), p));
        if n % 5 == 4 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    let m = meta(&rt, "long");
    assert_eq!(m.chunks.len() as u64, log.committed_tail() / PAGE / 64);
    assert_eq!(scan(&log), want);
    assert_accounted(&rt, "long", "after more appends");
    close(rt, log);
}

#[test]
fn truncation_retires_whole_chunks_and_rewrites_the_one_it_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, log) = open(dir.path(), "trunc");
    let mut want = append_pages(&log, 0..300);
    let m = meta(&rt, "trunc");
    let refs: Vec<(u64, u32)> = m
        .chunks
        .iter()
        .map(|c| (c.first_page, c.page_count))
        .collect();
    assert_eq!(refs, [(0, 64), (64, 64), (128, 64), (192, 64)]);
    assert_eq!((m.first_page, m.pages.len()), (256, 44));
    // The metadata, 4 chunks and one extent per page (each page written whole by one commit).
    assert_eq!(assert_accounted(&rt, "trunc", "300 pages"), 1 + 4 + 300);
    let old = m.chunks.clone();
    let old_second = chunk(&rt, &old[1]);

    // Begin at page 100: chunk 0 goes with its pages, chunk 1 keeps pages 100..128 in a new
    // node, chunks 2 and 3 stay as they are.
    log.truncate_until(100 * PAGE).unwrap();
    let m = meta(&rt, "trunc");
    assert_eq!(m.begin, 100 * PAGE);
    assert_eq!(m.chunks.len(), 3);
    let cut = m.chunks[0];
    assert_eq!((cut.first_page, cut.page_count), (100, 28));
    assert!(cut.node != old[1].node && cut.node != old[0].node);
    assert_eq!(&m.chunks[1..], &old[2..]);
    assert_eq!(chunk(&rt, &cut).pages, old_second.pages[36..]);
    assert_eq!(m.first_page, 256);
    assert!(m.retire_pending.is_empty());
    assert_eq!(assert_accounted(&rt, "trunc", "begin 100"), 1 + 3 + 200);
    for (a, gone) in [(0, 0), (99 * PAGE, 99), (64 * PAGE, 64)] {
        assert!(
            matches!(log.read(a), Err(Error::BelowBegin { .. })),
            "entry {gone}"
        );
    }
    want.drain(..100);
    assert_eq!(log.read(100 * PAGE).unwrap(), want[0].1);
    assert_eq!(scan(&log), want);
    close(rt, log);

    let (rt, log) = open(dir.path(), "trunc");
    assert_eq!(log.begin_address(), 100 * PAGE);
    assert!(matches!(log.read(99 * PAGE), Err(Error::BelowBegin { .. })));
    assert_eq!(scan(&log), want);
    assert_eq!(
        assert_accounted(&rt, "trunc", "begin 100, reopened"),
        1 + 3 + 200
    );

    // Begin exactly at a chunk's start: the chunk before it goes whole, nothing is rewritten.
    log.truncate_until(128 * PAGE).unwrap();
    let m = meta(&rt, "trunc");
    assert_eq!(&m.chunks, &old[2..]);
    assert_eq!(assert_accounted(&rt, "trunc", "begin 128"), 1 + 2 + 172);

    // Begin in the in-line pages: every chunk goes, and in-line pages below page 260 too.
    log.truncate_until(260 * PAGE).unwrap();
    let m = meta(&rt, "trunc");
    assert!(m.chunks.is_empty());
    assert_eq!((m.first_page, m.pages.len()), (260, 40));
    assert_eq!(assert_accounted(&rt, "trunc", "begin 260"), 1 + 40);
    want.drain(..160);
    assert_eq!(scan(&log), want);

    // New chunks start at the first listed page, not at a multiple of 64.
    want.extend(append_pages(&log, 300..400));
    let m = meta(&rt, "trunc");
    let refs: Vec<(u64, u32)> = m
        .chunks
        .iter()
        .map(|c| (c.first_page, c.page_count))
        .collect();
    assert_eq!(refs, [(260, 64), (324, 64)]);
    assert_eq!((m.first_page, m.pages.len()), (388, 12));
    assert_eq!(assert_accounted(&rt, "trunc", "400 pages"), 1 + 2 + 140);
    close(rt, log);

    let (rt, log) = open(dir.path(), "trunc");
    assert_eq!(scan(&log), want);
    assert!(matches!(
        log.read(259 * PAGE),
        Err(Error::BelowBegin { .. })
    ));
    // Truncating everything committed leaves no page listed at all.
    log.truncate_until(400 * PAGE).unwrap();
    let m = meta(&rt, "trunc");
    assert!(m.chunks.is_empty() && m.pages.is_empty());
    assert_eq!(m.first_page, 400);
    assert_eq!(assert_accounted(&rt, "trunc", "all truncated"), 1);
    assert!(scan(&log).is_empty());
    rt.verify().unwrap();
    close(rt, log);
}

/// A begin inside a page keeps that page (it is not wholly below begin), in its chunk.
#[test]
fn a_begin_inside_a_page_keeps_the_page_in_its_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, log) = open(dir.path(), "mid");
    // Two 2040-byte entries per page.
    let mut want = Vec::new();
    for i in 0..2 * 140u64 {
        let p = payload(i, 2040);
        want.push((log.append(&p).unwrap(), p));
        if i % 4 == 3 {
            log.commit().unwrap();
        }
    }
    log.commit().unwrap();
    assert_eq!(meta(&rt, "mid").chunks.len(), 2);
    let begin = 70 * PAGE + 2048;
    log.truncate_until(begin).unwrap();
    let m = meta(&rt, "mid");
    assert_eq!((m.chunks[0].first_page, m.chunks[0].page_count), (70, 58));
    assert_eq!(m.chunks.len(), 1);
    assert_eq!(assert_accounted(&rt, "mid", "begin mid-page"), 1 + 1 + 70);
    assert!(matches!(log.read(70 * PAGE), Err(Error::BelowBegin { .. })));
    want.retain(|(a, _)| *a >= begin);
    assert_eq!(scan(&log), want);
    close(rt, log);
    let (_rt, log) = open(dir.path(), "mid");
    assert_eq!(scan(&log), want);
}

/// A log whose metadata is version 1 (every page in-line, no chunks) opens and reads as before;
/// its next commit writes version 2 and moves its complete pages into chunks.
#[test]
fn a_version_1_log_opens_and_its_next_commit_chunks_it() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, log) = open(dir.path(), "old");
    let mut want = append_pages(&log, 0..200);
    close(rt, log);

    // Rewrite the metadata as version 1 would have written it, retiring the chunk nodes.
    {
        let rt = DurableRuntime::open(dir.path(), small_options()).unwrap();
        let id = rt.root("faster-log:old").unwrap();
        let m = meta(&rt, "old");
        assert_eq!(m.chunks.len(), 3);
        let mut v1 = flattened(&rt, &m).encode();
        v1[8..12].copy_from_slice(&1u32.to_le_bytes());
        let body = v1.len() - 4;
        let crc = crc32c(&v1[..body]);
        v1[body..].copy_from_slice(&crc.to_le_bytes());
        let mut tx = rt.begin();
        tx.write(id, &v1).unwrap();
        for c in &m.chunks {
            tx.retire(c.node).unwrap();
        }
        tx.commit_with(CommitPolicy::Strict).unwrap();
        let again = Meta::decode(&rt.read(id).unwrap(), "v1").unwrap();
        assert!(again.chunks.is_empty());
        assert_eq!((again.first_page, again.pages.len()), (0, 200));
        assert_eq!(assert_accounted(&rt, "old", "version 1"), 1 + 200);
        rt.close().unwrap();
    }

    let (rt, log) = open(dir.path(), "old");
    assert_eq!(scan(&log), want);
    assert_eq!(meta_bytes(&rt, "old")[8], 1, "opening writes nothing");
    want.extend(append_pages(&log, 200..201));
    let b = meta_bytes(&rt, "old");
    assert_eq!(b[8], 2);
    let m = Meta::decode(&b, "v2").unwrap();
    let refs: Vec<(u64, u32)> = m
        .chunks
        .iter()
        .map(|c| (c.first_page, c.page_count))
        .collect();
    assert_eq!(refs, [(0, 64), (64, 64), (128, 64)]);
    assert_eq!((m.first_page, m.pages.len()), (192, 9));
    assert_eq!(assert_accounted(&rt, "old", "version 2 again"), 1 + 3 + 201);
    close(rt, log);
    let (_rt, log) = open(dir.path(), "old");
    assert_eq!(scan(&log), want);
}

/// Recovery checks each chunk node against the metadata's reference to it.
#[test]
fn a_chunk_node_that_does_not_match_its_reference_is_a_structured_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (rt, log) = open(dir.path(), "bad");
    append_pages(&log, 0..130);
    close(rt, log);
    let rt = DurableRuntime::open(dir.path(), small_options()).unwrap();
    let m = meta(&rt, "bad");
    assert_eq!(m.chunks.len(), 2);
    // Chunk 1's node gets chunk 0's bytes: a valid chunk node, but not the one referred to.
    let first = rt.read(m.chunks[0].node).unwrap();
    overwrite(&rt, m.chunks[1].node, &first);
    rt.close().unwrap();
    let rt = Arc::new(DurableRuntime::open(dir.path(), small_options()).unwrap());
    let c = open_corruption(&rt, "bad");
    assert_eq!(c.file.to_str().unwrap(), "faster-log:bad/chunk-64");
    assert_eq!(c.offset, 16);
    assert_eq!(
        c.kind,
        vellum::CorruptionKind::Mismatch {
            what: "chunk first_page",
            expected: 64,
            actual: 0
        }
    );
    // A flipped byte in the chunk node: its CRC32C.
    let mut bad = rt.read(m.chunks[1].node).unwrap();
    bad[40] ^= 1;
    overwrite(&rt, m.chunks[1].node, &bad);
    let c = open_corruption(&rt, "bad");
    assert_eq!(c.file.to_str().unwrap(), "faster-log:bad/chunk-64");
    assert_eq!(c.offset, bad.len() as u64 - 4);
    assert!(matches!(
        c.kind,
        vellum::CorruptionKind::ChecksumMismatch { .. }
    ));
}
