//! `vellum bench durable --quick` runs to the end in a temporary directory: it exits 0, its
//! stdout has a row for each thread count of each policy, and the reopened store held every key's
//! last acknowledged content. This keeps the bench from rotting between the runs that measure.

use std::process::Command;

/// The thread counts and policies of `--quick`.
const QUICK_THREADS: &[&str] = &["1", "2"];
const POLICIES: &[&str] = &["strict", "balanced"];

#[test]
fn quick_run_reports_every_cell_and_verifies_every_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(["bench", "durable", "--quick", "--dir"])
        .arg(dir.path())
        .output()
        .expect("run vellum");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let all = format!(
        "status {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(0), "{all}");
    for policy in POLICIES {
        for threads in QUICK_THREADS {
            let rows = stdout
                .lines()
                .filter(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.len() > 2 && words[0] == *policy && words[1] == *threads
                })
                .count();
            assert_eq!(
                rows, 1,
                "one row for {policy} with {threads} threads\n{all}"
            );
        }
    }
    assert!(
        stdout.lines().any(|l| l.starts_with("verified 20000 keys")),
        "{all}"
    );
    assert!(
        dir.path().join("bench-durable/store").is_dir(),
        "the store is left in bench-durable/store\n{all}"
    );
}
