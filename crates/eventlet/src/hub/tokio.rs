//! The tokio bridge (feature `tokio`): a hub that drives a tokio
//! current-thread runtime, so green threads and tokio share one OS thread
//! and one wait, as eventlet's asyncio hub shares asyncio's loop.
//!
//! # What it does
//!
//! Every hub has a tokio current-thread runtime, made with it (two
//! descriptors and a few allocations; no thread until something calls
//! `spawn_blocking`). Its handle is current on the hub's OS thread
//! (entered for the thread's lifetime, unless another runtime's context
//! was current then), so `tokio::runtime::Handle::current()`,
//! `tokio::spawn`, `tokio::time::sleep` and every crate built on them work
//! in green threads and in the root.
//!
//! From the first [`block_on`](crate::block_on) on this thread (or once
//! tokio has a task, spawned from green code), the hub drives the runtime:
//! a hub that never touches tokio keeps its plain loop and pays nothing
//! per operation. Driving means:
//!
//! - whenever the root parks (and so the hub's loop runs), the loop runs
//!   *inside* that runtime: `Runtime::block_on` of a future whose `poll`
//!   is one turn of the hub's loop. Green threads therefore run inside the
//!   runtime's scheduler context (a tokio task woken from a green thread is
//!   a push on the runtime's local queue, no syscall), tokio's tasks run
//!   between the hub's turns, and tokio's I/O driver and timers progress;
//! - the `block_on` returns when the root goes on. Tokio keeps the wakers
//!   it defers (a `yield_now`, a tokio resource polled after the turn's
//!   cooperative budget is spent, both common in green threads' polls)
//!   until its next turn of the driver, and drops them if its `block_on`
//!   returns first; so when green threads polled futures in the poll
//!   that woke the root, the loop gives tokio that turn first (one
//!   `epoll_wait` that does not block);
//! - the hub's own `epoll` descriptor is registered with tokio's reactor
//!   (an [`AsyncFd`]): tokio's `epoll_wait` is the only one that blocks,
//!   and the hub polls its own `epoll` (without waiting) only when tokio
//!   saw it readable. The hub's next timer is a tokio `Sleep`.
//!
//! # Why this design
//!
//! The choices were the hub running as a task inside tokio, or tokio
//! driven from the hub's loop (the hub's `mio::Poll` waiting on tokio's
//! `epoll` descriptor, or the reverse). Tokio does not expose its
//! descriptor or a way to poll its driver from outside, so the blocking
//! wait must be tokio's, with the hub's `epoll` nested in it (nested
//! `epoll` instances are a supported Linux feature; a readiness edge
//! inside the hub's instance raises one on its descriptor). And the green
//! threads should run where tokio's wake-ups are cheapest: inside the
//! runtime's `block_on`, where waking a task or the `block_on` future from
//! the same thread is a queue push or a flag (tokio 1.54; from outside it
//! would be an `eventfd` write each). So the hub's loop is the `block_on`
//! future itself: per turn it runs a batch of green threads, its remote
//! wake-ups and its timers, then either yields to tokio (after
//! `IO_INTERVAL` green threads, when a green thread yields for I/O, or
//! when tokio's cooperative budget of the turn is spent; tokio then runs
//! its ready tasks and polls its reactor without blocking, the same
//! cadence as the plain hub's own I/O polls) or, when nothing is ready,
//! returns `Pending` and lets tokio block. No operation on the hot path
//! crosses to another OS thread. wasmtime's fibers suspending on host
//! futures inside a tokio task, and eventlet's asyncio hub built on
//! asyncio's loop, are the same shape.
//!
//! What wakes the loop while it waits in tokio: tokio's reactor (the
//! hub's `epoll` readable, asked for only while green threads wait for
//! I/O), a wake-up from another thread (it wakes the loop's waker, which
//! is tokio's own cross-thread wake: one `eventfd` write, no extra
//! `epoll_wait` for the hub, and no lock the hub could block on), the
//! `Sleep`, and tokio code that makes a green thread ready (a green
//! thread's waker it wakes, a `Queue::put`, an unpark or a spawn in a
//! tokio task): that wakes the loop at once (a flag, no syscall), even
//! while tokio has work of its own and does not park.
//!
//! # Limits
//!
//! - Async code running on the hub (a tokio task, the loop) must not
//!   block: a blocking green call there (`join`, `sleep`, `block_on`, green
//!   I/O) panics with a message saying so, as tokio's own `block_on` does
//!   inside a runtime. Spawn a green thread and `.await` it instead.
//! - Only a current-thread runtime fits: green threads never leave their
//!   OS thread. From a multi-threaded runtime, put green work on a hub
//!   thread ([`start`](super::start)) and await
//!   [`Handle::spawn_future`](super::Handle::spawn_future); that is one hop to
//!   the hub's thread and one back per call (measured in BENCHMARKS.md).
//!   A `block_on` on a thread that already drives another runtime (a
//!   multi-threaded runtime's worker, or inside another runtime's
//!   `block_on`) panics with tokio's "Cannot start a runtime from within a
//!   runtime"; the thread's hub goes on with its plain loop afterwards.
//! - While tokio has tasks alive the hub cannot tell that its root is
//!   deadlocked (a task may still wake it), so it waits instead of
//!   panicking; likewise while a green thread waits in `block_on` (its
//!   waker may be anywhere).
//! - The runtime is made with the hub, on the thread's first eventlet
//!   call; before it, tokio's handle is not current there. So
//!   `eventlet::block_on(tokio::time::sleep(d))` as a thread's very first
//!   call panics ("there is no reactor running": the argument is made
//!   before `block_on` runs); `block_on(async { tokio::time::sleep(d).await
//!   })` works, or make the hub first (`eventlet::hub::handle()`).
//! - Until the hub drives its runtime (its first `block_on`, or a tokio
//!   task spawned on its own thread), it waits for I/O in its own `epoll`,
//!   which tokio's wake-ups do not reach: a task spawned onto its runtime
//!   from another OS thread (through a `tokio::runtime::Handle` taken on
//!   the hub's thread) runs only once the hub wakes for something else.
//!   From other threads, spawn green work with
//!   [`Handle::spawn_future`](super::Handle::spawn_future) instead.
//! - Never call tokio's `Handle::block_on` on a hub's thread: inside the
//!   loop it panics ("within a runtime"); before the hub drives its
//!   runtime it blocks the whole OS thread, green threads and all, and the
//!   runtime's I/O and timers, which nothing then drives, never progress.
//!   [`block_on`](crate::block_on) is the way.
//! - A hub first made while its thread exits, after tokio's thread-local
//!   context was destroyed (in another thread-local's destructor), has no
//!   runtime: green threads run, futures that need tokio do not.

