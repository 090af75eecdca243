//! The connection state machine: read a head, hand the request to the
//! handler, write the response, drain what is left of the request body,
//! go on with the next request (pipelined ones wait in the read buffer) or
//! close. Keep-alive is the connection's state ([`KeepAlive`]), and
//! [`Connection::read_timeout`] decides how long each read may wait.

use std::cell::{Cell, RefCell};
use std::net::{Shutdown, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::Killed;
use http::{Method, Request, Response, StatusCode, Version};

use super::head::{parse_head, Head, HeadError};
use super::incoming::{BodyError, Drained, Exchange, Framing};
use super::reader::Reader;
use super::response::simple_response;
use super::{Config, RemoteAddr, State, MAX_HEAD};
use crate::body::Body;
use crate::date;
use crate::transport::Transport;
use crate::upgrade::Upgraded;

/// How long a closing connection waits for the client to close its side.
const LINGER: Duration = Duration::from_millis(500);

/// When a request began: read only by the access log, so taken only when
/// it is on (a clock read per request otherwise).
pub(super) type Started = Option<Instant>;

/// Whether a connection goes on after the request it serves; a graceful
/// shutdown reads it to close idle connections at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepAlive {
    /// Waiting for its next request.
    Idle,
    /// Serving a request; the connection goes on after it.
    Busy,
    /// Serving its last request: the response says `Connection: close`,
    /// then the connection closes.
    Disabled,
}

/// What a read of the connection is for, which says how long it may wait.
#[derive(Debug, Clone, Copy)]
enum Reading {
    /// The TLS handshake and the first request head of a new connection,
    /// or the rest of a head begun by then: until this deadline.
    HeadUntil(Instant),
    /// The first byte of the next request on a kept-alive connection.
    NextRequest,
    /// The request body, as the handler reads it.
    Body,
    /// What a client still sends while the connection closes.
    Linger,
    /// An upgraded connection (its handler may set another timeout).
    Upgraded,
}

pub(super) struct Connection<S> {
    pub(super) stream: Rc<S>,
    peer: SocketAddr,
    pub(super) config: Rc<Config>,
    state: Rc<State>,
    pub(super) ex: Rc<RefCell<Exchange<S>>>,
    id: u64,
    keep_alive: Rc<Cell<KeepAlive>>,
    /// The buffer response heads are assembled in, kept between responses.
    pub(super) out: Cell<Vec<u8>>,
    /// Responses not written yet: while the next request is already in
    /// the read buffer (pipelined), small responses gather here and go
    /// out in one write before the connection next waits to read.
    pub(super) pending: Cell<Vec<u8>>,
}

impl<S> Drop for Connection<S> {
    fn drop(&mut self) {
        self.state.conns.borrow_mut().remove(&self.id);
    }
}

impl<S: Transport> Connection<S> {
    pub(super) fn new(stream: S, peer: SocketAddr, config: Rc<Config>, state: Rc<State>) -> Connection<S> {
        let stream = Rc::new(stream);
        let id = state.next_id.get();
        state.next_id.set(id + 1);
        let ex = Rc::new(RefCell::new(Exchange::new(Reader::new(stream.clone()), config.max_body_size)));
        let keep_alive = Rc::new(Cell::new(KeepAlive::Busy));
        state.conns.borrow_mut().insert(id, (stream.clone() as Rc<dyn Transport>, keep_alive.clone()));
        Connection {
            stream,
            peer,
            config,
            state,
            ex,
            id,
            keep_alive,
            out: Cell::new(Vec::new()),
            pending: Cell::new(Vec::new()),
        }
    }

    /// Sets how long the next reads may wait, for `what`: the one place
    /// that decides a connection's read timeout.
    fn read_timeout(&self, what: Reading) -> Result<(), ()> {
        let t = match what {
            Reading::HeadUntil(deadline) => match deadline.checked_duration_since(Instant::now()) {
                Some(t) if !t.is_zero() => Some(t),
                _ => return Err(()),
            },
            Reading::NextRequest => Some(self.config.keepalive_timeout),
            Reading::Body => self.config.read_timeout,
            Reading::Linger => Some(LINGER),
            Reading::Upgraded => self.config.upgrade_timeout,
        };
        self.ex.borrow_mut().reader.set_timeout(t);
        Ok(())
    }

    /// Whether the connection goes on after the current request.
    pub(super) fn keeps_alive(&self) -> bool {
        self.keep_alive.get() != KeepAlive::Disabled
    }

    /// Makes the current request the connection's last.
    pub(super) fn disable_keep_alive(&self) {
        self.keep_alive.set(KeepAlive::Disabled);
    }

    /// Serves the connection's requests, then closes it. `handshake` runs
    /// first, under the header timeout (a TLS handshake).
    pub(super) fn run(
        &self,
        handshake: impl FnOnce(&S) -> std::io::Result<()>,
        handler: &dyn Fn(Request<Body>) -> Response<Body>,
    ) {
        let deadline = after(self.config.header_timeout);
        if self.read_timeout(Reading::HeadUntil(deadline)).is_err() {
            return;
        }
        if let Err(e) = handshake(&self.stream) {
            log::debug!("eventlet_http: TLS handshake with {} failed: {e}", self.peer);
            return;
        }
        self.serve_requests(deadline, handler);
        if self.flush_pending().is_ok() {
            self.linger();
        }
    }

