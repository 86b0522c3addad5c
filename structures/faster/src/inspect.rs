//! The FasterLog inspection plugin: what `vellum fsck` and `vellum dump` check and show of a
//! `faster-log:<name>` root (`design/TOOLS.md` §7), on this crate's own decoders.
//!
//! It reads what recovery (R1–R3 of `design/DURABILITY.md` §7) and a scan from `begin` read:
//! the metadata node the root names ([`Meta::decode`]), every chunk node the metadata names
//! ([`Chunk::decode`], then [`Chunk::check_ref`] against the reference), then every entry from
//! `begin` to the committed tail through its page's extent nodes, with the entry decoder readers
//! use (`log::decode_entry`).
//!
//! Invariants:
//! 1. Read-only (it sees the store only through [`StoreView`]), and no input makes it panic:
//!    every node goes through a decoder that checks each length against the node's bytes before
//!    using it, and every address it computes lies in a page the metadata lists (whose
//!    addresses fit a `u64`, meta invariant 6) or is bounded by the committed tail.
//! 2. Every problem is a `Problem` finding of kind `Corruption` naming the node and carrying the
//!    file, offset and kind the structure's own corruption reports carry: `faster-log:<name>`
//!    with a byte offset in the metadata node, `faster-log:<name>/chunk-<p>` with a byte offset
//!    in the chunk node the metadata lists from page `p`, or `faster-log:<name>/page-<p>` with a
//!    logical address. A node the view cannot give (and the log does not carry) is `MissingFile`
//!    at the object that names it; the core reports the node's own state beside it.
//! 3. A problem ends only the walk of what depends on it: a bad metadata node ends the root's
//!    check, a bad chunk node skips the pages it lists (reported once, for the chunk), a bad
//!    extent or entry ends its page, and the walk goes on with the next page. A page the
//!    metadata does not list ends the walk (nothing past it can be located).
//! 4. Chunk and extent nodes whose bytes the delta log still carries (BALANCED and EVENTUAL
//!    payloads before a checkpoint) are counted in `pages_pending`, and what they hold is not
//!    checked.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::PathBuf;

use serde::Serialize;
use vellum::NodeId;
use vellum::inspect::{Finding, FindingKind, Plugin, Root, Severity, StoreView, Unavailable};
use vellum::{Corruption, CorruptionKind};

use crate::chunk::{Chunk, chunk_path};
use crate::log::{ROOT_PREFIX, SlicePage, Step, decode_entry, page_path};
use crate::meta::{Extent, Meta};

/// The plugin `vellum fsck` and `vellum dump` register for roots `faster-log:<name>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FasterLogPlugin;

impl Plugin for FasterLogPlugin {
    fn structure(&self) -> &str {
        "FasterLog"
    }

    fn root_prefix(&self) -> &str {
        ROOT_PREFIX
    }

    fn check(&self, store: &dyn StoreView, roots: &[Root]) -> Vec<Finding> {
        roots
            .iter()
            .flat_map(|root| inspect_log(store, root).findings)
            .collect()
    }

