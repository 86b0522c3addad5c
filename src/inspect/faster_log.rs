//! FasterLog roots (`design/FORMAT.md` §8), read the way `vellum-faster` recovers them: the
//! metadata node a `faster-log:<name>` root names (format version 1 or 2), every chunk node it
//! names, then every entry of its pages' extent nodes from `begin` to the committed tail, each
//! length and CRC32C checked.
//!
//! The decoder is written again here rather than shared, because `vellum-faster` depends on this
//! crate; `structures/faster/tests/inspect.rs` checks both agree on a real log.
//!
//! Invariants:
//! 1. Read-only, and no input makes it panic: every length from the node is checked against the
//!    node's bytes before it is used.
//! 2. Every problem found is a [`Finding`] of kind `Corruption` naming the FasterLog root (the
//!    file is `faster-log:<name>` with a metadata byte offset, `faster-log:<name>/chunk-<p>` with
//!    a byte offset in the chunk node listing pages from `p`, or `faster-log:<name>/page-<p>`
//!    with a logical address), and the check goes on with the next page. The pages of a chunk
//!    node that is damaged, missing or not yet in its slot are not checked (the chunk's finding,
//!    or `pages_pending`, says so once).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::finding::{Finding, FindingKind, Severity};
use super::load::Inspection;
use crate::codec::crc32c;
use crate::error::CorruptionKind;
use crate::object_table::NodeId;

/// Prefix of the roots naming FasterLog metadata nodes.
pub const FASTER_LOG_ROOT_PREFIX: &str = "faster-log:";
const MAGIC: [u8; 8] = *b"VFLOGMD1";
const FIXED_BYTES: usize = 56;
const CHUNK_MAGIC: [u8; 8] = *b"VFLOGPT1";
const CHUNK_FIXED_BYTES: usize = 32;
const CHUNK_REF_BYTES: usize = 24;
const CHUNK_PAGES_MAX: u32 = 64;
const FILLER_LEN: u32 = u32::MAX;

/// What a FasterLog root holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FasterLogDump {
    /// The root's name.
    pub root: String,
    /// The metadata node, as text.
    pub meta_node: String,
    /// Bytes per page.
    pub page_bytes: u32,
    /// First readable address.
    pub begin: u64,
    /// Committed tail.
    pub committed_tail: u64,
    /// Page number of the first listed page (in a chunk or in-line).
    pub first_page: u64,
    /// Pages listed (in chunks and in-line).
    pub page_count: u64,
    /// Chunk nodes, each listing the extents of consecutive complete pages.
    pub chunks: Vec<ChunkDump>,
    /// Extent nodes listed (each holds part of a page), by the metadata and by the chunk nodes
    /// that could be read.
    pub extent_count: u64,
    /// Extent nodes the next commit retires.
    pub retire_pending: u64,
    /// Named iterators and their positions.
    pub iterators: BTreeMap<String, u64>,
    /// Entries checked (length and CRC32C) between begin and the committed tail.
    pub entries: u64,
    /// Payload bytes of those entries.
    pub entry_bytes: u64,
    /// Extent and chunk nodes whose bytes are carried by the delta log (not yet in their slot),
    /// so the entries they hold, or those of the pages they list, were not checked.
    pub pages_pending: u64,
    /// Problems found (also reported by `fsck`).
    pub findings: Vec<Finding>,
}

/// A chunk node a FasterLog's metadata names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChunkDump {
    /// The first page it lists.
    pub first_page: u64,
    /// Pages it lists.
    pub page_count: u32,
    /// The node, as text.
    pub node: String,
}

/// Every FasterLog root of the replayed state.
pub fn faster_logs(insp: &Inspection) -> Vec<FasterLogDump> {
    insp.model
        .roots
        .iter()
        .filter(|(name, _)| name.starts_with(FASTER_LOG_ROOT_PREFIX))
        .map(|(name, &raw)| check_one(insp, name, raw))
        .collect()
}

struct Ctx<'a> {
    out: &'a mut FasterLogDump,
}

