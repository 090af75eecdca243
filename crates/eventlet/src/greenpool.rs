//! Pools of green threads (eventlet's `greenpool` module): [`GreenPool`]
//! bounds how many green threads run at once, [`GreenPool::imap`] maps a
//! function over an iterator concurrently and yields the results in input
//! order, and [`GreenPile`] collects the results of a set of spawns in
//! spawn order.
//!
//! A pool counts *slots*. Spawning takes one, blocking the caller while all
//! are in use; the slot is given back when the green thread ends, whichever
//! way it ends: it returns, panics, is killed while blocked, or is killed
//! before it started (its closure is then dropped unrun). The slot travels
//! inside the closure as a guard, so dropping the closure frees it.
//!
//! Waiting spawners are served first come, first served: a freed slot is
//! handed straight to the longest waiter, and a spawner that arrives while
//! others wait queues behind them even if it could barge in.
//!
//! A green thread of the pool that spawns into the pool while it is full
//! does not wait for a slot (it holds one itself, and if every member did
//! that, none would ever be freed): the function runs inline, on the
//! calling green thread, as eventlet's `GreenPool.spawn` is reentrant.
//!
//! # Differences from eventlet
//!
//! A function run inline by [`GreenPool::spawn`] that panics gives its
//! panic to the returned handle's `join`, as a spawned green thread's
//! would (eventlet's inline run raises in the caller too); one run inline
//! by [`GreenPool::spawn_n`] is reported and the caller goes on, as in
//! eventlet. A kill of the caller, or the expiry of one of its
//! [`Timeout`](crate::Timeout)s, during an inline run unwinds the caller
//! as anywhere else. A [`GreenPile`] can be shared (cloned) by several
//! producers and consumers; eventlet's warns that its iterator "will exit
//! early" when it is iterated elsewhere than where it is fed, which ours
//! does not: it waits for spawns in progress.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::iter::FusedIterator;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::rc::Rc;

use crate::greenthread::{current, Builder, GreenThread, JoinHandle};
use crate::hub::{self, Kill, Killed};
use crate::stack::MIN_STACK_SIZE;
use crate::timeout::Elapsed;
use crate::waitlist::{Status, Wait, WaitList};

/// The size of [`GreenPool::default`], as in eventlet.
const DEFAULT_SIZE: usize = 1000;

/// A pool of green threads that never runs more than [`size`](Self::size)
/// of them at once.
///
/// Cloning a `GreenPool` gives another handle to the same pool. A pool
/// belongs to one OS thread (it is not `Send`), like the green threads it
/// spawns.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use eventlet::GreenPool;
///
/// let pool = GreenPool::new(2);
/// let done = Rc::new(Cell::new(0));
/// for _ in 0..5 {
///     let done = done.clone();
///     // Blocks while two are running.
///     pool.spawn_n(move || {
///         eventlet::sleep(Duration::from_millis(1));
///         done.set(done.get() + 1);
///     });
///     assert!(pool.running() <= 2);
/// }
/// pool.waitall();
/// assert_eq!(done.get(), 5);
///
/// let h = pool.spawn(|| 6 * 7);
/// assert_eq!(h.join().unwrap(), 42);
/// ```
///
/// A pool belongs to its OS thread's hub, so it is not `Send`:
///
/// ```compile_fail
/// let pool = eventlet::GreenPool::new(10);
/// std::thread::spawn(move || pool.spawn_n(|| ()));
/// ```
#[derive(Clone)]
pub struct GreenPool {
    inner: Rc<Inner>,
}

struct Inner {
    size: Cell<usize>,
    /// Slots in use: green threads of the pool that have not ended, plus
    /// slots handed to a waiter that has not spawned yet.
    running: Cell<usize>,
    /// Spawners waiting for a slot, oldest first. Invariant: when it is not
    /// empty, `running >= size` (a freed slot goes straight to the front).
    waiters: WaitList<()>,
    /// Green threads (or the root) in `waitall`.
    idle_waiters: RefCell<Vec<GreenThread>>,
    stack_size: Cell<Option<usize>>,
}

