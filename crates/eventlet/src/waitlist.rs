//! FIFO lists of parked green threads: the waiting half of every
//! coordination primitive ([`Event`](crate::Event), the semaphores, the
//! locks, the queues).
//!
//! A waiter joins the back of a [`WaitList`] and parks until whoever frees
//! the resource *grants* it: the resource (a permit, the lock, an item) is
//! handed straight to the longest waiter before it wakes, so nobody who
//! arrives in between can barge in. A list may also *close* its waiters
//! (a closed queue).
//!
//! The [`Wait`] guard takes the waiter off its list however the wait ends:
//! granted, timed out, or unwound by a kill. A grant that arrives and is
//! never taken up (the waiter is killed after the grant and before it runs
//! again) goes to the primitive's `on_leave` hook, which passes it on.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::greenthread::{current, park, park_deadline, GreenThread};
use crate::hub::{self, Wakeup};

/// Where a waiter is in its wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// In the list, waiting.
    Queued,
    /// Taken off the list and handed the resource, not taken up yet.
    Granted,
    /// Taken off the list because the primitive was closed.
    Closed,
    /// The wait is over and the grant (if any) taken up.
    Done,
}

/// One parked green thread (or the root) and what it waits with: a slot
/// for a value travelling with the wait (an item to put, an item handed
/// to a getter, the kind of lock wanted).
pub(crate) struct Waiter<V> {
    thread: GreenThread,
    status: Cell<Status>,
    value: Cell<Option<V>>,
}

impl<V> Waiter<V> {
    /// Marks the waiter granted and wakes it.
    pub(crate) fn grant(&self) {
        self.status.set(Status::Granted);
        wake(&self.thread);
    }

    /// Puts `value` in the waiter's slot, then grants it.
    pub(crate) fn grant_with(&self, value: V) {
        self.value.set(Some(value));
        self.grant();
    }

    /// Marks the waiter closed out and wakes it.
    pub(crate) fn close(&self) {
        self.status.set(Status::Closed);
        wake(&self.thread);
    }

    /// Takes the value out of the waiter's slot.
    pub(crate) fn take_value(&self) -> Option<V> {
        self.value.take()
    }
}

impl<V: Copy> Waiter<V> {
    /// The value in the waiter's slot, left in place.
    pub(crate) fn peek_value(&self) -> Option<V> {
        self.value.get()
    }
}

/// Wakes `t`, unless this OS thread's hub is already gone: guards may be
/// dropped while the thread is torn down, and must not panic there.
fn wake(t: &GreenThread) {
    if hub::try_with_hub(|_| ()).is_some() {
        t.unpark();
    }
}

/// Waiters, oldest first.
pub(crate) struct WaitList<V> {
    queue: RefCell<VecDeque<Rc<Waiter<V>>>>,
    /// Waiters of finished waits, kept for the next ones (a wait then
    /// costs no allocation).
    spare: RefCell<Vec<Rc<Waiter<V>>>>,
}

/// Spare waiters a list keeps.
const SPARES: usize = 4;

impl<V> WaitList<V> {
    pub(crate) fn new() -> WaitList<V> {
        WaitList { queue: RefCell::new(VecDeque::new()), spare: RefCell::new(Vec::new()) }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.borrow().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queue.borrow().is_empty()
    }

    /// Takes the longest waiter off the list (to grant or close it).
    pub(crate) fn pop_front(&self) -> Option<Rc<Waiter<V>>> {
        self.queue.borrow_mut().pop_front()
    }

    /// Grants every waiter, oldest first (so they also run in that order).
    pub(crate) fn grant_all(&self) {
        let all = std::mem::take(&mut *self.queue.borrow_mut());
        for w in all {
            w.grant();
        }
    }

    /// Closes out every waiter, oldest first.
    pub(crate) fn close_all(&self) {
        let all = std::mem::take(&mut *self.queue.borrow_mut());
        for w in all {
            w.close();
        }
    }

