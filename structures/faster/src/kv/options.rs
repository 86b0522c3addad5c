//! Settings of a [`FasterKv`](super::FasterKv): the index's size and the hybrid log's memory.

use std::time::Duration;

use vellum::runtime::CommitPolicy;

use super::index::IndexOptions;
use super::page::{PAGE_BYTES_MAX, PAGE_BYTES_MIN};
use crate::{Error, Result};

/// Settings of a FasterKV store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvOptions {
    /// The hash index: main buckets (a power of two) and the overflow-bucket limit.
    pub index: IndexOptions,
    /// Bytes of a hybrid-log page: a power of two from 4 KiB to 32 MiB. Each page is written
    /// as one runtime node once the read-only boundary passes it; a record never crosses a
    /// page, so the page bounds a record's size. Default 4 MiB.
    pub page_bytes: u32,
    /// Bytes of log held in memory (the page ring): at least two pages. Records below the
    /// in-memory part are read from their page nodes. Default 256 MiB.
    pub log_memory_bytes_max: u64,
    /// Share of the in-memory pages, in percent, that is mutable (updated in place); the rest
    /// is read-only and copied on update. At least one page is mutable and at least one is
    /// read-only. Default 90.
    pub mutable_percent: u8,
    /// The commit policy of a checkpoint's transaction (and of recovery's): BALANCED by
    /// default, so a checkpoint is durable when `FasterKv::checkpoint` returns. Under EVENTUAL
    /// it is durable after the runtime's next sync.
    pub checkpoint_policy: CommitPolicy,
    /// The background checkpointer takes a checkpoint once this long passed since the last
    /// one. Default `None` (checkpoints only on request, and at `close`).
    pub checkpoint_interval: Option<Duration>,
    /// The background checkpointer takes a checkpoint once the log grew this many bytes since
    /// the last one. Default `None`.
    pub checkpoint_log_bytes: Option<u64>,
}

impl Default for KvOptions {
    fn default() -> Self {
        KvOptions {
            index: IndexOptions::default(),
            page_bytes: 4 << 20,
            log_memory_bytes_max: 256 << 20,
            mutable_percent: 90,
            checkpoint_policy: CommitPolicy::Balanced,
            checkpoint_interval: None,
            checkpoint_log_bytes: None,
        }
    }
}

impl KvOptions {
    /// Pages held in memory.
    pub fn memory_pages(&self) -> u64 {
        self.log_memory_bytes_max / u64::from(self.page_bytes.max(1))
    }

    /// Of those, the pages updated in place: at least one, and at least one fewer than all.
    pub fn mutable_pages(&self) -> u64 {
        let pages = self.memory_pages();
        (pages * u64::from(self.mutable_percent) / 100).clamp(1, pages.saturating_sub(1).max(1))
    }

    /// Checks every field; the error names the field and the accepted range.
    pub fn validate(&self) -> Result<()> {
        let p = self.page_bytes;
        if !p.is_power_of_two() || !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&p) {
            return Err(Error::InvalidArgument(format!(
                "page_bytes {p} is not a power of two from {PAGE_BYTES_MIN} to {PAGE_BYTES_MAX}"
            )));
        }
        if self.memory_pages() < 2 {
            return Err(Error::InvalidArgument(format!(
                "log_memory_bytes_max {} holds fewer than two pages of {p} bytes",
                self.log_memory_bytes_max
            )));
        }
        if !(1..=99).contains(&self.mutable_percent) {
            return Err(Error::InvalidArgument(format!(
                "mutable_percent {} is not within 1..=99",
                self.mutable_percent
            )));
        }
        // The ring's slot count is an index into memory; a budget past it is refused here,
        // not by a failed allocation.
        if self.memory_pages() > 1 << 20 {
            return Err(Error::InvalidArgument(format!(
                "log_memory_bytes_max {} holds more than 2^20 pages",
                self.log_memory_bytes_max
            )));
        }
        Ok(())
    }
}