use std::cell::{Cell, OnceCell, RefCell};
use std::future::Future;
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use ::tokio::io::unix::AsyncFd;
use ::tokio::io::Interest;
use ::tokio::runtime::{Builder, EnterGuard, Runtime, RuntimeMetrics};
use ::tokio::time::Sleep;

use super::{peek_hub, remote, Hub, State, IO_INTERVAL};

/// The runtime and what the loop keeps in it.
struct Inner {
    /// The hub's `epoll` instance (a duplicate descriptor) in tokio's
    /// reactor, registered when the loop first runs inside the runtime (a
    /// hub that never does registers nothing).
    poll_fd: OnceCell<AsyncFd<OwnedFd>>,
    /// The hub's next timer, made on the first idle turn.
    sleep: RefCell<Option<Pin<Box<Sleep>>>>,
    /// The runtime's metrics, kept: `Runtime::metrics` clones its handle
    /// (two atomic operations) each time the loop asks for its tasks.
    metrics: Option<RuntimeMetrics>,
    runtime: Option<Runtime>,
}

impl Inner {
    fn runtime(&self) -> &Runtime {
        self.runtime.as_ref().expect("the runtime lives as long as the bridge")
    }

    fn tasks_alive(&self) -> bool {
        self.metrics.as_ref().is_some_and(|m| m.num_alive_tasks() > 0)
    }

    fn poll_fd(&self) -> &AsyncFd<OwnedFd> {
        self.poll_fd.get().expect("registered before the loop runs in the runtime")
    }

