//! Runtime settings, with defaults and validation.

use std::time::Duration;

use crate::alloc::DataFileOptions;
use crate::error::{Error, Result};
use crate::log::LogOptions;

/// When a commit is acknowledged (see `design/DURABILITY.md` §6 for the numbered steps).
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::runtime::CommitPolicy;
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let mut tx = rt.begin();
/// tx.alloc(1, b"must not be lost")?;
/// let strict = tx.commit_with(CommitPolicy::Strict)?;
/// assert!(rt.durable_epoch() >= strict, "durable when it returns");
/// let mut tx = rt.begin();
/// tx.alloc(1, b"may be lost in a crash, with everything after it")?;
/// let eventual = tx.commit_with(CommitPolicy::Eventual)?;
/// // Visible at once; durable after the next flush, which `sync` forces.
/// assert!(rt.visible_epoch() >= eventual);
/// assert!(rt.sync()? >= eventual);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitPolicy {
    /// Node bytes are made durable in the data files, then the commit record is appended and the
    /// log synced; then the commit returns.
    Strict,
    /// Nodes up to `balanced_payload_bytes_max` travel inside the commit record, so a small commit
    /// costs one log sync; larger nodes are made durable in the data files first.
    #[default]
    Balanced,
    /// The commit returns once it is published in memory; a background flusher makes commits
    /// durable within `eventual_flush_interval`. After a crash the state is a prefix of the commit
    /// order.
    Eventual,
}

/// Settings of compaction (`design/DURABILITY.md` §6, M1–M6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionOptions {
    /// How often the background thread runs a pass (`None`: only on request). Default 10 s.
    pub interval: Option<Duration>,
    /// Least share of free slots, in percent, that makes a segment a victim. Default 50.
    pub dead_percent_min: u8,
    /// Most bytes of live slots one pass moves. Default 64 MiB.
    pub pass_bytes_max: u64,
    /// Nodes moved per commit. Default 256.
    pub batch_nodes: usize,
    /// Most bytes moved per second (a pass sleeps between batches to stay under it), so
    /// compaction's writes and syncs leave the disk to commits. `None`: unthrottled. Default
    /// 16 MiB/s.
    pub bytes_per_sec_max: Option<u64>,
}

impl Default for CompactionOptions {
    fn default() -> Self {
        CompactionOptions {
            interval: Some(Duration::from_secs(10)),
            dead_percent_min: 50,
            pass_bytes_max: 64 << 20,
            batch_nodes: 256,
            bytes_per_sec_max: Some(16 << 20),
        }
    }
}

impl CompactionOptions {
    /// A full compaction: every segment the live nodes do not need is a victim, with no byte
    /// budget and no throttle.
    pub fn full() -> Self {
        CompactionOptions {
            interval: None,
            dead_percent_min: 0,
            pass_bytes_max: u64::MAX,
            batch_nodes: 1024,
            bytes_per_sec_max: None,
        }
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.dead_percent_min > 100 {
            return Err(Error::InvalidArgument(format!(
                "compaction.dead_percent_min must be at most 100, got {}",
                self.dead_percent_min
            )));
        }
        if self.batch_nodes == 0 || self.batch_nodes > 65_536 {
            return Err(Error::InvalidArgument(format!(
                "compaction.batch_nodes must be within 1..=65536, got {}",
                self.batch_nodes
            )));
        }
        if self.interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidArgument(
                "compaction.interval must not be zero".into(),
            ));
        }
        if self.bytes_per_sec_max == Some(0) {
            return Err(Error::InvalidArgument(
                "compaction.bytes_per_sec_max must not be zero (use None for no throttle)".into(),
            ));
        }
        Ok(())
    }
}

/// What recovery does when the open delta log holds damage that later frames prove was durable
/// (`design/DURABILITY.md` §4, "Torn tail or damage").
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::runtime::{LogTail, RecoveryMode};
/// rt_close(DurableRuntime::open(dir.path(), options.clone())?)?;
/// // `Strict`, the default, refuses a log whose durable frames are damaged; an operator who
/// // accepts losing them opens with `TruncateDamagedLog` and reads what was dropped.
/// let options = RuntimeOptions { recovery: RecoveryMode::TruncateDamagedLog, ..options };
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// assert_eq!(rt.recovery_report().log_tail, LogTail::Sealed, "a clean close drops nothing");
/// # fn rt_close(rt: DurableRuntime) -> vellum::Result<()> { rt.close() }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Refuse to open: the open fails with [`crate::Error::Corruption`] naming the log file, the
    /// damaged frame's offset and what is wrong with it, and the log is left as it is, so the
    /// evidence survives for `vellum fsck` and for a salvage. The default.
    #[default]
    Strict,
    /// Salvage: cut the log at the damage, as a torn tail is cut, dropping the damaged frame and
    /// every frame after it (acknowledged commits among them), and open the store as of the last
    /// commit before the damage. What was dropped is reported, exactly, by
    /// [`super::DurableRuntime::recovery_report`] (and logged). Only for a store that cannot be
    /// restored otherwise: commits that were acknowledged are lost.
    TruncateDamagedLog,
}

