//! A randomized stress test of the async bridge on one hub (feature
//! `tokio`): green threads wait in `block_on` on hand-written futures
//! woken from the same hub (some of whose polls block the green way, or
//! nest a `block_on`), on a tokio channel fed by a plain OS thread, on
//! tokio timers and on each other (`JoinHandle` as a future, `spawn_future`
//! on their own hub, awaited from `block_on`, a `LocalSet` task or a tokio
//! task), under random kills and timeouts, and drop those futures (which
//! kills what they await). Beside them, two pairs of green threads bounce
//! numbers through futures with no timeout, their polls blocking the green
//! way while they are woken: a lost wake-up hangs them, and the watchdog
//! aborts with the seed. At the end:
//!
//! - every value a green thread owned was dropped exactly once;
//! - every item a future took was returned by its `block_on` (an outcome
//!   that arrives with a timeout wins), and every item put was taken or is
//!   still in its mailbox;
//! - every token the OS thread sent was received or is still queued;
//! - the hub holds no green thread, timer or I/O waiter.
//!
//! `EVENTLET_STRESS_SEED` replays a seed (the test prints the one it used);
//! `EVENTLET_STRESS_SECS` sets how long it runs (default 3 s).

mod util;

use std::cell::{Cell, RefCell};
use std::collections::{HashSet, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use util::ledger::{Ledger, Tracked};
use util::Rng;

/// Items passed between green threads of the hub through futures.
#[derive(Default)]
struct Mailbox {
    items: RefCell<VecDeque<(u64, Tracked)>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Mailbox {
    fn put(&self, item: (u64, Tracked)) {
        self.items.borrow_mut().push_back(item);
        let ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }
}

/// A future that takes an item from a mailbox (recording that it did);
/// with `block_in_poll`, its first poll also blocks the green way after
/// registering (a sleep, or a nested `block_on`).
struct Take<'a> {
    w: &'a World,
    block_in_poll: Option<(bool, Duration)>,
}

impl Future for Take<'_> {
    type Output = (u64, Tracked);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<(u64, Tracked)> {
        let w = self.w;
        let item = w.mailbox.items.borrow_mut().pop_front();
        if let Some(item) = item {
            w.taken.borrow_mut().insert(item.0);
            return Poll::Ready(item);
        }
        w.mailbox.waiters.borrow_mut().push(cx.waker().clone());
        if let Some((nested, d)) = self.block_in_poll.take() {
            if nested {
                eventlet::block_on(tokio::time::sleep(d));
            } else {
                eventlet::sleep(d);
            }
            return Poll::Pending;
        }
        Poll::Pending
    }
}

/// A one-way channel of numbers between two green threads of the hub.
#[derive(Default)]
struct Line {
    items: RefCell<VecDeque<u64>>,
    waiters: RefCell<Vec<Waker>>,
}

impl Line {
    fn put(&self, v: u64) {
        self.items.borrow_mut().push_back(v);
        let ws = std::mem::take(&mut *self.waiters.borrow_mut());
        for w in ws {
            w.wake();
        }
    }
}

/// A future of the next number on a line; its first poll may block the
/// green way after registering, as [`Take`]'s.
struct Next<'a> {
    line: &'a Line,
    block_in_poll: Option<(bool, Duration)>,
}

impl Future for Next<'_> {
    type Output = u64;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<u64> {
        if let Some(v) = self.line.items.borrow_mut().pop_front() {
            return Poll::Ready(v);
        }
        self.line.waiters.borrow_mut().push(cx.waker().clone());
        if let Some((nested, d)) = self.block_in_poll.take() {
            if nested {
                eventlet::block_on(tokio::time::sleep(d));
            } else {
                eventlet::sleep(d);
            }
        }
        Poll::Pending
    }
}

/// Two green threads bounce numbers over two lines, waiting without a
/// timeout (so a lost wake-up hangs the test: the watchdog reports it),
/// their polls often blocking the green way while the other wakes them.
fn ping_pong(until: Instant, mut rng: Rng) -> u64 {
    let (ping, pong) = (Rc::new(Line::default()), Rc::new(Line::default()));
    let (ping2, pong2) = (ping.clone(), pong.clone());
    let mut r2 = Rng(rng.next() | 1);
    let ponger = eventlet::spawn(move || loop {
        let block_in_poll = r2.chance(30).then(|| (r2.chance(50), r2.ms(1)));
        let v = eventlet::block_on(Next { line: &ping2, block_in_poll });
        if v == u64::MAX {
            return;
        }
        pong2.put(v);
    });
    let mut rounds = 0;
    while Instant::now() < until {
        ping.put(rounds);
        let block_in_poll = rng.chance(30).then(|| (rng.chance(50), rng.ms(1)));
        assert_eq!(eventlet::block_on(Next { line: &pong, block_in_poll }), rounds);
        rounds += 1;
    }
    ping.put(u64::MAX);
    ponger.join().unwrap();
    rounds
}

