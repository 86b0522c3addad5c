//! Inspection plugins: how a structure crate checks and dumps what its roots name, so that the
//! core knows no structure's formats (`design/TOOLS.md` §7). The core reconstructs the store;
//! a [`Plugin`] decodes its structure's nodes through a read-only [`StoreView`] of it and
//! returns [`Finding`]s (for `fsck`) or a JSON view (for `dump`).
//!
//! Invariants:
//! 1. A plugin claims the recovered roots whose names start with its [`Plugin::root_prefix`];
//!    when several prefixes match, the longest wins (the first plugin listed among equals), so
//!    each root has at most one inspector.
//! 2. No root a structure owns is skipped silently: a root whose name has a structure prefix
//!    (it contains `:`, as `faster-log:<name>` does) and that no plugin claims is an `Info`
//!    finding of kind [`FindingKind::NoInspector`]. A root without `:` is the application's
//!    own name for one node, which the core checks like every live node.
//! 3. Each plugin is called at most once per reconstruction (a `--snapshot` check that starts
//!    over after the writer moved reconstructs again), with every root it claims in name order,
//!    after the live nodes were checked and only when the records were replayed (without a
//!    replay there is no recovered state to show it). Its findings join the report in the
//!    order it returns them.
//! 4. A plugin sees the store only through [`StoreView`]: read-only, at the epoch recovery
//!    would reach, and a node's bytes only when they match the CRC32C its reference records.
//!    It must not panic on any bytes (fsck's own invariant 2 depends on it) and leaves
//!    [`Finding::maybe_concurrent`] false: that label is the core's (`--snapshot`).

use std::fmt;

use super::dump;
use super::finding::{Finding, FindingKind, Severity};
use super::load::Inspection;
use crate::NodeId;
use crate::codec::crc32c;

/// A structure's inspector: checks and dumps the nodes the roots with its prefix name.
///
/// `vellum fsck` and `vellum dump` register the plugins of the structures they know
/// (`vellum-faster`'s FasterLog); a library caller passes its own to
/// [`fsck_with`](super::fsck_with), [`load_with`](super::load_with) and
/// [`dump::structures`](super::dump::structures).
///
/// A structure may span many node kinds and several roots with a common prefix: the plugin gets
/// all of its roots at once and reads whatever nodes they lead to.
///
/// # Example
///
/// A plugin for a structure whose roots `counter:<name>` name one 8-byte node holding a
/// little-endian count: it reports a node of another length as a corruption at the root, and
/// dumps the count.
///
/// ```
/// use vellum::inspect::{
///     Finding, FsckOptions, Plugin, Root, StoreView, Unavailable, fsck_with,
/// };
/// use vellum::{Corruption, CorruptionKind};
///
/// struct Counters;
///
/// impl Plugin for Counters {
///     fn structure(&self) -> &str {
///         "counter"
///     }
///
///     fn root_prefix(&self) -> &str {
///         "counter:"
///     }
///
///     fn check(&self, store: &dyn StoreView, roots: &[Root]) -> Vec<Finding> {
///         let mut findings = Vec::new();
///         for root in roots {
///             let Some(id) = root.node() else { continue };
///             // A node that cannot be read is the core's finding already.
///             let Ok(node) = store.read(id) else { continue };
///             if node.bytes.len() != 8 {
///                 let detail = CorruptionKind::Mismatch {
///                     what: "counter length",
///                     expected: 8,
///                     actual: node.bytes.len() as u64,
///                 };
///                 let c = Corruption { file: root.name.clone().into(), offset: 0, kind: detail };
///                 findings.push(Finding::problem(c, Some(id)));
///             }
///         }
///         findings
///     }
///
///     fn dump(&self, store: &dyn StoreView, root: &Root) -> serde_json::Value {
///         let count = root
///             .node()
///             .ok_or(Unavailable::NotLive)
///             .and_then(|id| store.read(id))
///             .ok()
///             .and_then(|n| <[u8; 8]>::try_from(n.bytes.as_slice()).ok())
///             .map(u64::from_le_bytes);
///         serde_json::json!({ "count": count })
///     }
/// }
///
/// # fn main() -> vellum::Result<()> {
/// use vellum::io::OsStorage;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
///
/// let tmp = tempfile::tempdir().map_err(|e| vellum::Error::InvalidArgument(e.to_string()))?;
/// let dir = tmp.path().join("store");
/// let mut options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// options.data.alloc.file_bytes_max = 64 << 20;
/// options.data.window_bytes = 1 << 20;
/// let rt = DurableRuntime::open(&dir, options)?;
/// let mut tx = rt.begin();
/// let id = tx.alloc(1, b"seven")?; // 5 bytes: not a counter
/// tx.set_root("counter:visits", id)?;
/// tx.commit()?;
/// rt.close()?;
///
/// let fsck_options = FsckOptions {
///     file_bytes_max: 64 << 20,
///     window_bytes: 1 << 20,
///     ..FsckOptions::default()
/// };
/// let report = fsck_with(&OsStorage::new(), &dir, &fsck_options, &[&Counters])?;
/// let f = report.problems().next().expect("the short counter");
/// assert_eq!((f.file_name(), f.offset, f.node), ("counter:visits", 0, Some(id)));
/// # Ok(())
/// # }
/// ```
pub trait Plugin {
    /// The structure's name, for people ("FasterLog").
    fn structure(&self) -> &str;

