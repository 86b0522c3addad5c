//! Findings: what `fsck` reports, one per problem or noteworthy state, and the report that
//! collects them.
//!
//! Invariants:
//! 1. Every finding names a file (the store directory itself for findings about the store as a
//!    whole; for a structure's findings, made by its inspection plugin, the structure's name for
//!    the object, which starts with the root's name), a byte offset in it (0 when the finding
//!    concerns the whole file), a kind and a severity; the kinds and severities are the table of
//!    `design/TOOLS.md`.
//! 2. A finding's kind is structured: byte-level damage carries the decoder's own
//!    [`CorruptionKind`], so a test or a script can compare it exactly, never parse the message.
//! 3. `Problem` means recovery would refuse the store, or stored bytes are not what was written
//!    and recovery would not repair them. `Warning` means recovery proceeds, and the state is a
//!    normal outcome of a crash but damage on a store that was closed cleanly. `Info` is a state
//!    the formats define as normal.

use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use crate::alloc::Location;
use crate::error::{Corruption, CorruptionKind, Error};
use crate::object_table::NodeId;

/// How serious a finding is (see the module invariants and `design/TOOLS.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A normal state, reported for completeness.
    Info,
    /// Recovery proceeds; normal after a crash, damage on a cleanly closed store.
    Warning,
    /// Recovery would refuse the store, or bytes are damaged beyond what recovery repairs.
    Problem,
}

/// A slot (or large extent) location as reports show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotView {
    /// Size class (slot size `16 << class`; the large class 15 holds extents).
    pub class: u8,
    /// Data file number within the class.
    pub file: u32,
    /// Byte offset of the slot in that file.
    pub offset: u64,
    /// Bytes of the slot: for the large class, the extent (`len` rounded up to 4 KiB).
    pub slot_bytes: u64,
}

impl SlotView {
    /// The slot or extent a version of `len` bytes at `l` owns.
    pub fn new(l: Location, len: u32) -> Self {
        SlotView {
            class: l.class,
            file: l.file,
            offset: l.offset,
            slot_bytes: l.slot_bytes(u64::from(len)),
        }
    }
}

/// What a finding is about. Serialized with a `kind` field naming the variant in snake case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FindingKind {
    /// Stored bytes failed a check, with the decoder's (or recovery's) own report. Node bytes
    /// that fail their CRC32C are `ChecksumMismatch { expected: the reference's, actual }` at the
    /// slot's offset, with the node named in [`Finding::node`].
    Corruption {
        /// What was wrong.
        detail: CorruptionKind,
    },
    /// Superblock slot 0 is all zeros while slot 1 holds generation 1: a store that was never
    /// published to after create.
    UnwrittenSlot,
    /// The open (last) delta log ends in a frame that does not decode, and no valid frame was
    /// found after it: the normal result of a crash while frames were written. Recovery cuts the
    /// log at the finding's offset.
    TornTail {
        /// Why the frame does not decode.
        cause: CorruptionKind,
    },
    /// The open log's scan stops at the finding's offset (a frame that does not decode, or zero
    /// bytes where a frame was due when `cause` is `None`), and valid frames with later indexes
    /// follow, but none of them claims the stop durable (their `durable_end` lies at or before
    /// it): an unsynced batch whose sectors a crash kept out of order. Recovery cuts the log at
    /// the finding's offset and drops those frames, none of which was acknowledged.
    FramesPastCut {
        /// Why the scan stopped (`None`: zero bytes, body length zero).
        cause: Option<CorruptionKind>,
        /// File offset of the first valid frame found after the cut.
        next_offset: u64,
        /// Its frame index.
        next_index: u64,
    },
    /// The open log's scan stops at the finding's offset, and a valid frame past it (at
    /// `proof_offset`) claims every frame up to `proof_durable_end`, past the stop, durable: the
    /// frame at the stop was synced, so this is damage to durable, possibly acknowledged, data.
    /// Recovery refuses the store (`Corruption` at this offset); opened with
    /// `RecoveryMode::TruncateDamagedLog` it cuts the log here and drops `frames_past` frames.
    DamagedDurableFrame {
        /// Why the frame at the offset does not decode (`None`: zero bytes).
        cause: Option<CorruptionKind>,
        /// The frame whose claim proves the damage.
        proof_offset: u64,
        /// The durable position it claims.
        proof_durable_end: u64,
        /// Valid frames found past the damage.
        frames_past: u64,
    },
    /// A live version's slot is off its class's slot grid: its offset is not a multiple of the
    /// slot size (for the large class, of 4 KiB), or a large extent crosses a 64 MiB region
    /// boundary. (A slot past `file_bytes_max`, or more than two files past the last data file
    /// of its class, is recovery's own refusal: `Corruption` with `InvalidField "op.location"`.)
    SlotOffGrid {
        /// The slot.
        location: SlotView,
    },
    /// A live version's slot cannot be read: its data file does not exist, or the window holding
    /// the slot ends past the file's length (counting the growth recovery's payload write-backs
    /// make). The runtime maps whole windows, so a slot inside the file but in a cut-short window
    /// is unreadable too.
    SlotOutsideFiles {
        /// The slot.
        location: SlotView,
        /// The file's length, if it exists.
        file_bytes: Option<u64>,
    },
    /// Two live versions overlap (the finding's node and `other`).
    SlotOverlap {
        /// The slot of the finding's node.
        location: SlotView,
        /// The other node.
        #[serde(serialize_with = "display")]
        other: NodeId,
    },
    /// A live version's slot does not (yet) hold its bytes, but the delta log carries them as a
    /// payload (BALANCED and EVENTUAL commits of small nodes): recovery writes them back (RV7).
    PayloadPending {
        /// The slot.
        location: SlotView,
    },
    /// The data files of a class are not numbered densely from 0; recovery refuses the store.
    DataFileGap {
        /// The size class.
        class: u8,
        /// The first missing file number.
        missing: u32,
    },
    /// A file that opening the store removes: a manifest other than the one in force, a `*.tmp`
    /// file, or a log or checkpoint the manifest in force does not name.
    Leftover,
    /// A file vellum neither uses nor removes; its space is never reclaimed (the only leak an
    /// offline store can have, see `design/TOOLS.md`).
    UnknownFile,
    /// A storage call failed while reading (permissions, I/O error).
    Unreadable {
        /// The error.
        error: String,
    },
    /// A root names a structure (its name has a prefix ending in `:`) for which no inspection
    /// plugin was registered, so its nodes were checked as nodes but not decoded
    /// ([`super::Plugin`]). The finding's file is the root's name and its node the node the
    /// root names.
    NoInspector {
        /// The root name's prefix, `:` included.
        prefix: String,
    },
}

