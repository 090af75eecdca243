//! The peer servers built into this binary, each run alone in its own
//! process by `eventlet-bench peer KIND ADDR --threads N` (pinned to the
//! server CPUs by the harness) until it is killed.
//!
//! Every one is written the way its runtime's documentation shows: one
//! green thread / task / coroutine per connection, except `mio`, the
//! hand-written edge-triggered event loop that is the floor. With one
//! thread: eventlet on the main thread's hub, tokio's current-thread
//! runtime, may with one worker. With N: eventlet's `Server::workers(N)`,
//! tokio's multi-thread runtime with N workers, may with N workers. A
//! connection that fails (reset, closed) is closed; nothing here panics on
//! I/O.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use anyhow::{Context, Result};

use super::load::HTTP_BODY;

/// Echo buffer size: larger than any message of the load.
const BUF: usize = 4096;

/// Most connections a server holds at once (the load opens up to 1,000).
const MAX_CONNS: usize = 20_000;

/// eventlet: a green `TcpListener`, a `GreenPool`, one green thread per
/// connection doing blocking read/write (the seed's echo server); with
/// several threads, the same handler on `Server::workers`, its listener
/// shared out as `balance` says, with or without passing connections to
/// the hub with the fewest.
pub(crate) fn eventlet_echo(
    addr: &str,
    threads: usize,
    balance: eventlet::net::Balance,
    rebalance: bool,
) -> Result<()> {
    use eventlet::net::{TcpListener, TcpStream};

    fn handle(mut sock: TcpStream) {
        let _ = sock.set_nodelay(true);
        let mut buf = [0u8; BUF];
        loop {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sock.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
    }

    if threads > 1 {
        let listener = match balance {
            eventlet::net::Balance::ReusePort => TcpListener::bind_reuse_port(addr),
            _ => TcpListener::bind(addr),
        }
        .with_context(|| format!("cannot listen on {addr}"))?;
        let server = eventlet::Server::new(listener, MAX_CONNS).workers(threads).balance(balance).rebalance(rebalance);
        server.serve(|sock, _| handle(sock))?;
        return Ok(());
    }
    let server = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let pool = eventlet::GreenPool::new(MAX_CONNS);
    loop {
        match server.accept() {
            Ok((sock, _)) => pool.spawn_n(move || handle(sock)),
            Err(e) => accept_failed(e)?,
        }
    }
}

/// eventlet-http's server: a plain function from request to response,
/// keep-alive, no access log; `plaintext` adds the `Server` header
/// TechEmpower asks for. With several threads, `Server::workers`.
pub(crate) fn eventlet_http(addr: &str, threads: usize, plaintext: bool) -> Result<()> {
    use eventlet_http::{Body, Server};

    // The same handler as hyper's below: a response and one header (two
    // for plaintext).
    fn hello(plaintext: bool) -> hyper::Response<Body> {
        let mut res = hyper::Response::new(Body::from(HTTP_BODY));
        let h = res.headers_mut();
        h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
        if plaintext {
            h.insert(hyper::header::SERVER, hyper::header::HeaderValue::from_static("eventlet"));
        }
        res
    }

    let server = Server::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let server = server.max_connections(MAX_CONNS).access_log(false);
    if threads == 1 {
        server.serve(move |_req| hello(plaintext))?;
    } else {
        server.workers(threads).serve(move |_req| hello(plaintext))?;
    }
    Ok(())
}

/// eventlet-http's server with a raw handler (`Server::serve_raw`: the
/// request head borrowed as parsed, the response written into the
/// connection's buffers, no `http` types), answering as the one above.
pub(crate) fn eventlet_raw(addr: &str, threads: usize, plaintext: bool) -> Result<()> {
    use eventlet_http::server::raw::{HeaderLine, Request, Response};
    use eventlet_http::Server;

    const TEXT: HeaderLine = HeaderLine::new("Content-Type: text/plain");
    const SERVER: HeaderLine = HeaderLine::new("Server: eventlet");
    let hello = move |_req: &mut Request<'_>, res: &mut Response<'_>| {
        res.header_line(TEXT);
        if plaintext {
            res.header_line(SERVER);
        }
        res.body_static(HTTP_BODY);
    };
    let server = Server::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let server = server.max_connections(MAX_CONNS).access_log(false);
    if threads == 1 {
        server.serve_raw(hello)?;
    } else {
        server.workers(threads).serve_raw(hello)?;
    }
    Ok(())
}

/// A tokio runtime: current-thread for one thread, else multi-thread with
/// `threads` workers.
fn tokio_runtime(threads: usize) -> Result<tokio::runtime::Runtime> {
    let mut b = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    b.enable_io().build().context("cannot build the tokio runtime")
}

/// tokio: one task per connection.
pub(crate) fn tokio_echo(addr: &str, threads: usize) -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    tokio_runtime(threads)?.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        loop {
            let mut sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    accept_failed(e)?;
                    continue;
                }
            };
            tokio::spawn(async move {
                let _ = sock.set_nodelay(true);
                let mut buf = [0u8; BUF];
                loop {
                    match sock.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if sock.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    })
}

