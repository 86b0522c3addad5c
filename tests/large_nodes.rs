//! Large nodes (more than 256 KiB, up to 64 MiB) without waste: each takes its length rounded up
//! to 4 KiB on disk, an extent in a 64 MiB region of the large class (class 15), not the next
//! power of two. Exact figures from the allocator and from the (page-accurate) fault storage;
//! reuse of freed extents; exact bytes across crashes at every storage operation of a
//! transaction; compaction moving large nodes out of a fragmented region; recovery refusing
//! extents that overlap, cross a region or lie past the files, with a structured corruption.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vellum::alloc::Location;
use vellum::inspect::FindingKind;
use vellum::io::{CrashMode, FaultStorage};
use vellum::log::DeltaLog;
use vellum::runtime::{
    CommitPolicy, CompactionOptions, DurableRuntime, LARGE_CLASS, NodeVersionRef, OpRef,
    RuntimeOptions, encode_record,
};
use vellum::{CorruptionKind, NodeId};

mod common;

const DIR: &str = "/store";
const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// Bytes that name the node and its version, so a misplaced or stale extent shows.
fn content(tag: u64, len: u64) -> Vec<u8> {
    (0..len as usize)
        .map(|i| (tag.wrapping_mul(0x9e37_79b9) >> (i % 7 * 4)) as u8 ^ (i / 4096) as u8)
        .collect()
}

fn open(fs: &FaultStorage) -> DurableRuntime {
    DurableRuntime::open_with(
        Arc::new(fs.clone()),
        Path::new(DIR),
        common::small_deterministic_options(),
    )
    .unwrap()
}

/// `len` rounded up to whole 4 KiB units: what a large node owns.
fn extent(len: u64) -> u64 {
    len.div_ceil(4 * KIB) * 4 * KIB
}

/// Every node reads back exactly, `verify` counts them, and the large class's allocated bytes
/// are exactly the sum of their extents.
fn assert_exact(rt: &DurableRuntime, nodes: &BTreeMap<NodeId, Vec<u8>>, ctx: &str) {
    for (id, bytes) in nodes {
        let got = rt
            .read(*id)
            .unwrap_or_else(|e| panic!("{ctx}: read {id}: {e}"));
        assert!(got == *bytes, "{ctx}: bytes of {id}");
    }
    assert_eq!(
        rt.node_ids(),
        nodes.keys().copied().collect::<Vec<_>>(),
        "{ctx}"
    );
    let (verified, _) = rt.verify().unwrap();
    assert_eq!(verified, nodes.len() as u64, "{ctx}: verified");
    let want: u64 = nodes.values().map(|b| extent(b.len() as u64)).sum();
    let space = rt.class_space(LARGE_CLASS);
    assert_eq!(space.used_bytes, want, "{ctx}: large class used bytes");
    assert_eq!(space.used_slots, nodes.len() as u64, "{ctx}: extents");
}

fn fsck_is_clean(fs: &FaultStorage, ctx: &str) {
    let report = vellum::inspect::fsck(fs, Path::new(DIR), &common::fsck_options())
        .unwrap_or_else(|e| panic!("{ctx}: fsck: {e}"));
    let problems: Vec<_> = report.problems().collect();
    assert!(problems.is_empty(), "{ctx}: fsck found {problems:?}");
}

/// Issue 12 item 4: a 33 MiB node's on-disk allocation is at most 33 MiB + 4 KiB (it was 64 MiB:
/// the next power of two). Asserted from the allocator's figures and from the blocks the fault
/// storage counts for the data files, which are the same number.
#[test]
fn a_33_mib_node_takes_33_mib_on_disk_not_64() {
    let fs = common::fault_storage(1, DIR);
    let rt = open(&fs);
    let bytes = content(1, 33 * MIB);
    let mut tx = rt.begin();
    let id = tx.alloc(1, &bytes).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let space = rt.class_space(LARGE_CLASS);
    let on_disk = rt.data_allocated_bytes().unwrap();
    println!(
        "33 MiB node: allocator {} bytes, data files {} bytes on disk, regions {}",
        space.used_bytes, on_disk, space.segments
    );
    assert!(space.used_bytes <= 33 * MIB + 4 * KIB);
    assert_eq!(space.used_bytes, 33 * MIB, "33 MiB is whole 4 KiB units");
    assert_eq!((space.segments, space.segment_bytes), (1, 64 * MIB));
    assert_eq!(on_disk, 33 * MIB, "only the extent holds blocks");
    assert!(rt.read(id).unwrap() == bytes);

    // One byte more takes one unit more: 33 MiB + 4 KiB, in a second region (31 MiB are left in
    // the first).
    let bytes2 = content(2, 33 * MIB + 1);
    let mut tx = rt.begin();
    let id2 = tx.alloc(1, &bytes2).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let space = rt.class_space(LARGE_CLASS);
    assert_eq!(space.used_bytes, 66 * MIB + 4 * KIB);
    assert_eq!(space.segments, 2);
    assert_eq!(rt.data_allocated_bytes().unwrap(), 66 * MIB + 4 * KIB);
    let x = rt.extent_space();
    assert_eq!(x.free_bytes, 128 * MIB - (66 * MIB + 4 * KIB));
    assert_eq!(x.free_run_bytes_max, 31 * MIB);
    let nodes = BTreeMap::from([(id, bytes), (id2, bytes2)]);
    assert_exact(&rt, &nodes, "two 33 MiB nodes");
    rt.close().unwrap();
}

