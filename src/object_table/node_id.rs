//! `NodeId`: the stable 64-bit identity of a node.
//!
//! Layout (bit 63 is the most significant):
//! ```text
//!  63        48 47    42 41                                      0
//! +------------+--------+-----------------------------------------+
//! |  tag (16)  |shard(6)|               handle (42)               |
//! +------------+--------+-----------------------------------------+
//! ```
//! Invariants:
//! 1. The tag is never 0 (tags run 1..=[`TAG_MAX`]), so the raw value 0 is never a valid id.
//! 2. A NodeId is never issued twice: each handle issues each of its 65 535 tags once, in
//!    increasing order (the tag moves on exactly once each time the handle is freed,
//!    [`next_tag`]), then is retired for good. A handle freed while carrying [`TAG_MAX`] is
//!    *exhausted*: its entry stays FREE, is marked so, and is never handed out again, also after a
//!    restart (the checkpoint records the mark, and replay re-derives it). So an id kept past its
//!    node's reclamation is always detected as stale instead of reaching another node's bytes.
//!    The memory cost is one object-table entry per 65 535 frees of a handle.

use std::fmt;
use std::str::FromStr;

/// Number of object-table shards.
pub const SHARDS: usize = 64;
/// Bits of the handle field.
pub const HANDLE_BITS: u32 = 42;
/// Bits of the shard field.
pub const SHARD_BITS: u32 = 6;
/// Bits of the tag field.
pub const TAG_BITS: u32 = 16;
/// The largest handle a shard can hold.
pub const HANDLE_MAX: u64 = (1 << HANDLE_BITS) - 1;
/// The last tag a handle issues; a handle freed while carrying it is exhausted (invariant 2).
pub const TAG_MAX: u16 = u16::MAX;

const SHARD_SHIFT: u32 = HANDLE_BITS;
const TAG_SHIFT: u32 = HANDLE_BITS + SHARD_BITS;

const _: () = assert!(HANDLE_BITS + SHARD_BITS + TAG_BITS == 64);
const _: () = assert!(1 << SHARD_BITS == SHARDS);
const _: () = assert!(TAG_BITS >= 16);
const _: () = assert!(TAG_MAX as u64 == (1 << TAG_BITS) - 1);

/// A node's stable identity: shard, handle and ABA tag.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::NodeId;
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let mut tx = rt.begin();
/// let id = tx.alloc(1, b"x")?;
/// tx.commit()?;
/// // A structure stores ids inside its nodes as their raw 64-bit value ...
/// let raw = id.raw();
/// assert_eq!(NodeId::from_raw(raw), Some(id));
/// // ... and tools print and parse them as shard:handle:tag.
/// let text = id.to_string();
/// assert_eq!(text.parse::<NodeId>()?, id);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(u64);

impl NodeId {
    /// Builds an id. `None` if the shard or handle is out of range or the tag is 0.
    pub fn new(shard: usize, handle: u64, tag: u16) -> Option<NodeId> {
        if shard >= SHARDS || handle > HANDLE_MAX || tag == 0 {
            return None;
        }
        Some(NodeId(
            (u64::from(tag) << TAG_SHIFT) | ((shard as u64) << SHARD_SHIFT) | handle,
        ))
    }

    /// Interprets a raw value; `None` for 0 or a zero tag.
    pub fn from_raw(raw: u64) -> Option<NodeId> {
        let id = NodeId(raw);
        (id.tag() != 0).then_some(id)
    }

    /// The raw 64-bit value.
    pub fn raw(self) -> u64 {
        self.0
    }

    /// The object-table shard.
    pub fn shard(self) -> usize {
        ((self.0 >> SHARD_SHIFT) & ((1 << SHARD_BITS) - 1)) as usize
    }

    /// The handle within the shard.
    pub fn handle(self) -> u64 {
        self.0 & HANDLE_MAX
    }

