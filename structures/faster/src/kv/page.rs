//! FasterKV page nodes (`design/FORMAT.md` §9): a hybrid-log page written as one runtime node
//! once the log's read-only boundary passes it, and the walker over its records.
//!
//! Invariants (prefix KP):
//! - KP1. A page node is a 32-byte header followed by the page's bytes `[0, used_bytes)`; its
//!   length is exactly `32 + used_bytes`. The page's bytes past `used_bytes` are zero and not
//!   stored.
//! - KP2. The header's fields are checked by the encoder and the decoder alike: magic `VKVP`,
//!   version 1, flags and reserved zero, `page_bytes` a power of two in
//!   [`PAGE_BYTES_MIN`]`..=`[`PAGE_BYTES_MAX`] (so a node, header included, fits the runtime's
//!   largest node), `used_bytes` and `records_begin` multiples of 8 with `records_begin <=
//!   used_bytes <= page_bytes`, and `(page + 1) * page_bytes <= 2^48`, so every address on the
//!   page fits a record's previous-address field.
//! - KP3. The bytes before `records_begin` are zero (only page 0 has any: address 0 means "no
//!   record"). From `records_begin`, records lie end to end (record invariants KR1–KR4, KR9); a
//!   zero lengths word ends them, and every byte from there to `used_bytes` is zero.
//! - KP4. The walker advances by each record's size (at least 32 bytes), never past
//!   `used_bytes`, and stops after its first error: it ends, never reads out of bounds, never
//!   panics.
//! - KP5. A refusal names the byte offset in the node of the field that failed (a record's field
//!   at `32 + record offset + field offset`).
//! - KP6. The node carries no checksum of its own: the runtime keeps a CRC32C of every node
//!   version and checks it on every verified read (`design/FORMAT.md` §9 says why a second one
//!   would catch nothing).

use std::iter::FusedIterator;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vellum::{CorruptionKind, Error as StoreError};

use crate::kv::record::{ADDRESS_MAX, RecordError, RecordRef, lengths_word_at, record_at_bytes};

/// Magic of a page node.
pub const PAGE_MAGIC: [u8; 4] = *b"VKVP";
/// Format version of the page nodes written.
pub const PAGE_FORMAT_VERSION: u16 = 1;
/// Bytes of a page node's header.
pub const PAGE_HEADER_BYTES: usize = 32;
/// Node kind of a FasterKV page node (`L`, a hybrid-log page; FasterLog's kinds are `M`, `P`,
/// `T`).
pub const KV_PAGE_KIND: u8 = 0x4c;
/// The smallest page.
pub const PAGE_BYTES_MIN: u32 = 4 << 10;
/// The largest page: a whole page and its header must fit one runtime node (at most 64 MiB,
/// `design/FORMAT.md` §5), which a 64 MiB page would not.
pub const PAGE_BYTES_MAX: u32 = 32 << 20;

/// The largest runtime node (`design/FORMAT.md` §5, the large class).
const NODE_BYTES_MAX: usize = 64 << 20;
const MAGIC_AT: usize = 0;
const VERSION_AT: usize = MAGIC_AT + 4;
const FLAGS_AT: usize = VERSION_AT + 2;
const PAGE_AT: usize = FLAGS_AT + 2;
const PAGE_BYTES_AT: usize = PAGE_AT + 8;
const USED_BYTES_AT: usize = PAGE_BYTES_AT + 4;
const RECORDS_BEGIN_AT: usize = USED_BYTES_AT + 4;
const RESERVED_AT: usize = RECORDS_BEGIN_AT + 4;

const _: () = assert!(RESERVED_AT + 4 == PAGE_HEADER_BYTES);
const _: () = assert!(PAGE_HEADER_BYTES + PAGE_BYTES_MAX as usize <= NODE_BYTES_MAX);
const _: () = assert!(PAGE_BYTES_MIN.is_power_of_two() && PAGE_BYTES_MAX.is_power_of_two());

/// A page node refused: where (the byte offset in the node) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("FasterKV page node: byte {offset}: {kind}")]
pub struct PageError {
    /// The byte offset in the node of the field that failed (KP5).
    pub offset: u64,
    /// What failed.
    pub kind: PageErrorKind,
}

