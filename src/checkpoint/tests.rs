//! Unit tests of the checkpoint: golden bytes, file names, and what the writer refuses. Shared
//! helpers for `reject_tests.rs` live here too.

use std::path::{Path, PathBuf};

use super::*;
use crate::alloc::{
    CLASS_COUNT, FILE_MAX, LARGE_CLASS, Location, SLOT_BYTES_MIN, class_unit_bytes,
};
use crate::error::{Corruption, CorruptionKind, Error, IoOp, Result};
use crate::io::{FaultConfig, FaultStorage, Storage};
use crate::object_table::{HANDLE_MAX, NodeId, Version};

pub(super) const DIR: &str = "/db";

pub(super) fn dir() -> &'static Path {
    Path::new(DIR)
}

/// A fresh in-memory filesystem holding the empty store directory.
pub(super) fn fresh() -> FaultStorage {
    let fs = FaultStorage::with_config(FaultConfig {
        seed: 0,
        file_bytes_max: 1 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(dir()).unwrap();
    fs
}

pub(super) fn entry(raw_id: u64, location: Location, len: u32, birth: u64) -> CheckpointEntry {
    CheckpointEntry {
        id: NodeId::from_raw(raw_id).unwrap(),
        version: Version {
            location,
            len,
            crc32c: raw_id as u32 ^ 0x5a5a_5a5a,
            kind: (raw_id % 251) as u8,
            birth,
        },
    }
}

/// The length of the golden checkpoint's ordinary entry: exactly the slot of its class.
pub(super) const GOLDEN_SLOT: u32 = 512;
/// The small class whose slot is [`GOLDEN_SLOT`] (`16 << 5`: class 5).
pub(super) const GOLDEN_CLASS: u8 = (GOLDEN_SLOT / SLOT_BYTES_MIN as u32).trailing_zeros() as u8;
const _: () = assert!(class_unit_bytes(GOLDEN_CLASS) == GOLDEN_SLOT as u64);

/// The golden checkpoint's three entries: the smallest id and location, an ordinary one with a
/// length equal to its slot, and the largest id and location (a large-class node of the largest
/// length; the decoder checks the length against the class, recovery the extent's placement).
pub(super) fn golden_entries() -> Vec<CheckpointEntry> {
    let v = |class, file, offset, len, crc32c, kind, birth| Version {
        location: Location {
            class,
            file,
            offset,
        },
        len,
        crc32c,
        kind,
        birth,
    };
    vec![
        CheckpointEntry {
            id: NodeId::new(0, 1, 1).unwrap(),
            version: v(0, 0, 0, 0, 0, 0, 0),
        },
        CheckpointEntry {
            id: NodeId::new(3, 1042, 7).unwrap(),
            version: v(GOLDEN_CLASS, 2, 4096, GOLDEN_SLOT, 0xdead_beef, 7, 9),
        },
        CheckpointEntry {
            id: NodeId::new(63, HANDLE_MAX, u16::MAX).unwrap(),
            version: v(
                LARGE_CLASS,
                FILE_MAX,
                ((1 << 40) - 1) * SLOT_BYTES_MIN,
                64 << 20,
                0x0102_0304,
                255,
                5,
            ),
        },
    ]
}

/// Writes a checkpoint through the writer and returns what `finish` returned.
pub(super) fn write(
    fs: &FaultStorage,
    seq: u64,
    epoch: u64,
    entries: &[CheckpointEntry],
) -> CheckpointInfo {
    let mut w = CheckpointWriter::create(fs, dir(), seq, epoch).unwrap();
    for e in entries {
        w.push(*e).unwrap();
    }
    w.finish().unwrap()
}

/// A version 3 file of `items` (fixed 40-byte entries, full blocks but the last), as the writer
/// of format 3 wrote it, which the reader must still read; and what its manifest records.
pub(super) fn fixed_file(
    seq: u64,
    epoch: u64,
    items: &[CheckpointItem],
) -> (Vec<u8>, CheckpointInfo) {
    let out = format::encode_fixed_file(seq, epoch, items);
    let entry_count = items.len() as u64;
    let info = CheckpointInfo {
        file: checkpoint_file_name(seq),
        seq,
        epoch,
        entries: entry_count,
        bytes: out.len() as u64,
        crc32c: crate::codec::crc32c(&out),
    };
    (out, info)
}

/// Stores the version 3 file of `entries` as checkpoint `seq` in `fs`.
pub(super) fn write_fixed(
    fs: &FaultStorage,
    seq: u64,
    epoch: u64,
    entries: &[CheckpointEntry],
) -> CheckpointInfo {
    let items: Vec<_> = entries.iter().map(|e| CheckpointItem::Live(*e)).collect();
    let (bytes, info) = fixed_file(seq, epoch, &items);
    fs.create(&path_of(seq)).unwrap().write_at(&bytes, 0).unwrap();
    info
}

pub(super) fn path_of(seq: u64) -> PathBuf {
    dir().join(checkpoint_file_name(seq))
}

pub(super) fn file_bytes(fs: &FaultStorage, path: &Path) -> Vec<u8> {
    fs.open_read_only(path).unwrap().read_all().unwrap()
}

/// Stores `bytes` as checkpoint `seq` in a fresh filesystem, and returns it with the path.
pub(super) fn stored(bytes: &[u8], seq: u64) -> (FaultStorage, PathBuf) {
    let fs = fresh();
    let path = path_of(seq);
    fs.create(&path).unwrap().write_at(bytes, 0).unwrap();
    (fs, path)
}

/// Reads `bytes`, stored as checkpoint 2, with the strict reader.
pub(super) fn read_bytes(
    bytes: &[u8],
    expect: Option<&CheckpointExpect>,
) -> Result<(CheckpointSummary, Vec<CheckpointEntry>)> {
    let (fs, path) = stored(bytes, 2);
    let mut seen = Vec::new();
    let summary = read_checkpoint(&fs, &path, expect, |e| {
        seen.push(e);
        Ok(())
    })?;
    Ok((summary, seen))
}

/// What a scan of `bytes`, stored as checkpoint 2, found: its report, the raw ids of the live
/// entries it visited, and each problem's offset and kind.
pub(super) fn scan_found(
    bytes: &[u8],
    expect: Option<&CheckpointExpect>,
) -> (ScanReport, Vec<u64>, Vec<(usize, CorruptionKind)>) {
    let (fs, path) = stored(bytes, 2);
    let mut seen = Vec::new();
    let report = scan_checkpoint(&fs, &path, expect, |e| {
        seen.push(e.id.raw());
        Ok(())
    })
    .unwrap();
    let problems = report
        .problems
        .iter()
        .map(|c| (c.offset as usize, c.kind.clone()))
        .collect();
    (report, seen, problems)
}

pub(super) fn corruption_of<T: std::fmt::Debug>(r: Result<T>) -> Corruption {
    match r {
        Err(Error::Corruption(c)) => *c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// CRC32C values of the golden file, computed independently of this crate (a bitwise Castagnoli
/// CRC, in Python, over the bytes spelled out below).
const GOLDEN_HEADER_CRC: u32 = 0x36c9_67e8;
/// The golden header's CRC32C in format version 2 (the same bytes but `format_version`).
const GOLDEN_V2_HEADER_CRC: u32 = 0x92a7_9342;
const GOLDEN_BLOCK_CRC: u32 = 0xb6b2_cfa5;
const GOLDEN_FOOTER_CRC: u32 = 0x5439_65b4;
pub(super) const GOLDEN_FILE_CRC: u32 = 0x6c23_58fa;

/// The golden checkpoint (seq 2, epoch 9, the three golden entries), byte by byte.
///
/// A location word is `class << 59 | file << 40 | offset / 16` (`alloc::Location::pack`), little
/// endian. Entry 1's, c5/f2@4096: `5 << 59 | 2 << 40 | 4096 / 16` = 0x2800_0200_0000_0100 (a
/// 512-byte slot is class 5 since the smallest slot is 16 B). Entry 2's, the large class 15,
/// file 2^19-1, the largest offset (2^40-1) * 16: `15 << 59 | (2^19-1) << 40 | (2^40-1)` =
/// 0x7fff_ffff_ffff_ffff, every bit but the top one.
pub(super) const GOLDEN: &str = "
    56454c43484b5054 03000000 40000000   magic, format_version 3, header_bytes 64
    0200000000000000 0900000000000000    checkpoint_seq 2, epoch 9
    0300000000000000 00100000            entry_count 3, block_entries_max 4096
    00000000000000000000000000000000     reserved
    e867c936                             crc32c 0x36c967e8
    03000000 a5cfb2b6 0000000000000000   block: count 3, crc32c 0xb6b2cfa5, first_entry_index 0
    0100000000000100 0000000000000000    entry 0: node_id 0:1:1, location c0/f0@0
    00000000 00000000 0000000000000000   len 0, crc32c 0, birth 0
    00 00 000000000000                   kind 0, flags 0, reserved
    12040000000c0700 0001000000020028    entry 1: node_id 3:1042:7, location c5/f2@4096
    00020000 efbeadde 0900000000000000   len 512, crc32c 0xdeadbeef, birth 9
    07 00 000000000000                   kind 7, flags 0, reserved
    ffffffffffffffff ffffffffffffff7f    entry 2: node_id 63:2^42-1:65535, location c15/f2^19-1@max
    00000004 04030201 0500000000000000   len 64 MiB, crc32c 0x01020304, birth 5
    ff 00 000000000000                   kind 255, flags 0, reserved
    56454c434b454e44 0300000000000000    footer: magic, entry_count 3
    0100000000000000 00000000 b4653954   block_count 1, reserved, crc32c 0x543965b4
";

/// CRC32C values of the version 4 golden file, computed like the version 3 ones (the block's
/// over its count, its `entry_bytes` and its entries).
const GOLDEN_V4_HEADER_CRC: u32 = 0x45f5_33ad;
const GOLDEN_V4_BLOCK_CRC: u32 = 0xdbc1_3a81;
pub(super) const GOLDEN_V4_FILE_CRC: u32 = 0xd65d_d34c;

/// The golden checkpoint in format version 4 (what the writer writes): the same header but
/// `format_version` 4, a 24-byte block header, and entries coded against the entry before.
///
/// An id is a varint of its difference from the previous raw id in the block (the first entry's
/// from 0); a location a varint of the zigzag of the wrapping difference from the previous live
/// entry's packed word; `age` a varint of `epoch - birth`. Entry 0: id 2^48 + 1 (7 bytes),
/// location 0, len 0, age 9. Entry 1: id difference 3:1042:7 - 0:1:1, location difference
/// 0x2800_0200_0000_0100 (positive: zigzag doubles it), len 512, age 0. Entry 2: location
/// difference 0x57ff_fdff_ffff_feff, len 64 MiB, age 4.
pub(super) const GOLDEN_V4: &str = "
    56454c43484b5054 04000000 40000000   magic, format_version 4, header_bytes 64
    0200000000000000 0900000000000000    checkpoint_seq 2, epoch 9
    0300000000000000 00100000            entry_count 3, block_entries_max 4096
    00000000000000000000000000000000     reserved
    ad33f545                             crc32c 0x45f533ad
    03000000 49000000 813ac1db           block: count 3, entry_bytes 73, crc32c 0xdbc13a81
    00000000 0000000000000000            reserved, first_entry_index 0
    81808080808040 00                    entry 0: id 0:1:1 (7 bytes), flags 0
    00 00 00000000 09 00                 location, len, crc32c, age 9, kind 0
    9188808080808303 00                  entry 1: id difference (8 bytes), flags 0
    808480808080818050 8004              location difference (9 bytes), len 512 (2 bytes)
    efbeadde 00 07                       crc32c 0xdeadbeef, age 0, kind 7
    edf7ffffffffbcfcff01 00              entry 2: id difference (10 bytes), flags 0
    fefbfffffffffeffaf01                 location difference (10 bytes)
    80808020 04030201 04 ff              len 64 MiB, crc32c 0x01020304, age 4, kind 255
    56454c434b454e44 0300000000000000    footer: magic, entry_count 3
    0100000000000000 00000000 b4653954   block_count 1, reserved, crc32c 0x543965b4
";

/// [`write_with_exhausted`]'s file in version 4: the exhausted handle takes 11 bytes (its id
/// difference and flags 3), and entry 2's location is still coded against entry 1's.
const GOLDEN_V4_EXHAUSTED: &str = "
    56454c43484b5054 04000000 40000000 0400000000000000 0900000000000000
    0400000000000000 00100000 00000000000000000000000000000000 41b7a361
    04000000 51000000 6a50e003 00000000 0000000000000000
    81808080808040000000000000000900
    9188808080808303008084808080808180508004efbeadde0007
    bbf8ffffffff81fcff01 03
    b2ffffffffff3a00fefbfffffffffeffaf01808080200403020104ff
    56454c434b454e44 0400000000000000 0100000000000000 00000000 87a3f2d0
";

/// The free-entry test's file in version 4: the free handle 5:77:3 is its id difference and
/// flags 1.
const GOLDEN_V4_FREE: &str = "
    56454c43484b5054 04000000 40000000 0400000000000000 0900000000000000
    0400000000000000 00100000 00000000000000000000000000000000 41b7a361
    04000000 52000000 3a9c9ab1 00000000 0000000000000000
    81808080808040000000000000000900
    cc80808080808501 01
    c58780808080fe01008084808080808180508004efbeadde0007
    edf7ffffffffbcfcff0100fefbfffffffffeffaf01808080200403020104ff
    56454c434b454e44 0400000000000000 0100000000000000 00000000 87a3f2d0
";

/// A free handle's entry: node id 5:77:3, zeros, flags 1 (FLAG_FREE), reserved.
const GOLDEN_FREE_ENTRY: &str = "
    4d00000000140300 0000000000000000    node_id 5:77:3, location 0
    00000000 00000000 0000000000000000   len 0, crc32c 0, birth 0
    00 01 000000000000                   kind 0, flags 1 (free), reserved
";

/// An exhausted handle's entry: node id 5:77:65535, zeros, flags 3 (FLAG_FREE | FLAG_EXHAUSTED),
/// reserved.
pub(super) const GOLDEN_EXHAUSTED_ENTRY: &str = "
    4d0000000014ffff 0000000000000000    node_id 5:77:65535, location 0
    00000000 00000000 0000000000000000   len 0, crc32c 0, birth 0
    00 03 000000000000                   kind 0, flags 3 (free, exhausted), reserved
";

/// The golden entries with exhausted handle 5:77:65535 between the second and the third, as
/// version 3 bytes of checkpoint 4 at epoch 9.
pub(super) fn fixed_with_exhausted() -> (Vec<u8>, Vec<CheckpointItem>) {
    let live = golden_entries();
    let exhausted = NodeId::new(5, 77, u16::MAX).unwrap();
    let items = vec![
        CheckpointItem::Live(live[0]),
        CheckpointItem::Live(live[1]),
        CheckpointItem::Exhausted(exhausted),
        CheckpointItem::Live(live[2]),
    ];
    (fixed_file(4, 9, &items).0, items)
}

/// The golden entries with exhausted handle 5:77:65535 between the second and the third (raw
/// ids: 0:1:1 < 3:1042:7 < 5:77:65535 < 63:(2^42-1):65535), written as checkpoint 4 at epoch 9.
pub(super) fn write_with_exhausted(fs: &FaultStorage) -> (CheckpointInfo, Vec<CheckpointItem>) {
    let live = golden_entries();
    let exhausted = NodeId::new(5, 77, u16::MAX).unwrap();
    let mut w = CheckpointWriter::create(fs, dir(), 4, 9).unwrap();
    w.push(live[0]).unwrap();
    w.push(live[1]).unwrap();
    w.push_exhausted(exhausted).unwrap();
    w.push(live[2]).unwrap();
    let items = vec![
        CheckpointItem::Live(live[0]),
        CheckpointItem::Live(live[1]),
        CheckpointItem::Exhausted(exhausted),
        CheckpointItem::Live(live[2]),
    ];
    (w.finish().unwrap(), items)
}

#[test]
fn exhausted_entries_round_trip_in_id_order_with_the_live_ones() {
    let exhausted = NodeId::new(5, 77, u16::MAX).unwrap();
    assert_eq!(
        format::encode_exhausted_entry(exhausted).to_vec(),
        hex(GOLDEN_EXHAUSTED_ENTRY)
    );
    let fs = fresh();
    let (info, want) = write_with_exhausted(&fs);
    assert_eq!(info.entries, 4);
    let path = path_of(4);
    let mut items = Vec::new();
    read_checkpoint_items(&fs, &path, Some(&info.expect()), |i| {
        items.push(i);
        Ok(())
    })
    .unwrap();
    assert_eq!(items, want);
    // The live-only reader skips the exhausted handle.
    let mut seen = Vec::new();
    read_checkpoint(&fs, &path, Some(&info.expect()), |e| {
        seen.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, golden_entries());
    assert_eq!(file_bytes(&fs, &path), hex(GOLDEN_V4_EXHAUSTED));
    // Version 3: header 64 bytes, block header 16, then entry 2 at 160.
    let (fixed, _) = fixed_with_exhausted();
    assert_eq!(&fixed[160..200], &hex(GOLDEN_EXHAUSTED_ENTRY)[..]);
    let (fs, path) = stored(&fixed, 4);
    let mut items = Vec::new();
    read_checkpoint_items(&fs, &path, None, |i| {
        items.push(i);
        Ok(())
    })
    .unwrap();
    assert_eq!(items, want);
}

#[test]
fn the_writer_refuses_an_exhausted_entry_without_the_last_tag() {
    let fs = fresh();
    let mut w = CheckpointWriter::create(&fs, dir(), 4, 9).unwrap();
    let not_last = NodeId::new(5, 77, u16::MAX - 1).unwrap();
    let err = w.push_exhausted(not_last).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidArgument(m) if m.contains("checkpoint_entry.node_id")),
        "{err}"
    );
    // Still usable, and the refused entry left nothing behind.
    w.push_free(not_last).unwrap();
    assert_eq!(w.finish().unwrap().entries, 1);
}

#[test]
fn version_2_is_still_read() {
    // Version 2 differs from 3 only in having no exhausted entries: a location word means the
    // same in both, and the reader unpacks it with the current packing (16-byte offset units,
    // large class 15). A store laid out with 64-byte units is refused at its superblock before
    // any checkpoint is read, so the fixture is the golden file, whose words are valid under
    // the current packing, with only `format_version` (and the header's CRC) changed.
    let mut v2 = hex(GOLDEN);
    v2[8] = 2;
    v2[60..64].copy_from_slice(&GOLDEN_V2_HEADER_CRC.to_le_bytes());
    let expect = CheckpointExpect {
        seq: 2,
        epoch: 9,
        entries: 3,
        bytes: 232,
        // A CRC run over a structure followed by its own CRC ends in the same state whatever the
        // structure held, so the whole file's CRC does not depend on the version.
        crc32c: GOLDEN_FILE_CRC,
    };
    let (summary, seen) = read_bytes(&v2, Some(&expect)).unwrap();
    assert_eq!(seen, golden_entries());
    assert_eq!((summary.entries, summary.crc32c), (3, GOLDEN_FILE_CRC));
}

#[test]
fn free_entries_round_trip_in_id_order_with_the_live_ones() {
    let free = NodeId::new(5, 77, 3).unwrap();
    assert_eq!(
        format::encode_free_entry(free).to_vec(),
        hex(GOLDEN_FREE_ENTRY)
    );
    let fs = fresh();
    let live = golden_entries();
    // Raw ids: 0:1:1 < 5:77:3 < 3:1042:7 (the tag is the high part).
    let mut w = CheckpointWriter::create(&fs, dir(), 4, 9).unwrap();
    w.push(live[0]).unwrap();
    w.push_free(free).unwrap();
    assert!(
        w.push_free(free).is_err(),
        "a free entry must be above the previous id too"
    );
    w.push(live[1]).unwrap();
    w.push(live[2]).unwrap();
    let info = w.finish().unwrap();
    assert_eq!(info.entries, 4);
    let path = path_of(4);
    let mut items = Vec::new();
    let summary = read_checkpoint_items(&fs, &path, Some(&info.expect()), |i| {
        items.push(i);
        Ok(())
    })
    .unwrap();
    assert_eq!(summary.entries, 4);
    assert_eq!(
        items,
        vec![
            CheckpointItem::Live(live[0]),
            CheckpointItem::Free(free),
            CheckpointItem::Live(live[1]),
            CheckpointItem::Live(live[2]),
        ]
    );
    // The live-only reader skips the free handle.
    let mut seen = Vec::new();
    read_checkpoint(&fs, &path, Some(&info.expect()), |e| {
        seen.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, live);
    assert_eq!(file_bytes(&fs, &path), hex(GOLDEN_V4_FREE));
    // Version 3: header 64 bytes, block header 16, then entry 1 at 120.
    let (fixed, _) = fixed_file(4, 9, &items);
    assert_eq!(&fixed[120..160], &hex(GOLDEN_FREE_ENTRY)[..]);
}

/// Parses a hex listing: the first run of hex words on each line, up to a word that is not hex.
pub(super) fn hex(listing: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for line in listing.lines() {
        for word in line.split_whitespace() {
            if word.len() % 2 != 0 || !word.bytes().all(|b| b.is_ascii_hexdigit()) {
                break;
            }
            for i in (0..word.len()).step_by(2) {
                out.push(u8::from_str_radix(&word[i..i + 2], 16).unwrap());
            }
        }
    }
    out
}

#[test]
fn golden_bytes() {
    let golden = hex(GOLDEN_V4);
    assert_eq!(golden.len(), 64 + 24 + 16 + 26 + 31 + 32);
    assert_eq!(&golden[60..64], &GOLDEN_V4_HEADER_CRC.to_le_bytes());
    assert_eq!(&golden[72..76], &GOLDEN_V4_BLOCK_CRC.to_le_bytes());
    assert_eq!(&golden[189..193], &GOLDEN_FOOTER_CRC.to_le_bytes());

    let fs = fresh();
    let info = write(&fs, 2, 9, &golden_entries());
    let bytes = file_bytes(&fs, &path_of(2));
    assert_eq!(bytes, golden);
    assert_eq!(
        info,
        CheckpointInfo {
            file: "ot-0000000000000002.ckpt".into(),
            seq: 2,
            epoch: 9,
            entries: 3,
            bytes: 193,
            crc32c: GOLDEN_V4_FILE_CRC,
        }
    );
    let (summary, seen) = read_bytes(&golden, Some(&info.expect())).unwrap();
    assert_eq!(seen, golden_entries());
    assert_eq!(
        summary,
        CheckpointSummary {
            seq: 2,
            epoch: 9,
            entries: 3,
            blocks: 1,
            bytes: 193,
            crc32c: GOLDEN_V4_FILE_CRC,
        }
    );
    assert!(
        !fs.exists(&dir().join("ot-0000000000000002.ckpt.tmp"))
            .unwrap()
    );
}

#[test]
fn version_3_golden_bytes_are_still_read() {
    let golden = hex(GOLDEN);
    assert_eq!(golden.len(), 64 + 16 + 3 * 40 + 32);
    assert_eq!(&golden[60..64], &GOLDEN_HEADER_CRC.to_le_bytes());
    assert_eq!(&golden[68..72], &GOLDEN_BLOCK_CRC.to_le_bytes());
    assert_eq!(&golden[228..232], &GOLDEN_FOOTER_CRC.to_le_bytes());
    let items: Vec<_> = golden_entries()
        .into_iter()
        .map(CheckpointItem::Live)
        .collect();
    // The fixture builder writes exactly the listing, so tests built on it test version 3.
    let (built, info) = fixed_file(2, 9, &items);
    assert_eq!(built, golden);
    assert_eq!((info.bytes, info.crc32c), (232, GOLDEN_FILE_CRC));
    let (summary, seen) = read_bytes(&golden, Some(&info.expect())).unwrap();
    assert_eq!(seen, golden_entries());
    assert_eq!((summary.entries, summary.blocks), (3, 1));
}

#[test]
fn empty_checkpoint_is_header_and_footer() {
    let fs = fresh();
    let info = write(&fs, 1, 0, &[]);
    assert_eq!((info.entries, info.bytes), (0, 96));
    let bytes = file_bytes(&fs, &path_of(1));
    assert_eq!(&bytes[64..72], b"VELCKEND");
    let (fs2, path) = stored(&bytes, 1);
    let summary =
        read_checkpoint(&fs2, &path, Some(&info.expect()), |_| panic!("no entries")).unwrap();
    assert_eq!((summary.entries, summary.blocks), (0, 0));
}

#[test]
fn names_round_trip_and_reject_near_misses() {
    assert_eq!(checkpoint_file_name(2), "ot-0000000000000002.ckpt");
    for seq in [0, 1, 0xabc, u64::MAX] {
        assert_eq!(
            parse_checkpoint_file_name(&checkpoint_file_name(seq)),
            Some(seq)
        );
    }
    for name in [
        "ot-0000000000000002.ckpt.tmp",
        "ot-000000000000002.ckpt",
        "ot-00000000000000002.ckpt",
        "ot-000000000000000A.ckpt",
        "ot-+000000000000002.ckpt",
        "ot-0000000000000002.ckp",
        "xot-0000000000000002.ckpt",
        "manifest-0000000000000002.json",
    ] {
        assert_eq!(parse_checkpoint_file_name(name), None, "{name}");
    }
}

#[test]
fn manifest_ref_carries_the_expectations() {
    let fs = fresh();
    let info = write(&fs, 0x1f, 9, &golden_entries());
    let r = info.manifest_ref();
    assert_eq!(r.file, "ot-000000000000001f.ckpt");
    assert_eq!(CheckpointExpect::from_manifest_ref(&r), Some(info.expect()));
    let other = crate::meta::CheckpointRef {
        file: "checkpoint-1.vckp".into(),
        ..r
    };
    assert_eq!(CheckpointExpect::from_manifest_ref(&other), None);
}

fn invalid_argument(r: Result<()>) -> String {
    match r {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
}

#[test]
fn writer_refuses_bad_entries_and_stays_usable() {
    let fs = fresh();
    let mut w = CheckpointWriter::create(&fs, dir(), 1, 9).unwrap();
    let loc = |class, offset| Location {
        class,
        file: 0,
        offset,
    };
    let base = 1 << 48;
    // Class 0's slot, the smallest.
    let slot = SLOT_BYTES_MIN as u32;
    w.push(entry(base + 10, loc(0, 0), slot, 9)).unwrap();
    let refusals = [
        (
            entry(base + 10, loc(0, 0), 1, 1),
            "checkpoint_entry.node_id",
        ),
        (entry(base + 9, loc(0, 0), 1, 1), "checkpoint_entry.node_id"),
        (
            entry(base + 11, loc(0, 0), slot + 1, 1),
            "checkpoint_entry.len",
        ),
        (entry(base + 11, loc(0, 0), 1, 10), "checkpoint_entry.age"),
        // An offset that is not a whole number of the packing's 16-byte units.
        (
            entry(base + 11, loc(0, SLOT_BYTES_MIN / 2), 1, 1),
            "cannot be packed",
        ),
        // The first class past the last.
        (
            entry(base + 11, loc(CLASS_COUNT as u8, 0), 1, 1),
            "checkpoint_entry.location",
        ),
        // The first offset past the 40 bits of units.
        (
            entry(base + 11, loc(0, (1 << 40) * SLOT_BYTES_MIN), 1, 1),
            "cannot be packed",
        ),
    ];
    for (e, why) in refusals {
        let m = invalid_argument(w.push(e));
        assert!(m.contains(why), "{m} should mention {why}");
    }
    let mut file_too_big = entry(base + 11, loc(0, 0), 1, 1);
    file_too_big.version.location.file = FILE_MAX + 1;
    assert!(invalid_argument(w.push(file_too_big)).contains("cannot be packed"));
    w.push(entry(base + 11, loc(0, SLOT_BYTES_MIN), 1, 1))
        .unwrap();
    let info = w.finish().unwrap();
    let mut seen = Vec::new();
    read_checkpoint(&fs, &path_of(1), Some(&info.expect()), |e| {
        seen.push(e.id.raw());
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, vec![base + 10, base + 11]);
}

#[test]
fn writer_never_replaces_a_checkpoint_and_clears_a_stale_tmp() {
    let fs = fresh();
    write(&fs, 4, 1, &[]);
    match CheckpointWriter::create(&fs, dir(), 4, 1) {
        Err(Error::Io {
            op: IoOp::Create,
            source,
            ..
        }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::AlreadyExists)
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    let tmp = dir().join("ot-0000000000000005.ckpt.tmp");
    fs.create(&tmp).unwrap().write_at(b"junk", 0).unwrap();
    let info = write(&fs, 5, 1, &golden_entries()[..1]);
    assert!(!fs.exists(&tmp).unwrap());
    assert_eq!(info.entries, 1);
}

#[test]
fn writer_after_a_failed_write_refuses_and_leaves_only_the_tmp() {
    let fs = fresh();
    let mut w = CheckpointWriter::create(&fs, dir(), 1, 9).unwrap();
    let entries: Vec<_> = (1..=BLOCK_ENTRIES_MAX as u64)
        .map(|i| entry((1 << 48) + i, Location::unpack(0).unwrap(), 0, 0))
        .collect();
    let (last, first) = entries.split_last().unwrap();
    for e in first {
        w.push(*e).unwrap();
    }
    // The last entry fills the block, so pushing it writes the block: fail that write.
    fs.fail_nth(1);
    assert!(matches!(
        w.push(*last),
        Err(Error::Io {
            op: IoOp::Write,
            ..
        })
    ));
    let next = entry((1 << 48) + 5000, Location::unpack(0).unwrap(), 0, 0);
    assert!(invalid_argument(w.push(next)).contains("failed earlier"));
    assert!(matches!(w.finish(), Err(Error::InvalidArgument(_))));
    assert!(
        fs.exists(&dir().join("ot-0000000000000001.ckpt.tmp"))
            .unwrap()
    );
    assert!(!fs.exists(&path_of(1)).unwrap());
}

#[test]
fn blocks_are_full_except_the_last() {
    let fs = fresh();
    let n = 2 * BLOCK_ENTRIES_MAX as u64 + 1;
    let entries: Vec<_> = (1..=n)
        .map(|i| entry((1 << 48) + i, Location::unpack(i).unwrap(), 1, i % 10))
        .collect();
    let info = write(&fs, 3, 9, &entries);
    let bytes = file_bytes(&fs, &path_of(3));
    assert_eq!(info.bytes, bytes.len() as u64);
    // Each entry after a block's first: id difference 1, flags, location difference 1 (zigzag
    // 2), len 1, CRC, age, kind: 10 bytes. A block's first is coded against zero: its id takes
    // 7 bytes and its location (zigzag 2, 8194, 16386) 1, 2 and 3.
    let mut at = 64;
    for (count, first, first_bytes) in [(4096u32, 0u64, 16), (4096, 4096, 17), (1, 8192, 18)] {
        let entry_bytes = first_bytes + (count - 1) * 10;
        assert_eq!(&bytes[at..at + 4], &count.to_le_bytes());
        assert_eq!(&bytes[at + 4..at + 8], &entry_bytes.to_le_bytes());
        assert_eq!(&bytes[at + 16..at + 24], &first.to_le_bytes());
        at += compact::BLOCK_HEADER_BYTES + entry_bytes as usize;
    }
    assert_eq!(at + 32, bytes.len());
    assert_eq!(crate::codec::crc32c(&bytes), info.crc32c);
    let mut seen = Vec::new();
    read_checkpoint(&fs, &path_of(3), Some(&info.expect()), |e| {
        seen.push(e);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, entries);
    let kind = CorruptionKind::MissingFile;
    let missing = corruption_of(read_checkpoint(&fs, &path_of(9), None, |_| Ok(())));
    assert_eq!((missing.offset, missing.kind), (0, kind));
}
