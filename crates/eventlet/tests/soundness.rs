//! Regression tests for the soundness review: what safe code on top of
//! eventlet could do to it (a double free, a panic escaping into the hub, a
//! lost wake-up, a leak, a panic where an error was due). Cases that could
//! crash the process run in a child process, so a regression shows as a
//! failed test, not a dead test binary.

use std::cell::{Cell, RefCell};
use std::panic::{self, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use eventlet::hub::{self, ThreadState};
use eventlet::{Killed, Queue};

mod util;

/// Runs the child case `case` of this binary's `child` test and returns its
/// stderr, asserting that it exited with success.
fn child_ok(case: &str) -> String {
    let (status, stderr) = util::run_child_test("child", &[("EVENTLET_SOUNDNESS_CHILD", case)]);
    assert!(status.success(), "child case {case} failed ({status}): {stderr}");
    assert!(stderr.contains(&format!("case {case} done")), "child case {case} did not finish: {stderr}");
    stderr
}

/// The child cases: each ends by printing `case NAME done`.
#[test]
fn child() {
    let Ok(case) = std::env::var("EVENTLET_SOUNDNESS_CHILD") else { return };
    match case.as_str() {
        "kill-unstarted-panicking-drop" => kill_unstarted_panicking_drop(),
        "kill-unstarted-blocking-drop-expired-timeout" => kill_unstarted_blocking_drop_expired_timeout(),
        "scope-cancels-unstarted-panicking-drop" => scope_cancels_unstarted_panicking_drop(),
        "local-drop-panics-with-panicking-payload" => local_drop_panics_with_panicking_payload(),
        "panicking-logger" => panicking_logger(),
        "stderr-gone" => return stderr_gone(), // it reports on stdout
        "blocking-hook" => blocking_hook(),
        "panic-reported-once" => panic_reported_once(),
        "emfile-wakers" => emfile_wakers(),
        "emfile-first-call" => emfile_first_call(),
        "wake-opens-no-fds" => wake_opens_no_fds(),
        "unstarted-dropped-at-exit" => unstarted_dropped_at_exit(),
        "root-local-panics-at-exit" => root_local_panics_at_exit(),
        "hub-thread-join-runs-green-threads" => hub_thread_join_runs_green_threads(),
        "block-on-in-tls-destructor" => block_on_in_tls_destructor(),
        "scoped-unstarted-at-exit" => scoped_unstarted_at_exit(),
        other => panic!("unknown child case {other}"),
    }
    eprintln!("case {case} done");
}

static DROPS: AtomicUsize = AtomicUsize::new(0);

/// Panics in its first drop (when not already unwinding); counts drops.
struct Noisy(#[allow(dead_code)] Vec<u8>);

impl Drop for Noisy {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
        if !std::thread::panicking() {
            panic!("first drop panics");
        }
    }
}

fn kill_unstarted_panicking_drop() {
    let v = Noisy(vec![0; 64]);
    let h = eventlet::spawn(move || drop(v));
    let _ = panic::catch_unwind(AssertUnwindSafe(|| h.kill()));
    let r = h.join();
    assert!(r.unwrap_err().is::<Killed>());
    assert_eq!(DROPS.load(Ordering::SeqCst), 1, "the closure was dropped once");
    // The hub still works.
    assert_eq!(eventlet::spawn(|| 5).join().unwrap(), 5);
}

/// Sleeps in its drop; counts drops.
struct Conn(#[allow(dead_code)] Vec<u8>);

impl Drop for Conn {
    fn drop(&mut self) {
        DROPS.fetch_add(1, Ordering::SeqCst);
        eventlet::sleep(Duration::from_millis(1));
    }
}

fn kill_unstarted_blocking_drop_expired_timeout() {
    let c = Conn(vec![0; 64]);
    let h = eventlet::spawn(move || drop(c));
    let _ = eventlet::with_timeout(Duration::from_millis(1), || {
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(3) {}
        h.kill();
        h
    })
    .map(|h| h.join());
    eventlet::sleep(Duration::from_millis(10));
    assert_eq!(DROPS.load(Ordering::SeqCst), 1, "the closure was dropped once");
}

fn scope_cancels_unstarted_panicking_drop() {
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        eventlet::scope(|s| {
            s.spawn(|| panic!("the first scoped green thread panics"));
            for _ in 0..3 {
                let v = Noisy(vec![0; 64]);
                s.spawn(move || drop(v));
            }
        })
    }));
    assert!(r.is_err(), "the scope re-raised the panic");
    assert_eq!(DROPS.load(Ordering::SeqCst), 3, "each unstarted closure was dropped once");
}

