//! The segment allocator against a model: random allocate/free never hands out a slot twice,
//! reuses freed space before adding segments (once a segment is free enough to refill), and
//! `rebuild` from the live set gives the same free map. Large nodes (extents of the large class)
//! are allocated among the small slots; `tests/extent_model.rs` checks the extents themselves against a reference model.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vellum::Error;
use vellum::alloc::{
    AllocOptions, CLASS_COUNT, LARGE_CLASS, Location, SMALL_SLOT_BYTES_MAX, SegmentAllocator,
    class_unit_bytes, segment_bytes,
};

const CLASSES: [u8; 3] = [0, 3, 12];

#[derive(Debug, Clone)]
enum Op {
    Alloc(u8),
    /// A large node of this many bytes.
    AllocLarge(u64),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::sample::select(CLASSES.to_vec()).prop_map(Op::Alloc),
        1 => (SMALL_SLOT_BYTES_MAX + 1..=24 << 20).prop_map(Op::AllocLarge),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

/// A live slot or extent: its location and the length of the version it holds.
type Live = (Location, u64);

fn overlaps(&(a, a_len): &Live, &(b, b_len): &Live) -> bool {
    a.class == b.class
        && a.file == b.file
        && a.range(a_len).start < b.range(b_len).end
        && b.range(b_len).start < a.range(a_len).end
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn allocator_matches_model(ops in prop::collection::vec(op(), 1..400)) {
        let options = AllocOptions { file_bytes_max: 64 << 20 };
        let a = SegmentAllocator::new(options).unwrap();
        let mut live: Vec<Live> = Vec::new();
        let mut peak = [0u64; CLASS_COUNT];
        for op in ops {
            match op {
                Op::Alloc(class) => {
                    let loc = a.allocate(class).unwrap().location;
                    prop_assert_eq!(loc.class, class);
                    prop_assert!(loc.offset.is_multiple_of(class_unit_bytes(class)));
                    let new = (loc, 0);
                    prop_assert!(!live.iter().any(|l| overlaps(l, &new)), "{:?} handed out twice", loc);
                    live.push(new);
                    let n = live.iter().filter(|(l, _)| l.class == class).count() as u64;
                    peak[class as usize] = peak[class as usize].max(n);
                }
                Op::AllocLarge(len) => {
                    let loc = a.allocate_extent(len).unwrap().location;
                    prop_assert_eq!(loc.class, LARGE_CLASS);
                    prop_assert_eq!(loc.misplaced(len), None);
                    let new = (loc, len);
                    prop_assert!(!live.iter().any(|l| overlaps(l, &new)), "{:?} handed out twice", loc);
                    live.push(new);
                }
                Op::Free(i) => {
                    if live.is_empty() { continue; }
                    let (loc, _) = live.swap_remove(i % live.len());
                    a.free(loc).unwrap();
                    let what = if loc.class == LARGE_CLASS { "extent" } else { "slot" };
                    prop_assert!(
                        matches!(a.free(loc), Err(Error::InvalidArgument(m))
                            if m == format!("free of {loc:?}: not an allocated {what}")),
                        "double free refused"
                    );
                }
            }
        }
        for class in CLASSES {
            let per_segment = segment_bytes(class) / class_unit_bytes(class);
            let space = a.space(class);
            // Free space is reused: a new segment is added only when every other segment has
            // fewer than `refill_slots_min` free slots, so each of them holds at least
            // `per_segment - refill + 1` used slots (more than half the segment for slots under
            // a page; every slot for the others, as before refilling waited for half).
            let refill = u64::from(SegmentAllocator::refill_slots_min(class));
            let bound = match peak[class as usize] {
                0 => 0,
                p => (p - 1) / (per_segment - refill + 1) + 1,
            };
            prop_assert!(space.segments <= bound, "class {}: {} segments for a peak of {}", class, space.segments, peak[class as usize]);
            if refill == 1 {
                prop_assert!(space.segments <= peak[class as usize].div_ceil(per_segment));
            }
            prop_assert_eq!(space.used_slots, live.iter().filter(|(l, _)| l.class == class).count() as u64);
        }
        let large: Vec<u64> = live.iter().filter(|(l, _)| l.class == LARGE_CLASS).map(|&(l, len)| l.slot_bytes(len)).collect();
        prop_assert_eq!(a.space(LARGE_CLASS).used_bytes, large.iter().sum::<u64>());
        prop_assert_eq!(a.space(LARGE_CLASS).used_slots, large.len() as u64);
        for (loc, _) in &live {
            prop_assert!(a.is_allocated(*loc));
        }
        let mut segments = [0u64; CLASS_COUNT];
        for (c, s) in segments.iter_mut().enumerate() {
            *s = a.segment_count(c as u8);
        }
        let rebuilt = SegmentAllocator::rebuild(options, &segments, live.iter().copied()).unwrap();
        for class in 0..CLASS_COUNT as u8 {
            prop_assert_eq!(rebuilt.free_map(class), a.free_map(class), "class {}", class);
            prop_assert_eq!(rebuilt.space(class).used_slots, a.space(class).used_slots);
        }
        prop_assert_eq!(rebuilt.free_runs(), a.free_runs());
        prop_assert_eq!(rebuilt.check_extents(), Ok(()));
    }
}

#[test]
fn rebuild_rejects_two_versions_on_one_slot() {
    let options = AllocOptions::default();
    let mut segments = [0u64; CLASS_COUNT];
    segments[0] = 1;
    let loc = Location {
        class: 0,
        file: 0,
        offset: 128,
    };
    let err = SegmentAllocator::rebuild(options, &segments, [(loc, 64), (loc, 64)]).unwrap_err();
    assert!(err.to_string().contains("two live versions"), "{err}");
    let outside = Location {
        class: 0,
        file: 3,
        offset: 0,
    };
    assert!(matches!(
        SegmentAllocator::rebuild(options, &segments, [(outside, 64)]),
        Err(Error::InvalidArgument(m))
            if m == "rebuild: live location c0/f3@0 lies outside the data files"
    ));
}

#[test]
fn freed_slots_are_distinct_from_live_ones_under_churn() {
    let a = SegmentAllocator::new(AllocOptions::default()).unwrap();
    let mut live = BTreeSet::new();
    for round in 0..50_000u64 {
        if round % 3 == 2 {
            let first = *live.iter().next().unwrap();
            live.remove(&first);
            a.free(first).unwrap();
        } else {
            assert!(live.insert(a.allocate(2).unwrap().location));
        }
    }
    assert_eq!(a.space(2).used_slots, live.len() as u64);
}
