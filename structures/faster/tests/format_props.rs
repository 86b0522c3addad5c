//! Property tests of the FasterLog node formats (`design/FORMAT.md` §8), for both decoders of
//! each: `vellum-faster`'s (`Meta::decode`, `Chunk::decode`) and the inspect code's independent
//! one (`vellum::inspect::faster_log`).
//! - Arbitrary bytes, and arbitrary bytes behind a right magic and version with a right CRC32C
//!   (so the field checks run), never make either decoder panic; every refusal is a corruption.
//! - Valid nodes round-trip through `vellum-faster`, and the inspect decoder reads the same
//!   fields and page table from them.
//! - Valid nodes with bytes overwritten or cut and the CRC32C recomputed: both decoders accept
//!   exactly the same inputs, read the same page table from them, and an accepted input is the
//!   canonical encoding of what it decodes to.
//!
//! `VELLUM_FLOG_PROP_CASES` (default 256) sets the cases per property.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vellum::NodeId;
use vellum::codec::crc32c;
use vellum::inspect::faster_log::{Extents, decode_chunk_node, decode_meta_node};
use vellum_faster::chunk::{CHUNK_PAGES, Chunk, ChunkRef};
use vellum_faster::meta::{Extent, Meta};

mod common;

fn cases() -> u32 {
    common::env_u64("VELLUM_FLOG_PROP_CASES", 256) as u32
}

fn node() -> impl Strategy<Value = NodeId> {
    (1u64..=u64::from(u16::MAX), any::<u64>())
        .prop_map(|(tag, low)| NodeId::from_raw(tag << 48 | (low & ((1 << 48) - 1))).unwrap())
}

/// One page's extents: contiguous from 0, lengths multiples of 8; covering the whole page when
/// `whole`.
fn page(page_bytes: u32, whole: bool) -> impl Strategy<Value = Vec<Extent>> {
    let words = page_bytes / 8;
    (
        prop::collection::vec(1u32..=words, 1..6),
        prop::collection::vec(node(), 6),
    )
        .prop_map(move |(cuts, nodes)| {
            let mut ends: Vec<u32> = cuts.into_iter().map(|w| w * 8).collect();
            if whole {
                ends.push(page_bytes);
            }
            ends.sort_unstable();
            ends.dedup();
            let mut start = 0;
            ends.into_iter()
                .zip(nodes)
                .map(|(end, node)| {
                    let e = Extent {
                        start,
                        len: end - start,
                        node,
                    };
                    start = end;
                    e
                })
                .collect()
        })
}

fn page_bytes() -> impl Strategy<Value = u32> {
    prop_oneof![(1u32..=64).prop_map(|w| w * 8), Just(4096)]
}

fn chunk() -> impl Strategy<Value = Chunk> {
    (page_bytes(), any::<u64>(), 1..=CHUNK_PAGES).prop_flat_map(|(page_bytes, first, n)| {
        let first = first.min(u64::MAX - u64::from(n));
        prop::collection::vec(page(page_bytes, true), n as usize).prop_map(move |pages| Chunk {
            page_bytes,
            first_page: first,
            pages,
        })
    })
}

fn meta() -> impl Strategy<Value = Meta> {
    (
        page_bytes(),
        0u64..1000,
        prop::collection::vec((1..=CHUNK_PAGES, node()), 0..4),
        0u64..3,
        0u64..4096,
    )
        .prop_flat_map(|(page_bytes, begin_page, chunks, gap, begin_in_page)| {
            let p = u64::from(page_bytes);
            let begin = begin_page * p + begin_in_page.min(p - 1) / 8 * 8;
            let mut first = begin_page + gap * u64::from(chunks.is_empty());
            let chunks: Vec<ChunkRef> = chunks
                .into_iter()
                .map(|(page_count, node)| {
                    let c = ChunkRef {
                        first_page: first,
                        page_count,
                        node,
                    };
                    first = c.end();
                    c
                })
                .collect();
            (
                Just((page_bytes, begin, chunks, first)),
                prop::collection::vec(page(page_bytes, false), 0..4),
                prop::collection::vec(node(), 0..4),
                prop::collection::btree_map("[a-z]{1,10}|\\PC{1,8}", any::<u64>(), 0..3),
            )
        })
        .prop_map(
            |((page_bytes, begin, chunks, first_page), pages, retire_pending, iterators)| {
                let iterators: BTreeMap<String, u64> = iterators
                    .into_iter()
                    .filter(|(name, _)| name.len() <= 64)
                    .collect();
                let p = u64::from(page_bytes);
                let listed_end = first_page * p
                    + pages.last().map_or(0, |e: &Vec<Extent>| {
                        u64::from(e.last().map_or(0, Extent::end))
                    })
                    + p * pages.len().saturating_sub(1) as u64;
                Meta {
                    page_bytes,
                    begin,
                    committed_tail: listed_end.max(begin).max(first_page * p),
                    chunks,
                    first_page,
                    pages,
                    retire_pending,
                    iterators,
                }
            },
        )
}

/// `b` with its last four bytes set to the CRC32C of the others (when it has them).
fn reseal(mut b: Vec<u8>) -> Vec<u8> {
    if b.len() >= 4 {
        let body = b.len() - 4;
        let crc = crc32c(&b[..body]);
        b[body..].copy_from_slice(&crc.to_le_bytes());
    }
    b
}

fn extents(pages: &[Vec<Extent>]) -> Vec<Extents> {
    pages
        .iter()
        .map(|p| p.iter().map(|e| (e.start, e.len, e.node)).collect())
        .collect()
}

