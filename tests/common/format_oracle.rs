//! Oracles for the corruption tests: the first check a decoder fails on damaged bytes, written
//! from the layouts and check orders of `design/FORMAT.md`, independently of the decoders
//! themselves, so a test compares the decoders with the document rather than with themselves.

use vellum::CorruptionKind;
use vellum::codec::crc32c;

/// The little-endian u32 at `at`.
pub fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// The little-endian u64 at `at`.
pub fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Bytes of a superblock slot.
pub const SLOT: usize = 4096;

/// §3 slot decoding: magic, version, slot_bytes, then the CRC over [0, 4092).
pub fn slot_oracle(orig: &[u8], damaged: &[u8], slot: usize) -> Option<(u64, CorruptionKind)> {
    let base = slot * SLOT;
    let o = &orig[base..base + SLOT];
    let d = damaged.get(base..).unwrap_or_default();
    let d = &d[..d.len().min(SLOT)];
    let at = |off: usize| (base + off) as u64;
    if d == o {
        return None;
    }
    if d.len() < SLOT {
        let kind = CorruptionKind::Truncated {
            needed: SLOT as u64,
            available: d.len() as u64,
        };
        return Some((at(0), kind));
    }
    if &d[..8] != b"VELSUPER" {
        let found = u64_at(d, 0);
        return Some((at(0), CorruptionKind::BadMagic { found }));
    }
    if u32_at(d, 8) != 3 {
        let found = u32_at(d, 8);
        return Some((at(8), CorruptionKind::UnsupportedVersion { found }));
    }
    if u32_at(d, 12) != SLOT as u32 {
        let kind = CorruptionKind::InvalidField {
            field: "slot_bytes",
            value: u64::from(u32_at(d, 12)),
        };
        return Some((at(12), kind));
    }
    let (expected, actual) = (u32_at(d, 4092), crc32c(&d[..4092]));
    assert_ne!(
        expected, actual,
        "damage left a different slot with a valid CRC"
    );
    Some((
        at(4092),
        CorruptionKind::ChecksumMismatch { expected, actual },
    ))
}

/// §4 header decoding: length, magic, version, header_bytes, then the CRC over [0, 60).
pub fn log_header_oracle(orig: &[u8], d: &[u8]) -> Option<(u64, CorruptionKind)> {
    if d.len() >= 64 && d[..64] == orig[..64] {
        return None;
    }
    if d.len() < 64 {
        let kind = CorruptionKind::Truncated {
            needed: 64,
            available: d.len() as u64,
        };
        return Some((0, kind));
    }
    if &d[..8] != b"VELDELTA" {
        return Some((
            0,
            CorruptionKind::BadMagic {
                found: u64_at(d, 0),
            },
        ));
    }
    if !(2..=3).contains(&u32_at(d, 8)) {
        let found = u32_at(d, 8);
        return Some((8, CorruptionKind::UnsupportedVersion { found }));
    }
    if u32_at(d, 12) != 64 {
        let kind = CorruptionKind::InvalidField {
            field: "log_header.header_bytes",
            value: u64::from(u32_at(d, 12)),
        };
        return Some((12, kind));
    }
    let (expected, actual) = (u32_at(d, 60), crc32c(&d[..60]));
    Some((60, CorruptionKind::ChecksumMismatch { expected, actual }))
}

/// One replay rule application (§4 "Replay") at `o` expecting `index`.
pub enum Rule {
    /// The end of the file.
    Eof,
    /// Zero bytes: the unwritten end (or, with valid frames past it, a lost frame).
    End,
    /// A valid seal.
    Sealed,
    /// A frame that does not decode.
    Bad(CorruptionKind),
    /// A valid frame ending at this offset, claiming `durable_end`.
    Frame(u64, u64),
}

/// What a log's frame CRCs cover before the frame's own bytes: for format version 3, its
/// `log_seq` (header bytes [16, 24), little-endian as stored); for version 2, nothing.
fn seed_bytes(log: &[u8]) -> &[u8] {
    if log.len() >= 24 && u32_at(log, 8) >= 3 {
        &log[16..24]
    } else {
        &[]
    }
}

/// The CRC32C of the seed bytes of `log`, then a frame's bytes [0, 4) and [8, end).
fn frame_crc(log: &[u8], f: &[u8]) -> u32 {
    let mut covered = seed_bytes(log).to_vec();
    covered.extend_from_slice(&f[..4]);
    covered.extend_from_slice(&f[8..]);
    crc32c(&covered)
}

