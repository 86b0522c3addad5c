//! The metadata store through its public API: create, open and publish on the real filesystem and
//! the in-memory one; the checks that tie a manifest to its superblock; torn superblock slots seen
//! through `open`; and lock-free readers racing a writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use vellum::error::{CorruptionKind, IoOp};
use vellum::io::{FaultConfig, FaultStorage, OsStorage, Storage};
use vellum::meta::{
    Counters, DeltaLogRef, Manifest, ManifestRef, MetaStore, MetaUpdate, RootCatalog, SLOT_BYTES,
    Superblock, manifest_file_name,
};
use vellum::{Corruption, Error};

fn os_store_dir() -> (tempfile::TempDir, PathBuf, Arc<dyn Storage>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    std::fs::create_dir(&dir).unwrap();
    (tmp, dir, Arc::new(OsStorage::new()))
}

fn fault() -> (FaultStorage, &'static Path) {
    let fs = FaultStorage::with_config(FaultConfig {
        seed: 1,
        file_bytes_max: 1 << 20,
        space_bytes_max: None,
    });
    let dir = Path::new("/db");
    fs.create_dir_all(dir).unwrap();
    (fs, dir)
}

fn roots(pairs: &[(&str, u64)]) -> RootCatalog {
    RootCatalog::try_from_pairs(pairs.iter().copied()).unwrap()
}

fn manifest_with_log(seq: u64) -> Manifest {
    Manifest {
        delta_logs: vec![DeltaLogRef {
            file: format!("log-{seq:016x}.vlog"),
            seq,
            start_epoch: 0,
            end_epoch: None,
            bytes: None,
        }],
        counters: Counters {
            next_log_seq: seq + 1,
            next_checkpoint_seq: 1,
            next_data_seq: 1,
        },
        ..Manifest::empty()
    }
}

