//! `fsck` runs the journal's plugin: a healthy store has no finding about it, damage that the
//! runtime's checksums cannot see (the journal's own format) is the plugin's exact finding, and
//! `dump::structures` shows the plugin's view.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use vellum::inspect::{
    Finding, FindingKind, FsckOptions, Plugin, Severity, dump, fsck_with, load_with,
};
use vellum::io::OsStorage;
use vellum::runtime::{DurableRuntime, RuntimeOptions};
use vellum::{CorruptionKind, NodeId};
use vellum_outside::{HEADER_KIND, Header, Journal, JournalPlugin, PAGE_BYTES, PAGE_KIND};

const PLUGINS: &[&dyn Plugin] = &[&JournalPlugin];

fn options() -> RuntimeOptions {
    RuntimeOptions {
        create_if_missing: true,
        ..RuntimeOptions::default()
    }
}

/// A store with journals `a` (100 records of 100 bytes: 3 pages) and `b` (one record), closed.
fn store(dir: &Path) -> Arc<DurableRuntime> {
    let rt = Arc::new(DurableRuntime::open(dir, options()).unwrap());
    let a = Journal::open(rt.clone(), "a").unwrap();
    for i in 0..100u8 {
        a.append(&[i; 100]).unwrap();
    }
    Journal::open(rt.clone(), "b")
        .unwrap()
        .append(b"one")
        .unwrap();
    rt
}

fn close(rt: Arc<DurableRuntime>) {
    Arc::into_inner(rt)
        .expect("the only handle")
        .close()
        .unwrap();
}

fn pages(rt: &DurableRuntime, name: &str) -> Vec<NodeId> {
    let header = rt.root(&format!("journal:{name}")).unwrap();
    Header::decode(&rt.read(header).unwrap(), header)
        .unwrap()
        .pages
}

/// The one problem `fsck` with the journal's plugin finds in `dir`.
fn only_problem(dir: &Path) -> Finding {
    let report = fsck_with(&OsStorage::new(), dir, &FsckOptions::default(), PLUGINS).unwrap();
    let problems: Vec<_> = report.problems().cloned().collect();
    assert_eq!(problems.len(), 1, "{problems:?}");
    problems.into_iter().next().unwrap()
}

fn node_file(id: NodeId) -> PathBuf {
    PathBuf::from(format!("node {id}"))
}

#[test]
fn a_healthy_store_has_no_finding_and_the_plugin_dumps_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = store(dir.path());
    assert_eq!(pages(&rt, "a").len(), 3);
    close(rt);
    let options = FsckOptions::default();
    let report = fsck_with(&OsStorage::new(), dir.path(), &options, PLUGINS).unwrap();
    assert_eq!(report.problems().count(), 0, "{:?}", report.findings);
    assert!(
        report
            .findings
            .iter()
            .all(|f| !matches!(f.kind, FindingKind::NoInspector { .. }))
    );
    // Without the plugin each journal root is one Info finding: nobody checked it.
    let report = fsck_with(&OsStorage::new(), dir.path(), &options, &[]).unwrap();
    let unchecked: Vec<_> = report
        .findings
        .iter()
        .filter(|f| matches!(&f.kind, FindingKind::NoInspector { prefix } if prefix == "journal:"))
        .collect();
    assert_eq!(unchecked.len(), 2);
    assert!(unchecked.iter().all(|f| f.severity == Severity::Info));
    // dump shows what the plugin decodes.
    let inspection = load_with(&OsStorage::new(), dir.path(), &options, PLUGINS).unwrap();
    let views: Vec<_> = dump::structures(&inspection, PLUGINS)
        .into_iter()
        .map(|s| (s.root, s.structure, s.view))
        .collect();
    assert_eq!(
        views,
        vec![
            (
                "journal:a".to_owned(),
                Some("journal".to_owned()),
                Some(serde_json::json!({ "pages": 3, "records": 100 }))
            ),
            (
                "journal:b".to_owned(),
                Some("journal".to_owned()),
                Some(serde_json::json!({ "pages": 1, "records": 1 }))
            ),
        ]
    );
}

#[test]
fn a_page_the_runtime_holds_intact_but_the_journal_cannot_decode_is_the_plugins_finding() {
    let dir = tempfile::tempdir().unwrap();
    let rt = store(dir.path());
    let page = pages(&rt, "a")[1];
    // A version with a valid checksum whose record count runs past its bytes.
    let mut bytes = vec![0u8; PAGE_BYTES];
    bytes[..2].copy_from_slice(&3u16.to_le_bytes());
    bytes[2..4].copy_from_slice(&4000u16.to_le_bytes());
    bytes[4004..4006].copy_from_slice(&4000u16.to_le_bytes());
    let mut tx = rt.begin();
    tx.write(page, &bytes).unwrap();
    tx.commit().unwrap();
    close(rt);
    let f = only_problem(dir.path());
    assert_eq!(f.file, node_file(page));
    assert_eq!(f.offset, 4006);
    assert_eq!(f.node, Some(page));
    assert_eq!(
        f.kind,
        FindingKind::Corruption {
            detail: CorruptionKind::Truncated {
                needed: 4000,
                available: 90
            }
        }
    );
}

#[test]
fn a_root_naming_a_node_of_another_kind_is_the_plugins_finding() {
    let dir = tempfile::tempdir().unwrap();
    let rt = store(dir.path());
    let page = pages(&rt, "b")[0];
    let mut tx = rt.begin();
    tx.set_root("journal:c", page).unwrap();
    tx.commit().unwrap();
    close(rt);
    let f = only_problem(dir.path());
    assert_eq!(
        (f.file.clone(), f.offset, f.node),
        (node_file(page), 0, Some(page))
    );
    assert_eq!(
        f.kind,
        FindingKind::Corruption {
            detail: CorruptionKind::Mismatch {
                what: "journal node kind",
                expected: u64::from(HEADER_KIND),
                actual: u64::from(PAGE_KIND),
            }
        }
    );
}
