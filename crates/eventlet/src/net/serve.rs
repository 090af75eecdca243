//! eventlet's convenience functions: `listen`, `connect` and `serve`.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::workers::Spread;
use super::{TcpListener, TcpStream, ToSocketAddrs};
use crate::greenthread::{current, park, park_timeout, spawn_n};
use crate::hub::io::Direction;
use crate::hub::Unparker;

/// Opens a server socket on `addr` (`SO_REUSEADDR`, a backlog fit for
/// bursts of thousands of clients). Same as [`TcpListener::bind`].
///
/// # Errors
///
/// For example `AddrInUse`, with the address in the message.
pub fn listen<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
    TcpListener::bind(addr)
}

/// Opens a connection to `addr`. Same as [`TcpStream::connect`].
///
/// # Errors
///
/// For example `ConnectionRefused`, with the address in the message.
pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
    TcpStream::connect(addr)
}

/// Runs `handler(stream, peer)` on its own green thread for each connection
/// accepted on `listener`, at most `concurrency` at once; returns only on an
/// unrecoverable accept error. See [`Server`] to stop it.
///
/// # Panics
///
/// Panics if `concurrency` is 0.
pub fn serve<F>(listener: TcpListener, handler: F, concurrency: usize) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) + 'static,
{
    Server::new(listener, concurrency).serve(handler)
}

/// An accept loop that survives what kills simpler ones:
///
/// - while `concurrency` handlers run it stops accepting (the kernel's
///   backlog holds new clients) and resumes when one ends; a server whose
///   handlers can tell which connections would not mind being closed
///   (idle keep-alive ones) makes room for a waiting client with
///   [`serve_making_room`](Self::serve_making_room);
/// - on `EMFILE`/`ENFILE` (out of file descriptors) and kernel memory
///   errors it backs off, 10 ms doubling to 1 s, and keeps going;
/// - a panicking handler ends only its own connection;
/// - every accept spends the I/O budget (see [`BUDGET`](crate::hub::BUDGET)),
///   so handlers run while connections keep arriving;
/// - [`StopHandle::stop`] ends it cleanly from any green thread or OS
///   thread; handlers still running go on.
///
/// ```no_run
/// use std::io::{Read, Write};
/// let server = eventlet::Server::new(eventlet::listen("127.0.0.1:6000")?, 10_000);
/// let stop = server.stop_handle();
/// eventlet::spawn_after(std::time::Duration::from_secs(60), move || stop.stop());
/// server.serve(|mut sock, _peer| {
///     let mut buf = [0; 1024];
///     while let Ok(n @ 1..) = sock.read(&mut buf) {
///         if sock.write_all(&buf[..n]).is_err() { break }
///     }
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// [`serve`](Self::serve) runs on the calling hub, one core. To serve on
/// every core, [`workers`](Self::workers) spreads it over a
/// [`Group`](crate::hub::Group) of hubs, one connection limit for all.
pub struct Server {
    pub(super) listener: TcpListener,
    pub(super) concurrency: usize,
    pub(super) shared: Arc<Shared>,
}

/// What the accept loops of one server share, on every hub it runs on.
pub(super) struct Shared {
    stopped: AtomicBool,
    /// Handlers running, plus accepts in progress (a slot is taken before
    /// each accept, so hubs never go past the limit together).
    taken: AtomicUsize,
    /// Handlers running.
    running: AtomicUsize,
    /// Accept loops waiting for a slot to free.
    full: AtomicUsize,
    /// Bumped by a full accept loop whose own `make_room` found nothing
    /// while a client waits on its listener: the other hubs' loops, seeing
    /// it change, run theirs (see [`Server::serve_making_room`]).
    room_wanted: AtomicU64,
    /// Every accept loop, and every green thread in [`StopHandle::wait`],
    /// to wake it for a stop or a freed slot.
    acceptors: Mutex<Vec<(u64, Unparker)>>,
    next_acceptor: AtomicU64,
}

impl Shared {
    pub(super) fn new() -> Arc<Shared> {
        Arc::new(Shared {
            stopped: AtomicBool::new(false),
            taken: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            full: AtomicUsize::new(0),
            room_wanted: AtomicU64::new(0),
            acceptors: Mutex::new(Vec::new()),
            next_acceptor: AtomicU64::new(0),
        })
    }

