//! Green threads: spawning, joining, killing, sleeping and yielding.
//!
//! A green thread runs on its own small stack inside the current OS thread
//! and never leaves it, so its closure need not be `Send` and may use `Rc`,
//! `RefCell` and thread-locals. It runs until it blocks (green I/O, `sleep`,
//! `join`, a pool or queue wait); then the hub runs the next ready one.
//!
//! A [`JoinHandle`] joins, kills or [`cancel`](JoinHandle::cancel)s its
//! green thread, and [`link`](JoinHandle::link)s callbacks to its end;
//! [`spawn_after_local`] schedules one that is canceled if the caller ends
//! first.
//!
//! # Differences from eventlet
//!
//! A linked callback gets the green thread's result by reference (a
//! `JoinHandle` is not shared, so there is no green thread to call `wait`
//! on, as eventlet's callbacks do); [`unlink`](JoinHandle::unlink) takes
//! the key [`link`](JoinHandle::link) returned, not the function (closures
//! cannot be compared). `join` returns once every callback has, even one
//! that blocks (eventlet's waiters may run while a callback waits). A
//! green thread of [`spawn_after_local`] is canceled when the caller ends
//! (if it has not started by then, even if its delay has passed);
//! eventlet's timer looks whether the caller is dead when it fires.
//! [`cancel`](JoinHandle::cancel) says whether it canceled, and, like
//! `kill`, lets the canceled green thread end before it returns.

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use crate::hub::{self, try_hub, with_hub, Packet, State, TaskRef, Typed, Unparker, Wakeup};

/// Spawns a green thread running `f` and returns a handle to join or kill it.
///
/// The green thread starts the next time this OS thread's hub runs: when
/// the caller blocks (joins, sleeps, does green I/O) or yields.
///
/// # Panics
///
/// Panics if no stack can be had (the message says which kernel limit was
/// hit); use [`Builder::spawn`] to get that as an error instead.
///
/// # Examples
///
/// ```
/// let h = eventlet::spawn(|| 6 * 7);
/// assert_eq!(h.join().unwrap(), 42);
/// ```
pub fn spawn<F, T>(f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn(f).unwrap_or_else(|e| panic!("eventlet::spawn: {e}"))
}

/// Spawns a green thread whose result nobody waits for.
///
/// Cheaper than [`spawn`]: there is no handle. A panic in `f` is reported on
/// stderr (and through `log`) and disturbs nothing else.
///
/// # Panics
///
/// Panics if no stack can be had; see [`Builder::spawn_n`].
pub fn spawn_n<F>(f: F)
where
    F: FnOnce() + 'static,
{
    Builder::new().spawn_n(f).unwrap_or_else(|e| panic!("eventlet::spawn_n: {e}"))
}

/// Spawns a green thread that starts after `delay`.
///
/// Killing it before then means it never runs.
///
/// # Panics
///
/// Panics if no stack can be had; see [`Builder::spawn_after`].
pub fn spawn_after<F, T>(delay: Duration, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn_after(delay, f).unwrap_or_else(|e| panic!("eventlet::spawn_after: {e}"))
}

/// Spawns a green thread that starts after `delay`, unless the green
/// thread that called this has ended by then (eventlet's
/// `spawn_after_local`): when the caller ends (returns, panics or is
/// killed), the delayed green thread is [`cancel`](JoinHandle::cancel)ed
/// if it has not started. One that has started goes on.
///
/// Called from the root context, which does not end while its hub runs,
/// it is [`spawn_after`].
///
/// ```
/// use std::time::Duration;
///
/// let scheduler = eventlet::spawn(|| {
///     eventlet::spawn_after_local(Duration::from_millis(20), || "too late")
/// });
/// let later = scheduler.join().unwrap(); // the scheduler has ended
/// assert!(later.join().unwrap_err().is::<eventlet::Killed>(), "never ran");
/// ```
///
/// # Panics
///
/// Panics if no stack can be had; see [`Builder::spawn_after_local`].
pub fn spawn_after_local<F, T>(delay: Duration, f: F) -> JoinHandle<T>
where
    F: FnOnce() -> T + 'static,
    T: 'static,
{
    Builder::new().spawn_after_local(delay, f).unwrap_or_else(|e| panic!("eventlet::spawn_after_local: {e}"))
}

