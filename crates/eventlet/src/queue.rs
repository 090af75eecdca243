//! Queues between green threads (eventlet's `queue` module): [`Queue`]
//! (first in, first out), [`LifoQueue`] (last in, first out) and
//! [`PriorityQueue`] (smallest first).
//!
//! Each is unbounded ([`Queue::new`]), bounded ([`Queue::bounded`]: `put`
//! blocks while it is full) or, with a capacity of 0, a *rendezvous*
//! (eventlet's `Queue(0)` channel): every `put` waits until a `get` takes
//! its item. Every blocking call comes in three forms, `x`, `try_x` and
//! `x_timeout`, and a failed put hands the item back in its error.
//! [`resize`](Queue::resize) changes the capacity of a live queue.
//!
//! Waiting getters and waiting putters are served first come, first
//! served, and items move directly: a put with getters waiting hands its
//! item to the longest-waiting getter, and a get from a full queue lets the
//! longest-waiting putter's item in. Nobody who arrives later can take
//! what was handed on.
//!
//! # A rendezvous switches as eventlet's channel does
//!
//! On a rendezvous the green threads that meet take turns in eventlet's
//! order:
//!
//! - a `put` (blocking or timed) always waits until a getter has *taken*
//!   its item: with a getter waiting, the getter runs first, takes the
//!   item and goes on until it blocks, and only then does the put return;
//! - a `get` that finds a putter waiting takes its item and goes on
//!   first; the putter's `put` returns when the getter next blocks;
//! - [`try_put`](Queue::try_put) that hands its item to a waiting getter,
//!   and [`try_get`](Queue::try_get) that takes a waiting putter's item,
//!   let that getter (or putter) run before they return, as eventlet's
//!   `put_nowait` and `get_nowait` switch to it.
//!
//! So ten puts to ten waiting getters each return after their getter ran,
//! and a green thread that loops on `get` sees each item before its putter
//! gets past the put (eventlet's `test_channel_send` and
//! `test_channel_wait`, in `tests/coordination.rs`). Buffered queues do
//! not switch on a put or get that need not wait.
//!
//! [`close`](Queue::close) ends a queue: puts fail with the item handed
//! back, and gets take what is left, then fail. [`task_done`](Queue::task_done)
//! and [`join`](Queue::join) count work as Python's `queue.Queue` does.
//!
//! An item handed to a waiting getter that is killed before it wakes goes
//! back to the head of the queue (or to the next waiting getter), even
//! past the capacity, so no item is lost.
//!
//! # Differences from eventlet
//!
//! `Queue::bounded(0)` is eventlet's `Queue(0)` channel (in Python's
//! `queue` module a size of 0 means unbounded; here that is
//! [`Queue::new`]). Waiters are served in arrival order (eventlet wakes
//! them in no defined order). eventlet's `get_nowait` takes a waiting
//! putter's item only when called from its hub's own greenlet (from any
//! other it raises `Empty`); here no code of yours runs in the hub's
//! loop, so `try_get` does what eventlet's hub-greenlet call does, from
//! any green thread or the root: it takes the item and lets the putter
//! run first. `close` is new (like Python 3.13's `shutdown`).

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::pin::pin;
use std::rc::Rc;
use std::time::{Duration, Instant};

use crate::time::{deadline_after, expired};
use crate::waitlist::{Status, Wait, WaitList};

/// How many items a store holds (apart from [`Store`], which for a heap
/// needs `T: Ord`).
trait Items {
    fn len(&self) -> usize;
}

/// How the items of a queue are kept: the only thing that differs between
/// [`Queue`], [`LifoQueue`] and [`PriorityQueue`].
trait Store<T>: Items {
    fn new() -> Self;
    /// Adds a newly put item.
    fn push(&mut self, item: T);
    /// Takes the next item to get.
    fn pop(&mut self) -> Option<T>;
    /// Puts back an item just taken with `pop`, so that it is next again.
    fn unpop(&mut self, item: T);
}

struct Fifo<T>(VecDeque<T>);

