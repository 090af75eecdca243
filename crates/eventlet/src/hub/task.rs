//! A green thread as the hub sees it: the [`Task`] at the head of its heap
//! block (the result slot follows it), the counted references to it
//! ([`TaskRef`], and [`Typed`] for the `JoinHandle`), and the hub's cache of
//! free blocks. This and the run queue are where the hub's own `unsafe`
//! lives: each block says why it holds.

use std::alloc::Layout;
use std::cell::{Cell, RefCell, UnsafeCell};
use std::fmt;
use std::marker::PhantomData;
use std::ptr::NonNull;
use std::time::{Duration, Instant};

use corosensei::{Coroutine, Yielder};

use super::{io, TimerKey, Wakeup, HUB_PTR};
use crate::stack::GreenStack;
use crate::sys::RunningInfo;

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

pub(super) type Coro = Coroutine<(), (), (), GreenStack>;

/// A green thread as the hub sees it. It lives in a heap block shared by
/// [`TaskRef`]s (its slot for the result follows it, see [`Typed`]).
///
/// `repr(C)`, hot fields first: what the hub loop, `park` and `unpark` touch
/// on every switch sits in the first 112 bytes (two cache lines, where the
/// default layout spread it over five), which matters once thousands of
/// green threads take turns.
#[repr(C)]
pub(crate) struct Task {
    pub(super) refs: Cell<usize>,
    /// The next task in the run queue.
    pub(super) next: Cell<*const Task>,
    pub(super) yielder: Cell<*const Yielder<(), ()>>,
    /// An address near where its stack is resumed (0: never suspended).
    pub(super) stack_hint: Cell<usize>,
    pub(crate) id: u64,
    pub(crate) key: Cell<usize>,
    pub(crate) state: Cell<State>,
    pub(super) notified: Cell<bool>,
    pub(crate) kill: Cell<Kill>,
    /// Whether it is in the run queue.
    pub(super) queued: Cell<bool>,
    pub(super) wake: Cell<Wakeup>,
    /// Whether `timeouts` is non-empty (read by every park).
    pub(super) timed: Cell<bool>,
    /// Whether `timer` is a spare: armed by an earlier socket wait and
    /// kept for the next one, nobody waiting on it (see [`Hub::park_io`]).
    pub(super) spared: Cell<bool>,
    /// Frees the block this task heads (it knows the slot's type).
    pub(super) free: unsafe fn(NonNull<Task>),
    pub(super) coro: UnsafeCell<Option<Coro>>,
    pub(super) timer: Cell<Option<TimerKey>>,
    /// Live `Timeout`s of this green thread: (deadline, id, duration).
    pub(crate) timeouts: crate::timeout::Deadlines,
    pub(crate) name: Option<Box<str>>,
    pub(super) joiner: Cell<Option<TaskRef>>,
    pub(super) info: Cell<RunningInfo>,
    /// Its green-local values (`green_local!`), dropped when it ends.
    pub(crate) locals: RefCell<Option<Box<crate::local::Locals>>>,
    /// The address of the `GreenPool` whose job this green thread runs (0
    /// if none), so `waitall` can refuse to wait for itself.
    pub(crate) pool: crate::greenpool::Membership,
    /// The descriptor it is parked on, for [`threads`].
    pub(crate) io_wait: Cell<Option<(std::os::fd::RawFd, io::Direction)>>,
    /// Whether nobody will take its result: a `spawn_n` green thread, or
    /// one whose `JoinHandle` was dropped. Its body then drops the result
    /// itself, on its own stack (see [`body`]).
    pub(crate) detached: Cell<bool>,
    /// Whether its closure may borrow what lives only as long as another
    /// green thread's frames or this OS thread's thread-locals (a scoped
    /// green thread, see [`crate::scope`]). Such a closure is never dropped
    /// at thread exit, when those may already be gone (see `Hub::drop`).
    pub(crate) borrows: Cell<bool>,
}

/// The heap block of a green thread: the task, then the slot its result
/// goes to. `repr(C)` puts the task at offset 0, so a pointer to the block
/// is a pointer to its task.
#[repr(C)]
pub(super) struct Block<S> {
    pub(super) task: Task,
    pub(super) slot: S,
}

/// A counted, thin reference to a [`Task`] (a single-threaded `Rc` whose
/// pointer does not carry the slot's type, so the hub's queues and fields
/// hold one word per task and reach every field at a fixed offset).
pub(crate) struct TaskRef {
    pub(super) ptr: NonNull<Task>,
}

/// A [`TaskRef`] that knows its slot's type: what a `JoinHandle` holds.
pub(crate) struct Typed<S> {
    pub(super) task: TaskRef,
    pub(super) _slot: PhantomData<S>,
}