crate::green_local! {
    /// The green threads this one spawned with `spawn_after_local` that
    /// may not have started: canceled when this one ends (and its
    /// green-locals are dropped).
    static LOCAL_SPAWNS: RefCell<Vec<CancelOnEnd>> = RefCell::new(Vec::new());
}

/// Cancels a green thread when dropped, if it has not started.
struct CancelOnEnd(TaskRef);

impl Drop for CancelOnEnd {
    fn drop(&mut self) {
        // No hub (the OS thread exiting): its unstarted green threads are
        // ended by the hub's own drop.
        hub::peek_hub(|h| h.cancel(&self.0));
    }
}

/// Blocks the current green thread (or the root context) for `dur`, letting
/// the others run. `sleep(Duration::ZERO)` is [`yield_now`]; a duration too
/// long to represent (`Duration::MAX`) sleeps until a timeout or kill. A
/// [`Timeout`](crate::Timeout) that expires during the sleep unwinds it.
/// While the caller unwinds it returns at once (see
/// [`timeout`](crate::timeout#while-unwinding)).
pub fn sleep(dur: Duration) {
    if dur.is_zero() {
        return yield_now();
    }
    let deadline = crate::time::deadline_after(dur);
    loop {
        match with_hub(|h| h.park_inner(deadline)) {
            Ok(Wakeup::Unparked) if !crate::time::expired(deadline) => {}
            Ok(_) => return,
            Err(e) if e.is_refusal() => return,
            Err(elapsed) => std::panic::resume_unwind(Box::new(elapsed)),
        }
    }
}

/// Lets every other ready green thread, and any due I/O, run before the
/// current one goes on (eventlet's `sleep(0)`).
pub fn yield_now() {
    with_hub(|h| h.yield_now())
}

/// Parks the current green thread (or the root) until it is unparked.
///
/// The waiting primitive everything else is built on. Like
/// [`std::thread::park`] it may return spuriously, and an `unpark` that
/// comes first makes the next `park` return at once; loop on a condition.
/// If a [`Timeout`](crate::Timeout) of the caller expires meanwhile, the
/// park unwinds with its [`Elapsed`](crate::timeout::Elapsed) payload; so
/// does a park while the caller unwinds, which cannot wait (see
/// [`timeout`](crate::timeout#while-unwinding)).
#[inline(always)]
pub fn park() {
    with_hub(|h| h.park(None));
}

/// Parks until unparked or until `dur` has passed, and says which. A
/// duration too long to represent means no deadline.
pub fn park_timeout(dur: Duration) -> Wakeup {
    match crate::time::deadline_after(dur) {
        Some(d) => park_deadline(d),
        None => {
            park();
            Wakeup::Unparked
        }
    }
}

/// Parks until unparked or until `deadline`, and says which. A
/// [`Timeout`](crate::Timeout) of the caller that expires first also
/// returns `TimedOut`.
pub fn park_deadline(deadline: Instant) -> Wakeup {
    with_hub(|h| h.park(Some(deadline)))
}

/// Returns a handle to the running green thread (in the root context, a
/// handle to the root, named `main`).
pub fn current() -> GreenThread {
    GreenThread { task: with_hub(|h| h.current()) }
}

/// Configures a green thread before spawning it, like
/// [`std::thread::Builder`].
///
/// ```
/// let h = eventlet::Builder::new()
///     .name("worker")
///     .stack_size(64 * 1024)
///     .spawn(|| eventlet::current().name().map(str::to_owned))
///     .unwrap();
/// assert_eq!(h.join().unwrap().as_deref(), Some("worker"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct Builder {
    name: Option<String>,
    stack_size: Option<usize>,
}

impl Builder {
    /// A builder with the defaults: no name, a
    /// [`DEFAULT_STACK_SIZE`](crate::DEFAULT_STACK_SIZE) stack.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Names the green thread (shown in panic and stack-overflow reports).
    pub fn name(mut self, name: impl Into<String>) -> Builder {
        self.name = Some(name.into());
        self
    }

