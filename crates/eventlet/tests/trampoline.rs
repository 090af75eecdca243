//! `hub::trampoline`: waiting for readiness on a raw descriptor, as a C
//! library's non-blocking socket needs.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use eventlet::hub::{trampoline, Interest};

fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}

#[test]
fn a_read_wait_parks_until_data_comes_and_others_run_meanwhile() {
    let (a, mut b) = pair();
    let fd = a.as_raw_fd();
    let waiter = eventlet::spawn(move || {
        let start = Instant::now();
        trampoline(&fd, Interest::READ, None).unwrap();
        let mut buf = [0; 5];
        (&a).read_exact(&mut buf).unwrap();
        (buf, start.elapsed())
    });
    let other = eventlet::spawn(|| {
        eventlet::sleep(Duration::from_millis(50));
        7
    });
    assert_eq!(other.join().unwrap(), 7);
    assert!(!waiter.is_finished());
    b.write_all(b"hello").unwrap();
    let (buf, took) = waiter.join().unwrap();
    assert_eq!(&buf, b"hello");
    assert!(took >= Duration::from_millis(50));
    assert_eq!(eventlet::hub::stats().io_registrations, 0, "the registration lasted the wait only");
}

#[test]
fn ready_descriptors_return_at_once_and_writes_wait_for_room() {
    let (a, mut b) = pair();
    // Writable now.
    trampoline(&a, Interest::WRITE, None).unwrap();
    // Fill the socket, then wait for room while a reader drains it.
    let chunk = [1u8; 65536];
    while (&a).write(&chunk).is_ok() {}
    let drainer = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(30));
        let mut buf = vec![0; 1 << 20];
        let _ = b.read(&mut buf);
        b
    });
    trampoline(&a, Interest::WRITE, Some(Instant::now() + Duration::from_secs(5))).unwrap();
    let _b = drainer.join().unwrap();
}

#[test]
fn a_deadline_or_a_timeout_ends_the_wait() {
    let (a, _b) = pair();
    let start = Instant::now();
    let e = trampoline(&a, Interest::READ, Some(Instant::now() + Duration::from_millis(50))).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(start.elapsed() >= Duration::from_millis(50));
    let e = {
        let _t = eventlet::Timeout::start(Duration::from_millis(30));
        trampoline(&a, Interest::READ | Interest::WRITE, None).err()
    };
    // Writable at once, so the Timeout did not matter.
    assert!(e.is_none());
    let e = {
        let _t = eventlet::Timeout::start(Duration::from_millis(30));
        trampoline(&a, Interest::READ, None).unwrap_err()
    };
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(e.get_ref().unwrap().is::<eventlet::timeout::Elapsed>());
}

#[test]
fn a_kill_unwinds_out_of_the_wait_and_undoes_the_registration() {
    let (a, _b) = pair();
    let h = eventlet::spawn(move || trampoline(&a, Interest::READ, None));
    eventlet::sleep(Duration::from_millis(10));
    assert_eq!(eventlet::hub::stats().io_waiters, 1);
    h.kill();
    assert!(h.join().unwrap_err().is::<eventlet::Killed>());
    assert_eq!(eventlet::hub::stats().io_waiters, 0);
    assert_eq!(eventlet::hub::stats().io_registrations, 0);
}

#[test]
fn two_green_threads_share_one_descriptor() {
    let (a, mut b) = pair();
    let fd = a.as_raw_fd();
    let r1 = eventlet::spawn(move || trampoline(&fd, Interest::READ, Some(Instant::now() + Duration::from_secs(5))));
    let r2 = eventlet::spawn(move || trampoline(&fd, Interest::READ, Some(Instant::now() + Duration::from_secs(5))));
    eventlet::sleep(Duration::from_millis(10));
    let stats = eventlet::hub::stats();
    assert_eq!((stats.io_waiters, stats.io_registrations), (2, 1));
    b.write_all(b"x").unwrap();
    r1.join().unwrap().unwrap();
    r2.join().unwrap().unwrap();
    drop(a);
}

#[test]
fn bad_descriptors_get_clear_errors() {
    let e = trampoline(&-1, Interest::READ, None).unwrap_err();
    assert!(e.to_string().contains("descriptor -1"), "{e}");
    assert_eq!(e.raw_os_error(), None);
    let f = std::fs::File::open("/proc/self/status").unwrap();
    let e = trampoline(&f, Interest::READ, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let (a, _b) = pair();
    let e = trampoline(&a, Interest::READ, Some(Instant::now())).err();
    assert!(e.is_some_and(|e| e.kind() == ErrorKind::TimedOut));
    // An eventlet socket is registered with this hub already.
    let l = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let acceptor = eventlet::spawn(move || l.accept().map(|_| ()));
    eventlet::sleep(Duration::from_millis(10));
    let fd = eventlet::hub::threads().iter().find_map(|t| t.io).unwrap().fd;
    let e = trampoline(&fd, Interest::READ, None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{e}");
    let _c = eventlet::net::TcpStream::connect(addr).unwrap();
    acceptor.join().unwrap().unwrap();
}

#[test]
fn the_root_can_wait_too() {
    let (a, mut b) = pair();
    let writer = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(20));
        b.write_all(b"!").unwrap();
        b
    });
    trampoline(&a, Interest::READ, Some(Instant::now() + Duration::from_secs(5))).unwrap();
    let _b = writer.join().unwrap();
}
