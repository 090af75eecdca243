//! Several hubs in one process: hub threads, and handles that put work on
//! a hub from any OS thread.
//!
//! A green thread never moves between OS threads, so using several cores
//! means several hubs, one per OS thread, each with its own green threads.
//! A [`Group`](super::Group) is the ready-made form; these are its parts.
//! [`start`] runs a hub on a new OS thread; a [`Handle`] (`Send + Sync`)
//! spawns green threads onto a hub from anywhere, the closure being `Send`
//! because it crosses threads (once there, it may use `Rc` and the rest),
//! and its [`RemoteJoinHandle`] brings the result back to any thread.
//!
//! ```
//! use std::sync::mpsc;
//!
//! let hub = eventlet::hub::start("worker")?;
//! let (tx, rx) = mpsc::channel();
//! let job = hub.handle().spawn(move || {
//!     // A green thread of the worker's hub, on its OS thread.
//!     eventlet::sleep(std::time::Duration::from_millis(1));
//!     tx.send(std::thread::current().name().map(str::to_owned)).unwrap();
//!     42
//! })?;
//! assert_eq!(rx.recv().unwrap().as_deref(), Some("worker"));
//! assert_eq!(job.join().unwrap(), 42);
//! hub.join(); // returns once its green threads are done
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{with_hub, HubShared, Killed, Remote};
use crate::channel::{self, RecvTimeoutError, TrySendError};
use crate::future::GreenFuture;
use crate::greenthread::park;
use crate::report;

/// A `Send + Sync` handle to a hub: spawns green threads onto it from any
/// OS thread. While a handle exists, the hub counts as possibly woken from
/// outside (its deadlock check stays quiet, a hub thread keeps running).
pub struct Handle {
    pub(super) shared: Arc<HubShared>,
}

/// The error of [`Handle::spawn`]: the hub's OS thread has exited. Holds
/// the closure, not run.
pub struct HubGone<F>(pub F);

impl<F> fmt::Debug for HubGone<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HubGone(..)")
    }
}

impl<F> fmt::Display for HubGone<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the hub's OS thread has exited")
    }
}

impl<F> std::error::Error for HubGone<F> {}

/// A handle to the current OS thread's hub (creating it if needed).
pub fn handle() -> Handle {
    with_hub(|h| Handle::new(h.shared.clone()))
}

impl Handle {
    pub(super) fn new(shared: Arc<HubShared>) -> Handle {
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Handle { shared }
    }

    /// Spawns a green thread running `f` on this handle's hub. It starts
    /// once that hub next looks at its wake-ups, in the order sent.
    ///
    /// The returned [`RemoteJoinHandle`] waits for its result from any OS
    /// thread or green thread; dropping it detaches the green thread (a
    /// panic is then reported on stderr, as for [`spawn_n`](crate::spawn_n),
    /// and goes no further).
    ///
    /// # Errors
    ///
    /// [`HubGone`] with `f` if the hub's OS thread has exited.
    pub fn spawn<F, T>(&self, f: F) -> Result<RemoteJoinHandle<T>, HubGone<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        spawn_joinable(&self.shared, f, ())
    }

    /// Spawns a green thread running `f` on this handle's hub and returns a
    /// `Send` [`Future`](std::future::Future) of its result: how async code
    /// (a tokio task, an axum handler, on this thread's hub or any other)
    /// waits for blocking-style green work. On the current OS thread's own
    /// hub the green thread is spawned at once; on another hub it starts
    /// once that hub looks at its wake-ups.
    ///
    /// Unlike [`spawn`](Self::spawn)'s handle (joined by blocking, dropped
    /// to detach), dropping the future before the green thread has finished
    /// kills the green thread: cancelling the future cancels the work.
    /// [`GreenFuture::detach`] lets it run on instead.
    ///
    /// ```
    /// let hub = eventlet::hub::start("green")?;
    /// let work = hub.handle().spawn_future(|| {
    ///     eventlet::sleep(std::time::Duration::from_millis(1));
    ///     6 * 7
    /// })?;
    /// // Any executor can wait for it; here the green way.
    /// assert_eq!(eventlet::block_on(work).unwrap(), 42);
    /// hub.join();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`HubGone`] with `f` if the hub's OS thread has exited.
    ///
    /// # Panics
    ///
    /// On the current thread's hub, if no stack can be had (as
    /// [`spawn`](crate::spawn)).
    pub fn spawn_future<F, T>(&self, f: F) -> Result<GreenFuture<T>, HubGone<F>>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        crate::future::spawn_remote(&self.shared, f)
    }

    /// The id of the hub (distinct for every hub of the process).
    pub fn id(&self) -> u64 {
        self.shared.id
    }
}

