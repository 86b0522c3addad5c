//! Crash and failure tests of the metadata publish protocol, through the fault-injecting storage.
//!
//! Every test rebuilds its starting state deterministically, stops the storage (or fails one
//! operation) at every operation of a create or publish in turn, resolves the power loss every
//! way the storage allows, and checks that opening the store finds exactly the old or the new
//! state: never an error, never a mix, and the new state whenever the superblock sync returned.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vellum::Error;
use vellum::error::IoOp;
use vellum::io::{CrashMode, FaultStorage, Storage};
use vellum::meta::{
    Counters, DataFileRef, DeltaLogRef, Manifest, MetaStore, MetaUpdate, RootCatalog,
    manifest_file_name,
};

const DIR: &str = "/db";

mod common;

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn modes() -> Vec<CrashMode> {
    common::all_crash_modes()
}

fn fresh(seed: u64) -> FaultStorage {
    common::fault_storage_sized(seed, dir(), 1 << 20)
}

fn storage(fs: &FaultStorage) -> Arc<dyn Storage> {
    Arc::new(fs.clone())
}

/// The state a store holds, compared in full.
#[derive(Debug, Clone, PartialEq, Eq)]
struct State {
    commit_epoch: u64,
    roots: RootCatalog,
    manifest: Manifest,
}

fn state_of(store: &MetaStore) -> State {
    let p = store.current();
    assert_eq!(p.manifest.seq, p.superblock.manifest.seq);
    State {
        commit_epoch: p.superblock.commit_epoch,
        roots: p.superblock.roots.clone(),
        manifest: (*p.manifest).clone(),
    }
}

/// A manifest whose content is specific to `step`, so states of different steps differ.
fn manifest_for(step: u64) -> Manifest {
    Manifest {
        seq: 0,
        layout: vellum::meta::Layout::default(),
        checkpoint: None,
        delta_logs: vec![DeltaLogRef {
            file: format!("log-{step:016x}.vlog"),
            seq: step,
            start_epoch: step * 10,
            end_epoch: None,
            bytes: None,
        }],
        data_files: vec![DataFileRef {
            class: step as u32,
            seq: step,
            file: format!("data-{step}.vdat"),
            bytes: step * 4096,
        }],
        counters: Counters {
            next_log_seq: step + 1,
            next_checkpoint_seq: 1,
            next_data_seq: step + 1,
        },
    }
}

/// The update of publish number `step` (1-based).
fn update_for(step: u64, with_manifest: bool) -> MetaUpdate {
    let mut roots = RootCatalog::new();
    roots.insert("step", step).unwrap();
    roots.insert(format!("root-{step}"), step * 100).unwrap();
    MetaUpdate {
        commit_epoch: step * 10,
        roots,
        manifest: with_manifest.then(|| manifest_for(step)),
    }
}

/// A store built by `create` and then the first `upto` publishes of `plan` (true = with a new
/// manifest), on a fresh filesystem.
fn build(plan: &[bool], upto: usize) -> (FaultStorage, MetaStore) {
    let fs = fresh(42);
    let store = MetaStore::create(storage(&fs), dir(), manifest_for(0)).unwrap();
    for (i, &with) in plan[..upto].iter().enumerate() {
        store.publish(update_for(i as u64 + 1, with)).unwrap();
    }
    (fs, store)
}

/// The states after create and after each publish of `plan`, from a run without faults.
fn expected_states(plan: &[bool]) -> Vec<State> {
    let fs = fresh(42);
    let store = MetaStore::create(storage(&fs), dir(), manifest_for(0)).unwrap();
    let mut states = vec![state_of(&store)];
    for (i, &with) in plan.iter().enumerate() {
        store.publish(update_for(i as u64 + 1, with)).unwrap();
        states.push(state_of(&store));
    }
    states
}

/// Operations publish number `upto + 1` of `plan` performs, and the (1-based) index among them
/// of the superblock's `sync_data`, found by failing each operation in turn and reading which
/// operation the error names.
fn measure_publish(plan: &[bool], upto: usize) -> (u64, u64) {
    let (fs, store) = build(plan, upto);
    let before = fs.op_count();
    store
        .publish(update_for(upto as u64 + 1, plan[upto]))
        .unwrap();
    let ops = fs.op_count() - before;
    let superblock = dir().join("superblock");
    let sync_at = (1..=ops).find(|&n| {
        let (fs, store) = build(plan, upto);
        fs.fail_nth(n);
        matches!(
            store.publish(update_for(upto as u64 + 1, plan[upto])),
            Err(Error::Io { op: IoOp::SyncData, ref path, .. }) if *path == superblock
        )
    });
    (ops, sync_at.expect("publish must sync the superblock file"))
}

