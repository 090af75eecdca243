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
//! The list is intrusive: each waiter lives in its [`Wait`] guard, pinned
//! on the stack of the green thread that waits, and the list links those
//! guards. Joining or leaving allocates nothing and takes a few stores, and
//! a waiter that leaves early (a timeout, a kill) unlinks itself in O(1).
//! The guard takes the waiter off its list however the wait ends: granted,
//! timed out, or unwound by a kill. A grant that arrives and is never taken
//! up (the waiter is killed after the grant and before it runs again) goes
//! to the primitive's `on_leave` hook, which passes it on.
//!
//! Why the links stay valid: a waiter is linked only between
//! [`Wait::enqueue`] and the end of its guard (it is pinned, so it does not
//! move meanwhile, and its `Drop` unlinks it), or until a granter pops it.
//! A green thread's stack is reused only after its body has returned, so
//! after every guard on it has been dropped; stacks of green threads leaked
//! at thread exit are never unmapped. A popped waiter stays valid until its
//! green thread runs again, which cannot happen before the granter switches
//! out: [`Popped`] is granted or closed at once, never held across a wait.

use std::cell::Cell;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::ptr::{self, NonNull};
use std::time::Instant;

use crate::hub::{self, Task, Wakeup};

/// Where a waiter is in its wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Status {
    /// In the list, waiting.
    Queued,
    /// Taken off the list and handed the resource, not taken up yet.
    Granted,
    /// Taken off the list because the primitive was closed.
    Closed,
    /// The wait is over and the grant (if any) taken up, or not begun.
    Done,
}

/// One parked green thread (or the root) and what it waits with: a slot
/// for a value travelling with the wait (an item to put, an item handed
/// to a getter, the kind of lock wanted). It lives inside a [`Wait`].
pub(crate) struct Waiter<V> {
    prev: Cell<*const Waiter<V>>,
    next: Cell<*const Waiter<V>>,
    /// The waiting task. It is alive while the waiter is linked or popped
    /// and not yet woken: the task is inside its wait.
    task: Cell<*const Task>,
    status: Cell<Status>,
    value: Cell<Option<V>>,
}

impl<V> Waiter<V> {
    /// Takes the value out of the waiter's slot.
    pub(crate) fn take_value(&self) -> Option<V> {
        self.value.take()
    }

    /// Marks the waiter `status` and wakes its green thread, unless this
    /// OS thread's hub is already gone: guards may be dropped while the
    /// thread is torn down, and must not panic there.
    #[inline]
    fn wake(&self, status: Status) {
        self.status.set(status);
        let task = self.task.get();
        // SAFETY: the task is inside this wait (see the field), so alive.
        hub::peek_hub(|h| unsafe { h.unpark_ptr(task) });
    }
}

/// A waiter taken off the front of its list, to be granted or closed out
/// at once (see the module docs for why it must not be kept).
#[must_use = "a popped waiter stays parked until granted or closed"]
pub(crate) struct Popped<'a, V> {
    waiter: NonNull<Waiter<V>>,
    _list: std::marker::PhantomData<&'a WaitList<V>>,
}

impl<V> Popped<'_, V> {
    fn get(&self) -> &Waiter<V> {
        // SAFETY: a popped waiter stays valid until its green thread runs
        // again, which needs the holder of this `Popped` to switch out.
        unsafe { self.waiter.as_ref() }
    }

    /// Takes the value out of the waiter's slot.
    pub(crate) fn take_value(&self) -> Option<V> {
        self.get().take_value()
    }

    /// Marks the waiter granted and wakes it.
    #[inline]
    pub(crate) fn grant(self) {
        self.get().wake(Status::Granted);
    }

    /// Puts `value` in the waiter's slot, then grants it.
    #[inline]
    pub(crate) fn grant_with(self, value: V) {
        self.get().value.set(Some(value));
        self.grant();
    }

    /// Marks the waiter closed out and wakes it.
    pub(crate) fn close(self) {
        self.get().wake(Status::Closed);
    }
}

/// Waiters, oldest first, linked through their [`Waiter`]s.
pub(crate) struct WaitList<V> {
    head: Cell<*const Waiter<V>>,
    tail: Cell<*const Waiter<V>>,
    len: Cell<usize>,
}

impl<V> WaitList<V> {
    pub(crate) fn new() -> WaitList<V> {
        WaitList { head: Cell::new(ptr::null()), tail: Cell::new(ptr::null()), len: Cell::new(0) }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.get()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.head.get().is_null()
    }

