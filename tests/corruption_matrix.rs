//! The corruption matrix: for every kind of file a store holds (superblock slot 0, slot 1, the
//! manifest, the checkpoint, the open delta log, a closed delta log, a data file), damage a copy of
//! a clean store by flipping a bit at a seeded offset, truncating at a seeded length, or zeroing a
//! seeded range, then:
//!
//! - `fsck` names the damaged file, the offset and the exact kind of damage. The expected finding
//!   is computed independently, from the byte layouts and check orders of `design/FORMAT.md`
//!   (`tests/common/format_oracle.rs`), not by calling the decoders;
//! - `DurableRuntime::open` never panics: it recovers (a bad slot falls back to the other, a torn
//!   open-log tail is cut) or returns `Error::Corruption`, and `fsck` agrees with it: a refusal's
//!   exact (file, offset, kind) is one of `fsck`'s problems, a recovery reaches the epoch `fsck`
//!   predicted, and `verify` after it fails exactly when `fsck` found problems.
//!
//! `VELLUM_CORRUPTION_CASES` (default 3) sets the cases per file kind and damage kind;
//! `VELLUM_CORRUPTION_SEED` varies the seeds.

use std::path::PathBuf;

use vellum::codec::crc32c;
use vellum::inspect::{
    Finding, FindingKind, FsckOptions, LiveVersion, Report, Severity, fsck, load,
};
use vellum::io::{CrashMode, FaultStorage, Storage};
use vellum::{CorruptionKind, Error};

mod common;

use common::format_oracle::{
    SLOT, checkpoint_oracle, frames_of, log_header_oracle, log_stop, slot_oracle,
};
use common::image::{self, Image};
use common::{Rng, env_u64};

const DIR: &str = "/store";

fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

fn options() -> FsckOptions {
    common::fsck_options()
}

#[derive(Debug, Clone, Copy)]
enum Damage {
    Flip { offset: u64, bit: u8 },
    Truncate { len: u64 },
    Zero { start: u64, len: u64 },
}

impl Damage {
    fn apply(self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        match self {
            Damage::Flip { offset, bit } => out[offset as usize] ^= 1 << bit,
            Damage::Truncate { len } => out.truncate(len as usize),
            Damage::Zero { start, len } => {
                let end = (start + len).min(out.len() as u64) as usize;
                out[start as usize..end].fill(0);
            }
        }
        out
    }
}

/// The damage of kind `which` (0 flip, 1 truncate, 2 zero) at an offset `pick` chooses.
fn damage(which: u64, rng: &mut Rng, len: u64, pick: &mut dyn FnMut(&mut Rng) -> u64) -> Damage {
    match which {
        0 => Damage::Flip {
            offset: pick(rng),
            bit: rng.below(8) as u8,
        },
        1 => Damage::Truncate {
            len: rng.below(len),
        },
        _ => Damage::Zero {
            start: pick(rng),
            len: 1 + rng.below(512),
        },
    }
}

/// What one damaged copy showed.
struct Outcome {
    report: Report,
    damaged: Vec<u8>,
}

/// Damages `target` in a copy of `image`, runs fsck, then checks recovery against it.
fn run_case(image: &Image, target: &str, d: Damage, ctx: &str) -> Outcome {
    let fs = image.materialize();
    let damaged = d.apply(&image.files[target]);
    let path = dir().join(target);
    let f = fs.open(&path).expect("open target");
    f.set_len(damaged.len() as u64).expect("set_len");
    f.write_at(&damaged, 0).expect("write damage");
    f.sync_data().expect("sync");
    let report = fsck(&fs, &dir(), &options()).unwrap_or_else(|e| panic!("{ctx}: fsck: {e}"));
    agree_with_recovery(&fs, &report, ctx);
    Outcome { report, damaged }
}

fn is_data_file(name: &str) -> bool {
    name.starts_with("data-")
}

/// A problem recovery itself checks (the rest are node bytes, which only reads check).
fn refuses(f: &Finding) -> bool {
    f.severity == Severity::Problem
        && (!is_data_file(f.file_name())
            || matches!(f.kind, FindingKind::DataFileGap { .. })
            || f.corruption() == Some(&CorruptionKind::MissingFile))
}

