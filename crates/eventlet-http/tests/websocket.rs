//! WebSocket: the server's upgrade driven by independent clients (Python's
//! `websockets`, tungstenite over std sockets on a std thread), the green
//! client, the close handshake both ways, the message size limit, and the
//! chat example's broadcast.

mod util;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use eventlet_http::websocket::{self, CloseCode, CloseFrame, Message, WebSocketConfig};
use eventlet_http::Body;
use http::{Request, Response};
use tungstenite::Error;
use util::{connect, example_binary, pattern, raw, spawn_server, KillOnDrop};

fn routes(req: Request<Body>) -> Response<Body> {
    match req.uri().path() {
        "/echo" => websocket::upgrade(&req, echo),
        "/small" => websocket::upgrade_with_config(&req, WebSocketConfig::default().max_message_size(Some(1024)), echo),
        "/bye" => websocket::upgrade(&req, |mut ws| {
            ws.send(Message::text("bye")).unwrap();
            ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "done".into() })).unwrap();
            // Wait for the client's reply to the close.
            while ws.read().is_ok() {}
        }),
        // A handler that only reads: what the peer gets back on a protocol
        // violation is the library's doing.
        "/read-only" => {
            websocket::upgrade_with_config(&req, WebSocketConfig::default().max_message_size(Some(1024)), |mut ws| {
                while ws.read().is_ok() {}
            })
        }
        // No size limits at all (the user's choice).
        "/unlimited" => websocket::upgrade_with_config(
            &req,
            WebSocketConfig::default().max_message_size(None).max_frame_size(None),
            echo,
        ),
        // Small frames, large messages.
        "/small-frames" => {
            websocket::upgrade_with_config(&req, WebSocketConfig::default().max_frame_size(Some(4096)), echo)
        }
        _ => Response::new(Body::from("plain")),
    }
}

/// Echoes text and binary messages; closes with 1009 on an oversize one.
fn echo(mut ws: websocket::ServerSocket) {
    loop {
        match ws.read() {
            Ok(m) if m.is_text() || m.is_binary() => {
                if ws.send(m).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(Error::Capacity(_)) => {
                let _ = ws.close(Some(CloseFrame { code: CloseCode::Size, reason: "too big".into() }));
                while ws.read().is_ok() {}
                return;
            }
            Err(_) => return,
        }
    }
}

fn server() -> SocketAddr {
    spawn_server(|s| s, routes)
}

/// A tungstenite client over a plain std socket (no eventlet at all).
fn std_client(addr: SocketAddr, path: &str) -> tungstenite::WebSocket<std::net::TcpStream> {
    let (ws, resp) = tungstenite::client(format!("ws://{addr}{path}"), connect(addr)).unwrap();
    assert_eq!(resp.status(), 101);
    ws
}

const PY_CLIENT: &str = r#"
import sys
from websockets.sync.client import connect
with connect(sys.argv[1], max_size=None) as ws:
    ws.send("héllo")
    print(ws.recv())
    data = bytes(i % 251 for i in range(200000))
    ws.send(data)
    print(ws.recv() == data)
    pong = ws.ping(b"p")
    print(pong.wait(5))
    ws.close()
    print(ws.close_code)
"#;

#[test]
fn echo_round_trip_with_python_websockets() {
    let Some(py) = util::python_with("websockets.sync.client") else { return };
    let addr = server();
    let out = Command::new(&py).args(["-c", PY_CLIENT, &format!("ws://{addr}/echo")]).output().unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "héllo\nTrue\nTrue\n1000\n");
}

#[test]
fn echo_round_trip_with_tungstenite_over_std_socket() {
    let addr = server();
    let mut ws = std_client(addr, "/echo");
    ws.send(Message::text("hello")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("hello"));
    let big = pattern(300_000);
    ws.send(Message::binary(big.clone())).unwrap();
    assert_eq!(ws.read().unwrap().into_data(), big);
    // Ping: tungstenite on the server answers with a pong of the same data.
    ws.send(Message::Ping("are you there".into())).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Pong("are you there".into()));
    // The client starts the close handshake; the server replies in kind.
    ws.close(None).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Close(None), "the server's close reply");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
}

