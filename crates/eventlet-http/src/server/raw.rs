//! The lower-level handler API: [`Server::serve_raw`](super::Server::serve_raw).
//!
//! A handler of [`http::Request`]s gets a request built for it: a
//! [`HeaderMap`](http::HeaderMap) filled with every header, a parsed
//! [`Uri`](http::Uri), shared slices of a copy of the head; and answers with
//! an [`http::Response`] and its own map. That is the `http` crate's price,
//! hyper pays it too, and on a small request it is most of the server's
//! work. A raw handler skips it, as may_minihttp's does: it borrows the
//! request head as the server parsed it ([`Request`]: method, target and
//! headers as slices of a copy of the head, kept by the connection and
//! reused), and writes its answer into buffers the connection keeps
//! ([`Response`]: status, header lines, body), which the server then
//! formats straight into its output buffer. No allocation per request.
//!
//! ```
//! use std::io::{Read, Write};
//! use eventlet_http::server::raw::{Request, Response};
//!
//! fn hello(req: &mut Request<'_>, res: &mut Response<'_>) {
//!     match req.path() {
//!         "/plaintext" => {
//!             res.header("Content-Type", "text/plain").body_static(b"Hello, World!");
//!         }
//!         _ => {
//!             res.status(http::StatusCode::NOT_FOUND);
//!         }
//!     }
//! }
//!
//! let server = eventlet_http::Server::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! let stop = server.shutdown_handle();
//! eventlet::spawn_n(move || server.serve_raw(hello).unwrap());
//!
//! let mut c = eventlet::net::TcpStream::connect(addr)?;
//! c.write_all(b"GET /plaintext HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")?;
//! let mut reply = String::new();
//! c.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(reply.contains("\r\nContent-Type: text/plain\r\n"));
//! assert!(reply.ends_with("\r\nContent-Length: 13\r\nConnection: close\r\n\r\nHello, World!"));
//! stop.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! Everything else is the server's, as for a handler of `http` types: the
//! same parser, limits and answers to bad requests (see
//! [`server`](super)), keep-alive, pipelining (answers gathered into one
//! write), request bodies (`Content-Length` or chunked, `Expect:
//! 100-continue`, the body limit, what the handler leaves unread drained),
//! timeouts, the access log, graceful shutdown, several hubs
//! ([`Workers::serve_raw`](super::Workers::serve_raw)), TLS, a panicking
//! handler answered `500`. The server writes `Content-Length` (from the
//! body), `Date` (unless the handler wrote one) and `Connection` itself.
//!
//! What it does not do, for a handler of `http` types to do instead:
//!
//! - the request target is handed over as the client sent it (`httparse`
//!   checked that it holds no spaces or control characters), not parsed
//!   into a [`Uri`](http::Uri): an absolute form (`http://host/path`) stays
//!   one, and percent-escapes are the handler's;
//! - method and header names are not checked against `http`'s rules
//!   beyond `httparse`'s (tokens), and header values not at all beyond
//!   `httparse`'s (no line breaks), so a request that a handler of `http`
//!   types never sees (`400`) may reach a raw one;
//! - the response body is bytes in memory, not a stream, and there is no
//!   upgrade (a WebSocket needs [`Server::serve`](super::Server::serve)).

use std::fmt;
use std::io;
use std::net::SocketAddr;

use http::{StatusCode, Version};

use super::head::RawHead;
use crate::body::Body;

/// Where a slice of the head copy is: `start..start + len`.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    fn of(self, bytes: &[u8]) -> &[u8] {
        bytes.get(self.start as usize..(self.start + self.len) as usize).unwrap_or_default()
    }
}

/// A copy of a request head and where its parts are in it: kept by the
/// connection and refilled for each request (no allocation once it has
/// grown to the connection's largest head).
#[derive(Debug, Default)]
pub(super) struct HeadCopy {
    bytes: Vec<u8>,
    method: Span,
    path: Span,
    headers: Vec<(Span, Span)>,
    version: Option<Version>,
}

/// The largest head copy a connection keeps between requests.
const KEEP: usize = 16 * 1024;

