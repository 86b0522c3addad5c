//! FasterKV's hash index through its public API: real keys against a model, and threads racing
//! to create the same tags, to CAS the same entries, to grow the same chains, and to checkpoint
//! dirty chunks while others write.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Barrier;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicU64, AtomicUsize};

use vellum_faster::epoch::Epoch;
use vellum_faster::kv::hash::KeyHash;
use vellum_faster::kv::index::{
    ADDRESS_UNSET, BUCKET_WORDS, CHUNK_BUCKETS, HashIndex, IndexEntry, IndexOptions,
};

fn index(bucket_count: u64, overflow_pages_max: u64) -> HashIndex {
    HashIndex::new(&IndexOptions {
        bucket_count,
        overflow_pages_max,
    })
    .unwrap()
}

/// A hash of `tag` whose low bits are `low`.
fn h(tag: u16, low: u64) -> KeyHash {
    KeyHash::from_raw(u64::from(tag) << 50 | low)
}

/// Every final entry as `(main bucket, tag) -> addresses`.
fn entries_by_tag(idx: &HashIndex) -> BTreeMap<(usize, u16), Vec<u64>> {
    let mut all: BTreeMap<(usize, u16), Vec<u64>> = BTreeMap::new();
    idx.for_each_entry(|bucket, e| {
        all.entry((bucket, e.entry().tag()))
            .or_default()
            .push(e.address())
    });
    all
}

/// Overflow buckets linked into chains, counted from the chunk images.
fn linked_overflow_buckets(idx: &HashIndex) -> u64 {
    let main_words = (idx.bucket_count() as usize).min(CHUNK_BUCKETS) * BUCKET_WORDS;
    (0..idx.chunk_count())
        .map(|c| ((idx.chunk_words(c).len() - main_words) / BUCKET_WORDS) as u64)
        .sum()
}

/// Two real keys whose hashes agree on bucket and tag share one entry: the index keeps no keys,
/// the log's hash chain of records tells them apart.
#[test]
fn real_keys_with_the_same_bucket_and_tag_share_an_entry() {
    let idx = index(1, 0);
    let mut by_tag = HashMap::new();
    let (first, second) = (0u32..)
        .map(|i| format!("key-{i}"))
        .find_map(|key| {
            let tag = KeyHash::of(key.as_bytes()).tag();
            by_tag
                .insert(tag, key.clone())
                .map(|earlier| (earlier, key))
        })
        .unwrap();
    assert_ne!(first, second);
    let epoch = Epoch::new();
    let guard = epoch.protect();
    let a = idx
        .find_or_create(KeyHash::of(first.as_bytes()), &guard)
        .unwrap();
    let b = idx
        .find_or_create(KeyHash::of(second.as_bytes()), &guard)
        .unwrap();
    assert!(a.same_slot(&b));
    assert_eq!(idx.entry_count(), 1);
}

/// Ten thousand real keys against a model: one entry per distinct (bucket, tag).
#[test]
fn real_keys_get_one_entry_per_bucket_and_tag() {
    let epoch = Epoch::new();
    let guard = epoch.protect();
    let idx = index(1024, 16);
    let mut model = HashMap::new();
    for i in 0u64..10_000 {
        let hash = KeyHash::of(&i.to_le_bytes());
        let mut e = idx.find_or_create(hash, &guard).unwrap();
        let current = e.entry();
        e.compare_exchange(current, i + 2).unwrap();
        model.insert((hash.bucket(1023), hash.tag()), i + 2);
    }
    assert_eq!(idx.entry_count(), model.len() as u64);
    let entries = entries_by_tag(&idx);
    assert_eq!(entries.len(), model.len());
    for (key, address) in &model {
        assert_eq!(entries[key], vec![*address]);
    }
    for i in 0u64..10_000 {
        let hash = KeyHash::of(&i.to_le_bytes());
        let expected = model[&(hash.bucket(1023), hash.tag())];
        assert_eq!(idx.find(hash).unwrap().address(), expected);
    }
    // 10 000 keys over 1 024 buckets average under 10 a bucket: some chains overflow.
    assert!(idx.overflow_stats().allocated > 0);
    assert_eq!(
        idx.overflow_stats().allocated,
        linked_overflow_buckets(&idx)
    );
}

/// Threads that meet before each step, so that they start it together (a barrier per step
/// would cost a futex wait each; this spins, then yields to threads not yet running).
struct Rendezvous {
    arrived: Vec<AtomicUsize>,
    threads: usize,
}

