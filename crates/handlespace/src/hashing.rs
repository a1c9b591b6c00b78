//! The hash maps of the handlespace.
//!
//! PE IDs and pool handles are chosen by the (possibly hostile) PEs, so the
//! maps use a per-instance random seed: a fixed hash such as FxHash lets a
//! sender pick keys that all land in one probe sequence and turn every
//! lookup into a scan. foldhash is seeded and about as fast as FxHash.
//! Map iteration order never reaches an output, so the seed does not affect
//! determinism.

/// A hash map with a randomly seeded fast hasher.
pub(crate) type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
