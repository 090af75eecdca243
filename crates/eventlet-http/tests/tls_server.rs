//! The HTTPS server (`Server::tls_files`) driven by curl with a CA made by
//! `openssl` for the test, and `tls::connect` / WebSocket over TLS from
//! green clients.
#![cfg(feature = "tls")]

mod util;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use eventlet_http::websocket::{self, Message};
use eventlet_http::{tls, Body, Client, Server};
use http::{Request, Response};
use util::{make_certs, pattern, routes, run};

fn certs(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("eventlet-http-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_certs(&dir);
    dir
}

fn handler(req: Request<Body>) -> Response<Body> {
    if req.uri().path() == "/ws" {
        return websocket::upgrade(&req, |mut ws| {
            while let Ok(m) = ws.read() {
                if (m.is_text() || m.is_binary()) && ws.send(m).is_err() {
                    return;
                }
            }
        });
    }
    routes(req)
}

fn https_server(dir: &std::path::Path) -> SocketAddr {
    let (cert, key) = (dir.join("srv.pem"), dir.join("srv.key"));
    util::spawn_server(move |s: Server| s.tls_files(cert, key).unwrap(), handler)
}

#[test]
fn curl_over_https_with_the_test_ca() {
    let Some(curl) = util::tool("curl") else { return };
    let dir = certs("tls-server");
    let addr = https_server(&dir);
    let ca = dir.join("ca.pem").display().to_string();
    let base = format!("https://127.0.0.1:{}", addr.port());

    // Two requests on one kept-alive connection.
    let (out, err) = run(&curl, &["-sS", "-v", "--cacert", &ca, &format!("{base}/"), &format!("{base}/stream?5000")]);
    let mut want = b"hello".to_vec();
    want.extend(pattern(5000));
    assert!(out == want, "bodies differ");
    assert!(err.contains("Re-using existing connection") || err.contains("Reusing existing"), "{err}");

    // A chunked upload echoed back.
    let data = dir.join("up.bin");
    std::fs::write(&data, pattern(200_000)).unwrap();
    let (out, _) = run(
        &curl,
        &[
            "-sS",
            "--cacert",
            &ca,
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &format!("@{}", data.display()),
            &format!("{base}/echo"),
        ],
    );
    assert!(out == pattern(200_000), "echoed body differs");

    // HTTP/1.0 over TLS: the server offers `http/1.0` by ALPN as well
    // (curl --http1.0 failed with "no application protocol").
    let (out, err) = run(&curl, &["-sS", "-v", "--http1.0", "--cacert", &ca, &format!("{base}/")]);
    assert_eq!(out, b"hello", "{err}");
    assert!(err.contains("http/1.0"), "curl did not ask for http/1.0 by ALPN: {err}");

    // Without the CA, curl refuses the certificate.
    let refused = std::process::Command::new(&curl).args(["-sS", &format!("{base}/")]).output().unwrap();
    assert!(!refused.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn green_tls_connect_client_and_wss() {
    let dir = certs("tls-green");
    let addr = https_server(&dir);
    let config = tls::client_config(Some(&dir.join("ca.pem"))).unwrap();

    // tls::connect over a green socket, HTTP by hand.
    let tcp = eventlet::net::TcpStream::connect(addr).unwrap();
    let mut s = tls::connect(tcp, "127.0.0.1", config.clone()).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 OK\r\n") && reply.ends_with("\r\n\r\nhello"), "{reply}");

    // The client with the CA file.
    let client = Client::builder().ca_file(dir.join("ca.pem")).unwrap().build();
    let body = client.get(&format!("https://127.0.0.1:{}/stream?100000", addr.port())).unwrap();
    assert!(body.into_body().into_bytes().unwrap() == pattern(100_000));

    // WebSocket over TLS (wss), upgraded by the TLS server.
    let tcp = eventlet::net::TcpStream::connect(addr).unwrap();
    let stream = tls::connect(tcp, "127.0.0.1", config.clone()).unwrap();
    let (mut ws, _) = websocket::client(format!("wss://127.0.0.1:{}/ws", addr.port()), stream, None).unwrap();
    ws.send(Message::text("over tls")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("over tls"));
    ws.close(None).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Close(None));

    // The wrong name is refused.
    let tcp = eventlet::net::TcpStream::connect(addr).unwrap();
    assert!(tls::connect(tcp, "example.com", config).is_err());
    // A server with a missing key file is refused up front.
    assert!(tls::server_config(dir.join("srv.pem"), dir.join("nothing.key")).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

/// The client side of a TLS stream read and written by two green threads
/// at once: a writer pipelines 300 requests while a reader takes the
/// answers (200 KB each). Taking turns would deadlock: the server stops
/// reading once its answers fill the socket buffers.
#[test]
fn green_tls_stream_read_and_written_at_once() {
    use std::rc::Rc;
    let dir = certs("tls-both-ways");
    let addr = https_server(&dir);
    let config = tls::client_config(Some(&dir.join("ca.pem"))).unwrap();
    let tcp = eventlet::net::TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let s = Rc::new(tls::connect(tcp, "127.0.0.1", config).unwrap());
    let w = s.clone();
    let writer = eventlet::spawn(move || {
        for i in 0..300 {
            let close = if i == 299 { "Connection: close\r\n" } else { "" };
            write!(&*w, "GET /stream?200000 HTTP/1.1\r\nHost: x\r\n{close}\r\n").unwrap();
        }
    });
    let mut total = 0usize;
    let mut buf = vec![0; 64 * 1024];
    loop {
        match (&*s).read(&mut buf) {
            Ok(0) => break,
            Ok(n) => total += n,
            Err(e) => panic!("read failed after {total} bytes: {e}"),
        }
    }
    writer.join().unwrap();
    assert!(total > 300 * 200_000, "{total} bytes for 300 answers of 200,000");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A TLS client that sends its ClientHello a byte at a time, each byte
/// within the header timeout of the last: the handshake's reads each had
/// the whole header timeout, so the connection (and its place under the
/// connection limit) was held for as long as the client kept dripping.
/// Now the handshake and the first head share one deadline, as a plain
/// connection's head has.
#[test]
fn a_tls_handshake_sent_byte_by_byte_ends_at_the_header_timeout() {
    use std::time::{Duration, Instant};
    let dir = certs("tls-drip");
    let (cert, key) = (dir.join("srv.pem"), dir.join("srv.key"));
    let addr = util::spawn_server(
        move |s: Server| s.tls_files(cert, key).unwrap().header_timeout(Duration::from_millis(500)),
        handler,
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    // A handshake record announcing 16 KB (a ClientHello that big is
    // allowed), then a byte every 150 ms.
    s.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0x00, 0x3f, 0xfc]).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    let t = Instant::now();
    let closed = loop {
        if t.elapsed() > Duration::from_secs(4) {
            break None;
        }
        if s.write_all(&[0x03]).is_err() {
            break Some(t.elapsed());
        }
        match s.read(&mut [0; 64]) {
            Ok(_) => break Some(t.elapsed()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break Some(t.elapsed()),
        }
    };
    let closed = closed.expect("the server still held the dripping handshake after 4 s (header timeout 500 ms)");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
}

/// After the handshake, a client that sends TLS records carrying no data
/// (here key updates), each within the read timeout of the last: one read
/// of the connection went on reading records, each socket read with the
/// whole timeout again, so the head's deadline never came and the client
/// held the connection for as long as rustls allowed (32 key updates:
/// here some 5 s for a header timeout of 600 ms; 16 minutes under the
/// default 30 s). Now a read of a TLS stream waits the read timeout in
/// all, however many records come.
#[test]
fn tls_records_without_data_do_not_stretch_the_header_timeout() {
    use std::time::{Duration, Instant};
    let dir = certs("tls-keyupdates");
    let (cert, key) = (dir.join("srv.pem"), dir.join("srv.key"));
    let addr = util::spawn_server(
        move |s: Server| s.tls_files(cert, key).unwrap().header_timeout(Duration::from_millis(600)),
        handler,
    );
    let config = tls::client_config(Some(&dir.join("ca.pem"))).unwrap();
    let mut conn = tls::rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let mut sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut sock).unwrap();
    }
    sock.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    let t = Instant::now();
    let closed = loop {
        if t.elapsed() > Duration::from_secs(4) {
            break None;
        }
        conn.refresh_traffic_keys().unwrap();
        if conn.write_tls(&mut sock).is_err() {
            break Some(t.elapsed());
        }
        match sock.read(&mut [0; 4096]) {
            Ok(0) => break Some(t.elapsed()),
            // A session ticket: not read any further.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break Some(t.elapsed()),
        }
    };
    let closed = closed.expect("the server still held the connection after 4 s (header timeout 600 ms)");
    assert!(closed < Duration::from_secs(2), "closed after {closed:?}");
}

/// Over TLS, letting go of a WebSocket member that stopped reading (the
/// chat's broadcast: `Outbox::disconnect`) waited for the member's writer
/// green thread, parked in a write the peer never takes, to let go of the
/// write side so that a `close_notify` could go out: the broadcaster (and
/// with it the room) waited the whole write timeout. Now the shutdown does
/// not wait: with the write side busy it goes without `close_notify`.
#[test]
fn disconnecting_a_stalled_wss_member_does_not_wait_for_its_writer() {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};
    let dir = certs("tls-disconnect");
    let (cert, key) = (dir.join("srv.pem"), dir.join("srv.key"));
    let (tx, took) = mpsc::channel::<Duration>();
    let addr = util::spawn_server(
        move |s: Server| s.tls_files(cert, key).unwrap().write_timeout(Some(Duration::from_secs(5))),
        move |req| {
            let tx = tx.clone();
            websocket::upgrade(&req, move |ws| {
                let outbox = websocket::Outbox::new(&ws, 4);
                // Fill the socket buffers and the queue: the peer reads nothing.
                let big = vec![7u8; 256 << 10];
                while outbox.try_send(Message::binary(big.clone())).is_ok() {
                    eventlet::sleep(Duration::from_millis(5));
                }
                let t = Instant::now();
                outbox.disconnect();
                let _ = tx.send(t.elapsed());
            })
        },
    );
    let config = tls::client_config(Some(&dir.join("ca.pem"))).unwrap();
    let conn = tls::rustls::ClientConnection::new(config, "127.0.0.1".try_into().unwrap()).unwrap();
    let sock = std::net::TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let stream = tls::rustls::StreamOwned::new(conn, sock);
    let (ws, _) = tungstenite::client(format!("wss://127.0.0.1:{}/ws", addr.port()), stream).unwrap();
    // The member reads nothing more.
    let took = took.recv_timeout(Duration::from_secs(20)).expect("the handler never got to disconnect");
    drop(ws);
    // Not the write timeout (the bound leaves room for a loaded machine).
    assert!(took < Duration::from_secs(3), "disconnect took {took:?} (write timeout 5 s)");
    let _ = std::fs::remove_dir_all(&dir);
}
