//! FasterKV: FASTER's hash index and hybrid log as node structures on the runtime (issue 14, in
//! progress: the index and the record and page formats so far). One concept per file:
//! - `hash.rs`: the key hash (XXH3-64, fixed forever: the index is persisted by checkpoints);
//! - `index.rs`: the hash index of cache-line buckets, in 64 KiB chunks with dirty flags;
//! - `overflow.rs`: the overflow-bucket allocator;
//! - `record.rs` (and `record/words.rs`): the record format over bytes and ring words, with the
//!   seqlock of in-place updates (`design/FORMAT.md` §9);
//! - `page.rs`: the page-node format and its walker.

pub mod hash;
pub mod index;
mod overflow;
pub mod page;
pub mod record;
