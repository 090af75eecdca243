//! A full server makes room for new clients by closing its oldest idle
//! keep-alive connections (as nginx does), never one in the middle of a
//! request: with `serve`, `serve_raw`, and on several hubs.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use eventlet_http::server::raw;
use eventlet_http::{Body, Server};
use http::{Request, Response};
use util::{connect, read_response};

/// How long a `/hold` request's handler runs.
const HOLD: Duration = Duration::from_millis(2500);

/// `/hold` runs [`HOLD`], `/echo` answers its body, anything else `ok`; the
/// body of every answer but `/echo`'s is the hub thread's name.
fn routes(req: Request<Body>) -> Response<Body> {
    match req.uri().path() {
        "/hold" => eventlet::sleep(HOLD),
        "/echo" => return Response::new(Body::from(req.into_body().into_bytes().unwrap())),
        _ => {}
    }
    Response::new(Body::from(std::thread::current().name().unwrap_or("ok").to_owned()))
}

/// [`routes`] as a raw handler.
fn raw_routes(req: &mut raw::Request<'_>, res: &mut raw::Response<'_>) {
    match req.path() {
        "/hold" => eventlet::sleep(HOLD),
        "/echo" => {
            let mut body = Vec::new();
            req.body().read_to_end(&mut body).unwrap();
            res.body_mut().extend_from_slice(&body);
            return;
        }
        _ => {}
    }
    res.body_mut().extend_from_slice(std::thread::current().name().unwrap_or("ok").as_bytes());
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Http,
    Raw,
}

/// Starts a server of at most `max` connections on a thread of its own,
/// serving [`routes`] or [`raw_routes`].
fn start(max: usize, kind: Kind) -> SocketAddr {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let server = Server::bind("127.0.0.1:0").unwrap().max_connections(max);
        tx.send(server.local_addr().unwrap()).unwrap();
        match kind {
            Kind::Http => server.serve(routes).unwrap(),
            Kind::Raw => server.serve_raw(raw_routes).unwrap(),
        }
    });
    rx.recv_timeout(util::TIMEOUT).unwrap()
}

fn get(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    read_response(s)
}

/// `n` connections, each answered once and then left idle, oldest first.
fn idle_clients(addr: SocketAddr, n: usize) -> Vec<TcpStream> {
    idle_clients_by_hub(addr, n).into_iter().map(|(c, _)| c).collect()
}

/// [`idle_clients`], each with the name of the hub thread that serves it.
fn idle_clients_by_hub(addr: SocketAddr, n: usize) -> Vec<(TcpStream, String)> {
    (0..n)
        .map(|_| {
            let mut c = connect(addr);
            let r = get(&mut c, "/");
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            let hub = r.split("\r\n\r\n").nth(1).unwrap().to_owned();
            (c, hub)
        })
        .collect()
}

