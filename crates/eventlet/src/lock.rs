//! Locks for green threads: [`Lock`] (a mutex owning its data),
//! [`Condvar`], and [`RwLock`].
//!
//! They block only the calling green thread (or the root, which runs the
//! hub meanwhile), never the OS thread, and serve waiters first come,
//! first served: the lock is handed straight to the longest waiter, and a
//! green thread that arrives while others wait queues behind them.
//!
//! There is no poisoning. A guard is dropped however its green thread
//! leaves the locked section (returning, panicking, or unwinding from
//! [`JoinHandle::kill`](crate::JoinHandle::kill)), so the lock always goes
//! to the next waiter; the data may then be half-updated if the section
//! was cut short, which code that kills green threads holding a lock must
//! be ready for.
//!
//! Locking a lock that the same green thread already holds blocks forever
//! (from the root, the hub reports a deadlock if nothing else can run).

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::time::{Duration, Instant};

use crate::semaphore::Core;
use crate::time::{deadline_after, expired};
use crate::waitlist::{wait_for_grant, Status, Wait, WaitList};

/// A mutual-exclusion lock for green threads that owns the data it
/// protects, like [`std::sync::Mutex`] without poisoning.
///
/// Share it between green threads with an `Rc`.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use std::time::Duration;
/// use eventlet::Lock;
///
/// let log = Rc::new(Lock::new(Vec::new()));
/// let handles: Vec<_> = (0..3)
///     .map(|i| {
///         let log = log.clone();
///         eventlet::spawn(move || {
///             let mut entries = log.lock();
///             entries.push(format!("{i} in"));
///             eventlet::sleep(Duration::from_millis(1)); // others wait here
///             entries.push(format!("{i} out"));
///         })
///     })
///     .collect();
/// for h in handles {
///     h.join().unwrap();
/// }
/// assert_eq!(*log.lock(), ["0 in", "0 out", "1 in", "1 out", "2 in", "2 out"]);
/// ```
///
/// A lock stays on its OS thread:
///
/// ```compile_fail
/// let lock = std::sync::Arc::new(eventlet::Lock::new(0));
/// std::thread::spawn(move || *lock.lock() += 1);
/// ```
pub struct Lock<T: ?Sized> {
    core: Core,
    data: RefCell<T>,
}

impl<T> Lock<T> {
    /// A new unlocked lock holding `value`.
    pub fn new(value: T) -> Lock<T> {
        Lock { core: Core::new(1), data: RefCell::new(value) }
    }

    /// Consumes the lock and returns its data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> Lock<T> {
    /// Locks, blocking the calling green thread (or the root) while the
    /// lock is held or others are waiting for it.
    pub fn lock(&self) -> LockGuard<'_, T> {
        let acquired = self.core.acquire(None);
        debug_assert!(acquired);
        self.guard()
    }

    /// Locks if the lock is free now and nobody is waiting for it.
    pub fn try_lock(&self) -> Option<LockGuard<'_, T>> {
        self.core.try_acquire().then(|| self.guard())
    }

    /// Locks, waiting at most `timeout`; `None` if it timed out.
    pub fn lock_timeout(&self, timeout: Duration) -> Option<LockGuard<'_, T>> {
        self.core.acquire(deadline_after(timeout)).then(|| self.guard())
    }

    /// Whether the lock is held (or handed to a waiter not yet running).
    pub fn is_locked(&self) -> bool {
        self.core.held() > 0
    }

    /// Green threads (or the root) waiting for the lock.
    pub fn waiting(&self) -> usize {
        self.core.waiting()
    }

    /// The data, through a unique borrow: no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn guard(&self) -> LockGuard<'_, T> {
        LockGuard { data: self.data.borrow_mut(), unlock: Unlock { lock: self } }
    }
}

impl<T: Default> Default for Lock<T> {
    fn default() -> Lock<T> {
        Lock::new(T::default())
    }
}

