//! `Server::workers`: the HTTP server on several hubs. Connections spread
//! over the hubs; one connection limit, one access log and one graceful
//! shutdown for all of them; a handler's panic stays in its request; an
//! accept error on any hub reaches the caller.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlet_http::{Body, Server};
use http::{Request, Response};
use util::{connect, read_all, read_response};

/// Set once a `/held` request has begun.
static HELD_ENTERED: AtomicBool = AtomicBool::new(false);
/// Lets `/held` requests answer.
static HELD_RELEASED: AtomicBool = AtomicBool::new(false);

/// Answers with the name of the hub thread that served the request; `/held`
/// waits until released (10 s at most); `/panic` panics.
fn which_hub(req: Request<Body>) -> Response<Body> {
    match req.uri().path() {
        "/held" => {
            HELD_ENTERED.store(true, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(10);
            while !HELD_RELEASED.load(Ordering::SeqCst) && Instant::now() < deadline {
                eventlet::sleep(Duration::from_millis(1));
            }
        }
        "/panic" => panic!("handler told to panic"),
        _ => {}
    }
    Response::new(Body::from(std::thread::current().name().unwrap_or("?").to_owned()))
}

fn get(s: &mut TcpStream, path: &str) -> String {
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).unwrap();
    read_response(s)
}

fn body(response: &str) -> &str {
    response.split("\r\n\r\n").nth(1).unwrap_or("")
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Starts `server` serving `which_hub` on a thread of its own.
fn start(
    server: eventlet_http::Workers,
) -> (SocketAddr, eventlet::StopHandle, std::thread::JoinHandle<std::io::Result<()>>) {
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    (addr, stop, std::thread::spawn(move || server.serve(which_hub)))
}

#[test]
fn keep_alive_connections_spread_over_the_hubs_and_shut_down_gracefully() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let sink = log.clone();
    let server = Server::bind("127.0.0.1:0")
        .unwrap()
        .access_log_with(move |line| sink.lock().unwrap().push(line.to_owned()))
        .workers(2);
    let (addr, stop, serving) = start(server);
    // 40 keep-alive connections, two requests each, all left open.
    let mut conns: Vec<TcpStream> = (0..40).map(|_| connect(addr)).collect();
    let mut hubs: HashMap<String, usize> = HashMap::new();
    for c in &mut conns {
        let first = get(c, "/");
        let again = get(c, "/");
        assert_eq!(body(&first), body(&again), "a connection stays on its hub");
        *hubs.entry(body(&first).to_owned()).or_default() += 1;
    }
    assert_eq!(hubs.len(), 2, "{hubs:?}");
    let n: Vec<usize> = hubs.values().copied().collect();
    assert!(n[0].abs_diff(n[1]) <= 2, "{hubs:?}");
    assert!(hubs.keys().all(|k| k.starts_with("eventlet-srv-")), "{hubs:?}");
    // One access log for both hubs: every request has its line.
    wait_until("80 log lines", || log.lock().unwrap().len() == 80);
    assert!(log.lock().unwrap().iter().all(|l| l.contains("\"GET / HTTP/1.1\" 200 ")));
    assert_eq!(stop.running(), 40);

    // A request in flight when the shutdown starts (held until the idle
    // connections, on both hubs, are seen closed: not a fixed time, which
    // a stalled machine could use up before the shutdown) is finished,
    // with `Connection: close`; the idle connections are closed; serve
    // returns.
    let mut busy = conns.pop().unwrap();
    busy.write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    wait_until("the held request has begun", || HELD_ENTERED.load(Ordering::SeqCst));
    stop.stop();
    for mut c in conns {
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("an idle connection stayed open: {other:?}"),
        }
    }
    HELD_RELEASED.store(true, Ordering::SeqCst);
    let r = read_all(&mut busy);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("Connection: close\r\n"), "{r}");
    serving.join().unwrap().unwrap();
    assert_eq!(stop.running(), 0);
    assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn one_connection_limit_for_all_hubs() {
    let (addr, stop, serving) = start(Server::bind("127.0.0.1:0").unwrap().max_connections(4).workers(2));
    let mut held: Vec<TcpStream> = (0..4).map(|_| connect(addr)).collect();
    for c in &mut held {
        assert!(get(c, "/").starts_with("HTTP/1.1 200"));
        // Half a head: busy (an idle connection would be closed to make
        // room for the fifth, see tests/make_room.rs).
        c.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    }
    // A fifth waits in the backlog until one of the four leaves.
    let mut fifth = connect(addr);
    fifth.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    fifth.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut b = [0u8; 1];
    assert!(fifth.read(&mut b).is_err(), "served past the limit");
    assert_eq!(stop.running(), 4);
    drop(held.pop());
    fifth.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rest = read_response(&mut fifth);
    rest.insert(0, b[0] as char);
    assert!(rest.contains("200 OK"), "{rest}");
    stop.stop();
    drop(held);
    drop(fifth);
    serving.join().unwrap().unwrap();
}

#[test]
fn a_panicking_handler_answers_500_and_its_hub_goes_on() {
    let (addr, stop, serving) = start(Server::bind("127.0.0.1:0").unwrap().workers(2));
    for _ in 0..10 {
        let mut c = connect(addr);
        assert!(get(&mut c, "/panic").starts_with("HTTP/1.1 500"));
        assert!(get(&mut c, "/").starts_with("HTTP/1.1 200"));
    }
    stop.stop();
    serving.join().unwrap().unwrap();
}

#[test]
fn an_accept_error_on_any_hub_reaches_the_caller() {
    let listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    // A second descriptor of the same socket, as a std stream: its
    // `shutdown` shuts the listening socket down under the server.
    let same = std::net::TcpStream::from(std::os::fd::OwnedFd::from(listener.try_clone().unwrap()));
    let (_, _, serving) = start(Server::new(listener).workers(2));
    std::thread::sleep(Duration::from_millis(100));
    // The hubs' next accepts fail with EINVAL, which no retry cures.
    same.shutdown(std::net::Shutdown::Both).unwrap();
    let err = serving.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
}

#[test]
fn handlers_made_per_hub_may_hold_rc() {
    let server = Server::bind("127.0.0.1:0").unwrap().workers(2);
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    let serving = std::thread::spawn(move || {
        server.serve_with(|| {
            let served = std::rc::Rc::new(std::cell::Cell::new(0u32));
            move |_req| {
                served.set(served.get() + 1);
                Response::new(Body::from(served.get().to_string()))
            }
        })
    });
    let mut c = connect(addr);
    let counts: Vec<u32> = (0..5).map(|_| body(&get(&mut c, "/")).parse().unwrap()).collect();
    assert_eq!(counts, [1, 2, 3, 4, 5], "one connection, one hub, one counter");
    stop.stop();
    drop(c);
    serving.join().unwrap().unwrap();
}