impl Ctx<'_> {
    fn problem(&mut self, file: String, offset: u64, node: Option<NodeId>, kind: CorruptionKind) {
        let message = format!("{file}: {kind}");
        self.out.findings.push(Finding {
            severity: Severity::Problem,
            file: PathBuf::from(file),
            offset,
            node,
            kind: FindingKind::Corruption { detail: kind },
            message,
            maybe_concurrent: false,
        });
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// The bytes of live node `id` if its slot holds them (CRC32C checked); `Err(true)` if the log
/// carries them instead, `Err(false)` if they cannot be had.
fn node_bytes(insp: &Inspection, id: NodeId) -> Result<Vec<u8>, bool> {
    match super::dump::node(insp, id) {
        Ok(n) if n.crc_ok => Ok(n.bytes),
        Ok(n) if n.carried => Err(true),
        _ => Err(false),
    }
}

/// One page's extents: (start in the page, length, node).
pub type Extents = Vec<(u32, u32, NodeId)>;

fn check_one(insp: &Inspection, root: &str, raw: u64) -> FasterLogDump {
    let mut out = FasterLogDump {
        root: root.to_owned(),
        meta_node: NodeId::from_raw(raw).map_or_else(|| format!("{raw:#x}"), |id| id.to_string()),
        ..FasterLogDump::default()
    };
    let mut cx = Ctx { out: &mut out };
    let Some(id) = NodeId::from_raw(raw) else {
        let kind = CorruptionKind::InvalidField {
            field: "root",
            value: raw,
        };
        cx.problem(root.into(), 0, None, kind);
        return out;
    };
    let bytes = match node_bytes(insp, id) {
        Ok(b) => b,
        Err(carried) => {
            if carried {
                cx.out.pages_pending += 1;
            } else {
                cx.problem(root.into(), 0, Some(id), CorruptionKind::MissingFile);
            }
            return out;
        }
    };
    let Some(meta) = decode_meta(&mut cx, root, id, &bytes) else {
        return out;
    };
    let pages = load_pages(insp, &mut cx, root, meta);
    let p = u64::from(cx.out.page_bytes);
    let (begin, tail) = (cx.out.begin, cx.out.committed_tail);
    let mut address = begin;
    while address < tail {
        let page = address / p;
        let file = format!("{root}/page-{page}");
        let next_page = (page + 1) * p;
        let extents = match pages.get(&page) {
            Some(Some(extents)) => extents,
            // Its chunk node was reported (or is carried by the log): nothing to check here.
            Some(None) => {
                address = next_page;
                continue;
            }
            None => {
                let kind = CorruptionKind::InvalidField {
                    field: "page",
                    value: page,
                };
                cx.problem(file, address, None, kind);
                return out;
            }
        };
        let end = tail.min(next_page);
        let covered = page * p + extents.last().map_or(0, |e| u64::from(e.0 + e.1));
        if covered < end {
            let kind = CorruptionKind::Mismatch {
                what: "extents' end and committed tail",
                expected: end - page * p,
                actual: covered - page * p,
            };
            cx.problem(file.clone(), covered, None, kind);
        }
        for &(start, len, node) in extents {
            let e_from = page * p + u64::from(start);
            let e_to = e_from + u64::from(len);
            if e_to <= address || e_from >= end {
                continue;
            }
            match node_bytes(insp, node) {
                Ok(b) if b.len() == len as usize => {
                    let range = (e_from, address.max(e_from), end.min(e_to));
                    if !check_extent(&mut cx, &file, node, &b, range) {
                        break;
                    }
                }
                Ok(b) => {
                    let kind = CorruptionKind::Mismatch {
                        what: "extent length",
                        expected: len.into(),
                        actual: b.len() as u64,
                    };
                    cx.problem(file.clone(), e_from, Some(node), kind);
                    break;
                }
                Err(true) => cx.out.pages_pending += 1,
                Err(false) => {
                    cx.problem(
                        file.clone(),
                        e_from,
                        Some(node),
                        CorruptionKind::MissingFile,
                    );
                    break;
                }
            }
        }
        address = next_page;
    }
    out
}

/// A decoded metadata node's page table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaPages {
    /// Chunk references: first page, page count, node.
    pub chunks: Vec<(u64, u32, NodeId)>,
    /// The first in-line page.
    pub first_page: u64,
    /// Each in-line page's extents.
    pub pages: Vec<Extents>,
}

/// Decodes a metadata node's bytes alone, outside a store: the fields [`FasterLogDump`] shows
/// (its `extent_count` counting in-line extents only) and the page table, or the byte offset
/// and kind of the first problem. `vellum-faster`'s tests compare it with that crate's decoder.
pub fn decode_meta_node(bytes: &[u8]) -> Result<(FasterLogDump, MetaPages), (u64, CorruptionKind)> {
    let mut out = FasterLogDump::default();
    parse_meta(&mut out, bytes)
        .map(|m| (out, m))
        .map_err(|(at, kind)| (at as u64, kind))
}