impl<T> From<T> for Lock<T> {
    fn from(value: T) -> Lock<T> {
        Lock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for Lock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Lock");
        match self.data.try_borrow() {
            Ok(data) if !self.is_locked() => d.field("data", &&*data),
            _ => d.field("data", &format_args!("<locked>")),
        };
        d.field("waiting", &self.waiting()).finish()
    }
}

/// Access to the data of a locked [`Lock`]; unlocks when dropped, handing
/// the lock to the longest waiter.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct LockGuard<'a, T: ?Sized> {
    // Declared first so the borrow ends before the lock is handed on.
    data: RefMut<'a, T>,
    unlock: Unlock<'a, T>,
}

struct Unlock<'a, T: ?Sized> {
    lock: &'a Lock<T>,
}

impl<T: ?Sized> Drop for Unlock<'_, T> {
    fn drop(&mut self) {
        self.lock.core.release();
    }
}

impl<T: ?Sized> Deref for LockGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: ?Sized> DerefMut for LockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for LockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.data, f)
    }
}

impl<T: ?Sized + fmt::Display> fmt::Display for LockGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.data, f)
    }
}

/// A condition variable for green threads, used with a [`Lock`].
///
/// Waiters are notified in the order they began to wait, and there are no
/// spurious wake-ups: [`wait`](Self::wait) returns only once notified. It
/// is still best to wait in a loop on the condition (or use
/// [`wait_while`](Self::wait_while)), since another green thread may
/// change the data between the notification and the re-lock.
///
/// A notification given to a waiter that is killed before it wakes passes
/// on to the next waiter, so `notify_one` is never lost.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use eventlet::{Condvar, Lock};
///
/// let pair = Rc::new((Lock::new(false), Condvar::new()));
/// let p = pair.clone();
/// eventlet::spawn_n(move || {
///     *p.0.lock() = true;
///     p.1.notify_one();
/// });
/// let (lock, cvar) = &*pair;
/// let ready = cvar.wait_while(lock.lock(), |ready| !*ready);
/// assert!(*ready);
/// ```
pub struct Condvar {
    waiters: WaitList<()>,
}

impl Condvar {
    /// A condition variable nobody waits on.
    pub fn new() -> Condvar {
        Condvar { waiters: WaitList::new() }
    }

    /// Unlocks `guard`'s lock, blocks the calling green thread (or the
    /// root) until notified, then locks again (queueing behind any other
    /// green threads waiting for the lock) and returns the guard.
    pub fn wait<'a, T: ?Sized>(&self, guard: LockGuard<'a, T>) -> LockGuard<'a, T> {
        self.wait_until(guard, None).0
    }

    /// Like [`wait`](Self::wait), waiting at most `timeout` for the
    /// notification (re-locking afterwards is not timed). The result says
    /// whether it timed out.
    pub fn wait_timeout<'a, T: ?Sized>(
        &self,
        guard: LockGuard<'a, T>,
        timeout: Duration,
    ) -> (LockGuard<'a, T>, WaitTimeoutResult) {
        self.wait_until(guard, deadline_after(timeout))
    }

    /// Waits (as [`wait`](Self::wait)) until `condition` on the data is
    /// false, checking it first; returns with the lock held.
    pub fn wait_while<'a, T: ?Sized>(
        &self,
        mut guard: LockGuard<'a, T>,
        mut condition: impl FnMut(&mut T) -> bool,
    ) -> LockGuard<'a, T> {
        while condition(&mut guard) {
            guard = self.wait(guard);
        }
        guard
    }

    /// Wakes the longest waiter, if any.
    pub fn notify_one(&self) {
        if let Some(w) = self.waiters.pop_front() {
            w.grant();
        }
    }

    /// Wakes every waiter, in the order they began to wait.
    pub fn notify_all(&self) {
        self.waiters.grant_all();
    }

    /// Green threads (or the root) waiting to be notified.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    fn wait_until<'a, T: ?Sized>(
        &self,
        guard: LockGuard<'a, T>,
        deadline: Option<Instant>,
    ) -> (LockGuard<'a, T>, WaitTimeoutResult) {
        let lock = guard.unlock.lock;
        let status = {
            let wait = pin!(Wait::new(&self.waiters, None, |status, _| {
                if status == Status::Granted {
                    // Killed between the notification and its wake-up.
                    self.notify_one();
                }
            }));
            let wait = wait.enqueue();
            drop(guard);
            if expired(deadline) {
                Status::Queued
            } else {
                wait.park(deadline)
            }
        };
        (lock.lock(), WaitTimeoutResult(status != Status::Granted))
    }
}

