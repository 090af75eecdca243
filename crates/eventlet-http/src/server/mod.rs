//! The HTTP/1.1 server (eventlet's `wsgi`): [`Server`], [`serve`],
//! [`ShutdownHandle`].
//!
//! Each connection runs on its own green thread and is read with plain
//! blocking calls on a green [`TcpStream`](eventlet::net::TcpStream); `httparse` parses request heads.
//! A connection loops: read a head, build an [`http::Request`] whose
//! [`Body`] reads the rest from the connection, call the handler, write the
//! response, drain what the handler left unread of the request body, and go
//! on with the next (possibly already buffered, pipelined) request.
//!
//! [`Server::serve_raw`] takes a lower-level handler instead (see [`raw`]):
//! it borrows the request head as parsed and answers into the
//! connection's buffers, with no `http` types and no allocation per
//! request, for the few handlers where that cost shows (a hello-world
//! answered to a pipelining client: about half the CPU per request).
//! Everything below holds for both.
//!
//! Limits and what a client gets past them:
//!
//! | what | answer |
//! | --- | --- |
//! | request line longer than 8 KiB | `414`, then close |
//! | head longer than 64 KiB, or more than 100 header fields | `431`, then close |
//! | `Content-Length` above [`Server::max_body_size`] | `413`, then close |
//! | a chunked body that grows past it | `413`, then close |
//! | both `Content-Length` and `Transfer-Encoding`, a bad length, a bad chunk | `400`, then close |
//! | a transfer coding other than `chunked` | `501`, then close |
//! | an HTTP version other than 1.0 and 1.1 | `505`, then close |
//! | a head not complete [`Server::header_timeout`] after its first byte | `408`, then close |
//! | an HTTP/1.1 request without exactly one `Host` | `400`, then close |
//! | no new request for [`Server::keepalive_timeout`] | close |
//! | an upgraded connection silent for [`Server::upgrade_timeout`] | its read fails with `TimedOut` |
//! | a handler that panics | `500` for that request; the connection goes on |

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use eventlet::net::TcpListener;
use eventlet::{current, park, GreenThread, StopHandle};
use http::{Request, Response};

use crate::body::Body;
use crate::transport::Transport;

mod conn;
mod fuzz;
mod head;
mod incoming;
pub mod raw;
mod reader;
mod response;
mod workers;

use conn::{Connection, Handler, KeepAlive, RawHandler, Watch};

/// A server's handler, of either kind, shared by its connections.
#[derive(Clone)]
enum OwnedHandler {
    Http(Rc<dyn Fn(Request<Body>) -> Response<Body>>),
    Raw(Rc<RawHandler<'static>>),
}

impl OwnedHandler {
    fn get(&self) -> Handler<'_> {
        match self {
            OwnedHandler::Http(h) => Handler::Http(&**h),
            OwnedHandler::Raw(h) => Handler::Raw(&**h),
        }
    }
}
pub(crate) use head::has_token;

#[doc(hidden)]
pub use fuzz::{parse_request_for_fuzzing, parse_request_for_fuzzing_raw, FUZZ_METHOD_HEADER};
pub use workers::Workers;

/// Longest request line accepted (longer: `414 URI Too Long`).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;
/// Longest request head accepted (longer: `431 Request Header Fields Too Large`).
pub const MAX_HEAD: usize = 64 * 1024;
/// Most header fields in one request (more: `431`).
pub const MAX_HEADERS: usize = 100;
/// Most bytes of a request body the server reads and throws away when a
/// handler left it unread; past that it closes the connection instead.
const MAX_DRAIN: u64 = 1024 * 1024;
/// Longest chunk-size line (with extensions) of a chunked body.
const MAX_CHUNK_LINE: usize = 4096;

/// The peer's address, put in every request's
/// [extensions](http::Request::extensions) by a server built with
/// [`Server::remote_addr`]`(true)`.
///
/// ```
/// # use eventlet_http::RemoteAddr;
/// fn handler(req: http::Request<eventlet_http::Body>) -> http::Response<eventlet_http::Body> {
///     let peer = req.extensions().get::<RemoteAddr>().map(|a| a.0.to_string());
///     http::Response::new(peer.unwrap_or_default().into())
/// }
/// let server = eventlet_http::Server::bind("127.0.0.1:0")?.remote_addr(true);
/// # let _ = (handler, server);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// Where access log lines go: shared by every hub of a server on several
/// ([`Server::workers`]).
type LogSink = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Settings of a [`Server`].
#[derive(Clone)]
struct Config {
    max_connections: usize,
    max_body_size: u64,
    header_timeout: Duration,
    keepalive: bool,
    keepalive_timeout: Duration,
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
    upgrade_timeout: Option<Duration>,
    remote_addr: bool,
    log: Option<LogSink>,
    #[cfg(feature = "tls")]
    tls: Option<std::sync::Arc<rustls::ServerConfig>>,
}

