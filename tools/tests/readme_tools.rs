//! The README's tool commands work as written. The README told newcomers to run `fsck`, `dump`
//! and `compact` on `vellum-data/bench-runtime`, a folder holding two stores, which is not a store
//! itself, so all three exited with "no store here". This test reads the README's set-up block
//! and its tool block (the fenced block after "The other tools work on a store directory"), runs
//! `vellum bench --quick` into a temporary directory, and runs every command of the tool block
//! against it with only the directory prefix rewritten, checking each one's exit status and what
//! its output says.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How the README invokes the tool; the test runs the built binary in its place.
const CARGO_RUN: &[&str] = &["cargo", "run", "--release", "-p", "vellum-tools", "--"];
/// The text that introduces the tool block.
const TOOL_BLOCK_INTRO: &str = "The other tools work on a store directory";
/// The directory `vellum bench` uses when given no `--dir`.
const DEFAULT_DIR: &str = "vellum-data";

fn readme() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// The lines of the first ```sh block after the line containing `intro`.
fn sh_block_after<'a>(readme: &'a str, intro: &str) -> Vec<&'a str> {
    let mut lines = readme.lines().skip_while(|l| !l.contains(intro));
    assert!(
        lines.next().is_some(),
        "the README has no line with {intro:?}"
    );
    let block: Vec<&str> = lines
        .skip_while(|l| l.trim() != "```sh")
        .skip(1)
        .take_while(|l| l.trim() != "```")
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(!block.is_empty(), "no ```sh block after {intro:?}");
    block
}

/// A README command's arguments after `cargo run ... --`, without its `#` comment.
fn tool_args(line: &str) -> Vec<String> {
    let words: Vec<&str> = line
        .split('#')
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert!(
        words.starts_with(CARGO_RUN),
        "a README command that does not start with `{}`: {line}",
        CARGO_RUN.join(" ")
    );
    words[CARGO_RUN.len()..]
        .iter()
        .map(|w| w.to_string())
        .collect()
}

fn vellum(args: &[String]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vellum"))
        .args(args)
        .output()
        .expect("run vellum")
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs a README command whose first argument is `sub`; checks its exit status and output.
fn run_checked(sub: &str, args: &[String]) {
    let out = vellum(args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "`{}`: {}",
        args.join(" "),
        text(&out)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let says = |what: &str| {
        assert!(
            stdout.contains(what),
            "`{}` should say {what:?}: {}",
            args.join(" "),
            text(&out)
        )
    };
    match sub {
        "fsck" => {
            says("lock held during the check");
            says("0 problems, 0 warnings");
            says("; exit 0");
        }
        "dump" => {
            assert!(stdout.starts_with("superblock\n"), "{}", text(&out));
            says("(in force): generation");
            says("\"format\": \"vellum-manifest\"");
        }
        "compact" => {
            says("moved ");
            says(" segments, returned ");
            says("data files: ");
        }
        other => panic!(
            "the README's tool block runs `{other}`; say in this test what its output must show"
        ),
    }
}

#[test]
fn readme_tool_block_runs_against_a_quick_bench_store() {
    let readme = readme();

    // The set-up block runs the bench with its default directory, which the tool block names.
    let setup = sh_block_after(&readme, "## Set-up");
    let bench = setup
        .iter()
        .map(|l| tool_args(l))
        .find(|a| a.first().is_some_and(|s| s == "bench"))
        .expect("the set-up block runs `bench`");
    assert_eq!(
        bench,
        ["bench"],
        "the set-up's bench uses the default --dir"
    );
    let help = vellum(&["bench".into(), "--help".into()]);
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(&format!("[default: {DEFAULT_DIR}]")),
        "bench's default --dir is {DEFAULT_DIR}: {help}"
    );

    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("data");
    let started = std::time::Instant::now();
    let out = vellum(&[
        "bench".into(),
        "--quick".into(),
        "--dir".into(),
        dir.to_str().expect("utf-8").into(),
    ]);
    assert!(out.status.success(), "bench --quick: {}", text(&out));
    eprintln!(
        "bench --quick took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    let main_store = dir.join("bench-runtime/store");
    assert!(
        summary.contains(&format!("  {} ", main_store.display())),
        "the summary names the main store: {summary}"
    );

    // Each command as written, with only the bench's default directory moved into `tmp`.
    let prefix = format!("{DEFAULT_DIR}/");
    let mut ran = Vec::new();
    for line in sh_block_after(&readme, TOOL_BLOCK_INTRO) {
        let args: Vec<String> = tool_args(line)
            .into_iter()
            .map(|a| match a.strip_prefix(&prefix) {
                Some(rest) => dir.join(rest).to_str().expect("utf-8").to_owned(),
                None => a,
            })
            .collect();
        let sub = args.first().expect("a subcommand").clone();
        run_checked(&sub, &args);
        assert!(
            args.iter().any(|a| Path::new(a) == main_store),
            "`{line}` names the bench's main store {}",
            main_store.display()
        );
        ran.push(sub);
    }
    assert_eq!(ran, ["fsck", "dump", "compact"], "the README's tool block");

    // Compaction left the store clean.
    run_checked(
        "fsck",
        &["fsck".into(), main_store.to_str().expect("utf-8").into()],
    );
}
