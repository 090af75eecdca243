//! Connections over time: keep-alive, pipelining, timeouts, panics, the
//! access log, the connection cap and graceful shutdown.

mod util;

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlet_http::{Body, Server};
use util::{connect, raw, read_all, read_response, routes, spawn_server};

#[test]
fn pipelined_requests_are_answered_in_order() {
    let addr = spawn_server(|s| s, routes);
    let mut s = connect(addr);
    s.write_all(
        b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n\
          POST /echo-stream HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n\
          POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nzzzz\
          GET /nope HTTP/1.1\r\nHost: a\r\n\r\n\
          HEAD / HTTP/1.1\r\nHost: a\r\n\r\n\
          GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let all = read_all(&mut s);
    let bodies: Vec<&str> = all.split("HTTP/1.1 ").skip(1).collect();
    assert_eq!(bodies.len(), 6, "{all}");
    assert!(bodies[0].starts_with("200") && bodies[0].ends_with("\r\n\r\nslow"), "{all}");
    assert!(
        bodies[1].contains("Transfer-Encoding: chunked")
            && bodies[1].ends_with("\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
        "{all}"
    );
    assert!(bodies[2].ends_with("\r\n\r\nignored"), "{all}");
    assert!(bodies[3].starts_with("404"), "{all}");
    assert!(
        bodies[4].starts_with("200") && bodies[4].contains("Content-Length: 5") && bodies[4].ends_with("\r\n\r\n"),
        "{all}"
    );
    assert!(bodies[5].contains("Connection: close") && bodies[5].ends_with("\r\n\r\nhello"), "{all}");
}

#[test]
fn panicking_handler_gets_500_and_the_connection_goes_on() {
    let addr = spawn_server(|s| s, routes);
    let mut s = connect(addr);
    s.write_all(b"GET /panic HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert!(r.starts_with("HTTP/1.1 500 Internal Server Error\r\n"), "{r}");
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("hello"), "{r}");
}

#[test]
fn http_10_closes_unless_keep_alive() {
    let addr = spawn_server(|s| s, routes);
    let r = raw(addr, b"GET / HTTP/1.0\r\n\r\n");
    assert!(r.contains("Connection: close\r\n") && r.ends_with("hello"), "{r}");
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    let r = read_response(&mut s);
    assert!(r.contains("Connection: keep-alive\r\n"), "{r}");
    s.write_all(b"GET /stream?10 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
    // Unknown length to an HTTP/1.0 client: delimited by the close.
    let r = read_all(&mut s);
    assert!(!r.contains("chunked") && r.contains("Connection: close\r\n"), "{r}");
    assert!(r.as_bytes().ends_with(&util::pattern(10)), "{r:?}");
}

#[test]
fn idle_keep_alive_connection_is_closed_after_the_timeout() {
    let addr = spawn_server(|s| s.keepalive_timeout(Duration::from_millis(300)), routes);
    let mut s = connect(addr);
    // Timed from before the request: the server's idle time starts after
    // it, however late this thread reads the response.
    let t = Instant::now();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    read_response(&mut s);
    assert_eq!(read_all(&mut s), "");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
}

#[test]
fn expect_continue_not_read_closes_without_100() {
    let addr = spawn_server(|s| s, routes);
    let r = raw(addr, b"POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n");
    assert!(!r.contains("100 Continue"), "{r}");
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n") && r.contains("Connection: close") && r.ends_with("ignored"), "{r}");
}

#[test]
fn access_log_uses_eventlets_format() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let addr = spawn_server(move |s| s.access_log_with(move |l| sink.lock().unwrap().push(l.to_string())), routes);
    raw(addr, b"GET /nope?q=1 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines.lock().unwrap().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let line = lines.lock().unwrap()[0].clone();
    // 127.0.0.1 - - [25/Nov/2026 04:44:20] "GET /nope?q=1 HTTP/1.1" 404 12 0.000078
    let (ip, rest) = line.split_once(" - - [").unwrap();
    assert_eq!(ip, "127.0.0.1");
    let (date, rest) = rest.split_once("] ").unwrap();
    assert_eq!(date.len(), 20, "{line}");
    assert_eq!(&date[2..3], "/");
    let rest = rest.strip_prefix("\"GET /nope?q=1 HTTP/1.1\" 404 12 ").expect(&line);
    let secs: f64 = rest.parse().unwrap();
    assert!((0.0..5.0).contains(&secs) && rest.split('.').nth(1).unwrap().len() == 6, "{line}");
}

#[test]
fn connection_cap_holds_new_clients_while_every_connection_is_busy() {
    // (Idle connections make room for new clients: see tests/make_room.rs.)
    let addr = spawn_server(|s| s.max_connections(2), routes);
    let mut a = connect(addr);
    let mut b = connect(addr);
    for s in [&mut a, &mut b] {
        s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
        read_response(s);
        // Half a head: busy, not idle.
        s.write_all(b"GET / HTTP/1.1\r\nHo").unwrap();
    }
    let mut c = connect(addr); // in the backlog
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let mut byte = [0];
    let e = c.read(&mut byte).unwrap_err();
    assert!(matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut), "{e}");
    drop(a);
    c.set_read_timeout(Some(util::TIMEOUT)).unwrap();
    assert!(read_response(&mut c).ends_with("hello"));
    // b's request was not cut short to make room.
    b.write_all(b"st: a\r\n\r\n").unwrap();
    assert!(read_response(&mut b).ends_with("hello"));
}

#[test]
fn date_header_is_an_imf_fixdate() {
    let addr = spawn_server(|s| s, routes);
    let r = raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    let date = r.lines().find_map(|l| l.strip_prefix("Date: ")).expect(&r);
    // Sun, 06 Nov 1994 08:49:37 GMT
    assert_eq!(date.len(), 29, "{date}");
    assert!(date.ends_with(" GMT") && &date[3..5] == ", ", "{date}");
}

#[test]
fn graceful_shutdown_finishes_in_flight_requests() {
    let server = Server::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    // `/held` answers once released (not after a fixed time, which a
    // stalled machine could use up before the shutdown begins).
    let (entered_tx, entered) = eventlet::channel::unbounded::<()>();
    let (release, held) = eventlet::channel::unbounded::<()>();
    let serving = eventlet::spawn(move || {
        server.serve(move |req| {
            if req.uri().path() != "/held" {
                return routes(req);
            }
            entered_tx.send(()).unwrap();
            let _ = held.recv();
            http::Response::new(Body::from("slow"))
        })
    });
    let green = |req: &[u8]| {
        let s = eventlet::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(util::TIMEOUT)).unwrap();
        (&s).write_all(req).unwrap();
        s
    };
    // An idle keep-alive connection, and one whose request is in flight.
    let idle = green(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n");
    let mut buf = [0; 1024];
    let n = (&idle).read(&mut buf).unwrap();
    assert!(buf[..n].ends_with(b"hello"));
    let busy = green(b"GET /held HTTP/1.1\r\nHost: a\r\n\r\n");
    entered.recv().unwrap();
    assert_eq!(stop.connections(), 2);
    stop.shutdown();
    // The idle one is closed at once: while the busy one's request is
    // still held (waiting for the busy one would wait forever here, and
    // the read time out).
    assert_eq!((&idle).read(&mut buf).unwrap(), 0);
    release.send(()).unwrap();
    // The busy one gets its whole answer, marked as the last.
    let mut reply = String::new();
    (&busy).read_to_string(&mut reply).unwrap();
    assert!(reply.contains("Connection: close\r\n") && reply.ends_with("slow"), "{reply}");
    serving.join().unwrap().unwrap();
    assert_eq!(stop.connections(), 0);
    assert!(eventlet::net::TcpStream::connect(addr).is_err(), "still accepting after shutdown");
}

#[test]
fn streamed_response_with_handler_content_length() {
    let addr = spawn_server(
        |s| s,
        |_req| http::Response::builder().header("Content-Length", "6").body(Body::from_reader(&b"sixsix"[..])).unwrap(),
    );
    let r = raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(r.contains("Content-Length: 6\r\n") && !r.contains("chunked") && r.ends_with("\r\n\r\nsixsix"), "{r}");
}

#[test]
fn handler_connection_close_is_honoured() {
    let addr = spawn_server(
        |s| s,
        |_req| http::Response::builder().header("Connection", "close").body(Body::from("bye")).unwrap(),
    );
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let r = read_all(&mut s);
    assert_eq!(r.matches("Connection").count(), 1, "{r}");
    assert!(r.contains("Connection: close\r\n") && r.ends_with("bye"), "{r}");
}

#[test]
fn many_connections_are_served_concurrently() {
    let server = Server::bind("127.0.0.1:0").unwrap().max_connections(1024);
    let addr = server.local_addr().unwrap();
    let stop = server.shutdown_handle();
    eventlet::spawn_n(move || server.serve(routes).unwrap());
    let pool = eventlet::GreenPool::new(1000);
    let t = Instant::now();
    let clients = 300;
    let replies: Vec<String> = pool
        .imap(
            move |_| {
                let s = eventlet::net::TcpStream::connect(addr).unwrap();
                s.set_read_timeout(Some(util::TIMEOUT)).unwrap();
                (&s).write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
                let mut r = String::new();
                (&s).read_to_string(&mut r).unwrap();
                r
            },
            0..clients,
        )
        .collect();
    assert_eq!(replies.len(), clients);
    assert!(replies.iter().all(|r| r.starts_with("HTTP/1.1 200 OK") && r.ends_with("slow")));
    // 300 × 300 ms one at a time would be 90 s (the bound leaves room for
    // a loaded machine).
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    stop.shutdown();
}

#[test]
fn remote_addr_is_in_the_extensions_only_when_asked_for() {
    let peer_of = |req: http::Request<Body>| {
        let peer = req.extensions().get::<eventlet_http::RemoteAddr>().map(|a| a.0.port().to_string());
        http::Response::new(Body::from(peer.unwrap_or_else(|| "none".to_owned())))
    };
    let addr = spawn_server(|s| s.remote_addr(false), peer_of);
    let r = raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    assert!(r.ends_with("\r\n\r\nnone"), "{r}");

    let addr = spawn_server(|s| s.remote_addr(true), peer_of);
    let mut s = connect(addr);
    let port = s.local_addr().unwrap().port();
    s.write_all(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
    let r = read_all(&mut s);
    assert!(r.ends_with(&format!("\r\n\r\n{port}")), "{r}");
}

#[test]
fn header_values_and_the_path_arrive_intact() {
    let echo_head = |req: http::Request<Body>| {
        let mut out = format!("{}\n", req.uri());
        for (name, value) in req.headers() {
            out.push_str(&format!("{name}={:?}\n", value.as_bytes()));
        }
        http::Response::new(Body::from(out))
    };
    let addr = spawn_server(|s| s, echo_head);
    let r = raw(
        addr,
        b"GET /a/b?c=d%20e HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Tab: a\tb\r\nCookie: k=v; k2=v2\r\n\
          X-High: caf\xc3\xa9\r\nConnection: close\r\n\r\n",
    );
    let body = r.split("\r\n\r\n").nth(1).unwrap_or("");
    assert_eq!(
        body,
        "/a/b?c=d%20e\nhost=[104]\nx-empty=[]\nx-tab=[97, 9, 98]\ncookie=[107, 61, 118, 59, 32, 107, 50, 61, 118, 50]\n\
         x-high=[99, 97, 102, 195, 169]\nconnection=[99, 108, 111, 115, 101]\n",
        "{r}"
    );
}
