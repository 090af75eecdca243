//! TLS over green streams (eventlet's `wrap_ssl`), with rustls: configs
//! from PEM files, and [`accept`] / [`connect`] to wrap any stream (a green
//! [`TcpStream`](eventlet::net::TcpStream) above all) into a
//! [`TlsStream`] after a completed handshake: one green thread may read it
//! while another writes.
//!
//! ```no_run
//! use std::io::{Read, Write};
//! use eventlet_http::tls;
//!
//! let config = tls::client_config(Some("ca.pem".as_ref()))?;
//! let tcp = eventlet::net::TcpStream::connect("127.0.0.1:8443")?;
//! let mut s = tls::connect(tcp, "127.0.0.1", config)?;
//! s.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
//! let mut reply = Vec::new();
//! s.read_to_end(&mut reply)?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The server side of HTTPS is [`Server::tls`](crate::Server::tls). The
//! crypto is rustls' `ring` provider, as in the client.

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};

pub use rustls;

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads the certificates of a PEM file.
///
/// # Errors
///
/// The file cannot be read, or holds no certificate (`InvalidData`).
pub fn load_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// A server config from a PEM certificate chain and a PEM private key
/// (PKCS#8, PKCS#1 or SEC1), TLS 1.2 and 1.3, offering `http/1.1` and
/// `http/1.0` by ALPN (as nginx does: `curl --http1.0` asks for the latter).
///
/// # Errors
///
/// A file cannot be read or parsed, or the key does not fit the
/// certificate (`InvalidData`).
pub fn server_config(cert_file: impl AsRef<Path>, key_file: impl AsRef<Path>) -> io::Result<Arc<ServerConfig>> {
    let certs = load_certs(cert_file.as_ref())?;
    let key = PrivateKeyDer::from_pem_file(key_file.as_ref())
        .map_err(|e| invalid(format!("{}: {e}", key_file.as_ref().display())))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(invalid)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    Ok(Arc::new(config))
}

/// The system's CA certificates, which a client trusts by default as curl
/// does: the system's trust store, or the file `SSL_CERT_FILE` (and the
/// directories `SSL_CERT_DIR`) name when set. Empty when none are found:
/// then Mozilla's roots (bundled) are trusted instead. Read once per
/// process.
pub fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<CertificateDer<'static>>> = std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        if found.certs.is_empty() {
            if let Some(e) = found.errors.first() {
                log::debug!("eventlet_http: no system CA certificates ({e}): trusting the bundled roots");
            }
        }
        found.certs
    })
}

/// A client config trusting the CA certificates of a PEM file, or with
/// `None`, the [`system_roots`] (Mozilla's bundled roots if there are
/// none).
///
/// # Errors
///
/// As [`load_certs`].
pub fn client_config(ca_file: Option<&Path>) -> io::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in load_certs(path)? {
                roots.add(cert).map_err(invalid)?;
            }
        }
        None if !system_roots().is_empty() => {
            let _ = roots.add_parsable_certificates(system_roots().iter().cloned());
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The server side of a TLS handshake over `stream`; returns the
/// encrypted stream once the handshake is done.
///
/// # Errors
///
/// The stream's error, or `InvalidData` for a failed handshake.
pub fn accept<S>(stream: S, config: Arc<ServerConfig>) -> io::Result<TlsStream<S>>
where
    S: SharedStream,
{
    let conn = ServerConnection::new(config).map_err(invalid)?;
    let s = TlsStream::<S>::new(stream, rustls::Connection::Server(conn));
    s.handshake()?;
    Ok(s)
}

/// The client side of a TLS handshake with `server_name` (a DNS name or an
/// IP address, checked against the server's certificate) over `stream`.
///
/// # Errors
///
/// A bad `server_name` (`InvalidInput`), the stream's error, or
/// `InvalidData` for a failed handshake (an untrusted certificate...).
pub fn connect<S>(stream: S, server_name: &str, config: Arc<ClientConfig>) -> io::Result<TlsStream<S>>
where
    S: SharedStream,
{
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let conn = ClientConnection::new(config, name).map_err(invalid)?;
    let s = TlsStream::<S>::new(stream, rustls::Connection::Client(conn));
    s.handshake().map_err(|e| io::Error::new(e.kind(), format!("TLS handshake with {server_name} failed: {e}")))?;
    Ok(s)
}

/// A stream read and written through `&self`, as green sockets are (their
/// `Read` and `Write` are implemented for `&T`): what [`TlsStream`] runs
/// over, so that its reading and writing sides can wait at once.
pub trait SharedStream {
    /// Reads some bytes; `Ok(0)` at end of stream.
    ///
    /// # Errors
    ///
    /// The stream's read error.
    fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Writes all of `buf`.
    ///
    /// # Errors
    ///
    /// The stream's write error.
    fn write_all_shared(&self, buf: &[u8]) -> io::Result<()>;
}

impl SharedStream for eventlet::net::TcpStream {
    fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }

    fn write_all_shared(&self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, buf)
    }
}

