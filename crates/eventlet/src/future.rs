//! Green threads and futures, both ways: a green thread waits on any future
//! ([`block_on`]), and async code waits on green threads ([`JoinHandle`] is
//! [`IntoFuture`], [`hub::Handle::spawn_future`](crate::hub::Handle::spawn_future)
//! gives a `Send` future). See the guide page
//! [Green threads and async](crate::guide::async_bridge).
//!
//! Nothing here needs a dependency: a future is polled with a [`Waker`]
//! that unparks the green thread, and that is all `std::task` asks for. So
//! `block_on` is in the core and works with any future (`futures`,
//! `async-channel`, hand-written ones); futures that need tokio's reactor
//! and timers need the `tokio` feature, which gives every hub a tokio
//! runtime that it drives once used (see the guide page).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::{Future, IntoFuture};
use std::panic::{self, AssertUnwindSafe};
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};

use crate::hub::{self, peek_hub, with_hub, Hub, HubGone, HubShared, Remote};
use crate::JoinHandle;

/// Whom a waker wakes: one green thread (or a root context) of one hub.
///
/// Waking from the hub's own OS thread unparks it directly (a push on the
/// run queue, no syscall); from any other thread it goes through the hub's
/// remote wake queue, and the waking thread needs no hub of its own. The
/// green thread is named by its slot and its process-unique id, so a waker
/// kept after the green thread ended (or after its hub's thread exited)
/// wakes nobody. Either way the wake is counted on the hub's thread (see
/// [`CachedWaker::wakes`]), so a wake costs no atomic operation of its own
/// there.
struct WakeTarget {
    shared: Arc<HubShared>,
    key: usize,
    id: u64,
}

impl Wake for WakeTarget {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let local = peek_hub(|h| {
            if h.id != self.shared.id {
                return false;
            }
            wake_here(h, self.key, self.id);
            #[cfg(feature = "tokio")]
            h.tokio.wake_idle();
            true
        });
        if local != Some(true) {
            self.shared.send(Remote::WakeFuture { key: self.key, id: self.id });
        }
    }
}

/// A wake of the `block_on` waker of the green thread at `key` with `id`,
/// on its hub `h`'s own thread (made there, or sent there from another
/// thread): counts it, then unparks the green thread.
#[inline]
pub(crate) fn wake_here(h: &Hub, key: usize, id: u64) {
    // Never borrowed mutably here: the only `borrow_mut` (in
    // `current_waker`) runs no code that could wake a waker.
    if let Some(Some((i, w))) = h.block_on_wakers.borrow().get(key) {
        if *i == id {
            w.wakes.set(w.wakes.get().wrapping_add(1));
        }
    }
    h.unpark_key(key, id);
}

/// Per slot of the hub's green threads: the id of the last one that used
/// `block_on` there, and its waker.
///
/// The waker of each green thread that has waited in `block_on` on a hub,
/// by its slot (with its id): made once per green thread, so a `block_on`
/// costs no allocation and no atomic read-modify-write of its own (a slot
/// reused by a later green thread gets a new waker; the id tells them
/// apart). A field of the hub ([`Hub::block_on_wakers`]), not a
/// thread-local of its own: it must live as long as the hub (a
/// thread-local destroyed first made a `block_on` in another
/// thread-local's destructor panic, an abort).
pub(crate) type Wakers = RefCell<Vec<Option<(u64, Rc<CachedWaker>)>>>;

/// A green thread's waker, and the count of its wakes.
pub(crate) struct CachedWaker {
    waker: Waker,
    /// Wakes so far: what `block_on` waits on. The unpark alone is not
    /// enough: a blocking green call made inside the future's own `poll`
    /// (a sleep, green I/O, a nested `block_on`) can take the unpark
    /// meant for the `block_on` around it, and its wake would be lost.
    /// Counted on the hub's thread only, by [`wake_here`]: a wake from
    /// another thread is counted when the hub takes its message, which
    /// also orders what the waking thread did before it (the message
    /// queue's lock) before the poll that follows.
    wakes: Cell<u64>,
}

