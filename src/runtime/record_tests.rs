//! Unit tests of the commit record: golden bytes, the decoder's rejection matrix with exact kinds
//! and offsets, truncation at every byte, the encoder's argument checks, and property tests
//! (round trips, and arbitrary or mutated bytes never panicking).

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;
use crate::alloc::{
    CLASS_COUNT, FILE_MAX, LARGE_CLASS, SLOT_BYTES_MAX, SLOT_BYTES_MIN, SMALL_SLOT_BYTES_MAX,
    class_for_len, class_len_max, len_fits,
};
use crate::error::Corruption;
use crate::object_table::{HANDLE_MAX, SHARDS};

/// Where the tests pretend the body lies in its log file. Every expected offset adds it, so a
/// decoder reporting body-relative offsets fails.
const BASE: u64 = 8192 + 16;

fn path() -> &'static Path {
    Path::new("/db/log-0000000000000001.vlog")
}

fn id(shard: usize, handle: u64, tag: u16) -> NodeId {
    NodeId::new(shard, handle, tag).unwrap()
}

fn golden() -> CommitRecord {
    CommitRecord {
        epoch: 7,
        ops: vec![
            Op::New(NodeVersion {
                id: id(3, 1042, 7),
                location: Location {
                    class: 0,
                    file: 1,
                    offset: 128,
                },
                len: 3,
                crc32c: crc32c(b"abc"),
                kind: 5,
                payload: Some(b"abc".to_vec()),
            }),
            Op::Update(NodeVersion {
                id: id(0, 1, 1),
                // class_for_len(200): the 256-byte slot, class 2 before the 16-byte classes.
                location: Location {
                    class: 4,
                    file: 0,
                    offset: 512,
                },
                len: 200,
                crc32c: 0xdead_beef,
                kind: 9,
                payload: None,
            }),
            Op::Retire(id(63, 5, u16::MAX)),
            Op::SetRoot("index".to_owned(), id(3, 1042, 7)),
            Op::DelRoot("stale".to_owned()),
        ],
    }
}

/// The golden record, spelled out by hand from the layout in `design/FORMAT.md` §6
/// (format_version 2). The CRC32C of `abc` (0x364b3fb7) was computed with an independent bitwise
/// Castagnoli CRC.
///
/// The two location varints, derived by hand (`word` is `class << 59 | file << 40 | offset / 16`;
/// `prev_end` is 0 at the start of the record and, after a NEW or UPDATE, its word plus its slot's
/// 16-byte units; the stored value is `zigzag(word - prev_end)`, `(d << 1) ^ (d >> 63)`, as
/// LEB128: seven bits a byte, low group first, 0x80 on every byte but the last):
///
/// - NEW: word = 0 << 59 | 1 << 40 | 128 / 16 = 0x0000_0100_0000_0008; prev_end = 0;
///   difference = 0x0000_0100_0000_0008 (positive); zigzag = 2 * that = 0x0000_0200_0000_0010
///   = 2^41 + 16; groups (low first) 0x10, 0, 0, 0, 0, 2^41 >> 35 = 0x40; bytes
///   `90 80 80 80 80 40` (six). Its slot is class 0's 16 bytes, one unit, so prev_end becomes
///   0x0000_0100_0000_0009.
/// - UPDATE: word = 4 << 59 | 0 << 40 | 512 / 16 = 0x2000_0000_0000_0020;
///   prev_end = 0x0000_0100_0000_0009; difference = 0x2000_0000_0000_0020 - 0x0000_0100_0000_0009
///   = 0x1fff_ff00_0000_0017 (positive); zigzag = 0x3fff_fe00_0000_002e (62 bits, so nine bytes);
///   groups: bits 0-6 = 0x2e, bits 7-34 = 0 (four groups), bits 35-41 = 0x40 (bit 41 is the
///   lowest set bit of 0x3fff_fe00 << 32), bits 42-48 = 0x7f, bits 49-55 = 0x7f, bits 56-62 = 0x3f;
///   bytes `ae 80 80 80 80 c0 ff ff 3f`.
///
/// The lens: 3 is `03`; 200 = 0x48 + 1 << 7 is `c8 01`.
#[rustfmt::skip]
const GOLDEN: [u8; 102] = [
    // header
    1, 2, 0, 0,                                     // record_type, format_version 2, reserved
    5, 0, 0, 0,                                     // op_count
    7, 0, 0, 0, 0, 0, 0, 0,                         // epoch
    0, 0, 0, 0, 0, 0, 0, 0,                         // reserved
    // op 0 at 24: NEW
    1,
    0x12, 0x04, 0, 0, 0, 0x0c, 0x07, 0,             // node_id 3:1042:7 = 0x00070c0000000412
    5,                                              // kind
    1,                                              // flags: payload follows
    0x90, 0x80, 0x80, 0x80, 0x80, 0x40,             // location: zigzag 0x0000_0200_0000_0010
    3,                                              // len
    b'a', b'b', b'c',                               // payload (no crc32c: it is the payload's)
    // op 1 at 45: UPDATE
    2,
    1, 0, 0, 0, 0, 0, 1, 0,                         // node_id 0:1:1
    9,                                              // kind
    0,                                              // flags: no payload
    0xae, 0x80, 0x80, 0x80, 0x80, 0xc0, 0xff, 0xff, 0x3f, // location: zigzag 0x3fff_fe00_0000_002e
    0xc8, 0x01,                                     // len 200
    0xef, 0xbe, 0xad, 0xde,                         // crc32c
    // op 2 at 71: RETIRE
    3,
    5, 0, 0, 0, 0, 0xfc, 0xff, 0xff,                // node_id 63:5:65535
    // op 3 at 80: SET_ROOT
    4,
    5, b'i', b'n', b'd', b'e', b'x',                // name_len, name
    0x12, 0x04, 0, 0, 0, 0x0c, 0x07, 0,             // node_id 3:1042:7
    // op 4 at 95: DEL_ROOT
    5,
    5, b's', b't', b'a', b'l', b'e',                // name_len, name
];

