//! `std::thread::sleep` and libc's sleeps on green threads, and where the
//! patch leaves the original: plain OS threads, `tpool` workers, and every
//! thread with the patch off.

mod util;

use std::time::{Duration, Instant};

use util::{patch, run_unpatched};

/// The system call the OS thread `tid` of this process is blocked in (its
/// number, from `/proc`), once it is seen there twice in a row, a
/// millisecond apart: a thread preempted in a passing call (a futex wake,
/// on a loaded machine) is not taken for one that waits.
fn blocked_in(tid: i32) -> i64 {
    let path = format!("/proc/self/task/{tid}/syscall");
    let until = Instant::now() + Duration::from_secs(5);
    let mut last = None;
    loop {
        let s = std::fs::read_to_string(&path).unwrap();
        let nr = s.split_whitespace().next().unwrap();
        let now = (nr != "running").then(|| nr.parse::<i64>().unwrap());
        if let Some(nr) = now.filter(|_| now == last) {
            return nr;
        }
        last = now;
        assert!(Instant::now() < until, "thread {tid} never blocked (last seen: {s:?})");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The kernel's sleeps (std sleeps with either).
const SLEEPS: [i64; 2] = [libc::SYS_nanosleep, libc::SYS_clock_nanosleep];
/// The poller's waits (libc's `epoll_wait` may use any).
const POLLS: [i64; 3] = [libc::SYS_epoll_wait, libc::SYS_epoll_pwait, libc::SYS_epoll_pwait2];

fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

#[test]
fn ten_thousand_green_threads_sleep_a_second_at_once() {
    assert!(patch());
    let start = Instant::now();
    let pool = eventlet::GreenPool::new(10_000);
    for _ in 0..10_000 {
        pool.spawn_n(|| std::thread::sleep(Duration::from_secs(1)));
    }
    pool.waitall();
    let took = start.elapsed();
    eprintln!("10,000 x std::thread::sleep(1 s) in {took:?}");
    // One after another they would take hours; the bound leaves room for
    // spawning 10,000 on a loaded machine.
    assert!(took >= Duration::from_secs(1) && took < Duration::from_secs(10), "{took:?}");
}

/// With the patch off, each sleep blocks the whole OS thread.
#[test]
#[ignore = "run with the patch off by patch_off_sleeps_one_after_another"]
fn unpatched_sleeps() {
    assert!(!patch());
    let start = Instant::now();
    let hs: Vec<_> = (0..5).map(|_| eventlet::spawn(|| std::thread::sleep(Duration::from_millis(100)))).collect();
    hs.into_iter().for_each(|h| h.join().unwrap());
    assert!(start.elapsed() >= Duration::from_millis(500), "serial: {:?}", start.elapsed());
}

#[test]
fn patch_off_sleeps_one_after_another() {
    run_unpatched("unpatched_sleeps");
}

#[test]
fn libc_sleeps_and_clock_nanosleep_park_the_green_thread() {
    assert!(patch());
    let start = Instant::now();
    let hs = vec![
        // SAFETY: plain libc calls.
        eventlet::spawn(|| unsafe { libc::usleep(200_000) }),
        eventlet::spawn(|| {
            let t = libc::timespec { tv_sec: 0, tv_nsec: 200_000_000 };
            // SAFETY: a valid timespec.
            unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &t, std::ptr::null_mut()) }
        }),
        eventlet::spawn(|| {
            let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: valid timespecs.
            unsafe {
                libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
                now.tv_nsec += 200_000_000;
                if now.tv_nsec >= 1_000_000_000 {
                    now.tv_nsec -= 1_000_000_000;
                    now.tv_sec += 1;
                }
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &now, std::ptr::null_mut())
            }
        }),
        eventlet::spawn(|| {
            // SAFETY: a plain libc call.
            unsafe { libc::sleep(0) as i32 }
        }),
    ];
    // Runs after the four have begun (green threads run in spawn order):
    // if the three sleeps park, their three timers are on the hub at once.
    // (Seen, not timed: one after another they would take 600 ms, but a
    // loaded machine can take that long too.)
    let timers = eventlet::spawn(|| eventlet::hub::stats().timers);
    for h in hs {
        assert_eq!(h.join().unwrap(), 0);
    }
    assert_eq!(timers.join().unwrap(), 3, "the three sleeps did not wait together");
    assert!(start.elapsed() >= Duration::from_millis(200), "{:?}", start.elapsed());
    // Invalid arguments get the original's answer.
    let bad = libc::timespec { tv_sec: 0, tv_nsec: 2_000_000_000 };
    // SAFETY: a timespec libc rejects.
    let r =
        eventlet::spawn(move || unsafe { libc::clock_nanosleep(libc::CLOCK_MONOTONIC, 0, &bad, std::ptr::null_mut()) });
    assert_eq!(r.join().unwrap(), libc::EINVAL);
}

