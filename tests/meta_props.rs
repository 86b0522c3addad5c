//! Property tests of the metadata formats: decoding arbitrary or mutated bytes never panics, and
//! every valid superblock and manifest round-trips through its encoding.

use std::path::Path;

use proptest::prelude::*;
use vellum::meta::superblock::slot_index;
use vellum::meta::{
    CheckpointRef, Counters, DataFileRef, DeltaLogRef, Layout, LoadedSuperblock, Manifest,
    ManifestRef, ROOT_NAME_BYTES_MAX, ROOTS_MAX, RootCatalog, SLOT_BYTES, Superblock,
};

fn sb_path() -> &'static Path {
    Path::new("/db/superblock")
}

fn manifest_path() -> &'static Path {
    Path::new("/db/manifest-0000000000000001.json")
}

fn root_name() -> impl Strategy<Value = String> {
    // Long ASCII names up to the limit, and names of any characters, including multi-byte ones,
    // as long as they fit the 47 bytes.
    prop_oneof![
        "[ -~]{1,47}",
        "\\PC{1,12}".prop_filter("name must fit", |s| s.len() <= ROOT_NAME_BYTES_MAX),
    ]
}

fn catalog() -> impl Strategy<Value = RootCatalog> {
    prop::collection::btree_map(root_name(), 1..=u64::MAX, 0..=ROOTS_MAX)
        .prop_map(|m| RootCatalog::try_from_pairs(m).unwrap())
}

fn superblock() -> impl Strategy<Value = Superblock> {
    (
        1..=u64::MAX,
        any::<u64>(),
        1..=u64::MAX,
        any::<u64>(),
        any::<u32>(),
        catalog(),
    )
        .prop_map(
            |(generation, commit_epoch, seq, bytes, crc32c, roots)| Superblock {
                generation,
                commit_epoch,
                manifest: ManifestRef { seq, bytes, crc32c },
                roots,
            },
        )
}

/// A plain file name starting with the caller's tag; the tags of one manifest differ in a way no
/// suffix can make up for (each ends with '-' and no tag is another's prefix), so names are unique.
fn file_name(tag: String) -> impl Strategy<Value = String> {
    "[!-.0-~]{0,12}".prop_map(move |s| format!("{tag}{s}"))
}

fn delta_logs() -> impl Strategy<Value = Vec<DeltaLogRef>> {
    // (seq step, epoch step, closed length, bytes, name) per log; the last may be open.
    let log = (1..1000u64, 0..1000u64, 0..1000u64, any::<u64>());
    (prop::collection::vec(log, 0..6), any::<bool>(), 0..1000u64).prop_flat_map(
        |(specs, last_open, base)| {
            let names: Vec<_> = (0..specs.len())
                .map(|i| file_name(format!("log{i}-")))
                .collect();
            names.prop_map(move |names| {
                let mut logs = Vec::new();
                let (mut seq, mut epoch) = (base, base);
                for (i, ((seq_step, gap, span, bytes), file)) in specs.iter().zip(names).enumerate()
                {
                    seq += seq_step;
                    epoch += gap;
                    let open = last_open && i + 1 == specs.len();
                    logs.push(DeltaLogRef {
                        file,
                        seq,
                        start_epoch: epoch,
                        end_epoch: (!open).then_some(epoch + span),
                        bytes: (!open).then_some(*bytes),
                    });
                    epoch += span;
                }
                logs
            })
        },
    )
}

fn data_files() -> impl Strategy<Value = Vec<DataFileRef>> {
    prop::collection::btree_set((any::<u32>(), 0..u64::MAX / 2), 0..6).prop_flat_map(|keys| {
        let keys: Vec<_> = keys.into_iter().collect();
        let files: Vec<_> = (0..keys.len())
            .map(|i| (file_name(format!("data{i}-")), any::<u64>()))
            .collect();
        files.prop_map(move |files| {
            keys.iter()
                .zip(files)
                .map(|(&(class, seq), (file, bytes))| DataFileRef {
                    class,
                    seq,
                    file,
                    bytes,
                })
                .collect()
        })
    })
}

