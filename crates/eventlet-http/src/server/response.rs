//! Responses: the head assembled by hand in a buffer the connection keeps,
//! bodies framed by `Content-Length`, chunked, or (to an HTTP/1.0 client
//! without a length) by closing; small in-memory bodies go out in one
//! write with the head, and the answers to pipelined requests (the next
//! request already read) in one write together, before the connection
//! next waits to read (or a request body is read, or a large or streamed
//! body goes out). A pipelining client thus gets its answers in batches,
//! as from hyper's `pipeline_flush` and may_minihttp: an answer waits for
//! the handlers of the requests pipelined behind it.

use std::io::{self, Read, Write};

use http::header::{self, HeaderValue};
use http::{Response, StatusCode, Version};

use super::conn::Connection;
use super::head::value_has_token;
use super::raw;
use crate::body::Body;
use crate::date;
use crate::transport::Transport;

/// Response bodies in memory up to this size go out in one write with the head.
const COALESCE: usize = 32 * 1024;
/// Most bytes of answers to pipelined requests gathered before a write.
const GATHER: usize = 64 * 1024;
/// The largest output buffer a connection keeps between writes: room for
/// the answers to sixteen pipelined small requests.
const KEEP_OUT: usize = 4096;

/// A plain-text response `STATUS REASON`.
pub(super) fn simple_response(status: StatusCode) -> Response<Body> {
    let text = format!("{} {}\n", status.as_u16(), status.canonical_reason().unwrap_or(""));
    let mut r = Response::new(Body::from(text));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    r
}

/// Appends `n` in decimal.
#[inline(always)]
fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    if n < 10 {
        out.push(b'0' + n as u8);
        return;
    }
    if n < 100 {
        out.extend_from_slice(&[b'0' + (n / 10) as u8, b'0' + (n % 10) as u8]);
        return;
    }
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the status line.
#[inline]
fn push_status_line(out: &mut Vec<u8>, status: StatusCode) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends a `Content-Length` line.
#[inline]
fn push_content_length(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(b"Content-Length: ");
    push_decimal(out, n);
    out.extend_from_slice(b"\r\n");
}

/// Whether a response with `status` has no body.
fn bodiless(status: StatusCode) -> bool {
    status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED
}

