//! The hub's timers: a binary heap of deadlines over a slab of live entries.
//!
//! Cancelling removes the slab entry at once (so [`Timers::len`] counts only
//! live timers); the heap entry goes stale and is skipped when it surfaces.
//! When stale entries outnumber live ones the heap is rebuilt, so a program
//! that arms and cancels many timers (read timeouts) does not grow it.
//!
//! A live timer can be moved to a later deadline in O(1) with
//! [`Timers::rearm`]: only its entry changes, and when its heap entry
//! surfaces at the old deadline it goes back in at the new one.

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
    /// When it fires; its heap entry may be earlier (see [`Timers::rearm`]).
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

    /// Moves the live timer `key` to `deadline`. Returns `false` (and does
    /// nothing) if it is not live.
    pub(crate) fn rearm(&mut self, key: TimerKey, deadline: Instant) -> bool {
        let Some(e) = self.entries.get_mut(key.slot).filter(|e| e.seq == key.seq) else { return false };
        if deadline < e.deadline {
            // Earlier than its heap entry may be: it needs one of its own.
            self.heap.push(Reverse((deadline, key.seq, key.slot)));
        }
        e.deadline = deadline;
        true
    }

    /// The deadline of a live timer.
    pub(crate) fn deadline(&self, key: TimerKey) -> Option<Instant> {
        self.entries.get(key.slot).filter(|e| e.seq == key.seq).map(|e| e.deadline)
    }

    /// The earliest live deadline, or a little before it (a timer moved
    /// later still shows its old deadline until it comes up).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, seq, slot))) = self.heap.peek().copied() {
            if self.entries.get(slot).is_some_and(|e| e.seq == seq) {
                return Some(at);
            }
            self.heap.pop();
        }
        None
    }

    /// Removes and returns one timer due at `now`, with its key: of the
    /// timers due, the one with the earliest deadline (a hub held past
    /// several deadlines wakes their green threads in deadline order).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(TimerKey, TaskRef)> {
        while let Some(Reverse((at, seq, slot))) = self.heap.peek().copied() {
            let deadline = self.entries.get(slot).filter(|e| e.seq == seq).map(|e| e.deadline);
            if deadline.is_some() && at > now {
                return None;
            }
            self.heap.pop();
            match deadline {
                Some(d) if d > at => {
                    // Moved later: back in at its deadline, even if that is
                    // due too, so that it fires in its place among the due
                    // ones and not in that of its old deadline. (A timer
                    // moved earlier and then later again may have two heap
                    // entries; whichever comes up second finds it gone.)
                    self.heap.push(Reverse((d, seq, slot)));
                }
                Some(_) => {
                    let e = self.entries.remove(slot);
                    return Some((TimerKey { slot, seq }, e.task));
                }
                None => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn task() -> TaskRef {
        crate::hub::with_hub(|h| h.current())
    }

    #[test]
    fn a_timer_moved_later_fires_at_its_new_deadline() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::new();
        let key = timers.insert(ms(10), task());
        assert!(timers.rearm(key, ms(30)));
        assert_eq!(timers.deadline(key), Some(ms(30)));
        assert!(timers.pop_due(ms(20)).is_none(), "fired at its old deadline");
        assert_eq!(timers.len(), 1);
        assert_eq!(timers.pop_due(ms(30)).map(|(k, _)| k), Some(key));
        assert_eq!(timers.len(), 0);
        assert!(timers.next_deadline().is_none());
    }

    /// A timer moved later whose new deadline is due with another's fires
    /// after it when its deadline is later (it fired at its old deadline's
    /// place: a green thread that had slept to a later deadline ran first).
    #[test]
    fn due_timers_come_out_in_deadline_order_even_one_moved_later() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::new();
        let moved = timers.insert(ms(10), task());
        let other = timers.insert(ms(20), task());
        assert!(timers.rearm(moved, ms(30)));
        // Held past both deadlines.
        assert_eq!(timers.pop_due(ms(40)).map(|(k, _)| k), Some(other));
        assert_eq!(timers.pop_due(ms(40)).map(|(k, _)| k), Some(moved));
        assert!(timers.pop_due(ms(40)).is_none());
        assert!(timers.next_deadline().is_none());
    }

    #[test]
    fn a_timer_moved_earlier_fires_at_its_new_deadline_once() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut timers = Timers::new();
        let key = timers.insert(ms(30), task());
        assert!(timers.rearm(key, ms(10)));
        assert_eq!(timers.next_deadline(), Some(ms(10)));
        assert_eq!(timers.pop_due(ms(10)).map(|(k, _)| k), Some(key));
        // Its first heap entry is stale now.
        assert!(timers.pop_due(ms(40)).is_none());
        assert!(!timers.rearm(key, ms(50)), "a fired timer cannot be moved");
        // Earlier, then later again: it fires once, at the last deadline.
        let key = timers.insert(ms(30), task());
        assert!(timers.rearm(key, ms(10)));
        assert!(timers.rearm(key, ms(50)));
        assert!(timers.pop_due(ms(40)).is_none());
        assert_eq!(timers.pop_due(ms(50)).map(|(k, _)| k), Some(key));
        assert!(timers.pop_due(ms(60)).is_none());
        assert!(timers.next_deadline().is_none());
    }
}