impl Rendezvous {
    fn new(steps: usize, threads: usize) -> Rendezvous {
        let arrived = (0..steps).map(|_| AtomicUsize::new(0)).collect();
        Rendezvous { arrived, threads }
    }

    /// Waits until every thread has reached `step`. Every thread must meet the steps in the
    /// same order.
    fn meet(&self, step: usize) {
        self.arrived[step].fetch_add(1, SeqCst);
        let mut spins = 0u32;
        while self.arrived[step].load(SeqCst) < self.threads {
            spins += 1;
            if spins < 200 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }
}

/// `threads` threads create the same 40 new tags (ten per bucket of four, so chains overflow),
/// starting each tag together, and CAS their thread number into the entry they got. Exactly one
/// CAS per tag wins, which holds only if every thread got the same slot. Each round takes the
/// tags in another order.
fn race_to_create(threads: usize, rounds: usize) {
    let epoch = Epoch::new();
    let tags: Vec<KeyHash> = (0..40u16)
        .map(|t| h(t * 409 + 1, u64::from(t % 4)))
        .collect();
    for round in 0..rounds {
        let idx = index(4, 1);
        let rendezvous = Rendezvous::new(tags.len(), threads);
        let stride = [1, 3, 7, 9, 11, 13, 17, 19][round % 8];
        let order: Vec<usize> = (0..tags.len())
            .map(|i| (i * stride + round) % tags.len())
            .collect();
        let wins: Vec<Vec<usize>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (idx, rendezvous, epoch, tags, order) =
                        (&idx, &rendezvous, &epoch, &tags, &order);
                    s.spawn(move || {
                        let guard = epoch.protect();
                        let mut won = Vec::new();
                        for (step, &k) in order.iter().enumerate() {
                            rendezvous.meet(step);
                            let mut e = idx.find_or_create(tags[k], &guard).unwrap();
                            let unset = IndexEntry::new(ADDRESS_UNSET, tags[k].tag(), false);
                            if e.compare_exchange(unset, t as u64 + 2).is_ok() {
                                won.push(k);
                            }
                        }
                        won
                    })
                })
                .collect();
            handles.into_iter().map(|j| j.join().unwrap()).collect()
        });
        let mut winner = vec![None; tags.len()];
        for (t, won) in wins.iter().enumerate() {
            for &k in won {
                assert_eq!(winner[k], None, "round {round}: tag {k} won twice");
                winner[k] = Some(t);
            }
        }
        assert_eq!(idx.entry_count(), 40, "round {round}");
        assert_eq!(idx.tentative_count(), 0, "round {round}");
        for (k, hash) in tags.iter().enumerate() {
            let t = winner[k].unwrap();
            assert_eq!(idx.find(*hash).unwrap().address(), t as u64 + 2);
        }
        let entries = entries_by_tag(&idx);
        assert_eq!(entries.len(), 40);
        assert!(entries.values().all(|a| a.len() == 1));
        assert_eq!(
            idx.overflow_stats().allocated,
            linked_overflow_buckets(&idx)
        );
    }
}

#[test]
fn two_threads_creating_the_same_tags_get_one_entry_each() {
    race_to_create(2, 300);
}

#[test]
fn eight_threads_creating_the_same_tags_get_one_entry_each() {
    race_to_create(8, 60);
}

/// Threads CAS-increment the addresses of the same 16 entries; none is lost.
#[test]
fn concurrent_compare_exchange_increments_add_up() {
    const THREADS: u64 = 4;
    const INCREMENTS: u64 = 4_800; // a multiple of the 16 entries: each thread adds 300 to each
    let epoch = Epoch::new();
    let idx = index(8, 1);
    let hashes: Vec<KeyHash> = (0..16u16).map(|t| h(t, u64::from(t))).collect();
    {
        let guard = epoch.protect();
        for hash in &hashes {
            idx.find_or_create(*hash, &guard).unwrap();
        }
    }
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (idx, hashes) = (&idx, &hashes);
            s.spawn(move || {
                for i in 0..INCREMENTS {
                    let k = ((i + t) % hashes.len() as u64) as usize;
                    let mut e = idx.find(hashes[k]).unwrap();
                    loop {
                        let current = e.entry();
                        if e.compare_exchange(current, current.address() + 1).is_ok() {
                            break;
                        }
                    }
                }
            });
        }
    });
    let per_entry = THREADS * INCREMENTS / hashes.len() as u64;
    for hash in &hashes {
        assert_eq!(
            idx.find(*hash).unwrap().address(),
            ADDRESS_UNSET + per_entry
        );
    }
    assert_eq!(idx.entry_count(), 16);
}

