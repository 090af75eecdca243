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
//! joins, sleeps or does green I/O) do not run, as in eventlet. Green
//! threads still parked when their OS thread exits are leaked with their
//! stacks, not unwound (their hub is gone, so their destructors could not
//! run green code); give such threads an end (join them) before the thread
//! returns.

mod group;
pub(crate) mod io;
mod runq;
mod threads;
mod timers;
pub(crate) mod trampoline;
mod watchdog;

pub use group::{cores, inspect, Group, GroupBuilder, HubReport};
pub use threads::{handle, start, Handle, HubGone, HubThread, RemoteJoinHandle};
pub use trampoline::{trampoline, Interest};
pub use watchdog::{watchdog, Stall};

use std::alloc::Layout;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::panic::{self, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corosensei::{Coroutine, CoroutineResult, Yielder};
use slab::Slab;

use crate::report;
use crate::stack::{self, GreenStack, StackPool};
use crate::sys::{self, RunningInfo};
use crate::timeout::Elapsed;
pub(crate) use timers::TimerKey;
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// In the run queue.
    Ready,
    /// Waiting for its start timer (`spawn_after`).
    Delayed,
    /// Running now.
    Running,
    /// Parked, waiting for an unpark or its deadline.
    Parked,
    /// Finished, killed or never started.
    Done,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kill {
    No,
    Pending,
    Delivered,
}

type Coro = Coroutine<(), (), (), GreenStack>;

/// A green thread as the hub sees it. It lives in a heap block shared by
/// [`TaskRef`]s (its slot for the result follows it, see [`Typed`]).
///
/// `repr(C)`, hot fields first: what the hub loop, `park` and `unpark` touch
/// on every switch sits in the first 112 bytes (two cache lines, where the
/// default layout spread it over five), which matters once thousands of
/// green threads take turns.
#[repr(C)]
pub(crate) struct Task {
    refs: Cell<usize>,
    /// The next task in the run queue.
    next: Cell<*const Task>,
    yielder: Cell<*const Yielder<(), ()>>,
    /// An address near where its stack is resumed (0: never suspended).
    stack_hint: Cell<usize>,
    pub(crate) id: u64,
    pub(crate) key: Cell<usize>,
    pub(crate) state: Cell<State>,
    notified: Cell<bool>,
    pub(crate) kill: Cell<Kill>,
    /// Whether it is in the run queue.
    queued: Cell<bool>,
    wake: Cell<Wakeup>,
    /// Whether `timeouts` is non-empty (read by every park).
    timed: Cell<bool>,
    /// Whether `timer` is a spare: armed by an earlier socket wait and
    /// kept for the next one, nobody waiting on it (see [`Hub::park_io`]).
    spared: Cell<bool>,
    /// Frees the block this task heads (it knows the slot's type).
    free: unsafe fn(NonNull<Task>),
    coro: UnsafeCell<Option<Coro>>,
    timer: Cell<Option<TimerKey>>,
    /// Live `Timeout`s of this green thread: (deadline, id, duration).
    timeouts: RefCell<Vec<(Instant, u64, Duration)>>,
    pub(crate) name: Option<Box<str>>,
    joiner: Cell<Option<TaskRef>>,
    info: Cell<RunningInfo>,
    /// Its green-local values (`green_local!`), dropped when it ends.
    pub(crate) locals: RefCell<Option<Box<crate::local::Locals>>>,
    /// The address of the `GreenPool` whose job this green thread runs (0
    /// if none), so `waitall` can refuse to wait for itself.
    pub(crate) pool: Cell<usize>,
    /// The descriptor it is parked on, for [`threads`].
    pub(crate) io_wait: Cell<Option<(std::os::fd::RawFd, io::Direction)>>,
    /// Whether nobody will take its result: a `spawn_n` green thread, or
    /// one whose `JoinHandle` was dropped. Its body then drops the result
    /// itself, on its own stack (see [`body`]).
    pub(crate) detached: Cell<bool>,
}

/// The heap block of a green thread: the task, then the slot its result
/// goes to. `repr(C)` puts the task at offset 0, so a pointer to the block
/// is a pointer to its task.
#[repr(C)]
struct Block<S> {
    task: Task,
    slot: S,
}

/// A counted, thin reference to a [`Task`] (a single-threaded `Rc` whose
/// pointer does not carry the slot's type, so the hub's queues and fields
/// hold one word per task and reach every field at a fixed offset).
pub(crate) struct TaskRef {
    ptr: NonNull<Task>,
}

/// A [`TaskRef`] that knows its slot's type: what a `JoinHandle` holds.
pub(crate) struct Typed<S> {
    task: TaskRef,
    _slot: PhantomData<S>,
}

/// The allocation every task block fits in unless its result is more than a
/// few words (see [`BlockCache`]): a 256-byte task and up to 56 bytes of
/// result slot, 320 bytes with glibc's chunk header.
const BLOCK: Layout = match Layout::from_size_align(312, 16) {
    Ok(l) => l,
    Err(_) => panic!("bad block layout"),
};
/// Free blocks a hub keeps for reuse at most.
const CACHED_BLOCKS: usize = 1024;

/// Whether a `Block<S>` is carved from a [`BLOCK`] allocation (a property of
/// `S` alone, so allocation and free always agree).
const fn fits_block<S>() -> bool {
    let l = Layout::new::<Block<S>>();
    l.size() <= BLOCK.size() && l.align() <= BLOCK.align()
}

/// A hub's free task blocks: spawning and retiring a green thread takes and
/// gives back one of these instead of a trip through the global allocator
/// each (glibc's `malloc` and `free` were a seventh of an empty green
/// thread's spawn, run and join).
struct BlockCache {
    free: RefCell<Vec<NonNull<u8>>>,
}

impl BlockCache {
    fn new() -> BlockCache {
        BlockCache { free: RefCell::new(Vec::new()) }
    }

    /// A [`BLOCK`]-sized allocation, uninitialised.
    fn take(&self) -> NonNull<u8> {
        match self.free.borrow_mut().pop() {
            Some(p) => p,
            None => alloc_block(),
        }
    }

    /// Takes back a [`BLOCK`]-sized allocation whose contents were dropped.
    ///
    /// # Safety
    ///
    /// `p` came from [`take`](Self::take) or [`alloc_block`] and is not used
    /// again by the caller.
    unsafe fn give(&self, p: NonNull<u8>) {
        let mut free = self.free.borrow_mut();
        if free.len() < CACHED_BLOCKS {
            free.push(p);
        } else {
            // SAFETY: per the contract, `p` is a live `BLOCK` allocation.
            unsafe { std::alloc::dealloc(p.as_ptr(), BLOCK) }
        }
    }
}

impl Drop for BlockCache {
    fn drop(&mut self) {
        for p in self.free.get_mut().drain(..) {
            // SAFETY: every cached pointer is a `BLOCK` allocation nobody uses.
            unsafe { std::alloc::dealloc(p.as_ptr(), BLOCK) }
        }
    }
}

/// A fresh [`BLOCK`] allocation.
fn alloc_block() -> NonNull<u8> {
    // SAFETY: `BLOCK` has a non-zero size.
    let p = unsafe { std::alloc::alloc(BLOCK) };
    NonNull::new(p).unwrap_or_else(|| std::alloc::handle_alloc_error(BLOCK))
}

/// Frees a block made by [`Typed::new`] with slot type `S`: drops it, then
/// gives its memory to this thread's hub's [`BlockCache`] (or back to the
/// allocator once the hub is gone).
///
/// # Safety
///
/// `p` points to a live `Block<S>` made by `Typed::new`, whose count has
/// dropped to zero.
unsafe fn free_block<S>(p: NonNull<Task>) {
    let p = p.cast::<Block<S>>();
    // SAFETY: per the contract the block is live and unreferenced. If a
    // destructor panics, the memory leaks, which is safe.
    unsafe { std::ptr::drop_in_place(p.as_ptr()) };
    if fits_block::<S>() {
        let hub = HUB_PTR.try_with(Cell::get).unwrap_or(std::ptr::null());
        if hub.is_null() {
            // SAFETY: `Typed::new` allocated it with the `BLOCK` layout.
            unsafe { std::alloc::dealloc(p.as_ptr().cast(), BLOCK) }
        } else {
            // SAFETY: a non-null `HUB_PTR` is this thread's live hub (see
            // `with_hub`); the block came from a `BLOCK` allocation.
            unsafe { (*hub).blocks.give(p.cast()) }
        }
    } else {
        // SAFETY: `Typed::new` allocated it as a `Box<MaybeUninit<Block<S>>>`
        // and its contents were dropped above.
        drop(unsafe { Box::from_raw(p.as_ptr().cast::<std::mem::MaybeUninit<Block<S>>>()) });
    }
}

impl<S> Typed<S> {
    /// Makes a task block, from `cache` when it fits a [`BLOCK`].
    fn new(id: u64, name: Option<Box<str>>, slot: S, cache: Option<&BlockCache>) -> Typed<S> {
        let p: NonNull<Block<S>> = if fits_block::<S>() {
            cache.map_or_else(alloc_block, BlockCache::take).cast()
        } else {
            NonNull::from(Box::leak(Box::<Block<S>>::new_uninit())).cast()
        };
        // SAFETY: `p` is a fresh allocation with room and alignment for a
        // `Block<S>`. Written in place: a `Box::new` built the block on the
        // stack first and copied it.
        unsafe { p.as_ptr().write(Block { task: Task::new(id, name, free_block::<S>), slot }) };
        // `Block` is `repr(C)` with the task first: same address.
        Typed { task: TaskRef { ptr: p.cast() }, _slot: PhantomData }
    }

    /// The untyped reference.
    pub(crate) fn task(&self) -> &TaskRef {
        &self.task
    }

    /// The result slot.
    pub(crate) fn slot(&self) -> &S {
        // SAFETY: the block was made by `new` as a `Block<S>` (the only way to
        // get a `Typed<S>`) and our count keeps it alive.
        unsafe { &(*self.task.ptr.as_ptr().cast::<Block<S>>()).slot }
    }
}

impl<S> std::ops::Deref for Typed<S> {
    type Target = Task;

    fn deref(&self) -> &Task {
        &self.task
    }
}

impl<S> Clone for Typed<S> {
    fn clone(&self) -> Typed<S> {
        Typed { task: self.task.clone(), _slot: PhantomData }
    }
}

impl TaskRef {
    /// Takes a new count on the task at `p`.
    ///
    /// # Safety
    ///
    /// `p` points to a live task (someone holds a count on it).
    unsafe fn from_ptr(p: *const Task) -> TaskRef {
        // SAFETY: per the contract.
        let task = unsafe { &*p };
        task.refs.set(task.refs.get() + 1);
        TaskRef { ptr: NonNull::from(task) }
    }

    fn as_ptr(&self) -> *const Task {
        self.ptr.as_ptr()
    }

    /// Gives up the reference without its count, for [`from_raw`](Self::from_raw).
    fn into_raw(t: TaskRef) -> *const Task {
        std::mem::ManuallyDrop::new(t).ptr.as_ptr()
    }

    /// Takes back a count given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `p` came from `into_raw`, and its count is taken back once.
    unsafe fn from_raw(p: *const Task) -> TaskRef {
        // SAFETY: `into_raw` had a non-null pointer.
        TaskRef { ptr: unsafe { NonNull::new_unchecked(p.cast_mut()) } }
    }

    /// Whether both refer to the same green thread.
    pub(crate) fn ptr_eq(a: &TaskRef, b: &TaskRef) -> bool {
        a.ptr == b.ptr
    }
}

impl std::ops::Deref for TaskRef {
    type Target = Task;

    #[inline]
    fn deref(&self) -> &Task {
        // SAFETY: our count keeps the task alive.
        unsafe { self.ptr.as_ref() }
    }
}

impl Clone for TaskRef {
    #[inline]
    fn clone(&self) -> TaskRef {
        let refs = &self.refs;
        // As `Rc` does: a count that would overflow cannot be handled.
        let n = refs.get().checked_add(1).unwrap_or_else(|| std::process::abort());
        refs.set(n);
        TaskRef { ptr: self.ptr }
    }
}

impl Drop for TaskRef {
    #[inline]
    fn drop(&mut self) {
        let n = self.refs.get() - 1;
        self.refs.set(n);
        if n == 0 {
            let free = self.free;
            // SAFETY: the count is zero, so this was the last reference, and
            // `free` was chosen for this block's slot type in `Typed::new`.
            unsafe { free(self.ptr) }
        }
    }
}

/// Where a `spawn`ed green thread's result lands.
pub(crate) type Packet<T> = RefCell<Option<std::thread::Result<T>>>;

impl Task {
    fn new(id: u64, name: Option<Box<str>>, free: unsafe fn(NonNull<Task>)) -> Task {
        Task {
            refs: Cell::new(1),
            next: Cell::new(std::ptr::null()),
            yielder: Cell::new(std::ptr::null()),
            stack_hint: Cell::new(0),
            id,
            key: Cell::new(usize::MAX),
            state: Cell::new(State::Ready),
            notified: Cell::new(false),
            kill: Cell::new(Kill::No),
            queued: Cell::new(false),
            wake: Cell::new(Wakeup::Unparked),
            timed: Cell::new(false),
            spared: Cell::new(false),
            free,
            coro: UnsafeCell::new(None),
            timer: Cell::new(None),
            timeouts: RefCell::new(Vec::new()),
            name,
            joiner: Cell::new(None),
            info: Cell::new(RunningInfo::NONE),
            locals: RefCell::new(None),
            pool: Cell::new(0),
            io_wait: Cell::new(None),
            detached: Cell::new(false),
        }
    }
}

impl Task {
    pub(crate) fn is_root(&self) -> bool {
        self.key.get() == 0
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.get() == State::Done
    }

    /// Whether the green thread's body has begun to run.
    fn started(&self) -> bool {
        // SAFETY: the coroutine cell is only mutated by the hub loop (resume,
        // finish) and `Hub::drop`, never while this shared read runs.
        unsafe { (*self.coro.get()).as_ref().is_some_and(|c| c.started()) }
    }

    /// The earliest live `Timeout`: (deadline, id, duration).
    fn earliest_timeout(&self) -> Option<(Instant, u64, Duration)> {
        if !self.timed.get() {
            return None;
        }
        self.timeouts.borrow().iter().copied().min_by_key(|t| t.0)
    }

    /// Adds a live `Timeout`: (deadline, id, duration).
    pub(crate) fn add_timeout(&self, t: (Instant, u64, Duration)) {
        self.timeouts.borrow_mut().push(t);
        self.timed.set(true);
    }

    /// Removes the `Timeout` numbered `id`.
    pub(crate) fn remove_timeout(&self, id: u64) {
        let mut ts = self.timeouts.borrow_mut();
        ts.retain(|t| t.1 != id);
        self.timed.set(!ts.is_empty());
    }

    /// Takes every live `Timeout` away, to hold them back for a while.
    pub(crate) fn take_timeouts(&self) -> Vec<(Instant, u64, Duration)> {
        self.timed.set(false);
        std::mem::take(&mut *self.timeouts.borrow_mut())
    }

    /// Gives back timeouts taken with [`take_timeouts`](Self::take_timeouts).
    pub(crate) fn restore_timeouts(&self, held_back: Vec<(Instant, u64, Duration)>) {
        let mut ts = self.timeouts.borrow_mut();
        ts.extend(held_back);
        self.timed.set(!ts.is_empty());
    }

    pub(crate) fn set_joiner(&self, t: TaskRef) {
        self.joiner.set(Some(t));
    }

    pub(crate) fn take_joiner(&self) -> Option<TaskRef> {
        self.joiner.take()
    }
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

/// A wake-up sent to a hub from another OS thread.
pub(crate) enum Remote {
    Unpark {
        key: usize,
        id: u64,
    },
    FreeSlot(usize),
    /// Spawn a green thread running this (from [`Handle::spawn`]).
    Spawn(Box<dyn FnOnce() + Send>),
    /// Nothing: look again whether anything is left to do.
    Wake,
}

/// The part of a hub other OS threads may touch.
pub(crate) struct HubShared {
    pub(crate) id: u64,
    pub(crate) registry: mio::Registry,
    waker: mio::Waker,
    queue: Mutex<Vec<Remote>>,
    pending: AtomicBool,
    sleeping: AtomicBool,
    /// Live `Unparker`s: while any exists, something outside may wake us.
    pub(crate) handles: AtomicUsize,
    /// Green threads switched to so far (written by the hub only; read by
    /// its watchdog).
    switches: AtomicU64,
    /// The id of the green thread running now (0: the hub loop or root).
    running: AtomicU64,
    /// Green threads alive (written by the hub only; read by a [`Group`]
    /// to find its least loaded hub).
    pub(crate) live: AtomicUsize,
    /// Cleared (under `queue`'s lock) when the hub's thread exits: nothing
    /// sent after that would ever be received.
    alive: AtomicBool,
}

impl HubShared {
    pub(crate) fn send(&self, msg: Remote) {
        self.send_with(|| msg);
    }

    /// Makes a message with `make` and sends it, unless the hub's thread has
    /// exited: then `make` is not called. Returns whether it was sent.
    pub(crate) fn send_with(&self, make: impl FnOnce() -> Remote) -> bool {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !self.alive.load(Ordering::SeqCst) {
                return false;
            }
            q.push(make());
        }
        self.pending.store(true, Ordering::SeqCst);
        if self.sleeping.load(Ordering::SeqCst) {
            let _ = self.waker.wake();
        }
        true
    }
}

/// A snapshot of one hub's counters, from [`stats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Green threads alive on this hub (spawned and not finished).
    pub green_threads: usize,
    /// Green threads in the run queue.
    pub ready: usize,
    /// Armed timers (sleeps, deadlines, delayed spawns).
    pub timers: usize,
    /// Sockets registered with this hub's reactor.
    pub io_registrations: usize,
    /// Green threads parked waiting for socket readiness.
    pub io_waiters: usize,
    /// Stacks in use by green threads.
    pub stacks_in_use: usize,
    /// Free stacks kept for reuse.
    pub stacks_pooled: usize,
    /// Green threads switched to since the hub started.
    pub switches: u64,
}

