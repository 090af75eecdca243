//! WebSocket (eventlet's `websocket`): the server side as an upgrade from a
//! handler ([`upgrade`]), a client ([`connect`]), both [`tungstenite`]
//! running unchanged over green streams.
//!
//! ```
//! use eventlet_http::websocket::{self, Message};
//! use eventlet_http::Server;
//!
//! let server = Server::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! let stop = server.shutdown_handle();
//! eventlet::spawn_n(move || {
//!     server
//!         .serve(|req| {
//!             websocket::upgrade(&req, |mut ws| {
//!                 // An echo server: runs on the connection's green thread.
//!                 while let Ok(msg) = ws.read() {
//!                     if msg.is_text() || msg.is_binary() {
//!                         let _ = ws.send(msg);
//!                     }
//!                 }
//!             })
//!         })
//!         .unwrap()
//! });
//!
//! let (mut ws, _resp) = websocket::connect(&format!("ws://{addr}/echo")).unwrap();
//! ws.send(Message::text("hello")).unwrap();
//! assert_eq!(ws.read().unwrap(), Message::text("hello"));
//! ws.close(None).unwrap();
//! while ws.read().is_ok() {} // until the server's close reply
//! stop.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! tungstenite answers pings with pongs and closes with the close
//! handshake by itself, as its docs say: keep calling
//! [`read`](WebSocket::read) until it fails with
//! [`Error::ConnectionClosed`]. Messages larger than
//! [`WebSocketConfig::max_message_size`] (64 MiB by default) fail the read
//! with [`Error::Capacity`] (see [`upgrade_with_config`]); the server's
//! socket then sends Close `1009`, and on other protocol violations by the
//! peer `1002` or `1007` (see [`ServerSocket`]).
//!
//! A [`WebSocket`] reads and writes through `&mut self`; to send to a
//! socket from other green threads (a broadcast), take a [`Sender`] from it.

use std::io::{self, Write};
use std::time::Duration;

use eventlet::net::TcpStream;
use http::{header, HeaderValue, Request, Response, StatusCode};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::derive_accept_key;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::Role;
use tungstenite::HandshakeError;

pub use tungstenite::protocol::frame::coding::CloseCode;
pub use tungstenite::protocol::{CloseFrame, WebSocketConfig};
pub use tungstenite::{Error, Message, WebSocket};

use crate::body::Body;
use crate::server::has_token;
use crate::upgrade::{Upgraded, UpgradedWriter};

mod deflate;

/// The byte stream under a server-side [`WebSocket`]: the upgraded
/// connection, with permessage-deflate (RFC 7692) underneath when the
/// client offered it (browsers and Python's `websockets` do): compressed
/// messages from the client are inflated before tungstenite reads them,
/// and the messages it sends are deflated.
#[derive(Debug)]
pub struct Stream {
    inner: StreamKind,
}

#[derive(Debug)]
enum StreamKind {
    Plain(Upgraded),
    Deflate(deflate::DeflateStream<Upgraded>),
}

impl Stream {
    /// The upgraded connection.
    pub fn upgraded(&self) -> &Upgraded {
        match &self.inner {
            StreamKind::Plain(u) => u,
            StreamKind::Deflate(d) => d.get_ref(),
        }
    }

    /// A write half for other green threads (see [`Sender`]).
    pub fn writer(&self) -> UpgradedWriter {
        self.upgraded().writer()
    }

    /// Whether permessage-deflate was agreed with the client.
    pub fn is_compressed(&self) -> bool {
        matches!(self.inner, StreamKind::Deflate(_))
    }
}

impl io::Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.inner {
            StreamKind::Plain(u) => u.read(buf),
            StreamKind::Deflate(d) => d.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            StreamKind::Plain(u) => u.write(buf),
            StreamKind::Deflate(d) => d.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            StreamKind::Plain(u) => u.flush(),
            StreamKind::Deflate(d) => d.get_mut().flush(),
        }
    }
}

/// A client socket and the server's `101` response, from [`connect`] and
/// [`client`].
pub type Connected<S> = (WebSocket<S>, Response<Option<Vec<u8>>>);

