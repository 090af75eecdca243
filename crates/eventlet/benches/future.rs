//! Green threads waiting on futures (`eventlet::block_on`, feature `tokio`
//! on, so the hub drives its tokio runtime as it does for real async
//! crates), with what they compare against in the same group:
//!
//! - `block_on_ready`: `block_on` of a future that is ready at once, from
//!   a green thread and from the root (goal: at most 30 ns).
//! - `pending_woken_same_hub`: two green threads in a ping-pong, each
//!   waiting in `block_on` on a future the other wakes (pending, then woken
//!   from the same hub), beside the same ping-pong over two `Queue`s and
//!   over park/unpark. Time per round trip (goal: at most 2x the `Queue`
//!   round trip).
//! - `cross_thread_wake`: a plain OS thread wakes a waiter on another OS
//!   thread through a `tokio::sync::mpsc` channel, and the waiter answers
//!   through a `std::sync::mpsc` channel (the same for every contender). The
//!   waiter is a green thread in `block_on` (`eventlet`), a task of a tokio
//!   current-thread runtime (`tokio_task`) or that runtime's `block_on`
//!   future (`tokio_block_on`). Time per round trip (goal: within 1.2x of
//!   tokio's).
//! - `hop_from_multithreaded_runtime`: a task of a multi-threaded tokio
//!   runtime awaits green work on a hub thread (`hub::Handle::spawn_future`),
//!   one call after the other: the hop to the hub's thread and back that
//!   this mode costs, beside tokio's own hop to its blocking pool
//!   (`spawn_blocking`).
//!
//! ```text
//! taskset -c 1 cargo bench -p eventlet --features tokio --bench future -- --warm-up-time 1 --measurement-time 3
//! ```
//! (`cross_thread_wake` needs both cores: run it with `taskset -c 0,1`.)

use std::cell::Cell;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};

fn block_on_ready(c: &mut Criterion) {
    let mut g = c.benchmark_group("block_on_ready");
    // Start the hub's tokio runtime first, as any real use does.
    eventlet::block_on(async {});
    g.bench_function("eventlet_green", |b| {
        b.iter_custom(|iters| {
            eventlet::spawn(move || {
                let start = Instant::now();
                for i in 0..iters {
                    black_box(eventlet::block_on(std::future::ready(black_box(i))));
                }
                start.elapsed()
            })
            .join()
            .unwrap()
        })
    });
    g.bench_function("eventlet_root", |b| b.iter(|| eventlet::block_on(std::future::ready(black_box(1u64)))));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    g.bench_function("tokio_block_on", |b| b.iter(|| rt.block_on(std::future::ready(black_box(1u64)))));
    g.finish();
}

/// A single-threaded hand-off slot: `wait` is pending until `set`, which
/// wakes whoever waits.
#[derive(Default)]
struct Slot {
    set: Cell<bool>,
    waker: Cell<Option<Waker>>,
}

impl Slot {
    fn set(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

struct Wait<'a>(&'a Slot);

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.replace(false) {
            return Poll::Ready(());
        }
        self.0.waker.set(Some(cx.waker().clone()));
        Poll::Pending
    }
}

fn block_on_pingpong(iters: u64) -> Duration {
    eventlet::spawn(move || {
        let (ping, pong) = (Rc::new(Slot::default()), Rc::new(Slot::default()));
        let (p, q) = (ping.clone(), pong.clone());
        let echo = eventlet::spawn(move || {
            for _ in 0..iters {
                eventlet::block_on(Wait(&p));
                q.set();
            }
        });
        eventlet::yield_now();
        let start = Instant::now();
        for _ in 0..iters {
            ping.set();
            eventlet::block_on(Wait(&pong));
        }
        let t = start.elapsed();
        echo.join().unwrap();
        t
    })
    .join()
    .unwrap()
}

fn queue_pingpong(iters: u64) -> Duration {
    eventlet::spawn(move || {
        let (ping, pong) = (eventlet::Queue::<u64>::new(), eventlet::Queue::<u64>::new());
        let (p, q) = (ping.clone(), pong.clone());
        let echo = eventlet::spawn(move || {
            while let Ok(n) = p.get() {
                q.put(n).unwrap();
            }
        });
        eventlet::yield_now();
        let start = Instant::now();
        for i in 0..iters {
            ping.put(i).unwrap();
            black_box(pong.get().unwrap());
        }
        let t = start.elapsed();
        ping.close();
        echo.join().unwrap();
        t
    })
    .join()
    .unwrap()
}

