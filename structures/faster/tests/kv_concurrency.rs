//! FasterKV under concurrent sessions, with exact outcomes: RMW counters that lose no update
//! (in memory, in every region, and on disk), reads that see only values some upsert wrote, one
//! index entry per key when threads insert the same new keys at once, and RMW in the fuzzy
//! region retried until exact.

mod common;

use std::collections::HashSet;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::time::Duration;

use common::{Rng, env_u64, kv_options, open_kv};
use vellum_faster::kv::hash::KeyHash;
use vellum_faster::kv::{AddU64, Status};

const KEYS: u64 = 1000;

fn key(k: u64) -> [u8; 8] {
    k.to_le_bytes()
}

/// `threads` sessions each add 1 to random keys `per_thread` times (every key at least once),
/// with a log memory of 4 pages of 4 KiB: the 1 000 counters' records move through every region
/// and many lie below head. Every counter then equals the number of increments of that key.
fn concurrent_increments(threads: u64, per_thread: u64) {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 256));
    let barrier = Barrier::new(threads as usize);
    let counts: Vec<Vec<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (kv, barrier) = (&kv, &barrier);
                s.spawn(move || {
                    let mut session = kv.session(AddU64).unwrap();
                    let mut rng = Rng::new(t + 1);
                    let mut mine = vec![0u64; KEYS as usize];
                    barrier.wait();
                    for i in 0..per_thread {
                        let k = if i < KEYS {
                            (i + t * 7) % KEYS
                        } else {
                            rng.below(KEYS)
                        };
                        if session.rmw(&key(k), &1).unwrap() == Status::Pending {
                            let done = session.complete_pending().unwrap();
                            assert_eq!(done.len(), 1);
                            assert_ne!(done[0].status, Status::Pending);
                        }
                        mine[k as usize] += 1;
                    }
                    (mine, session.stats())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                let (mine, stats) = h.join().unwrap();
                eprintln!("{threads} threads: {stats:?}");
                mine
            })
            .collect()
    });
    let stats = kv.stats();
    assert!(
        stats.head > 4096,
        "some counters must have gone below head: {stats:?}"
    );
    assert!(stats.ops_pending > 0, "{stats:?}");
    let mut session = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    let mut total = 0;
    for k in 0..KEYS {
        let want: u64 = counts.iter().map(|c| c[k as usize]).sum();
        assert_eq!(
            session.read_blocking(&key(k), &mut out).unwrap(),
            Status::Found,
            "key {k}"
        );
        assert_eq!(
            u64::from_le_bytes(out[..].try_into().unwrap()),
            want,
            "key {k}"
        );
        total += want;
    }
    assert_eq!(total, threads * per_thread);
}

#[test]
fn rmw_from_2_threads_loses_no_increment() {
    concurrent_increments(2, env_u64("VELLUM_KV_RMW_OPS", 100_000));
}

#[test]
fn rmw_from_4_threads_loses_no_increment() {
    concurrent_increments(4, env_u64("VELLUM_KV_RMW_OPS", 100_000));
}

#[test]
fn rmw_from_8_threads_loses_no_increment() {
    concurrent_increments(8, env_u64("VELLUM_KV_RMW_OPS", 100_000));
}

/// A value naming its writer and sequence number, padded to a length that varies with both (so
/// some upserts fit in place and some copy), with a check word: a torn value fails the check.
fn stamped(writer: u64, seq: u64) -> Vec<u8> {
    let len = 24 + ((writer + seq) % 5) as usize * 8;
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&writer.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend_from_slice(&(writer ^ seq.rotate_left(17) ^ 0x5a5a).to_le_bytes());
    while v.len() < len {
        v.push((seq as u8).wrapping_add(v.len() as u8));
    }
    v
}

/// The writer and sequence number of a value `stamped` made; panics on anything else.
fn unstamp(v: &[u8]) -> (u64, u64) {
    let word = |i: usize| u64::from_le_bytes(v[i * 8..i * 8 + 8].try_into().unwrap());
    let (writer, seq) = (word(0), word(1));
    assert_eq!(v, stamped(writer, seq), "a torn or foreign value");
    (writer, seq)
}

#[test]
fn concurrent_upserts_and_reads_see_whole_values_and_never_an_own_older_one() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 64));
    let keys = 64u64;
    let rounds = env_u64("VELLUM_KV_UPSERT_ROUNDS", 20_000);
    std::thread::scope(|s| {
        for writer in 1..=3u64 {
            let kv = &kv;
            s.spawn(move || {
                let mut session = kv.session(AddU64).unwrap();
                let mut last = vec![0u64; keys as usize];
                let mut rng = Rng::new(writer);
                let mut out = Vec::new();
                for seq in 1..=rounds {
                    let k = rng.below(keys);
                    session.upsert(&key(k), &stamped(writer, seq)).unwrap();
                    last[k as usize] = seq;
                    let probe = rng.below(keys);
                    match session.read_blocking(&key(probe), &mut out).unwrap() {
                        Status::Found => {
                            let (w, sq) = unstamp(&out);
                            if w == writer {
                                assert!(
                                    sq >= last[probe as usize],
                                    "own value {sq} after {}",
                                    last[probe as usize]
                                );
                            }
                        }
                        Status::NotFound => assert_eq!(last[probe as usize], 0),
                        Status::Pending => unreachable!("blocking"),
                    }
                }
            });
        }
    });
}