/// Wakes `t`, unless this OS thread's hub is already gone: the guards of a
/// pool may be dropped while the thread is torn down, and must not panic
/// there.
fn wake(t: &GreenThread) {
    if hub::try_with_hub(|_| ()).is_some() {
        t.unpark();
    }
}

impl Inner {
    /// What a member green thread's task carries to say it belongs here.
    fn tag(&self) -> usize {
        self as *const Inner as usize
    }

    /// Takes a slot if one is free and nobody is queued for one.
    fn try_acquire(self: &Rc<Inner>) -> Option<Slot> {
        if self.waiters.is_empty() && self.running.get() < self.size.get() {
            self.running.set(self.running.get() + 1);
            Some(Slot::new(self.clone()))
        } else {
            None
        }
    }

    /// Waits in line for a slot; gives up (returning `None`) as soon as
    /// `give_up()` is true when checked, which happens before queueing and
    /// after each wake-up.
    fn acquire_until(self: &Rc<Inner>, give_up: impl Fn() -> bool) -> Option<Slot> {
        if let Some(slot) = self.try_acquire() {
            return Some(slot);
        }
        if give_up() {
            return None;
        }
        // Leaves the queue (or gives back a slot granted and not taken)
        // however the wait ends, including by a kill unwinding through
        // `park`. A waiter that leaves while queued wakes nobody: by the
        // queue's invariant no slot was free.
        let wait = pin!(Wait::new(&self.waiters, None, |status, _| {
            if status == Status::Granted {
                self.release();
            }
        }));
        let wait = wait.enqueue();
        loop {
            if wait.take_grant() {
                return Some(Slot::new(self.clone()));
            }
            if give_up() {
                return None;
            }
            if let Err(e) = hub::with_hub(|h| h.park_result(None)) {
                // A slot granted as a timeout expired is taken: it wins.
                if wait.take_grant() {
                    return Some(Slot::new(self.clone()));
                }
                panic::resume_unwind(Box::new(e));
            }
        }
    }

    /// Whether the running green thread is one of the pool's own and the
    /// pool is full: a spawn from it runs inline.
    fn reentered(&self) -> bool {
        (self.running.get() >= self.size.get() || !self.waiters.is_empty())
            && hub::with_hub(|h| h.current().pool.0.get()) == self.tag()
    }

    /// Hands free slots to the waiters at the front of the queue.
    fn dispatch(&self) {
        while self.running.get() < self.size.get() {
            let Some(w) = self.waiters.pop_front() else { break };
            self.running.set(self.running.get() + 1);
            w.grant();
        }
    }

    fn release(&self) {
        self.running.set(self.running.get() - 1);
        self.dispatch();
        if self.running.get() == 0 {
            for t in self.idle_waiters.borrow().iter() {
                wake(t);
            }
        }
    }

    fn builder(&self) -> Builder {
        match self.stack_size.get() {
            Some(s) => Builder::new().stack_size(s),
            None => Builder::new(),
        }
    }
}

/// Runs `f` on the calling green thread for a reentrant spawn. A panic of
/// `f` comes back as its result, except the caller's own kill or the expiry
/// of one of the caller's `Timeout`s, which go on unwinding the caller.
fn run_inline<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    if let Err(p) = &r {
        let callers = hub::with_hub(|h| {
            let me = h.current();
            (p.is::<Killed>() && me.kill.get() == Kill::Delivered)
                || p.downcast_ref::<Elapsed>().is_some_and(|e| e.is_refusal() || me.timeouts.contains(e.id))
        });
        if callers {
            if let Err(p) = r {
                panic::resume_unwind(p);
            }
        }
    }
    r
}

/// Which pool's job a green thread runs (the address of the pool's `Inner`,
/// 0 if none), kept in its task so `waitall` can refuse to wait for itself.
#[derive(Default)]
pub(crate) struct Membership(Cell<usize>);

