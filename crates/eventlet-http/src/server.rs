//! The HTTP/1.1 server (eventlet's `wsgi`): [`Server`], [`serve`],
//! [`ShutdownHandle`].
//!
//! Each connection runs on its own green thread and is read with plain
//! blocking calls on a green [`TcpStream`]; `httparse` parses request heads.
//! A connection loops: read a head, build an [`http::Request`] whose
//! [`Body`] reads the rest from the connection, call the handler, write the
//! response, drain what the handler left unread of the request body, and go
//! on with the next (possibly already buffered, pipelined) request.
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
//! | no new request for [`Server::keepalive_timeout`] | close |
//! | a handler that panics | `500` for that request; the connection goes on |

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventlet::net::{TcpListener, TcpStream};
use eventlet::{current, park, GreenThread, Killed, StopHandle};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};

use crate::body::Body;
use crate::date;

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
/// Response bodies in memory up to this size go out in one write with the head.
const COALESCE: usize = 32 * 1024;
/// The largest response buffer a connection keeps for its next response.
const KEEP_OUT: usize = 1024;
/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_millis(500);

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

type LogSink = Rc<dyn Fn(&str)>;

/// When a request began: read only by the access log, so taken only when
/// it is on (a clock read per request otherwise).
type Started = Option<Instant>;

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
/// keep-alive connection counts: it holds its green thread).
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
            remote_addr: false,
            log: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// An open connection's stream and its idle flag, in [`State::conns`].
type Registered = (Rc<Conn>, Rc<Cell<bool>>);

/// Shared by the accept loop, the connections and the shutdown handles.
struct State {
    shutting_down: Cell<bool>,
    stop: RefCell<Option<StopHandle>>,
    /// Open connections by id, each with whether it is waiting for its
    /// next request (registered once per connection; the flag flips per
    /// request).
    conns: RefCell<HashMap<u64, Registered>>,
    next_id: Cell<u64>,
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
        for (s, idle) in st.conns.borrow().values() {
            if idle.get() {
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
    /// a 75 s idle timeout, 60 s read and write timeouts, no access log.
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

    /// Most connections open at once (default 1024); past it, new clients
    /// wait in the kernel's backlog. Idle keep-alive connections count.
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
        self.config.log = if on { Some(Rc::new(|line: &str| eprintln!("{line}"))) } else { None };
        self
    }

    /// Hands every access log line (see [`Server::access_log`]) to `sink`
    /// instead of stderr.
    pub fn access_log_with<F: Fn(&str) + 'static>(mut self, sink: F) -> Server {
        self.config.log = Some(Rc::new(sink));
        self
    }

    /// Serves HTTPS: every connection starts with a TLS handshake (which
    /// must end within [`Server::header_timeout`]) with `config`, for
    /// example from [`tls::server_config`](crate::tls::server_config).
    ///
    /// One limit: an [`UpgradedWriter`] of a TLS connection cannot write
    /// while another green thread is parked reading the connection (the
    /// write fails with `WouldBlock`).
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
        let Server { listener, config, state } = self;
        if state.shutting_down.get() {
            return Ok(());
        }
        let server = eventlet::Server::new(listener, config.max_connections);
        *state.stop.borrow_mut() = Some(server.stop_handle());
        let handler = Rc::new(handler);
        let config = Rc::new(config);
        let st = state.clone();
        let result = server.serve(move |sock, peer| {
            let _live = Live::new(st.clone());
            let _ = sock.set_nodelay(true);
            let _ = sock.set_write_timeout(config.write_timeout);
            let sock = match Conn::new(sock, &config) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("eventlet_http: TLS handshake with {peer} failed: {e}");
                    return;
                }
            };
            let conn = Connection::new(sock, peer, config.clone(), st.clone());
            conn.run(&*handler);
        });
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
            .field("remote_addr", &self.config.remote_addr)
            .field("access_log", &self.config.log.is_some())
            .finish()
    }
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

// ---------------------------------------------------------------------------
// The connection's byte stream: plain TCP or TLS over it

/// A server connection's stream: a green socket, plain or with TLS.
/// `Read` and `Write` on `&Conn`; a TLS write is flushed to the socket
/// before it returns.
pub(crate) struct Conn {
    io: Io,
    #[cfg(feature = "tls")]
    tls: Option<RefCell<rustls::ServerConnection>>,
}

/// The bytes under a [`Conn`]: an accepted socket, or for
/// [`parse_request_for_fuzzing`] a request held in memory.
enum Io {
    Tcp(TcpStream),
    /// Reads take from `input` (then end of stream), writes append to `output`.
    Memory {
        input: RefCell<io::Cursor<Vec<u8>>>,
        output: RefCell<Vec<u8>>,
    },
}

impl Read for &Io {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(tcp) => (&*tcp).read(buf),
            Io::Memory { input, .. } => input.borrow_mut().read(buf),
        }
    }
}

impl Write for &Io {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Io::Tcp(tcp) => (&*tcp).write(buf),
            Io::Memory { output, .. } => output.borrow_mut().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Conn {
    /// Wraps an accepted socket, doing the TLS handshake if the server has
    /// TLS.
    #[cfg_attr(not(feature = "tls"), allow(clippy::unnecessary_wraps))]
    fn new(tcp: TcpStream, config: &Config) -> io::Result<Conn> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &config.tls {
            tcp.set_read_timeout(Some(config.header_timeout))?;
            let mut conn = rustls::ServerConnection::new(tls.clone())
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            crate::tls::handshake(&mut conn, &mut &tcp)?;
            return Ok(Conn { io: Io::Tcp(tcp), tls: Some(RefCell::new(conn)) });
        }
        let _ = config;
        Ok(Conn::plain(Io::Tcp(tcp)))
    }

