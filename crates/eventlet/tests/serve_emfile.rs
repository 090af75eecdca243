//! The accept loop survives running out of file descriptors: it backs off
//! and serves the waiting clients once descriptors are free again.
//!
//! Its own test binary: it lowers this process's descriptor limit.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

mod util;

#[test]
fn accept_loop_backs_off_on_emfile_and_recovers() {
    let server = eventlet::Server::new(eventlet::listen("127.0.0.1:0").unwrap(), 100);
    let addr = server.local_addr().unwrap();
    let stop = server.stop_handle();

    // Clients connect first: the kernel completes their handshakes into the
    // listen backlog before anything is accepted.
    let clients: Vec<_> = (0..5).map(|_| eventlet::connect(addr).unwrap()).collect();

    // Lower the limit and use up every descriptor left.
    let hog = util::FdsUsedUp::now();

    let accept_loop = eventlet::spawn(move || {
        server.serve(|mut s, _| {
            let mut buf = [0; 4];
            s.read_exact(&mut buf).unwrap();
            s.write_all(&buf).unwrap();
        })
    });
    // The accept loop meets EMFILE and backs off; the hub stays responsive:
    // most 5 ms sleeps of this green thread take about that long (a few
    // may take longer on a stalled machine; a backoff that blocked the hub,
    // 10 ms doubling to 1 s, would stretch most of them).
    let mut took: Vec<Duration> = (0..30)
        .map(|_| {
            let t = Instant::now();
            eventlet::sleep(Duration::from_millis(5));
            t.elapsed()
        })
        .collect();
    took.sort();
    assert!(took[took.len() / 2] < Duration::from_millis(50), "the hub was stuck: {took:?}");
    assert!(!accept_loop.is_finished(), "serve gave up on EMFILE");

    hog.give_back();
    for (i, mut c) in clients.into_iter().enumerate() {
        let msg = [i as u8; 4];
        c.write_all(&msg).unwrap();
        let mut back = [0; 4];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
    stop.stop();
    accept_loop.join().unwrap().unwrap();
}
