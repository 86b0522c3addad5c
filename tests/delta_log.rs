//! Delta log tests on the real filesystem: torn tails at every offset, mid-log damage, tail cuts on
//! reopen, group commit under concurrency, and rotation.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vellum::io::{OsStorage, Storage};
use vellum::log::{
    DeltaLog, Frame, LOG_HEADER_BYTES, LogOptions, LogPosition, LogReader, OnDamage, PastFrame,
    TailState, frame_bytes, log_file_name, replay,
};
use vellum::{CorruptionKind, Error};

mod common;

use common::{body, replay_all};

/// Small preallocation keeps test files small while still exercising the preallocation path.
fn options() -> LogOptions {
    LogOptions {
        preallocate_bytes: 4096,
        ..LogOptions::default()
    }
}

fn os() -> Arc<dyn Storage> {
    Arc::new(OsStorage::new())
}

/// The start offset of every frame when `bodies` are appended in order, plus the end.
fn layout(bodies: &[Vec<u8>]) -> (Vec<u64>, u64) {
    let mut offsets = Vec::new();
    let mut at = LOG_HEADER_BYTES as u64;
    for b in bodies {
        offsets.push(at);
        at += frame_bytes(b.len() as u32);
    }
    (offsets, at)
}

/// Writes `bodies` as log `seq` in `dir` and syncs them; checks the positions `append` returned.
fn write_log(dir: &Path, seq: u64, bodies: &[Vec<u8>]) -> PathBuf {
    let log = DeltaLog::create(os(), dir, seq, 100, options()).unwrap();
    let (offsets, end) = layout(bodies);
    for (i, b) in bodies.iter().enumerate() {
        let pos = log.append(b).unwrap();
        let expected_end = offsets.get(i + 1).copied().unwrap_or(end);
        assert_eq!(
            pos,
            LogPosition {
                seq,
                offset: expected_end
            }
        );
    }
    log.sync().unwrap();
    dir.join(log_file_name(seq))
}

/// Asserts `frames` are exactly the first `n` of `bodies`, at their offsets.
fn assert_prefix(frames: &[Frame], bodies: &[Vec<u8>], n: usize) {
    let (offsets, _) = layout(bodies);
    assert_eq!(frames.len(), n);
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        assert_eq!(f.offset, offsets[i]);
        assert_eq!(f.body, bodies[i]);
    }
}

fn varied_bodies() -> Vec<Vec<u8>> {
    // Lengths cover every padding amount, a body larger than a sector, and a last body of 37
    // bytes (several bits set in its length, so no single bit flip turns it into zero).
    [1usize, 7, 8, 9, 100, 3000, 17, 255, 37]
        .iter()
        .enumerate()
        .map(|(i, &len)| body(i as u64, len))
        .collect()
}

#[test]
fn torn_tail_at_every_offset_of_the_last_frame() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = varied_bodies();
    let path = write_log(dir.path(), 1, &bodies);
    let bytes = std::fs::read(&path).unwrap();
    let (offsets, end) = layout(&bodies);
    let last_start = *offsets.last().unwrap();
    let n = bodies.len();
    let copy = dir.path().join("copy.vlog");

    // The whole file (preallocated zeros after the end included) replays completely.
    let (frames, summary) = replay_all(&path);
    assert_prefix(&frames, &bodies, n);
    assert_eq!(summary.valid_end, end);
    assert_eq!(summary.tail, TailState::Clean);

    for cut in last_start..end {
        std::fs::write(&copy, &bytes[..cut as usize]).unwrap();
        let (frames, summary) = replay_all(&copy);
        assert_prefix(&frames, &bodies, n - 1);
        assert_eq!(summary.frames, n as u64 - 1);
        assert_eq!(summary.valid_end, last_start, "cut at {cut}");
        if cut == last_start {
            assert_eq!(summary.tail, TailState::Clean);
        } else {
            let available = cut - last_start;
            let needed = if available < 4 { 24 } else { frame_bytes(37) };
            assert_eq!(
                summary.tail,
                TailState::Torn {
                    offset: last_start,
                    kind: CorruptionKind::Truncated { needed, available },
                    past: Vec::new(),
                },
                "cut at {cut}"
            );
        }
    }
    // Cut exactly at the end: every frame, clean.
    std::fs::write(&copy, &bytes[..end as usize]).unwrap();
    let (frames, summary) = replay_all(&copy);
    assert_prefix(&frames, &bodies, n);
    assert_eq!(summary.tail, TailState::Clean);
}

