//! Unit tests of the superblock slot: golden bytes, the decoder's rejection matrix, and choosing
//! the slot in force after torn writes and bit flips.

use super::*;

fn path() -> &'static Path {
    Path::new("/db/superblock")
}

fn golden() -> Superblock {
    Superblock {
        generation: 3,
        commit_epoch: 99,
        manifest: ManifestRef {
            seq: 2,
            bytes: 300,
            crc32c: 0xdead_beef,
        },
        roots: RootCatalog::try_from_pairs([("log", 0x0202), ("index", 0x0101)]).unwrap(),
    }
}

/// CRC32C of the golden slot's first 4092 bytes, computed independently of this crate (a bitwise
/// Castagnoli CRC over the bytes this test spells out).
const GOLDEN_CRC: u32 = 0x88a1_bf2e;

#[test]
fn golden_bytes() {
    let b = golden().encode().unwrap();
    assert_eq!(b.len(), 4096);
    let header: [u8; 56] = [
        b'V', b'E', b'L', b'S', b'U', b'P', b'E', b'R', // magic
        3, 0, 0, 0, // format_version
        0x00, 0x10, 0, 0, // slot_bytes = 4096
        3, 0, 0, 0, 0, 0, 0, 0, // generation
        99, 0, 0, 0, 0, 0, 0, 0, // commit_epoch
        2, 0, 0, 0, 0, 0, 0, 0, // manifest_seq
        0x2c, 0x01, 0, 0, 0, 0, 0, 0, // manifest_bytes = 300
        0xef, 0xbe, 0xad, 0xde, // manifest_crc32c
        2, 0, // root_count
        0, 0, // reserved
    ];
    assert_eq!(&b[..56], &header[..]);
    // Root entry 0: "index" (sorted before "log"), node 0x0101.
    assert_eq!(b[56], 5);
    assert_eq!(&b[57..62], b"index");
    assert!(b[62..104].iter().all(|&x| x == 0));
    assert_eq!(&b[104..112], &[0x01, 0x01, 0, 0, 0, 0, 0, 0]);
    // Root entry 1: "log", node 0x0202.
    assert_eq!(b[112], 3);
    assert_eq!(&b[113..116], b"log");
    assert!(b[116..160].iter().all(|&x| x == 0));
    assert_eq!(&b[160..168], &[0x02, 0x02, 0, 0, 0, 0, 0, 0]);
    // Unused entries and the reserved tail.
    assert!(b[168..4092].iter().all(|&x| x == 0));
    assert_eq!(&b[4092..], &GOLDEN_CRC.to_le_bytes());
    assert_eq!(Superblock::decode(&b, path(), 1).unwrap(), golden());
}

/// Recomputes a slot's CRC after a test changed a field, so the decoder gets past the checksum to
/// the field check under test.
fn reseal(b: &mut [u8]) {
    let crc = crc32c(&b[..CRC_OFFSET]);
    b[CRC_OFFSET..].copy_from_slice(&crc.to_le_bytes());
}

fn corruption_of(r: Result<Superblock>) -> Corruption {
    match r {
        Err(Error::Corruption(c)) => *c,
        other => panic!("expected corruption, got {other:?}"),
    }
}

/// Applies `edit` to the golden slot (decoded as slot 1, at file offset 4096), optionally reseals,
/// and checks the exact error.
fn rejects(edit: impl FnOnce(&mut Vec<u8>), seal: bool, offset: u64, kind: CorruptionKind) {
    let mut b = golden().encode().unwrap();
    edit(&mut b);
    if seal {
        reseal(&mut b);
    }
    let c = corruption_of(Superblock::decode(&b, path(), 1));
    assert_eq!((c.offset, &c.kind), (offset, &kind));
    assert_eq!(c.file, path());
}

fn field(field: &'static str, value: u64) -> CorruptionKind {
    CorruptionKind::InvalidField { field, value }
}

