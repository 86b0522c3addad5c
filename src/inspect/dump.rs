//! `dump`: what a store's files hold, decoded, for people and scripts. Every function takes what
//! it can from a damaged store and says what it could not decode instead of failing.
//!
//! Invariants:
//! 1. Read-only, like the rest of [`crate::inspect`].
//! 2. Each value serializes (`vellum dump --json`); node ids print as `shard:handle:tag`, bytes
//!    as lowercase hex.

use std::path::Path;

use serde::{Serialize, Serializer};

use super::finding::SlotView;
use super::frames::{FrameWalker, Step};
use super::load::Inspection;
use super::meta::MANIFEST_BYTES_MAX;
use super::plugin::{Plugin, StoreView, claimant, structure_prefix};
use crate::checkpoint::{CheckpointExpect, scan_checkpoint};
use crate::codec::crc32c;
use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::io::Storage;
use crate::log::{FRAME_BODY_OFFSET, LOG_HEADER_BYTES, LogHeader, TailState};
use crate::meta::SLOT_BYTES;
use crate::object_table::NodeId;
use crate::runtime::{CommitRecordRef, NodeVersionRef, OpRef};

fn display<S: Serializer, T: std::fmt::Display>(
    v: &T,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn hex<S: Serializer>(v: &[u8], s: S) -> std::result::Result<S::Ok, S::Error> {
    let text: String = v.iter().map(|b| format!("{b:02x}")).collect();
    s.serialize_str(&text)
}

/// A decoding failure, as dumps show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Failure {
    /// Byte offset in the file.
    pub offset: u64,
    /// What was wrong.
    pub detail: CorruptionKind,
}

impl From<&Corruption> for Failure {
    fn from(c: &Corruption) -> Self {
        Failure {
            offset: c.offset,
            detail: c.kind.clone(),
        }
    }
}

/// One root entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootDump {
    /// Its name.
    pub name: String,
    /// The node it names, as `shard:handle:tag` (or the raw value in hex if that is not an id).
    pub node: String,
    /// Whether that node is live after replay (absent where not known).
    pub live: Option<bool>,
}

fn node_text(raw: u64) -> String {
    NodeId::from_raw(raw).map_or_else(|| format!("{raw:#018x}"), |id| id.to_string())
}

/// One superblock slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SlotDump {
    /// Slot index (0 or 1).
    pub slot: usize,
    /// Its offset in the superblock file.
    pub offset: u64,
    /// True for the slot in force.
    pub in_force: bool,
    /// Why it does not decode, if it does not.
    pub error: Option<Failure>,
    /// Its generation.
    pub generation: Option<u64>,
    /// The commit epoch it made durable.
    pub commit_epoch: Option<u64>,
    /// The manifest it names: seq, length, CRC32C.
    pub manifest_seq: Option<u64>,
    /// The manifest's length.
    pub manifest_bytes: Option<u64>,
    /// The manifest's CRC32C.
    pub manifest_crc32c: Option<u32>,
    /// Its root catalog.
    pub roots: Vec<RootDump>,
}

/// Both superblock slots, decoded, with their validity.
pub fn superblock(insp: &Inspection) -> Vec<SlotDump> {
    insp.meta
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| match s {
            Ok(sb) => SlotDump {
                slot: i,
                offset: (i * SLOT_BYTES) as u64,
                in_force: insp.meta.active == Some(i),
                error: None,
                generation: Some(sb.generation),
                commit_epoch: Some(sb.commit_epoch),
                manifest_seq: Some(sb.manifest.seq),
                manifest_bytes: Some(sb.manifest.bytes),
                manifest_crc32c: Some(sb.manifest.crc32c),
                roots: sb
                    .roots
                    .iter()
                    .map(|(name, id)| RootDump {
                        name: name.to_owned(),
                        node: node_text(id),
                        live: None,
                    })
                    .collect(),
            },
            Err(c) => SlotDump {
                slot: i,
                offset: (i * SLOT_BYTES) as u64,
                in_force: false,
                error: Some(c.into()),
                generation: None,
                commit_epoch: None,
                manifest_seq: None,
                manifest_bytes: None,
                manifest_crc32c: None,
                roots: Vec::new(),
            },
        })
        .collect()
}

/// The manifest the slot in force names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManifestDump {
    /// Its file name (absent when no slot is valid).
    pub file: Option<String>,
    /// True when it passed every check recovery makes (`fsck` reports why not).
    pub trusted: bool,
    /// The document, if the file is JSON.
    pub document: Option<serde_json::Value>,
    /// The file's text as stored (lossy UTF-8).
    pub text: Option<String>,
    /// Why it could not be read, if it could not.
    pub error: Option<String>,
}