impl Default for Condvar {
    fn default() -> Condvar {
        Condvar::new()
    }
}

impl fmt::Debug for Condvar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condvar").field("waiting", &self.waiting()).finish()
    }
}

/// Whether a [`Condvar::wait_timeout`] timed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitTimeoutResult(bool);

impl WaitTimeoutResult {
    /// Whether the wait ended because the timeout passed, not because of a
    /// notification.
    pub fn timed_out(&self) -> bool {
        self.0
    }
}

/// A reader-writer lock for green threads that owns its data: many
/// readers or one writer at a time.
///
/// Fair in arrival order: a writer waits only for the readers and writer
/// ahead of it, and readers that arrive after a waiting writer queue
/// behind it (so writers are not starved); readers next to each other in
/// the queue get in together.
///
/// # Examples
///
/// ```
/// use std::rc::Rc;
/// use eventlet::RwLock;
///
/// let config = Rc::new(RwLock::new(String::from("v1")));
/// let c = config.clone();
/// let reader = eventlet::spawn(move || c.read().clone());
/// *config.write() = String::from("v2");
/// assert_eq!(reader.join().unwrap(), "v2");
/// assert_eq!(*config.read(), "v2");
/// ```
pub struct RwLock<T: ?Sized> {
    readers: Cell<usize>,
    writer: Cell<bool>,
    /// Invariant: the longest waiter cannot be let in now.
    waiters: WaitList<Kind>,
    data: RefCell<T>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read,
    Write,
}

impl<T> RwLock<T> {
    /// A new unlocked lock holding `value`.
    pub fn new(value: T) -> RwLock<T> {
        RwLock { readers: Cell::new(0), writer: Cell::new(false), waiters: WaitList::new(), data: RefCell::new(value) }
    }

    /// Consumes the lock and returns its data.
    pub fn into_inner(self) -> T {
        self.data.into_inner()
    }
}