/// The server side of a WebSocket: over the connection the server handed
/// over after the `101` response (its [`Stream`], with permessage-deflate
/// when the client offered it).
///
/// It is a tungstenite [`WebSocket`] (it derefs to one) whose
/// [`read`](ServerSocket::read) also answers a peer's protocol violation
/// as RFC 6455 says: with a Close frame of the right code (`1002` for a
/// malformed frame, an unmasked one, a bad opcode, reserved bits, an
/// orphan continuation; `1007` for text that is not UTF-8; `1009` for a
/// message over the size limit) before the error comes back.
pub struct ServerSocket {
    ws: WebSocket<Stream>,
}

impl ServerSocket {
    /// Reads the next message; see [`WebSocket::read`]. On a protocol
    /// violation by the peer it sends the Close frame RFC 6455 gives for
    /// it, then returns the error.
    ///
    /// # Errors
    ///
    /// As [`WebSocket::read`]: [`Error::ConnectionClosed`] once the close
    /// handshake is done, [`Error::Protocol`], [`Error::Utf8`],
    /// [`Error::Capacity`], [`Error::Io`] (`TimedOut` after the server's
    /// [`upgrade_timeout`](crate::Server::upgrade_timeout)).
    pub fn read(&mut self) -> Result<Message, Error> {
        let r = self.ws.read();
        if let Err(e) = &r {
            if let Some((code, reason)) = close_code_for(e) {
                if self.ws.can_write() {
                    let _ = self.ws.close(Some(CloseFrame { code, reason: reason.into() }));
                    let _ = self.ws.flush();
                }
            }
        }
        r
    }

    /// The tungstenite socket itself.
    pub fn into_inner(self) -> WebSocket<Stream> {
        self.ws
    }
}

/// The close code (and reason) RFC 6455 gives for a read error caused by
/// the peer; `None` for errors that are not the peer's protocol violation
/// (a closed or reset connection, an I/O error).
fn close_code_for(e: &Error) -> Option<(CloseCode, &'static str)> {
    use tungstenite::error::ProtocolError;
    match e {
        Error::Utf8(_) => Some((CloseCode::Invalid, "invalid UTF-8 in a text message")),
        Error::Capacity(_) => Some((CloseCode::Size, "message too big")),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
        Error::Protocol(_) => Some((CloseCode::Protocol, "protocol error")),
        _ => None,
    }
}

impl std::ops::Deref for ServerSocket {
    type Target = WebSocket<Stream>;

    fn deref(&self) -> &WebSocket<Stream> {
        &self.ws
    }
}

impl std::ops::DerefMut for ServerSocket {
    fn deref_mut(&mut self) -> &mut WebSocket<Stream> {
        &mut self.ws
    }
}

impl std::fmt::Debug for ServerSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSocket").field("stream", self.ws.get_ref()).finish_non_exhaustive()
    }
}

/// Whether `req` asks for a WebSocket (`GET` with `Upgrade: websocket` and
/// `Connection: upgrade`).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.method() == http::Method::GET
        && has_token(req.headers(), header::UPGRADE, "websocket")
        && has_token(req.headers(), header::CONNECTION, "upgrade")
}

/// Answers a WebSocket handshake request: a `101 Switching Protocols`
/// response whose body ([`Body::upgrade`]) runs `on_open` with the socket,
/// on the connection's green thread, once the response is written; the
/// connection closes when `on_open` returns. Not a WebSocket request:
/// `400`; a WebSocket version other than 13: `426` with
/// `Sec-WebSocket-Version: 13`.
pub fn upgrade<B, F>(req: &Request<B>, on_open: F) -> Response<Body>
where
    F: FnOnce(ServerSocket) + 'static,
{
    upgrade_with_config(req, WebSocketConfig::default(), on_open)
}