/// One slot of a pool, held by a green thread of the pool for its whole
/// life (moved into its closure). Dropping it frees the slot.
struct Slot {
    inner: Rc<Inner>,
}

impl Slot {
    fn new(inner: Rc<Inner>) -> Slot {
        Slot { inner }
    }

    /// Records the running green thread as one of the pool's own.
    fn enter(&mut self) {
        hub::with_hub(|h| h.current().pool.0.set(self.inner.tag()));
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let tag = self.inner.tag();
        hub::try_with_hub(|h| {
            let me = h.current();
            if me.pool.0.get() == tag {
                me.pool.0.set(0);
            }
        });
        self.inner.release();
    }
}

/// The error of [`GreenPool::try_new`]: a pool needs at least one slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSizeError {
    _private: (),
}

impl fmt::Display for PoolSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("green pool size must be at least 1")
    }
}

impl std::error::Error for PoolSizeError {}

/// The error of [`GreenPool::try_spawn`].
pub enum TrySpawnError<F> {
    /// Every slot is in use (or other spawners are waiting for one); the
    /// closure is handed back.
    Full(F),
    /// No green thread could be created (no stack to be had); see
    /// [`Builder::spawn`](crate::Builder::spawn). The closure was dropped.
    Spawn(io::Error),
}

impl<F> TrySpawnError<F> {
    /// The closure, if the pool was full.
    pub fn into_inner(self) -> Option<F> {
        match self {
            TrySpawnError::Full(f) => Some(f),
            TrySpawnError::Spawn(_) => None,
        }
    }
}

impl<F> fmt::Debug for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySpawnError::Full(_) => f.write_str("Full(..)"),
            TrySpawnError::Spawn(e) => f.debug_tuple("Spawn").field(e).finish(),
        }
    }
}

impl<F> fmt::Display for TrySpawnError<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySpawnError::Full(_) => f.write_str("green pool is full"),
            TrySpawnError::Spawn(e) => write!(f, "cannot spawn a green thread: {e}"),
        }
    }
}

impl<F> std::error::Error for TrySpawnError<F> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TrySpawnError::Full(_) => None,
            TrySpawnError::Spawn(e) => Some(e),
        }
    }
}

impl GreenPool {
    /// A pool running at most `size` green threads at once.
    ///
    /// # Panics
    ///
    /// Panics if `size` is 0; see [`GreenPool::try_new`].
    pub fn new(size: usize) -> GreenPool {
        GreenPool::try_new(size).unwrap_or_else(|e| panic!("eventlet: GreenPool::new({size}): {e}"))
    }

    /// A pool running at most `size` green threads at once.
    ///
    /// # Errors
    ///
    /// [`PoolSizeError`] if `size` is 0.
    pub fn try_new(size: usize) -> Result<GreenPool, PoolSizeError> {
        if size == 0 {
            return Err(PoolSizeError { _private: () });
        }
        Ok(GreenPool {
            inner: Rc::new(Inner {
                size: Cell::new(size),
                running: Cell::new(0),
                waiters: WaitList::new(),
                idle_waiters: RefCell::new(Vec::new()),
                stack_size: Cell::new(None),
            }),
        })
    }

    /// Gives the green threads this pool spawns from now on a stack of
    /// `bytes` (see [`Builder::stack_size`](crate::Builder::stack_size)).
    /// The setting belongs to the pool, so every handle to it sees it.
    ///
    /// # Panics
    ///
    /// Panics if `bytes` is below [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE).
    pub fn with_stack_size(self, bytes: usize) -> GreenPool {
        assert!(
            bytes >= MIN_STACK_SIZE,
            "eventlet: GreenPool::with_stack_size: {bytes} bytes is below the minimum of {MIN_STACK_SIZE}"
        );
        self.inner.stack_size.set(Some(bytes));
        self
    }

    /// The most green threads the pool runs at once.
    pub fn size(&self) -> usize {
        self.inner.size.get()
    }

