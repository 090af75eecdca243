//! Green threads and futures without tokio: `block_on` with hand-written
//! futures (wakers used from the same hub, from a plain OS thread, after
//! the green thread ended), a `JoinHandle` awaited, `spawn_future` across
//! hubs, and cancellation both ways (kill, `Timeout`, dropping the future).

use std::cell::Cell;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

mod util;

/// The tests of this file take turns.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Descriptors open in this process.
fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A one-shot signal usable from any thread: `wait()` is a future that is
/// pending until `set()`; every poll stores the waker, `set` wakes it.
#[derive(Clone, Default)]
struct Signal(Arc<Mutex<(bool, Option<Waker>)>>);

impl Signal {
    fn set(&self) {
        let w = {
            let mut s = self.0.lock().unwrap();
            s.0 = true;
            s.1.take()
        };
        if let Some(w) = w {
            w.wake();
        }
    }

    fn waker(&self) -> Option<Waker> {
        self.0.lock().unwrap().1.clone()
    }

    fn wait(&self) -> Wait {
        Wait(self.clone(), Arc::new(AtomicUsize::new(0)), None)
    }
}

/// The future of [`Signal::wait`]; counts its polls, and sets its flag
/// when dropped.
struct Wait(Signal, Arc<AtomicUsize>, Option<Arc<AtomicBool>>);

