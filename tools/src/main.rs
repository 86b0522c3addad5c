//! The `vellum` command-line tool.

fn main() {}
