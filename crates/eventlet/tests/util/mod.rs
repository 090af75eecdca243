//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};

/// Runs the test `name` of the running test binary alone in a child process
/// with `env` set (such a child test returns at once unless it finds its
/// variable), and returns how the child ended and its standard error.
pub fn run_child_test(name: &str, env: &[(&str, &str)]) -> (ExitStatus, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The example binary cargo builds beside the tests; built on demand when
/// only this test target was built.
pub fn example_binary(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let bin = deps.parent().unwrap().join("examples").join(name);
    if !bin.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "eventlet", "--example", name]);
        if !cfg!(debug_assertions) {
            cmd.arg("--release");
        }
        assert!(cmd.status().unwrap().success(), "building example {name} failed");
    }
    bin
}

pub struct KillOnDrop(pub Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `n` milliseconds.
pub fn ms(n: u64) -> std::time::Duration {
    std::time::Duration::from_millis(n)
}

/// Parks until `deadline` (a `sleep` to a fixed instant). Green threads
/// that sleep to deadlines taken from one instant wake in deadline order
/// even if the machine stalls between their starts; with `sleep(d)` each
/// deadline is counted from its own start, so a stall between two starts
/// longer than the gap between their durations would swap them.
pub fn sleep_until(deadline: std::time::Instant) {
    while eventlet::park_deadline(deadline) != eventlet::Wakeup::TimedOut {}
}

/// Runs `f` on a fresh OS thread (a fresh hub, and with feature `tokio` a
/// fresh runtime) and returns its result once the thread has exited.
/// Fails if `f` has not returned within a minute: a lost wake-up hangs,
/// and must fail the test, not hold up the run.
pub fn on_fresh_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let t = std::thread::spawn(f);
    let start = std::time::Instant::now();
    while !t.is_finished() {
        assert!(start.elapsed() < std::time::Duration::from_secs(60), "the test's thread hangs (a lost wake-up?)");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    t.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// No green thread and no timer is left on this test's hub.
pub fn assert_clean() {
    let s = eventlet::hub::stats();
    assert_eq!(s.green_threads, 0, "green threads left: {s:?}");
    assert_eq!(s.timers, 0, "timers left: {s:?}");
}

/// xorshift64*: small, seeded, good enough to pick operations.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn ms(&mut self, max: u64) -> std::time::Duration {
        std::time::Duration::from_micros(self.below(max * 1000 + 1))
    }
}

/// A stress test's seed and length: `EVENTLET_STRESS_SEED` (else one from
/// the clock and the process id) and `EVENTLET_STRESS_SECS` (else 3 s),
/// printed under `name` so a failing run can be replayed.
pub fn stress_plan(name: &str) -> (u64, f64) {
    let seed: u64 = std::env::var("EVENTLET_STRESS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        t.as_nanos() as u64 ^ u64::from(std::process::id()) << 20
    });
    let secs: f64 = std::env::var("EVENTLET_STRESS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    eprintln!("{name}: EVENTLET_STRESS_SEED={seed} EVENTLET_STRESS_SECS={secs}");
    (seed, secs)
}

/// Keeps planned panics quiet: the panic hook skips those whose message
/// starts with "a planned panic" (others are reported as usual), and the
/// runtime's `log` reports go to a logger that drops them.
pub fn quiet_planned_panics() {
    struct Quiet;
    impl log::Log for Quiet {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, _: &log::Record<'_>) {}
        fn flush(&self) {}
    }
    let _ = log::set_logger(&Quiet);
    log::set_max_level(log::LevelFilter::Error);
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let p = info.payload();
        let msg = p.downcast_ref::<&str>().copied().or_else(|| p.downcast_ref::<String>().map(|s| s.as_str()));
        if !msg.is_some_and(|s| s.starts_with("a planned panic")) {
            hook(info);
        }
    }));
}

/// Aborts the process, saying `name`'s seed, if it is not dropped within
/// `limit`: a wait nobody ends would otherwise hang the test silently.
pub struct Watchdog(Option<std::sync::mpsc::Sender<()>>, Option<std::thread::JoinHandle<()>>);

impl Watchdog {
    pub fn start(name: &'static str, seed: u64, limit: std::time::Duration) -> Watchdog {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!("{name}: stuck after {limit:?}: a wait nobody ends (EVENTLET_STRESS_SEED={seed})");
                std::process::abort();
            }
        });
        Watchdog(Some(tx), Some(t))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.0.take());
        if let Some(t) = self.1.take() {
            let _ = t.join();
        }
    }
}

pub mod ledger;
/// The descriptors this process has open.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Every descriptor this process may still open, held: the soft limit is
/// lowered to 16 above those open, and the rest is taken by `/dev/null`
/// handles. [`give_back`](Self::give_back) (or dropping it) closes them
/// and restores the limit. For a test binary of its own.
pub struct FdsUsedUp {
    saved: libc::rlimit,
    held: Vec<std::fs::File>,
}

impl FdsUsedUp {
    pub fn now() -> FdsUsedUp {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit/setrlimit only read and write `lim`.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
        let saved = lim;
        lim.rlim_cur = (open_fds() + 16) as libc::rlim_t;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
        let mut held = Vec::new();
        while let Ok(f) = std::fs::File::open("/dev/null") {
            held.push(f);
        }
        FdsUsedUp { saved, held }
    }

    pub fn give_back(self) {}
}

impl Drop for FdsUsedUp {
    fn drop(&mut self) {
        self.held.clear();
        // SAFETY: setrlimit only reads `saved`.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &self.saved) };
    }
}

pub mod servers;

#[path = "../../../eventlet-http/tests/util/tools.rs"]
pub mod tools;
