//! Green Unix-domain sockets mirroring `std::os::unix::net`.

use std::fmt;
use std::io;
use std::net::Shutdown;
use std::os::fd::AsRawFd;
use std::os::unix::net::{self as stdunix, SocketAddr};
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, SockAddr, SockRef, Socket, Type};

use super::{Evented, Timeout};
use crate::hub::io::Direction;

/// A green Unix stream socket, like [`std::os::unix::net::UnixStream`].
pub struct UnixStream {
    inner: Evented<stdunix::UnixStream>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

impl UnixStream {
    fn wrap(s: stdunix::UnixStream) -> UnixStream {
        UnixStream { inner: Evented::new(s), read_timeout: Timeout::default(), write_timeout: Timeout::default() }
    }

    /// Connects to the socket at `path`. If the listener's backlog is full
    /// the green thread sleeps and retries (from 1 ms, doubling to 100 ms).
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let addr = SockAddr::unix(path.as_ref())?;
        let s = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        let mut backoff = Duration::from_millis(1);
        loop {
            match s.connect(&addr) {
                Ok(()) => break,
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                    crate::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {
                    let stream = UnixStream::wrap(s.into());
                    stream.inner.op(Direction::Write, None, |s| match s.take_error()? {
                        Some(e) => Err(e),
                        None => s.peer_addr().map(drop).map_err(|_| io::ErrorKind::WouldBlock.into()),
                    })?;
                    return Ok(stream);
                }
                Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.as_ref().display()))),
            }
        }
        Ok(UnixStream::wrap(s.into()))
    }

    /// A connected pair of sockets.
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        Ok((UnixStream::wrap(a.into()), UnixStream::wrap(b.into())))
    }

    /// Wraps a connected std socket, making it non-blocking.
    pub fn from_std(s: stdunix::UnixStream) -> io::Result<UnixStream> {
        s.set_nonblocking(true)?;
        Ok(UnixStream::wrap(s))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().peer_addr()
    }

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }

    /// A second handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        Ok(UnixStream::wrap(self.inner.get().try_clone()?))
    }

    timeout_methods!();

    /// Takes the pending socket error, if any.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.inner.get().take_error()
    }
}

descriptor_traits!(UnixStream, stdunix::UnixStream, UnixStream::wrap);
green_read!(UnixStream, this => this.read_timeout.get());
green_write!(UnixStream, this => this.write_timeout.get());

impl fmt::Debug for UnixStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixStream").field("fd", &self.as_raw_fd()).finish()
    }
}

/// A green Unix stream server socket, like
/// [`std::os::unix::net::UnixListener`].
pub struct UnixListener {
    inner: Evented<stdunix::UnixListener>,
}

impl UnixListener {
    /// Binds to `path` (which must not exist) and listens with a large
    /// backlog.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        let s = Socket::new(Domain::UNIX, Type::STREAM.nonblocking(), None)?;
        s.bind(&SockAddr::unix(path.as_ref())?)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.as_ref().display())))?;
        s.listen(super::BACKLOG)?;
        Ok(UnixListener { inner: Evented::new(s.into()) })
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        self.inner.op(Direction::Read, None, |l| {
            let (s, _) = SockRef::from(l).accept4(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)?;
            let s: stdunix::UnixStream = s.into();
            let addr = s.peer_addr()?;
            Ok((UnixStream::wrap(s), addr))
        })
    }

    /// An endless iterator of accepted connections.
    pub fn incoming(&self) -> impl Iterator<Item = io::Result<UnixStream>> + '_ {
        std::iter::repeat_with(move || self.accept().map(|(s, _)| s))
    }

    /// The address it is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    /// A second handle to the same socket.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        Ok(UnixListener { inner: Evented::new(self.inner.get().try_clone()?) })
    }
}

impl fmt::Debug for UnixListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixListener").field("fd", &self.as_raw_fd()).finish()
    }
}

descriptor_traits!(UnixListener, stdunix::UnixListener, |s| UnixListener { inner: Evented::new(s) });

/// A green Unix datagram socket, like
/// [`std::os::unix::net::UnixDatagram`].
pub struct UnixDatagram {
    inner: Evented<stdunix::UnixDatagram>,
    read_timeout: Timeout,
    write_timeout: Timeout,
}

impl UnixDatagram {
    fn wrap(s: stdunix::UnixDatagram) -> UnixDatagram {
        UnixDatagram { inner: Evented::new(s), read_timeout: Timeout::default(), write_timeout: Timeout::default() }
    }

    /// Binds to `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        let s = Socket::new(Domain::UNIX, Type::DGRAM.nonblocking(), None)?;
        s.bind(&SockAddr::unix(path.as_ref())?)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.as_ref().display())))?;
        Ok(UnixDatagram::wrap(s.into()))
    }

    /// A socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        let s = Socket::new(Domain::UNIX, Type::DGRAM.nonblocking(), None)?;
        Ok(UnixDatagram::wrap(s.into()))
    }

    /// A connected pair of sockets.
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = Socket::pair(Domain::UNIX, Type::DGRAM.nonblocking(), None)?;
        Ok((UnixDatagram::wrap(a.into()), UnixDatagram::wrap(b.into())))
    }

    /// Sets the default peer.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.inner.get().connect(path)
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.inner.op(Direction::Write, self.write_timeout.get(), |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |s| s.recv(buf))
    }

    /// Sends to the socket at `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.inner.op(Direction::Write, self.write_timeout.get(), |s| s.send_to(buf, path))
    }

    /// Receives a datagram and its sender's address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.inner.op(Direction::Read, self.read_timeout.get(), |s| s.recv_from(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.get().local_addr()
    }

    timeout_methods!();

    /// Shuts down the read, write or both halves.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.inner.get().shutdown(how)
    }
}

impl fmt::Debug for UnixDatagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnixDatagram").field("fd", &self.as_raw_fd()).finish()
    }
}

descriptor_traits!(UnixDatagram, stdunix::UnixDatagram, UnixDatagram::wrap);
