//! Request parsing of the server: heads (request line, header fields,
//! limits), body framing (`Content-Length`, chunked with extensions and
//! trailers, `Expect: 100-continue`) and pipelining, all through
//! [`eventlet_http::parse_request_for_fuzzing`], which runs a real server
//! connection over the input held in memory; and the same through
//! [`eventlet_http::parse_request_for_fuzzing_raw`], whose handler is a raw
//! one (`Server::serve_raw`: requests without a body served straight from
//! the read buffer).
//!
//! It must never panic, and what it writes back must be a well-formed
//! sequence of HTTP/1.1 responses: interim `100 Continue`s only between
//! answers, every body framed as its head says. Only the last answer may
//! be cut short (the server gave up on the connection).
#![no_main]

use eventlet_http::{parse_request_for_fuzzing, parse_request_for_fuzzing_raw, FUZZ_METHOD_HEADER};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = parse_request_for_fuzzing(data);
    check_responses(&out);
    let out = parse_request_for_fuzzing_raw(data);
    check_responses(&out);
});

/// Walks the server's answers in `out`; panics at the first malformed one.
fn check_responses(out: &[u8]) {
    let fail = |at: &[u8], what: &str| -> ! {
        panic!("{what} at byte {} of the server's output: {:?}", out.len() - at.len(), String::from_utf8_lossy(out))
    };
    let mut rest = out;
    while !rest.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(rest) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => fail(rest, "a response head cut short"),
            Err(e) => fail(rest, &format!("a malformed response head ({e})")),
        };
        if resp.version != Some(1) {
            fail(rest, "not an HTTP/1.1 response");
        }
        let code = resp.code.unwrap_or(0);
        if !(100..600).contains(&code) {
            fail(rest, &format!("status {code}"));
        }
        let header = |name: &str| {
            resp.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .map(|h| String::from_utf8_lossy(h.value).into_owned())
        };
        let method = header(FUZZ_METHOD_HEADER);
        let len = header("content-length");
        let chunked = header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let at = rest;
        rest = &rest[n..];
        if code < 200 || code == 204 || code == 304 || method.as_deref() == Some("HEAD") {
            continue; // no body
        }
        if let Some(len) = len {
            if chunked {
                fail(at, "both Content-Length and chunked");
            }
            let len: usize = len.parse().unwrap_or_else(|_| fail(at, "a bad Content-Length"));
            if rest.len() < len {
                // Cut short, so the last answer; or the server's own answer
                // to a HEAD (it carries no method header), with no body.
                return;
            }
            rest = &rest[len..];
        } else if chunked {
            match skip_chunked(rest) {
                Ok(Some(after)) => rest = after,
                Ok(None) => return, // cut short: the last answer
                Err(at) => fail(at, "a malformed chunk"),
            }
        } else {
            return; // delimited by the close: the rest is the body
        }
    }
}

/// Skips a chunked body (as the server writes it: hex sizes, no extensions,
/// no trailers); `Ok(None)` if the output ends inside it, `Err` with where
/// it goes wrong.
fn skip_chunked(mut rest: &[u8]) -> Result<Option<&[u8]>, &[u8]> {
    loop {
        let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
            return if rest.len() > 16 { Err(rest) } else { Ok(None) };
        };
        let digits = &rest[..eol];
        let size = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|d| usize::from_str_radix(d, 16).ok())
            .ok_or(rest)?;
        let data = &rest[eol + 2..];
        if data.len() < size + 2 {
            return if data.len() < size || data[size..].iter().zip(b"\r\n").all(|(a, b)| a == b) {
                Ok(None)
            } else {
                Err(&data[size..])
            };
        }
        if &data[size..size + 2] != b"\r\n" {
            return Err(&data[size..]);
        }
        rest = &data[size + 2..];
        if size == 0 {
            return Ok(Some(rest));
        }
    }
}
