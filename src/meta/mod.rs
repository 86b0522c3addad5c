//! The superblock and the manifest (see design/FORMAT.md).