    /// Keeps a finished wait's waiter for reuse if nobody else holds it.
    fn recycle(&self, waiter: &Rc<Waiter<V>>) {
        if Rc::strong_count(waiter) == 1 && Rc::weak_count(waiter) == 0 {
            let Ok(mut spare) = self.spare.try_borrow_mut() else { return };
            if spare.len() < SPARES {
                // A value left in the slot goes now, not at reuse.
                drop(waiter.value.take());
                spare.push(waiter.clone());
            }
        }
    }

    fn remove(&self, waiter: &Rc<Waiter<V>>) {
        let mut q = self.queue.borrow_mut();
        if let Some(i) = q.iter().position(|w| Rc::ptr_eq(w, waiter)) {
            q.remove(i);
        }
    }
}

impl<V: Copy> WaitList<V> {
    /// The value in the longest waiter's slot.
    pub(crate) fn front_value(&self) -> Option<V> {
        self.queue.borrow().front().and_then(|w| w.peek_value())
    }
}

/// A deadline `timeout` from now; `None` (no deadline) if that is too far
/// off to represent.
pub(crate) fn deadline_after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// Whether `deadline` has passed.
pub(crate) fn expired(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() >= d)
}

/// One wait in a [`WaitList`], from joining it to the end of the wait.
///
/// Dropping it leaves the list: a waiter still queued is removed and
/// `on_leave(Status::Queued, ..)` runs (for primitives where a departure
/// can let those behind go, such as a writer leaving an `RwLock`'s queue);
/// a waiter granted but never woken to take it up runs
/// `on_leave(Status::Granted, ..)`, which passes the grant on.
pub(crate) struct Wait<'a, V, F: FnMut(Status, &Waiter<V>)> {
    list: &'a WaitList<V>,
    waiter: Rc<Waiter<V>>,
    on_leave: F,
}

impl<'a, V, F: FnMut(Status, &Waiter<V>)> Wait<'a, V, F> {
    /// Joins the back of `list` as the running green thread (or root), with
    /// `value` in the waiter's slot.
    pub(crate) fn enqueue(list: &'a WaitList<V>, value: Option<V>, on_leave: F) -> Self {
        let spare = list.spare.borrow_mut().pop();
        let waiter = match spare {
            Some(mut w) => {
                // Only `recycle` puts waiters there, with no other reference.
                let m = Rc::get_mut(&mut w).expect("a spare waiter is not shared");
                m.thread = current();
                m.status.set(Status::Queued);
                m.value.set(value);
                w
            }
            None => Rc::new(Waiter { thread: current(), status: Cell::new(Status::Queued), value: Cell::new(value) }),
        };
        list.queue.borrow_mut().push_back(waiter.clone());
        Wait { list, waiter, on_leave }
    }

    /// Parks until the waiter is granted or closed, or until `deadline`.
    ///
    /// Returns [`Status::Granted`] (the grant is then taken up: dropping
    /// the guard no longer passes it on), [`Status::Closed`], or
    /// [`Status::Queued`] if the deadline passed first. A grant that lands
    /// together with the deadline wins.
    pub(crate) fn park(&self, deadline: Option<Instant>) -> Status {
        loop {
            match self.waiter.status.get() {
                Status::Queued => {}
                Status::Granted => {
                    self.waiter.status.set(Status::Done);
                    return Status::Granted;
                }
                other => return other,
            }
            match deadline {
                None => park(),
                Some(d) => {
                    if park_deadline(d) == Wakeup::TimedOut && self.waiter.status.get() == Status::Queued {
                        return Status::Queued;
                    }
                }
            }
        }
    }

    /// The waiter, for its value slot.
    pub(crate) fn waiter(&self) -> &Waiter<V> {
        &self.waiter
    }
}

impl<V, F: FnMut(Status, &Waiter<V>)> Drop for Wait<'_, V, F> {
    fn drop(&mut self) {
        match self.waiter.status.replace(Status::Done) {
            Status::Queued => {
                self.list.remove(&self.waiter);
                (self.on_leave)(Status::Queued, &self.waiter);
            }
            Status::Granted => (self.on_leave)(Status::Granted, &self.waiter),
            Status::Closed | Status::Done => {}
        }
        self.list.recycle(&self.waiter);
    }
}
