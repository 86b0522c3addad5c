//! Walking a delta log's frames for `fsck` and `dump`, one frame at a time and from any offset,
//! with the log reader's own rules (`crate::log`'s `step` and `judge_stop`), so the frames `fsck`
//! accepts are exactly the frames recovery accepts, and a stop is judged (clean, sealed, torn,
//! damaged) exactly as recovery judges it.
//!
//! Invariants:
//! 1. A step applies exactly the replay rules of `design/FORMAT.md` §4 (it is the reader's step).
//! 2. Nothing here panics or allocates beyond the file: reads go through one bounded buffer (a
//!    larger frame is read on its own, at most `FRAME_BYTES_MAX`), and the search past a stop
//!    bounds its checksum work (`SEARCH_CRC_BYTES_MAX`).

use crate::error::{CorruptionKind, Result};
use crate::io::{ReadBuffer, StorageFile};
use crate::log::{
    FrameSeed, LOG_FORMAT_VERSION, Stop, TailState, judge_stop, parse_log_file_name, read_header,
    step,
};

/// Bytes the walker buffers at once (a larger frame is read on its own).
const BUFFER_BYTES: usize = 1 << 20;

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
    /// Zero bytes: the unwritten end, or a lost frame (see [`FrameWalker::judge`]).
    End,
    /// The seal of a clean close.
    Sealed,
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
    /// What the log's frame checksums start from (its header's).
    seed: FrameSeed,
    len: u64,
    /// The last stop `step` found, for `judge`.
    stop: Option<(u64, u64, Stop)>,
}

/// What the frame checksums of log `file` start from: its header's seed; when the header does not
/// decode (a damage fsck reports on its own), the seed a log of the current format with the
/// sequence number in its name would have, so its frames can still be walked.
fn frame_seed_of(file: &dyn StorageFile) -> FrameSeed {
    if let Ok(header) = read_header(file) {
        return header.frame_seed();
    }
    let seq = file
        .path()
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(parse_log_file_name);
    seq.map_or(FrameSeed::UNSEEDED, |seq| {
        FrameSeed::of(LOG_FORMAT_VERSION, seq)
    })
}

impl<'a> FrameWalker<'a> {
    /// A walker over `file`, a log whose frame checksums start from its header's seed.
    pub(crate) fn new(file: &'a dyn StorageFile) -> Result<Self> {
        let len = file.len()?;
        Ok(FrameWalker {
            reader: ReadBuffer::new(file, len, BUFFER_BYTES),
            seed: frame_seed_of(file),
            len,
            stop: None,
        })
    }

    /// The file's length when the walker was made.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Decodes the frame at `offset`, expecting index `index`.
    pub(crate) fn step(&mut self, offset: u64, index: u64) -> Result<Step> {
        let stop = match step(&mut self.reader, self.seed, self.len, offset, index)? {
            Ok(frame) => {
                let end = frame.end();
                return Ok(Step::Frame {
                    offset,
                    index,
                    body: frame.body,
                    end,
                });
            }
            Err(stop) => stop,
        };
        let found = match &stop {
            Stop::Unwritten if offset >= self.len => Step::Eof,
            Stop::Unwritten => Step::End,
            Stop::Sealed => Step::Sealed,
            Stop::Bad { kind, .. } => Step::Bad { kind: kind.clone() },
        };
        self.stop = Some((offset, index, stop));
        Ok(found)
    }