    /// Slots in use: green threads of the pool that have not ended yet
    /// (including ones not started yet).
    pub fn running(&self) -> usize {
        self.inner.running.get()
    }

    /// Slots free now: `size() - running()`, or 0 while a shrunk pool
    /// still runs more than its new size.
    pub fn free(&self) -> usize {
        self.size().saturating_sub(self.running())
    }

    /// Green threads (or the root) blocked in [`spawn`](Self::spawn),
    /// [`spawn_n`](Self::spawn_n) or an [`Imap`] waiting for a slot.
    pub fn waiting(&self) -> usize {
        self.inner.waiters.len()
    }

    /// Changes the size of the pool. Growing it hands the new slots to
    /// waiting spawners at once; shrinking it lets the green threads already
    /// running finish, and new ones start only once fewer than `size` run.
    ///
    /// # Panics
    ///
    /// Panics if `size` is 0.
    pub fn resize(&self, size: usize) {
        assert!(size >= 1, "eventlet: GreenPool::resize(0): green pool size must be at least 1");
        self.inner.size.set(size);
        self.inner.dispatch();
    }

    /// Spawns a green thread running `f` in the pool, first blocking the
    /// calling green thread (or the root) while the pool is full. Waiting
    /// spawners get slots in the order they came.
    ///
    /// A green thread of the pool that spawns into the full pool runs `f`
    /// inline instead, as eventlet does: waiting for a slot it holds itself
    /// could wait forever. The handle it gets has `f`'s result (or panic)
    /// already.
    ///
    /// # Examples
    ///
    /// ```
    /// let pool = eventlet::GreenPool::new(1);
    /// let p = pool.clone();
    /// let outer = pool.spawn(move || {
    ///     // The pool is full (this green thread is its one member): `f`
    ///     // runs here and now.
    ///     let inner = p.spawn(|| "reenter");
    ///     assert!(inner.is_finished());
    ///     inner.join().unwrap()
    /// });
    /// assert_eq!(outer.join().unwrap(), "reenter");
    /// ```
    ///
    /// # Panics
    ///
    /// Panics if no stack can be had for the green thread (see
    /// [`Builder::spawn`](crate::Builder::spawn)); the slot is given back.
    pub fn spawn<F, T>(&self, f: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        if self.inner.reentered() {
            let result = run_inline(f);
            return JoinHandle::from_task(hub::with_hub(|h| h.finished(result)));
        }
        let slot = self.acquire();
        self.start(slot, f).unwrap_or_else(|e| panic!("eventlet: GreenPool::spawn: {e}"))
    }