impl<S: Transport> Connection<S> {
    /// Appends the `Connection` line the response needs (none for a
    /// kept-alive HTTP/1.1 connection) and the blank line that ends the head.
    #[inline]
    fn end_head(&self, out: &mut Vec<u8>, version: Version) {
        if !self.keeps_alive() {
            out.extend_from_slice(b"Connection: close\r\n\r\n");
        } else if version == Version::HTTP_10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Writes `resp`; returns the body bytes sent. The response says
    /// `Connection: close` when the connection's keep-alive is off (or the
    /// response itself turns it off).
    pub(super) fn write_response(&self, resp: Response<Body>, version: Version, is_head: bool) -> io::Result<u64> {
        if let Ok(mut ex) = self.ex.try_borrow_mut() {
            // `100 Continue` may only come before the final head: a body
            // read from here on (by a response body that reads the
            // request's) waits for the client to send it unasked.
            ex.continue_pending = false;
        }
        // The response is assembled behind the answers gathered so far.
        let mut out = self.pending.take();
        let sent = self.write_response_with(&mut out, resp, version, is_head);
        if sent.is_err() {
            // The connection is done for: nothing more goes out on it.
            out.clear();
        }
        self.keep_out(out);
        sent
    }

    /// Keeps `out` (what is in it waits for the next write) unless it is
    /// empty and large: an idle connection should not hold much.
    pub(super) fn keep_out(&self, out: Vec<u8>) {
        if !out.is_empty() || out.capacity() <= KEEP_OUT {
            self.pending.set(out);
        }
    }

    /// [`write_response`](Self::write_response), assembling in `out`
    /// (which may hold answers not written yet).
    fn write_response_with(
        &self,
        out: &mut Vec<u8>,
        resp: Response<Body>,
        version: Version,
        is_head: bool,
    ) -> io::Result<u64> {
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let no_body = bodiless(status);

        // The head is assembled by hand: `write!` cost more than the rest
        // of a small response's user-space work. One pass over the
        // handler's headers writes them and picks out those the server
        // acts on.
        out.reserve(256);
        push_status_line(out, status);
        let mut has_date = false;
        let (mut handler_len, mut seen_length) = (None, false);
        for (name, value) in &parts.headers {
            if name == header::CONNECTION {
                // The handler's `Connection: close` closes the connection
                // after this response; the server writes its own header.
                if value_has_token(value, "close") {
                    self.disable_keep_alive();
                }
                continue;
            }
            if name == header::CONTENT_LENGTH {
                // The first one counts, as `HeaderMap::get` would pick it.
                if !seen_length {
                    seen_length = true;
                    handler_len = value.to_str().ok().and_then(|v| v.trim().parse::<u64>().ok());
                }
                continue;
            }
            if name == header::TRANSFER_ENCODING {
                continue;
            }
            has_date |= name == header::DATE;
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        // The map serves the connection's next request.
        self.arena.borrow_mut().recycle(parts.headers);
        let len = body.len().or(handler_len);
        let chunked = !no_body && len.is_none() && version == Version::HTTP_11;
        if !no_body && len.is_none() && !chunked && !is_head {
            self.disable_keep_alive(); // HTTP/1.0 and no length: the close ends the body
        }
        if !has_date {
            date::push_date_header(out);
        }
        if no_body {
            // A 304 may repeat the length of what a GET would send.
            if let (StatusCode::NOT_MODIFIED, Some(n)) = (status, handler_len) {
                push_content_length(out, n);
            }
        } else if let Some(n) = len {
            push_content_length(out, n);
        } else if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        self.end_head(out, version);

        if is_head || no_body {
            self.send(out, self.more_buffered())?;
            return Ok(0);
        }
        if let Some(bytes) = body.remaining_bytes().filter(|b| b.len() <= COALESCE) {
            out.extend_from_slice(bytes);
            self.send(out, self.more_buffered())?;
            return Ok(bytes.len() as u64);
        }
        // A streamed body: each read goes out as soon as it is read, the
        // first one in the same write as the head (and the answers
        // gathered before it; a small file: one write). A body that fails
        // midway has sent what it read.
        let w = &*self.stream;
        let mut buf = vec![0; 16 * 1024];
        let mut sent = 0u64;
        let mut head_sent = false;
        loop {
            let want = match len {
                Some(n) => buf.len().min(usize::try_from(n - sent).unwrap_or(usize::MAX)),
                None => buf.len(),
            };
            if want == 0 {
                break;
            }
            let k = match body.read(&mut buf[..want]) {
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.disable_keep_alive();
                    if !head_sent {
                        w.write_all(out)?;
                        out.clear();
                    }
                    return Err(e);
                }
            };
            if k == 0 {
                break;
            }
            if chunked {
                write!(out, "{k:x}\r\n")?;
                out.extend_from_slice(&buf[..k]);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(&buf[..k]);
            }
            w.write_all(out)?;
            out.clear();
            head_sent = true;
            sent += k as u64;
        }
        if chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
        if chunked || !head_sent {
            w.write_all(out)?;
            out.clear();
        }
        if !chunked && len.is_some_and(|n| n != sent) {
            self.disable_keep_alive();
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response body shorter than its length"));
        }
        Ok(sent)
    }

    /// Writes a raw handler's response (see [`raw`](super::raw)): its
    /// buffers and what `meta` says; returns the body bytes sent.
    pub(super) fn write_raw(
        &self,
        bufs: &raw::ResponseBufs,
        meta: &raw::Meta,
        version: Version,
        is_head: bool,
    ) -> io::Result<u64> {
        let mut out = self.pending.take();
        let more = self.more_buffered();
        let sent = self.put_raw(&mut out, bufs, meta, version, is_head, more, &date::date_line());
        if sent.is_err() {
            // The connection is done for: nothing more goes out on it.
            out.clear();
        }
        self.keep_out(out);
        sent
    }

    /// Appends a raw handler's response to `out` and sends it as
    /// [`send`](Self::send) does (`more`: the next request is buffered
    /// already; `date`: the `Date` line); returns the body bytes sent.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn put_raw(
        &self,
        out: &mut Vec<u8>,
        bufs: &raw::ResponseBufs,
        meta: &raw::Meta,
        version: Version,
        is_head: bool,
        more: bool,
        date: &[u8; date::LINE],
    ) -> io::Result<u64> {
        let status = meta.status;
        let no_body = bodiless(status);
        let body = bufs.body(meta);
        let head_lines = bufs.head_lines();
        out.reserve(128 + head_lines.len() + body.len().min(COALESCE));
        push_status_line(out, status);
        out.extend_from_slice(head_lines);
        if !meta.has_date {
            out.extend_from_slice(date);
        }
        if !no_body {
            push_content_length(out, body.len() as u64);
        }
        self.end_head(out, version);
        if is_head || no_body {
            self.send(out, more)?;
            return Ok(0);
        }
        if body.len() <= COALESCE {
            out.extend_from_slice(body);
            self.send(out, more)?;
        } else {
            // A large body goes out from where it is, after the head.
            self.stream.write_all(out)?;
            out.clear();
            self.stream.write_all(body)?;
        }
        Ok(body.len() as u64)
    }

    /// Whether the next request is in the read buffer already.
    fn more_buffered(&self) -> bool {
        self.ex.try_borrow().is_ok_and(|ex| !ex.reader.buffered().is_empty())
    }

    /// Sends the whole responses in `out`: gathered (left in `out`) while
    /// the next request is already in the read buffer (`more`: a
    /// pipelining client, who gets them all in one write), else written now.
    fn send(&self, out: &mut Vec<u8>, more: bool) -> io::Result<()> {
        if more && out.len() <= GATHER {
            return Ok(());
        }
        let r = self.stream.write_all(out);
        out.clear();
        r
    }

    /// Writes the gathered answers to pipelined requests, if any.
    pub(super) fn flush_pending(&self) -> io::Result<()> {
        let mut pending = self.pending.take();
        if pending.is_empty() {
            self.pending.set(pending);
            return Ok(());
        }
        let r = self.stream.write_all(&pending);
        pending.clear();
        self.keep_out(pending);
        r
    }

    /// Writes the head of a `101 Switching Protocols` response with the
    /// handler's headers.
    pub(super) fn write_upgrade_head(&self, resp: &Response<Body>) -> io::Result<()> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
        for (name, value) in resp.headers() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        if !resp.headers().contains_key(header::DATE) {
            date::push_date_header(&mut out);
        }
        out.extend_from_slice(b"\r\n");
        self.stream.write_all(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals() {
        for n in [0, 7, 10, 99, 1_234_567_890, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
        }
    }
}
