//! Green sockets mirroring `std::net`: [`TcpListener`], [`TcpStream`],
//! [`UdpSocket`], and in [`unix`] the Unix-domain ones.
//!
//! They have std's methods and traits (`Read`/`Write` for both `T` and
//! `&T`), but a call that would block parks only the calling green thread.
//! Every operation tries the syscall first and parks only on `WouldBlock`;
//! a green thread whose I/O never blocks still yields to the others every
//! [`BUDGET`](crate::hub::BUDGET) operations, so one busy connection cannot
//! starve the rest.
//!
//! Like std's, the socket types are `Send + Sync`: moved to another OS
//! thread, a socket registers with that thread's hub on first use.
//!
//! Host names are resolved on the [`tpool`](crate::tpool) with the system's
//! `getaddrinfo` (so `/etc/hosts` is honoured): a slow lookup parks only the
//! green thread that asked. [`set_resolver`] replaces the lookup.
//!
//! Timeouts (`set_read_timeout`, `set_write_timeout`, `connect_timeout`)
//! have std's semantics, except that an expired one is reported as
//! `ErrorKind::TimedOut` on every platform.

#[macro_use]
mod fd;
pub(crate) use fd::descriptor_traits;
mod serve;
pub mod unix;
mod workers;

use std::fmt;
use std::io;
use std::net::{self as stdnet, IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

pub(crate) use crate::hub::io::Evented;
use crate::hub::io::{consume_budget, Direction};
use crate::hub::Wakeup;

pub use serve::{connect, listen, serve, Server, StopHandle};
pub use workers::{Balance, Workers};

pub(crate) fn timed_out() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "operation timed out")
}

/// A per-socket timeout, `None` when unset.
#[derive(Default)]
pub(crate) struct Timeout(AtomicU64);

impl Timeout {
    const NONE: u64 = 0;

    pub(crate) fn get(&self) -> Option<Duration> {
        match self.0.load(Ordering::Relaxed) {
            Self::NONE => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// std's rule: `Some(0)` is an error.
    pub(crate) fn set(&self, t: Option<Duration>) -> io::Result<()> {
        let n = match t {
            None => Self::NONE,
            Some(d) if d.is_zero() => {
                return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"))
            }
            Some(d) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1),
        };
        self.0.store(n, Ordering::Relaxed);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Name resolution

type Resolver = dyn Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync;

static RESOLVER: RwLock<Option<Arc<Resolver>>> = RwLock::new(None);

/// Replaces the function that turns a host name and port into addresses
/// (the default asks the system's `getaddrinfo`). It runs on the
/// [`tpool`](crate::tpool), never on a hub, so it may block.
pub fn set_resolver<F>(f: F)
where
    F: Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
{
    *RESOLVER.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(f));
}

/// Resolves `host` and `port` on the thread pool, parking only the calling
/// green thread.
///
/// # Errors
///
/// The resolver's error, or `NotFound` if it returns no address.
pub fn resolve(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let custom = RESOLVER.read().unwrap_or_else(|e| e.into_inner()).clone();
    let owned = host.to_owned();
    let addrs = crate::tpool::execute(move || match custom {
        Some(f) => f(&owned, port),
        None => stdnet::ToSocketAddrs::to_socket_addrs(&(owned.as_str(), port)).map(Iterator::collect),
    })
    .map_err(|e| io::Error::new(e.kind(), format!("cannot resolve {host}: {e}")))?;
    if addrs.is_empty() {
        return Err(io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host}: no addresses")));
    }
    Ok(addrs)
}

/// Things that name socket addresses: std's forms, but host names are
/// looked up without blocking the hub.
pub trait ToSocketAddrs {
    /// Returns the addresses, resolving names with [`resolve`].
    ///
    /// # Errors
    ///
    /// A malformed address or a failed lookup.
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>>;
}

macro_rules! direct_addrs {
    ($($t:ty),*) => {$(
        impl ToSocketAddrs for $t {
            fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
                Ok(stdnet::ToSocketAddrs::to_socket_addrs(self)?.collect())
            }
        }
    )*};
}
direct_addrs!(SocketAddr, SocketAddrV4, SocketAddrV6, (IpAddr, u16), (Ipv4Addr, u16), (Ipv6Addr, u16));

impl ToSocketAddrs for (&str, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        resolve(self.0, self.1)
    }
}

impl ToSocketAddrs for (String, u16) {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        resolve(&self.0, self.1)
    }
}

impl ToSocketAddrs for str {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        if let Ok(a) = self.parse::<SocketAddr>() {
            return Ok(vec![a]);
        }
        let (host, port) = self.rsplit_once(':').ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid socket address {self:?}: no port"))
        })?;
        let port: u16 = port.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("invalid socket address {self:?}: bad port"))
        })?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        resolve(host, port)
    }
}

