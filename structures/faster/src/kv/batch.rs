//! Batches: a session's operations issued together, so their cache misses overlap.
//!
//! In memory, an operation costs two dependent cache misses (its index bucket, then its record)
//! and little else; one at a time, a core waits for each in turn. A batch runs the same
//! operations in the same order with the same results, but asks the cache for each operation's
//! bucket [`BUCKET_AHEAD`] operations before it runs, and for its record [`RECORD_AHEAD`]
//! operations before (once the bucket has arrived), so several operations' misses are in
//! flight at once (`design/ARCHITECTURE.md`, FasterKV, measured figures).

use super::hash::KeyHash;
use super::session::Session;
use super::{Functions, Status};
use crate::Result;

/// How many operations ahead a batch asks for an operation's index bucket.
pub const BUCKET_AHEAD: usize = 8;

/// How many operations ahead a batch asks for an operation's record (its bucket asked for
/// `BUCKET_AHEAD - RECORD_AHEAD` operations earlier).
pub const RECORD_AHEAD: usize = 4;

/// Hashes kept between the first stage and the operation (a power of two above
/// [`BUCKET_AHEAD`]).
const RING: usize = 32;

const _: () = assert!(RING.is_power_of_two() && RING > BUCKET_AHEAD && BUCKET_AHEAD > RECORD_AHEAD);

/// One operation of a batch ([`Session::batch`]).
#[derive(Debug, Clone, Copy)]
pub enum BatchOp<'a, I> {
    /// [`Session::read`] of the key.
    Read(&'a [u8]),
    /// [`Session::upsert`] of the key and value.
    Upsert(&'a [u8], &'a [u8]),
    /// [`Session::rmw`] of the key with the input.
    Rmw(&'a [u8], &'a I),
    /// [`Session::delete`] of the key.
    Delete(&'a [u8]),
}

impl<I> BatchOp<'_, I> {
    /// The operation's key.
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Read(k) | BatchOp::Upsert(k, _) | BatchOp::Rmw(k, _) | BatchOp::Delete(k) => k,
        }
    }
}

impl<F: Functions> Session<'_, F> {
    /// Runs `ops` in order, exactly as the calls one by one would (the same statuses, serial
    /// numbers and pending operations), calling `each(i, status, value)` as operation `i`
    /// finishes: `value` is a found read's value, and empty otherwise. An upsert reports
    /// `Found`. Operations that go `Pending` complete with [`Session::complete_pending`].
    ///
    /// On an error (an empty or oversized key, a full index), the operations before the failing
    /// one took effect and were reported, and neither it nor any later one ran.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use vellum_faster::kv::{AddU64, BatchOp, FasterKv, KvOptions, Status};
    /// # let dir = tempfile::tempdir()?;
    /// # let options = vellum::runtime::RuntimeOptions { create_if_missing: true, ..Default::default() };
    /// # let rt = Arc::new(vellum::runtime::DurableRuntime::open(dir.path(), options)?);
    /// # let small = KvOptions { log_memory_bytes_max: 1 << 20, page_bytes: 64 << 10, ..KvOptions::default() };
    /// let kv = FasterKv::open(rt, "counts", small)?;
    /// let mut s = kv.session(AddU64)?;
    /// let one = 1u64;
    /// let ops = [
    ///     BatchOp::Upsert(b"a", &5u64.to_le_bytes()),
    ///     BatchOp::Rmw(b"a", &one),
    ///     BatchOp::Read(b"a"),
    ///     BatchOp::Read(b"b"),
    /// ];
    /// let mut seen = Vec::new();
    /// s.batch(&ops, |i, status, value| seen.push((i, status, value.to_vec())))?;
    /// assert_eq!(seen, [
    ///     (0, Status::Found, vec![]),
    ///     (1, Status::Found, vec![]),
    ///     (2, Status::Found, 6u64.to_le_bytes().to_vec()),
    ///     (3, Status::NotFound, vec![]),
    /// ]);
    /// # drop(s);
    /// # kv.close()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn batch(
        &mut self,
        ops: &[BatchOp<'_, F::Input>],
        mut each: impl FnMut(usize, Status, &[u8]),
    ) -> Result<()> {
        let mut hashes = [KeyHash::from_raw(0); RING];
        let mut out = Vec::new();
        // Stage 1 for the first operations; keys are checked when they run.
        for (i, op) in ops.iter().enumerate().take(BUCKET_AHEAD) {
            hashes[i] = self.prefetch_bucket(op.key());
        }
        for i in 0..ops.len() {
            if let Some(op) = ops.get(i + BUCKET_AHEAD) {
                hashes[(i + BUCKET_AHEAD) % RING] = self.prefetch_bucket(op.key());
            }
            if i + RECORD_AHEAD < ops.len() {
                self.prefetch_record(hashes[(i + RECORD_AHEAD) % RING]);
            }
            let status = self.run_one(&ops[i], hashes[i % RING], &mut out)?;
            each(i, status, &out);
        }
        Ok(())
    }

    /// The key's hash, its main bucket asked for.
    fn prefetch_bucket(&mut self, key: &[u8]) -> KeyHash {
        let hash = KeyHash::of(key);
        self.protected().index.prefetch(hash);
        hash
    }

    /// Asks for the record the hash's index entry names (its bucket asked for earlier).
    fn prefetch_record(&mut self, hash: KeyHash) {
        let kv = self.protected();
        if let Some(entry) = kv.index.find(hash) {
            kv.hlog.prefetch_record(entry.address());
        }
    }

    /// One operation; `out` holds a found read's value after it, and is empty otherwise.
    fn run_one(
        &mut self,
        op: &BatchOp<'_, F::Input>,
        hash: KeyHash,
        out: &mut Vec<u8>,
    ) -> Result<Status> {
        out.clear();
        self.validate_key(op.key())?;
        match *op {
            BatchOp::Read(key) => {
                let status = self.read_hashed(key, hash, out)?;
                if status != Status::Found {
                    out.clear();
                }
                Ok(status)
            }
            BatchOp::Upsert(key, value) => {
                self.upsert_hashed(key, hash, value)?;
                Ok(Status::Found)
            }
            BatchOp::Rmw(key, input) => self.rmw_hashed(key, hash, input),
            BatchOp::Delete(key) => self.delete_hashed(key, hash),
        }
    }
}