/// Each large length takes exactly its round-up to 4 KiB; the largest small node still takes
/// its 256 KiB slot.
#[test]
fn large_lengths_round_up_to_4_kib_exactly() {
    let fs = common::fault_storage(2, DIR);
    let rt = open(&fs);
    let cases = [
        (256 * KIB + 1, 260 * KIB),
        (MIB, MIB),
        (MIB + 1, MIB + 4 * KIB),
        (5 * MIB - 1, 5 * MIB),
        (7 * MIB + 4095, 7 * MIB + 4 * KIB),
        (7 * MIB + 4096, 7 * MIB + 4 * KIB),
        (7 * MIB + 4097, 7 * MIB + 8 * KIB),
        (64 * MIB, 64 * MIB),
    ];
    let mut nodes = BTreeMap::new();
    for (i, (len, want)) in cases.into_iter().enumerate() {
        let before = rt.class_space(LARGE_CLASS).used_bytes;
        let bytes = content(i as u64, len);
        let mut tx = rt.begin();
        let id = tx.alloc(1, &bytes).unwrap();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        let took = rt.class_space(LARGE_CLASS).used_bytes - before;
        assert_eq!(took, want, "a node of {len} bytes");
        nodes.insert(id, bytes);
    }
    // The largest small node is not an extent.
    let mut tx = rt.begin();
    let small = tx.alloc(1, &content(99, 256 * KIB)).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    assert_eq!(rt.class_space(14).used_bytes, 256 * KIB);
    assert_eq!(rt.class_space(LARGE_CLASS).used_slots, cases.len() as u64);
    assert!(rt.read(small).unwrap() == content(99, 256 * KIB));
    rt.close().unwrap();
}