    /// Takes the longest waiter off the list (to grant or close it).
    #[inline]
    pub(crate) fn pop_front(&self) -> Option<Popped<'_, V>> {
        let w = NonNull::new(self.head.get().cast_mut())?;
        // SAFETY: linked waiters are valid (module docs).
        let next = unsafe { w.as_ref() }.next.replace(ptr::null());
        self.head.set(next);
        match NonNull::new(next.cast_mut()) {
            // SAFETY: as above.
            Some(n) => unsafe { n.as_ref() }.prev.set(ptr::null()),
            None => self.tail.set(ptr::null()),
        }
        self.len.set(self.len.get() - 1);
        Some(Popped { waiter: w, _list: std::marker::PhantomData })
    }

    /// Grants every waiter, oldest first (so they also run in that order).
    pub(crate) fn grant_all(&self) {
        while let Some(w) = self.pop_front() {
            w.grant();
        }
    }

    /// Closes out every waiter, oldest first.
    pub(crate) fn close_all(&self) {
        while let Some(w) = self.pop_front() {
            w.close();
        }
    }

    #[inline]
    fn push_back(&self, w: &Waiter<V>) {
        let p: *const Waiter<V> = w;
        let tail = self.tail.get();
        w.prev.set(tail);
        w.next.set(ptr::null());
        match NonNull::new(tail.cast_mut()) {
            // SAFETY: linked waiters are valid (module docs).
            Some(t) => unsafe { t.as_ref() }.next.set(p),
            None => self.head.set(p),
        }
        self.tail.set(p);
        self.len.set(self.len.get() + 1);
    }

    /// Unlinks `w`, which is in this list.
    fn remove(&self, w: &Waiter<V>) {
        let (prev, next) = (w.prev.replace(ptr::null()), w.next.replace(ptr::null()));
        debug_assert!(!prev.is_null() || ptr::eq(self.head.get(), w), "removing a waiter that is not linked");
        match NonNull::new(prev.cast_mut()) {
            // SAFETY: linked waiters are valid (module docs).
            Some(p) => unsafe { p.as_ref() }.next.set(next),
            None => self.head.set(next),
        }
        match NonNull::new(next.cast_mut()) {
            // SAFETY: as above.
            Some(n) => unsafe { n.as_ref() }.prev.set(prev),
            None => self.tail.set(prev),
        }
        self.len.set(self.len.get() - 1);
    }
}

impl<V: Copy> WaitList<V> {
    /// The value in the longest waiter's slot.
    pub(crate) fn front_value(&self) -> Option<V> {
        // SAFETY: linked waiters are valid (module docs).
        NonNull::new(self.head.get().cast_mut()).and_then(|w| unsafe { w.as_ref() }.value.get())
    }
}

/// The whole of an acquire-style wait (a permit, a lock): joins the back of
/// `list` with `value` in the waiter's slot and parks until granted, closed
/// or `deadline` (an expired one does not join at all). `on_leave` is the
/// [`Wait`]'s: it passes on a grant that is never taken up, or reacts to a
/// departure. Returns whether the wait was granted.
#[inline(always)]
pub(crate) fn wait_for_grant<V>(
    list: &WaitList<V>,
    value: Option<V>,
    deadline: Option<Instant>,
    on_leave: impl FnMut(Status, &Waiter<V>),
) -> bool {
    if crate::time::expired(deadline) {
        return false;
    }
    let wait = std::pin::pin!(Wait::new(list, value, on_leave));
    wait.enqueue().park(deadline) == Status::Granted
}

/// One wait in a [`WaitList`], from joining it to the end of the wait.
///
/// Made with [`new`](Self::new), pinned on the waiting stack (`pin!`), then
/// linked with [`enqueue`](Self::enqueue):
///
/// ```ignore
/// let wait = pin!(Wait::new(&list, None, |_, _| {}));
/// let wait = wait.enqueue();
/// wait.park(None);
/// ```
///
/// Dropping it leaves the list: a waiter still queued is removed and
/// `on_leave(Status::Queued, ..)` runs (for primitives where a departure
/// can let those behind go, such as a writer leaving an `RwLock`'s queue);
/// a waiter granted but never woken to take it up runs
/// `on_leave(Status::Granted, ..)`, which passes the grant on.
pub(crate) struct Wait<'a, V, F: FnMut(Status, &Waiter<V>)> {
    list: &'a WaitList<V>,
    waiter: Waiter<V>,
    on_leave: F,
    /// The list links the waiter by address.
    _pinned: PhantomPinned,
}

