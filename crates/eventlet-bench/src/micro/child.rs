//! What runs inside a child process `eventlet-bench hold KIND N`: one
//! contender of `spawn` or `switch` for N milliseconds, or N blocked green
//! threads / tasks / threads of `memory`. It prints one number and exits.

use std::cell::Cell;
use std::hint::black_box;
use std::io::Write as _;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::meter::{measure, phases, Meter};
use crate::util;

/// How long a holder may go without one more green thread / task / thread
/// spawned or started before its watchdog ends it: may, refused memory by
/// the kernel, hangs instead of failing.
const STALL: Duration = Duration::from_secs(10);

/// Stack size of the OS threads of `memory` (`std-thread`).
pub(super) const OS_THREAD_STACK: usize = 64 * 1024;

/// Runs the job `kind` (see the module docs of `micro`) and prints its number.
pub(super) fn run(kind: &str, n: usize) -> Result<()> {
    if kind.contains(':') {
        let job = timed_job(kind).with_context(|| format!("unknown timed job {kind:?}"))?;
        let ns = job(Duration::from_millis(n as u64))?;
        println!("{ns:.3}");
        return Ok(());
    }
    match kind {
        "eventlet" => hold_eventlet(n),
        "tokio" => hold_tokio(n),
        "may" => hold_may(n),
        "std-thread" => hold_std(n),
        _ => bail!("unknown runtime {kind:?} (eventlet, tokio, may, std-thread, or SCENARIO:NAME)"),
    }
}

/// Prints this process's RSS and leaves at once, while everything it holds
/// is still alive: tearing down a million parked green threads (or waiting
/// for parked OS threads) is not what we measure, and a runtime dropped
/// first would free its tasks before we look.
fn print_rss_and_exit() -> Result<()> {
    let rss = util::rss(std::process::id())?;
    println!("{rss}");
    std::io::stdout().flush()?;
    // SAFETY: `_exit` has no preconditions; what we printed was flushed.
    unsafe { libc::_exit(0) }
}

/// A timed job: runs for about the given budget (after a warm-up) and
/// returns nanoseconds per operation.
type TimedJob = fn(Duration) -> Result<f64>;

/// The timed job `SCENARIO:NAME`, if there is one.
fn timed_job(kind: &str) -> Option<TimedJob> {
    Some(match kind {
        "spawn:eventlet" => spawn_eventlet,
        "spawn:tokio" => spawn_tokio,
        "spawn:may" => spawn_may,
        "spawn:std-thread" => spawn_std,
        "switch:eventlet" => switch_eventlet_queue,
        "switch:eventlet-park" => switch_eventlet_park,
        "switch:eventlet-channel" => switch_eventlet_channel,
        "switch:tokio" => switch_tokio,
        "switch:may" => switch_may,
        _ => return None,
    })
}

/// A current-thread tokio runtime with its reactor and timers (like
/// eventlet's hub, which always has a `mio::Poll`).
fn tokio_rt() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread().enable_all().build().context("tokio runtime")
}

/// Configures may for this process: one worker, not pinned by may itself
/// (the process is pinned with `taskset`).
fn may_init() {
    may::config().set_workers(1);
    may::config().set_worker_pin(false);
}

/// eventlet: `spawn` + `join` from the root context (plain `main`), the way
/// eventlet code runs.
fn spawn_eventlet(budget: Duration) -> Result<f64> {
    Ok(measure(budget, |k| {
        for _ in 0..k {
            black_box(eventlet::spawn(|| black_box(1u32)).join().unwrap());
        }
    }))
}

/// tokio: `tokio::spawn` + `.await` of the `JoinHandle`, from inside a
/// task (from the `block_on` future every wake-up costs a trip through the
/// driver, which would be unfair to tokio).
fn spawn_tokio(budget: Duration) -> Result<f64> {
    let rt = tokio_rt()?;
    let task = rt.spawn(async move {
        let mut ns = 0.0;
        for phase in phases(budget) {
            let mut m = Meter::new(phase);
            while let Some(k) = m.next_batch() {
                for _ in 0..k {
                    black_box(tokio::spawn(async { black_box(1u32) }).await.unwrap());
                }
            }
            ns = m.ns_per_iter();
        }
        ns
    });
    Ok(rt.block_on(task)?)
}

/// may: `go!` + `join` from inside a coroutine, one worker.
fn spawn_may(budget: Duration) -> Result<f64> {
    may_init();
    let driver = may::go!(move || measure(budget, |k| {
        for _ in 0..k {
            black_box(may::go!(|| black_box(1u32)).join().unwrap());
        }
    }));
    driver.join().map_err(|_| anyhow::anyhow!("may coroutine panicked"))
}

/// std: `thread::spawn` + `join` (default stack size).
fn spawn_std(budget: Duration) -> Result<f64> {
    Ok(measure(budget, |k| {
        for _ in 0..k {
            black_box(std::thread::spawn(|| black_box(1u32)).join().unwrap());
        }
    }))
}

