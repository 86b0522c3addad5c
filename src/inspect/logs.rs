//! Checking delta logs: the header against the manifest, every frame, every commit record, and
//! replaying the records into the [`Model`] (RV5 of `design/DURABILITY.md` §6).
//!
//! Invariants:
//! 1. The open (last) log is judged as recovery judges it, by the log reader's own rules: the
//!    frames up to the first one that does not decode are replayed. A stop that no valid frame
//!    past it claims durable is a torn tail, cut by recovery: `TornTail` (`Info`) with nothing
//!    valid past it, `FramesPastCut` (`Info`) with never-durable frames past it. A stop that a
//!    frame past it claims durable is damage to durable frames: `DamagedDurableFrame`
//!    (`Problem`; recovery refuses the store).
//! 2. A closed log was synced whole before its successor existed, so any bad frame in it is a
//!    `Problem` (recovery refuses the store). The walk then searches for the next valid frame and
//!    goes on from there, so damage further on is reported too.
//! 3. Every valid frame's record is decoded, including records recovery skips as already in the
//!    checkpoint (recovery decodes them too, and refuses the store if one does not decode).

use std::path::Path;

use serde::Serialize;

use super::finding::{FindingKind, Findings, Severity};
use super::frames::{FrameWalker, Step};
use super::model::Model;
use crate::error::{Corruption, CorruptionKind, Result};
use crate::io::{Storage, StorageFile};
use crate::log::{FRAME_BODY_OFFSET, LOG_HEADER_BYTES, LogHeader, TailState};
use crate::meta::DeltaLogRef;
use crate::runtime::CommitRecordRef;

/// Offset of `log_seq` in a log header (`design/FORMAT.md` §4).
const HEADER_LOG_SEQ_OFFSET: u64 = 16;
/// Offset of `start_epoch` in a log header.
const HEADER_START_EPOCH_OFFSET: u64 = 24;
/// Offset of the record's epoch within a frame: frame header, then the record header's field.
const RECORD_EPOCH_IN_FRAME: u64 = FRAME_BODY_OFFSET as u64 + 8;

/// How a log is judged.
#[derive(Debug, Clone, Copy)]
pub(crate) enum LogRole<'m> {
    /// A closed log the manifest names: synced whole, so any bad frame is a problem.
    Closed(&'m DeltaLogRef),
    /// The manifest's last log: recovery cuts its tail at the first bad frame.
    Open(&'m DeltaLogRef),
    /// A log file found in the directory without a trusted manifest to judge it by: checked on its
    /// own, its tail judged like an open log's, its records not replayed.
    Standalone,
}

/// What the walk of one log found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LogSummary {
    /// The file name.
    pub file: String,
    /// True for the log recovery cuts (the manifest's last).
    pub open: bool,
    /// The file's length.
    pub bytes: u64,
    /// Valid frames before the point where replay stops.
    pub frames: u64,
    /// Where replay stops: the end of the last valid frame (64 if there is none).
    pub valid_end: u64,
    /// Epoch of the first record that decoded.
    pub first_epoch: Option<u64>,
    /// Epoch of the last record that decoded.
    pub last_epoch: Option<u64>,
}

/// Checks the log at `path` in `role`, replaying its records into `model` when given.
pub(crate) fn check_log(
    storage: &dyn Storage,
    path: &Path,
    role: LogRole<'_>,
    model: Option<&mut Model>,
    findings: &mut Findings,
) -> LogSummary {
    let mut summary = LogSummary {
        file: file_name(path),
        open: matches!(role, LogRole::Open(_)),
        valid_end: LOG_HEADER_BYTES as u64,
        ..LogSummary::default()
    };
    match storage.exists(path) {
        Ok(true) => {}
        Ok(false) => {
            let c = Corruption {
                file: path.to_path_buf(),
                offset: 0,
                kind: CorruptionKind::MissingFile,
            };
            findings.corruption(Severity::Problem, c, "a delta log the manifest names");
            return summary;
        }
        Err(e) => {
            findings.error(Severity::Problem, path, e, "delta log");
            return summary;
        }
    }
    let file = match storage.open_read_only(path) {
        Ok(f) => f,
        Err(e) => {
            findings.error(Severity::Problem, path, e, "delta log");
            return summary;
        }
    };
    let mut walk = Walk {
        path,
        role,
        model,
        findings,
        summary: &mut summary,
    };
    if let Err(e) = walk.run(file.as_ref()) {
        walk.findings
            .error(Severity::Problem, path, e, "reading the delta log");
    }
    summary
}

struct Walk<'a, 'm> {
    path: &'a Path,
    role: LogRole<'m>,
    model: Option<&'a mut Model>,
    findings: &'a mut Findings,
    summary: &'a mut LogSummary,
}