/// An HTTP/1.1 server: a listener, settings (builder style), and
/// [`serve`](Server::serve) to run it with a handler.
///
/// A handler is a plain function from [`http::Request<Body>`] to
/// [`http::Response<Body>`]; each connection runs on its own green thread,
/// at most [`max_connections`](Server::max_connections) at once (an idle
/// keep-alive connection counts: it holds its green thread; a full server
/// closes the oldest idle ones to let new clients in).
///
/// ```
/// use std::io::{Read, Write};
/// use std::time::Duration;
/// use eventlet_http::{Body, Server};
///
/// let server = Server::bind("127.0.0.1:0")?.max_connections(100).header_timeout(Duration::from_secs(5));
/// let addr = server.local_addr()?;
/// let stop = server.shutdown_handle();
/// eventlet::spawn_n(move || {
///     server.serve(|req| http::Response::new(Body::from(format!("hi {}", req.uri().path())))).unwrap()
/// });
///
/// let mut c = eventlet::net::TcpStream::connect(addr)?;
/// c.write_all(b"GET /there HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
/// let mut reply = String::new();
/// c.read_to_string(&mut reply)?;
/// assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
/// assert!(reply.ends_with("\r\n\r\nhi /there"));
/// stop.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Server {
    listener: TcpListener,
    config: Config,
    state: Rc<State>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_connections: 1024,
            max_body_size: 1 << 30,
            header_timeout: Duration::from_secs(30),
            keepalive: true,
            keepalive_timeout: Duration::from_secs(75),
            read_timeout: Some(Duration::from_secs(60)),
            write_timeout: Some(Duration::from_secs(60)),
            upgrade_timeout: Some(Duration::from_secs(300)),
            remote_addr: false,
            log: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// An open connection's stream and its keep-alive state, in [`State::conns`].
type Registered = (Rc<dyn Transport>, Rc<Watch>);

/// Shared by the accept loop, the connections and the shutdown handles.
struct State {
    shutting_down: Cell<bool>,
    stop: RefCell<Option<StopHandle>>,
    /// Open connections by id, each with its keep-alive state (registered
    /// once per connection; the state changes per request): a shutdown
    /// closes those waiting for their next request, a full server the
    /// oldest of them ([`make_room`]).
    conns: RefCell<HashMap<u64, Registered>>,
    next_id: Cell<u64>,
    /// Ticks once each time a connection becomes idle: orders them by
    /// how long they have been idle ([`Watch::idle_since`]).
    idle_clock: Cell<u64>,
    live: Cell<usize>,
    waiter: RefCell<Option<GreenThread>>,
}

impl State {
    fn new() -> Rc<State> {
        Rc::new(State {
            shutting_down: Cell::new(false),
            stop: RefCell::new(None),
            conns: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            idle_clock: Cell::new(0),
            live: Cell::new(0),
            waiter: RefCell::new(None),
        })
    }
}

/// Stops a [`Server`] gracefully: no new connections are accepted, idle
/// keep-alive connections are closed, requests in flight are finished (and
/// answered with `Connection: close`), then [`Server::serve`] returns.
///
/// From [`Server::shutdown_handle`]; it belongs to the server's OS thread.
#[derive(Clone)]
pub struct ShutdownHandle {
    state: Rc<State>,
}

impl ShutdownHandle {
    /// Starts the graceful shutdown; returns at once.
    pub fn shutdown(&self) {
        let st = &self.state;
        if st.shutting_down.replace(true) {
            return;
        }
        if let Some(stop) = st.stop.borrow().as_ref() {
            stop.stop();
        }
        for (s, watch) in st.conns.borrow().values() {
            if watch.keep_alive.get() == KeepAlive::Idle {
                let _ = s.shutdown(Shutdown::Both);
            }
        }
        if let Some(w) = st.waiter.borrow().as_ref() {
            w.unpark();
        }
    }

    /// Connections still open.
    pub fn connections(&self) -> usize {
        self.state.live.get()
    }
}

impl fmt::Debug for ShutdownHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShutdownHandle")
            .field("shutting_down", &self.state.shutting_down.get())
            .field("connections", &self.state.live.get())
            .finish()
    }
}