/// What the green threads share.
struct World {
    ledger: Rc<Ledger>,
    mailbox: Mailbox,
    next_item: Cell<u64>,
    put: RefCell<HashSet<u64>>,
    /// Items a `Take` returned `Ready` with.
    taken: RefCell<HashSet<u64>>,
    /// Items a `block_on` of a `Take` returned.
    received: RefCell<HashSet<u64>>,
    handles: RefCell<Vec<eventlet::JoinHandle<Option<Tracked>>>>,
    tokens: RefCell<tokio::sync::mpsc::UnboundedReceiver<u64>>,
    tokens_got: Cell<u64>,
    until: Instant,
    spawned: Cell<u64>,
}

/// A handle from the shared pile, not the caller's own.
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

fn receive(w: &World, item: (u64, Tracked)) {
    assert!(w.received.borrow_mut().insert(item.0), "item {} received twice", item.0);
}

fn worker(w: Rc<World>, mut rng: Rng, depth: u32) -> Option<Tracked> {
    let mine = w.ledger.track(rng.chance(10), "result");
    let mut steps = if depth == 0 { u64::MAX } else { rng.below(20) };
    while Instant::now() < w.until && steps > 0 {
        steps -= 1;
        let tmo = rng.ms(3);
        match rng.below(13) {
            0 if depth < 3 && w.spawned.get() < 10_000 => {
                w.spawned.set(w.spawned.get() + 1);
                let (w2, r2) = (w.clone(), Rng(rng.next() | 1));
                let captured = w.ledger.track(rng.chance(10), "capture");
                let h = eventlet::spawn(move || {
                    let r = worker(w2, r2, depth + 1);
                    drop(captured);
                    r
                });
                if rng.chance(30) {
                    drop(h);
                } else {
                    w.handles.borrow_mut().push(h);
                }
            }
            1 => {
                let id = w.next_item.get();
                w.next_item.set(id + 1);
                w.put.borrow_mut().insert(id);
                w.mailbox.put((id, w.ledger.track(rng.chance(10), "item")));
            }
            2..=4 => {
                let block_in_poll = rng.chance(30).then(|| (rng.chance(50), rng.ms(2)));
                let take = Take { w: &w, block_in_poll };
                if let Ok(item) = eventlet::with_timeout(tmo, || eventlet::block_on(take)) {
                    receive(&w, item);
                }
            }
            5 => {
                // A token from the OS thread (a cross-thread wake).
                let got = eventlet::with_timeout(tmo, || {
                    eventlet::block_on(std::future::poll_fn(|cx| w.tokens.borrow_mut().poll_recv(cx)))
                });
                if let Ok(Some(_)) = got {
                    w.tokens_got.set(w.tokens_got.get() + 1);
                }
            }
            6 => {
                // Another green thread awaited as a future (dropped on a
                // timeout: that kills it).
                if let Some(h) = take_other(&w, &mut rng) {
                    let f = h.into_future();
                    let _ = eventlet::with_timeout(tmo, || drop(eventlet::block_on(f)));
                }
            }
            7 => {
                if let Some(h) = take_other(&w, &mut rng) {
                    h.kill();
                    if rng.chance(50) {
                        w.handles.borrow_mut().push(h);
                    }
                }
            }
            8 => {
                // Green work as a `Send` future of this hub: awaited,
                // dropped (killed) or detached.
                let d = rng.ms(2);
                let f = eventlet::hub::handle()
                    .spawn_future(move || {
                        eventlet::sleep(d);
                        7
                    })
                    .unwrap();
                match rng.below(3) {
                    0 => {
                        if let Ok(r) = eventlet::with_timeout(tmo, || eventlet::block_on(f)) {
                            assert_eq!(r.unwrap(), 7);
                        }
                    }
                    1 => drop(f),
                    _ => f.detach(),
                }
            }
            9 => {
                let _ = eventlet::with_timeout(tmo, || eventlet::block_on(tokio::time::sleep(rng.ms(3))));
            }
            10 => {
                // A tokio task that awaits green work under a tokio timeout
                // (dropping the future kills it).
                let d = rng.ms(3);
                let patience = rng.ms(3);
                let hub = eventlet::hub::handle();
                tokio::spawn(async move {
                    let f = hub.spawn_future(move || eventlet::sleep(d)).unwrap();
                    let _ = tokio::time::timeout(patience, f).await;
                });
            }
            11 => {
                // A LocalSet task awaits another green thread's JoinHandle.
                if let Some(h) = take_other(&w, &mut rng) {
                    let local = tokio::task::LocalSet::new();
                    let _ = eventlet::with_timeout(tmo, || {
                        eventlet::block_on(local.run_until(async move {
                            let t = tokio::task::spawn_local(async move { drop(h.await) });
                            let _ = t.await;
                        }))
                    });
                }
            }
            12 if depth > 0 && rng.chance(10) => panic!("a planned panic ends a green thread"),
            _ => eventlet::yield_now(),
        }
    }
    rng.chance(50).then_some(mine)
}

