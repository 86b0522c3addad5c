//! vellum: a copy-on-write persistence substrate for data structures.
//!
//! A host structure (a log, a hash index, a B-tree) keeps its state as *nodes*: byte strings
//! named by stable [`NodeId`]s. It changes them in transactions ([`runtime::WriteTxn`]) that
//! write new versions copy-on-write and commit under a [`runtime::CommitPolicy`] (STRICT,
//! BALANCED or EVENTUAL), reads them through snapshots pinned at a commit epoch, and finds its
//! entry points through named roots. [`runtime::DurableRuntime`] makes that durable: a delta log
//! with group commit, data files of size-classed slots, object-table checkpoints, epoch-based
//! reclamation, online compaction, and recovery that refuses rather than guesses.
//!
//! The public modules:
//! - [`runtime`]: the store: open or create it, transactions, snapshots, roots, checkpoints,
//!   compaction, statistics, what recovery found;
//! - [`io`]: the storage trait every file operation goes through, and the real filesystem's
//!   implementation (`FaultStorage`, the fault-injecting one the crash tests use, is behind the
//!   `fault-injection` feature);
//! - [`inspect`]: read-only `fsck` and `dump` of a store's files, and the [`inspect::Plugin`]
//!   trait through which a structure's crate checks and dumps the nodes its roots name;
//! - [`codec`]: CRC32C and explicit little-endian encoding, for structures' own formats;
//! - [`words`]: large zeroed arrays of atomic words on huge pages, for structures' in-memory
//!   state (FasterKV's index and page ring);
//! - [`Error`] and its parts: every failure, with corruption reported as file, offset and kind.
//!
//! The layers below the runtime (`log`, `meta`, `checkpoint`, `alloc`, `object_table`,
//! `resolve`) are internal; the `internals` feature makes them public for vellum's own tests,
//! benchmarks and tools, not as a stable API.
//!
//! Formats are specified byte by byte in `design/FORMAT.md`; the order in which bytes become
//! durable is specified in `design/DURABILITY.md`.
//!
//! # Example
//!
//! ```
//! use vellum::runtime::{CommitPolicy, DurableRuntime, RuntimeOptions};
//!
//! # fn main() -> vellum::Result<()> {
//! # let dir = tempfile::tempdir().map_err(|e| vellum::Error::InvalidArgument(e.to_string()))?;
//! let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
//! let rt = DurableRuntime::open(dir.path(), options.clone())?;
//! let mut tx = rt.begin();
//! let id = tx.alloc(1, b"hello")?;
//! tx.set_root("greeting", id)?;
//! tx.commit_with(CommitPolicy::Strict)?;
//! rt.close()?;
//!
//! let rt = DurableRuntime::open(dir.path(), options)?;
//! let snapshot = rt.snapshot();
//! let id = snapshot.root("greeting").expect("the root survives a reopen");
//! assert_eq!(snapshot.read(id)?.as_deref(), Some(&b"hello"[..]));
//! # Ok(())
//! # }
//! ```

#![deny(unsafe_code)]
// Library code never unwraps (bytes come from disk or callers) and never prints (it uses
// `tracing`); unit tests may unwrap.
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

/// Declares an internal layer: public with the `internals` feature (for vellum's own tests,
/// benchmarks and tools), crate-private otherwise. Without the feature, items only the tests
/// and tools use are dead code, which is expected.
macro_rules! internal_layer {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[cfg(feature = "internals")]
        pub mod $name;
        $(#[$doc])*
        #[cfg(not(feature = "internals"))]
        #[allow(
            dead_code,
            unused_imports,
            reason = "items only vellum's tests and tools use, through `internals`"
        )]
        pub(crate) mod $name;
    };
}

internal_layer!(
    /// Size classes, segments, data files and their mapped windows.
    alloc
);
internal_layer!(
    /// The object-table checkpoint file.
    checkpoint
);
pub mod codec;
pub mod error;
mod generation;
pub mod inspect;
pub mod io;
internal_layer!(
    /// The CRC32C-framed delta log with group commit.
    log
);
internal_layer!(
    /// The double-buffered superblock with its root catalog, and the JSON manifest.
    meta
);
internal_layer!(
    /// NodeIds, and the sharded table mapping them to node versions.
    object_table
);
internal_layer!(
    /// The sticky failure state of a component whose sync failed.
    poison
);
internal_layer!(
    /// NodeId to bytes in one inlined fast path.
    resolve
);
pub mod runtime;
pub mod words;

pub use error::{Corruption, CorruptionKind, Error, IoOp, Result};

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
pub use object_table::{NodeId, ParseNodeIdError};