    /// Closes gently: ends our side, then reads (and drops) what the client
    /// still sends for a moment, so that closing with unread bytes does not
    /// reset the connection before the client has read our last answer.
    fn linger(&self) {
        if self.stream.shutdown(Shutdown::Write).is_err() {
            return;
        }
        let _ = self.read_timeout(Reading::Linger);
        let mut scratch = [0; 8192];
        let mut total = 0;
        while let Ok(n @ 1..) = self.stream.read(&mut scratch) {
            total += n;
            if total > 256 * 1024 {
                break;
            }
        }
    }

    fn serve_requests(&self, first_deadline: Instant, handler: &dyn Fn(Request<Body>) -> Response<Body>) {
        let mut deadline = Some(first_deadline);
        loop {
            if self.state.shutting_down.get() && self.ex.borrow().reader.buffered().is_empty() {
                return;
            }
            let head = match self.read_head(deadline.take()) {
                Ok(h) => h,
                Err(HeadError::Closed) => return,
                Err(HeadError::Status(s)) => {
                    self.disable_keep_alive();
                    let _ = self.write_error(s, self.started(), None);
                    return;
                }
            };
            let started = self.started();
            if self.exchange(head, started, handler).is_err() || !self.keeps_alive() {
                return;
            }
        }
    }

