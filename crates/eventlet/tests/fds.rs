//! No file descriptor leaks: everything the runtime opens, it closes.

use std::io::{Read, Write};
use std::time::Duration;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// What each open descriptor refers to, for failure messages.
fn fd_targets() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| format!("{} -> {:?}", e.file_name().to_string_lossy(), std::fs::read_link(e.path()).ok()))
        .collect();
    v.sort();
    v
}

/// The tests count the process's descriptors, so they take turns, each on
/// an OS thread of its own that ends (closing its hub's descriptors) before
/// the next one starts.
fn one_at_a_time(test: fn()) {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    if let Err(p) = std::thread::spawn(test).join() {
        std::panic::resume_unwind(p);
    }
}

#[test]
fn no_descriptor_is_leaked() {
    one_at_a_time(no_descriptor_is_leaked_here);
}

fn no_descriptor_is_leaked_here() {
    let _ = eventlet::hub::stats(); // the hub's own epoll and eventfd
    let before = open_fds();

    for _ in 0..3 {
        let l = eventlet::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let server = eventlet::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let s2 = s.try_clone().unwrap();
            let mut buf = [0; 4];
            (&s).read_exact(&mut buf).unwrap();
            (&s2).write_all(&buf).unwrap();
        });
        let mut c = eventlet::connect(addr).unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        c.read_exact(&mut buf).unwrap();
        server.join().unwrap();

        // A reader killed while blocked.
        let l = eventlet::listen("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let blocked = eventlet::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let _ = (&s).read(&mut [0; 1]);
        });
        let c = eventlet::connect(addr).unwrap();
        eventlet::sleep(Duration::from_millis(5));
        blocked.kill();
        drop(c);

        // A refused connect and a timed out read.
        let _ = eventlet::connect(addr).unwrap_err();
        let u = eventlet::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.set_read_timeout(Some(Duration::from_millis(1))).unwrap();
        let _ = u.recv(&mut [0; 1]).unwrap_err();
        let (a, b) = eventlet::net::unix::UnixStream::pair().unwrap();
        drop((a, b));
    }
    assert_eq!(open_fds(), before);
    assert_eq!(eventlet::hub::stats().io_registrations, 0);
}

/// The rest of what opens descriptors: `Server` (its listener and every
/// connection, through a stop with connections still open), a pool of
/// clients, a `Timeout` cutting a read short, a child process (pipes and
/// its pidfd), and a hub thread (its epoll and eventfd once it ends).
#[test]
fn servers_pools_processes_and_hub_threads_close_what_they_open() {
    one_at_a_time(servers_pools_processes_and_hub_threads_close_what_they_open_here);
}

fn servers_pools_processes_and_hub_threads_close_what_they_open_here() {
    let _ = eventlet::hub::stats();
    let before = open_fds();
    let before_targets = fd_targets();

    for _ in 0..2 {
        let server = eventlet::Server::new(eventlet::listen("127.0.0.1:0").unwrap(), 50);
        let addr = server.local_addr().unwrap();
        let stop = server.stop_handle();
        let accept_loop = eventlet::spawn(move || {
            server.serve(|s, _| {
                let mut buf = [0; 8];
                while let Ok(n) = (&s).read(&mut buf) {
                    if n == 0 || (&s).write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            })
        });
        let pool = eventlet::GreenPool::new(10);
        let echoed: Vec<bool> = pool
            .imap(
                move |i: u8| {
                    let mut c = eventlet::connect(addr).unwrap();
                    c.write_all(&[i; 8]).unwrap();
                    let mut back = [0; 8];
                    c.read_exact(&mut back).unwrap();
                    back == [i; 8]
                },
                0..30,
            )
            .collect();
        assert!(echoed.iter().all(|&ok| ok));
        // One client still connected, cut short by a Timeout.
        let idle = eventlet::connect(addr).unwrap();
        let cut = eventlet::with_timeout(Duration::from_millis(20), || (&idle).read(&mut [0; 1]));
        // Green I/O reports the Timeout as an error of kind TimedOut.
        assert!(matches!(&cut, Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut), "{cut:?}");
        stop.stop();
        accept_loop.join().unwrap().unwrap();
        drop(idle);

        let out = eventlet::process::Command::new("sh").args(["-c", "echo hi; echo err >&2"]).output().unwrap();
        assert_eq!(out.stdout, b"hi\n");

        let hub = eventlet::hub::start("fds-hub").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        hub.handle()
            .spawn(move || {
                let l = eventlet::listen("127.0.0.1:0").unwrap();
                let addr = l.local_addr().unwrap();
                let c = eventlet::spawn(move || eventlet::connect(addr).map(|_| ()));
                let _ = l.accept().unwrap();
                c.join().unwrap().unwrap();
                tx.send(()).unwrap();
            })
            .map_err(|_| "hub gone")
            .unwrap();
        rx.recv().unwrap();
        hub.join();
    }
    // A stopped server's connections end when their handlers see the
    // close; give them a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while open_fds() != before && std::time::Instant::now() < deadline {
        eventlet::sleep(Duration::from_millis(10));
    }
    assert_eq!(open_fds(), before, "before: {before_targets:?}\nafter: {:?}", fd_targets());
    assert_eq!(eventlet::hub::stats().io_registrations, 0);
}