/// The waker of the running green thread (or root) of `h`.
#[inline]
fn current_waker(h: &Hub) -> Rc<CachedWaker> {
    let (key, id) = h.current_key_id();
    let mut ws = h.block_on_wakers.borrow_mut();
    match ws.get(key) {
        Some(Some((i, w))) if *i == id => w.clone(),
        _ => new_waker(&mut ws, h, key, id),
    }
}

#[cold]
#[inline(never)]
fn new_waker(ws: &mut Vec<Option<(u64, Rc<CachedWaker>)>>, h: &Hub, key: usize, id: u64) -> Rc<CachedWaker> {
    if ws.len() <= key {
        ws.resize(key + 1, None);
    }
    let target = Arc::new(WakeTarget { shared: h.shared.clone(), key, id });
    let w = Rc::new(CachedWaker { waker: Waker::from(target), wakes: Cell::new(0) });
    ws[key] = Some((id, w.clone()));
    w
}

/// Counts as a possible wake-up from outside while it lives (the hub's
/// deadlock check and a hub thread's end look at that): whoever holds the
/// waker may wake the green thread from anywhere.
struct Waiting<'a>(&'a Hub);

impl Waiting<'_> {
    fn new(h: &Hub) -> Waiting<'_> {
        h.futures_waiting.set(h.futures_waiting.get() + 1);
        Waiting(h)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.futures_waiting.set(self.0.futures_waiting.get() - 1);
    }
}

/// Polls `fut` once on this thread's hub `h` (inside its tokio runtime's
/// context when another runtime's context may be current).
#[inline(always)]
fn poll_once<F: Future>(h: &Hub, fut: Pin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    #[cfg(feature = "tokio")]
    let _enter = h.tokio.before_poll();
    #[cfg(not(feature = "tokio"))]
    let _ = h;
    fut.poll(cx)
}

