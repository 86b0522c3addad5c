//! Walking a delta log's frames for `fsck` and `dump`: the replay rules of `design/FORMAT.md` §4,
//! one frame at a time and from any offset, plus what replay never does: searching past a bad
//! frame for later valid ones.
//!
//! Invariants:
//! 1. A step applies exactly the replay rules (end of file, short header, end marker, impossible
//!    length, short frame, CRC, index), in that order, so the frames `fsck` accepts are the
//!    frames recovery accepts.
//! 2. Nothing here panics or allocates beyond the file: lengths are checked against the bytes left
//!    before a frame is read, and reads go through one bounded buffer (a larger frame is read on
//!    its own, at most `FRAME_BYTES_MAX`).
//! 3. The forward search bounds its work: it checks the CRC of at most
//!    [`SEARCH_CRC_BYTES_MAX`] bytes of candidate frames, so adversarial bytes cannot make it
//!    quadratic in the file's size.

use std::borrow::Cow;

use crate::error::{CorruptionKind, Result};
use crate::io::{ReadBuffer, StorageFile};
use crate::log::{
    FRAME_ALIGN, FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, FrameHead, check_frame,
    decode_frame_len, frame_bytes,
};

/// Bytes the walker buffers at once (a larger frame is read on its own).
const BUFFER_BYTES: usize = 1 << 20;

/// Most candidate-frame bytes the forward search checksums before it gives up.
pub const SEARCH_CRC_BYTES_MAX: u64 = 1 << 30;

/// How far past the expected index the forward search accepts a frame's index. Frames are
/// numbered consecutively, so a frame past a bad one carries an index a little above it; a
/// larger value is taken for stray bytes, which also spares checking their CRC.
const SEARCH_INDEX_SPAN: u64 = 1 << 32;

/// What one step of the walk found at an offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A valid frame.
    Frame {
        /// Its first byte.
        offset: u64,
        /// Its index.
        index: u64,
        /// Its body.
        body: Vec<u8>,
        /// Where the next frame starts.
        end: u64,
    },
    /// The offset is the end of the file.
    Eof,
    /// A zero body length: the log's end marker (or unwritten space).
    End,
    /// The frame here does not decode.
    Bad {
        /// Why.
        kind: CorruptionKind,
    },
}

/// Walks the frames of one log file.
#[derive(Debug)]
pub(crate) struct FrameWalker<'a> {
    reader: ReadBuffer<'a>,
    len: u64,
}

impl<'a> FrameWalker<'a> {
    /// A walker over `file`.
    pub(crate) fn new(file: &'a dyn StorageFile) -> Result<Self> {
        let len = file.len()?;
        Ok(FrameWalker {
            reader: ReadBuffer::new(file, len, BUFFER_BYTES),
            len,
        })
    }

    /// The file's length when the walker was made.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Decodes the frame at `offset`, expecting index `index`.
    pub(crate) fn step(&mut self, offset: u64, index: u64) -> Result<Step> {
        if offset >= self.len {
            return Ok(Step::Eof);
        }
        let head = self.read(offset, FRAME_HEADER_BYTES)?;
        let body_bytes = match decode_frame_len(&head) {
            None => {
                let kind = CorruptionKind::Truncated {
                    needed: FRAME_HEADER_BYTES as u64,
                    available: head.len() as u64,
                };
                return Ok(Step::Bad { kind });
            }
            Some(FrameHead::End) => return Ok(Step::End),
            Some(FrameHead::BadLength(value)) => {
                let kind = CorruptionKind::InvalidField {
                    field: "frame.body_bytes",
                    value: u64::from(value),
                };
                return Ok(Step::Bad { kind });
            }
            Some(FrameHead::Frame { body_bytes }) => body_bytes,
        };
        let total = frame_bytes(body_bytes);
        let available = self.len - offset;
        if total > available {
            let kind = CorruptionKind::Truncated {
                needed: total,
                available,
            };
            return Ok(Step::Bad { kind });
        }
        let bytes = self.read(offset, usize::try_from(total).unwrap_or(usize::MAX))?;
        match check_frame(&bytes, index) {
            Ok(body) => Ok(Step::Frame {
                offset,
                index,
                body: body.to_vec(),
                end: offset + total,
            }),
            Err(kind) => Ok(Step::Bad { kind }),
        }
    }