    /// The prefix of the root names it understands, `:` included (`"faster-log:"`).
    fn root_prefix(&self) -> &str;

    /// Checks what `roots` name (every recovered root this plugin claims, in name order) and
    /// returns every problem found, each with the file (the structure's name for the object, as
    /// the structure's own corruption reports give it), offset, node and kind. Byte-level damage
    /// is [`FindingKind::Corruption`] with the structure decoder's [`CorruptionKind`]
    /// (see [`Finding::problem`]).
    ///
    /// [`CorruptionKind`]: crate::CorruptionKind
    fn check(&self, store: &dyn StoreView, roots: &[Root]) -> Vec<Finding>;

    /// What `root` holds, decoded, as JSON (`vellum dump`); it may include what `check` would
    /// report about it.
    fn dump(&self, store: &dyn StoreView, root: &Root) -> serde_json::Value;
}

/// A read-only view of a store as recovery would reconstruct it: its root catalog and the bytes
/// of its live nodes. [`Inspection`] is one; a test can implement it over a map of nodes.
pub trait StoreView {
    /// The epoch the view shows: the epoch recovery would recover.
    fn epoch(&self) -> u64;

    /// The root catalog at that epoch, in name order.
    fn roots(&self) -> Vec<Root>;

    /// The live version of `id` and its bytes, checked against the CRC32C its reference records.
    fn read(&self, id: NodeId) -> Result<LiveNode, Unavailable>;
}

/// One root of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// Its name.
    pub name: String,
    /// The value it names, as stored: a raw [`NodeId`] (not necessarily a valid one).
    pub value: u64,
}

impl Root {
    /// The node it names, if the value is a valid id.
    pub fn node(&self) -> Option<NodeId> {
        NodeId::from_raw(self.value)
    }
}

/// A live node's version as a [`StoreView`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNode {
    /// The node kind its version records (the structure's own code).
    pub kind: u8,
    /// Its bytes, which match the CRC32C its reference records.
    pub bytes: Vec<u8>,
}

/// Why a [`StoreView`] cannot give a node's bytes. The core reports each of these states of a
/// node on its own (`payload_pending`, `slot_outside_files`, `corruption`), so a plugin says only
/// what of its structure it could not check.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unavailable {
    /// No version of the node is live at the view's epoch.
    NotLive,
    /// The delta log carries the node's bytes and its slot does not hold them yet: recovery
    /// writes them back (RV7), but the view does not keep the log's payloads.
    Carried,
    /// The slot cannot be read: its data file is missing or too short, or a read failed.
    Unreadable {
        /// Why.
        error: String,
    },
    /// The slot's bytes do not match the CRC32C the node's reference records.
    ChecksumMismatch {
        /// The reference's CRC32C.
        expected: u32,
        /// The bytes'.
        actual: u32,
    },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NotLive => f.write_str("not live"),
            Unavailable::Carried => f.write_str("its bytes are still carried by the delta log"),
            Unavailable::Unreadable { error } => write!(f, "unreadable: {error}"),
            Unavailable::ChecksumMismatch { expected, actual } => write!(
                f,
                "checksum mismatch: expected {expected:#010x}, got {actual:#010x}"
            ),
        }
    }
}

