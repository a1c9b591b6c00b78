//! A small timer table: named timers, each armed at most once, earliest first.

use crate::time::Instant;
use std::collections::{BTreeSet, HashMap};
use std::hash::Hash;

/// Timers keyed by `K`; arming a key again moves its deadline.
#[derive(Debug)]
pub(crate) struct Timers<K: Ord + Hash + Clone> {
    by_deadline: BTreeSet<(Instant, K)>,
    by_key: HashMap<K, Instant>,
}

impl<K: Ord + Hash + Clone> Default for Timers<K> {
    fn default() -> Self {
        Self {
            by_deadline: BTreeSet::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Ord + Hash + Clone> Timers<K> {
    /// Arms (or re-arms) `key` to fire at `at`.
    pub(crate) fn set(&mut self, key: K, at: Instant) {
        if let Some(old) = self.by_key.insert(key.clone(), at) {
            self.by_deadline.remove(&(old, key.clone()));
        }
        self.by_deadline.insert((at, key));
    }

    /// Disarms `key`; returns whether it was armed.
    pub(crate) fn cancel(&mut self, key: &K) -> bool {
        match self.by_key.remove(key) {
            Some(at) => {
                self.by_deadline.remove(&(at, key.clone()));
                true
            }
            None => false,
        }
    }

    /// Whether `key` is armed.
    #[cfg(test)]
    pub(crate) fn is_set(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }

    /// The earliest deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.by_deadline.first().map(|(at, _)| *at)
    }

    /// Removes and returns one timer due at or before `now`, earliest first.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<K> {
        let (at, _) = self.by_deadline.first()?;
        if *at > now {
            return None;
        }
        let (_, key) = self.by_deadline.pop_first()?;
        self.by_key.remove(&key);
        Some(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn t(ms: u64) -> Instant {
        Instant::from_epoch(Duration::from_millis(ms))
    }

    #[test]
    fn rearm_moves_and_pop_is_ordered() {
        let mut timers = Timers::default();
        timers.set("a", t(30));
        timers.set("b", t(10));
        timers.set("a", t(5));
        assert_eq!(timers.next(), Some(t(5)));
        assert_eq!(timers.pop_due(t(20)), Some("a"));
        assert_eq!(timers.pop_due(t(20)), Some("b"));
        assert_eq!(timers.pop_due(t(20)), None);
        timers.set("c", t(40));
        assert!(timers.cancel(&"c"));
        assert_eq!(timers.next(), None);
    }
}
