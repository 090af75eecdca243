//! The run queue: a FIFO of ready green threads linked through their tasks
//! (no allocation, no capacity checks; a push or pop is a few stores).

use std::cell::Cell;
use std::ptr;

use super::{Task, TaskRef};

/// Ready green threads, oldest first. Each queued task holds one count,
/// taken over from the `TaskRef` pushed and handed back by `pop`.
pub(super) struct RunQueue {
    head: Cell<*const Task>,
    tail: Cell<*const Task>,
    len: Cell<usize>,
}

impl RunQueue {
    pub(super) fn new() -> RunQueue {
        RunQueue { head: Cell::new(ptr::null()), tail: Cell::new(ptr::null()), len: Cell::new(0) }
    }

    pub(super) fn len(&self) -> usize {
        self.len.get()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.head.get().is_null()
    }

    /// Asks the CPU to start loading what the next green threads to run
    /// will touch, while the current one runs: the stack top of the first
    /// in line (its task, read here, was warmed one step earlier) and the
    /// task of the second. With thousands of green threads each switch is
    /// otherwise a wait on cold memory.
    #[inline]
    pub(super) fn prefetch_ahead(&self) {
        let first = self.head.get();
        if first.is_null() {
            return;
        }
        // SAFETY: queued tasks are kept alive by the counts the queue holds;
        // the reads end here, before anything can pop them.
        let (hint, second) = unsafe { ((*first).stack_hint.get(), (*first).next.get()) };
        if hint != 0 {
            prefetch(hint - 128);
            prefetch(hint - 64);
            prefetch(hint);
        }
        if !second.is_null() {
            prefetch(second as usize);
            prefetch(second as usize + 64);
        }
    }

    /// Appends `t`. A task already queued stays where it is.
    #[inline]
    pub(super) fn push_back(&self, t: TaskRef) {
        if t.queued.replace(true) {
            return;
        }
        let p = TaskRef::into_raw(t);
        let tail = self.tail.get();
        if tail.is_null() {
            self.head.set(p);
        } else {
            // SAFETY: `tail` is a queued task, kept alive by the count the
            // queue holds on it.
            unsafe { (*tail).next.set(p) };
        }
        self.tail.set(p);
        self.len.set(self.len.get() + 1);
    }

    /// Takes the oldest task off the queue.
    #[inline]
    pub(super) fn pop_front(&self) -> Option<TaskRef> {
        let p = self.head.get();
        if p.is_null() {
            return None;
        }
        // SAFETY: `p` is a queued task; the queue's count on it is handed to
        // the `TaskRef` made here.
        let t = unsafe { TaskRef::from_raw(p) };
        let next = t.next.replace(ptr::null());
        self.head.set(next);
        if next.is_null() {
            self.tail.set(ptr::null());
        }
        t.queued.set(false);
        self.len.set(self.len.get() - 1);
        Some(t)
    }

    /// Moves every task of `other` to the back of this queue, in order.
    pub(super) fn append(&self, other: &RunQueue) {
        let head = other.head.replace(ptr::null());
        if head.is_null() {
            return;
        }
        let tail = other.tail.replace(ptr::null());
        let n = other.len.replace(0);
        let my_tail = self.tail.get();
        if my_tail.is_null() {
            self.head.set(head);
        } else {
            // SAFETY: `my_tail` is a queued task, kept alive by the count this
            // queue holds; the moved tasks keep the counts `other` held.
            unsafe { (*my_tail).next.set(head) };
        }
        self.tail.set(tail);
        self.len.set(self.len.get() + n);
    }
}

impl Drop for RunQueue {
    fn drop(&mut self) {
        while self.pop_front().is_some() {}
    }
}

/// A hint to bring the cache line at `addr` in; it never faults, whatever
/// the address.
#[inline]
fn prefetch(addr: usize) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing into the program and cannot fault.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(addr as *const i8)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = addr;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::Typed;

    fn task(id: u64) -> TaskRef {
        Typed::new(id, None, (), None).task().clone()
    }

    fn drain(q: &RunQueue) -> Vec<u64> {
        std::iter::from_fn(|| q.pop_front()).map(|t| t.id).collect()
    }

    #[test]
    fn tasks_come_out_in_the_order_they_went_in() {
        let q = RunQueue::new();
        let ts: Vec<TaskRef> = (1..=5).map(task).collect();
        for t in &ts {
            q.push_back(t.clone());
        }
        assert_eq!(q.len(), 5);
        assert!(!q.is_empty());
        assert_eq!(drain(&q), [1, 2, 3, 4, 5]);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        assert!(ts.iter().all(|t| !t.queued.get() && t.next.get().is_null()), "popped tasks are unlinked");
    }

    #[test]
    fn a_queued_task_is_not_queued_twice() {
        let q = RunQueue::new();
        let (a, b) = (task(1), task(2));
        q.push_back(a.clone());
        q.push_back(b.clone());
        q.push_back(a.clone());
        assert_eq!(q.len(), 2);
        assert_eq!(drain(&q), [1, 2]);
    }

    #[test]
    fn the_queue_holds_one_count_per_queued_task_and_gives_it_back() {
        let q = RunQueue::new();
        let a = task(1);
        assert_eq!(a.refs.get(), 1, "ours alone");
        q.push_back(a.clone());
        q.push_back(a.clone()); // not queued twice: its count is dropped
        assert_eq!(a.refs.get(), 2);
        drop(q.pop_front());
        assert_eq!(a.refs.get(), 1);
        q.push_back(a.clone());
        drop(q); // dropping the queue releases what it held
        assert_eq!(a.refs.get(), 1);
    }

    #[test]
    fn append_moves_every_task_in_order_and_leaves_the_other_empty() {
        let (q, r) = (RunQueue::new(), RunQueue::new());
        q.append(&r); // both empty
        assert!(q.is_empty());
        let ts: Vec<TaskRef> = (1..=6).map(task).collect();
        for t in &ts[..2] {
            q.push_back(t.clone());
        }
        for t in &ts[2..5] {
            r.push_back(t.clone());
        }
        q.append(&r);
        assert!(r.is_empty());
        assert_eq!(r.len(), 0);
        assert_eq!(q.len(), 5);
        r.append(&q); // into an empty queue
        r.push_back(ts[5].clone());
        assert_eq!(drain(&r), [1, 2, 3, 4, 5, 6]);
        assert!(ts.iter().all(|t| t.refs.get() == 1), "no count leaked or lost");
    }

    #[test]
    fn prefetching_reads_only_queued_tasks() {
        let q = RunQueue::new();
        q.prefetch_ahead(); // empty: nothing to read
        let a = task(1);
        q.push_back(a.clone());
        q.prefetch_ahead(); // one task, no stack hint yet
        a.stack_hint.set(0x1000);
        q.push_back(task(2));
        q.prefetch_ahead(); // a hint that is not mapped: a prefetch never faults
        assert_eq!(drain(&q), [1, 2]);
    }
}