/// The manifest: its document as stored, whatever its validity.
pub fn manifest(storage: &dyn Storage, insp: &Inspection) -> ManifestDump {
    let mut out = ManifestDump {
        file: None,
        trusted: insp.meta.manifest_trusted,
        document: None,
        text: None,
        error: None,
    };
    let Some(path) = &insp.meta.manifest_path else {
        out.error = Some("no superblock slot is valid, so no manifest is named".into());
        return out;
    };
    out.file = path.file_name().and_then(|n| n.to_str()).map(str::to_owned);
    let read = storage.open_read_only(path).and_then(|f| {
        if f.len()? > MANIFEST_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "longer than {MANIFEST_BYTES_MAX} bytes"
            )));
        }
        f.read_all()
    });
    match read {
        Ok(bytes) => {
            out.document = serde_json::from_slice(&bytes).ok();
            out.text = Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// The root catalog: the superblock's, and the one replay ends with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RootsDump {
    /// The roots of the slot in force.
    pub superblock: Vec<RootDump>,
    /// The roots after replaying the log (what recovery publishes).
    pub recovered: Vec<RootDump>,
}

/// The root catalog.
pub fn roots(insp: &Inspection) -> RootsDump {
    let superblock = insp
        .meta
        .superblock()
        .map(|sb| {
            sb.roots
                .iter()
                .map(|(name, id)| RootDump {
                    name: name.to_owned(),
                    node: node_text(id),
                    live: None,
                })
                .collect()
        })
        .unwrap_or_default();
    let recovered = insp
        .model
        .roots
        .iter()
        .map(|(name, &raw)| RootDump {
            name: name.clone(),
            node: node_text(raw),
            live: insp
                .replayed
                .then(|| NodeId::from_raw(raw).is_some_and(|id| insp.model.get(id).is_some())),
        })
        .collect();
    RootsDump {
        superblock,
        recovered,
    }
}

/// One node's version and bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeDump {
    /// The node.
    #[serde(serialize_with = "display")]
    pub node: NodeId,
    /// Its slot.
    pub location: SlotView,
    /// Bytes of the node.
    pub len: u32,
    /// The CRC32C its reference records.
    pub crc32c: u32,
    /// The caller's node kind.
    pub kind: u8,
    /// The epoch that made this version current.
    pub birth: u64,
    /// True when the log carries the bytes (recovery writes them into the slot).
    pub carried: bool,
    /// The slot's first `len` bytes (fewer if the file ends first).
    #[serde(serialize_with = "hex")]
    pub bytes: Vec<u8>,
    /// True when those bytes match the CRC32C.
    pub crc_ok: bool,
    /// Why the bytes could not be read, if they could not.
    pub error: Option<String>,
}

/// The live version of `id` and its slot's bytes. `Err(NodeNotFound)` if `id` is not live after
/// replay.
pub fn node(insp: &Inspection, id: NodeId) -> Result<NodeDump> {
    let live = insp.model.get(id).ok_or(Error::NodeNotFound {
        id,
        reason: "not live after replaying the store's log",
    })?;
    let v = live.version;
    let mut out = NodeDump {
        node: id,
        location: SlotView::new(v.location, v.len),
        len: v.len,
        crc32c: v.crc32c,
        kind: v.kind,
        birth: v.birth,
        carried: live.carried,
        bytes: Vec::new(),
        crc_ok: false,
        error: None,
    };
    match insp.data_files.get(&(v.location.class, v.location.file)) {
        Some(f) => {
            let mut buf = vec![0u8; v.len as usize];
            match f.handle.read_at(&mut buf, v.location.offset) {
                Ok(n) => {
                    buf.truncate(n);
                    out.crc_ok = n == v.len as usize && crc32c(&buf) == v.crc32c;
                    out.bytes = buf;
                }
                Err(e) => out.error = Some(e.to_string()),
            }
        }
        None => out.error = Some("its data file does not exist".into()),
    }
    Ok(out)
}

/// One op of a commit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum OpDump {
    /// The first version of a node.
    New(VersionDump),
    /// A new version of a node.
    Update(VersionDump),
    /// The node is retired.
    Retire {
        /// The node.
        node: String,
    },
    /// A root is set.
    SetRoot {
        /// Its name.
        name: String,
        /// The node.
        node: String,
    },
    /// A root is removed.
    DelRoot {
        /// Its name.
        name: String,
    },
}

/// A version a NEW or UPDATE op installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionDump {
    /// The node.
    pub node: String,
    /// Its slot.
    pub location: SlotView,
    /// Bytes of the node.
    pub len: u32,
    /// Their CRC32C.
    pub crc32c: u32,
    /// The node kind.
    pub kind: u8,
    /// True when the record carries the bytes.
    pub payload: bool,
}

