//! `Session::batch`: the same results, serial numbers and pending operations as the calls one
//! by one, an error stopping the batch exactly at the failing operation, and concurrent batches
//! of RMWs losing no increment.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Barrier;

use common::{Rng, env_u64, kv_options, open_kv};
use vellum_faster::Error;
use vellum_faster::kv::record::RecordError;
use vellum_faster::kv::{AddU64, Append, BatchOp, OpKind, Status};

/// Keys of 1 to 24 bytes from a space of 300.
fn key(n: u64) -> Vec<u8> {
    let len = 1 + (n % 24) as usize;
    (0..len).map(|i| (n as u8).wrapping_add(i as u8)).collect()
}

/// What one operation of a test batch is, with owned bytes.
enum Planned {
    Read(Vec<u8>),
    Upsert(Vec<u8>, Vec<u8>),
    Rmw(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

impl Planned {
    fn op(&self) -> BatchOp<'_, Vec<u8>> {
        match self {
            Planned::Read(k) => BatchOp::Read(k),
            Planned::Upsert(k, v) => BatchOp::Upsert(k, v),
            Planned::Rmw(k, i) => BatchOp::Rmw(k, i),
            Planned::Delete(k) => BatchOp::Delete(k),
        }
    }

    /// Applies the operation to the model: its kind, status and (for a read) value.
    fn apply(&self, model: &mut HashMap<Vec<u8>, Vec<u8>>) -> (OpKind, Status, Vec<u8>) {
        let found = |b: bool| if b { Status::Found } else { Status::NotFound };
        match self {
            Planned::Read(k) => match model.get(k) {
                Some(v) => (OpKind::Read, Status::Found, v.clone()),
                None => (OpKind::Read, Status::NotFound, Vec::new()),
            },
            Planned::Upsert(k, v) => {
                model.insert(k.clone(), v.clone());
                // An upsert is never pending; its kind is not reported.
                (OpKind::Read, Status::Found, Vec::new())
            }
            Planned::Rmw(k, input) => {
                let old = model.get(k).cloned();
                let status = found(old.is_some());
                let mut new = old.unwrap_or_default();
                new.extend_from_slice(input);
                model.insert(k.clone(), new);
                (OpKind::Rmw, status, Vec::new())
            }
            Planned::Delete(k) => (OpKind::Delete, found(model.remove(k).is_some()), Vec::new()),
        }
    }
}

/// A batch of `n` operations on distinct keys (so the order in which pending ones take effect
/// does not matter).
fn plan(rng: &mut Rng, n: usize) -> Vec<Planned> {
    let mut keys = BTreeSet::new();
    while keys.len() < n {
        keys.insert(rng.below(300));
    }
    let mut keys: Vec<u64> = keys.into_iter().collect();
    // Not in key order.
    for i in (1..keys.len()).rev() {
        keys.swap(i, rng.below(i as u64 + 1) as usize);
    }
    keys.into_iter()
        .map(|k| {
            let bytes = |rng: &mut Rng| -> Vec<u8> {
                (0..rng.below(40)).map(|_| rng.next() as u8).collect()
            };
            match rng.below(4) {
                0 => Planned::Read(key(k)),
                1 => Planned::Upsert(key(k), bytes(rng)),
                2 => Planned::Rmw(key(k), bytes(rng)),
                _ => Planned::Delete(key(k)),
            }
        })
        .collect()
}

#[test]
fn a_batch_gives_the_results_of_its_operations_one_by_one() {
    let batches = env_u64("VELLUM_KV_BATCHES", 400);
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB pages, 4 in memory: most records go to disk, so batches hold pending operations.
    let kv = open_kv(dir.path(), kv_options(4096, 4, 64));
    let mut session = kv.session(Append).unwrap();
    let mut model = HashMap::new();
    let mut rng = Rng::new(11);
    let (mut ops_total, mut pending_total) = (0u64, 0u64);
    for b in 0..batches {
        let n = 1 + rng.below(40) as usize;
        let planned = plan(&mut rng, n);
        let ops: Vec<_> = planned.iter().map(Planned::op).collect();
        let want: Vec<_> = planned.iter().map(|p| p.apply(&mut model)).collect();
        let first_serial = session.last_serial() + 1;
        let mut reported = Vec::new();
        session
            .batch(&ops, |i, status, value| {
                reported.push((i, status, value.to_vec()))
            })
            .unwrap();
        assert_eq!(session.last_serial(), first_serial - 1 + ops.len() as u64);
        let mut pending = HashMap::new();
        assert_eq!(reported.len(), ops.len(), "batch {b}");
        for (n, (i, status, value)) in reported.into_iter().enumerate() {
            assert_eq!(i, n, "batch {b}: reported in order");
            let (kind, want_status, want_value) = &want[i];
            if status == Status::Pending {
                assert!(value.is_empty());
                pending.insert(first_serial + i as u64, (*kind, *want_status, want_value));
            } else {
                assert_eq!(
                    (status, &value),
                    (*want_status, want_value),
                    "batch {b} op {i}"
                );
            }
        }
        assert_eq!(session.pending_count(), pending.len(), "batch {b}");
        pending_total += pending.len() as u64;
        for c in session.complete_pending().unwrap() {
            let (kind, status, value) = pending.remove(&c.serial).expect("a pending serial");
            assert_eq!(
                (c.kind, c.status, &c.value),
                (kind, status, value),
                "batch {b}"
            );
        }
        assert!(pending.is_empty(), "batch {b}: every pending one completed");
        ops_total += ops.len() as u64;
    }
    assert!(
        pending_total > batches,
        "disk reads in the batches: {pending_total}"
    );
    assert!(kv.stats().head > 8 * 4096, "{:?}", kv.stats());
    // The store ends as the model.
    let mut out = Vec::new();
    for n in 0..300 {
        let k = key(n);
        let status = session.read_blocking(&k, &mut out).unwrap();
        match model.get(&k) {
            Some(v) => assert_eq!((status, &out), (Status::Found, v), "key {n}"),
            None => assert_eq!(status, Status::NotFound, "key {n}"),
        }
    }
    assert_eq!(session.last_serial(), ops_total + 300);
}

#[test]
fn an_error_stops_the_batch_at_the_failing_operation() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 16, 64));
    let mut s = kv.session(AddU64).unwrap();
    let (one, long) = (1u64, vec![7u8; 4073]);
    let three = 3u64.to_le_bytes();
    let ops = [
        BatchOp::Upsert(b"a", &three),
        BatchOp::Rmw(b"a", &one),
        BatchOp::Read(b"a"),
        BatchOp::Upsert(b"", &three),
        BatchOp::Upsert(b"c", &three),
    ];
    let mut reported = Vec::new();
    let e = s
        .batch(&ops, |i, status, v| reported.push((i, status, v.to_vec())))
        .unwrap_err();
    assert!(matches!(e, Error::Record(RecordError::KeyEmpty)), "{e:?}");
    let four = 4u64.to_le_bytes().to_vec();
    assert_eq!(
        reported,
        [
            (0, Status::Found, vec![]),
            (1, Status::Found, vec![]),
            (2, Status::Found, four.clone())
        ]
    );
    assert_eq!(s.last_serial(), 3);
    let mut out = Vec::new();
    assert_eq!(s.read(b"c", &mut out).unwrap(), Status::NotFound);
    // A key over the limit, first in its batch: nothing runs.
    let ops = [BatchOp::Read(&long[..]), BatchOp::Delete(b"a")];
    match s.batch(&ops, |i, _, _| panic!("op {i} ran")).unwrap_err() {
        Error::Record(RecordError::KeyTooLong {
            len: 4073,
            max: 4072,
        }) => {}
        e => panic!("{e:?}"),
    }
    assert_eq!(s.read(b"a", &mut out).unwrap(), Status::Found);
    assert_eq!(out, four);
    assert_eq!(s.last_serial(), 5);
    // An empty batch does nothing.
    s.batch(&[], |i, _, _| panic!("op {i} ran")).unwrap();
    assert_eq!(s.last_serial(), 5);
}

