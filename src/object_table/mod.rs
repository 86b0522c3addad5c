//! The object table: stable NodeIds mapped to node versions.
//!
//! - [`NodeId`]: shard, handle and ABA tag in 64 bits; no id is ever issued twice (`node_id.rs`);
//! - [`ObjectTable`]: 64 shards of entries in chunks that never move, lock-free reads through a
//!   per-entry seqlock, lock-free snapshot reads of older versions under an epoch guard
//!   (`table.rs`, `slot.rs`, `older.rs`).

mod id_hash;
mod node_id;
mod older;
mod slot;
mod table;
mod version;

pub(crate) use id_hash::{IdMap, IdSet};
pub use node_id::{HANDLE_MAX, NodeId, ParseNodeIdError, SHARDS, TAG_MAX, next_tag};
pub use slot::{EntryState, EntryView};
pub use table::ObjectTable;
pub use version::Version;
