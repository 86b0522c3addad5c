//! NodeId → bytes: the lookup every reader performs, as one function.
//!
//! The fast path reads the object-table entry's words (tag, state, packed location, length,
//! checksum) under its seqlock and borrows the bytes from an installed window, building no
//! `Location` and no error; anything else (a window to map, an older version, a stale id) takes
//! the general path, which maps windows and explains refusals.

use crossbeam_epoch::Guard;

use crate::alloc::DataFiles;
use crate::error::Result;
use crate::object_table::{NodeId, ObjectTable, Version};

/// A node version's bytes, borrowed for the guard's lifetime, with what its reference says
/// about them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<'g> {
    /// The version's bytes.
    pub bytes: &'g [u8],
    /// The CRC32C the reference carries (the bytes are not checked here; see
    /// `DurableRuntime`'s readers, which do).
    pub crc32c: u32,
    /// The caller's node kind.
    pub kind: u8,
}

/// The bytes of `id`'s current version: the plain lookup. Crate-private: the bytes are lent
/// under `DataFiles` invariant 6, which the runtime's readers keep.
#[inline]
pub(crate) fn resolve<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    guard: &'g Guard,
) -> Result<Resolved<'g>> {
    match fast(table, files, id, u64::MAX, guard) {
        Some(r) => Ok(r),
        None => resolve_slow(table, files, id, guard),
    }
}

/// The bytes of the version of `id` a snapshot at `epoch` sees; `Ok(None)` if the node did not
/// exist (or was retired) at that epoch.
#[inline]
pub(crate) fn resolve_at<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    epoch: u64,
    guard: &'g Guard,
) -> Result<Option<Resolved<'g>>> {
    match fast(table, files, id, epoch, guard) {
        Some(r) => Ok(Some(r)),
        None => resolve_at_slow(table, files, id, epoch, guard),
    }
}

/// [`resolve`] for vellum's own tests and benchmarks (the `internals` feature).
///
/// # Safety
/// The version's slot must not be written while the returned bytes live (`DataFiles`
/// invariant 6): the caller writes slots only before publishing the versions naming them.
#[cfg(feature = "internals")]
#[expect(unsafe_code, reason = "the slot discipline is the caller's contract here")]
#[inline]
pub unsafe fn resolve_unchecked<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    guard: &'g Guard,
) -> Result<Resolved<'g>> {
    resolve(table, files, id, guard)
}

/// [`resolve_at`] for vellum's own tests and benchmarks (the `internals` feature).
///
/// # Safety
/// As for [`resolve_unchecked`].
#[cfg(feature = "internals")]
#[expect(unsafe_code, reason = "the slot discipline is the caller's contract here")]
#[inline]
pub unsafe fn resolve_at_unchecked<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    epoch: u64,
    guard: &'g Guard,
) -> Result<Option<Resolved<'g>>> {
    resolve_at(table, files, id, epoch, guard)
}

/// The fast path: a LIVE entry whose current version is visible at `epoch`, in an installed
/// window. Always inlined: as a call it returned its result through memory and cost a fifth of
/// the lookup.
#[inline(always)]
fn fast<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    epoch: u64,
    guard: &'g Guard,
) -> Option<Resolved<'g>> {
    let w = table.live_words(id, epoch)?;
    let bytes = files.read_packed(w.location, w.len(), guard)?;
    Some(Resolved {
        bytes,
        crc32c: w.crc32c(),
        kind: w.kind(),
    })
}

#[cold]
#[inline(never)]
fn resolve_slow<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    guard: &'g Guard,
) -> Result<Resolved<'g>> {
    let v = table.get(id, guard)?;
    read_version(files, &v, guard)
}

#[cold]
#[inline(never)]
fn resolve_at_slow<'g>(
    table: &ObjectTable,
    files: &'g DataFiles,
    id: NodeId,
    epoch: u64,
    guard: &'g Guard,
) -> Result<Option<Resolved<'g>>> {
    match table.get_at(id, epoch, guard)? {
        Some(v) => read_version(files, &v, guard).map(Some),
        None => Ok(None),
    }
}

fn read_version<'g>(files: &'g DataFiles, v: &Version, guard: &'g Guard) -> Result<Resolved<'g>> {
    Ok(Resolved {
        bytes: files.read(v.location, v.len as usize, guard)?,
        crc32c: v.crc32c,
        kind: v.kind,
    })
}
