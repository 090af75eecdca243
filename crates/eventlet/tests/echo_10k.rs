//! The seed's echo server (`examples/echoserver.rs`, run as its own process)
//! answers 10,000 concurrent clients byte-exact.
//!
//! One process may hold at most 20,000 files here, so the server and the
//! clients run in separate processes: the example binary is the server, this
//! test's green threads are the clients.

use std::cell::Cell;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::net::TcpStream;
use eventlet::GreenPool;

mod util;
use util::{example_binary, KillOnDrop};

const CLIENTS: usize = 10_000;
const MSG_LEN: usize = 24;

#[test]
fn echo_server_answers_ten_thousand_concurrent_clients() {
    let mut child = Command::new(example_binary("echoserver"))
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the echo server example");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let server = KillOnDrop(child);
    let addr: std::net::SocketAddr =
        line.trim().rsplit(' ').next().unwrap().parse().unwrap_or_else(|_| panic!("bad banner {line:?}"));

    let connected = Rc::new(Cell::new(0usize));
    let peak = Rc::new(Cell::new(0usize));
    let start = eventlet::current();
    let go = Rc::new(Cell::new(false));
    let waiters = Rc::new(std::cell::RefCell::new(Vec::new()));
    let pool = GreenPool::new(CLIENTS);
    let started = Instant::now();
    let results = pool.imap(
        {
            let (connected, peak, go, waiters, start) =
                (connected.clone(), peak.clone(), go.clone(), waiters.clone(), start.clone());
            move |i: usize| -> std::io::Result<bool> {
                let mut sock = TcpStream::connect(addr)?;
                connected.set(connected.get() + 1);
                peak.set(peak.get().max(connected.get()));
                if connected.get() == CLIENTS {
                    start.unpark();
                }
                // Every client holds its connection open until all are in.
                while !go.get() {
                    waiters.borrow_mut().push(eventlet::current());
                    eventlet::park();
                }
                let msg: Vec<u8> = format!("client {i:>6} says hi!!\n").into_bytes();
                assert_eq!(msg.len(), MSG_LEN);
                sock.write_all(&msg)?;
                let mut back = [0u8; MSG_LEN];
                sock.read_exact(&mut back)?;
                connected.set(connected.get() - 1);
                Ok(back[..] == msg[..])
            }
        },
        0..CLIENTS,
    );
    // Drive the clients from a green thread so the root can release them.
    let collector = eventlet::spawn(move || results.collect::<Vec<_>>());
    while connected.get() < CLIENTS {
        assert!(started.elapsed() < Duration::from_secs(60), "only {} clients connected", connected.get());
        eventlet::park_timeout(Duration::from_millis(100));
    }
    go.set(true);
    for w in waiters.borrow_mut().drain(..) {
        w.unpark();
    }
    let results = collector.join().unwrap();
    drop(server);
    assert_eq!(results.len(), CLIENTS);
    let exact = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let errors: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).take(3).collect();
    assert_eq!(exact, CLIENTS, "byte-exact echoes: {exact}; first errors: {errors:?}");
    assert_eq!(peak.get(), CLIENTS, "all clients were connected at once");
}