/// Returns the counters of the current OS thread's hub (creating it if
/// needed).
pub fn stats() -> Stats {
    with_hub(|h| Stats {
        green_threads: h.tasks.borrow().len() - 1,
        ready: h.queue.len() + h.yielded.len(),
        timers: h.timers.borrow().len() - h.spares.get(),
        io_registrations: h.reactor.registrations(),
        io_waiters: h.reactor.waiters(),
        stacks_in_use: h.stacks.borrow().outstanding(),
        stacks_pooled: h.stacks.borrow().pooled(),
        switches: h.shared.switches.load(Ordering::Relaxed),
    })
}

/// Parks the running green thread (or root) until `done()`, checked after
/// every wake-up. An expired [`Timeout`](crate::Timeout) (or a refused wait)
/// unwinds with its `Elapsed`, unless `done()` holds by then: the outcome
/// wins, and the timeout fires at the next blocking call.
#[inline]
pub(crate) fn park_until(mut done: impl FnMut() -> bool) {
    while !done() {
        if let Err(e) = with_hub(|h| h.park_result(None)) {
            if !done() {
                panic::resume_unwind(Box::new(e));
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

/// What a green thread is doing: one entry of [`threads`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// Its id ([`GreenThread::id`](crate::GreenThread::id)).
    pub id: u64,
    /// Its name, if it has one (the root context is `main`).
    pub name: Option<String>,
    /// Whether this is the OS thread's root context rather than a green
    /// thread.
    pub is_root: bool,
    /// Where it is in its life.
    pub state: ThreadState,
    /// How long until its timer fires (a sleep, a deadline, a delayed
    /// start), if it has one.
    pub wakes_in: Option<Duration>,
    /// The socket or pipe it waits on: descriptor and direction.
    pub io: Option<IoWait>,
}

/// The state of a green thread, in [`ThreadInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThreadState {
    /// In the run queue.
    Ready,
    /// Running now (the one that called [`threads`]).
    Running,
    /// Parked: waiting for I/O, a wake-up or its deadline.
    Parked,
    /// Spawned with a delay that has not passed yet.
    Delayed,
}

/// A descriptor a green thread waits on, in [`ThreadInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoWait {
    /// The descriptor.
    pub fd: std::os::fd::RawFd,
    /// `true` when waiting to read, `false` to write.
    pub read: bool,
}

impl fmt::Display for ThreadInfo {
    /// One line: id, name, state, and what it waits for.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            ThreadState::Ready => "ready",
            ThreadState::Running => "running",
            ThreadState::Parked => "parked",
            ThreadState::Delayed => "delayed",
        };
        let name = self.name.as_deref().unwrap_or("-");
        write!(f, "{:>10}  {name:<20}  {state:<8}", self.id)?;
        if let Some(io) = self.io {
            write!(f, "  {} fd {}", if io.read { "read" } else { "write" }, io.fd)?;
        }
        if let Some(d) = self.wakes_in {
            write!(f, "  timer in {:.3}s", d.as_secs_f64())?;
        }
        Ok(())
    }
}

