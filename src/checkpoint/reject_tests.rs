//! The reader's rejection matrix for the fixed layout of versions 2 and 3 (still read): each rule
//! of `design/FORMAT.md` §7 broken on its own, with the exact kind and absolute offset;
//! truncation at every offset; and the scan policy. Version 4's are in `compact_tests.rs`.
//!
//! Golden file layout: header 0..64, block header 64..80, entries at 80, 120 and 160, footer
//! 200..232.

use super::tests::*;
use super::*;
use crate::alloc::{CLASS_COUNT, Location, SLOT_BYTES_MIN};
use crate::codec::crc32c;
use crate::error::CorruptionKind::{self, *};

fn put_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Recomputes the CRC of a structure a test edited, so the reader gets past it to the rule under
/// test.
fn reseal(b: &mut [u8], covered: std::ops::Range<usize>, crc_at: usize) {
    let crc = crc32c(&b[covered]);
    put_u32(b, crc_at, crc);
}

fn reseal_header(b: &mut [u8]) {
    reseal(b, 0..60, 60);
}

fn reseal_block(b: &mut [u8], at: usize) {
    let count = get_u32(b, at) as usize;
    reseal(b, at + 16..at + 16 + count * 40, at + 4);
}

fn reseal_footer(b: &mut [u8], at: usize) {
    reseal(b, at..at + 28, at + 28);
}

fn golden_expect() -> CheckpointExpect {
    CheckpointExpect {
        seq: 2,
        epoch: 9,
        entries: 3,
        bytes: 232,
        crc32c: GOLDEN_FILE_CRC,
    }
}

fn scan_bytes(bytes: &[u8], expect: Option<&CheckpointExpect>) -> ScanReport {
    let (fs, path) = stored(bytes, 2);
    scan_checkpoint(&fs, &path, expect, |_| Ok(())).unwrap()
}

/// Applies `edit` to the golden file and checks the exact error of a read, and that a scan
/// reports the same problem first (one walk, two policies).
#[track_caller]
fn rejects(edit: impl FnOnce(&mut Vec<u8>), offset: u64, kind: CorruptionKind) {
    let mut b = hex(GOLDEN);
    edit(&mut b);
    let c = corruption_of(read_bytes(&b, None));
    assert_eq!((c.offset, &c.kind), (offset, &kind));
    assert_eq!(c.file, path_of(2));
    assert_eq!(scan_bytes(&b, None).problems.first(), Some(&c));
}

fn field(field: &'static str, value: u64) -> CorruptionKind {
    InvalidField { field, value }
}

fn mismatch(what: &'static str, expected: u64, actual: u64) -> CorruptionKind {
    Mismatch {
        what,
        expected,
        actual,
    }
}

#[test]
fn header_rejections() {
    let found = u64::from_le_bytes(*b"XELCHKPT");
    rejects(|b| b[0] = b'X', 0, BadMagic { found });
    rejects(|b| b[8] = 1, 8, UnsupportedVersion { found: 1 });
    rejects(|b| b[8] = 5, 8, UnsupportedVersion { found: 5 });
    rejects(
        |b| b[12] = 65,
        12,
        field("checkpoint_header.header_bytes", 65),
    );
    let mut edited = hex(GOLDEN);
    edited[24] = 10;
    let actual = crc32c(&edited[..60]);
    let expected = get_u32(&edited, 60);
    rejects(|b| b[24] = 10, 60, ChecksumMismatch { expected, actual });
    rejects(
        |b| {
            put_u32(b, 40, 4095);
            reseal_header(b);
        },
        40,
        field("checkpoint_header.block_entries_max", 4095),
    );
    rejects(
        |b| {
            b[50] = 1;
            reseal_header(b);
        },
        50,
        field("checkpoint_header.reserved", 1),
    );
}