#[test]
fn zeroed_last_frame_header_is_a_clean_end() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = varied_bodies();
    let path = write_log(dir.path(), 1, &bodies);
    let mut bytes = std::fs::read(&path).unwrap();
    let (offsets, _) = layout(&bodies);
    let last = *offsets.last().unwrap() as usize;
    bytes[last..last + 24].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (frames, summary) = replay_all(&path);
    assert_prefix(&frames, &bodies, bodies.len() - 1);
    assert_eq!(summary.valid_end, last as u64);
    assert_eq!(summary.tail, TailState::Clean);
}

#[test]
fn bit_flip_anywhere_in_the_last_frame_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = varied_bodies();
    let path = write_log(dir.path(), 1, &bodies);
    let clean = std::fs::read(&path).unwrap();
    let (offsets, end) = layout(&bodies);
    let last = *offsets.last().unwrap();
    let copy = dir.path().join("copy.vlog");
    for at in last..end {
        let mut bytes = clean.clone();
        bytes[at as usize] ^= 1 << (at % 8);
        std::fs::write(&copy, &bytes).unwrap();
        let (frames, summary) = replay_all(&copy);
        assert_prefix(&frames, &bodies, bodies.len() - 1);
        assert_eq!(summary.valid_end, last);
        let TailState::Torn { offset, kind, past } = summary.tail else {
            panic!("flip at {at}: expected a torn tail, got {:?}", summary.tail);
        };
        assert_eq!(offset, last);
        assert_eq!(past, Vec::new(), "flip at {at}");
        if at - last < 4 {
            // A flipped length either exceeds the maximum, points past the end of the file, or
            // declares a different size whose CRC cannot match.
            assert!(
                matches!(
                    kind,
                    CorruptionKind::ChecksumMismatch { .. }
                        | CorruptionKind::InvalidField {
                            field: "frame.body_bytes",
                            ..
                        }
                        | CorruptionKind::Truncated { .. }
                ),
                "flip at {at}: {kind:?}"
            );
        } else {
            assert!(
                matches!(kind, CorruptionKind::ChecksumMismatch { .. }),
                "flip at {at}: {kind:?}"
            );
        }
    }
}

#[test]
fn damage_in_an_unsynced_batch_is_a_torn_tail_with_the_frames_past_it() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| body(i, 50 + i as usize * 10)).collect();
    let path = write_log(dir.path(), 3, &bodies);
    let clean = std::fs::read(&path).unwrap();
    let (offsets, _) = layout(&bodies);

    // A body byte of frame 2 of 5.
    let mut bytes = clean.clone();
    bytes[offsets[2] as usize + 20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (frames, summary) = replay_all(&path);
    assert_prefix(&frames, &bodies, 2);
    assert_eq!(summary.valid_end, offsets[2]);
    // Every frame was written in one batch before one sync, so none claims another durable:
    // nothing proves frame 2 was synced, and the frames past it are listed.
    let TailState::Torn { offset, kind, past } = summary.tail else {
        panic!("a torn tail, got {:?}", summary.tail);
    };
    assert_eq!(offset, offsets[2]);
    assert!(matches!(kind, CorruptionKind::ChecksumMismatch { .. }));
    let past_at: Vec<(u64, u64, u64)> = past
        .iter()
        .map(|p| (p.offset, p.index, p.durable_end))
        .collect();
    assert_eq!(past_at, vec![(offsets[3], 3, 64), (offsets[4], 4, 64)]);

    // Frame 3's index rewritten (CRC fixed up): the index check catches it, and frame 4 follows.
    let mut bytes = clean.clone();
    let f3 = offsets[3] as usize;
    bytes[f3 + 8] = 9;
    let mut covered = bytes[f3..f3 + 4].to_vec();
    covered.extend_from_slice(&bytes[f3 + 8..offsets[4] as usize]);
    // Format version 3: the CRC starts from the CRC32C of the log's sequence number (3).
    let seed = vellum::codec::crc32c(&3u64.to_le_bytes());
    let crc = vellum::codec::crc32c_append(seed, &covered);
    bytes[f3 + 4..f3 + 8].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let (frames, summary) = replay_all(&path);
    assert_prefix(&frames, &bodies, 3);
    assert_eq!(
        summary.tail,
        TailState::Torn {
            offset: offsets[3],
            kind: CorruptionKind::Mismatch {
                what: "frame.frame_index",
                expected: 3,
                actual: 9
            },
            past: vec![PastFrame {
                offset: offsets[4],
                index: 4,
                body_bytes: bodies[4].len() as u32,
                durable_end: 64,
            }],
        }
    );

    // Damage in the last frame: nothing valid follows.
    let mut bytes = clean.clone();
    bytes[offsets[4] as usize + 20] ^= 0x40;
    std::fs::write(&path, &bytes).unwrap();
    let (_, summary) = replay_all(&path);
    assert!(matches!(summary.tail, TailState::Torn { ref past, .. } if past.is_empty()));

    // An impossible length: the frame after it is found by searching.
    let mut bytes = clean;
    bytes[offsets[2] as usize + 3] = 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let (_, summary) = replay_all(&path);
    assert!(matches!(
        summary.tail,
        TailState::Torn {
            kind: CorruptionKind::InvalidField {
                field: "frame.body_bytes",
                ..
            },
            ref past,
            ..
        } if past.len() == 2 && past[0].offset == offsets[3]
    ));
}

