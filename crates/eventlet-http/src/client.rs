//! The HTTP client (eventlet's green `urllib2`): [`get`], [`post`] and a
//! reusable [`Client`] with a keep-alive connection pool.
//!
//! It is [ureq](https://docs.rs/ureq) 3 made green: ureq does the HTTP
//! (request writing, response parsing, chunked and close-delimited bodies,
//! redirects, the connection pool), and its two I/O hooks are ours — the
//! connector opens a green [`TcpStream`] and the resolver looks names up
//! with [`eventlet::net::resolve`] on the thread pool. So a fetch parks only
//! its own green thread, and thousands run at once on one OS thread.
//!
//! ```
//! use eventlet_http::{client, Body, Server};
//!
//! let server = Server::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! let stop = server.shutdown_handle();
//! eventlet::spawn_n(move || server.serve(|_req| http::Response::new(Body::from("hello"))).unwrap());
//!
//! let resp = client::get(&format!("http://{addr}/"))?;
//! assert_eq!(resp.status(), 200);
//! assert_eq!(resp.headers()["content-length"], "5");
//! assert_eq!(resp.into_body().into_string()?, "hello");
//! stop.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! `https://` goes through rustls (ureq's `RustlsConnector` chained after
//! our green connector, so the TLS bytes travel over the green socket),
//! trusting what curl trusts: the system's CA certificates, or those of
//! the file named by `SSL_CERT_FILE` (Mozilla's bundled roots when there
//! are none), or a CA file of your own ([`ClientBuilder::ca_file`]); it
//! needs the `tls` feature (on by default), without which an `https://` URL
//! fails with `Unsupported`.
//! Responses compressed with gzip are decompressed. Statuses of 400 and up
//! are responses like any other, not errors.

use std::fmt;
use std::io::{self, Read, Write};
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventlet::net::TcpStream;
use http::{Request, Response, Uri};
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{
    Buffers, ConnectionDetails, Connector, LazyBuffers, NextTimeout, ShutdownHandle, Transport,
};

use crate::body::Body;

/// A reusable HTTP client: keeps connections alive between requests to the
/// same host (a pool shared by its clones), follows redirects (at most 10
/// by default), and applies timeouts.
///
/// Cloning is cheap; a `Client` is `Send + Sync`, but each connection is
/// used from one green thread at a time.
///
/// ```no_run
/// use std::time::Duration;
/// let client = eventlet_http::Client::builder().timeout_connect(Duration::from_secs(5)).max_redirects(3).build();
/// let body = client.get("http://example.com/")?.into_body().into_bytes()?;
/// println!("{} bytes", body.len());
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    /// ureq agents, each with its own connection pool: ureq finds a pooled
    /// connection by a linear scan, which with a thousand idle connections
    /// cost more than the requests. See [`Client::shard`] for which one a
    /// request uses.
    agents: Arc<[ureq::Agent]>,
    /// Requests under way on each agent.
    busy: Arc<[AtomicUsize]>,
}

/// Connection pools per client (see `Client::agents`).
const SHARDS: usize = 64;

/// Bytes a connection reads ahead: the largest response head it takes.
const INPUT_BUFFER: usize = 64 * 1024;
/// Bytes a connection buffers for writing.
const OUTPUT_BUFFER: usize = 16 * 1024;

/// Settings for a [`Client`]; from [`Client::builder`].
#[derive(Debug, Clone)]
pub struct ClientBuilder {
    connect: Option<Duration>,
    read: Option<Duration>,
    total: Option<Duration>,
    max_redirects: u32,
    user_agent: String,
    idle_total: usize,
    idle_per_host: usize,
    #[cfg(feature = "tls")]
    roots: Option<std::sync::Arc<Vec<ureq::tls::Certificate<'static>>>>,
}

impl ClientBuilder {
    /// How long opening a connection may take (default 30 s; `None`: no limit).
    pub fn timeout_connect(mut self, t: impl Into<Option<Duration>>) -> ClientBuilder {
        self.connect = t.into();
        self
    }

