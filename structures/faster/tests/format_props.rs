//! Property tests of the FasterLog node formats (`design/FORMAT.md` §8), their decoders
//! (`Meta::decode`, `Chunk::decode` with `Chunk::check_ref`) and the inspection plugin built on
//! them (`vellum_faster::inspect`), over an in-memory `StoreView`:
//! - Arbitrary bytes, and arbitrary bytes behind a right magic and version with a right CRC32C
//!   (so the field checks run), never make a decoder or the plugin panic; every refusal is a
//!   corruption at an offset inside the node, and the plugin reports exactly that refusal, with
//!   the node.
//! - Valid nodes round-trip.
//! - Valid nodes with bytes overwritten or cut and the CRC32C recomputed: an accepted input is the
//!   canonical encoding of what it decodes to, and a refused one is reported by the plugin
//!   exactly as the decoder refuses it (a chunk node's refusal at `faster-log:<name>/chunk-<p>`).
//! - Valid metadata whose extent nodes hold entries with bytes overwritten: the plugin never
//!   panics, and every finding is a `Problem` of kind `Corruption` naming a node.
//!
//! `VELLUM_FLOG_PROP_CASES` (default 256) sets the cases per property.

use std::collections::BTreeMap;

use proptest::prelude::*;
use vellum::NodeId;
use vellum::codec::crc32c;
use vellum::inspect::{
    Finding, FindingKind, LiveNode, Plugin, Root, Severity, StoreView, Unavailable,
};
use vellum_faster::chunk::{CHUNK_PAGES, Chunk, ChunkRef};
use vellum_faster::entry::{entry_bytes, header_word};
use vellum_faster::inspect::FasterLogPlugin;
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

const ROOT: &str = "faster-log:p";

/// The node the root names in the in-memory stores below.
fn meta_id() -> NodeId {
    NodeId::from_raw(1 << 48 | 7).unwrap()
}

/// A store holding only `nodes` (all live, all with right CRC32Cs) and the root `ROOT` naming
/// `meta_id()`.
struct MemView(BTreeMap<NodeId, Vec<u8>>);

impl StoreView for MemView {
    fn epoch(&self) -> u64 {
        1
    }

    fn roots(&self) -> Vec<Root> {
        vec![Root {
            name: ROOT.into(),
            value: meta_id().raw(),
        }]
    }

    fn read(&self, id: NodeId) -> Result<LiveNode, Unavailable> {
        self.0
            .get(&id)
            .map(|bytes| LiveNode {
                kind: 0,
                bytes: bytes.clone(),
            })
            .ok_or(Unavailable::NotLive)
    }
}

/// What the plugin's `fsck` check reports for `view`.
fn plugin_findings(view: &MemView) -> Vec<Finding> {
    FasterLogPlugin.check(view, &view.roots())
}

/// The finding the plugin makes of a decoder's refusal `e` of `node`.
fn finding_of(e: &vellum::Error, node: NodeId) -> Finding {
    Finding::problem(e.as_corruption().unwrap().clone(), Some(node))
}

/// The metadata decoder on `b`: a refusal is a corruption inside the node, which the plugin
/// reports exactly; an accepted input is canonical.
fn check_meta(b: &[u8]) -> Result<(), TestCaseError> {
    let view = MemView(BTreeMap::from([(meta_id(), b.to_vec())]));
    let findings = plugin_findings(&view);
    match Meta::decode(b, ROOT) {
        Ok(m) => {
            // Canonical: what decodes re-encodes to the same bytes (version 1 as version 2).
            let mut again = m.encode();
            again[8] = b[8];
            prop_assert_eq!(reseal(again), b.to_vec());
            prop_assert!(findings.iter().all(|f| f.file.to_str() != Some(ROOT)));
        }
        Err(e) => {
            let c = e.as_corruption();
            prop_assert!(c.is_some(), "{}", e);
            prop_assert!(c.is_some_and(|c| c.offset <= b.len() as u64), "{}", e);
            prop_assert_eq!(findings, vec![finding_of(&e, meta_id())]);
        }
    }
    Ok(())
}

