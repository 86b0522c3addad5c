//! The FasterKV inspection plugin: what `vellum fsck` and `vellum dump` check and show of a
//! `faster-kv:<name>` root (`design/TOOLS.md` §7), on this crate's own decoders.
//!
//! It reads what recovery reads (RC1 of `design/DURABILITY.md` §8): the store node, its
//! checkpoint's chunk and delta nodes (the index rebuilt from them), and every page node below
//! the checkpoint's tail, each record decoded; then it checks every index entry against the
//! log: the entry names a record whose key hashes to the entry's bucket and tag, and every
//! record of its chain links to an earlier record of the same bucket and tag.
//!
//! Invariants (prefix KI):
//! - KI1. Read-only (through [`StoreView`]); no input makes it panic: every node goes through
//!   the decoder recovery uses, and every address is looked up among the records decoded.
//! - KI2. Every problem is a `Problem` finding of kind `Corruption` with the file, offset and
//!   kind the store's own refusal carries: `faster-kv:<name>` (the store node),
//!   `faster-kv:<name>/chunk/<c>`, `faster-kv:<name>/delta/<d>`, `faster-kv/<name>/page/<p>`
//!   (a page node, at the byte offset in the node). An entry or link naming no record is an
//!   `InvalidField` of the chunk it is in (`index entry address`, at the entry's chunk) or of
//!   the record's page (`previous_address`).
//! - KI3. A bad store node ends the root's check; a bad chunk or delta node ends the index's
//!   check (the log's pages are still walked); a bad page node ends that page.
//! - KI4. The checker holds every record's address and key hash in memory (16 bytes a record):
//!   about 160 MiB for 10 million records.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;
use vellum::inspect::{Finding, Plugin, Root, StoreView, Unavailable};
use vellum::{Corruption, CorruptionKind, NodeId};

use super::checkpoint_meta::{CheckpointMeta, decode_chunk, decode_delta};
use super::hash::KeyHash;
use super::hlog::LOG_BEGIN;
use super::index::{ADDRESS_UNSET, HashIndex, IndexOptions};
use super::page::decode_page;
use super::store::KV_ROOT_PREFIX;
use super::store_node::StoreNode;

/// The plugin `vellum fsck` and `vellum dump` register for roots `faster-kv:<name>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct FasterKvPlugin;

impl Plugin for FasterKvPlugin {
    fn structure(&self) -> &str {
        "FasterKV"
    }

    fn root_prefix(&self) -> &str {
        KV_ROOT_PREFIX
    }

    fn check(&self, store: &dyn StoreView, roots: &[Root]) -> Vec<Finding> {
        roots
            .iter()
            .flat_map(|root| inspect_store(store, root).findings)
            .collect()
    }

    fn dump(&self, store: &dyn StoreView, root: &Root) -> serde_json::Value {
        serde_json::to_value(inspect_store(store, root))
            .unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }))
    }
}

/// A named session's commit point, as the dump shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionDump {
    /// The session's name.
    pub name: String,
    /// The last serial the checkpoint holds.
    pub until_serial: u64,
    /// Serials up to it that the checkpoint does not hold.
    pub excluded: Vec<u64>,
}

/// What a FasterKV root holds, and what checking it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct FasterKvDump {
    /// The root's name.
    pub root: String,
    /// Bytes per page.
    pub page_bytes: u32,
    /// Page nodes listed.
    pub pages: u64,
    /// Whether the store has a checkpoint (without one, the next open discards it).
    pub checkpointed: bool,
    /// The checkpoint's version, `prepare_tail` and `tail`.
    pub version: u32,
    pub prepare_tail: u64,
    pub tail: u64,
    /// Index main buckets, chunk nodes and delta nodes.
    pub buckets: u64,
    pub chunks: u64,
    pub deltas: u64,
    /// The named sessions' commit points.
    pub sessions: Vec<SessionDump>,
    /// Records decoded in the pages below the tail.
    pub records: u64,
    /// Index entries checked against the log.
    pub entries: u64,
    /// Problems found (also reported by `fsck`).
    pub findings: Vec<Finding>,
}