    fn dump(&self, store: &dyn StoreView, root: &Root) -> serde_json::Value {
        serde_json::to_value(inspect_log(store, root))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

/// What a FasterLog root holds, and what checking it found.
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

/// Every FasterLog root of `store`, checked.
pub fn faster_logs(store: &dyn StoreView) -> Vec<FasterLogDump> {
    store
        .roots()
        .iter()
        .filter(|root| root.name.starts_with(ROOT_PREFIX))
        .map(|root| inspect_log(store, root))
        .collect()
}

/// Checks the FasterLog that `root` names: its metadata, chunk nodes and every committed entry.
pub fn inspect_log(store: &dyn StoreView, root: &Root) -> FasterLogDump {
    let mut check = Check {
        store,
        root: &root.name,
        out: FasterLogDump {
            root: root.name.clone(),
            meta_node: root
                .node()
                .map_or_else(|| format!("{:#x}", root.value), |id| id.to_string()),
            ..FasterLogDump::default()
        },
    };
    check.run(root.value);
    check.out
}

/// Each listed page's extents; `None` for the pages of a chunk node that could not be read.
type Listing = BTreeMap<u64, Option<Vec<Extent>>>;

/// Why a node's bytes could not be had.
enum Missing {
    /// The delta log carries them (invariant 4).
    Pending,
    /// Anything else (the core reports the node's state).
    Absent,
}

struct Check<'a> {
    store: &'a dyn StoreView,
    root: &'a str,
    out: FasterLogDump,
}

impl Check<'_> {
    fn run(&mut self, value: u64) {
        let root = PathBuf::from(self.root);
        let Some(id) = NodeId::from_raw(value) else {
            let kind = CorruptionKind::InvalidField {
                field: "root",
                value,
            };
            self.problem(root, 0, None, kind);
            return;
        };
        let bytes = match self.read(id) {
            Ok(b) => b,
            Err(Missing::Pending) => {
                self.out.pages_pending += 1;
                return;
            }
            Err(Missing::Absent) => {
                self.problem(root, 0, Some(id), CorruptionKind::MissingFile);
                return;
            }
        };
        let meta = match Meta::decode(&bytes, self.root) {
            Ok(meta) => meta,
            Err(e) => {
                self.failed(e.as_corruption(), &e, root, Some(id));
                return;
            }
        };
        self.summarize(&meta);
        let pages = self.list_pages(&meta);
        self.walk(&meta, &pages);
    }

    /// The metadata's fields, as the dump shows them.
    fn summarize(&mut self, meta: &Meta) {
        let out = &mut self.out;
        out.page_bytes = meta.page_bytes;
        out.begin = meta.begin;
        out.committed_tail = meta.committed_tail;
        out.first_page = meta.first_listed_page();
        out.page_count = (meta.first_page - out.first_page) + meta.pages.len() as u64;
        out.chunks = meta
            .chunks
            .iter()
            .map(|c| ChunkDump {
                first_page: c.first_page,
                page_count: c.page_count,
                node: c.node.to_string(),
            })
            .collect();
        out.extent_count = meta.pages.iter().map(|p| p.len() as u64).sum();
        out.retire_pending = meta.retire_pending.len() as u64;
        out.iterators = meta.iterators.clone();
    }

    /// Every listed page's extents: from each chunk node, then in-line (R3).
    fn list_pages(&mut self, meta: &Meta) -> Listing {
        let mut pages = Listing::new();
        for r in &meta.chunks {
            let what = chunk_path(self.root, r.first_page);
            let chunk = match self.read(r.node) {
                Ok(b) => Chunk::decode(&b, &what)
                    .and_then(|c| c.check_ref(r, meta.page_bytes, &what).map(|()| c))
                    .map_err(|e| self.failed(e.as_corruption(), &e, what.into(), Some(r.node)))
                    .ok(),
                Err(Missing::Pending) => {
                    self.out.pages_pending += 1;
                    None
                }
                Err(Missing::Absent) => {
                    self.problem(what.into(), 0, Some(r.node), CorruptionKind::MissingFile);
                    None
                }
            };
            match chunk {
                Some(chunk) => {
                    self.out.extent_count +=
                        chunk.pages.iter().map(|p| p.len() as u64).sum::<u64>();
                    for (page, extents) in (r.first_page..).zip(chunk.pages) {
                        pages.insert(page, Some(extents));
                    }
                }
                None => pages.extend((r.first_page..r.end()).map(|page| (page, None))),
            }
        }
        for (page, extents) in (meta.first_page..).zip(&meta.pages) {
            pages.insert(page, Some(extents.clone()));
        }
        pages
    }

    /// Every entry from `begin` to the committed tail, page by page (invariant 3).
    fn walk(&mut self, meta: &Meta, pages: &Listing) {
        let page_bytes = u64::from(meta.page_bytes);
        let mut address = meta.begin;
        while address < meta.committed_tail {
            let page = address / page_bytes;
            match pages.get(&page) {
                Some(Some(extents)) => self.walk_page(meta, page, address, extents),
                // Its chunk node was reported (or is carried by the log): nothing to check here.
                Some(None) => {}
                None => {
                    let kind = CorruptionKind::InvalidField {
                        field: "page",
                        value: page,
                    };
                    self.problem(page_path(self.root, page), address, None, kind);
                    return;
                }
            }
            address = (page + 1).saturating_mul(page_bytes);
        }
    }

