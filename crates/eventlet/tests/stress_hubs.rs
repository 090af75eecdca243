//! A randomized stress test across OS threads: green threads on the two
//! hubs of a [`Group`], green threads of the test's own hub and a plain OS
//! thread pass items through shared channels (bounded, rendezvous and
//! unbounded) with and without timeouts, select over them, kill receivers
//! and senders while they wait, join each other across hubs, and await
//! green threads as futures (or drop those futures, which kills them), in
//! interleavings chosen by a seeded generator, for a bounded time. With the
//! `tokio` feature a tokio runtime on another plain thread takes part too:
//! it awaits green threads of the group's hubs as futures under tokio's
//! timeouts, drops them or detaches them.
//!
//! Invariants at the end, which a lost wake-up, a lost or duplicated item,
//! or an outcome given to a waiter that had given up would break:
//!
//! - every item was dropped exactly once;
//! - every item a send reported as done was received (or was still in its
//!   channel at the end), and every item received was sent once;
//! - every green thread ended (a wait that nobody ends would hang the test:
//!   a watchdog thread then prints the seed and what each hub holds, and
//!   aborts).
//!
//! `EVENTLET_STRESS_SEED` replays a seed (the test prints the one it used);
//! `EVENTLET_STRESS_SECS` sets how long it runs (default 3 s).

mod util;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventlet::channel::{self, Receiver, Select, Sender};
use eventlet::hub::{Group, Handle};
use util::Rng;

/// What happened to every item.
#[derive(Default)]
struct Ledger {
    /// Drops per item.
    drops: Vec<u8>,
    /// Items whose send reported success.
    sent: HashSet<usize>,
    /// Items received, in order (a duplicate is a bug).
    received: Vec<usize>,
    /// Items whose sender was killed: delivered or not, it reports nothing.
    unsure: HashSet<usize>,
}

struct World {
    ledger: Mutex<Ledger>,
    chans: Vec<(Sender<Item>, Receiver<Item>)>,
    hubs: Vec<Handle>,
    until: Instant,
}

impl World {
    fn item(self: &Arc<Self>) -> Item {
        let mut l = self.ledger.lock().unwrap();
        l.drops.push(0);
        Item { id: l.drops.len() - 1, world: self.clone() }
    }

    fn sent(&self, id: usize) {
        self.ledger.lock().unwrap().sent.insert(id);
    }

    fn received(&self, item: Item) {
        self.ledger.lock().unwrap().received.push(item.id);
    }

    fn going(&self) -> bool {
        Instant::now() < self.until
    }
}

/// An item sent through the channels; its drop is counted.
struct Item {
    id: usize,
    world: Arc<World>,
}

impl Drop for Item {
    fn drop(&mut self) {
        // The ledger outlives every item: the world holds it and each item
        // holds the world.
        self.world.ledger.lock().unwrap_or_else(|e| e.into_inner()).drops[self.id] += 1;
    }
}

/// What a select chose.
enum Chosen {
    Got(Item),
    Sent,
}

