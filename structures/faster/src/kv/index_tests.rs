//! Tests of the hash index (`index.rs`): entry packing, the tentative-entry protocol under
//! racing threads, overflow chains, chunk images and their refusals.

use super::*;
use crate::epoch::Epoch;

/// A hash of `tag` whose low bits are `low` (the bucket, under a small mask).
fn h(tag: u16, low: u64) -> KeyHash {
    KeyHash::from_raw(u64::from(tag) << 50 | low)
}

fn index(bucket_count: u64, overflow_pages_max: u64) -> HashIndex {
    HashIndex::new(&IndexOptions {
        bucket_count,
        overflow_pages_max,
    })
    .unwrap()
}

/// Creates `tag` in bucket `low` and sets its address to `address`.
fn put(index: &HashIndex, epoch: &Epoch, tag: u16, low: u64, address: u64) {
    let guard = epoch.protect();
    let mut e = index.find_or_create(h(tag, low), &guard).unwrap();
    let current = e.entry();
    e.compare_exchange(current, address).unwrap();
}

fn address_of(index: &HashIndex, tag: u16, low: u64) -> Option<u64> {
    index.find(h(tag, low)).map(|e| e.address())
}

fn dirty_flags(index: &HashIndex) -> Vec<bool> {
    (0..index.chunk_count())
        .map(|c| index.chunk_is_dirty(c))
        .collect()
}

#[test]
fn entry_masks_have_the_documented_values() {
    assert_eq!(ADDRESS_MASK, 0x0000_ffff_ffff_ffff);
    assert_eq!(ADDRESS_MAX, (1 << 48) - 1);
    assert_eq!(ENTRY_TAG_MASK, 0x3fff_0000_0000_0000);
    assert_eq!(TENTATIVE_BIT, 0x4000_0000_0000_0000);
    assert_eq!(RESERVED_BIT, 0x8000_0000_0000_0000);
}

#[test]
fn entry_bits_round_trip() {
    let cases = [
        (1, 0, false, 0x0000_0000_0000_0001),
        (ADDRESS_MAX, 0x3fff, true, 0x7fff_ffff_ffff_ffff),
        (0x1234_5678_9abc, 0x2af3, false, 0x2af3_1234_5678_9abc),
        (0, 1, true, 0x4001_0000_0000_0000),
    ];
    for (address, tag, tentative, word) in cases {
        let e = IndexEntry::new(address, tag, tentative);
        assert_eq!(e.word(), word);
        assert_eq!(IndexEntry::from_word(word), e);
        assert_eq!(e.address(), address);
        assert_eq!(e.tag(), tag);
        assert_eq!(e.is_tentative(), tentative);
        assert!(!e.is_free());
        assert!(!e.reserved_bit());
    }
    assert_eq!(IndexEntry::new(0, 0, false), IndexEntry::FREE);
    assert!(IndexEntry::FREE.is_free());
    assert!(IndexEntry::from_word(RESERVED_BIT).reserved_bit());
}

#[test]
#[should_panic(expected = "48 bits")]
fn an_address_past_48_bits_is_refused() {
    IndexEntry::new(ADDRESS_MAX + 1, 0, false);
}

#[test]
#[should_panic(expected = "14 bits")]
fn a_tag_past_14_bits_is_refused() {
    IndexEntry::new(1, 1 << 14, false);
}

#[test]
fn buckets_are_aligned_cache_lines() {
    let idx = index(2048, 1);
    for c in 0..idx.chunk_count() {
        let chunk = idx.chunk_buckets(c);
        for b in [0, 1, 1023] {
            assert_eq!(std::ptr::from_ref(&chunk[b]) as usize % 64, 0);
        }
    }
    let (_, bucket) = idx.overflow.alloc().unwrap();
    assert_eq!(std::ptr::from_ref(bucket) as usize % 64, 0);
}

#[test]
fn options_are_checked_with_structured_errors() {
    let opts = |bucket_count, overflow_pages_max| IndexOptions {
        bucket_count,
        overflow_pages_max,
    };
    for bucket_count in [0, 3, 1000, (1 << 40) + 1] {
        assert_eq!(
            HashIndex::new(&opts(bucket_count, 1)).unwrap_err(),
            IndexError::BucketCountNotPowerOfTwo { bucket_count }
        );
    }
    assert_eq!(
        HashIndex::new(&opts(1 << 41, 1)).unwrap_err(),
        IndexError::BucketCountTooLarge {
            bucket_count: 1 << 41,
            max: 1 << 40
        }
    );
    // The largest is accepted (checked without allocating 64 TiB).
    assert_eq!(opts(1 << 40, 1).bucket_count_checked().unwrap(), 1 << 40);
    assert_eq!(
        HashIndex::new(&opts(1, (1 << 20) + 1)).unwrap_err(),
        IndexError::OverflowPagesMaxTooLarge {
            pages_max: (1 << 20) + 1,
            limit: 1 << 20
        }
    );
}

