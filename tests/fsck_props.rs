//! `fsck` and `dump` over arbitrary bytes: whatever one file of a store holds (random bytes, or
//! the real bytes with random overwrites and a random cut), neither panics, the report
//! serializes to JSON, and its exit code is 0, 1 or 2 (2 exactly when no superblock slot is
//! valid).
//!
//! `VELLUM_FSCK_PROP_CASES` (default 48) sets the cases per property.

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;
use vellum::inspect::{FsckOptions, dump, fsck, load};
use vellum::io::Storage;

mod common;

use common::image::Image;

const DIR: &str = "/store";

fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(|| common::image::clean_store(DIR, 17).0)
}

/// The files worth damaging: superblock, manifest, checkpoint, log, and two data files.
fn targets() -> Vec<String> {
    let image = image();
    let mut names: Vec<String> = ["superblock", "manifest-", "ot-", "log-"]
        .iter()
        .map(|p| image.name_where(|n| n.starts_with(p)))
        .collect();
    names.extend(
        image
            .files
            .keys()
            .filter(|n| n.starts_with("data-"))
            .take(2)
            .cloned(),
    );
    names
}

fn options() -> FsckOptions {
    common::fsck_options()
}

/// Replaces `target` with `bytes` in a copy of the store and runs every inspection on it.
fn inspect_with(target: &str, bytes: &[u8]) -> Result<(), TestCaseError> {
    let fs = image().materialize();
    let path = Path::new(DIR).join(target);
    let f = fs.open(&path).expect("open");
    f.set_len(0).expect("cut");
    if !bytes.is_empty() {
        f.write_at(bytes, 0).expect("write");
    }
    f.sync_data().expect("sync");
    let report = fsck(&fs, Path::new(DIR), &options()).expect("the store exists");
    let json = serde_json::to_string(&report).expect("the report serializes");
    prop_assert!(json.contains("\"findings\""));
    let code = report.exit_code(false);
    prop_assert!(code <= 2);
    prop_assert_eq!(code == 2, !report.readable);
    let insp = load(&fs, Path::new(DIR), &options()).expect("load");
    let _ = serde_json::to_string(&dump::superblock(&insp)).expect("json");
    let _ = serde_json::to_string(&dump::manifest(&fs, &insp)).expect("json");
    let _ = serde_json::to_string(&dump::roots(&insp)).expect("json");
    let _ = serde_json::to_string(&dump::logs(&fs, &insp)).expect("json");
    let _ = serde_json::to_string(&dump::checkpoint(&fs, &insp)).expect("json");
    for live in insp.model.live.values() {
        let n = dump::node(&insp, live.id).expect("a live node dumps");
        let _ = serde_json::to_string(&n).expect("json");
    }
    Ok(())
}

fn cases() -> u32 {
    common::env_u64("VELLUM_FSCK_PROP_CASES", 48) as u32
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_in_any_file(
        which in 0usize..6,
        bytes in proptest::collection::vec(any::<u8>(), 0..9000),
    ) {
        let target = targets()[which].clone();
        inspect_with(&target, &bytes)?;
    }

    #[test]
    fn overwritten_and_cut_real_bytes(
        which in 0usize..6,
        writes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..24),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        let target = targets()[which].clone();
        let mut bytes = image().files[&target].clone();
        if !bytes.is_empty() {
            for (at, value) in writes {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len()));
            }
        }
        inspect_with(&target, &bytes)?;
    }
}