/// Runs `handler` for every request on `listener` with the default
/// settings of [`Server`]; returns only on an accept error that retrying
/// cannot cure.
///
/// ```no_run
/// eventlet_http::serve(eventlet::listen("0.0.0.0:8090")?, |_req| {
///     http::Response::new("Hello, World!\r\n".into())
/// })?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// The accept loop's error.
pub fn serve<H>(listener: TcpListener, handler: H) -> io::Result<()>
where
    H: Fn(Request<Body>) -> Response<Body> + 'static,
{
    Server::new(listener).serve(handler)
}

impl Server {
    /// A server on `listener` with the default settings: 1024 connections,
    /// a body limit of 1 GiB, 30 s to send a request head, keep-alive with
    /// a 75 s idle timeout, 60 s read and write timeouts, 300 s for a read
    /// of an upgraded connection, no access log.
    pub fn new(listener: TcpListener) -> Server {
        Server { listener, config: Config::default(), state: State::new() }
    }

    /// Binds a listener on `addr` (see [`eventlet::listen`]) and makes a
    /// server on it.
    ///
    /// # Errors
    ///
    /// The bind error, for example `AddrInUse`.
    pub fn bind<A: eventlet::net::ToSocketAddrs>(addr: A) -> io::Result<Server> {
        Ok(Server::new(TcpListener::bind(addr)?))
    }

    /// The listening address.
    ///
    /// # Errors
    ///
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Most connections open at once (default 1024, over all hubs of a
    /// server on several). Idle connections count (kept alive between
    /// requests, or new ones that have sent nothing yet), but while the
    /// server is full and a new client waits to be accepted, the oldest
    /// idle ones are closed to let it in, as nginx does. Past the limit
    /// with no idle connection, new clients wait in the kernel's backlog
    /// until a connection ends.
    ///
    /// Making room closes an eighth of a hub's idle connections (at least
    /// 1, at most 32), those idle the longest. On several hubs
    /// ([`workers`](Self::workers)) each hub keeps its own order: every hub
    /// that sees the waiting client (all of them, with one listening
    /// socket; the one the kernel chose, with `SO_REUSEPORT`) closes its
    /// own, and one with none idle asks the others to. A connection in the
    /// middle of a request (its head or body being read, its handler
    /// running, its answer being written) is never closed, nor one whose
    /// next request has begun to arrive. Closing is clean: a FIN (TLS:
    /// `close_notify` first). A client that sends its next request just as
    /// its idle connection is closed sees the close instead of an answer
    /// (its request is not served), the race every keep-alive server has
    /// and HTTP clients retry idempotent requests for; its window is the
    /// time between the server's check that nothing arrived and its
    /// `shutdown` (a few microseconds, no wait between them) plus the
    /// request's time in flight.
    ///
    /// # Panics
    ///
    /// Panics if `n` is 0.
    pub fn max_connections(mut self, n: usize) -> Server {
        assert!(n > 0, "eventlet_http::Server::max_connections: must be at least 1");
        self.config.max_connections = n;
        self
    }

    /// Largest request body accepted, in bytes (default 1 GiB). A larger
    /// `Content-Length` is answered `413` without calling the handler; a
    /// chunked body that grows past it fails the handler's read with
    /// `InvalidData` and is answered `413`.
    pub fn max_body_size(mut self, bytes: u64) -> Server {
        self.config.max_body_size = bytes;
        self
    }

    /// How long a client may take to send a request head once it has sent
    /// its first byte, and on a new connection, from the accept (default
    /// 30 s): the guard against slowloris clients.
    ///
    /// # Panics
    ///
    /// Panics if `t` is zero.
    pub fn header_timeout(mut self, t: Duration) -> Server {
        assert!(!t.is_zero(), "eventlet_http::Server::header_timeout: must not be zero");
        self.config.header_timeout = t;
        self
    }

    /// Whether connections are kept open between requests (default
    /// `true`, as eventlet's `keepalive`).
    pub fn keepalive(mut self, on: bool) -> Server {
        self.config.keepalive = on;
        self
    }

    /// How long a kept-alive connection may wait for its next request
    /// before the server closes it (default 75 s).
    ///
    /// # Panics
    ///
    /// Panics if `t` is zero.
    pub fn keepalive_timeout(mut self, t: Duration) -> Server {
        assert!(!t.is_zero(), "eventlet_http::Server::keepalive_timeout: must not be zero");
        self.config.keepalive_timeout = t;
        self
    }

    /// How long one read of a request body may wait (default 60 s; `None`:
    /// forever). An expired read fails with `TimedOut`.
    pub fn read_timeout(mut self, t: Option<Duration>) -> Server {
        self.config.read_timeout = t.filter(|t| !t.is_zero());
        self
    }

    /// How long one write of a response may wait (default 60 s; `None`:
    /// forever); on expiry the connection is closed.
    pub fn write_timeout(mut self, t: Option<Duration>) -> Server {
        self.config.write_timeout = t.filter(|t| !t.is_zero());
        self
    }

    /// How long a read of an upgraded connection (a WebSocket) may wait
    /// for the peer (default 300 s; `None`: forever): a peer that sends
    /// part of a frame and stops, or goes silent, no longer holds its green
    /// thread for good. An expired read fails with `TimedOut` (tungstenite:
    /// `Error::Io`); the upgrade's handler may set another timeout with
    /// [`Upgraded::set_read_timeout`](crate::Upgraded::set_read_timeout).
    pub fn upgrade_timeout(mut self, t: Option<Duration>) -> Server {
        self.config.upgrade_timeout = t.filter(|t| !t.is_zero());
        self
    }

    /// Whether every request carries the client's address as a
    /// [`RemoteAddr`] in its extensions (default `false`: like axum's
    /// `ConnectInfo`, opt-in, because `http`'s extensions cost three
    /// allocations per request, a tenth of the server's own work on a small
    /// request). The access log knows the address either way.
    pub fn remote_addr(mut self, on: bool) -> Server {
        self.config.remote_addr = on;
        self
    }

    /// Writes an access log line to stderr for every response (default:
    /// off), in eventlet's format:
    /// `127.0.0.1 - - [06/Nov/1994 08:49:37] "GET / HTTP/1.1" 200 13 0.000140`
    /// (client ip, date in UTC, request line, status, body bytes sent,
    /// seconds taken).
    pub fn access_log(mut self, on: bool) -> Server {
        self.config.log = if on { Some(std::sync::Arc::new(|line: &str| eprintln!("{line}"))) } else { None };
        self
    }

    /// Hands every access log line (see [`Server::access_log`]) to `sink`
    /// instead of stderr (from every hub of a server on several: hence
    /// `Send + Sync`).
    pub fn access_log_with<F: Fn(&str) + Send + Sync + 'static>(mut self, sink: F) -> Server {
        self.config.log = Some(std::sync::Arc::new(sink));
        self
    }