/// The allocation every task block fits in unless its result is more than a
/// few words (see [`BlockCache`]): a 256-byte task and up to 56 bytes of
/// result slot, 320 bytes with glibc's chunk header.
pub(super) const BLOCK: Layout = match Layout::from_size_align(312, 16) {
    Ok(l) => l,
    Err(_) => panic!("bad block layout"),
};
/// Free blocks a hub keeps for reuse at most.
pub(super) const CACHED_BLOCKS: usize = 1024;

/// Whether a `Block<S>` is carved from a [`BLOCK`] allocation (a property of
/// `S` alone, so allocation and free always agree).
pub(super) const fn fits_block<S>() -> bool {
    let l = Layout::new::<Block<S>>();
    l.size() <= BLOCK.size() && l.align() <= BLOCK.align()
}

/// A hub's free task blocks: spawning and retiring a green thread takes and
/// gives back one of these instead of a trip through the global allocator
/// each (glibc's `malloc` and `free` were a seventh of an empty green
/// thread's spawn, run and join).
pub(super) struct BlockCache {
    pub(super) free: RefCell<Vec<NonNull<u8>>>,
}

impl BlockCache {
    pub(super) fn new() -> BlockCache {
        BlockCache { free: RefCell::new(Vec::new()) }
    }

    /// A [`BLOCK`]-sized allocation, uninitialised.
    pub(super) fn take(&self) -> NonNull<u8> {
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
    pub(super) unsafe fn give(&self, p: NonNull<u8>) {
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
pub(super) fn alloc_block() -> NonNull<u8> {
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
pub(super) unsafe fn free_block<S>(p: NonNull<Task>) {
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
    pub(super) fn new(id: u64, name: Option<Box<str>>, slot: S, cache: Option<&BlockCache>) -> Typed<S> {
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
    pub(super) unsafe fn from_ptr(p: *const Task) -> TaskRef {
        // SAFETY: per the contract.
        let task = unsafe { &*p };
        task.refs.set(task.refs.get() + 1);
        TaskRef { ptr: NonNull::from(task) }
    }

    pub(super) fn as_ptr(&self) -> *const Task {
        self.ptr.as_ptr()
    }

    /// Gives up the reference without its count, for [`from_raw`](Self::from_raw).
    pub(super) fn into_raw(t: TaskRef) -> *const Task {
        std::mem::ManuallyDrop::new(t).ptr.as_ptr()
    }

    /// Takes back a count given up by [`into_raw`](Self::into_raw).
    ///
    /// # Safety
    ///
    /// `p` came from `into_raw`, and its count is taken back once.
    pub(super) unsafe fn from_raw(p: *const Task) -> TaskRef {
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
    pub(super) fn new(id: u64, name: Option<Box<str>>, free: unsafe fn(NonNull<Task>)) -> Task {
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
            timeouts: Default::default(),
            name,
            joiner: Cell::new(None),
            info: Cell::new(RunningInfo::NONE),
            locals: RefCell::new(None),
            pool: Default::default(),
            io_wait: Cell::new(None),
            detached: Cell::new(false),
            borrows: Cell::new(false),
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
    pub(crate) fn started(&self) -> bool {
        // SAFETY: the coroutine cell is only mutated by the hub loop (resume,
        // finish) and `Hub::drop`, never while this shared read runs.
        unsafe { (*self.coro.get()).as_ref().is_some_and(|c| c.started()) }
    }

    /// The earliest live `Timeout`: (deadline, id, duration).
    #[inline]
    pub(super) fn earliest_timeout(&self) -> Option<(Instant, u64, Duration)> {
        if !self.timed.get() {
            return None;
        }
        self.timeouts.earliest()
    }

    /// Adds a live `Timeout`: (deadline, id, duration).
    pub(crate) fn add_timeout(&self, t: (Instant, u64, Duration)) {
        self.timed.set(self.timeouts.add(t));
    }

    /// Removes the `Timeout` numbered `id`.
    pub(crate) fn remove_timeout(&self, id: u64) {
        self.timed.set(self.timeouts.remove(id));
    }

    /// Takes every live `Timeout` away, to hold them back for a while.
    pub(crate) fn take_timeouts(&self) -> crate::timeout::Deadlines {
        self.timed.set(false);
        self.timeouts.take()
    }

    /// Gives back timeouts taken with [`take_timeouts`](Self::take_timeouts).
    pub(crate) fn restore_timeouts(&self, held_back: crate::timeout::Deadlines) {
        self.timed.set(self.timeouts.restore(held_back));
    }

    pub(crate) fn set_joiner(&self, t: TaskRef) {
        self.joiner.set(Some(t));
    }

    pub(crate) fn take_joiner(&self) -> Option<TaskRef> {
        self.joiner.take()
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
mod tests {
    use super::*;
    use crate::hub::with_hub;
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
