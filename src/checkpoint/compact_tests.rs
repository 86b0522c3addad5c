//! The reader's rejection matrix for version 4 blocks (`design/FORMAT.md` §7, "Version 4
//! blocks"): each rule broken on its own, with the exact kind and absolute offset; truncation at
//! every offset of the golden file; and the scan going on past a bad block or entry.
//!
//! Golden layout: header 0..64, block header 64..88 (count 64, entry_bytes 68, crc32c 72,
//! reserved 76, first_entry_index 80), entries at 88 (16 bytes), 104 (26) and 130 (31), footer
//! 161..193.

use super::compact::{BLOCK_HEADER_BYTES, BlockHeader, block_crc};
use super::format::{FORMAT_VERSION, Footer, Header};
use super::tests::*;
use super::*;
use crate::codec::{Encoder, zigzag};
use crate::error::CorruptionKind::{self, *};
use crate::object_table::{NodeId, TAG_MAX};

const EPOCH: u64 = 9;
const FIRST: u64 = 88;

fn field(field: &'static str, value: u64) -> CorruptionKind {
    InvalidField { field, value }
}

/// A version 4 checkpoint 2 of epoch [`EPOCH`] whose blocks hold the given raw entry bytes, with
/// every count, length and CRC right.
fn file_of(blocks: &[Vec<Vec<u8>>]) -> Vec<u8> {
    let entry_count: u64 = blocks.iter().map(|b| b.len() as u64).sum();
    let mut out = Header {
        version: FORMAT_VERSION,
        seq: 2,
        epoch: EPOCH,
        entry_count,
    }
    .encode();
    let mut index = 0;
    for block in blocks {
        let entries = block.concat();
        let header = BlockHeader {
            count: block.len() as u32,
            entry_bytes: entries.len() as u32,
            crc32c: block_crc(block.len() as u32, entries.len() as u32, &entries),
            reserved: 0,
            first_entry_index: index,
        };
        out.extend_from_slice(&header.encode());
        out.extend_from_slice(&entries);
        index += block.len() as u64;
    }
    let footer = Footer {
        entry_count,
        block_count: blocks.len() as u64,
    };
    out.extend_from_slice(&footer.encode());
    out
}

/// A live entry's bytes: id difference, flags 0, location difference (before zigzag), len, CRC,
/// age, kind.
fn live(id_delta: u64, loc_delta: i64, len: u64, age: u64) -> Vec<u8> {
    let mut e = Encoder::with_capacity(40);
    e.varint(id_delta)
        .u8(0)
        .varint(zigzag(loc_delta))
        .varint(len)
        .u32(0xabcd_ef01)
        .varint(age)
        .u8(3);
    e.finish()
}

/// A handle entry's bytes: id difference and flags.
fn handle(id_delta: u64, flags: u8) -> Vec<u8> {
    let mut e = Encoder::with_capacity(11);
    e.varint(id_delta).u8(flags);
    e.finish()
}

/// Raw id of shard 0, handle `h`, tag 1.
fn raw(h: u64) -> u64 {
    NodeId::new(0, h, 1).unwrap().raw()
}

/// Every item of `bytes`, read as checkpoint 2 with the strict reader.
fn items_of(bytes: &[u8]) -> Vec<CheckpointItem> {
    let (fs, path) = stored(bytes, 2);
    let mut items = Vec::new();
    read_checkpoint_items(&fs, &path, None, |i| {
        items.push(i);
        Ok(())
    })
    .unwrap();
    items
}

/// Reads `bytes` and checks the exact error, and that a scan reports it first.
#[track_caller]
fn rejects(bytes: &[u8], offset: u64, kind: CorruptionKind) {
    let c = corruption_of(read_bytes(bytes, None));
    assert_eq!((c.offset, &c.kind), (offset, &kind));
    assert_eq!(c.file, path_of(2));
    let (fs, path) = stored(bytes, 2);
    let scan = scan_checkpoint(&fs, &path, None, |_| Ok(())).unwrap();
    assert_eq!(scan.problems.first(), Some(&c));
}

/// The golden file with `edit` applied and the block's CRC made right again.
fn golden_with(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut b = hex(GOLDEN_V4);
    edit(&mut b);
    let len = u32::from_le_bytes(b[68..72].try_into().unwrap()) as usize;
    let count = u32::from_le_bytes(b[64..68].try_into().unwrap());
    let crc = block_crc(count, len as u32, &b[FIRST as usize..FIRST as usize + len]);
    b[72..76].copy_from_slice(&crc.to_le_bytes());
    b
}