impl SharedStream for eventlet::net::unix::UnixStream {
    fn read_shared(&self, buf: &mut [u8]) -> io::Result<usize> {
        Read::read(&mut &*self, buf)
    }

    fn write_all_shared(&self, buf: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, buf)
    }
}

/// A TLS connection over a green stream `S` (a
/// [`TcpStream`](eventlet::net::TcpStream) above all), whose reading and
/// writing sides can wait at the same time: one green thread may be parked
/// reading it while another writes to it, as over plain TCP (a chat, a
/// WebSocket, a proxy). `Read` and `Write` are implemented for `&TlsStream`
/// as well, so two green threads can share one through an `Rc`.
///
/// The TLS state is borrowed only between socket operations, never while a
/// green thread is parked on the socket; reads take turns among readers,
/// writes among writers.
///
/// From [`accept`] and [`connect`]; it belongs to its OS thread.
pub struct TlsStream<S> {
    sock: S,
    conn: std::cell::RefCell<rustls::Connection>,
    /// Ciphertext read off the socket that rustls has not taken yet (its
    /// plaintext buffer was full); also keeps reads one at a time.
    read_side: eventlet::Lock<Vec<u8>>,
    /// Keeps writes one at a time, so records go out in order.
    write_side: eventlet::Lock<()>,
    /// How long one read of plaintext may wait in all, as a server
    /// connection set it ([`Transport`](crate::transport::Transport)).
    read_timeout: std::cell::Cell<Option<std::time::Duration>>,
    /// Whether ciphertext came since plaintext was last read: part of a
    /// record may be buffered (the server's idle check reads it).
    ciphertext_pending: std::cell::Cell<bool>,
}

impl<S> TlsStream<S> {
    fn new(sock: S, conn: rustls::Connection) -> TlsStream<S> {
        TlsStream {
            sock,
            conn: std::cell::RefCell::new(conn),
            read_side: eventlet::Lock::new(Vec::new()),
            write_side: eventlet::Lock::new(()),
            read_timeout: std::cell::Cell::new(None),
            ciphertext_pending: std::cell::Cell::new(false),
        }
    }
}

