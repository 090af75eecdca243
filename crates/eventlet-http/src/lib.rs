//! HTTP/1.1 on eventlet green threads: a server whose handlers are plain
//! functions from [`http::Request`] to [`http::Response`] (eventlet's
//! `wsgi`), and a client (eventlet's green `urllib2`), both with TLS, and
//! WebSocket on top (eventlet's `websocket`).
//!
//! ```
//! use std::io::{Read, Write};
//! use eventlet_http::{Body, Server};
//!
//! let server = Server::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! let stop = server.shutdown_handle();
//! eventlet::spawn_n(move || {
//!     server.serve(|_req| http::Response::new(Body::from("Hello, World!\r\n"))).unwrap();
//! });
//!
//! // Any HTTP client will do; here, by hand over a green socket.
//! let mut c = eventlet::net::TcpStream::connect(addr)?;
//! c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
//! let mut reply = String::new();
//! c.read_to_string(&mut reply)?;
//! assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
//! assert!(reply.contains("\r\nContent-Length: 15\r\n"));
//! assert!(reply.ends_with("\r\n\r\nHello, World!\r\n"));
//! stop.shutdown();
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # How it works
//!
//! Everything is blocking code on green sockets
//! ([`eventlet::net::TcpStream`]): a call that would block parks only its
//! own green thread, so one OS thread serves thousands of connections.
//! The server parses request heads with `httparse` and speaks HTTP/1.0 and
//! 1.1 with keep-alive, pipelining, chunked bodies both ways,
//! `Expect: 100-continue`, and limits with the right status codes (see
//! [`server`]). The client is ureq 3 with its connector and resolver
//! replaced by green ones (see [`client`]), so the seed's crawler reads:
//!
//! ```no_run
//! use eventlet::GreenPool;
//!
//! fn fetch(url: &str) -> std::io::Result<Vec<u8>> {
//!     eventlet_http::get(url)?.into_body().into_bytes()
//! }
//!
//! let urls = ["http://example.com/", "http://example.org/"];
//! let pool = GreenPool::new(1000);
//! for body in pool.imap(fetch, urls) {
//!     println!("got body {}", body?.len());
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! The server speaks HTTPS with [`Server::tls`] or [`Server::tls_files`]
//! (a PEM certificate chain and key); the client fetches `https://` URLs
//! trusting what curl trusts (the system's CA certificates, or the file
//! `SSL_CERT_FILE` names) or a CA file of your own
//! ([`ClientBuilder::ca_file`]); [`tls`] wraps any green stream, and one
//! green thread may read a TLS stream while another writes. A
//! [`websocket`] handler upgrades a request of the server (with
//! permessage-deflate when the client offers it), and the same module
//! connects to WebSocket servers as a client.
//!
//! # Several cores
//!
//! [`Server::serve`] runs on the calling hub: one core. [`Server::workers`]
//! serves on a hub per core (`.workers(eventlet::hub::cores())`), each on
//! its own OS thread, with one connection limit, one access log and one
//! graceful shutdown for all of them ([`Workers`]); the handler is then
//! `Send + Sync`, or made on each hub by [`Workers::serve_with`]. A
//! connection stays on the hub that took it, so its handler may use `Rc`
//! and thread-locals as on one hub.
//!
//! ```no_run
//! eventlet_http::Server::bind("0.0.0.0:8090")?
//!     .workers(eventlet::hub::cores())
//!     .serve(|_req| http::Response::new("Hello, World!\r\n".into()))?;
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! # Features
//!
//! - `tls` (default): HTTPS in the server ([`Server::tls`]) and the client
//!   (`https://` URLs), and the [`tls`] module; rustls with its `ring`
//!   provider, the system's trust store (`rustls-native-certs`) with
//!   Mozilla's roots bundled as the fallback.
#![deny(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod body;
pub mod client;
mod date;
pub mod server;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
mod upgrade;
pub mod websocket;

pub use body::Body;
pub use client::{get, post, Client, ClientBuilder};
pub use server::{serve, RemoteAddr, Server, ShutdownHandle, Workers};
pub use upgrade::{Upgraded, UpgradedWriter};

#[doc(hidden)]
pub use server::{parse_request_for_fuzzing, parse_request_for_fuzzing_raw, FUZZ_METHOD_HEADER};

pub use http;
pub use tungstenite;
