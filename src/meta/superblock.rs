//! The superblock: two 4 KiB slots, of which the valid one with the highest generation is in force.
//!
//! Invariants:
//! 1. A slot holding generation `g` lives at slot index `g % 2`; the decoder rejects a slot found
//!    at the other index, which catches a write that landed at the wrong offset.
//! 2. A publish writes generation `g + 1` only to the slot not holding `g` (the inactive one), so
//!    a torn or lost write can only damage the slot that was not in force.
//! 3. A slot is valid only if every byte checks: magic, version, sizes, CRC32C over bytes
//!    `[0, 4092)`, field ranges, root order and every reserved or padding byte being zero. Hence
//!    a valid slot is exactly what [`Superblock::encode`] produced for the decoded value.
//! 4. Decoding never panics: every read goes through [`Decoder`], and every failure is a
//!    structured corruption error with the absolute file offset of the offending field.
//! 5. Offsets are derived from each other and checked at compile time against the table in
//!    `design/FORMAT.md`.

use std::path::Path;

use super::manifest::ManifestRef;
use super::roots::{ROOT_NAME_BYTES_MAX, ROOTS_MAX, RootCatalog};
use crate::codec::{Decoder, Encoder, crc32c, magic_value};
use crate::error::{Corruption, CorruptionKind, Error, Result};
use crate::io::StorageFile;

/// The superblock file's name within the store directory.
pub const SUPERBLOCK_FILE: &str = "superblock";
/// The first eight bytes of every slot.
pub const MAGIC: [u8; 8] = *b"VELSUPER";
/// The store format version this build writes and reads: the slot layout, and the data layout
/// of `design/FORMAT.md` §5. Version 2 made class 13 the large class of 4 KiB-unit extents;
/// version 3 made the smallest slot 16 B (classes 0..=14, the large class 15), so a 16-byte
/// node owns 16 bytes of its file, not 64. A version-1 or version-2 store is refused as
/// `UnsupportedVersion`.
pub const FORMAT_VERSION: u32 = 3;
/// Bytes per slot.
pub const SLOT_BYTES: usize = 4096;
/// Slots per superblock file.
pub const SLOT_COUNT: usize = 2;
/// The superblock file's length.
pub const SUPERBLOCK_FILE_BYTES: usize = SLOT_BYTES * SLOT_COUNT;
/// Bytes per root entry: name_len, name, node_id.
pub const ROOT_ENTRY_BYTES: usize = 1 + ROOT_NAME_BYTES_MAX + 8;

const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = MAGIC_OFFSET + MAGIC.len();
const SLOT_BYTES_OFFSET: usize = VERSION_OFFSET + 4;
const GENERATION_OFFSET: usize = SLOT_BYTES_OFFSET + 4;
const COMMIT_EPOCH_OFFSET: usize = GENERATION_OFFSET + 8;
const MANIFEST_SEQ_OFFSET: usize = COMMIT_EPOCH_OFFSET + 8;
const MANIFEST_BYTES_OFFSET: usize = MANIFEST_SEQ_OFFSET + 8;
const MANIFEST_CRC_OFFSET: usize = MANIFEST_BYTES_OFFSET + 8;
const ROOT_COUNT_OFFSET: usize = MANIFEST_CRC_OFFSET + 4;
const RESERVED_OFFSET: usize = ROOT_COUNT_OFFSET + 2;
const RESERVED_BYTES: usize = 2;
const ROOTS_OFFSET: usize = RESERVED_OFFSET + RESERVED_BYTES;
const ROOTS_END: usize = ROOTS_OFFSET + ROOTS_MAX * ROOT_ENTRY_BYTES;
const CRC_OFFSET: usize = SLOT_BYTES - 4;
const TAIL_RESERVED_BYTES: usize = CRC_OFFSET - ROOTS_END;

const _: () = assert!(GENERATION_OFFSET == 16);
const _: () = assert!(MANIFEST_CRC_OFFSET == 48);
const _: () = assert!(ROOT_COUNT_OFFSET == 52);
const _: () = assert!(ROOTS_OFFSET == 56);
const _: () = assert!(ROOT_ENTRY_BYTES == 56);
const _: () = assert!(ROOTS_END == 3640);
const _: () = assert!(TAIL_RESERVED_BYTES == 452);
const _: () = assert!(CRC_OFFSET == 4092);
// A root count must fit its u16 field.
const _: () = assert!(ROOTS_MAX <= u16::MAX as usize);

/// The contents of one superblock slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    /// Increases by one per publish; at least 1. Selects the slot (`generation % 2`).
    pub generation: u64,
    /// The commit epoch this superblock makes durable.
    pub commit_epoch: u64,
    /// The manifest in force.
    pub manifest: ManifestRef,
    /// The named roots.
    pub roots: RootCatalog,
}

/// The slot index a generation lives at.
pub fn slot_index(generation: u64) -> usize {
    if generation.is_multiple_of(2) { 0 } else { 1 }
}

/// The byte offset within the superblock file of a slot index.
pub fn slot_offset(slot: usize) -> u64 {
    (slot * SLOT_BYTES) as u64
}

