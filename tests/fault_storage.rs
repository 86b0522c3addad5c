//! The fault-injecting storage itself: it must drop exactly what a power loss drops and keep
//! exactly what was made durable, or every crash test built on it proves nothing.

#![expect(
    unsafe_code,
    reason = "mapping a file range is unsafe; `map` below says why it holds here"
)]

use std::path::Path;
use std::sync::Arc;

use vellum::io::{CrashMode, FaultConfig, FaultStorage, Storage, StorageFile};
use vellum::{Error, IoOp};

/// `StorageFile::map` for this file's tests, which never shorten a file below a live mapping
/// and write a mapped range only through that one mapping (the function's contract).
fn map(
    f: &dyn vellum::io::StorageFile,
    offset: u64,
    len: usize,
) -> vellum::Result<vellum::io::Mapping> {
    // SAFETY: see above.
    unsafe { f.map(offset, len) }
}

const DIR: &str = "/db";

fn fresh(seed: u64) -> FaultStorage {
    let fs = FaultStorage::new(seed);
    fs.create_dir_all(Path::new(DIR)).unwrap();
    fs
}

fn path(name: &str) -> std::path::PathBuf {
    Path::new(DIR).join(name)
}

/// A file `name` holding `bytes`, durable (data and directory entry).
fn durable_file(fs: &FaultStorage, name: &str, bytes: &[u8]) -> Arc<dyn StorageFile> {
    let f = fs.create(&path(name)).unwrap();
    f.write_at(bytes, 0).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    f
}

fn contents(fs: &FaultStorage, name: &str) -> Option<Vec<u8>> {
    match fs.open(&path(name)) {
        Ok(f) => Some(f.read_all().unwrap()),
        Err(_) => None,
    }
}

#[test]
fn synced_data_survives_and_unsynced_data_is_dropped() {
    let fs = fresh(1);
    let f = durable_file(&fs, "a", b"durable!");
    f.write_at(b"volatile", 8).unwrap();
    f.write_at(b"DURABLE!", 0).unwrap();
    assert_eq!(f.read_all().unwrap(), b"DURABLE!volatile");

    let dropped = fs.crash_with(CrashMode::DropUnsynced);
    assert_eq!(contents(&dropped, "a").unwrap(), b"durable!");

    // The crashed filesystem refuses everything afterwards.
    assert!(fs.is_crashed());
    assert!(f.read_all().is_err());
    assert!(fs.open(&path("a")).is_err());
}

#[test]
fn keep_unsynced_keeps_every_write_and_entry() {
    let fs = fresh(2);
    let f = durable_file(&fs, "a", b"durable!");
    f.write_at(b"volatile", 8).unwrap();
    let g = fs.create(&path("b")).unwrap();
    g.write_at(b"new file", 0).unwrap();
    let kept = fs.crash_with(CrashMode::KeepUnsynced);
    assert_eq!(contents(&kept, "a").unwrap(), b"durable!volatile");
    assert_eq!(contents(&kept, "b").unwrap(), b"new file");
}

#[test]
fn sync_makes_everything_durable() {
    let mut expected = vec![7u8; 4950];
    expected.extend_from_slice(&[9u8; 100]);
    expected.resize(6000, 0);
    for mode in [
        CrashMode::DropUnsynced,
        CrashMode::KeepUnsynced,
        CrashMode::Seeded(5),
    ] {
        let fs = fresh(3);
        let f = durable_file(&fs, "a", &[7u8; 5000]);
        f.write_at(&[9u8; 100], 4950).unwrap();
        f.set_len(6000).unwrap();
        f.sync_all().unwrap();
        let after = fs.crash_with(mode);
        assert_eq!(contents(&after, "a").unwrap(), expected, "{mode:?}");
    }
}

#[test]
fn unsynced_create_rename_and_remove_are_lost_without_a_directory_sync() {
    let fs = fresh(4);
    durable_file(&fs, "old", b"old");
    durable_file(&fs, "gone", b"gone");
    let f = fs.create(&path("new.tmp")).unwrap();
    f.write_at(b"new", 0).unwrap();
    f.sync_data().unwrap();
    fs.rename(&path("new.tmp"), &path("new")).unwrap();
    fs.remove(&path("gone")).unwrap();
    assert_eq!(fs.list(Path::new(DIR)).unwrap(), vec!["new", "old"]);

    let lost = fs.crash_with(CrashMode::DropUnsynced);
    assert_eq!(lost.list(Path::new(DIR)).unwrap(), vec!["gone", "old"]);
}

