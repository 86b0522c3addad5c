//! The real storage: every trait operation against a temporary directory.

#![expect(
    unsafe_code,
    reason = "mapping a file range is unsafe; `map` below says why it holds here"
)]

use std::path::Path;

use vellum::Error;
use vellum::io::{OsStorage, Storage};

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

#[test]
fn files_round_trip_and_directory_operations_work() {
    let dir = tempfile::tempdir().unwrap();
    let s = OsStorage::new();
    let a = dir.path().join("a");
    let f = s.create(&a).unwrap();
    assert!(
        s.create(&a).is_err(),
        "create must not replace an existing file"
    );
    f.write_at(b"hello world", 0).unwrap();
    f.sync_data().unwrap();
    let mut buf = [0u8; 5];
    assert_eq!(f.read_at(&mut buf, 6).unwrap(), 5);
    assert_eq!(&buf, b"world");
    // A read past the end stops at the end.
    let mut big = [0u8; 64];
    assert_eq!(f.read_at(&mut big, 6).unwrap(), 5);
    f.set_len(5).unwrap();
    f.sync_all().unwrap();
    assert_eq!(f.read_all().unwrap(), b"hello");
    s.rename(&a, &dir.path().join("b")).unwrap();
    s.sync_dir(dir.path()).unwrap();
    assert_eq!(s.list(dir.path()).unwrap(), vec!["b"]);
    assert!(!s.exists(&a).unwrap());
    s.remove(&dir.path().join("b")).unwrap();
    assert!(s.list(dir.path()).unwrap().is_empty());
    let err = s.open(&a).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Io {
                op: vellum::IoOp::Open,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn allocate_keeps_bytes_and_extends_with_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let s = OsStorage::new();
    let f = s.create(&dir.path().join("a")).unwrap();
    f.write_at(b"abc", 0).unwrap();
    f.allocate(0, 1 << 20).unwrap();
    assert_eq!(f.len().unwrap(), 1 << 20);
    let all = f.read_all().unwrap();
    assert_eq!(&all[..3], b"abc");
    assert!(all[3..].iter().all(|&b| b == 0));
}

#[test]
fn punch_hole_zeroes_and_frees_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let s = OsStorage::new();
    let f = s.create(&dir.path().join("a")).unwrap();
    f.write_at(&vec![1u8; 1 << 20], 0).unwrap();
    f.sync_data().unwrap();
    let before = f.allocated_bytes().unwrap();
    assert!(before >= 1 << 20);
    f.punch_hole(0, 512 << 10).unwrap();
    assert_eq!(f.len().unwrap(), 1 << 20, "length unchanged");
    let after = f.allocated_bytes().unwrap();
    assert!(after <= before - (256 << 10), "{before} -> {after}");
    let all = f.read_all().unwrap();
    assert!(all[..512 << 10].iter().all(|&b| b == 0));
    assert!(all[512 << 10..].iter().all(|&b| b == 1));
}

#[test]
fn windows_read_write_and_flush() {
    let dir = tempfile::tempdir().unwrap();
    let s = OsStorage::new();
    let p = dir.path().join("a");
    let f = s.create(&p).unwrap();
    f.set_len(3 * 4096).unwrap();
    assert!(
        matches!(map(&*f, 100, 4096), Err(Error::InvalidArgument(m)) if m == format!(
            "map of {}: offset 100 is not page-aligned or length is zero",
            p.display()
        )),
        "unaligned offset"
    );
    assert!(
        matches!(map(&*f, 4096, 3 * 4096), Err(Error::InvalidArgument(m)) if m == format!(
            "map of {}: 4096+12288 ends past the 12288-byte file",
            p.display()
        )),
        "past the end"
    );
    let mut w = map(&*f, 4096, 8192).unwrap();
    w.write(10, b"mapped").unwrap();
    w.flush(10, 6).unwrap();
    assert!(w.write(8190, b"xyz").is_err(), "outside the window");
    let mut buf = [0u8; 6];
    f.read_at(&mut buf, 4096 + 10).unwrap();
    assert_eq!(&buf, b"mapped");
    f.write_at(b"direct", 8192).unwrap();
    w.read(4096, &mut buf).unwrap();
    assert_eq!(&buf, b"direct");
}

#[test]
fn second_lock_holder_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = OsStorage::new();
    let lock = dir.path().join("LOCK");
    let g = s.lock(&lock).unwrap();
    assert!(matches!(s.lock(&lock), Err(Error::Locked { .. })));
    drop(g);
    s.lock(&lock).unwrap();
    assert!(Path::new(&lock).exists());
}

#[test]
fn read_only_handles_refuse_writes() {
    let dir = tempfile::tempdir().unwrap();
    let s = OsStorage::new();
    let p = dir.path().join("a");
    s.create(&p).unwrap().write_at(b"abc", 0).unwrap();
    let r = s.open_read_only(&p).unwrap();
    assert_eq!(r.read_all().unwrap(), b"abc");
    assert!(r.write_at(b"x", 0).is_err());
}

/// A read-only window reads what `write_at` wrote and refuses writes through it (it is mapped
/// `PROT_READ`, so a write that got through would fault).
#[test]
fn a_read_only_window_reads_and_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a");
    let f = OsStorage::new().create(&p).unwrap();
    f.set_len(2 * 4096).unwrap();
    f.write_at(b"large", 4096 + 7).unwrap();
    // SAFETY: the file is not shortened while the window lives, and nothing writes the bytes it
    // reads while it reads them.
    let mut r = unsafe { f.map_read_only(4096, 4096) }.unwrap();
    let mut seen = [0u8; 5];
    r.read(7, &mut seen).unwrap();
    assert_eq!(&seen, b"large");
    let refused = format!("write through a read-only window of {}", p.display());
    assert!(matches!(r.write(0, b"no"), Err(Error::InvalidArgument(m)) if m == refused));
    // SAFETY: as above; the call is refused before any byte is borrowed.
    let slice = unsafe { r.slice_mut(0, 1) };
    assert!(matches!(slice, Err(Error::InvalidArgument(m)) if m == refused));
    r.flush(0, 4096).unwrap();
}