    fn plain(io: Io) -> Conn {
        Conn {
            io,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        match &self.io {
            Io::Tcp(tcp) => tcp.peer_addr(),
            Io::Memory { .. } => Ok(SocketAddr::from(([127, 0, 0, 1], 0))),
        }
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match &self.io {
            Io::Tcp(tcp) => tcp.set_read_timeout(t),
            Io::Memory { .. } => Ok(()),
        }
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match &self.io {
            Io::Tcp(tcp) => tcp.set_write_timeout(t),
            Io::Memory { .. } => Ok(()),
        }
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        #[cfg(feature = "tls")]
        if let (Some(tls), Shutdown::Write | Shutdown::Both) = (&self.tls, how) {
            if let Ok(mut c) = tls.try_borrow_mut() {
                c.send_close_notify();
                let _ = c.complete_io(&mut &self.io);
            }
        }
        match &self.io {
            Io::Tcp(tcp) => tcp.shutdown(how),
            Io::Memory { .. } => Ok(()),
        }
    }

    #[cfg(feature = "tls")]
    fn tls_busy() -> io::Error {
        io::Error::new(io::ErrorKind::WouldBlock, "TLS connection in use by another green thread")
    }
}

impl Read for &Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let mut c = tls.try_borrow_mut().map_err(|_| Conn::tls_busy())?;
            return match rustls::Stream::new(&mut *c, &mut &self.io).read(buf) {
                // A client that closes without close_notify: end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                r => r,
            };
        }
        (&self.io).read(buf)
    }
}

impl Write for &Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let mut c = tls.try_borrow_mut().map_err(|_| Conn::tls_busy())?;
            let mut io = &self.io;
            let mut s = rustls::Stream::new(&mut *c, &mut io);
            let n = s.write(buf)?;
            s.flush()?;
            return Ok(n);
        }
        (&self.io).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Conn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Conn");
        match &self.io {
            Io::Tcp(tcp) => d.field("tcp", tcp),
            Io::Memory { .. } => d.field("memory", &true),
        };
        #[cfg(feature = "tls")]
        d.field("tls", &self.tls.is_some());
        d.finish()
    }
}

// ---------------------------------------------------------------------------
// Upgraded connections

/// A connection taken over after a `101 Switching Protocols` response (see
/// [`Body::upgrade`]): the raw byte stream both ways, beginning with what
/// the client sent right after its request.
///
/// It belongs to the connection's green thread; the server closes the
/// connection when the `on_upgrade` callback returns. Writes go out whole:
/// each `write` call sends all of its buffer under a lock shared with the
/// [`UpgradedWriter`]s, so writers on other green threads never interleave
/// inside one another's buffers.
pub struct Upgraded {
    stream: Rc<Conn>,
    read_ahead: Vec<u8>,
    pos: usize,
    write_lock: Rc<eventlet::Lock<()>>,
}

impl Upgraded {
    /// The client's address.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`].
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// How long a read may wait (`None`, the default here: forever); an
    /// expired read fails with `TimedOut`.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::set_read_timeout`].
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    /// How long a write may wait (the server's write timeout to begin with).
    ///
    /// # Errors
    ///
    /// As [`TcpStream::set_write_timeout`].
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(t)
    }

    /// Shuts down the read, write or both halves of the connection; a green
    /// thread parked reading it wakes up with end of stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::shutdown`].
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }

    /// A write half for other green threads (of this OS thread).
    pub fn writer(&self) -> UpgradedWriter {
        UpgradedWriter { stream: self.stream.clone(), write_lock: self.write_lock.clone() }
    }
}

impl Read for Upgraded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.read_ahead.len() {
            let n = buf.len().min(self.read_ahead.len() - self.pos);
            buf[..n].copy_from_slice(&self.read_ahead[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.read_ahead.len() {
                self.read_ahead = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        (&*self.stream).read(buf)
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_locked(&self.stream, &self.write_lock, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Upgraded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upgraded")
            .field("stream", &self.stream)
            .field("read_ahead", &(self.read_ahead.len() - self.pos))
            .finish()
    }
}

/// The write half of an [`Upgraded`] connection, from
/// [`Upgraded::writer`]; clones share the lock that keeps writes whole.
#[derive(Clone)]
pub struct UpgradedWriter {
    stream: Rc<Conn>,
    write_lock: Rc<eventlet::Lock<()>>,
}

impl Write for UpgradedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_locked(&self.stream, &self.write_lock, buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for UpgradedWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpgradedWriter").field("stream", &self.stream).finish()
    }
}

/// Writes all of `buf` while holding `lock`.
fn write_locked(stream: &Conn, lock: &eventlet::Lock<()>, buf: &[u8]) -> io::Result<usize> {
    let _held = lock.lock();
    let mut w = stream;
    w.write_all(buf)?;
    Ok(buf.len())
}

// ---------------------------------------------------------------------------
// Buffered reading

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// The read side of a connection: the socket and a buffer.
struct Reader {
    stream: Rc<Conn>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
}

impl Reader {
    fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.end);
    }

    /// Reads more from the socket, keeping the buffered bytes; the buffer
    /// grows up to `max` bytes. `Ok(0)` at end of stream.
    fn fill(&mut self, max: usize) -> io::Result<usize> {
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
        if self.end == self.buf.len() {
            if self.pos > 0 {
                self.buf.copy_within(self.pos..self.end, 0);
                self.end -= self.pos;
                self.pos = 0;
            } else if self.buf.len() < max {
                let n = (self.buf.len() * 2).clamp(4096, max);
                self.buf.resize(n, 0);
            } else {
                return Err(invalid("line too long"));
            }
        }
        let n = (&*self.stream).read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads up to `out.len()` bytes, from the buffer first.
    fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if out.len() >= 8192 {
                return (&*self.stream).read(out);
            }
            if self.fill(MAX_HEAD)? == 0 {
                return Ok(0);
            }
        }
        let n = out.len().min(self.end - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }

    /// Reads one line (without its `\r\n` or `\n`) of at most `max` bytes.
    fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            let buf = self.buffered();
            if let Some(i) = buf[searched..].iter().position(|&b| b == b'\n') {
                let i = searched + i;
                let line = buf[..i].strip_suffix(b"\r").unwrap_or(&buf[..i]).to_vec();
                self.consume(i + 1);
                return Ok(line);
            }
            searched = buf.len();
            if searched > max {
                return Err(invalid("line too long"));
            }
            if self.fill(MAX_HEAD + 2)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed inside a request body"));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Request bodies

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyError {
    TooLarge,
    Malformed,
    Io,
}

/// The connection's read side and the state of the current request body,
/// shared by the connection loop and the request's [`Body`].
struct Exchange {
    reader: Reader,
    /// Bumped when a request is over: its `Body` then reads nothing more.
    generation: u64,
    framing: Framing,
    received: u64,
    limit: u64,
    continue_pending: bool,
    error: Option<BodyError>,
    read_timeout: Option<Duration>,
}

impl Exchange {
    fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.error {
            Some(BodyError::TooLarge) => return Err(invalid("request body is larger than the server accepts")),
            Some(BodyError::Malformed) => return Err(invalid("malformed chunked request body")),
            Some(BodyError::Io) => return Err(io::Error::other("request body is unreadable after an earlier error")),
            None => {}
        }
        if out.is_empty() || self.framing == Framing::Done {
            return Ok(0);
        }
        if self.continue_pending {
            self.continue_pending = false;
            (&*self.reader.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        self.reader.stream.set_read_timeout(self.read_timeout)?;
        let r = self.decode(out);
        if let Err(e) = &r {
            self.error = Some(match e.kind() {
                io::ErrorKind::InvalidData if self.error.is_none() => BodyError::Malformed,
                _ => self.error.unwrap_or(BodyError::Io),
            });
        }
        r
    }

    fn decode(&mut self, out: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.framing {
                Framing::Done => return Ok(0),
                Framing::Length(0) => {
                    self.framing = Framing::Done;
                    return Ok(0);
                }
                Framing::Length(n) | Framing::ChunkData(n) => {
                    let want = out.len().min(usize::try_from(n).unwrap_or(usize::MAX));
                    let k = self.reader.read_some(&mut out[..want])?;
                    if k == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "connection closed inside a request body",
                        ));
                    }
                    self.received += k as u64;
                    let left = n - k as u64;
                    self.framing = match self.framing {
                        Framing::Length(_) => Framing::Length(left),
                        _ if left == 0 => Framing::ChunkEnd,
                        _ => Framing::ChunkData(left),
                    };
                    return Ok(k);
                }
                Framing::ChunkSize => {
                    let line = self.reader.read_line(MAX_CHUNK_LINE)?;
                    let size = parse_chunk_size(&line).ok_or_else(|| invalid("bad chunk size"))?;
                    if size == 0 {
                        self.framing = Framing::Trailers;
                    } else if self.received.saturating_add(size) > self.limit {
                        self.error = Some(BodyError::TooLarge);
                        return Err(invalid("request body is larger than the server accepts"));
                    } else {
                        self.framing = Framing::ChunkData(size);
                    }
                }
                Framing::ChunkEnd => {
                    if !self.reader.read_line(2)?.is_empty() {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.framing = Framing::ChunkSize;
                }
                Framing::Trailers => {
                    let mut total = 0;
                    loop {
                        let line = self.reader.read_line(MAX_HEAD)?;
                        total += line.len() + 2;
                        if total > MAX_HEAD {
                            return Err(invalid("chunked body trailers too long"));
                        }
                        if line.is_empty() {
                            break;
                        }
                    }
                    self.framing = Framing::Done;
                }
            }
        }
    }
}

/// Parses `1a;ext=1` into 26.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.split(|&b| b == b';').next()?;
    let digits = digits.trim_ascii();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    let mut n: u64 = 0;
    for &d in digits {
        n = n * 16 + u64::from((d as char).to_digit(16)?);
    }
    Some(n)
}

/// The request body as handed to a handler; see [`Body`].
pub(crate) struct Incoming {
    ex: Rc<RefCell<Exchange>>,
    generation: u64,
}

impl Incoming {
    pub(crate) fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut ex = self
            .ex
            .try_borrow_mut()
            .map_err(|_| io::Error::other("request body read from two green threads at once"))?;
        if ex.generation != self.generation {
            return Err(io::Error::other("request body read after its request was answered"));
        }
        ex.read_body(out)
    }

    pub(crate) fn remaining(&self) -> Option<u64> {
        let ex = self.ex.try_borrow().ok()?;
        if ex.generation != self.generation {
            return Some(0);
        }
        match ex.framing {
            Framing::Length(n) => Some(n),
            Framing::Done => Some(0),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------
// Connections

struct Head {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// Which of the headers the server itself acts on are present (the
    /// `HAS_*` bits): most requests have none, and then their lookups in
    /// `headers` are skipped.
    special: u8,
}

const HAS_CONNECTION: u8 = 1;
const HAS_TRANSFER_ENCODING: u8 = 2;
const HAS_CONTENT_LENGTH: u8 = 4;
const HAS_EXPECT: u8 = 8;

/// The `HAS_*` bit of a header name (0 for the others).
fn special_bit(name: &HeaderName) -> u8 {
    if name == header::CONNECTION {
        HAS_CONNECTION
    } else if name == header::TRANSFER_ENCODING {
        HAS_TRANSFER_ENCODING
    } else if name == header::CONTENT_LENGTH {
        HAS_CONTENT_LENGTH
    } else if name == header::EXPECT {
        HAS_EXPECT
    } else {
        0
    }
}

impl Head {
    /// The request line as the access log shows it.
    fn line(&self) -> String {
        let minor = if self.version == Version::HTTP_10 { 0 } else { 1 };
        format!("{} {} HTTP/1.{minor}", self.method, self.uri)
    }
}

enum HeadError {
    /// The client closed or went idle between requests: just close.
    Closed,
    /// Answer with this status, then close.
    Status(StatusCode),
}

struct Connection {
    stream: Rc<Conn>,
    peer: SocketAddr,
    config: Rc<Config>,
    state: Rc<State>,
    ex: Rc<RefCell<Exchange>>,
    id: u64,
    /// Whether it waits for its next request (a graceful shutdown closes it
    /// then).
    idle: Rc<Cell<bool>>,
    /// The buffer response heads are assembled in, kept between responses.
    out: Cell<Vec<u8>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.state.conns.borrow_mut().remove(&self.id);
    }
}

/// Marks a connection busy again however its idle wait ends.
struct IdleGuard<'a>(&'a Connection);

