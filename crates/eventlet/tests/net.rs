//! Green sockets: TCP, UDP, Unix; timeouts, errors, kill, fairness, threads.

use std::cell::{Cell, RefCell};
use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::net::unix::{UnixDatagram, UnixListener, UnixStream};
use eventlet::net::{TcpListener, TcpStream, UdpSocket};

fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let h = eventlet::spawn(move || l.accept().unwrap().0);
    let c = TcpStream::connect(addr).unwrap();
    (c, h.join().unwrap())
}

#[test]
fn tcp_round_trip_through_t_and_ref_t() {
    let (mut a, b) = pair();
    let echo = eventlet::spawn(move || {
        let mut buf = vec![0; 100_000];
        (&b).read_exact(&mut buf).unwrap();
        (&b).write_all(&buf).unwrap();
    });
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    a.write_all(&data).unwrap();
    let mut back = vec![0; data.len()];
    a.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
    echo.join().unwrap();
    a.set_nodelay(true).unwrap();
    assert!(a.nodelay().unwrap());
}

#[test]
fn eof_after_peer_shutdown_and_try_clone() {
    let (a, b) = pair();
    let a2 = a.try_clone().unwrap();
    (&a2).write_all(b"bye").unwrap();
    a.shutdown(Shutdown::Write).unwrap();
    let mut s = String::new();
    (&b).read_to_string(&mut s).unwrap();
    assert_eq!(s, "bye");
}

/// A short read marks a socket drained until its next readiness edge; data
/// and end of stream that arrive together raise one edge, so the EOF after
/// the data must still be seen (for TCP and Unix streams).
#[test]
fn eof_arriving_with_the_last_data_is_seen_after_a_short_read() {
    fn check(mut a: impl Read + 'static, mut b: impl Write + 'static) {
        let reader = eventlet::spawn(move || {
            let mut got = Vec::new();
            let mut buf = [0u8; 64];
            // The first read parks (nothing sent yet), so the socket is
            // registered before the data and the FIN arrive in one go.
            loop {
                match a.read(&mut buf) {
                    Ok(0) => return Ok(got),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => return Err(e),
                }
            }
        });
        eventlet::sleep(Duration::from_millis(20));
        b.write_all(b"last words").unwrap();
        drop(b);
        assert_eq!(reader.join().unwrap().unwrap(), b"last words");
    }
    let (a, b) = pair();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    check(a, b);
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    check(a, b);
}

/// A local `shutdown(Read)` after a short read makes the next read return
/// end of stream at once, as with std (the kernel raises a readiness edge
/// for it), for TCP and Unix streams.
#[test]
fn local_read_shutdown_after_a_short_read_gives_eof() {
    fn check<S: Read + 'static, W: Write + 'static>(mut a: S, mut b: W, shutdown: impl Fn(&S)) {
        // The first read parks (nothing sent yet), so the socket is
        // registered and the short read that follows marks it drained.
        let writer = eventlet::spawn(move || {
            eventlet::sleep(Duration::from_millis(20));
            b.write_all(b"hi").unwrap();
            b
        });
        let mut buf = [0u8; 64];
        assert_eq!(a.read(&mut buf).unwrap(), 2);
        let _b = writer.join().unwrap();
        shutdown(&a);
        let t = std::time::Instant::now();
        assert_eq!(a.read(&mut buf).unwrap(), 0);
        assert!(t.elapsed() < Duration::from_secs(5), "the read waited for an edge");
    }
    let (a, b) = pair();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    check(a, b, |a| a.shutdown(std::net::Shutdown::Read).unwrap());
    let (a, b) = UnixStream::pair().unwrap();
    a.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    check(a, b, |a| a.shutdown(std::net::Shutdown::Read).unwrap());
}

#[test]
fn read_timeout_has_std_semantics() {
    let (a, _b) = pair();
    assert_eq!(a.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::InvalidInput);
    a.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
    assert_eq!(a.read_timeout().unwrap(), Some(Duration::from_millis(30)));
    let t = Instant::now();
    let err = (&a).read(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= Duration::from_millis(30));
    assert_eq!(eventlet::hub::stats().timers, 0);
    assert_eq!(eventlet::hub::stats().io_waiters, 0);
    a.set_read_timeout(None).unwrap();
    assert_eq!(a.read_timeout().unwrap(), None);
}

