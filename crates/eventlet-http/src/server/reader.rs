//! The read side of a connection: its stream and a buffer (heads are
//! parsed in place, pipelined requests wait there), and the one place
//! where the stream's read timeout is set.

use std::io;
use std::rc::Rc;
use std::time::Duration;

use super::MAX_HEAD;
use crate::transport::Transport;

pub(super) fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// A connection's stream and its read buffer.
pub(super) struct Reader<S> {
    pub(super) stream: Rc<S>,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// The read timeout last set on the stream.
    timeout: Option<Duration>,
}

impl<S: Transport> Reader<S> {
    pub(super) fn new(stream: Rc<S>) -> Reader<S> {
        Reader { stream, buf: vec![0; 4096], pos: 0, end: 0, timeout: None }
    }

    /// Sets how long a read of the stream may wait: the only place the
    /// connection sets it (the connection decides the value, see
    /// `Connection::read_timeout`).
    pub(super) fn set_timeout(&mut self, t: Option<Duration>) {
        if self.timeout != t {
            self.timeout = t;
            let _ = self.stream.set_read_timeout(t);
        }
    }

    #[inline]
    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    #[inline]
    pub(super) fn consume(&mut self, n: usize) {
        self.pos += n;
        debug_assert!(self.pos <= self.end);
    }

    /// Takes what is buffered (for an upgraded connection).
    pub(super) fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buffered().to_vec();
        self.consume(rest.len());
        rest
    }

    /// Reads more from the stream, keeping the buffered bytes; the buffer
    /// grows up to `max` bytes. `Ok(0)` at end of stream.
    pub(super) fn fill(&mut self, max: usize) -> io::Result<usize> {
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
        let n = self.stream.read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads up to `out.len()` bytes, from the buffer first.
    pub(super) fn read_some(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.end {
            if out.len() >= 8192 {
                return self.stream.read(out);
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
    pub(super) fn read_line(&mut self, max: usize) -> io::Result<Vec<u8>> {
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
