//! The metadata files of a store directory: their names, how one is written so that it appears
//! only complete, and how a manifest is read back and proven to be the one a superblock names.
//!
//! Invariants:
//! 1. A file written by `write_durably` appears under its final name only with all its bytes
//!    durable: it is written as `<name>.tmp`, synced, renamed, and the directory is synced.
//! 2. A `*.tmp` file is never read by recovery; it is either being written (only while a
//!    [`super::MetaStore`] writer holds its lock) or a leftover of a crash or a failed write.
//! 3. A manifest is trusted only when its length, CRC32C and document seq all equal what the
//!    superblock slot in force recorded for it.

use std::path::Path;

use super::manifest::{Manifest, ManifestRef};
use crate::codec::crc32c;
use crate::error::{CorruptionKind, Error, Result};
use crate::io::Storage;

/// The suffix of a file being written.
pub const TMP_SUFFIX: &str = ".tmp";

/// The name of the manifest with `seq`.
pub fn manifest_file_name(seq: u64) -> String {
    format!("manifest-{seq:016x}.json")
}

/// The seq of a manifest file name, if `name` is one (exactly 16 lowercase hex digits).
pub fn parse_manifest_file_name(name: &str) -> Option<u64> {
    let hex = name.strip_prefix("manifest-")?.strip_suffix(".json")?;
    let canonical = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !canonical {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// How a multi-step write failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// A step failed before anything became durable that recovery could mistake for new state:
    /// the old state is fully in force and the write may be retried.
    Clean(Error),
    /// A sync failed (or a write reached a file in force), so what the disk holds is unknown.
    Unknown(Error),
}

impl Failure {
    /// The error, whatever the kind.
    pub(super) fn into_error(self) -> Error {
        match self {
            Failure::Clean(e) | Failure::Unknown(e) => e,
        }
    }
}

/// Writes `bytes` as `dir/name`: tmp file, sync_data, rename, sync_dir (invariant 1).
pub(super) fn write_durably(
    storage: &dyn Storage,
    dir: &Path,
    name: &str,
    bytes: &[u8],
) -> std::result::Result<(), Failure> {
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    let path = dir.join(name);
    // A tmp file left by an earlier failed attempt is garbage (invariant 2), and `create` refuses
    // an existing file.
    if storage.exists(&tmp).map_err(Failure::Clean)? {
        storage.remove(&tmp).map_err(Failure::Clean)?;
    }
    let file = storage.create(&tmp).map_err(Failure::Clean)?;
    file.write_at(bytes, 0).map_err(Failure::Clean)?;
    file.sync_data().map_err(Failure::Unknown)?;
    tracing::debug!(file = %tmp.display(), bytes = bytes.len(), "synced");
    // Nothing refers to `name` yet, so a failed rename leaves nothing recovery would read.
    storage.rename(&tmp, &path).map_err(Failure::Clean)?;
    storage.sync_dir(dir).map_err(Failure::Unknown)?;
    tracing::debug!(file = %path.display(), "renamed into place and directory synced");
    Ok(())
}

/// Reads the manifest `reference` names from `dir` and checks it against the reference
/// (invariant 3).
pub fn read_manifest(
    storage: &dyn Storage,
    dir: &Path,
    reference: &ManifestRef,
) -> Result<Manifest> {
    let path = dir.join(manifest_file_name(reference.seq));
    if !storage.exists(&path)? {
        return Err(Error::corruption(&path, 0, CorruptionKind::MissingFile));
    }
    let file = storage.open_read_only(&path)?;
    let len = file.len()?;
    // Compare lengths before reading, so a wrong (possibly huge) file is not read into memory.
    if len != reference.bytes {
        return Err(Error::corruption(
            &path,
            0,
            CorruptionKind::Mismatch {
                what: "manifest_bytes",
                expected: reference.bytes,
                actual: len,
            },
        ));
    }
    let bytes = file.read_all()?;
    if bytes.len() as u64 != reference.bytes {
        return Err(Error::corruption(
            &path,
            0,
            CorruptionKind::Mismatch {
                what: "manifest_bytes",
                expected: reference.bytes,
                actual: bytes.len() as u64,
            },
        ));
    }
    let actual = crc32c(&bytes);
    if actual != reference.crc32c {
        return Err(Error::corruption(
            &path,
            0,
            CorruptionKind::ChecksumMismatch {
                expected: reference.crc32c,
                actual,
            },
        ));
    }
    let manifest = Manifest::decode(&bytes, &path)?;
    if manifest.seq != reference.seq {
        return Err(Error::corruption(
            &path,
            0,
            CorruptionKind::Mismatch {
                what: "manifest_seq",
                expected: reference.seq,
                actual: manifest.seq,
            },
        ));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_names_round_trip_and_reject_near_misses() {
        assert_eq!(manifest_file_name(2), "manifest-0000000000000002.json");
        assert_eq!(
            manifest_file_name(u64::MAX),
            "manifest-ffffffffffffffff.json"
        );
        for seq in [0, 1, 0xabc, u64::MAX] {
            assert_eq!(
                parse_manifest_file_name(&manifest_file_name(seq)),
                Some(seq)
            );
        }
        for name in [
            "manifest-0000000000000002.json.tmp",
            "manifest-000000000000002.json",
            "manifest-00000000000000002.json",
            "manifest-000000000000000A.json",
            "manifest-+000000000000002.json",
            "manifest-0000000000000002.jsonx",
            "superblock",
        ] {
            assert_eq!(parse_manifest_file_name(name), None, "{name}");
        }
    }
}