#[test]
fn server_initiated_close_handshake() {
    let addr = server();
    let mut ws = std_client(addr, "/bye");
    assert_eq!(ws.read().unwrap(), Message::text("bye"));
    match ws.read().unwrap() {
        Message::Close(Some(f)) => {
            assert_eq!(f.code, CloseCode::Normal);
            assert_eq!(f.reason, "done");
        }
        other => panic!("expected a close frame, got {other:?}"),
    }
    // tungstenite has queued our reply; flushing it completes the handshake
    // and the server then closes the TCP connection.
    let _ = ws.flush();
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    let mut buf = [0];
    assert_eq!(std::io::Read::read(ws.get_mut(), &mut buf).unwrap(), 0, "the server closes after the handshake");
}

#[test]
fn oversize_message_is_rejected_with_1009() {
    let addr = server();
    let mut ws = std_client(addr, "/small");
    ws.send(Message::binary(vec![7; 1000])).unwrap();
    assert_eq!(ws.read().unwrap(), Message::binary(vec![7; 1000]));
    ws.send(Message::binary(vec![7; 2000])).unwrap();
    match ws.read().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
}

#[test]
fn green_client_against_the_server() {
    let addr = server();
    let (mut ws, resp) = websocket::connect(&format!("ws://{addr}/echo")).unwrap();
    assert_eq!(resp.status(), 101);
    for i in 0..50 {
        ws.send(Message::text(format!("msg {i}"))).unwrap();
        assert_eq!(ws.read().unwrap(), Message::text(format!("msg {i}")));
    }
    ws.close(None).unwrap();
    assert_eq!(ws.read().unwrap(), Message::Close(None), "the server's close reply");
    assert!(matches!(ws.read(), Err(Error::ConnectionClosed)));
    // Not a ws:// URL.
    assert!(matches!(websocket::connect("http://127.0.0.1:1/"), Err(Error::Url(_))));
}

