//! The hub: one per OS thread, created on first use.
//!
//! The hub owns the run queue (FIFO), the timers, the reactor (`mio::Poll`)
//! and a queue of wake-ups sent from other OS threads. Its loop runs on the
//! stack of the *root* context — the OS thread's own code, such as `main` —
//! whenever the root parks: it runs a batch of ready green threads, polls for
//! I/O (without blocking while work is queued, at least every 61 green
//! threads run, and whenever a green thread yields), fires due timers, and
//! stops as soon as the root itself is woken. A green thread that parks
//! switches back to that loop; the loop switches into the next ready one.
//!
//! Green threads spawned on an OS thread whose root never parks (never
//! joins, sleeps or does green I/O) do not run, as in eventlet. When an OS
//! thread exits, its green threads that never started are run once with a
//! kill pending, so their closures (and what they own) are dropped; those
//! still parked are leaked with their stacks, not unwound (their hub is
//! gone, so their destructors could not run green code), and so are scoped
//! green threads that never started (their closures may borrow thread-locals
//! already destroyed). The green-locals of leaked green threads are dropped
//! (they are `'static`), which also tells whoever joins them from another
//! thread (`RemoteJoinHandle`, `GreenFuture`) that they were killed. Give
//! such threads an end (join them) before the thread returns.
//!
//! The files: `task` (a green thread's block and the references to it),
//! `life` (how a green thread ends), `park` (how one waits), `run` (the
//! loop), `remote` (wake-ups from other OS threads), `inspect` (`stats`,
//! `threads`), `io` (the reactor), `timers`, `runq` (the run queue),
//! `handle` (hub threads and handles to spawn onto a hub), `group` (a hub
//! per core), `watchdog`.

mod group;
mod handle;
mod inspect;
pub(crate) mod io;
mod life;
mod park;
mod remote;
mod run;
mod runq;
mod task;
mod timers;
#[cfg(feature = "tokio")]
pub(crate) mod tokio;
pub(crate) mod trampoline;
mod watchdog;

pub use group::{cores, inspect, Group, GroupBuilder, HubReport};
pub use handle::{handle, start, Handle, HubGone, HubThread, RemoteJoinHandle};
pub use inspect::{stats, threads, IoWait, Stats, ThreadInfo, ThreadState};
pub use remote::Unparker;
pub use trampoline::{trampoline, Interest};
pub use watchdog::{watchdog, Stall};

pub(crate) use remote::{HubShared, Remote};
pub(crate) use task::{Kill, Packet, State, Task, TaskRef, Typed};
pub(crate) use timers::TimerKey;

use std::cell::{Cell, RefCell};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use slab::Slab;

use crate::report;
use crate::stack::{self, StackPool};
use crate::sys;
use task::BlockCache;
use timers::Timers;

/// Ready green threads run per loop iteration before the hub looks at
/// timers again.
const BATCH: usize = 256;
/// Green threads run between two non-blocking I/O polls while busy.
const IO_INTERVAL: u32 = 61;
/// I/O operations a green thread may complete without blocking before it
/// yields to the others (tokio's coop budget is the model).
pub const BUDGET: u32 = 128;

/// The token of the hub's waker in its `mio::Poll`.
const WAKER_TOKEN: mio::Token = mio::Token(usize::MAX);

static NEXT_HUB_ID: AtomicU64 = AtomicU64::new(1);

/// Why a park returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wakeup {
    /// Someone called `unpark` (or an unpark was already pending).
    Unparked,
    /// The deadline passed first.
    TimedOut,
}

/// The payload a killed green thread's `join` returns: see
/// [`JoinHandle::kill`](crate::JoinHandle::kill).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Killed;

impl fmt::Display for Killed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("green thread was killed")
    }
}

impl std::error::Error for Killed {}

/// Parks the running green thread (or root) until `done()`, checked after
/// every wake-up. An expired [`Timeout`](crate::Timeout) (or a refused wait)
/// unwinds with its `Elapsed`, unless `done()` holds by then: the outcome
/// wins, and the timeout fires at the next blocking call.
#[inline]
pub(crate) fn park_until(mut done: impl FnMut() -> bool) {
    while !done() {
        if let Err(e) = with_hub(|h| h.park_result(None)) {
            if !done() {
                std::panic::resume_unwind(Box::new(e));
            }
            return;
        }
    }
}

/// Whether the running green thread (or root) may switch away now (see
/// [`Hub::cannot_switch`]); without a hub, whether the thread is not
/// panicking.
pub(crate) fn may_switch() -> bool {
    peek_hub(|h| !h.cannot_switch(h.cur())).unwrap_or_else(|| !std::thread::panicking())
}

/// Whether any green thread of this OS thread's hub is ready to run (a
/// cheap check for code deciding whether to spin).
pub(crate) fn others_ready() -> bool {
    with_hub(|h| !h.queue.is_empty() || !h.yielded.is_empty())
}