/// §4 rule 3: a zero length field; the 24 bytes are the unwritten end, a seal, or damage.
fn zero_length_rule(seed_log: &[u8], d: &[u8], o: u64, index: u64) -> Rule {
    let h = &d[o as usize..(o as usize + 24).min(d.len())];
    if h.iter().all(|&b| b == 0) {
        return Rule::End;
    }
    if h.len() < 24 {
        return Rule::Bad(CorruptionKind::Truncated {
            needed: 24,
            available: h.len() as u64,
        });
    }
    let (stored, computed) = (u32_at(h, 4), frame_crc(seed_log, h));
    if stored != computed {
        return Rule::Bad(CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        });
    }
    if u64_at(h, 8) != index {
        return Rule::Bad(CorruptionKind::Mismatch {
            what: "frame.frame_index",
            expected: index,
            actual: u64_at(h, 8),
        });
    }
    if u64_at(h, 16) != o {
        return Rule::Bad(CorruptionKind::Mismatch {
            what: "seal.durable_end",
            expected: o,
            actual: u64_at(h, 16),
        });
    }
    Rule::Sealed
}

pub fn replay_rule(d: &[u8], o: u64, index: u64) -> Rule {
    replay_rule_seeded(d, d, o, index)
}

/// [`replay_rule`] with the frame CRCs seeded from the header of `seed_log`: the original log of a
/// damaged one. A reader whose header fails still walks the frames with the seed of the log its
/// name says (`inspect/frames.rs`), which is the original's.
pub fn replay_rule_seeded(seed_log: &[u8], d: &[u8], o: u64, index: u64) -> Rule {
    let len = d.len() as u64;
    if o == len {
        return Rule::Eof;
    }
    if len - o < 4 {
        if d[o as usize..].iter().all(|&b| b == 0) {
            return Rule::End;
        }
        return Rule::Bad(CorruptionKind::Truncated {
            needed: 24,
            available: len - o,
        });
    }
    let body = u64::from(u32_at(d, o as usize));
    if body == 0 {
        return zero_length_rule(seed_log, d, o, index);
    }
    if body > 64 << 20 {
        return Rule::Bad(CorruptionKind::InvalidField {
            field: "frame.body_bytes",
            value: body,
        });
    }
    let total = (24 + body).next_multiple_of(8);
    if o + total > len {
        return Rule::Bad(CorruptionKind::Truncated {
            needed: total,
            available: len - o,
        });
    }
    let f = &d[o as usize..(o + total) as usize];
    let (stored, computed) = (u32_at(f, 4), frame_crc(seed_log, f));
    if stored != computed {
        return Rule::Bad(CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        });
    }
    let found = u64_at(f, 8);
    if found != index {
        return Rule::Bad(CorruptionKind::Mismatch {
            what: "frame.frame_index",
            expected: index,
            actual: found,
        });
    }
    let durable_end = u64_at(f, 16);
    if !(64..=o).contains(&durable_end) {
        return Rule::Bad(CorruptionKind::InvalidField {
            field: "frame.durable_end",
            value: durable_end,
        });
    }
    Rule::Frame(o + total, durable_end)
}

/// The frames of an undamaged log: (start, end, durable_end); a seal after them is listed last
/// as (start, start, start).
pub fn frames_of(log: &[u8]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let (mut o, mut i) = (64u64, 0u64);
    loop {
        match replay_rule(log, o, i) {
            Rule::Frame(end, claim) => {
                out.push((o, end, claim));
                o = end;
                i += 1;
            }
            Rule::Sealed => {
                out.push((o, o, o));
                return out;
            }
            _ => return out,
        }
    }
}

/// Where replay of the damaged log stops, why (`None`: zero bytes or the end of the file), and
/// what lies past it: the original frames (and seal) after the stop that the damage left whole,
/// and the largest durable claim among them.
pub struct LogStop {
    /// Where replay stops.
    pub offset: u64,
    /// Why (`None`: zero bytes, the end of the file, or a seal).
    pub cause: Option<CorruptionKind>,
    /// True when it stopped at the end of the file.
    pub eof: bool,
    /// True when it stopped at a valid seal.
    pub sealed: bool,
    /// The first original frame after the stop that the damage left whole: (offset, index).
    pub next: Option<(u64, u64)>,
    /// How many original frames (and seal) past the stop the damage left whole.
    pub past: u64,
    /// The whole frame past the stop with the largest durable claim, if that claim passes the
    /// stop: (offset, durable_end). Replay then reports damage to durable frames.
    pub proof: Option<(u64, u64)>,
}

