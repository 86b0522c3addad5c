//! Regression: a well-formed commit record (valid CRC) naming a slot in data file 2^19 - 1 made
//! recovery size the allocator for every segment up to it and abort on a 20 GB allocation.
//! Found by review. Recovery now refuses locations past the files that exist (and data files
//! longer than `file_bytes_max`) with a structured corruption error.

use std::path::Path;
use std::sync::Arc;
use vellum::alloc::{FILE_MAX, Location};
use vellum::io::{FaultConfig, FaultStorage, Storage};
use vellum::log::DeltaLog;
use vellum::runtime::{
    CommitPolicy, DurableRuntime, NodeVersionRef, OpRef, RuntimeOptions, encode_record,
};

fn opts() -> RuntimeOptions {
    let mut o = RuntimeOptions {
        create_if_missing: true,
        eventual_flush_interval: std::time::Duration::from_secs(60),
        checkpoint_log_bytes: 1 << 40,
        ..RuntimeOptions::default()
    };
    o.policy = CommitPolicy::Strict;
    o
}

#[test]
fn crafted_location_in_crc_valid_record() {
    let fs = FaultStorage::with_config(FaultConfig {
        seed: 1,
        file_bytes_max: 64 << 20,
        space_bytes_max: None,
    });
    fs.create_dir_all(Path::new("/s")).unwrap();
    let id;
    {
        let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new("/s"), opts()).unwrap();
        let mut t = rt.begin();
        let a = t.alloc(1, b"x").unwrap();
        t.commit().unwrap();
        let mut t = rt.begin();
        id = t.alloc(1, b"y").unwrap();
        t.abort();
        let _ = a;
        rt.close().unwrap();
    }
    let (log, _) = DeltaLog::open(Arc::new(fs.clone()), Path::new("/s"), 1, opts().log, |_| {
        Ok(())
    })
    .unwrap();
    let loc = Location {
        class: 0,
        file: FILE_MAX,
        offset: 0,
    };
    let body = encode_record(
        2,
        &[OpRef::New(NodeVersionRef {
            id,
            location: loc,
            len: 1,
            crc32c: vellum::codec::crc32c(b"y"),
            kind: 1,
            payload: None,
        })],
    )
    .unwrap();
    log.append(&body).unwrap();
    log.sync().unwrap();
    drop(log);
    let err = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new("/s"), opts())
        .expect_err("a location past the data files must be refused");
    let c = err
        .as_corruption()
        .unwrap_or_else(|| panic!("not a corruption error: {err}"));
    assert_eq!(
        c.kind,
        vellum::CorruptionKind::InvalidField {
            field: "op.location",
            value: loc.pack()
        }
    );
    assert_eq!(
        c.file,
        Path::new("/s").join(vellum::alloc::data_file_name(0, FILE_MAX))
    );
}
