//! Buffer reuse between a thread's transactions: a finished [`WriteTxn`](super::WriteTxn)
//! leaves its emptied maps and vectors for the next one its thread begins, so a batch of writes
//! does not grow them from empty (a rehash every time a map doubles) each time.
//!
//! Invariant: what a transaction takes is empty; everything `keep` keeps it clears first, and
//! what grew past the limits below is freed instead, so a thread keeps at most one set of
//! bounded size (about 200 KiB at most, for as long as the thread lives, whatever runtime it
//! used).

use std::cell::Cell;

use super::engine::Staged;
use crate::object_table::IdMap;

/// The buffers of a finished transaction, kept for the next one its thread begins: a batch of
/// writes would otherwise grow its maps and vectors from empty every time (a rehash each time
/// a map doubles).
#[derive(Debug, Default)]
pub(super) struct Spare {
    pub(super) staged: Staged,
    pub(super) index: IdMap<usize>,
    pub(super) reads: IdMap<u64>,
}

/// Nodes a kept map or vector may have room for; a transaction that grew one past this leaves
/// its buffers to be freed, so a thread keeps at most this much after a large transaction.
const SPARE_NODES_MAX: usize = 1024;

/// Bytes of node copies a kept buffer may have room for.
const SPARE_COPY_BYTES_MAX: usize = 64 << 10;

thread_local! {
    static SPARE: Cell<Option<Spare>> = const { Cell::new(None) };
}

impl Spare {
    /// This thread's spare buffers, empty, or new ones.
    pub(super) fn take() -> Spare {
        SPARE
            .try_with(Cell::take)
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// Empties the buffers and keeps them for this thread's next transaction, unless one grew
    /// past the limits above.
    pub(super) fn keep(mut self) {
        let s = &mut self.staged;
        let nodes_max = [s.nodes.capacity(), s.retires.capacity(), s.reads.capacity()]
            .into_iter()
            .chain([self.index.capacity(), self.reads.capacity()])
            .max()
            .unwrap_or(0);
        if nodes_max > SPARE_NODES_MAX || s.copies.capacity() > SPARE_COPY_BYTES_MAX {
            return;
        }
        s.nodes.clear();
        s.copies.clear();
        s.retires.clear();
        s.reads.clear();
        s.roots.clear();
        s.data_durable = false;
        self.index.clear();
        self.reads.clear();
        // A thread being torn down has no spare to keep: the buffers are freed here instead.
        if SPARE.try_with(|cell| cell.set(Some(self))).is_err() {
            tracing::trace!("thread exiting: transaction buffers freed");
        }
    }
}
