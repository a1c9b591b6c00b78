//! Handlespace benchmark (filled in below).
fn main() {}