impl<T: ?Sized> RwLock<T> {
    /// Locks for reading, blocking while a writer holds the lock or anyone
    /// is waiting for it.
    pub fn read(&self) -> RwLockReadGuard<'_, T> {
        let acquired = self.acquire(Kind::Read, None);
        debug_assert!(acquired);
        self.read_guard()
    }

    /// Locks for reading if that can be done now without queueing.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, T>> {
        self.try_acquire(Kind::Read).then(|| self.read_guard())
    }

    /// Locks for reading, waiting at most `timeout`; `None` if it timed out.
    pub fn read_timeout(&self, timeout: Duration) -> Option<RwLockReadGuard<'_, T>> {
        self.acquire(Kind::Read, deadline_after(timeout)).then(|| self.read_guard())
    }

    /// Locks for writing, blocking while anyone holds the lock or is
    /// waiting for it.
    pub fn write(&self) -> RwLockWriteGuard<'_, T> {
        let acquired = self.acquire(Kind::Write, None);
        debug_assert!(acquired);
        self.write_guard()
    }

    /// Locks for writing if that can be done now without queueing.
    pub fn try_write(&self) -> Option<RwLockWriteGuard<'_, T>> {
        self.try_acquire(Kind::Write).then(|| self.write_guard())
    }

    /// Locks for writing, waiting at most `timeout`; `None` if it timed out.
    pub fn write_timeout(&self, timeout: Duration) -> Option<RwLockWriteGuard<'_, T>> {
        self.acquire(Kind::Write, deadline_after(timeout)).then(|| self.write_guard())
    }

    /// Readers holding the lock now.
    pub fn readers(&self) -> usize {
        self.readers.get()
    }

    /// Whether a writer holds the lock now.
    pub fn is_write_locked(&self) -> bool {
        self.writer.get()
    }

    /// Green threads (or the root) waiting for the lock.
    pub fn waiting(&self) -> usize {
        self.waiters.len()
    }

    /// The data, through a unique borrow: no locking needed.
    pub fn get_mut(&mut self) -> &mut T {
        self.data.get_mut()
    }

    fn can_enter(&self, kind: Kind) -> bool {
        !self.writer.get() && (kind == Kind::Read || self.readers.get() == 0)
    }

    fn enter(&self, kind: Kind) {
        match kind {
            Kind::Read => self.readers.set(self.readers.get() + 1),
            Kind::Write => self.writer.set(true),
        }
    }

    fn try_acquire(&self, kind: Kind) -> bool {
        let ok = self.waiters.is_empty() && self.can_enter(kind);
        if ok {
            self.enter(kind);
        }
        ok
    }

    fn acquire(&self, kind: Kind, deadline: Option<Instant>) -> bool {
        if self.try_acquire(kind) {
            return true;
        }
        wait_for_grant(&self.waiters, Some(kind), deadline, |status, _| match status {
            // A writer leaving the front may let the readers behind it in.
            Status::Queued => self.dispatch(),
            // Killed between the grant and its wake-up: pass it on.
            Status::Granted => self.leave(kind),
            _ => {}
        })
    }

    /// Lets in the waiters at the front that can enter now.
    fn dispatch(&self) {
        while let Some(kind) = self.waiters.front_value() {
            if !self.can_enter(kind) {
                break;
            }
            self.enter(kind);
            if let Some(w) = self.waiters.pop_front() {
                w.grant();
            }
            if kind == Kind::Write {
                break;
            }
        }
    }

    fn leave(&self, kind: Kind) {
        match kind {
            Kind::Read => self.readers.set(self.readers.get() - 1),
            Kind::Write => self.writer.set(false),
        }
        self.dispatch();
    }

    fn read_guard(&self) -> RwLockReadGuard<'_, T> {
        RwLockReadGuard { data: self.data.borrow(), _leave: Leave { lock: self, kind: Kind::Read } }
    }

    fn write_guard(&self) -> RwLockWriteGuard<'_, T> {
        RwLockWriteGuard { data: self.data.borrow_mut(), _leave: Leave { lock: self, kind: Kind::Write } }
    }
}

impl<T: Default> Default for RwLock<T> {
    fn default() -> RwLock<T> {
        RwLock::new(T::default())
    }
}

impl<T> From<T> for RwLock<T> {
    fn from(value: T) -> RwLock<T> {
        RwLock::new(value)
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLock<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RwLock");
        match self.data.try_borrow() {
            Ok(data) if !self.writer.get() => d.field("data", &&*data),
            _ => d.field("data", &format_args!("<locked>")),
        };
        d.field("readers", &self.readers()).field("waiting", &self.waiting()).finish()
    }
}

struct Leave<'a, T: ?Sized> {
    lock: &'a RwLock<T>,
    kind: Kind,
}

impl<T: ?Sized> Drop for Leave<'_, T> {
    fn drop(&mut self) {
        self.lock.leave(self.kind);
    }
}

/// Shared access to the data of an [`RwLock`]; unlocks when dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockReadGuard<'a, T: ?Sized> {
    data: Ref<'a, T>,
    _leave: Leave<'a, T>,
}

impl<T: ?Sized> Deref for RwLockReadGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockReadGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.data, f)
    }
}

/// Exclusive access to the data of an [`RwLock`]; unlocks when dropped.
#[must_use = "the lock is released at once if the guard is not kept"]
pub struct RwLockWriteGuard<'a, T: ?Sized> {
    data: RefMut<'a, T>,
    _leave: Leave<'a, T>,
}

impl<T: ?Sized> Deref for RwLockWriteGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.data
    }
}

impl<T: ?Sized> DerefMut for RwLockWriteGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.data
    }
}

impl<T: ?Sized + fmt::Debug> fmt::Debug for RwLockWriteGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.data, f)
    }
}