/// What a page node's decoder refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PageErrorKind {
    /// The node is shorter than its header.
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes needed.
        needed: u64,
        /// Bytes present.
        available: u64,
    },
    /// The magic is not `VKVP`.
    #[error("bad magic {found:02x?}")]
    BadMagic {
        /// The four bytes found.
        found: [u8; 4],
    },
    /// A format version this build cannot read.
    #[error("unsupported format version {found}")]
    UnsupportedVersion {
        /// The version found.
        found: u16,
    },
    /// A header field (or a zero region) holds a value outside its allowed range.
    #[error("invalid {field}: {value}")]
    InvalidField {
        /// The field's name as in `design/FORMAT.md` §9.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The node's length is not `32 + used_bytes`.
    #[error("node length {actual}, header says {expected}")]
    LengthMismatch {
        /// `32 + used_bytes`.
        expected: u64,
        /// The node's length.
        actual: u64,
    },
    /// The node holds another page than the one asked for.
    #[error("holds page {found}, expected page {expected}")]
    WrongPage {
        /// The page asked for.
        expected: u64,
        /// The page the header names.
        found: u64,
    },
    /// [`PageView::record_at`] was given an offset outside the page's records.
    #[error("offset {offset} is outside the records [{records_begin}, {used_bytes})")]
    OffsetOutsideRecords {
        /// The offset given.
        offset: u64,
        /// The page's `records_begin`.
        records_begin: u32,
        /// The page's `used_bytes`.
        used_bytes: u32,
    },
    /// A record does not decode.
    #[error("record: {0}")]
    Record(RecordError),
}

impl PageError {
    fn at(offset: usize, kind: PageErrorKind) -> PageError {
        PageError {
            offset: offset as u64,
            kind,
        }
    }

    fn invalid(offset: usize, field: &'static str, value: u64) -> PageError {
        PageError::at(offset, PageErrorKind::InvalidField { field, value })
    }

    /// The store's structured corruption for this refusal, reported in `file` (the page's name).
    pub fn to_corruption(&self, file: impl Into<PathBuf>) -> StoreError {
        let kind = match self.kind {
            PageErrorKind::Truncated { needed, available } => {
                CorruptionKind::Truncated { needed, available }
            }
            PageErrorKind::BadMagic { found } => CorruptionKind::BadMagic {
                found: u32::from_le_bytes(found).into(),
            },
            PageErrorKind::UnsupportedVersion { found } => CorruptionKind::UnsupportedVersion {
                found: found.into(),
            },
            PageErrorKind::InvalidField { field, value } => {
                CorruptionKind::InvalidField { field, value }
            }
            PageErrorKind::LengthMismatch { expected, actual } => CorruptionKind::Mismatch {
                what: "page node length",
                expected,
                actual,
            },
            PageErrorKind::WrongPage { expected, found } => CorruptionKind::Mismatch {
                what: "page",
                expected,
                actual: found,
            },
            PageErrorKind::OffsetOutsideRecords { offset, .. } => CorruptionKind::InvalidField {
                field: "record_offset",
                value: offset,
            },
            PageErrorKind::Record(e) => {
                let (field, value) = e.field();
                CorruptionKind::InvalidField { field, value }
            }
        };
        StoreError::corruption(file, self.offset, kind)
    }
}

/// A page node's header (KP2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// The page's number: its first address is `page * page_bytes`.
    pub page: u64,
    /// Bytes per page of the log.
    pub page_bytes: u32,
    /// Bytes of the page stored: the end of its last record (KP1).
    pub used_bytes: u32,
    /// Offset of the page's first record (0 except on page 0, KP3).
    pub records_begin: u32,
}