/// One record of a key's chain, as `vellum dump --faster-kv --key` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainRecord {
    /// The record's address.
    pub address: u64,
    /// Its info word's version bits and flags.
    pub version: u8,
    pub tombstone: bool,
    pub invalid: bool,
    /// Whether its key is the key asked for (records of other keys with the same bucket and
    /// tag share the chain).
    pub same_key: bool,
    /// Its value's bytes.
    pub value_len: u64,
    /// The previous address of the chain.
    pub previous: u64,
}

/// The chain the index of `root`'s checkpoint has for `key`, newest record first; empty when
/// the store has no checkpoint or no entry for the key's tag, or on damage (which `fsck`
/// reports).
pub fn key_chain(store: &dyn StoreView, root: &Root, key: &[u8]) -> Vec<ChainRecord> {
    let mut c = Check {
        store,
        root: &root.name,
        out: FasterKvDump::default(),
    };
    let node = root
        .node()
        .and_then(|id| c.read(id, std::path::Path::new(&root.name)))
        .and_then(|b| StoreNode::decode(&b, &root.name).ok());
    let Some((node, cp)) = node.and_then(|n| n.checkpoint.clone().map(|cp| (n, cp))) else {
        return Vec::new();
    };
    let Some(index) = c.load_index(&cp) else {
        return Vec::new();
    };
    let mut a = index.find(KeyHash::of(key)).map_or(0, |e| e.address());
    let page_bytes = u64::from(node.page_bytes);
    let mut chain = Vec::new();
    while a >= LOG_BEGIN && a < cp.tail {
        let page = (a / page_bytes) as usize;
        let Some(bytes) = node.pages.get(page).and_then(|&id| store.read(id).ok()) else {
            break;
        };
        let Ok(view) = decode_page(&bytes.bytes) else {
            break;
        };
        let Ok(r) = view.record_at((a % page_bytes) as usize) else {
            break;
        };
        let info = r.header.info;
        chain.push(ChainRecord {
            address: a,
            version: info.version(),
            tombstone: info.is_tombstone(),
            invalid: info.is_invalid(),
            same_key: r.key == key,
            value_len: r.value.len() as u64,
            previous: info.previous_address(),
        });
        if info.previous_address() >= a {
            break;
        }
        a = info.previous_address();
    }
    chain
}

/// Every FasterKV root of `store`, checked.
pub fn faster_kvs(store: &dyn StoreView) -> Vec<FasterKvDump> {
    store
        .roots()
        .iter()
        .filter(|root| root.name.starts_with(KV_ROOT_PREFIX))
        .map(|root| inspect_store(store, root))
        .collect()
}

/// Checks the FasterKV store `root` names (KI1–KI4).
pub fn inspect_store(store: &dyn StoreView, root: &Root) -> FasterKvDump {
    let mut c = Check {
        store,
        root: &root.name,
        out: FasterKvDump {
            root: root.name.clone(),
            ..FasterKvDump::default()
        },
    };
    c.run(root);
    c.out
}

/// A record's key hash and previous address, by address.
type Records = HashMap<u64, (KeyHash, u64)>;

struct Check<'a> {
    store: &'a dyn StoreView,
    root: &'a str,
    out: FasterKvDump,
}