/// Lists the green threads of the current OS thread's hub, and its root
/// context, by id: what each one is doing now.
///
/// ```
/// let h = eventlet::Builder::new().name("sleeper").spawn(|| eventlet::sleep(std::time::Duration::from_secs(1)))?;
/// eventlet::yield_now(); // let it start sleeping
/// let all = eventlet::hub::threads();
/// let sleeper = all.iter().find(|t| t.name.as_deref() == Some("sleeper")).unwrap();
/// assert_eq!(sleeper.state, eventlet::hub::ThreadState::Parked);
/// assert!(sleeper.wakes_in.is_some());
/// h.kill();
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn threads() -> Vec<ThreadInfo> {
    with_hub(|h| {
        let now = Instant::now();
        let timers = h.timers.borrow();
        let mut out: Vec<ThreadInfo> = h
            .tasks
            .borrow()
            .iter()
            .filter_map(|(_, t)| {
                let state = match t.state.get() {
                    State::Ready => ThreadState::Ready,
                    State::Running => ThreadState::Running,
                    State::Parked => ThreadState::Parked,
                    State::Delayed => ThreadState::Delayed,
                    State::Done => return None,
                };
                let timer = t.timer.get().filter(|_| !t.spared.get());
                Some(ThreadInfo {
                    id: t.id,
                    name: t.name.as_deref().map(str::to_owned),
                    is_root: t.is_root(),
                    state,
                    wakes_in: timer.and_then(|k| timers.deadline(k)).map(|d| d.saturating_duration_since(now)),
                    io: t.io_wait.get().map(|(fd, dir)| IoWait { fd, read: dir == io::Direction::Read }),
                })
            })
            .collect();
        out.sort_by_key(|t| t.id);
        out
    })
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
            sleeping: AtomicBool::new(false),
            handles: AtomicUsize::new(0),
            switches: AtomicU64::new(0),
            running: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            alive: AtomicBool::new(true),
        });
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

    /// The running green thread (or root), borrowed.
    #[inline]
    fn cur(&self) -> &Task {
        // SAFETY: the current task outlives every use of this borrow: callers
        // use it only while they themselves are that task, running or parked.
        unsafe { &*self.current.get() }
    }

    /// Creates a green thread running `f`, puts it in the run queue (or
    /// arms its start timer) and returns it.
    pub(crate) fn spawn<T: 'static>(
        &self,
        f: impl FnOnce() -> T + 'static,
        name: Option<Box<str>>,
        stack_size: Option<usize>,
        delay: Option<Duration>,
        detached: bool,
    ) -> std::io::Result<Typed<Packet<T>>> {
        let size = match stack_size {
            None => stack::DEFAULT_STACK_SIZE,
            Some(s) => stack::checked_size(s)?,
        };
        let stack = self.stacks.borrow_mut().get(size)?;
        let (guard_lo, guard_hi) = stack.guard();
        let n = self.next_id.get();
        self.next_id.set(n + 1);
        let task = Typed::new((self.id << 40) | n, name, RefCell::new(None), Some(&self.blocks));
        let (name_ptr, name_len) = task.name.as_deref().map_or((std::ptr::null(), 0), |s| (s.as_ptr(), s.len()));
        task.info.set(RunningInfo { guard_lo, guard_hi, name_ptr, name_len, id: task.id, stack_size: size });
        task.detached.set(detached);
        let me = task.clone();
        let coro = Coroutine::with_stack(stack, move |y: &Yielder<(), ()>, ()| {
            me.yielder.set(y);
            body(&me, f);
        });
        // SAFETY: the task is new; nothing else can see its coroutine cell.
        unsafe { *task.coro.get() = Some(coro) };
        let t: TaskRef = task.task().clone();
        t.key.set(self.tasks.borrow_mut().insert(t.clone()));
        self.count_live();
        match delay {
            Some(d) if !d.is_zero() => {
                t.state.set(State::Delayed);
                // A delay too long to represent never comes: it waits for a kill.
                if let Some(at) = crate::time::deadline_after(d) {
                    let key = self.timers.borrow_mut().insert(at, t.clone());
                    t.timer.set(Some(key));
                }
            }
            _ => self.queue.push_back(t),
        }
        Ok(task)
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

    /// Parks the current green thread (or the root) until unparked or until
    /// `deadline`. If a [`Timeout`](crate::Timeout) of the green thread
    /// expires first: with no `deadline` the wait unwinds with its
    /// [`Elapsed`](crate::timeout::Elapsed) payload (as eventlet raises its
    /// `Timeout`); with a `deadline` it returns `TimedOut`, and the caller
    /// reports its own timeout error.
    #[inline]
    pub(crate) fn park(&self, deadline: Option<Instant>) -> Wakeup {
        if deadline.is_none() {
            if let Some(w) = self.park_plain() {
                return w;
            }
        }
        self.park_slow(deadline)
    }

    /// The common park, inlined into its caller: a green thread with no
    /// deadline and no live `Timeout` suspends right here. Returns `None`
    /// (having done nothing) when that does not apply.
    ///
    /// Why inline: the switch into the hub and back leaves the CPU's
    /// return-address predictor holding the hub's return addresses, so
    /// every frame the green thread returns through after it is resumed
    /// costs a mispredicted return. Suspending in the caller's own frame
    /// saves those.
    #[inline(always)]
    fn park_plain(&self) -> Option<Wakeup> {
        let cur = self.cur();
        if cur.is_root() || cur.timed.get() || cur.spared.get() || std::thread::panicking() {
            return None;
        }
        if !cur.notified.replace(false) {
            cur.state.set(State::Parked);
            self.suspend(cur);
            Self::check_kill(cur);
        }
        Some(Wakeup::Unparked)
    }

    #[cold]
    #[inline(never)]
    fn park_slow(&self, deadline: Option<Instant>) -> Wakeup {
        match self.park_inner(deadline) {
            Ok(w) => w,
            Err(e) if deadline.is_none() => panic::resume_unwind(Box::new(e)),
            Err(_) => Wakeup::TimedOut,
        }
    }

    /// Like [`park`](Self::park), but an expired `Timeout` (or a refused
    /// wait) comes back as `Err` whatever the deadline; the common case
    /// parks in the caller's frame, as `park` does.
    #[inline(always)]
    pub(crate) fn park_result(&self, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        if deadline.is_none() {
            if let Some(w) = self.park_plain() {
                return Ok(w);
            }
        }
        self.park_inner(deadline)
    }

    /// Like [`park`](Self::park), but an expired `Timeout` comes back as
    /// `Err` whatever the deadline.
    pub(crate) fn park_inner(&self, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        let cur = self.cur();
        // Before the wake-up token: user code the hub loop runs as the root
        // must not take the root's token.
        if self.cannot_switch(cur) {
            return Self::refuse(cur, deadline);
        }
        self.drop_spare(cur);
        if cur.notified.replace(false) {
            return Ok(Wakeup::Unparked);
        }
        let tmo = cur.earliest_timeout();
        let (deadline, by_timeout) = match (deadline, tmo) {
            (d, None) => (d, false),
            (Some(d), Some((at, ..))) if d <= at => (Some(d), false),
            (_, Some((at, ..))) => (Some(at), true),
        };
        if let (true, Some((at, id, duration))) = (by_timeout, tmo) {
            if at <= Instant::now() {
                return Err(Elapsed { id, duration });
            }
        }
        cur.state.set(State::Parked);
        if let Some(d) = deadline {
            let key = self.timers.borrow_mut().insert(d, self.current());
            cur.timer.set(Some(key));
        }
        self.switch_out(cur);
        if let Some(key) = cur.timer.take() {
            self.timers.borrow_mut().cancel(key);
        }
        Self::check_kill(cur);
        match (cur.wake.get(), tmo) {
            (Wakeup::TimedOut, Some((_, id, duration))) if by_timeout => Err(Elapsed { id, duration }),
            (w, _) => Ok(w),
        }
    }

    /// [`park_inner`](Self::park_inner) for a socket wait.
    ///
    /// A server waits on each connection's socket with a deadline once per
    /// request (the keep-alive timeout, say), and the data nearly always
    /// comes first. Arming a timer for each wait and cancelling it after
    /// cost a heap insert and, later, a heap pop per request. Instead a
    /// socket wait woken before its deadline leaves its timer armed as the
    /// green thread's spare, and the next socket wait moves that timer to
    /// its own deadline ([`Timers::rearm`], O(1)). Any other park drops the
    /// spare, and so does the end of the green thread: a spare exists only
    /// while its green thread runs or is ready, never while the hub is
    /// idle, so it cannot hold off the deadlock check; if it comes due
    /// first it fires at nobody and is gone.
    pub(crate) fn park_io(&self, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        let cur = self.cur();
        let Some(d) = deadline else { return self.park_inner(None) };
        if cur.is_root() || cur.timed.get() {
            return self.park_inner(deadline);
        }
        if std::thread::panicking() {
            return Self::refuse(cur, deadline);
        }
        if cur.notified.replace(false) {
            return Ok(Wakeup::Unparked);
        }
        let reused = cur.spared.replace(false) && {
            self.spares.set(self.spares.get() - 1);
            cur.timer.get().is_some_and(|key| self.timers.borrow_mut().rearm(key, d))
        };
        if !reused {
            cur.timer.set(Some(self.timers.borrow_mut().insert(d, self.current())));
        }
        cur.state.set(State::Parked);
        self.switch_out(cur);
        if cur.timer.get().is_some() {
            // Woken before its deadline: keep the timer for the next wait.
            cur.spared.set(true);
            self.spares.set(self.spares.get() + 1);
        }
        Self::check_kill(cur);
        Ok(cur.wake.get())
    }

    /// Whether the running context may not switch away now:
    ///
    /// 1. It is panicking. std keeps its panic state (`thread::panicking`,
    ///    the panic count that poisons mutexes and aborts a panic inside a
    ///    panic hook) per OS thread, not per stack, so any green thread
    ///    run meanwhile would see this one's unwinding as its own. A green
    ///    thread therefore never switches away while it panics, and no
    ///    suspended green thread is ever panicking.
    /// 2. It is the root, and the hub loop is running on the root's stack
    ///    (the root is not `Running`): user code run by the loop itself,
    ///    such as a destructor of a closure the loop failed to spawn, must
    ///    not start the loop again inside itself.
    #[inline]
    fn cannot_switch(&self, cur: &Task) -> bool {
        std::thread::panicking() || (cur.is_root() && cur.state.get() != State::Running)
    }

    /// The end of a wait that [`cannot_switch`](Self::cannot_switch): as if
    /// its deadline had passed. A wait with no deadline gets the refusal
    /// `Elapsed` (see [`Elapsed::is_refusal`]), which callers without an
    /// error to return unwind with, as under an expired `Timeout`.
    #[cold]
    fn refuse(cur: &Task, deadline: Option<Instant>) -> Result<Wakeup, Elapsed> {
        if deadline.is_some() {
            return Ok(Wakeup::TimedOut);
        }
        if std::thread::panicking() && !cur.timed.get() {
            let name = cur.name.as_deref().unwrap_or("<unnamed>");
            report::stderr_line(format_args!(
                "green thread '{name}' (id {}) cannot wait while it unwinds (a green thread never switches away \
                 while it panics): the wait fails as under an expired Timeout",
                cur.id
            ));
        }
        Err(Elapsed::refusal())
    }

    /// Cancels the green thread's spare timer, if it has one.
    #[inline]
    fn drop_spare(&self, t: &Task) {
        if t.spared.replace(false) {
            self.spares.set(self.spares.get() - 1);
            if let Some(key) = t.timer.take() {
                self.timers.borrow_mut().cancel(key);
            }
        }
    }

    /// Puts the current green thread (or the root) at the back of the run
    /// queue and lets every other ready green thread, and due I/O, run first.
    pub(crate) fn yield_now(&self) {
        let cur = self.cur();
        if self.cannot_switch(cur) {
            return;
        }
        if cur.is_root() {
            // The root's turn comes straight back to it when nothing else is
            // ready, so the loop would never reach its timers and I/O: look
            // at them first, and what they wake runs before the root.
            self.tick();
        }
        cur.state.set(State::Ready);
        if self.reactor.waiters() > 0 {
            // As eventlet's `sleep(0)`: the hub polls before this one runs
            // again, and what the poll (or a due timer) wakes goes ahead.
            self.yielded.push_back(self.current());
            self.io_requested.set(true);
        } else {
            self.queue.push_back(self.current());
        }
        self.switch_out(cur);
        Self::check_kill(cur);
    }

    /// Spends one unit of the running green thread's I/O budget, yielding
    /// first when it is used up.
    #[inline]
    pub(crate) fn consume_budget(&self) {
        let b = self.budget.get();
        if b == 0 {
            self.yield_now();
        } else {
            self.budget.set(b - 1);
        }
    }

    /// Leaves the current context until the hub switches back to it.
    fn switch_out(&self, cur: &Task) {
        if cur.is_root() {
            self.run();
            cur.state.set(State::Running);
            self.budget.set(BUDGET);
        } else {
            self.suspend(cur);
        }
    }

    /// Switches from the running green thread `cur` (not the root) to the
    /// hub loop until the loop resumes it.
    #[inline(always)]
    fn suspend(&self, cur: &Task) {
        let y = cur.yielder.get();
        // Near where this stack is resumed (the switch saves registers
        // just below this frame), for the hub to prefetch.
        let here = 0u8;
        cur.stack_hint.set(std::ptr::addr_of!(here) as usize);
        // SAFETY: `y` was set by this green thread's body at its start and
        // points into its own stack, which lives until the body returns;
        // we are running on that stack now, inside the body.
        unsafe { (*y).suspend(()) };
    }

    #[inline]
    fn check_kill(cur: &Task) {
        if cur.kill.get() == Kill::Pending {
            Self::deliver_kill(cur);
        }
    }

    #[cold]
    #[inline(never)]
    fn deliver_kill(cur: &Task) -> ! {
        cur.kill.set(Kill::Delivered);
        panic::resume_unwind(Box::new(Killed))
    }

    /// Kills a green thread of this hub. Returns without waiting, and
    /// whether the green thread has a kill pending (the caller yields so
    /// that it ends first).
    ///
    /// Every green thread ends on its own stack: one that has not started
    /// is made ready with the kill pending, and its body drops its closure
    /// unrun instead of calling it (see [`body`]); one that is parked is
    /// woken and unwinds from its blocking point. Killing the running green
    /// thread unwinds it at once, unless it is unwinding already.
    pub(crate) fn kill(&self, t: &TaskRef) -> bool {
        match t.state.get() {
            State::Done => false,
            _ if std::ptr::eq(t.as_ptr(), self.current.get()) => {
                if t.kill.get() == Kill::No && !std::thread::panicking() {
                    t.kill.set(Kill::Delivered);
                    panic::resume_unwind(Box::new(Killed));
                }
                false
            }
            _ if t.kill.get() != Kill::No => t.kill.get() == Kill::Pending,
            State::Delayed => {
                t.kill.set(Kill::Pending);
                if let Some(key) = t.timer.take() {
                    self.timers.borrow_mut().cancel(key);
                }
                t.state.set(State::Ready);
                self.queue.push_back(t.clone());
                true
            }
            _ => {
                t.kill.set(Kill::Pending);
                self.unpark(t);
                true
            }
        }
    }

    /// Removes a finished green thread and wakes its joiner.
    fn retire(&self, t: &TaskRef) {
        self.drop_spare(t);
        self.tasks.borrow_mut().try_remove(t.key.get());
        self.count_live();
        if let Some(j) = t.joiner.take() {
            self.unpark(&j);
        }
    }

    /// The loop: runs until the root is popped from the run queue.
    fn run(&self) {
        loop {
            for _ in 0..BATCH {
                let t = self.queue.pop_front();
                let Some(t) = t else { break };
                if t.is_root() {
                    return;
                }
                if t.state.get() == State::Ready {
                    self.queue.prefetch_ahead();
                    self.run_task(t);
                }
                // A yield asks for I/O to be polled before it runs again;
                // that matters only if someone waits for I/O.
                if self.io_requested.get() && self.reactor.waiters() > 0 {
                    break;
                }
            }
            self.maintain();
        }
    }

    #[inline(always)]
    fn run_task(&self, t: TaskRef) {
        t.state.set(State::Running);
        self.budget.set(BUDGET);
        self.ticks.set(self.ticks.get() + 1);
        // Only this thread writes these: plain load and store, no locked add.
        let shared = &*self.shared;
        shared.switches.store(shared.switches.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        shared.running.store(t.id, Ordering::Relaxed);
        sys::set_running(t.info.as_ptr());
        let prev = self.current.replace(t.as_ptr());
        // The body catches everything its user code throws, so the resume
        // does not unwind; if it ever did, the hub must not be left pointing
        // at a green thread that is not running.
        let restore = Restore { hub: self, prev };
        // SAFETY: only this function touches the coroutine cell mutably, from
        // the hub loop (never re-entered: it runs on the root's stack, and a
        // park there while the loop runs is refused, see `cannot_switch`) or
        // from `Hub::drop`; the `&mut` lives for the resume only.
        let res = unsafe { (*t.coro.get()).as_mut().map(|c| c.resume(())) };
        drop(restore);
        if let Some(CoroutineResult::Return(())) = res {
            t.state.set(State::Done);
            // SAFETY: the coroutine returned; nothing runs on its stack.
            if let Some(coro) = unsafe { (*t.coro.get()).take() } {
                self.stacks.borrow_mut().put(coro.into_stack());
            }
            self.retire(&t);
        }
    }

    /// Between batches: remote wake-ups, I/O, timers.
    ///
    /// Everything here is the hub's own code except the logger (through
    /// [`report::log_error`], which catches its panics) and the drop of a
    /// closure another OS thread sent that could not be spawned (caught
    /// in [`drain_remote`](Self::drain_remote)); a wait in either is
    /// refused (see [`cannot_switch`](Self::cannot_switch)).
    fn maintain(&self) {
        if self.shared.pending.load(Ordering::Acquire) {
            self.drain_remote();
        }
        let idle = self.queue.is_empty() && self.yielded.is_empty();
        if idle {
            let timeout = self.timers.borrow_mut().next_deadline().map(|d| d.saturating_duration_since(Instant::now()));
            if timeout.is_none() && self.nothing_can_wake() {
                if self.serving.get() {
                    // A hub thread (`hub::start`): its root decides what now.
                    let root = self.tasks.borrow()[0].clone();
                    self.unpark(&root);
                    return;
                }
                // Leave the root runnable for whoever catches this.
                self.cur().state.set(State::Running);
                panic!(
                    "eventlet: deadlock: the main context of this thread is parked, and no green \
                     thread, timer, I/O wait or wake-up from another thread is left to wake it"
                );
            }
            self.shared.sleeping.store(true, Ordering::SeqCst);
            let timeout = if self.shared.pending.load(Ordering::SeqCst) { Some(Duration::ZERO) } else { timeout };
            self.poll_io(timeout);
            self.shared.sleeping.store(false, Ordering::SeqCst);
            if self.shared.pending.load(Ordering::Acquire) {
                self.drain_remote();
            }
        } else if (self.io_requested.get() && self.reactor.waiters() > 0) || self.ticks.get() >= IO_INTERVAL {
            self.poll_io(Some(Duration::ZERO));
        }
        if self.timers.borrow().len() > 0 {
            self.fire_timers();
        }
        self.queue.append(&self.yielded);
    }

    /// One look at everything that can wake green threads, without
    /// blocking: wake-ups from other threads, I/O if anyone waits for it,
    /// due timers (for a yielding root, see [`yield_now`](Self::yield_now)).
    fn tick(&self) {
        if self.shared.pending.load(Ordering::Acquire) {
            self.drain_remote();
        }
        if self.reactor.waiters() > 0 {
            self.poll_io(Some(Duration::ZERO));
        }
        if self.timers.borrow().len() > 0 {
            self.fire_timers();
        }
        self.queue.append(&self.yielded);
    }

    fn nothing_can_wake(&self) -> bool {
        // Order matters: an `Unparker` sends its wake-up before it is
        // dropped, so once the drop shows in `handles`, `pending` read after
        // it shows the wake-up too.
        self.reactor.waiters() == 0
            && self.shared.handles.load(Ordering::SeqCst) == 0
            && !self.shared.pending.load(Ordering::SeqCst)
    }

    fn poll_io(&self, timeout: Option<Duration>) {
        self.ticks.set(0);
        self.io_requested.set(false);
        self.reactor.poll(timeout, |t| self.unpark(&t));
    }

    fn fire_timers(&self) {
        let now = Instant::now();
        loop {
            let due = self.timers.borrow_mut().pop_due(now);
            let Some((key, t)) = due else { break };
            if t.timer.get() != Some(key) {
                continue;
            }
            t.timer.set(None);
            if t.spared.replace(false) {
                // A spare came due: nobody waits on it.
                self.spares.set(self.spares.get() - 1);
                continue;
            }
            match t.state.get() {
                State::Parked => {
                    t.state.set(State::Ready);
                    t.wake.set(Wakeup::TimedOut);
                    self.queue.push_back(t);
                }
                State::Delayed => {
                    t.state.set(State::Ready);
                    self.queue.push_back(t);
                }
                _ => {}
            }
        }
    }

    fn drain_remote(&self) {
        self.shared.pending.store(false, Ordering::SeqCst);
        let msgs = std::mem::take(&mut *self.shared.queue.lock().unwrap_or_else(|e| e.into_inner()));
        for m in msgs {
            match m {
                Remote::Unpark { key, id } => self.unpark_key(key, id),
                Remote::FreeSlot(token) => self.reactor.free_slot(token),
                Remote::Spawn(f) => {
                    // On failure the closure is dropped unrun, here: contained.
                    let spawned = report::contain(|| self.spawn(f, None, None, None, true));
                    if let Some(Err(e)) = spawned {
                        report::log_error(format_args!("cannot start a green thread sent from another OS thread: {e}"));
                        report::stderr_line(format_args!(
                            "cannot start a green thread sent from another OS thread: {e}"
                        ));
                    }
                }
                Remote::Wake => {}
            }
        }
    }

    /// Unparks the live task at `key` if it is still the one with `id`.
    pub(crate) fn unpark_key(&self, key: usize, id: u64) {
        let t = self.tasks.borrow().get(key).filter(|t| t.id == id).cloned();
        if let Some(t) = t {
            self.unpark(&t);
        }
    }
}

/// Puts the hub back in the loop's context when a green thread switches
/// back to it (see [`Hub::run_task`]).
struct Restore<'a> {
    hub: &'a Hub,
    prev: *const Task,
}

