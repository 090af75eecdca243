//! `std::net`, std's pipes and libc's `poll`/`select` on green threads,
//! with the patch: the seed's echo server written with `std::net` only,
//! socket timeouts, non-blocking sockets that still say `WouldBlock`,
//! closing a descriptor under a waiting green thread, `errno`.

mod util;

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::time::{Duration, Instant};

use util::{patch, raise_nofile};

/// The seed's echo handler, byte by byte as the seed writes it.
fn handle(mut client: TcpStream) {
    let mut buf = [0; 4096];
    loop {
        let n = client.read(&mut buf).unwrap_or(0);
        if n == 0 || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// `n` bytes unique to client `i`.
fn message(i: usize, n: usize) -> Vec<u8> {
    (0..n).map(|k| ((i * 31 + k * 7) % 251) as u8).collect()
}

/// The seed's echo server (`std::net` only, `main` accepting, a pool of
/// green threads handling), and `clients` green threads that all connect
/// before any of them sends the second half of its message.
fn echo(clients: usize) -> Duration {
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let connected = Rc::new(std::cell::Cell::new(0));
    let gate = Rc::new(eventlet::Semaphore::new(100));
    let _watchdog = util::fail_after(Duration::from_secs(120), "the echo test");
    let all_in = Rc::new(eventlet::Event::new());
    let start = Instant::now();
    let hs: Vec<_> = (0..clients)
        .map(|i| {
            let (connected, all_in, gate) = (connected.clone(), all_in.clone(), gate.clone());
            eventlet::spawn(move || {
                // At most 100 connections made and not yet accepted: more
                // overflow the listen backlog std's bind asks for (128), the
                // kernel drops the SYNs, and each such client retries after
                // 1, 3, 7... s (a loaded machine saw it pass two minutes).
                // The accept loop gives the permit back.
                gate.acquire().forget();
                let mut c = TcpStream::connect(addr).unwrap();
                let msg = message(i, 1000);
                c.write_all(&msg[..500]).unwrap();
                connected.set(connected.get() + 1);
                if connected.get() == clients {
                    all_in.send(()).unwrap();
                }
                all_in.wait();
                c.write_all(&msg[500..]).unwrap();
                let mut back = vec![0; msg.len()];
                c.read_exact(&mut back).unwrap();
                assert!(back == msg, "client {i} got other bytes back");
            })
        })
        .collect();
    let pool = eventlet::GreenPool::new(10_000);
    for _ in 0..clients {
        let (sock, _addr) = server.accept().unwrap();
        gate.add_permits(1);
        pool.spawn_n(move || handle(sock));
    }
    for h in hs {
        h.join().unwrap();
    }
    pool.waitall();
    start.elapsed()
}

#[test]
fn the_seed_echo_server_in_std_net_serves_5000_concurrent_clients() {
    raise_nofile();
    assert!(patch());
    let took = echo(5000);
    eprintln!("5,000 concurrent echo clients, std::net only, in {took:?}");
}

/// With the patch off, `main`'s blocking `accept` keeps the clients (green
/// threads of the same OS thread) from ever running: the program cannot
/// get past its first accept, exactly as without eventlet. The child is
/// stopped by an alarm after a second.
#[test]
#[ignore = "run with the patch off by patch_off_the_echo_server_blocks_in_accept"]
fn unpatched_echo() {
    assert!(!patch());
    // SAFETY: alarm has no preconditions; SIGALRM's default action ends
    // the process, which the parent test expects.
    unsafe { libc::alarm(1) };
    echo(2);
}

#[test]
fn patch_off_the_echo_server_blocks_in_accept() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "unpatched_echo", "--nocapture", "--test-threads=1", "--include-ignored"])
        .env(util::UNPATCHED, "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(libc::SIGALRM), "blocked in accept until the alarm: {:?}", out.status);
}