impl Drop for IdleGuard<'_> {
    fn drop(&mut self) {
        self.0.idle.set(false);
    }
}

/// Appends `n` in decimal.
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Whether any `name` header lists `token` (any case).
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| value_has_token(v, token))
}

/// Whether a comma-separated header value lists `token` (any case).
fn value_has_token(value: &HeaderValue, token: &str) -> bool {
    value.to_str().is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

impl Connection {
    fn new(sock: Conn, peer: SocketAddr, config: Rc<Config>, state: Rc<State>) -> Connection {
        let stream = Rc::new(sock);
        let id = state.next_id.get();
        state.next_id.set(id + 1);
        let ex = Rc::new(RefCell::new(Exchange {
            reader: Reader { stream: stream.clone(), buf: vec![0; 4096], pos: 0, end: 0 },
            generation: 0,
            framing: Framing::Done,
            received: 0,
            limit: config.max_body_size,
            continue_pending: false,
            error: None,
            read_timeout: config.read_timeout,
        }));
        let idle = Rc::new(Cell::new(false));
        state.conns.borrow_mut().insert(id, (stream.clone(), idle.clone()));
        Connection { stream, peer, config, state, ex, id, idle, out: Cell::new(Vec::new()) }
    }

    fn run(&self, handler: &dyn Fn(Request<Body>) -> Response<Body>) {
        self.serve_requests(handler);
        self.linger();
    }

    /// Closes gently: ends our side, then reads (and drops) what the client
    /// still sends for a moment, so that closing with unread bytes does not
    /// reset the connection before the client has read our last answer.
    fn linger(&self) {
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let _ = self.stream.set_read_timeout(Some(LINGER));
        let mut scratch = [0; 8192];
        let mut total = 0;
        while let Ok(n @ 1..) = (&*self.stream).read(&mut scratch) {
            total += n;
            if total > 256 * 1024 {
                break;
            }
        }
    }

    fn serve_requests(&self, handler: &dyn Fn(Request<Body>) -> Response<Body>) {
        let mut first = true;
        loop {
            if self.state.shutting_down.get() && self.ex.borrow().reader.buffered().is_empty() {
                return;
            }
            let head = match self.read_head(first) {
                Ok(h) => h,
                Err(HeadError::Closed) => return,
                Err(HeadError::Status(s)) => {
                    let _ = self.write_error(s, self.started(), None);
                    return;
                }
            };
            first = false;
            let started = self.started();
            match self.exchange(head, started, handler) {
                Ok(true) => {}
                _ => return,
            }
        }
    }

    /// Reads the next request head. The first byte of a request may take
    /// the keep-alive timeout (the header timeout on a fresh connection);
    /// the whole head then has the header timeout.
    fn read_head(&self, first: bool) -> Result<Head, HeadError> {
        let mut ex = self.ex.borrow_mut();
        let r = &mut ex.reader;
        let cfg = &self.config;
        let mut deadline = if first { Some(Instant::now() + cfg.header_timeout) } else { None };
        loop {
            if !r.buffered().is_empty() {
                if let Some(head) = parse_head(r)? {
                    return Ok(head);
                }
                // A head has begun: from here it has the header timeout
                // (the clock is read only when a head needs a second read).
                if deadline.is_none() {
                    deadline = Some(Instant::now() + cfg.header_timeout);
                }
            }
            let timeout = match deadline {
                None => cfg.keepalive_timeout,
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(t) if !t.is_zero() => t,
                    _ => return Err(timed_out(r)),
                },
            };
            let _ = r.stream.set_read_timeout(Some(timeout));
            let idle = r.buffered().is_empty();
            let guard = if idle {
                if self.state.shutting_down.get() {
                    return Err(HeadError::Closed);
                }
                self.idle.set(true);
                Some(IdleGuard(self))
            } else {
                None
            };
            let n = r.fill(MAX_HEAD + 1024);
            drop(guard);
            match n {
                Ok(0) => return Err(HeadError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(timed_out(r)),
                Err(_) => return Err(HeadError::Closed),
            }
        }
    }

    /// Handles one request; `Ok(true)` to go on with the next.
    fn exchange(
        &self,
        head: Head,
        started: Started,
        handler: &dyn Fn(Request<Body>) -> Response<Body>,
    ) -> io::Result<bool> {
        let cfg = &self.config;
        let framing = match request_framing(&head) {
            Ok(f) => f,
            Err(status) => {
                self.write_error(status, started, Some(&head))?;
                return Ok(false);
            }
        };
        if let Framing::Length(n) = framing {
            if n > cfg.max_body_size {
                self.write_error(StatusCode::PAYLOAD_TOO_LARGE, started, Some(&head))?;
                return Ok(false);
            }
        }
        let mut keep_alive = cfg.keepalive
            && match (head.version, head.special & HAS_CONNECTION != 0) {
                (Version::HTTP_11, false) => true,
                (Version::HTTP_11, true) => !has_token(&head.headers, header::CONNECTION, "close"),
                (_, false) => false,
                (_, true) => has_token(&head.headers, header::CONNECTION, "keep-alive"),
            };
        let expects_continue = head.version == Version::HTTP_11
            && head.special & HAS_EXPECT != 0
            && head.headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        let generation = {
            let mut ex = self.ex.borrow_mut();
            ex.generation += 1;
            ex.framing = framing;
            ex.received = 0;
            ex.error = None;
            ex.continue_pending = expects_continue && framing != Framing::Length(0);
            ex.generation
        };
        let is_head = head.method == Method::HEAD;
        // Only the access log needs the request line.
        let line = if cfg.log.is_some() { head.line() } else { String::new() };
        let mut req = Request::new(Body::incoming(Incoming { ex: self.ex.clone(), generation }));
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers;
        if cfg.remote_addr {
            req.extensions_mut().insert(RemoteAddr(self.peer));
        }

        let mut resp = match panic::catch_unwind(AssertUnwindSafe(|| handler(req))) {
            Ok(r) => r,
            Err(p) if p.is::<Killed>() => panic::resume_unwind(p),
            Err(_) => simple_response(StatusCode::INTERNAL_SERVER_ERROR),
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(on_upgrade) = resp.body_mut().take_upgrade() {
                self.upgrade(resp, on_upgrade, &line, started);
                return Ok(false);
            }
        }
        // The request body: drain what the handler left (unless the
        // response streams it back), and turn body errors into statuses.
        let streams_body = resp.body().is_incoming();
        if !streams_body {
            self.finish_body(&mut keep_alive);
        } else if let Ok(mut ex) = self.ex.try_borrow_mut() {
            // The response streams the request body back: a client waiting
            // for `100 Continue` gets it now, before the final head, not
            // in the middle of the response body once it is read.
            if std::mem::take(&mut ex.continue_pending) {
                (&*self.stream).write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            }
        }
        let error = self.ex.try_borrow().map_or(Some(BodyError::Io), |ex| ex.error);
        match error {
            Some(BodyError::TooLarge) => resp = simple_response(StatusCode::PAYLOAD_TOO_LARGE),
            Some(BodyError::Malformed) => resp = simple_response(StatusCode::BAD_REQUEST),
            Some(BodyError::Io) => return Ok(false),
            None => {}
        }
        if error.is_some() || self.state.shutting_down.get() {
            keep_alive = false;
        }
        let status = resp.status();
        let sent = self.write_response(resp, head.version, is_head, &mut keep_alive);
        if streams_body {
            self.finish_body(&mut keep_alive);
        }
        self.ex.borrow_mut().generation += 1;
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                self.log(&line, status, 0, started);
                return Err(e);
            }
        };
        self.log(&line, status, sent, started);
        Ok(keep_alive && !self.state.shutting_down.get())
    }

    /// Writes the `101` head of `resp` (its headers as the handler set
    /// them), then hands the connection to `on_upgrade`.
    fn upgrade(&self, resp: Response<Body>, on_upgrade: Box<dyn FnOnce(Upgraded)>, line: &str, started: Started) {
        let mut keep_alive = true;
        self.finish_body(&mut keep_alive);
        if !keep_alive {
            self.log(line, StatusCode::BAD_REQUEST, 0, started);
            return;
        }
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in resp.headers() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !resp.headers().contains_key(header::DATE) {
            out.extend_from_slice(b"Date: ");
            date::push_http_date_now(&mut out);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        let written = (&*self.stream).write_all(&out);
        self.log(line, StatusCode::SWITCHING_PROTOCOLS, 0, started);
        if written.is_err() {
            return;
        }
        let read_ahead = {
            let mut ex = self.ex.borrow_mut();
            ex.generation += 1;
            let r = &mut ex.reader;
            let rest = r.buffered().to_vec();
            r.consume(rest.len());
            rest
        };
        let _ = self.stream.set_read_timeout(None);
        let upgraded =
            Upgraded { stream: self.stream.clone(), read_ahead, pos: 0, write_lock: Rc::new(eventlet::Lock::new(())) };
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| on_upgrade(upgraded))) {
            if p.is::<Killed>() {
                panic::resume_unwind(p);
            }
            log::error!("eventlet_http: an upgraded connection's handler panicked");
        }
    }

    /// Reads and discards what is left of the request body, up to
    /// [`MAX_DRAIN`]; clears `keep_alive` when the connection cannot be
    /// reused.
    fn finish_body(&self, keep_alive: &mut bool) {
        let Ok(mut ex) = self.ex.try_borrow_mut() else {
            *keep_alive = false;
            return;
        };
        if ex.error.is_some() {
            *keep_alive = false;
            return;
        }
        if ex.framing == Framing::Done || ex.framing == Framing::Length(0) {
            return;
        }
        if ex.continue_pending {
            // The client waits for our go-ahead that never came: the body
            // will not follow on this connection.
            *keep_alive = false;
            return;
        }
        let mut scratch = [0; 8192];
        let mut drained = 0u64;
        loop {
            match ex.read_body(&mut scratch) {
                Ok(0) => return,
                Ok(n) => {
                    drained += n as u64;
                    if drained > MAX_DRAIN {
                        *keep_alive = false;
                        return;
                    }
                }
                Err(_) => {
                    *keep_alive = false;
                    return;
                }
            }
        }
    }

    fn write_error(&self, status: StatusCode, started: Started, head: Option<&Head>) -> io::Result<()> {
        let mut keep_alive = false;
        let version = head.map_or(Version::HTTP_11, |h| h.version);
        let r = self.write_response(simple_response(status), version, false, &mut keep_alive);
        let line = match head {
            Some(h) if self.config.log.is_some() => h.line(),
            _ => "-".to_owned(),
        };
        self.log(&line, status, *r.as_ref().unwrap_or(&0), started);
        r.map(drop)
    }

    /// Writes `resp`; returns the body bytes sent.
    fn write_response(
        &self,
        resp: Response<Body>,
        version: Version,
        is_head: bool,
        keep_alive: &mut bool,
    ) -> io::Result<u64> {
        // The head is assembled in a buffer kept between responses (when
        // small: an idle connection should not hold much).
        let mut out = self.out.take();
        out.clear();
        let sent = self.write_response_with(&mut out, resp, version, is_head, keep_alive);
        if out.capacity() <= KEEP_OUT {
            self.out.set(out);
        }
        sent
    }

    /// [`write_response`](Self::write_response) with `out` to assemble in.
    fn write_response_with(
        &self,
        out: &mut Vec<u8>,
        resp: Response<Body>,
        version: Version,
        is_head: bool,
        keep_alive: &mut bool,
    ) -> io::Result<u64> {
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let no_body =
            status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;

        // The head is assembled by hand: `write!` cost more than the rest
        // of a small response's user-space work. One pass over the
        // handler's headers writes them and picks out those the server
        // acts on.
        out.reserve(256);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
        out.extend_from_slice(b"\r\n");
        let mut has_date = false;
        let (mut handler_len, mut seen_length) = (None, false);
        for (name, value) in &parts.headers {
            if name == header::CONNECTION {
                // The handler's `Connection: close` closes the connection
                // after this response; the server writes its own header.
                if value_has_token(value, "close") {
                    *keep_alive = false;
                }
                continue;
            }
            if name == header::CONTENT_LENGTH {
                // The first one counts, as `HeaderMap::get` would pick it.
                if !seen_length {
                    seen_length = true;
                    handler_len = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
                }
                continue;
            }
            if name == header::TRANSFER_ENCODING {
                continue;
            }
            has_date |= name == header::DATE;
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        let len = body.len().or(handler_len);
        let chunked = !no_body && len.is_none() && version == Version::HTTP_11;
        if !no_body && len.is_none() && !chunked && !is_head {
            *keep_alive = false; // HTTP/1.0 and no length: the close ends the body
        }
        if !has_date {
            out.extend_from_slice(b"Date: ");
            date::push_http_date_now(out);
            out.extend_from_slice(b"\r\n");
        }
        let content_length = |out: &mut Vec<u8>, n: u64| {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        };
        if no_body {
            // A 304 may repeat the length of what a GET would send.
            if let (StatusCode::NOT_MODIFIED, Some(n)) = (status, handler_len) {
                content_length(out, n);
            }
        } else if let Some(n) = len {
            content_length(out, n);
        } else if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !*keep_alive {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if version == Version::HTTP_10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");

        let mut w = &*self.stream;
        if is_head || no_body {
            w.write_all(out)?;
            return Ok(0);
        }
        if let Some(bytes) = body.remaining_bytes().filter(|b| b.len() <= COALESCE) {
            out.extend_from_slice(bytes);
            w.write_all(out)?;
            return Ok(bytes.len() as u64);
        }
        if let Some(n) = body.len().filter(|&n| n as usize <= COALESCE && !body.is_incoming()) {
            let at = out.len();
            body.read_to_end(out)?;
            if (out.len() - at) as u64 != n {
                *keep_alive = false;
            }
            w.write_all(out)?;
            return Ok((out.len() - at) as u64);
        }
        w.write_all(out)?;
        let mut buf = vec![0; 16 * 1024];
        let mut sent = 0u64;
        loop {
            let want = match len {
                Some(n) => buf.len().min(usize::try_from(n - sent).unwrap_or(usize::MAX)),
                None => buf.len(),
            };
            if want == 0 {
                break;
            }
            let k = match body.read(&mut buf[..want]) {
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    *keep_alive = false;
                    return Err(e);
                }
            };
            if k == 0 {
                break;
            }
            if chunked {
                let mut frame = Vec::with_capacity(k + 12);
                write!(frame, "{k:x}\r\n")?;
                frame.extend_from_slice(&buf[..k]);
                frame.extend_from_slice(b"\r\n");
                w.write_all(&frame)?;
            } else {
                w.write_all(&buf[..k])?;
            }
            sent += k as u64;
        }
        if chunked {
            w.write_all(b"0\r\n\r\n")?;
        } else if len.is_some_and(|n| n != sent) {
            *keep_alive = false;
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response body shorter than its length"));
        }
        Ok(sent)
    }

    /// When a request began, if the access log will want to know.
    fn started(&self) -> Started {
        self.config.log.is_some().then(Instant::now)
    }

    fn log(&self, line: &str, status: StatusCode, sent: u64, started: Started) {
        if let Some(sink) = &self.config.log {
            sink(&format!(
                "{} - - [{}] \"{}\" {} {} {:.6}",
                self.peer.ip(),
                date::log_date(date::now_secs()),
                line,
                status.as_u16(),
                sent,
                started.map_or(0.0, |t| t.elapsed().as_secs_f64())
            ));
        }
    }
}