    /// How long one read or write may wait for the server (default 60 s;
    /// `None`: no limit), and the response head in all: a body that keeps
    /// coming is read to its end however long it takes (see
    /// [`timeout`](Self::timeout) for a limit on the whole request), and a
    /// server that stops reading the request fails it.
    pub fn timeout_read(mut self, t: impl Into<Option<Duration>>) -> ClientBuilder {
        self.read = t.into();
        self
    }

    /// How long a whole request may take, body included (default: no limit).
    pub fn timeout(mut self, t: impl Into<Option<Duration>>) -> ClientBuilder {
        self.total = t.into();
        self
    }

    /// How many redirects to follow (default 10; 0: hand back the 3xx).
    /// A request that needs more fails ("too many redirects"), as curl and
    /// wget do.
    pub fn max_redirects(mut self, n: u32) -> ClientBuilder {
        self.max_redirects = n;
        self
    }

    /// How many idle keep-alive connections the client keeps for reuse: in
    /// all, and to any one host (default 1,000 and 1,000: green clients
    /// fetch with many connections at once, and a connection not kept is a
    /// new TCP handshake for the next request).
    pub fn max_idle_connections(mut self, total: usize, per_host: usize) -> ClientBuilder {
        self.idle_total = total;
        self.idle_per_host = per_host;
        self
    }

    /// The `User-Agent` header (default `eventlet-http/VERSION`).
    pub fn user_agent(mut self, ua: impl Into<String>) -> ClientBuilder {
        self.user_agent = ua.into();
        self
    }

    /// Trusts the CA certificates of the PEM file at `path` for
    /// `https://`, instead of the system's (curl's `--cacert`).
    ///
    /// # Errors
    ///
    /// The file cannot be read, or holds no valid certificate
    /// (`InvalidData`).
    #[cfg(feature = "tls")]
    pub fn ca_file(mut self, path: impl AsRef<std::path::Path>) -> io::Result<ClientBuilder> {
        let pem = std::fs::read(path.as_ref())?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            match item.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))? {
                ureq::tls::PemItem::Certificate(c) => certs.push(c.to_owned()),
                _ => continue,
            }
        }
        if certs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("no certificate in {}", path.as_ref().display()),
            ));
        }
        self.roots = Some(std::sync::Arc::new(certs));
        Ok(self)
    }

    /// Makes the client.
    pub fn build(self) -> Client {
        #[cfg(feature = "tls")]
        let tls = {
            let roots = match self.roots {
                Some(certs) => ureq::tls::RootCerts::Specific(certs),
                None => system_roots(),
            };
            ureq::tls::TlsConfig::builder().root_certs(roots).build()
        };
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .max_redirects(self.max_redirects)
            .max_redirects_will_error(true)
            .timeout_connect(self.connect)
            .timeout_recv_response(self.read)
            .timeout_per_read(self.read)
            .timeout_per_write(self.read)
            .timeout_global(self.total)
            .user_agent(self.user_agent.as_str())
            .max_idle_connections(self.idle_total.div_ceil(SHARDS))
            .max_idle_connections_per_host(self.idle_per_host.div_ceil(SHARDS))
            // ureq's defaults (128 KiB each way, zeroed per connection) cost
            // more than the request on a local network; a response head
            // still has 64 KiB.
            .input_buffer_size(INPUT_BUFFER)
            .output_buffer_size(OUTPUT_BUFFER);
        #[cfg(feature = "tls")]
        let config = config.tls_config(tls);
        let config = config.build();
        let agents: Vec<ureq::Agent> = (0..SHARDS)
            .map(|_| {
                #[cfg(feature = "tls")]
                let connector = GreenConnector.chain(ureq::unversioned::transport::RustlsConnector::default());
                #[cfg(not(feature = "tls"))]
                let connector = GreenConnector;
                ureq::Agent::with_parts(config.clone(), connector, GreenResolver)
            })
            .collect();
        let busy: Vec<AtomicUsize> = (0..SHARDS).map(|_| AtomicUsize::new(0)).collect();
        Client { agents: agents.into(), busy: busy.into() }
    }
}