/// eventlet `Queue` (unbounded) ping-pong: one queue each way, both ends
/// green threads.
fn switch_eventlet_queue(budget: Duration) -> Result<f64> {
    eventlet::spawn(move || {
        let (ping, pong) = (eventlet::Queue::<u64>::new(), eventlet::Queue::<u64>::new());
        let (p, q) = (ping.clone(), pong.clone());
        let echo = eventlet::spawn(move || {
            while let Ok(n) = p.get() {
                if q.put(n).is_err() {
                    break;
                }
            }
        });
        let ns = measure(budget, |k| {
            for i in 0..k {
                ping.put(i).unwrap();
                black_box(pong.get().unwrap());
            }
        });
        ping.close();
        echo.join().unwrap();
        ns
    })
    .join()
    .map_err(|_| anyhow::anyhow!("green thread panicked"))
}

/// eventlet `park` / `unpark` ping-pong between two green threads: the
/// floor under every eventlet queue and channel.
fn switch_eventlet_park(budget: Duration) -> Result<f64> {
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
        let ns = measure(budget, |k| {
            for _ in 0..k {
                peer.unpark();
                eventlet::park();
            }
        });
        done.set(true);
        peer.unpark();
        pong.join().unwrap();
        ns
    })
    .join()
    .map_err(|_| anyhow::anyhow!("green thread panicked"))
}

/// `eventlet::channel::unbounded` ping-pong (the cross-hub channel, used
/// here on one hub), both ends green threads.
fn switch_eventlet_channel(budget: Duration) -> Result<f64> {
    eventlet::spawn(move || {
        let (to_peer, peer_rx) = eventlet::channel::unbounded::<u64>();
        let (to_me, me_rx) = eventlet::channel::unbounded::<u64>();
        let echo = eventlet::spawn(move || {
            while let Ok(n) = peer_rx.recv() {
                if to_me.send(n).is_err() {
                    break;
                }
            }
        });
        let ns = measure(budget, |k| {
            for i in 0..k {
                to_peer.send(i).unwrap();
                black_box(me_rx.recv().unwrap());
            }
        });
        drop(to_peer);
        echo.join().unwrap();
        ns
    })
    .join()
    .map_err(|_| anyhow::anyhow!("green thread panicked"))
}

/// tokio `mpsc::unbounded_channel` ping-pong between two tasks of a
/// current-thread runtime.
fn switch_tokio(budget: Duration) -> Result<f64> {
    let rt = tokio_rt()?;
    let ns = rt.block_on(async move {
        let (to_peer, mut peer_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (to_me, mut me_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let echo = tokio::spawn(async move {
            while let Some(n) = peer_rx.recv().await {
                if to_me.send(n).is_err() {
                    break;
                }
            }
        });
        let driver = tokio::spawn(async move {
            let mut ns = 0.0;
            for phase in phases(budget) {
                let mut m = Meter::new(phase);
                while let Some(k) = m.next_batch() {
                    for i in 0..k {
                        to_peer.send(i).unwrap();
                        black_box(me_rx.recv().await.unwrap());
                    }
                }
                ns = m.ns_per_iter();
            }
            ns
        });
        let ns = driver.await;
        let _ = echo.await;
        ns
    })?;
    Ok(ns)
}

/// may `sync::mpsc::channel` ping-pong between two coroutines, one worker.
fn switch_may(budget: Duration) -> Result<f64> {
    may_init();
    let driver = may::go!(move || {
        let (to_peer, peer_rx) = may::sync::mpsc::channel::<u64>();
        let (to_me, me_rx) = may::sync::mpsc::channel::<u64>();
        let echo = may::go!(move || {
            while let Ok(n) = peer_rx.recv() {
                if to_me.send(n).is_err() {
                    break;
                }
            }
        });
        let ns = measure(budget, |k| {
            for i in 0..k {
                to_peer.send(i).unwrap();
                black_box(me_rx.recv().unwrap());
            }
        });
        drop(to_peer);
        let _ = echo.join();
        ns
    });
    driver.join().map_err(|_| anyhow::anyhow!("may coroutine panicked"))
}

/// Green threads / tasks / threads that have started (and parked) so far.
static STARTED: AtomicUsize = AtomicUsize::new(0);
/// Green threads / tasks / threads spawned plus started so far: the
/// watchdog's sign of life.
static PROGRESS: AtomicUsize = AtomicUsize::new(0);

/// Tells whether a count has stopped growing for longer than a limit.
#[derive(Debug)]
struct Stall {
    limit: Duration,
    last: usize,
    since: Instant,
}

impl Stall {
    fn new(limit: Duration, now: Instant) -> Stall {
        Stall { limit, last: 0, since: now }
    }

    /// Looks at `count` at time `now`: true once it has not grown for
    /// longer than the limit.
    fn stuck(&mut self, count: usize, now: Instant) -> bool {
        if count != self.last {
            (self.last, self.since) = (count, now);
        }
        now.duration_since(self.since) > self.limit
    }
}

/// Starts a thread that ends this process (exit code 3, with a message on
/// stderr) once [`PROGRESS`] stops growing for [`STALL`]: may, refused
/// memory by the kernel, panics in its worker and then hangs, and nothing
/// else of ours runs any more.
///
/// The thread allocates nothing once started and writes with `write(2)`
/// (not through `std::io::stderr`, whose lock a panicking thread may hold),
/// so it works in a process that can get no more memory.
fn watchdog(n: usize) -> Result<()> {
    let mut msg = String::with_capacity(256);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut stall = Stall::new(STALL, Instant::now());
            while !stall.stuck(PROGRESS.load(Ordering::Relaxed), Instant::now()) {
                std::thread::sleep(Duration::from_millis(100));
            }
            use std::fmt::Write as _;
            let started = STARTED.load(Ordering::Relaxed);
            let _ = writeln!(msg, "stuck: {started} of {n} had started, none more for {} s", STALL.as_secs());
            // SAFETY: (1) the pointer and length describe `msg`'s bytes,
            // alive for the call; (2) `_exit` has no preconditions.
            unsafe {
                libc::write(2, msg.as_ptr().cast(), msg.len());
                libc::_exit(3);
            }
        })
        .context("starting the watchdog thread")?;
    Ok(())
}

