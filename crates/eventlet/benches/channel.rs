//! Throughput of a channel between two OS threads: eventlet's
//! cross-hub channel (a green sender on one thread's hub, a green receiver
//! on the other's) against `crossbeam-channel` between two plain threads.
//! Each iteration starts the two threads and moves [`MESSAGES`] `u64`s;
//! criterion reports messages per second, so the ratio comes from one run.
//!
//! - `unbounded`: `channel::unbounded` vs `crossbeam_channel::unbounded`.
//! - `bounded1024`: capacity 1024 on both sides.
//! - `bounded1`: capacity 1 (almost every message waits for the other
//!   side); [`MESSAGES`] / 10 messages per iteration.
//! - `eventlet_plain_threads`: eventlet's channel used by two threads with
//!   no green thread (their roots park), for reference.
//!
//! ```text
//! cargo bench -p eventlet --bench channel -- --warm-up-time 1 --measurement-time 5
//! ```

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use eventlet::channel;

/// Messages per iteration.
const MESSAGES: u64 = 200_000;

/// Green sender on one OS thread's hub, green receiver on another's.
fn eventlet_green(n: u64, cap: Option<usize>) -> u64 {
    let (tx, rx) = match cap {
        Some(c) => channel::bounded(c),
        None => channel::unbounded(),
    };
    let sender = std::thread::spawn(move || {
        eventlet::spawn(move || {
            for i in 0..n {
                tx.send(i).unwrap();
            }
        })
        .join()
        .unwrap()
    });
    let receiver = std::thread::spawn(move || eventlet::spawn(move || rx.iter().sum::<u64>()).join().unwrap());
    sender.join().unwrap();
    receiver.join().unwrap()
}

/// The same channel between two threads that run no green thread.
fn eventlet_plain(n: u64, cap: Option<usize>) -> u64 {
    let (tx, rx) = match cap {
        Some(c) => channel::bounded(c),
        None => channel::unbounded(),
    };
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    });
    let receiver = std::thread::spawn(move || rx.iter().sum::<u64>());
    sender.join().unwrap();
    receiver.join().unwrap()
}

fn crossbeam(n: u64, cap: Option<usize>) -> u64 {
    let (tx, rx) = match cap {
        Some(c) => crossbeam_channel::bounded(c),
        None => crossbeam_channel::unbounded(),
    };
    let sender = std::thread::spawn(move || {
        for i in 0..n {
            tx.send(i).unwrap();
        }
    });
    let receiver = std::thread::spawn(move || rx.iter().sum::<u64>());
    sender.join().unwrap();
    receiver.join().unwrap()
}

fn cross_thread(c: &mut Criterion) {
    for (name, cap, n) in
        [("unbounded", None, MESSAGES), ("bounded1024", Some(1024), MESSAGES), ("bounded1", Some(1), MESSAGES / 10)]
    {
        let expect = n * (n - 1) / 2;
        let mut g = c.benchmark_group(format!("cross_thread/{name}"));
        g.throughput(Throughput::Elements(n));
        g.sample_size(10);
        g.bench_function("eventlet_green", |b| b.iter(|| assert_eq!(eventlet_green(n, cap), expect)));
        g.bench_function("crossbeam", |b| b.iter(|| assert_eq!(crossbeam(n, cap), expect)));
        g.bench_function("eventlet_plain_threads", |b| b.iter(|| assert_eq!(eventlet_plain(n, cap), expect)));
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = cross_thread
}
criterion_main!(benches);
