//! Counters and timings a runtime exposes, readable as a struct.

use std::sync::atomic::{AtomicU64, Ordering};

/// A copy of the runtime's counters.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::runtime::CommitPolicy;
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let before = rt.stats();
/// let mut tx = rt.begin();
/// tx.alloc(1, &[7; 100])?;
/// tx.commit_with(CommitPolicy::Strict)?;
/// let after = rt.stats();
/// assert_eq!(after.commits - before.commits, 1);
/// assert_eq!(after.node_bytes_written - before.node_bytes_written, 100);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Commits acknowledged.
    pub commits: u64,
    /// Commits refused because another transaction wrote the same node first.
    pub conflicts: u64,
    /// Transactions dropped or aborted without committing.
    pub aborts: u64,
    /// Log `fdatasync` calls (group commit shares them between commits).
    pub log_syncs: u64,
    /// Flushes led (each a commit group: at most one data sync and one log sync).
    pub flushes: u64,
    /// Data-file sync rounds: a flush's (the files holding node bytes its records need durable),
    /// a checkpoint's and a compaction batch's (every data file written since its last sync).
    pub data_syncs: u64,
    /// `fdatasync` calls on data files, over all rounds.
    pub data_file_syncs: u64,
    /// Bytes of node versions written to data files.
    pub node_bytes_written: u64,
    /// Bytes of commit records committed (buffered, then appended to the log by a flush).
    pub log_bytes_appended: u64,
    /// Slots freed by reclamation.
    pub slots_reclaimed: u64,
    /// Snapshots open now.
    pub snapshots_open: u64,
    /// Checkpoints completed.
    pub checkpoints: u64,
    /// Compaction passes completed.
    pub compactions: u64,
    /// Nodes compaction moved to new slots.
    pub nodes_moved: u64,
    /// Bytes of those nodes.
    pub bytes_moved: u64,
    /// Wholly free segments whose blocks went back to the filesystem.
    pub segments_returned: u64,
    /// Duration of the last checkpoint, in microseconds.
    pub checkpoint_last_us: u64,
    /// Duration of the recovery that opened this runtime, in microseconds.
    pub recovery_us: u64,
    /// Commit records replayed by that recovery.
    pub recovery_records: u64,
    /// Offset in the last delta log where that recovery cut a bad tail (0: none).
    pub recovery_tail_cut_offset: u64,
    /// Whether intact frames followed the cut (a torn unsynced batch, or damage: fsck tells).
    pub recovery_tail_cut_followed_by_valid: bool,
    /// Live bytes per size class (bytes of allocated slots).
    pub class_used_bytes: Vec<u64>,
    /// Bytes of segments per size class (allocated or not); minus used bytes, what is dead or free.
    pub class_segment_bytes: Vec<u64>,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) commits: AtomicU64,
    pub(crate) conflicts: AtomicU64,
    pub(crate) aborts: AtomicU64,
    pub(crate) data_syncs: AtomicU64,
    pub(crate) data_file_syncs: AtomicU64,
    pub(crate) flushes: AtomicU64,
    pub(crate) node_bytes_written: AtomicU64,
    pub(crate) log_bytes_appended: AtomicU64,
    pub(crate) slots_reclaimed: AtomicU64,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) compactions: AtomicU64,
    pub(crate) nodes_moved: AtomicU64,
    pub(crate) bytes_moved: AtomicU64,
    pub(crate) segments_returned: AtomicU64,
    pub(crate) checkpoint_last_us: AtomicU64,
    pub(crate) recovery_us: AtomicU64,
    pub(crate) recovery_records: AtomicU64,
    pub(crate) recovery_tail_cut_offset: AtomicU64,
    pub(crate) recovery_tail_cut_followed_by_valid: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