/// A payload whose own drop panics.
struct PanickyPayload;

impl Drop for PanickyPayload {
    fn drop(&mut self) {
        panic!("the payload's drop panics too");
    }
}

eventlet::green_local! {
    static BOMB: Cell<Option<Bomb>> = Cell::new(None);
}

/// A green-local value whose destructor panics with a [`PanickyPayload`].
struct Bomb;

impl Drop for Bomb {
    fn drop(&mut self) {
        panic::panic_any(PanickyPayload);
    }
}

fn local_drop_panics_with_panicking_payload() {
    let h = eventlet::spawn(|| BOMB.with(|b| b.set(Some(Bomb))));
    let _ = h.join();
    // The hub survived: its current green thread is right, blocking works.
    eventlet::sleep(Duration::from_millis(2));
    assert_eq!(eventlet::spawn(|| 7).join().unwrap(), 7);
    eventlet::spawn_n(|| BOMB.with(|b| b.set(Some(Bomb))));
    eventlet::sleep(Duration::from_millis(2));
    assert_eq!(eventlet::spawn(|| 8).join().unwrap(), 8);
}

struct PanickingLogger;

impl log::Log for PanickingLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, _: &log::Record<'_>) {
        panic!("the logger panics");
    }
    fn flush(&self) {}
}

fn panicking_logger() {
    log::set_logger(&PanickingLogger).unwrap();
    log::set_max_level(log::LevelFilter::Trace);
    eventlet::spawn_n(|| panic!("a detached green thread panics"));
    eventlet::sleep(Duration::from_millis(2));
    assert_eq!(eventlet::spawn(|| 9).join().unwrap(), 9);
    eventlet::sleep(Duration::from_millis(2));
}

fn stderr_gone() {
    // The parent closed its end of our stderr: every write there fails.
    for _ in 0..3 {
        eventlet::spawn_n(|| panic!("a detached green thread panics"));
    }
    eventlet::sleep(Duration::from_millis(2));
    assert_eq!(eventlet::spawn(|| 10).join().unwrap(), 10);
    // Tell the parent on stdout (stderr is gone).
    println!("case stderr-gone done");
}

fn blocking_hook() {
    let default = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        // A hook that blocks: while panicking it must not switch away.
        eventlet::sleep(Duration::from_millis(5));
        default(info);
    }));
    let hs: Vec<_> = (0..3).map(|i| eventlet::spawn(move || panic!("green thread {i} panics"))).collect();
    for h in hs {
        assert!(h.join().is_err());
    }
    drop(panic::take_hook());
}

fn panic_reported_once() {
    eventlet::Builder::new().name("reporter").spawn_n(|| panic!("unique-panic-text-1234")).unwrap();
    eventlet::sleep(Duration::from_millis(2));
}

/// Opens descriptors until `EMFILE`; returns them (closing them frees room).
fn exhaust_fds() -> Vec<std::fs::File> {
    let mut held = Vec::new();
    loop {
        match std::fs::File::open("/dev/null") {
            Ok(f) => held.push(f),
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                return held;
            }
        }
    }
}