#[test]
fn refused_handshakes() {
    let addr = server();
    let plain = raw(addr, b"GET /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(plain.starts_with("HTTP/1.1 400 "), "{plain}");
    let old = raw(
        addr,
        b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\nConnection: close\r\n\r\n",
    );
    assert!(old.starts_with("HTTP/1.1 426 "), "{old}");
    assert!(old.to_ascii_lowercase().contains("sec-websocket-version: 13"), "{old}");
    // The RFC 6455 example key gets the RFC's accept value.
    let ok = raw(
        addr,
        b"GET /bye HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n\x88\x80\0\0\0\0",
    );
    assert!(ok.starts_with("HTTP/1.1 101 Switching Protocols\r\n"), "{ok}");
    assert!(ok.contains("sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "{ok}");
}

#[test]
fn chat_example_broadcasts_to_every_member() {
    let bin = example_binary("websocket_chat");
    let mut child =
        KillOnDrop(Command::new(bin).arg("127.0.0.1:0").stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap());
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let url = line.trim().strip_prefix("chat on http://").unwrap().trim_end_matches('/').to_string();
    let addr: SocketAddr = url.parse().unwrap();

    let page = raw(addr, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert!(page.starts_with("HTTP/1.1 200 OK\r\n") && page.contains("new WebSocket("), "{page}");

    let mut members: Vec<_> = (0..3).map(|_| std_client(addr, "/chat")).collect();
    // Member i sees the joins of i and of those after it.
    for (i, m) in members.iter_mut().enumerate() {
        for _ in i..3 {
            assert!(m.read().unwrap().into_text().unwrap().ends_with(" joined"));
        }
    }
    for (i, said) in ["hello", "hi there", "bye"].into_iter().enumerate() {
        members[i].send(Message::text(said)).unwrap();
        for m in &mut members {
            let got = m.read().unwrap().into_text().unwrap();
            assert!(got.ends_with(&format!(": {said}")), "{got:?}");
        }
    }
    // Too long a message: that member is closed with 1009, the rest hear it left.
    members[2].send(Message::text("x".repeat(20_000))).unwrap();
    match members[2].read().unwrap() {
        Message::Close(Some(f)) => assert_eq!(f.code, CloseCode::Size),
        other => panic!("expected close 1009, got {other:?}"),
    }
    let _ = members[2].flush(); // our close reply ends the handshake
    for m in &mut members[..2] {
        assert!(m.read().unwrap().into_text().unwrap().ends_with(" left"));
    }
}

/// A WebSocket opened by hand over a std socket: the handshake written and
/// the `101` head read, nothing else.
fn raw_ws(addr: SocketAddr, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1);
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{}", String::from_utf8_lossy(&head));
    s
}

/// A client frame: FIN and `opcode` in the first byte (with `first_extra`
/// bits, e.g. RSV1), masked unless `masked` is false.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    assert!(payload.len() < 126);
    let key = [1u8, 2, 3, 4];
    let mut f = vec![first, payload.len() as u8 | if masked { 0x80 } else { 0 }];
    if masked {
        f.extend_from_slice(&key);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        f.extend_from_slice(payload);
    }
    f
}

/// Reads the server's frames until a Close; returns its code.
fn close_code(s: &mut std::net::TcpStream) -> u16 {
    use std::io::Read;
    loop {
        let mut hdr = [0u8; 2];
        s.read_exact(&mut hdr).expect("the server closed without a Close frame");
        assert_eq!(hdr[1] & 0x80, 0, "a server frame is never masked");
        let len = match hdr[1] & 0x7f {
            126 => {
                let mut l = [0u8; 2];
                s.read_exact(&mut l).unwrap();
                u16::from_be_bytes(l) as usize
            }
            127 => panic!("unexpected huge frame"),
            n => n as usize,
        };
        let mut payload = vec![0; len];
        s.read_exact(&mut payload).unwrap();
        if hdr[0] & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "a Close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

/// RFC 6455: a peer's protocol violation is answered with a Close frame
/// of the right code before the connection ends (it was dropped without
/// one).
#[test]
fn protocol_violations_get_their_close_codes() {
    use std::io::Write;
    let addr = server();
    let cases: &[(&str, Vec<u8>, u16)] = &[
        ("invalid UTF-8 in a text message", frame(0x81, &[0xff, 0xfe, 0xfd], true), 1007),
        ("an unmasked client frame", frame(0x81, b"hi", false), 1002),
        ("a reserved data opcode", frame(0x83, b"hi", true), 1002),
        ("RSV1 set without an extension", frame(0xc1, b"hi", true), 1002),
        ("a continuation with nothing to continue", frame(0x80, b"hi", true), 1002),
        (
            "a message over the size limit",
            std::iter::once(frame(0x02, &[7; 100], true))
                .chain(std::iter::repeat_with(|| frame(0x00, &[7; 100], true)).take(10))
                .collect::<Vec<_>>()
                .concat(),
            1009,
        ),
    ];
    for (what, bytes, want) in cases {
        let mut s = raw_ws(addr, "/read-only");
        s.write_all(bytes).unwrap();
        assert_eq!(close_code(&mut s), *want, "{what}");
    }
}

/// An upgraded connection has a read deadline: a peer that sends two bytes
/// of a frame header and stops is let go once the server's
/// `upgrade_timeout` passes (it held its green thread forever).
#[test]
fn upgraded_connection_with_a_stalled_peer_times_out() {
    use std::io::{Read, Write};
    let addr = spawn_server(|s| s.upgrade_timeout(Some(std::time::Duration::from_millis(300))), routes);
    // Timed from before the upgrade: the server's deadline starts after it,
    // however late this thread goes on.
    let t = std::time::Instant::now();
    let mut s = raw_ws(addr, "/read-only");
    s.write_all(&[0x81, 0x85]).unwrap();
    let mut buf = [0; 64];
    let n = match s.read(&mut buf) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => 0,
        Err(e) => panic!("the server held the stalled connection: {e} after {:?}", t.elapsed()),
    };
    let waited = t.elapsed();
    assert_eq!(n, 0, "expected the connection to close, got {:?}", &buf[..n]);
    assert!(waited >= std::time::Duration::from_millis(250), "closed too early: {waited:?}");
    assert!(waited < std::time::Duration::from_secs(5), "closed late: {waited:?}");
}

/// Starts the chat example (`args` after the address) and returns it with
/// the address it printed.
fn start_chat(args: &[&str]) -> (KillOnDrop, SocketAddr) {
    let bin = example_binary("websocket_chat");
    let mut child = KillOnDrop(
        Command::new(bin).arg("127.0.0.1:0").args(args).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let rest = line.trim().split("://").nth(1).unwrap_or_else(|| panic!("{line:?}"));
    (child, rest.trim_end_matches('/').parse().unwrap())
}

/// A member that never reads fills its socket buffers; the others' messages
/// still reach each other within seconds (the broadcast wrote to each
/// member in turn and waited on the full one until the write timeout, 58 s).
#[test]
fn chat_slow_member_does_not_freeze_the_room() {
    let (_chat, addr) = start_chat(&[]);
    let mut slow = std_client(addr, "/chat");
    assert!(slow.read().unwrap().into_text().unwrap().ends_with(" joined"));
    let mut talker = std_client(addr, "/chat");
    // 600 messages of 8 KB: far more than the slow member's socket buffers
    // and outbox hold. The talker reads its own copies as it goes.
    let big = "x".repeat(8 * 1024);
    let mut seen = 0;
    for _ in 0..600 {
        talker.send(Message::text(big.clone())).unwrap();
        loop {
            let m = talker.read().unwrap().into_text().unwrap();
            if m.ends_with(&big) {
                seen += 1;
                break;
            }
        }
    }
    assert_eq!(seen, 600);
    let mut fresh = std_client(addr, "/chat");
    let t = std::time::Instant::now();
    fresh.send(Message::text("hello from the fresh one")).unwrap();
    loop {
        let m = talker.read().unwrap().into_text().unwrap();
        if m.ends_with(": hello from the fresh one") {
            break;
        }
    }
    let took = t.elapsed();
    // Seconds, not the 58 s write timeout (the bound leaves room for a
    // loaded machine).
    assert!(took < std::time::Duration::from_secs(10), "the message took {took:?}");
    drop(slow);
}

/// The client is held to TLS 1.2: with TLS 1.3, websockets' reader thread,
/// blocked in `SSL_read` after it took the server's post-handshake session
/// ticket, kept Python's main thread from writing its upgrade request
/// (strace: the client's `Finished`, the ticket read, then no write until
/// the client's 10 s handshake timeout; the server had nothing to answer),
/// in a few runs in a hundred on a loaded machine. TLS 1.2 sends its ticket
/// inside the handshake. The server's side is the same in both.
const PY_WSS_CHAT: &str = r#"
import ssl, sys
from websockets.sync.client import connect
ctx = ssl.create_default_context(cafile=sys.argv[2])
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
url = "wss://127.0.0.1:%s/chat" % sys.argv[1]
members = [connect(url, ssl=ctx) for _ in range(3)]
# Member i sees the joins of i and of those after it.
for i, m in enumerate(members):
    for _ in range(i, 3):
        assert m.recv(timeout=5).endswith(" joined")
for i, m in enumerate(members):
    m.send("message %d" % i)
    for other in members:
        got = other.recv(timeout=5)
        assert got.endswith(": message %d" % i), got
for m in members:
    m.close()
print("ok")
"#;

/// The chat over wss: each member's green thread is parked reading its TLS
/// connection while the others' write to it (that failed with "TLS
/// connection in use by another green thread", and members dropped out).
#[test]
fn chat_over_wss_with_python_websockets() {
    let Some(py) = util::python_with("websockets.sync.client") else { return };
    let dir = std::env::temp_dir().join(format!("eventlet-http-wss-chat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    util::make_certs(&dir);
    let (cert, key) = (dir.join("srv.pem").display().to_string(), dir.join("srv.key").display().to_string());
    let (_chat, addr) = start_chat(&[&cert, &key]);
    let out = Command::new(&py)
        .args(["-c", PY_WSS_CHAT, &addr.port().to_string(), &dir.join("ca.pem").display().to_string()])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok");
}

const PY_DEFLATE: &str = r#"
import os, sys
from websockets.sync.client import connect
url = sys.argv[1]
with connect(url, max_size=None) as ws:
    ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
    assert ext.startswith("permessage-deflate"), ext
    text = "the quick brown fox jumps over the lazy dog; " * 5000
    for i in range(20):
        ws.send(text + str(i))
        assert ws.recv() == text + str(i)
    noise = os.urandom(100000)
    ws.send(noise)
    assert ws.recv() == noise
    ws.send("short")
    assert ws.recv() == "short"
    ws.close()
    print(ws.close_code)
# Without the offer: no extension, plain frames.
with connect(url, compression=None) as ws:
    assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
    ws.send("plain")
    assert ws.recv() == "plain"
print("ok")
"#;

/// permessage-deflate with Python's `websockets`, which offers it: agreed in
/// the handshake, compressible and incompressible messages echoed intact
/// over one compression context (20 messages of 225 KB of text, 100 KB of
/// noise), and nothing agreed when the client does not offer it.
#[test]
fn permessage_deflate_with_python_websockets() {
    let Some(py) = util::python_with("websockets.sync.client") else { return };
    let addr = server();
    let out = Command::new(&py).args(["-c", PY_DEFLATE, &format!("ws://{addr}/echo")]).output().unwrap();
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\nok\n");
}

/// What goes on the wire is compressed: a raw client offers the extension,
/// sends a compressed message (RSV1) and reads back a compressed echo much
/// smaller than the text.
#[test]
fn permessage_deflate_frames_on_the_wire() {
    use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
    use std::io::{Read, Write};
    let addr = server();
    let mut s = connect(addr);
    write!(
        s,
        "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.contains("sec-websocket-extensions: permessage-deflate"), "{head}");
    let text = "hello hello hello hello ".repeat(400);
    let mut packed = Vec::with_capacity(text.len());
    Compress::new(Compression::default(), false)
        .compress_vec(text.as_bytes(), &mut packed, FlushCompress::Sync)
        .unwrap();
    assert!(packed.ends_with(&[0, 0, 0xff, 0xff]));
    packed.truncate(packed.len() - 4);
    assert!(packed.len() < 126);
    let mut f = vec![0xc1, 0x80 | packed.len() as u8, 0, 0, 0, 0];
    f.extend_from_slice(&packed);
    s.write_all(&f).unwrap();
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).unwrap();
    assert_eq!(hdr[0], 0xc1, "a compressed text frame (FIN, RSV1, text)");
    let len = (hdr[1] & 0x7f) as usize;
    assert!(len < 126 && len < text.len() / 10, "{len} bytes on the wire for {}", text.len());
    let mut payload = vec![0; len];
    s.read_exact(&mut payload).unwrap();
    payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut plain = Vec::with_capacity(text.len() + 16);
    Decompress::new(false).decompress_vec(&payload, &mut plain, FlushDecompress::Sync).unwrap();
    assert_eq!(plain, text.as_bytes());
}

/// A WebSocket opened by hand offering permessage-deflate; fails unless
/// the server agreed to it.
fn raw_ws_deflate(addr: SocketAddr, path: &str) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut s = connect(addr);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101 "), "{head}");
    assert!(head.contains("sec-websocket-extensions: permessage-deflate"), "{head}");
    s
}

/// `data` compressed as permessage-deflate sends it (a sync flush without
/// its last four bytes).
fn deflated(data: &[u8]) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 1024);
    let mut input = data;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity());
        }
        let before = c.total_in();
        c.compress_vec(input, &mut out, FlushCompress::Sync).unwrap();
        input = &input[(c.total_in() - before) as usize..];
        if input.is_empty() && out.capacity() - out.len() >= 1024 {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A masked client frame of any length.
fn long_frame(first: u8, payload: &[u8]) -> Vec<u8> {
    let key = [9u8, 8, 7, 6];
    let mut f = vec![first];
    match payload.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n if n <= 0xffff => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&key);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    f
}

/// Reads one server frame: its first byte and payload.
fn read_frame(s: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use std::io::Read;
    let mut hdr = [0u8; 2];
    s.read_exact(&mut hdr).expect("the server closed the connection");
    assert_eq!(hdr[1] & 0x80, 0, "a server frame is never masked");
    let len = match hdr[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u64::from(u16::from_be_bytes(l))
        }
        127 => {
            let mut l = [0u8; 8];
            s.read_exact(&mut l).unwrap();
            u64::from_be_bytes(l)
        }
        n => u64::from(n),
    };
    assert!(len < 1 << 30, "a frame of {len} bytes");
    let mut payload = vec![0; len as usize];
    s.read_exact(&mut payload).unwrap();
    (hdr[0], payload)
}

/// Reads the server's next message (its opcode and payload, inflated if
/// compressed), skipping control frames other than Close.
fn read_message(s: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
    use flate2::{Decompress, FlushDecompress};
    let (first, mut payload) = read_frame(s);
    let opcode = first & 0x0f;
    if opcode == 8 {
        return (8, payload);
    }
    assert_ne!(first & 0x80, 0, "the echo is one frame");
    if first & 0x40 == 0 {
        return (opcode, payload);
    }
    payload.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut plain = Vec::with_capacity(payload.len() * 4 + 1024);
    let mut d = Decompress::new(false);
    let mut input = &payload[..];
    loop {
        if plain.capacity() - plain.len() < 1024 {
            plain.reserve(plain.capacity());
        }
        let before = d.total_in();
        d.decompress_vec(input, &mut plain, FlushDecompress::Sync).unwrap();
        input = &input[(d.total_in() - before) as usize..];
        if input.is_empty() && plain.capacity() - plain.len() >= 1024 {
            break;
        }
    }
    (opcode, plain)
}

/// A compressed frame whose 64-bit length is near `u64::MAX`: the length
/// arithmetic overflowed and the connection's green thread panicked
/// (debug: `attempt to add with overflow`; release: a slice out of range),
/// dropping the connection without a Close frame. Now: Close 1009.
#[test]
fn deflate_frame_with_an_absurd_length_is_refused() {
    use std::io::Write;
    let addr = server();
    for len in [u64::MAX - 4, u64::MAX, 1 << 63] {
        let mut s = raw_ws_deflate(addr, "/read-only");
        let mut f = vec![0xc1, 0xff];
        f.extend_from_slice(&len.to_be_bytes());
        f.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        s.write_all(&f).unwrap();
        assert_eq!(close_code(&mut s), 1009, "a frame of {len} bytes");
    }
}

/// With no size limits configured (`max_message_size(None)`), a
/// compressed message was compared against `usize::MAX + 14`: an overflow
/// (debug: a panic; release: every frame "too big"). Now it is echoed.
#[test]
fn deflate_without_size_limits_echoes() {
    use std::io::Write;
    let addr = server();
    let mut s = raw_ws_deflate(addr, "/unlimited");
    let text = "unlimited ".repeat(100);
    s.write_all(&long_frame(0xc1, &deflated(text.as_bytes()))).unwrap();
    assert_eq!(read_message(&mut s), (1, text.into_bytes()));
}

/// A compressed message larger than `max_frame_size` but within
/// `max_message_size` was handed to tungstenite inflated as one frame, and
/// refused as a frame too big (Close 1009); a browser's message of 20 MB
/// failed so under the defaults (16 MiB frames, 64 MiB messages). Now the
/// inflated message goes to tungstenite in frames of its size, and is
/// echoed; the message limit still holds.
#[test]
fn deflate_message_larger_than_a_frame_is_accepted() {
    use std::io::Write;
    let addr = server();
    let mut s = raw_ws_deflate(addr, "/small-frames");
    let data = pattern(100_000);
    s.write_all(&long_frame(0xc2, &deflated(&data))).unwrap();
    let (opcode, echoed) = read_message(&mut s);
    assert_eq!(opcode, 2, "a binary echo, got opcode {opcode}: {:?}", String::from_utf8_lossy(&echoed));
    assert!(echoed == data, "the echo differs ({} bytes)", echoed.len());
}

/// A decompression bomb (16 MiB of zeros in some 16 KB) against a
/// message limit of 1 KiB: Close 1009, once the inflated bytes pass the
/// limit (not after inflating all of them).
#[test]
fn deflate_bomb_is_refused_at_the_message_limit() {
    use std::io::Write;
    let addr = server();
    let mut s = raw_ws_deflate(addr, "/read-only");
    let bomb = deflated(&vec![0; 16 << 20]);
    assert!(bomb.len() < 64 << 10, "{} bytes", bomb.len());
    s.write_all(&long_frame(0xc2, &bomb)).unwrap();
    assert_eq!(close_code(&mut s), 1009);
}

/// A server that accepts and never answers the handshake (or answers a
/// byte at a time): `websocket::connect` waited forever. Now the
/// connection and the handshake have a deadline (30 s by default;
/// `connect_timeout` sets another), and its expiry is `TimedOut`.
#[test]
fn client_handshake_with_a_silent_server_times_out() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, s) in listener.incoming().take(2).enumerate() {
            let mut s = s.unwrap();
            if i == 1 {
                // The second: a 101 head dripped a byte every 100 ms.
                let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
                for b in b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nX: ".iter().cycle().take(40) {
                    if s.write_all(&[*b]).is_err() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            held.push(s);
        }
        held
    });
    for what in ["silent", "dripping"] {
        let t = Instant::now();
        let r = websocket::connect_timeout(&format!("ws://{addr}/"), None, Some(Duration::from_millis(500)));
        let waited = t.elapsed();
        match r {
            Err(Error::Io(e)) => assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{what}: {e}"),
            Err(e) => panic!("{what}: {e}"),
            Ok(_) => panic!("{what}: a handshake"),
        }
        assert!(waited >= Duration::from_millis(400) && waited < Duration::from_secs(3), "{what}: {waited:?}");
    }
    drop(server.join().unwrap());
}