fn timed_out(r: &Reader) -> HeadError {
    if r.buffered().is_empty() {
        HeadError::Closed
    } else {
        HeadError::Status(StatusCode::REQUEST_TIMEOUT)
    }
}

fn simple_response(status: StatusCode) -> Response<Body> {
    let text = format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Tries to parse a complete head out of the buffer; `Ok(None)` when more
/// bytes are needed.
fn parse_head(r: &mut Reader) -> Result<Option<Head>, HeadError> {
    let buf = r.buffered();
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    let lead = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let body = &buf[lead..];
    let line_len = body.iter().position(|&b| b == b'\n');
    if line_len.unwrap_or(body.len()) > MAX_REQUEST_LINE {
        return Err(HeadError::Status(StatusCode::URI_TOO_LONG));
    }
    // Left uninitialised: filling 100 headers before every parse cost more
    // than the parse of a small request.
    let mut headers = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(body, &mut headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if body.len() > MAX_HEAD {
                return Err(HeadError::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
            }
            if lead > 0 {
                r.consume(lead);
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HeadError::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE))
        }
        Err(httparse::Error::Version) => return Err(HeadError::Status(StatusCode::HTTP_VERSION_NOT_SUPPORTED)),
        Err(_) => return Err(HeadError::Status(StatusCode::BAD_REQUEST)),
    };
    if n > MAX_HEAD {
        return Err(HeadError::Status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }
    let bad = || HeadError::Status(StatusCode::BAD_REQUEST);
    let method = Method::from_bytes(req.method.unwrap_or("").as_bytes()).map_err(|_| bad())?;
    // The path and the header values become slices of one copy of the
    // head, not a copy (an allocation) each: a browser's request carries
    // ten headers or so.
    let head = Bytes::copy_from_slice(&body[..n]);
    let within = |part: &[u8]| {
        let at = (part.as_ptr() as usize).wrapping_sub(body.as_ptr() as usize);
        match n.checked_sub(at) {
            Some(room) if part.len() <= room => head.slice(at..at + part.len()),
            // Not borrowed from the head (an empty value may not be).
            _ => Bytes::copy_from_slice(part),
        }
    };
    let uri = Uri::from_maybe_shared(within(req.path.unwrap_or("").as_bytes())).map_err(|_| bad())?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut map = HeaderMap::with_capacity(req.headers.len());
    let mut special = 0;
    for h in req.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| bad())?;
        let value = HeaderValue::from_maybe_shared(within(h.value)).map_err(|_| bad())?;
        special |= special_bit(&name);
        map.append(name, value);
    }
    r.consume(lead + n);
    Ok(Some(Head { method, uri, version, headers: map, special }))
}

