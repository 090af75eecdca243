//! Wake-ups of a hub that drives its tokio runtime (feature `tokio`), raced
//! against the hub going idle in tokio, its root leaving tokio's
//! `block_on` and coming back, and its thread exiting: from other OS
//! threads (an `Unparker`, a `block_on` waker, `Handle::spawn`) and from
//! its own `epoll` (green I/O whose readiness came while no green thread
//! waited for I/O). Nothing else wakes the hub in these tests (no timer,
//! no tokio task), so a lost wake-up hangs, and the watchdog fails the
//! test.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

mod util;
use util::{on_fresh_thread, Rng};

/// How an OS thread makes a green thread go on.
#[derive(Clone, Copy)]
enum Via {
    Unparker,
    BlockOnWaker,
    Spawn,
}

const ROUNDS: u64 = 3000;

#[test]
fn wakes_from_other_threads_race_the_hub_going_idle_in_tokio() {
    // The seed picks the delays (`EVENTLET_STRESS_SEED` replays one); the
    // length is fixed.
    let (seed, _) = util::stress_plan("wakes_from_other_threads_race_the_hub_going_idle_in_tokio");
    on_fresh_thread(move || {
        // The loop runs inside the runtime from here on.
        eventlet::block_on(async {});
        let handle = eventlet::hub::handle();
        let mut pingers = Vec::new();
        let mut greens = Vec::new();
        for (i, via) in [Via::Unparker, Via::BlockOnWaker, Via::Spawn, Via::Unparker].into_iter().enumerate() {
            let flag = Arc::new(AtomicU64::new(0));
            let (ack_tx, ack_rx) = mpsc::channel::<u64>();
            let (fut_tx, fut_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
            let (green_tx, green_rx) = eventlet::channel::unbounded::<u64>();
            let f = flag.clone();
            let green = eventlet::spawn(move || {
                let mut fut_rx = fut_rx;
                for r in 1..=ROUNDS {
                    match via {
                        Via::Unparker => {
                            while f.load(Ordering::SeqCst) < r {
                                eventlet::park();
                            }
                        }
                        Via::BlockOnWaker => assert_eq!(eventlet::block_on(fut_rx.recv()), Some(r)),
                        Via::Spawn => assert_eq!(green_rx.recv().unwrap(), r),
                    }
                    ack_tx.send(r).unwrap();
                }
            });
            let unparker = green.thread().unparker();
            let handle = handle.clone();
            let mut rng = Rng(seed.wrapping_add(i as u64 * 7919) | 1);
            pingers.push(std::thread::spawn(move || {
                for r in 1..=ROUNDS {
                    // Sometimes at once (the hub is likely still awake),
                    // sometimes once it has likely gone idle.
                    match rng.below(4) {
                        0 => {}
                        1 => std::thread::yield_now(),
                        2 => std::thread::sleep(Duration::from_micros(rng.below(200))),
                        _ => {
                            let until = Instant::now() + Duration::from_micros(rng.below(50));
                            while Instant::now() < until {}
                        }
                    }
                    match via {
                        Via::Unparker => {
                            flag.store(r, Ordering::SeqCst);
                            unparker.unpark();
                        }
                        Via::BlockOnWaker => fut_tx.send(r).unwrap(),
                        Via::Spawn => {
                            let tx = green_tx.clone();
                            drop(handle.spawn(move || tx.send(r).unwrap()).unwrap());
                        }
                    }
                    match ack_rx.recv_timeout(Duration::from_secs(10)) {
                        Ok(a) => assert_eq!(a, r),
                        Err(e) => panic!("round {r}: no answer from the green thread ({e}): a lost wake-up"),
                    }
                }
            }));
            greens.push(green);
        }
        // The root leaves tokio's `block_on` and comes back, at times
        // another OS thread picks: nothing else wakes the hub (no timer, no
        // tokio task), so a lost wake-up hangs.
        let (poke_tx, mut poke_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let root = eventlet::current().unparker();
        let root_flag = Arc::new(AtomicU64::new(0));
        let rf = root_flag.clone();
        let greens_done = Arc::new(AtomicBool::new(false));
        let gd = greens_done.clone();
        let mut rng = Rng(seed | 1);
        let poker = std::thread::spawn(move || {
            let mut n = 0;
            while !gd.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_micros(rng.below(300)));
                n += 1;
                if n % 2 == 0 {
                    poke_tx.send(()).unwrap();
                } else {
                    rf.store(n, Ordering::SeqCst);
                    root.unpark();
                }
            }
            // The last one, after the root saw the green threads done.
            poke_tx.send(()).unwrap();
        });
        let mut seen = 0;
        let mut pokes = 0u64;
        loop {
            if greens.iter().all(|g| g.is_finished()) {
                greens_done.store(true, Ordering::SeqCst);
                break;
            }
            if pokes % 2 == 0 {
                eventlet::block_on(poke_rx.recv()).unwrap();
            } else {
                while root_flag.load(Ordering::SeqCst) == seen {
                    eventlet::park();
                }
                seen = root_flag.load(Ordering::SeqCst);
            }
            pokes += 1;
        }
        for g in greens {
            g.join().unwrap();
        }
        for p in pingers {
            p.join().unwrap();
        }
        poker.join().unwrap();
        drop(poke_rx);
    });
}