impl Future for Wait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.1.fetch_add(1, Ordering::SeqCst);
        let mut s = self.0 .0.lock().unwrap();
        if s.0 {
            return Poll::Ready(());
        }
        s.1 = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait {
    fn drop(&mut self) {
        if let Some(f) = &self.2 {
            f.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn ready_future_from_root_and_green_thread() {
    let _turn = turn();
    assert_eq!(eventlet::block_on(async { 6 * 7 }), 42);
    let h = eventlet::spawn(|| eventlet::block_on(std::future::ready("green")));
    assert_eq!(h.join().unwrap(), "green");
}

#[test]
fn pending_future_woken_from_the_same_hub() {
    let _turn = turn();
    let s = Signal::default();
    let waiter = {
        let s = s.clone();
        eventlet::spawn(move || {
            let w = s.wait();
            let polls = w.1.clone();
            eventlet::block_on(w);
            polls.load(Ordering::SeqCst)
        })
    };
    // Let it wait, and check the others ran meanwhile.
    let other = eventlet::spawn(|| 1);
    assert_eq!(other.join().unwrap(), 1);
    assert!(!waiter.is_finished());
    s.set();
    assert_eq!(waiter.join().unwrap(), 2, "polled once pending, once woken");
}

/// In a child process: the descriptors it counts are the whole process's,
/// and other tests' threads open and close theirs meanwhile (a hub is
/// closed at its thread's exit, after its test has ended).
#[test]
fn woken_from_a_plain_os_thread_that_gets_no_hub() {
    let _turn = turn();
    child_ok("woken-from-a-plain-os-thread");
}

fn woken_from_a_plain_os_thread() {
    let s = Signal::default();
    let s2 = s.clone();
    let waker = std::thread::spawn(move || {
        while s2.waker().is_none() {
            std::thread::sleep(Duration::from_millis(1));
        }
        let before = open_fds();
        s2.set();
        let after = open_fds();
        (before, after)
    });
    eventlet::block_on(s.wait());
    let (before, after) = waker.join().unwrap();
    assert_eq!(before, after, "waking made a hub (descriptors) on the waking thread");
}

#[test]
fn waker_kept_after_the_green_thread_ended_is_harmless() {
    let _turn = turn();
    let s = Signal::default();
    let s2 = s.clone();
    let h = eventlet::spawn(move || {
        // Register the waker, then finish without waiting for it.
        let mut w = Box::pin(s2.wait());
        let waker = eventlet::block_on(std::future::poll_fn(|cx| {
            let _ = w.as_mut().poll(cx);
            Poll::Ready(cx.waker().clone())
        }));
        waker
    });
    let stale = h.join().unwrap();
    // A new green thread may take the same slot; the stale waker must not
    // wake it.
    let parked = Rc::new(Cell::new(0));
    let p = parked.clone();
    let sleeper = eventlet::spawn(move || {
        let r = eventlet::park_timeout(Duration::from_millis(50));
        p.set(1);
        r
    });
    eventlet::yield_now();
    stale.wake_by_ref();
    let other_thread = std::thread::spawn(move || stale.wake());
    other_thread.join().unwrap();
    assert_eq!(sleeper.join().unwrap(), eventlet::Wakeup::TimedOut, "a stale waker woke another green thread");
    assert_eq!(parked.get(), 1);
}

#[test]
fn kill_drops_the_future() {
    let _turn = turn();
    let s = Signal::default();
    let dropped = Arc::new(AtomicBool::new(false));
    let (s2, d2) = (s.clone(), dropped.clone());
    let h = eventlet::spawn(move || {
        let mut w = s2.wait();
        w.2 = Some(d2);
        eventlet::block_on(w);
    });
    eventlet::yield_now();
    assert!(s.waker().is_some(), "it waits");
    assert!(!dropped.load(Ordering::SeqCst));
    h.kill();
    let r = h.join();
    assert!(r.unwrap_err().is::<eventlet::Killed>());
    assert!(dropped.load(Ordering::SeqCst), "killing did not drop the future");
}

#[test]
fn timeout_drops_the_future() {
    let _turn = turn();
    let s = Signal::default();
    let dropped = Arc::new(AtomicBool::new(false));
    let mut w = s.wait();
    w.2 = Some(dropped.clone());
    let start = Instant::now();
    let r = eventlet::with_timeout(Duration::from_millis(20), move || eventlet::block_on(w));
    assert!(r.is_err(), "the timeout did not cut the wait");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(dropped.load(Ordering::SeqCst), "the timeout did not drop the future");
    // From a green thread too.
    let dropped = Arc::new(AtomicBool::new(false));
    let d = dropped.clone();
    let h = eventlet::spawn(move || {
        let mut w = Signal::default().wait();
        w.2 = Some(d);
        eventlet::with_timeout(Duration::from_millis(10), move || eventlet::block_on(w)).is_err()
    });
    assert!(h.join().unwrap());
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn join_handle_is_a_future() {
    let _turn = turn();
    let out = eventlet::block_on(async {
        let a = eventlet::spawn(|| {
            eventlet::sleep(Duration::from_millis(5));
            "a"
        });
        let b = eventlet::spawn(|| panic!("b fails"));
        (a.await, b.await)
    });
    assert_eq!(out.0.unwrap(), "a");
    let e = out.1.unwrap_err();
    assert_eq!(e.downcast_ref::<&str>(), Some(&"b fails"));
}

#[test]
fn dropping_the_join_future_kills_the_green_thread() {
    let _turn = turn();
    struct Flag(Rc<Cell<bool>>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let unwound = Rc::new(Cell::new(false));
    let u = unwound.clone();
    let h = eventlet::spawn(move || {
        let _f = Flag(u);
        eventlet::sleep(Duration::from_secs(60));
    });
    let thread = h.thread();
    eventlet::yield_now(); // it starts, and sleeps
    let mut fut = Box::pin(h.into_future());
    // Poll once so that it registers, then drop it.
    let first = eventlet::block_on(std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_pending())));
    assert!(first);
    drop(fut);
    let start = Instant::now();
    while !thread.is_finished() && start.elapsed() < Duration::from_secs(5) {
        eventlet::sleep(Duration::from_millis(1));
    }
    assert!(thread.is_finished(), "the green thread was not killed");
    assert!(unwound.get(), "its destructors did not run");
}

#[test]
fn spawn_future_on_another_hub() {
    let _turn = turn();
    let hub = eventlet::hub::start("spawn-join").unwrap();
    let on =
        eventlet::block_on(hub.handle().spawn_future(|| std::thread::current().name().map(str::to_owned)).unwrap());
    assert_eq!(on.unwrap().as_deref(), Some("spawn-join"));
    // The same hub as the caller: spawned at once, no hop.
    let here = eventlet::hub::handle();
    let v = eventlet::block_on(here.spawn_future(|| 5).unwrap()).unwrap();
    assert_eq!(v, 5);
    hub.join();
}

#[test]
fn dropping_a_remote_join_handle_kills_the_green_thread() {
    let _turn = turn();
    let hub = eventlet::hub::start("spawn-join-kill").unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let unwound = Arc::new(AtomicBool::new(false));
    struct Flag(Arc<AtomicBool>);
    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let (s, u) = (started.clone(), unwound.clone());
    let h = hub
        .handle()
        .spawn_future(move || {
            let _f = Flag(u);
            s.store(true, Ordering::SeqCst);
            eventlet::sleep(Duration::from_secs(60));
        })
        .unwrap();
    let start = Instant::now();
    while !started.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(started.load(Ordering::SeqCst));
    drop(h);
    while !unwound.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(unwound.load(Ordering::SeqCst), "dropping the handle did not kill the green thread");
    // The hub thread ends: nothing is left on it.
    hub.join();

    // Dropped before it started: it never runs; detached: it runs on.
    let hub = eventlet::hub::start("spawn-join-detach").unwrap();
    let ran = Arc::new(AtomicUsize::new(0));
    let r = ran.clone();
    hub.handle()
        .spawn_future(move || {
            eventlet::sleep(Duration::from_millis(5));
            r.fetch_add(1, Ordering::SeqCst);
        })
        .unwrap()
        .detach();
    hub.join();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "a detached green thread did not run to its end");
}

/// Polls `fut` once with a waker that does nothing.
fn poll_once<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    Pin::new(fut).poll(&mut Context::from_waker(Waker::noop()))
}

#[test]
fn a_green_future_whose_closure_is_dropped_unrun_ends_killed() {
    let _turn = turn();
    // Sent to a plain thread's hub that exits before it looks at its
    // wake-ups: the closure is dropped unrun with the hub.
    let (to_main, handle) = std::sync::mpsc::channel();
    let (go, exit) = std::sync::mpsc::channel::<()>();
    let t = std::thread::spawn(move || {
        to_main.send(eventlet::hub::handle()).unwrap();
        exit.recv().unwrap();
    });
    let hub = handle.recv().unwrap();
    let mut queued = hub.spawn_future(|| 5).unwrap();
    let joinable = hub.spawn(|| 6).unwrap();
    go.send(()).unwrap();
    t.join().unwrap();
    match poll_once(&mut queued) {
        Poll::Ready(r) => assert!(r.unwrap_err().is::<eventlet::Killed>()),
        Poll::Pending => panic!("the future of a closure dropped unrun waits forever"),
    }
    assert!(joinable.join().unwrap_err().is::<eventlet::Killed>());

    // Spawned on a thread's own hub (at once), not started when the
    // thread exits: run once with a kill pending, which drops the closure.
    let mut unstarted = std::thread::spawn(|| eventlet::hub::handle().spawn_future(|| 7).unwrap()).join().unwrap();
    match poll_once(&mut unstarted) {
        Poll::Ready(r) => assert!(r.unwrap_err().is::<eventlet::Killed>()),
        Poll::Pending => panic!("the future of a green thread killed before it started waits forever"),
    }
}

#[test]
fn block_on_while_unwinding_does_not_switch() {
    let _turn = turn();
    struct DropBlocks(Signal, Rc<Cell<&'static str>>);
    impl Drop for DropBlocks {
        fn drop(&mut self) {
            // Ready: returned at once.
            self.1.set(eventlet::block_on(async { "ready" }));
            // Pending: fails at once (caught here, so no abort).
            let w = self.0.wait();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| eventlet::block_on(w)));
            if r.is_err() {
                self.1.set("pending failed");
            }
        }
    }
    let seen = Rc::new(Cell::new(""));
    let s2 = seen.clone();
    let h = eventlet::spawn(move || {
        let _d = DropBlocks(Signal::default(), s2);
        panic!("unwind");
    });
    let other_ran = eventlet::spawn(|| 1);
    assert!(h.join().is_err());
    assert_eq!(seen.get(), "pending failed");
    assert_eq!(other_ran.join().unwrap(), 1);
}