#[test]
fn chunks_hold_1024_buckets_or_the_whole_smaller_table() {
    for (bucket_count, chunks, chunk_buckets) in
        [(1, 1, 1), (512, 1, 512), (1024, 1, 1024), (4096, 4, 1024)]
    {
        let idx = index(bucket_count, 0);
        assert_eq!(idx.bucket_count(), bucket_count);
        assert_eq!(idx.bucket_mask(), bucket_count - 1);
        assert_eq!(idx.chunk_count(), chunks);
        assert_eq!(idx.chunk_buckets(0).len(), chunk_buckets);
        assert_eq!(idx.memory_bytes(), bucket_count * 64);
    }
}

/// One bucket: tags 7 and beyond go to overflow buckets, seven per bucket.
#[test]
fn colliding_tags_fill_overflow_buckets_seven_each() {
    let epoch = Epoch::new();
    for n in [7u16, 8, 20, 100] {
        let idx = index(1, 1);
        let guard = epoch.protect();
        for tag in 0..n {
            let e = idx.find_or_create(h(tag, 0), &guard).unwrap();
            assert_eq!(e.entry(), IndexEntry::new(ADDRESS_UNSET, tag, false));
        }
        for tag in 0..n {
            put(&idx, &epoch, tag, 0, 1000 + u64::from(tag));
        }
        let overflow_buckets = u64::from(n.saturating_sub(7)).div_ceil(7);
        let stats = idx.overflow_stats();
        assert_eq!(stats.allocated, overflow_buckets, "n = {n}");
        assert_eq!(stats.free_count, 0);
        assert_eq!(stats.pages, u64::from(n > 7));
        assert_eq!(idx.memory_bytes(), 64 + stats.pages * 32768);
        for tag in 0..n {
            assert_eq!(address_of(&idx, tag, 0), Some(1000 + u64::from(tag)));
            // Finding again creates nothing.
            let again = idx.find_or_create(h(tag, 0), &guard).unwrap();
            assert_eq!(again.address(), 1000 + u64::from(tag));
        }
        assert_eq!(address_of(&idx, n, 0), None);
        assert_eq!(
            (idx.entry_count(), idx.tentative_count()),
            (u64::from(n), 0)
        );
        assert_eq!(idx.overflow_stats().allocated, overflow_buckets);
    }
}

/// The index keeps no keys: hashes that agree on bucket and tag share one entry (the log's
/// hash chain tells their records apart); the same tag in another bucket is another entry.
#[test]
fn same_bucket_and_tag_share_an_entry() {
    let epoch = Epoch::new();
    let guard = epoch.protect();
    let idx = index(2, 0);
    let a = idx.find_or_create(h(5, 0x10), &guard).unwrap();
    let b = idx.find_or_create(h(5, 0x20), &guard).unwrap();
    assert!(a.same_slot(&b), "bucket 0, tag 5 both");
    let c = idx.find_or_create(h(5, 0x21), &guard).unwrap();
    assert!(!a.same_slot(&c), "bucket 1");
    assert_eq!(idx.entry_count(), 2);
}

#[test]
fn tentative_entries_are_invisible_to_find_and_counted_apart() {
    let epoch = Epoch::new();
    let idx = index(1, 0);
    let tentative = IndexEntry::new(ADDRESS_UNSET, 9, true);
    idx.chunk_buckets(0)[0][0].store(tentative.word(), SeqCst);
    assert!(idx.find(h(9, 0)).is_none());
    assert_eq!((idx.entry_count(), idx.tentative_count()), (0, 1));
    put(&idx, &epoch, 4, 0, 40);
    assert_eq!(
        idx.chunk_buckets(0)[0][1].load(SeqCst),
        IndexEntry::new(40, 4, false).word()
    );
    let mut seen = Vec::new();
    idx.for_each_entry(|bucket, e| seen.push((bucket, e.entry())));
    assert_eq!(seen, vec![(0, IndexEntry::new(40, 4, false))]);
}