    /// Serves HTTPS: every connection starts with a TLS handshake (which
    /// must end within [`Server::header_timeout`]) with `config`, for
    /// example from [`tls::server_config`](crate::tls::server_config).
    ///
    /// As over plain TCP, an upgraded connection's [`UpgradedWriter`](crate::UpgradedWriter) may
    /// write while another green thread is parked reading it (see
    /// [`tls::TlsStream`](crate::tls::TlsStream)).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: std::sync::Arc<rustls::ServerConfig>) -> Server {
        self.config.tls = Some(config);
        self
    }

    /// [`Server::tls`] with a PEM certificate chain and private key.
    ///
    /// # Errors
    ///
    /// As [`tls::server_config`](crate::tls::server_config).
    #[cfg(feature = "tls")]
    pub fn tls_files(
        self,
        cert_file: impl AsRef<std::path::Path>,
        key_file: impl AsRef<std::path::Path>,
    ) -> io::Result<Server> {
        Ok(self.tls(crate::tls::server_config(cert_file, key_file)?))
    }

    /// A handle that shuts the server down gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { state: self.state.clone() }
    }

    /// Serves on the calling green thread (or the root) until shut down
    /// (see [`ShutdownHandle`]); returns once the connections still open
    /// then are done.
    ///
    /// # Errors
    ///
    /// An accept error that retrying cannot cure (the accept loop backs off
    /// from running out of file descriptors and goes on).
    pub fn serve<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(Request<Body>) -> Response<Body> + 'static,
    {
        self.serve_handler(OwnedHandler::Http(Rc::new(handler)))
    }

    /// Serves with a raw handler (see [`raw`]): the request head as the
    /// server parsed it, the response written into the connection's
    /// buffers; no `http` types, no allocation per request. Otherwise as
    /// [`serve`](Self::serve).
    ///
    /// ```no_run
    /// use eventlet_http::server::raw::{Request, Response};
    ///
    /// eventlet_http::Server::bind("0.0.0.0:8090")?.serve_raw(|_req: &mut Request<'_>, res: &mut Response<'_>| {
    ///     res.header("Content-Type", "text/plain").body_static(b"Hello, World!");
    /// })?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`serve`](Self::serve).
    pub fn serve_raw<H>(self, handler: H) -> io::Result<()>
    where
        H: Fn(&mut raw::Request<'_>, &mut raw::Response<'_>) + 'static,
    {
        self.serve_handler(OwnedHandler::Raw(Rc::new(handler)))
    }

    fn serve_handler(self, handler: OwnedHandler) -> io::Result<()> {
        let Server { listener, config, state } = self;
        if state.shutting_down.get() {
            return Ok(());
        }
        let server = eventlet::Server::new(listener, config.max_connections);
        *state.stop.borrow_mut() = Some(server.stop_handle());
        let config = Rc::new(config);
        let (st, room) = (state.clone(), state.clone());
        let result = server.serve_making_room(
            move |sock, peer| {
                let _live = Live::new(st.clone());
                serve_connection(sock, peer, &config, &st, handler.get());
            },
            move || make_room(&room),
        );
        *state.stop.borrow_mut() = None;
        while state.live.get() > 0 {
            *state.waiter.borrow_mut() = Some(current());
            park();
        }
        *state.waiter.borrow_mut() = None;
        result
    }
}