fn agree_with_recovery(fs: &FaultStorage, report: &Report, ctx: &str) {
    match image::open(fs, &dir()) {
        Err(Error::Corruption(c)) => {
            let explained = report.findings.iter().any(|f| {
                let same_kind = match &f.kind {
                    FindingKind::Corruption { detail } => *detail == c.kind,
                    // Damage to durable frames: recovery names the damaged frame's own problem
                    // (zero bytes read as a zero length field).
                    FindingKind::DamagedDurableFrame { cause, .. } => {
                        cause.clone().unwrap_or(CorruptionKind::InvalidField {
                            field: "frame.body_bytes",
                            value: 0,
                        }) == c.kind
                    }
                    _ => false,
                };
                f.severity == Severity::Problem
                    && f.file == c.file
                    && f.offset == c.offset
                    && same_kind
            });
            assert!(
                explained,
                "{ctx}: recovery refused with {c}, which fsck does not report: {:#?}",
                report.findings
            );
        }
        // A file the manifest names is gone: opening it fails with the I/O error, and fsck must
        // have reported that file.
        Err(Error::Io { path, .. }) => assert!(
            report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Problem && f.file == path),
            "{ctx}: recovery could not open {}, which fsck does not report",
            path.display()
        ),
        Err(e) => panic!("{ctx}: recovery failed without a structured report: {e}"),
        Ok(rt) => {
            let refusing: Vec<_> = report.findings.iter().filter(|f| refuses(f)).collect();
            assert!(
                refusing.is_empty(),
                "{ctx}: recovery succeeded although fsck says it refuses: {refusing:#?}"
            );
            assert_eq!(
                report.summary.replayed_epoch,
                Some(rt.visible_epoch()),
                "{ctx}: fsck predicts the recovered epoch"
            );
            // The runtime checks node bytes only when it reads them: `verify` fails exactly when
            // fsck found a problem with a node (file-level problems, such as a data file cut
            // short where no live node was, may be healed by recovery growing the file).
            let verified = rt.verify();
            let node_problems = report
                .findings
                .iter()
                .any(|f| f.severity == Severity::Problem && f.node.is_some());
            assert_eq!(
                verified.is_ok(),
                !node_problems,
                "{ctx}: verify {verified:?} vs fsck {:#?}",
                report.findings
            );
            drop(rt);
        }
    }
}

fn findings_on<'r>(report: &'r Report, name: &str) -> Vec<&'r Finding> {
    report
        .findings
        .iter()
        .filter(|f| f.file_name() == name)
        .collect()
}

/// (severity, offset, kind) of each finding, for exact comparison.
fn triples(findings: &[&Finding]) -> Vec<(Severity, u64, FindingKind)> {
    let mut v: Vec<_> = findings
        .iter()
        .map(|f| (f.severity, f.offset, f.kind.clone()))
        .collect();
    v.sort_by_key(|t| (t.1, format!("{:?}", t.2)));
    v
}

fn corruption(detail: CorruptionKind) -> FindingKind {
    FindingKind::Corruption { detail }
}

struct Store {
    image: Image,
    live: Vec<LiveVersion>,
    manifest: vellum::meta::Manifest,
}

fn store(image: Image) -> Store {
    let fs = image.materialize();
    let report = fsck(&fs, &dir(), &options()).expect("fsck of the clean image");
    let unexpected: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::Leftover)
        .collect();
    assert!(unexpected.is_empty(), "the clean image: {unexpected:#?}");
    let insp = load(&fs, &dir(), &options()).expect("load");
    let manifest = insp.meta.manifest.clone().expect("manifest");
    Store {
        live: insp.model.live.values().copied().collect(),
        manifest,
        image,
    }
}

fn cases() -> u64 {
    env_u64("VELLUM_CORRUPTION_CASES", 3)
}

fn seed(base: u64) -> u64 {
    base ^ env_u64("VELLUM_CORRUPTION_SEED", 0)
}

