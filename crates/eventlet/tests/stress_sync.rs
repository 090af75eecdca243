//! A randomized stress test of the synchronization primitives and pools on
//! one hub: many green threads take and release an `RwLock`, wait on a
//! `Condvar`, an `Event`, a `BoundedSemaphore` and a `CappedSemaphore`,
//! pass items through a `Queue` (resized between unbounded, bounded and a
//! rendezvous), a `LifoQueue` and a `PriorityQueue` (some closed under
//! their waiters), spawn into a `GreenPool` (`spawn`, `spawn_n`, `imap`,
//! `waitall`, `resize`) and through `GreenPile`s, borrow from a
//! `pools::Pool` and a failing `pools::TryPool`, run small `DAGPool`
//! graphs, call `tpool::execute`, and spawn, `spawn_after`,
//! `spawn_after_local`, `link`, `unlink`, `cancel`, kill and join each
//! other, under random `with_timeout` expiries, yields and panics, in
//! interleavings chosen by a seeded generator, for a bounded time.
//!
//! While it runs, a monitor green thread checks at every turn what a lost
//! wake-up or a double grant breaks at once: nobody waits for a primitive
//! that could let them in now (a semaphore with units free, an unheld
//! lock, a queue with items for its getters or room for its putters, a
//! sent event, a pool with items free); an `RwLock` never has a writer
//! together with anyone; no more permits, pool items or pool green threads
//! are out than there may be. When nothing is ready to run, it also
//! checks that no `Condvar` waiter sleeps while a token is there to take.
//! At the end:
//!
//! - every permit and pool item came back, and counts add up;
//! - every item put was got exactly once, or is still in its queue, and
//!   no item whose put failed was got;
//! - every linked callback ran exactly once unless unlinked (then never);
//!   a green thread that `cancel` stopped never started;
//! - every value a green thread owned was dropped exactly once, including
//!   results left on the thread pool by a killed caller;
//! - the hub holds no green thread, timer or waiter.
//!
//! A wait nobody ends would hang: a watchdog thread then prints the seed
//! and aborts. `EVENTLET_STRESS_SEED` replays a seed (the test prints the
//! one it used); `EVENTLET_STRESS_SECS` sets how long it runs (default
//! 3 s).

mod util;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlet::dagpool::DAGPool;
use eventlet::pools::{Pool, TryPool};
use eventlet::{
    BoundedSemaphore, CappedSemaphore, Condvar, Event, GreenPile, GreenPool, JoinHandle, LifoQueue, Lock,
    PriorityQueue, Queue, RwLock,
};
use util::ledger::{Ledger, Tracked};
use util::Rng;

eventlet::green_local! {
    static HELD: RefCell<Vec<Tracked>> = RefCell::new(Vec::new());
}

/// A queue item: ordered by its id (for the `PriorityQueue`).
struct Item {
    id: u64,
    _value: Tracked,
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        self.id == other.id
    }
}
impl Eq for Item {}
impl PartialOrd for Item {
    fn partial_cmp(&self, other: &Item) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Item {
    fn cmp(&self, other: &Item) -> std::cmp::Ordering {
        self.id.cmp(&other.id)
    }
}

/// One of the three kinds of queue.
#[derive(Clone)]
enum AnyQueue {
    Fifo(Queue<Item>),
    Lifo(LifoQueue<Item>),
    Prio(PriorityQueue<Item>),
}

/// `$body` with `$q` bound to the queue, whatever its kind.
macro_rules! each {
    ($queue:expr, $q:ident => $body:expr) => {
        match $queue {
            AnyQueue::Fifo($q) => $body,
            AnyQueue::Lifo($q) => $body,
            AnyQueue::Prio($q) => $body,
        }
    };
}

impl AnyQueue {
    fn new(kind: usize, capacity: Option<usize>) -> AnyQueue {
        let q = match kind {
            0 => AnyQueue::Fifo(Queue::new()),
            1 => AnyQueue::Lifo(LifoQueue::new()),
            _ => AnyQueue::Prio(PriorityQueue::new()),
        };
        each!(&q, q => q.resize(capacity));
        q
    }

    /// Nobody waits for what the queue could give now.
    fn check(&self) {
        each!(self, q => {
            assert!(
                q.getting() == 0 || q.is_empty(),
                "{} getters wait on a queue holding {} items: {q:?}",
                q.getting(),
                q.len()
            );
            assert!(
                q.putting() == 0 || (q.is_full() && !q.is_closed()),
                "a putter waits on a queue with room (len {}, capacity {:?}, closed {})",
                q.len(),
                q.capacity(),
                q.is_closed()
            );
        });
    }
}

/// A value made on the thread pool, counted as it is made and dropped.
struct SendTracked(Arc<(AtomicUsize, AtomicUsize)>);

impl SendTracked {
    fn new(counts: &Arc<(AtomicUsize, AtomicUsize)>) -> SendTracked {
        counts.0.fetch_add(1, Ordering::SeqCst);
        SendTracked(counts.clone())
    }
}

impl Drop for SendTracked {
    fn drop(&mut self) {
        self.0 .1.fetch_add(1, Ordering::SeqCst);
    }
}

/// Decrements a counter when dropped, however its holder leaves.
struct Out<'a>(&'a Cell<usize>);

impl<'a> Out<'a> {
    fn enter(c: &'a Cell<usize>) -> Out<'a> {
        c.set(c.get() + 1);
        Out(c)
    }
}

impl Drop for Out<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get() - 1);
    }
}

const BOUND: usize = 3;
/// How long past its end the run may take to wind down before it is
/// reported stuck.
const STUCK: Duration = Duration::from_secs(20);
const CAPPED_START: u64 = 1;
const CAPPED_LIMIT: usize = 3;
const POOL_MAX: usize = 4;
const GREEN_POOL_MAX: usize = 6;

