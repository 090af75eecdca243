//! Queue ping-pong: a round trip between two green threads over two
//! [`eventlet::Queue`]s (one each way), beside the same over two tokio
//! `mpsc` channels between two tasks of a current-thread runtime. Time per
//! round trip (one put and one get each way).
//!
//! ```text
//! taskset -c 1 cargo bench -p eventlet --bench queue -- --warm-up-time 1 --measurement-time 3
//! ```

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use eventlet::Queue;

fn eventlet_pingpong(iters: u64) -> Duration {
    let (ping, pong) = (Queue::<u64>::new(), Queue::<u64>::new());
    let (p, q) = (ping.clone(), pong.clone());
    let echo = eventlet::spawn(move || {
        while let Ok(n) = p.get() {
            q.put(n).unwrap();
        }
    });
    // Start the echoer so that it waits in `get`.
    eventlet::yield_now();
    let start = Instant::now();
    for i in 0..iters {
        ping.put(i).unwrap();
        let n = pong.get().unwrap();
        debug_assert_eq!(n, i);
    }
    let t = start.elapsed();
    ping.close();
    echo.join().unwrap();
    t
}

fn eventlet_pingpong_green(iters: u64) -> Duration {
    // Both ends green (the root only joins): no switch through the root.
    eventlet::spawn(move || eventlet_pingpong(iters)).join().unwrap()
}

fn tokio_pingpong(rt: &tokio::runtime::Runtime, iters: u64) -> Duration {
    rt.block_on(async move {
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let echo = tokio::spawn(async move {
            while let Some(n) = ping_rx.recv().await {
                pong_tx.send(n).unwrap();
            }
        });
        let driver = tokio::spawn(async move {
            let start = Instant::now();
            for i in 0..iters {
                ping_tx.send(i).unwrap();
                let n = pong_rx.recv().await.unwrap();
                debug_assert_eq!(n, i);
            }
            start.elapsed()
        });
        let t = driver.await.unwrap();
        echo.await.unwrap();
        t
    })
}

fn pingpong(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_pingpong");
    g.bench_function("eventlet_queue_root_green", |b| b.iter_custom(eventlet_pingpong));
    g.bench_function("eventlet_queue_green_green", |b| b.iter_custom(eventlet_pingpong_green));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    g.bench_function("tokio_mpsc_unbounded", |b| b.iter_custom(|iters| tokio_pingpong(&rt, iters)));
    g.finish();
}

criterion_group!(benches, pingpong);
criterion_main!(benches);