/// Frames synced one at a time: frame `i` claims every frame before it durable.
fn write_log_synced_each(dir: &Path, seq: u64, bodies: &[Vec<u8>]) -> PathBuf {
    let log = DeltaLog::create(os(), dir, seq, 100, options()).unwrap();
    for b in bodies {
        let pos = log.append(b).unwrap();
        log.sync_to(pos).unwrap();
    }
    dir.join(log_file_name(seq))
}

#[test]
fn damage_a_later_frame_proves_durable_is_reported_and_refused() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| body(i, 50 + i as usize * 10)).collect();
    let path = write_log_synced_each(dir.path(), 3, &bodies);
    let clean = std::fs::read(&path).unwrap();
    let (offsets, _) = layout(&bodies);
    for (at, what) in [
        (offsets[2] as usize + 30, "a body byte"),
        (offsets[2] as usize, "the length"),
        (offsets[2] as usize + 17, "durable_end"),
    ] {
        let mut bytes = clean.clone();
        bytes[at] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let (frames, summary) = replay_all(&path);
        assert_prefix(&frames, &bodies, 2);
        let TailState::Damaged {
            offset,
            past,
            proof,
            ..
        } = &summary.tail
        else {
            panic!("{what}: damage, got {:?}", summary.tail);
        };
        assert_eq!(*offset, offsets[2], "{what}");
        // Frames 3 and 4 claim the frames before them durable; frame 4's claim is the largest.
        assert_eq!(past.len(), 2, "{what}");
        assert_eq!(
            (proof.offset, proof.durable_end),
            (offsets[4], offsets[4]),
            "{what}"
        );
        // Opening refuses, names the damaged frame, and cuts nothing.
        let err = DeltaLog::open(os(), dir.path(), 3, options(), |_| Ok(())).unwrap_err();
        let c = err.as_corruption().expect("a corruption error");
        assert_eq!(
            (c.file.clone(), c.offset),
            (path.clone(), offsets[2]),
            "{what}"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{what}: the log is left as it was"
        );
    }
    // Zeroed whole, frame 2 reads as the end of the log, but frame 3 and 4 prove otherwise.
    let mut bytes = clean.clone();
    bytes[offsets[2] as usize..offsets[3] as usize].fill(0);
    std::fs::write(&path, &bytes).unwrap();
    let (_, summary) = replay_all(&path);
    assert!(matches!(
        summary.tail,
        TailState::Damaged {
            kind: CorruptionKind::InvalidField {
                field: "frame.body_bytes",
                value: 0
            },
            offset,
            ..
        } if offset == offsets[2]
    ));
    // Opened with the cut, the damage is cut like a torn tail and the dropped frames reported.
    let mut dropped = Vec::new();
    let (_, summary) = DeltaLog::open_with(
        os(),
        dir.path(),
        3,
        options(),
        OnDamage::Cut,
        |_| Ok(()),
        |f| dropped.push(f.body.clone()),
    )
    .unwrap();
    assert_eq!(summary.valid_end, offsets[2]);
    assert_eq!(dropped, bodies[3..]);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), offsets[2]);
}

