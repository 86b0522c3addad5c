//! The segment allocator against a model: random allocate/free never hands out a slot twice,
//! reuses freed space before adding segments, and `rebuild` from the live set gives the same
//! free map.

use std::collections::BTreeSet;

use proptest::prelude::*;
use vellum::alloc::{
    AllocOptions, CLASS_COUNT, Location, SegmentAllocator, class_slot_bytes, segment_bytes,
};

const CLASSES: [u8; 4] = [0, 3, 12, 16];

#[derive(Debug, Clone)]
enum Op {
    Alloc(u8),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => prop::sample::select(CLASSES.to_vec()).prop_map(Op::Alloc),
        2 => any::<usize>().prop_map(Op::Free),
    ]
}

fn overlaps(a: &Location, b: &Location) -> bool {
    a.class == b.class
        && a.file == b.file
        && a.range().start < b.range().end
        && b.range().start < a.range().end
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn allocator_matches_model(ops in prop::collection::vec(op(), 1..400)) {
        let options = AllocOptions { file_bytes_max: 64 << 20 };
        let a = SegmentAllocator::new(options).unwrap();
        let mut live: Vec<Location> = Vec::new();
        let mut peak = [0u64; CLASS_COUNT];
        for op in ops {
            match op {
                Op::Alloc(class) => {
                    let loc = a.allocate(class).unwrap().location;
                    prop_assert_eq!(loc.class, class);
                    prop_assert!(loc.offset.is_multiple_of(class_slot_bytes(class)));
                    prop_assert!(!live.iter().any(|l| overlaps(l, &loc)), "{:?} handed out twice", loc);
                    live.push(loc);
                    let n = live.iter().filter(|l| l.class == class).count() as u64;
                    peak[class as usize] = peak[class as usize].max(n);
                }
                Op::Free(i) => {
                    if live.is_empty() { continue; }
                    let loc = live.swap_remove(i % live.len());
                    a.free(loc).unwrap();
                    prop_assert!(a.free(loc).is_err(), "double free refused");
                }
            }
        }
        for class in CLASSES {
            let per_segment = segment_bytes(class) / class_slot_bytes(class);
            let space = a.space(class);
            // Free space is reused: a new segment is added only when every slot is in use.
            prop_assert!(space.segments <= peak[class as usize].div_ceil(per_segment));
            prop_assert_eq!(space.used_slots, live.iter().filter(|l| l.class == class).count() as u64);
        }
        for loc in &live {
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
    let err = SegmentAllocator::rebuild(options, &segments, [loc, loc]).unwrap_err();
    assert!(err.to_string().contains("two live versions"), "{err}");
    let outside = Location {
        class: 0,
        file: 3,
        offset: 0,
    };
    assert!(SegmentAllocator::rebuild(options, &segments, [outside]).is_err());
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