#[test]
fn the_builder_makes_the_golden_file() {
    let golden = hex(GOLDEN_V4);
    assert_eq!(golden_with(|_| {}), golden);
    let (summary, seen) = read_bytes(&golden, None).unwrap();
    assert_eq!((summary.entries, summary.bytes), (3, 193));
    assert_eq!(seen, golden_entries());
    // An entry of the shape these tests build reads back as what it says.
    let items = items_of(&file_of(&[vec![live(raw(1), 5, 16, 2), handle(1, 1)]]));
    let CheckpointItem::Live(e) = items[0] else {
        panic!("{items:?}")
    };
    assert_eq!((e.id.raw(), e.version.location.pack()), (raw(1), 5));
    assert_eq!((e.version.len, e.version.birth, e.version.kind), (16, 7, 3));
    assert_eq!(e.version.crc32c, 0xabcd_ef01);
    assert_eq!(
        items[1],
        CheckpointItem::Free(NodeId::from_raw(raw(1) + 1).unwrap())
    );
}

#[test]
fn block_header_rejections() {
    let golden = hex(GOLDEN_V4);
    let count = |b: &mut Vec<u8>, v: u32| b[64..68].copy_from_slice(&v.to_le_bytes());
    rejects(
        &golden_with(|b| count(b, 0)),
        64,
        field("checkpoint_block.count", 0),
    );
    rejects(
        &golden_with(|b| count(b, 4097)),
        64,
        field("checkpoint_block.count", 4097),
    );
    // Fewer bytes than three entries can take, or more.
    let entry_bytes = |v: u32| {
        let mut b = golden.clone();
        b[68..72].copy_from_slice(&v.to_le_bytes());
        b
    };
    rejects(&entry_bytes(5), 68, field("checkpoint_block.entry_bytes", 5));
    rejects(
        &entry_bytes(121),
        68,
        field("checkpoint_block.entry_bytes", 121),
    );
    let stored_crc = u32::from_le_bytes(golden[72..76].try_into().unwrap());
    // The CRC covers the count: one entry fewer, within what 73 bytes can hold, is caught there
    // rather than blamed on `entry_bytes` or found only when the entries run out.
    let mut fewer = golden.clone();
    fewer[64] = 2;
    let actual = block_crc(2, 73, &golden[88..161]);
    rejects(
        &fewer,
        72,
        ChecksumMismatch {
            expected: stored_crc,
            actual,
        },
    );
    let mut flipped = golden.clone();
    flipped[100] ^= 1;
    let actual = block_crc(3, 73, &flipped[88..161]);
    rejects(
        &flipped,
        72,
        ChecksumMismatch {
            expected: stored_crc,
            actual,
        },
    );
    rejects(
        &golden_with(|b| b[77] = 2),
        76,
        field("checkpoint_block.reserved", 0x200),
    );
    let mut first = golden.clone();
    first[80] = 1;
    let kind = Mismatch {
        what: "checkpoint_block.first_entry_index",
        expected: 0,
        actual: 1,
    };
    rejects(&first, 80, kind);
    // A byte after the last entry that `entry_bytes` counts: the entries end before it.
    let extra = golden_with(|b| {
        b.insert(161, 0);
        b[68] += 1;
    });
    rejects(&extra, 68, field("checkpoint_block.entry_bytes", 74));
}

#[test]
fn id_rejections() {
    let ok = live(raw(1), 0, 16, 0);
    rejects(
        &file_of(&[vec![handle(0, 1)]]),
        FIRST,
        field("checkpoint_entry.node_id_delta", 0),
    );
    // A varint with a needless zero byte.
    rejects(
        &file_of(&[vec![[&[0x81, 0x00][..], &[1]].concat()]]),
        FIRST + 1,
        field("checkpoint_entry.node_id_delta", 0),
    );
    // A difference that passes the largest id.
    let second = FIRST + ok.len() as u64;
    rejects(
        &file_of(&[vec![ok.clone(), handle(u64::MAX, 1)]]),
        second,
        field("checkpoint_entry.node_id_delta", u64::MAX),
    );
    // Tag 0 is no id.
    rejects(
        &file_of(&[vec![handle(5, 1)]]),
        FIRST,
        field("checkpoint_entry.node_id", 5),
    );
    // Ids increase across blocks too, though each block's first is coded against zero.
    let two = file_of(&[vec![ok.clone()], vec![live(raw(1), 0, 16, 0)]]);
    let b1 = FIRST + ok.len() as u64 + BLOCK_HEADER_BYTES as u64;
    rejects(&two, b1, field("checkpoint_entry.node_id", raw(1)));
    // An exhausted handle carries the last tag.
    let tag_2 = NodeId::new(0, 1, 2).unwrap().raw();
    rejects(
        &file_of(&[vec![handle(tag_2, 3)]]),
        FIRST,
        field("checkpoint_entry.node_id", tag_2),
    );
    let last = NodeId::new(0, 1, TAG_MAX).unwrap();
    let items = items_of(&file_of(&[vec![handle(last.raw(), 3)]]));
    assert_eq!(items, vec![CheckpointItem::Exhausted(last)]);
}