impl StoreView for Inspection {
    fn epoch(&self) -> u64 {
        self.model.last_epoch
    }

    fn roots(&self) -> Vec<Root> {
        self.model
            .roots
            .iter()
            .map(|(name, &value)| Root {
                name: name.clone(),
                value,
            })
            .collect()
    }

    fn read(&self, id: NodeId) -> Result<LiveNode, Unavailable> {
        let n = dump::node(self, id).map_err(|_| Unavailable::NotLive)?;
        if n.crc_ok {
            return Ok(LiveNode {
                kind: n.kind,
                bytes: n.bytes,
            });
        }
        if n.carried {
            return Err(Unavailable::Carried);
        }
        if let Some(error) = n.error {
            return Err(Unavailable::Unreadable { error });
        }
        if n.bytes.len() < n.len as usize {
            let error = format!(
                "its data file holds {} of its {} bytes",
                n.bytes.len(),
                n.len
            );
            return Err(Unavailable::Unreadable { error });
        }
        Err(Unavailable::ChecksumMismatch {
            expected: n.crc32c,
            actual: crc32c(&n.bytes),
        })
    }
}

/// The structure prefix of a root name: up to and including its first `:`, if it has one.
pub fn structure_prefix(root: &str) -> Option<&str> {
    root.find(':').map(|i| &root[..=i])
}

/// The plugin that claims `root` (invariant 1), if any.
pub fn claimant<'p>(plugins: &[&'p dyn Plugin], root: &str) -> Option<&'p dyn Plugin> {
    claimant_index(plugins, root).map(|i| plugins[i])
}

fn claimant_index(plugins: &[&dyn Plugin], root: &str) -> Option<usize> {
    let mut best: Option<(usize, usize)> = None;
    for (i, p) in plugins.iter().enumerate() {
        let prefix = p.root_prefix();
        let longer = best.is_none_or(|(_, len)| prefix.len() > len);
        if !prefix.is_empty() && root.starts_with(prefix) && longer {
            best = Some((i, prefix.len()));
        }
    }
    best.map(|(i, _)| i)
}

/// Runs every plugin on the roots it claims and reports the structure roots none claims
/// (invariants 2 and 3).
pub(crate) fn check_structures(insp: &mut Inspection, plugins: &[&dyn Plugin]) {
    let roots = insp.roots();
    let mut claimed: Vec<Vec<Root>> = vec![Vec::new(); plugins.len()];
    let mut unclaimed = Vec::new();
    for root in roots {
        match claimant_index(plugins, &root.name) {
            Some(i) => claimed[i].push(root),
            None => unclaimed.push(root),
        }
    }
    for (plugin, roots) in plugins.iter().zip(&claimed) {
        if roots.is_empty() {
            continue;
        }
        let _span = tracing::debug_span!("plugin", structure = plugin.structure()).entered();
        let found = plugin.check(insp, roots);
        insp.findings.items.extend(found);
    }
    for root in unclaimed {
        let Some(prefix) = structure_prefix(&root.name) else {
            continue;
        };
        let kind = FindingKind::NoInspector {
            prefix: prefix.to_owned(),
        };
        let message = format!(
            "no inspector for root {}: the nodes of its structure were checked as nodes \
             (slot and CRC32C) but not decoded",
            root.name
        );
        let path = std::path::PathBuf::from(&root.name);
        insp.findings
            .push(Severity::Info, &path, 0, kind, message)
            .node = root.node();
    }
}