/// The chunk decoder on `b`, checked against the reference `r` in a log of `page_bytes`: a
/// refusal is a corruption inside the node, which the plugin reports exactly when a metadata
/// node names `b` by `r`; an accepted input is canonical.
fn check_chunk(b: &[u8], r: &ChunkRef, page_bytes: u32) -> Result<(), TestCaseError> {
    let what = format!("{ROOT}/chunk-{}", r.first_page);
    let decoded =
        Chunk::decode(b, &what).and_then(|c| c.check_ref(r, page_bytes, &what).map(|()| c));
    // A metadata node naming `b` as its only chunk, when `r` can be one (it lists complete
    // pages whose addresses fit).
    let p = u64::from(page_bytes);
    let end = r
        .end()
        .checked_mul(p)
        .filter(|_| page_bytes >= 8 && page_bytes.is_multiple_of(8));
    let findings = end.map(|end| {
        let meta = Meta {
            page_bytes,
            begin: r.first_page * p,
            committed_tail: end,
            chunks: vec![*r],
            first_page: r.end(),
            ..Meta::default()
        };
        let view = MemView(BTreeMap::from([
            (meta_id(), meta.encode()),
            (r.node, b.to_vec()),
        ]));
        plugin_findings(&view)
    });
    match decoded {
        Ok(c) => {
            prop_assert_eq!(c.encode(), b.to_vec(), "canonical");
            if let Some(findings) = findings {
                prop_assert!(
                    findings
                        .iter()
                        .all(|f| f.file.to_str() != Some(what.as_str()))
                );
            }
        }
        Err(e) => {
            let c = e.as_corruption();
            prop_assert!(c.is_some(), "{}", e);
            prop_assert!(c.is_some_and(|c| c.offset <= b.len() as u64), "{}", e);
            if let Some(findings) = findings {
                // Its pages are skipped: the chunk's refusal is the only finding.
                prop_assert_eq!(findings, vec![finding_of(&e, r.node)]);
            }
        }
    }
    Ok(())
}

/// `len` bytes of entries end to end (each payload length drawn from `seed`), as a commit
/// writes an extent.
fn entries(len: u32, mut seed: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(len as usize);
    while b.len() < len as usize {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let room = len as usize - b.len() - 8;
        let payload: Vec<u8> = (0..(seed >> 33) as usize % (room + 1).min(100))
            .map(|i| (seed >> (i % 8)) as u8)
            .collect();
        b.extend_from_slice(&header_word(&payload).to_le_bytes());
        b.extend_from_slice(&payload);
        b.resize(b.len() - 8 - payload.len() + entry_bytes(payload.len()), 0);
    }
    b
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
    fn valid_nodes_round_trip(m in meta(), c in chunk()) {
        prop_assert_eq!(&Meta::decode(&m.encode(), "m").unwrap(), &m);
        check_meta(&m.encode())?;
        prop_assert_eq!(&Chunk::decode(&c.encode(), "c").unwrap(), &c);
        let r = ChunkRef { first_page: c.first_page, page_count: c.pages.len() as u32, node: NodeId::from_raw(1 << 48).unwrap() };
        check_chunk(&c.encode(), &r, c.page_bytes)?;
    }

    #[test]
    fn mutated_nodes_are_canonical_or_reported_exactly(
        m in meta(),
        c in chunk(),
        writes in prop::collection::vec(write(), 1..4),
        cut in proptest::option::of(any::<prop::sample::Index>()),
    ) {
        check_meta(&mutate(m.encode(), writes.clone(), cut))?;
        let r = ChunkRef { first_page: c.first_page, page_count: c.pages.len() as u32, node: NodeId::from_raw(1 << 48).unwrap() };
        check_chunk(&mutate(c.encode(), writes, cut), &r, c.page_bytes)?;
    }

    #[test]
    fn damaged_entries_are_findings_never_panics(
        m in meta(),
        seed in any::<u64>(),
        writes in prop::collection::vec(write(), 0..4),
        short in any::<bool>(),
    ) {
        // Every chunk node the metadata names lists the same pages' extents as the in-line
        // ones would; every extent node holds entries, some overwritten.
        let mut nodes = BTreeMap::from([(meta_id(), m.encode())]);
        for (i, page) in m.pages.iter().enumerate() {
            for (j, e) in page.iter().enumerate() {
                let mut b = entries(e.len, seed ^ (i as u64) << 8 ^ j as u64);
                if j == 0 {
                    b = mutate_plain(b, writes.clone());
                }
                if short && i == 0 && j == 0 {
                    b.truncate(b.len() - 8);
                }
                nodes.insert(e.node, b);
            }
        }
        let view = MemView(nodes);
        for f in plugin_findings(&view) {
            prop_assert_eq!(f.severity, Severity::Problem);
            prop_assert!(matches!(f.kind, FindingKind::Corruption { .. }), "{:?}", f);
            prop_assert!(f.node.is_some() || f.file.to_str().is_some_and(|n| n.contains("/page-")), "{:?}", f);
        }
        let dump = FasterLogPlugin.dump(&view, &view.roots()[0]);
        prop_assert_eq!(&dump["root"], ROOT);
    }
}

/// Overwrites bytes of `b` with `writes` (no CRC to recompute: an extent node has none).
fn mutate_plain(mut b: Vec<u8>, writes: Vec<(prop::sample::Index, Vec<u8>)>) -> Vec<u8> {
    for (at, value) in writes {
        let i = at.index(b.len());
        let n = value.len().min(b.len() - i);
        b[i..i + n].copy_from_slice(&value[..n]);
    }
    b
}
