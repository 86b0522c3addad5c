//! The journal's inspection plugin: `fsck` runs it on every root named `journal:<name>`, and it
//! checks what the root leads to through the store view alone (the header and each page decode,
//! each node has its kind); `dump` shows the page and record counts.

use vellum::inspect::{Finding, Plugin, Root, StoreView};
use vellum::{Corruption, CorruptionKind, Error, NodeId};

use crate::format::{HEADER_KIND, Header, PAGE_KIND, Page};

/// The prefix of a journal's root name.
pub const ROOT_PREFIX: &str = "journal:";

/// Checks and dumps journals for `vellum::inspect::fsck_with` and `dump::structures`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JournalPlugin;

impl Plugin for JournalPlugin {
    fn structure(&self) -> &str {
        "journal"
    }

    fn root_prefix(&self) -> &str {
        ROOT_PREFIX
    }

    fn check(&self, store: &dyn StoreView, roots: &[Root]) -> Vec<Finding> {
        let mut findings = Vec::new();
        for root in roots {
            if let Err(f) = walk(store, root) {
                findings.push(*f);
            }
        }
        findings
    }

    fn dump(&self, store: &dyn StoreView, root: &Root) -> serde_json::Value {
        match walk(store, root) {
            Ok((pages, records)) => serde_json::json!({ "pages": pages, "records": records }),
            Err(f) => serde_json::json!({ "problem": f.message }),
        }
    }
}

/// Decodes the journal `root` names; returns its page and record counts, or the first problem.
/// A node the view cannot give is the core's finding already, and ends the walk quietly.
fn walk(store: &dyn StoreView, root: &Root) -> Result<(usize, usize), Box<Finding>> {
    let Some(header) = root.node() else {
        return Ok((0, 0));
    };
    let Some(bytes) = node(store, header, HEADER_KIND)? else {
        return Ok((0, 0));
    };
    let pages = Header::decode(&bytes, header)
        .map_err(|e| finding(e, header))?
        .pages;
    let mut records = 0;
    for &page in &pages {
        if let Some(bytes) = node(store, page, PAGE_KIND)? {
            records += Page::decode(&bytes, page)
                .map_err(|e| finding(e, page))?
                .records
                .len();
        }
    }
    Ok((pages.len(), records))
}

/// The bytes of `id`, which must be of `kind`; `None` when the view cannot give them.
fn node(store: &dyn StoreView, id: NodeId, kind: u8) -> Result<Option<Vec<u8>>, Box<Finding>> {
    let Ok(n) = store.read(id) else {
        return Ok(None);
    };
    if n.kind != kind {
        let c = Corruption {
            file: format!("node {id}").into(),
            offset: 0,
            kind: CorruptionKind::Mismatch {
                what: "journal node kind",
                expected: u64::from(kind),
                actual: u64::from(n.kind),
            },
        };
        return Err(Box::new(Finding::problem(c, Some(id))));
    }
    Ok(Some(n.bytes))
}

/// A decoder's error as a finding about node `id`.
fn finding(e: Error, id: NodeId) -> Box<Finding> {
    Box::new(match e {
        Error::Corruption(c) => Finding::problem(*c, Some(id)),
        other => Finding::problem(
            Corruption {
                file: format!("node {id}").into(),
                offset: 0,
                kind: CorruptionKind::InvalidDocument {
                    reason: other.to_string(),
                },
            },
            Some(id),
        ),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use vellum::inspect::{LiveNode, Unavailable};

    use super::*;
    use crate::format::PAGE_BYTES;

    /// A store view over a map of nodes.
    struct Nodes(BTreeMap<NodeId, LiveNode>);

    impl StoreView for Nodes {
        fn epoch(&self) -> u64 {
            1
        }
        fn roots(&self) -> Vec<Root> {
            Vec::new()
        }
        fn read(&self, id: NodeId) -> Result<LiveNode, Unavailable> {
            self.0.get(&id).cloned().ok_or(Unavailable::NotLive)
        }
    }

    fn id(handle: u64) -> NodeId {
        NodeId::new(0, handle, 1).unwrap_or_else(|| panic!("a valid id"))
    }

    fn root(id: NodeId) -> Root {
        Root {
            name: "journal:x".into(),
            value: id.raw(),
        }
    }

    fn header(pages: &[NodeId]) -> LiveNode {
        let h = Header {
            pages: pages.to_vec(),
        };
        let mut bytes = vec![0; h.encoded_len()];
        h.encode_into(&mut bytes);
        LiveNode {
            kind: HEADER_KIND,
            bytes,
        }
    }

    fn page(records: usize) -> LiveNode {
        let p = Page {
            records: vec![b"r".to_vec(); records],
        };
        let mut bytes = vec![0; PAGE_BYTES];
        p.encode_into(&mut bytes);
        LiveNode {
            kind: PAGE_KIND,
            bytes,
        }
    }

    #[test]
    fn it_counts_pages_and_records_and_skips_what_the_view_cannot_give() {
        let nodes = Nodes(BTreeMap::from([
            (id(1), header(&[id(2), id(3), id(4)])),
            (id(2), page(5)),
            (id(3), page(2)),
        ]));
        // Page 4 is not live: the core reports it; the walk counts what it could read.
        assert_eq!(walk(&nodes, &root(id(1))).ok(), Some((3, 7)));
        let plugin = JournalPlugin;
        assert_eq!(
            plugin.dump(&nodes, &root(id(1))),
            serde_json::json!({ "pages": 3, "records": 7 })
        );
        assert_eq!(plugin.check(&nodes, &[root(id(1))]).len(), 0);
        assert_eq!(walk(&nodes, &root(id(9))).ok(), Some((0, 0)));
    }

    #[test]
    fn a_page_where_a_header_belongs_is_one_kind_mismatch() {
        let nodes = Nodes(BTreeMap::from([(id(2), page(1))]));
        let findings = JournalPlugin.check(&nodes, &[root(id(2))]);
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!((f.offset, f.node), (0, Some(id(2))));
        assert_eq!(f.file, std::path::PathBuf::from(format!("node {}", id(2))));
        assert_eq!(
            f.kind,
            vellum::inspect::FindingKind::Corruption {
                detail: CorruptionKind::Mismatch {
                    what: "journal node kind",
                    expected: u64::from(HEADER_KIND),
                    actual: u64::from(PAGE_KIND),
                }
            }
        );
    }
}