impl Drop for Restore<'_> {
    #[inline]
    fn drop(&mut self) {
        self.hub.current.set(self.prev);
        self.hub.shared.running.store(0, Ordering::Relaxed);
        sys::set_running(std::ptr::null());
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = HUB_PTR.try_with(|c| c.set(std::ptr::null()));
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
        // Green threads that never started: each runs once, with a kill
        // pending, so that its body drops its closure unrun on its own
        // stack (their sockets and everything else they own are closed).
        let unstarted: Vec<TaskRef> = self
            .tasks
            .get_mut()
            .iter()
            .filter(|(_, t)| !t.is_root() && !t.is_done() && !t.started())
            .map(|(_, t)| t.clone())
            .collect();
        for t in unstarted {
            if let Some(key) = t.timer.take() {
                self.timers.borrow_mut().cancel(key);
            }
            t.kill.set(Kill::Pending);
            self.run_task(t);
        }
        // Green threads still parked when their OS thread exits are leaked
        // with their stacks, not unwound: unwinding them would run their
        // destructors while this thread's hub is already gone.
        for (_, t) in self.tasks.get_mut().iter() {
            if t.started() && !t.is_done() {
                // SAFETY: the hub loop is not running (the thread is exiting),
                // so nothing else touches the cell.
                if let Some(c) = unsafe { (*t.coro.get()).take() } {
                    std::mem::forget(c);
                }
            }
        }
    }
}