/// Runs a future to completion on the current green thread (or the root):
/// the green thread parks while the future is pending, and the hub runs
/// everything else meanwhile; from the root, the wait runs the hub.
///
/// Works with any [`Future`] (or [`IntoFuture`]). The waker it polls with
/// unparks the green thread: from this OS thread with a push on the run
/// queue, from any other through the hub's remote wake queue (the waking
/// thread needs no hub); a waker kept after the green thread has ended
/// wakes nobody. With the `tokio` feature the hub drives a tokio runtime
/// from the first `block_on` on, so futures that need tokio's reactor and
/// timers (reqwest, tokio-postgres, sqlx, `tokio::net`, `tokio::time`) work
/// unchanged; see [Green threads and async](crate::guide::async_bridge).
///
/// ```
/// use std::future::Future;
/// use std::pin::Pin;
/// use std::rc::Rc;
/// use std::cell::Cell;
/// use std::task::{Context, Poll, Waker};
///
/// /// Pending until `ready` is set; whoever sets it wakes `waker`.
/// struct Flag(Rc<(Cell<bool>, Cell<Option<Waker>>)>);
/// impl Future for Flag {
///     type Output = &'static str;
///     fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<&'static str> {
///         if self.0 .0.get() {
///             return Poll::Ready("done");
///         }
///         self.0 .1.set(Some(cx.waker().clone()));
///         Poll::Pending
///     }
/// }
///
/// let flag = Rc::new((Cell::new(false), Cell::new(None::<Waker>)));
/// let f = flag.clone();
/// eventlet::spawn(move || {
///     f.0.set(true);
///     f.1.take().unwrap().wake();
/// });
/// assert_eq!(eventlet::block_on(Flag(flag)), "done");
/// ```
///
/// # Cancellation
///
/// The future lives on the green thread's stack. When the green thread is
/// killed while it waits, or a [`Timeout`](crate::Timeout) of it expires,
/// the wait unwinds (with [`Killed`](crate::Killed) or the timeout's
/// [`Elapsed`](crate::timeout::Elapsed)) and the future is dropped, which
/// is how futures are cancelled. A future woken by the time the timeout
/// expires is polled once more first: if it is ready, its output wins
/// (the timeout fires at the next blocking call), as for every blocking
/// call (see [the rules](crate::guide::rules)).
///
/// # While unwinding
///
/// A green thread never switches away while it is panicking. Called during
/// unwinding (from a destructor), `block_on` polls the future once: if it is
/// ready its output is returned, otherwise the wait is refused as every
/// wait is then: `block_on` unwinds at once with an
/// [`Elapsed`](crate::timeout::Elapsed) for which
/// [`is_refusal`](crate::timeout::Elapsed::is_refusal) is true. Inside
/// [`with_timeout`](crate::with_timeout) that is an `Err`, which is how a
/// destructor that must wait on a future stays safe; escaping a destructor
/// that runs during unwinding, it aborts the process, as Rust does for any
/// panic there (see [`timeout`](crate::timeout#while-unwinding)).
///
/// # Panics
///
/// When called from async code running on this thread's hub (a tokio task
/// of the hub's runtime): async code must not block; `.await` instead.
/// When the hub's tokio runtime cannot be started (feature `tokio`).
// Inlined into its caller, down to the switch in `park_result`: a green
// thread parked here then resumes in its caller's own frame, not in frames
// of `block_on` whose returns the CPU would mispredict after the switch
// (see `Hub::park_plain`). The rare paths are kept out of line.
#[inline(always)]
pub fn block_on<F: IntoFuture>(future: F) -> F::Output {
    let mut fut = pin!(future.into_future());
    with_hub(
        #[inline(always)]
        |h| {
            #[cfg(feature = "tokio")]
            h.tokio.activate();
            let waker = current_waker(h);
            let mut cx = Context::from_waker(&waker.waker);
            // A wake after this (even one during the poll) makes it poll again.
            let mut seen = waker.wakes.get();
            if let Poll::Ready(v) = poll_once(h, fut.as_mut(), &mut cx) {
                return v;
            }
            let _waiting = Waiting::new(h);
            loop {
                // Parks until the waker was used: an unpark that is not its
                // wake (a stale one) does not poll again, and its wake taken
                // by a green wait inside the poll is not lost.
                loop {
                    let now = waker.wakes.get();
                    if now != seen {
                        seen = now;
                        break;
                    }
                    if let Err(e) = h.park_result(None) {
                        return expired(h, fut.as_mut(), &mut cx, &waker.wakes, seen, e);
                    }
                }
                if let Poll::Ready(v) = poll_once(h, fut.as_mut(), &mut cx) {
                    return v;
                }
            }
        },
    )
}

/// The end of a `block_on` whose wait failed with `e`: a `Timeout` expired
/// (or the wait was refused). An outcome that came with it wins: the
/// timeout fires at the next blocking call, and what the future holds (a
/// finished green thread's result) is not dropped.
#[cold]
#[inline(never)]
fn expired<F: Future>(
    h: &Hub,
    fut: Pin<&mut F>,
    cx: &mut Context<'_>,
    wakes: &Cell<u64>,
    seen: u64,
    e: crate::timeout::Elapsed,
) -> F::Output {
    if wakes.get() != seen {
        if let Poll::Ready(v) = poll_once(h, fut, cx) {
            return v;
        }
    }
    panic::resume_unwind(Box::new(e))
}

/// A [`JoinHandle`] as a future: what `.await` on a `JoinHandle` gives.
/// Its output is what [`join`](JoinHandle::join) returns.
///
/// ```
/// let out = eventlet::block_on(async {
///     let h = eventlet::spawn(|| 6 * 7);
///     h.await
/// });
/// assert_eq!(out.unwrap(), 42);
/// ```
///
/// It belongs to the OS thread of the green thread's hub (poll it there: a
/// `LocalSet` task, a green thread's `block_on`), so it is not `Send`:
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// send(std::future::IntoFuture::into_future(eventlet::spawn(|| 1)));
/// ```
///
/// Dropping it before the green thread has finished kills the green thread
/// (cancelling the future cancels the work), without waiting for it to
/// unwind. For a `Send` future of green work, see
/// [`hub::Handle::spawn_future`](crate::hub::Handle::spawn_future).
pub struct JoinFuture<T> {
    handle: Option<JoinHandle<T>>,
}