/// The files a store in state `s` holds after open cleaned up.
fn clean_files(s: &State) -> Vec<String> {
    vec![manifest_file_name(s.manifest.seq), "superblock".to_owned()]
}

/// Opens the store left on `after`, checks it is `old` or `new` (exactly `new` if `must_be_new`)
/// and that the directory holds only its files, then checks the recovered store can publish.
/// Returns whether it found the new state.
fn check_recovery(
    after: &FaultStorage,
    old: &State,
    new: &State,
    must_be_new: bool,
    ctx: &str,
) -> bool {
    let store = MetaStore::open(storage(after), dir())
        .unwrap_or_else(|e| panic!("{ctx}: open after crash failed: {e}"));
    let got = state_of(&store);
    assert!(
        got == *old || got == *new,
        "{ctx}: recovered a state that is neither the old nor the new one: {got:#?}"
    );
    if must_be_new {
        assert_eq!(
            got, *new,
            "{ctx}: the superblock sync returned, so the new state is durable"
        );
    }
    assert_eq!(after.list(dir()).unwrap(), clean_files(&got), "{ctx}");

    // The recovered store continues: its next publish (which writes the other slot) is durable.
    let next = update_for(1000, true);
    store
        .publish(next)
        .unwrap_or_else(|e| panic!("{ctx}: publish after recovery: {e}"));
    let expect = state_of(&store);
    let again = after.crash_with(CrashMode::DropUnsynced);
    let reopened = MetaStore::open(storage(&again), dir()).unwrap();
    assert_eq!(state_of(&reopened), expect, "{ctx}: publish after recovery");
    got == *new
}

const PLANS: [[bool; 3]; 4] = [
    [true, true, true],
    [false, false, false],
    [true, false, true],
    [false, true, false],
];

#[test]
fn crash_at_every_step_of_a_publish_recovers_old_or_new() {
    for plan in PLANS {
        let states = expected_states(&plan);
        for upto in 0..plan.len() {
            let (old, new) = (&states[upto], &states[upto + 1]);
            let (ops, sync_at) = measure_publish(&plan, upto);
            let (mut seen_old, mut seen_new) = (false, false);
            for k in 0..=ops {
                let (fs, store) = build(&plan, upto);
                fs.crash_after(k);
                let result = store.publish(update_for(upto as u64 + 1, plan[upto]));
                if k == ops {
                    result.as_ref().unwrap();
                }
                // The machine stopped after k operations: op k+1 and later failed. If the
                // superblock sync (op `sync_at`) ran, or the publish returned Ok, it is durable.
                let must_be_new = k >= sync_at || result.is_ok();
                for mode in modes() {
                    let ctx = format!(
                        "plan {plan:?}, publish {}, crash after {k} of {ops} ops \
                         (superblock sync is op {sync_at}), {mode:?}, result {result:?}",
                        upto + 1
                    );
                    if check_recovery(&fs.crash_with(mode), old, new, must_be_new, &ctx) {
                        seen_new = true;
                    } else {
                        seen_old = true;
                    }
                }
            }
            assert!(seen_old && seen_new, "plan {plan:?} publish {}", upto + 1);
        }
    }
}