/// A green thread's whole life on its own stack: its closure (or, if it
/// was killed before it started, the drop of its closure), its result, and
/// its green-locals. Nothing here unwinds into the hub: every piece of user
/// code (the closure, destructors of what it captured and returned, panic
/// payloads, the logger that reports a panic) runs inside `catch_unwind`,
/// and a payload whose own destructor panics is leaked rather than dropped
/// twice. Everything runs on this green thread, which may block, never on
/// the hub loop's stack.
fn body<T: 'static>(me: &Typed<Packet<T>>, f: impl FnOnce() -> T) {
    let slot = me.slot();
    let ran = if me.kill.get() == Kill::Pending {
        // Killed before it started: the closure is dropped unrun, here.
        me.kill.set(Kill::Delivered);
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(f))) {
            report::green_panic(me, p.as_ref());
            report::drop_payload(p);
        }
        Err(Box::new(Killed) as report::Payload)
    } else {
        panic::catch_unwind(AssertUnwindSafe(|| {
            let value = f();
            if me.detached.get() {
                // Nobody takes it: drop it here, where its destructor may
                // block (a panic there is this green thread's).
                drop(value);
            } else {
                // The value goes straight to the (empty) slot: built on the
                // stack first, to outlive a call dropping the old value, it
                // was stored in pieces and loaded whole, which stalls the
                // CPU's store forwarding (~8% of an empty green thread's
                // spawn and join).
                let mut s = slot.borrow_mut();
                if s.is_none() {
                    *s = Some(Ok(value));
                }
            }
        }))
    };
    if let Err(p) = ran {
        if me.detached.get() {
            if !p.is::<Killed>() {
                report::green_panic(me, p.as_ref());
            }
            report::drop_payload(p);
        } else {
            *slot.borrow_mut() = Some(Err(p));
        }
    }
    // Green-locals are dropped here, on this green thread: their destructors
    // may block or use green-locals (which may fill the map again, hence the
    // loop). Meanwhile the `JoinHandle` may be dropped: then the result it
    // would have taken is dropped here too, not later by the hub.
    loop {
        if let Some(mut locals) = me.locals.take() {
            // One at a time, so a destructor that panics spares the rest.
            for (_, value) in locals.drain() {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(value))) {
                    if !p.is::<Killed>() {
                        report::green_panic(me, p.as_ref());
                    }
                    report::drop_payload(p);
                }
            }
            continue;
        }
        let orphan = if me.detached.get() { slot.borrow_mut().take() } else { None };
        match orphan {
            Some(Ok(value)) => {
                if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| drop(value))) {
                    if !p.is::<Killed>() {
                        report::green_panic(me, p.as_ref());
                    }
                    report::drop_payload(p);
                }
            }
            Some(Err(p)) => report::drop_payload(p),
            None => break,
        }
    }
}

