//! The checkpoint on the real filesystem: 10 000 entries (three blocks) written through
//! `OsStorage` and read back exactly, with the length and CRC32C the writer reports checked
//! against the file's bytes.

use vellum::alloc::{
    CLASS_COUNT, FILE_MAX, LARGE_CLASS, Location, SMALL_SLOT_BYTES_MAX, class_len_max,
    class_unit_bytes,
};
use vellum::checkpoint::{
    CheckpointEntry, CheckpointExpect, CheckpointWriter, checkpoint_file_name, read_checkpoint,
    scan_checkpoint,
};
use vellum::codec::crc32c;
use vellum::io::{OsStorage, Storage};
use vellum::object_table::{HANDLE_MAX, NodeId, SHARDS, Version};

const EPOCH: u64 = 1_000;

/// `n` entries spread over shards, tags, classes and files, sorted by id.
fn entries(n: u64) -> Vec<CheckpointEntry> {
    let mut ids: Vec<NodeId> = (0..n)
        .map(|i| {
            let shard = (i * 7 % SHARDS as u64) as usize;
            let handle = (i * 0x9e37_79b9) & HANDLE_MAX;
            let tag = (1 + i % 65_535) as u16;
            NodeId::new(shard, handle, tag).unwrap()
        })
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len() as u64, n);
    ids.into_iter()
        .enumerate()
        .map(|(i, id)| {
            let i = i as u64;
            let class = (i % CLASS_COUNT as u64) as u8;
            let slot = class_unit_bytes(class);
            let max = class_len_max(class);
            CheckpointEntry {
                id,
                version: Version {
                    location: Location {
                        class,
                        file: (i * 31 % (u64::from(FILE_MAX) + 1)) as u32,
                        offset: (i % 1024) * slot,
                    },
                    // A large node is more than 256 KiB.
                    len: if class == LARGE_CLASS {
                        SMALL_SLOT_BYTES_MAX + 1 + i * 13 % (max - SMALL_SLOT_BYTES_MAX)
                    } else {
                        i * 13 % (max + 1)
                    } as u32,
                    crc32c: (i as u32).wrapping_mul(0x9e37_79b9),
                    kind: i as u8,
                    birth: i % (EPOCH + 1),
                },
            }
        })
        .collect()
}

/// Bytes of `entries` in version 4 blocks of 4096 (`design/FORMAT.md` §7), worked out from the
/// format's rules rather than the writer's code: each entry's id delta, location difference
/// (zigzag), len and age as minimal varints, plus flags, CRC and kind.
fn compact_bytes(entries: &[CheckpointEntry]) -> u64 {
    let varint = |v: u64| u64::from((64 - (v | 1).leading_zeros()).div_ceil(7));
    let mut total = 0;
    for block in entries.chunks(4096) {
        let (mut id, mut loc) = (0u64, 0u64);
        for e in block {
            let packed = e.version.location.pack();
            let d = packed.wrapping_sub(loc) as i64;
            let zigzag = ((d << 1) ^ (d >> 63)) as u64;
            total +=
                varint(e.id.raw() - id) + 1 + varint(zigzag) + varint(u64::from(e.version.len));
            total += 4 + varint(EPOCH - e.version.birth) + 1;
            (id, loc) = (e.id.raw(), packed);
        }
    }
    total
}

#[test]
fn ten_thousand_entries_round_trip_through_the_os() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let storage = OsStorage::new();
    let all = entries(10_000);

    let mut w = CheckpointWriter::create(&storage, dir, 7, EPOCH).unwrap();
    for e in &all {
        w.push(*e).unwrap();
    }
    let info = w.finish().unwrap();
    assert_eq!(info.file, checkpoint_file_name(7));
    assert_eq!((info.seq, info.epoch, info.entries), (7, EPOCH, 10_000));
    assert_eq!(info.bytes, 64 + 3 * 24 + compact_bytes(&all) + 32);
    assert_eq!(storage.list(dir).unwrap(), vec![info.file.clone()]);

    let path = dir.join(&info.file);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, info.bytes);
    assert_eq!(crc32c(&bytes), info.crc32c);

    let expect = CheckpointExpect::from_manifest_ref(&info.manifest_ref()).unwrap();
    assert_eq!(expect, info.expect());
    let mut seen = Vec::with_capacity(all.len());
    let summary = read_checkpoint(&storage, &path, Some(&expect), |e| {
        seen.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, all);
    assert_eq!((summary.entries, summary.blocks), (10_000, 3));
    assert_eq!((summary.bytes, summary.crc32c), (info.bytes, info.crc32c));

    let report = scan_checkpoint(&storage, &path, Some(&expect), |_| Ok(())).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.entries_valid, 10_000);
}
