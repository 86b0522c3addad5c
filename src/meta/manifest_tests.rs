//! Unit tests of the manifest: golden bytes, validation rules, decoding errors.

use super::*;
use crate::error::Corruption;

fn sample() -> Manifest {
    Manifest {
        seq: 2,
        layout: Layout {
            file_bytes_max: 256 << 20,
            window_bytes: 16 << 20,
        },
        checkpoint: Some(CheckpointRef {
            file: "checkpoint-0000000000000001.vckp".into(),
            epoch: 40,
            entries: 1000,
            bytes: 65536,
            crc32c: 0xdead_beef,
        }),
        delta_logs: vec![
            DeltaLogRef {
                file: "log-0000000000000001.vlog".into(),
                seq: 1,
                start_epoch: 0,
                end_epoch: Some(40),
                bytes: Some(8192),
            },
            DeltaLogRef {
                file: "log-0000000000000002.vlog".into(),
                seq: 2,
                start_epoch: 41,
                end_epoch: None,
                bytes: None,
            },
        ],
        data_files: vec![
            DataFileRef {
                class: 0,
                seq: 1,
                file: "data-00-0000000000000001.vdat".into(),
                bytes: 1 << 20,
            },
            DataFileRef {
                class: 3,
                seq: 2,
                file: "data-03-0000000000000002.vdat".into(),
                bytes: 4 << 20,
            },
        ],
        counters: Counters {
            next_log_seq: 3,
            next_checkpoint_seq: 2,
            next_data_seq: 3,
        },
    }
}

/// The sample manifest's bytes, pinned: changing the encoding breaks this test on purpose.
const GOLDEN: &str = r#"{
  "format": "vellum-manifest",
  "version": 2,
  "seq": 2,
  "layout": {
    "file_bytes_max": 268435456,
    "window_bytes": 16777216
  },
  "checkpoint": {
    "file": "checkpoint-0000000000000001.vckp",
    "epoch": 40,
    "entries": 1000,
    "bytes": 65536,
    "crc32c": 3735928559
  },
  "delta_logs": [
    {
      "file": "log-0000000000000001.vlog",
      "seq": 1,
      "start_epoch": 0,
      "end_epoch": 40,
      "bytes": 8192
    },
    {
      "file": "log-0000000000000002.vlog",
      "seq": 2,
      "start_epoch": 41,
      "end_epoch": null,
      "bytes": null
    }
  ],
  "data_files": [
    {
      "class": 0,
      "seq": 1,
      "file": "data-00-0000000000000001.vdat",
      "bytes": 1048576
    },
    {
      "class": 3,
      "seq": 2,
      "file": "data-03-0000000000000002.vdat",
      "bytes": 4194304
    }
  ],
  "counters": {
    "next_log_seq": 3,
    "next_checkpoint_seq": 2,
    "next_data_seq": 3
  }
}
"#;

const EMPTY_GOLDEN: &str = r#"{
  "format": "vellum-manifest",
  "version": 2,
  "seq": 1,
  "layout": {
    "file_bytes_max": 1073741824,
    "window_bytes": 67108864
  },
  "checkpoint": null,
  "delta_logs": [],
  "data_files": [],
  "counters": {
    "next_log_seq": 1,
    "next_checkpoint_seq": 1,
    "next_data_seq": 1
  }
}
"#;

fn path() -> &'static Path {
    Path::new("/db/manifest-0000000000000002.json")
}