    /// Sets the usable stack size in bytes (rounded up to whole pages; at
    /// least [`MIN_STACK_SIZE`](crate::MIN_STACK_SIZE)). Only touched pages
    /// cost memory.
    pub fn stack_size(mut self, size: usize) -> Builder {
        self.stack_size = Some(size);
        self
    }

    /// Spawns the green thread.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a stack size below the minimum; `OutOfMemory` when
    /// the kernel refuses a stack, with a message naming the limit that was
    /// hit (`vm.max_map_count`, memory) and how to raise it.
    pub fn spawn<F, T>(self, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.spawn_inner(f, None, false)
    }

    /// Spawns a green thread whose result nobody waits for; see [`spawn_n`].
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`].
    pub fn spawn_n<F>(self, f: F) -> io::Result<()>
    where
        F: FnOnce() + 'static,
    {
        self.spawn_inner(f, None, true).map(drop)
    }

    /// Spawns a green thread that starts after `delay`; see [`spawn_after`].
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`].
    pub fn spawn_after<F, T>(self, delay: Duration, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        self.spawn_inner(f, Some(delay), false)
    }

    /// Spawns a green thread that starts after `delay` unless the caller
    /// has ended; see [`spawn_after_local`].
    ///
    /// # Errors
    ///
    /// As [`Builder::spawn`].
    pub fn spawn_after_local<F, T>(self, delay: Duration, f: F) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let h = self.spawn_inner(f, Some(delay), false)?;
        if !with_hub(|hub| hub.current().is_root()) {
            let task = h.task.task().clone();
            LOCAL_SPAWNS.with_borrow_mut(|spawned| {
                // Those that started or ended need no canceling.
                spawned.retain(|c| !c.0.is_done() && !c.0.started());
                spawned.push(CancelOnEnd(task));
            });
        }
        Ok(h)
    }

    fn spawn_inner<F, T>(self, f: F, delay: Option<Duration>, report: bool) -> io::Result<JoinHandle<T>>
    where
        F: FnOnce() -> T + 'static,
        T: 'static,
    {
        let name = self.name.map(String::into_boxed_str);
        let task = try_hub(|h| h.spawn(f, name, self.stack_size, delay, report))??;
        Ok(JoinHandle { task, _not_send: PhantomData })
    }
}

/// An owned permission to join a green thread (wait for its result) or kill
/// it. Dropping it detaches the green thread, which goes on running.
///
/// A `JoinHandle` belongs to the OS thread whose hub runs the green thread,
/// so it is not `Send`:
///
/// ```compile_fail
/// let h = eventlet::spawn(|| 1);
/// std::thread::spawn(move || h.join());
/// ```
pub struct JoinHandle<T> {
    pub(crate) task: Typed<Packet<T>>,
    _not_send: PhantomData<*const ()>,
}

