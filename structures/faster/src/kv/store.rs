//! The FasterKV store: the hash index and the hybrid log on a runtime, its flusher thread, and
//! the sessions that operate on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst};
use std::thread::JoinHandle;

use vellum::runtime::{CommitPolicy, DurableRuntime, RootClaim};

use parking_lot::Mutex;

use super::checkpoint::{self, CheckpointInfo, CheckpointState};
use super::checkpoint_meta::SESSION_NAME_BYTES_MAX;
use super::checkpointer::{Checkpointer, PendingCheckpoint, Policy};
use super::cpr::{CommitPoint, Cpr, Registered};
use super::hlog::{HybridLog, LOG_BEGIN};
use super::index::HashIndex;
use super::options::KvOptions;
use super::recovery;
use super::store_node::StoreNode;
use super::{Functions, Session};
use crate::{Error, Result};

/// Root names of FasterKV stores begin with this (the root is claimed while the store is open).
pub const KV_ROOT_PREFIX: &str = "faster-kv:";

/// What the sessions share.
#[derive(Debug)]
pub(crate) struct KvInner {
    pub(crate) index: HashIndex,
    pub(crate) hlog: HybridLog,
    pub(crate) page_bytes: u32,
    /// Operations that went to disk, over all sessions.
    pub(crate) ops_pending: AtomicU64,
    /// Operations begun, over all sessions.
    pub(crate) ops_total: AtomicU64,
    /// Sessions open.
    pub(crate) sessions: AtomicUsize,
    /// The checkpoint state machine.
    pub(crate) cpr: Cpr,
    /// What checkpoints keep between them.
    pub(crate) checkpoint: Mutex<CheckpointState>,
    pub(crate) checkpoint_policy: CommitPolicy,
    /// Checkpoints committed and failed since the store opened.
    pub(crate) checkpoints_taken: AtomicU64,
    pub(crate) checkpoints_failed: AtomicU64,
}

/// The most sessions a store has open at once: one per slot of the epoch table, so a session's
/// protection never waits for a slot.
pub const SESSIONS_MAX: usize = crate::epoch::SLOTS;

/// A FasterKV store: a concurrent key-value store of byte-string keys and values whose records
/// live in a hybrid log (recent pages in memory, older pages as runtime nodes) under a hash
/// index in memory.
///
/// Operations go through a [`Session`], one per thread. [`FasterKv::checkpoint`] makes the
/// store durable without stopping the sessions (CPR): after a crash, the next open recovers the
/// last checkpoint, and each named session ([`FasterKv::resume_session`]) learns the serial up
/// to which its operations are in it. [`FasterKv::close`] takes a last checkpoint;
/// [`FasterKv::destroy`] removes the store. Its root, `faster-kv:<name>`, names a store node
/// listing the page nodes and the checkpoint; a store that never checkpointed is discarded by
/// the next open, so no page node is left behind.
///
/// ```
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// use std::sync::Arc;
/// use vellum::runtime::{DurableRuntime, RuntimeOptions};
/// use vellum_faster::kv::{AddU64, FasterKv, KvOptions, Status};
///
/// let options = RuntimeOptions { create_if_missing: true, ..RuntimeOptions::default() };
/// let rt = Arc::new(DurableRuntime::open(dir.path(), options)?);
/// let kv = FasterKv::open(rt, "counters", KvOptions::default())?;
/// let mut session = kv.session(AddU64)?;
/// session.upsert(b"apples", &3u64.to_le_bytes())?;
/// assert_eq!(session.rmw(b"apples", &4)?, Status::Found);
/// assert_eq!(session.rmw(b"pears", &1)?, Status::NotFound); // created with the input
/// let mut value = Vec::new();
/// assert_eq!(session.read(b"apples", &mut value)?, Status::Found);
/// assert_eq!(value, 7u64.to_le_bytes());
/// drop(session);
/// kv.close()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct FasterKv {
    inner: Arc<KvInner>,
    flusher: Option<JoinHandle<()>>,
    checkpointer: Option<Checkpointer>,
    name: String,
    _claim: RootClaim,
}

/// Where a store's addresses and counters stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KvStats {
    /// The log's first address.
    pub begin: u64,
    /// Records below this are read from page nodes.
    pub head: u64,
    /// Records below this are immutable.
    pub safe_read_only: u64,
    /// Records at or above this are updated in place.
    pub read_only: u64,
    /// The next record's address.
    pub tail: u64,
    /// Bytes of log written as page nodes.
    pub flushed: u64,
    /// Page nodes written.
    pub pages_flushed: u64,
    /// Final index entries.
    pub index_entries: u64,
    /// Operations of the sessions dropped so far (a session adds its count when dropped, so
    /// that counting costs no shared write per operation).
    pub ops_total: u64,
    /// Operations that read the disk, over all sessions (counted as they happen).
    pub ops_pending: u64,
    /// Checkpoints committed since the store opened (on request, background, at close).
    pub checkpoints_taken: u64,
    /// Checkpoints that failed since the store opened.
    pub checkpoints_failed: u64,
    /// The version the store's operations run in (the next checkpoint holds it).
    pub version: u32,
}

