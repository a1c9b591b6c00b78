//! rserpool-sim: see the workspace README and docs/ for the layer this crate holds.