    /// Spawns a green thread running `f` in the pool if a slot is free now,
    /// without blocking.
    ///
    /// # Errors
    ///
    /// [`TrySpawnError::Full`] with `f` if no slot is free or other spawners
    /// are waiting for one; [`TrySpawnError::Spawn`] if no stack can be had.
    pub fn try_spawn<F, T>(&self, f: F) -> Result<JoinHandle<T>, TrySpawnError<F>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        match self.inner.try_acquire() {
            Some(slot) => self.start(slot, f).map_err(TrySpawnError::Spawn),
            None => Err(TrySpawnError::Full(f)),
        }
    }

    /// Like [`spawn`](Self::spawn), for a green thread whose result nobody
    /// waits for. A panic in `f` is reported by the runtime (see
    /// [`spawn_n`](crate::spawn_n)) and only frees the slot.
    ///
    /// From a green thread of the full pool, `f` runs inline (see
    /// [`spawn`](Self::spawn)); a panic in it is reported the same way and
    /// the caller goes on.
    ///
    /// # Panics
    ///
    /// Panics if no stack can be had for the green thread; the slot is given
    /// back.
    pub fn spawn_n<F>(&self, f: F)
    where
        F: FnOnce() + 'static,
    {
        if self.inner.reentered() {
            if let Err(p) = run_inline(f) {
                hub::with_hub(|h| crate::report::green_panic(&h.current(), p.as_ref()));
                crate::report::drop_payload(p);
            }
            return;
        }
        let mut slot = self.acquire();
        self.inner
            .builder()
            .spawn_n(move || {
                slot.enter();
                f();
                drop(slot);
            })
            .unwrap_or_else(|e| panic!("eventlet: GreenPool::spawn_n: {e}"));
    }

    /// Blocks until no green thread of the pool is running.
    ///
    /// # Panics
    ///
    /// Panics if called from one of the pool's own green threads, which
    /// would wait for itself forever.
    pub fn waitall(&self) {
        let me = current();
        assert!(
            hub::with_hub(|h| h.current().pool.0.get()) != self.inner.tag(),
            "eventlet: GreenPool::waitall called from one of the pool's own green threads would never return"
        );
        if self.running() == 0 {
            return;
        }
        self.inner.idle_waiters.borrow_mut().push(me.clone());
        let _guard = IdleGuard { inner: &self.inner, me: &me };
        hub::park_until(|| self.running() == 0);
    }

    /// Applies `f` to each item of `iter` in the pool's green threads and
    /// returns an iterator over the results in input order.
    ///
    /// Items are pulled from `iter` only while the returned [`Imap`] is
    /// iterated, and each starts only when a slot of the pool is free, so at
    /// most [`size`](Self::size) calls run at once (fewer if other users of
    /// the pool hold slots). While it waits for the next result in order,
    /// the iterator keeps starting new items as slots free up, so results
    /// that finish early are held until their turn.
    ///
    /// A panic in `f` is resumed in the iterating context when its result's
    /// turn comes ([`std::panic::resume_unwind`]). Dropping the `Imap`
    /// leaves the calls already started to finish on their own.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::io;
    /// use std::time::Duration;
    /// use eventlet::GreenPool;
    ///
    /// fn fetch(url: &str) -> io::Result<Vec<u8>> {
    ///     eventlet::sleep(Duration::from_millis(url.len() as u64)); // I/O here
    ///     Ok(url.as_bytes().to_vec())
    /// }
    ///
    /// let urls = vec!["http://a.example/long/path", "http://b.example/"];
    /// let pool = GreenPool::new(1000);
    /// let mut lens = Vec::new();
    /// for body in pool.imap(fetch, urls) {
    ///     lens.push(body?.len());
    /// }
    /// assert_eq!(lens, [26, 17]);
    /// # Ok::<(), io::Error>(())
    /// ```
    ///
    /// # Panics
    ///
    /// Iterating panics if no stack can be had for a green thread.
    pub fn imap<F, I, T>(&self, f: F, iter: I) -> Imap<I::IntoIter, T>
    where
        F: Fn(I::Item) -> T + 'static,
        I: IntoIterator,
        I::Item: 'static,
        T: 'static,
    {
        Imap {
            pool: self.clone(),
            iter: iter.into_iter(),
            exhausted: false,
            f: Rc::new(f),
            pending: VecDeque::new(),
            consumer: Rc::new(RefCell::new(None)),
        }
    }

    fn acquire(&self) -> Slot {
        match self.inner.acquire_until(|| false) {
            Some(slot) => slot,
            None => unreachable!("acquire_until(never) gave up"),
        }
    }

    fn start<F, T>(&self, mut slot: Slot, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.inner.builder().spawn(move || {
            slot.enter();
            let r = f();
            drop(slot);
            r
        })
    }
}

impl Default for GreenPool {
    /// A pool of 1000, eventlet's default size.
    fn default() -> GreenPool {
        GreenPool::new(DEFAULT_SIZE)
    }
}

impl fmt::Debug for GreenPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPool")
            .field("size", &self.size())
            .field("running", &self.running())
            .field("waiting", &self.waiting())
            .finish()
    }
}

struct IdleGuard<'a> {
    inner: &'a Inner,
    me: &'a GreenThread,
}

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        let mut idle = self.inner.idle_waiters.borrow_mut();
        if let Some(i) = idle.iter().position(|t| t == self.me) {
            idle.swap_remove(i);
        }
    }
}