impl HeadCopy {
    /// Copies `raw` in.
    pub(super) fn fill(&mut self, raw: &RawHead<'_, '_>) {
        self.bytes.clear();
        self.headers.clear();
        self.bytes.extend_from_slice(raw.bytes);
        let base = raw.bytes.as_ptr() as usize;
        self.method = self.span(base, raw.method.as_bytes());
        self.path = self.span(base, raw.path.as_bytes());
        for h in raw.headers {
            let (name, value) = (self.span(base, h.name.as_bytes()), self.span(base, h.value));
            self.headers.push((name, value));
        }
        self.version = Some(raw.info.version);
    }

    /// Where `part` is in the copy of the head that starts at `base`; a
    /// part from elsewhere (an empty value may be) is appended.
    fn span(&mut self, base: usize, part: &[u8]) -> Span {
        let head_len = self.bytes.len();
        let at = (part.as_ptr() as usize).wrapping_sub(base);
        let start = match head_len.checked_sub(at) {
            Some(room) if part.len() <= room => at,
            _ => {
                self.bytes.extend_from_slice(part);
                self.bytes.len() - part.len()
            }
        };
        // A head is at most `MAX_HEAD` (64 KiB) long.
        Span { start: start as u32, len: part.len() as u32 }
    }

    /// Lets go of a large copy (between requests).
    pub(super) fn trim(&mut self) {
        if self.bytes.capacity() > KEEP {
            *self = HeadCopy::default();
        }
    }

    fn str(&self, span: Span) -> &str {
        // `httparse` handed these over as `str`.
        std::str::from_utf8(span.of(&self.bytes)).unwrap_or_default()
    }
}

/// A request as a raw handler gets it: the head as the server parsed it
/// (borrowed from the connection), and the body to read.
pub struct Request<'a> {
    head: HeadRef<'a>,
    body: Body,
    peer: SocketAddr,
}

/// Where a [`Request`]'s head is: in the read buffer as parsed (a request
/// without a body: nothing else reads the connection while the handler
/// runs), or copied out of it (a request with a body, which the handler
/// reads from the connection).
#[derive(Clone, Copy)]
enum HeadRef<'a> {
    Parsed(&'a RawHead<'a, 'a>),
    Copy(&'a HeadCopy),
}

impl<'a> Request<'a> {
    pub(super) fn copied(head: &'a HeadCopy, body: Body, peer: SocketAddr) -> Request<'a> {
        Request { head: HeadRef::Copy(head), body, peer }
    }

    pub(super) fn parsed(head: &'a RawHead<'a, 'a>, peer: SocketAddr) -> Request<'a> {
        Request { head: HeadRef::Parsed(head), body: Body::empty(), peer }
    }

    /// The method, as sent (`GET`, `POST`, ...; methods are case-sensitive).
    pub fn method(&self) -> &str {
        match self.head {
            HeadRef::Parsed(h) => h.method,
            HeadRef::Copy(c) => c.str(c.method),
        }
    }

    /// The request target as sent: for most requests the path and query
    /// (`/search?q=green`), as is (no percent-decoding).
    pub fn path(&self) -> &str {
        match self.head {
            HeadRef::Parsed(h) => h.path,
            HeadRef::Copy(c) => c.str(c.path),
        }
    }

    /// The HTTP version: [`Version::HTTP_11`] or [`Version::HTTP_10`].
    pub fn version(&self) -> Version {
        match self.head {
            HeadRef::Parsed(h) => h.info.version,
            HeadRef::Copy(c) => c.version.unwrap_or(Version::HTTP_11),
        }
    }

    /// The header fields in the order sent: names as sent (any case),
    /// values as bytes (without the surrounding spaces).
    pub fn headers(&self) -> Headers<'_> {
        Headers { head: self.head, next: 0 }
    }

    /// The value of the first header field called `name` (any case).
    ///
    /// ```
    /// # fn handler(req: &mut eventlet_http::server::raw::Request<'_>) {
    /// let agent = req.header("user-agent").unwrap_or(b"-");
    /// # let _ = agent;
    /// # }
    /// # let _ = handler;
    /// ```
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The request body: read it like a file (empty for a request without
    /// one). What the handler leaves unread, the server reads and drops.
    pub fn body(&mut self) -> &mut Body {
        &mut self.body
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.peer
    }
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method())
            .field("path", &self.path())
            .field("version", &self.version())
            .field("headers", &self.headers().count())
            .finish()
    }
}

/// The header fields of a [`Request`]: `(name, value)` in the order sent.
#[derive(Clone)]
pub struct Headers<'a> {
    head: HeadRef<'a>,
    next: usize,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<(&'a str, &'a [u8])> {
        let i = self.next;
        let item = match self.head {
            HeadRef::Parsed(h) => h.headers.get(i).map(|h| (h.name, h.value))?,
            HeadRef::Copy(c) => c.headers.get(i).map(|&(n, v)| (c.str(n), v.of(&c.bytes)))?,
        };
        self.next += 1;
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = match self.head {
            HeadRef::Parsed(h) => h.headers.len(),
            HeadRef::Copy(c) => c.headers.len(),
        };
        let n = len - self.next.min(len);
        (n, Some(n))
    }
}