/// A handle that wakes a parked green thread from any OS thread.
///
/// Made by [`GreenThread::unparker`](crate::GreenThread::unparker). It is
/// `Send + Sync`; while one exists the hub does not consider itself
/// deadlocked.
pub struct Unparker {
    shared: Arc<HubShared>,
    key: usize,
    id: u64,
}

impl Unparker {
    pub(crate) fn new(shared: Arc<HubShared>, key: usize, id: u64) -> Unparker {
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Unparker { shared, key, id }
    }

    /// Wakes the green thread (or leaves a token for its next park).
    ///
    /// Called from an OS thread without a hub (a plain thread, a `tpool`
    /// worker), it makes none there: the wake-up goes through the target
    /// hub's queue, and cannot fail once sent.
    pub fn unpark(&self) {
        let local = peek_hub(|h| {
            if h.id == self.shared.id {
                h.unpark_key(self.key, self.id);
                true
            } else {
                false
            }
        });
        if local != Some(true) {
            self.shared.send(Remote::Unpark { key: self.key, id: self.id });
        }
    }
}

impl Clone for Unparker {
    fn clone(&self) -> Unparker {
        Unparker::new(self.shared.clone(), self.key, self.id)
    }
}

impl Drop for Unparker {
    fn drop(&mut self) {
        self.shared.handles.fetch_sub(1, Ordering::SeqCst);
    }
}