fn lower_fd_limit() {
    let lim = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
    // SAFETY: setrlimit only reads `lim`.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

fn emfile_wakers() {
    lower_fd_limit();
    // This thread's hub exists before the descriptors run out.
    let _ = hub::stats();
    let held = exhaust_fds();
    // A tpool worker (a thread without a hub) wakes us.
    assert_eq!(eventlet::tpool::execute(|| 5), 5);
    assert_eq!(eventlet::tpool::execute(|| 6), 6, "the pool still runs jobs");
    // A channel send from a fresh OS thread wakes us.
    let (tx, rx) = eventlet::channel::unbounded::<u32>();
    let t = std::thread::spawn(move || tx.send(11).is_ok());
    assert_eq!(rx.recv().unwrap(), 11);
    assert!(t.join().unwrap(), "the send succeeded without a hub");
    // An unparker from a fresh OS thread.
    let me = eventlet::current().unparker();
    std::thread::spawn(move || me.unpark()).join().unwrap();
    eventlet::park();
    drop(held);
}

fn emfile_first_call() {
    lower_fd_limit();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = exhaust_fds();
    // One descriptor free: enough for the socket, not for a hub (which
    // needs three). The fresh thread's first green call needs a hub; where
    // the call returns io::Result, not having one is an error.
    held.pop();
    let r = std::thread::spawn(move || eventlet::net::TcpStream::connect(addr).map(drop)).join();
    let r = r.expect("the first green call on a thread under EMFILE returned, not panicked");
    assert!(r.is_err(), "connect under EMFILE cannot succeed");
    drop(held);
    // With descriptors back, the same kind of thread works.
    let ok = std::thread::spawn(move || eventlet::net::TcpStream::connect(addr).map(drop)).join().unwrap();
    assert!(ok.is_ok(), "{ok:?}");
}

// 1. Killing a green thread that has not started drops its closure once.

#[test]
fn kill_of_unstarted_green_thread_drops_a_panicking_closure_once() {
    child_ok("kill-unstarted-panicking-drop");
}

#[test]
fn kill_of_unstarted_green_thread_under_expired_timeout_drops_a_blocking_closure_once() {
    child_ok("kill-unstarted-blocking-drop-expired-timeout");
}

#[test]
fn scope_cancellation_drops_unstarted_panicking_closures_once() {
    child_ok("scope-cancels-unstarted-panicking-drop");
}

// 2. No panic escapes a green thread into the hub loop.

#[test]
fn a_green_local_destructor_panicking_with_a_panicking_payload_stays_in_its_green_thread() {
    child_ok("local-drop-panics-with-panicking-payload");
}

#[test]
fn a_panicking_logger_does_not_take_the_hub_down() {
    child_ok("panicking-logger");
}

#[test]
fn a_panic_report_to_a_closed_stderr_does_not_take_the_hub_down() {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("EVENTLET_SOUNDNESS_CHILD", "stderr-gone")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take()); // the reader goes away
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "the child failed ({}): {stdout}", out.status);
    assert!(stdout.contains("case stderr-gone done"), "{stdout}");
}

// 3. User destructors do not run inside the hub loop.

/// Sleeps in its drop, then counts it.
struct SlowDrop(Rc<Cell<u32>>);

impl Drop for SlowDrop {
    fn drop(&mut self) {
        eventlet::sleep(Duration::from_millis(3));
        self.0.set(self.0.get() + 1);
    }
}

#[test]
fn a_detached_result_whose_drop_blocks_does_not_eat_the_roots_wake_up() {
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let detached = eventlet::spawn(move || SlowDrop(d));
    drop(detached);
    let joined = eventlet::spawn(|| {
        eventlet::sleep(Duration::from_millis(1));
        7
    });
    assert_eq!(joined.join().unwrap(), 7);
    eventlet::sleep(Duration::from_millis(20));
    assert_eq!(drops.get(), 1, "the detached result was dropped once");
}

/// Panics in its drop.
struct PanickyDrop;

impl Drop for PanickyDrop {
    fn drop(&mut self) {
        panic!("a detached result's drop panics");
    }
}

#[test]
fn a_detached_result_whose_drop_panics_does_not_come_out_of_an_unrelated_sleep() {
    drop(eventlet::spawn(|| PanickyDrop));
    eventlet::sleep(Duration::from_millis(5));
    // And a result dropped with its handle after the end.
    let h = eventlet::spawn(|| PanickyDrop);
    eventlet::sleep(Duration::from_millis(1));
    assert!(h.is_finished());
    let r = panic::catch_unwind(AssertUnwindSafe(|| drop(h)));
    assert!(r.is_err(), "dropping the handle drops the result, here");
    eventlet::sleep(Duration::from_millis(1));
}

// 4. The root spinning on `yield_now` lets timers fire.

#[test]
fn the_root_spinning_on_yield_now_lets_timers_fire() {
    let flag = Rc::new(Cell::new(false));
    let f = flag.clone();
    let h = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(1));
        f.set(true);
    });
    let start = Instant::now();
    while !flag.get() && start.elapsed() < Duration::from_secs(5) {
        eventlet::yield_now();
    }
    assert!(flag.get(), "the sleeper never woke while the root yielded");
    h.join().unwrap();
}