/// Decodes a chunk node's bytes alone, checked against the metadata's reference to it (pages
/// `first_page .. first_page + page_count` of a log of `page_bytes` pages): each page's extents,
/// or the byte offset and kind of the first problem.
pub fn decode_chunk_node(
    bytes: &[u8],
    page_bytes: u32,
    first_page: u64,
    page_count: u32,
) -> Result<Vec<Extents>, (u64, CorruptionKind)> {
    parse_chunk(bytes, page_bytes, first_page, page_count).map_err(|(at, kind)| (at as u64, kind))
}

/// A decoding failure: the byte offset in the node and what was wrong.
type Bad = (usize, CorruptionKind);

fn invalid(offset: usize, field: &'static str, value: u64) -> Bad {
    (offset, CorruptionKind::InvalidField { field, value })
}

/// The body of a node ending in the CRC32C of its other bytes, checked, with the magic and the
/// format version (one of `versions`) at offsets 0 and 8.
fn checked_body<'b>(
    b: &'b [u8],
    fixed: usize,
    magic: &[u8; 8],
    versions: &[u32],
) -> Result<(&'b [u8], u32), Bad> {
    if b.len() < fixed + 4 {
        let kind = CorruptionKind::Truncated {
            needed: (fixed + 4) as u64,
            available: b.len() as u64,
        };
        return Err((0, kind));
    }
    let body = &b[..b.len() - 4];
    let (expected, actual) = (u32_at(b, body.len()), crc32c(body));
    if expected != actual {
        return Err((
            body.len(),
            CorruptionKind::ChecksumMismatch { expected, actual },
        ));
    }
    if body[..8] != magic[..] {
        let found = u64_at(body, 0);
        return Err((0, CorruptionKind::BadMagic { found }));
    }
    let version = u32_at(body, 8);
    if !versions.contains(&version) {
        return Err((8, CorruptionKind::UnsupportedVersion { found: version }));
    }
    let page_bytes = u32_at(body, 12);
    if page_bytes < 8 || !page_bytes.is_multiple_of(8) {
        return Err(invalid(12, "page_bytes", page_bytes.into()));
    }
    Ok((body, version))
}

/// Decodes `count` pages of extents at `*at`; with `whole`, each must cover its whole page.
/// `count_at` is the offset of the field that gave `count`.
fn decode_pages(
    body: &[u8],
    at: &mut usize,
    count: usize,
    page_bytes: u32,
    whole: bool,
    count_at: usize,
) -> Result<Vec<Extents>, Bad> {
    let mut pages = Vec::new();
    for _ in 0..count {
        if *at + 8 > body.len() {
            return Err(invalid(count_at, "page_count", count as u64));
        }
        let n = u32_at(body, *at) as usize;
        if u32_at(body, *at + 4) != 0 {
            return Err(invalid(*at + 4, "reserved", u32_at(body, *at + 4).into()));
        }
        let page_at = *at;
        *at += 8;
        if n > (body.len() - *at) / 16 {
            return Err(invalid(page_at, "extent_count", n as u64));
        }
        let mut extents = Vec::with_capacity(n);
        let mut expect = 0u32;
        for _ in 0..n {
            let (start, len, raw) = (
                u32_at(body, *at),
                u32_at(body, *at + 4),
                u64_at(body, *at + 8),
            );
            if start != expect
                || len == 0
                || !len.is_multiple_of(8)
                || u64::from(start) + u64::from(len) > page_bytes.into()
            {
                return Err(invalid(*at, "extent_start", start.into()));
            }
            let node = NodeId::from_raw(raw).ok_or_else(|| invalid(*at + 8, "extent_node", raw))?;
            extents.push((start, len, node));
            expect = start + len;
            *at += 16;
        }
        if whole && expect != page_bytes {
            let kind = CorruptionKind::Mismatch {
                what: "extents' end and page_bytes",
                expected: page_bytes.into(),
                actual: expect.into(),
            };
            return Err((page_at, kind));
        }
        pages.push(extents);
    }
    Ok(pages)
}

/// Decodes the metadata node into `cx.out`; returns its page table.
fn decode_meta(cx: &mut Ctx<'_>, root: &str, id: NodeId, b: &[u8]) -> Option<MetaPages> {
    match parse_meta(cx.out, b) {
        Ok(m) => Some(m),
        Err((offset, kind)) => {
            cx.problem(root.into(), offset as u64, Some(id), kind);
            None
        }
    }
}