    /// Registers the hub's `epoll` instance with tokio's reactor, once.
    fn register(&self, reactor: &super::io::Reactor) -> std::io::Result<()> {
        if self.poll_fd.get().is_some() {
            return Ok(());
        }
        let _enter = self.runtime().enter();
        let fd = reactor.poll_fd()?;
        // SAFETY: the `AsyncFd` owns the descriptor, which therefore stays
        // open, the same file description, until the `AsyncFd` is dropped.
        let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)?;
        let _ = self.poll_fd.set(afd);
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.poll_fd.take());
        drop(self.sleep.get_mut().take());
        drop(self.metrics.take());
        // Without waiting for blocking-pool threads (a stuck
        // `spawn_blocking` must not hold up the thread's exit).
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// A hub's tokio state (one field of the hub).
pub(crate) struct Bridge {
    /// `None` once the hub's thread is exiting.
    inner: Option<Inner>,
    /// Whether the hub's loop runs inside the runtime (from the first
    /// `block_on`, or once tokio has a task, on).
    on: Cell<bool>,
    /// Whether the loop runs inside the runtime now.
    driving: Cell<bool>,
    /// Whether another runtime's context was current when this one
    /// started (then this one is entered around polls, not for good).
    foreign: bool,
    /// The loop's waker, as last seen (tokio's `block_on` gives the same
    /// one to every poll).
    waker: RefCell<Option<Waker>>,
    /// Whether the loop waits in tokio.
    idle: Cell<bool>,
    /// Whether tokio had tasks alive when the loop went idle.
    idle_with_tasks: Cell<bool>,
    /// Set when the loop popped the root but gave tokio a turn first (see
    /// [`turn`]): its next poll returns at once.
    root_due: Cell<bool>,
    /// Whether a green thread polled a future since the loop's current
    /// poll began (tokio may have deferred its waker then).
    polled: Cell<bool>,
}

impl Bridge {
    /// Starts a hub's runtime; enters it for the thread's lifetime unless
    /// another runtime's context is current. A hub made while its thread
    /// exits, once tokio's thread-local context is destroyed (in another
    /// thread-local's destructor), gets no runtime: none could be entered
    /// or driven there (tokio panics, an abort in a destructor), and the
    /// hub's plain loop still runs green threads.
    pub(crate) fn new() -> std::io::Result<Bridge> {
        let current = ::tokio::runtime::Handle::try_current();
        if current.as_ref().is_err_and(::tokio::runtime::TryCurrentError::is_thread_local_destroyed) {
            return Ok(Bridge {
                inner: None,
                on: Cell::new(false),
                driving: Cell::new(false),
                foreign: false,
                waker: RefCell::new(None),
                idle: Cell::new(false),
                idle_with_tasks: Cell::new(false),
                root_due: Cell::new(false),
                polled: Cell::new(false),
            });
        }
        let foreign = current.is_ok();
        let runtime = Builder::new_current_thread().enable_all().on_thread_park(before_park).build()?;
        if !foreign {
            // For the thread's lifetime: green threads and the root see
            // this runtime as the current one. Guards entered later nest
            // above it.
            std::mem::forget(runtime.enter());
        }
        Ok(Bridge {
            inner: Some(Inner {
                poll_fd: OnceCell::new(),
                sleep: RefCell::new(None),
                metrics: Some(runtime.metrics()),
                runtime: Some(runtime),
            }),
            on: Cell::new(false),
            driving: Cell::new(false),
            foreign,
            waker: RefCell::new(None),
            idle: Cell::new(false),
            idle_with_tasks: Cell::new(false),
            root_due: Cell::new(false),
            polled: Cell::new(false),
        })
    }

    /// Whether the hub's loop should run inside the runtime: once asked
    /// ([`activate`](Self::activate)), or once tokio has a task (spawned
    /// from green code with `tokio::spawn`).
    #[inline]
    pub(crate) fn active(&self) -> bool {
        self.on.get() || self.has_tasks()
    }

    #[cold]
    #[inline(never)]
    fn has_tasks(&self) -> bool {
        let tasks = self.tasks_alive();
        if tasks {
            self.on.set(true);
        }
        tasks
    }

    /// Whether the runtime has tasks alive.
    pub(crate) fn tasks_alive(&self) -> bool {
        self.inner.as_ref().is_some_and(Inner::tasks_alive)
    }

    /// From now on the hub's loop runs inside the runtime.
    #[inline]
    pub(crate) fn activate(&self) {
        if !self.on.get() && self.inner.is_some() {
            self.on.set(true);
        }
    }