// 5. Waking needs no hub on the waker's thread.

#[test]
fn waking_from_a_plain_thread_needs_no_hub_there_even_under_emfile() {
    child_ok("emfile-wakers");
}

#[test]
fn waking_from_a_plain_thread_opens_no_descriptors() {
    child_ok("wake-opens-no-fds");
}

/// The number of open descriptors of this process (a child case: no other
/// test runs beside it).
fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn wake_opens_no_fds() {
    let me = eventlet::current().unparker();
    let _ = hub::stats();
    let before = fds();
    let opened = std::thread::spawn(move || {
        me.unpark();
        fds()
    })
    .join()
    .unwrap();
    eventlet::park();
    assert_eq!(opened, before, "the waking thread opened descriptors (a hub)");
}

// 6. A granted wait wins over an enclosing Timeout that expired with it.

/// Yields until the green thread `id` has been made ready by its timer.
/// It looks before each yield: on a slow machine (valgrind, a loaded CI
/// host) the timer may have fired before this green thread first runs, and
/// a yield then would let `id` run first, which is not the case tested.
fn yield_until_ready(id: u64) {
    loop {
        let t = hub::threads().into_iter().find(|t| t.id == id);
        if t.is_none_or(|t| t.state == ThreadState::Ready) {
            return;
        }
        eventlet::yield_now();
    }
}

#[test]
fn a_rendezvous_put_under_with_timeout_that_was_delivered_is_ok() {
    let q = Queue::bounded(0);
    let q2 = q.clone();
    let putter = eventlet::spawn(move || eventlet::with_timeout(Duration::from_millis(50), || q2.put(1)).is_ok());
    let id = putter.thread().id();
    eventlet::yield_now(); // the putter waits in put
    let getter = eventlet::spawn(move || {
        yield_until_ready(id); // its timeout fired
        q.try_get().ok()
    });
    assert_eq!(getter.join().unwrap(), Some(1), "the getter took the item");
    assert!(putter.join().unwrap(), "put reported Elapsed although its item was delivered");
}

#[test]
fn a_channel_send_under_with_timeout_that_was_delivered_is_ok() {
    let (tx, rx) = eventlet::channel::bounded::<u32>(0);
    let sender = eventlet::spawn(move || eventlet::with_timeout(Duration::from_millis(50), || tx.send(1)).is_ok());
    let id = sender.thread().id();
    eventlet::yield_now();
    let receiver = eventlet::spawn(move || {
        yield_until_ready(id);
        rx.try_recv().ok()
    });
    assert_eq!(receiver.join().unwrap(), Some(1));
    assert!(sender.join().unwrap(), "send reported Elapsed although its message was delivered");
}

#[test]
fn a_join_under_with_timeout_that_finished_returns_the_result() {
    let target = Rc::new(Cell::new(0u64));
    let t2 = target.clone();
    let joiner = eventlet::spawn(move || {
        let h = eventlet::spawn(move || {
            yield_until_ready(t2.get());
            42
        });
        eventlet::with_timeout(Duration::from_millis(50), move || h.join().unwrap()).ok()
    });
    target.set(joiner.thread().id());
    assert_eq!(joiner.join().unwrap(), Some(42), "the finished result was dropped");
}

#[test]
fn a_semaphore_acquire_under_with_timeout_that_was_granted_is_ok() {
    let sem = Rc::new(eventlet::Semaphore::new(0));
    let s2 = sem.clone();
    let waiter = eventlet::spawn(move || eventlet::with_timeout(Duration::from_millis(50), || s2.acquire()).is_ok());
    let id = waiter.thread().id();
    eventlet::yield_now();
    let releaser = eventlet::spawn(move || {
        yield_until_ready(id);
        sem.add_permits(1);
    });
    releaser.join().unwrap();
    assert!(waiter.join().unwrap(), "acquire reported Elapsed although it was granted");
}

// 7. One green thread's unwinding does not show in another.