#[test]
fn field_rejections() {
    // raw(1) = 2^48 + 1 takes 7 bytes, so the flags are at +7.
    let flags_at = FIRST + 7;
    for flags in [2u8, 4, 7, 0x80] {
        rejects(
            &file_of(&[vec![handle(raw(1), flags)]]),
            flags_at,
            field("checkpoint_entry.flags", u64::from(flags)),
        );
    }
    let loc_at = flags_at + 1;
    // Class 16 (the first past the large class 15) does not unpack.
    let class_16 = 1u64 << 63;
    rejects(
        &file_of(&[vec![live(raw(1), class_16 as i64, 16, 0)]]),
        loc_at,
        field("checkpoint_entry.location", class_16),
    );
    rejects(
        &file_of(&[vec![[&handle(raw(1), 0)[..], &[0x80, 0x00]].concat()]]),
        loc_at + 1,
        field("checkpoint_entry.location", 0),
    );
    // Location 0 (class 0, 16-byte slots): len 0 to 16 fit; 2 bytes of len for 17 and more.
    let len_at = loc_at + 1;
    rejects(
        &file_of(&[vec![live(raw(1), 0, 17, 0)]]),
        len_at,
        field("checkpoint_entry.len", 17),
    );
    rejects(
        &file_of(&[vec![live(raw(1), 0, 1 << 33, 0)]]),
        len_at,
        field("checkpoint_entry.len", 1 << 33),
    );
    // An age above the epoch would put the birth before epoch 0.
    let age_at = len_at + 1 + 4;
    rejects(
        &file_of(&[vec![live(raw(1), 0, 16, EPOCH + 1)]]),
        age_at,
        field("checkpoint_entry.age", EPOCH + 1),
    );
    // A live entry cut after its flags, inside a block whose CRC holds.
    let cut = handle(raw(1), 0);
    rejects(
        &file_of(&[vec![cut]]),
        loc_at,
        Truncated {
            needed: 1,
            available: 0,
        },
    );
}

#[test]
fn varints_must_be_shortest() {
    // raw(1) takes 7 bytes, the flags 1: the location's varint starts at FIRST + 8.
    let padded = |field: usize| {
        let mut e = handle(raw(1), 0);
        let fields: [&[u8]; 5] = [&[0], &[16], &[0, 0, 0, 0], &[0], &[3]];
        for (i, f) in fields.iter().enumerate() {
            if i == field {
                // The same value with a needless continuation: its last byte is zero.
                e.extend_from_slice(&[f[0] | 0x80, 0x00]);
            } else {
                e.extend_from_slice(f);
            }
        }
        file_of(&[vec![e]])
    };
    let loc_at = FIRST + 8;
    rejects(&padded(0), loc_at + 1, field("checkpoint_entry.location", 0));
    rejects(&padded(1), loc_at + 2, field("checkpoint_entry.len", 0));
    rejects(&padded(3), loc_at + 7, field("checkpoint_entry.age", 0));
    // A tenth byte above 1 passes 64 bits.
    let tenth = [[0xffu8; 9].as_slice(), &[0x02, 1]].concat();
    rejects(
        &file_of(&[vec![tenth]]),
        FIRST + 9,
        field("checkpoint_entry.node_id_delta", 2),
    );
}

