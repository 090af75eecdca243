//! Green threads: spawn, join, panics, kill, sleep, yield, park.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::{Builder, Killed, Wakeup};

#[test]
fn spawn_join_returns_value() {
    let h = eventlet::spawn(|| 40 + 2);
    assert!(!h.is_finished());
    assert_eq!(h.join().unwrap(), 42);
}

#[test]
fn closures_need_not_be_send() {
    let shared = Rc::new(RefCell::new(Vec::new()));
    let hs: Vec<_> = (0..10)
        .map(|i| {
            let s = shared.clone();
            eventlet::spawn(move || s.borrow_mut().push(i))
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*shared.borrow(), (0..10).collect::<Vec<_>>());
}

#[test]
fn panic_reaches_join() {
    let n = std::hint::black_box(7);
    let h = eventlet::spawn(move || -> u32 { panic!("boom {n}") });
    let err = h.join().unwrap_err();
    assert_eq!(err.downcast_ref::<String>().map(String::as_str), Some("boom 7"));
}

#[test]
fn spawn_n_panic_leaves_others_running() {
    let done = Rc::new(Cell::new(0));
    for i in 0..10 {
        let d = done.clone();
        eventlet::spawn_n(move || {
            eventlet::sleep(Duration::from_millis(5));
            if i == 3 {
                panic!("handler {i} fails");
            }
            d.set(d.get() + 1);
        });
    }
    let d = done.clone();
    let after = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(30));
        d.get()
    });
    assert_eq!(after.join().unwrap(), 9);
    assert_eq!(eventlet::hub::stats().green_threads, 0);
}