#[test]
fn compare_exchange_keeps_the_tag_and_reports_the_actual_entry() {
    let epoch = Epoch::new();
    let idx = index(1, 0);
    put(&idx, &epoch, 3, 0, 77);
    let mut e = idx.find(h(3, 0)).unwrap();
    let stale = IndexEntry::new(ADDRESS_UNSET, 3, false);
    assert_eq!(
        e.compare_exchange(stale, 90),
        Err(IndexEntry::new(77, 3, false))
    );
    assert_eq!(e.entry(), IndexEntry::new(77, 3, false));
    assert_eq!(e.compare_exchange(e.entry(), ADDRESS_MAX), Ok(()));
    assert_eq!(e.entry(), IndexEntry::new(ADDRESS_MAX, 3, false));
    assert_eq!(address_of(&idx, 3, 0), Some(ADDRESS_MAX));
    assert_eq!(e.reload(), IndexEntry::new(ADDRESS_MAX, 3, false));
}

#[test]
#[should_panic(expected = "address 0 is not within")]
fn compare_exchange_to_address_0_is_refused() {
    let epoch = Epoch::new();
    let idx = index(1, 0);
    put(&idx, &epoch, 0, 0, 5);
    let mut e = idx.find(h(0, 0)).unwrap();
    // Tag 0 at address 0 would be word 0, a free slot (I1).
    let _ = e.compare_exchange(e.entry(), 0);
}

#[test]
fn delete_if_frees_the_slot_only_for_the_expected_entry() {
    let epoch = Epoch::new();
    let guard = epoch.protect();
    let idx = index(1, 0);
    put(&idx, &epoch, 1, 0, 11);
    put(&idx, &epoch, 2, 0, 22);
    let mut e = idx.find(h(1, 0)).unwrap();
    let stale = IndexEntry::new(ADDRESS_UNSET, 1, false);
    assert_eq!(idx.delete_if(&e, stale), Err(IndexEntry::new(11, 1, false)));
    assert_eq!(idx.delete_if(&e, e.entry()), Ok(()));
    assert_eq!(e.reload(), IndexEntry::FREE);
    assert_eq!(address_of(&idx, 1, 0), None);
    assert_eq!(idx.entry_count(), 1);
    // The freed first slot is the first free one: a new tag takes it.
    let created = idx.find_or_create(h(6, 0), &guard).unwrap();
    assert!(created.same_slot(&e));
    assert_eq!(e.reload(), IndexEntry::new(ADDRESS_UNSET, 6, false));
}

#[test]
fn mutations_mark_exactly_the_chunks_they_touch() {
    let epoch = Epoch::new();
    let guard = epoch.protect();
    let idx = index(4096, 1);
    assert_eq!(dirty_flags(&idx), vec![false; 4]);
    let mut e = idx.find_or_create(h(1, 5), &guard).unwrap();
    assert_eq!(dirty_flags(&idx), vec![true, false, false, false]);
    assert!(idx.take_dirty(0));
    assert!(!idx.take_dirty(0));
    // Reads, finding an existing entry, and failed CASes change nothing.
    assert!(idx.find(h(1, 5)).is_some());
    assert!(idx.find(h(2, 5)).is_none());
    idx.find_or_create(h(1, 5), &guard).unwrap();
    let stale = IndexEntry::new(50, 1, false);
    assert!(e.compare_exchange(stale, 60).is_err());
    assert_eq!(dirty_flags(&idx), vec![false; 4]);
    e.compare_exchange(e.entry(), 60).unwrap();
    assert_eq!(dirty_flags(&idx), vec![true, false, false, false]);
    idx.take_dirty(0);
    idx.find_or_create(h(1, 3000), &guard).unwrap();
    assert_eq!(dirty_flags(&idx), vec![false, false, true, false]);
    // Eight tags in bucket 3500: the eighth links an overflow bucket.
    for tag in 0..8 {
        idx.find_or_create(h(tag, 3500), &guard).unwrap();
    }
    assert_eq!(dirty_flags(&idx), vec![false, false, true, true]);
    assert!(idx.take_dirty(2) && idx.take_dirty(3));
    // A change in the overflow bucket marks its main bucket's chunk.
    let mut in_overflow = idx.find(h(7, 3500)).unwrap();
    in_overflow
        .compare_exchange(in_overflow.entry(), 9)
        .unwrap();
    assert_eq!(dirty_flags(&idx), vec![false, false, false, true]);
    idx.take_dirty(3);
    idx.delete_if(&in_overflow, in_overflow.entry()).unwrap();
    assert_eq!(dirty_flags(&idx), vec![false, false, false, true]);
}