impl ExactSizeIterator for Headers<'_> {}

impl fmt::Debug for Headers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone().map(|(n, v)| (n, String::from_utf8_lossy(v)))).finish()
    }
}

/// A header name or value [`Response::try_header`] refused: a name must be
/// a token (letters, digits and ``!#$%&'*+-.^_`|~``), a value must hold
/// no control characters but tabs (no line breaks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidHeader {
    what: &'static str,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid header {}", self.what)
    }
}

impl std::error::Error for InvalidHeader {}

impl From<InvalidHeader> for io::Error {
    fn from(e: InvalidHeader) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidInput, e)
    }
}

/// Which bytes may be in a header name (`tchar` of RFC 9110 §5.6.2) and
/// a value (tab, visible ASCII, and bytes from 0x80: RFC 9110's obs-text,
/// as [`HeaderValue`](http::HeaderValue) accepts them).
const NAME: u8 = 1;
const VALUE: u8 = 2;
const BYTES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() {
            t[b] |= NAME;
        }
        if c == b'\t' || (c >= 32 && c != 127) {
            t[b] |= VALUE;
        }
        b += 1;
    }
    let extra = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < extra.len() {
        t[extra[i] as usize] |= NAME;
        i += 1;
    }
    t
};

/// Whether every byte of `bytes` has the class `class`.
#[inline]
fn all(bytes: &[u8], class: u8) -> bool {
    bytes.iter().fold(true, |ok, &b| ok & (BYTES[b as usize] & class != 0))
}

/// Which header names the server writes itself or acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Special {
    None,
    Date,
    /// `Connection`: not written; `close` closes the connection after.
    Connection,
    /// `Content-Length`, `Transfer-Encoding`: not written (the server
    /// frames the body).
    Framing,
}

fn special(name: &[u8]) -> Special {
    match name.len() {
        4 if name.eq_ignore_ascii_case(b"date") => Special::Date,
        10 if name.eq_ignore_ascii_case(b"connection") => Special::Connection,
        14 if name.eq_ignore_ascii_case(b"content-length") => Special::Framing,
        17 if name.eq_ignore_ascii_case(b"transfer-encoding") => Special::Framing,
        _ => Special::None,
    }
}

/// A header line checked when the program is compiled, for the headers a
/// handler sends in every response: [`Response::header_line`] copies it
/// as it is, with no check at run time.
///
/// ```
/// use eventlet_http::server::raw::{HeaderLine, Request, Response};
///
/// const TEXT: HeaderLine = HeaderLine::new("Content-Type: text/plain");
///
/// fn hello(_req: &mut Request<'_>, res: &mut Response<'_>) {
///     res.header_line(TEXT).body_static(b"Hello, World!");
/// }
/// # let _ = hello;
/// ```
///
/// A line that is not `Name: value` (a token, a colon, a value without
/// control characters but tabs) does not compile when made in a `const`
/// (and panics when made at run time):
///
/// ```compile_fail
/// const BAD: eventlet_http::server::raw::HeaderLine =
///     eventlet_http::server::raw::HeaderLine::new("Content-Type: text/plain\r\nX-Evil: 1");
/// ```
///
/// Neither may it set what the server writes itself (`Content-Length`,
/// `Transfer-Encoding`, `Connection`: use [`Response::header`]):
///
/// ```compile_fail
/// const LEN: eventlet_http::server::raw::HeaderLine =
///     eventlet_http::server::raw::HeaderLine::new("Content-Length: 5");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeaderLine {
    line: &'static str,
    date: bool,
}

