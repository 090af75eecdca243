//! Request bodies: decoding `Content-Length` and chunked framing off the
//! connection's read side as the handler reads its [`Body`](crate::Body),
//! the body limit, `Expect: 100-continue`, and draining what a handler
//! left unread.

use std::cell::RefCell;
use std::io;

use super::reader::{invalid, Reader};
use super::{MAX_CHUNK_LINE, MAX_DRAIN, MAX_HEAD};
use crate::body::IncomingSource;
use crate::transport::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkEnd,
    Trailers,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyError {
    TooLarge,
    Malformed,
    Io,
}

/// The connection's read side and the state of the current request body,
/// shared by the connection loop and the request's [`Body`](crate::Body)
/// (as its [`IncomingSource`]).
pub(super) struct Exchange<S> {
    pub(super) reader: Reader<S>,
    /// Bumped when a request is over: its `Body` then reads nothing more.
    pub(super) generation: u64,
    pub(super) framing: Framing,
    received: u64,
    limit: u64,
    /// The client waits for `100 Continue` before it sends the body.
    pub(super) continue_pending: bool,
    pub(super) error: Option<BodyError>,
}

/// What draining the rest of a request body found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Drained {
    /// The body is read to its end: the connection can go on.
    Done,
    /// The body cannot be read to its end (an error, too much left, a
    /// client still waiting for `100 Continue`): close the connection.
    Abandoned,
}

impl<S: Transport> Exchange<S> {
    pub(super) fn new(reader: Reader<S>, limit: u64) -> Exchange<S> {
        Exchange {
            reader,
            generation: 0,
            framing: Framing::Done,
            received: 0,
            limit,
            continue_pending: false,
            error: None,
        }
    }

    /// Begins request body `framing`; returns the request's generation.
    pub(super) fn begin(&mut self, framing: Framing, expects_continue: bool) -> u64 {
        self.generation += 1;
        self.framing = framing;
        self.received = 0;
        self.error = None;
        self.continue_pending = expects_continue && framing != Framing::Length(0);
        self.generation
    }

    /// Ends the current request: its `Body` reads nothing more.
    pub(super) fn end(&mut self) {
        self.generation += 1;
    }

    /// Sends `100 Continue` now if the client waits for it.
    pub(super) fn send_continue(&mut self) -> io::Result<()> {
        if std::mem::take(&mut self.continue_pending) {
            self.reader.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        }
        Ok(())
    }

    pub(super) fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        match self.error {
            Some(BodyError::TooLarge) => return Err(invalid("request body is larger than the server accepts")),
            Some(BodyError::Malformed) => return Err(invalid("malformed chunked request body")),
            Some(BodyError::Io) => return Err(io::Error::other("request body is unreadable after an earlier error")),
            None => {}
        }
        if out.is_empty() || self.framing == Framing::Done {
            return Ok(0);
        }
        self.send_continue()?;
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

    /// Reads and discards what is left of the request body, up to
    /// [`MAX_DRAIN`].
    pub(super) fn drain(&mut self) -> Drained {
        if self.error.is_some() {
            return Drained::Abandoned;
        }
        if self.framing == Framing::Done || self.framing == Framing::Length(0) {
            return Drained::Done;
        }
        if self.continue_pending {
            // The client waits for our go-ahead that never came: the body
            // will not follow on this connection.
            return Drained::Abandoned;
        }
        let mut scratch = [0; 8192];
        let mut drained = 0u64;
        loop {
            match self.read_body(&mut scratch) {
                Ok(0) => return Drained::Done,
                Ok(n) => {
                    drained += n as u64;
                    if drained > MAX_DRAIN {
                        return Drained::Abandoned;
                    }
                }
                Err(_) => return Drained::Abandoned,
            }
        }
    }
}

impl<S: Transport> IncomingSource for RefCell<Exchange<S>> {
    fn read(&self, generation: u64, out: &mut [u8]) -> io::Result<usize> {
        let mut ex =
            self.try_borrow_mut().map_err(|_| io::Error::other("request body read from two green threads at once"))?;
        if ex.generation != generation {
            return Err(io::Error::other("request body read after its request was answered"));
        }
        ex.read_body(out)
    }

    fn remaining(&self, generation: u64) -> Option<u64> {
        let ex = self.try_borrow().ok()?;
        if ex.generation != generation {
            return Some(0);
        }
        match ex.framing {
            Framing::Length(n) => Some(n),
            Framing::Done => Some(0),
            _ => None,
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
