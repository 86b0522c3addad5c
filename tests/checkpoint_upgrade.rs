//! Upgrade: a store whose manifest names a checkpoint of format 3 (fixed 40-byte entries, what
//! builds before format 4 wrote) opens with every node, free handle and tag intact; its next
//! checkpoint is written in format 4, and the store reopens from that one with the same content.
//!
//! The format 3 file is made from the store's own format 4 checkpoint: its items, re-encoded with
//! the fixed layout's encoder (`checkpoint::format::encode_fixed_file`), written under the same
//! name and published with a manifest recording its new length and CRC, as a checkpoint is.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use vellum::checkpoint::{CheckpointItem, format, read_checkpoint_items};
use vellum::codec::crc32c;
use vellum::io::{FaultStorage, Storage};
use vellum::meta::{MetaStore, MetaUpdate};
use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum::{Error, NodeId};

mod common;

const DIR: &str = "/s";

fn options() -> RuntimeOptions {
    common::small_deterministic_options()
}

fn open(fs: &FaultStorage) -> DurableRuntime {
    DurableRuntime::open_with(Arc::new(fs.clone()), Path::new(DIR), options()).unwrap()
}

/// Replaces the store's checkpoint with its format 3 equivalent and publishes a manifest naming
/// it. Returns the items and the format version the replaced file had.
fn downgrade_checkpoint(fs: &FaultStorage) -> (Vec<CheckpointItem>, u32) {
    let meta = MetaStore::open(Arc::new(fs.clone()), Path::new(DIR)).unwrap();
    let published = meta.current();
    let mut manifest = (*published.manifest).clone();
    let ck = manifest.checkpoint.clone().expect("a checkpoint");
    let path = Path::new(DIR).join(&ck.file);
    let bytes = fs.open_read_only(&path).unwrap().read_all().unwrap();
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap());
    let seq = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
    let mut items = Vec::new();
    read_checkpoint_items(fs, &path, None, |i| {
        items.push(i);
        Ok(())
    })
    .unwrap();
    let fixed = format::encode_fixed_file(seq, ck.epoch, &items);
    assert_eq!(
        fixed.len(),
        64 + 16 * items.len().div_ceil(4096) + 40 * items.len() + 32
    );
    fs.remove(&path).unwrap();
    let file = fs.create(&path).unwrap();
    file.write_at(&fixed, 0).unwrap();
    file.sync_data().unwrap();
    fs.sync_dir(Path::new(DIR)).unwrap();
    let checkpoint = manifest.checkpoint.as_mut().unwrap();
    checkpoint.bytes = fixed.len() as u64;
    checkpoint.crc32c = crc32c(&fixed);
    meta.publish(MetaUpdate {
        commit_epoch: published.superblock.commit_epoch,
        roots: published.superblock.roots.clone(),
        manifest: Some(manifest),
    })
    .unwrap();
    (items, version)
}

/// The checkpoint's format version, as its header records it.
fn checkpoint_version(fs: &FaultStorage) -> u32 {
    let meta = MetaStore::open(Arc::new(fs.clone()), Path::new(DIR)).unwrap();
    let file = meta.current().manifest.checkpoint.clone().unwrap().file;
    let bytes = fs
        .open_read_only(&Path::new(DIR).join(file))
        .unwrap()
        .read_all()
        .unwrap();
    u32::from_le_bytes(bytes[8..12].try_into().unwrap())
}

/// Every expected node reads back exactly, and every retired one is gone.
fn check(rt: &DurableRuntime, live: &BTreeMap<NodeId, Vec<u8>>, retired: &[NodeId], when: &str) {
    for (id, bytes) in live {
        assert_eq!(&rt.read(*id).unwrap(), bytes, "{when}: node {id}");
    }
    for id in retired {
        assert!(
            matches!(rt.read(*id), Err(Error::NodeNotFound { id: got, .. }) if got == *id),
            "{when}: retired node {id} still reads"
        );
    }
}

#[test]
fn a_format_3_checkpoint_opens_and_the_next_checkpoint_is_format_4() {
    let fs = common::fault_storage(11, DIR);
    let rt = open(&fs);
    let mut live = BTreeMap::new();
    let mut tx = rt.begin();
    for i in 0..300u32 {
        let bytes = format!("node {i}").into_bytes();
        live.insert(tx.alloc(1, &bytes).unwrap(), bytes);
    }
    tx.commit().unwrap();
    let ids: Vec<NodeId> = live.keys().copied().collect();
    // Retired handles become free entries; rewritten nodes carry later births.
    let retired: Vec<NodeId> = ids.iter().step_by(15).copied().collect();
    let mut tx = rt.begin();
    for id in &retired {
        tx.retire(*id).unwrap();
        live.remove(id);
    }
    tx.commit().unwrap();
    let kept: Vec<NodeId> = ids
        .iter()
        .filter(|id| live.contains_key(id))
        .copied()
        .collect();
    for (round, id) in kept.iter().skip(1).step_by(7).enumerate() {
        let bytes = format!("rewrite {round}").into_bytes();
        let mut tx = rt.begin();
        tx.write(*id, &bytes).unwrap();
        tx.commit().unwrap();
        live.insert(*id, bytes);
    }
    rt.checkpoint().unwrap();
    // Commits after the checkpoint, for recovery to replay on top of it.
    let mut tx = rt.begin();
    for id in kept.iter().skip(2).step_by(11) {
        let bytes = format!("after {id}").into_bytes();
        tx.write(*id, &bytes).unwrap();
        live.insert(*id, bytes);
    }
    tx.commit().unwrap();
    rt.close().unwrap();

    let (items, version) = downgrade_checkpoint(&fs);
    assert_eq!(version, format::FORMAT_VERSION);
    assert_eq!(checkpoint_version(&fs), format::FORMAT_VERSION_FIXED);
    let free = items
        .iter()
        .filter(|i| matches!(i, CheckpointItem::Free(_)))
        .count();
    assert!(free >= retired.len(), "{free} free entries");

    let rt = open(&fs);
    check(&rt, &live, &retired, "opened from format 3");
    // A handle freed before the checkpoint is reused with its next tag, never an old id.
    let mut tx = rt.begin();
    let fresh = tx.alloc(1, b"fresh").unwrap();
    tx.commit().unwrap();
    assert!(!ids.contains(&fresh), "{fresh} was issued before");
    live.insert(fresh, b"fresh".to_vec());
    rt.checkpoint().unwrap();
    rt.close().unwrap();
    assert_eq!(checkpoint_version(&fs), format::FORMAT_VERSION);

    let rt = open(&fs);
    check(&rt, &live, &retired, "reopened from format 4");
    rt.close().unwrap();
}
