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
    let mut s = connect(addr);
    let t = Instant::now();
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
