//! The raw baseline: how many 4 KiB write+fdatasync rounds this disk does per second, measured
//! again before each cell (this disk's latency drifts by tens of percent over minutes).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Bytes of each raw write.
const WRITE_BYTES: usize = 4096;
/// Most syncs per measurement; the file holds one write's bytes per sync.
const SYNCS_MAX: usize = 300;
/// Longest a measurement runs.
const TIME_MAX: Duration = Duration::from_secs(1);

/// A file written with zeros and synced ahead, so each measured sync overwrites allocated
/// blocks and changes no metadata, like a commit into the log's preallocated space.
#[derive(Debug)]
pub struct RawSyncFile {
    file: File,
    path: PathBuf,
}

impl RawSyncFile {
    /// Creates the file `raw-sync` in `dir`.
    pub fn create(dir: &Path) -> std::io::Result<RawSyncFile> {
        let path = dir.join("raw-sync");
        let file = File::create(&path)?;
        file.write_all_at(&vec![0u8; SYNCS_MAX * WRITE_BYTES], 0)?;
        file.sync_all()?;
        Ok(RawSyncFile { file, path })
    }

    /// Writes 4 KiB at successive offsets, each followed by fdatasync, for [`TIME_MAX`] or
    /// [`SYNCS_MAX`] rounds, whichever ends first; returns the rounds per second.
    pub fn syncs_per_sec(&self) -> std::io::Result<f64> {
        let buf = [0x5au8; WRITE_BYTES];
        let start = Instant::now();
        let mut syncs = 0;
        while syncs < SYNCS_MAX && start.elapsed() < TIME_MAX {
            self.file.write_all_at(&buf, (syncs * WRITE_BYTES) as u64)?;
            self.file.sync_data()?;
            syncs += 1;
        }
        Ok(syncs as f64 / start.elapsed().as_secs_f64())
    }

    /// Closes and deletes the file.
    pub fn remove(self) -> std::io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
    }
}
