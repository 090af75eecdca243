//! Counting semaphores for green threads (eventlet's `semaphore` module):
//! [`Semaphore`], [`BoundedSemaphore`] and [`CappedSemaphore`].
//!
//! Waiters are served first come, first served: a released unit is handed
//! straight to the longest waiter, and a green thread that arrives while
//! others wait queues behind them even if it could take a unit at once
//! (eventlet lets it barge in). Every wait leaves its queue however it
//! ends: satisfied, timed out, or unwound by
//! [`JoinHandle::kill`](crate::JoinHandle::kill); a unit handed to a waiter
//! that is killed before it wakes goes on to the next waiter.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::time::deadline_after;
use crate::waitlist::{wait_for_grant, Status, WaitList};

/// The counting core shared by [`Semaphore`], [`BoundedSemaphore`] and
/// [`Lock`](crate::Lock).
pub(crate) struct Core {
    /// Units free now. Invariant: 0 while anyone waits.
    available: Cell<usize>,
    /// Units out: held by permits or guards, including units granted to a
    /// waiter that has not woken yet.
    held: Cell<usize>,
    waiters: WaitList<()>,
}

impl Core {
    pub(crate) fn new(units: usize) -> Core {
        Core { available: Cell::new(units), held: Cell::new(0), waiters: WaitList::new() }
    }

    pub(crate) fn available(&self) -> usize {
        self.available.get()
    }

    pub(crate) fn held(&self) -> usize {
        self.held.get()
    }

    pub(crate) fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// Takes a unit if one is free and nobody is waiting for one.
    pub(crate) fn try_acquire(&self) -> bool {
        let n = self.available.get();
        if n > 0 && self.waiters.is_empty() {
            self.available.set(n - 1);
            self.held.set(self.held.get() + 1);
            true
        } else {
            false
        }
    }

    /// Takes a unit, waiting in line until `deadline` (forever if `None`).
    /// Returns whether it got one.
    pub(crate) fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        wait_for_grant(&self.waiters, None, deadline, |status, _| {
            if status == Status::Granted {
                // Killed between the grant and its wake-up: pass it on.
                self.release();
            }
        })
    }

    /// Gives back a unit taken with `acquire`.
    pub(crate) fn release(&self) {
        self.held.set(self.held.get() - 1);
        self.add(1);
    }

    /// Adds `n` units: the longest waiters get one each, the rest become
    /// available.
    pub(crate) fn add(&self, n: usize) {
        for i in 0..n {
            match self.waiters.pop_front() {
                Some(w) => {
                    self.held.set(self.held.get() + 1);
                    w.grant();
                }
                None => {
                    let total = self.available.get().checked_add(n - i);
                    self.available.set(total.expect("eventlet: semaphore count overflow"));
                    return;
                }
            }
        }
    }
}

/// A counting semaphore: at most `n` [`Permit`]s are out at once.
///
/// Cloning a `Semaphore` gives another handle to the same semaphore. It
/// belongs to one OS thread (it is not `Send`), like its green threads.
///
/// Unlike eventlet's, acquiring hands out an RAII [`Permit`] that gives the
/// unit back when dropped, including when its green thread is killed or
/// panics; [`add_permits`](Self::add_permits) is eventlet's unpaired
/// `release`. Waiters are served strictly in arrival order.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use eventlet::Semaphore;
///
/// let sem = Semaphore::new(2);
/// let inside = Rc::new(Cell::new(0));
/// let handles: Vec<_> = (0..6)
///     .map(|_| {
///         let (sem, inside) = (sem.clone(), inside.clone());
///         eventlet::spawn(move || {
///             let _permit = sem.acquire();
///             inside.set(inside.get() + 1);
///             assert!(inside.get() <= 2);
///             eventlet::sleep(Duration::from_millis(1));
///             inside.set(inside.get() - 1);
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(sem.available(), 2);
/// ```
///
/// A semaphore handle stays on its OS thread:
///
/// ```compile_fail
/// let sem = eventlet::Semaphore::new(1);
/// std::thread::spawn(move || drop(sem.acquire()));
/// ```
#[derive(Clone)]
pub struct Semaphore {
    core: Rc<Core>,
}

impl Semaphore {
    /// A semaphore with `permits` units free.
    pub fn new(permits: usize) -> Semaphore {
        Semaphore { core: Rc::new(Core::new(permits)) }
    }

    /// Takes a permit, blocking the calling green thread (or the root)
    /// while none is free or others are waiting for one.
    pub fn acquire(&self) -> Permit {
        let acquired = self.core.acquire(None);
        debug_assert!(acquired);
        Permit::new(&self.core)
    }

    /// Takes a permit if one is free now and nobody is waiting for one.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.core.try_acquire().then(|| Permit::new(&self.core))
    }

    /// Takes a permit, waiting at most `timeout`; `None` if it timed out.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<Permit> {
        self.core.acquire(deadline_after(timeout)).then(|| Permit::new(&self.core))
    }

    /// Adds `n` permits (eventlet's `release`, `n` times): the longest
    /// waiters get one each, the rest become available.
    ///
    /// # Panics
    ///
    /// Panics if the count would overflow `usize`.
    pub fn add_permits(&self, n: usize) {
        self.core.add(n);
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.core.available()
    }

    /// Green threads (or the root) waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.core.waiting()
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Semaphore").field("available", &self.available()).field("waiting", &self.waiting()).finish()
    }
}