impl fmt::Debug for Unparker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Unparker").field("hub", &self.shared.id).field("green_thread", &self.id).finish()
    }
}

impl fmt::Debug for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GreenThread")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("state", &self.state.get())
            .finish()
    }
}

#[cfg(test)]
mod layout_tests {
    use super::*;
    use crate::JoinHandle;
    use std::mem::{offset_of, size_of};

    /// What every switch touches stays within the task's first 112 bytes
    /// (see `Task`): a field added or moved must not push it out.
    #[test]
    fn hot_fields_come_first() {
        let hot_end = [
            offset_of!(Task, refs) + size_of::<usize>(),
            offset_of!(Task, next) + size_of::<usize>(),
            offset_of!(Task, yielder) + size_of::<usize>(),
            offset_of!(Task, stack_hint) + size_of::<usize>(),
            offset_of!(Task, id) + size_of::<u64>(),
            offset_of!(Task, key) + size_of::<usize>(),
            offset_of!(Task, state) + 1,
            offset_of!(Task, notified) + 1,
            offset_of!(Task, kill) + 1,
            offset_of!(Task, queued) + 1,
            offset_of!(Task, wake) + 1,
            offset_of!(Task, timed) + 1,
            offset_of!(Task, spared) + 1,
            offset_of!(Task, coro) + size_of::<Option<Coro>>(),
        ];
        assert!(hot_end.iter().all(|&e| e <= 112), "{hot_end:?}");
    }