pub use crate::stack::GuardMode;

/// Returns how this process installs stack guard pages.
pub fn guard_mode() -> GuardMode {
    stack::guard_mode()
}

pub(crate) struct Hub {
    pub(crate) id: u64,
    queue: runq::RunQueue,
    /// Green threads that yielded while others wait for I/O: they rejoin
    /// the run queue after the next I/O poll and timers (see `yield_now`).
    yielded: runq::RunQueue,
    /// The running green thread, or the root. Points to a task
    /// kept alive by `run_task` (green threads) or the task slab (root).
    current: Cell<*const Task>,
    tasks: RefCell<Slab<TaskRef>>,
    timers: RefCell<Timers>,
    pub(crate) reactor: io::Reactor,
    pub(crate) shared: Arc<HubShared>,
    /// The buffer swapped in for the remote queue's messages when they are
    /// taken (see `drain_remote`).
    remote_spare: Cell<Vec<Remote>>,
    stacks: RefCell<StackPool>,
    blocks: BlockCache,
    budget: Cell<u32>,
    /// Spare timers armed (see [`Hub::park_io`]); `stats` leaves them out.
    spares: Cell<usize>,
    ticks: Cell<u32>,
    io_requested: Cell<bool>,
    /// Whether this hub runs on a `hub::start` thread (idle is not a deadlock).
    serving: Cell<bool>,
    next_id: Cell<u64>,
    /// Wakers of futures awaiting a green thread's end
    /// ([`JoinHandle`](crate::JoinHandle) as a future), by task id: one
    /// each (a `JoinHandle` is not `Clone`). A map: thousands may wait at
    /// once, and each end and each poll looks its own up.
    pub(crate) join_wakers: RefCell<std::collections::HashMap<u64, std::task::Waker>>,
    /// The wakers `block_on` polls with (see [`crate::future::Wakers`]).
    pub(crate) block_on_wakers: crate::future::Wakers,
    /// Green threads (and the root) waiting in `block_on`: their wakers
    /// may be anywhere, so while any waits the hub may be woken from
    /// outside.
    pub(crate) futures_waiting: Cell<usize>,
    /// This hub's tokio runtime (feature `tokio`).
    #[cfg(feature = "tokio")]
    pub(crate) tokio: tokio::Bridge,
    /// Raw descriptors registered for the waits of [`trampoline`].
    pub(crate) raw_waits: trampoline::RawWaits,
}

thread_local! {
    /// This OS thread's hub, made on first use (not cached if that fails,
    /// so a thread out of descriptors can try again later).
    static HUB: std::cell::OnceCell<Hub> = const { std::cell::OnceCell::new() };
    /// Fast path to `HUB` once it exists: a plain pointer load instead of the
    /// lazy thread-local's state check. Cleared first thing in `Hub::drop`.
    static HUB_PTR: Cell<*const Hub> = const { Cell::new(std::ptr::null()) };
}

/// Runs `f` with this OS thread's hub, making it first if needed.
///
/// # Panics
///
/// If the hub cannot be made (no descriptors left: the message says so) or
/// the thread is exiting and its hub is gone. Calls that can return an
/// `io::Error` use [`try_hub`] instead.
#[inline(always)]
pub(crate) fn with_hub<R>(f: impl FnOnce(&Hub) -> R) -> R {
    let p = HUB_PTR.with(Cell::get);
    if !p.is_null() {
        // SAFETY: `HUB_PTR` is set to this thread's `HUB` once it exists and
        // cleared at the start of its destructor, so a non-null pointer
        // points to a live hub owned by this thread.
        return f(unsafe { &*p });
    }
    with_new_hub(f)
}

/// Whether the code running now may park on this OS thread's hub: the hub
/// exists, and what runs is a green thread or the root's own code (not
/// the hub loop, which runs on the root's stack while the root is parked
/// or ready). Never creates a hub. For the patcher, on every patched call.
#[cfg(feature = "monkey-patch")]
#[inline]
pub(crate) fn may_park_here() -> bool {
    peek_hub(|h| h.cur().state.get() == State::Running).unwrap_or(false)
}

/// [`with_hub`] the first time on this thread: makes the hub.
#[cold]
#[inline(never)]
fn with_new_hub<R>(f: impl FnOnce(&Hub) -> R) -> R {
    match make_hub() {
        // SAFETY: `make_hub` returns this thread's live hub (see there).
        Ok(h) => f(unsafe { &*h }),
        Err(e) => panic!("eventlet: {e}"),
    }
}