/// hyper 1's HTTP/1.1 server on tokio, one task per connection;
/// `plaintext` adds the `Server` header TechEmpower asks for.
pub(crate) fn hyper_http(addr: &str, threads: usize, plaintext: bool) -> Result<()> {
    use bytes::Bytes;
    use http_body_util::Full;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    fn hello(plaintext: bool) -> hyper::Response<Full<Bytes>> {
        let mut res = hyper::Response::new(Full::new(Bytes::from_static(HTTP_BODY)));
        let h = res.headers_mut();
        h.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain"));
        if plaintext {
            h.insert(hyper::header::SERVER, hyper::header::HeaderValue::from_static("hyper"));
        }
        res
    }

    tokio_runtime(threads)?.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
        loop {
            let sock = match listener.accept().await {
                Ok((sock, _)) => sock,
                Err(e) => {
                    accept_failed(e)?;
                    continue;
                }
            };
            let _ = sock.set_nodelay(true);
            tokio::spawn(async move {
                let service = service_fn(move |_req: hyper::Request<hyper::body::Incoming>| async move {
                    Ok::<_, hyper::Error>(hello(plaintext))
                });
                // For plaintext, hyper's option that writes pipelined
                // responses out together.
                let conn = hyper::server::conn::http1::Builder::new()
                    .pipeline_flush(plaintext)
                    .serve_connection(TokioIo::new(sock), service);
                // A reset or closed connection ends here; nothing to report.
                let _ = conn.await;
            });
        }
    })
}

/// Sets may up for `threads` worker threads, left on the CPUs the harness
/// chose.
fn may_workers(threads: usize) {
    may::config().set_workers(threads);
    may::config().set_worker_pin(false);
}