/// The iterator of [`GreenPool::imap`]: the results of a function applied
/// concurrently to the items of `I`, in input order.
pub struct Imap<I: Iterator, T> {
    pool: GreenPool,
    iter: I,
    exhausted: bool,
    f: Rc<dyn Fn(I::Item) -> T>,
    /// Started items, in input order.
    pending: VecDeque<Rc<Item<T>>>,
    /// Whoever is blocked in `next`, to be woken when an item ends.
    consumer: Rc<RefCell<Option<GreenThread>>>,
}

struct Item<T> {
    result: RefCell<Option<std::thread::Result<T>>>,
    done: Cell<bool>,
}

/// Marks an item done and wakes the consumer when the item's green thread
/// ends, or when its closure is dropped unrun.
struct ItemDone<T> {
    item: Rc<Item<T>>,
    consumer: Rc<RefCell<Option<GreenThread>>>,
}

impl<T> Drop for ItemDone<T> {
    fn drop(&mut self) {
        self.item.done.set(true);
        if let Some(c) = self.consumer.borrow().as_ref() {
            wake(c);
        }
    }
}

/// Registers the running context as an `Imap`'s consumer while it waits.
struct ConsumerGuard(Rc<RefCell<Option<GreenThread>>>);

impl ConsumerGuard {
    fn new(cell: &Rc<RefCell<Option<GreenThread>>>) -> ConsumerGuard {
        *cell.borrow_mut() = Some(current());
        ConsumerGuard(cell.clone())
    }
}

impl Drop for ConsumerGuard {
    fn drop(&mut self) {
        self.0.borrow_mut().take();
    }
}

impl<I: Iterator, T: 'static> Imap<I, T>
where
    I::Item: 'static,
{
    /// Pulls the next input item and starts it with `slot`; at the end of
    /// the input, gives the slot back.
    fn start_next(&mut self, mut slot: Slot) {
        let Some(x) = self.iter.next() else {
            self.exhausted = true;
            return;
        };
        let item = Rc::new(Item { result: RefCell::new(None), done: Cell::new(false) });
        let done = ItemDone { item: item.clone(), consumer: self.consumer.clone() };
        let f = self.f.clone();
        self.pending.push_back(item);
        self.pool
            .inner
            .builder()
            .spawn_n(move || {
                slot.enter();
                let r = panic::catch_unwind(AssertUnwindSafe(|| f(x)));
                *done.item.result.borrow_mut() = Some(r);
                drop(slot);
                drop(done);
            })
            .unwrap_or_else(|e| panic!("eventlet: GreenPool::imap: {e}"));
    }

    fn head_done(pending: &VecDeque<Rc<Item<T>>>) -> bool {
        pending.front().is_some_and(|i| i.done.get())
    }
}