    pub(super) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.wake_all();
    }

    fn wake_all(&self) {
        for (_, u) in self.acceptors.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            u.unpark();
        }
    }

    /// Takes a handler slot if fewer than `limit` are taken.
    fn reserve(&self, limit: usize) -> bool {
        if self.taken.fetch_add(1, Ordering::SeqCst) < limit {
            true
        } else {
            self.release();
            false
        }
    }

    /// Gives a slot back, waking accept loops that wait for one.
    fn release(&self) {
        self.taken.fetch_sub(1, Ordering::SeqCst);
        if self.full.load(Ordering::SeqCst) > 0 {
            self.wake_all();
        }
    }
}

/// Stops a [`Server`]'s accept loops, on every hub it runs on; from
/// [`Server::stop_handle`] or [`Workers::stop_handle`](super::Workers::stop_handle).
/// `Send + Sync`: stop it from any green thread or OS thread.
#[derive(Clone)]
pub struct StopHandle {
    shared: Arc<Shared>,
}

impl StopHandle {
    /// Makes `serve` stop accepting the next time each accept loop runs
    /// (for a single-hub [`Server`], `serve` then returns `Ok(())`).
    pub fn stop(&self) {
        self.shared.stop();
    }

    /// Handler green threads still running, on all hubs.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }

    /// Whether [`stop`](Self::stop) was called (or an accept error
    /// stopped the server).
    pub fn is_stopped(&self) -> bool {
        self.shared.stopped.load(Ordering::SeqCst)
    }

    /// Waits (parks the calling green thread, or runs the hub from the
    /// root) until the server stops: by [`stop`](Self::stop), or an accept
    /// error that retrying cannot cure. A server on several hubs runs a
    /// green thread like this on each to tidy up there.
    pub fn wait(&self) {
        let shared = &self.shared;
        let id = shared.next_acceptor.fetch_add(1, Ordering::Relaxed);
        shared.acceptors.lock().unwrap_or_else(|e| e.into_inner()).push((id, current().unparker()));
        let _registered = Registered(shared, id);
        while !self.is_stopped() {
            park();
        }
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle").field("stopped", &self.is_stopped()).field("running", &self.running()).finish()
    }
}

/// A running handler's slot, freed when its green thread ends, however it
/// ends; for a server on several hubs, also counted on its hub.
pub(super) struct Slot {
    shared: Arc<Shared>,
    /// The per-hub counts of a [`Workers`](super::Workers) server, and
    /// which one this slot counts on.
    on: Option<(Arc<[AtomicUsize]>, usize)>,
}

impl Slot {
    /// Turns a slot taken for an accept into a running handler's.
    fn new(shared: &Arc<Shared>) -> Slot {
        shared.running.fetch_add(1, Ordering::SeqCst);
        Slot { shared: shared.clone(), on: None }
    }

    /// Counts this slot on hub `hub` of `counts` (and no longer where it
    /// counted before).
    pub(super) fn count_on(&mut self, counts: &Arc<[AtomicUsize]>, hub: usize) {
        counts[hub].fetch_add(1, Ordering::SeqCst);
        if let Some((c, before)) = self.on.replace((counts.clone(), hub)) {
            c[before].fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some((c, hub)) = &self.on {
            c[*hub].fetch_sub(1, Ordering::SeqCst);
        }
        self.shared.running.fetch_sub(1, Ordering::SeqCst);
        self.shared.release();
    }
}

/// Takes an accept loop off the list when it ends.
struct Registered<'a>(&'a Shared, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.0.acceptors.lock().unwrap_or_else(|e| e.into_inner()).retain(|(id, _)| *id != self.1);
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// While full with a client waiting, how often an accept loop asks
/// `make_room` again (a freed slot wakes it sooner).
const ROOM_RETRY: Duration = Duration::from_millis(100);

/// What a full server may do to make room for a waiting client: see
/// [`Server::serve_making_room`].
pub(super) type MakeRoom<'a> = Option<&'a dyn Fn() -> usize>;

impl Server {
    /// A server for `listener` running at most `concurrency` handlers.
    ///
    /// # Panics
    ///
    /// Panics if `concurrency` is 0.
    pub fn new(listener: TcpListener, concurrency: usize) -> Server {
        assert!(concurrency > 0, "eventlet::Server: concurrency must be at least 1");
        Server { listener, concurrency, shared: Shared::new() }
    }

    /// A handle that stops the accept loop.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { shared: self.shared.clone() }
    }

