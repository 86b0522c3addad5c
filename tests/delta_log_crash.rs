//! Delta log crash tests on the fault-injecting storage: power loss at every operation, under
//! concurrency, across reopen and rotation; poisoning after failed syncs and writes; a full disk.
//!
//! The property checked after every crash: the replayed frames are a prefix of the frames
//! appended (in append order, exact bodies, consecutive indexes), and that prefix includes every
//! frame whose `sync_to` returned `Ok`.

#![expect(
    unsafe_code,
    reason = "the internal layers' slot reads and writes (or a storage wrapper's mapping) are unsafe; each use says why it holds"
)]

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use vellum::Error;
use vellum::io::{CrashMode, FaultConfig, FaultStorage, LockGuard, Mapping, Storage, StorageFile};
use vellum::log::{
    DeltaLog, LOG_HEADER_BYTES, LogOptions, LogPosition, TailState, log_file_name, replay,
};

const DIR: &str = "/db";

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn log_path(seq: u64) -> PathBuf {
    dir().join(log_file_name(seq))
}

/// Delegates to a [`FaultStorage`], but after every successful `sync_data` waits (up to 2 ms) until
/// another write has happened, so frames are appended while a sync "is still returning": a leader
/// that published what was written after its sync, instead of what was written before it, would
/// then claim unsynced frames were durable.
#[derive(Debug)]
struct SlowSync(FaultStorage, Arc<AtomicU64>);

#[derive(Debug)]
struct SlowFile(Arc<dyn StorageFile>, Arc<AtomicU64>);