// Never pinned through: it holds a handle, not the green thread's value.
impl<T> Unpin for JoinFuture<T> {}

impl<T: 'static> IntoFuture for JoinHandle<T> {
    type Output = std::thread::Result<T>;
    type IntoFuture = JoinFuture<T>;

    fn into_future(self) -> JoinFuture<T> {
        JoinFuture { handle: Some(self) }
    }
}

impl<T: 'static> Future for JoinFuture<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let h = this.handle.as_ref().expect("JoinFuture polled after it completed");
        if h.is_finished() {
            let h = this.handle.take().expect("checked above");
            return Poll::Ready(h.task.slot().borrow_mut().take().unwrap_or_else(|| Err(Box::new(hub::Killed))));
        }
        let id = h.task.id;
        // The waker it replaces is dropped after the borrow: its drop is
        // the executor's code, which may drop another `JoinFuture`.
        let _old = with_hub(|hub| {
            let mut ws = hub.join_wakers.borrow_mut();
            match ws.get_mut(&id) {
                Some(w) if w.will_wake(cx.waker()) => None,
                Some(w) => Some(std::mem::replace(w, cx.waker().clone())),
                None => ws.insert(id, cx.waker().clone()),
            }
        });
        Poll::Pending
    }
}

impl<T> Drop for JoinFuture<T> {
    fn drop(&mut self) {
        let Some(h) = self.handle.take() else { return };
        if h.task.is_done() {
            return;
        }
        let id = h.task.id;
        peek_hub(|hub| {
            // Dropped after the borrow (see `poll`).
            let waker = hub.join_wakers.borrow_mut().remove(&id);
            drop(waker);
            hub.kill_key(h.task.key.get(), id);
        });
    }
}

impl<T> fmt::Debug for JoinFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinFuture").field("handle", &self.handle).finish()
    }
}

/// What a [`GreenFuture`] and its green thread share.
struct Shared<T> {
    /// The result, once the green thread has finished.
    result: Option<std::thread::Result<T>>,
    /// Whether the result was stored (it may have been taken since).
    done: bool,
    /// Who waits for it.
    waker: Option<Waker>,
    /// The green thread (slot, id), once it has started.
    task: Option<(usize, u64)>,
    /// Set when the handle was dropped first: the green thread does not
    /// start, or is killed.
    cancelled: bool,
}

fn lock<T>(m: &Mutex<Shared<T>>) -> MutexGuard<'_, Shared<T>> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A `Send` handle to a green thread that is a future of its result (its
/// output is what [`JoinHandle::join`] returns), from
/// [`hub::Handle::spawn_future`](crate::hub::Handle::spawn_future).
///
/// Dropping it before the green thread has finished kills the green thread
/// (if it has not started, it never will); [`detach`](Self::detach) lets it
/// run on.
///
/// If the green thread never runs (its hub's thread ended before it
/// started, or it was killed first), the output is `Err` with
/// [`Killed`](crate::Killed), as for a green thread killed while it ran.
#[must_use = "dropping a GreenFuture kills its green thread; call `detach` to let it run"]
pub struct GreenFuture<T> {
    state: Arc<Mutex<Shared<T>>>,
    hub: Arc<HubShared>,
    detached: bool,
}

impl<T> GreenFuture<T> {
    /// Lets the green thread run on when this handle is dropped; its result
    /// is then dropped on its hub (or here, if it has finished already).
    pub fn detach(mut self) {
        self.detached = true;
    }

    /// Whether the green thread has finished.
    pub fn is_finished(&self) -> bool {
        lock(&self.state).done
    }
}