/// `prev_end` after the golden NEW op: its word plus its one 16-byte unit.
const GOLDEN_NEW_END: u64 = 0x0000_0100_0000_0009;

/// One field of [`GOLDEN`], in the order the decoder reads them.
struct Field {
    name: &'static str,
    start: usize,
    size: usize,
    /// A varint is read a byte at a time, so a cut inside it is reported at the cut byte (one byte
    /// needed, none available) rather than at the field's start.
    varint: bool,
}

const fn fixed(name: &'static str, start: usize, size: usize) -> Field {
    Field {
        name,
        start,
        size,
        varint: false,
    }
}

const fn varint(name: &'static str, start: usize, size: usize) -> Field {
    Field {
        name,
        start,
        size,
        varint: true,
    }
}

/// Every field of [`GOLDEN`], in order.
#[rustfmt::skip]
const GOLDEN_FIELDS: [Field; 29] = [
    fixed("record_type", 0, 1), fixed("format_version", 1, 1), fixed("reserved", 2, 2),
    fixed("op_count", 4, 4), fixed("epoch", 8, 8), fixed("reserved", 16, 8),
    fixed("NEW code", 24, 1), fixed("NEW node_id", 25, 8), fixed("NEW kind", 33, 1),
    fixed("NEW flags", 34, 1), varint("NEW location", 35, 6), varint("NEW len", 41, 1),
    fixed("NEW payload", 42, 3),
    fixed("UPDATE code", 45, 1), fixed("UPDATE node_id", 46, 8), fixed("UPDATE kind", 54, 1),
    fixed("UPDATE flags", 55, 1), varint("UPDATE location", 56, 9), varint("UPDATE len", 65, 2),
    fixed("UPDATE crc32c", 67, 4),
    fixed("RETIRE code", 71, 1), fixed("RETIRE node_id", 72, 8),
    fixed("SET_ROOT code", 80, 1), fixed("SET_ROOT name_len", 81, 1),
    fixed("SET_ROOT name", 82, 5), fixed("SET_ROOT node_id", 87, 8),
    fixed("DEL_ROOT code", 95, 1), fixed("DEL_ROOT name_len", 96, 1),
    fixed("DEL_ROOT name", 97, 5),
];

/// The golden record as format_version 1 wrote it: the golden test's bytes before version 2
/// (fixed-width location, len and crc32c before kind and flags; class 0 was then 64 bytes, so the
/// UPDATE's 256-byte slot was class 2).
#[rustfmt::skip]
const V1_GOLDEN: [u8; 112] = [
    1, 1, 0, 0, 5, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 0x12, 0x04, 0, 0, 0, 0x0c, 0x07, 0, 0x02, 0, 0, 0, 0, 0x01, 0, 0, 3, 0, 0, 0,
    0xb7, 0x3f, 0x4b, 0x36, 5, 1, b'a', b'b', b'c',
    2, 1, 0, 0, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0x10, 200, 0, 0, 0,
    0xef, 0xbe, 0xad, 0xde, 9, 0,
    3, 5, 0, 0, 0, 0, 0xfc, 0xff, 0xff,
    4, 5, b'i', b'n', b'd', b'e', b'x', 0x12, 0x04, 0, 0, 0, 0x0c, 0x07, 0,
    5, 5, b's', b't', b'a', b'l', b'e',
];