impl Storage for SlowSync {
    fn create(&self, path: &Path) -> vellum::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(SlowFile(self.0.create(path)?, self.1.clone())))
    }
    fn open(&self, path: &Path) -> vellum::Result<Arc<dyn StorageFile>> {
        Ok(Arc::new(SlowFile(self.0.open(path)?, self.1.clone())))
    }
    fn open_read_only(&self, path: &Path) -> vellum::Result<Arc<dyn StorageFile>> {
        self.0.open_read_only(path)
    }
    fn exists(&self, path: &Path) -> vellum::Result<bool> {
        self.0.exists(path)
    }
    fn is_dir(&self, path: &Path) -> vellum::Result<bool> {
        self.0.is_dir(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> vellum::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, path: &Path) -> vellum::Result<()> {
        self.0.remove(path)
    }
    fn create_dir_all(&self, dir: &Path) -> vellum::Result<()> {
        self.0.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> vellum::Result<()> {
        self.0.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> vellum::Result<Vec<String>> {
        self.0.list(dir)
    }
    fn lock(&self, path: &Path) -> vellum::Result<LockGuard> {
        self.0.lock(path)
    }
}

impl StorageFile for SlowFile {
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn len(&self) -> vellum::Result<u64> {
        self.0.len()
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> vellum::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> vellum::Result<()> {
        self.0.write_at(buf, offset)?;
        self.1.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
    fn set_len(&self, len: u64) -> vellum::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&self, offset: u64, len: u64) -> vellum::Result<()> {
        self.0.allocate(offset, len)
    }
    fn punch_hole(&self, offset: u64, len: u64) -> vellum::Result<()> {
        self.0.punch_hole(offset, len)
    }
    fn sync_data(&self) -> vellum::Result<()> {
        self.0.sync_data()?;
        let writes = self.1.load(Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_millis(2);
        while self.1.load(Ordering::SeqCst) == writes && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(20));
        }
        Ok(())
    }
    fn sync_all(&self) -> vellum::Result<()> {
        self.0.sync_all()
    }
    unsafe fn map(&self, offset: u64, len: usize) -> vellum::Result<Mapping> {
        // SAFETY: the caller's contract (`StorageFile::map`) is passed on unchanged.
        unsafe { self.0.map(offset, len) }
    }
    fn allocated_bytes(&self) -> vellum::Result<u64> {
        self.0.allocated_bytes()
    }
}

/// A fresh filesystem with the store directory; files are kept small.
fn fresh(seed: u64) -> FaultStorage {
    let fs = FaultStorage::with_config(FaultConfig {
        seed,
        file_bytes_max: 4 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(dir()).unwrap();
    fs
}

/// Preallocation in small chunks, so runs cross many preallocation boundaries.
fn options() -> LogOptions {
    LogOptions {
        preallocate_bytes: 512,
        ..LogOptions::default()
    }
}

fn arc(fs: &FaultStorage) -> Arc<dyn Storage> {
    Arc::new(fs.clone())
}

/// The body of append `i` of thread `t`: unique, with a length that varies.
fn body(t: u64, i: u64) -> Vec<u8> {
    let mut b = format!("{t}:{i}:").into_bytes();
    b.resize(
        b.len() + ((t * 13 + i * 7) % 41) as usize,
        b'a' + (i % 26) as u8,
    );
    b
}

/// The bodies replayed from log `seq`, or `None` if the file is missing or its header is bad.
fn recovered(fs: &FaultStorage, seq: u64) -> Option<Vec<Vec<u8>>> {
    let mut bodies = Vec::new();
    let result = replay(fs, &log_path(seq), |f| {
        bodies.push(f.body.clone());
        Ok(())
    });
    match result {
        Ok(summary) => {
            assert_eq!(summary.frames, bodies.len() as u64);
            // A crash cannot damage synced frames: no frame past the stop may claim the stop
            // durable (a claim past what a returned sync covered would show here).
            assert!(
                !matches!(summary.tail, TailState::Damaged { .. }),
                "a crash left what reads as damage to durable frames: {:?}",
                summary.tail
            );
            Some(bodies)
        }
        Err(Error::Io { .. }) => None,
        Err(e) => {
            assert!(e.as_corruption().is_some(), "unexpected error {e}");
            None
        }
    }
}

/// Asserts `got` is a prefix of `appended` that includes the first `acked` frames.
fn assert_prefix(got: &[Vec<u8>], appended: &[Vec<u8>], acked: usize, context: &str) {
    assert!(
        got.len() <= appended.len(),
        "{context}: {} frames recovered but only {} appended",
        got.len(),
        appended.len()
    );
    assert_eq!(got, &appended[..got.len()], "{context}: not a prefix");
    assert!(
        got.len() >= acked,
        "{context}: {} frames recovered but {acked} were acknowledged",
        got.len()
    );
}

/// What a single-threaded run did before the machine stopped.
#[derive(Debug, Default)]
struct Run {
    created: bool,
    appended: Vec<Vec<u8>>,
    acked: usize,
    /// Frames written out to the file (appends stay pending in memory until a sync writes them).
    written: usize,
}

/// Appends `count` frames tagged `tag` to `log`, syncing each; stops at the first error.
fn append_synced(log: &DeltaLog, tag: u64, count: u64, run: &mut Run) {
    let base = run.appended.len();
    let mut ends = Vec::new();
    for i in 0..count {
        let b = body(tag, i);
        let Ok(pos) = log.append(&b) else { break };
        ends.push(pos.offset);
        run.appended.push(b);
        if log.sync().is_err() {
            break;
        }
        run.acked = run.appended.len();
    }
    let written = log.written_position().offset;
    run.written = base + ends.iter().filter(|&&end| end <= written).count();
}

/// The crash images checked for each run: both extremes and two seeded ones.
fn crash_images(fs: &FaultStorage, k: u64) -> Vec<(String, FaultStorage)> {
    vec![
        ("drop".to_owned(), fs.crash_with(CrashMode::DropUnsynced)),
        ("keep".to_owned(), fs.crash_with(CrashMode::KeepUnsynced)),
        (format!("seeded({k})"), fs.crash_with(CrashMode::Seeded(k))),
        ("crash()".to_owned(), fs.crash()),
    ]
}

#[test]
fn crash_at_every_operation_across_two_generations() {
    // Count the operations of an uninterrupted run so every k is covered, plus a few past it.
    let total = {
        let fs = fresh(0);
        let before = fs.op_count();
        let log = DeltaLog::create(arc(&fs), dir(), 1, 0, options()).unwrap();
        append_synced(&log, 0, 20, &mut Run::default());
        fs.op_count() - before
    };
    assert!(total > 40, "{total} operations");

    for k in 0..=total + 2 {
        let fs = fresh(k);
        fs.crash_after(k);
        let mut run = Run::default();
        if let Ok(log) = DeltaLog::create(arc(&fs), dir(), 1, 7, options()) {
            run.created = true;
            append_synced(&log, 0, 20, &mut run);
        }
        if k > total {
            assert_eq!(
                run.acked, 20,
                "k = {k}: the whole run should have succeeded"
            );
        }
        for (mode, image) in crash_images(&fs, k) {
            let context = format!("k = {k}, {mode}");
            let got = match recovered(&image, 1) {
                Some(got) => got,
                None => {
                    // Only a log whose creation never returned may be missing or headerless.
                    assert!(!run.created, "{context}: created log lost");
                    continue;
                }
            };
            assert_prefix(&got, &run.appended, run.acked, &context);
            if mode == "drop" {
                assert_eq!(got.len(), run.acked, "{context}: unsynced frame survived");
            }
            if mode == "keep" {
                assert_eq!(got.len(), run.written, "{context}: written frame lost");
            }

            // Second generation: reopen, append more, crash somewhere, check again.
            let k2 = (k * 5) % (total + 8);
            image.crash_after(k2);
            let mut seen = Vec::new();
            let mut run2 = Run {
                created: true,
                appended: got.clone(),
                acked: 0,
                written: got.len(),
            };
            if let Ok((log, summary)) = DeltaLog::open(arc(&image), dir(), 1, options(), |f| {
                seen.push(f.body.clone());
                Ok(())
            }) {
                assert_eq!(seen, got, "{context}: open saw other frames than replay");
                assert_eq!(summary.frames, got.len() as u64);
                // Everything replayed is durable once open returns.
                run2.acked = got.len();
                append_synced(&log, 1, 10, &mut run2);
            }
            // The first generation's frames were durable in the image whether or not open got
            // through, so they survive whatever the second crash does.
            let floor = run2.acked.max(got.len());
            for (mode2, image2) in crash_images(&image, k2) {
                let context = format!("{context}, then k2 = {k2}, {mode2}");
                let got2 = recovered(&image2, 1)
                    .unwrap_or_else(|| panic!("{context}: log lost in generation 2"));
                assert_prefix(&got2, &run2.appended, floor, &context);
            }
        }
    }
}

#[test]
fn concurrent_commits_survive_crashes() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 60;
    const UNSYNCED_MAX: u64 = 2000;
    for (seed, slow) in (0..4u64).flat_map(|s| [(s, false), (s, true)]) {
        // Stop the machine at various points of the run (and once not at all).
        for stop in [23u64, 150, 333, u64::MAX] {
            let fs = fresh(seed);
            let storage: Arc<dyn Storage> = if slow {
                Arc::new(SlowSync(fs.clone(), Arc::default()))
            } else {
                arc(&fs)
            };
            let log = DeltaLog::create(storage, dir(), 1, 0, options()).unwrap();
            fs.crash_after(stop);
            // Threads 1.. append and commit; thread 0 appends without ever syncing until they are
            // done, so frames keep arriving while leaders sync.
            let committers_done = AtomicBool::new(false);
            let committers_left = AtomicU64::new(THREADS - 1);
            // Per thread: bodies appended (in order) and how many were acknowledged.
            let results: Vec<(Vec<Vec<u8>>, usize)> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..THREADS)
                    .map(|t| {
                        let (log, done, left) = (&log, &committers_done, &committers_left);
                        s.spawn(move || {
                            let mut appended = Vec::new();
                            let mut acked = 0;
                            if t == 0 {
                                for i in 0..UNSYNCED_MAX {
                                    if done.load(Ordering::SeqCst)
                                        || log.append(&body(t, i)).is_err()
                                    {
                                        break;
                                    }
                                    appended.push(body(t, i));
                                    std::thread::sleep(Duration::from_micros(10));
                                }
                                return (appended, acked);
                            }
                            for i in 0..PER_THREAD {
                                let b = body(t, i);
                                let Ok(pos) = log.append(&b) else { break };
                                appended.push(b);
                                // Every third frame is left unsynced until the next one's sync.
                                if i % 3 == 2 {
                                    continue;
                                }
                                if log.sync_to(pos).is_err() {
                                    break;
                                }
                                acked = appended.len();
                            }
                            if left.fetch_sub(1, Ordering::SeqCst) == 1 {
                                done.store(true, Ordering::SeqCst);
                            }
                            (appended, acked)
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            let durable = log.durable_position();
            let written = log.written_position();
            let appended_total: usize = results.iter().map(|(a, _)| a.len()).sum();
            if stop == u64::MAX {
                let committed: usize = results[1..].iter().map(|(a, _)| a.len()).sum();
                assert_eq!(committed as u64, (THREADS - 1) * PER_THREAD);
            }
            let owner: HashMap<Vec<u8>, (usize, usize)> = results
                .iter()
                .enumerate()
                .flat_map(|(t, (appended, _))| {
                    appended
                        .iter()
                        .enumerate()
                        .map(move |(i, b)| (b.clone(), (t, i)))
                })
                .collect();

            for (mode, image) in crash_images(&fs, seed) {
                let context = format!("seed {seed}, slow {slow}, stop {stop}, {mode}");
                let mut frames = Vec::new();
                let summary = replay(&image, &log_path(1), |f| {
                    frames.push(f.body.clone());
                    Ok(())
                })
                .unwrap();
                assert!(
                    !matches!(summary.tail, TailState::Damaged { .. }),
                    "{context}: a crash cannot damage synced frames: {:?}",
                    summary.tail
                );
                // Each thread's recovered frames are, in order, a prefix of what it appended that
                // includes what it had acknowledged; nothing else appears, nothing twice.
                let mut next = vec![0usize; THREADS as usize];
                let mut seen = HashSet::new();
                for b in &frames {
                    let &(t, i) = owner
                        .get(b)
                        .unwrap_or_else(|| panic!("{context}: frame never appended"));
                    assert!(seen.insert(b.clone()), "{context}: duplicate frame");
                    assert_eq!(i, next[t], "{context}: thread {t} frames out of order");
                    next[t] += 1;
                }
                for (t, (_, acked)) in results.iter().enumerate() {
                    assert!(
                        next[t] >= *acked,
                        "{context}: thread {t} acknowledged {acked} but {} survived",
                        next[t]
                    );
                }
                // The durable position is a lower bound: a sync may also cover frames written
                // after its leader read the target, but never fewer than it published.
                assert!(summary.valid_end >= durable.offset, "{context}");
                if mode == "keep" {
                    // Every frame written out survives when unsynced writes are kept; frames
                    // still pending in memory (appended, never synced) are lost with the process.
                    assert_eq!(summary.valid_end, written.offset, "{context}");
                    assert!(frames.len() <= appended_total, "{context}");
                }
            }
        }
    }
}

#[test]
fn crash_at_every_operation_around_rotation() {
    let run_all = |log: &DeltaLog, first: &mut Run, second: &mut Run, rotated: &mut bool| {
        append_synced(log, 1, 5, first);
        if first.acked < 5 {
            return;
        }
        // Two unsynced frames: rotation itself must make them durable.
        for i in 5..7 {
            let b = body(1, i);
            if log.append(&b).is_err() {
                return;
            }
            first.appended.push(b);
        }
        if log.rotate(2, 99).is_err() {
            return;
        }
        *rotated = true;
        first.acked = first.appended.len();
        second.created = true;
        append_synced(log, 2, 5, second);
    };
    let total = {
        let fs = fresh(0);
        let log = DeltaLog::create(arc(&fs), dir(), 1, 0, options()).unwrap();
        let before = fs.op_count();
        run_all(&log, &mut Run::default(), &mut Run::default(), &mut false);
        fs.op_count() - before
    };
    for k in 0..=total + 1 {
        let fs = fresh(k);
        let log = DeltaLog::create(arc(&fs), dir(), 1, 0, options()).unwrap();
        fs.crash_after(k);
        let (mut first, mut second, mut rotated) = (Run::default(), Run::default(), false);
        run_all(&log, &mut first, &mut second, &mut rotated);
        if k > total {
            assert!(
                rotated && second.acked == 5,
                "k = {k}: the run should have succeeded"
            );
        }
        for (mode, image) in crash_images(&fs, k) {
            let context = format!("k = {k}, {mode}");
            let got1 = recovered(&image, 1).unwrap_or_else(|| panic!("{context}: log 1 lost"));
            assert_prefix(&got1, &first.appended, first.acked, &context);
            match recovered(&image, 2) {
                Some(got2) => assert_prefix(&got2, &second.appended, second.acked, &context),
                None => assert!(!rotated, "{context}: log 2 lost after rotate returned"),
            }
        }
    }
}

#[test]
fn failed_sync_poisons_the_log() {
    let fs = fresh(1);
    let log = DeltaLog::create(arc(&fs), dir(), 1, 0, options()).unwrap();
    let a = log.append(b"first").unwrap();
    log.sync_to(a).unwrap();
    let b = log.append(b"second").unwrap();
    let durable = log.durable_position();
    assert_eq!(durable, a);

    // sync_to(b) makes two storage calls: the write of the pending frame, then the sync_data;
    // make the second fail.
    fs.fail_nth(2);
    let err = log.sync_to(b).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: vellum::IoOp::SyncData,
                ..
            }
        ),
        "{err}"
    );
    assert!(log.is_poisoned());
    assert!(matches!(log.append(b"third"), Err(Error::Poisoned { .. })));
    assert!(matches!(log.sync(), Err(Error::Poisoned { .. })));
    assert!(matches!(log.sync_to(b), Err(Error::Poisoned { .. })));
    assert!(matches!(log.sync_to(a), Err(Error::Poisoned { .. })));
    assert!(matches!(log.rotate(2, 0), Err(Error::Poisoned { .. })));
    assert_eq!(log.durable_position(), durable);
    assert!(!fs.exists(&log_path(2)).unwrap());

    // What survives is what was durable: "first", and "second" only if its sectors happened to.
    let image = fs.crash_with(CrashMode::DropUnsynced);
    assert_eq!(recovered(&image, 1).unwrap(), vec![b"first".to_vec()]);
}

#[test]
fn failed_frame_write_poisons_the_log() {
    let fs = fresh(2);
    let log = DeltaLog::create(arc(&fs), dir(), 1, 0, options()).unwrap();
    let a = log.append(b"first").unwrap();
    log.sync_to(a).unwrap();
    // Appends stay pending in memory; the sync's first call is the write that puts them out.
    let b = log.append(b"second").unwrap();
    fs.fail_nth(1);
    let err = log.sync_to(b).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: vellum::IoOp::Write,
                ..
            }
        ),
        "{err}"
    );
    assert!(log.is_poisoned());
    assert!(matches!(log.append(b"third"), Err(Error::Poisoned { .. })));
    assert!(matches!(log.sync_to(a), Err(Error::Poisoned { .. })));
    assert_eq!(log.written_position(), a);
}

