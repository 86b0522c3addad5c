//! The crate's error type (FasterLog and FasterKV): its own refusals beside the store's errors (corruption included).

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error a FasterLog or a FasterKV returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `try_append`: every in-memory page holds data not yet flushed; nothing was appended.
    #[error("log full: every in-memory page holds unflushed entries")]
    Full,
    /// The address is below the log's begin address (truncated away).
    #[error("address {address} is below the begin address {begin} (truncated)")]
    BelowBegin {
        /// The address asked for.
        address: u64,
        /// The begin address.
        begin: u64,
    },
    /// The address is at or past the committed tail.
    #[error("address {address} is not committed (committed tail {committed})")]
    NotCommitted {
        /// The address asked for.
        address: u64,
        /// The committed tail.
        committed: u64,
    },
    /// The address is not where an entry starts: it lies inside an entry or inside a page's
    /// filler, holds a filler, or is not 8-byte aligned. A caller's bad address, never damage:
    /// damaged bytes are reported as [`Error::Store`] with [`vellum::Error::Corruption`].
    #[error("address {address} is not the start of an entry: {reason}")]
    InvalidAddress {
        /// The address asked for.
        address: u64,
        /// Why it is not an entry's start.
        reason: &'static str,
    },
    /// A caller passed an argument the log cannot accept (an entry or batch too large, a bad
    /// name, a bad option).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// FasterKV: a key or value the record format refuses (empty key, key or value too long
    /// for the format or the page).
    #[error(transparent)]
    Record(#[from] crate::kv::record::RecordError),
    /// FasterKV: the hash index refused (a bad option, every overflow bucket in use).
    #[error(transparent)]
    Index(#[from] crate::kv::index::IndexError),
    /// FasterKV: every session slot is taken (each open session may hold one of the epoch
    /// table's slots); drop a session first.
    #[error("{max} FasterKV sessions are open, the most a store allows")]
    TooManySessions {
        /// The most sessions open at once.
        max: usize,
    },
    /// FasterKV: the hybrid log's flusher failed earlier; the store takes no more writes.
    #[error("the hybrid log's flusher failed: {0}")]
    FlushFailed(String),
    /// The store failed, or bytes read from it are corrupt ([`vellum::Error::Corruption`]).
    #[error(transparent)]
    Store(#[from] vellum::Error),
}

impl Error {
    /// The store's corruption report, if this is one.
    pub fn as_corruption(&self) -> Option<&vellum::Corruption> {
        match self {
            Error::Store(e) => e.as_corruption(),
            _ => None,
        }
    }
}