/// A linked callback: how often it ran or was dropped unrun, and what
/// `unlink` said.
#[derive(Default, Clone, Copy)]
struct LinkState {
    ran: u32,
    dropped_unrun: u32,
    unlink_tried: bool,
    /// What `unlink` said, if it returned.
    unlinked: Option<bool>,
}

/// What the green threads share.
struct World {
    ledger: Rc<Ledger>,
    until: Instant,
    /// Set when the run is over: the monitor stops.
    done: Cell<bool>,
    rw: RwLock<u64>,
    rw_readers: Cell<usize>,
    rw_writer: Cell<usize>,
    tokens: Lock<u64>,
    cv: Condvar,
    tokens_added: Cell<u64>,
    tokens_taken: Cell<u64>,
    event: RefCell<Event<u64>>,
    event_sent: Cell<u64>,
    bsem: BoundedSemaphore,
    bsem_out: Cell<usize>,
    bsem_forgotten: Cell<usize>,
    capped: CappedSemaphore,
    capped_released: Cell<u64>,
    capped_acquired: Cell<u64>,
    /// Releases cut short by a kill: each may have released.
    capped_maybe_released: Cell<u64>,
    queues: RefCell<Vec<AnyQueue>>,
    closed_queues: RefCell<Vec<AnyQueue>>,
    next_item: Cell<u64>,
    /// What each put's caller saw: `true` for success, `false` for a
    /// failure (timed out, queue closed); a killed putter has no entry.
    put: RefCell<HashMap<u64, bool>>,
    got: RefCell<Vec<u64>>,
    gpool: GreenPool,
    gpool_in: Cell<usize>,
    pool: Pool<Tracked>,
    pool_out: Cell<usize>,
    try_pool: TryPool<Tracked, String>,
    try_pool_out: Cell<usize>,
    links: RefCell<Vec<LinkState>>,
    /// Per child spawned: whether it started, and whether `cancel` said
    /// it stopped it.
    started: RefCell<Vec<(bool, bool)>>,
    handles: RefCell<Vec<JoinHandle<Option<Tracked>>>>,
    spawned: Cell<u64>,
    /// The most green threads the workers spawn in the run.
    spawn_cap: u64,
    /// Turns of the monitor that found nothing ready to run.
    quiet_turns: Cell<u64>,
    tpool_counts: Arc<(AtomicUsize, AtomicUsize)>,
}

impl World {
    fn track(&self, rng: &mut Rng, kind: &'static str) -> Tracked {
        self.ledger.track(rng.chance(15), kind)
    }

    /// What must hold between any two switches.
    fn check(&self) {
        let (readers, writers) = (self.rw_readers.get(), self.rw_writer.get());
        assert!(writers <= 1, "{writers} writers in the RwLock at once");
        assert!(writers == 0 || readers == 0, "a writer and {readers} readers in the RwLock at once");
        assert!(readers <= self.rw.readers(), "more readers in than the RwLock counts");
        assert!(writers == 0 || self.rw.is_write_locked());
        assert!(
            self.rw.waiting() == 0 || self.rw.is_write_locked() || self.rw.readers() > 0,
            "{} wait for an RwLock nobody holds",
            self.rw.waiting()
        );
        assert!(self.tokens.waiting() == 0 || self.tokens.is_locked(), "a waiter for a free Lock");
        let ev = self.event.borrow();
        assert!(!ev.ready() || ev.waiting() == 0, "{} wait for a sent Event", ev.waiting());
        drop(ev);
        assert!(self.bsem_out.get() + self.bsem_forgotten.get() <= BOUND, "more permits out than the bound");
        assert!(self.bsem.waiting() == 0 || self.bsem.available() == 0, "a waiter while a permit is free");
        assert!(self.bsem.available() + self.bsem_out.get() + self.bsem_forgotten.get() <= BOUND);
        let c = &self.capped;
        assert!(c.available() <= c.limit());
        assert!(c.acquiring() == 0 || c.available() == 0, "an acquirer waits with units there");
        assert!(c.releasing() == 0 || c.available() == c.limit(), "a releaser waits with room there");
        assert!(self.gpool_in.get() <= GREEN_POOL_MAX, "more green threads in the pool than its largest size");
        assert!(self.gpool.waiting() == 0 || self.gpool.free() == 0, "a spawner waits with a slot free");
        assert!(self.pool_out.get() <= POOL_MAX, "more pool items out than its largest size");
        assert!(self.pool.waiting() == 0 || self.pool.free() == 0, "a waiter for a pool with items free");
        assert!(self.try_pool_out.get() <= POOL_MAX);
        assert!(self.try_pool.waiting() == 0 || self.try_pool.free() == 0, "a waiter for a pool with items free");
    }

    /// What each primitive holds, for a report of a run that got stuck.
    fn report(&self) -> String {
        let mut r = format!(
            "rw {:?} (in: {} readers, {} writers)\ntokens {:?}, {} on the condvar\nevent {:?}\nbsem {:?}\ncapped {:?}\n",
            self.rw,
            self.rw_readers.get(),
            self.rw_writer.get(),
            self.tokens,
            self.cv.waiting(),
            self.event.borrow(),
            self.bsem,
            self.capped
        );
        for q in self.queues.borrow().iter() {
            r += &each!(q, q => format!("{q:?}\n"));
        }
        r += &format!(
            "green pool {:?} (in: {})\npool: {} waiting, {} free, {} items\ntry pool: {} waiting, {} free, {} items\n",
            self.gpool,
            self.gpool_in.get(),
            self.pool.waiting(),
            self.pool.free(),
            self.pool.len(),
            self.try_pool.waiting(),
            self.try_pool.free(),
            self.try_pool.len()
        );
        r
    }

    /// What must hold when nothing is ready to run.
    fn check_quiet(&self) {
        // A getter called to a waiting putter's item may find it in the
        // store (after a resize) when it runs: only then must the store
        // be empty for getters to wait.
        for q in self.queues.borrow().iter().chain(self.closed_queues.borrow().iter()) {
            q.check();
        }
        if let Some(tokens) = self.tokens.try_lock() {
            assert!(
                *tokens == 0 || self.cv.waiting() == 0,
                "{} sleep on a Condvar with {} tokens",
                self.cv.waiting(),
                *tokens
            );
        }
    }
}

