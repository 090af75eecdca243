//! Request heads: parsing (`httparse`, in place in the read buffer), the
//! limits on them, and what the server reads out of them (framing of the
//! body, `Connection`, `Expect`, `Host`), all from the raw bytes, once per
//! request; then, for a handler of `http` types, the [`Head`] built from
//! them.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};

use super::incoming::Framing;
use super::{MAX_HEAD, MAX_HEADERS, MAX_REQUEST_LINE};

/// The header array `httparse` fills: left uninitialised (filling 100
/// headers before every parse cost more than the parse of a small request).
pub(super) type HeaderSlots<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS];

/// An empty [`HeaderSlots`].
pub(super) fn header_slots<'b>() -> HeaderSlots<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS]
}

/// What the server acts on in a request head, read from its raw bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Info {
    pub(super) version: Version,
    /// The client asks to keep the connection open after this request
    /// (HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
    /// `Connection: keep-alive`).
    pub(super) keep_alive: bool,
    /// The request names its host as HTTP/1.1 requires: exactly one
    /// `Host` header (RFC 9112 §3.2; HTTP/1.0 may go without).
    pub(super) host_ok: bool,
    /// The client waits for `100 Continue` before sending its body.
    pub(super) expects_continue: bool,
    /// How the body is framed, or the status to refuse it with.
    pub(super) framing: Result<Framing, StatusCode>,
    /// The method is `HEAD` (the answer has no body).
    pub(super) is_head: bool,
}

/// A complete request head, parsed in place: slices of the read buffer.
pub(super) struct RawHead<'h, 'b> {
    /// The head's bytes, from the request line (leading blank lines left
    /// out) to the blank line that ends it.
    pub(super) bytes: &'b [u8],
    pub(super) method: &'b str,
    pub(super) path: &'b str,
    pub(super) headers: &'h [httparse::Header<'b>],
    /// Bytes to consume from the buffer: the leading blank lines and the head.
    pub(super) consumed: usize,
    pub(super) info: Info,
}

impl RawHead<'_, '_> {
    /// The request line as the access log shows it.
    pub(super) fn line(&self) -> String {
        request_line(self.method, self.path, self.info.version)
    }
}

/// `METHOD TARGET HTTP/1.x`.
pub(super) fn request_line(method: &str, target: &str, version: Version) -> String {
    let minor = if version == Version::HTTP_10 { 0 } else { 1 };
    format!("{method} {target} HTTP/1.{minor}")
}

/// What parsing the buffered bytes found.
pub(super) enum Parsed<'h, 'b> {
    /// A complete head.
    Complete(RawHead<'h, 'b>),
    /// More bytes are needed; the first `lead` bytes are blank lines that
    /// may be consumed now.
    Partial { lead: usize },
}

const HAS_CONNECTION: u8 = 1;
const HAS_TRANSFER_ENCODING: u8 = 2;
const HAS_CONTENT_LENGTH: u8 = 4;
const HAS_EXPECT: u8 = 8;
const HAS_HOST: u8 = 16;
/// A second `Host` header (set while parsing, not by [`special_bit`]).
const HAS_SECOND_HOST: u8 = 32;

/// Whether `name` is `lower` in any case, for names and values `httparse`
/// accepted: eight bytes at a time, each with its lowercase bit set. That
/// is exact for `lower` of lowercase letters, digits and `-`, since the
/// only other bytes it would take (control characters, such as `\r` for
/// `-`) are in no name or value `httparse` accepts.
#[inline]
fn eq_lower(name: &[u8], lower: &[u8]) -> bool {
    const LOW: u64 = 0x2020_2020_2020_2020;
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    let word = |b: &[u8], at: usize| u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default());
    let half = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default());
    if n >= 8 {
        // Whole words, the last one overlapping the one before.
        let mut i = 0;
        while i + 8 < n {
            if word(name, i) | LOW != word(lower, i) {
                return false;
            }
            i += 8;
        }
        word(name, n - 8) | LOW == word(lower, n - 8)
    } else if n >= 4 {
        half(name, 0) | LOW as u32 == half(lower, 0) && half(name, n - 4) | LOW as u32 == half(lower, n - 4)
    } else {
        name.iter().zip(lower).all(|(&b, &l)| b | 0x20 == l)
    }
}

