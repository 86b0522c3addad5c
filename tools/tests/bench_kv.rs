//! `vellum bench kv --quick` runs to the end in a temporary directory: it exits 0, prints one row
//! per workload, distribution, thread count, value size and memory mode (64), reports that every
//! key of each of its four stores was verified exact, and the larger-than-memory rows read the
//! disk while the in-memory rows never do.

use std::process::Command;

#[test]
fn quick_run_reports_every_cell_and_verifies_every_key() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(["bench", "kv", "--quick", "--dir"])
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
    // Rows: value, memory (two words), workload, distribution, threads, Mops/s, disk share.
    let rows: Vec<Vec<&str>> = stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 8 && w[0].ends_with('B') && w[7].ends_with('%'))
        .collect();
    assert_eq!(rows.len(), 64, "{all}");
    for w in &rows {
        let disk: f64 = w[7].trim_end_matches('%').parse().expect("a share");
        let mops: f64 = w[6].parse().expect("a rate");
        assert!(mops > 0.0, "{w:?}");
        if w[1] == "in" {
            assert_eq!(disk, 0.0, "in memory, nothing is read from disk: {w:?}");
        } else {
            assert!(
                disk > 0.0,
                "with a tenth in memory, reads go to disk: {w:?}"
            );
        }
    }
    let verified = stdout
        .lines()
        .filter(|l| l.contains("20000 keys verified exact"))
        .count();
    assert_eq!(verified, 4, "{all}");
}