impl Clone for Handle {
    fn clone(&self) -> Handle {
        Handle::new(self.shared.clone())
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last one: a hub thread may be idle only because of us.
            self.shared.send(Remote::Wake);
        }
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").field("hub", &self.shared.id).finish()
    }
}

/// A hub running on its own OS thread, from [`start`].
#[derive(Debug)]
pub struct HubThread {
    handle: Handle,
    thread: std::thread::JoinHandle<()>,
    /// Disconnected when the thread's body returns (or unwinds): what
    /// [`HubThread::join`] waits for, green.
    ended: channel::Receiver<()>,
}

/// Starts an OS thread named `name` that runs a hub: it runs the green
/// threads spawned onto it (through [`HubThread::handle`] and its clones)
/// and ends once no [`Handle`] to it is left and none of its green threads
/// can run again.
///
/// # Errors
///
/// The OS refused the thread, or the hub could not be made there (no
/// epoll descriptor, say).
pub fn start(name: &str) -> std::io::Result<HubThread> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (ended_tx, ended) = channel::bounded::<()>(1);
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
        let _ended = ended_tx;
        let made = super::try_with_hub(|h| {
            h.serving.set(true);
            Handle::new(h.shared.clone())
        });
        let Some(handle) = made else { return };
        if tx.send(handle).is_err() {
            return;
        }
        drop(tx);
        serve_forever();
    })?;
    let handle = rx.recv().map_err(|_| std::io::Error::other("the hub thread could not make its hub"))?;
    Ok(HubThread { handle, thread, ended })
}

/// The root of a hub thread: park while anything may still happen.
fn serve_forever() {
    loop {
        // A hub thread's root has no `Timeout` and does not unwind here.
        park();
        let (idle, left) = root_view();
        if idle {
            report_stranded(left);
            return;
        }
    }
}

/// What the root of a hub thread sees when it wakes: whether nothing on
/// its hub can run again (nothing ready, no timer, no I/O wait, no wake-up
/// from outside, no tokio task), and how many green threads the hub holds.
pub(super) fn root_view() -> (bool, usize) {
    with_hub(|h| {
        (
            h.queue.is_empty()
                && h.yielded.is_empty()
                && h.timers.borrow().len() == 0
                && h.nothing_can_wake()
                && !h.tokio_tasks_alive(),
            h.tasks.borrow().len() - 1,
        )
    })
}

/// Says so when a hub thread ends with green threads parked that nothing
/// can wake (they are leaked with its hub).
pub(super) fn report_stranded(left: usize) {
    if left > 0 {
        crate::report::stderr_line(format_args!(
            "hub thread {:?} ends with {left} green threads parked that nothing can wake",
            std::thread::current().name().unwrap_or("?")
        ));
    }
}

impl HubThread {
    /// A handle to the thread's hub.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Drops this value's handle and waits for the thread to end (once the
    /// other handles are gone and its green threads are done).
    ///
    /// It waits as every blocking call of this crate does: a green thread
    /// parks, and the calling OS thread's hub runs its other green threads
    /// meanwhile (they may be the ones holding the other handles).
    ///
    /// # Panics
    ///
    /// If called on the hub thread itself (from one of its green threads):
    /// that would wait for itself forever. If the hub thread panicked (a
    /// bug: green threads' panics stay in them).
    pub fn join(self) {
        if super::peek_hub(|h| h.id) == Some(self.handle.shared.id) {
            panic!(
                "eventlet::hub::HubThread::join called on the hub thread itself: it would wait for its own end, \
                 forever (call it from another thread)"
            );
        }
        let HubThread { handle, thread, ended } = self;
        drop(handle);
        // Ends (disconnected) once the thread's body has returned; then
        // only its thread-locals' destructors are left, which do not wait.
        let _ = ended.recv();
        if let Err(p) = thread.join() {
            std::panic::resume_unwind(p);
        }
    }
}