impl FasterKv {
    /// Opens store `name` (1 to 37 bytes) on `rt`, claiming its root name for as long as the
    /// store is open, and starts the flusher thread, which writes each page the read-only
    /// boundary passes as one runtime node. A store with a checkpoint is recovered from it
    /// (every operation the checkpoint holds, none after: `design/DURABILITY.md` §8); a store
    /// that never checkpointed is discarded; otherwise the store starts empty.
    pub fn open(rt: Arc<DurableRuntime>, name: &str, options: KvOptions) -> Result<FasterKv> {
        options.validate()?;
        let root = crate::root_name::root_name(KV_ROOT_PREFIX, "store", name)?;
        let claim = rt.claim_root(&root)?;
        let recovered = match rt.root(&root) {
            None => None,
            Some(id) => {
                let node = StoreNode::decode(&rt.read(id)?, &root)?;
                match node.checkpoint.clone() {
                    None => {
                        discard_unclosed(&rt, &root, id, node)?;
                        None
                    }
                    Some(cp) => Some(recovery::load(&rt, (&root, id), node, cp, &options)?),
                }
            }
        };
        let sizes = (
            options.page_bytes,
            options.memory_pages(),
            options.mutable_pages(),
        );
        let (index, hlog, state, version) = match recovered {
            None => {
                let hlog = HybridLog::new(rt, (name, &root), sizes.0, sizes.1, sizes.2)?;
                (HashIndex::new(&options.index)?, hlog, Default::default(), 0)
            }
            Some(r) => {
                let version = r.log.checkpoint.version + 1;
                let cp = r.log.checkpoint.clone();
                let hlog = HybridLog::recovered(rt, (name, &root), sizes, r.log)?;
                let moved = recovery::fix_index(&r.index, &hlog, &cp)?;
                tracing::info!(store = %root, version = cp.version, tail = cp.tail, moved,
                    "recovered a FasterKV store from its checkpoint");
                (r.index, hlog, r.state, version)
            }
        };
        let inner = Arc::new(KvInner {
            index,
            hlog,
            page_bytes: options.page_bytes,
            ops_pending: AtomicU64::new(0),
            ops_total: AtomicU64::new(0),
            sessions: AtomicUsize::new(0),
            cpr: Cpr::new(version, SESSIONS_MAX),
            checkpoint: Mutex::new(state),
            checkpoint_policy: options.checkpoint_policy,
            checkpoints_taken: AtomicU64::new(0),
            checkpoints_failed: AtomicU64::new(0),
        });
        let flusher = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name(format!("faster-kv-flush-{name}"))
                .spawn(move || inner.hlog.run_flusher())
                .map_err(|e| Error::InvalidArgument(format!("cannot start the flusher: {e}")))?
        };
        let policy = Policy {
            interval: options.checkpoint_interval,
            log_bytes: options.checkpoint_log_bytes,
        };
        let checkpointer = Checkpointer::start(&inner, policy)?;
        Ok(FasterKv {
            inner,
            flusher: Some(flusher),
            checkpointer,
            name: name.to_owned(),
            _claim: claim,
        })
    }

    /// A session for this thread, with `functions` for its RMWs. Sessions are cheap; each holds
    /// the store's epoch protection between its operations (see [`Session`]). At most
    /// [`SESSIONS_MAX`] are open at once: past that, [`Error::TooManySessions`].
    pub fn session<F: Functions>(&self, functions: F) -> Result<Session<'_, F>> {
        self.open_session(None, functions).map(|(s, _)| s)
    }

    /// A named session (1 to 255 bytes): its commit points are kept by checkpoints, so after
    /// a recovery the session of the same name continues from its commit point. Returns the
    /// session and the commit point of the last checkpoint it is in (serial 0 if none): its
    /// operations with serials after it (and its excluded ones) are not in that checkpoint.
    /// After a crash they are lost, the session continues at the commit point, and they are
    /// the client's to replay; a session dropped and resumed in the same run continues after
    /// its last operation instead (nothing was lost, only not yet checkpointed). A name
    /// already open is [`Error::InvalidArgument`].
    pub fn resume_session<F: Functions>(
        &self,
        name: &str,
        functions: F,
    ) -> Result<(Session<'_, F>, CommitPoint)> {
        if name.is_empty() || name.len() > SESSION_NAME_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a session name has 1 to {SESSION_NAME_BYTES_MAX} bytes, got {}",
                name.len()
            )));
        }
        self.open_session(Some(name), functions)
    }

    fn open_session<F: Functions>(
        &self,
        name: Option<&str>,
        functions: F,
    ) -> Result<(Session<'_, F>, CommitPoint)> {
        if self.inner.sessions.fetch_add(1, SeqCst) >= SESSIONS_MAX {
            self.inner.sessions.fetch_sub(1, SeqCst);
            return Err(Error::TooManySessions { max: SESSIONS_MAX });
        }
        let commit = name
            .and_then(|n| self.inner.checkpoint.lock().commit_points.get(n).cloned())
            .unwrap_or_default();
        match self.inner.cpr.register(name, commit.until_serial) {
            Registered::Slot(slot, serial) => {
                let session = Session::new(&self.inner, functions, slot, serial);
                Ok((session, commit))
            }
            other => {
                self.inner.sessions.fetch_sub(1, SeqCst);
                Err(match other {
                    Registered::InUse => Error::InvalidArgument(format!(
                        "session {:?} is open already",
                        name.unwrap_or_default()
                    )),
                    _ => Error::TooManySessions { max: SESSIONS_MAX },
                })
            }
        }
    }

    /// Takes a checkpoint (CPR): every session crosses to the next version at its next
    /// operation (idle ones at once), the log folds over, and the changed index chunks and the
    /// store's metadata are committed in one runtime transaction under the options'
    /// `checkpoint_policy`. Returns once it is committed, with each session's commit point.
    ///
    /// Sessions run on while it is taken. The calling thread must not hold a protected session
    /// of this store (make it [`Session::idle`] first): the checkpoint waits for it to cross.
    pub fn checkpoint(&self) -> Result<CheckpointInfo> {
        checkpoint::take(&self.inner)
    }

    /// [`FasterKv::checkpoint`] on a thread of its own: returns at once; the handle tells when
    /// it is done and gives its outcome. A store closed or dropped before it finishes fails it
    /// with [`Error::FlushFailed`].
    pub fn checkpoint_in_background(&self) -> Result<PendingCheckpoint> {
        PendingCheckpoint::start(Arc::clone(&self.inner))
    }

    /// The runtime the store's page nodes live on.
    pub fn runtime(&self) -> &Arc<DurableRuntime> {
        self.inner.hlog.runtime()
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the log's addresses and the counters stand.
    pub fn stats(&self) -> KvStats {
        let (kv, log) = (&*self.inner, &self.inner.hlog);
        KvStats {
            begin: LOG_BEGIN,
            head: log.head(),
            safe_read_only: log.safe_read_only(),
            read_only: log.read_only(),
            tail: log.tail(),
            flushed: log.flushed(),
            pages_flushed: log.flushed_pages(),
            index_entries: kv.index.entry_count(),
            ops_total: kv.ops_total.load(Relaxed),
            ops_pending: kv.ops_pending.load(Relaxed),
            checkpoints_taken: kv.checkpoints_taken.load(Relaxed),
            checkpoints_failed: kv.checkpoints_failed.load(Relaxed),
            version: kv.cpr.state().version,
        }
    }

    /// Takes a last checkpoint (the sessions are closed: it holds every operation), then stops
    /// the flusher. The next open recovers the store as it is now.
    pub fn close(mut self) -> Result<()> {
        let checkpointed = self.checkpoint();
        let stopped = self.stop();
        checkpointed?;
        stopped
    }

    /// Stops the flusher and retires every node of the store and its root (one transaction):
    /// its data is gone, and the next open starts empty.
    pub fn destroy(mut self) -> Result<()> {
        self.stop()?;
        let Some(store) = self.inner.hlog.store_node() else {
            return Ok(());
        };
        let rt = self.inner.hlog.runtime();
        let mut txn = rt.begin();
        for id in self.inner.hlog.page_nodes() {
            txn.retire(id)?;
        }
        let nodes = self.inner.checkpoint.lock().nodes.clone();
        for id in nodes.chunks.iter().flatten().chain(&nodes.deltas) {
            txn.retire(*id)?;
        }
        txn.retire(store)?;
        txn.remove_root(&format!("{KV_ROOT_PREFIX}{}", self.name))?;
        txn.commit_with(CommitPolicy::Eventual)?;
        Ok(())
    }

    /// Stops the flusher (the store is left as it is on disk: its last checkpoint, and page
    /// nodes that the next open retires).
    fn stop(&mut self) -> Result<()> {
        let stopped = match self.checkpointer.take() {
            Some(mut c) => c.stop(),
            None => Ok(()),
        };
        let Some(flusher) = self.flusher.take() else {
            return Ok(());
        };
        self.inner.hlog.stop_flusher();
        if flusher.join().is_err() {
            return Err(Error::FlushFailed("the flusher thread panicked".into()));
        }
        stopped
    }
}

/// A store that never checkpointed, left by a handle that was not destroyed or closed: its
/// page nodes and store node are retired, and the root removed, in one transaction, before the
/// new store writes anything (its first flush names the root again).
fn discard_unclosed(
    rt: &DurableRuntime,
    root: &str,
    id: vellum::NodeId,
    node: StoreNode,
) -> Result<()> {
    tracing::warn!(
        %root,
        pages = node.pages.len(),
        "discarding the pages of a FasterKV store that never checkpointed"
    );
    let mut txn = rt.begin();
    for page in node.pages {
        txn.retire(page)?;
    }
    txn.retire(id)?;
    txn.remove_root(root)?;
    txn.commit()?;
    Ok(())
}

impl Drop for FasterKv {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(store = %self.name, %e, "closing a FasterKV store failed");
        }
    }
}