/// Like [`with_hub`], but a hub that cannot be made (or is gone, the thread
/// exiting) is an error.
#[inline]
pub(crate) fn try_hub<R>(f: impl FnOnce(&Hub) -> R) -> std::io::Result<R> {
    let p = HUB_PTR.try_with(Cell::get).unwrap_or(std::ptr::null());
    if !p.is_null() {
        // SAFETY: as in `with_hub`.
        return Ok(f(unsafe { &*p }));
    }
    // SAFETY: `make_hub` returns this thread's live hub (see there).
    make_hub().map(|h| f(unsafe { &*h }))
}

/// Like [`with_hub`] but returns `None` while the thread is being torn down
/// or if its hub cannot be made.
#[inline]
pub(crate) fn try_with_hub<R>(f: impl FnOnce(&Hub) -> R) -> Option<R> {
    try_hub(f).ok()
}

/// Runs `f` with this OS thread's hub if it has one; never makes one.
/// Wake-ups and deregistrations use this: a plain OS thread that wakes a
/// green thread elsewhere needs no hub of its own.
#[inline]
pub(crate) fn peek_hub<R>(f: impl FnOnce(&Hub) -> R) -> Option<R> {
    let p = HUB_PTR.try_with(Cell::get).ok()?;
    // SAFETY: as in `with_hub`.
    (!p.is_null()).then(|| f(unsafe { &*p }))
}

/// This thread's hub, made now if it does not exist yet. The pointer is to
/// the thread-local, so it is valid on this thread until its thread-local
/// destructors run (it is also stored in `HUB_PTR`, cleared then).
#[cold]
fn make_hub() -> std::io::Result<*const Hub> {
    let gone = || std::io::Error::other("this OS thread is exiting and its hub is gone");
    let p = HUB
        .try_with(|cell| -> std::io::Result<*const Hub> {
            if cell.get().is_none() {
                let hub = Hub::new()
                    .map_err(|e| std::io::Error::new(e.kind(), format!("cannot create this OS thread's hub: {e}")))?;
                // `Hub::new` runs no code that could have made one meanwhile.
                let _ = cell.set(hub);
            }
            let h: *const Hub = cell.get().ok_or_else(gone)?;
            Ok(h)
        })
        .map_err(|_| gone())??;
    HUB_PTR.try_with(|c| c.set(p)).map_err(|_| gone())?;
    Ok(p)
}

impl Hub {
    fn new() -> std::io::Result<Hub> {
        sys::install_overflow_handler();
        report::install_hook();
        let id = NEXT_HUB_ID.fetch_add(1, Ordering::Relaxed);
        let poll = mio::Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = mio::Waker::new(poll.registry(), WAKER_TOKEN)?;
        let shared = Arc::new(HubShared {
            id,
            registry,
            waker,
            queue: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            sleeping: AtomicU8::new(remote::AWAKE),
            handles: AtomicUsize::new(0),
            switches: AtomicU64::new(0),
            running: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
            #[cfg(feature = "tokio")]
            loop_waker: Mutex::new(None),
        });
        #[cfg(feature = "tokio")]
        let tokio = tokio::Bridge::new()?;
        watchdog::start_from_env(&shared);
        let root: TaskRef = Typed::new(id << 40, Some("main".into()), (), None).task;
        root.state.set(State::Running);
        let mut tasks = Slab::new();
        let key = tasks.insert(root.clone());
        debug_assert_eq!(key, 0);
        root.key.set(key);
        Ok(Hub {
            id,
            queue: runq::RunQueue::new(),
            yielded: runq::RunQueue::new(),
            current: Cell::new(root.as_ptr()),
            tasks: RefCell::new(tasks),
            timers: RefCell::new(Timers::new()),
            reactor: io::Reactor::new(poll),
            shared,
            stacks: RefCell::new(StackPool::new()),
            blocks: BlockCache::new(),
            budget: Cell::new(BUDGET),
            spares: Cell::new(0),
            ticks: Cell::new(0),
            io_requested: Cell::new(false),
            serving: Cell::new(false),
            next_id: Cell::new(1),
            join_wakers: RefCell::new(std::collections::HashMap::new()),
            block_on_wakers: RefCell::new(Vec::new()),
            remote_spare: Cell::new(Vec::new()),
            futures_waiting: Cell::new(0),
            #[cfg(feature = "tokio")]
            tokio,
            raw_waits: trampoline::RawWaits::default(),
        })
    }

    /// The green thread (or root) running now.
    #[inline]
    pub(crate) fn current(&self) -> TaskRef {
        let p = self.current.get();
        // SAFETY: `p` points to a task that is alive while it is current
        // (see the field's comment).
        unsafe { TaskRef::from_ptr(p) }
    }

    /// The slot and id of the green thread (or root) running now.
    #[inline]
    pub(crate) fn current_key_id(&self) -> (usize, u64) {
        let cur = self.cur();
        (cur.key.get(), cur.id)
    }

