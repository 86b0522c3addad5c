//! vellum: a copy-on-write persistence substrate.
//!
//! This crate holds the durable runtime's layers. The ones that exist so far:
//! - [`io`]: the storage trait every file operation goes through, with a real implementation and a
//!   fault-injecting one for crash tests;
//! - [`codec`]: explicit little-endian encoding and CRC32C;
//! - [`meta`]: the double-buffered superblock with its root catalog, and the JSON manifest;
//! - [`log`]: the CRC32C-framed delta log with group commit;
//! - [`inspect`]: read-only `fsck` and `dump` of a store's files.
//!
//! Formats are specified byte by byte in `design/FORMAT.md`; the order in which bytes become
//! durable is specified in `design/DURABILITY.md`.

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

pub mod alloc;
pub mod checkpoint;
pub mod codec;
pub mod error;
mod generation;
pub mod inspect;
pub mod io;
pub mod log;
pub mod meta;
pub mod object_table;
pub mod poison;
pub mod resolve;
pub mod runtime;

pub use error::{Corruption, CorruptionKind, Error, IoOp, Result};
