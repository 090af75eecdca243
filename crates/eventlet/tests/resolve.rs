//! Name resolution runs off the hub: a slow lookup parks only its caller.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

#[test]
fn a_slow_lookup_does_not_stop_other_green_threads() {
    let listener = eventlet::listen("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    eventlet::net::set_resolver(|host, port| {
        assert_eq!(host, "slow.test");
        std::thread::sleep(Duration::from_millis(300)); // a resolver that takes its time
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    });
    let ticks = Rc::new(Cell::new(0u32));
    let stop = Rc::new(Cell::new(false));
    let (t, s) = (ticks.clone(), stop.clone());
    let ticker = eventlet::spawn(move || {
        while !s.get() {
            eventlet::sleep(Duration::from_millis(10));
            t.set(t.get() + 1);
        }
    });
    let conn = eventlet::connect(("slow.test", port)).unwrap();
    let during = ticks.get();
    stop.set(true);
    ticker.join().unwrap();
    assert!(during >= 10, "only {during} ticks ran during a 300 ms lookup");
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