#[test]
fn crash_during_create_leaves_no_store_or_an_empty_one() {
    let probe = fresh(7);
    MetaStore::create(storage(&probe), dir(), manifest_for(0)).unwrap();
    let ops = probe.op_count() - 1; // create_dir_all in `fresh` was one
    let empty = expected_states(&[])[0].clone();
    let mut seen_absent = false;
    let mut seen_present = false;
    for k in 0..=ops {
        let fs = fresh(7);
        fs.crash_after(k);
        let result = MetaStore::create(storage(&fs), dir(), manifest_for(0));
        assert_eq!(result.is_ok(), k == ops, "crash after {k} of {ops}");
        for mode in modes() {
            let ctx = format!("create, crash after {k} of {ops} ops, {mode:?}");
            let after = fs.crash_with(mode);
            let exists = MetaStore::exists(&after, dir()).unwrap();
            assert!(
                exists || result.is_err(),
                "{ctx}: create returned Ok, so it is durable"
            );
            if exists {
                seen_present = true;
                let store = MetaStore::open(storage(&after), dir())
                    .unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(state_of(&store), empty, "{ctx}");
                assert_eq!(after.list(dir()).unwrap(), clean_files(&empty), "{ctx}");
            } else {
                seen_absent = true;
                // No store: opening says so, and creating over the leftovers works.
                match MetaStore::open(storage(&after), dir()) {
                    Err(Error::Io {
                        op: IoOp::Open,
                        source,
                        ..
                    }) => {
                        assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{ctx}")
                    }
                    other => panic!("{ctx}: expected no store, got {other:?}"),
                }
                let store = MetaStore::create(storage(&after), dir(), manifest_for(0))
                    .unwrap_or_else(|e| panic!("{ctx}: create over leftovers: {e}"));
                assert_eq!(state_of(&store), empty, "{ctx}");
            }
        }
    }
    assert!(seen_absent && seen_present);
}

/// Whether a failure of this operation must poison the store: a failed sync, or a failed write to
/// the superblock file (the slot's contents are then unknown).
fn poisons(op: IoOp, path: &Path) -> bool {
    match op {
        IoOp::SyncData | IoOp::SyncDir | IoOp::SyncAll => true,
        IoOp::Write => path.file_name() == Some("superblock".as_ref()),
        _ => false,
    }
}

#[test]
fn failed_superblock_sync_poisons_and_recovers_old_or_new() {
    let plan = [true];
    let states = expected_states(&plan);
    let (_, sync_at) = measure_publish(&plan, 0);
    let (fs, store) = build(&plan, 0);
    fs.fail_nth(sync_at);
    assert!(matches!(
        store.publish(update_for(1, true)),
        Err(Error::Io {
            op: IoOp::SyncData,
            ..
        })
    ));
    assert!(store.is_poisoned());
    assert!(matches!(
        store.publish(update_for(2, false)),
        Err(Error::Poisoned { .. })
    ));
    assert_eq!(state_of(&store), states[0]);
    for mode in modes() {
        let after = fs.crash_with(mode);
        let ctx = format!("failed superblock sync, {mode:?}");
        check_recovery(&after, &states[0], &states[1], false, &ctx);
    }
}

#[test]
fn a_failure_at_any_operation_of_a_publish_is_handled() {
    for plan in [[true], [false]] {
        let states = expected_states(&plan);
        let (ops, _) = measure_publish(&plan, 0);
        for n in 1..=ops {
            let (fs, store) = build(&plan, 0);
            fs.fail_nth(n);
            let ctx = format!("plan {plan:?}, op {n} of {ops} fails");
            match store.publish(update_for(1, plan[0])) {
                // Only removing the previous manifest, after the publish is complete, may fail
                // without failing the publish.
                Ok(()) => {
                    assert_eq!(state_of(&store), states[1], "{ctx}");
                    assert!(!store.is_poisoned(), "{ctx}");
                }
                Err(Error::Io { op, path, .. }) if poisons(op, &path) => {
                    assert!(store.is_poisoned(), "{ctx}: {op} of {path:?}");
                    assert_eq!(state_of(&store), states[0], "{ctx}");
                    assert!(
                        matches!(
                            store.publish(update_for(1, plan[0])),
                            Err(Error::Poisoned { .. })
                        ),
                        "{ctx}"
                    );
                    for mode in modes() {
                        let ctx = format!("{ctx}, {mode:?}");
                        check_recovery(&fs.crash_with(mode), &states[0], &states[1], false, &ctx);
                    }
                }
                Err(Error::Io { op, path, .. }) => {
                    // A failure before anything could reach the superblock: the old state stays
                    // fully in force, and a retry succeeds.
                    assert!(!store.is_poisoned(), "{ctx}: {op} of {path:?}");
                    assert_eq!(state_of(&store), states[0], "{ctx}");
                    store.publish(update_for(1, plan[0])).unwrap();
                    assert_eq!(state_of(&store), states[1], "{ctx}");
                    let after = fs.crash_with(CrashMode::DropUnsynced);
                    check_recovery(&after, &states[0], &states[1], true, &ctx);
                }
                Err(other) => panic!("{ctx}: unexpected error {other:?}"),
            }
        }
    }
}

