//! The page table: which extents hold each page. In memory it is one map of every listed page;
//! on disk the oldest complete pages are listed by immutable chunk nodes and the rest in-line in
//! the metadata node (`design/FORMAT.md` §8), so a commit rewrites a bounded metadata node.
//!
//! Invariants (the steps that keep them are C2–C3 and T2 of `design/DURABILITY.md` §7):
//! 1. `pages` holds the extents of every listed page, in a chunk or in-line, exactly as the last
//!    commit's metadata and chunk nodes list them. Readers use it and never read chunk nodes.
//! 2. `chunks` are the last commit's chunk references: ascending, contiguous, each listing only
//!    complete pages (wholly below the persisted tail, so their extents never change) and none
//!    wholly below begin.
//! 3. The in-line pages are those from the last chunk's end on (from the first listed page when
//!    there are no chunks). A commit moves complete in-line pages into new chunk nodes,
//!    [`CHUNK_PAGES`] at a time, while at least that many are complete, so after it the metadata
//!    lists at most [`CHUNK_PAGES`] in-line pages: fewer than that many complete ones and the
//!    one holding the persisted tail. Truncation only removes pages. (A log recovered from a
//!    version 1 metadata node lists every page in-line until its next commit.)
//! 4. A commit or truncation works on a [`Draft`], a copy of the chunk references and the
//!    in-line pages (bounded by invariant 3, never the whole map), and the table takes the
//!    draft only once the runtime transaction writing it has committed.

use std::collections::BTreeMap;

use vellum::NodeId;
use vellum::runtime::{DurableRuntime, WriteTxn};

use crate::chunk::{CHUNK_KIND, CHUNK_PAGES, Chunk, ChunkRef, chunk_path};
use crate::error::{Error, Result};
use crate::extent::Extent;
use crate::meta::Meta;

/// Every page's extents and the chunk references (invariants 1 and 2).
#[derive(Debug, Default)]
pub(crate) struct PageTable {
    pages: BTreeMap<u64, Vec<Extent>>,
    chunks: Vec<ChunkRef>,
}

/// What a commit or truncation changes in the table (invariant 4).
#[derive(Debug)]
pub(crate) struct Draft {
    /// The chunk references after the change.
    pub chunks: Vec<ChunkRef>,
    /// Every in-line page before the change, then as changed; pages moved into a chunk by this
    /// change stay here too (they are listed from `chunks` on, see [`Draft::inline_pages`]).
    pub inline: BTreeMap<u64, Vec<Extent>>,
}

/// A truncation's plan: made under the state lock, carried out in one runtime transaction.
#[derive(Debug)]
pub(crate) struct Truncation {
    /// Chunk and extent nodes listing only pages wholly below the new begin.
    pub retire: Vec<NodeId>,
    /// The pages of a partly truncated chunk that stay, to write as a new chunk node; its old
    /// node is in `retire`.
    pub rewrite: Option<Chunk>,
    /// The table after the truncation, without the rewritten chunk.
    pub draft: Draft,
}

impl PageTable {
    /// The table a recovered metadata node describes: reads and checks every chunk node it
    /// names (R3 of `design/DURABILITY.md` §7).
    pub fn recover(rt: &DurableRuntime, root: &str, meta: &Meta) -> Result<PageTable> {
        let mut table = PageTable {
            pages: BTreeMap::new(),
            chunks: meta.chunks.clone(),
        };
        for r in &meta.chunks {
            let what = chunk_path(root, r.first_page);
            let chunk = Chunk::decode(&rt.read(r.node)?, &what)?;
            chunk.check_ref(r, meta.page_bytes, &what)?;
            for (i, extents) in chunk.pages.into_iter().enumerate() {
                table.pages.insert(r.first_page + i as u64, extents);
            }
        }
        for (i, extents) in meta.pages.iter().enumerate() {
            table
                .pages
                .insert(meta.first_page + i as u64, extents.clone());
        }
        Ok(table)
    }

    /// The extents of page `page`, if listed.
    pub fn extents(&self, page: u64) -> Option<&[Extent]> {
        self.pages.get(&page).map(Vec::as_slice)
    }

    /// A copy of what a change may touch: the chunk references and the in-line pages.
    /// `tail_page` is the page holding the persisted tail.
    pub fn draft(&self, tail_page: u64) -> Draft {
        let first = match self.chunks.last() {
            Some(c) => c.end(),
            None => self.pages.keys().next().copied().unwrap_or(tail_page),
        };
        Draft {
            chunks: self.chunks.clone(),
            inline: self
                .pages
                .range(first..)
                .map(|(&p, e)| (p, e.clone()))
                .collect(),
        }
    }

