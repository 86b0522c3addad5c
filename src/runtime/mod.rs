//! The durable runtime: transactions, commit, recovery.
//!
//! What exists so far:
//! - `record.rs`: [`CommitRecord`], the body of the delta-log frame that one committed transaction
//!   writes, and the only thing recovery replays. Its format is specified byte by byte in
//!   `design/FORMAT-record.md`.
//!
//! A record lists a transaction's effects as ops: new node versions, updated versions, retired
//! nodes, and root catalog changes. All of them take effect at the record's epoch, which is also
//! the birth of every version it carries. Recovery trusts a record only after
//! [`CommitRecord::decode`] (or [`CommitRecordRef::decode`], which borrows payloads from the frame
//! instead of copying them) has checked every field.

mod record;

pub use record::*;
