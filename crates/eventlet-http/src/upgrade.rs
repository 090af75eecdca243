//! Connections taken over after a `101 Switching Protocols` response:
//! [`Upgraded`] and its write half [`UpgradedWriter`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::rc::Rc;
use std::time::Duration;

use crate::transport::Transport;

/// A connection taken over after a `101 Switching Protocols` response (see
/// [`Body::upgrade`](crate::Body::upgrade)): the raw byte stream both ways,
/// beginning with what the client sent right after its request.
///
/// It belongs to the connection's green thread; the server closes the
/// connection when the `on_upgrade` callback returns. Writes go out whole:
/// each `write` call sends all of its buffer under a lock shared with the
/// [`UpgradedWriter`]s, so writers on other green threads never interleave
/// inside one another's buffers.
pub struct Upgraded {
    stream: Rc<dyn Transport>,
    read_ahead: Vec<u8>,
    pos: usize,
    write_lock: Rc<eventlet::Lock<()>>,
}

impl Upgraded {
    /// The connection `stream`, whose first bytes are `read_ahead`.
    pub(crate) fn new(stream: Rc<dyn Transport>, read_ahead: Vec<u8>) -> Upgraded {
        Upgraded { stream, read_ahead, pos: 0, write_lock: Rc::new(eventlet::Lock::new(())) }
    }

    /// The client's address.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::peer_addr`](eventlet::net::TcpStream::peer_addr).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.stream.peer_addr()
    }

    /// How long a read may wait (`None`: forever); an expired read fails
    /// with `TimedOut`.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::set_read_timeout`](eventlet::net::TcpStream::set_read_timeout).
    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(t)
    }

    /// How long a write may wait (the server's write timeout to begin with).
    ///
    /// # Errors
    ///
    /// As [`TcpStream::set_write_timeout`](eventlet::net::TcpStream::set_write_timeout).
    pub fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.stream.set_write_timeout(t)
    }

    /// Shuts down the read, write or both halves of the connection; a green
    /// thread parked reading it wakes up with end of stream.
    ///
    /// # Errors
    ///
    /// As [`TcpStream::shutdown`](eventlet::net::TcpStream::shutdown).
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
        self.stream.read(buf)
    }
}

impl Write for Upgraded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_locked(&*self.stream, &self.write_lock, buf)
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
    stream: Rc<dyn Transport>,
    write_lock: Rc<eventlet::Lock<()>>,
}

impl UpgradedWriter {
    /// Shuts down the read, write or both halves of the connection; the
    /// green thread parked reading it wakes up with end of stream (how a
    /// broadcaster lets go of a member that stopped reading).
    ///
    /// # Errors
    ///
    /// As [`TcpStream::shutdown`](eventlet::net::TcpStream::shutdown).
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.stream.shutdown(how)
    }
}

impl Write for UpgradedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        write_locked(&*self.stream, &self.write_lock, buf)
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
fn write_locked(stream: &dyn Transport, lock: &eventlet::Lock<()>, buf: &[u8]) -> io::Result<usize> {
    let _held = lock.lock();
    stream.write_all(buf)?;
    Ok(buf.len())
}