fn sorted_entries(idx: &HashIndex) -> Vec<(usize, u16, u64)> {
    let mut all = Vec::new();
    idx.for_each_entry(|b, e| all.push((b, e.entry().tag(), e.address())));
    all.sort_unstable();
    all
}

fn images(idx: &HashIndex) -> Vec<Vec<u64>> {
    (0..idx.chunk_count()).map(|c| idx.chunk_words(c)).collect()
}

/// Overflow buckets allocated interleaved across two chains: the image numbers them in walk
/// order, not allocator order (I7).
#[test]
fn chunk_images_number_overflow_buckets_in_walk_order() {
    let epoch = Epoch::new();
    let idx = index(2048, 1);
    let mut address = 100;
    let mut put_n = |tags: std::ops::Range<u16>, low| {
        for tag in tags {
            address += 1;
            put(&idx, &epoch, tag, low, address);
        }
    };
    put_n(0..14, 3); // bucket 3: overflow bucket 0 of the allocator
    put_n(0..8, 7); // bucket 7: overflow bucket 1
    put_n(14..20, 3); // bucket 3: overflow bucket 2
    put_n(0..1, 1500); // chunk 1
    let image = idx.chunk_words(0);
    assert_eq!(image.len(), 1024 * 8 + 3 * 8);
    let main = 1024 * 8;
    assert_eq!(image[3 * 8 + 7], 1, "bucket 3 -> image overflow 0");
    assert_eq!(image[main + 7], 2, "-> image overflow 1");
    assert_eq!(image[main + 8 + 7], 0, "end of bucket 3's chain");
    assert_eq!(image[7 * 8 + 7], 3, "bucket 7 -> image overflow 2");
    assert_eq!(image[main + 16 + 7], 0);
    assert_eq!(image[main], IndexEntry::new(108, 7, false).word());
    assert_eq!(image[main + 8], IndexEntry::new(123, 14, false).word());
    assert_eq!(image[main + 16], IndexEntry::new(122, 7, false).word());
    assert_eq!(idx.chunk_words(1).len(), 1024 * 8);
    assert_eq!(
        idx.chunk_words(1)[476 * 8],
        IndexEntry::new(129, 0, false).word()
    );
}

#[test]
fn from_chunks_round_trips_an_index() {
    let epoch = Epoch::new();
    let idx = index(2048, 2);
    for tag in 0..40 {
        put(&idx, &epoch, tag, 3, 1000 + u64::from(tag));
    }
    for i in 0..3000u64 {
        put(&idx, &epoch, (i % 16_384) as u16, i * 7 % 2048, i + 2);
    }
    let options = IndexOptions {
        bucket_count: 2048,
        overflow_pages_max: 2,
    };
    let copy = HashIndex::from_chunks(&options, &images(&idx)).unwrap();
    assert_eq!(sorted_entries(&copy), sorted_entries(&idx));
    assert_eq!(copy.entry_count(), idx.entry_count());
    assert_eq!(images(&copy), images(&idx));
    assert_eq!(dirty_flags(&copy), vec![false, false]);
    assert_eq!(copy.overflow_stats(), idx.overflow_stats());
    for tag in 0..40 {
        assert_eq!(address_of(&copy, tag, 3), Some(1000 + u64::from(tag)));
    }
}

#[test]
fn from_chunks_drops_tentative_entries() {
    let epoch = Epoch::new();
    let idx = index(1, 1);
    for tag in 0..9 {
        put(&idx, &epoch, tag, 0, 50 + u64::from(tag));
    }
    let mut image = idx.chunk_words(0);
    image[2] = IndexEntry::new(ADDRESS_UNSET, 100, true).word();
    image[8] = IndexEntry::new(ADDRESS_UNSET, 101, true).word();
    let options = IndexOptions {
        bucket_count: 1,
        overflow_pages_max: 1,
    };
    let copy = HashIndex::from_chunks(&options, &[image]).unwrap();
    assert_eq!((copy.entry_count(), copy.tentative_count()), (7, 0));
    assert_eq!(address_of(&copy, 2, 0), None);
    assert_eq!(address_of(&copy, 7, 0), None);
    assert_eq!(address_of(&copy, 8, 0), Some(58));
    assert_eq!(copy.chunk_buckets(0)[0][2].load(SeqCst), 0);
}