/// Whether the server closed `c` (end of stream) within `within`.
fn sees_eof(c: &mut TcpStream, within: Duration) -> bool {
    c.set_read_timeout(Some(within)).unwrap();
    let mut b = [0; 64];
    let r = c.read(&mut b);
    c.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    match r {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&b[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(e) => panic!("{e}"),
    }
}

/// A new client on `addr`, answered within a second.
fn answered_within_a_second(addr: SocketAddr) -> TcpStream {
    let started = Instant::now();
    let mut c = connect(addr);
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let r = get(&mut c, "/");
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    c.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    c
}

fn full_of_idle_connections(kind: Kind) {
    let addr = start(8, kind);
    let mut idle = idle_clients(addr, 8);
    let mut ninth = answered_within_a_second(addr);
    // An eighth of 8 idle: the oldest one only.
    assert!(sees_eof(&mut idle[0], util::TIMEOUT), "the oldest idle connection was not closed");
    for (i, c) in idle.iter_mut().enumerate().skip(1) {
        assert!(!sees_eof(c, Duration::from_millis(20)), "connection {i} was closed too");
    }
    // The others, and the new one, go on.
    assert!(get(&mut idle[7], "/").starts_with("HTTP/1.1 200"));
    assert!(get(&mut ninth, "/").starts_with("HTTP/1.1 200"));
}

#[test]
fn a_full_server_closes_its_oldest_idle_connection_for_a_new_client() {
    full_of_idle_connections(Kind::Http);
}

#[test]
fn a_full_raw_server_closes_its_oldest_idle_connection_for_a_new_client() {
    full_of_idle_connections(Kind::Raw);
}

fn busy_connections_are_never_closed(kind: Kind) {
    let addr = start(3, kind);
    // Half a head sent.
    let mut head = connect(addr);
    head.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    // Its body being read (3 of 10 bytes sent).
    let mut body = connect(addr);
    body.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc").unwrap();
    // Its handler running.
    let mut handler = connect(addr);
    let held = Instant::now();
    handler.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    std::thread::sleep(Duration::from_millis(100));

    // Full, nothing idle: a new client waits.
    let mut fourth = connect(addr);
    fourth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    for c in [&mut head, &mut body, &mut handler] {
        assert!(!sees_eof(c, Duration::from_millis(200)), "a busy connection was closed");
    }
    assert!(!sees_eof(&mut fourth, Duration::from_millis(1)), "served past the limit");

    // Each busy connection gets its answer.
    head.write_all(b"st: x\r\n\r\n").unwrap();
    assert!(read_response(&mut head).starts_with("HTTP/1.1 200"));
    body.write_all(b"defghij").unwrap();
    assert!(read_response(&mut body).ends_with("\r\n\r\nabcdefghij"));
    // Now `head` and `body` are idle: the waiting client gets in, the
    // older of them (`head`) closed for it.
    fourth.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    assert!(read_response(&mut fourth).starts_with("HTTP/1.1 200"));
    assert!(sees_eof(&mut head, util::TIMEOUT), "the idle connection was not closed");
    assert!(held.elapsed() < HOLD, "the test ran too slowly to prove anything");
    let r = read_response(&mut handler);
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(get(&mut body, "/").starts_with("HTTP/1.1 200"));
}

#[test]
fn connections_in_the_middle_of_a_request_are_never_closed_to_make_room() {
    busy_connections_are_never_closed(Kind::Http);
}

#[test]
fn raw_connections_in_the_middle_of_a_request_are_never_closed_to_make_room() {
    busy_connections_are_never_closed(Kind::Raw);
}

/// Starts `server` on several hubs.
fn start_workers(server: eventlet_http::Workers) -> (SocketAddr, eventlet::StopHandle) {
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    std::thread::spawn(move || server.serve(routes).unwrap());
    (addr, stop)
}

#[test]
fn on_two_hubs_a_full_server_closes_idle_connections_for_a_new_client() {
    let (addr, stop) = start_workers(Server::bind("127.0.0.1:0").unwrap().max_connections(8).workers(2));
    let mut idle = idle_clients_by_hub(addr, 8);
    let _ninth = answered_within_a_second(addr);
    // Each hub keeps its own order of idle connections: whichever hub made
    // room (for its own waiting client or when the other asked it, so one
    // hub may close two) closed its oldest first.
    let closed: Vec<usize> = (0..8).filter(|&i| sees_eof(&mut idle[i].0, Duration::from_millis(300))).collect();
    assert!(!closed.is_empty() && closed.len() <= 2, "closed: {closed:?}");
    for &i in &closed {
        let older_open = (0..i).find(|&j| idle[j].1 == idle[i].1 && !closed.contains(&j));
        assert_eq!(
            older_open,
            None,
            "closed {closed:?} while an older idle connection of its hub stayed open; hubs {:?}",
            idle.iter().map(|c| &c.1).collect::<Vec<_>>()
        );
    }
    stop.stop();
}

#[test]
fn a_hub_with_nothing_idle_asks_the_other_hubs_to_make_room() {
    // One listening socket per hub: the kernel sends each client to one of
    // them whatever their load, so a client often waits on a hub whose
    // connections are all busy.
    let listener = eventlet::net::TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    let (addr, stop) = start_workers(Server::new(listener).max_connections(8).workers(2));
    let (mut conns, hubs): (Vec<TcpStream>, Vec<String>) = idle_clients_by_hub(addr, 8).into_iter().unzip();
    // Every connection of one hub busy, those of the other idle.
    let busy_hub = hubs[0].clone();
    let started = Instant::now();
    for (c, hub) in conns.iter_mut().zip(&hubs) {
        if *hub == busy_hub {
            c.write_all(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        }
    }
    let idle_on_other = hubs.iter().filter(|h| **h != busy_hub).count();
    assert!(idle_on_other >= 2, "connections not spread: {hubs:?}");
    // Each new client, whichever hub's socket it lands on, gets in by
    // closing an idle connection (its own hub's, or the other's).
    let new: Vec<TcpStream> = (0..idle_on_other.min(4)).map(|_| answered_within_a_second(addr)).collect();
    assert!(started.elapsed() < HOLD, "the test ran too slowly to prove anything");
    for (c, hub) in conns.iter_mut().zip(&hubs) {
        if *hub == busy_hub {
            let r = read_response(c);
            assert!(r.starts_with("HTTP/1.1 200"), "a busy connection was cut: {r}");
        }
    }
    drop(new);
    stop.stop();
}

#[cfg(feature = "tls")]
#[test]
fn over_tls_the_idle_connection_is_closed_and_the_busy_one_kept() {
    use eventlet_http::tls;

    /// Reads one answer of `util::routes` to `GET /` (its body: `hello`).
    fn hello<S: Read>(s: &mut S) -> String {
        let mut out = Vec::new();
        let mut b = [0; 1024];
        while !out.ends_with(b"hello") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "closed: {:?}", String::from_utf8_lossy(&out));
            out.extend_from_slice(&b[..n]);
        }
        String::from_utf8(out).unwrap()
    }

    let dir = std::env::temp_dir().join(format!("eventlet-http-make-room-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    util::make_certs(&dir);
    let (cert, key) = (dir.join("srv.pem"), dir.join("srv.key"));
    let addr = util::spawn_server(move |s: Server| s.max_connections(2).tls_files(cert, key).unwrap(), util::routes);
    let config = tls::client_config(Some(&dir.join("ca.pem"))).unwrap();
    let open = || {
        let tcp = eventlet::net::TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        tls::connect(tcp, "127.0.0.1", config.clone()).unwrap()
    };
    let (mut a, mut b) = (open(), open());
    for s in [&mut a, &mut b] {
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(hello(s).starts_with("HTTP/1.1 200"));
    }
    // `a`, the older, is now in the middle of a request: `b` is the one
    // closed for a third client.
    a.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    eventlet::sleep(Duration::from_millis(50));
    let started = Instant::now();
    let mut c = open();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert!(hello(&mut c).starts_with("HTTP/1.1 200"));
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    let mut rest = Vec::new();
    assert_eq!(b.read_to_end(&mut rest).unwrap(), 0, "the idle connection was not closed");
    a.write_all(b"st: x\r\n\r\n").unwrap();
    assert!(hello(&mut a).starts_with("HTTP/1.1 200"));
    let _ = std::fs::remove_dir_all(&dir);
}
