//! The green client (ureq 3 over green sockets) against our server and a
//! hand-written one.

mod util;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use eventlet::GreenPool;
use eventlet_http::{client, Client};
use util::{pattern, routes, spawn_server};

#[test]
fn get_status_headers_and_body() {
    let addr = spawn_server(|s| s, routes);
    let resp = client::get(&format!("http://{addr}/")).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_11);
    assert_eq!(resp.headers()["content-length"], "5");
    assert!(resp.headers().contains_key("date"));
    assert_eq!(resp.into_body().into_string().unwrap(), "hello");
    let resp = client::get(&format!("http://{addr}/missing")).unwrap();
    assert_eq!(resp.status(), 404, "a 404 is a response, not an error");
    assert_eq!(resp.into_body().into_string().unwrap(), "no such page");
}

#[test]
fn keep_alive_pool_reuses_the_connection() {
    let addr = spawn_server(|s| s, routes);
    let c = Client::new();
    let ports: std::collections::HashSet<String> =
        (0..20).map(|_| c.get(&format!("http://{addr}/peer")).unwrap().into_body().into_string().unwrap()).collect();
    assert_eq!(ports.len(), 1, "one green thread fetching in turn uses one connection: {ports:?}");
}

#[test]
fn many_fetches_at_once_reuse_their_connections() {
    let addr = spawn_server(|s| s.max_connections(1000), routes);
    let c = Client::new();
    let pool = eventlet::GreenPool::new(100);
    let url = format!("http://{addr}/peer");
    let wave = || -> std::collections::HashSet<String> {
        let c = c.clone();
        let url = url.clone();
        pool.imap(move |_| c.get(&url).unwrap().into_body().into_string().unwrap(), 0..300).collect()
    };
    let first = wave();
    let second = wave();
    assert!(first.len() <= 100, "at most 100 connections at once: {}", first.len());
    // The second wave finds the first wave's connections idle in the pools.
    let new = second.difference(&first).count();
    assert!(new <= 10, "{new} new connections in the second wave");
}

#[test]
fn chunked_body_and_post() {
    let addr = spawn_server(|s| s, routes);
    let resp = client::get(&format!("http://{addr}/stream?123457")).unwrap();
    assert_eq!(resp.headers()["transfer-encoding"], "chunked");
    let mut body = resp.into_body();
    assert_eq!(body.len(), None);
    let mut got = Vec::new();
    body.read_to_end(&mut got).unwrap();
    assert!(got == pattern(123_457));
    let data = pattern(200_000);
    let resp = client::post(&format!("http://{addr}/echo"), &data).unwrap();
    assert!(resp.into_body().into_bytes().unwrap() == data);
    let req =
        http::Request::put(format!("http://{addr}/echo")).header("X-Test", "1").body(b"put body".to_vec()).unwrap();
    assert_eq!(Client::new().request(req).unwrap().into_body().into_string().unwrap(), "put body");
}

#[test]
fn close_delimited_body() {
    let listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    eventlet::spawn_n(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0; 4096];
        let _ = s.read(&mut buf).unwrap();
        s.write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").unwrap();
        for _ in 0..3 {
            eventlet::sleep(Duration::from_millis(20));
            s.write_all(&pattern(10_000)).unwrap();
        }
    });
    let body = client::get(&format!("http://{addr}/")).unwrap().into_body().into_bytes().unwrap();
    assert_eq!(body.len(), 30_000);
    assert!(body[10_000..20_000] == pattern(10_000)[..]);
}

#[test]
fn redirects_are_followed_and_bounded() {
    let addr = spawn_server(|s| s, routes);
    let c = Client::builder().max_redirects(3).build();
    let resp = c.get(&format!("http://{addr}/redirect/3")).unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.into_body().into_string().unwrap(), "landed");
    // Past the bound: an error, as curl and wget fail (it was the last 302).
    let e = c.get(&format!("http://{addr}/redirect/4")).unwrap_err();
    assert!(e.to_string().contains("too many redirects"), "{e}");
    // With redirects off, the 3xx itself.
    let resp = Client::builder().max_redirects(0).build().get(&format!("http://{addr}/redirect/4")).unwrap();
    assert_eq!(resp.status(), 302);
    assert_eq!(resp.headers()["location"], "/redirect/3");
}

#[test]
fn read_timeout_and_connection_errors() {
    let addr = spawn_server(|s| s, routes);
    let c = Client::builder().timeout_read(Duration::from_millis(100)).build();
    let t = Instant::now();
    let e = c.get(&format!("http://{addr}/stall")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    assert!(t.elapsed() < Duration::from_secs(2));
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let e = client::get(&format!("http://127.0.0.1:{port}/")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    let e = client::get("not a url").unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput, "{e}");
    // TLS to a plain HTTP server fails (without the `tls` feature: Unsupported).
    let e = client::get(&format!("https://{addr}/")).unwrap_err();
    if !cfg!(feature = "tls") {
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported, "{e}");
    }
}

