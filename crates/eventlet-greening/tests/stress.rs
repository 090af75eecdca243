//! A randomized stress test of the patched calls: green threads use std's
//! sockets, pipes and sleeps and libc's `poll`, `select` and `nanosleep`,
//! while other green threads kill them, `Timeout`s cut their calls
//! short and a plain thread sends the hub's thread signals whose handler
//! writes to a self-pipe, in interleavings chosen by a seeded generator,
//! for a bounded time. A kill or a Timeout inside a patched call must come out as a
//! failed call (never an unwinding through C), and be delivered at the
//! green thread's next eventlet blocking point. At the end:
//!
//! - the process is alive (it runs in a child process, so an abort shows
//!   as a failure naming the seed);
//! - every green thread ended with its result or [`Killed`], no other
//!   panic, and none ran inside a signal handler;
//! - every echo that reported success brought back what was sent, and
//!   `errno` was the caller's after every successful call checked;
//! - no green thread, timer or I/O waiter is left, and no descriptor
//!   leaked.
//!
//! `EVENTLET_GREENING_STRESS_SEED` replays a seed (the test prints the one
//! it used); `EVENTLET_GREENING_STRESS_SECS` sets how long it runs
//! (default 3 s).

mod util;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventlet::Killed;

/// xorshift64*: small, seeded, good enough to pick operations.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn us(&mut self, max: u64) -> Duration {
        Duration::from_micros(self.below(max + 1))
    }
}

fn errno() -> i32 {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() }
}

fn set_errno(e: i32) {
    // SAFETY: this thread's errno.
    unsafe { *libc::__errno_location() = e }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// A std socket pair whose other end a green thread echoes.
struct Echo {
    near: UnixStream,
    peer: eventlet::JoinHandle<()>,
}

impl Echo {
    fn new() -> Echo {
        let (near, far) = UnixStream::pair().unwrap();
        let peer = eventlet::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match (&far).read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if (&far).write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Echo { near, peer }
    }
}

/// What the test counts.
#[derive(Default)]
struct Counts {
    ops: Cell<u64>,
    cut: Cell<u64>,
    killed: Cell<u64>,
}

/// One green thread's life: random patched operations until `until`.
fn worker(mut rng: Rng, until: Instant, counts: Rc<Counts>) {
    let mut echo = Some(Echo::new());
    let (pr, pw) = pipe();
    while Instant::now() < until {
        counts.ops.set(counts.ops.get() + 1);
        TICK.fetch_add(1, Ordering::SeqCst);
        let ok = match rng.below(8) {
            // An echo over std's socket; sometimes under a Timeout.
            0..=2 => {
                let e = echo.get_or_insert_with(Echo::new);
                let n = 1 + rng.below(64 * 1024) as usize;
                let out: Vec<u8> = (0..n).map(|i| (i as u64 ^ rng.next()) as u8).collect();
                let round = || -> std::io::Result<Vec<u8>> {
                    (&e.near).write_all(&out)?;
                    let mut back = vec![0u8; n];
                    (&e.near).read_exact(&mut back)?;
                    Ok(back)
                };
                let r = if rng.chance(30) {
                    match eventlet::with_timeout(rng.us(2000), round) {
                        Ok(r) => r,
                        Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
                    }
                } else {
                    round()
                };
                match r {
                    Ok(back) => {
                        assert!(back == out, "an echo that succeeded brought back other bytes");
                        true
                    }
                    // Cut short (or the peer killed): this pair is out of
                    // step now; a new one next time.
                    Err(_) => {
                        echo = None;
                        false
                    }
                }
            }
            // std's sleep (nanosleep or clock_nanosleep).
            3 => {
                std::thread::sleep(rng.us(1500));
                true
            }
            // poll on the socket (nothing to read: it times out), errno kept.
            4 => {
                let e = echo.get_or_insert_with(Echo::new);
                let mut p = libc::pollfd { fd: e.near.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                let mine = 1000 + rng.below(1000) as i32;
                set_errno(mine);
                // SAFETY: one valid pollfd.
                let r = unsafe { libc::poll(&mut p, 1, rng.below(3) as i32) };
                if r >= 0 {
                    assert_eq!(errno(), mine, "errno after a poll that succeeded");
                }
                r >= 0
            }
            // select on the pipe's read end (nothing to read).
            5 => {
                let fd = pr.as_raw_fd();
                if fd >= libc::FD_SETSIZE as i32 {
                    true
                } else {
                    // SAFETY: a set with one descriptor below FD_SETSIZE.
                    unsafe {
                        let mut set: libc::fd_set = std::mem::zeroed();
                        libc::FD_SET(fd, &mut set);
                        let mut tv = libc::timeval { tv_sec: 0, tv_usec: rng.below(2000) as libc::suseconds_t };
                        libc::select(fd + 1, &mut set, std::ptr::null_mut(), std::ptr::null_mut(), &mut tv) >= 0
                    }
                }
            }
            // Bytes through std's pipe, up to 150 round trips that never
            // wait (so the I/O budget runs out and the calls yield),
            // errno kept.
            6 => {
                let mut ok = true;
                for _ in 0..rng.below(150) {
                    // A value of this call's own (another green thread's
                    // errno, left during a yield, would differ).
                    let mine = 1000 + rng.below(1000) as i32;
                    set_errno(mine);
                    ok = (&pw).write_all(b"p").is_ok() && (&pr).read_exact(&mut [0u8; 1]).is_ok();
                    if !ok {
                        break;
                    }
                    assert_eq!(errno(), mine, "errno after pipe I/O that succeeded");
                }
                ok
            }
            // A Timeout around a sleep that outlasts it.
            _ => eventlet::with_timeout(rng.us(500), || std::thread::sleep(Duration::from_millis(5))).is_ok(),
        };
        if !ok {
            counts.cut.set(counts.cut.get() + 1);
        }
        // An eventlet blocking point: a kill caught by a patched call is
        // delivered here.
        if rng.chance(20) {
            eventlet::yield_now();
        }
    }
    if let Some(e) = echo {
        drop(e.near);
        e.peer.join().unwrap();
    }
}

fn pipe() -> (std::fs::File, std::fs::File) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills in two new descriptors, which we then own.
    unsafe {
        assert_eq!(libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC), 0);
        (std::fs::File::from_raw_fd(fds[0]), std::fs::File::from_raw_fd(fds[1]))
    }
}

