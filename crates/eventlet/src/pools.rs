//! Pools of reusable resources, such as database connections (eventlet's
//! `pools` module): [`Pool`], and [`TryPool`] for resources whose creation
//! can fail.
//!
//! A pool makes items with its create function, at most `max_size` of them
//! at once; `min_size` of them are made when the pool is. [`Pool::get`]
//! hands out a free item (the one given back longest ago), or makes a new
//! one while fewer than `max_size` exist, or else waits. The item comes in
//! a [`PoolGuard`] that gives it back when dropped, including when its
//! green thread panics or is killed.
//!
//! Waiters are served first come, first served, and items move directly:
//! an item given back while green threads wait goes straight to the
//! longest waiter, so nobody who arrives later can take it first. An item
//! that is broken (a dead connection) is thrown away with
//! [`PoolGuard::discard`], which frees its place: the longest waiter, or
//! the next `get`, makes a new one. A waiter killed after it was handed an
//! item (or a place) passes it on.
//!
//! Free items are handed out oldest first (round robin, so each is used
//! about as often), or, with [`order_as_stack`](Pool::order_as_stack),
//! most recently given back first (a stack, which keeps reusing the
//! warmest items). [`resize`](Pool::resize) changes `max_size` of a live
//! pool: growing lets waiters make new items at once; shrinking drops free
//! items beyond the new size now, and items given back while the pool
//! still holds more than that are dropped instead of kept.
//!
//! # Differences from eventlet
//!
//! Items come back through the guard, not through `put`. The create
//! function is an `Fn`, called by whichever green thread needs a new item,
//! possibly by several at once (make it a `Cell`-based counter, not an
//! `FnMut`). `order_as_stack` is a method, not a constructor argument.
//! Shrinking drops free items beyond the new size at once (eventlet hands
//! them out until they come back, then drops them).

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::time::{deadline_after, expired};
use crate::waitlist::{Status, Wait, WaitList};

/// The part of a pool its guards share: the free items, the count of
/// places taken, and the waiters.
struct Slots<T> {
    /// Free items, given back longest ago first. Invariant: empty while
    /// anyone waits.
    free: RefCell<VecDeque<T>>,
    /// Places taken: items out, items free, items being made, and places
    /// granted to a waiter that has not woken yet. Above `max` only after a
    /// shrinking `resize`, until enough items come back.
    /// Invariant: at least `max` while anyone waits.
    size: Cell<usize>,
    max: Cell<usize>,
    /// Free items are handed out last given back first.
    stack: Cell<bool>,
    /// Waiters; one handed an item gets it in its slot, one handed an
    /// empty slot may make a new item in that place.
    waiters: WaitList<T>,
}

/// What a `get` obtained.
enum Take<T> {
    /// A free item.
    Item(T),
    /// A place: make a new item in it.
    Make,
    /// Nothing (yet).
    Nothing,
}

impl<T> Slots<T> {
    fn try_take(&self) -> Take<T> {
        if !self.waiters.is_empty() {
            return Take::Nothing;
        }
        let free =
            if self.stack.get() { self.free.borrow_mut().pop_back() } else { self.free.borrow_mut().pop_front() };
        if let Some(item) = free {
            return Take::Item(item);
        }
        if self.size.get() < self.max.get() {
            self.size.set(self.size.get() + 1);
            return Take::Make;
        }
        Take::Nothing
    }

    fn take(&self, deadline: Option<Instant>) -> Take<T> {
        match self.try_take() {
            Take::Nothing if !expired(deadline) => {}
            done => return done,
        }
        let wait = pin!(Wait::new(&self.waiters, None, |status, w| {
            if status == Status::Granted {
                // Killed between the hand-over and its wake-up: pass it on.
                match w.take_value() {
                    Some(item) => self.give_back(item),
                    None => self.free_place(),
                }
            }
        }));
        let wait = wait.enqueue();
        match wait.park(deadline) {
            Status::Granted => match wait.waiter().take_value() {
                Some(item) => Take::Item(item),
                None => Take::Make,
            },
            _ => Take::Nothing,
        }
    }

    /// Gives a free item to the longest waiter, or to the free list; drops
    /// it if the pool holds more items than its size.
    fn give_back(&self, item: T) {
        if self.size.get() > self.max.get() {
            self.size.set(self.size.get() - 1);
            drop(item);
            return;
        }
        match self.waiters.pop_front() {
            Some(w) => w.grant_with(item),
            None => self.free.borrow_mut().push_back(item),
        }
    }