/// Hub threads that drive tokio end while other threads keep waking a
/// waker of theirs (kept after the `block_on` that took it): nothing hangs
/// or crashes, and the wakes before the end arrive.
#[test]
fn wakes_race_a_hub_thread_that_drives_tokio_ending() {
    on_fresh_thread(|| {
        for round in 0..300u64 {
            let hub = eventlet::hub::start("racing").unwrap();
            let slot: Arc<std::sync::Mutex<Option<std::task::Waker>>> = Arc::default();
            let wakes = Arc::new(AtomicU64::new(0));
            let stop = Arc::new(AtomicBool::new(false));
            let wakers: Vec<_> = (0..2)
                .map(|_| {
                    let (slot, wakes, stop) = (slot.clone(), wakes.clone(), stop.clone());
                    std::thread::spawn(move || {
                        let mut n = 0u64;
                        while !stop.load(Ordering::SeqCst) {
                            let w = slot.lock().unwrap().clone();
                            if let Some(w) = w {
                                wakes.fetch_add(1, Ordering::SeqCst);
                                w.wake();
                            }
                            // A few microseconds apart: the hub thread ends
                            // only in a gap between wake-ups (each one is a
                            // message it must look at first).
                            n += 1;
                            let until = Instant::now() + Duration::from_micros(2 + n % 19);
                            while Instant::now() < until {
                                std::hint::spin_loop();
                            }
                        }
                    })
                })
                .collect();
            let need = 3 + round % 5;
            let (s, w) = (slot.clone(), wakes.clone());
            let green = hub
                .handle()
                .spawn(move || {
                    // Ready once the other threads have woken it `need` times
                    // since it began.
                    eventlet::block_on(std::future::poll_fn(|cx| {
                        *s.lock().unwrap() = Some(cx.waker().clone());
                        if w.load(Ordering::SeqCst) >= need {
                            std::task::Poll::Ready(())
                        } else {
                            std::task::Poll::Pending
                        }
                    }));
                })
                .unwrap();
            green.join_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("round {round}: hung")).unwrap();
            // The hub thread ends while the wakes go on.
            hub.join();
            std::thread::sleep(Duration::from_micros(round % 30));
            stop.store(true, Ordering::SeqCst);
            for t in wakers {
                t.join().unwrap();
            }
        }
    });
}

