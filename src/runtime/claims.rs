//! Root claims: at most one owner of a root name per runtime instance.
//!
//! A structure that keeps state about its root in memory (FasterLog's tail, page ring and page
//! table) cannot share the root with a second handle on the same runtime: both would append at the
//! same address, and one of two acknowledged commits would be lost. Such a structure claims its
//! root name for the lifetime of its handle.
//!
//! Invariants:
//! 1. At most one [`RootClaim`] per name is alive in one runtime: [`RootClaims::claim`] inserts
//!    the name into the set under its lock, and refuses with [`Error::RootClaimed`] if it is
//!    there.
//! 2. A claim is released exactly once, when its guard drops (the name is removed under the same
//!    lock), so a name can be claimed again as soon as the previous guard is gone.
//! 3. Claims are in memory only. They say nothing about what is on disk, and a runtime opened
//!    again starts with none (another process cannot open the store meanwhile: the directory
//!    lock, `DURABILITY.md` §6 RV1). The runtime itself neither checks nor needs claims: they
//!    coordinate the structures built on it.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Error, Result};

/// The names claimed in one runtime.
#[derive(Debug, Default)]
pub(crate) struct RootClaims {
    names: Mutex<HashSet<String>>,
}

impl RootClaims {
    /// Claims `name` (invariant 1). The name must be a valid root name (1 to 47 bytes of UTF-8),
    /// so a claim always names a root that could exist.
    pub(crate) fn claim(self: &Arc<Self>, name: &str) -> Result<RootClaim> {
        crate::meta::RootCatalog::check_entry(name, 1)?;
        if !self.names.lock().insert(name.to_owned()) {
            return Err(Error::RootClaimed {
                name: name.to_owned(),
            });
        }
        Ok(RootClaim {
            claims: self.clone(),
            name: name.to_owned(),
        })
    }
}

/// A claim of one root name in one runtime, held until dropped; see
/// [`crate::runtime::DurableRuntime::claim_root`]. It owns a reference to the runtime's claim
/// set, so a structure can keep it beside its `Arc<DurableRuntime>`.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// use vellum::Error;
/// let rt = DurableRuntime::open(dir.path(), options)?;
/// let claim = rt.claim_root("my-log")?;
/// assert!(matches!(rt.claim_root("my-log"), Err(Error::RootClaimed { name }) if name == "my-log"));
/// drop(claim);
/// let again = rt.claim_root("my-log")?;
/// assert_eq!(again.name(), "my-log");
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct RootClaim {
    claims: Arc<RootClaims>,
    name: String,
}

impl RootClaim {
    /// The root name claimed.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for RootClaim {
    fn drop(&mut self) {
        // Invariant 2: this guard put the name there, and only this guard removes it.
        let removed = self.claims.names.lock().remove(&self.name);
        debug_assert!(removed, "root claim {:?} released twice", self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_claimed_once_until_its_guard_drops() {
        let claims = Arc::new(RootClaims::default());
        let a = claims.claim("faster-log:a").unwrap();
        assert_eq!(a.name(), "faster-log:a");
        match claims.claim("faster-log:a") {
            Err(Error::RootClaimed { name }) => assert_eq!(name, "faster-log:a"),
            other => panic!("second claim: {other:?}"),
        }
        // Another name is independent.
        let b = claims.claim("faster-log:b").unwrap();
        drop(a);
        let a2 = claims.claim("faster-log:a").unwrap();
        assert!(matches!(
            claims.claim("faster-log:b"),
            Err(Error::RootClaimed { .. })
        ));
        drop((a2, b));
        assert!(claims.names.lock().is_empty());
    }

    #[test]
    fn a_claim_names_a_valid_root() {
        let claims = Arc::new(RootClaims::default());
        for bad in ["", &"x".repeat(48)] {
            let err = claims.claim(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidArgument(_)), "{bad:?}: {err}");
        }
        assert!(claims.names.lock().is_empty());
        claims.claim(&"x".repeat(47)).unwrap();
    }

    #[test]
    fn racing_claims_of_one_name_let_exactly_one_win() {
        let claims = Arc::new(RootClaims::default());
        let barrier = std::sync::Barrier::new(8);
        let won: Vec<RootClaim> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        claims.claim("faster-log:race").ok()
                    })
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(won.len(), 1);
    }
}