    /// The listening address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Runs the accept loop on the calling green thread (or root) until
    /// stopped.
    ///
    /// # Errors
    ///
    /// An accept error that retrying cannot cure.
    pub fn serve<F>(self, handler: F) -> io::Result<()>
    where
        F: Fn(TcpStream, SocketAddr) + 'static,
    {
        accept_loop(&self.listener, &self.shared, self.concurrency, Rc::new(handler), None, None)
    }

    /// As [`serve`](Self::serve), and when the server is full (`concurrency`
    /// handlers run) while a client waits in the listener's queue, calls
    /// `make_room` on the accept loop's green thread. It may end some
    /// connections that would not mind (an HTTP server closes idle
    /// keep-alive connections, oldest first, as nginx does) so that the
    /// waiting client gets in when their handlers end, and returns how many
    /// it is ending (0: none it can). While the server stays full with a
    /// client waiting it is called again, at most every 100 ms; a handler
    /// ending meanwhile lets the client in without it. A server on several
    /// hubs ([`workers`](Self::workers), [`Workers::serve_making_room`](super::Workers::serve_making_room))
    /// has one `make_room` per hub, for that hub's connections: when the
    /// hub a client waits on finds nothing to end, the other hubs' are
    /// called too.
    ///
    /// `make_room` must not block (the accept loop waits for it); a panic
    /// in it is logged and counts as 0.
    ///
    /// ```
    /// use std::cell::RefCell;
    /// use std::collections::VecDeque;
    /// use std::io::Read;
    /// use std::net::Shutdown;
    /// use std::rc::Rc;
    ///
    /// // One connection at most: a new client ends the oldest one.
    /// let server = eventlet::Server::new(eventlet::listen("127.0.0.1:0")?, 1);
    /// let addr = server.local_addr()?;
    /// let stop = server.stop_handle();
    /// let open: Rc<RefCell<VecDeque<eventlet::net::TcpStream>>> = Rc::default();
    /// let oldest = open.clone();
    /// eventlet::spawn_n(move || {
    ///     let handler = move |mut sock: eventlet::net::TcpStream, _| {
    ///         open.borrow_mut().push_back(sock.try_clone().unwrap());
    ///         let _ = sock.read(&mut [0; 1]); // until the client sends or the socket ends
    ///     };
    ///     let make_room = move || match oldest.borrow_mut().pop_front() {
    ///         Some(s) => usize::from(s.shutdown(Shutdown::Both).is_ok()),
    ///         None => 0,
    ///     };
    ///     server.serve_making_room(handler, make_room).unwrap()
    /// });
    /// let mut first = eventlet::connect(addr)?;
    /// eventlet::sleep(std::time::Duration::from_millis(50));
    /// let _second = eventlet::connect(addr)?; // the server is full: room is made
    /// assert_eq!(first.read(&mut [0; 1])?, 0, "the first was closed");
    /// stop.stop();
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub fn serve_making_room<F, R>(self, handler: F, make_room: R) -> io::Result<()>
    where
        F: Fn(TcpStream, SocketAddr) + 'static,
        R: Fn() -> usize + 'static,
    {
        accept_loop(&self.listener, &self.shared, self.concurrency, Rc::new(handler), None, Some(&make_room))
    }
}