/// One thing `fsck` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// The file it concerns (the store directory for findings about the store as a whole).
    pub file: PathBuf,
    /// Byte offset in that file (0 when it concerns the whole file).
    pub offset: u64,
    /// The node it concerns, if any.
    #[serde(serialize_with = "display_opt")]
    pub node: Option<NodeId>,
    /// What it is.
    #[serde(flatten)]
    pub kind: FindingKind,
    /// A sentence for people.
    pub message: String,
    /// Set only by `--snapshot` runs: a writer was (or may have been) changing the store while
    /// it was read, and this finding may be caused by that rather than by damage. Such findings
    /// are never `Problem`s.
    pub maybe_concurrent: bool,
}

impl Finding {
    /// A `Problem` of kind `Corruption` from a decoder's report about `node`: how an inspection
    /// plugin reports damage in its structure's nodes. The corruption's file names the object
    /// (for FasterLog, `faster-log:<name>/chunk-<p>`), its offset the byte in it.
    pub fn problem(c: Corruption, node: Option<NodeId>) -> Finding {
        let message = format!("{}: {}", c.file.display(), c.kind);
        Finding {
            severity: Severity::Problem,
            file: c.file,
            offset: c.offset,
            node,
            kind: FindingKind::Corruption { detail: c.kind },
            message,
            maybe_concurrent: false,
        }
    }

    /// The file's name (its last path component), for matching in tests and scripts.
    pub fn file_name(&self) -> &str {
        self.file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
    }

    /// The corruption detail, if this finding carries one (`Corruption`, `TornTail`,
    /// `FramesPastCut`, `DamagedDurableFrame`).
    pub fn corruption(&self) -> Option<&CorruptionKind> {
        match &self.kind {
            FindingKind::Corruption { detail } => Some(detail),
            FindingKind::TornTail { cause } => Some(cause),
            FindingKind::FramesPastCut { cause, .. }
            | FindingKind::DamagedDurableFrame { cause, .. } => cause.as_ref(),
            _ => None,
        }
    }
}

fn display<S: Serializer, T: std::fmt::Display>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

fn display_opt<S: Serializer>(v: &Option<NodeId>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Collects findings while a check runs.
#[derive(Debug, Default)]
pub(crate) struct Findings {
    pub(crate) items: Vec<Finding>,
}

impl Findings {
    /// Adds a finding.
    pub(crate) fn push(
        &mut self,
        severity: Severity,
        file: &Path,
        offset: u64,
        kind: FindingKind,
        message: impl Into<String>,
    ) -> &mut Finding {
        let message = message.into();
        // Findings are the report, not log events: the caller prints them.
        tracing::debug!(file = %file.display(), offset, ?severity, ?kind, %message);
        self.items.push(Finding {
            severity,
            file: file.to_path_buf(),
            offset,
            node: None,
            kind,
            message,
            maybe_concurrent: false,
        });
        let last = self.items.len() - 1;
        &mut self.items[last]
    }

    /// Adds a decoder's corruption report.
    pub(crate) fn corruption(
        &mut self,
        severity: Severity,
        c: Corruption,
        what: &str,
    ) -> &mut Finding {
        let message = format!("{what}: {}", c.kind);
        self.push(
            severity,
            &c.file,
            c.offset,
            FindingKind::Corruption { detail: c.kind },
            message,
        )
    }

    /// Adds an error met while reading `file`: corruption as such, anything else as
    /// `Unreadable`.
    pub(crate) fn error(&mut self, severity: Severity, file: &Path, e: Error, what: &str) {
        match e {
            Error::Corruption(c) => {
                self.corruption(severity, *c, what);
            }
            other => {
                let error = other.to_string();
                self.push(
                    severity,
                    file,
                    0,
                    FindingKind::Unreadable {
                        error: error.clone(),
                    },
                    format!("{what}: {error}"),
                );
            }
        }
    }
}