/// [`upgrade`] with tungstenite's settings, for example a message size
/// limit: `WebSocketConfig::default().max_message_size(Some(64 << 10))`.
pub fn upgrade_with_config<B, F>(req: &Request<B>, config: WebSocketConfig, on_open: F) -> Response<Body>
where
    F: FnOnce(ServerSocket) + 'static,
{
    let refuse = |status: StatusCode, why: &'static str| {
        let mut r = Response::new(Body::from(why));
        *r.status_mut() = status;
        r
    };
    if !is_upgrade_request(req) {
        return refuse(StatusCode::BAD_REQUEST, "not a WebSocket handshake\n");
    }
    if req.headers().get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut r = refuse(StatusCode::UPGRADE_REQUIRED, "WebSocket version 13 only\n");
        r.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return r;
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return refuse(StatusCode::BAD_REQUEST, "no Sec-WebSocket-Key\n");
    };
    let accept = derive_accept_key(key.as_bytes());
    let agreed = deflate::negotiate(req.headers());
    let max_frame = config.max_frame_size;
    let body = Body::upgrade(move |conn| {
        let inner = match agreed {
            Some(a) => StreamKind::Deflate(deflate::DeflateStream::new(conn, a, max_frame)),
            None => StreamKind::Plain(conn),
        };
        on_open(ServerSocket { ws: WebSocket::from_raw_socket(Stream { inner }, Role::Server, Some(config)) })
    });
    let mut r = Response::new(body);
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    if let Some(a) = agreed {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, HeaderValue::from_static(a.response_header()));
    }
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
    r
}

/// Sends messages on a server-side socket from other green threads (of the
/// same OS thread) while its owner is parked reading it: each message goes
/// out as one frame, written whole under the connection's write lock.
///
/// It writes around the [`WebSocket`], which does not know of these
/// messages: stop sending once the socket is closing.
#[derive(Debug, Clone)]
pub struct Sender {
    writer: UpgradedWriter,
}

impl Sender {
    /// A sender for `ws`.
    pub fn new(ws: &ServerSocket) -> Sender {
        Sender { writer: ws.get_ref().writer() }
    }

    // Its messages go out uncompressed, which permessage-deflate allows.

    /// Sends `msg` as one frame.
    ///
    /// # Errors
    ///
    /// The connection's write error (the client has gone:
    /// `BrokenPipe`, `ConnectionReset`), or `InvalidInput` for a
    /// [`Message::Frame`].
    pub fn send(&self, msg: Message) -> io::Result<()> {
        let frame = match msg {
            Message::Text(t) => Frame::message(t, OpCode::Data(Data::Text), true),
            Message::Binary(b) => Frame::message(b, OpCode::Data(Data::Binary), true),
            Message::Ping(p) => Frame::ping(p),
            Message::Pong(p) => Frame::pong(p),
            Message::Close(c) => Frame::close(c),
            Message::Frame(_) => return Err(io::Error::new(io::ErrorKind::InvalidInput, "raw frames are not sent")),
        };
        let mut out = Vec::with_capacity(frame.len());
        frame.format(&mut out).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.writer.clone().write_all(&out)
    }
}

impl Sender {
    /// Shuts the connection down both ways: the green thread reading the
    /// socket gets end of stream, and writes fail from now on.
    pub fn disconnect(&self) {
        let _ = self.writer.shutdown(std::net::Shutdown::Both);
    }
}

/// The messages waiting for one socket, sent by a writer green thread of
/// its own from a bounded queue: what a broadcast should write to.
///
/// A broadcast that writes to each member in turn waits on the first
/// member whose socket buffers are full (a member that stopped reading),
/// and the whole room waits with it. An `Outbox` never waits:
/// [`try_send`](Outbox::try_send) queues the message or, when the queue is
/// full, hands it back, and the broadcaster drops (or skips) that member.
///
/// ```no_run
/// use eventlet_http::websocket::{Message, Outbox};
///
/// /// A broadcast: a member whose outbox is full is let go.
/// fn broadcast(members: &mut Vec<Outbox>, text: &str) {
///     members.retain(|m| match m.try_send(Message::text(text)) {
///         Ok(()) => true,
///         Err(_) => {
///             m.disconnect();
///             false
///         }
///     });
/// }
/// # let _ = broadcast;
/// ```
#[derive(Debug)]
pub struct Outbox {
    queue: eventlet::Queue<Message>,
    sender: Sender,
}

