//! The thread pool: blocking calls park only their caller, results and
//! panics come back, concurrent calls run concurrently, and a caller that
//! is killed while it waits disturbs nothing.

mod util;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eventlet::{tpool, Killed};
use util::{assert_clean, ms};

#[test]
fn a_blocking_call_does_not_stop_other_green_threads() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = eventlet::spawn(move || loop {
        eventlet::sleep(ms(2));
        t.fetch_add(1, Ordering::SeqCst);
    });
    // The job blocks its pool thread until the hub's ticker has ticked ten
    // times (not for a fixed time, in which a stalled hub may tick less):
    // a hub blocked by the call would never tick, and the job give up
    // after 10 s.
    let t = ticks.clone();
    let v = tpool::execute(move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.load(Ordering::SeqCst) < 10 && Instant::now() < deadline {
            std::thread::sleep(ms(1));
        }
        "slept"
    });
    assert_eq!(v, "slept");
    assert!(ticks.load(Ordering::SeqCst) >= 10, "the ticker ticked only {} times", ticks.load(Ordering::SeqCst));
    ticker.kill();
    assert!(ticker.join().unwrap_err().is::<Killed>());
    assert_clean();
}

#[test]
fn ten_thousand_calls_from_a_thousand_green_threads_all_return_the_right_values() {
    let handles: Vec<_> = (0..1000u64)
        .map(|g| {
            eventlet::spawn(move || {
                let mut sum = 0;
                for k in 0..10u64 {
                    let x = g * 10 + k;
                    let r = tpool::execute(move || {
                        // Something that blocks a little, now and then.
                        if x % 1000 == 0 {
                            std::thread::sleep(ms(1));
                        }
                        (x, std::thread::current().name().map(str::to_owned))
                    });
                    assert_eq!(r.0, x);
                    assert_eq!(r.1.as_deref(), Some("eventlet-tpool"), "ran off the pool");
                    sum += r.0;
                }
                sum
            })
        })
        .collect();
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert_eq!(total, (0..10_000u64).sum());
    assert_clean();
}

#[test]
fn concurrent_calls_run_on_several_pool_threads() {
    // Regression: with one idle pool thread, a burst of calls was all
    // handed to that thread (each submit saw an idle thread and started no
    // other), so they ran one after another.
    assert!(tpool::max_threads() >= 8, "the pool is configured too small for this test");
    tpool::execute(|| ()); // at least one pool thread, now idle
    let n = 8;
    let arrived = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let arrived = arrived.clone();
            // Every job waits (a while at most) for all the others: they
            // all see each other only if they run at the same time, on
            // different threads.
            eventlet::spawn(move || {
                tpool::execute(move || {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while arrived.load(Ordering::SeqCst) < n && Instant::now() < deadline {
                        std::thread::sleep(ms(1));
                    }
                    arrived.load(Ordering::SeqCst) == n
                })
            })
        })
        .collect();
    let together = handles.into_iter().map(|h| h.join().unwrap()).filter(|&t| t).count();
    assert_eq!(together, n, "calls made at once did not run at once");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_clean();
}

#[test]
fn a_panic_in_the_job_comes_back_to_the_caller() {
    let r = std::panic::catch_unwind(|| tpool::execute(|| -> u8 { panic!("boom in the pool") }));
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the pool"));
    // The pool still works.
    assert_eq!(tpool::execute(|| 5), 5);
    // And from a green thread, it shows in join.
    let h = eventlet::spawn(|| tpool::execute(|| -> u8 { panic!("boom again") }));
    assert_eq!(h.join().unwrap_err().downcast_ref::<&str>(), Some(&"boom again"));
    assert_clean();
}

#[test]
fn killing_a_green_thread_waiting_on_execute_is_fine() {
    #[derive(Debug)]
    struct Dropped(Arc<AtomicUsize>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    let ran = Arc::new(AtomicUsize::new(0));
    let dropped = Arc::new(AtomicUsize::new(0));
    let (r, d) = (ran.clone(), dropped.clone());
    let h = eventlet::spawn(move || {
        tpool::execute(move || {
            std::thread::sleep(ms(50));
            r.fetch_add(1, Ordering::SeqCst);
            Dropped(d)
        })
    });
    eventlet::sleep(ms(5));
    h.kill();
    assert!(h.join().unwrap_err().is::<Killed>());
    // The job runs to its end; its result is dropped on the pool.
    let deadline = Instant::now() + Duration::from_secs(5);
    while dropped.load(Ordering::SeqCst) == 0 {
        assert!(Instant::now() < deadline, "the job's result was never dropped");
        eventlet::sleep(ms(5));
    }
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    // The hub goes on; the pool too.
    assert_eq!(tpool::execute(|| 9), 9);
    assert_clean();
}

#[test]
fn execute_from_a_plain_thread() {
    let t = std::thread::spawn(|| {
        tpool::execute(|| {
            std::thread::sleep(ms(10));
            21
        }) * 2
    });
    assert_eq!(t.join().unwrap(), 42);
}

#[test]
fn pool_size_child() {
    let Some(expect) = std::env::var_os("EVENTLET_POOL_SIZE_CHILD") else {
        return; // only runs as the child of the test below
    };
    for _ in 0..3 {
        assert_eq!(tpool::execute(|| 6 * 7), 42);
    }
    tpool::set_max_threads(tpool::max_threads());
    assert_eq!(tpool::max_threads().to_string(), expect.to_string_lossy());
    eprintln!("the child ran its calls");
}

/// An `EVENTLET_THREADPOOL_SIZE` that is not a size is reported once, with
/// its value, and the pool keeps its default size; a good one is used
/// without a word.
#[test]
fn an_invalid_pool_size_in_the_environment_is_reported_once() {
    for bad in ["0", "-3", "abc", ""] {
        let (status, stderr) = util::run_child_test(
            "pool_size_child",
            &[("EVENTLET_POOL_SIZE_CHILD", "20"), ("EVENTLET_THREADPOOL_SIZE", bad)],
        );
        assert!(status.success() && stderr.contains("the child ran its calls"), "{bad:?}: {stderr}");
        let report = format!(
            "eventlet: EVENTLET_THREADPOOL_SIZE={bad:?} is not a number of threads (a whole number, at least 1); the \
             thread pool has the default size, 20"
        );
        assert_eq!(stderr.matches(&report).count(), 1, "{bad:?}: {stderr}");
    }
    let (status, stderr) = util::run_child_test(
        "pool_size_child",
        &[("EVENTLET_POOL_SIZE_CHILD", "7"), ("EVENTLET_THREADPOOL_SIZE", "7")],
    );
    assert!(status.success() && stderr.contains("the child ran its calls"), "{stderr}");
    assert!(!stderr.contains("EVENTLET_THREADPOOL_SIZE"), "{stderr}");
}