/// The `HAS_*` bit of a header name (0 for the others): the length picks
/// the one name to compare.
#[inline]
fn special_bit(name: &[u8]) -> u8 {
    let (bit, special): (u8, &[u8]) = match name.len() {
        4 => (HAS_HOST, b"host"),
        6 => (HAS_EXPECT, b"expect"),
        10 => (HAS_CONNECTION, b"connection"),
        14 => (HAS_CONTENT_LENGTH, b"content-length"),
        17 => (HAS_TRANSFER_ENCODING, b"transfer-encoding"),
        _ => return 0,
    };
    if eq_lower(name, special) {
        bit
    } else {
        0
    }
}

/// Tries to parse a complete head at the start of `buf`.
///
/// # Errors
///
/// The status to refuse the request with (then close).
#[inline]
pub(super) fn parse<'h, 'b>(buf: &'b [u8], slots: &'h mut HeaderSlots<'b>) -> Result<Parsed<'h, 'b>, StatusCode> {
    // Empty lines before a request line are ignored (RFC 9112 §2.2).
    let lead = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    let body = &buf[lead..];
    // (A request line cannot be longer than what is buffered.)
    if body.len() > MAX_REQUEST_LINE && body.iter().position(|&b| b == b'\n').unwrap_or(body.len()) > MAX_REQUEST_LINE {
        return Err(StatusCode::URI_TOO_LONG);
    }
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(body, slots) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if body.len() > MAX_HEAD {
                return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
            }
            return Ok(Parsed::Partial { lead });
        }
        Err(httparse::Error::TooManyHeaders) => return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(httparse::Error::Version) => return Err(StatusCode::HTTP_VERSION_NOT_SUPPORTED),
        Err(_) => return Err(StatusCode::BAD_REQUEST),
    };
    if n > MAX_HEAD {
        return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    let method = req.method.unwrap_or("");
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let headers: &'h [httparse::Header<'b>] = req.headers;
    let info = info(method, version, headers);
    Ok(Parsed::Complete(RawHead {
        bytes: &body[..n],
        method,
        path: req.path.unwrap_or(""),
        headers,
        consumed: lead + n,
        info,
    }))
}

/// What the server reads out of a parsed head: one pass over the header
/// names, and a look at the values of the few it acts on when present
/// (most requests have none of `Connection`, `Expect`, `Content-Length`
/// and `Transfer-Encoding`).
#[inline]
fn info(method: &str, version: Version, headers: &[httparse::Header<'_>]) -> Info {
    let mut special = 0;
    // What the `Connection` headers list, and the first `Expect`.
    let (mut close, mut keep_alive) = (false, false);
    let mut expect = None;
    for h in headers {
        let bit = special_bit(h.name.as_bytes());
        if bit == 0 {
            continue;
        }
        if bit & special & HAS_HOST != 0 {
            special |= HAS_SECOND_HOST;
        }
        if bit == HAS_CONNECTION {
            let (c, k) = connection_tokens(h.value);
            close |= c;
            keep_alive |= k;
        } else if bit == HAS_EXPECT && expect.is_none() {
            expect = Some(h.value);
        }
        special |= bit;
    }
    let v11 = version == Version::HTTP_11;
    let framing = if special & (HAS_TRANSFER_ENCODING | HAS_CONTENT_LENGTH) == 0 {
        Ok(Framing::Length(0))
    } else {
        framing(version, headers)
    };
    Info {
        version,
        keep_alive: if v11 { !close } else { keep_alive },
        host_ok: !v11 || special & (HAS_HOST | HAS_SECOND_HOST) == HAS_HOST,
        expects_continue: v11 && expect.is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue")),
        framing,
        is_head: method == "HEAD",
    }
}

/// Whether a `Connection` value lists `close`, and whether `keep-alive`.
#[inline]
fn connection_tokens(value: &[u8]) -> (bool, bool) {
    // The usual value is one of them.
    if eq_lower(value, b"keep-alive") {
        return (false, true);
    }
    if eq_lower(value, b"close") {
        return (true, false);
    }
    (bytes_have_token(value, "close"), bytes_have_token(value, "keep-alive"))
}

/// The values of the headers called `name` (any case), in order.
fn values<'a, 'b>(headers: &'a [httparse::Header<'b>], name: &'a str) -> impl Iterator<Item = &'b [u8]> + 'a {
    headers.iter().filter(move |h| h.name.eq_ignore_ascii_case(name)).map(|h| h.value)
}