/// may: one coroutine per connection.
pub(crate) fn may_echo(addr: &str, threads: usize) -> Result<()> {
    may_workers(threads);
    let listener = may::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let acceptor = may::go!(move || {
        for sock in listener.incoming() {
            let mut sock = match sock {
                Ok(s) => s,
                Err(e) => match accept_failed(e) {
                    Ok(()) => continue,
                    Err(_) => break,
                },
            };
            may::go!(move || {
                let _ = sock.set_nodelay(true);
                let mut buf = [0u8; BUF];
                loop {
                    match sock.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if sock.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    acceptor.join().map_err(|_| anyhow::anyhow!("the may accept loop panicked"))
}

/// may_minihttp's hello service.
#[derive(Clone)]
struct MayHello;

impl may_minihttp::HttpService for MayHello {
    fn call(
        &mut self,
        _req: may_minihttp::Request<'_, '_, '_>,
        res: &mut may_minihttp::Response<'_>,
    ) -> io::Result<()> {
        res.header("Content-Type: text/plain");
        res.body("Hello, World!");
        Ok(())
    }
}

/// may_minihttp on `threads` may workers (its responses carry `Server`
/// and `Date` headers already).
pub(crate) fn may_http(addr: &str, threads: usize) -> Result<()> {
    use may_minihttp::HttpServer;

    may_workers(threads);
    let server = HttpServer(MayHello).start(addr).with_context(|| format!("cannot listen on {addr}"))?;
    server.join().map_err(|_| anyhow::anyhow!("the may_minihttp server panicked"))
}

/// The floor: one thread, raw mio, edge-triggered, a slot per connection.
pub(crate) fn mio_echo(addr: &str) -> Result<()> {
    use mio::net::{TcpListener, TcpStream};
    use mio::{Events, Interest, Poll, Token};

    /// A connection and the echo bytes it could not write yet.
    struct Conn {
        sock: TcpStream,
        pending: Vec<u8>,
    }

    /// Writes `data` (after what is pending); keeps what the socket did not
    /// take. `Err` means: close the connection.
    fn send(c: &mut Conn, data: &[u8]) -> io::Result<()> {
        if !c.pending.is_empty() {
            c.pending.extend_from_slice(data);
            return flush(c);
        }
        let mut off = 0;
        while off < data.len() {
            match c.sock.write(&data[off..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => off += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        c.pending.extend_from_slice(&data[off..]);
        Ok(())
    }

    fn flush(c: &mut Conn) -> io::Result<()> {
        while !c.pending.is_empty() {
            match c.sock.write(&c.pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    c.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Echoes what arrived. `Ok(false)` or `Err`: close the connection.
    fn echo(c: &mut Conn, buf: &mut [u8]) -> io::Result<bool> {
        loop {
            match c.sock.read(buf) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    send(c, &buf[..n])?;
                    if n < buf.len() {
                        // Drained: the next arrival raises a new edge.
                        return Ok(true);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    const LISTENER: Token = Token(usize::MAX);
    let addr = addr.parse().with_context(|| format!("bad address {addr}"))?;
    let mut listener = TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let mut poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut conns: HashMap<usize, Conn> = HashMap::new();
    let mut next = 0usize;
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; BUF];
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        for ev in events.iter() {
            if ev.token() == LISTENER {
                loop {
                    match listener.accept() {
                        Ok((mut sock, _)) => {
                            let _ = sock.set_nodelay(true);
                            let token = next;
                            next += 1;
                            if poll
                                .registry()
                                .register(&mut sock, Token(token), Interest::READABLE | Interest::WRITABLE)
                                .is_ok()
                            {
                                conns.insert(token, Conn { sock, pending: Vec::new() });
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => {
                            accept_failed(e)?;
                            break;
                        }
                    }
                }
                continue;
            }
            let token = ev.token().0;
            let Some(c) = conns.get_mut(&token) else { continue };
            let mut open = true;
            if ev.is_writable() && !c.pending.is_empty() {
                open = flush(c).is_ok();
            }
            if open && (ev.is_readable() || ev.is_read_closed() || ev.is_error()) {
                open = matches!(echo(c, &mut buf), Ok(true));
            }
            if !open {
                if let Some(mut c) = conns.remove(&token) {
                    let _ = poll.registry().deregister(&mut c.sock);
                }
            }
        }
    }
}

/// An accept that failed: says so, and hands the error back when retrying
/// cannot cure it (a client that gave up, a signal or running out of
/// descriptors or memory can: the peer goes on accepting).
fn accept_failed(e: io::Error) -> io::Result<()> {
    eprintln!("eventlet-bench peer: accept: {e}");
    let transient = matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset | io::ErrorKind::Interrupted
    ) || matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM));
    if transient {
        Ok(())
    } else {
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    use super::super::load::{probe, Proto};

    /// Starts `server` on a free port on its own OS thread (left running:
    /// the peers serve until their process ends) and waits until it listens.
    fn start(server: fn(&str) -> anyhow::Result<()>) -> SocketAddr {
        let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        std::thread::spawn(move || server(&addr.to_string()));
        let start = Instant::now();
        while std::net::TcpStream::connect(addr).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "the server did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        addr
    }

    #[test]
    fn echo_peers_echo() {
        use eventlet::net::Balance;
        let servers: [fn(&str) -> anyhow::Result<()>; 6] = [
            |a| super::eventlet_echo(a, 1, Balance::Shared, true),
            |a| super::eventlet_echo(a, 2, Balance::Shared, true),
            |a| super::eventlet_echo(a, 2, Balance::ReusePort, false),
            |a| super::tokio_echo(a, 1),
            |a| super::tokio_echo(a, 2),
            super::mio_echo,
        ];
        for server in servers {
            let addr = start(server);
            probe(addr, Proto::Echo).unwrap();
            probe(addr, Proto::Echo).unwrap();
        }
    }

    #[test]
    fn http_peers_say_hello() {
        let servers: [fn(&str) -> anyhow::Result<()>; 9] = [
            |a| super::eventlet_http(a, 1, false),
            |a| super::eventlet_http(a, 2, false),
            |a| super::eventlet_http(a, 2, true),
            |a| super::eventlet_raw(a, 1, false),
            |a| super::eventlet_raw(a, 1, true),
            |a| super::eventlet_raw(a, 2, true),
            |a| super::hyper_http(a, 1, false),
            |a| super::hyper_http(a, 2, true),
            |a| super::hyper_http(a, 1, true),
        ];
        for server in servers {
            let addr = start(server);
            probe(addr, Proto::Http).unwrap();
            probe(addr, Proto::Plaintext).unwrap();
        }
    }
}
