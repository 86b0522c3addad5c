//! Replay rules that no byte-level check catches: frames whose CRC is valid but whose commit
//! records recovery refuses (a record that does not decode, an epoch that skips, an UPDATE or
//! RETIRE of a node that is not live, a NEW on a handle in use). `fsck` reports every one of them
//! in one run, each with the kind and offset recovery's error carries, and recovery refuses the
//! store with the first.

use std::path::Path;

use vellum::inspect::{FindingKind, Severity, fsck, load};
use vellum::io::Storage;
use vellum::log::{FRAME_BODY_OFFSET, encode_frame, read_header};
use vellum::object_table::NodeId;
use vellum::runtime::{CommitRecord, NodeVersion, Op};
use vellum::{CorruptionKind, Error};

mod common;

const DIR: &str = "/store";

#[test]
fn every_refused_record_is_reported_with_recoverys_kind() {
    let (image, _) = common::image::clean_store(DIR, 31);
    let fs = image.materialize();
    let dir = Path::new(DIR);
    let insp = load(&fs, dir, &common::fsck_options()).expect("load");
    let epoch = insp.model.last_epoch;
    let live: Vec<_> = insp.model.live.values().copied().collect();
    let open = insp.logs.last().expect("open log").clone();
    let log = dir.join(&open.file);

    let update = |l: &vellum::inspect::LiveVersion| {
        Op::Update(NodeVersion {
            id: l.id,
            location: l.version.location,
            len: l.version.len,
            crc32c: l.version.crc32c,
            kind: l.version.kind,
            payload: None,
        })
    };
    let a = live[0];
    // An id on a live node's handle with another tag: stale, so not live.
    let stale = NodeId::new(a.id.shard(), a.id.handle(), a.id.tag() ^ 0x100).expect("id");
    let mut not_decodable = CommitRecord {
        epoch: epoch + 1,
        ops: vec![update(&a)],
    }
    .encode()
    .expect("encode");
    not_decodable[0] = 9;
    let bodies = [
        not_decodable,
        // Skips epochs epoch+1..epoch+4.
        CommitRecord {
            epoch: epoch + 5,
            ops: vec![update(&a)],
        }
        .encode()
        .expect("encode"),
        CommitRecord {
            epoch: epoch + 6,
            ops: vec![Op::Retire(stale)],
        }
        .encode()
        .expect("encode"),
        CommitRecord {
            epoch: epoch + 7,
            ops: vec![Op::New(match update(&live[1]) {
                Op::Update(mut v) => {
                    v.id =
                        NodeId::new(v.id.shard(), v.id.handle(), v.id.tag() ^ 0x200).expect("id");
                    v
                }
                _ => unreachable!("built as an update"),
            })],
        }
        .encode()
        .expect("encode"),
    ];
    let file = fs.open(&log).expect("open log");
    let seed = read_header(file.as_ref()).expect("header").frame_seed();
    let mut offset = open.valid_end;
    let mut offsets = Vec::new();
    for (i, body) in bodies.iter().enumerate() {
        let frame = encode_frame(seed, open.frames + i as u64, body).expect("frame");
        file.write_at(&frame, offset).expect("append");
        offsets.push(offset);
        offset += frame.len() as u64;
    }
    file.sync_data().expect("sync");

    let report = fsck(&fs, dir, &common::fsck_options()).expect("fsck");
    let on_log: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.file == log)
        .map(|f| (f.severity, f.offset, f.kind.clone()))
        .collect();
    let corruption = |detail| FindingKind::Corruption { detail };
    let second_id = NodeId::new(
        live[1].id.shard(),
        live[1].id.handle(),
        live[1].id.tag() ^ 0x200,
    )
    .expect("id");
    let want = vec![
        (
            Severity::Problem,
            offsets[0] + FRAME_BODY_OFFSET as u64,
            corruption(CorruptionKind::InvalidField {
                field: "commit_record.record_type",
                value: 9,
            }),
        ),
        (
            Severity::Problem,
            offsets[1],
            corruption(CorruptionKind::Mismatch {
                what: "commit_record.epoch",
                expected: epoch + 1,
                actual: epoch + 5,
            }),
        ),
        (
            Severity::Problem,
            offsets[2],
            corruption(CorruptionKind::InvalidField {
                field: "op.node_id",
                value: stale.raw(),
            }),
        ),
        (
            Severity::Problem,
            offsets[3],
            corruption(CorruptionKind::InvalidField {
                field: "op.node_id",
                value: second_id.raw(),
            }),
        ),
    ];
    assert_eq!(on_log, want, "{:#?}", report.findings);
    assert_eq!(report.exit_code(false), 1);

    match common::image::open(&fs, dir) {
        Err(Error::Corruption(c)) => {
            assert_eq!(
                (c.file, c.offset),
                (log, offsets[0] + FRAME_BODY_OFFSET as u64)
            );
            assert_eq!(
                c.kind,
                CorruptionKind::InvalidField {
                    field: "commit_record.record_type",
                    value: 9
                }
            );
        }
        other => panic!("recovery must refuse the first bad record, got {other:?}"),
    }
}
