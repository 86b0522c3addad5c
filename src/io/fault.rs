//! [`FaultStorage`]: an in-memory filesystem that simulates power loss. (Being written.)

use std::path::Path;
use std::sync::Arc;

use super::{LockGuard, Storage, StorageFile};
use crate::error::{Error, IoOp, Result};

/// How `crash_with` resolves writes that were not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write, mapped page and directory change is lost.
    DropUnsynced,
    /// Every unsynced write, mapped page and directory change survives.
    KeepUnsynced,
    /// Each unsynced sector (written), page (mapped) and directory-change prefix is chosen by this seed.
    Seeded(u64),
}

/// Settings of a [`FaultStorage`].
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Seed for every random choice.
    pub seed: u64,
    /// Largest length any one file may reach.
    pub file_bytes_max: usize,
    /// Total bytes all files may hold before writes fail with "no space".
    pub space_bytes_max: Option<u64>,
}

/// A fault-injecting in-memory filesystem.
#[derive(Debug, Clone)]
pub struct FaultStorage {
    _config: Arc<FaultConfig>,
}

fn stub() -> Error {
    Error::io(IoOp::Open, "fault", std::io::ErrorKind::Unsupported.into())
}

impl FaultStorage {
    /// A fresh, empty filesystem.
    pub fn new(seed: u64) -> Self {
        Self::with_config(FaultConfig {
            seed,
            file_bytes_max: 64 << 20,
            space_bytes_max: None,
        })
    }
    /// A fresh filesystem with these settings.
    pub fn with_config(config: FaultConfig) -> Self {
        FaultStorage {
            _config: Arc::new(config),
        }
    }
    /// Storage operations performed so far (every trait method call counts one).
    pub fn op_count(&self) -> u64 {
        0
    }
    /// After `ops` more operations, every operation fails, as if the machine stopped.
    pub fn crash_after(&self, _ops: u64) {}
    /// The `n`-th operation from now (1 = the next) fails once with an I/O error.
    pub fn fail_nth(&self, _n: u64) {}
    /// Sets or clears the total-bytes budget.
    pub fn set_space_bytes_max(&self, _bytes: Option<u64>) {}
    /// The durable image after a power loss, unsynced state chosen by the configured seed.
    pub fn crash(&self) -> FaultStorage {
        self.clone()
    }
    /// The durable image after a power loss, unsynced state resolved by `mode`.
    pub fn crash_with(&self, _mode: CrashMode) -> FaultStorage {
        self.clone()
    }
}

impl Storage for FaultStorage {
    fn create(&self, _: &Path) -> Result<Arc<dyn StorageFile>> {
        Err(stub())
    }
    fn open(&self, _: &Path) -> Result<Arc<dyn StorageFile>> {
        Err(stub())
    }
    fn open_read_only(&self, _: &Path) -> Result<Arc<dyn StorageFile>> {
        Err(stub())
    }
    fn exists(&self, _: &Path) -> Result<bool> {
        Err(stub())
    }
    fn rename(&self, _: &Path, _: &Path) -> Result<()> {
        Err(stub())
    }
    fn remove(&self, _: &Path) -> Result<()> {
        Err(stub())
    }
    fn create_dir_all(&self, _: &Path) -> Result<()> {
        Err(stub())
    }
    fn sync_dir(&self, _: &Path) -> Result<()> {
        Err(stub())
    }
    fn list(&self, _: &Path) -> Result<Vec<String>> {
        Err(stub())
    }
    fn lock(&self, _: &Path) -> Result<LockGuard> {
        Err(stub())
    }
}
