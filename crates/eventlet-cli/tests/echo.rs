//! `eventlet echo`: echoes, a port in use is one clear line, Ctrl-C stops it.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use util::{run, Proc};

#[test]
fn echoes_what_it_gets() {
    let (_server, addr) = Proc::server(&["echo", "--listen", "127.0.0.1:0", "--max-clients", "10"]);
    let mut clients: Vec<TcpStream> = (0..20).map(|_| TcpStream::connect(&addr).unwrap()).collect();
    // Ten at once are served; the rest wait in the backlog until one leaves.
    for (i, c) in clients.iter_mut().enumerate().take(10) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let msg = format!("hello {i}\n");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    clients.drain(..10);
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&[7; 10_000]).unwrap();
    }
    for c in &mut clients {
        let mut back = vec![0; 10_000];
        c.read_exact(&mut back).unwrap();
        assert!(back.iter().all(|&b| b == 7));
    }
}

#[test]
fn a_port_in_use_is_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(&["echo", "--listen", &addr], Duration::from_secs(30));
    assert_eq!(out.one_line_error(), format!("eventlet: cannot listen on {addr}: the address is already in use"));
    let out = run(&["echo", "--listen", "not an address"], Duration::from_secs(30));
    assert!(out.one_line_error().starts_with("eventlet: cannot listen on not an address: "), "{out:?}");
    let out = run(&["echo", "--listen", "127.0.0.1:0", "--max-clients", "0"], Duration::from_secs(30));
    assert_eq!(out.one_line_error(), "eventlet: --max-clients must be at least 1");
    let out = run(&["echo", "--listen", "127.0.0.1:0", "--workers", "0"], Duration::from_secs(30));
    assert_eq!(out.one_line_error(), "eventlet: --workers must be at least 1");
}

#[test]
fn ctrl_c_stops_it_cleanly() {
    let (server, addr) = Proc::server(&["echo", "--listen", "127.0.0.1:0"]);
    let _idle = TcpStream::connect(&addr).unwrap();
    server.interrupt();
    let out = server.wait(Duration::from_secs(10));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(out.stderr, "echo server stopped\n");
}

#[test]
fn workers_spread_the_clients_over_their_hubs() {
    let (server, addr) =
        Proc::server(&["echo", "--listen", "127.0.0.1:0", "--workers", "2", "--console", "127.0.0.1:0"]);
    let clients: Vec<TcpStream> = (0..40)
        .map(|i| {
            let mut c = TcpStream::connect(&addr).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let msg = format!("client {i}");
            c.write_all(msg.as_bytes()).unwrap();
            let mut back = vec![0; msg.len()];
            c.read_exact(&mut back).unwrap();
            c
        })
        .collect();
    let hubs = util::console(&util::console_of(&server), "hubs\n");
    // This process's main hub, then the server's two: each holds the same
    // few green threads of its own (its accept loop, ...) and half the 40
    // handlers, give or take the two a hub may hold before it passes new
    // connections to the other.
    let green = util::server_hubs(&hubs, 2);
    assert!(green[0].abs_diff(green[1]) <= 2, "{green:?}\n{hubs}");
    assert!(green.iter().sum::<usize>() >= 40, "{hubs}");
    drop(clients);
}

#[test]
fn the_console_shows_a_client_handler_waiting_to_read() {
    let (server, addr) = Proc::server(&["echo", "--listen", "127.0.0.1:0", "--console", "127.0.0.1:0"]);
    let console_addr = util::console_of(&server);
    // A client that says nothing: its handler waits to read.
    let mut client = TcpStream::connect(&addr).unwrap();
    client.write_all(b"ping").unwrap();
    let mut back = [0; 4];
    client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    client.read_exact(&mut back).unwrap();

    let text = util::console(&console_addr, "threads\n");
    assert!(text.contains("main"), "{text}");
    assert!(text.lines().any(|l| l.contains("parked") && l.contains("read fd")), "{text}");
}
