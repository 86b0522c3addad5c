//! Scan and tailing iterators over committed entries.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::log::{FasterLog, Step};

/// One entry read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// Its address.
    pub address: u64,
    /// The address just past it (where the next entry, or a filler, starts).
    pub next_address: u64,
    /// Its payload.
    pub bytes: Vec<u8>,
}

/// Committed entries of `[from, to)`, in address order, each checksum checked. After an error
/// the iterator ends. A `from` where no entry starts (inside an entry or a page's filler) is
/// [`crate::Error::InvalidAddress`].
#[derive(Debug)]
pub struct ScanIter<'l> {
    log: &'l FasterLog,
    next: u64,
    to: u64,
    failed: bool,
    /// `next` is known to be an entry's start, a filler's or a page's (log invariant 8): it is
    /// where a decoded entry ends or the next page starts. Not so for `from`.
    trusted: bool,
}

impl<'l> ScanIter<'l> {
    pub(crate) fn new(log: &'l FasterLog, from: u64, to: u64) -> Self {
        ScanIter {
            log,
            next: from,
            to,
            failed: false,
            trusted: false,
        }
    }

    /// The address the next entry is read from.
    pub fn position(&self) -> u64 {
        self.next
    }
}

impl Iterator for ScanIter<'_> {
    type Item = Result<LogEntry>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.failed && self.next < self.to {
            let step = if self.trusted {
                self.log.entry_at(self.next)
            } else {
                self.log.entry_at_start(self.next)
            };
            self.trusted = true;
            match step {
                Ok(Step::Skip(n)) => self.next = n,
                Ok(Step::Entry(e)) => {
                    self.next = e.next_address;
                    return Some(Ok(e));
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Committed entries from an address on, waiting for new commits. A start where no entry
/// starts (inside an entry or a page's filler) is [`crate::Error::InvalidAddress`] once a commit
/// covers it.
#[derive(Debug)]
pub struct TailIter<'l> {
    log: &'l FasterLog,
    next: u64,
    /// As [`ScanIter`]'s: false until the first step from the starting address was decoded.
    trusted: bool,
}

impl<'l> TailIter<'l> {
    pub(crate) fn new(log: &'l FasterLog, from: u64) -> Self {
        TailIter {
            log,
            next: from,
            trusted: false,
        }
    }

    /// The address the next entry is read from (save it with
    /// [`FasterLog::save_iterator`] to resume there after recovery).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// The next committed entry, waiting up to `timeout` for a commit to cover it; `None` on
    /// timeout.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<LogEntry>> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.next < self.log.committed_tail() {
                let step = if self.trusted {
                    self.log.entry_at(self.next)
                } else {
                    self.log.entry_at_start(self.next)
                };
                // After an error the next call checks the same address again.
                self.trusted = step.is_ok();
                match step? {
                    Step::Skip(n) => self.next = n,
                    Step::Entry(e) => {
                        self.next = e.next_address;
                        return Ok(Some(e));
                    }
                }
                continue;
            }
            if !self.log.wait_committed_past(self.next, deadline) {
                return Ok(None);
            }
        }
    }
}
