//! A journal: an append-only list of short records kept in 4 KiB page nodes, built outside
//! vellum on its public API alone. It is the test that a host structure needs nothing else, so it
//! uses each call a structure relies on:
//! - `DurableRuntime::claim_root`: one open journal per root and runtime;
//! - `WriteTxn::alloc_with` / `write_with`: pages written in their slots, no staging copy;
//! - owned snapshots: a [`JournalReader`] keeps its view beside the `Arc<DurableRuntime>`;
//! - `DurableRuntime::wait_durable`: appends commit EVENTUAL, and a caller that needs one durable
//!   waits for its epoch without forcing a flush;
//! - `vellum::inspect::Plugin`: [`JournalPlugin`] checks and dumps journals when `fsck` runs it.
//!
//! Formats (all little-endian):
//! - header node (named by root `journal:<name>`, kind [`HEADER_KIND`]): magic `JRNL` (u32 0x4c4e_524a), page count
//!   (u32), then each page's `NodeId` as u64, oldest first;
//! - page node (kind [`PAGE_KIND`], [`PAGE_BYTES`] bytes): record count (u16), then each record
//!   as its length (u16) and bytes; the rest of the page is zero.
//!
//! Invariants:
//! 1. Only the holder of `state`'s lock writes the journal, so the header and the pages it names
//!    change together in one transaction.
//! 2. Every page but the last is full: a record goes to the last page if it fits, else to a new one.

#![forbid(unsafe_code)]

mod format;
mod inspect;

use std::sync::Arc;

use parking_lot::Mutex;
use vellum::runtime::{CommitPolicy, DurableRuntime, OwnedSnapshot, RootClaim, WriteTxn};
use vellum::{Error, NodeId, Result};

pub use format::{HEADER_KIND, Header, PAGE_BYTES, PAGE_KIND, Page, RECORD_BYTES_MAX};
pub use inspect::{JournalPlugin, ROOT_PREFIX};

/// An open journal on one root.
#[derive(Debug)]
pub struct Journal {
    rt: Arc<DurableRuntime>,
    root: String,
    state: Mutex<State>,
    _claim: RootClaim,
}

#[derive(Debug)]
struct State {
    /// The header node (`None` before the first append).
    header: Option<NodeId>,
    pages: Vec<NodeId>,
    /// The last page as committed, decoded.
    last: Page,
}

impl Journal {
    /// Opens journal `name` of `rt` (root `journal:<name>`), empty if the root does not exist.
    /// A second open of the same journal on the same runtime fails with `Error::RootClaimed`
    /// while this one lives.
    pub fn open(rt: Arc<DurableRuntime>, name: &str) -> Result<Journal> {
        let root = format!("{ROOT_PREFIX}{name}");
        let claim = rt.claim_root(&root)?;
        let snapshot = rt.snapshot();
        let state = match snapshot.root(&root) {
            None => State {
                header: None,
                pages: Vec::new(),
                last: Page::default(),
            },
            Some(header) => {
                let bytes = read_node(&snapshot, header)?;
                let pages = Header::decode(&bytes, header)?.pages;
                let last = match pages.last() {
                    Some(&id) => Page::decode(&read_node(&snapshot, id)?, id)?,
                    None => Page::default(),
                };
                State {
                    header: Some(header),
                    pages,
                    last,
                }
            }
        };
        drop(snapshot);
        Ok(Journal {
            rt,
            root,
            state: Mutex::new(state),
            _claim: claim,
        })
    }

