//! The crate's error type.
//!
//! Errors are layered: I/O failures name the operation and the path; corruption names the file,
//! the byte offset and what was wrong, so `fsck` can report it without parsing strings; a runtime
//! whose durability can no longer be guaranteed (a failed sync) reports `Poisoned` for every later
//! write.

use std::fmt;
use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error vellum returns.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::Error;
/// let rt = DurableRuntime::open(dir.path(), options.clone())?;
/// let mut tx = rt.begin();
/// let id = tx.alloc(1, b"short-lived")?;
/// tx.commit()?;
/// let mut tx = rt.begin();
/// tx.retire(id)?;
/// tx.commit()?;
/// // A retired node's id is stale: it never reaches another node's bytes.
/// assert!(matches!(rt.read(id), Err(Error::NodeNotFound { id: stale, .. }) if stale == id));
/// // A second open of a store in use is refused.
/// assert!(matches!(DurableRuntime::open(dir.path(), options), Err(Error::Locked { .. })));
/// # Ok(())
/// # }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A storage operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation that failed.
        op: IoOp,
        /// The file or directory it was applied to.
        path: PathBuf,
        /// The operating system's (or the fault layer's) error.
        #[source]
        source: std::io::Error,
    },
    /// Bytes read from disk are not what vellum wrote.
    #[error(transparent)]
    Corruption(Box<Corruption>),
    /// An earlier sync failed; the state on disk is unknown, so writes are refused. Reads go on.
    #[error("poisoned: an earlier sync failed ({cause}); writes are refused until reopen")]
    Poisoned {
        /// What failed first.
        cause: String,
    },
    /// The directory is locked by another open store.
    #[error("{path} is locked by another process or handle")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// The id does not name a node the operation can use: never issued, stale (its handle was
    /// freed, so the tag no longer matches), not committed yet, or retired.
    #[error("node {id}: {reason}")]
    NodeNotFound {
        /// The id given.
        id: crate::object_table::NodeId,
        /// Why it was refused.
        reason: &'static str,
    },
    /// Another transaction committed a write to (or retired) the same node first; nothing of this
    /// transaction was applied.
    #[error("conflict on node {id}: another transaction committed it first")]
    Conflict {
        /// The node both transactions wrote.
        id: crate::object_table::NodeId,
    },
    /// A caller passed an argument vellum cannot accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// No store exists at the directory, and the caller did not ask to create one
    /// (`RuntimeOptions::create_if_missing`). The directory holds no store file at all: a
    /// directory with store files but no superblock is damage, reported as
    /// [`Error::Corruption`] naming the missing `superblock`.
    #[error("no store in {}: it holds no store files (set create_if_missing to create one)", dir.display())]
    NoStore {
        /// The directory.
        dir: PathBuf,
    },
    /// The path given as a store's directory exists but is not a directory.
    #[error("{} is not a directory", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// [`crate::runtime::DurableRuntime::claim_root`]: another handle in this runtime holds the
    /// claim of this root name (a structure open twice, e.g. two `FasterLog`s on one log). The
    /// claim is released when that handle's `RootClaim` drops.
    #[error("root {name:?} is claimed by another handle in this runtime")]
    RootClaimed {
        /// The root name.
        name: String,
    },
}

impl Error {
    /// Builds an [`Error::Io`].
    pub fn io(op: IoOp, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// Builds an [`Error::Corruption`].
    pub fn corruption(file: impl Into<PathBuf>, offset: u64, kind: CorruptionKind) -> Self {
        Error::Corruption(Box::new(Corruption {
            file: file.into(),
            offset,
            kind,
        }))
    }

    /// The corruption report, if this is one.
    pub fn as_corruption(&self) -> Option<&Corruption> {
        match self {
            Error::Corruption(c) => Some(c),
            _ => None,
        }
    }

    /// True when the error is an I/O error caused by a full device (ENOSPC or EDQUOT).
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::Io { source, .. } => is_no_space(source),
            _ => false,
        }
    }
}

/// True when an I/O error means the device is full.
pub(crate) fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

/// Where and how stored bytes were found to be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("corruption in {} at offset {offset}: {kind}", file.display())]
pub struct Corruption {
    /// The file holding the bad bytes.
    pub file: PathBuf,
    /// Byte offset in that file of the structure that failed to decode.
    pub offset: u64,
    /// What was wrong.
    pub kind: CorruptionKind,
}