impl Outbox {
    /// An outbox of at most `capacity` messages for `ws`, with its writer
    /// green thread (which ends when the outbox is dropped, after sending
    /// what is queued, or when a write fails).
    pub fn new(ws: &ServerSocket, capacity: usize) -> Outbox {
        let queue = eventlet::Queue::bounded(capacity);
        let sender = Sender::new(ws);
        let (q, s) = (queue.clone(), sender.clone());
        eventlet::spawn_n(move || {
            while let Ok(msg) = q.get() {
                if s.send(msg).is_err() {
                    q.close();
                    s.disconnect();
                }
            }
        });
        Outbox { queue, sender }
    }

    /// Queues `msg` without waiting.
    ///
    /// # Errors
    ///
    /// The message back when the outbox is full (the peer does not keep
    /// up) or closed (its connection failed).
    pub fn try_send(&self, msg: Message) -> Result<(), Message> {
        self.queue.try_put(msg).map_err(|e| e.into_inner())
    }

    /// Drops what is queued and shuts the connection down (see
    /// [`Sender::disconnect`]).
    pub fn disconnect(&self) {
        self.queue.close();
        while self.queue.try_get().is_ok() {}
        self.sender.disconnect();
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// How long [`connect`] and [`connect_with_config`] may take to open the
/// connection and finish the handshake (as the HTTP client's connect
/// timeout): a server that accepts and never answers does not hold the
/// caller forever.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens a WebSocket to a `ws://` URL over a green [`TcpStream`], within
/// [`CONNECT_TIMEOUT`].
///
/// # Errors
///
/// A bad or non-`ws://` URL ([`Error::Url`]), the connection's error
/// ([`Error::Io`]; `TimedOut` past the timeout), a refused handshake
/// ([`Error::Http`]).
pub fn connect(url: &str) -> Result<Connected<TcpStream>, Error> {
    connect_with_config(url, None)
}

/// [`connect`] with tungstenite's settings.
///
/// # Errors
///
/// As [`connect`].
pub fn connect_with_config(url: &str, config: Option<WebSocketConfig>) -> Result<Connected<TcpStream>, Error> {
    connect_timeout(url, config, Some(CONNECT_TIMEOUT))
}

/// [`connect_with_config`] with a deadline of your own for opening the
/// connection and the whole handshake (`None`: none). The socket has no
/// read or write timeout afterwards.
///
/// # Errors
///
/// As [`connect`]; past `timeout`, [`Error::Io`] with `TimedOut`.
pub fn connect_timeout(
    url: &str,
    config: Option<WebSocketConfig>,
    timeout: Option<Duration>,
) -> Result<Connected<TcpStream>, Error> {
    let Some(t) = timeout else { return open(url, config) };
    eventlet::with_timeout(t, || open(url, config)).unwrap_or_else(|_| {
        Err(Error::Io(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("WebSocket connection to {url} not open after {t:?}"),
        )))
    })
}

/// Connects to `url` and runs the handshake, without a deadline.
fn open(url: &str, config: Option<WebSocketConfig>) -> Result<Connected<TcpStream>, Error> {
    use tungstenite::error::UrlError;
    let request = url.into_client_request()?;
    let uri = request.uri();
    if uri.scheme_str() != Some("ws") {
        return Err(Error::Url(UrlError::UnsupportedUrlScheme));
    }
    let host = uri.host().ok_or(Error::Url(UrlError::NoHostName))?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let port = uri.port_u16().unwrap_or(80);
    let stream = TcpStream::connect((host, port))?;
    stream.set_nodelay(true)?;
    client(request, stream, config)
}

/// The client handshake over any stream already connected (a green
/// [`TcpStream`], a TLS stream over one, ...). It has no deadline of its
/// own: give the stream read and write timeouts, or call it inside
/// [`eventlet::with_timeout`], lest a server that never answers hold the
/// caller forever.
///
/// # Errors
///
/// As [`connect`].
pub fn client<S, R>(request: R, stream: S, config: Option<WebSocketConfig>) -> Result<Connected<S>, Error>
where
    S: io::Read + io::Write,
    R: IntoClientRequest,
{
    tungstenite::client::client_with_config(request, stream, config).map_err(|e| match e {
        HandshakeError::Failure(e) => e,
        // Green streams park instead of failing with `WouldBlock`.
        HandshakeError::Interrupted(_) => Error::Io(io::ErrorKind::WouldBlock.into()),
    })
}
