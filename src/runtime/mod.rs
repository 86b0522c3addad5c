//! The durable runtime: transactions, commit policies, snapshots, checkpoints and recovery.
//!
//! - [`DurableRuntime`] (`durable.rs`): open or create a store, begin transactions, take
//!   snapshots, sync or wait for durability, checkpoint, read counters;
//! - [`Snapshot`] (`snapshot.rs`): a view at one epoch, borrowed or owned ([`OwnedSnapshot`]),
//!   pinned in the striped registry of `snapshots.rs`;
//! - `durable_wait.rs`: waiting for an epoch to be durable without flushing;
//! - [`WriteTxn`] (`txn.rs`): copy-on-write node versions, retirements and root changes,
//!   committed as a unit under a [`CommitPolicy`], reusing its thread's last buffers
//!   (`spare.rs`);
//! - [`RootClaim`] (`claims.rs`): one owner of a root name per runtime, for structures that
//!   keep in-memory state about their root;
//! - `engine.rs`: commit ordering, group durability, visibility and reclamation;
//! - `group_flush.rs`: one leader flushes a commit group while the others wait;
//! - `reclaim.rs`: freeing what no snapshot can read, on the reclaimer thread;
//! - `recovery/`, `checkpointing.rs` and `compaction.rs`: the protocols of
//!   `design/DURABILITY.md` §6;
//! - `record.rs`: [`CommitRecord`], the body of the delta-log frame one commit writes
//!   (`design/FORMAT.md` §6).

mod checkpointing;
mod claims;
mod compaction;
mod durable;
mod durable_wait;
mod engine;
mod group_flush;
mod options;
mod reclaim;
mod record;
mod recovery;
mod snapshot;
mod snapshots;
mod spare;
mod stats;
mod txn;

pub use claims::RootClaim;
pub use compaction::{CompactProgress, CompactReport};
// The settings and figures of the layers below that a user of the runtime names.
pub use crate::alloc::{
    AllocOptions, ClassSpace, DataFileOptions, EXTENT_UNIT_BYTES, ExtentSpace, LARGE_CLASS,
    REGION_BYTES, SegmentUsage,
};
pub use crate::log::LogOptions;
pub use durable::DurableRuntime;
pub use options::{CommitPolicy, CompactionOptions, RecoveryMode, RuntimeOptions};
pub use record::*;
pub use recovery::{LOCK_FILE, LogTail, RecoveryReport};
pub(crate) use recovery::{StoreFile, classify};
pub use snapshot::{OwnedSnapshot, Snapshot, SnapshotReader};
pub use stats::RuntimeStats;
pub use txn::WriteTxn;
