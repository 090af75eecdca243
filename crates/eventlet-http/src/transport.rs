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
}

/// A server connection's TLS over a green socket. A TLS write is flushed
/// to the socket before it returns.
#[cfg(feature = "tls")]
pub(crate) struct ServerTls {
    tcp: TcpStream,
    conn: std::cell::RefCell<rustls::ServerConnection>,
}

#[cfg(feature = "tls")]
impl ServerTls {
    /// TLS with `config` over `tcp`, before the handshake.
    pub(crate) fn new(tcp: TcpStream, config: std::sync::Arc<rustls::ServerConfig>) -> io::Result<ServerTls> {
        let conn = rustls::ServerConnection::new(config).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        Ok(ServerTls { tcp, conn: std::cell::RefCell::new(conn) })
    }

    /// Runs the handshake to its end.
    pub(crate) fn handshake(&self) -> io::Result<()> {
        let mut conn = self.conn.try_borrow_mut().map_err(|_| ServerTls::busy())?;
        crate::tls::handshake(&mut *conn, &mut &self.tcp)
    }

    fn busy() -> io::Error {
        io::Error::new(io::ErrorKind::WouldBlock, "TLS connection in use by another green thread")
    }
}

#[cfg(feature = "tls")]
impl Transport for ServerTls {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let mut c = self.conn.try_borrow_mut().map_err(|_| ServerTls::busy())?;
        match rustls::Stream::new(&mut *c, &mut &self.tcp).read(buf) {
            // A client that closes without close_notify: end of stream.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            r => r,
        }
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        let mut c = self.conn.try_borrow_mut().map_err(|_| ServerTls::busy())?;
        let mut tcp = &self.tcp;
        let mut s = rustls::Stream::new(&mut *c, &mut tcp);
        s.write_all(buf)?;
        s.flush()
    }

    fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp.set_read_timeout(t)
    }

    fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp.set_write_timeout(t)
    }

    fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        if let Shutdown::Write | Shutdown::Both = how {
            if let Ok(mut c) = self.conn.try_borrow_mut() {
                c.send_close_notify();
                let _ = c.complete_io(&mut &self.tcp);
            }
        }
        self.tcp.shutdown(how)
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.peer_addr()
    }
}

#[cfg(feature = "tls")]
impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls").field("tcp", &self.tcp).finish_non_exhaustive()
    }
}