#[test]
fn batches_of_rmw_from_2_threads_lose_no_increment() {
    const KEYS: u64 = 1000;
    let per_thread = env_u64("VELLUM_KV_BATCH_RMW_OPS", 100_000);
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 256));
    let barrier = Barrier::new(2);
    let one = 1u64;
    let results: Vec<(Vec<u64>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let (kv, barrier, one) = (&kv, &barrier, &one);
                s.spawn(move || {
                    let mut session = kv.session(AddU64).unwrap();
                    let mut rng = Rng::new(t + 5);
                    let mut mine = vec![0u64; KEYS as usize];
                    let keys: Vec<[u8; 8]> = (0..per_thread)
                        .map(|_| rng.below(KEYS).to_le_bytes())
                        .collect();
                    barrier.wait();
                    // RMWs that found no value (each key's first, in one thread or the other).
                    let mut initial = 0u64;
                    for part in keys.chunks(64) {
                        let ops: Vec<_> = part.iter().map(|k| BatchOp::Rmw(&k[..], one)).collect();
                        session
                            .batch(&ops, |_, status, _| {
                                initial += u64::from(status == Status::NotFound)
                            })
                            .unwrap();
                        for c in session.complete_pending().unwrap() {
                            // A pending RMW read the key's record from disk: the key had a value.
                            assert_eq!((c.kind, c.status), (OpKind::Rmw, Status::Found));
                        }
                    }
                    for k in &keys {
                        mine[u64::from_le_bytes(*k) as usize] += 1;
                    }
                    (mine, initial)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(kv.stats().ops_pending > 0, "{:?}", kv.stats());
    let counts: Vec<&Vec<u64>> = results.iter().map(|(c, _)| c).collect();
    let initial: u64 = results.iter().map(|(_, n)| n).sum();
    let mut session = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    let (mut total, mut touched) = (0, 0);
    for k in 0..KEYS {
        let want: u64 = counts.iter().map(|c| c[k as usize]).sum();
        let status = session.read_blocking(&k.to_le_bytes(), &mut out).unwrap();
        if want == 0 {
            assert_eq!(status, Status::NotFound, "key {k}");
            continue;
        }
        assert_eq!(status, Status::Found, "key {k}");
        assert_eq!(
            u64::from_le_bytes(out[..].try_into().unwrap()),
            want,
            "key {k}"
        );
        total += want;
        touched += 1;
    }
    assert_eq!(total, 2 * per_thread);
    assert_eq!(initial, touched, "one RMW per key found no value");
}