#[test]
fn a_green_thread_never_sees_another_ones_unwinding() {
    let seen_panicking = Rc::new(Cell::new(false));
    let mutex = std::sync::Arc::new(std::sync::Mutex::new(0));
    // The victim's destructor blocks while it unwinds from a kill.
    let victim = eventlet::spawn(|| {
        let _conn = SlowDrop(Rc::new(Cell::new(0)));
        eventlet::sleep(Duration::from_secs(60));
    });
    let (seen, m) = (seen_panicking.clone(), mutex.clone());
    let observer = eventlet::spawn(move || {
        for _ in 0..10 {
            let g = m.lock().unwrap();
            eventlet::yield_now();
            seen.set(seen.get() || std::thread::panicking());
            drop(g);
        }
    });
    eventlet::yield_now();
    victim.kill();
    observer.join().unwrap();
    assert!(victim.join().unwrap_err().is::<Killed>());
    assert!(!seen_panicking.get(), "another green thread saw panicking() == true");
    assert!(!mutex.is_poisoned(), "an innocent std Mutex was poisoned");
}

#[test]
fn a_panic_hook_that_blocks_does_not_abort_when_green_threads_panic() {
    child_ok("blocking-hook");
}

// 8. Unstarted green threads are dropped when their OS thread exits.

#[test]
fn unstarted_green_threads_are_dropped_when_their_os_thread_exits() {
    child_ok("unstarted-dropped-at-exit");
}

fn unstarted_dropped_at_exit() {
    static DROPPED: AtomicUsize = AtomicUsize::new(0);
    struct Owned(#[allow(dead_code)] std::net::UdpSocket);
    impl Drop for Owned {
        fn drop(&mut self) {
            DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
    std::thread::spawn(|| {
        let _ = hub::stats(); // warm up whatever is lazy
    })
    .join()
    .unwrap();
    let before = fds();
    std::thread::spawn(|| {
        for _ in 0..20 {
            let s = Owned(std::net::UdpSocket::bind("127.0.0.1:0").unwrap());
            eventlet::spawn_n(move || drop(s));
        }
    })
    .join()
    .unwrap();
    assert_eq!(DROPPED.load(Ordering::SeqCst), 20, "the unstarted closures were dropped");
    assert_eq!(fds(), before, "descriptors leaked");
}

// 9. Durations too long for an `Instant` mean "never".

#[test]
fn duration_max_means_no_deadline() {
    assert!(eventlet::with_timeout(Duration::from_millis(5), || eventlet::sleep(Duration::MAX)).is_err());
    let me = eventlet::current();
    eventlet::spawn_n(move || me.unpark());
    assert_eq!(eventlet::park_timeout(Duration::MAX), eventlet::Wakeup::Unparked);
    let h = eventlet::spawn_after(Duration::MAX, || ());
    eventlet::sleep(Duration::from_millis(1));
    assert!(!h.is_finished());
    h.kill();
    assert!(h.join().unwrap_err().is::<Killed>());
    let listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    eventlet::net::TcpStream::connect_timeout(&addr, Duration::MAX).unwrap();
    let t = eventlet::Timeout::start(Duration::MAX);
    assert!(!t.expired());
}

// 10. Limits come back as errors that name them.

#[test]
fn the_first_green_call_on_a_thread_under_emfile_returns_an_error() {
    child_ok("emfile-first-call");
}

// 12. A green thread's panic is reported once.

#[test]
fn a_detached_green_threads_panic_is_reported_once() {
    let stderr = child_ok("panic-reported-once");
    let n = stderr.matches("unique-panic-text-1234").count();
    assert_eq!(n, 1, "the panic message was printed {n} times: {stderr}");
    assert!(stderr.contains("green thread 'reporter' (id "), "the report names the green thread: {stderr}");
}

// 11. The backdoor console reads a bounded line.

#[test]
fn the_console_refuses_a_line_without_end() {
    use std::io::{Read, Write};
    let listener = eventlet::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = eventlet::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        eventlet::backdoor::session(conn)
    });
    // A plain OS thread sends one endless line (1 MiB) and reads the answer.
    let client = std::thread::spawn(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..16 {
            if c.write_all(&chunk).is_err() {
                break; // the server closed while we wrote: fine
            }
        }
        let mut answer = Vec::new();
        let _ = c.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    });
    let r = server.join().unwrap();
    let e = r.expect_err("the session ended with an error");
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
    let answer = eventlet::tpool::execute(move || client.join().unwrap());
    assert!(answer.contains("line too long"), "{answer:?}");
}

/// Records how long its drop's sleep took.
struct TimedDrop(Rc<Cell<Option<Duration>>>);

