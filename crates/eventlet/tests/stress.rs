//! A randomized stress test: many green threads spawn, kill, join, time
//! out, pass items through queues, take locks and permits, do socket I/O
//! and panic, in interleavings chosen by a seeded generator, for a bounded
//! time. At the end, invariants that any of those bugs would break:
//!
//! - every value a green thread owned (closures run or dropped unrun,
//!   results joined or detached, green-locals, items in queues) was dropped
//!   exactly once;
//! - every item put in a queue was got or is still there;
//! - every permit came back, and the lock is free;
//! - every byte written to a socket was read;
//! - the hub holds no green thread, timer or I/O waiter, and no descriptor
//!   leaked.
//!
//! `EVENTLET_STRESS_SEED` replays a seed (the test prints the one it used);
//! `EVENTLET_STRESS_SECS` sets how long it runs (default 3 s).

mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};

use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::time::{Duration, Instant};

use eventlet::net::unix::UnixStream;
use eventlet::{Lock, Queue, Semaphore};
use util::ledger::{Ledger, Tracked};
use util::Rng;

eventlet::green_local! {
    static HELD: RefCell<Vec<Tracked>> = RefCell::new(Vec::new());
}

/// What the green threads share.
struct World {
    ledger: Rc<Ledger>,
    queue: Queue<(u64, Tracked)>,
    /// What each put's caller saw: `true` for success, `false` for a
    /// timeout (a put whose caller was killed has no entry).
    put: RefCell<std::collections::HashMap<u64, bool>>,
    got: RefCell<Vec<u64>>,
    next_item: Cell<u64>,
    lock: Lock<u64>,
    sem: Semaphore,
    handles: RefCell<Vec<eventlet::JoinHandle<Option<Tracked>>>>,
    written: Cell<u64>,
    read: Cell<u64>,
    until: Instant,
    spawned: Cell<u64>,
}

const PERMITS: usize = 3;

/// A handle from the shared pile, not the caller's own (a green thread
/// cannot join itself, and killing itself is not what this op is about).
fn take_other(w: &World, rng: &mut Rng) -> Option<eventlet::JoinHandle<Option<Tracked>>> {
    let me = eventlet::current();
    let mut hs = w.handles.borrow_mut();
    let n = hs.len() as u64;
    if n == 0 {
        return None;
    }
    let i = rng.below(n) as usize;
    (hs[i].thread() != me).then(|| hs.swap_remove(i))
}

fn worker(w: Rc<World>, mut rng: Rng, depth: u32, socks: Option<(UnixStream, UnixStream)>) -> Option<Tracked> {
    let mine = w.ledger.track(rng.chance(20), "result");
    // Its own children: joined without a timeout (a join of someone else's
    // green thread has one, or two green threads could join each other).
    let mut children = Vec::new();
    let mut steps = if depth == 0 { u64::MAX } else { rng.below(20) };
    while Instant::now() < w.until && steps > 0 {
        steps -= 1;
        let op = rng.below(12);
        let tmo = rng.ms(2);
        match op {
            0 if depth < 3 && w.spawned.get() < 20_000 => {
                w.spawned.set(w.spawned.get() + 1);
                let (w2, r2) = (w.clone(), Rng(rng.next() | 1));
                let captured = w.ledger.track(rng.chance(20), "capture");
                let h = if rng.chance(10) {
                    eventlet::spawn_after(rng.ms(2), move || {
                        drop(captured);
                        worker(w2, r2, depth + 1, None)
                    })
                } else {
                    eventlet::spawn(move || {
                        // Not `let _c = captured;` before the call: a drop
                        // after the return value is made, if a kill unwinds
                        // it, leaks that value (rust-lang/rust#47949).
                        let r = worker(w2, r2, depth + 1, None);
                        drop(captured);
                        r
                    })
                };
                match rng.below(3) {
                    0 => drop(h), // detached: its result is dropped by itself
                    1 => children.push(h),
                    _ => w.handles.borrow_mut().push(h),
                }
            }
            1 => {
                let h = take_other(&w, &mut rng);
                if let Some(h) = h {
                    h.kill();
                    if rng.chance(50) {
                        w.handles.borrow_mut().push(h);
                    }
                }
            }
            2 => {
                if rng.chance(50) {
                    if let Some(h) = take_other(&w, &mut rng) {
                        let _ = eventlet::with_timeout(tmo, move || drop(h.join()));
                    }
                } else if let Some(h) = children.pop() {
                    drop(h.join());
                }
            }
            3 => {
                let _ = eventlet::with_timeout(tmo, || eventlet::sleep(rng.ms(3)));
            }
            4 => {
                let id = w.next_item.get();
                w.next_item.set(id + 1);
                let item = (id, w.ledger.track(rng.chance(10), "item"));
                let ok = match eventlet::with_timeout(tmo, || w.queue.put(item)) {
                    Ok(Ok(())) => true,
                    Ok(Err(e)) => panic!("put failed: {e}"),
                    Err(_) => false, // the item was dropped with the unwound put
                };
                w.put.borrow_mut().insert(id, ok);
            }
            5 => {
                if let Ok(Ok((id, item))) = eventlet::with_timeout(tmo, || w.queue.get()) {
                    w.got.borrow_mut().push(id);
                    if rng.chance(30) {
                        HELD.with_borrow_mut(|h| h.push(item));
                    }
                }
            }
            6 => {
                let _ = eventlet::with_timeout(tmo, || {
                    // Held across a switch; undone however the holder ends.
                    struct Undo<'a>(eventlet::LockGuard<'a, u64>);
                    impl Drop for Undo<'_> {
                        fn drop(&mut self) {
                            *self.0 -= 1;
                        }
                    }
                    let mut g = w.lock.lock();
                    *g += 1;
                    let _undo = Undo(g);
                    eventlet::yield_now();
                });
            }
            7 => {
                let _ = eventlet::with_timeout(tmo, || {
                    let _p = w.sem.acquire();
                    eventlet::sleep(rng.ms(1));
                });
            }
            8 => {
                if let Some((a, b)) = &socks {
                    let n = 1 + rng.below(3000) as usize;
                    let data = vec![0xa5u8; n];
                    let (mut a, mut b) = (a, b);
                    let n = match eventlet::with_timeout(tmo, || a.write(&data)) {
                        Ok(Ok(k)) => k,
                        Ok(Err(e)) => panic!("socket write failed: {e}"),
                        Err(_) => 0, // its buffer is full: read first
                    };
                    w.written.set(w.written.get() + n as u64);
                    let mut buf = vec![0u8; n.max(4096)];
                    let mut got = 0;
                    while got < n || (got == 0 && w.read.get() < w.written.get()) {
                        match eventlet::with_timeout(tmo, || b.read(&mut buf[got..])) {
                            Ok(Ok(k)) => got += k,
                            Ok(Err(e)) => panic!("socket read failed: {e}"),
                            Err(_) => break, // timed out: the rest is read later
                        }
                    }
                    w.read.set(w.read.get() + got as u64);
                }
            }
            9 => {
                let r = panic::catch_unwind(AssertUnwindSafe(|| {
                    let _t = w.ledger.track(rng.chance(30), "unwound");
                    panic!("a planned panic");
                }));
                assert!(r.is_err());
            }
            10 if depth > 0 && rng.chance(20) => panic!("a planned panic ends a green thread"),
            _ => eventlet::yield_now(),
        }
    }
    // Drain what the socket pair still holds.
    if let Some((_, mut b)) = socks {
        let mut buf = [0u8; 4096];
        while w.read.get() < w.written.get() {
            let k = b.read(&mut buf).unwrap();
            w.read.set(w.read.get() + k as u64);
        }
    }
    // Dropped before the result is made: a drop that blocks (a child's
    // sleepy result) may unwind on a kill, which would leak a result made
    // already (rust-lang/rust#47949).
    drop(children);
    rng.chance(50).then_some(mine)
}