impl<S> TlsStream<S>
where
    S: SharedStream,
{
    /// Runs the handshake to its end.
    pub(crate) fn handshake(&self) -> io::Result<()> {
        self.handshake_paced(&|| Ok(()))
    }

    /// [`handshake`](Self::handshake), calling `before_socket_read` before
    /// each read of the socket (see [`read_plain_paced`](Self::read_plain_paced)).
    fn handshake_paced(&self, before_socket_read: &dyn Fn() -> io::Result<()>) -> io::Result<()> {
        loop {
            let (handshaking, wants_write) = {
                let c = self.conn.borrow();
                (c.is_handshaking(), c.wants_write())
            };
            if wants_write {
                self.flush_tls()?;
            } else if handshaking {
                before_socket_read()?;
                if self.read_tls()? == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed during the TLS handshake",
                    ));
                }
            } else {
                return Ok(());
            }
        }
    }

    /// The stream under the TLS.
    pub fn get_ref(&self) -> &S {
        &self.sock
    }

    /// The protocol agreed by ALPN, if any.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.conn.borrow().alpn_protocol().map(<[u8]>::to_vec)
    }

    /// Writes what rustls has to send (records, alerts) to the socket,
    /// taking the write side's turn.
    fn flush_tls(&self) -> io::Result<()> {
        let _turn = self.write_side.lock();
        self.flush_tls_locked()
    }

    /// [`flush_tls`](Self::flush_tls) with the write side's turn held.
    fn flush_tls_locked(&self) -> io::Result<()> {
        loop {
            let mut out = Vec::new();
            {
                let mut c = self.conn.borrow_mut();
                while c.wants_write() {
                    c.write_tls(&mut out)?;
                }
            }
            if out.is_empty() {
                return Ok(());
            }
            self.sock.write_all_shared(&out)?;
        }
    }

    /// Reads ciphertext off the socket (parking without the TLS state
    /// borrowed) and hands it to rustls; `Ok(0)` at end of stream. Whatever
    /// rustls has to send in answer goes out.
    fn read_tls(&self) -> io::Result<usize> {
        let mut pending = self.read_side.lock();
        let n = self.read_tls_locked(&mut pending)?;
        drop(pending);
        if self.conn.borrow().wants_write() {
            self.flush_tls()?;
        }
        Ok(n)
    }

    /// [`read_tls`](Self::read_tls) with the read side's turn held.
    fn read_tls_locked(&self, pending: &mut Vec<u8>) -> io::Result<usize> {
        let fresh = if pending.is_empty() {
            let mut buf = vec![0; 16 * 1024 + 512];
            let n = self.sock.read_shared(&mut buf)?;
            let mut c = self.conn.borrow_mut();
            if n == 0 {
                c.read_tls(&mut &[][..])?;
                c.process_new_packets().map_err(invalid)?;
                return Ok(0);
            }
            buf.truncate(n);
            buf
        } else {
            std::mem::take(pending)
        };
        let mut c = self.conn.borrow_mut();
        let mut rest = &fresh[..];
        while !rest.is_empty() {
            match c.read_tls(&mut rest) {
                Ok(_) => {
                    c.process_new_packets().map_err(invalid)?;
                }
                // Its plaintext buffer is full: the caller reads that first.
                Err(e) if e.kind() == io::ErrorKind::Other => break,
                Err(e) => return Err(e),
            }
        }
        pending.extend_from_slice(rest);
        Ok(fresh.len())
    }

    /// Reads plaintext; `Ok(0)` at the end (a peer that closes without
    /// `close_notify` ends the stream too).
    fn read_plain(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_plain_paced(buf, &|| Ok(()))
    }

    /// [`read_plain`](Self::read_plain), calling `before_socket_read`
    /// before each read of the socket (which may set its timeout; its
    /// error ends the read).
    fn read_plain_paced(&self, buf: &mut [u8], before_socket_read: &dyn Fn() -> io::Result<()>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut c = self.conn.borrow_mut();
                match c.reader().read(buf) {
                    Ok(n) => {
                        self.ciphertext_pending.set(false);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                }
            }
            before_socket_read()?;
            let n = self.read_tls()?;
            self.ciphertext_pending.set(true);
            if n == 0 {
                // End of stream: what rustls says about it (plaintext left,
                // a clean or an unclean end) comes on the next turn.
                let mut c = self.conn.borrow_mut();
                return match c.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::WouldBlock => {
                        Ok(0)
                    }
                    Err(e) => Err(e),
                };
            }
        }
    }

    /// Encrypts and sends all of `buf`.
    fn write_plain(&self, buf: &[u8]) -> io::Result<()> {
        let _turn = self.write_side.lock();
        let mut done = 0;
        while done < buf.len() {
            let n = self.conn.borrow_mut().writer().write(&buf[done..])?;
            done += n;
            if n == 0 && !self.conn.borrow().wants_write() {
                return Err(io::Error::new(io::ErrorKind::WriteZero, "TLS connection refuses more data"));
            }
            self.flush_tls_locked()?;
        }
        Ok(())
    }

    /// Sends `close_notify`: the peer reads the end of the stream.
    ///
    /// # Errors
    ///
    /// The socket's write error.
    pub fn send_close_notify(&self) -> io::Result<()> {
        self.conn.borrow_mut().send_close_notify();
        self.flush_tls()
    }
}

impl<S> Read for &TlsStream<S>
where
    S: SharedStream,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_plain(buf)
    }
}

