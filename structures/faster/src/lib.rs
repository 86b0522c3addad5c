//! FASTER-style structures on the vellum runtime.
//!
//! [`FasterLog`] is a durable, concurrent, recoverable append-only log. Its parts, one concept per
//! file:
//! - `epoch.rs`: LightEpoch-style protection with actions deferred until every thread has left
//!   the epoch they were registered in;
//! - `entry.rs`: the on-page entry format (length + CRC32C header, filler marker);
//! - `extent.rs`: a page's extents and their encoding;
//! - `meta.rs`: the metadata node a root names, which recovery starts from;
//! - `chunk.rs`: chunk nodes, the extent lists of complete pages out of the metadata node;
//! - `table.rs`: the page table a commit and a truncation change, in memory and as chunks;
//! - `ring.rs`: the in-memory page ring;
//! - `log.rs`: reservation, publication, commit, truncation and recovery;
//! - `iter.rs`: scan and tailing iterators;
//! - `inspect.rs`: the inspection plugin through which `vellum fsck` and `vellum dump` check and
//!   show a log's nodes ([`inspect::FasterLogPlugin`]).
//!
//! Formats: `design/FORMAT.md` §8; the commit path: `design/DURABILITY.md` §7.

#![forbid(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod chunk;
pub mod entry;
pub mod epoch;
mod error;
mod extent;
pub mod inspect;
mod iter;
pub mod kv;
mod log;
pub mod meta;
mod options;
mod ring;
mod root_name;
mod table;

pub use error::{Error, Result};
pub use iter::{LogEntry, ScanIter, TailIter};
pub use log::{FasterLog, ROOT_PREFIX};
pub use options::FasterLogOptions;