/// One random step of a green thread (on any hub) or the plain thread.
fn step(w: &Arc<World>, rng: &mut Rng, green: bool) {
    let (tx, rx) = &w.chans[rng.below(w.chans.len() as u64) as usize];
    match rng.below(if green { 10 } else { 4 }) {
        0 => {
            let item = w.item();
            let id = item.id;
            if tx.send_timeout(item, rng.ms(3)).is_ok() {
                w.sent(id);
            }
        }
        1 => {
            if let Ok(item) = rx.recv_timeout(rng.ms(3)) {
                w.received(item);
            }
        }
        2 => {
            let item = w.item();
            let id = item.id;
            if let Ok(()) = tx.try_send(item) {
                w.sent(id);
            }
        }
        3 => {
            if let Ok(item) = rx.try_recv() {
                w.received(item);
            }
        }
        // Green threads only from here.
        4 => {
            // A Timeout (not the call's own) cuts a blocking receive short.
            if let Ok(Ok(item)) = eventlet::with_timeout(rng.ms(3), || rx.recv()) {
                w.received(item);
            }
        }
        5 => {
            let item = w.item();
            let id = item.id;
            if let Ok(Ok(())) = eventlet::with_timeout(rng.ms(3), || tx.send(item)) {
                w.sent(id);
            }
        }
        6 => {
            // A receiver and a sender of this hub, killed while they may be
            // waiting, or just as their wait is made good.
            let (w1, w2) = (w.clone(), w.clone());
            let rx = rx.clone();
            let tx = tx.clone();
            let r = eventlet::spawn(move || {
                if let Ok(item) = rx.recv() {
                    w1.received(item);
                }
            });
            let item = w.item();
            w.ledger.lock().unwrap().unsure.insert(item.id);
            let s = eventlet::spawn(move || {
                let id = item.id;
                if tx.send(item).is_ok() {
                    w2.sent(id);
                }
            });
            match rng.below(3) {
                0 => eventlet::yield_now(),
                1 => eventlet::sleep(rng.ms(2)),
                _ => {}
            }
            r.kill();
            s.kill();
            let _ = r.join();
            let _ = s.join();
        }
        7 => {
            // Select over two channels, either side.
            let (tx2, rx2) = &w.chans[rng.below(w.chans.len() as u64) as usize];
            let item = w.item();
            let id = item.id;
            let (rx, rx2) = (rx.clone(), rx2.clone());
            let chosen = Select::new()
                .recv(&rx, |r| r.ok().map(Chosen::Got))
                .recv(&rx2, |r| r.ok().map(Chosen::Got))
                .send(tx2, item, |r| r.is_ok().then_some(Chosen::Sent))
                .wait_timeout(rng.ms(3));
            match chosen {
                Ok(Some(Chosen::Got(item))) => w.received(item),
                Ok(Some(Chosen::Sent)) => w.sent(id),
                _ => {}
            }
        }
        8 => {
            // A green thread on another hub, joined from here (or not).
            let hub = &w.hubs[rng.below(w.hubs.len() as u64) as usize];
            let w1 = w.clone();
            let rx = rx.clone();
            let patience = rng.ms(3);
            if let Ok(h) = hub.spawn(move || rx.recv_timeout(patience).ok().map(|item| w1.received(item))) {
                match rng.below(3) {
                    0 => drop(h),
                    1 => drop(h.join_timeout(rng.ms(2))),
                    _ => drop(h.join()),
                }
            }
        }
        _ => {
            // Awaiting a green thread of another hub as a future, or
            // dropping the future (which kills it).
            let hub = &w.hubs[rng.below(w.hubs.len() as u64) as usize];
            let w1 = w.clone();
            let rx = rx.clone();
            if let Ok(f) = hub.spawn_future(move || {
                if let Ok(item) = rx.recv() {
                    w1.received(item);
                }
            }) {
                if rng.chance(50) {
                    let _ = eventlet::with_timeout(rng.ms(3), || eventlet::block_on(f));
                } else {
                    eventlet::sleep(rng.ms(1));
                    drop(f);
                }
            }
        }
    }
}

fn worker(w: Arc<World>, mut rng: Rng) {
    while w.going() {
        step(&w, &mut rng, true);
    }
}

/// A tokio task's steps: a green thread of a random hub that receives or
/// sends, awaited under a tokio timeout (dropping it on expiry kills it),
/// dropped at once, or detached.
#[cfg(feature = "tokio")]
fn from_tokio(w: Arc<World>, mut rng: Rng) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        while w.going() {
            let hub = &w.hubs[rng.below(w.hubs.len() as u64) as usize];
            let (tx, rx) = w.chans[rng.below(w.chans.len() as u64) as usize].clone();
            let w1 = w.clone();
            let patience = rng.ms(3);
            let f = if rng.chance(50) {
                hub.spawn_future(move || {
                    if let Ok(item) = rx.recv_timeout(patience) {
                        w1.received(item);
                    }
                })
                .ok()
            } else {
                // Its green thread may be killed (the future dropped) after
                // the item was taken: then it reports nothing.
                let item = w.item();
                w.ledger.lock().unwrap().unsure.insert(item.id);
                hub.spawn_future(move || {
                    let id = item.id;
                    if tx.send_timeout(item, patience).is_ok() {
                        w1.sent(id);
                    }
                })
                .ok()
            };
            let Some(f) = f else { continue };
            match rng.below(3) {
                0 => drop(tokio::time::timeout(rng.ms(3), f).await),
                1 => drop(f),
                _ => f.detach(),
            }
        }
    });
}

