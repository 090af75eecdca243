//! TLS over green streams (eventlet's `wrap_ssl`), with rustls: configs
//! from PEM files, and [`accept`] / [`connect`] to wrap any stream (a green
//! [`TcpStream`](eventlet::net::TcpStream) above all) into a
//! [`rustls::StreamOwned`] after a completed handshake.
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
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection, StreamOwned};

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

/// A client config trusting the CA certificates of a PEM file, or with
/// `None`, Mozilla's roots (bundled).
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
pub fn accept<S: Read + Write>(
    mut stream: S,
    config: Arc<ServerConfig>,
) -> io::Result<StreamOwned<ServerConnection, S>> {
    let mut conn = ServerConnection::new(config).map_err(invalid)?;
    handshake(&mut conn, &mut stream)?;
    Ok(StreamOwned::new(conn, stream))
}

/// The client side of a TLS handshake with `server_name` (a DNS name or an
/// IP address, checked against the server's certificate) over `stream`.
///
/// # Errors
///
/// A bad `server_name` (`InvalidInput`), the stream's error, or
/// `InvalidData` for a failed handshake (an untrusted certificate...).
pub fn connect<S: Read + Write>(
    mut stream: S,
    server_name: &str,
    config: Arc<ClientConfig>,
) -> io::Result<StreamOwned<ClientConnection, S>> {
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut conn = ClientConnection::new(config, name).map_err(invalid)?;
    handshake(&mut conn, &mut stream)?;
    Ok(StreamOwned::new(conn, stream))
}

/// Drives a handshake to its end over a blocking (green) stream.
pub(crate) fn handshake<C, D, S>(conn: &mut C, stream: &mut S) -> io::Result<()>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
    S: Read + Write,
{
    while conn.is_handshaking() {
        let (read, _) = conn.complete_io(stream)?;
        if read == 0 && conn.is_handshaking() && !conn.wants_write() {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed during the TLS handshake"));
        }
    }
    while conn.wants_write() {
        conn.write_tls(stream)?;
    }
    Ok(())
}