    /// The entries of listed page `page` from `from` on, extent by extent.
    fn walk_page(&mut self, meta: &Meta, page: u64, from: u64, extents: &[Extent]) {
        let page_bytes = u64::from(meta.page_bytes);
        let start = page * page_bytes;
        let end = meta.committed_tail.min(start.saturating_add(page_bytes));
        let covered = start + extents.last().map_or(0, |e| u64::from(e.end()));
        if covered < end {
            let kind = CorruptionKind::Mismatch {
                what: "extents' end and committed tail",
                expected: end - start,
                actual: covered - start,
            };
            self.problem(page_path(self.root, page), covered, None, kind);
        }
        for e in extents {
            let (e_from, e_to) = (start + u64::from(e.start), start + u64::from(e.end()));
            if e_to <= from || e_from >= end {
                continue;
            }
            let kind = match self.read(e.node) {
                Ok(b) if b.len() == e.len as usize => {
                    if self.walk_extent(meta, page, e, &b, from.max(e_from)) {
                        continue;
                    }
                    return;
                }
                Ok(b) => CorruptionKind::Mismatch {
                    what: "extent length",
                    expected: e.len.into(),
                    actual: b.len() as u64,
                },
                Err(Missing::Pending) => {
                    self.out.pages_pending += 1;
                    continue;
                }
                Err(Missing::Absent) => CorruptionKind::MissingFile,
            };
            self.problem(page_path(self.root, page), e_from, Some(e.node), kind);
            return;
        }
    }

    /// The entries of extent `e` of page `page` (its node's bytes `bytes`) from address `from`
    /// to the extent's end or the committed tail. False once a problem (or a filler) ends the
    /// page's walk.
    fn walk_extent(&mut self, meta: &Meta, page: u64, e: &Extent, bytes: &[u8], from: u64) -> bool {
        let page_bytes = u64::from(meta.page_bytes);
        let start = page * page_bytes;
        let to = meta.committed_tail.min(start + u64::from(e.end()));
        let view = SlicePage(bytes);
        let mut address = from;
        while address < to {
            let offset = (address - start) as usize;
            let decoded = decode_entry(
                self.root,
                page_bytes,
                &view,
                e.start as usize,
                page,
                offset,
                meta.committed_tail,
            );
            match decoded {
                Ok(Step::Entry(entry)) => {
                    self.out.entries += 1;
                    self.out.entry_bytes += entry.bytes.len() as u64;
                    address = entry.next_address;
                }
                Ok(Step::Skip(_)) => return false,
                Err(err) => {
                    let file = page_path(self.root, page);
                    self.failed(err.as_corruption(), &err, file, Some(e.node));
                    return false;
                }
            }
        }
        true
    }

    /// The bytes of node `id`, checked against their CRC32C by the view.
    fn read(&self, id: NodeId) -> Result<Vec<u8>, Missing> {
        match self.store.read(id) {
            Ok(node) => Ok(node.bytes),
            Err(Unavailable::Carried) => Err(Missing::Pending),
            Err(_) => Err(Missing::Absent),
        }
    }

    fn problem(&mut self, file: PathBuf, offset: u64, node: Option<NodeId>, kind: CorruptionKind) {
        let c = Corruption { file, offset, kind };
        self.out.findings.push(Finding::problem(c, node));
    }

    /// A decoder's refusal: its corruption report, or (never from these decoders) an error
    /// that is not one, as `Unreadable` at `file`.
    fn failed(
        &mut self,
        corruption: Option<&Corruption>,
        error: &dyn Display,
        file: PathBuf,
        node: Option<NodeId>,
    ) {
        let finding = match corruption {
            Some(c) => Finding::problem(c.clone(), node),
            None => Finding {
                severity: Severity::Problem,
                message: format!("{}: {error}", file.display()),
                file,
                offset: 0,
                node,
                kind: FindingKind::Unreadable {
                    error: error.to_string(),
                },
                maybe_concurrent: false,
            },
        };
        self.out.findings.push(finding);
    }
}
