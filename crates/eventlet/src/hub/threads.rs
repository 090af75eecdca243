//! Several hubs in one process: hub threads, and handles that put work on
//! a hub from any OS thread.
//!
//! A green thread never moves between OS threads, so using several cores
//! means several hubs, one per OS thread, each with its own green threads.
//! [`start`] runs a hub on a new OS thread; a [`Handle`] (`Send + Sync`)
//! spawns green threads onto a hub from anywhere, the closure being `Send`
//! because it crosses threads (once there, it may use `Rc` and the rest).
//! Servers spread over the hubs by each binding the same address with
//! [`TcpListener::bind_reuse_port`](crate::net::TcpListener::bind_reuse_port):
//! the kernel shares the incoming connections out among them.
//!
//! ```
//! use std::sync::mpsc;
//!
//! let hub = eventlet::hub::start("worker")?;
//! let (tx, rx) = mpsc::channel();
//! hub.handle().spawn(move || {
//!     // A green thread of the worker's hub, on its OS thread.
//!     eventlet::sleep(std::time::Duration::from_millis(1));
//!     tx.send(std::thread::current().name().map(str::to_owned)).unwrap();
//! })?;
//! assert_eq!(rx.recv().unwrap().as_deref(), Some("worker"));
//! hub.join(); // returns once its green threads are done
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{with_hub, HubShared, Remote};
use crate::greenthread::park;

/// A `Send + Sync` handle to a hub: spawns green threads onto it from any
/// OS thread. While a handle exists, the hub counts as possibly woken from
/// outside (its deadlock check stays quiet, a hub thread keeps running).
pub struct Handle {
    shared: Arc<HubShared>,
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
    fn new(shared: Arc<HubShared>) -> Handle {
        shared.handles.fetch_add(1, Ordering::SeqCst);
        Handle { shared }
    }

    /// Spawns a green thread running `f` on this handle's hub, without a
    /// join handle (like [`spawn_n`](crate::spawn_n): a panic is reported
    /// and goes no further). It starts once that hub next looks at its
    /// wake-ups, in the order sent.
    ///
    /// # Errors
    ///
    /// [`HubGone`] with `f` if the hub's OS thread has exited.
    pub fn spawn<F>(&self, f: F) -> Result<(), HubGone<F>>
    where
        F: FnOnce() + Send + 'static,
    {
        let mut f = Some(f);
        let make = || Remote::Spawn(Box::new(f.take().expect("taken once")));
        self.shared.send_with(make);
        match f {
            None => Ok(()),
            Some(f) => Err(HubGone(f)),
        }
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
    let thread = std::thread::Builder::new().name(name.to_owned()).spawn(move || {
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
    Ok(HubThread { handle, thread })
}

/// The root of a hub thread: park while anything may still happen.
fn serve_forever() {
    loop {
        park();
        let (idle, left) = with_hub(|h| {
            (
                h.queue.is_empty() && h.yielded.is_empty() && h.timers.borrow().len() == 0 && h.nothing_can_wake(),
                h.tasks.borrow().len() - 1,
            )
        });
        if idle {
            if left > 0 {
                eprintln!(
                    "eventlet: hub thread {:?} ends with {left} green threads parked that nothing can wake",
                    std::thread::current().name().unwrap_or("?")
                );
            }
            return;
        }
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
    /// # Panics
    ///
    /// If the hub thread panicked (a bug: green threads' panics stay in
    /// them).
    pub fn join(self) {
        drop(self.handle);
        if let Err(p) = self.thread.join() {
            std::panic::resume_unwind(p);
        }
    }
}