/// A retired node's extent is reused best fit once the retirement is durable (no new region),
/// never while a version in it is live: every node keeps its exact bytes and fsck finds no
/// overlap.
#[test]
fn freed_extents_are_reused_without_overlap() {
    let fs = common::fault_storage(3, DIR);
    let rt = open(&fs);
    let mut nodes = BTreeMap::new();
    let mut ids = Vec::new();
    let mut tx = rt.begin();
    for i in 0..4u64 {
        let b = content(i, 12 * MIB);
        let id = tx.alloc(1, &b).unwrap();
        nodes.insert(id, b);
        ids.push(id);
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    // 48 MiB of region 0 used, 16 MiB free at its end.
    let mut tx = rt.begin();
    tx.retire(ids[1]).unwrap();
    nodes.remove(&ids[1]);
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.checkpoint().unwrap();
    assert_eq!(rt.class_space(LARGE_CLASS).used_bytes, 36 * MIB);
    let x = rt.extent_space();
    assert_eq!((x.free_runs, x.free_run_bytes_max), (2, 16 * MIB));
    // 10 MiB + 1 goes to the 12 MiB hole (the shortest run that holds it), 16 MiB to the tail,
    // and an update of node 0 to 2 MiB to what is left of the hole: still one region.
    let mut tx = rt.begin();
    let a = content(10, 10 * MIB + 1);
    let b = content(11, 16 * MIB);
    let u = content(12, 2 * MIB - 4 * KIB);
    nodes.insert(tx.alloc(1, &a).unwrap(), a);
    nodes.insert(tx.alloc(1, &b).unwrap(), b);
    tx.write(ids[0], &u).unwrap();
    nodes.insert(ids[0], u);
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.checkpoint().unwrap();
    assert_eq!(rt.class_space(LARGE_CLASS).segments, 1, "no region added");
    assert_exact(&rt, &nodes, "after reuse");
    let x = rt.extent_space();
    // Free: node 0's old 12 MiB extent, and nothing else (the hole and the tail are full).
    assert_eq!(
        x.free_bytes,
        64 * MIB - rt.class_space(LARGE_CLASS).used_bytes
    );
    assert_eq!(x.free_bytes, 12 * MIB);
    rt.close().unwrap();
    fsck_is_clean(&fs, "after reuse");
}

/// What happens when a region has holes: a node longer than every free run goes to a new
/// region even though the region's free bytes would hold it (no extent is split). Compaction
/// then moves the region's nodes into the free run of the new one (the plan checks they fit
/// first), returns the emptied region's blocks, and a 64 MiB node fits there again.
#[test]
fn compaction_moves_large_nodes_out_of_a_fragmented_region() {
    let fs = common::fault_storage(4, DIR);
    let rt = open(&fs);
    let mut nodes = BTreeMap::new();
    let mut ids = Vec::new();
    let mut tx = rt.begin();
    for i in 0..8u64 {
        let b = content(i, 8 * MIB);
        let id = tx.alloc(1, &b).unwrap();
        nodes.insert(id, b);
        ids.push(id);
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let mut tx = rt.begin();
    for id in ids.iter().skip(1).step_by(2) {
        tx.retire(*id).unwrap();
        nodes.remove(id);
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.checkpoint().unwrap();
    // Four 8 MiB holes: 32 MiB free, but no run longer than 8 MiB.
    let x = rt.extent_space();
    assert_eq!(
        (x.regions, x.free_bytes, x.free_runs, x.free_run_bytes_max),
        (1, 32 * MIB, 4, 8 * MIB)
    );
    let mut tx = rt.begin();
    let b = content(20, 16 * MIB);
    nodes.insert(tx.alloc(1, &b).unwrap(), b);
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let x = rt.extent_space();
    assert_eq!(
        (x.regions, x.free_run_bytes_max),
        (2, 48 * MIB),
        "a new region"
    );
    rt.compact_with(&CompactionOptions::full(), &mut |_| {})
        .map(|_| ())
        .unwrap_or_else(|e| panic!("compaction: {e}"));
    assert_exact(&rt, &nodes, "after compaction");
    let x = rt.extent_space();
    assert_eq!(x.used_bytes, 48 * MIB);
    assert_eq!(x.free_run_bytes_max, 64 * MIB, "region 0 is empty");
    assert_eq!(x.unpunched_bytes, 0);
    assert_eq!(
        rt.data_allocated_bytes().unwrap(),
        48 * MIB,
        "the emptied region's blocks went back to the filesystem"
    );
    let mut tx = rt.begin();
    let b = content(21, 64 * MIB);
    nodes.insert(tx.alloc(1, &b).unwrap(), b);
    tx.commit_with(CommitPolicy::Strict).unwrap();
    assert_eq!(rt.extent_space().regions, 2);
    assert_exact(&rt, &nodes, "a 64 MiB node in the emptied region");
    rt.close().unwrap();
    fsck_is_clean(&fs, "after compaction");
}

/// A report of the compaction above: which region was the victim and what it moved.
#[test]
fn compaction_reports_the_large_nodes_it_moved() {
    let fs = common::fault_storage(5, DIR);
    let rt = open(&fs);
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = (0..8u64)
        .map(|i| tx.alloc(1, &content(i, 8 * MIB)).unwrap())
        .collect();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let mut tx = rt.begin();
    for id in ids.iter().skip(1).step_by(2) {
        tx.retire(*id).unwrap();
    }
    let b = content(20, 16 * MIB);
    tx.alloc(1, &b).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.checkpoint().unwrap();
    let report = rt
        .compact_with(&CompactionOptions::full(), &mut |_| {})
        .unwrap();
    // Region 0 (32 MiB live in four extents) is the only region whose extents fit elsewhere.
    assert_eq!(report.victims, 1, "{report:?}");
    assert_eq!(report.nodes_moved, 4, "{report:?}");
    assert_eq!(report.bytes_moved, 32 * MIB, "{report:?}");
    rt.close().unwrap();
}

/// The transaction the crash sweep interrupts: update node 0 to a longer node, retire node 1,
/// add a 40 MiB node. Returns the state its commit makes.
fn big_transaction(
    rt: &DurableRuntime,
    ids: &[NodeId],
    before: &BTreeMap<NodeId, Vec<u8>>,
) -> vellum::Result<BTreeMap<NodeId, Vec<u8>>> {
    let mut after = before.clone();
    let mut tx = rt.begin();
    let u = content(100, 5 * MIB - 1);
    tx.write(ids[0], &u)?;
    after.insert(ids[0], u);
    tx.retire(ids[1])?;
    after.remove(&ids[1]);
    let n = content(101, 40 * MIB);
    after.insert(tx.alloc(1, &n)?, n);
    tx.commit_with(CommitPolicy::Strict)?;
    Ok(after)
}

/// A crash (unsynced data dropped) at every storage operation of a transaction over large
/// nodes: after recovery the store holds exactly the state before the transaction or, once its
/// commit returned, after it; the rebuilt allocator holds exactly the live extents, and fsck
/// finds nothing.
#[test]
fn a_crash_at_every_operation_of_a_large_transaction_keeps_exact_bytes() {
    let base = common::fault_storage(6, DIR);
    let (ids, before) = {
        let rt = open(&base);
        let mut before = BTreeMap::new();
        let mut tx = rt.begin();
        let ids: Vec<NodeId> = [3 * MIB, MIB + 1, 300 * KIB]
            .into_iter()
            .enumerate()
            .map(|(i, len)| {
                let b = content(i as u64, len);
                let id = tx.alloc(1, &b).unwrap();
                before.insert(id, b);
                id
            })
            .collect();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        rt.close().unwrap();
        (ids, before)
    };
    let ops = {
        let fs = base.crash_with(CrashMode::KeepUnsynced);
        let rt = open(&fs);
        let start = fs.op_count();
        big_transaction(&rt, &ids, &before).unwrap();
        fs.op_count() - start
    };
    assert!(ops > 5, "the transaction takes {ops} storage operations");
    let (mut old, mut new) = (0, 0);
    for k in 1..=ops {
        let fs = base.crash_with(CrashMode::KeepUnsynced);
        let rt = open(&fs);
        fs.crash_after(k);
        let outcome = big_transaction(&rt, &ids, &before);
        drop(rt);
        let crashed = fs.crash_with(CrashMode::DropUnsynced);
        let rt = DurableRuntime::open_with(
            Arc::new(crashed.clone()),
            Path::new(DIR),
            common::small_deterministic_options(),
        )
        .unwrap_or_else(|e| panic!("k={k}: reopen: {e}"));
        let ctx = format!("crash at op {k} of {ops}");
        // The new node's id is known only from a commit that returned; a commit that became
        // durable without returning shows as node 1 retired and one id not seen before.
        let recovered = rt.node_ids();
        let expected = match outcome {
            Ok(after) => Some(after),
            Err(_) if !recovered.contains(&ids[1]) => {
                let fresh: Vec<NodeId> = recovered
                    .iter()
                    .copied()
                    .filter(|id| !before.contains_key(id))
                    .collect();
                assert_eq!(fresh.len(), 1, "{ctx}: {recovered:?}");
                let mut after = before.clone();
                after.insert(ids[0], content(100, 5 * MIB - 1));
                after.remove(&ids[1]);
                after.insert(fresh[0], content(101, 40 * MIB));
                Some(after)
            }
            Err(_) => None,
        };
        match expected {
            Some(after) => {
                assert_exact(&rt, &after, &ctx);
                new += 1;
            }
            None => {
                assert_exact(&rt, &before, &ctx);
                old += 1;
            }
        }
        rt.close().unwrap();
        fsck_is_clean(&crashed, &ctx);
    }
    assert!(
        old > 0 && new > 0,
        "{old} crashes before the commit, {new} after"
    );
}

/// Writes a CRC-valid commit record naming `versions` (fresh ids, lengths, locations) into a
/// store that holds one small node, and returns the error opening it gives.
fn open_with_crafted_versions(versions: &[(Location, u32)]) -> (FaultStorage, vellum::Error) {
    let fs = common::fault_storage(7, DIR);
    let options = RuntimeOptions {
        create_if_missing: true,
        checkpoint_log_bytes: 1 << 40,
        ..RuntimeOptions::default()
    };
    let ids: Vec<NodeId> = {
        let rt = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options.clone())
            .unwrap();
        let mut tx = rt.begin();
        tx.alloc(1, b"x").unwrap();
        tx.commit_with(CommitPolicy::Strict).unwrap();
        let mut tx = rt.begin();
        let ids = versions
            .iter()
            .map(|_| tx.alloc(1, b"y").unwrap())
            .collect();
        tx.abort();
        rt.close().unwrap();
        ids
    };
    let (log, _) = DeltaLog::open(Arc::new(fs.clone()), Path::new(DIR), 1, options.log, |_| {
        Ok(())
    })
    .unwrap();
    let ops: Vec<OpRef<'_>> = ids
        .iter()
        .zip(versions)
        .map(|(&id, &(location, len))| {
            OpRef::New(NodeVersionRef {
                id,
                location,
                len,
                crc32c: 0,
                kind: 1,
                payload: None,
            })
        })
        .collect();
    log.append(&encode_record(2, &ops).unwrap()).unwrap();
    log.sync().unwrap();
    drop(log);
    let err = DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options)
        .expect_err("recovery must refuse the crafted extents");
    (fs, err)
}

fn large(offset: u64) -> Location {
    Location {
        class: LARGE_CLASS,
        file: 0,
        offset,
    }
}

/// The reason of a rebuild refusal (`InvalidDocument`), which names the extent.
fn rebuild_refusal(err: &vellum::Error) -> String {
    let c = err
        .as_corruption()
        .unwrap_or_else(|| panic!("not a corruption error: {err}"));
    match &c.kind {
        CorruptionKind::InvalidDocument { reason } => reason.clone(),
        other => panic!("not a rebuild refusal: {other:?}"),
    }
}

#[test]
fn recovery_refuses_two_versions_whose_extents_overlap() {
    // 2 MiB at 0 and 2 MiB at 1 MiB share the units of [1 MiB, 2 MiB).
    let (fs, err) = open_with_crafted_versions(&[(large(0), 2 << 20), (large(MIB), 2 << 20)]);
    let reason = rebuild_refusal(&err);
    assert!(
        reason.contains("overlaps the extent of another live version"),
        "{reason}"
    );
    // fsck names the overlap.
    let report = vellum::inspect::fsck(
        &fs,
        Path::new(DIR),
        &vellum::inspect::FsckOptions::default(),
    )
    .unwrap();
    assert!(
        report
            .problems()
            .any(|f| matches!(f.kind, FindingKind::SlotOverlap { .. })),
        "{:?}",
        report.problems().collect::<Vec<_>>()
    );
    // An overlap by the round-up alone: a node of 1 MiB + 1 byte at 0 owns up to 1 MiB + 4 KiB.
    let (_, err) =
        open_with_crafted_versions(&[(large(0), (MIB + 1) as u32), (large(MIB), 2 << 20)]);
    assert!(rebuild_refusal(&err).contains("overlaps"));
}

#[test]
fn recovery_refuses_an_extent_across_a_region_or_off_its_grid() {
    let (fs, err) = open_with_crafted_versions(&[(large(62 * MIB), 4 << 20)]);
    let reason = rebuild_refusal(&err);
    assert!(reason.contains("crosses a region boundary"), "{reason}");
    let report = vellum::inspect::fsck(
        &fs,
        Path::new(DIR),
        &vellum::inspect::FsckOptions::default(),
    )
    .unwrap();
    assert!(
        report
            .problems()
            .any(|f| matches!(f.kind, FindingKind::SlotOffGrid { .. })),
        "{:?}",
        report.problems().collect::<Vec<_>>()
    );
    let (_, err) = open_with_crafted_versions(&[(large(64), 1 << 20)]);
    let reason = rebuild_refusal(&err);
    assert!(reason.contains("not aligned"), "{reason}");
}

#[test]
fn recovery_refuses_an_extent_past_the_files() {
    // The default layout: 1 GiB files. An extent ending past the file is refused before the
    // rebuild, naming the data file and the location.
    let loc = large((1 << 30) - 4 * KIB);
    let (_, err) = open_with_crafted_versions(&[(loc, 1 << 20)]);
    let c = err
        .as_corruption()
        .unwrap_or_else(|| panic!("not a corruption error: {err}"));
    assert_eq!(
        c.kind,
        CorruptionKind::InvalidField {
            field: "op.location",
            value: loc.pack()
        }
    );
    assert_eq!(
        c.file,
        Path::new(DIR).join(vellum::alloc::data_file_name(LARGE_CLASS, 0))
    );
}