impl ToSocketAddrs for String {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        self.as_str().to_socket_addrs()
    }
}

impl ToSocketAddrs for [SocketAddr] {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        Ok(self.to_vec())
    }
}

impl<T: ToSocketAddrs + ?Sized> ToSocketAddrs for &T {
    fn to_socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        (**self).to_socket_addrs()
    }
}

/// Tries `f` on each address in turn; returns the first success or the
/// last error, with the address in its message.
fn each_addr<A: ToSocketAddrs + ?Sized, R>(addr: &A, mut f: impl FnMut(SocketAddr) -> io::Result<R>) -> io::Result<R> {
    let mut last = None;
    for a in addr.to_socket_addrs()? {
        match f(a) {
            Ok(r) => return Ok(r),
            Err(e) => last = Some(io::Error::new(e.kind(), format!("{a}: {e}"))),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to try")))
}

fn new_socket(addr: &SocketAddr, ty: Type, proto: Protocol) -> io::Result<Socket> {
    Socket::new(Domain::for_address(*addr), ty.nonblocking(), Some(proto))
}

// ---------------------------------------------------------------------------
// TCP

/// The listen backlog: room for bursts (the kernel caps it at
/// `net.core.somaxconn`).
pub(crate) const BACKLOG: i32 = 65535;

/// A green TCP server socket, like [`std::net::TcpListener`].
pub struct TcpListener {
    inner: Evented<stdnet::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` with `SO_REUSEADDR` and a large backlog, so bursts of
    /// connections are not dropped.
    ///
    /// # Errors
    ///
    /// For example `AddrInUse`, with the address in the message.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, false)
    }

    fn bind_with<A: ToSocketAddrs>(addr: A, reuse_port: bool) -> io::Result<TcpListener> {
        each_addr(&addr, |a| {
            let s = new_socket(&a, Type::STREAM, Protocol::TCP)?;
            s.set_reuse_address(true)?;
            if reuse_port {
                s.set_reuse_port(true)?;
            }
            if a.is_ipv6() {
                let _ = s.set_only_v6(false);
            }
            s.bind(&a.into())?;
            s.listen(BACKLOG)?;
            Ok(TcpListener { inner: Evented::new(s.into()) })
        })
    }

    /// Like [`bind`](Self::bind), with `SO_REUSEPORT`: several listeners
    /// (one per hub, see [`hub::start`](crate::hub::start)) may bind the
    /// same address, and the kernel spreads incoming connections over them.
    ///
    /// ```
    /// use eventlet::net::TcpListener;
    ///
    /// let a = TcpListener::bind_reuse_port("127.0.0.1:0")?;
    /// let b = TcpListener::bind_reuse_port(a.local_addr()?)?;
    /// assert_eq!(a.local_addr()?, b.local_addr()?);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn bind_reuse_port<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        TcpListener::bind_with(addr, true)
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        self.inner.op(Direction::Read, None, accept_tcp)
    }

    /// Accepts without waiting: `WouldBlock` when no connection is queued.
    pub(crate) fn try_accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        accept_tcp(self.inner.get())
    }

    pub(crate) fn evented(&self) -> &Evented<stdnet::TcpListener> {
        &self.inner
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { listener: self }
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// Sets the IP time-to-live of accepted sockets.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    /// Takes the pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// A second handle to the same socket.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        Ok(TcpListener { inner: Evented::new(self.inner.get().try_clone()?) })
    }

    /// Wraps a std listener, making it non-blocking.
    pub fn from_std(l: stdnet::TcpListener) -> io::Result<TcpListener> {
        l.set_nonblocking(true)?;
        Ok(TcpListener { inner: Evented::new(l) })
    }
}

fn accept_tcp(l: &stdnet::TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (s, a) = SockRef::from(l).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
    let addr = a.as_socket().ok_or_else(|| io::Error::other("accepted a non-IP address"))?;
    Ok((TcpStream::from_evented(Evented::new(s.into())), addr))
}

impl fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpListener").field("addr", &self.local_addr().ok()).field("fd", &self.as_raw_fd()).finish()
    }
}

descriptor_traits!(TcpListener, stdnet::TcpListener, |s| TcpListener { inner: Evented::new(s) });

/// Iterator of connections from [`TcpListener::incoming`].
#[derive(Debug)]
pub struct Incoming<'a> {
    listener: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.listener.accept().map(|(s, _)| s))
    }
}

/// A green TCP connection, like [`std::net::TcpStream`].
pub struct TcpStream {
    inner: Evented<stdnet::TcpStream>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

impl TcpStream {
    fn from_evented(inner: Evented<stdnet::TcpStream>) -> TcpStream {
        TcpStream { inner, read_timeout: Timeout::default(), write_timeout: Timeout::default() }
    }