/// Whether a panic's payload is one the test plans.
fn planned(p: &(dyn std::any::Any + Send)) -> bool {
    let msg = p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(|s| s.as_str()));
    msg.is_some_and(|m| m.starts_with("a planned panic"))
}

/// Runs `f`, stopping its planned panics; any other unwinding (a kill, a
/// timeout, a real failure) goes on.
fn catch_planned(f: impl FnOnce()) {
    if let Err(p) = panic::catch_unwind(AssertUnwindSafe(f)) {
        if !planned(&*p) {
            panic::resume_unwind(p);
        }
    }
}

/// A handle from the shared pile, not the caller's own.
fn take_other(w: &World, rng: &mut Rng) -> Option<JoinHandle<Option<Tracked>>> {
    let me = eventlet::current();
    let mut hs = w.handles.borrow_mut();
    let n = hs.len() as u64;
    if n == 0 {
        return None;
    }
    let i = rng.below(n) as usize;
    (hs[i].thread() != me).then(|| hs.swap_remove(i))
}

/// Takes one token under the lock, waiting on the condition variable:
/// `how` 0 waits untimed (the end phase feeds the waiters left), 1 under
/// `with_timeout`, 2 with `wait_timeout`.
fn take_token(w: &World, how: u64, tmo: Duration) {
    let take = |t: &mut u64| {
        *t -= 1;
        w.tokens_taken.set(w.tokens_taken.get() + 1);
    };
    match how {
        0 => {
            let mut g = w.cv.wait_while(w.tokens.lock(), |t| *t == 0);
            take(&mut g);
        }
        1 => {
            let _ = eventlet::with_timeout(tmo, || {
                let mut g = w.cv.wait_while(w.tokens.lock(), |t| *t == 0);
                take(&mut g);
            });
        }
        _ => {
            let deadline = Instant::now() + tmo;
            let mut g = w.tokens.lock();
            loop {
                if *g > 0 {
                    take(&mut g);
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                g = w.cv.wait_timeout(g, left).0;
            }
        }
    }
}

fn add_token(w: &World, all: bool) {
    let mut g = w.tokens.lock();
    *g += 1;
    w.tokens_added.set(w.tokens_added.get() + 1);
    drop(g);
    if all {
        w.cv.notify_all();
    } else {
        w.cv.notify_one();
    }
}

fn queue_op(w: &World, rng: &mut Rng, tmo: Duration) {
    let i = rng.below(3) as usize;
    let q = w.queues.borrow()[i].clone();
    match rng.below(10) {
        0..=3 => {
            let id = w.next_item.get();
            w.next_item.set(id + 1);
            let item = Item { id, _value: w.track(rng, "item") };
            let ok = match rng.below(4) {
                0 => each!(&q, q => q.try_put(item).is_ok()),
                1 => each!(&q, q => q.put_timeout(item, tmo).is_ok()),
                2 => matches!(eventlet::with_timeout(tmo, || each!(&q, q => q.put(item).is_ok())), Ok(true)),
                // Untimed: the end phase closes the queue.
                _ => each!(&q, q => q.put(item).is_ok()),
            };
            w.put.borrow_mut().insert(id, ok);
        }
        4..=7 => {
            let got = match rng.below(4) {
                0 => each!(&q, q => q.try_get().ok()),
                1 => each!(&q, q => q.get_timeout(tmo).ok()),
                2 => eventlet::with_timeout(tmo, || each!(&q, q => q.get().ok())).ok().flatten(),
                _ => each!(&q, q => q.get().ok()),
            };
            if let Some(item) = got {
                w.got.borrow_mut().push(item.id);
                if rng.chance(20) {
                    HELD.with_borrow_mut(|h| h.push(item._value));
                }
            }
        }
        8 => {
            let cap = [None, Some(0), Some(1), Some(3)][rng.below(4) as usize];
            each!(&q, q => q.resize(cap));
        }
        _ if rng.chance(20) => {
            // Closed under its waiters; a fresh one takes its place.
            each!(&q, q => q.close());
            let cap = each!(&q, q => q.capacity());
            w.queues.borrow_mut()[i] = AnyQueue::new(i, cap);
            w.closed_queues.borrow_mut().push(q);
        }
        _ => eventlet::yield_now(),
    }
}

fn semaphore_op(w: &World, rng: &mut Rng, tmo: Duration) {
    match rng.below(6) {
        0..=2 => {
            let p = match rng.below(3) {
                0 => w.bsem.try_acquire(),
                1 => w.bsem.acquire_timeout(tmo),
                _ => eventlet::with_timeout(tmo, || w.bsem.acquire()).ok(),
            };
            if let Some(p) = p {
                if rng.chance(10) {
                    p.forget();
                    w.bsem_forgotten.set(w.bsem_forgotten.get() + 1);
                } else {
                    let _out = Out::enter(&w.bsem_out);
                    eventlet::sleep(rng.ms(1));
                    drop(p);
                }
            }
        }
        3 => {
            let forgotten = w.bsem_forgotten.get();
            let r = w.bsem.release();
            assert_eq!(r.is_ok(), forgotten > 0, "BoundedSemaphore::release with {forgotten} permits forgotten");
            if r.is_ok() {
                w.bsem_forgotten.set(forgotten - 1);
            }
        }
        4 => {
            let ok = match rng.below(4) {
                0 => w.capped.try_acquire(),
                1 => w.capped.acquire_timeout(tmo),
                2 => eventlet::with_timeout(tmo, || w.capped.acquire()).is_ok(),
                _ => {
                    w.capped.acquire(); // the end phase releases
                    true
                }
            };
            if ok {
                w.capped_acquired.set(w.capped_acquired.get() + 1);
            }
        }
        _ => {
            // A releaser killed after its unit was taken has released.
            struct Unwound<'a>(&'a Cell<u64>);
            impl Drop for Unwound<'_> {
                fn drop(&mut self) {
                    if std::thread::panicking() {
                        self.0.set(self.0.get() + 1);
                    }
                }
            }
            let _maybe = Unwound(&w.capped_maybe_released);
            let ok = match rng.below(4) {
                0 => w.capped.try_release(),
                1 => w.capped.release_timeout(tmo),
                2 => eventlet::with_timeout(tmo, || w.capped.release()).is_ok(),
                _ => {
                    w.capped.release(); // the end phase acquires
                    true
                }
            };
            if ok {
                w.capped_released.set(w.capped_released.get() + 1);
            }
        }
    }
}

