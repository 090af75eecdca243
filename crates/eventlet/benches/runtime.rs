//! Micro-benchmarks of the green-thread runtime, with its peers side by side
//! in each group so that ratios come from one run:
//!
//! - `spawn_join`: spawn, run and join an empty green thread, one at a time
//!   (`single`) and 100 spawned then 100 joined (`batch100`, time per
//!   thread). `eventlet_spawn_n/batch100` spawns without a handle and lets
//!   the root yield once per batch. Peers: a tokio current-thread runtime
//!   (`tokio::spawn` + await of the `JoinHandle`, from the `block_on` future
//!   and, as `single_in_task`, from inside a spawned task), `may` coroutines
//!   (`go!` + `join` from inside a coroutine, one worker) and
//!   `std::thread`.
//! - `pingpong`: a round trip between two green threads, each waking the
//!   other and going to sleep. eventlet uses `current()`/`unpark()`/`park()`;
//!   tokio `Notify` (its permit works like an unpark token) and an `mpsc`
//!   pair; may `park`/`unpark` and an `mpsc` pair; std threads
//!   `park`/`unpark`. Time per round trip.
//! - `yield`: two green threads calling `yield_now` in turn. Time per switch.
//!
//! Run pinned to one core:
//!
//! ```text
//! taskset -c 1 cargo bench -p eventlet --bench runtime -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! The tokio runtime is built with `enable_all` (an epoll reactor and timers),
//! like eventlet's hub, which always has a `mio::Poll`. may runs with one
//! worker thread and its default 32 KiB stacks (eventlet: 256 KiB, lazily
//! committed).

use std::cell::Cell;
use std::hint::black_box;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

/// Threads spawned before any is joined in the `batch100` benchmarks.
const BATCH: u64 = 100;

fn tokio_rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Configures may once: one worker, so everything runs on one OS thread as
/// it does with eventlet and a tokio current-thread runtime.
fn may_init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        may::config().set_workers(1);
    });
}

/// Runs `f` inside a may coroutine and returns what it returns.
fn in_may<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    may_init();
    may::go!(f).join().expect("may coroutine panicked")
}

/// Splits `iters` into batches of at most [`BATCH`] and calls `f` with each
/// batch size.
fn batches(iters: u64, mut f: impl FnMut(u64)) {
    let mut left = iters;
    while left > 0 {
        let k = left.min(BATCH);
        f(k);
        left -= k;
    }
}