fn corruption_of<T: std::fmt::Debug>(r: Result<T>) -> Corruption {
    match r {
        Err(Error::Corruption(c)) => *c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

fn field(field: &'static str, value: u64) -> CorruptionKind {
    CorruptionKind::InvalidField { field, value }
}

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Replaces the `old` bytes at `at` (a varint) with the varint of `v`.
fn splice_varint(b: &mut Vec<u8>, at: usize, old: usize, v: u64) {
    let mut e = Encoder::default();
    e.varint(v);
    b.splice(at..at + old, e.finish());
}

/// The stored location of a version at `word` after a version ending at `prev_end`.
fn location_delta(word: u64, prev_end: u64) -> u64 {
    zigzag(word.wrapping_sub(prev_end) as i64)
}

/// A format_version 2 header of `op_count` ops at epoch 1, for hand-built records.
fn header(op_count: u32) -> Encoder {
    let mut e = Encoder::default();
    e.u8(1).u8(2).zeros(2).u32(op_count).u64(1).zeros(8);
    e
}

/// Decodes `bytes` and checks the exact error, at `BASE + offset`.
fn rejects_bytes(bytes: &[u8], offset: usize, kind: CorruptionKind) {
    let c = corruption_of(CommitRecord::decode(bytes, path(), BASE));
    assert_eq!(
        (c.offset, &c.kind, c.file.as_path()),
        (BASE + offset as u64, &kind, path())
    );
    // The borrowing decoder is the same decoder.
    let c2 = corruption_of(CommitRecordRef::decode(bytes, path(), BASE));
    assert_eq!(c2, c);
}

/// Applies `edit` to the golden bytes and checks the exact error.
fn rejects(edit: impl FnOnce(&mut Vec<u8>), offset: usize, kind: CorruptionKind) {
    let mut b = GOLDEN.to_vec();
    edit(&mut b);
    rejects_bytes(&b, offset, kind);
}

#[test]
fn golden_bytes() {
    let r = golden();
    let b = r.encode().unwrap();
    assert_eq!(b, GOLDEN);
    let refs: Vec<OpRef<'_>> = r.ops.iter().map(Op::as_borrowed).collect();
    assert_eq!(encoded_len(&refs), 102);
    assert_eq!(encode_record(7, &refs).unwrap(), GOLDEN);
    assert_eq!(CommitRecord::decode(&GOLDEN, path(), BASE).unwrap(), r);
    // The hand-derived words and prev_end are the code's.
    let Op::New(new) = &r.ops[0] else {
        panic!("op 0 is {:?}", r.ops[0]);
    };
    assert_eq!(new.location.pack(), 0x0000_0100_0000_0008);
    assert_eq!(
        location_delta(new.location.pack(), 0),
        0x0000_0200_0000_0010
    );
    let Op::Update(update) = &r.ops[1] else {
        panic!("op 1 is {:?}", r.ops[1]);
    };
    assert_eq!(update.location.pack(), 0x2000_0000_0000_0020);
    assert_eq!(
        location_delta(update.location.pack(), GOLDEN_NEW_END),
        0x3fff_fe00_0000_002e
    );
}

#[test]
fn borrowed_decode_points_into_the_body() {
    let d = CommitRecordRef::decode(&GOLDEN, path(), BASE).unwrap();
    let OpRef::New(v) = d.ops[0] else {
        panic!("op 0 is {:?}", d.ops[0]);
    };
    let payload = v.payload.unwrap();
    assert_eq!(payload, b"abc");
    assert!(std::ptr::eq(payload.as_ptr(), GOLDEN[42..].as_ptr()));
    assert_eq!(d.clone().into_owned(), golden());
    assert_eq!(d.encode().unwrap(), GOLDEN);
}

#[test]
fn versions_are_born_at_the_record_epoch() {
    let Op::Update(v) = &golden().ops[1] else {
        panic!("op 1 is not an update");
    };
    let version = v.version(7);
    assert_eq!(
        version,
        Version {
            location: v.location,
            len: 200,
            crc32c: 0xdead_beef,
            kind: 9,
            birth: 7,
        }
    );
}

#[test]
fn header_rejections() {
    rejects(|b| b[0] = 2, 0, field("commit_record.record_type", 2));
    rejects(|b| b[0] = 0, 0, field("commit_record.record_type", 0));
    for version in [0, 3, u8::MAX] {
        rejects(
            |b| b[1] = version,
            1,
            CorruptionKind::UnsupportedVersion {
                found: u32::from(version),
            },
        );
    }
    rejects(|b| b[3] = 9, 3, field("commit_record.reserved", 9));
    rejects(|b| b[20] = 1, 20, field("commit_record.reserved", 1));
    rejects(|b| put_u32(b, 4, 0), 4, field("commit_record.op_count", 0));
    rejects(
        |b| put_u32(b, 4, OPS_MAX + 1),
        4,
        field("commit_record.op_count", u64::from(OPS_MAX) + 1),
    );
    rejects(
        |b| put_u32(b, 4, u32::MAX),
        4,
        field("commit_record.op_count", u64::from(u32::MAX)),
    );
    rejects(|b| put_u64(b, 8, 0), 8, field("commit_record.epoch", 0));
}

#[test]
fn version_1_records_are_not_read() {
    let v1 = CorruptionKind::UnsupportedVersion { found: 1 };
    // A record as version 1 wrote it fails at its version byte, not somewhere in its ops.
    rejects_bytes(&V1_GOLDEN, 1, v1.clone());
    // The byte is checked as soon as it is read: nothing after it matters.
    rejects_bytes(&V1_GOLDEN[..2], 1, v1.clone());
    // Version 2 ops under a version 1 header.
    rejects(|b| b[1] = 1, 1, v1);
}

#[test]
fn op_count_must_match_the_ops() {
    // One op more than present: the sixth op's code is missing.
    rejects(
        |b| put_u32(b, 4, 6),
        102,
        CorruptionKind::Truncated {
            needed: 1,
            available: 0,
        },
    );
    // One op fewer: the DEL_ROOT op is left over.
    rejects(
        |b| put_u32(b, 4, 4),
        95,
        field("commit_record.trailing_bytes", 7),
    );
    rejects(|b| b.push(0), 102, field("commit_record.trailing_bytes", 1));
}

#[test]
fn a_huge_op_count_allocates_nothing_it_cannot_fill() {
    let mut b = GOLDEN[..24].to_vec();
    put_u32(&mut b, 4, OPS_MAX);
    rejects_bytes(
        &b,
        24,
        CorruptionKind::Truncated {
            needed: 1,
            available: 0,
        },
    );
    // The golden body after its header is 78 bytes: room for 26 three-byte ops at most.
    assert_eq!(GOLDEN.len() - RECORD_HEADER_BYTES, 78);
    assert_eq!(ops_capacity(OPS_MAX, 0), 0);
    assert_eq!(ops_capacity(OPS_MAX, 78), 26);
    assert_eq!(ops_capacity(5, 78), 5);
}

#[test]
fn op_rejections() {
    rejects(|b| b[71] = 6, 71, field("op.code", 6));
    rejects(|b| b[24] = 0, 24, field("op.code", 0));
    // A zero tag (raw 5 is shard 0, handle 5, tag 0), in each op kind that names a node.
    rejects(|b| put_u64(b, 25, 5), 25, field("op.node_id", 5));
    rejects(|b| put_u64(b, 46, 0), 46, field("op.node_id", 0));
    rejects(|b| put_u64(b, 72, 5), 72, field("op.node_id", 5));
    rejects(|b| put_u64(b, 87, 5), 87, field("op.node_id", 5));
    rejects(|b| b[34] = 3, 34, field("op.flags", 3));
    rejects(|b| b[55] = 0x80, 55, field("op.flags", 0x80));
    // Words that do not unpack (class 21 does not exist, nor does the first class past the large
    // one, nor class 31), at the location varint's first byte, with the word the difference
    // names. NEW's location is the six bytes at 35, after prev_end 0.
    let past_large = (CLASS_COUNT as u64) << 59;
    for word in [21 << 59, past_large, u64::MAX] {
        rejects(
            |b| splice_varint(b, 35, 6, location_delta(word, 0)),
            35,
            field("op.location", word),
        );
    }
    // u64::MAX is the difference -1 from prev_end 0: the one byte 0x01.
    assert_eq!(location_delta(u64::MAX, 0), 1);
    // UPDATE's is the nine bytes at 56, after NEW's slot.
    rejects(
        |b| splice_varint(b, 56, 9, location_delta(u64::MAX, GOLDEN_NEW_END)),
        56,
        field("op.location", u64::MAX),
    );
    // The same stored difference names another word after another prev_end. NEW moved to class
    // 12 (a 64 KiB slot, 4096 units: prev_end 0x6000_0100_0000_1008) leaves UPDATE's unchanged
    // bytes (difference 0x1fff_ff00_0000_0017) naming 0x8000_0000_0000_101f, class 16. NEW's
    // varint grows to ten bytes, so UPDATE's location is at 60.
    let new_word = 12 << 59 | 1 << 40 | 8;
    rejects(
        |b| splice_varint(b, 35, 6, location_delta(new_word, 0)),
        60,
        field("op.location", 0x8000_0000_0000_101f),
    );
    // UPDATE's slot (class 4) is 256 bytes: 256 fits, 257 does not (len is the two bytes at 65).
    assert_eq!(class_len_max(4), 256);
    let mut b = GOLDEN.to_vec();
    splice_varint(&mut b, 65, 2, 256);
    let d = CommitRecord::decode(&b, path(), BASE).unwrap();
    assert!(matches!(&d.ops[1], Op::Update(v) if v.len == 256));
    rejects(|b| splice_varint(b, 65, 2, 257), 65, field("op.len", 257));
    // NEW's slot (class 0) is SLOT_BYTES_MIN (16) bytes (len is the byte at 41).
    let over = SLOT_BYTES_MIN as u8 + 1;
    rejects(|b| b[41] = over, 41, field("op.len", u64::from(over)));
    // The checks run in field order: flags before a padded location; a location that does not
    // unpack before a len that does not fit; a len that does not fit before a missing payload.
    rejects(
        |b| {
            b[34] = 2;
            b.splice(35..41, [0x80, 0x00]);
        },
        34,
        field("op.flags", 2),
    );
    rejects(
        |b| {
            b[41] = over;
            splice_varint(b, 35, 6, location_delta(past_large, 0));
        },
        35,
        field("op.location", past_large),
    );
    rejects(
        |b| {
            b[41] = over;
            b.truncate(42);
        },
        41,
        field("op.len", u64::from(over)),
    );
}

#[test]
fn varints_of_a_version_op_must_be_shortest() {
    // One UPDATE of 0:1:1, kind 0, no payload, at class 0, file 0, offset 0 (word 0, prev_end 0:
    // difference 0, varint 00), len 16 (varint 10), crc32c 0x01020304. Its location varint starts
    // at 35; its len follows.
    let update = |location: &[u8], len: &[u8]| {
        let mut e = header(1);
        e.u8(OP_UPDATE)
            .u64(id(0, 1, 1).raw())
            .u8(0)
            .u8(0)
            .bytes(location)
            .bytes(len)
            .u32(0x0102_0304);
        e.finish()
    };
    let shortest = update(&[0x00], &[0x10]);
    let r = CommitRecord {
        epoch: 1,
        ops: vec![Op::Update(NodeVersion {
            id: id(0, 1, 1),
            location: Location {
                class: 0,
                file: 0,
                offset: 0,
            },
            len: 16,
            crc32c: 0x0102_0304,
            kind: 0,
            payload: None,
        })],
    };
    assert_eq!(r.encode().unwrap(), shortest);
    assert_eq!(CommitRecord::decode(&shortest, path(), BASE).unwrap(), r);
    // Padded to two bytes or three, the final zero byte is the error, with its value.
    rejects_bytes(&update(&[0x80, 0x00], &[0x10]), 36, field("op.location", 0));
    rejects_bytes(
        &update(&[0x80, 0x80, 0x00], &[0x10]),
        37,
        field("op.location", 0),
    );
    rejects_bytes(&update(&[0x00], &[0x90, 0x00]), 37, field("op.len", 0));
    // In the golden NEW: its six-byte location padded to seven (the error at 41, where len was).
    rejects(
        |b| {
            b.splice(35..41, [0x90, 0x80, 0x80, 0x80, 0x80, 0xc0, 0x00]);
        },
        41,
        field("op.location", 0),
    );
    // UPDATE's len 200 padded to three bytes: c8 81 00, the zero at 67.
    rejects(
        |b| {
            b.splice(65..67, [0xc8, 0x81, 0x00]);
        },
        67,
        field("op.len", 0),
    );
    // Bits past the 64th: the tenth byte may only be 0 or 1 (and 0 is padding); the error is at
    // that byte, with its value.
    let mut over = [0xff; 10];
    over[9] = 0x02;
    rejects_bytes(&update(&over, &[0x10]), 44, field("op.location", 2));
    rejects_bytes(&update(&[0x00], &over), 45, field("op.len", 2));
    over[9] = 0x81;
    rejects_bytes(&update(&over, &[0x10]), 44, field("op.location", 0x81));
    over[9] = 0x00;
    rejects_bytes(&update(&over, &[0x10]), 44, field("op.location", 0));
    // The longest varint is read: zigzag u64::MAX is the difference i64::MIN, the word
    // 0x8000_0000_0000_0000, class 16, reported at the varint's first byte.
    over[9] = 0x01;
    rejects_bytes(&update(&over, &[0x10]), 35, field("op.location", 1 << 63));
    // A len of u64::MAX does not fit class 0.
    rejects_bytes(&update(&[0x00], &over), 36, field("op.len", u64::MAX));
    // Running out inside a varint is Truncated at the missing byte.
    let truncated = CorruptionKind::Truncated {
        needed: 1,
        available: 0,
    };
    rejects_bytes(&update(&[0x80, 0x00], &[0x10])[..36], 36, truncated.clone());
    rejects_bytes(&update(&[0x00], &[0x90, 0x00])[..37], 37, truncated);

    // A commit group's slots side by side cost one byte of location each: the difference from
    // where the previous version ends is 0. Class 0 file 2: A at 4096 (unit 256), B right after
    // it at 4112 (unit 257), C before both at 4080 (unit 255: difference -3 from B's end 258, zigzag
    // 5); then large extents: D at 0 of 256 KiB + 1 bytes (its extent is rounded up to 260 KiB,
    // 16 640 units) and E right after D's extent, at 260 KiB.
    let (a, b) = (*b"0123456789abcdef", *b"fedcba9876543210");
    let version = |handle, class, offset, len: u32, crc32c, payload: Option<&[u8]>| NodeVersion {
        id: id(1, handle, 1),
        location: Location {
            class,
            file: if class == LARGE_CLASS { 0 } else { 2 },
            offset,
        },
        len,
        crc32c,
        kind: 1,
        payload: payload.map(<[u8]>::to_vec),
    };
    let large = (SMALL_SLOT_BYTES_MAX + 1) as u32;
    let group = CommitRecord {
        epoch: 1,
        ops: vec![
            Op::New(version(10, 0, 4096, 16, crc32c(&a), Some(&a))),
            Op::Update(version(11, 0, 4112, 16, crc32c(&b), Some(&b))),
            Op::Update(version(12, 0, 4080, 5, 0x0c0c_0c0c, None)),
            Op::New(version(13, LARGE_CLASS, 0, large, 0x0d0d_0d0d, None)),
            Op::Update(version(
                14,
                LARGE_CLASS,
                260 << 10,
                300_000,
                0x0e0e_0e0e,
                None,
            )),
        ],
    };
    let bytes = group.encode().unwrap();
    // A: word 2 << 40 | 256, zigzag 2^42 + 512, seven bytes: a 35-byte op.
    assert_eq!(bytes[24..35], [1, 10, 0, 0, 0, 0, 0x04, 1, 0, 1, 1]);
    assert_eq!(bytes[35..42], [0x80, 0x84, 0x80, 0x80, 0x80, 0x80, 0x01]);
    // B at 59: 29 bytes, the location a single 0x00.
    let mut expect_b = vec![2, 11, 0, 0, 0, 0, 0x04, 1, 0, 1, 1, 0x00, 0x10];
    expect_b.extend_from_slice(&b);
    assert_eq!(expect_b.len(), 29);
    assert_eq!(bytes[59..88], expect_b[..]);
    // C at 88: 17 bytes, the location 0x05.
    assert_eq!(
        bytes[88..105],
        [
            2, 12, 0, 0, 0, 0, 0x04, 1, 0, 1, 0, 0x05, 0x05, 0x0c, 0x0c, 0x0c, 0x0c
        ]
    );
    // D at 105: a ten-byte location (class 15 is far from file 2 of class 0) and a three-byte
    // len: 28 bytes. E at 133: location 0x00, len 300 000 = e0 a7 12: 19 bytes.
    assert_eq!(
        bytes[133..],
        [
            2, 14, 0, 0, 0, 0, 0x04, 1, 0, 1, 0, 0x00, 0xe0, 0xa7, 0x12, 0x0e, 0x0e, 0x0e, 0x0e
        ]
    );
    assert_eq!(bytes.len(), 24 + 35 + 29 + 17 + 28 + 19);
    let refs: Vec<OpRef<'_>> = group.ops.iter().map(Op::as_borrowed).collect();
    assert_eq!(encoded_len(&refs), bytes.len() as u64);
    assert_eq!(CommitRecord::decode(&bytes, path(), BASE).unwrap(), group);
}

#[test]
fn payload_crc32c_is_computed_not_stored() {
    // A payload op stores no CRC32C: the decoded crc32c is the payload's.
    assert_eq!(crc32c(b"abc"), 0x364b_3fb7);
    let new_op_of = |r: &CommitRecord| match &r.ops[0] {
        Op::New(v) => v.clone(),
        other => panic!("op 0 is {other:?}"),
    };
    let d = CommitRecord::decode(&GOLDEN, path(), BASE).unwrap();
    assert_eq!(new_op_of(&d).crc32c, 0x364b_3fb7);
    // A damaged payload byte still decodes (the log frame's CRC32C around the record is what
    // detects it); the version then carries the CRC32C of the bytes it has, not the original's.
    let mut b = GOLDEN.to_vec();
    b[43] = b'x';
    let d = CommitRecord::decode(&b, path(), BASE).unwrap();
    let v = new_op_of(&d);
    assert_eq!(v.payload.as_deref(), Some(&b"axc"[..]));
    assert_eq!(v.crc32c, crc32c(b"axc"));
    assert_ne!(v.crc32c, 0x364b_3fb7);
    assert_eq!(d.encode().unwrap(), b);
    // The encoder refuses a payload whose CRC32C is not the op's crc32c: the decoder could not
    // give that crc32c back.
    encoder_rejects(|r| new_op(r).crc32c ^= 1);
    encoder_rejects(|r| new_op(r).payload = Some(b"axc".to_vec()));
}

#[test]
fn duplicates_are_rejected() {
    let new_id = id(3, 1042, 7).raw();
    // RETIRE of the node NEW creates.
    rejects(|b| put_u64(b, 72, new_id), 72, field("op.node_id", new_id));
    // UPDATE of the node NEW creates.
    rejects(|b| put_u64(b, 46, new_id), 46, field("op.node_id", new_id));
    // DEL_ROOT of the root SET_ROOT sets; the value is the op index.
    rejects(
        |b| b[97..102].copy_from_slice(b"index"),
        97,
        field("op.name", 4),
    );
    // A root may name a node another op of the record changes: that is the usual commit.
    let mut b = GOLDEN.to_vec();
    put_u64(&mut b, 87, id(63, 5, u16::MAX).raw());
    let d = CommitRecord::decode(&b, path(), BASE).unwrap();
    assert_eq!(
        d.ops[3],
        Op::SetRoot("index".to_owned(), id(63, 5, u16::MAX))
    );
}

/// A record of one DEL_ROOT op whose name_len byte is `name_len` followed by `name`.
fn del_root_record(name_len: u8, name: &[u8]) -> Vec<u8> {
    let mut e = header(1);
    e.u8(OP_DEL_ROOT).u8(name_len).bytes(name);
    e.finish()
}

#[test]
fn root_names_are_checked() {
    rejects(|b| b[96] = 0, 96, field("op.name_len", 0));
    rejects(|b| b[81] = 48, 81, field("op.name_len", 48));
    rejects_bytes(
        &del_root_record(48, &[b'x'; 48]),
        25,
        field("op.name_len", 48),
    );
    let longest = del_root_record(47, &[b'x'; 47]);
    let d = CommitRecord::decode(&longest, path(), BASE).unwrap();
    assert_eq!(d.ops, [Op::DelRoot("x".repeat(47))]);
    // Invalid UTF-8: a stray continuation byte, and a character cut short. The offset is the first
    // invalid byte; the value is the op index.
    rejects(|b| b[98] = 0xff, 98, field("op.name", 4));
    rejects(|b| b[83] = 0x80, 83, field("op.name", 3));
    rejects_bytes(
        &del_root_record(3, &[b'a', 0xe2, 0x82]),
        27,
        field("op.name", 0),
    );
}

#[test]
fn truncation_at_every_byte_is_reported_at_the_cut_field() {
    // The field table tiles the record.
    let mut end = 0;
    for f in &GOLDEN_FIELDS {
        assert_eq!(f.start, end, "{}", f.name);
        end = f.start + f.size;
    }
    assert_eq!(end, GOLDEN.len());
    for cut in 0..GOLDEN.len() {
        let f = GOLDEN_FIELDS
            .iter()
            .find(|f| f.start <= cut && cut < f.start + f.size)
            .unwrap();
        // A fixed field is read whole, so the cut is reported at its start; a varint a byte at a
        // time, so at the cut.
        let (at, kind) = if f.varint {
            (
                cut,
                CorruptionKind::Truncated {
                    needed: 1,
                    available: 0,
                },
            )
        } else {
            (
                f.start,
                CorruptionKind::Truncated {
                    needed: f.size as u64,
                    available: (cut - f.start) as u64,
                },
            )
        };
        let c = corruption_of(CommitRecord::decode(&GOLDEN[..cut], path(), BASE));
        assert_eq!(
            (c.offset, &c.kind),
            (BASE + at as u64, &kind),
            "cut at {cut}, in {}",
            f.name
        );
        rejects_bytes(&GOLDEN[..cut], at, kind);
    }
}

fn assert_invalid_argument(r: Result<Vec<u8>>) {
    assert!(
        matches!(r, Err(Error::InvalidArgument(_))),
        "expected InvalidArgument, got {r:?}"
    );
}

/// Encodes the golden record after `edit` and expects the encoder to refuse it.
fn encoder_rejects(edit: impl FnOnce(&mut CommitRecord)) {
    let mut r = golden();
    edit(&mut r);
    assert_invalid_argument(r.encode());
}

fn new_op(r: &mut CommitRecord) -> &mut NodeVersion {
    match &mut r.ops[0] {
        Op::New(v) => v,
        other => panic!("op 0 is {other:?}"),
    }
}

#[test]
fn encoder_refuses_what_the_decoder_would_reject() {
    encoder_rejects(|r| r.epoch = 0);
    encoder_rejects(|r| r.ops.clear());
    encoder_rejects(|r| new_op(r).location.class = CLASS_COUNT as u8);
    encoder_rejects(|r| new_op(r).location.file = FILE_MAX + 1);
    // Offsets are stored in SLOT_BYTES_MIN units, 40 bits of them.
    encoder_rejects(|r| new_op(r).location.offset = 3 * SLOT_BYTES_MIN / 2);
    encoder_rejects(|r| new_op(r).location.offset = SLOT_BYTES_MIN << 40);
    encoder_rejects(|r| {
        let v = new_op(r);
        v.payload = None;
        v.len = class_len_max(0) as u32 + 1;
    });
    encoder_rejects(|r| new_op(r).len = 4);
    encoder_rejects(|r| new_op(r).crc32c ^= 1);
    encoder_rejects(|r| r.ops[2] = Op::Retire(id(3, 1042, 7)));
    encoder_rejects(|r| r.ops[4] = Op::DelRoot("index".to_owned()));
    encoder_rejects(|r| r.ops[4] = Op::DelRoot(String::new()));
    encoder_rejects(|r| r.ops[4] = Op::DelRoot("x".repeat(48)));
    // 16 three-byte characters are 48 bytes.
    encoder_rejects(|r| r.ops[3] = Op::SetRoot("€".repeat(16), id(1, 1, 1)));
    // Limits that hold are accepted: a 47-byte name, a len equal to the slot.
    let mut r = golden();
    r.ops[4] = Op::DelRoot("€".repeat(15) + "xy");
    if let Op::Update(v) = &mut r.ops[1] {
        v.len = class_len_max(v.location.class) as u32;
    }
    let b = r.encode().unwrap();
    assert_eq!(CommitRecord::decode(&b, path(), BASE).unwrap(), r);
}

#[test]
fn encoder_refuses_too_many_ops() {
    let ops = vec![OpRef::Retire(id(0, 0, 1)); OPS_MAX as usize + 1];
    assert_invalid_argument(encode_record(1, &ops));
}

fn arb_id() -> impl Strategy<Value = NodeId> {
    (0..SHARDS, 0..=HANDLE_MAX, 1..=u16::MAX).prop_map(|(s, h, t)| id(s, h, t))
}

fn arb_location() -> impl Strategy<Value = Location> {
    (0..CLASS_COUNT as u8, 0..=FILE_MAX, 0..1u64 << 40).prop_map(|(class, file, unit)| Location {
        class,
        file,
        offset: unit * SLOT_BYTES_MIN,
    })
}

fn arb_version() -> impl Strategy<Value = NodeVersion> {
    // A version with a payload is never large: a payload that does not fit the drawn class moves
    // the version to the class its length belongs in (at most 64 bytes, so a small one).
    let payload = prop::option::of(prop::collection::vec(any::<u8>(), 0..=64));
    (
        arb_id(),
        arb_location(),
        any::<u8>(),
        payload,
        any::<u32>(),
        any::<Index>(),
    )
        .prop_map(|(id, mut location, kind, payload, crc, len)| {
            let (len, crc32c) = match &payload {
                Some(p) => {
                    if location.class == LARGE_CLASS || !len_fits(location.class, p.len() as u64) {
                        location.class = class_for_len(p.len() as u64).unwrap();
                    }
                    (p.len() as u32, crc32c(p))
                }
                None if location.class == LARGE_CLASS => {
                    let span = (SLOT_BYTES_MAX - SMALL_SLOT_BYTES_MAX) as usize;
                    (
                        (SMALL_SLOT_BYTES_MAX as usize + 1 + len.index(span)) as u32,
                        crc,
                    )
                }
                None => {
                    let slot = class_len_max(location.class);
                    (len.index(slot as usize + 1) as u32, crc)
                }
            };
            NodeVersion {
                id,
                location,
                len,
                crc32c,
                kind,
                payload,
            }
        })
}

/// Names of 1 to 47 bytes, often multi-byte characters.
fn arb_name() -> impl Strategy<Value = String> {
    "\\PC{1,20}".prop_map(|s| {
        let mut out = String::new();
        for c in s.chars() {
            if out.len() + c.len_utf8() > ROOT_NAME_BYTES_MAX {
                break;
            }
            out.push(c);
        }
        out
    })
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        arb_version().prop_map(Op::New),
        arb_version().prop_map(Op::Update),
        arb_id().prop_map(Op::Retire),
        (arb_name(), arb_id()).prop_map(|(n, i)| Op::SetRoot(n, i)),
        arb_name().prop_map(Op::DelRoot),
    ]
}

/// Valid records: ops that would break a uniqueness rule are dropped (never the first).
fn arb_record() -> impl Strategy<Value = CommitRecord> {
    (1..=u64::MAX, prop::collection::vec(arb_op(), 1..16)).prop_map(|(epoch, ops)| {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        let ops = ops
            .into_iter()
            .filter(|op| match op {
                Op::New(v) | Op::Update(v) => ids.insert(v.id),
                Op::Retire(id) => ids.insert(*id),
                Op::SetRoot(n, _) | Op::DelRoot(n) => names.insert(n.clone()),
            })
            .collect();
        CommitRecord { epoch, ops }
    })
}

/// One change to an encoded record.
#[derive(Debug, Clone)]
enum Mutation {
    Xor(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Remove(Index),
    Truncate(Index),
}

fn arb_mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        4 => (any::<Index>(), 1..=u8::MAX).prop_map(|(i, x)| Mutation::Xor(i, x)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Set(i, x)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, x)| Mutation::Insert(i, x)),
        1 => any::<Index>().prop_map(Mutation::Remove),
        1 => any::<Index>().prop_map(Mutation::Truncate),
    ]
}