#[test]
fn superblock_slots() {
    let s = store(common::image::clean_store(DIR, seed(1)).0);
    let orig = s.image.files["superblock"].clone();
    for slot in 0..2usize {
        let base = (slot * SLOT) as u64;
        for which in 0..3 {
            let mut rng = Rng::new(seed(10 + slot as u64 * 3 + which));
            for case in 0..cases() {
                let d = match which {
                    // Truncating the file inside slot 0 also removes slot 1.
                    1 => Damage::Truncate {
                        len: base + rng.below(SLOT as u64),
                    },
                    _ => damage(which, &mut rng, orig.len() as u64, &mut |r| {
                        base + r.below(SLOT as u64)
                    }),
                };
                let ctx = format!("slot {slot} {d:?} (case {case})");
                let out = run_case(&s.image, "superblock", d, &ctx);
                let expected: Vec<_> = (0..2)
                    .filter_map(|i| slot_oracle(&orig, &out.damaged, i))
                    .collect();
                let both = expected.len() == 2;
                let severity = if both {
                    Severity::Problem
                } else {
                    Severity::Warning
                };
                let want: Vec<_> = expected
                    .into_iter()
                    .map(|(offset, kind)| (severity, offset, corruption(kind)))
                    .collect();
                let got = triples(&findings_on(&out.report, "superblock"));
                assert_eq!(got, want, "{ctx}");
                assert_eq!(out.report.readable, !both, "{ctx}");
                assert_eq!(out.report.exit_code(false) == 2, both, "{ctx}");
            }
        }
    }
}

#[test]
fn manifest() {
    let s = store(common::image::clean_store(DIR, seed(2)).0);
    let name = s.image.name_where(|n| n.starts_with("manifest-"));
    let orig = s.image.files[&name].clone();
    let (bytes, crc) = (orig.len() as u64, crc32c(&orig));
    for which in 0..3 {
        let mut rng = Rng::new(seed(20 + which));
        for case in 0..cases() {
            let d = damage(which, &mut rng, bytes, &mut |r| r.below(bytes));
            let ctx = format!("{name} {d:?} (case {case})");
            let out = run_case(&s.image, &name, d, &ctx);
            let kind = if out.damaged.len() as u64 != bytes {
                CorruptionKind::Mismatch {
                    what: "manifest_bytes",
                    expected: bytes,
                    actual: out.damaged.len() as u64,
                }
            } else if out.damaged == orig {
                continue;
            } else {
                CorruptionKind::ChecksumMismatch {
                    expected: crc,
                    actual: crc32c(&out.damaged),
                }
            };
            let on = findings_on(&out.report, &name);
            assert!(!on.is_empty(), "{ctx}: no finding on the manifest");
            assert_eq!(
                (on[0].severity, on[0].offset, &on[0].kind),
                (Severity::Problem, 0, &corruption(kind)),
                "{ctx}"
            );
            assert!(on.iter().all(|f| f.severity == Severity::Problem), "{ctx}");
        }
    }
}

#[test]
fn checkpoint() {
    let s = store(common::image::clean_store(DIR, seed(3)).0);
    let ck = s.manifest.checkpoint.clone().expect("a checkpoint");
    assert!(ck.entries > 0 && ck.entries <= 4096, "one block");
    let orig = s.image.files[&ck.file].clone();
    let bytes = orig.len() as u64;
    for which in 0..3 {
        let mut rng = Rng::new(seed(30 + which));
        for case in 0..cases() {
            let d = damage(which, &mut rng, bytes, &mut |r| r.below(bytes));
            let ctx = format!("{} {d:?} (case {case})", ck.file);
            let out = run_case(&s.image, &ck.file, d, &ctx);
            if out.damaged == orig {
                continue;
            }
            let (offset, kind) = checkpoint_oracle(&out.damaged, ck.bytes, ck.crc32c, ck.entries);
            let on = findings_on(&out.report, &ck.file);
            assert!(!on.is_empty(), "{ctx}: no finding on the checkpoint");
            assert_eq!(
                (on[0].severity, on[0].offset, &on[0].kind),
                (Severity::Problem, offset, &corruption(kind)),
                "{ctx}: {on:#?}"
            );
        }
    }
}

/// Offsets in a log: some in the header, most in the frames, some past the last frame.
fn log_offset(r: &mut Rng, frames_end: u64, len: u64) -> u64 {
    match r.below(8) {
        0 => r.below(64),
        7 if len > frames_end => frames_end + r.below(len - frames_end),
        _ => 64 + r.below(frames_end - 64),
    }
}