    /// The running green thread (or root), borrowed.
    #[inline]
    fn cur(&self) -> &Task {
        // SAFETY: the current task outlives every use of this borrow: callers
        // use it only while they themselves are that task, running or parked.
        unsafe { &*self.current.get() }
    }

    /// The green thread (or root) running now, uncounted: valid while it
    /// is alive, for waiters that live on its stack.
    #[inline]
    pub(crate) fn current_ptr(&self) -> *const Task {
        self.current.get()
    }

    /// [`unpark`](Self::unpark) by pointer.
    ///
    /// # Safety
    ///
    /// `p` points to a live task of this hub.
    #[inline]
    pub(crate) unsafe fn unpark_ptr(&self, p: *const Task) {
        // SAFETY: per the contract.
        let t = unsafe { &*p };
        match t.state.get() {
            State::Parked => {
                t.state.set(State::Ready);
                t.wake.set(Wakeup::Unparked);
                // SAFETY: `p` is live; the queue keeps the count taken here.
                self.queue.push_back(unsafe { TaskRef::from_ptr(p) });
                #[cfg(feature = "tokio")]
                self.tokio.wake_idle();
            }
            State::Done => {}
            _ => t.notified.set(true),
        }
    }

    /// Makes a parked green thread ready; otherwise leaves a token so its
    /// next park returns at once.
    pub(crate) fn unpark(&self, t: &TaskRef) {
        // SAFETY: `t`'s count keeps the task alive.
        unsafe { self.unpark_ptr(t.as_ptr()) }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = HUB_PTR.try_with(|c| c.set(std::ptr::null()));
        // Its tokio runtime goes first: its tasks' futures are dropped
        // while the hub's state is still whole.
        #[cfg(feature = "tokio")]
        {
            self.tokio.shutdown();
            // And the loop's waker, kept for wake-ups from other threads:
            // it holds the runtime's driver (its descriptors), which would
            // live on with any waker, `Unparker` or handle of this hub.
            drop(self.shared.loop_waker.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        // From now on `Handle::spawn` refuses; what was sent and not run is
        // dropped here (closures not run, as for a killed green thread).
        let unrun = {
            let mut q = self.shared.queue.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.alive.store(false, Ordering::SeqCst);
            std::mem::take(&mut *q)
        };
        for m in unrun {
            report::contain(|| drop(m));
        }
        // The root context's green-locals: dropped here, each contained (a
        // panic escaping a thread-local's destructor aborts the process; a
        // wait there finds the hub gone and panics, contained too).
        drop_locals_contained(&self.tasks.get_mut()[0]);
        // Green threads that never started: each runs once, with a kill
        // pending, so that its body drops its closure unrun on its own
        // stack (their sockets and everything else they own are closed).
        // Not a scoped one: its closure may borrow this thread's
        // thread-locals, some perhaps destroyed by now (the owner of its
        // scope, parked inside `with`, is leaked below); it is leaked too.
        let unstarted: Vec<TaskRef> = self
            .tasks
            .get_mut()
            .iter()
            .filter(|(_, t)| !t.is_root() && !t.is_done() && !t.started() && !t.borrows.get())
            .map(|(_, t)| t.clone())
            .collect();
        for t in unstarted {
            if let Some(key) = t.timer.take() {
                self.timers.borrow_mut().cancel(key);
            }
            t.kill.set(Kill::Pending);
            self.run_task(t);
        }
        // Green threads still parked when their OS thread exits, and
        // scoped ones that never started, are leaked with their stacks, not
        // unwound or dropped: that would run their destructors while this
        // thread's hub (and perhaps what they borrow) is already gone.
        let mut leaked = Vec::new();
        for (_, t) in self.tasks.get_mut().iter() {
            if !t.is_root() && !t.is_done() {
                // SAFETY: the hub loop is not running (the thread is exiting),
                // so nothing else touches the cell.
                if let Some(c) = unsafe { (*t.coro.get()).take() } {
                    std::mem::forget(c);
                }
                leaked.push(t.clone());
            }
        }
        // Their green-locals are `'static` values the leaked frames hold
        // only through counted references of their own (`LocalKey::with`
        // clones the value out), so they can be dropped: their guards then
        // answer whoever joins those green threads from another thread
        // (`local::keep_until_end`) instead of leaving them waiting forever.
        for t in leaked {
            drop_locals_contained(&t);
        }
    }
}

/// Drops the green-locals of `t` one at a time, each contained (a panic
/// escaping a thread-local's destructor would abort the process), over and
/// over while destructors make new ones, at its OS thread's exit.
fn drop_locals_contained(t: &Task) {
    loop {
        let locals = match t.locals.try_borrow_mut() {
            Ok(mut l) => l.take(),
            Err(_) => None,
        };
        let Some(mut locals) = locals else { break };
        for (_, value) in locals.drain() {
            report::contain(|| drop(value));
        }
    }
}