impl<S> Write for &TlsStream<S>
where
    S: SharedStream,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_plain(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

impl<S> Read for TlsStream<S>
where
    S: SharedStream,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read_plain(buf)
    }
}

impl<S> Write for TlsStream<S>
where
    S: SharedStream,
{
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_plain(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").field("sock", &self.sock).finish_non_exhaustive()
    }
}

/// A server connection's TLS (see [`Server::tls`](crate::Server::tls)).
///
/// Its read timeout bounds a whole read of plaintext, however many records
/// that takes: records without data (key updates, empty records) do not
/// each get the timeout anew, or a client sending one now and then would
/// hold a connection past its deadlines.
impl crate::transport::Transport for TlsStream<eventlet::net::TcpStream> {
    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.within_read_timeout(|pace| self.read_plain_paced(buf, pace))
    }

    fn write_all(&self, buf: &[u8]) -> io::Result<()> {
        self.write_plain(buf)
    }

    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        self.read_timeout.set(t);
        self.sock.set_read_timeout(t)
    }

    fn set_write_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        self.sock.set_write_timeout(t)
    }

    /// `Write` (the server's last answer is out) sends `close_notify` and
    /// may wait to; `Both` (letting go of a peer, perhaps one that stopped
    /// reading) never waits: it sends `close_notify` only if that can go
    /// out at once, then the socket's shutdown ends any write parked on it.
    fn shutdown(&self, how: std::net::Shutdown) -> io::Result<()> {
        match how {
            std::net::Shutdown::Write => {
                let _ = self.send_close_notify();
            }
            std::net::Shutdown::Both => self.try_close_notify(),
            std::net::Shutdown::Read => {}
        }
        self.sock.shutdown(how)
    }

    fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.sock.peer_addr()
    }

    fn has_input(&self) -> bool {
        // Plaintext rustls holds (or a close_notify it got: `wants_read`
        // is false then too, and the reader sees it), part of a record, or
        // bytes on the socket.
        self.ciphertext_pending.get()
            || self.conn.try_borrow().map_or(true, |c| !c.wants_read())
            || crate::transport::socket_has_input(&self.sock)
    }
}

impl TlsStream<eventlet::net::TcpStream> {
    /// Runs `f` with a pace for its socket reads that ends them all by the
    /// read timeout the server set, from now: each read waits only what is
    /// left of it, and past it the pace fails with `TimedOut`.
    fn within_read_timeout<T>(&self, f: impl FnOnce(&dyn Fn() -> io::Result<()>) -> io::Result<T>) -> io::Result<T> {
        let deadline = self.read_timeout.get().and_then(|t| std::time::Instant::now().checked_add(t));
        f(&|| {
            let Some(deadline) = deadline else { return Ok(()) };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "TLS read timed out"));
            }
            self.sock.set_read_timeout(Some(left))
        })
    }

    /// Sends `close_notify` if it can go out at once: not while a writer
    /// holds the write side (parked in a write the peer does not take,
    /// which would make this wait out the write timeout), and not waiting
    /// for room in the socket's buffer.
    fn try_close_notify(&self) {
        let Some(_turn) = self.write_side.try_lock() else { return };
        let mut out = Vec::new();
        {
            let mut c = self.conn.borrow_mut();
            c.send_close_notify();
            while c.wants_write() {
                if c.write_tls(&mut out).is_err() {
                    return;
                }
            }
        }
        // The descriptor is non-blocking: this send never parks.
        let _ = socket2::SockRef::from(&self.sock).send(&out);
    }

    /// A server connection's handshake, ended by the read timeout the
    /// server set before it (the header timeout) in all, however the
    /// client paces its bytes.
    pub(crate) fn server_handshake(&self) -> io::Result<()> {
        self.within_read_timeout(|pace| self.handshake_paced(pace))
    }
}

/// A server connection's TLS over `tcp` with `config`, before the
/// handshake ([`TlsStream::server_handshake`]).
pub(crate) fn server_stream(
    tcp: eventlet::net::TcpStream,
    config: Arc<ServerConfig>,
) -> io::Result<TlsStream<eventlet::net::TcpStream>> {
    let conn = ServerConnection::new(config).map_err(invalid)?;
    Ok(TlsStream::<eventlet::net::TcpStream>::new(tcp, rustls::Connection::Server(conn)))
}