fn spawn_join(c: &mut Criterion) {
    let mut g = c.benchmark_group("spawn_join");

    g.bench_function("eventlet/single", |b| {
        b.iter(|| eventlet::spawn(|| black_box(1u32)).join().unwrap());
    });
    g.bench_function("eventlet/batch100", |b| {
        let mut hs = Vec::with_capacity(BATCH as usize);
        b.iter_custom(|iters| {
            let start = Instant::now();
            batches(iters, |k| {
                for _ in 0..k {
                    hs.push(eventlet::spawn(|| black_box(1u32)));
                }
                for h in hs.drain(..) {
                    black_box(h.join().unwrap());
                }
            });
            start.elapsed()
        });
    });
    g.bench_function("eventlet_spawn_n/batch100", |b| {
        // No handle: the root yields once and every spawned green thread has
        // run to its end before the root goes on (the run queue is FIFO).
        let done = Rc::new(Cell::new(0u64));
        b.iter_custom(|iters| {
            done.set(0);
            let start = Instant::now();
            batches(iters, |k| {
                for _ in 0..k {
                    let d = done.clone();
                    eventlet::spawn_n(move || d.set(d.get() + 1));
                }
                eventlet::yield_now();
            });
            let t = start.elapsed();
            assert_eq!(done.get(), iters);
            t
        });
    });

    let rt = tokio_rt();
    g.bench_function("tokio/single", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(tokio::spawn(async { black_box(1u32) }).await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("tokio/single_in_task", |b| {
        // The same from inside a spawned task: a woken task goes to the run
        // queue, while a woken `block_on` future costs a trip through the
        // driver (an epoll_wait) each time.
        b.iter_custom(|iters| {
            rt.block_on(rt.spawn(async move {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(tokio::spawn(async { black_box(1u32) }).await.unwrap());
                }
                start.elapsed()
            }))
            .unwrap()
        });
    });
    g.bench_function("tokio/batch100", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut hs = Vec::with_capacity(BATCH as usize);
                let start = Instant::now();
                let mut left = iters;
                while left > 0 {
                    let k = left.min(BATCH);
                    for _ in 0..k {
                        hs.push(tokio::spawn(async { black_box(1u32) }));
                    }
                    for h in hs.drain(..) {
                        black_box(h.await.unwrap());
                    }
                    left -= k;
                }
                start.elapsed()
            })
        });
    });

    g.bench_function("may/single", |b| {
        b.iter_custom(|iters| {
            in_may(move || {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(may::go!(|| black_box(1u32)).join().unwrap());
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("may/batch100", |b| {
        b.iter_custom(|iters| {
            in_may(move || {
                let mut hs = Vec::with_capacity(BATCH as usize);
                let start = Instant::now();
                batches(iters, |k| {
                    for _ in 0..k {
                        hs.push(may::go!(|| black_box(1u32)));
                    }
                    for h in hs.drain(..) {
                        black_box(h.join().unwrap());
                    }
                });
                start.elapsed()
            })
        });
    });

    g.bench_function("std_thread/single", |b| {
        b.iter(|| std::thread::spawn(|| black_box(1u32)).join().unwrap());
    });
    g.bench_function("std_thread/batch100", |b| {
        let mut hs = Vec::with_capacity(BATCH as usize);
        b.iter_custom(|iters| {
            let start = Instant::now();
            batches(iters, |k| {
                for _ in 0..k {
                    hs.push(std::thread::spawn(|| black_box(1u32)));
                }
                for h in hs.drain(..) {
                    black_box(h.join().unwrap());
                }
            });
            start.elapsed()
        });
    });
    g.finish();
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("pingpong");

    g.bench_function("eventlet/park_unpark", |b| {
        b.iter_custom(|iters| {
            eventlet::spawn(move || {
                let me = eventlet::current();
                let done = Rc::new(Cell::new(false));
                let d = done.clone();
                let pong = eventlet::spawn(move || loop {
                    eventlet::park();
                    if d.get() {
                        break;
                    }
                    me.unpark();
                });
                let peer = pong.thread();
                let start = Instant::now();
                for _ in 0..iters {
                    peer.unpark();
                    eventlet::park();
                }
                let t = start.elapsed();
                done.set(true);
                peer.unpark();
                pong.join().unwrap();
                t
            })
            .join()
            .unwrap()
        });
    });

    let rt = tokio_rt();
    g.bench_function("tokio/notify", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let ping = Arc::new(tokio::sync::Notify::new());
                let pong = Arc::new(tokio::sync::Notify::new());
                let done = Arc::new(AtomicBool::new(false));
                let (pi, po, d) = (ping.clone(), pong.clone(), done.clone());
                let peer = tokio::spawn(async move {
                    loop {
                        po.notified().await;
                        if d.load(Ordering::Relaxed) {
                            break;
                        }
                        pi.notify_one();
                    }
                });
                tokio::spawn(async move {
                    let start = Instant::now();
                    for _ in 0..iters {
                        pong.notify_one();
                        ping.notified().await;
                    }
                    let t = start.elapsed();
                    done.store(true, Ordering::Relaxed);
                    pong.notify_one();
                    peer.await.unwrap();
                    t
                })
                .await
                .unwrap()
            })
        });
    });
    g.bench_function("tokio/mpsc", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let (to_peer, mut peer_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let (to_me, mut me_rx) = tokio::sync::mpsc::channel::<u64>(1);
                let peer = tokio::spawn(async move {
                    while let Some(v) = peer_rx.recv().await {
                        if to_me.send(v).await.is_err() {
                            break;
                        }
                    }
                });
                tokio::spawn(async move {
                    let start = Instant::now();
                    for i in 0..iters {
                        to_peer.send(i).await.unwrap();
                        black_box(me_rx.recv().await.unwrap());
                    }
                    let t = start.elapsed();
                    drop(to_peer);
                    peer.await.unwrap();
                    t
                })
                .await
                .unwrap()
            })
        });
    });

    g.bench_function("may/park_unpark", |b| {
        b.iter_custom(|iters| {
            in_may(move || {
                let me = may::coroutine::current();
                let done = Arc::new(AtomicBool::new(false));
                let d = done.clone();
                let pong = may::go!(move || loop {
                    may::coroutine::park();
                    if d.load(Ordering::Relaxed) {
                        break;
                    }
                    me.unpark();
                });
                let peer = pong.coroutine().clone();
                let start = Instant::now();
                for _ in 0..iters {
                    peer.unpark();
                    may::coroutine::park();
                }
                let t = start.elapsed();
                done.store(true, Ordering::Relaxed);
                peer.unpark();
                pong.join().unwrap();
                t
            })
        });
    });
    g.bench_function("may/mpsc", |b| {
        b.iter_custom(|iters| {
            in_may(move || {
                let (to_peer, peer_rx) = may::sync::mpsc::channel::<u64>();
                let (to_me, me_rx) = may::sync::mpsc::channel::<u64>();
                let peer = may::go!(move || {
                    while let Ok(v) = peer_rx.recv() {
                        if to_me.send(v).is_err() {
                            break;
                        }
                    }
                });
                let start = Instant::now();
                for i in 0..iters {
                    to_peer.send(i).unwrap();
                    black_box(me_rx.recv().unwrap());
                }
                let t = start.elapsed();
                drop(to_peer);
                peer.join().unwrap();
                t
            })
        });
    });

    g.bench_function("std_thread/park_unpark", |b| {
        b.iter_custom(|iters| {
            let me = std::thread::current();
            let done = Arc::new(AtomicBool::new(false));
            let d = done.clone();
            let pong = std::thread::spawn(move || loop {
                std::thread::park();
                if d.load(Ordering::Relaxed) {
                    break;
                }
                me.unpark();
            });
            let peer = pong.thread().clone();
            let start = Instant::now();
            for _ in 0..iters {
                peer.unpark();
                std::thread::park();
            }
            let t = start.elapsed();
            done.store(true, Ordering::Relaxed);
            peer.unpark();
            pong.join().unwrap();
            t
        });
    });
    g.finish();
}