#[test]
fn fetches_run_concurrently_on_one_os_thread() {
    let addr = spawn_server(|s| s, routes);
    let urls: Vec<String> = (0..40).map(|_| format!("http://{addr}/slow")).collect();
    let pool = GreenPool::new(100);
    let t = Instant::now();
    let mut n = 0;
    for body in pool.imap(|u: String| client::get(&u)?.into_body().into_bytes(), urls) {
        assert_eq!(body.unwrap(), b"slow");
        n += 1;
    }
    assert_eq!(n, 40);
    // 40 × 300 ms one after the other would be 12 s (the bound leaves room
    // for a loaded machine).
    assert!(t.elapsed() < Duration::from_secs(8), "{:?}", t.elapsed());
}

#[test]
fn gzip_responses_are_decompressed() {
    const GZ: [u8; 35] = [
        31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 203, 72, 205, 201, 201, 87, 72, 175, 202, 44, 208, 81, 200, 192, 202, 6, 0,
        186, 49, 142, 38, 34, 0, 0, 0,
    ];
    let addr = spawn_server(
        |s| s,
        |req| {
            let accepts = req.headers().get("accept-encoding").map(|v| v.to_str().unwrap().to_string());
            assert!(accepts.unwrap_or_default().contains("gzip"), "the client did not offer gzip");
            http::Response::builder()
                .header("Content-Encoding", "gzip")
                .body(eventlet_http::Body::from(&GZ[..]))
                .unwrap()
        },
    );
    let body = client::get(&format!("http://{addr}/")).unwrap().into_body();
    assert_eq!(body.len(), None, "the compressed length is not the body's");
    assert_eq!(body.into_string().unwrap(), "hello gzip, hello gzip, hello gzip");
}

/// Every client failure has a kind a caller can match and names the host
/// (a body-read timeout was `Other`, "timeout: receive body").
#[test]
fn error_kinds_a_caller_can_match() {
    use std::io::{ErrorKind, Read};
    let addr = util::spawn_server(
        |s| s,
        |req| match req.uri().path() {
            "/slow-body" => {
                struct Slow(u8);
                impl Read for Slow {
                    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                        self.0 += 1;
                        if self.0 > 1 {
                            eventlet::sleep(std::time::Duration::from_secs(3));
                        }
                        buf[0] = b'x';
                        Ok(1)
                    }
                }
                http::Response::new(eventlet_http::Body::sized_reader(Slow(0), 10))
            }
            _ => util::routes(req),
        },
    );
    let client = eventlet_http::Client::builder().timeout_read(std::time::Duration::from_millis(300)).build();
    let resp = client.get(&format!("http://{addr}/slow-body")).unwrap();
    let e = resp.into_body().into_bytes().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
    assert!(e.to_string().contains(&addr.to_string()), "{e}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let e = client.get(&format!("http://{closed}/")).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e}");
    assert!(e.to_string().contains(&closed.to_string()), "{e}");

    let e = client.get("http://no-such-host.invalid/").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("no-such-host.invalid"), "{e}");

    // Too many redirects is an error, not the last 3xx.
    let e = eventlet_http::Client::builder()
        .max_redirects(3)
        .build()
        .get(&format!("http://{addr}/redirect/5"))
        .unwrap_err();
    assert!(e.to_string().contains("too many redirects"), "{e}");
    let landed =
        eventlet_http::Client::builder().max_redirects(5).build().get(&format!("http://{addr}/redirect/5")).unwrap();
    let final_uri = landed.extensions().get::<eventlet_http::client::FinalUri>().unwrap().0.to_string();
    assert_eq!(final_uri, format!("http://{addr}/redirect/0"));
}

/// `timeout_read` is how long one read may wait: a body that arrives
/// steadily, a byte every 100 ms, for longer than that in all is read to
/// its end (it was a deadline for the whole body: a download longer than
/// 60 s failed under the defaults, "timed out (receive body)").
#[test]
fn a_steady_body_longer_than_the_read_timeout_is_read_whole() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.read(&mut [0; 4096]);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n").unwrap();
        for _ in 0..15 {
            std::thread::sleep(Duration::from_millis(100));
            if s.write_all(b"x").is_err() {
                return;
            }
        }
    });
    let c = Client::builder().timeout_read(Duration::from_millis(700)).build();
    let body = c.get(&format!("http://{addr}/")).unwrap().into_body().into_bytes().unwrap();
    assert_eq!(body, b"x".repeat(15));
}

/// A server that accepts and never reads: a request body larger than the
/// socket buffers waited forever to be written (no write timeout at all).
/// Now a write waits at most `timeout_read`, and fails with `TimedOut`.
#[test]
fn a_server_that_never_reads_the_request_times_out() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        // Held unread until the test is over (10 s at most).
        let _ = done.recv_timeout(Duration::from_secs(10));
        drop(s);
    });
    let c = Client::builder().timeout_read(Duration::from_millis(500)).build();
    let t = Instant::now();
    let e = c.post(&format!("http://{addr}/"), vec![0u8; 64 << 20]).unwrap_err();
    let waited = t.elapsed();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e}");
    drop(done_tx);
    held.join().unwrap();
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}
