//! [`CheckpointWriter`]: streams entries into blocks, then makes the file durable under its final
//! name. The steps (W1–W6) and the crash argument are in `design/DURABILITY.md` §5.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::compact::{
    BLOCK_HEADER_BYTES, Base, BlockHeader, block_crc, decode_entry, encode_entry,
};
use super::format::{
    BLOCK_BYTES_MAX, BLOCK_ENTRIES_MAX, FORMAT_VERSION, Footer, HEADER_BYTES, Header,
};
use super::{CheckpointEntry, CheckpointInfo, CheckpointItem, checkpoint_file_name};
use crate::codec::{crc32c, crc32c_append, crc32c_combine};
use crate::error::{Error, IoOp, Result};
use crate::io::{Storage, StorageFile};
use crate::meta::files::TMP_SUFFIX;
use crate::object_table::NodeId;

/// Writes one checkpoint file. Entries must be pushed in strictly increasing id order.
///
/// At most one block is held in memory. On any error (and if the writer is dropped without
/// `finish`), the `.tmp` file is left in place for the store's open to remove: it is never read,
/// and a writer for the same seq removes it first. After an I/O error the writer refuses further
/// calls; start a new one.
pub struct CheckpointWriter<'s> {
    storage: &'s dyn Storage,
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
    file: Arc<dyn StorageFile>,
    seq: u64,
    epoch: u64,
    /// The block being filled: room for its header, then its encoded entries.
    block: Vec<u8>,
    block_entries: u32,
    /// What the block's next entry is coded against (zero at a block's start).
    base: Base,
    entries: u64,
    blocks: u64,
    last: Option<NodeId>,
    /// Where the next block goes.
    offset: u64,
    /// CRC32C of the bytes written from `HEADER_BYTES` to `offset`. The header is written last
    /// (only then is the entry count known), and its CRC is combined with this one in `finish`.
    body_crc: u32,
    failed: bool,
}

