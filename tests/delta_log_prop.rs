//! Property tests: the log reader never panics, whatever the file holds, and what it replays from a
//! damaged log is always a prefix of what was written.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vellum::io::{OsStorage, Storage};
use vellum::log::{
    FRAME_BODY_BYTES_MAX, Frame, LOG_HEADER_BYTES, LogHeader, LogReader, ReplaySummary, TailState,
    encode_frame, read_header, replay,
};
use vellum::{CorruptionKind, Error};

/// A log file image holding `bodies` as frames 0, 1, ...
fn log_image(bodies: &[Vec<u8>]) -> Vec<u8> {
    let header = LogHeader::new(1, 0);
    let mut bytes = header.encode().to_vec();
    for (i, b) in bodies.iter().enumerate() {
        bytes.extend_from_slice(&encode_frame(header.frame_seed(), i as u64, b).unwrap());
    }
    bytes
}

/// Writes `bytes` to a fresh file and replays it, keeping every frame.
fn replay_bytes(dir: &Path, bytes: &[u8]) -> (PathBuf, Result<(Vec<Frame>, ReplaySummary), Error>) {
    let path = dir.join("log-0000000000000001.vlog");
    std::fs::write(&path, bytes).unwrap();
    let mut frames = Vec::new();
    let result = replay(&OsStorage::new(), &path, |f| {
        frames.push(f.clone());
        Ok(())
    });
    (path, result.map(|s| (frames, s)))
}

/// Checks what every replay must satisfy, whatever the input.
fn check_summary(frames: &[Frame], summary: &ReplaySummary, file_len: u64) {
    assert_eq!(summary.frames, frames.len() as u64);
    assert!(summary.valid_end >= LOG_HEADER_BYTES as u64);
    assert!(summary.valid_end <= file_len.max(LOG_HEADER_BYTES as u64));
    assert_eq!(summary.valid_end % 8, 0);
    let mut at = LOG_HEADER_BYTES as u64;
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        assert_eq!(f.offset, at);
        assert!(!f.body.is_empty() && f.body.len() <= FRAME_BODY_BYTES_MAX as usize);
        at = f.end();
    }
    assert_eq!(at, summary.valid_end);
    if let TailState::Torn { offset, .. } = summary.tail {
        assert_eq!(offset, summary.valid_end);
    }
}

/// Bodies of 1..300 bytes, 0..12 of them.
fn bodies() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..12)
}

/// One change to a file image.
#[derive(Debug, Clone)]
enum Mutation {
    /// XOR the byte at this fraction of the file with a non-zero mask.
    Flip(prop::sample::Index, u8),
    /// Overwrite a run of bytes with zeros.
    Zero(prop::sample::Index, usize),
    /// Cut the file at this fraction.
    Truncate(prop::sample::Index),
    /// Append garbage.
    Extend(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<prop::sample::Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<prop::sample::Index>(), 1..64usize).prop_map(|(i, n)| Mutation::Zero(i, n)),
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 1..64).prop_map(Mutation::Extend),
    ]
}

fn apply(bytes: &mut Vec<u8>, m: &Mutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        Mutation::Flip(i, mask) => {
            let at = i.index(bytes.len());
            bytes[at] ^= mask;
        }
        Mutation::Zero(i, n) => {
            let at = i.index(bytes.len());
            let end = (at + n).min(bytes.len());
            bytes[at..end].fill(0);
        }
        Mutation::Truncate(i) => {
            let at = i.index(bytes.len() + 1);
            bytes.truncate(at);
        }
        Mutation::Extend(extra) => bytes.extend_from_slice(extra),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes at all, half of the time behind a valid header so the frame scanner runs.
    #[test]
    fn arbitrary_bytes_never_panic(
        raw in prop::collection::vec(any::<u8>(), 0..2048),
        with_header in any::<bool>(),
        buffer in 16usize..256,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = if with_header { log_image(&[]) } else { Vec::new() };
        bytes.extend_from_slice(&raw);
        let (path, result) = replay_bytes(dir.path(), &bytes);
        match result {
            Ok((frames, summary)) => check_summary(&frames, &summary, bytes.len() as u64),
            Err(e) => prop_assert!(e.as_corruption().is_some(), "not a corruption: {e}"),
        }
        let file = OsStorage::new().open_read_only(&path).unwrap();
        match read_header(file.as_ref()) {
            Ok(_) => prop_assert!(with_header || bytes.len() >= LOG_HEADER_BYTES),
            Err(e) => prop_assert!(e.as_corruption().is_some()),
        }
        // The iterator with a tiny buffer agrees with replay.
        if let Ok(reader) = LogReader::with_buffer_bytes(file.as_ref(), buffer) {
            let frames: Result<Vec<Frame>, Error> = reader.collect();
            prop_assert!(frames.is_ok());
        }
    }

    /// A valid log, damaged in up to four ways: whatever replays is a prefix of what was written.
    #[test]
    fn mutated_logs_replay_a_prefix(
        bodies in bodies(),
        mutations in prop::collection::vec(mutation(), 1..4),
        buffer in 16usize..512,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = log_image(&bodies);
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let (path, result) = replay_bytes(dir.path(), &bytes);
        let (frames, summary) = match result {
            Ok(ok) => ok,
            Err(e) => {
                // Only the header can make replay fail, and then only as corruption.
                let c = e.as_corruption().expect("replay errors are corruption");
                prop_assert!(c.offset < LOG_HEADER_BYTES as u64);
                let is_document = matches!(c.kind, CorruptionKind::InvalidDocument { .. });
                prop_assert!(!is_document);
                return Ok(());
            }
        };
        check_summary(&frames, &summary, bytes.len() as u64);
        prop_assert!(frames.len() <= bodies.len());
        for (f, b) in frames.iter().zip(&bodies) {
            prop_assert_eq!(&f.body, b);
        }
        // The chunked reader with a small buffer sees exactly the same.
        let file = OsStorage::new().open_read_only(&path).unwrap();
        let mut reader = LogReader::with_buffer_bytes(file.as_ref(), buffer).unwrap();
        let mut again = Vec::new();
        while let Some(f) = reader.next_frame().unwrap() {
            again.push(f);
        }
        prop_assert_eq!(&again, &frames);
        prop_assert_eq!(reader.summary(), Some(summary));
    }

    /// Undamaged logs replay completely and cleanly.
    #[test]
    fn valid_logs_replay_completely(bodies in bodies()) {
        let dir = tempfile::tempdir().unwrap();
        let bytes = log_image(&bodies);
        let (_, result) = replay_bytes(dir.path(), &bytes);
        let (frames, summary) = result.unwrap();
        prop_assert_eq!(summary.tail, TailState::Clean);
        prop_assert_eq!(summary.valid_end, bytes.len() as u64);
        let replayed: Vec<Vec<u8>> = frames.into_iter().map(|f| f.body).collect();
        prop_assert_eq!(replayed, bodies);
    }
}
