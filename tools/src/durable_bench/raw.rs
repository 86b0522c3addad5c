//! The raw baseline: how many 4 KiB write+fdatasync rounds this disk does per second, measured
//! again before each cell (this disk's latency drifts by tens of percent over minutes).

use std::path::Path;
use std::time::Duration;

use crate::raw_sync::RawSyncFile;

/// Bytes of each raw write.
const WRITE_BYTES: usize = 4096;
/// Most syncs per measurement; the file holds one write's bytes per sync.
const SYNCS_MAX: usize = 300;
/// Longest a measurement runs.
const TIME_MAX: Duration = Duration::from_secs(1);

/// The file the measurements write.
pub fn create(dir: &Path) -> std::io::Result<RawSyncFile> {
    RawSyncFile::create(dir, WRITE_BYTES, SYNCS_MAX)
}

/// 4 KiB writes at successive offsets, each followed by fdatasync, for [`TIME_MAX`] or
/// [`SYNCS_MAX`] rounds, whichever ends first; the rounds per second.
pub fn syncs_per_sec(raw: &mut RawSyncFile) -> std::io::Result<f64> {
    raw.syncs_per_sec(SYNCS_MAX, TIME_MAX)
}