    /// Frees the place of an item that is gone: the longest waiter may
    /// make a new item in it (unless the pool holds more than its size).
    fn free_place(&self) {
        if self.size.get() > self.max.get() {
            self.size.set(self.size.get() - 1);
            return;
        }
        match self.waiters.pop_front() {
            Some(w) => w.grant(),
            None => self.size.set(self.size.get() - 1),
        }
    }

    /// Sets the most items that may exist: the places made lets waiters
    /// make new items, oldest first; free items beyond it are dropped now
    /// (those given back longest ago first).
    fn resize(&self, max: usize) {
        self.max.set(max);
        while self.size.get() > max {
            let Some(item) = self.free.borrow_mut().pop_front() else { break };
            self.size.set(self.size.get() - 1);
            drop(item);
        }
        while self.size.get() < max {
            let Some(w) = self.waiters.pop_front() else { break };
            self.size.set(self.size.get() + 1);
            w.grant();
        }
    }
}

/// Frees a place taken to make an item unless the item was made (the
/// create function failed, panicked or was killed).
struct Making<'a, T> {
    slots: &'a Rc<Slots<T>>,
}

impl<T> Drop for Making<'_, T> {
    fn drop(&mut self) {
        self.slots.free_place();
    }
}

/// The state every handle of one pool shares.
struct Shared<T, E> {
    slots: Rc<Slots<T>>,
    create: Box<dyn Fn() -> Result<T, E>>,
}

impl<T, E> Shared<T, E> {
    fn new(min_size: usize, max_size: usize, create: Box<dyn Fn() -> Result<T, E>>) -> Result<Rc<Self>, E> {
        assert!(min_size <= max_size, "eventlet: pool min_size ({min_size}) is above its max_size ({max_size})");
        let slots = Rc::new(Slots {
            free: RefCell::new(VecDeque::with_capacity(min_size)),
            size: Cell::new(0),
            max: Cell::new(max_size),
            stack: Cell::new(false),
            waiters: WaitList::new(),
        });
        let shared = Rc::new(Shared { slots, create });
        for _ in 0..min_size {
            let item = (shared.create)()?;
            shared.slots.size.set(shared.slots.size.get() + 1);
            shared.slots.free.borrow_mut().push_back(item);
        }
        Ok(shared)
    }

    /// Turns what a get obtained into a guard, making the item if need be.
    fn finish(&self, take: Take<T>) -> Result<Option<PoolGuard<T>>, E> {
        let item = match take {
            Take::Item(item) => item,
            Take::Make => {
                let making = Making { slots: &self.slots };
                let item = (self.create)()?;
                std::mem::forget(making);
                item
            }
            Take::Nothing => return Ok(None),
        };
        Ok(Some(PoolGuard { item: Some(item), slots: self.slots.clone() }))
    }

    fn get(&self, deadline: Option<Instant>) -> Result<Option<PoolGuard<T>>, E> {
        let take = self.slots.take(deadline);
        self.finish(take)
    }

    fn try_get(&self) -> Result<Option<PoolGuard<T>>, E> {
        let take = self.slots.try_take();
        self.finish(take)
    }

    fn free(&self) -> usize {
        let s = &self.slots;
        s.free.borrow().len() + s.max.get().saturating_sub(s.size.get())
    }
}

/// Takes the item out of an infallible result.
fn infallible<T>(r: Result<T, Infallible>) -> T {
    match r {
        Ok(v) => v,
        Err(never) => match never {},
    }
}

/// A pool of at most `max_size` items made by a create function
/// (eventlet's `pools.Pool`). See the [module docs](self).
///
/// Cloning a `Pool` gives another handle to the same pool. It belongs to
/// one OS thread (it is not `Send`), like its green threads.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use std::time::Duration;
/// use eventlet::pools::Pool;
///
/// // A pool of at most 2 "connections", numbered as they are made.
/// let made = Rc::new(Cell::new(0));
/// let m = made.clone();
/// let pool = Pool::new(0, 2, move || {
///     m.set(m.get() + 1);
///     format!("conn{}", m.get())
/// });
/// let workers: Vec<_> = (0..6)
///     .map(|_| {
///         let pool = pool.clone();
///         eventlet::spawn(move || {
///             let conn = pool.get(); // waits while both are out
///             eventlet::sleep(Duration::from_millis(1));
///             conn.len()
///         })
///     })
///     .collect();
/// for w in workers {
///     assert_eq!(w.join().unwrap(), 5);
/// }
/// assert_eq!(made.get(), 2, "the two connections were reused");
/// assert_eq!((pool.len(), pool.free(), pool.waiting()), (2, 2, 0));
/// ```
///
/// A pool stays on its OS thread:
///
/// ```compile_fail
/// let pool = eventlet::pools::Pool::new(0, 1, || 1);
/// std::thread::spawn(move || drop(pool.get()));
/// ```
pub struct Pool<T> {
    shared: Rc<Shared<T, Infallible>>,
}

