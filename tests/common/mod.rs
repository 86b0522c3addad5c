//! Helpers shared by the integration tests: a seeded generator, environment knobs, and the
//! delta-log tests' frame bodies and replay.

#![allow(dead_code, reason = "each test binary uses part of the shared helpers")]

/// A xorshift64 generator: tiny, deterministic from its seed, good enough to drive workloads.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (0 is made non-zero, which xorshift needs).
    pub fn new(seed: u64) -> Self {
        Rng(seed | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        // Xorshift maps non-zero states to non-zero states; zero would repeat forever.
        debug_assert_ne!(self.0, 0, "xorshift state reached zero");
        self.0
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The environment variable `name` as a number, if set and numeric.
pub fn env_opt(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The environment variable `name` as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    env_opt(name).unwrap_or(default)
}

/// Runtime options for stores on the fault storage: small files, windows and log preallocation
/// (crash images stay small), and no background flush or checkpoint, so storage operations come
/// only from the calls a test makes and a crash point is deterministic.
pub fn small_deterministic_options() -> vellum::runtime::RuntimeOptions {
    let mut o = vellum::runtime::RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: std::time::Duration::from_secs(60),
        checkpoint_log_bytes: 1 << 40,
        ..vellum::runtime::RuntimeOptions::default()
    };
    o.compaction.interval = None;
    o.data.alloc.file_bytes_max = 64 << 20;
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 16 << 20;
    o.log.preallocate_bytes = 64 << 10;
    o
}

/// `fsck` options matching [`small_deterministic_options`] (the file and window sizes, which
/// are not stored on disk).
pub fn fsck_options() -> vellum::inspect::FsckOptions {
    let data = small_deterministic_options().data;
    vellum::inspect::FsckOptions {
        file_bytes_max: data.alloc.file_bytes_max,
        window_bytes: data.window_bytes,
        ..vellum::inspect::FsckOptions::default()
    }
}

/// A fault-injecting filesystem seeded with `seed`, with directory `dir` created and files of at
/// most 64 MiB.
pub fn fault_storage(seed: u64, dir: &str) -> vellum::io::FaultStorage {
    fault_storage_sized(seed, std::path::Path::new(dir), 64 << 20)
}

/// A fault-injecting filesystem seeded with `seed`, with directory `dir` created and files of at
/// most `file_bytes_max` bytes.
pub fn fault_storage_sized(
    seed: u64,
    dir: &std::path::Path,
    file_bytes_max: usize,
) -> vellum::io::FaultStorage {
    use vellum::io::Storage;
    let fs = vellum::io::FaultStorage::with_config(vellum::io::FaultConfig {
        seed,
        file_bytes_max,
        space_bytes_max: None,
    });
    fs.create_dir_all(dir)
        .expect("creating a directory on a fresh fault storage");
    fs
}

/// Every way a crash can treat unsynced state: drop it all, keep it all, and eight seeds.
pub fn all_crash_modes() -> Vec<vellum::io::CrashMode> {
    use vellum::io::CrashMode;
    let mut m = vec![CrashMode::DropUnsynced, CrashMode::KeepUnsynced];
    m.extend((0..8).map(CrashMode::Seeded));
    m
}

/// A delta-log frame body of `len` bytes that differs for every `tag`.
pub fn body(tag: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(131).wrapping_add(i as u64 * 7) % 251) as u8 + 1)
        .collect()
}

/// Replays the log at `path` on the real filesystem, keeping every valid frame.
pub fn replay_all(path: &std::path::Path) -> (Vec<vellum::log::Frame>, vellum::log::ReplaySummary) {
    let mut frames = Vec::new();
    let summary = vellum::log::replay(&vellum::io::OsStorage::new(), path, |f| {
        frames.push(f.clone());
        Ok(())
    })
    .unwrap();
    (frames, summary)
}

pub mod format_oracle;
pub mod image;
pub mod workload;