impl<T> Items for Fifo<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Store<T> for Fifo<T> {
    fn new() -> Self {
        Fifo(VecDeque::new())
    }
    fn push(&mut self, item: T) {
        self.0.push_back(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn unpop(&mut self, item: T) {
        self.0.push_front(item);
    }
}

struct Lifo<T>(Vec<T>);

impl<T> Items for Lifo<T> {
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Store<T> for Lifo<T> {
    fn new() -> Self {
        Lifo(Vec::new())
    }
    fn push(&mut self, item: T) {
        self.0.push(item);
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn unpop(&mut self, item: T) {
        self.0.push(item);
    }
}

/// A min-heap; equal items come out in the order they were put (the
/// sequence number breaks ties), which Python's `heapq` does not promise.
struct Heap<T> {
    heap: BinaryHeap<Reverse<(T, i64)>>,
    /// Next sequence number for `push` (counting up).
    back: i64,
    /// Next sequence number for `unpop` (counting down, so ahead of all).
    front: i64,
}

impl<T> Items for Heap<T> {
    fn len(&self) -> usize {
        self.heap.len()
    }
}

impl<T: Ord> Store<T> for Heap<T> {
    fn new() -> Self {
        Heap { heap: BinaryHeap::new(), back: 0, front: -1 }
    }
    fn push(&mut self, item: T) {
        self.heap.push(Reverse((item, self.back)));
        self.back += 1;
    }
    fn pop(&mut self) -> Option<T> {
        self.heap.pop().map(|Reverse((item, _))| item)
    }
    fn unpop(&mut self, item: T) {
        self.heap.push(Reverse((item, self.front)));
        self.front -= 1;
    }
}

/// The state every handle of one queue shares.
struct Shared<T, S> {
    store: RefCell<S>,
    /// `None`: unbounded. `Some(0)`: rendezvous.
    capacity: Cell<Option<usize>>,
    /// [`CLOSED`] and [`RENDEZVOUS`]: one load tells a put that neither
    /// applies.
    flags: Cell<u8>,
    /// Waiting getters; an item handed to one travels in its slot (a
    /// getter granted with an empty slot was *called*: see `called`).
    /// Invariant: empty unless the store is empty; on a rendezvous, empty
    /// unless every waiting putter has a called getter coming.
    getters: WaitList<T>,
    /// Waiting putters, each with its item in its slot. Invariant: empty
    /// unless the store is full.
    putters: WaitList<T>,
    /// On a rendezvous: getters woken to come and take a waiting putter's
    /// item that have not run yet. As many putters are spoken for: a
    /// newcomer's get takes a putter's item only if more putters wait.
    called: Cell<usize>,
    /// Items put and not yet marked done with `task_done`.
    unfinished: Cell<usize>,
    joiners: WaitList<()>,
}

/// In [`Shared::flags`]: the queue is closed.
const CLOSED: u8 = 1;
/// In [`Shared::flags`]: the capacity is 0.
const RENDEZVOUS: u8 = 2;

/// Why a put failed; the item is handed back.
enum PutFail<T> {
    Full(T),
    Closed(T),
}

/// Why a get failed.
enum GetFail {
    Empty,
    Closed,
}

impl<T, S: Items> Shared<T, S> {
    fn len(&self) -> usize {
        self.store.borrow().len()
    }

    fn has_room(&self) -> bool {
        self.capacity.get().is_none_or(|c| self.len() < c)
    }

    fn is_rendezvous(&self) -> bool {
        self.flags.get() & RENDEZVOUS != 0
    }

    fn is_closed(&self) -> bool {
        self.flags.get() & CLOSED != 0
    }
}

/// Where a get that did not wait found its item.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Got {
    /// In the store.
    Stored,
    /// In a waiting putter's slot (a rendezvous): the putter is granted.
    FromPutter,
}

/// How a put that did not wait went.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Put {
    /// Into the store.
    Stored,
    /// Straight to a waiting getter.
    Handed,
}

impl<T, S: Store<T>> Shared<T, S> {
    fn new(capacity: Option<usize>) -> Rc<Shared<T, S>> {
        Rc::new(Shared {
            store: RefCell::new(S::new()),
            capacity: Cell::new(capacity),
            flags: Cell::new(if capacity == Some(0) { RENDEZVOUS } else { 0 }),
            getters: WaitList::new(),
            putters: WaitList::new(),
            called: Cell::new(0),
            unfinished: Cell::new(0),
            joiners: WaitList::new(),
        })
    }

    fn accepted(&self) {
        self.unfinished.set(self.unfinished.get() + 1);
    }

    /// Puts `item` without waiting if that can be done now. With `hand`
    /// false, a rendezvous does not hand the item to a waiting getter
    /// (the put calls the getter instead, see `put_rendezvous`).
    #[inline(always)]
    fn try_put(&self, item: T, hand: bool) -> Result<Put, PutFail<T>> {
        if self.flags.get() != 0 {
            if self.is_closed() {
                return Err(PutFail::Closed(item));
            }
            if !hand && !self.getters.is_empty() {
                // A rendezvous: the getter is called instead.
                return Err(PutFail::Full(item));
            }
        }
        if let Some(g) = self.getters.pop_front() {
            self.accepted();
            g.grant_with(item);
            Ok(Put::Handed)
        } else if self.putters.is_empty() && self.has_room() {
            self.accepted();
            self.store.borrow_mut().push(item);
            Ok(Put::Stored)
        } else {
            Err(PutFail::Full(item))
        }
    }

    /// Puts `item`, waiting in line until `deadline` (forever if `None`).
    fn put(&self, item: T, deadline: Option<Instant>) -> Result<(), PutFail<T>> {
        let item = match self.try_put(item, false) {
            Err(PutFail::Full(item)) => item,
            done => return done.map(drop),
        };
        if self.is_rendezvous() {
            return self.put_rendezvous(item, deadline);
        }
        if expired(deadline) {
            return Err(PutFail::Full(item));
        }
        // Granted means the item was taken in: the put is done even if
        // the putter is killed before it wakes.
        let wait = pin!(Wait::new(&self.putters, Some(item), |_, _| {}));
        let wait = wait.enqueue();
        match wait.park(deadline) {
            Status::Granted => Ok(()),
            Status::Closed => Err(PutFail::Closed(Self::item_of(wait.waiter().take_value()))),
            _ => Err(PutFail::Full(Self::item_of(wait.waiter().take_value()))),
        }
    }

    /// A put on a rendezvous: the item waits in the putter's slot, and a
    /// waiting getter is called to come and take it. The getter runs
    /// first; the put returns once the item is taken (granted), which wins
    /// over a deadline that passes meanwhile.
    #[cold]
    fn put_rendezvous(&self, item: T, deadline: Option<Instant>) -> Result<(), PutFail<T>> {
        if expired(deadline) && (self.getters.is_empty() || self.putters.len() > self.called.get()) {
            // Nobody can be called to take it now.
            return Err(PutFail::Full(item));
        }
        // A putter that leaves untaken (timed out, killed) may leave a
        // called getter with nothing to take: that getter waits again.
        let wait = pin!(Wait::new(&self.putters, Some(item), |_, _| {}));
        let wait = wait.enqueue();
        self.call_getters();
        match wait.park(deadline) {
            Status::Granted => Ok(()),
            Status::Closed => Err(PutFail::Closed(Self::item_of(wait.waiter().take_value()))),
            _ => Err(PutFail::Full(Self::item_of(wait.waiter().take_value()))),
        }
    }

    /// On a rendezvous, wakes a waiting getter for each waiting putter
    /// that has none coming, oldest first.
    fn call_getters(&self) {
        while self.putters.len() > self.called.get() {
            let Some(g) = self.getters.pop_front() else { break };
            self.called.set(self.called.get() + 1);
            g.grant();
        }
    }

    /// The item a waiting putter came with (or a granted getter was handed).
    fn item_of(value: Option<T>) -> T {
        match value {
            Some(item) => item,
            None => unreachable!("a queue waiter lost its item"),
        }
    }

    /// Gets an item without waiting if one can be had now.
    fn try_get(&self) -> Result<(T, Got), GetFail> {
        let popped = self.store.borrow_mut().pop();
        if let Some(item) = popped {
            // Room now: let the longest-waiting putters in.
            while self.has_room() {
                let Some(p) = self.putters.pop_front() else { break };
                let next = Self::item_of(p.take_value());
                self.accepted();
                self.store.borrow_mut().push(next);
                p.grant();
            }
            return Ok((item, Got::Stored));
        }
        // Empty: a putter waits only on a rendezvous (or one resized
        // down).
        if !self.putters.is_empty() {
            if let Some(item) = self.take_from_putter() {
                return Ok((item, Got::FromPutter));
            }
        }
        if self.is_closed() {
            Err(GetFail::Closed)
        } else {
            Err(GetFail::Empty)
        }
    }

    /// Takes the item of the longest-waiting putter and grants it, unless
    /// every waiting putter is spoken for by a called getter.
    #[cold]
    fn take_from_putter(&self) -> Option<T> {
        if self.putters.len() <= self.called.get() {
            return None;
        }
        let p = self.putters.pop_front()?;
        let item = Self::item_of(p.take_value());
        self.accepted();
        p.grant();
        Some(item)
    }

    /// Gets an item, waiting in line until `deadline` (forever if `None`).
    #[inline(always)]
    fn get(&self, deadline: Option<Instant>) -> Result<T, GetFail> {
        loop {
            match self.try_get() {
                Err(GetFail::Empty) if !expired(deadline) => {}
                done => return done.map(|(item, _)| item),
            }
            let wait = pin!(Wait::new(&self.getters, None, |status, w| {
                if status == Status::Granted {
                    match w.take_value() {
                        // Killed between the hand-over and its wake-up.
                        Some(item) => self.unget(item),
                        // Called to a putter, and killed before it came.
                        None => self.uncall(),
                    }
                }
            }));
            let wait = wait.enqueue();
            match wait.park(deadline) {
                Status::Granted => match wait.waiter().take_value() {
                    Some(item) => return Ok(item),
                    // Called to take a waiting putter's item: take it (or,
                    // if that putter left meanwhile, wait again).
                    None => self.called.set(self.called.get() - 1),
                },
                Status::Closed => return Err(GetFail::Closed),
                _ => return Err(GetFail::Empty),
            }
        }
    }

    /// A called getter leaves without taking anything: the call passes to
    /// the next getter.
    fn uncall(&self) {
        self.called.set(self.called.get() - 1);
        // Its putter's item may be in the store already (let in by a
        // resize): it goes to the next waiting getter.
        self.hand_stored();
        self.call_getters();
    }

    /// Hands the stored items that no called getter is coming for to
    /// waiting getters, oldest first.
    fn hand_stored(&self) {
        while self.len() > self.called.get() {
            let Some(g) = self.getters.pop_front() else { break };
            let popped = self.store.borrow_mut().pop();
            match popped {
                Some(item) => g.grant_with(item),
                None => unreachable!("a queue's store emptied while it was counted"),
            }
        }
    }

    /// Puts back an item handed to a getter that never took it.
    fn unget(&self, item: T) {
        match self.getters.pop_front() {
            Some(g) => g.grant_with(item),
            None => self.store.borrow_mut().unpop(item),
        }
    }

    /// Sets the capacity; room made lets waiting putters in, oldest
    /// first, and their items go on to waiting getters.
    fn resize(&self, capacity: Option<usize>) {
        self.capacity.set(capacity);
        let flags = self.flags.get() & !RENDEZVOUS;
        self.flags.set(if capacity == Some(0) { flags | RENDEZVOUS } else { flags });
        while self.has_room() {
            let Some(p) = self.putters.pop_front() else { break };
            let next = Self::item_of(p.take_value());
            self.accepted();
            self.store.borrow_mut().push(next);
            p.grant();
        }
        // Getters called to putters just let in find their items in the
        // store; the other waiting getters are handed the rest.
        self.hand_stored();
        self.call_getters();
    }

    fn close(&self) {
        self.flags.set(self.flags.get() | CLOSED);
        self.getters.close_all();
        self.putters.close_all();
    }

    fn task_done(&self) {
        let n = self.unfinished.get();
        assert!(n > 0, "eventlet: Queue::task_done called more times than items were put");
        self.unfinished.set(n - 1);
        if n == 1 {
            self.joiners.grant_all();
        }
    }

    fn join(&self) {
        if self.unfinished.get() == 0 {
            return;
        }
        let wait = pin!(Wait::new(&self.joiners, None, |_, _| {}));
        let wait = wait.enqueue();
        wait.park(None);
    }
}

macro_rules! queue_impl {
    ($name:ident, [$($bound:tt)*], $what:literal) => {
        impl<T $($bound)*> $name<T> {
            #[doc = concat!("An unbounded ", $what, ": [`put`](Self::put) never blocks.")]
            pub fn new() -> $name<T> {
                $name { shared: Shared::new(None) }
            }

            #[doc = concat!("A ", $what, " holding at most `capacity` items: [`put`](Self::put)")]
            /// blocks while it is full. With a capacity of 0 it is a
            /// rendezvous: every put waits for a get to take its item.
            pub fn bounded(capacity: usize) -> $name<T> {
                $name { shared: Shared::new(Some(capacity)) }
            }

            /// Puts `item`, blocking the calling green thread (or the root)
            /// while the queue is full or other putters are waiting. On a
            /// rendezvous it always waits until a getter has taken the
            /// item (a waiting getter runs first).
            ///
            /// # Errors
            ///
            /// [`PutError`] with the item if the queue is closed, or gets
            /// closed while the put waits.
            pub fn put(&self, item: T) -> Result<(), PutError<T>> {
                match self.shared.put(item, None) {
                    Ok(()) => Ok(()),
                    Err(PutFail::Closed(item) | PutFail::Full(item)) => Err(PutError(item)),
                }
            }

            /// Puts `item` if that can be done now without waiting.
            ///
            /// On a rendezvous that succeeds only with a getter waiting:
            /// the item is handed to it, and the getter runs before this
            /// returns (the call yields, as eventlet's `put_nowait`
            /// switches to the getter). A kill that comes during that yield
            /// does not unwind it: the put is done, and the kill lands at
            /// the caller's next blocking call.
            ///
            /// # Errors
            ///
            /// [`TryPutError::Full`] with the item if the queue is full or
            /// other putters are waiting (on a rendezvous: if no getter is
            /// waiting); [`TryPutError::Closed`] with the item if the
            /// queue is closed.
            pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
                match self.shared.try_put(item, true) {
                    Ok(Put::Handed) if self.shared.is_rendezvous() => {
                        // The item is the getter's now: a kill that comes in
                        // this yield waits for the next blocking call.
                        crate::hub::with_hub(|h| h.yield_keeping_kill());
                        Ok(())
                    }
                    Ok(_) => Ok(()),
                    Err(PutFail::Full(item)) => Err(TryPutError::Full(item)),
                    Err(PutFail::Closed(item)) => Err(TryPutError::Closed(item)),
                }
            }

            /// Like [`put`](Self::put), waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`PutTimeoutError::Timeout`] with the item if there was no
            /// room in time; [`PutTimeoutError::Closed`] with the item if
            /// the queue is or gets closed.
            pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
                self.shared.put(item, deadline_after(timeout)).map_err(|e| match e {
                    PutFail::Full(item) => PutTimeoutError::Timeout(item),
                    PutFail::Closed(item) => PutTimeoutError::Closed(item),
                })
            }

            /// Takes the next item, blocking the calling green thread (or
            /// the root) while the queue is empty or other getters are
            /// waiting.
            ///
            /// # Errors
            ///
            /// [`GetError`] if the queue is closed and empty (or gets
            /// closed while the get waits).
            #[inline]
            pub fn get(&self) -> Result<T, GetError> {
                self.shared.get(None).map_err(|_| GetError)
            }

            /// Takes the next item if there is one now (on a rendezvous:
            /// if a putter is waiting).
            ///
            /// An item taken from a waiting putter (on a rendezvous) lets
            /// that putter run before this returns: the call yields, as
            /// eventlet's `get_nowait` switches to the putter. A kill that
            /// comes during that yield does not unwind it (the item would
            /// be lost, its put having returned `Ok`): the item is
            /// returned, and the kill lands at the caller's next blocking
            /// call.
            ///
            /// # Errors
            ///
            /// [`TryGetError::Empty`] if there is none;
            /// [`TryGetError::Closed`] if the queue is closed and empty.
            pub fn try_get(&self) -> Result<T, TryGetError> {
                match self.shared.try_get() {
                    Ok((item, Got::FromPutter)) => {
                        // The putter's item is taken (its put returns `Ok`):
                        // a kill that comes in this yield must not drop it,
                        // so it waits for the next blocking call.
                        crate::hub::with_hub(|h| h.yield_keeping_kill());
                        Ok(item)
                    }
                    Ok((item, Got::Stored)) => Ok(item),
                    Err(GetFail::Empty) => Err(TryGetError::Empty),
                    Err(GetFail::Closed) => Err(TryGetError::Closed),
                }
            }

            /// Like [`get`](Self::get), waiting at most `timeout`.
            ///
            /// # Errors
            ///
            /// [`GetTimeoutError::Timeout`] if no item came in time;
            /// [`GetTimeoutError::Closed`] if the queue is or gets closed
            /// while empty.
            pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
                self.shared.get(deadline_after(timeout)).map_err(|e| match e {
                    GetFail::Empty => GetTimeoutError::Timeout,
                    GetFail::Closed => GetTimeoutError::Closed,
                })
            }

            /// Closes the queue: puts fail from now on, waiting putters get
            /// their items back with an error, and getters take the items
            /// left, then fail. Closing twice does nothing more.
            pub fn close(&self) {
                self.shared.close();
            }

            /// Whether [`close`](Self::close) was called.
            pub fn is_closed(&self) -> bool {
                self.shared.is_closed()
            }

            /// Items in the queue (not counting those of waiting putters).
            pub fn len(&self) -> usize {
                self.shared.len()
            }

            /// Whether the queue holds no item.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }

            /// Whether a put would have to wait (always for a rendezvous,
            /// never for an unbounded queue).
            pub fn is_full(&self) -> bool {
                !self.shared.has_room()
            }

            /// The most items the queue holds; `None` if unbounded.
            pub fn capacity(&self) -> Option<usize> {
                self.shared.capacity.get()
            }

            /// Changes the capacity (`None`: unbounded, `Some(0)`: a
            /// rendezvous), as eventlet's `resize`. Growing it lets waiting
            /// putters in at once, oldest first (their items go on to
            /// waiting getters); shrinking it keeps the items already in
            /// the queue, and puts wait until there is room under the new
            /// capacity.
            ///
            /// # Examples
            ///
            /// ```
            /// let q = eventlet::Queue::bounded(0);
            /// let q2 = q.clone();
            /// let putter = eventlet::spawn(move || q2.put("hi"));
            /// eventlet::yield_now(); // the put waits: nobody gets
            /// assert_eq!(q.putting(), 1);
            /// q.resize(Some(1));
            /// assert_eq!((q.len(), q.putting()), (1, 0), "the item went in");
            /// putter.join().unwrap().unwrap();
            /// assert_eq!(q.get(), Ok("hi"));
            /// ```
            pub fn resize(&self, capacity: Option<usize>) {
                self.shared.resize(capacity);
            }

            /// Green threads (or the root) blocked in a get (eventlet's
            /// `getting`).
            pub fn getting(&self) -> usize {
                self.shared.getters.len()
            }

            /// Green threads (or the root) blocked in a put (eventlet's
            /// `putting`).
            pub fn putting(&self) -> usize {
                self.shared.putters.len()
            }

            /// Marks one item taken from the queue as processed; when every
            /// item put so far is, [`join`](Self::join) returns.
            ///
            /// # Panics
            ///
            /// Panics if called more times than items were put (Python
            /// raises `ValueError`).
            pub fn task_done(&self) {
                self.shared.task_done();
            }

            /// Blocks until every item put so far has been marked with
            /// [`task_done`](Self::task_done).
            pub fn join(&self) {
                self.shared.join();
            }

            /// Items put and not yet marked with [`task_done`](Self::task_done).
            pub fn unfinished_tasks(&self) -> usize {
                self.shared.unfinished.get()
            }
        }