impl<T> Pool<T> {
    /// A pool of at most `max_size` items made by `create`, `min_size` of
    /// them made now.
    ///
    /// # Panics
    ///
    /// Panics if `min_size > max_size`.
    pub fn new(min_size: usize, max_size: usize, create: impl Fn() -> T + 'static) -> Pool<T> {
        Pool { shared: infallible(Shared::new(min_size, max_size, Box::new(move || Ok(create())))) }
    }

    /// Takes an item: a free one, else a new one if fewer than `max_size`
    /// exist, else blocks the calling green thread (or the root) until one
    /// is given back. Waiters are served in arrival order.
    pub fn get(&self) -> PoolGuard<T> {
        match infallible(self.shared.get(None)) {
            Some(g) => g,
            None => unreachable!("an untimed pool wait returned without an item"),
        }
    }

    /// Takes an item if one is free or can be made now and nobody is
    /// waiting for one.
    pub fn try_get(&self) -> Option<PoolGuard<T>> {
        infallible(self.shared.try_get())
    }

    /// Like [`get`](Self::get), waiting at most `timeout`; `None` if it
    /// timed out.
    pub fn get_timeout(&self, timeout: Duration) -> Option<PoolGuard<T>> {
        infallible(self.shared.get(deadline_after(timeout)))
    }

    /// Items that can be taken now without waiting: free ones plus those
    /// that may still be made (eventlet's `free()`).
    pub fn free(&self) -> usize {
        self.shared.free()
    }

    /// Green threads (or the root) waiting for an item.
    pub fn waiting(&self) -> usize {
        self.shared.slots.waiters.len()
    }

    /// Items that exist (free, out, or being made); eventlet's
    /// `current_size`.
    pub fn len(&self) -> usize {
        self.shared.slots.size.get()
    }

    /// Whether no item exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items that may exist at once.
    pub fn max_size(&self) -> usize {
        self.shared.slots.max.get()
    }

    /// Changes [`max_size`](Self::max_size) (eventlet's `resize`). Growing
    /// lets waiting green threads make new items at once, oldest first.
    /// Shrinking drops free items beyond the new size now (the ones given
    /// back longest ago first, their destructors running here); items out
    /// are dropped when they come back while the pool still holds more
    /// than `max_size`.
    ///
    /// ```
    /// let pool = eventlet::pools::Pool::new(0, 2, || ());
    /// let (a, b) = (pool.get(), pool.get());
    /// assert_eq!(pool.free(), 0);
    /// pool.resize(1);
    /// drop((a, b)); // one of them is dropped, not kept
    /// assert_eq!((pool.len(), pool.free()), (1, 1));
    /// pool.resize(2);
    /// assert_eq!(pool.free(), 2);
    /// ```
    pub fn resize(&self, max_size: usize) {
        self.shared.slots.resize(max_size);
    }

    /// Hands out the free item given back most recently first (a stack),
    /// instead of the one given back longest ago (eventlet's
    /// `order_as_stack=True`): the same few items are reused while the
    /// others idle. Applies to every handle of the pool.
    ///
    /// ```
    /// let pool = eventlet::pools::Pool::new(0, 3, {
    ///     let n = std::cell::Cell::new(0);
    ///     move || {
    ///         n.set(n.get() + 1);
    ///         n.get()
    ///     }
    /// })
    /// .order_as_stack();
    /// let (one, two) = (pool.get(), pool.get());
    /// drop(one);
    /// drop(two);
    /// assert_eq!(*pool.get(), 2, "the last one given back");
    /// ```
    pub fn order_as_stack(self) -> Pool<T> {
        self.shared.slots.stack.set(true);
        self
    }
}

impl<T> Clone for Pool<T> {
    fn clone(&self) -> Pool<T> {
        Pool { shared: self.shared.clone() }
    }
}

impl<T> fmt::Debug for Pool<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("len", &self.len())
            .field("free", &self.free())
            .field("max_size", &self.max_size())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// A [`Pool`] whose create function can fail, such as a pool of
/// connections that reports connect errors. Only the green thread that
/// makes a new item sees the error; the place it would have taken goes to
/// the next waiter.
///
/// # Examples
///
/// ```
/// use std::cell::Cell;
/// use std::rc::Rc;
/// use eventlet::pools::TryPool;
///
/// let up = Rc::new(Cell::new(false));
/// let u = up.clone();
/// let pool = TryPool::new(0, 1, move || if u.get() { Ok("conn") } else { Err("connection refused") })?;
/// assert_eq!(pool.get().unwrap_err(), "connection refused");
/// assert_eq!(pool.len(), 0, "the failed attempt took no place");
/// up.set(true);
/// assert_eq!(*pool.get()?, "conn");
/// # Ok::<(), &str>(())
/// ```
pub struct TryPool<T, E> {
    shared: Rc<Shared<T, E>>,
}