/// The write end of the signal handler's self-pipe.
static SELF_PIPE: AtomicI32 = AtomicI32::new(-1);

/// Counts the operations the workers begin: one that changes while a
/// signal handler runs means a green thread ran inside the handler.
static TICK: AtomicU64 = AtomicU64::new(0);
/// Handlers during which another green thread ran.
static SWITCHED_IN_HANDLER: AtomicU64 = AtomicU64::new(0);

/// The self-pipe idiom: one byte to a non-blocking pipe (and a `close`
/// of nothing, a patched closing call), `errno` kept as a handler must.
extern "C" fn on_signal(_: libc::c_int) {
    let saved = errno();
    let before = TICK.load(Ordering::SeqCst);
    // SAFETY: write(2) and close(2) are async-signal-safe.
    unsafe {
        libc::write(SELF_PIPE.load(Ordering::Relaxed), b"!".as_ptr().cast(), 1);
        libc::close(-1);
    }
    if TICK.load(Ordering::SeqCst) != before {
        SWITCHED_IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    }
    set_errno(saved);
}

/// Signals delivered to the hub's thread at random moments while it runs
/// (green threads, the hub's own code): a plain thread sends SIGUSR1 every
/// 50 to 500 us; the handler writes to a self-pipe that a green thread
/// drains. Returns what stops it.
fn signal_storm(rng: &mut Rng, until: Instant) -> (std::thread::JoinHandle<()>, eventlet::JoinHandle<()>) {
    let (r, w) = pipe();
    // SAFETY: fcntl on our own pipe; a handler that only writes a byte.
    unsafe {
        libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        SELF_PIPE.store(w.as_raw_fd(), Ordering::Relaxed);
        let mut act: libc::sigaction = std::mem::zeroed();
        act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        assert_eq!(libc::sigaction(libc::SIGUSR1, &act, std::ptr::null_mut()), 0);
    }
    // SAFETY: pthread_self has no preconditions.
    let hub_thread = unsafe { libc::pthread_self() };
    let mut srng = Rng(rng.next() | 1);
    let sender = std::thread::spawn(move || {
        while Instant::now() < until {
            // SAFETY: the hub's thread outlives this one (it joins it).
            unsafe { libc::pthread_kill(hub_thread, libc::SIGUSR1) };
            std::thread::sleep(Duration::from_micros(50 + srng.below(450)));
        }
    });
    let drainer = eventlet::spawn(move || {
        let mut buf = [0u8; 256];
        while Instant::now() < until {
            let _ = eventlet::with_timeout(Duration::from_millis(10), || (&r).read(&mut buf));
        }
        // The write end stays open (the handler may still run): leaked,
        // with the handler's pipe.
        std::mem::forget(w);
    });
    (sender, drainer)
}

