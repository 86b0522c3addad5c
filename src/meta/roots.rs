//! [`RootCatalog`]: the named roots a superblock slot carries.
//!
//! Invariants (every `RootCatalog` value keeps them, so every one can be encoded):
//! 1. At most [`ROOTS_MAX`] roots.
//! 2. Every name is valid UTF-8 (it is a `String`) of 1 to [`ROOT_NAME_BYTES_MAX`] bytes.
//! 3. Every node id is non-zero: zero is the "no node" value of the on-disk format.
//! 4. Names are unique and iterate in byte order, which is the order the slot stores them in.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The most roots one superblock slot can hold.
pub const ROOTS_MAX: usize = 64;

/// The longest root name, in bytes.
pub const ROOT_NAME_BYTES_MAX: usize = 47;

/// The named roots of a store: name → node id, sorted by name bytes.
///
/// Node ids are raw `u64` values for now; the only property this layer relies on is that zero is
/// never a valid id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RootCatalog {
    roots: BTreeMap<String, u64>,
}

impl RootCatalog {
    /// An empty catalog.
    pub fn new() -> Self {
        RootCatalog::default()
    }

    /// Checks that `name` and `node_id` could be stored in a slot.
    pub fn check_entry(name: &str, node_id: u64) -> Result<()> {
        if name.is_empty() || name.len() > ROOT_NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "root name {name:?} is {} bytes; names must be 1 to {ROOT_NAME_BYTES_MAX} bytes",
                name.len()
            )));
        }
        if node_id == 0 {
            return Err(Error::InvalidArgument(format!(
                "root {name:?}: node id 0 is reserved for \"no node\""
            )));
        }
        Ok(())
    }

    /// Sets `name` to `node_id`, returning the id it replaced.
    ///
    /// Fails with [`Error::InvalidArgument`] (leaving the catalog unchanged) when the name is empty
    /// or longer than [`ROOT_NAME_BYTES_MAX`] bytes, the id is zero, or a new name would make more
    /// than [`ROOTS_MAX`] roots.
    pub fn insert(&mut self, name: impl Into<String>, node_id: u64) -> Result<Option<u64>> {
        let name = name.into();
        Self::check_entry(&name, node_id)?;
        if self.roots.len() >= ROOTS_MAX && !self.roots.contains_key(&name) {
            return Err(Error::InvalidArgument(format!(
                "cannot add root {name:?}: a superblock holds at most {ROOTS_MAX} roots"
            )));
        }
        Ok(self.roots.insert(name, node_id))
    }

    /// Removes `name`, returning its id.
    pub fn remove(&mut self, name: &str) -> Option<u64> {
        self.roots.remove(name)
    }

    /// The id of `name`.
    pub fn get(&self, name: &str) -> Option<u64> {
        self.roots.get(name).copied()
    }

    /// Number of roots.
    pub fn len(&self) -> usize {
        self.roots.len()
    }

    /// True when there are no roots.
    pub fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    /// The roots in name-byte order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, u64)> + '_ {
        self.roots.iter().map(|(k, v)| (k.as_str(), *v))
    }

    /// Builds a catalog from pairs, failing on the first one `insert` rejects.
    pub fn try_from_pairs<I, S>(pairs: I) -> Result<Self>
    where
        I: IntoIterator<Item = (S, u64)>,
        S: Into<String>,
    {
        let mut catalog = RootCatalog::new();
        for (name, id) in pairs {
            catalog.insert(name, id)?;
        }
        Ok(catalog)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_invalid_argument(r: Result<Option<u64>>) -> bool {
        matches!(r, Err(Error::InvalidArgument(_)))
    }

    #[test]
    fn insert_checks_name_id_and_count() {
        let mut c = RootCatalog::new();
        assert!(is_invalid_argument(c.insert("", 1)));
        assert!(is_invalid_argument(c.insert("x".repeat(48), 1)));
        assert!(is_invalid_argument(c.insert("zero", 0)));
        assert_eq!(c.insert("x".repeat(47), 1).ok(), Some(None));
        // A multi-byte name is measured in bytes: 16 three-byte characters are 48 bytes.
        assert!(is_invalid_argument(c.insert("€".repeat(16), 1)));
        for i in 1..ROOTS_MAX {
            assert_eq!(c.insert(format!("r{i:02}"), i as u64).ok(), Some(None));
        }
        assert_eq!(c.len(), ROOTS_MAX);
        assert!(is_invalid_argument(c.insert("one-too-many", 9)));
        // Replacing an existing name does not grow the catalog, so it is allowed when full.
        assert_eq!(c.insert("r01", 77).ok(), Some(Some(1)));
        assert_eq!(c.get("r01"), Some(77));
        assert!(c.get("one-too-many").is_none());
    }

    #[test]
    fn iterates_in_byte_order() {
        let c = RootCatalog::try_from_pairs([("b", 2), ("B", 3), ("a", 1), ("é", 4)]).unwrap();
        let names: Vec<&str> = c.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["B", "a", "b", "é"]);
    }
}