/// Settings of a [`super::DurableRuntime`].
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use std::time::Duration;
/// use vellum::runtime::CommitPolicy;
/// let options = RuntimeOptions {
///     // EVENTUAL commits return at once; the flusher makes them durable within 2 ms.
///     policy: CommitPolicy::Eventual,
///     eventual_flush_interval: Duration::from_millis(2),
///     // Checkpoint after 16 MiB of log instead of the default.
///     checkpoint_log_bytes: 16 << 20,
///     ..options
/// };
/// options.validate()?;
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// assert_eq!(rt.policy(), CommitPolicy::Eventual);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Create a new store when the directory holds none (it is missing, empty, or holds only
    /// files that are not a store's). Default `false`: opening a directory without a store fails
    /// with [`crate::Error::NoStore`], so a typo or a lost store never turns into an empty one.
    /// A directory holding store files but no superblock is never created over: it is damage.
    pub create_if_missing: bool,
    /// What recovery does about damage in the open delta log. Default [`RecoveryMode::Strict`].
    pub recovery: RecoveryMode,
    /// The policy of commits that do not name one.
    pub policy: CommitPolicy,
    /// Largest node that BALANCED (and EVENTUAL) commits carry inside the log record. Default 4 KiB.
    pub balanced_payload_bytes_max: usize,
    /// Most node bytes one commit record carries. A transaction whose small nodes hold more
    /// carries none of them: their bytes are synced in their data files instead (one data sync
    /// for the flush, as under STRICT), so a large transaction (a checkpoint of thousands of
    /// index chunks, say) writes its bytes once instead of twice, its record stays small, and it
    /// stops keeping in-memory copies of them past this many bytes. Default 1 MiB; at least
    /// `balanced_payload_bytes_max`, at most 32 MiB.
    pub record_payload_bytes_max: usize,
    /// How long an EVENTUAL commit may stay volatile while commits return: the background
    /// flusher makes commits durable this often, and an EVENTUAL commit that finds the oldest
    /// volatile one older than this flushes before it returns (so a commit that returns is never
    /// preceded by a volatile one older than this). Default 10 ms.
    pub eventual_flush_interval: Duration,
    /// Most bytes of commit records waiting in memory for a flush: an EVENTUAL commit that finds
    /// more flushes before it returns, so a burst of EVENTUAL commits cannot buffer without
    /// bound. Default 64 MiB; at least 1 MiB.
    pub eventual_buffer_bytes_max: u64,
    /// Log bytes since the last checkpoint that trigger a new one. Default 64 MiB.
    pub checkpoint_log_bytes: u64,
    /// Time since the last checkpoint that triggers a new one (`None`: only by log bytes or on
    /// request). Default `None`.
    pub checkpoint_interval: Option<Duration>,
    /// Background compaction.
    pub compaction: CompactionOptions,
    /// Data files and mapped windows.
    pub data: DataFileOptions,
    /// Delta log.
    pub log: LogOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            create_if_missing: false,
            recovery: RecoveryMode::default(),
            policy: CommitPolicy::default(),
            balanced_payload_bytes_max: 4 << 10,
            record_payload_bytes_max: 1 << 20,
            eventual_flush_interval: Duration::from_millis(10),
            eventual_buffer_bytes_max: 64 << 20,
            checkpoint_log_bytes: 64 << 20,
            checkpoint_interval: None,
            compaction: CompactionOptions::default(),
            data: DataFileOptions::default(),
            log: LogOptions::default(),
        }
    }
}

impl RuntimeOptions {
    /// Checks every setting; the error names the one that is wrong.
    pub fn validate(&self) -> Result<()> {
        self.data.validate()?;
        self.log.validate()?;
        if self.balanced_payload_bytes_max > (1 << 20) {
            return Err(Error::InvalidArgument(format!(
                "balanced_payload_bytes_max must be at most 1 MiB, got {}",
                self.balanced_payload_bytes_max
            )));
        }
        if self.record_payload_bytes_max < self.balanced_payload_bytes_max
            || self.record_payload_bytes_max > (32 << 20)
        {
            return Err(Error::InvalidArgument(format!(
                "record_payload_bytes_max must be within balanced_payload_bytes_max ({}) ..= 32 \
                 MiB, got {}",
                self.balanced_payload_bytes_max, self.record_payload_bytes_max
            )));
        }
        if self.eventual_flush_interval.is_zero()
            || self.eventual_flush_interval > Duration::from_secs(60)
        {
            return Err(Error::InvalidArgument(format!(
                "eventual_flush_interval must be within (0, 60 s], got {:?}",
                self.eventual_flush_interval
            )));
        }
        if self.eventual_buffer_bytes_max < (1 << 20) {
            return Err(Error::InvalidArgument(format!(
                "eventual_buffer_bytes_max must be at least 1 MiB, got {}",
                self.eventual_buffer_bytes_max
            )));
        }
        if self.checkpoint_log_bytes < (1 << 20) {
            return Err(Error::InvalidArgument(format!(
                "checkpoint_log_bytes must be at least 1 MiB, got {}",
                self.checkpoint_log_bytes
            )));
        }
        self.compaction.validate()?;
        if self.checkpoint_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::InvalidArgument(
                "checkpoint_interval must not be zero".into(),
            ));
        }
        Ok(())
    }
}