fn rwlock_op(w: &World, rng: &mut Rng, tmo: Duration) {
    catch_planned(|| {
        if rng.chance(60) {
            let g = match rng.below(4) {
                0 => w.rw.try_read(),
                1 => w.rw.read_timeout(tmo),
                2 => eventlet::with_timeout(tmo, || w.rw.read()).ok(),
                _ => Some(w.rw.read()),
            };
            if let Some(_g) = g {
                let _in = Out::enter(&w.rw_readers);
                w.check();
                eventlet::sleep(rng.ms(1));
                if rng.chance(3) {
                    panic!("a planned panic while reading");
                }
            }
        } else {
            let g = match rng.below(4) {
                0 => w.rw.try_write(),
                1 => w.rw.write_timeout(tmo),
                2 => eventlet::with_timeout(tmo, || w.rw.write()).ok(),
                _ => Some(w.rw.write()),
            };
            if let Some(mut g) = g {
                let _in = Out::enter(&w.rw_writer);
                w.check();
                *g += 1;
                eventlet::sleep(rng.ms(1));
                if rng.chance(3) {
                    panic!("a planned panic while writing");
                }
            }
        }
    });
}

fn event_op(w: &World, rng: &mut Rng, tmo: Duration) {
    let ev = w.event.borrow().clone();
    let got = match rng.below(6) {
        0 => {
            let v = w.event_sent.get() + 1;
            if ev.send(v).is_ok() {
                w.event_sent.set(v);
            }
            None
        }
        1 => {
            ev.reset();
            None
        }
        2 => ev.wait_timeout(tmo).ok(),
        3 => eventlet::with_timeout(tmo, || ev.wait()).ok(),
        4 => Some(ev.wait()), // the end phase sends
        _ => ev.get(),
    };
    if let Some(v) = got {
        assert!((1..=w.event_sent.get()).contains(&v), "an Event gave {v}, never sent");
    }
}

fn pool_op(w: &World, rng: &mut Rng, tmo: Duration) {
    catch_planned(|| match rng.below(8) {
        0..=2 => {
            let g = match rng.below(4) {
                0 => w.pool.try_get(),
                1 => w.pool.get_timeout(tmo),
                2 => eventlet::with_timeout(tmo, || w.pool.get()).ok(),
                _ => Some(w.pool.get()),
            };
            if let Some(g) = g {
                let _out = Out::enter(&w.pool_out);
                eventlet::sleep(rng.ms(1));
                match rng.below(10) {
                    0 => g.discard(),
                    1 => drop(g.into_inner()),
                    2 => panic!("a planned panic holding a pool item"),
                    _ => drop(g),
                }
            }
        }
        3..=5 => {
            let g = match rng.below(4) {
                0 => w.try_pool.try_get(),
                1 => w.try_pool.get_timeout(tmo),
                2 => eventlet::with_timeout(tmo, || w.try_pool.get().map(Some)).unwrap_or(Ok(None)),
                _ => w.try_pool.get().map(Some),
            };
            if let Ok(Some(g)) = g {
                let _out = Out::enter(&w.try_pool_out);
                eventlet::sleep(rng.ms(1));
                if rng.chance(10) {
                    g.discard();
                }
            }
        }
        6 => w.pool.resize(1 + rng.below(POOL_MAX as u64) as usize),
        _ => w.try_pool.resize(1 + rng.below(POOL_MAX as u64) as usize),
    });
}

/// The body of a green thread of the green pool.
fn pooled(w: &World, t: Tracked, mut rng: Rng) -> Tracked {
    let _in = Out::enter(&w.gpool_in);
    eventlet::sleep(rng.ms(1));
    if rng.chance(5) {
        panic!("a planned panic in the green pool");
    }
    t
}

fn green_pool_op(w: &Rc<World>, rng: &mut Rng, tmo: Duration) {
    match rng.below(8) {
        0 | 1 => {
            let (w2, t, r) = (w.clone(), w.track(rng, "pooled"), Rng(rng.next() | 1));
            let spawn = || w.gpool.spawn(move || pooled(&w2, t, r));
            let h = if rng.chance(50) { Some(spawn()) } else { eventlet::with_timeout(tmo, spawn).ok() };
            if let Some(h) = h {
                match rng.below(3) {
                    0 => drop(h),
                    1 => drop(eventlet::with_timeout(tmo, || h.join())),
                    _ => drop(h.join()),
                }
            }
        }
        2 => {
            let (w2, t, r) = (w.clone(), w.track(rng, "pooled"), Rng(rng.next() | 1));
            let _ = eventlet::with_timeout(tmo, || w.gpool.spawn_n(move || drop(pooled(&w2, t, r))));
        }
        3 => {
            // Results in input order, each once; cut short by a timeout.
            let n = 1 + rng.below(6);
            let (w2, seed) = (w.clone(), rng.next() | 1);
            let f = move |i: u64| {
                let t = w2.ledger.track(false, "imapped");
                let t = pooled(&w2, t, Rng(seed ^ i));
                (i, t)
            };
            let _ = eventlet::with_timeout(tmo * 4, || {
                let next = Cell::new(0);
                let mut panicked = true;
                catch_planned(|| {
                    for (i, _t) in w.gpool.imap(f, 0..n) {
                        assert_eq!(i, next.get(), "imap out of order");
                        next.set(i + 1);
                    }
                    panicked = false;
                });
                assert!(panicked || next.get() == n, "imap ended early without a panic");
            });
        }
        4 => {
            let pile = GreenPile::with_pool(&w.gpool);
            let n = 1 + rng.below(5);
            let _ = eventlet::with_timeout(tmo * 4, || {
                for i in 0..n {
                    let (w2, t) = (w.clone(), w.track(rng, "piled"));
                    pile.spawn(move || {
                        let _in = Out::enter(&w2.gpool_in);
                        eventlet::yield_now();
                        (i, t)
                    });
                }
                let got: Vec<u64> = (&pile).map(|(i, _t)| i).collect();
                assert_eq!(got, (0..n).collect::<Vec<_>>(), "a GreenPile's results");
            });
        }
        5 => {
            if rng.chance(50) {
                let _ = eventlet::with_timeout(tmo, || w.gpool.waitall());
            } else if rng.chance(20) {
                w.gpool.waitall();
            }
        }
        _ => w.gpool.resize(1 + rng.below(GREEN_POOL_MAX as u64) as usize),
    }
}

