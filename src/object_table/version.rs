//! A node version as the object table records it.

use crate::alloc::Location;

/// One version of a node: where its bytes are, their length and checksum, and when it became
/// current.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Version {
    /// The slot holding the bytes.
    pub location: Location,
    /// Bytes of the node (at most the slot size).
    pub len: u32,
    /// CRC32C of the node's bytes. It lives in the reference, not beside the bytes, so a write
    /// that went to the wrong slot, or never happened, is caught when the node is read.
    pub crc32c: u32,
    /// The caller's node kind (what structure the bytes are).
    pub kind: u8,
    /// The commit epoch that made this version current.
    pub birth: u64,
}