impl Superblock {
    /// The slot's 4096 bytes. Fails with [`Error::InvalidArgument`] if the generation or the
    /// manifest seq is zero (the catalog is valid by construction).
    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.generation == 0 || self.manifest.seq == 0 {
            return Err(Error::InvalidArgument(format!(
                "superblock generation ({}) and manifest seq ({}) must be at least 1",
                self.generation, self.manifest.seq
            )));
        }
        let mut e = Encoder::with_capacity(SLOT_BYTES);
        e.bytes(&MAGIC)
            .u32(FORMAT_VERSION)
            .u32(SLOT_BYTES as u32)
            .u64(self.generation)
            .u64(self.commit_epoch)
            .u64(self.manifest.seq)
            .u64(self.manifest.bytes)
            .u32(self.manifest.crc32c)
            // The catalog holds at most ROOTS_MAX (64) entries, which the assert above shows fits.
            .u16(self.roots.len() as u16)
            .zeros(RESERVED_BYTES);
        for (name, node_id) in self.roots.iter() {
            // The catalog keeps names 1..=47 bytes, so the length fits a u8 and the padding is
            // never negative.
            e.u8(name.len() as u8)
                .bytes(name.as_bytes())
                .zeros(ROOT_NAME_BYTES_MAX - name.len())
                .u64(node_id);
        }
        e.zeros(ROOTS_END - e.len()).zeros(TAIL_RESERVED_BYTES);
        let mut out = e.finish();
        let crc = crc32c(&out[..CRC_OFFSET]);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), SLOT_BYTES);
        Ok(out)
    }

    /// Decodes the slot at index `slot` of the superblock file `file` from the first 4096 bytes of
    /// `bytes` (fewer is `Truncated`). Errors report absolute offsets within the file.
    pub fn decode(bytes: &[u8], file: &Path, slot: usize) -> Result<Superblock> {
        let base = slot_offset(slot);
        let mut d = Decoder::new(bytes, file, base);
        if bytes.len() < SLOT_BYTES {
            return Err(d.error(CorruptionKind::Truncated {
                needed: SLOT_BYTES as u64,
                available: bytes.len() as u64,
            }));
        }
        // Identify the structure before checking its CRC, so that a region that is not a slot at
        // all (zeros, another file's bytes) is reported as such rather than as a bad checksum.
        let magic = d.array::<8>()?;
        if magic != MAGIC {
            return Err(d.error_at(
                MAGIC_OFFSET,
                CorruptionKind::BadMagic {
                    found: magic_value(&magic),
                },
            ));
        }
        let version = d.u32()?;
        if version != FORMAT_VERSION {
            return Err(d.error_at(
                VERSION_OFFSET,
                CorruptionKind::UnsupportedVersion { found: version },
            ));
        }
        let slot_bytes = d.u32()?;
        if slot_bytes as usize != SLOT_BYTES {
            return Err(invalid_field(
                file,
                base,
                SLOT_BYTES_OFFSET,
                "slot_bytes",
                u64::from(slot_bytes),
            ));
        }
        let stored = u32::from_le_bytes(crc_field(bytes));
        let computed = crc32c(&bytes[..CRC_OFFSET]);
        if stored != computed {
            return Err(d.error_at(
                CRC_OFFSET,
                CorruptionKind::ChecksumMismatch {
                    expected: stored,
                    actual: computed,
                },
            ));
        }
        let generation = d.u64()?;
        if generation == 0 || slot_index(generation) != slot {
            return Err(invalid_field(
                file,
                base,
                GENERATION_OFFSET,
                "generation",
                generation,
            ));
        }
        let commit_epoch = d.u64()?;
        let manifest_seq = d.u64()?;
        if manifest_seq == 0 {
            return Err(invalid_field(
                file,
                base,
                MANIFEST_SEQ_OFFSET,
                "manifest_seq",
                0,
            ));
        }
        let manifest = ManifestRef {
            seq: manifest_seq,
            bytes: d.u64()?,
            crc32c: d.u32()?,
        };
        let root_count = usize::from(d.u16()?);
        if root_count > ROOTS_MAX {
            return Err(invalid_field(
                file,
                base,
                ROOT_COUNT_OFFSET,
                "root_count",
                root_count as u64,
            ));
        }
        d.zeros(RESERVED_BYTES, "reserved")?;
        let roots = decode_roots(&mut d, root_count, file, base)?;
        d.zeros(TAIL_RESERVED_BYTES, "reserved_tail")?;
        Ok(Superblock {
            generation,
            commit_epoch,
            manifest,
            roots,
        })
    }
}

/// The stored CRC field of a slot at least `SLOT_BYTES` long.
fn crc_field(bytes: &[u8]) -> [u8; 4] {
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&bytes[CRC_OFFSET..SLOT_BYTES]);
    crc
}

/// An `InvalidField` error for the field at `pos` of the slot that starts at `base` in `file`.
fn invalid_field(file: &Path, base: u64, pos: usize, field: &'static str, value: u64) -> Error {
    Error::corruption(
        file,
        base + pos as u64,
        CorruptionKind::InvalidField { field, value },
    )
}