/// Counts one more spawned or started green thread / task / thread.
fn progress() {
    PROGRESS.fetch_add(1, Ordering::Relaxed);
}

/// Counts one more started green thread / task / thread.
fn started() {
    STARTED.fetch_add(1, Ordering::Relaxed);
    progress();
}

/// Calls `pause` until `n` have started (the watchdog ends the process if
/// they never do).
fn wait_started(n: usize, mut pause: impl FnMut()) {
    while STARTED.load(Ordering::Relaxed) < n {
        pause();
    }
}

/// eventlet: `n` green threads (default stack size) parked for good.
fn hold_eventlet(n: usize) -> Result<()> {
    watchdog(n)?;
    for i in 0..n {
        eventlet::Builder::new()
            .spawn_n(|| {
                started();
                loop {
                    eventlet::park();
                }
            })
            .with_context(|| format!("spawning green thread {} of {n}", i + 1))?;
        progress();
    }
    // The run queue is FIFO: one yield of the root runs every new green
    // thread up to its park; loop in case the hub runs them in batches.
    wait_started(n, eventlet::yield_now);
    print_rss_and_exit()
}

/// tokio: `n` tasks each awaiting one shared `Notify` (nothing else
/// allocated per task), on a current-thread runtime.
fn hold_tokio(n: usize) -> Result<()> {
    watchdog(n)?;
    let rt = tokio_rt()?;
    rt.block_on(async move {
        let gate = Arc::new(tokio::sync::Notify::new());
        for _ in 0..n {
            let g = gate.clone();
            tokio::spawn(async move {
                started();
                g.notified().await;
            });
            progress();
        }
        while STARTED.load(Ordering::Relaxed) < n {
            tokio::task::yield_now().await;
        }
        // Inside `block_on`: the runtime and its tasks are alive.
        print_rss_and_exit()
    })
}

/// may: `n` coroutines (default stack size) parked for good, one worker.
fn hold_may(n: usize) -> Result<()> {
    watchdog(n)?;
    may_init();
    for _ in 0..n {
        may::go!(|| {
            started();
            loop {
                may::coroutine::park();
            }
        });
        progress();
    }
    wait_started(n, || std::thread::sleep(Duration::from_millis(1)));
    print_rss_and_exit()
}

/// OS threads with [`OS_THREAD_STACK`]-byte stacks, parked for good.
fn hold_std(n: usize) -> Result<()> {
    static NEVER: AtomicBool = AtomicBool::new(false);
    watchdog(n)?;
    for i in 0..n {
        std::thread::Builder::new()
            .stack_size(OS_THREAD_STACK)
            .spawn(|| {
                started();
                while !NEVER.load(Ordering::Relaxed) {
                    std::thread::park();
                }
            })
            .with_context(|| format!("spawning OS thread {} of {n}", i + 1))?;
        progress();
    }
    wait_started(n, || std::thread::sleep(Duration::from_millis(1)));
    print_rss_and_exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stall_fires_only_after_the_count_stops_growing() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut stall = Stall::new(10 * s, t0);
        assert!(!stall.stuck(0, t0 + 5 * s));
        assert!(!stall.stuck(1, t0 + 9 * s));
        assert!(!stall.stuck(2, t0 + 18 * s), "it grew, so the clock starts again");
        assert!(!stall.stuck(2, t0 + 28 * s));
        assert!(stall.stuck(2, t0 + 29 * s));
    }

    #[test]
    fn timed_jobs_measure_something() {
        for scenario in ["spawn", "switch"] {
            for name in ["eventlet", "eventlet-park", "eventlet-channel", "tokio", "may", "std-thread"] {
                let kind = format!("{scenario}:{name}");
                if let Some(job) = timed_job(&kind) {
                    let ns = job(Duration::from_millis(2)).unwrap();
                    assert!(ns > 0.0 && ns.is_finite(), "{kind}: {ns}");
                }
            }
        }
        assert!(timed_job("spawn:eventlet").is_some() && timed_job("switch:may").is_some());
    }

    #[test]
    fn unknown_jobs_are_refused() {
        assert!(run("nope", 1).is_err());
        assert!(run("spawn:nope", 1).is_err());
    }
}
