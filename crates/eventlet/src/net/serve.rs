//! eventlet's convenience functions: `listen`, `connect` and `serve`.

use std::cell::Cell;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use super::{TcpListener, TcpStream, ToSocketAddrs};
use crate::greenthread::{current, park_timeout, spawn_n, GreenThread};
use crate::hub::io::Direction;

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
///   backlog holds new clients) and resumes when one ends;
/// - on `EMFILE`/`ENFILE` (out of file descriptors) and kernel memory
///   errors it backs off, 10 ms doubling to 1 s, and keeps going;
/// - a panicking handler ends only its own connection;
/// - every accept spends the I/O budget (see [`BUDGET`](crate::hub::BUDGET)),
///   so handlers run while connections keep arriving;
/// - [`StopHandle::stop`] ends it cleanly from any green thread; handlers
///   still running go on.
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
pub struct Server {
    listener: TcpListener,
    concurrency: usize,
    state: Rc<State>,
}

struct State {
    stopped: Cell<bool>,
    running: Cell<usize>,
    acceptor: std::cell::RefCell<Option<GreenThread>>,
}

impl State {
    fn wake(&self) {
        if let Some(t) = self.acceptor.borrow().as_ref() {
            t.unpark();
        }
    }
}

/// Stops a [`Server`]'s accept loop; from [`Server::stop_handle`].
#[derive(Clone)]
pub struct StopHandle {
    state: Rc<State>,
}

impl StopHandle {
    /// Makes `serve` return `Ok(())` the next time its green thread runs.
    pub fn stop(&self) {
        self.state.stopped.set(true);
        self.state.wake();
    }

    /// Handler green threads still running.
    pub fn running(&self) -> usize {
        self.state.running.get()
    }
}

impl fmt::Debug for StopHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StopHandle").field("stopped", &self.state.stopped.get()).finish()
    }
}

/// Frees a handler slot when its green thread ends, however it ends.
struct Slot(Rc<State>);

impl Drop for Slot {
    fn drop(&mut self) {
        let st = &self.0;
        st.running.set(st.running.get() - 1);
        st.wake();
    }
}

const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

impl Server {
    /// A server for `listener` running at most `concurrency` handlers.
    ///
    /// # Panics
    ///
    /// Panics if `concurrency` is 0.
    pub fn new(listener: TcpListener, concurrency: usize) -> Server {
        assert!(concurrency > 0, "eventlet::Server: concurrency must be at least 1");
        let state = Rc::new(State { stopped: Cell::new(false), running: Cell::new(0), acceptor: Default::default() });
        Server { listener, concurrency, state }
    }

    /// A handle that stops the accept loop.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { state: self.state.clone() }
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
        let handler = Rc::new(handler);
        let st = self.state.clone();
        *st.acceptor.borrow_mut() = Some(current());
        let mut backoff = BACKOFF_MIN;
        let result = loop {
            if st.stopped.get() {
                break Ok(());
            }
            if st.running.get() >= self.concurrency {
                park_timeout(BACKOFF_MAX);
                continue;
            }
            // Every accept spends budget, as reads and writes do: while
            // connections keep arriving the queue never empties, and the
            // handlers spawned here must still get to run.
            crate::hub::io::consume_budget();
            match self.listener.try_accept() {
                Ok((sock, peer)) => {
                    backoff = BACKOFF_MIN;
                    st.running.set(st.running.get() + 1);
                    let slot = Slot(st.clone());
                    let h = handler.clone();
                    spawn_n(move || {
                        let _slot = slot;
                        h(sock, peer);
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if let Err(e) = self.listener.evented().wait(Direction::Read, None) {
                        break Err(e);
                    }
                }
                Err(e) if retry_now(&e) => {}
                Err(e) if back_off(&e) => {
                    log::warn!("eventlet::serve: accept failed ({e}); retrying in {backoff:?}");
                    park_timeout(backoff);
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => break Err(e),
            }
        };
        *st.acceptor.borrow_mut() = None;
        result
    }
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