impl fmt::Debug for Server {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("max_connections", &self.config.max_connections)
            .field("max_body_size", &self.config.max_body_size)
            .field("header_timeout", &self.config.header_timeout)
            .field("keepalive", &self.config.keepalive)
            .field("keepalive_timeout", &self.config.keepalive_timeout)
            .field("upgrade_timeout", &self.config.upgrade_timeout)
            .field("remote_addr", &self.config.remote_addr)
            .field("access_log", &self.config.log.is_some())
            .finish()
    }
}

/// Serves one accepted connection to its end. Not generic (the handler is
/// `dyn`), so the connection's code is compiled once, in this crate, not
/// in every crate that calls [`Server::serve`].
fn serve_connection(
    sock: eventlet::net::TcpStream,
    peer: SocketAddr,
    config: &Rc<Config>,
    state: &Rc<State>,
    handler: Handler<'_>,
) {
    let _ = sock.set_nodelay(true);
    let _ = sock.set_write_timeout(config.write_timeout);
    #[cfg(feature = "tls")]
    if let Some(tls) = &config.tls {
        match crate::tls::server_stream(sock, tls.clone()) {
            Ok(s) => Connection::new(s, peer, config.clone(), state.clone())
                .run(crate::tls::TlsStream::<eventlet::net::TcpStream>::server_handshake, handler),
            Err(e) => log::debug!("eventlet_http: TLS with {peer} failed: {e}"),
        }
        return;
    }
    Connection::new(sock, peer, config.clone(), state.clone()).run(|_| Ok(()), handler);
}

/// Most idle connections closed at once to make room (nginx's figure).
const ROOM_MOST: usize = 32;

/// The server is full and a client waits: closes the oldest idle
/// connections of this hub (an eighth of them, 1 to [`ROOM_MOST`]; see
/// [`Server::max_connections`]), and returns how many are closing. While
/// connections closed by an earlier call are still ending, closes no more
/// and returns their number. Runs only when the server is full, so the
/// connections' per-request path pays nothing for it but a counter tick.
fn make_room(state: &State) -> usize {
    let mut idle = Vec::new();
    let mut ending = 0;
    for (stream, watch) in state.conns.borrow().values() {
        match watch.keep_alive.get() {
            KeepAlive::Evicted => ending += 1,
            KeepAlive::Idle => idle.push((watch.idle_since.get(), stream.clone(), watch.clone())),
            KeepAlive::Busy | KeepAlive::Disabled => {}
        }
    }
    if ending > 0 || idle.is_empty() {
        return ending;
    }
    let want = (idle.len() / 8).clamp(1, ROOM_MOST);
    idle.sort_unstable_by_key(|(since, ..)| *since);
    for (_, stream, watch) in idle {
        if ending == want {
            break;
        }
        // Bytes of a next request arrived (not read yet): it is not idle.
        if stream.has_input() {
            continue;
        }
        watch.keep_alive.set(KeepAlive::Evicted);
        // Wakes its green thread, parked reading: it ends the connection.
        let _ = stream.shutdown(Shutdown::Both);
        ending += 1;
    }
    ending
}

/// Counts a connection as live for as long as it exists.
struct Live(Rc<State>);

impl Live {
    fn new(st: Rc<State>) -> Live {
        st.live.set(st.live.get() + 1);
        Live(st)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.live.set(self.0.live.get() - 1);
        if self.0.live.get() == 0 {
            if let Some(w) = self.0.waiter.borrow().as_ref() {
                w.unpark();
            }
        }
    }
}
