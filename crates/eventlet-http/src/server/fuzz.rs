//! A server connection over bytes held in memory, for the fuzz target
//! (`crates/eventlet-http/fuzz`) and the tests of the connection: the same
//! `Connection` as over a socket, over a [`Transport`] whose reads take
//! from a buffer and whose writes append to another.

use std::cell::RefCell;
use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};

use super::conn::{Connection, Handler};
use super::raw;
use super::response::simple_response;
use super::{Config, State};
use crate::body::Body;
use crate::transport::Transport;

/// Reads take from `input` (then end of stream), writes append to `output`
/// and are counted.
#[derive(Debug)]
struct Memory {
    input: RefCell<io::Cursor<Vec<u8>>>,
    output: RefCell<Vec<u8>>,
    writes: std::cell::Cell<usize>,
}

impl Transport for Memory {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.input.borrow_mut().read(buf)
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.output.borrow_mut().extend_from_slice(buf);
        self.writes.set(self.writes.get() + 1);
        Ok(())
    }

    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }

    fn shutdown(&self, _: Shutdown) -> io::Result<()> {
        Ok(())
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    fn has_input(&self) -> bool {
        let input = self.input.borrow();
        input.position() < input.get_ref().len() as u64
    }
}

/// The request body limit of [`parse_request_for_fuzzing`]: small, so that
/// short inputs reach the `413` paths.
const FUZZ_BODY_LIMIT: u64 = 1024;
/// The header in which [`parse_request_for_fuzzing`]'s handler names the
/// request's method (a checker needs it: the answer to `HEAD` has no body).
#[doc(hidden)]
pub const FUZZ_METHOD_HEADER: &str = "x-fuzz-method";

/// Runs a server connection over `bytes` held in memory, as if a client had
/// sent them and then closed its side, and returns what the server wrote
/// back. The real code runs: request heads are parsed and checked, bodies
/// decoded (`Content-Length` and chunked framing, trailers,
/// `Expect: 100-continue`), limits enforced (the body limit is 1 KiB
/// here), pipelined requests served in turn. The handler echoes the
/// request body, except for the path `/ignore` (the body is left for the
/// server to drain) and `/stream` (the request body is streamed back as
/// the response body); its answers name the request method in the header
/// [`FUZZ_METHOD_HEADER`].
///
/// For the fuzz target in this crate's `fuzz/` directory; not a stable API.
/// It never panics unless the server's code does: a panic while a handler
/// reads its body, which the server would turn into a `500`, is re-raised
/// here.
#[doc(hidden)]
pub fn parse_request_for_fuzzing(bytes: &[u8]) -> Vec<u8> {
    serve_from_memory(bytes, Kind::Http).0
}

/// [`parse_request_for_fuzzing`] with a raw handler (see
/// [`raw`](super::raw)) that answers as that one's does, but for `/stream`,
/// whose answer it cannot stream: it echoes the request body read whole.
///
/// For the fuzz target in this crate's `fuzz/` directory; not a stable API.
#[doc(hidden)]
pub fn parse_request_for_fuzzing_raw(bytes: &[u8]) -> Vec<u8> {
    serve_from_memory(bytes, Kind::Raw).0
}

/// Which handler [`serve_from_memory`] serves with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Raw,
}