#[test]
fn block_rejections() {
    let mut edited = hex(GOLDEN);
    edited[152] ^= 1;
    let actual = crc32c(&edited[80..200]);
    let expected = get_u32(&edited, 68);
    rejects(|b| b[152] ^= 1, 68, ChecksumMismatch { expected, actual });
    for count in [0, 4097, 4] {
        let kind = field("checkpoint_block.count", u64::from(count));
        rejects(|b| put_u32(b, 64, count), 64, kind);
    }
    // A smaller count than written: the CRC covers different bytes.
    let actual = crc32c(&hex(GOLDEN)[80..160]);
    rejects(
        |b| put_u32(b, 64, 2),
        68,
        ChecksumMismatch { expected, actual },
    );
    rejects(
        |b| put_u64(b, 72, 1),
        72,
        mismatch("checkpoint_block.first_entry_index", 0, 1),
    );
    // A huge count allowed by the header is checked against the file's length before it is read.
    rejects(
        |b| {
            put_u64(b, 32, u64::MAX);
            reseal_header(b);
            put_u32(b, 64, 4096);
        },
        80,
        Truncated {
            needed: 4096 * 40,
            available: 152,
        },
    );
}

#[test]
fn entry_rejections() {
    let resealed = |edit: fn(&mut Vec<u8>)| {
        move |b: &mut Vec<u8>| {
            edit(b);
            reseal_block(b, 64);
        }
    };
    let (low, id0) = (1u64 << 48, (1u64 << 48) | 1);
    let node = "checkpoint_entry.node_id";
    rejects(
        resealed(|b| put_u64(b, 120, 1 << 48)),
        120,
        field(node, low),
    );
    rejects(
        resealed(|b| put_u64(b, 120, (1 << 48) | 1)),
        120,
        field(node, id0),
    );
    rejects(resealed(|b| put_u64(b, 80, 5)), 80, field(node, 5));
    // The first class past the last (the class is the word's top 5 bits).
    let past_last = (CLASS_COUNT as u64) << 59;
    rejects(
        resealed(|b| put_u64(b, 128, (CLASS_COUNT as u64) << 59)),
        128,
        field("checkpoint_entry.location", past_last),
    );
    // One byte more than entry 1's slot.
    rejects(
        resealed(|b| put_u32(b, 136, GOLDEN_SLOT + 1)),
        136,
        field("checkpoint_entry.len", u64::from(GOLDEN_SLOT) + 1),
    );
    rejects(
        resealed(|b| put_u64(b, 144, 10)),
        144,
        field("checkpoint_entry.birth", 10),
    );
    // The same rule through the header: epoch 8 is below entry 1's birth, 9.
    rejects(
        |b| {
            put_u64(b, 24, 8);
            reseal_header(b);
        },
        144,
        field("checkpoint_entry.birth", 9),
    );
    rejects(
        resealed(|b| b[195] = 1),
        195,
        field("checkpoint_entry.reserved", 1),
    );
    // A free handle's entry (flags 1) must have every other field zero; flags other than 0 and
    // 1 are refused. Entry 1 of the golden file starts at 120: location 128, len 136, crc 140,
    // birth 144, kind 152, flags 153.
    let flags = "checkpoint_entry.flags";
    rejects(resealed(|b| b[153] = 2), 153, field(flags, 2));
    // Entry 1's location word, c5/f2@4096: 5 << 59 | 2 << 40 | 4096 / 16.
    rejects(
        resealed(|b| b[153] = 1),
        128,
        field("checkpoint_entry.location", 0x2800_0200_0000_0100),
    );
    rejects(
        resealed(|b| {
            b[128..153].fill(0);
            b[144] = 9;
            b[153] = 1;
        }),
        144,
        field("checkpoint_entry.birth", 9),
    );
    rejects(
        resealed(|b| {
            b[128..153].fill(0);
            b[152] = 7;
            b[153] = 1;
        }),
        152,
        field("checkpoint_entry.kind", 7),
    );
}