impl<I: Iterator, T: 'static> Iterator for Imap<I, T>
where
    I::Item: 'static,
{
    type Item = T;

    fn next(&mut self) -> Option<T> {
        loop {
            // Keep the pool busy while slots are free.
            while !self.exhausted {
                let Some(slot) = self.pool.inner.try_acquire() else { break };
                self.start_next(slot);
            }
            if Self::head_done(&self.pending) {
                let item = self.pending.pop_front()?;
                let result = item.result.borrow_mut().take();
                return match result {
                    Some(Ok(v)) => Some(v),
                    Some(Err(payload)) => panic::resume_unwind(payload),
                    None => panic::resume_unwind(Box::new(Killed)),
                };
            }
            if self.pending.is_empty() && self.exhausted {
                return None;
            }
            // Wait for the next result, or for a slot to start another item.
            let _consumer = ConsumerGuard::new(&self.consumer);
            if self.exhausted {
                hub::park_until(|| Self::head_done(&self.pending));
            } else {
                let pending = &self.pending;
                if let Some(slot) = self.pool.inner.acquire_until(|| Self::head_done(pending)) {
                    self.start_next(slot);
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.exhausted {
            return (self.pending.len(), Some(self.pending.len()));
        }
        let (lo, hi) = self.iter.size_hint();
        (lo.saturating_add(self.pending.len()), hi.and_then(|h| h.checked_add(self.pending.len())))
    }
}

impl<I: Iterator, T: 'static> FusedIterator for Imap<I, T> where I::Item: 'static {}

impl<I: Iterator, T> fmt::Debug for Imap<I, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Imap")
            .field("pool", &self.pool)
            .field("pending", &self.pending.len())
            .field("exhausted", &self.exhausted)
            .finish_non_exhaustive()
    }
}

/// Results of green threads in the order they were spawned (eventlet's
/// `GreenPile`).
///
/// [`spawn`](Self::spawn) starts a green thread in the pile's pool
/// (blocking while the pool is full); iterating the pile waits for each
/// result in turn. A panic of a green thread is resumed in the iterating
/// context when its turn comes.
///
/// Cloning a `GreenPile` gives another handle to the same pile, so several
/// producer green threads can feed it while a consumer iterates. Results
/// come in the order their spawns returned, so each producer's results
/// keep their order. While a spawn is in progress (waiting for a slot of
/// the pool), the iterator waits for its result rather than end; when
/// nothing is pending or being spawned it returns `None`, until more is
/// spawned.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use eventlet::GreenPile;
///
/// let mut pile = GreenPile::new(10);
/// for ms in [30, 10, 20] {
///     pile.spawn(move || {
///         eventlet::sleep(Duration::from_millis(ms));
///         ms
///     });
/// }
/// assert_eq!(pile.len(), 3);
/// assert_eq!(pile.collect::<Vec<_>>(), [30, 10, 20]);
/// ```
///
/// Fed by two producers while the root iterates:
///
/// ```
/// use eventlet::GreenPile;
///
/// let pile = GreenPile::new(2); // producers wait for slots
/// let producers: Vec<_> = ["a", "b"]
///     .into_iter()
///     .map(|name| {
///         let pile = pile.clone();
///         eventlet::spawn(move || {
///             for i in 0..3 {
///                 pile.spawn(move || (name, i));
///             }
///         })
///     })
///     .collect();
/// eventlet::yield_now(); // the producers begin to spawn
/// let got: Vec<(&str, i32)> = (&pile).collect();
/// for name in ["a", "b"] {
///     let mine: Vec<i32> = got.iter().filter(|r| r.0 == name).map(|r| r.1).collect();
///     assert_eq!(mine, [0, 1, 2]);
/// }
/// for p in producers {
///     p.join().unwrap();
/// }
/// ```
pub struct GreenPile<T> {
    pool: GreenPool,
    shared: Rc<PileShared<T>>,
}

struct PileShared<T> {
    /// Started green threads, in the order their spawns returned.
    pending: RefCell<VecDeque<JoinHandle<T>>>,
    /// Spawns begun and not returned yet (waiting for a slot of the pool).
    spawning: Cell<usize>,
    /// Consumers waiting for a result to be queued or the last spawn in
    /// progress to end.
    consumers: WaitList<()>,
}

/// Counts a spawn in progress; when it ends (returns, fails or is
/// unwound), wakes the consumers to look again.
struct Spawning<'a, T>(&'a PileShared<T>);

impl<'a, T> Spawning<'a, T> {
    fn new(pile: &'a PileShared<T>) -> Spawning<'a, T> {
        pile.spawning.set(pile.spawning.get() + 1);
        Spawning(pile)
    }
}

impl<T> Drop for Spawning<'_, T> {
    fn drop(&mut self) {
        self.0.spawning.set(self.0.spawning.get() - 1);
        self.0.consumers.grant_all();
    }
}