/// Green I/O whose readiness comes while no green thread waits for I/O
/// (the loop then does not ask tokio about the hub's `epoll`): a read that
/// parks on the drained socket afterwards still sees it.
/// A plain thread that writes one byte to `b` each time it is told to
/// (`go`), then says so through a tokio channel (for a green thread to
/// wait on in `block_on`, not for I/O). Ends when either side is dropped.
fn byte_writer(
    mut b: impl std::io::Write + Send + 'static,
) -> (mpsc::Sender<()>, tokio::sync::mpsc::UnboundedReceiver<()>, std::thread::JoinHandle<()>) {
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (wrote_tx, wrote_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let writer = std::thread::spawn(move || {
        while go_rx.recv().is_ok() {
            b.write_all(&[7]).unwrap();
            if wrote_tx.send(()).is_err() {
                break;
            }
        }
    });
    (go_tx, wrote_rx, writer)
}

#[test]
fn readiness_that_came_while_nobody_waited_for_io_is_seen() {
    use std::io::Read;
    on_fresh_thread(|| {
        eventlet::block_on(async {});
        let (mut a, b) = eventlet::net::unix::UnixStream::pair().unwrap();
        let (go_tx, mut wrote_rx, writer) = byte_writer(b);
        let reader = eventlet::spawn(move || {
            let mut buf = [0u8; 64];
            // The first read waits (the socket joins the hub's `epoll`).
            go_tx.send(()).unwrap();
            assert_eq!(a.read(&mut buf).unwrap(), 1);
            for _ in 0..500 {
                // The last read was short: the socket counts as drained, and
                // the next read parks before it tries. The byte is written
                // while this green thread waits in `block_on`, not for I/O.
                go_tx.send(()).unwrap();
                eventlet::block_on(wrote_rx.recv()).unwrap();
                assert_eq!(a.read(&mut buf).unwrap(), 1);
            }
        });
        reader.join().unwrap();
        writer.join().unwrap();
    });
}

/// The same for the patcher's kind of wait ([`trampoline`]): each wait
/// registers the descriptor afresh, already readable (its byte was written
/// while the green thread waited in `block_on`, not for I/O).
///
/// [`trampoline`]: eventlet::hub::trampoline
#[test]
fn a_trampoline_wait_on_a_descriptor_ready_before_it_returns() {
    use std::io::Read;
    use std::os::unix::net::UnixStream;
    on_fresh_thread(|| {
        eventlet::block_on(async {});
        let (mut a, b) = UnixStream::pair().unwrap();
        a.set_nonblocking(true).unwrap();
        let (go_tx, mut wrote_rx, writer) = byte_writer(b);
        let reader = eventlet::spawn(move || {
            let mut buf = [0u8; 64];
            for _ in 0..300 {
                go_tx.send(()).unwrap();
                eventlet::block_on(wrote_rx.recv()).unwrap();
                eventlet::hub::trampoline(&a, eventlet::hub::Interest::READ, None).unwrap();
                assert_eq!(a.read(&mut buf).unwrap(), 1);
            }
        });
        reader.join().unwrap();
        writer.join().unwrap();
    });
}

/// What makes a green thread ready from a tokio task of the hub's runtime
/// without a waker (a local `unpark`, a spawn, a spawn with a delay) while
/// the loop waits in tokio must wake the loop, even while tokio always has
/// work and so never parks (here the task itself, yielding until the green
/// thread has run: its deferred waker keeps tokio from parking, and with
/// it from running its before-park hook).
#[test]
fn green_threads_made_ready_by_a_tokio_task_that_keeps_yielding_run() {
    on_fresh_thread(|| {
        eventlet::block_on(async {});
        for case in ["unpark", "spawn", "spawn_after"] {
            let ran = Arc::new(AtomicBool::new(false));
            let go = Arc::new(AtomicBool::new(false));
            let waiter = {
                let (ran, go) = (ran.clone(), go.clone());
                eventlet::spawn(move || {
                    if case == "unpark" {
                        while !go.load(Ordering::SeqCst) {
                            eventlet::park();
                        }
                        ran.store(true, Ordering::SeqCst);
                    }
                })
            };
            let unparker = waiter.thread().unparker();
            let r = ran.clone();
            let task = tokio::spawn(async move {
                match case {
                    "unpark" => {
                        go.store(true, Ordering::SeqCst);
                        unparker.unpark();
                    }
                    "spawn" => drop(eventlet::spawn(move || r.store(true, Ordering::SeqCst))),
                    _ => drop(eventlet::spawn_after(Duration::from_millis(1), move || r.store(true, Ordering::SeqCst))),
                }
                let deadline = Instant::now() + Duration::from_secs(10);
                while !ran.load(Ordering::SeqCst) && Instant::now() < deadline {
                    tokio::task::yield_now().await;
                }
                ran.load(Ordering::SeqCst)
            });
            assert!(
                eventlet::block_on(task).unwrap(),
                "{case}: the green thread made ready by a yielding tokio task never ran"
            );
            waiter.join().unwrap();
        }
    });
}