#[test]
fn no_space_for_the_manifest_fails_cleanly() {
    let plan = [true];
    let states = expected_states(&plan);
    let (fs, store) = build(&plan, 0);
    fs.set_space_bytes_max(Some(fs.space_used_bytes()));
    let err = store.publish(update_for(1, true)).unwrap_err();
    assert!(err.is_no_space(), "{err:?}");
    assert!(!store.is_poisoned());
    assert_eq!(state_of(&store), states[0]);
    // The tmp file is left behind; the retry replaces it, and open would remove it.
    let tmp: PathBuf = dir().join(format!("{}.tmp", manifest_file_name(2)));
    assert!(fs.exists(&tmp).unwrap());
    fs.set_space_bytes_max(None);
    let crashed = fs.crash_with(CrashMode::KeepUnsynced);
    // Nothing reached the superblock, so the old state is the only one recovery may find.
    check_recovery(&crashed, &states[0], &states[0], false, "no space, crash");

    let (fs, store) = build(&plan, 0);
    fs.set_space_bytes_max(Some(fs.space_used_bytes()));
    assert!(store.publish(update_for(1, true)).is_err());
    fs.set_space_bytes_max(None);
    store.publish(update_for(1, true)).unwrap();
    assert_eq!(state_of(&store), states[1]);
    check_recovery(
        &fs.crash_with(CrashMode::DropUnsynced),
        &states[0],
        &states[1],
        true,
        "no space, then retry",
    );
}

/// Simulates a process that died after `k` operations of a publish while the machine kept
/// running: its writes stay in the page cache, where the next process reads them.
fn process_dies_after(fs: &FaultStorage, k: u64, publish: impl FnOnce()) {
    fs.crash_after(k);
    publish();
    // The next process starts: operations succeed again.
    fs.crash_after(u64::MAX);
}

#[test]
fn process_crash_then_reopen_then_power_loss_keeps_what_open_saw() {
    // A reopened store must not rely on writes that are visible but not yet durable: open makes
    // what it loaded durable before removing anything or publishing over the other slot.
    for plan in PLANS {
        let states = expected_states(&plan);
        for upto in 0..plan.len() {
            let (old, new) = (&states[upto], &states[upto + 1]);
            let (ops, _) = measure_publish(&plan, upto);
            for k in 0..=ops {
                let (fs, store) = build(&plan, upto);
                process_dies_after(&fs, k, || {
                    let _ = store.publish(update_for(upto as u64 + 1, plan[upto]));
                });
                drop(store);
                let ctx = format!(
                    "plan {plan:?}, publish {}, process died after op {k}",
                    upto + 1
                );
                let reopened = MetaStore::open(storage(&fs), dir())
                    .unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
                let seen = state_of(&reopened);
                assert!(seen == *old || seen == *new, "{ctx}: {seen:#?}");
                drop(reopened);
                for mode in modes() {
                    let ctx = format!("{ctx}, then power loss {mode:?}");
                    check_recovery(&fs.crash_with(mode), &seen, &seen, true, &ctx);
                }
            }
        }
    }
}

#[test]
fn process_crash_during_create_then_retry_then_power_loss() {
    let probe = fresh(7);
    MetaStore::create(storage(&probe), dir(), manifest_for(0)).unwrap();
    let ops = probe.op_count() - 1;
    let empty = expected_states(&[])[0].clone();
    for k in 0..=ops {
        let fs = fresh(7);
        process_dies_after(&fs, k, || {
            let _ = MetaStore::create(storage(&fs), dir(), manifest_for(0));
        });
        // The next process opens the store if it sees one, and creates it otherwise.
        let ctx = format!("create, process died after op {k} of {ops}");
        let store = if MetaStore::exists(&fs, dir()).unwrap() {
            MetaStore::open(storage(&fs), dir())
        } else {
            MetaStore::create(storage(&fs), dir(), manifest_for(0))
        };
        let store = store.unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(state_of(&store), empty, "{ctx}");
        drop(store);
        for mode in modes() {
            let ctx = format!("{ctx}, then power loss {mode:?}");
            check_recovery(&fs.crash_with(mode), &empty, &empty, true, &ctx);
        }
    }
}