impl Check<'_> {
    fn run(&mut self, root: &Root) {
        let file = PathBuf::from(self.root);
        let Some(id) = root.node() else {
            let kind = CorruptionKind::InvalidField {
                field: "root",
                value: root.value,
            };
            return self.problem(file, 0, None, kind);
        };
        let Some(bytes) = self.read(id, &file) else {
            return;
        };
        let node = match StoreNode::decode(&bytes, self.root) {
            Ok(n) => n,
            Err(e) => return self.refused(&e, Some(id)),
        };
        self.out.page_bytes = node.page_bytes;
        self.out.pages = node.pages.len() as u64;
        let Some(cp) = node.checkpoint.clone() else {
            return;
        };
        self.summarize(&cp);
        let records = self.walk_pages(&node, &cp);
        if let Some(index) = self.load_index(&cp) {
            self.check_entries(&index, &records);
        }
    }

    fn summarize(&mut self, cp: &CheckpointMeta) {
        let o = &mut self.out;
        o.checkpointed = true;
        (o.version, o.prepare_tail, o.tail) = (cp.version, cp.prepare_tail, cp.tail);
        (o.buckets, o.chunks, o.deltas) = (
            cp.bucket_count,
            cp.chunks.len() as u64,
            cp.deltas.len() as u64,
        );
        o.sessions = (cp.sessions.iter())
            .map(|s| SessionDump {
                name: s.name.clone(),
                until_serial: s.commit.until_serial,
                excluded: s.commit.excluded.clone(),
            })
            .collect();
    }

    /// Decodes every record of the pages below the checkpoint's tail (KI3: a bad page ends it).
    fn walk_pages(&mut self, node: &StoreNode, cp: &CheckpointMeta) -> Records {
        let mut records = Records::new();
        let page_bytes = u64::from(node.page_bytes);
        let name = self.root.strip_prefix(KV_ROOT_PREFIX).unwrap_or(self.root);
        let pages = (cp.tail / page_bytes) as usize;
        for (p, &id) in node.pages.iter().enumerate().take(pages) {
            let file = PathBuf::from(format!("faster-kv/{name}/page/{p}"));
            let Some(bytes) = self.read(id, &file) else {
                continue;
            };
            let view = match decode_page(&bytes) {
                Ok(v) => v,
                Err(e) => {
                    self.refused(&e.to_corruption(&file), Some(id));
                    continue;
                }
            };
            if let Err(e) = view.check_page(p as u64, node.page_bytes) {
                self.refused(&e.to_corruption(&file), Some(id));
                continue;
            }
            for r in view.records() {
                match r {
                    Ok(r) => {
                        let address = p as u64 * page_bytes + r.offset as u64;
                        let previous = r.header.info.previous_address();
                        records.insert(address, (KeyHash::of(r.key), previous));
                    }
                    Err(e) => {
                        self.refused(&e.to_corruption(&file), Some(id));
                        break;
                    }
                }
            }
        }
        self.out.records = records.len() as u64;
        records
    }

    /// The index as recovery builds it (KI3: a bad chunk or delta ends the index's check).
    fn load_index(&mut self, cp: &CheckpointMeta) -> Option<HashIndex> {
        let options = IndexOptions {
            bucket_count: cp.bucket_count,
            ..IndexOptions::default()
        };
        let mut images = Vec::new();
        for (c, &id) in cp.chunks.iter().enumerate() {
            let file = PathBuf::from(format!("{}/chunk/{c}", self.root));
            let bytes = self.read(id, &file)?;
            match decode_chunk(&bytes, c, &file) {
                Ok(w) => images.push(w),
                Err(e) => {
                    self.refused(&e, Some(id));
                    return None;
                }
            }
        }
        let index = match HashIndex::from_chunks(&options, &images) {
            Ok(i) => i,
            Err(e) => {
                let e = super::recovery::chunk_corruption(self.root, &images, e);
                let chunk = e.as_corruption().and_then(|c| chunk_of_file(&c.file));
                self.refused_kv(&e, chunk.and_then(|c| cp.chunks.get(c).copied()));
                return None;
            }
        };
        for (d, &id) in cp.deltas.iter().enumerate() {
            let file = PathBuf::from(format!("{}/delta/{d}", self.root));
            let bytes = self.read(id, &file)?;
            let entries = match decode_delta(&bytes, cp.bucket_count, &file) {
                Ok(e) => e,
                Err(e) => {
                    self.refused(&e, Some(id));
                    return None;
                }
            };
            for (bucket, words) in entries {
                if index.replace_chain(bucket, &words).is_err() {
                    let kind = CorruptionKind::InvalidField {
                        field: "delta chain image",
                        value: bucket as u64,
                    };
                    self.problem(file, 0, Some(id), kind);
                    return None;
                }
            }
        }
        Some(index)
    }

    /// Every entry names a record of its bucket and tag, and so does every link of its chain
    /// (records of the next version at or above `prepare_tail` included: recovery moves the
    /// entry past them, and they are records all the same).
    fn check_entries(&mut self, index: &HashIndex, records: &Records) {
        let mask = index.bucket_count() - 1;
        let mut bad = Vec::new();
        let mut entries = 0;
        index.for_each_entry(|bucket, e| {
            entries += 1;
            let tag = e.entry().tag();
            let mut a = e.address();
            let mut first = true;
            while a >= LOG_BEGIN && a != ADDRESS_UNSET {
                let ok = records
                    .get(&a)
                    .filter(|(h, _)| h.bucket(mask) == bucket && h.tag() == tag);
                let Some(&(_, previous)) = ok else {
                    bad.push((bucket, a, first));
                    break;
                };
                first = false;
                a = previous;
            }
        });
        self.out.entries = entries;
        let page_bytes = u64::from(self.out.page_bytes.max(1));
        let name = self.root.strip_prefix(KV_ROOT_PREFIX).unwrap_or(self.root);
        for (bucket, a, first) in bad {
            let (file, offset, field) = if first {
                let chunk = index.chunk_of(bucket);
                let file = PathBuf::from(format!("{}/chunk/{chunk}", self.root));
                (file, 0, "index entry address")
            } else {
                let p = a / page_bytes;
                let file = PathBuf::from(format!("faster-kv/{name}/page/{p}"));
                (file, a % page_bytes, "previous_address")
            };
            let kind = CorruptionKind::InvalidField { field, value: a };
            self.problem(file, offset, None, kind);
        }
    }

    /// The node's bytes, or `None` with a finding (the core reports the node's own state).
    fn read(&mut self, id: NodeId, file: &std::path::Path) -> Option<Vec<u8>> {
        match self.store.read(id) {
            Ok(n) => Some(n.bytes),
            Err(Unavailable::Carried) => None,
            Err(_) => {
                self.problem(file.to_path_buf(), 0, Some(id), CorruptionKind::MissingFile);
                None
            }
        }
    }

    fn refused_kv(&mut self, e: &crate::Error, node: Option<NodeId>) {
        self.refusal(e.as_corruption(), "index", node);
    }

    fn refused(&mut self, e: &vellum::Error, node: Option<NodeId>) {
        self.refusal(e.as_corruption(), "node", node);
    }

    /// A refusal's corruption as a finding, or, for an error that is not one, an invalid
    /// `field` of the root.
    fn refusal(
        &mut self,
        c: Option<&vellum::Corruption>,
        field: &'static str,
        node: Option<NodeId>,
    ) {
        match c {
            Some(c) => self.out.findings.push(Finding::problem(c.clone(), node)),
            None => {
                let kind = CorruptionKind::InvalidField { field, value: 0 };
                self.problem(PathBuf::from(self.root), 0, node, kind);
            }
        }
    }

    fn problem(&mut self, file: PathBuf, offset: u64, node: Option<NodeId>, kind: CorruptionKind) {
        let c = Corruption { file, offset, kind };
        self.out.findings.push(Finding::problem(c, node));
    }
}

/// The chunk a `<root>/chunk/<c>` file names.
fn chunk_of_file(file: &std::path::Path) -> Option<usize> {
    file.to_str()?.rsplit_once("/chunk/")?.1.parse().ok()
}