/// A small graph of tasks, some of them panicking or killed; every
/// outcome says why.
fn dag_op(w: &World, rng: &mut Rng, tmo: Duration) {
    let dag: DAGPool<u64, u64> = DAGPool::new();
    let n = 1 + rng.below(6);
    let mut deps_of = Vec::new();
    let mut panics = HashSet::new();
    for key in 0..n {
        let deps: Vec<u64> = (0..key).filter(|_| rng.chance(40)).collect();
        deps_of.push(deps.clone());
        if rng.chance(20) {
            dag.post(key, key + 1).unwrap_or_else(|_| panic!("a fresh key collided"));
            deps_of[key as usize].clear();
            continue;
        }
        let panicky = rng.chance(10);
        if panicky {
            panics.insert(key);
        }
        let (t, d) = (w.track(rng, "dag task"), rng.ms(1));
        let f = move |vals: HashMap<u64, u64>| {
            let _t = t;
            eventlet::sleep(d);
            if panicky {
                panic!("a planned panic in a DAG task");
            }
            key + 1 + vals.values().sum::<u64>()
        };
        if dag.spawn(key, deps, f).is_err() {
            panic!("a fresh key collided");
        }
    }
    let mut killed = HashSet::new();
    if rng.chance(30) {
        eventlet::sleep(rng.ms(1));
        let k = rng.below(n);
        if dag.kill(&k) {
            killed.insert(k);
        }
    }
    let Ok(outcomes) = eventlet::with_timeout(tmo * 4, || dag.waitall()) else { return };
    assert_eq!(outcomes.len() as u64, n, "DAGPool::waitall gave every key");
    for key in 0..n {
        match &outcomes[&key] {
            Ok(v) => {
                let deps = &deps_of[key as usize];
                let want = key + 1 + deps.iter().map(|d| outcomes[d].as_ref().unwrap()).sum::<u64>();
                assert_eq!(*v, want, "DAG task {key}'s value");
                assert!(!panics.contains(&key), "DAG task {key} panics, yet it has a value");
            }
            Err(e) => {
                let own = (e.is_killed() && killed.contains(&key))
                    || e.panic_message().is_some_and(|m| m.starts_with("a planned panic") && panics.contains(&key));
                let propagated = e.dependency().is_some_and(|d| outcomes[d.key()].is_err());
                assert!(own || propagated, "DAG task {key} failed for no reason: {e:?}");
            }
        }
    }
}

fn tpool_op(w: &World, rng: &mut Rng, tmo: Duration) {
    let (counts, x, d) = (w.tpool_counts.clone(), rng.below(1000), rng.ms(1));
    let r = eventlet::with_timeout(tmo, move || {
        eventlet::tpool::execute(move || {
            std::thread::sleep(d);
            (x * 2, SendTracked::new(&counts))
        })
    });
    if let Ok((v, _t)) = r {
        assert_eq!(v, x * 2, "tpool::execute's value");
    }
}

/// Spawns a child worker in one of the ways there are, maybe links a
/// callback to it and unlinks or cancels it.
fn spawn_op(w: &Rc<World>, rng: &mut Rng, depth: u32, children: &mut Vec<JoinHandle<Option<Tracked>>>) {
    w.spawned.set(w.spawned.get() + 1);
    let ci = {
        let mut s = w.started.borrow_mut();
        s.push((false, false));
        s.len() - 1
    };
    let (w2, r2) = (w.clone(), Rng(rng.next() | 1));
    let captured = w.track(rng, "capture");
    let body = move || {
        let started = std::mem::replace(&mut w2.started.borrow_mut()[ci].0, true);
        assert!(!started, "a green thread started twice");
        drop(captured);
        worker(w2, r2, depth + 1)
    };
    let h = match rng.below(4) {
        0 => eventlet::spawn_after(rng.ms(2), body),
        1 => eventlet::spawn_after_local(rng.ms(2), body),
        _ => eventlet::spawn(body),
    };
    if rng.chance(40) {
        let li = {
            let mut l = w.links.borrow_mut();
            l.push(LinkState::default());
            l.len() - 1
        };
        // Its captures record whether it ran or was dropped unrun (by
        // `unlink`, in which its drop may block and the caller be killed).
        struct Callback {
            w: Rc<World>,
            li: usize,
            ran: bool,
            _t: Tracked,
        }
        impl Drop for Callback {
            fn drop(&mut self) {
                if !self.ran {
                    self.w.links.borrow_mut()[self.li].dropped_unrun += 1;
                }
            }
        }
        let mut cb = Callback { w: w.clone(), li, ran: false, _t: w.track(rng, "link callback") };
        let key = h.link(move |_| {
            cb.ran = true;
            cb.w.links.borrow_mut()[cb.li].ran += 1;
        });
        if rng.chance(30) {
            if rng.chance(50) {
                eventlet::yield_now();
            }
            w.links.borrow_mut()[li].unlink_tried = true;
            let unlinked = h.unlink(key);
            w.links.borrow_mut()[li].unlinked = Some(unlinked);
        }
    }
    if rng.chance(10) && h.cancel() {
        w.started.borrow_mut()[ci].1 = true;
        let r = h.join();
        assert!(r.is_err_and(|p| p.is::<eventlet::Killed>()), "a canceled green thread did not end killed");
        return;
    }
    match rng.below(3) {
        0 => drop(h),
        1 => children.push(h),
        _ => w.handles.borrow_mut().push(h),
    }
}