        impl<T $($bound)*> Default for $name<T> {
            #[doc = concat!("An unbounded ", $what, ".")]
            fn default() -> $name<T> {
                $name::new()
            }
        }

        impl<T> Clone for $name<T> {
            /// Another handle to the same queue.
            fn clone(&self) -> $name<T> {
                $name { shared: self.shared.clone() }
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("len", &self.shared.len())
                    .field("capacity", &self.shared.capacity.get())
                    .field("closed", &self.shared.is_closed())
                    .field("getting", &self.shared.getters.len())
                    .field("putting", &self.shared.putters.len())
                    .finish()
            }
        }
    };
}

/// A first-in, first-out queue between green threads (eventlet's
/// `Queue`): unbounded, bounded, or a rendezvous (capacity 0).
///
/// Cloning a `Queue` gives another handle to the same queue. It belongs to
/// one OS thread (it is not `Send`), like its green threads.
///
/// # Examples
///
/// ```
/// use eventlet::Queue;
///
/// let q = Queue::bounded(2);
/// let tx = q.clone();
/// let producer = eventlet::spawn(move || {
///     for i in 0..5 {
///         tx.put(i).unwrap(); // blocks while two items wait
///     }
///     tx.close();
/// });
/// let mut got = Vec::new();
/// while let Ok(i) = q.get() {
///     got.push(i);
/// }
/// producer.join().unwrap();
/// assert_eq!(got, [0, 1, 2, 3, 4]);
/// ```
///
/// A queue handle stays on its OS thread:
///
/// ```compile_fail
/// let q = eventlet::Queue::new();
/// std::thread::spawn(move || q.put(1));
/// ```
pub struct Queue<T> {
    shared: Rc<Shared<T, Fifo<T>>>,
}