#[test]
fn the_bridge_under_random_kills_and_timeouts_keeps_every_invariant() {
    let (seed, secs) = util::stress_plan("stress_future");
    util::quiet_planned_panics();
    let _watchdog = util::Watchdog::start("stress_future", seed, Duration::from_secs_f64(secs + 60.0));
    // A fresh thread: its own hub and runtime.
    std::thread::spawn(move || run(seed, secs)).join().unwrap();
}

fn run(seed: u64, secs: f64) {
    let ledger = Rc::new(Ledger::default());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed ^ 0x5eed | 1);
            while !stop.load(Ordering::SeqCst) {
                if tx.send(0).is_err() {
                    break;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_micros(rng.below(500)));
            }
        })
    };
    let w = Rc::new(World {
        ledger: ledger.clone(),
        mailbox: Mailbox::default(),
        next_item: Cell::new(0),
        put: RefCell::new(HashSet::new()),
        taken: RefCell::new(HashSet::new()),
        received: RefCell::new(HashSet::new()),
        handles: RefCell::new(Vec::new()),
        tokens: RefCell::new(rx),
        tokens_got: Cell::new(0),
        until: Instant::now() + Duration::from_secs_f64(secs),
        spawned: Cell::new(0),
    });
    let mut rng = Rng(seed | 1);
    let roots: Vec<_> = (0..50)
        .map(|_| {
            let (w, r) = (w.clone(), Rng(rng.next() | 1));
            eventlet::spawn(move || worker(w, r, 0))
        })
        .collect();
    let until = w.until;
    let pairs: Vec<_> = (0..2)
        .map(|_| {
            let r = Rng(rng.next() | 1);
            eventlet::spawn(move || ping_pong(until, r))
        })
        .collect();
    for h in roots {
        h.join().expect("a top-level worker panicked");
    }
    let rounds: u64 = pairs.into_iter().map(|h| h.join().expect("a ping-pong green thread panicked")).sum();
    loop {
        let h = w.handles.borrow_mut().pop();
        let Some(h) = h else { break };
        let _ = h.join();
    }
    stop.store(true, Ordering::SeqCst);
    feeder.join().unwrap();
    // Detached green threads and tokio tasks may still be finishing.
    let start = Instant::now();
    while eventlet::hub::stats().green_threads > 0 && start.elapsed() < Duration::from_secs(10) {
        eventlet::sleep(Duration::from_millis(1));
    }
    eventlet::block_on(tokio::time::sleep(Duration::from_millis(10)));
    let stats = eventlet::hub::stats();
    assert_eq!(stats.green_threads, 0, "green threads left: {:?}", eventlet::hub::threads());
    assert_eq!(stats.timers, 0, "timers left");
    assert_eq!(stats.io_waiters, 0, "I/O waiters left");
    // Every item a future took reached its block_on's caller.
    let (taken, received) = (w.taken.borrow(), w.received.borrow());
    let lost: Vec<_> = taken.difference(&received).take(10).collect();
    assert!(lost.is_empty(), "items taken by a future but never returned by its block_on: {lost:?}");
    // Every item put was taken, or is still in the mailbox.
    let left: HashSet<u64> = w.mailbox.items.borrow().iter().map(|(id, _)| *id).collect();
    for id in w.put.borrow().iter() {
        assert!(taken.contains(id) != left.contains(id), "item {id} lost or duplicated");
    }
    drop((taken, received));
    w.mailbox.items.borrow_mut().clear();
    w.mailbox.waiters.borrow_mut().clear();
    // Every token sent was received or is still queued.
    let mut queued = 0;
    while w.tokens.borrow_mut().try_recv().is_ok() {
        queued += 1;
    }
    assert_eq!(w.tokens_got.get() + queued, sent.load(Ordering::SeqCst), "tokens lost");
    eprintln!(
        "stress_future: {} green threads, {} items, {} tokens, {} values, {rounds} ping-pongs",
        w.spawned.get(),
        w.next_item.get(),
        w.tokens_got.get(),
        ledger.made()
    );
    drop(w);
    ledger.assert_all_dropped();
}