#[test]
fn footer_rejections() {
    let mut edited = hex(GOLDEN);
    edited[200] = 0;
    let found = u64::from_le_bytes(edited[200..208].try_into().unwrap());
    rejects(|b| b[200] = 0, 200, BadMagic { found });
    let mut edited = hex(GOLDEN);
    edited[210] ^= 1;
    let (expected, actual) = (get_u32(&edited, 228), crc32c(&edited[200..228]));
    rejects(|b| b[210] ^= 1, 228, ChecksumMismatch { expected, actual });
    rejects(
        |b| {
            put_u64(b, 208, 4);
            reseal_footer(b, 200);
        },
        208,
        mismatch("checkpoint_footer.entry_count", 3, 4),
    );
    rejects(
        |b| {
            put_u64(b, 216, 2);
            reseal_footer(b, 200);
        },
        216,
        mismatch("checkpoint_footer.block_count", 1, 2),
    );
    rejects(
        |b| {
            b[225] = 1;
            reseal_footer(b, 200);
        },
        225,
        field("checkpoint_footer.reserved", 1),
    );
    rejects(|b| b.push(0), 232, field("checkpoint.trailing_bytes", 1));
}

#[test]
fn file_name_must_match_the_header() {
    let (fs, path) = stored(&hex(GOLDEN), 3);
    let c = corruption_of(read_checkpoint(&fs, &path, None, |_| Ok(())));
    assert_eq!(
        (c.offset, c.kind),
        (16, mismatch("checkpoint.file_name", 3, 2))
    );
}

#[test]
fn expectation_mismatches() {
    let golden = hex(GOLDEN);
    let x = golden_expect();
    assert!(read_bytes(&golden, Some(&x)).is_ok());
    let cases = [
        (
            CheckpointExpect { bytes: 233, ..x },
            0,
            "checkpoint.bytes",
            233,
            232,
        ),
        (CheckpointExpect { seq: 3, ..x }, 16, "checkpoint.seq", 3, 2),
        (
            CheckpointExpect { epoch: 8, ..x },
            24,
            "checkpoint.epoch",
            8,
            9,
        ),
        (
            CheckpointExpect { entries: 4, ..x },
            32,
            "checkpoint.entries",
            4,
            3,
        ),
        (
            CheckpointExpect { crc32c: 7, ..x },
            0,
            "checkpoint.crc32c",
            7,
            u64::from(GOLDEN_FILE_CRC),
        ),
    ];
    for (expect, offset, what, expected, actual) in cases {
        let c = corruption_of(read_bytes(&golden, Some(&expect)));
        assert_eq!(
            (c.offset, c.kind),
            (offset, mismatch(what, expected, actual))
        );
    }
    // A different, valid checkpoint of the same length is caught by the whole-file CRC only.
    let fs = fresh();
    let mut entries = golden_entries();
    entries[1].version.crc32c ^= 1;
    let other = write_fixed(&fs, 2, 9, &entries);
    assert_eq!(other.bytes, 232);
    let c = corruption_of(read_checkpoint(&fs, &path_of(2), Some(&x), |_| Ok(())));
    let kind = mismatch(
        "checkpoint.crc32c",
        u64::from(GOLDEN_FILE_CRC),
        u64::from(other.crc32c),
    );
    assert_eq!((c.offset, c.kind), (0, kind));
}

#[test]
fn truncation_at_every_offset_is_reported() {
    let golden = hex(GOLDEN);
    for cut in 0..golden.len() {
        let b = &golden[..cut];
        let c = corruption_of(read_bytes(b, None));
        let (at, needed) = match cut {
            0..64 => (0, 64),
            64..80 => (64, 16),
            80..200 => (80, 120),
            _ => (200, 32),
        };
        let available = (cut - at) as u64;
        let kind = Truncated { needed, available };
        assert_eq!((c.offset, &c.kind), (at as u64, &kind), "cut at {cut}");
        let c = corruption_of(read_bytes(b, Some(&golden_expect())));
        let kind = mismatch("checkpoint.bytes", 232, cut as u64);
        assert_eq!((c.offset, c.kind), (0, kind), "cut at {cut}");
        let scan = scan_bytes(b, None);
        assert_eq!(scan.problems.len(), 1, "cut at {cut}");
        assert!(matches!(scan.problems[0].kind, Truncated { .. }));
    }
}

