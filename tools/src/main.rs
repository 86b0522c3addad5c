//! The `vellum` command-line tool.
//!
//! `vellum bench` is the project's main job. Until the runtime exists it exercises the layer that
//! commits ride on, the delta log with group commit: several threads append and wait for
//! durability, then the log is reopened and every acknowledged frame is checked.

mod bench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "vellum", version, about = "Tools for vellum stores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the commit workload, reopen, verify every acknowledged commit, and report figures.
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vellum: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The directory the tools use when none is given.
pub fn default_dir() -> PathBuf {
    PathBuf::from("vellum-data")
}