#[test]
fn open_delta_log() {
    let s = store(common::image::clean_store(DIR, seed(4)).0);
    let name = s.manifest.delta_logs.last().expect("a log").file.clone();
    let orig = s.image.files[&name].clone();
    let frames = frames_of(&orig);
    assert!(frames.len() > 3, "the open log holds records");
    let frames_end = frames.last().map_or(64, |f| f.1.max(f.0 + 24));
    for which in 0..3 {
        let mut rng = Rng::new(seed(40 + which));
        for case in 0..cases() {
            let len = orig.len() as u64;
            let d = damage(which, &mut rng, len, &mut |r| {
                log_offset(r, frames_end, len)
            });
            let ctx = format!("{name} {d:?} (case {case})");
            let out = run_case(&s.image, &name, d, &ctx);
            let got = triples(&findings_on(&out.report, &name));
            // A damaged header is reported, and the frames are still walked.
            let mut want: Vec<_> = log_header_oracle(&orig, &out.damaged)
                .map(|(offset, kind)| (Severity::Problem, offset, corruption(kind)))
                .into_iter()
                .collect();
            if out.damaged.len() >= 64 {
                let stop = log_stop(&orig, &out.damaged, &frames);
                match (stop.next, stop.proof, stop.cause) {
                    // A whole frame past the stop claims it durable: damage (the store was
                    // closed cleanly, so its seal, if whole, claims every frame).
                    (Some(_), Some((proof_offset, proof_durable_end)), cause) => want.push((
                        Severity::Problem,
                        stop.offset,
                        FindingKind::DamagedDurableFrame {
                            cause,
                            proof_offset,
                            proof_durable_end,
                            frames_past: stop.past,
                        },
                    )),
                    (Some((next_offset, next_index)), None, cause) => want.push((
                        Severity::Info,
                        stop.offset,
                        FindingKind::FramesPastCut {
                            cause,
                            next_offset,
                            next_index,
                        },
                    )),
                    (None, _, Some(cause)) => {
                        want.push((Severity::Info, stop.offset, FindingKind::TornTail { cause }));
                    }
                    // Zero bytes, a seal or the file's end with nothing valid after it: the log
                    // looks cleanly shorter, which no check can tell from a shorter log.
                    (None, _, None) => {}
                }
            }
            want.sort_by_key(|t| (t.1, format!("{:?}", t.2)));
            assert_eq!(got, want, "{ctx}");
        }
    }
}

/// A store whose manifest names a closed log and the open one: a checkpoint stopped by a crash
/// after it rotated the log (K1) and before it published the checkpoint (K5).
fn store_with_a_closed_log() -> Store {
    let (clean, _) = common::image::clean_store(DIR, seed(5));
    for k in 1..200 {
        let fs = clean.materialize();
        let rt = image::open(&fs, &dir()).expect("open");
        let mut tx = rt.begin();
        tx.alloc(1, b"after the checkpoint").expect("alloc");
        tx.commit().expect("commit");
        fs.crash_after(k);
        let _ = rt.checkpoint();
        drop(rt);
        let crashed = fs.crash_with(CrashMode::KeepUnsynced);
        let insp = load(&crashed, &dir(), &options()).expect("load");
        let logs = insp.meta.manifest.map_or(0, |m| m.delta_logs.len());
        if logs == 2 {
            return store(Image::capture(&crashed, &dir()));
        }
    }
    panic!("no crash point left a closed log");
}

