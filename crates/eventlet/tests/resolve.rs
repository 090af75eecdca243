//! Name resolution runs off the hub: a slow lookup parks only its caller.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[test]
fn a_slow_lookup_does_not_stop_other_green_threads() {
    let listener = eventlet::listen("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // A resolver that takes its time: until the hub's ticker has ticked
    // ten times (not a fixed time, in which a stalled hub may tick less; a
    // lookup that blocked the hub would see no tick, and give up after
    // 10 s).
    let ticks = Arc::new(AtomicU32::new(0));
    let t = ticks.clone();
    eventlet::net::set_resolver(move |host, port| {
        assert_eq!(host, "slow.test");
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    });
    let stop = Rc::new(Cell::new(false));
    let (t, s) = (ticks.clone(), stop.clone());
    let ticker = eventlet::spawn(move || {
        while !s.get() {
            eventlet::sleep(Duration::from_millis(10));
            t.fetch_add(1, Ordering::SeqCst);
        }
    });
    let conn = eventlet::connect(("slow.test", port)).unwrap();
    let during = ticks.load(Ordering::SeqCst);
    stop.set(true);
    ticker.join().unwrap();
    assert!(during >= 10, "only {during} ticks ran during the lookup");
    assert_eq!(conn.peer_addr().unwrap().port(), port);

    // The default resolver honours /etc/hosts ("localhost").
    eventlet::net::set_resolver(|host, port| {
        std::net::ToSocketAddrs::to_socket_addrs(&(host, port)).map(Iterator::collect)
    });
    let c = eventlet::connect(format!("localhost:{port}")).unwrap();
    assert!(c.peer_addr().unwrap().ip().is_loopback());
    let err = eventlet::connect("name.invalid:80").unwrap_err();
    assert!(err.to_string().contains("name.invalid"), "{err}");
}
