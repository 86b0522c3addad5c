//! Helpers shared by the FasterLog integration tests.

#![allow(dead_code, reason = "each test binary uses part of the shared helpers")]

use std::sync::Arc;

use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum_faster::{FasterLog, FasterLogOptions};

/// A xorshift64 generator, deterministic from its seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The environment variable `name` as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `len` bytes that are a pure function of `seed`.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x2545_f491_4f6c_dd1d) | 1;
    (0..len)
        .map(|i| {
            if i % 8 == 0 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            (x >> (i % 8 * 8)) as u8
        })
        .collect()
}

/// Runtime options with small files and windows, no background checkpoint or compaction, and
/// no background EVENTUAL flush (so crash points are deterministic).
pub fn small_options() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        eventual_flush_interval: std::time::Duration::from_secs(60),
        checkpoint_log_bytes: 1 << 40,
        ..RuntimeOptions::default()
    };
    o.compaction.interval = None;
    o.data.alloc.file_bytes_max = 64 << 20;
    o.data.window_bytes = 1 << 20;
    o.data.mapped_bytes_max = 16 << 20;
    o.log.preallocate_bytes = 64 << 10;
    o
}

/// Log options with `page_bytes` pages and `memory_pages` of them in memory.
pub fn log_options(page_bytes: u32, memory_pages: u32) -> FasterLogOptions {
    FasterLogOptions {
        page_bytes,
        memory_pages,
        policy: None,
    }
}

/// Opens a runtime on the real filesystem in `dir` and log `name` in it.
pub fn open_real(dir: &std::path::Path, name: &str, options: FasterLogOptions) -> FasterLog {
    let rt = Arc::new(DurableRuntime::open(dir, small_options()).expect("open runtime"));
    FasterLog::open(rt, name, options).expect("open log")
}

/// Every committed entry's bytes, in order. Entries come back at increasing addresses below the
/// committed tail (asserted), or the scan itself would be wrong.
pub fn scan_bytes(log: &FasterLog) -> Vec<Vec<u8>> {
    let mut last = None;
    log.scan_all()
        .map(|e| {
            let e = e.expect("scan");
            assert!(
                last.is_none_or(|l| e.address > l),
                "scan went back: {} after {last:?}",
                e.address
            );
            last = Some(e.address);
            e.bytes
        })
        .collect()
}