    /// Appends `record` (at most [`RECORD_BYTES_MAX`] bytes) in an EVENTUAL commit and returns
    /// its epoch: visible at once, durable once [`Journal::wait_durable`] returns for it.
    pub fn append(&self, record: &[u8]) -> Result<u64> {
        if record.len() > RECORD_BYTES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a record holds at most {RECORD_BYTES_MAX} bytes, got {}",
                record.len()
            )));
        }
        let mut s = self.state.lock();
        let mut txn = self.rt.begin();
        let mut last = s.last.clone();
        let mut pages = s.pages.clone();
        let mut header = s.header;
        match pages.last().copied() {
            Some(id) if last.fits(record.len()) => {
                last.records.push(record.to_vec());
                txn.write_with(id, PAGE_BYTES, |buf| last.encode_into(buf))?;
            }
            _ => {
                last = Page {
                    records: vec![record.to_vec()],
                };
                pages.push(txn.alloc_with(PAGE_KIND, PAGE_BYTES, |buf| last.encode_into(buf))?);
                header = Some(self.write_header(&mut txn, header, &pages)?);
            }
        }
        let epoch = txn.commit_with(CommitPolicy::Eventual)?;
        s.header = header;
        s.pages = pages;
        s.last = last;
        Ok(epoch)
    }

    /// Writes the header naming `pages`: over `header`, or as a new node the root names.
    /// Returns the header's id.
    fn write_header(
        &self,
        txn: &mut WriteTxn<'_>,
        header: Option<NodeId>,
        pages: &[NodeId],
    ) -> Result<NodeId> {
        let h = Header {
            pages: pages.to_vec(),
        };
        let len = h.encoded_len();
        match header {
            Some(id) => {
                txn.write_with(id, len, |buf| h.encode_into(buf))?;
                Ok(id)
            }
            None => {
                let id = txn.alloc_with(HEADER_KIND, len, |buf| h.encode_into(buf))?;
                txn.set_root(&self.root, id)?;
                Ok(id)
            }
        }
    }

    /// Waits until the append that returned `epoch` is durable, without forcing a flush (the
    /// runtime's flusher runs within its `eventual_flush_interval`).
    pub fn wait_durable(&self, epoch: u64) -> Result<u64> {
        self.rt.wait_durable(epoch)
    }

    /// A reader of the journal as of now: it owns its snapshot, so it can outlive this borrow
    /// and be kept beside the runtime while appends go on.
    pub fn reader(&self) -> JournalReader {
        let s = self.state.lock();
        JournalReader {
            snapshot: self.rt.snapshot_owned(),
            pages: s.pages.clone(),
        }
    }
}

/// The journal as of one epoch.
#[derive(Debug)]
pub struct JournalReader {
    snapshot: OwnedSnapshot,
    pages: Vec<NodeId>,
}

impl JournalReader {
    /// The epoch this reader sees.
    pub fn epoch(&self) -> u64 {
        self.snapshot.epoch()
    }

    /// Every record, oldest first.
    pub fn records(&self) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for &id in &self.pages {
            out.extend(Page::decode(&read_node(&self.snapshot, id)?, id)?.records);
        }
        Ok(out)
    }
}

/// The bytes of `id` in `snapshot`; a node the journal names must exist there.
fn read_node(snapshot: &vellum::runtime::Snapshot<'_>, id: NodeId) -> Result<Vec<u8>> {
    snapshot.read(id)?.ok_or(Error::NodeNotFound {
        id,
        reason: "named by the journal but absent from its snapshot",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use vellum::runtime::RuntimeOptions;

    #[test]
    fn the_state_in_memory_is_what_the_store_holds() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let options = RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        };
        let rt =
            Arc::new(DurableRuntime::open(dir.path(), options).unwrap_or_else(|e| panic!("{e}")));
        let journal = Journal::open(rt.clone(), "j").unwrap_or_else(|e| panic!("{e}"));
        // 1000-byte records: four to a page, so 10 records take 3 pages, the last holding 2.
        for i in 0..10u8 {
            journal.append(&[i; 1000]).unwrap_or_else(|e| panic!("{e}"));
        }
        let s = journal.state.lock();
        assert_eq!(s.pages.len(), 3);
        assert_eq!(s.header, rt.root("journal:j"));
        assert_eq!(s.last.records, vec![vec![8u8; 1000], vec![9u8; 1000]]);
        let last = *s.pages.last().unwrap_or_else(|| panic!("three pages"));
        let on_disk = rt.read(last).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(Page::decode(&on_disk, last).ok().as_ref(), Some(&s.last));
    }
}