/// One unit of a [`Semaphore`] or [`BoundedSemaphore`], given back when
/// dropped (to the longest waiter, if any).
#[must_use = "the permit is given back at once if it is not kept"]
pub struct Permit {
    core: Option<Rc<Core>>,
}

impl Permit {
    fn new(core: &Rc<Core>) -> Permit {
        Permit { core: Some(core.clone()) }
    }

    /// Keeps the unit for good instead of giving it back: the semaphore
    /// has one permit fewer (eventlet's `acquire` without `release`). A
    /// [`BoundedSemaphore`] can get it back with
    /// [`release`](BoundedSemaphore::release).
    pub fn forget(mut self) {
        if let Some(core) = self.core.take() {
            core.held.set(core.held.get() - 1);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            core.release();
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

/// A semaphore that refuses to be released past its initial count
/// (eventlet's `BoundedSemaphore`), catching unbalanced releases.
///
/// Permits from [`acquire`](Self::acquire) give their unit back when
/// dropped, which can never overshoot. An unpaired
/// [`release`](Self::release) (after [`Permit::forget`], the eventlet
/// style) fails when the units free plus the permits out already make the
/// initial count; eventlet raises `ValueError` there.
///
/// # Examples
///
/// ```
/// use eventlet::BoundedSemaphore;
///
/// let sem = BoundedSemaphore::new(1);
/// assert!(sem.release().is_err(), "nothing was taken");
///
/// sem.acquire().forget(); // eventlet style: acquire now, release later
/// assert_eq!(sem.available(), 0);
/// sem.release()?;
/// assert!(sem.try_acquire().is_some());
/// # Ok::<(), eventlet::semaphore::ReleaseError>(())
/// ```
#[derive(Clone)]
pub struct BoundedSemaphore {
    core: Rc<Core>,
    bound: usize,
}

impl BoundedSemaphore {
    /// A semaphore with `permits` units free, which is also its bound.
    pub fn new(permits: usize) -> BoundedSemaphore {
        BoundedSemaphore { core: Rc::new(Core::new(permits)), bound: permits }
    }

    /// Takes a permit, blocking while none is free or others are waiting
    /// for one.
    pub fn acquire(&self) -> Permit {
        let acquired = self.core.acquire(None);
        debug_assert!(acquired);
        Permit::new(&self.core)
    }

    /// Takes a permit if one is free now and nobody is waiting for one.
    pub fn try_acquire(&self) -> Option<Permit> {
        self.core.try_acquire().then(|| Permit::new(&self.core))
    }

    /// Takes a permit, waiting at most `timeout`; `None` if it timed out.
    pub fn acquire_timeout(&self, timeout: Duration) -> Option<Permit> {
        self.core.acquire(deadline_after(timeout)).then(|| Permit::new(&self.core))
    }

    /// Gives back a unit kept with [`Permit::forget`]: to the longest
    /// waiter, or to the free count.
    ///
    /// # Errors
    ///
    /// [`ReleaseError`] if that would make more units than the initial
    /// count (free units plus permits out already make it); nothing
    /// changes then.
    pub fn release(&self) -> Result<(), ReleaseError> {
        if self.core.available() + self.core.held() >= self.bound {
            return Err(ReleaseError { _private: () });
        }
        self.core.add(1);
        Ok(())
    }

    /// Permits free now.
    pub fn available(&self) -> usize {
        self.core.available()
    }

    /// The initial count, which [`release`](Self::release) never exceeds.
    pub fn bound(&self) -> usize {
        self.bound
    }

    /// Green threads (or the root) waiting for a permit.
    pub fn waiting(&self) -> usize {
        self.core.waiting()
    }
}

impl fmt::Debug for BoundedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoundedSemaphore")
            .field("available", &self.available())
            .field("bound", &self.bound)
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// The error of [`BoundedSemaphore::release`]: the semaphore would go past
/// its initial count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseError {
    _private: (),
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("semaphore released too many times")
    }
}

impl std::error::Error for ReleaseError {}

/// A semaphore whose count stays between 0 and a limit, blocking on both
/// sides (eventlet's `CappedSemaphore`): [`acquire`](Self::acquire) waits
/// while the count is 0, [`release`](Self::release) waits while it is at
/// the limit.
///
/// Acquiring and releasing are not paired here (a producer releases, a
/// consumer acquires), so there is no [`Permit`]: a permit's drop would
/// have to block. Both sides are served first come, first served, and a
/// unit goes straight from a releaser to a waiting acquirer. With a limit
/// of 0 every release meets an acquire, like a rendezvous (eventlet's
/// would block forever).
///
/// # Examples
///
/// ```
/// use eventlet::CappedSemaphore;
///
/// let sem = CappedSemaphore::new(0, 2);
/// let s = sem.clone();
/// let producer = eventlet::spawn(move || {
///     for _ in 0..5 {
///         s.release(); // blocks while 2 units wait to be taken
///         assert!(s.available() <= 2);
///     }
/// });
/// for _ in 0..5 {
///     sem.acquire();
/// }
/// producer.join().unwrap();
/// assert_eq!(sem.available(), 0);
/// ```
#[derive(Clone)]
pub struct CappedSemaphore {
    inner: Rc<Capped>,
}

struct Capped {
    /// Invariants: 0 while acquirers wait, `limit` while releasers wait.
    count: Cell<usize>,
    limit: usize,
    acquirers: WaitList<()>,
    releasers: WaitList<()>,
}

impl Capped {
    fn try_acquire(&self) -> bool {
        if !self.acquirers.is_empty() {
            return false;
        }
        let n = self.count.get();
        if n > 0 {
            // At the limit a releaser may be waiting: it fills the room.
            match self.releasers.pop_front() {
                Some(r) => r.grant(),
                None => self.count.set(n - 1),
            }
            true
        } else if let Some(r) = self.releasers.pop_front() {
            // Limit 0: take the unit straight from the releaser.
            r.grant();
            true
        } else {
            false
        }
    }