impl From<&NodeVersionRef<'_>> for VersionDump {
    fn from(v: &NodeVersionRef<'_>) -> Self {
        VersionDump {
            node: v.id.to_string(),
            location: SlotView::new(v.location, v.len),
            len: v.len,
            crc32c: v.crc32c,
            kind: v.kind,
            payload: v.payload.is_some(),
        }
    }
}

/// One frame of a delta log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrameDump {
    /// Its index.
    pub index: u64,
    /// Its offset.
    pub offset: u64,
    /// Bytes of its body.
    pub body_bytes: u64,
    /// The record's epoch, if it decodes.
    pub epoch: Option<u64>,
    /// The record's ops, if it decodes.
    pub ops: Vec<OpDump>,
    /// Why the record does not decode, if it does not.
    pub error: Option<Failure>,
}

/// One delta log, frame by frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogDump {
    /// The file name.
    pub file: String,
    /// The file's length (absent if it could not be opened).
    pub bytes: Option<u64>,
    /// `log_seq` from the header.
    pub log_seq: Option<u64>,
    /// `start_epoch` from the header.
    pub start_epoch: Option<u64>,
    /// Why the header does not decode, if it does not.
    pub header_error: Option<Failure>,
    /// The valid frames, in order.
    pub frames: Vec<FrameDump>,
    /// Where the scan stopped.
    pub stop_offset: u64,
    /// Why: `end of file`, `end marker`, or the bad frame's problem.
    pub stop_reason: String,
    /// Offset of a valid frame found past the stop, if any.
    pub valid_frame_after_stop: Option<u64>,
    /// Why the file could not be read, if it could not.
    pub error: Option<String>,
}

/// Every delta log the manifest names (every log file in the directory without one).
pub fn logs(storage: &dyn Storage, insp: &Inspection) -> Vec<LogDump> {
    let files: Vec<String> = match &insp.meta.manifest {
        Some(m) => m.delta_logs.iter().map(|l| l.file.clone()).collect(),
        None => insp
            .names
            .iter()
            .filter(|n| crate::log::parse_log_file_name(n).is_some())
            .cloned()
            .collect(),
    };
    files
        .into_iter()
        .map(|file| {
            let path = insp.dir.join(&file);
            let mut out = LogDump {
                file,
                bytes: None,
                log_seq: None,
                start_epoch: None,
                header_error: None,
                frames: Vec::new(),
                stop_offset: LOG_HEADER_BYTES as u64,
                stop_reason: String::new(),
                valid_frame_after_stop: None,
                error: None,
            };
            if let Err(e) = dump_log(storage, &path, &mut out) {
                out.error = Some(e.to_string());
            }
            out
        })
        .collect()
}

fn dump_log(storage: &dyn Storage, path: &Path, out: &mut LogDump) -> Result<()> {
    let file = storage.open_read_only(path)?;
    let mut header = [0u8; LOG_HEADER_BYTES];
    let n = file.read_at(&mut header, 0)?;
    match LogHeader::decode(header.get(..n).unwrap_or_default(), path) {
        Ok(h) => {
            out.log_seq = Some(h.log_seq);
            out.start_epoch = Some(h.start_epoch);
        }
        Err(Error::Corruption(c)) => out.header_error = Some((&*c).into()),
        Err(e) => return Err(e),
    }
    let mut walker = FrameWalker::new(file.as_ref())?;
    out.bytes = Some(walker.len());
    let (mut offset, mut index) = (LOG_HEADER_BYTES as u64, 0u64);
    loop {
        out.stop_offset = offset;
        match walker.step(offset, index)? {
            Step::Frame { body, end, .. } => {
                let mut frame = FrameDump {
                    index,
                    offset,
                    body_bytes: body.len() as u64,
                    epoch: None,
                    ops: Vec::new(),
                    error: None,
                };
                match CommitRecordRef::decode(&body, path, offset + FRAME_BODY_OFFSET as u64) {
                    Ok(r) => {
                        frame.epoch = Some(r.epoch);
                        frame.ops = r.ops.iter().map(op_dump).collect();
                    }
                    Err(Error::Corruption(c)) => frame.error = Some((&*c).into()),
                    Err(e) => return Err(e),
                }
                out.frames.push(frame);
                offset = end;
                index += 1;
            }
            Step::Eof => {
                out.stop_reason = "end of file".into();
                return Ok(());
            }
            Step::Sealed => {
                out.stop_reason = "seal (closed cleanly)".into();
                return Ok(());
            }
            Step::End | Step::Bad { .. } => {
                let tail = walker.judge()?;
                out.valid_frame_after_stop = tail.past().first().map(|p| p.offset);
                out.stop_reason = match tail {
                    TailState::Clean => "end marker".into(),
                    TailState::Sealed => "seal (closed cleanly)".into(),
                    TailState::Torn { kind, past, .. } => format!(
                        "torn tail: {kind}; {} frames past it, none known durable",
                        past.len()
                    ),
                    TailState::Damaged {
                        kind, past, proof, ..
                    } => format!(
                        "damaged durable frame: {kind}; {} frames past it, the one at offset {} \
                         claims every frame up to offset {} durable",
                        past.len(),
                        proof.offset,
                        proof.durable_end
                    ),
                };
                return Ok(());
            }
        }
    }
}

