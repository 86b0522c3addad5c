//! Inspection plugins (`vellum::inspect::Plugin`, `design/TOOLS.md` §7), with two tiny fake
//! structures: each plugin is called once, with exactly the recovered roots it claims (the
//! longest matching prefix wins), sees the recovered epoch and the live nodes' bytes (and
//! `NotLive` for a root naming a retired node), and its findings are in the report as it made
//! them; a root with a prefix no plugin claims is one `info` finding `no_inspector`, a root
//! without a prefix none; `--snapshot` checks call the plugins too; `dump::structures` shows each
//! structure root through its plugin.

use std::path::Path;
use std::sync::Mutex;

use vellum::NodeId;
use vellum::inspect::{
    Finding, FindingKind, FsckOptions, Plugin, Root, Severity, StoreView, Unavailable, dump, fsck,
    fsck_with, load,
};
use vellum::io::OsStorage;
use vellum::runtime::{CommitPolicy, DurableRuntime};
use vellum::{Corruption, CorruptionKind};

mod common;

/// A structure whose nodes must not read `bad!`; it records every call.
struct Fake {
    prefix: &'static str,
    calls: Mutex<Vec<Vec<String>>>,
    epochs: Mutex<Vec<u64>>,
    unavailable: Mutex<Vec<(String, Unavailable)>>,
}

impl Fake {
    fn new(prefix: &'static str) -> Self {
        Fake {
            prefix,
            calls: Mutex::new(Vec::new()),
            epochs: Mutex::new(Vec::new()),
            unavailable: Mutex::new(Vec::new()),
        }
    }

    /// The finding it makes of root `name` naming `node`, which reads `bad!`.
    fn finding(name: &str, node: NodeId) -> Finding {
        let c = Corruption {
            file: name.into(),
            offset: 2,
            kind: CorruptionKind::InvalidField {
                field: "fake",
                value: 1,
            },
        };
        Finding::problem(c, Some(node))
    }
}

impl Plugin for Fake {
    fn structure(&self) -> &str {
        self.prefix
    }

    fn root_prefix(&self) -> &str {
        self.prefix
    }

    fn check(&self, store: &dyn StoreView, roots: &[Root]) -> Vec<Finding> {
        let names = roots.iter().map(|r| r.name.clone()).collect();
        self.calls.lock().unwrap().push(names);
        self.epochs.lock().unwrap().push(store.epoch());
        let mut findings = Vec::new();
        for root in roots {
            let id = root.node().unwrap();
            match store.read(id) {
                Ok(n) if n.bytes == b"bad!" => findings.push(Fake::finding(&root.name, id)),
                Ok(n) => assert_eq!((n.kind, n.bytes.as_slice()), (3, &b"good"[..])),
                Err(e) => self
                    .unavailable
                    .lock()
                    .unwrap()
                    .push((root.name.clone(), e)),
            }
        }
        findings
    }

    fn dump(&self, store: &dyn StoreView, root: &Root) -> serde_json::Value {
        let bytes = root
            .node()
            .and_then(|id| store.read(id).ok())
            .map(|n| n.bytes);
        serde_json::json!({ "bytes": bytes.map(|b| String::from_utf8_lossy(&b).into_owned()) })
    }
}

/// Roots: `fake:a` (good), `fake:b` (bad), `fake:long:c` (bad), `fake:gone` (a retired node),
/// `other:x` and `plain` (good). Returns the ids of each, in that order.
fn store(dir: &Path) -> Vec<NodeId> {
    let rt = DurableRuntime::open(dir, common::small_deterministic_options()).unwrap();
    let mut tx = rt.begin();
    let ids: Vec<NodeId> = [&b"good"[..], b"bad!", b"bad!", b"gone", b"good", b"good"]
        .iter()
        .map(|b| tx.alloc(3, b).unwrap())
        .collect();
    let names = [
        "fake:a",
        "fake:b",
        "fake:long:c",
        "fake:gone",
        "other:x",
        "plain",
    ];
    for (name, id) in names.iter().zip(&ids) {
        tx.set_root(name, *id).unwrap();
    }
    tx.commit_with(CommitPolicy::Strict).unwrap();
    let mut tx = rt.begin();
    tx.retire(ids[3]).unwrap();
    tx.commit_with(CommitPolicy::Strict).unwrap();
    rt.close().unwrap();
    ids
}

fn no_inspector(
    name: &str,
    prefix: &str,
    node: NodeId,
) -> (Severity, String, u64, Option<NodeId>, FindingKind) {
    (
        Severity::Info,
        name.to_owned(),
        0,
        Some(node),
        FindingKind::NoInspector {
            prefix: prefix.to_owned(),
        },
    )
}

