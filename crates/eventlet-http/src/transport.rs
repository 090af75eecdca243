//! The byte stream under a server connection and an upgraded one: a green
//! TCP socket, TLS over one, or (for the fuzz target) bytes in memory.
//! Reads and writes go through `&self`, so the reading and the writing
//! side of an upgraded connection may be on two green threads.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Duration;

use eventlet::net::TcpStream;

/// A connection's byte stream, as the server and [`Upgraded`](crate::Upgraded)
/// use it.
pub(crate) trait Transport: fmt::Debug + 'static {
    /// Reads some bytes; `Ok(0)` at end of stream.
    fn read(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes all of `buf`.
    fn write_all(&self, buf: &[u8]) -> io::Result<()>;

    /// How long a read may wait (`None`: forever).
    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()>;

    /// How long a write may wait (`None`: forever).
    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()>;

    /// Ends one or both directions; a green thread parked reading wakes up.
    fn shutdown(&self, how: Shutdown) -> io::Result<()>;

    /// The peer's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;

    /// Whether bytes the peer sent wait to be read (received, not read
    /// yet); never waits. End of stream is not input.
    fn has_input(&self) -> bool;
}

/// Whether `sock`'s receive queue holds a byte: a non-blocking peek (the
/// green socket's descriptor is non-blocking, so this never waits).
pub(crate) fn socket_has_input(sock: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::uninit()];
    matches!(socket2::SockRef::from(sock).peek(&mut byte), Ok(1..))
}

impl Transport for TcpStream {
    #[inline]
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }

    #[inline]
    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, buf)
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, t)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        TcpStream::shutdown(self, how)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::peer_addr(self)
    }

    fn has_input(&self) -> bool {
        socket_has_input(self)
    }
}