fn park_pingpong(iters: u64) -> Duration {
    eventlet::spawn(move || {
        let me = eventlet::current();
        let echo = eventlet::spawn(move || {
            for _ in 0..iters {
                eventlet::park();
                me.unpark();
            }
        });
        let other = echo.thread();
        eventlet::yield_now();
        let start = Instant::now();
        for _ in 0..iters {
            other.unpark();
            eventlet::park();
        }
        let t = start.elapsed();
        echo.join().unwrap();
        t
    })
    .join()
    .unwrap()
}

fn pending_woken_same_hub(c: &mut Criterion) {
    eventlet::block_on(async {});
    let mut g = c.benchmark_group("pending_woken_same_hub");
    g.bench_function("eventlet_block_on", |b| b.iter_custom(block_on_pingpong));
    g.bench_function("eventlet_queue", |b| b.iter_custom(queue_pingpong));
    g.bench_function("eventlet_park", |b| b.iter_custom(park_pingpong));
    g.finish();
}

/// The plain OS thread's side: sends `iters` numbers and waits for each to
/// come back.
fn os_side(iters: u64, to: tokio::sync::mpsc::UnboundedSender<u64>, from: std::sync::mpsc::Receiver<u64>) {
    for i in 0..iters {
        to.send(i).unwrap();
        assert_eq!(from.recv().unwrap(), i);
    }
}

type Waiter = fn(u64, tokio::sync::mpsc::UnboundedReceiver<u64>, std::sync::mpsc::Sender<u64>);

fn cross_thread(iters: u64, waiter: Waiter) -> Duration {
    let (to_waiter, from_os) = tokio::sync::mpsc::unbounded_channel();
    let (to_os, from_waiter) = std::sync::mpsc::channel();
    let w = std::thread::spawn(move || waiter(iters, from_os, to_os));
    // Let the waiter thread start and wait.
    std::thread::sleep(Duration::from_millis(5));
    let start = Instant::now();
    os_side(iters, to_waiter, from_waiter);
    let t = start.elapsed();
    w.join().unwrap();
    t
}

fn eventlet_waiter(iters: u64, mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>, tx: std::sync::mpsc::Sender<u64>) {
    eventlet::spawn(move || {
        for _ in 0..iters {
            tx.send(eventlet::block_on(rx.recv()).unwrap()).unwrap();
        }
    })
    .join()
    .unwrap();
}

fn tokio_task_waiter(iters: u64, mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>, tx: std::sync::mpsc::Sender<u64>) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        tokio::spawn(async move {
            for _ in 0..iters {
                tx.send(rx.recv().await.unwrap()).unwrap();
            }
        })
        .await
        .unwrap()
    });
}

fn tokio_block_on_waiter(
    iters: u64,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<u64>,
    tx: std::sync::mpsc::Sender<u64>,
) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        for _ in 0..iters {
            tx.send(rx.recv().await.unwrap()).unwrap();
        }
    });
}

fn cross_thread_wake(c: &mut Criterion) {
    let mut g = c.benchmark_group("cross_thread_wake");
    g.bench_function("eventlet", |b| b.iter_custom(|n| cross_thread(n, eventlet_waiter)));
    g.bench_function("tokio_task", |b| b.iter_custom(|n| cross_thread(n, tokio_task_waiter)));
    g.bench_function("tokio_block_on", |b| b.iter_custom(|n| cross_thread(n, tokio_block_on_waiter)));
    g.finish();
}

/// `n` calls, one after the other, from a task of a multi-threaded tokio
/// runtime to green work on a hub thread (`spawn_future` and `.await`).
fn hop_to_hub(rt: &tokio::runtime::Runtime, hub: &eventlet::hub::Handle, n: u64) -> Duration {
    let hub = hub.clone();
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..n {
                black_box(hub.spawn_future(move || i).unwrap().await.unwrap());
            }
            start.elapsed()
        })
        .await
        .unwrap()
    })
}

/// The same with tokio's own hop to a thread that may block.
fn hop_to_blocking_pool(rt: &tokio::runtime::Runtime, n: u64) -> Duration {
    rt.block_on(async move {
        tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..n {
                black_box(tokio::task::spawn_blocking(move || i).await.unwrap());
            }
            start.elapsed()
        })
        .await
        .unwrap()
    })
}

fn hop(c: &mut Criterion) {
    let mut g = c.benchmark_group("hop_from_multithreaded_runtime");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let hub = eventlet::hub::start("bench-hub").unwrap();
    g.bench_function("eventlet_spawn_future", |b| b.iter_custom(|n| hop_to_hub(&rt, hub.handle(), n)));
    g.bench_function("tokio_spawn_blocking", |b| b.iter_custom(|n| hop_to_blocking_pool(&rt, n)));
    g.finish();
    drop(rt);
    hub.join();
}

criterion_group!(benches, block_on_ready, pending_woken_same_hub, cross_thread_wake, hop);
criterion_main!(benches);
