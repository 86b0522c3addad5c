//! The sticky "poisoned" state entered after a failed sync.
//!
//! After `fsync`/`fdatasync` fails, the kernel may already have dropped the dirty pages it could not
//! write, and a retried sync can report success for data that never reached the disk. So the only
//! safe reaction is to refuse every later write until the store is reopened and recovered from what
//! is really durable. Reads of already-published state go on.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// A one-way flag: once set, it stays set and remembers the first cause.
#[derive(Debug, Default)]
pub struct Poison {
    cause: OnceLock<String>,
}

impl Poison {
    /// A flag that is not set.
    pub fn new() -> Self {
        Poison::default()
    }

    /// Sets the flag (the first cause wins) and returns the error to report for it.
    pub fn poison(&self, cause: &Error) -> Error {
        let _ = self.cause.set(cause.to_string());
        tracing::error!(%cause, "storage poisoned after a failed sync");
        self.error()
    }

    /// True once poisoned.
    pub fn is_poisoned(&self) -> bool {
        self.cause.get().is_some()
    }

    /// `Err(Poisoned)` once poisoned, `Ok` before.
    pub fn check(&self) -> Result<()> {
        if self.is_poisoned() {
            Err(self.error())
        } else {
            Ok(())
        }
    }

    fn error(&self) -> Error {
        Error::Poisoned {
            cause: self.cause.get().cloned().unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_cause_is_kept() {
        let p = Poison::new();
        assert!(p.check().is_ok());
        let first = Error::InvalidArgument("first".into());
        let second = Error::InvalidArgument("second".into());
        p.poison(&first);
        p.poison(&second);
        assert!(p.is_poisoned());
        match p.check() {
            Err(Error::Poisoned { cause }) => assert_eq!(cause, "invalid argument: first"),
            other => panic!("expected Poisoned, got {other:?}"),
        }
    }
}
