//! Each malformed or oversized request gets its status, then the
//! connection is closed (read to end of stream: a hang fails the bounded
//! read timeout).

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::{connect, raw, read_all, routes, spawn_server};

fn status(reply: &str) -> &str {
    reply.get(9..12).unwrap_or(reply)
}

fn assert_closes_with(reply: &str, code: &str) {
    assert_eq!(status(reply), code, "{reply:?}");
    assert!(reply.contains("Connection: close\r\n"), "{reply:?}");
}

#[test]
fn request_line_over_8k_is_414() {
    let addr = spawn_server(|s| s, routes);
    let long = format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "a".repeat(9000));
    assert_closes_with(&raw(addr, long.as_bytes()), "414");
    // Even before the line ends.
    let mut s = connect(addr);
    s.write_all(format!("GET /{}", "b".repeat(9000)).as_bytes()).unwrap();
    assert_closes_with(&read_all(&mut s), "414");
    // Just under the limit is fine (404: no such page).
    let ok = format!("GET /{} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "a".repeat(8000));
    assert_eq!(status(&raw(addr, ok.as_bytes())), "404");
}

#[test]
fn headers_over_64k_or_too_many_are_431() {
    let addr = spawn_server(|s| s, routes);
    let mut big = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..70 {
        big.push_str(&format!("X-H{i}: {}\r\n", "v".repeat(1000)));
    }
    big.push_str("\r\n");
    assert_closes_with(&raw(addr, big.as_bytes()), "431");
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a\r\n");
    for i in 0..120 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_closes_with(&raw(addr, many.as_bytes()), "431");
}

#[test]
fn body_over_limit_is_413() {
    let addr = spawn_server(|s| s.max_body_size(1000), routes);
    let r = raw(addr, b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1001\r\n\r\n");
    assert_closes_with(&r, "413");
    let chunk = format!("{:x}\r\n{}\r\n", 600, "x".repeat(600));
    let req = format!("POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n");
    assert_closes_with(&raw(addr, req.as_bytes()), "413");
    // At the limit: accepted.
    let req = format!(
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n{}",
        "y".repeat(1000)
    );
    let r = raw(addr, req.as_bytes());
    assert_eq!(status(&r), "200");
    assert!(r.ends_with(&"y".repeat(1000)));
}

#[test]
fn content_length_with_transfer_encoding_is_400() {
    let addr = spawn_server(|s| s, routes);
    let r = raw(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_closes_with(&r, "400");
}

#[test]
fn bad_chunk_size_is_400() {
    let addr = spawn_server(|s| s, routes);
    for path in ["/echo", "/ignore"] {
        let req =
            format!("POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n");
        assert_closes_with(&raw(addr, req.as_bytes()), "400");
    }
}

#[test]
fn other_malformed_heads() {
    let addr = spawn_server(|s| s, routes);
    assert_closes_with(&raw(addr, b"GARBAGE\r\n\r\n"), "400");
    assert_closes_with(&raw(addr, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), "400");
    assert_closes_with(&raw(addr, b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"), "400");
    assert_closes_with(&raw(addr, b"GET / HTTP/2.0\r\n\r\n"), "505");
    assert_closes_with(&raw(addr, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), "501");
    // RFC 9112 §3.2: HTTP/1.1 names its host.
    assert_closes_with(&raw(addr, b"GET / HTTP/1.1\r\n\r\n"), "400");
}

#[test]
fn slowloris_is_dropped_after_the_header_timeout() {
    let addr = spawn_server(|s| s.header_timeout(Duration::from_millis(300)), routes);
    // Timed from before the connect: the server's deadline starts after it.
    let t = Instant::now();
    let mut s = connect(addr);
    s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    // Trickle a header byte every 100 ms: each read is fast, the head never completes.
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(100));
        if s.write_all(b"X").is_err() {
            break;
        }
    }
    let r = read_all(&mut s);
    assert_eq!(status(&r), "408", "{r:?}");
    let took = t.elapsed();
    assert!(took >= Duration::from_millis(250) && took < Duration::from_secs(3), "{took:?}");
    // A silent new connection is closed too, without an answer.
    let mut s = connect(addr);
    let t = Instant::now();
    assert_eq!(read_all(&mut s), "");
    assert!(t.elapsed() < Duration::from_secs(3));
}

/// Request smuggling and framing tricks, each followed by a pipelined
/// request that must never be answered: one `400` (or `501`) and the
/// connection closes, with the plain server and the raw handler alike.
#[test]
fn smuggling_attempts_get_one_answer_and_close() {
    let cases: &[(&str, &str, &str)] = &[
        ("two different lengths", "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "400"),
        ("a list of lengths", "Content-Length: 5, 6\r\n\r\nhello!", "400"),
        ("a signed length", "Content-Length: +5\r\n\r\nhello", "400"),
        ("a length past u64", "Content-Length: 99999999999999999999999\r\n\r\nhello", "400"),
        ("length and chunked", "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"),
        ("chunked not last", "Transfer-Encoding: chunked, identity\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "400"),
        ("another coding before chunked", "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", "501"),
        ("obs-fold", "X-A: a\r\n b\r\nContent-Length: 0\r\n\r\n", "400"),
        ("a space before the colon", "Content-Length : 5\r\n\r\nhello", "400"),
        (
            "a chunk size past u64",
            "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
            "400",
        ),
        ("a hex-prefixed chunk size", "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "400"),
        ("chunk data longer than its size", "Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", "400"),
    ];
    let plain = spawn_server(|s| s, routes);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let server = eventlet_http::Server::bind("127.0.0.1:0").unwrap();
        tx.send(server.local_addr().unwrap()).unwrap();
        server
            .serve_raw(|req, res| {
                let mut body = Vec::new();
                if std::io::Read::read_to_end(req.body(), &mut body).is_ok() {
                    res.body_static(b"ok");
                }
            })
            .unwrap();
    });
    let raw_addr = rx.recv_timeout(util::TIMEOUT).unwrap();
    for addr in [plain, raw_addr] {
        for (what, rest, code) in cases {
            let req = format!("POST /echo HTTP/1.1\r\nHost: x\r\n{rest}GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
            let reply = raw(addr, req.as_bytes());
            assert_closes_with(&reply, code);
            assert_eq!(reply.matches("HTTP/1.1 ").count(), 1, "{what}: {reply:?}");
        }
        // HTTP/1.0 with chunked: 400 (RFC 9112 §6.1).
        let reply = raw(addr, b"POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_closes_with(&reply, "400");
    }
}
