//! Helpers of the greening tests: the real servers they start (redis,
//! PostgreSQL, nginx: eventlet's `tests/util/servers.rs`, shared), and the
//! switch that runs a test with the patch off.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../eventlet-http/tests/util/tools.rs"]
pub mod tools;

use std::process::Command;
use std::time::Duration;

/// The variable that makes [`patch`] leave the patch off (set for the
/// child processes of [`run_unpatched`]).
pub const UNPATCHED: &str = "EVENTLET_TEST_UNPATCHED";

/// Turns the monkey patch on, unless this process runs a test with it off
/// (see [`run_unpatched`]). Returns whether it is on.
pub fn patch() -> bool {
    if std::env::var_os(UNPATCHED).is_some() {
        assert!(!eventlet::patcher::is_monkey_patched());
        return false;
    }
    eventlet::monkey_patch();
    true
}

/// Runs the (ignored) test `name` of this test binary in a child process
/// with the patch off, and asserts that it ran and passed.
pub fn run_unpatched(name: &str) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1", "--include-ignored"])
        .env(UNPATCHED, "1")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && stdout.contains("1 passed"), "{name} with the patch off:\n{stdout}\n{stderr}");
}

/// Ends the whole test process with a message if it is still running after
/// `limit` (a test that would otherwise hang, say in an `accept` whose
/// client died); dropping the guard disarms it.
pub fn fail_after(limit: Duration, what: &'static str) -> FailAfter {
    let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let a = armed.clone();
    std::thread::spawn(move || {
        std::thread::sleep(limit);
        if a.load(std::sync::atomic::Ordering::SeqCst) {
            eprintln!("{what} did not finish within {limit:?}: failing the test process");
            std::process::exit(101);
        }
    });
    FailAfter(armed)
}

/// Disarms [`fail_after`] when dropped.
pub struct FailAfter(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for FailAfter {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Raises this process's open-file limit to its hard limit.
pub fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit with a valid struct.
    unsafe {
        let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        r.rlim_cur
    }
}

#[path = "../../../eventlet/tests/util/servers.rs"]
pub mod servers;

#[allow(unused_imports)] // each test binary uses some of them
pub use servers::{free_port, Nginx, Postgres, Redis, TempDir};

/// Kills the child process when dropped, so a failing test leaves none.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