fn yield_switch(c: &mut Criterion) {
    let mut g = c.benchmark_group("yield");

    // `iters` switches: each of the two green threads yields `iters / 2` times.
    g.bench_function("eventlet", |b| {
        b.iter_custom(|iters| {
            let half = iters.div_ceil(2);
            let start = Instant::now();
            let a = eventlet::spawn(move || (0..half).for_each(|_| eventlet::yield_now()));
            let b = eventlet::spawn(move || (0..half).for_each(|_| eventlet::yield_now()));
            a.join().unwrap();
            b.join().unwrap();
            start.elapsed()
        });
    });

    let rt = tokio_rt();
    g.bench_function("tokio", |b| {
        b.iter_custom(|iters| {
            let half = iters.div_ceil(2);
            rt.block_on(async move {
                let start = Instant::now();
                let a = tokio::spawn(async move {
                    for _ in 0..half {
                        tokio::task::yield_now().await;
                    }
                });
                let b = tokio::spawn(async move {
                    for _ in 0..half {
                        tokio::task::yield_now().await;
                    }
                });
                a.await.unwrap();
                b.await.unwrap();
                start.elapsed()
            })
        });
    });

    g.bench_function("may", |b| {
        b.iter_custom(|iters| {
            let half = iters.div_ceil(2);
            in_may(move || {
                let start = Instant::now();
                let a = may::go!(move || (0..half).for_each(|_| may::coroutine::yield_now()));
                let b = may::go!(move || (0..half).for_each(|_| may::coroutine::yield_now()));
                a.join().unwrap();
                b.join().unwrap();
                start.elapsed()
            })
        });
    });
    g.finish();
}

fn config() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = spawn_join, pingpong, yield_switch
}
criterion_main!(benches);