/// Runs a green thread whose future, at its first poll, registers its
/// waker on a signal, hands the signal to `wake`, then makes a blocking
/// green call (a 20 ms sleep) and returns Pending: a wake made meanwhile
/// unparks the sleep, which goes back to sleep. block_on must still poll
/// again; the future is ready at its second poll. Returns the count of
/// polls, or `None` if the wake was lost (nothing polled it again within
/// 5 s).
fn polls_when_woken_during_a_green_wait_inside_poll(wake: impl FnOnce(Signal) + 'static) -> Option<usize> {
    let s = Signal::default();
    let mut wake = Some(wake);
    let waiter = eventlet::spawn(move || {
        let mut w = Box::pin(s.wait());
        let mut polls = 0;
        eventlet::block_on(std::future::poll_fn(move |cx| {
            polls += 1;
            let r = w.as_mut().poll(cx);
            if let Some(wake) = wake.take() {
                wake(s.clone());
                eventlet::sleep(Duration::from_millis(20));
                return Poll::Pending;
            }
            r.map(|()| polls)
        }))
    });
    eventlet::with_timeout(Duration::from_secs(5), || waiter.join()).ok().map(|r| r.unwrap())
}

#[test]
fn a_wake_during_a_green_wait_inside_poll_is_not_lost() {
    let _turn = turn();
    // The waker is used by a green thread that runs once the poll sleeps.
    let polls = polls_when_woken_during_a_green_wait_inside_poll(|s| eventlet::spawn_n(move || s.set()));
    assert_eq!(polls.expect("the wake that came during the poll's own green wait was lost"), 2);
}