fn manifest() -> impl Strategy<Value = Manifest> {
    let checkpoint = prop::option::of(
        (
            file_name("ckpt-".into()),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
        )
            .prop_map(|(file, epoch, entries, bytes, crc32c)| CheckpointRef {
                file,
                epoch,
                entries,
                bytes,
                crc32c,
            }),
    );
    (
        1..=u64::MAX,
        checkpoint,
        delta_logs(),
        data_files(),
        (0..100u64, 0..100u64, any::<u64>()),
        (26u32..=40, 20u32..=40),
    )
        .prop_map(
            |(seq, checkpoint, delta_logs, data_files, extra, (file_log2, window_log2))| {
                let next_log_seq = delta_logs.last().map_or(0, |l| l.seq + 1) + extra.0;
                let next_data_seq =
                    data_files.iter().map(|d| d.seq + 1).max().unwrap_or(0) + extra.1;
                Manifest {
                    seq,
                    layout: Layout {
                        file_bytes_max: 1 << file_log2,
                        window_bytes: 1 << window_log2.min(file_log2),
                    },
                    checkpoint,
                    delta_logs,
                    data_files,
                    counters: Counters {
                        next_log_seq,
                        next_checkpoint_seq: extra.2,
                        next_data_seq,
                    },
                }
            },
        )
}

/// A valid slot with up to eight bytes overwritten, possibly with its CRC fixed up afterwards so
/// that the field checks behind it are reached.
fn mutated_slot() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        superblock(),
        prop::collection::vec((0..SLOT_BYTES, any::<u8>()), 1..8),
        any::<bool>(),
    )
        .prop_map(|(sb, edits, reseal)| {
            let mut b = sb.encode().unwrap();
            for (at, v) in edits {
                b[at] = v;
            }
            if reseal {
                let crc = vellum::codec::crc32c(&b[..SLOT_BYTES - 4]);
                b[SLOT_BYTES - 4..].copy_from_slice(&crc.to_le_bytes());
            }
            (b, slot_index(sb.generation))
        })
}

proptest! {
    #[test]
    fn arbitrary_slot_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), SLOT_BYTES), slot in 0..2usize) {
        let _ = Superblock::decode(&bytes, sb_path(), slot);
    }

    #[test]
    fn arbitrary_superblock_files_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2 * SLOT_BYTES + 10)) {
        let _ = LoadedSuperblock::from_bytes(&bytes, sb_path());
    }

    #[test]
    fn mutated_slots_never_panic_and_decode_only_to_what_they_encode((bytes, slot) in mutated_slot()) {
        // A slot that still decodes must be exactly the encoding of what it decodes to: no byte is
        // ignored by the decoder.
        if let Ok(sb) = Superblock::decode(&bytes, sb_path(), slot) {
            prop_assert_eq!(sb.encode().unwrap(), bytes);
        }
    }

    #[test]
    fn superblocks_round_trip(sb in superblock()) {
        let bytes = sb.encode().unwrap();
        prop_assert_eq!(bytes.len(), SLOT_BYTES);
        prop_assert_eq!(Superblock::decode(&bytes, sb_path(), slot_index(sb.generation)).unwrap(), sb);
    }

    #[test]
    fn arbitrary_manifest_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Manifest::decode(&bytes, manifest_path());
    }

    #[test]
    fn mutated_manifests_never_panic(
        m in manifest(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut bytes = m.encode().unwrap();
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        if let Ok(decoded) = Manifest::decode(&bytes, manifest_path()) {
            prop_assert_eq!(decoded.validate(), Ok(()));
        }
    }

    #[test]
    fn manifests_round_trip(m in manifest()) {
        prop_assert_eq!(m.validate(), Ok(()));
        let bytes = m.encode().unwrap();
        prop_assert_eq!(bytes.last(), Some(&b'\n'));
        prop_assert_eq!(Manifest::decode(&bytes, manifest_path()).unwrap(), m.clone());
        // Deterministic: encoding the decoded manifest gives the same bytes.
        prop_assert_eq!(Manifest::decode(&bytes, manifest_path()).unwrap().encode().unwrap(), bytes);
    }
}