impl Drop for TimedDrop {
    fn drop(&mut self) {
        let t = Instant::now();
        eventlet::sleep(Duration::from_millis(2));
        self.0.set(Some(t.elapsed()));
    }
}

thread_local! {
    /// Set by a [`SleepyLocal`] as its drop begins.
    static LOCAL_DROPPING: Cell<bool> = const { Cell::new(false) };
}

/// Sleeps in its drop (a green-local), after saying so.
struct SleepyLocal;

impl Drop for SleepyLocal {
    fn drop(&mut self) {
        LOCAL_DROPPING.with(|d| d.set(true));
        eventlet::sleep(Duration::from_millis(5));
    }
}

eventlet::green_local! {
    static SLEEPY: RefCell<Option<SleepyLocal>> = RefCell::new(None);
}

#[test]
fn a_result_whose_handle_is_dropped_while_its_green_locals_drop_is_dropped_on_its_green_thread() {
    let took = Rc::new(Cell::new(None));
    let t = took.clone();
    let h = eventlet::spawn(move || {
        SLEEPY.with_borrow_mut(|s| *s = Some(SleepyLocal));
        TimedDrop(t)
    });
    // Until it has returned its result and sleeps in its green-local's drop.
    while !LOCAL_DROPPING.with(Cell::get) {
        eventlet::yield_now();
    }
    assert!(!h.is_finished());
    drop(h); // detached with its result already made
    let start = Instant::now();
    while took.get().is_none() && start.elapsed() < Duration::from_secs(10) {
        eventlet::sleep(Duration::from_millis(1));
    }
    let took = took.get().expect("the result was dropped");
    assert!(took >= Duration::from_millis(2), "its drop could not block ({took:?}): it ran in the hub loop");
}

/// Unparks the root when dropped (by whoever drops it).
struct UnparkRoot(eventlet::GreenThread);

impl Drop for UnparkRoot {
    fn drop(&mut self) {
        self.0.unpark();
    }
}

#[test]
fn an_unpark_while_the_root_yields_is_kept_for_its_next_park() {
    // The root yields, and while it is queued (not parked) another green
    // thread unparks it: the root's next park must return at once.
    let root = eventlet::current();
    let r2 = root.clone();
    eventlet::spawn_n(move || r2.unpark());
    eventlet::yield_now();
    let t = Instant::now();
    assert_eq!(eventlet::park_timeout(Duration::from_secs(5)), eventlet::Wakeup::Unparked);
    assert!(t.elapsed() < Duration::from_secs(1), "the root's wake-up token was lost");
    drop(UnparkRoot(root));
    eventlet::park();
}

eventlet::green_local! {
    static FIRST: RefCell<Option<Bomb2>> = RefCell::new(None);
    static SECOND: RefCell<Option<Bomb2>> = RefCell::new(None);
    static THIRD: RefCell<Option<Bomb2>> = RefCell::new(None);
}

/// Counts its drop, then panics.
struct Bomb2(Rc<Cell<u32>>);

impl Drop for Bomb2 {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
        panic!("a green-local's destructor panics");
    }
}

#[test]
fn a_green_local_whose_destructor_panics_spares_the_others() {
    let drops = Rc::new(Cell::new(0));
    let d = drops.clone();
    let h = eventlet::spawn(move || {
        for key in [&FIRST, &SECOND, &THIRD] {
            key.with_borrow_mut(|v| *v = Some(Bomb2(d.clone())));
        }
    });
    h.join().unwrap();
    assert_eq!(drops.get(), 3, "every green-local was dropped");
}

eventlet::green_local! {
    static ROOT_BOMB: RefCell<Option<ExitBomb>> = RefCell::new(None);
}

static EXIT_BOMBS: AtomicUsize = AtomicUsize::new(0);

/// Counts its drop, then blocks and panics.
struct ExitBomb;

impl Drop for ExitBomb {
    fn drop(&mut self) {
        EXIT_BOMBS.fetch_add(1, Ordering::SeqCst);
        eventlet::sleep(Duration::from_millis(1));
        panic!("a root green-local's destructor panics at thread exit");
    }
}

fn root_local_panics_at_exit() {
    std::thread::spawn(|| ROOT_BOMB.with_borrow_mut(|b| *b = Some(ExitBomb))).join().unwrap();
    assert_eq!(EXIT_BOMBS.load(Ordering::SeqCst), 1, "the root's green-local was dropped at thread exit");
}

