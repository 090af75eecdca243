//! [`Body`]: the body of a request or a response, in memory or streamed.

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Cursor, Read};
use std::rc::Rc;

use crate::upgrade::Upgraded;

/// Where a request body's bytes come from: the server connection that
/// received the request. `generation` says which request of the
/// connection the body belongs to; once that request is answered, the
/// body reads nothing more.
pub(crate) trait IncomingSource {
    /// Reads the next bytes of the body of request `generation`.
    fn read(&self, generation: u64, out: &mut [u8]) -> io::Result<usize>;

    /// What is left of that body, when known.
    fn remaining(&self, generation: u64) -> Option<u64>;
}

/// The body of a request or a response: bytes in memory, a stream read on
/// demand, or nothing. It is [`Read`]: read it like a file.
///
/// The server hands a handler the request body as a `Body` that reads from
/// the connection (decoding `Content-Length` or chunked framing); the
/// handler answers with any `Body`. A body whose length is known is sent
/// with `Content-Length`, one whose length is not (see
/// [`Body::from_reader`]) with chunked transfer coding (or, to an HTTP/1.0
/// client, delimited by closing the connection).
///
/// ```
/// use std::io::Read;
/// use eventlet_http::Body;
///
/// let mut b = Body::from("hello");
/// assert_eq!(b.len(), Some(5));
/// let mut s = String::new();
/// b.read_to_string(&mut s)?;
/// assert_eq!(s, "hello");
///
/// let streamed = Body::from_reader(&b"from a reader"[..]);
/// assert_eq!(streamed.len(), None);
/// assert_eq!(streamed.into_string()?, "from a reader");
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Body {
    kind: Kind,
}

enum Kind {
    Empty,
    Bytes(Cursor<Cow<'static, [u8]>>),
    Reader { reader: Box<dyn Read>, len: Option<u64> },
    Incoming { source: Rc<dyn IncomingSource>, generation: u64 },
    Upgrade(Box<dyn FnOnce(Upgraded)>),
}

impl Body {
    /// A body of no bytes.
    pub fn empty() -> Body {
        Body { kind: Kind::Empty }
    }

    /// A body streamed from `reader`, of unknown length: a response with it
    /// is sent chunked.
    pub fn from_reader<R: Read + 'static>(reader: R) -> Body {
        Body { kind: Kind::Reader { reader: Box::new(reader), len: None } }
    }

