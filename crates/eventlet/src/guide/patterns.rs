//! # The two patterns
//!
//! Most eventlet programs are one of two shapes (eventlet's *Design
//! Patterns* page). Both read as plain blocking code and run from a plain
//! `fn main`: the first blocking call starts the thread's hub.
//!
//! ## Client side: many requests at once
//!
//! The web crawler: a list of URLs, a function that fetches one, and a
//! [`GreenPool`](crate::GreenPool) that runs up to `size` of those calls at
//! once. [`imap`](crate::GreenPool::imap) yields the results in input
//! order. With `eventlet_http::client::get` as `fetch` this is the seed's
//! crawler line for line (`crates/eventlet-http/examples/webcrawler.rs`);
//! here `fetch` asks a local server of our own for a greeting, so the
//! example needs no network:
//!
//! ```
//! use std::io::{Read, Write};
//! use std::net::SocketAddr;
//! use eventlet::net::{TcpListener, TcpStream};
//! use eventlet::GreenPool;
//!
//! fn fetch(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
//!     let mut body = Vec::new();
//!     TcpStream::connect(addr)?.read_to_end(&mut body)?;
//!     Ok(body)
//! }
//!
//! // Three "sites", each a green server that says who it is.
//! let mut urls = Vec::new();
//! for name in ["a", "b", "c"] {
//!     let site = TcpListener::bind("127.0.0.1:0")?;
//!     urls.push(site.local_addr()?);
//!     eventlet::spawn_n(move || {
//!         while let Ok((mut s, _)) = site.accept() {
//!             let _ = s.write_all(format!("hello from {name}").as_bytes());
//!         }
//!     });
//! }
//!
//! let pool = GreenPool::new(1000);
//! for body in pool.imap(fetch, urls) {
//!     println!("got body {}", body?.len());
//! }
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## Server side: one green thread per connection
//!
//! The echo server: accept, and hand each connection to a green thread of
//! a pool that bounds how many are served at once
//! (`crates/eventlet/examples/echoserver.rs`; [`Server`](crate::Server)
//! adds a stop handle, back-off when descriptors run out, and several
//! cores with [`workers`](crate::Server::workers)).
//!
//! ```
//! use std::io::{Read, Write};
//! use eventlet::net::{TcpListener, TcpStream};
//! use eventlet::GreenPool;
//!
//! fn handle(mut client: TcpStream) {
//!     let mut c = [0; 1];
//!     while client.read(&mut c).unwrap_or(0) == 1 {
//!         if client.write_all(&c).is_err() {
//!             break;
//!         }
//!     }
//! }
//!
//! let server = TcpListener::bind("127.0.0.1:0")?;
//! let addr = server.local_addr()?;
//! eventlet::spawn_n(move || {
//!     let pool = GreenPool::new(10_000);
//!     while let Ok((new_sock, _address)) = server.accept() {
//!         pool.spawn_n(move || handle(new_sock));
//!     }
//! });
//!
//! // A client, to see it work.
//! let mut c = TcpStream::connect(addr)?;
//! c.write_all(b"ping")?;
//! let mut back = [0; 4];
//! c.read_exact(&mut back)?;
//! assert_eq!(&back, b"ping");
//! # Ok::<(), std::io::Error>(())
//! ```
//!
//! ## When a green thread must not hold the others up
//!
//! Scheduling is cooperative: a green thread runs until it blocks. Green
//! I/O that never blocks still yields every [`BUDGET`](crate::hub::BUDGET)
//! operations; a long computation should call
//! [`yield_now`](crate::yield_now) now and then or run on an OS thread
//! through [`tpool::execute`](crate::tpool::execute), as should a blocking
//! call from a crate that knows nothing of green threads (or see
//! [`greening`](super::greening)).