fn parse_meta(out: &mut FasterLogDump, b: &[u8]) -> Result<MetaPages, Bad> {
    let (body, version) = checked_body(b, FIXED_BYTES, &MAGIC, &[1, 2])?;
    let page_bytes = u32_at(body, 12);
    let p = u64::from(page_bytes);
    let (begin, tail) = (u64_at(body, 16), u64_at(body, 24));
    if begin > tail {
        return Err(invalid(16, "begin", begin));
    }
    let first_page = u64_at(body, 32);
    if first_page < begin / p {
        return Err(invalid(32, "first_page", first_page));
    }
    let count = u32_at(body, 40) as usize;
    let iterators = u32_at(body, 44) as usize;
    let pending = u32_at(body, 48) as usize;
    // Version 1 has no chunks; its word at 52 is reserved.
    let chunk_count = u32_at(body, 52) as usize;
    if version == 1 && chunk_count != 0 {
        return Err(invalid(52, "reserved", chunk_count as u64));
    }
    let mut at = FIXED_BYTES;
    if chunk_count > (body.len() - at) / CHUNK_REF_BYTES {
        return Err(invalid(52, "chunk_count", chunk_count as u64));
    }
    let mut chunks = Vec::with_capacity(chunk_count);
    let mut next = begin / p;
    for i in 0..chunk_count {
        let (first, n, raw) = (
            u64_at(body, at),
            u32_at(body, at + 8),
            u64_at(body, at + 16),
        );
        // Contiguous chunks, the first listing no page wholly below begin.
        if first < next || (i > 0 && first != next) {
            return Err(invalid(at, "chunk_first_page", first));
        }
        let end = first.checked_add(n.into());
        let complete = end
            .and_then(|e| e.checked_mul(p))
            .is_some_and(|e| e <= tail);
        if n == 0 || n > CHUNK_PAGES_MAX || !complete {
            return Err(invalid(at + 8, "chunk_page_count", n.into()));
        }
        if u32_at(body, at + 12) != 0 {
            return Err(invalid(at + 12, "reserved", u32_at(body, at + 12).into()));
        }
        let node = NodeId::from_raw(raw).ok_or_else(|| invalid(at + 16, "chunk_node", raw))?;
        chunks.push((first, n, node));
        next = first + u64::from(n);
        at += CHUNK_REF_BYTES;
    }
    if chunk_count > 0 && first_page != next {
        let kind = CorruptionKind::Mismatch {
            what: "first_page and the last chunk's end",
            expected: next,
            actual: first_page,
        };
        return Err((32, kind));
    }
    let pages = decode_pages(body, &mut at, count, page_bytes, false, 40)?;
    if pending > (body.len() - at) / 8 {
        return Err(invalid(48, "retire_pending_count", pending as u64));
    }
    for _ in 0..pending {
        if NodeId::from_raw(u64_at(body, at)).is_none() {
            return Err(invalid(at, "retire_pending", u64_at(body, at)));
        }
        at += 8;
    }
    let mut named: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..iterators {
        let len = body.get(at).copied().unwrap_or(0) as usize;
        let end = at + 1 + len + 8;
        if len == 0 || len > 64 || end > body.len() {
            return Err(invalid(at, "iterator_name_len", len as u64));
        }
        // Names are UTF-8, in strictly ascending byte order.
        let name = std::str::from_utf8(&body[at + 1..at + 1 + len])
            .ok()
            .filter(|n| {
                named
                    .last_key_value()
                    .is_none_or(|(last, _)| last.as_str() < *n)
            })
            .ok_or_else(|| invalid(at + 1, "iterator_name", len as u64))?;
        named.insert(name.to_owned(), u64_at(body, at + 1 + len));
        at = end;
    }
    if at != body.len() {
        let kind = CorruptionKind::Mismatch {
            what: "metadata length",
            expected: at as u64,
            actual: body.len() as u64,
        };
        return Err((at, kind));
    }
    out.page_bytes = page_bytes;
    out.begin = begin;
    out.committed_tail = tail;
    out.first_page = chunks.first().map_or(first_page, |c| c.0);
    out.page_count = (first_page - out.first_page) + count as u64;
    out.chunks = chunks
        .iter()
        .map(|&(first_page, page_count, node)| ChunkDump {
            first_page,
            page_count,
            node: node.to_string(),
        })
        .collect();
    out.extent_count = pages.iter().map(|e| e.len() as u64).sum();
    out.retire_pending = pending as u64;
    out.iterators = named;
    Ok(MetaPages {
        chunks,
        first_page,
        pages,
    })
}