/// Whether `a` is `b` in any case (ASCII), at compile time.
const fn const_eq_ignore_case(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if !a[i].eq_ignore_ascii_case(&b[i]) {
            return false;
        }
        i += 1;
    }
    true
}

impl HeaderLine {
    /// Checks `line` (`Name: value`, no line break).
    ///
    /// # Panics
    ///
    /// If `line` is not a valid header line, or names `Content-Length`,
    /// `Transfer-Encoding` or `Connection`: in a `const`, when compiling.
    pub const fn new(line: &'static str) -> HeaderLine {
        let b = line.as_bytes();
        let mut colon = 0;
        while colon < b.len() && b[colon] != b':' {
            if BYTES[b[colon] as usize] & NAME == 0 {
                panic!("eventlet_http::server::raw::HeaderLine: the name is not a token (or the line has no colon)");
            }
            colon += 1;
        }
        if colon == 0 || colon == b.len() {
            panic!("eventlet_http::server::raw::HeaderLine: not `Name: value`");
        }
        let mut i = colon + 1;
        while i < b.len() {
            if BYTES[b[i] as usize] & VALUE == 0 {
                panic!("eventlet_http::server::raw::HeaderLine: the value holds a control character");
            }
            i += 1;
        }
        let (name, _) = b.split_at(colon);
        if const_eq_ignore_case(name, b"content-length")
            || const_eq_ignore_case(name, b"transfer-encoding")
            || const_eq_ignore_case(name, b"connection")
        {
            panic!("eventlet_http::server::raw::HeaderLine: the server writes this header itself");
        }
        HeaderLine { line, date: const_eq_ignore_case(name, b"date") }
    }

    /// The line, without its line break.
    pub const fn as_str(&self) -> &'static str {
        self.line
    }
}

/// What a raw handler answers: a status (`200 OK` unless set), header
/// lines and a body, in buffers the connection keeps. The server adds
/// `Content-Length` (the body's length), `Date` (unless written here) and
/// `Connection`, and sends it (to a `HEAD` request, without the body).
///
/// ```
/// use std::io::Write;
/// # fn handler(req: &mut eventlet_http::server::raw::Request<'_>, res: &mut eventlet_http::server::raw::Response<'_>) -> std::io::Result<()> {
/// res.status(http::StatusCode::CREATED).header("Content-Type", "application/json");
/// write!(res, r#"{{"path":"{}"}}"#, req.path().escape_default())?;
/// # Ok(())
/// # }
/// # let _ = handler;
/// ```
pub struct Response<'a> {
    bufs: &'a mut ResponseBufs,
    meta: Meta,
}

/// What a [`Response`] holds beside its buffers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Meta {
    pub(super) status: StatusCode,
    static_body: Option<&'static [u8]>,
    pub(super) has_date: bool,
    /// The handler's `Connection: close`.
    pub(super) close: bool,
}

/// The buffers a connection keeps for its raw responses: the handler's
/// header lines and its body.
#[derive(Debug, Default)]
pub(super) struct ResponseBufs {
    head: Vec<u8>,
    body: Vec<u8>,
}

impl ResponseBufs {
    /// An empty response over these buffers.
    pub(super) fn response(&mut self) -> Response<'_> {
        self.head.clear();
        self.body.clear();
        Response { bufs: self, meta: Meta { status: StatusCode::OK, static_body: None, has_date: false, close: false } }
    }

    /// The header lines written by the handler (`Name: value\r\n` each).
    pub(super) fn head_lines(&self) -> &[u8] {
        &self.head
    }

    /// The body of the response `meta` describes.
    pub(super) fn body<'a>(&'a self, meta: &Meta) -> &'a [u8] {
        meta.static_body.unwrap_or(&self.body)
    }

    /// Lets go of large buffers (between requests).
    pub(super) fn trim(&mut self) {
        if self.head.capacity() > KEEP {
            self.head = Vec::new();
        }
        if self.body.capacity() > KEEP {
            self.body = Vec::new();
        }
    }
}