#[test]
fn directory_sync_makes_entries_durable() {
    let fs = fresh(5);
    durable_file(&fs, "gone", b"gone");
    let f = fs.create(&path("new.tmp")).unwrap();
    f.write_at(b"new", 0).unwrap();
    f.sync_data().unwrap();
    fs.rename(&path("new.tmp"), &path("new")).unwrap();
    fs.remove(&path("gone")).unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    let after = fs.crash_with(CrashMode::DropUnsynced);
    assert_eq!(after.list(Path::new(DIR)).unwrap(), vec!["new"]);
    assert_eq!(contents(&after, "new").unwrap(), b"new");
}

#[test]
fn seeded_crash_keeps_a_prefix_of_directory_changes() {
    // Three unsynced creates; every seed must leave a prefix: {}, {a}, {a,b} or {a,b,c}.
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..64 {
        let fs = fresh(seed);
        for name in ["a", "b", "c"] {
            fs.create(&path(name)).unwrap();
        }
        let after = fs.crash_with(CrashMode::Seeded(seed));
        let names = after.list(Path::new(DIR)).unwrap();
        let prefixes: [&[&str]; 4] = [&[], &["a"], &["a", "b"], &["a", "b", "c"]];
        assert!(
            prefixes.iter().any(|p| names == *p),
            "seed {seed}: {names:?} is not a prefix"
        );
        seen.insert(names.len());
    }
    assert_eq!(seen.len(), 4, "64 seeds should produce every prefix length");
}

#[test]
fn unsynced_writes_tear_at_sector_boundaries() {
    let old = vec![0xaau8; 4096];
    let new = vec![0x55u8; 4096];
    let mut torn_images = 0;
    let mut sector_outcomes = [[false; 2]; 8];
    for seed in 0..64 {
        let fs = fresh(seed);
        let f = durable_file(&fs, "a", &old);
        f.write_at(&new, 0).unwrap();
        let image = contents(&fs.crash_with(CrashMode::Seeded(seed)), "a").unwrap();
        assert_eq!(image.len(), 4096);
        let mut kinds = std::collections::BTreeSet::new();
        for (i, sector) in image.chunks(512).enumerate() {
            let is_new = sector == &new[..512];
            assert!(
                is_new || sector == &old[..512],
                "seed {seed}: sector {i} is mixed"
            );
            sector_outcomes[i][usize::from(is_new)] = true;
            kinds.insert(is_new);
        }
        if kinds.len() == 2 {
            torn_images += 1;
        }
    }
    assert!(torn_images > 0, "no seed tore the write");
    assert!(
        sector_outcomes.iter().all(|o| o[0] && o[1]),
        "every sector both lost and kept"
    );
}

#[test]
fn same_seed_same_image() {
    let run = || {
        let fs = fresh(9);
        let f = durable_file(&fs, "a", &[1u8; 8192]);
        f.write_at(&[2u8; 8192], 0).unwrap();
        contents(&fs.crash(), "a").unwrap()
    };
    assert_eq!(run(), run());
}

#[test]
fn unflushed_window_pages_survive_or_vanish_whole() {
    let mut page_outcomes = [[false; 2]; 4];
    for seed in 0..48 {
        let fs = fresh(seed);
        let f = durable_file(&fs, "a", &[0u8; 16384]);
        let mut w = map(&*f, 0, 16384).unwrap();
        w.write(0, &[3u8; 16384]).unwrap();
        // Writes through a window are visible to read_at at once, as through the page cache.
        let mut probe = [0u8; 4];
        f.read_at(&mut probe, 5000).unwrap();
        assert_eq!(probe, [3u8; 4]);
        let image = contents(&fs.crash_with(CrashMode::Seeded(seed)), "a").unwrap();
        for (i, page) in image.chunks(4096).enumerate() {
            let is_new = page.iter().all(|&b| b == 3);
            assert!(
                is_new || page.iter().all(|&b| b == 0),
                "seed {seed}: page {i} torn"
            );
            page_outcomes[i][usize::from(is_new)] = true;
        }
    }
    assert!(page_outcomes.iter().all(|o| o[0] && o[1]));
}