/// Two blocks of 4096 and 3 entries, in a checkpoint of epoch 9 (class 0 nodes filling their
/// slot).
fn two_blocks() -> (Vec<u8>, CheckpointInfo) {
    let fs = fresh();
    let len = SLOT_BYTES_MIN as u32;
    let entries: Vec<_> = (0..4099u64)
        .map(|i| entry((1 << 48) + 2 * i, Location::unpack(i).unwrap(), len, i % 10))
        .collect();
    let info = write_fixed(&fs, 2, 9, &entries);
    (file_bytes(&fs, &path_of(2)), info)
}

/// Bytes of a full version 3 block.
const BLOCK_FIXED: usize = 16 + 4096 * 40;
const B1: usize = 64 + BLOCK_FIXED;
const FOOTER: usize = B1 + 16 + 3 * 40;

#[test]
fn truncation_of_a_two_block_file_is_reported() {
    let (bytes, info) = two_blocks();
    assert_eq!(bytes.len(), FOOTER + 32);
    let landmarks = [0, 64, 80, B1, B1 + 16, FOOTER, bytes.len()];
    let near = landmarks
        .iter()
        .flat_map(|&l| l.saturating_sub(2)..(l + 2).min(bytes.len()));
    for cut in near.chain((0..bytes.len()).step_by(1009)) {
        let c = corruption_of(read_bytes(&bytes[..cut], None));
        assert!(matches!(c.kind, Truncated { .. }), "cut at {cut}: {c}");
        let c = corruption_of(read_bytes(&bytes[..cut], Some(&info.expect())));
        assert_eq!(c.kind, mismatch("checkpoint.bytes", info.bytes, cut as u64));
    }
}

#[test]
fn scan_reports_every_problem_in_file_order() {
    let (mut b, info) = two_blocks();
    let entry = |block: usize, i: usize| block + 16 + 40 * i;
    // Block 0: a flipped bit in entry 5, so the whole block is skipped.
    b[entry(64, 5) + 20] ^= 1;
    // Block 1: a wrong first_entry_index, then entry 1 born after the checkpoint's epoch.
    put_u64(&mut b, B1 + 8, 4000);
    put_u64(&mut b, entry(B1, 1) + 24, 10);
    reseal_block(&mut b, B1);
    // Footer: one block too many.
    put_u64(&mut b, FOOTER + 16, 3);
    reseal_footer(&mut b, FOOTER);

    let (report, seen, problems) = scan_found(&b, Some(&info.expect()));
    let (fs, path) = stored(&b, 2);
    let block0 = &b[80..64 + BLOCK_FIXED];
    let expected = vec![
        (
            68,
            ChecksumMismatch {
                expected: get_u32(&b, 68),
                actual: crc32c(block0),
            },
        ),
        (
            B1 + 8,
            mismatch("checkpoint_block.first_entry_index", 4096, 4000),
        ),
        (entry(B1, 1) + 24, field("checkpoint_entry.birth", 10)),
        (FOOTER + 16, mismatch("checkpoint_footer.block_count", 2, 3)),
        (
            0,
            mismatch(
                "checkpoint.crc32c",
                u64::from(info.crc32c),
                u64::from(crc32c(&b)),
            ),
        ),
    ];
    assert_eq!(problems, expected);
    assert_eq!(seen, vec![(1 << 48) + 2 * 4096, (1 << 48) + 2 * 4098]);
    assert_eq!((report.entries_valid, report.blocks), (2, 2));
    assert_eq!(report.header.map(|h| h.entry_count), Some(4099));
    // The read stops at the first of them.
    let c = corruption_of(read_checkpoint(
        &fs,
        &path,
        Some(&info.expect()),
        |_| Ok(()),
    ));
    assert_eq!(c, report.problems[0]);
}

