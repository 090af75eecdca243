//! The chat server example: every line goes to every other client, not
//! back to its sender, and clients that hang up leave; also runs the
//! example binary and talks to it.

use std::io::{BufRead, BufReader, Read, Write};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::net::{TcpListener, TcpStream};

mod util;
use util::{example_binary, KillOnDrop};

#[allow(dead_code, unreachable_pub)]
#[path = "../examples/chat_server.rs"]
mod chat_server;

/// Yields until `cond` holds; fails after a while rather than hanging.
fn yield_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        eventlet::sleep(Duration::from_millis(1));
    }
}

#[test]
fn lines_go_to_every_other_client() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let participants = Rc::new(chat_server::Participants::default());
    let p = participants.clone();
    let server = eventlet::spawn(move || chat_server::serve(listener, p));

    // Four green clients; each sends one line once all are connected and
    // reads the three lines of the others.
    const N: usize = 4;
    let clients: Vec<_> = (0..N).map(|_| TcpStream::connect(addr).unwrap()).collect();
    yield_until("all clients joined", || participants.len() == N);
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, sock)| {
            eventlet::spawn(move || {
                (&sock).write_all(format!("hello from {i}\n").as_bytes()).unwrap();
                let mut reader = BufReader::new(&sock);
                let mut got = Vec::new();
                for _ in 0..N - 1 {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    got.push(line);
                }
                got.sort();
                (got, sock)
            })
        })
        .collect();
    let mut socks = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        let (got, sock) = h.join().unwrap();
        let expected: Vec<String> = (0..N).filter(|&j| j != i).map(|j| format!("hello from {j}\n")).collect();
        assert_eq!(got, expected, "client {i}");
        socks.push(sock);
    }
    // Nothing more arrives: no echo to the sender.
    for s in &socks {
        s.assert_nothing_pending();
    }

    // A client that hangs up leaves; the others go on chatting.
    drop(socks.remove(0));
    yield_until("the first client left", || participants.len() == N - 1);
    (&socks[0]).write_all(b"still here\n").unwrap();
    for s in &socks[1..] {
        let mut line = String::new();
        BufReader::new(s).read_line(&mut line).unwrap();
        assert_eq!(line, "still here\n");
    }
    drop(socks);
    yield_until("every client left", || participants.is_empty());
    server.kill();
    assert!(server.join().is_err());
    yield_until("every green thread ended", || eventlet::hub::stats().green_threads == 0);
    assert_eq!(eventlet::hub::stats().timers, 0);
}

/// Checks that no bytes are waiting to be read, without blocking.
trait NothingPending {
    fn assert_nothing_pending(&self);
}

impl NothingPending for TcpStream {
    fn assert_nothing_pending(&self) {
        let r = eventlet::with_timeout(Duration::from_millis(20), || {
            let mut buf = [0; 1];
            let mut s = self;
            s.read(&mut buf)
        });
        match r {
            Err(_) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Ok(other) => panic!("unexpected data or error: {other:?}"),
        }
    }
}

#[test]
fn the_example_binary_relays_between_two_clients() {
    let mut child = std::process::Command::new(example_binary("chat_server"))
        .arg("127.0.0.1:0")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _kill = KillOnDrop(child);
    let mut out = std::io::BufReader::new(stdout);
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    let addr = first.trim().strip_prefix("chat server listening on ").expect(&first).to_owned();

    let a = std::net::TcpStream::connect(&addr).unwrap();
    let b = std::net::TcpStream::connect(&addr).unwrap();
    b.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // `b` may not be registered yet when `a` speaks: retry until it hears.
    let mut reader = std::io::BufReader::new(&b);
    b.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut line = String::new();
    while line.is_empty() {
        assert!(Instant::now() < deadline, "b never heard a");
        (&a).write_all(b"hi b\n").unwrap();
        let _ = reader.read_line(&mut line);
    }
    assert_eq!(line, "hi b\n");
}
