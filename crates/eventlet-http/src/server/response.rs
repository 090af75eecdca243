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
use crate::body::Body;
use crate::date;
use crate::transport::Transport;

/// Response bodies in memory up to this size go out in one write with the head.
const COALESCE: usize = 32 * 1024;
/// Most bytes of answers to pipelined requests gathered before a write.
const GATHER: usize = 64 * 1024;
/// The largest response buffer a connection keeps for its next response.
const KEEP_OUT: usize = 1024;

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

impl<S: Transport> Connection<S> {
    /// Writes `resp`; returns the body bytes sent. The response says
    /// `Connection: close` when the connection's keep-alive is off (or the
    /// response itself turns it off).
    pub(super) fn write_response(&self, resp: Response<Body>, version: Version, is_head: bool) -> io::Result<u64> {
        // The head is assembled in a buffer kept between responses (when
        // small: an idle connection should not hold much).
        if let Ok(mut ex) = self.ex.try_borrow_mut() {
            // `100 Continue` may only come before the final head: a body
            // read from here on (by a response body that reads the
            // request's) waits for the client to send it unasked.
            ex.continue_pending = false;
        }
        let mut out = self.out.take();
        out.clear();
        let sent = self.write_response_with(&mut out, resp, version, is_head);
        if out.capacity() <= KEEP_OUT {
            self.out.set(out);
        }
        sent
    }

    /// [`write_response`](Self::write_response) with `out` to assemble in.
    fn write_response_with(
        &self,
        out: &mut Vec<u8>,
        resp: Response<Body>,
        version: Version,
        is_head: bool,
    ) -> io::Result<u64> {
        let (parts, mut body) = resp.into_parts();
        let status = parts.status;
        let no_body =
            status.is_informational() || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED;

        // The head is assembled by hand: `write!` cost more than the rest
        // of a small response's user-space work. One pass over the
        // handler's headers writes them and picks out those the server
        // acts on.
        out.reserve(256);
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(status.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(status.canonical_reason().unwrap_or("Unknown").as_bytes());
        out.extend_from_slice(b"\r\n");
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
        let len = body.len().or(handler_len);
        let chunked = !no_body && len.is_none() && version == Version::HTTP_11;
        if !no_body && len.is_none() && !chunked && !is_head {
            self.disable_keep_alive(); // HTTP/1.0 and no length: the close ends the body
        }
        if !has_date {
            out.extend_from_slice(b"Date: ");
            date::push_http_date_now(out);
            out.extend_from_slice(b"\r\n");
        }
        let content_length = |out: &mut Vec<u8>, n: u64| {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        };
        if no_body {
            // A 304 may repeat the length of what a GET would send.
            if let (StatusCode::NOT_MODIFIED, Some(n)) = (status, handler_len) {
                content_length(out, n);
            }
        } else if let Some(n) = len {
            content_length(out, n);
        } else if chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        if !self.keeps_alive() {
            out.extend_from_slice(b"Connection: close\r\n");
        } else if version == Version::HTTP_10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n");
        }
        out.extend_from_slice(b"\r\n");

        let w = &*self.stream;
        if is_head || no_body {
            self.send(out)?;
            return Ok(0);
        }
        if let Some(bytes) = body.remaining_bytes().filter(|b| b.len() <= COALESCE) {
            out.extend_from_slice(bytes);
            self.send(out)?;
            return Ok(bytes.len() as u64);
        }
        self.flush_pending()?;
        // A streamed body: each read goes out as soon as it is read, the
        // first one in the same write as the head (a small file: one
        // write). A body that fails midway has sent what it read.
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
                    }
                    return Err(e);
                }
            };
            if k == 0 {
                break;
            }
            if head_sent {
                out.clear();
            }
            if chunked {
                write!(out, "{k:x}\r\n")?;
                out.extend_from_slice(&buf[..k]);
                out.extend_from_slice(b"\r\n");
            } else {
                out.extend_from_slice(&buf[..k]);
            }
            w.write_all(out)?;
            head_sent = true;
            sent += k as u64;
        }
        if chunked {
            if head_sent {
                out.clear();
            }
            out.extend_from_slice(b"0\r\n\r\n");
            w.write_all(out)?;
        } else {
            if !head_sent {
                w.write_all(out)?;
            }
            if len.is_some_and(|n| n != sent) {
                self.disable_keep_alive();
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "response body shorter than its length"));
            }
        }
        Ok(sent)
    }

    /// Sends a whole response: gathered behind the ones pending while the
    /// next request is already in the read buffer (a pipelining client, who
    /// gets them all in one write), else written now, with any pending.
    fn send(&self, out: &[u8]) -> io::Result<()> {
        let mut pending = self.pending.take();
        let more = self.ex.try_borrow().is_ok_and(|ex| !ex.reader.buffered().is_empty());
        let r = if more && pending.len() + out.len() <= GATHER {
            pending.extend_from_slice(out);
            Ok(())
        } else if pending.is_empty() {
            self.stream.write_all(out)
        } else {
            pending.extend_from_slice(out);
            let r = self.stream.write_all(&pending);
            pending.clear();
            r
        };
        // An idle connection should not hold much.
        if more || pending.capacity() <= KEEP_OUT {
            self.pending.set(pending);
        }
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
        if pending.capacity() <= KEEP_OUT {
            self.pending.set(pending);
        }
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
            out.extend_from_slice(b"Date: ");
            date::push_http_date_now(&mut out);
            out.extend_from_slice(b"\r\n");
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