/// [`parse_request_for_fuzzing`] (or its raw twin), and how many writes
/// the server made.
fn serve_from_memory(bytes: &[u8], kind: Kind) -> (Vec<u8>, usize) {
    let config = Rc::new(Config { max_body_size: FUZZ_BODY_LIMIT, ..Config::default() });
    let memory = Memory {
        input: RefCell::new(io::Cursor::new(bytes.to_vec())),
        output: RefCell::new(Vec::new()),
        writes: std::cell::Cell::new(0),
    };
    let conn = Connection::new(memory, SocketAddr::from(([127, 0, 0, 1], 0)), config, State::new());
    let caught = RefCell::new(None);
    // A panic while the body is read, which the server would answer `500`,
    // is kept to be raised again.
    let read_body = |body: Body| match panic::catch_unwind(AssertUnwindSafe(|| body.into_bytes())) {
        Ok(Ok(body)) => Some(body),
        Ok(Err(e)) => Some(e.to_string().into_bytes()),
        Err(p) => {
            *caught.borrow_mut() = Some(p);
            None
        }
    };
    let http = |req: Request<Body>| {
        let method = HeaderValue::from_str(req.method().as_str()).ok();
        let mut resp = match req.uri().path() {
            "/ignore" => Response::new(Body::from("ignored")),
            "/stream" => Response::new(req.into_body()),
            _ => match read_body(req.into_body()) {
                Some(body) => Response::new(Body::from(body)),
                None => simple_response(StatusCode::INTERNAL_SERVER_ERROR),
            },
        };
        if let Some(m) = method {
            resp.headers_mut().insert(HeaderName::from_static(FUZZ_METHOD_HEADER), m);
        }
        resp
    };
    let raw = |req: &mut raw::Request<'_>, res: &mut raw::Response<'_>| {
        res.header(FUZZ_METHOD_HEADER, req.method());
        let path = req.path().split('?').next().unwrap_or("");
        if path == "/ignore" {
            res.body_static(b"ignored");
        } else {
            match read_body(std::mem::take(req.body())) {
                Some(body) => res.body_mut().extend_from_slice(&body),
                None => {
                    res.status(StatusCode::INTERNAL_SERVER_ERROR);
                }
            }
        }
    };
    match kind {
        Kind::Http => conn.run(|_| Ok(()), Handler::Http(&http)),
        Kind::Raw => conn.run(|_| Ok(()), Handler::Raw(&raw)),
    }
    if let Some(p) = caught.into_inner() {
        panic::resume_unwind(p);
    }
    (conn.stream.output.take(), conn.stream.writes.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzing_entry_runs_the_real_connection() {
        let out = parse_request_for_fuzzing(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n\
              GET /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
              POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n",
        );
        let out = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 3, "{out}");
        assert!(answers[0].starts_with("200 OK\r\n") && answers[0].ends_with("\r\n\r\nhello"), "{out}");
        assert!(answers[1].starts_with("200 OK\r\n") && answers[1].ends_with("\r\n\r\nignored"), "{out}");
        assert!(answers[2].starts_with("413 Payload Too Large\r\n"), "{out}");
        assert!(parse_request_for_fuzzing(b"").is_empty());
        assert!(String::from_utf8(parse_request_for_fuzzing(b"GET / HTTP/2.0\r\n\r\n"))
            .unwrap()
            .starts_with("HTTP/1.1 505 "));
    }

    /// Found by the fuzz entry's seeds: a handler that streams the request
    /// body back (`Response::new(req.into_body())`) to a client that sent
    /// `Expect: 100-continue` got the `100 Continue` inside its response
    /// body (curl saw a corrupt echo), as the body was only read once the
    /// final head was out.
    #[test]
    fn continue_precedes_a_response_that_streams_the_request_body() {
        let out = parse_request_for_fuzzing(
            b"POST /stream HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello\
              POST /stream HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
        );
        let out = String::from_utf8(out).unwrap();
        let answers: Vec<&str> = out.split("HTTP/1.1 ").skip(1).collect();
        assert_eq!(answers.len(), 4, "{out:?}");
        assert_eq!(answers[0], "100 Continue\r\n\r\n", "{out:?}");
        assert!(answers[1].starts_with("200 OK\r\n") && answers[1].ends_with("\r\n\r\nhello"), "{out:?}");
        assert_eq!(answers[2], "100 Continue\r\n\r\n", "{out:?}");
        assert!(
            answers[3].starts_with("200 OK\r\n") && answers[3].ends_with("\r\n\r\n2\r\nhi\r\n0\r\n\r\n"),
            "{out:?}"
        );
    }

    /// Sixteen pipelined requests read at once are answered in one write;
    /// a request with a body among them has the answers before it written
    /// first (its body may take a wait, or a `100 Continue`), in order.
    #[test]
    fn pipelined_answers_go_out_together() {
        let (out, writes) = serve_from_memory(&b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16), Kind::Http);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\n").count(), 16, "{out}");
        assert_eq!(writes, 1, "{out}");

        let mut input = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3);
        input.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
        input.extend_from_slice(&b"GET /c HTTP/1.1\r\nHost: x\r\n\r\n".repeat(3));
        let (out, writes) = serve_from_memory(&input, Kind::Http);
        let out = String::from_utf8(out).unwrap();
        let statuses: Vec<&str> = out.split("HTTP/1.1 ").skip(1).map(|a| &a[..3]).collect();
        assert_eq!(statuses, ["200", "200", "200", "100", "200", "200", "200", "200"], "{out}");
        assert!(out.contains("\r\n\r\nhi"), "{out}");
        // The three before the body, the continue, the rest.
        assert_eq!(writes, 3, "{out}");
    }

    /// What a server wrote, with each `Date` line's value blanked (two
    /// runs may straddle a second).
    fn without_dates(out: &[u8]) -> String {
        let out = String::from_utf8_lossy(out);
        let mut lines: Vec<String> = Vec::new();
        for line in out.split("\r\n") {
            lines.push(if line.starts_with("Date: ") { "Date: -".into() } else { line.into() });
        }
        lines.join("\r\n")
    }

    /// The inputs of the tests above and the fuzz seeds.
    fn inputs() -> Vec<(String, Vec<u8>)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
        let mut all: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| {
                let path = e.unwrap().path();
                (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap())
            })
            .collect();
        let get = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut mixed = get.repeat(3);
        mixed.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi");
        mixed.extend_from_slice(&get.repeat(3));
        for (name, bytes) in [
            ("pipelined 16", get.repeat(16)),
            ("pipelined with a body among them", mixed),
            (
                "chunked, ignored, too large",
                b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n\
                  GET /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc\
                  POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 2000\r\n\r\n"
                    .to_vec(),
            ),
            (
                "HEAD, HTTP/1.0, close, no host, partial",
                b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\nGET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
                  GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /after-close HTTP/1.1\r\nHost: x\r\n\r\n"
                    .to_vec(),
            ),
            ("HTTP/1.0 closes", b"GET /a HTTP/1.0\r\n\r\nGET /b HTTP/1.0\r\n\r\n".to_vec()),
            (
                "a second host",
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n".to_vec(),
            ),
            ("a head cut short", b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHo".to_vec()),
            (
                "blank lines between",
                b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\r\n\r\nGET /b HTTP/1.1\r\nhost: x\r\n\r\n".to_vec(),
            ),
        ] {
            all.push((name.to_string(), bytes));
        }
        all
    }

    /// A raw handler's connection answers every input as a handler of
    /// `http` types does, byte for byte but the `Date`: the same parser,
    /// checks, framing, keep-alive and pipelining, whether its requests
    /// are served from the read buffer in a batch or one at a time (with
    /// a body). The handlers stream nothing (`/stream`, which only the
    /// `http` one streams, is compared by status).
    #[test]
    fn raw_handler_answers_as_the_http_one() {
        let mut compared = 0;
        for (name, input) in inputs() {
            let http = serve_from_memory(&input, Kind::Http);
            let raw = serve_from_memory(&input, Kind::Raw);
            if input.windows(7).any(|w| w == b"/stream") {
                let statuses = |out: &[u8]| -> Vec<String> {
                    String::from_utf8_lossy(out)
                        .split("HTTP/1.1 ")
                        .skip(1)
                        .map(|a| a.split(' ').next().unwrap_or("").to_string())
                        .collect()
                };
                assert_eq!(statuses(&raw.0), statuses(&http.0), "{name}");
                continue;
            }
            assert_eq!(without_dates(&raw.0), without_dates(&http.0), "{name}");
            assert_eq!(raw.1, http.1, "{name}: writes");
            compared += 1;
        }
        assert!(compared >= 20, "{compared}");
    }

    /// Sixteen pipelined requests to a raw handler: served from the read
    /// buffer, answered in one write.
    #[test]
    fn raw_pipelined_answers_go_out_together() {
        let (out, writes) = serve_from_memory(&b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".repeat(16), Kind::Raw);
        let out = String::from_utf8(out).unwrap();
        assert_eq!(out.matches("HTTP/1.1 200 OK\r\nx-fuzz-method: GET\r\nDate: ").count(), 16, "{out}");
        assert_eq!(out.matches("\r\nContent-Length: 0\r\n\r\n").count(), 16, "{out}");
        assert_eq!(writes, 1, "{out}");
    }

    /// The fuzz target's seed corpus, run by plain `cargo test`: every seed
    /// is answered as its name says.
    #[test]
    fn fuzz_seed_corpus_answers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request");
        let expected: &[(&str, &[&str])] = &[
            ("get-simple", &["200"]),
            ("get-http10-pipelined", &["200", "200"]),
            ("post-content-length", &["200"]),
            ("post-chunked-trailers", &["200"]),
            ("stream-expect-pipelined", &["100", "200", "200", "200"]),
            ("chunk-too-large", &["413"]),
            ("chunk-longer-than-size", &["400"]),
            ("length-and-chunked", &["400"]),
            ("unsupported-coding", &["501"]),
            ("conflicting-lengths", &["400"]),
            ("bad-version", &["505"]),
            ("bad-header-line", &["400"]),
            ("leading-blank-lines", &["200"]),
            ("uri-too-long", &["414"]),
            // RFC 9112 §3.2: an HTTP/1.1 request names its host.
            ("no-host-http11", &["400"]),
            // The client closed inside the body: nothing to answer.
            ("body-truncated", &[]),
        ];
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let out = String::from_utf8_lossy(&parse_request_for_fuzzing(&std::fs::read(&path).unwrap())).into_owned();
            let statuses: Vec<&str> =
                out.split("HTTP/1.1 ").skip(1).map(|a| a.split(' ').next().unwrap_or("")).collect();
            let (_, want) = expected
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("seed {name} has no expectation here"));
            assert_eq!(&statuses, want, "seed {name}: {out:?}");
            seen += 1;
        }
        assert_eq!(seen, expected.len(), "seeds missing from {}", dir.display());
    }
}
