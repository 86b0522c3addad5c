//! Property tests of the checkpoint reader: arbitrary bytes and arbitrary mutations of a valid
//! file never panic, a strict read fails exactly where a scan reports its first problem, a
//! mutated file is never accepted against the manifest's expectations, and every valid entry set
//! round-trips.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use vellum::Error;
use vellum::alloc::{
    CLASS_COUNT, FILE_MAX, LARGE_CLASS, Location, SLOT_BYTES_MIN, SMALL_SLOT_BYTES_MAX,
    class_len_max,
};
use vellum::checkpoint::{
    CheckpointEntry, CheckpointExpect, CheckpointInfo, CheckpointItem, CheckpointWriter,
    checkpoint_file_name, read_checkpoint, read_checkpoint_items, scan_checkpoint,
};
use vellum::io::{FaultConfig, FaultStorage, Storage};
use vellum::object_table::{NodeId, TAG_MAX, Version};

fn dir() -> &'static Path {
    Path::new("/db")
}

fn path() -> PathBuf {
    dir().join(checkpoint_file_name(1))
}

fn fresh() -> FaultStorage {
    let fs = FaultStorage::with_config(FaultConfig {
        seed: 0,
        file_bytes_max: 1 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(dir()).unwrap();
    fs
}

fn version(epoch: u64) -> impl Strategy<Value = Version> {
    (0..CLASS_COUNT as u8, 0..=FILE_MAX, 0..(1u64 << 40)).prop_flat_map(
        move |(class, file, unit)| {
            let location = Location {
                class,
                file,
                // Any offset the packing holds: 40 bits of 16-byte units.
                offset: unit * SLOT_BYTES_MIN,
            };
            // The large class holds only nodes too large for every small class.
            let len_min = if class == LARGE_CLASS {
                SMALL_SLOT_BYTES_MAX as u32 + 1
            } else {
                0
            };
            let len = len_min..=class_len_max(class) as u32;
            (len, any::<u32>(), any::<u8>(), 0..=epoch).prop_map(
                move |(len, crc32c, kind, birth)| Version {
                    location,
                    len,
                    crc32c,
                    kind,
                    birth,
                },
            )
        },
    )
}

/// An epoch and a valid, sorted entry set for it.
fn checkpoint(max: usize) -> impl Strategy<Value = (u64, Vec<CheckpointEntry>)> {
    any::<u64>().prop_flat_map(move |epoch| {
        // Some ids carry the last tag, so exhausted handles come up.
        let id = prop_oneof![(1u64 << 48).., (u64::from(TAG_MAX) << 48)..];
        let ids = prop::collection::btree_set(id, 0..=max);
        ids.prop_flat_map(move |ids| {
            let n = ids.len();
            prop::collection::vec(version(epoch), n).prop_map(move |versions| {
                let entries = ids
                    .iter()
                    .zip(versions)
                    .map(|(&raw, version)| CheckpointEntry {
                        id: NodeId::from_raw(raw).unwrap(),
                        version,
                    })
                    .collect();
                (epoch, entries)
            })
        })
    })
}

fn write(fs: &FaultStorage, epoch: u64, entries: &[CheckpointEntry]) -> CheckpointInfo {
    let mut w = CheckpointWriter::create(fs, dir(), 1, epoch).unwrap();
    for e in entries {
        w.push(*e).unwrap();
    }
    w.finish().unwrap()
}

/// Reads `bytes` as checkpoint 1 with both policies. Checks that they agree (the strict read's
/// error is the scan's first problem, and a clean scan is a successful read) and returns the read.
fn read_both(
    bytes: &[u8],
    expect: Option<&CheckpointExpect>,
) -> Result<Vec<CheckpointEntry>, Error> {
    let fs = fresh();
    fs.create(&path()).unwrap().write_at(bytes, 0).unwrap();
    let mut seen = Vec::new();
    let read = read_checkpoint(&fs, &path(), expect, |e| {
        seen.push(e);
        Ok(())
    });
    let scan = scan_checkpoint(&fs, &path(), expect, |_| Ok(())).unwrap();
    match &read {
        Ok(_) => assert!(
            scan.is_clean(),
            "read accepted, scan found {:?}",
            scan.problems
        ),
        Err(e) => assert_eq!(scan.problems.first(), e.as_corruption()),
    }
    read.map(|_| seen)
}

/// A checkpoint header (seq 1) of format `version` with the given epoch and entry count, for
/// inputs that get past it.
fn header(version: u32, epoch: u64, entry_count: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(64);
    h.extend_from_slice(b"VELCHKPT");
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&64u32.to_le_bytes());
    h.extend_from_slice(&1u64.to_le_bytes());
    h.extend_from_slice(&epoch.to_le_bytes());
    h.extend_from_slice(&entry_count.to_le_bytes());
    h.extend_from_slice(&4096u32.to_le_bytes());
    h.extend_from_slice(&[0; 16]);
    let crc = vellum::codec::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = read_both(&bytes, None);
    }

    #[test]
    fn arbitrary_bytes_behind_a_valid_header_never_panic(
        version in 2u32..=4,
        epoch in any::<u64>(),
        entry_count in prop_oneof![0u64..10, any::<u64>()],
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = header(version, epoch, entry_count);
        bytes.extend_from_slice(&tail);
        let _ = read_both(&bytes, None);
    }

    /// Arbitrary entry bytes behind a version 4 block header whose `entry_bytes` and CRC are
    /// right, then a valid footer, so the entry decoder itself reads them: it must refuse or
    /// accept, never panic, and both policies must agree. The first entry starts with a valid
    /// id (a random one has tag 0 most of the time), so the fields after it are reached too.
    #[test]
    fn arbitrary_version_4_entries_never_panic(
        epoch in prop_oneof![0u64..20, any::<u64>()],
        count in 1u32..8,
        first in 1u64..1000,
        tail in prop::collection::vec(any::<u8>(), 1..120),
    ) {
        let mut body = Vec::new();
        let mut id = NodeId::new(0, first, 1).unwrap().raw();
        while id >= 0x80 {
            body.push(id as u8 | 0x80);
            id >>= 7;
        }
        body.push(id as u8);
        body.extend_from_slice(&tail);
        let entry_bytes = (body.len() as u32).clamp(2 * count, 40 * count);
        body.resize(entry_bytes as usize, 0);
        let mut bytes = header(4, epoch, u64::from(count));
        let crc = vellum::checkpoint::compact::block_crc(count, entry_bytes, &body);
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&entry_bytes.to_le_bytes());
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&[0; 12]);
        bytes.extend_from_slice(&body);
        let mut footer = Vec::with_capacity(32);
        footer.extend_from_slice(b"VELCKEND");
        footer.extend_from_slice(&u64::from(count).to_le_bytes());
        footer.extend_from_slice(&1u64.to_le_bytes());
        footer.extend_from_slice(&[0; 4]);
        let footer_crc = vellum::codec::crc32c(&footer);
        footer.extend_from_slice(&footer_crc.to_le_bytes());
        bytes.extend_from_slice(&footer);
        let _ = read_both(&bytes, None);
    }

    #[test]
    fn mutated_files_are_never_accepted_against_their_expectations(
        (epoch, entries) in checkpoint(40),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..6),
        resize in prop_oneof![Just(None), any::<prop::sample::Index>().prop_map(Some)],
    ) {
        let fs = fresh();
        let info = write(&fs, epoch, &entries);
        let original = fs.open_read_only(&path()).unwrap().read_all().unwrap();
        let mut bytes = original.clone();
        for (at, x) in &flips {
            bytes[at.index(original.len())] ^= x;
        }
        if let Some(cut) = resize {
            bytes.truncate(cut.index(original.len()));
        }
        let unexpected = read_both(&bytes, None);
        let expected = read_both(&bytes, Some(&info.expect()));
        if bytes == original {
            prop_assert_eq!(expected.unwrap(), entries);
        } else {
            prop_assert!(expected.is_err());
            // One changed byte is caught by the file's own checks, without expectations.
            let changed = bytes.len() == original.len()
                && bytes.iter().zip(&original).filter(|(a, b)| a != b).count() == 1;
            if changed {
                prop_assert!(unexpected.is_err());
            }
        }
    }

    #[test]
    fn valid_entry_sets_round_trip((epoch, entries) in checkpoint(300)) {
        let fs = fresh();
        let info = write(&fs, epoch, &entries);
        prop_assert_eq!(info.entries, entries.len() as u64);
        let bytes = fs.open_read_only(&path()).unwrap().read_all().unwrap();
        prop_assert_eq!(bytes.len() as u64, info.bytes);
        prop_assert_eq!(vellum::codec::crc32c(&bytes), info.crc32c);
        prop_assert_eq!(read_both(&bytes, Some(&info.expect())).unwrap(), entries);
    }

    #[test]
    fn live_free_and_exhausted_entries_round_trip_in_id_order(
        (epoch, entries) in checkpoint(200),
        kinds in prop::collection::vec(0u8..3, 200),
    ) {
        // Some of the ids become free handles, and of those carrying the last tag some become
        // exhausted ones; the rest stay live.
        let items: Vec<CheckpointItem> = entries
            .iter()
            .zip(&kinds)
            .map(|(e, &kind)| match kind {
                0 => CheckpointItem::Live(*e),
                2 if e.id.tag() == TAG_MAX => CheckpointItem::Exhausted(e.id),
                _ => CheckpointItem::Free(e.id),
            })
            .collect();
        let fs = fresh();
        let mut w = CheckpointWriter::create(&fs, dir(), 1, epoch).unwrap();
        for item in &items {
            match item {
                CheckpointItem::Live(e) => w.push(*e).unwrap(),
                CheckpointItem::Free(id) => w.push_free(*id).unwrap(),
                CheckpointItem::Exhausted(id) => w.push_exhausted(*id).unwrap(),
            }
        }
        let info = w.finish().unwrap();
        prop_assert_eq!(info.entries, items.len() as u64);
        let mut seen = Vec::new();
        read_checkpoint_items(&fs, &path(), Some(&info.expect()), |i| {
            seen.push(i);
            Ok(())
        })
        .unwrap();
        prop_assert_eq!(&seen, &items);
        let live: Vec<CheckpointEntry> = items
            .iter()
            .filter_map(|i| match i {
                CheckpointItem::Live(e) => Some(*e),
                CheckpointItem::Free(_) | CheckpointItem::Exhausted(_) => None,
            })
            .collect();
        let bytes = fs.open_read_only(&path()).unwrap().read_all().unwrap();
        prop_assert_eq!(read_both(&bytes, Some(&info.expect())).unwrap(), live);
    }
}