fn apply(b: &mut Vec<u8>, m: &Mutation) {
    if b.is_empty() {
        return;
    }
    let n = b.len();
    match m {
        Mutation::Xor(i, x) => b[i.index(n)] ^= x,
        Mutation::Set(i, x) => b[i.index(n)] = *x,
        Mutation::Insert(i, x) => b.insert(i.index(n + 1), *x),
        Mutation::Remove(i) => {
            b.remove(i.index(n));
        }
        Mutation::Truncate(i) => b.truncate(i.index(n)),
    }
}

/// Decodes `bytes`, which must not panic; a success must re-encode to the same bytes (the
/// encoding is canonical and the encoder accepts whatever the decoder does), and a failure must be
/// a corruption report inside the body.
fn check_decode(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
    match CommitRecord::decode(bytes, path(), BASE) {
        Ok(r) => prop_assert_eq!(r.encode().unwrap(), bytes),
        Err(e) => {
            let c = e.as_corruption();
            prop_assert!(c.is_some(), "not a corruption report: {}", e);
            if let Some(c) = c {
                prop_assert!(c.offset >= BASE && c.offset <= BASE + bytes.len() as u64);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn valid_records_round_trip(r in arb_record()) {
        let b = r.encode().unwrap();
        let refs: Vec<OpRef<'_>> = r.ops.iter().map(Op::as_borrowed).collect();
        prop_assert_eq!(b.len() as u64, encoded_len(&refs));
        prop_assert_eq!(&CommitRecord::decode(&b, path(), BASE).unwrap(), &r);
        let borrowed = CommitRecordRef::decode(&b, path(), BASE).unwrap();
        prop_assert_eq!(borrowed.encode().unwrap(), b);
    }

    #[test]
    fn mutated_records_never_panic(
        r in arb_record(),
        mutations in prop::collection::vec(arb_mutation(), 1..6),
    ) {
        let mut b = r.encode().unwrap();
        for m in &mutations {
            apply(&mut b, m);
        }
        check_decode(&b)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..256)) {
        check_decode(&b)?;
    }

    #[test]
    fn arbitrary_ops_after_a_valid_header_never_panic(
        op_count in 1..=8u32,
        tail in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let mut b = GOLDEN[..24].to_vec();
        put_u32(&mut b, 4, op_count);
        b.extend_from_slice(&tail);
        check_decode(&b)?;
    }
}