#[test]
fn a_wake_from_another_thread_during_a_green_wait_inside_poll_is_not_lost() {
    let _turn = turn();
    // The waker is used by a plain OS thread before the sleep starts: its
    // wake is counted when the hub takes its message, during the poll's
    // own green wait, which takes the unpark.
    let polls =
        polls_when_woken_during_a_green_wait_inside_poll(|s| std::thread::spawn(move || s.set()).join().unwrap());
    assert_eq!(polls.expect("the wake from another thread that came during the poll's own green wait was lost"), 2);
}

#[test]
fn a_wake_taken_by_a_nested_block_on_is_not_lost() {
    let _turn = turn();
    // The outer future registers its waker, then (inside its poll) waits
    // in a nested block_on, during which the outer waker is used; the
    // nested wait ends later.
    let (outer, inner) = (Signal::default(), Signal::default());
    let (o2, i2) = (outer.clone(), inner.clone());
    let waiter = eventlet::spawn(move || {
        let mut w = Box::pin(o2.wait());
        let mut polls = 0;
        eventlet::block_on(std::future::poll_fn(move |cx| {
            polls += 1;
            let r = w.as_mut().poll(cx);
            if polls == 1 {
                eventlet::block_on(i2.wait());
                return Poll::Pending;
            }
            r.map(|()| polls)
        }))
    });
    // Runs once the waiter waits in the nested block_on.
    eventlet::spawn_n(move || {
        outer.set();
        // The waiter polls its inner future again, and waits on.
        eventlet::yield_now();
        inner.set();
    });
    let r = eventlet::with_timeout(Duration::from_secs(5), || waiter.join());
    assert_eq!(r.expect("the wake taken by the nested block_on was lost").unwrap(), 2);
}

