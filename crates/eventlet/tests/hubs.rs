//! Several hubs in one process: hub threads, spawning onto them from other
//! OS threads, and an echo server spread over two hubs with SO_REUSEPORT.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use eventlet::hub;
use eventlet::net::TcpListener;

#[test]
fn spawn_runs_on_the_target_hub_and_the_thread_ends_when_done() {
    let worker = hub::start("hub-a").unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 0..100 {
        let tx = tx.clone();
        worker
            .handle()
            .spawn(move || {
                // Not Send inside: an Rc lives on the worker's hub.
                let local = std::rc::Rc::new(i);
                eventlet::yield_now();
                tx.send((*local, std::thread::current().name().map(str::to_owned))).unwrap();
            })
            .unwrap();
    }
    drop(tx);
    let mut got: Vec<(i32, Option<String>)> = rx.iter().collect();
    got.sort();
    assert_eq!(got.len(), 100);
    assert!(got.iter().enumerate().all(|(i, (n, name))| *n == i as i32 && name.as_deref() == Some("hub-a")));
    // A handle kept elsewhere outlives the thread: spawning then fails
    // and hands the closure back.
    let kept = worker.handle().clone();
    let (ended_tx, ended_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        worker.join();
        let _ = ended_tx.send(());
    });
    // The thread waits for `kept`...
    assert!(ended_rx.recv_timeout(Duration::from_millis(100)).is_err());
    // ...and ends once it is gone.
    let probe = kept.clone();
    drop(kept);
    drop(probe);
    ended_rx.recv_timeout(Duration::from_secs(10)).expect("the hub thread ended");
}

#[test]
fn spawning_onto_an_ended_hub_hands_the_closure_back() {
    let (tx, rx) = mpsc::channel();
    let t = std::thread::spawn(move || {
        tx.send(hub::handle()).unwrap();
    });
    let handle = rx.recv().unwrap();
    t.join().unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    let err = handle.spawn(move || r.store(7, Ordering::SeqCst)).unwrap_err();
    assert_eq!(err.to_string(), "the hub's OS thread has exited");
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    (err.0)();
    assert_eq!(ran.load(Ordering::SeqCst), 7);
}

#[test]
fn an_echo_server_spread_over_two_hubs() {
    let first = TcpListener::bind_reuse_port("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap();
    let served: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let mut hubs = Vec::new();
    let mut first = Some(first);
    for (i, count) in served.iter().enumerate() {
        let hub = hub::start(&format!("echo-{i}")).unwrap();
        let count = count.clone();
        // Green sockets are Send: the listener moves to its hub.
        let server = match first.take() {
            Some(l) => l,
            None => TcpListener::bind_reuse_port(addr).unwrap(),
        };
        hub.handle()
            .spawn(move || {
                let pool = eventlet::GreenPool::new(1000);
                loop {
                    let Ok((mut conn, _)) = server.accept() else { return };
                    count.fetch_add(1, Ordering::SeqCst);
                    pool.spawn_n(move || {
                        let mut buf = [0u8; 64];
                        while let Ok(n @ 1..) = conn.read(&mut buf) {
                            if conn.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    });
                }
            })
            .unwrap();
        hubs.push(hub);
    }
    // 200 blocking clients from plain threads.
    let clients: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..50 {
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let msg = format!("client {t}/{i}");
                    c.write_all(msg.as_bytes()).unwrap();
                    let mut back = vec![0; msg.len()];
                    c.read_exact(&mut back).unwrap();
                    assert_eq!(back, msg.as_bytes());
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    let counts: Vec<usize> = served.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    assert_eq!(counts.iter().sum::<usize>(), 200, "{counts:?}");
    // The kernel spreads connections by hash: both hubs get some.
    assert!(counts.iter().all(|&n| n > 0), "{counts:?}");
}

/// Runs `f` on a new OS thread; panics if it has not returned in 5 s.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("{what}: still waiting after 5 s"))
}

#[test]
fn the_last_unparker_dropped_on_another_thread_lets_the_hub_look_again() {
    // A hub thread whose last green thread nothing can wake any more ends
    // (saying so) rather than waiting forever for the dropped unparker.
    bounded("the hub thread's join", || {
        let hub = eventlet::hub::start("unparker-dropped").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let stuck = hub
            .handle()
            .spawn(move || {
                tx.send(eventlet::current().unparker()).unwrap();
                eventlet::park();
            })
            .unwrap();
        let unparker = rx.recv().unwrap();
        drop(stuck);
        let dropper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(unparker);
        });
        hub.join();
        dropper.join().unwrap();
    });

    // A root waiting only on such an unparker: the deadlock is reported.
    let deadlock = bounded("the root's park", || {
        let unparker = eventlet::current().unparker();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            drop(unparker);
        });
        std::panic::catch_unwind(eventlet::park).map_err(|p| {
            p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        })
    });
    let msg = deadlock.unwrap_err().unwrap_or_default();
    assert!(msg.contains("deadlock"), "{msg}");
}

/// A green thread spawned onto a plain OS thread's hub from elsewhere, and
/// still parked when that thread exits, is leaked with its stack (it is
/// never resumed). Whoever joins it from another thread, through a
/// `RemoteJoinHandle` or a `GreenFuture`, used to wait forever; it now
/// gets `Killed`, and the green thread's green-locals are dropped.
#[test]
fn joining_a_green_thread_leaked_when_its_thread_exits_gives_killed() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Counted;
    impl Drop for Counted {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    eventlet::green_local! {
        static KEPT: std::cell::RefCell<Option<Counted>> = std::cell::RefCell::new(None);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Arc::new(AtomicUsize::new(0));
    let s0 = started.clone();
    let thread = std::thread::spawn(move || {
        tx.send(eventlet::hub::handle()).unwrap();
        // The root runs the hub until both have started (not for a fixed
        // time, which a stalled machine could use up before the spawns
        // below); then the thread returns.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while s0.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            eventlet::sleep(Duration::from_millis(1));
        }
    });
    let hub = rx.recv().unwrap();
    let (s1, s2) = (started.clone(), started.clone());
    let joinable = hub
        .spawn(move || {
            KEPT.with_borrow_mut(|k| *k = Some(Counted));
            s1.fetch_add(1, Ordering::SeqCst);
            eventlet::sleep(Duration::from_secs(3600));
            1
        })
        .unwrap_or_else(|_| panic!("the hub is there"));
    let future = hub
        .spawn_future(move || {
            s2.fetch_add(1, Ordering::SeqCst);
            eventlet::sleep(Duration::from_secs(3600));
            2
        })
        .unwrap_or_else(|_| panic!("the hub is there"));
    drop(hub);
    thread.join().unwrap();
    assert_eq!(started.load(Ordering::SeqCst), 2, "both started before the thread exited");
    let joined = joinable.join_timeout(Duration::from_secs(5)).unwrap_or_else(|_| panic!("join waited forever"));
    assert!(joined.unwrap_err().is::<eventlet::Killed>());
    let awaited = eventlet::with_timeout(Duration::from_secs(5), || eventlet::block_on(future))
        .unwrap_or_else(|_| panic!("the future stayed pending"));
    assert!(awaited.unwrap_err().is::<eventlet::Killed>());
    assert_eq!(DROPPED.load(Ordering::SeqCst), 1, "the leaked green thread's green-locals were dropped");
}
