//! No file descriptor leaks: everything the runtime opens, it closes.

use std::io::{Read, Write};
use std::time::Duration;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn no_descriptor_is_leaked() {
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