#[test]
fn a_scan_keeps_the_id_order_past_a_bad_entry() {
    // Block 0's second entry (id raw(5), flags 9) is bad, but its id is in order, so it still
    // raises the bar: block 1's first entry, raw(5) again, is a duplicate and is caught.
    let first = live(raw(1), 0, 16, 0);
    let bad = handle(4, 9);
    let b = file_of(&[vec![first.clone(), bad], vec![live(raw(5), 0, 16, 0), handle(1, 1)]]);
    let (fs, path) = stored(&b, 2);
    let mut seen = Vec::new();
    let report = scan_checkpoint_items(&fs, &path, None, |i| {
        seen.push(i);
        Ok(())
    })
    .unwrap();
    let problems: Vec<_> = report
        .problems
        .iter()
        .map(|c| (c.offset, c.kind.clone()))
        .collect();
    let bad_at = FIRST + first.len() as u64;
    let b1 = bad_at + 2 + BLOCK_HEADER_BYTES as u64;
    assert_eq!(
        problems,
        vec![
            (bad_at + 1, field("checkpoint_entry.flags", 9)),
            (b1, field("checkpoint_entry.node_id", raw(5))),
        ]
    );
    // Block 1's second entry is past the bad first one: the rest of the block is skipped.
    assert_eq!(seen.len(), 1);
}

#[test]
fn a_scan_goes_on_past_a_reserved_word_and_extra_entry_bytes() {
    let a = |h| live(raw(h), 0, 16, 0);
    let mut b = file_of(&[vec![a(1)], vec![a(10)], vec![a(20)]]);
    let len = a(1).len();
    // Block 0: a non-zero reserved word (no CRC covers it; the layout is intact).
    b[64 + compact::B_RESERVED] = 5;
    let b1 = 64 + BLOCK_HEADER_BYTES + len;
    // Block 1: one byte past its entry, counted in its entry_bytes, with the CRC made right.
    b.insert(b1 + BLOCK_HEADER_BYTES + len, 0);
    let eb = (len + 1) as u32;
    b[b1 + 4..b1 + 8].copy_from_slice(&eb.to_le_bytes());
    let crc = block_crc(1, eb, &b[b1 + BLOCK_HEADER_BYTES..b1 + BLOCK_HEADER_BYTES + len + 1]);
    b[b1 + 8..b1 + 12].copy_from_slice(&crc.to_le_bytes());
    let (report, seen, problems) = scan_found(&b, None);
    assert_eq!(
        problems,
        vec![
            (64 + compact::B_RESERVED, field("checkpoint_block.reserved", 5)),
            (b1 + compact::B_ENTRY_BYTES, field("checkpoint_block.entry_bytes", u64::from(eb))),
        ]
    );
    assert_eq!(seen, vec![raw(1), raw(10), raw(20)]);
    assert_eq!(report.blocks, 3);
}

#[test]
fn truncation_at_every_offset_is_reported() {
    let golden = hex(GOLDEN_V4);
    for cut in 0..golden.len() {
        let c = corruption_of(read_bytes(&golden[..cut], None));
        let (at, needed) = match cut {
            0..64 => (0, 64),
            64..88 => (64, 24),
            88..161 => (88, 73),
            _ => (161, 32),
        };
        let available = (cut - at) as u64;
        let kind = Truncated { needed, available };
        assert_eq!((c.offset, &c.kind), (at as u64, &kind), "cut at {cut}");
    }
}

#[test]
fn a_scan_goes_on_past_a_bad_block_and_a_bad_entry() {
    let a = |h| live(raw(h), 0, 16, 0);
    let block0 = vec![a(1), live(1, 0, 16, 0)];
    // Block 1's second entry has flags 9; its third is then unreachable.
    let block1 = vec![a(10), handle(1, 9), live(1, 0, 16, 0)];
    let block2 = vec![a(20), live(1, 0, 16, 0)];
    let mut b = file_of(&[block0.clone(), block1.clone(), block2]);
    // Block 0's CRC fails: a flipped bit in its second entry's CRC field.
    let b0_entries = FIRST as usize;
    b[b0_entries + block0[0].len() + 5] ^= 1;
    let (report, seen, problems) = scan_found(&b, None);
    let b1 = 64 + BLOCK_HEADER_BYTES + block0.concat().len();
    let bad_entry = b1 + BLOCK_HEADER_BYTES + block1[0].len();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0].0, 64 + compact::B_CRC);
    assert!(matches!(problems[0].1, ChecksumMismatch { .. }));
    assert_eq!(
        problems[1],
        (bad_entry + 1, field("checkpoint_entry.flags", 9))
    );
    assert_eq!(seen, vec![raw(10), raw(20), raw(20) + 1]);
    assert_eq!((report.entries_valid, report.blocks), (3, 3));
}
