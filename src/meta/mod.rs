//! The store's metadata: a double-buffered superblock with the root catalog, and the JSON manifest
//! naming every file recovery trusts. Formats are in `design/FORMAT.md`, the protocols and their
//! crash argument in `design/DURABILITY.md`.
//!
//! Invariants this layer keeps:
//! 1. The state in force is the valid superblock slot with the highest generation, together with
//!    the manifest it names, which must match the slot's recorded length, CRC32C and seq.
//! 2. Every change becomes durable before it is published, and a crash at any point recovers
//!    either the state before a publish or the state after it, never a mix.
//! 3. Nothing read from disk is trusted before it is checked; every failed check is a structured
//!    corruption error naming the file and offset.
//!
//! Layout:
//! - [`roots`]: [`RootCatalog`], the named roots a slot carries;
//! - [`superblock`]: the slot format, and choosing the slot in force;
//! - [`manifest`]: the manifest schema, its encoding and its validation;
//! - [`files`]: file names, durable writes, and reading a manifest against its reference;
//! - [`store`]: [`MetaStore`], with the create, open and publish protocols.

pub mod files;
pub mod manifest;
pub mod roots;
pub mod store;
pub mod superblock;

pub use files::{TMP_SUFFIX, manifest_file_name, parse_manifest_file_name, read_manifest};
pub use manifest::{
    CheckpointRef, Counters, DataFileRef, DeltaLogRef, LAYOUT_FILE_BYTES_MAX,
    LAYOUT_FILE_BYTES_MIN, LAYOUT_WINDOW_BYTES_MIN, Layout, MANIFEST_FORMAT, MANIFEST_VERSION,
    Manifest, ManifestRef,
};
pub use roots::{ROOT_NAME_BYTES_MAX, ROOTS_MAX, RootCatalog};
pub use store::{LoadedMeta, MetaStore, MetaUpdate, Published};
pub use superblock::{
    LoadedSuperblock, SLOT_BYTES, SUPERBLOCK_FILE, SUPERBLOCK_FILE_BYTES, Superblock,
};
