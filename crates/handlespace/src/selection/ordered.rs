//! Ordered selection: PEs grouped by a sort key (load, priority, virtual
//! time), each group a circular list with a head, so equal keys are served
//! round robin (RFC 5356 §5.1.2 "ties SHOULD be broken round robin").
//!
//! Round Robin itself is the special case of a single group. The circular
//! lists are intrusive (links live in a per-entry array owned by the
//! handlespace), so selection walks a few 16-byte nodes and never allocates.

use super::Node;
use crate::EntryId;
use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

/// One run of PEs with equal keys: a circular doubly linked list.
#[derive(Debug, Clone, Copy)]
struct Group {
    head: u32,
    len: u32,
}

/// PEs ordered by key, round robin within equal keys.
#[derive(Debug, Default)]
pub(crate) struct Ordered {
    groups: BTreeMap<u64, Group>,
}

impl Ordered {
    /// Links `i` with `key` at the tail of its group (just before the head),
    /// so a newcomer is served after every PE already waiting with that key.
    pub(crate) fn insert(&mut self, nodes: &mut [Node], i: u32, key: u64) {
        nodes[i as usize].key = key;
        match self.groups.entry(key) {
            Entry::Occupied(mut o) => {
                let g = o.get_mut();
                let head = g.head;
                let tail = nodes[head as usize].prev;
                nodes[i as usize].next = head;
                nodes[i as usize].prev = tail;
                nodes[tail as usize].next = i;
                nodes[head as usize].prev = i;
                g.len += 1;
            }
            Entry::Vacant(v) => {
                nodes[i as usize].next = i;
                nodes[i as usize].prev = i;
                v.insert(Group { head: i, len: 1 });
            }
        }
    }

    /// Unlinks `i` (which must be linked under `nodes[i].key`).
    pub(crate) fn remove(&mut self, nodes: &mut [Node], i: u32) {
        let Entry::Occupied(mut o) = self.groups.entry(nodes[i as usize].key) else {
            debug_assert!(false, "ordered selection: node not linked");
            return;
        };
        let g = o.get_mut();
        if g.len == 1 {
            o.remove();
            return;
        }
        let Node { next, prev, .. } = nodes[i as usize];
        nodes[prev as usize].next = next;
        nodes[next as usize].prev = prev;
        if g.head == i {
            g.head = next;
        }
        g.len -= 1;
    }

    /// Moves `i` to `key` (to the tail of that group), unless it is already there.
    pub(crate) fn rekey(&mut self, nodes: &mut [Node], i: u32, key: u64) {
        if nodes[i as usize].key != key {
            self.remove(nodes, i);
            self.insert(nodes, i, key);
        }
    }

    /// Appends up to `k` PEs in ascending key order, each tie group read from
    /// its head; the head of every group read advances by one, which is the
    /// "circular list with a head that advances by one per request" of RFC
    /// 5356 §4.1.2 applied within each set of equal keys.
    pub(crate) fn select(&mut self, nodes: &[Node], k: usize, out: &mut Vec<EntryId>) {
        let mut left = k;
        for g in self.groups.values_mut() {
            if left == 0 {
                break;
            }
            let mut i = g.head;
            let take = left.min(g.len as usize);
            for _ in 0..take {
                out.push(EntryId(i));
                i = nodes[i as usize].next;
            }
            left -= take;
            g.head = nodes[g.head as usize].next;
        }
    }

    /// The smallest key, if any PE is linked.
    pub(crate) fn first_key(&self) -> Option<u64> {
        self.groups.keys().next().copied()
    }

    /// Number of linked PEs (O(groups); for invariant checks).
    pub(crate) fn count(&self) -> usize {
        self.groups.values().map(|g| g.len as usize).sum()
    }

    /// Subtracts `base` from every key (used by WRR to keep virtual time small).
    pub(crate) fn rebase(&mut self, nodes: &mut [Node], base: u64) {
        let old = std::mem::take(&mut self.groups);
        for (key, g) in old {
            let nk = key - base;
            let mut i = g.head;
            for _ in 0..g.len {
                nodes[i as usize].key = nk;
                i = nodes[i as usize].next;
            }
            self.groups.insert(nk, g);
        }
    }
}