    /// Called before `block_on` polls a future: notes the poll (see
    /// [`turn`]), and enters the runtime's context for it if another
    /// runtime's context may be the current one.
    #[inline]
    pub(crate) fn before_poll(&self) -> Option<EnterGuard<'_>> {
        self.polled.set(true);
        if self.foreign && !self.driving.get() {
            return self.inner.as_ref().map(|i| i.runtime().enter());
        }
        None
    }

    /// Panics if the root is about to park while the loop runs inside the
    /// runtime: that is async code (a tokio task, a future the loop polls)
    /// making a blocking call. Called before the park changes anything.
    #[inline]
    pub(crate) fn refuse_blocking_in_async(&self) {
        if self.driving.get() {
            refuse();
        }
    }

    /// Wakes the loop if it waits in tokio: called by whatever makes a
    /// green thread ready or changes the hub's timers (an unpark, a spawn,
    /// a kill). While the loop waits, only tokio code runs on this thread
    /// (its tasks, wakers its driver wakes), and tokio need not park (the
    /// before-park hook would see it then) while it has work of its own:
    /// a task that yields until a green thread has run never lets it.
    #[inline]
    pub(crate) fn wake_idle(&self) {
        if self.idle.get() {
            self.wake_idle_now();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_idle_now(&self) {
        self.idle.set(false);
        // Tokio's `block_on` waker only marks its future woken and unparks
        // its driver: nothing here is borrowed again.
        if let Some(w) = self.waker.borrow().as_ref() {
            w.wake_by_ref();
        }
    }

    /// Drops the runtime (the hub's thread is exiting).
    pub(crate) fn shutdown(&mut self) {
        self.idle.set(false);
        drop(self.waker.take());
        self.on.set(false);
        drop(self.inner.take());
    }
}

#[cold]
#[inline(never)]
fn refuse() -> ! {
    panic!(
        "eventlet: a blocking call (join, sleep, park, yield, block_on, green I/O) was made from async code \
         running on this thread's hub (a tokio task of its runtime); async code must not block: spawn the \
         blocking work on a green thread and `.await` its JoinHandle"
    );
}

/// Tokio's hook before it parks the hub's thread: if green threads are
/// ready (a wake-up from another thread, or tokio code, made them so; both
/// wake the loop already) or tokio's last task ended, the loop runs before
/// tokio blocks.
fn before_park() {
    peek_hub(|h| {
        let ready = !h.queue.is_empty() || !h.yielded.is_empty() || h.shared.pending.load(Ordering::Acquire);
        // The loop went idle while tokio had tasks; if none is left it
        // looks again (a hub thread may end, a deadlock may show).
        let tasks_gone = h.tokio.idle_with_tasks.get() && !h.tokio.tasks_alive();
        if ready || tasks_gone {
            h.tokio.idle_with_tasks.set(false);
            h.tokio.wake_idle();
        }
    });
}

/// Clears a flag when dropped.
struct Reset<'a>(&'a Cell<bool>);

impl Drop for Reset<'_> {
    fn drop(&mut self) {
        self.0.set(false);
    }
}

/// The hub's loop inside its runtime: returns once the root is popped from
/// the run queue (as [`Hub::run`]).
pub(crate) fn drive(hub: &Hub) {
    let b = &hub.tokio;
    let Some(inner) = b.inner.as_ref() else { return };
    // Every root park checks this first (`refuse_blocking_in_async`).
    assert!(!b.driving.get(), "eventlet: the hub's loop re-entered");
    if let Err(e) = inner.register(&hub.reactor) {
        panic!("eventlet: cannot register the hub with its tokio runtime's reactor: {e}");
    }
    b.driving.set(true);
    let _reset = Reset(&b.driving);
    b.root_due.set(false);
    let refused = Refused { bridge: b, turned: Cell::new(false) };
    inner.runtime().block_on(std::future::poll_fn(|cx| {
        refused.turned.set(true);
        turn(hub, inner, cx)
    }));
}

/// If tokio refuses to run the loop (this OS thread already drives another
/// runtime: a multi-threaded runtime's worker, or inside another runtime's
/// `block_on`), its panic goes to the caller, and the hub goes back to its
/// plain loop: green threads that do not wait on tokio still run here.
struct Refused<'a> {
    bridge: &'a Bridge,
    turned: Cell<bool>,
}

impl Drop for Refused<'_> {
    fn drop(&mut self) {
        if !self.turned.get() && std::thread::panicking() {
            self.bridge.on.set(false);
        }
    }
}