queue_impl!(Queue, [], "first-in, first-out queue");

/// A last-in, first-out queue between green threads (eventlet's
/// `LifoQueue`): a stack. Otherwise like [`Queue`].
///
/// # Examples
///
/// ```
/// use eventlet::LifoQueue;
///
/// let q = LifoQueue::new();
/// for i in 0..3 {
///     q.put(i).unwrap();
/// }
/// assert_eq!(q.get(), Ok(2));
/// assert_eq!(q.get(), Ok(1));
/// q.put(9).unwrap();
/// assert_eq!(q.get(), Ok(9));
/// assert_eq!(q.get(), Ok(0));
/// ```
pub struct LifoQueue<T> {
    shared: Rc<Shared<T, Lifo<T>>>,
}

queue_impl!(LifoQueue, [], "last-in, first-out queue");

/// A queue between green threads that hands out the smallest item first
/// (eventlet's `PriorityQueue`, Python's `heapq` order). Otherwise like
/// [`Queue`].
///
/// Equal items come out in the order they were put, which Python does not
/// promise. Put `(priority, item)` pairs to order items by a key, or wrap
/// in [`Reverse`] for largest first.
///
/// # Examples
///
/// ```
/// use eventlet::PriorityQueue;
///
/// let q = PriorityQueue::new();
/// for job in [(3, "low"), (1, "urgent"), (2, "normal"), (1, "also urgent")] {
///     q.put(job).unwrap();
/// }
/// let order: Vec<_> = std::iter::from_fn(|| q.try_get().ok()).map(|(_, name)| name).collect();
/// assert_eq!(order, ["also urgent", "urgent", "normal", "low"]);
/// ```
pub struct PriorityQueue<T> {
    shared: Rc<Shared<T, Heap<T>>>,
}

