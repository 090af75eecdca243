//! `eventlet forward` between a client and `eventlet echo` / `eventlet
//! serve`: bytes both ways, half-close passed on, a dead target, bad input.

mod util;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::Duration;

use util::{closed_port, http, run, Proc, TempDir};

const LIMIT: Duration = Duration::from_secs(60);

fn connect(addr: &str) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn echo_through_the_forwarder() {
    let (_echo, echo_addr) = Proc::server(&["echo", "--listen", "127.0.0.1:0"]);
    let (fwd, addr) = Proc::server(&["forward", "127.0.0.1:0", &echo_addr]);
    let mut clients: Vec<TcpStream> = (0..50).map(|_| connect(&addr)).collect();
    for round in 0..5 {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(format!("client {i} round {round}\n").as_bytes()).unwrap();
        }
        for (i, c) in clients.iter_mut().enumerate() {
            let want = format!("client {i} round {round}\n");
            let mut back = vec![0; want.len()];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, want.as_bytes());
        }
    }
    // A megabyte each way, written and read at once.
    let mut big = connect(&addr);
    let mut writer = big.try_clone().unwrap();
    let data: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let t = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0; data.len()];
    big.read_exact(&mut back).unwrap();
    t.join().unwrap();
    assert!(back == data);
    drop(big);
    drop(clients);
    let line = format!("closed, {} bytes sent to {echo_addr}, {} received", 1 << 20, 1 << 20);
    let log = fwd.stderr_once(|log| log.contains(&line));
    assert!(log.contains(&line), "{log}");
}

#[test]
fn http_through_the_forwarder() {
    let site = TempDir::new("forward-http");
    site.write("a.txt", "through the forwarder");
    site.write("index.html", r#"<a href="a.txt">a</a>"#);
    let (_serve, serve_addr) = Proc::server(&["serve", "--listen", "127.0.0.1:0", site.str()]);
    let (_fwd, addr) = Proc::server(&["forward", "127.0.0.1:0", &serve_addr, "--quiet"]);
    let r = http(&addr, "GET", "/a.txt");
    assert_eq!((r.status, r.text().as_str()), (200, "through the forwarder"));
    // The crawler through it, keep-alive connections and all.
    let out = run(&["crawl", "--depth", "1", &format!("http://{addr}/")], LIMIT);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains(&format!("  200         21  http://{addr}/a.txt\n")), "{out:?}");
}

#[test]
fn half_close_is_passed_on() {
    // A target that reads to EOF, then answers and closes.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap().to_string();
    let server = std::thread::spawn(move || {
        let (mut s, _) = target.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        s.write_all(format!("got {} bytes", got.len()).as_bytes()).unwrap();
    });
    let (_fwd, addr) = Proc::server(&["forward", "127.0.0.1:0", &target_addr]);
    let mut c = connect(&addr);
    c.write_all(&[1; 5000]).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    assert_eq!(answer, "got 5000 bytes");
    server.join().unwrap();
}

#[test]
fn a_dead_target_closes_the_client_and_the_forwarder_goes_on() {
    let dead = closed_port();
    let (fwd, addr) = Proc::server(&["forward", "127.0.0.1:0", &dead]);
    for _ in 0..3 {
        let mut c = connect(&addr);
        let mut buf = [0; 1];
        assert!(matches!(c.read(&mut buf), Ok(0) | Err(_)));
    }
    let line = format!("cannot connect: {dead}: ");
    let log = fwd.stderr_once(|log| log.contains(&line));
    assert!(log.contains(&line), "{log}");
    fwd.interrupt();
    let out = fwd.wait(Duration::from_secs(10));
    assert!(out.status.success(), "{out:?}");
    assert!(out.stderr.ends_with("forwarder stopped\n"), "{out:?}");
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let out = run(&["forward", &taken, "127.0.0.1:9"], LIMIT);
    assert_eq!(out.one_line_error(), format!("eventlet: cannot listen on {taken}: the address is already in use"));
    let out = run(&["forward", "127.0.0.1:0", "no-port-here"], LIMIT);
    assert_eq!(out.one_line_error(), "eventlet: bad target \"no-port-here\": expected HOST:PORT");
    let out = run(&["forward", "127.0.0.1:0", "127.0.0.1:http"], LIMIT);
    assert!(out.one_line_error().starts_with("eventlet: bad target"), "{out:?}");
    let out = run(&["forward", "127.0.0.1:0"], LIMIT);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A target that accepts and never reads, and a client that sends more
/// than the socket buffers hold and goes away: the forwarder's write to
/// the target waited forever, holding both connections (and the client's
/// place under --max-clients) after the client had gone. Now a write that
/// waits --write-timeout closes both.
#[test]
fn a_target_that_never_reads_is_let_go_after_the_write_timeout() {
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_addr = target.local_addr().unwrap().to_string();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let held = std::thread::spawn(move || {
        let (s, _) = target.accept().unwrap();
        // Held unread until the test is over (30 s at most).
        let _ = done.recv_timeout(Duration::from_secs(30));
        drop(s);
    });
    let (fwd, addr) = Proc::server(&["forward", "--write-timeout", "500ms", "127.0.0.1:0", &target_addr]);
    let mut c = connect(&addr);
    c.set_write_timeout(Some(Duration::from_millis(500))).unwrap();
    let chunk = vec![7u8; 1 << 20];
    let mut sent = 0;
    while sent < 64 << 20 && c.write_all(&chunk).is_ok() {
        sent += chunk.len();
    }
    drop(c);
    let t = std::time::Instant::now();
    while !fwd.stderr().contains("closed,") && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = fwd.stderr();
    drop(done_tx);
    held.join().unwrap();
    assert!(log.contains("closed,"), "the forwarder still holds the connection 5 s on: {log}");
}