#[test]
fn decoder_rejection_matrix() {
    let base = 4096;
    rejects(
        |b| b[0] = b'X',
        true,
        base,
        CorruptionKind::BadMagic {
            found: u64::from_le_bytes(*b"XELSUPER"),
        },
    );
    // Version 1: a store of the power-of-two large classes this build no longer reads;
    // version 2: a store whose smallest slot was 64 B.
    for old in [1, 2] {
        rejects(
            |b| b[8] = old,
            true,
            base + 8,
            CorruptionKind::UnsupportedVersion {
                found: u32::from(old),
            },
        );
    }
    rejects(
        |b| b[8] = 4,
        true,
        base + 8,
        CorruptionKind::UnsupportedVersion { found: 4 },
    );
    rejects(|b| b[13] = 0x20, true, base + 12, field("slot_bytes", 8192));
    rejects(|b| b[16] = 0, true, base + 16, field("generation", 0));
    rejects(|b| b[32] = 0, true, base + 32, field("manifest_seq", 0));
    rejects(|b| b[52] = 65, true, base + 52, field("root_count", 65));
    rejects(|b| b[55] = 7, true, base + 55, field("reserved", 7));
    // Swapping the two entries puts "log" before "index".
    rejects(
        |b| {
            let first: Vec<u8> = b[56..112].to_vec();
            b.copy_within(112..168, 56);
            b[112..168].copy_from_slice(&first);
        },
        true,
        base + 112,
        field("name", 1),
    );
    // A duplicate name is out of order too.
    rejects(
        |b| b.copy_within(56..112, 112),
        true,
        base + 112,
        field("name", 1),
    );
    rejects(|b| b[56] = 0, true, base + 56, field("name_len", 0));
    rejects(|b| b[56] = 48, true, base + 56, field("name_len", 48));
    rejects(|b| b[59] = 0xff, true, base + 59, field("name", 0));
    rejects(|b| b[65] = 1, true, base + 65, field("name_padding", 1));
    rejects(
        |b| b[104..112].fill(0),
        true,
        base + 104,
        field("node_id", 0),
    );
    rejects(
        |b| b[178] = 9,
        true,
        base + 178,
        field("unused_root_entry", 9),
    );
    rejects(
        |b| b[3740] = 4,
        true,
        base + 3740,
        field("reserved_tail", 4),
    );
    // A changed byte without a resealed CRC.
    let mut flipped = golden().encode().unwrap();
    flipped[3000] ^= 1;
    let actual = crc32c(&flipped[..4092]);
    rejects(
        |b| b[3000] ^= 1,
        false,
        base + 4092,
        CorruptionKind::ChecksumMismatch {
            expected: GOLDEN_CRC,
            actual,
        },
    );
    rejects(
        |b| b.truncate(4095),
        false,
        base,
        CorruptionKind::Truncated {
            needed: 4096,
            available: 4095,
        },
    );
}

#[test]
fn misdirected_slot_is_rejected_by_parity() {
    // Generation 3 belongs in slot 1; found in slot 0 it is a write that went to the wrong place.
    let b = golden().encode().unwrap();
    let c = corruption_of(Superblock::decode(&b, path(), 0));
    assert_eq!((c.offset, c.kind), (16, field("generation", 3)));
}

#[test]
fn encode_rejects_zero_generation_or_manifest_seq() {
    let mut sb = golden();
    sb.generation = 0;
    assert!(matches!(sb.encode(), Err(Error::InvalidArgument(_))));
    let mut sb = golden();
    sb.manifest.seq = 0;
    assert!(matches!(sb.encode(), Err(Error::InvalidArgument(_))));
}

/// A state with a full catalog of maximal names that differ per generation, so that every sector
/// of its slot differs from every other generation's: a torn write then always leaves a mix that
/// is neither slot.
fn state(generation: u64) -> Superblock {
    let roots =
        (0..ROOTS_MAX as u64).map(|i| (format!("{generation:04}-{i:02}-{:-<39}", ""), i + 1));
    Superblock {
        roots: RootCatalog::try_from_pairs(roots).unwrap(),
        ..light_state(generation)
    }
}

/// A state with one root: cheap to decode, for tests that load many thousands of files.
fn light_state(generation: u64) -> Superblock {
    Superblock {
        generation,
        commit_epoch: generation * 10,
        manifest: ManifestRef {
            seq: generation,
            bytes: 100 + generation,
            crc32c: generation as u32,
        },
        roots: RootCatalog::try_from_pairs([("g", generation)]).unwrap(),
    }
}

/// A superblock file holding `gen` in its slot and `prev` (or zeros) in the other, each slot made
/// by `make`.
fn file_of(make: fn(u64) -> Superblock, generation: u64, prev: Option<u64>) -> Vec<u8> {
    let mut f = vec![0u8; SUPERBLOCK_FILE_BYTES];
    for g in std::iter::once(generation).chain(prev) {
        let at = slot_index(g) * SLOT_BYTES;
        f[at..at + SLOT_BYTES].copy_from_slice(&make(g).encode().unwrap());
    }
    f
}

fn file_with(generation: u64, prev: Option<u64>) -> Vec<u8> {
    file_of(state, generation, prev)
}