#[test]
fn a_sealed_log_replays_to_its_seal_and_reopens_for_appends() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = varied_bodies();
    let log = DeltaLog::create(os(), dir.path(), 1, 100, options()).unwrap();
    for b in &bodies {
        log.append(b).unwrap();
    }
    let (_, end) = layout(&bodies);
    assert_eq!(
        log.seal().unwrap(),
        LogPosition {
            seq: 1,
            offset: end
        }
    );
    // A sealed log accepts nothing more.
    assert!(matches!(
        log.append(b"more"),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(
        log.seal().unwrap(),
        LogPosition {
            seq: 1,
            offset: end
        }
    );
    drop(log);
    let path = dir.path().join(log_file_name(1));
    let (frames, summary) = replay_all(&path);
    assert_prefix(&frames, &bodies, bodies.len());
    assert_eq!((summary.tail, summary.valid_end), (TailState::Sealed, end));
    // Damage anywhere before the seal is damage: the seal claims every frame durable.
    let clean = std::fs::read(&path).unwrap();
    let (offsets, _) = layout(&bodies);
    let mut bytes = clean.clone();
    bytes[offsets[bodies.len() - 1] as usize + 30] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (_, summary) = replay_all(&path);
    assert!(matches!(summary.tail, TailState::Damaged { ref proof, .. } if proof.offset == end));
    std::fs::write(&path, &clean).unwrap();
    // Reopened: the seal is cut and appends go on where it was.
    let (log, summary) = DeltaLog::open(os(), dir.path(), 1, options(), |_| Ok(())).unwrap();
    assert_eq!(summary.tail, TailState::Sealed);
    let pos = log.append(b"after the seal").unwrap();
    log.sync_to(pos).unwrap();
    drop(log);
    let (frames, summary) = replay_all(&path);
    assert_eq!(frames.len(), bodies.len() + 1);
    assert_eq!(frames.last().unwrap().body, b"after the seal");
    assert_eq!(frames.last().unwrap().offset, end);
    assert_eq!(summary.tail, TailState::Clean);
}

#[test]
fn header_damage_is_an_error_not_a_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_log(dir.path(), 1, &varied_bodies());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let err = replay(&OsStorage::new(), &path, |_| Ok(())).unwrap_err();
    let c = err.as_corruption().expect("a corruption error");
    assert_eq!(c.file, path);
    assert_eq!(c.offset, 60);
    assert!(matches!(c.kind, CorruptionKind::ChecksumMismatch { .. }));
}

#[test]
fn small_read_buffers_give_the_same_frames() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = varied_bodies();
    let path = write_log(dir.path(), 1, &bodies);
    let file = OsStorage::new().open_read_only(&path).unwrap();
    // 16 bytes (one frame header) up to sizes around the frames': frames straddle buffer refills
    // and some frames are larger than the buffer.
    for buffer in [16, 17, 24, 40, 64, 100, 1000, 5000] {
        let reader = LogReader::with_buffer_bytes(file.as_ref(), buffer).unwrap();
        let frames: Vec<Frame> = reader.map(Result::unwrap).collect();
        assert_prefix(&frames, &bodies, bodies.len());
    }
    let mut reader = LogReader::new(file.as_ref()).unwrap();
    assert!(reader.summary().is_none());
    while reader.next_frame().unwrap().is_some() {}
    let summary = reader.summary().unwrap();
    assert_eq!(summary.frames, bodies.len() as u64);
    assert_eq!(summary.tail, TailState::Clean);
    assert_eq!(summary.header.log_seq, 1);
    assert_eq!(summary.header.start_epoch, 100);
}