#[test]
fn from_chunks_refuses_malformed_images() {
    let epoch = Epoch::new();
    let idx = index(1, 1);
    for tag in 0..8 {
        put(&idx, &epoch, tag, 0, 50 + u64::from(tag));
    }
    let good = idx.chunk_words(0);
    assert_eq!(good.len(), 16);
    let options = |overflow_pages_max| IndexOptions {
        bucket_count: 1,
        overflow_pages_max,
    };
    let refuse = |image: Vec<u64>, pages_max| {
        HashIndex::from_chunks(&options(pages_max), &[image]).unwrap_err()
    };
    let corrupt = |word, defect| IndexError::ChunkCorrupt {
        chunk: 0,
        word,
        defect,
    };
    let empty: [Vec<u64>; 0] = [];
    assert_eq!(
        HashIndex::from_chunks(&options(1), &empty).unwrap_err(),
        IndexError::ChunkCountMismatch {
            expected: 1,
            actual: 0
        }
    );
    let short = good[..15].to_vec();
    let length = ChunkDefect::Length {
        words: 15,
        main_words: 8,
    };
    assert_eq!(refuse(short, 1), corrupt(15, length));
    let mut reserved = good.clone();
    reserved[9] |= RESERVED_BIT;
    assert_eq!(refuse(reserved, 1), corrupt(9, ChunkDefect::ReservedBit));
    let mut no_address = good.clone();
    no_address[3] = IndexEntry::new(0, 3, false).word();
    assert_eq!(
        refuse(no_address, 1),
        corrupt(3, ChunkDefect::AddressMissing)
    );
    let mut pointer = good.clone();
    pointer[7] = 5;
    let bad_pointer = ChunkDefect::OverflowPointer {
        pointer: 5,
        expected: 1,
    };
    assert_eq!(refuse(pointer, 1), corrupt(7, bad_pointer));
    let beyond = good[..8].to_vec();
    let missing = ChunkDefect::OverflowPointer {
        pointer: 1,
        expected: 1,
    };
    assert_eq!(refuse(beyond, 1), corrupt(7, missing));
    let mut unreached = good.clone();
    unreached.extend_from_slice(&[0; 8]);
    let extra = ChunkDefect::UnreachableOverflow { buckets: 1 };
    assert_eq!(refuse(unreached, 1), corrupt(16, extra));
    assert_eq!(
        refuse(good, 0),
        IndexError::OverflowExhausted { pages_max: 0 }
    );
}

#[test]
fn compact_chains_unlinks_empty_overflow_buckets_and_reuses_them() {
    let epoch = Epoch::new();
    let mut idx = index(1, 1);
    for tag in 0..21 {
        put(&idx, &epoch, tag, 0, 10 + u64::from(tag));
    }
    assert_eq!(idx.compact_chains(), 0, "nothing is empty");
    // Empty the first overflow bucket (tags 7..14).
    for tag in 7..14 {
        let e = idx.find(h(tag, 0)).unwrap();
        idx.delete_if(&e, e.entry()).unwrap();
    }
    idx.take_dirty(0);
    assert_eq!(idx.overflow_stats().allocated, 2);
    assert_eq!(idx.compact_chains(), 1);
    assert!(idx.chunk_is_dirty(0));
    let stats = idx.overflow_stats();
    assert_eq!((stats.allocated, stats.free_count, stats.pages), (1, 1, 1));
    assert_eq!(idx.chunk_words(0).len(), 16, "main + one overflow bucket");
    for tag in (0..7).chain(14..21) {
        assert_eq!(address_of(&idx, tag, 0), Some(10 + u64::from(tag)));
    }
    assert_eq!(idx.entry_count(), 14);
    // Seven new tags need a bucket again: the freed one, zeroed.
    for tag in 30..37 {
        put(&idx, &epoch, tag, 0, u64::from(tag));
    }
    let stats = idx.overflow_stats();
    assert_eq!((stats.allocated, stats.free_count, stats.pages), (2, 0, 1));
    assert_eq!(idx.entry_count(), 21);
    // Emptying the last bucket of the chain unlinks it too.
    for tag in 30..37 {
        let e = idx.find(h(tag, 0)).unwrap();
        idx.delete_if(&e, e.entry()).unwrap();
    }
    assert_eq!(idx.compact_chains(), 1);
    assert_eq!(idx.chunk_words(0).len(), 16);
    assert_eq!(
        idx.chunk_words(0)[15],
        0,
        "the chain ends at its one overflow bucket"
    );
}