fn summary(f: &Finding) -> (Severity, String, u64, Option<NodeId>, FindingKind) {
    (
        f.severity,
        f.file.to_string_lossy().into_owned(),
        f.offset,
        f.node,
        f.kind.clone(),
    )
}

#[test]
fn plugins_get_their_roots_and_their_findings_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let ids = store(&dir);
    let storage = OsStorage::new();
    let (fake, long) = (Fake::new("fake:"), Fake::new("fake:long:"));
    let report = fsck_with(&storage, &dir, &common::fsck_options(), &[&fake, &long]).unwrap();

    // Each plugin once, with its roots in name order; `fake:long:c` goes to the longer prefix.
    assert_eq!(
        *fake.calls.lock().unwrap(),
        [["fake:a", "fake:b", "fake:gone"]]
    );
    assert_eq!(*long.calls.lock().unwrap(), [["fake:long:c"]]);
    let epoch = report.summary.replayed_epoch.unwrap();
    assert_eq!(*fake.epochs.lock().unwrap(), [epoch]);
    assert_eq!(
        *fake.unavailable.lock().unwrap(),
        [("fake:gone".to_owned(), Unavailable::NotLive)]
    );
    // Its findings as it made them, then `other:x` unclaimed; nothing about `plain`.
    let findings: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::UnwrittenSlot)
        .collect();
    assert_eq!(
        findings,
        [
            &Fake::finding("fake:b", ids[1]),
            &Fake::finding("fake:long:c", ids[2]),
            &report.findings[report.findings.len() - 1],
        ]
    );
    assert_eq!(
        summary(findings[2]),
        no_inspector("other:x", "other:", ids[4])
    );
    assert_eq!(
        findings[2].message,
        "no inspector for root other:x: the nodes of its structure were checked as nodes \
         (slot and CRC32C) but not decoded"
    );
    assert_eq!(report.count(Severity::Problem), 2);
    assert_eq!(report.exit_code(false), 1);

    // A snapshot check calls them too.
    let snapshot = FsckOptions {
        snapshot: true,
        ..common::fsck_options()
    };
    let fake = Fake::new("fake:");
    let report = fsck_with(&storage, &dir, &snapshot, &[&fake]).unwrap();
    assert_eq!(fake.calls.lock().unwrap().len(), 1);
    assert!(report.findings.contains(&Fake::finding("fake:b", ids[1])));
}

#[test]
fn without_plugins_every_structure_root_is_an_info_finding() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let ids = store(&dir);
    let report = fsck(&OsStorage::new(), &dir, &common::fsck_options()).unwrap();
    let findings: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind != FindingKind::UnwrittenSlot)
        .map(summary)
        .collect();
    assert_eq!(
        findings,
        [
            no_inspector("fake:a", "fake:", ids[0]),
            no_inspector("fake:b", "fake:", ids[1]),
            no_inspector("fake:gone", "fake:", ids[3]),
            no_inspector("fake:long:c", "fake:", ids[2]),
            no_inspector("other:x", "other:", ids[4]),
        ]
    );
    assert!(report.is_clean(true), "info findings only");
}

#[test]
fn dump_shows_each_structure_root_through_its_plugin() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let ids = store(&dir);
    let insp = load(&OsStorage::new(), &dir, &common::fsck_options()).unwrap();
    let fake = Fake::new("fake:");
    let shown = dump::structures(&insp, &[&fake]);
    let rows: Vec<(&str, String, Option<&str>, Option<serde_json::Value>)> = shown
        .iter()
        .map(|s| {
            (
                s.root.as_str(),
                s.node.clone(),
                s.structure.as_deref(),
                s.view.clone(),
            )
        })
        .collect();
    let view = |b: Option<&str>| Some(serde_json::json!({ "bytes": b }));
    assert_eq!(
        rows,
        [
            (
                "fake:a",
                ids[0].to_string(),
                Some("fake:"),
                view(Some("good"))
            ),
            (
                "fake:b",
                ids[1].to_string(),
                Some("fake:"),
                view(Some("bad!"))
            ),
            ("fake:gone", ids[3].to_string(), Some("fake:"), view(None)),
            (
                "fake:long:c",
                ids[2].to_string(),
                Some("fake:"),
                view(Some("bad!"))
            ),
            ("other:x", ids[4].to_string(), None, None),
        ]
    );
    // Dumping does not check.
    assert!(fake.calls.lock().unwrap().is_empty());
    let text = serde_json::to_string(&shown).unwrap();
    assert!(text.contains(r#""structure":null"#), "{text}");
}
