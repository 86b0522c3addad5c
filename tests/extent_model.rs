//! The large class's extent allocator against a reference model: a plain map of the allocated
//! extents, from which the free runs, the best-fit choice and the unpunched space are computed
//! by brute force. Every allocation lands exactly where best fit says (the shortest free run
//! that holds it, lowest address among equals, a new region only when none does), no two extents
//! share a unit, frees coalesce, a punch returns exactly the units freed since the last one, and
//! `rebuild` from the live extents gives the same free runs.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vellum::Error;
use vellum::alloc::{
    AllocOptions, CLASS_COUNT, EXTENT_UNIT_BYTES, LARGE_CLASS, Location, REGION_BYTES,
    REGION_UNITS, SMALL_SLOT_BYTES_MAX, SegmentAllocator,
};

/// Files of two regions, so extents roll over into new files.
const FILE_BYTES: u64 = 2 * REGION_BYTES;

#[derive(Debug, Clone)]
enum Op {
    Alloc(u64),
    Free(usize),
    Punch,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (SMALL_SLOT_BYTES_MAX + 1..=4 << 20).prop_map(Op::Alloc),
        2 => ((4u64 << 20) + 1..=24 << 20).prop_map(Op::Alloc),
        1 => Just(Op::Alloc(64 << 20)),
        5 => any::<usize>().prop_map(Op::Free),
        1 => Just(Op::Punch),
    ]
}

/// The reference: allocated extents `(region, start unit) -> units`, and the units freed since
/// they were last punched (per region, a set of units).
#[derive(Default)]
struct Model {
    regions: u32,
    used: BTreeMap<(u32, u32), u32>,
    unpunched: BTreeMap<u32, std::collections::BTreeSet<u32>>,
}

impl Model {
    /// Maximal free runs `(region, start, units)` in address order.
    fn free_runs(&self) -> Vec<(u32, u32, u32)> {
        let mut out = Vec::new();
        for region in 0..self.regions {
            let mut at = 0;
            for (&(_, s), &l) in self.used.range((region, 0)..(region + 1, 0)) {
                if s > at {
                    out.push((region, at, s - at));
                }
                at = s + l;
            }
            if at < REGION_UNITS {
                out.push((region, at, REGION_UNITS - at));
            }
        }
        out
    }

    /// Best fit: the shortest run that holds `units`, lowest address among equals; else a new
    /// region.
    fn choose(&self, units: u32) -> (u32, u32) {
        self.free_runs()
            .into_iter()
            .filter(|&(_, _, l)| l >= units)
            .min_by_key(|&(r, s, l)| (l, r, s))
            .map_or((self.regions, 0), |(r, s, _)| (r, s))
    }

    /// Maximal runs of unpunched units `(region, start, units)`, in address order.
    fn unpunched_runs(&self) -> Vec<(u32, u32, u32)> {
        let mut out: Vec<(u32, u32, u32)> = Vec::new();
        for (&region, units) in &self.unpunched {
            for &u in units {
                match out.last_mut() {
                    Some((r, s, l)) if *r == region && *s + *l == u => *l += 1,
                    _ => out.push((region, u, 1)),
                }
            }
        }
        out
    }
}

fn location(region: u32, start: u32) -> Location {
    let per_file = (FILE_BYTES / REGION_BYTES) as u32;
    Location {
        class: LARGE_CLASS,
        file: region / per_file,
        offset: u64::from(region % per_file) * REGION_BYTES + u64::from(start) * EXTENT_UNIT_BYTES,
    }
}

fn region_and_start(loc: Location) -> (u32, u32) {
    let per_file = FILE_BYTES / REGION_BYTES;
    let region = u64::from(loc.file) * per_file + loc.offset / REGION_BYTES;
    (
        region as u32,
        ((loc.offset % REGION_BYTES) / EXTENT_UNIT_BYTES) as u32,
    )
}