#[test]
fn write_timeout_fires_when_peer_does_not_read() {
    let (a, _b) = pair();
    a.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
    let chunk = vec![0u8; 1 << 16];
    let err = loop {
        if let Err(e) = (&a).write(&chunk) {
            break e;
        }
    };
    assert_eq!(err.kind(), ErrorKind::TimedOut);
}

#[test]
fn connect_to_closed_port_is_refused_with_the_address() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let err = TcpStream::connect(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn binding_a_used_port_says_so() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let err = TcpListener::bind(addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[test]
fn bad_addresses_are_clear_errors() {
    let err = TcpStream::connect("no-port-here").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    let err = TcpStream::connect("127.0.0.1:99999").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[test]
fn reading_a_reset_connection_errors() {
    let (a, b) = pair();
    socket2::SockRef::from(&b).set_linger(Some(Duration::ZERO)).unwrap();
    drop(b);
    let err = (&a).read(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[test]
fn connect_timeout_times_out_when_the_backlog_is_full() {
    // A listener with a tiny backlog that never accepts: further SYNs are
    // dropped, so connects hang until the timeout.
    let raw = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    raw.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    raw.listen(0).unwrap();
    let addr = raw.local_addr().unwrap().as_socket().unwrap();
    let mut held = Vec::new();
    let mut timed_out = false;
    for _ in 0..8 {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
            Ok(s) => held.push(s),
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::TimedOut, "{e}");
                timed_out = true;
                break;
            }
        }
    }
    assert!(timed_out, "no connect timed out");
    assert_eq!(TcpStream::connect_timeout(&addr, Duration::ZERO).unwrap_err().kind(), ErrorKind::InvalidInput);
}

struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn kill_unwinds_a_reader_and_releases_its_registration() {
    let before = eventlet::hub::stats();
    let (a, b) = pair();
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let reader = eventlet::spawn(move || {
        let _flag = DropFlag(d);
        let mut buf = [0; 16];
        let _ = (&b).read(&mut buf);
        unreachable!("the read never completes");
    });
    eventlet::sleep(Duration::from_millis(10));
    let during = eventlet::hub::stats();
    assert_eq!(during.io_waiters, 1);
    assert!(during.io_registrations > before.io_registrations);
    reader.kill();
    assert!(dropped.get(), "destructors ran");
    assert!(reader.join().unwrap_err().is::<eventlet::Killed>());
    drop(a);
    let after = eventlet::hub::stats();
    assert_eq!(after.io_waiters, 0);
    assert_eq!(after.io_registrations, before.io_registrations);
    assert_eq!(after.green_threads, 0);
}

/// 1,000 connections that always have data ready, over Unix socket pairs
/// and over TCP: without a budget the first readers would take every read
/// and starve the rest.
#[test]
fn every_busy_connection_makes_progress() {
    const CONNS: usize = 1000;
    let unix = (0..CONNS).map(|_| UnixStream::pair().unwrap()).collect();
    busy_connections_share_fairly(unix);

    let l = eventlet::listen("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let accepter = eventlet::spawn(move || (0..CONNS).map(|_| l.accept().unwrap().0).collect::<Vec<_>>());
    let clients: Vec<_> = (0..CONNS).map(|_| eventlet::connect(addr).unwrap()).collect();
    let tcp = clients.into_iter().zip(accepter.join().unwrap()).collect();
    busy_connections_share_fairly(tcp);
}

/// Fills each pair's writing end with 64 KiB, reads 16 bytes at a time from
/// every reading end on its own green thread until 200,000 reads are done
/// in all, and checks that no connection got less than a tenth of the mean.
fn busy_connections_share_fairly<S: 'static>(pairs: Vec<(S, S)>)
where
    for<'a> &'a S: Read + Write,
{
    const TOTAL_READS: usize = 200_000;
    let conns = pairs.len();
    let total = Rc::new(Cell::new(0usize));
    let counts = Rc::new(RefCell::new(vec![0usize; conns]));
    let mut keep = Vec::new();
    let mut rxs = Vec::new();
    for (tx, rx) in pairs {
        // 64 KiB queued: 4,096 reads of 16 bytes, more than the run takes
        // from any one connection when the readers share fairly.
        let fill = vec![1u8; 64 * 1024];
        let mut off = 0;
        while off < fill.len() {
            off += (&tx).write(&fill[off..]).unwrap();
        }
        keep.push(tx);
        rxs.push(rx);
    }
    // When the run ends the writers close, so a reader that drained its
    // connection (as unfair scheduling would make the first ones do) sees
    // EOF instead of waiting forever.
    let keep = Rc::new(RefCell::new(keep));
    let mut readers = Vec::new();
    for (i, rx) in rxs.into_iter().enumerate() {
        let (total, counts, keep) = (total.clone(), counts.clone(), keep.clone());
        readers.push(eventlet::spawn(move || {
            let mut buf = [0u8; 16];
            while total.get() < TOTAL_READS {
                if (&rx).read_exact(&mut buf).is_err() {
                    break;
                }
                total.set(total.get() + 1);
                counts.borrow_mut()[i] += 1;
            }
            keep.borrow_mut().clear();
        }));
    }
    for r in readers {
        r.join().unwrap();
    }
    let counts = counts.borrow();
    let mean = counts.iter().sum::<usize>() / conns;
    let min = *counts.iter().min().unwrap();
    assert!(min * 10 >= mean, "starved: min {min}, mean {mean}");
}

#[test]
fn udp_send_recv() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let baddr = b.local_addr().unwrap();
    let h = eventlet::spawn(move || {
        let mut buf = [0; 64];
        let (n, from) = b.recv_from(&mut buf).unwrap();
        b.send_to(&buf[..n], from).unwrap();
    });
    eventlet::sleep(Duration::from_millis(5));
    a.send_to(b"ping", baddr).unwrap();
    let mut buf = [0; 64];
    let (n, from) = a.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"ping"[..], baddr));
    h.join().unwrap();
    a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
    assert_eq!(a.recv(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
}

#[test]
fn unix_stream_listener_and_datagram() {
    let dir = std::env::temp_dir().join(format!("eventlet-unix-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    let server = eventlet::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut buf = String::new();
        (&s).read_to_string(&mut buf).unwrap();
        (&s).write_all(buf.to_uppercase().as_bytes()).unwrap();
    });
    let mut c = UnixStream::connect(&path).unwrap();
    c.write_all(b"green").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert_eq!(out, "GREEN");
    server.join().unwrap();

    let (x, y) = UnixDatagram::pair().unwrap();
    let h = eventlet::spawn(move || {
        let mut buf = [0; 16];
        let n = y.recv(&mut buf).unwrap();
        buf[..n].to_vec()
    });
    eventlet::yield_now();
    x.send(b"dgram").unwrap();
    assert_eq!(h.join().unwrap(), b"dgram");
    let err = UnixStream::connect(dir.join("missing.sock")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sockets_are_send_and_sync_and_work_on_another_hub() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<TcpStream>();
    assert_send_sync::<TcpListener>();
    assert_send_sync::<UdpSocket>();
    assert_send_sync::<UnixStream>();
    assert_send_sync::<UnixListener>();
    assert_send_sync::<UnixDatagram>();

    let (a, b) = pair();
    // Register `a` with this hub by blocking on it once.
    a.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    assert_eq!((&a).read(&mut [0; 1]).unwrap_err().kind(), ErrorKind::TimedOut);
    a.set_read_timeout(None).unwrap();
    let t = std::thread::spawn(move || {
        // A different OS thread, a different hub.
        let mut buf = [0; 5];
        (&a).read_exact(&mut buf).unwrap();
        (&a).write_all(&buf).unwrap();
        eventlet::hub::stats().io_registrations
    });
    eventlet::sleep(Duration::from_millis(20));
    (&b).write_all(b"hello").unwrap();
    let mut buf = [0; 5];
    (&b).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    assert_eq!(t.join().unwrap(), 1);
}

#[test]
fn many_readers_one_socket() {
    let (a, b) = pair();
    let b = Rc::new(b);
    let hs: Vec<_> = (0..4)
        .map(|_| {
            let b = b.clone();
            eventlet::spawn(move || {
                let mut buf = [0; 1];
                (&*b).read_exact(&mut buf).unwrap();
                buf[0]
            })
        })
        .collect();
    eventlet::sleep(Duration::from_millis(5));
    (&a).write_all(&[1, 2, 3, 4]).unwrap();
    let mut got: Vec<u8> = hs.into_iter().map(|h| h.join().unwrap()).collect();
    got.sort();
    assert_eq!(got, vec![1, 2, 3, 4]);
}

/// A read timeout counts from the start of each read, however many reads
/// before it were answered in time (the hub keeps one timer armed across a
/// green thread's socket waits and moves it, see `Hub::park_io`), and a
/// kept timer that comes due while its green thread is busy wakes nobody.
#[test]
fn read_timeouts_count_from_each_read() {
    // Long beside the 20 ms steps: a stall of the machine while a read
    // waits must not reach its deadline (the writer's 20 ms sleep and the
    // read's deadline came due in one turn after a 150 ms stall).
    let timeout = Duration::from_millis(500);
    const STEPS: u8 = 40;
    let (a, b) = pair();
    let (a, b) = (Rc::new(a), Rc::new(b));
    a.set_read_timeout(Some(timeout)).unwrap();
    let reader = eventlet::spawn({
        let a = a.clone();
        move || {
            let mut buf = [0u8; 8];
            // Forty reads answered after 20 ms each: 800 ms in all, well
            // past the first read's deadline.
            for i in 0..STEPS {
                assert_eq!((&*a).read(&mut buf).unwrap(), 1);
                assert_eq!(buf[0], i);
            }
            // Busy past the last read's deadline without parking: the kept
            // timer comes due with nobody waiting.
            let t = Instant::now();
            while t.elapsed() < timeout * 2 {
                eventlet::yield_now();
            }
            // Data already there: no stale timeout.
            assert_eq!((&*a).read(&mut buf).unwrap(), 1);
            // And an unanswered read still times out, a full timeout later.
            let t = Instant::now();
            assert_eq!((&*a).read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
            t.elapsed()
        }
    });
    for i in 0..STEPS {
        eventlet::sleep(Duration::from_millis(20));
        (&*b).write_all(&[i]).unwrap();
    }
    // While the reader is busy.
    eventlet::sleep(timeout);
    (&*b).write_all(&[STEPS]).unwrap();
    let waited = reader.join().unwrap();
    assert!(waited >= timeout, "timed out after {waited:?}");
    assert_eq!(eventlet::hub::stats().timers, 0, "a timer left behind");
}

/// A fresh directory for one test's Unix sockets (tests run side by side).
fn socket_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("eventlet-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Echoes what `s` sends until it shuts down its write half.
fn echo<S>(s: S)
where
    for<'a> &'a S: Read + Write,
{
    let mut buf = [0; 256];
    loop {
        match (&s).read(&mut buf).unwrap() {
            0 => return,
            n => (&s).write_all(&buf[..n]).unwrap(),
        }
    }
}

/// Sends a message of its own on `c`, half-closes and checks the echo.
fn check_echo<S>(c: S, i: usize, shutdown: impl Fn(&S))
where
    for<'a> &'a S: Read + Write,
{
    let msg = format!("client {i} says {}", "x".repeat(i));
    (&c).write_all(msg.as_bytes()).unwrap();
    shutdown(&c);
    let mut back = String::new();
    (&c).read_to_string(&mut back).unwrap();
    assert_eq!(back, msg);
}

#[test]
fn tcp_incoming_accepts_each_connection() {
    const CLIENTS: usize = 8;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let server = eventlet::spawn(move || {
        let mut peers = Vec::new();
        for s in l.incoming().take(CLIENTS) {
            let s = s.unwrap();
            peers.push(s.peer_addr().unwrap());
            eventlet::spawn_n(move || echo(s));
        }
        peers
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            eventlet::spawn(move || {
                let c = TcpStream::connect(addr).unwrap();
                let local = c.local_addr().unwrap();
                check_echo(c, i, |c| c.shutdown(Shutdown::Write).unwrap());
                local
            })
        })
        .collect();
    let mut locals: Vec<_> = clients.into_iter().map(|h| h.join().unwrap()).collect();
    let mut peers = server.join().unwrap();
    locals.sort();
    peers.sort();
    assert_eq!(peers, locals, "each client was accepted once");
}

#[test]
fn unix_incoming_accepts_each_connection() {
    const CLIENTS: usize = 8;
    let dir = socket_dir("unix-incoming");
    let path = dir.join("s.sock");
    let l = UnixListener::bind(&path).unwrap();
    let server = eventlet::spawn(move || {
        let mut accepted = 0;
        for s in l.incoming().take(CLIENTS) {
            eventlet::spawn_n(move || echo(s.unwrap()));
            accepted += 1;
        }
        accepted
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let path = path.clone();
            eventlet::spawn(move || {
                let c = UnixStream::connect(&path).unwrap();
                check_echo(c, i, |c| c.shutdown(Shutdown::Write).unwrap());
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    assert_eq!(server.join().unwrap(), CLIENTS);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `accept` spends the I/O budget like reads and writes do: a listener
/// whose queue never empties does not keep the other green threads out.
#[test]
fn accepting_a_full_queue_lets_others_run() {
    const CLIENTS: usize = 300;
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // All queued in the kernel before the first accept.
    let clients: Vec<TcpStream> = (0..CLIENTS).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let accepted = Rc::new(Cell::new(0usize));
    let a = accepted.clone();
    let acceptor = eventlet::spawn(move || {
        let mut socks = Vec::new();
        for _ in 0..CLIENTS {
            socks.push(l.accept().unwrap().0);
            a.set(a.get() + 1);
        }
        socks
    });
    // Queued behind the acceptor: it runs when the acceptor yields.
    let a = accepted.clone();
    let other = eventlet::spawn(move || a.get());
    let seen = other.join().unwrap();
    assert_eq!(acceptor.join().unwrap().len(), CLIENTS);
    assert!(seen < CLIENTS, "another green thread ran only after all {seen} accepts");
    drop(clients);
}

#[test]
fn udp_connected_sockets_send_and_recv() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let (aaddr, baddr) = (a.local_addr().unwrap(), b.local_addr().unwrap());
    a.connect(baddr).unwrap();
    b.connect(aaddr).unwrap();
    assert_eq!(a.peer_addr().unwrap(), baddr);
    // A connected socket takes datagrams from its peer only.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.send_to(b"not for you", aaddr).unwrap();
    let echo = eventlet::spawn(move || {
        let mut buf = [0; 64];
        let n = b.recv(&mut buf).unwrap();
        b.send(&buf[..n]).unwrap();
        buf[..n].to_vec()
    });
    eventlet::yield_now(); // the echo parks in recv first
    assert_eq!(a.send(b"over the wire").unwrap(), 13);
    let mut buf = [0; 64];
    let n = a.recv(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"over the wire");
    assert_eq!(echo.join().unwrap(), b"over the wire");
    a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    assert_eq!(a.recv(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut, "the stranger's datagram got through");
}

#[test]
fn udp_recv_from_times_out_with_timed_out() {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let timeout = Duration::from_millis(30);
    b.set_read_timeout(Some(timeout)).unwrap();
    a.send_to(b"one", b.local_addr().unwrap()).unwrap();
    let mut buf = [0; 16];
    let (n, from) = b.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"one"[..], a.local_addr().unwrap()));
    // Nothing more comes: the next receive waits out its timeout.
    let t = Instant::now();
    assert_eq!(b.recv_from(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= timeout, "gave up after {:?}", t.elapsed());
    assert_eq!(b.peek_from(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    assert_eq!(eventlet::hub::stats().io_waiters, 0);
}

#[test]
fn unix_stream_read_timeout_expires_with_timed_out() {
    let (a, b) = UnixStream::pair().unwrap();
    let timeout = Duration::from_millis(30);
    assert_eq!(a.set_read_timeout(Some(Duration::ZERO)).unwrap_err().kind(), ErrorKind::InvalidInput);
    a.set_read_timeout(Some(timeout)).unwrap();
    assert_eq!(a.read_timeout().unwrap(), Some(timeout));
    let t = Instant::now();
    assert_eq!((&a).read(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= timeout, "gave up after {:?}", t.elapsed());
    // The socket still works after a timeout.
    (&b).write_all(b"late").unwrap();
    let mut buf = [0; 4];
    (&a).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late");
    assert_eq!(eventlet::hub::stats().io_waiters, 0);
}

#[test]
fn unix_datagram_read_timeout_expires_with_timed_out() {
    let timeout = Duration::from_millis(30);
    let (x, y) = UnixDatagram::pair().unwrap();
    y.set_read_timeout(Some(timeout)).unwrap();
    let t = Instant::now();
    assert_eq!(y.recv(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= timeout, "gave up after {:?}", t.elapsed());
    x.send(b"ok").unwrap();
    let mut buf = [0; 8];
    assert_eq!(y.recv(&mut buf).unwrap(), 2);

    let dir = socket_dir("unix-dgram-timeout");
    let d = UnixDatagram::bind(dir.join("d.sock")).unwrap();
    d.set_read_timeout(Some(timeout)).unwrap();
    let t = Instant::now();
    assert_eq!(d.recv_from(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
    assert!(t.elapsed() >= timeout, "gave up after {:?}", t.elapsed());
    let sender = UnixDatagram::unbound().unwrap();
    sender.send_to(b"hi", dir.join("d.sock")).unwrap();
    let (n, _) = d.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hi");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The six socket types have the whole descriptor trait set.
fn has_descriptor_traits<T>()
where
    T: std::os::fd::AsFd
        + std::os::fd::AsRawFd
        + std::os::fd::FromRawFd
        + std::os::fd::IntoRawFd
        + From<std::os::fd::OwnedFd>,
    std::os::fd::OwnedFd: From<T>,
{
}

#[test]
fn descriptors_go_out_and_come_back_green() {
    use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
    has_descriptor_traits::<TcpListener>();
    has_descriptor_traits::<TcpStream>();
    has_descriptor_traits::<UdpSocket>();
    has_descriptor_traits::<UnixListener>();
    has_descriptor_traits::<UnixStream>();
    has_descriptor_traits::<UnixDatagram>();

    // A connection that has waited in the reactor leaves it with its
    // descriptor and registers again when it comes back.
    let (a, b) = pair();
    let reader = eventlet::spawn(move || {
        let mut buf = [0; 5];
        (&b).read_exact(&mut buf).unwrap();
        let b = TcpStream::from(OwnedFd::from(b));
        (&b).read_exact(&mut buf).unwrap();
        buf
    });
    eventlet::sleep(Duration::from_millis(20));
    (&a).write_all(b"first").unwrap();
    eventlet::sleep(Duration::from_millis(20));
    (&a).write_all(b"again").unwrap();
    assert_eq!(&reader.join().unwrap(), b"again");

    // A blocking descriptor from elsewhere is made non-blocking: the read
    // parks its green thread, and the writer gets to run.
    let (x, y) = std::os::unix::net::UnixStream::pair().unwrap();
    // SAFETY: the descriptor is open and `into_raw_fd` gave up its owner.
    let x = unsafe { UnixStream::from_raw_fd(x.into_raw_fd()) };
    let y = UnixStream::from(OwnedFd::from(y));
    for fd in [x.as_raw_fd(), y.as_raw_fd()] {
        // SAFETY: F_GETFL on an open descriptor reads its flags, nothing else.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        assert_ne!(flags & libc::O_NONBLOCK, 0, "descriptor {fd} came in blocking");
    }
    x.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let writer = eventlet::spawn(move || (&y).write_all(b"hi").unwrap());
    let mut buf = [0; 2];
    (&x).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hi");
    writer.join().unwrap();

    // Listeners and datagram sockets too.
    let l = TcpListener::from(OwnedFd::from(TcpListener::bind("127.0.0.1:0").unwrap()));
    let addr = l.local_addr().unwrap();
    let h = eventlet::spawn(move || l.accept().map(|_| ()));
    TcpStream::connect(addr).unwrap();
    h.join().unwrap().unwrap();
    let (p, q) = UnixDatagram::pair().unwrap();
    // SAFETY: the descriptor is open and `into_raw_fd` gave up its owner.
    let q = unsafe { UnixDatagram::from_raw_fd(q.into_raw_fd()) };
    let h = eventlet::spawn(move || {
        let mut buf = [0; 8];
        q.recv(&mut buf).map(|n| buf[..n].to_vec())
    });
    eventlet::sleep(Duration::from_millis(10));
    p.send(b"dgram").unwrap();
    assert_eq!(h.join().unwrap().unwrap(), b"dgram");
}