/// Both metadata decoders on `b`: they accept the same bytes and read the same from them.
fn check_meta(b: &[u8]) -> Result<(), TestCaseError> {
    let ours = Meta::decode(b, "m");
    let theirs = decode_meta_node(b);
    match (&ours, &theirs) {
        (Ok(m), Ok((dump, table))) => {
            prop_assert_eq!(
                (dump.page_bytes, dump.begin, dump.committed_tail),
                (m.page_bytes, m.begin, m.committed_tail)
            );
            let chunks: Vec<(u64, u32, NodeId)> = m
                .chunks
                .iter()
                .map(|c| (c.first_page, c.page_count, c.node))
                .collect();
            prop_assert_eq!(&table.chunks, &chunks);
            prop_assert_eq!(table.first_page, m.first_page);
            prop_assert_eq!(&table.pages, &extents(&m.pages));
            prop_assert_eq!(dump.retire_pending, m.retire_pending.len() as u64);
            prop_assert_eq!(&dump.iterators, &m.iterators);
            // Canonical: what decodes re-encodes to the same bytes (version 1 as version 2).
            let mut again = m.encode();
            again[8] = b[8];
            prop_assert_eq!(reseal(again), b.to_vec());
        }
        (Err(e), Err(_)) => prop_assert!(e.as_corruption().is_some(), "{}", e),
        _ => prop_assert!(false, "the decoders disagree: {:?} vs {:?}", ours, theirs),
    }
    Ok(())
}

/// Both chunk decoders on `b`, checked against the reference `r` in a log of `page_bytes`.
fn check_chunk(b: &[u8], r: &ChunkRef, page_bytes: u32) -> Result<(), TestCaseError> {
    let ours = Chunk::decode(b, "c").and_then(|c| c.check_ref(r, page_bytes, "c").map(|()| c));
    let theirs = decode_chunk_node(b, page_bytes, r.first_page, r.page_count);
    match (&ours, &theirs) {
        (Ok(c), Ok(pages)) => {
            prop_assert_eq!(pages, &extents(&c.pages));
            prop_assert_eq!(c.encode(), b.to_vec(), "canonical");
        }
        (Err(e), Err(_)) => prop_assert!(e.as_corruption().is_some(), "{}", e),
        _ => prop_assert!(false, "the decoders disagree: {:?} vs {:?}", ours, theirs),
    }
    Ok(())
}

/// A byte, or a little-endian word of a value fields often hold (zero, one, small, a page size,
/// all ones), to overwrite at some offset.
fn write() -> impl Strategy<Value = (prop::sample::Index, Vec<u8>)> {
    let word = prop_oneof![
        any::<u8>().prop_map(|b| vec![b]),
        prop_oneof![Just(0u32), Just(1), 2u32..130, Just(4096), Just(u32::MAX)]
            .prop_map(|w| w.to_le_bytes().to_vec()),
        prop_oneof![Just(0u64), Just(1), 2u64..300, Just(u64::MAX)]
            .prop_map(|w| w.to_le_bytes().to_vec()),
    ];
    (any::<prop::sample::Index>(), word)
}

/// Overwrites bytes of `b` with `writes`, cuts it at `cut`, and recomputes its CRC32C.
fn mutate(
    mut b: Vec<u8>,
    writes: Vec<(prop::sample::Index, Vec<u8>)>,
    cut: Option<prop::sample::Index>,
) -> Vec<u8> {
    for (at, value) in writes {
        let i = at.index(b.len());
        let n = value.len().min(b.len() - i);
        b[i..i + n].copy_from_slice(&value[..n]);
    }
    if let Some(cut) = cut {
        b.truncate(cut.index(b.len() + 1));
    }
    reseal(b)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check_meta(&bytes)?;
        let r = ChunkRef { first_page: 0, page_count: 1, node: NodeId::from_raw(1 << 48).unwrap() };
        check_chunk(&bytes, &r, 4096)?;
    }

    #[test]
    fn arbitrary_fields_behind_a_right_header_never_panic(
        version in 0u32..4,
        fields in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        for magic in [b"VFLOGMD1", b"VFLOGPT1"] {
            let mut b = magic.to_vec();
            b.extend_from_slice(&version.to_le_bytes());
            b.extend_from_slice(&fields);
            b.extend_from_slice(&[0; 4]);
            let b = reseal(b);
            check_meta(&b)?;
            let r = ChunkRef { first_page: 0, page_count: 1, node: NodeId::from_raw(1 << 48).unwrap() };
            check_chunk(&b, &r, 4096)?;
        }
    }

    #[test]
    fn valid_nodes_round_trip_and_both_decoders_read_them_alike(m in meta(), c in chunk()) {
        prop_assert_eq!(&Meta::decode(&m.encode(), "m").unwrap(), &m);
        check_meta(&m.encode())?;
        prop_assert_eq!(&Chunk::decode(&c.encode(), "c").unwrap(), &c);
        let r = ChunkRef { first_page: c.first_page, page_count: c.pages.len() as u32, node: NodeId::from_raw(1 << 48).unwrap() };
        check_chunk(&c.encode(), &r, c.page_bytes)?;
    }

    #[test]
    fn mutated_nodes_are_read_alike_by_both_decoders(
        m in meta(),
        c in chunk(),
        writes in prop::collection::vec(write(), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        check_meta(&mutate(m.encode(), writes.clone(), cut))?;
        let r = ChunkRef { first_page: c.first_page, page_count: c.pages.len() as u32, node: NodeId::from_raw(1 << 48).unwrap() };
        check_chunk(&mutate(c.encode(), writes, cut), &r, c.page_bytes)?;
    }
}