impl<T: 'static> GreenPile<T> {
    /// A pile with its own pool of `size`.
    ///
    /// # Panics
    ///
    /// Panics if `size` is 0.
    pub fn new(size: usize) -> GreenPile<T> {
        GreenPile::with_pool(&GreenPool::new(size))
    }

    /// A pile spawning into `pool` (shared with its other users).
    pub fn with_pool(pool: &GreenPool) -> GreenPile<T> {
        let shared =
            PileShared { pending: RefCell::new(VecDeque::new()), spawning: Cell::new(0), consumers: WaitList::new() };
        GreenPile { pool: pool.clone(), shared: Rc::new(shared) }
    }

    /// The pool the pile spawns into.
    pub fn pool(&self) -> &GreenPool {
        &self.pool
    }

    /// Spawns `f` in the pile's pool (see [`GreenPool::spawn`], which may
    /// block) and queues its result.
    ///
    /// # Panics
    ///
    /// Panics if no stack can be had for the green thread.
    pub fn spawn<F>(&self, f: F)
    where
        F: FnOnce() -> T + 'static,
    {
        let _spawning = Spawning::new(&self.shared);
        let h = self.pool.spawn(f);
        self.shared.pending.borrow_mut().push_back(h);
    }

    /// Results not yet taken: green threads spawned and not yet yielded by
    /// the iterator (not counting spawns still waiting for a slot).
    pub fn len(&self) -> usize {
        self.shared.pending.borrow().len()
    }

    /// Whether every spawned result has been taken.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Spawns in progress: [`spawn`](Self::spawn) calls waiting for a slot
    /// of the pool.
    pub fn spawning(&self) -> usize {
        self.shared.spawning.get()
    }

    /// The next result: waits for the oldest queued green thread, or, with
    /// none queued, for a spawn in progress to queue one.
    fn next_result(&self) -> Option<T> {
        loop {
            let h = self.shared.pending.borrow_mut().pop_front();
            if let Some(h) = h {
                // A wait cut short (a kill, a timeout) puts the green
                // thread back at the front: its result stays in the pile.
                let mut back = PutBack { shared: &self.shared, handle: Some(h) };
                if let Some(h) = &back.handle {
                    if let Err(e) = h.wait_end() {
                        panic::resume_unwind(Box::new(e));
                    }
                }
                let h = back.handle.take()?;
                return match h.join() {
                    Ok(v) => Some(v),
                    Err(payload) => panic::resume_unwind(payload),
                };
            }
            if self.shared.spawning.get() == 0 {
                return None;
            }
            let wait = pin!(Wait::new(&self.shared.consumers, None, |_, _| {}));
            wait.enqueue().park(None);
        }
    }
}

/// A green thread of a pile that a consumer took and waits for; dropped
/// before the wait ends, it goes back to the front of the pile, and the
/// consumers waiting there look again.
struct PutBack<'a, T> {
    shared: &'a PileShared<T>,
    handle: Option<JoinHandle<T>>,
}

impl<T> Drop for PutBack<'_, T> {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.shared.pending.borrow_mut().push_front(h);
            self.shared.consumers.grant_all();
        }
    }
}

impl<T: 'static> Default for GreenPile<T> {
    /// A pile with its own pool of the default size (1000).
    fn default() -> GreenPile<T> {
        GreenPile::with_pool(&GreenPool::default())
    }
}

impl<T> Clone for GreenPile<T> {
    /// Another handle to the same pile.
    fn clone(&self) -> GreenPile<T> {
        GreenPile { pool: self.pool.clone(), shared: self.shared.clone() }
    }
}

impl<T: 'static> Iterator for GreenPile<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.next_result()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let queued = self.len();
        (queued, (self.spawning() == 0).then_some(queued))
    }
}

impl<T: 'static> Iterator for &GreenPile<T> {
    type Item = T;

    fn next(&mut self) -> Option<T> {
        self.next_result()
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (**self).size_hint()
    }
}

impl<T> fmt::Debug for GreenPile<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenPile")
            .field("pool", &self.pool)
            .field("pending", &self.shared.pending.borrow().len())
            .field("spawning", &self.shared.spawning.get())
            .finish()
    }
}