#[test]
fn random_interleavings_across_hubs_keep_every_invariant() {
    let (seed, secs) = util::stress_plan("stress across hubs");
    let group = Group::with_hubs(2).unwrap();
    let w = Arc::new(World {
        ledger: Mutex::new(Ledger::default()),
        chans: vec![channel::bounded(0), channel::bounded(1), channel::bounded(4), channel::unbounded()],
        hubs: (0..group.len()).map(|i| group.handle(i).clone()).collect(),
        until: Instant::now() + Duration::from_secs_f64(secs),
    });
    // A wait nobody ends hangs the test: say so, with the seed, and abort.
    let finished = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let finished = finished.clone();
        let limit = Duration::from_secs_f64(secs) + Duration::from_secs(60);
        std::thread::spawn(move || {
            let start = Instant::now();
            while !finished.load(Ordering::SeqCst) {
                if start.elapsed() > limit {
                    eprintln!("stress across hubs: stuck (seed {seed}); hubs: {:#?}", eventlet::hub::inspect());
                    std::process::abort();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let mut rng = Rng(seed | 1);
    // Green threads on each hub of the group.
    let mut remote = Vec::new();
    for i in 0..group.len() {
        for _ in 0..20 {
            let (w, r) = (w.clone(), Rng(rng.next() | 1));
            remote.push(group.spawn_on(i, move || worker(w, r)).unwrap_or_else(|_| panic!("hub {i} gone")));
        }
    }
    // A plain OS thread, blocking in the kernel.
    let plain = {
        let (w, mut r) = (w.clone(), Rng(rng.next() | 1));
        std::thread::spawn(move || {
            while w.going() {
                step(&w, &mut r, false);
            }
        })
    };
    // With the tokio bridge: a tokio runtime on a plain thread awaits green
    // threads of the group's hubs as futures, drops them (killing them) or
    // detaches them.
    #[cfg(feature = "tokio")]
    let from_tokio = {
        let (w, r) = (w.clone(), Rng(rng.next() | 1));
        std::thread::spawn(move || from_tokio(w, r))
    };
    // And green threads of this thread's hub.
    let local: Vec<_> = (0..20)
        .map(|_| {
            let (w, r) = (w.clone(), Rng(rng.next() | 1));
            eventlet::spawn(move || worker(w, r))
        })
        .collect();
    for h in local {
        h.join().expect("a worker of this hub panicked");
    }
    for h in remote {
        h.join().expect("a worker of the group panicked");
    }
    plain.join().expect("the plain thread panicked");
    #[cfg(feature = "tokio")]
    from_tokio.join().expect("the tokio thread panicked");
    // Every worker has ended; what they spawned on the group's hubs ends
    // within its own short timeouts (the world's handles would keep a
    // plain `join` waiting).
    assert_eq!(group.shutdown(Duration::from_secs(10)), 0, "green threads of the group were left waiting");
    finished.store(true, Ordering::SeqCst);
    watchdog.join().unwrap();
    // What is left in the channels was sent and not received: take it.
    for (_, rx) in &w.chans {
        while let Ok(item) = rx.try_recv() {
            w.received(item);
        }
    }
    let w = Arc::into_inner(w).expect("the world is held only here now");
    let World { ledger, chans, .. } = w;
    drop(chans);
    let l = ledger.into_inner().unwrap();
    let mut seen = HashSet::new();
    for id in &l.received {
        assert!(seen.insert(*id), "item {id} received twice (seed {seed})");
        assert!(
            l.sent.contains(id) || l.unsure.contains(id),
            "item {id} received but its send did not report success (seed {seed})"
        );
    }
    for id in &l.sent {
        assert!(seen.contains(id), "item {id} was sent but never received (seed {seed})");
    }
    let bad: Vec<_> = l.drops.iter().enumerate().filter(|(_, &n)| n != 1).take(20).collect();
    assert!(bad.is_empty(), "items not dropped exactly once (id, drops): {bad:?} of {} (seed {seed})", l.drops.len());
    eprintln!("stress across hubs: {} items, {} delivered, each dropped once", l.drops.len(), l.received.len());
}