fn corruption(r: Result<MetaStore, Error>) -> Corruption {
    match r {
        Err(Error::Corruption(c)) => *c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn create_publish_reopen_on_the_real_filesystem() {
    let (_tmp, dir, storage) = os_store_dir();
    let store = MetaStore::create(storage.clone(), &dir, Manifest::empty()).unwrap();
    let p = store.current();
    assert_eq!((p.superblock.generation, p.superblock.commit_epoch), (1, 0));
    assert!(p.superblock.roots.is_empty());
    assert_eq!(*p.manifest, Manifest::empty());
    let mut names = storage.list(&dir).unwrap();
    assert_eq!(names, [manifest_file_name(1), "superblock".to_owned()]);
    assert_eq!(
        std::fs::metadata(dir.join("superblock")).unwrap().len(),
        8192
    );

    store
        .publish(MetaUpdate {
            commit_epoch: 5,
            roots: roots(&[("a", 1)]),
            manifest: None,
        })
        .unwrap();
    store
        .publish(MetaUpdate {
            commit_epoch: 9,
            roots: roots(&[("a", 2), ("b", 3)]),
            manifest: Some(manifest_with_log(1)),
        })
        .unwrap();
    let published = store.current();
    assert_eq!(published.superblock.generation, 3);
    assert_eq!(published.manifest.seq, 2);
    assert_eq!(published.superblock.manifest.seq, 2);
    // The previous manifest was removed once the new slot was durable.
    names = storage.list(&dir).unwrap();
    assert_eq!(names, [manifest_file_name(2), "superblock".to_owned()]);
    drop(store);

    let reopened = MetaStore::open(storage.clone(), &dir).unwrap();
    assert_eq!(*reopened.current(), *published);
    // Publishing after reopening continues the generation sequence in the other slot.
    reopened
        .publish(MetaUpdate {
            commit_epoch: 9,
            roots: roots(&[("c", 4)]),
            manifest: None,
        })
        .unwrap();
    let loaded = MetaStore::load_read_only(&*storage, &dir).unwrap();
    assert_eq!(loaded.superblock.active.generation, 4);
    assert_eq!(loaded.superblock.active_slot, 0);
    assert_eq!(loaded.superblock.slots[1].as_ref().unwrap().generation, 3);
    assert_eq!(loaded.manifest, with_seq(manifest_with_log(1), 2));
    assert!(loaded.leftovers.is_empty());
}

fn with_seq(manifest: Manifest, seq: u64) -> Manifest {
    Manifest { seq, ..manifest }
}

#[test]
fn create_refuses_an_existing_store_and_open_needs_one() {
    let (_tmp, dir, storage) = os_store_dir();
    match MetaStore::open(storage.clone(), &dir) {
        Err(Error::Io {
            op: IoOp::Open,
            source,
            ..
        }) => assert_eq!(source.kind(), std::io::ErrorKind::NotFound),
        other => panic!("expected no store, got {other:?}"),
    }
    assert!(!MetaStore::exists(&*storage, &dir).unwrap());
    MetaStore::create(storage.clone(), &dir, Manifest::empty()).unwrap();
    assert!(MetaStore::exists(&*storage, &dir).unwrap());
    match MetaStore::create(storage.clone(), &dir, Manifest::empty()) {
        Err(Error::Io {
            op: IoOp::Create,
            source,
            ..
        }) => assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists),
        other => panic!("expected an existing store, got {other:?}"),
    }
}

#[test]
fn open_removes_leftovers_and_load_read_only_only_lists_them() {
    let (fs, dir) = fault();
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    drop(MetaStore::create(storage.clone(), dir, Manifest::empty()).unwrap());
    let stray = [
        manifest_file_name(2),
        format!("{}.tmp", manifest_file_name(2)),
        manifest_file_name(0),
        "superblock.tmp".to_owned(),
    ];
    // Only the metadata's own temporaries are leftovers: no layer writes a log through a `.tmp`,
    // and a user's `draft.tmp` is not the store's to remove.
    let kept = [
        "log-0000000000000001.vlog",
        "manifest-2.json",
        "notes",
        "log-0000000000000001.vlog.tmp",
        "draft.tmp",
    ];
    for name in stray.iter().map(String::as_str).chain(kept) {
        let f = fs.create(&dir.join(name)).unwrap();
        f.write_at(b"junk", 0).unwrap();
    }
    let loaded = MetaStore::load_read_only(&fs, dir).unwrap();
    let mut expect: Vec<String> = stray.to_vec();
    expect.sort();
    assert_eq!(loaded.leftovers, expect);
    assert_eq!(fs.list(dir).unwrap().len(), 2 + stray.len() + kept.len());

    let store = MetaStore::open(storage, dir).unwrap();
    let mut left = fs.list(dir).unwrap();
    left.sort();
    let mut want: Vec<String> = kept.iter().map(|s| s.to_string()).collect();
    want.extend([manifest_file_name(1), "superblock".to_owned()]);
    want.sort();
    assert_eq!(left, want);
    assert_eq!(store.current().manifest.seq, 1);
}

/// Rewrites the manifest file of seq 1 in a fresh in-memory store, then expects `open` to fail
/// with `kind` at offset 0 of that file.
fn manifest_check(rewrite: impl FnOnce(&FaultStorage, &Path), kind: CorruptionKind) {
    let (fs, dir) = fault();
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    drop(MetaStore::create(storage.clone(), dir, manifest_with_log(1)).unwrap());
    let path = dir.join(manifest_file_name(1));
    rewrite(&fs, &path);
    let c = corruption(MetaStore::open(storage, dir));
    assert_eq!((c.file, c.offset, c.kind), (path, 0, kind));
}

fn replace_file(fs: &FaultStorage, path: &Path, bytes: &[u8]) {
    fs.remove(path).unwrap();
    fs.create(path).unwrap().write_at(bytes, 0).unwrap();
}

#[test]
fn open_checks_the_manifest_against_the_superblock() {
    let good = with_seq(manifest_with_log(1), 1).encode().unwrap();
    let reference = ManifestRef::of(1, &good);
    manifest_check(|fs, p| fs.remove(p).unwrap(), CorruptionKind::MissingFile);
    manifest_check(
        |fs, p| replace_file(fs, p, &good[..good.len() - 1]),
        CorruptionKind::Mismatch {
            what: "manifest_bytes",
            expected: good.len() as u64,
            actual: good.len() as u64 - 1,
        },
    );
    let mut flipped = good.clone();
    flipped[40] ^= 0x01;
    let actual = vellum::codec::crc32c(&flipped);
    manifest_check(
        |fs, p| replace_file(fs, p, &flipped),
        CorruptionKind::ChecksumMismatch {
            expected: reference.crc32c,
            actual,
        },
    );
    // A valid manifest of another seq, with the same length, in seq 1's file: the superblock
    // names its CRC too, so point the slot at it to reach the seq check.
    let other = with_seq(manifest_with_log(1), 3).encode().unwrap();
    assert_eq!(other.len(), good.len());
    manifest_check(
        |fs, p| {
            replace_file(fs, p, &other);
            let sb = Superblock {
                generation: 1,
                commit_epoch: 0,
                manifest: ManifestRef::of(1, &other),
                roots: RootCatalog::new(),
            };
            let f = fs.open(&p.with_file_name("superblock")).unwrap();
            f.write_at(&sb.encode().unwrap(), SLOT_BYTES as u64)
                .unwrap();
        },
        CorruptionKind::Mismatch {
            what: "manifest_seq",
            expected: 1,
            actual: 3,
        },
    );
}

/// Store states A (generation 2) and B (generation 3, the next publish, with a new manifest), with
/// the superblock file's bytes and both manifests, so a test can rebuild the disk as a torn
/// publish of B would leave it.
struct TornSetup {
    storage: Arc<dyn Storage>,
    fs: FaultStorage,
    dir: &'static Path,
    before: Vec<u8>,
    after: Vec<u8>,
    manifests: [(String, Vec<u8>); 2],
    a: Superblock,
    b: Superblock,
}

fn torn_setup() -> TornSetup {
    let (fs, dir) = fault();
    let storage: Arc<dyn Storage> = Arc::new(fs.clone());
    let store = MetaStore::create(storage.clone(), dir, Manifest::empty()).unwrap();
    let sb_path = dir.join("superblock");
    let read = |p: &Path| fs.open(p).unwrap().read_all().unwrap();
    store
        .publish(MetaUpdate {
            commit_epoch: 1,
            roots: roots(&[("a", 1)]),
            manifest: None,
        })
        .unwrap();
    let a = store.current().superblock.clone();
    let before = read(&sb_path);
    let old_manifest = read(&dir.join(manifest_file_name(1)));
    store
        .publish(MetaUpdate {
            commit_epoch: 2,
            roots: roots(&[("b", 2)]),
            manifest: Some(manifest_with_log(1)),
        })
        .unwrap();
    let b = store.current().superblock.clone();
    let after = read(&sb_path);
    let new_manifest = read(&dir.join(manifest_file_name(2)));
    TornSetup {
        storage,
        fs,
        dir,
        before,
        after,
        manifests: [
            (manifest_file_name(1), old_manifest),
            (manifest_file_name(2), new_manifest),
        ],
        a,
        b,
    }
}

impl TornSetup {
    /// Rewrites the superblock file as `image` and restores both manifests (the completed publish
    /// removed A's, and each open removes the one not in force), so the directory is what a crash
    /// during B's slot write leaves.
    fn install(&self, image: &[u8]) {
        let sb = self.fs.open(&self.dir.join("superblock")).unwrap();
        sb.write_at(image, 0).unwrap();
        for (name, bytes) in &self.manifests {
            let m = self.dir.join(name);
            if !self.fs.exists(&m).unwrap() {
                self.fs.create(&m).unwrap().write_at(bytes, 0).unwrap();
            }
        }
    }

    fn open_state(&self) -> Superblock {
        let store = MetaStore::open(self.storage.clone(), self.dir).unwrap();
        let p = store.current();
        assert_eq!(p.manifest.seq, p.superblock.manifest.seq);
        p.superblock.clone()
    }
}

#[test]
fn torn_superblock_write_recovers_the_other_slot() {
    let t = torn_setup();
    let slot = 1; // generation 3 lives in slot 1
    let range = slot * SLOT_BYTES..(slot + 1) * SLOT_BYTES;
    assert_ne!(t.before[range.clone()], t.after[range.clone()]);
    // The write tore at every sector boundary: the first `k` sectors are new, the rest old.
    for k in 0..=SLOT_BYTES / 512 {
        let mut image = t.before.clone();
        let cut = range.start + k * 512;
        image[range.start..cut].copy_from_slice(&t.after[range.start..cut]);
        t.install(&image);
        let expect = if k == SLOT_BYTES / 512 { &t.b } else { &t.a };
        assert_eq!(t.open_state(), *expect, "torn after {k} sectors");
    }
    // And the other way round: the last sectors reached the disk, the first did not.
    for k in 1..SLOT_BYTES / 512 {
        let mut image = t.after.clone();
        let cut = range.start + k * 512;
        image[range.start..cut].copy_from_slice(&t.before[range.start..cut]);
        t.install(&image);
        assert_eq!(t.open_state(), t.a, "first {k} sectors old");
    }
    // A flipped bit anywhere in the new slot (one per byte position, cycling through the bits).
    for i in 0..SLOT_BYTES {
        let mut image = t.after.clone();
        image[range.start + i] ^= 1 << (i % 8);
        t.install(&image);
        assert_eq!(t.open_state(), t.a, "bit flip in byte {i}");
    }
}

#[test]
fn both_slots_corrupt_is_a_structured_error() {
    let t = torn_setup();
    let mut image = t.after.clone();
    image[100] ^= 0x04; // slot 0, generation 2
    image[SLOT_BYTES + 3000] ^= 0x04; // slot 1, generation 3: the newer, so its error is reported
    t.install(&image);
    let c = corruption(MetaStore::open(t.storage.clone(), t.dir));
    assert_eq!(c.file, t.dir.join("superblock"));
    assert_eq!(c.offset, SLOT_BYTES as u64 + 4092);
    assert!(matches!(c.kind, CorruptionKind::ChecksumMismatch { .. }));
}

#[test]
fn invalid_updates_change_nothing() {
    let (fs, dir) = fault();
    let store = MetaStore::create(Arc::new(fs.clone()), dir, Manifest::empty()).unwrap();
    store
        .publish(MetaUpdate {
            commit_epoch: 10,
            roots: roots(&[("a", 1)]),
            manifest: None,
        })
        .unwrap();
    let before = store.current();
    let ops = fs.op_count();
    let backwards = MetaUpdate {
        commit_epoch: 9,
        roots: RootCatalog::new(),
        manifest: None,
    };
    assert!(matches!(
        store.publish(backwards),
        Err(Error::InvalidArgument(_))
    ));
    let mut bad = manifest_with_log(3);
    bad.counters.next_log_seq = 3;
    let bad_manifest = MetaUpdate {
        commit_epoch: 11,
        roots: RootCatalog::new(),
        manifest: Some(bad),
    };
    assert!(matches!(
        store.publish(bad_manifest),
        Err(Error::InvalidArgument(_))
    ));
    // Rejected before any storage operation, without poisoning.
    assert_eq!(fs.op_count(), ops);
    assert!(!store.is_poisoned());
    assert_eq!(store.current(), before);
}

#[test]
fn readers_see_consistent_monotonic_states_while_a_writer_publishes() {
    let (fs, dir) = fault();
    let store = Arc::new(MetaStore::create(Arc::new(fs), dir, Manifest::empty()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut last_epoch = 0;
                let mut observed = 0u64;
                loop {
                    // Read the flag first, so the last pass sees the final state.
                    let finished = done.load(Ordering::Acquire);
                    let p = store.current();
                    let epoch = p.superblock.commit_epoch;
                    if epoch > 0 {
                        assert_eq!(p.superblock.roots.get("n"), Some(epoch));
                    }
                    assert_eq!(p.manifest.seq, p.superblock.manifest.seq);
                    // Every tenth epoch published a manifest whose log seq is that epoch.
                    let log_seq = p.manifest.delta_logs.last().map_or(0, |l| l.seq);
                    assert_eq!(log_seq, epoch / 10 * 10);
                    assert!(
                        epoch >= last_epoch,
                        "epoch went back from {last_epoch} to {epoch}"
                    );
                    last_epoch = epoch;
                    observed += 1;
                    if finished {
                        return (last_epoch, observed);
                    }
                }
            })
        })
        .collect();
    for i in 1..=200u64 {
        let manifest = (i % 10 == 0).then(|| manifest_with_log(i));
        store
            .publish(MetaUpdate {
                commit_epoch: i,
                roots: roots(&[("n", i)]),
                manifest,
            })
            .unwrap();
    }
    done.store(true, Ordering::Release);
    for r in readers {
        let (last, observed) = r.join().unwrap();
        assert_eq!(last, 200);
        assert!(observed > 0);
    }
}