/// How the request body is framed, or the status to refuse it with.
fn request_framing(head: &Head) -> Result<Framing, StatusCode> {
    if head.special & (HAS_TRANSFER_ENCODING | HAS_CONTENT_LENGTH) == 0 {
        return Ok(Framing::Length(0));
    }
    let te: Vec<&HeaderValue> = head.headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let cl: Vec<&HeaderValue> = head.headers.get_all(header::CONTENT_LENGTH).iter().collect();
    if !te.is_empty() {
        if !cl.is_empty() || head.version == Version::HTTP_10 {
            return Err(StatusCode::BAD_REQUEST);
        }
        let mut codings = Vec::new();
        for v in te {
            let v = v.to_str().map_err(|_| StatusCode::BAD_REQUEST)?;
            codings.extend(v.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()));
        }
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::ChunkSize),
            [.., last] if last == "chunked" => Err(StatusCode::NOT_IMPLEMENTED),
            _ => Err(StatusCode::BAD_REQUEST),
        };
    }
    let mut len: Option<u64> = None;
    for v in cl {
        for part in v.to_str().map_err(|_| StatusCode::BAD_REQUEST)?.split(',') {
            let part = part.trim();
            if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(StatusCode::BAD_REQUEST);
            }
            let n: u64 = part.parse().map_err(|_| StatusCode::BAD_REQUEST)?;
            if len.is_some_and(|l| l != n) {
                return Err(StatusCode::BAD_REQUEST);
            }
            len = Some(n);
        }
    }
    Ok(Framing::Length(len.unwrap_or(0)))
}