    /// The cache keeps at most `CACHED_BLOCKS` free blocks and hands back
    /// the last one given; what it holds is freed with it (valgrind's
    /// memcheck would see a leak or a double free here).
    #[test]
    fn the_block_cache_is_bounded_and_lifo() {
        let cache = BlockCache::new();
        let blocks: Vec<NonNull<u8>> = (0..CACHED_BLOCKS + 10).map(|_| cache.take()).collect();
        assert!(cache.free.borrow().is_empty());
        let last = *blocks.last().unwrap();
        for p in blocks {
            // SAFETY: each came from `take` and is given back once.
            unsafe { cache.give(p) };
        }
        assert_eq!(cache.free.borrow().len(), CACHED_BLOCKS, "the rest went back to the allocator");
        let again = cache.take();
        assert_ne!(again, last, "the last one given was beyond the bound, so freed");
        // SAFETY: as above.
        unsafe { cache.give(again) };
        assert_eq!(cache.take(), again, "the last one given comes back first");
        // SAFETY: as above.
        unsafe { cache.give(again) };
        drop(cache);
    }

    /// A task block's count: each clone adds one, each drop takes one, and
    /// the last drop frees the block with its slot (whose destructor runs
    /// once).
    #[test]
    fn a_task_block_is_freed_with_its_last_reference() {
        let dropped = std::rc::Rc::new(Cell::new(0));
        struct Count(std::rc::Rc<Cell<u32>>);
        impl Drop for Count {
            fn drop(&mut self) {
                self.0.set(self.0.get() + 1);
            }
        }
        let t = Typed::new(7, Some("t".into()), Count(dropped.clone()), None);
        let a = t.task().clone();
        let b = a.clone();
        assert_eq!(a.refs.get(), 3);
        drop(t);
        drop(a);
        assert_eq!(dropped.get(), 0);
        assert_eq!(b.refs.get(), 1);
        drop(b);
        assert_eq!(dropped.get(), 1, "the slot was dropped once, with the block");
    }

    /// Results up to a few words come from the block cache; a spawned
    /// green thread's block is reused by the next one; large results take
    /// the allocator's path and arrive intact.
    #[test]
    fn blocks_are_cached_and_reused() {
        assert!(fits_block::<Packet<()>>());
        assert!(fits_block::<Packet<u64>>());
        assert!(fits_block::<Packet<String>>());
        assert!(fits_block::<Packet<Vec<u8>>>());
        assert!(!fits_block::<Packet<[u8; 1024]>>());
        let block_of = |h: &JoinHandle<String>| h.task.task().as_ptr() as usize;
        let cached = || with_hub(|h| h.blocks.free.borrow().len());
        let a = crate::spawn(|| "a".to_string());
        let first = block_of(&a);
        let before = cached();
        assert_eq!(a.join().unwrap(), "a");
        assert_eq!(cached(), before + 1, "the freed block went to the cache");
        let b = crate::spawn(|| "b".to_string());
        assert_eq!(cached(), before, "the next spawn took it from there");
        assert_eq!(block_of(&b), first);
        assert_eq!(b.join().unwrap(), "b");
        let big = crate::spawn(|| [7u8; 1024]);
        assert_eq!(big.join().unwrap(), [7u8; 1024]);
    }
}
