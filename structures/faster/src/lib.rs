//! FASTER-style structures on the vellum runtime.
//!
//! [`FasterLog`] is a durable, concurrent, recoverable append-only log. Its parts, one concept per
//! file:
//! - `epoch.rs`: LightEpoch-style protection with actions deferred until every thread has left
//!   the epoch they were registered in;
//! - `entry.rs`: the on-page entry format (length + CRC32C header, filler marker);
//! - `meta.rs`: the metadata node a root names, which recovery starts from;
//! - `ring.rs`: the in-memory page ring;
//! - `log.rs`: reservation, publication, commit, truncation and recovery;
//! - `iter.rs`: scan and tailing iterators.
//!
//! Formats: `design/FORMAT.md` §8; the commit path: `design/DURABILITY.md` §7.

#![deny(unsafe_code)]
#![warn(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod entry;
pub mod epoch;
mod error;
mod iter;
mod log;
pub mod meta;
mod options;
mod ring;

pub use error::{Error, Result};
pub use iter::{LogEntry, ScanIter, TailIter};
pub use log::{FasterLog, ROOT_PREFIX};
pub use options::FasterLogOptions;