#[test]
fn open_cuts_the_tail_so_stale_frames_are_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let bodies: Vec<Vec<u8>> = (0..5).map(|i| body(i, 40)).collect();
    let path = write_log(dir.path(), 1, &bodies);
    let (offsets, end) = layout(&bodies);
    // Tear frame 3 (a crash lost one of its sectors) while frame 4 survived intact.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[offsets[3] as usize + 30] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let mut seen = Vec::new();
    let (log, summary) = DeltaLog::open(os(), dir.path(), 1, options(), |f| {
        seen.push(f.body.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, bodies[..3]);
    assert_eq!(summary.frames, 3);
    assert_eq!(summary.valid_end, offsets[3]);
    assert!(matches!(summary.tail, TailState::Torn { ref past, .. } if past.len() == 1));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), offsets[3]);
    assert_eq!(
        log.durable_position(),
        LogPosition {
            seq: 1,
            offset: offsets[3]
        }
    );

    // A new frame 3 of the old frame 3's size lands exactly where the old one was; without the
    // cut, the stale frame 4 right after it would replay as frame 4.
    let new3 = body(99, 40);
    let pos = log.append(&new3).unwrap();
    assert_eq!(pos.offset, offsets[4]);
    log.sync_to(pos).unwrap();
    let (frames, summary) = replay_all(&path);
    let mut expected = bodies[..3].to_vec();
    expected.push(new3);
    assert_prefix(&frames, &expected, 4);
    assert_eq!(summary.tail, TailState::Clean);
    assert!(summary.valid_end < end);
}

#[test]
fn reopen_continues_the_index_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let bodies = varied_bodies();
    write_log(dir.path(), 5, &bodies);
    let (log, summary) = DeltaLog::open(os(), dir.path(), 5, options(), |_| Ok(())).unwrap();
    assert_eq!(summary.frames, bodies.len() as u64);
    let more: Vec<Vec<u8>> = (0..3).map(|i| body(1000 + i, 10)).collect();
    for b in &more {
        log.append(b).unwrap();
    }
    log.sync().unwrap();
    assert_eq!(log.stats().frames_appended, 3);
    drop(log);
    let (frames, _) = replay_all(&dir.path().join(log_file_name(5)));
    let all: Vec<Vec<u8>> = bodies.iter().chain(&more).cloned().collect();
    assert_prefix(&frames, &all, all.len());

    // A file whose header names another sequence number is refused before any frame is visited.
    std::fs::rename(
        dir.path().join(log_file_name(5)),
        dir.path().join(log_file_name(6)),
    )
    .unwrap();
    let mut visited = 0;
    let err = DeltaLog::open(os(), dir.path(), 6, options(), |_| {
        visited += 1;
        Ok(())
    })
    .unwrap_err();
    assert_eq!(visited, 0);
    assert!(matches!(
        err.as_corruption().map(|c| &c.kind),
        Some(CorruptionKind::Mismatch {
            what: "log_header.log_seq",
            expected: 6,
            actual: 5
        })
    ));
}

#[test]
fn arguments_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let small = LogOptions {
        frame_body_bytes_max: 100,
        ..options()
    };
    for bad in [
        LogOptions {
            frame_body_bytes_max: 0,
            ..options()
        },
        LogOptions {
            frame_body_bytes_max: (64 << 20) + 1,
            ..options()
        },
        LogOptions {
            preallocate_bytes: (1 << 30) + 1,
            ..options()
        },
    ] {
        assert!(matches!(
            DeltaLog::create(os(), dir.path(), 1, 0, bad),
            Err(Error::InvalidArgument(_))
        ));
    }
    assert!(!dir.path().join(log_file_name(1)).exists());
    let log = DeltaLog::create(os(), dir.path(), 1, 0, small).unwrap();
    assert!(matches!(log.append(&[]), Err(Error::InvalidArgument(_))));
    assert!(matches!(
        log.append(&[1; 101]),
        Err(Error::InvalidArgument(_))
    ));
    let pos = log.append(&[1; 100]).unwrap();
    let beyond = LogPosition {
        seq: 1,
        offset: pos.offset + 8,
    };
    assert!(matches!(
        log.sync_to(beyond),
        Err(Error::InvalidArgument(_))
    ));
    log.sync_to(pos).unwrap();
    assert_eq!(log.stats().frames_appended, 1);
    assert_eq!(log.stats().bytes_appended, 100);
    // A log that exists cannot be created again.
    assert!(DeltaLog::create(os(), dir.path(), 1, 0, small).is_err());
}

