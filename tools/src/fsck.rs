//! `vellum fsck DIR`: checks a store without changing it and reports every finding
//! (`design/TOOLS.md`), the structures its roots name included (through [`crate::PLUGINS`]). Exit codes: 0 clean, 1 problems found, 2 the store could not be read.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use serde::Serialize;
use vellum::Error;
use vellum::inspect::{Access, FsckOptions, Report, Severity, fsck_with};
use vellum::io::OsStorage;

/// Exit code: the store could not be read at all (or is locked by a writer).
pub const EXIT_UNREADABLE: u8 = 2;

#[derive(Args, Debug)]
pub struct FsckArgs {
    /// The store directory.
    dir: PathBuf,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Check the store as published right now, without taking its lock, while a writer may be
    /// running; findings a concurrent write may explain are marked and are never problems.
    #[arg(long)]
    snapshot: bool,
    /// Count warnings (states that are normal only after a crash) as problems.
    #[arg(long)]
    strict: bool,
    /// The store's file_bytes_max, used only when no manifest can be read (its layout wins).
    #[arg(long, default_value_t = FsckOptions::default().file_bytes_max)]
    file_bytes_max: u64,
    /// The store's window_bytes, used only when no manifest can be read (its layout wins).
    #[arg(long, default_value_t = FsckOptions::default().window_bytes)]
    window_bytes: u64,
    /// Do not read live nodes' bytes (skips the CRC32C check of every node).
    #[arg(long)]
    no_node_bytes: bool,
}

/// The JSON document: the report and the exit code, or the error that stopped the check.
#[derive(Serialize)]
struct JsonOut<'a> {
    exit_code: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    report: Option<&'a Report>,
}

/// Runs the check; returns the exit code.
pub fn run(args: &FsckArgs) -> u8 {
    let options = FsckOptions {
        file_bytes_max: args.file_bytes_max,
        window_bytes: args.window_bytes,
        snapshot: args.snapshot,
        verify_bytes: !args.no_node_bytes,
    };
    let storage = Arc::new(OsStorage::new());
    let report = match fsck_with(storage.as_ref(), &args.dir, &options, crate::PLUGINS) {
        Ok(report) => report,
        Err(e) => {
            let message = refusal(&args.dir, &e);
            if args.json {
                print_json(&JsonOut {
                    exit_code: EXIT_UNREADABLE,
                    error: Some(message),
                    report: None,
                });
            } else {
                eprintln!("vellum fsck: {message}");
            }
            return EXIT_UNREADABLE;
        }
    };
    let code = report.exit_code(args.strict);
    if args.json {
        print_json(&JsonOut {
            exit_code: code,
            error: None,
            report: Some(&report),
        });
    } else {
        print_text(&report, code);
    }
    code
}

/// The message for a check that could not start.
pub fn refusal(dir: &std::path::Path, e: &Error) -> String {
    match e {
        Error::Locked { path } => format!(
            "{} is locked by a live writer ({} is held): stop it first, or use --snapshot to \
             check the store as published while it runs",
            dir.display(),
            path.display()
        ),
        other => format!("cannot read the store in {}: {other}", dir.display()),
    }
}

pub fn print_json<T: Serialize>(value: &T) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("vellum: cannot encode JSON: {e}"),
    }
}

fn print_text(report: &Report, code: u8) {
    let s = &report.summary;
    let access = match report.access {
        Access::Locked => "lock held during the check",
        Access::NoLockFile => "no lock file",
        Access::Snapshot => "snapshot (no lock; a writer may have run)",
    };
    println!("vellum fsck {} ({access})", report.dir.display());
    match (s.slot_in_force, s.generation, s.commit_epoch) {
        (Some(slot), Some(g), Some(e)) => println!(
            "  superblock: slot {slot} in force, generation {g}, commit epoch {e}; manifest {} \
             ({})",
            s.manifest_seq
                .map_or("unreadable".into(), |m| m.to_string()),
            if s.manifest_trusted {
                "trusted"
            } else {
                "NOT trusted"
            }
        ),
        _ => println!("  superblock: no valid slot"),
    }
    if let Some(ck) = &s.checkpoint {
        println!(
            "  checkpoint {}: epoch {}, {} valid entries, {} block(s)",
            ck.file, ck.epoch, ck.entries_valid, ck.blocks
        );
    }
    for l in &s.logs {
        println!(
            "  log {}{}: {} bytes, {} valid frames up to offset {}, epochs {}..{}",
            l.file,
            if l.open { " (open)" } else { "" },
            l.bytes,
            l.frames,
            l.valid_end,
            l.first_epoch.map_or("-".into(), |e| e.to_string()),
            l.last_epoch.map_or("-".into(), |e| e.to_string()),
        );
    }
    if let Some(epoch) = s.replayed_epoch {
        println!(
            "  replay: reaches epoch {epoch} ({} records); {} live nodes, {} bytes, {} verified; \
             {} roots",
            s.records_replayed, s.live_nodes, s.live_bytes, s.nodes_verified, s.roots
        );
    }
    for c in &s.space {
        println!(
            "  class {:>2} ({:>8} B slots): {} files, {} bytes, {} on disk; {} live nodes, {} \
             bytes in {} bytes of slots",
            c.class,
            c.slot_bytes,
            c.files,
            c.file_bytes,
            c.disk_bytes,
            c.live_nodes,
            c.live_bytes,
            c.live_slot_bytes
        );
    }
    for f in &report.findings {
        let severity = match f.severity {
            Severity::Problem => "PROBLEM",
            Severity::Warning => "WARNING",
            Severity::Info => "info",
        };
        let node = f.node.map_or(String::new(), |n| format!(" node {n}"));
        let concurrent = if f.maybe_concurrent {
            " [may be a concurrent write]"
        } else {
            ""
        };
        println!(
            "{severity:<7} {}@{}{node}: {}{concurrent}",
            f.file_name(),
            f.offset,
            f.message
        );
    }
    println!(
        "{} problems, {} warnings, {} info; exit {code}",
        report.count(Severity::Problem),
        report.count(Severity::Warning),
        report.count(Severity::Info)
    );
}
