//! FasterKV: FASTER's hash index and hybrid log as node structures on the runtime. One concept
//! per file:
//! - `hash.rs`: the key hash (XXH3-64, fixed forever: the index is persisted by checkpoints);
//! - `index.rs`: the hash index of cache-line buckets, in 64 KiB chunks with dirty flags;
//! - `overflow.rs`: the overflow-bucket allocator;
//! - `record.rs` (and `record/words.rs`): the record format over bytes and ring words, with the
//!   seqlock of in-place updates (`design/FORMAT.md` §9);
//! - `page.rs`: the page-node format and its walker;
//! - `hlog.rs`: the hybrid log's addresses, page ring, flusher and reads from page nodes;
//! - `ops.rs`: one attempt of each operation, by region;
//! - `session.rs`: sessions: epoch protection, serial numbers, pending operations;
//! - `batch.rs`: a session's operations issued together, their cache misses overlapped;
//! - `functions.rs`: the user's RMW merge;
//! - `options.rs`, `store.rs`: the store's settings and handle;
//! - `store_node.rs`: the node the store's root names (its page nodes).
//!
//! - `cpr.rs`: the checkpoint state machine sessions cross (Concurrent Prefix Recovery);
//! - `checkpoint.rs`, `checkpoint_meta.rs`: taking a checkpoint, and what it records;
//! - `checkpointer.rs`: checkpoints in the background (on request, and by the options' policy);
//! - `recovery.rs`: opening a store from its checkpoint;
//! - `inspect.rs`: the inspection plugin `vellum fsck` and `vellum dump` use.

mod batch;
mod checkpoint;
pub mod checkpoint_meta;
mod checkpointer;
mod cpr;
mod functions;
pub mod hash;
mod hlog;
pub mod index;
pub mod inspect;
mod ops;
mod options;
mod overflow;
pub mod page;
pub mod record;
mod recovery;
mod session;
mod store;
pub mod store_node;

pub use batch::{BUCKET_AHEAD, BatchOp, RECORD_AHEAD};
pub use checkpoint::{CheckpointInfo, SessionCommit};
pub use checkpointer::PendingCheckpoint;
pub use cpr::{CommitPoint, Phase};
pub use functions::{AddU64, Append, Functions};
pub use hlog::LOG_BEGIN;
pub use options::KvOptions;
pub use session::{Completed, OpKind, REFRESH_OPS, Session, SessionStats};
pub use store::{FasterKv, KV_ROOT_PREFIX, KvStats, SESSIONS_MAX};

/// The outcome of an operation.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The key had a value (read: it is in the output; RMW: updated; delete: deleted).
    Found,
    /// The key had no value (RMW: it now has its initial value).
    NotFound,
    /// The key's record is on disk: the operation completes in
    /// [`Session::complete_pending`].
    Pending,
}