impl Response<'_> {
    /// Sets the status (default `200 OK`).
    ///
    /// # Panics
    ///
    /// If `status` is informational (1xx): not a final answer.
    pub fn status(&mut self, status: StatusCode) -> &mut Self {
        assert!(!status.is_informational(), "eventlet_http::server::raw::Response::status: {status} is not final");
        self.meta.status = status;
        self
    }

    /// Adds a header field. `Content-Length` and `Transfer-Encoding` are
    /// not sent (the server frames the body); `Connection` is not sent,
    /// and if it lists `close` the connection closes after this response.
    ///
    /// # Panics
    ///
    /// If the name or value is invalid (see [`InvalidHeader`]), as
    /// [`HeaderValue::from_static`](http::HeaderValue::from_static) does;
    /// for names and values from elsewhere, use [`try_header`](Self::try_header).
    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        if let Err(e) = self.try_header(name, value) {
            panic!("eventlet_http::server::raw::Response::header: {e} ({name:?})");
        }
        self
    }

    /// Adds a header field, as [`header`](Self::header) does.
    ///
    /// # Errors
    ///
    /// [`InvalidHeader`] if the name or value is invalid; nothing is added.
    pub fn try_header(&mut self, name: &str, value: impl AsRef<[u8]>) -> Result<&mut Self, InvalidHeader> {
        let (name, value) = (name.as_bytes(), value.as_ref());
        if name.is_empty() || !all(name, NAME) {
            return Err(InvalidHeader { what: "name" });
        }
        if !all(value, VALUE) {
            return Err(InvalidHeader { what: "value" });
        }
        match special(name) {
            Special::None => {}
            Special::Date => self.meta.has_date = true,
            Special::Connection => {
                if super::head::bytes_have_token(value, "close") {
                    self.meta.close = true;
                }
                return Ok(self);
            }
            Special::Framing => return Ok(self),
        }
        let head = &mut self.bufs.head;
        head.reserve(name.len() + value.len() + 4);
        head.extend_from_slice(name);
        head.extend_from_slice(b": ");
        head.extend_from_slice(value);
        head.extend_from_slice(b"\r\n");
        Ok(self)
    }

    /// Adds a header line checked at compile time (see [`HeaderLine`]):
    /// the cheapest way to send a fixed header.
    pub fn header_line(&mut self, line: HeaderLine) -> &mut Self {
        self.meta.has_date |= line.date;
        let head = &mut self.bufs.head;
        head.extend_from_slice(line.line.as_bytes());
        head.extend_from_slice(b"\r\n");
        self
    }

    /// Sets the body to `bytes` (replacing what was written).
    pub fn body_static(&mut self, bytes: &'static [u8]) -> &mut Self {
        self.bufs.body.clear();
        self.meta.static_body = Some(bytes);
        self
    }

    /// The body written so far, to add to (the connection's buffer; also
    /// through [`Write`](io::Write)).
    pub fn body_mut(&mut self) -> &mut Vec<u8> {
        if let Some(b) = self.meta.static_body.take() {
            self.bufs.body.extend_from_slice(b);
        }
        &mut self.bufs.body
    }

    /// The status set so far.
    pub fn status_code(&self) -> StatusCode {
        self.meta.status
    }

    /// What the response holds beside its buffers, once the handler is done.
    pub(super) fn meta(&self) -> Meta {
        self.meta
    }

    #[cfg(test)]
    fn body_bytes(&self) -> &[u8] {
        self.bufs.body(&self.meta)
    }
}