/// Decodes a chunk node and checks it against the metadata's reference `(first, count)`.
fn parse_chunk(b: &[u8], page_bytes: u32, first: u64, count: u32) -> Result<Vec<Extents>, Bad> {
    let (body, _) = checked_body(b, CHUNK_FIXED_BYTES, &CHUNK_MAGIC, &[1])?;
    let n = u32_at(body, 24);
    if n == 0 || n > CHUNK_PAGES_MAX {
        return Err(invalid(24, "page_count", n.into()));
    }
    if u64_at(body, 16).checked_add(n.into()).is_none() {
        return Err(invalid(16, "first_page", u64_at(body, 16)));
    }
    if u32_at(body, 28) != 0 {
        return Err(invalid(28, "reserved", u32_at(body, 28).into()));
    }
    let mut at = CHUNK_FIXED_BYTES;
    let node_page_bytes = u32_at(body, 12);
    let pages = decode_pages(body, &mut at, n as usize, node_page_bytes, true, 24)?;
    if at != body.len() {
        let kind = CorruptionKind::Mismatch {
            what: "chunk length",
            expected: at as u64,
            actual: body.len() as u64,
        };
        return Err((at, kind));
    }
    let checks = [
        (
            12,
            "chunk page_bytes",
            page_bytes.into(),
            node_page_bytes.into(),
        ),
        (16, "chunk first_page", first, u64_at(body, 16)),
        (24, "chunk page_count", count.into(), n.into()),
    ];
    for (offset, what, expected, actual) in checks {
        if expected != actual {
            return Err((
                offset,
                CorruptionKind::Mismatch {
                    what,
                    expected,
                    actual,
                },
            ));
        }
    }
    Ok(pages)
}

/// Every listed page's extents: from each chunk node, then in-line. A page of a chunk node that
/// could not be read maps to `None` (reported once, for the chunk).
fn load_pages(
    insp: &Inspection,
    cx: &mut Ctx<'_>,
    root: &str,
    meta: MetaPages,
) -> BTreeMap<u64, Option<Extents>> {
    let mut pages = BTreeMap::new();
    let page_bytes = cx.out.page_bytes;
    for (first, count, node) in meta.chunks {
        let file = format!("{root}/chunk-{first}");
        let listed = match node_bytes(insp, node) {
            Ok(b) => match parse_chunk(&b, page_bytes, first, count) {
                Ok(listed) => Some(listed),
                Err((offset, kind)) => {
                    cx.problem(file, offset as u64, Some(node), kind);
                    None
                }
            },
            Err(true) => {
                cx.out.pages_pending += 1;
                None
            }
            Err(false) => {
                cx.problem(file, 0, Some(node), CorruptionKind::MissingFile);
                None
            }
        };
        match listed {
            Some(listed) => {
                cx.out.extent_count += listed.iter().map(|e| e.len() as u64).sum::<u64>();
                for (i, extents) in listed.into_iter().enumerate() {
                    pages.insert(first + i as u64, Some(extents));
                }
            }
            None => pages.extend((first..first + u64::from(count)).map(|p| (p, None))),
        }
    }
    for (i, extents) in meta.pages.into_iter().enumerate() {
        pages.insert(meta.first_page + i as u64, Some(extents));
    }
    pages
}

/// Checks the entries of one extent node. `range` is (the logical address of the node's first
/// byte, the address to start at, the address to stop at). False once a problem (or a filler)
/// ends the page's walk.
fn check_extent(
    cx: &mut Ctx<'_>,
    file: &str,
    node: NodeId,
    b: &[u8],
    range: (u64, u64, u64),
) -> bool {
    let (base, mut address, to) = range;
    while address < to {
        let off = (address - base) as usize;
        if off + 8 > b.len() {
            let kind = CorruptionKind::Truncated {
                needed: (off + 8) as u64,
                available: b.len() as u64,
            };
            cx.problem(file.into(), address, Some(node), kind);
            return false;
        }
        let len = u32_at(b, off);
        if len == FILLER_LEN {
            return false;
        }
        let size = (8 + u64::from(len)).div_ceil(8) * 8;
        let end = off + 8 + len as usize;
        if address + size > to || end > b.len() {
            let kind = CorruptionKind::InvalidField {
                field: "entry_len",
                value: len.into(),
            };
            cx.problem(file.into(), address, Some(node), kind);
            return false;
        }
        let expected = u32_at(b, off + 4);
        let actual = crate::codec::crc32c_append(crc32c(&len.to_le_bytes()), &b[off + 8..end]);
        if expected != actual {
            let kind = CorruptionKind::ChecksumMismatch { expected, actual };
            cx.problem(file.into(), address, Some(node), kind);
            return false;
        }
        cx.out.entries += 1;
        cx.out.entry_bytes += u64::from(len);
        address += size;
    }
    true
}