#[test]
fn a_timeout_cuts_a_patched_sleep_short() {
    assert!(patch());
    let start = Instant::now();
    let r = eventlet::with_timeout(Duration::from_millis(100), || std::thread::sleep(Duration::from_secs(10)));
    assert!(r.is_err(), "with_timeout reports the timeout");
    assert!(start.elapsed() < Duration::from_secs(2), "{:?}", start.elapsed());
    // A kill ends the sleep, and unwinds at the next eventlet blocking point.
    let h = eventlet::spawn(|| {
        std::thread::sleep(Duration::from_secs(10));
        eventlet::sleep(Duration::from_secs(10));
    });
    eventlet::sleep(Duration::from_millis(20));
    let start = Instant::now();
    h.kill();
    assert!(h.join().unwrap_err().is::<eventlet::Killed>());
    assert!(start.elapsed() < Duration::from_secs(1), "{:?}", start.elapsed());
}

#[test]
fn a_plain_thread_and_a_tpool_worker_still_block() {
    assert!(patch());
    // A plain OS thread: no hub, so the original nanosleep, right in the
    // kernel (not a hub's epoll_wait).
    // Each sleeps until told to stop (a single sleep could end before it is
    // looked at, on a loaded machine, and the thread be gone or waiting in
    // something else).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sleep_until_stopped = {
        let stop = stop.clone();
        move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let sleeper = sleep_until_stopped.clone();
    let plain = std::thread::spawn(move || {
        tx.send(gettid()).unwrap();
        sleeper();
    });
    let tid = rx.recv().unwrap();
    assert!(SLEEPS.contains(&blocked_in(tid)));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    plain.join().unwrap();
    stop.store(false, std::sync::atomic::Ordering::SeqCst);
    // A tpool worker, while green threads of this hub run on.
    let (tx, rx) = std::sync::mpsc::channel();
    let job = eventlet::spawn(move || {
        eventlet::tpool::execute(move || {
            tx.send(gettid()).unwrap();
            sleep_until_stopped();
        })
    });
    let ticker = eventlet::spawn(|| {
        let mut n = 0;
        for _ in 0..10 {
            std::thread::sleep(Duration::from_millis(10));
            n += 1;
        }
        n
    });
    let tid = loop {
        match rx.try_recv() {
            Ok(t) => break t,
            Err(_) => eventlet::sleep(Duration::from_millis(1)),
        }
    };
    assert!(SLEEPS.contains(&blocked_in(tid)));
    assert_eq!(ticker.join().unwrap(), 10);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    job.join().unwrap();
    // And this hub's OS thread, while its green threads sleep, waits in
    // epoll: that is where a patched sleep went. (It sleeps until the
    // watcher has looked, not for a fixed time the watcher could miss.)
    let me = gettid();
    let (tx, rx) = std::sync::mpsc::channel();
    let watcher = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        tx.send(blocked_in(me)).unwrap();
    });
    let seen = loop {
        match rx.try_recv() {
            Ok(nr) => break nr,
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    watcher.join().unwrap();
    assert!(POLLS.contains(&seen), "{seen}");
}

/// Sleeps in its destructor: run while its green thread unwinds.
struct SleepsOnDrop(std::rc::Rc<std::cell::Cell<u32>>, std::rc::Rc<std::cell::Cell<Option<u32>>>);

impl Drop for SleepsOnDrop {
    fn drop(&mut self) {
        assert!(std::thread::panicking());
        let before = self.0.get();
        std::thread::sleep(Duration::from_millis(100));
        self.1.set(Some(self.0.get() - before));
    }
}

#[test]
fn code_running_while_a_green_thread_unwinds_gets_the_original_call() {
    assert!(patch());
    let ticks = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let t = ticks.clone();
    let ticker = eventlet::spawn(move || loop {
        t.set(t.get() + 1);
        eventlet::sleep(Duration::from_millis(5));
    });
    let seen = std::rc::Rc::new(std::cell::Cell::new(None));
    let guard = SleepsOnDrop(ticks.clone(), seen.clone());
    let start = Instant::now();
    let h = eventlet::spawn(move || {
        let _g = guard;
        panic!("unwinding on purpose");
    });
    assert!(h.join().is_err());
    assert!(start.elapsed() >= Duration::from_millis(100));
    // The sleep blocked the OS thread (the original call): the ticker did
    // not run during it.
    assert_eq!(seen.get(), Some(0));
    ticker.kill();
}