#[test]
fn group_commit_under_eight_threads() {
    const THREADS: u64 = 8;
    const PER_THREAD: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(DeltaLog::create(os(), dir.path(), 1, 0, LogOptions::default()).unwrap());
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let log = Arc::clone(&log);
            s.spawn(move || {
                let mut last = None;
                for i in 0..PER_THREAD {
                    // Lengths vary with (t, i) so frames have every padding amount.
                    let mut b = format!("{t}:{i}:").into_bytes();
                    b.resize(b.len() + ((t * 7 + i) % 13) as usize, b'x');
                    let pos = log.append(&b).unwrap();
                    if let Some(prev) = last {
                        assert!(pos > prev);
                    }
                    last = Some(pos);
                    log.sync_to(pos).unwrap();
                    assert!(log.durable_position() >= pos);
                }
            });
        }
    });
    let stats = log.stats();
    assert_eq!(stats.frames_appended, THREADS * PER_THREAD);
    assert!(stats.syncs >= 1);
    assert!(
        stats.syncs < THREADS * PER_THREAD,
        "no group commit: {} syncs for {} commits",
        stats.syncs,
        THREADS * PER_THREAD
    );
    assert_eq!(log.durable_position(), log.written_position());
    drop(log);

    let (frames, summary) = replay_all(&dir.path().join(log_file_name(1)));
    assert_eq!(summary.tail, TailState::Clean);
    assert_eq!(frames.len() as u64, THREADS * PER_THREAD);
    let mut next_per_thread = vec![0u64; THREADS as usize];
    let mut seen = HashSet::new();
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index, i as u64);
        let text = String::from_utf8(f.body.clone()).unwrap();
        let mut parts = text.split(':');
        let t: usize = parts.next().unwrap().parse().unwrap();
        let seq: u64 = parts.next().unwrap().parse().unwrap();
        assert!(seen.insert((t, seq)), "duplicate body {text}");
        assert_eq!(seq, next_per_thread[t], "thread {t} out of order");
        next_per_thread[t] += 1;
    }
    assert!(next_per_thread.iter().all(|&n| n == PER_THREAD));
}

#[test]
fn rotation_keeps_both_files_replayable() {
    let dir = tempfile::tempdir().unwrap();
    let log = DeltaLog::create(os(), dir.path(), 1, 10, options()).unwrap();
    let first: Vec<Vec<u8>> = (0..4).map(|i| body(i, 30 + i as usize)).collect();
    let second: Vec<Vec<u8>> = (0..3).map(|i| body(50 + i, 500)).collect();
    let mut old_positions = Vec::new();
    for b in &first {
        old_positions.push(log.append(b).unwrap());
    }
    log.sync_to(old_positions[0]).unwrap();
    assert!(matches!(log.rotate(1, 0), Err(Error::InvalidArgument(_))));
    assert!(matches!(log.rotate(0, 0), Err(Error::InvalidArgument(_))));

    log.rotate(2, 20).unwrap();
    assert_eq!(log.seq(), 2);
    // Rotation synced all of log 1: syncing any of its positions costs nothing more.
    let syncs = log.stats().syncs;
    for &pos in &old_positions {
        log.sync_to(pos).unwrap();
    }
    assert_eq!(log.stats().syncs, syncs);
    assert!(log.durable_position() >= *old_positions.last().unwrap());

    let mut new_positions = Vec::new();
    for b in &second {
        new_positions.push(log.append(b).unwrap());
    }
    assert_eq!(
        new_positions[0],
        LogPosition {
            seq: 2,
            offset: LOG_HEADER_BYTES as u64 + frame_bytes(500)
        }
    );
    assert!(new_positions[0] > *old_positions.last().unwrap());
    log.sync_to(*new_positions.last().unwrap()).unwrap();
    // The old file position is still durable, with no further sync.
    let syncs = log.stats().syncs;
    log.sync_to(old_positions[3]).unwrap();
    assert_eq!(log.stats().syncs, syncs);
    drop(log);

    let path1 = dir.path().join(log_file_name(1));
    let (frames, summary) = replay_all(&path1);
    assert_prefix(&frames, &first, first.len());
    assert_eq!(summary.header.start_epoch, 10);
    assert_eq!(summary.tail, TailState::Clean);
    // The closed file was trimmed to its last frame.
    assert_eq!(std::fs::metadata(&path1).unwrap().len(), layout(&first).1);
    let (frames, summary) = replay_all(&dir.path().join(log_file_name(2)));
    assert_prefix(&frames, &second, second.len());
    assert_eq!(summary.header.start_epoch, 20);
    assert_eq!(summary.header.log_seq, 2);
}

