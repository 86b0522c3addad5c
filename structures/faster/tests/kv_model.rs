//! FasterKV against a `HashMap` model: random reads, upserts, RMWs and deletes of
//! variable-length keys and values, with a log memory of a few pages so that most records are
//! on disk; every result equal to the model's.

mod common;

use std::collections::HashMap;

use common::{Rng, env_u64, kv_options, open_kv};
use vellum_faster::kv::{Append, Completed, OpKind, Status};

/// Keys of 1 to 40 bytes from a small space (so keys repeat and chains collide: 64 buckets).
fn key(rng: &mut Rng) -> Vec<u8> {
    let n = rng.below(300);
    let len = 1 + (n % 40) as usize;
    (0..len).map(|i| (n as u8).wrapping_add(i as u8)).collect()
}

fn value(rng: &mut Rng) -> Vec<u8> {
    let len = rng.below(120) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

/// The model's answer to a read.
fn expect_read(model: &HashMap<Vec<u8>, Vec<u8>>, k: &[u8]) -> (Status, Vec<u8>) {
    match model.get(k) {
        Some(v) => (Status::Found, v.clone()),
        None => (Status::NotFound, Vec::new()),
    }
}

#[test]
fn random_operations_match_a_hash_map_with_most_of_the_log_on_disk() {
    let ops = env_u64("VELLUM_KV_MODEL_OPS", 20_000);
    let seed = env_u64("VELLUM_KV_MODEL_SEED", 7);
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB pages, 4 in memory, 64 buckets of 7 entries: overflow buckets and tag collisions.
    let kv = open_kv(dir.path(), kv_options(4096, 4, 64));
    let mut session = kv.session(Append).unwrap();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut rng = Rng::new(seed);
    // A pending read's expected outcome, by serial (the model as of the read: pending
    // operations complete before any later operation of the session is issued here).
    let mut expected: HashMap<u64, (OpKind, Status, Vec<u8>)> = HashMap::new();
    let mut out = Vec::new();
    let (mut pending, mut completed) = (0u64, 0u64);
    for i in 0..ops {
        let k = key(&mut rng);
        let blocking = rng.below(2) == 0;
        let status = match rng.below(4) {
            0 => {
                let want = expect_read(&model, &k);
                let s = if blocking {
                    session.read_blocking(&k, &mut out).unwrap()
                } else {
                    session.read(&k, &mut out).unwrap()
                };
                if s == Status::Pending {
                    expected.insert(session.last_serial(), (OpKind::Read, want.0, want.1));
                } else {
                    assert_eq!((s, out.clone()), want, "op {i}: read {k:?}");
                }
                s
            }
            1 => {
                let v = value(&mut rng);
                session.upsert(&k, &v).unwrap();
                model.insert(k, v);
                Status::Found
            }
            2 => {
                let input = value(&mut rng);
                let old = model.get(&k).cloned();
                let want = if old.is_some() {
                    Status::Found
                } else {
                    Status::NotFound
                };
                let mut new = old.unwrap_or_default();
                new.extend_from_slice(&input);
                model.insert(k.clone(), new);
                let s = if blocking {
                    session.rmw_blocking(&k, &input).unwrap()
                } else {
                    session.rmw(&k, &input).unwrap()
                };
                check_or_expect(
                    s,
                    want,
                    &mut expected,
                    session.last_serial(),
                    OpKind::Rmw,
                    i,
                );
                s
            }
            _ => {
                let want = if model.remove(&k).is_some() {
                    Status::Found
                } else {
                    Status::NotFound
                };
                let s = if blocking {
                    session.delete_blocking(&k).unwrap()
                } else {
                    session.delete(&k).unwrap()
                };
                check_or_expect(
                    s,
                    want,
                    &mut expected,
                    session.last_serial(),
                    OpKind::Delete,
                    i,
                );
                s
            }
        };
        if status == Status::Pending {
            pending += 1;
            // Complete now: a later operation on the same key must see this one's effect.
            for c in session.complete_pending().unwrap() {
                completed += 1;
                check_completed(&c, &mut expected);
            }
        }
    }
    assert_eq!(pending, completed);
    assert!(expected.is_empty());
    // Most of the log is on disk, and operations went there.
    let stats = kv.stats();
    assert!(stats.head > 8 * 4096, "{stats:?}");
    assert!(stats.pages_flushed >= 8, "{stats:?}");
    assert!(
        session.stats().disk_reads > ops / 20,
        "{:?}",
        session.stats()
    );
    // Finally every key of the key space reads back as the model says.
    for n in 0..300u64 {
        let len = 1 + (n % 40) as usize;
        let k: Vec<u8> = (0..len).map(|i| (n as u8).wrapping_add(i as u8)).collect();
        let s = session.read_blocking(&k, &mut out).unwrap();
        assert_eq!(
            (s, out.clone()),
            expect_read(&model, &k),
            "final read {k:?}"
        );
    }
}

fn check_or_expect(
    s: Status,
    want: Status,
    expected: &mut HashMap<u64, (OpKind, Status, Vec<u8>)>,
    serial: u64,
    kind: OpKind,
    i: u64,
) {
    if s == Status::Pending {
        expected.insert(serial, (kind, want, Vec::new()));
    } else {
        assert_eq!(s, want, "op {i} ({kind:?})");
    }
}

fn check_completed(c: &Completed, expected: &mut HashMap<u64, (OpKind, Status, Vec<u8>)>) {
    let (kind, status, value) = expected.remove(&c.serial).expect("a pending op");
    assert_eq!(
        (c.kind, c.status, &c.value),
        (kind, status, &value),
        "serial {}",
        c.serial
    );
}

#[test]
fn several_pending_operations_complete_in_order_with_their_serials() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 2, 1024));
    let mut session = kv.session(vellum_faster::kv::AddU64).unwrap();
    for k in 0..2000u64 {
        session.upsert(&k.to_le_bytes(), &k.to_le_bytes()).unwrap();
    }
    assert!(kv.stats().head > 4096 * 4);
    // Key 0 is far below head: each of these goes pending.
    let mut out = Vec::new();
    assert_eq!(
        session.read(&0u64.to_le_bytes(), &mut out).unwrap(),
        Status::Pending
    );
    let read_serial = session.last_serial();
    assert_eq!(
        session.rmw(&1u64.to_le_bytes(), &10).unwrap(),
        Status::Pending
    );
    assert_eq!(
        session.delete(&2u64.to_le_bytes()).unwrap(),
        Status::Pending
    );
    assert_eq!(session.pending_count(), 3);
    let done = session.complete_pending().unwrap();
    let summary: Vec<_> = done.iter().map(|c| (c.serial, c.kind, c.status)).collect();
    assert_eq!(
        summary,
        [
            (read_serial, OpKind::Read, Status::Found),
            (read_serial + 1, OpKind::Rmw, Status::Found),
            (read_serial + 2, OpKind::Delete, Status::Found),
        ]
    );
    assert_eq!(done[0].value, 0u64.to_le_bytes());
    assert_eq!(session.pending_count(), 0);
    // The RMW of the disk-resident key kept its old value (1 + 10), and the delete stuck.
    assert_eq!(
        session
            .read_blocking(&1u64.to_le_bytes(), &mut out)
            .unwrap(),
        Status::Found
    );
    assert_eq!(out, 11u64.to_le_bytes());
    assert_eq!(
        session
            .read_blocking(&2u64.to_le_bytes(), &mut out)
            .unwrap(),
        Status::NotFound
    );
    assert_eq!(
        session.delete_blocking(&2u64.to_le_bytes()).unwrap(),
        Status::NotFound
    );
}