/// The race a grant's pass-on exists for: a green thread waits on a
/// primitive, is granted (a unit, the lock, an item, a notification) and
/// is killed before it wakes to take it up; what it was granted must go
/// on to the next waiter. The caller makes two children wait (untimed) on
/// one primitive, lets one in, and at once, before it runs, kills the
/// first (or not).
fn handoff_race(w: &Rc<World>, rng: &mut Rng, tmo: Duration) {
    let kill = rng.chance(70);
    let yields = 1 + rng.below(3);
    // Spawns two waiters, lets them start waiting, grants, kills the first.
    let race = |waiter: &dyn Fn(Rc<World>) -> Box<dyn FnOnce()>, grant: &mut dyn FnMut()| {
        let first = eventlet::spawn(waiter(w.clone()));
        let second = eventlet::spawn(waiter(w.clone()));
        for _ in 0..yields {
            eventlet::yield_now();
        }
        grant();
        if kill {
            first.kill();
        }
        drop((first, second));
    };
    let sleep = rng.ms(1);
    match rng.below(7) {
        0 => race(&|w| Box::new(move || take_token(&w, 0, Duration::ZERO)), &mut || add_token(w, false)),
        1 => {
            let Ok(g) = eventlet::with_timeout(tmo, || w.rw.write()) else { return };
            let out = Out::enter(&w.rw_writer);
            let mut held = Some((g, out));
            let read = rng.chance(50);
            race(
                &|w| {
                    Box::new(move || {
                        if read {
                            let _g = w.rw.read();
                            let _in = Out::enter(&w.rw_readers);
                            w.check();
                            eventlet::sleep(sleep);
                        } else {
                            let _g = w.rw.write();
                            let _in = Out::enter(&w.rw_writer);
                            w.check();
                            eventlet::sleep(sleep);
                        }
                    })
                },
                &mut || drop(held.take()),
            );
        }
        2 => {
            let Ok(p) = eventlet::with_timeout(tmo, || w.bsem.acquire()) else { return };
            let mut held = Some(p);
            race(
                &|w| {
                    Box::new(move || {
                        let _p = w.bsem.acquire();
                        let _out = Out::enter(&w.bsem_out);
                        eventlet::sleep(sleep);
                    })
                },
                &mut || drop(held.take()),
            );
        }
        3 => {
            let i = rng.below(3) as usize;
            let q = w.queues.borrow()[i].clone();
            let mut item = Some(Item { id: w.next_item.get(), _value: w.track(rng, "item") });
            w.next_item.set(w.next_item.get() + 1);
            race(
                &|w| {
                    let q = q.clone();
                    Box::new(move || {
                        if let Some(item) = each!(&q, q => q.get().ok()) {
                            w.got.borrow_mut().push(item.id);
                        }
                    })
                },
                &mut || {
                    if let Some(item) = item.take() {
                        let id = item.id;
                        let ok = each!(&q, q => q.try_put(item).is_ok());
                        w.put.borrow_mut().insert(id, ok);
                    }
                },
            );
        }
        4 => race(
            &|w| {
                Box::new(move || {
                    w.capped.acquire();
                    w.capped_acquired.set(w.capped_acquired.get() + 1);
                })
            },
            &mut || {
                if w.capped.try_release() {
                    w.capped_released.set(w.capped_released.get() + 1);
                }
            },
        ),
        5 => {
            let Ok(g) = eventlet::with_timeout(tmo, || w.pool.get()) else { return };
            let out = Out::enter(&w.pool_out);
            let mut held = Some((g, out));
            race(
                &|w| {
                    Box::new(move || {
                        let _g = w.pool.get();
                        let _out = Out::enter(&w.pool_out);
                        eventlet::sleep(sleep);
                    })
                },
                &mut || drop(held.take()),
            );
        }
        _ => {
            let ev = w.event.borrow().clone();
            race(
                &|w| {
                    let ev = ev.clone();
                    Box::new(move || {
                        let v = ev.wait();
                        assert!((1..=w.event_sent.get()).contains(&v), "an Event gave {v}, never sent");
                    })
                },
                &mut || {
                    let v = w.event_sent.get() + 1;
                    if ev.send(v).is_ok() {
                        w.event_sent.set(v);
                    }
                },
            );
        }
    }
}