    /// The ABA tag.
    pub fn tag(self) -> u16 {
        (self.0 >> TAG_SHIFT) as u16
    }
}

/// The tag the handle's next node gets after a node with `tag` is freed; `None` once `tag` is
/// [`TAG_MAX`]: the handle has issued every tag and is retired for good (invariant 2). Tags never
/// wrap, so no id is issued twice.
pub fn next_tag(tag: u16) -> Option<u16> {
    tag.checked_add(1)
}

impl fmt::Display for NodeId {
    /// `shard:handle:tag`, e.g. `3:1042:7`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.shard(), self.handle(), self.tag())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({self})")
    }
}

/// Why a string is not a `NodeId`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a node id: {0:?} (expected shard:handle:tag, e.g. 3:1042:7, or a raw 0x-prefixed hex value)"
)]
pub struct ParseNodeIdError(String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    /// Parses `shard:handle:tag` or a raw value written as `0x` and hex digits.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseNodeIdError(s.to_owned());
        if let Some(hex) = s.strip_prefix("0x") {
            let raw = u64::from_str_radix(hex, 16).map_err(|_| err())?;
            return NodeId::from_raw(raw).ok_or_else(err);
        }
        let mut parts = s.split(':');
        let (Some(shard), Some(handle), Some(tag), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(err());
        };
        let shard: usize = shard.parse().map_err(|_| err())?;
        let handle: u64 = handle.parse().map_err(|_| err())?;
        let tag: u16 = tag.parse().map_err(|_| err())?;
        NodeId::new(shard, handle, tag).ok_or_else(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn layout_is_pinned() {
        let id = NodeId::new(3, 1042, 7).unwrap();
        assert_eq!(id.raw(), (7u64 << 48) | (3u64 << 42) | 1042);
        assert_eq!(id.raw(), 0x0007_0c00_0000_0412);
        assert_eq!(id.to_string(), "3:1042:7");
        assert_eq!("3:1042:7".parse::<NodeId>().unwrap(), id);
        assert_eq!("0x00070c0000000412".parse::<NodeId>().unwrap(), id);
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert_eq!(NodeId::from_raw(0), None);
        assert_eq!(NodeId::new(0, 5, 0), None);
        assert_eq!(NodeId::new(64, 5, 1), None);
        assert_eq!(NodeId::new(0, HANDLE_MAX + 1, 1), None);
        for bad in [
            "",
            "1:2",
            "1:2:3:4",
            "64:1:1",
            "1:2:0",
            "x:1:1",
            "0x0",
            "0xzz",
            "1:2:65536",
        ] {
            assert!(bad.parse::<NodeId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_never_wrap() {
        assert_eq!(next_tag(0), Some(1));
        assert_eq!(next_tag(1), Some(2));
        assert_eq!(next_tag(TAG_MAX - 1), Some(TAG_MAX));
        assert_eq!(next_tag(TAG_MAX), None);
        // Following next_tag from the first tag issues every tag exactly once.
        let mut tags = vec![1u16];
        while let Some(t) = tags.last().copied().and_then(next_tag) {
            tags.push(t);
        }
        assert_eq!(tags.len(), usize::from(TAG_MAX));
        assert!(tags.windows(2).all(|w| w[1] == w[0] + 1));
    }

    proptest! {
        #[test]
        fn display_and_parse_round_trip(shard in 0usize..SHARDS, handle in 0..=HANDLE_MAX, tag in 1u16..) {
            let id = NodeId::new(shard, handle, tag).unwrap();
            prop_assert_eq!((id.shard(), id.handle(), id.tag()), (shard, handle, tag));
            prop_assert_eq!(id.to_string().parse::<NodeId>().unwrap(), id);
            prop_assert_eq!(NodeId::from_raw(id.raw()), Some(id));
        }

        #[test]
        fn parsing_arbitrary_strings_never_panics(s in ".{0,40}") {
            let _ = s.parse::<NodeId>();
        }
    }
}
