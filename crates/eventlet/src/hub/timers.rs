//! The hub's timers: a binary heap of deadlines over a slab of live entries.
//!
//! Cancelling removes the slab entry at once (so [`Timers::len`] counts only
//! live timers); the heap entry goes stale and is skipped when it surfaces.
//! When stale entries outnumber live ones the heap is rebuilt, so a program
//! that arms and cancels many timers (read timeouts) does not grow it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use slab::Slab;

use super::TaskRef;

/// Identifies an armed timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct TimerKey {
    slot: usize,
    seq: u64,
}

struct Entry {
    seq: u64,
    deadline: Instant,
    task: TaskRef,
}

pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    entries: Slab<Entry>,
    seq: u64,
}

impl Timers {
    pub(crate) fn new() -> Timers {
        Timers { heap: BinaryHeap::new(), entries: Slab::new(), seq: 0 }
    }

    /// Live (armed, not cancelled, not fired) timers.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn insert(&mut self, deadline: Instant, task: TaskRef) -> TimerKey {
        self.seq += 1;
        let seq = self.seq;
        let slot = self.entries.insert(Entry { seq, deadline, task });
        self.heap.push(Reverse((deadline, seq, slot)));
        TimerKey { slot, seq }
    }

    pub(crate) fn cancel(&mut self, key: TimerKey) {
        if self.entries.get(key.slot).is_some_and(|e| e.seq == key.seq) {
            self.entries.remove(key.slot);
            if self.heap.len() > 64 && self.heap.len() > 2 * self.entries.len() {
                let entries = &self.entries;
                self.heap.retain(|Reverse((_, seq, slot))| entries.get(*slot).is_some_and(|e| e.seq == *seq));
            }
        }
    }

    /// The deadline of a live timer.
    pub(crate) fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.entries.get(key.slot).filter(|e| e.seq == key.seq).map(|e| e.deadline)
    }

    /// The earliest live deadline.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, seq, slot))) = self.heap.peek().copied() {
            if self.entries.get(slot).is_some_and(|e| e.seq == seq) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one timer due at `now`, with its key.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, TaskRef)> {
        while let Some(Reverse((at, seq, slot))) = self.heap.peek().copied() {
            let live = self.entries.get(slot).is_some_and(|e| e.seq == seq);
            if live && at > now {
                return None;
            }
            self.heap.pop();
            if live {
                let e = self.entries.remove(slot);
                return Some((TimerKey { slot, seq }, e.task));
            }
        }
        None
    }
}