#[test]
fn random_interleavings_keep_every_invariant() {
    let (seed, secs) = util::stress_plan("stress");
    // Panics are part of the plan: their reports are dropped.
    util::quiet_planned_panics();
    let fds = || std::fs::read_dir("/proc/self/fd").unwrap().count();
    let _ = eventlet::hub::stats(); // the hub's own descriptors
    let before = fds();
    let ledger = Rc::new(Ledger::default());
    let w = Rc::new(World {
        ledger: ledger.clone(),
        queue: Queue::bounded(3),
        put: RefCell::new(Default::default()),
        got: RefCell::new(Vec::new()),
        next_item: Cell::new(0),
        lock: Lock::new(0),
        sem: Semaphore::new(PERMITS),
        handles: RefCell::new(Vec::new()),
        written: Cell::new(0),
        read: Cell::new(0),
        until: Instant::now() + Duration::from_secs_f64(secs),
        spawned: Cell::new(0),
    });
    let mut rng = Rng(seed | 1);
    let roots: Vec<_> = (0..100)
        .map(|i| {
            let (w, r) = (w.clone(), Rng(rng.next() | 1));
            let socks = (i % 4 == 0).then(|| UnixStream::pair().unwrap());
            eventlet::Builder::new().name(format!("worker {i}")).spawn(move || worker(w, r, 0, socks)).unwrap()
        })
        .collect();
    for h in roots {
        h.join().expect("a top-level worker panicked");
    }
    // What is left: join it, then empty the queue.
    loop {
        let h = w.handles.borrow_mut().pop();
        let Some(h) = h else { break };
        let _ = h.join();
    }
    while let Ok((id, item)) = w.queue.try_get() {
        w.got.borrow_mut().push(id);
        drop(item);
    }
    // Detached green threads may still be finishing (sleepy drops).
    let start = Instant::now();
    while eventlet::hub::stats().green_threads > 0 && start.elapsed() < Duration::from_secs(10) {
        eventlet::sleep(Duration::from_millis(1));
    }
    let stats = eventlet::hub::stats();
    assert_eq!(stats.green_threads, 0, "green threads left: {:?}", eventlet::hub::threads());
    assert_eq!(stats.timers, 0, "timers left");
    assert_eq!(stats.io_waiters, 0, "I/O waiters left");
    // Every item got was put once, and not reported as timed out; every
    // put reported as done was got. (A putter killed after its item was
    // taken reports nothing.)
    let (put, got) = (w.put.borrow(), w.got.borrow());
    let mut seen = std::collections::HashSet::new();
    for id in got.iter() {
        assert!(seen.insert(*id), "item {id} got twice");
        assert_ne!(put.get(id), Some(&false), "item {id} was delivered but its put reported a timeout");
    }
    for (id, ok) in put.iter() {
        assert!(!ok || seen.contains(id), "item {id} was put but never got");
    }
    drop((put, got));
    assert_eq!(w.sem.available(), PERMITS, "permits came back");
    assert!(w.lock.try_lock().is_some(), "the lock is free");
    assert_eq!(*w.lock.try_lock().unwrap(), 0);
    assert_eq!(w.written.get(), w.read.get(), "bytes written and read");
    drop(w);
    ledger.assert_all_dropped();
    assert_eq!(fds(), before, "descriptors leaked");
    eprintln!("stress: {} values tracked, all dropped once", ledger.made());
}