impl PageHeader {
    /// Checks KP2.
    pub fn check(&self) -> Result<(), PageError> {
        let pb = self.page_bytes;
        if !pb.is_power_of_two() || !(PAGE_BYTES_MIN..=PAGE_BYTES_MAX).contains(&pb) {
            return Err(PageError::invalid(PAGE_BYTES_AT, "page_bytes", pb.into()));
        }
        if !self.used_bytes.is_multiple_of(8) || self.used_bytes > pb {
            let used = self.used_bytes.into();
            return Err(PageError::invalid(USED_BYTES_AT, "used_bytes", used));
        }
        if !self.records_begin.is_multiple_of(8) || self.records_begin > self.used_bytes {
            let begin = self.records_begin.into();
            return Err(PageError::invalid(RECORDS_BEGIN_AT, "records_begin", begin));
        }
        let end = self
            .page
            .checked_add(1)
            .and_then(|p| p.checked_mul(pb.into()));
        if end.is_none_or(|end| end > ADDRESS_MAX + 1) {
            return Err(PageError::invalid(PAGE_AT, "page", self.page));
        }
        Ok(())
    }

    /// Bytes of the node holding this page.
    pub fn node_bytes(&self) -> usize {
        PAGE_HEADER_BYTES + self.used_bytes as usize
    }
}

/// The 32 header bytes of a page node, once the header passes KP2.
pub fn encode_page_header(header: &PageHeader) -> Result<[u8; PAGE_HEADER_BYTES], PageError> {
    header.check()?;
    let mut b = [0u8; PAGE_HEADER_BYTES];
    b[MAGIC_AT..VERSION_AT].copy_from_slice(&PAGE_MAGIC);
    b[VERSION_AT..FLAGS_AT].copy_from_slice(&PAGE_FORMAT_VERSION.to_le_bytes());
    // Flags (FLAGS_AT) and reserved (RESERVED_AT) stay zero.
    b[PAGE_AT..PAGE_BYTES_AT].copy_from_slice(&header.page.to_le_bytes());
    b[PAGE_BYTES_AT..USED_BYTES_AT].copy_from_slice(&header.page_bytes.to_le_bytes());
    b[USED_BYTES_AT..RECORDS_BEGIN_AT].copy_from_slice(&header.used_bytes.to_le_bytes());
    b[RECORDS_BEGIN_AT..RESERVED_AT].copy_from_slice(&header.records_begin.to_le_bytes());
    Ok(b)
}

/// A page node's bytes: the header, then `body` (the page's first `used_bytes` bytes).
pub fn encode_page(header: &PageHeader, body: &[u8]) -> Result<Vec<u8>, PageError> {
    let head = encode_page_header(header)?;
    check_body_len(header, body.len())?;
    let mut node = Vec::with_capacity(header.node_bytes());
    node.extend_from_slice(&head);
    node.extend_from_slice(body);
    Ok(node)
}

/// Fills `out` (a node of [`PageHeader::node_bytes`] bytes, as `WriteTxn::alloc_with` hands it)
/// with the header and the first `used_bytes` bytes of the ring page `words`, a word at a time.
/// The caller copies only after no writer can hold one of the page's records (KR9).
pub fn write_page_node(
    header: &PageHeader,
    words: &[AtomicU64],
    out: &mut [u8],
) -> Result<(), PageError> {
    let head = encode_page_header(header)?;
    if words.len() * 8 != header.page_bytes as usize {
        let value = (words.len() * 8) as u64;
        return Err(PageError::invalid(PAGE_BYTES_AT, "ring page bytes", value));
    }
    check_body_len(header, out.len().saturating_sub(PAGE_HEADER_BYTES))?;
    let (out_head, body) = out.split_at_mut(PAGE_HEADER_BYTES);
    out_head.copy_from_slice(&head);
    for (chunk, w) in body.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.load(Relaxed).to_le_bytes());
    }
    Ok(())
}

fn check_body_len(header: &PageHeader, body_bytes: usize) -> Result<(), PageError> {
    if body_bytes != header.used_bytes as usize {
        return Err(PageError::at(
            USED_BYTES_AT,
            PageErrorKind::LengthMismatch {
                expected: header.node_bytes() as u64,
                actual: (PAGE_HEADER_BYTES + body_bytes) as u64,
            },
        ));
    }
    Ok(())
}

/// A decoded page node: its header and stored bytes. Records decode lazily.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageView<'a> {
    header: PageHeader,
    body: &'a [u8],
}

