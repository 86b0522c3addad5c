//! The raw baseline the benches measure beside their figures: write+fdatasync rounds on a file
//! that was written and synced ahead, so each measured sync overwrites written blocks and changes
//! no metadata, like a commit into the log's zeroed-ahead space.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A file of `slots` writes of `write_bytes`, written with zeros and synced ahead.
#[derive(Debug)]
pub struct RawSyncFile {
    file: File,
    path: PathBuf,
    write_bytes: usize,
    slots: usize,
    next: usize,
}

impl RawSyncFile {
    /// Creates `raw-sync` in `dir` for rounds of `write_bytes` each, `slots` of them before the
    /// rounds wrap to the file's start.
    pub fn create(dir: &Path, write_bytes: usize, slots: usize) -> std::io::Result<RawSyncFile> {
        let path = dir.join("raw-sync");
        let file = File::create(&path)?;
        file.write_all_at(&vec![0u8; slots.max(1) * write_bytes], 0)?;
        file.sync_all()?;
        Ok(RawSyncFile {
            file,
            path,
            write_bytes,
            slots: slots.max(1),
            next: 0,
        })
    }

    /// One write at the next slot, then fdatasync; its latency in µs.
    pub fn round_us(&mut self) -> std::io::Result<f64> {
        let buf = vec![0x5au8; self.write_bytes];
        let at = (self.next % self.slots * self.write_bytes) as u64;
        self.next += 1;
        let t = Instant::now();
        self.file.write_all_at(&buf, at)?;
        self.file.sync_data()?;
        Ok(t.elapsed().as_secs_f64() * 1e6)
    }

    /// Rounds until `rounds_max` of them or `time_max` has passed, whichever comes first; the
    /// rounds per second.
    pub fn syncs_per_sec(&mut self, rounds_max: usize, time_max: Duration) -> std::io::Result<f64> {
        let start = Instant::now();
        let mut rounds = 0;
        while rounds < rounds_max && start.elapsed() < time_max {
            self.round_us()?;
            rounds += 1;
        }
        Ok(rounds as f64 / start.elapsed().as_secs_f64())
    }

    /// Closes and deletes the file.
    pub fn remove(self) -> std::io::Result<()> {
        drop(self.file);
        std::fs::remove_file(&self.path)
    }
}