#[test]
fn full_disk_fails_the_append_without_poisoning() {
    let fs = fresh(3);
    let opts = LogOptions {
        preallocate_bytes: 4096,
        ..LogOptions::default()
    };
    let log = DeltaLog::create(arc(&fs), dir(), 1, 0, opts).unwrap();
    let mut bodies = Vec::new();
    let first = body(0, 0);
    log.append(&first).unwrap();
    bodies.push(first);
    // No byte more may be allocated: appends go on inside the reserved chunk, then fail cleanly.
    fs.set_space_bytes_max(Some(fs.space_used_bytes()));
    let mut failed = None;
    for i in 1..200 {
        let b = body(0, i);
        match log.append(&b) {
            Ok(pos) => {
                log.sync_to(pos).unwrap();
                bodies.push(b);
            }
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("the budget must run out");
    assert!(err.is_no_space(), "{err}");
    assert!(!log.is_poisoned());
    let written = log.written_position();
    // Still full: the append fails again, and nothing moved.
    assert!(log.append(&body(0, 999)).unwrap_err().is_no_space());
    assert_eq!(log.written_position(), written);
    // Earlier frames can still be synced.
    log.sync().unwrap();

    fs.set_space_bytes_max(None);
    for i in 200..210 {
        let b = body(0, i);
        let pos = log.append(&b).unwrap();
        log.sync_to(pos).unwrap();
        bodies.push(b);
    }
    let image = fs.crash_with(CrashMode::DropUnsynced);
    let mut frames = Vec::new();
    let summary = replay(&image, &log_path(1), |f| {
        frames.push(f.clone());
        Ok(())
    })
    .unwrap();
    assert_eq!(summary.tail, TailState::Clean);
    let got: Vec<Vec<u8>> = frames.iter().map(|f| f.body.clone()).collect();
    assert_eq!(got, bodies);
    // No hole: each frame starts where the previous one ended.
    let mut at = LOG_HEADER_BYTES as u64;
    for f in &frames {
        assert_eq!(f.offset, at);
        at = f.end();
    }
    assert_eq!(log.durable_position(), LogPosition { seq: 1, offset: at });
}

#[test]
fn concurrent_rotation_keeps_acknowledged_frames() {
    const THREADS: u64 = 4;
    const PER_THREAD: u64 = 80;
    for seed in 0..3u64 {
        let fs = fresh(seed);
        let log = DeltaLog::create(arc(&fs), dir(), 1, 0, options()).unwrap();
        let results: Vec<Vec<(Vec<u8>, LogPosition)>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let log = &log;
                    s.spawn(move || {
                        let mut acked = Vec::new();
                        for i in 0..PER_THREAD {
                            let b = body(t, i);
                            let pos = log.append(&b).unwrap();
                            log.sync_to(pos).unwrap();
                            assert!(log.durable_position() >= pos);
                            acked.push((b, pos));
                        }
                        acked
                    })
                })
                .collect();
            for seq in 2..=4 {
                std::thread::yield_now();
                log.rotate(seq, seq * 100).unwrap();
            }
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let image = fs.crash_with(CrashMode::DropUnsynced);
        let mut where_found = HashMap::new();
        for seq in 1..=4 {
            let mut offset_of = Vec::new();
            let summary = replay(&image, &log_path(seq), |f| {
                offset_of.push((f.body.clone(), f.end()));
                Ok(())
            })
            .unwrap();
            assert_eq!(summary.header.log_seq, seq);
            for (b, end) in offset_of {
                assert!(
                    where_found
                        .insert(b, LogPosition { seq, offset: end })
                        .is_none()
                );
            }
        }
        for (b, pos) in results.iter().flatten() {
            assert_eq!(
                where_found.get(b),
                Some(pos),
                "seed {seed}: frame lost or moved"
            );
        }
    }
}