#[test]
fn socket_timeouts_end_the_call_as_the_kernel_would() {
    assert!(patch());
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let busy = eventlet::spawn(|| (0..20).map(|_| std::thread::sleep(Duration::from_millis(5))).count());
    let c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(150))).unwrap();
    let start = Instant::now();
    let err = (&c).read(&mut [0; 10]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "SO_RCVTIMEO ends a read with EAGAIN");
    assert!(start.elapsed() >= Duration::from_millis(150), "{:?}", start.elapsed());
    assert_eq!(busy.join().unwrap(), 20, "the other green thread ran meanwhile");
    server.set_nonblocking(false).unwrap();
    // accept honours SO_RCVTIMEO too (set through socket2-free libc).
    let tv = libc::timeval { tv_sec: 0, tv_usec: 100_000 };
    // SAFETY: a valid timeval for setsockopt.
    unsafe {
        libc::setsockopt(
            server.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let (_first, _) = server.accept().unwrap(); // `c` waits in the backlog
    let err = server.accept().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);
    // UDP: a receive timeout.
    let u = UdpSocket::bind("127.0.0.1:0").unwrap();
    u.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    assert_eq!(u.recv_from(&mut [0; 10]).unwrap_err().kind(), ErrorKind::WouldBlock);
}

#[test]
fn a_socket_the_user_made_non_blocking_still_says_would_block() {
    assert!(patch());
    let (a, _b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    let h = eventlet::spawn(move || {
        let start = Instant::now();
        let e = (&a).read(&mut [0; 4]).unwrap_err();
        (e.kind(), start.elapsed())
    });
    let (kind, took) = h.join().unwrap();
    assert_eq!(kind, ErrorKind::WouldBlock);
    // At once (a wait would be for ever: the peer sends nothing); the
    // bound leaves room for a loaded machine.
    assert!(took < Duration::from_secs(2), "{took:?}");
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    assert_eq!(eventlet::spawn(move || l.accept().unwrap_err().kind()).join().unwrap(), ErrorKind::WouldBlock);
    let (r, _w) = std::io::pipe().unwrap();
    // SAFETY: F_SETFL on our own pipe.
    unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    assert_eq!(
        eventlet::spawn(move || (&r).read(&mut [0; 4]).unwrap_err().kind()).join().unwrap(),
        ErrorKind::WouldBlock
    );
}

#[test]
fn pipes_read_and_write_green_and_whole() {
    assert!(patch());
    let (mut r, mut w) = std::io::pipe().unwrap();
    let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 253) as u8).collect();
    let expect = data.clone();
    // A 1 MB write into a 64 KiB pipe: a blocking write writes it all.
    let writer = eventlet::spawn(move || w.write(&data).unwrap());
    let reader = eventlet::spawn(move || {
        let mut got = Vec::new();
        r.read_to_end(&mut got).unwrap();
        got
    });
    assert_eq!(writer.join().unwrap(), 1_000_000, "one write call, all of it");
    assert!(reader.join().unwrap() == expect);
    // Two children's output, read at once: the second green thread gets
    // into `output()` while the first waits there (counted, not timed: one
    // after another would take 600 ms, but so may a loaded machine).
    let inside = Rc::new(std::cell::Cell::new(0));
    let most = Rc::new(std::cell::Cell::new(0));
    let hs: Vec<_> = (0..2)
        .map(|i| {
            let (inside, most) = (inside.clone(), most.clone());
            eventlet::spawn(move || {
                inside.set(inside.get() + 1);
                most.set(most.get().max(inside.get()));
                let out = std::process::Command::new("sh")
                    .args(["-c", &format!("sleep 0.3; echo child {i}")])
                    .output()
                    .unwrap();
                inside.set(inside.get() - 1);
                String::from_utf8(out.stdout).unwrap()
            })
        })
        .collect();
    let outs: Vec<String> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(outs, ["child 0\n", "child 1\n"]);
    assert_eq!(most.get(), 2, "the children's output was not read together");
}

#[test]
fn poll_and_select_wait_green() {
    assert!(patch());
    let (a, mut b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let ticks = eventlet::spawn(|| (0..10).map(|_| std::thread::sleep(Duration::from_millis(10))).count());
    let writer = eventlet::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        b.write_all(b"x").unwrap();
        b
    });
    let start = Instant::now();
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, 5000) };
    assert_eq!((n, p.revents & libc::POLLIN), (1, libc::POLLIN));
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(150) && took < Duration::from_secs(2), "{took:?}");
    assert_eq!(ticks.join().unwrap(), 10, "the hub ran the others meanwhile");
    let _b = writer.join().unwrap();
    (&a).read_exact(&mut [0; 1]).unwrap();
    // A poll that times out says 0 after its timeout.
    let start = Instant::now();
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut p, 1, 100) }, 0);
    assert!(start.elapsed() >= Duration::from_millis(100));
    // select: the same, and it writes the time left back.
    // SAFETY: fd_set manipulation on a zeroed set, fd < FD_SETSIZE.
    let mut set: libc::fd_set = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::FD_SET(fd, &mut set) };
    let mut tv = libc::timeval { tv_sec: 0, tv_usec: 120_000 };
    let start = Instant::now();
    // SAFETY: valid sets and timeval.
    let n = unsafe { libc::select(fd + 1, &mut set, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv) };
    assert_eq!(n, 0);
    assert!(start.elapsed() >= Duration::from_millis(120));
    assert_eq!((tv.tv_sec, tv.tv_usec), (0, 0));
    // SAFETY: as above.
    assert!(!unsafe { libc::FD_ISSET(fd, &set) }, "select clears the sets when nothing is ready");
}

