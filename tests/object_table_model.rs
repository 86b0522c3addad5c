//! The object table against a model: random reserve/publish/abort/update/retire/trim/reclaim
//! sequences; every read must give exactly the model's answer, and every stale id must be refused.
//! Updates mostly keep the node's kind (the entry keeps the previous version inline) and sometimes
//! change it (both versions go to the heap chain), so both of the entry's places for older
//! versions, and the moves between them, meet every other operation.

use std::collections::HashMap;

use proptest::prelude::*;
use vellum::Error;
use vellum::alloc::Location;
use vellum::object_table::{NodeId, ObjectTable, Version};

#[derive(Debug, Clone, PartialEq)]
enum State {
    Reserved,
    Live,
    Retired(u64),
}

#[derive(Debug, Clone)]
struct Entry {
    state: State,
    /// Retained versions, oldest first.
    versions: Vec<Version>,
    /// The epoch that superseded each retained version but the last (its successor's birth, or
    /// a move's epoch: a move keeps the birth).
    superseded: Vec<u64>,
}

struct Model {
    entries: HashMap<NodeId, Entry>,
    issued: Vec<NodeId>,
    epoch: u64,
    next_offset: u64,
}

impl Model {
    fn version(&mut self, kind: u8) -> Version {
        self.epoch += 1;
        self.next_offset += 64;
        Version {
            location: Location {
                class: 0,
                file: 1,
                offset: self.next_offset,
            },
            len: (self.next_offset % 64) as u32 + 1,
            crc32c: self.next_offset as u32 ^ 0xabcd,
            kind,
            birth: self.epoch,
        }
    }

    fn visible_at(entry: &Entry, epoch: u64) -> Option<Version> {
        if let State::Retired(r) = entry.state
            && r <= epoch
        {
            return None;
        }
        entry
            .versions
            .iter()
            .rev()
            .find(|v| v.birth <= epoch)
            .copied()
    }
}

fn is_not_found(r: &Result<impl std::fmt::Debug, Error>) -> bool {
    matches!(r, Err(Error::NodeNotFound { .. }))
}

#[derive(Debug, Clone)]
enum Op {
    Reserve,
    Publish(usize),
    Abort(usize),
    /// An update; `true` keeps the node's kind.
    Update(usize, bool),
    /// A move: the current version's bytes at a new location, same birth, at a new epoch.
    Relocate(usize),
    Retire(usize),
    Reclaim(usize),
    Trim(usize, u64),
    Read(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Reserve),
        3 => any::<usize>().prop_map(Op::Publish),
        1 => any::<usize>().prop_map(Op::Abort),
        4 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(i, k)| Op::Update(i, k)),
        2 => any::<usize>().prop_map(Op::Relocate),
        2 => any::<usize>().prop_map(Op::Retire),
        2 => any::<usize>().prop_map(Op::Reclaim),
        2 => (any::<usize>(), 0u64..64).prop_map(|(i, e)| Op::Trim(i, e)),
        4 => any::<usize>().prop_map(Op::Read),
    ]
}

fn check_reads(t: &ObjectTable, m: &Model, id: NodeId, guard: &crossbeam_epoch::Guard) {
    if let Some(entry) = m.entries.get(&id) {
        // Every retained version but the current one, newest first.
        let want: Vec<Version> = match entry.versions.split_last() {
            Some((_, older)) => older.iter().rev().copied().collect(),
            None => Vec::new(),
        };
        assert_eq!(
            t.older_versions(id, guard).unwrap(),
            want,
            "older versions of {id}"
        );
    }
    let got = t.get(id, guard);
    match m.entries.get(&id) {
        Some(Entry {
            state: State::Live,
            versions,
            ..
        }) => assert_eq!(got.unwrap(), *versions.last().unwrap()),
        _ => assert!(is_not_found(&got), "{id}: {got:?}"),
    }
    for e in 0..=m.epoch + 1 {
        let got = t.get_at(id, e, guard);
        match m.entries.get(&id) {
            None => assert!(is_not_found(&got), "{id}@{e}: {got:?}"),
            Some(entry) => assert_eq!(got.unwrap(), Model::visible_at(entry, e), "{id}@{e}"),
        }
    }
}

