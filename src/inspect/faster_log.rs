//! FasterLog roots (`design/FORMAT.md` §8), read the way `vellum-faster` recovers them: the
//! metadata node a `faster-log:<name>` root names, then every entry of its pages' extent nodes
//! from `begin` to the committed tail, each length and CRC32C checked.
//!
//! The decoder is written again here rather than shared, because `vellum-faster` depends on this
//! crate; `structures/faster/tests/inspect.rs` checks both agree on a real log.
//!
//! Invariants:
//! 1. Read-only, and no input makes it panic: every length from the node is checked against the
//!    node's bytes before it is used.
//! 2. Every problem found is a [`Finding`] of kind `Corruption` naming the FasterLog root (the
//!    file is `faster-log:<name>` or `faster-log:<name>/page-<p>`, the offset a logical address
//!    or a metadata byte offset), and the check goes on with the next page.

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
    /// Page number of the first listed page node.
    pub first_page: u64,
    /// Pages listed.
    pub page_count: u64,
    /// Extent nodes listed (each holds part of a page).
    pub extent_count: u64,
    /// Extent nodes the next commit retires.
    pub retire_pending: u64,
    /// Named iterators and their positions.
    pub iterators: BTreeMap<String, u64>,
    /// Entries checked (length and CRC32C) between begin and the committed tail.
    pub entries: u64,
    /// Payload bytes of those entries.
    pub entry_bytes: u64,
    /// Page nodes whose bytes are carried by the delta log (not yet in their slot), whose
    /// entries were not checked.
    pub pages_pending: u64,
    /// Problems found (also reported by `fsck`).
    pub findings: Vec<Finding>,
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
type Extents = Vec<(u32, u32, NodeId)>;

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
    let Some(pages) = decode_meta(&mut cx, root, id, &bytes) else {
        return out;
    };
    let p = u64::from(cx.out.page_bytes);
    let (begin, tail) = (cx.out.begin, cx.out.committed_tail);
    let mut address = begin;
    while address < tail {
        let page = address / p;
        let file = format!("{root}/page-{page}");
        let next_page = (page + 1) * p;
        let Some(extents) = page
            .checked_sub(cx.out.first_page)
            .and_then(|i| pages.get(usize::try_from(i).ok()?))
        else {
            let kind = CorruptionKind::InvalidField {
                field: "page",
                value: page,
            };
            cx.problem(file, address, None, kind);
            return out;
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

/// Decodes the metadata node into `cx.out`; returns each page's extents.
fn decode_meta(cx: &mut Ctx<'_>, root: &str, id: NodeId, b: &[u8]) -> Option<Vec<Extents>> {
    let mut bad = |offset: usize, kind| {
        cx.problem(root.into(), offset as u64, Some(id), kind);
        None
    };
    let invalid = |field: &'static str, value: u64| CorruptionKind::InvalidField { field, value };
    if b.len() < FIXED_BYTES + 4 {
        let kind = CorruptionKind::Truncated {
            needed: (FIXED_BYTES + 4) as u64,
            available: b.len() as u64,
        };
        return bad(0, kind);
    }
    let body = &b[..b.len() - 4];
    let (expected, actual) = (u32_at(b, b.len() - 4), crc32c(body));
    if expected != actual {
        return bad(
            b.len() - 4,
            CorruptionKind::ChecksumMismatch { expected, actual },
        );
    }
    if body[..8] != MAGIC {
        return bad(
            0,
            CorruptionKind::BadMagic {
                found: u64_at(body, 0),
            },
        );
    }
    if u32_at(body, 8) != 1 {
        return bad(
            8,
            CorruptionKind::UnsupportedVersion {
                found: u32_at(body, 8),
            },
        );
    }
    let page_bytes = u32_at(body, 12);
    let (begin, tail) = (u64_at(body, 16), u64_at(body, 24));
    if page_bytes < 8 || !page_bytes.is_multiple_of(8) {
        return bad(12, invalid("page_bytes", page_bytes.into()));
    }
    if begin > tail {
        return bad(16, invalid("begin", begin));
    }
    let count = u32_at(body, 40) as usize;
    let iterators = u32_at(body, 44) as usize;
    let pending = u32_at(body, 48) as usize;
    let mut at = FIXED_BYTES;
    let mut pages = Vec::new();
    let mut extent_count = 0u64;
    for _ in 0..count {
        if at + 8 > body.len() {
            return bad(40, invalid("page_count", count as u64));
        }
        let n = u32_at(body, at) as usize;
        at += 8;
        if n > (body.len() - at) / 16 {
            return bad(at - 8, invalid("extent_count", n as u64));
        }
        let mut extents = Vec::with_capacity(n);
        let mut expect = 0u32;
        for _ in 0..n {
            let (start, len, raw) = (u32_at(body, at), u32_at(body, at + 4), u64_at(body, at + 8));
            if start != expect || len == 0 || u64::from(start) + u64::from(len) > page_bytes.into()
            {
                return bad(at, invalid("extent_start", start.into()));
            }
            let Some(node) = NodeId::from_raw(raw) else {
                return bad(at + 8, invalid("extent_node", raw));
            };
            extents.push((start, len, node));
            expect = start + len;
            at += 16;
        }
        extent_count += n as u64;
        pages.push(extents);
    }
    if pending > (body.len() - at) / 8 {
        return bad(48, invalid("retire_pending_count", pending as u64));
    }
    at += pending * 8;
    let mut named = BTreeMap::new();
    for _ in 0..iterators {
        let len = body.get(at).copied().unwrap_or(0) as usize;
        let end = at + 1 + len + 8;
        if len == 0 || len > 64 || end > body.len() {
            return bad(at, invalid("iterator_name_len", len as u64));
        }
        let name = String::from_utf8_lossy(&body[at + 1..at + 1 + len]).into_owned();
        named.insert(name, u64_at(body, at + 1 + len));
        at = end;
    }
    if at != body.len() {
        let kind = CorruptionKind::Mismatch {
            what: "metadata length",
            expected: at as u64,
            actual: body.len() as u64,
        };
        return bad(at, kind);
    }
    let out = &mut *cx.out;
    out.page_bytes = page_bytes;
    out.begin = begin;
    out.committed_tail = tail;
    out.first_page = u64_at(body, 32);
    out.page_count = count as u64;
    out.extent_count = extent_count;
    out.retire_pending = pending as u64;
    out.iterators = named;
    Some(pages)
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