/// The first value of the header `name`.
fn first<'b>(headers: &[httparse::Header<'b>], name: &str) -> Option<&'b [u8]> {
    values(headers, name).next()
}

/// Whether `value` is text: visible ASCII and tabs only (as
/// [`HeaderValue::to_str`] accepts).
fn is_text(value: &[u8]) -> bool {
    value.iter().all(|&b| b == b'\t' || (32..127).contains(&b))
}

/// A header value as text (see [`is_text`]).
fn text(value: &[u8]) -> Option<&str> {
    if is_text(value) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Whether a comma-separated header value lists `token` (any case); a value
/// that is not text lists nothing.
pub(super) fn bytes_have_token(value: &[u8], token: &str) -> bool {
    // The usual value is one token (`keep-alive`, `close`).
    if value.eq_ignore_ascii_case(token.as_bytes()) {
        return true;
    }
    is_text(value) && value.split(|&b| b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// How the request body is framed, or the status to refuse it with.
fn framing(version: Version, headers: &[httparse::Header<'_>]) -> Result<Framing, StatusCode> {
    let mut te = values(headers, "transfer-encoding").peekable();
    let has_cl = first(headers, "content-length").is_some();
    if te.peek().is_some() {
        if has_cl || version == Version::HTTP_10 {
            return Err(StatusCode::BAD_REQUEST);
        }
        let mut codings = Vec::new();
        for v in te {
            let v = text(v).ok_or(StatusCode::BAD_REQUEST)?;
            codings.extend(v.split(',').map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()));
        }
        return match codings.as_slice() {
            [only] if only == "chunked" => Ok(Framing::ChunkSize),
            [.., last] if last == "chunked" => Err(StatusCode::NOT_IMPLEMENTED),
            _ => Err(StatusCode::BAD_REQUEST),
        };
    }
    let mut len: Option<u64> = None;
    for v in values(headers, "content-length") {
        for part in text(v).ok_or(StatusCode::BAD_REQUEST)?.split(',') {
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

/// A request head in `http`'s types, for a handler of [`http::Request`]s.
pub(super) struct Head {
    pub(super) method: Method,
    pub(super) uri: Uri,
    pub(super) headers: HeaderMap,
}

/// Where request heads are copied for the `http` types to share: the path
/// and the header values become slices of one copy of the head (a
/// browser's request carries ten headers or so), and the copies go into
/// one buffer the connection keeps, reused once the handler has dropped
/// the slices of earlier heads (no allocation per request).
pub(super) struct HeadArena {
    buf: BytesMut,
    /// A header map to fill: the map of the last response, emptied (as
    /// hyper does), so that most requests allocate none.
    pub(super) map: Option<HeaderMap>,
}

/// The least the arena takes at once.
const ARENA_MIN: usize = 1024;
/// The largest arena (and response header map, in entries) kept between
/// requests.
const ARENA_KEEP: usize = 16 * 1024;
const MAP_KEEP: usize = 64;

impl HeadArena {
    pub(super) fn new() -> HeadArena {
        HeadArena { buf: BytesMut::new(), map: None }
    }

    /// A copy of `bytes` that shares its allocation with earlier copies.
    fn copy(&mut self, bytes: &[u8]) -> Bytes {
        if self.buf.capacity() < bytes.len() {
            // Takes back the whole buffer when no slice of it is alive
            // (the usual case: the handler dropped its request).
            self.buf.reserve(bytes.len().max(ARENA_MIN));
        }
        self.buf.extend_from_slice(bytes);
        self.buf.split().freeze()
    }

    /// Keeps `map` (emptied) for the next request's headers, if small.
    pub(super) fn recycle(&mut self, mut map: HeaderMap) {
        if map.capacity() <= MAP_KEEP {
            map.clear();
            self.map = Some(map);
        }
    }

    /// Lets go of a large buffer (between requests).
    pub(super) fn trim(&mut self) {
        if self.buf.capacity() > ARENA_KEEP {
            self.buf = BytesMut::new();
        }
    }
}

impl RawHead<'_, '_> {
    /// The head in `http`'s types.
    ///
    /// # Errors
    ///
    /// `400` for a method, target or header `http` refuses.
    pub(super) fn to_http(&self, arena: &mut HeadArena) -> Result<Head, StatusCode> {
        fn bad<E>(_: E) -> StatusCode {
            StatusCode::BAD_REQUEST
        }
        let method = Method::from_bytes(self.method.as_bytes()).map_err(bad)?;
        let head = arena.copy(self.bytes);
        let base = self.bytes.as_ptr() as usize;
        let within = |part: &[u8]| {
            let at = (part.as_ptr() as usize).wrapping_sub(base);
            match head.len().checked_sub(at) {
                Some(room) if part.len() <= room => head.slice(at..at + part.len()),
                // Not borrowed from the head (an empty value may not be).
                _ => Bytes::copy_from_slice(part),
            }
        };
        let uri = Uri::from_maybe_shared(within(self.path.as_bytes())).map_err(bad)?;
        let mut map = arena.map.take().unwrap_or_default();
        map.reserve(self.headers.len());
        for h in self.headers {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(bad)?;
            let value = HeaderValue::from_maybe_shared(within(h.value)).map_err(bad)?;
            map.append(name, value);
        }
        Ok(Head { method, uri, headers: map })
    }
}

/// Whether any `name` header lists `token` (any case).
pub(crate) fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| value_has_token(v, token))
}

/// Whether a comma-separated header value lists `token` (any case).
pub(super) fn value_has_token(value: &HeaderValue, token: &str) -> bool {
    bytes_have_token(value.as_bytes(), token)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `head` (which must be complete).
    fn info_of(head: &str) -> Info {
        let mut slots = header_slots();
        match parse(head.as_bytes(), &mut slots) {
            Ok(Parsed::Complete(h)) => h.info,
            _ => panic!("not a complete head: {head:?}"),
        }
    }

    fn post(headers: &[(&str, &str)], version: u8) -> Info {
        let mut head = format!("POST / HTTP/1.{version}\r\n");
        for (k, v) in headers {
            head += &format!("{k}: {v}\r\n");
        }
        info_of(&(head + "\r\n"))
    }

    #[test]
    fn framing_rules() {
        let framing = |h: &[(&str, &str)]| post(h, 1).framing;
        assert_eq!(framing(&[]), Ok(Framing::Length(0)));
        assert_eq!(framing(&[("content-length", "12")]), Ok(Framing::Length(12)));
        assert_eq!(framing(&[("Content-Length", "12, 12")]), Ok(Framing::Length(12)));
        assert_eq!(framing(&[("content-length", "12"), ("content-length", "13")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(framing(&[("content-length", "+12")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(framing(&[("transfer-encoding", "Chunked")]), Ok(Framing::ChunkSize));
        assert_eq!(framing(&[("transfer-encoding", "chunked"), ("content-length", "3")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(framing(&[("transfer-encoding", "gzip, chunked")]), Err(StatusCode::NOT_IMPLEMENTED));
        assert_eq!(
            framing(&[("transfer-encoding", "gzip"), ("Transfer-Encoding", "chunked")]),
            Err(StatusCode::NOT_IMPLEMENTED)
        );
        assert_eq!(framing(&[("transfer-encoding", "gzip")]), Err(StatusCode::BAD_REQUEST));
        assert_eq!(post(&[("transfer-encoding", "chunked")], 0).framing, Err(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn keep_alive_host_and_continue() {
        assert!(post(&[("host", "x")], 1).keep_alive);
        assert!(!post(&[("connection", "Close")], 1).keep_alive);
        assert!(!post(&[("connection", "a, close ,b")], 1).keep_alive);
        assert!(!post(&[], 0).keep_alive);
        assert!(post(&[("Connection", "foo, keep-alive")], 0).keep_alive);
        assert!(post(&[("expect", "100-Continue")], 1).expects_continue);
        assert!(!post(&[("expect", "100-continue")], 0).expects_continue);
        assert!(!post(&[], 1).host_ok);
        assert!(post(&[("HOST", "x")], 1).host_ok);
        assert!(!post(&[("host", "x"), ("host", "y")], 1).host_ok);
        assert!(post(&[], 0).host_ok);
        assert!(info_of("HEAD / HTTP/1.1\r\n\r\n").is_head);
        assert!(!post(&[], 1).is_head);
    }

    #[test]
    fn lowercase_comparisons() {
        assert!(eq_lower(b"Transfer-Encoding", b"transfer-encoding"));
        assert!(eq_lower(b"CONTENT-LENGTH", b"content-length"));
        assert!(!eq_lower(b"Content-Lengths", b"content-length"));
        assert!(!eq_lower(b"Content_Length", b"content-length"));
        assert!(!eq_lower(b"Hosu", b"host"));
        assert!(eq_lower(b"", b""));
        assert_eq!(connection_tokens(b"Keep-Alive"), (false, true));
        assert_eq!(connection_tokens(b"CLOSE"), (true, false));
        assert_eq!(connection_tokens(b"upgrade, close"), (true, false));
        assert_eq!(connection_tokens(b"keep-alive, Upgrade"), (false, true));
        assert_eq!(connection_tokens(b"upgrade"), (false, false));
    }

    #[test]
    fn tokens_of_raw_values() {
        assert!(bytes_have_token(b"Keep-Alive", "keep-alive"));
        assert!(bytes_have_token(b"upgrade,\tclose", "close"));
        assert!(!bytes_have_token(b"closed", "close"));
        // Not text: lists nothing (as `HeaderValue::to_str` refuses it).
        assert!(!bytes_have_token(b"close, \xff", "close"));
    }

    #[test]
    fn http_head_shares_one_copy() {
        let mut slots = header_slots();
        let raw = b"\r\nGET /a?b HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nX-Empty:\r\n\r\nrest";
        let Ok(Parsed::Complete(h)) = parse(raw, &mut slots) else { panic!("incomplete") };
        assert_eq!(h.consumed, raw.len() - 4);
        let mut arena = HeadArena::new();
        let head = h.to_http(&mut arena).unwrap();
        assert_eq!(head.method, Method::GET);
        assert_eq!(head.uri, "/a?b");
        assert_eq!(head.headers["host"], "x");
        assert_eq!(head.headers["accept"], "*/*");
        assert_eq!(head.headers["x-empty"], "");
        // The next head goes into the same buffer, right after the first.
        let first = head.headers["accept"].as_bytes().as_ptr() as usize;
        drop(head);
        let again = h.to_http(&mut arena).unwrap();
        assert_eq!(again.headers["accept"].as_bytes().as_ptr() as usize, first + h.bytes.len());
    }
}