/// The reason of an `InvalidDocument` error at offset 0 of `path()`, or a panic naming what came
/// back instead.
fn invalid_reason(r: Result<Manifest>) -> String {
    match r {
        Err(Error::Corruption(c)) => match *c {
            Corruption {
                ref file,
                offset: 0,
                kind: CorruptionKind::InvalidDocument { ref reason },
            } if file == path() => reason.clone(),
            other => panic!("expected InvalidDocument at offset 0, got {other:?}"),
        },
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn golden_bytes() {
    let bytes = sample().encode().unwrap();
    assert_eq!(std::str::from_utf8(&bytes).unwrap(), GOLDEN);
    assert_eq!(
        Manifest::decode(GOLDEN.as_bytes(), path()).unwrap(),
        sample()
    );
    let empty = Manifest::empty().encode().unwrap();
    assert_eq!(std::str::from_utf8(&empty).unwrap(), EMPTY_GOLDEN);
}

/// Applies `edit` to a valid manifest and returns the validation error, checking that `encode`
/// refuses it and that `decode` of the same document (written by hand) reports the same reason.
fn rejected(edit: impl FnOnce(&mut Manifest)) -> String {
    let mut m = sample();
    edit(&mut m);
    let reason = m
        .validate()
        .expect_err("the edit should make the manifest invalid");
    assert!(matches!(m.encode(), Err(Error::InvalidArgument(_))));
    let doc = DocumentOut {
        format: MANIFEST_FORMAT,
        version: MANIFEST_VERSION,
        seq: m.seq,
        layout: &m.layout,
        checkpoint: &m.checkpoint,
        delta_logs: &m.delta_logs,
        data_files: &m.data_files,
        counters: &m.counters,
    };
    let bytes = serde_json::to_vec(&doc).unwrap();
    assert_eq!(invalid_reason(Manifest::decode(&bytes, path())), reason);
    reason
}

#[test]
fn validation_rules_name_the_field() {
    assert_eq!(
        rejected(|m| m.layout.file_bytes_max = 3 << 30),
        "layout.file_bytes_max: 3221225472 is not a power of two from 64 MiB to 1 TiB"
    );
    assert_eq!(
        rejected(|m| m.layout.file_bytes_max = 32 << 20),
        "layout.file_bytes_max: 33554432 is not a power of two from 64 MiB to 1 TiB"
    );
    assert_eq!(
        rejected(|m| m.layout.window_bytes = 512 << 20),
        "layout.window_bytes: 536870912 is not a power of two from 1 MiB to file_bytes_max"
    );
    assert_eq!(
        rejected(|m| m.layout.window_bytes = 4096),
        "layout.window_bytes: 4096 is not a power of two from 1 MiB to file_bytes_max"
    );
    let starts = |edit: fn(&mut Manifest), prefix: &str| {
        let reason = rejected(edit);
        assert!(
            reason.starts_with(prefix),
            "reason {reason:?} should start with {prefix:?}"
        );
    };
    starts(|m| m.seq = 0, "seq:");
    starts(
        |m| m.delta_logs[0].file = String::new(),
        "delta_logs[0].file:",
    );
    starts(
        |m| m.delta_logs[1].file = "a/b".into(),
        "delta_logs[1].file:",
    );
    starts(|m| m.data_files[0].file = ".".into(), "data_files[0].file:");
    starts(
        |m| m.data_files[1].file = "..".into(),
        "data_files[1].file:",
    );
    starts(
        |m| m.data_files[1].file = "a b".into(),
        "data_files[1].file:",
    );
    starts(|m| m.data_files[1].file = "é".into(), "data_files[1].file:");
    starts(
        |m| {
            if let Some(cp) = &mut m.checkpoint {
                cp.file = "x\n".into();
            }
        },
        "checkpoint.file:",
    );
    starts(
        |m| m.data_files[1].file = m.delta_logs[0].file.clone(),
        "data_files[1].file:",
    );
    starts(|m| m.delta_logs[1].seq = 1, "delta_logs[1].seq:");
    starts(
        |m| {
            m.delta_logs[0].start_epoch = 50;
            m.delta_logs[0].end_epoch = Some(50);
        },
        "delta_logs[1].start_epoch:",
    );
    starts(
        |m| m.delta_logs[0].end_epoch = Some(42),
        "delta_logs[1].start_epoch:",
    );
    starts(
        |m| {
            m.delta_logs[0].end_epoch = None;
            m.delta_logs[0].bytes = None;
        },
        "delta_logs[0].end_epoch:",
    );
    starts(|m| m.delta_logs[0].bytes = None, "delta_logs[0]:");
    starts(|m| m.delta_logs[1].bytes = Some(1), "delta_logs[1]:");
    starts(
        |m| {
            m.delta_logs[1].end_epoch = Some(40);
            m.delta_logs[1].bytes = Some(1);
        },
        "delta_logs[1].end_epoch:",
    );
    starts(
        |m| {
            m.data_files[1].class = 0;
            m.data_files[1].seq = 1;
        },
        "data_files[1]:",
    );
    starts(|m| m.counters.next_log_seq = 2, "counters.next_log_seq:");
    starts(|m| m.counters.next_data_seq = 2, "counters.next_data_seq:");
}

#[test]
fn edge_cases_that_are_valid() {
    let mut m = sample();
    // A closed log may end where the next one starts, and a log may span a single epoch.
    m.delta_logs[0].end_epoch = Some(41);
    m.delta_logs[1].start_epoch = 41;
    m.delta_logs[1].end_epoch = Some(41);
    m.delta_logs[1].bytes = Some(0);
    // Data files of different classes may share a seq.
    m.data_files[1].seq = 1;
    m.counters.next_data_seq = 2;
    assert_eq!(m.validate(), Ok(()));
    let bytes = m.encode().unwrap();
    assert_eq!(Manifest::decode(&bytes, path()).unwrap(), m);
}

#[test]
fn shape_errors_are_invalid_documents() {
    let cases: &[(&str, &str)] = &[
        ("", "not a manifest document"),
        ("[]", "not a manifest document"),
        ("{\"format\": 1, \"version\": 1}", "not a manifest document"),
        (
            "{\"format\": \"other\", \"version\": 1}",
            "format: expected \"vellum-manifest\", found \"other\"",
        ),
        (
            "{\"format\": \"vellum-manifest\", \"version\": 1}",
            "version: this build reads version 2, found 1",
        ),
        (
            "{\"format\": \"vellum-manifest\", \"version\": 3}",
            "version: this build reads version 2, found 3",
        ),
        (
            "{\"format\": \"vellum-manifest\", \"version\": 2}",
            "schema:",
        ),
    ];
    for (doc, prefix) in cases {
        let reason = invalid_reason(Manifest::decode(doc.as_bytes(), path()));
        assert!(reason.starts_with(prefix), "{doc:?}: {reason:?}");
    }
    // An unknown field, a missing nullable field, a duplicate key and an out-of-range CRC.
    let edits: &[(&str, &str)] = &[
        ("\"seq\": 2,", "\"seq\": 2, \"extra\": 0,"),
        ("      \"end_epoch\": null,\n", ""),
        (
            "\"checkpoint\": {",
            "\"checkpoint\": null, \"checkpoint\": {",
        ),
        ("3735928559", "4294967296"),
        ("\"entries\": 1000", "\"entries\": -1"),
    ];
    for (from, to) in edits {
        assert!(GOLDEN.contains(from), "{from:?}");
        let doc = GOLDEN.replacen(from, to, 1);
        let reason = invalid_reason(Manifest::decode(doc.as_bytes(), path()));
        assert!(reason.starts_with("schema:"), "{to:?}: {reason:?}");
    }
}
