//! `Server::workers`: one server on several hubs. Connections spread over
//! the hubs, one connection limit holds for all of them, a stop shuts it
//! down cleanly with connections open, a handler's panic stays in its
//! connection, and an accept error on any hub reaches the caller.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use eventlet::net::{Balance, TcpListener, TcpStream};
use eventlet::Server;

/// Echoes until EOF, after telling `seen` which hub thread it runs on.
fn echo(mut sock: TcpStream, seen: &Mutex<HashMap<String, usize>>) {
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    *seen.lock().unwrap().entry(name).or_default() += 1;
    let mut buf = [0u8; 256];
    while let Ok(n @ 1..) = sock.read(&mut buf) {
        if sock.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// A blocking client that echoes `msg` once and stays connected.
fn client(addr: SocketAddr, msg: &str) -> std::net::TcpStream {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(msg.as_bytes()).unwrap();
    let mut back = vec![0; msg.len()];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, msg.as_bytes());
    c
}

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spreads_and_shuts_down_with_connections_open(listener: TcpListener, balance: Balance) {
    let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let server = Server::new(listener, 1000).workers(2).balance(balance).shutdown_timeout(Duration::from_millis(200));
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();
    let s = seen.clone();
    let serving = std::thread::spawn(move || server.serve(move |sock, _| echo(sock, &s)));
    // 200 connections from four OS threads, all left open.
    let clients: Vec<std::net::TcpStream> = (0..4)
        .map(|t| std::thread::spawn(move || (0..50).map(|i| client(addr, &format!("{t}/{i}"))).collect::<Vec<_>>()))
        .flat_map(|t| t.join().unwrap())
        .collect();
    let counts = seen.lock().unwrap().clone();
    assert_eq!(counts.values().sum::<usize>(), 200, "{counts:?}");
    assert_eq!(counts.len(), 2, "both hubs served connections: {counts:?}");
    // Even, give or take the two a hub may hold above the other before it
    // passes new connections over: the accepting hub is whichever gets
    // there first, or the kernel's hash, neither even by itself.
    let n: Vec<usize> = counts.values().copied().collect();
    assert!(n[0].abs_diff(n[1]) <= 2, "{counts:?}");
    assert!(counts.keys().all(|k| k.starts_with("eventlet-srv-")), "{counts:?}");
    assert_eq!(stop.running(), 200);

    // Stop with all 200 open: serve returns once the grace period is over
    // and the handlers were killed; the clients see their connections end.
    let start = Instant::now();
    stop.stop();
    serving.join().unwrap().unwrap();
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(stop.running(), 0);
    for mut c in clients {
        let mut b = [0u8; 1];
        match c.read(&mut b) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the connection is still served: {other:?}"),
        }
    }
    assert!(std::net::TcpStream::connect(addr).is_err(), "the listener is closed");
}

#[test]
fn a_shared_listener_spreads_connections_and_shuts_down_cleanly() {
    spreads_and_shuts_down_with_connections_open(TcpListener::bind("127.0.0.1:0").unwrap(), Balance::Shared);
}

#[test]
fn reuse_port_listeners_spread_connections_and_shut_down_cleanly() {
    let listener = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    spreads_and_shuts_down_with_connections_open(listener, Balance::ReusePort);
}

#[test]
fn one_connection_limit_for_all_hubs() {
    for balance in [Balance::Shared, Balance::ReusePort] {
        let listener = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let server = Server::new(listener, 10).workers(2).balance(balance);
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let s = seen.clone();
        let serving = std::thread::spawn(move || server.serve(move |sock, _| echo(sock, &s)));
        // 10 served and held open; 5 more wait in the backlog.
        let mut held: Vec<_> = (0..10).map(|i| client(addr, &format!("held {i}"))).collect();
        let waiting: Vec<_> = (0..5).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(stop.running(), 10, "{balance:?}");
        assert_eq!(seen.lock().unwrap().values().sum::<usize>(), 10, "{balance:?}");
        // Five end: the five waiting ones are served, on whichever hub.
        held.drain(..5);
        for mut c in waiting {
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            c.write_all(b"late").unwrap();
            let mut back = [0u8; 4];
            c.read_exact(&mut back).unwrap();
            assert_eq!(&back, b"late");
            held.push(c);
        }
        assert_eq!(stop.running(), 10, "{balance:?}");
        drop(held);
        wait_until("the handlers end", || stop.running() == 0);
        stop.stop();
        serving.join().unwrap().unwrap();
    }
}