#[test]
fn closed_delta_log() {
    let s = store_with_a_closed_log();
    let log = s.manifest.delta_logs.first().expect("closed log").clone();
    assert!(log.end_epoch.is_some());
    let orig = s.image.files[&log.file].clone();
    let frames = frames_of(&orig);
    assert!(frames.len() > 3, "the closed log holds records");
    let len = orig.len() as u64;
    assert_eq!(Some(len), log.bytes, "closed logs end at their last frame");
    for which in 0..3 {
        let mut rng = Rng::new(seed(50 + which));
        for case in 0..cases() {
            let d = damage(which, &mut rng, len, &mut |r| log_offset(r, len, len));
            let ctx = format!("{} {d:?} (case {case})", log.file);
            let out = run_case(&s.image, &log.file, d, &ctx);
            let on = findings_on(&out.report, &log.file);
            if out.damaged == orig {
                // Zeros written over zeros (the header's reserved bytes): nothing to find.
                assert!(on.is_empty(), "{ctx}: {on:#?}");
                continue;
            }
            assert!(
                on.iter().all(|f| f.severity == Severity::Problem),
                "{ctx}: {on:#?}"
            );
            let want = match log_header_oracle(&orig, &out.damaged) {
                Some((offset, kind)) => Some((offset, corruption(kind))),
                None => {
                    let stop = log_stop(&orig, &out.damaged, &frames);
                    match (stop.cause, stop.next) {
                        (Some(cause), _) => Some((stop.offset, corruption(cause))),
                        (None, Some((next_offset, next_index))) => Some((
                            stop.offset,
                            FindingKind::FramesPastCut {
                                cause: None,
                                next_offset,
                                next_index,
                            },
                        )),
                        // Cut at a frame boundary: shorter than the manifest says.
                        (None, None) if stop.eof && stop.offset < len => Some((
                            0,
                            corruption(CorruptionKind::Mismatch {
                                what: "delta_logs.bytes",
                                expected: len,
                                actual: out.damaged.len() as u64,
                            }),
                        )),
                        // An end marker in place of the last frames: the records are missing,
                        // which the checks of the epochs report (the agreement check covers it).
                        (None, None) => None,
                    }
                }
            };
            if let Some((offset, kind)) = want {
                assert!(
                    on.iter().any(|f| f.offset == offset && f.kind == kind),
                    "{ctx}: expected {kind:?} at {offset}: {on:#?}"
                );
            } else {
                assert!(out.report.count(Severity::Problem) > 0, "{ctx}");
            }
        }
    }
}

#[test]
fn data_file() {
    let s = store(common::image::clean_store(DIR, seed(6)).0);
    let mut files: Vec<String> = s
        .image
        .files
        .keys()
        .filter(|n| is_data_file(n))
        .filter(|n| s.live.iter().any(|l| slot_file(l) == **n))
        .cloned()
        .collect();
    files.sort();
    assert!(files.len() >= 2, "live nodes in several data files");
    assert!(s.live.iter().any(|l| l.carried) && s.live.iter().any(|l| !l.carried));
    for which in 0..3 {
        let mut rng = Rng::new(seed(60 + which));
        for case in 0..cases() {
            let name = files[rng.below(files.len() as u64) as usize].clone();
            let orig = s.image.files[&name].clone();
            let len = orig.len() as u64;
            let here: Vec<&LiveVersion> = s.live.iter().filter(|l| slot_file(l) == name).collect();
            let d = damage(which, &mut rng, len, &mut |r| {
                // Half of the offsets inside a live node's bytes, half anywhere.
                let l = here[r.below(here.len() as u64) as usize];
                if r.below(2) == 0 && l.version.len > 0 {
                    l.version.location.offset + r.below(u64::from(l.version.len))
                } else {
                    r.below(len)
                }
            });
            let ctx = format!("{name} {d:?} (case {case})");
            let out = run_case(&s.image, &name, d, &ctx);
            let dlen = out.damaged.len() as u64;
            let (class, _) = vellum::alloc::parse_data_file_name(&name).expect("data file name");
            let window = options().class_window_bytes(class);
            // The runtime reads a slot through its whole window; recovery grows the file to the
            // end of every window it writes a carried payload into.
            let window_end = |offset: u64| (offset / window + 1) * window;
            let grown = here
                .iter()
                .filter(|l| l.carried)
                .map(|l| window_end(l.version.location.offset))
                .fold(dlen, u64::max);
            // A node's bytes as the runtime reads them: zeros past the file's end.
            let read = |offset: u64, len: u32| -> Vec<u8> {
                (offset..offset + u64::from(len))
                    .map(|i| out.damaged.get(i as usize).copied().unwrap_or(0))
                    .collect()
            };
            let mut want = Vec::new();
            for l in &here {
                let v = l.version;
                let loc = v.location;
                let slot = vellum::inspect::SlotView::new(loc, v.len);
                let need = window_end(loc.offset);
                let bytes = read(loc.offset, v.len);
                let node_start = loc.offset as usize;
                let changed = bytes[..] != orig[node_start..node_start + v.len as usize];
                let (severity, kind) = if l.carried {
                    if need <= dlen && !changed {
                        continue;
                    }
                    (
                        Severity::Info,
                        FindingKind::PayloadPending { location: slot },
                    )
                } else if need > grown {
                    let kind = FindingKind::SlotOutsideFiles {
                        location: slot,
                        file_bytes: Some(dlen),
                    };
                    (Severity::Problem, kind)
                } else if changed {
                    let detail = CorruptionKind::ChecksumMismatch {
                        expected: v.crc32c,
                        actual: crc32c(&bytes),
                    };
                    (Severity::Problem, corruption(detail))
                } else {
                    continue;
                };
                want.push((severity, loc.offset, kind));
            }
            if !dlen.is_multiple_of(window) {
                let detail = CorruptionKind::InvalidField {
                    field: "data file length",
                    value: dlen,
                };
                want.push((Severity::Problem, 0, corruption(detail)));
            }
            let named = s.manifest.data_files.iter().find(|f| f.file == name);
            if let Some(df) = named
                && (out.damaged.len() as u64) < df.bytes
            {
                let detail = CorruptionKind::Mismatch {
                    what: "data_files.bytes",
                    expected: df.bytes,
                    actual: out.damaged.len() as u64,
                };
                want.push((Severity::Problem, 0, corruption(detail)));
            }
            want.sort_by_key(|t| (t.1, format!("{:?}", t.2)));
            let got = triples(&findings_on(&out.report, &name));
            assert_eq!(got, want, "{ctx}");
        }
    }
}