/// The system's CA certificates for ureq (see
/// [`tls::system_roots`](crate::tls::system_roots)), converted once; the
/// bundled Mozilla roots when the system has none.
#[cfg(feature = "tls")]
fn system_roots() -> ureq::tls::RootCerts {
    static ROOTS: std::sync::OnceLock<Option<Arc<Vec<ureq::tls::Certificate<'static>>>>> = std::sync::OnceLock::new();
    let certs = ROOTS.get_or_init(|| {
        let system = crate::tls::system_roots();
        (!system.is_empty())
            .then(|| Arc::new(system.iter().map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned()).collect()))
    });
    match certs {
        Some(certs) => ureq::tls::RootCerts::Specific(certs.clone()),
        None => ureq::tls::RootCerts::WebPki,
    }
}

impl Default for Client {
    fn default() -> Client {
        Client::new()
    }
}

impl Client {
    /// A client with the default settings (see [`ClientBuilder`]).
    pub fn new() -> Client {
        Client::builder().build()
    }

    /// Settings for a client.
    pub fn builder() -> ClientBuilder {
        ClientBuilder {
            connect: Some(Duration::from_secs(30)),
            read: Some(Duration::from_secs(60)),
            total: None,
            max_redirects: 10,
            idle_total: 1000,
            idle_per_host: 1000,
            user_agent: concat!("eventlet-http/", env!("CARGO_PKG_VERSION")).to_string(),
            #[cfg(feature = "tls")]
            roots: None,
        }
    }

    /// Which shard a request goes to: the least busy, the first of them on
    /// a tie. So a green thread fetching one URL after another keeps using
    /// the first pool (and its one connection), and a thousand fetching at
    /// once spread evenly over all the pools, each scanned quickly.
    fn shard(&self) -> usize {
        (0..self.busy.len()).min_by_key(|&i| self.busy[i].load(Ordering::Relaxed)).unwrap_or(0)
    }

    /// Runs one request on a shard's agent, counted as under way meanwhile.
    fn on_agent<T>(&self, call: impl FnOnce(&ureq::Agent) -> T) -> T {
        let i = self.shard();
        /// Counts the request down however it ends: a green thread killed
        /// mid-request unwinds through here.
        struct Busy<'a>(&'a AtomicUsize);
        impl Drop for Busy<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.busy[i].fetch_add(1, Ordering::Relaxed);
        let _busy = Busy(&self.busy[i]);
        call(&self.agents[i])
    }

    /// `GET url`.
    ///
    /// # Errors
    ///
    /// A bad URL (`InvalidInput`), an unknown host (`NotFound`), a refused
    /// connection (`ConnectionRefused`), a timeout, before the head or in
    /// the body (`TimedOut`), a failed TLS handshake or a malformed response
    /// (`InvalidData`), too many redirects (`Other`); each message names the
    /// host. A status of 400 or more is not an error.
    pub fn get(&self, url: &str) -> io::Result<Response<Body>> {
        convert(self.on_agent(|a| a.get(url).call()), url)
    }

    /// `POST url` with `body` (sent with `Content-Length`).
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub fn post(&self, url: &str, body: impl AsRef<[u8]>) -> io::Result<Response<Body>> {
        convert(self.on_agent(|a| a.post(url).send(body.as_ref())), url)
    }

    /// Sends `req` as it is (method, URI, headers, body).
    ///
    /// ```no_run
    /// let req = http::Request::put("http://127.0.0.1:8090/x").header("X-Token", "t").body(b"data".to_vec()).unwrap();
    /// let resp = eventlet_http::Client::new().request(req)?;
    /// assert!(resp.status().is_success());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Client::get`].
    pub fn request(&self, req: Request<Vec<u8>>) -> io::Result<Response<Body>> {
        let url = req.uri().to_string();
        convert(self.on_agent(|a| a.run(req)), &url)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

thread_local! {
    static DEFAULT: Client = Client::new();
}

/// `GET url` with this OS thread's default [`Client`] (its connection pool
/// is shared by every call on the thread).
///
/// # Errors
///
/// As [`Client::get`].
pub fn get(url: &str) -> io::Result<Response<Body>> {
    DEFAULT.with(Client::clone).get(url)
}

/// `POST url` with `body`, with this OS thread's default [`Client`].
///
/// # Errors
///
/// As [`Client::get`].
pub fn post(url: &str, body: impl AsRef<[u8]>) -> io::Result<Response<Body>> {
    DEFAULT.with(Client::clone).post(url, body)
}

/// The URL a response finally came from, after the redirects the client
/// followed: in every response's
/// [extensions](http::Response::extensions). Links in a page resolve
/// against it, not against the URL asked for.
///
/// ```no_run
/// use eventlet_http::client::FinalUri;
/// let resp = eventlet_http::get("http://example.com/sub")?;
/// let base = resp.extensions().get::<FinalUri>().map(|u| u.0.to_string());
/// # let _ = base;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalUri(pub Uri);

fn convert(r: Result<Response<ureq::Body>, ureq::Error>, url: &str) -> io::Result<Response<Body>> {
    use ureq::ResponseExt;
    let host = host_of(url);
    let resp = r.map_err(|e| into_io(e, &host))?;
    let final_uri = FinalUri(resp.get_uri().clone());
    let (mut parts, body) = resp.into_parts();
    parts.extensions.insert(final_uri);
    let len = body.content_length();
    let reader = ReadIo { inner: body.into_reader(), host };
    let body = match len {
        Some(n) => Body::reader_with_len(reader, n),
        None => Body::from_reader(reader),
    };
    Ok(Response::from_parts(parts, body))
}

/// The host (and port) of `url`, for error messages.
fn host_of(url: &str) -> String {
    url.parse::<Uri>().ok().and_then(|u| u.authority().map(|a| a.to_string())).unwrap_or_else(|| url.to_string())
}

/// ureq's body reader, with its errors in std's kinds (a body that times
/// out is `TimedOut`, as a head that does) and naming the host.
struct ReadIo<R> {
    inner: R,
    host: String,
}

impl<R: Read> Read for ReadIo<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).map_err(|e| {
            if e.get_ref().is_some_and(|inner| inner.is::<ureq::Error>()) {
                let inner = e.into_inner().and_then(|b| b.downcast::<ureq::Error>().ok());
                match inner {
                    Some(ue) => into_io(*ue, &self.host),
                    None => io::Error::other("body read failed"),
                }
            } else {
                named(e, &self.host)
            }
        })
    }
}

