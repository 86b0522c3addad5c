//! Store images: every file of a store directory as bytes, so tests can damage many copies of one
//! store, each on its own fault-injecting filesystem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use vellum::io::{FaultStorage, Storage};
use vellum::runtime::{CommitPolicy, DurableRuntime};

use super::Rng;
use super::workload::{self, Written};

/// The files of one store directory.
#[derive(Debug, Clone)]
pub struct Image {
    /// The directory the files lived in (and are written back to).
    pub dir: PathBuf,
    /// File name → bytes.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Image {
    /// Reads every file of `dir` on `storage`.
    pub fn capture(storage: &dyn Storage, dir: &Path) -> Image {
        let mut files = BTreeMap::new();
        for name in storage.list(dir).expect("list") {
            let f = storage
                .open_read_only(&dir.join(&name))
                .expect("open for capture");
            files.insert(name, f.read_all().expect("read for capture"));
        }
        Image {
            dir: dir.to_path_buf(),
            files,
        }
    }

    /// A new fault filesystem holding exactly these files, durably.
    pub fn materialize(&self) -> FaultStorage {
        let fs = super::fault_storage(1, self.dir.to_str().expect("utf-8 dir"));
        for (name, bytes) in &self.files {
            let f = fs.create(&self.dir.join(name)).expect("create");
            if !bytes.is_empty() {
                f.write_at(bytes, 0).expect("write");
            }
            f.sync_data().expect("sync");
            assert_eq!(f.len().expect("len"), bytes.len() as u64, "{name}");
        }
        fs.sync_dir(&self.dir).expect("sync dir");
        fs
    }

    /// The first file whose name satisfies `pred`.
    pub fn name_where(&self, pred: impl Fn(&str) -> bool) -> String {
        self.files
            .keys()
            .find(|n| pred(n))
            .cloned()
            .unwrap_or_else(|| panic!("no such file in {:?}", self.files.keys()))
    }
}

/// Opens the runtime on `fs` with the small test options.
pub fn open(fs: &FaultStorage, dir: &Path) -> vellum::Result<DurableRuntime> {
    DurableRuntime::open_with(
        Arc::new(fs.clone()),
        dir,
        super::small_deterministic_options(),
    )
}

/// A closed store: mixed-policy commits, a checkpoint, more commits (so the open log holds
/// records after the checkpoint), closed cleanly. Returns its image and what it holds.
pub fn clean_store(dir: &str, seed: u64) -> (Image, Written) {
    let fs = super::fault_storage(seed, dir);
    let rt = open(&fs, Path::new(dir)).expect("create");
    let policies = [
        CommitPolicy::Strict,
        CommitPolicy::Balanced,
        CommitPolicy::Eventual,
    ];
    let mut rng = Rng::new(seed);
    let mut w = Written::default();
    workload::run(&rt, &mut rng, 20, &policies, &mut w).expect("workload");
    rt.checkpoint().expect("checkpoint");
    workload::run(&rt, &mut rng, 20, &policies, &mut w).expect("workload after checkpoint");
    rt.close().expect("close");
    (Image::capture(&fs, Path::new(dir)), w)
}