#[test]
fn closing_a_descriptor_wakes_the_green_thread_waiting_on_it() {
    assert!(patch());
    let (a, _b) = UnixStream::pair().unwrap();
    let fd = a.as_raw_fd();
    let reader = eventlet::spawn(move || {
        let mut buf = [0u8; 4];
        // SAFETY: the pair's descriptor, closed by another green thread
        // below (the point of the test).
        let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), 4) };
        (r, std::io::Error::last_os_error().raw_os_error())
    });
    eventlet::sleep(Duration::from_millis(20));
    drop(a); // close(2), patched
    assert_eq!(reader.join().unwrap(), (-1, Some(libc::EBADF)));
}

#[test]
fn errno_is_the_callers_after_a_call_that_parked_and_succeeded() {
    assert!(patch());
    let (a, mut b) = UnixStream::pair().unwrap();
    let reader = eventlet::spawn(move || {
        // SAFETY: errno is this thread's.
        unsafe { *libc::__errno_location() = 4242 };
        let n = (&a).read(&mut [0; 4]).unwrap();
        // SAFETY: as above.
        (n, unsafe { *libc::__errno_location() })
    });
    eventlet::sleep(Duration::from_millis(20));
    b.write_all(b"abcd").unwrap();
    assert_eq!(reader.join().unwrap(), (4, 4242));
}

#[test]
fn names_resolve_and_connections_are_refused_as_usual() {
    assert!(patch());
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let c = eventlet::spawn(move || TcpStream::connect(("localhost", port)).map(|s| s.peer_addr().unwrap().port()));
    let (_s, _) = server.accept().unwrap();
    assert_eq!(c.join().unwrap().unwrap(), port);
    drop(server);
    // A port bound and not listening, held while we connect: refused, and
    // no test running beside this one can take the port meanwhile (a port
    // merely freed was, now and then, and the connection succeeded).
    let (bound, port) = bound_not_listening();
    let refused = eventlet::spawn(move || TcpStream::connect(("127.0.0.1", port)).unwrap_err().kind());
    assert_eq!(refused.join().unwrap(), ErrorKind::ConnectionRefused);
    drop(bound);
}

/// A TCP socket bound to a free port of 127.0.0.1 that does not listen,
/// and its port.
fn bound_not_listening() -> (std::os::fd::OwnedFd, u16) {
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: a new socket, owned at once; bind and getsockname with a
    // valid address of the right size.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
        let mut addr: libc::sockaddr_in = std::mem::zeroed();
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        assert_eq!(libc::bind(fd.as_raw_fd(), (&raw const addr).cast(), len), 0);
        assert_eq!(libc::getsockname(fd.as_raw_fd(), (&raw mut addr).cast(), &mut len), 0);
        (fd, u16::from_be(addr.sin_port))
    }
}

#[test]
fn patched_io_that_never_blocks_still_lets_the_others_run() {
    assert!(patch());
    let (a, b) = UnixStream::pair().unwrap();
    let ticks = Rc::new(std::cell::Cell::new(0u32));
    let t = ticks.clone();
    let ticker = eventlet::spawn(move || loop {
        t.set(t.get() + 1);
        eventlet::yield_now();
    });
    let t = ticks.clone();
    let busy = eventlet::spawn(move || {
        let before = t.get();
        for _ in 0..2000 {
            (&a).write_all(b"x").unwrap();
            (&b).read_exact(&mut [0]).unwrap();
        }
        t.get() - before
    });
    let others_ran = busy.join().unwrap();
    ticker.kill();
    // 4,000 patched calls that never block spend the I/O budget (128): the
    // ticker ran about 30 times in between.
    assert!(others_ran >= 10, "the ticker ran {others_ran} times");
}