/// Threads create the same 400 tags in two buckets, starting each tag together, so chains grow
/// under races to link an overflow bucket: every tag ends with one entry and no allocated bucket
/// is left unlinked.
#[test]
fn racing_chain_growth_leaks_no_overflow_bucket() {
    const THREADS: usize = 4;
    let epoch = Epoch::new();
    let idx = index(2, 4);
    let rendezvous = Rendezvous::new(400, THREADS);
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            let (idx, epoch, rendezvous) = (&idx, &epoch, &rendezvous);
            s.spawn(move || {
                let guard = epoch.protect();
                for tag in 0..400u16 {
                    rendezvous.meet(usize::from(tag));
                    idx.find_or_create(h(tag, u64::from(tag % 2)), &guard)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(idx.entry_count(), 400);
    assert_eq!(idx.tentative_count(), 0);
    assert!(
        entries_by_tag(&idx)
            .values()
            .all(|a| a == &vec![ADDRESS_UNSET])
    );
    let stats = idx.overflow_stats();
    assert_eq!(stats.allocated, linked_overflow_buckets(&idx));
    // 200 tags a bucket need at least 28 overflow buckets each; back-offs may leave more.
    assert!(stats.allocated >= 56, "{stats:?}");
}

/// A checkpointer copies only dirty chunks, clearing each flag first, while writers change the
/// index: first creating 6 000 keys' entries (and setting their addresses), then, after a pass
/// that copies every dirty chunk, only CAS-ing addresses. One last pass after the writers stop
/// leaves copies equal to the index: no change slipped between a flag and a copy, in either
/// phase.
#[test]
fn copying_dirty_chunks_during_writes_misses_no_change() {
    const WRITERS: u64 = 2;
    const KEYS: u64 = 6_000;
    let epoch = Epoch::new();
    let idx = index(4096, 8);
    let mut copies: Vec<Vec<u64>> = (0..idx.chunk_count()).map(|c| idx.chunk_words(c)).collect();
    let done = AtomicU64::new(0);
    let phase = Barrier::new(WRITERS as usize + 1);
    let write = |w: u64, ops: std::ops::Range<u64>| {
        let guard = epoch.protect();
        for i in ops {
            let n = i * WRITERS + w;
            let hash = KeyHash::of(&(n % KEYS).to_le_bytes());
            let mut e = idx.find_or_create(hash, &guard).unwrap();
            let current = e.entry();
            let _ = e.compare_exchange(current, n + 2);
        }
    };
    std::thread::scope(|s| {
        for w in 0..WRITERS {
            let (write, done, phase) = (&write, &done, &phase);
            s.spawn(move || {
                write(w, 0..KEYS / WRITERS);
                phase.wait();
                phase.wait();
                write(w, KEYS / WRITERS..4 * KEYS / WRITERS);
                done.fetch_add(1, SeqCst);
            });
        }
        while copy_dirty(&idx, &mut copies) == 0 {}
        phase.wait();
        // Every creation is done: after this pass every chunk is clean, so what the copies miss
        // from now on must be flagged by the CASes alone.
        copy_dirty(&idx, &mut copies);
        assert_eq!(
            (0..idx.chunk_count())
                .filter(|&c| idx.chunk_is_dirty(c))
                .count(),
            0
        );
        phase.wait();
        while done.load(SeqCst) < WRITERS {
            copy_dirty(&idx, &mut copies);
        }
    });
    copy_dirty(&idx, &mut copies);
    let live: Vec<Vec<u64>> = (0..idx.chunk_count()).map(|c| idx.chunk_words(c)).collect();
    assert_eq!(copies, live);
    let options = IndexOptions {
        bucket_count: 4096,
        overflow_pages_max: 8,
    };
    let restored = HashIndex::from_chunks(&options, &copies).unwrap();
    assert_eq!(entries_by_tag(&restored), entries_by_tag(&idx));
    let model: HashSet<(usize, u16)> = (0..KEYS)
        .map(|k| KeyHash::of(&k.to_le_bytes()))
        .map(|hash| (hash.bucket(4095), hash.tag()))
        .collect();
    assert_eq!(idx.entry_count(), model.len() as u64);
    assert_eq!(restored.entry_count(), model.len() as u64);
}

/// Copies every dirty chunk, clearing its flag first; returns how many.
fn copy_dirty(idx: &HashIndex, copies: &mut [Vec<u64>]) -> usize {
    let mut copied = 0;
    for (c, copy) in copies.iter_mut().enumerate() {
        if idx.take_dirty(c) {
            *copy = idx.chunk_words(c);
            copied += 1;
        }
    }
    copied
}