fn allocator_runs(a: &SegmentAllocator) -> Vec<(u32, u32, u32)> {
    a.free_runs()
        .into_iter()
        .map(|(loc, bytes)| {
            let (r, s) = region_and_start(loc);
            (r, s, (bytes / EXTENT_UNIT_BYTES) as u32)
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn extents_match_the_reference_model(ops in prop::collection::vec(op(), 1..300)) {
        let options = AllocOptions { file_bytes_max: FILE_BYTES };
        let a = SegmentAllocator::new(options).unwrap();
        let mut m = Model::default();
        // Live extents in allocation order, with their lengths.
        let mut live: Vec<(Location, u64)> = Vec::new();
        for op in ops {
            match op {
                Op::Alloc(len) => {
                    let units = len.div_ceil(EXTENT_UNIT_BYTES) as u32;
                    let (region, start) = m.choose(units);
                    let got = a.allocate_extent(len).unwrap();
                    prop_assert_eq!(got.location, location(region, start), "best fit for {} bytes", len);
                    let back = got.back.unwrap();
                    prop_assert_eq!((back.offset, back.len), (got.location.offset, u64::from(units) * EXTENT_UNIT_BYTES));
                    m.regions = m.regions.max(region + 1);
                    m.used.insert((region, start), units);
                    if let Some(set) = m.unpunched.get_mut(&region) {
                        for u in start..start + units {
                            set.remove(&u);
                        }
                    }
                    live.push((got.location, len));
                }
                Op::Free(i) => {
                    if live.is_empty() {
                        continue;
                    }
                    let (loc, _) = live.swap_remove(i % live.len());
                    a.free(loc).unwrap();
                    prop_assert!(
                        matches!(a.free(loc), Err(Error::InvalidArgument(m))
                            if m == format!("free of {loc:?}: not an allocated extent")),
                        "double free refused"
                    );
                    let (region, start) = region_and_start(loc);
                    let units = m.used.remove(&(region, start)).unwrap();
                    m.unpunched.entry(region).or_default().extend(start..start + units);
                }
                Op::Punch => {
                    let mut punched = Vec::new();
                    a.return_empty(usize::MAX, 0, |run| {
                        punched.push(*run);
                        Ok(())
                    })
                    .unwrap();
                    let mut got: Vec<(u32, u32, u32)> = punched
                        .iter()
                        .map(|run| {
                            prop_assert_eq!(run.class, LARGE_CLASS);
                            let (r, s) = region_and_start(Location { class: run.class, file: run.file, offset: run.offset });
                            Ok((r, s, (run.len / EXTENT_UNIT_BYTES) as u32))
                        })
                        .collect::<Result<_, TestCaseError>>()?;
                    got.sort_unstable();
                    prop_assert_eq!(got, m.unpunched_runs(), "a punch returns exactly the freed units");
                    m.unpunched.clear();
                }
            }
            prop_assert_eq!(a.check_extents(), Ok(()));
            prop_assert_eq!(allocator_runs(&a), m.free_runs());
            let space = a.extent_space();
            let used: u64 = m.used.values().map(|&u| u64::from(u) * EXTENT_UNIT_BYTES).sum();
            prop_assert_eq!(space.used_bytes, used);
            prop_assert_eq!(space.extents, m.used.len() as u64);
            prop_assert_eq!(space.regions, u64::from(m.regions));
            let unpunched: u64 = m.unpunched.values().map(|s| s.len() as u64).sum();
            prop_assert_eq!(space.unpunched_bytes, unpunched * EXTENT_UNIT_BYTES);
        }
        // No two live extents share a unit (the model's map would have refused the insert, but
        // check the allocator's locations directly too).
        let mut ranges: Vec<(u32, u64, u64)> = live
            .iter()
            .map(|&(l, len)| (l.file, l.range(len).start, l.range(len).end))
            .collect();
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            prop_assert!(w[0].0 != w[1].0 || w[0].2 <= w[1].1, "{:?} overlaps {:?}", w[0], w[1]);
        }
        let mut segments = [0u64; CLASS_COUNT];
        segments[usize::from(LARGE_CLASS)] = u64::from(m.regions);
        let rebuilt = SegmentAllocator::rebuild(options, &segments, live.iter().copied()).unwrap();
        prop_assert_eq!(allocator_runs(&rebuilt), m.free_runs());
        prop_assert_eq!(rebuilt.extent_space().used_bytes, a.extent_space().used_bytes);
        prop_assert_eq!(rebuilt.check_extents(), Ok(()));
    }
}
