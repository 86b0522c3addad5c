//! Helpers of the delta-log tests: frame bodies that differ by tag, and a replay that keeps
//! every frame.

use std::path::Path;

use vellum::io::OsStorage;
use vellum::log::{Frame, ReplaySummary, replay};

/// A body of `len` bytes that differs for every `tag`.
pub fn body(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(131).wrapping_add(i as u64 * 7) % 251) as u8 + 1)
        .collect()
}

/// Replays the log at `path` on the real filesystem, keeping every valid frame.
pub fn replay_all(path: &Path) -> (Vec<Frame>, ReplaySummary) {
    let mut frames = Vec::new();
    let summary = replay(&OsStorage::new(), path, |f| {
        frames.push(f.clone());
        Ok(())
    })
    .unwrap();
    (frames, summary)
}