fn slot_file(l: &LiveVersion) -> String {
    vellum::alloc::data_file_name(l.version.location.class, l.version.location.file)
}

/// Dropping a whole file: each kind the manifest names is reported missing by name.
#[test]
fn missing_files() {
    let s = store(common::image::clean_store(DIR, seed(7)).0);
    let named = [
        s.manifest
            .checkpoint
            .as_ref()
            .expect("checkpoint")
            .file
            .clone(),
        s.manifest.delta_logs[0].file.clone(),
        s.image.name_where(|n| n.starts_with("manifest-")),
        s.manifest
            .data_files
            .first()
            .expect("a named data file")
            .file
            .clone(),
    ];
    for name in named {
        let fs = s.image.materialize();
        fs.remove(&dir().join(&name)).expect("remove");
        let report = fsck(&fs, &dir(), &options()).expect("fsck");
        let missing = report.findings.iter().any(|f| {
            f.file_name() == name
                && f.severity == Severity::Problem
                && f.kind == corruption(CorruptionKind::MissingFile)
        });
        assert!(missing, "{name}: {:#?}", report.findings);
        agree_with_recovery(&fs, &report, &format!("without {name}"));
    }
    // Without the superblock the store is unreadable (exit 2), and the missing superblock is the
    // problem named; recovery refuses it with the same corruption.
    let fs = s.image.materialize();
    fs.remove(&dir().join("superblock")).expect("remove");
    let report = fsck(&fs, &dir(), &options()).expect("fsck");
    assert_eq!(report.exit_code(false), 2);
    assert!(
        report.findings.iter().any(|f| f.file_name() == "superblock"
            && f.severity == Severity::Problem
            && f.kind == corruption(CorruptionKind::MissingFile)),
        "{:#?}",
        report.findings
    );
    agree_with_recovery(&fs, &report, "without the superblock");
    // A hole in a class's data file numbers.
    let fs = s.image.materialize();
    let last = s.image.name_where(|n| n.starts_with("data-"));
    let (class, _) = vellum::alloc::parse_data_file_name(&last).expect("data name");
    let moved = vellum::alloc::data_file_name(class, 5);
    fs.rename(&dir().join(&last), &dir().join(&moved))
        .expect("rename");
    let report = fsck(&fs, &dir(), &options()).expect("fsck");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.severity == Severity::Problem
                && f.kind == FindingKind::DataFileGap { class, missing: 0 }),
        "{:#?}",
        report.findings
    );
    assert!(image::open(&fs, &dir()).is_err(), "recovery refuses it too");
}