/// The scenarios of a publish of `g + 1` over a file in force at `g`: the slot being written holds
/// `g - 1` (or zeros when `g == 1`, as after create).
fn publish_scenarios() -> Vec<(u64, Vec<u8>)> {
    (1..=4)
        .map(|g| (g, file_with(g, (g > 1).then(|| g - 1))))
        .collect()
}

#[test]
fn torn_write_of_the_inactive_slot_keeps_the_active_one() {
    const SECTORS: usize = SLOT_BYTES / 512;
    for (g, before) in publish_scenarios() {
        let target = slot_index(g + 1) * SLOT_BYTES;
        let new_slot = state(g + 1).encode().unwrap();
        for (old, new) in before[target..target + SLOT_BYTES]
            .chunks(512)
            .zip(new_slot.chunks(512))
        {
            assert_ne!(
                old, new,
                "every sector must change for the test to mean anything"
            );
        }
        // Every subset of the eight sectors may have reached the disk.
        for mask in 0u32..(1 << SECTORS) {
            let mut f = before.clone();
            for s in (0..SECTORS).filter(|s| mask & (1 << s) != 0) {
                let r = s * 512..(s + 1) * 512;
                f[target + r.start..target + r.end].copy_from_slice(&new_slot[r]);
            }
            let loaded = LoadedSuperblock::from_bytes(&f, path()).unwrap();
            let expect = if mask == (1 << SECTORS) - 1 { g + 1 } else { g };
            assert_eq!(loaded.active, state(expect), "g {g} mask {mask:#x}");
            assert_eq!(loaded.active_slot, slot_index(expect));
            let written_ok = loaded.slots[slot_index(g + 1)].is_ok();
            // Only no sector or all sectors leave a valid slot behind (the old or the new one);
            // zeros are never valid.
            assert_eq!(
                written_ok,
                mask == (1 << SECTORS) - 1 || (mask == 0 && g > 1),
                "g {g} mask {mask:#x}"
            );
        }
    }
}

#[test]
fn bit_flip_in_the_new_slot_falls_back_to_the_other() {
    // A new generation in slot 0 and one in slot 1, each over the previous one in the other slot.
    for g in [1, 2] {
        let mut f = file_of(light_state, g + 1, Some(g));
        let target = slot_index(g + 1) * SLOT_BYTES;
        assert_eq!(
            LoadedSuperblock::from_bytes(&f, path()).unwrap().active,
            light_state(g + 1)
        );
        for bit in 0..SLOT_BYTES * 8 {
            f[target + bit / 8] ^= 1 << (bit % 8);
            let loaded = LoadedSuperblock::from_bytes(&f, path()).unwrap();
            assert_eq!(loaded.active, light_state(g), "g {g} bit {bit}");
            assert!(loaded.slots[slot_index(g + 1)].is_err());
            f[target + bit / 8] ^= 1 << (bit % 8);
        }
    }
}

#[test]
fn both_slots_bad_reports_the_newer_one() {
    // Generation 3 (slot 1) torn in its last sector, generation 2 (slot 0) with a flipped bit.
    let mut f = file_with(3, Some(2));
    f[100] ^= 0x10;
    f[4096 + 4000] ^= 0x01;
    let err = LoadedSuperblock::from_bytes(&f, path()).unwrap_err();
    let c = err.as_corruption().unwrap();
    assert_eq!(c.offset, 4096 + 4092);
    assert!(matches!(c.kind, CorruptionKind::ChecksumMismatch { .. }));
    // The same with the newer generation in slot 0.
    let mut f = file_with(4, Some(3));
    f[4096 + 100] ^= 0x10;
    f[4000] ^= 0x01;
    let c = LoadedSuperblock::from_bytes(&f, path()).unwrap_err();
    assert_eq!(c.as_corruption().unwrap().offset, 4092);
    // An all-zero file has no superblock at all.
    let c = LoadedSuperblock::from_bytes(&[0; SUPERBLOCK_FILE_BYTES], path()).unwrap_err();
    assert!(matches!(
        c.as_corruption().unwrap().kind,
        CorruptionKind::BadMagic { found: 0 }
    ));
}

#[test]
fn short_file_reports_truncated_slot() {
    let f = file_with(2, Some(1));
    let loaded = LoadedSuperblock::from_bytes(&f[..4096], path()).unwrap();
    assert_eq!(loaded.active, state(2));
    let slot1 = loaded.slots[1].as_ref().unwrap_err();
    assert_eq!(slot1.offset, 4096);
    assert!(matches!(slot1.kind, CorruptionKind::Truncated { .. }));
    let err = LoadedSuperblock::from_bytes(&[], path()).unwrap_err();
    assert!(matches!(
        err.as_corruption().unwrap().kind,
        CorruptionKind::Truncated { .. }
    ));
}