impl Walk<'_, '_> {
    fn run(&mut self, file: &dyn StorageFile) -> Result<()> {
        let mut walker = FrameWalker::new(file)?;
        self.summary.bytes = walker.len();
        self.header(file)?;
        if walker.len() < LOG_HEADER_BYTES as u64 {
            return Ok(());
        }
        let mut offset = LOG_HEADER_BYTES as u64;
        let mut index = 0u64;
        // Frames after a resumption (past damage in a closed log) are checked but do not count
        // towards the replayed prefix.
        let mut resumed = false;
        loop {
            let step = walker.step(offset, index)?;
            match step {
                Step::Frame {
                    offset: at,
                    body,
                    end,
                    ..
                } => {
                    self.record(&body, at);
                    if !resumed {
                        self.summary.frames += 1;
                        self.summary.valid_end = end;
                    }
                    offset = end;
                    index += 1;
                }
                Step::Eof | Step::Sealed => return Ok(()),
                Step::End | Step::Bad { .. } => {
                    let tail = walker.judge()?;
                    match self.stop(tail) {
                        Some((next_offset, next_index)) => {
                            (offset, index, resumed) = (next_offset, next_index, true);
                        }
                        None => return Ok(()),
                    }
                }
            }
        }
    }

    /// Reads and checks the header; a bad header is reported and the frames are still walked.
    fn header(&mut self, file: &dyn StorageFile) -> Result<()> {
        let mut buf = [0u8; LOG_HEADER_BYTES];
        let n = file.read_at(&mut buf, 0)?;
        let header = match LogHeader::decode(buf.get(..n).unwrap_or_default(), self.path) {
            Ok(h) => h,
            Err(e) => {
                let what = "delta log header (recovery refuses the store)";
                self.findings.error(Severity::Problem, self.path, e, what);
                return Ok(());
            }
        };
        let reference = match self.role {
            LogRole::Closed(l) | LogRole::Open(l) => l,
            LogRole::Standalone => return Ok(()),
        };
        let checks = [
            (
                HEADER_LOG_SEQ_OFFSET,
                "log_header.log_seq",
                reference.seq,
                header.log_seq,
            ),
            (
                HEADER_START_EPOCH_OFFSET,
                "log_header.start_epoch",
                reference.start_epoch,
                header.start_epoch,
            ),
        ];
        for (offset, what, expected, actual) in checks {
            if expected != actual {
                let detail = CorruptionKind::Mismatch {
                    what,
                    expected,
                    actual,
                };
                self.findings.push(
                    Severity::Problem,
                    self.path,
                    offset,
                    FindingKind::Corruption { detail },
                    format!("delta log header: {what} is {actual}, the manifest says {expected}"),
                );
            }
        }
        Ok(())
    }

    /// Decodes, checks and replays the record in the frame at `frame_offset`.
    fn record(&mut self, body: &[u8], frame_offset: u64) {
        let record =
            match CommitRecordRef::decode(body, self.path, frame_offset + FRAME_BODY_OFFSET as u64)
            {
                Ok(r) => r,
                Err(e) => {
                    let what = "commit record (recovery refuses the store)";
                    self.findings.error(Severity::Problem, self.path, e, what);
                    return;
                }
            };
        let s = &mut *self.summary;
        s.first_epoch.get_or_insert(record.epoch);
        s.last_epoch = Some(record.epoch);
        if let LogRole::Closed(l) | LogRole::Open(l) = self.role {
            let end = l.end_epoch.unwrap_or(u64::MAX);
            if record.epoch < l.start_epoch || record.epoch > end {
                let detail = CorruptionKind::InvalidField {
                    field: "commit_record.epoch",
                    value: record.epoch,
                };
                self.findings.push(
                    Severity::Problem,
                    self.path,
                    frame_offset + RECORD_EPOCH_IN_FRAME,
                    FindingKind::Corruption { detail },
                    format!(
                        "commit record of epoch {} lies outside the log's epochs {}..={}",
                        record.epoch,
                        l.start_epoch,
                        l.end_epoch.map_or("open".to_owned(), |e| e.to_string())
                    ),
                );
            }
        }
        if let Some(model) = self.model.as_deref_mut() {
            model.apply(&record, self.path, frame_offset, self.findings);
        }
    }