impl<'a, V, F: FnMut(Status, &Waiter<V>)> Wait<'a, V, F> {
    /// A wait in `list` with `value` in the waiter's slot, not linked yet.
    pub(crate) fn new(list: &'a WaitList<V>, value: Option<V>, on_leave: F) -> Self {
        let waiter = Waiter {
            prev: Cell::new(ptr::null()),
            next: Cell::new(ptr::null()),
            task: Cell::new(ptr::null()),
            status: Cell::new(Status::Done),
            value: Cell::new(value),
        };
        Wait { list, waiter, on_leave, _pinned: PhantomPinned }
    }

    /// Joins the back of the list as the running green thread (or root).
    #[inline]
    pub(crate) fn enqueue(self: Pin<&mut Self>) -> Pin<&Self> {
        let this = self.into_ref();
        let w = &this.get_ref().waiter;
        debug_assert_eq!(w.status.get(), Status::Done, "a wait is enqueued once");
        w.task.set(hub::with_hub(|h| h.current_ptr()));
        w.status.set(Status::Queued);
        this.list.push_back(w);
        this
    }

    /// Parks until the waiter is granted or closed, or until `deadline`.
    ///
    /// Returns [`Status::Granted`] (the grant is then taken up: dropping
    /// the guard no longer passes it on), [`Status::Closed`], or
    /// [`Status::Queued`] if the deadline passed first. A grant (or close)
    /// that lands together with the deadline, or with the expiry of a
    /// [`Timeout`](crate::Timeout) of the waiter, wins: the wait reports
    /// it, and the timeout fires at the next blocking call. With no
    /// deadline, an expired `Timeout` (or a wait refused while unwinding)
    /// unwinds with its [`Elapsed`](crate::timeout::Elapsed).
    #[inline(always)]
    pub(crate) fn park(self: Pin<&Self>, deadline: Option<Instant>) -> Status {
        let w = &self.get_ref().waiter;
        loop {
            match w.status.get() {
                Status::Queued => {}
                Status::Granted => {
                    w.status.set(Status::Done);
                    return Status::Granted;
                }
                other => return other,
            }
            match hub::with_hub(|h| h.park_result(deadline)) {
                Ok(Wakeup::Unparked) => {}
                other => {
                    if let Some(status) = Self::cut_short(w, other, deadline) {
                        return status;
                    }
                }
            }
        }
    }

    /// A wait woken by its deadline, an expired `Timeout` or a refusal:
    /// `None` if the waiter was granted or closed meanwhile (that wins: the
    /// caller looks again), `Some(Queued)` for a timed-out wait; with no
    /// deadline, it unwinds.
    #[cold]
    #[inline(never)]
    fn cut_short(
        w: &Waiter<V>,
        woke: Result<Wakeup, crate::timeout::Elapsed>,
        deadline: Option<Instant>,
    ) -> Option<Status> {
        if w.status.get() != Status::Queued {
            return None;
        }
        match woke {
            Err(e) if deadline.is_none() => std::panic::resume_unwind(Box::new(e)),
            _ => Some(Status::Queued),
        }
    }

    /// Takes up the grant if the waiter was granted (for waits that also
    /// wake for other reasons and so park on their own).
    pub(crate) fn take_grant(self: Pin<&Self>) -> bool {
        let w = &self.get_ref().waiter;
        let granted = w.status.get() == Status::Granted;
        if granted {
            w.status.set(Status::Done);
        }
        granted
    }

    /// The waiter, for its value slot.
    pub(crate) fn waiter(&self) -> &Waiter<V> {
        &self.waiter
    }
}

impl<V, F: FnMut(Status, &Waiter<V>)> Drop for Wait<'_, V, F> {
    #[inline]
    fn drop(&mut self) {
        // A wait that ended normally has nothing left to do.
        if self.waiter.status.get() != Status::Done {
            self.leave();
        }
    }
}