    /// Connects to `addr`, trying each resolved address in turn.
    ///
    /// # Errors
    ///
    /// For example `ConnectionRefused`, with the address in the message.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        each_addr(&addr, |a| TcpStream::connect_addr(&a, None))
    }

    /// Connects to one address, giving up with `TimedOut` after `timeout`.
    ///
    /// # Errors
    ///
    /// `InvalidInput` for a zero timeout, as in std.
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        TcpStream::connect_addr(addr, Some(timeout)).map_err(|e| io::Error::new(e.kind(), format!("{addr}: {e}")))
    }

    fn connect_addr(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let s = new_socket(addr, Type::STREAM, Protocol::TCP)?;
        let started = match s.connect(&(*addr).into()) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => false,
            Err(e) => return Err(e),
        };
        let stream = TcpStream::from_evented(Evented::new(s.into()));
        if !started {
            let deadline = timeout.and_then(crate::time::deadline_after);
            consume_budget();
            loop {
                if stream.inner.wait(Direction::Write, deadline)? == Wakeup::TimedOut {
                    return Err(timed_out());
                }
                if let Some(e) = stream.inner.get().take_error()? {
                    return Err(e);
                }
                match stream.inner.get().peer_addr() {
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(stream)
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }

    /// A second handle to the same connection (its own timeouts start
    /// unset).
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        Ok(TcpStream::from_evented(Evented::new(self.inner.get().try_clone()?)))
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.inner.get().set_nodelay(nodelay)
    }

    /// Reads `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.inner.get().nodelay()
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    /// Reads the IP time-to-live.
    pub fn ttl(&self) -> io::Result<u32> {
        self.inner.get().ttl()
    }

    timeout_methods!();

    /// Reads without consuming, waiting for data.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |s| s.peek(buf))
    }

    /// Takes the pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }

    /// Wraps a connected std stream, making it non-blocking.
    pub fn from_std(s: stdnet::TcpStream) -> io::Result<TcpStream> {
        s.set_nonblocking(true)?;
        Ok(TcpStream::from_evented(Evented::new(s)))
    }

    /// Unwraps into a (non-blocking) std stream.
    pub fn into_std(self) -> stdnet::TcpStream {
        let TcpStream { inner, .. } = self;
        inner.into_inner()
    }
}

descriptor_traits!(TcpStream, stdnet::TcpStream, |s| TcpStream::from_evented(Evented::new(s)));
green_read!(TcpStream, this => this.read_timeout.get(), short_read_drains);
green_write!(TcpStream, this => this.write_timeout.get());

impl fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpStream")
            .field("addr", &self.local_addr().ok())
            .field("peer", &self.peer_addr().ok())
            .field("fd", &self.as_raw_fd())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// UDP

/// A green UDP socket, like [`std::net::UdpSocket`].
pub struct UdpSocket {
    inner: Evented<stdnet::UdpSocket>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

impl UdpSocket {
    /// Binds to `addr`.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        each_addr(&addr, |a| {
            let s = new_socket(&a, Type::DGRAM, Protocol::UDP)?;
            s.bind(&a.into())?;
            Ok(UdpSocket {
                inner: Evented::new(s.into()),
                read_timeout: Timeout::default(),
                write_timeout: Timeout::default(),
            })
        })
    }

    /// Sets the default peer for `send` and `recv`.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        each_addr(&addr, |a| self.inner.get().connect(a))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.op(Direction::Write, self.write_timeout.get(), |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |s| s.recv(buf))
    }

    /// Sends to `addr`.
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let a = addr
            .to_socket_addrs()?
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no address to send to"))?;
        self.inner.op(Direction::Write, self.write_timeout.get(), |s| s.send_to(buf, a))
    }

    /// Receives a datagram and its sender's address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |s| s.recv_from(buf))
    }

    /// Like `recv_from` without consuming the datagram.
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |s| s.peek_from(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// Sets `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.inner.get().set_broadcast(on)
    }

    /// Sets the IP time-to-live.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.inner.get().set_ttl(ttl)
    }

    timeout_methods!();

    /// A second handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        Ok(UdpSocket {
            inner: Evented::new(self.inner.get().try_clone()?),
            read_timeout: Timeout::default(),
            write_timeout: Timeout::default(),
        })
    }

    /// Takes the pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }
}

impl fmt::Debug for UdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSocket").field("addr", &self.local_addr().ok()).field("fd", &self.as_raw_fd()).finish()
    }
}

descriptor_traits!(UdpSocket, stdnet::UdpSocket, |s| UdpSocket {
    inner: Evented::new(s),
    read_timeout: Timeout::default(),
    write_timeout: Timeout::default(),
});
