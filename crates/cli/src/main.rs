//! The `rserpool` command-line tool.
fn main() {}