/// The accept loop of one hub: until `shared` is stopped, or an error
/// retrying cannot cure (which stops the loops of the other hubs too).
/// With `spread` (a server on several hubs), a connection may be passed to
/// a less loaded hub.
pub(super) fn accept_loop<F>(
    listener: &TcpListener,
    shared: &Arc<Shared>,
    limit: usize,
    handler: Rc<F>,
    spread: Option<&Spread>,
    make_room: MakeRoom<'_>,
) -> io::Result<()>
where
    F: Fn(TcpStream, SocketAddr) + 'static,
{
    let id = shared.next_acceptor.fetch_add(1, Ordering::Relaxed);
    shared.acceptors.lock().unwrap_or_else(|e| e.into_inner()).push((id, current().unparker()));
    let _registered = Registered(shared, id);
    let mut backoff = BACKOFF_MIN;
    let mut room = Room { asked_seen: shared.room_wanted.load(Ordering::SeqCst), next_try: None };
    let result = loop {
        if shared.stopped.load(Ordering::SeqCst) {
            break Ok(());
        }
        if !shared.reserve(limit) {
            // Full: wait for a slot (a handler's end wakes us; the timeout
            // is a safety net).
            shared.full.fetch_add(1, Ordering::SeqCst);
            if shared.taken.load(Ordering::SeqCst) >= limit && !shared.stopped.load(Ordering::SeqCst) {
                match make_room {
                    None => {
                        park_timeout(BACKOFF_MAX);
                    }
                    Some(f) => room.wait_full(listener, shared, f),
                }
            }
            shared.full.fetch_sub(1, Ordering::SeqCst);
            continue;
        }
        room.next_try = None;
        // Every accept spends budget, as reads and writes do: while
        // connections keep arriving the queue never empties, and the
        // handlers spawned here must still get to run.
        crate::hub::io::consume_budget();
        match listener.try_accept() {
            Ok((sock, peer)) => {
                backoff = BACKOFF_MIN;
                let slot = Slot::new(shared);
                let (sock, peer, slot) = match spread {
                    None => (sock, peer, slot),
                    Some(spread) => match spread.place(sock, peer, slot) {
                        Some(here) => here,
                        None => continue,
                    },
                };
                let h = handler.clone();
                spawn_n(move || {
                    let _slot = slot;
                    h(sock, peer);
                });
            }
            Err(e) => {
                shared.release();
                match e {
                    e if e.kind() == io::ErrorKind::WouldBlock => {
                        if let Err(e) = listener.evented().wait(Direction::Read, None) {
                            break Err(e);
                        }
                    }
                    e if retry_now(&e) => {}
                    e if back_off(&e) => {
                        crate::report::log_warn(format_args!(
                            "eventlet::serve: accept failed ({e}); retrying in {backoff:?}"
                        ));
                        park_timeout(backoff);
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                    }
                    e => break Err(e),
                }
            }
        }
    };
    if result.is_err() {
        shared.stop();
    }
    result
}

/// A full accept loop's calls of its `make_room`.
struct Room {
    /// The last [`Shared::room_wanted`] this loop answered (or asked).
    asked_seen: u64,
    /// Not before then does it call `make_room` again for its own waiting
    /// client (`None`: at once).
    next_try: Option<Instant>,
}

impl Room {
    /// Waits, the server being full, for a freed slot (whose release wakes
    /// the loop), a stop, or a client to make room for; makes room when a
    /// client waits on this loop's listener, or another hub asks.
    fn wait_full(&mut self, listener: &TcpListener, shared: &Shared, make_room: &dyn Fn() -> usize) {
        let asked = shared.room_wanted.load(Ordering::SeqCst);
        let waiting = client_waiting(listener);
        let now = Instant::now();
        let due = self.next_try.is_none_or(|t| now >= t);
        if (waiting && due) || asked != self.asked_seen {
            self.asked_seen = asked;
            let ending = run_make_room(make_room);
            if waiting && due {
                self.next_try = Some(now + ROOM_RETRY);
                if ending == 0 {
                    // Nothing to end here: the other hubs may have some.
                    self.asked_seen = shared.room_wanted.fetch_add(1, Ordering::SeqCst) + 1;
                    shared.wake_all();
                }
            }
        }
        match self.next_try {
            // A client waits: try again in a while, sooner if a slot frees.
            Some(t) if waiting => {
                park_timeout(t.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)));
            }
            // Until a client arrives (or a slot frees, or another hub asks).
            _ => {
                let _ = listener.evented().wait(Direction::Read, Some(Instant::now() + BACKOFF_MAX));
            }
        }
    }
}

/// Runs `make_room`; a panic is logged and ends nothing (a kill goes on
/// unwinding).
fn run_make_room(make_room: &dyn Fn() -> usize) -> usize {
    match panic::catch_unwind(AssertUnwindSafe(make_room)) {
        Ok(n) => n,
        Err(p) if p.is::<crate::Killed>() => panic::resume_unwind(p),
        Err(p) => {
            crate::report::log_warn(format_args!(
                "eventlet::serve: make_room panicked: {}",
                crate::report::payload_text(p.as_ref())
            ));
            0
        }
    }
}

/// Whether a connection waits in `listener`'s accept queue.
fn client_waiting(listener: &TcpListener) -> bool {
    let mut p = libc::pollfd { fd: listener.evented().get().as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, no wait. (With the patcher on, `poll` with
    // a zero timeout goes straight to the original.)
    unsafe { libc::poll(&mut p, 1, 0) > 0 }
}

/// Errors about one connection that died in the queue.
fn retry_now(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted)
        || matches!(
            e.raw_os_error(),
            Some(libc::EPROTO | libc::EPERM | libc::ENETDOWN | libc::ENONET | libc::EHOSTUNREACH)
        )
}

/// Resource exhaustion that passes with time.
fn back_off(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server").field("listener", &self.listener).field("concurrency", &self.concurrency).finish()
    }
}