/// What was wrong with stored bytes.
///
/// It serializes (for `vellum fsck --json`) as an object whose `type` names the variant in
/// snake case, beside the variant's fields.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CorruptionKind {
    /// The stored CRC32C does not match the one computed over the bytes.
    ChecksumMismatch {
        /// The checksum stored on disk.
        expected: u32,
        /// The checksum of the bytes as read.
        actual: u32,
    },
    /// The magic bytes identifying the structure are wrong.
    BadMagic {
        /// The first eight bytes found, little-endian.
        found: u64,
    },
    /// The structure declares a format version this build cannot read.
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// Fewer bytes exist than the structure needs.
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// A field holds a value outside its allowed range.
    InvalidField {
        /// The field's name as written in `design/FORMAT.md`.
        field: &'static str,
        /// The value found (lengths, counts and ids are reported as integers).
        value: u64,
    },
    /// A structured document (the JSON manifest) does not match its schema.
    InvalidDocument {
        /// What the decoder rejected.
        reason: String,
    },
    /// A structure refers to another that does not match it (wrong sequence, length or checksum).
    Mismatch {
        /// What was compared, as named in `design/FORMAT.md`.
        what: &'static str,
        /// The value the referring structure expects.
        expected: u64,
        /// The value found.
        actual: u64,
    },
    /// A file the store's metadata names does not exist.
    MissingFile,
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorruptionKind::ChecksumMismatch { expected, actual } => {
                write!(
                    f,
                    "checksum mismatch: stored {expected:#010x}, computed {actual:#010x}"
                )
            }
            CorruptionKind::BadMagic { found } => write!(f, "bad magic {found:#018x}"),
            CorruptionKind::UnsupportedVersion { found } => {
                write!(f, "unsupported format version {found}")
            }
            CorruptionKind::Truncated { needed, available } => {
                write!(f, "truncated: need {needed} bytes, have {available}")
            }
            CorruptionKind::InvalidField { field, value } => {
                write!(f, "field {field} has invalid value {value}")
            }
            CorruptionKind::InvalidDocument { reason } => write!(f, "invalid document: {reason}"),
            CorruptionKind::Mismatch {
                what,
                expected,
                actual,
            } => write!(f, "{what} mismatch: expected {expected}, found {actual}"),
            CorruptionKind::MissingFile => write!(f, "file is missing"),
        }
    }
}

/// The storage operation an [`Error::Io`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoOp {
    /// Creating a file.
    Create,
    /// Opening an existing file.
    Open,
    /// Reading at an offset.
    Read,
    /// Writing at an offset.
    Write,
    /// Changing a file's length.
    SetLen,
    /// Reserving blocks for a file range.
    Allocate,
    /// Returning a file range to the filesystem.
    PunchHole,
    /// Syncing file data (`fdatasync`).
    SyncData,
    /// Syncing file data and metadata (`fsync`).
    SyncAll,
    /// Renaming a file.
    Rename,
    /// Removing a file.
    Remove,
    /// Syncing a directory's entries.
    SyncDir,
    /// Listing a directory.
    List,
    /// Creating a directory.
    CreateDir,
    /// Taking an exclusive lock.
    Lock,
    /// Mapping a window of a file.
    Map,
    /// Flushing a mapped window.
    Flush,
    /// Reading a file's metadata.
    Stat,
}

impl fmt::Display for IoOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            IoOp::Create => "create",
            IoOp::Open => "open",
            IoOp::Read => "read",
            IoOp::Write => "write",
            IoOp::SetLen => "set_len",
            IoOp::Allocate => "allocate",
            IoOp::PunchHole => "punch_hole",
            IoOp::SyncData => "sync_data",
            IoOp::SyncAll => "sync_all",
            IoOp::Rename => "rename",
            IoOp::Remove => "remove",
            IoOp::SyncDir => "sync_dir",
            IoOp::List => "list",
            IoOp::CreateDir => "create_dir",
            IoOp::Lock => "lock",
            IoOp::Map => "map",
            IoOp::Flush => "flush",
            IoOp::Stat => "stat",
        };
        f.write_str(s)
    }
}