#[test]
fn a_root_green_local_whose_destructor_blocks_and_panics_at_thread_exit_does_not_abort() {
    child_ok("root-local-panics-at-exit");
}

/// `HubThread::join` blocked its OS thread in the thread's join, so the
/// caller's green threads could not run: one of them holding a handle to
/// that hub (which keeps it alive) deadlocked both. It waits green now.
/// (An alarm ends the child if it hangs.)
fn hub_thread_join_runs_green_threads() {
    // SAFETY: alarm has no preconditions; SIGALRM ends the process.
    unsafe { libc::alarm(10) };
    let worker = hub::start("joined-worker").unwrap();
    let held = worker.handle().clone();
    let holder = eventlet::spawn(move || {
        eventlet::sleep(Duration::from_millis(20));
        drop(held);
    });
    worker.join();
    holder.join().unwrap();
}

#[test]
fn joining_a_hub_thread_lets_the_callers_green_threads_run() {
    child_ok("hub-thread-join-runs-green-threads");
}

/// Waits on a future when dropped (a connection's goodbye).
struct BlocksOnDrop;

impl Drop for BlocksOnDrop {
    fn drop(&mut self) {
        let v = eventlet::block_on(async { eventlet::spawn(|| 7).await.unwrap() });
        eprintln!("block_on in a thread-local's destructor: {v}");
    }
}

thread_local! {
    static GOODBYE: RefCell<Option<BlocksOnDrop>> = const { RefCell::new(None) };
}

/// `block_on` in a thread-local's destructor on a thread with a hub: the
/// table of `block_on` wakers was a thread-local of its own, first used
/// after this one and so destroyed before it, and `block_on` panicked
/// there: an abort ("thread local panicked on drop").
fn block_on_in_tls_destructor() {
    std::thread::spawn(|| {
        eventlet::yield_now(); // this thread's hub, first
        GOODBYE.with(|g| *g.borrow_mut() = Some(BlocksOnDrop));
        assert_eq!(eventlet::block_on(async { 1 }), 1); // the wakers' table, now
    })
    .join()
    .unwrap();
}

#[test]
fn block_on_in_a_thread_local_destructor_does_not_abort() {
    let stderr = child_ok("block-on-in-tls-destructor");
    assert!(stderr.contains("block_on in a thread-local's destructor: 7"), "{stderr}");
}

/// A thread-local that marks itself destroyed.
struct Marked(Cell<u64>);

impl Drop for Marked {
    fn drop(&mut self) {
        self.0.set(0xdead);
    }
}

thread_local!(static BORROWED: Marked = const { Marked(Cell::new(7)) });

/// Reads what it borrows when dropped.
struct ReadsOnDrop<'a>(&'a Marked);

impl Drop for ReadsOnDrop<'_> {
    fn drop(&mut self) {
        let v = self.0 .0.get();
        eprintln!("a scoped closure's capture read {v:#x} when dropped");
        if v != 7 {
            // What it borrows was destroyed before it: a use after free.
            std::process::abort();
        }
    }
}

/// A scoped green thread that has not started when its OS thread exits:
/// its closure may borrow the thread's thread-locals (through the scope's
/// owner, parked inside `with`), and those may be destroyed before the
/// hub. Dropping the closure at exit, as for an unstarted `'static` one,
/// then ran its captures' destructors over freed thread-locals; it must
/// be leaked instead, as its parked owner is.
fn scoped_unstarted_at_exit() {
    std::thread::spawn(|| {
        eventlet::spawn_n(|| {
            BORROWED.with(|b| {
                eventlet::scope(|s| {
                    let r = ReadsOnDrop(b);
                    s.spawn(move || drop(r));
                });
            });
        });
        // The owner runs, spawns its scoped green thread behind this root
        // and waits for it; the root then returns before it starts.
        eventlet::yield_now();
    })
    .join()
    .unwrap();
}

#[test]
fn a_scoped_green_thread_unstarted_at_thread_exit_is_leaked_not_dropped() {
    let stderr = child_ok("scoped-unstarted-at-exit");
    assert!(!stderr.contains("when dropped"), "the scoped closure was dropped at thread exit: {stderr}");
}