#[test]
fn overflow_exhaustion_is_an_error_from_find_or_create() {
    let epoch = Epoch::new();
    let guard = epoch.protect();
    let none = index(1, 0);
    for tag in 0..7 {
        none.find_or_create(h(tag, 0), &guard).unwrap();
    }
    assert_eq!(
        none.find_or_create(h(7, 0), &guard).unwrap_err(),
        IndexError::OverflowExhausted { pages_max: 0 }
    );
    assert_eq!((none.entry_count(), none.tentative_count()), (7, 0));
    // One page: 7 + 512 * 7 entries fit, the next does not.
    let one = index(1, 1);
    let fit = 7 + 512 * 7;
    for tag in 0..fit {
        one.find_or_create(h(tag, 0), &guard).unwrap();
    }
    assert_eq!(
        one.find_or_create(h(fit, 0), &guard).unwrap_err(),
        IndexError::OverflowExhausted { pages_max: 1 }
    );
    assert_eq!(one.entry_count(), u64::from(fit));
    assert_eq!(one.overflow_stats().allocated, 512);
    assert_eq!(one.memory_bytes(), 64 + 32768);
    assert!(one.find(h(fit - 1, 0)).is_some());
}

#[test]
fn changed_buckets_are_taken_exactly_once_per_change() {
    let (index, epoch) = (index(4096, 8), Epoch::new());
    // Buckets 3 and 1030 (chunks 0 and 1), and bucket 3 again.
    put(&index, &epoch, 7, 3, 100);
    put(&index, &epoch, 8, 1030, 200);
    put(&index, &epoch, 9, 3, 300);
    assert_eq!(index.take_dirty_buckets(0), vec![3]);
    assert_eq!(index.take_dirty_buckets(1), vec![1030]);
    assert_eq!(
        index.take_dirty_buckets(0),
        Vec::<usize>::new(),
        "taken: clear"
    );
    assert_eq!(index.take_dirty_buckets(2), Vec::<usize>::new());
    // A failed checkpoint sets them again.
    index.mark_bucket_dirty(1030);
    index.mark_bucket_dirty(2047);
    assert_eq!(index.take_dirty_buckets(1), vec![1030, 2047]);
    // A compare-exchange sets the bit of its main bucket, whichever bucket of the chain the
    // entry is in.
    for tag in 10..20 {
        put(&index, &epoch, tag, 5, 400);
    }
    assert_eq!(index.take_dirty_buckets(0), vec![5]);
    let mut e = index.find(h(19, 5)).unwrap();
    let now = e.entry();
    e.compare_exchange(now, 500).unwrap();
    assert_eq!(index.take_dirty_buckets(0), vec![5]);
}

#[test]
fn a_chain_image_replaces_a_chain_with_its_overflow_buckets() {
    let (source, epoch) = (index(64, 8), Epoch::new());
    // 12 tags in bucket 9: the main bucket and one overflow bucket.
    for tag in 1..=12 {
        put(&source, &epoch, tag, 9, 1000 + u64::from(tag));
    }
    let image = source.chain_words(9);
    assert_eq!(image.len(), 2 * BUCKET_WORDS);
    assert_eq!(
        (image[OVERFLOW_WORD], image[BUCKET_WORDS + OVERFLOW_WORD]),
        (1, 0)
    );
    // Into an index whose bucket 9 holds other tags in a chain of three buckets.
    let target = index(64, 8);
    for tag in 100..120 {
        put(&target, &epoch, tag, 9, 7);
    }
    let allocated = target.overflow_stats().allocated;
    target.replace_chain(9, &image).unwrap();
    for tag in 1..=12 {
        assert_eq!(
            address_of(&target, tag, 9),
            Some(1000 + u64::from(tag)),
            "tag {tag}"
        );
    }
    assert_eq!(address_of(&target, 100, 9), None);
    assert_eq!(target.entry_count(), 12);
    assert_eq!(allocated, 2);
    let stats = target.overflow_stats();
    assert_eq!(
        (stats.allocated, stats.free_count),
        (1, 1),
        "one in use, one freed"
    );
    // Refused: a length that is no whole bucket, a pointer that is not the next bucket.
    assert!(matches!(
        target.replace_chain(9, &image[..10]),
        Err((10, ChunkDefect::Length { .. }))
    ));
    let mut bad = image.clone();
    bad[OVERFLOW_WORD] = 2;
    assert_eq!(
        target.replace_chain(9, &bad),
        Err((
            OVERFLOW_WORD,
            ChunkDefect::OverflowPointer {
                pointer: 2,
                expected: 1
            }
        ))
    );
}
