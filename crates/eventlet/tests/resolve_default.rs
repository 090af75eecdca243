//! The default resolver (the system's `getaddrinfo` on the thread pool).
//! Its own test binary: `set_resolver` in `resolve.rs` replaces the resolver
//! for the whole process, and no call puts the default back.

use std::io::{Read, Write};

use eventlet::net::{TcpListener, TcpStream};

#[test]
fn localhost_reaches_a_green_listener_through_the_default_resolver() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = eventlet::spawn(move || {
        for _ in 0..2 {
            let (s, peer) = listener.accept().unwrap();
            assert!(peer.ip().is_loopback(), "{peer}");
            let mut buf = [0; 4];
            (&s).read_exact(&mut buf).unwrap();
            (&s).write_all(&buf).unwrap();
        }
    });
    // Both spellings of a host name go through the resolver.
    let by_tuple = TcpStream::connect(("localhost", port)).unwrap();
    let by_string = TcpStream::connect(format!("localhost:{port}")).unwrap();
    for (mut c, msg) in [(by_tuple, b"pair"), (by_string, b"text")] {
        assert_eq!(c.peer_addr().unwrap(), std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        c.write_all(msg).unwrap();
        let mut back = [0; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, msg);
    }
    server.join().unwrap();
    let addrs = eventlet::net::resolve("localhost", port).unwrap();
    assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == port), "{addrs:?}");
}