impl<T> Future for GreenFuture<T> {
    type Output = std::thread::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut s = lock(&self.state);
        if let Some(r) = s.result.take() {
            return Poll::Ready(r);
        }
        assert!(!s.done, "GreenFuture polled after it completed");
        match &mut s.waker {
            Some(w) => w.clone_from(cx.waker()),
            None => s.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> Drop for GreenFuture<T> {
    fn drop(&mut self) {
        if self.detached {
            return;
        }
        let task = {
            let mut s = lock(&self.state);
            if s.done {
                return;
            }
            s.cancelled = true;
            s.waker = None;
            s.task
        };
        let Some((key, id)) = task else { return };
        let local = peek_hub(|h| {
            if h.id != self.hub.id {
                return false;
            }
            h.kill_key(key, id);
            true
        });
        if local != Some(true) {
            self.hub.send(Remote::Kill { key, id });
        }
    }
}

impl<T> fmt::Debug for GreenFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.state);
        f.debug_struct("GreenFuture")
            .field("hub", &self.hub.id)
            .field("green_thread", &s.task.map(|t| t.1))
            .field("finished", &s.done)
            .finish()
    }
}

/// The green thread's side of a [`GreenFuture`]: runs `f` unless the
/// handle is gone, and hands the result over. If the closure is dropped
/// unrun (its hub's thread ended first, or the green thread was killed
/// before it started), the future gets [`Killed`](hub::Killed) instead of
/// waiting forever.
fn remote_body<F, T>(f: F, state: Arc<Mutex<Shared<T>>>) -> impl FnOnce() + Send + 'static
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let end = End(state);
    move || {
        let end = end;
        {
            let mut s = lock(&end.0);
            if s.cancelled {
                return;
            }
            s.task = Some(with_hub(Hub::current_key_id));
        }
        // Kept with the green-locals: if this green thread is still parked
        // when its OS thread exits (leaked, never resumed), the exiting hub
        // drops it and the future gets `Killed`.
        crate::local::keep_until_end(Box::new(End(end.0.clone())));
        let r = panic::catch_unwind(AssertUnwindSafe(f));
        end.finish(r);
    }
}

/// Hands a [`GreenFuture`] its result; dropped without [`finish`](Self::finish)
/// (the closure dropped unrun), hands it [`Killed`](hub::Killed).
struct End<T>(Arc<Mutex<Shared<T>>>);

impl<T> End<T> {
    fn finish(&self, r: std::thread::Result<T>) {
        let waker = {
            let mut s = lock(&self.0);
            if s.done {
                return;
            }
            s.done = true;
            if s.cancelled {
                None
            } else {
                s.result = Some(r);
                s.waker.take()
            }
        };
        // The result (if nobody wants it) is dropped after the lock.
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Drop for End<T> {
    fn drop(&mut self) {
        if !lock(&self.0).done {
            self.finish(Err(Box::new(hub::Killed)));
        }
    }
}

/// [`hub::Handle::spawn_future`](crate::hub::Handle::spawn_future) on the hub
/// `hub`.
pub(crate) fn spawn_remote<F, T>(hub: &Arc<HubShared>, f: F) -> Result<GreenFuture<T>, HubGone<F>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let state = Arc::new(Mutex::new(Shared { result: None, done: false, waker: None, task: None, cancelled: false }));
    let handle = GreenFuture { state: state.clone(), hub: hub.clone(), detached: false };
    if peek_hub(|h| h.id == hub.id) == Some(true) {
        let body = remote_body(f, state);
        if let Err(e) = with_hub(|h| h.spawn(body, None, None, None, true)) {
            panic!("eventlet::hub::Handle::spawn_future: {e}");
        }
        return Ok(handle);
    }
    let mut f = Some(f);
    let make = || Remote::Spawn(Box::new(remote_body(f.take().expect("taken once"), state)));
    hub.send_with(make);
    match f {
        None => Ok(handle),
        Some(f) => {
            let mut handle = handle;
            handle.detached = true;
            Err(HubGone(f))
        }
    }
}
