//! The inspection console: a real TCP client asks what the green threads
//! of the hub are doing.

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use eventlet::net::{TcpListener, TcpStream};

/// Sends `cmd` and reads up to the next prompt.
fn ask(conn: &TcpStream, cmd: &str) -> String {
    let mut w = conn;
    w.write_all(format!("{cmd}\n").as_bytes()).unwrap();
    read_to_prompt(conn)
}

fn read_to_prompt(conn: &TcpStream) -> String {
    let mut r = conn;
    let mut got = Vec::new();
    let mut b = [0u8; 1];
    while !got.ends_with(b"> ") {
        assert_eq!(r.read(&mut b).unwrap(), 1, "the console closed early: {}", String::from_utf8_lossy(&got));
        got.push(b[0]);
    }
    String::from_utf8(got).unwrap()
}

#[test]
fn threads_shows_what_each_green_thread_waits_for() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let console = eventlet::spawn(move || eventlet::backdoor::serve(listener));

    // Something to see: a sleeper and a reader blocked on a socket.
    let sleeper = eventlet::Builder::new().name("sleeper").spawn(|| eventlet::sleep(Duration::from_secs(30))).unwrap();
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = TcpStream::connect(server.local_addr().unwrap()).unwrap();
    let (accepted, _) = server.accept().unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&accepted);
    let reader = eventlet::Builder::new()
        .name("reader")
        .spawn(move || {
            let mut b = [0u8; 1];
            (&accepted).read(&mut b).map(|_| b[0])
        })
        .unwrap();

    let conn = TcpStream::connect(addr).unwrap();
    let banner = read_to_prompt(&conn);
    assert!(banner.starts_with("eventlet console"), "{banner}");

    let list = ask(&conn, "threads");
    let line = |name: &str| {
        list.lines().find(|l| l.contains(name)).unwrap_or_else(|| panic!("no {name} in:\n{list}")).to_owned()
    };
    let s = line("sleeper");
    assert!(s.contains("parked") && s.contains("timer in"), "{s}");
    let r = line("reader");
    assert!(r.contains("parked") && r.contains(&format!("read fd {fd}")), "{r}");
    assert!(line("main").contains("parked"));

    let stats = ask(&conn, "stats");
    assert!(stats.contains("io waiters "), "{stats}");
    assert!(ask(&conn, "frobnicate").contains("unknown command"));
    assert!(ask(&conn, "help").contains("threads"));

    // `quit` ends the session: the console closes the connection.
    (&conn).write_all(b"quit\n").unwrap();
    let mut rest = Vec::new();
    BufReader::new(&conn).read_until(b'\n', &mut rest).unwrap();
    assert!(rest.is_empty());

    (&peer).write_all(b"x").unwrap();
    assert_eq!(reader.join().unwrap().unwrap(), b'x');
    sleeper.kill();
    console.kill();
    assert!(console.join().is_err());
}

#[test]
fn the_console_sees_every_hub_of_a_group() {
    let group = eventlet::hub::Group::builder().hubs(2).name("console-grp").build().unwrap();
    let (tx, rx) = eventlet::channel::bounded::<()>(0);
    group
        .spawn_on(1, move || {
            eventlet::Builder::new()
                .name("far-waiter")
                .spawn_n(move || {
                    let _ = rx.recv();
                })
                .unwrap();
        })
        .unwrap()
        .join()
        .unwrap();
    // The console runs on hub 0 of the group.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(group.spawn_on(0, move || eventlet::backdoor::serve(listener)).unwrap());
    let conn = TcpStream::connect(addr).unwrap();
    read_to_prompt(&conn);

    let hubs = ask(&conn, "hubs");
    let heading = |i: usize| format!("(thread \"console-grp-{i}\", group \"console-grp\" #{i})");
    assert!(hubs.lines().next().unwrap().contains(&heading(0)), "the console's own hub first:\n{hubs}");
    assert!(hubs.contains(&heading(1)), "{hubs}");

    let threads = ask(&conn, "threads");
    let far = threads.find(&heading(1)).unwrap_or_else(|| panic!("no hub 1 in:\n{threads}"));
    let waiter = threads.find("far-waiter").unwrap_or_else(|| panic!("no far-waiter in:\n{threads}"));
    assert!(waiter > far, "the waiter is listed under hub 1:\n{threads}");
    assert!(threads[waiter..].lines().next().unwrap().contains("parked"));

    let stats = ask(&conn, "stats");
    // The counters of both hubs of the group.
    assert!(stats.matches("io waiters ").count() >= 2, "{stats}");

    drop(tx);
    group.shutdown(Duration::from_millis(100));
}

/// Clients beyond `MAX_SESSIONS` wait in the backlog (they cannot make the
/// console hold a green thread and a buffer each) and get their prompt as
/// soon as a session ends.
#[test]
fn sessions_are_bounded_and_a_waiting_client_gets_in_when_one_ends() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let console = eventlet::spawn(move || eventlet::backdoor::serve(listener));
    let sessions: Vec<TcpStream> = (0..eventlet::backdoor::MAX_SESSIONS)
        .map(|_| {
            let c = TcpStream::connect(addr).unwrap();
            read_to_prompt(&c);
            c
        })
        .collect();
    let waiting = TcpStream::connect(addr).unwrap();
    waiting.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut b = [0u8; 1];
    let e = (&waiting).read(&mut b).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "a session over the bound was served");
    let mut first = &sessions[0];
    first.write_all(b"quit\n").unwrap();
    waiting.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert!(read_to_prompt(&waiting).starts_with("eventlet console"));
    console.kill();
}