#[test]
fn flushed_window_range_is_durable_and_the_rest_is_not() {
    let fs = fresh(10);
    let f = durable_file(&fs, "a", &[0u8; 16384]);
    let mut w = map(&*f, 4096, 8192).unwrap();
    w.write(0, &[4u8; 8192]).unwrap();
    // Flush one byte in the window's second page: the whole page becomes durable.
    w.flush(5000, 1).unwrap();
    let image = contents(&fs.crash_with(CrashMode::DropUnsynced), "a").unwrap();
    assert!(image[..8192].iter().all(|&b| b == 0));
    assert!(image[8192..12288].iter().all(|&b| b == 4));
    assert!(image[12288..].iter().all(|&b| b == 0));
}

#[test]
fn writes_through_read_at_and_windows_are_coherent() {
    let fs = fresh(11);
    let f = durable_file(&fs, "a", &[0u8; 8192]);
    let w = map(&*f, 0, 8192).unwrap();
    f.write_at(b"pwrite", 4100).unwrap();
    let mut seen = [0u8; 6];
    w.read(4100, &mut seen).unwrap();
    assert_eq!(&seen, b"pwrite");
}

#[test]
fn shortening_a_file_under_a_live_window_is_refused() {
    let fs = fresh(12);
    let f = durable_file(&fs, "a", &[0u8; 8192]);
    let w = map(&*f, 4096, 4096).unwrap();
    assert!(f.set_len(4096).is_err());
    drop(w);
    f.set_len(4096).unwrap();
    assert_eq!(f.len().unwrap(), 4096);
    // Mapping past the end is refused as well.
    assert!(matches!(
        map(&*f, 4096, 4096),
        Err(Error::Io { op: IoOp::Map, path: p, source })
            if p == path("a")
                && source.kind() == std::io::ErrorKind::InvalidInput
                && source.to_string()
                    == "fault storage: window 4096..8192 ends past the 4096-byte file"
    ));
}

#[test]
fn crash_after_stops_every_later_operation() {
    let fs = fresh(13);
    let f = durable_file(&fs, "a", b"x");
    let before = fs.op_count();
    fs.crash_after(2);
    f.write_at(b"1", 1).unwrap();
    f.write_at(b"2", 2).unwrap();
    assert!(f.write_at(b"3", 3).is_err());
    assert!(f.sync_data().is_err());
    assert!(fs.list(Path::new(DIR)).is_err());
    assert_eq!(fs.op_count(), before + 5);
    let after = fs.crash_with(CrashMode::KeepUnsynced);
    assert_eq!(contents(&after, "a").unwrap(), b"x12");
}

#[test]
fn fail_nth_fails_exactly_one_operation() {
    let fs = fresh(14);
    let f = durable_file(&fs, "a", b"x");
    fs.fail_nth(2);
    f.write_at(b"1", 1).unwrap();
    let err = f.sync_data().unwrap_err();
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
    f.sync_data().unwrap();
    let after = fs.crash_with(CrashMode::DropUnsynced);
    assert_eq!(contents(&after, "a").unwrap(), b"x1");
}

#[test]
fn space_budget_fails_allocation_cleanly_and_holes_give_space_back() {
    let fs = FaultStorage::with_config(FaultConfig {
        seed: 15,
        space_bytes_max: Some(16384),
        ..FaultConfig::default()
    });
    fs.create_dir_all(Path::new(DIR)).unwrap();
    let f = fs.create(&path("a")).unwrap();
    f.write_at(&[1u8; 12288], 0).unwrap();
    assert_eq!(f.allocated_bytes().unwrap(), 12288);
    let err = f.write_at(&[1u8; 8192], 12288).unwrap_err();
    assert!(err.is_no_space(), "{err}");
    // The failed write changed nothing.
    assert_eq!(f.len().unwrap(), 12288);
    assert!(f.allocate(12288, 8192).unwrap_err().is_no_space());
    f.punch_hole(0, 8192).unwrap();
    assert_eq!(f.allocated_bytes().unwrap(), 4096);
    assert_eq!(fs.space_used_bytes(), 4096);
    f.write_at(&[2u8; 8192], 12288).unwrap();
    let mut head = [9u8; 8192];
    f.read_at(&mut head, 0).unwrap();
    assert!(
        head.iter().all(|&b| b == 0),
        "a punched hole reads as zeros"
    );
    fs.set_space_bytes_max(None);
    f.write_at(&[3u8; 65536], 20480).unwrap();
}

