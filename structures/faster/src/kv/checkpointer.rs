//! Checkpoints off the caller's thread: one on request ([`PendingCheckpoint`]), and the
//! background policy of the options (`checkpoint_interval`, `checkpoint_log_bytes`), run by a
//! thread of the store's own.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::checkpoint::{self, CheckpointInfo};
use super::store::KvInner;
use crate::{Error, Result};

/// A checkpoint running on a thread of its own ([`FasterKv::checkpoint_in_background`]).
///
/// [`FasterKv::checkpoint_in_background`]: super::FasterKv::checkpoint_in_background
#[derive(Debug)]
pub struct PendingCheckpoint {
    handle: JoinHandle<Result<CheckpointInfo>>,
}

impl PendingCheckpoint {
    pub(crate) fn start(kv: Arc<KvInner>) -> Result<PendingCheckpoint> {
        let handle = std::thread::Builder::new()
            .name("faster-kv-checkpoint".into())
            .spawn(move || checkpoint::take(&kv))
            .map_err(|e| {
                Error::InvalidArgument(format!("cannot start a checkpoint thread: {e}"))
            })?;
        Ok(PendingCheckpoint { handle })
    }

    /// Whether the checkpoint is committed (or failed): [`PendingCheckpoint::wait`] returns at
    /// once then.
    pub fn is_done(&self) -> bool {
        self.handle.is_finished()
    }

    /// Waits for the checkpoint; its outcome, as [`FasterKv::checkpoint`] returns it.
    ///
    /// [`FasterKv::checkpoint`]: super::FasterKv::checkpoint
    pub fn wait(self) -> Result<CheckpointInfo> {
        self.handle
            .join()
            .map_err(|_| Error::InvalidArgument("the checkpoint thread panicked".into()))?
    }
}

/// When the background checkpointer takes a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub interval: Option<Duration>,
    pub log_bytes: Option<u64>,
}

/// The background checkpointer's thread and its stop signal.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread if the policy asks for checkpoints.
    pub fn start(kv: &Arc<KvInner>, policy: Policy) -> Result<Option<Checkpointer>> {
        if policy.interval.is_none() && policy.log_bytes.is_none() {
            return Ok(None);
        }
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let (kv, signal) = (Arc::clone(kv), Arc::clone(&stop));
        let handle = std::thread::Builder::new()
            .name("faster-kv-checkpointer".into())
            .spawn(move || run(&kv, policy, &signal))
            .map_err(|e| Error::InvalidArgument(format!("cannot start the checkpointer: {e}")))?;
        Ok(Some(Checkpointer {
            stop,
            handle: Some(handle),
        }))
    }

    /// Stops the thread after the checkpoint it may be taking.
    pub fn stop(&mut self) -> Result<()> {
        *self.stop.0.lock() = true;
        self.stop.1.notify_all();
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(Error::InvalidArgument("the checkpointer panicked".into())),
            _ => Ok(()),
        }
    }
}

/// The checkpointer's loop: a checkpoint once `interval` passed since the last one, or the log
/// grew `log_bytes` since it; a failed one is logged and tried again at the next trigger.
fn run(kv: &KvInner, policy: Policy, stop: &(Mutex<bool>, Condvar)) {
    let tick = Duration::from_millis(10);
    let (mut last_at, mut last_tail) = (Instant::now(), kv.hlog.tail());
    loop {
        {
            let mut stopped = stop.0.lock();
            if !*stopped {
                stop.1
                    .wait_for(&mut stopped, policy.interval.unwrap_or(tick).min(tick));
            }
            if *stopped {
                return;
            }
        }
        let due_time = policy.interval.is_some_and(|i| last_at.elapsed() >= i);
        let grown = kv.hlog.tail().saturating_sub(last_tail);
        let due_bytes = policy.log_bytes.is_some_and(|b| grown >= b);
        if !(due_time || due_bytes) {
            continue;
        }
        match checkpoint::take(kv) {
            Ok(info) => {
                tracing::debug!(
                    version = info.version,
                    tail = info.tail,
                    "background checkpoint"
                );
                last_tail = info.tail;
            }
            Err(e) => tracing::error!(%e, "a background FasterKV checkpoint failed"),
        }
        last_at = Instant::now();
    }
}