/// Decodes the 64 root entries; the decoder stands at `ROOTS_OFFSET`.
fn decode_roots(d: &mut Decoder<'_>, count: usize, file: &Path, base: u64) -> Result<RootCatalog> {
    let mut roots = RootCatalog::new();
    let mut prev: Option<&[u8]> = None;
    for i in 0..ROOTS_MAX {
        let entry = d.position();
        if i >= count {
            d.zeros(ROOT_ENTRY_BYTES, "unused_root_entry")?;
            continue;
        }
        let name_len = usize::from(d.u8()?);
        if name_len == 0 || name_len > ROOT_NAME_BYTES_MAX {
            return Err(invalid_field(
                file,
                base,
                entry,
                "name_len",
                name_len as u64,
            ));
        }
        let name_at = d.position();
        let name = d.bytes(name_len)?;
        let name_str = std::str::from_utf8(name)
            .map_err(|e| invalid_field(file, base, name_at + e.valid_up_to(), "name", i as u64))?;
        // Names are stored strictly increasing by bytes, which is also the catalog's order, so
        // decoding and re-encoding give the same bytes.
        if prev.is_some_and(|p| p >= name) {
            return Err(invalid_field(file, base, entry, "name", i as u64));
        }
        prev = Some(name);
        d.zeros(ROOT_NAME_BYTES_MAX - name_len, "name_padding")?;
        let id_at = d.position();
        let node_id = d.u64()?;
        if node_id == 0 {
            return Err(invalid_field(file, base, id_at, "node_id", 0));
        }
        // The checks above are exactly the catalog's rules, so insertion cannot fail; map its
        // error anyway rather than trust that in code that reads disk bytes.
        roots
            .insert(name_str, node_id)
            .map_err(|_| invalid_field(file, base, entry, "name", i as u64))?;
    }
    Ok(roots)
}

/// Both slots of a superblock file, and the one in force.
#[derive(Debug, Clone)]
pub struct LoadedSuperblock {
    /// The valid slot with the highest generation.
    pub active: Superblock,
    /// Its index (0 or 1).
    pub active_slot: usize,
    /// Each slot's decoding; the inactive one may be invalid (never written, or torn by a crash
    /// during the publish that was writing it), which `fsck` reports and recovery ignores.
    pub slots: [std::result::Result<Superblock, Corruption>; SLOT_COUNT],
}

impl LoadedSuperblock {
    /// Reads both slots of `file` and chooses the one in force.
    pub fn read(file: &dyn StorageFile) -> Result<LoadedSuperblock> {
        let mut bytes = vec![0u8; SUPERBLOCK_FILE_BYTES];
        let n = file.read_at(&mut bytes, 0)?;
        bytes.truncate(n);
        Self::from_bytes(&bytes, file.path())
    }

    /// Chooses the slot in force from the superblock file's bytes (`path` is for error reports).
    ///
    /// When neither slot is valid, the error is the one of the slot that should have been newest:
    /// the one whose (unverified) generation field is higher, as the generation lives in the first
    /// sector and so survives most torn writes.
    pub fn from_bytes(bytes: &[u8], path: &Path) -> Result<LoadedSuperblock> {
        let slot_bytes = |i: usize| bytes.get(i * SLOT_BYTES..).unwrap_or(&[]);
        let decode = |i: usize| {
            let b = slot_bytes(i);
            Superblock::decode(&b[..b.len().min(SLOT_BYTES)], path, i)
                .map_err(|e| into_corruption(e, path))
        };
        let slots = [decode(0), decode(1)];
        let active_slot = match (&slots[0], &slots[1]) {
            (Ok(a), Ok(b)) => {
                if a.generation > b.generation {
                    0
                } else {
                    1
                }
            }
            (Ok(_), Err(_)) => 0,
            (Err(_), Ok(_)) => 1,
            (Err(a), Err(b)) => {
                let raw = |i: usize| {
                    slot_bytes(i)
                        .get(GENERATION_OFFSET..GENERATION_OFFSET + 8)
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .map_or(0, u64::from_le_bytes)
                };
                let newest = if raw(0) > raw(1) { a } else { b };
                return Err(Error::Corruption(Box::new(newest.clone())));
            }
        };
        let active = match &slots[active_slot] {
            Ok(sb) => sb.clone(),
            Err(c) => return Err(Error::Corruption(Box::new(c.clone()))),
        };
        Ok(LoadedSuperblock {
            active,
            active_slot,
            slots,
        })
    }
}

/// Unwraps the corruption report of a decoding error. Decoding only ever fails with corruption;
/// should that change, the error is kept as an `InvalidDocument` report rather than lost.
fn into_corruption(e: Error, path: &Path) -> Corruption {
    match e {
        Error::Corruption(c) => *c,
        other => Corruption {
            file: path.to_path_buf(),
            offset: 0,
            kind: CorruptionKind::InvalidDocument {
                reason: other.to_string(),
            },
        },
    }
}

#[cfg(test)]
#[path = "superblock_tests.rs"]
mod tests;