    /// Reads the next request head. Its first byte may take the keep-alive
    /// timeout (`deadline`, the header timeout, on a fresh connection); the
    /// whole head then has the header timeout.
    fn read_head(&self, mut deadline: Option<Instant>) -> Result<Head, HeadError> {
        loop {
            let idle = {
                let mut ex = self.ex.borrow_mut();
                let r = &mut ex.reader;
                if !r.buffered().is_empty() {
                    if let Some(head) = parse_head(r)? {
                        return Ok(head);
                    }
                    // A head has begun: from here it has the header timeout
                    // (the clock is read only when a head needs a second read).
                    if deadline.is_none() {
                        deadline = Some(after(self.config.header_timeout));
                    }
                }
                r.buffered().is_empty()
            };
            let reading = deadline.map_or(Reading::NextRequest, Reading::HeadUntil);
            if self.read_timeout(reading).is_err() {
                return Err(self.timed_out());
            }
            if idle {
                if self.state.shutting_down.get() {
                    return Err(HeadError::Closed);
                }
                self.keep_alive.set(KeepAlive::Idle);
            }
            // Answers to pipelined requests go out before the wait.
            if self.flush_pending().is_err() {
                return Err(HeadError::Closed);
            }
            let n = self.ex.borrow_mut().reader.fill(MAX_HEAD + 1024);
            // However the wait ended, the connection is busy again (a
            // shutdown that closed it meanwhile ends the read).
            self.keep_alive.set(KeepAlive::Busy);
            match n {
                Ok(0) => return Err(HeadError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(self.timed_out()),
                Err(_) => return Err(HeadError::Closed),
            }
        }
    }

    /// A head that did not come in time: nothing of it came (close), or
    /// part of it did (`408`).
    fn timed_out(&self) -> HeadError {
        if self.ex.borrow().reader.buffered().is_empty() {
            HeadError::Closed
        } else {
            HeadError::Status(StatusCode::REQUEST_TIMEOUT)
        }
    }

    /// Handles one request; whether the connection goes on is then its
    /// [`KeepAlive`] state.
    fn exchange(
        &self,
        head: Head,
        started: Started,
        handler: &dyn Fn(Request<Body>) -> Response<Body>,
    ) -> std::io::Result<()> {
        let cfg = &self.config;
        self.keep_alive.set(if cfg.keepalive && head.wants_keep_alive() {
            KeepAlive::Busy
        } else {
            KeepAlive::Disabled
        });
        if !head.host_ok() {
            self.disable_keep_alive();
            return self.write_error(StatusCode::BAD_REQUEST, started, Some(&head));
        }
        let framing = match head.framing() {
            Ok(f) => f,
            Err(status) => {
                self.disable_keep_alive();
                return self.write_error(status, started, Some(&head));
            }
        };
        if let Framing::Length(n) = framing {
            if n > cfg.max_body_size {
                self.disable_keep_alive();
                return self.write_error(StatusCode::PAYLOAD_TOO_LARGE, started, Some(&head));
            }
        }
        let generation = self.ex.borrow_mut().begin(framing, head.expects_continue());
        if framing != Framing::Length(0) {
            // Only a body is read while the handler runs (most requests
            // have none, and their connection keeps its timeout). Reading
            // it may wait, or answer `100 Continue`: the answers gathered
            // so far go first.
            let _ = self.read_timeout(Reading::Body);
            self.flush_pending()?;
        }
        let is_head = head.method == Method::HEAD;
        // Only the access log needs the request line.
        let line = if cfg.log.is_some() { head.line() } else { String::new() };
        let mut req = Request::new(Body::incoming(self.ex.clone(), generation));
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = head.version;
        *req.headers_mut() = head.headers;
        if cfg.remote_addr {
            req.extensions_mut().insert(RemoteAddr(self.peer));
        }

        let mut resp = match panic::catch_unwind(AssertUnwindSafe(|| handler(req))) {
            Ok(r) => r,
            Err(p) if p.is::<Killed>() => panic::resume_unwind(p),
            Err(_) => simple_response(StatusCode::INTERNAL_SERVER_ERROR),
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(on_upgrade) = resp.body_mut().take_upgrade() {
                self.upgrade(resp, on_upgrade, &line, started);
                self.disable_keep_alive();
                return Ok(());
            }
        }
        // The request body: drain what the handler left (unless the
        // response streams it back), and turn body errors into statuses.
        let streams_body = resp.body().is_incoming();
        if !streams_body {
            self.finish_body();
        } else if let Ok(mut ex) = self.ex.try_borrow_mut() {
            // The response streams the request body back: a client waiting
            // for `100 Continue` gets it now, before the final head, not
            // in the middle of the response body once it is read.
            ex.send_continue()?;
        }
        let error = self.ex.try_borrow().map_or(Some(BodyError::Io), |ex| ex.error);
        match error {
            Some(BodyError::TooLarge) => resp = simple_response(StatusCode::PAYLOAD_TOO_LARGE),
            Some(BodyError::Malformed) => resp = simple_response(StatusCode::BAD_REQUEST),
            Some(BodyError::Io) => {
                self.disable_keep_alive();
                return Ok(());
            }
            None => {}
        }
        if error.is_some() || self.state.shutting_down.get() {
            self.disable_keep_alive();
        }
        let status = resp.status();
        let sent = self.write_response(resp, head.version, is_head);
        if streams_body {
            self.finish_body();
        }
        self.ex.borrow_mut().end();
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                self.log(&line, status, 0, started);
                return Err(e);
            }
        };
        self.log(&line, status, sent, started);
        if self.state.shutting_down.get() {
            self.disable_keep_alive();
        }
        Ok(())
    }

    /// Writes the `101` head of `resp` (its headers as the handler set
    /// them), then hands the connection to `on_upgrade`.
    fn upgrade(&self, resp: Response<Body>, on_upgrade: Box<dyn FnOnce(Upgraded)>, line: &str, started: Started) {
        self.finish_body();
        if !self.keeps_alive() {
            self.log(line, StatusCode::BAD_REQUEST, 0, started);
            return;
        }
        let written = self.flush_pending().and_then(|()| self.write_upgrade_head(&resp));
        self.log(line, StatusCode::SWITCHING_PROTOCOLS, 0, started);
        if written.is_err() {
            return;
        }
        let read_ahead = {
            let mut ex = self.ex.borrow_mut();
            ex.end();
            ex.reader.take_buffered()
        };
        let _ = self.read_timeout(Reading::Upgraded);
        let upgraded = Upgraded::new(self.stream.clone(), read_ahead);
        if let Err(p) = panic::catch_unwind(AssertUnwindSafe(|| on_upgrade(upgraded))) {
            if p.is::<Killed>() {
                panic::resume_unwind(p);
            }
            log::error!("eventlet_http: an upgraded connection's handler panicked");
        }
    }

    /// Reads and discards what is left of the request body; the connection
    /// closes after this request if that cannot be done.
    fn finish_body(&self) {
        let drained = self.ex.try_borrow_mut().map_or(Drained::Abandoned, |mut ex| ex.drain());
        if drained == Drained::Abandoned {
            self.disable_keep_alive();
        }
    }

    /// Answers with `status` (the connection's last answer).
    fn write_error(&self, status: StatusCode, started: Started, head: Option<&Head>) -> std::io::Result<()> {
        let version = head.map_or(Version::HTTP_11, |h| h.version);
        let r = self.write_response(simple_response(status), version, false);
        let line = match head {
            Some(h) if self.config.log.is_some() => h.line(),
            _ => "-".to_owned(),
        };
        self.log(&line, status, *r.as_ref().unwrap_or(&0), started);
        r.map(drop)
    }

    /// When a request began, if the access log will want to know.
    fn started(&self) -> Started {
        self.config.log.is_some().then(Instant::now)
    }

    fn log(&self, line: &str, status: StatusCode, sent: u64, started: Started) {
        if let Some(sink) = &self.config.log {
            sink(&format!(
                "{} - - [{}] \"{}\" {} {} {:.6}",
                self.peer.ip(),
                date::log_date(date::now_secs()),
                line,
                status.as_u16(),
                sent,
                started.map_or(0.0, |t| t.elapsed().as_secs_f64())
            ));
        }
    }
}

/// The instant `d` from now; a duration too long to represent (a header
/// timeout of `Duration::MAX`, meaning none) gives an instant a century off.
fn after(d: std::time::Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d).unwrap_or_else(|| now + std::time::Duration::from_secs(100 * 365 * 86_400))
}
