//! Positional reads of a file through one bounded buffer: the log reader and fsck's frame walker
//! read frames this way, so memory stays bounded whatever the file's size.

use std::borrow::Cow;

use super::StorageFile;
use crate::error::Result;

/// A file of `len` bytes read through a buffer of at most `capacity` bytes; a read larger than
/// the buffer gets its own allocation.
#[derive(Debug)]
pub(crate) struct ReadBuffer<'a> {
    file: &'a dyn StorageFile,
    len: u64,
    buf: Vec<u8>,
    buf_offset: u64,
    capacity: usize,
}

impl<'a> ReadBuffer<'a> {
    /// Reads `file`, taken to be `len` bytes long, through a buffer of `capacity` bytes.
    pub(crate) fn new(file: &'a dyn StorageFile, len: u64, capacity: usize) -> Self {
        ReadBuffer {
            file,
            len,
            buf: Vec::new(),
            buf_offset: 0,
            capacity,
        }
    }

    /// Up to `n` bytes of the file from `offset`; fewer only where the file ends.
    pub(crate) fn read(&mut self, offset: u64, n: usize) -> Result<Cow<'_, [u8]>> {
        let available = self.len.saturating_sub(offset);
        let n = n.min(usize::try_from(available).unwrap_or(usize::MAX));
        if n > self.capacity {
            let mut own = vec![0u8; n];
            let got = self.file.read_at(&mut own, offset)?;
            own.truncate(got);
            return Ok(Cow::Owned(own));
        }
        let buffered_end = self.buf_offset.saturating_add(self.buf.len() as u64);
        let wanted_end = offset.saturating_add(n as u64);
        if offset < self.buf_offset || wanted_end > buffered_end {
            let want = self
                .capacity
                .min(usize::try_from(available).unwrap_or(usize::MAX));
            self.buf.resize(want, 0);
            self.buf_offset = offset;
            let got = match self.file.read_at(&mut self.buf, offset) {
                Ok(got) => got,
                Err(e) => {
                    self.buf.clear();
                    return Err(e);
                }
            };
            self.buf.truncate(got);
        }
        let start = usize::try_from(offset.saturating_sub(self.buf_offset)).unwrap_or(usize::MAX);
        let window = self.buf.get(start..).unwrap_or_default();
        Ok(Cow::Borrowed(window.get(..n).unwrap_or(window)))
    }
}
