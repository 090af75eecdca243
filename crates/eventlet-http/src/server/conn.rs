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
use http::{Request, Response, StatusCode, Version};

use super::head::{header_slots, parse, Head, HeadArena, Info, Parsed};
use super::incoming::{BodyError, Drained, Exchange, Framing};
use super::raw::{self, HeadCopy, ResponseBufs};
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
/// shutdown reads it to close idle connections at once, and a full server
/// to close the oldest idle ones (see [`make_room`](super::make_room)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeepAlive {
    /// Waiting for the first byte of its next request (or of its first),
    /// every answer before it written, nothing of it read.
    Idle,
    /// Closed while idle to make room for a new client: its wait for a
    /// request ends and it closes, whatever that wait read.
    Evicted,
    /// Serving a request; the connection goes on after it.
    Busy,
    /// Serving its last request: the response says `Connection: close`,
    /// then the connection closes.
    Disabled,
}

/// What the server watches of a connection, in [`State::conns`].
pub(super) struct Watch {
    pub(super) keep_alive: Cell<KeepAlive>,
    /// When it last became [`KeepAlive::Idle`], in [`State::idle_clock`]
    /// ticks: the oldest idle connection has the smallest.
    pub(super) idle_since: Cell<u64>,
}

/// A raw handler (see [`raw`]).
pub(super) type RawHandler<'h> = dyn Fn(&mut raw::Request<'_>, &mut raw::Response<'_>) + 'h;

/// The handler a connection serves its requests with.
#[derive(Clone, Copy)]
pub(super) enum Handler<'h> {
    /// From [`http::Request`] to [`http::Response`].
    Http(&'h dyn Fn(Request<Body>) -> Response<Body>),
    /// Over the head as parsed, answering into the connection's buffers
    /// (see [`raw`]).
    Raw(&'h RawHandler<'h>),
}

/// A request whose head is out of the read buffer, ready for its handler.
struct Incoming<'h> {
    info: Info,
    /// The request line, for the access log (empty when it is off).
    line: String,
    kind: Prepared<'h>,
}

/// The head in the form its handler takes.
// (A value on the stack between reading a head and answering it: boxing
// the large variant would cost an allocation per request.)
#[allow(clippy::large_enum_variant)]
enum Prepared<'h> {
    Http(Head, &'h dyn Fn(Request<Body>) -> Response<Body>),
    /// In the connection's [`Connection::raw_head`].
    Raw(&'h RawHandler<'h>),
    /// Requests a raw handler answered straight from the read buffer (see
    /// [`Connection::serve_batch`]); `Incoming::info` is the last one's.
    Batch(BatchEnd),
}

/// How [`Connection::serve_batch`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchEnd {
    /// No more requests it can answer are buffered: the general path goes on.
    Drained,
    /// The last request was the connection's last (keep-alive off).
    Close,
    /// Its answer could not be written: the connection is done for.
    Failed,
    /// The handler panicked on the last request: it gets a `500`.
    Panicked,
}

/// Runs a raw handler on `req`, answering into `bufs`: what the answer
/// holds beside them, or `None` if the handler panicked.
fn run_raw(handler: &RawHandler<'_>, req: &mut raw::Request<'_>, bufs: &mut ResponseBufs) -> Option<raw::Meta> {
    let mut res = bufs.response();
    match panic::catch_unwind(AssertUnwindSafe(|| handler(req, &mut res))) {
        Ok(()) => Some(res.meta()),
        Err(p) if p.is::<Killed>() => panic::resume_unwind(p),
        Err(_) => None,
    }
}

/// Why no request came.
pub(super) enum HeadError {
    /// The client closed or went idle between requests: just close.
    Closed,
    /// Answer with this status, then close.
    Status(StatusCode),
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
    watch: Rc<Watch>,
    /// Where responses are assembled, and gathered while the next request
    /// is already in the read buffer (pipelined): small responses go out
    /// in one write before the connection next waits to read.
    pub(super) pending: Cell<Vec<u8>>,
    /// Copies of request heads for handlers of `http` types.
    pub(super) arena: RefCell<HeadArena>,
    /// The copy of the request head a raw handler borrows.
    raw_head: RefCell<HeadCopy>,
    /// The buffers a raw handler answers into.
    raw_bufs: RefCell<ResponseBufs>,
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
        let watch = Rc::new(Watch { keep_alive: Cell::new(KeepAlive::Busy), idle_since: Cell::new(0) });
        state.conns.borrow_mut().insert(id, (stream.clone() as Rc<dyn Transport>, watch.clone()));
        Connection {
            stream,
            peer,
            config,
            state,
            ex,
            id,
            watch,
            pending: Cell::new(Vec::new()),
            arena: RefCell::new(HeadArena::new()),
            raw_head: RefCell::new(HeadCopy::default()),
            raw_bufs: RefCell::new(ResponseBufs::default()),
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
        self.watch.keep_alive.get() != KeepAlive::Disabled
    }