impl io::Write for Response<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.body_mut().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.body_mut().extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl fmt::Debug for Response<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.meta.status)
            .field("head", &String::from_utf8_lossy(&self.bufs.head))
            .field("body_len", &self.bufs.body(&self.meta).len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::head::{header_slots, parse, Parsed};
    use super::*;

    #[test]
    fn request_borrows_a_copy_of_the_head() {
        let mut slots = header_slots();
        let raw = b"GET /a?b=1 HTTP/1.0\r\nHost: x\r\nX-Empty:\r\nAccept: */*\r\n\r\nnext";
        let Ok(Parsed::Complete(h)) = parse(raw, &mut slots) else { panic!("incomplete") };
        let mut copy = HeadCopy::default();
        copy.fill(&h);
        for req in [
            Request::copied(&copy, Body::empty(), SocketAddr::from(([127, 0, 0, 1], 9))),
            Request::parsed(&h, SocketAddr::from(([127, 0, 0, 1], 9))),
        ] {
            assert_eq!(req.method(), "GET");
            assert_eq!(req.path(), "/a?b=1");
            assert_eq!(req.version(), Version::HTTP_10);
            let all: Vec<(&str, &[u8])> = req.headers().collect();
            assert_eq!(all, [("Host", &b"x"[..]), ("X-Empty", b""), ("Accept", b"*/*")]);
            assert_eq!(req.header("accept"), Some(&b"*/*"[..]));
            assert_eq!(req.header("x-empty"), Some(&b""[..]));
            assert_eq!(req.header("cookie"), None);
            assert_eq!(req.remote_addr().port(), 9);
            assert_eq!(req.headers().len(), 3);
        }
    }

    #[test]
    fn headers_are_checked_and_special_ones_taken_apart() {
        let mut bufs = ResponseBufs::default();
        let mut res = bufs.response();
        res.header("X-A", "1").header("Date", "Sun, 06 Nov 1994 08:49:37 GMT");
        res.header("Content-Length", "99").header("Transfer-Encoding", "chunked");
        res.header("Connection", "Close");
        assert_eq!(res.try_header("Bad Name", "x").unwrap_err(), InvalidHeader { what: "name" });
        assert_eq!(res.try_header("", "x").unwrap_err(), InvalidHeader { what: "name" });
        assert_eq!(res.try_header("X-B", "a\r\nX-Evil: 1").unwrap_err(), InvalidHeader { what: "value" });
        assert!(res.try_header("X-C", "tab\there, caf\u{e9}").is_ok());
        assert!(res.meta.has_date && res.meta.close);
        assert_eq!(
            bufs.head_lines(),
            b"X-A: 1\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\nX-C: tab\there, caf\xc3\xa9\r\n"
        );
        let mut res = bufs.response();
        assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            res.header("X-D", "\0");
        }))
        .is_err());
    }

    #[test]
    fn header_lines() {
        const TEXT: HeaderLine = HeaderLine::new("Content-Type: text/plain; charset=utf-8");
        const DATE: HeaderLine = HeaderLine::new("date: Sun, 06 Nov 1994 08:49:37 GMT");
        let mut bufs = ResponseBufs::default();
        let mut res = bufs.response();
        res.header_line(TEXT);
        assert!(!res.meta.has_date);
        res.header_line(DATE);
        assert!(res.meta.has_date);
        assert_eq!(
            bufs.head_lines(),
            b"Content-Type: text/plain; charset=utf-8\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
        );
        assert_eq!(TEXT.as_str(), "Content-Type: text/plain; charset=utf-8");
        // Made at run time, a bad line panics.
        for bad in ["", ": x", "No colon", "Bad Name: x", "X: a\nb", "connection: close", "Content-LENGTH: 1"] {
            let leaked: &'static str = Box::leak(bad.to_string().into_boxed_str());
            assert!(std::panic::catch_unwind(|| HeaderLine::new(leaked)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn body_static_then_written_to() {
        use std::io::Write;
        let mut bufs = ResponseBufs::default();
        let mut res = bufs.response();
        res.body_static(b"abc");
        assert_eq!(res.body_bytes(), b"abc");
        write!(res, "-{}", 1).unwrap();
        assert_eq!(res.body_bytes(), b"abc-1");
        res.body_static(b"x");
        assert_eq!(res.body_bytes(), b"x");
        // Reused: empty again for the next response.
        let res = bufs.response();
        assert_eq!(res.body_bytes(), b"");
        assert_eq!(res.status_code(), StatusCode::OK);
    }
}
