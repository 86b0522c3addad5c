//! Regression: a transaction that changed the same root twice could not commit.
//!
//! The commit record allows at most one change per root name, but `WriteTxn::set_root` and
//! `remove_root` appended every call, so `set_root("a", x); set_root("a", y)` produced a record the
//! encoder refused — found by the crash sweep. A transaction now keeps only the last change per
//! name.

use vellum::runtime::{DurableRuntime, RuntimeOptions};

#[test]
fn the_last_change_to_a_root_in_a_transaction_wins() {
    let dir = tempfile::tempdir().unwrap();
    let (x, y) = {
        let rt = DurableRuntime::open(
            dir.path(),
            RuntimeOptions {
                create_if_missing: true,
                ..RuntimeOptions::default()
            },
        )
        .unwrap();
        let mut tx = rt.begin();
        let x = tx.alloc(0, b"x").unwrap();
        let y = tx.alloc(0, b"y").unwrap();
        tx.set_root("a", x).unwrap();
        tx.set_root("a", y).unwrap();
        tx.set_root("b", x).unwrap();
        tx.remove_root("b").unwrap();
        tx.remove_root("c").unwrap();
        tx.set_root("c", x).unwrap();
        tx.commit().unwrap();
        assert_eq!(rt.root("a"), Some(y));
        assert_eq!(rt.root("b"), None);
        assert_eq!(rt.root("c"), Some(x));
        (x, y)
    };
    let rt = DurableRuntime::open(
        dir.path(),
        RuntimeOptions {
            create_if_missing: true,
            ..RuntimeOptions::default()
        },
    )
    .unwrap();
    assert_eq!(rt.root("a"), Some(y));
    assert_eq!(rt.root("b"), None);
    assert_eq!(rt.root("c"), Some(x));
}