queue_impl!(PriorityQueue, [: Ord], "priority queue");

/// The error of [`Queue::put`]: the queue is closed. Holds the item that
/// was not put.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PutError<T>(pub T);

impl<T> PutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PutError(..)")
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("putting on a closed queue")
    }
}

impl<T> std::error::Error for PutError<T> {}

/// The error of [`Queue::try_put`]; holds the item that was not put.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TryPutError<T> {
    /// The queue is full (or others are waiting to put).
    Full(T),
    /// The queue is closed.
    Closed(T),
}

impl<T> TryPutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            TryPutError::Full(item) | TryPutError::Closed(item) => item,
        }
    }

    /// Whether the queue was full.
    pub fn is_full(&self) -> bool {
        matches!(self, TryPutError::Full(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, TryPutError::Closed(_))
    }
}

impl<T> From<PutError<T>> for TryPutError<T> {
    fn from(e: PutError<T>) -> TryPutError<T> {
        TryPutError::Closed(e.0)
    }
}

impl<T> fmt::Debug for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("Full(..)"),
            TryPutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for TryPutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryPutError::Full(_) => f.write_str("putting on a full queue"),
            TryPutError::Closed(_) => f.write_str("putting on a closed queue"),
        }
    }
}

impl<T> std::error::Error for TryPutError<T> {}