/// Decodes a page node's header and checks its length and leading zero bytes (KP1–KP3);
/// records decode through [`PageView::records`] and [`PageView::record_at`]. Never panics.
pub fn decode_page(node: &[u8]) -> Result<PageView<'_>, PageError> {
    let Some(head) = node.first_chunk::<PAGE_HEADER_BYTES>() else {
        return Err(PageError::at(
            0,
            PageErrorKind::Truncated {
                needed: PAGE_HEADER_BYTES as u64,
                available: node.len() as u64,
            },
        ));
    };
    let header = decode_header(head)?;
    check_body_len(&header, node.len() - PAGE_HEADER_BYTES)?;
    let body = &node[PAGE_HEADER_BYTES..];
    let leading = &body[..header.records_begin as usize];
    if let Some(i) = leading.iter().position(|&b| b != 0) {
        let at = PAGE_HEADER_BYTES + i;
        return Err(PageError::invalid(at, "before_records", leading[i].into()));
    }
    Ok(PageView { header, body })
}

fn decode_header(b: &[u8; PAGE_HEADER_BYTES]) -> Result<PageHeader, PageError> {
    let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u32_at = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
    let magic = [b[0], b[1], b[2], b[3]];
    if magic != PAGE_MAGIC {
        return Err(PageError::at(
            MAGIC_AT,
            PageErrorKind::BadMagic { found: magic },
        ));
    }
    let version = u16_at(VERSION_AT);
    if version != PAGE_FORMAT_VERSION {
        return Err(PageError::at(
            VERSION_AT,
            PageErrorKind::UnsupportedVersion { found: version },
        ));
    }
    if u16_at(FLAGS_AT) != 0 {
        return Err(PageError::invalid(
            FLAGS_AT,
            "flags",
            u16_at(FLAGS_AT).into(),
        ));
    }
    if u32_at(RESERVED_AT) != 0 {
        let value = u32_at(RESERVED_AT).into();
        return Err(PageError::invalid(RESERVED_AT, "reserved", value));
    }
    let page = u64::from(u32_at(PAGE_AT)) | u64::from(u32_at(PAGE_AT + 4)) << 32;
    let header = PageHeader {
        page,
        page_bytes: u32_at(PAGE_BYTES_AT),
        used_bytes: u32_at(USED_BYTES_AT),
        records_begin: u32_at(RECORDS_BEGIN_AT),
    };
    header.check()?;
    Ok(header)
}

impl<'a> PageView<'a> {
    /// The header.
    pub fn header(&self) -> &PageHeader {
        &self.header
    }

    /// The page's stored bytes, `[0, used_bytes)`.
    pub fn body(&self) -> &'a [u8] {
        self.body
    }

    /// Checks that the node holds page `page` of a log of `page_bytes` pages (a node found by a
    /// page table entry that names the wrong one is a corruption, not a wrong answer).
    pub fn check_page(&self, page: u64, page_bytes: u32) -> Result<(), PageError> {
        if self.header.page_bytes != page_bytes {
            let found = self.header.page_bytes.into();
            return Err(PageError::at(
                PAGE_BYTES_AT,
                PageErrorKind::WrongPage {
                    expected: page_bytes.into(),
                    found,
                },
            ));
        }
        if self.header.page != page {
            return Err(PageError::at(
                PAGE_AT,
                PageErrorKind::WrongPage {
                    expected: page,
                    found: self.header.page,
                },
            ));
        }
        Ok(())
    }

    /// The logical address of byte `offset` of the page.
    pub fn address(&self, offset: u32) -> u64 {
        self.header.page * u64::from(self.header.page_bytes) + u64::from(offset)
    }

    /// The page offset of `address`, if it lies on this page.
    pub fn offset_of(&self, address: u64) -> Option<u32> {
        let start = self.address(0);
        let offset = address.checked_sub(start)?;
        u32::try_from(offset)
            .ok()
            .filter(|&o| o < self.header.page_bytes)
    }

    /// The record at page `offset` (for following a hash chain by previous address). The
    /// offset must lie in `[records_begin, used_bytes)`; the decoder cannot tell whether a
    /// record really starts there, only that the bytes there decode as one.
    pub fn record_at(&self, offset: usize) -> Result<RecordRef<'a>, PageError> {
        let h = &self.header;
        if offset < h.records_begin as usize || offset >= h.used_bytes as usize {
            return Err(PageError::at(
                PAGE_HEADER_BYTES.saturating_add(offset),
                PageErrorKind::OffsetOutsideRecords {
                    offset: offset as u64,
                    records_begin: h.records_begin,
                    used_bytes: h.used_bytes,
                },
            ));
        }
        record_at_bytes(self.body, offset).map_err(|e| record_error(offset, e))
    }

    /// The page's records in order (KP3, KP4).
    pub fn records(&self) -> Records<'a> {
        Records {
            view: *self,
            next: self.header.records_begin as usize,
            done: false,
        }
    }
}

