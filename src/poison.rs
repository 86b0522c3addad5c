//! The sticky "poisoned" state entered after a failed sync.
//!
//! After `fsync`/`fdatasync` fails, the kernel may already have dropped the dirty pages it could not
//! write, and a retried sync can report success for data that never reached the disk. So the only
//! safe reaction is to refuse every later write until the store is reopened and recovered from what
//! is really durable. Reads of already-published state go on.

use std::sync::OnceLock;

use crate::error::{Error, Result};

/// A one-way flag: once set, it stays set and remembers the first cause.
#[derive(Default)]
pub struct Poison {
    cause: OnceLock<String>,
    /// Called each time the flag is set, after it is: wakes threads that sleep until a change
    /// the poison also ends (the runtime's durability waiters).
    wake: Option<Box<dyn Fn() + Send + Sync>>,
}

impl std::fmt::Debug for Poison {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poison")
            .field("cause", &self.cause.get())
            .field("wakes", &self.wake.is_some())
            .finish()
    }
}

impl Poison {
    /// A flag that is not set.
    pub fn new() -> Self {
        Poison::default()
    }

    /// A flag that is not set, and calls `wake` whenever it is set (after setting it).
    pub(crate) fn with_wake(wake: impl Fn() + Send + Sync + 'static) -> Self {
        Poison {
            cause: OnceLock::new(),
            wake: Some(Box::new(wake)),
        }
    }

    /// Sets the flag (the first cause wins) and returns the error to report for it.
    pub fn poison(&self, cause: &Error) -> Error {
        let _ = self.cause.set(cause.to_string());
        tracing::error!(%cause, "storage poisoned after a failed sync");
        if let Some(wake) = &self.wake {
            wake();
        }
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

    #[test]
    fn setting_the_flag_calls_the_wake_up_each_time() {
        let woken = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
        let counted = woken.clone();
        let p = Poison::with_wake(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 0);
        p.poison(&Error::InvalidArgument("first".into()));
        assert!(p.is_poisoned());
        p.poison(&Error::InvalidArgument("second".into()));
        assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