/// The error of [`Queue::put_timeout`]; holds the item that was not put.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum PutTimeoutError<T> {
    /// There was no room before the timeout.
    Timeout(T),
    /// The queue is closed.
    Closed(T),
}

impl<T> PutTimeoutError<T> {
    /// The item that was not put.
    pub fn into_inner(self) -> T {
        match self {
            PutTimeoutError::Timeout(item) | PutTimeoutError::Closed(item) => item,
        }
    }

    /// Whether the put timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PutTimeoutError::Timeout(_))
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self, PutTimeoutError::Closed(_))
    }
}

impl<T> From<PutError<T>> for PutTimeoutError<T> {
    fn from(e: PutError<T>) -> PutTimeoutError<T> {
        PutTimeoutError::Closed(e.0)
    }
}

impl<T> fmt::Debug for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("Timeout(..)"),
            PutTimeoutError::Closed(_) => f.write_str("Closed(..)"),
        }
    }
}

impl<T> fmt::Display for PutTimeoutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PutTimeoutError::Timeout(_) => f.write_str("timed out putting on a full queue"),
            PutTimeoutError::Closed(_) => f.write_str("putting on a closed queue"),
        }
    }
}

impl<T> std::error::Error for PutTimeoutError<T> {}

/// The error of [`Queue::get`]: the queue is closed and empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GetError;