/// Sends `f` to the hub of `shared` to run on a green thread of its own;
/// its result comes back through the handle. `guard` is dropped when the
/// green thread starts (or when `f` is dropped unrun, or handed back).
pub(super) fn spawn_joinable<F, T, G>(shared: &HubShared, f: F, guard: G) -> Result<RemoteJoinHandle<T>, HubGone<F>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
    G: Send + 'static,
{
    let (tx, rx) = channel::bounded(1);
    let mut f = Some(f);
    let make = || {
        let f = f.take().expect("taken once");
        Remote::Spawn(Box::new(move || {
            drop(guard);
            run_joinable(f, tx)
        }))
    };
    shared.send_with(make);
    match f {
        None => Ok(RemoteJoinHandle { rx, hub: shared.id }),
        Some(f) => Err(HubGone(f)),
    }
}

/// The body of a green thread spawned through a [`Handle`]: runs `f`, and
/// hands its result or panic to the join handle, or reports the panic if
/// the handle is gone.
fn run_joinable<T: Send + 'static>(f: impl FnOnce() -> T, tx: channel::Sender<std::thread::Result<T>>) {
    // If this green thread is still parked when its OS thread exits, it is
    // leaked, never resumed: the guard, dropped with its green-locals then,
    // tells the joiner it was killed.
    crate::local::keep_until_end(Box::new(JoinEnd(tx.clone())));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    // Capacity 1, one send: never waits.
    if let Err(TrySendError::Full(Err(p)) | TrySendError::Disconnected(Err(p))) = tx.try_send(result) {
        if !p.is::<Killed>() {
            with_hub(|h| report::green_panic(h.cur(), p.as_ref()));
        }
        report::drop_payload(p);
    }
}

/// Sends [`Killed`] to a [`RemoteJoinHandle`] when dropped, unless the
/// result went first (the channel holds one message).
struct JoinEnd<T>(channel::Sender<std::thread::Result<T>>);

impl<T> Drop for JoinEnd<T> {
    fn drop(&mut self) {
        if let Err(e) = self.0.try_send(Err(Box::new(Killed))) {
            drop(e.into_inner());
        }
    }
}

/// Waits for a green thread spawned through a [`Handle`] or a
/// [`Group`](super::Group), from any OS thread or green thread: `Send`,
/// unlike [`JoinHandle`](crate::JoinHandle). Dropping it detaches the green
/// thread.
///
/// A green thread that waits here parks (its hub runs the others); a
/// plain OS thread runs its own hub meanwhile, like every blocking call of
/// this crate. A green thread must not join itself this way: that waits
/// forever.
pub struct RemoteJoinHandle<T> {
    rx: channel::Receiver<std::thread::Result<T>>,
    hub: u64,
}

impl<T> RemoteJoinHandle<T> {
    /// Waits for the green thread to finish: `Ok` with its value, or `Err`
    /// with its panic payload. If it was killed, or its closure was dropped
    /// unrun (its hub ended first), the payload is [`Killed`].
    pub fn join(self) -> std::thread::Result<T> {
        self.rx.recv().unwrap_or_else(|_| Err(Box::new(Killed)))
    }

    /// Like [`join`](Self::join), but gives up after `timeout` and hands
    /// the handle back.
    ///
    /// # Errors
    ///
    /// The handle itself, when the green thread has not finished in time.
    pub fn join_timeout(self, timeout: Duration) -> Result<std::thread::Result<T>, RemoteJoinHandle<T>> {
        match crate::time::deadline_after(timeout) {
            Some(d) => self.join_deadline(d),
            None => Ok(self.join()),
        }
    }

    /// Like [`join_timeout`](Self::join_timeout), with a deadline.
    ///
    /// # Errors
    ///
    /// The handle itself, when the green thread has not finished in time.
    pub fn join_deadline(self, deadline: Instant) -> Result<std::thread::Result<T>, RemoteJoinHandle<T>> {
        match self.rx.recv_deadline(deadline) {
            Ok(r) => Ok(r),
            Err(RecvTimeoutError::Disconnected) => Ok(Err(Box::new(Killed))),
            Err(RecvTimeoutError::Timeout) => Err(self),
        }
    }

    /// Whether the green thread has finished (or will never run).
    pub fn is_finished(&self) -> bool {
        !self.rx.is_empty() || self.rx.is_disconnected()
    }

    /// The id of the hub it runs on ([`Handle::id`]).
    pub fn hub_id(&self) -> u64 {
        self.hub
    }
}

impl<T> fmt::Debug for RemoteJoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RemoteJoinHandle").field("hub", &self.hub).field("finished", &self.is_finished()).finish()
    }
}