#[test]
fn sleep_order_follows_deadlines() {
    let order = Rc::new(RefCell::new(Vec::new()));
    let mut hs = Vec::new();
    for ms in [30u64, 10, 20, 0, 5] {
        let o = order.clone();
        hs.push(eventlet::spawn(move || {
            eventlet::sleep(Duration::from_millis(ms));
            o.borrow_mut().push(ms);
        }));
    }
    for h in hs {
        h.join().unwrap();
    }
    assert_eq!(*order.borrow(), vec![0, 5, 10, 20, 30]);
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn sleep_lateness_is_bounded_under_load() {
    // 200 green threads that yield in a busy loop; a sleeper must still wake
    // close to its deadline.
    let stop = Rc::new(Cell::new(false));
    let busy: Vec<_> = (0..200)
        .map(|_| {
            let stop = stop.clone();
            eventlet::spawn(move || {
                while !stop.get() {
                    eventlet::yield_now();
                }
            })
        })
        .collect();
    let sleeper = eventlet::spawn(|| {
        let mut worst = Duration::ZERO;
        for _ in 0..20 {
            let t = Instant::now();
            eventlet::sleep(Duration::from_millis(5));
            worst = worst.max(t.elapsed() - Duration::from_millis(5));
        }
        worst
    });
    let worst = sleeper.join().unwrap();
    stop.set(true);
    for h in busy {
        h.join().unwrap();
    }
    assert!(worst < Duration::from_millis(50), "a sleep woke {worst:?} late");
}

#[test]
fn yield_now_runs_the_others_first() {
    let log = Rc::new(RefCell::new(Vec::new()));
    let l = log.clone();
    let a = eventlet::spawn(move || {
        for i in 0..3 {
            l.borrow_mut().push(("a", i));
            eventlet::yield_now();
        }
    });
    let l = log.clone();
    let b = eventlet::spawn(move || {
        for i in 0..3 {
            l.borrow_mut().push(("b", i));
            eventlet::yield_now();
        }
    });
    a.join().unwrap();
    b.join().unwrap();
    assert_eq!(*log.borrow(), vec![("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2), ("b", 2)]);
}

/// As eventlet's `sleep(0)`: I/O that is due when a green thread yields is
/// handled before it runs again, from a green thread and from the root,
/// while the ready green threads keep their turns.
#[test]
fn yield_now_lets_due_io_run_first() {
    use eventlet::net::unix::UnixStream;
    use std::io::{Read, Write};

    for from_root in [true, false] {
        let (a, b) = UnixStream::pair().unwrap();
        let log = Rc::new(RefCell::new(Vec::new()));
        let l = log.clone();
        let reader = eventlet::spawn(move || {
            let mut buf = [0; 1];
            (&a).read_exact(&mut buf).unwrap();
            l.borrow_mut().push("reader");
        });
        let l = log.clone();
        let yielder = move || {
            eventlet::yield_now(); // the reader parks on its read
            let l2 = l.clone();
            let ready = eventlet::spawn(move || l2.borrow_mut().push("ready"));
            (&b).write_all(b"x").unwrap();
            eventlet::yield_now();
            l.borrow_mut().push("yielder");
            ready.join().unwrap();
        };
        if from_root {
            yielder();
        } else {
            eventlet::spawn(yielder).join().unwrap();
        }
        reader.join().unwrap();
        assert_eq!(*log.borrow(), ["ready", "reader", "yielder"], "from the root: {from_root}");
    }
}

#[test]
fn kill_unstarted_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = eventlet::spawn(move || r.set(true));
    h.kill();
    assert!(h.is_finished());
    eventlet::sleep(Duration::from_millis(1));
    assert!(!ran.get());
    assert!(h.join().unwrap_err().is::<Killed>());
}

#[test]
fn kill_delayed_spawn_never_runs() {
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = eventlet::spawn_after(Duration::from_millis(10), move || r.set(true));
    eventlet::sleep(Duration::from_millis(1));
    h.kill();
    eventlet::sleep(Duration::from_millis(20));
    assert!(!ran.get());
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn spawn_after_waits() {
    let t = Instant::now();
    let h = eventlet::spawn_after(Duration::from_millis(20), move || t.elapsed());
    assert!(h.join().unwrap() >= Duration::from_millis(20));
}

struct DropFlag(Rc<Cell<bool>>);
impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.set(true);
    }
}

#[test]
fn kill_parked_unwinds_destructors() {
    let dropped = Rc::new(Cell::new(false));
    let d = dropped.clone();
    let h = eventlet::spawn(move || {
        let _flag = DropFlag(d);
        eventlet::sleep(Duration::from_secs(3600));
    });
    eventlet::yield_now(); // let it start and park
    assert!(!dropped.get());
    h.kill();
    assert!(dropped.get(), "kill ran the destructors before returning");
    assert!(h.is_finished());
    assert!(h.join().unwrap_err().is::<Killed>());
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn park_unpark_and_timeout() {
    let me = eventlet::current();
    let h = eventlet::spawn(move || me.unpark());
    assert_eq!(eventlet::park_timeout(Duration::from_secs(5)), Wakeup::Unparked);
    h.join().unwrap();
    assert_eq!(eventlet::park_timeout(Duration::from_millis(5)), Wakeup::TimedOut);
}

#[test]
fn unpark_from_another_os_thread() {
    let h = eventlet::spawn(|| {
        let u = eventlet::current().unparker();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            u.unpark();
        });
        eventlet::park_timeout(Duration::from_secs(10))
    });
    assert_eq!(h.join().unwrap(), Wakeup::Unparked);
}

#[test]
fn two_os_threads_each_with_a_hub() {
    let ts: Vec<_> = (0..2)
        .map(|k| {
            std::thread::spawn(move || {
                let hs: Vec<_> = (0..100)
                    .map(|i| {
                        eventlet::spawn(move || {
                            eventlet::sleep(Duration::from_millis(1));
                            i * k
                        })
                    })
                    .collect();
                hs.into_iter().map(|h| h.join().unwrap()).sum::<u64>()
            })
        })
        .collect();
    let sums: Vec<u64> = ts.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(sums, vec![0, 4950]);
}

#[test]
fn builder_names_and_checks_stack_size() {
    let err = Builder::new().stack_size(1024).spawn(|| ()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("minimum"), "{err}");
    let h = Builder::new().name("w").spawn(|| eventlet::current().name().unwrap().to_owned()).unwrap();
    assert_eq!(h.join().unwrap(), "w");
    assert_eq!(eventlet::current().name(), Some("main"));
}

#[test]
#[should_panic(expected = "deadlock")]
fn root_parked_with_nothing_to_wake_it_is_an_error() {
    let h = eventlet::spawn(eventlet::park);
    h.join().unwrap();
}

#[test]
fn many_green_threads() {
    let n = if cfg!(debug_assertions) { 20_000 } else { 100_000 };
    let hs: Vec<_> = (0..n)
        .map(|i| {
            eventlet::spawn(move || {
                eventlet::yield_now();
                i
            })
        })
        .collect();
    let sum: usize = hs.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(sum, n * (n - 1) / 2);
}