pub fn log_stop(orig: &[u8], d: &[u8], frames: &[(u64, u64, u64)]) -> LogStop {
    let (mut o, mut i) = (64u64, 0u64);
    let (cause, eof, sealed) = loop {
        match replay_rule_seeded(orig, d, o, i) {
            Rule::Frame(end, _) => (o, i) = (end, i + 1),
            Rule::Eof => break (None, true, false),
            Rule::End => break (None, false, false),
            Rule::Sealed => break (None, false, true),
            Rule::Bad(kind) => break (Some(kind), false, false),
        }
    };
    let whole: Vec<(usize, &(u64, u64, u64))> = if sealed {
        Vec::new()
    } else {
        frames
            .iter()
            .enumerate()
            .filter(|(_, (start, end, _))| {
                // A seal is 24 bytes, though it ends where it starts in the list.
                let end = (*end).max(start + 24);
                *start > o
                    && end <= d.len() as u64
                    && d[*start as usize..end as usize] == orig[*start as usize..end as usize]
            })
            .collect()
    };
    let next = whole.first().map(|(j, (start, _, _))| (*start, *j as u64));
    let proof = whole
        .iter()
        .map(|(_, (start, _, claim))| (*start, *claim))
        .max_by_key(|(_, claim)| *claim)
        .filter(|(_, claim)| *claim > o);
    LogStop {
        offset: o,
        cause,
        eof,
        sealed,
        next,
        past: whole.len() as u64,
        proof,
    }
}

/// §7 reading, for a checkpoint of at most one block: the first problem.
pub fn checkpoint_oracle(d: &[u8], bytes: u64, crc: u32, entries: u64) -> (u64, CorruptionKind) {
    let len = d.len() as u64;
    if len != bytes {
        let kind = CorruptionKind::Mismatch {
            what: "checkpoint.bytes",
            expected: bytes,
            actual: len,
        };
        return (0, kind);
    }
    if &d[..8] != b"VELCHKPT" {
        return (
            0,
            CorruptionKind::BadMagic {
                found: u64_at(d, 0),
            },
        );
    }
    if !(2..=4).contains(&u32_at(d, 8)) {
        let found = u32_at(d, 8);
        return (8, CorruptionKind::UnsupportedVersion { found });
    }
    if u32_at(d, 12) != 64 {
        let kind = CorruptionKind::InvalidField {
            field: "checkpoint_header.header_bytes",
            value: u64::from(u32_at(d, 12)),
        };
        return (12, kind);
    }
    let (stored, computed) = (u32_at(d, 60), crc32c(&d[..60]));
    if stored != computed {
        let kind = CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        };
        return (60, kind);
    }
    // Stores write version 4; an older version behind a good header CRC is not damage.
    assert_eq!(u32_at(d, 8), 4, "a version 4 checkpoint");
    // Version 4 block header: count 64, entry_bytes 68, crc32c 72, reserved 76,
    // first_entry_index 80; entries from 88.
    let count = u64::from(u32_at(d, 64));
    let count_bad = CorruptionKind::InvalidField {
        field: "checkpoint_block.count",
        value: count,
    };
    if count == 0 || count > 4096 {
        return (64, count_bad);
    }
    let first = u64_at(d, 80);
    if first != 0 {
        let kind = CorruptionKind::Mismatch {
            what: "checkpoint_block.first_entry_index",
            expected: 0,
            actual: first,
        };
        return (80, kind);
    }
    if count > entries {
        return (64, count_bad);
    }
    let need = u64::from(u32_at(d, 68));
    if !(count * 2..=count * 40).contains(&need) {
        let kind = CorruptionKind::InvalidField {
            field: "checkpoint_block.entry_bytes",
            value: need,
        };
        return (68, kind);
    }
    if u32_at(d, 76) != 0 {
        let kind = CorruptionKind::InvalidField {
            field: "checkpoint_block.reserved",
            value: u64::from(u32_at(d, 76)),
        };
        return (76, kind);
    }
    if need > len - 88 {
        let kind = CorruptionKind::Truncated {
            needed: need,
            available: len - 88,
        };
        return (88, kind);
    }
    // The block CRC covers the header's count and entry_bytes, then the entries.
    let covered = [&d[64..72], &d[88..(88 + need) as usize]].concat();
    let (stored, computed) = (u32_at(d, 72), crc32c(&covered));
    if stored != computed {
        let kind = CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        };
        return (72, kind);
    }
    // Entries that pass their block's CRC are the writer's, and the writer's entries decode.
    let f = (88 + need) as usize;
    if f + 32 > d.len() {
        let kind = CorruptionKind::Truncated {
            needed: 32,
            available: (d.len() - f) as u64,
        };
        return (f as u64, kind);
    }
    if &d[f..f + 8] != b"VELCKEND" {
        return (
            f as u64,
            CorruptionKind::BadMagic {
                found: u64_at(d, f),
            },
        );
    }
    let (stored, computed) = (u32_at(d, f + 28), crc32c(&d[f..f + 28]));
    if stored != computed {
        let kind = CorruptionKind::ChecksumMismatch {
            expected: stored,
            actual: computed,
        };
        return (f as u64 + 28, kind);
    }
    let kind = CorruptionKind::Mismatch {
        what: "checkpoint.crc32c",
        expected: u64::from(crc),
        actual: u64::from(crc32c(d)),
    };
    (0, kind)
}