fn worker(w: Rc<World>, mut rng: Rng, depth: u32) -> Option<Tracked> {
    let mine = w.track(&mut rng, "result");
    let mut children = Vec::new();
    let mut steps = if depth == 0 { u64::MAX } else { rng.below(20) };
    while Instant::now() < w.until && steps > 0 {
        steps -= 1;
        let tmo = rng.ms(2);
        match rng.below(16) {
            0 if depth < 3 && w.spawned.get() < w.spawn_cap => spawn_op(&w, &mut rng, depth, &mut children),
            1 => {
                if let Some(h) = take_other(&w, &mut rng) {
                    h.kill();
                    if rng.chance(50) {
                        w.handles.borrow_mut().push(h);
                    }
                }
            }
            2 => {
                if rng.chance(50) {
                    if let Some(h) = take_other(&w, &mut rng) {
                        let _ = eventlet::with_timeout(tmo, move || drop(h.join()));
                    }
                } else if let Some(h) = children.pop() {
                    drop(h.join());
                }
            }
            3 => take_token(&w, rng.below(3), tmo),
            4 => add_token(&w, rng.chance(20)),
            5 | 6 => queue_op(&w, &mut rng, tmo),
            7 => semaphore_op(&w, &mut rng, tmo),
            8 => rwlock_op(&w, &mut rng, tmo),
            9 => event_op(&w, &mut rng, tmo),
            10 => pool_op(&w, &mut rng, tmo),
            11 => green_pool_op(&w, &mut rng, tmo),
            12 if rng.chance(20) => dag_op(&w, &mut rng, tmo),
            13 if rng.chance(20) => tpool_op(&w, &mut rng, tmo),
            13 => handoff_race(&w, &mut rng, tmo),
            14 if depth > 0 && rng.chance(10) => panic!("a planned panic ends a green thread"),
            14 => catch_planned(|| {
                let _t = w.track(&mut rng, "unwound");
                panic!("a planned panic, caught");
            }),
            _ => eventlet::yield_now(),
        }
    }
    // Dropped before the result is made: a drop that blocks (a child's
    // result) may unwind on a kill, which would leak a result made already
    // (rust-lang/rust#47949).
    drop(children);
    rng.chance(50).then_some(mine)
}

/// The end phase: ends the waits that only the end of the run ends (called when nothing
/// is ready to run, once the run is over): feeds the condition variable's
/// sleepers, sends the event, closes the queues, and takes or gives units
/// for the capped semaphore's waiters.
fn end_waits(w: &World) {
    if w.cv.waiting() > 0 {
        add_token(w, false);
    }
    let ev = w.event.borrow().clone();
    if ev.waiting() > 0 {
        let v = w.event_sent.get() + 1;
        ev.send(v).expect("an event with waiters was not sent");
        w.event_sent.set(v);
    }
    for q in w.queues.borrow().iter() {
        each!(q, q => if q.getting() > 0 || q.putting() > 0 { q.close() });
    }
    if w.capped.acquiring() > 0 && w.capped.try_release() {
        w.capped_released.set(w.capped_released.get() + 1);
    }
    if w.capped.releasing() > 0 && w.capped.try_acquire() {
        w.capped_acquired.set(w.capped_acquired.get() + 1);
    }
}

