//! The spare log (`design/DURABILITY.md` §4, "Recycle"): a log a checkpoint retired becomes
//! `log-spare.vlog`, and the next rotation renames it into the new log instead of creating a file
//! whose blocks must be reserved and zeroed again. Its old frames stay in the file past the new
//! log's frames; they must never replay as the new log's (format version 3 seeds every frame's
//! CRC32C with the log's sequence number), and an empty or crashed recycled log must replay to
//! exactly the frames it was given.

use std::path::Path;
use std::sync::Arc;

use vellum::CorruptionKind;
use vellum::io::{OsStorage, Storage};
use vellum::log::{
    DeltaLog, LOG_HEADER_BYTES, LogOptions, SPARE_LOG_FILE, TailState, frame_bytes, log_file_name,
    retire_log,
};

mod common;

use common::{body, replay_all};

fn os() -> Arc<dyn Storage> {
    Arc::new(OsStorage::new())
}

fn len_of(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().len()
}

/// Log 1 holds `frames` frames of 1000 bytes and is closed by a rotation to log 2, then retired.
/// Returns log 2 and the spare's length.
fn spare_after_one_log(dir: &Path, frames: u64) -> (DeltaLog, u64) {
    let log = DeltaLog::create(os(), dir, 1, 0, LogOptions::default()).unwrap();
    for i in 0..frames {
        log.append(&body(i, 1000)).unwrap();
    }
    log.sync().unwrap();
    log.rotate(2, frames).unwrap();
    retire_log(&OsStorage::new(), dir, 1).unwrap();
    assert!(
        !dir.join(log_file_name(1)).exists(),
        "log 1 became the spare"
    );
    let spare = dir.join(SPARE_LOG_FILE);
    let end = LOG_HEADER_BYTES as u64 + frames * frame_bytes(1000);
    assert_eq!(len_of(&spare), end, "a closed log ends at its last frame");
    (log, end)
}

#[test]
fn the_next_rotation_reuses_the_spare_and_writes_no_zeros_within_it() {
    let dir = tempfile::tempdir().unwrap();
    let (log, spare_len) = spare_after_one_log(dir.path(), 300);
    let zeros_before = log.stats().zero_bytes_written;
    log.rotate(3, 300).unwrap();
    assert!(
        !dir.path().join(SPARE_LOG_FILE).exists(),
        "the spare was used"
    );
    let path = dir.path().join(log_file_name(3));
    assert_eq!(len_of(&path), spare_len, "log 3 is the spare's file");
    let bodies: Vec<Vec<u8>> = (0..50).map(|i| body(1000 + i, 700 + i as usize)).collect();
    for b in &bodies {
        log.append(b).unwrap();
        log.sync().unwrap();
    }
    let written_end: u64 = LOG_HEADER_BYTES as u64
        + bodies
            .iter()
            .map(|b| frame_bytes(b.len() as u32))
            .sum::<u64>();
    assert!(written_end < spare_len);
    assert_eq!(
        log.stats().zero_bytes_written,
        zeros_before,
        "frames over the spare's written blocks need no zeros ahead"
    );
    assert_eq!(len_of(&path), spare_len, "nor any growth");
    drop(log);

    // Not sealed (as after a crash): replay gives exactly log 3's frames and ends at the zeros
    // written after them, although log 1's frames fill the rest of the file.
    let (frames, summary) = replay_all(&path);
    assert_eq!(frames.len(), bodies.len());
    for (f, b) in frames.iter().zip(&bodies) {
        assert_eq!(&f.body, b);
    }
    assert_eq!(summary.valid_end, written_end);
    assert_eq!(summary.tail, TailState::Clean);
    let bytes = std::fs::read(&path).unwrap();
    let mark = written_end as usize;
    assert_eq!(bytes[mark..mark + 24], [0u8; 24], "the end mark");
    assert!(
        bytes[mark + 24..].iter().any(|&b| b != 0),
        "log 1's bytes are still past it"
    );
}

#[test]
fn an_empty_recycled_log_replays_empty() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = spare_after_one_log(dir.path(), 20);
    log.rotate(3, 20).unwrap();
    drop(log);
    let (frames, summary) = replay_all(&dir.path().join(log_file_name(3)));
    assert!(frames.is_empty());
    assert_eq!(summary.valid_end, LOG_HEADER_BYTES as u64);
    assert_eq!(summary.tail, TailState::Clean);
}