#[test]
fn a_panicking_handler_ends_only_its_own_connection() {
    let server = Server::new(TcpListener::bind("127.0.0.1:0").unwrap(), 100).workers(2);
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();
    let serving = std::thread::spawn(move || {
        server.serve(|mut s, _| {
            let mut buf = [0; 5];
            s.read_exact(&mut buf).unwrap();
            if &buf == b"panic" {
                panic!("handler told to panic");
            }
            s.write_all(&buf).unwrap();
        })
    });
    for round in 0..20 {
        let mut bad = std::net::TcpStream::connect(addr).unwrap();
        bad.write_all(b"panic").unwrap();
        let mut rest = Vec::new();
        bad.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = bad.read_to_end(&mut rest);
        assert!(rest.is_empty(), "round {round}");
        let mut good = std::net::TcpStream::connect(addr).unwrap();
        good.write_all(b"hello").unwrap();
        let mut back = [0u8; 5];
        good.read_exact(&mut back).unwrap();
        assert_eq!(&back, b"hello");
    }
    stop.stop();
    serving.join().unwrap().unwrap();
}

#[test]
fn an_accept_error_on_any_hub_reaches_the_caller_and_stops_the_others() {
    for balance in [Balance::Shared, Balance::ReusePort] {
        let listener = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
        let fd = listener.as_raw_fd();
        let server = Server::new(listener, 100).workers(2).balance(balance);
        let (tx, rx) = mpsc::channel();
        let serving = std::thread::spawn(move || {
            let r = server.serve(|_, _| {});
            tx.send(()).unwrap();
            r
        });
        std::thread::sleep(Duration::from_millis(100));
        // Shut the first hub's listening socket down under it: its next
        // accept fails with EINVAL, which no retry cures.
        // SAFETY: `fd` is the server's listening socket, still open; shutdown
        // does not close it.
        assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }, 0);
        rx.recv_timeout(Duration::from_secs(10)).expect("serve returned");
        let err = serving.join().unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{balance:?}: {err}");
    }
}

#[test]
fn a_factory_that_panics_on_one_hub_is_an_error_and_stops_the_rest() {
    let server = Server::new(TcpListener::bind("127.0.0.1:0").unwrap(), 100).workers(2);
    let made = Arc::new(AtomicUsize::new(0));
    let m = made.clone();
    let err = server
        .serve_with(move || {
            if m.fetch_add(1, Ordering::SeqCst) == 1 {
                panic!("no handler for this hub");
            }
            |_sock: TcpStream, _peer: SocketAddr| {}
        })
        .unwrap_err();
    assert_eq!(made.load(Ordering::SeqCst), 2);
    assert!(err.to_string().contains("the handler's factory panicked: no handler for this hub"), "{err}");
}

#[test]
fn handlers_made_per_hub_may_hold_rc() {
    let server = Server::new(TcpListener::bind("127.0.0.1:0").unwrap(), 100).workers(2);
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();
    let serving = std::thread::spawn(move || {
        server.serve_with(|| {
            // Per hub: an Rc'd counter of the connections this hub served.
            let served = std::rc::Rc::new(std::cell::Cell::new(0u32));
            move |mut sock: TcpStream, _| {
                served.set(served.get() + 1);
                let _ = sock.write_all(format!("{}", served.get()).as_bytes());
            }
        })
    });
    let mut total = 0;
    for _ in 0..10 {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        total += 1;
        assert!(s.parse::<u32>().unwrap() <= total);
    }
    stop.stop();
    serving.join().unwrap().unwrap();
}

#[test]
fn stop_handle_wait_returns_once_the_server_stops() {
    let server = Server::new(TcpListener::bind("127.0.0.1:0").unwrap(), 10).workers(2);
    let stop = server.stop_handle();
    let s = stop.clone();
    let waiting = std::thread::spawn(move || {
        s.wait();
        Instant::now()
    });
    // A green thread waits too, on the hub of the thread that serves.
    let s = stop.clone();
    let serving = std::thread::spawn(move || {
        let waiter = eventlet::spawn(move || s.wait());
        let r = server.serve(|_, _| {});
        waiter.join().unwrap();
        r
    });
    std::thread::sleep(Duration::from_millis(100));
    assert!(!waiting.is_finished() && !stop.is_stopped());
    let at = Instant::now();
    stop.stop();
    assert!(waiting.join().unwrap() >= at);
    serving.join().unwrap().unwrap();
}