#[test]
fn random_interleavings_keep_every_invariant() {
    let (seed, secs) = util::stress_plan("stress_sync");
    util::quiet_planned_panics();
    let _watchdog = util::Watchdog::start("stress_sync", seed, Duration::from_secs_f64(secs * 3.0 + 60.0));
    let ledger = Rc::new(Ledger::default());
    let mut rng = Rng(seed | 1);
    let try_made = Rc::new(Cell::new(0u64));
    let w = Rc::new(World {
        ledger: ledger.clone(),
        until: Instant::now() + Duration::from_secs_f64(secs),
        done: Cell::new(false),
        rw: RwLock::new(0),
        rw_readers: Cell::new(0),
        rw_writer: Cell::new(0),
        tokens: Lock::new(0),
        cv: Condvar::new(),
        tokens_added: Cell::new(0),
        tokens_taken: Cell::new(0),
        event: RefCell::new(Event::new()),
        event_sent: Cell::new(0),
        bsem: BoundedSemaphore::new(BOUND),
        bsem_out: Cell::new(0),
        bsem_forgotten: Cell::new(0),
        capped: CappedSemaphore::new(CAPPED_START as usize, CAPPED_LIMIT),
        capped_released: Cell::new(0),
        capped_acquired: Cell::new(0),
        capped_maybe_released: Cell::new(0),
        queues: RefCell::new(vec![AnyQueue::new(0, Some(0)), AnyQueue::new(1, Some(2)), AnyQueue::new(2, Some(3))]),
        closed_queues: RefCell::new(Vec::new()),
        next_item: Cell::new(0),
        put: RefCell::new(HashMap::new()),
        got: RefCell::new(Vec::new()),
        gpool: GreenPool::new(4),
        gpool_in: Cell::new(0),
        pool: Pool::new(1, 3, {
            let ledger = ledger.clone();
            move || ledger.track(false, "pool item")
        }),
        pool_out: Cell::new(0),
        try_pool: TryPool::new(1, 3, {
            let (ledger, made) = (ledger.clone(), try_made.clone());
            move || {
                made.set(made.get() + 1);
                if made.get() % 5 == 0 {
                    Err("every fifth item cannot be made".to_string())
                } else {
                    Ok(ledger.track(false, "try pool item"))
                }
            }
        })
        .unwrap(),
        try_pool_out: Cell::new(0),
        links: RefCell::new(Vec::new()),
        started: RefCell::new(Vec::new()),
        handles: RefCell::new(Vec::new()),
        spawned: Cell::new(0),
        spawn_cap: (secs * 4000.0) as u64,
        quiet_turns: Cell::new(0),
        tpool_counts: Arc::new((AtomicUsize::new(0), AtomicUsize::new(0))),
    });
    // The monitor: the invariants at every turn of the hub.
    let monitor = {
        let w = w.clone();
        eventlet::spawn(move || {
            let mut turns = 0u64;
            while !w.done.get() {
                if Instant::now() > w.until + STUCK {
                    eprintln!(
                        "stress_sync: stuck (EVENTLET_STRESS_SEED={seed}):\n{}green threads: {:#?}",
                        w.report(),
                        eventlet::hub::threads()
                    );
                    std::process::abort();
                }
                w.check();
                if eventlet::hub::stats().ready == 0 {
                    w.quiet_turns.set(w.quiet_turns.get() + 1);
                    w.check_quiet();
                    if Instant::now() >= w.until {
                        end_waits(&w);
                    }
                }
                turns += 1;
                if turns % 4 == 0 {
                    eventlet::sleep(Duration::from_micros(50));
                } else {
                    eventlet::yield_now();
                }
            }
            turns
        })
    };
    let roots: Vec<_> = (0..60)
        .map(|i| {
            let (w, r) = (w.clone(), Rng(rng.next() | 1));
            eventlet::Builder::new().name(format!("worker {i}")).spawn(move || worker(w, r, 0)).unwrap()
        })
        .collect();
    for h in roots {
        h.join().expect("a top-level worker panicked");
    }
    loop {
        let h = w.handles.borrow_mut().pop();
        let Some(h) = h else { break };
        let _ = h.join();
    }
    w.gpool.waitall();
    // Detached green threads may still be finishing (sleepy drops, waits
    // the end phase ends).
    let start = Instant::now();
    while eventlet::hub::stats().green_threads > 1 && start.elapsed() < Duration::from_secs(10) {
        eventlet::sleep(Duration::from_millis(1));
    }
    w.done.set(true);
    let turns = monitor.join().expect("an invariant broke while the test ran");
    w.check();
    let stats = eventlet::hub::stats();
    assert_eq!(stats.green_threads, 0, "green threads left: {:?}", eventlet::hub::threads());
    assert_eq!(stats.timers, 0, "timers left");

    // Locks and semaphores: free, nobody waiting, units all back.
    assert_eq!((w.rw.readers(), w.rw.is_write_locked(), w.rw.waiting()), (0, false, 0), "the RwLock is free");
    assert_eq!((w.rw_readers.get(), w.rw_writer.get()), (0, 0));
    assert!(!w.tokens.is_locked() && w.cv.waiting() == 0);
    assert_eq!(w.tokens_added.get(), w.tokens_taken.get() + *w.tokens.lock(), "Condvar tokens added and taken");
    assert_eq!(w.event.borrow().waiting(), 0);
    assert_eq!(w.bsem.waiting(), 0);
    assert_eq!(w.bsem.available(), BOUND - w.bsem_forgotten.get(), "BoundedSemaphore permits came back");
    for _ in 0..w.bsem_forgotten.get() {
        w.bsem.release().expect("a forgotten permit could not be released");
    }
    assert!(w.bsem.release().is_err(), "a BoundedSemaphore released above its bound");
    assert_eq!(w.bsem.available(), BOUND);
    let c = &w.capped;
    assert_eq!((c.acquiring(), c.releasing()), (0, 0));
    // A unit released to an acquirer killed before it woke is dropped
    // when the semaphore is full by then: the count may be lower.
    let units = CAPPED_START + w.capped_released.get() + w.capped_maybe_released.get();
    let units = units.checked_sub(w.capped_acquired.get()).expect("more CappedSemaphore units taken than put in");
    assert!(c.available() as u64 <= units, "CappedSemaphore has {} units, at most {units} were put in", c.available());

    // Queues: every item got once; every successful put got or still there.
    for q in w.queues.borrow().iter().chain(w.closed_queues.borrow().iter()) {
        each!(q, q => {
            assert_eq!((q.getting(), q.putting()), (0, 0));
            while let Ok(item) = q.try_get() {
                w.got.borrow_mut().push(item.id);
            }
        });
    }
    let (put, got) = (w.put.borrow(), w.got.borrow());
    let mut seen = HashSet::new();
    for id in got.iter() {
        assert!(seen.insert(*id), "item {id} got twice");
        assert_ne!(put.get(id), Some(&false), "item {id} was got but its put failed");
    }
    for (id, ok) in put.iter() {
        assert!(!ok || seen.contains(id), "item {id} was put but never got");
    }
    drop((put, got));

    // Pools: nobody waiting, every item back, no more than the most.
    assert_eq!((w.gpool.running(), w.gpool.waiting(), w.gpool_in.get()), (0, 0, 0), "the green pool is idle");
    assert_eq!((w.pool.waiting(), w.pool_out.get()), (0, 0));
    assert_eq!(w.pool.free(), w.pool.max_size(), "every pool item came back");
    assert!(w.pool.len() <= w.pool.max_size());
    assert_eq!((w.try_pool.waiting(), w.try_pool_out.get()), (0, 0));
    assert_eq!(w.try_pool.free(), w.try_pool.max_size(), "every try-pool item came back");

    // Links ran once unless unlinked; a canceled green thread never ran.
    for (i, l) in w.links.borrow().iter().enumerate() {
        assert_eq!(
            l.ran + l.dropped_unrun,
            1,
            "linked callback {i} ran {} times, dropped unrun {}",
            l.ran,
            l.dropped_unrun
        );
        assert!(l.ran == 0 || l.unlinked != Some(true), "linked callback {i} ran, yet unlink removed it");
        assert!(
            l.dropped_unrun == 0 || (l.unlink_tried && l.unlinked != Some(false)),
            "linked callback {i} was dropped unrun, yet not unlinked"
        );
    }
    for (i, (started, canceled)) in w.started.borrow().iter().enumerate() {
        assert!(!(started & canceled), "green thread {i} was canceled, yet it started");
    }

    // The thread pool drops what a killed caller left there.
    let counts = w.tpool_counts.clone();
    let start = Instant::now();
    while counts.0.load(Ordering::SeqCst) != counts.1.load(Ordering::SeqCst)
        && start.elapsed() < Duration::from_secs(10)
    {
        eventlet::sleep(Duration::from_millis(1));
    }
    assert_eq!(counts.0.load(Ordering::SeqCst), counts.1.load(Ordering::SeqCst), "tpool results dropped");

    let (links, spawned, items, quiet) =
        (w.links.borrow().len(), w.spawned.get(), w.next_item.get(), w.quiet_turns.get());
    drop(w);
    ledger.assert_all_dropped();
    eprintln!(
        "stress_sync: {} values tracked, all dropped once; {spawned} spawned, {links} links, {items} items, \
         {} tpool calls, {turns} monitor turns ({quiet} quiet)",
        ledger.made(),
        counts.0.load(Ordering::SeqCst),
    );
}