/// One poll of the loop: runs green threads until the root is popped
/// (`Ready`), tokio should have a turn, or nothing is ready (`Pending`).
fn turn(hub: &Hub, inner: &Inner, cx: &mut Context<'_>) -> Poll<()> {
    if hub.shared.sleeping.load(Ordering::Relaxed) != remote::AWAKE {
        hub.shared.sleeping.store(remote::AWAKE, Ordering::SeqCst);
    }
    hub.tokio.idle.set(false);
    if hub.tokio.root_due.replace(false) {
        return Poll::Ready(());
    }
    hub.tokio.polled.set(false);
    // Whether tokio found the hub's `epoll` not readable in this poll, and
    // keeps the loop's waker for when it is: that cannot change before the
    // poll returns (only tokio's driver, which runs between polls, sets
    // the readiness), so it is not asked again. Nor is it asked while no
    // green thread waits for I/O: events wait in the `epoll` until one
    // does (as in the plain loop).
    let mut io_registered = false;
    loop {
        // The hub's own `epoll`, when tokio saw it readable.
        if !io_registered && hub.reactor.waiters() > 0 {
            match inner.poll_fd().poll_read_ready(cx) {
                Poll::Ready(Ok(mut ready)) => {
                    if !hub.poll_io(Some(Duration::ZERO)) {
                        ready.clear_ready();
                    }
                }
                Poll::Ready(Err(e)) => {
                    // Not asked again in this poll (no busy loop on it).
                    log::error!("eventlet: tokio's reactor failed on the hub's epoll: {e}");
                    io_registered = true;
                }
                Poll::Pending => io_registered = true,
            }
        }
        if hub.shared.pending.load(Ordering::Acquire) {
            hub.drain_remote();
        }
        if hub.timers.borrow().len() > 0 {
            hub.fire_timers();
        }
        hub.queue.append(&hub.yielded);

        if hub.run_batch() {
            if !hub.tokio.polled.get() {
                return Poll::Ready(());
            }
            // Green threads polled futures in this poll, and tokio may have
            // deferred their wakers (a `yield_now`, or a tokio resource
            // polled once the turn's cooperative budget was spent): tokio
            // wakes those after its next turn of the driver, and drops them
            // if its `block_on` returns first. So it gets that turn before
            // the root goes on. (Tokio defers only wakers it is given in a
            // poll, and green threads poll only in `block_on`.)
            hub.tokio.root_due.set(true);
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }

        if hub.shared.pending.load(Ordering::Acquire) {
            hub.drain_remote();
        }
        if hub.timers.borrow().len() > 0 {
            hub.fire_timers();
        }
        if !hub.queue.is_empty() || !hub.yielded.is_empty() {
            let io_due = (hub.io_requested.get() && hub.reactor.waiters() > 0) || hub.ticks.get() >= IO_INTERVAL;
            if io_due || !::tokio::task::coop::has_budget_remaining() {
                // Tokio's turn: its ready tasks, then its reactor and
                // timers without blocking (the hub's `epoll` among them).
                hub.ticks.set(0);
                hub.io_requested.set(false);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            continue;
        }

        // Nothing ready: wait in tokio.
        let next = hub.timers.borrow_mut().next_deadline();
        if next.is_none() && hub.nothing_can_wake() && !hub.tokio.tasks_alive() {
            if hub.serving.get() {
                // A hub thread (`hub::start`): its root decides what now.
                let root = hub.tasks.borrow()[0].clone();
                hub.unpark(&root);
                continue;
            }
            hub.cur().state.set(State::Running);
            panic!(
                "eventlet: deadlock: the main context of this thread is parked, and no green thread, timer, \
                 I/O wait, tokio task or wake-up from another thread is left to wake it"
            );
        }
        if let Some(deadline) = next {
            let mut slot = inner.sleep.borrow_mut();
            let deadline = ::tokio::time::Instant::from_std(deadline);
            let sleep = slot.get_or_insert_with(|| Box::pin(::tokio::time::sleep_until(deadline)));
            if sleep.deadline() != deadline {
                sleep.as_mut().reset(deadline);
            }
            if sleep.as_mut().poll(cx).is_ready() {
                continue;
            }
        }
        if !io_registered && hub.reactor.waiters() > 0 {
            if inner.poll_fd().poll_read_ready(cx).is_ready() {
                continue;
            }
            io_registered = true;
        }
        let fresh = !hub.tokio.waker.borrow().as_ref().is_some_and(|w| w.will_wake(cx.waker()));
        if fresh {
            // Published for other threads only when it changes: a wait
            // costs no lock and no clone.
            let w = cx.waker().clone();
            let old = hub.shared.loop_waker.lock().unwrap_or_else(|e| e.into_inner()).replace(w.clone());
            drop(old);
            let old = hub.tokio.waker.replace(Some(w));
            drop(old);
        }
        hub.tokio.idle.set(true);
        hub.shared.sleeping.store(remote::IN_TOKIO, Ordering::SeqCst);
        if hub.shared.pending.load(Ordering::SeqCst) {
            hub.shared.sleeping.store(remote::AWAKE, Ordering::SeqCst);
            hub.tokio.idle.set(false);
            continue;
        }
        hub.tokio.idle_with_tasks.set(hub.tokio.tasks_alive());
        return Poll::Pending;
    }
}