    /// Takes a committed draft (invariant 4).
    pub fn apply(&mut self, draft: Draft) {
        self.chunks = draft.chunks;
        self.pages.extend(draft.inline);
    }

    /// Plans moving begin into page `cut` (every page below it is wholly below begin).
    /// `tail_page` is the page holding the persisted tail; `page_bytes` the log's.
    pub fn truncate(&self, cut: u64, tail_page: u64, page_bytes: u32) -> Result<Truncation> {
        let mut retire = Vec::new();
        let mut rewrite = None;
        let mut draft = self.draft(tail_page);
        draft.chunks.clear();
        for c in &self.chunks {
            if c.first_page >= cut {
                draft.chunks.push(*c);
                continue;
            }
            retire.push(c.node);
            if c.end() > cut {
                let pages = (cut..c.end())
                    .map(|p| self.listed(p).map(<[Extent]>::to_vec))
                    .collect::<Result<_>>()?;
                rewrite = Some(Chunk {
                    page_bytes,
                    first_page: cut,
                    pages,
                });
            }
        }
        for extents in self.pages.range(..cut).map(|(_, e)| e) {
            retire.extend(extents.iter().map(|e| e.node));
        }
        draft.inline.retain(|&p, _| p >= cut);
        Ok(Truncation {
            retire,
            rewrite,
            draft,
        })
    }

    /// Takes a committed truncation's draft: pages below `cut` leave the table.
    pub fn apply_truncation(&mut self, cut: u64, draft: Draft) {
        self.pages = self.pages.split_off(&cut);
        self.apply(draft);
    }

    /// The extents of page `page`, which invariant 1 says is listed.
    fn listed(&self, page: u64) -> Result<&[Extent]> {
        self.extents(page).ok_or_else(|| {
            Error::InvalidArgument(format!("internal: page {page} is not in the page table"))
        })
    }
}

impl Draft {
    /// The first in-line page: the last chunk's end, else the first listed page, else
    /// `tail_page` (the page holding the persisted tail).
    pub fn first_inline(&self, tail_page: u64) -> u64 {
        match self.chunks.last() {
            Some(c) => c.end(),
            None => self.inline.keys().next().copied().unwrap_or(tail_page),
        }
    }

    /// The metadata's in-line page list: its first page and each page's extents.
    pub fn inline_pages(&self, tail_page: u64) -> (u64, Vec<Vec<Extent>>) {
        let first = self.first_inline(tail_page);
        (
            first,
            self.inline.range(first..).map(|(_, e)| e.clone()).collect(),
        )
    }

    /// Moves complete in-line pages into new chunk nodes, [`CHUNK_PAGES`] at a time, while at
    /// least that many are complete (invariant 3). `persisted` is the persisted tail after the
    /// commit. Returns the number of chunk nodes written.
    pub fn seal(&mut self, txn: &mut WriteTxn<'_>, persisted: u64, page_bytes: u32) -> Result<u32> {
        let tail_page = persisted / u64::from(page_bytes);
        let mut written = 0;
        loop {
            let first = self.first_inline(tail_page);
            if tail_page < first + u64::from(CHUNK_PAGES) {
                return Ok(written);
            }
            let pages = (first..first + u64::from(CHUNK_PAGES))
                .map(|p| {
                    self.inline.get(&p).cloned().ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "internal: complete page {p} is not in the page table"
                        ))
                    })
                })
                .collect::<Result<_>>()?;
            let chunk = Chunk {
                page_bytes,
                first_page: first,
                pages,
            };
            self.write_chunk(txn, &chunk)?;
            written += 1;
        }
    }

    /// Writes `chunk` as a new chunk node in `txn` and references it where its pages go (at
    /// the end, or at the front for a truncation's rewritten chunk).
    pub fn write_chunk(&mut self, txn: &mut WriteTxn<'_>, chunk: &Chunk) -> Result<()> {
        let r = ChunkRef {
            first_page: chunk.first_page,
            page_count: chunk.pages.len() as u32,
            node: txn.alloc(CHUNK_KIND, &chunk.encode())?,
        };
        let at = self.chunks.partition_point(|c| c.first_page < r.first_page);
        self.chunks.insert(at, r);
        Ok(())
    }
}
