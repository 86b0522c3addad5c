//! FasterKV's refusals: bad keys, values and options get their exact errors, and nothing is
//! written for them.

mod common;

use common::{kv_options, open_kv};
use vellum_faster::Error;
use vellum_faster::kv::record::{KEY_BYTES_MAX, RecordError};
use vellum_faster::kv::{AddU64, FasterKv, KvOptions, Status};

#[test]
fn an_empty_key_is_refused_by_every_operation() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 64));
    let mut s = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    let empty = |e: Error| matches!(e, Error::Record(RecordError::KeyEmpty));
    assert!(empty(s.read(b"", &mut out).unwrap_err()));
    assert!(empty(s.upsert(b"", b"v").unwrap_err()));
    assert!(empty(s.rmw(b"", &1).unwrap_err()));
    assert!(empty(s.delete(b"").unwrap_err()));
    assert!(empty(s.read_blocking(b"", &mut out).unwrap_err()));
    assert_eq!(kv.stats().tail, vellum_faster::kv::LOG_BEGIN);
    assert_eq!(kv.stats().index_entries, 0);
}

#[test]
fn keys_and_values_past_the_limits_are_refused_with_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 64));
    let mut s = kv.session(AddU64).unwrap();
    // A 4 KiB page bounds a key to the page less a record header: 4072 bytes.
    let long_key = vec![1u8; 4073];
    match s.upsert(&long_key, b"v").unwrap_err() {
        Error::Record(RecordError::KeyTooLong {
            len: 4073,
            max: 4072,
        }) => {}
        e => panic!("{e:?}"),
    }
    // With an 8-byte key, a value may take the rest of the page: 4096 - 24 - 8 = 4064 bytes.
    match s.upsert(b"key", &vec![0u8; 4065]).unwrap_err() {
        Error::Record(RecordError::ValueTooLong {
            len: 4072,
            max: 4064,
        }) => {}
        e => panic!("{e:?}"),
    }
    s.upsert(b"key", &vec![5u8; 4064]).unwrap();
    let mut out = Vec::new();
    assert_eq!(s.read(b"key", &mut out).unwrap(), Status::Found);
    assert_eq!(out, vec![5u8; 4064]);
    // With large pages, the format's own key limit applies.
    let dir2 = tempfile::tempdir().unwrap();
    let big = open_kv(dir2.path(), kv_options(1 << 20, 2, 64));
    let mut s2 = big.session(AddU64).unwrap();
    match s2.upsert(&vec![1u8; KEY_BYTES_MAX + 1], b"v").unwrap_err() {
        Error::Record(RecordError::KeyTooLong { len, max }) => {
            assert_eq!((len, max), (KEY_BYTES_MAX + 1, KEY_BYTES_MAX));
        }
        e => panic!("{e:?}"),
    }
}

#[test]
fn bad_options_and_names_are_refused_with_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let rt = std::sync::Arc::new(
        vellum::runtime::DurableRuntime::open(
            dir.path(),
            vellum::runtime::RuntimeOptions {
                create_if_missing: true,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let refuse = |o: KvOptions, name: &str| match FasterKv::open(rt.clone(), name, o) {
        Err(Error::InvalidArgument(m)) => m,
        other => panic!("{other:?}"),
    };
    let base = kv_options(4096, 4, 64);
    let m = refuse(
        KvOptions {
            page_bytes: 5000,
            ..base.clone()
        },
        "a",
    );
    assert!(
        m.starts_with("page_bytes 5000 is not a power of two"),
        "{m}"
    );
    let m = refuse(
        KvOptions {
            log_memory_bytes_max: 4096,
            ..base.clone()
        },
        "a",
    );
    assert!(m.contains("fewer than two pages"), "{m}");
    let m = refuse(
        KvOptions {
            mutable_percent: 100,
            ..base.clone()
        },
        "a",
    );
    assert!(m.starts_with("mutable_percent 100"), "{m}");
    let m = refuse(base.clone(), "");
    assert!(m.contains("1 to 37 bytes, got 0"), "{m}");
    match FasterKv::open(
        rt.clone(),
        "a",
        KvOptions {
            index: vellum_faster::kv::index::IndexOptions {
                bucket_count: 3,
                ..Default::default()
            },
            ..base.clone()
        },
    ) {
        Err(Error::Index(vellum_faster::kv::index::IndexError::BucketCountNotPowerOfTwo {
            bucket_count: 3,
        })) => {}
        other => panic!("{other:?}"),
    }
    // One handle per store name and runtime.
    let first = FasterKv::open(rt.clone(), "a", base.clone()).unwrap();
    match FasterKv::open(rt.clone(), "a", base.clone()) {
        Err(Error::Store(vellum::Error::RootClaimed { .. })) => {}
        other => panic!("{other:?}"),
    }
    first.close().unwrap();
    FasterKv::open(rt, "a", base).unwrap().close().unwrap();
}

#[test]
fn destroying_retires_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 2, 64));
    let mut s = kv.session(AddU64).unwrap();
    for k in 0..1000u64 {
        s.upsert(&k.to_le_bytes(), &k.to_le_bytes()).unwrap();
    }
    drop(s);
    let rt = kv.runtime().clone();
    // (The flusher may still be writing a page whose read-only shift is settling, so the
    // count before destroying is a lower bound; after it, it is exact.)
    assert!(rt.node_ids().len() >= 5, "{:?}", kv.stats());
    kv.checkpoint().unwrap();
    kv.destroy().unwrap();
    assert_eq!(rt.node_ids().len(), 0);
    assert_eq!(rt.root("faster-kv:kv"), None);
}

#[test]
fn sessions_past_the_epoch_table_are_refused_until_one_drops() {
    use vellum_faster::kv::SESSIONS_MAX;
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 64));
    let mut open: Vec<_> = (0..SESSIONS_MAX)
        .map(|_| kv.session(AddU64).unwrap())
        .collect();
    // Every one of them protected at once (each holds its slot between operations).
    for (i, s) in open.iter_mut().enumerate() {
        s.upsert(&(i as u64).to_le_bytes(), b"12345678").unwrap();
    }
    match kv.session(AddU64) {
        Err(Error::TooManySessions { max }) => assert_eq!(max, SESSIONS_MAX),
        other => panic!("{other:?}"),
    }
    open.pop();
    let mut s = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        s.read(&0u64.to_le_bytes(), &mut out).unwrap(),
        Status::Found
    );
    assert_eq!(out, b"12345678");
}