impl<T, E> TryPool<T, E> {
    /// A pool of at most `max_size` items made by `create`, `min_size` of
    /// them made now.
    ///
    /// # Errors
    ///
    /// The first error of `create` while making the first `min_size` items
    /// (those made already are dropped).
    ///
    /// # Panics
    ///
    /// Panics if `min_size > max_size`.
    pub fn new(
        min_size: usize,
        max_size: usize,
        create: impl Fn() -> Result<T, E> + 'static,
    ) -> Result<TryPool<T, E>, E> {
        Ok(TryPool { shared: Shared::new(min_size, max_size, Box::new(create))? })
    }

    /// Takes an item as [`Pool::get`] does.
    ///
    /// # Errors
    ///
    /// The error of `create` if a new item had to be made and could not be.
    pub fn get(&self) -> Result<PoolGuard<T>, E> {
        match self.shared.get(None)? {
            Some(g) => Ok(g),
            None => unreachable!("an untimed pool wait returned without an item"),
        }
    }

    /// Takes an item if one is free or can be made now and nobody is
    /// waiting; `Ok(None)` if not.
    ///
    /// # Errors
    ///
    /// The error of `create` if a new item had to be made and could not be.
    pub fn try_get(&self) -> Result<Option<PoolGuard<T>>, E> {
        self.shared.try_get()
    }

    /// Like [`get`](Self::get), waiting at most `timeout`; `Ok(None)` if it
    /// timed out.
    ///
    /// # Errors
    ///
    /// The error of `create` if a new item had to be made and could not be.
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<PoolGuard<T>>, E> {
        self.shared.get(deadline_after(timeout))
    }

    /// As [`Pool::free`].
    pub fn free(&self) -> usize {
        self.shared.free()
    }

    /// As [`Pool::waiting`].
    pub fn waiting(&self) -> usize {
        self.shared.slots.waiters.len()
    }

    /// As [`Pool::len`].
    pub fn len(&self) -> usize {
        self.shared.slots.size.get()
    }

    /// Whether no item exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most items that may exist at once.
    pub fn max_size(&self) -> usize {
        self.shared.slots.max.get()
    }

    /// As [`Pool::resize`].
    pub fn resize(&self, max_size: usize) {
        self.shared.slots.resize(max_size);
    }

    /// As [`Pool::order_as_stack`].
    pub fn order_as_stack(self) -> TryPool<T, E> {
        self.shared.slots.stack.set(true);
        self
    }
}

impl<T, E> Clone for TryPool<T, E> {
    fn clone(&self) -> TryPool<T, E> {
        TryPool { shared: self.shared.clone() }
    }
}

impl<T, E> fmt::Debug for TryPool<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TryPool")
            .field("len", &self.len())
            .field("free", &self.free())
            .field("max_size", &self.max_size())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// An item taken from a [`Pool`] or [`TryPool`]; gives it back when
/// dropped (to the longest waiter, if any).
#[must_use = "the item goes back to the pool at once if the guard is not kept"]
pub struct PoolGuard<T> {
    /// `None` only while the guard is being consumed.
    item: Option<T>,
    slots: Rc<Slots<T>>,
}

impl<T> PoolGuard<T> {
    /// Throws the item away instead of giving it back (a broken
    /// connection): its place is freed, and the longest waiter, or the
    /// next `get`, makes a new item.
    pub fn discard(self) {
        drop(self.into_inner());
    }

    /// Takes the item out of the pool for good; its place is freed as with
    /// [`discard`](Self::discard).
    pub fn into_inner(mut self) -> T {
        let item = self.item.take();
        self.slots.free_place();
        match item {
            Some(item) => item,
            None => unreachable!("a pool guard lost its item"),
        }
    }
}

impl<T> Deref for PoolGuard<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.item {
            Some(item) => item,
            None => unreachable!("a pool guard lost its item"),
        }
    }
}

impl<T> DerefMut for PoolGuard<T> {
    fn deref_mut(&mut self) -> &mut T {
        match &mut self.item {
            Some(item) => item,
            None => unreachable!("a pool guard lost its item"),
        }
    }
}

impl<T> Drop for PoolGuard<T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.slots.give_back(item);
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PoolGuard<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PoolGuard").field(&**self).finish()
    }
}