#[test]
fn exclusive_lock_excludes_a_second_holder() {
    let fs = fresh(16);
    let lock = path("LOCK");
    let g = fs.lock(&lock).unwrap();
    assert!(matches!(fs.lock(&lock), Err(Error::Locked { .. })));
    drop(g);
    let _g2 = fs.lock(&lock).unwrap();
}

#[test]
fn read_only_handles_refuse_writes() {
    let fs = fresh(17);
    durable_file(&fs, "a", b"abc");
    let r = fs.open_read_only(&path("a")).unwrap();
    assert_eq!(r.read_all().unwrap(), b"abc");
    assert!(r.write_at(b"x", 0).is_err());
    assert!(r.set_len(0).is_err());
}

#[test]
fn unsynced_truncation_either_holds_or_is_undone_whole() {
    for seed in 0..32 {
        let fs = fresh(seed);
        let f = durable_file(&fs, "a", &[5u8; 4096]);
        f.set_len(100).unwrap();
        let image = contents(&fs.crash_with(CrashMode::Seeded(seed)), "a").unwrap();
        assert!(
            image == vec![5u8; 100] || image == vec![5u8; 4096],
            "seed {seed}: {} bytes",
            image.len()
        );
    }
}

#[test]
fn clear_faults_models_a_process_crash_without_power_loss() {
    let fs = fresh(18);
    let f = durable_file(&fs, "a", b"x");
    fs.crash_after(1);
    f.write_at(b"1", 1).unwrap();
    assert!(f.write_at(b"2", 2).is_err());
    fs.fail_nth(5);
    fs.clear_faults();
    // The process is gone but the page cache is not: unsynced bytes are visible.
    assert_eq!(f.read_all().unwrap(), b"x1");
    f.write_at(b"2", 2).unwrap();
    for _ in 0..8 {
        f.sync_data().unwrap();
    }
    // A later power loss keeps what was synced.
    assert_eq!(
        contents(&fs.crash_with(CrashMode::DropUnsynced), "a").unwrap(),
        b"x12"
    );
}

/// A read-only window (the large class's) reserves no blocks for the holes it covers, sees
/// `write_at`s, and refuses writes through it; a writable window of the same range reserves
/// every page, as a real filesystem would when the pages are first written.
#[test]
fn a_read_only_window_reserves_nothing_and_refuses_writes() {
    let fs = fresh(13);
    let f = fs.create(&path("a")).unwrap();
    f.set_len(64 << 10).unwrap();
    f.write_at(b"extent", 8192).unwrap();
    assert_eq!(f.allocated_bytes().unwrap(), 4096, "one written page");
    // SAFETY: the file is not shortened while the window lives, and only `write_at` writes it,
    // never while the window reads the same bytes.
    let mut r = unsafe { f.map_read_only(0, 64 << 10) }.unwrap();
    assert!(!r.is_writable());
    assert_eq!(f.allocated_bytes().unwrap(), 4096, "the holes stay holes");
    let mut seen = [0u8; 6];
    r.read(8192, &mut seen).unwrap();
    assert_eq!(&seen, b"extent");
    let refused = "write through a read-only window of /db/a";
    assert!(matches!(r.write(0, b"no"), Err(Error::InvalidArgument(m)) if m == refused));
    // SAFETY: as above; the call is refused before any byte is borrowed.
    let slice = unsafe { r.slice_mut(0, 2) };
    assert!(matches!(slice, Err(Error::InvalidArgument(m)) if m == refused));
    drop(r);
    let w = map(&*f, 0, 64 << 10).unwrap();
    assert!(w.is_writable());
    assert_eq!(f.allocated_bytes().unwrap(), 64 << 10);
}
