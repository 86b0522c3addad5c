//! Zeros written ahead of the log's frames (`LogOptions::zero_ahead_bytes`): exact amounts (no
//! byte zeroed twice), never past the preallocated blocks (which end on a whole 4 KiB block), none when turned off, the file length
//! unchanged, across a rotation, and a reopened log still ends at its last frame.

use std::path::Path;
use std::sync::Arc;

use vellum::io::{OsStorage, Storage};
use vellum::log::{DeltaLog, LOG_HEADER_BYTES, LogOptions, frame_bytes, log_file_name, replay};

const HEADER: u64 = LOG_HEADER_BYTES as u64;
const BODY_BYTES: usize = 1000;

fn os() -> Arc<dyn Storage> {
    Arc::new(OsStorage::new())
}

fn options(preallocate_bytes: u64, zero_ahead_bytes: u64) -> LogOptions {
    LogOptions {
        preallocate_bytes,
        zero_ahead_bytes,
        ..LogOptions::default()
    }
}

fn body(tag: u64) -> Vec<u8> {
    (0..BODY_BYTES)
        .map(|i| (tag.wrapping_mul(31).wrapping_add(i as u64) % 251) as u8 + 1)
        .collect()
}

/// The file bytes in `[from, to)`.
fn file_bytes(path: &Path, from: u64, to: u64) -> Vec<u8> {
    let all = std::fs::read(path).unwrap();
    all[from as usize..to as usize].to_vec()
}

#[test]
fn zeros_go_ahead_in_steps_and_frames_replay_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = 64 << 10;
    let log = DeltaLog::create(os(), dir.path(), 1, 0, options(1 << 20, ahead)).unwrap();
    let frame = frame_bytes(BODY_BYTES as u32);
    // 1 MiB reserved past the header, rounded up to a whole 4 KiB block.
    let allocated_end = (HEADER + (1 << 20)).next_multiple_of(4096);

    // The first sync writes the frame and zeros to 64 KiB past it, rounded up to a 4 KiB block.
    log.append(&body(0)).unwrap();
    log.sync().unwrap();
    let first_end = HEADER + frame;
    let zeroed_end = (first_end + ahead).next_multiple_of(4096);
    assert_eq!(log.stats().zero_bytes_written, zeroed_end - first_end);
    let path = dir.path().join(log_file_name(1));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), allocated_end);
    assert!(
        file_bytes(&path, first_end, zeroed_end)
            .iter()
            .all(|&b| b == 0)
    );

    // No more zeros while at least half a step of them lies ahead of the frames.
    let mut n = 1u64;
    while zeroed_end - (HEADER + (n + 1) * frame) >= ahead / 2 {
        log.append(&body(n)).unwrap();
        log.sync().unwrap();
        n += 1;
    }
    assert_eq!(log.stats().zero_bytes_written, zeroed_end - first_end);

    // The next write-out passes that mark and writes the next step, from where the earlier
    // zeros end (none is written twice).
    log.append(&body(n)).unwrap();
    log.sync().unwrap();
    n += 1;
    let end = HEADER + n * frame;
    let second_end = (end + ahead).next_multiple_of(4096);
    assert!(end < zeroed_end && zeroed_end < second_end);
    assert_eq!(log.stats().zero_bytes_written, second_end - first_end);
    assert!(file_bytes(&path, end, second_end).iter().all(|&b| b == 0));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), allocated_end);
    drop(log);

    // Replay sees exactly the frames, in order, and stops at the zeros.
    let mut seen = Vec::new();
    let summary = replay(os().as_ref(), &path, |f| {
        seen.push(f.body.to_vec());
        Ok(())
    })
    .unwrap();
    assert_eq!(summary.frames, n);
    assert_eq!(summary.valid_end, end);
    assert_eq!(seen, (0..n).map(body).collect::<Vec<_>>());
}

#[test]
fn zeros_stop_at_the_preallocated_end() {
    let dir = tempfile::tempdir().unwrap();
    let log = DeltaLog::create(os(), dir.path(), 1, 0, options(4096, 256 << 10)).unwrap();
    log.append(&body(0)).unwrap();
    log.sync().unwrap();
    let frames_end = HEADER + frame_bytes(BODY_BYTES as u32);
    // 4096 bytes reserved past the header, rounded up to a whole block.
    let allocated_end = (HEADER + 4096).next_multiple_of(4096);
    assert_eq!(log.stats().zero_bytes_written, allocated_end - frames_end);
    let path = dir.path().join(log_file_name(1));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), allocated_end);
}

#[test]
fn zero_ahead_off_writes_no_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let log = DeltaLog::create(os(), dir.path(), 1, 0, options(1 << 20, 0)).unwrap();
    for i in 0..100 {
        log.append(&body(i)).unwrap();
        log.sync().unwrap();
    }
    assert_eq!(log.stats().zero_bytes_written, 0);
    assert_eq!(log.stats().frames_appended, 100);
}

#[test]
fn a_rotation_keeps_the_count_and_starts_the_new_file_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let ahead = 16 << 10;
    let log = DeltaLog::create(os(), dir.path(), 1, 0, options(1 << 20, ahead)).unwrap();
    log.append(&body(0)).unwrap();
    log.sync().unwrap();
    let frames_end = HEADER + frame_bytes(BODY_BYTES as u32);
    let first = (frames_end + ahead).next_multiple_of(4096) - frames_end;
    assert_eq!(log.stats().zero_bytes_written, first);

    log.rotate(2, 1).unwrap();
    // The closed file ends at its last frame: its zeros were returned with its preallocation.
    let old = dir.path().join(log_file_name(1));
    assert_eq!(std::fs::metadata(&old).unwrap().len(), frames_end);

    log.append(&body(1)).unwrap();
    log.sync().unwrap();
    assert_eq!(log.stats().zero_bytes_written, first * 2);
    let mut frames = 0;
    let summary = replay(os().as_ref(), &dir.path().join(log_file_name(2)), |_| {
        frames += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!((frames, summary.valid_end), (1, frames_end));
}