impl<T: 'static> JoinHandle<T> {
    /// A handle to `task`.
    pub(crate) fn from_task(task: Typed<Packet<T>>) -> JoinHandle<T> {
        JoinHandle { task, _not_send: PhantomData }
    }

    /// Waits for the green thread to finish and returns its result: `Ok`
    /// with its value, or `Err` with its panic payload. A killed green
    /// thread's payload is [`Killed`](crate::Killed).
    ///
    /// # Panics
    ///
    /// Panics if a green thread tries to join itself.
    ///
    /// A green thread that finishes as the caller's
    /// [`Timeout`](crate::Timeout) expires gives its result: the timeout
    /// fires at the next blocking call. While the caller unwinds, a join
    /// that would have to wait returns `Err` with the refusal
    /// [`Elapsed`](crate::timeout::Elapsed) at once (the green thread goes
    /// on, detached).
    pub fn join(self) -> std::thread::Result<T> {
        match self.wait_end() {
            Ok(()) => self.task.slot().borrow_mut().take().unwrap_or_else(|| Err(Box::new(hub::Killed))),
            Err(e) if e.is_refusal() => Err(Box::new(e)),
            Err(e) => std::panic::resume_unwind(Box::new(e)),
        }
    }

    /// Waits for the green thread to end, as [`join`](Self::join) does,
    /// leaving its result in place; `Err` if a timeout of the caller
    /// expired first (or the caller, unwinding, cannot wait). A kill of
    /// the caller unwinds from here, the handle still the caller's.
    pub(crate) fn wait_end(&self) -> Result<(), crate::timeout::Elapsed> {
        with_hub(|h| {
            let me = h.current();
            if TaskRef::ptr_eq(&me, self.task.task()) {
                panic!("eventlet: a green thread cannot join itself");
            }
            while !self.task.is_done() {
                self.task.set_joiner(me.clone());
                if let Err(e) = h.park_result(None) {
                    // Finished meanwhile: the result wins over the timeout.
                    if self.task.is_done() {
                        break;
                    }
                    return Err(e);
                }
            }
            Ok(())
        })
    }

    /// Kills the green thread.
    ///
    /// If it has not started it never will (its closure is dropped unrun).
    /// If it is blocked, it is woken with an unwinding at its blocking point,
    /// so its destructors run; this call then yields so it unwinds before the
    /// caller goes on (a destructor that blocks may still be running: `join`
    /// to wait for the end). Killing the running green thread unwinds it at
    /// once. Its `join` returns `Err` with a [`Killed`](crate::Killed)
    /// payload. Killing a finished green thread does nothing.
    pub fn kill(&self) {
        if with_hub(|h| h.kill(self.task.task())) {
            yield_now();
        }
    }

    /// Kills the green thread only if it has not started yet (eventlet's
    /// `cancel`), and returns whether it did. A canceled green thread never
    /// runs its closure: its own body drops the closure unrun (and runs its
    /// [`link`](Self::link)ed callbacks), which this call lets happen
    /// before it returns, as [`kill`](Self::kill) does; its `join` returns
    /// `Err` with [`Killed`](crate::Killed). One that has started, ended,
    /// or already been killed is left alone (`false`).
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let later = eventlet::spawn_after(Duration::from_secs(60), || "ran");
    /// assert!(later.cancel());
    /// assert!(later.is_finished());
    /// assert!(later.join().unwrap_err().is::<eventlet::Killed>());
    ///
    /// let started = eventlet::spawn(|| eventlet::sleep(Duration::from_millis(5)));
    /// eventlet::yield_now(); // it starts, and sleeps
    /// assert!(!started.cancel(), "started: left to finish");
    /// assert!(started.join().is_ok());
    /// ```
    pub fn cancel(&self) -> bool {
        let canceled = with_hub(|h| h.cancel(self.task.task()));
        if canceled {
            yield_now();
        }
        canceled
    }

    /// Links `f` to the green thread's end (eventlet's `link`): when the
    /// green thread finishes (returns, panics, or is killed, even before it
    /// started), `f` runs with its result, on that green thread, before
    /// [`join`](Self::join) returns the result (which `f` sees by
    /// reference). If it has finished already, `f` runs at once, here.
    ///
    /// Callbacks run in the order they were linked; one linked by a
    /// callback while they run runs after those linked before it. They run
    /// after the green thread's closure and before its green-locals are
    /// dropped, whether or not the `JoinHandle` is kept (a dropped handle's
    /// result is dropped after them). A callback that panics is reported
    /// on stderr and the next one still runs; one that blocks (it may:
    /// it runs on a green thread) delays the end of the green thread, so
    /// its `join`, until it returns.
    ///
    /// Returns a key for [`unlink`](Self::unlink).
    ///
    /// # Examples
    ///
    /// Results in the order the green threads finish:
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let done = eventlet::Queue::new();
    /// let handles: Vec<_> = [30u64, 10, 20]
    ///     .into_iter()
    ///     .map(|ms| {
    ///         let h = eventlet::spawn(move || {
    ///             eventlet::sleep(Duration::from_millis(ms));
    ///             ms
    ///         });
    ///         let done = done.clone();
    ///         h.link(move |r| done.put(*r.as_ref().unwrap()).unwrap());
    ///         h
    ///     })
    ///     .collect();
    /// let order: Vec<u64> = (0..3).map(|_| done.get().unwrap()).collect();
    /// assert_eq!(order, [10, 20, 30]);
    /// for h in handles {
    ///     h.join().unwrap();
    /// }
    /// ```
    ///
    /// # Panics
    ///
    /// A callback run at once (the green thread has finished) is an
    /// ordinary call: its panic unwinds here.
    pub fn link<F>(&self, f: F) -> LinkKey
    where
        F: FnOnce(&std::thread::Result<T>) + 'static,
    {
        if self.task.is_done() {
            // Ended: run it now, here (a key `unlink` never finds).
            let result = self.task.slot().borrow();
            match result.as_ref() {
                Some(r) => f(r),
                None => f(&Err(Box::new(hub::Killed))),
            }
            return LinkKey(0);
        }
        LinkKey(crate::link::link(&self.task, Box::new(f)))
    }

    /// Removes a callback linked with [`link`](Self::link) (eventlet's
    /// `unlink`). Returns whether it was still linked: `false` if it has
    /// run (or is running), or was unlinked before.
    pub fn unlink(&self, key: LinkKey) -> bool {
        key.0 != 0 && !self.task.is_done() && crate::link::unlink(&self.task, key.0)
    }

    /// Whether the green thread has finished (returned, panicked or been
    /// killed) and run its linked callbacks.
    pub fn is_finished(&self) -> bool {
        self.task.is_done()
    }

    /// A handle to the green thread.
    pub fn thread(&self) -> GreenThread {
        GreenThread { task: self.task.task().clone() }
    }
}

