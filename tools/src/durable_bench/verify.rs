//! The final check: reopen the closed store with the default options and read every key's node
//! through one snapshot; each must hold exactly its last acknowledged generation.

use std::path::Path;

use vellum::NodeId;
use vellum::runtime::{DurableRuntime, RuntimeOptions};

use crate::durable_bench::content;
use crate::group_commit::BoxError;

/// Keys read under one snapshot reader (whose epoch guard should not be held long).
const KEYS_PER_READER: usize = 10_000;

/// Reopens the store at `dir` and compares key `k`'s node (`ids[k]`) with generation
/// `generations[k]`; returns the keys checked, or an error naming the first key that differs.
pub fn verify(
    dir: &Path,
    ids: &[NodeId],
    generations: &[u64],
    node_bytes: usize,
) -> Result<usize, BoxError> {
    assert_eq!(ids.len(), generations.len(), "one generation per key");
    let rt = DurableRuntime::open(dir, RuntimeOptions::default())?;
    let snap = rt.snapshot();
    for first in (0..ids.len()).step_by(KEYS_PER_READER) {
        let reader = snap.reader();
        for key in first..ids.len().min(first + KEYS_PER_READER) {
            let want = content::expected(key, generations[key], node_bytes);
            match reader.get(ids[key])? {
                Some(got) if got == want.as_slice() => {}
                Some(got) => {
                    return Err(format!(
                        "key {key} (node {}): expected generation {}, found {}",
                        ids[key],
                        generations[key],
                        content::describe(got)
                    )
                    .into());
                }
                None => {
                    return Err(format!("key {key} (node {}) is missing", ids[key]).into());
                }
            }
        }
    }
    drop(snap);
    rt.close()?;
    Ok(ids.len())
}