fn op_dump(op: &OpRef<'_>) -> OpDump {
    match op {
        OpRef::New(v) => OpDump::New(v.into()),
        OpRef::Update(v) => OpDump::Update(v.into()),
        OpRef::Retire(id) => OpDump::Retire {
            node: id.to_string(),
        },
        OpRef::SetRoot(name, id) => OpDump::SetRoot {
            name: (*name).to_owned(),
            node: id.to_string(),
        },
        OpRef::DelRoot(name) => OpDump::DelRoot {
            name: (*name).to_owned(),
        },
    }
}

/// One checkpoint entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryDump {
    /// The node.
    #[serde(serialize_with = "display")]
    pub node: NodeId,
    /// Its slot.
    pub location: SlotView,
    /// Bytes of the node.
    pub len: u32,
    /// Their CRC32C.
    pub crc32c: u32,
    /// The epoch that made the version current.
    pub birth: u64,
    /// The node kind.
    pub kind: u8,
}

/// The checkpoint the manifest names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointDump {
    /// Its file name (absent when the manifest names none).
    pub file: Option<String>,
    /// `checkpoint_seq` from the header.
    pub seq: Option<u64>,
    /// `epoch` from the header.
    pub epoch: Option<u64>,
    /// `entry_count` from the header.
    pub entry_count: Option<u64>,
    /// Every entry that passed its checks, in id order.
    pub entries: Vec<EntryDump>,
    /// Every problem found (entries of a bad block are not listed).
    pub problems: Vec<Failure>,
    /// Why the file could not be read, if it could not.
    pub error: Option<String>,
}

/// The checkpoint's entries.
pub fn checkpoint(storage: &dyn Storage, insp: &Inspection) -> CheckpointDump {
    let mut out = CheckpointDump {
        file: None,
        seq: None,
        epoch: None,
        entry_count: None,
        entries: Vec::new(),
        problems: Vec::new(),
        error: None,
    };
    let Some(ck) = insp
        .meta
        .manifest
        .as_ref()
        .and_then(|m| m.checkpoint.as_ref())
    else {
        out.error = Some("the manifest names no checkpoint".into());
        return out;
    };
    out.file = Some(ck.file.clone());
    let expect = CheckpointExpect::from_manifest_ref(ck);
    let mut entries = Vec::new();
    let scanned = scan_checkpoint(storage, &insp.dir.join(&ck.file), expect.as_ref(), |e| {
        entries.push(EntryDump {
            node: e.id,
            location: SlotView::new(e.version.location, e.version.len),
            len: e.version.len,
            crc32c: e.version.crc32c,
            birth: e.version.birth,
            kind: e.version.kind,
        });
        Ok(())
    });
    match scanned {
        Ok(report) => {
            if let Some(h) = report.header {
                out.seq = Some(h.seq);
                out.epoch = Some(h.epoch);
                out.entry_count = Some(h.entry_count);
            }
            out.problems = report.problems.iter().map(Failure::from).collect();
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out.entries = entries;
    out
}

/// A structure root, as its plugin shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StructureDump {
    /// The root's name.
    pub root: String,
    /// The node it names, as `shard:handle:tag` (or the raw value in hex if that is not an id).
    pub node: String,
    /// The structure of the plugin that claims it (absent when none does).
    pub structure: Option<String>,
    /// What the plugin shows of it (absent when no plugin claims it).
    pub view: Option<serde_json::Value>,
}

/// Every recovered root that a plugin claims or that has a structure prefix, in name order, with
/// its plugin's view of it (`design/TOOLS.md` §7).
pub fn structures(store: &dyn StoreView, plugins: &[&dyn Plugin]) -> Vec<StructureDump> {
    store
        .roots()
        .into_iter()
        .filter_map(|root| {
            let plugin = claimant(plugins, &root.name);
            if plugin.is_none() && structure_prefix(&root.name).is_none() {
                return None;
            }
            Some(StructureDump {
                node: node_text(root.value),
                structure: plugin.map(|p| p.structure().to_owned()),
                view: plugin.map(|p| p.dump(store, &root)),
                root: root.name,
            })
        })
        .collect()
}