#[test]
fn threads_inserting_the_same_new_keys_at_once_make_one_entry_each() {
    let dir = tempfile::tempdir().unwrap();
    // 16 buckets: chains of overflow buckets, where racing inserts must not duplicate a tag.
    let kv = open_kv(dir.path(), kv_options(1 << 16, 8, 16));
    let keys = 2000u64;
    let barrier = Barrier::new(4);
    let created: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u64)
            .map(|t| {
                let (kv, barrier) = (&kv, &barrier);
                s.spawn(move || {
                    let mut session = kv.session(AddU64).unwrap();
                    barrier.wait();
                    let mut created = 0;
                    for k in 0..keys {
                        match session.rmw(&key(k), &(t + 1)).unwrap() {
                            Status::NotFound => created += 1,
                            Status::Found => {}
                            Status::Pending => unreachable!("all in memory"),
                        }
                    }
                    created
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    // Exactly one RMW per key found no value and created it.
    assert_eq!(created, keys);
    // One entry per (bucket, tag) the keys hash to, and every counter exact (1+2+3+4).
    let tags: HashSet<(usize, u16)> = (0..keys)
        .map(|k| {
            let h = KeyHash::of(&key(k));
            (h.bucket(15), h.tag())
        })
        .collect();
    assert_eq!(kv.stats().index_entries, tags.len() as u64);
    let mut session = kv.session(AddU64).unwrap();
    let mut out = Vec::new();
    for k in 0..keys {
        assert_eq!(session.read(&key(k), &mut out).unwrap(), Status::Found);
        assert_eq!(out, 10u64.to_le_bytes(), "key {k}");
    }
}

#[test]
fn rmw_in_the_fuzzy_region_retries_until_it_is_safe_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    // 4 pages in memory, 3 mutable: read_only moves to page 1 when the tail enters page 3.
    let kv = open_kv(dir.path(), kv_options(4096, 4, 1024));
    let mut holder = kv.session(AddU64).unwrap();
    let target = key(u64::MAX);
    assert_eq!(holder.rmw(&target, &5).unwrap(), Status::NotFound);
    // `holder` stays protected (it does not refresh) while another session moves read_only
    // past the target's page: safe_read_only cannot follow.
    let mover_done = AtomicBool::new(false);
    let (fuzzy_tx, fuzzy_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let (kv, done) = (&kv, &mover_done);
        let mover = s.spawn(move || {
            let mut session = kv.session(AddU64).unwrap();
            let mut k = 0;
            while kv.stats().read_only < 4096 {
                session.upsert(&key(k), &[0u8; 8]).unwrap();
                k += 1;
            }
            let st = kv.stats();
            assert!(st.safe_read_only < 4096 && st.read_only >= 4096, "{st:?}");
            fuzzy_tx.send(()).unwrap();
            // The target's record is in the fuzzy region: RMW waits for `holder`.
            assert_eq!(session.rmw(&target, &1).unwrap(), Status::Found);
            done.store(true, SeqCst);
            session.stats()
        });
        // Only once the region is fuzzy (the mover's upserts may take long on a busy machine;
        // leaving the protection earlier would let safe_read_only follow at once).
        fuzzy_rx.recv().unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            !mover_done.load(SeqCst),
            "the RMW must wait while the region is fuzzy"
        );
        holder.idle();
        let stats = mover.join().unwrap();
        assert!(stats.retries_later > 0, "{stats:?}");
    });
    let mut out = Vec::new();
    assert_eq!(
        holder.read_blocking(&target, &mut out).unwrap(),
        Status::Found
    );
    assert_eq!(out, 6u64.to_le_bytes());
}

#[test]
fn upsert_in_place_does_not_grow_the_log_and_below_read_only_it_copies() {
    let dir = tempfile::tempdir().unwrap();
    let kv = open_kv(dir.path(), kv_options(4096, 4, 1024));
    let mut session = kv.session(AddU64).unwrap();
    session.upsert(b"key", &1u64.to_le_bytes()).unwrap();
    let tail = kv.stats().tail;
    // Mutable: in place, whatever the number of updates, and a shorter value too.
    for v in 2..100u64 {
        session.upsert(b"key", &v.to_le_bytes()).unwrap();
    }
    session.upsert(b"key", b"abc").unwrap();
    assert_eq!(kv.stats().tail, tail);
    // A value longer than the record's capacity is copied: one record of 24 + 8 + 16 bytes.
    session.upsert(b"key", &[7u8; 16]).unwrap();
    assert_eq!(kv.stats().tail, tail + 48);
    // Push the record below read_only: the next upsert copies it (same size again).
    let mut k = 0u64;
    while kv.stats().safe_read_only <= tail + 48 {
        session.upsert(&key(k), &[0u8; 8]).unwrap();
        k += 1;
    }
    let before = kv.stats().tail;
    session.upsert(b"key", &[8u8; 16]).unwrap();
    let after = kv.stats().tail;
    assert!(
        after == before + 48 || after > before && after % 4096 == 48,
        "{before} -> {after}"
    );
    let mut out = Vec::new();
    assert_eq!(session.read(b"key", &mut out).unwrap(), Status::Found);
    assert_eq!(out, [8u8; 16]);
}
