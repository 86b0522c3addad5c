//! The raw baseline: how many 4 KiB write+fdatasync rounds this disk does per second, measured
//! before the first cell and again after each (this disk's latency drifts by tens of percent
//! over minutes, so a cell is compared with the disk as it was on both sides of it).

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

/// A cell's baseline from the raw rates just before and just after it: their harmonic mean, the
/// rate of the mean sync time, so a slow side counts by the time its syncs took.
pub fn around(before: f64, after: f64) -> f64 {
    2.0 / (1.0 / before + 1.0 / after)
}

/// 4 KiB writes at successive offsets, each followed by fdatasync, for [`TIME_MAX`] or
/// [`SYNCS_MAX`] rounds, whichever ends first; the rounds per second.
pub fn syncs_per_sec(raw: &mut RawSyncFile) -> std::io::Result<f64> {
    raw.syncs_per_sec(SYNCS_MAX, TIME_MAX)
}

#[cfg(test)]
mod tests {
    use super::around;

    #[test]
    fn a_cells_baseline_is_the_rate_of_the_mean_sync_time() {
        // 10 ms and 3.33 ms a sync average to 6.67 ms: 150 syncs a second.
        assert_eq!(around(100.0, 300.0), 150.0);
        assert_eq!(around(8000.0, 8000.0), 8000.0);
    }
}