/// The key of a callback linked with [`JoinHandle::link`], to
/// [`unlink`](JoinHandle::unlink) it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkKey(u64);

impl<T> Drop for JoinHandle<T> {
    /// Detaches the green thread: it goes on, and drops its own result when
    /// it ends. If it has ended already, its result is dropped here.
    fn drop(&mut self) {
        let t = &self.task;
        if t.is_done() {
            // Whatever `join` did not take (its end took the joiner).
            let result = t.slot().borrow_mut().take();
            drop(result);
        } else {
            // With callbacks linked, it is detached once they have run
            // (they see the result first).
            if !crate::link::handle_dropped(t) {
                t.detached.set(true);
            }
            drop(t.take_joiner());
        }
    }
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle").field("id", &self.task.id).field("name", &self.task.name).finish()
    }
}

/// A handle to a green thread (or to the root context), from [`current`] or
/// [`JoinHandle::thread`]. Not `Send`; for waking from another OS thread use
/// [`GreenThread::unparker`]:
///
/// ```compile_fail
/// let me = eventlet::current();
/// std::thread::spawn(move || me.unpark());
/// ```
///
/// ```
/// let waker = eventlet::current().unparker();
/// std::thread::spawn(move || waker.unpark());
/// eventlet::park();
/// ```
#[derive(Clone)]
pub struct GreenThread {
    task: TaskRef,
}

impl GreenThread {
    /// A number unique among the green threads of this process.
    pub fn id(&self) -> u64 {
        self.task.id
    }

    /// The name given with [`Builder::name`] (`main` for the root).
    pub fn name(&self) -> Option<&str> {
        self.task.name.as_deref()
    }

    /// Wakes the green thread if it is parked; otherwise its next [`park`]
    /// returns at once.
    pub fn unpark(&self) {
        with_hub(|h| h.unpark(&self.task))
    }

    /// A `Send + Sync` handle that wakes this green thread from any OS
    /// thread.
    pub fn unparker(&self) -> Unparker {
        with_hub(|h| Unparker::new(h.shared.clone(), self.task.key.get(), self.task.id))
    }

    /// Whether the green thread has finished.
    pub fn is_finished(&self) -> bool {
        self.task.state.get() == State::Done
    }
}

impl PartialEq for GreenThread {
    fn eq(&self, other: &GreenThread) -> bool {
        TaskRef::ptr_eq(&self.task, &other.task)
    }
}

impl Eq for GreenThread {}

impl fmt::Debug for GreenThread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.task.fmt(f)
    }
}
