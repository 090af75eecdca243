//! `Timeout` and `with_timeout`: fire at blocking points, nest, leave no
//! timer behind.

use std::io::Read;
use std::time::{Duration, Instant};

use eventlet::timeout::Elapsed;
use eventlet::{with_timeout, Timeout, Wakeup};

const MS: Duration = Duration::from_millis(1);

#[test]
fn with_timeout_interrupts_a_sleep() {
    let t = Instant::now();
    let err = with_timeout(20 * MS, || eventlet::sleep(Duration::from_secs(60))).unwrap_err();
    assert_eq!(err.duration(), 20 * MS);
    assert!(t.elapsed() >= 20 * MS && t.elapsed() < Duration::from_secs(5));
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn work_that_finishes_in_time_is_untouched() {
    let r = with_timeout(Duration::from_secs(5), || {
        eventlet::sleep(2 * MS);
        7
    });
    assert_eq!(r, Ok(7));
    assert_eq!(eventlet::hub::stats().timers, 0);
    // After the guard is gone, long waits are fine again.
    assert_eq!(eventlet::park_timeout(30 * MS), Wakeup::TimedOut);
}

#[test]
fn green_io_fails_with_timed_out_naming_the_timeout() {
    let l = eventlet::listen("127.0.0.1:0").unwrap();
    let c = eventlet::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    let guard = Timeout::start(15 * MS);
    let err = (&s).read(&mut [0; 8]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let inner = err.get_ref().and_then(|e| e.downcast_ref::<Elapsed>()).expect("an Elapsed inside");
    assert_eq!(inner.id(), guard.id());
    // Every further blocking operation fails too while the guard lives.
    assert_eq!((&s).read(&mut [0; 8]).unwrap_err().kind(), std::io::ErrorKind::TimedOut);
    drop(guard);
    drop(c);
    assert_eq!((&s).read(&mut [0; 8]).unwrap(), 0, "EOF once the timeout is gone");
    assert_eq!(eventlet::hub::stats().timers, 0);
    assert_eq!(eventlet::hub::stats().io_waiters, 0);
}

#[test]
fn the_earliest_of_nested_timeouts_wins_and_says_which() {
    // Inner fires first: the inner with_timeout returns Err, the outer goes on.
    let outer = with_timeout(Duration::from_secs(5), || {
        let inner = with_timeout(10 * MS, || eventlet::sleep(Duration::from_secs(60)));
        assert_eq!(inner.unwrap_err().duration(), 10 * MS);
        eventlet::sleep(MS);
        "outer finished"
    });
    assert_eq!(outer, Ok("outer finished"));

    // Outer fires first: it passes through the inner with_timeout.
    let outer = with_timeout(15 * MS, || {
        let _ = with_timeout(Duration::from_secs(60), || eventlet::sleep(Duration::from_secs(60)));
        unreachable!("the outer timeout unwinds through the inner one");
    });
    assert_eq!(outer.unwrap_err().duration(), 15 * MS);
    assert_eq!(eventlet::hub::stats().timers, 0);
}

#[test]
fn waits_with_their_own_deadline_return_their_timeout() {
    let _t = Timeout::start(10 * MS);
    let start = Instant::now();
    assert_eq!(eventlet::park_deadline(start + Duration::from_secs(60)), Wakeup::TimedOut);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn join_is_interrupted_and_the_target_goes_on() {
    // The target waits for a release, not for a sleep: a sleep a little
    // longer than the timeout could come due with it after a stall of the
    // machine, and the target finish before the joiner saw its timeout.
    let release = eventlet::Event::new();
    let done = std::rc::Rc::new(std::cell::Cell::new(false));
    let (r, d) = (release.clone(), done.clone());
    let h = eventlet::spawn(move || {
        r.wait();
        d.set(true);
    });
    let t = h.thread();
    let r = with_timeout(10 * MS, move || h.join());
    assert!(r.is_err());
    assert!(!t.is_finished(), "a timeout in the joiner does not kill the target");
    release.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !t.is_finished() {
        assert!(Instant::now() < deadline, "the target never finished");
        eventlet::sleep(MS);
    }
    // Finished its work, not unwound by a kill.
    assert!(done.get(), "the target was killed");
}

#[test]
fn an_uncaught_timeout_ends_its_green_thread_with_elapsed() {
    let h = eventlet::spawn(|| {
        let _t = Timeout::start(5 * MS);
        eventlet::sleep(Duration::from_secs(60));
    });
    let payload = h.join().unwrap_err();
    assert_eq!(payload.downcast_ref::<Elapsed>().map(Elapsed::duration), Some(5 * MS));
    assert_eq!(eventlet::hub::stats().green_threads, 0);
}

#[test]
fn an_expired_timeout_fails_the_next_wait_at_once() {
    let t = Timeout::start(MS);
    std::thread::sleep(5 * MS); // not a green blocking point: not interrupted
    assert!(t.expired());
    let start = Instant::now();
    let r =
        std::panic::catch_unwind(|| with_timeout(Duration::from_secs(60), || eventlet::sleep(Duration::from_secs(60))));
    // The outer (expired) timeout fires at the first blocking point and
    // passes through the inner with_timeout.
    let payload = r.unwrap_err();
    assert_eq!(payload.downcast_ref::<Elapsed>().map(Elapsed::id), Some(t.id()));
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(eventlet::hub::stats().timers, 0);
}