    /// Judges the stop the last [`FrameWalker::step`] found, as replay does: searches past it
    /// and says whether it is the clean end, a seal, a torn tail or damage to durable frames.
    pub(crate) fn judge(&mut self) -> Result<TailState> {
        match self.stop.take() {
            Some((offset, index, stop)) => {
                judge_stop(&mut self.reader, self.seed, self.len, offset, index, stop)
            }
            None => Ok(TailState::Clean),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::io::{FaultStorage, Storage};
    use crate::log::{FRAME_BODY_BYTES_MAX, encode_frame_claiming, encode_seal, frame_bytes};

    /// A file holding `bytes` (the walker never reads the 64 header bytes; without a header or a
    /// log's name, its frames are unseeded).
    fn file_with(bytes: &[u8]) -> Arc<dyn StorageFile> {
        let fs = FaultStorage::new(1);
        fs.create_dir_all(Path::new("/d")).unwrap();
        let f = fs.create(Path::new("/d/log")).unwrap();
        f.write_at(bytes, 0).unwrap();
        f
    }

    /// Three frames at 64, `at1`, `at2`; frame 2 claims frames 0 and 1 durable when
    /// `claim_both`, only the header otherwise.
    fn three_frames(claim_both: bool) -> (Vec<u8>, u64, u64) {
        let mut bytes = vec![0u8; 64];
        let f0 = encode_frame_claiming(FrameSeed::UNSEEDED, 0, 64, b"first").unwrap();
        let f1 = encode_frame_claiming(FrameSeed::UNSEEDED, 1, 64, b"second frame").unwrap();
        let at1 = 64 + f0.len() as u64;
        let at2 = at1 + f1.len() as u64;
        let claim2 = if claim_both { at2 } else { 64 };
        let f2 = encode_frame_claiming(FrameSeed::UNSEEDED, 2, claim2, b"third").unwrap();
        bytes.extend_from_slice(&f0);
        bytes.extend_from_slice(&f1);
        bytes.extend_from_slice(&f2);
        bytes.extend_from_slice(&[0u8; 64]);
        (bytes, at1, at2)
    }

    #[test]
    fn a_bad_frame_a_later_frame_claims_durable_is_damage() {
        // Frame 2 claims frames up to its own start durable, frame 1 included.
        let (mut bytes, at1, at2) = three_frames(true);
        bytes[at1 as usize + 26] ^= 1;
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
        let TailState::Damaged {
            offset,
            past,
            proof,
            ..
        } = w.judge().unwrap()
        else {
            panic!("damage to a durable frame");
        };
        assert_eq!(
            (offset, past.len(), proof.offset, proof.durable_end),
            (at1, 1, at2, at2)
        );
    }

    #[test]
    fn a_bad_frame_nothing_claims_durable_is_a_torn_tail() {
        let (mut bytes, at1, at2) = three_frames(false);
        bytes[at1 as usize + 26] ^= 1;
        let file = file_with(&bytes);
        let mut w = FrameWalker::new(file.as_ref()).unwrap();
        assert!(matches!(w.step(at1, 1).unwrap(), Step::Bad { .. }));
        let TailState::Torn { offset, past, .. } = w.judge().unwrap() else {
            panic!("a torn tail");
        };
        assert_eq!(
            (offset, past.len(), past[0].offset, past[0].index),
            (at1, 1, at2, 2)
        );
        // A frame read with the wrong expected index is a mismatch, not a frame.
        assert!(matches!(
            w.step(at2, 7).unwrap(),
            Step::Bad {
                kind: CorruptionKind::Mismatch { .. }
            }
        ));
        let end2 = at2 + frame_bytes(5);
        assert_eq!(w.step(end2, 3).unwrap(), Step::End);
        assert_eq!(w.judge().unwrap(), TailState::Clean);
        assert_eq!(w.step(bytes.len() as u64, 3).unwrap(), Step::Eof);
    }

    #[test]
    fn a_zeroed_frame_with_a_durable_claim_past_it_is_damage() {
        let (mut bytes, at1, at2) = three_frames(true);
        // Frame 1 zeroed whole: it reads as the unwritten end, but frame 2 proves it was synced.
        bytes[at1 as usize..at2 as usize].fill(0);
        let file = file_with(&bytes);
        let mut w = FrameWalker::new(file.as_ref()).unwrap();
        assert_eq!(w.step(at1, 1).unwrap(), Step::End);
        assert!(matches!(
            w.judge().unwrap(),
            TailState::Damaged {
                kind: CorruptionKind::InvalidField {
                    field: "frame.body_bytes",
                    value: 0
                },
                ..
            }
        ));
    }

    #[test]
    fn a_seal_ends_the_walk() {
        let (mut bytes, _, at2) = three_frames(false);
        let end = at2 + frame_bytes(5);
        bytes[end as usize..end as usize + 24].copy_from_slice(&encode_seal(
            FrameSeed::UNSEEDED,
            3,
            end,
        ));
        let file = file_with(&bytes);
        let mut w = FrameWalker::new(file.as_ref()).unwrap();
        assert_eq!(w.step(end, 3).unwrap(), Step::Sealed);
        assert_eq!(w.judge().unwrap(), TailState::Sealed);
    }

    #[test]
    fn short_and_impossible_frames_are_bad_not_panics() {
        let mut bytes = vec![0u8; 64];
        bytes.extend_from_slice(&(FRAME_BODY_BYTES_MAX + 1).to_le_bytes());
        bytes.extend_from_slice(&[0xff; 20]);
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
        assert!(matches!(w.judge().unwrap(), TailState::Torn { .. }));
        assert_eq!(
            w.step(88, 0).unwrap(),
            Step::Bad {
                kind: CorruptionKind::Truncated {
                    needed: frame_bytes(100),
                    available: 6
                }
            }
        );
        assert_eq!(
            w.step(92, 0).unwrap(),
            Step::Bad {
                kind: CorruptionKind::Truncated {
                    needed: 24,
                    available: 2
                }
            }
        );
    }
}
