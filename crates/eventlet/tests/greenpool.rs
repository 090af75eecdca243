//! GreenPool, imap and GreenPile: ordering, concurrency limits, blocking
//! spawns, resizing, and slots freed however a green thread ends.

mod util;

use std::cell::{Cell, RefCell};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::{GreenPile, GreenPool, Killed, TrySpawnError};
use util::ms;

fn assert_no_green_threads() {
    let s = eventlet::hub::stats();
    assert_eq!(s.green_threads, 0, "green threads left: {s:?}");
    assert_eq!(s.timers, 0, "timers left: {s:?}");
}

/// Counts green threads inside a section and remembers the peak.
#[derive(Clone, Default)]
struct Concurrency {
    now: Rc<Cell<usize>>,
    max: Rc<Cell<usize>>,
}

impl Concurrency {
    fn enter(&self) -> impl Drop + '_ {
        struct Exit<'a>(&'a Cell<usize>);
        impl Drop for Exit<'_> {
            fn drop(&mut self) {
                self.0.set(self.0.get() - 1);
            }
        }
        self.now.set(self.now.get() + 1);
        self.max.set(self.max.get().max(self.now.get()));
        Exit(&self.now)
    }
}

#[test]
fn imap_yields_in_input_order_and_caps_concurrency() {
    let pool = GreenPool::new(3);
    let c = Concurrency::default();
    let c2 = c.clone();
    let f = move |i: u64| {
        let _in = c2.enter();
        // Later items finish first.
        eventlet::sleep(ms(2 * (10 - i)));
        i * 10
    };
    let out: Vec<u64> = pool.imap(f, 0..10).collect();
    assert_eq!(out, (0..10).map(|i| i * 10).collect::<Vec<_>>());
    assert_eq!(c.max.get(), 3, "never more than size at once, and the pool is used fully");
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn imap_keeps_the_pool_busy_behind_a_slow_head() {
    // The first item is slow; the others must not wait for it to be
    // yielded before they start.
    let pool = GreenPool::new(2);
    let started = Rc::new(RefCell::new(Vec::new()));
    let s = started.clone();
    let mut it = pool.imap(
        move |i: u32| {
            s.borrow_mut().push(i);
            if i == 0 {
                // Wait (boundedly, so a failure does not hang, and long
                // enough for a stalled machine) for the last.
                let deadline = Instant::now() + Duration::from_secs(10);
                while s.borrow().len() < 6 && Instant::now() < deadline {
                    eventlet::sleep(ms(1));
                }
            } else {
                eventlet::sleep(ms(1));
            }
            i
        },
        0..6,
    );
    assert_eq!(it.next(), Some(0));
    assert_eq!(*started.borrow(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(it.collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert_no_green_threads();
}

#[test]
fn imap_pulls_its_input_lazily() {
    let pool = GreenPool::new(4);
    let pulled = Rc::new(Cell::new(0));
    let p = pulled.clone();
    let input = (0u64..).inspect(move |_| p.set(p.get() + 1));
    let mut it = pool.imap(|i| i + 1, input);
    assert_eq!(pulled.get(), 0, "nothing is pulled before iterating");
    let first: Vec<u64> = it.by_ref().take(5).collect();
    assert_eq!(first, [1, 2, 3, 4, 5]);
    assert_eq!(pool.running(), 4, "each step tops the pool up before returning");
    // Yielded, plus results done early and held for their turn (at most 4
    // here), plus in flight (at most 4): finite for an endless input.
    assert!((5..=5 + 2 * 4).contains(&pulled.get()), "pulled {} items for 5 results with size 4", pulled.get());
    drop(it);
    pool.waitall();
    assert_no_green_threads();
}

#[test]
fn imap_on_empty_input() {
    let pool = GreenPool::new(2);
    let mut it = pool.imap(|x: u8| x, Vec::new());
    assert_eq!(it.next(), None);
    assert_eq!(it.next(), None);
}

#[test]
fn imap_resumes_a_panic_in_the_caller() {
    let pool = GreenPool::new(2);
    let mut got = Vec::new();
    let err = panic::catch_unwind(AssertUnwindSafe(|| {
        for x in pool.imap(
            |i: u32| {
                eventlet::sleep(ms(1));
                if i == 2 {
                    panic!("item {i} failed");
                }
                i
            },
            0..5,
        ) {
            got.push(x);
        }
    }))
    .unwrap_err();
    assert_eq!(err.downcast_ref::<String>().map(String::as_str), Some("item 2 failed"));
    assert_eq!(got, [0, 1]);
    pool.waitall();
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn imap_reads_like_the_crawler() {
    fn fetch(url: &str) -> io::Result<Vec<u8>> {
        eventlet::sleep(ms(url.len() as u64 % 5));
        if url.ends_with("missing") {
            return Err(io::Error::new(io::ErrorKind::NotFound, url.to_owned()));
        }
        Ok(url.as_bytes().to_vec())
    }
    fn crawl(urls: Vec<&'static str>) -> io::Result<Vec<usize>> {
        let mut lens = Vec::new();
        let pool = GreenPool::new(1000);
        for body in pool.imap(fetch, urls) {
            lens.push(body?.len());
        }
        Ok(lens)
    }
    assert_eq!(crawl(vec!["http://a/", "http://bb/", "http://ccc/"]).unwrap(), [9, 10, 11]);
    assert_eq!(crawl(vec!["http://a/", "http://missing"]).unwrap_err().kind(), io::ErrorKind::NotFound);
    eventlet::sleep(ms(10)); // let the abandoned fetches end
    assert_no_green_threads();
}

#[test]
fn spawn_blocks_while_the_pool_is_full() {
    let pool = GreenPool::new(2);
    let log = Rc::new(RefCell::new(Vec::new()));
    for i in 0..2 {
        let l = log.clone();
        pool.spawn_n(move || {
            eventlet::sleep(ms(20));
            l.borrow_mut().push(format!("end {i}"));
        });
    }
    assert_eq!((pool.running(), pool.free(), pool.waiting()), (2, 0, 0));
    // Two spawners block in line, in this order.
    for name in ["a", "b"] {
        let (p, l) = (pool.clone(), log.clone());
        eventlet::spawn_n(move || {
            l.borrow_mut().push(format!("{name} waits"));
            let l2 = l.clone();
            p.spawn_n(move || l2.borrow_mut().push(format!("{name} runs")));
            l.borrow_mut().push(format!("{name} spawned"));
        });
    }
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 2);
    assert_eq!(*log.borrow(), ["a waits", "b waits"]);
    // The root queues behind them.
    pool.spawn_n({
        let l = log.clone();
        move || l.borrow_mut().push("root's runs".into())
    });
    log.borrow_mut().push("root spawned".into());
    assert!(log.borrow().contains(&"end 0".to_owned()), "root's spawn returned before a slot freed: {log:?}");
    pool.waitall();
    let log = log.borrow();
    let pos = |s: &str| log.iter().position(|x| x == s).unwrap_or_else(|| panic!("{s} missing from {log:?}"));
    assert!(pos("end 0") < pos("a spawned"));
    assert!(pos("a spawned") < pos("b spawned"), "FIFO: {log:?}");
    assert!(pos("b spawned") < pos("root spawned"), "FIFO: {log:?}");
    assert!(pos("a runs") < pos("b runs"));
    assert_eq!(pool.waiting(), 0);
    assert_no_green_threads();
}

#[test]
fn try_spawn_does_not_block() {
    let pool = GreenPool::new(1);
    let h = pool.try_spawn(|| eventlet::sleep(ms(5))).unwrap();
    let marker = Rc::new(());
    let m = marker.clone();
    match pool.try_spawn(move || drop(m)) {
        Err(TrySpawnError::Full(f)) => drop(f),
        other => panic!("expected Full, got {other:?}"),
    }
    assert_eq!(Rc::strong_count(&marker), 1, "the closure was handed back, then dropped");
    h.join().unwrap();
    assert_eq!(pool.try_spawn(|| 7).unwrap().join().unwrap(), 7);
    assert_no_green_threads();
}

#[test]
fn growing_wakes_a_blocked_spawner() {
    let pool = GreenPool::new(1);
    let gate = Rc::new(Cell::new(false));
    let g = gate.clone();
    let holder = pool.spawn(move || {
        while !g.get() {
            eventlet::sleep(ms(1));
        }
    });
    let ran = Rc::new(Cell::new(false));
    let (p, r) = (pool.clone(), ran.clone());
    let spawner = eventlet::spawn(move || p.spawn(move || r.set(true)).join().unwrap());
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 1);
    pool.resize(2);
    assert_eq!((pool.size(), pool.waiting(), pool.running()), (2, 0, 2));
    spawner.join().unwrap();
    assert!(ran.get());
    assert!(!holder.is_finished(), "the waiter ran while the holder still held its slot");
    gate.set(true);
    holder.join().unwrap();
    assert_no_green_threads();
}

#[test]
fn shrinking_caps_later_spawns() {
    let pool = GreenPool::new(4);
    let first_done = Rc::new(Cell::new(0));
    for _ in 0..4 {
        let d = first_done.clone();
        pool.spawn_n(move || {
            eventlet::sleep(ms(10));
            d.set(d.get() + 1);
        });
    }
    pool.resize(1);
    assert_eq!((pool.size(), pool.running(), pool.free()), (1, 4, 0));
    let c = Concurrency::default();
    for _ in 0..3 {
        let (c, d) = (c.clone(), first_done.clone());
        pool.spawn_n(move || {
            assert_eq!(d.get(), 4, "started before the pool was back under its new size");
            let _in = c.enter();
            eventlet::sleep(ms(2));
        });
    }
    pool.waitall();
    assert_eq!(c.max.get(), 1);
    assert_no_green_threads();
}

#[test]
fn waitall_waits_for_every_green_thread() {
    let pool = GreenPool::new(10);
    pool.waitall(); // empty: returns at once
    let done = Rc::new(Cell::new(0));
    for i in 0..5 {
        let d = done.clone();
        pool.spawn_n(move || {
            eventlet::sleep(ms(i * 3));
            d.set(d.get() + 1);
        });
    }
    assert_eq!(pool.running(), 5);
    pool.waitall();
    assert_eq!(done.get(), 5);
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn waitall_from_a_green_thread_of_another_context() {
    let pool = GreenPool::new(2);
    pool.spawn_n(|| eventlet::sleep(ms(5)));
    let p = pool.clone();
    let waiter = eventlet::spawn(move || {
        p.waitall();
        p.running()
    });
    assert_eq!(waiter.join().unwrap(), 0);
    assert_no_green_threads();
}

#[test]
fn waitall_inside_the_pool_panics() {
    let pool = GreenPool::new(2);
    let p = pool.clone();
    let h = pool.spawn(move || p.waitall());
    let err = h.join().unwrap_err();
    let msg = err.downcast_ref::<&str>().copied().or(err.downcast_ref::<String>().map(String::as_str));
    assert!(msg.is_some_and(|m| m.contains("own green threads")), "{msg:?}");
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn panicking_spawn_n_frees_its_slot() {
    let pool = GreenPool::new(1);
    let other = Rc::new(Cell::new(0));
    let o = other.clone();
    let bystander = eventlet::spawn(move || {
        for _ in 0..3 {
            eventlet::sleep(ms(1));
            o.set(o.get() + 1);
        }
    });
    pool.spawn_n(|| {
        eventlet::sleep(ms(1));
        panic!("handler fails");
    });
    // Blocks until the panicking one has freed the only slot.
    let h = pool.spawn(|| 5);
    assert_eq!(h.join().unwrap(), 5);
    bystander.join().unwrap();
    assert_eq!(other.get(), 3);
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn panicking_spawn_frees_its_slot_and_reaches_join() {
    let pool = GreenPool::new(1);
    let h = pool.spawn(|| -> u8 { panic!("boom") });
    assert_eq!(h.join().unwrap_err().downcast_ref::<&str>(), Some(&"boom"));
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn killing_a_blocked_green_thread_frees_its_slot() {
    let pool = GreenPool::new(1);
    let h = pool.spawn(|| eventlet::sleep(Duration::from_secs(10)));
    eventlet::yield_now(); // it starts and sleeps
    assert_eq!(pool.running(), 1);
    let next = Rc::new(Cell::new(false));
    let (p, n) = (pool.clone(), next.clone());
    eventlet::spawn_n(move || p.spawn_n(move || n.set(true)));
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 1);
    h.kill();
    assert!(h.join().unwrap_err().is::<Killed>());
    pool.waitall();
    assert!(next.get(), "the waiter got the freed slot");
    assert_eq!((pool.running(), pool.waiting()), (0, 0));
    assert_no_green_threads();
}

#[test]
fn killing_an_unstarted_green_thread_frees_its_slot() {
    let pool = GreenPool::new(1);
    let ran = Rc::new(Cell::new(false));
    let r = ran.clone();
    let h = pool.spawn(move || r.set(true));
    assert_eq!(pool.running(), 1);
    h.kill();
    assert_eq!(pool.running(), 0);
    assert!(h.join().unwrap_err().is::<Killed>());
    assert!(!ran.get());
    assert_eq!(Rc::strong_count(&ran), 1, "the closure was dropped");
    assert_eq!(pool.spawn(|| 1).join().unwrap(), 1);
    assert_no_green_threads();
}

#[test]
fn killing_a_waiting_spawner_leaves_the_line() {
    let pool = GreenPool::new(1);
    // Held until released (a 10 ms sleep could end, and hand its slot to
    // the spawner, before the checks below on a stalled machine).
    let release = eventlet::Event::new();
    let r = release.clone();
    let holder = pool.spawn(move || r.wait());
    let ran = Rc::new(Cell::new(false));
    let (p, r) = (pool.clone(), ran.clone());
    let spawner = eventlet::spawn(move || p.spawn_n(move || r.set(true)));
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 1);
    spawner.kill();
    assert!(spawner.join().unwrap_err().is::<Killed>());
    assert_eq!(pool.waiting(), 0);
    release.send(()).unwrap();
    holder.join().unwrap();
    assert_eq!(pool.running(), 0, "no slot went to the killed spawner");
    assert!(!ran.get());
    assert_eq!(pool.spawn(|| 2).join().unwrap(), 2);
    assert_no_green_threads();
}

#[test]
fn killing_a_granted_spawner_gives_the_slot_back() {
    // A slot is handed to the waiter (here by growing the pool), but the
    // waiter is killed before it runs to take it.
    let pool = GreenPool::new(1);
    let gate = Rc::new(Cell::new(false));
    let g = gate.clone();
    let holder = pool.spawn(move || {
        while !g.get() {
            eventlet::sleep(ms(1));
        }
    });
    let (p, ran) = (pool.clone(), Rc::new(Cell::new(false)));
    let r = ran.clone();
    let spawner = eventlet::spawn(move || p.spawn_n(move || r.set(true)));
    eventlet::yield_now();
    assert_eq!(pool.waiting(), 1);
    pool.resize(2); // grants the new slot to the spawner, which has not run yet
    assert_eq!((pool.waiting(), pool.running()), (0, 2));
    spawner.kill();
    assert!(spawner.join().unwrap_err().is::<Killed>());
    assert_eq!(pool.running(), 1, "the granted slot came back");
    assert!(!ran.get());
    gate.set(true);
    holder.join().unwrap();
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn pool_with_small_stacks() {
    let pool = GreenPool::new(2).with_stack_size(eventlet::MIN_STACK_SIZE);
    let v: Vec<u32> = pool.imap(|x: u32| x * 2, [1, 2, 3]).collect();
    assert_eq!(v, [2, 4, 6]);
    assert_eq!(pool.spawn(|| 3).join().unwrap(), 3);
    assert_no_green_threads();
}

#[test]
#[should_panic(expected = "below the minimum")]
fn too_small_a_stack_panics() {
    let _ = GreenPool::new(2).with_stack_size(1024);
}

#[test]
fn green_pile_yields_in_spawn_order() {
    let mut pile = GreenPile::new(3);
    let c = Concurrency::default();
    for i in 0..6u64 {
        let c = c.clone();
        pile.spawn(move || {
            let _in = c.enter();
            eventlet::sleep(ms(2 * (6 - i)));
            i
        });
    }
    assert_eq!(pile.len(), 6);
    assert_eq!(pile.next(), Some(0));
    assert_eq!(pile.len(), 5);
    assert_eq!(pile.by_ref().collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
    assert!(pile.is_empty());
    assert_eq!(pile.next(), None);
    assert_eq!(c.max.get(), 3);
    assert_no_green_threads();
}

#[test]
fn green_pile_shares_a_pool_and_resumes_panics() {
    let pool = GreenPool::new(4);
    let mut pile = GreenPile::with_pool(&pool);
    pile.spawn(|| 1);
    pile.spawn(|| -> i32 { panic!("second fails") });
    pile.spawn(|| 3);
    assert_eq!(pool.running(), 3);
    assert_eq!(pile.next(), Some(1));
    let err = panic::catch_unwind(AssertUnwindSafe(|| pile.next())).unwrap_err();
    assert_eq!(err.downcast_ref::<&str>(), Some(&"second fails"));
    assert_eq!(pile.next(), Some(3));
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn pool_size_must_be_positive() {
    let err = GreenPool::try_new(0).unwrap_err();
    assert_eq!(err.to_string(), "green pool size must be at least 1");
    assert_eq!(GreenPool::try_new(1).unwrap().size(), 1);
    assert_eq!(GreenPool::default().size(), 1000);
}

#[test]
#[should_panic(expected = "size must be at least 1")]
fn new_zero_panics() {
    let _ = GreenPool::new(0);
}

#[test]
#[should_panic(expected = "size must be at least 1")]
fn resize_zero_panics() {
    GreenPool::new(3).resize(0);
}

#[test]
fn clones_share_the_pool() {
    let a = GreenPool::new(2);
    let b = a.clone();
    a.spawn_n(|| eventlet::sleep(ms(1)));
    assert_eq!(b.running(), 1);
    b.resize(5);
    assert_eq!(a.size(), 5);
    b.waitall();
    assert_eq!(format!("{a:?}"), "GreenPool { size: 5, running: 0, waiting: 0 }");
    assert_no_green_threads();
}

/// Spawns into a full pool from one of its own green threads run inline:
/// the handle is finished at once and carries the result or the panic.
#[test]
fn spawn_from_a_member_of_the_full_pool_runs_inline() {
    let pool = GreenPool::new(1);
    let p = pool.clone();
    let outer = pool.spawn(move || {
        let me = eventlet::current().id();
        let ran_on = Rc::new(Cell::new(0));
        let r = ran_on.clone();
        let h = p.spawn(move || {
            r.set(eventlet::current().id());
            "inline"
        });
        assert_eq!(ran_on.get(), me, "ran on the caller's green thread, before spawn returned");
        assert!(h.is_finished());
        assert_ne!(h.thread().id(), me);
        h.kill(); // does nothing to a finished green thread
        assert_eq!(h.join().unwrap(), "inline");
        let h = p.spawn(|| -> u8 { panic::resume_unwind(Box::new("inline failure")) });
        assert_eq!(h.join().unwrap_err().downcast_ref::<&str>(), Some(&"inline failure"));
        // spawn_n: a panic is reported, the caller goes on.
        p.spawn_n(|| panic::resume_unwind(Box::new("inline spawn_n failure")));
        // A dropped handle drops its result.
        let dropped = Rc::new(Cell::new(false));
        struct Flag(Rc<Cell<bool>>);
        impl Drop for Flag {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let d = dropped.clone();
        drop(p.spawn(move || Flag(d)));
        assert!(dropped.get());
        assert_eq!(p.running(), 1, "inline runs take no slot");
        "outer"
    });
    assert_eq!(outer.join().unwrap(), "outer");
    assert_eq!(pool.running(), 0);
    assert_no_green_threads();
}

#[test]
fn spawn_from_a_member_of_a_pool_with_room_or_of_another_pool_does_not_run_inline() {
    let pool = GreenPool::new(2);
    let other = GreenPool::new(1);
    let (p, o) = (pool.clone(), other.clone());
    let done = Rc::new(Cell::new(false));
    let held_done = done.clone();
    let member = pool.spawn(move || {
        let me = eventlet::current().id();
        // Room left: a green thread of its own.
        let h = p.spawn(move || eventlet::current().id());
        assert!(!h.is_finished());
        assert_ne!(h.join().unwrap(), me);
        // The other pool is full (held below): this waits for its slot.
        let h = o.spawn(move || eventlet::current().id());
        assert!(held_done.get(), "did not wait for the other pool's slot");
        assert_ne!(h.join().unwrap(), me);
    });
    let holder = other.spawn(move || {
        eventlet::sleep(ms(30));
        done.set(true);
    });
    member.join().unwrap();
    holder.join().unwrap();
    assert_no_green_threads();
}

#[test]
fn a_kill_or_timeout_of_the_caller_during_an_inline_run_unwinds_the_caller() {
    let pool = GreenPool::new(1);
    let p = pool.clone();
    let reached = Rc::new(Cell::new(false));
    let r = reached.clone();
    let killed = pool.spawn(move || {
        let _h = p.spawn(|| eventlet::sleep(Duration::from_secs(60)));
        r.set(true); // not reached: the kill goes on unwinding the caller
    });
    eventlet::yield_now();
    killed.kill();
    assert!(killed.join().unwrap_err().is::<Killed>());
    assert!(!reached.get());

    let p = pool.clone();
    let timed = pool
        .spawn(move || eventlet::with_timeout(ms(5), || p.spawn(|| eventlet::sleep(Duration::from_secs(60))).join()));
    assert!(timed.join().unwrap().is_err(), "the caller's Timeout fired through the inline run");
    assert_no_green_threads();
}

#[test]
fn a_shared_pile_waits_for_spawns_in_progress_and_delivers_each_result_once() {
    let pile = GreenPile::new(2);
    let gate = eventlet::Event::new();
    // Fill the pool: the producers' spawns wait for slots.
    for _ in 0..2 {
        let g = gate.clone();
        pile.spawn(move || {
            g.wait();
            0
        });
    }
    let producers: Vec<_> = (1..=2)
        .map(|k| {
            let pile = pile.clone();
            eventlet::spawn(move || {
                for i in 0..5 {
                    pile.spawn(move || k * 10 + i);
                }
            })
        })
        .collect();
    eventlet::yield_now();
    assert_eq!(pile.spawning(), 2, "both producers wait for a slot");
    // Two consumers share the pile; each result goes to exactly one.
    let consumers: Vec<_> = (0..2)
        .map(|_| {
            let pile = pile.clone();
            eventlet::spawn(move || (&pile).collect::<Vec<_>>())
        })
        .collect();
    // A third consumer is killed while it waits: it leaves no trace.
    let doomed = {
        let pile = pile.clone();
        eventlet::spawn(move || (&pile).count())
    };
    eventlet::yield_now();
    doomed.kill();
    assert!(doomed.join().unwrap_err().is::<Killed>());
    gate.send(()).unwrap();
    let mut all: Vec<_> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
    all.sort();
    let mut want = vec![0, 0];
    want.extend((1..=2).flat_map(|k| (0..5).map(move |i| k * 10 + i)));
    assert_eq!(all, want);
    for p in producers {
        p.join().unwrap();
    }
    assert!(pile.is_empty());
    assert_eq!(pile.spawning(), 0);
    assert_no_green_threads();
}

#[test]
fn a_pile_consumer_killed_while_it_waits_for_a_result_leaves_it_in_the_pile() {
    // The consumer took the oldest green thread off the pile and waited for
    // it; killed there, it dropped that result with its handle: lost to
    // every other consumer of the pile.
    let pile = GreenPile::new(2);
    let gate = eventlet::Event::new();
    let g = gate.clone();
    pile.spawn(move || {
        g.wait();
        "slow"
    });
    pile.spawn(|| "fast");
    let p = pile.clone();
    let doomed = eventlet::spawn(move || p.clone().next());
    eventlet::yield_now();
    doomed.kill();
    assert!(doomed.join().unwrap_err().is::<Killed>());
    assert_eq!(pile.len(), 2, "the result the killed consumer waited for is still in the pile");
    gate.send(()).unwrap();
    assert_eq!((&pile).collect::<Vec<_>>(), ["slow", "fast"], "in spawn order, none lost");
    assert_no_green_threads();
}

#[test]
fn a_pile_consumer_timing_out_leaves_the_result_in_the_pile() {
    let pile = GreenPile::new(1);
    pile.spawn(|| {
        eventlet::sleep(ms(20));
        7
    });
    assert!(eventlet::with_timeout(ms(1), || pile.clone().next()).is_err());
    assert_eq!(pile.len(), 1);
    assert_eq!(pile.clone().next(), Some(7));
    assert_no_green_threads();
}