/// `e` with `host` named in its message (once).
fn named(e: io::Error, host: &str) -> io::Error {
    let msg = e.to_string();
    if msg.contains(host) {
        e
    } else {
        io::Error::new(e.kind(), format!("{host}: {msg}"))
    }
}

/// ureq's error as an `io::Error` a caller can match: every timeout is
/// `TimedOut`, an unknown host `NotFound`, a refused connection
/// `ConnectionRefused`, a TLS failure `InvalidData`; the message names the
/// host.
fn into_io(e: ureq::Error, host: &str) -> io::Error {
    use io::ErrorKind::*;
    let (kind, msg) = match e {
        ureq::Error::Io(e) => return named(e, host),
        ureq::Error::Timeout(t) => (TimedOut, format!("timed out ({t})")),
        ureq::Error::HostNotFound => (NotFound, "host not found".to_string()),
        ureq::Error::ConnectionFailed => (ConnectionRefused, "connection failed".to_string()),
        ureq::Error::BadUri(u) => (InvalidInput, format!("bad URL: {u}")),
        ureq::Error::TooManyRedirects => (Other, "too many redirects".to_string()),
        e @ ureq::Error::Http(_) => (InvalidInput, e.to_string()),
        e @ ureq::Error::Protocol(_) => (InvalidData, e.to_string()),
        #[cfg(feature = "tls")]
        ureq::Error::Rustls(e) => (InvalidData, format!("TLS: {e}")),
        e @ ureq::Error::Tls(_) => (InvalidData, format!("TLS: {e}")),
        e => return named(e.into_io(), host),
    };
    io::Error::new(kind, format!("{host}: {msg}"))
}

// ---------------------------------------------------------------------------
// ureq's I/O hooks

/// Opens green TCP connections for ureq.
#[derive(Debug)]
struct GreenConnector;

/// Resolves host names with eventlet's resolver (on the thread pool).
#[derive(Debug)]
struct GreenResolver;

/// The socket, shared (weakly) with ureq's shutdown registry.
#[derive(Debug)]
struct Sock(TcpStream);