#[test]
fn frames_larger_than_the_read_buffer_replay() {
    let dir = tempfile::tempdir().unwrap();
    let big = vec![
        body(1, 10),
        body(2, (1 << 20) + 3),
        body(3, 10),
        body(4, 3 << 20),
    ];
    let path = write_log(dir.path(), 1, &big);
    let (frames, summary) = replay_all(&path);
    assert_prefix(&frames, &big, big.len());
    assert_eq!(summary.tail, TailState::Clean);
}

#[test]
fn append_batch_writes_consecutive_frames_in_one_call() {
    use std::sync::Arc;
    use vellum::io::{OsStorage, Storage};
    use vellum::log::{DeltaLog, LogOptions, log_file_name, replay};
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(OsStorage::new());
    let log = DeltaLog::create(storage.clone(), dir.path(), 1, 1, LogOptions::default()).unwrap();
    log.append(b"first").unwrap();
    let bodies: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 1 + i as usize * 7]).collect();
    let end = log.append_batch(&bodies).unwrap().unwrap();
    assert_eq!(log.append_batch::<Vec<u8>>(&[]).unwrap(), None);
    assert!(
        log.append_batch(&[vec![], vec![1]]).is_err(),
        "an empty body fails the whole batch"
    );
    log.sync_to(end).unwrap();
    assert_eq!(log.stats().frames_appended, 101);
    let mut seen = Vec::new();
    let summary = replay(storage.as_ref(), &dir.path().join(log_file_name(1)), |f| {
        seen.push((f.index, f.body.clone()));
        Ok(())
    })
    .unwrap();
    assert_eq!(summary.frames, 101);
    assert_eq!(summary.valid_end, end.offset);
    assert_eq!(seen[0], (0, b"first".to_vec()));
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(seen[i + 1], (i as u64 + 1, body.clone()));
    }
}

/// The search past a stop skips zero bytes a chunk at a time; a frame right after a zero run of
/// any length (around the 64 KiB chunk especially) is still found, and its claim judged.
#[test]
fn the_search_finds_a_frame_after_zeros_of_any_length() {
    use vellum::log::{LogHeader, encode_frame_claiming};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(log_file_name(1));
    let log_header = LogHeader::new(1, 1);
    let seed = log_header.frame_seed();
    let header = log_header.encode();
    let f0 = encode_frame_claiming(seed, 0, 64, b"first").unwrap();
    let bad_at = 64 + f0.len() as u64;
    for gap in [
        0usize, 8, 16, 24, 65_472, 65_480, 65_488, 65_496, 65_504, 65_512, 65_520, 65_528, 65_536,
        65_544, 70_000, 131_064, 131_072, 200_008,
    ] {
        let mut bytes = header.to_vec();
        bytes.extend_from_slice(&f0);
        // Frame 1, damaged beyond its length field (which points at its end).
        let mut f1 = encode_frame_claiming(seed, 1, 64, b"second").unwrap();
        f1[30] ^= 1;
        bytes.extend_from_slice(&f1);
        bytes.resize(bytes.len() + gap, 0);
        let proof_at = bytes.len() as u64;
        // Frame 3 (frame 2 lost in the zeros, when there is room for it) claims frame 1 durable.
        let index = if gap >= 32 { 3 } else { 2 };
        bytes.extend_from_slice(&encode_frame_claiming(seed, index, proof_at, b"third").unwrap());
        bytes.resize(bytes.len() + 4096, 0);
        std::fs::write(&path, &bytes).unwrap();
        let (frames, summary) = replay_all(&path);
        assert_eq!(frames.len(), 1, "gap {gap}");
        match summary.tail {
            TailState::Damaged { offset, proof, .. } => {
                assert_eq!(
                    (offset, proof.offset, proof.index),
                    (bad_at, proof_at, index),
                    "gap {gap}"
                )
            }
            other => panic!("gap {gap}: expected damage, got {other:?}"),
        }
    }
}