impl fmt::Debug for CheckpointWriter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the block buffer: it may hold 160 KiB.
        f.debug_struct("CheckpointWriter")
            .field("tmp", &self.tmp)
            .field("seq", &self.seq)
            .field("epoch", &self.epoch)
            .field("entries", &self.entries)
            .field("blocks", &self.blocks)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl<'s> CheckpointWriter<'s> {
    /// Starts checkpoint `seq`, a snapshot of commit epoch `epoch`, in `dir` (step W1).
    ///
    /// Fails with an `AlreadyExists` I/O error if `ot-{seq:016x}.ckpt` exists: a manifest may name
    /// it, and the writer cannot tell, so it never replaces one. A leftover `.tmp` is removed.
    pub fn create(storage: &'s dyn Storage, dir: &Path, seq: u64, epoch: u64) -> Result<Self> {
        let name = checkpoint_file_name(seq);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
        if storage.exists(&path)? {
            let e = std::io::ErrorKind::AlreadyExists.into();
            return Err(Error::io(IoOp::Create, path, e));
        }
        // `create` refuses an existing file, and a leftover tmp is garbage (invariant 2).
        if storage.exists(&tmp)? {
            storage.remove(&tmp)?;
        }
        let file = storage.create(&tmp)?;
        tracing::debug!(file = %tmp.display(), seq, epoch, "checkpoint started");
        let mut block = Vec::with_capacity(BLOCK_BYTES_MAX);
        block.resize(BLOCK_HEADER_BYTES, 0);
        Ok(CheckpointWriter {
            storage,
            dir: dir.to_path_buf(),
            name,
            tmp,
            file,
            seq,
            epoch,
            block,
            block_entries: 0,
            base: Base::default(),
            entries: 0,
            blocks: 0,
            last: None,
            offset: HEADER_BYTES as u64,
            body_crc: 0,
            failed: false,
        })
    }

    /// Adds the next entry (step W2). `InvalidArgument` if its id is not above the previous one's,
    /// or it could not be read back (a location that does not pack, a length above the slot size,
    /// a birth after the checkpoint's epoch); the writer stays usable after such a refusal.
    pub fn push(&mut self, entry: CheckpointEntry) -> Result<()> {
        self.push_item(CheckpointItem::Live(entry))
    }

    /// Adds a free handle (step W2): `id` carries the tag its handle's next node gets. Ordered
    /// with the live entries by id, like [`CheckpointWriter::push`].
    pub fn push_free(&mut self, id: NodeId) -> Result<()> {
        self.push_item(CheckpointItem::Free(id))
    }

    /// Adds an exhausted handle (step W2): one that issued every tag and must never be handed out
    /// again; `id` carries [`crate::object_table::TAG_MAX`]. Ordered like the others.
    pub fn push_exhausted(&mut self, id: NodeId) -> Result<()> {
        self.push_item(CheckpointItem::Exhausted(id))
    }

    /// Encodes `item` into the block, then keeps it only if the reader's decoder reads exactly
    /// `item` back from those bytes (invariant 3): that also catches a location `pack` would
    /// truncate, an id out of order and a birth after the epoch.
    fn push_item(&mut self, item: CheckpointItem) -> Result<()> {
        self.check_usable()?;
        let at = self.block.len();
        let next = encode_entry(&mut self.block, self.base, self.epoch, &item);
        let prev = self.last.map(NodeId::raw);
        let bytes = &self.block[at..];
        let why = match decode_entry(bytes, &self.tmp, 0, self.base, self.epoch, prev) {
            Ok(d) if d.item == item && d.bytes == bytes.len() && d.next == next => None,
            // Only a location that `pack` truncates reads back as another valid entry.
            Ok(_) => Some("its location cannot be packed".to_string()),
            Err(e) => Some(
                e.as_corruption()
                    .map_or_else(|| e.to_string(), |c| c.kind.to_string()),
            ),
        };
        if let Some(why) = why {
            self.block.truncate(at);
            return Err(Error::InvalidArgument(format!(
                "checkpoint entry {item:?} (epoch {}, previous id {:?}): {why}",
                self.epoch, self.last,
            )));
        }
        self.base = next;
        self.block_entries += 1;
        self.entries += 1;
        self.last = Some(item_id(&item));
        if self.block_entries == BLOCK_ENTRIES_MAX {
            self.write_block()?;
        }
        Ok(())
    }

    /// Writes the last block, the footer and the header (W3), syncs the file (W4), renames it to
    /// its final name (W5) and syncs the directory (W6). Returns what the manifest must record.
    pub fn finish(mut self) -> Result<CheckpointInfo> {
        self.check_usable()?;
        if self.block_entries > 0 {
            self.write_block()?;
        }
        let footer = Footer {
            entry_count: self.entries,
            block_count: self.blocks,
        }
        .encode();
        self.file.write_at(&footer, self.offset)?;
        self.body_crc = crc32c_append(self.body_crc, &footer);
        self.offset += footer.len() as u64;
        let header = Header {
            version: FORMAT_VERSION,
            seq: self.seq,
            epoch: self.epoch,
            entry_count: self.entries,
        }
        .encode();
        self.file.write_at(&header, 0)?;
        let body_bytes = usize::try_from(self.offset - HEADER_BYTES as u64)
            .map_err(|_| Error::InvalidArgument(format!("checkpoint of {} bytes", self.offset)))?;
        let file_crc = crc32c_combine(crc32c(&header), self.body_crc, body_bytes);
        self.file.sync_data()?;
        let path = self.dir.join(&self.name);
        // Nothing names `path` until the caller publishes a manifest, so a crash or a failure from
        // here on leaves nothing recovery would read (DURABILITY.md §5).
        self.storage.rename(&self.tmp, &path)?;
        self.storage.sync_dir(&self.dir)?;
        tracing::info!(
            file = %path.display(),
            epoch = self.epoch,
            entries = self.entries,
            blocks = self.blocks,
            bytes = self.offset,
            "checkpoint written"
        );
        Ok(CheckpointInfo {
            file: self.name,
            seq: self.seq,
            epoch: self.epoch,
            entries: self.entries,
            bytes: self.offset,
            crc32c: file_crc,
        })
    }

    fn check_usable(&self) -> Result<()> {
        if self.failed {
            return Err(Error::InvalidArgument(format!(
                "checkpoint writer for {} failed earlier; start a new one",
                self.tmp.display()
            )));
        }
        Ok(())
    }

    /// Writes the buffered block behind its header and empties the buffer.
    fn write_block(&mut self) -> Result<()> {
        let (header, entries) = self.block.split_at_mut(BLOCK_HEADER_BYTES);
        let entry_bytes = u32::try_from(entries.len()).map_err(|_| {
            Error::InvalidArgument(format!("checkpoint block of {} bytes", entries.len()))
        })?;
        let block_header = BlockHeader {
            count: self.block_entries,
            entry_bytes,
            crc32c: block_crc(self.block_entries, entry_bytes, entries),
            reserved: 0,
            first_entry_index: self.entries - u64::from(self.block_entries),
        };
        header.copy_from_slice(&block_header.encode());
        if let Err(e) = self.file.write_at(&self.block, self.offset) {
            // What reached the file is unknown, so the writer cannot go on.
            self.failed = true;
            return Err(e);
        }
        self.body_crc = crc32c_append(self.body_crc, &self.block);
        self.offset += self.block.len() as u64;
        self.blocks += 1;
        self.block.truncate(BLOCK_HEADER_BYTES);
        self.block_entries = 0;
        self.base = Base::default();
        Ok(())
    }
}

/// The id an item names.
fn item_id(item: &CheckpointItem) -> NodeId {
    match item {
        CheckpointItem::Live(entry) => entry.id,
        CheckpointItem::Free(id) | CheckpointItem::Exhausted(id) => *id,
    }
}