    /// Makes the current request the connection's last.
    pub(super) fn disable_keep_alive(&self) {
        self.watch.keep_alive.set(KeepAlive::Disabled);
    }

    /// Serves the connection's requests, then closes it. `handshake` runs
    /// first, under the header timeout (a TLS handshake).
    pub(super) fn run(&self, handshake: impl FnOnce(&S) -> std::io::Result<()>, handler: Handler<'_>) {
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

    fn serve_requests(&self, first_deadline: Instant, handler: Handler<'_>) {
        let mut deadline = Some(first_deadline);
        loop {
            if self.state.shutting_down.get() && self.ex.borrow().reader.buffered().is_empty() {
                return;
            }
            let req = match self.read_head(deadline.take(), handler) {
                Ok(r) => r,
                Err(HeadError::Closed) => return,
                Err(HeadError::Status(s)) => {
                    self.disable_keep_alive();
                    let _ = self.write_error(s, self.started(), None);
                    return;
                }
            };
            let started = self.started();
            if self.exchange(req, started).is_err() || !self.keeps_alive() {
                return;
            }
        }
    }

    /// Reads the next request head, and takes it out of the read buffer in
    /// the form `handler` wants. Its first byte may take the keep-alive
    /// timeout (`deadline`, the header timeout, on a fresh connection); the
    /// whole head then has the header timeout.
    fn read_head<'h>(&self, mut deadline: Option<Instant>, handler: Handler<'h>) -> Result<Incoming<'h>, HeadError> {
        loop {
            let idle = {
                let mut guard = self.ex.borrow_mut();
                let ex = &mut *guard;
                if !ex.reader.buffered().is_empty() {
                    if let Handler::Raw(h) = handler {
                        if let Some((info, end)) = self.serve_batch(ex, h) {
                            return Ok(Incoming { info, line: String::new(), kind: Prepared::Batch(end) });
                        }
                    }
                    let mut slots = header_slots();
                    let consumed = match parse(ex.reader.buffered(), &mut slots).map_err(HeadError::Status)? {
                        Parsed::Complete(head) => {
                            let line = if self.config.log.is_some() { head.line() } else { String::new() };
                            let kind = match handler {
                                Handler::Http(h) => {
                                    let http = head.to_http(&mut self.arena.borrow_mut());
                                    Prepared::Http(http.map_err(HeadError::Status)?, h)
                                }
                                Handler::Raw(h) => {
                                    self.raw_head.borrow_mut().fill(&head);
                                    Prepared::Raw(h)
                                }
                            };
                            let (info, consumed) = (head.info, head.consumed);
                            ex.reader.consume(consumed);
                            return Ok(Incoming { info, line, kind });
                        }
                        Parsed::Partial { lead } => lead,
                    };
                    ex.reader.consume(consumed);
                    // A head has begun: from here it has the header timeout
                    // (the clock is read only when a head needs a second read).
                    if deadline.is_none() {
                        deadline = Some(after(self.config.header_timeout));
                    }
                }
                ex.reader.buffered().is_empty()
            };
            let reading = deadline.map_or(Reading::NextRequest, Reading::HeadUntil);
            if self.read_timeout(reading).is_err() {
                return Err(self.timed_out());
            }
            if idle {
                if self.state.shutting_down.get() {
                    return Err(HeadError::Closed);
                }
                self.trim();
            }
            // Answers to pipelined requests go out before the wait.
            if self.flush_pending().is_err() {
                return Err(HeadError::Closed);
            }
            if idle {
                // (The flush may have waited: a shutdown may have begun.)
                if self.state.shutting_down.get() {
                    return Err(HeadError::Closed);
                }
                self.become_idle();
            }
            let n = self.ex.borrow_mut().reader.fill(MAX_HEAD + 1024);
            // However the wait ended, the connection is busy again (a
            // shutdown that closed it meanwhile ends the read). Closed to
            // make room, it ends here, even if the read found a request
            // that came too late (the race of keep-alive: the client sees
            // the close and may retry; the request was not served).
            if self.watch.keep_alive.replace(KeepAlive::Busy) == KeepAlive::Evicted {
                return Err(HeadError::Closed);
            }
            match n {
                Ok(0) => return Err(HeadError::Closed),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err(self.timed_out()),
                Err(_) => return Err(HeadError::Closed),
            }
        }
    }

    /// Serves a raw handler's requests straight from the read buffer, one
    /// after the other, while they are the plain kind (a pipelining
    /// client's): complete, without a body, with their `Host`, the access
    /// log off, no shutdown under way. The handler borrows each head where
    /// it was parsed (nothing else reads the connection meanwhile) and the
    /// answers gather in the output buffer, as on the general path, which
    /// takes every other request. Returns the last request's head and how
    /// the batch ended, or `None` if it served none.
    fn serve_batch(&self, ex: &mut Exchange<S>, handler: &RawHandler<'_>) -> Option<(Info, BatchEnd)> {
        // Between requests the body's state is that of an empty one.
        if self.config.log.is_some()
            || ex.error.is_some()
            || ex.continue_pending
            || !matches!(ex.framing, Framing::Done | Framing::Length(0))
        {
            return None;
        }
        let mut out = self.pending.take();
        let mut bufs = self.raw_bufs.borrow_mut();
        let mut dates = date::Dates::new();
        let mut served = None;
        while !self.state.shutting_down.get() && !ex.reader.buffered().is_empty() {
            let mut slots = header_slots();
            let Ok(Parsed::Complete(head)) = parse(ex.reader.buffered(), &mut slots) else { break };
            let info = head.info;
            if !info.host_ok || info.framing != Ok(Framing::Length(0)) {
                break;
            }
            let keep = self.config.keepalive && info.keep_alive;
            self.watch.keep_alive.set(if keep { KeepAlive::Busy } else { KeepAlive::Disabled });
            let mut req = raw::Request::parsed(&head, self.peer);
            let answer = run_raw(handler, &mut req, &mut bufs);
            let consumed = head.consumed;
            ex.reader.consume(consumed);
            ex.end();
            let Some(meta) = answer else {
                served = Some((info, BatchEnd::Panicked));
                break;
            };
            if meta.close || self.state.shutting_down.get() {
                self.disable_keep_alive();
            }
            let more = !ex.reader.buffered().is_empty();
            if self.put_raw(&mut out, &bufs, &meta, info.version, info.is_head, more, dates.line()).is_err() {
                out.clear();
                served = Some((info, BatchEnd::Failed));
                break;
            }
            if !self.keeps_alive() {
                served = Some((info, BatchEnd::Close));
                break;
            }
            served = Some((info, BatchEnd::Drained));
        }
        self.keep_out(out);
        served
    }

    /// Marks the connection idle (see [`KeepAlive::Idle`]), the newest of
    /// its hub's idle connections.
    #[inline]
    fn become_idle(&self) {
        let clock = &self.state.idle_clock;
        let now = clock.get();
        clock.set(now + 1);
        self.watch.idle_since.set(now);
        self.watch.keep_alive.set(KeepAlive::Idle);
    }

    /// Lets go of large buffers while the connection waits for its next
    /// request: an idle connection should not hold much.
    fn trim(&self) {
        self.arena.borrow_mut().trim();
        self.raw_head.borrow_mut().trim();
        self.raw_bufs.borrow_mut().trim();
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
    fn exchange(&self, req: Incoming<'_>, started: Started) -> std::io::Result<()> {
        let Incoming { info, line, kind } = req;
        let cfg = &self.config;
        if let Prepared::Batch(end) = kind {
            // Answered already, but for a handler that panicked.
            return match end {
                BatchEnd::Drained | BatchEnd::Close => Ok(()),
                BatchEnd::Failed => Err(std::io::Error::other("a response could not be written")),
                BatchEnd::Panicked => match self.answer_raw(info, None) {
                    Some(answered) => self.end_exchange(answered, &line, started),
                    None => Ok(()),
                },
            };
        }
        self.watch.keep_alive.set(if cfg.keepalive && info.keep_alive { KeepAlive::Busy } else { KeepAlive::Disabled });
        let refuse = |status| {
            self.disable_keep_alive();
            self.write_error(status, started, Some((info.version, &line)))
        };
        if !info.host_ok {
            return refuse(StatusCode::BAD_REQUEST);
        }
        let framing = match info.framing {
            Ok(f) => f,
            Err(status) => return refuse(status),
        };
        if let Framing::Length(n) = framing {
            if n > cfg.max_body_size {
                return refuse(StatusCode::PAYLOAD_TOO_LARGE);
            }
        }
        let generation = self.ex.borrow_mut().begin(framing, info.expects_continue);
        if framing != Framing::Length(0) {
            // Only a body is read while the handler runs (most requests
            // have none, and their connection keeps its timeout). Reading
            // it may wait, or answer `100 Continue`: the answers gathered
            // so far go first.
            let _ = self.read_timeout(Reading::Body);
            self.flush_pending()?;
        }
        let body = Body::incoming(self.ex.clone(), generation);
        let answered = match kind {
            Prepared::Http(head, handler) => self.exchange_http(head, info, body, &line, started, handler),
            Prepared::Raw(handler) => self.exchange_raw(info, body, handler),
            Prepared::Batch(_) => None,
        };
        match answered {
            Some(answered) => self.end_exchange(answered, &line, started),
            None => Ok(()),
        }
    }

    /// Ends a request answered with `status` (`sent`: what writing the
    /// answer gave).
    fn end_exchange(
        &self,
        (status, sent): (StatusCode, std::io::Result<u64>),
        line: &str,
        started: Started,
    ) -> std::io::Result<()> {
        self.ex.borrow_mut().end();
        let sent = match sent {
            Ok(n) => n,
            Err(e) => {
                self.log(line, status, 0, started);
                return Err(e);
            }
        };
        self.log(line, status, sent, started);
        if self.state.shutting_down.get() {
            self.disable_keep_alive();
        }
        Ok(())
    }

    /// Runs a handler of `http` types and writes its answer: the status
    /// and what writing it gave, or `None` when there is nothing more to
    /// do (an upgrade, or a request body that failed to read).
    fn exchange_http(
        &self,
        head: Head,
        info: Info,
        body: Body,
        line: &str,
        started: Started,
        handler: &dyn Fn(Request<Body>) -> Response<Body>,
    ) -> Option<(StatusCode, std::io::Result<u64>)> {
        let mut req = Request::new(body);
        *req.method_mut() = head.method;
        *req.uri_mut() = head.uri;
        *req.version_mut() = info.version;
        *req.headers_mut() = head.headers;
        if self.config.remote_addr {
            req.extensions_mut().insert(RemoteAddr(self.peer));
        }

        let mut resp = match panic::catch_unwind(AssertUnwindSafe(|| handler(req))) {
            Ok(r) => r,
            Err(p) if p.is::<Killed>() => panic::resume_unwind(p),
            Err(_) => simple_response(StatusCode::INTERNAL_SERVER_ERROR),
        };

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(on_upgrade) = resp.body_mut().take_upgrade() {
                self.upgrade(resp, on_upgrade, line, started);
                self.disable_keep_alive();
                return None;
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
            if let Err(e) = ex.send_continue() {
                return Some((resp.status(), Err(e)));
            }
        }
        if let Some(status) = self.body_error()? {
            resp = simple_response(status);
        }
        let status = resp.status();
        let sent = self.write_response(resp, info.version, info.is_head);
        if streams_body {
            self.finish_body();
        }
        Some((status, sent))
    }

    /// Runs a raw handler on the connection's copy of the head and writes
    /// its answer, as [`exchange_http`](Self::exchange_http).
    fn exchange_raw(
        &self,
        info: Info,
        body: Body,
        handler: &RawHandler<'_>,
    ) -> Option<(StatusCode, std::io::Result<u64>)> {
        let answer = {
            let head = self.raw_head.borrow();
            let mut req = raw::Request::copied(&head, body, self.peer);
            run_raw(handler, &mut req, &mut self.raw_bufs.borrow_mut())
        };
        self.finish_body();
        self.answer_raw(info, answer)
    }

    /// Writes a raw handler's answer (`None`: it panicked, `500`), or the
    /// status its request body calls for.
    fn answer_raw(&self, info: Info, answer: Option<raw::Meta>) -> Option<(StatusCode, std::io::Result<u64>)> {
        let refused = self.body_error()?;
        if answer.is_some_and(|a| a.close) {
            self.disable_keep_alive();
        }
        Some(match (refused, answer) {
            (None, Some(meta)) => {
                (meta.status, self.write_raw(&self.raw_bufs.borrow(), &meta, info.version, info.is_head))
            }
            _ => {
                let status = refused.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                (status, self.write_response(simple_response(status), info.version, info.is_head))
            }
        })
    }

    /// After the handler: the status to answer with instead of its
    /// response, if its request body was refused; `None` (nothing to
    /// answer) if it could not be read at all.
    fn body_error(&self) -> Option<Option<StatusCode>> {
        let error = self.ex.try_borrow().map_or(Some(BodyError::Io), |ex| ex.error);
        let status = match error {
            Some(BodyError::TooLarge) => Some(StatusCode::PAYLOAD_TOO_LARGE),
            Some(BodyError::Malformed) => Some(StatusCode::BAD_REQUEST),
            Some(BodyError::Io) => {
                self.disable_keep_alive();
                return None;
            }
            None => None,
        };
        if error.is_some() || self.state.shutting_down.get() {
            self.disable_keep_alive();
        }
        Some(status)
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

    /// Answers with `status` (the connection's last answer) a request of
    /// version and line `head` (`None`: a head that could not be read).
    fn write_error(&self, status: StatusCode, started: Started, head: Option<(Version, &str)>) -> std::io::Result<()> {
        let version = head.map_or(Version::HTTP_11, |h| h.0);
        let r = self.write_response(simple_response(status), version, false);
        let line = match head {
            Some((_, line)) if self.config.log.is_some() => line,
            _ => "-",
        };
        self.log(line, status, *r.as_ref().unwrap_or(&0), started);
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