/// The request body limit of [`parse_request_for_fuzzing`]: small, so that
/// short inputs reach the `413` paths.
const FUZZ_BODY_LIMIT: u64 = 1024;
/// The header in which [`parse_request_for_fuzzing`]'s handler names the
/// request's method (a checker needs it: the answer to `HEAD` has no body).
#[doc(hidden)]
pub const FUZZ_METHOD_HEADER: &str = "x-fuzz-method";

/// Runs a server connection over `bytes` held in memory, as if a client had
/// sent them and then closed its side, and returns what the server wrote
/// back. The real code runs: request heads are parsed and checked, bodies
/// decoded (`Content-Length` and chunked framing, trailers,
/// `Expect: 100-continue`), limits enforced (the body limit is 1 KiB
/// here), pipelined requests served in turn. The handler echoes the
/// request body, except for the path `/ignore` (the body is left for the
/// server to drain) and `/stream` (the request body is streamed back as
/// the response body); its answers name the request method in the header
/// [`FUZZ_METHOD_HEADER`].
///
/// For the fuzz target in this crate's `fuzz/` directory; not a stable API.
/// It never panics unless the server's code does: a panic while a handler
/// reads its body, which the server would turn into a `500`, is re-raised
/// here.
#[doc(hidden)]
pub fn parse_request_for_fuzzing(bytes: &[u8]) -> Vec<u8> {
    let config = Rc::new(Config { max_body_size: FUZZ_BODY_LIMIT, ..Config::default() });
    let io = Io::Memory { input: RefCell::new(io::Cursor::new(bytes.to_vec())), output: RefCell::new(Vec::new()) };
    let conn = Connection::new(Conn::plain(io), SocketAddr::from(([127, 0, 0, 1], 0)), config, State::new());
    let caught = RefCell::new(None);
    conn.run(&|req: Request<Body>| {
        let method = HeaderValue::from_str(req.method().as_str()).ok();
        let mut resp = match req.uri().path() {
            "/ignore" => Response::new(Body::from("ignored")),
            "/stream" => Response::new(req.into_body()),
            _ => match panic::catch_unwind(AssertUnwindSafe(|| req.into_body().into_bytes())) {
                Ok(Ok(body)) => Response::new(Body::from(body)),
                Ok(Err(e)) => Response::new(Body::from(e.to_string())),
                Err(p) => {
                    *caught.borrow_mut() = Some(p);
                    simple_response(StatusCode::INTERNAL_SERVER_ERROR)
                }
            },
        };
        if let Some(m) = method {
            resp.headers_mut().insert(HeaderName::from_static(FUZZ_METHOD_HEADER), m);
        }
        resp
    });
    if let Some(p) = caught.into_inner() {
        panic::resume_unwind(p);
    }
    match &conn.stream.io {
        Io::Memory { output, .. } => output.take(),
        Io::Tcp(_) => unreachable!("the fuzzing connection is in memory"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 1_234_567_890, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }

    #[test]
    fn chunk_sizes() {
        assert_eq!(parse_chunk_size(b"1a"), Some(26));
        assert_eq!(parse_chunk_size(b"FF;name=value"), Some(255));
        assert_eq!(parse_chunk_size(b" 0 "), Some(0));
        assert_eq!(parse_chunk_size(b""), None);
        assert_eq!(parse_chunk_size(b"-1"), None);
        assert_eq!(parse_chunk_size(b"0x10"), None);
        assert_eq!(parse_chunk_size(b"fffffffffffffffff"), None);
    }

    fn head(extra: &[(&str, &str)], version: Version) -> Head {
        let mut headers = HeaderMap::new();
        for (k, v) in extra {
            headers.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        let special = headers.keys().fold(0, |bits, name| bits | special_bit(name));
        Head { method: Method::POST, uri: Uri::from_static("/"), version, headers, special }
    }

    #[test]
    fn fuzzing_entry_runs_the_real_connection() {
        let out = parse_request_for_fuzzing(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n\
              GET /ignore HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\
              POST /x HTTP/1.1\r\nContent-Length: 2000\r\n\r\n",
        );
        let out = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{out}");
        assert!(answers[0].starts_with("200 OK\r\n") && answers[0].ends_with("\r\n\r\nhello"), "{out}");
        assert!(answers[1].starts_with("200 OK\r\n") && answers[1].ends_with("\r\n\r\nignored"), "{out}");
        assert!(answers[2].starts_with("413 Payload Too Large\r\n"), "{out}");
        assert!(parse_request_for_fuzzing(b"").is_empty());
        assert!(String::from_utf8(parse_request_for_fuzzing(b"GET / HTTP/2.0\r\n\r\n"))
            .unwrap()
            .starts_with("HTTP/1.1 505 "));
    }

    /// Found by the fuzz entry's seeds: a handler that streams the request
    /// body back (`Response::new(req.into_body())`) to a client that sent
    /// `Expect: 100-continue` got the `100 Continue` inside its response
    /// body (curl saw a corrupt echo), as the body was only read once the
    /// final head was out.
    #[test]
    fn continue_precedes_a_response_that_streams_the_request_body() {
        let out = parse_request_for_fuzzing(
            b"POST /stream HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello\
              POST /stream HTTP/1.1\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        );
        let out = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 4, "{out:?}");
        assert_eq!(answers[0], "100 Continue\r\n\r\n", "{out:?}");
        assert!(answers[1].starts_with("200 OK\r\n") && answers[1].ends_with("\r\n\r\nhello"), "{out:?}");
        assert_eq!(answers[2], "100 Continue\r\n\r\n", "{out:?}");
        assert!(
            answers[3].starts_with("200 OK\r\n") && answers[3].ends_with("\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
            "{out:?}"
        );
    }

    /// The fuzz target's seed corpus, run by plain `cargo test`: every seed
    /// is answered as its name says.
    #[test]
    fn fuzz_seed_corpus_answers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
        let expected: &[(&str, &[&str])] = &[
            ("get-simple", &["200"]),
            ("get-http10-pipelined", &["200", "200"]),
            ("post-content-length", &["200"]),
            ("post-chunked-trailers", &["200"]),
            ("stream-expect-pipelined", &["100", "200", "200", "200"]),
            ("chunk-too-large", &["413"]),
            ("chunk-longer-than-size", &["400"]),
            ("length-and-chunked", &["400"]),
            ("unsupported-coding", &["501"]),
            ("conflicting-lengths", &["400"]),
            ("bad-version", &["505"]),
            ("bad-header-line", &["400"]),
            ("leading-blank-lines", &["200"]),
            ("uri-too-long", &["414"]),
            // The client closed inside the body: nothing to answer.
            ("body-truncated", &[]),
        ];
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let out = String::from_utf8_lossy(&parse_request_for_fuzzing(&std::fs::read(&path).unwrap())).into_owned();
            let statuses: Vec<&str> =
                out.split("HTTP/1.1 ").skip(1).map(|a| a.split(' ').next().unwrap_or("")).collect();
            let (_, want) = expected
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("seed {name} has no expectation here"));
            assert_eq!(&statuses, want, "seed {name}: {out:?}");
            seen += 1;
        }
        assert_eq!(seen, expected.len(), "seeds missing from {}", dir.display());
    }

    #[test]
    fn framing_rules() {
        let v11 = Version::HTTP_11;
        assert_eq!(request_framing(&head(&[], v11)), Ok(Framing::Length(0)));
        assert_eq!(request_framing(&head(&[("content-length", "12")], v11)), Ok(Framing::Length(12)));
        assert_eq!(request_framing(&head(&[("content-length", "12, 12")], v11)), Ok(Framing::Length(12)));
        assert_eq!(
            request_framing(&head(&[("content-length", "12"), ("content-length", "13")], v11)),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(request_framing(&head(&[("content-length", "+12")], v11)), Err(StatusCode::BAD_REQUEST));
        assert_eq!(request_framing(&head(&[("transfer-encoding", "Chunked")], v11)), Ok(Framing::ChunkSize));
        assert_eq!(
            request_framing(&head(&[("transfer-encoding", "chunked"), ("content-length", "3")], v11)),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            request_framing(&head(&[("transfer-encoding", "gzip, chunked")], v11)),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
        assert_eq!(request_framing(&head(&[("transfer-encoding", "gzip")], v11)), Err(StatusCode::BAD_REQUEST));
    }
}