#[test]
fn scan_of_a_clean_or_missing_file() {
    let report = scan_bytes(&hex(GOLDEN), Some(&golden_expect()));
    assert!(report.is_clean());
    assert_eq!(
        (report.entries_valid, report.blocks, report.bytes),
        (3, 1, 232)
    );
    let fs = fresh();
    let report = scan_checkpoint(&fs, &path_of(7), None, |_| Ok(())).unwrap();
    assert_eq!(report.problems.len(), 1);
    assert_eq!(report.problems[0].kind, CorruptionKind::MissingFile);
}

#[test]
fn visitor_errors_stop_both_policies() {
    let golden = hex(GOLDEN);
    let (fs, path) = stored(&golden, 2);
    let stop = |_| Err(crate::Error::InvalidArgument("stop".into()));
    assert!(matches!(
        read_checkpoint(&fs, &path, None, stop),
        Err(crate::Error::InvalidArgument(_))
    ));
    assert!(matches!(
        scan_checkpoint(&fs, &path, None, stop),
        Err(crate::Error::InvalidArgument(_))
    ));
}

#[test]
fn exhausted_entry_rejections() {
    // The golden entries with exhausted handle 5:77:65535 at 160 (location 168, len 176,
    // crc 180, birth 184, kind 192, flags 193), in checkpoint 4.
    let (golden, items) = fixed_with_exhausted();
    assert_eq!(&golden[160..200], &hex(GOLDEN_EXHAUSTED_ENTRY)[..]);
    let rejects = |edit: &dyn Fn(&mut Vec<u8>), offset: u64, kind: CorruptionKind| {
        let mut b = golden.clone();
        edit(&mut b);
        let (fs, path) = stored(&b, 4);
        let c = corruption_of(read_checkpoint_items(&fs, &path, None, |_| Ok(())));
        assert_eq!((c.offset, &c.kind), (offset, &kind));
        let scan = scan_checkpoint_items(&fs, &path, None, |_| Ok(())).unwrap();
        assert_eq!(scan.problems.first(), Some(&c));
    };
    // Only the last tag may be exhausted.
    let tag_65534 = (u64::from(u16::MAX - 1) << 48) | (5 << 42) | 77;
    rejects(
        &|b| {
            put_u64(b, 160, tag_65534);
            reseal_block(b, 64);
        },
        160,
        field("checkpoint_entry.node_id", tag_65534),
    );
    // Every other field of an exhausted entry is zero, like a free one's.
    rejects(
        &|b| {
            b[184] = 1;
            reseal_block(b, 64);
        },
        184,
        field("checkpoint_entry.birth", 1),
    );
    // FLAG_EXHAUSTED only beside FLAG_FREE: alone it is a live entry's flags, which must be 0.
    rejects(
        &|b| {
            b[193] = 2;
            reseal_block(b, 64);
        },
        193,
        field("checkpoint_entry.flags", 2),
    );
    rejects(
        &|b| {
            b[193] = 7;
            reseal_block(b, 64);
        },
        193,
        field("checkpoint_entry.flags", 7),
    );
    // Version 2 has no exhausted entries: there, flags 3 is refused.
    rejects(
        &|b| {
            b[8] = 2;
            reseal_header(b);
        },
        193,
        field("checkpoint_entry.flags", 3),
    );
    // The unedited file reads back exactly.
    let (fs, path) = stored(&golden, 4);
    let mut seen = Vec::new();
    read_checkpoint_items(&fs, &path, None, |i| {
        seen.push(i);
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, items);
}
