//! Hash maps and sets keyed by [`NodeId`], hashed with one multiply.
//!
//! Transactions look ids up on every read and write and reclamation on every freed version; the
//! default SipHash would cost more than the rest of such a lookup. Ids are not attacker-chosen
//! keys (the object table issues them), so a keyed hash buys nothing here.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hasher};

use super::NodeId;

/// The hasher: a multiply and a shift per `u64`, FNV-style for other bytes.
#[derive(Debug, Default, Clone, Copy)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

/// A map keyed by node id.
pub type IdMap<V> = HashMap<NodeId, V, BuildHasherDefault<IdHasher>>;

/// A set of node ids.
pub type IdSet = HashSet<NodeId, BuildHasherDefault<IdHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    #[test]
    fn ids_one_apart_hash_apart() {
        let b = BuildHasherDefault::<IdHasher>::default();
        let a = NodeId::from_raw(0x0001_0000_0000_0001).unwrap();
        let c = NodeId::from_raw(0x0001_0000_0000_0002).unwrap();
        let (ha, hc) = (b.hash_one(a), b.hash_one(c));
        assert_ne!(ha, hc);
        // The top bits (hashbrown's control bytes) differ too.
        assert_ne!(ha >> 57, hc >> 57);
        let mut set = IdSet::default();
        assert!(set.insert(a));
        assert!(!set.insert(a));
        assert!(set.insert(c));
        assert_eq!(set.len(), 2);
    }
}