impl ShutdownHandle for Sock {
    fn shutdown(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// A ureq transport over a green [`TcpStream`].
#[derive(Debug)]
struct GreenTransport {
    sock: Arc<Sock>,
    buffers: LazyBuffers,
}

impl Connector<()> for GreenConnector {
    type Out = GreenTransport;

    fn connect(&self, details: &ConnectionDetails<'_>, _chained: Option<()>) -> Result<Option<Self::Out>, ureq::Error> {
        if details.needs_tls() && !cfg!(feature = "tls") {
            return Err(ureq::Error::Io(io::Error::new(
                io::ErrorKind::Unsupported,
                "https needs eventlet-http's `tls` feature",
            )));
        }
        let timeout = details.timeout.not_zero().map(|d| *d);
        let mut last = None;
        let mut stream = None;
        for addr in details.addrs.iter() {
            let r = match timeout {
                Some(t) => TcpStream::connect_timeout(addr, t),
                None => TcpStream::connect(addr),
            };
            match r {
                Ok(s) => {
                    stream = Some(s);
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last = Some(ureq::Error::Timeout(details.timeout.reason))
                }
                Err(e) => last = Some(ureq::Error::Io(e)),
            }
        }
        let Some(stream) = stream else {
            return Err(last.unwrap_or(ureq::Error::HostNotFound));
        };
        if details.config.no_delay() {
            stream.set_nodelay(true)?;
        }
        let sock = Arc::new(Sock(stream));
        (details.register_shutdown)(Arc::downgrade(&sock) as std::sync::Weak<dyn ShutdownHandle>)?;
        let buffers = LazyBuffers::new(details.config.input_buffer_size(), details.config.output_buffer_size());
        Ok(Some(GreenTransport { sock, buffers }))
    }
}

fn map_io(e: io::Error, timeout: &NextTimeout) -> ureq::Error {
    if e.kind() == io::ErrorKind::TimedOut {
        ureq::Error::Timeout(timeout.reason)
    } else {
        ureq::Error::Io(e)
    }
}

impl Transport for GreenTransport {
    fn buffers(&mut self) -> &mut dyn Buffers {
        &mut self.buffers
    }

    fn transmit_output(&mut self, amount: usize, timeout: NextTimeout) -> Result<(), ureq::Error> {
        let timeout = timeout.for_write();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        self.sock.0.set_write_timeout(timeout.not_zero().map(|d| *d))?;
        let out = &self.buffers.output()[..amount];
        (&self.sock.0).write_all(out).map_err(|e| map_io(e, &timeout))
    }

    fn await_input(&mut self, timeout: NextTimeout) -> Result<bool, ureq::Error> {
        let timeout = timeout.for_read();
        if timeout.after.is_zero() {
            return Err(ureq::Error::Timeout(timeout.reason));
        }
        self.sock.0.set_read_timeout(timeout.not_zero().map(|d| *d))?;
        let buf = self.buffers.input_append_buf();
        let n = loop {
            match (&self.sock.0).read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r.map_err(|e| map_io(e, &timeout))?,
            }
        };
        self.buffers.input_appended(n);
        Ok(n > 0)
    }

    /// Open and idle: a non-blocking peek finds nothing to read (the green
    /// socket's descriptor is non-blocking, so this never waits).
    fn is_open(&mut self) -> bool {
        let mut byte = [MaybeUninit::uninit()];
        matches!(socket2::SockRef::from(&self.sock.0).peek(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl Resolver for GreenResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        _timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let host = uri.host().ok_or(ureq::Error::HostNotFound)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let default_port = if uri.scheme_str() == Some("https") { 443 } else { 80 };
        let port = uri.port_u16().unwrap_or(default_port);
        // A failed lookup is `NotFound` (std reports getaddrinfo's failures
        // as uncategorized), its message kept: it names the host.
        let addrs = eventlet::net::resolve(host, port).map_err(|e| match e.kind() {
            io::ErrorKind::TimedOut => ureq::Error::Io(e),
            _ => ureq::Error::Io(io::Error::new(io::ErrorKind::NotFound, e.to_string())),
        })?;
        let mut out = self.empty();
        for a in addrs.into_iter().take(16) {
            out.push(a);
        }
        Ok(out)
    }
}