#[test]
fn frames_of_the_spare_never_replay_as_the_new_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = spare_after_one_log(dir.path(), 40);
    log.rotate(3, 40).unwrap();
    log.append(&body(7, 1000)).unwrap();
    log.sync().unwrap();
    drop(log);
    // Lose the end mark (its write torn by a crash): log 1's frame 1 shows through, intact, at
    // the very offset where log 3's frame 1 is due, with the index that offset expects. Only the
    // seed tells them apart.
    let path = dir.path().join(log_file_name(3));
    let mut bytes = std::fs::read(&path).unwrap();
    let at = LOG_HEADER_BYTES + frame_bytes(1000) as usize;
    let old = log1_frame_1(dir.path());
    bytes[at..at + old.len()].copy_from_slice(&old);
    std::fs::write(&path, &bytes).unwrap();
    let (frames, summary) = replay_all(&path);
    assert_eq!(frames.len(), 1, "only log 3's own frame");
    match summary.tail {
        TailState::Torn { offset, kind, past } => {
            assert_eq!(offset, at as u64);
            assert!(matches!(kind, CorruptionKind::ChecksumMismatch { .. }));
            assert!(past.is_empty(), "no frame of log 1 validates: {past:?}");
        }
        other => panic!("a torn tail, got {other:?}"),
    }
}

/// Log 1's frame 1 as a fresh log 1 writes it (the same bodies as `spare_after_one_log`).
fn log1_frame_1(parent: &Path) -> Vec<u8> {
    let dir = parent.join("again");
    std::fs::create_dir_all(&dir).unwrap();
    let log = DeltaLog::create(os(), &dir, 1, 0, LogOptions::default()).unwrap();
    log.append(&body(0, 1000)).unwrap();
    log.append(&body(1, 1000)).unwrap();
    log.sync().unwrap();
    drop(log);
    let bytes = std::fs::read(dir.join(log_file_name(1))).unwrap();
    let at = LOG_HEADER_BYTES + frame_bytes(1000) as usize;
    bytes[at..at + frame_bytes(1000) as usize].to_vec()
}

#[test]
fn a_retired_log_is_removed_while_a_spare_exists() {
    let dir = tempfile::tempdir().unwrap();
    let log = DeltaLog::create(os(), dir.path(), 1, 0, LogOptions::default()).unwrap();
    log.append(&body(1, 3000)).unwrap();
    log.rotate(2, 1).unwrap();
    log.append(&body(2, 100)).unwrap();
    log.rotate(3, 2).unwrap();
    let log1_len = len_of(&dir.path().join(log_file_name(1)));
    retire_log(&OsStorage::new(), dir.path(), 1).unwrap();
    retire_log(&OsStorage::new(), dir.path(), 2).unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [log_file_name(3), SPARE_LOG_FILE.to_owned()]);
    assert_eq!(
        len_of(&dir.path().join(SPARE_LOG_FILE)),
        log1_len,
        "log 1 is the spare"
    );
}

#[test]
fn reopening_a_recycled_log_cuts_the_spares_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = spare_after_one_log(dir.path(), 30);
    log.rotate(3, 30).unwrap();
    log.append(&body(9, 200)).unwrap();
    log.sync().unwrap();
    drop(log);
    let (reopened, summary) =
        DeltaLog::open(os(), dir.path(), 3, LogOptions::default(), |_| Ok(())).unwrap();
    assert_eq!(summary.frames, 1);
    assert_eq!(summary.tail, TailState::Clean);
    let end = LOG_HEADER_BYTES as u64 + frame_bytes(200);
    assert_eq!(len_of(&dir.path().join(log_file_name(3))), end);
    reopened.append(&body(10, 50)).unwrap();
    reopened.sync().unwrap();
    drop(reopened);
    let (frames, summary) = replay_all(&dir.path().join(log_file_name(3)));
    assert_eq!(
        frames.iter().map(|f| f.body.clone()).collect::<Vec<_>>(),
        [body(9, 200), body(10, 50)]
    );
    assert_eq!(summary.tail, TailState::Clean);
}