    fn acquire(&self, deadline: Option<Instant>) -> bool {
        if self.try_acquire() {
            return true;
        }
        wait_for_grant(&self.acquirers, None, deadline, |status, _| {
            if status == Status::Granted {
                self.unacquire();
            }
        })
    }

    /// Puts back a unit granted to an acquirer that was killed before it
    /// woke. If releasers have filled the semaphore to its limit meanwhile,
    /// the unit is dropped: the limit holds.
    fn unacquire(&self) {
        if let Some(a) = self.acquirers.pop_front() {
            a.grant();
        } else if self.count.get() < self.limit {
            self.count.set(self.count.get() + 1);
        }
    }

    fn try_release(&self) -> bool {
        if !self.releasers.is_empty() {
            return false;
        }
        if let Some(a) = self.acquirers.pop_front() {
            a.grant();
            true
        } else if self.count.get() < self.limit {
            self.count.set(self.count.get() + 1);
            true
        } else {
            false
        }
    }

    fn release(&self, deadline: Option<Instant>) -> bool {
        if self.try_release() {
            return true;
        }
        // A releaser granted and then killed has still released: the unit
        // is counted (or taken) already.
        wait_for_grant(&self.releasers, None, deadline, |_, _| {})
    }
}

impl CappedSemaphore {
    /// A semaphore with count `count` that never goes above `limit`.
    ///
    /// # Panics
    ///
    /// Panics if `count > limit`.
    pub fn new(count: usize, limit: usize) -> CappedSemaphore {
        assert!(count <= limit, "eventlet: CappedSemaphore::new({count}, {limit}): count is above the limit");
        CappedSemaphore {
            inner: Rc::new(Capped {
                count: Cell::new(count),
                limit,
                acquirers: WaitList::new(),
                releasers: WaitList::new(),
            }),
        }
    }

    /// Takes a unit, blocking while the count is 0 or other acquirers wait.
    pub fn acquire(&self) {
        let acquired = self.inner.acquire(None);
        debug_assert!(acquired);
    }

    /// Takes a unit if one is free now and no other acquirer waits; says
    /// whether it did.
    pub fn try_acquire(&self) -> bool {
        self.inner.try_acquire()
    }

    /// Takes a unit, waiting at most `timeout`; says whether it did.
    pub fn acquire_timeout(&self, timeout: Duration) -> bool {
        self.inner.acquire(deadline_after(timeout))
    }

    /// Adds a unit, blocking while the count is at the limit or other
    /// releasers wait.
    pub fn release(&self) {
        let released = self.inner.release(None);
        debug_assert!(released);
    }

    /// Adds a unit if there is room now and no other releaser waits; says
    /// whether it did.
    pub fn try_release(&self) -> bool {
        self.inner.try_release()
    }

    /// Adds a unit, waiting at most `timeout` for room; says whether it
    /// did.
    pub fn release_timeout(&self, timeout: Duration) -> bool {
        self.inner.release(deadline_after(timeout))
    }

    /// The count now.
    pub fn available(&self) -> usize {
        self.inner.count.get()
    }

    /// The most the count can be.
    pub fn limit(&self) -> usize {
        self.inner.limit
    }

    /// Green threads (or the root) blocked in [`acquire`](Self::acquire).
    pub fn acquiring(&self) -> usize {
        self.inner.acquirers.len()
    }

    /// Green threads (or the root) blocked in [`release`](Self::release).
    pub fn releasing(&self) -> usize {
        self.inner.releasers.len()
    }
}

impl fmt::Debug for CappedSemaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CappedSemaphore")
            .field("available", &self.available())
            .field("limit", &self.limit())
            .field("acquiring", &self.acquiring())
            .field("releasing", &self.releasing())
            .finish()
    }
}