    /// A body of exactly `len` bytes streamed from `reader`: a response with
    /// it is sent with `Content-Length: len`. Should the reader end early,
    /// the server closes the connection (the client sees a short body).
    pub fn sized_reader<R: Read + 'static>(reader: R, len: u64) -> Body {
        Body { kind: Kind::Reader { reader: Box::new(reader.take(len)), len: Some(len) } }
    }

    /// Like [`Body::sized_reader`] without cutting the reader off at `len`:
    /// it is read to its own end (ureq hands a connection back to its pool
    /// only then).
    pub(crate) fn reader_with_len<R: Read + 'static>(reader: R, len: u64) -> Body {
        Body { kind: Kind::Reader { reader: Box::new(reader), len: Some(len) } }
    }

    /// The body of a `101 Switching Protocols` response that takes the
    /// connection over: once the server has written the response head, it
    /// calls `on_upgrade` on the connection's green thread with the raw
    /// connection (and whatever the client sent past the request), then
    /// closes the connection when `on_upgrade` returns. It reads as empty.
    ///
    /// The server acts on it only in a response whose status is `101`;
    /// elsewhere it is an empty body and `on_upgrade` is dropped uncalled.
    /// [`websocket::upgrade`](crate::websocket::upgrade) builds such a
    /// response.
    pub fn upgrade<F: FnOnce(Upgraded) + 'static>(on_upgrade: F) -> Body {
        Body { kind: Kind::Upgrade(Box::new(on_upgrade)) }
    }

    pub(crate) fn take_upgrade(&mut self) -> Option<Box<dyn FnOnce(Upgraded)>> {
        match std::mem::replace(&mut self.kind, Kind::Empty) {
            Kind::Upgrade(f) => Some(f),
            other => {
                self.kind = other;
                None
            }
        }
    }

    /// The body of request `generation` of a server connection.
    pub(crate) fn incoming(source: Rc<dyn IncomingSource>, generation: u64) -> Body {
        Body { kind: Kind::Incoming { source, generation } }
    }

    pub(crate) fn is_incoming(&self) -> bool {
        matches!(self.kind, Kind::Incoming { .. })
    }

    /// The number of bytes left to read, when known: the length of an
    /// in-memory body, the `len` of [`Body::sized_reader`], what is left of
    /// a request's `Content-Length`; `None` for a chunked or open-ended
    /// stream.
    pub fn len(&self) -> Option<u64> {
        match &self.kind {
            Kind::Empty | Kind::Upgrade(_) => Some(0),
            Kind::Bytes(c) => Some(c.get_ref().len() as u64 - c.position().min(c.get_ref().len() as u64)),
            Kind::Reader { len, .. } => *len,
            Kind::Incoming { source, generation } => source.remaining(*generation),
        }
    }

    /// The bytes left of an in-memory body (`None` for the other kinds).
    pub(crate) fn remaining_bytes(&self) -> Option<&[u8]> {
        match &self.kind {
            Kind::Empty => Some(&[]),
            Kind::Bytes(c) => c.get_ref().get(c.position() as usize..).or(Some(&[])),
            _ => None,
        }
    }

    /// Whether the body is known to have no bytes left.
    pub fn is_empty(&self) -> bool {
        self.len() == Some(0)
    }

    /// Reads the whole body into memory.
    ///
    /// # Errors
    ///
    /// The underlying reader's error; for a request body, `InvalidData` if
    /// its framing is malformed or it exceeds the server's body limit.
    pub fn into_bytes(mut self) -> io::Result<Vec<u8>> {
        if let Kind::Bytes(c) = self.kind {
            let pos = c.position() as usize;
            let v = c.into_inner().into_owned();
            return Ok(if pos == 0 { v } else { v[pos.min(v.len())..].to_vec() });
        }
        let mut v = Vec::new();
        self.read_to_end(&mut v)?;
        Ok(v)
    }

    /// Reads the whole body into a `String`.
    ///
    /// # Errors
    ///
    /// As [`Body::into_bytes`], and `InvalidData` if it is not UTF-8.
    pub fn into_string(self) -> io::Result<String> {
        String::from_utf8(self.into_bytes()?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.kind {
            Kind::Empty | Kind::Upgrade(_) => Ok(0),
            Kind::Bytes(c) => c.read(buf),
            Kind::Reader { reader, len } => {
                let n = reader.read(buf)?;
                if let Some(len) = len {
                    *len = len.saturating_sub(n as u64);
                }
                Ok(n)
            }
            Kind::Incoming { source, generation } => source.read(*generation, buf),
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::empty()
    }
}

impl From<&'static str> for Body {
    fn from(s: &'static str) -> Body {
        Body::from(s.as_bytes())
    }
}

impl From<String> for Body {
    fn from(s: String) -> Body {
        Body::from(s.into_bytes())
    }
}

impl From<&'static [u8]> for Body {
    fn from(b: &'static [u8]) -> Body {
        Body { kind: Kind::Bytes(Cursor::new(Cow::Borrowed(b))) }
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body { kind: Kind::Bytes(Cursor::new(Cow::Owned(b))) }
    }
}

impl From<()> for Body {
    fn from((): ()) -> Body {
        Body::empty()
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Empty => "empty",
            Kind::Bytes(_) => "bytes",
            Kind::Reader { .. } => "reader",
            Kind::Incoming { .. } => "incoming",
            Kind::Upgrade(_) => "upgrade",
        };
        f.debug_struct("Body").field("kind", &kind).field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_reads() {
        let mut b = Body::from(vec![1, 2, 3]);
        let mut one = [0];
        b.read_exact(&mut one).unwrap();
        assert_eq!(b.len(), Some(2));
        assert_eq!(b.into_bytes().unwrap(), [2, 3]);
        assert_eq!(Body::empty().len(), Some(0));
        assert!(Body::default().is_empty());
        let s = Body::sized_reader(&b"abcdef"[..], 3);
        assert_eq!(s.len(), Some(3));
        assert_eq!(s.into_string().unwrap(), "abc");
        assert!(Body::from(vec![0xff]).into_string().is_err());
    }
}