fn run(ops: Vec<Op>) {
    let t = ObjectTable::new();
    let mut m = Model {
        entries: HashMap::new(),
        issued: Vec::new(),
        epoch: 0,
        next_offset: 0,
    };
    let guard = crossbeam_epoch::pin();
    for op in ops {
        let pick = |i: usize| m.issued.get(i % m.issued.len().max(1)).copied();
        match op {
            Op::Reserve => {
                let id = t.reserve().unwrap();
                // No live or reserved entry may share the handle.
                assert!(
                    !m.entries
                        .keys()
                        .any(|o| (o.shard(), o.handle()) == (id.shard(), id.handle())),
                    "{id} reissued a handle in use"
                );
                m.entries.insert(
                    id,
                    Entry {
                        state: State::Reserved,
                        versions: vec![],
                        superseded: vec![],
                    },
                );
                m.issued.push(id);
            }
            Op::Publish(i) => {
                let Some(id) = pick(i) else { continue };
                let v = m.version(3);
                let r = t.publish(id, v);
                match m.entries.get_mut(&id) {
                    Some(e) if e.state == State::Reserved => {
                        r.unwrap();
                        e.state = State::Live;
                        e.versions.push(v);
                    }
                    _ => assert!(is_not_found(&r)),
                }
            }
            Op::Abort(i) => {
                let Some(id) = pick(i) else { continue };
                let r = t.abort(id);
                match m.entries.get(&id) {
                    Some(e) if e.state == State::Reserved => {
                        r.unwrap();
                        m.entries.remove(&id);
                    }
                    _ => assert!(is_not_found(&r)),
                }
            }
            Op::Update(i, same_kind) => {
                let Some(id) = pick(i) else { continue };
                let kind = match m.entries.get(&id).and_then(|e| e.versions.last()) {
                    Some(last) if same_kind => last.kind,
                    Some(last) => last.kind.wrapping_add(1),
                    None => 4,
                };
                let v = m.version(kind);
                let r = t.update(id, v, &guard);
                match m.entries.get_mut(&id) {
                    Some(e) if e.state == State::Live => {
                        assert_eq!(r.unwrap(), e.versions.last().copied());
                        e.versions.push(v);
                        e.superseded.push(v.birth);
                    }
                    _ => assert!(is_not_found(&r)),
                }
            }
            Op::Relocate(i) => {
                let Some(id) = pick(i) else { continue };
                let Some(Entry {
                    state: State::Live,
                    versions,
                    ..
                }) = m.entries.get(&id)
                else {
                    continue;
                };
                let current = *versions.last().unwrap();
                let moved = Version {
                    birth: current.birth,
                    ..m.version(current.kind)
                };
                let r = t.relocate(id, moved, m.epoch, &guard);
                let e = m.entries.get_mut(&id).unwrap();
                assert_eq!(r.unwrap(), Some(current));
                e.versions.push(moved);
                e.superseded.push(m.epoch);
            }
            Op::Retire(i) => {
                let Some(id) = pick(i) else { continue };
                m.epoch += 1;
                let r = t.retire(id, m.epoch);
                match m.entries.get_mut(&id) {
                    Some(e) if e.state == State::Live => {
                        r.unwrap();
                        e.state = State::Retired(m.epoch);
                    }
                    _ => assert!(is_not_found(&r)),
                }
            }
            Op::Reclaim(i) => {
                let Some(id) = pick(i) else { continue };
                let r = t.reclaim(id, &guard);
                match m.entries.get(&id) {
                    Some(e) if matches!(e.state, State::Retired(_)) => {
                        let mut got = r.unwrap();
                        let mut want = e.versions.clone();
                        got.sort_by_key(|v| (v.birth, v.location.offset));
                        want.sort_by_key(|v| (v.birth, v.location.offset));
                        assert_eq!(got, want, "reclaim returns every retained version");
                        m.entries.remove(&id);
                    }
                    _ => assert!(is_not_found(&r)),
                }
            }
            Op::Trim(i, min) => {
                let Some(id) = pick(i) else { continue };
                let r = t.trim(id, min, &guard);
                match m.entries.get_mut(&id) {
                    Some(e) if matches!(e.state, State::Live | State::Retired(_)) => {
                        // Version j goes once the commit that superseded it is at or before
                        // `min`: no snapshot from `min` on can read it.
                        let n = e.versions.len();
                        let keep_from = (0..n)
                            .find(|&j| j + 1 == n || e.superseded[j] > min)
                            .unwrap_or(0);
                        e.superseded.drain(..keep_from);
                        let mut want: Vec<Version> = e.versions.drain(..keep_from).collect();
                        let mut got = r.unwrap();
                        got.sort_by_key(|v| (v.birth, v.location.offset));
                        want.sort_by_key(|v| (v.birth, v.location.offset));
                        assert_eq!(got, want, "trim({min}) of {id}");
                    }
                    Some(_) => {
                        // Reserved: no older versions, so trim has nothing to do.
                        let _ = r;
                    }
                    None => {}
                }
            }
            Op::Read(i) => {
                let Some(id) = pick(i) else { continue };
                check_reads(&t, &m, id, &guard);
            }
        }
    }
    // Final sweep: every id ever issued reads exactly as the model says.
    for &id in &m.issued {
        check_reads(&t, &m, id, &guard);
    }
    // And the table's own enumeration matches the model's live set.
    let mut listed = Vec::new();
    t.for_each(&guard, |id, _| listed.push(id));
    listed.sort();
    let mut want: Vec<NodeId> = m.entries.keys().copied().collect();
    want.sort();
    assert_eq!(listed, want);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn object_table_matches_model(ops in prop::collection::vec(op(), 1..200)) {
        run(ops);
    }
}

#[test]
fn stale_ids_are_refused_after_reuse() {
    let t = ObjectTable::new();
    let guard = crossbeam_epoch::pin();
    let v = |birth| Version {
        location: Location {
            class: 0,
            file: 0,
            offset: 0,
        },
        len: 1,
        crc32c: 0,
        kind: 0,
        birth,
    };
    // Keep reserving on one thread until a handle comes back: the freed id must be stale.
    let a = t.reserve().unwrap();
    t.publish(a, v(1)).unwrap();
    t.retire(a, 2).unwrap();
    t.reclaim(a, &guard).unwrap();
    let b = loop {
        let b = t.reserve().unwrap();
        if (b.shard(), b.handle()) == (a.shard(), a.handle()) {
            break b;
        }
    };
    assert_eq!(
        b.tag(),
        a.tag() + 1,
        "the tag changes exactly once per reuse"
    );
    t.publish(b, v(3)).unwrap();
    let err = t.get(a, &guard).unwrap_err();
    assert!(err.to_string().contains("stale"), "{err}");
    assert!(t.get_at(a, 1, &guard).is_err());
    assert_eq!(t.get(b, &guard).unwrap(), v(3));
}