impl fmt::Display for GetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("getting from a closed and empty queue")
    }
}

impl std::error::Error for GetError {}

/// The error of [`Queue::try_get`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryGetError {
    /// The queue is empty (or others are waiting to get).
    Empty,
    /// The queue is closed and empty.
    Closed,
}

impl TryGetError {
    /// Whether the queue was empty but open.
    pub fn is_empty(&self) -> bool {
        *self == TryGetError::Empty
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        *self == TryGetError::Closed
    }
}

impl From<GetError> for TryGetError {
    fn from(_: GetError) -> TryGetError {
        TryGetError::Closed
    }
}

impl fmt::Display for TryGetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TryGetError::Empty => f.write_str("getting from an empty queue"),
            TryGetError::Closed => f.write_str("getting from a closed and empty queue"),
        }
    }
}

impl std::error::Error for TryGetError {}

/// The error of [`Queue::get_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetTimeoutError {
    /// No item came before the timeout.
    Timeout,
    /// The queue is closed and empty.
    Closed,
}

impl GetTimeoutError {
    /// Whether the get timed out.
    pub fn is_timeout(&self) -> bool {
        *self == GetTimeoutError::Timeout
    }

    /// Whether the queue was closed.
    pub fn is_closed(&self) -> bool {
        *self == GetTimeoutError::Closed
    }
}

impl From<GetError> for GetTimeoutError {
    fn from(_: GetError) -> GetTimeoutError {
        GetTimeoutError::Closed
    }
}

impl fmt::Display for GetTimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GetTimeoutError::Timeout => f.write_str("timed out getting from an empty queue"),
            GetTimeoutError::Closed => f.write_str("getting from a closed and empty queue"),
        }
    }
}

impl std::error::Error for GetTimeoutError {}