    /// Reports where the scan stopped, as `tail` judges it; returns where the walk goes on (the
    /// first valid frame past the stop of a closed log), if anywhere.
    fn stop(&mut self, tail: TailState) -> Option<(u64, u64)> {
        let (offset, kind, past, proof) = match tail {
            TailState::Clean | TailState::Sealed => return None,
            TailState::Torn { offset, kind, past } => (offset, kind, past, None),
            TailState::Damaged {
                offset,
                kind,
                past,
                proof,
            } => (offset, kind, past, Some(proof)),
        };
        // A zero length field where a frame was due: reported without a decoder cause.
        let cause = match kind {
            CorruptionKind::InvalidField {
                field: "frame.body_bytes",
                value: 0,
            } => None,
            kind => Some(kind),
        };
        let next = past.first().map(|p| (p.offset, p.index));
        if let LogRole::Closed(_) = self.role {
            self.closed_stop(offset, cause, next);
            return next;
        }
        match (proof, next) {
            (Some(proof), _) => {
                let message = format!(
                    "replay stops at {}, but the valid frame at offset {} claims every frame up \
                     to offset {} durable: damage to synced, possibly acknowledged, frames. \
                     Recovery refuses the store; RecoveryMode::TruncateDamagedLog cuts the log \
                     here and drops the {} valid frames past it",
                    why(cause.as_ref()),
                    proof.offset,
                    proof.durable_end,
                    past.len()
                );
                let kind = FindingKind::DamagedDurableFrame {
                    cause,
                    proof_offset: proof.offset,
                    proof_durable_end: proof.durable_end,
                    frames_past: past.len() as u64,
                };
                self.findings
                    .push(Severity::Problem, self.path, offset, kind, message);
            }
            (None, Some((next_offset, next_index))) => {
                let message = format!(
                    "replay stops at {}; {} valid frames follow (the first at offset \
                     {next_offset}), none of which claims it durable: an unsynced batch torn by \
                     a crash, never acknowledged; recovery cuts the log here",
                    why(cause.as_ref()),
                    past.len()
                );
                let kind = FindingKind::FramesPastCut {
                    cause,
                    next_offset,
                    next_index,
                };
                self.findings
                    .push(Severity::Info, self.path, offset, kind, message);
            }
            (None, None) => {
                let cause = cause.unwrap_or(CorruptionKind::InvalidField {
                    field: "frame.body_bytes",
                    value: 0,
                });
                let message = format!(
                    "the log ends in a frame that does not decode ({cause}); normal after a \
                     crash, recovery cuts the log here"
                );
                self.findings.push(
                    Severity::Info,
                    self.path,
                    offset,
                    FindingKind::TornTail { cause },
                    message,
                );
            }
        }
        None
    }

    /// A closed log was synced whole, so any stop before its end is a problem: the bad frame
    /// itself, and the valid frame after it if there is one (the walk goes on from there).
    fn closed_stop(
        &mut self,
        offset: u64,
        cause: Option<CorruptionKind>,
        next: Option<(u64, u64)>,
    ) {
        let what =
            "frame of a closed log (closed logs are synced whole; recovery refuses the store)";
        let kind = cause.clone().unwrap_or(CorruptionKind::InvalidField {
            field: "frame.body_bytes",
            value: 0,
        });
        let c = Corruption {
            file: self.path.to_path_buf(),
            offset,
            kind,
        };
        self.findings.corruption(Severity::Problem, c, what);
        if let Some((next_offset, next_index)) = next {
            let message = format!(
                "closed log: replay stops at {}, and a valid frame (index {next_index}) follows \
                 at offset {next_offset}; recovery refuses the store. Checking goes on from that \
                 frame",
                why(cause.as_ref())
            );
            let kind = FindingKind::FramesPastCut {
                cause,
                next_offset,
                next_index,
            };
            self.findings
                .push(Severity::Problem, self.path, offset, kind, message);
        }
    }
}

/// How a stop reads in a message.
fn why(cause: Option<&CorruptionKind>) -> String {
    cause.map_or("zero bytes where a frame was due".to_owned(), |k| {
        format!("a bad frame ({k})")
    })
}

/// Checks a closed log's recorded length and last epoch once it was walked.
pub(crate) fn check_closed_end(
    l: &DeltaLogRef,
    path: &Path,
    summary: &LogSummary,
    findings: &mut Findings,
) {
    if let Some(bytes) = l.bytes
        && bytes != summary.bytes
    {
        let detail = CorruptionKind::Mismatch {
            what: "delta_logs.bytes",
            expected: bytes,
            actual: summary.bytes,
        };
        findings.push(
            Severity::Problem,
            path,
            0,
            FindingKind::Corruption { detail },
            format!(
                "closed log is {} bytes, the manifest says {bytes}",
                summary.bytes
            ),
        );
    }
    if let (Some(end), Some(last)) = (l.end_epoch, summary.last_epoch)
        && end != last
    {
        let detail = CorruptionKind::Mismatch {
            what: "delta_logs.end_epoch",
            expected: end,
            actual: last,
        };
        findings.push(
            Severity::Problem,
            path,
            summary.valid_end,
            FindingKind::Corruption { detail },
            format!(
                "closed log's last record has epoch {last}, the manifest says it ends at {end}"
            ),
        );
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned()
}