/// The run itself, in the child process.
fn run(seed: u64, secs: u64) {
    eventlet::monkey_patch();
    let mut rng = Rng(seed | 1);
    let until = Instant::now() + Duration::from_secs(secs);
    let storm = signal_storm(&mut rng, until);
    // The storm's pipe is left open for good (its handler may still run).
    let fds_before = open_fds() - 1;
    let counts = Rc::new(Counts::default());
    let workers: Rc<RefCell<Vec<eventlet::JoinHandle<()>>>> = Rc::default();
    for _ in 0..40 {
        let (r, c) = (Rng(rng.next() | 1), counts.clone());
        workers.borrow_mut().push(eventlet::spawn(move || worker(r, until, c)));
    }
    // The killer: kills a random worker now and then, and starts another.
    let killer = {
        let (workers, counts) = (workers.clone(), counts.clone());
        let mut rng = Rng(rng.next() | 1);
        eventlet::spawn(move || {
            let mut ended = Vec::new();
            while Instant::now() < until {
                eventlet::sleep(rng.us(3000));
                let i = rng.below(workers.borrow().len() as u64) as usize;
                let victim = workers.borrow_mut().swap_remove(i);
                victim.kill();
                ended.push(victim);
                let (r, c) = (Rng(rng.next() | 1), counts.clone());
                workers.borrow_mut().push(eventlet::spawn(move || worker(r, until, c)));
            }
            ended
        })
    };
    for h in killer.join().unwrap() {
        match h.join() {
            Ok(()) => {}
            Err(p) => {
                assert!(p.is::<Killed>(), "a killed worker ended with another panic");
                counts.killed.set(counts.killed.get() + 1);
            }
        }
    }
    for h in workers.take() {
        h.join().unwrap();
    }
    storm.0.join().unwrap();
    storm.1.join().unwrap();
    assert_eq!(SWITCHED_IN_HANDLER.load(Ordering::SeqCst), 0, "green threads ran inside signal handlers");
    // The echo peers of killed workers and of cut-short echoes are
    // detached: each ends once it reads the end of its socket, which takes
    // the hub's next I/O poll (after the last join, none may have come).
    // One that never ends is still caught, after the bound.
    let start = Instant::now();
    while eventlet::hub::stats().green_threads > 0 && start.elapsed() < Duration::from_secs(10) {
        eventlet::sleep(Duration::from_millis(1));
    }
    let s = eventlet::hub::stats();
    assert_eq!(s.green_threads, 0, "green threads left: {s:?} {:?}", eventlet::hub::threads());
    assert_eq!(s.io_waiters, 0, "I/O waiters left: {s:?}");
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
    eprintln!(
        "stress: {} operations, {} cut short or failed, {} workers killed",
        counts.ops.get(),
        counts.cut.get(),
        counts.killed.get()
    );
}

#[test]
fn child() {
    let Ok(seed) = std::env::var("EVENTLET_GREENING_STRESS_CHILD") else { return };
    let secs = std::env::var("EVENTLET_GREENING_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    // SAFETY: alarm has no preconditions; SIGALRM ends a run that hangs.
    unsafe { libc::alarm(secs as u32 + 60) };
    run(seed.parse().unwrap(), secs);
    eprintln!("stress done");
}

#[test]
fn patched_calls_under_random_kills_and_timeouts() {
    let seed: u64 =
        std::env::var("EVENTLET_GREENING_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
        });
    eprintln!("EVENTLET_GREENING_STRESS_SEED={seed}");
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child", "--nocapture", "--test-threads=1"])
        .env("EVENTLET_GREENING_STRESS_CHILD", seed.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{}", stderr.lines().filter(|l| l.starts_with("stress")).collect::<Vec<_>>().join("\n"));
    assert!(out.status.success() && stderr.contains("stress done"), "seed {seed} failed ({}): {stderr}", out.status);
}