/// A record's error as the node's (KP5).
fn record_error(offset: usize, e: RecordError) -> PageError {
    PageError::at(
        PAGE_HEADER_BYTES + offset + e.field_offset(),
        PageErrorKind::Record(e),
    )
}

/// The records of a page node, in order: each `Ok`, or one `Err` and then nothing (KP4).
#[derive(Debug, Clone)]
pub struct Records<'a> {
    view: PageView<'a>,
    next: usize,
    done: bool,
}

impl<'a> Records<'a> {
    /// The end of the records walked so far (once the walk is over without an error, the end
    /// of the page's records).
    pub fn offset(&self) -> usize {
        self.next
    }

    /// KP3: from a zero lengths word on, every stored byte is zero.
    fn check_zero_tail(&self) -> Result<(), PageError> {
        let tail = &self.view.body[self.next..];
        match tail.iter().position(|&b| b != 0) {
            Some(i) => Err(PageError::invalid(
                PAGE_HEADER_BYTES + self.next + i,
                "after_records",
                tail[i].into(),
            )),
            None => Ok(()),
        }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<RecordRef<'a>, PageError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.next >= self.view.body.len() {
            return None;
        }
        let at_end = lengths_word_at(self.view.body, self.next).is_none_or(|w| w == 0);
        let step = if at_end {
            self.check_zero_tail().map(|()| None)
        } else {
            self.view.record_at(self.next).map(Some)
        };
        match step {
            Ok(Some(r)) => {
                self.next += r.header.size();
                Some(Ok(r))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl FusedIterator for Records<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::record::{RecordInfo, encode_record};

    /// Page 5 of a 4 KiB log holding the record of `record::tests::golden_record_bytes`.
    fn golden_page() -> Vec<u8> {
        let mut body = vec![0u8; 40];
        let info = RecordInfo::new(0x0000_1234_5678_9abc, 3);
        encode_record(info, b"key-1", b"hello", 8, &mut body).unwrap();
        let header = PageHeader {
            page: 5,
            page_bytes: 4096,
            used_bytes: 40,
            records_begin: 0,
        };
        encode_page(&header, &body).unwrap()
    }

    /// The node shown in `design/FORMAT.md` §9.
    const GOLDEN_PAGE_HEX: &str = "564b5650010000000500000000000000001000002800000000000000\
        00000000bc9a785634120300050005000008000000000000000000006b65792d31000000\
        68656c6c6f000000";

    #[test]
    fn golden_page_bytes() {
        let b = golden_page();
        assert_eq!(b.len(), 72);
        assert_eq!(&b[0..4], b"VKVP");
        assert_eq!(&b[4..6], &1u16.to_le_bytes(), "format_version");
        assert_eq!(&b[6..8], &[0, 0], "flags");
        assert_eq!(&b[8..16], &5u64.to_le_bytes(), "page");
        assert_eq!(&b[16..20], &4096u32.to_le_bytes(), "page_bytes");
        assert_eq!(&b[20..24], &40u32.to_le_bytes(), "used_bytes");
        assert_eq!(&b[24..28], &[0; 4], "records_begin");
        assert_eq!(&b[28..32], &[0; 4], "reserved");
        let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(hex, GOLDEN_PAGE_HEX);
        let view = decode_page(&b).unwrap();
        assert_eq!(view.address(40), 5 * 4096 + 40);
        assert_eq!(view.offset_of(5 * 4096 + 8), Some(8));
        assert_eq!(view.offset_of(6 * 4096), None);
        let records: Vec<_> = view.records().collect::<Result<_, _>>().unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (records[0].key, records[0].value),
            (&b"key-1"[..], &b"hello"[..])
        );
        assert_eq!(view.record_at(0), Ok(records[0]));
    }

    /// Each header rule is reported at its field's offset.
    #[test]
    fn header_fields_are_checked_where_they_are() {
        let refused = |at: usize, bytes: &[u8]| {
            let mut b = golden_page();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            decode_page(&b).unwrap_err()
        };
        let invalid = |offset: u64, field: &'static str, value: u64| PageError {
            offset,
            kind: PageErrorKind::InvalidField { field, value },
        };
        assert_eq!(
            refused(0, b"VKVQ").kind,
            PageErrorKind::BadMagic { found: *b"VKVQ" }
        );
        assert_eq!(
            refused(4, &[2, 0]),
            PageError {
                offset: 4,
                kind: PageErrorKind::UnsupportedVersion { found: 2 }
            }
        );
        assert_eq!(refused(6, &[1, 0]), invalid(6, "flags", 1));
        assert_eq!(refused(28, &[0, 1, 0, 0]), invalid(28, "reserved", 256));
        assert_eq!(
            refused(16, &6144u32.to_le_bytes()),
            invalid(16, "page_bytes", 6144)
        );
        assert_eq!(
            refused(16, &(64u32 << 20).to_le_bytes()),
            invalid(16, "page_bytes", 64 << 20)
        );
        assert_eq!(
            refused(20, &44u32.to_le_bytes()),
            invalid(20, "used_bytes", 44)
        );
        assert_eq!(
            refused(24, &48u32.to_le_bytes()),
            invalid(24, "records_begin", 48)
        );
        let last_page = (1u64 << 48) / 4096 - 1;
        let mut b = golden_page();
        b[8..16].copy_from_slice(&last_page.to_le_bytes());
        assert!(decode_page(&b).is_ok(), "the last page of 2^48 addresses");
        assert_eq!(
            refused(8, &(last_page + 1).to_le_bytes()),
            invalid(8, "page", last_page + 1)
        );
        assert_eq!(
            decode_page(&golden_page()[..71]).unwrap_err(),
            PageError {
                offset: 20,
                kind: PageErrorKind::LengthMismatch {
                    expected: 72,
                    actual: 71
                }
            }
        );
        assert_eq!(
            decode_page(&golden_page()[..31]).unwrap_err().kind,
            PageErrorKind::Truncated {
                needed: 32,
                available: 31
            }
        );
    }

    #[test]
    fn wrong_page_and_offsets_outside_records_are_refused() {
        let b = golden_page();
        let view = decode_page(&b).unwrap();
        view.check_page(5, 4096).unwrap();
        assert_eq!(
            view.check_page(6, 4096).unwrap_err(),
            PageError {
                offset: 8,
                kind: PageErrorKind::WrongPage {
                    expected: 6,
                    found: 5
                }
            }
        );
        assert_eq!(view.check_page(5, 8192).unwrap_err().offset, 16);
        for offset in [40, 48, usize::MAX] {
            let e = view.record_at(offset).unwrap_err();
            assert!(
                matches!(e.kind, PageErrorKind::OffsetOutsideRecords { .. }),
                "{e}"
            );
        }
        let e = view.record_at(4).unwrap_err();
        assert_eq!(
            e.kind,
            PageErrorKind::Record(RecordError::OffsetUnaligned { offset: 4 })
        );
        let c = e.to_corruption("faster-kv:t/page-5");
        let c = c.as_corruption().unwrap();
        assert_eq!(c.offset, 36);
        assert_eq!(
            c.kind,
            CorruptionKind::InvalidField {
                field: "record_offset",
                value: 4
            }
        );
    }
}