impl<V, F: FnMut(Status, &Waiter<V>)> Wait<'_, V, F> {
    /// The end of a wait cut short (timeout, kill, or never taken up).
    #[cold]
    fn leave(&mut self) {
        match self.waiter.status.replace(Status::Done) {
            Status::Queued => {
                self.list.remove(&self.waiter);
                (self.on_leave)(Status::Queued, &self.waiter);
            }
            Status::Granted => (self.on_leave)(Status::Granted, &self.waiter),
            Status::Closed | Status::Done => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::pin::pin;

    /// Pops every waiter, oldest first, and reads the value each came with.
    fn values(list: &WaitList<u32>) -> Vec<u32> {
        let mut out = Vec::new();
        while let Some(w) = list.pop_front() {
            out.push(w.take_value().unwrap());
            w.close();
        }
        out
    }

    #[test]
    fn waiters_leave_in_the_order_they_came_and_a_leaving_one_unlinks_itself() {
        let list = WaitList::new();
        let left = RefCell::new(Vec::new());
        let on_leave = |s: Status, w: &Waiter<u32>| left.borrow_mut().push((s, w.value.take()));
        let a = pin!(Wait::new(&list, Some(1), on_leave));
        let a = a.enqueue();
        {
            let b = pin!(Wait::new(&list, Some(2), on_leave));
            let _b = b.enqueue();
            let c = pin!(Wait::new(&list, Some(3), on_leave));
            let _c = c.enqueue();
            assert_eq!(list.len(), 3);
            assert_eq!(list.front_value(), Some(1));
            // `c` then `b` leave while queued (they are dropped here, the
            // middle one last): each unlinks itself and says so.
        }
        assert_eq!(*left.borrow(), [(Status::Queued, Some(3)), (Status::Queued, Some(2))]);
        assert_eq!(list.len(), 1);
        let d = pin!(Wait::new(&list, Some(4), on_leave));
        let _d = d.enqueue();
        assert_eq!(values(&list), [1, 4]);
        assert!(list.is_empty());
        // Closed out, then dropped: nothing more to do.
        assert_eq!(a.park(None), Status::Closed);
    }

    #[test]
    fn a_grant_not_taken_up_is_passed_on_when_the_wait_ends() {
        let list = WaitList::<u32>::new();
        let passed = Cell::new(None);
        {
            let w = pin!(Wait::new(&list, None, |s, w: &Waiter<u32>| passed.set(Some((s, w.take_value())))));
            let _w = w.enqueue();
            list.pop_front().unwrap().grant_with(9);
            assert!(list.is_empty());
            // Dropped without parking: the grant goes to `on_leave`.
        }
        assert_eq!(passed.get(), Some((Status::Granted, Some(9))));
    }

    #[test]
    fn a_granted_wait_returns_at_once_and_owes_nothing() {
        let list = WaitList::<u32>::new();
        let passed = Cell::new(false);
        {
            let w = pin!(Wait::new(&list, None, |_, _| passed.set(true)));
            let w = w.enqueue();
            list.pop_front().unwrap().grant_with(5);
            assert_eq!(w.park(None), Status::Granted);
            assert_eq!(w.waiter().take_value(), Some(5));
            assert!(!w.take_grant(), "taken up once");
        } // the wait ends here
        assert!(!passed.get(), "a grant taken up is not passed on");
    }

    #[test]
    fn a_wait_with_a_passed_deadline_times_out_and_leaves() {
        let list = WaitList::<u32>::new();
        let left = Cell::new(None);
        {
            let w = pin!(Wait::new(&list, None, |s, _: &Waiter<u32>| left.set(Some(s))));
            let w = w.enqueue();
            assert_eq!(w.park(Some(Instant::now())), Status::Queued);
        }
        assert_eq!(left.get(), Some(Status::Queued));
        assert!(list.is_empty());
    }

    #[test]
    fn grant_all_and_close_all_empty_the_list_oldest_first() {
        let list = WaitList::<u32>::new();
        let a = pin!(Wait::new(&list, Some(1), |_, _: &Waiter<u32>| {}));
        let a = a.enqueue();
        let b = pin!(Wait::new(&list, Some(2), |_, _: &Waiter<u32>| {}));
        let b = b.enqueue();
        list.grant_all();
        assert!(list.is_empty());
        assert_eq!((a.park(None), b.park(None)), (Status::Granted, Status::Granted));
        let c = pin!(Wait::new(&list, None, |_, _: &Waiter<u32>| {}));
        let c = c.enqueue();
        list.close_all();
        assert_eq!(c.park(None), Status::Closed);
    }
}