/// Runs `f` under a `Timeout`, while a green thread holds the hub (a
/// blocking std sleep) until past the timeout's deadline, so that the
/// timeout expires in the same turn of the hub as what `f` waits for. The
/// timeout is long enough for `f` to park before it expires even on a slow
/// machine (under valgrind, 10 ms went by before the park: the timeout
/// expired before the awaited work ever ran). After a stall of more than
/// 50 ms before the timeout starts, the hold ends before it and `f`'s
/// result simply comes first.
fn with_timeout_held_past<T>(f: impl FnOnce() -> T) -> Result<T, eventlet::timeout::Elapsed> {
    const TIMEOUT: Duration = Duration::from_millis(200);
    let until = Instant::now() + TIMEOUT + Duration::from_millis(50);
    eventlet::spawn_n(move || std::thread::sleep(until.saturating_duration_since(Instant::now())));
    eventlet::with_timeout(TIMEOUT, f)
}

#[test]
fn a_result_that_arrives_with_the_timeout_wins() {
    let _turn = turn();
    // The awaited green thread finishes in the same turn of the hub as the
    // timeout of the block_on that awaits it expires (its sleep is due
    // first, and the hub is held past both): block_on returns its result,
    // rather than dropping it and reporting the timeout (the timeout
    // fires at the next blocking call).
    let dropped = Rc::new(Cell::new(false));
    struct Value(Rc<Cell<bool>>);
    impl Drop for Value {
        fn drop(&mut self) {
            self.0.set(true);
        }
    }
    let d = dropped.clone();
    // The work's deadline is taken before the timeout starts, so it is
    // due first however late the work begins to sleep (a stall of the
    // machine between the timeout's start and the work's sleep put it
    // after the timeout).
    let t0 = Instant::now();
    let work = eventlet::spawn(move || {
        util::sleep_until(t0 + Duration::from_millis(5));
        Value(d)
    });
    let r = with_timeout_held_past(|| eventlet::block_on(work));
    assert!(!dropped.get(), "the finished green thread's result was dropped");
    assert!(r.expect("block_on reported the timeout and dropped the result").is_ok());
    // The timeout fires at the next blocking call.
    let late = eventlet::with_timeout(Duration::from_millis(10), || {
        let v = eventlet::block_on(eventlet::spawn(|| std::thread::sleep(Duration::from_millis(30))));
        eventlet::sleep(Duration::from_millis(1));
        v
    });
    assert!(late.is_err(), "the expired timeout did not fire at the next blocking call");

    // The same through a GreenFuture of this hub.
    let dropped = Rc::new(Cell::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dropped.clone();
    let t0 = Instant::now();
    let work = eventlet::hub::handle()
        .spawn_future(move || {
            util::sleep_until(t0 + Duration::from_millis(5));
            tx.send(()).unwrap();
            7
        })
        .unwrap();
    let r = with_timeout_held_past(|| eventlet::block_on(work));
    drop(d);
    assert!(rx.try_recv().is_ok(), "the green thread did not finish");
    assert_eq!(r.expect("block_on reported the timeout and dropped the result").unwrap(), 7);
}

thread_local! {
    /// A JoinFuture that `DropsHeld`'s drop drops.
    static HELD: std::cell::RefCell<Option<eventlet::JoinFuture<()>>> = const { std::cell::RefCell::new(None) };
}

/// A waker whose drop drops the JoinFuture in `HELD` (as a waker that is
/// the last reference to a task holding one would).
struct DropsHeld;

impl std::task::Wake for DropsHeld {
    fn wake(self: Arc<Self>) {}
}

impl Drop for DropsHeld {
    fn drop(&mut self) {
        drop(HELD.with_borrow_mut(Option::take));
    }
}

#[test]
fn a_waker_dropped_by_a_join_future_may_drop_another() {
    let _turn = turn();
    let sleeper = || eventlet::spawn(|| eventlet::sleep(Duration::from_secs(60)));
    let (a, b) = (sleeper(), sleeper());
    let (ta, tb) = (a.thread(), b.thread());
    eventlet::yield_now(); // both sleep
    let mut a = a.into_future();
    let mut b = b.into_future();
    // b registers a waker that does nothing, then goes to HELD; a
    // registers the only reference to a DropsHeld waker.
    assert!(poll_once(&mut b).is_pending());
    HELD.with_borrow_mut(|h| *h = Some(b));
    let w = Waker::from(Arc::new(DropsHeld));
    assert!(Pin::new(&mut a).poll(&mut Context::from_waker(&w)).is_pending());
    drop(w);
    // Dropping a drops its waker, which drops b: both are killed.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(a)));
    assert!(r.is_ok(), "dropping the JoinFuture panicked");
    assert!(HELD.with_borrow(Option::is_none));
    let start = Instant::now();
    while !(ta.is_finished() && tb.is_finished()) && start.elapsed() < Duration::from_secs(5) {
        eventlet::sleep(Duration::from_millis(1));
    }
    assert!(ta.is_finished() && tb.is_finished(), "a dropped JoinFuture did not kill its green thread");
}

/// The child cases (they may abort the process); each ends by printing
/// `case NAME done`.
#[test]
fn child() {
    let Ok(case) = std::env::var("EVENTLET_FUTURE_CHILD") else { return };
    match case.as_str() {
        "block-on-in-a-destructor-under-with-timeout" => block_on_in_a_destructor_under_with_timeout(),
        "woken-from-a-plain-os-thread" => woken_from_a_plain_os_thread(),
        other => panic!("unknown child case {other}"),
    }
    eprintln!("case {case} done");
}

/// Runs the child case `case` of this binary's `child` test, asserting
/// that it exited with success and finished.
fn child_ok(case: &str) {
    let (status, stderr) = util::run_child_test("child", &[("EVENTLET_FUTURE_CHILD", case)]);
    assert!(status.success(), "child case {case} failed ({status}): {stderr}");
    assert!(stderr.contains(&format!("case {case} done")), "child case {case} did not finish: {stderr}");
}

#[test]
fn block_on_in_a_destructor_during_unwinding_is_refused_as_other_waits_are() {
    child_ok("block-on-in-a-destructor-under-with-timeout");
}

/// A destructor that must block wraps the wait in `with_timeout`, which
/// returns the refusal as `Err` while the green thread unwinds (see
/// `timeout`'s docs): that holds for `block_on` of a pending future too
/// (it panicked with a message instead, which `with_timeout` let through,
/// out of the destructor: an abort).
fn block_on_in_a_destructor_under_with_timeout() {
    struct Goodbye(Signal, Rc<Cell<&'static str>>);
    impl Drop for Goodbye {
        fn drop(&mut self) {
            let r = eventlet::with_timeout(Duration::from_secs(1), || eventlet::block_on(self.0.wait()));
            self.1.set(match r {
                Ok(()) => "waited",
                Err(e) if e.is_refusal() => "refused",
                Err(_) => "timed out",
            });
        }
    }
    let seen = Rc::new(Cell::new(""));
    let s2 = seen.clone();
    let h = eventlet::spawn(move || {
        let _g = Goodbye(Signal::default(), s2);
        panic!("unwind");
    });
    assert!(h.join().is_err());
    assert_eq!(seen.get(), "refused");
    // Not unwinding, the same destructor waits (here until its timeout).
    let seen = Rc::new(Cell::new(""));
    let s2 = seen.clone();
    let s = Signal::default();
    let s3 = s.clone();
    eventlet::spawn_n(move || s3.set());
    drop(Goodbye(s, s2));
    assert_eq!(seen.get(), "waited");
}