    /// The first whole, CRC-valid frame that starts at a frame-aligned offset at or after `from`
    /// and whose index is at least `min_index` (and not absurdly far above it): `(offset,
    /// index)`. `None` if there is none, or the search reached its work bound.
    pub(crate) fn find_valid(&mut self, from: u64, min_index: u64) -> Result<Option<(u64, u64)>> {
        let mut offset = from.next_multiple_of(FRAME_ALIGN);
        let mut crc_bytes = 0u64;
        let span_end = min_index.saturating_add(SEARCH_INDEX_SPAN);
        while offset.saturating_add(FRAME_HEADER_BYTES as u64) <= self.len {
            let head = self.read(offset, FRAME_HEADER_BYTES)?;
            let candidate = match (decode_frame_len(&head), head.get(8..16)) {
                (Some(FrameHead::Frame { body_bytes }), Some(index)) => {
                    let index = u64::from_le_bytes(index.try_into().unwrap_or([0; 8]));
                    let total = frame_bytes(body_bytes);
                    let plausible = (min_index..span_end).contains(&index)
                        && body_bytes <= FRAME_BODY_BYTES_MAX
                        && total <= self.len - offset;
                    plausible.then_some((index, total))
                }
                _ => None,
            };
            if let Some((index, total)) = candidate {
                crc_bytes = crc_bytes.saturating_add(total);
                if crc_bytes > SEARCH_CRC_BYTES_MAX {
                    tracing::debug!(from, "frame search stopped at its work bound");
                    return Ok(None);
                }
                let bytes = self.read(offset, usize::try_from(total).unwrap_or(usize::MAX))?;
                if check_frame(&bytes, index).is_ok() {
                    return Ok(Some((offset, index)));
                }
            }
            offset += FRAME_ALIGN;
        }
        Ok(None)
    }

    /// Up to `n` bytes from `offset`; fewer only where the file ends.
    fn read(&mut self, offset: u64, n: usize) -> Result<Cow<'_, [u8]>> {
        self.reader.read(offset, n)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::io::{FaultStorage, Storage};
    use crate::log::encode_frame;

    /// A file holding `bytes` (the walker never reads the 64 header bytes).
    fn file_with(bytes: &[u8]) -> Arc<dyn StorageFile> {
        let fs = FaultStorage::new(1);
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.create(Path::new("/d/log")).unwrap();
        f.write_at(bytes, 0).unwrap();
        f
    }

    #[test]
    fn steps_follow_the_replay_rules_and_the_search_skips_damage() {
        let mut bytes = vec![0u8; 64];
        let f0 = encode_frame(0, b"first").unwrap();
        let f1 = encode_frame(1, b"second frame").unwrap();
        let f2 = encode_frame(2, b"third").unwrap();
        let at1 = 64 + f0.len() as u64;
        let at2 = at1 + f1.len() as u64;
        bytes.extend_from_slice(&f0);
        bytes.extend_from_slice(&f1);
        bytes.extend_from_slice(&f2);
        bytes.extend_from_slice(&[0u8; 64]);
        // Damage frame 1's body: its CRC fails, frame 2 is intact.
        bytes[at1 as usize + 20] ^= 1;
        let file = file_with(&bytes);
        let mut w = FrameWalker::new(file.as_ref()).unwrap();
        let Step::Frame { end, body, .. } = w.step(64, 0).unwrap() else {
            panic!("frame 0 is valid");
        };
        assert_eq!((end, body.as_slice()), (at1, &b"first"[..]));
        assert!(matches!(
            w.step(at1, 1).unwrap(),
            Step::Bad {
                kind: CorruptionKind::ChecksumMismatch { .. }
            }
        ));
        assert_eq!(w.find_valid(at1 + 8, 2).unwrap(), Some((at2, 2)));
        // Frame 2 carries index 2: not found when asked for later indexes only.
        assert_eq!(w.find_valid(at1 + 8, 3).unwrap(), None);
        // A frame read with the wrong expected index is a mismatch, not a frame.
        assert!(matches!(
            w.step(at2, 7).unwrap(),
            Step::Bad {
                kind: CorruptionKind::Mismatch { .. }
            }
        ));
        let end2 = at2 + f2.len() as u64;
        assert_eq!(w.step(end2, 3).unwrap(), Step::End);
        assert_eq!(w.step(bytes.len() as u64, 3).unwrap(), Step::Eof);
    }

    #[test]
    fn short_and_impossible_frames_are_bad_not_panics() {
        let mut bytes = vec![0u8; 64];
        bytes.extend_from_slice(&(FRAME_BODY_BYTES_MAX + 1).to_le_bytes());
        bytes.extend_from_slice(&[0xff; 12]);
        bytes.extend_from_slice(&100u32.to_le_bytes());
        bytes.extend_from_slice(&[1, 2]);
        let file = file_with(&bytes);
        let mut w = FrameWalker::new(file.as_ref()).unwrap();
        assert_eq!(
            w.step(64, 0).unwrap(),
            Step::Bad {
                kind: CorruptionKind::InvalidField {
                    field: "frame.body_bytes",
                    value: u64::from(FRAME_BODY_BYTES_MAX + 1)
                }
            }
        );
        assert_eq!(
            w.step(80, 0).unwrap(),
            Step::Bad {
                kind: CorruptionKind::Truncated {
                    needed: frame_bytes(100),
                    available: 6
                }
            }
        );
        assert_eq!(
            w.step(84, 0).unwrap(),
            Step::Bad {
                kind: CorruptionKind::Truncated {
                    needed: 16,
                    available: 2
                }
            }
        );
        assert_eq!(w.find_valid(64, 0).unwrap(), None);
    }
}
